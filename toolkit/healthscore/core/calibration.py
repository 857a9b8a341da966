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

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

__all__ = [
    "METHODS",
    "DIRECTIONS",
    "Method",
    "check_params",
    "calibrate_expr",
    "fit_params",
    "describe",
]

DIRECTIONS = ("higher_is_better", "lower_is_better")


@dataclass(frozen=True)
class Method:
    """What a calibration method needs.

    ``required`` parameters must be present (for fitted methods they include the fitted entries,
    listed again in ``fitted_keys``); ``optional`` ones may be present; anything else is an error.
    """

    name: str
    required: frozenset[str]
    optional: frozenset[str]
    fitted: bool = False
    needs_history: bool = False
    fitted_keys: frozenset[str] = frozenset()
    summary: str = ""

    @property
    def allowed(self) -> frozenset[str]:
        return self.required | self.optional


def _m(name: str, required: Sequence[str], optional: Sequence[str] = (), *, fitted_keys: Sequence[str] = (),
       needs_history: bool = False, summary: str = "") -> Method:
    return Method(name, frozenset(required), frozenset(optional), fitted=bool(fitted_keys),
                  needs_history=needs_history, fitted_keys=frozenset(fitted_keys), summary=summary)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        _m("thresholds", ["points"], summary="piecewise linear between [raw, score] breakpoints"),
        _m("steps", ["edges", "scores"], summary="step function: one score per interval between edges"),
        _m("goal", ["start_column", "due_column"], ["target", "date_column", "full_at", "zero_at", "min_expected"],
           summary="attainment against a goal pro-rated to the elapsed part of its period"),
        _m("trend", ["window", "points"], ["min_base", "account_column", "date_column"], needs_history=True,
           summary="relative change of the mean over the last window against the window before"),
        _m("percentile", ["quantiles"], ["n_quantiles"], fitted_keys=["quantiles"],
           summary="percentile within a frozen reference population"),
        _m("log_z", ["center", "scale"], ["clip"], fitted_keys=["center", "scale"],
           summary="z-score of log1p(value) against a frozen reference, clipped"),
        _m("boolean", ["true_score", "false_score"], summary="1/true and 0/false each get a score"),
        _m("categorical", ["map"], ["labels"], summary="each level (as a string) maps to a score"),
        _m("monotone_bins", ["edges", "scores"], ["n_bins", "min_bin_size", "outcome_is", "rates", "counts"],
           fitted_keys=["edges", "scores"],
           summary="bins fitted against an outcome so that risk is monotone in the metric"),
    )
}

# defaults of optional parameters (documented in each method's docstring)
_DEFAULTS: dict[str, dict[str, Any]] = {
    "goal": {"target": 1.0, "date_column": "as_of", "full_at": 1.0, "zero_at": 0.0},
    "trend": {"min_base": 1e-9, "account_column": "account_id", "date_column": "as_of"},
    "percentile": {"n_quantiles": 101},
    "log_z": {"clip": 2.5},
    "monotone_bins": {"n_bins": 10, "min_bin_size": 50, "outcome_is": "bad"},
}


# --------------------------------------------------------------------------------------------
# parameter checks


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_seq(x: Any) -> bool:
    return isinstance(x, Sequence) and not isinstance(x, (str, bytes))


def _check_scores(label: str, scores: Any) -> list[str]:
    """``label`` names the list in the message, e.g. "'scores'"."""
    if not _is_seq(scores) or not scores or not all(_is_num(s) for s in scores):
        return [f"{label} must be a non-empty list of numbers, got {scores!r}"]
    bad = [s for s in scores if not 0 <= float(s) <= 100]
    return [f"{label} must lie in 0..100, got {bad[0]!r}"] if bad else []


