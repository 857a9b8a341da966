"""The same score, and the same snapshot build, on three engines: polars (in process), DuckDB (in
process, SQL) and Spark local[2].

Build: the event log of ``bench_build`` (10 trailing-window metrics on 52 weekly dates) at each size
of ``HS_BENCH_ENGINE_EVENTS`` (default ``1000000,10000000,100000000``), built into snapshots by each
engine from the Parquet file.

Score: the bundled sample (81,153 snapshots) repeated with fresh account ids up to each size of
``HS_BENCH_ENGINE_ROWS`` (default ``100000,1000000,10000000,100000000``), written once to a Parquet
file that each engine scores into a Parquet file, as data larger than memory is scored: polars part
by part (``score_to_file``), DuckDB over the file in place under a 4 GB memory limit, Spark into a
folder.

Every run happens in a fresh subprocess, so its peak memory (``ru_maxrss`` of the process plus, for
Spark, the VmHWM of the JVM it starts, read before the session stops) belongs to that run alone.
Polars at the same size is the baseline. Spark's time at the smallest size is its fixed cost (JVM
start excluded, query planning and the job included). An engine whose time at one size, scaled to
the next size, passes 10 minutes is not run at the larger ones. Log-log charts of rows against
seconds go to ``build/bench_engines.html`` and ``build/bench_engines_build.html`` (and ``.png``
when vl-convert is installed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from tests.benchmarks import Result

ROOT = Path(__file__).resolve().parents[2]
ENGINES = ("polars", "duckdb", "spark")

# each child: the engine's session (for Spark), then the timed work, then the shared tail
_SESSION = """
import json, resource, sys, time
import psutil
engine = sys.argv[1]
kw = {}
if engine == "spark":
    from healthscore.io.runners import spark_session
    kw["session"] = spark_session("local[2]", shuffle_partitions=4)
    kw["session"].sparkContext.setLogLevel("ERROR")
"""
_TAIL = """
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
jvm = 0  # the Spark JVM's own peak (VmHWM), read while it still runs
for kid in psutil.Process().children(recursive=True):
    try:
        jvm += next(int(x.split()[1]) for x in open(f"/proc/{kid.pid}/status") if x.startswith("VmHWM"))
    except (OSError, StopIteration):
        pass
if engine == "spark":
    kw["session"].stop()
rows = out.item() if out.shape == (1, 1) and out.columns == ["len"] else out.height
print(json.dumps({"seconds": seconds, "rows": rows, "peak_mb": (own + jvm) / 1024}))
"""
_CHILD = (
    _SESSION
    + textwrap.dedent("""
    import tempfile
    from pathlib import Path
    import polars as pl
    import healthscore as hs
    from healthscore.core.sqlscore import score_file_with
    source = Path(sys.argv[2])
    model = hs.load_model(hs.resources.sample_model())
    if engine == "duckdb":
        kw["memory_limit"] = "4GB"
    with tempfile.TemporaryDirectory(prefix="hs-bench-score-") as tmp:
        t0 = time.perf_counter()
        done = score_file_with(engine, source, model, Path(tmp) / "scores.parquet", **kw)
        seconds = time.perf_counter() - t0
        out = pl.scan_parquet(done / "*.parquet" if done.is_dir() else done).select(pl.len()).collect()
""")
    + _TAIL
)
_BUILD_CHILD = (
    _SESSION
    + textwrap.dedent("""
    import datetime as dt, warnings
    from pathlib import Path
    from tests.benchmarks.bench_build import _spec
    from healthscore.core.build import build_snapshots
    folder = Path(sys.argv[2])
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = build_snapshots(_spec(folder), engine=engine, today=dt.date(2026, 1, 1), **kw)
    seconds = time.perf_counter() - t0
