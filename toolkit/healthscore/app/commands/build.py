"""``healthscore build``: snapshots and outcome events from raw event logs and subscriptions.

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="healthscore")
>>> add_build(parser.add_subparsers())
>>> args = parser.parse_args(["build", "--spec", "s.toml", "--out", "x.parquet", "--map", "account_id=customerID"])
>>> _mapping(args.map)
{'account_id': 'customerID'}
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from healthscore.app.commands.options import add_map_arg, parse_map
from healthscore.core.build import ENGINES, BuildWarning, build
from healthscore.errors import UsageError
from healthscore.io import files
from healthscore.spec.metrics import load_spec

__all__ = ["add_build"]


def add_build(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build",
        help="build snapshots and outcome events from raw events and subscriptions",
        description="Read the raw tables named in a metric spec (events; subscriptions and a CRM "
        "table when given), and write one snapshot row per account and observation "
        "date with every metric of the spec, point in time. Nothing is written when "
        "the raw data has problems: they are listed with examples and the fix.",
        epilog="example: healthscore build --spec metrics.toml --out build/snapshots.parquet "
        "--events-out build/events.parquet --grid 1w --map account_id=customerID",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--spec", type=Path, required=True, help="metric spec TOML ([source], [grid], [[metrics]], [outcomes])"
    )
    p.add_argument("--out", type=Path, required=True, help="snapshots file to write (.parquet or .csv)")
    p.add_argument("--events-out", type=Path, help="outcome events file to write (.parquet or .csv)")
    p.add_argument("--grid", help="observation dates: 1w, 2w, 1mo, anniversary (default: the spec's [grid])")
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="polars",
        help="polars (default; a log of more than 10M events is built one part of the accounts at a time), "
        "duckdb (reads the files in place, spills to disk beyond --memory-limit) or spark "
        "(a local Spark session reads the Parquet or CSV event log; needs the spark extra and Java 17)",
    )
    p.add_argument(
        "--memory-limit",
        metavar="SIZE",
        help="with --engine duckdb: the most memory DuckDB may use, e.g. 4GB; beyond it DuckDB spills "
        "to a temporary folder (default: 80%% of this machine's memory)",
    )
    add_map_arg(
        p,
        "column name in the raw files, overriding [source.columns]; repeat, e.g. "
        "--map account_id=customerID --map time=ts",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_build)


_mapping = parse_map  # one --map parser for every command


def _writer(path: Path, flag: str):
    if path.suffix not in (".parquet", ".csv"):
        raise UsageError(f"{flag} {path}: use a .parquet or .csv file name")
    return files.write_parquet if path.suffix == ".parquet" else files.write_csv


def _cmd_build(args: argparse.Namespace) -> int:
    write_snaps = _writer(args.out, "--out")
    write_events = _writer(args.events_out, "--events-out") if args.events_out else None
    spec = load_spec(args.spec)
    if args.map:
        spec = spec.with_columns(_mapping(args.map))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BuildWarning)
        result = build(
            spec, engine=args.engine, grid=args.grid, progress=not args.no_progress, memory_limit=args.memory_limit
        )
    for w in caught:
        if issubclass(w.category, BuildWarning):
            print(f"healthscore: warning: {w.message}", file=sys.stderr)
    # both outputs are ready before either is written; each write is atomic
    write_snaps(result.snapshots, args.out)
    if write_events is not None:
        write_events(result.events, args.events_out)
    snaps = result.snapshots
    print(
        f"built {snaps.height:,} snapshots of {snaps['account_id'].n_unique():,} accounts "
        f"({len(spec.metrics)} metrics, engine {args.engine}) -> {args.out}"
    )
    if write_events is not None:
        print(f"wrote {result.events.height:,} outcome events -> {args.events_out}")
    return 0
