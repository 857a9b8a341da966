"""The score model as SQL: one query, built as a sqlglot expression tree, for any warehouse or Spark.

:func:`score_query` turns a :class:`~healthscore.spec.model.ScoreModel` into a query over a snapshot
table that returns the same rows as :func:`healthscore.core.scoring.score` (sub-scores, category
scores, score, band, coverage, null reason, score changes, drivers, driver changes, variant and the
model stamp), one readable CTE per step. :func:`score_sql` prints it for one dialect and
:func:`score_with` runs it on DuckDB, Spark or PostgreSQL.

Agreement with the polars engine to the last bit is designed in, not hoped for:

* every sum is written in the order the polars engine adds (``core.scoring._add``, left to right);
* every number is written as a double literal (``0.3e0``): a plain ``0.3`` is a DECIMAL in DuckDB,
  Spark and PostgreSQL, and DECIMAL division rounds differently from floating point;
* piecewise-linear maps use the same slope and the same formula per segment as the polars engine;
* windows (trend, score changes) partition by account and order by ``as_of``, like ``over()``.

>>> import healthscore as hs
>>> model = hs.load_model(hs.resources.sample_model())
>>> sql = score_sql(model, dialect="duckdb")
>>> "WITH prepared AS" in sql and f"model health {model.hash}" in sql
True
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import sqlglot
from sqlglot import exp

from healthscore.core import calibration, scoring
from healthscore.core.scoring import _EPS, _OUTPUT_SCALARS, AUDIT_COLUMNS, KEYS
from healthscore.errors import HealthscoreError
from healthscore.io import files, runners
from healthscore.io.stream import scan_snapshots
from healthscore.spec.model import Metric, ModelError, ScoreModel

__all__ = ["DIALECTS", "SqlScoreError", "score_query", "score_sql", "score_with", "score_file_with", "output_columns"]

DIALECTS = ("duckdb", "spark", "postgres", "snowflake", "bigquery")
_DOUBLE_MAX = "1.7976931348623157e308"
_CHAIN_MAX = 12  # the polars engine's limit for when/then chains (beyond: numpy formulas)
_DERIVED = ("cat_", "drv_", "drvchg_", "override_")


class SqlScoreError(HealthscoreError):
    """A model, dialect or setting that the SQL scorer cannot express; the message says what and why."""


# ---------------------------------------------------------------- small builders
def _num(value: float) -> exp.Expression:
    """A double literal that every dialect reads as exactly this double (``100.0e0``, ``0.3e0``)."""
    v = float(value)
    if not math.isfinite(v):
        raise SqlScoreError(f"cannot write the non-finite number {v!r} as SQL")
    text = repr(v)
    if "e" not in text:
        text += "e0"
    if text.startswith("-"):
        return exp.Neg(this=exp.Literal.number(text[1:]))
    return exp.Literal.number(text)


def _int(value: int) -> exp.Expression:
    return exp.Literal.number(str(int(value)))


def _str(value: str) -> exp.Expression:
    return exp.Literal.string(value)


def _col(name: str) -> exp.Column:
    return exp.column(name)


def _case(
    branches: Sequence[tuple[exp.Expression, exp.Expression]], default: exp.Expression | None = None
) -> exp.Expression:
    case = exp.Case()
    for cond, value in branches:
        case = case.when(cond, value)
    return case.else_(default) if default is not None else case


_ADDITIVE = (exp.Add, exp.Sub)
_BINARY = (exp.Add, exp.Sub, exp.Mul, exp.Div)


def _wrap(e: exp.Expression, kinds: tuple[type, ...]) -> exp.Expression:
    """Parenthesise ``e`` when it is one of ``kinds`` (the tree, not the text, says what is added first)."""
    return exp.Paren(this=e) if isinstance(e, kinds) else e


def _add(a: exp.Expression, b: exp.Expression) -> exp.Expression:
    return exp.Add(this=a, expression=_wrap(b, _ADDITIVE))


def _sub(a: exp.Expression, b: exp.Expression) -> exp.Expression:
    return exp.Sub(this=a, expression=_wrap(b, _ADDITIVE))


def _mul(a: exp.Expression, b: exp.Expression) -> exp.Expression:
    return exp.Mul(this=_wrap(a, _ADDITIVE), expression=_wrap(b, _BINARY))


def _div(a: exp.Expression, b: exp.Expression) -> exp.Expression:
    return exp.Div(this=_wrap(a, _ADDITIVE), expression=_wrap(b, _BINARY))


def _sum(terms: Sequence[exp.Expression]) -> exp.Expression:
    """``t1 + t2 + ...`` added left to right, as ``core.scoring._add`` does."""
    out = terms[0]
    for t in terms[1:]:
        out = _add(out, t)
    return out


def _lt(a: exp.Expression, b: exp.Expression) -> exp.Expression:
    return exp.LT(this=a, expression=b)


def _gt(a: exp.Expression, b: exp.Expression) -> exp.Expression:
    return exp.GT(this=a, expression=b)


def _eq(a: exp.Expression, b: exp.Expression) -> exp.Expression:
    return exp.EQ(this=a, expression=b)


def _not_null(e: exp.Expression) -> exp.Expression:
    return exp.Not(this=exp.Is(this=e, expression=exp.Null()))


def _is_null(e: exp.Expression) -> exp.Expression:
    return exp.Is(this=e, expression=exp.Null())


def _double(e: exp.Expression) -> exp.Expression:
    return exp.cast(e, exp.DataType.build("DOUBLE"))


def _clip(e: exp.Expression, lo: float, hi: float) -> exp.Expression:
    """Clip to [lo, hi], null stays null (GREATEST/LEAST skip nulls in some dialects, not in others)."""
    return _case([(_lt(e, _num(lo)), _num(lo)), (_gt(e, _num(hi)), _num(hi))], e)


def _ordered(name: str, dialect: str) -> exp.Ordered:
    """Ascending, with the dialect's own null order spelled out (keys are never null; saying so
    keeps generators from emitting a NULLS LAST that some dialects cannot write in a window)."""
    nulls_first = sqlglot.Dialect.get_or_raise(dialect).NULL_ORDERING == "nulls_are_small"
    return exp.Ordered(this=_col(name), nulls_first=nulls_first)


def _window(func: exp.Expression, acc: str, day: str, dialect: str, frame: exp.WindowSpec | None = None) -> exp.Window:
    return exp.Window(
        this=func, partition_by=[_col(acc)], order=exp.Order(expressions=[_ordered(day, dialect)]), spec=frame
    )


# ---------------------------------------------------------------- calibration maps
def _interp(x: exp.Expression, xs: Sequence[float], ys: Sequence[float], *, cheap: bool = True) -> exp.Expression:
    """Piecewise linear through (xs, ys), flat outside; the polars engine's two code paths, term for term.

    Up to 12 points (``cheap``) the polars engine writes ``y0 + (x - x0) * slope``; beyond, or for
    trend, it calls numpy's ``interp``, which computes ``slope * (x - x0) + y0``: the same numbers
    (addition and multiplication commute exactly), but a spacing below 1e-300 is a step only in the
    first path, so both are kept.
    """
    xs, ys = [float(v) for v in xs], [float(v) for v in ys]
    if len(xs) == 1:
        return _case([(_not_null(x), _num(ys[0]))])
    chain = cheap and len(xs) <= _CHAIN_MAX
    branches = [(_lt(x, _num(xs[0])), _num(ys[0]))]
    for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:]):
        if chain:
            slope = (y1 - y0) / (x1 - x0) if x1 - x0 >= 1e-300 else 0.0
        else:
            slope = (y1 - y0) / (x1 - x0)
        value = _add(_num(y0), _mul(_sub(x, _num(x0)), _num(slope))) if slope else _num(y0)
        branches.append((_lt(x, _num(x1)), value))
    branches.append((_not_null(x), _num(ys[-1])))
    return _case(branches)


def _steps(x: exp.Expression, edges: Sequence[float], scores: Sequence[float]) -> exp.Expression:
    branches = [(_lt(x, _num(e)), _num(s)) for e, s in zip(edges, scores)]
    branches.append((_not_null(x), _num(scores[-1])))
    return _case(branches)


def _flip(score: exp.Expression, direction: str) -> exp.Expression:
    return _sub(_num(100.0), score) if direction == "lower_is_better" else score


# ---------------------------------------------------------------- the plan
@dataclass
class _Version:
    """One metric as one variant (or the base model, ``variant=None``) calibrates it."""

    metric: Metric
    variant: str | None
    index: int  # position of the metric in the model, from 1 (for messages)

    @property
    def tag(self) -> str:
        return self.metric.name if self.variant is None else f"{self.metric.name}__{self.variant}"


@dataclass
class _Plan:
    model: ScoreModel
    table: exp.Expression
    schema: dict[str, str] | None
    acc: str = KEYS[0]
    day: str = KEYS[1]
    clean: dict[str, str] = field(default_factory=dict)  # raw column -> cleaned column
    raw: dict[str, str] = field(default_factory=dict)  # raw column -> copy as it is (categorical)
    goals: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (start, due, date) -> prefix
    trends: dict[tuple[str, int, str, str], str] = field(default_factory=dict)  # (col, w, acc, day) -> prefix

    def x(self, column: str) -> exp.Column:
        if column not in self.clean:
            self.clean[column] = f"x__{column}"
        return _col(self.clean[column])

    def as_is(self, column: str) -> exp.Column:
        if column not in self.raw:
            self.raw[column] = f"raw__{column}"
        return _col(self.raw[column])


def _versions(model: ScoreModel) -> tuple[dict[str, _Version], dict[str, dict[str, _Version | None]]]:
    """Base version of each metric, and per metric the variants that change it (None = disabled)."""
    base: dict[str, _Version] = {}
    special: dict[str, dict[str, _Version | None]] = {}
    for i, m in enumerate(model.metrics, 1):
        base[m.name] = _Version(m, None, i)
        special[m.name] = {}
        for v in model.variants:
            if m.name in v.disabled:
                special[m.name][v.name] = None
            elif m.name in v.params:
                resolved = next(r for r in model.resolve(v.name).metrics if r.name == m.name)
                special[m.name][v.name] = _Version(resolved, v.name, i)
    return base, special


def _check_version(model: ScoreModel, ver: _Version) -> None:
    """The same checks (and messages) as the polars engine: known method, fitted, valid parameters."""
    m = ver.metric
    where = f" (variant {ver.variant})" if ver.variant else ""
    if m.method not in calibration.METHODS:
        raise ModelError(
            f"{model._where()}metrics[{ver.index}] ({m.name}).method: "
            + calibration.check_params(m.method, m.params)[0]
        )
    missing = sorted(calibration.METHODS[m.method].fitted_keys - set(m.params))
    if missing:
        raise ModelError(
            f"{model._where()}metrics[{ver.index}] ({m.name}).params{where}: method {m.method} learns "
            f"{', '.join(missing)} from data and has not been fitted; run "
            "hs.fit_calibration(model, snapshots) and save the model"
        )
    msgs = calibration.check_params(m.method, m.params, m.direction)
    if msgs:
        raise ModelError(
            f"{model._where()}metrics[{ver.index}] ({m.name}).params{where}: "
            f"calibration '{m.method}': " + "; ".join(msgs)
        )
    if m.method not in _MEASURES:
        raise SqlScoreError(
            f"{model._where()}metrics[{ver.index}] ({m.name}): calibration method {m.method!r} "
            'has no SQL form yet; score this model with engine="polars"'
        )


def _params(ver: _Version) -> dict[str, Any]:
    return {**calibration._DEFAULTS.get(ver.metric.method, {}), **ver.metric.params}


# each method: a "measure" (a number computed from cleaned inputs, or None) and a "map" (measure -> score)
def _measure_log_z(plan: _Plan, ver: _Version) -> exp.Expression:
    p = _params(ver)
    x = plan.x(ver.metric.column)
    logged = exp.Ln(this=_add(_num(1.0), x))
    z = _div(_sub(logged, _num(p["center"])), _num(p["scale"]))
    return _case([(_gt(x, _num(-1.0)), z)])


def _map_log_z(plan: _Plan, ver: _Version, z: exp.Expression) -> exp.Expression:
    clip = float(_params(ver)["clip"])
    score = _mul(_div(_add(_clip(z, -clip, clip), _num(clip)), _num(2.0 * clip)), _num(100.0))
    return _flip(score, ver.metric.direction)


def _measure_goal(plan: _Plan, ver: _Version) -> exp.Expression:
    """Expected progress by now: target x elapsed share of the goal period (null before it starts)."""
    p = _params(ver)
    key = (p["start_column"], p["due_column"], p["date_column"])
    prefix = plan.goals.setdefault(key, f"goal{len(plan.goals) + 1}")
    elapsed, length = _col(f"{prefix}_elapsed"), _col(f"{prefix}_length")
    share = _case(
        [(_gt(length, _num(0.0)), _clip(_div(elapsed, length), 0.0, 1.0)), (_gt(elapsed, _num(0.0)), _num(1.0))]
    )
    return _mul(_num(p["target"]), share)


def _map_goal(plan: _Plan, ver: _Version, expected: exp.Expression) -> exp.Expression:
    p = _params(ver)
    prefix = plan.goals[(p["start_column"], p["due_column"], p["date_column"])]
    value = plan.x(ver.metric.column)
    zero, full = float(p["zero_at"]), float(p["full_at"])
    attainment = _div(value, expected)
    score = _clip(_mul(_div(_sub(attainment, _num(zero)), _num(full - zero)), _num(100.0)), 0.0, 100.0)
    min_expected = float(p.get("min_expected", 0.02 * float(p["target"])))
    cond = exp.and_(
        _gt(_col(f"{prefix}_elapsed"), _num(0.0)),
        _gt(expected, _num(0.0)),
        exp.GTE(this=expected, expression=_num(min_expected)),
    )
    return _case([(cond, _flip(score, ver.metric.direction))])


def _measure_trend(plan: _Plan, ver: _Version) -> exp.Expression:
    """Relative change of the window mean against the window before (null before 2 x window rows)."""
    p = _params(ver)
    w = int(p["window"])
    plan.x(ver.metric.column)
    key = (ver.metric.column, w, p["account_column"], p["date_column"])
    prefix = plan.trends.setdefault(key, f"trend{len(plan.trends) + 1}")
    mean, before, n = _col(f"{prefix}_mean"), _col(f"{prefix}_before"), _col(f"{prefix}_n")
    # max(|before|, min_base); before is never null where the change is used
    size = exp.Abs(this=before)
    base = _case([(_gt(size, _num(p["min_base"])), size)], _num(p["min_base"]))
    change = _div(_sub(mean, before), base)
    cond = exp.and_(exp.GTE(this=n, expression=_int(2 * w)), _not_null(plan.x(ver.metric.column)))
    return _case([(cond, change)])


def _map_trend(plan: _Plan, ver: _Version, change: exp.Expression) -> exp.Expression:
    pts = [(float(a), float(b)) for a, b in _params(ver)["points"]]
    return _interp(change, [a for a, _ in pts], [b for _, b in pts], cheap=False)


def _map_thresholds(plan: _Plan, ver: _Version, _: Any) -> exp.Expression:
    pts = [(float(a), float(b)) for a, b in ver.metric.params["points"]]
    return _interp(plan.x(ver.metric.column), [a for a, _ in pts], [b for _, b in pts])


def _map_steps(plan: _Plan, ver: _Version, _: Any) -> exp.Expression:
    p = ver.metric.params
    return _steps(plan.x(ver.metric.column), [float(e) for e in p["edges"]], [float(s) for s in p["scores"]])


def _map_percentile(plan: _Plan, ver: _Version, _: Any) -> exp.Expression:
    xs, ys = calibration._percentile_points(ver.metric.params["quantiles"])
    x = plan.x(ver.metric.column)
    pct = _case([(_lt(x, _num(xs[0])), _num(0.0)), (_gt(x, _num(xs[-1])), _num(100.0))], _interp(x, xs, ys))
    return _flip(pct, ver.metric.direction)


def _map_boolean(plan: _Plan, ver: _Version, _: Any) -> exp.Expression:
    p, x = ver.metric.params, plan.x(ver.metric.column)
    return _case([(_eq(x, _num(1.0)), _num(p["true_score"])), (_eq(x, _num(0.0)), _num(p["false_score"]))])


def _map_categorical(plan: _Plan, ver: _Version, _: Any) -> exp.Expression:
    raw = plan.as_is(ver.metric.column)
    kind = (plan.schema or {}).get(ver.metric.column, "")
    numeric = kind in ("number", "boolean")
    as_num = _raw_double(raw, kind) if numeric else exp.TryCast(this=raw, to=exp.DataType.build("DOUBLE"))
    as_text = exp.cast(raw, exp.DataType.build("TEXT"))
    branches = []
    for key, score in ver.metric.params["map"].items():
        num, text = calibration._level_key(key)
        hit = _eq(as_num, _num(num)) if num is not None else _eq(as_text, _str(text))
        branches.append((hit, _num(score)))
    return _case(branches)


_MEASURES = {
    "log_z": _measure_log_z,
    "goal": _measure_goal,
    "trend": _measure_trend,
    "thresholds": None,
    "steps": None,
    "monotone_bins": None,
    "percentile": None,
    "boolean": None,
    "categorical": None,
}
_MAPS = {
    "log_z": _map_log_z,
    "goal": _map_goal,
    "trend": _map_trend,
    "thresholds": _map_thresholds,
    "steps": _map_steps,
    "monotone_bins": _map_steps,
    "percentile": _map_percentile,
    "boolean": _map_boolean,
    "categorical": _map_categorical,
}


def _raw_double(raw: exp.Expression, kind: str) -> exp.Expression:
    if kind == "boolean":
        return _case([(raw, _num(1.0)), (exp.Not(this=raw), _num(0.0))])
    return _double(raw)


def _clean(raw: exp.Expression, kind: str) -> exp.Expression:
    """Raw value as a double; NaN and +-infinity become null (NaN sorts above every number in
    DuckDB, Spark and PostgreSQL and compares false in BigQuery, so a range test catches all)."""
    value = _raw_double(raw, kind)
    if kind == "boolean":
        return value
    finite = exp.Between(
        this=value, low=exp.Neg(this=exp.Literal.number(_DOUBLE_MAX)), high=exp.Literal.number(_DOUBLE_MAX)
    )
    return _case([(finite, value)])


# ---------------------------------------------------------------- weights per variant
def _per_variant(values: dict[str | None, float]) -> exp.Expression:
    """A weight that depends on the row's variant, typed DOUBLE: sums of weights are literal-only,
    and PostgreSQL reads ``0.3e0`` as NUMERIC, whose sums and quotients round differently."""
    default = values[None]
    differing = {k: v for k, v in values.items() if k is not None and v != default}
    if not differing:
        return _double(_num(default))
    return _double(_case([(_eq(_col("variant"), _str(k)), _num(v)) for k, v in differing.items()], _num(default)))


def _weights(
    model: ScoreModel,
) -> tuple[dict[str, exp.Expression], dict[str, exp.Expression], dict[str, exp.Expression]]:
    """Metric weights, category weights and nominal shares (:func:`core.scoring.weight_table`) as SQL."""
    metric_w, cat_w, share = scoring.weight_table(model)
    return (
        {k: _per_variant(v) for k, v in metric_w.items()},
        {k: _per_variant(v) for k, v in cat_w.items()},
        {k: _per_variant(v) for k, v in share.items()},
    )


# ---------------------------------------------------------------- schema
def _kinds(columns: Mapping[str, Any] | Sequence[str] | None) -> dict[str, str] | None:
    """Column -> "number" / "boolean" / "text" / "date" / "other" from a polars schema (or names only)."""
    if columns is None:
        return None
    if not isinstance(columns, Mapping):
        return {str(c): "" for c in columns}
    out = {}
    for name, dtype in columns.items():
        if isinstance(dtype, str):
            out[name] = dtype
        elif dtype == pl.Boolean:
            out[name] = "boolean"
        elif dtype.is_numeric():
            out[name] = "number"
        elif dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
            out[name] = "text"
        elif dtype.is_temporal():
            out[name] = "date"
        else:
            out[name] = "other"
    return out


def output_columns(model: ScoreModel, columns: Sequence[str] = ()) -> list[str]:
    """The columns of a score frame, in the order :func:`healthscore.core.scoring.score` returns them.

    >>> import healthscore as hs
    >>> output_columns(hs.load_model(hs.resources.sample_model()))[:3]
    ['account_id', 'as_of', 'sub_seat_utilization']
    """
    names = [m.name for m in model.metrics]
    return [
        *KEYS,
        *_attributes(model, columns),
        *[f"sub_{n}" for n in names],
        *[f"cat_{c}" for c in model.categories],
        "score",
        "band",
        "coverage",
        "null_reason",
        "score_change_1",
        "score_change_4",
        *[f"drv_{n}" for n in names],
        *[f"drvchg_{n}" for n in names],
        "variant",
        *AUDIT_COLUMNS,
        "model_name",
        "model_version",
        "model_hash",
    ]


def _attributes(model: ScoreModel, columns: Sequence[str]) -> list[str]:
    metric_cols = {m.column for m in model.metrics}
    subs = {f"sub_{m.name}" for m in model.metrics}
    return [
        c
        for c in columns
        if c not in metric_cols
        and c not in KEYS
        and c != "variant"
        and c not in subs
        and not c.startswith(_DERIVED)
        and c not in _OUTPUT_SCALARS
    ]


# ---------------------------------------------------------------- the query
def _table(table: str, dialect: str) -> exp.Expression:
    try:
        return exp.to_table(table, dialect=dialect)
    except sqlglot.errors.ParseError as exc:
        raise SqlScoreError(f"--table / table={table!r} is not a table name in {dialect}: {exc}") from None


def _check_dialect(dialect: str) -> None:
    if dialect not in DIALECTS:
        raise SqlScoreError(f"unknown SQL dialect {dialect!r}; use one of {', '.join(DIALECTS)}")


# Dialects whose planners inline a CTE into the next one: a step that uses a column three times (a
# clip) would copy the expression behind it three times, step after step, and the plan grows
# exponentially. MATERIALIZED keeps each step a step.
_MATERIALIZE = ("duckdb", "postgres")


def _cte(name: str, select: exp.Select, comment: str) -> exp.CTE:
    select.add_comments([comment])
    return exp.CTE(this=select, alias=exp.TableAlias(this=exp.to_identifier(name)))


def _star_from(name: str, *projections: exp.Expression) -> exp.Select:
    return exp.select(exp.Star(), *projections).from_(name)


def score_query(
    model: ScoreModel,
    *,
    table: str = "snapshots",
    dialect: str = "duckdb",
    columns: Mapping[str, Any] | Sequence[str] | None = None,
    as_of: dt.date | str | None = None,
) -> exp.Expression:
    """The scoring of ``model`` over ``table`` as one sqlglot query (CTEs: one step each).

    ``columns`` (names, or a polars schema) lists the snapshot columns: the attribute columns are
    then passed through like the polars engine does, and Boolean or text columns are read right.
    Without it only the keys, ``variant`` and the score columns are returned. ``as_of`` keeps the
    latest snapshot date on or before it (earlier snapshots still feed trend and changes).
    Overrides are not applied in SQL (the override columns are null).

    >>> import healthscore as hs
    >>> q = score_query(hs.load_model(hs.resources.sample_model()), dialect="spark")
    >>> [cte.alias for cte in q.args["with_"].expressions][:3]
    ['prepared', 'trend_windows', 'trend_lagged']
    """
    _check_dialect(dialect)
    model.validate()
    kinds = _kinds(columns)
    if kinds is not None:
        model.check_columns([*kinds, *KEYS])
    plan = _Plan(model, _table(table, dialect), kinds)
    base, special = _versions(model)
    versions = [*base.values(), *(v for d in special.values() for v in d.values() if v is not None)]
    for ver in versions:
        _check_version(model, ver)

    # measures and maps are built first: they register the cleaned columns, goals and trends they use
    measures = {
        ver.tag: _MEASURES[ver.metric.method](plan, ver) for ver in versions if _MEASURES[ver.metric.method] is not None
    }
    maps = {ver.tag: _MAPS[ver.metric.method](plan, ver, _col(f"measure__{ver.tag}")) for ver in versions}

    attrs = _attributes(model, list(kinds or {}))
    ctes: list[exp.CTE] = []
    names = [m.name for m in model.metrics]

    # 1. prepared: keys, attributes, variant, cleaned raw values, goal periods
    variant = (
        _case([(_variant_match(v), _str(v.name)) for v in model.variants], _str("default"))
        if model.variants
        else _str("default")
    )
    prepared = [_col(k) for k in KEYS] + [_col(a) for a in attrs] + [exp.alias_(variant, "variant")]
    for column, alias in plan.clean.items():
        prepared.append(exp.alias_(_clean(_col(column), (kinds or {}).get(column, "")), alias))
    for column, alias in plan.raw.items():
        prepared.append(exp.alias_(_col(column), alias))
    for (start, due, day), prefix in plan.goals.items():
        for what, a, b in (("elapsed", day, start), ("length", due, start)):
            diff = exp.DateDiff(this=_col(a), expression=_col(b), unit=exp.var("DAY"))
            prepared.append(exp.alias_(_double(diff), f"{prefix}_{what}"))
    select = exp.select(*prepared).from_(plan.table)
    if as_of is not None:
        select = select.where(exp.LTE(this=_col(KEYS[1]), expression=_date(as_of)))
    ctes.append(
        _cte(
            "prepared",
            select,
            f"model {model.name} {model.hash} (version {model.version}): "
            "keys, attributes, variant, raw values (NaN and infinity -> null)",
        )
    )
    last = "prepared"

    # 2. trend windows: mean over the last window and the window before, per account in date order
    if plan.trends:
        wins, lags = [], []
        for (column, w, acc, day), prefix in plan.trends.items():
            frame = exp.WindowSpec(kind="ROWS", start=_int(w - 1), start_side="PRECEDING", end="CURRENT ROW")
            wins.append(exp.alias_(_window(exp.Avg(this=plan.x(column)), acc, day, dialect, frame), f"{prefix}_mean"))
            wins.append(exp.alias_(_window(exp.RowNumber(), acc, day, dialect), f"{prefix}_n"))
            lag = exp.Lag(this=_col(f"{prefix}_mean"), offset=_int(w))
            lags.append(exp.alias_(_window(lag, acc, day, dialect), f"{prefix}_before"))
        what = ", ".join(f"{c} over {w}" for (c, w, _, _) in plan.trends)
        ctes.append(_cte("trend_windows", _star_from(last, *wins), f"trend: window means of {what}"))
        ctes.append(_cte("trend_lagged", _star_from("trend_windows", *lags), "trend: the window before"))
        last = "trend_lagged"

    # 3. measures: the number a method maps (z-score, expected goal progress, relative change)
    if measures:
        ctes.append(
            _cte(
                "measured",
                _star_from(last, *[exp.alias_(e, f"measure__{t}") for t, e in measures.items()]),
                "measures: " + ", ".join(f"{v.tag} ({v.metric.method})" for v in versions if v.tag in measures),
            )
        )
        last = "measured"

    # 4. calibrated: each metric (and each variant's version of it) mapped to a score, not yet clipped
    ctes.append(
        _cte(
            "calibrated",
            _star_from(last, *[exp.alias_(e, f"cal__{t}") for t, e in maps.items()]),
            "calibration: " + ", ".join(f"{v.tag} ({v.metric.method}, {v.metric.column})" for v in versions),
        )
    )

    # 5. sub-scores: clipped to 0..100, N/A policy, variant versions
    subs = []
    for n in names:
        ver = base[n]

        def finished(v: _Version) -> exp.Expression:
            e = _clip(_col(f"cal__{v.tag}"), 0.0, 100.0)
            na = v.metric.na_score
            return exp.Coalesce(this=e, expressions=[_num(na)]) if na is not None else e

        expr = finished(ver)
        if special[n]:
            expr = _case(
                [
                    (_eq(_col("variant"), _str(vname)), exp.Null() if v is None else finished(v))
                    for vname, v in special[n].items()
                ],
                expr,
            )
        subs.append(exp.alias_(_double(expr), f"sub_{n}"))
    keep = [_col(k) for k in KEYS] + [_col(a) for a in attrs] + [_col("variant")]
    ctes.append(
        _cte(
            "subscores",
            exp.select(*keep, *subs).from_("calibrated"),
            "sub-scores 0..100 (null = not applicable): " + ", ".join(names),
        )
    )

    # 6.. combine, in the order and with the same sums as core.scoring.combine
    metric_w, cat_w, share = _weights(model)
    by_cat = {c: [m.name for m in model.metrics if m.category == c] for c in model.categories}
    cat_of = {m.name: m.category for m in model.metrics}
    sub = {n: _col(f"sub_{n}") for n in names}
    present_w = {n: _case([(_not_null(sub[n]), metric_w[n])], _num(0.0)) for n in names}
    ps = {n: _case([(_not_null(sub[n]), _mul(metric_w[n], sub[n]))], _num(0.0)) for n in names}
    presence = [exp.alias_(_sum([_case([(_not_null(sub[n]), share[n])], _num(0.0)) for n in names]), "coverage_raw")]
    presence += [exp.alias_(_sum([present_w[n] for n in ns] or [_num(0.0)]), f"weight_{c}") for c, ns in by_cat.items()]
    presence += [exp.alias_(ps[n], f"points_{n}") for n in names]
    ctes.append(
        _cte(
            "presence",
            _star_from("subscores", *presence),
            "present weight per category, weight x sub-score per metric, raw coverage",
        )
    )

    cw = {c: _col(f"weight_{c}") for c in by_cat}
    cats = [exp.alias_(_clip(_col("coverage_raw"), 0.0, 1.0), "coverage")]
    cats += [
        exp.alias_(
            _case([(_gt(cw[c], _num(0.0)), _div(_sum([_col(f"points_{n}") for n in ns] or [_num(0.0)]), cw[c]))]),
            f"cat_raw_{c}",
        )
        for c, ns in by_cat.items()
    ]
    cats.append(
        exp.alias_(_sum([_case([(_gt(cw[c], _num(0.0)), cat_w[c])], _num(0.0)) for c in by_cat]), "total_weight")
    )
    ctes.append(
        _cte(
            "categories",
            _star_from("presence", *cats),
            "category scores (weights renormalised over the metrics present) and coverage",
        )
    )

    ok_expr = exp.and_(
        _gt(_col("coverage"), _num(0.0)), exp.GTE(this=_col("coverage"), expression=_num(model.min_coverage - _EPS))
    )
    gate = [exp.alias_(ok_expr, "has_score")]
    gate += [exp.alias_(_clip(_col(f"cat_raw_{c}"), 0.0, 100.0), f"cat_{c}") for c in by_cat]
    ctes.append(
        _cte("coverage_gate", _star_from("categories", *gate), f"a score needs coverage >= {model.min_coverage:g}")
    )

    factors = [
        exp.alias_(
            _case(
                [
                    (
                        _col("has_score"),
                        _case([(_gt(cw[c], _num(0.0)), _div(_div(cat_w[c], _col("total_weight")), cw[c]))], _num(0.0)),
                    )
                ]
            ),
            f"factor_{c}",
        )
        for c in by_cat
    ]
    ctes.append(
        _cte(
            "factors",
            _star_from("coverage_gate", *factors),
            "each category's share of the score per unit of present weight",
        )
    )

    drivers = [exp.alias_(_mul(_col(f"points_{n}"), _col(f"factor_{cat_of[n]}")), f"drv_{n}") for n in names]
    ctes.append(
        _cte(
            "drivers", _star_from("factors", *drivers), "drivers: each metric's points in the score (they add up to it)"
        )
    )

    total = _case([(_col("has_score"), _clip(_sum([_col(f"drv_{n}") for n in names]), 0.0, 100.0))])
    ctes.append(_cte("scored", _star_from("drivers", exp.alias_(total, "score")), "score = sum of the drivers"))

    # final: band, null reason, changes since the previous snapshots, stamp
    score = _col("score")
    band = _band(model, score)
    reason = _null_reason(model, metric_w)
    acc, day = KEYS

    def lag(name: str, k: int) -> exp.Expression:
        return _window(exp.Lag(this=_col(name), offset=_int(k)), acc, day, dialect)

    out: dict[str, exp.Expression] = {}
    for c in output_columns(model, attrs):
        out[c] = _col(c)
    out["band"] = band
    out["null_reason"] = reason
    out["score_change_1"] = _sub(score, lag("score", 1))
    out["score_change_4"] = _sub(score, lag("score", 4))
    for n in names:
        out[f"drvchg_{n}"] = _sub(_col(f"drv_{n}"), lag(f"drv_{n}", 1))
    out["override_value"] = _double(exp.Null())
    for c in AUDIT_COLUMNS[1:4]:
        out[c] = exp.cast(exp.Null(), exp.DataType.build("TEXT"))
    out["override_computed_score"] = _double(exp.Null())
    out["model_name"], out["model_version"], out["model_hash"] = (
        _str(model.name),
        _str(model.version),
        _str(model.hash),
    )
    final = exp.select(
        *[e if isinstance(e, exp.Column) and e.name == c else exp.alias_(e, c) for c, e in out.items()]
    ).from_("scored")
    if as_of is not None:
        # windows see every earlier snapshot: the filter to the latest date comes after them
        ctes.append(_cte("all_dates", final, "every snapshot date up to as_of, with its history"))
        latest = (
            exp.select(exp.Max(this=_col(day)))
            .from_(plan.table)
            .where(exp.LTE(this=_col(day), expression=_date(as_of)))
        )
        final = exp.select(*[_col(c) for c in out]).from_("all_dates").where(_eq(_col(day), exp.Subquery(this=latest)))
    final = final.order_by(_ordered(acc, dialect), _ordered(day, dialect))
    final.add_comments(
        [
            f"bands ({', '.join(f'{b.name} {b.lower:g}-{b.upper:g}' for b in model.bands)}), "
            "null reason, changes since the previous snapshots, model stamp"
        ]
    )
    if dialect in _MATERIALIZE:
        for cte in ctes:
            cte.set("materialized", True)
    final.set("with_", exp.With(expressions=ctes))
    return final


def _date(value: dt.date | str) -> exp.Expression:
    day = dt.date.fromisoformat(value) if isinstance(value, str) else value
    return exp.cast(_str(day.isoformat()), exp.DataType.build("DATE"))


def _literal(value: Any) -> exp.Expression:
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, (int, float)):
        return _num(value) if isinstance(value, float) else _int(value)
    return _str(str(value))


def _variant_match(v: Any) -> exp.Expression:
    conds = [exp.In(this=_col(col), expressions=[_literal(x) for x in values]) for col, values in v.filter.items()]
    return exp.and_(*conds) if conds else exp.false()


def _band(model: ScoreModel, score: exp.Expression) -> exp.Expression:
    if not model.bands:
        return exp.cast(exp.Null(), exp.DataType.build("TEXT"))
    branches = [(_is_null(score), exp.cast(exp.Null(), exp.DataType.build("TEXT")))]
    branches += [(_lt(score, _num(b.upper)), _str(b.name)) for b in model.bands[:-1]]
    return _case(branches, _str(model.bands[-1].name))


def _null_reason(model: ScoreModel, metric_w: dict[str, exp.Expression]) -> exp.Expression:
    """Why the score is null, spelled like the polars engine (coverage rounded down to 0.1%)."""
    parts = [
        _case([(exp.and_(_is_null(_col(f"sub_{n}")), _gt(w, _num(0.0))), _str(f", {n}"))], _str(""))
        for n, w in metric_w.items()
    ]
    joined = parts[0]
    for p in parts[1:]:
        joined = exp.DPipe(this=joined, expression=p)
    missing = exp.Substring(this=joined, start=_int(3))
    permille = exp.cast(exp.Floor(this=_mul(_col("coverage"), _num(1000.0))), exp.DataType.build("BIGINT"))
    whole = exp.cast(exp.Floor(this=_div(permille, _num(10.0))), exp.DataType.build("BIGINT"))
    tenth = _sub(permille, _mul(_int(10), whole))
    pct = exp.DPipe(
        this=exp.DPipe(this=exp.cast(whole, exp.DataType.build("TEXT")), expression=_str(".")),
        expression=exp.cast(tenth, exp.DataType.build("TEXT")),
    )

    def cat(*xs: exp.Expression) -> exp.Expression:
        out = xs[0]
        for x in xs[1:]:
            out = exp.DPipe(this=out, expression=x)
        return out

    none = cat(_str("no metric present (missing: "), missing, _str(")"))
    low = cat(
        _str("coverage "), pct, _str(f"% below minimum {model.min_coverage * 100:g}% (missing: "), missing, _str(")")
    )
    return _case(
        [(_is_null(_col("score")), _case([(exp.LTE(this=_col("coverage"), expression=_num(0.0)), none)], low))]
    )


def score_sql(
    model: ScoreModel,
    *,
    dialect: str = "duckdb",
    table: str = "snapshots",
    columns: Mapping[str, Any] | Sequence[str] | None = None,
    as_of: dt.date | str | None = None,
    pretty: bool = True,
) -> str:
    """:func:`score_query` as text in ``dialect`` (duckdb, spark, postgres, snowflake, bigquery).

    >>> import healthscore as hs
    >>> sql = score_sql(hs.load_model(hs.resources.sample_model()), dialect="postgres")
    >>> "DOUBLE PRECISION" in sql
    True
    """
    query = score_query(model, table=table, dialect=dialect, columns=columns, as_of=as_of)
    return query.sql(dialect=dialect, pretty=pretty) + "\n"


def _spark_kinds(frame: Any) -> dict[str, str]:
    kinds = {}
    for f in frame.schema.fields:
        name = f.dataType.typeName()
        kinds[f.name] = (
            "boolean"
            if name == "boolean"
            else "text"
            if name == "string"
            else "date"
            if name in ("date", "timestamp", "timestamp_ntz")
            else "number"
            if name in ("double", "float", "integer", "long", "short", "byte", "decimal")
            else "other"
        )
    return kinds


def score_with(
    engine: str,
    snapshots: Any,
    model: ScoreModel,
    *,
    as_of: dt.date | str | None = None,
    overrides: Any = None,
    session: Any = None,
    dsn: str | None = None,
    connection: Any = None,
) -> pl.DataFrame:
    """Score ``snapshots`` with ``model`` on ``engine``: polars, duckdb, spark or postgres.

    Every engine returns the frame :func:`healthscore.core.scoring.score` returns, equal to 1e-9
    (bands and coverage exactly). ``snapshots`` is a polars frame; for Spark it may also be a Spark
    DataFrame or the name of a table in ``session``. ``session`` is a SparkSession (default: a
    local one), ``dsn`` a PostgreSQL connection string, ``connection`` a DuckDB connection.
    Overrides are applied by the polars engine only.

    >>> import healthscore as hs
    >>> snaps, model = hs.load_sample().snapshots.head(200), hs.load_model(hs.resources.sample_model())
    >>> a, b = score_with("duckdb", snaps, model), score_with("polars", snaps, model)
    >>> (a["band"] == b["band"]).all() and ((a["score"] - b["score"]).abs().max() or 0.0) < 1e-9
    True
    """
    if engine not in runners.ENGINES:
        raise SqlScoreError(f"unknown engine {engine!r}; use one of {', '.join(runners.ENGINES)}")
    if engine == "polars":
        return scoring.score(snapshots, model, overrides=overrides, as_of=as_of)
    if overrides is not None:
        raise SqlScoreError(
            f'overrides are applied by the polars engine only; score with engine="polars" '
            f"or drop overrides= for engine={engine!r}"
        )
    table = "snapshots"
    if engine == "spark":
        spark = session if session is not None else runners.spark_session()
        frame = snapshots
        if isinstance(snapshots, str):
            frame = spark.table(snapshots)
        if isinstance(frame, (pl.DataFrame, pl.LazyFrame)):
            frame = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
            kinds: Any = frame.schema
        else:
            kinds = _spark_kinds(frame)
        sql = score_sql(model, dialect="spark", table=table, columns=kinds, as_of=as_of, pretty=False)
        return runners.run_spark(sql, {table: frame}, session=spark)
    frame = snapshots.collect() if isinstance(snapshots, pl.LazyFrame) else snapshots
    if not isinstance(frame, pl.DataFrame):
        raise SqlScoreError(f"engine={engine!r} scores a polars DataFrame; got {type(snapshots).__name__}")
    sql = score_sql(model, dialect=engine, table=table, columns=frame.schema, as_of=as_of, pretty=False)
    if engine == "duckdb":
        return runners.run_duckdb(sql, {table: frame}, connection=connection)
    if dsn is None:
        raise SqlScoreError(
            'engine="postgres" needs dsn= (a connection string such as '
            '"host=127.0.0.1 port=5432 dbname=health user=me")'
        )
    return runners.run_postgres(sql, {table: frame}, dsn=dsn)


def score_file_with(
    engine: str,
    source: str | os.PathLike[str],
    model: ScoreModel,
    out: str | os.PathLike[str],
    *,
    as_of: dt.date | str | None = None,
    session: Any = None,
    memory_limit: str | None = None,
) -> Path:
    """Score the snapshot Parquet file ``source`` into ``out`` on ``engine``, for data larger than
    memory: polars streams it part by part (:func:`healthscore.core.scoring.score_to_file`, which
    also checks the snapshots), DuckDB runs the score query over the file in place and writes
    Parquet, spilling beyond ``memory_limit``; Spark writes ``out`` as a folder of Parquet files.
    The scores equal :func:`score_with`'s. Returns ``out``.

    >>> import healthscore as hs, polars as pl, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); hs.load_sample().snapshots.head(300).write_parquet(d / "s.parquet")
    >>> model = hs.load_model(hs.resources.sample_model())
    >>> a = pl.read_parquet(score_file_with("duckdb", d / "s.parquet", model, d / "a.parquet"))
    >>> b = pl.read_parquet(score_file_with("polars", d / "s.parquet", model, d / "b.parquet"))
    >>> (a["band"] == b["band"]).all() and ((a["score"] - b["score"]).abs().max() or 0.0) < 1e-9
    True
    """
    target = Path(out)
    if engine not in ("polars", "duckdb", "spark"):
        raise SqlScoreError(f"engine {engine!r} does not score files; use polars, duckdb or spark")
    if memory_limit is not None and engine != "duckdb":
        raise SqlScoreError(f"memory_limit applies to the duckdb engine only; drop it for engine {engine!r}")
    if not Path(source).exists():
        raise SqlScoreError(f"{source}: no such file; give the snapshot Parquet file to score")
    if engine == "polars":
        scoring.score_to_file(scan_snapshots(source), model, target, as_of=as_of)
        return target
    try:
        schema = pl.scan_parquet(source).collect_schema()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise SqlScoreError(
            f"{source}: cannot be read as Parquet ({str(exc).splitlines()[0]}); the {engine} engine scores "
            "Parquet files: convert it, or score it with the polars engine"
        ) from None
    sql = score_sql(model, dialect=engine, table="snapshots", columns=schema, as_of=as_of, pretty=False)
    if engine == "spark":
        runners.run_spark_to_folder(sql, {"snapshots": source}, target, session=session)
        return target
    with files.atomic_path(target) as tmp:
        runners.run_duckdb_to_file(sql, {"snapshots": source}, tmp, memory_limit=memory_limit)
    return target
