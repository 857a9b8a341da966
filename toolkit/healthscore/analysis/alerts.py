"""Early-warning alerts: the model's ``[[alerts]]`` rules applied to a score history.

:func:`alerts` gives the alerts of one run (this week): each alert is ``new`` on the first date its
condition holds after not holding (unless the same rule alerted the same account less than its
cool-down ago: then the earlier alert simply goes on), ``ongoing`` while it holds and ``resolved`` on
the first date it no longer holds. The run's ``state`` (open alerts, and recently alerted accounts
for the cool-down) is kept in a file and handed to the next run, which goes on exactly where this one
stopped: running week by week with the state gives the same alerts as one pass over the history.
:func:`alert_history` is that one pass; :func:`backtest_alerts` checks every rule against what
happened afterwards (precision, churners caught, lead time, alerts per CSM per week).

Every condition is computed for the whole history at once with polars expressions; the cool-down is
followed with numpy along the chain of alert starts, one step per alert, for all accounts together.

>>> import datetime as dt, polars as pl
>>> from healthscore.spec.model import ScoreModel, Metric, Category, Band, DEFAULT_BANDS
>>> from healthscore.spec.alerts import AlertRule
>>> rule = AlertRule("red", "enters_band", "high", "CSM", "Call them.", band="red")
>>> model = ScoreModel("m", "1", [Metric("a", "a", "u", params={"points": [[0, 0], [1, 100]]})],
...                    {"u": Category("u")}, [Band(*b[:3]) for b in DEFAULT_BANDS], alerts=[rule])
>>> weeks = [dt.date(2026, 1, 5) + dt.timedelta(weeks=k) for k in range(4)]
>>> scores = pl.DataFrame({"account_id": ["A1"] * 4, "as_of": weeks, "score": [55.0, 35.0, 30.0, 60.0]})
>>> alert_history(scores, model).select("as_of", "status")["status"].to_list()
['new', 'ongoing', 'resolved']
"""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl

from healthscore.analysis.cohorts import wilson_interval
from healthscore.analysis.evaluation import ProbabilityMap
from healthscore.analysis.fitting import label_outcomes
from healthscore.results import Summary
from healthscore.spec.alerts import AlertRule, order_rules
from healthscore.spec.model import ModelError, ScoreModel
from healthscore.spec.outcomes import horizon_days, horizon_words, parse_horizon

__all__ = ["AlertError", "AlertRun", "AlertBacktest", "CapacityThreshold", "alerts", "alert_history",
           "backtest_alerts", "threshold_for_capacity", "ALERT_COLUMNS", "STATE_SCHEMA"]

ALERT_COLUMNS = ["alert_id", "account_id", "as_of", "rule", "kind", "severity", "owner", "action", "fired_at",
                 "status", "evidence", "model_hash"]
STATE_SCHEMA: dict[str, pl.DataType] = {
    "rule": pl.String(), "account_id": pl.String(), "alert_id": pl.String(), "open": pl.Boolean(),
    "first_fired": pl.Date(), "last_fired": pl.Date(), "last_notified": pl.Date(), "as_of": pl.Date(),
    "model_hash": pl.String()}
_SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}
_EPOCH = dt.date(1970, 1, 1)
_NO_DAY = np.iinfo(np.int64).min // 4
_KEY = "__key"


class AlertError(ModelError):
    """Alert rules that cannot run on the data given (a missing column, no probability map, a bad state)."""


# ---------------------------------------------------------------- results
@dataclass
class AlertRun:
    """The alerts of one run: ``alerts`` (one row per alert and date reported), ``state`` (to keep)."""

    alerts: pl.DataFrame
    state: pl.DataFrame
    as_of: dt.date | None
    model_name: str
    model_hash: str
    rules: list[AlertRule] = field(default_factory=list)

    @property
    def new(self) -> pl.DataFrame:
        """The alerts to notify: status ``new``."""
        return self.alerts.filter(pl.col("status") == "new")

    def to_frame(self) -> pl.DataFrame:
        return self.alerts

    def summary(self) -> Summary:
        counts = {s: int((self.alerts["status"] == s).sum()) for s in ("new", "ongoing", "resolved")}
        lines = [f"alerts on {self.as_of} ({self.model_name}, hash {self.model_hash}): {counts['new']} new, "
                 f"{counts['ongoing']} ongoing, {counts['resolved']} resolved"]
        for rule in self.rules:
            part = self.alerts.filter(pl.col("rule") == rule.name)
            n = {s: int((part["status"] == s).sum()) for s in ("new", "ongoing", "resolved")}
            lines.append(f"  {rule.name:<26} {rule.severity:<8} {rule.owner:<18} new {n['new']:>4}  "
                         f"ongoing {n['ongoing']:>4}  resolved {n['resolved']:>4}")
        return Summary("\n".join(lines))

    def __repr__(self) -> str:
        return f"AlertRun(as_of={self.as_of}, alerts={self.alerts.height}, new={self.new.height})"


# ---------------------------------------------------------------- public functions
def alerts(scores: pl.DataFrame | pl.LazyFrame, model: ScoreModel, *, state: pl.DataFrame | None = None,
           as_of: dt.date | str | None = None, snapshots: pl.DataFrame | None = None) -> AlertRun:
    """Apply the model's alert rules to a score history; report the alerts of the latest date.

    ``scores`` is the output of :func:`healthscore.score` over the history (conditions such as a drop
    or a trend look back). ``as_of`` ignores rows after that date. Without ``state`` the whole
    history is replayed and the alerts of the last date are reported; with the ``state`` of an earlier
    run every date after that run is reported, continuing its alerts. Rules on data columns that the
    score frame lacks (e.g. ``champion_left``) read them from ``snapshots``.
    """
    return _run(scores, model, state=state, as_of=as_of, snapshots=snapshots, report_all=False)


