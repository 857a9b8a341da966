"""Interactive weight tuning in JupyterLab: :class:`WeightTuner`.

CS operations move a slider and see at once what the change does to the score: the score
distribution by band, band counts and ARR, holdout AUC, top-decile lift and churn rate per band
next to the starting model's, the accounts that change band and each metric's contribution.

Speed comes from doing the expensive work once. Calibration (raw value -> sub-score) does not
depend on weights, bands or coverage, so the tuner calibrates once and keeps the sub-scores of
the rows it needs as numpy columns (:class:`FastScorer`). A weight change is then a few vector
operations per metric, a band look-up, one sort for AUC and lift, and a few ``bincount`` calls.
Charts get small aggregated tables through chart parameters, never the rows themselves.

>>> import healthscore as hs
>>> p = hs.datasets.make_portfolio(n_accounts=200, n_weeks=30, seed=3)
>>> tuner = WeightTuner(p.snapshots, p.events, hs.load_model(SAMPLE_MODEL))
>>> tuner.metric_sliders["login_days"].value = 6
>>> tuner.model.metric("login_days").weight
6.0
>>> sorted(tuner.state) == sorted(STATE_KEYS)
True
"""

from __future__ import annotations

import html
import json
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import polars as pl

from healthscore import resources
from healthscore.analysis import evaluation
from healthscore.analysis.alerts import backtest_alerts
from healthscore.analysis.evaluation import _grouped_split, time_split
from healthscore.analysis.fitting import fit_weights
from healthscore.core.extract import is_cross_sectional
from healthscore.core.labels import label_outcomes
from healthscore.core.scoring import calibrate, combine
from healthscore.io.snapshots import read_events, read_snapshots
from healthscore.render import formats as fmt
from healthscore.spec.model import Band, ModelError, ScoreModel, load_model
from healthscore.viz import charts

SAMPLE_MODEL = resources.sample_model()

KEYS = ("account_id", "as_of")
N_BINS = 20  # score histogram: 20 bins of 5 points
HORIZONS = ("30d", "60d", "90d", "180d", "365d")
HISTORY_LIMIT = 500  # undo steps kept
CHANGED_ROWS = 15  # rows shown in the "accounts that change band" table
_EPS = 1e-12  # the scoring engine's tolerance on minimum coverage
# a change that leaves more than this many percentage points of the book unscored is flagged in red
# and "adopt all" waits for a confirmation
MAX_COVERAGE_DROP = 1.0
# Scores are rounded to this many decimals: adding the same terms in another order can change
# the last bit, and scores that are equal should stay tied (AUC, band boundaries) however summed.
SCORE_DECIMALS = 9
# how a thresholds/steps parameter is edited as text
_EDITABLE = {"thresholds": "points", "steps": "edges"}
# charts drawn as SVG: titles and labels are text a reader (or a test) can select and measure
_EMBED = {"renderer": "svg", "actions": False}
# room around each chart, so a title's first letter is not cut at the chart's edge
_PADDING = {"left": 10, "top": 5, "right": 10, "bottom": 5}

STATE_KEYS = (
    "model",
    "hash",
    "variant",
    "outcome",
    "horizon",
    "split",
    "accounts",
    "scored_accounts",
    "scored_accounts_start",
    "unscored_either",
    "coverage",
    "coverage_start",
    "coverage_drop",
    "band_counts",
    "band_arr",
    "band_counts_start",
    "band_arr_start",
    "holdout_rows",
    "holdout_events",
    "holdout_rows_left_out",
    "holdout_events_left_out",
    "holdout_events_now",
    "holdout_events_start",
    "auc",
    "auc_start",
    "auc_difference",
    "auc_difference_lower",
    "auc_difference_upper",
    "auc_change_measurable",
    "lift",
    "lift_start",
    "shares",
    "shares_start",
    "churn_by_band",
    "churn_by_band_start",
    "contributions",
    "contributions_start",
    "n_changed",
    "arr_changed",
    "changed",
    "histogram",
)


# ---------------------------------------------------------------- fast recompute core
@dataclass(frozen=True)
class Weights:
    """A model's weights resolved per variant, as arrays aligned with a :class:`FastScorer`.

    Row ``g`` is variant ``g`` (0 is the base model, then ``model.variants`` in order).
    """

    metric: np.ndarray  # (variants, metrics) metric weight, 0 when disabled
    category: np.ndarray  # (variants, categories) category weight
    share: np.ndarray  # (variants, metrics) nominal share of the total weight (for coverage)
    min_coverage: float


class _Memo:
    """Arrays computed from a few weights, kept while those weights are unchanged.

    Each value gets a token; a value whose inputs' tokens and weights are unchanged is reused.
    With ``compare=True`` a recomputed value equal to the old one keeps the old token, so what
    depends on it is not recomputed either (moving a metric weight rarely changes which
    categories are present, so the other categories' arrays survive a slider step).
    """

    def __init__(self) -> None:
        self.store: dict[str, tuple[Any, int, Any]] = {}
        self.counter = 0

    def get(self, name: str, key: Any, compute: Callable[[], Any], compare: bool = False) -> tuple[int, Any]:
        hit = self.store.get(name)
        if hit is not None and hit[0] == key:
            return hit[1], hit[2]
        value = compute()
        if compare and hit is not None and np.array_equal(hit[2], value):
            token = hit[1]
        else:
            self.counter += 1
            token = self.counter
        self.store[name] = (key, token, value)
        return token, value

    def row_sum(self, name: str, tokens: list[int], cols: list[np.ndarray], n: int) -> tuple[int, np.ndarray]:
        """Row sums added pairwise (halves, recursively) with every partial sum kept, so a changed
        column costs only the additions on its path to the root."""
        if not cols:
            return self.get(name, (), lambda: np.zeros(n))

        def node(lo: int, hi: int) -> np.ndarray:
            if hi - lo == 1:
                return cols[lo]
            mid = lo + (hi - lo) // 2
            return self.get(f"{name}[{lo}:{hi}]", tuple(tokens[lo:hi]), lambda: np.add(node(lo, mid), node(mid, hi)))[1]

        return self.get(name, tuple(tokens), lambda: node(0, len(cols)))  # callers never write into it


class FastScorer:
    """Sub-scores of a fixed set of rows as numpy columns, re-weighted in a few vector operations.

    The arithmetic follows :func:`healthscore.combine` step for step, so scores agree with the
    engine to 1e-9. Row sums may add in another order than polars does (whose multi-threaded
    engine does not even add in the same order every run), so scores are rounded to
    :data:`SCORE_DECIMALS` decimals: equal scores stay tied whatever the order. Rows are split by
    variant (each variant has plain numbers for weights), and intermediate arrays are kept between
    calls, so a slider step recomputes only what depends on the weight that moved.

    >>> import healthscore as hs, polars as pl, datetime as dt
    >>> model = hs.load_model(SAMPLE_MODEL)
    >>> p = hs.datasets.make_portfolio(n_accounts=50, n_weeks=6, seed=1)
    >>> sub = hs.calibrate(p.snapshots, model)
    >>> fs = FastScorer(sub, model)
    >>> score, _ = fs.score(model)
    >>> ref = hs.combine(sub, model)["score"].to_numpy()
    >>> bool(np.allclose(score, ref, rtol=0, atol=1e-9, equal_nan=True))
    True
    """

    def __init__(self, subscores: pl.DataFrame, model: ScoreModel) -> None:
        self.metrics = [m.name for m in model.metrics]
        self.categories = list(model.categories)
        self.variants = ["default", *(v.name for v in model.variants)]
        cols = [f"sub_{n}" for n in self.metrics]
        missing = [c for c in cols if c not in subscores.columns]
        if missing:
            raise ModelError(f"the sub-score frame lacks {missing}; run hs.calibrate() with this model")
        self.category_of = [self.categories.index(m.category) for m in model.metrics]
        self.members = [[j for j, c in enumerate(self.category_of) if c == ci] for ci in range(len(self.categories))]
        if "variant" in subscores.columns:
            names = subscores["variant"].fill_null("default").to_list()
            index = {v: i for i, v in enumerate(self.variants)}
            unknown = sorted(set(names) - set(index))
            if unknown:
                raise ModelError(f"sub-scores carry variant(s) {unknown} that model {model.name!r} does not define")
            self.variant = np.fromiter((index[n] for n in names), dtype=np.intp, count=len(names))
        else:
            self.variant = np.zeros(subscores.height, dtype=np.intp)
        self.n = subscores.height
        self.rows = [np.flatnonzero(self.variant == g) for g in range(len(self.variants))]
        self.version = [0] * len(self.metrics)
        # per variant: each metric's presence (1.0/0.0) and sub-score (0 when missing), contiguous
        self.present_f: list[list[np.ndarray]] = [[] for _ in self.variants]
        self.filled: list[list[np.ndarray]] = [[] for _ in self.variants]
        self.memo = [_Memo() for _ in self.variants]
        for j, c in enumerate(cols):
            self.set_column(self.metrics[j], subscores[c].cast(pl.Float64).fill_null(float("nan")).to_numpy())

    def set_column(self, metric: str, values: np.ndarray) -> None:
        """Replace one metric's sub-scores (after its calibration parameters changed)."""
        j = self.metrics.index(metric)
        v = np.asarray(values, dtype=np.float64)
        for g, rows in enumerate(self.rows):
            part = v[rows]
            present, filled = (~np.isnan(part)).astype(np.float64), np.nan_to_num(part, nan=0.0)
            if len(self.present_f[g]) <= j:
                self.present_f[g].append(present)
                self.filled[g].append(filled)
            else:
                self.present_f[g][j], self.filled[g][j] = present, filled
        self.version[j] += 1

    def weights(self, model: ScoreModel) -> Weights:
        """Resolve ``model``'s weights for every variant (as the scoring engine does)."""
        g, m, k = len(self.variants), len(self.metrics), len(self.categories)
        w, c, s = np.zeros((g, m)), np.zeros((g, k)), np.zeros((g, m))
        for gi, name in enumerate(self.variants):
            r = model.resolve(None if gi == 0 else name)
            in_cat = {cat: sum(x.weight for x in r.metrics if x.category == cat) for cat in r.categories}
            total = sum(cat.weight for name_, cat in r.categories.items() if in_cat[name_] > 0)
            for ci, cat in enumerate(self.categories):
                c[gi, ci] = r.categories[cat].weight
            for j, metric in enumerate(r.metrics):
                w[gi, j] = metric.weight
                ok = total > 0 and in_cat[metric.category] > 0
                s[gi, j] = (
                    (r.categories[metric.category].weight / total * metric.weight / in_cat[metric.category])
                    if ok
                    else 0.0
                )
        return Weights(w, c, s, float(model.min_coverage))

    def _group(self, g: int, wts: Weights) -> tuple[int, np.ndarray, np.ndarray, list[int], list[np.ndarray]]:
        """Score the rows of variant ``g``: (ok token, ok, score, driver tokens, drivers)."""
        memo, pf, filled, n = self.memo[g], self.present_f[g], self.filled[g], len(self.rows[g])
        w, v, sh, ver = wts.metric[g], wts.category[g], wts.share[g], self.version
        m, k = len(self.metrics), len(self.categories)
        # pw: the weight where present (present * weight is exactly weight or 0.0, as when/then
        # gives); ps = pw x sub-score; cw: present weight of the category; f: the category's
        # share of the score per unit of present weight; driver = ps x f. The engine's order.
        pw = [memo.get(f"pw{j}", (w[j], ver[j]), lambda j=j: pf[j] * w[j]) for j in range(m)]
        ps = [memo.get(f"ps{j}", (pw[j][0],), lambda j=j: pw[j][1] * filled[j]) for j in range(m)]
        cov = [memo.get(f"cov{j}", (sh[j], ver[j]), lambda j=j: pf[j] * sh[j]) for j in range(m)]
        cov_t, coverage = memo.row_sum("coverage", [t for t, _ in cov], [a for _, a in cov], n)
        ok_t, ok = memo.get("ok", (cov_t, wts.min_coverage), lambda: _covered(coverage, wts.min_coverage), compare=True)
        cw = [
            memo.row_sum(f"cw{c}", [pw[j][0] for j in js], [pw[j][1] for j in js], n)
            for c, js in enumerate(self.members)
        ]
        catw = [
            memo.get(f"catw{c}", (cw[c][0], v[c]), lambda c=c: np.where(cw[c][1] > 0, v[c], 0.0), compare=True)
            for c in range(k)
        ]
        tot_t, tot = memo.row_sum("tot", [t for t, _ in catw], [a for _, a in catw], n)

        def share(c: int) -> np.ndarray:
            with np.errstate(divide="ignore", invalid="ignore"):
                f = np.divide(v[c], tot)
                np.divide(f, cw[c][1], out=f)
            f[cw[c][1] <= 0] = 0.0
            return f

        # rows without a score are masked at the end, so a coverage change keeps these arrays
        f = [memo.get(f"f{c}", (v[c], tot_t, cw[c][0]), lambda c=c: share(c)) for c in range(k)]
        drv = [
            memo.get(f"drv{j}", (ps[j][0], f[c][0]), lambda j=j, c=c: ps[j][1] * f[c][1])
            for j, c in enumerate(self.category_of)
        ]
        sum_t, total = memo.row_sum("score", [t for t, _ in drv], [a for _, a in drv], n)
        _, score = memo.get(
            "final", (sum_t, ok_t), lambda: np.where(ok, np.round(np.clip(total, 0.0, 100.0), SCORE_DECIMALS), np.nan)
        )
        return ok_t, ok, score, [t for t, _ in drv], [a for _, a in drv]

    def score(
        self, model: ScoreModel | Weights, drivers: bool = False, totals_over: np.ndarray | None = None
    ) -> tuple[np.ndarray, Any]:
        """Scores (NaN below minimum coverage) and, optionally, the drivers.

        ``drivers=True``: a list with each metric's points per row (meaningless where the score is
        NaN). ``totals_over`` (a Boolean row mask): each metric's points summed over the scored rows
        in the mask instead.
        """
        wts = model if isinstance(model, Weights) else self.weights(model)
        score = np.full(self.n, np.nan)
        parts_full = [np.zeros(self.n) for _ in self.metrics] if drivers else None
        totals = np.zeros(len(self.metrics))
        for g, rows in enumerate(self.rows):
            if not rows.size:
                continue
            ok_t, ok, s, tokens, parts = self._group(g, wts)
            score[rows] = s
            if parts_full is not None:
                for j, p in enumerate(parts):
                    parts_full[j][rows] = p
            if totals_over is not None:
                memo = self.memo[g]
                _, mask = memo.get("mask", id(totals_over), lambda: totals_over[rows])
                _, use = memo.get("use", (ok_t, id(totals_over)), lambda: mask & ok)
                for j, p in enumerate(parts):
                    totals[j] += memo.get(
                        f"sum{j}", (tokens[j], ok_t, id(totals_over)), lambda p=p: float(np.sum(p, where=use))
                    )[1]
        return score, (parts_full if drivers else totals if totals_over is not None else None)


