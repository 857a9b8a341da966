"""The leadership review's first screen: the honest headline (where the period's churn came from,
by band at the start) on a hand-made book whose shares are computed by hand, metric labels instead
of column names, unassigned CSMs as a data-quality finding, and the tests in an appendix."""

from __future__ import annotations

import datetime as dt
import re

import nbformat
import polars as pl
import pytest
from healthscore.analysis.cohorts import band_outcomes, cohort_review, csm_view, is_unassigned
from healthscore.render import reports
from healthscore.render import review as review_html

D0 = dt.date(2026, 1, 5)
D1 = D0 + dt.timedelta(weeks=13)  # 91 days: the review's default period
LABELS = {"seat_utilization": "Seat utilisation", "login_days": "Login days per week"}

# account: (band at the start, score, ARR, churn date or None, CSM)
BOOK = {
    "r1": ("red", 20.0, 10.0, D0 + dt.timedelta(days=30), "Ann"),
    "r2": ("red", 30.0, 10.0, None, "Ann"),
    "y1": ("yellow", 55.0, 20.0, D0 + dt.timedelta(days=20), None),
    "y2": ("yellow", 55.0, 20.0, D0 + dt.timedelta(days=60), "  "),
    "y3": ("yellow", 55.0, 20.0, None, "(unassigned)"),
    "y4": ("yellow", 55.0, 20.0, None, None),
    "g1": ("green", 85.0, 50.0, D0 + dt.timedelta(days=45), "Cy"),
    "g2": ("green", 85.0, 50.0, D1 + dt.timedelta(days=10), "Cy"),  # churns after the period: not counted
    "g3": ("green", 85.0, 50.0, None, "Cy"),
    "g4": ("green", 85.0, 50.0, None, "   "),
}


def _band(score: float) -> str:
    return "red" if score < 40 else "yellow" if score < 70 else "green"


@pytest.fixture(scope="module")
def book():
    rows = []
    for acc, (_, score, arr, churn, csm) in BOOK.items():
        for w in range(14):
            day = D0 + dt.timedelta(weeks=w)
            if churn is not None and day >= churn:
                break
            s = 10.0 if acc == "r2" and w >= 4 else score  # r2 drops, pulled down by seat utilisation
            rows.append(
                {
                    "account_id": acc,
                    "as_of": day,
                    "company_name": "<b>Bold & Co</b>" if acc == "r2" else f"Company {acc}",
                    "segment": "smb" if acc[1] in "12" else "enterprise",
                    "csm": csm,
                    "arr": arr,
                    "score": s,
                    "band": _band(s),
                    "drv_seat_utilization": s * 0.6 if acc != "r2" else 30 * 0.4 + (s - 30) * 1.0 + 6,
                    "drv_login_days": s * 0.4 if acc != "r2" else 30 * 0.4 - 6,
                }
            )
    # an account gone before the period starts is not in the book at the start
    rows.append({**rows[0], "account_id": "x", "as_of": D0 - dt.timedelta(weeks=1), "company_name": "Gone"})
    scores = pl.DataFrame(rows).sort("account_id", "as_of")
    events = pl.DataFrame(
        {
            "account_id": [a for a, v in BOOK.items() if v[3]] + ["x", "y3"],
            "date": [v[3] for v in BOOK.values() if v[3]] + [D0 - dt.timedelta(days=3), D0 + dt.timedelta(days=9)],
            "event": ["churned"] * 5 + ["churned", "expanded"],
        }
    )
    return scores, events


@pytest.fixture(scope="module")
def review(book):
    return cohort_review(*book, by="segment", labels=LABELS)


def test_band_outcomes_golden_shares_by_hand(book):
    scores, events = book
    got = band_outcomes(scores, events, D0, D1)
    # by hand: 10 accounts at the start (x left before); churned in the period r1, y1, y2, g1 (g2 after it)
    assert got.select("band", "accounts", "churned").rows() == [("red", 2, 1), ("yellow", 4, 2), ("green", 4, 1)]
    assert got["accounts_share"].to_list() == pytest.approx([2 / 10, 4 / 10, 4 / 10])
    assert got["arr"].to_list() == pytest.approx([20.0, 80.0, 200.0])
    assert got["arr_share"].to_list() == pytest.approx([20 / 300, 80 / 300, 200 / 300])
    assert got["churned_share"].to_list() == pytest.approx([1 / 4, 2 / 4, 1 / 4])
    assert got["arr_lost"].to_list() == pytest.approx([10.0, 40.0, 50.0])
    assert got["arr_lost_share"].to_list() == pytest.approx([10 / 100, 40 / 100, 50 / 100])
    assert got["churn_rate"].to_list() == pytest.approx([1 / 2, 2 / 4, 1 / 4])


