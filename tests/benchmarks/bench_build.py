"""Snapshot building from a raw event log: the polars and DuckDB engines against three baselines.

A generated log (``HEALTHSCORE_BENCH_BUILD_EVENTS`` events, default 5 million, over one year; one
account per 2,500 events, so 50 million events are 20,000 accounts) is built into weekly snapshots
(52 weeks) with 10 trailing-window metrics (counts per event type over 7/28/90 days, a sum, a mean,
active days). Baselines, each in the same run:

* **pandas, straightforward** (the goal baseline): what an analyst writes; for each snapshot date and
  each metric, the events in the metric's trailing window grouped by account, the 52 frames
  concatenated.
* **pandas, dense rolling matrix** (informative): per metric, daily totals pivoted to a day x account
  matrix, a rolling sum, and the rows at the grid dates; a clever vectorised way, not the usual one.
* **Featuretools** (optional ``bench`` extra): deep feature synthesis with a cutoff-time frame (account
  x weekly date), one ``training_window`` per metric window and the same primitives (Count, Sum, Mean
  with ``where`` on the event type, NumUnique of the day). It runs on account subsets growing by 4x
  until the next one would not finish within ``HEALTHSCORE_BENCH_FEATURETOOLS_SECONDS`` (default 120);
  the comparison is per event processed, on the largest subset it finished.

Each side runs in a fresh process so its peak memory (max RSS) is its own; times are reported as
seconds per million events. Every baseline's numbers are checked against ours before any time is
reported (Featuretools on its subset's accounts).

Run alone: ``python -m tests.benchmarks -k bench_build`` (50 M events: set the variable to 50000000).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tests.benchmarks import Result

START = dt.date(2025, 1, 1)
GRID = [dt.date(2025, 1, 6) + dt.timedelta(weeks=k) for k in range(52)]
TYPES = ["login", "view", "post", "export", "api"]
EVENTS_PER_ACCOUNT = 2_500
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
CHECKED = ["logins_28d", "logins_90d", "api_units_28d", "api_mean_7d", "active_days_28d"]
INTEGER = {m["name"] for m in METRICS if m["agg"] in ("count", "active_days")}
BUDGET_S = float(os.environ.get("HEALTHSCORE_BENCH_FEATURETOOLS_SECONDS", "120"))
GB = 1024.0  # MiB
SKIPPED = "featuretools is not installed (pip install 'healthscore[bench]')"


def _days(m: dict[str, str]) -> int:
    return int(m["window"].rstrip("d"))


def generate(path: Path, n_events: int, seed: int = 7, chunk: int = 5_000_000, *, accounts: int | None = None) -> int:
    """Write an event log of ``n_events`` rows (made in chunks, so 50M stays small) over ``accounts``
    accounts (default: one per :data:`EVENTS_PER_ACCOUNT` events); returns the accounts."""
    rng = np.random.default_rng(seed)
    n_accounts = accounts or max(10, n_events // EVENTS_PER_ACCOUNT)
    weight = rng.lognormal(0, 1, n_accounts)
    parts = []
    for first in range(0, n_events, chunk):
        n = min(chunk, n_events - first)
        account = rng.choice(n_accounts, size=n, p=weight / weight.sum())
        seconds = rng.integers(0, 365 * 86400, size=n)
        kind = rng.choice(len(TYPES), size=n, p=[0.4, 0.3, 0.1, 0.05, 0.15])
        value = np.where(kind == 4, rng.integers(1, 50, size=n).astype(float), np.nan)
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
        part = path.with_name(f"{path.stem}.{len(parts)}.parquet")
        frame.write_parquet(part, row_group_size=500_000)
        parts.append(part)
        del frame
    if len(parts) == 1:
        parts[0].replace(path)
    else:
        pl.scan_parquet(parts).sink_parquet(path, row_group_size=500_000)
        for part in parts:
            part.unlink()
    return n_accounts


def _spec(folder: Path):
    from healthscore.spec.metrics import parse_spec

    return parse_spec(
        {"source": {"events": "events.parquet"}, "grid": {"dates": [d.isoformat() for d in GRID]}, "metrics": METRICS},
        base=folder,
    )


def _read_pandas(path: Path, accounts: list[str] | None = None):
    frame = pl.scan_parquet(path)
    if accounts is not None:
        frame = frame.filter(pl.col("account_id").is_in(accounts))
    df = frame.collect().to_pandas()
    df["date"] = df["time"].dt.normalize()
    return df


def pandas_straightforward(path: Path):
    """What an analyst writes: per snapshot date and metric, the window's events grouped by account."""
    import pandas as pd  # the baseline's own library, only in the baseline's process

    df = _read_pandas(path)
    start = df.groupby("account_id")["date"].min()
    longest = pd.Timedelta(days=max(_days(m) for m in METRICS))
    frames = []
    for day in GRID:
        as_of = pd.Timestamp(day)
        accounts = start.index[start <= as_of]
        snap = pd.DataFrame(index=accounts)
        recent = df[(df["date"] > as_of - longest) & (df["date"] <= as_of)]  # the longest window, once
        for m in METRICS:
            window = recent[recent["date"] > as_of - pd.Timedelta(days=_days(m))]
            if m.get("event"):
                window = window[window["event"] == m["event"]]
            by = window.groupby("account_id")
            if m["agg"] == "count":
                col = by.size()
            elif m["agg"] == "sum":
                col = by["value"].sum()
            elif m["agg"] == "mean":
                col = by["value"].mean()
            else:
                col = by["date"].nunique()
            col = col.reindex(accounts)
            snap[m["name"]] = col if m["agg"] == "mean" else col.fillna(0)
        snap["as_of"] = as_of
        frames.append(snap.rename_axis("account_id").reset_index())
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["account_id", "as_of"]).reset_index(drop=True)