def _covered(coverage: np.ndarray, minimum: float) -> np.ndarray:
    """Rows with a score: some weight present and at least the minimum coverage (clipped as the engine does)."""
    # clipping to 0..1 first would change neither test (the minimum is at most 1)
    return (coverage > 0) & (coverage >= minimum - _EPS)


def band_index(score: np.ndarray, bands: Sequence[Band]) -> np.ndarray:
    """Index of each score's band (as ``ScoreModel.band_of``: below ``upper``; top band takes the rest); -1 for NaN.

    >>> band_index(np.array([0.0, 39.9, 40.0, 100.0, np.nan]), [Band("r", 0, 40), Band("g", 40, 100)]).tolist()
    [0, 0, 1, 1, -1]
    """
    # one comparison per cut-off is much faster than a binary search per score
    idx = np.zeros(np.shape(score), dtype=np.intp)
    for band in bands[:-1]:
        idx += score >= band.upper
    idx[np.isnan(score)] = -1
    return idx


def auc_and_lift(y: np.ndarray, risk: np.ndarray, fraction: float = 0.1) -> tuple[float, float]:
    """ROC AUC and top-``fraction`` lift; rows with NaN risk are left out (see :func:`auc_lift_influence`).

    Same numbers as :func:`healthscore.analysis.evaluation.auc` and
    :func:`~healthscore.analysis.evaluation.top_decile_lift` (a test holds them equal).

    >>> auc_and_lift(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))[0]
    0.75
    """
    keep = ~np.isnan(risk)
    auc, lift, _ = auc_lift_influence(np.asarray(y)[keep], np.asarray(risk)[keep], fraction)
    return auc, lift


def auc_lift_influence(
    y: np.ndarray, risk: np.ndarray, fraction: float = 0.1, influence: bool = False
) -> tuple[float, float, np.ndarray | None]:
    """AUC, top-``fraction`` lift and (with ``influence=True``) each row's influence on the AUC.

    No NaN in ``risk``. A row's influence is its placement minus the AUC, over the size of its
    group: for an event, the share of non-events it out-ranks (ties half); for a non-event, the
    share of events that out-rank it. The AUC moves by about the sum of the influences of the rows
    added, so summing them per account and squaring gives the AUC's variance with accounts as the
    unit that is resampled (see :func:`paired_auc_interval`).

    >>> auc, lift, inf = auc_lift_influence(np.array([0., 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]), influence=True)
    >>> auc, inf.round(3).tolist()
    (0.75, [0.125, -0.125, -0.125, 0.125])
    """
    r = np.asarray(risk, dtype=np.float64)
    order = np.argsort(r)  # ties are handled as groups, so their order does not matter
    auc, lift, inf_sorted = auc_lift_sorted(r[order], np.asarray(y)[order] > 0.5, fraction, influence)
    if inf_sorted is None:
        return auc, lift, None
    inf = np.empty(r.size)
    inf[order] = inf_sorted
    return auc, lift, inf


def auc_lift_sorted(
    rs: np.ndarray, pos: np.ndarray, fraction: float = 0.1, influence: bool = True
) -> tuple[float, float, np.ndarray | None]:
    """:func:`auc_lift_influence` on rows already sorted by risk (ascending, no NaN); influence in that order.

    One pass over tie groups: for each distinct risk, the non-events below it and the events
    above it are running sums, so no pair is counted and nothing is searched. The lift's cut-off
    is the k-th largest risk; rows tied with it share the remaining places pro rata.
    """
    n = rs.size
    n1 = int(np.count_nonzero(pos))
    n0 = n - n1
    if n == 0 or n1 == 0:
        return float("nan"), float("nan"), (np.zeros(n) if influence else None)
    new = np.empty(n, dtype=bool)
    new[0] = True
    np.not_equal(rs[1:], rs[:-1], out=new[1:])
    gid = np.cumsum(new, dtype=np.intp)
    gid -= 1
    posf = pos.astype(np.float64)
    cp = np.bincount(gid, weights=posf)  # events per tie group
    cn = np.bincount(gid) - cp  # non-events per tie group
    inf: np.ndarray | None = None
    if n0 == 0:
        auc = float("nan")
        inf = np.zeros(n) if influence else None
    else:
        placed = np.cumsum(cn) - 0.5 * cn  # non-events below the group + half its ties
        auc = float(np.sum(cp * placed)) / (n1 * n0)  # np.sum, not BLAS: no thread start-up per call
        if influence:
            above = n1 - np.cumsum(cp) + 0.5 * cp  # events above the group + half its ties
            # per tie group and class (non-event, event), then one look-up per row
            table = np.column_stack([(above / n1 - auc) / n0, (placed / n0 - auc) / n1]).ravel()
            code = gid * 2
            code += pos
            inf = table[code]
    k = max(1, int(round(fraction * n)))
    edge = rs[n - k]
    lo, hi = int(np.searchsorted(rs, edge, side="left")), int(np.searchsorted(rs, edge, side="right"))
    ev_above, ev_tied = float(posf[hi:].sum()), float(posf[lo:hi].sum())
    events = ev_above + ev_tied * (k - (n - hi)) / (hi - lo)
    return float(auc), float((events / k) / (n1 / n)), inf


@dataclass(frozen=True)
class PairedDifference:
    """Two models' AUC on the same rows, their difference and its paired interval by account."""

    auc: float  # the current model
    auc_start: float  # the starting model, same rows
    difference: float  # auc - auc_start
    difference_lower: float
    difference_upper: float
    confidence: float

    @property
    def measurable(self) -> bool:
        """True when the interval excludes zero (the change is more than resampling noise)."""
        return bool(self.difference_lower > 0 or self.difference_upper < 0)


def paired_auc_interval(
    influence: np.ndarray,
    influence_start: np.ndarray,
    groups: np.ndarray | None,
    auc: float,
    auc_start: float,
    *,
    confidence: float = 0.95,
) -> PairedDifference:
    """Interval of an AUC difference between two scores of the same rows, resampling accounts.

    ``influence``/``influence_start``: each row's influence on each model's AUC (from
    :func:`auc_lift_influence`); ``groups``: each row's account as an integer code (``None``:
    the influences are already summed per account, one entry per account present). The
    difference's influence is summed per account; its variance is the sum of squares (times
    A/(A-1) for A accounts). This is the variance a paired bootstrap that resamples accounts
    converges to, at the cost of a ``bincount`` instead of hundreds of re-sorted resamples, so
    it keeps up with a slider; the tests hold it to an explicit paired bootstrap by account.

    >>> d = paired_auc_interval(np.array([.1, -.1]), np.array([.1, -.1]), np.array([0, 1]), 0.8, 0.8)
    >>> d.difference, d.measurable
    (0.0, False)
    """
    diff = auc - auc_start
    if math.isnan(diff):
        return PairedDifference(auc, auc_start, diff, float("nan"), float("nan"), confidence)
    if groups is None:
        per_account, a = influence - influence_start, influence.size
    else:
        per_account = np.bincount(groups, weights=influence - influence_start)
        a = int(np.count_nonzero(np.bincount(groups)))
    var = float(np.sum(per_account * per_account)) * (a / (a - 1) if a > 1 else 1.0)
    half = NormalDist().inv_cdf(0.5 + confidence / 2) * math.sqrt(var)
    return PairedDifference(auc, auc_start, diff, diff - half, diff + half, confidence)


def _close(a: float, b: float, tol: float = 1e-9) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


# ---------------------------------------------------------------- model edits
def edit_weights(
    model: ScoreModel,
    variant: str | None = None,
    metrics: Mapping[str, float] | None = None,
    categories: Mapping[str, float] | None = None,
) -> ScoreModel:
    """A new model with weights changed in the base model or in one variant's overrides.

    >>> m = edit_weights(hs_model(), "digital", categories={"usage": 50})
    >>> m.resolve("digital").categories["usage"].weight, m.categories["usage"].weight
    (50.0, 30.0)
    """
    if variant in (None, "default"):
        return model.with_weights(metrics=metrics, categories=categories)
    if variant not in {v.name for v in model.variants}:
        raise ModelError(f"model {model.name!r} has no variant {variant!r}")
    metrics = {k: float(v) for k, v in (metrics or {}).items()}
    categories = {k: float(v) for k, v in (categories or {}).items()}
    variants = [
        replace(v, weights={**v.weights, **metrics}, categories={**v.categories, **categories})
        if v.name == variant
        else v
        for v in model.variants
    ]
    new = replace(model, variants=variants)
    new.validate()
    return new


def move_cutoff(model: ScoreModel, index: int, value: float) -> ScoreModel:
    """A new model whose boundary between band ``index`` and ``index + 1`` sits at ``value``."""
    bands = list(model.bands)
    lo, hi = bands[index].lower, bands[index + 1].upper
    if not lo < value < hi:
        raise ModelError(
            f"the cut-off between {bands[index].name} and {bands[index + 1].name} must lie "
            f"between {lo:g} and {hi:g}; got {value:g}"
        )
    bands[index] = replace(bands[index], upper=float(value))
    bands[index + 1] = replace(bands[index + 1], lower=float(value))
    return model.with_bands(bands)


