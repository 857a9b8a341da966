"""Learn each metric's calibration curve together with the weights, and keep the score additive.

:func:`fit_shapes` reads history the way :func:`~healthscore.analysis.fitting.fit_weights` does
(point-in-time labels), but it does not take the model's calibrations as given. It learns them:

1. every number is cut into bins of about equal size (a missing value is its own bin; a value
   holding a bin's share of the rows or more, such as 0 days overdue, is a bin of its own and
   the other values share the remaining bins; bins much wider than the others, in the thin
   tails, are split where the rows allow); every categorical or Boolean metric keeps its
   levels, rare levels pooled into one;
2. one penalised logistic regression learns all bins of all metrics at once, so each curve is
   the metric's own effect with the others held fixed (not a shadow of the latent health they
   share). For numbers the penalty is on the steps between neighbouring bins, so a thin bin
   follows its neighbours (levels shrink towards the overall rate); its strength is chosen by
   cross-validation that respects time and accounts (train on earlier weeks of some accounts,
   validate on later weeks of the others);
3. each curve is made monotone (isotonic regression, direction from the data) unless the data
   clearly say it is not: a curve with one turn inside the data (a U or a hump) is kept only
   when it predicts the cross-validation rows better than the monotone curve and both of its
   arms are significant (corrected for every metric whose curve has such a turn);
4. the weights come from a logistic regression of the outcome on the calibrated sub-scores,
   with standard errors clustered by account; a metric whose significant direction contradicts
   the model's stated direction is flagged with the evidence, never silently dropped.

The result is an ordinary score model: ``steps`` (numbers), ``categorical`` and ``boolean``
(levels) calibrations, a score for missing values (``na_policy = "score:<x>"``), and weights in
proportion to each curve's strength, so :func:`healthscore.score` computes it unchanged and the
score is a linear function of the fitted log-odds.

>>> import healthscore as hs
>>> p = hs.make_portfolio(n_accounts=400, n_weeks=40, seed=2, truth="nonlinear")
>>> fit = fit_shapes(p.snapshots, p.events, hs.load_model(hs.datasets.sample_dir() / "model.toml"))
>>> fit.model.metric("seats_deployed_ratio").method
'steps'
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from scipy import sparse
from scipy.optimize import isotonic_regression, minimize
from scipy.special import expit
from sklearn.metrics import log_loss

from healthscore.analysis.fitting import LogitResult, fit_logit, fitted_record
from healthscore.analysis.monitoring import reference_from
from healthscore.core.calibration import _equal_frequency_edges
from healthscore.core.labels import _input_error, label_outcomes
from healthscore.core.scoring import calibrate
from healthscore.results import Summary
from healthscore.spec.model import ScoreModel
from healthscore.spec.outcomes import horizon_days, parse_horizon, resolve_outcome

__all__ = ["fit_shapes", "ShapeFit"]

_LEVEL_METHODS = ("boolean", "categorical")
_FIXED_METHODS = ("trend", "goal")  # they read more than one value: their own calibration is kept
_ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1)  # penalty per training row, tried by cross-validation
_CV_ROWS = 300_000  # cross-validate on at most this many rows (whole accounts, drawn at random)
_OTHER = "(other levels)"


# ---------------------------------------------------------------- per-metric encodings
@dataclass
class _Encoding:
    """How one metric becomes columns of the joint design: one column per bin or level."""

    metric: str
    kind: Literal["bins", "levels", "fixed"]
    labels: list[str]  # one per column (a bin's range, a level, "sub-score")
    index: np.ndarray  # per row: column within the block (bins/levels)
    value: np.ndarray | None = None  # fixed: the sub-score / 100 (0 where missing)
    edges: list[float] = field(default_factory=list)
    levels: list[str] = field(default_factory=list)  # level of each level column
    pooled: list[str] = field(default_factory=list)  # rare levels put in the pooled column
    has_null: bool = False
    counts: np.ndarray | None = None
    events: np.ndarray | None = None

    @property
    def width(self) -> int:
        return len(self.labels)


def _quantile_edges(v: np.ndarray, n_bins: int, min_rows: int = 1) -> list[float]:
    """Edges of up to ``n_bins`` bins of about equal size; a value never straddles two bins.

    A value that holds a bin's share of the rows or more (a mass point, such as 0 days overdue)
    gets a bin of its own, and the bins it would have swallowed go to the other values: the rest
    is cut into equal-frequency bins, so the values beside a mass point keep their resolution.
    A run of values between mass points gets no more bins than it has ``min_rows`` rows for.

    >>> _quantile_edges(np.arange(100.0), 4)
    [25.0, 50.0, 75.0]
    >>> _quantile_edges(np.r_[np.zeros(900), np.arange(1.0, 101.0)], 5)
    [1.0, 26.0, 51.0, 76.0]
    """
    levels, counts = np.unique(v, return_counts=True)
    if levels.size <= n_bins:
        return _equal_frequency_edges(v, n_bins)
    heavy = np.zeros(levels.size, dtype=bool)
    while True:  # a level may turn heavy once the heavier ones are set apart
        bins_left = n_bins - int(heavy.sum())
        rest = int(counts[~heavy].sum())
        new = ~heavy & (counts * max(bins_left, 1) >= rest)
        if bins_left <= 1 or not new.any():
            break
        heavy |= new
    edges: set[int] = set()  # edge i means "a bin starts at levels[i]"
    for i in np.flatnonzero(heavy):
        edges.update((int(i), int(i) + 1))
    # the runs of light levels between heavy ones share the bins left, in proportion to their rows
    light = np.flatnonzero(~heavy)
    rest = int(counts[light].sum())
    bins_left = max(n_bins - int(heavy.sum()), 1)
    if light.size:
        runs = np.split(light, np.flatnonzero(np.diff(light) > 1) + 1)
        for run in runs:
            c = counts[run]
            k = max(1, min(int(round(bins_left * c.sum() / rest)), int(c.sum()) // max(min_rows, 1)))
            cum = np.cumsum(c)
            at = np.searchsorted(cum, c.sum() * np.arange(1, k) / k, side="left") + 1
            edges.update(int(run[0] + a) for a in at if 0 < a < run.size)
    return [float(levels[i]) for i in sorted(edges) if 0 < i < levels.size]


def _bin_edges(v: np.ndarray, y: np.ndarray, n_bins: int, min_rows: int) -> list[float]:
    """Equal-frequency edges (:func:`_quantile_edges`), wide bins split, then neighbours merged
    until every bin holds ``min_rows`` rows.

    Equal-frequency bins are wide where the data are thin (the tails), which is often where a
    curve bends most. So a bin wider than ``1/n_bins`` of the range of the central 98% of the
    values is cut into pieces of about that width (at values that occur); the pieces that end up
    thinner than ``min_rows`` rows are merged back with their neighbours.

    >>> v = np.r_[np.repeat(np.arange(10.0), 90), np.arange(10.0, 110.0)]  # a long thin tail
    >>> _bin_edges(v, np.zeros(v.size), 4, 40)
    [3.0, 6.0, 9.0, 34.0]
    """
    edges = _quantile_edges(v, n_bins, min_rows)
    levels, level_rows = np.unique(v, return_counts=True)  # the loops below read levels, not rows
    lo, hi = np.quantile(v, [0.01, 0.99])
    width = (hi - lo) / n_bins
    if width > 0:
        bounds = [float(levels[0]), *edges, float(levels[-1])]
        cuts: list[float] = []
        for a, b in zip(bounds, bounds[1:]):
            pieces = int(np.floor((b - a) / width))
            for j in range(1, pieces):
                at = levels[np.searchsorted(levels, a + j * (b - a) / pieces)]
                if a < at < b:
                    cuts.append(float(at))
        edges = sorted(set(edges) | set(cuts))
    while edges:
        at = np.searchsorted(np.asarray(edges), levels, side="right")
        counts = np.bincount(at, weights=level_rows, minlength=len(edges) + 1)
        i = int(np.argmin(counts))
        if counts[i] >= min_rows:
            break
        k = 0 if i == 0 else i - 1 if i == len(counts) - 1 else (i - 1 if counts[i - 1] <= counts[i + 1] else i)
        del edges[k]
    return edges


def _level_text(values: pl.Series) -> pl.Series:
    """Levels as text keys: 3.0 -> "3", True -> "1", "gold" -> "gold" (what ``categorical`` reads)."""
    if values.dtype == pl.Boolean:
        return values.cast(pl.Int8).cast(pl.Utf8)
    if values.dtype.is_numeric():
        f = pl.col("v").cast(pl.Float64)
        f = pl.when(f.is_finite()).then(f)
        text = pl.when(f.round(0) == f).then(f.cast(pl.Int64).cast(pl.Utf8)).otherwise(f.cast(pl.Utf8))
        return values.to_frame("v").select(text.alias(values.name)).to_series()
    return values.cast(pl.Utf8)


def _encode(metric: Any, rows: pl.DataFrame, y: np.ndarray, n_bins: int, min_rows: int) -> _Encoding:
    col = rows[metric.column]
    if metric.method in _FIXED_METHODS:
        sub = rows[f"sub_{metric.name}"].cast(pl.Float64).to_numpy()
        null = ~np.isfinite(sub)
        enc = _Encoding(
            metric.name,
            "fixed",
            ["sub-score", "missing"],
            null.astype(np.int64),
            value=np.where(null, 0.0, sub / 100.0),
            has_null=bool(null.any()),
        )
    elif metric.method in _LEVEL_METHODS or not (col.dtype.is_numeric() or col.dtype == pl.Boolean):
        text = _level_text(col)
        if metric.method == "boolean":  # anything but 0/1 counts as missing, as the boolean method reads it
            text = text.to_frame("t").select(pl.when(pl.col("t").is_in(["0", "1"])).then(pl.col("t"))).to_series()
        counts = text.drop_nulls().value_counts().sort("count", descending=True)
        ok = [str(k) for k, c in counts.rows() if c >= min_rows or metric.method == "boolean"]
        rare = sorted((str(k) for k, c in counts.rows() if str(k) not in ok), key=_sort_key)
        keep = sorted(ok, key=_sort_key)
        labels = keep + ([_OTHER] if rare else [])
        pos = {k: i for i, k in enumerate(keep)}
        null_col = len(labels)
        idx = (
            text.replace_strict(pos, default=len(keep), return_dtype=pl.Int64)
            .fill_null(null_col)
            .to_numpy()
            .astype(np.int64)
        )
        enc = _Encoding(
            metric.name, "levels", labels, idx, levels=keep, pooled=rare, has_null=bool((idx == null_col).any())
        )
    else:
        v = col.cast(pl.Float64).to_numpy()
        null = ~np.isfinite(v)
        finite = v[~null]
        if finite.size == 0:
            raise _input_error(
                "training rows",
                f"has no value of {metric.column!r} in any training row",
                f"Leave metric {metric.name!r} out of the model or pass rows where it is measured",
                column=metric.column,
            )
        edges = _bin_edges(finite, y[~null], n_bins, min_rows)
        idx = np.searchsorted(np.asarray(edges), np.nan_to_num(v), side="right").astype(np.int64)
        bounds = [-math.inf, *edges, math.inf]
        labels = [_range_label(a, b) for a, b in zip(bounds, bounds[1:])]
        enc = _Encoding(metric.name, "bins", labels, idx, edges=[float(e) for e in edges], has_null=bool(null.any()))
        enc.index[null] = len(labels)
    if enc.has_null and enc.kind != "fixed":
        enc.labels = [*enc.labels, "missing"]
    if enc.kind != "fixed":
        enc.counts = np.bincount(enc.index, minlength=enc.width)
        enc.events = np.bincount(enc.index, weights=y, minlength=enc.width)
    return enc


def _sort_key(level: str) -> tuple[int, float, str]:
    try:
        return (0, float(level), level)
    except ValueError:
        return (1, 0.0, level)


def _range_label(a: float, b: float) -> str:
    if math.isinf(a) and math.isinf(b):
        return "any value"
    if math.isinf(a):
        return f"< {b:g}"
    if math.isinf(b):
        return f">= {a:g}"
    return f"{a:g} to < {b:g}"


def _penalty(e: _Encoding) -> np.ndarray:
    """The rows of a block's penalty: the fit pays ``alpha * |P @ coef|^2 / 2`` for the block.

    Levels and kept calibrations: each coefficient on its own, so the penalty pulls each towards
    the overall rate. Bins of a number: each step between neighbouring bins, so the penalty pulls
    a bin towards its neighbours rather than towards the middle: a thin bin at the edge of the
    data follows the curve beside it instead of being flattened, and narrow bins stay smooth. The
    bin holding the median row pins the block's level, and the missing value is pulled towards it.

    >>> e = _Encoding("m", "bins", ["a", "b", "c"], np.zeros(0, dtype=np.int64), counts=np.array([1, 5, 1]))
    >>> _penalty(e)
    array([[-1.,  1.,  0.],
           [ 0., -1.,  1.],
           [ 0.,  1.,  0.]])
    """
    if e.kind != "bins":
        return np.eye(e.width)
    k = len(e.labels) - (1 if e.has_null else 0)
    counts = e.counts[:k] if e.counts is not None else np.ones(k)
    ref = int(np.searchsorted(np.cumsum(counts), counts.sum() / 2.0))
    p = np.zeros((e.width, e.width))
    for j in range(1, k):
        p[j - 1, j - 1], p[j - 1, j] = -1.0, 1.0
    p[k - 1, ref] = 1.0
    if e.has_null:
        p[k, ref], p[k, k] = -1.0, 1.0
    return p


def _design(encs: list[_Encoding], n: int) -> tuple[sparse.csr_matrix, list[int], sparse.csr_matrix]:
    """The joint sparse design (one block of columns per metric), each block's first column and
    the penalty's quadratic form ``P.T @ P`` (block by block, see :func:`_penalty`)."""
    starts, cols, data, pen = [], [], [], []
    offset = 0
    for e in encs:
        starts.append(offset)
        if e.kind == "fixed":
            cols += [np.full(n, offset, dtype=np.int64), offset + 1 + np.zeros(n, dtype=np.int64)]
            data += [e.value, e.index.astype(np.float64)]
        else:
            cols.append(offset + e.index)
            data.append(np.ones(n))
        p = _penalty(e)
        pen.append(p.T @ p)
        offset += e.width
    k = len(cols)
    indices = np.column_stack(cols).ravel() if cols else np.zeros(0, dtype=np.int64)
    values = np.column_stack(data).ravel() if data else np.zeros(0)
    X = sparse.csr_matrix((values, indices.astype(np.int32), np.arange(0, n * k + 1, k)), shape=(n, offset))
    return X, starts, sparse.block_diag(pen, format="csr") if pen else sparse.csr_matrix((0, 0))


