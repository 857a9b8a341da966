"""Per-account scorecards: content on known data, privacy of the HTML, the batch renderer.

The batch tests run the real notebook in warm kernels on a small portfolio whose account ids and
company names are distinctive random words, so a leak of another account would be found by a
plain substring search.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import json
import re
import subprocess
import sys
from pathlib import Path

import healthscore as hs
import nbformat
import numpy as np
import polars as pl
import pytest
from healthscore.analysis import scorecard as cards
from healthscore.app import batch as batch_run
from healthscore.app import cli
from healthscore.render import reports
from healthscore.render import scorecard as card_html
from healthscore.viz import scorecard as card_charts
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]

MODEL_TOML = """
[model]
name = "cardtest"
version = "2.0.0"
min_coverage = 0.3

[categories.usage]
weight = 1
label = "Product usage"
audience = "customer"
[categories.support]
weight = 1
label = "Support"
audience = "customer"

[[metrics]]
name = "logins"
column = "login_days"
category = "usage"
method = "thresholds"
params = { points = [[0, 0], [5, 100]] }
label = "Login days"
description = "Days with any login in the week"
action = "Agree a weekly routine with the team lead."
audience = "customer"
action_audience = "customer"

[[metrics]]
name = "adoption"
column = "key_feature_adoption"
category = "usage"
method = "thresholds"
params = { points = [[0, 0], [1, 100]] }
unit = "ratio"
label = "Feature adoption"
description = "Share of key features in use"
action = "Book a feature workshop."
audience = "customer"
customer_action = "Ask us for a feature workshop."