def breakpoint_rows(params: Mapping[str, Any], method: str) -> list[tuple[float | None, float]]:
    """A thresholds/steps calibration as table rows ``(raw value, sub-score)``.

    Thresholds: one row per breakpoint. Steps: the first row is the score below the first edge
    (its value is ``None``), then one row per edge with the score from that edge up.

    >>> breakpoint_rows({"points": [[0, 0], [2, 40]]}, "thresholds")
    [(0.0, 0.0), (2.0, 40.0)]
    >>> breakpoint_rows({"edges": [1, 2], "scores": [100, 40, 0]}, "steps")
    [(None, 100.0), (1.0, 40.0), (2.0, 0.0)]
    """
    if method == "thresholds":
        return [(float(x), float(y)) for x, y in params.get("points", [])]
    scores = [float(v) for v in params.get("scores", [])]
    return [(None, scores[0]), *((float(e), sc) for e, sc in zip(params.get("edges", []), scores[1:]))]


def breakpoints_from_rows(
    rows: Sequence[tuple[float | None, float]],
    method: str,
    direction: str = "higher_is_better",
    *,
    monotone: bool = True,
) -> dict[str, Any]:
    """Check table rows and turn them into calibration parameters (the inverse of :func:`breakpoint_rows`).

    Raw values must increase from row to row, sub-scores lie in 0..100, and the scores follow the
    metric's direction (they may not fall as the value rises when higher is better, nor rise when
    lower is better; ``monotone=False`` lifts that rule). Each problem names its row.

    >>> breakpoints_from_rows([(0, 0), (2, 40), (6, 100)], "thresholds")
    {'points': [[0.0, 0.0], [2.0, 40.0], [6.0, 100.0]]}
    >>> breakpoints_from_rows([(0, 0), (2, 40)], "thresholds", "lower_is_better")
    Traceback (most recent call last):
    ...
    healthscore.spec.model.ModelError: row 2: sub-score 40 is above row 1's 0, but lower values are better for this metric: scores must not rise from row to row
    """
    problems: list[str] = []
    first = 1 if method == "steps" else 0
    if len(rows) < 2:
        problems.append("the table needs at least two rows")
    for i, (x, y) in enumerate(rows, 1):
        if y is None or not math.isfinite(float(y)) or not 0 <= float(y) <= 100:
            problems.append(f"row {i}: sub-score {y} must be a number from 0 to 100")
        if i > first and (x is None or not math.isfinite(float(x))):
            problems.append(f"row {i}: the raw value must be a number")
    if not problems:
        for i in range(first + 1, len(rows)):
            if not rows[i][0] > rows[i - 1][0]:
                problems.append(
                    f"row {i + 1}: value {rows[i][0]:g} must be above row {i}'s {rows[i - 1][0]:g} "
                    "(values increase down the table)"
                )
        for i in range(1, len(rows)):
            y0, y1 = rows[i - 1][1], rows[i][1]
            if monotone and direction == "higher_is_better" and y1 < y0:
                problems.append(
                    f"row {i + 1}: sub-score {y1:g} is below row {i}'s {y0:g}, but higher values are "
                    "better for this metric: scores must not fall from row to row"
                )
            if monotone and direction == "lower_is_better" and y1 > y0:
                problems.append(
                    f"row {i + 1}: sub-score {y1:g} is above row {i}'s {y0:g}, but lower values are "
                    "better for this metric: scores must not rise from row to row"
                )
    if problems:
        raise ModelError("; ".join(problems))
    if method == "thresholds":
        return {"points": [[float(x), float(y)] for x, y in rows]}
    return {"edges": [float(x) for x, _ in rows[1:]], "scores": [float(y) for _, y in rows]}


def hs_model() -> ScoreModel:
    """The bundled sample score model (for examples)."""

    return load_model(SAMPLE_MODEL)


def _calibration_key(model: ScoreModel, metric: str) -> str:
    """What a metric's sub-score depends on (base and variant parameters, disabled flags)."""
    m = model.metric(metric)
    per_variant = [(v.name, v.params.get(metric), metric in v.disabled) for v in model.variants]
    return json.dumps(
        [m.column, m.method, m.direction, m.params, m.na_policy, per_variant], sort_keys=True, default=str
    )


