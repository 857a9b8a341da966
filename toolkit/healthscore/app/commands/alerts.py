"""``healthscore alerts``: this week's alerts from a score history, delivered to a webhook; or the
backtest of the model's alert rules (``--backtest``)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import polars as pl

from healthscore.analysis.alerts import alerts, backtest_alerts, line_of, threshold_for_capacity
from healthscore.app.notify import deliver_alerts
from healthscore.core.scoring import score
from healthscore.errors import UsageError
from healthscore.io import files
from healthscore.io.snapshots import read_events, read_snapshots
from healthscore.spec.model import ScoreModel, load_model

__all__ = ["add_alerts", "check_alert_models", "evaluation_backtest"]

# the kinds of rule a capacity threshold is found for (threshold_for_capacity)
_CAPACITY_KINDS = ("threshold", "probability", "enters_band")


def add_alerts(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "alerts",
        help="this week's early-warning alerts, or a backtest of the alert rules",
        description="Apply the model's [[alerts]] rules to a score history. With --state the run continues "
        "from the previous one: alerts are new once, ongoing while they hold and resolved after, "
        "and a rule's cool-down keeps it quiet. New alerts can be posted to a webhook through an "
        "outbox file (nothing lost, nothing sent twice). With --backtest, replay the rules over the "
        "history and print one line per rule: precision, churners caught, lead time, load per CSM.",
        epilog="examples:\n  healthscore alerts --model data/model.toml --scores build/scores.parquet "
        "--snapshots data/snapshots.parquet --state build/alert_state.parquet --out build/alerts.csv\n"
        "  healthscore alerts --backtest --model data/model.toml --scores build/scores.parquet "
        "--snapshots data/snapshots.parquet --events data/events.parquet",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", type=Path, required=True, help="score model TOML with [[alerts]] rules")
    p.add_argument("--name", help="which definition of a multi-definition model file (default: the first)")
    p.add_argument("--scores", type=Path, required=True, help="score history from 'healthscore score' (.parquet/.csv)")
    p.add_argument("--snapshots", help="snapshots, for rules on data columns the scores lack (e.g. champion_left)")
    p.add_argument("--state", type=Path, help="alert state file (.parquet): read if it exists, then updated")
    p.add_argument(
        "--as-of", type=dt.date.fromisoformat, metavar="YYYY-MM-DD", help="run as on this date (ignore later scores)"
    )
    p.add_argument("--out", type=Path, help="alerts file: .csv, .parquet or .jsonl")
    p.add_argument("--webhook", help="post each new alert as JSON to this URL")
    p.add_argument("--outbox", type=Path, help="outbox of undelivered alerts (JSON lines; default next to --out)")
    p.add_argument("--backtest", action="store_true", help="backtest the rules instead (needs --events)")
    p.add_argument("--events", help="events table (account_id, date, event), for --backtest")
    p.add_argument("--outcome", default="churned", help="outcome to backtest against (default churned)")
    p.add_argument("--horizon", default="90d", help="how long after an alert the outcome counts (default 90d)")
    p.add_argument(
        "--capacity",
        type=float,
        metavar="N",
        help="with --backtest: for each threshold, probability and enters_band rule, the setting that "
        "keeps it within N alerts per CSM per week over the history",
    )
    p.set_defaults(func=_cmd_alerts)


def _read_scores(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise UsageError(f"--scores {path}: no such file; write one with 'healthscore score'")
    if path.suffix.lower() == ".csv":
        return pl.read_csv(path, try_parse_dates=True)
    return pl.read_parquet(path)


def _cmd_alerts(args: argparse.Namespace) -> int:
    if args.capacity is not None and not args.backtest:
        raise UsageError("--capacity goes with --backtest: it sets thresholds from the history")
    if args.capacity is not None and not args.capacity > 0:
        raise UsageError(f"--capacity {args.capacity:g}: give the alerts a CSM can work per week, above 0 (e.g. 3)")
    model = load_model(args.model, args.name)
    scores = _read_scores(args.scores)
    snaps = read_snapshots(args.snapshots) if args.snapshots else None
    # a column the rules read missing from the data is a data problem (exit 1); its message names --snapshots
    return _alerts_or_backtest(args, model, scores, snaps)


def _alerts_or_backtest(
    args: argparse.Namespace, model: ScoreModel, scores: pl.DataFrame, snaps: pl.DataFrame | None
) -> int:
    if args.backtest:
        if not args.events:
            raise UsageError("--backtest needs --events (account_id, date, event)")
        bt = backtest_alerts(
            scores, read_events(args.events), model, outcome=args.outcome, horizon=args.horizon, snapshots=snaps
        )
        print(bt.summary())
        if args.capacity is not None:
            print(capacity_lines(scores, model, args.capacity, snapshots=snaps))
        if args.out:
            _write(bt.to_frame(), args.out)
            print(f"written {args.out}")
        return 0
    if args.out is None:
        raise UsageError("--out is needed: a .csv, .parquet or .jsonl file for the alerts")
    if args.out.suffix.lower() not in (".csv", ".parquet", ".jsonl"):
        raise UsageError(f"--out {args.out}: use a .csv, .parquet or .jsonl file name")
    state = None
    if args.state is not None and args.state.is_file():
        try:
            state = pl.read_parquet(args.state)
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise UsageError(
                f"--state {args.state}: not a state file written by 'healthscore alerts' ({exc})"
            ) from None
    run = alerts(scores, model, state=state, as_of=args.as_of, snapshots=snaps)
    _write(run.alerts, args.out)
    print(run.summary())
    print(f"written {args.out}")
    if args.state is not None:
        files.write_parquet(run.state, args.state)
        print(f"state -> {args.state}")
    if args.webhook:
        outbox = args.outbox or args.out.with_name(args.out.stem + "_outbox.jsonl")
        delivery = deliver_alerts(run.new.to_dicts(), args.webhook, outbox)
        print(delivery.summary() + f" (outbox {outbox})")
        return 0 if delivery.ok else 1
    return 0


def capacity_lines(
    scores: pl.DataFrame, model: ScoreModel, capacity: float, *, snapshots: pl.DataFrame | None = None
) -> str:
    """Per threshold-like rule, the setting that fits ``capacity`` alerts per CSM per week."""
    lines = [
        f"settings for at most {capacity:g} alerts per CSM per week (over the history, with each rule's cool-down):"
    ]
    rules = [r for r in model.alerts if r.kind in _CAPACITY_KINDS]
    for rule in rules:
        found = threshold_for_capacity(scores, model, rule.name, capacity=capacity, snapshots=snapshots)
        lines.append(f"  {found.summary()}")
    if not rules:
        lines.append(f"  the model has no {', '.join(_CAPACITY_KINDS)} rule to set")
    return "\n".join(lines)


def check_alert_models(models: list[ScoreModel]) -> None:
    """``evaluate --alerts`` needs a model with [[alerts]] rules (checked before the long work)."""
    if not any(m.alerts for m in models):
        raise UsageError(
            "--alerts: no model given has [[alerts]] rules; add some (see the starter models) or leave out --alerts"
        )


def evaluation_backtest(
    snaps: pl.DataFrame, events: pl.DataFrame, models: list[ScoreModel], *, outcome: str, horizon: str, out: Path
) -> tuple[str, Path]:
    """The alert backtest of every model with rules over the whole history: the printed lines and
    DIR/alerts_backtest.csv (one row per model and rule), for ``healthscore evaluate --alerts``."""
    texts, tables = [], []
    for model in (m for m in models if m.alerts):
        bt = backtest_alerts(score(snaps, model), events, model, outcome=outcome, horizon=horizon, snapshots=snaps)
        texts.append(str(bt.summary()))
        tables.append(bt.to_frame().select(pl.lit(model.name).alias("model"), pl.all()))
    path = Path(out) / "alerts_backtest.csv"
    files.write_csv(pl.concat(tables), path)
    return "\n".join(texts), path


def _write(frame: pl.DataFrame, path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        files.write_parquet(frame, path)
    elif suffix == ".csv":
        files.write_csv(frame, path)
    elif suffix == ".jsonl":
        rows = frame.to_dicts()
        files.write_text(path, "".join(json.dumps(r, default=str) + "\n" for r in rows))
    else:
        raise UsageError(f"--out {path}: use a .csv, .parquet or .jsonl file name")


def demo_lines(scores: pl.DataFrame, snapshots: pl.DataFrame, events: pl.DataFrame, model_path: Path, out: Path) -> str:
    """This week's alerts on the sample and one backtest line per rule (for ``healthscore demo``)."""
    model = load_model(model_path)
    run = alerts(scores, model, snapshots=snapshots)
    _write(run.alerts, out / "alerts.csv")
    bt = backtest_alerts(scores, events, model, snapshots=snapshots)
    lines = [str(run.summary()), f"-> {out / 'alerts.csv'}", "backtest against churn within 90 days:"]
    lines += [line_of(r) for r in bt.to_frame().iter_rows(named=True)]
    return "\n".join(lines)
