"""Scorecards: warm-kernel batch rendering against the naive loop, and memory over many reports.

The naive loop is what a person would script by hand: for each account the ``papermill`` command,
then ``jupyter nbconvert --to html --no-input``, each a fresh process with a fresh kernel. Ours is
``render_scorecards`` (two worker processes, one warm kernel each, HTML export in process).

``HEALTHSCORE_BENCH_MEMORY_REPORTS`` (default 1000) sets how many reports the memory run renders.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from tests.benchmarks import Result

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "scorecard.ipynb"


def _inputs(folder: Path) -> tuple[Path, Path, Path, list[str]]:
    """The bundled sample scored with the bundled model; account ids in a fixed order."""
    from healthscore.core import scoring
    from healthscore.datasets.portfolio import load_sample, sample_dir
    from healthscore.io import files
    from healthscore.spec.model import load_model

    model_path = sample_dir() / "model.toml"
    sample = load_sample()
    scores = scoring.score(sample.snapshots, load_model(model_path))
    scores_path, snaps_path = folder / "scores.parquet", folder / "snapshots.parquet"
    files.write_parquet(scores, scores_path)
    files.write_parquet(sample.snapshots, snaps_path)
    ids = scores["account_id"].unique().sort().to_list()
    return scores_path, snaps_path, model_path, ids


def _naive(account: str, scores: Path, snaps: Path, model: Path, out: Path) -> None:
    executed = out / f"{account}.ipynb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            str(NOTEBOOK),
            str(executed),
            "-k",
            "python3",
            "-p",
            "account_id",
            account,
            "-p",
            "scores",
            str(scores),
            "-p",
            "model",
            str(model),
            "-p",
            "snapshots",
            str(snaps),
            "--no-progress-bar",
            "--log-level",
            "ERROR",
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", "--no-input", str(executed)],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )


def _ours(ids: list[str], scores: Path, snaps: Path, model: Path, out: Path):
    from healthscore.app.batch import render_scorecards

    t0 = time.perf_counter()
    run = render_scorecards(scores, model, ids, out, snapshots=snaps, workers=2, progress=False)
    seconds = time.perf_counter() - t0
    failed = run.failed
    if failed.height:
        raise RuntimeError(f"{failed.height} scorecards failed, e.g. {failed.row(0, named=True)}")
    return run, seconds


def bench_scorecards() -> list[Result]:
    rows: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-cards-") as tmp:
        tmp = Path(tmp)
        scores, snaps, model, ids = _inputs(tmp)
        ten = ids[:10]

        naive_dir = tmp / "naive"
        naive_dir.mkdir()
        t0 = time.perf_counter()
        for account in ten:
            _naive(account, scores, snaps, model, naive_dir)
        naive_per = (time.perf_counter() - t0) / len(ten)

        _, ours10 = _ours(ten, scores, snaps, model, tmp / "ours10")
        # informative: with only 10 accounts the two kernels' start-up is most of our time
        rows.append(
            Result(
                "scorecards",
                "10 reports incl. kernel start",
                ours10 / 10,
                naive_per,
                naive_per / (ours10 / 10),
                "(start-up included)",
                None,
                detail={"accounts": 10, "ours_total_s": ours10, "naive_total_s": naive_per * 10},
            )
        )

        two_hundred = ids[10:210]
        run200, ours200 = _ours(two_hundred, scores, snaps, model, tmp / "ours200")
        per = ours200 / len(two_hundred)
        rows.append(
            Result(
                "scorecards",
                "200 reports, seconds per report",
                per,
                naive_per,
                naive_per / per,
                ">= 20x per report",
                naive_per / per >= 20,
                detail={
                    "accounts": len(two_hundred),
                    "ours_total_s": ours200,
                    "median_render_s": float(run200.manifest["seconds"].median()),
                },
            )
        )

        n_mem = int(os.environ.get("HEALTHSCORE_BENCH_MEMORY_REPORTS", "1000"))
        n_mem = min(n_mem, len(ids))
        run_mem, secs_mem = _ours(ids[:n_mem], scores, snaps, model, tmp / "memory")
        mem = run_mem.memory.with_columns(total=pl.col("worker_rss_mb") + pl.col("kernel_rss_mb"))
        early_at = min(100, n_mem // 10)
        # each worker's process + kernel RSS near report 100 and at the end, summed over workers
        early = mem.filter(pl.col("report") <= early_at).group_by("worker").agg(pl.col("total").last())["total"].sum()
        late = mem.group_by("worker").agg(pl.col("total").last())["total"].sum()
        rows.append(
            Result(
                "scorecards",
                f"RSS MB at report {early_at} vs {n_mem}",
                late,
                early,
                late / early,
                "<= 1.10 (flat)",
                late / early <= 1.10,
                unit="MB",
                detail={"reports": n_mem, "seconds_per_report": secs_mem / n_mem, "workers": mem["worker"].n_unique()},
            )
        )
    return rows
