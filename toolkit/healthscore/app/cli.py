"""The ``healthscore`` command line.

Each subcommand is a pair of small functions: ``_add_<name>`` declares its arguments and
``_cmd_<name>`` runs it by calling the library. Library errors that carry a message for the user
are printed without a traceback: exit status 1 for a problem in the data or the model, 2 for a
wrong or conflicting argument. Data warnings are printed as ``healthscore: warning: ...``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shlex
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import polars as pl

from healthscore import __version__, resources
from healthscore.analysis import evaluation
from healthscore.analysis import scorecard as cards
from healthscore.analysis.cohorts import DERIVED
from healthscore.analysis.evaluation import time_split
from healthscore.analysis.fitting import fit_weights
from healthscore.analysis.shapes import ShapeFit, fit_shapes
from healthscore.app import batch, pdf
from healthscore.app.commands.alerts import add_alerts, check_alert_models, demo_lines, evaluation_backtest
from healthscore.app.commands.build import add_build
from healthscore.app.commands.init import add_init
from healthscore.app.commands.monitor import add_monitor
from healthscore.app.commands.options import add_extract_args, add_map_arg, parse_map, read_history
from healthscore.app.commands.sql import add_sql
from healthscore.app.demo_raw import build_from_raw
from healthscore.app.widgets import TuningSession, edit_weights
from healthscore.core import scoring
from healthscore.core.calibration import METHODS, describe, fit_calibration
from healthscore.core.extract import is_cross_sectional
from healthscore.core.labels import label_outcomes
from healthscore.core.scoring import band_summary
from healthscore.datasets.portfolio import (
    load_sample,
    make_portfolio,
    portfolio_summary_line,
    sample_dir,
)
from healthscore.errors import DataWarning, HealthscoreError, UsageError
from healthscore.io import files, snapshots
from healthscore.io.files import write_text
from healthscore.io.snapshots import check_events, read_events, read_snapshots, warn_problems
from healthscore.io.stream import SnapshotScan, scan_snapshots
from healthscore.spec.model import ScoreModel, load_model
from healthscore.spec.outcomes import horizon_days, parse_horizon

EPILOG = """\
typical session:
  healthscore sample --out data/                  # a sample portfolio with a known truth
  healthscore validate data/snapshots.parquet     # check a snapshot file before scoring it
  healthscore demo                                # every step end to end on the bundled sample
"""


class UserError(HealthscoreError):
    """An error whose message tells the user what to fix; printed without a traceback."""


# ---------------------------------------------------------------- shared input and output checks
def _add_reading_args(p: argparse.ArgumentParser) -> None:
    """--sheet and --timezone: how to read the data files of a command."""
    p.add_argument("--sheet", help="sheet to read from an Excel workbook with several sheets")
    p.add_argument(
        "--timezone",
        metavar="ZONE",
        help="time zone in which timestamps with an offset fall on their day, e.g. UTC or Europe/Berlin "
        "(needed only when dates carry a time zone)",
    )


def _snapshots(args: argparse.Namespace, source: str | Path, **kw) -> pl.DataFrame:
    # --map names the file's own columns; --as-of / --observed-until date an extract without as_of
    kw.setdefault("columns", parse_map(getattr(args, "map", None)))
    as_of = getattr(args, "as_of", None) if getattr(args, "as_of_fills", True) else None
    kw.setdefault("as_of", as_of or getattr(args, "observed_until", None))
    return read_snapshots(
        str(source), sheet=getattr(args, "sheet", None), timezone=getattr(args, "timezone", None), **kw
    )


def _history(
    args: argparse.Namespace, snaps: pl.DataFrame, model: ScoreModel | None = None, required: bool = True
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """(snapshots, events): from --events, or from an extract's --outcome-column (then dropped from the data)."""
    if getattr(args, "outcome_column", None) or not getattr(args, "events", None):
        return read_history(args, snaps, required=required)
    return snaps, _events(args, args.events, snaps, model)


def _events(args: argparse.Namespace, source: str | Path, snaps=None, model: ScoreModel | None = None):
    """Read the events; with the snapshots, warn about events that do not fit them."""
    events = read_events(
        str(source),
        sheet=getattr(args, "sheet", None),
        timezone=getattr(args, "timezone", None),
        columns=parse_map(getattr(args, "map", None)),
    )
    if snaps is not None:
        terminal = ["churned"]
        if model is not None:
            terminal = sorted({e for e in events["event"].unique().to_list() if _is_terminal(model, e)}) or terminal
        warn_problems(str(source), check_events(events, snaps, terminal=terminal))
    return events


def _is_terminal(model: ScoreModel, name: str) -> bool:
    try:
        return bool(model.outcome(name).terminal)
    except HealthscoreError:
        return False


def _same_file(a: str | Path, b: str | Path | None) -> bool:
    if b is None or "://" in str(b):
        return False
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _check_output(
    flag: str, path: str | Path, *, inputs: dict[str, str | Path | None] | None = None, folder: bool = False
) -> None:
    """Refuse an output that cannot be written, before any work is done.

    The output must not be one of the inputs, must be a file (or a folder, with ``folder``) and its
    nearest existing folder must accept a new file.
    """
    target = Path(path)
    for in_flag, value in (inputs or {}).items():
        if value is not None and _same_file(target, value):
            raise UsageError(
                f"{flag} {target} is also the input {in_flag}: writing would replace it; choose another output name"
            )
    if folder:
        if target.exists() and not target.is_dir():
            raise UsageError(f"{flag} {target} is a file; give a folder (it is created if missing)")
    elif target.is_dir():
        raise UsageError(
            f"{flag} {target} is a folder; give a file name inside it, e.g. {target / 'out'}"
            f"{''.join(target.suffixes) or ''}"
        )
    base = target if folder else target.parent
    while not base.exists():
        if base.parent == base:
            break
        base = base.parent
    if base.exists() and not base.is_dir():
        raise UsageError(f"{flag} {target}: {base} is a file, not a folder; choose another place")
    try:
        fd, probe = tempfile.mkstemp(dir=base, prefix=".healthscore-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(
            f"{flag} {target}: cannot write into {base} ({exc.strerror or exc}); choose a folder you can write to"
        ) from None


def _check_horizon(args: argparse.Namespace) -> None:
    try:
        parse_horizon(args.horizon)
    except (HealthscoreError, ValueError) as exc:
        raise UsageError(f"--horizon {args.horizon!r}: {exc}") from None


