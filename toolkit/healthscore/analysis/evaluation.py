"""Backtesting: hold any score model against what actually happened.

Two layers:

* pure metric functions (arrays in, floats or small frames out), cheap enough for the weight
  tuner to call on every slider move over 100,000 accounts: :func:`auc`, :func:`auc_ci`,
  :func:`pr_auc`, :func:`top_decile_lift`, :func:`capture_rate`, :func:`brier`,
  :func:`reliability_curve`, :func:`expected_calibration_error`, :func:`band_table`,
  :func:`red_band_confusion`, :func:`cutoff_for_precision`, :func:`cutoff_for_capacity`, and the
  score-to-probability map :class:`ProbabilityMap`;
* :func:`evaluate`, which labels snapshots point-in-time, splits them by time, scores every model
  on the same holdout and returns an :class:`Evaluation` (tables, charts, summary, HTML report).

Ranking metrics take ``risk``: a number that is *higher when the event is more likely*. Scores
are "higher is healthier", so for churn ``risk = -score``; for expansion a higher score means
more likely to expand, so ``risk = score``. :func:`risk_of` applies that rule by outcome.

>>> import numpy as np
>>> y = np.array([0, 0, 1, 1])
>>> score = np.array([80.0, 60.0, 70.0, 20.0])      # higher is healthier
>>> auc(y, risk_of(score, "churned"))
0.75
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal, NamedTuple

import numpy as np
import polars as pl
from scipy import stats
from sklearn import metrics as skm

from healthscore.core.extract import cadence_of, is_cross_sectional, observation_end
from healthscore.core.kernels import wilson_interval
from healthscore.core.labels import label_outcomes
from healthscore.core.scoring import score as score_frame
from healthscore.errors import HealthscoreError
from healthscore.io import files
from healthscore.results import Summary
from healthscore.spec.outcomes import Outcome, horizon_words, resolve_outcome

__all__ = [
    "auc",
    "auc_ci",
    "auc_difference",
    "Difference",
    "pr_auc",
    "top_decile_lift",
    "capture_rate",
    "brier",
    "reliability_curve",
    "expected_calibration_error",
    "band_table",
    "red_band_confusion",
    "cutoff_for_precision",
    "cutoff_for_capacity",
    "roc_points",
    "gains_curve",
    "risk_of",
    "event_is_low_score",
    "ProbabilityMap",
    "Interval",
    "Cutoff",
    "evaluate",
    "Evaluation",
    "time_split",
    "compare_models",
]

ArrayLike = Any  # numpy array, polars Series, list


# ---------------------------------------------------------------- inputs
def event_is_low_score(outcome: str | Outcome) -> bool:
    """True when a low score signals the outcome (churn), False when a high one does (expansion).

    The rule is the outcome's definition (:mod:`healthscore.spec.outcomes`), never its name.

    >>> event_is_low_score("churned"), event_is_low_score("expanded")
    (True, False)
    """
    return resolve_outcome(outcome).adverse


def risk_of(score: ArrayLike, outcome: str = "churned") -> np.ndarray:
    """Turn scores (higher is healthier) into risk (higher is more likely ``outcome``).

    >>> risk_of([10.0, 90.0], "churned").tolist(), risk_of([10.0, 90.0], "expanded").tolist()
    ([-10.0, -90.0], [10.0, 90.0])
    """
    s = _floats(score)
    return -s if event_is_low_score(outcome) else s


def _floats(x: ArrayLike) -> np.ndarray:
    if isinstance(x, pl.Series):
        return x.cast(pl.Float64).to_numpy()
    return np.asarray(x, dtype=np.float64)


def _pair(y: ArrayLike, x: ArrayLike, what: str = "risk", with_mask: bool = False) -> Any:
    """Outcome and predictor as float arrays, rows with a missing value in either dropped
    (and, ``with_mask``, the mask of kept rows)."""
    yy, xx = _floats(y), _floats(x)
    if yy.shape != xx.shape:
        raise ValueError(f"the outcome has {yy.size} values but {what} has {xx.size}; pass one value per row")
    keep = ~(np.isnan(yy) | np.isnan(xx))
    if not keep.all():
        yy, xx = yy[keep], xx[keep]
    if yy.size and not ((yy == 0.0) | (yy == 1.0)).all():
        raise ValueError("the outcome must be 0/1 (or Boolean); found other values")
    return (yy, xx, keep) if with_mask else (yy, xx)


def _both_classes(y: np.ndarray) -> bool:
    n1 = y.sum()
    return 0 < n1 < y.size


# ---------------------------------------------------------------- ranking metrics
class Interval(NamedTuple):
    """An estimate with its confidence interval."""

    estimate: float
    lower: float
    upper: float


def auc(y: ArrayLike, risk: ArrayLike) -> float:
    """Area under the ROC curve (``sklearn.metrics.roc_auc_score``); NaN when only one class is present.

    >>> auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    return _ranking_metric(skm.roc_auc_score, y, risk)


def _ranking_metric(fn: Any, y: ArrayLike, risk: ArrayLike) -> float:
    """A scikit-learn ranking metric on the complete rows; NaN unless both classes are present."""
    yy, xx = _pair(y, risk)
    return float(fn(yy, xx)) if _both_classes(yy) else float("nan")


def auc_ci(y: ArrayLike, risk: ArrayLike, *, confidence: float = 0.95, groups: ArrayLike | None = None) -> Interval:
    """AUC with a DeLong confidence interval (normal approximation, clipped to 0..1).

    Without ``groups`` every row is taken as independent (DeLong, DeLong and Clarke-Pearson 1988,
    computed from one sort in O(n log n)). Repeated snapshots of one account are *not*
    independent, so pass ``groups=account_id``: the variance then sums the placement values within
    each account first (Obuchowski's clustered extension of DeLong), which widens the interval
    honestly instead of counting one account's 13 weekly rows as 13 pieces of evidence.

    >>> ci = auc_ci([0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    >>> round(ci.estimate, 4), ci.lower < ci.estimate < ci.upper
    (0.8889, True)
    """
    yy, xx, keep = _pair(y, risk, with_mask=True)
    nan = Interval(float("nan"), float("nan"), float("nan"))
    if not _both_classes(yy):
        return nan
    # One sort gives every placement value: for a positive, the share of negatives ranked below
    # it; for a negative, the share of positives ranked above it (ties count one half each).
    order = np.argsort(xx)
    xs, ys = xx[order], yy[order]
    gid = np.cumsum(np.r_[True, xs[1:] != xs[:-1]]) - 1  # tie group of each sorted row
    pos_in = np.bincount(gid, weights=ys)
    neg_in = np.bincount(gid, weights=1.0 - ys)
    m, n = float(pos_in.sum()), float(neg_in.sum())
    v_pos_g = (np.cumsum(neg_in) - 0.5 * neg_in) / n
    v_neg_g = (m - np.cumsum(pos_in) + 0.5 * pos_in) / m
    pos = ys == 1.0
    v_pos, v_neg = v_pos_g[gid[pos]], v_neg_g[gid[~pos]]
    a = float(v_pos.mean())
    if groups is None:
        var = v_pos.var(ddof=1) / m + v_neg.var(ddof=1) / n if m > 1 and n > 1 else float("nan")
    else:
        g = _group_codes(groups, keep)[order]
        k = int(g.max()) + 1
        gp, gn = g[pos], g[~pos]
        vp_sum = np.bincount(gp, weights=v_pos, minlength=k)
        vn_sum = np.bincount(gn, weights=v_neg, minlength=k)
        mp = np.bincount(gp, minlength=k)
        nn = np.bincount(gn, minlength=k)
        present = (mp + nn) > 0
        n_clusters = int(present.sum())
        if n_clusters < 2:
            return Interval(a, float("nan"), float("nan"))
        dp = (vp_sum - mp * a)[present]
        dn = (vn_sum - nn * a)[present]
        c = n_clusters / (n_clusters - 1)
        # plain sums, not BLAS dot products: on a busy machine a threaded dot of 100k is slower
        s10 = c * float(np.sum(dp * dp)) / m
        s01 = c * float(np.sum(dn * dn)) / n
        s11 = c * float(np.sum(dp * dn))
        var = s10 / m + s01 / n + 2.0 * s11 / (m * n)
    if not math.isfinite(var):  # a single positive or negative: no variance to speak of
        return Interval(a, float("nan"), float("nan"))
    se = math.sqrt(max(float(var), 0.0))
    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    return Interval(a, max(0.0, a - z * se), min(1.0, a + z * se))


class Difference(NamedTuple):
    """A paired difference (model A minus model B) with its confidence interval and two-sided p-value."""

    estimate: float
    lower: float
    upper: float
    p_value: float


