"""notebooks/tune_weights.ipynb runs top to bottom under papermill and its tuner drives correctly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import healthscore as hs
import nbformat
import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "tune_weights.ipynb"

pytestmark = pytest.mark.notebook


def test_committed_without_outputs_or_widget_state():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert "widgets" not in nb.metadata
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "n_accounts = None" in tagged[0].source


def test_notebook_executes_and_checks_the_tuner(tmp_path):
    import papermill

    p = hs.datasets.make_portfolio(n_accounts=250, n_weeks=40, seed=21)
    p.snapshots.write_parquet(tmp_path / "snapshots.parquet")
    p.events.write_parquet(tmp_path / "events.parquet")
    shutil.copy(ROOT / "data" / "model.toml", tmp_path / "model.toml")
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(out),
        cwd=str(NOTEBOOK.parent),
        kernel_name="python3",
        progress_bar=False,
        parameters={
            "snapshots": str(tmp_path / "snapshots.parquet"),
            "events": str(tmp_path / "events.parquet"),
            "model": str(tmp_path / "model.toml"),
            "n_accounts": 200,
            "check": True,
        },
    )
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    report = json.loads(text.split("CHECK ", 1)[1].splitlines()[0])
    assert report["ok"] and report["max_score_difference"] <= 1e-9

    # the same slider move recomputed here, independently of the kernel
    keep = p.snapshots["account_id"].unique().sort().head(200).implode()
    snaps = p.snapshots.filter(pl.col("account_id").is_in(keep))
    model = hs.load_model(tmp_path / "model.toml").with_weights(metrics={"login_days": 6.0})
    scores = hs.combine(hs.calibrate(snaps, model), model)
    book = scores.filter(pl.col("as_of") == scores["as_of"].max())
    counts = dict(book.filter(pl.col("band").is_not_null()).group_by("band").len().iter_rows())
    assert report["band_counts"] == {b.name: counts.get(b.name, 0) for b in model.bands}
    assert sum(report["band_counts"].values()) == book.filter(pl.col("score").is_not_null()).height