def _check_model_against(model: ScoreModel, snaps, source: str) -> None:
    model.check_data(snaps, source=source)


# ---------------------------------------------------------------- sample
def _add_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="generate a sample portfolio with a known truth",
        description="Generate a synthetic B2B SaaS portfolio (snapshots, events, truth).\n"
        "The true effect of every signal on churn and expansion is known,\n"
        "so fits and backtests can be checked against it.",
        epilog="writes snapshots.parquet, events.parquet, accounts.parquet, latest_week.csv\n"
        "(for spreadsheets), truth_*.csv/parquet and README.md (the data dictionary);\n"
        "with --raw also raw/events.parquet, raw/subscriptions.parquet, raw/crm.parquet\n"
        "and raw/spec.toml: the raw layer that 'healthscore build' turns into snapshots.\n\n"
        "example: healthscore sample --out build/big --accounts 20000 --weeks 26 --seed 1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, required=True, help="folder to write into (created if missing)")
    p.add_argument("--accounts", type=int, default=2000, help="number of accounts (default 2000)")
    p.add_argument("--weeks", type=int, default=52, help="weekly snapshots per account (default 52)")
    p.add_argument("--seed", type=int, default=7, help="random seed; the same seed gives the same files (default 7)")
    p.add_argument(
        "--end",
        type=dt.date.fromisoformat,
        default=dt.date(2026, 11, 16),
        metavar="YYYY-MM-DD",
        help="date of the last weekly snapshot, moved back to a Monday (default 2026-11-16)",
    )
    p.add_argument(
        "--raw",
        action="store_true",
        help="also write the raw layer (event log, subscriptions, CRM log, metric spec) into OUT/raw",
    )
    p.set_defaults(func=_cmd_sample)


def _cmd_sample(args: argparse.Namespace) -> int:
    if args.accounts < 1 or args.weeks < 1:
        raise UsageError(f"--accounts and --weeks must be at least 1 (got {args.accounts} and {args.weeks})")
    portfolio = make_portfolio(
        n_accounts=args.accounts,
        n_weeks=args.weeks,
        seed=args.seed,
        end=args.end,
        progress=args.accounts * args.weeks > 500_000,
    )
    for path in portfolio.save(args.out):
        print(f"wrote {path}")
    if args.raw:
        spec = portfolio.raw.save(args.out / "raw")
        print(
            f"wrote the raw layer into {spec.parent}: events.parquet, subscriptions.parquet, crm.parquet, "
            f"spec.toml\nbuild it: healthscore build --spec {spec} --out {args.out / 'built' / 'snapshots.parquet'}"
        )
    print(portfolio.summary())
    return 0


