"""Early-warning alerts: the model's ``[[alerts]]`` rules applied to a score history.

:func:`alerts` gives the alerts of one run (this week): each alert is ``new`` on the first date its
condition holds after not holding (unless the same rule alerted the same account less than its
cool-down ago: then the earlier alert simply goes on), ``ongoing`` while it holds and ``resolved`` on
the first date it no longer holds. The run's ``state`` (open alerts, and recently alerted accounts
for the cool-down) is kept in a file and handed to the next run, which goes on exactly where this one
stopped: running week by week with the state gives the same alerts as one pass over the history.
:func:`alert_history` is that one pass; :func:`backtest_alerts` checks every rule against what
happened afterwards (precision, churners caught, lead time, alerts per CSM per week).

Every condition is computed for the whole history at once in one polars query; the cool-down is
followed with numpy along the chain of alert starts, one step per alert, for all accounts together.
The prepared history (sorted rows, each rule's condition) is kept while the caller holds the scores
frame, so :func:`alerts` and :func:`backtest_alerts` on the same scores and rules prepare it once; it
is reused only when the frame's rows (hashed) are unchanged.

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
import hashlib
import json
import math
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from healthscore.analysis.cohorts import wilson_interval
from healthscore.analysis.evaluation import ProbabilityMap
from healthscore.core.extract import is_cross_sectional
from healthscore.core.labels import label_outcomes
from healthscore.results import Summary
from healthscore.spec.alerts import AlertRule, order_rules
from healthscore.spec.model import ModelError, ScoreModel
from healthscore.spec.outcomes import horizon_days, horizon_words, parse_horizon

__all__ = [
    "AlertError",
    "AlertColumnsError",
    "AlertRun",
    "AlertBacktest",
    "CapacityThreshold",
    "alerts",
    "alert_history",
    "backtest_alerts",
    "threshold_for_capacity",
    "ALERT_COLUMNS",
    "STATE_SCHEMA",
]

ALERT_COLUMNS = [
    "alert_id",
    "account_id",
    "as_of",
    "rule",
    "kind",
    "severity",
    "owner",
    "action",
    "fired_at",
    "status",
    "evidence",
    "model_hash",
]
STATE_SCHEMA: dict[str, pl.DataType] = {
    "rule": pl.String(),
    "account_id": pl.String(),
    "alert_id": pl.String(),
    "open": pl.Boolean(),
    "first_fired": pl.Date(),
    "last_fired": pl.Date(),
    "last_notified": pl.Date(),
    "as_of": pl.Date(),
    "model_hash": pl.String(),
}
_SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}
_EPOCH = dt.date(1970, 1, 1)
_NO_DAY = np.iinfo(np.int64).min // 4
_KEY = "__key"


class AlertError(ModelError):
    """Alert rules that cannot run on the data given (a missing column, no probability map, a bad state)."""


class AlertColumnsError(AlertError):
    """Alert rules read columns that neither the scores nor the snapshots given have."""


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
        lines = [
            f"alerts on {self.as_of} ({self.model_name}, hash {self.model_hash}): {counts['new']} new, "
            f"{counts['ongoing']} ongoing, {counts['resolved']} resolved"
        ]
        for rule in self.rules:
            part = self.alerts.filter(pl.col("rule") == rule.name)
            n = {s: int((part["status"] == s).sum()) for s in ("new", "ongoing", "resolved")}
            lines.append(
                f"  {rule.name:<26} {rule.severity:<8} {rule.owner:<18} new {n['new']:>4}  "
                f"ongoing {n['ongoing']:>4}  resolved {n['resolved']:>4}"
            )
        return Summary("\n".join(lines))

    def __repr__(self) -> str:
        return f"AlertRun(as_of={self.as_of}, alerts={self.alerts.height}, new={self.new.height})"


# ---------------------------------------------------------------- public functions
def alerts(
    scores: pl.DataFrame | pl.LazyFrame,
    model: ScoreModel,
    *,
    state: pl.DataFrame | None = None,
    as_of: dt.date | str | None = None,
    snapshots: pl.DataFrame | None = None,
) -> AlertRun:
    """Apply the model's alert rules to a score history; report the alerts of the latest date.

    ``scores`` is the output of :func:`healthscore.score` over the history (conditions such as a drop
    or a trend look back). ``as_of`` ignores rows after that date. Without ``state`` the whole
    history is replayed and the alerts of the last date are reported; with the ``state`` of an earlier
    run every date after that run is reported, continuing its alerts. Rules on data columns that the
    score frame lacks (e.g. ``champion_left``) read them from ``snapshots``.
    """
    return _run(scores, model, state=state, as_of=as_of, snapshots=snapshots, report_all=False)


def alert_history(
    scores: pl.DataFrame | pl.LazyFrame, model: ScoreModel, *, snapshots: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Every alert status over the whole history (one row per alert and date it is new, ongoing or
    resolved), as if the alerts had run on every date; firings are the ``new`` rows."""
    return _run(scores, model, state=None, as_of=None, snapshots=snapshots, report_all=True).alerts


# ---------------------------------------------------------------- the engine
_NEW, _ONGOING, _RESOLVED = 1, 2, 3
_STATUS = {_NEW: "new", _ONGOING: "ongoing", _RESOLVED: "resolved"}


@dataclass
class _Book:
    """A score history made ready for a set of rules: one row per account and date, sorted by both,
    with the columns the rules read (and the helper columns of windowed rules) and every rule's
    condition as a numpy array. alerts() and backtest_alerts() on the same scores share one."""

    frame: pl.DataFrame
    codes: np.ndarray  # account number of each row: 0, 1, ... in account order
    days: np.ndarray  # days since 1970-01-01
    first_row: np.ndarray  # the row is its account's first
    holds: dict[str, np.ndarray]
    evidence: dict[str, pl.Expr]
    accounts: pl.Series  # account id of each account number
    _new: dict[str, np.ndarray] = field(default_factory=dict)

    def new(self, rule: AlertRule) -> np.ndarray:
        """Where the rule's alerts are new when the whole history is replayed from no state."""
        if rule.name not in self._new:
            self._new[rule.name] = _starts(
                self.codes, self.days, self.first_row, self.holds[rule.name], rule.cooldown_days
            )[1]
        return self._new[rule.name]


