"""``healthscore monitor``: does the score model still hold? Drift, AUC and calibration by quarter.

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="healthscore")
>>> add_monitor(parser.add_subparsers())
>>> args = parser.parse_args(["monitor", "--model", "m.toml", "--data", "s.parquet", "--out", "r.html"])
>>> args.horizon, args.by, args.set_reference      # no horizon: the reference's is used
(None, 'quarter', False)
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from healthscore.analysis.monitoring import monitor, reference_from
from healthscore.errors import UsageError
from healthscore.io.snapshots import read_events, read_snapshots
from healthscore.render.monitoring import monitoring_report
from healthscore.spec.model import load_model

__all__ = ["add_monitor"]


class MonitorUsageError(UsageError):
    """Flags of ``healthscore monitor`` that cannot work together."""


def add_monitor(sub: argparse._SubParsersAction) -> None:
    """Declare ``healthscore monitor`` and its flags."""
    p = sub.add_parser(
        "monitor",
        help="check that a score model still holds: drift, AUC and calibration by quarter",
        description="Compare each quarter of the snapshots with the model's [reference] (the period it was "
        "fitted on): population stability (PSI) of every metric and of the score, N/A shares, the "
        "score's AUC with its interval and, with a probability map, predicted against observed "
        "rates. Prints the verdict ('refit recommended: ...', 'watch' or 'stable') and writes a "
        "static HTML report. --set-reference stores a new reference in a copy of the model.",
        epilog="examples:\n"
        "  healthscore monitor --model build/fitted.toml --data data/snapshots.parquet "
        "--events data/events.parquet --out build/monitoring.html\n"
        "  healthscore monitor --model data/model.toml --data data/snapshots.parquet --events "
        "data/events.parquet --set-reference --reference-until 2026-05-18 --out-model build/watched.toml "
        "--out build/monitoring.html",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="FILE[#NAME]",
        help="score model TOML; FILE#NAME picks one definition of a multi-definition file",
    )
    p.add_argument("--data", required=True, help="snapshots: CSV, Parquet, Excel, DuckDB file or database URI")
    p.add_argument("--events", help="events table (account_id, date, event); without it only drift is checked")
    p.add_argument("--out", type=Path, metavar="FILE.html", help="where to write the report")
    p.add_argument("--outcome", help="event the AUC is about (default: the reference's, else churned)")
    p.add_argument(
        "--horizon",
        default=None,
        help="outcome window after each snapshot: 90d, 13w, 3mo (default: the reference's, else 90d)",
    )
    p.add_argument("--by", choices=["quarter", "month"], default="quarter", help="period to compare (default quarter)")
    p.add_argument(
        "--min-rows",
        type=int,
        default=200,
        metavar="N",
        help="periods with fewer snapshots are shown but not judged (default 200)",
    )
    p.add_argument(
        "--set-reference",
        action="store_true",
        help="take a new reference from --data (or its first weeks, see --reference-until) and write "
        "the model with it to --out-model",
    )
    p.add_argument(
        "--reference-until",
        type=dt.date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="with --set-reference: the reference period ends on this day (default: the last snapshot)",
    )
    p.add_argument("--out-model", type=Path, metavar="FILE.toml", help="with --set-reference: the new model file")
    p.add_argument("--overwrite", action="store_true", help="replace --out-model if it exists")
    p.set_defaults(func=run_monitor)


def run_monitor(args: argparse.Namespace) -> int:
    """Run ``healthscore monitor``."""
    if args.out is None and not args.set_reference:
        raise MonitorUsageError("nothing to write: pass --out report.html (and/or --set-reference --out-model M2)")
    if args.out is not None and args.out.suffix.lower() not in (".html", ".htm"):
        raise MonitorUsageError(f"--out {args.out}: the report is HTML, name it with .html")
    if args.set_reference and args.out_model is None:
        raise MonitorUsageError("--set-reference writes the model with its new reference: pass --out-model FILE.toml")
    if not args.set_reference and (args.out_model is not None or args.reference_until is not None):
        raise MonitorUsageError("--out-model and --reference-until go with --set-reference")
    if args.out_model is not None and args.out_model.exists() and not args.overwrite:
        raise MonitorUsageError(f"{args.out_model} exists: choose a new file or pass --overwrite")
    if args.min_rows < 1:
        raise MonitorUsageError(f"--min-rows {args.min_rows}: give at least 1")
    path, _, name = args.model.partition("#")
    model = load_model(Path(path), name or None)
    snaps = read_snapshots(args.data)
    events = read_events(args.events) if args.events else None
    reference = model.reference
    if args.set_reference:
        outcome = args.outcome or "churned"
        horizon = args.horizon or "90d"
        period = None
        if args.reference_until is not None:
            period = (snaps["as_of"].min(), args.reference_until)
        reference = reference_from(snaps, events, model, outcome=outcome, horizon=horizon, period=period)
        written = model.with_reference(reference).save(args.out_model)
        print(
            f"reference {reference['first_as_of']} .. {reference['last_as_of']} ({reference['rows']:,} snapshots"
            + (f", AUC {reference['auc']:.3f}" if "auc" in reference else "")
            + f") -> {written}"
        )
    elif reference is None:
        raise MonitorUsageError(
            f"{path} has no [reference] table: fit the model with 'healthscore fit' (which "
            "writes one), or take one now with --set-reference --out-model FILE.toml"
        )
    if args.out is None:
        return 0
    mon = monitor(
        snaps,
        events,
        model,
        reference=reference,
        by=args.by,
        outcome=args.outcome,
        horizon=args.horizon,
        min_rows=args.min_rows,
    )
    print(mon.summary())
    monitoring_report(mon, args.out)
    print(f"\nwritten {args.out}")
    return 0
