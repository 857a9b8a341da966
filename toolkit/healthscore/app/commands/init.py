"""``healthscore init``: a commented starter metric spec and score model from the tables a team has.

From raw event logs (``--events``, optionally ``--subscriptions`` and ``--accounts``) it writes a
metric spec (a metric per event type over 7 and 28 days, days since each, tenure) and builds the
snapshots once to suggest the score model. From a one-row-per-customer extract (``--extract``)
it suggests the score model directly. Calibrations follow each column's distribution (thresholds
at its 10th, 50th and 90th percentiles; yes/no columns as booleans; text columns as categories
whose level scores are learned); directions follow the association with churn measured on the
earliest 70% of observation dates only (a random 70% of accounts for an extract with one date),
so the rest stays fit for an honest evaluation. Every metric is internal until someone says it
may reach a customer.

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="healthscore")
>>> add_init(parser.add_subparsers())
>>> parser.parse_args(["init", "--extract", "x.csv", "--outcome-column", "Churn", "--out", "d"]).outcome_column
'Churn'
"""

from __future__ import annotations

import argparse
import json
import re
import warnings
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats

from healthscore.analysis.fitting import label_outcomes
from healthscore.app.commands.options import add_extract_args, parse_map, read_data, read_history
from healthscore.core.build import BuildWarning, build
from healthscore.core.calibration import fit_levels
from healthscore.core.extract import is_cross_sectional
from healthscore.errors import UsageError
from healthscore.io import files
from healthscore.spec.metrics import load_spec
from healthscore.spec.model import load_model

__all__ = ["add_init", "suggest_model", "starter_spec"]

MAX_LEVELS = 30  # a text column with more distinct values is an identifier or free text: left out
MAX_EVENT_TYPES = 12  # metrics for the most frequent event types only
TRAIN_SHARE = 0.7


