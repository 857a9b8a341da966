"""Calibration methods: turn one raw signal into a comparable 0..100 sub-score (100 = best).

Every method is a pure function from a raw column to a polars expression. The expression is
Float64, clipped to [0, 100], and null wherever the raw value is null, NaN or infinite: a metric
that was not measured stays "not applicable" and is never silently scored 0.

>>> import polars as pl
>>> df = pl.DataFrame({"login_days": [0.0, 2.5, 5.0, 7.0, None]})
>>> expr = calibrate_expr("login_days", "thresholds", {"points": [[0, 0], [5, 100]]})
>>> df.select(expr.alias("sub"))["sub"].to_list()
[0.0, 50.0, 100.0, 100.0, None]

Methods that learn from data (``percentile``, ``log_z``, ``monotone_bins``) follow fit /
transform: :func:`fit_params` computes the learned entries once from a reference population and
returns plain lists and floats that are stored in the score model, and :func:`calibrate_expr`
only ever uses those frozen entries, so scores never drift when the population changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, cast

import numpy as np
import polars as pl

from healthscore.io.snapshots import FALSE_WORDS, TRUE_WORDS
from healthscore.spec.calibration import (
    _DEFAULTS,
    DIRECTIONS,
    METHODS,
    Method,
    _validated,
    check_params,
    describe,
)
from healthscore.spec.model import Metric, ModelError, ScoreModel, _plain

__all__ = [
    "METHODS",
    "DIRECTIONS",
    "Method",
    "check_params",
    "calibrate_expr",
    "fit_params",
    "describe",
    "fit_calibration",
    "fit_levels",
    "shrunk_rates",
]


# --------------------------------------------------------------------------------------------
# expressions


def _clean(x: pl.Expr) -> pl.Expr:
    """Raw value as Float64, with NaN and +-inf turned into null (not measurable)."""
    x = x.cast(pl.Float64)
    return pl.when(x.is_finite()).then(x)


# Few breakpoints: a when/then chain is the fastest plan polars has (no Python, parallel across
# columns). Many breakpoints (101 frozen quantiles): every branch of a chain is evaluated, so
# one vectorised numpy call wins by far. An expression that is expensive to evaluate (trend's
# window) also goes the numpy way, because an eager select evaluates each use of it again.
_CHAIN_MAX = 12


def _interp(x: pl.Expr, xs: Sequence[float], ys: Sequence[float], *, cheap: bool = True) -> pl.Expr:
    """Piecewise linear through (xs, ys), flat outside, null stays null; ``xs`` strictly increasing."""
    xs, ys = [float(v) for v in xs], [float(v) for v in ys]
    if len(xs) == 1:
        return pl.when(x.is_not_null()).then(pl.lit(ys[0]))
    if cheap and len(xs) <= _CHAIN_MAX:
        # x == xs[i+1] falls into the next segment, where it gives exactly ys[i+1]
        expr: Any = pl.when(x < xs[0]).then(pl.lit(ys[0]))
        for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:]):
            # slope computed here, never 0/0 in the engine; there (x - x0) < x1 - x0, so the
            # product stays within |y1 - y0|. A spacing too small to divide by acts as a step.
            slope = (y1 - y0) / (x1 - x0) if x1 - x0 >= 1e-300 else 0.0
            expr = expr.when(x < x1).then(y0 + (x - x0) * slope if slope else pl.lit(y0))
        return cast(pl.Expr, expr.when(x.is_not_null()).then(pl.lit(ys[-1])))
    xa, ya = np.asarray(xs), np.asarray(ys)

    def interp(s: pl.Series) -> pl.Series:
        # nulls arrive as NaN and np.interp keeps NaN, which goes back to null
        return pl.Series(s.name, np.interp(s.to_numpy(), xa, ya), nan_to_null=True)

    return x.map_batches(interp, return_dtype=pl.Float64, is_elementwise=True)


def _steps(x: pl.Expr, edges: Sequence[float], scores: Sequence[float]) -> pl.Expr:
    """value < edges[0] -> scores[0], edges[i-1] <= value < edges[i] -> scores[i], ...; null stays null."""
    edges, scores = [float(v) for v in edges], [float(v) for v in scores]
    if len(edges) <= _CHAIN_MAX:
        expr: Any = pl
        for edge, score in zip(edges, scores):
            expr = expr.when(x < edge).then(pl.lit(score))
        return cast(pl.Expr, expr.when(x.is_not_null()).then(pl.lit(scores[-1])))
    ea, sa = np.asarray(edges), np.asarray(scores)

    def lookup(s: pl.Series) -> pl.Series:
        v = s.to_numpy()
        out = sa[np.searchsorted(ea, np.nan_to_num(v), side="right")]
        return pl.Series(s.name, np.where(np.isnan(v), np.nan, out), nan_to_null=True)

    return x.map_batches(lookup, return_dtype=pl.Float64, is_elementwise=True)


def _flip(score: pl.Expr, direction: str) -> pl.Expr:
    return 100.0 - score if direction == "lower_is_better" else score


def _thresholds(col: str, p: Mapping[str, Any], direction: str) -> pl.Expr:
    """Piecewise linear between ``points = [[raw, score], ...]``, flat outside.

    The scores carry the direction (they go down for a lower-is-better metric).

    >>> df = pl.DataFrame({"tickets": [0.0, 1.0, 2.0, 4.0, 9.0, None]})
    >>> p = {"points": [[0, 100], [2, 60], [6, 0]]}
    >>> df.select(calibrate_expr("tickets", "thresholds", p, "lower_is_better"))["tickets"].to_list()
    [100.0, 80.0, 60.0, 30.0, 0.0, None]
    """
    pts = [(float(a), float(b)) for a, b in p["points"]]
    return _interp(_clean(pl.col(col)), [a for a, _ in pts], [b for _, b in pts])


def _steps_method(col: str, p: Mapping[str, Any], direction: str) -> pl.Expr:
    """``edges = [e1, ..., ek]``, ``scores = [s0, ..., sk]``: below e1 -> s0, e1 <= x < e2 -> s1, ...

    >>> df = pl.DataFrame({"nps": [0.0, 6.9, 7.0, 8.9, 9.0, 10.0, None]})
    >>> p = {"edges": [7, 9], "scores": [0, 50, 100]}
    >>> df.select(calibrate_expr("nps", "steps", p))["nps"].to_list()
    [0.0, 0.0, 50.0, 50.0, 100.0, 100.0, None]
    """
    return _steps(_clean(pl.col(col)), [float(e) for e in p["edges"]], [float(s) for s in p["scores"]])


def _goal(col: str, p: Mapping[str, Any], direction: str) -> pl.Expr:
    """Progress against a goal line that runs from ``start_column`` to ``due_column``.

    Expected by now = ``target`` x the elapsed share of the period (0..1, measured in days at
    ``date_column``). Attainment = value / expected, mapped linearly ``zero_at`` -> 0 and
    ``full_at`` -> 100 (defaults 0 and 1), clipped. The score is null before the goal starts,
    without goal dates, and while the expected value is below ``min_expected`` (default 2% of
    the target; always on the start day): so early, a ratio to a tiny expected value would swing
    between 0 and 100 on noise, so nobody is called behind or ahead yet (not measurable rather
    than a free 100). After the due date the full target is expected.

    >>> import datetime as dt
    >>> d = dt.date
    >>> df = pl.DataFrame({"as_of": [d(2024, 1, 1), d(2024, 2, 1), d(2024, 2, 1), d(2024, 3, 1), d(2023, 12, 1)],
    ...                    "goal_progress": [0.0, 0.25, 0.5, 0.9, 0.1]})
    >>> df = df.with_columns(goal_start=pl.lit(d(2024, 1, 1)), goal_due=pl.lit(d(2024, 3, 1)))
    >>> p = {"start_column": "goal_start", "due_column": "goal_due"}
    >>> [round(v, 1) if v is not None else None for v in
    ...  df.select(calibrate_expr("goal_progress", "goal", p))["goal_progress"].to_list()]
    [None, 48.4, 96.8, 90.0, None]
    """
    q = {**_DEFAULTS["goal"], **p}
    value = _clean(pl.col(col))
    start, due, now = pl.col(q["start_column"]), pl.col(q["due_column"]), pl.col(q["date_column"])
    elapsed = (now - start).dt.total_days().cast(pl.Float64)
    length = (due - start).dt.total_days().cast(pl.Float64)
    share = pl.when(length > 0).then((elapsed / length).clip(0.0, 1.0)).when(elapsed > 0).then(1.0)
    expected = float(q["target"]) * share
    attainment = ratio(value, expected)
    zero, full = float(q["zero_at"]), float(q["full_at"])
    score = ((attainment - zero) / (full - zero) * 100.0).clip(0.0, 100.0)
    min_expected = float(q.get("min_expected", 0.02 * float(q["target"])))
    # before or on the start day, or too little expected yet -> null (documented above)
    return pl.when((elapsed > 0) & (expected > 0) & (expected >= min_expected)).then(_flip(score, direction))


def ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """``numerator / denominator`` computed as ``numerator * (1 / denominator)``, always.

    polars divides by a column that happens to be constant (e.g. a ``when/then`` whose mask is
    all true) as a multiplication by its reciprocal, and by a varying column exactly; the same
    row could then differ in its last bit with the rows scored beside it. Written this way
    every row is rounded the same way whatever its neighbours.

    >>> df = pl.DataFrame({"a": [625.0, 625.0], "b": [7.0, 7.0], "m": [True, False]})
    >>> constant = df.head(1).select(ratio(pl.col("a"), pl.when(pl.col("m")).then(7.0).otherwise(1.0)))
    >>> varying = df.select(ratio(pl.col("a"), pl.when(pl.col("m")).then(7.0).otherwise(1.0)))
    >>> constant.item() == varying.item(0, 0)
    True
    """
    return numerator * (pl.lit(1.0) / denominator)


def _trend(col: str, p: Mapping[str, Any], direction: str) -> pl.Expr:
    """Relative change of the mean over the last ``window`` snapshots against the ``window`` before.

    Per account, in ``as_of`` order. change = (mean_now - mean_before) / max(|mean_before|,
    ``min_base``); ``points`` map the change to a score as in ``thresholds``. Set ``min_base`` to
    a level below which a change means little (e.g. 1 user); the default 1e-9 only prevents a
    division by zero, so any rise from 0 counts as the top of ``points``. Null while an
    account has fewer than 2 x window snapshots, and where the current value is null. A window
    mean skips null values (null only if the whole window is null).

    >>> import datetime as dt
    >>> df = pl.DataFrame({"account_id": ["a"] * 4 + ["b"] * 4,
    ...                    "as_of": [dt.date(2024, 1, 1 + 7 * i) for i in range(4)] * 2,
    ...                    "active_users": [10.0, 10.0, 5.0, 5.0, 4.0, 4.0, 4.0, 6.0]})
    >>> p = {"window": 2, "points": [[-0.5, 0], [0, 60], [0.5, 100]], "min_base": 1}
    >>> df.select(calibrate_expr("active_users", "trend", p))["active_users"].to_list()
    [None, None, None, 0.0, None, None, None, 80.0]
    """
    q = {**_DEFAULTS["trend"], **p}
    w = int(q["window"])
    x = _clean(pl.col(col))
    mean = x.rolling_mean(w, min_samples=1)
    before = mean.shift(w)
    change = (mean - before) / pl.max_horizontal(before.abs(), pl.lit(float(q["min_base"])))
    n_seen = pl.int_range(1, pl.len() + 1)
    change = pl.when((n_seen >= 2 * w) & x.is_not_null()).then(change)
    change = change.over(q["account_column"], order_by=q["date_column"])
    pts = [(float(a), float(b)) for a, b in q["points"]]
    return _interp(change, [a for a, _ in pts], [b for _, b in pts], cheap=False)


def _percentile_points(quantiles: Sequence[float]) -> tuple[list[float], list[float]]:
    """Frozen quantiles -> strictly increasing (raw, percentile) breakpoints.

    Quantile ``i`` of ``m`` sits at percentile 100*i/(m-1). A value repeated over several
    quantiles (a mass point such as 0 logins) gets the middle of its percentile range; a
    constant reference puts its single value at 50.
    """
    q = np.asarray(quantiles, dtype=float)
    pct = np.linspace(0.0, 100.0, len(q))
    xs, ys = [], []
    for v in np.unique(q):
        hit = pct[q == v]
        xs.append(float(v))
        ys.append(float((hit.min() + hit.max()) / 2.0))
    if len(xs) == 1:  # a constant reference: everyone sits in the middle
        return xs, [50.0]
    return xs, ys


def _percentile(col: str, p: Mapping[str, Any], direction: str) -> pl.Expr:
    """Percentile of the value within a frozen reference population (``quantiles``).

    ``quantiles`` are fitted once by :func:`fit_params` (101 by default: the 0th..100th
    percentile). The value's percentile is interpolated between them, so the current data is
    never re-ranked. Below the smallest quantile -> 0, above the largest -> 100, a value tied
    over several quantiles -> the middle of their range; lower_is_better -> 100 - percentile.

    >>> df = pl.DataFrame({"api_calls": [-5.0, 0.0, 15.0, 30.0, 500.0, None]})
    >>> p = {"quantiles": [0, 10, 20, 40, 100]}
    >>> df.select(calibrate_expr("api_calls", "percentile", p))["api_calls"].to_list()
    [0.0, 0.0, 37.5, 62.5, 100.0, None]
    >>> df.select(calibrate_expr("api_calls", "percentile", p, "lower_is_better"))["api_calls"].to_list()
    [100.0, 100.0, 62.5, 37.5, 0.0, None]
    """
    xs, ys = _percentile_points(p["quantiles"])
    x = _clean(pl.col(col))
    # strictly outside the reference range is 0 / 100 even when the end quantiles are tied
    pct = pl.when(x < xs[0]).then(0.0).when(x > xs[-1]).then(100.0).otherwise(_interp(x, xs, ys))
    return _flip(pct, direction)


def _log_z(col: str, p: Mapping[str, Any], direction: str) -> pl.Expr:
    """For fat-tailed counts: z = (log1p(value) - ``center``) / ``scale``, clipped to +-``clip``.

    z = -clip -> 0, z = 0 -> 50, z = +clip -> 100 (flipped for lower_is_better). ``center`` and
    ``scale`` are the mean and standard deviation of log1p(value) on the reference population,
    fitted by :func:`fit_params`; ``clip`` defaults to 2.5. Values below -1 have no logarithm
    and give null.

    >>> import math
    >>> df = pl.DataFrame({"api_calls": [0.0, math.e - 1, 1e9, None]})
    >>> df.select(calibrate_expr("api_calls", "log_z", {"center": 1.0, "scale": 0.5, "clip": 2.0}))["api_calls"].to_list()
    [0.0, 50.0, 100.0, None]
    """
    clip = float(p.get("clip", _DEFAULTS["log_z"]["clip"]))
    z = (_clean(_clean(pl.col(col)).log1p()) - float(p["center"])) / float(p["scale"])
    score = (z.clip(-clip, clip) + clip) / (2.0 * clip) * 100.0
    return _flip(score, direction)


def _boolean(col: str, p: Mapping[str, Any], direction: str) -> pl.Expr:
    """1 / true -> ``true_score``, 0 / false -> ``false_score``, anything else -> null.

    >>> df = pl.DataFrame({"champion_left": [0.0, 1.0, None, 0.5]})
    >>> df.select(calibrate_expr("champion_left", "boolean", {"true_score": 0, "false_score": 100},
    ...                          "lower_is_better"))["champion_left"].to_list()
    [100.0, 0.0, None, None]
    >>> pl.DataFrame({"Partner": ["Yes", "No", None]}).select(
    ...     calibrate_expr("Partner", "boolean", {"true_score": 100, "false_score": 0}))["Partner"].to_list()
    [100.0, 0.0, None]
    """
    raw = pl.col(col)
    x = _clean(raw.cast(pl.Float64, strict=False))
    # Booleans and Yes/No text too: a CRM extract's yes/no column reads the same as 1/0
    text = raw.cast(pl.Utf8, strict=False).str.strip_chars().str.to_lowercase()
    yes = (x == 1.0) | text.is_in(list(TRUE_WORDS))
    no = (x == 0.0) | text.is_in(list(FALSE_WORDS))
    return pl.when(yes).then(pl.lit(float(p["true_score"]))).when(no).then(pl.lit(float(p["false_score"])))


def _level_key(key: Any) -> tuple[float | None, str]:
    """A map key as (number or None, text): '3' and '3.0' both mean the number 3."""
    text = str(key)
    try:
        num = float(text)
    except ValueError:
        return None, text
    return (num if math.isfinite(num) else None), text


def _categorical(col: str, p: Mapping[str, Any], direction: str) -> pl.Expr:
    """Each level maps to a score: ``map = {"1": 0, "2": 25, ...}``; unknown levels -> null.

    Keys are the raw values written as text; numeric keys match numeric columns by value (so
    "3" matches 3.0), other keys match the value's text. ``labels`` (optional) give the meaning
    of each level for reports.

    >>> df = pl.DataFrame({"csm_assessment": [1.0, 3.0, 5.0, 7.0, None]})
    >>> p = {"map": {"1": 0, "2": 25, "3": 50, "4": 75, "5": 100}, "labels": {"1": "at risk"}}
    >>> df.select(calibrate_expr("csm_assessment", "categorical", p))["csm_assessment"].to_list()
    [0.0, 50.0, 100.0, None, None]
    >>> df = pl.DataFrame({"tier": ["gold", "bronze", "tin"]})
    >>> df.select(calibrate_expr("tier", "categorical", {"map": {"gold": 100, "bronze": 20}}))["tier"].to_list()
    [100.0, 20.0, None]
    """
    raw = pl.col(col)
    as_num = raw.cast(pl.Float64, strict=False)
    as_text = raw.cast(pl.Utf8, strict=False)
    expr: Any = pl
    for key, score in p["map"].items():
        num, text = _level_key(key)
        hit = (as_num == num) if num is not None else (as_text == text)
        expr = expr.when(hit).then(pl.lit(float(score)))
    return cast(pl.Expr, expr.otherwise(pl.lit(None, dtype=pl.Float64)))


def _monotone_bins(col: str, p: Mapping[str, Any], direction: str) -> pl.Expr:
    """Bins fitted against an outcome (see :func:`fit_params`); transform is a ``steps`` lookup.

    The fitted ``scores`` already carry the direction: the bin with the lowest event rate scores
    100, the highest 0, linear in the rate between.

    >>> df = pl.DataFrame({"login_days": [0.0, 1.9, 2.0, 6.0, None]})
    >>> p = {"edges": [2.0, 5.0], "scores": [0.0, 62.5, 100.0]}
    >>> df.select(calibrate_expr("login_days", "monotone_bins", p))["login_days"].to_list()
    [0.0, 0.0, 62.5, 100.0, None]
    """
    return _steps_method(col, p, direction)


_TRANSFORMS = {
    "thresholds": _thresholds,
    "steps": _steps_method,
    "goal": _goal,
    "trend": _trend,
    "percentile": _percentile,
    "log_z": _log_z,
    "boolean": _boolean,
    "categorical": _categorical,
    "monotone_bins": _monotone_bins,
}


def calibrate_expr(column: str, method: str, params: Mapping[str, Any], direction: str = "higher_is_better") -> pl.Expr:
    """Expression scoring ``column`` 0..100 (100 = best) with ``method``; named after ``column``.

    Null where the raw value is null, NaN or infinite. Raises ``ValueError`` with the
    messages of :func:`check_params` when the parameters are wrong.

    >>> df = pl.DataFrame({"csat": [1.0, 3.0, 4.0, 5.0, None]})
    >>> df.select(calibrate_expr("csat", "thresholds", {"points": [[2, 0], [4.5, 100]]}))["csat"].to_list()
    [0.0, 40.0, 80.0, 100.0, None]
    """
    _validated(method, params, direction)
    expr = _TRANSFORMS[method](column, params, direction)
    return expr.cast(pl.Float64).clip(0.0, 100.0).alias(column)


# --------------------------------------------------------------------------------------------
# fitting


def _finite_values(values: pl.Series, what: str = "values") -> np.ndarray:
    arr: np.ndarray = values.cast(pl.Float64, strict=False).to_numpy()
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        raise ValueError(f"cannot fit: no finite {what} in column {values.name!r}")
    return arr


def fit_params(
    method: str,
    values: pl.Series,
    params: Mapping[str, Any] | None = None,
    direction: str = "higher_is_better",
    outcome: pl.Series | None = None,
) -> dict[str, Any]:
    """Learn the data-derived entries of ``method`` from a reference population.

    Returns a copy of ``params`` with the fitted entries filled in (plain floats and lists, ready
    for TOML). Methods that learn nothing return their parameters unchanged. Nulls, NaN and
    infinities in ``values`` are ignored.

    >>> ref = pl.Series("api_calls", [float(v) for v in range(101)])
    >>> fit_params("percentile", ref, {"n_quantiles": 5})["quantiles"]
    [0.0, 25.0, 50.0, 75.0, 100.0]
    >>> fitted = fit_params("log_z", pl.Series("x", [0.0, 0.0, 3.0, 3.0]), {})
    >>> round(fitted["center"], 4), round(fitted["scale"], 4), fitted["clip"]
    (0.6931, 0.6931, 2.5)
    """
    params = dict(params or {})
    if method not in METHODS:
        raise ValueError(check_params(method, params)[0])
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    msgs = check_params(method, params, direction, require_fitted=False)
    if msgs:
        raise ValueError(f"calibration '{method}': " + "; ".join(msgs))
    if method == "percentile":
        arr = _finite_values(values)
        n = int(params.get("n_quantiles", _DEFAULTS["percentile"]["n_quantiles"]))
        qs = np.quantile(arr, np.linspace(0.0, 1.0, n))
        params["quantiles"] = [float(v) for v in np.maximum.accumulate(qs)]
    elif method == "log_z":
        arr = _finite_values(values)
        logs = np.log1p(arr[arr > -1])
        if logs.size == 0:
            raise ValueError(f"cannot fit log_z: every value of {values.name!r} is <= -1")
        sd = float(np.std(logs))
        params["center"] = float(np.mean(logs))
        # a constant reference has no spread; 1.0 keeps the transform defined (everyone at 50)
        params["scale"] = sd if sd > 0 else 1.0
        params.setdefault("clip", _DEFAULTS["log_z"]["clip"])
    elif method == "monotone_bins":
        params.update(_fit_monotone_bins(values, outcome, params, direction))
    elif method == "categorical" and "map" not in params:
        params.update(fit_levels(values, outcome, params))
    return params


OTHER_LEVEL = "(other)"


def shrunk_rates(events: np.ndarray, counts: np.ndarray, prior_weight: float) -> tuple[np.ndarray, float]:
    """Event rate per group shrunk towards the overall rate: ``(k + m p) / (n + m)``.

    ``m`` (``prior_weight``) is how many rows of the overall rate ``p`` each group is given: a
    group of a few rows stays near ``p``, a large one keeps its own rate (a beta prior's posterior
    mean). Returns the rates and ``p``.

    >>> rates, p = shrunk_rates(np.array([1.0, 30.0]), np.array([2, 100]), prior_weight=10)
    >>> round(p, 4), [round(float(r), 4) for r in rates]
    (0.3039, [0.3366, 0.3004])
    """
    p = float(events.sum() / counts.sum())
    return (events + prior_weight * p) / (counts + prior_weight), p


def fit_levels(values: pl.Series, outcome: pl.Series | None, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Learn a categorical metric's level scores from the event rate of each level.

    Each level's rate is shrunk towards the overall rate (:func:`shrunk_rates`, ``prior_weight``
    rows, default 20); levels with fewer than ``min_level_rows`` rows (default 30) are pooled and
    share one rate (key ``"(other)"`` in ``rates``). Scores read the rate against the overall rate
    ``p`` on a fixed scale, so a level as risky as the book scores 50: for a bad outcome
    (``outcome_is = "bad"``) ``100 - 50 * rate / p`` (no events 100, twice the book's rate or more 0),
    for a good one ``50 * rate / p``. A column that barely separates churners stays near 50 instead
    of being stretched to 0..100. Empty cells are not a level.

    >>> v = pl.Series("plan", ["a"] * 40 + ["b"] * 40 + ["c"] * 4)
    >>> y = pl.Series([True] * 4 + [False] * 36 + [True] * 20 + [False] * 20 + [True] + [False] * 3)
    >>> fit_levels(v, y, {"prior_weight": 0, "min_level_rows": 30})["map"]
    {'a': 83.2, 'b': 16.0, 'c': 58.0}
    """
    params = dict(params or {})
    if outcome is None:
        raise ValueError(
            "categorical levels are learned from an outcome: pass outcome=<0/1 or Boolean series>, "
            "or give the level scores as map = {level = score}"
        )
    if len(outcome) != len(values):
        raise ValueError(f"categorical: values ({len(values)} rows) and outcome ({len(outcome)} rows) differ in length")
    m = float(params.get("prior_weight", _DEFAULTS["categorical"]["prior_weight"]))
    min_rows = int(params.get("min_level_rows", _DEFAULTS["categorical"]["min_level_rows"]))
    good = params.get("outcome_is", _DEFAULTS["categorical"]["outcome_is"]) == "good"
    text = values.cast(pl.Utf8) if values.dtype != pl.Boolean else values.cast(pl.Utf8)
    frame = (
        pl.DataFrame({"level": text, "y": outcome.cast(pl.Float64, strict=False)})
        .drop_nulls()
        .group_by("level")
        .agg(n=pl.len(), k=pl.col("y").sum())
        .sort("level")
    )
    if frame.is_empty():
        raise ValueError(f"cannot learn the levels of {values.name!r}: no row has both a level and an outcome")
    rare = frame["n"].to_numpy() < min_rows
    kept = frame.filter(~pl.Series(rare))
    pooled = frame.filter(pl.Series(rare))
    groups = kept["level"].to_list()
    counts = kept["n"].to_numpy().astype(float)
    events = kept["k"].to_numpy().astype(float)
    # rare levels are one group: "(other)", with the pooled counts (empty when none is rare)
    counts = np.append(counts, float(pooled["n"].sum()))
    events = np.append(events, float(pooled["k"].sum()))
    rates, overall = shrunk_rates(events, counts, m)

    def score(r: float) -> float:
        # relative risk on a fixed scale: the overall rate scores 50, twice it 0, no events 100
        rel = r / overall if overall > 0 else 1.0
        return round(float(np.clip(50.0 * rel if good else 100.0 - 50.0 * rel, 0.0, 100.0)), 6)

    level_rate = {g: float(r) for g, r in zip(groups, rates)}
    level_rate.update({lvl: float(rates[-1]) for lvl in pooled["level"].to_list()})
    level_count = dict(zip(frame["level"].to_list(), (int(n) for n in frame["n"].to_list())))
    return {
        "map": {lvl: score(r) for lvl, r in sorted(level_rate.items())},
        "rates": {
            **{lvl: round(r, 6) for lvl, r in sorted(level_rate.items())},
            OTHER_LEVEL: round(float(rates[-1]), 6),
        },
        "counts": level_count,
    }


