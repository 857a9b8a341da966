"""Every shipped notebook runs top to bottom as a user opens it: no parameters, the kernel in the
notebooks folder (as ``make lab`` starts it), defaults that exist wherever healthscore is installed."""

from __future__ import annotations

import ast
import os
import shutil
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "notebooks"  # `make lab` runs `cd notebooks && jupyter lab`
NOTEBOOKS = sorted(FOLDER.glob("*.ipynb"))

pytestmark = pytest.mark.notebook


def _parameters(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{path.name}: one cell tagged 'parameters' (papermill injects after it)"
    return cells[0].source


def _tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_there_are_notebooks_to_run():
    assert {p.stem for p in NOTEBOOKS} >= {"scorecard", "cohort_review", "tune_weights"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_default_paths_exist_from_any_folder(path, tmp_path, monkeypatch):
    """The parameter cell's defaults name files that exist, read from an unrelated folder."""
    monkeypatch.chdir(tmp_path)
    source = _parameters(path)
    names: dict[str, object] = {}
    exec(compile(source, path.name, "exec"), names)  # the cell is plain assignments and one import
    assigned = [t.id for node in ast.parse(source).body if isinstance(node, ast.Assign) for t in node.targets]
    paths = [
        names[n]
        for n in assigned
        if isinstance(names[n], str) and os.path.splitext(str(names[n]))[1] in {".parquet", ".csv", ".toml", ".json"}
    ]
    assert paths, f"{path.name}: no default file among the parameters"
    for value in paths:
        assert Path(str(value)).is_file(), f"{path.name}: default {value} does not exist"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_as_opened(path, tmp_path):
    from nbclient import NotebookClient  # the notebook client runs the kernel

    copy = tmp_path / path.name  # executed outputs stay out of the repository
    shutil.copy(path, copy)
    before = _tree(FOLDER.resolve().parent)  # the notebooks and the sample beside them
    nb = nbformat.read(copy, as_version=4)
    NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(FOLDER)}},  # the kernel's working folder
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    ).execute()
    nbformat.write(nb, copy)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [f"{o['ename']}: {o['evalue']}" for o in outputs if o.output_type == "error"]
    assert not errors, f"{path.name} as opened: {errors}"
    shown = [o for o in outputs if o.output_type in ("display_data", "execute_result")]
    assert shown, f"{path.name} showed nothing"
    assert _tree(FOLDER.resolve().parent) == before, f"{path.name} wrote into the package's resources"
