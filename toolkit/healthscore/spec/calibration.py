"""Calibration methods as declarations: their names, parameters and checks, and the plain-English
description of a calibration. The expressions that compute sub-scores live in
:mod:`healthscore.core.calibration`.

>>> check_params("thresholds", {"points": [[0, 0], [5, 100]]})
[]
>>> describe("thresholds", {"points": [[0, 0], [5, 100]]}, unit="days")
'0 at 0 days or less, 100 at 5 days or more, linear in between'
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["METHODS", "DIRECTIONS", "Method", "check_params", "describe"]

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


def _m(
    name: str,
    required: Sequence[str],
    optional: Sequence[str] = (),
    *,
    fitted_keys: Sequence[str] = (),
    needs_history: bool = False,
    summary: str = "",
) -> Method:
    return Method(
        name,
        frozenset(required),
        frozenset(optional),
        fitted=bool(fitted_keys),
        needs_history=needs_history,
        fitted_keys=frozenset(fitted_keys),
        summary=summary,
    )


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        _m("thresholds", ["points"], ["monotone"], summary="piecewise linear between [raw, score] breakpoints"),
        _m("steps", ["edges", "scores"], ["monotone"], summary="step function: one score per interval between edges"),
        _m(
            "goal",
            ["start_column", "due_column"],
            ["target", "date_column", "full_at", "zero_at", "min_expected"],
            summary="attainment against a goal pro-rated to the elapsed part of its period",
        ),
        _m(
            "trend",
            ["window", "points"],
            ["min_base", "account_column", "date_column"],
            needs_history=True,
            summary="relative change of the mean over the last window against the window before",
        ),
        _m(
            "percentile",
            ["quantiles"],
            ["n_quantiles"],
            fitted_keys=["quantiles"],
            summary="percentile within a frozen reference population",
        ),
        _m(
            "log_z",
            ["center", "scale"],
            ["clip"],
            fitted_keys=["center", "scale"],
            summary="z-score of log1p(value) against a frozen reference, clipped",
        ),
        _m("boolean", ["true_score", "false_score"], summary="1/true and 0/false each get a score"),
        _m(
            "categorical",
            ["map"],
            ["labels", "prior_weight", "min_level_rows", "outcome_is", "rates", "counts"],
            fitted_keys=["map"],
            summary="each level (as a string) maps to a score, given or learned from the event rate per level",
        ),
        _m(
            "monotone_bins",
            ["edges", "scores"],
            ["n_bins", "min_bin_size", "outcome_is", "rates", "counts"],
            fitted_keys=["edges", "scores"],
            summary="bins fitted against an outcome so that risk is monotone in the metric",
        ),
    )
}

# defaults of optional parameters (documented in each method's docstring)
_DEFAULTS: dict[str, dict[str, Any]] = {
    "goal": {"target": 1.0, "date_column": "as_of", "full_at": 1.0, "zero_at": 0.0},
    "trend": {"min_base": 1e-9, "account_column": "account_id", "date_column": "as_of"},
    "percentile": {"n_quantiles": 101},
    "log_z": {"clip": 2.5},
    "monotone_bins": {"n_bins": 10, "min_bin_size": 50, "outcome_is": "bad"},
    "categorical": {"prior_weight": 20.0, "min_level_rows": 30, "outcome_is": "bad"},
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
        return [
            f"'{name}' scores go down although direction is higher_is_better; "
            'make them non-decreasing or set direction = "lower_is_better"'
        ]
    if direction == "lower_is_better" and (diffs > 0).any():
        return [
            f"'{name}' scores go up although direction is lower_is_better; "
            'make them non-increasing or set direction = "higher_is_better"'
        ]
    return []


def _check_points(name: str, points: Any, direction: str | None) -> list[str]:
    if (
        not _is_seq(points)
        or len(points) < 2
        or not all(_is_seq(p) and len(p) == 2 and all(_is_num(v) for v in p) for p in points)
    ):
        return [f"'{name}' must be a list of at least two [raw, score] pairs of numbers, got {points!r}"]
    raws, scores = [p[0] for p in points], [p[1] for p in points]
    msgs = _check_increasing(f"'{name}' raw values", raws) + _check_scores(f"'{name}' scores", scores)
    return msgs or _check_direction(name, scores, direction)


def _check_method_values(method: str, p: Mapping[str, Any], direction: str | None) -> list[str]:
    msgs: list[str] = []
    if "monotone" in p:
        if not isinstance(p["monotone"], bool):
            return [f"'monotone' must be true or false, got {p['monotone']!r}"]
        if not p["monotone"]:
            # a curve learned from data may rise and fall (a U-shape): the direction names the
            # better end only, so the scores are not held to it
            direction = None
    if method == "thresholds":
        msgs += _check_points("points", p["points"], direction)
    elif method in ("steps", "monotone_bins"):
        edges, scores = p["edges"], p["scores"]
        msgs += _check_increasing("'edges'", edges, min_len=0)
        msgs += _check_scores("'scores'", scores)
        if not msgs and len(scores) != len(edges) + 1:
            msgs.append(
                f"'scores' needs one more entry than 'edges' (len(edges) = {len(edges)}, len(scores) = {len(scores)})"
            )
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
                msgs.append(
                    f"'true_score' ({t:g}) and 'false_score' ({f:g}) disagree with direction "
                    f"{direction}; swap them or change the direction"
                )
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


def check_params(
    method: str, params: Mapping[str, Any], direction: str | None = None, *, require_fitted: bool = True
) -> list[str]:
    """Problems with ``params`` for ``method``, as plain messages; an empty list means fine.

    ``direction`` (optional) also checks that scores given in the parameters agree with it.
    With ``require_fitted=False`` the fitted entries of a data-derived method may be missing
    (they are filled in by :func:`fit_params`).

    >>> check_params("thresholds", {"points": [[0, 0], [5, 100]]})
    []
    >>> check_params("thresholds", {"points": [[5, 0], [0, 100]], "slope": 1})
    ["unknown parameter 'slope' for method 'thresholds' (allowed: monotone, points)", "'points' raw values must be strictly increasing: 5 is followed by 0"]
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
    ints = {"n_quantiles": 2, "n_bins": 2, "min_bin_size": 1, "min_level_rows": 1}
    if "prior_weight" in params and (not _is_num(params["prior_weight"]) or params["prior_weight"] < 0):
        msgs.append(
            f"'prior_weight' must be a number >= 0 (rows of the overall rate added to each level), "
            f"got {params['prior_weight']!r}"
        )
    for key, low in ints.items():
        if key in params and (not _is_int(params[key]) or params[key] < low):
            msgs.append(f"'{key}' must be an integer >= {low}, got {params[key]!r}")
    if "clip" in params and (not _is_num(params["clip"]) or params["clip"] <= 0):
        msgs.append(f"'clip' must be a positive number, got {params['clip']!r}")
    if "outcome_is" in params and params["outcome_is"] not in ("bad", "good"):
        msgs.append(
            f'\'outcome_is\' must be "bad" (e.g. churned) or "good" (e.g. expanded), got {params["outcome_is"]!r}'
        )
    return msgs