# one prepared history, kept while the caller holds the scores it was made from and reused only for
# the same scores object with the same content (its rows hashed) and the same rules
_BOOK: list[Any] = []


def _book(
    scores: pl.DataFrame | pl.LazyFrame,
    model: ScoreModel,
    rules: list[AlertRule],
    as_of: dt.date | str | None,
    snapshots: pl.DataFrame | pl.LazyFrame | None,
    *,
    reuse: bool = True,
) -> _Book:
    frame = scores.collect() if isinstance(scores, pl.LazyFrame) else scores
    snaps = snapshots.collect() if isinstance(snapshots, pl.LazyFrame) else snapshots
    key = _fingerprint(frame, snaps, model, rules, as_of) if reuse else None
    held = _BOOK[0] if _BOOK else None
    if key is not None and held is not None and held[0]() is scores and held[1] == key:
        return held[2]
    prepared = _prepare(frame, model, rules, as_of, snaps)
    prepared, holds, evidence = _conditions(prepared, model, rules)
    codes = prepared["__code"].to_numpy()
    days = prepared["__day"].to_numpy()
    first_row = np.empty(len(codes), bool)
    first_row[:1] = True
    np.not_equal(codes[1:], codes[:-1], out=first_row[1:])
    book = _Book(
        prepared.drop("__code", "__day").rechunk(),
        codes,
        days,
        first_row,
        holds,
        evidence,
        prepared["account_id"].filter(pl.Series(first_row)),
    )
    if key is not None:
        try:
            ref = weakref.ref(scores, lambda r: _BOOK.clear() if _BOOK and _BOOK[0][0] is r else None)
        except TypeError:  # an object that cannot be referred to weakly: nothing to keep it for
            return book
        _BOOK[:] = [(ref, key, book)]
    return book


def _fingerprint(
    frame: pl.DataFrame,
    snaps: pl.DataFrame | None,
    model: ScoreModel,
    rules: list[AlertRule],
    as_of: dt.date | str | None,
) -> tuple[Any, ...] | None:
    """What a prepared history depends on: the rows of the columns read, the rules, bands, metrics."""
    wanted = ["account_id", "as_of", "csm", *(c for r in rules for c in _needed(model, r))]
    try:
        parts = [_digest(frame, wanted)]
        if snaps is not None and any(c not in frame.columns for c in wanted):
            parts.append(_digest(snaps, wanted))
    except pl.exceptions.PolarsError:  # columns that cannot be hashed: prepare afresh every time
        return None
    rules_text = json.dumps([r.to_dict() for r in rules], sort_keys=True, default=str)
    model_text = json.dumps([model.hash, model.probability, sorted(model.categories)], sort_keys=True, default=str)
    return tuple(parts), rules_text, model_text, str(as_of)


def _digest(frame: pl.DataFrame, wanted: list[str]) -> str:
    cols = [c for c in dict.fromkeys(wanted) if c in frame.columns]
    part = frame.select(cols)
    rows = part.hash_rows(seed=11).to_numpy()
    return f"{part.schema}{part.height}:" + hashlib.blake2b(np.ascontiguousarray(rows), digest_size=20).hexdigest()