@dataclass
class _Logit:
    """A logistic regression with the penalty ``alpha * w @ Q @ w / 2`` on the mean log-loss.

    With ``Q`` the identity it is scikit-learn's L2 ``LogisticRegression(C=1 / (alpha * n))``
    (a test holds the two equal); ``Q`` from :func:`_penalty` smooths neighbouring bins.
    """

    coef: np.ndarray
    intercept: float

    @classmethod
    def fit(
        cls,
        X: sparse.csr_matrix,
        y: np.ndarray,
        Q: sparse.csr_matrix,
        alpha: float,
        warm: _Logit | None = None,
        tol: float = 1e-5,
    ) -> _Logit:
        n, d = X.shape
        XT = X.T.tocsr()  # one transpose, reused by every gradient

        def loss_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
            coef, b = w[:d], w[d]
            eta = X @ coef + b
            qw = Q @ coef
            loss = float(np.mean(np.logaddexp(0.0, eta) - y * eta)) + 0.5 * alpha * float(coef @ qw)
            r = (expit(eta) - y) / n
            return loss, np.concatenate([XT @ r + alpha * qw, [r.sum()]])

        if warm is not None:
            x0 = np.concatenate([warm.coef, [warm.intercept]])
        else:
            m = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
            x0 = np.concatenate([np.zeros(d), [math.log(m / (1 - m))]])
        res = minimize(
            loss_grad,
            x0,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 300, "gtol": tol, "ftol": 64 * np.finfo(float).eps},
        )
        return cls(res.x[:d].copy(), float(res.x[d]))

    def predict(self, X: sparse.csr_matrix) -> np.ndarray:
        return expit(X @ self.coef + self.intercept)


