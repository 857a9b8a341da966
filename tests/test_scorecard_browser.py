"""A person's look at a scorecard: render one, open it in headless Chromium, check what a reader
sees and keep a screenshot in ``build/test-artifacts/``.

Needs Debian's ``/usr/bin/chromium``. When it is missing the test fails with a clear message,
unless ``HEALTHSCORE_NO_BROWSER=1`` says this machine has no browser on purpose.
"""

from __future__ import annotations

import os
from pathlib import Path

import healthscore as hs
import nbformat
import pytest
from healthscore.analysis import scorecard as cards
from healthscore.app import batch as batch_run
from healthscore.app import pdf
from healthscore.render import reports
from healthscore.render import scorecard as card_html

from tests.test_scorecards import MODEL_TOML

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "build" / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", *pdf.ARGS]  # the quiet browser the PDF printer uses

# the model of the scorecard tests plus a relationship area with a yes/no metric
MODEL = (
    MODEL_TOML
    + """
[categories.relationship]
label = "Relationship"
[[metrics]]
name = "sponsor"
column = "exec_sponsor_engaged"
category = "relationship"
method = "boolean"
params = { true_score = 100, false_score = 0 }
label = "Executive sponsor engaged"
description = "An executive sponsor met us in the last 90 days"
action = "Schedule an executive business review."
"""
)


def _browser_or_fail() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("HEALTHSCORE_NO_BROWSER") == "1":
        pytest.skip("HEALTHSCORE_NO_BROWSER=1: no browser on this machine by choice")
    pytest.fail(
        f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium) "
        "or set HEALTHSCORE_NO_BROWSER=1 to skip the browser tests on purpose"
    )