# ---------------------------------------------------------------- validate
def _add_validate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check a snapshot file and list its problems",
        description="Read a snapshot file (CSV, Parquet, Excel, DuckDB or SQL URI) and "
        "validate it. Exit 0 when clean (warnings are printed), 1 with the list of "
        "problems otherwise (or with warnings, under --strict).",
    )
    p.add_argument("file", help="path or URI of the snapshots (or of the events, with --events)")
    p.add_argument("--events", action="store_true", help="the file is an events table (account_id, date, event)")
    p.add_argument(
        "--snapshots",
        help="with --events: snapshots to check the events against (unknown accounts, "
        "events before the first snapshot, repeated churn)",
    )
    p.add_argument(
        "--model",
        metavar="FILE[#NAME]",
        help="also check the data against this score model (missing columns, metrics on dates or text, units)",
    )
    p.add_argument("--table", help="table name inside a DuckDB/SQLite file or database")
    p.add_argument(
        "--nonnegative",
        help="comma-separated columns that can never be negative (default: known metric names and count-like names)",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    _add_reading_args(p)
    add_extract_args(p)
    p.set_defaults(func=_cmd_validate)


def _cmd_validate(args: argparse.Namespace) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        try:
            if args.events:
                frame = read_events(
                    args.file, table=args.table, sheet=args.sheet, timezone=args.timezone, columns=parse_map(args.map)
                )
                if args.snapshots:
                    snaps = _snapshots(args, args.snapshots)
                    model = _load_model_arg(args.model) if args.model else None
                    _events_check = check_events(
                        frame,
                        snaps,
                        terminal=["churned"]
                        if model is None
                        else sorted({e for e in frame["event"].unique().to_list() if _is_terminal(model, e)})
                        or ["churned"],
                    )
                    warn_problems(args.file, _events_check)
                print(
                    f"{args.file}: OK, {frame.height:,} events of {frame['account_id'].n_unique():,} accounts "
                    f"({', '.join(f'{e} {n}' for e, n in frame['event'].value_counts(sort=True).iter_rows())})"
                )
            else:
                nonneg = [c.strip() for c in args.nonnegative.split(",")] if args.nonnegative else None
                model = _load_model_arg(args.model) if args.model else None
                frame = _snapshots(args, args.file, table=args.table, nonnegative=nonneg)
                if args.outcome_column:
                    frame, churn = read_history(args, frame)
                if model is not None:
                    model.check_data(frame, source=args.file)
                print(f"{args.file}: OK\n{snapshots.describe(frame)}")
                if args.outcome_column:
                    print(
                        f"outcome column {args.outcome_column}: {churn.height:,} of "
                        f"{frame['account_id'].n_unique():,} accounts churned"
                    )
        except snapshots.ValidationError as exc:
            _print_warnings(caught)
            print(str(exc), file=sys.stderr)
            return 1
        _print_warnings(caught)
    if caught and args.strict:
        print(f"{args.file}: {len(caught)} warning(s); exit 1 under --strict", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- score
def _add_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score snapshots with a score model",
        description="Calibrate every metric of the model, combine the sub-scores into the score, "
        "band, coverage, trend and drivers, and write one row per account and as_of.",
        epilog="example: healthscore score --model data/model.toml --data data/snapshots.parquet "
        "--out build/scores.parquet --as-of 2026-11-16",
    )
    p.add_argument("--model", type=Path, required=True, help="score model TOML file")
    p.add_argument("--name", help="which definition of a multi-definition model file (default: the first)")
    p.add_argument("--data", required=True, help="snapshots: CSV, Parquet, Excel, DuckDB file or database URI")
    p.add_argument("--out", type=Path, required=True, help="output file (.parquet or .csv)")
    p.add_argument(
        "--as-of",
        type=dt.date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="score only the latest snapshot date on or before this day (default: every snapshot)",
    )
    p.add_argument(
        "--overrides",
        type=Path,
        help="CSV/Parquet of manual overrides: account_id, metric, value, reason, author, created, expires",
    )
    _add_reading_args(p)
    add_extract_args(p, as_of=False, outcome=False)
    p.set_defaults(func=_cmd_score, as_of_fills=False)


def _cmd_score(args: argparse.Namespace) -> int:

    if args.out.suffix not in (".parquet", ".csv"):
        raise UsageError(f"--out {args.out}: use a .parquet or .csv file name")
    _check_output("--out", args.out, inputs={"--data": args.data, "--model": args.model, "--overrides": args.overrides})
    model = load_model(args.model, args.name)
    # read and scored part by part (whole accounts), written as it goes: memory follows a part,
    # not the file; with --as-of only the dates that day needs are read
    if getattr(args, "map", None) or getattr(args, "observed_until", None):
        # an extract with its own column names or no as_of: read and mapped whole, then scored in parts
        scan = SnapshotScan.of_frame(_snapshots(args, args.data), str(args.data))
    else:
        scan = scan_snapshots(
            str(args.data), sheet=getattr(args, "sheet", None), timezone=getattr(args, "timezone", None)
        )
    _check_model_against(model, scan.typed(), args.data)
    done = scoring.score_to_file(
        scan, model, args.out, overrides=args.overrides, as_of=args.as_of, progress=sys.stderr.isatty()
    )
    print(
        f"scored {done.accounts:,} accounts, {done.rows:,} snapshots with "
        f"{model.name} {model.version} (hash {model.hash}) -> {args.out}"
    )
    print(_band_lines(done.latest, model))
    return 0


def _band_lines(scores, model) -> str:

    lines = ["accounts per band at their latest snapshot:"]
    for band, n, mean, share in band_summary(scores, model).select("band", "accounts", "mean_score", "share").rows():
        mean_text = f"mean score {mean:5.1f}" if mean is not None else ""
        lines.append(f"  {band:<10} {n:>7,}  {share:6.1%}  {mean_text}")
    return "\n".join(lines)


# ---------------------------------------------------------------- evaluate
def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="backtest one or more score models against what happened",
        description="Label every snapshot point-in-time with the outcome, split by time (train on earlier "
        "snapshots, test on later ones), score each model on the same holdout and report AUC with "
        "its interval, PR-AUC, top-decile lift, Brier score, calibration, event rate per band, "
        "alarm precision/recall, cut-offs and score trajectories, overall and per segment. Writes "
        "DIR/evaluation.html (static, no network), the tables as CSV and each model's "
        "score-to-probability map as JSON, and prints the key table.",
        epilog="example: healthscore evaluate --model data/model.toml --model build/fitted.toml "
        "--data data/snapshots.parquet --events data/events.parquet --out build/evaluation",
    )
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="FILE[#NAME]",
        help="score model TOML; repeat to compare models head to head. FILE#NAME picks one "
        "definition of a multi-definition file (default: its first)",
    )
    p.add_argument("--data", required=True, help="snapshots: CSV, Parquet, Excel, DuckDB file or database URI")
    p.add_argument("--events", help="events table (account_id, date, event); or --outcome-column for an extract")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the report (created if missing)")
    p.add_argument("--outcome", default="churned", help="event to predict (default churned; e.g. expanded)")
    p.add_argument("--horizon", default="90d", help="outcome window after each snapshot: 90d, 13w, 3mo (default 90d)")
    p.add_argument(
        "--split",
        metavar="YYYY-MM-DD|kfold|random",
        help="first test date (training rows end a horizon earlier), 'kfold' (grouped, stratified "
        "cross-validation) or 'random' (a grouped 30%% holdout); default: 70%% into the labelled "
        "range, or kfold when there is one snapshot per account",
    )
    p.add_argument("--by", help="attribute to break results down by, or 'none' (default segment when the data has it)")
    p.add_argument(
        "--probability",
        choices=["isotonic", "logistic"],
        default="isotonic",
        help="score-to-probability map fitted on the training rows (default isotonic)",
    )
    p.add_argument(
        "--freeze",
        action="store_true",
        help="also write DIR/<model>_with_probability.toml: each model with its probability map "
        "frozen in as a [probability] table (comments kept), so scorecards can read it",
    )
    p.add_argument(
        "--target-precision",
        type=float,
        default=0.2,
        metavar="P",
        help="report the cut-off that keeps alarm precision at or above P (default 0.2)",
    )
    p.add_argument(
        "--capacity",
        type=int,
        metavar="K",
        help="accounts a CS team can work per snapshot period (default: a tenth of the book)",
    )
    p.add_argument("--folds", type=int, default=5, help="folds of --split kfold (default 5)")
    p.add_argument(
        "--alerts",
        action="store_true",
        help="also backtest the models' [[alerts]] rules over the history: one line per rule, and "
        "DIR/alerts_backtest.csv",
    )
    p.add_argument(
        "--allow-overlap",
        action="store_true",
        help="evaluate a fitted model even when its training window (its [fitted] table) reaches into "
        "the holdout; every figure and the summary then say that it saw the holdout",
    )
    _add_reading_args(p)
    add_extract_args(p)
    p.set_defaults(func=_cmd_evaluate)


def _load_model_arg(spec: str):

    path, _, name = spec.partition("#")
    return load_model(Path(path), name or None)


