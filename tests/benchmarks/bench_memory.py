"""Peak memory of ``healthscore score`` and ``build`` on large files, each run in a fresh process.

* the score command as it runs now (snapshots read and scored part by part, scores written as
  they come) against the former in-memory path (``read_snapshots`` of the whole file,
  ``score_in_chunks``, one write) at 1M rows x 20 metrics, and the command alone at 5M and 20M
  rows: the bound is 4 GB at every size;
* ``--as-of`` on the last date of 26 and of 104 weeks of history: the peak must not grow with
  the length of the history;
* building weekly snapshots (52 dates, 10 trailing-window metrics) from 100M events of 100,000
  accounts (``HS_BENCH_BUILD_EVENTS`` to change the size) with the polars and the DuckDB
  engines: the bound is 8 GB.

Peak memory is the process's VmHWM (Linux), read in the process that ran the command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from tests.benchmarks import Result

ROOT = Path(__file__).resolve().parents[2]
SCORE_BOUND_MB = 4096.0  # peak memory allowed for scoring, at any number of snapshot rows x 20 metrics
BUILD_BOUND_MB = 8192.0  # peak memory allowed for building snapshots from 100M events

_RUN = textwrap.dedent("""
    import json, re, sys, time
    argv, mode = json.loads(sys.argv[1]), sys.argv[2]
    t0 = time.perf_counter()
    if mode == "command":
        from healthscore.app.cli import main
        assert main(argv) == 0
    else:  # the former in-memory path of the command
        from healthscore.core import scoring
        from healthscore.io import files
        from healthscore.io.snapshots import read_snapshots
        from healthscore.spec.model import load_model
        model = load_model(argv[argv.index("--model") + 1])
        snaps = read_snapshots(argv[argv.index("--data") + 1])
        as_of = argv[argv.index("--as-of") + 1] if "--as-of" in argv else None
        scores = scoring.score_in_chunks(snaps, model, as_of=as_of, progress=False)
        files.write_parquet(scores, argv[argv.index("--out") + 1])
    seconds = time.perf_counter() - t0
    status = open("/proc/self/status").read()
    print(json.dumps({"hwm_kb": int(re.search(r"VmHWM:\\s+(\\d+)", status).group(1)), "seconds": seconds}))
""")

_MAKE = textwrap.dedent("""
    import sys, datetime as dt
    import polars as pl
    from tests.benchmarks.bench_scoring import make_snapshots, make_model
    accounts, weeks, out, model = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    parts = []
    step = 20_000
    for first in range(0, accounts, step):  # in slices, so making 5M rows stays small too
        s = make_snapshots(min(step, accounts - first), weeks, seed=5 + first)
        shift = dt.date(2026, 6, 29) - (dt.date(2025, 1, 6) + dt.timedelta(weeks=weeks - 1))
        s = s.with_columns(("A" + (pl.col("account_id").str.slice(1).cast(pl.Int64) + first)
                            .cast(pl.String).str.zfill(7)).alias("account_id"),
                           pl.col("as_of") + shift)  # every history ends on the same past Monday
        if model != "-" and first == 0:
            make_model(s).save(model)
        s.write_parquet(f"{out}.{first}.parquet")
        parts.append(f"{out}.{first}.parquet")
    pl.scan_parquet(parts).sink_parquet(out)
""")


def _make(folder: Path, accounts: int, weeks: int, name: str, model: str = "-") -> Path:
    out = folder / name
    subprocess.run(
        [sys.executable, "-c", _MAKE, str(accounts), str(weeks), str(out), model],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    for p in folder.glob(f"{name}.*.parquet"):
        p.unlink()
    return out


def _peak(argv: list[str], mode: str = "command") -> tuple[float, float]:
    """Peak MB and seconds of one run in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", _RUN, json.dumps(argv), mode], cwd=ROOT, capture_output=True, text=True, check=True
    )
    info = json.loads(done.stdout.strip().splitlines()[-1])
    return info["hwm_kb"] / 1024, info["seconds"]