def alert_history(scores: pl.DataFrame | pl.LazyFrame, model: ScoreModel, *,
                  snapshots: pl.DataFrame | None = None) -> pl.DataFrame:
    """Every alert status over the whole history (one row per alert and date it is new, ongoing or
    resolved), as if the alerts had run on every date; firings are the ``new`` rows."""
    return _run(scores, model, state=None, as_of=None, snapshots=snapshots, report_all=True).alerts


# ---------------------------------------------------------------- the engine
def _run(scores: pl.DataFrame | pl.LazyFrame, model: ScoreModel, *, state: pl.DataFrame | None,
         as_of: dt.date | str | None, snapshots: pl.DataFrame | None, report_all: bool) -> AlertRun:
    rules = list(model.alerts)
    if not rules:
        raise AlertError(f"{_where(model)}: the model has no [[alerts]] rules; add some (see the starter "
                         "models) before running alerts")
    frame = _prepare(scores, model, rules, as_of, snapshots)
    state = _check_state(state, model)
    state_date = None if state is None else state.filter(pl.col("rule").is_null())["as_of"].max()
    frame, holds, evidence = _conditions(frame, model, rules)
    run_date = frame["as_of"].max() if frame.height else state_date
    if state_date is not None and run_date is not None and run_date < state_date:
        run_date = state_date
    window = frame if state_date is None else frame.filter(pl.col("as_of") > state_date)
    window = window.with_row_index("__row")
    accounts = window["account_id"].to_numpy()
    codes, days, first_row = _keys(window)

    parts: list[pl.DataFrame] = []
    states: list[pl.DataFrame] = []
    for rule_ix, rule in enumerate(rules):
        h = window[holds[rule.name]].to_numpy().astype(bool) if window.height else np.zeros(0, bool)
        init = _initial(window, state, rule) if state is not None else None
        out = _statuses(codes, days, first_row, h, rule.cooldown_days, init)
        rows = np.flatnonzero(out["status"] != "")
        if not report_all and window.height:
            wanted = days >= (_day(run_date) if state_date is None else _NO_DAY)
            rows = rows[wanted[rows]]
        need = np.zeros(len(codes), bool)
        need[rows] = True
        need[np.r_[first_row[1:], True] if len(codes) else need] = True  # each account's last row: the state
        ids = _alert_ids(accounts, codes, out, rule.name, need)
        if rows.size:
            sel = window[rows]
            part = sel.select(
                pl.lit(rule_ix, pl.Int32).alias("__rule"), pl.lit(_SEVERITY_ORDER.get(rule.severity, 9), pl.Int8)
                .alias("__sev"), pl.Series("__code", codes[rows]), pl.col("account_id"), pl.col("as_of"),
                *([pl.col("csm")] if "csm" in window.columns else []),
                evidence[rule.name].alias("evidence"))
            part = part.with_columns(
                pl.Series("alert_id", ids[rows], dtype=pl.String),
                _to_date(pl.Series("fired_at", out["first"][rows], dtype=pl.Int64)),
                pl.Series("status", out["status"][rows], dtype=pl.String))
            parts.append(part)
        states.append(_next_state(window, accounts, codes, out, ids, state, rule, run_date, model.hash))

    extra = ["csm"] if "csm" in frame.columns else []
    columns = ALERT_COLUMNS + extra
    if parts:
        table = pl.concat(parts, how="vertical_relaxed")
        # integer keys sort far faster than text: date, severity, account, rule as in the model; the
        # rule's texts are added after the sort, so they are never moved around
        table = table.sort("as_of", "__sev", "__code", "__rule")
        meta = {key: {i: getattr(r, key) for i, r in enumerate(rules)} for key in ("name", "kind", "severity",
                                                                                  "owner", "action")}
        table = table.with_columns(
            *[pl.col("__rule").replace_strict(meta[key], return_dtype=pl.String).alias("rule" if key == "name" else key)
              for key in meta], pl.lit(model.hash).alias("model_hash")).select(columns)
    else:
        table = pl.DataFrame(schema={**_alert_schema(), **({"csm": pl.String} if extra else {})})
    marker = pl.DataFrame({"as_of": [run_date], "model_hash": [model.hash]},
                          schema={"as_of": pl.Date, "model_hash": pl.String})
    new_state = pl.concat([s.select(list(STATE_SCHEMA)) for s in states] + [marker],
                          how="diagonal_relaxed").select(list(STATE_SCHEMA)).cast(STATE_SCHEMA)
    new_state = new_state.sort(pl.col("rule").is_null(), "rule", "account_id")
    return AlertRun(alerts=table, state=new_state, as_of=run_date, model_name=model.name, model_hash=model.hash,
                    rules=rules)