def _cmd_evaluate(args: argparse.Namespace) -> int:

    if not 0.0 < args.target_precision <= 1.0:
        raise UsageError(f"--target-precision {args.target_precision}: give a share between 0 and 1, e.g. 0.2")
    if args.capacity is not None and args.capacity < 1:
        raise UsageError(f"--capacity {args.capacity}: give a number of accounts of at least 1")
    _check_horizon(args)
    if args.split and args.split not in ("kfold", "random", "time"):
        try:
            dt.date.fromisoformat(args.split)
        except ValueError:
            raise UsageError(
                f"--split {args.split!r} is not a date: write it as YYYY-MM-DD, or give kfold, random or time"
            ) from None
    _check_output(
        "--out",
        args.out,
        folder=True,
        inputs={
            "--data": args.data,
            "--events": args.events,
            **{f"--model {m}": m.partition("#")[0] for m in args.model},
        },
    )
    models = [_load_model_arg(m) for m in args.model]
    if args.alerts:
        check_alert_models(models)
    snaps = _snapshots(args, args.data)
    for model in models:
        _check_model_against(model, snaps, args.data)
    snaps, events = _history(args, snaps, models[0])
    by = "auto" if args.by is None else None if args.by.lower() == "none" else args.by
    if by not in (None, "auto") and by not in snaps.columns:
        raise UsageError(
            f"--by {args.by}: {args.data} has no column {args.by!r}; use an attribute such as "
            f"{', '.join(c for c in ('segment', 'region', 'touch_model') if c in snaps.columns) or 'segment'}"
            ", or --by none"
        )
    try:
        ev = evaluation.evaluate(
            snaps,
            events,
            models,
            outcome=args.outcome,
            horizon=args.horizon,
            split=args.split,
            folds=args.folds,
            by=by,
            probability=args.probability,
            target_precision=args.target_precision,
            capacity=args.capacity,
            allow_overlap=args.allow_overlap,
        )
    except evaluation.EvaluationError as exc:  # split, outcome or horizon do not fit this history
        raise UsageError(str(exc)) from None
    written = ev.save(args.out)
    if args.freeze:
        for name, model in zip(ev.models, models):
            if name in ev.probability_maps and hasattr(model, "with_probability_map"):
                target = Path(args.out) / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name).strip('_')}_with_probability.toml"
                written.append(str(model.with_probability_map(ev.probability_maps[name]).save(target)))
    print(evaluation.key_table_text(ev))
    if args.alerts:
        text, path = evaluation_backtest(
            snaps, events, models, outcome=args.outcome, horizon=args.horizon, out=args.out
        )
        print(f"\n{text}")
        written.append(str(path))
    print(f"\nwritten {', '.join(str(p) for p in written)}")
    return 0


# ---------------------------------------------------------------- fit
def _add_fit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fit",
        help="learn a score model's weights (or, with --shapes, its curves too) from history",
        description="Label every snapshot point-in-time with the outcome, fit a logistic regression of it on "
        "the model's calibrated sub-scores (standard errors clustered by account), print per metric "
        "the coefficient, odds ratio per 10 points, 95 percent CI, p-value, VIF and flags (wrong sign, not "
        "significant, collinear, separation, too few events), then the current vs suggested "
        "weights, and write the suggested model to a new TOML file that keeps the comments. With "
        "--shapes every metric's calibration curve is learned together with the weights. The file "
        "records what it was fitted on ([fitted]); the command prints the evaluate command that "
        "tests it on the weeks after its training window.",
        epilog="example: healthscore fit --model data/model.toml --data data/snapshots.parquet "
        "--events data/events.parquet --outcome churned --horizon 90d --until 2025-06-01 "
        "--out build/fitted.toml",
    )
    _add_history_args(
        p,
        data="snapshots",
        events="events table (account_id, date, event)",
        out="the suggested model",
        outcome="event to predict (default churned; expanded for an expansion index)",
        until="use only snapshots before this date (keep a holdout)",
    )
    p.add_argument("--penalty", choices=["l2", "l1"], help="penalised fit (no standard errors); default none")
    p.add_argument(
        "--features",
        choices=["subscores", "raw"],
        default="subscores",
        help="fit on calibrated sub-scores (default) or on the raw metric columns",
    )
    p.add_argument(
        "--cadence",
        choices=["weekly", "monthly"],
        default="weekly",
        help="every snapshot (default) or the last one per account and month",
    )
    p.add_argument(
        "--shapes",
        action="store_true",
        help="learn each metric's calibration curve (bins, levels, monotone unless the data say "
        "otherwise) together with the weights, instead of the weights alone",
    )
    p.set_defaults(func=_cmd_fit)


def _add_history_args(
    p: argparse.ArgumentParser,
    *,
    data: str,
    events: str,
    out: str,
    outcome: str,
    until: str,
    events_required: bool = True,
) -> None:
    """Arguments of a command that learns from history and writes a new model (fit, calibrate)."""
    p.add_argument(
        "--model",
        required=True,
        metavar="FILE[#NAME]",
        help="score model TOML; FILE#NAME picks one definition of a multi-definition file",
    )
    p.add_argument("--data", required=True, help=f"{data}: CSV, Parquet, Excel, DuckDB file or database URI")
    p.add_argument("--events", help=events + ("; or --outcome-column for an extract" if events_required else ""))
    p.add_argument("--out", type=Path, required=True, help=f"where to write {out} (a new .toml file)")
    p.add_argument("--outcome", default="churned", help=outcome)
    p.add_argument("--horizon", default="90d", help="outcome window after each snapshot: 90d, 13w, 3mo (default 90d)")
    p.add_argument("--until", metavar="YYYY-MM-DD", help=until)
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    add_extract_args(p)
    _add_reading_args(p)


def _model_and_history(args: argparse.Namespace, *, dates: bool = False):
    """--model and --data (before --until) of a command that writes a new model to --out; with
    ``dates`` also every snapshot date of --data, before --until cuts it."""

    if args.out.exists() and not args.overwrite and not args.out.is_dir():
        raise UsageError(f"--out {args.out} exists: choose a new file or pass --overwrite")
    _check_horizon(args)
    _check_output(
        "--out",
        args.out,
        inputs={"--data": args.data, "--events": args.events, "--model": args.model.partition("#")[0]},
    )
    until = None
    if args.until:
        try:
            until = dt.date.fromisoformat(args.until)
        except ValueError:
            raise UsageError(f"--until {args.until!r} is not a date: write it as YYYY-MM-DD") from None
    model = _load_model_arg(args.model)
    snaps = _snapshots(args, args.data)
    _check_model_against(model, snaps, args.data)
    all_dates = snaps.get_column("as_of").unique().sort() if dates else None
    if until is not None:
        first, last = snaps["as_of"].min(), snaps["as_of"].max()
        snaps = snaps.filter(pl.col("as_of") < until)
        if snaps.height == 0:
            raise UsageError(
                f"--until {args.until} leaves no snapshots: {args.data} runs from {first} to {last}; "
                f"give a date after {first}, or leave --until out"
            )
    return (model, snaps, all_dates) if dates else (model, snaps)


