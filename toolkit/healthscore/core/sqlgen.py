"""SQL for the snapshot builder, as sqlglot expression trees (never pasted strings).

:func:`snapshot_query` turns a :class:`~healthscore.spec.metrics.MetricSpec` into one ``WITH``
query: one CTE per step (daily pre-aggregates per event filter, one windowed join per event
filter and window, subscriptions, CRM fields), each with a comment naming the metrics it feeds,
and a final ``SELECT`` of ``account_id, as_of`` and the metrics in spec order. The inputs are
relations passed in (the normalised events, the observation grid, subscriptions, accounts), so
the same tree renders for DuckDB, Spark SQL or a warehouse dialect: ``query.sql(dialect)``.

Meaning (the polars engine and the tests hold the same): a trailing window of N days at T covers
event days d with ``T - N < d <= T``; count, sum, active_days and distinct_users are 0 when
nothing happened in the window, mean and last are null then; a ratio, per-seat or per-user rate
is null when its denominator is 0 or null; a change is ``(cur - prev) / prev`` against the window
ending N days earlier, null when prev is 0, null or below ``min_base``.

>>> from healthscore.spec.metrics import parse_spec
>>> spec = parse_spec({"source": {"events": "e.parquet"}, "metrics": [
...     {"name": "logins_7d", "event": "login", "agg": "count", "window": "7d"}]})
>>> "logins_7d" in snapshot_query(spec).sql("duckdb")
True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlglot import exp

from healthscore.spec.metrics import Metric, MetricSpec

__all__ = ["snapshot_query", "stage_events", "ISO_TIME", "OFFSET", "Inputs", "event_groups"]

# Accepted text timestamps (both engines): ISO date, or date and time with an optional offset.
ISO_TIME = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$"
OFFSET = r"[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)$"


def col(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table=table, quoted=True)


def lit(value: object) -> exp.Expression:
    if value is None:
        return exp.null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, (int, float)):
        return exp.Literal.number(value)
    return exp.Literal.string(str(value))


def days_before(date: exp.Expression, n: int) -> exp.Expression:
    """``date - n days`` in the target dialect."""
    return exp.DateSub(this=date, expression=exp.Literal.number(n), unit=exp.var("DAY"))


def case(cond: exp.Expression, then: exp.Expression, default: exp.Expression | None = None) -> exp.Case:
    c = exp.Case().when(cond, then)
    return c.else_(default) if default is not None else c


def _cast(e: exp.Expression, to: str) -> exp.Cast:
    return exp.Cast(this=e, to=exp.DataType.build(to))


def _try_cast(e: exp.Expression, to: str) -> exp.TryCast:
    return exp.TryCast(this=e, to=exp.DataType.build(to))


def _div(a: exp.Expression, b: exp.Expression) -> exp.Expression:
    """a / b as a double, null when b is 0 or null."""
    return exp.Div(
        this=_cast(a, "DOUBLE"), expression=exp.Nullif(this=_cast(b, "DOUBLE"), expression=exp.Literal.number(0))
    )


# ------------------------------------------------------------------------ staging
def stage_events(
    raw: exp.Expression,
    spec: MetricSpec,
    physical: Iterable[str],
    *,
    time_kind: str,
    extra: dict[str, exp.Expression] | None = None,
) -> exp.Select:
    """Map a raw events relation to the logical columns (account_id, ts, date, event, value, user_id)
    plus the raw text of time and value for error messages, and any ``extra`` columns of the raw row.

    ``time_kind`` says how the time column is stored: ``naive`` (timestamp without zone, taken as
    local wall-clock time), ``aware`` (with zone: converted to ``source.timezone``), ``date``,
    ``text_naive`` or ``text_aware`` (ISO text, with or without an offset).
    """
    src = spec.source
    have = set(physical)
    t = col(src.col("time"))
    zone = lit(src.timezone)
    if time_kind in ("naive", "date"):
        ts: exp.Expression = _cast(t, "TIMESTAMP")
    elif time_kind == "aware":
        ts = exp.AtTimeZone(this=t, zone=zone)
    elif time_kind == "text_naive":
        ts = case(exp.RegexpLike(this=t, expression=lit(ISO_TIME)), _try_cast(t, "TIMESTAMP"))
    else:
        ts = exp.AtTimeZone(
            this=case(exp.RegexpLike(this=t, expression=lit(ISO_TIME)), _try_cast(t, "TIMESTAMPTZ")), zone=zone
        )
    value = col(src.col("value")) if src.col("value") in have else exp.null()
    user = col(src.col("user_id")) if src.col("user_id") in have else exp.null()
    inner = exp.select(
        _cast(col(src.col("account_id")), "VARCHAR").as_("account_id"),
        ts.as_("ts"),
        _cast(col(src.col("event")), "VARCHAR").as_("event"),
        _try_cast(value, "DOUBLE").as_("value"),
        _cast(user, "VARCHAR").as_("user_id"),
        _cast(t, "VARCHAR").as_("time_text"),
        _cast(value, "VARCHAR").as_("value_text"),
        *[e.as_(name) for name, e in (extra or {}).items()],
    ).from_(raw)
    return exp.select("*", _cast(col("ts"), "DATE").as_("date")).from_(inner.subquery("staged"))


# ------------------------------------------------------------------------ grouping of metrics
@dataclass(frozen=True)
class Inputs:
    """The relations the snapshot query reads (table expressions or names)."""

    events: exp.Expression
    grid: exp.Expression
    subscriptions: exp.Expression | None = None
    accounts: exp.Expression | None = None
    starts: exp.Expression | None = None


def event_groups(spec: MetricSpec) -> dict[tuple[str | None, int | None], list[Metric]]:
    """Windowed additive aggregates grouped by (event filter, window): one join serves each group."""
    groups: dict[tuple[str | None, int | None], list[Metric]] = {}
    for m in spec.metrics:
        if m.kind == "agg" and m.agg in ("count", "sum", "mean", "active_days"):
            groups.setdefault((m.event, m.window_days), []).append(m)
    return groups


def _changed(spec: MetricSpec) -> set[str]:
    return {m.inputs[0] for m in spec.metrics if m.kind == "change"}


def _event_filter(event: str | None, alias: str) -> list[exp.Expression]:
    return [] if event is None else [exp.EQ(this=col("event", alias), expression=lit(event))]


def _and(*conds: exp.Expression) -> exp.Expression:
    out = conds[0]
    for c in conds[1:]:
        out = exp.And(this=out, expression=c)
    return out


def snapshot_query(spec: MetricSpec, inputs: Inputs | None = None, *, dialect: str = "duckdb") -> exp.Select:
    """The whole snapshot build as one sqlglot ``WITH ... SELECT`` tree.

    ``inputs`` default to tables named ``events``, ``grid``, ``subscriptions``, ``accounts`` and
    ``account_starts`` (account_id, start). ``dialect`` is the one the tree is meant for; the
    tree itself is dialect-neutral sqlglot and renders with ``.sql(dialect)``.
    """
    del dialect  # the tree is the same for every dialect; kept so callers state their target
    inputs = inputs or Inputs(
        exp.to_table("events"),
        exp.to_table("grid"),
        exp.to_table("subscriptions"),
        exp.to_table("accounts"),
        exp.to_table("account_starts"),
    )
    ctes: list[tuple[str, exp.Select]] = []
    value_of: dict[str, exp.Expression] = {}  # metric -> expression in the final select
    prev_of: dict[str, exp.Expression] = {}  # metric -> previous-window value (for change_of)
    joins: list[str] = []
    changed = _changed(spec)
    gkey = [col("account_id", "g"), col("as_of", "g")]
    as_of = col("as_of", "g")

    ctes.append(("grid_rows", exp.select(col("account_id"), col("as_of")).from_(inputs.grid)))

    def windowed(source: str, window: int | None, span: int | None, extra: list[exp.Expression]) -> exp.Select:
        on: list[exp.Expression] = [
            exp.EQ(this=col("account_id", "d"), expression=col("account_id", "g")),
            exp.LTE(this=col("date", "d"), expression=as_of),
            *extra,
        ]
        if span is not None:
            on.append(exp.GT(this=col("date", "d"), expression=days_before(as_of, span)))
        return (
            exp.select(*gkey)
            .from_(exp.alias_(exp.to_table("grid_rows"), "g"))
            .join(exp.alias_(exp.to_table(source), "d"), on=_and(*on), join_type="left")
            .group_by(*gkey)
        )

    def in_window(window: int | None, offset: int = 0) -> exp.Expression:
        upper = exp.LTE(this=col("date", "d"), expression=days_before(as_of, offset) if offset else as_of)
        if window is None:
            return upper
        return _and(exp.GT(this=col("date", "d"), expression=days_before(as_of, window + offset)), upper)

    # daily pre-aggregates, one per event filter
    daily: dict[str | None, str] = {}

    def daily_for(event: str | None, names: list[str]) -> str:
        if event not in daily:
            name = f"daily_{len(daily) + 1}"
            q = (
                exp.select(
                    col("account_id"),
                    col("date"),
                    exp.Count(this=exp.Star()).as_("n"),
                    exp.Sum(this=col("value")).as_("s"),
                    exp.Count(this=col("value")).as_("nv"),
                )
                .from_(inputs.events)
                .group_by(col("account_id"), col("date"))
            )
            if event is not None:
                q = q.where(exp.EQ(this=col("event"), expression=lit(event)))
            q.add_comments(
                [f"events per account and day, event = {event!r}" if event else "events per account and day, any event"]
            )
            ctes.append((name, q))
            daily[event] = name
        return daily[event]

    for i, ((event, window), metrics) in enumerate(event_groups(spec).items(), 1):
        src = daily_for(event, [m.name for m in metrics])
        name = f"win_{i}"
        need_prev = any(m.name in changed for m in metrics)
        span = None if window is None else (2 * window if need_prev else window)
        q = windowed(src, window, span, [])
        cur = in_window(window)
        prev = in_window(window, window) if need_prev and window else None
        for m in metrics:
            for tag, cond in (("", cur), ("__prev", prev)):
                if cond is None:
                    continue
                if m.agg == "count":
                    e: exp.Expression = exp.Coalesce(this=exp.Sum(this=case(cond, col("n", "d"))), expressions=[lit(0)])
                elif m.agg == "active_days":
                    e = exp.Count(this=case(cond, lit(1)))
                elif m.agg == "sum":
                    e = exp.Coalesce(this=exp.Sum(this=case(cond, col("s", "d"))), expressions=[lit(0.0)])
                else:  # mean
                    e = _div(exp.Sum(this=case(cond, col("s", "d"))), exp.Sum(this=case(cond, col("nv", "d"))))
                q = q.select(e.as_(m.name + tag))
        q.add_comments([f"window {window or 'all'} days, event = {event!r}: " + ", ".join(m.name for m in metrics)])
        ctes.append((name, q))
        joins.append(name)
        for m in metrics:
            value_of[m.name] = col(m.name, name)
            if m.name in changed:
                prev_of[m.name] = col(m.name + "__prev", name)

    # distinct users: per (event filter, window); per active_user divides by users of any event
    user_windows: dict[tuple[str | None, int | None], list[str]] = {}
    for m in spec.metrics:
        if m.kind == "agg" and m.agg == "distinct_users":
            user_windows.setdefault((m.event, m.window_days), []).append(m.name)
        if m.kind == "per" and m.per == "active_user":
            user_windows.setdefault((None, m.window_days), []).append(f"__users_{m.name}")
    users_src: dict[str | None, str] = {}
    for i, ((event, window), names) in enumerate(user_windows.items(), 1):
        if event not in users_src:
            uname = f"users_{len(users_src) + 1}"
            q = (
                exp.select(col("account_id"), col("date"), col("user_id"))
                .distinct()
                .from_(inputs.events)
                .where(
                    _and(
                        exp.Not(this=exp.Is(this=col("user_id"), expression=exp.null())),
                        *([] if event is None else [exp.EQ(this=col("event"), expression=lit(event))]),
                    )
                )
            )
            q.add_comments([f"users active per account and day, event = {event!r}"])
            ctes.append((uname, q))
            users_src[event] = uname
        real = [n for n in names if not n.startswith("__users_")]
        need_prev = any(n in changed for n in real)
        span = None if window is None else (2 * window if need_prev else window)
        q = windowed(users_src[event], window, span, [])
        name = f"usr_{i}"
        for tag, cond in (
            ("", in_window(window)),
            ("__prev", in_window(window, window) if need_prev and window else None),
        ):
            if cond is not None:
                q = q.select(
                    exp.Count(this=exp.Distinct(expressions=[case(cond, col("user_id", "d"))])).as_("users" + tag)
                )
        q.add_comments(
            [
                f"distinct users, window {window or 'all'} days, event = {event!r}: "
                + ", ".join(n.removeprefix("__users_") for n in names)
            ]
        )
        ctes.append((name, q))
        joins.append(name)
        for n in names:
            value_of[n] = col("users", name)
            if n in changed:
                prev_of[n] = col("users__prev", name)

    # last value: one value per account, event filter and time (the largest), then the latest in the window
    for i, m in enumerate([m for m in spec.metrics if m.kind == "agg" and m.agg == "last"], 1):
        sname = f"lastsrc_{i}"
        conds: list[exp.Expression] = [exp.Not(this=exp.Is(this=col("value"), expression=exp.null()))]
        if m.event is not None:
            conds.append(exp.EQ(this=col("event"), expression=lit(m.event)))
        q = (
            exp.select(
                col("account_id"),
                col("ts"),
                exp.Max(this=col("date")).as_("date"),
                exp.Max(this=col("value")).as_("value"),
            )
            .from_(inputs.events)
            .where(_and(*conds))
            .group_by(col("account_id"), col("ts"))
        )
        q.add_comments([f"{m.name}: one value per account and time (the largest)"])
        ctes.append((sname, q))
        name = f"last_{i}"
        q = windowed(sname, m.window_days, m.window_days, []).select(
            exp.ArgMax(this=col("value", "d"), expression=col("ts", "d")).as_(m.name)
        )
        q.add_comments([f"{m.name}: latest value, window {m.window_days or 'all'} days"])
        ctes.append((name, q))
        joins.append(name)
        value_of[m.name] = col(m.name, name)

    # days since an event
    for i, m in enumerate([m for m in spec.metrics if m.kind == "days_since"], 1):
        src = daily_for(m.event, [m.name])
        name = f"since_{i}"
        q = windowed(src, None, None, []).select(
            exp.DateDiff(this=as_of, expression=exp.Max(this=col("date", "d")), unit=exp.var("DAY")).as_(m.name)
        )
        q.add_comments([f"{m.name}: days since the latest {m.event!r} on or before as_of"])
        ctes.append((name, q))
        joins.append(name)
        value_of[m.name] = col(m.name, name)

    # tenure
    tenure = [m for m in spec.metrics if m.kind == "tenure"]
    if tenure:
        starts = inputs.starts if inputs.starts is not None else exp.to_table("account_starts")
        q = (
            exp.select(*gkey, exp.DateDiff(this=as_of, expression=col("start", "s"), unit=exp.var("DAY")).as_("tenure"))
            .from_(exp.alias_(exp.to_table("grid_rows"), "g"))
            .join(
                exp.alias_(starts, "s"),
                on=exp.EQ(this=col("account_id", "s"), expression=col("account_id", "g")),
                join_type="left",
            )
        )
        q.add_comments(["days since the account's start: " + ", ".join(m.name for m in tenure)])
        ctes.append(("tenure", q))
        joins.append("tenure")
        for m in tenure:
            value_of[m.name] = col("tenure", "tenure")

    # subscriptions at as_of
    sub_cols = sorted(
        {m.column for m in spec.metrics if m.kind == "subscription" and m.column is not None}
        | ({"seats"} if any(m.per == "seat" for m in spec.metrics) else set())
    )
    if sub_cols:
        subs = inputs.subscriptions if inputs.subscriptions is not None else exp.to_table("subscriptions")
        active = exp.Or(
            this=exp.Is(this=col("end", "s"), expression=exp.null()),
            expression=exp.GT(this=col("end", "s"), expression=as_of),
        )
        q = (
            exp.select(*gkey)
            .from_(exp.alias_(exp.to_table("grid_rows"), "g"))
            .join(
                exp.alias_(subs, "s"),
                on=_and(
                    exp.EQ(this=col("account_id", "s"), expression=col("account_id", "g")),
                    exp.LTE(this=col("start", "s"), expression=as_of),
                ),
                join_type="left",
            )
            .group_by(*gkey)
        )
        for c in sub_cols:
            q = q.select(exp.Sum(this=case(active, _cast(col(c, "s"), "DOUBLE"), lit(0.0))).as_(c))
        q.add_comments(
            [
                "subscriptions active at as_of (start <= as_of < end): "
                + ", ".join(m.name for m in spec.metrics if m.kind == "subscription" or m.per == "seat")
            ]
        )
        ctes.append(("subs_at", q))
        joins.append("subs_at")
        for m in spec.metrics:
            if m.kind == "subscription":
                value_of[m.name] = col(m.column or "mrr", "subs_at")
        value_of["__seats"] = col("seats", "subs_at") if "seats" in sub_cols else exp.null()

    # CRM fields, point in time
    for i, m in enumerate([m for m in spec.metrics if m.kind == "field"], 1):
        accounts = inputs.accounts if inputs.accounts is not None else exp.to_table("accounts")
        name = f"field_{i}"
        on = [
            exp.EQ(this=col("account_id", "a"), expression=col("account_id", "g")),
            exp.Not(this=exp.Is(this=col(m.column or "", "a"), expression=exp.null())),
        ]
        if m.static:
            pick: exp.Expression = exp.Max(this=col(m.column or "", "a"))
        else:
            on.append(exp.LTE(this=col("changed_at", "a"), expression=as_of))
            pick = exp.ArgMax(this=col(m.column or "", "a"), expression=col("changed_at", "a"))
        q = (
            exp.select(*gkey, pick.as_(m.name))
            .from_(exp.alias_(exp.to_table("grid_rows"), "g"))
            .join(exp.alias_(accounts, "a"), on=_and(*on), join_type="left")
            .group_by(*gkey)
        )
        q.add_comments(
            [
                f"{m.name}: "
                + (
                    "the account's value of " + repr(m.column)
                    if m.static
                    else f"latest non-empty {m.column!r} changed on or before as_of"
                )
            ]
        )
        ctes.append((name, q))
        joins.append(name)
        value_of[m.name] = col(m.name, name)

    # final select: derived metrics from the columns above
    final: list[exp.Expr] = [col("account_id", "g"), col("as_of", "g")]  # aliases are exp.Expr in sqlglot's hints
    for m in spec.metrics:
        if m.kind == "ratio":
            e = _div(value_of[m.inputs[0]], value_of[m.inputs[1]])
        elif m.kind == "per":
            den = value_of["__seats"] if m.per == "seat" else value_of[f"__users_{m.name}"]
            e = _div(value_of[m.inputs[0]], den)
        elif m.kind == "change":
            cur, prev = value_of[m.inputs[0]], prev_of[m.inputs[0]]
            e = exp.Div(
                this=exp.Paren(this=exp.Sub(this=_cast(cur, "DOUBLE"), expression=_cast(prev, "DOUBLE"))),
                expression=exp.Nullif(this=_cast(prev, "DOUBLE"), expression=lit(0)),
            )
            if m.min_base is not None:
                e = case(exp.GTE(this=prev, expression=lit(m.min_base)), e)
        else:
            e = value_of[m.name]
            if (
                m.kind in ("agg",)
                and m.agg in ("count", "active_days", "distinct_users")
                or m.kind in ("days_since", "tenure")
            ):
                e = _cast(e, "BIGINT")
            elif m.kind in ("agg", "subscription"):
                e = _cast(e, "DOUBLE")
        value_of.setdefault(m.name, e)
        final.append(e.as_(m.name) if m.kind in ("ratio", "per", "change") else e.as_(m.name))
    query = exp.select(*final).from_(exp.alias_(exp.to_table("grid_rows"), "g"))
    for name in joins:
        query = query.join(
            exp.alias_(exp.to_table(name), name),
            on=_and(
                exp.EQ(this=col("account_id", name), expression=col("account_id", "g")),
                exp.EQ(this=col("as_of", name), expression=col("as_of", "g")),
            ),
            join_type="left",
        )
    query = query.order_by(col("account_id", "g"), col("as_of", "g"))
    for name, q in ctes:
        query = query.with_(name, as_=q)
    return query