# ---------------------------------------------------------------- evidence (no widgets)
class TuningSession:
    """Everything the tuner shows, computed without any widget: build once, ``evaluate(model)`` often.

    Rows: the *book* is every account's snapshot on the last ``as_of`` of the data (distribution,
    band counts and ARR, accounts that change band, contributions); the *holdout* is the
    labelled snapshots from the time split on (AUC, lift, rate per band). The fit uses the rows
    before the split, so the holdout figures stay honest.
    """

    def __init__(
        self,
        snapshots: pl.DataFrame,
        events: pl.DataFrame,
        model: ScoreModel,
        *,
        outcome: str = "churned",
        horizon: str = "90d",
        holdout: date | str | None = None,
        subscores: pl.DataFrame | None = None,
    ) -> None:

        if isinstance(snapshots, pl.LazyFrame):
            snapshots = snapshots.collect()
        if isinstance(events, pl.LazyFrame):
            events = events.collect()
        self.snapshots = snapshots.sort(KEYS)
        self.events = events
        self.start = model
        # sorted by keys, like self.snapshots; ``subscores`` lets a caller reuse a calibration
        self.sub = calibrate(self.snapshots, model) if subscores is None else subscores.sort(KEYS)
        self._calibrated = {m.name: _calibration_key(model, m.name) for m in model.metrics}
        last = self.sub["as_of"].max()
        book = self.sub.with_row_index("__row").filter(pl.col("as_of") == last).sort("account_id")
        self.book_rows = book["__row"].to_numpy().astype(np.intp)
        self.book = book.select(
            "account_id",
            *(c for c in ("company_name", "segment", "csm") if c in book.columns),
            (pl.col("arr").cast(pl.Float64).fill_null(0.0) if "arr" in book.columns else pl.lit(0.0)).alias("arr"),
        )
        self.arr = self.book["arr"].to_numpy()
        self.outcome, self.horizon, self.holdout = outcome, horizon, holdout
        self.relabel(outcome, horizon, holdout)

    # ------------------------------------------------------------ labels
    def relabel(self, outcome: str, horizon: str, holdout: date | str | None = None) -> None:
        """Label the holdout for another outcome / horizon (the slow path: runs once per choice)."""

        labelled = label_outcomes(self.snapshots.select(*KEYS), self.events, outcome=outcome, horizon=horizon)
        if holdout == "random" or (holdout is None and is_cross_sectional(self.snapshots)):
            # one snapshot per account has no later time to hold out: a random 30% of accounts instead

            _, test, _ = _grouped_split(labelled, outcome, "random", 0, 0)
            split = None
            self.test_accounts = test.select("account_id").unique()
        else:
            test = None
        if test is None and labelled.is_empty():
            first, last = self.snapshots["as_of"].min(), self.snapshots["as_of"].max()
            raise ModelError(
                f"no snapshot can be labelled for {outcome!r} within {horizon}: the snapshots run "
                f"{first} .. {last}, which must be longer than the horizon; choose a shorter one"
            )
        if test is None and holdout is None:
            # 70% into the labelled dates, but late enough that the fit keeps some training rows
            first, last = labelled["as_of"].min(), labelled["as_of"].max()
            after_one_horizon = pl.select(pl.lit(first).dt.offset_by(horizon)).item()
            holdout = min(max(first + (last - first) * 0.7, after_one_horizon), last)
        if test is None:
            _, test, split = time_split(labelled, horizon=horizon, split=holdout)
        index = self.sub.select(*KEYS).with_row_index("__row")
        test = test.select(*KEYS, outcome).join(index, on=list(KEYS), how="inner").sort(KEYS)
        self.outcome, self.horizon, self.holdout, self.split = outcome, horizon, holdout, split
        self.holdout_rows = test["__row"].to_numpy().astype(np.intp)
        self.y = test[outcome].cast(pl.Int8).to_numpy().astype(np.float64)
        # each holdout row's account as a code: the unit the AUC difference's interval resamples
        self.hold_account = test["account_id"].rank("dense").cast(pl.Int64).to_numpy().astype(np.intp) - 1
        self.low_is_risk = self.start.outcome(outcome).adverse  # adverse: a low score is the risk
        self._paired_start: tuple[np.ndarray, Any] | None = None
        # score only the rows shown: the book first, then the holdout
        self.rows = np.concatenate([self.book_rows, self.holdout_rows])
        self.scorer = FastScorer(self.sub[self.rows], self.start)
        self.book_mask = np.arange(len(self.rows)) < len(self.book_rows)
        self.recalibrate(self.start)  # the starting figures use the starting calibration
        self.start_eval = self._evaluate(self.start)
        self.n_hold_accounts = int(self.hold_account.max()) + 1 if self.hold_account.size else 0
        risk0 = self.start_eval["risk"]
        self._start_order = np.argsort(np.where(np.isnan(risk0), np.inf, risk0))

    # ------------------------------------------------------------ calibration changes
    def recalibrate(self, model: ScoreModel) -> list[str]:
        """Recompute the sub-scores of metrics whose calibration changed; returns their names."""

        changed = [m.name for m in model.metrics if self._calibrated.get(m.name) != _calibration_key(model, m.name)]
        if not changed:
            return []
        only = replace(model, metrics=[model.metric(n) for n in changed])
        cols = [m.column for m in only.metrics] + [
            c for m in only.metrics for k, c in m.params.items() if k.endswith("_column")
        ]
        needed = list(dict.fromkeys([*KEYS, *cols, *(c for v in model.variants for c in v.filter)]))
        sub = calibrate(self.snapshots.select(needed), only)
        for n in changed:
            self.sub = self.sub.with_columns(sub[f"sub_{n}"])
            self.scorer.set_column(n, sub[f"sub_{n}"].to_numpy()[self.rows])
            self._calibrated[n] = _calibration_key(model, n)
        return changed

    # ------------------------------------------------------------ the fast path
    def _evaluate(self, model: ScoreModel) -> dict[str, Any]:
        nb = len(self.book_rows)
        score, totals = self.scorer.score(model, totals_over=self.book_mask)
        book_score, hold_score = score[:nb], score[nb:]
        k = len(model.bands)
        book_band = band_index(book_score, model.bands)
        hold_band = band_index(hold_score, model.bands)
        scored = book_band >= 0
        risk = -hold_score if self.low_is_risk else hold_score
        hold_ok = hold_band >= 0
        bins = np.minimum((book_score[scored] // (100 / N_BINS)).astype(np.intp), N_BINS - 1)
        hist = np.bincount(np.clip(bins, 0, N_BINS - 1) * k + book_band[scored], minlength=N_BINS * k)
        contrib = totals / max(int(scored.sum()), 1)  # mean points over the scored accounts
        return {
            "score": book_score,
            "band": book_band,
            "band_counts": np.bincount(book_band[scored], minlength=k),
            "band_arr": np.bincount(book_band[scored], weights=self.arr[scored], minlength=k),
            "risk": risk,
            "hold_band": hold_band,
            "hold_ok": hold_ok,
            "holdout_events": int(self.y[hold_ok].sum()),
            "holdout_rows": int(hold_ok.sum()),
            "contrib": contrib,
            "hist": hist,
        }

    def _holdout_figures(
        self, ev: dict[str, Any], both: np.ndarray, k: int, order: np.ndarray | None = None
    ) -> tuple[float, float, np.ndarray, np.ndarray]:
        """AUC, lift, the AUC influence summed per account and the rate per band on the rows in ``both``.

        ``order``: the rows sorted by this model's risk, when known (the starting model's, sorted
        once), so a new set of rows needs no new sort.
        """
        if order is None:
            rows = np.flatnonzero(both)
            idx = rows[np.argsort(ev["risk"][rows])]  # ties are grouped: their order does not matter
        else:
            idx = order[both[order]]
        y = self.y[idx]
        auc, lift, inf = auc_lift_sorted(ev["risk"][idx], y > 0.5)
        assert inf is not None  # asked for
        acc = self.hold_account[idx]
        per_account = np.bincount(acc, weights=inf, minlength=self.n_hold_accounts)
        band = ev["hold_band"][idx]
        n_band = np.bincount(band, minlength=k)
        ev_band = np.bincount(band, weights=y, minlength=k)
        return auc, lift, per_account, np.where(n_band > 0, ev_band / np.maximum(n_band, 1), np.nan)

    def compare(self, model: ScoreModel, now: dict[str, Any] | None = None) -> dict[str, Any]:
        """The holdout figures of ``model`` and the starting model on the rows both of them score.

        A model that scores fewer rows is not credited with the easier rows it keeps: AUC, lift
        and the rate per band of both models come from the same rows, and the AUC difference gets
        a paired interval by account (:func:`paired_auc_interval`).
        """
        now = self._evaluate(model) if now is None else now
        start = self.start_eval
        both = now["hold_ok"] & start["hold_ok"]
        auc, lift, inf, rate = self._holdout_figures(now, both, len(model.bands))
        # the starting model's side only changes when the set of rows does
        if self._paired_start is None or not np.array_equal(self._paired_start[0], both):
            self._paired_start = (both, self._holdout_figures(start, both, len(self.start.bands), self._start_order))
        auc0, lift0, inf0, rate0 = self._paired_start[1]
        present = np.bincount(self.hold_account[both], minlength=self.n_hold_accounts) > 0
        diff = paired_auc_interval(inf[present], inf0[present], None, auc, auc0)
        return {
            "both": both,
            "auc": auc,
            "lift": lift,
            "rate": rate,
            "auc_start": auc0,
            "lift_start": lift0,
            "rate_start": rate0,
            "difference": diff,
        }

    def evaluate(self, model: ScoreModel) -> dict[str, Any]:
        """Every figure the tuner shows for ``model`` next to the starting model's (the ``state`` dict)."""
        self.recalibrate(model)
        now, start = self._evaluate(model), self.start_eval
        paired = self.compare(model, now)
        both, diff = paired["both"], paired["difference"]
        left_out = ~both & (now["hold_ok"] | start["hold_ok"])
        n_book = len(self.book_rows)
        scored_now, scored_start = now["band"] >= 0, start["band"] >= 0
        names = [b.name for b in model.bands]
        start_names = [b.name for b in self.start.bands]
        changed = np.flatnonzero(now["band"] != start["band"])
        changed = changed[np.argsort(-self.arr[changed], kind="stable")]

        def label(idx: int, bands: list[str]) -> str | None:
            return bands[idx] if idx >= 0 else None

        table = self.book.gather(changed[:CHANGED_ROWS]).with_columns(
            pl.Series(
                "old_band", [label(i, start_names) for i in start["band"][changed[:CHANGED_ROWS]]], dtype=pl.String
            ),
            pl.Series("new_band", [label(i, names) for i in now["band"][changed[:CHANGED_ROWS]]], dtype=pl.String),
            pl.Series("old_score", start["score"][changed[:CHANGED_ROWS]]),
            pl.Series("new_score", now["score"][changed[:CHANGED_ROWS]]),
        )
        metrics = self.scorer.metrics
        return {
            "model": model,
            "hash": None,
            "variant": None,
            "outcome": self.outcome,
            "horizon": self.horizon,
            "split": self.split,
            "accounts": n_book,
            "scored_accounts": int(now["band_counts"].sum()),
            "scored_accounts_start": int(start["band_counts"].sum()),
            "unscored_either": int((~(scored_now & scored_start)).sum()),
            "coverage": float(scored_now.mean()) if n_book else float("nan"),
            "coverage_start": float(scored_start.mean()) if n_book else float("nan"),
            "coverage_drop": 100.0 * float(scored_start.mean() - scored_now.mean()) if n_book else 0.0,
            "band_counts": dict(zip(names, now["band_counts"].astype(int).tolist())),
            "band_arr": dict(zip(names, now["band_arr"].tolist())),
            "band_counts_start": dict(zip(start_names, start["band_counts"].astype(int).tolist())),
            "band_arr_start": dict(zip(start_names, start["band_arr"].tolist())),
            "holdout_rows": int(both.sum()),
            "holdout_events": int(self.y[both].sum()),
            "holdout_rows_left_out": int(left_out.sum()),
            "holdout_events_left_out": int(self.y[left_out].sum()),
            "holdout_events_now": now["holdout_events"],
            "holdout_events_start": start["holdout_events"],
            "auc": paired["auc"],
            "auc_start": paired["auc_start"],
            "auc_difference": diff.difference,
            "auc_difference_lower": diff.difference_lower,
            "auc_difference_upper": diff.difference_upper,
            "auc_change_measurable": diff.measurable,
            "lift": paired["lift"],
            "lift_start": paired["lift_start"],
            "churn_by_band": dict(zip(names, paired["rate"].tolist())),
            "churn_by_band_start": dict(zip(start_names, paired["rate_start"].tolist())),
            "contributions": dict(zip(metrics, now["contrib"].tolist())),
            "contributions_start": dict(zip(metrics, start["contrib"].tolist())),
            "n_changed": int(changed.size),
            "arr_changed": float(self.arr[changed].sum()),
            "changed": table,
            "histogram": now["hist"].astype(int).tolist(),
            "shares": model.weight_shares(),
            "shares_start": self.start.weight_shares(),
        }

    def verify(self, model: ScoreModel) -> dict[str, Any]:
        """Recompute ``model``'s figures the slow way (full calibrate + combine + evaluation
        functions) and compare them with the fast path. ``ok`` is True when everything agrees."""

        fast = self.evaluate(model)
        scores = combine(calibrate(self.snapshots, model), model).with_row_index("__row")
        start = combine(calibrate(self.snapshots, self.start), self.start).select(
            pl.int_range(pl.len(), dtype=pl.UInt32).alias("__row"), pl.col("score").alias("start_score")
        )
        book = scores.filter(pl.col("__row").is_in(pl.Series(self.book_rows).implode())).sort("account_id")
        # the holdout rows both models score
        hold = (
            pl.DataFrame({"__row": self.holdout_rows, "y": self.y})
            .cast({"__row": pl.UInt32})
            .join(scores, on="__row")
            .join(start, on="__row")
            .filter(pl.col("score").is_not_null() & pl.col("start_score").is_not_null())
            .sort(KEYS)
        )
        # on the tuner's 1e-9 grid: the engine's last bit depends on its order of addition
        risk = evaluation.risk_of(hold["score"].round(SCORE_DECIMALS), self.outcome)
        counts = dict(book.filter(pl.col("band").is_not_null()).group_by("band").len().iter_rows())
        slow_auc = evaluation.auc(hold["y"], risk)
        slow_lift = evaluation.top_decile_lift(hold["y"], risk)
        ours = self.book_scores(model)["score"].to_numpy()
        theirs = book["score"].to_numpy()
        out = {
            "max_score_difference": float(np.nanmax(np.abs(ours - theirs))) if len(ours) else 0.0,
            "same_missing_scores": bool(np.array_equal(np.isnan(ours), np.isnan(theirs))),
            "band_counts": fast["band_counts"],
            "band_counts_engine": {b.name: int(counts.get(b.name, 0)) for b in model.bands},
            "auc": fast["auc"],
            "auc_engine": slow_auc,
            "lift": fast["lift"],
            "lift_engine": slow_lift,
        }
        out["ok"] = bool(
            out["same_missing_scores"]
            and out["max_score_difference"] <= 1e-9
            and out["band_counts"] == out["band_counts_engine"]
            and _close(out["auc"], slow_auc)
            and _close(out["lift"], slow_lift)
        )
        return out

    def book_scores(self, model: ScoreModel) -> pl.DataFrame:
        """``account_id``, ``score``, ``band`` of the book under ``model`` (fast path; for checks and export)."""
        self.recalibrate(model)
        score, _ = self.scorer.score(model)
        score = score[: len(self.book_rows)]
        idx = band_index(score, model.bands)
        names = [b.name for b in model.bands]
        return self.book.select("account_id").with_columns(
            pl.Series("score", score).fill_nan(None),
            pl.Series("band", [names[i] if i >= 0 else None for i in idx], dtype=pl.String),
        )


# ---------------------------------------------------------------- charts (fed by parameters)
def distribution_chart(bands: Sequence[str], colours: Sequence[str], n_bins: int = N_BINS) -> Any:
    """Score histogram stacked by band, the starting model's counts as dashes, cut-offs as rules.

    The chart holds no rows: its data is a generated sequence and the counts live in three
    parameters (``hist``: bins x bands, bin-major; ``hist_start``: per bin; ``cuts``), so an update
    sends a few dozen numbers.
    """
    import altair as alt  # altair is loaded only when a chart is drawn

    k, width = len(bands), 100 / n_bins
    names = json.dumps(list(bands))
    hist = alt.param(name="hist", value=[0] * (n_bins * k))
    start = alt.param(name="hist_start", value=[0] * n_bins)
    cuts = alt.param(name="cuts", value=[0.0] * max(k - 1, 0))
    x = alt.X("lo:Q", bin="binned", scale=alt.Scale(domain=[0, 100]), title="score (book of business, now)")
    bars = (
        alt.Chart(alt.sequence(0, n_bins * k, as_="i"))
        .transform_calculate(
            lo=f"floor(datum.i / {k}) * {width}",
            hi=f"floor(datum.i / {k}) * {width} + {width}",
            band=f"{names}[datum.i % {k}]",
            order=f"datum.i % {k}",
            accounts="hist[datum.i]",
        )
        .mark_bar(stroke="white", strokeWidth=0.5)
        .encode(
            x=x,
            x2="hi:Q",
            y=alt.Y("sum(accounts):Q", title="accounts"),
            color=alt.Color(
                "band:N",
                scale=charts.band_scale(list(bands), list(colours)),
                sort=list(bands),
                legend=alt.Legend(title="band"),
            ),
            order=alt.Order("order:Q"),
            tooltip=[alt.Tooltip("band:N"), alt.Tooltip("lo:Q", title="from"), alt.Tooltip("accounts:Q")],
        )
    )
    before = (
        alt.Chart(alt.sequence(0, n_bins, as_="i"))
        .transform_calculate(lo=f"datum.i * {width}", hi=f"datum.i * {width} + {width}", accounts="hist_start[datum.i]")
        .mark_rule(color="black", strokeDash=[4, 2], strokeWidth=1.5)
        .encode(
            x=alt.X("lo:Q", scale=alt.Scale(domain=[0, 100])),
            x2="hi:Q",
            y="accounts:Q",
            tooltip=[alt.Tooltip("lo:Q", title="from"), alt.Tooltip("accounts:Q", title="starting model")],
        )
    )
    rules = (
        alt.Chart(alt.sequence(0, max(k - 1, 0), as_="i"))
        .transform_calculate(cut="cuts[datum.i]")
        .mark_rule(color="#555", strokeWidth=1)
        .encode(x="cut:Q")
    )
    return (
        alt.layer(bars, before, rules)
        .add_params(hist, start, cuts)
        .properties(
            width=360,
            height=190,
            padding=_PADDING,
            title=alt.Title("Score distribution by band", subtitle="dashes: the starting model"),
        )
    )


def contribution_chart(labels: Sequence[str]) -> Any:
    """Mean points each metric adds to the score now (bars) and in the starting model (ticks).

    Values come from the parameters ``contrib`` and ``contrib_start`` (one number per metric).
    """
    import altair as alt  # altair is loaded only when a chart is drawn

    names = json.dumps(list(labels))
    now = alt.param(name="contrib", value=[0.0] * len(labels))
    start = alt.param(name="contrib_start", value=[0.0] * len(labels))
    base = alt.Chart(alt.sequence(0, len(labels), as_="i")).transform_calculate(
        metric=f"{names}[datum.i]", now="contrib[datum.i]", start="contrib_start[datum.i]"
    )
    y = alt.Y("metric:N", sort=list(labels), title=None)
    bars = base.mark_bar(color="#0072B2").encode(
        y=y,
        x=alt.X("now:Q", title="mean points contributed to the score"),
        tooltip=[alt.Tooltip("metric:N"), alt.Tooltip("now:Q", format=".2f"), alt.Tooltip("start:Q", format=".2f")],
    )
    ticks = base.mark_tick(color="black", thickness=2).encode(y=y, x="start:Q")
    return (
        alt.layer(bars, ticks)
        .add_params(now, start)
        .properties(
            width=260,
            height=max(120, 16 * len(labels)),
            padding=_PADDING,
            title=alt.Title("Each metric's contribution", subtitle="ticks: the starting model"),
        )
    )


# ---------------------------------------------------------------- small HTML pieces
def _signed(x: float, digits: int = 3) -> str:
    return "" if x is None or math.isnan(x) else f"{x:+.{digits}f}"


def _auc_change(st: Mapping[str, Any]) -> str:
    """The AUC change with its paired interval; coloured only when the interval excludes 0."""
    d, lo, hi = st["auc_difference"], st["auc_difference_lower"], st["auc_difference_upper"]
    if any(v is None or math.isnan(v) for v in (d, lo, hi)):
        return "<span class='hs-auc-change' style='color:#777'>–</span>"
    interval = f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]"
    if not st["auc_change_measurable"]:
        return (
            f"<span class='hs-auc-change' data-measurable='no' style='color:#777'>no measurable change "
            f"({interval})</span>"
        )
    colour = "#009E73" if d > 0 else "#D55E00"
    return f"<span class='hs-auc-change' data-measurable='yes' style='color:{colour}'>{interval}</span>"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], cls: str) -> str:
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td style='padding:2px 8px'>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table class='{cls}' style='border-collapse:collapse;font-size:12px'><tr>{head}</tr>{body}</table>"


