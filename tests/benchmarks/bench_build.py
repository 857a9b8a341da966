"""Snapshot building from a raw event log: the polars and DuckDB engines against plain pandas.

A generated log (``HEALTHSCORE_BENCH_BUILD_EVENTS`` events, default 5 million, over one year;
one account per 1,000 events) is built into weekly snapshots (52 weeks) with 10 trailing-window
metrics (counts per event type over 7/28/90 days, a sum, a mean, active days). The baseline is the
straightforward pandas way: per metric, daily totals pivoted to a day x account matrix, a rolling
sum, and the rows at the grid dates. Each side runs in a fresh process so its peak memory (max RSS)
is its own; the figure reported is seconds per million events. The baseline's numbers are checked
against ours before any time is reported.

Run alone: ``python -m tests.benchmarks -k bench_build`` (50 M events: set the variable to 50000000).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from tests.benchmarks import Result

START = dt.date(2025, 1, 1)
GRID = [dt.date(2025, 1, 6) + dt.timedelta(weeks=k) for k in range(52)]
TYPES = ["login", "view", "post", "export", "api"]
METRICS = [
    {"name": "logins_7d", "event": "login", "agg": "count", "window": "7d"},
    {"name": "logins_28d", "event": "login", "agg": "count", "window": "28d"},
    {"name": "logins_90d", "event": "login", "agg": "count", "window": "90d"},
    {"name": "views_28d", "event": "view", "agg": "count", "window": "28d"},
    {"name": "posts_28d", "event": "post", "agg": "count", "window": "28d"},
    {"name": "exports_28d", "event": "export", "agg": "count", "window": "28d"},
    {"name": "events_28d", "agg": "count", "window": "28d"},
    {"name": "api_units_28d", "event": "api", "agg": "sum", "window": "28d"},
    {"name": "api_mean_7d", "event": "api", "agg": "mean", "window": "7d"},
    {"name": "active_days_28d", "agg": "active_days", "window": "28d"},
]


def generate(path: Path, n_events: int, seed: int = 7) -> int:
    """Write an event log of ``n_events`` rows; returns the number of accounts."""
    rng = np.random.default_rng(seed)
    n_accounts = max(10, n_events // 1000)
    weight = rng.lognormal(0, 1, n_accounts)
    account = rng.choice(n_accounts, size=n_events, p=weight / weight.sum())
    seconds = rng.integers(0, 365 * 86400, size=n_events)
    kind = rng.choice(len(TYPES), size=n_events, p=[0.4, 0.3, 0.1, 0.05, 0.15])
    value = np.where(kind == 4, rng.integers(1, 50, size=n_events).astype(float), np.nan)
    frame = pl.DataFrame(
        {
            "account_id": pl.Series(account).cast(pl.String),
            "time": (
                pl.Series(seconds * 1_000_000).cast(pl.Datetime("us"))
                + (dt.datetime(2025, 1, 1) - dt.datetime(1970, 1, 1))
            ),
            "event": pl.Series(np.array(TYPES)[kind]),
            "value": pl.Series(value).fill_nan(None),
        }
    )
    frame.write_parquet(path, row_group_size=500_000)
    return n_accounts


def _spec(folder: Path):
    from healthscore.spec.metrics import parse_spec

    return parse_spec(
        {"source": {"events": "events.parquet"}, "grid": {"dates": [d.isoformat() for d in GRID]}, "metrics": METRICS},
        base=folder,
    )


def pandas_build(path: Path):
    """The plain pandas way: per metric, a day x account matrix of daily totals and a rolling sum."""
    import pandas as pd

    df = pd.read_parquet(path)
    df["date"] = df["time"].dt.normalize()
    days = pd.date_range(df["date"].min(), pd.Timestamp(GRID[-1]), freq="D")
    grid = pd.DatetimeIndex([pd.Timestamp(d) for d in GRID])
    start = df.groupby("account_id")["date"].min()
    out = {}
    for m in METRICS:
        sub = df if m.get("event") is None else df[df["event"] == m["event"]]
        n = int(m["window"].rstrip("d"))
        if m["agg"] == "active_days":
            daily = sub.groupby(["date", "account_id"]).size().clip(upper=1)
        elif m["agg"] == "count":
            daily = sub.groupby(["date", "account_id"]).size()
        else:
            daily = sub.groupby(["date", "account_id"])["value"].sum()
        wide = daily.unstack("account_id", fill_value=0).reindex(days, fill_value=0)
        rolled = wide.rolling(n, min_periods=1).sum()
        if m["agg"] == "mean":
            counts = (
                sub[sub["value"].notna()]
                .groupby(["date", "account_id"])
                .size()
                .unstack("account_id", fill_value=0)
                .reindex(days, fill_value=0)
                .rolling(n, min_periods=1)
                .sum()
            )
            rolled = rolled / counts.where(counts > 0)
        out[m["name"]] = rolled.reindex(grid).stack(future_stack=True)
    frame = pd.DataFrame(out)
    frame.index.names = ["as_of", "account_id"]
    frame = frame.reset_index()
    frame = frame[frame["as_of"] >= frame["account_id"].map(start)]
    return frame.sort_values(["account_id", "as_of"]).reset_index(drop=True)


def _child(side: str, folder: str, queue) -> None:
    import warnings

    folder_p = Path(folder)
    t0, c0 = time.perf_counter(), time.process_time()
    if side == "pandas":
        frame = pandas_build(folder_p / "events.parquet")
        check = frame[["account_id", "as_of", "logins_28d", "api_units_28d"]]
        check = pl.from_pandas(check).with_columns(pl.col("as_of").cast(pl.Date), pl.col("logins_28d").cast(pl.Int64))
    else:
        from healthscore.core.build import build_snapshots

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = build_snapshots(_spec(folder_p), engine=side, today=dt.date(2026, 1, 1))
        check = frame.select("account_id", "as_of", "logins_28d", "api_units_28d")
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB on Linux
    check.sort("account_id", "as_of").write_parquet(folder_p / f"check_{side}.parquet")
    queue.put((elapsed, peak, cpu))


def _run(side: str, folder: Path) -> tuple[float, float, float]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(side, str(folder), queue))
    proc.start()
    result = queue.get(timeout=600)
    proc.join(timeout=60)
    return result


def bench_build(n_events: int | None = None) -> list[Result]:
    n_events = n_events or int(os.environ.get("HEALTHSCORE_BENCH_BUILD_EVENTS", "5000000"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        n_accounts = generate(folder / "events.parquet", n_events)
        timings = {side: _run(side, folder) for side in ("pandas", "polars", "duckdb")}
        checks = {side: pl.read_parquet(folder / f"check_{side}.parquet") for side in timings}
    for side in ("polars", "duckdb"):
        ours, base = checks[side], checks["pandas"]
        assert ours.select("account_id", "as_of").equals(base.select("account_id", "as_of")), side
        assert ours["logins_28d"].equals(base["logins_28d"]), side
        assert np.allclose(ours["api_units_28d"].to_numpy(), base["api_units_28d"].to_numpy(), rtol=1e-9), side
    base_t, base_mem, base_cpu = timings["pandas"]
    millions = n_events / 1e6
    rows = []
    for side in ("polars", "duckdb"):
        t, mem, cpu = timings[side]
        rows.append(
            Result(
                "core.build",
                f"{side}: {millions:g}M events, 10 metrics",
                t / millions,
                base_t / millions,
                base_t / t,
                "faster than pandas",
                t < base_t,
                unit="s",
                detail={
                    "per": "second per million events",
                    "accounts": n_accounts,
                    "weeks": len(GRID),
                    "peak_rss_mib": round(mem),
                    "pandas_peak_rss_mib": round(base_mem),
                    "total_s": round(t, 2),
                    "pandas_total_s": round(base_t, 2),
                    "cpu_s": round(cpu, 2),
                    "pandas_cpu_s": round(base_cpu, 2),
                },
            )
        )
    return rows


if __name__ == "__main__":
    for r in bench_build():
        print(r)
