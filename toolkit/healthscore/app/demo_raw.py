"""The demo's first step: build the sample's snapshots from its raw layer and check them.

>>> callable(build_from_raw)
True
"""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from healthscore.core.build import build
from healthscore.datasets.portfolio import load_sample
from healthscore.datasets.raw import compare_built

__all__ = ["build_from_raw"]


def build_from_raw(out: Path) -> str:
    """Write the bundled sample's raw layer into ``out/raw``, build snapshots and outcome events
    from it, and compare them with the bundled snapshots and events; returns the summary lines."""
    sample = load_sample()
    t0 = time.perf_counter()
    raw = sample.raw
    spec = raw.save(out / "raw")
    written = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = build(spec, engine="polars")
    seconds = time.perf_counter() - t0
    snaps = result.snapshots
    table = compare_built(snaps, sample.snapshots)
    differ = table.filter((pl.col("differ") > 0) | (pl.col("missing_rows") > 0))
    keys = ["account_id", "date", "event"]
    outcomes_equal = result.events.select(keys).sort(keys).equals(sample.events.select(keys).sort(keys))
    check = (
        f"{table.height} columns equal to the bundled snapshots on every row"
        if differ.is_empty()
        else "DIFFERENT from the bundled snapshots: "
        + ", ".join(f"{r['metric']} ({r['differ']} rows)" for r in differ.iter_rows(named=True))
    )
    return (
        f"raw layer: {raw.events.height:,} events ({raw.events['event'].n_unique()} types), "
        f"{raw.subscriptions.height:,} subscriptions, {raw.crm.height:,} CRM rows, generated and written in {written:.1f} s "
        f"-> {out / 'raw'}\n"
        f"built {snaps.height:,} snapshots of {snaps['account_id'].n_unique():,} accounts "
        f"({snaps.width - 2} metrics) in {seconds:.1f} s: {check}; "
        f"{result.events.height} outcome events "
        f"{'equal to the bundled events' if outcomes_equal else 'DIFFERENT from the bundled events'}"
    )
