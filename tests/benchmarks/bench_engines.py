"""The same score on three engines: polars (in process), DuckDB (in process, SQL) and Spark local[2].

The bundled sample (81,153 snapshots) is repeated with fresh account ids up to each size. Every run
happens in a fresh subprocess, so its peak memory (``ru_maxrss`` of the process and, for Spark, of the
JVM it starts) belongs to that run alone; the seconds cover scoring from an in-memory polars frame to a
polars frame of results (for Spark: Parquet in, Arrow out, query planning included). Polars at the
same size is the baseline. Spark's time at the smallest size is its fixed cost (JVM start excluded,
query planning and the job included). A log-log chart of rows against seconds goes to
``build/bench_engines.html`` (and ``.png`` when vl-convert is installed).

Sizes: ``HS_BENCH_ENGINE_ROWS`` (comma-separated, default ``10000,100000,1000000``); the 10M size
needs about 20 GB for polars and several minutes on Spark, so it is opt-in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.benchmarks import Result

ROOT = Path(__file__).resolve().parents[2]
ENGINES = ("polars", "duckdb", "spark")

_CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import polars as pl
    import healthscore as hs
    from healthscore.core.sqlscore import score_with
    engine, n = sys.argv[1], int(sys.argv[2])
    base = hs.load_sample().snapshots
    reps = -(-n // base.height)
    snaps = pl.concat([base.with_columns(pl.col("account_id") + f"-{i}") for i in range(reps)]).head(n)
    snaps = snaps.sort("account_id", "as_of")
    model = hs.load_model(hs.resources.sample_model())
    kw = {}
    if engine == "spark":
        from healthscore.io.runners import spark_session
        kw["session"] = spark_session("local[2]", shuffle_partitions=4)
        kw["session"].sparkContext.setLogLevel("ERROR")
    t0 = time.perf_counter()
    out = score_with(engine, snaps, model, **kw)
    seconds = time.perf_counter() - t0
    if engine == "spark":
        kw["session"].stop()
        time.sleep(1)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"seconds": seconds, "rows": out.height, "peak_mb": (own + kids) / 1024}))
""")


def _run(engine: str, n: int) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "toolkit"), str(ROOT)])}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, engine, str(n)],
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _chart(points: list[dict], out: Path) -> None:
    import altair as alt
    import polars as pl

    frame = pl.DataFrame(points)
    chart = (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X("rows:Q", scale=alt.Scale(type="log"), title="snapshot rows"),
            y=alt.Y("seconds:Q", scale=alt.Scale(type="log"), title="seconds to score"),
            color=alt.Color("engine:N", title="engine"),
        )
        .properties(title="Scoring time by engine (log-log)", width=420, height=300)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    chart.save(str(out.with_suffix(".html")))
    try:
        chart.save(str(out.with_suffix(".png")))
    except Exception:  # a PNG needs vl-convert; the HTML chart is written either way
        pass


def bench_engines() -> list[Result]:
    sizes = [int(s) for s in os.environ.get("HS_BENCH_ENGINE_ROWS", "10000,100000,1000000").split(",")]
    points, results = [], []
    for n in sizes:
        runs = {engine: _run(engine, n) for engine in ENGINES}
        base = runs["polars"]["seconds"]
        for engine, r in runs.items():
            points.append({"engine": engine, "rows": n, "seconds": r["seconds"]})
            results.append(
                Result(
                    benchmark="engines",
                    measure=f"{engine} score {n:,} rows",
                    ours=r["seconds"],
                    baseline=base,
                    ratio=base / r["seconds"],
                    goal="report (polars = 1)",
                    ok=None,
                    detail={"rows_per_second": n / r["seconds"], "peak_mb": round(r["peak_mb"]), "rows": r["rows"]},
                )
            )
    spark_fixed = min(p["seconds"] for p in points if p["engine"] == "spark")
    results.append(
        Result(
            benchmark="engines",
            measure=f"spark fixed cost ({min(sizes):,} rows)",
            ours=spark_fixed,
            baseline=None,
            ratio=None,
            goal="report",
            ok=None,
        )
    )
    _chart(points, ROOT / "build" / "bench_engines")
    return results


if __name__ == "__main__":
    for r in bench_engines():
        print(r.measure, f"{r.ours:.2f} s", r.detail)