def pandas_dense(path: Path):
    """The dense pandas way: per metric, a day x account matrix of daily totals and a rolling sum."""
    import pandas as pd  # the baseline's own library, only in the baseline's process

    df = _read_pandas(path)
    days = pd.date_range(df["date"].min(), pd.Timestamp(GRID[-1]), freq="D")
    grid = pd.DatetimeIndex([pd.Timestamp(d) for d in GRID])
    start = df.groupby("account_id")["date"].min()
    out = {}
    for m in METRICS:
        sub = df if m.get("event") is None else df[df["event"] == m["event"]]
        n = _days(m)
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


class _CachedAccessor:
    """pandas < 3 kept an accessor object on its frame; woodwork (under Featuretools) relies on it."""

    def __init__(self, name: str, accessor: type) -> None:
        self.name, self.accessor = name, accessor

    def __get__(self, obj: Any, cls: type) -> Any:
        if obj is None:
            return self.accessor
        made = self.accessor(obj)
        object.__setattr__(obj, self.name, made)
        return made


def _keep_woodwork_schemas() -> None:
    """Featuretools 1.31 stores its schemas on ``df.ww``; pandas 3 makes a new accessor per access."""
    import pandas as pd  # the baseline's own library, only in the baseline's process
    from woodwork.column_accessor import WoodworkColumnAccessor  # comes with featuretools
    from woodwork.table_accessor import WoodworkTableAccessor  # comes with featuretools

    if int(pd.__version__.split(".")[0]) >= 3:
        pd.DataFrame.ww = _CachedAccessor("ww", WoodworkTableAccessor)  # type: ignore[attr-defined]
        pd.Series.ww = _CachedAccessor("ww", WoodworkColumnAccessor)  # type: ignore[attr-defined]