[[metrics]]
name = "csat"
column = "csat"
category = "support"
method = "thresholds"
params = { points = [[1, 0], [5, 100]] }
label = "Support satisfaction"
description = "Mean CSAT of closed tickets"
action = "Review open tickets together."
audience = "customer"
"""


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "cardtest.toml"
    path.write_text(MODEL_TOML)
    return path


@pytest.fixture(scope="module")
def model(model_path):
    return hs.load_model(model_path)


# ----------------------------------------------------------------------------- known data
def _weeks(n: int, end: dt.date = dt.date(2026, 6, 29)) -> list[dt.date]:
    return [end - dt.timedelta(weeks=n - 1 - i) for i in range(n)]


def _hand_snapshots() -> pl.DataFrame:
    """Account ``a``: six weeks; logins drop from 5 to 1 in the last week and CSAT goes missing.
    Peers ``p1..p6`` share its segment (7 accounts; p6 is perfect); ``t0..t2`` form a cohort of 3."""
    weeks = _weeks(6)
    rows = []
    for i, d in enumerate(weeks):
        last = i == len(weeks) - 1
        rows.append(
            {
                "account_id": "a",
                "as_of": d,
                "company_name": "Alpha Widgets",
                "segment": "core",
                "csm": "Casey Internal",
                "arr": 50_000.0,
                "login_days": 1.0 if last else 5.0,
                "key_feature_adoption": 0.5,
                "csat": None if last else 5.0,
            }
        )
    for k in range(1, 7):
        rows.append(
            {
                "account_id": f"p{k}",
                "as_of": weeks[-1],
                "company_name": f"Peer {k}",
                "segment": "core",
                "csm": "Casey Internal",
                "arr": 10_000.0,
                "login_days": float(k - 1),
                "key_feature_adoption": 1.0 if k == 6 else 0.5,
                "csat": 5.0 if k == 6 else 3.0,
            }
        )
    for k in range(3):
        rows.append(
            {
                "account_id": f"t{k}",
                "as_of": weeks[-1],
                "company_name": f"Tiny {k}",
                "segment": "tiny",
                "csm": None,
                "arr": 1_000.0,
                "login_days": 2.0,
                "key_feature_adoption": 0.2,
                "csat": 4.0,
            }
        )
    return pl.DataFrame(rows)


@pytest.fixture(scope="module")
def hand(model):
    snaps = _hand_snapshots()
    return snaps, hs.score(snaps, model)


def test_scorecard_data_on_known_values(hand, model):
    snaps, scores = hand
    card = cards.scorecard_data(scores, model, "a", snapshots=snaps)
    # last week: usage = (20 + 50) / 2 = 35, support N/A -> the score is the usage score
    assert card.as_of == dt.date(2026, 6, 29)
    assert card.score == pytest.approx(35.0)
    assert card.band == "red" and card.band_colour == "#A6192E"
    m = {r["metric"]: r for r in card.metrics.iter_rows(named=True)}
    assert (m["logins"]["raw"], m["logins"]["sub_score"], m["logins"]["status"]) == (1.0, 20.0, "red")
    assert (m["adoption"]["sub_score"], m["adoption"]["status"]) == (50.0, "yellow")
    # N/A is "not applicable", grey, never red
    assert m["csat"]["status"] == "not applicable" and m["csat"]["sub_score"] is None
    assert m["csat"]["colour"] != "#A6192E" and m["csat"]["raw"] is None
    # the month before: (100 + 50) / 2 = 75 usage, 100 support -> 87.5
    assert card.previous_score == pytest.approx(87.5)
    assert card.previous_as_of == dt.date(2026, 6, 1)
    ch = dict(zip(card.changes["metric"], card.changes["points"]))
    # drivers of the change: logins 0.5*20 - 0.25*100, adoption 0.5*50 - 0.25*50, csat 0 - 0.5*100
    assert ch == pytest.approx({"logins": -15.0, "adoption": 12.5, "csat": -50.0})
    assert sum(ch.values()) == pytest.approx(card.score - card.previous_score)
    assert card.actions.rows() == [
        ("logins", "Login days", "Agree a weekly routine with the team lead.", cards.JOINT_OWNER, 40.0)
    ]
    assert card.trend.height == 6 and card.trend["score"].to_list()[0] == pytest.approx(87.5)
    assert dict(zip(card.categories["category"], card.categories["score"])) == {"usage": 35.0, "support": None}
    assert card.model_hash == "" and card.variant is None and len(card.report_id) == 10  # customer card
    assert card.internal is None
    inside = cards.scorecard_data(scores, model, "a", snapshots=snaps, internal=True)
    assert (inside.model_name, inside.model_version, inside.model_hash) == ("cardtest", "2.0.0", model.hash)
    assert inside.report_id == card.report_id
    assert "Alpha Widgets" in card.summary() and "35/100 (red)" in card.summary()


def test_peer_percentiles_shown_for_five_or_more(hand, model):
    snaps, scores = hand
    card = cards.scorecard_data(scores, model, "a")
    assert card.peer_size == 7
    # peers p1..p5: usage (20*(k-1) + 50) / 2, support 50; p6 scores 100; a scores 35: the lowest
    overall = card.peers.filter(pl.col("measure") == "score").row(0, named=True)
    assert overall["percentile"] == 0.0
    assert overall["cohort_median"] == pytest.approx(float(np.median([35, 37.5, 42.5, 47.5, 52.5, 57.5, 100])))
    p3 = cards.scorecard_data(scores, model, "p3").peers.filter(pl.col("measure") == "score")
    assert p3["percentile"][0] == pytest.approx(3 / 6 * 100)  # ahead of a, p1, p2 out of six others
    # "a" is the lowest of its cohort: no comparison is shown to it (no shaming)
    html_text = "".join(card_html.scorecard_sections(card))
    assert "similar accounts" not in html_text and "typically score" not in html_text
    p3_html = "".join(card_html.scorecard_sections(cards.scorecard_data(scores, model, "p3")))
    assert "7 similar accounts" in p3_html and "Ahead of" not in p3_html
    assert f"Accounts like yours typically score {overall['cohort_median']:.0f}." in p3_html


def test_values_carry_their_unit_and_points_agree(hand, model):
    snaps, scores = hand
    card = cards.scorecard_data(scores, model, "a", snapshots=snaps)
    adoption = card.metrics.filter(pl.col("metric") == "adoption").row(0, named=True)
    assert adoption["unit"] == "ratio" and adoption["raw"] == pytest.approx(0.5)
    html_text = "".join(card_html.scorecard_sections(card))
    row = re.search(r"Feature adoption.*?</tr>", html_text).group(0)
    assert '<td class="num" data-label="Value">50%</td>' in row
    # 87.5 -> 35: the head names the change in points, with the noun agreeing
    assert re.search(r"Your score went down 5\d points \(88 → 35\)", html_text), html_text
    assert not re.search(r"\b1(\.0)? points\b", html_text)


def test_peer_percentiles_hidden_under_five(hand, model):
    _, scores = hand
    card = cards.scorecard_data(scores, model, "t1")
    assert card.peer_size == 3 and card.peers is None
    html_text = "".join(card_html.scorecard_sections(card))
    assert "similar accounts" not in html_text and "typically score" not in html_text


def test_internal_fields_only_when_asked(hand, model):
    snaps, scores = hand
    public = "".join(card_html.scorecard_sections(cards.scorecard_data(scores, model, "a")))
    internal = "".join(card_html.scorecard_sections(cards.scorecard_data(scores, model, "a", internal=True)))
    assert "Casey Internal" not in public and "50,000" not in public and "Internal only" not in public
    assert "Casey Internal" in internal and "50.0k" in internal and "Internal only" in internal


def test_internal_probability_from_a_probability_map(hand, model):
    from healthscore.analysis.evaluation import ProbabilityMap

    _, scores = hand
    pm = ProbabilityMap("isotonic").fit(np.array([0.0, 30.0, 40.0, 100.0]), np.array([1, 1, 0, 0]))
    card = cards.scorecard_data(scores, model, "a", internal=True, probabilities=pm)
    key = next(k for k in card.internal if "probability" in k)
    assert card.internal[key] == pytest.approx(float(pm.predict([35.0])[0]))
    assert "%" in "".join(card_html.scorecard_sections(card))


def test_internal_probability_from_the_map_frozen_in_the_model(hand, model, tmp_path):
    from healthscore.analysis.evaluation import ProbabilityMap

    _, scores = hand
    pm = ProbabilityMap("isotonic").fit(np.array([0.0, 30.0, 40.0, 100.0]), np.array([1, 1, 0, 0]))
    model.with_probability_map(pm).save(tmp_path / "frozen.toml")
    scores.write_parquet(tmp_path / "scores.parquet")
    card = card_html.scorecard("a", scores=tmp_path / "scores.parquet", model=tmp_path / "frozen.toml", internal=True)
    key = next(k for k in card.internal if "probability" in k)
    assert card.internal[key] == pytest.approx(float(pm.predict([35.0])[0]))
    public = card_html.scorecard("a", scores=tmp_path / "scores.parquet", model=tmp_path / "frozen.toml")
    assert public.internal is None  # the customer version carries no internal field at all


def test_unknown_account_names_it(hand, model):
    _, scores = hand
    with pytest.raises(ValueError, match="'nobody' has no rows"):
        cards.scorecard_data(scores, model, "nobody")


def test_as_of_picks_an_earlier_snapshot(hand, model):
    _, scores = hand
    card = cards.scorecard_data(scores, model, "a", as_of="2026-06-22")
    assert card.as_of == dt.date(2026, 6, 22) and card.score == pytest.approx(87.5)
    assert card.trend.height == 5


def test_markup_in_names_and_labels_is_inert(hand, model):
    snaps, _ = hand
    evil = "<script>alert(1)</script>"
    snaps = snaps.with_columns(
        pl.when(pl.col("account_id") == "a").then(pl.lit(evil)).otherwise(pl.col("company_name")).alias("company_name")
    )
    card = cards.scorecard_data(hs.score(snaps, model), model, "a")
    page = reports.export_html(_notebook_of(card_html.scorecard_sections(card)), None, title=evil)
    assert "<script" not in page
    assert html.escape(evil) in page  # shown as text, in the heading and the title


def _notebook_of(parts: list[str]) -> nbformat.NotebookNode:
    outputs = [nbformat.v4.new_output("display_data", data={"text/html": p}) for p in parts]
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("secret_code_marker()", outputs=outputs)])


def test_trend_chart_holds_only_this_accounts_rows(hand, model):
    _, scores = hand
    card = cards.scorecard_data(scores, model, "a")
    spec = json.dumps(card_charts.trend_chart(card).to_dict(validate=False), default=str)
    assert "Alpha Widgets" not in spec and "Peer 1" not in spec and "p1" not in spec
    datasets = card_charts.trend_chart(card).to_dict(validate=False)["datasets"]
    sizes = sorted(len(v) for v in datasets.values())
    assert sizes == [1, 3, 6]  # last point, the three bands, six weeks of this account
    svg = card_charts.chart_svg(card_charts.trend_chart(card))
    assert svg.startswith("<svg") and "<script" not in svg
    for band in ("red", "yellow", "green"):  # every band named beside its colour
        assert f">{band}<" in svg


# ----------------------------------------------------------------------------- export
def test_export_html_has_no_code_inputs_or_widget_state(tmp_path):
    import altair as alt

    chart = alt.Chart(pl.DataFrame({"x": [1, 2], "y": [3, 4]})).mark_line().encode(x="x", y="y")
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# Title"),
            nbformat.v4.new_code_cell(
                "import secret_module_name",
                outputs=[
                    nbformat.v4.new_output("stream", name="stdout", text="printed secret"),
                    nbformat.v4.new_output(
                        "display_data",
                        data={"application/vnd.vegalite.v6+json": chart.to_dict(), "text/plain": "<VegaLite 6 object>"},
                    ),
                    nbformat.v4.new_output(
                        "display_data",
                        data={
                            "application/vnd.jupyter.widget-view+json": {"model_id": "abc123", "version_major": 2},
                            "text/plain": "IntSlider()",
                        },
                    ),
                    nbformat.v4.new_output("display_data", data={"text/html": "<p>kept</p><script>evil()</script>"}),
                ],
            ),
        ]
    )
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"abc123": {}}}}
    out = tmp_path / "r.html"
    page = reports.export_html(nb, out, title="T")
    assert out.read_text() == page
    for banned in (
        "secret_module_name",
        "printed secret",
        "jp-InputArea",
        "widget-state",
        "abc123",
        "<script",
        "IntSlider",
        "VegaLite 6 object",
        "In&nbsp;[",
        "\u00b6",
    ):
        assert banned not in page, banned  # \u00b6: the pilcrow anchor after each heading
    assert "<h1" in page and "<p>kept</p>" in page and "<svg" in page
    assert "@media print" in page  # print-friendly CSS is inline
    assert not re.search(r"""(src|href)=["']https?://""", page)  # nothing loaded from the network
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # atomic write leaves no temp file


