"""Metric specs: how snapshots and outcome events are built from raw event logs and subscriptions.

A metric spec is a TOML file with four parts:

* ``[source]``: the raw tables (``events``; optional ``subscriptions`` and ``accounts``), their
  column names when they differ (``[source.columns]``) and the time zone that timestamps with an
  offset are converted to before their calendar day is taken (``timezone``, default UTC).
* ``[grid]``: the observation dates (``every = "1w"``, ``"2w"``, ``"1mo"``, ``"anniversary"``, or
  ``dates = [...]``; optional ``start``/``end``).
* ``[[metrics]]``: one table per snapshot column (an aggregate of events over a trailing window,
  a ratio, a per-seat or per-active-user rate, a relative change, days since an event, tenure,
  a subscription figure or a point-in-time CRM field).
* ``[outcomes.<name>]``: the meaning (``adverse``, ``terminal``, read by
  :mod:`healthscore.spec.outcomes`) and how the builder derives the events (``from = ...``).

Windows are whole calendar days. A trailing window of ``N`` days at ``as_of`` T covers the
events whose calendar day d satisfies ``T - N < d <= T``: timestamps in ``[T-N+1 00:00, T+1 00:00)``,
so an event at T 23:59 counts at T. Nothing dated after T is used for a snapshot at T.

>>> spec = parse_spec({"source": {"events": "e.parquet"}, "grid": {"every": "1w"},
...                    "metrics": [{"name": "logins_28d", "event": "login", "agg": "count", "window": "28d"}]})
>>> spec.metrics[0].window_days, spec.grid.every
(28, '1w')
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from healthscore.errors import HealthscoreError
from healthscore.spec.outcomes import Outcome, parse_outcomes

__all__ = [
    "MetricSpec",
    "Metric",
    "Source",
    "Grid",
    "OutcomeRule",
    "SpecError",
    "load_spec",
    "parse_spec",
    "AGGS",
    "COLUMN_ROLES",
    "parse_window",
]


class SpecError(HealthscoreError, ValueError):
    """A metric spec that cannot be used; the message names the file, the key and the fix."""


AGGS = ("count", "sum", "mean", "distinct_users", "active_days", "last")
# logical column -> default physical name, per table
COLUMN_ROLES: dict[str, str] = {
    "account_id": "account_id",
    "time": "time",
    "event": "event",
    "value": "value",
    "user_id": "user_id",
    "start": "start",
    "end": "end",
    "mrr": "mrr",
    "seats": "seats",
    "changed_at": "changed_at",
}
_WINDOW = re.compile(r"^\s*(\d+)\s*(d|w)\s*$")
_EVERY = re.compile(r"^\s*(\d+)\s*(w|mo|d)\s*$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_OUTCOME_MEANING = {"adverse", "terminal", "description"}
_OUTCOME_FROM = {
    "subscriptions": {"gap"},
    "mrr": {"threshold"},
    "activity": {"days"},
    "accounts": {"field", "column", "value"},
}


def parse_window(text: str, where: str, *, allow_zero: bool = False) -> int:
    """A window such as ``"28d"`` or ``"4w"`` as a number of days.

    >>> parse_window("4w", "x")
    28
    """
    m = _WINDOW.match(str(text))
    if not m or (int(m.group(1)) == 0 and not allow_zero):
        raise SpecError(
            f"{where} = {text!r} is not a window: write a positive number of days or weeks, e.g. '28d' or '4w'"
        )
    return int(m.group(1)) * (7 if m.group(2) == "w" else 1)


@dataclass(frozen=True)
class TableRef:
    """One raw table: a file (Parquet, CSV, DuckDB or SQLite) and, in a database file, the table."""

    path: Path
    table: str | None = None

    @property
    def kind(self) -> str:
        s = self.path.suffix.lower()
        if s in (".parquet", ".pq"):
            return "parquet"
        if s in (".csv", ".tsv", ".txt"):
            return "csv"
        if s in (".duckdb", ".ddb"):
            return "duckdb"
        if s in (".db", ".sqlite", ".sqlite3"):
            return "sqlite"
        raise SpecError(f"{self.path}: unknown file type '{s}'; use .parquet, .csv, .duckdb or .sqlite")

    def __str__(self) -> str:
        return f"{self.path}" + (f" (table {self.table})" if self.table else "")


@dataclass(frozen=True)
class Source:
    """The raw tables and the mapping from logical column names to the names in the files."""

    events: TableRef | None
    subscriptions: TableRef | None = None
    accounts: TableRef | None = None
    columns: Mapping[str, str] = field(default_factory=dict)
    timezone: str = "UTC"

    def col(self, role: str) -> str:
        """The physical column name for a logical role (``account_id``, ``time``, ...)."""
        return self.columns.get(role, COLUMN_ROLES.get(role, role))


@dataclass(frozen=True)
class Grid:
    """Observation dates: ``every`` ("1w", "2w", "1mo", "anniversary") or explicit ``dates``."""

    every: str | None = "1w"
    dates: tuple[dt.date, ...] = ()
    start: dt.date | None = None
    end: dt.date | None = None


@dataclass(frozen=True)
class Metric:
    """One snapshot column. ``kind`` is one of agg, ratio, per, change, days_since, tenure,
    subscription, field."""

    name: str
    kind: str
    agg: str | None = None
    event: str | None = None
    window_days: int | None = None
    inputs: tuple[str, ...] = ()
    per: str | None = None
    min_base: float | None = None
    column: str | None = None
    static: bool = False
    allow_negative: bool = False


@dataclass(frozen=True)
class OutcomeRule:
    """How one outcome's events are derived from the raw tables, with its meaning."""

    outcome: Outcome
    source: str
    gap_days: int = 7
    threshold: float | None = None
    days: int | None = None
    column: str | None = None
    value: Any = None

    @property
    def name(self) -> str:
        return self.outcome.name