def _run(
    scores: pl.DataFrame | pl.LazyFrame,
    model: ScoreModel,
    *,
    state: pl.DataFrame | None,
    as_of: dt.date | str | None,
    snapshots: pl.DataFrame | None,
    report_all: bool,
) -> AlertRun:
    rules = list(model.alerts)
    if not rules:
        raise AlertError(
            f"{_where(model)}: the model has no [[alerts]] rules; add some (see the starter "
            "models) before running alerts"
        )
    book = _book(scores, model, rules, as_of, snapshots)
    state = _check_state(state, model)
    state_date = None if state is None else state.filter(pl.col("rule").is_null())["as_of"].max()
    run_date = _date(int(book.days.max())) if len(book.days) else state_date
    if state_date is not None and run_date is not None and run_date < state_date:
        run_date = state_date
    if state_date is None:
        sel, codes, days, first_row = None, book.codes, book.days, book.first_row
    else:
        sel = np.flatnonzero(book.days > _day(state_date))
        codes, days = book.codes[sel], book.days[sel]
        first_row = np.r_[True, codes[1:] != codes[:-1]] if len(codes) else np.zeros(0, bool)
    n = len(codes)
    last_rows = np.flatnonzero(np.r_[codes[1:] != codes[:-1], True]) if n else np.zeros(0, np.int64)
    # the rows reported: every row of the window with a state, else the run date's (or all rows)
    report = (
        None
        if report_all or state_date is not None
        else np.flatnonzero(days >= _day(run_date))
        if run_date is not None
        else np.zeros(0, np.int64)
    )

    extra = ["csm"] if "csm" in book.frame.columns else []
    names = [r.name for r in rules]
    # per rule, numpy only: the rows reported and each account's last row (for the state), the day each
    # row's alert was new, whether it is new in this run (its id is hashed) or known from the state
    rep_rows, rep_status, need_rows, need_rule, fired, fresh, known, init_ids = [], [], [], [], [], [], [], []
    last_open, last_held, carried = [], [], []
    for rule_ix, rule in enumerate(rules):
        h = book.holds[rule.name] if sel is None else book.holds[rule.name][sel]
        init = _initial(book, state, rule) if state is not None else None
        if init is None:
            is_new = book.new(rule) if sel is None else _starts(codes, days, first_row, h, rule.cooldown_days)[1]
            prev = _before(h, first_row, None, codes)
        else:
            prev, is_new = _starts(codes, days, first_row, h, rule.cooldown_days, init["open"], init["first"])
        shown = h | prev
        rows = np.flatnonzero(shown) if report is None else report[shown[report]]
        rep_rows.append(rows)
        rep_status.append(np.where(is_new[rows], _NEW, np.where(h[rows], _ONGOING, _RESOLVED)).astype(np.int8))
        need = np.concatenate([rows, last_rows])
        latest = _latest(np.flatnonzero(is_new), need, codes)
        new_here = latest >= 0
        earlier = _NO_DAY if init is None else init["first"][codes[need]]
        need_rows.append(need)
        need_rule.append(np.full(len(need), rule_ix, np.int32))
        fired.append(np.where(new_here, days[np.maximum(latest, 0)], earlier))
        fresh.append(new_here)
        known.append(new_here if init is None else new_here | init["has"][codes[need]])
        init_ids.append(
            pl.repeat(None, len(need), dtype=pl.String, eager=True) if init is None else init["id"].gather(codes[need])
        )
        held = _latest(np.flatnonzero(h), last_rows, codes)
        before = np.full(len(last_rows), _NO_DAY, np.int64) if init is None else init["last"][codes[last_rows]]
        last_held.append(np.where(held >= 0, days[np.maximum(held, 0)], before))
        last_open.append(h[last_rows])
        if state is not None:
            carried.append(_carried(book, codes, state, rule, run_date, model.hash))
    need_at, rule_at = np.concatenate(need_rows), np.concatenate(need_rule)
    fired_at, fresh_at, known_at = np.concatenate(fired), np.concatenate(fresh), np.concatenate(known)
    ids = pl.concat(init_ids)
    if fresh_at.any():  # every alert new in this run hashed once, all rules together
        ids = ids.scatter(
            np.flatnonzero(fresh_at),
            _alert_ids(book.accounts, codes[need_at[fresh_at]], fired_at[fresh_at], rule_at[fresh_at], names),
        )
    ids = ids.alias("alert_id")
    is_report = np.concatenate([np.r_[np.ones(len(r), bool), np.zeros(len(last_rows), bool)] for r in rep_rows])

    columns = ALERT_COLUMNS + extra
    rows = need_at[is_report]
    if rows.size:
        book_rows = rows if sel is None else sel[rows]
        which = rule_at[is_report]
        evidence = []
        for rule_ix, rule in enumerate(rules):  # each rule's evidence on its own rows
            mine = book_rows[which == rule_ix]
            if mine.size:
                expr = book.evidence[rule.name]
                roots = list(dict.fromkeys(["as_of", *expr.meta.root_names()]))
                evidence.append(
                    book.frame.select(roots)[mine].select(expr.struct.json_encode().alias("evidence")).to_series()
                )
        severity = np.array([_SEVERITY_ORDER.get(r.severity, 9) for r in rules], np.int8)
        table = book.frame.select("account_id", "as_of", *extra)[book_rows].with_columns(
            pl.Series("__rule", which),
            pl.Series("__sev", severity[which]),
            pl.Series("__code", codes[rows]),
            pl.concat(evidence),
            ids.filter(pl.Series(is_report)),
            _to_date(pl.Series("fired_at", fired_at[is_report], dtype=pl.Int64)),
            pl.Series("status", np.concatenate(rep_status)).replace_strict(_STATUS, return_dtype=pl.String),
        )
        # integer keys sort far faster than text: date, severity, account, rule as in the model; the
        # rule's texts are added after the sort, so they are never moved around
        table = table.sort("as_of", "__sev", "__code", "__rule")
        meta = {
            key: {i: getattr(r, key) for i, r in enumerate(rules)}
            for key in ("name", "kind", "severity", "owner", "action")
        }
        table = table.with_columns(
            *[
                pl.col("__rule")
                .replace_strict(meta[key], return_dtype=pl.String)
                .alias("rule" if key == "name" else key)
                for key in meta
            ],
            pl.lit(model.hash).alias("model_hash"),
        ).select(columns)
    else:
        table = pl.DataFrame(schema={**_alert_schema(), **({"csm": pl.String} if extra else {})})

    # the state: each account's last row with an alert, open or within its rule's cool-down
    last = ~is_report & known_at
    run_day = _day(run_date) if run_date is not None else 0
    cooldown = np.array([r.cooldown_days for r in rules], np.int64)
    opened, held_last = np.concatenate(last_open), np.concatenate(last_held)
    state_of_last = known_at[~is_report]
    keep = state_of_last & (opened | (fired_at[~is_report] + cooldown[rule_at[~is_report]] > run_day))
    pick = np.flatnonzero(last)[keep[state_of_last]]
    rows_state = (
        pl.DataFrame(
            {
                "rule": pl.Series(rule_at[pick]).replace_strict(dict(enumerate(names)), return_dtype=pl.String),
                "account_id": book.accounts.gather(codes[need_at[pick]]),
                "alert_id": ids.gather(pick),
                "open": opened[keep],
                "__first": fired_at[pick],
                "__last": held_last[keep],
            }
        )
        .with_columns(
            _days_to_date("__first").alias("first_fired"),
            _days_to_date("__last").alias("last_fired"),
        )
        .with_columns(
            pl.col("first_fired").alias("last_notified"),
            pl.lit(run_date, pl.Date).alias("as_of"),
            pl.lit(model.hash).alias("model_hash"),
        )
    )
    marker = pl.DataFrame(
        {"as_of": [run_date], "model_hash": [model.hash]}, schema={"as_of": pl.Date, "model_hash": pl.String}
    )
    new_state = (
        pl.concat(
            [s.select(list(STATE_SCHEMA)).cast(STATE_SCHEMA) for s in [rows_state, *carried]] + [marker],
            how="diagonal_relaxed",
        )
        .select(list(STATE_SCHEMA))
        .cast(STATE_SCHEMA)
    )
    new_state = new_state.sort(pl.col("rule").is_null(), "rule", "account_id")
    return AlertRun(
        alerts=table, state=new_state, as_of=run_date, model_name=model.name, model_hash=model.hash, rules=rules
    )


def _alert_schema() -> dict[str, Any]:
    return {
        "alert_id": pl.String,
        "account_id": pl.String,
        "as_of": pl.Date,
        "rule": pl.String,
        "kind": pl.String,
        "severity": pl.String,
        "owner": pl.String,
        "action": pl.String,
        "fired_at": pl.Date,
        "status": pl.String,
        "evidence": pl.String,
        "model_hash": pl.String,
    }


def _to_date(s: pl.Series) -> pl.Series:
    """Days since 1970-01-01 -> dates."""
    return s.cast(pl.Int32).cast(pl.Date)


def _day(d: dt.date) -> int:
    return (d - _EPOCH).days


def _date(day: int) -> dt.date:
    return _EPOCH + dt.timedelta(days=day)


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