def test_headline_sentences_say_where_churn_came_from(review):
    assert (review.date_from, review.date_to) == (D0, D1)
    assert review.headline() == [
        f"From {D0} to {D1}, 4 of the 10 accounts in the book at the start churned (40%), with ARR 100 (33% of ARR).",
        "Red held 20% of accounts (6.7% of ARR) at the start but 25% of the accounts that churned (10% of the "
        "ARR lost); yellow 40% of accounts and 50% of the accounts that churned; green 40% and 25%.",
        "A watch list of red accounts alone would have missed 75% of the accounts that churned.",
        "Share of each band's accounts that churned: red 50%, yellow 50%, green 25%.",
    ]
    assert review.executive_summary().startswith(f"**Portfolio health on {D1}.** From {D0} to {D1}, 4 of the 10")


def test_unassigned_csm_is_a_finding_and_not_a_row(book, review):
    scores, events = book
    flags = pl.DataFrame({"csm": ["Ann", None, "", " ", "(unassigned)", "Unassigned", "Bo"]}).select(is_unassigned())
    assert flags["csm"].to_list() == [False, True, True, True, True, True, False]
    view = csm_view(scores, events, min_size=1)
    # now (end of the period): r2, y3, y4, g2, g3, g4; y3, y4 and g4 have no CSM
    assert view.portfolio["csm"].to_list() == ["Ann", "Cy"]
    assert (view.unassigned, view.accounts, view.unassigned_arr) == (3, 6, 90.0)
    assert view.data_quality() == [
        "50% of accounts (3 of 6, ARR 90) have no CSM in the data: fix the CRM export. They are left out of "
        "the per-CSM table."
    ]
    first = review_html.executive_summary(review)
    assert "have no CSM in the data: fix the CRM export" in first and 'class="note finding"' in first
    table = review_html.csm_table(review)
    assert "3 accounts with no CSM in the data are left out of this table." in table
    assert "unassigned" not in table.lower() and table.count("<tr>") == 3  # heading + Ann + Cy


def _first_screen(page: str) -> str:
    start = page.index('<section class="summary"')
    return page[start : page.index("</section>", start)]


def test_first_screen_is_plain_words_with_model_labels(book, review):
    scores, events = book
    page = "".join(review_html.review_sections(review))
    first = _first_screen(page)
    assert "mostly Seat utilisation" in first  # r2's drop, by the model's label
    for raw in ("seat_utilization", "login_days", "drv_", "band_mix", "churn_rate", "share_red"):
        assert raw not in first, raw
    for jargon in ("Kruskal", "Cramér", "epsilon", "Mann-Whitney", "chi-square", "p<", "p=", "Cliff"):
        assert jargon not in first, jargon
    assert "&lt;b&gt;Bold &amp; Co&lt;/b&gt;" in first and "<b>Bold" not in page  # names are escaped
    # the headline table: one row per band, shares as percentages
    assert re.search(r"<td>red</td><td class=\"num\">2</td><td class=\"num\">20%</td>", first)
    # without a model the metric reads as words, never as the column name
    plain = _first_screen("".join(review_html.review_sections(cohort_review(scores, events, by="segment"))))
    assert "mostly seat utilization" in plain and "seat_utilization" not in plain