def _swatch(name: str, colour: str) -> str:
    return (
        f"<span style='display:inline-block;width:10px;height:10px;background:{colour};"
        f"margin-right:4px;border-radius:2px'></span>{html.escape(name)}"
    )


@dataclass(frozen=True)
class Suggestion:
    """A fitted suggestion for the weights being edited (see :func:`suggestions_from_fit`)."""

    weights: dict[str, float]  # metric -> weight in the sliders' units (adopt all)
    shares: dict[str, tuple[float, float, float]]  # metric -> (% of score, interval lower, upper)
    categories: dict[str, float]  # category -> weight in the sliders' units


def suggestions_from_fit(fit: Any, current: ScoreModel) -> Suggestion:
    """Express a :class:`~healthscore.analysis.fitting.WeightFit`'s suggestion for the sliders of ``current``.

    ``shares`` is what the tuner shows: each metric's suggested share of the score in percent with
    its interval in the same unit (``WeightFit.suggested_shares``, which applies
    :meth:`~healthscore.spec.model.ScoreModel.weight_shares`). ``weights`` and ``categories`` are
    the suggested model's weights rescaled so each category's metric weights add up to what they
    add up to now, and the category weights to their current total: adopting them all gives the
    suggested model's scores and keeps every slider's scale.
    """
    suggested = fit.suggested_model()
    cats = list(current.categories)
    now_in = {c: sum(m.weight for m in current.metrics if m.category == c) for c in cats}
    sug_in = {c: sum(m.weight for m in suggested.metrics if m.category == c) for c in cats}
    factor = {c: (now_in[c] / sug_in[c]) if sug_in[c] > 0 and now_in[c] > 0 else 1.0 for c in cats}
    weights = {m.name: float(m.weight) * factor[m.category] for m in suggested.metrics}
    nan = float("nan")
    shares = {
        m: (s, nan if lo is None else lo, nan if hi is None else hi)
        for m, s, lo, hi in fit.suggested_shares().select("metric", "share", "share_lower", "share_upper").iter_rows()
    }
    total_now = sum(c.weight for c in current.categories.values())
    total_sug = sum(c.weight for c in suggested.categories.values())
    categories = {
        c.name: (c.weight * total_now / total_sug if total_sug > 0 else c.weight) for c in suggested.categories.values()
    }
    return Suggestion(weights, shares, categories)


def weights_for_share(model: ScoreModel, metric: str, share: float) -> tuple[dict[str, float], dict[str, float]]:
    """The weight change that gives ``metric`` ``share`` percent of the score, other weights kept.

    Weights are relative within a category, so a metric's share moves with its own weight while
    the others in its category keep theirs. A metric alone in its category (or with only
    switched-off companions) takes the category's whole share: then the category weight moves.
    Returns ``(metric weights, category weights)`` for :func:`edit_weights`.

    >>> m = hs_model()
    >>> w, c = weights_for_share(m, "nps", 20.0)
    >>> round(m.with_weights(metrics=w, categories=c).weight_shares()["nps"], 6)
    20.0
    """
    target = float(share) / 100.0
    me = model.metric(metric)
    cat = model.categories[me.category]
    total = sum(c.weight for c in model.categories.values())
    rest_in = sum(m.weight for m in model.metrics if m.category == me.category and m.name != metric)
    if not 0 <= target < 1:
        raise ModelError(f"a share of {share:g}% cannot be set: shares lie between 0 and 100%")
    if rest_in <= 0:
        rest = total - cat.weight
        if rest <= 0:
            raise ModelError(f"{metric!r} is the only weighted metric of the model: its share is always 100%")
        return ({metric: 1.0} if me.weight <= 0 and target > 0 else {}), {me.category: target * rest / (1 - target)}
    r = target * total / cat.weight if cat.weight > 0 else math.inf
    if r >= 1:
        whole = 100.0 * cat.weight / total if total > 0 else 0.0
        raise ModelError(
            f"{share:.1f}% of the score is more than category {me.category!r} holds ({whole:.1f}%): "
            "raise that category's weight first, or press 'adopt all'"
        )
    return {metric: r * rest_in / (1 - r)}, {}


class BreakpointTable:
    """One metric's thresholds or steps as an editable table of (raw value -> sub-score) rows.

    ``apply()`` checks the rows (:func:`breakpoints_from_rows`) and hands the parameters to
    ``on_apply``; a problem shows under the table, naming the row.
    """

    def __init__(self, metric: Any, on_apply: Callable[[str, dict[str, Any]], None]) -> None:
        import ipywidgets as W  # widgets exist only inside a notebook

        self.name, self.method, self.direction = metric.name, metric.method, metric.direction
        self.monotone = metric.params.get("monotone", True) is not False
        self._on_apply = on_apply
        self._W = W
        self.values: list[Any] = []
        self.scores: list[Any] = []
        self.rows_box = W.VBox([])
        self.add_button = W.Button(description="add row", layout=W.Layout(width="90px"))
        self.remove_button = W.Button(description="remove last", layout=W.Layout(width="100px"))
        self.apply_button = W.Button(description="apply", button_style="primary", layout=W.Layout(width="80px"))
        self.message = W.HTML("")
        self.message.add_class(f"hs-bp-message-{self.name}")
        self.add_button.on_click(lambda _b: self.add_row())
        self.remove_button.on_click(lambda _b: self.remove_row())
        self.apply_button.on_click(lambda _b: self.apply())
        better = "higher values are better" if self.direction == "higher_is_better" else "lower values are better"
        head = "raw value" if self.method == "thresholds" else "from raw value"
        title = W.HTML(
            f"<b>{html.escape(metric.label or metric.name)}</b> "
            f"<span style='font-size:11px;color:#555'>({html.escape(self.method)}; {better})</span>"
            f"<div style='font-size:11px'><span style='display:inline-block;width:110px'>{head}</span>"
            "sub-score (0-100)</div>"
        )
        self.widget = W.VBox(
            [title, self.rows_box, W.HBox([self.add_button, self.remove_button, self.apply_button]), self.message],
            layout=W.Layout(margin="0 0 10px 0"),
        )
        self.widget.add_class(f"hs-bp-{self.name}")
        self.set_rows(breakpoint_rows(metric.params, metric.method))

    def _row(self, value: float | None, score: float) -> Any:
        W = self._W
        box = W.Layout(width="105px")
        v = W.HTML("below the first", layout=box) if value is None else W.FloatText(value=value, layout=box)
        sc = W.BoundedFloatText(value=score, min=0, max=100, layout=W.Layout(width="90px"))
        self.values.append(v)
        self.scores.append(sc)
        return W.HBox([v, W.HTML("&rarr;", layout=W.Layout(width="16px")), sc])

    def set_rows(self, rows: Sequence[tuple[float | None, float]]) -> None:
        """Show these rows (replacing the table's contents)."""
        self.values, self.scores = [], []
        self.rows_box.children = [self._row(v, sc) for v, sc in rows]
        self.message.value = ""

    def rows(self) -> list[tuple[float | None, float]]:
        """The rows as entered."""
        return [
            (None if isinstance(v, self._W.HTML) else float(v.value), float(sc.value))
            for v, sc in zip(self.values, self.scores)
        ]

    def add_row(self) -> None:
        rows = self.rows()
        last = rows[-1] if rows else (0.0, 0.0)
        x = (last[0] if last[0] is not None else 0.0) + 1.0
        self.set_rows([*rows, (x, last[1])])

    def remove_row(self) -> None:
        self.set_rows(self.rows()[:-1])

    def apply(self) -> bool:
        """Check the rows and apply them; False (and the problem under the table) when they do not hold."""
        try:
            params = breakpoints_from_rows(self.rows(), self.method, self.direction, monotone=self.monotone)
        except ModelError as exc:
            self.message.value = f"<span style='color:#D55E00'>{html.escape(str(exc))}</span>"
            return False
        self.message.value = ""
        self._on_apply(self.name, params)
        return True


# ---------------------------------------------------------------- alert rules
# the numeric setting of each kind of alert rule the Alerts tab moves
ALERT_SETTINGS = {"threshold": "value", "drop": "points", "probability": "at_least"}


def with_alert_setting(model: ScoreModel, rule: str, value: float) -> ScoreModel:
    """A new model whose alert rule ``rule`` has its numeric setting (see :data:`ALERT_SETTINGS`) at ``value``.

    >>> m = with_alert_setting(hs_model(), "score_drop", 10)
    >>> next(r.points for r in m.alerts if r.name == "score_drop"), m.hash == hs_model().hash
    (10.0, True)
    """
    found = next((r for r in model.alerts if r.name == rule), None)
    if found is None or found.kind not in ALERT_SETTINGS:
        movable = [r.name for r in model.alerts if r.kind in ALERT_SETTINGS]
        raise ModelError(
            f"model {model.name!r} has no alert rule {rule!r} with a numeric setting; these have one: {movable}"
        )
    key = ALERT_SETTINGS[found.kind]
    v = float(value)
    if key == "points" and v <= 0 or key == "at_least" and not 0 < v <= 1 or not math.isfinite(v):
        raise ModelError(
            f"alert rule {rule!r}: {key} = {v:g} is out of range"
            + (" (a probability above 0, at most 1)" if key == "at_least" else " (above 0)")
        )
    change: dict[str, Any] = {key: v}
    return replace(model, alerts=[replace(r, **change) if r.name == rule else r for r in model.alerts])