def _bin_counts(v: np.ndarray, y: np.ndarray, edges: list[float]) -> tuple[np.ndarray, np.ndarray]:
    idx = np.searchsorted(np.asarray(edges, dtype=float), v, side="right")
    counts = np.bincount(idx, minlength=len(edges) + 1)
    events = np.bincount(idx, weights=y, minlength=len(edges) + 1)
    return counts, events


def _equal_frequency_edges(v: np.ndarray, n_bins: int) -> list[float]:
    """Edges of up to ``n_bins`` bins holding about equally many rows; ties stay in one bin.

    Plain quantile edges collapse on a mass point (90% of accounts with 0 tickets leaves one
    bin for everything else); here a bin closes once it holds its share of the rows still to
    place, so the bins a mass point cannot use go to the values above it.

    >>> _equal_frequency_edges(np.array([0.0] * 90 + [1.0] * 6 + [2.0] * 3 + [5.0]), 4)
    [1.0, 2.0, 5.0]
    """
    levels, counts = np.unique(v, return_counts=True)
    edges: list[float] = []
    left, bins_left, filled = v.size, n_bins, 0
    for k in range(len(levels) - 1):  # loops over distinct values, and only while fitting
        filled += counts[k]
        if bins_left > 1 and filled >= left / bins_left:
            edges.append(float(levels[k + 1]))
            left -= filled
            bins_left -= 1
            filled = 0
    return edges