@pytest.mark.browser
def test_scorecard_in_a_browser(tmp_path):
    _browser_or_fail()
    from playwright.sync_api import sync_playwright

    model_path = tmp_path / "model.toml"
    model_path.write_text(MODEL)
    model = hs.load_model(model_path)
    portfolio = hs.make_portfolio(n_accounts=40, n_weeks=30, seed=3)
    scores = hs.score(portfolio.snapshots, model)
    latest = scores.filter(scores["as_of"] == scores["as_of"].max()).drop_nulls("score").sort("account_id")
    account = latest["account_id"][0]
    card = cards.scorecard_data(scores, model, account, snapshots=portfolio.snapshots)
    outputs = [
        nbformat.v4.new_output("display_data", data={"text/html": part}) for part in card_html.scorecard_sections(card)
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("", outputs=outputs)])
    page_path = tmp_path / f"{batch_run.safe_name(account)}.html"
    reports.export_html(nb, page_path, title=f"{card.company_name}: health scorecard")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 1200})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_path.as_uri())
            score = page.locator("[data-role=score]")
            assert score.is_visible() and score.inner_text() == f"{card.score:.0f}"
            band = page.locator(".hs-score .band")
            assert band.is_visible() and band.inner_text().strip().endswith(card.band)  # after its shape
            assert page.get_by_role("heading", name=card.company_name).is_visible()
            chart = page.locator("figure.chart svg")
            assert chart.count() == 1 and chart.is_visible()
            box = chart.bounding_box()
            assert box is not None and box["width"] > 400 and box["height"] > 150
            assert page.get_by_text("not applicable").count() + page.get_by_text("green").count() > 0
            assert all(u.startswith("file:") or u.startswith("data:") for u in requests), requests
            page.screenshot(path=str(ARTIFACTS / "scorecard.png"), full_page=True)
            page.emulate_media(media="print")
            page.screenshot(path=str(ARTIFACTS / "scorecard-print.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "scorecard.png").stat().st_size > 10_000


def _sample_customer_page(tmp_path: Path) -> Path:
    """The customer scorecard of the bundled sample's lowest-scored account (the longest card:
    every area red, every next step shown), exported as the batch exports it."""
    import datetime as dt

    import polars as pl
    from healthscore import resources

    model = hs.load_model(resources.sample_model())
    snaps = hs.load_sample().snapshots
    last = snaps["as_of"].max()
    snaps = snaps.filter(pl.col("as_of") > last - dt.timedelta(weeks=cards.TREND_WEEKS + 6))
    scores = hs.score(snaps, model)
    latest = scores.filter(pl.col("as_of") == last).drop_nulls("score").sort("score", "account_id")
    card = cards.scorecard_data(scores, model, latest["account_id"][0], snapshots=snaps)
    assert card.audience == "customer" and card.metrics.height >= 5
    outputs = [
        nbformat.v4.new_output("display_data", data={"text/html": part}) for part in card_html.scorecard_sections(card)
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("", outputs=outputs)])
    page_path = tmp_path / "sample-card.html"
    reports.export_html(nb, page_path, title=f"{card.company_name}: health scorecard")
    return page_path


def _pdf_pages(data: bytes) -> int:
    try:
        import pypdf  # optional: a real PDF reader when the venv has one
    except ImportError:
        import re

        return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", data))
    import io

    return len(pypdf.PdfReader(io.BytesIO(data)).pages)


@pytest.mark.browser
def test_customer_scorecard_prints_on_one_page_and_fits_a_phone(tmp_path):
    _browser_or_fail()
    from playwright.sync_api import sync_playwright

    page_path = _sample_customer_page(tmp_path)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            page.goto(page_path.as_uri())
            page.screenshot(path=str(tmp_path / "phone-390.png"), full_page=True)
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            chart = page.locator("figure.chart svg").bounding_box()
            assert chart is not None and chart["width"] <= 390
            # every measure's value and score stays readable on the phone (labelled, not squeezed)
            cell = page.locator("table.stack td[data-label=Value]").first.bounding_box()
            assert cell is not None and cell["width"] > 200
            pages = {}
            for paper in ("A4", "Letter"):
                pdf = page.pdf(format=paper, print_background=True)
                (tmp_path / f"scorecard-{paper}.pdf").write_bytes(pdf)
                pages[paper] = _pdf_pages(pdf)
            page.set_viewport_size({"width": 760, "height": 1000})
            page.emulate_media(media="print")
            page.screenshot(path=str(tmp_path / "print.png"), full_page=True)
            text = page.inner_text("main")
        finally:
            browser.close()
    assert pages == {"A4": 1, "Letter": 1}, pages
    # nothing customer-relevant is dropped from the printed page
    for heading in (
        "Trend over the last 26 weeks",
        "Scores by area",
        "What the score is made of",
        "Recommended next steps",
        "Your account",
    ):
        assert heading in text


_BADGE_STYLES = """() => [...document.querySelectorAll('.band')].map(e => {
  const s = getComputedStyle(e);
  return {text: e.innerText.trim(), color: s.color, background: s.backgroundColor};
})"""


def _rgb(css: str) -> str:
    import re

    r, g, b = (int(v) for v in re.findall(r"\d+", css)[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


@pytest.mark.browser
def test_band_badges_have_readable_text_and_a_shape(tmp_path):
    _browser_or_fail()
    from playwright.sync_api import sync_playwright

    from tests.test_palette_access import contrast

    page_path = _sample_customer_page(tmp_path)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 1200})
            page.goto(page_path.as_uri())
            badges = page.evaluate(_BADGE_STYLES)
            page.screenshot(path=str(tmp_path / "badges.png"), full_page=True)
        finally:
            browser.close()
    assert len(badges) >= 5
    ratios = {}
    for b in badges:
        assert b["background"] not in ("rgba(0, 0, 0, 0)", "transparent"), b
        ratios[b["text"]] = contrast(_rgb(b["color"]), _rgb(b["background"]))
        # the shape comes first, then the band name: never the colour alone
        assert b["text"][0] in "\u25b2\u25a0\u25cf\u25c6\u25cb" and len(b["text"]) > 2, b
    assert min(ratios.values()) >= 4.5, ratios
    print("badge contrast:", {k: round(v, 2) for k, v in ratios.items()})
