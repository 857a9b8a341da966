"""The scorecard folder's index (internal): accounts riskiest first, ``index.csv`` beside it with the
same rows, and sorting and searching in the browser, offline, with no request. Also the internal
account view's additions: renewal, probability interval, overrides and alert history.
"""

from __future__ import annotations

import datetime as dt
import html
from html.parser import HTMLParser
from pathlib import Path

import healthscore as hs
import numpy as np
import polars as pl
import pytest
from healthscore.analysis import scorecard as cards
from healthscore.analysis.evaluation import ProbabilityMap
from healthscore.app import batch as batch_run
from healthscore.app import cli
from healthscore.render import formats as fmt
from healthscore.render import html as safe_html
from healthscore.render import scorecard as card_html
from healthscore.render.index import INDEX_CSV_COLUMNS, index_page

from tests.test_scorecard_browser import CHROMIUM, CHROMIUM_ARGS, _browser_or_fail
from tests.test_scorecards import MODEL_TOML, _hand_snapshots

D0, D1 = dt.date(2026, 3, 2), dt.date(2026, 3, 9)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "cardtest.toml"
    path.write_text(MODEL_TOML)
    return hs.load_model(path)


def _history() -> pl.DataFrame:
    """Two weekly scores per account, built so each ordering rule decides one pair."""
    spec = [
        # account, score a week ago, score now, ARR, renewal in days from D1
        ("r_small_fall_far", 35.0, 30.0, 900_000.0, 200),
        ("y_big_fall", 80.0, 50.0, 5_000_000.0, 5),  # the biggest fall, but a better band than red
        ("r_big_fall", 40.0, 25.0, 10_000.0, 30),  # red, the biggest fall among the reds
        ("r_small_fall_soon", 35.0, 30.0, 900_000.0, 10),  # same fall and ARR: the sooner renewal first
        ("r_small_fall_most_arr", 35.0, 30.0, 1_000_000.0, 400),  # same fall: the larger ARR first
        ("g_fall", 95.0, 80.0, 50_000.0, 20),
        ("no_score", 60.0, None, 70_000.0, 3),  # no band: last of all
        ("r_no_arr", 35.0, 30.0, None, 1),  # same fall as the small fallers, no ARR: after them
    ]
    rows = []
    for aid, before, now, arr, days in spec:
        for day, score in ((D0, before), (D1, now)):
            band = None if score is None else ("red" if score < 40 else "yellow" if score < 70 else "green")
            rows.append(
                {
                    "account_id": aid,
                    "as_of": day,
                    "company_name": aid.replace("_", " ").title(),
                    "score": score,
                    "band": band,
                    "csm": "Kim Ray" if aid.startswith("r") else "Lee Park",
                    "arr": arr,
                    "renewal_date": D1 + dt.timedelta(days=days),
                }
            )
    rows.append(  # a new account: one score, so no change yet (after the reds that have one)
        {
            "account_id": "r_new",
            "as_of": D1,
            "company_name": "R New",
            "score": 20.0,
            "band": "red",
            "csm": None,
            "arr": 2_000_000.0,
            "renewal_date": D1 + dt.timedelta(days=2),
        }
    )
    return pl.DataFrame(rows)


EXPECTED = [
    "r_big_fall",
    "r_small_fall_most_arr",
    "r_small_fall_soon",
    "r_small_fall_far",
    "r_no_arr",
    "r_new",
    "y_big_fall",
    "g_fall",
    "no_score",
]


def test_accounts_by_risk_on_known_data(model):
    ranked = cards.accounts_by_risk(_history(), model)
    assert ranked["account_id"].to_list() == EXPECTED
    assert ranked["rank"].to_list() == list(range(1, len(EXPECTED) + 1))
    row = ranked.row(0, named=True)
    assert row["score_change"] == pytest.approx(-15.0) and row["days_to_renewal"] == 30
    assert row["renewal_date"] == D1 + dt.timedelta(days=30) and row["csm"] == "Kim Ray"
    assert ranked.filter(pl.col("account_id") == "r_new")["score_change"].to_list() == [None]
    # as_of: the scores of a week ago only (no change to compare yet, so ARR decides among the reds)
    earlier = cards.accounts_by_risk(_history(), model, as_of=D0)
    assert earlier["as_of"].unique().to_list() == [D0] and "r_new" not in earlier["account_id"].to_list()
    assert earlier["account_id"].head(3).to_list() == ["r_small_fall_most_arr", "r_small_fall_soon", "r_small_fall_far"]