def _fit_monotone_bins(
    values: pl.Series, outcome: pl.Series | None, params: Mapping[str, Any], direction: str
) -> dict[str, Any]:
    """Quantile bins, merged until each holds ``min_bin_size`` rows and risk is monotone.

    Monotonicity comes from isotonic regression of the bins' event rates (weighted by their
    sizes) on bin order; adjacent bins that end up with the same fitted rate are pooled. For a
    bad outcome (``outcome_is = "bad"``, the default, e.g. churned) the lowest-rate bin scores
    100 and the highest 0; for a good one (``"good"``, e.g. expanded) the other way round. When
    the metric carries no monotone signal at all a single bin remains and everyone scores 50.
    """
    from sklearn.isotonic import IsotonicRegression  # scikit-learn is loaded only when a model is fitted

    if outcome is None:
        raise ValueError("monotone_bins needs an outcome: pass outcome=<0/1 or Boolean series> to fit_params")
    if len(outcome) != len(values):
        raise ValueError(
            f"monotone_bins: values ({len(values)} rows) and outcome ({len(outcome)} rows) differ in length"
        )
    v = values.cast(pl.Float64, strict=False).to_numpy()
    y = outcome.cast(pl.Float64, strict=False).to_numpy()
    keep = np.isfinite(v) & np.isfinite(y)
    v, y = v[keep], y[keep]
    if v.size == 0:
        raise ValueError(f"cannot fit monotone_bins: no rows with both a finite {values.name!r} and an outcome")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"monotone_bins: outcome {outcome.name!r} must be 0/1 or Boolean")
    n_bins = int(params.get("n_bins", _DEFAULTS["monotone_bins"]["n_bins"]))
    min_size = int(params.get("min_bin_size", _DEFAULTS["monotone_bins"]["min_bin_size"]))

    edges = _equal_frequency_edges(v, n_bins)
    counts, events = _bin_counts(v, y, edges)
    while len(edges) and counts.min() < min_size:
        i = int(np.argmin(counts))
        # merge into the smaller neighbour; dropping edge k joins bins k and k+1
        if i == 0:
            k = 0
        elif i == len(counts) - 1:
            k = i - 1
        else:
            k = i - 1 if counts[i - 1] <= counts[i + 1] else i
        del edges[k]
        counts, events = _bin_counts(v, y, edges)

    rates = events / counts
    good = params.get("outcome_is", _DEFAULTS["monotone_bins"]["outcome_is"]) == "good"
    # a better metric value means fewer bad events, or more good ones
    iso = IsotonicRegression(increasing=(direction == "lower_is_better") == (not good))
    fitted = iso.fit_transform(np.arange(len(rates), dtype=float), rates, sample_weight=counts)
    # pool neighbours whose fitted rates coincide (they violated the monotone order)
    edges = [e for k, e in enumerate(edges) if not np.isclose(fitted[k], fitted[k + 1], rtol=0, atol=1e-12)]
    counts, events = _bin_counts(v, y, edges)
    rates = events / counts
    lo, hi = float(rates.min()), float(rates.max())
    if hi - lo <= 0:
        scores = [50.0] * len(rates)
    else:
        share = [(r - lo) / (hi - lo) if good else (hi - r) / (hi - lo) for r in rates]
        scores = [round(float(np.clip(100.0 * x, 0.0, 100.0)), 6) for x in share]
    return {
        "edges": edges,
        "scores": scores,
        "rates": [round(float(r), 6) for r in rates],
        "counts": [int(c) for c in counts],
    }