def _prepare(
    frame: pl.DataFrame,
    model: ScoreModel,
    rules: list[AlertRule],
    as_of: dt.date | str | None,
    snapshots: pl.DataFrame | None,
) -> pl.DataFrame:
    """The columns the rules read, one row per account and date sorted by both, with the account
    number (``__code``), the day number (``__day``) and a window key (``__key``) per row."""
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
    if frame.schema["account_id"] != pl.String:
        frame = frame.with_columns(pl.col("account_id").cast(pl.String))
    wanted = list(dict.fromkeys(c for r in rules for c in _needed(model, r)))
    missing = [c for c in wanted if c not in frame.columns]
    if missing and snapshots is not None:
        snaps = snapshots
        take = [c for c in missing if c in snaps.columns]
        if take:
            snaps = snaps.select(pl.col("account_id").cast(pl.String), pl.col("as_of").cast(pl.Date), *take)
            if snaps.select(pl.struct("account_id", "as_of").is_duplicated().any()).item():
                raise AlertError("snapshots: an account has two rows for the same as_of; keep one per date")
            frame = frame.join(snaps, on=["account_id", "as_of"], how="left")
        missing = [c for c in wanted if c not in frame.columns]
    if missing:
        uses = [
            f"{r.name} ({', '.join(c for c in _needed(model, r) if c in missing)})"
            for r in rules
            if any(c in missing for c in _needed(model, r))
        ]
        raise AlertColumnsError(
            f"{_where(model)}: alert rules {', '.join(uses)} read columns the scores do not have; "
            "pass the snapshots as well (snapshots= in Python, --snapshots on the command line) or "
            "change the rule's column"
        )
    keep = ["account_id", "as_of", *(["csm"] if "csm" in frame.columns else []), *wanted]
    frame = frame.select(list(dict.fromkeys(keep)))
    for col in ("account_id", "as_of"):
        blank = frame[col].null_count()
        if blank:
            raise AlertError(f"scores: {blank} rows have no {col}; drop or complete them")
    acc, day = pl.col("account_id"), pl.col("as_of")
    # sorting text is slow: check the order first (scores usually come sorted)
    in_order = frame.select(
        ((acc > acc.shift()) | ((acc == acc.shift()) & (day > day.shift()))).fill_null(True).all()
    ).item()
    if not in_order:
        frame = frame.sort("account_id", "as_of")
        if frame.select(((acc == acc.shift()) & (day == day.shift())).any()).item():
            raise AlertError("scores: an account has two rows for the same as_of; score each date once")
    # one increasing integer per row: account number * 10^7 + day. A look-back window of d days on it
    # never reaches into the previous account, so windows need no per-account partition.
    code = (acc != acc.shift()).fill_null(True).cum_sum().cast(pl.Int64) - 1
    days = (day - pl.lit(_EPOCH)).dt.total_days().cast(pl.Int64)
    frame = frame.with_columns(code.alias("__code"), days.alias("__day"))
    return frame.with_columns((pl.col("__code") * 10_000_000 + pl.col("__day")).alias(_KEY).set_sorted())


def _check_state(state: pl.DataFrame | None, model: ScoreModel) -> pl.DataFrame | None:
    if state is None:
        return None
    missing = [c for c in STATE_SCHEMA if c not in state.columns]
    if missing:
        raise AlertError(
            f"alert state: missing columns {missing}; pass the state written by an earlier "
            "alerts run (or none to start afresh)"
        )
    state = state.select(list(STATE_SCHEMA)).cast(STATE_SCHEMA)
    if state.filter(pl.col("rule").is_null()).height != 1:
        raise AlertError(
            "alert state: it does not say when it was written (no run row); pass the state "
            "written by an earlier alerts run"
        )
    names = {r.name for r in model.alerts}
    # rules removed from the model leave no trace
    return state.filter(pl.col("rule").is_null() | pl.col("rule").is_in(sorted(names)))


# ---------------------------------------------------------------- conditions
def _conditions(
    frame: pl.DataFrame, model: ScoreModel, rules: list[AlertRule]
) -> tuple[pl.DataFrame, dict[str, np.ndarray], dict[str, pl.Expr]]:
    """Every rule's condition (does it hold, per row) in one query, the frame with the helper columns
    the evidence reads, and each rule's evidence (a struct; encoded only for the rows reported)."""
    holds: dict[str, str] = {}
    structs: dict[str, pl.Expr] = {}
    helpers: list[list[pl.Expr]] = []
    steps: list[list[pl.Expr]] = [[]]  # plain rules, then each combination after its parts
    depth: dict[str, int] = {}
    for i, rule in enumerate(order_rules(rules)):
        col = f"__h{i}"
        holds[rule.name] = col
        cond, evid, helper = _condition(model, rule, i, frame.schema)
        for stage, exprs in enumerate(helper):
            while len(helpers) <= stage:
                helpers.append([])
            helpers[stage] += exprs
        level = 0
        if rule.kind in ("all", "any"):
            parts = [pl.col(holds[p]) for p in rule.rules]
            cond = pl.all_horizontal(parts) if rule.kind == "all" else pl.any_horizontal(parts)
            evid = pl.struct([structs[p].alias(p) for p in rule.rules])
            level = 1 + max(depth[p] for p in rule.rules)
        if rule.filter:
            cond = cond & pl.all_horizontal([pl.col(c).is_in(list(v)) for c, v in rule.filter.items()])
        depth[rule.name] = level
        structs[rule.name] = evid
        while len(steps) <= level:
            steps.append([])
        steps[level].append(cond.fill_null(False).alias(col))
    query = frame.lazy()
    for stage in helpers + steps:
        if stage:
            query = query.with_columns(stage)
    out = query.collect(engine="in-memory")  # keeps row order (the rows line up with the account numbers)
    cols = list(holds.values())
    arrays = {name: out[col].to_numpy().astype(bool, copy=False) for name, col in holds.items()}
    return out.drop(cols), arrays, structs


def _value(model: ScoreModel, rule: AlertRule) -> pl.Expr:
    return pl.col(_source_column(model, rule) or "score").cast(pl.Float64)