# ----------------------------------------------------------------------------- safe names
@given(st.text(min_size=1, max_size=60))
@settings(max_examples=200, deadline=None)
def test_safe_name_stays_inside_the_folder(account_id):
    name = batch_run.safe_name(account_id)
    assert re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", name)
    base = Path("/reports")
    assert (base / f"{name}.html").resolve().parent == base


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
@settings(max_examples=200, deadline=None)
def test_safe_names_of_different_ids_differ(a, b):
    if a != b:
        assert batch_run.safe_name(a) != batch_run.safe_name(b)


def test_select_accounts(hand):
    _, scores = hand
    assert batch_run._select_accounts(scores, "all")[:3] == ["a", "p1", "p2"]
    assert batch_run._select_accounts(scores, "segment=tiny") == ["t0", "t1", "t2"]
    assert batch_run._select_accounts(scores, "a, p2,a") == ["a", "p2"]
    with pytest.raises(ValueError, match="no column 'tier'"):
        batch_run._select_accounts(scores, "tier=gold")
    with pytest.raises(ValueError, match="no account has segment = 'none'"):
        batch_run._select_accounts(scores, "segment=none")


def test_one_per_band(hand):
    _, scores = hand
    picked = batch_run.one_per_band(scores)
    latest = scores.filter(pl.col("as_of") == pl.col("as_of").max())
    bands = dict(zip(latest["account_id"], latest["band"]))
    assert [bands[a] for a in picked] == ["green", "yellow", "red"]