def test_accounts_by_risk_uses_the_score_change_the_scores_carry(model):
    book = hs.make_portfolio(n_accounts=30, n_weeks=8, seed=4)
    scores = hs.score(book.snapshots, model)
    ranked = cards.accounts_by_risk(scores, model)
    without = cards.accounts_by_risk(scores.drop("score_change_1"), model)  # computed from the history
    assert ranked.drop("rank").equals(without.drop("rank"))
    assert ranked["account_id"].to_list() == without["account_id"].to_list()
    bands = ranked["band"].to_list()
    order = {b: i for i, b in enumerate(model.band_order)}
    keys = [order.get(b, 99) if b is not None else 100 for b in bands]
    assert keys == sorted(keys)  # worst band first, blanks last


def test_missing_columns_read_as_blank(model, tmp_path):
    bare = _history().drop("csm", "arr", "renewal_date", "company_name")
    ranked = cards.accounts_by_risk(bare, model)
    assert ranked.columns == list(cards.INDEX_COLUMNS)
    assert ranked[["csm", "arr", "renewal_date", "days_to_renewal"]].null_count().row(0) == (9, 9, 9, 9)
    # band and change still decide; the account id breaks ties that ARR and renewal would have
    assert ranked["account_id"].head(2).to_list() == ["r_big_fall", "r_no_arr"]
    page = index_page(ranked, title="Scorecards", band_order=model.band_order)
    assert safe_html.has_csp(page)
    assert _table(page)[0]["cells"][5:8] == [fmt.MISSING, fmt.MISSING, fmt.MISSING]


def test_index_takes_account_columns_from_the_snapshots_when_the_scores_lack_them(model):
    snaps = _history().drop("score", "band")
    bare = _history().drop("csm", "arr", "renewal_date", "company_name")
    manifest = pl.DataFrame(
        {"account_id": EXPECTED, "status": ["rendered"] * len(EXPECTED), "file": [f"{a}.html" for a in EXPECTED]}
    ).with_columns(
        [pl.lit(None, pl.String).alias(c) for c in ("company_name", "error", "band")]
        + [pl.lit(None, pl.Float64).alias("score")]
    )
    rows, failed = batch_run.index_tables(manifest, bare, model, current=EXPECTED, snapshots=snaps)
    assert rows["account_id"].to_list() == EXPECTED and failed.is_empty()
    full = cards.accounts_by_risk(_history(), model)
    assert rows.drop("page", "pdf").equals(full, null_equal=True)
    assert rows["page"].to_list() == [f"{a}.html" for a in EXPECTED]
    # without the snapshots the same accounts, the columns blank, the order by band and change
    blank, _ = batch_run.index_tables(manifest, bare, model, current=EXPECTED)
    assert blank["csm"].null_count() == blank.height and blank["account_id"].head(1).to_list() == ["r_big_fall"]


def test_index_links_the_pdf_printed_beside_a_page(model, tmp_path):
    ids = ["r_big_fall", "g_fall", "y_big_fall"]
    manifest = pl.DataFrame(
        {
            "account_id": ids,
            "status": ["rendered", "unchanged", "failed"],
            "file": [f"{a}.html" for a in ids],
            # g_fall's PDF is not the one beside its page: it is not linked
            "pdf": ["r_big_fall.pdf", "other.pdf", "y_big_fall.pdf"],
            "error": [None, None, "ValueError: stopped"],
        }
    ).with_columns(pl.lit(None, pl.String).alias("company_name"), pl.lit(None, pl.Float64).alias("score"))
    rows, failed = batch_run.index_tables(manifest, _history(), model, current=ids)
    batch_run.write_index(tmp_path, rows, failed, model)
    csv = pl.read_csv(tmp_path / "index.csv", infer_schema=False)
    assert dict(zip(csv["account_id"], csv["pdf"])) == {
        "r_big_fall": "r_big_fall.pdf",
        "g_fall": None,
        "y_big_fall": None,
    }
    links = {r["account"]: r["links"] for r in _table((tmp_path / "index.html").read_text())}
    assert links == {
        "r_big_fall": ["r_big_fall.html", "r_big_fall.html", "r_big_fall.pdf"],
        "y_big_fall": [],
        "g_fall": ["g_fall.html", "g_fall.html"],
    }
    assert failed.rows() == [("y_big_fall", "Y Big Fall", "ValueError: stopped")]


