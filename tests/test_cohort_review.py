"""The leadership cohort review: the notebook runs under papermill on small data, and the HTML
report (from Python and from `healthscore review`) holds no code and opens with the summary."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import polars as pl
import pytest
from healthscore.analysis import cohorts
from healthscore.app import cli

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "cohort_review.ipynb"
MODEL = ROOT / "data" / "model.toml"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    from tests.conftest import book_on_disk

    return book_on_disk(tmp_path_factory, "review", seed=5)


def test_notebook_is_committed_thin_and_clean():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    for name in ("data", "events", "model", "by", "date_from", "date_to"):
        assert re.search(rf"^{name} = ", params[0].source, re.M), name
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert "widgets" not in nb.metadata
    # thin: the logic is in healthscore.analysis.cohorts (the parameter cell holds settings only)
    logic = [c for c in code if c not in params]
    assert sum(len(c.source.splitlines()) for c in logic) < 43


def test_review_from_python_executive_summary(small):
    d, p = small
    review = cohorts.review_from_files(
        str(d / "snapshots.parquet"),
        str(d / "events.parquet"),
        str(MODEL),
        by="segment,touch_model",
        date_from="2000-01-01",
    )
    assert review.date_from == p.snapshots["as_of"].min()  # a period before the data starts with the data
    text = review.executive_summary()
    assert text.startswith(f"**Portfolio health on {review.date_to}.**")
    for part in (
        "ARR at risk",
        "Movements since",
        "cohorts differ significantly" if review.comparison.significant().height else "No significant differences",
    ):
        assert part in text
    # the migration counts in the summary come from the same matrix the report shows
    moved = review.portfolio["moved_down"] + review.portfolio["moved_up"]
    diagonal = sum(review.migration.filter(pl.col("from_band") == b)[b].item() for b in review.migration["from_band"])
    assert moved + diagonal == review.migration["total"].sum()
    assert set(review.charts()) >= {"scores", "band_mix", "churn", "trend", "migration", "score_deciles"}
    dec = review.score_deciles.filter(pl.col("decile").is_not_null()).sort("decile")
    assert dec["rate"][0] > dec["rate"][-1]  # the sample model ranks churn: low scores churn more


@pytest.mark.notebook
@pytest.mark.slow
def test_notebook_executes_under_papermill(small, tmp_path):
    import papermill as pm

    d, _ = small
    out = tmp_path / "executed.ipynb"
    nb = pm.execute_notebook(
        str(NOTEBOOK),
        str(out),
        kernel_name="python3",
        progress_bar=False,
        cwd=str(ROOT),
        parameters={
            "data": str(d / "snapshots.parquet"),
            "events": str(d / "events.parquet"),
            "model": str(MODEL),
            "by": "segment",
        },
    )
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    svg = [o for o in outputs if "image/svg+xml" in o.get("data", {})]
    assert len(svg) >= 5  # charts are static SVG: the report works offline
    text = json.dumps([o.get("data", {}).get("text/html", "") for o in outputs])  # HTML from render.review
    assert "Executive summary" in text and "ARR at risk" in text


@pytest.mark.notebook
@pytest.mark.slow
def test_cli_review_writes_a_static_report_without_code(small, tmp_path, capsys):
    d, _ = small
    out = tmp_path / "review.html"
    rc = cli.main(
        [
            "review",
            "--data",
            str(d / "snapshots.parquet"),
            "--events",
            str(d / "events.parquet"),
            "--model",
            str(MODEL),
            "--by",
            "segment",
            "--out",
            str(out),
        ]
    )
    assert rc == 0 and out.is_file()
    assert str(out) in capsys.readouterr().out
    html = out.read_text()
    for code_marker in (
        'class="jp-InputArea',
        "jp-InputPrompt",
        "In&nbsp;[",
        "In [",
        "review_from_files",
        "import altair",
        "<script",
    ):
        assert code_marker not in html, code_marker
    assert html.count("<svg") >= 5
    summary, detail = html.find("Executive summary"), html.find("Biggest movers")
    assert 0 < summary < detail  # the executive summary comes first
    assert "ARR at risk" in html and "Cohort review by segment" in html


def test_cli_review_errors_name_the_fix(small, tmp_path, capsys):
    d, _ = small
    rc = cli.main(["review", "--data", str(d / "snapshots.parquet"), "--out", str(tmp_path / "r.html")])
    assert rc == 2 and "pass --model" in capsys.readouterr().err
    rc = cli.main(
        [
            "review",
            "--data",
            str(d / "snapshots.parquet"),
            "--model",
            str(MODEL),
            "--from",
            "last week",
            "--out",
            str(tmp_path / "r.html"),
        ]
    )
    assert rc == 2 and "YYYY-MM-DD" in capsys.readouterr().err
    rc = cli.main(
        [
            "review",
            "--data",
            str(d / "snapshots.parquet"),
            "--model",
            str(MODEL),
            "--by",
            "segment,tier",
            "--out",
            str(tmp_path / "r.html"),
        ]
    )
    assert rc == 2 and "tier is not a column" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()