def test_tests_live_in_an_appendix_after_the_headline(review):
    sections = review_html.review_sections(review)
    page = "".join(sections)
    order = [
        page.index("Executive summary"),
        page.index("<h2>Cohorts</h2>"),
        page.index("<h2>Movement</h2>"),
        page.index("<h2>CSM portfolios"),
        page.index('<section class="appendix"'),
    ]
    assert order == sorted(order)
    for jargon in ("Kruskal", "Cramér", "epsilon", "p=", "p<"):  # every test name waits for the appendix
        assert jargon not in page[: order[-1]], jargon
    appendix = page[order[-1] :]
    assert "Kruskal-Wallis</strong>: do the score distributions differ between cohorts more than chance" in appendix
    for term in ("chi-square", "Mann-Whitney U", "Cramér&#x27;s V", "epsilon-squared", "adjusted p-value"):
        assert f"<strong>{term}</strong>: " in appendix, term
    assert "<td>health score</td><td>Kruskal-Wallis</td>" in appendix  # topics in words, not column names


def test_printed_review_keeps_headings_with_content_and_starts_the_appendix_on_a_new_page(review, tmp_path):
    outputs = [
        nbformat.v4.new_output("display_data", data={"text/html": p}) for p in review_html.review_sections(review)
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("", outputs=outputs)])
    page = reports.export_html(nb, tmp_path / "review.html", title="Cohort review")
    css = page[page.index("<style>") : page.index("</style>")]
    prints = "".join(re.findall(r"@media print \{(.*?)\n\}", css, re.S))
    assert re.search(r"h2, h3, h4 \{ break-after: avoid;", prints)
    assert re.search(r"tr, li, \.note \{ break-inside: avoid;", prints)
    assert "thead { display: table-header-group; }" in prints
    assert re.search(r"section\.appendix, section\.glossary \{ break-before: page;", prints)
    assert page.index('<section class="summary"') < page.index('<section class="appendix"')


@pytest.mark.browser
def test_print_rules_apply_in_a_browser(review, tmp_path):
    from tests.test_scorecard_browser import CHROMIUM, CHROMIUM_ARGS, _browser_or_fail

    _browser_or_fail()
    from playwright.sync_api import sync_playwright

    outputs = [
        nbformat.v4.new_output("display_data", data={"text/html": p}) for p in review_html.review_sections(review)
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("", outputs=outputs)])
    path = tmp_path / "review.html"
    reports.export_html(nb, path, title="Cohort review")
    style = "(el, p) => getComputedStyle(el).getPropertyValue(p)"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(path.as_uri())
            page.emulate_media(media="print")
            assert page.locator("section.appendix").evaluate(style, "break-before") == "page"
            assert page.locator("h2").first.evaluate(style, "break-after") == "avoid"
            assert page.locator("section.summary tbody tr").first.evaluate(style, "break-inside") == "avoid"
            assert page.locator("section.summary thead").evaluate(style, "display") == "table-header-group"
            pdf = page.pdf(format="A4")
            assert len(re.findall(rb"/Type\s*/Page(?!s)", pdf)) >= 2  # the appendix starts a page of its own
        finally:
            browser.close()


def test_one_snapshot_date_counts_churn_over_the_observation_window():
    day = dt.date(2026, 3, 2)
    scores = pl.DataFrame(
        {
            "account_id": ["a", "b", "c", "d", "e"],
            "as_of": [day] * 5,
            "segment": ["smb"] * 5,
            "arr": [5.0, 5.0, 10.0, 10.0, 20.0],
            "score": [20.0, 50.0, 60.0, 80.0, 90.0],
            "band": ["red", "yellow", "yellow", "green", "green"],
        }
    )
    events = pl.DataFrame(
        {
            "account_id": ["a", "c", "e"],
            "date": [day + dt.timedelta(days=d) for d in (40, 200, 400)],
            "event": "churned",
        }
    )
    got = band_outcomes(scores, events, day)
    # by hand: every later churn counts (a, c, e); ARR lost 5 + 10 + 20 = 35 of 50
    assert got.select("band", "churned", "arr_lost").rows() == [
        ("red", 1, 5.0),
        ("yellow", 1, 10.0),
        ("green", 1, 20.0),
    ]
    assert got["churned_share"].to_list() == pytest.approx([1 / 3] * 3)
    assert got["arr_lost_share"].to_list() == pytest.approx([5 / 35, 10 / 35, 20 / 35])
    review = cohort_review(scores, events, by="segment")
    assert review.headline()[0] == (
        f"In the observation window after {day}, 3 of the 5 accounts in the book at the start churned (60%), "
        "with ARR 35 (70% of ARR)."
    )