# ---------------------------------------------------------------- cross-validation
def _folds(
    as_of: np.ndarray, accounts: np.ndarray, k: int, horizon_days: int, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Forward-chaining folds that respect time and accounts.

    The weeks are cut into ``k + 1`` consecutive blocks; fold ``j`` validates on block ``j``
    (j = 1..k) for one group of accounts and trains on the earlier rows of the other groups whose
    outcome window closes before that block starts, so no label and no account crosses over.
    """
    days = as_of.astype("datetime64[D]").astype(np.int64)
    uniq = np.unique(days)
    if uniq.size < k + 1:
        return []
    cuts = [uniq[int(round(i * uniq.size / (k + 1)))] for i in range(1, k + 1)] + [uniq[-1] + 1]
    _, acc_code = np.unique(accounts, return_inverse=True)
    group = np.random.default_rng(seed).permutation(int(acc_code.max()) + 1)[acc_code] % k
    out = []
    for j in range(k):
        start, stop = cuts[j], cuts[j + 1]
        val = (days >= start) & (days < stop) & (group == j)
        train = (days + horizon_days <= start) & (group != j)
        if val.any() and train.any():
            out.append((np.flatnonzero(train), np.flatnonzero(val)))
    return out


@dataclass
class _FoldFit:
    """One cross-validation fold's joint fit: coefficients, intercept, its validation rows."""

    coef: np.ndarray
    intercept: float
    rows: np.ndarray


def _choose_alpha(
    X: sparse.csr_matrix,
    y: np.ndarray,
    Q: sparse.csr_matrix,
    as_of: np.ndarray,
    accounts: np.ndarray,
    alphas: Sequence[float],
    folds: int,
    horizon_days: int,
    seed: int,
) -> tuple[float, pl.DataFrame, list[_FoldFit]]:
    """The penalty with the least validation log-loss, the table behind it, and each fold's fit
    at that penalty (to validate shapes on rows the fit has not seen)."""
    n = X.shape[0]
    rng = np.random.default_rng(seed)
    keep = np.arange(n)
    if n > _CV_ROWS:  # whole accounts at random, so every account keeps its history
        uniq, code = np.unique(accounts, return_inverse=True)
        take = rng.random(uniq.size) < _CV_ROWS / n
        keep = np.flatnonzero(take[code])
    splits = _folds(as_of[keep], accounts[keep], folds, horizon_days, seed)
    rows = []
    fits: dict[tuple[float, int], _FoldFit] = {}
    for j, (tr, va) in enumerate(splits):
        tr, va = keep[tr], keep[va]
        if len(np.unique(y[tr])) < 2 or len(np.unique(y[va])) < 2:
            continue
        warm = None
        Xtr, Xva = X[tr], X[va]
        for a in sorted(alphas, reverse=True):  # strong to weak penalty, each warm-started
            warm = _Logit.fit(Xtr, y[tr], Q, a, warm)
            p = warm.predict(Xva)
            fits[(a, j)] = _FoldFit(warm.coef, warm.intercept, va)
            rows.append((a, j, float(log_loss(y[va], p, labels=[0, 1])), int(va.size)))
    table = pl.DataFrame(
        rows, schema={"alpha": pl.Float64, "fold": pl.Int64, "log_loss": pl.Float64, "rows": pl.Int64}, orient="row"
    )
    if table.is_empty():
        return float(np.median(alphas)), table, []
    mean = table.group_by("alpha").agg(pl.col("log_loss").mean()).sort("log_loss", "alpha")
    best = float(mean["alpha"][0])
    return best, table, [f for (a, _j), f in sorted(fits.items()) if a == best]


# ---------------------------------------------------------------- curves
def _isotonic(c: np.ndarray, w: np.ndarray, increasing: bool) -> np.ndarray:
    return np.asarray(isotonic_regression(c, weights=w, increasing=increasing).x, dtype=float)


def _monotone(c: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, bool]:
    """The closer of the two isotonic fits (weighted), and whether it rises with the value."""
    up, down = _isotonic(c, w, True), _isotonic(c, w, False)
    rises = float(np.sum(w * (c - up) ** 2)) <= float(np.sum(w * (c - down) ** 2))
    return (up if rises else down), rises


def _unimodal(c: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The closest (weighted) curve that falls then rises, or rises then falls: a U or its mirror."""
    best, best_sse = c, math.inf
    for t in range(1, c.size - 1):
        for valley in (True, False):
            fit = np.concatenate(
                [_isotonic(c[: t + 1], w[: t + 1], not valley), _isotonic(c[t + 1 :], w[t + 1 :], valley)]
            )
            sse = float(np.sum(w * (c - fit) ** 2))
            if sse < best_sse:
                best, best_sse = fit, sse
    return best


def _turn(bent: np.ndarray) -> int | None:
    """The bin where a one-turn curve turns, when the turn is inside (both arms move), else None.

    >>> _turn(np.array([2.0, 1.0, 0.0, 1.0])), _turn(np.array([2.0, 1.0, 0.0, 0.0]))
    (2, None)
    """
    for t in (int(np.argmin(bent)), int(np.argmax(bent))):
        if 0 < t < bent.size - 1 and np.ptp(bent[: t + 1]) > 1e-6 and np.ptp(bent[t:]) > 1e-6:
            # the arms must both leave the turn the same way (a valley or a peak)
            if (bent[0] - bent[t]) * (bent[-1] - bent[t]) > 0:
                return t
    return None


def _bent_validates(X: sparse.csr_matrix, y: np.ndarray, fold_fits: list[_FoldFit], e: _Encoding, start: int) -> bool:
    """Does the one-turn curve predict the validation rows better than the monotone one?

    In every cross-validation fold the metric's curve learned on the training rows is projected
    both ways (monotone, one turn); each projection replaces the metric's term in that fold's
    log-odds of its validation rows (later weeks of other accounts). The turn is kept only when
    its total validation log-loss is the lower one. Without folds there is nothing to check.
    """
    if not fold_fits:
        return True
    k = len(e.edges) + 1
    w = e.counts[:k].astype(float)
    loss_mono = loss_bent = 0.0
    for f in fold_fits:
        term = f.coef[start : start + e.width]
        mono, bent = term.copy(), term.copy()
        mono[:k] = _monotone(term[:k], w)[0]
        bent[:k] = _unimodal(term[:k], w)
        idx = e.index[f.rows]
        base = X[f.rows] @ f.coef + f.intercept - term[idx]
        yv = y[f.rows]
        loss_mono += float(log_loss(yv, 1.0 / (1.0 + np.exp(-(base + mono[idx]))), labels=[0, 1], normalize=False))
        loss_bent += float(log_loss(yv, 1.0 / (1.0 + np.exp(-(base + bent[idx]))), labels=[0, 1], normalize=False))
    return loss_bent < loss_mono


@dataclass
class _Curve:
    metric: str
    logit: np.ndarray  # per column of the block: the fitted log-odds term
    chosen: np.ndarray  # per column: the curve used (monotone projection or the free one)
    shape: str  # "monotone", "u-shape", "flat", "levels", "fixed"
    rises: bool | None = None  # bins: does the event risk rise with the value?
    bent: np.ndarray | None = None  # bins: the closest U-shaped (or mirrored) curve


def _row_values(enc: _Encoding, curve: np.ndarray) -> np.ndarray:
    if enc.kind == "fixed":
        return curve[0] * enc.value + curve[1] * enc.index
    return curve[enc.index]


# ---------------------------------------------------------------- result
@dataclass
class ShapeFit:
    """What :func:`fit_shapes` learned: the fitted ``model`` and the evidence behind it.

    ``table``: one row per metric (shape, stated and fitted direction, weight share, the
    coefficient of its sub-score in the weight fit with a clustered interval and p-value, flags).
    ``curves``: one row per bin or level (rows, events, event rate, fitted log-odds term, score).
    ``cv``: validation log-loss per penalty and fold; ``alpha`` the penalty chosen.
    """

    model: ScoreModel
    outcome: str
    horizon: str
    table: pl.DataFrame
    curves: pl.DataFrame
    cv: pl.DataFrame
    alpha: float
    flags: list[str]
    logit: LogitResult | None
    n_rows: int
    n_events: int
    # the history it learned from (save adds the monitoring reference on it) and the model it started from
    history: tuple[Any, Any] | None = field(default=None, repr=False, compare=False)
    original: ScoreModel | None = field(default=None, repr=False, compare=False)

    def summary(self) -> Summary:
        """The fit, one line per metric, then every flag."""
        lines = [
            f"Learned shapes for {self.outcome!r} within {self.horizon}: {self.n_rows:,} rows, "
            f"{self.n_events:,} events; penalty {self.alpha:g} per row (chosen by time-and-account "
            "cross-validation)",
            "",
            f"{'metric':<24}{'shape':<11}{'direction':<18}{'share %':>8}{'p':>10}  flags",
        ]
        for r in self.table.iter_rows(named=True):
            p = (
                "n/a"
                if r["p_value"] is None or math.isnan(r["p_value"])
                else ("<0.0001" if r["p_value"] < 1e-4 else f"{r['p_value']:.4f}")
            )
            lines.append(
                f"{r['metric']:<24}{r['shape']:<11}{r['direction']:<18}{r['share']:>8.1f}{p:>10}  {r['flags']}"
            )
        if self.flags:
            lines += [""] + [f"note: {f}" for f in self.flags]
        return Summary("\n".join(lines))

    def to_frame(self) -> pl.DataFrame:
        """The per-metric table."""
        return self.table

    def comparison(self) -> pl.DataFrame:
        """The starting model against the fitted one: each metric's calibration method and its share
        of the score in percent (metric weight within its category times the category's share)."""
        before = self.original or self.model
        cur, new = before.weight_shares(), self.model.weight_shares()
        shape = dict(self.table.select("metric", "shape").iter_rows())
        rows = [
            (
                m.name,
                m.category,
                m.method,
                round(cur[m.name], 1),
                n.method,
                round(new[m.name], 1),
                round(new[m.name] - cur[m.name], 1),
                shape.get(m.name, ""),
            )
            for m, n in zip(before.metrics, self.model.metrics)
        ]
        return pl.DataFrame(
            rows,
            schema={
                "metric": pl.Utf8,
                "category": pl.Utf8,
                "current_method": pl.Utf8,
                "current_share": pl.Float64,
                "fitted_method": pl.Utf8,
                "fitted_share": pl.Float64,
                "change": pl.Float64,
                "shape": pl.Utf8,
            },
            orient="row",
        )

    def comparison_text(self) -> str:
        """:meth:`comparison` as a readable table (the layout of the weight fit's)."""
        lines = [f"{'metric':<24}{'category':<14}{'current %':>10}{'fitted %':>10}{'change':>8}  calibration"]
        lines += [
            f"{r['metric']:<24}{r['category']:<14}{r['current_share']:>10.1f}{r['fitted_share']:>10.1f}"
            f"{r['change']:>+8.1f}  {r['current_method']} -> {r['fitted_method']} ({r['shape']})"
            for r in self.comparison().iter_rows(named=True)
        ]
        return "\n".join(lines)

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the fitted model to a new TOML file (refuses to replace one unless ``overwrite``).

        Like the weight fit's file it carries ``[fitted]`` (what it learned from) and, when the fit
        read an events table, a ``[reference]`` table for ``healthscore monitor``.
        """
        target = Path(path)
        if target.exists() and not overwrite:
            raise FileExistsError(f"{target} exists; choose a new file name or pass overwrite=True")
        model = self.model
        if self.history is not None:
            snapshots, events = self.history
            model = model.with_reference(
                reference_from(snapshots, events, model, outcome=self.outcome, horizon=self.horizon)
            )
        return model.save(target)

    def __repr__(self) -> str:
        return f"ShapeFit({self.outcome!r}, {self.table.height} metrics, n={self.n_rows})"


# ---------------------------------------------------------------- the fit
def fit_shapes(
    snapshots: pl.DataFrame | pl.LazyFrame,
    events: pl.DataFrame | pl.LazyFrame | None,
    model: ScoreModel,
    outcome: str = "churned",
    horizon: str = "90d",
    *,
    n_bins: int = 12,
    min_bin_size: int | None = None,
    alphas: Sequence[float] = _ALPHAS,
    folds: int = 3,
    significance: float = 0.05,
    follow_data: bool = True,
    cadence: Literal["weekly", "monthly"] = "weekly",
    data_end: date | None = None,
    seed: int = 0,
) -> ShapeFit:
    """Learn every metric's calibration curve and the weights from history (see the module text).

    ``events=None`` means ``snapshots`` are labelled rows already (a Boolean ``outcome`` column,
    e.g. from :func:`~healthscore.analysis.fitting.label_outcomes`). Numbers get up to
    ``n_bins`` bins of at least ``min_bin_size`` rows (default: 1% of the rows, at least 50);
    levels rarer than that are pooled. ``alphas`` are the penalties (per training row) tried by
    cross-validation over ``folds`` forward-chaining folds.

    A metric whose data significantly (at ``significance``) contradict its stated direction is
    flagged with the evidence. With ``follow_data=True`` (default) the fitted curve follows the
    data and the flag asks you to flip the direction knowingly; with ``False`` the stated
    direction is held, the curve is fitted monotone that way (and comes out about flat).
    """
    horizon = parse_horizon(horizon)
    adverse = resolve_outcome(outcome, getattr(model, "outcomes", None) or None).adverse
    fixed = [m for m in model.metrics if m.method in _FIXED_METHODS]
    snaps = snapshots.collect() if isinstance(snapshots, pl.LazyFrame) else snapshots
    given = snaps
    if fixed:
        subs = calibrate(snaps, model).select("account_id", "as_of", *[f"sub_{m.name}" for m in fixed])
        snaps = snaps.join(subs, on=["account_id", "as_of"], how="left")
    if events is None:
        if outcome not in snaps.columns:
            raise _input_error(
                "training rows",
                f"have no outcome column {outcome!r}",
                "Pass the events table, or rows labelled with label_outcomes",
                column=outcome,
            )
        rows = snaps
    else:
        rows = label_outcomes(snaps, events, outcome=outcome, horizon=horizon, cadence=cadence, data_end=data_end)
    rows = rows.filter(pl.col(outcome).is_not_null())
    if rows.is_empty():
        raise _input_error(
            "snapshots",
            f"no snapshot can be labelled for {outcome!r} within {horizon}",
            "The history must be longer than the horizon: pass more weeks or a shorter horizon",
        )
    model.check_columns(rows.columns)
    y = rows[outcome].cast(pl.Float64).to_numpy()
    n, n_events = y.size, int(y.sum())
    if n_events == 0 or n_events == n:
        raise _input_error(
            "training rows",
            f"hold {n_events} {outcome!r} events in {n} rows: nothing to learn",
            "Use a longer history or another outcome",
            column=outcome,
        )
    min_rows = int(min_bin_size if min_bin_size is not None else max(50, n // 100))
    encs = [_encode(m, rows, y, n_bins, min_rows) for m in model.metrics]
    X, starts, Q = _design(encs, n)
    as_of = rows["as_of"].to_numpy()
    accounts = rows["account_id"].to_numpy()
    hdays = horizon_days(horizon)
    alpha, cv, fold_fits = _choose_alpha(X, y, Q, as_of, accounts, alphas, folds, hdays, seed)
    coef = _Logit.fit(X, y, Q, alpha).coef
    raw = [coef[s : s + e.width] for s, e in zip(starts, encs)]

    flags: list[str] = []
    if model.variants:
        flags.append(
            f"variants {[v.name for v in model.variants]} are left out of the fitted model: its curves "
            "and weights apply to every account; fit each segment on its own rows to get variants"
        )
    sign = 1.0 if adverse else -1.0  # risk = sign * log-odds term: higher risk is worse
    # first pass: monotone curves (direction from the data) plus the non-monotone remainders
    curves: list[_Curve] = []
    for e, c in zip(encs, raw):
        if e.kind != "bins":
            curves.append(_Curve(e.metric, c, c.copy(), "levels" if e.kind == "levels" else "fixed"))
            continue
        k = len(e.edges) + 1
        mono, rises = _monotone(c[:k], e.counts[:k].astype(float))
        chosen = c.copy()
        chosen[:k] = mono
        shape = "flat" if np.ptp(mono) < 1e-9 else "monotone"
        curves.append(_Curve(e.metric, c, chosen, shape, rises))
    feats: dict[str, np.ndarray] = {f"s__{e.metric}": _row_values(e, cv_.chosen) for e, cv_ in zip(encs, curves)}
    # U candidates: the closest curve with one turn inside the data; its two arms (each measured
    # from the turn, zero on the other side) replace the monotone term in a second weight fit
    arms: dict[str, np.ndarray] = dict(feats)
    turns: dict[str, int] = {}
    tried = 0  # metrics with a turn inside the data, validated or not: the Bonferroni count
    for i, (e, cv_) in enumerate(zip(encs, curves)):
        k = len(e.edges) + 1
        if e.kind != "bins" or k < 4:
            continue
        bent = cv_.logit.copy()
        bent[:k] = _unimodal(cv_.logit[:k], e.counts[:k].astype(float))
        turn = _turn(bent[:k])
        if turn is None:
            continue
        tried += 1
        # tested only when the turn predicts the cross-validation rows better than the monotone curve
        if not _bent_validates(X, y, fold_fits, e, starts[i]):
            continue
        cv_.bent = bent
        turns[e.metric] = turn
        left, right = bent - bent[turn], bent - bent[turn]
        left[turn:k], right[: turn + 1] = 0.0, 0.0
        left[k:], right[k:] = 0.0, 0.0  # the missing value stays with the monotone term's test
        del arms[f"s__{e.metric}"]
        arms[f"l__{e.metric}"] = _row_values(e, left)
        arms[f"r__{e.metric}"] = _row_values(e, right)
    test = _stage_two(rows, feats, outcome)
    test_u = _stage_two(rows, arms, outcome) if turns else None

    stated = {m.name: m.direction for m in model.metrics}
    # a U-shape must be clear: both arms significant, corrected for the metrics tried (Bonferroni)
    u_level = significance / max(1, tried)
    for e, cv_ in zip(encs, curves):
        if e.kind != "bins":
            continue
        k = len(e.edges) + 1
        if e.metric in turns and cv_.bent is not None:
            p_l, p_r = _p(test_u, f"l__{e.metric}"), _p(test_u, f"r__{e.metric}")
            b_l, b_r = _coef(test_u, f"l__{e.metric}"), _coef(test_u, f"r__{e.metric}")
            if b_l > 0 and b_r > 0 and max(p_l, p_r) <= u_level:
                cv_.chosen[:k] = cv_.bent[:k]
                cv_.shape = "u-shape"
                best = int(np.argmin(sign * cv_.bent[:k]))
                what = "U-shaped" if best == turns[e.metric] else "hump-shaped"
                flags.append(
                    f"{e.metric}: not monotone (both arms of its {what} curve are significant, p="
                    f"{_fmt_p(p_l)} below and p={_fmt_p(p_r)} above {e.labels[turns[e.metric]]}, under "
                    f"{u_level:.2g} after correcting for {tried} metrics tried); kept with the lowest "
                    f"risk at {e.labels[best]}"
                )
                continue
        p_mono = _p(test, f"s__{e.metric}")
        # the data's direction for the metric: higher values healthier when risk falls with the value
        data_dir = (
            None
            if cv_.shape == "flat"
            else ("lower_is_better" if (cv_.rises if sign > 0 else not cv_.rises) else "higher_is_better")
        )
        significant = p_mono <= significance
        if data_dir is not None and data_dir != stated[e.metric]:
            if significant:
                lo, hi = _rate_ends(e)
                msg = (
                    f"wrong sign: {e.metric} is stated {stated[e.metric]}, but the data say {data_dir} "
                    f"({outcome} rate {lo:.1%} in its lowest bin vs {hi:.1%} in its highest; the learned "
                    f"curve's term has p={_fmt_p(p_mono)} with the other metrics held fixed). "
                )
                if follow_data:
                    msg += (
                        f"The fitted curve follows the data: flip its direction to {data_dir} in your "
                        "model once you know why (or fix how the column is built)"
                    )
                else:
                    msg += (
                        f"Its stated direction is held, so its curve is about flat; flip its direction "
                        f"to {data_dir} to use it"
                    )
                flags.append(msg)
                if not follow_data:
                    cv_.chosen[:k] = _isotonic(cv_.logit[:k], e.counts[:k].astype(float), cv_.rises is False)
                    cv_.shape = "flat" if np.ptp(cv_.chosen[:k]) < 1e-9 else "monotone"
            else:  # not established: the stated direction guards the curve
                cv_.chosen[:k] = _isotonic(cv_.logit[:k], e.counts[:k].astype(float), not cv_.rises)
                cv_.shape = "flat" if np.ptp(cv_.chosen[:k]) < 1e-9 else "monotone"

    feats = {f"s__{e.metric}": _row_values(e, cv_.chosen) for e, cv_ in zip(encs, curves)}
    final = _stage_two(rows, feats, outcome)
    fitted, table, curve_rows = _build(model, encs, curves, final, sign, significance, stated, flags, outcome)
    fitted = fitted.with_fitted(
        fitted_record(
            given,
            rows,
            model,
            method="shapes",
            outcome=outcome,
            horizon=horizon,
            data_end=data_end,
            labelled=events is None,
        )
    )
    return ShapeFit(
        model=fitted,
        outcome=outcome,
        horizon=horizon,
        table=table,
        curves=curve_rows,
        cv=cv,
        alpha=alpha,
        flags=flags,
        logit=final,
        n_rows=n,
        n_events=n_events,
        history=(snapshots, events) if events is not None else None,
        original=model,
    )


def _fmt_p(p: float) -> str:
    return "n/a" if p != p else ("<0.0001" if p < 1e-4 else f"{p:.4f}")


def _rate_ends(e: _Encoding) -> tuple[float, float]:
    k = len(e.edges) + 1
    rates = e.events[:k] / np.maximum(e.counts[:k], 1)
    return float(rates[0]), float(rates[-1])


def _stage_two(rows: pl.DataFrame, feats: dict[str, np.ndarray], outcome: str) -> LogitResult | None:
    """Logistic regression of the outcome on the curves' terms, clustered by account."""
    frame = pl.DataFrame({"account_id": rows["account_id"], outcome: rows[outcome], **feats})
    names = [k for k, v in feats.items() if np.ptp(v) > 1e-12]
    if not names:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fit_logit(frame, names, outcome, groups="account_id", na_threshold=1.0, on_separation="keep")
        except (ValueError, np.linalg.LinAlgError):
            return None


def _coef(fit: LogitResult | None, term: str) -> float:
    if fit is None or term not in fit.params_:
        return float("nan")
    return float(fit.params_[term])


def _p(fit: LogitResult | None, term: str) -> float:
    if fit is None or term not in fit.pvalues_:
        return float("nan")
    return float(fit.pvalues_[term])


def _build(
    model: ScoreModel,
    encs: list[_Encoding],
    curves: list[_Curve],
    final: LogitResult | None,
    sign: float,
    significance: float,
    stated: dict[str, str],
    flags: list[str],
    outcome: str,
) -> tuple[ScoreModel, pl.DataFrame, pl.DataFrame]:
    metrics, table, curve_rows = [], [], []
    weights: dict[str, float] = {}
    for m, e, cv_ in zip(model.metrics, encs, curves):
        term = f"s__{m.name}"
        beta = float(final.params_[term]) if final is not None and term in final.params_ else 0.0
        curve = cv_.chosen * beta  # the metric's term of the log-odds, per column
        risk = sign * curve
        if e.kind == "fixed":
            # the kept calibration: the term is a * (sub-score / 100) (+ b when missing)
            a, b = risk
            span = abs(a)
            good = a <= 0  # a higher sub-score must mean less risk
            params, method, direction = m.params, m.method, m.direction
            na_score = float(np.clip(100.0 * b / a, 0.0, 100.0)) if (e.has_null and a != 0) else None
            weight = span if good else 0.0
            scores_out: list[float] = []
            if not good and span > 0:
                flags.append(
                    f"wrong sign: {m.name} keeps its own {m.method} calibration, but a higher sub-score "
                    f"goes with more {outcome} here; its weight is set to 0 until you check it"
                )
        else:
            lo, hi = float(risk.min()), float(risk.max())
            span = hi - lo
            scores = 100.0 * (hi - risk) / span if span > 1e-12 else np.full(risk.size, 50.0)
            scores = np.round(np.clip(scores, 0.0, 100.0), 2)
            k = len(e.labels) - (1 if e.has_null else 0)
            body, na_score = scores[:k], (float(scores[k]) if e.has_null else None)
            scores_out = [float(s) for s in body]
            weight = span
            if e.kind == "bins":
                method = "steps"
                ups = np.diff(body)
                if cv_.shape == "u-shape":
                    params = {"edges": e.edges, "scores": scores_out, "monotone": False}
                    direction = "higher_is_better" if body[-1] >= body[0] else "lower_is_better"
                else:
                    params = {"edges": e.edges, "scores": scores_out}
                    direction = (
                        "lower_is_better" if (ups < 0).any() else "higher_is_better" if (ups > 0).any() else m.direction
                    )
            elif m.method == "boolean" and set(e.levels) <= {"0", "1"}:
                method = "boolean"
                level = dict(zip(e.levels, scores_out))
                params = {
                    "true_score": level.get("1", na_score or 50.0),
                    "false_score": level.get("0", na_score or 50.0),
                }
                direction = "higher_is_better" if params["true_score"] >= params["false_score"] else "lower_is_better"
            else:
                method = "categorical"
                mapping = dict(zip(e.levels, scores_out[: len(e.levels)]))
                if e.pooled:
                    mapping.update({lv: scores_out[len(e.levels)] for lv in e.pooled})
                params = {"map": mapping}
                if "labels" in m.params:
                    params["labels"] = {k: v for k, v in m.params["labels"].items() if str(k) in mapping}
                direction = m.direction
        weights[m.name] = round(weight, 6)
        na_policy = f"score:{round(na_score, 2):g}" if na_score is not None else m.na_policy
        metrics.append(
            replace(m, method=method, params=params, direction=direction, weight=round(weight, 6), na_policy=na_policy)
        )
        p = _p(final, term)
        row_flags = []
        if any(f.startswith(f"wrong sign: {m.name} ") for f in flags):
            row_flags.append("wrong sign")
        if not (p <= significance):
            row_flags.append("not significant")
        if weight == 0:
            row_flags.append("no weight")
        ci = final.conf_int_.get(term, (float("nan"), float("nan"))) if final is not None else (math.nan, math.nan)
        table.append(
            (
                m.name,
                m.category,
                cv_.shape,
                stated[m.name],
                direction,
                weight,
                beta,
                float(final.bse_.get(term, math.nan)) if final is not None else math.nan,
                ci[0],
                ci[1],
                p,
                ", ".join(row_flags),
            )
        )
        if e.kind != "fixed":
            for j, label in enumerate(e.labels):
                curve_rows.append(
                    (
                        m.name,
                        label,
                        int(e.counts[j]),
                        int(e.events[j]),
                        float(e.events[j] / e.counts[j]) if e.counts[j] else math.nan,
                        float(cv_.logit[j]),
                        float(curve[j]),
                        float(scores[j]) if e.kind != "fixed" else None,
                    )
                )
    total = sum(weights.values())
    if total <= 0:
        raise _input_error(
            "training rows",
            "no metric carries any signal: every learned curve is flat",
            "Check the outcome and the horizon, or use a longer history",
        )
    cat_w = {c: sum(weights[m.name] for m in model.metrics if m.category == c) for c in model.categories}
    cats = {c: replace(cat, weight=round(cat_w[c], 6)) for c, cat in model.categories.items()}
    fitted = replace(model, metrics=metrics, categories=cats, variants=[], probability=None).bump_version()
    fitted.validate()
    tab = pl.DataFrame(
        table,
        schema={
            "metric": pl.Utf8,
            "category": pl.Utf8,
            "shape": pl.Utf8,
            "stated_direction": pl.Utf8,
            "direction": pl.Utf8,
            "weight": pl.Float64,
            "coef": pl.Float64,
            "se": pl.Float64,
            "coef_lower": pl.Float64,
            "coef_upper": pl.Float64,
            "p_value": pl.Float64,
            "flags": pl.Utf8,
        },
        orient="row",
    )
    tab = tab.with_columns(share=100.0 * pl.col("weight") / total)
    curves_t = pl.DataFrame(
        curve_rows,
        schema={
            "metric": pl.Utf8,
            "bin": pl.Utf8,
            "rows": pl.Int64,
            "events": pl.Int64,
            "event_rate": pl.Float64,
            "joint_logit": pl.Float64,
            "logit": pl.Float64,
            "score": pl.Float64,
        },
        orient="row",
    )
    return fitted, tab, curves_t