# --------------------------------------------------------------------------------------------
# a whole model


def fit_calibration(
    model: ScoreModel, snapshots: pl.DataFrame, *, outcome: pl.Series | str | None = None
) -> ScoreModel:
    """A new model with the data-derived calibrations (percentile, log_z, monotone bins) fitted.

    The fitted parameters are frozen into the model, so ``save`` stores them and scores do
    not drift when the population changes. ``outcome`` (a Boolean series aligned with the
    rows, or the name of a column of ``snapshots``) is needed by methods fitted against an
    outcome. Variants that override a fitted metric's parameters are fitted on their own rows.
    """
    if isinstance(outcome, str):
        outcome = snapshots[outcome]
    if outcome is not None and len(outcome) != snapshots.height:
        raise ModelError(
            f"{model._where()}fit_calibration: outcome has {len(outcome)} values "
            f"but snapshots have {snapshots.height} rows"
        )
    model.check_columns(snapshots.columns)
    frame = snapshots if outcome is None else snapshots.with_columns(outcome.alias("__outcome"))

    def fit(m: Metric, params: dict[str, Any], rows: pl.DataFrame) -> dict[str, Any]:
        method = METHODS[m.method]
        out = rows["__outcome"] if "__outcome" in rows.columns else None
        learns_levels = m.method == "categorical" and "map" not in params
        if getattr(method, "needs_outcome", False) or m.method == "monotone_bins" or learns_levels:
            if out is None:
                raise ModelError(
                    f"{model._where()}metric {m.name}: method {m.method} is fitted against "
                    "an outcome; pass outcome= to fit_calibration"
                )
        try:
            return cast(
                dict[str, Any], _plain(fit_params(m.method, rows[m.column], params, direction=m.direction, outcome=out))
            )
        except ValueError as exc:
            raise ModelError(f"{model._where()}metric {m.name}: {exc}") from None

    metrics = []
    for m in model.metrics:
        fitted = METHODS[m.method].fitted
        metrics.append(replace(m, params=fit(m, m.params, frame)) if fitted else m)
    variants = []
    for v in model.variants:
        vparams = dict(v.params)
        for name, override in v.params.items():
            base = next(m for m in metrics if m.name == name)
            if METHODS[base.method].fitted:
                rows = frame.filter(v.matches())
                vparams[name] = fit(base, {**base.params, **override}, rows) if rows.height else override
        variants.append(replace(v, params=vparams))
    new = replace(model, metrics=metrics, variants=variants)
    new.validate()
    return new