# ----------------------------------------------------------------------------- the batch
def _word(rng: np.random.Generator, n: int) -> str:
    return "".join(rng.choice(list("bcdfghjklmnpqrstvwxz")) + rng.choice(list("aeiouy")) for _ in range(n))


@pytest.fixture(scope="module")
def portfolio(tmp_path_factory, model):
    """12 accounts with random distinctive ids and names; one named with markup, one with id ``../x``;
    nine share a segment, three form a cohort too small to compare with."""
    rng = np.random.default_rng(42)
    p = hs.make_portfolio(n_accounts=12, n_weeks=30, seed=5)
    old = p.snapshots["account_id"].unique().sort().to_list()
    ids = [f"acc{_word(rng, 3)}" for _ in old]
    names = [f"{_word(rng, 3).title()} {_word(rng, 4).title()} Holdings" for _ in old]
    ids[1] = "../x"
    names[2] = "<script>alert(1)</script>"
    segments = ["smallco"] * 3 + ["core"] * (len(old) - 3)
    mapping = pl.DataFrame({"account_id": old, "new_id": ids, "new_name": names, "new_segment": segments})
    snaps = (
        p.snapshots.join(mapping, on="account_id")
        .drop("account_id", "company_name", "segment")
        .rename({"new_id": "account_id", "new_name": "company_name", "new_segment": "segment"})
    )
    folder = tmp_path_factory.mktemp("portfolio")
    snaps.write_parquet(folder / "snapshots.parquet")
    scores = hs.score(snaps, model)
    scores.write_parquet(folder / "scores.parquet")
    return {
        "folder": folder,
        "snapshots": snaps,
        "scores": scores,
        "ids": ids,
        "names": names,
        "segments": dict(zip(ids, segments)),
    }