def _check_increasing(label: str, xs: Any, *, strict: bool = True, min_len: int = 1) -> list[str]:
    if not _is_seq(xs) or len(xs) < min_len or not all(_is_num(x) for x in xs):
        return [f"{label} must be a list of at least {min_len} finite numbers, got {xs!r}"]
    for a, b in zip(xs, xs[1:]):
        if b < a or (strict and b == a):
            word = "strictly increasing" if strict else "non-decreasing"
            return [f"{label} must be {word}: {a!r} is followed by {b!r}"]
    return []


def _check_direction(name: str, scores: Sequence[float], direction: str | None) -> list[str]:
    """Scores must not go against the metric's stated direction."""
    if direction is None or len(scores) < 2:
        return []
    diffs = np.diff(np.asarray(scores, dtype=float))
    if direction == "higher_is_better" and (diffs < 0).any():
        return [f"'{name}' scores go down although direction is higher_is_better; "
                "make them non-decreasing or set direction = \"lower_is_better\""]
    if direction == "lower_is_better" and (diffs > 0).any():
        return [f"'{name}' scores go up although direction is lower_is_better; "
                "make them non-increasing or set direction = \"higher_is_better\""]
    return []


def _check_points(name: str, points: Any, direction: str | None) -> list[str]:
    if (not _is_seq(points) or len(points) < 2
            or not all(_is_seq(p) and len(p) == 2 and all(_is_num(v) for v in p) for p in points)):
        return [f"'{name}' must be a list of at least two [raw, score] pairs of numbers, got {points!r}"]
    raws, scores = [p[0] for p in points], [p[1] for p in points]
    msgs = _check_increasing(f"'{name}' raw values", raws) + _check_scores(f"'{name}' scores", scores)
    return msgs or _check_direction(name, scores, direction)


def _check_method_values(method: str, p: Mapping[str, Any], direction: str | None) -> list[str]:
    msgs: list[str] = []
    if method == "thresholds":
        msgs += _check_points("points", p["points"], direction)
    elif method in ("steps", "monotone_bins"):
        edges, scores = p["edges"], p["scores"]
        msgs += _check_increasing("'edges'", edges, min_len=0)
        msgs += _check_scores("'scores'", scores)
        if not msgs and len(scores) != len(edges) + 1:
            msgs.append(f"'scores' needs one more entry than 'edges' (len(edges) = {len(edges)}, "
                        f"len(scores) = {len(scores)})")
        if not msgs:
            msgs += _check_direction("scores", scores, direction)
    elif method == "goal":
        for key in ("start_column", "due_column", "date_column"):
            if key in p and (not isinstance(p[key], str) or not p[key]):
                msgs.append(f"'{key}' must be a column name, got {p[key]!r}")
        for key in ("target", "full_at", "zero_at", "min_expected"):
            if key in p and not _is_num(p[key]):
                msgs.append(f"'{key}' must be a number, got {p[key]!r}")
        if "min_expected" in p and _is_num(p["min_expected"]) and p["min_expected"] < 0:
            msgs.append(f"'min_expected' must not be negative, got {p['min_expected']!r}")
        if "target" in p and _is_num(p["target"]) and p["target"] <= 0:
            msgs.append(f"'target' must be positive, got {p['target']!r}")
        full, zero = p.get("full_at", 1.0), p.get("zero_at", 0.0)
        if _is_num(full) and _is_num(zero) and full <= zero:
            msgs.append(f"'full_at' ({full!r}) must be greater than 'zero_at' ({zero!r})")
    elif method == "trend":
        if not _is_int(p["window"]) or p["window"] < 1:
            msgs.append(f"'window' must be a positive integer (snapshots), got {p['window']!r}")
        if "min_base" in p and (not _is_num(p["min_base"]) or p["min_base"] <= 0):
            msgs.append(f"'min_base' must be a positive number, got {p['min_base']!r}")
        for key in ("account_column", "date_column"):
            if key in p and (not isinstance(p[key], str) or not p[key]):
                msgs.append(f"'{key}' must be a column name, got {p[key]!r}")
        msgs += _check_points("points", p["points"], direction)
    elif method == "percentile":
        msgs += _check_increasing("'quantiles'", p["quantiles"], strict=False, min_len=2)
    elif method == "log_z":
        if not _is_num(p["center"]):
            msgs.append(f"'center' must be a number, got {p['center']!r}")
        if not _is_num(p["scale"]) or p["scale"] <= 0:
            msgs.append(f"'scale' must be a positive number, got {p['scale']!r}")
    elif method == "boolean":
        for key in ("true_score", "false_score"):
            if not _is_num(p[key]) or not 0 <= p[key] <= 100:
                msgs.append(f"'{key}' must be a number in 0..100, got {p[key]!r}")
        if not msgs and direction is not None:
            t, f = float(p["true_score"]), float(p["false_score"])
            if (direction == "higher_is_better" and t < f) or (direction == "lower_is_better" and t > f):
                msgs.append(f"'true_score' ({t:g}) and 'false_score' ({f:g}) disagree with direction "
                            f"{direction}; swap them or change the direction")
    elif method == "categorical":
        mapping = p["map"]
        if not isinstance(mapping, Mapping) or not mapping:
            msgs.append(f"'map' must be a non-empty table of level = score, got {mapping!r}")
        else:
            for k, v in mapping.items():
                if not _is_num(v) or not 0 <= v <= 100:
                    msgs.append(f"'map' level {k!r} must map to a number in 0..100, got {v!r}")
        labels = p.get("labels")
        if labels is not None:
            if not isinstance(labels, Mapping):
                msgs.append(f"'labels' must be a table of level = meaning, got {labels!r}")
            elif isinstance(mapping, Mapping):
                for k, v in labels.items():
                    if str(k) not in {str(x) for x in mapping}:
                        msgs.append(f"'labels' has level {k!r} that is not in 'map'")
                    if not isinstance(v, str):
                        msgs.append(f"'labels' level {k!r} must be text, got {v!r}")
    return msgs