def _condition(
    model: ScoreModel, rule: AlertRule, i: int, schema: Mapping[str, pl.DataType]
) -> tuple[pl.Expr, pl.Expr, list[list[pl.Expr]]]:
    """The rule's condition, its evidence and the helper columns both read (in stages: a stage reads
    the columns of the stages before it)."""
    score = pl.col("score").cast(pl.Float64)
    if rule.kind == "enters_band":
        band = pl.col("band") if "band" in schema else model.band_of(score)
        holds = pl.col("band") == rule.band if "band" in schema else model.in_band(score, rule.band or "")
        return holds, pl.struct(score.round(2).alias("score"), band.alias("band")), []
    if rule.kind == "drop":
        ref = f"__ref{i}"
        helper = score.rolling_max_by(_KEY, window_size=f"{rule.within_days}i", closed="left").alias(ref)
        drop = pl.col(ref) - score
        return (
            drop >= rule.points,
            pl.struct(
                score.round(2).alias("score"),
                pl.col(ref).round(2).alias("highest"),
                drop.round(2).alias("drop"),
                pl.lit(rule.within).alias("within"),
            ),
            [[helper]],
        )
    if rule.kind == "threshold":
        v = _value(model, rule)
        op = {"<": v < rule.value, "<=": v <= rule.value, ">": v > rule.value, ">=": v >= rule.value}[rule.op or "<"]
        name = rule.metric if rule.metric is not None else rule.column
        what = "metric" if rule.metric is not None else "column"
        return (
            op,
            pl.struct(
                pl.lit(name).alias(what),
                v.round(4).alias("value"),
                pl.lit(rule.op).alias("op"),
                pl.lit(rule.value).alias("threshold"),
            ),
            [],
        )
    if rule.kind == "trend":
        v = _value(model, rule)
        d = rule.over_days
        present = v.is_not_null().cast(pl.Float64)
        filled = v.fill_null(0.0)

        def roll(expr: pl.Expr, days: int) -> pl.Expr:
            return expr.rolling_sum_by(_KEY, window_size=f"{days}i", closed="right")

        recent, previous = f"__rec{i}", f"__prev{i}"
        s1, n1, s2, n2 = (pl.col(f"__{part}{i}") for part in ("s1_", "n1_", "s2_", "n2_"))
        # stage 1: the four window sums (each once); stage 2: the two means
        helpers = [
            [
                roll(filled, d).alias(f"__s1_{i}"),
                roll(present, d).alias(f"__n1_{i}"),
                roll(filled, 2 * d).alias(f"__s2_{i}"),
                roll(present, 2 * d).alias(f"__n2_{i}"),
            ],
            [(s1 / n1).alias(recent), ((s2 - s1) / (n2 - n1)).alias(previous)],
        ]
        change = pl.when(pl.col(previous) > 0).then(pl.col(recent) / pl.col(previous) - 1.0)
        cond = change <= rule.change if (rule.change or 0) < 0 else change >= rule.change
        name = rule.metric if rule.metric is not None else rule.column
        return (
            cond,
            pl.struct(
                pl.lit(name).alias("metric" if rule.metric is not None else "column"),
                pl.col(recent).round(4).alias("recent_mean"),
                pl.col(previous).round(4).alias("previous_mean"),
                change.round(4).alias("change"),
                pl.lit(rule.over).alias("over"),
            ),
            helpers,
        )
    if rule.kind in ("event", "flag"):
        col = rule.column or ""
        dtype = schema.get(col)
        c = pl.col(col)
        if rule.kind == "event":
            if isinstance(rule.equals, (bool, int, float)) and (
                dtype is not None and (dtype.is_numeric() or dtype == pl.Boolean)
            ):
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
            raise AlertError(
                f"{_where(model)}: alert rule {rule.name!r} reads the model's probability map and "
                "the model has none; freeze one with 'healthscore evaluate --freeze' or drop the rule"
            )
        try:
            pmap = ProbabilityMap.from_dict(model.probability)
        except ValueError as exc:
            raise AlertError(f"{_where(model)}: [probability]: {exc}") from None
        p = pmap.expr(score)
        return (
            p >= rule.at_least,
            pl.struct(
                score.round(2).alias("score"), p.round(4).alias("probability"), pl.lit(rule.at_least).alias("at_least")
            ),
            [],
        )
    return pl.lit(False), pl.struct(pl.lit(None).alias("none")), []  # all/any: built by the caller


# ---------------------------------------------------------------- statuses
def _initial(book: _Book, state: pl.DataFrame, rule: AlertRule) -> dict[str, Any]:
    """Per account number, the state it starts from (open, alert id, first fired, last fired)."""
    mine = state.filter(pl.col("rule") == rule.name).select(
        "account_id",
        "open",
        "alert_id",
        (pl.col("first_fired") - pl.lit(_EPOCH)).dt.total_days().alias("__first"),
        (pl.col("last_fired") - pl.lit(_EPOCH)).dt.total_days().alias("__last"),
    )
    joined = (
        pl.DataFrame({"account_id": book.accounts})
        .with_row_index("__code")
        .join(mine, on="account_id", how="left")
        .sort("__code")
    )
    return {
        "open": joined["open"].fill_null(False).to_numpy().astype(bool),
        "id": joined["alert_id"],
        "has": joined["alert_id"].is_not_null().to_numpy(),
        "first": joined["__first"].fill_null(_NO_DAY).to_numpy().astype(np.int64),
        "last": joined["__last"].fill_null(_NO_DAY).to_numpy().astype(np.int64),
    }


def _before(h: np.ndarray, first_row: np.ndarray, open_by_code: np.ndarray | None, codes: np.ndarray) -> np.ndarray:
    """Did the condition hold on the account's row before (on its first row: is an alert open)?"""
    prev = np.empty(len(h), bool)
    if len(h):
        prev[1:] = h[:-1]
        prev[first_row] = False if open_by_code is None else open_by_code[codes[first_row]]
    return prev