@pytest.fixture(scope="module")
def batch(portfolio, model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("cards")
    accounts = portfolio["ids"] + ["accMISSING"]
    run = batch_run.render_scorecards(
        portfolio["folder"] / "scores.parquet",
        model_path,
        accounts,
        out,
        snapshots=portfolio["folder"] / "snapshots.parquet",
        workers=2,
        progress=False,
    )
    return run


@pytest.mark.notebook
@pytest.mark.slow
def test_batch_records_the_failure_and_completes_the_rest(batch, portfolio):
    m = batch.manifest
    assert m.columns[:4] == ["account_id", "company_name", "status", "file"]
    assert {"model_hash", "data_hash", "seconds", "error"} <= set(m.columns)
    status = dict(zip(m["account_id"], m["status"]))
    assert status.pop("accMISSING") == "failed"
    assert set(status.values()) == {"rendered"} and len(status) == len(portfolio["ids"])
    err = m.filter(pl.col("account_id") == "accMISSING")["error"][0]
    assert "accMISSING" in err and "no rows" in err
    assert not batch.ok
    on_disk = pl.read_csv(batch.out_dir / "manifest.csv")
    assert on_disk.sort("account_id")["status"].to_list() == m.sort("account_id")["status"].to_list()
    index = (batch.out_dir / "index.html").read_text()
    for f in m.filter(pl.col("status") == "rendered")["file"]:
        assert f'href="{f}"' in index


def _reports(batch) -> dict[str, str]:
    m = batch.manifest.filter(pl.col("status") == "rendered")
    return {a: (batch.out_dir / f).read_text() for a, f in zip(m["account_id"], m["file"])}


@pytest.mark.notebook
@pytest.mark.slow
def test_no_report_mentions_another_account(batch, portfolio):
    pages = _reports(batch)
    ids, names = portfolio["ids"], portfolio["names"]
    hits = []
    for aid, page in pages.items():
        for other, name in zip(ids, names):
            if other == aid:
                continue
            for needle in {other, html.escape(other), name, html.escape(name)}:
                if needle in page:
                    hits.append((aid, needle))
    assert hits == []
    # and each report does show its own company
    for aid, name in zip(ids, names):
        assert html.escape(name) in pages[aid]


@pytest.mark.notebook
@pytest.mark.slow
def test_reports_are_static_and_safe(batch, portfolio):
    pages = _reports(batch)
    evil_id = portfolio["ids"][2]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[evil_id]
    for aid, page in pages.items():
        for banned in (
            "<script",
            "jp-InputArea",
            "jp-CodeCell",
            "widget-state",
            "card_html.scorecard(",
            "import ",
            "account_id =",
            "Casey",
            "Internal only",
        ):
            assert banned not in page, (aid, banned)
        assert ("<svg" in page or "Not enough history" in page) and "@media print" in page
        assert not re.search(r"""(src|href)=["']https?://""", page)
    assert sum("<svg" in page for page in pages.values()) >= len(pages) - 2  # early churners lack a trend
    # the path-like id lands in a plain file inside the folder
    row = batch.manifest.filter(pl.col("account_id") == "../x").row(0, named=True)
    path = (batch.out_dir / row["file"]).resolve()
    assert path.parent == batch.out_dir.resolve() and path.is_file() and "/" not in row["file"]
    assert not (batch.out_dir.parent / "x.html").exists()


@pytest.mark.notebook
@pytest.mark.slow
def test_reports_show_not_applicable_and_hide_small_cohorts(batch, portfolio):
    pages = _reports(batch)
    na = [aid for aid, page in pages.items() if "not applicable" in page]
    assert na, "the portfolio has missing CSAT weeks, so some metric must read 'not applicable'"
    for aid, page in pages.items():
        if portfolio["segments"][aid] == "smallco":
            assert "similar accounts" not in page and "typically score" not in page
        else:
            found = re.search(r"From (\d+) similar accounts", page)
            assert "Ahead of" not in page
            assert found is None or (5 <= int(found.group(1)) <= 9 and "typically score" in page)


@pytest.mark.notebook
@pytest.mark.slow
def test_cli_resumes_and_reports_failures(portfolio, model_path, tmp_path, capsys):
    ids = portfolio["ids"][3:5]
    argv = [
        "scorecards",
        "--model",
        str(model_path),
        "--scores",
        str(portfolio["folder"] / "scores.parquet"),
        "--accounts",
        ",".join(ids),
        "--out",
        str(tmp_path),
        "--workers",
        "1",
    ]
    assert cli.main(argv) == 0
    first = pl.read_csv(tmp_path / "manifest.csv")
    assert first["status"].to_list() == ["rendered", "rendered"]
    stamp = {f: (tmp_path / f).stat().st_mtime_ns for f in first["file"]}

    assert cli.main(argv) == 0  # same inputs: nothing rendered again
    second = pl.read_csv(tmp_path / "manifest.csv")
    assert second["status"].to_list() == ["unchanged", "unchanged"]
    assert {f: (tmp_path / f).stat().st_mtime_ns for f in second["file"]} == stamp
    assert second["model_hash"].to_list() == first["model_hash"].to_list()

    # a changed model needs scores of its own: the old scores are refused with it
    changed = tmp_path / "changed.toml"
    changed.write_text(
        MODEL_TOML.replace('name = "csat"\ncolumn = "csat"', 'name = "csat"\ncolumn = "csat"\nweight = 3')
    )
    argv_changed = argv.copy()
    argv_changed[2] = str(changed)
    assert cli.main(argv_changed) == 1
    assert "produced by model hash" in capsys.readouterr().err
    # with its own scores it re-renders, and a missing account makes the exit status non-zero
    changed_scores = tmp_path / "changed_scores.parquet"
    hs.score(portfolio["snapshots"], hs.load_model(changed)).write_parquet(changed_scores)
    argv_changed[argv.index("--scores") + 1] = str(changed_scores)
    argv_changed[argv.index("--accounts") + 1] = ",".join(ids + ["accMISSING"])
    assert cli.main(argv_changed) == 1
    third = pl.read_csv(tmp_path / "manifest.csv")
    assert third["status"].to_list() == ["rendered", "rendered", "failed"]
    assert third["model_hash"][0] != first["model_hash"][0]


@pytest.mark.notebook
@pytest.mark.slow
def test_notebook_runs_by_hand_with_papermill(portfolio, model_path, tmp_path):
    aid = portfolio["ids"][5]
    out = tmp_path / "by_hand.ipynb"
    cmd = [
        sys.executable,
        "-m",
        "papermill",
        str(ROOT / "notebooks" / "scorecard.ipynb"),
        str(out),
        "-p",
        "account_id",
        aid,
        "-p",
        "scores",
        str(portfolio["folder"] / "scores.parquet"),
        "-p",
        "model",
        str(model_path),
        "-k",
        "python3",
        "--no-progress-bar",
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    nb = nbformat.read(out, as_version=4)
    shown = "".join(
        o.get("data", {}).get("text/html", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    assert html.escape(portfolio["names"][5]) in shown and "<svg" in shown


def test_committed_notebook_is_clean():
    nb = nbformat.read(ROOT / "notebooks" / "scorecard.ipynb", as_version=4)
    assert "widgets" not in nb.metadata
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1
    params = next(c for c in code if "parameters" in c.metadata.get("tags", []))
    for name in ("account_id", "as_of", "scores", "model", "variant", "internal", "cohort"):
        assert re.search(rf"^{name} = ", params.source, re.M), name


def test_next_steps_are_at_most_three_and_ranked_by_points(hand, model):
    snaps, scores = hand
    for account in scores["account_id"].unique().sort():
        card = cards.scorecard_data(scores, model, account, snapshots=snaps)
        pts = card.actions["points"].to_list()
        assert len(pts) <= cards.MAX_ACTIONS and pts == sorted(pts, reverse=True)
    card = cards.scorecard_data(scores, model, "a", snapshots=snaps)
    if card.actions.height:
        # logins at 20 is the only red metric of "a"; usage is the only category present, two
        # equal-weight metrics: reaching 100 adds half of the 80-point gap
        row = card.actions.row(0, named=True)
        assert row["metric"] == "logins" and row["points"] == pytest.approx(40.0)
        page = "".join(card_html.scorecard_sections(card))
        assert "(up to 40 points)" in page and "Who: your team with your CSM." in page


def test_a_step_names_its_owner_from_the_model(hand, model, tmp_path):
    """``action_owner`` puts who does the step beside it; it survives a save and never moves the hash."""
    snaps, scores = hand
    owned = dataclasses.replace(
        model,
        metrics=[dataclasses.replace(m, action_owner="your admin <b>& your CSM</b>") for m in model.metrics],
    )
    assert owned.hash == model.hash
    card = cards.scorecard_data(scores, owned, "a", snapshots=snaps)
    assert card.actions["owner"].to_list() == ["your admin <b>& your CSM</b>"]
    page = "".join(card_html.scorecard_sections(card))
    assert "Who: your admin &lt;b&gt;&amp; your CSM&lt;/b&gt;." in page
    path = owned.save(tmp_path / "owned.toml")
    assert {m.action_owner for m in hs.load_model(path).metrics} == {"your admin <b>& your CSM</b>"}