def check_params(method: str, params: Mapping[str, Any], direction: str | None = None, *,
                 require_fitted: bool = True) -> list[str]:
    """Problems with ``params`` for ``method``, as plain messages; an empty list means fine.

    ``direction`` (optional) also checks that scores given in the parameters agree with it.
    With ``require_fitted=False`` the fitted entries of a data-derived method may be missing
    (they are filled in by :func:`fit_params`).

    >>> check_params("thresholds", {"points": [[0, 0], [5, 100]]})
    []
    >>> check_params("thresholds", {"points": [[5, 0], [0, 100]], "slope": 1})
    ["unknown parameter 'slope' for method 'thresholds' (allowed: points)", "'points' raw values must be strictly increasing: 5 is followed by 0"]
    >>> check_params("treshold", {})
    ["unknown calibration method 'treshold' (did you mean 'thresholds'?); known methods: boolean, categorical, goal, log_z, monotone_bins, percentile, steps, thresholds, trend"]
    """
    if method not in METHODS:
        close = difflib.get_close_matches(str(method), METHODS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return [f"unknown calibration method {method!r}{hint}; known methods: {', '.join(sorted(METHODS))}"]
    if not isinstance(params, Mapping):
        return [f"parameters of method '{method}' must be a table, got {type(params).__name__}"]
    msgs: list[str] = []
    if direction is not None and direction not in DIRECTIONS:
        msgs.append(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        direction = None
    spec = METHODS[method]
    keys = set(params)
    for k in sorted(keys - spec.allowed, key=str):
        msgs.append(f"unknown parameter {k!r} for method '{method}' (allowed: {', '.join(sorted(spec.allowed))})")
    needed = spec.required if require_fitted else spec.required - spec.fitted_keys
    missing = sorted(needed - keys)
    for k in missing:
        fitted_hint = " (fit it with fit_params)" if k in spec.fitted_keys else ""
        msgs.append(f"missing parameter '{k}' for method '{method}'{fitted_hint}")
    if missing:
        return msgs
    msgs += _check_fit_settings(params)
    if spec.required - keys:
        return msgs  # an unfitted model: its fitted entries are checked once they exist
    return msgs + _check_method_values(method, params, direction)


def _check_fit_settings(params: Mapping[str, Any]) -> list[str]:
    """Settings that steer fitting (present before and after a fit)."""
    msgs = []
    ints = {"n_quantiles": 2, "n_bins": 2, "min_bin_size": 1}
    for key, low in ints.items():
        if key in params and (not _is_int(params[key]) or params[key] < low):
            msgs.append(f"'{key}' must be an integer >= {low}, got {params[key]!r}")
    if "clip" in params and (not _is_num(params["clip"]) or params["clip"] <= 0):
        msgs.append(f"'clip' must be a positive number, got {params['clip']!r}")
    if "outcome_is" in params and params["outcome_is"] not in ("bad", "good"):
        msgs.append(f"'outcome_is' must be \"bad\" (e.g. churned) or \"good\" (e.g. expanded), "
                    f"got {params['outcome_is']!r}")
    return msgs


def _validated(method: str, params: Mapping[str, Any], direction: str) -> None:
    msgs = check_params(method, params, direction)
    if msgs:
        raise ValueError(f"calibration '{method}': " + "; ".join(msgs))


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
        return expr.when(x.is_not_null()).then(pl.lit(ys[-1]))
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
        return expr.when(x.is_not_null()).then(pl.lit(scores[-1]))
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
    """
    x = _clean(pl.col(col))
    return (pl.when(x == 1.0).then(pl.lit(float(p["true_score"])))
            .when(x == 0.0).then(pl.lit(float(p["false_score"]))))


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
    return expr.otherwise(pl.lit(None, dtype=pl.Float64))


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


def calibrate_expr(column: str, method: str, params: Mapping[str, Any],
                   direction: str = "higher_is_better") -> pl.Expr:
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
    arr = values.cast(pl.Float64, strict=False).to_numpy()
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        raise ValueError(f"cannot fit: no finite {what} in column {values.name!r}")
    return arr


def fit_params(method: str, values: pl.Series, params: Mapping[str, Any] | None = None,
               direction: str = "higher_is_better", outcome: pl.Series | None = None) -> dict[str, Any]:
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
    return params


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


def _fit_monotone_bins(values: pl.Series, outcome: pl.Series | None, params: Mapping[str, Any],
                       direction: str) -> dict[str, Any]:
    """Quantile bins, merged until each holds ``min_bin_size`` rows and risk is monotone.

    Monotonicity comes from isotonic regression of the bins' event rates (weighted by their
    sizes) on bin order; adjacent bins that end up with the same fitted rate are pooled. For a
    bad outcome (``outcome_is = "bad"``, the default, e.g. churned) the lowest-rate bin scores
    100 and the highest 0; for a good one (``"good"``, e.g. expanded) the other way round. When
    the metric carries no monotone signal at all a single bin remains and everyone scores 50.
    """
    from sklearn.isotonic import IsotonicRegression

    if outcome is None:
        raise ValueError("monotone_bins needs an outcome: pass outcome=<0/1 or Boolean series> to fit_params")
    if len(outcome) != len(values):
        raise ValueError(f"monotone_bins: values ({len(values)} rows) and outcome ({len(outcome)} rows) differ in length")
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
# plain-English description for reports


def _fmt(x: float, unit: str = "") -> str:
    text = f"{float(x):,.4g}" if abs(float(x)) < 1e6 else f"{float(x):,.0f}"
    return f"{text} {unit}".rstrip()


def _describe_points(points: Sequence[Sequence[float]], unit: str, pct: bool = False) -> str:
    def raw(v: float) -> str:
        return f"{float(v):+.0%}" if pct else _fmt(v, unit)

    parts = []
    for i, (x, s) in enumerate(points):
        tail = " or less" if i == 0 else " or more" if i == len(points) - 1 else ""
        parts.append(f"{_fmt(s)} at {raw(x)}{tail}")
    return ", ".join(parts) + ", linear in between"


def _describe_steps(edges: Sequence[float], scores: Sequence[float], unit: str) -> str:
    if not edges:
        return f"{_fmt(scores[0])} for every value"
    parts = [f"below {_fmt(edges[0], unit)}: {_fmt(scores[0])}"]
    parts += [f"{_fmt(a)} to {_fmt(b, unit)}: {_fmt(s)}" for a, b, s in zip(edges, edges[1:], scores[1:])]
    parts.append(f"{_fmt(edges[-1], unit)} or more: {_fmt(scores[-1])}")
    return "; ".join(parts)


def describe(method: str, params: Mapping[str, Any], direction: str = "higher_is_better", unit: str = "") -> str:
    """One plain-English line saying how raw values become scores, for reports and tooltips.

    >>> describe("thresholds", {"points": [[0, 0], [5, 100]]}, unit="login days")
    '0 at 0 login days or less, 100 at 5 login days or more, linear in between'
    >>> describe("steps", {"edges": [7, 9], "scores": [0, 50, 100]})
    'below 7: 0; 7 to 9: 50; 9 or more: 100'
    >>> describe("categorical", {"map": {"1": 0, "5": 100}, "labels": {"1": "at risk"}})
    '1 (at risk): 0; 5: 100'
    """
    p = dict(params)
    lower = direction == "lower_is_better"
    if method == "thresholds":
        return _describe_points(p["points"], unit)
    if method == "steps":
        return _describe_steps(p["edges"], p["scores"], unit)
    if method == "monotone_bins":
        if "edges" not in p:
            return "bins fitted against an outcome (not fitted yet)"
        return _describe_steps(p["edges"], p["scores"], unit) + " (bins fitted against the outcome)"
    if method == "goal":
        q = {**_DEFAULTS["goal"], **p}
        return (f"progress against a goal of {_fmt(q['target'], unit)} pro-rated from {q['start_column']} to "
                f"{q['due_column']}: 0 at {q['zero_at']:.0%} of the expected progress, 100 at "
                f"{q['full_at']:.0%} or more" + (" (reversed)" if lower else ""))
    if method == "trend":
        q = {**_DEFAULTS["trend"], **p}
        return (f"change of the mean over the last {q['window']} snapshots against the {q['window']} before: "
                + _describe_points(q["points"], "", pct=True))
    if method == "percentile":
        if "quantiles" not in p:
            return "percentile in a reference population (not fitted yet)"
        qs = p["quantiles"]
        median = float(np.interp(0.5, np.linspace(0, 1, len(qs)), qs))
        best = "lowest" if lower else "highest"
        return (f"percentile in the reference population (median {_fmt(median, unit)}); "
                f"the {best} values score 100")
    if method == "log_z":
        if "center" not in p or "scale" not in p:
            return "log-scale z-score against a reference population (not fitted yet)"
        clip = float(p.get("clip", _DEFAULTS["log_z"]["clip"]))
        c, s = float(p["center"]), float(p["scale"])
        low, mid, high = (math.expm1(c - clip * s), math.expm1(c), math.expm1(c + clip * s))
        a, b = (100, 0) if lower else (0, 100)
        return (f"{a} at {_fmt(low, unit)} or less, 50 at {_fmt(mid, unit)}, {b} at {_fmt(high, unit)} or more, "
                "on a log scale")
    if method == "boolean":
        return f"yes: {_fmt(p['true_score'])}, no: {_fmt(p['false_score'])}"
    if method == "categorical":
        labels = {str(k): v for k, v in p.get("labels", {}).items()}
        return "; ".join(f"{k}{f' ({labels[str(k)]})' if str(k) in labels else ''}: {_fmt(v)}"
                         for k, v in p["map"].items())
    raise ValueError(check_params(method, p)[0])