class AlertsPanel:
    """The Alerts tab: each alert rule's setting on a slider and its backtest beside the starting rules'.

    The backtest (:func:`healthscore.analysis.alerts.backtest_alerts`) replays the rules over the
    whole history of scores of the model being tuned; figures per rule: alerts fired, precision,
    share of the outcome's events alerted before, median lead time, alerts per CSM per week.
    Scores are computed once per scoring change and kept; a rule's setting never changes a score.
    """

    COLUMNS = (
        ("alerts", "alerts", "{:,.0f}"),
        ("precision", "precision", "pct"),
        ("share_caught", "caught", "pct"),
        ("lead_days_median", "lead (days)", "{:.0f}"),
        ("alerts_per_csm_week", "per CSM / week", "{:.2f}"),
    )

    def __init__(self, tuner: WeightTuner) -> None:
        import ipywidgets as W  # widgets exist only inside a notebook

        self.tuner = tuner
        self._scores: dict[str, pl.DataFrame] = {}
        self._start_table: tuple[tuple[str, str], pl.DataFrame] | None = None
        self.sliders: dict[str, Any] = {}
        for r in tuner.model.alerts:
            key = ALERT_SETTINGS.get(r.kind)
            if key is None:
                continue
            v = float(getattr(r, key))
            lo, hi, step = (
                (0.01, 1.0, 0.01) if key == "at_least" else (1.0, 50.0, 1.0) if key == "points" else (0.0, 100.0, 1.0)
            )
            what = {"value": f"{r.metric or r.column} {r.op}", "points": "drop of at least", "at_least": "chance >="}
            s = W.FloatSlider(
                value=v,
                min=min(lo, v),
                max=max(hi, v),
                step=step,
                continuous_update=False,
                description=f"{r.name}: {what[key]}",
                layout=W.Layout(width="420px"),
                style={"description_width": "240px"},
            )
            s.add_class(f"hs-alert-{r.name}")
            s.observe(lambda ch, n=r.name: self._on_setting(n, ch["new"]), "value")
            self.sliders[r.name] = s
        self.table_html = W.HTML("")
        self.table_html.add_class("hs-alerts-table")
        note = (
            "Move a rule's setting to see how it would have done over the history, next to the starting "
            "rules (in brackets). Saving writes the settings into the model's [[alerts]]."
        )
        self.widget = W.VBox(
            [
                W.HTML(f"<div style='font-size:12px;max-width:600px'>{note}</div>"),
                *self.sliders.values(),
                self.table_html,
            ]
        )
        self.state: dict[str, Any] = {}

    def _on_setting(self, rule: str, value: float) -> None:
        if not self.tuner._syncing:
            self.tuner._guard(lambda: self.tuner._commit(with_alert_setting(self.tuner.model, rule, value)))

    def sync(self) -> None:
        for r in self.tuner.model.alerts:
            if r.name in self.sliders:
                self.sliders[r.name].value = float(getattr(r, ALERT_SETTINGS[r.kind]))

    def scores(self, model: ScoreModel) -> pl.DataFrame:
        """Every snapshot's score under ``model`` (kept per model hash)."""

        key = model.hash
        if key not in self._scores:
            s = self.tuner.session
            s.recalibrate(model)
            self._scores = {key: combine(s.sub, model), **{k: v for k, v in self._scores.items() if k == s.start.hash}}
        return self._scores[key]

    def backtest(self, model: ScoreModel) -> pl.DataFrame:

        s = self.tuner.session
        return backtest_alerts(
            self.scores(model), s.events, model, outcome=s.outcome, horizon=s.horizon, snapshots=s.snapshots
        ).table

    def refresh(self) -> None:
        """Backtest the current rules and the starting ones (the latter once per outcome and horizon)."""
        if not self.tuner.model.alerts:
            self.table_html.value = "<i>This model has no [[alerts]] rules.</i>"
            return
        s = self.tuner.session
        key = (s.outcome, s.horizon)
        if self._start_table is None or self._start_table[0] != key:
            self._start_table = (key, self.backtest(self.tuner.start))
        now, start = self.backtest(self.tuner.model), self._start_table[1]
        self.state = {"now": now, "start": start}
        before = {r["rule"]: r for r in start.iter_rows(named=True)}
        rows = []
        for r in now.iter_rows(named=True):
            b = before.get(r["rule"], {})
            cells = [html.escape(str(r["rule"]))]
            for col, _, form in self.COLUMNS:
                cells.append(
                    f"<span class='hs-alert-{col}'>{_fmt_cell(r.get(col), form)}</span> ({_fmt_cell(b.get(col), form)})"
                )
            rows.append(cells)
        self.table_html.value = (
            f"<div style='font-size:12px'>Backtest against {html.escape(s.outcome)} within "
            f"{html.escape(s.horizon)}: now (starting rules)</div>"
            + _table(["rule", *(h for _, h, _ in self.COLUMNS)], rows, "hs-alert-backtest")
        )


def _fmt_cell(v: Any, form: str) -> str:
    if fmt.missing(v):
        return fmt.MISSING
    return fmt.percent(v, 1) if form == "pct" else form.format(v)