def _argv(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["score", "--model", str(model), "--data", str(data), "--out", str(out), *extra]


def _last_date(data: Path) -> str:
    import polars as pl

    return str(pl.scan_parquet(data).select(pl.col("as_of").max()).collect().item())


def bench_score_memory(sizes: tuple[int, ...] = (20_000, 100_000, 400_000), weeks: int = 50) -> list[Result]:
    rows: list[Result] = []
    goal = f"<= {SCORE_BOUND_MB / 1024:g} GB at any size"
    with tempfile.TemporaryDirectory(prefix="hs-bench-memory-") as tmp:
        folder = Path(tmp)
        model = folder / "model.toml"
        for i, accounts in enumerate(sizes):
            millions = accounts * weeks / 1e6
            data = _make(folder, accounts, weeks, f"snaps{i}.parquet", str(model) if i == 0 else "-")
            argv = _argv(model, data, folder / "scores.parquet")
            ours, t_ours = _peak(argv)
            detail = {
                "rows": accounts * weeks,
                "metrics": 20,
                "seconds": round(t_ours, 1),
                "rows_per_second": round(accounts * weeks / t_ours),
                "mb_per_million_rows": round(ours / millions),
            }
            base = t_base = None
            if i == 0:  # the former in-memory path, side by side, on the smaller file only
                base, t_base = _peak(argv, mode="in-memory")
                detail["baseline_seconds"] = round(t_base, 1)
            rows.append(
                Result(
                    "memory",
                    f"score command, {millions:g}M x 20, peak",
                    ours,
                    base,
                    base / ours if base else None,
                    goal,
                    ours <= SCORE_BOUND_MB,
                    unit="MB",
                    detail=detail,
                )
            )
            if t_base is not None:
                rows.append(
                    Result(
                        "memory",
                        f"score command time, {millions:g}M x 20 (info)",
                        t_ours,
                        t_base,
                        t_base / t_ours,
                        "(streamed vs in memory)",
                        None,
                        detail=detail,
                    )
                )
            data.unlink()
    return rows


_BUILD = textwrap.dedent("""
    import datetime as dt, json, re, sys, time, warnings
    from pathlib import Path
    from tests.benchmarks.bench_build import _spec
    from healthscore.core.build import build_snapshots
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        limit = {"memory_limit": sys.argv[3]} if sys.argv[3] != "-" else {}
        out = build_snapshots(_spec(Path(sys.argv[2])), engine=sys.argv[1], today=dt.date(2026, 1, 1), **limit)
    seconds = time.perf_counter() - t0
    status = open("/proc/self/status").read()
    hwm = int(re.search(r"VmHWM:\\s+(\\d+)", status).group(1))
    print(json.dumps({"hwm_kb": hwm, "seconds": seconds, "rows": out.height, "accounts": out["account_id"].n_unique()}))
""")


# DuckDB's own default takes 80% of the machine; under the bound it is told its share and spills beyond it
LIMITS = {"polars": "-", "duckdb": "4GB"}


def bench_build_memory(engines: tuple[str, ...] = ("polars", "duckdb"), accounts: int = 100_000) -> list[Result]:
    from tests.benchmarks.bench_build import generate

    n = int(os.environ.get("HS_BENCH_BUILD_EVENTS", "100000000"))
    rows: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="hs-bench-build-memory-") as tmp:
        generate(Path(tmp) / "events.parquet", n, accounts=accounts)
        for engine in engines:
            done = subprocess.run(
                [sys.executable, "-c", _BUILD, engine, tmp, LIMITS[engine]],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            info = json.loads(done.stdout.strip().splitlines()[-1])
            peak = info["hwm_kb"] / 1024
            rows.append(
                Result(
                    "memory",
                    f"build {engine}, {n / 1e6:g}M events, peak",
                    peak,
                    None,
                    None,
                    f"<= {BUILD_BOUND_MB / 1024:g} GB",
                    peak <= BUILD_BOUND_MB,
                    unit="MB",
                    detail={
                        "events": n,
                        "accounts": info["accounts"],
                        "snapshot_rows": info["rows"],
                        "seconds": round(info["seconds"], 1),
                        "events_per_second": round(n / info["seconds"]),
                        "memory_limit": LIMITS[engine],
                    },
                )
            )
    return rows


def bench_as_of_memory(accounts: int = 10_000, short: int = 26, long: int = 104) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="hs-bench-asof-") as tmp:
        folder = Path(tmp)
        model = folder / "model.toml"
        peaks = {}
        for weeks in (short, long):
            data = _make(folder, accounts, weeks, f"snaps{weeks}.parquet", str(model) if weeks == short else "-")
            peaks[weeks], _ = _peak(_argv(model, data, folder / "scores.parquet", "--as-of", _last_date(data)))
            data.unlink()
    ratio = peaks[long] / peaks[short]
    return [
        Result(
            "memory",
            f"score --as-of, {long} vs {short} weeks",
            peaks[long],
            peaks[short],
            ratio,
            "<= 1.25x (flat in history)",
            ratio <= 1.25,
            unit="MB",
            detail={"accounts": accounts, "peak_mb": {str(k): round(v) for k, v in peaks.items()}},
        )
    ]


if __name__ == "__main__":  # quick look: python -m tests.benchmarks.bench_memory
    t0 = time.perf_counter()
    for r in bench_score_memory(sizes=(20_000,)) + bench_as_of_memory() + bench_build_memory():
        print(r)
    print(f"{time.perf_counter() - t0:.0f} s")