def add_init(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "init",
        help="write a starter metric spec and score model from your tables",
        description="Inspect raw event logs (with subscriptions and accounts when given) or a "
        "one-row-per-customer extract, and write a commented starter: metrics.toml "
        "(for event logs) and model.toml, with calibrations from each column's "
        "distribution and directions from its association with churn on the earliest "
        "70% of the data. Edit them, then fit and evaluate.",
        epilog="examples:\n  healthscore init --events raw/events.parquet --subscriptions "
        "raw/subscriptions.parquet --out starter\n  healthscore init --extract crm.csv "
        "--map account_id=customerID --outcome-column Churn --as-of 2026-01-31 --out starter",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--events", help="raw event log (account_id, time, event[, value, user_id])")
    src.add_argument("--extract", help="one row per customer: attributes, metrics and an outcome column")
    p.add_argument(
        "--subscriptions", help="subscriptions (account_id, start, end[, mrr, seats]); churn comes from their ends"
    )
    p.add_argument("--accounts", help="accounts table (account_id and CRM fields)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write into (created if missing)")
    p.add_argument("--overwrite", action="store_true", help="replace files that exist")
    add_extract_args(p)
    p.add_argument("--outcome", default="churned", help="the outcome the directions are measured against")
    p.set_defaults(func=_cmd_init)


# ---------------------------------------------------------------- suggestions
def _train_rows(snaps: pl.DataFrame, events: pl.DataFrame, outcome: str, horizon: str) -> tuple[pl.DataFrame, str]:
    """Labelled rows of the earliest 70% of observation dates (or of 70% of the accounts of an extract)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labelled = label_outcomes(snaps, events, outcome=outcome, horizon=horizon)
    if is_cross_sectional(snaps):
        ids = labelled["account_id"].unique().sort().sample(fraction=TRAIN_SHARE, seed=0)
        return labelled.filter(pl.col("account_id").is_in(ids.implode())), "a random 70% of the accounts"
    dates = sorted(labelled["as_of"].unique().to_list())
    if not dates:
        raise UsageError(
            f"no snapshot can be labelled for {outcome!r} within {horizon}: the history is shorter than the horizon"
        )
    cut = dates[max(0, int(TRAIN_SHARE * len(dates)) - 1)]
    return labelled.filter(pl.col("as_of") <= cut), f"snapshots dated {dates[0]} .. {cut}"


def _q(v: float) -> float:
    return float(f"{v:.4g}")


def _toml_str(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _metric_name(column: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_]+", "_", column).strip("_").lower() or "metric"
    base = base if re.match(r"[A-Za-z_]", base) else f"m_{base}"
    name, i = base, 2
    while name in used:
        name, i = f"{base}_{i}", i + 1
    used.add(name)
    return name


def _suggest(column: str, values: pl.Series, y: np.ndarray) -> tuple[str, dict, str, str] | str:
    """(method, params, direction, evidence) for one column, or the reason it is left out."""
    filled = values.drop_nulls()
    if filled.len() == 0:
        return "empty"
    if values.dtype == pl.Boolean or (values.dtype.is_numeric() and set(filled.unique().to_list()) <= {0, 1}):
        x = values.cast(pl.Float64).to_numpy()
        ok = ~np.isnan(x)
        r1 = y[ok & (x == 1)].mean() if (ok & (x == 1)).any() else float("nan")
        r0 = y[ok & (x == 0)].mean() if (ok & (x == 0)).any() else float("nan")
        if np.isnan(r1) or np.isnan(r0):
            return "one value only"
        worse = r1 > r0
        p = float(y[ok].mean()) or 1.0
        # the same fixed relative-risk scale as learned levels: the book's rate scores 50
        params = {
            k: round(float(np.clip(100.0 - 50.0 * r / p, 0.0, 100.0)), 1)
            for k, r in (("true_score", r1), ("false_score", r0))
        }
        return (
            "boolean",
            params,
            "lower_is_better" if worse else "higher_is_better",
            f"churn {r1:.1%} when yes vs {r0:.1%} when no",
        )
    if values.dtype == pl.Utf8:
        n = filled.n_unique()
        if n > MAX_LEVELS:
            return f"{n} distinct text values (an identifier or free text)"
        if n < 2:
            return "one value only"
        fitted = fit_levels(values, pl.Series(y.astype(bool)))
        best = max(fitted["map"], key=fitted["map"].get)
        worst = min(fitted["map"], key=fitted["map"].get)
        return (
            "categorical",
            {"map": fitted["map"]},
            "higher_is_better",
            f"churn {fitted['rates'][worst]:.1%} for {worst!r} vs {fitted['rates'][best]:.1%} for {best!r}",
        )
    if not values.dtype.is_numeric():
        return f"type {values.dtype}"
    x = values.cast(pl.Float64).to_numpy()
    ok = np.isfinite(x)
    qs = sorted({_q(v) for v in np.quantile(x[ok], [0.1, 0.5, 0.9])})
    if len(qs) < 2:
        qs = sorted({_q(v) for v in (x[ok].min(), x[ok].max())})
        if len(qs) < 2:
            return "one value only"
    rho = stats.spearmanr(x[ok], y[ok]).statistic if y[ok].std() > 0 else 0.0
    rho = 0.0 if np.isnan(rho) else float(rho)
    lower = rho > 0
    scores = list(np.linspace(0, 100, len(qs)))
    if lower:
        scores = scores[::-1]
    return (
        "thresholds",
        {"points": [[q, round(float(s), 1)] for q, s in zip(qs, scores)]},
        "lower_is_better" if lower else "higher_is_better",
        f"rank correlation with churn {rho:+.3f}",
    )


def suggest_model(
    snapshots: pl.DataFrame,
    events: pl.DataFrame,
    *,
    outcome: str = "churned",
    horizon: str = "90d",
    name: str = "health",
    source: str = "",
) -> str:
    """A commented starter score model (TOML text) for the columns of ``snapshots``.

    >>> from healthscore.datasets.extract import make_extract
    >>> from healthscore.core.extract import outcomes_from_extract
    >>> from healthscore.io.snapshots import read_snapshots
    >>> ex = make_extract(n_customers=400, seed=3)
    >>> snaps = read_snapshots(ex.frame, columns={"account_id": "customerID"}, as_of=ex.as_of)
    >>> snaps, events = outcomes_from_extract(snaps, column="Churn")
    >>> "name = \\"contract\\"" in suggest_model(snaps, events)
    True
    """
    train, basis = _train_rows(snapshots, events, outcome, horizon)
    if train.is_empty() or train[outcome].sum() == 0:
        raise UsageError(f"the earliest 70% of the data holds no {outcome!r} event: directions cannot be measured")
    y = train[outcome].cast(pl.Float64).to_numpy()
    used: set[str] = set()
    blocks: dict[str, list[str]] = {"attributes": [], "metrics": []}
    skipped: list[str] = []
    for column in snapshots.columns:
        if column in ("account_id", "as_of") or snapshots.schema[column] in (pl.Date, pl.Datetime):
            continue
        got = _suggest(column, train[column], y)
        if isinstance(got, str):
            skipped.append(f"#   {column}: {got}")
            continue
        method, params, direction, evidence = got
        category = "metrics" if method == "thresholds" else "attributes"
        lines = [
            "[[metrics]]",
            f"name = {_toml_str(_metric_name(column, used))}",
            f"column = {_toml_str(column)}",
            f'category = "{category}"',
            f'direction = "{direction}"   # {evidence}',
            f'method = "{method}"',
            "weight = 1",
            f"label = {_toml_str(column)}",
            "# audience: internal (not stated, so never shown to a customer)",
            "[metrics.params]",
        ]
        if method == "categorical":
            lines.append("# level scores learned from the churn rate of each level (shrunk towards the overall rate)")
            lines.append(
                "map = { " + ", ".join(f"{_toml_str(k)} = {round(v, 1):g}" for k, v in params["map"].items()) + " }"
            )
        elif method == "boolean":
            lines += [f"true_score = {params['true_score']}", f"false_score = {params['false_score']}"]
        else:
            lines.append("# [raw value, sub-score] at the 10th, 50th and 90th percentile")
            lines.append("points = " + json.dumps(params["points"]))
        blocks[category].append("\n".join(lines))
    if not any(blocks.values()):
        raise UsageError("no column could be turned into a metric: " + "; ".join(s.strip("# ") for s in skipped))
    head = [
        f"# Starter score model written by healthscore init{' from ' + source if source else ''}.",
        f"# Directions were measured against {outcome!r} on {basis} only; keep the rest for",
        "# 'healthscore evaluate'. Weights are all equal: learn them with 'healthscore fit'.",
        "# Every metric is internal: none reaches a customer scorecard until you say so.",
        "",
        "[model]",
        f'name = "{name}"',
        'version = "0.1.0"',
        'description = "Starter model: edit the calibrations, then fit the weights and evaluate."',
        "min_coverage = 0.5",
        "",
    ]
    cats = [c for c, b in blocks.items() if b]
    for c in cats:
        head += [
            f"[categories.{c}]",
            "weight = 1",
            f'label = "{"Account attributes" if c == "attributes" else "Measured metrics"}"',
            "",
        ]
    body = [b for c in cats for b in blocks[c]]
    tail = ["", "# left out:"] + skipped if skipped else []
    return "\n".join(head) + "\n" + "\n\n".join(body) + "\n" + "\n".join(tail) + "\n"


def starter_spec(
    events: pl.DataFrame,
    *,
    events_path: str,
    subscriptions: str | None = None,
    accounts: str | None = None,
    every: str = "1w",
) -> str:
    """A commented metric spec (TOML text): per event type a 7-day and a 28-day count and the days
    since the last one, plus tenure; churn from subscription ends, or from 60 days without activity."""
    counts = events.group_by("event").agg(n=pl.len()).sort(["n", "event"], descending=[True, False])
    types = counts["event"].head(MAX_EVENT_TYPES).to_list()
    lines = [
        "# Starter metric spec written by healthscore init: one block per metric, built point in time.",
        "[source]",
        f"events = {_toml_str(events_path)}",
    ]
    if subscriptions:
        lines.append(f"subscriptions = {_toml_str(subscriptions)}")
    if accounts:
        lines.append(f"accounts = {_toml_str(accounts)}")
    lines += ["", "[grid]", f'every = "{every}"   # one snapshot per account per week', ""]
    used: set[str] = set()
    for ev in types:
        base = _metric_name(str(ev), used)
        n = int(counts.filter(pl.col("event") == ev)["n"][0])
        lines += [
            f"# {ev!s}: {n:,} events in the log",
            "[[metrics]]",
            f'name = "{base}_7d"',
            'agg = "count"',
            f"event = {_toml_str(str(ev))}",
            'window = "7d"',
            "",
            "[[metrics]]",
            f'name = "{base}_28d"',
            'agg = "count"',
            f"event = {_toml_str(str(ev))}",
            'window = "28d"',
            "",
            "[[metrics]]",
            f'name = "days_since_{base}"',
            f"days_since = {_toml_str(str(ev))}",
            "",
        ]
    lines += ["[[metrics]]", 'name = "tenure_days"', "tenure = true", ""]
    if subscriptions:
        lines += [
            "[outcomes.churned]",
            "adverse = true",
            "terminal = true",
            'from = "subscriptions"',
            'gap = "7d"   # a renewal within a week is not churn',
            "",
        ]
    else:
        lines += [
            "[outcomes.churned]",
            "adverse = true",
            "terminal = true",
            'from = "activity"',
            "days = 60   # no event for 60 days counts as churn",
            "",
        ]
    return "\n".join(lines)


# ---------------------------------------------------------------- command
def _write(path: Path, text: str, overwrite: bool) -> Path:
    if path.exists() and not overwrite:
        raise UsageError(f"{path} exists: choose another --out or pass --overwrite")
    files.write_text(path, text)
    return path


def _cmd_init(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    if args.extract:
        args.data = args.extract
        if not args.outcome_column:
            raise UsageError(
                "--extract needs --outcome-column COLUMN (the churn flag or churn date) to measure directions against"
            )
        snaps, events = read_history(args, read_data(args))
        model_text = suggest_model(snaps, events, outcome=args.outcome, source=str(args.extract))
    else:
        events_raw = _read_raw_events(args.events, parse_map(args.map))
        spec_text = starter_spec(
            events_raw,
            events_path=str(Path(args.events).resolve()),
            subscriptions=str(Path(args.subscriptions).resolve()) if args.subscriptions else None,
            accounts=str(Path(args.accounts).resolve()) if args.accounts else None,
        )
        spec_path = args.out / "metrics.toml"
        written.append(_write(spec_path, spec_text, args.overwrite))
        spec = load_spec(spec_path)
        if args.map:
            spec = spec.with_columns(parse_map(args.map))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BuildWarning)
            built = build(spec)
        model_text = suggest_model(built.snapshots, built.events, outcome=args.outcome, source=str(args.events))
    model_path = _write(args.out / "model.toml", model_text, args.overwrite)
    written.append(model_path)
    model = load_model(model_path)  # the starter must load: a broken one is our bug, not the user's
    print(f"wrote {', '.join(str(p) for p in written)} ({len(model.metrics)} metrics)")
    return 0


def _read_raw_events(path: str, columns: dict[str, str]) -> pl.DataFrame:
    """The raw event log's account and event-type columns (only what the spec needs to list types)."""
    lower = str(path).lower()
    frame = pl.read_parquet(path) if lower.endswith((".parquet", ".pq")) else pl.read_csv(path, infer_schema=False)
    event = columns.get("event", "event")
    if event not in frame.columns:
        raise UsageError(
            f"--events {path}: no '{event}' column (columns: {', '.join(frame.columns[:20])}); "
            "name it with --map event=COLUMN"
        )
    return frame.select(pl.col(event).cast(pl.Utf8).alias("event"))