def _placements(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """DeLong placement value of every row, in the rows' own order: for a positive, the share of
    negatives ranked below it; for a negative, the share of positives ranked above it (ties
    count one half). Both kinds average to the AUC."""
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    gid = np.cumsum(np.r_[True, xs[1:] != xs[:-1]]) - 1
    pos_in = np.bincount(gid, weights=ys)
    neg_in = np.bincount(gid, weights=1.0 - ys)
    m, n = float(pos_in.sum()), float(neg_in.sum())
    v_pos = (np.cumsum(neg_in) - 0.5 * neg_in) / n
    v_neg = (m - np.cumsum(pos_in) + 0.5 * pos_in) / m
    out = np.empty(x.size)
    out[order] = np.where(ys == 1.0, v_pos[gid], v_neg[gid])
    return out


def auc_difference(
    y: ArrayLike, risk_a: ArrayLike, risk_b: ArrayLike, *, confidence: float = 0.95, groups: ArrayLike | None = None
) -> Difference:
    """AUC of ``risk_a`` minus AUC of ``risk_b`` on the same rows, with a paired DeLong interval.

    Both scores rank the same rows, so their AUCs are correlated: the variance of the difference
    comes from the difference of the two placement values per row (DeLong, DeLong and
    Clarke-Pearson 1988), which is far narrower than two separate intervals suggest. With
    ``groups=account_id`` the differences are summed per account first (Obuchowski's clustered
    form), so repeated snapshots of one account count as one piece of evidence. Rows where
    either score or the outcome is missing are left out of both.

    >>> y = [0, 0, 1, 1, 0, 1, 0, 1]
    >>> d = auc_difference(y, [1, 2, 3, 4, 1, 5, 2, 6], [4, 3, 2, 1, 2, 1, 5, 3])
    >>> round(d.estimate, 4), d.lower > 0, d.p_value < 0.05
    (0.875, True, True)
    """
    yy, xa, keep_a = _pair(y, risk_a, with_mask=True)
    yb, xb, keep_b = _pair(y, risk_b, with_mask=True)
    if xa.size != keep_a.size or xb.size != keep_b.size or not np.array_equal(keep_a, keep_b):
        keep = keep_a & keep_b
        yy, xa, xb = _floats(y)[keep], _floats(risk_a)[keep], _floats(risk_b)[keep]
    else:
        keep = keep_a
    nan = Difference(float("nan"), float("nan"), float("nan"), float("nan"))
    if not _both_classes(yy):
        return nan
    d = _placements(yy, xa) - _placements(yy, xb)
    pos = yy == 1.0
    m, n = float(pos.sum()), float((~pos).sum())
    diff = float(d[pos].mean())
    if groups is None:
        var = d[pos].var(ddof=1) / m + d[~pos].var(ddof=1) / n if m > 1 and n > 1 else float("nan")
    else:
        g = _group_codes(groups, keep)
        k = int(g.max()) + 1
        dp_sum = np.bincount(g[pos], weights=d[pos], minlength=k)
        dn_sum = np.bincount(g[~pos], weights=d[~pos], minlength=k)
        mp = np.bincount(g[pos], minlength=k)
        nn = np.bincount(g[~pos], minlength=k)
        present = (mp + nn) > 0
        n_clusters = int(present.sum())
        if n_clusters < 2:
            return Difference(diff, float("nan"), float("nan"), float("nan"))
        dp = (dp_sum - mp * diff)[present]
        dn = (dn_sum - nn * diff)[present]
        c = n_clusters / (n_clusters - 1)
        var = (
            c * float(np.sum(dp * dp)) / m / m
            + c * float(np.sum(dn * dn)) / n / n
            + 2.0 * c * float(np.sum(dp * dn)) / (m * n)
        )
    if not math.isfinite(var):
        return Difference(diff, float("nan"), float("nan"), float("nan"))
    se = math.sqrt(max(float(var), 0.0))
    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    if se == 0.0:  # the two scores rank every pair alike
        return Difference(diff, diff, diff, 1.0 if diff == 0.0 else 0.0)
    p = float(2.0 * stats.norm.sf(abs(diff) / se))
    return Difference(diff, diff - z * se, diff + z * se, p)


def _group_codes(groups: ArrayLike, keep: np.ndarray) -> np.ndarray:
    """Small integer codes 0..k-1 for the groups of the kept rows (polars ranks: fast on strings)."""
    g = groups if isinstance(groups, pl.Series) else pl.Series("g", np.asarray(groups))
    if g.len() != keep.size:
        raise ValueError(f"groups has {g.len()} values but the outcome has {keep.size}; pass one group per row")
    return g.filter(pl.Series(keep)).rank("dense").cast(pl.Int64).to_numpy() - 1


def pr_auc(y: ArrayLike, risk: ArrayLike) -> float:
    """Area under the precision-recall curve as average precision (``sklearn.metrics.average_precision_score``).

    Unlike the ROC AUC it moves with the base rate: a random ranking scores the event rate.

    >>> pr_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.8333333333333333
    """
    return _ranking_metric(skm.average_precision_score, y, risk)


def _top_events(y: np.ndarray, risk: np.ndarray, fraction: float) -> tuple[float, float]:
    """Expected number of events among the riskiest ``fraction`` of rows, and that row count.

    Rows tied with the last row inside the cut share the remaining places pro rata, so a score
    with many ties (rounded scores) is not flattered or punished by an arbitrary tie order.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    n = y.size
    k = max(1, int(round(fraction * n)))
    order = np.argsort(-risk, kind="stable")
    r, yo = risk[order], y[order]
    edge = r[k - 1]
    above = r > edge
    tied = r == edge
    n_above = int(above.sum())
    ev_above = float(yo[above].sum())
    n_tied = int(tied.sum())
    ev_tied = float(yo[tied].sum())
    return ev_above + ev_tied * (k - n_above) / n_tied, float(k)


def top_decile_lift(y: ArrayLike, risk: ArrayLike, fraction: float = 0.1) -> float:
    """Event rate among the riskiest ``fraction`` of rows divided by the overall event rate.

    A perfect ranking reaches ``min(1 / base_rate, 1 / fraction)``; a random one 1.

    >>> y = [1] + [0] * 19
    >>> top_decile_lift(y, list(range(20, 0, -1)))      # the one event ranked first
    10.0
    """
    yy, xx = _pair(y, risk)
    if yy.size == 0 or yy.sum() == 0:
        return float("nan")
    events, k = _top_events(yy, xx, fraction)
    return float((events / k) / yy.mean())


def capture_rate(y: ArrayLike, risk: ArrayLike, fraction: float = 0.1) -> float:
    """Share of all events found among the riskiest ``fraction`` of rows.

    >>> capture_rate([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], [9, 1, 8, 7, 6, 5, 4, 3, 2, 0], fraction=0.2)
    0.5
    """
    yy, xx = _pair(y, risk)
    if yy.size == 0 or yy.sum() == 0:
        return float("nan")
    events, _ = _top_events(yy, xx, fraction)
    return float(events / yy.sum())


def roc_points(y: ArrayLike, risk: ArrayLike, points: int = 101) -> pl.DataFrame:
    """The ROC curve resampled on a fixed false-positive-rate grid (small enough to chart).

    >>> roc_points([0, 1], [0.2, 0.9], points=3)["tpr"].to_list()
    [1.0, 1.0, 1.0]
    """
    yy, xx = _pair(y, risk)
    grid = np.linspace(0.0, 1.0, points)
    if not _both_classes(yy):
        return pl.DataFrame({"fpr": grid, "tpr": np.full(points, np.nan)})
    fpr, tpr, _ = skm.roc_curve(yy, xx)
    # the curve is a step function: take the highest tpr reached at each fpr
    return pl.DataFrame({"fpr": grid, "tpr": np.interp(grid, fpr, tpr)})


def gains_curve(y: ArrayLike, risk: ArrayLike, points: int = 101) -> pl.DataFrame:
    """Cumulative share of events captured when flagging the riskiest share of rows (gains chart).

    ``lift`` is the capture divided by the share flagged.

    >>> gains_curve([1, 0, 0, 0], [4, 3, 2, 1], points=5)["captured"].to_list()
    [0.0, 1.0, 1.0, 1.0, 1.0]
    """
    yy, xx = _pair(y, risk)
    share = np.linspace(0.0, 1.0, points)
    if yy.size == 0 or yy.sum() == 0:
        return pl.DataFrame({"flagged": share, "captured": np.full(points, np.nan), "lift": np.full(points, np.nan)})
    order = np.argsort(-xx, kind="stable")
    cum = np.concatenate([[0.0], np.cumsum(yy[order])]) / yy.sum()
    captured = np.interp(share * yy.size, np.arange(yy.size + 1), cum)
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = np.where(share > 0, captured / share, np.nan)
    return pl.DataFrame({"flagged": share, "captured": captured, "lift": lift})


# ---------------------------------------------------------------- probability metrics
def brier(y: ArrayLike, prob: ArrayLike) -> float:
    """Mean squared error of predicted probabilities (``sklearn.metrics.brier_score_loss``); lower is better.

    >>> brier([0, 1], [0.25, 0.75])
    0.0625
    """
    yy, pp = _pair(y, prob, "prob")
    if yy.size == 0:
        return float("nan")
    return float(skm.brier_score_loss(yy, pp))


def reliability_curve(y: ArrayLike, prob: ArrayLike, *, n_bins: int = 10, confidence: float = 0.95) -> pl.DataFrame:
    """Observed event rate against mean predicted probability, in quantile bins of the prediction.

    Quantile bins keep every bin populated when events are rare (a 5% churn rate would leave
    nine of ten equal-width bins empty). Columns: ``bin``, ``count``, ``mean_predicted``,
    ``observed``, ``observed_lower``, ``observed_upper`` (Wilson interval of the observed rate).

    >>> rc = reliability_curve([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], n_bins=2)
    >>> rc["observed"].to_list(), rc["count"].to_list()
    ([0.0, 1.0], [2, 2])
    """
    yy, pp = _pair(y, prob, "prob")
    if yy.size == 0:
        return pl.DataFrame(
            schema={
                "bin": pl.Int64,
                "count": pl.Int64,
                "mean_predicted": pl.Float64,
                "observed": pl.Float64,
                "observed_lower": pl.Float64,
                "observed_upper": pl.Float64,
            }
        )
    edges = np.unique(np.quantile(pp, np.linspace(0.0, 1.0, n_bins + 1)))
    idx = np.searchsorted(edges[1:-1], pp, side="right")
    k = max(len(edges) - 1, 1)
    count = np.bincount(idx, minlength=k)
    events = np.bincount(idx, weights=yy, minlength=k)
    psum = np.bincount(idx, weights=pp, minlength=k)
    keep = count > 0
    count, events, psum = count[keep], events[keep], psum[keep]
    lo, hi = wilson_interval(events, count, confidence=confidence)
    return pl.DataFrame(
        {
            "bin": np.arange(count.size),
            "count": count.astype(np.int64),
            "mean_predicted": psum / count,
            "observed": events / count,
            "observed_lower": lo,
            "observed_upper": hi,
        }
    )


def expected_calibration_error(y: ArrayLike, prob: ArrayLike, n_bins: int = 10) -> float:
    """Count-weighted mean gap between predicted and observed rates over quantile bins.

    0 for perfectly calibrated probabilities (up to sampling noise).

    >>> expected_calibration_error([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5])
    0.0
    """
    rc = reliability_curve(y, prob, n_bins=n_bins)
    if rc.is_empty():
        return float("nan")
    c = rc["count"].to_numpy()
    gap = np.abs(rc["mean_predicted"].to_numpy() - rc["observed"].to_numpy())
    return float((c * gap).sum() / c.sum())


# ---------------------------------------------------------------- bands and cut-offs
def band_table(
    frame: pl.DataFrame,
    outcome: str,
    *,
    band: str = "band",
    order: Sequence[str] | None = None,
    confidence: float = 0.95,
) -> pl.DataFrame:
    """Rows, events, event rate and its Wilson interval per band.

    ``order`` fixes the row order (e.g. the model's bands from red to green); otherwise bands
    are sorted by name. Rows with no band (score below minimum coverage) form a band of their
    own named ``"(none)"`` so nothing disappears silently.

    >>> f = pl.DataFrame({"band": ["red", "red", "green", "green"], "churned": [True, False, False, False]})
    >>> band_table(f, "churned", order=["red", "green"]).select("band", "count", "events", "rate").rows()
    [('red', 2, 1, 0.5), ('green', 2, 0, 0.0)]
    """
    for col in (band, outcome):
        if col not in frame.columns:
            raise ValueError(f"band_table: the frame has no column {col!r}; it has {frame.columns[:12]}")
    t = (
        frame.lazy()
        .group_by(pl.col(band).fill_null("(none)").alias("band"))
        .agg(count=pl.len(), events=pl.col(outcome).cast(pl.Int64).sum())
        .collect()
    )
    names = list(order) if order is not None else sorted(t["band"].to_list())
    names += [b for b in sorted(t["band"].to_list()) if b not in names]
    rank = pl.DataFrame({"band": names, "_rank": range(len(names))})
    t = (
        rank.join(t, on="band", how="left")
        .with_columns(pl.col("count", "events").fill_null(0).cast(pl.Int64))
        .filter((pl.col("count") > 0) | pl.col("band").is_in(list(order or [])))
        .sort("_rank")
        .drop("_rank")
    )
    lo, hi = wilson_interval(t["events"].to_numpy(), t["count"].to_numpy(), confidence=confidence)
    return t.with_columns(
        rate=pl.when(pl.col("count") > 0).then(pl.col("events") / pl.col("count")),
        rate_lower=pl.Series(lo),
        rate_upper=pl.Series(hi),
    )


def red_band_confusion(frame: pl.DataFrame, outcome: str, band: str = "band", red: str = "red") -> dict[str, float]:
    """How well the alarm band (``red``) catches the outcome: precision, recall, false alarms, misses.

    ``flagged`` rows are in the red band; ``false_alarms`` are flagged rows without the event,
    ``misses`` rows with the event outside the red band.

    >>> f = pl.DataFrame({"band": ["red", "red", "green", "green"], "churned": [True, False, True, False]})
    >>> red_band_confusion(f, "churned")["precision"], red_band_confusion(f, "churned")["misses"]
    (0.5, 1)
    """
    is_red = frame[band].fill_null("") == red
    y = frame[outcome].cast(pl.Boolean).fill_null(False)
    tp = int((is_red & y).sum())
    flagged = int(is_red.sum())
    events = int(y.sum())
    return {
        "flagged": flagged,
        "hits": tp,
        "false_alarms": flagged - tp,
        "misses": events - tp,
        "precision": tp / flagged if flagged else float("nan"),
        "recall": tp / events if events else float("nan"),
    }


class Cutoff(NamedTuple):
    """A score cut-off and what flagging at it achieves.

    For churn an account is flagged when ``score <= cutoff``; for expansion when ``score >= cutoff``.
    """

    cutoff: float
    flagged: int
    precision: float
    recall: float


def _cut_table(y: np.ndarray | None, score: np.ndarray, outcome: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct score values from riskiest to safest, with cumulative flagged and event counts."""
    risk = risk_of(score, outcome)
    order = np.argsort(-risk, kind="stable")
    r = risk[order]
    last = np.r_[r[1:] != r[:-1], True]  # end of each group of tied scores
    flagged = np.arange(1, r.size + 1)[last]
    events = np.cumsum(y[order])[last] if y is not None else np.zeros(flagged.size)
    return score[order][last], flagged, events


def cutoff_for_precision(y: ArrayLike, score: ArrayLike, target: float, outcome: str = "churned") -> Cutoff | None:
    """The cut-off that flags the most accounts while precision stays at or above ``target``.

    None when no cut-off reaches the target.

    >>> cutoff_for_precision([1, 1, 0, 1, 0, 0], [10, 20, 30, 40, 50, 60], target=0.75)
    Cutoff(cutoff=40.0, flagged=4, precision=0.75, recall=1.0)
    """
    yy, ss = _pair(y, score, "score")
    if yy.size == 0 or yy.sum() == 0:
        return None
    cut, flagged, events = _cut_table(yy, ss, outcome)
    precision = events / flagged
    ok = np.flatnonzero(precision >= target - 1e-12)
    if ok.size == 0:
        return None
    i = ok[-1]
    return Cutoff(float(cut[i]), int(flagged[i]), float(precision[i]), float(events[i] / yy.sum()))


def cutoff_for_capacity(
    score: ArrayLike, k: int, y: ArrayLike | None = None, outcome: str = "churned"
) -> Cutoff | None:
    """The cut-off that flags as many accounts as possible but no more than ``k`` (a CSM team's capacity).

    Pass one row per account (one snapshot date). With ``y`` the precision and recall at that
    cut-off are filled in, else they are NaN. None when even the riskiest tie group exceeds ``k``.

    >>> cutoff_for_capacity([10, 20, 20, 40], k=2)
    Cutoff(cutoff=10.0, flagged=1, precision=nan, recall=nan)
    >>> cutoff_for_capacity([10, 20, 30, 40], k=2, y=[1, 0, 0, 1])
    Cutoff(cutoff=20.0, flagged=2, precision=0.5, recall=0.5)
    """
    ss = _floats(score)
    yy = None
    if y is not None:
        yy, ss = _pair(y, ss, "score")
    else:
        ss = ss[~np.isnan(ss)]
    if ss.size == 0 or k < 1:
        return None
    cut, flagged, events = _cut_table(yy, ss, outcome)
    ok = np.flatnonzero(flagged <= k)
    if ok.size == 0:
        return None
    i = ok[-1]
    if yy is None:
        return Cutoff(float(cut[i]), int(flagged[i]), float("nan"), float("nan"))
    total = yy.sum()
    return Cutoff(
        float(cut[i]),
        int(flagged[i]),
        float(events[i] / flagged[i]),
        float(events[i] / total) if total else float("nan"),
    )


# ---------------------------------------------------------------- score -> probability
@dataclass
class ProbabilityMap:
    """Read a score as a probability: "a score of 35 means a 12% chance to churn within 90 days".

    ``method="isotonic"`` fits a monotone step curve (``sklearn.isotonic.IsotonicRegression``),
    then pools neighbouring steps until each holds at least ``min_events`` training events (and
    as many rows without one), so no step claims 0% or 100% from a handful of accounts; each
    step carries its Wilson interval (``confidence``). Between steps the map is linear, flat
    beyond the ends. ``method="logistic"`` fits ``P = 1 / (1 + exp(-(a + b * score / 100)))``
    with ``statsmodels`` Logit; its interval comes from the coefficients' covariance. Fit it on
    training rows only, then freeze it with :meth:`to_dict` (plain lists and floats).
    ``increasing="auto"`` takes the direction from ``outcome`` (churn falls as the score rises).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> s = rng.uniform(0, 100, 5000)
    >>> y = rng.random(5000) < (1 - s / 100) * 0.4          # true P(churn) = 0.4 * (1 - s/100)
    >>> pm = ProbabilityMap("isotonic").fit(s, y)
    >>> [round(float(p), 1) for p in pm.predict([5.0, 95.0])]
    [0.4, 0.0]
    >>> bool(min(pm.events_) >= 30 and pm.predict([95.0])[0] > 0)
    True
    >>> ProbabilityMap.from_dict(pm.to_dict()).predict([50.0]).round(3).tolist() == pm.predict([50.0]).round(3).tolist()
    True
    """

    method: Literal["isotonic", "logistic"] = "isotonic"
    outcome: str = "churned"
    horizon: str = "90d"
    increasing: bool | Literal["auto"] = "auto"
    min_events: int = 30
    confidence: float = 0.95
    # fitted
    scores_: list[float] = field(default_factory=list)
    probabilities_: list[float] = field(default_factory=list)
    lower_: list[float] = field(default_factory=list)
    upper_: list[float] = field(default_factory=list)
    events_: list[int] = field(default_factory=list)  # isotonic: training events in each pooled step
    rows_: list[int] = field(default_factory=list)
    cov_: list[float] = field(default_factory=list)  # logistic: var(a), cov(a, b), var(b)
    intercept_: float = float("nan")
    slope_: float = float("nan")
    n_train_: int = 0
    events_train_: int = 0

    def __post_init__(self) -> None:
        if self.method not in ("isotonic", "logistic"):
            raise ValueError(f"ProbabilityMap method {self.method!r} is not known: use 'isotonic' or 'logistic'")

    @property
    def fitted(self) -> bool:
        return self.n_train_ > 0

    def fit(self, scores: ArrayLike, y: ArrayLike) -> ProbabilityMap:
        """Learn the map from training scores and 0/1 outcomes (rows with a null score are skipped)."""
        yy, ss = _pair(y, scores, "scores")
        if yy.size < 2 or not _both_classes(yy):
            raise ValueError(
                f"a probability map needs training rows with and without the outcome "
                f"({int(yy.sum())} events in {yy.size} scored rows); widen the training window"
            )
        self.n_train_, self.events_train_ = int(yy.size), int(yy.sum())
        if self.method == "isotonic":
            from sklearn.isotonic import IsotonicRegression  # scikit-learn is loaded only when a model is fitted

            inc = (not event_is_low_score(self.outcome)) if self.increasing == "auto" else bool(self.increasing)
            iso = IsotonicRegression(increasing=inc, y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(ss, yy)
            order = np.argsort(ss, kind="stable")
            s_sorted, y_sorted = ss[order], yy[order]
            fitted = iso.predict(s_sorted)
            # steps: runs of one fitted value (ties of the score never straddle two steps)
            cut = np.flatnonzero((np.diff(fitted) != 0) & (np.diff(s_sorted) > 0)) + 1
            steps = [list(b) for b in zip(np.r_[0, cut], np.r_[cut, s_sorted.size])]
            steps = _pool_steps(steps, y_sorted, self.min_events)
            lo_s = [float(s_sorted[a]) for a, _ in steps]
            hi_s = [float(s_sorted[b - 1]) for _, b in steps]
            events = np.array([y_sorted[a:b].sum() for a, b in steps])
            rows = np.array([b - a for a, b in steps], dtype=float)
            lo, hi = wilson_interval(events, rows, confidence=self.confidence)
            xs, ps, ls, us = [], [], [], []
            for k in range(len(steps)):
                for x in [lo_s[k], hi_s[k]] if hi_s[k] > lo_s[k] else [lo_s[k]]:
                    xs.append(round(x, 6))
                    ps.append(round(float(events[k] / rows[k]), 6))
                    ls.append(round(float(lo[k]), 6))
                    us.append(round(float(hi[k]), 6))
            self.scores_, self.probabilities_, self.lower_, self.upper_ = xs, ps, ls, us
            self.events_, self.rows_ = [int(e) for e in events], [int(r) for r in rows]
        else:
            import statsmodels.api as sm  # statsmodels takes about a second to import; only fits and tests need it

            X = sm.add_constant(ss / 100.0)
            try:
                res = sm.Logit(yy, X).fit(disp=0)
                params = np.asarray(res.params, dtype=float)
                if not np.isfinite(params).all():
                    raise ValueError("non-finite coefficients")
            except Exception:  # (quasi-)separation: a lightly penalised fit keeps the slope finite
                params = np.asarray(sm.Logit(yy, X).fit_regularized(alpha=1e-3, disp=0).params, dtype=float)
                res = None
            self.intercept_, self.slope_ = float(params[0]), float(params[1])
            cov = np.asarray(res.cov_params(), dtype=float) if res is not None else np.full((2, 2), np.nan)
            self.cov_ = [float(cov[0, 0]), float(cov[0, 1]), float(cov[1, 1])]
        return self

    def predict_interval(self, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """The ``confidence`` interval of the probability at each score: ``(lower, upper)``.

        Isotonic maps: the Wilson interval of the step's training rows; logistic maps: the
        interval of the linear predictor from the coefficients' covariance. NaN where the
        score is missing, and for maps frozen before intervals were stored.
        """
        if not self.fitted:
            raise ValueError("this ProbabilityMap is not fitted yet: call fit(scores, y) on training rows first")
        s = _floats(scores)
        if self.method == "isotonic":
            if not self.lower_:
                nan = np.full(s.shape, np.nan)
                return nan, nan.copy()
            xs = np.asarray(self.scores_)
            lo, hi = np.interp(s, xs, np.asarray(self.lower_)), np.interp(s, xs, np.asarray(self.upper_))
        else:
            va, cab, vb = self.cov_ or [np.nan] * 3
            x = s / 100.0
            eta = self.intercept_ + self.slope_ * x
            se = np.sqrt(np.maximum(va + 2 * x * cab + x * x * vb, 0.0))
            z = float(stats.norm.ppf(0.5 + self.confidence / 2))
            lo, hi = 1 / (1 + np.exp(-(eta - z * se))), 1 / (1 + np.exp(-(eta + z * se)))
        return np.where(np.isnan(s), np.nan, lo), np.where(np.isnan(s), np.nan, hi)

    def predict(self, scores: ArrayLike) -> np.ndarray:
        """Probabilities for ``scores`` (NaN where the score is missing)."""
        if not self.fitted:
            raise ValueError("this ProbabilityMap is not fitted yet: call fit(scores, y) on training rows first")
        s = _floats(scores)
        if self.method == "isotonic":
            out = np.interp(s, np.asarray(self.scores_), np.asarray(self.probabilities_))
        else:
            out = 1.0 / (1.0 + np.exp(-(self.intercept_ + self.slope_ * s / 100.0)))
        return np.where(np.isnan(s), np.nan, out)

    def expr(self, score: str | pl.Expr = "score") -> pl.Expr:
        """The map as a polars expression, for scoring frames without leaving polars.

        >>> pm = ProbabilityMap.from_dict({"method": "logistic", "intercept": 0.0, "slope": -2.0})
        >>> pl.DataFrame({"score": [50.0, None]}).select(p=pm.expr())["p"].round(3).to_list()
        [0.269, None]
        """
        s = pl.col(score) if isinstance(score, str) else score
        if self.method == "logistic":
            return 1.0 / (1.0 + (-(self.intercept_ + self.slope_ * s / 100.0)).exp())
        xs, ps = self.scores_, self.probabilities_
        # piecewise linear through the knots, flat beyond the ends (as np.interp)
        out = pl.when(s.is_null()).then(pl.lit(None, pl.Float64)).when(s <= xs[0]).then(pl.lit(ps[0]))
        for (x0, p0), (x1, p1) in zip(zip(xs[:-1], ps[:-1]), zip(xs[1:], ps[1:])):
            slope = (p1 - p0) / (x1 - x0) if x1 > x0 else 0.0
            out = out.when(s <= x1).then(p0 + (s - x0) * slope)
        return out.otherwise(pl.lit(ps[-1]))

    def explain(self, score: float) -> str:
        """One sentence for a CSM: the chance of the outcome within the horizon at this score.

        >>> ProbabilityMap.from_dict({"method": "logistic", "intercept": 0.0, "slope": -2.0,
        ...                           "outcome": "churned", "horizon": "90d"}).explain(50)
        'a score of 50 means a 27% chance to churn within 90 days'
        """
        p = float(self.predict([score])[0])
        verb = {"churned": "churn", "expanded": "expand", "contracted": "contract"}.get(self.outcome, self.outcome)
        within = horizon_words(self.horizon)
        # an isotonic step with no event in training reads 0%: say "under 1%", not "no chance"
        chance = "an under 1%" if p < 0.005 else f"a {p:.0%}"
        lo, hi = (float(v[0]) for v in self.predict_interval([score]))
        band = "" if math.isnan(lo) else f" ({self.confidence:.0%} interval {lo:.0%} to {hi:.0%})"
        return f"a score of {score:g} means {chance} chance{band} to {verb} within {within}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data (str, int, float, lists) to freeze into a model file or JSON."""
        d: dict[str, Any] = {
            "method": self.method,
            "outcome": self.outcome,
            "horizon": self.horizon,
            "n_train": self.n_train_,
            "events_train": self.events_train_,
        }
        if self.method == "isotonic":
            d.update(scores=list(self.scores_), probabilities=list(self.probabilities_))
            if self.lower_:
                d.update(
                    lower=list(self.lower_),
                    upper=list(self.upper_),
                    step_events=list(self.events_),
                    step_rows=list(self.rows_),
                    min_events=self.min_events,
                    confidence=self.confidence,
                )
        else:
            d.update(intercept=self.intercept_, slope=self.slope_)
            if self.cov_ and all(math.isfinite(v) for v in self.cov_):
                d.update(cov=list(self.cov_), confidence=self.confidence)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProbabilityMap:
        """Rebuild a fitted map from :meth:`to_dict` output."""
        pm = cls(
            method=d.get("method", "isotonic"),
            outcome=str(d.get("outcome", "churned")),
            horizon=str(d.get("horizon", "90d")),
        )
        if pm.method == "isotonic":
            xs, ps = [float(v) for v in d.get("scores", [])], [float(v) for v in d.get("probabilities", [])]
            if not xs or len(xs) != len(ps):
                raise ValueError(
                    "an isotonic probability map needs equally long, non-empty 'scores' and 'probabilities' lists"
                )
            pm.scores_, pm.probabilities_ = xs, ps
            if "lower" in d and "upper" in d:
                pm.lower_, pm.upper_ = [float(v) for v in d["lower"]], [float(v) for v in d["upper"]]
                if len(pm.lower_) != len(xs) or len(pm.upper_) != len(xs):
                    raise ValueError("an isotonic probability map needs 'lower' and 'upper' as long as 'scores'")
                pm.events_ = [int(v) for v in d.get("step_events", [])]
                pm.rows_ = [int(v) for v in d.get("step_rows", [])]
                pm.min_events = int(d.get("min_events", pm.min_events))
        else:
            if "intercept" not in d or "slope" not in d:
                raise ValueError("a logistic probability map needs 'intercept' and 'slope'")
            pm.intercept_, pm.slope_ = float(d["intercept"]), float(d["slope"])
            pm.cov_ = [float(v) for v in d.get("cov", [])]
        pm.confidence = float(d.get("confidence", pm.confidence))
        pm.n_train_ = max(int(d.get("n_train", 1)), 1)
        pm.events_train_ = int(d.get("events_train", 0))
        return pm

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the map as JSON, atomically."""

        files.write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ProbabilityMap:
        """Read a map written by :meth:`save`."""
        with open(path, encoding="utf-8") as fh:
            return cls.from_dict(json.load(fh))


def _pool_steps(steps: list[list[int]], y: np.ndarray, min_events: int) -> list[list[int]]:
    """Merge neighbouring steps (row ranges of the sorted training rows) until each holds at
    least ``min_events`` events and as many non-events; the thinnest step goes first, into its
    thinner neighbour. Merging two steps of a monotone fit keeps the fit monotone."""

    def short(a: int, b: int) -> int:
        e = int(y[a:b].sum())
        return min(e, (b - a) - e)

    steps = [list(s) for s in steps]
    while len(steps) > 1:
        need = [short(a, b) for a, b in steps]
        i = int(np.argmin(need))
        if need[i] >= min_events:
            break
        j = i + 1 if i == 0 else i - 1 if i == len(steps) - 1 else (i - 1 if need[i - 1] <= need[i + 1] else i + 1)
        a, b = min(i, j), max(i, j)
        steps[a : b + 1] = [[steps[a][0], steps[b][1]]]
    return steps


# ---------------------------------------------------------------- backtest
class EvaluationError(HealthscoreError, ValueError):
    """A backtest cannot run on the data given (empty split, no events, unknown column)."""


def _split_date(labelled: pl.DataFrame, split: date | str | None, train_share: float) -> date:
    if split is None:
        d0, d1 = labelled["as_of"].min(), labelled["as_of"].max()
        return d0 + timedelta(days=round(train_share * (d1 - d0).days))
    if isinstance(split, str):
        try:
            return date.fromisoformat(split.strip())
        except ValueError:
            raise EvaluationError(f"split date {split!r} is not a date: write it as YYYY-MM-DD") from None
    return split.date() if isinstance(split, datetime) else split


def time_split(
    labelled: pl.DataFrame, *, horizon: str = "90d", split: date | str | None = None, train_share: float = 0.7
) -> tuple[pl.DataFrame, pl.DataFrame, date]:
    """Split labelled snapshots by time into ``(train, test, split_date)``.

    ``train`` keeps rows whose whole outcome window ends on or before the split
    (``as_of + horizon <= split``), so no training label looks past it; ``test`` keeps rows with
    ``as_of >= split``. The rows in between are dropped: their labels straddle the split. An
    account appears on both sides, but never with the same ``as_of``: a random split across one
    account's snapshots would leak its future into training. The default split sits at
    ``train_share`` of the labelled date range.

    >>> import datetime as dt
    >>> f = pl.DataFrame({"account_id": "a", "as_of": [dt.date(2024, 1, 1) + dt.timedelta(weeks=k) for k in range(10)]})
    >>> tr, te, d = time_split(f, horizon="14d", split=dt.date(2024, 2, 5))
    >>> tr["as_of"].max(), te["as_of"].min()
    (datetime.date(2024, 1, 22), datetime.date(2024, 2, 5))
    """
    if labelled.is_empty():
        raise EvaluationError("no labellable snapshots: the data must span more than the horizon")
    d = _split_date(labelled, split, train_share)
    end = pl.col("as_of").dt.offset_by(horizon)
    train = labelled.filter(end <= pl.lit(d)).sort("account_id", "as_of")
    test = labelled.filter(pl.col("as_of") >= pl.lit(d)).sort("account_id", "as_of")
    first, last = labelled["as_of"].min(), labelled["as_of"].max()
    if train.is_empty() or test.is_empty():
        raise EvaluationError(
            f"split date {d} leaves {'no training rows' if train.is_empty() else 'no test rows'}: labelled "
            f"snapshots run {first} .. {last} and training rows need as_of + {horizon} <= split; "
            "pick a split date inside that range, later than the first date plus the horizon"
        )
    return train, test, d


def _named_models(models: Any) -> dict[str, Any]:
    """Accept one model, a list of models or a dict name -> model; keep names unique."""
    if isinstance(models, Mapping):
        items = list(models.items())
    elif isinstance(models, (pl.DataFrame, pl.LazyFrame)):
        items = [("score", models)]
    elif isinstance(models, (list, tuple)):
        items = [(getattr(m, "name", f"model {i + 1}"), m) for i, m in enumerate(models)]
    else:
        items = [(getattr(models, "name", "model"), models)]
    if not items:
        raise EvaluationError("no model to evaluate: pass at least one score model")
    out: dict[str, Any] = {}
    for name, m in items:
        # a hand-set model and its fitted copy often share a name: tell them apart by file, then version
        source, version = getattr(m, "source", None), getattr(m, "version", "")
        candidates = [str(name)]
        candidates += [f"{name} ({source.stem})"] if source is not None else []
        candidates += [f"{name} v{version}"] if version else []
        key = next((c for c in candidates if c not in out), None)
        i = 2
        while key is None or key in out:
            key, i = f"{name} ({i})", i + 1
        out[key] = m
    return out


def _scores_of(model: Any, snaps: pl.DataFrame, score_frame: Any, name: str) -> pl.DataFrame:
    """Keys, score and band of every snapshot: scored by a ScoreModel, or taken from a score frame
    made elsewhere (another tool's score, a hand-made index) so any score can be backtested."""
    if isinstance(model, (pl.DataFrame, pl.LazyFrame)):
        frame = model.collect() if isinstance(model, pl.LazyFrame) else model
        missing = [c for c in ("account_id", "as_of", "score") if c not in frame.columns]
        if missing:
            raise EvaluationError(
                f"score frame {name!r} lacks column(s) {missing}: pass account_id, as_of, "
                "score (higher is healthier) and optionally band"
            )
        band = pl.col("band").cast(pl.Utf8) if "band" in frame.columns else pl.lit(None, pl.Utf8).alias("band")
        return (
            frame.select(
                pl.col("account_id").cast(snaps.schema["account_id"]),
                pl.col("as_of"),
                pl.col("score").cast(pl.Float64),
                band,
            )
            .unique(["account_id", "as_of"], keep="first")
            .sort("account_id", "as_of")
        )
    return score_frame(snaps, model).select("account_id", "as_of", "score", "band").sort("account_id", "as_of")


def _alarm_band(model: Any, outcome: str) -> str | None:
    """The model's alarm band (``ScoreModel.alarm_band``); for a bare score frame 'red' for adverse outcomes."""
    if isinstance(model, (pl.DataFrame, pl.LazyFrame)):
        return "red" if event_is_low_score(outcome) else None
    return model.alarm_band(outcome) if getattr(model, "bands", None) else None


def _watch_band(model: Any, alarm: str | None, outcome: str) -> str | None:
    """The band next to the alarm band on the alarming side's way to healthy ('yellow' next to 'red')."""
    if isinstance(model, (pl.DataFrame, pl.LazyFrame)):  # a score frame's bands: the standard three
        names = ["red", "yellow", "green"]
    else:
        names = [b.name for b in sorted(getattr(model, "bands", []) or [], key=lambda b: b.lower)]
    if alarm is None or alarm not in names or len(names) < 3:
        return None
    i = names.index(alarm) + (1 if event_is_low_score(outcome) else -1)
    return names[i] if 0 <= i < len(names) else None


def _metrics(
    part: pl.DataFrame,
    outcome: str,
    pmap: ProbabilityMap | None,
    alarm: str | None,
    target_precision: float,
    capacity: int | None,
    fraction: float,
    watch: str | None = None,
) -> dict[str, Any]:
    """Every backtest figure for one model on one slice of the holdout."""
    y_all = part[outcome].cast(pl.Float64)
    scored = part.filter(pl.col("score").is_not_null())
    y = scored[outcome].cast(pl.Float64).to_numpy()
    s = scored["score"].to_numpy()
    risk = risk_of(s, outcome)
    ci = auc_ci(y, risk, groups=scored["account_id"])
    if "_prob" in scored.columns:  # out-of-fold probabilities (cross-validation)
        prob = scored["_prob"].to_numpy()
    else:
        prob = pmap.predict(s) if pmap is not None else np.full(s.shape, np.nan)
    row: dict[str, Any] = {
        "rows": part.height,
        "accounts": part["account_id"].n_unique(),
        "events": int(y_all.sum()),
        "event_rate": float(y_all.mean()) if part.height else float("nan"),
        "scored": scored.height / part.height if part.height else float("nan"),
        "auc": ci.estimate,
        "auc_lower": ci.lower,
        "auc_upper": ci.upper,
        "pr_auc": pr_auc(y, risk),
        "lift_top10": top_decile_lift(y, risk, fraction) if y.size else float("nan"),
        "capture_top10": capture_rate(y, risk, fraction) if y.size else float("nan"),
        "brier": brier(y, prob) if pmap is not None else float("nan"),
        "ece": expected_calibration_error(y, prob) if pmap is not None and y.size else float("nan"),
    }
    if alarm is not None:
        conf = red_band_confusion(part, outcome, red=alarm)
        row.update(
            alarm_band=alarm,
            alarm_flagged=conf["flagged"],
            alarm_precision=conf["precision"],
            alarm_recall=conf["recall"],
            false_alarms=conf["false_alarms"],
            misses=conf["misses"],
            alarm_share=conf["flagged"] / part.height if part.height else float("nan"),
        )
        if watch is not None:
            both = red_band_confusion(part.with_columns(pl.col("band").replace(watch, alarm)), outcome, red=alarm)
            row.update(
                watch_band=watch,
                alarm_watch_flagged=both["flagged"],
                alarm_watch_recall=both["recall"],
                alarm_watch_share=both["flagged"] / part.height if part.height else float("nan"),
            )
    cut = cutoff_for_precision(y, s, target_precision, outcome) if y.size else None
    row.update(
        precision_target=target_precision,
        precision_cutoff=cut.cutoff if cut else float("nan"),
        precision_cutoff_recall=cut.recall if cut else float("nan"),
    )
    row.update(_capacity(scored, outcome, capacity))
    return row


def _capacity(scored: pl.DataFrame, outcome: str, capacity: int | None) -> dict[str, Any]:
    """Flag the ``capacity`` riskiest accounts in every snapshot period of the holdout; pool what that catches.

    The period follows the dates (a week for weekly snapshots, a month for monthly ones, the whole
    holdout for one snapshot per account). Default capacity: a tenth of the accounts in a period.
    """
    flagged = hits = 0
    cutoffs: list[float] = []
    ks: list[int] = []
    period = _period_key(scored)
    # one small numpy call per snapshot period (a dozen or so), never per row
    for _, day in scored.with_columns(_period=period).sort("_period", "as_of").group_by("_period", maintain_order=True):
        k = capacity if capacity is not None else max(1, round(0.1 * day.height))
        c = cutoff_for_capacity(day["score"], k, y=day[outcome].cast(pl.Float64), outcome=outcome)
        if c is None:
            continue
        ks.append(k)
        cutoffs.append(c.cutoff)
        flagged += c.flagged
        hits += round(c.precision * c.flagged)
    events = int(scored[outcome].sum()) if scored.height else 0
    return {
        "capacity_k": int(np.median(ks)) if ks else 0,
        "capacity_cutoff": float(np.median(cutoffs)) if cutoffs else float("nan"),
        "capacity_precision": hits / flagged if flagged else float("nan"),
        "capacity_recall": hits / events if events else float("nan"),
    }


def _period_key(frame: pl.DataFrame) -> pl.Expr:
    """The snapshot period of each row: its week, its month, or one period for a cross-section."""
    kind = "single" if is_cross_sectional(frame) else cadence_of(frame["as_of"])
    if kind in ("single", "quarterly"):
        return pl.lit(0) if kind == "single" else pl.col("as_of").dt.truncate("1q")
    return pl.col("as_of").dt.truncate({"daily": "1d", "weekly": "1w", "monthly": "1mo"}[kind])


def _period_word(frame: pl.DataFrame) -> str:
    if is_cross_sectional(frame):
        return "extract"
    return {"daily": "day", "weekly": "week", "monthly": "month", "quarterly": "quarter"}.get(
        cadence_of(frame["as_of"]), "week"
    )


def _trajectories(scored: pl.DataFrame, events: pl.DataFrame, outcome: str, weeks: int) -> pl.DataFrame:
    """Mean score by weeks before the (first) event, for accounts with and without it.

    Accounts without the event are lined up on the last snapshot date of the data instead.
    """
    first = events.lazy().filter(pl.col("event") == outcome).group_by("account_id").agg(_event=pl.col("date").min())
    last = scored["as_of"].max()
    yes = outcome
    no = "retained" if outcome == "churned" else f"not {outcome}"
    t = (
        scored.lazy()
        .select("account_id", "as_of", "score")
        .join(first.with_columns(pl.col("account_id").cast(scored.schema["account_id"])), on="account_id", how="left")
        .with_columns(
            group=pl.when(pl.col("_event").is_not_null()).then(pl.lit(yes)).otherwise(pl.lit(no)),
            _ref=pl.coalesce("_event", pl.lit(last)),
        )
        .with_columns(weeks_before=((pl.col("_ref") - pl.col("as_of")).dt.total_days() / 7).ceil().cast(pl.Int64))
        .filter(
            pl.col("score").is_not_null(),
            pl.col("weeks_before").is_between(0, weeks),
            # with the event: only the run-up to it; without: the last `weeks` weeks of data
            (pl.col("as_of") < pl.col("_ref")) | pl.col("_event").is_null(),
        )
        .group_by("group", "weeks_before")
        .agg(
            mean_score=pl.col("score").mean(),
            sd=pl.col("score").std(),
            accounts=pl.col("account_id").n_unique(),
            n=pl.len(),
        )
        .with_columns(half=1.96 * pl.col("sd").fill_null(0.0) / pl.col("n").sqrt())
        .with_columns(
            score_lower=pl.col("mean_score") - pl.col("half"), score_upper=pl.col("mean_score") + pl.col("half")
        )
        .drop("sd", "half")
        .sort("group", "weeks_before")
        .collect()
    )
    return t


@dataclass
class Evaluation:
    """The result of :func:`evaluate`: tables (polars), charts (altair), a summary and an HTML report.

    Tables: ``table`` (one row per model), ``segments`` (model x segment, ``(all)`` first),
    ``bands`` (event rate per band with Wilson intervals), ``reliability``, ``roc``, ``gains``,
    ``trajectories``. ``probability_maps`` holds the score-to-probability map of each model,
    fitted on the training rows.
    """

    outcome: str
    horizon: str
    split: date
    by: str | None
    table: pl.DataFrame
    segments: pl.DataFrame
    bands: pl.DataFrame
    reliability: pl.DataFrame
    roc: pl.DataFrame
    gains: pl.DataFrame
    trajectories: pl.DataFrame
    probability_maps: dict[str, ProbabilityMap]
    band_orders: dict[str, list[str]]
    train_rows: int
    test_rows: int
    train_events: int
    test_events: int
    train_dates: tuple[date, date]
    test_dates: tuple[date, date]
    # how the holdout was drawn: "time" (split date), "kfold" (grouped, stratified CV) or "random" (grouped)
    method: str = "time"
    folds: int | None = None
    # what "within" means when it is not the horizon (one snapshot per account: the observation window)
    window: str | None = None
    period: str = "week"

    @property
    def within(self) -> str:
        return self.window or horizon_words(self.horizon)

    def design(self) -> str:
        """One line: the outcome, its window and how the holdout was drawn."""
        if self.method == "kfold":
            how = (
                f"{self.folds}-fold cross-validation, stratified by {self.outcome} and grouped by account "
                "(every row is scored by the fold that did not see it)"
            )
        elif self.method == "random":
            how = "random holdout of 30% of accounts, grouped by account"
        else:
            how = f"time split at {self.split}"
        return f"Backtest: {self.outcome} within {self.within}, {how}"

    # one row per pair of models on the same rows: paired AUC difference and the verdict
    comparisons: pl.DataFrame = field(default_factory=lambda: _comparison_frame([]))
    # model -> how its training window overlaps the holdout (only with allow_overlap=True)
    overlaps: dict[str, str] = field(default_factory=dict)
    # what a reader must not miss (an AUC below 0.5, ...), one sentence each
    warnings: list[str] = field(default_factory=list)
    # the level of the paired head-to-head intervals
    confidence: float = 0.95

    def to_frame(self) -> pl.DataFrame:
        """One row per model: discrimination, calibration, alarm band and cut-off figures."""
        return self.table

    @property
    def models(self) -> list[str]:
        return self.table["model"].to_list()

    def best(self, metric: str = "auc") -> str:
        """The name of the model with the highest ``metric`` on the holdout."""
        return self.table.sort(metric, descending=True, nulls_last=True)["model"][0]

    @property
    def verdicts(self) -> list[str]:
        """One sentence per pair of models: which ranks the events better, or that no difference shows."""
        return self.comparisons["verdict"].to_list() if self.comparisons.height else []

    def recommendation(self) -> str:
        """The verdict in one sentence: which model to use and how sure. A difference between two
        models counts only when its paired interval excludes zero; one model is judged against chance
        (its AUC interval against 0.5); a model that ranks the wrong way round is never recommended."""
        noun = _event_noun(self.outcome)
        level = f"{self.confidence:.0%}"
        rows = {r["model"]: r for r in self.table.iter_rows(named=True)}
        if not rows:
            return "No model could be evaluated on this holdout."

        def sure(m: str) -> str:
            r = rows[m]
            return f"AUC {r['auc']:.3f}, {level} interval {r['auc_lower']:.3f} to {r['auc_upper']:.3f}"

        def chance(m: str) -> str | None:
            r = rows[m]
            if r["auc"] is None or math.isnan(r["auc"]):
                return f"{m} could not be judged (too few {noun} or accounts on the holdout)."
            if r["auc_upper"] < 0.5:
                return (
                    f"Do not use {m}: it ranks {noun} worse than chance ({sure(m)}); check whether a "
                    "direction is reversed."
                )
            if r["auc_lower"] <= 0.5:
                return f"{m} does not rank {noun} measurably better than chance ({sure(m)}): do not rely on it yet."
            return None

        if len(rows) == 1:
            (m,) = rows
            return chance(m) or f"Use {m}: it ranks {noun} above the other accounts more often than chance ({sure(m)})."
        c = self.comparisons.filter(
            pl.col("auc_difference_lower").is_not_nan() & pl.col("auc_difference_lower").is_not_null()
        )
        won = c.filter(pl.col("auc_difference_lower") > 0)  # oriented: model_a is the better one
        beaten = set(won["model_b"].to_list())
        best = [m for m in rows if m not in beaten]
        if len(best) == 1:
            m = best[0]
            mine = won.filter(pl.col("model_a") == m).sort("auc_difference_lower")
            others = [x for x in rows if x != m]
            if mine.height == len(others):
                closest = mine.row(0, named=True)
                why = (
                    f"it ranks {noun} measurably better than {_words(others)} (AUC difference "
                    f"{closest['auc_difference']:+.3f}, {level} paired interval "
                    f"{closest['auc_difference_lower']:+.3f} to {closest['auc_difference_upper']:+.3f} against "
                    f"{closest['model_b']})"
                )
            else:
                why = f"no other model ranks {noun} measurably better, and each of the others is measurably beaten"
            return chance(m) or f"Use {m}: {why}."
        if not best:  # no pair could be compared
            return f"No measurable difference could be shown between {_words(list(rows))}: too few {noun} to compare."
        pair = c.filter(pl.col("model_a").is_in(best) & pl.col("model_b").is_in(best))
        interval = ""
        if len(best) == 2 and pair.height:
            r = pair.row(0, named=True)
            interval = (
                f" (AUC difference {r['auc_difference']:+.3f}, {level} paired interval "
                f"{r['auc_difference_lower']:+.3f} to {r['auc_difference_upper']:+.3f})"
            )
        text = (
            f"No measurable difference between {_words(best)}{interval}: either will do, so keep the simpler "
            "one or the one the team already uses."
        )
        worse = [m for m in rows if m not in best]
        if worse:
            text += f" {_words(worse)} {'ranks' if len(worse) == 1 else 'rank'} {noun} measurably worse."
        doubts = [d for d in (chance(m) for m in best) if d]
        return " ".join([text, *doubts])

    def catch_lines(self, *, named: bool = True) -> list[str]:
        """Per model, one sentence: the share of the holdout's events its alarm band catches, and
        with the next band, beside the share of snapshots each flags (``named``: lead with the
        model's name). The summary and the report both say it in these words."""
        noun = _event_noun(self.outcome)
        out = []
        for r in self.table.iter_rows(named=True):
            if r.get("alarm_band") is None or r.get("alarm_recall") is None:
                continue
            who = f"With {r['model']}, " if named else ""
            text = (
                f"{who}{r['alarm_band']} catches {_pct(r['alarm_recall'])} "
                f"of {noun} while flagging {_pct(r.get('alarm_share'))} of snapshots"
            )
            if r.get("watch_band") is not None:
                text += (
                    f"; {r['alarm_band']} plus {r['watch_band']} catches {_pct(r.get('alarm_watch_recall'))} "
                    f"while flagging {_pct(r.get('alarm_watch_share'))}"
                )
            out.append(text + ".")
        return out

    def summary(self) -> Summary:
        """Readable text: overlap banners, the design, the verdicts, what the alarm bands catch and any
        warning first; then the split, one block per model and the breakdown."""
        lines = [f"overlap: this model saw the holdout: {name} ({how})" for name, how in self.overlaps.items()]
        lines.append(self.design())
        lines += [f"  {v}" for v in self.verdicts]
        lines += [f"  {c}" for c in self.catch_lines()]
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [
            f"  train {self.train_rows:,} snapshots ({self.train_events:,} with the event), as_of "
            f"{self.train_dates[0]} .. {self.train_dates[1]}",
            f"  test  {self.test_rows:,} snapshots ({self.test_events:,} with the event), as_of "
            f"{self.test_dates[0]} .. {self.test_dates[1]}",
            "",
        ]
        for r in self.table.iter_rows(named=True):
            lines.append(f"{r['model']}  (hash {r['model_hash']})")
            lines.append(
                f"  AUC {r['auc']:.3f} [{r['auc_lower']:.3f}, {r['auc_upper']:.3f}]   PR-AUC {r['pr_auc']:.3f}"
                f"   top-decile lift {r['lift_top10']:.2f} (captures {r['capture_top10']:.0%} of events)"
            )
            lines.append(
                f"  Brier {r['brier']:.4f}   calibration error {r['ece']:.4f}   scored {r['scored']:.0%} of rows"
            )
            if r.get("alarm_band") is not None:
                lines.append(
                    f"  {r['alarm_band']} band: precision {_pct(r['alarm_precision'])}, recall "
                    f"{_pct(r['alarm_recall'])}, {r['false_alarms']:,} false alarms, {r['misses']:,} misses"
                )
            if math.isnan(r["precision_cutoff"]):
                lines.append(f"  no cut-off reaches {r['precision_target']:.0%} precision")
            else:
                lines.append(
                    f"  cut-off for {r['precision_target']:.0%} precision: score {_flag_op(self.outcome)} "
                    f"{r['precision_cutoff']:.1f} (recall {_pct(r['precision_cutoff_recall'])})"
                )
            lines.append(
                f"  capacity of {r['capacity_k']} accounts per {self.period}: score {_flag_op(self.outcome)} "
                f"{r['capacity_cutoff']:.1f} (precision {_pct(r['capacity_precision'])}, "
                f"recall {_pct(r['capacity_recall'])})"
            )
            pm = self.probability_maps.get(r["model"])
            if pm is not None and pm.fitted:
                lines.append(f"  reading the score: {pm.explain(30)}; {pm.explain(70)}")
            lines.append("")
        if self.table.height > 1:
            ranked = self.table.sort("auc", descending=True, nulls_last=True)
            a, b = ranked.row(0, named=True), ranked.row(1, named=True)
            overlap = a["auc_lower"] <= b["auc_upper"]
            lines.append(
                f"Best by AUC: {a['model']} ({a['auc']:.3f} vs {b['auc']:.3f} for {b['model']}"
                f"{'; the separate intervals overlap' if overlap else ''}); paired on the same rows:"
            )
            lines += [f"  {v}" for v in self.verdicts]
        if self.by is not None:
            lines.append(f"\nAUC by {self.by}:")
            piv = self.segments.select("model", self.by, "auc").pivot(on="model", index=self.by, values="auc")
            width = max([12, *(len(str(v)) for v in piv[self.by].to_list())])
            for r in piv.iter_rows(named=True):
                cells = "   ".join(
                    f"{m} {r[m]:.3f}" if r[m] is not None and not math.isnan(r[m]) else f"{m} -" for m in self.models
                )
                lines.append(f"  {str(r[self.by]):<{width}} {cells}")
        return Summary("\n".join(lines).rstrip())

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        """In a notebook: the split and the head-to-head tables (charts via :meth:`charts`)."""
        from healthscore.render import evaluation as report  # render sits above analysis: HTML on request

        return report.repr_html(self)

    def charts(self) -> dict[str, Any]:
        """The report's charts: ``roc``, ``reliability``, ``bands``, ``lift``, ``trajectories``, ``comparison``."""
        from healthscore.viz import evaluation as ev_charts  # viz sits above analysis: charts are drawn on request

        return ev_charts.charts(self)

    def to_html(self, path: str | os.PathLike[str] | None = None, title: str | None = None) -> str:
        """A static, self-contained HTML report (charts as inline SVG, no scripts, no network).

        Written atomically when ``path`` is given; the HTML is returned either way.
        """
        from healthscore.render import evaluation as report  # render sits above analysis: HTML on request

        return report.report_html(self, path, title=title)

    def save(self, folder: str | os.PathLike[str]) -> list[str]:
        """Write the report and its tables into ``folder``: ``evaluation.html``, ``evaluation.csv``
        (model x metrics), ``evaluation_segments.csv``, ``evaluation_bands.csv`` and one
        ``probability_<model>.json`` per model. Every file is written atomically."""

        folder = os.fspath(folder)
        paths = [os.path.join(folder, "evaluation.html")]
        self.to_html(paths[0])
        for name, frame in [
            ("evaluation.csv", self.table),
            ("evaluation_segments.csv", self.segments),
            ("evaluation_bands.csv", self.bands),
        ]:
            paths.append(os.path.join(folder, name))
            files.write_csv(frame, paths[-1])
        return paths + self.save_probability_maps(folder)

    def save_probability_maps(self, folder: str | os.PathLike[str]) -> list[str]:
        """Write each model's probability map as ``probability_<model>.json`` into ``folder``."""
        paths = []
        for name, pm in self.probability_maps.items():
            p = os.path.join(os.fspath(folder), f"probability_{_slug(name)}.json")
            pm.save(p)
            paths.append(p)
        return paths


def key_table_text(ev: Evaluation) -> str:
    """The head-to-head table as fixed-width text (what the command line prints), the verdict first."""
    w = max([5, *(len(m) for m in ev.models)])  # full model names: never cut
    head = (
        f"{'model':<{w}} {'AUC [95% CI]':<22} {'PR-AUC':>7} {'lift@10%':>8} {'captured':>8} "
        f"{'Brier':>7} {'ECE':>7} {'alarm prec':>10} {'alarm rec':>9}"
    )
    lines = [f"overlap: this model saw the holdout: {name} ({how})" for name, how in ev.overlaps.items()]
    lines += [
        ev.design(),
        f"verdict: {ev.recommendation()}",
        f"holdout as_of {ev.test_dates[0]} .. {ev.test_dates[1]}: "
        f"{ev.test_rows:,} snapshots, {ev.test_events:,} with the event",
        head,
        "-" * len(head),
    ]
    for r in ev.table.iter_rows(named=True):
        ci = f"{r['auc']:.3f} [{r['auc_lower']:.3f}, {r['auc_upper']:.3f}]"
        lines.append(
            f"{r['model']:<{w}} {ci:<22} {r['pr_auc']:>7.3f} {r['lift_top10']:>8.2f} "
            f"{_pct(r['capture_top10']):>8} {r['brier']:>7.4f} {r['ece']:>7.4f} "
            f"{_pct(r.get('alarm_precision')):>10} {_pct(r.get('alarm_recall')):>9}"
        )
    tail = ev.verdicts + ev.catch_lines() + [f"warning: {x}" for x in ev.warnings]
    return "\n".join(lines + ([""] + tail if tail else []))


_NOUNS = {
    "churned": ("churners", "churn"),
    "expanded": ("expanding accounts", "expansion"),
    "contracted": ("contracting accounts", "contraction"),
}


def _words(names: list[str]) -> str:
    """Names as a list in words: ``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def event_noun(outcome: str, *, plural: bool = True) -> str:
    """Who has the event ("churners") or the event itself ("churn"), for sentences.

    >>> event_noun("churned"), event_noun("churned", plural=False)
    ('churners', 'churn')
    """
    people, thing = _NOUNS.get(outcome, (f"accounts with {outcome!r}", repr(outcome)))
    return people if plural else thing


_event_noun = event_noun


def _verdict(a: str, b: str, d: Difference, outcome: str, confidence: float) -> tuple[str, str, Difference, str]:
    """Order the pair so a measurable difference reads in favour of the better model, and say it."""
    if math.isnan(d.lower):
        return a, b, d, f"{a} vs {b}: no paired interval (too few events or accounts on the shared rows)"
    if d.lower > 0 or d.upper < 0:
        if d.upper < 0:
            a, b, d = b, a, Difference(-d.estimate, -d.upper, -d.lower, d.p_value)
        return (
            a,
            b,
            d,
            (
                f"{a} ranks {_event_noun(outcome)} better than {b}: AUC {d.estimate:+.3f} "
                f"[{d.lower:+.3f}, {d.upper:+.3f}]"
            ),
        )
    return (
        a,
        b,
        d,
        (
            f"no measurable difference between {a} and {b} (AUC difference {d.estimate:+.3f} "
            f"[{d.lower:+.3f}, {d.upper:+.3f}], {confidence:.0%} paired interval)"
        ),
    )


def _comparison_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    schema = {
        "model_a": pl.Utf8,
        "model_b": pl.Utf8,
        "rows": pl.Int64,
        "events": pl.Int64,
        "auc_a": pl.Float64,
        "auc_b": pl.Float64,
        "auc_difference": pl.Float64,
        "auc_difference_lower": pl.Float64,
        "auc_difference_upper": pl.Float64,
        "p_value": pl.Float64,
        "verdict": pl.Utf8,
    }
    return pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)


def compare_models(frame: pl.DataFrame, outcome: str, *, confidence: float = 0.95) -> pl.DataFrame:
    """Every pair of models head to head on the rows both scored: paired AUC difference and verdict.

    ``frame`` holds ``account_id``, ``outcome`` and one score column per model (higher is
    healthier), named after the model; a pair is compared on the rows where both have a score,
    clustered by account (:func:`auc_difference`).

    >>> f = pl.DataFrame({"account_id": list("abcdefgh"), "churned": [0, 0, 1, 1, 0, 1, 0, 1],
    ...                   "good": [9, 8, 2, 1, 9, 2, 7, 3], "same": [9, 8, 2, 1, 9, 2, 7, 3]})
    >>> compare_models(f, "churned")["verdict"][0]
    'no measurable difference between good and same (AUC difference +0.000 [+0.000, +0.000], 95% paired interval)'
    """
    names = [c for c in frame.columns if c not in ("account_id", outcome)]
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            both = frame.filter(pl.col(a).is_not_null(), pl.col(b).is_not_null())
            y = both[outcome].cast(pl.Float64).to_numpy()
            ra, rb = risk_of(both[a], outcome), risk_of(both[b], outcome)
            d = auc_difference(y, ra, rb, confidence=confidence, groups=both["account_id"])
            auc_a, auc_b = auc(y, ra), auc(y, rb)
            ma, mb, dd, text = _verdict(a, b, d, outcome, confidence)
            if ma != a:
                auc_a, auc_b = auc_b, auc_a
            rows.append(
                {
                    "model_a": ma,
                    "model_b": mb,
                    "rows": both.height,
                    "events": int(y.sum()),
                    "auc_a": auc_a,
                    "auc_b": auc_b,
                    "auc_difference": dd.estimate,
                    "auc_difference_lower": dd.lower,
                    "auc_difference_upper": dd.upper,
                    "p_value": dd.p_value,
                    "verdict": text,
                }
            )
    return _comparison_frame(rows)


def _reversed_warnings(table: pl.DataFrame, outcome: str) -> list[str]:
    """A model whose AUC is below 0.5 ranks the wrong way round: say so, with the likely cause."""
    more = "more" if event_is_low_score(outcome) else "less"
    out = []
    for r in table.iter_rows(named=True):
        a = r["auc"]
        if a is None or math.isnan(a) or a >= 0.5:
            continue
        sure = "; its whole interval is below 0.5" if r["auc_upper"] is not None and r["auc_upper"] < 0.5 else ""
        out.append(
            f"{r['model']} has AUC {a:.3f} [{r['auc_lower']:.3f}, {r['auc_upper']:.3f}], below 0.5{sure}: "
            f"a higher score goes with {more} {_event_noun(outcome, plural=False)}: is a direction "
            "reversed? (a metric's direction, the outcome, or a score that reads higher = riskier)"
        )
    return out


def _overlap(name: str, model: Any, split: date, test_end: date, data_end: date) -> str | None:
    """How a fitted model's training window reaches into the holdout, or None when it does not."""
    window = getattr(model, "training_window", None)
    if window is None:
        return None
    first, until = window
    if until < split or first > data_end:
        return None
    return (
        f"fitted on snapshots from {first} with outcomes seen until {until}; the holdout is snapshots "
        f"{split} .. {test_end} with outcomes until {data_end}"
    )


def _slug(name: str) -> str:

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"


def _pct(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.0%}"


def _flag_op(outcome: str) -> str:
    return "<=" if event_is_low_score(outcome) else ">="


def evaluate(
    snapshots: pl.DataFrame | pl.LazyFrame,
    events: pl.DataFrame | pl.LazyFrame,
    models: Any,
    *,
    outcome: str = "churned",
    horizon: str = "90d",
    split: date | str | None = None,
    by: str | None = "auto",
    probability: Literal["isotonic", "logistic"] = "isotonic",
    target_precision: float = 0.2,
    capacity: int | None = None,
    train_share: float = 0.7,
    trajectory_weeks: int = 26,
    folds: int = 5,
    seed: int = 0,
    allow_overlap: bool = False,
    confidence: float = 0.95,
) -> Evaluation:
    """Backtest one or more score models on the same holdout: a time split, or cross-validation
    when there is one snapshot per account.

    ``split``: a date (the first test date; training rows end a horizon earlier), ``"kfold"``
    (``folds``-fold cross-validation, stratified by the outcome and grouped by account, scikit-learn's
    StratifiedGroupKFold; each row's probability comes from the map fitted without its fold),
    ``"random"`` (a random 30% of accounts held out) or None: a time split 70% into the labelled
    range, or ``"kfold"`` for a one-row-per-customer extract (its outcome window is the observation
    window, and there is no later time to test on). ``by="auto"`` breaks results down by
    ``segment`` when the snapshots have it.

    Labels every snapshot point-in-time (``label_outcomes``), splits by time (:func:`time_split`),
    scores each model on all snapshots (so trend metrics see their history), fits each model's
    score-to-probability map on the training rows and measures everything on the test rows:
    AUC with a clustered DeLong interval, PR-AUC, top-decile lift and capture, Brier score,
    reliability and calibration error, event rate per band, the alarm band's precision and
    recall, the cut-off for ``target_precision`` and for a CSM ``capacity`` (accounts per week,
    default a tenth of the book), per ``by`` segment and overall.

    ``models`` is one model, a list, or a dict name -> model; a model is a ``ScoreModel`` or a
    ready-made score frame (``account_id``, ``as_of``, ``score`` higher-is-healthier, optional
    ``band``), so a score from any other tool can be held against the same holdout.

    Every pair of models is compared on the rows both scored with a paired, account-clustered
    DeLong interval of the AUC difference (``comparisons``, with a one-sentence verdict at
    ``confidence``); a model whose AUC is below 0.5 gets a warning. A fitted model whose
    ``[fitted]`` training window reaches into the holdout is refused (it saw the weeks it would
    be judged on) unless ``allow_overlap=True``, which marks the summary and every chart.

    >>> import healthscore as hs
    >>> p = hs.make_portfolio(n_accounts=300, n_weeks=52, seed=1)
    >>> ev = evaluate(p.snapshots, p.events, hs.load_model(hs.datasets.sample_dir() / "model.toml"))
    >>> ev.models, 0.5 < ev.table["auc"][0] <= 1.0
    (['health'], True)
    """

    snaps = snapshots.collect() if isinstance(snapshots, pl.LazyFrame) else snapshots
    ev = events.collect() if isinstance(events, pl.LazyFrame) else events
    if by == "auto":
        by = "segment" if "segment" in snaps.columns else None
    if by is not None and by not in snaps.columns:
        raise EvaluationError(
            f"cannot break the backtest down by {by!r}: the snapshots have no such column "
            f"(they have {', '.join(snaps.columns[:15])}...); pass by=None or another column"
        )
    named = _named_models(models)
    if "event" in ev.columns and not (ev["event"] == outcome).any():
        known = ", ".join(sorted(str(e) for e in ev["event"].drop_nulls().unique())) or "none"
        raise EvaluationError(
            f"the events table holds no {outcome!r} event (it holds: {known}); pick one of those as the outcome"
        )
    cross = is_cross_sectional(snaps)
    method = split if split in ("kfold", "random", "time") else "time" if split is not None or not cross else "kfold"
    labelled = label_outcomes(snaps, ev, outcome=outcome, horizon=horizon)
    window = (
        (
            f"the observation window (as_of .. {observation_end(snaps, ev, outcome)}; one snapshot per account, "
            "so that window is the horizon)"
        )
        if cross
        else None
    )
    fold_of: pl.DataFrame | None = None
    if method == "time":
        train, test, split_date = time_split(
            labelled, horizon=horizon, split=None if split == "time" else split, train_share=train_share
        )
        if int(test[outcome].sum()) == 0:
            raise EvaluationError(
                f"the test rows (as_of {split_date} and later) hold no {outcome!r} event: "
                "move the split earlier or use a longer history"
            )
    else:
        train, test, fold_of = _grouped_split(labelled, outcome, method, folds, seed)
        split_date = None
    data_end = snaps["as_of"].max()
    first_test = split_date if split_date is not None else test["as_of"].min()
    overlaps = {
        name: how
        for name, m in named.items()
        if (how := _overlap(name, m, first_test, test["as_of"].max(), data_end)) is not None
    }
    if overlaps and not allow_overlap:
        name, how = next(iter(overlaps.items()))
        after = named[name].training_window[1] + timedelta(days=1)
        source = getattr(named[name], "source", None)
        if split_date is None:
            fix = "evaluate it on accounts it was not fitted on, "
        else:
            later = (
                f"evaluate after its training window with split='{after}' (--split {after}), "
                if after <= labelled["as_of"].max()
                else ""
            )
            fix = f"{later}refit it on the weeks before the holdout (healthscore fit --until {split_date}), "
        raise EvaluationError(
            f"model {name!r}{f' ({source.name})' if source is not None else ''} saw the holdout: it was {how}, "
            f"so its AUC would flatter it. To fix it, {fix}or accept the overlap with allow_overlap=True "
            "(--allow-overlap), which marks the summary and every figure"
        )
    keys = ["account_id", "as_of"]
    attrs = [by] if by is not None else []
    label_cols = [*keys, *attrs, outcome]
    train_l = train.select(label_cols)
    test_l = test.select(label_cols)

    rows, seg_rows, band_t, rel_t, roc_t, gain_t, traj_t = [], [], [], [], [], [], []
    pmaps: dict[str, ProbabilityMap] = {}
    orders: dict[str, list[str]] = {}
    fraction = 0.1
    paired = test_l.select(*keys, outcome).sort(keys)
    for name, model in named.items():
        scored = _scores_of(model, snaps, score_frame, name)
        tr = train_l.join(scored, on=keys, how="left")
        te = test_l.join(scored, on=keys, how="left").sort(keys)
        pm: ProbabilityMap | None
        try:
            pm = ProbabilityMap(method=probability, outcome=outcome, horizon=horizon).fit(tr["score"], tr[outcome])
            pmaps[name] = pm
        except ValueError:  # no events among scored training rows: report without probabilities
            pm = None
        if fold_of is not None and pm is not None:
            te = _out_of_fold(te.join(fold_of, on=keys, how="left"), outcome, probability, horizon)
        # a score frame without bands has no alarm band to judge (not one that catches nothing)
        alarm = _alarm_band(model, outcome) if te["band"].null_count() < te.height else None
        watch = _watch_band(model, alarm, outcome)
        stamp = {"model": name, "model_hash": str(getattr(model, "hash", "") or "")}
        rows.append({**stamp, **_metrics(te, outcome, pm, alarm, target_precision, capacity, fraction, watch)})
        paired = paired.join(te.select(*keys, pl.col("score").alias(name)), on=keys, how="left")
        parts = [("(all)", te)]
        if by is not None:
            parts += [(str(k[0]), g) for k, g in te.sort(by).group_by(by, maintain_order=True) if k[0] is not None]
        for seg, g in parts:
            seg_rows.append(
                {
                    "model": name,
                    by or "segment": seg,
                    **_metrics(g, outcome, pm, alarm, target_precision, capacity, fraction),
                }
            )
        order = [b.name for b in sorted(getattr(model, "bands", []) or [], key=lambda b: b.lower)]
        orders[name] = order
        if te["band"].null_count() < te.height:  # a score frame without bands has no band table
            band_t.append(band_table(te, outcome, order=order or None).with_columns(model=pl.lit(name)))
        ok = te.filter(pl.col("score").is_not_null())
        y = ok[outcome].cast(pl.Float64).to_numpy()
        risk = risk_of(ok["score"], outcome)
        if pm is not None:
            prob = ok["_prob"].to_numpy() if "_prob" in ok.columns else pm.predict(ok["score"])
            rel_t.append(reliability_curve(y, prob).with_columns(model=pl.lit(name)))
        roc_t.append(roc_points(y, risk).with_columns(model=pl.lit(name)))
        gain_t.append(gains_curve(y, risk).with_columns(model=pl.lit(name)))
        traj_t.append(_trajectories(scored, ev, outcome, trajectory_weeks).with_columns(model=pl.lit(name)))

    def stack(parts: list[pl.DataFrame]) -> pl.DataFrame:
        if not parts:
            return pl.DataFrame({"model": []}, schema={"model": pl.Utf8})
        f = pl.concat(parts, how="diagonal_relaxed")
        return f.select("model", *[c for c in f.columns if c != "model"])

    table = pl.DataFrame(rows)
    return Evaluation(
        outcome=outcome,
        horizon=horizon,
        split=split_date,
        by=by,
        table=table,
        segments=pl.DataFrame(seg_rows),
        bands=stack(band_t),
        reliability=stack(rel_t),
        roc=stack(roc_t),
        gains=stack(gain_t),
        trajectories=stack(traj_t),
        probability_maps=pmaps,
        band_orders=orders,
        train_rows=train.height,
        test_rows=test.height,
        train_events=int(train[outcome].sum()),
        test_events=int(test[outcome].sum()),
        train_dates=(train["as_of"].min(), train["as_of"].max()),
        test_dates=(test["as_of"].min(), test["as_of"].max()),
        method=method,
        folds=folds if method == "kfold" else None,
        window=window,
        period=_period_word(test),
        comparisons=compare_models(paired.drop("as_of"), outcome, confidence=confidence),
        overlaps=overlaps,
        warnings=_reversed_warnings(table, outcome),
        confidence=confidence,
    )


def _grouped_split(
    labelled: pl.DataFrame, outcome: str, method: str, folds: int, seed: int
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame | None]:
    """(train, test, fold of each row): all rows with their fold for k-fold, a 70/30 split of accounts for random."""
    from sklearn.model_selection import (  # scikit-learn is loaded only when a model is fitted
        GroupShuffleSplit,
        StratifiedGroupKFold,
    )

    rows = labelled.sort("account_id", "as_of")
    y = rows[outcome].cast(pl.Int8).to_numpy()
    groups = rows["account_id"].to_numpy()
    n_events, n_accounts = int(y.sum()), rows["account_id"].n_unique()
    if n_events == 0:
        raise EvaluationError(f"no labelled snapshot has the {outcome!r} event: nothing to evaluate against")
    if method == "random":
        tr_idx, te_idx = next(GroupShuffleSplit(n_splits=1, test_size=0.3, random_state=seed).split(rows, y, groups))
        train, test = rows[np.sort(tr_idx)], rows[np.sort(te_idx)]
        if int(test[outcome].sum()) == 0:
            raise EvaluationError(f"the random holdout holds no {outcome!r} event: use more accounts or split='kfold'")
        return train, test, None
    if folds < 2 or folds > min(n_events, n_accounts):
        raise EvaluationError(
            f"{folds}-fold cross-validation needs 2 to {min(n_events, n_accounts)} folds (one "
            f"event and one account per fold at least): choose folds in that range"
        )
    fold = np.empty(rows.height, dtype=np.int32)
    cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (_, te_idx) in enumerate(cv.split(np.zeros(rows.height), y, groups)):
        fold[te_idx] = k
    fold_of = rows.select("account_id", "as_of").with_columns(pl.Series("_fold", fold))
    return rows, rows, fold_of


def _out_of_fold(te: pl.DataFrame, outcome: str, probability: str, horizon: str) -> pl.DataFrame:
    """Each row's probability from the map fitted on the other folds (``_prob``)."""
    prob = np.full(te.height, np.nan)
    fold = te["_fold"].to_numpy()
    score = te["score"].to_numpy()
    for k in np.unique(fold):
        rest = te.filter(pl.col("_fold") != k)
        try:
            pm = ProbabilityMap(method=probability, outcome=outcome, horizon=horizon).fit(rest["score"], rest[outcome])
        except ValueError:  # a fold whose complement has no scored event: those rows stay without one
            continue
        mine = fold == k
        prob[mine] = pm.predict(score[mine])
    return te.with_columns(pl.Series("_prob", prob, nan_to_null=False)).drop("_fold")