""")
    + _TAIL
)
LIMIT = 600.0  # seconds: an engine slower than this at one size is not run at the larger ones


def _run(engine: str, n: int, child: str = _CHILD, arg: str | None = None) -> dict:
    """One engine at one size in a fresh process; a failure comes back as its last error line."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "toolkit"), str(ROOT)])}
    proc = subprocess.run(
        [sys.executable, "-c", child, engine, arg or str(n)],
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
    )
    if proc.returncode != 0:
        lines = [x for x in proc.stderr.splitlines() if "Error" in x or "Exception" in x] or proc.stderr.splitlines()
        return {"error": (lines[-1] if lines else f"exit {proc.returncode}")[:300]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _sizes(variable: str, default: str) -> list[int]:
    return [int(x) for x in os.environ.get(variable, default).split(",")]


def _each_engine(
    what: str,
    n: int,
    unit: str,
    run: Callable[[str, int], dict],
    stopped: dict[str, str],
    results: list[Result],
    next_n: int | None = None,
) -> dict[str, dict]:
    runs: dict[str, dict] = {}
    for engine in ENGINES:
        if engine in stopped:
            results.append(
                Result(
                    "engines",
                    f"{engine} {what} {n:,} {unit}",
                    None,
                    None,
                    None,
                    "report",
                    None,
                    detail={"skipped": stopped[engine]},
                )
            )
            continue
        r = run(engine, n)
        if "error" in r:
            stopped[engine] = f"failed at {n:,} {unit}: {r['error']}"
            results.append(
                Result("engines", f"{engine} {what} {n:,} {unit}", None, None, None, "report", None, detail=r)
            )
            continue
        runs[engine] = r
        if r["seconds"] > LIMIT:
            stopped[engine] = f"over {LIMIT:.0f} s at {n:,} {unit}"
        elif next_n and r["seconds"] * next_n / n > LIMIT:  # cost grows at least in proportion to size
            stopped[engine] = f"{r['seconds']:.0f} s at {n:,} {unit}: {next_n:,} would take over {LIMIT:.0f} s"
    return runs


def _measure(
    what: str,
    sizes: list[int],
    unit: str,
    run: Callable[[str, int], dict],
    around: Callable[[int], AbstractContextManager[object]] = lambda n: nullcontext(),
) -> tuple[list[Result], list[dict]]:
    """Every engine at every size (polars = 1 at each size), each size inside ``around(n)``; an engine
    that failed or took more than :data:`LIMIT` seconds at one size is not run at the larger ones."""
    points: list[dict] = []
    results: list[Result] = []
    stopped: dict[str, str] = {}
    for i, n in enumerate(sizes):
        # the data of a size is made only when an engine is left to run on it
        with around(n) if len(stopped) < len(ENGINES) else nullcontext():
            runs = _each_engine(what, n, unit, run, stopped, results, sizes[i + 1] if i + 1 < len(sizes) else None)
        base = runs["polars"]["seconds"] if "polars" in runs else None
        for engine, r in runs.items():
            points.append({"engine": engine, "rows": n, "seconds": r["seconds"]})
            results.append(
                Result(
                    benchmark="engines",
                    measure=f"{engine} {what} {n:,} {unit}",
                    ours=r["seconds"],
                    baseline=base,
                    ratio=base / r["seconds"] if base else None,
                    goal="report (polars = 1)",
                    ok=None,
                    detail={
                        f"{unit}_per_second": n / r["seconds"],
                        "peak_mb": round(r["peak_mb"]),
                        "out_rows": r["rows"],
                    },
                )
            )
    return results, points


def _chart(points: list[dict], out: Path, *, what: str = "score", unit: str = "snapshot rows") -> None:
    import altair as alt
    import polars as pl

    frame = pl.DataFrame(points)
    chart = (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X("rows:Q", scale=alt.Scale(type="log"), title=unit),
            y=alt.Y("seconds:Q", scale=alt.Scale(type="log"), title=f"seconds to {what}"),
            color=alt.Color("engine:N", title="engine"),
        )
        .properties(title=f"Time to {what} by engine (log-log)", width=420, height=300)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    chart.save(str(out.with_suffix(".html")))
    try:
        chart.save(str(out.with_suffix(".png")))
    except Exception:  # a PNG needs vl-convert; the HTML chart is written either way
        pass


def _per_size(
    what: str, sizes: list[int], unit: str, child: str, make: Callable[[Path, int], Path]
) -> tuple[list[Result], list[dict]]:
    """:func:`_measure` with each size's data made once by ``make(folder, n)`` in a temporary
    folder, and handed to every engine's child as its argument."""
    made: dict[str, str] = {}

    @contextmanager
    def data(n: int):
        with tempfile.TemporaryDirectory(prefix="hs-bench-engines-") as tmp:
            made["arg"] = str(make(Path(tmp), n))
            yield

    return _measure(what, sizes, unit, lambda engine, n: _run(engine, n, child, made["arg"]), around=data)


def _snapshot_file(folder: Path, n: int) -> Path:
    """The sample repeated with fresh account ids up to ``n`` rows, as one Parquet file."""
    import healthscore as hs
    import polars as pl

    base = hs.load_sample().snapshots
    path = folder / "snapshots.parquet"
    copies = [base.lazy().with_columns(pl.col("account_id") + f"-{i}") for i in range(-(-n // base.height))]
    pl.concat(copies).head(n).sink_parquet(path)
    return path


def _event_log(folder: Path, n: int) -> Path:
    from tests.benchmarks.bench_build import generate

    generate(folder / "events.parquet", n)
    return folder


def bench_engines() -> list[Result]:
    sizes = _sizes("HS_BENCH_ENGINE_ROWS", "100000,1000000,10000000,100000000")
    results, points = _per_size("score", sizes, "rows", _CHILD, _snapshot_file)
    spark_fixed = min((p["seconds"] for p in points if p["engine"] == "spark"), default=None)
    results.append(
        Result(
            benchmark="engines",
            measure="spark fixed cost (smallest size)",
            ours=spark_fixed,
            baseline=None,
            ratio=None,
            goal="report",
            ok=None,
        )
    )
    _chart(points, ROOT / "build" / "bench_engines")
    return results


def bench_engine_build() -> list[Result]:
    sizes = _sizes("HS_BENCH_ENGINE_EVENTS", "1000000,10000000,100000000")
    results, points = _per_size("build", sizes, "events", _BUILD_CHILD, _event_log)
    _chart(points, ROOT / "build" / "bench_engines_build", what="build snapshots", unit="events")
    return results


if __name__ == "__main__":
    for r in bench_engine_build() + bench_engines():
        print(r.measure, f"{r.ours:.2f} s", r.detail)