def _cmd_fit(args: argparse.Namespace) -> int:

    if args.shapes and (args.features != "subscores" or args.penalty is not None):
        flag = "--features raw" if args.features != "subscores" else f"--penalty {args.penalty}"
        raise UsageError(f"--shapes learns the curves and chooses its own penalty: leave out {flag}")
    model, snaps, dates = _model_and_history(args, dates=True)
    snaps, events = _history(args, snaps, model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # every warning is also a flag in the summary
        if args.shapes:
            fit = fit_shapes(snaps, events, model, outcome=args.outcome, horizon=args.horizon, cadence=args.cadence)
        else:
            fit = fit_weights(
                snaps,
                events,
                model,
                outcome=args.outcome,
                horizon=args.horizon,
                features=args.features,
                penalty=args.penalty,
                cadence=args.cadence,
            )
    print(fit.summary())
    print()
    print(fit.comparison_text())
    try:
        save = fit.save if isinstance(fit, ShapeFit) else fit.save_suggested
        path = save(args.out, overwrite=args.overwrite)
    except FileExistsError as exc:
        raise UserError(str(exc)) from None
    fitted = load_model(path, fit.model.name)
    window = fitted.training_window
    print(
        f"\nwritten {path} ({fitted.name} {fitted.version}"
        + (f", fitted on snapshots from {window[0]} with outcomes seen until {window[1]})" if window else ")")
    )
    print(_evaluate_hint(args, path, fitted, snaps, dates))
    return 0


def _evaluate_hint(
    args: argparse.Namespace, path: Path, fitted: ScoreModel, snaps: pl.DataFrame, dates: pl.Series
) -> str:
    """The ``healthscore evaluate`` command that tests the fitted model on the weeks after its
    training window, with every flag it needs; when no such weeks are left, how to keep some."""
    window = fitted.training_window
    by = "segment" if "segment" in snaps.columns else "none"
    reading = [
        (flag, getattr(args, attr))
        for flag, attr in (
            ("--sheet", "sheet"),
            ("--timezone", "timezone"),
            ("--as-of", "as_of"),
            ("--observed-until", "observed_until"),
        )
        if getattr(args, attr, None)
    ]
    data: list[tuple[str, object]] = [("--data", args.data)]
    data += (
        [("--events", args.events)]
        if args.events and not getattr(args, "outcome_column", None)
        else [("--outcome-column", args.outcome_column)]
    )
    data += [("--map", m) for m in (getattr(args, "map", None) or [])]

    def command(name: str, flags: list[tuple[str, object]]) -> str:
        return " ".join(
            ["healthscore", name] + [f"{f} {shlex.quote(str(v))}" if v is not None else f for f, v in flags]
        )

    def evaluate_flags(split: dt.date, model_file: object) -> list[tuple[str, object]]:
        return [
            ("--model", args.model),
            ("--model", model_file),
            *data,
            ("--outcome", args.outcome),
            ("--horizon", args.horizon),
            ("--split", split),
            ("--by", by),
            ("--out", "build/evaluation"),
            *reading,
        ]

    if is_cross_sectional(snaps):  # one snapshot per account: no later weeks, the accounts were all seen
        flags = [
            ("--model", args.model),
            ("--model", path),
            *data,
            ("--outcome", args.outcome),
            ("--by", by),
            ("--out", "build/evaluation"),
            *reading,
            ("--allow-overlap", None),
        ]
        return (
            "this model was fitted on every account of the extract, so cross-validation on the same accounts "
            "flatters it (the report says so); compare it with:\n  " + command("evaluate", flags)
        )
    last = dates[-1]
    hdays = horizon_days(args.horizon)
    if window is not None:
        split = window[1] + dt.timedelta(days=1)
        if any(d >= split and d + dt.timedelta(days=hdays) <= last for d in dates):
            return "compare it on the weeks after its training window with:\n  " + command(
                "evaluate", evaluate_flags(split, path)
            )
    # no labelled weeks after the window: refit on the earlier weeks (the evaluate default, 70% in)
    labelled = [d for d in dates if d + dt.timedelta(days=hdays) <= last]
    if len(labelled) < 2:
        return (
            f"no weeks after its training window can be labelled within {args.horizon}: a fair comparison "
            "needs a longer history"
        )
    until = labelled[0] + dt.timedelta(days=round(0.7 * (labelled[-1] - labelled[0]).days))
    seen = max(d for d in dates if d < until)
    refit = args.out.with_name(f"{args.out.stem}_until_{until}{args.out.suffix or '.toml'}")
    fit_flags = [
        ("--model", args.model),
        *data,
        ("--outcome", args.outcome),
        ("--horizon", args.horizon),
        ("--until", until),
        ("--out", refit),
        *([("--shapes", None)] if args.shapes else []),
        *([("--features", args.features)] if args.features != "subscores" else []),
        *([("--penalty", args.penalty)] if args.penalty else []),
        *([("--cadence", args.cadence)] if args.cadence != "weekly" else []),
        *reading,
    ]
    return (
        "this model saw every week of the data, so no later weeks are left to test it on (evaluating it on "
        "weeks it was fitted on flatters it). To compare it fairly, fit on the weeks before a holdout and "
        "evaluate on the holdout:\n  "
        + command("fit", fit_flags)
        + "\n  "
        + command("evaluate", evaluate_flags(seen + dt.timedelta(days=1), refit))
    )


def _demo_fit(out: Path) -> str:

    sample, model = load_sample(), load_model(sample_dir() / "model.toml")
    # fit only on the evaluation's training period, so the next step compares on unseen weeks
    _, _, split = time_split(label_outcomes(sample.snapshots, sample.events), horizon="90d")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_weights(sample.snapshots.filter(pl.col("as_of") < split), sample.events, model)
    path = fit.save_suggested(out / "fitted_model.toml", overwrite=True)
    top = fit.suggested_weights().sort("weight", descending=True).head(3)
    return (
        f"{fit.logit.n_events_} churn events before {split}; heaviest fitted weights "
        + ", ".join(f"{m} {w:.0f}%" for m, w in top.select("metric", "weight").iter_rows())
        + f"; {len(fit.flags)} flag(s) -> {path}"
    )


# ---------------------------------------------------------------- calibrate
def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="fit and freeze a model's data-derived calibrations (percentile, log_z, monotone bins)",
        description="Learn the data-derived calibration settings of a score model from a reference population: "
        "the quantiles of percentile metrics, the centre and spread of log_z metrics, and the bins of "
        "monotone_bins metrics (fitted against an outcome, so --events is needed for them). The "
        "settings are frozen into a new model file, so later scores use exactly these and never drift "
        "when the population changes. Prints one plain line per fitted metric.",
        epilog="example: healthscore calibrate --model templates/models/high_touch.toml#churn_index "
        "--data data/snapshots.parquet --events data/events.parquet --out build/churn_index.toml",
    )
    _add_history_args(
        p,
        data="reference snapshots",
        events_required=False,
        events="events table (account_id, date, event); needed for monotone_bins metrics",
        out="the fitted model",
        outcome="event the monotone bins are fitted against (default churned)",
        until="use only snapshots before this date as the reference",
    )
    p.set_defaults(func=_cmd_calibrate)


