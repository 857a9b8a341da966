"""The built wheel is a complete product: installed into a fresh virtual environment, it runs the
demo from an unrelated folder (models, templates, notebooks and the sample are package resources).

Dependencies come from this test run's own environment (a path entry in the new environment), so
the test checks what the wheel carries, not the package index.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(ROOT),
        ],
        check=True,
        cwd=out,
    )
    (found,) = out.glob("healthscore-*.whl")
    return found


def test_wheel_carries_the_resources(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in [
        "healthscore/resources/sample/model.toml",
        "healthscore/resources/sample/snapshots.parquet",
        "healthscore/resources/notebooks/scorecard.ipynb",
        "healthscore/resources/notebooks/cohort_review.ipynb",
        "healthscore/resources/templates/report/index.html.j2",
        "healthscore/resources/templates/index/table.js",  # read when the renderer is imported
        "healthscore/resources/templates/models/general_saas.toml",
        "healthscore/py.typed",
    ]:
        assert needed in names, needed
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names)


def test_installed_wheel_runs_the_demo_from_another_folder(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    py = env_dir / "bin" / "python"
    # the new environment sees this environment's dependencies, but not its healthscore checkout
    new_site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    deps = [
        p
        for p in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
        if Path(p).is_dir()
    ]
    Path(new_site, "_test_dependencies.pth").write_text("\n".join(deps) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)], check=True)

    # a kernel of the new environment for the notebooks; nbconvert's own templates from this one
    subprocess.run(
        [str(py), "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3"], check=True, capture_output=True
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["JUPYTER_PATH"] = os.pathsep.join(
        [str(env_dir / "share" / "jupyter"), str(Path(sys.prefix, "share", "jupyter"))]
    )
    where = subprocess.run(
        [str(py), "-c", "import healthscore, sys; print(healthscore.__file__)"],
        cwd=elsewhere,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert str(env_dir) in where, where  # the installed copy, not the source tree
    done = subprocess.run(
        [str(env_dir / "bin" / "healthscore"), "demo", "--out", "out"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    written = {p.name for p in (elsewhere / "out").rglob("*") if p.is_file()}
    assert {"scores.parquet", "review.html", "index.html"} <= written, sorted(written)
