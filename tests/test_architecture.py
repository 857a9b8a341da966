"""The package keeps its architecture.

Layers point down (the import contract in pyproject.toml); an import made inside a function is
either a heavy optional dependency or a look-up into a higher layer on request (a result object
drawing its charts), each with its reason on the line; the lower layers hold no HTML and no charts.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import healthscore
import pytest

PKG = Path(healthscore.__file__).resolve().parent
ROOT = PKG.parents[1]
LAYERS = ["errors", "results", "resources", "io", "spec", "core", "datasets", "analysis", "viz", "render", "app"]
# third-party packages that are slow to import or optional: loaded inside the function that needs them
HEAVY = {
    "statsmodels",
    "scipy",
    "sklearn",
    "altair",
    "vl_convert",
    "papermill",
    "nbclient",
    "nbconvert",
    "nbformat",
    "ipywidgets",
    "duckdb",
    "sqlalchemy",
    "psutil",
    "tqdm",
    "pyspark",
    "playwright",
    "sqlglot",
    "nh3",
    "pyarrow",
    "anywidget",
    "IPython",
    "jupyter_client",
    "psycopg",
}


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else 0


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def _function_imports() -> list[tuple[str, int, str, str]]:
    """(module, line number, imported module, the source line and the one above) per import in a function."""
    found = []
    for name, path in _modules():
        lines = path.read_text(encoding="utf-8").splitlines()
        for fn in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    target = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                    text = "\n".join(lines[node.lineno - 2 : node.end_lineno])
                    found.append((name, node.lineno, target or "", text))
    return found


def test_the_import_contract_holds() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is part of the dev dependencies"
    done = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:]


def test_imports_inside_functions_are_heavy_or_upward_with_a_reason() -> None:
    wrong = []
    for module, line, target, text in _function_imports():
        top = target.split(".")[0]
        upward = top == "healthscore" and _layer(target) > _layer(module)
        if not (top in HEAVY or upward):
            wrong.append(f"{module}:{line} imports {target} inside a function: move it to the top of the module")
        elif "#" not in text:
            wrong.append(f"{module}:{line} imports {target} inside a function without saying why (a comment)")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("layer", ["io", "spec", "core", "analysis"])
def test_the_number_layers_hold_no_charts_and_no_html(layer: str) -> None:
    for module, path in _modules():
        if module.split(".")[1:2] != [layer]:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top_imports = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        names = {(n.module if isinstance(n, ast.ImportFrom) else n.names[0].name) or "" for n in top_imports}
        assert not {n for n in names if n.split(".")[0] == "altair"}, f"{module} imports altair"
        markup = [
            c.value
            for c in ast.walk(tree)
            if isinstance(c, ast.Constant)
            and isinstance(c.value, str)
            and any(tag in c.value for tag in ("<table", "<div", "<span", "<td", "<p>", "<h2"))
        ]
        assert not markup, f"{module} builds HTML: {markup[0][:80]!r}"