class _Rows(HTMLParser):
    """The body rows of the index table: account id (data-account) and each cell's text."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict] = []
        self._in_body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append({"account": dict(attrs).get("data-account"), "cells": [], "links": []})
        elif tag == "td" and self._in_body:
            self._cell = []
        elif tag == "a" and self._cell is not None:
            self.rows[-1]["links"].append(dict(attrs).get("href"))

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1]["cells"].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _table(page: str) -> list[dict]:
    body = page.split('id="hs-accounts"', 1)[1]
    parser = _Rows()
    parser.feed(body.split("</table>", 1)[0] + "</table>")
    return parser.rows


@pytest.fixture(scope="module")
def folder(model, tmp_path_factory):
    """An index written as the batch writes it: a scored portfolio, one account failed."""
    out = tmp_path_factory.mktemp("index")
    book = hs.make_portfolio(n_accounts=40, n_weeks=12, seed=8)
    scores = hs.score(book.snapshots, model)
    ids = scores["account_id"].unique().sort().to_list()
    manifest = pl.DataFrame(
        {
            "account_id": ids,
            "company_name": [None] * len(ids),
            "status": ["rendered"] * (len(ids) - 1) + ["failed"],
            "file": [batch_run.safe_name(a) + ".html" for a in ids],
            "error": [None] * (len(ids) - 1) + ["ValueError: the notebook stopped"],
            "score": [None] * len(ids),
            "band": [None] * len(ids),
        },
        schema_overrides={"score": pl.Float64, "band": pl.String, "company_name": pl.String, "error": pl.String},
    )
    rows, failed = batch_run.index_tables(manifest, scores, model, current=ids)
    batch_run.write_index(out, rows, failed, model)
    return {"out": out, "ids": ids, "failed": ids[-1], "scores": scores, "model": model}


def test_index_csv_holds_the_page_rows_in_the_same_order(folder):
    page = (folder["out"] / "index.html").read_text()
    csv = pl.read_csv(folder["out"] / "index.csv", try_parse_dates=True)
    assert csv.columns == INDEX_CSV_COLUMNS
    rows = _table(page)
    assert [r["account"] for r in rows] == csv["account_id"].to_list()
    assert sorted(csv["account_id"].to_list()) == folder["ids"]
    for r, c in zip(rows, csv.iter_rows(named=True)):
        cells = r["cells"]
        assert cells[0] == str(c["rank"])
        assert cells[1] == f"{c['company_name']}{c['account_id']}"
        if c["band"] is None:
            assert cells[2] == fmt.MISSING
        else:  # the band's shape, then its name
            assert cells[2][0] in "\u25b2\u25a0\u25cf\u25c6" and cells[2][1:] == c["band"]
        assert cells[3] == fmt.points(c["score"])
        assert cells[4] == fmt.points(c["score_change"], signed=True)
        assert cells[5] == (c["csm"] or fmt.MISSING)
        assert cells[6] == fmt.money(c["arr"])
        if c["renewal_date"] is not None:
            assert cells[7].startswith(fmt.date(c["renewal_date"], style="short"))
        if c["page"] is None:
            assert r["links"] == [] and cells[8] == "not rendered"
        else:  # no PDF was printed in this folder
            assert r["links"] == [c["page"], c["page"]] and c["pdf"] is None
    # the failed account has no page and is listed under the table with its error
    assert csv.filter(pl.col("account_id") == folder["failed"])["page"].to_list() == [None]
    assert "Not rendered (1)" in page and "ValueError: the notebook stopped" in page
    # the page's order is the risk order of the scores
    assert csv["rank"].to_list() == list(range(1, csv.height + 1))
    assert csv.drop("page", "pdf").equals(
        cards.accounts_by_risk(folder["scores"], folder["model"]).with_columns(pl.col("as_of")), null_equal=True
    )


def test_index_page_carries_only_our_script_under_the_policy(folder):
    page = (folder["out"] / "index.html").read_text()
    assert safe_html.has_csp(page)
    own = safe_html.script_tag(safe_html.TABLE_SCRIPT)
    assert page.count("<script") == 1 and page.count(own) == 1
    policy = html.unescape(page.split("</head>")[0])
    assert (
        safe_html.csp(safe_html.TABLE_SCRIPT) in policy
        and "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    )
    # the script never writes markup nor asks for anything
    for word in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "fetch",
        "XMLHttpRequest",
        "import(",
    ):
        assert word not in safe_html.TABLE_SCRIPT, word
    # a page that carries another script, or our script changed by a byte, is not recognised
    assert not safe_html.has_csp("<head>" + safe_html.csp_meta(safe_html.TABLE_SCRIPT + " ") + "</head>")
    # no status column: the report column names no run status
    assert "Report</th>" not in page and ">rendered<" not in page


_VISIBLE = (
    "() => [...document.querySelectorAll('#hs-accounts tbody tr')].filter(r => !r.hidden).map(r => r.dataset.account)"
)


def _sorted_ids(csv: pl.DataFrame, column: str, *, descending: bool, text: bool = False) -> list[str]:
    """The order a click on a heading should give: by ``column``, blanks last, ties in risk order."""
    rows = sorted(csv.iter_rows(named=True), key=lambda r: r["rank"])
    present = [r for r in rows if r[column] is not None]
    blank = [r for r in rows if r[column] is None]
    # Python's sort is stable also with reverse=True: equal keys keep the risk order
    present.sort(key=lambda r: r[column].lower() if text else r[column], reverse=descending)
    return [r["account_id"] for r in present + blank]


@pytest.mark.browser
def test_index_sorts_and_filters_in_a_browser_offline(folder):
    _browser_or_fail()
    from playwright.sync_api import sync_playwright

    path: Path = folder["out"] / "index.html"
    csv = pl.read_csv(folder["out"] / "index.csv", try_parse_dates=True)
    csv = csv.with_columns(name=pl.coalesce("company_name", "account_id"))
    risk = csv["account_id"].to_list()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            requests: list[str] = []
            errors: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri())
            assert page.evaluate(_VISIBLE) == risk  # riskiest first, as the CSV
            search = page.locator("#hs-search")
            assert search.is_visible()  # our script ran under the page's policy

            page.get_by_role("button", name="Score", exact=True).click()
            up = page.evaluate(_VISIBLE)
            assert up == _sorted_ids(csv, "score", descending=False) and up != risk
            assert page.locator("th[aria-sort=ascending]").inner_text().startswith("Score")
            page.get_by_role("button", name="Score", exact=True).click()
            assert page.evaluate(_VISIBLE) == _sorted_ids(csv, "score", descending=True)
            page.get_by_role("button", name="Account", exact=True).click()
            assert page.evaluate(_VISIBLE) == _sorted_ids(csv, "name", descending=False, text=True)
            page.get_by_role("button", name="ARR", exact=True).click()
            assert page.evaluate(_VISIBLE) == _sorted_ids(csv, "arr", descending=False)
            page.get_by_role("button", name="#", exact=True).click()
            assert page.evaluate(_VISIBLE) == risk  # back to the risk order

            # typing filters the rows: a CSM's name keeps that CSM's accounts
            csm = csv.drop_nulls("csm")["csm"].mode().sort()[0]
            search.fill(csm.lower())
            mine = csv.filter(pl.col("csm") == csm)["account_id"].to_list()
            assert page.evaluate(_VISIBLE) == mine and 0 < len(mine) < csv.height
            assert page.locator("#hs-shown").inner_text() == f"{len(mine)} of {csv.height} accounts match"
            # an account id keeps that account only
            search.fill(risk[3])
            assert page.evaluate(_VISIBLE) == [risk[3]]
            search.fill("no such account anywhere")
            assert page.evaluate(_VISIBLE) == []
            search.fill("")
            assert page.evaluate(_VISIBLE) == risk
            assert errors == []
            assert requests == [path.as_uri()], requests  # nothing loaded, nothing sent
            page.close()

            # with scripts off the page is the same table in risk order, with no dead search box
            context = browser.new_context(java_script_enabled=False)
            still = context.new_page()
            still.goto(path.as_uri())
            ids = still.eval_on_selector_all("#hs-accounts tbody tr", "rows => rows.map(r => r.dataset.account)")
            assert ids == risk and not still.locator("#hs-search").is_visible()
            context.close()
        finally:
            browser.close()


# ----------------------------------------------------------------------------- internal view
def _hand(model):
    return _hand_snapshots().with_columns(renewal_date=pl.lit(dt.date(2026, 9, 1)))


def test_internal_view_shows_renewal_overrides_and_probability_interval(model):
    snaps = _hand(model)
    weeks = sorted(snaps.filter(pl.col("account_id") == "a")["as_of"].to_list())
    overrides = pl.DataFrame(
        {
            "account_id": ["a"],
            "metric": ["overall"],
            "value": [15.0],
            "reason": ["Sponsor resigned; renewal at risk"],
            "author": ["kim.ray"],
            "created": [weeks[3].isoformat()],
            "expires": [""],
        }
    )
    scores = hs.score(snaps, model, overrides=overrides)
    pm = ProbabilityMap("isotonic", min_events=1).fit(
        np.array([0.0, 10.0, 30.0, 40.0, 90.0, 100.0]), np.array([1, 1, 1, 0, 0, 0])
    )
    card = cards.scorecard_data(scores, model, "a", internal=True, probabilities=pm, snapshots=snaps)
    fields = card.internal
    assert fields["CSM"] == "Casey Internal" and fields["ARR"] == 50_000.0
    assert fields["Renewal date"] == dt.date(2026, 9, 1)
    assert fields["Days to renewal"] == (dt.date(2026, 9, 1) - weeks[-1]).days
    lower, upper = (float(v[0]) for v in pm.predict_interval([15.0]))
    assert card.probability_interval == pytest.approx((lower, upper, 0.95))
    assert card.overrides.select("from_date", "to_date", "target", "value", "author").rows() == [
        (weeks[3], weeks[-1], "overall", 15.0, "kim.ray")
    ]
    page = html.unescape("".join(card_html.scorecard_sections(card)))
    assert "Sponsor resigned; renewal at risk" in page and "Score overrides" in page
    assert f"{fmt.percent(lower, 0)} to {fmt.percent(upper, 0)}" in page
    assert "Days to renewal" in page

    public = cards.scorecard_data(scores, model, "a", snapshots=snaps)
    assert public.overrides is None and public.alert_history is None and public.probability_interval is None
    text = html.unescape("".join(card_html.scorecard_sections(public)))
    for phrase in ("Sponsor resigned", "kim.ray", "Score overrides", "Alert history", "Days to renewal", "Casey"):
        assert phrase not in text, phrase


@pytest.mark.notebook
@pytest.mark.slow
def test_demo_scorecards_show_the_alert_history(tmp_path):
    line = cli._demo_scorecards(tmp_path)
    out = tmp_path / "scorecards"
    manifest = pl.read_csv(out / "manifest.csv")
    assert set(manifest["status"]) == {"rendered"}, line
    pages = {a: (out / f).read_text() for a, f in zip(manifest["account_id"], manifest["file"])}
    with_alerts = [a for a, p in pages.items() if 'data-alert="' in p]
    assert with_alerts, "no demo card shows an alert"
    assert all("Alert history" in p and "Internal only" in p for p in pages.values())
    assert (out / "index.csv").is_file() and safe_html.has_csp((out / "index.html").read_text())