def _fit_calibrations(model, snapshots, events=None, outcome: str = "churned", horizon: str = "90d"):
    """The model with its data-derived calibrations fitted, and one line per fitted metric."""

    fitted = [m for m in model.metrics if METHODS[m.method].fitted]
    if not fitted:
        raise UserError(f"model {model.name!r} has no percentile, log_z or monotone_bins metric: nothing to fit")
    if any(m.method == "monotone_bins" for m in fitted):
        if events is None:
            names = ", ".join(m.name for m in fitted if m.method == "monotone_bins")
            raise UsageError(
                f"{names}: monotone_bins is fitted against an outcome; pass --events "
                "(and --outcome/--horizon if not churned within 90d)"
            )
        # only snapshots whose outcome window is complete: recent ones would count as "no event"
        snapshots = label_outcomes(snapshots, events, outcome=outcome, horizon=horizon)
        new = fit_calibration(model, snapshots, outcome=outcome)
    else:
        new = fit_calibration(model, snapshots)
    width = max(len(m.name) for m in fitted)
    lines = [
        f"  {m.name:<{width}}  {m.method:<13}  {describe(m.method, m.params, m.direction)}"
        for m in new.metrics
        if METHODS[m.method].fitted
    ]
    return new, lines, snapshots.height


def _cmd_calibrate(args: argparse.Namespace) -> int:

    model, snaps = _model_and_history(args)
    snaps, events = _history(args, snaps, model, required=False)
    new, lines, n_rows = _fit_calibrations(model, snaps, events, args.outcome, args.horizon)
    print(f"{model.name}: fitted on {n_rows:,} snapshot rows")
    print("\n".join(lines))
    path = new.save(args.out)
    print(
        f"\nwritten {path}; score with: healthscore score --model {path} --name {new.name} --data {args.data} "
        "--out scores.parquet"
    )
    return 0


def _demo_calibrate(out: Path) -> str:
    sample = load_sample()
    model = load_model(resources.starter_model("high_touch"), "churn_index")
    new, _, n_rows = _fit_calibrations(model, sample.snapshots, sample.events)
    path = new.save(out / "churn_index.toml")
    bins = ", ".join(f"{m.name} {len(m.params['scores'])} bins" for m in new.metrics if m.method == "monotone_bins")
    return f"churn index fitted on {n_rows:,} labelled snapshots: {bins} -> {path}"


