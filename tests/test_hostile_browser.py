"""Every report type rendered from hostile data and opened in headless Chromium: no script runs,
no dialog opens, nothing is requested but the page itself, and long or direction-changing names
do not break the layout. Each page is opened twice: as shipped (with its Content-Security-Policy)
and with the policy bypassed, so escaping and sanitising alone are shown to hold as well.

Needs Debian's ``/usr/bin/chromium`` (see tests/test_scorecard_browser.py).
"""

from __future__ import annotations

import dataclasses
import html
import json
from pathlib import Path

import healthscore as hs
import nbformat
import polars as pl
import pytest
from healthscore.analysis import scorecard as cards
from healthscore.app import batch as batch_run
from healthscore.render import monitoring as render_monitoring
from healthscore.render import reports
from healthscore.render import scorecard as card_html
from healthscore.spec.model import ModelError

from tests.test_render import _Markup
from tests.test_scorecard_browser import CHROMIUM, CHROMIUM_ARGS, _browser_or_fail

FLAG = "__hs_pwned"
EVIL = "https://evil.example"
HOSTILE = [
    f"<script>window.{FLAG}=1</script>",
    f'<img src=x onerror="window.{FLAG}=1;alert(1)">',
    f'<svg onload="window.{FLAG}=1"><circle r=9 /></svg>',
    f"[click me](javascript:window.{FLAG}=1)",
    f'<a href="javascript:window.{FLAG}=1">link</a>',
    f'<div style="background:url({EVIL}/css.png)">css</div>',
    f"![pixel]({EVIL}/md.png)",
    f'<img src="{EVIL}/img.png">',
    f'<link rel="stylesheet" href="{EVIL}/s.css">',
    f'<iframe src="{EVIL}/frame"></iframe>',
    f"</td></tr></table></div><script>window.{FLAG}=1</script>",
    f'" onmouseover="window.{FLAG}=1" x="',
    f"' autofocus onfocus='window.{FLAG}=1' x='",
    "\u202egnp.exe\u202c Bidi \u2066override\u2069",
    "zero\u200bwidth\u200djoin\ufeffmark",
    "{{7*7}} ${7*7} <% 7*7 %>",
    f"<style>body{{background:url({EVIL}/style.png)}}</style>",
    f'<object data="{EVIL}/o"></object><embed src="{EVIL}/e">',
    "# Heading **bold** <b>b</b>",
    "N" * 10_000,
]


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def hostile_model(colour_red: str = "#D55E00") -> str:
    h = HOSTILE
    return f"""
[model]
name = "hostile"
version = {_toml(h[0])}
min_coverage = 0.3
[categories.usage]
weight = 2
label = {_toml(h[1])}
audience = "customer"
customer_label = {_toml(h[2])}
[categories.team]
weight = 1
label = {_toml(h[3])}
[[metrics]]
name = "logins"
column = "login_days"
category = "usage"
method = "thresholds"
params = {{ points = [[0, 0], [5, 100]] }}
label = {_toml(h[4])}
description = {_toml(h[5])}
action = {_toml(h[6])}
audience = "customer"
customer_label = {_toml(h[7])}
customer_description = {_toml(h[8])}
customer_action = {_toml(h[9])}
[[metrics]]
name = "adoption"
column = "key_feature_adoption"
category = "usage"
method = "thresholds"
params = {{ points = [[0, 0], [1, 100]] }}
label = {_toml(h[10])}
description = {_toml(h[11])}
action = {_toml(h[12])}
audience = "customer"
action_audience = "customer"
[[metrics]]
name = "sponsor"
column = "exec_sponsor_engaged"
category = "team"
method = "boolean"
params = {{ true_score = 100, false_score = 0 }}
label = {_toml(h[13])}
description = {_toml(h[14])}
action = {_toml(h[15])}
[[bands]]
name = {_toml(h[16])}
lower = 0
upper = 40
colour = {_toml(colour_red)}
meaning = {_toml(h[17])}
[[bands]]
name = {_toml(h[18])}
lower = 40
upper = 70
colour = "orange"
meaning = {_toml(h[19])}
[[bands]]
name = {_toml(h[0] + " green")}
lower = 70
upper = 100
colour = "#0f0"
meaning = {_toml(h[3])}
[[alerts]]
name = "entered_low_band"
kind = "enters_band"
band = {_toml(h[16])}
severity = "high"
owner = "CSM"
action = {_toml(h[12])}
[report.fields.csm]
label = {_toml(h[1])}
[report.fields.segment]
label = {_toml(h[6])}
audience = "customer"
"""


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A small portfolio whose company names, CSM names and segment values are all hostile, and a
    model whose labels, actions, band names and meanings are too."""
    folder = tmp_path_factory.mktemp("hostile")
    model_path = folder / "model.toml"
    model_path.write_text(hostile_model())
    model = hs.load_model(model_path)
    book = hs.make_portfolio(n_accounts=60, n_weeks=40, seed=11)
    ids = book.snapshots["account_id"].unique().sort().to_list()
    names = {a: HOSTILE[i % len(HOSTILE)] + f" #{i}" for i, a in enumerate(ids)}
    csms = {a: HOSTILE[(i + 7) % len(HOSTILE)] for i, a in enumerate(ids)}
    segments = {s: HOSTILE[i] for i, s in enumerate(sorted(book.snapshots["segment"].unique().to_list()))}
    snaps = book.snapshots.with_columns(
        company_name=pl.col("account_id").replace_strict(names),
        csm=pl.col("account_id").replace_strict(csms),
        segment=pl.col("segment").replace_strict(segments),
    )
    scores = hs.score(snaps, model)
    return {
        "folder": folder,
        "model": model,
        "model_path": model_path,
        "snapshots": snaps,
        "events": book.events,
        "scores": scores,
        "names": names,
    }


def _page(parts: list[str], path: Path, title: str) -> Path:
    outputs = [nbformat.v4.new_output("display_data", data={"text/html": p}) for p in parts]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("", outputs=outputs)])
    reports.export_html(nb, path, title=title)
    return path


@pytest.fixture(scope="module")
def pages(hostile):
    """Every report type, written from the hostile data."""
    folder, model, scores = hostile["folder"], hostile["model"], hostile["scores"]
    latest = scores.filter(pl.col("as_of") == pl.col("as_of").max()).drop_nulls("score").sort("score")
    # a red account (actions shown) with the 10k-character name where possible
    account = latest["account_id"][0]
    out: dict[str, Path] = {}
    for internal in (False, True):
        card = cards.scorecard_data(scores, model, account, internal=internal, snapshots=hostile["snapshots"])
        # a colour that got past the model (as if a score file carried it) is still not written into CSS
        card = dataclasses.replace(card, band_colour=f"#c00;background-image:url({EVIL}/colour.png)")
        kind = "internal" if internal else "customer"
        out[f"scorecard_{kind}"] = _page(
            card_html.scorecard_sections(card), folder / f"card-{kind}.html", f"{card.company_name}: health scorecard"
        )
    manifest = pl.DataFrame(
        {
            "account_id": latest["account_id"],
            "company_name": latest["company_name"],
            "status": ["rendered"] * (latest.height - 1) + ["failed"],
            "file": [batch_run.safe_name(a) + ".html" for a in latest["account_id"]],
            "error": [None] * (latest.height - 1) + [HOSTILE[0]],
        }
    )
    manifest = manifest.with_columns(score=pl.lit(None, pl.Float64), band=pl.lit(None, pl.String))
    rows, failed = batch_run.index_tables(manifest, scores, model, current=latest["account_id"].to_list())
    batch_run.write_index(folder, rows, failed, model, title=HOSTILE[1])
    out["index"] = folder / "index.html"
    out["review"] = batch_run.render_review(scores, folder / "review.html", events=hostile["events"], by="segment")
    ev = hs.evaluate(hostile["snapshots"], hostile["events"], {"hostile": model}, horizon="90d", by="segment")
    ev.to_html(folder / "evaluation.html", title=HOSTILE[0])
    out["evaluation"] = folder / "evaluation.html"
    snaps = hostile["snapshots"]
    reference = hs.reference_from(
        snaps, hostile["events"], model, horizon="90d", period=(snaps["as_of"].min(), snaps["as_of"].median())
    )
    monitored = hs.monitor(snaps, hostile["events"], model, reference=reference, min_rows=20)
    render_monitoring.monitoring_report(monitored, folder / "monitoring.html", title=HOSTILE[0])
    out["monitoring"] = folder / "monitoring.html"
    return out


def test_hostile_colour_is_refused_when_the_model_loads(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(hostile_model(colour_red=f"#c00;background-image:url({EVIL}/x.png)"))
    with pytest.raises(ModelError, match=r"bands\[1\] .*\.colour: .* is not a colour: write #rgb or #rrggbb"):
        hs.load_model(path)


def test_every_page_carries_the_policy_and_no_live_markup(pages):
    for kind, path in pages.items():
        page = path.read_text()
        assert reports.safe_html.has_csp(page), kind
        if kind == "index":
            # the index carries exactly one script, ours, byte for byte; nothing else may be live
            own = reports.safe_html.script_tag(reports.safe_html.TABLE_SCRIPT)
            assert page.count(own) == 1
            assert reports.safe_html.csp(reports.safe_html.TABLE_SCRIPT) in html.unescape(page.split("</head>")[0])
            page = page.replace(own, "")
        low = page.lower()
        assert "<script" not in low and "<iframe" not in low and "<object" not in low and "<embed" not in low, kind
        parser = _Markup()
        parser.feed(page)
        assert not {"script", "iframe", "object", "embed", "link", "base", "form", "img"} & set(parser.tags), kind
        for tag, name, value in parser.attrs:
            v = "".join(value.split()).lower()
            assert not name.startswith("on"), (kind, tag, name)
            if name == "style":
                assert "url(" not in v and "expression(" not in v, (kind, tag, value)
            if name in ("src", "href", "xlink:href", "action", "data"):
                assert not v.startswith(("javascript:", "http:", "https:", "//")), (kind, tag, name, value)


@pytest.mark.browser
@pytest.mark.slow
def test_hostile_pages_in_chromium(pages, hostile):
    _browser_or_fail()
    from playwright.sync_api import sync_playwright

    # the harness can see a script run: a page that carries one sets the flag once the policy is bypassed
    control = hostile["folder"] / "control.html"
    control.write_text(
        f"<html><head>{reports.safe_html.csp_meta()}</head><body><p>control</p>"
        f"<script>window.{FLAG}=1</script></body></html>"
    )
    control_index = hostile["folder"] / "control-index.html"
    control_index.write_text(
        f"<html><head>{reports.safe_html.csp_meta(reports.safe_html.TABLE_SCRIPT)}</head><body><p>control</p>"
        f"<script>window.{FLAG}=1</script>{reports.safe_html.script_tag(reports.safe_html.TABLE_SCRIPT)}</body></html>"
    )
    results = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for bypass in (False, True):
                context = browser.new_context(bypass_csp=bypass, viewport={"width": 1000, "height": 900})
                probe = context.new_page()
                probe.goto(control.as_uri())
                ran = probe.evaluate(f"() => window.{FLAG} === undefined ? null : window.{FLAG}")
                assert ran == (1 if bypass else None), (bypass, ran)  # the policy alone stops it
                # the index's policy allows our one script by its hash, and still no other
                probe.goto(control_index.as_uri())
                ran = probe.evaluate(f"() => window.{FLAG} === undefined ? null : window.{FLAG}")
                assert ran == (1 if bypass else None), (bypass, ran)
                probe.close()
                for kind, path in pages.items():
                    page = context.new_page()
                    requests: list[str] = []
                    dialogs: list[str] = []
                    page.on("request", lambda r, seen=requests: seen.append(r.url))
                    page.on("dialog", lambda d, seen=dialogs: (seen.append(d.message), d.dismiss()))
                    page.goto(path.as_uri())
                    page.wait_for_load_state("load")
                    # give anything that might fire (onload, onerror, autofocus) a chance to
                    page.mouse.move(200, 200)
                    page.keyboard.press("Tab")
                    page.wait_for_timeout(300)
                    flag = page.evaluate(f"() => window.{FLAG} === undefined ? null : window.{FLAG}")
                    width = page.evaluate("() => document.documentElement.scrollWidth")
                    text = page.evaluate("() => document.body.innerText")
                    results[(kind, bypass)] = (flag, dialogs, requests, width)
                    assert flag is None, (kind, bypass)
                    assert dialogs == [], (kind, bypass, dialogs)
                    assert requests == [path.as_uri()], (kind, bypass, requests)
                    assert f"window.{FLAG}" in text, kind  # the payloads are shown as text, not dropped
                    if kind == "index":  # our own script did run: it shows the search box
                        assert page.locator("#hs-search").is_visible(), bypass
                    assert "\u202e" not in text and "\u2066" not in text, kind
                    if kind not in ("evaluation", "monitoring"):  # wide faceted charts scale down; text must wrap
                        assert width <= 1000, (kind, bypass, width)
                    page.close()
                context.close()
        finally:
            browser.close()
    assert len(results) == 2 * len(pages) == 12