@dataclass(frozen=True)
class MetricSpec:
    """A parsed, validated metric spec."""

    source: Source
    grid: Grid
    metrics: tuple[Metric, ...]
    outcomes: tuple[OutcomeRule, ...] = ()
    origin: str = "spec"

    def metric(self, name: str) -> Metric:
        return next(m for m in self.metrics if m.name == name)

    @property
    def outcome_definitions(self) -> dict[str, Outcome]:
        return {r.name: r.outcome for r in self.outcomes}

    def with_columns(self, mapping: Mapping[str, str]) -> MetricSpec:
        """The same spec with some column names overridden (``{"account_id": "customerID"}``)."""
        unknown = sorted(set(mapping) - set(COLUMN_ROLES))
        if unknown:
            raise SpecError(
                f"column mapping: unknown logical column(s) {unknown}; map one of {', '.join(COLUMN_ROLES)}"
            )
        return replace(self, source=replace(self.source, columns={**self.source.columns, **mapping}))

    def with_grid(self, grid: str | Sequence[dt.date] | Grid) -> MetricSpec:
        """The same spec with another observation grid ("1w", "1mo", "anniversary" or dates)."""
        if isinstance(grid, Grid):
            return replace(self, grid=grid)
        if isinstance(grid, str):
            return replace(
                self, grid=_parse_grid({"every": grid, "start": self.grid.start, "end": self.grid.end}, self.origin)
            )
        return replace(self, grid=_parse_grid({"dates": list(grid)}, self.origin))


# ------------------------------------------------------------------------- parsing
def load_spec(path: str | os.PathLike[str]) -> MetricSpec:
    """Read and validate a metric spec TOML file; relative table paths are resolved from its folder."""
    p = Path(path)
    if not p.exists():
        raise SpecError(
            f"{p}: no such metric spec file. Give the path of a TOML file with [source], [grid] and [[metrics]] tables."
        )
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{p}: not valid TOML ({exc}). Fix the syntax at that line.") from exc
    return parse_spec(data, origin=str(p), base=p.parent)


def parse_spec(data: Mapping[str, Any], *, origin: str = "spec", base: str | Path = ".") -> MetricSpec:
    """Validate a metric spec given as a mapping (the TOML document); see the module docstring."""
    unknown = sorted(set(data) - {"source", "grid", "metrics", "outcomes"})
    if unknown:
        raise SpecError(f"{origin}: unknown top-level key(s) {unknown}; allowed: source, grid, metrics, outcomes")
    source = _parse_source(data.get("source"), origin, Path(base))
    grid = _parse_grid(data.get("grid", {"every": "1w"}), origin)
    raw_metrics = data.get("metrics", [])
    if not isinstance(raw_metrics, list) or not raw_metrics:
        raise SpecError(f"{origin}: [[metrics]] is missing; add at least one [[metrics]] table with a name")
    metrics: list[Metric] = []
    for i, m in enumerate(raw_metrics):
        metrics.append(_parse_metric(m, f"{origin}: metrics[{i}]", {x.name: x for x in metrics}))
    outcomes = _parse_outcome_rules(data.get("outcomes", {}), origin)
    spec = MetricSpec(source, grid, tuple(metrics), outcomes, origin)
    _check_sources(spec)
    return spec