# ---------------------------------------------------------------- scorecards
def _add_scorecards(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "scorecards",
        help="render one shareable HTML scorecard per account",
        description="Run notebooks/scorecard.ipynb for each account (warm kernels, parameters injected as "
        "papermill does) and export static, self-contained HTML without code: score and band, "
        "26-week trend, scores by area, the metric table, what changed, peer percentiles and the "
        "recommended actions. Writes DIR/<account>.html, DIR/index.html and DIR/manifest.csv; "
        "the index and the manifest list every account rendered into DIR over all runs. "
        "Accounts already rendered from the same model, data and notebook are skipped. The scores "
        "must come from --model. With --pdf each page is also printed to DIR/<account>.pdf (one page, "
        "its print layout, A4 or --paper letter) with headless Chromium, found on PATH or named by "
        f"{pdf.ENV}; without a browser the command stops before rendering (exit 2). "
        "Exit 1 when any account failed (see the manifest).",
        epilog="example: healthscore scorecards --model data/model.toml --scores build/scores.parquet "
        "--snapshots data/snapshots.parquet --accounts segment=enterprise --out build/scorecards",
    )
    p.add_argument("--model", type=Path, required=True, help="the score model TOML that produced the scores")
    p.add_argument("--scores", type=Path, required=True, help="score frame from 'healthscore score' (.parquet/.csv)")
    p.add_argument(
        "--accounts",
        default="all",
        metavar="all|ID,...|COLUMN=VALUE",
        help="which accounts: all (default), a comma-separated list of ids, or e.g. segment=smb",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    p.add_argument("--snapshots", type=Path, help="snapshots file, for the raw metric values in the metric table")
    p.add_argument("--as-of", metavar="YYYY-MM-DD", help="report on this date (default: each account's latest)")
    p.add_argument(
        "--internal",
        action="store_true",
        help="add internal-only fields (CSM, ARR, churn probability): never send these to customers",
    )
    p.add_argument(
        "--probability",
        type=Path,
        metavar="JSON",
        help="probability map from 'healthscore evaluate' (shown with --internal)",
    )
    p.add_argument("--peer-by", default="segment", help="attribute that defines the peer cohort (default segment)")
    p.add_argument("--workers", type=int, default=2, help="parallel worker processes, one warm kernel each (default 2)")
    p.add_argument("--force", action="store_true", help="render every account again, even when unchanged")
    p.add_argument(
        "--pdf",
        action="store_true",
        help="also print each page to DIR/<account>.pdf, one page each, with headless Chromium "
        "(Debian: apt-get install chromium); listed in the manifest",
    )
    p.add_argument(
        "--paper",
        choices=sorted(pdf.PAPERS),
        help="paper size of the PDFs: a4 (default) or letter; needs --pdf",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="when another batch is writing into --out, wait this long for it, then stop (default 30)",
    )
    add_map_arg(p, "the --snapshots file's own column name for a role, e.g. --map account_id=customerID")
    _add_reading_args(p)
    p.set_defaults(func=_cmd_scorecards)


def _cmd_scorecards(args: argparse.Namespace) -> int:

    if args.paper is not None and not args.pdf:
        raise UsageError(f"--paper {args.paper}: the paper size is for the PDFs; add --pdf, or drop --paper")
    if args.pdf:  # no browser: stop before reading or rendering anything
        pdf.require_chromium()
    if args.workers < 1:
        raise UsageError(f"--workers {args.workers}: give at least 1")
    if args.as_of:
        try:
            dt.date.fromisoformat(args.as_of)
        except ValueError:
            raise UsageError(f"--as-of {args.as_of!r}: give a date as YYYY-MM-DD") from None
    _check_output(
        "--out",
        args.out,
        folder=True,
        inputs={"--scores": args.scores, "--model": args.model, "--snapshots": args.snapshots},
    )
    # every input read and checked here, before a kernel starts
    model = load_model(args.model)
    scores = _snapshots(args, args.scores)
    if "score" not in scores.columns:
        raise UserError(
            f"--scores {args.scores} has no 'score' column: it holds snapshots; score them first with "
            f"healthscore score --model {args.model} --data {args.scores} --out scores.parquet"
        )
    if args.snapshots is not None:
        _check_model_against(model, _snapshots(args, args.snapshots), str(args.snapshots))
    if args.peer_by not in scores.columns:
        attrs = [
            c
            for c in scores.columns
            if scores.schema[c] == pl.String
            and c not in ("account_id", "band", "null_reason", "variant", "model_name", "model_version", "model_hash")
            and not c.startswith("override_")
        ]
        raise UsageError(
            f"--peer-by {args.peer_by}: {args.scores} has no column {args.peer_by!r}; use an attribute "
            f"such as {', '.join(attrs[:6]) or 'segment'}"
        )
    try:
        run = batch.render_scorecards(
            args.scores,
            args.model,
            args.accounts,
            args.out,
            internal=args.internal,
            workers=args.workers,
            as_of=args.as_of,
            peer_by=args.peer_by,
            probabilities=args.probability,
            snapshots=_snapshots(args, args.snapshots) if args.map and args.snapshots else args.snapshots,
            force=args.force,
            wait=args.wait,
            pdf=args.pdf,
            paper=args.paper or "a4",
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    print(run.summary())
    return 0 if run.ok else 1


# ---------------------------------------------------------------- review
def _add_review(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "review",
        help="write the leadership cohort review as one static HTML file",
        description="Run notebooks/cohort_review.ipynb and export a self-contained HTML report with no code: "
        "a plain-words summary first (where the period's churn came from by band at its start, the book "
        "now, the biggest movements, which cohorts differ, data-quality findings), then cohort tables, "
        "score trends, the band migration matrix, the biggest movers with their drivers, CSM portfolios "
        "and handovers, and an appendix with the statistical tests.",
        epilog="example: healthscore review --data data/snapshots.parquet --events data/events.parquet "
        "--model data/model.toml --by segment,touch_model --from 2026-08-17 --out build/review.html",
    )
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="snapshots (scored with --model) or a score frame from 'healthscore score'",
    )
    p.add_argument("--events", type=Path, help="outcome events; without them churn and expansion rates are left out")
    p.add_argument("--model", type=Path, help="score model TOML (needed when --data holds snapshots)")
    p.add_argument(
        "--by",
        help="cohort dimension: an attribute or metric column (numeric ones in quintiles), several "
        "joined by commas, or a derived one (signup_quarter, arr_band, handovers); default "
        "segment when the data has it, else the portfolio as a whole",
    )
    p.add_argument(
        "--from",
        dest="date_from",
        metavar="YYYY-MM-DD",
        help="start of the period (default the snapshot 13 weeks, 91 days, before --to)",
    )
    p.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", help="end of the period (default the last snapshot)")
    p.add_argument("--horizon", default="90d", help="outcome window for churn and expansion rates (default 90d)")
    p.add_argument("--out", type=Path, default=Path("review.html"), help="HTML file to write (default review.html)")
    _add_reading_args(p)
    add_extract_args(p)
    p.set_defaults(func=_cmd_review)


def _cmd_review(args: argparse.Namespace) -> int:

    for flag, value in [("--from", args.date_from), ("--to", args.date_to)]:
        if value:
            try:
                dt.date.fromisoformat(value)
            except ValueError:
                raise UsageError(f"{flag} {value!r}: give a date as YYYY-MM-DD") from None
    if args.out.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--out {args.out}: give an .html file name, e.g. review.html")
    _check_horizon(args)
    _check_output("--out", args.out, inputs={"--data": args.data, "--events": args.events, "--model": args.model})
    # every input read and checked here, before a kernel starts
    data = _snapshots(args, args.data)
    model = load_model(args.model) if args.model is not None else None
    if model is None and "score" not in data.columns:
        raise UsageError(f"--data {args.data} holds snapshots (no 'score' column): pass --model to score them")
    if model is not None and "score" not in data.columns:
        _check_model_against(model, data, str(args.data))
    data, events = _history(args, data, model, required=False)
    unknown = [
        b for b in (x.strip() for x in (args.by or "").split(",")) if b and b not in data.columns and b not in DERIVED
    ]
    if unknown:
        raise UsageError(
            f"--by {args.by}: {', '.join(unknown)} is not a column of {args.data}; columns: "
            f"{', '.join(c for c in data.columns if c not in ('account_id', 'as_of'))}; derived: "
            f"{', '.join(DERIVED)}"
        )
    by = args.by if args.by is not None else ("segment" if "segment" in data.columns else "")
    # mapped, dated or outcome-split data goes on as read; otherwise the notebook reads the files itself
    extract = args.map or args.outcome_column or args.as_of or args.observed_until
    try:
        path = batch.render_review(
            data if extract else args.data,
            args.out,
            events=events if extract else args.events,
            model=args.model,
            by=by,
            date_from=args.date_from,
            date_to=args.date_to,
            horizon=args.horizon,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    print(f"cohort review {'by ' + by if by else 'of the whole portfolio'} -> {path}")
    return 0


# ---------------------------------------------------------------- demo
# Each step takes the output folder and returns a one-line summary of what it wrote.
DemoStep = Callable[[Path], str]


def _demo_sample(out: Path) -> str:
    portfolio = load_sample()  # the bundled copy, regenerated in memory when data/ is missing
    write_text(out / "sample_summary.txt", portfolio.summary() + "\n")
    return portfolio_summary_line(portfolio) + f" -> {out / 'sample_summary.txt'}"


def _demo_score(out: Path) -> str:
    model = load_model(sample_dir() / "model.toml")
    scores = scoring.score(load_sample().snapshots, model)
    files.write_parquet(scores, out / "scores.parquet")
    counts = scoring.band_summary(scores, model).select("band", "accounts").rows()
    return (
        f"{model.name} {model.version} (hash {model.hash}): "
        + ", ".join(f"{b} {n}" for b, n in counts)
        + f" accounts at their latest snapshot -> {out / 'scores.parquet'}"
    )


def _demo_evaluate(out: Path) -> str:
    models = [load_model(sample_dir() / "model.toml")]
    # the model the fit step wrote, if it ran: hand-set vs fitted on the same holdout
    models += [load_model(p) for p in sorted(out.glob("*fitted*.toml"))]
    sample = load_sample()
    ev = evaluation.evaluate(sample.snapshots, sample.events, models, outcome="churned", horizon="90d")
    ev.save(out / "evaluation")
    best = ev.table.sort("auc", descending=True).row(0, named=True)
    return (
        "holdout AUC "
        + ", ".join(f"{r['model']} {r['auc']:.3f}" for r in ev.table.iter_rows(named=True))
        + f"; best {best['model']} -> {out / 'evaluation' / 'evaluation.html'}"
    )


def _demo_scorecards(out: Path) -> str:
    model_path = sample_dir() / "model.toml"
    scores_path = out / "scores.parquet"
    if not scores_path.is_file():  # the score step did not run first
        files.write_parquet(scoring.score(load_sample().snapshots, load_model(model_path)), scores_path)
    snapshots = sample_dir() / "snapshots.parquet"
    scores = cards.load_scores(scores_path)
    ids = batch.one_per_band(scores)
    run = batch.render_scorecards(
        scores_path,
        model_path,
        ids,
        out / "scorecards",
        internal=True,  # the account team's view: alert history, CSM, ARR and renewal on each card
        progress=False,
        snapshots=snapshots if snapshots.is_file() else load_sample().snapshots,
    )
    names = dict(zip(run.manifest["account_id"], run.manifest["status"]))
    return (
        ", ".join(f"{a} {names[a]}" for a in ids) + f" (one green, yellow, red) -> {out / 'scorecards' / 'index.html'}"
    )


def _demo_review(out: Path) -> str:
    sample = load_sample()
    scores_path = out / "scores.parquet"
    if not scores_path.is_file():  # the score step did not run first
        files.write_parquet(scoring.score(sample.snapshots, load_model(sample_dir() / "model.toml")), scores_path)
    events_path = sample_dir() / "events.parquet"
    if not events_path.is_file():  # the bundled copy is missing: write the regenerated events
        events_path = out / "events.parquet"
        files.write_parquet(sample.events, events_path)
    path = batch.render_review(scores_path, out / "review.html", events=events_path, by="segment,touch_model")
    return f"cohort review by segment x touch model -> {path}"


def _demo_steps() -> list[tuple[str, DemoStep]]:
    return [
        ("build snapshots from raw events", build_from_raw),
        ("load the sample portfolio", _demo_sample),
        ("score the sample", _demo_score),
        ("fit the churn index's calibration bins", _demo_calibrate),
        ("fit weights", _demo_fit),
        ("evaluate the models on a time-split holdout", _demo_evaluate),
        ("render a few scorecards", _demo_scorecards),
        ("cohort review", _demo_review),
        ("this week's alerts and a backtest of the alert rules", _demo_alerts),
        ("tune weights without a browser (the notebook's fast path)", _demo_tune),
    ]


def _demo_alerts(out: Path) -> str:
    sample = load_sample()
    scores = scoring.score(sample.snapshots, load_model(sample_dir() / "model.toml"))
    return demo_lines(scores, sample.snapshots, sample.events, sample_dir() / "model.toml", out)


def _demo_tune(out: Path) -> str:
    sample, model = load_sample(), load_model(sample_dir() / "model.toml")
    session = TuningSession(sample.snapshots, sample.events, model)
    tuned = edit_weights(model, metrics={"login_days": 4.0}, categories={"support": 20})
    t0 = time.perf_counter()
    st = session.evaluate(tuned)
    ms = (time.perf_counter() - t0) * 1000
    path = tuned.bump_version().save(out / "tuned_model.toml")
    return (
        f"login days x2, support 15->20: holdout AUC {st['auc_start']:.3f} -> {st['auc']:.3f}, "
        f"{st['n_changed']} accounts change band, recomputed in {ms:.0f} ms -> {path} "
        "(interactive: notebooks/tune_weights.ipynb)"
    )


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run every step end to end on the bundled sample data",
        description="Load the bundled sample portfolio and run each step of healthscore on it, "
        "printing where the outputs are.",
    )
    p.add_argument("--out", type=Path, default=Path("build/demo"), help="output folder (default build/demo)")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    for title, step in _demo_steps():
        t0 = time.perf_counter()
        print(f"== {title}", flush=True)
        print(step(args.out), flush=True)
        print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)
    print(f"\nAll outputs are in {args.out}/")
    return 0


