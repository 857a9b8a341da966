"""Build snapshots and outcome events from raw event logs and subscriptions ("bring your own data").

:func:`build_snapshots` returns one row per account and observation date with the metrics of a
metric spec (:mod:`healthscore.spec.metrics`); :func:`build_outcomes` returns the outcome events
table (``account_id, date, event``) the rest of healthscore reads. Two engines give the same
numbers: ``engine="polars"`` (lazy scans, cumulative sums and as-of joins) and ``engine="duckdb"``
(the SQL of :mod:`healthscore.core.sqlgen` run on DuckDB, reading the files in place and spilling
to disk when larger than memory).

Point in time by construction: a snapshot at ``as_of`` T reads only events whose calendar day is
on or before T, subscriptions that started on or before T and CRM rows changed on or before T.

Rules, stated once:

* **account start**: the earlier of its first event day and its first subscription start.
* **grid rows**: an account has a row at T when its start <= T, T is on or before the grid end
  and T is not inside a terminal outcome's dead period (from the outcome's date to the account's
  re-activation, if any).
* **subscriptions**: ``start`` is the first day of a subscription, ``end`` the first day without it
  (empty: still running). Subscriptions that follow each other with at most ``gap`` days between
  them form one spell; a spell that ends with no new subscription within ``gap`` days is a churn on
  its end date (confirmed only once ``gap`` days of data have passed); a later subscription is a
  re-activation and starts a new active period.
* **MRR change** (``from = "mrr"``): at each subscription that follows another in the same spell,
  the relative change of MRR; ``threshold = 0.1`` marks rises of more than 10 %, ``-0.1`` falls of
  more than 10 %.
* **inactivity** (``from = "activity"``): ``days`` days without any event after an event day d gives
  an event on d + days; the next event is a re-activation.
* **CRM** (``from = "accounts"``): a date column gives the event on that date; with ``value``, each
  change of the field into that value (by ``changed_at``) is an event.

>>> import polars as pl, datetime as dt, tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> pl.DataFrame({"account_id": ["a", "a", "a"], "event": ["login"] * 3,
...               "time": [dt.datetime(2025, 1, 1, 9), dt.datetime(2025, 1, 6, 23, 59), dt.datetime(2025, 1, 7)]}
...              ).write_parquet(d / "events.parquet")
>>> from healthscore.spec.metrics import parse_spec
>>> spec = parse_spec({"source": {"events": "events.parquet"}, "grid": {"dates": ["2025-01-06"]},
...     "metrics": [{"name": "logins_7d", "event": "login", "agg": "count", "window": "7d"}]}, base=d)
>>> build_snapshots(spec, today=dt.date(2025, 2, 1))["logins_7d"].to_list()
[2]
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from sqlglot import exp
from tqdm.auto import tqdm

from healthscore.core import sqlgen
from healthscore.core.sqlgen import ISO_TIME, OFFSET, Inputs, col, lit
from healthscore.errors import HealthscoreError
from healthscore.io.engines import DuckDBSession, SparkBuildSession, read_table, scan_table
from healthscore.io.runners import spark_session
from healthscore.io.stream import split_by_account
from healthscore.spec.metrics import Grid, MetricSpec, OutcomeRule, load_spec

__all__ = ["build_snapshots", "build_outcomes", "build", "Build", "BuildError", "BuildWarning", "ENGINES"]

ENGINES = ("polars", "duckdb", "spark")
MAX_EXAMPLES = 5
# the polars and DuckDB engines build the metrics of a larger log one part of the accounts at a time
EVENTS_PER_PART = 10_000_000
_FAR = dt.date(9999, 12, 31)


class BuildError(HealthscoreError, ValueError):
    """Raw data that cannot be built into snapshots; lists every problem with examples and the fix."""


class BuildWarning(UserWarning):
    """Raw data that was built, with something the user should know (counts and examples)."""


@dataclass
class Build:
    """What a build produced: ``snapshots`` and outcome ``events``, with notes on what was left out."""

    snapshots: pl.DataFrame
    events: pl.DataFrame
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return (
            f"Build({self.snapshots.height} snapshots of {self.snapshots['account_id'].n_unique()} accounts, "
            f"{self.events.height} outcome events)"
        )


# ============================================================================ public API
def build_snapshots(
    spec: MetricSpec | str | os.PathLike[str],
    *,
    engine: str = "polars",
    grid: str | Sequence[dt.date] | None = None,
    today: dt.date | None = None,
    progress: bool = False,
    session: Any = None,
    memory_limit: str | None = None,
) -> pl.DataFrame:
    """Snapshots (``account_id, as_of`` and one column per metric), sorted by account and date;
    ``session`` and ``memory_limit`` as for :func:`build`."""
    return build(
        spec, engine=engine, grid=grid, today=today, progress=progress, session=session, memory_limit=memory_limit
    ).snapshots


def build_outcomes(
    spec: MetricSpec | str | os.PathLike[str], *, engine: str = "polars", today: dt.date | None = None
) -> pl.DataFrame:
    """Outcome events (``account_id, date, event``) derived by the rules of ``[outcomes]``."""
    return build(spec, engine=engine, today=today, metrics=False).events


def build(
    spec: MetricSpec | str | os.PathLike[str],
    *,
    engine: str = "polars",
    grid: str | Sequence[dt.date] | None = None,
    today: dt.date | None = None,
    progress: bool = False,
    metrics: bool = True,
    session: Any = None,
    memory_limit: str | None = None,
) -> Build:
    """Snapshots and outcome events in one pass over the raw data.

    ``memory_limit`` (``engine="duckdb"``, e.g. ``"4GB"``) caps DuckDB's memory: beyond it DuckDB
    spills to a temporary folder, so a log larger than memory still builds (default: DuckDB's own,
    80% of the machine's memory).

    ``engine="spark"`` reads the event log with Spark and runs the DuckDB engine's SQL as Spark
    SQL on ``session`` (default: a local session, see :func:`healthscore.io.runners.spark_session`);
    subscriptions and accounts, one row per account or contract, are read in process.
    """
    if not isinstance(spec, MetricSpec):
        spec = load_spec(spec)
    if grid is not None:
        spec = spec.with_grid(grid)
    if engine not in ENGINES:
        raise BuildError(f"engine {engine!r} is not known; use one of {', '.join(ENGINES)}")
    if memory_limit is not None and engine != "duckdb":
        raise BuildError(f"a memory limit applies to the duckdb engine only; drop it for engine {engine!r}")
    if memory_limit is not None and not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", memory_limit.strip(), re.I):
        raise BuildError(f"memory limit {memory_limit!r} is not a size; write it like 4GB or 512MB")
    today = today or dt.date.today()
    bar = tqdm(total=5, desc=f"build ({engine})", unit="step", disable=not progress, leave=False)
    runner: _Engine
    if engine == "polars":
        runner = _PolarsEngine(spec)
    elif engine == "duckdb":
        runner = _DuckDBEngine(spec, memory_limit=memory_limit)
    else:
        runner = _SparkEngine(spec, session)
    try:
        bar.set_postfix_str("subscriptions and accounts")
        subs = _read_subscriptions(spec, today)
        accounts = _read_accounts(spec)
        universe = _universe(subs, accounts)
        bar.update()
        bar.set_postfix_str("checking events")
        notes = runner.stage(today, universe) if spec.source.events is not None else []
        bar.update()
        bar.set_postfix_str("outcomes and grid")
        firsts = runner.account_days() if spec.source.events is not None else _empty_days()
        activity = runner.activity_days() if any(r.source == "activity" for r in spec.outcomes) else _empty_days()
        starts = _starts(firsts, subs, universe)
        observed = _observed_until(firsts, subs, accounts, today)
        events, dead = _outcomes(spec, subs, accounts, activity, observed)
        bar.update()
        grid_rows = _grid(spec, starts, dead, spec.grid.end or observed)
        bar.update()
        bar.set_postfix_str(f"{len(spec.metrics)} metrics on {grid_rows.height:,} rows")
        runner.step = bar.set_postfix_str
        snaps = runner.metrics(grid_rows, subs, accounts, starts) if metrics else grid_rows
        bar.update()
    finally:
        runner.close()
        bar.close()
    for note in notes:
        warnings.warn(note, BuildWarning, stacklevel=2)
    return Build(snaps, events, notes)


# ============================================================================ problems
@dataclass
class _Problem:
    source: str
    column: str | None
    message: str
    fix: str
    examples: list[str] = field(default_factory=list)

    def render(self) -> str:
        where = f"{self.source}: column '{self.column}'" if self.column else f"{self.source}"
        ex = f" (e.g. {'; '.join(self.examples[:MAX_EXAMPLES])})" if self.examples else ""
        return f"{where}: {self.message}{ex}. {self.fix}"


def _raise(problems: list[_Problem]) -> None:
    if problems:
        n = len(problems)
        raise BuildError(
            f"{n} problem{'s' * (n != 1)} in the raw data; nothing was written:\n"
            + "\n".join(f"  - {p.render()}" for p in problems)
        )


def _show(value: Any) -> str:
    return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else repr(value)


def _examples(frame: pl.DataFrame, columns: Sequence[str]) -> list[str]:
    return [
        ", ".join(f"{c}={_show(r[c])}" for c in columns if c in r)
        for r in frame.head(MAX_EXAMPLES).iter_rows(named=True)
    ]


# ============================================================================ subscriptions, accounts
def _as_date(frame: pl.DataFrame, name: str, source: str, problems: list[_Problem], *, required: bool) -> pl.DataFrame:
    dtype = frame.schema[name]
    if dtype == pl.String:
        parsed = pl.col(name).str.strip_chars().str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
        bad = frame.filter(pl.col(name).is_not_null() & (pl.col(name).str.strip_chars() != "") & parsed.is_null())
        if bad.height:
            problems.append(
                _Problem(
                    source,
                    name,
                    f"{bad.height} value(s) are not dates",
                    "Write dates as YYYY-MM-DD.",
                    _examples(bad, ["account_id", name]),
                )
            )
        frame = frame.with_columns(parsed.alias(name))
    elif isinstance(dtype, pl.Datetime):
        frame = frame.with_columns(pl.col(name).dt.date())
    elif dtype != pl.Date and dtype != pl.Null:
        problems.append(_Problem(source, name, f"has type {dtype}, not dates", "Store it as a date (YYYY-MM-DD)."))
        return frame
    if dtype == pl.Null:
        frame = frame.with_columns(pl.col(name).cast(pl.Date))
    if required:
        missing = frame.filter(pl.col(name).is_null())
        if missing.height:
            problems.append(
                _Problem(
                    source,
                    name,
                    f"{missing.height} row(s) have no {name}",
                    f"Every row needs a {name} date; fill them in or drop the rows.",
                    _examples(missing, ["account_id"]),
                )
            )
    return frame


def _rename(
    frame: pl.DataFrame, spec: MetricSpec, roles: Sequence[str], source: str, required: Sequence[str]
) -> pl.DataFrame:
    # a mapped name is looked for first; a table that already uses the logical name keeps it
    mapping = {spec.source.col(r): r for r in roles if spec.source.col(r) in frame.columns}
    mapping.update({r: r for r in roles if r in frame.columns and r not in mapping.values()})
    missing = [r for r in required if r not in mapping.values()]
    if missing:
        raise BuildError(
            f"{source}: column(s) {', '.join(repr(spec.source.col(r)) for r in missing)} missing "
            f"(columns present: {', '.join(frame.columns[:15])}). Rename them, or map them in "
            "[source.columns] of the spec or with --map " + ", ".join(f"{r}=<column>" for r in missing)
        )
    return frame.rename(mapping)


def _read_subscriptions(spec: MetricSpec, today: dt.date) -> pl.DataFrame | None:
    ref = spec.source.subscriptions
    if ref is None:
        return None
    source = str(ref)
    raw = read_table(ref.path, ref.table, wanted="subscriptions")
    need_mrr = any(m.column == "mrr" and m.kind == "subscription" for m in spec.metrics) or any(
        r.source == "mrr" for r in spec.outcomes
    )
    need_seats = any((m.kind == "subscription" and m.column == "seats") or m.per == "seat" for m in spec.metrics)
    required = ["account_id", "start"] + (["mrr"] if need_mrr else []) + (["seats"] if need_seats else [])
    subs = _rename(raw, spec, ["account_id", "start", "end", "mrr", "seats"], source, required)
    if "end" not in subs.columns:
        subs = subs.with_columns(pl.lit(None, pl.Date).alias("end"))
    problems: list[_Problem] = []
    subs = subs.with_columns(pl.col("account_id").cast(pl.String))
    nulls = subs.filter(pl.col("account_id").is_null())
    if nulls.height:
        problems.append(
            _Problem(
                source,
                spec.source.col("account_id"),
                f"{nulls.height} row(s) have no account",
                "Fill in the account of every subscription.",
            )
        )
    subs = _as_date(subs, "start", source, problems, required=True)
    subs = _as_date(subs, "end", source, problems, required=False)
    for c in ("mrr", "seats"):
        if c not in subs.columns:
            subs = subs.with_columns(pl.lit(None, pl.Float64).alias(c))
            continue
        as_num = pl.col(c).cast(pl.Float64, strict=False)
        bad = subs.filter(pl.col(c).is_not_null() & as_num.is_null())
        if bad.height:
            problems.append(
                _Problem(
                    source,
                    spec.source.col(c),
                    f"{bad.height} value(s) are not numbers",
                    "Write plain numbers (no currency signs).",
                    _examples(bad, ["account_id", c]),
                )
            )
        subs = subs.with_columns(as_num.alias(c))
        neg = subs.filter((pl.col(c) < 0) | pl.col(c).is_nan() | pl.col(c).is_infinite())
        if neg.height:
            problems.append(
                _Problem(
                    source,
                    spec.source.col(c),
                    f"{neg.height} negative or non-finite value(s)",
                    f"{c} cannot be negative; correct the export.",
                    _examples(neg, ["account_id", c]),
                )
            )
        if (c == "mrr" and need_mrr) or (c == "seats" and need_seats):
            empty = subs.filter(pl.col(c).is_null())
            if empty.height:
                problems.append(
                    _Problem(
                        source,
                        spec.source.col(c),
                        f"{empty.height} subscription(s) without {c}",
                        f"Fill in {c} (0 for a free plan).",
                        _examples(empty, ["account_id", "start"]),
                    )
                )
    _raise(problems)
    backwards = subs.filter(pl.col("end") < pl.col("start"))
    if backwards.height:
        problems.append(
            _Problem(
                source,
                spec.source.col("end"),
                f"{backwards.height} subscription(s) end before they start",
                "Swap or correct start and end (end is the first day without the subscription).",
                _examples(backwards, ["account_id", "start", "end"]),
            )
        )
    future = subs.filter(pl.col("start") > today)
    if future.height:
        problems.append(
            _Problem(
                source,
                spec.source.col("start"),
                f"{future.height} subscription(s) start after today ({today})",
                "Remove planned subscriptions or fix the dates.",
                _examples(future, ["account_id", "start"]),
            )
        )
    ordered = subs.sort("account_id", "start", "end", nulls_last=True)
    prev_end = pl.col("end").fill_null(_FAR).shift(1).over("account_id", order_by=["start", "end"])
    overlap = ordered.with_columns(prev_end.alias("__prev_end")).filter(pl.col("start") < pl.col("__prev_end"))
    if overlap.height:
        problems.append(
            _Problem(
                source,
                None,
                f"{overlap.height} subscription(s) overlap an earlier one of the same account",
                "Keep one row per period: end the earlier subscription on the day "
                "the next one starts (a change of plan is a new row), or add their MRR into one row.",
                _examples(overlap, ["account_id", "start", "end"]),
            )
        )
    _raise(problems)
    return ordered.select("account_id", "start", "end", "mrr", "seats")


def _read_accounts(spec: MetricSpec) -> pl.DataFrame | None:
    ref = spec.source.accounts
    if ref is None:
        return None
    source = str(ref)
    raw = read_table(ref.path, ref.table, wanted="accounts")
    accounts = _rename(raw, spec, ["account_id", "changed_at"], source, ["account_id"])
    if "changed_at" not in accounts.columns and "as_of" in accounts.columns and "changed_at" not in spec.source.columns:
        accounts = accounts.rename({"as_of": "changed_at"})
    accounts = accounts.with_columns(pl.col("account_id").cast(pl.String))
    problems: list[_Problem] = []
    fields = [m for m in spec.metrics if m.kind == "field"]
    for m in fields:
        if m.column not in accounts.columns:
            problems.append(
                _Problem(
                    source,
                    m.column,
                    f"is missing (metric {m.name})",
                    f"Columns present: {', '.join(accounts.columns[:15])}; fix field = in the spec.",
                )
            )
    has_time = "changed_at" in accounts.columns
    if has_time:
        accounts = _as_date(accounts, "changed_at", source, problems, required=True)
        dup = accounts.filter(pl.struct("account_id", "changed_at").is_duplicated())
        if dup.height:
            problems.append(
                _Problem(
                    source,
                    "changed_at",
                    f"{dup.height} rows share an account and change date",
                    "Keep one row per account and day (the state at the end of that day).",
                    _examples(dup, ["account_id", "changed_at"]),
                )
            )
    else:
        dup = accounts.filter(pl.col("account_id").is_duplicated())
        if dup.height:
            problems.append(
                _Problem(
                    source,
                    "account_id",
                    f"{dup.height} rows repeat an account and there is no changed_at column",
                    "Add a changed_at (or as_of) column with the date each "
                    "row became true, or keep one row per account.",
                    _examples(dup, ["account_id"]),
                )
            )
        for m in fields:
            if not m.static:
                problems.append(
                    _Problem(
                        source,
                        m.column,
                        f"cannot be read point in time (metric {m.name}): the table has no changed_at or as_of column",
                        "Add a changed_at column with the "
                        "date each value became true, or set static = true on the metric if the "
                        "field never changes (e.g. industry).",
                    )
                )
    for r in spec.outcomes:
        if r.source == "accounts" and r.column not in accounts.columns:
            problems.append(
                _Problem(
                    source, r.column, f"is missing (outcome {r.name})", "Fix field = in [outcomes." + r.name + "]."
                )
            )
    _raise(problems)
    return accounts


def _universe(subs: pl.DataFrame | None, accounts: pl.DataFrame | None) -> pl.DataFrame | None:
    if subs is not None:
        return subs.select("account_id").unique().sort("account_id")
    if accounts is not None:
        return accounts.select("account_id").unique().sort("account_id")
    return None


# ============================================================================ engines
class _Engine:
    n_events = 0  # rows of the event log, counted by the checks in stage()

    def __init__(self, spec: MetricSpec) -> None:
        self.spec = spec
        self.step: Callable[[str], object] = lambda text: None  # what the progress bar says

    def _parts(self, grid: pl.DataFrame) -> list[pl.Series]:
        """The grid's accounts (sorted) in parts of about :data:`EVENTS_PER_PART` events, or one part;
        each account's metrics read its own events only, so a part can be built on its own."""
        ids = grid.get_column("account_id").unique().sort()
        n_parts = min(ids.len(), -(-self.n_events // EVENTS_PER_PART))
        if self.spec.source.events is None or n_parts < 2:
            return [ids]
        size = -(-ids.len() // n_parts)
        return [ids.slice(k, size) for k in range(0, ids.len(), size)]

    def stage(self, today: dt.date, universe: pl.DataFrame | None) -> list[str]:
        raise NotImplementedError

    def account_days(self) -> pl.DataFrame:
        raise NotImplementedError

    def activity_days(self) -> pl.DataFrame:
        raise NotImplementedError

    def metrics(
        self, grid: pl.DataFrame, subs: pl.DataFrame | None, accounts: pl.DataFrame | None, starts: pl.DataFrame
    ) -> pl.DataFrame:
        raise NotImplementedError

    def close(self) -> None:
        pass

    # -- shared pieces of the checks
    def _negative_events(self) -> tuple[bool, list[str]]:
        """(all events, event names) whose values must not be negative."""
        ms = [m for m in self.spec.metrics if m.kind == "agg" and m.agg in ("sum", "mean") and not m.allow_negative]
        return any(m.event is None for m in ms), sorted({m.event for m in ms if m.event is not None})

    def _required_physical(self, columns: Sequence[str]) -> None:
        src = self.spec.source
        need = ["account_id", "time", "event"]
        aggs = {m.agg for m in self.spec.metrics if m.kind == "agg"}
        if aggs & {"sum", "mean", "last"}:
            need.append("value")
        if "distinct_users" in aggs or any(m.per == "active_user" for m in self.spec.metrics):
            need.append("user_id")
        missing = [r for r in need if src.col(r) not in columns]
        if missing:
            raise BuildError(
                f"{src.events}: column(s) {', '.join(repr(src.col(r)) for r in missing)} missing "
                f"(columns present: {', '.join(list(columns)[:15])}). Rename them in the file, or map "
                "them in [source.columns] or with --map " + ", ".join(f"{r}=<column>" for r in missing)
            )

    def _report(self, counts: dict[str, int], examples: dict[str, list[str]], today: dt.date) -> list[str]:
        src = self.spec.source
        name = str(src.events)
        problems: list[_Problem] = []
        texts = {
            "bad_account": (
                src.col("account_id"),
                "event(s) without an account",
                "Fill in the account of every event.",
            ),
            "bad_event": (src.col("event"), "event(s) without an event type", "Fill in the event type."),
            "bad_time": (
                src.col("time"),
                "time(s) missing or not readable",
                "Write times as ISO 8601 (2025-03-02 14:05:00, optionally with an offset such as +01:00).",
            ),
            "mixed_zone": (
                src.col("time"),
                "time(s) are ambiguous: some have a time-zone offset and some do not",
                "Export every time with its offset, or every time in one local zone without offsets.",
            ),
            "future": (
                src.col("time"),
                f"event(s) dated after today ({today})",
                "Fix the clock or time zone of the export, or remove planned events.",
            ),
            "bad_value": (src.col("value"), "value(s) are not numbers", "Write plain numbers or leave the cell empty."),
            "nonfinite": (src.col("value"), "value(s) are infinite or NaN", "Replace them or leave the cell empty."),
            "negative": (
                src.col("value"),
                "negative value(s) in events summed or averaged as amounts",
                "Correct the export, or set allow_negative = true on the metric if negative values are real (refunds).",
            ),
        }
        for key, n in counts.items():
            if key in texts and n:
                column, msg, fix = texts[key]
                problems.append(_Problem(name, column, f"{n:,} {msg}", fix, examples.get(key, [])))
        _raise(problems)
        notes = []
        if counts.get("unknown"):
            other = self.spec.source.subscriptions or self.spec.source.accounts
            notes.append(
                f"{name}: {counts['unknown']:,} event(s) of accounts not in {other} were left out "
                f"(e.g. {'; '.join(examples.get('unknown', []))}). Add those accounts to {other}, or remove "
                "their events."
            )
        return notes


_EXAMPLE_COLS = ["account_id", "time_text", "event", "value_text"]


class _PolarsEngine(_Engine):
    """Lazy polars: cumulative sums per account and day, read at each as_of with as-of joins."""

    def stage(self, today: dt.date, universe: pl.DataFrame | None) -> list[str]:
        src = self.spec.source
        ref = src.events
        assert ref is not None
        raw = scan_table(ref.path, ref.table, wanted="events")
        schema = raw.collect_schema()
        self._required_physical(schema.names())
        t = pl.col(src.col("time"))
        dtype = schema[src.col("time")]
        mixed = pl.lit(False)
        if dtype == pl.String:
            ok = t.str.contains(ISO_TIME)
            aware = t.str.contains(OFFSET)
            n_aware, n_naive = raw.select(aware.sum().alias("a"), (ok & ~aware).sum().alias("n")).collect().row(0)
            s = t.str.replace("T", " ", literal=True).str.replace(r"Z$", "+00:00")
            s = pl.when(s.str.len_chars() == 10).then(s + " 00:00:00").otherwise(s)
            s = s.str.replace(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2})($|[+-])", "${1}:00${2}")
            if n_aware and n_naive:
                mixed = ok & ~aware
            if n_aware and not n_naive:
                s = s.str.replace(r"([+-]\d{2})$", "${1}:00").str.replace(r"([+-]\d{2})(\d{2})$", "${1}:${2}")
                parsed = (
                    s.str.to_datetime("%Y-%m-%d %H:%M:%S%.f%:z", strict=False, time_unit="us", time_zone="UTC")
                    .dt.convert_time_zone(src.timezone)
                    .dt.replace_time_zone(None)
                )
            else:
                parsed = s.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="us")
            ts: pl.Expr = pl.when(ok).then(parsed)
        elif isinstance(dtype, pl.Datetime):
            ts = t.dt.convert_time_zone(src.timezone).dt.replace_time_zone(None) if dtype.time_zone else t
            ts = ts.dt.cast_time_unit("us")
        elif dtype == pl.Date:
            ts = t.cast(pl.Datetime("us"))
        else:
            raise BuildError(
                f"{ref}: column '{src.col('time')}' has type {dtype}; store event times as ISO text "
                "or as a timestamp column"
            )
        vname, uname = src.col("value"), src.col("user_id")
        value = pl.col(vname) if vname in schema.names() else pl.lit(None, pl.Float64)
        user = pl.col(uname).cast(pl.String) if uname in schema.names() else pl.lit(None, pl.String)
        staged = raw.select(
            pl.col(src.col("account_id")).cast(pl.String).alias("account_id"),
            ts.alias("ts"),
            pl.col(src.col("event")).cast(pl.String).alias("event"),
            value.cast(pl.Float64, strict=False).alias("value"),
            user.alias("user_id"),
            t.cast(pl.String).alias("time_text"),
            value.cast(pl.String).alias("value_text"),
            mixed.alias("__mixed"),
        ).with_columns(pl.col("ts").dt.date().alias("date"))
        neg_all, neg_events = self._negative_events()
        v = pl.col("value")
        flags = {
            "bad_account": pl.col("account_id").is_null(),
            "bad_event": pl.col("event").is_null(),
            "bad_time": pl.col("ts").is_null() & ~pl.col("__mixed"),
            "mixed_zone": pl.col("__mixed"),
            "future": pl.col("date") > today,
            "bad_value": (pl.col("value_text").is_not_null() & v.is_null())
            if vname in schema.names() and schema[vname] == pl.String
            else pl.lit(False),
            "nonfinite": v.is_nan() | v.is_infinite(),
            "negative": (v < 0) & (pl.lit(True) if neg_all else pl.col("event").is_in(neg_events)),
        }
        if universe is not None:
            flags["unknown"] = pl.col("account_id").is_not_null() & ~pl.col("account_id").is_in(
                universe["account_id"].implode()
            )
        # one streaming pass over the whole log: its memory follows a batch, not the file
        counts = (
            staged.select(pl.len().alias("__events"), *[f.fill_null(False).sum().alias(k) for k, f in flags.items()])
            .collect(engine="streaming")
            .row(0, named=True)
        )
        self.n_events = counts.pop("__events")
        examples = {
            k: _examples(
                staged.filter(flags[k].fill_null(False)).head(MAX_EXAMPLES).collect(engine="streaming"), _EXAMPLE_COLS
            )
            for k, n in counts.items()
            if n
        }
        notes = self._report(counts, examples, today)
        clean = staged.drop("time_text", "value_text", "__mixed")
        if universe is not None:
            clean = clean.filter(pl.col("account_id").is_in(universe["account_id"].implode()))
        self.events = clean
        return notes

    def account_days(self) -> pl.DataFrame:
        return (
            self.events.group_by("account_id")
            .agg(pl.col("date").min().alias("first"), pl.col("date").max().alias("last"))
            .collect(engine="streaming")
            .sort("account_id")
        )

    def activity_days(self) -> pl.DataFrame:
        return self.events.select("account_id", "date").unique().collect(engine="streaming").sort("account_id", "date")

    def metrics(
        self, grid: pl.DataFrame, subs: pl.DataFrame | None, accounts: pl.DataFrame | None, starts: pl.DataFrame
    ) -> pl.DataFrame:
        """The metrics of all accounts at once, or, for a log of more than :data:`EVENTS_PER_PART`
        events, of one part of the accounts at a time: the log is split by account in one pass,
        so memory follows a part, not the log."""
        events = self.events if self.spec.source.events else None
        parts = self._parts(grid)
        if events is None or len(parts) < 2:
            return polars_metrics(self.spec, events, grid, subs, accounts, starts)
        done = []
        with tempfile.TemporaryDirectory(prefix="healthscore-build-") as folder:
            self.step(f"splitting {self.n_events:,} events into {len(parts)} parts of accounts")
            scans = split_by_account(events, [p.to_list() for p in parts], Path(folder))
            for k, (part, scan) in enumerate(zip(parts, scans, strict=True)):
                self.step(f"metrics of accounts, part {k + 1} of {len(parts)}")
                mine = pl.col("account_id").is_in(part.implode())
                done.append(polars_metrics(self.spec, scan, grid.filter(mine), subs, accounts, starts.filter(mine)))
        return pl.concat(done).sort("account_id", "as_of")


class _DuckDBEngine(_Engine):
    """DuckDB: the sqlgen query over the files read in place."""

    dialect = "duckdb"

    def __init__(self, spec: MetricSpec, *, memory_limit: str | None = None) -> None:
        super().__init__(spec)
        self.session = DuckDBSession(memory_limit=memory_limit)

    def close(self) -> None:
        self.session.close()

    def stage(self, today: dt.date, universe: pl.DataFrame | None) -> list[str]:
        src = self.spec.source
        ref = src.events
        assert ref is not None
        s = self.session
        raw = s.relation(ref.path, ref.table, wanted="events")
        physical = s.schema(raw)
        self._required_physical(list(physical))
        ttype = physical[src.col("time")].upper()
        t = col(src.col("time"))
        mixed: exp.Expression = exp.false()
        if ttype == "VARCHAR":
            ok = exp.RegexpLike(this=t, expression=lit(ISO_TIME))
            aware = exp.RegexpLike(this=t, expression=lit(OFFSET))
            probe = exp.select(
                exp.Sum(this=sqlgen.case(aware, lit(1), lit(0))).as_("a"),
                exp.Sum(this=sqlgen.case(exp.And(this=ok, expression=exp.Not(this=aware)), lit(1), lit(0))).as_("n"),
            ).from_(raw)
            n_aware, n_naive = (x or 0 for x in s.run(probe).row(0))
            kind = "text_aware" if n_aware and not n_naive else "text_naive"
            if n_aware and n_naive:
                mixed = exp.And(this=ok, expression=exp.Not(this=aware))
        elif ttype.startswith("TIMESTAMP WITH TIME ZONE") or ttype == "TIMESTAMPTZ":
            kind = "aware"
        elif ttype.startswith("TIMESTAMP"):
            kind = "naive"
        elif ttype == "DATE":
            kind = "date"
        else:
            raise BuildError(
                f"{ref}: column '{src.col('time')}' has type {ttype}; store event times as ISO text "
                "or as a timestamp column"
            )
        staged = sqlgen.stage_events(raw, self.spec, physical, time_kind=kind, extra={"__mixed": mixed})
        neg_all, neg_events = self._negative_events()
        v = col("value")

        def is_null(e: exp.Expression) -> exp.Expression:
            return exp.Is(this=e, expression=exp.null())

        flags: dict[str, exp.Expression] = {
            "bad_account": is_null(col("account_id")),
            "bad_event": is_null(col("event")),
            "bad_time": exp.And(this=is_null(col("ts")), expression=exp.Not(this=col("__mixed"))),
            "mixed_zone": col("__mixed"),
            "future": exp.GT(
                this=col("date"), expression=exp.Cast(this=lit(today.isoformat()), to=exp.DataType.build("DATE"))
            ),
            "bad_value": exp.And(this=exp.Not(this=is_null(col("value_text"))), expression=is_null(v))
            if physical.get(src.col("value"), "").upper() == "VARCHAR"
            else exp.false(),
            # infinity spelled as a cast, which every dialect reads (Spark has no isinf)
            "nonfinite": exp.Or(
                this=exp.IsNan(this=v),
                expression=exp.In(
                    this=v, expressions=[sqlgen._cast(lit(x), "DOUBLE") for x in ("Infinity", "-Infinity")]
                ),
            ),
            "negative": exp.And(
                this=exp.LT(this=v, expression=lit(0)),
                expression=exp.true()
                if neg_all
                else (
                    exp.In(this=col("event"), expressions=[lit(e) for e in neg_events]) if neg_events else exp.false()
                ),
            ),
        }
        known = None
        if universe is not None:
            known = s.register(universe, "universe")
            in_universe = exp.In(this=col("account_id"), query=exp.select(col("account_id")).from_(known).subquery())
            flags["unknown"] = exp.And(
                this=exp.Not(this=is_null(col("account_id"))), expression=exp.Not(this=in_universe)
            )
        counts_q = exp.select(
            exp.Count(this=exp.Star()).as_("n_events"),
            *[exp.Sum(this=sqlgen.case(f, lit(1), lit(0))).as_(k) for k, f in flags.items()],
        ).from_(staged.subquery("staged_events"))
        counts = {k: int(v or 0) for k, v in s.run(counts_q).row(0, named=True).items()}
        self.n_events = counts.pop("n_events")
        examples = {
            k: _examples(
                s.run(
                    exp.select(*[col(c) for c in _EXAMPLE_COLS])
                    .from_(staged.subquery("staged_events"))
                    .where(flags[k])
                    .limit(MAX_EXAMPLES)
                ),
                _EXAMPLE_COLS,
            )
            for k, n in counts.items()
            if n
        }
        notes = self._report(counts, examples, today)
        clean = exp.select(*[col(c) for c in ("account_id", "ts", "date", "event", "value", "user_id")]).from_(
            staged.subquery("staged_events")
        )
        if known is not None:
            clean = clean.where(
                exp.In(this=col("account_id"), query=exp.select(col("account_id")).from_(known).subquery())
            )
        self.events = clean.subquery("events")
        return notes

    def account_days(self) -> pl.DataFrame:
        q = (
            exp.select(col("account_id"), exp.Min(this=col("date")).as_("first"), exp.Max(this=col("date")).as_("last"))
            .from_(self.events)
            .group_by(col("account_id"))
        )
        return self.session.run(q).sort("account_id")

    def activity_days(self) -> pl.DataFrame:
        q = exp.select(col("account_id"), col("date")).distinct().from_(self.events)
        return self.session.run(q).sort("account_id", "date")

    def metrics(
        self, grid: pl.DataFrame, subs: pl.DataFrame | None, accounts: pl.DataFrame | None, starts: pl.DataFrame
    ) -> pl.DataFrame:
        s = self.session
        events = (
            self.events
            if self.spec.source.events
            else s.register(
                pl.DataFrame(
                    schema={
                        "account_id": pl.String,
                        "ts": pl.Datetime("us"),
                        "date": pl.Date,
                        "event": pl.String,
                        "value": pl.Float64,
                        "user_id": pl.String,
                    }
                ),
                "events",
            )
        )
        subs_t = s.register(subs, "subscriptions") if subs is not None else None
        accounts_t = s.register(accounts, "accounts") if accounts is not None else None
        # DuckDB builds a large log one part of the accounts at a time, from a copy of the log split
        # by account in one pass, so its memory follows a part; Spark spreads the work itself
        parts = self._parts(grid) if self.dialect == "duckdb" else [grid.get_column("account_id").unique()]
        own_events: list[exp.Expression] = [events]
        if len(parts) > 1:
            self.step(f"splitting {self.n_events:,} events into {len(parts)} parts of accounts")
            index = pl.concat(
                [p.to_frame().with_columns(pl.lit(k, pl.Int64).alias("__part")) for k, p in enumerate(parts)]
            )
            keyed = (
                exp.select("*").from_(events).join(s.register(index, "parts"), using=["account_id"], join_type="inner")
            )
            columns = ["account_id", "ts", "date", "event", "value", "user_id"]
            own_events = s.split(keyed, "__part", len(parts), columns)
        done = []
        for k, part in enumerate(parts):
            own, own_grid, own_starts = own_events[0], grid, starts
            if len(parts) > 1:
                self.step(f"metrics of accounts, part {k + 1} of {len(parts)}")
                mine = pl.col("account_id").is_in(part.implode())
                own, own_grid, own_starts = own_events[k], grid.filter(mine), starts.filter(mine)
            inputs = Inputs(
                events=own,
                grid=s.register(own_grid.select("account_id", "as_of"), "grid"),
                subscriptions=subs_t,
                accounts=accounts_t,
                starts=s.register(own_starts, "starts"),
            )
            done.append(s.run(sqlgen.snapshot_query(self.spec, inputs, dialect=self.dialect)))
        return _conform(pl.concat(done), self.spec, grid)


class _SparkEngine(_DuckDBEngine):
    """Spark: the DuckDB engine's trees rendered as Spark SQL over files Spark reads itself."""

    dialect = "spark"

    def __init__(self, spec: MetricSpec, session: Any = None) -> None:
        _Engine.__init__(self, spec)
        if spec.source.events is not None and _kind_of(spec.source.events.path) not in ("parquet", "csv"):
            raise BuildError(
                f"{spec.source.events}: the Spark engine reads Parquet or CSV event logs; export the "
                "table to Parquet or use --engine duckdb"
            )
        self.session = SparkBuildSession(session if session is not None else spark_session())  # type: ignore[assignment]


def _kind_of(path: Path) -> str:
    return {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "csv", ".txt": "csv"}.get(
        path.suffix.lower(), "other"
    )


def _conform(frame: pl.DataFrame, spec: MetricSpec, grid: pl.DataFrame) -> pl.DataFrame:
    """Same column types from both engines."""
    casts: list[pl.Expr] = [pl.col("account_id").cast(pl.String), pl.col("as_of").cast(pl.Date)]
    for m in spec.metrics:
        if (m.kind == "agg" and m.agg in ("count", "active_days", "distinct_users")) or m.kind in (
            "days_since",
            "tenure",
        ):
            casts.append(pl.col(m.name).cast(pl.Int64))
        elif m.kind != "field":
            casts.append(pl.col(m.name).cast(pl.Float64))
    return (
        frame.with_columns(casts)
        .select("account_id", "as_of", *[m.name for m in spec.metrics])
        .sort("account_id", "as_of")
    )


# ============================================================================ polars metrics
def _asof(grid: pl.LazyFrame, table: pl.LazyFrame, shift: int, columns: Sequence[str], suffix: str) -> pl.LazyFrame:
    """For each grid row, the latest ``table`` row (by ``date``) on or before ``as_of - shift`` days."""
    left = grid.with_columns((pl.col("as_of") - pl.duration(days=shift)).alias("__k")).sort("__k")
    right = table.select("account_id", pl.col("date").alias("__k"), *columns).sort("__k")
    joined = left.join_asof(right, on="__k", by="account_id", strategy="backward", check_sortedness=False)
    return joined.select("account_id", "as_of", *[pl.col(c).alias(f"{c}{suffix}") for c in columns])


def _filter(event: str | None) -> pl.Expr:
    return pl.lit(True) if event is None else pl.col("event") == event


def polars_metrics(
    spec: MetricSpec,
    events: pl.LazyFrame | None,
    grid: pl.DataFrame,
    subs: pl.DataFrame | None,
    accounts: pl.DataFrame | None,
    starts: pl.DataFrame,
) -> pl.DataFrame:
    """The polars engine's metric columns for the grid rows (see the module docstring for the meaning)."""
    g = grid.lazy().select("account_id", "as_of")
    parts: list[pl.LazyFrame] = []
    exprs: dict[str, pl.Expr] = {}
    prev: dict[str, pl.Expr] = {}
    changed = {m.inputs[0] for m in spec.metrics if m.kind == "change"}
    daily: dict[str | None, pl.LazyFrame] = {}
    ev = (
        events
        if events is not None
        else pl.LazyFrame(
            schema={
                "account_id": pl.String,
                "ts": pl.Datetime("us"),
                "date": pl.Date,
                "event": pl.String,
                "value": pl.Float64,
                "user_id": pl.String,
            }
        )
    )

    def daily_for(event: str | None) -> pl.LazyFrame:
        if event not in daily:
            daily[event] = (
                ev.filter(_filter(event))
                .group_by("account_id", "date")
                .agg(
                    pl.len().cast(pl.Int64).alias("n"),
                    pl.col("value").sum().alias("s"),
                    pl.col("value").count().cast(pl.Int64).alias("nv"),
                )
                .with_columns(
                    pl.col("n").cum_sum().over("account_id", order_by="date").alias("cn"),
                    pl.col("s").cum_sum().over("account_id", order_by="date").alias("cs"),
                    pl.col("nv").cum_sum().over("account_id", order_by="date").alias("cnv"),
                    (pl.col("n") > 0).cast(pl.Int64).cum_sum().over("account_id", order_by="date").alias("cd"),
                    pl.col("date").alias("last_date"),
                )
            )
        return daily[event]

    k = 0
    groups = sqlgen.event_groups(spec)
    if groups:
        # one pass over the events: per account and day, the totals of every event filter side by side
        filters = sorted({event for event, _ in groups}, key=lambda e: (e is not None, e or ""))
        slot = {event: i for i, event in enumerate(filters)}
        kinds = {(slot[event], m.agg) for (event, _), ms in groups.items() for m in ms}
        flags: list[pl.Expr] = []
        sums: list[pl.Expr] = []
        cums: list[pl.Expr] = []
        for i, event in enumerate(filters):
            hit = _filter(event)
            flags.append(hit.cast(pl.Int64).alias(f"__n{i}"))
            sums.append(pl.col(f"__n{i}").sum().alias(f"n{i}"))
            cums.append(pl.col(f"n{i}").cum_sum().alias(f"cn{i}"))
            if (i, "active_days") in kinds:
                cums.append((pl.col(f"n{i}") > 0).cast(pl.Int64).cum_sum().alias(f"cd{i}"))
            if (i, "sum") in kinds or (i, "mean") in kinds:
                flags.append(pl.when(hit).then(pl.col("value")).alias(f"__v{i}"))
                sums.append(pl.col(f"__v{i}").sum().alias(f"s{i}"))
                cums.append(pl.col(f"s{i}").cum_sum().alias(f"cs{i}"))
            if (i, "mean") in kinds:
                sums.append(pl.col(f"__v{i}").count().cast(pl.Int64).alias(f"nv{i}"))
                cums.append(pl.col(f"nv{i}").cum_sum().alias(f"cnv{i}"))
        wide = (
            ev.select("account_id", "date", *flags)
            .group_by("account_id", "date")
            .agg(sums)
            .select("account_id", "date", *[c.over("account_id", order_by="date") for c in cums])
        )
        cum_cols = [c.meta.output_name() for c in cums]
        shifts = sorted(
            {0}
            | {w for _, w in groups if w}
            | {2 * w for (_, w), ms in groups.items() if w and any(m.name in changed for m in ms)}
        )
        # the cumulative totals at as_of - shift, for every shift, joined onto the grid rows in turn;
        # eager frames, each sorted once by date (as_of - shift keeps the order of as_of)
        table = wide.collect().sort("date")
        frame_w = grid.select("account_id", "as_of").sort("as_of")
        for sh in shifts:
            right = table.select(
                "account_id", pl.col("date").alias("__k"), *[pl.col(c).alias(f"{c}@{sh}") for c in cum_cols]
            )
            frame_w = (
                frame_w.with_columns((pl.col("as_of") - pl.duration(days=sh)).alias("__k"))
                .join_asof(right, on="__k", by="account_id", strategy="backward", check_sortedness=False)
                .drop("__k")
            )
        parts.append(frame_w.lazy())

        for (event, window), metrics in groups.items():
            i = slot[event]

            def at(c: str, sh: int, i: int = i) -> pl.Expr:
                return pl.col(f"{c}{i}@{sh}").fill_null(0)

            def window_value(m: Any, lo: int | None, hi: int) -> pl.Expr:
                def diff(c: str) -> pl.Expr:
                    return at(c, hi) - (at(c, lo) if lo is not None else 0)

                if m.agg == "count":
                    return diff("cn")
                if m.agg == "active_days":
                    return diff("cd")
                if m.agg == "sum":
                    return diff("cs").cast(pl.Float64)
                return pl.when(diff("cnv") > 0).then(diff("cs") / diff("cnv"))

            for m in metrics:
                exprs[m.name] = window_value(m, window, 0)
                if m.name in changed and window:
                    prev[m.name] = window_value(m, 2 * window, window)

    # distinct users: merged presence intervals per user, +1 at the start, -1 at the end
    user_windows: dict[tuple[str | None, int | None], list[str]] = {}
    for m in spec.metrics:
        if m.kind == "agg" and m.agg == "distinct_users":
            user_windows.setdefault((m.event, m.window_days), []).append(m.name)
        if m.kind == "per" and m.per == "active_user":
            user_windows.setdefault((None, m.window_days), []).append(f"__users_{m.name}")
    for (event, window), names in user_windows.items():
        k += 1
        u = ev.filter(_filter(event) & pl.col("user_id").is_not_null()).select("account_id", "user_id", "date").unique()
        if window is None:
            deltas = u.group_by("account_id", "user_id").agg(pl.col("date").min()).with_columns(pl.lit(1).alias("dl"))
        else:
            gap = (
                pl.col("date") - pl.col("date").shift(1).over(["account_id", "user_id"], order_by="date")
            ).dt.total_days()
            spells = (
                u.with_columns((gap.is_null() | (gap >= window)).cast(pl.Int64).alias("__new"))
                .with_columns(
                    pl.col("__new").cum_sum().over(["account_id", "user_id"], order_by="date").alias("__spell")
                )
                .group_by("account_id", "user_id", "__spell")
                .agg(pl.col("date").min().alias("a"), pl.col("date").max().alias("b"))
            )
            deltas = pl.concat(
                [
                    spells.select("account_id", pl.col("a").alias("date"), pl.lit(1).alias("dl")),
                    spells.select(
                        "account_id", (pl.col("b") + pl.duration(days=window)).alias("date"), pl.lit(-1).alias("dl")
                    ),
                ]
            )
        present = (
            deltas.group_by("account_id", "date")
            .agg(pl.col("dl").sum())
            .with_columns(pl.col("dl").cum_sum().over("account_id", order_by="date").alias("users"))
        )
        real = [n for n in names if not n.startswith("__users_")]
        parts.append(_asof(g, present, 0, ["users"], f"__{k}_0"))
        if any(n in changed for n in real) and window:
            parts.append(_asof(g, present, window, ["users"], f"__{k}_{window}"))
        for n in names:
            exprs[n] = pl.col(f"users__{k}_0").fill_null(0).cast(pl.Int64)
            if n in changed and window:
                prev[n] = pl.col(f"users__{k}_{window}").fill_null(0).cast(pl.Int64)

    for m in spec.metrics:
        if m.kind == "agg" and m.agg == "last":
            k += 1
            per_time = (
                ev.filter(_filter(m.event) & pl.col("value").is_not_null())
                .group_by("account_id", "ts")
                .agg(pl.col("value").max(), pl.col("date").first())
            )
            per_day = (
                per_time.group_by("account_id", "date")
                .agg(pl.col("value").sort_by("ts").last().alias("v"))
                .with_columns(pl.col("date").alias("d"))
            )
            parts.append(_asof(g, per_day, 0, ["v", "d"], f"__{k}"))
            found = pl.col(f"v__{k}")
            if m.window_days is not None:
                found = pl.when(pl.col(f"d__{k}") > pl.col("as_of") - pl.duration(days=m.window_days)).then(found)
            exprs[m.name] = found
        elif m.kind == "days_since":
            k += 1
            parts.append(_asof(g, daily_for(m.event), 0, ["last_date"], f"__{k}"))
            exprs[m.name] = (pl.col("as_of") - pl.col(f"last_date__{k}")).dt.total_days().cast(pl.Int64)

    if any(m.kind == "tenure" for m in spec.metrics):
        parts.append(
            g.join(starts.lazy().select("account_id", pl.col("start").alias("__start")), on="account_id", how="left")
        )
    sub_cols = sorted(
        {m.column for m in spec.metrics if m.kind == "subscription" and m.column is not None}
        | ({"seats"} if any(m.per == "seat" for m in spec.metrics) else set())
    )
    if sub_cols and subs is not None:
        active = pl.col("end").is_null() | (pl.col("end") > pl.col("as_of"))
        parts.append(
            g.join(subs.lazy(), on="account_id", how="inner")
            .filter(pl.col("start") <= pl.col("as_of"))
            .group_by("account_id", "as_of")
            .agg(
                [
                    pl.when(active).then(pl.col(c).cast(pl.Float64)).otherwise(0.0).sum().alias(f"__sub_{c}")
                    for c in sub_cols
                ]
            )
        )
    for m in spec.metrics:
        if m.kind == "field" and accounts is not None:
            k += 1
            a = accounts.lazy().filter(pl.col(m.column or "").is_not_null())
            if m.static:
                parts.append(
                    g.join(a.select("account_id", pl.col(m.column or "").alias(f"__f{k}")), on="account_id", how="left")
                )
            else:
                parts.append(
                    _asof(
                        g,
                        a.select("account_id", pl.col("changed_at").alias("date"), pl.col(m.column or "").alias("fv")),
                        0,
                        ["fv"],
                        f"__f{k}",
                    )
                )
            exprs[m.name] = pl.col(f"fv__f{k}") if not m.static else pl.col(f"__f{k}")

    frame = g
    for p in parts:
        frame = frame.join(p, on=["account_id", "as_of"], how="left")

    def div(a: pl.Expr, b: pl.Expr) -> pl.Expr:
        b = b.cast(pl.Float64)
        return pl.when(b != 0).then(a.cast(pl.Float64) / b)

    out: list[pl.Expr] = []
    for m in spec.metrics:
        if m.kind == "tenure":
            e = (pl.col("as_of") - pl.col("__start")).dt.total_days().cast(pl.Int64)
        elif m.kind == "subscription":
            e = pl.col(f"__sub_{m.column}")
        elif m.kind == "ratio":
            e = div(exprs[m.inputs[0]], exprs[m.inputs[1]])
        elif m.kind == "per":
            e = div(exprs[m.inputs[0]], pl.col("__sub_seats") if m.per == "seat" else exprs[f"__users_{m.name}"])
        elif m.kind == "change":
            cur, base = exprs[m.inputs[0]].cast(pl.Float64), prev[m.inputs[0]].cast(pl.Float64)
            e = div(cur - base, base)
            if m.min_base is not None:
                e = pl.when(base >= m.min_base).then(e)
        else:
            e = exprs[m.name]
        exprs[m.name] = e
        out.append(e.alias(m.name))
    result = frame.select("account_id", "as_of", *out).collect()
    return _conform(result, spec, grid)


# ============================================================================ outcomes and grid
def _empty_days() -> pl.DataFrame:
    return pl.DataFrame(schema={"account_id": pl.String, "first": pl.Date, "last": pl.Date, "date": pl.Date})


def _starts(firsts: pl.DataFrame, subs: pl.DataFrame | None, universe: pl.DataFrame | None) -> pl.DataFrame:
    parts = [firsts.select("account_id", pl.col("first").alias("start"))] if "first" in firsts.columns else []
    if subs is not None:
        parts.append(subs.select("account_id", "start"))
    frame = pl.concat(parts) if parts else pl.DataFrame(schema={"account_id": pl.String, "start": pl.Date})
    frame = frame.drop_nulls().group_by("account_id").agg(pl.col("start").min())
    if universe is not None:
        frame = frame.join(universe, on="account_id", how="semi")
    return frame.sort("account_id")


def _observed_until(
    firsts: pl.DataFrame, subs: pl.DataFrame | None, accounts: pl.DataFrame | None, today: dt.date
) -> dt.date:
    """The last day the raw data speaks for: the latest event, subscription start or past end, or CRM change."""
    dates: list[dt.date | None] = []
    if firsts.height and "last" in firsts.columns:
        dates.append(firsts["last"].max())  # type: ignore[arg-type]
    if subs is not None and subs.height:
        dates.append(subs["start"].max())  # type: ignore[arg-type]
        dates.append(subs.filter(pl.col("end") <= today)["end"].max())  # type: ignore[arg-type]
    if accounts is not None and "changed_at" in accounts.columns and accounts.height:
        dates.append(accounts["changed_at"].max())  # type: ignore[arg-type]
    known = [d for d in dates if d is not None]
    return min(max(known), today) if known else today


def _spells(subs: pl.DataFrame, gap: int) -> pl.DataFrame:
    """Subscriptions merged into active spells (at most ``gap`` days between them)."""
    ordered = subs.sort("account_id", "start")
    run_end = pl.col("end").fill_null(_FAR).cum_max().shift(1).over("account_id", order_by="start")
    spells = (
        ordered.with_columns(run_end.alias("__run_end"))
        .with_columns(
            (pl.col("__run_end").is_null() | ((pl.col("start") - pl.col("__run_end")).dt.total_days() > gap)).alias(
                "__new"
            )
        )
        .with_columns(pl.col("__new").cast(pl.Int64).cum_sum().over("account_id", order_by="start").alias("spell"))
    )
    return spells.drop("__run_end", "__new")


def _outcomes(
    spec: MetricSpec,
    subs: pl.DataFrame | None,
    accounts: pl.DataFrame | None,
    activity: pl.DataFrame,
    observed: dt.date,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Outcome events and the dead periods of terminal outcomes (account_id, date, until)."""
    events: list[pl.DataFrame] = []
    dead: list[pl.DataFrame] = []
    schema = {"account_id": pl.String, "date": pl.Date, "until": pl.Date}
    for rule in spec.outcomes:
        found = _derive(rule, subs, accounts, activity, observed).select(
            pl.col("account_id").cast(pl.String), pl.col("date").cast(pl.Date), pl.col("until").cast(pl.Date)
        )
        found = found.filter(pl.col("date") <= observed)
        events.append(found.select("account_id", "date", pl.lit(rule.name).alias("event")))
        if rule.outcome.terminal:
            dead.append(found)
    ev = (
        pl.concat(events).unique()
        if events
        else pl.DataFrame(schema={"account_id": pl.String, "date": pl.Date, "event": pl.String})
    )
    return (ev.sort("account_id", "date", "event"), pl.concat(dead) if dead else pl.DataFrame(schema=schema))


def _derive(
    rule: OutcomeRule,
    subs: pl.DataFrame | None,
    accounts: pl.DataFrame | None,
    activity: pl.DataFrame,
    observed: dt.date,
) -> pl.DataFrame:
    if rule.source == "subscriptions":
        assert subs is not None
        spells = (
            _spells(subs, rule.gap_days)
            .group_by("account_id", "spell")
            .agg(pl.col("start").min(), pl.col("end").fill_null(_FAR).max().alias("end"))
        )
        nxt = pl.col("start").shift(-1).over("account_id", order_by="spell")
        out = spells.with_columns(nxt.alias("until")).filter(
            (pl.col("end") < _FAR)
            & (pl.col("until").is_not_null() | (pl.col("end") + pl.duration(days=rule.gap_days) <= observed))
        )
        return out.select("account_id", pl.col("end").alias("date"), "until")
    if rule.source == "mrr":
        assert subs is not None and rule.threshold is not None
        prev = pl.col("mrr").shift(1).over(["account_id", "spell"], order_by="start")
        rel = pl.when(prev > 0).then(pl.col("mrr") / prev - 1)
        hit = rel > rule.threshold if rule.threshold > 0 else rel < rule.threshold
        out = _spells(subs, rule.gap_days).with_columns(hit.alias("__hit"))
        return out.filter(pl.col("__hit").fill_null(False)).select(
            "account_id", pl.col("start").alias("date"), pl.lit(None, pl.Date).alias("until")
        )
    if rule.source == "activity":
        assert rule.days is not None
        nxt = pl.col("date").shift(-1).over("account_id", order_by="date")
        days = pl.duration(days=rule.days)
        out = activity.with_columns(nxt.alias("until")).filter(
            ((pl.col("until") - pl.col("date")).dt.total_days() > rule.days)
            | (pl.col("until").is_null() & (pl.col("date") + days <= observed))
        )
        return out.select("account_id", (pl.col("date") + days).alias("date"), "until")
    assert accounts is not None and rule.column is not None
    c = pl.col(rule.column)
    dtype = accounts.schema[rule.column]
    if rule.value is None:
        if dtype == pl.String:
            fixed = accounts.select("account_id", rule.column)
            problems: list[_Problem] = []
            fixed = _as_date(fixed, rule.column, "accounts", problems, required=False)
            _raise(problems)
        elif dtype in (pl.Date,) or isinstance(dtype, pl.Datetime):
            fixed = accounts.select("account_id", c.cast(pl.Date))
        else:
            raise BuildError(
                f"accounts: column '{rule.column}' (outcome {rule.name}) holds {dtype}, not dates; "
                'set value = "<the value that means it happened>" in [outcomes.' + rule.name + "]"
            )
        return (
            fixed.drop_nulls()
            .unique()
            .select("account_id", pl.col(rule.column).alias("date"), pl.lit(None, pl.Date).alias("until"))
        )
    if "changed_at" not in accounts.columns:
        raise BuildError(
            f"accounts: outcome {rule.name} looks for {rule.column} = {rule.value!r}, but the table has "
            "no changed_at column to date it; add one, or give a churn-date column as field"
        )
    is_val = (c.cast(pl.String) == str(rule.value)).fill_null(False)
    before = is_val.shift(1).over("account_id", order_by="changed_at").fill_null(False)
    return accounts.filter(is_val & ~before).select(
        "account_id", pl.col("changed_at").alias("date"), pl.lit(None, pl.Date).alias("until")
    )


def _grid(spec: MetricSpec, starts: pl.DataFrame, dead: pl.DataFrame, end: dt.date) -> pl.DataFrame:
    """The (account_id, as_of) rows: each account from its start, outside dead periods, up to ``end``."""
    g: Grid = spec.grid
    empty = pl.DataFrame(schema={"account_id": pl.String, "as_of": pl.Date})
    if starts.height == 0:
        return empty
    first = g.start or starts["start"].min()
    assert isinstance(first, dt.date)
    if g.every == "anniversary":
        rows = (
            starts.with_columns(pl.date_ranges(pl.col("start"), pl.lit(end), interval="1mo").alias("as_of"))
            .explode("as_of")
            .filter(pl.col("as_of") > pl.col("start"))
            .drop_nulls("as_of")
        )
        if g.start:
            rows = rows.filter(pl.col("as_of") >= g.start)
        rows = rows.select("account_id", "as_of")
    else:
        if g.dates:
            dates = [d for d in g.dates if (g.start is None or d >= g.start) and (g.end is None or d <= g.end)]
        else:
            every = g.every or "1w"
            n, unit = int(every.rstrip("dwmo")), every.lstrip("0123456789")
            if unit == "w" and g.start is None:
                first = first + dt.timedelta(days=(7 - first.weekday()) % 7)
            if unit == "mo" and g.start is None and first.day != 1:
                first = (first.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
            dates = pl.date_range(first, end, interval=f"{n}{unit}", eager=True).to_list() if first <= end else []
        if not dates:
            return empty
        rows = (
            starts.join(pl.DataFrame({"as_of": dates}, schema={"as_of": pl.Date}), how="cross")
            .filter(pl.col("as_of") >= pl.col("start"))
            .select("account_id", "as_of")
        )
    if dead.height:
        gone = (
            rows.join(dead, on="account_id", how="inner")
            .filter(
                (pl.col("as_of") >= pl.col("date")) & (pl.col("until").is_null() | (pl.col("as_of") < pl.col("until")))
            )
            .select("account_id", "as_of")
            .unique()
        )
        rows = rows.join(gone, on=["account_id", "as_of"], how="anti")
    return rows.unique().sort("account_id", "as_of")