# ---------------------------------------------------------------- the tuner
class WeightTuner:
    """Tune a score model's weights, bands and thresholds in JupyterLab with the evidence in view.

    ``tuner.widget`` is the root ipywidget (a bare ``tuner`` at the end of a cell shows it too).
    Code can drive every control, e.g. ``tuner.metric_sliders["login_days"].value = 3``, and read
    the figures from ``tuner.state`` (see :data:`STATE_KEYS`). ``tuner.model`` is the tuned
    :class:`~healthscore.spec.model.ScoreModel`; :meth:`save` writes it, :meth:`undo` and
    :meth:`reset` step back.

    The evidence compares the tuned model with the starting one on the same rows: holdout
    figures come from the rows both models score, the accounts either leaves unscored are
    counted, and an AUC change is coloured only when its paired interval by account excludes 0.
    Weights are shown as a share of the score (``ScoreModel.weight_shares``), the fit's
    suggestion and its interval in the same unit.

    ``holdout`` is the first ``as_of`` of the holdout (default: 70% into the labelled dates);
    AUC, lift and the rate per band are measured there, the fit uses the rows before it.
    ``subscores`` reuses the output of ``hs.calibrate(snapshots, model)`` instead of calibrating again.
    """

    def __init__(
        self,
        snapshots: pl.DataFrame,
        events: pl.DataFrame,
        model: ScoreModel,
        *,
        outcome: str = "churned",
        horizon: str = "90d",
        holdout: date | str | None = None,
        subscores: pl.DataFrame | None = None,
    ) -> None:
        import altair as alt  # altair is loaded only when a chart is drawn

        alt.JupyterChart.enable_offline()  # the chart JavaScript comes with vl-convert, not from the internet
        self.session = TuningSession(
            snapshots, events, model, outcome=outcome, horizon=horizon, holdout=holdout, subscores=subscores
        )
        self.start = model
        self.model = model
        self.variant = "default"
        self.fit_result: Any = None
        self.suggestion: Suggestion | None = None
        self.state: dict[str, Any] = {}
        self._history: list[ScoreModel] = []
        self._syncing = False
        self._last_version = model.version
        self._start_hash = model.hash
        self._written: dict[Path, str] = {}
        self._chart_values: dict[int, dict[str, Any]] = {}
        self._build()
        self._refresh()

    # ------------------------------------------------------------ layout
    def _build(self) -> None:
        import altair as alt  # altair is loaded only when a chart is drawn
        import ipywidgets as W  # widgets exist only inside a notebook

        m0 = self.model
        wide = W.Layout(width="330px")
        style = {"description_width": "150px"}
        top_w = max([m.weight for m in m0.metrics] + [5.0])
        top_c = max([c.weight for c in m0.categories.values()] + [50.0])

        self.category_sliders = {
            c.name: W.FloatSlider(
                value=c.weight,
                min=0,
                max=float(math.ceil(2 * top_c)),
                step=0.5,
                description=c.label or c.name,
                continuous_update=False,
                layout=wide,
                style=style,
            )
            for c in m0.categories.values()
        }
        self.metric_sliders = {
            m.name: W.FloatSlider(
                value=m.weight,
                min=0,
                max=float(math.ceil(2 * top_w)),
                step=0.1,
                description=m.label or m.name,
                continuous_update=False,
                layout=wide,
                style=style,
            )
            for m in m0.metrics
        }
        for name, s in self.category_sliders.items():
            s.add_class(f"hs-c-{name}")
            s.observe(lambda ch, n=name: self._on_category(n, ch["new"]), "value")
        for name, s in self.metric_sliders.items():
            s.add_class(f"hs-w-{name}")
            s.observe(lambda ch, n=name: self._on_metric(n, ch["new"]), "value")
        # each weight as its share of the score (the one rule: ScoreModel.weight_shares)
        self.share_labels = {n: W.HTML("", layout=W.Layout(width="58px")) for n in self.metric_sliders}
        self.category_share_labels = {n: W.HTML("") for n in self.category_sliders}
        for n, lab in self.share_labels.items():
            lab.add_class(f"hs-share-{n}")
        self.suggestion_labels = {n: W.HTML("", layout=W.Layout(width="150px")) for n in self.metric_sliders}
        self.adopt_buttons = {
            n: W.Button(
                description="adopt",
                disabled=True,
                layout=W.Layout(width="64px"),
                tooltip="give this metric the fitted share of the score",
            )
            for n in self.metric_sliders
        }
        for n, b in self.adopt_buttons.items():
            b.on_click(lambda _b, n=n: self._guard(lambda: self.adopt(n)))
        # a metric alone in its category: its weight cannot change its share (weights are relative
        # within a category), the category weight does; say so where the slider is
        self.single_notes: dict[str, Any] = {}
        for cat in m0.categories.values():
            members = [m for m in m0.metrics if m.category == cat.name]
            if len(members) == 1:
                note = W.HTML("")
                note.add_class(f"hs-single-{members[0].name}")
                self.single_notes[members[0].name] = note

        bands = m0.bands
        self.cutoff_sliders = [
            W.FloatSlider(
                value=b.upper,
                min=0,
                max=100,
                step=0.5,
                continuous_update=False,
                description=f"{b.name} | {bands[i + 1].name}",
                layout=wide,
                style=style,
            )
            for i, b in enumerate(bands[:-1])
        ]
        for i, s in enumerate(self.cutoff_sliders):
            s.add_class(f"hs-cut-{i}")
            s.observe(lambda ch, i=i: self._on_cutoff(i, ch["new"]), "value")
        self.coverage_slider = W.FloatSlider(
            value=m0.min_coverage,
            min=0,
            max=1,
            step=0.05,
            continuous_update=False,
            description="minimum coverage",
            layout=wide,
            style=style,
        )
        self.coverage_slider.observe(lambda ch: self._on_coverage(ch["new"]), "value")
        self.threshold_tables = {
            m.name: BreakpointTable(m, self._on_breakpoints) for m in m0.metrics if m.method in _EDITABLE
        }

        self.variant_select = W.Dropdown(
            options=["default", *(v.name for v in m0.variants)],
            value="default",
            description="edit variant",
            style={"description_width": "90px"},
            layout=W.Layout(width="200px"),
        )
        self.variant_select.observe(lambda ch: self._on_variant(ch["new"]), "value")
        outcomes = sorted(set(self.session.events["event"].unique().drop_nulls().to_list()) | {self.session.outcome})
        self.outcome_select = W.Dropdown(
            options=outcomes,
            value=self.session.outcome,
            description="outcome",
            style={"description_width": "60px"},
            layout=W.Layout(width="200px"),
        )
        horizons = list(dict.fromkeys([*HORIZONS, self.session.horizon]))
        self.horizon_select = W.Dropdown(
            options=horizons,
            value=self.session.horizon,
            description="horizon",
            style={"description_width": "60px"},
            layout=W.Layout(width="170px"),
        )
        self.outcome_select.observe(lambda ch: self._on_labels(), "value")
        self.horizon_select.observe(lambda ch: self._on_labels(), "value")

        self.fit_button = W.Button(
            description="fit weights",
            icon="calculator",
            button_style="info",
            tooltip="logistic fit on the rows before the holdout; suggestions appear beside the sliders",
        )
        self.adopt_all_button = W.Button(description="adopt all", disabled=True)
        self.adopt_all_button.add_class("hs-adopt-all")
        self.adopt_warning = W.HTML("")
        self.adopt_warning.add_class("hs-adopt-warning")
        self.confirm_drop = W.Checkbox(
            value=False,
            description="adopt anyway: I accept the lower coverage",
            indent=False,
            layout=W.Layout(display="none", width="330px"),
        )
        self.confirm_drop.add_class("hs-confirm-drop")
        self.undo_button = W.Button(description="undo", icon="undo")
        self.reset_button = W.Button(description="reset", icon="refresh")
        self.save_button = W.Button(
            description="save as new version",
            icon="save",
            button_style="success",
            layout=W.Layout(width="190px"),
            tooltip="write model_vX.Y.Z.toml next to the model file (the working folder for the bundled sample); the original stays",
        )
        self.save_button.add_class("hs-save")
        self.overwrite_button = W.Button(description="overwrite the original ...", layout=W.Layout(width="210px"))
        self.overwrite_button.add_class("hs-overwrite")
        self.overwrite_confirm = W.Button(
            description="yes, overwrite", button_style="danger", layout=W.Layout(display="none", width="130px")
        )
        self.overwrite_confirm.add_class("hs-overwrite-confirm")
        self.fit_button.on_click(lambda _b: self._guard(self.run_fit))
        self.adopt_all_button.on_click(lambda _b: self._guard(self.adopt_all))
        self.undo_button.on_click(lambda _b: self._guard(self.undo))
        self.reset_button.on_click(lambda _b: self._guard(self.reset))
        self.save_button.on_click(lambda _b: self._guard(self.save))
        self.overwrite_button.on_click(lambda _b: self._guard(self._ask_overwrite))
        self.overwrite_confirm.on_click(lambda _b: self._guard(lambda: self.save(overwrite=True)))
        self.status = W.HTML("")
        self.status.add_class("hs-tuner-status")

        self.title = W.HTML("")
        self.coverage_html = W.HTML("")
        self.coverage_html.add_class("hs-tuner-coverage")
        self.summary_html = W.HTML("")
        self.summary_html.add_class("hs-tuner-summary")
        self.bands_html = W.HTML("")
        self.bands_html.add_class("hs-tuner-bands")
        self.changed_html = W.HTML("")
        self.changed_html.add_class("hs-tuner-changed")
        band_names = [b.name for b in bands]
        colours = [b.colour or charts.band_colour(b.name) for b in bands]
        self.distribution = alt.JupyterChart(distribution_chart(band_names, colours), embed_options=_EMBED)
        self.contributions = alt.JupyterChart(
            contribution_chart([m.label or m.name for m in m0.metrics]), embed_options=_EMBED
        )
        for chart in (self.distribution, self.contributions):
            chart.observe(lambda ch, c=chart: self._repush(c), "_params")

        rows = []
        for cat in m0.categories.values():
            rows.append(
                W.HBox(
                    [W.HTML(f"<b>{html.escape(cat.label or cat.name)}</b>&nbsp;"), self.category_share_labels[cat.name]]
                )
            )
            rows.append(self.category_sliders[cat.name])
            for m in (m for m in m0.metrics if m.category == cat.name):
                rows.append(
                    W.HBox(
                        [
                            self.metric_sliders[m.name],
                            self.share_labels[m.name],
                            self.suggestion_labels[m.name],
                            self.adopt_buttons[m.name],
                        ]
                    )
                )
                if m.name in self.single_notes:
                    rows.append(self.single_notes[m.name])
        weights_tab = W.VBox(
            [
                W.HBox([self.variant_select, self.fit_button, self.adopt_all_button]),
                self.adopt_warning,
                self.confirm_drop,
                W.HTML(
                    "<span style='font-size:11px;color:#555'>Weights are relative: beside each slider, the "
                    "metric's share of the score when every metric is present.</span>"
                ),
                *rows,
            ]
        )
        bands_tab = W.VBox(
            [W.HTML("Cut-offs between bands (score points)"), *self.cutoff_sliders, self.coverage_slider]
        )
        thresholds_tab = W.VBox(
            [
                W.HTML("Breakpoints of the metrics calibrated by thresholds or steps: edit the rows, then press apply"),
                *(t.widget for t in self.threshold_tables.values()),
            ]
        )
        self.alerts = AlertsPanel(self)
        tabs = W.Tab(
            children=[weights_tab, bands_tab, thresholds_tab, self.alerts.widget], layout=W.Layout(flex="0 1 auto")
        )
        for i, t in enumerate(["Weights", "Bands", "Thresholds", "Alerts"]):
            tabs.set_title(i, t)
        self.tabs = tabs
        # the backtest replays the whole history: run it while the Alerts tab is open, not on every step
        tabs.observe(lambda ch: self._guard(self._refresh_alerts) if ch["new"] == 3 else None, "selected_index")
        # the evidence sits beside the controls when there is room and wraps below them when not,
        # so it never gets squeezed narrower than its charts and tables
        self.evidence = W.VBox(
            [
                self.coverage_html,
                self.summary_html,
                self.distribution,
                self.bands_html,
                self.contributions,
                self.changed_html,
            ],
            layout=W.Layout(margin="0 0 0 16px", flex="1 1 500px", min_width="500px", overflow="visible"),
        )
        self.evidence.add_class("hs-tuner-evidence")
        self.widget = W.VBox(
            [
                W.HBox([self.title, self.outcome_select, self.horizon_select], layout=W.Layout(flex_flow="row wrap")),
                W.HBox([tabs, self.evidence], layout=W.Layout(flex_flow="row wrap", align_items="flex-start")),
                W.HBox(
                    [
                        self.undo_button,
                        self.reset_button,
                        self.save_button,
                        self.overwrite_button,
                        self.overwrite_confirm,
                    ],
                    layout=W.Layout(flex_flow="row wrap"),
                ),
                self.status,
            ]
        )
        self.widget.add_class("hs-tuner")

    @classmethod
    def from_files(
        cls,
        snapshots: str | os.PathLike[str],
        events: str | os.PathLike[str],
        model: str | os.PathLike[str],
        n_accounts: int | None = None,
        model_name: str | None = None,
        **kwargs: Any,
    ) -> WeightTuner:
        """Read and validate the files, optionally keep the first ``n_accounts`` accounts, build the tuner.

        >>> tuner = WeightTuner.from_files(SAMPLE_MODEL.parent / "snapshots.parquet",
        ...                                SAMPLE_MODEL.parent / "events.parquet", SAMPLE_MODEL, n_accounts=100)
        >>> tuner.state["accounts"] <= 100
        True
        """

        snaps, ev = read_snapshots(snapshots), read_events(events)
        if n_accounts is not None:
            keep = snaps["account_id"].unique().sort().head(int(n_accounts)).implode()
            snaps = snaps.filter(pl.col("account_id").is_in(keep))
            ev = ev.filter(pl.col("account_id").is_in(keep))
        return cls(snaps, ev, load_model(model, name=model_name), **kwargs)

    def verify(self) -> dict[str, Any]:
        """Check the figures on screen against the full scoring engine (see :meth:`TuningSession.verify`)."""
        return self.session.verify(self.model)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # ------------------------------------------------------------ control events
    def _guard(self, action: Callable[[], Any]) -> None:
        """Run a user action; a mistake shows in the status line instead of a traceback."""
        try:
            action()
        except (ModelError, ValueError, OSError) as exc:
            self._say(str(exc), error=True)
            self._sync_controls()

    def _on_metric(self, name: str, value: float) -> None:
        if not self._syncing:
            self._guard(lambda: self._commit(edit_weights(self.model, self.variant, metrics={name: value})))

    def _on_category(self, name: str, value: float) -> None:
        if not self._syncing:
            self._guard(lambda: self._commit(edit_weights(self.model, self.variant, categories={name: value})))

    def _on_cutoff(self, index: int, value: float) -> None:
        if not self._syncing:
            self._guard(lambda: self._commit(move_cutoff(self.model, index, value)))

    def _on_coverage(self, value: float) -> None:
        if not self._syncing:
            self._guard(lambda: self._commit(self.model.with_min_coverage(value)))

    def _on_breakpoints(self, name: str, params: dict[str, Any]) -> None:
        self._guard(lambda: self._commit(self.model.with_params(name, params)))

    def _on_variant(self, variant: str) -> None:
        self.variant = variant
        self._sync_controls()
        self._show_suggestions()
        self._refresh()

    def _on_labels(self) -> None:
        if self._syncing:
            return

        def relabel() -> None:
            self._say("labelling the holdout ...")
            self.session.relabel(self.outcome_select.value, self.horizon_select.value, self.session.holdout)
            self._refresh()
            self._say(f"outcome {self.session.outcome} within {self.session.horizon}")

        self._guard(relabel)

    # ------------------------------------------------------------ history
    def _commit(self, model: ScoreModel) -> None:
        if model == self.model:
            return
        self._history.append(self.model)
        del self._history[:-HISTORY_LIMIT]
        self.model = model
        self._refresh()

    def undo(self) -> bool:
        """Step back one change; False when there is nothing to undo."""
        if not self._history:
            self._say("nothing to undo")
            return False
        self.model = self._history.pop()
        self._sync_controls()
        self._refresh()
        return True

    def reset(self) -> None:
        """Back to the model the tuner was built with (itself undoable)."""
        if self.model != self.start:
            self._history.append(self.model)
        self.model = self.start
        self._sync_controls()
        self._refresh()

    def set_model(self, model: ScoreModel) -> None:
        """Show another version of the same model (e.g. a fitted suggestion); undoable."""
        self._commit(model)
        self._sync_controls()

    # ------------------------------------------------------------ fit
    def run_fit(self) -> Any:
        """Fit weights by logistic regression on the rows before the holdout and show the suggestions."""

        self._say("fitting weights ...")
        s = self.session
        # training labels must be known by the start of the holdout: as_of + horizon <= split
        if s.split is None:  # a random holdout of accounts: fit on the other accounts
            train = s.snapshots.join(s.test_accounts, on="account_id", how="anti")
        else:
            train = s.snapshots.filter(pl.col("as_of") < s.split)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.fit_result = fit_weights(
                train, s.events, self.model, outcome=s.outcome, horizon=s.horizon, data_end=s.split
            )
        self._show_suggestions()
        notes = "; ".join(dict.fromkeys(str(w.message) for w in caught))
        self._say(
            "fitted: suggested shares of the score are shown beside the sliders" + (f". Note: {notes}" if notes else "")
        )
        return self.fit_result

    def _resolved(self, model: ScoreModel | None = None) -> ScoreModel:
        return (model or self.model).resolve(None if self.variant == "default" else self.variant)

    def _show_suggestions(self) -> None:
        """Suggestions as shares of the score, for the variant being edited (recomputed when it changes)."""
        if self.fit_result is None:
            return
        self.suggestion = suggestions_from_fit(self.fit_result, self._resolved())
        for name, label in self.suggestion_labels.items():
            if name not in self.suggestion.shares:
                label.value, self.adopt_buttons[name].disabled = "", True
                continue
            share, lo, hi = self.suggestion.shares[name]
            ci = f" [{lo:.1f}, {hi:.1f}]" if not (math.isnan(lo) or math.isnan(hi)) else ""
            label.value = (
                f"<span class='hs-suggest' title='fitted share of the score, 95% interval'>fit {share:.1f}%{ci}</span>"
            )
            self.adopt_buttons[name].disabled = False
        self.adopt_all_button.disabled = False

    def adopt(self, metric: str) -> None:
        """Give one metric its fitted share of the score (its weight moves; alone in its category, the category's)."""
        if self.suggestion is None or metric not in self.suggestion.shares:
            raise ModelError(f"no fitted suggestion for {metric!r}: press 'fit weights' first")
        metrics, categories = weights_for_share(self._resolved(), metric, self.suggestion.shares[metric][0])
        self.set_model(edit_weights(self.model, self.variant, metrics=metrics, categories=categories))

    def adopt_all(self, confirm: bool = False) -> bool:
        """Adopt every fitted weight (metrics and categories) in one undoable step.

        When the result would leave more than :data:`MAX_COVERAGE_DROP` points more of the book
        unscored than the starting model, nothing changes: a red warning says what would be lost
        and a confirmation box appears; adopting then needs ``confirm=True`` (or the box ticked).
        Returns whether the weights were adopted.
        """
        if self.suggestion is None:
            raise ModelError("no fit yet: press 'fit weights' first")
        candidate = edit_weights(
            self.model, self.variant, metrics=self.suggestion.weights, categories=self.suggestion.categories
        )
        st = self.session.evaluate(candidate)
        if st["coverage_drop"] > MAX_COVERAGE_DROP and not (confirm or self.confirm_drop.value):
            self.adopt_warning.value = (
                "<div class='hs-coverage-warning' style='color:#fff;background:#C0392B;padding:4px 8px;"
                "border-radius:3px;font-size:12px;max-width:620px'><b>Adopting all would leave "
                f"{st['accounts'] - st['scored_accounts']:,} of {st['accounts']:,} accounts unscored</b> "
                f"(starting model: {st['accounts'] - st['scored_accounts_start']:,}), coverage "
                f"{fmt.percent(st['coverage'], 1)} instead of {fmt.percent(st['coverage_start'], 1)}. The holdout both models score "
                f"would hold {st['holdout_events']:,} {html.escape(st['outcome'])} events instead of "
                f"{st['holdout_events_start']:,}. Tick the box below to adopt anyway.</div>"
            )
            self.confirm_drop.layout.display = "flex"
            self._say("adopt all is waiting for a confirmation: it lowers coverage", error=True)
            return False
        self._clear_adopt_warning()
        self.set_model(candidate)
        return True

    def _clear_adopt_warning(self) -> None:
        self.adopt_warning.value = ""
        self.confirm_drop.value = False
        self.confirm_drop.layout.display = "none"

    # ------------------------------------------------------------ save
    def versioned_path(self, version: str | None = None) -> Path:
        """Where "save as new version" writes: ``<stem>_v<version>.toml`` next to the model's file, or in
        the working folder when the model is the package's bundled sample (package data is never written)."""
        if self.start.source is None:
            raise ModelError("this model was not loaded from a file: give save() a path")
        version = version or replace(self.model, version=self._last_version).bump_version().version
        src = self.start.source
        bundled = resources.folder().resolve()
        home = Path.cwd() if src.resolve().is_relative_to(bundled) else src.parent
        return home / f"{src.stem}_v{version}{src.suffix or '.toml'}"

    def _ask_overwrite(self) -> None:
        if self.start.source is None:
            raise ModelError("this model was not loaded from a file: there is no original to overwrite")
        self.overwrite_confirm.layout.display = "flex"
        self._say(
            f"overwrite {self.start.source.name}? Press 'yes, overwrite' to replace it; 'save as new version' keeps it",
            error=True,
        )

    def save(self, path: str | os.PathLike[str] | None = None, overwrite: bool = False) -> Path:
        """Write the tuned model to TOML with a bumped version, keeping the file's comments.

        By default a new file next to the original, named after the new version
        (``model_v1.0.1.toml``); the original is left as it is. ``overwrite=True`` without a path
        writes over the file the model came from (the widget asks first), unless it changed on
        disk since it was loaded. An existing file is never replaced unless ``overwrite=True`` or
        this tuner wrote it.
        """
        saved = replace(self.model, version=self._last_version).bump_version()
        source = self.start.source.resolve() if self.start.source else None
        if path:
            target = Path(path)
        elif overwrite:
            if self.start.source is None:
                raise ModelError("this model was not loaded from a file: give a path to save to")
            target = self.start.source
        else:
            target = self.versioned_path(saved.version)
        if target.exists():
            now = target.read_text(encoding="utf-8")
            key = target.resolve()
            if key in self._written:
                if now != self._written[key] and not overwrite:
                    raise ModelError(
                        f"{target} changed on disk since this tuner saved it; "
                        "save to another path or pass overwrite=True"
                    )
            elif key == source and overwrite:
                if now != self.start._text:
                    raise ModelError(
                        f"{target} changed on disk since the model was loaded; save as a new version instead"
                    )
            elif not overwrite:
                raise ModelError(
                    f"{target} already exists and this tuner did not write it; "
                    "choose another path or pass overwrite=True"
                )
        saved.save(target)
        self._written[target.resolve()] = target.read_text(encoding="utf-8")
        self._last_version = saved.version
        self.model = saved if self.model.hash == saved.hash else self.model
        self.overwrite_confirm.layout.display = "none"
        self._refresh()
        self._say(f"saved version {saved.version} to {target}")
        return target

    # ------------------------------------------------------------ view
    def _say(self, text: str, error: bool = False) -> None:
        colour = "#D55E00" if error else "#333"
        self.status.value = f"<span style='color:{colour}'>{html.escape(text)}</span>"

    def _sync_controls(self) -> None:
        """Set every control from ``self.model`` without triggering changes."""
        self._syncing = True
        try:
            r = self._resolved()
            disabled = set()
            if self.variant != "default":
                disabled = set(next(v for v in self.model.variants if v.name == self.variant).disabled)
            for m in r.metrics:
                s = self.metric_sliders[m.name]
                s.max = max(s.max, float(math.ceil(m.weight)))
                s.value, s.disabled = m.weight, m.name in disabled
            for c in r.categories.values():
                s = self.category_sliders[c.name]
                s.max = max(s.max, float(math.ceil(c.weight)))
                s.value = c.weight
            for i, s in enumerate(self.cutoff_sliders):
                s.value = self.model.bands[i].upper
            self.coverage_slider.value = self.model.min_coverage
            self.outcome_select.value, self.horizon_select.value = self.session.outcome, self.session.horizon
            for name, t in self.threshold_tables.items():
                m = self.model.metric(name)
                t.set_rows(breakpoint_rows(m.params, m.method))
            self.alerts.sync()
        finally:
            self._syncing = False

    def _push(self, chart: Any, values: dict[str, Any]) -> None:
        """Send new parameter values to a chart (a few numbers; the spec is not re-sent)."""
        self._chart_values[id(chart)] = values
        with chart.hold_sync():
            for k, v in values.items():
                setattr(chart.params, k, v)

    def _repush(self, chart: Any) -> None:
        # A chart rendered after an update reports its initial values back; send ours again.
        wanted = self._chart_values.get(id(chart), {})
        if any(chart._params.get(k) != v for k, v in wanted.items()):
            self._push(chart, wanted)

    def _refresh(self) -> None:
        st = self.session.evaluate(self.model)
        m = self.model
        digest = m.hash  # a canonical JSON dump: compute it once per refresh
        st["variant"], st["hash"] = self.variant, digest
        # shares of the variant being edited, by the one rule
        st["shares"], st["shares_start"] = self._resolved().weight_shares(), self._resolved(self.start).weight_shares()
        self.state = st
        edited = "" if digest == self._start_hash else " <i>(edited)</i>"
        self.title.value = (
            f"<b>{html.escape(m.name)}</b> version {html.escape(m.version)} <code>{digest}</code>{edited}"
        )
        self._show_shares(st)
        self.coverage_html.value = self._coverage_html(st)
        self.summary_html.value = self._summary_html(st)
        self.bands_html.value = self._bands_html(st)
        self.changed_html.value = self._changed_html(st)
        self._push(
            self.distribution,
            {
                "hist": st["histogram"],
                "hist_start": np.asarray(self.session.start_eval["hist"]).reshape(N_BINS, -1).sum(axis=1).tolist(),
                "cuts": [b.upper for b in m.bands[:-1]],
            },
        )
        clean = [0.0 if math.isnan(v) else round(v, 4) for v in st["contributions"].values()]
        clean_start = [0.0 if math.isnan(v) else round(v, 4) for v in st["contributions_start"].values()]
        self._push(self.contributions, {"contrib": clean, "contrib_start": clean_start})
        if self.tabs.selected_index == 3:
            self._refresh_alerts()

    def _refresh_alerts(self) -> None:
        self.alerts.refresh()

    def _show_shares(self, st: dict[str, Any]) -> None:
        r = self._resolved()
        total = sum(c.weight for c in r.categories.values())
        for name, label in self.share_labels.items():
            label.value = f"<span title='share of the score'>{st['shares'][name]:.1f}%</span>"
        for name, label in self.category_share_labels.items():
            share = 100 * r.categories[name].weight / total if total > 0 else 0.0
            label.value = f"<span style='font-size:12px'>{share:.1f}% of the score</span>"
        for name, note in self.single_notes.items():
            m = r.metric(name)
            cat = r.categories[m.category]
            note.value = (
                "<div style='font-size:11px;color:#555;max-width:600px;margin:0 0 4px 8px'>"
                f"<b>{html.escape(m.label or m.name)}</b> is the only metric in "
                f"{html.escape(cat.label or cat.name)}: weights are relative within a category, so any weight "
                "above 0 gives the same scores (0 switches it off). Its share of the score "
                f"({st['shares'][name]:.1f}%) is set by the category weight above.</div>"
            )

    def _coverage_html(self, st: dict[str, Any]) -> str:
        """Accounts either model leaves unscored; a drop of more than MAX_COVERAGE_DROP points in red."""
        n, now, start = (
            st["accounts"],
            st["accounts"] - st["scored_accounts"],
            st["accounts"] - st["scored_accounts_start"],
        )
        text = (
            f"Unscored accounts: <b class='hs-unscored'>{now:,}</b> of {n:,} now, {start:,} with the starting "
            f"model, {st['unscored_either']:,} by either. Holdout figures use the {st['holdout_rows']:,} "
            f"snapshots both models score"
        )
        if st["holdout_rows_left_out"]:
            text += (
                f"; {st['holdout_rows_left_out']:,} scored by only one model "
                f"({st['holdout_events_left_out']:,} events) are left out"
            )
        if st["coverage_drop"] > MAX_COVERAGE_DROP:
            return (
                "<div class='hs-coverage-warning' style='color:#fff;background:#C0392B;padding:4px 8px;"
                f"border-radius:3px;font-size:12px'><b>Coverage fell from {fmt.percent(st['coverage_start'], 1)} to "
                f"{fmt.percent(st['coverage'], 1)}</b>: {text}.</div>"
            )
        return f"<div style='font-size:12px'>{text}.</div>"

    def _summary_html(self, st: dict[str, Any]) -> str:
        what = f"{st['outcome']} within {st['horizon']}"
        rows = [
            [
                "holdout AUC",
                f"<span class='hs-auc'>{fmt.number(st['auc'], 3)}</span>",
                fmt.number(st["auc_start"], 3),
                _auc_change(st),
            ],
            [
                "top-decile lift",
                f"<span class='hs-lift'>{fmt.number(st['lift'], 2)}</span>",
                fmt.number(st["lift_start"], 2),
                f"<span style='color:#777'>{_signed(st['lift'] - st['lift_start'], 2)}</span>",
            ],
        ]
        return (
            f"<div style='font-size:12px'>Holdout from {st['split']}: {st['holdout_rows']:,} snapshots scored by "
            f"both models, {st['holdout_events']:,} {html.escape(what)}</div>"
            + _table(["", "now", "start", "change (95% interval, paired by account)"], rows, "hs-summary-table")
        )

    def _bands_html(self, st: dict[str, Any]) -> str:

        rows = []
        for b in self.model.bands:
            n, n0 = st["band_counts"].get(b.name, 0), st["band_counts_start"].get(b.name, 0)
            arr, arr0 = st["band_arr"].get(b.name, 0.0), st["band_arr_start"].get(b.name, 0.0)
            r, r0 = st["churn_by_band"].get(b.name, float("nan")), st["churn_by_band_start"].get(b.name, float("nan"))
            rows.append(
                [
                    _swatch(b.name, b.colour or charts.band_colour(b.name)),
                    f"<span class='hs-count-{html.escape(b.name)}'>{n:,}</span> ({n0:,})",
                    f"{fmt.money(arr)} ({fmt.money(arr0)})",
                    f"{fmt.percent(r, 1)} ({fmt.percent(r0, 1)})",
                ]
            )
        rows.append(
            [
                "no score",
                f"{st['accounts'] - st['scored_accounts']:,} ({st['accounts'] - st['scored_accounts_start']:,})",
                "",
                "",
            ]
        )
        return _table(
            ["band", "accounts now (start)", "ARR now (start)", f"{html.escape(st['outcome'])} rate, holdout (start)"],
            rows,
            "hs-band-table",
        )

    def _changed_html(self, st: dict[str, Any]) -> str:
        t: pl.DataFrame = st["changed"]
        head = (
            f"<div style='font-size:12px'><b class='hs-changed'>{st['n_changed']:,}</b> accounts change band "
            f"(ARR {fmt.money(st['arr_changed'])})" + (f"; the {t.height} largest:" if t.height else "") + "</div>"
        )
        if not t.height:
            return head
        name_col = "company_name" if "company_name" in t.columns else "account_id"
        rows = [
            [
                html.escape(str(r["account_id"])),
                html.escape(str(r[name_col])),
                fmt.money(r["arr"]),
                f"{html.escape(str(r['old_band']))} ({fmt.number(r['old_score'], 1)})",
                f"{html.escape(str(r['new_band']))} ({fmt.number(r['new_score'], 1)})",
            ]
            for r in t.iter_rows(named=True)
        ]
        return head + _table(["account", "name", "ARR", "old band", "new band"], rows, "hs-changed-table")