def _keys(window: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Account codes, days since 1970 and first-row-of-account flags of a frame sorted by account, date."""
    if not window.height:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool)
    codes = window.select(pl.col("account_id").rank("dense").cast(pl.Int64)).to_series().to_numpy()
    days = window.select((pl.col("as_of") - pl.lit(_EPOCH)).dt.total_days().cast(pl.Int64)).to_series().to_numpy()
    return codes, days, np.r_[True, codes[1:] != codes[:-1]]


def _alert_schema() -> dict[str, Any]:
    return {"alert_id": pl.String, "account_id": pl.String, "as_of": pl.Date, "rule": pl.String,
            "kind": pl.String, "severity": pl.String, "owner": pl.String, "action": pl.String,
            "fired_at": pl.Date, "status": pl.String, "evidence": pl.String, "model_hash": pl.String}


def _to_date(s: pl.Series) -> pl.Series:
    """Days since 1970-01-01 -> dates."""
    return s.cast(pl.Int32).cast(pl.Date)


def _day(d: dt.date) -> int:
    return (d - _EPOCH).days


def _where(model: ScoreModel) -> str:
    return model.source.name if model.source is not None else f"model {model.name!r}"


def _source_column(model: ScoreModel, rule: AlertRule) -> str | None:
    """The score-frame column a threshold or trend rule reads."""
    if rule.column is not None:
        return rule.column
    if rule.metric is None:
        return None
    if rule.metric == "score":
        return "score"
    if rule.metric in {m.name for m in model.metrics}:
        return f"sub_{rule.metric}"
    return f"cat_{rule.metric}"


def _needed(model: ScoreModel, rule: AlertRule) -> list[str]:
    cols: list[str] = list(rule.filter)
    if rule.kind in ("drop", "probability"):
        cols.append("score")
    elif rule.kind == "enters_band":
        cols.append("score")
    elif rule.kind in ("threshold", "trend", "event", "flag"):
        cols.append(_source_column(model, rule) or "")
    return cols


def _prepare(scores: pl.DataFrame | pl.LazyFrame, model: ScoreModel, rules: list[AlertRule],
             as_of: dt.date | str | None, snapshots: pl.DataFrame | None) -> pl.DataFrame:
    frame = scores.collect() if isinstance(scores, pl.LazyFrame) else scores
    for col in ("account_id", "as_of"):
        if col not in frame.columns:
            raise AlertError(f"scores: no {col!r} column; pass the output of healthscore score")
    if frame.schema["as_of"] != pl.Date:
        try:
            frame = frame.with_columns(pl.col("as_of").cast(pl.String).str.slice(0, 10).str.to_date("%Y-%m-%d"))
        except pl.exceptions.PolarsError:
            raise AlertError("scores: as_of must hold dates (YYYY-MM-DD)") from None
    if as_of is not None:
        try:
            cutoff = dt.date.fromisoformat(as_of) if isinstance(as_of, str) else as_of
        except ValueError:
            raise AlertError(f"as_of {as_of!r}: give a date as YYYY-MM-DD") from None
        frame = frame.filter(pl.col("as_of") <= cutoff)
    frame = frame.with_columns(pl.col("account_id").cast(pl.String))
    wanted = list(dict.fromkeys(c for r in rules for c in _needed(model, r)))
    missing = [c for c in wanted if c not in frame.columns]
    if missing and snapshots is not None:
        snaps = snapshots.collect() if isinstance(snapshots, pl.LazyFrame) else snapshots
        take = [c for c in missing if c in snaps.columns]
        if take:
            snaps = snaps.select(pl.col("account_id").cast(pl.String), pl.col("as_of").cast(pl.Date), *take)
            if snaps.select(pl.struct("account_id", "as_of").is_duplicated().any()).item():
                raise AlertError("snapshots: an account has two rows for the same as_of; keep one per date")
            frame = frame.join(snaps, on=["account_id", "as_of"], how="left")
        missing = [c for c in wanted if c not in frame.columns]
    if missing:
        uses = [f"{r.name} ({', '.join(c for c in _needed(model, r) if c in missing)})" for r in rules
                if any(c in missing for c in _needed(model, r))]
        raise AlertError(f"{_where(model)}: alert rules {', '.join(uses)} read columns the scores do not have; "
                         "pass the snapshots as well (snapshots= in Python, --snapshots on the command line) or "
                         "change the rule's column")
    keep = ["account_id", "as_of", *(["csm"] if "csm" in frame.columns else []), *wanted]
    frame = frame.select(list(dict.fromkeys(keep))).sort("account_id", "as_of")
    if frame.height and frame.select(pl.struct("account_id", "as_of").is_duplicated().any()).item():
        raise AlertError("scores: an account has two rows for the same as_of; score each date once")
    # one increasing integer per row: account number * 10^7 + day. A look-back window of d days on it
    # never reaches into the previous account, so windows need no per-account partition.
    key = pl.col("account_id").rank("dense").cast(pl.Int64) * 10_000_000 + \
        (pl.col("as_of") - pl.lit(_EPOCH)).dt.total_days().cast(pl.Int64)
    return frame.with_columns(key.alias(_KEY)).with_columns(pl.col(_KEY).set_sorted())


def _check_state(state: pl.DataFrame | None, model: ScoreModel) -> pl.DataFrame | None:
    if state is None:
        return None
    missing = [c for c in STATE_SCHEMA if c not in state.columns]
    if missing:
        raise AlertError(f"alert state: missing columns {missing}; pass the state written by an earlier "
                         "alerts run (or none to start afresh)")
    state = state.select(list(STATE_SCHEMA)).cast(STATE_SCHEMA)
    if state.filter(pl.col("rule").is_null()).height != 1:
        raise AlertError("alert state: it does not say when it was written (no run row); pass the state "
                         "written by an earlier alerts run")
    names = {r.name for r in model.alerts}
    # rules removed from the model leave no trace
    return state.filter(pl.col("rule").is_null() | pl.col("rule").is_in(sorted(names)))


# ---------------------------------------------------------------- conditions
def _conditions(frame: pl.DataFrame, model: ScoreModel,
                rules: list[AlertRule]) -> tuple[pl.DataFrame, dict[str, str], dict[str, pl.Expr]]:
    """Add one Boolean column per rule (does the condition hold) and the helper columns the
    evidence reads; return the frame, the column of each rule and each rule's evidence (JSON text)."""
    holds: dict[str, str] = {}
    structs: dict[str, pl.Expr] = {}
    helpers: list[pl.Expr] = []
    conds: list[pl.Expr] = []
    for i, rule in enumerate(order_rules(rules)):
        col = f"__h{i}"
        holds[rule.name] = col
        cond, evid, helper = _condition(model, rule, i, frame.schema)
        helpers += helper
        if rule.kind in ("all", "any"):
            parts = [pl.col(holds[p]) for p in rule.rules]
            cond = pl.all_horizontal(parts) if rule.kind == "all" else pl.any_horizontal(parts)
            evid = pl.struct([structs[p].alias(p) for p in rule.rules])
        if rule.filter:
            cond = cond & pl.all_horizontal([pl.col(c).is_in(list(v)) for c, v in rule.filter.items()])
        structs[rule.name] = evid
        conds.append((col, cond))
    if helpers:
        frame = frame.with_columns(helpers)
    # combinations read the columns of their parts: the plain rules first, then each combination
    combos = {holds[r.name] for r in rules if r.kind in ("all", "any")}
    frame = frame.with_columns([c.fill_null(False).alias(col) for col, c in conds if col not in combos])
    for col, cond in conds:
        if col in combos:
            frame = frame.with_columns(cond.fill_null(False).alias(col))
    evidence = {name: s.struct.json_encode() for name, s in structs.items()}
    return frame, holds, evidence


def _value(model: ScoreModel, rule: AlertRule) -> pl.Expr:
    return pl.col(_source_column(model, rule) or "score").cast(pl.Float64)


def _condition(model: ScoreModel, rule: AlertRule, i: int,
               schema: Mapping[str, pl.DataType]) -> tuple[pl.Expr, pl.Expr, list[pl.Expr]]:
    score = pl.col("score").cast(pl.Float64)
    if rule.kind == "enters_band":
        band = pl.col("band") if "band" in schema else model.band_of(score)
        return band == rule.band, pl.struct(score.round(2).alias("score"), band.alias("band")), []
    if rule.kind == "drop":
        ref = f"__ref{i}"
        helper = score.rolling_max_by(_KEY, window_size=f"{rule.within_days}i", closed="left").alias(ref)
        drop = pl.col(ref) - score
        return drop >= rule.points, pl.struct(score.round(2).alias("score"), pl.col(ref).round(2).alias("highest"),
                                              drop.round(2).alias("drop"), pl.lit(rule.within).alias("within")), \
            [helper]
    if rule.kind == "threshold":
        v = _value(model, rule)
        op = {"<": v < rule.value, "<=": v <= rule.value, ">": v > rule.value, ">=": v >= rule.value}[rule.op or "<"]
        name = rule.metric if rule.metric is not None else rule.column
        what = "metric" if rule.metric is not None else "column"
        return op, pl.struct(pl.lit(name).alias(what), v.round(4).alias("value"), pl.lit(rule.op).alias("op"),
                             pl.lit(rule.value).alias("threshold")), []
    if rule.kind == "trend":
        v = _value(model, rule)
        d = rule.over_days
        present = v.is_not_null().cast(pl.Float64)
        filled = v.fill_null(0.0)

        def roll(expr: pl.Expr, days: int) -> pl.Expr:
            return expr.rolling_sum_by(_KEY, window_size=f"{days}i", closed="right")

        recent, previous = f"__rec{i}", f"__prev{i}"
        helpers = [
            (roll(filled, d) / roll(present, d)).alias(recent),
            ((roll(filled, 2 * d) - roll(filled, d)) / (roll(present, 2 * d) - roll(present, d))).alias(previous)]
        change = pl.when(pl.col(previous) > 0).then(pl.col(recent) / pl.col(previous) - 1.0)
        cond = change <= rule.change if (rule.change or 0) < 0 else change >= rule.change
        name = rule.metric if rule.metric is not None else rule.column
        return cond, pl.struct(pl.lit(name).alias("metric" if rule.metric is not None else "column"),
                               pl.col(recent).round(4).alias("recent_mean"),
                               pl.col(previous).round(4).alias("previous_mean"),
                               change.round(4).alias("change"), pl.lit(rule.over).alias("over")), helpers
    if rule.kind in ("event", "flag"):
        col = rule.column or ""
        dtype = schema.get(col)
        c = pl.col(col)
        if rule.kind == "event":
            if isinstance(rule.equals, (bool, int, float)) and (dtype is not None and (dtype.is_numeric()
                                                                                      or dtype == pl.Boolean)):
                cond = c.cast(pl.Float64) == float(rule.equals)
            else:
                cond = c.cast(pl.String) == str(rule.equals)
        elif dtype == pl.Boolean:
            cond = c
        elif dtype is not None and dtype.is_numeric():
            cond = c != 0
        else:
            cond = c.cast(pl.String).str.strip_chars().str.to_lowercase().is_in(["", "0", "false", "no"]).not_()
        return cond, pl.struct(pl.lit(col).alias("column"), c.alias("value")), []
    if rule.kind == "probability":
        if not model.probability:
            raise AlertError(f"{_where(model)}: alert rule {rule.name!r} reads the model's probability map and "
                             "the model has none; freeze one with 'healthscore evaluate --freeze' or drop the rule")
        try:
            pmap = ProbabilityMap.from_dict(model.probability)
        except ValueError as exc:
            raise AlertError(f"{_where(model)}: [probability]: {exc}") from None
        p = pmap.expr(score)
        return p >= rule.at_least, pl.struct(score.round(2).alias("score"), p.round(4).alias("probability"),
                                             pl.lit(rule.at_least).alias("at_least")), []
    return pl.lit(False), pl.struct(pl.lit(None).alias("none")), []  # all/any: built by the caller


# ---------------------------------------------------------------- statuses
def _initial(window: pl.DataFrame, state: pl.DataFrame, rule: AlertRule) -> dict[str, np.ndarray]:
    """Per window row, the state its account starts from (open, alert id, first fired, last fired)."""
    mine = state.filter(pl.col("rule") == rule.name).select(
        "account_id", "open", "alert_id",
        (pl.col("first_fired") - pl.lit(_EPOCH)).dt.total_days().alias("__first"),
        (pl.col("last_fired") - pl.lit(_EPOCH)).dt.total_days().alias("__last"))
    joined = window.select("__row", "account_id").join(mine, on="account_id", how="left").sort("__row")
    return {"open": joined["open"].fill_null(False).to_numpy().astype(bool),
            "id": joined["alert_id"].to_numpy().astype(object),
            "first": joined["__first"].fill_null(_NO_DAY).to_numpy().astype(np.int64),
            "last": joined["__last"].fill_null(_NO_DAY).to_numpy().astype(np.int64)}


def _statuses(codes: np.ndarray, days: np.ndarray, first_row: np.ndarray, h: np.ndarray, cooldown: int,
              init: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """Status of every row (``new``/``ongoing``/``resolved``/"") for one rule, rows sorted by account
    and date; ``first`` is the day the row's alert was new (its id is derived from it)."""
    n = len(h)
    init_open = init["open"] if init is not None else np.zeros(n, bool)
    init_first = init["first"] if init is not None else np.full(n, _NO_DAY, np.int64)
    prev = np.r_[False, h[:-1]] if n else np.zeros(0, bool)
    prev[first_row] = init_open[first_row]
    start = h & ~prev
    resolved = ~h & prev
    is_new = start.copy()
    if cooldown > 0 and start.any():
        idx = np.flatnonzero(start)
        sa, sd = codes[idx], days[idx]
        allowed = np.where(init_first[idx] == _NO_DAY, _NO_DAY, init_first[idx] + cooldown)
        ok = sd >= allowed                                # monotone within an account (sd grows)
        new_account = np.r_[True, sa[1:] != sa[:-1]]
        first_ok = ok & (new_account | ~np.r_[True, ok[:-1]])
        base = int(sd.min())
        key = sa * np.int64(10_000_000) + (sd - base)
        nxt = np.searchsorted(key, key + cooldown, side="left")
        valid = nxt < len(key)
        valid[valid] &= sa[nxt[valid]] == sa[valid]
        on = np.zeros(len(idx), bool)
        frontier = np.flatnonzero(first_ok)
        while frontier.size:  # one step per alert in the longest chain, all accounts at once
            on[frontier] = True
            frontier = nxt[frontier[valid[frontier]]]
        is_new = np.zeros(n, bool)
        is_new[idx[on]] = True
    # day of the latest new alert of the same account at or before each row (else the state's)
    pos = np.arange(n)
    account_start = np.maximum.accumulate(np.where(first_row, pos, 0)) if n else pos
    last_new = np.maximum.accumulate(np.where(is_new, pos, -1)) if n else pos
    from_run = last_new >= account_start
    first = np.where(from_run, days[np.maximum(last_new, 0)] if n else days, init_first)
    status = np.full(n, "", dtype=object)
    status[h] = "ongoing"
    status[is_new] = "new"
    status[resolved] = "resolved"
    last_held = np.maximum.accumulate(np.where(h, pos, -1)) if n else pos
    held_in_run = last_held >= account_start
    init_last = init["last"] if init is not None else np.full(n, _NO_DAY, np.int64)
    last = np.where(held_in_run, days[np.maximum(last_held, 0)] if n else days, init_last)
    return {"status": status, "first": first, "from_run": from_run, "h": h, "last": last,
            "init_id": init["id"] if init is not None else np.full(n, None, dtype=object)}


def alert_id(account_id: str, rule: str, fired: dt.date | str) -> str:
    """The stable id of an alert: a 64-bit FNV-1a hash of ``account|rule|YYYY-MM-DD`` (the account,
    the rule and the date it was new) as 16 hex digits; the same on every machine and version.

    >>> alert_id("A00001", "entered_red", "2026-11-16")
    'dabc9a8d7c9c00d9'
    """
    text = f"{account_id}|{rule}|{fired}"
    return str(_fnv1a64(np.char.encode(np.asarray([text], dtype=str), "utf-8"))[0])


_FNV_OFFSET, _FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)


def _fnv1a64(texts: np.ndarray) -> np.ndarray:
    """FNV-1a (64 bit) of many byte strings at once: one step per byte position, all strings together."""
    n = len(texts)
    if n == 0:
        return np.zeros(0, dtype="U16")
    fixed = np.asarray(texts, dtype="S")
    width = fixed.dtype.itemsize
    data = fixed.view(np.uint8).reshape(n, width)
    lengths = np.char.str_len(fixed)
    h = np.full(n, _FNV_OFFSET, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(width):
            step = (h ^ data[:, j].astype(np.uint64)) * _FNV_PRIME
            h = np.where(j < lengths, step, h)
    return np.array(h.astype(">u8").tobytes().hex()).reshape(1).view("U16")


def _alert_ids(accounts: np.ndarray, codes: np.ndarray, out: dict[str, np.ndarray], rule: str,
               need: np.ndarray) -> np.ndarray:
    """The alert id of the ``need`` rows (None where the account has had no alert)."""
    ids = out["init_id"].copy()
    fresh = out["from_run"] & need
    if fresh.any():
        # one id per alert (account, first day), hashed once
        keys = codes[fresh] * np.int64(100_000_000) + (out["first"][fresh] + 10_000_000)
        uniq, where, inverse = np.unique(keys, return_index=True, return_inverse=True)
        rows = np.flatnonzero(fresh)[where]
        texts = pl.DataFrame({"a": accounts[rows].astype(str), "d": out["first"][rows]}).select(
            pl.concat_str(pl.col("a"), pl.lit(f"|{rule}|"), pl.col("d").cast(pl.Int32).cast(pl.Date).cast(pl.String))
        ).to_series()
        raw = np.char.encode(np.asarray(texts.to_list(), dtype=str), "utf-8")
        ids[fresh] = _fnv1a64(raw).astype(object)[inverse.ravel()]
    return ids


def _next_state(window: pl.DataFrame, accounts: np.ndarray, codes: np.ndarray, out: dict[str, np.ndarray],
                ids: np.ndarray, state: pl.DataFrame | None, rule: AlertRule, run_date: dt.date | None,
                model_hash: str) -> pl.DataFrame:
    """Open alerts and alerts still within their cool-down after this run, for one rule."""
    n = len(codes)
    schema = {k: v for k, v in STATE_SCHEMA.items()}
    if n:
        last = np.r_[codes[1:] != codes[:-1], True]
        has = np.array([i is not None for i in ids[last]], dtype=bool)
        rows = pl.DataFrame({
            "account_id": accounts[last][has].astype(str),
            "alert_id": ids[last][has].astype(str),
            "open": out["h"][last][has],
            "__first": out["first"][last][has],
            "__last": out["last"][last][has]}, schema_overrides={"account_id": pl.String, "alert_id": pl.String})
        rows = rows.with_columns(
            pl.lit(rule.name).alias("rule"),
            _days_to_date("__first").alias("first_fired"), _days_to_date("__last").alias("last_fired"),
        ).with_columns(pl.col("first_fired").alias("last_notified"))
    else:
        rows = pl.DataFrame(schema=schema)
    rows = rows.with_columns(pl.lit(run_date, pl.Date).alias("as_of"), pl.lit(model_hash).alias("model_hash"))
    rows = rows.select(list(STATE_SCHEMA)).cast(STATE_SCHEMA)
    if state is not None:
        seen = window["account_id"].unique().implode()
        carried = state.filter(pl.col("rule") == rule.name, ~pl.col("account_id").is_in(seen)) \
            .with_columns(pl.lit(run_date, pl.Date).alias("as_of"), pl.lit(model_hash).alias("model_hash"))
        rows = pl.concat([rows, carried.select(list(STATE_SCHEMA)).cast(STATE_SCHEMA)])
    keep = pl.col("open") | (pl.col("last_notified") + pl.duration(days=rule.cooldown_days) > pl.lit(run_date))
    return rows.filter(keep)


def _days_to_date(col: str) -> pl.Expr:
    return pl.when(pl.col(col) > _NO_DAY).then(pl.lit(_EPOCH) + pl.duration(days=pl.col(col)))


# ---------------------------------------------------------------- backtest
@dataclass
class AlertBacktest:
    """How each rule would have done: ``table`` has one row per rule and one for all rules together."""

    table: pl.DataFrame
    firings: pl.DataFrame
    caught: pl.DataFrame
    outcome: str
    horizon: str
    adverse: bool
    model_name: str

    def to_frame(self) -> pl.DataFrame:
        return self.table

    def summary(self) -> Summary:
        who = "churners" if self.outcome == "churned" else f"accounts that {self.outcome}"
        lines = [f"alert backtest of {self.model_name} against {self.outcome} within {horizon_words(self.horizon)}"
                 f"{'' if self.adverse else ' (a favourable outcome: a firing followed by it is a hit)'}:"]
        for r in self.table.iter_rows(named=True):
            lines.append(line_of(r, who))
        return Summary("\n".join(lines))

    def charts(self) -> dict[str, Any]:
        """``precision_lead``: precision against median lead time, one point per rule."""
        from healthscore.viz import alerts as alert_charts  # viz sits above analysis; altair only when charted

        return {"precision_lead": alert_charts.precision_lead_chart(self.table, self.outcome, self.horizon)}

    def __repr__(self) -> str:
        return f"AlertBacktest({self.outcome}, {self.horizon}, rules={self.table.height - 1})"


def line_of(r: Mapping[str, Any], who: str = "churners") -> str:
    """One readable line of a backtest table row."""
    def pct(v: Any) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.0%}"

    def num(v: Any, fmt: str = ".0f") -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    return (f"  {r['rule']:<24} {r['alerts']:>6} alerts, precision {pct(r['precision'])} "
            f"[{pct(r['precision_lower'])}, {pct(r['precision_upper'])}] of {r['observable']}, "
            f"{pct(r['share_caught'])} of {r['events']} {who} alerted before, lead time median "
            f"{num(r['lead_days_median'])} days (IQR {num(r['lead_days_q25'])}-{num(r['lead_days_q75'])}), "
            f"{num(r['alerts_per_csm_week'], '.2f')} per CSM per week, "
            f"{num(r['false_per_true'], '.1f')} false per true alarm")


def backtest_alerts(scores: pl.DataFrame | pl.LazyFrame, events: pl.DataFrame, model: ScoreModel, *,
                    outcome: str = "churned", horizon: str = "90d",
                    snapshots: pl.DataFrame | None = None) -> AlertBacktest:
    """Replay the alert rules over the history and check them against what happened.

    Per rule and for all rules together: alerts fired (``new``), precision (the share of firings
    followed by the outcome within the horizon, counting only firings whose horizon ends by the last
    snapshot; Wilson 95% interval), the share of outcome events with a firing in the horizon before
    them (events from one horizon after the first snapshot to the last snapshot; for a terminal
    outcome the first per account), lead time from the first such firing to the event (days: median
    and quartiles), firings on accounts with a CSM per CSM and week, and false alarms per true alarm.
    """
    horizon = parse_horizon(horizon)
    h_days = horizon_days(horizon)
    definition = model.outcome(outcome)
    frame = scores.collect() if isinstance(scores, pl.LazyFrame) else scores
    firings = _firings(frame, model, snapshots)
    for col in ("account_id", "date", "event"):
        if col not in events.columns:
            raise AlertError(f"events: no {col!r} column; an events table has account_id, date, event")
    ev = events.select(pl.col("account_id").cast(pl.String), pl.col("date").cast(pl.Date), "event") \
        .filter(pl.col("event") == outcome)
    first, last = frame["as_of"].min(), frame["as_of"].max()
    labelled = label_outcomes(firings, ev, outcome=outcome, horizon=horizon, data_end=last,
                              terminal=definition.terminal)

    known = frame.select(pl.col("account_id").cast(pl.String)).unique()
    if definition.terminal:
        ev = ev.group_by("account_id").agg(pl.col("date").min())
    eligible = ev.select("account_id", "date").join(known, on="account_id", how="semi").filter(
        pl.col("date") >= pl.lit(first) + pl.duration(days=h_days), pl.col("date") <= pl.lit(last)).unique()
    before = eligible.join(firings.select("account_id", "as_of", "rule"), on="account_id", how="inner").filter(
        pl.col("as_of") < pl.col("date"), pl.col("as_of") >= pl.col("date") - pl.duration(days=h_days))
    per_rule = before.group_by("account_id", "date", "rule").agg(pl.col("as_of").min().alias("first_alert"))
    any_rule = before.group_by("account_id", "date").agg(pl.col("as_of").min().alias("first_alert")) \
        .with_columns(pl.lit(_ALL).alias("rule"))
    caught = pl.concat([per_rule, any_rule.select(per_rule.columns)]).with_columns(
        (pl.col("date") - pl.col("first_alert")).dt.total_days().alias("lead_days")).sort("rule", "account_id", "date")

    csm_weeks = None
    if "csm" in frame.columns:
        csm_weeks = int(frame.filter(pl.col("csm").is_not_null()).group_by("as_of")
                        .agg(pl.col("csm").n_unique()).select(pl.col("csm").sum()).item() or 0)
    n_events = eligible.height
    rows = []
    for rule in [*model.alerts, None]:
        name = _ALL if rule is None else rule.name
        fire = firings if rule is None else firings.filter(pl.col("rule") == name)
        lab = labelled if rule is None else labelled.filter(pl.col("rule") == name)
        hit = caught.filter(pl.col("rule") == name)
        true = int(lab[outcome].sum()) if lab.height else 0
        lead = hit["lead_days"].cast(pl.Float64)
        per_csm = None
        if csm_weeks:
            per_csm = fire.filter(pl.col("csm").is_not_null()).height / csm_weeks
        rows.append({
            "rule": name, "kind": "" if rule is None else rule.kind, "severity": "" if rule is None else rule.severity,
            "alerts": fire.height, "observable": lab.height, "true_alarms": true,
            "precision": true / lab.height if lab.height else None,
            "events": n_events, "caught": hit.height,
            "share_caught": hit.height / n_events if n_events else None,
            "lead_days_median": lead.median() if hit.height else None,
            "lead_days_q25": lead.quantile(0.25, "linear") if hit.height else None,
            "lead_days_q75": lead.quantile(0.75, "linear") if hit.height else None,
            "alerts_per_csm_week": per_csm,
            "false_per_true": (lab.height - true) / true if true else None})
    table = pl.DataFrame(rows, schema_overrides={"precision": pl.Float64, "share_caught": pl.Float64,
                                                 "lead_days_median": pl.Float64, "lead_days_q25": pl.Float64,
                                                 "lead_days_q75": pl.Float64, "alerts_per_csm_week": pl.Float64,
                                                 "false_per_true": pl.Float64})
    lo, hi = wilson_interval(table["true_alarms"].to_numpy(), table["observable"].to_numpy())
    table = table.with_columns(pl.Series("precision_lower", lo).fill_nan(None),
                               pl.Series("precision_upper", hi).fill_nan(None))
    order = ["rule", "kind", "severity", "alerts", "observable", "true_alarms", "precision", "precision_lower",
             "precision_upper", "events", "caught", "share_caught", "lead_days_median", "lead_days_q25",
             "lead_days_q75", "alerts_per_csm_week", "false_per_true"]
    return AlertBacktest(table=table.select(order), firings=labelled, caught=caught, outcome=outcome,
                         horizon=horizon, adverse=definition.adverse, model_name=model.name)


_ALL = "all rules"


# ---------------------------------------------------------------- capacity
@dataclass
class CapacityThreshold:
    """The most permissive setting of a rule whose alerts fit a team's capacity."""

    rule: AlertRule
    setting: str
    value: float | None
    alerts_per_csm_week: float | None
    capacity: float
    table: pl.DataFrame

    def to_frame(self) -> pl.DataFrame:
        return self.table

    def summary(self) -> Summary:
        if self.value is None:
            return Summary(f"{self.rule.name}: no {self.setting} keeps the alerts under {self.capacity:g} per CSM "
                           "per week; raise the capacity or narrow the rule with a filter")
        return Summary(f"{self.rule.name}: {self.setting} = {self.value:g} gives {self.alerts_per_csm_week:.2f} "
                       f"alerts per CSM per week (capacity {self.capacity:g})")

    def __repr__(self) -> str:
        return f"CapacityThreshold({self.rule.name}, {self.setting}={self.value})"


def threshold_for_capacity(scores: pl.DataFrame | pl.LazyFrame, model: ScoreModel, rule: str, *,
                           capacity: float, candidates: int = 40,
                           snapshots: pl.DataFrame | None = None) -> CapacityThreshold:
    """The threshold of ``rule`` that fits a capacity in alerts per CSM per week, over the history.

    Works for ``threshold`` rules (its ``value``), ``probability`` rules (``at_least``) and
    ``enters_band`` rules (read as ``score < cut-off``; the result is a threshold rule on the score).
    Candidates are quantiles of the values the rule reads; every candidate is replayed with the rule's
    cool-down in one pass, and the most permissive one within the capacity is chosen.
    """
    frame = scores.collect() if isinstance(scores, pl.LazyFrame) else scores
    found = next((r for r in model.alerts if r.name == rule), None)
    if found is None:
        raise AlertError(f"{_where(model)}: no alert rule {rule!r}; rules: {[r.name for r in model.alerts]}")
    if capacity <= 0:
        raise AlertError(f"capacity {capacity:g}: give the alerts a CSM can work per week, above 0")
    if "csm" not in frame.columns:
        raise AlertError("scores: no 'csm' column, so alerts per CSM cannot be counted; keep csm in the scores")
    base = found
    if found.kind == "enters_band":
        band = next(b for b in model.bands if b.name == found.band)
        base = replace(found, kind="threshold", band=None, metric="score", op="<", value=band.upper)
    if base.kind == "threshold":
        setting = "value"
        loosen_up = base.op in ("<", "<=")
        source = _source_column(model, base)
        values = _prepare(frame, model, [base], None, snapshots)[source or "score"].cast(pl.Float64).drop_nulls()
    elif base.kind == "probability":
        setting, loosen_up = "at_least", False
        if not model.probability:
            raise AlertError(f"{_where(model)}: rule {rule!r} needs the model's probability map and it has none")
        values = frame.select(ProbabilityMap.from_dict(model.probability).expr("score")).to_series().drop_nulls()
    else:
        raise AlertError(f"rule {rule!r} is a {found.kind!r} rule; a capacity threshold is found for threshold, "
                         "probability and enters_band rules")
    if values.is_empty():
        raise AlertError(f"rule {rule!r}: the scores hold no values for it to set a threshold on")
    qs = np.quantile(values.to_numpy(), np.linspace(0.01, 0.99, candidates), method="nearest")
    grid = sorted({round(float(v), 6) for v in qs})
    trial = [replace(base, name=f"c{k}", **{setting: v}) for k, v in enumerate(grid)]
    csm_weeks = int(frame.filter(pl.col("csm").is_not_null()).group_by("as_of")
                    .agg(pl.col("csm").n_unique()).select(pl.col("csm").sum()).item() or 0)
    n = _firing_counts(frame, replace(model, alerts=trial), snapshots)
    table = pl.DataFrame({setting: grid, "alerts": [int(n.get(f"c{k}", 0)) for k in range(len(grid))]}) \
        .with_columns((pl.col("alerts") / max(csm_weeks, 1)).alias("alerts_per_csm_week"))
    fits = table.filter(pl.col("alerts_per_csm_week") <= capacity)
    if fits.is_empty():
        return CapacityThreshold(base, setting, None, None, capacity, table)
    best = fits.sort(setting, descending=loosen_up).row(0, named=True)
    return CapacityThreshold(replace(base, **{setting: best[setting]}), setting, best[setting],
                             best["alerts_per_csm_week"], capacity, table)


def _firings(scores: pl.DataFrame, model: ScoreModel, snapshots: pl.DataFrame | None) -> pl.DataFrame:
    """Every firing (``new``) over the history: account_id, as_of, rule (and csm); no ids, evidence or state.
    The same statuses as :func:`alert_history`, computed without what a backtest does not read."""
    frame = _prepare(scores, model, model.alerts, None, snapshots)
    frame, holds, _ = _conditions(frame, model, model.alerts)
    codes, days, first_row = _keys(frame)
    cols = ["account_id", "as_of", *(["csm"] if "csm" in frame.columns else [])]
    parts = []
    for rule in model.alerts:
        h = frame[holds[rule.name]].to_numpy().astype(bool)
        status = _statuses(codes, days, first_row, h, rule.cooldown_days, None)["status"]
        rows = np.flatnonzero(status == "new")
        parts.append(frame[rows].select(*cols, pl.lit(rule.name).alias("rule")))
    return pl.concat(parts).select("account_id", "as_of", "rule", *cols[2:])


def _firing_counts(scores: pl.DataFrame, model: ScoreModel, snapshots: pl.DataFrame | None) -> dict[str, int]:
    """Alerts fired (``new``) per rule on accounts with a CSM over the history."""
    fired = _firings(scores, model, snapshots).filter(pl.col("csm").is_not_null())
    return dict(fired.group_by("rule").len().iter_rows())