def featuretools_build(path: Path, accounts: list[str]):
    """Deep feature synthesis with cutoff times: one ``training_window`` per metric window."""
    import featuretools as ft  # optional (the ``bench`` extra); only in the Featuretools process
    import pandas as pd  # the baseline's own library, only in the baseline's process

    _keep_woodwork_schemas()
    df = _read_pandas(path, accounts)
    df["day"] = df["date"].dt.strftime("%Y-%m-%d")
    df = df.reset_index(drop=True).rename_axis("event_id").reset_index()
    start = df.groupby("account_id")["date"].min()
    es = ft.EntitySet("bench")
    es.add_dataframe(
        dataframe_name="events",
        dataframe=df[["event_id", "account_id", "time", "event", "value", "day"]],
        index="event_id",
        time_index="time",
        logical_types={"event": "Categorical", "day": "Categorical", "value": "Double"},
    )
    es.add_dataframe(dataframe_name="accounts", dataframe=pd.DataFrame({"account_id": start.index}), index="account_id")
    es.add_relationship("accounts", "account_id", "events", "account_id")
    es.add_interesting_values(dataframe_name="events", values={"event": TYPES})
    # a snapshot at day T reads events before T + 1 day; half a second before it keeps both the
    # cutoff and the window's start between whole seconds, whatever side Featuretools includes
    rows = [(a, pd.Timestamp(d)) for d in GRID for a in start.index[start <= pd.Timestamp(d)]]
    cutoff = pd.DataFrame(rows, columns=["account_id", "as_of"])
    cutoff["time"] = cutoff["as_of"] + pd.Timedelta(days=1) - pd.Timedelta(milliseconds=500)
    names = {
        "count": lambda e: f"COUNT(events WHERE event = {e})" if e else "COUNT(events)",
        "sum": lambda e: f"SUM(events.value WHERE event = {e})",
        "mean": lambda e: f"MEAN(events.value WHERE event = {e})",
        "active_days": lambda e: "NUM_UNIQUE(events.day)",
    }
    features = ft.dfs(
        entityset=es,
        target_dataframe_name="accounts",
        agg_primitives=["count", "sum", "mean", "num_unique"],
        where_primitives=["count", "sum", "mean"],
        trans_primitives=[],
        max_depth=1,
        features_only=True,
    )
    by_name = {f.get_name(): f for f in features}
    out = cutoff[["account_id", "as_of"]].set_index(["account_id", "as_of"])
    for window in sorted({_days(m) for m in METRICS}):
        ms = [m for m in METRICS if _days(m) == window]
        chosen = [by_name[names[m["agg"]](m.get("event"))] for m in ms]
        matrix = ft.calculate_feature_matrix(
            chosen,
            entityset=es,
            cutoff_time=cutoff[["account_id", "time"]].assign(as_of=cutoff["as_of"]),
            training_window=f"{window} days",
            verbose=False,
        )
        matrix = matrix.reset_index().set_index(["account_id", "as_of"])
        for m, f in zip(ms, chosen, strict=True):
            col = matrix[f.get_name()]
            out[m["name"]] = col if m["agg"] == "mean" else col.fillna(0)
    return out.reset_index().sort_values(["account_id", "as_of"]).reset_index(drop=True)


def _check_frame(frame) -> pl.DataFrame:
    """The checked columns of a pandas result, in our types."""
    out = pl.from_pandas(frame[["account_id", "as_of", *CHECKED]].reset_index(drop=True))
    return out.with_columns(
        pl.col("account_id").cast(pl.String),
        pl.col("as_of").cast(pl.Date),
        *[pl.col(c).cast(pl.Int64) if c in INTEGER else pl.col(c).cast(pl.Float64) for c in CHECKED],
    )


def _featuretools_grow(folder: Path) -> dict[str, Any]:
    """Featuretools on account subsets growing 4x while the next one fits in the time budget."""
    counts = (
        pl.scan_parquet(folder / "events.parquet")
        .group_by("account_id")
        .len()
        .collect()
        .sort("account_id")
        .sample(fraction=1.0, seed=3)
    )
    total_events = int(counts["len"].sum())
    cum = counts["len"].cum_sum()
    target, spent, best = 20_000, 0.0, None
    while True:
        k = int(min(len(counts), (cum < target).sum() + 1))
        accounts = counts["account_id"][:k].to_list()
        events = int(cum[k - 1])
        t0 = time.perf_counter()
        frame = featuretools_build(folder / "events.parquet", accounts)
        took = time.perf_counter() - t0
        spent += took
        best = {"events": events, "accounts": k, "elapsed": took, "frame": frame}
        # Featuretools grows at least linearly with the events; the next subset is 4x
        if events >= total_events or spent + 4.5 * took > BUDGET_S:
            return best
        target = events * 4