# ---------------------------------------------------------------- main
_COMMANDS = [
    add_init,
    _add_sample,
    _add_validate,
    add_build,
    _add_score,
    _add_calibrate,
    _add_fit,
    _add_evaluate,
    _add_scorecards,
    _add_review,
    add_alerts,
    add_monitor,
    add_sql,
    _add_demo,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="healthscore",
        description="Customer health scores that predict churn and expansion: calibrate each signal, "
        "fit and test the weights, compare cohorts, tune interactively, share scorecards.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"healthscore {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; exit status 0 when it worked, 1 for a problem in the data or model (and a
    failed write), 2 for a wrong argument, 130 when interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    shown: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, DataWarning):
            text = str(message)
            if text not in shown:
                shown.add(text)
                print(f"healthscore: warning: {text}", file=sys.stderr, flush=True)
        else:
            previous(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always", DataWarning)
        previous, warnings.showwarning = warnings.showwarning, show
        try:
            return int(args.func(args) or 0)
        except (UsageError, FileNotFoundError) as exc:  # a wrong argument (a path that does not exist too)
            print(f"healthscore: error: {exc}", file=sys.stderr)
            return 2
        except HealthscoreError as exc:
            print(f"healthscore: error: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:  # a write failed half-way: full disk, quota, file size limit
            where = f" {exc.filename}" if exc.filename else ""
            print(
                f"healthscore: error: could not read or write{where}: {exc.strerror or exc}; check free disk "
                "space, quota and permissions, then run the command again",
                file=sys.stderr,
            )
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130


def _print_warnings(caught: list[warnings.WarningMessage]) -> None:
    seen: set[str] = set()
    for w in caught:
        text = str(w.message)
        if text not in seen:
            seen.add(text)
            print(f"healthscore: warning: {text}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