def _validated(method: str, params: Mapping[str, Any], direction: str) -> None:
    msgs = check_params(method, params, direction)
    if msgs:
        raise ValueError(f"calibration '{method}': " + "; ".join(msgs))


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
        return (
            f"progress against a goal of {_fmt(q['target'], unit)} pro-rated from {q['start_column']} to "
            f"{q['due_column']}: 0 at {q['zero_at']:.0%} of the expected progress, 100 at "
            f"{q['full_at']:.0%} or more" + (" (reversed)" if lower else "")
        )
    if method == "trend":
        q = {**_DEFAULTS["trend"], **p}
        return (
            f"change of the mean over the last {q['window']} snapshots against the {q['window']} before: "
            + _describe_points(q["points"], "", pct=True)
        )
    if method == "percentile":
        if "quantiles" not in p:
            return "percentile in a reference population (not fitted yet)"
        qs = p["quantiles"]
        median = float(np.interp(0.5, np.linspace(0, 1, len(qs)), qs))
        best = "lowest" if lower else "highest"
        return f"percentile in the reference population (median {_fmt(median, unit)}); the {best} values score 100"
    if method == "log_z":
        if "center" not in p or "scale" not in p:
            return "log-scale z-score against a reference population (not fitted yet)"
        clip = float(p.get("clip", _DEFAULTS["log_z"]["clip"]))
        c, s = float(p["center"]), float(p["scale"])
        low, mid, high = (math.expm1(c - clip * s), math.expm1(c), math.expm1(c + clip * s))
        a, b = (100, 0) if lower else (0, 100)
        return (
            f"{a} at {_fmt(low, unit)} or less, 50 at {_fmt(mid, unit)}, {b} at {_fmt(high, unit)} or more, "
            "on a log scale"
        )
    if method == "boolean":
        return f"yes: {_fmt(p['true_score'])}, no: {_fmt(p['false_score'])}"
    if method == "categorical":
        labels = {str(k): v for k, v in p.get("labels", {}).items()}
        return "; ".join(
            f"{k}{f' ({labels[str(k)]})' if str(k) in labels else ''}: {_fmt(v)}" for k, v in p["map"].items()
        )
    raise ValueError(check_params(method, p)[0])