def _starts(
    codes: np.ndarray,
    days: np.ndarray,
    first_row: np.ndarray,
    h: np.ndarray,
    cooldown: int,
    open_by_code: np.ndarray | None = None,
    first_by_code: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """For one rule over rows sorted by account and date: whether the condition held on the row before
    and whether an alert is new on the row (its condition starts to hold, and the account's last new
    alert of this rule, in this run or in the state, is at least ``cooldown`` days earlier)."""
    prev = _before(h, first_row, open_by_code, codes)
    start = h & ~prev
    if cooldown <= 0 or not start.any():
        return prev, start
    idx = np.flatnonzero(start)
    sa, sd = codes[idx], days[idx]
    if first_by_code is None:
        ok = np.ones(len(idx), bool)
    else:
        earlier = first_by_code[sa]
        ok = (earlier == _NO_DAY) | (sd >= earlier + cooldown)  # monotone within an account (sd grows)
    new_account = np.r_[True, sa[1:] != sa[:-1]]
    first_ok = ok & (new_account | ~np.r_[True, ok[:-1]])
    key = sa * np.int64(10_000_000) + (sd - int(sd.min()))
    nxt = np.searchsorted(key, key + cooldown, side="left")
    valid = nxt < len(key)
    valid[valid] &= sa[nxt[valid]] == sa[valid]
    on = np.zeros(len(idx), bool)
    frontier = np.flatnonzero(first_ok)
    while frontier.size:  # one step per alert in the longest chain, all accounts at once
        on[frontier] = True
        frontier = nxt[frontier[valid[frontier]]]
    is_new = np.zeros(len(h), bool)
    is_new[idx[on]] = True
    return prev, is_new


def _latest(positions: np.ndarray, rows: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """For each row, the last of ``positions`` (sorted) at or before it in the same account, else -1."""
    if not positions.size:
        return np.full(len(rows), -1, np.int64)
    j = np.searchsorted(positions, rows, side="right") - 1
    found = positions[np.maximum(j, 0)]
    return np.where((j >= 0) & (codes[found] == codes[rows]), found, -1)


def alert_id(account_id: str, rule: str, fired: dt.date | str) -> str:
    """The stable id of an alert: a 64-bit FNV-1a hash of ``account|rule|YYYY-MM-DD`` (the account,
    the rule and the date it was new) as 16 hex digits; the same on every machine and version.

    >>> alert_id("A00001", "entered_red", "2026-11-16")
    'dabc9a8d7c9c00d9'
    """
    return _hex(_fnv1a64(pl.Series([f"{account_id}|{rule}|{fired}"], dtype=pl.String)))[0]


_FNV_OFFSET, _FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)


def _fnv1a64(texts: pl.Series) -> np.ndarray:
    """FNV-1a (64 bit) of the UTF-8 bytes of many texts at once: one step per byte position, all texts
    together; the bytes are read straight from the column's Arrow buffers."""
    n = len(texts)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    arrow = texts.to_arrow().cast(pa.large_string())
    _, offsets, data = arrow.buffers()
    start = np.frombuffer(offsets, dtype=np.int64)[arrow.offset : arrow.offset + n + 1]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(1, np.uint8)
    lengths = np.diff(start)
    h = np.full(n, _FNV_OFFSET, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for width in np.unique(lengths[lengths > 0]):  # texts of one length together: plain column steps
            group = np.flatnonzero(lengths == width)
            columns = np.ascontiguousarray(raw[start[group][:, None] + np.arange(width)].T)
            part = h[group]
            for column in columns:
                part ^= column
                part *= _FNV_PRIME
            h[group] = part
    return h


def _hex(h: np.ndarray) -> pl.Series:
    """64-bit integers as 16 lower-case hex digits each."""
    nibbles = (h[:, None] >> np.arange(60, -4, -4, dtype=np.uint64)) & np.uint64(15)
    digits = np.frombuffer(b"0123456789abcdef", np.uint8)[nibbles]
    return pl.Series(np.ascontiguousarray(digits).view("S16").ravel()).cast(pl.String)


def _alert_ids(
    accounts: pl.Series, codes: np.ndarray, fired: np.ndarray, rules: np.ndarray, names: list[str]
) -> pl.Series:
    """The ids of alerts (account number, day new, rule position); each distinct alert hashed once."""
    if len(names) < 2**8 and (codes.max(initial=0) < 2**30) and np.abs(fired).max(initial=0) < 2**24:
        keys = (rules.astype(np.int64) << 55) | (codes << 25) | (fired + 2**24)  # one integer per alert
    else:
        keys = np.stack([rules.astype(np.int64), codes, fired], axis=1)
    uniq, where, inverse = np.unique(keys, axis=0 if keys.ndim == 2 else None, return_index=True, return_inverse=True)
    texts = (
        pl.DataFrame({"a": accounts.gather(codes[where]), "d": fired[where], "r": rules[where]})
        .select(
            pl.concat_str(
                pl.col("a"),
                pl.lit("|"),
                pl.col("r").replace_strict(dict(enumerate(names)), return_dtype=pl.String),
                pl.lit("|"),
                pl.col("d").cast(pl.Int32).cast(pl.Date).cast(pl.String),
            )
        )
        .to_series()
    )
    return _hex(_fnv1a64(texts)).gather(inverse.ravel())


def _carried(
    book: _Book, codes: np.ndarray, state: pl.DataFrame, rule: AlertRule, run_date: dt.date | None, model_hash: str
) -> pl.DataFrame:
    """The state rows of one rule for accounts without rows in this run, kept while open or cooling down."""
    seen = book.accounts.gather(np.unique(codes)) if len(codes) else pl.Series([], dtype=pl.String)
    keep = pl.col("open") | (pl.col("last_notified") + pl.duration(days=rule.cooldown_days) > pl.lit(run_date))
    return (
        state.filter(pl.col("rule") == rule.name, ~pl.col("account_id").is_in(seen.implode()))
        .with_columns(pl.lit(run_date, pl.Date).alias("as_of"), pl.lit(model_hash).alias("model_hash"))
        .filter(keep)
    )


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
        lines = [
            f"alert backtest of {self.model_name} against {self.outcome} within {horizon_words(self.horizon)}"
            f"{'' if self.adverse else ' (a favourable outcome: a firing followed by it is a hit)'}:"
        ]
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

    return (
        f"  {r['rule']:<24} {r['alerts']:>6} alerts, precision {pct(r['precision'])} "
        f"[{pct(r['precision_lower'])}, {pct(r['precision_upper'])}] of {r['observable']}, "
        f"{pct(r['share_caught'])} of {r['events']} {who} alerted before, lead time median "
        f"{num(r['lead_days_median'])} days (IQR {num(r['lead_days_q25'])}-{num(r['lead_days_q75'])}), "
        f"{num(r['alerts_per_csm_week'], '.2f')} per CSM per week, "
        f"{num(r['false_per_true'], '.1f')} false per true alarm"
    )


def backtest_alerts(
    scores: pl.DataFrame | pl.LazyFrame,
    events: pl.DataFrame,
    model: ScoreModel,
    *,
    outcome: str = "churned",
    horizon: str = "90d",
    snapshots: pl.DataFrame | None = None,
) -> AlertBacktest:
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
    rules = list(model.alerts)
    for col in ("account_id", "date", "event"):
        if col not in events.columns:
            raise AlertError(f"events: no {col!r} column; an events table has account_id, date, event")
    book = _book(scores, model, rules, None, snapshots)
    # accounts travel as their numbers (sorted like the ids, far cheaper to sort and join than text)
    numbers = (
        pl.DataFrame({"account_id": book.accounts})
        .with_row_index("__code")
        .with_columns(pl.col("__code").cast(pl.Int64))
    )
    ev = (
        events.select(pl.col("account_id").cast(pl.String), pl.col("date").cast(pl.Date), "event")
        .filter(pl.col("event") == outcome)
        .join(numbers, on="account_id", how="left")
    )
    firings, at, which = _firings(book, rules)
    first, last = (_date(int(book.days.min())), _date(int(book.days.max()))) if len(book.days) else (None, None)
    # a label belongs to the account and date: label each row with a firing once, then every firing on it.
    # On an account without an event of the outcome the label reads only the date (no event: false; the
    # horizon must end by the last snapshot), so those rows are labelled once per date.
    fired_rows = np.flatnonzero(np.bincount(at, minlength=len(book.codes))) if at.size else at
    # labelled as the whole history would be (a panel, or one row per account), not as these rows alone
    one_row_each = is_cross_sectional(pl.DataFrame({"account_id": book.codes}))
    ev_codes = ev.select(pl.col("__code").fill_null(-1).alias("account_id"), "date", "event")
    with_event = np.zeros(len(book.accounts), bool)
    with_event[ev["__code"].drop_nulls().to_numpy()] = True
    on_event = with_event[book.codes[fired_rows]]
    observable = np.zeros(len(book.codes), bool)
    label = np.zeros(len(book.codes), bool)
    rows = fired_rows[on_event]
    if rows.size:
        labels = label_outcomes(
            pl.DataFrame({"account_id": book.codes[rows], "__row": rows}).with_columns(
                _to_date(pl.Series("as_of", book.days[rows]))
            ),
            ev_codes,
            outcome=outcome,
            horizon=horizon,
            data_end=last,
            terminal=definition.terminal,
            cross_sectional=one_row_each,
        )
        observable[labels["__row"].to_numpy()] = True
        label[labels["__row"].to_numpy()] = labels[outcome].to_numpy()
    rows = fired_rows[~on_event]
    if rows.size:
        dates = np.unique(book.days[rows])
        labels = label_outcomes(  # account number -2: no event has it
            pl.DataFrame({"account_id": np.full(len(dates), -2, np.int64), "__day": dates}).with_columns(
                _to_date(pl.Series("as_of", dates))
            ),
            ev_codes,
            outcome=outcome,
            horizon=horizon,
            data_end=last,
            terminal=definition.terminal,
            cross_sectional=one_row_each,
        )
        observable[rows] = np.isin(book.days[rows], labels["__day"].to_numpy())
    seen = np.flatnonzero(observable[at])
    names = {i: r.name for i, r in enumerate(rules)}
    has_csm = "csm" in book.frame.columns
    labelled = pl.DataFrame(
        {
            "account_id": book.accounts.gather(book.codes[at[seen]]),
            "as_of": firings["as_of"].gather(seen),
            "rule": pl.Series(which[seen]).replace_strict(names, return_dtype=pl.String),
            **({"csm": book.frame["csm"].gather(at[seen])} if has_csm else {}),
            outcome: label[at[seen]],
        }
    )

    if definition.terminal:
        ev = ev.group_by("account_id", "__code").agg(pl.col("date").min())
    eligible = (
        ev.filter(pl.col("__code").is_not_null())
        .select("account_id", "date", "__code")
        .filter(pl.col("date") >= pl.lit(first) + pl.duration(days=h_days), pl.col("date") <= pl.lit(last))
        .unique()
    )
    before = (
        eligible.join(firings.select(pl.col("account_id").alias("__code"), "as_of", "rule"), on="__code")
        .filter(pl.col("as_of") < pl.col("date"), pl.col("as_of") >= pl.col("date") - pl.duration(days=h_days))
        .with_columns(pl.col("rule").replace_strict(names, return_dtype=pl.String))
    )
    per_rule = before.group_by("account_id", "date", "rule").agg(pl.col("as_of").min().alias("first_alert"))
    any_rule = (
        before.group_by("account_id", "date")
        .agg(pl.col("as_of").min().alias("first_alert"))
        .with_columns(pl.lit(_ALL).alias("rule"))
    )
    caught = (
        pl.concat([per_rule, any_rule.select(per_rule.columns)])
        .with_columns((pl.col("date") - pl.col("first_alert")).dt.total_days().alias("lead_days"))
        .sort("rule", "account_id", "date")
    )

    csm_weeks = None
    if has_csm:
        csm_weeks = int(
            book.frame.filter(pl.col("csm").is_not_null())
            .group_by("as_of")
            .agg(pl.col("csm").n_unique())
            .select(pl.col("csm").sum())
            .item()
            or 0
        )
    n_events = eligible.height
    # per rule, and for all rules together
    count = np.bincount(which, minlength=len(rules))
    with_csm = (
        np.bincount(which, weights=book.frame["csm"].is_not_null().to_numpy()[at], minlength=len(rules))
        if has_csm
        else np.zeros(len(rules))
    )
    n_seen = np.bincount(which[seen], minlength=len(rules))
    n_true = np.bincount(which[seen], weights=label[at[seen]], minlength=len(rules)).astype(np.int64)
    lab = pl.DataFrame(
        {
            "rule": [r.name for r in rules] + [_ALL],
            "observable": np.r_[n_seen, n_seen.sum()],
            "true_alarms": np.r_[n_true, n_true.sum()],
        }
    )
    lead = pl.col("lead_days").cast(pl.Float64)
    hits = caught.group_by("rule").agg(
        pl.len().alias("caught"),
        lead.median().alias("lead_days_median"),
        lead.quantile(0.25, "linear").alias("lead_days_q25"),
        lead.quantile(0.75, "linear").alias("lead_days_q75"),
    )
    table = (
        pl.DataFrame(
            {
                "rule": [r.name for r in rules] + [_ALL],
                "kind": [r.kind for r in rules] + [""],
                "severity": [r.severity for r in rules] + [""],
                "alerts": np.r_[count, count.sum()].astype(np.int64),
                "with_csm": np.r_[with_csm, with_csm.sum()],
            }
        )
        .join(lab, on="rule", how="left")
        .join(hits, on="rule", how="left")
        .with_columns(pl.col("observable", "true_alarms", "caught").fill_null(0).cast(pl.Int64))
    )
    obs, true = pl.col("observable"), pl.col("true_alarms")

    def per(col: str, total: int | None) -> pl.Series:  # numpy division: polars may divide by a reciprocal
        return pl.Series(
            table[col].fill_null(0).to_numpy() / total if total else [None] * table.height, dtype=pl.Float64
        )

    table = table.with_columns(
        pl.when(obs > 0).then(true / obs).alias("precision"),
        pl.lit(n_events, pl.Int64).alias("events"),
        per("caught", n_events).alias("share_caught"),
        (per("with_csm", csm_weeks) if csm_weeks else pl.lit(None, pl.Float64)).alias("alerts_per_csm_week"),
        pl.when(true > 0).then((obs - true) / true).alias("false_per_true"),
    )
    lo, hi = wilson_interval(table["true_alarms"].to_numpy(), table["observable"].to_numpy())
    table = table.with_columns(
        pl.Series("precision_lower", lo).fill_nan(None), pl.Series("precision_upper", hi).fill_nan(None)
    )
    order = [
        "rule",
        "kind",
        "severity",
        "alerts",
        "observable",
        "true_alarms",
        "precision",
        "precision_lower",
        "precision_upper",
        "events",
        "caught",
        "share_caught",
        "lead_days_median",
        "lead_days_q25",
        "lead_days_q75",
        "alerts_per_csm_week",
        "false_per_true",
    ]
    table = table.select(order).cast({c: pl.Float64 for c in order[6:9] + order[11:]})
    return AlertBacktest(
        table=table,
        firings=labelled,
        caught=caught,
        outcome=outcome,
        horizon=horizon,
        adverse=definition.adverse,
        model_name=model.name,
    )


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
            return Summary(
                f"{self.rule.name}: no {self.setting} keeps the alerts under {self.capacity:g} per CSM "
                "per week; raise the capacity or narrow the rule with a filter"
            )
        return Summary(
            f"{self.rule.name}: {self.setting} = {self.value:g} gives {self.alerts_per_csm_week:.2f} "
            f"alerts per CSM per week (capacity {self.capacity:g})"
        )

    def __repr__(self) -> str:
        return f"CapacityThreshold({self.rule.name}, {self.setting}={self.value})"


def threshold_for_capacity(
    scores: pl.DataFrame | pl.LazyFrame,
    model: ScoreModel,
    rule: str,
    *,
    capacity: float,
    candidates: int = 40,
    snapshots: pl.DataFrame | None = None,
) -> CapacityThreshold:
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
        snaps = snapshots.collect() if isinstance(snapshots, pl.LazyFrame) else snapshots
        values = _prepare(frame, model, [base], None, snaps)[source or "score"].cast(pl.Float64).drop_nulls()
    elif base.kind == "probability":
        setting, loosen_up = "at_least", False
        if not model.probability:
            raise AlertError(f"{_where(model)}: rule {rule!r} needs the model's probability map and it has none")
        values = frame.select(ProbabilityMap.from_dict(model.probability).expr("score")).to_series().drop_nulls()
    else:
        raise AlertError(
            f"rule {rule!r} is a {found.kind!r} rule; a capacity threshold is found for threshold, "
            "probability and enters_band rules"
        )
    if values.is_empty():
        raise AlertError(f"rule {rule!r}: the scores hold no values for it to set a threshold on")
    qs = np.quantile(values.to_numpy(), np.linspace(0.01, 0.99, candidates), method="nearest")
    grid = sorted({round(float(v), 6) for v in qs})
    trial = [replace(base, name=f"c{k}", **{setting: v}) for k, v in enumerate(grid)]
    csm_weeks = int(
        frame.filter(pl.col("csm").is_not_null())
        .group_by("as_of")
        .agg(pl.col("csm").n_unique())
        .select(pl.col("csm").sum())
        .item()
        or 0
    )
    book = _book(frame, replace(model, alerts=trial), trial, None, snapshots, reuse=False)
    with_csm = book.frame["csm"].is_not_null().to_numpy()
    n = {r.name: int((book.new(r) & with_csm).sum()) for r in trial}
    table = pl.DataFrame({setting: grid, "alerts": [int(n.get(f"c{k}", 0)) for k in range(len(grid))]}).with_columns(
        (pl.col("alerts") / max(csm_weeks, 1)).alias("alerts_per_csm_week")
    )
    fits = table.filter(pl.col("alerts_per_csm_week") <= capacity)
    if fits.is_empty():
        return CapacityThreshold(base, setting, None, None, capacity, table)
    best = fits.sort(setting, descending=loosen_up).row(0, named=True)
    return CapacityThreshold(
        replace(base, **{setting: best[setting]}), setting, best[setting], best["alerts_per_csm_week"], capacity, table
    )


def _firings(book: _Book, rules: list[AlertRule]) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """Every firing (``new``) over the history, the same statuses as :func:`alert_history` without what a
    backtest does not read: account_id (the account's number), as_of, rule (its position in ``rules``) and
    ``__row`` (the row of the book); also the rows and rule positions as numpy arrays."""
    rows = [np.flatnonzero(book.new(rule)) for rule in rules]
    at = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    which = np.repeat(np.arange(len(rules), dtype=np.int32), [len(r) for r in rows])
    order = np.argsort(at, kind="stable")  # by account and date (the rows of the book), then rule
    at, which = at[order], which[order]
    frame = pl.DataFrame(
        {"account_id": book.codes[at], "as_of": book.days[at], "rule": which, "__row": at}
    ).with_columns(pl.col("as_of").cast(pl.Int32).cast(pl.Date))
    return frame, at, which