def _peak_mib() -> float:
    """This process's peak resident memory in MiB (VmHWM: its own, not the parent's before exec)."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    except (OSError, AttributeError):  # not Linux: the getrusage figure (may include the parent's)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(side: str, folder: str, queue) -> None:
    import warnings

    folder_p = Path(folder)
    t0, c0 = time.perf_counter(), time.process_time()
    info: dict[str, Any] = {}
    if side == "pandas":
        check = _check_frame(pandas_straightforward(folder_p / "events.parquet"))
    elif side == "dense":
        check = _check_frame(pandas_dense(folder_p / "events.parquet"))
    elif side == "featuretools":
        best = _featuretools_grow(folder_p)
        check = _check_frame(best.pop("frame"))
        info = best
    else:
        from healthscore.core.build import build_snapshots

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = build_snapshots(_spec(folder_p), engine=side, today=dt.date(2026, 1, 1))
        check = frame.select("account_id", "as_of", *CHECKED)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _peak_mib()
    check.sort("account_id", "as_of").write_parquet(folder_p / f"check_{side}.parquet")
    queue.put({"elapsed": info.get("elapsed", elapsed), "peak": peak, "cpu": cpu, **info})


def _run(side: str, folder: Path) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(side, str(folder), queue))
    proc.start()
    try:
        result = queue.get(timeout=1800)
    finally:
        proc.join(timeout=60)
    return result


def _same(ours: pl.DataFrame, base: pl.DataFrame, side: str) -> None:
    """The baseline's rows and numbers equal ours (rows of ``base`` only: Featuretools runs on a subset)."""
    ours = ours.join(base.select("account_id", "as_of"), on=["account_id", "as_of"], how="semi")
    assert ours.height == base.height, f"{side}: {base.height} rows, ours {ours.height}"
    for c in CHECKED:
        if c in INTEGER:
            assert ours[c].equals(base[c]), f"{side}: {c} differs"
        else:
            a, b = ours[c].to_numpy(), base[c].to_numpy()
            assert np.allclose(a, b, rtol=1e-9, equal_nan=True), f"{side}: {c} differs"


def featuretools_available() -> bool:
    try:
        import featuretools  # noqa: F401  # optional (the ``bench`` extra): is it there?
    except ImportError:
        return False
    return True


def bench_build(n_events: int | None = None) -> list[Result]:
    n_events = n_events or int(os.environ.get("HEALTHSCORE_BENCH_BUILD_EVENTS", "5000000"))
    sides = ["polars", "duckdb", "pandas", "dense"]
    with_ft = featuretools_available()
    if with_ft:
        sides.append("featuretools")
    else:
        print(f"bench_build: {SKIPPED}; its rows are skipped", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        n_accounts = generate(folder / "events.parquet", n_events)
        runs = {side: _run(side, folder) for side in sides}
        checks = {side: pl.read_parquet(folder / f"check_{side}.parquet") for side in runs}
    ours_check = checks["polars"]
    for side in sides:
        if side != "polars":
            _same(ours_check, checks[side], side)
    millions = n_events / 1e6
    per_m = {side: run["elapsed"] / (run.get("events", n_events) / 1e6) for side, run in runs.items()}
    labels = {
        "pandas": ("pandas, straightforward", ">= 10x", 10.0),
        "dense": ("pandas, dense rolling matrix", "informative", None),
        "featuretools": ("Featuretools DFS", ">= 50x", 50.0),
    }
    rows = []
    for base in [s for s in ("pandas", "dense", "featuretools") if s in runs]:
        label, goal, need = labels[base]
        b = runs[base]
        for side in ("polars", "duckdb"):
            o = runs[side]
            ratio = per_m[base] / per_m[side]
            rows.append(
                Result(
                    "core.build",
                    f"{side} vs {label}",
                    per_m[side],
                    per_m[base],
                    ratio,
                    f"{goal} per event",
                    None if need is None else ratio >= need,
                    unit="s",
                    detail={
                        "per": "second per million events",
                        "events": n_events,
                        "accounts": n_accounts,
                        "weeks": len(GRID),
                        "baseline_events": b.get("events", n_events),
                        "baseline_accounts": b.get("accounts", n_accounts),
                        "total_s": round(o["elapsed"], 2),
                        "baseline_total_s": round(b["elapsed"], 2),
                        "cpu_s": round(o["cpu"], 2),
                        "baseline_cpu_s": round(b["cpu"], 2) if "events" not in b else None,
                        "peak_rss_mib": round(o["peak"]),
                        "baseline_peak_rss_mib": round(b["peak"]),
                    },
                )
            )
    if not with_ft:
        rows.append(
            Result(
                "core.build",
                "vs Featuretools DFS: skipped",
                per_m["polars"],
                None,
                None,
                ">= 50x per event",
                None,
                unit="s",
                detail={"skipped": SKIPPED},
            )
        )
    for side in ("polars", "duckdb"):
        peak = runs[side]["peak"]
        rows.append(
            Result(
                "core.build",
                f"{side}: peak RSS, {millions:g}M events",
                peak / GB,
                runs["pandas"]["peak"] / GB,
                None,
                "< 6 GB at 50M events",
                peak < 6 * GB if n_events >= 50_000_000 else None,
                unit=" GB",
                detail={"baseline": "pandas, straightforward", "events": n_events, "accounts": n_accounts},
            )
        )
    return rows


if __name__ == "__main__":
    for r in bench_build():
        print(r)