def _parse_table_ref(value: Any, where: str, base: Path) -> TableRef:
    if isinstance(value, str):
        ref = TableRef(base / value)
    elif isinstance(value, Mapping) and isinstance(value.get("path"), str):
        extra = sorted(set(value) - {"path", "table"})
        if extra:
            raise SpecError(f'{where} has unknown key(s) {extra}; write {{ path = "...", table = "..." }}')
        ref = TableRef(base / value["path"], value.get("table"))
    else:
        raise SpecError(f'{where} must be a file name ("events.parquet") or {{ path = "x.duckdb", table = "events" }}')
    _ = ref.kind  # an unknown suffix is reported now, not at build time
    return ref


def _parse_source(src: Any, origin: str, base: Path) -> Source:
    if not isinstance(src, Mapping):
        raise SpecError(f'{origin}: [source] is missing; add [source] with events = "events.parquet"')
    allowed = {"events", "subscriptions", "accounts", "columns", "timezone"}
    unknown = sorted(set(src) - allowed)
    if unknown:
        raise SpecError(f"{origin}: [source] has unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    if "events" not in src and "subscriptions" not in src:
        raise SpecError(f'{origin}: [source] needs events = "<file>" (and optionally subscriptions, accounts)')
    refs = {
        k: _parse_table_ref(src[k], f"{origin}: source.{k}", base)
        for k in ("events", "subscriptions", "accounts")
        if k in src
    }
    cols = src.get("columns", {})
    if not isinstance(cols, Mapping) or not all(isinstance(v, str) for v in cols.values()):
        raise SpecError(
            f'{origin}: [source.columns] must map logical names to column names, e.g. account_id = "customer"'
        )
    bad = sorted(set(cols) - set(COLUMN_ROLES))
    if bad:
        raise SpecError(
            f"{origin}: source.columns has unknown logical column(s) {bad}; map one of {', '.join(COLUMN_ROLES)}"
        )
    tz = src.get("timezone", "UTC")
    if not isinstance(tz, str) or not tz:
        raise SpecError(f'{origin}: source.timezone must be a time zone name such as "UTC" or "Europe/Berlin"')
    return Source(refs.get("events"), refs.get("subscriptions"), refs.get("accounts"), dict(cols), tz)


def _date(value: Any, where: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise SpecError(f"{where} = {value!r} is not a date; write it as YYYY-MM-DD, e.g. 2025-01-06") from None


def _parse_grid(g: Any, origin: str) -> Grid:
    if not isinstance(g, Mapping):
        raise SpecError(f'{origin}: [grid] must be a table, e.g. [grid] every = "1w"')
    unknown = sorted(set(g) - {"every", "dates", "start", "end"})
    if unknown:
        raise SpecError(f"{origin}: [grid] has unknown key(s) {unknown}; allowed: every, dates, start, end")
    start = _date(g["start"], f"{origin}: grid.start") if g.get("start") is not None else None
    end = _date(g["end"], f"{origin}: grid.end") if g.get("end") is not None else None
    if start and end and end < start:
        raise SpecError(f"{origin}: grid.end {end} is before grid.start {start}; swap them")
    if g.get("dates") is not None:
        if g.get("every") is not None:
            raise SpecError(f"{origin}: [grid] has both every and dates; keep one")
        dates = tuple(sorted({_date(d, f"{origin}: grid.dates") for d in g["dates"]}))
        if not dates:
            raise SpecError(f"{origin}: grid.dates is empty; list at least one date")
        return Grid(None, dates, start, end)
    every = str(g.get("every", "1w")).strip()
    if every != "anniversary":
        m = _EVERY.match(every)
        if not m or int(m.group(1)) == 0:
            raise SpecError(
                f'{origin}: grid.every = {every!r} is not understood; write "1w", "2w", "1mo", '
                '"7d", "anniversary", or give dates = [...]'
            )
        every = f"{int(m.group(1))}{m.group(2)}"
    return Grid(every, (), start, end)


_METRIC_KEYS = {
    "agg": {"name", "event", "agg", "window", "allow_negative", "description"},
    "ratio": {"name", "ratio", "description"},
    "per": {"name", "per", "of", "description"},
    "change": {"name", "change_of", "min_base", "description"},
    "days_since": {"name", "days_since", "description"},
    "tenure": {"name", "tenure", "description"},
    "subscription": {"name", "subscription", "description"},
    "field": {"name", "field", "static", "description"},
}


def _kind(m: Mapping[str, Any]) -> str | None:
    for key, kind in (
        ("ratio", "ratio"),
        ("per", "per"),
        ("change_of", "change"),
        ("days_since", "days_since"),
        ("tenure", "tenure"),
        ("subscription", "subscription"),
        ("field", "field"),
        ("agg", "agg"),
    ):
        if key in m:
            return kind
    return None


def _parse_metric(m: Any, where: str, earlier: Mapping[str, Metric]) -> Metric:
    if not isinstance(m, Mapping):
        raise SpecError(f"{where} must be a table ([[metrics]] with name = ...)")
    name = m.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise SpecError(f"{where}.name = {name!r}: give each metric a name made of letters, digits and _")
    where = f"{where} ({name})"
    if name in earlier or name in ("account_id", "as_of"):
        raise SpecError(
            f"{where}: the name {name!r} is used twice; metric names must be unique and not account_id or as_of"
        )
    kind = _kind(m)
    if kind is None:
        raise SpecError(
            f'{where}: say what the metric is: agg = "count" (with event, window), ratio = [a, b], '
            'per = "seat" with of, change_of, days_since, tenure = true, subscription = "mrr" '
            'or field = "plan"'
        )
    unknown = sorted(set(m) - _METRIC_KEYS[kind])
    if unknown:
        raise SpecError(
            f"{where}: key(s) {unknown} do not belong to a {kind} metric; allowed: {sorted(_METRIC_KEYS[kind])}"
        )

    def ref(other: Any, key: str, kinds: tuple[str, ...] | None = None) -> Metric:
        if other not in earlier:
            raise SpecError(
                f"{where}.{key} = {other!r} names no metric defined above it; define {other!r} "
                "first (metrics may only refer to earlier ones)"
            )
        target = earlier[other]
        if kinds and target.kind not in kinds:
            raise SpecError(
                f"{where}.{key} = {other!r}: that metric is a {target.kind} metric; "
                f"{key} needs one of: {', '.join(kinds)}"
            )
        return target

    if kind == "agg":
        agg = m["agg"]
        if agg not in AGGS:
            raise SpecError(f"{where}.agg = {agg!r} is not known; use one of {', '.join(AGGS)}")
        event = m.get("event")
        if event is not None and not isinstance(event, str):
            raise SpecError(f"{where}.event must be an event name (text), or left out for any event")
        window = parse_window(m["window"], f"{where}.window") if m.get("window") is not None else None
        allow_negative = m.get("allow_negative", False)
        if not isinstance(allow_negative, bool):
            raise SpecError(f"{where}.allow_negative must be true or false")
        return Metric(name, "agg", agg=agg, event=event, window_days=window, allow_negative=allow_negative)
    if kind == "ratio":
        pair = m["ratio"]
        if not (isinstance(pair, list) and len(pair) == 2):
            raise SpecError(f'{where}.ratio must be two metric names: ratio = ["numerator", "denominator"]')
        for p in pair:
            ref(p, "ratio")
        return Metric(name, "ratio", inputs=(pair[0], pair[1]))
    if kind == "per":
        per = m["per"]
        if per not in ("seat", "active_user"):
            raise SpecError(f'{where}.per = {per!r}: use per = "seat" or per = "active_user"')
        if "of" not in m:
            raise SpecError(f'{where}: per needs of = "<metric>", the metric to divide')
        target = ref(m["of"], "of")
        if per == "active_user" and (target.kind != "agg" or target.window_days is None):
            raise SpecError(
                f'{where}: per = "active_user" divides by the distinct users in the window of '
                f"{target.name!r}, which has no window; point of at a metric with a window"
            )
        return Metric(name, "per", per=per, inputs=(target.name,), window_days=target.window_days)
    if kind == "change":
        target = ref(m["change_of"], "change_of", ("agg",))
        if target.agg == "last" or target.window_days is None:
            raise SpecError(
                f"{where}.change_of = {target.name!r}: a change compares two windows, so the metric "
                "needs a window and agg count, sum, mean, distinct_users or active_days"
            )
        min_base = m.get("min_base")
        if min_base is not None and (
            isinstance(min_base, bool) or not isinstance(min_base, (int, float)) or min_base < 0
        ):
            raise SpecError(f"{where}.min_base must be a number >= 0 (the smallest previous-window value kept)")
        return Metric(
            name,
            "change",
            inputs=(target.name,),
            min_base=None if min_base is None else float(min_base),
            window_days=target.window_days,
        )
    if kind == "days_since":
        ev = m["days_since"]
        if not isinstance(ev, str) or not ev:
            raise SpecError(f'{where}.days_since must be an event name, e.g. days_since = "login"')
        return Metric(name, "days_since", event=ev)
    if kind == "tenure":
        if m["tenure"] is not True:
            raise SpecError(f"{where}.tenure must be true (days since the account's start)")
        return Metric(name, "tenure")
    if kind == "subscription":
        col = m["subscription"]
        if col not in ("mrr", "seats"):
            raise SpecError(f'{where}.subscription = {col!r}: use "mrr" or "seats"')
        return Metric(name, "subscription", column=col)
    fld = m["field"]
    if not isinstance(fld, str) or not fld:
        raise SpecError(f"{where}.field must be a column name of the accounts table")
    static = m.get("static", False)
    if not isinstance(static, bool):
        raise SpecError(f"{where}.static must be true or false")
    return Metric(name, "field", column=fld, static=static)


def _parse_outcome_rules(table: Any, origin: str) -> tuple[OutcomeRule, ...]:
    if not isinstance(table, Mapping):
        raise SpecError(f"{origin}: [outcomes] must hold tables such as [outcomes.churned]")
    meanings = parse_outcomes(
        {
            n: {k: v for k, v in (t.items() if isinstance(t, Mapping) else []) if k in _OUTCOME_MEANING}
            if isinstance(t, Mapping)
            else t
            for n, t in table.items()
        },
        source=origin,
    )
    rules: list[OutcomeRule] = []
    for name, t in table.items():
        where = f"{origin}: outcomes.{name}"
        frm = t.get("from")
        if frm not in _OUTCOME_FROM:
            raise SpecError(
                f"{where}.from = {frm!r}: say where the outcome comes from: {', '.join(repr(k) for k in _OUTCOME_FROM)}"
            )
        unknown = sorted(set(t) - _OUTCOME_MEANING - {"from"} - _OUTCOME_FROM[frm])
        if unknown:
            raise SpecError(
                f"{where}: key(s) {unknown} do not apply to from = {frm!r}; allowed: {sorted(_OUTCOME_FROM[frm])}"
            )
        rule = OutcomeRule(meanings[name], frm)
        if frm == "subscriptions":
            rule = replace(rule, gap_days=parse_window(t.get("gap", "7d"), f"{where}.gap", allow_zero=True))
        elif frm == "mrr":
            thr = t.get("threshold")
            if isinstance(thr, bool) or not isinstance(thr, (int, float)) or thr == 0 or not -1 < thr:
                raise SpecError(
                    f"{where}.threshold must be a relative MRR change: 0.1 for a rise of more than "
                    "10 %, -0.1 for a fall of more than 10 %"
                )
            rule = replace(rule, threshold=float(thr))
        elif frm == "activity":
            days = t.get("days")
            if isinstance(days, bool) or not isinstance(days, int) or days < 1:
                raise SpecError(f"{where}.days must be a whole number of days without any event, e.g. 60")
            rule = replace(rule, days=days)
        else:
            col = t.get("field", t.get("column"))
            if not isinstance(col, str):
                raise SpecError(
                    f'{where}: from = "accounts" needs field = "<column>": a date column (the '
                    'churn date), or a column with value = "<the value that means it happened>"'
                )
            rule = replace(rule, column=col, value=t.get("value"))
        rules.append(rule)
    return tuple(rules)


def _check_sources(spec: MetricSpec) -> None:
    kinds = {m.kind for m in spec.metrics}
    needs_subs = (
        "subscription" in kinds
        or any(m.per == "seat" for m in spec.metrics)
        or any(r.source in ("subscriptions", "mrr") for r in spec.outcomes)
    )
    if needs_subs and spec.source.subscriptions is None:
        raise SpecError(
            f"{spec.origin}: a metric or outcome uses subscriptions, but [source] has no "
            'subscriptions = "<file>"; add it'
        )
    needs_events = any(m.kind in ("agg", "days_since") for m in spec.metrics) or any(
        r.source == "activity" for r in spec.outcomes
    )
    if needs_events and spec.source.events is None:
        raise SpecError(f'{spec.origin}: a metric or outcome uses events, but [source] has no events = "<file>"')
    if ("field" in kinds or any(r.source == "accounts" for r in spec.outcomes)) and spec.source.accounts is None:
        raise SpecError(
            f"{spec.origin}: a field metric or outcome reads the accounts table, but [source] has no "
            'accounts = "<file>"; add it'
        )
