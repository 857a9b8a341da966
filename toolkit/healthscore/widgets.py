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
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import polars as pl

from healthscore.model import Band, ModelError, ScoreModel

SAMPLE_MODEL = Path(__file__).resolve().parents[2] / "data" / "model.toml"

KEYS = ("account_id", "as_of")
N_BINS = 20                      # score histogram: 20 bins of 5 points
HORIZONS = ("30d", "60d", "90d", "180d", "365d")
HISTORY_LIMIT = 500              # undo steps kept
CHANGED_ROWS = 15                # rows shown in the "accounts that change band" table
_EPS = 1e-12                     # the scoring engine's tolerance on minimum coverage
# how a thresholds/steps parameter is edited as text
_EDITABLE = {"thresholds": "points", "steps": "edges"}

STATE_KEYS = (
    "model", "hash", "variant", "outcome", "horizon", "split",
    "accounts", "scored_accounts", "band_counts", "band_arr", "band_counts_start", "band_arr_start",
    "holdout_rows", "holdout_events", "auc", "auc_start", "lift", "lift_start",
    "churn_by_band", "churn_by_band_start", "contributions", "contributions_start",
    "n_changed", "arr_changed", "changed", "histogram",
)


# ---------------------------------------------------------------- fast recompute core
@dataclass(frozen=True)
class Weights:
    """A model's weights resolved per variant, as arrays aligned with a :class:`FastScorer`.

    Row ``g`` is variant ``g`` (0 is the base model, then ``model.variants`` in order).
    """

    metric: np.ndarray      # (variants, metrics) metric weight, 0 when disabled
    category: np.ndarray    # (variants, categories) category weight
    share: np.ndarray       # (variants, metrics) nominal share of the total weight (for coverage)
    min_coverage: float


class FastScorer:
    """Sub-scores of a fixed set of rows as numpy columns, re-weighted in a few vector operations.

    The arithmetic follows :func:`healthscore.combine` operation for operation (same order of
    sums and divisions), so scores agree with the engine to the last bit and a score sitting
    exactly on a band boundary lands in the same band.

    >>> import healthscore as hs, polars as pl, datetime as dt
    >>> model = hs.load_model(SAMPLE_MODEL)
    >>> p = hs.datasets.make_portfolio(n_accounts=50, n_weeks=6, seed=1)
    >>> sub = hs.calibrate(p.snapshots, model)
    >>> fs = FastScorer(sub, model)
    >>> score, _ = fs.score(model)
    >>> ref = hs.combine(sub, model)["score"].to_numpy()
    >>> bool(np.allclose(score, ref, equal_nan=True, rtol=0, atol=1e-9))
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
        # one contiguous float column per metric: NaN = not available
        self.values = [subscores[c].cast(pl.Float64).fill_null(float("nan")).to_numpy().copy() for c in cols]
        self.present = [~np.isnan(v) for v in self.values]
        self.filled = [np.nan_to_num(v, nan=0.0) for v in self.values]
        self.category_of = [self.categories.index(m.category) for m in model.metrics]
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

    def set_column(self, metric: str, values: np.ndarray) -> None:
        """Replace one metric's sub-scores (after its calibration parameters changed)."""
        j = self.metrics.index(metric)
        v = np.asarray(values, dtype=np.float64).copy()
        self.values[j], self.present[j], self.filled[j] = v, ~np.isnan(v), np.nan_to_num(v, nan=0.0)

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
                s[gi, j] = (r.categories[metric.category].weight / total * metric.weight
                            / in_cat[metric.category]) if ok else 0.0
        return Weights(w, c, s, float(model.min_coverage))

    def score(self, model: ScoreModel | Weights, drivers: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Scores (NaN below minimum coverage) and, with ``drivers``, the (rows, metrics) driver points."""
        wts = model if isinstance(model, Weights) else self.weights(model)
        variant, n = self.variant, self.n

        def per_row(table: np.ndarray, j: int) -> np.ndarray | float:
            col = table[:, j]
            return float(col[0]) if np.all(col == col[0]) else col[variant]

        present, filled = self.present, self.filled
        pw = [np.where(p, per_row(wts.metric, j), 0.0) for j, p in enumerate(present)]
        members = [[j for j, c in enumerate(self.category_of) if c == ci] for ci in range(len(self.categories))]
        sums = _row_sums({"coverage": [np.where(p, per_row(wts.share, j), 0.0) for j, p in enumerate(present)],
                          **{f"cw{ci}": [pw[j] for j in js] for ci, js in enumerate(members)}}, n)
        coverage = np.clip(sums["coverage"], 0.0, 1.0)
        cw = [sums[f"cw{ci}"] for ci in range(len(self.categories))]
        cat_w = [np.where(cw[ci] > 0, per_row(wts.category, ci), 0.0) for ci in range(len(self.categories))]
        tot = _row_sums({"tot": cat_w}, n)["tot"]
        ok = (tot > 0) & (coverage >= wts.min_coverage - _EPS)
        with np.errstate(divide="ignore", invalid="ignore"):
            parts = [np.where(cw[ci] > 0, cat_w[ci] / tot * pw[j] / cw[ci] * filled[j], 0.0)
                     for j, ci in enumerate(self.category_of)]
        score = _row_sums({"score": parts}, n)["score"]
        drv = np.column_stack(parts) if drivers and parts else (np.empty((n, 0)) if drivers else None)
        score = np.where(ok, score, np.nan)
        if drv is not None:
            drv[~ok] = np.nan
        return score, drv


def _row_sums(groups: dict[str, list[np.ndarray]], n: int) -> dict[str, np.ndarray]:
    """Row-wise sums of groups of columns, added up exactly as the scoring engine adds them.

    Floating-point addition depends on the order of the terms; polars' lazy ``sum_horizontal``
    is what :func:`healthscore.combine` uses, so the same call here keeps scores bit-identical
    (a score that lands exactly on a band boundary must land in the same band).
    """
    frame: dict[str, np.ndarray] = {}
    exprs = []
    for name, cols in groups.items():
        names = []
        for i, col in enumerate(cols):
            frame[f"{name}__{i}"] = col
            names.append(f"{name}__{i}")
        exprs.append(pl.sum_horizontal([pl.col(c) for c in names]).alias(name) if names
                     else pl.lit(0.0, dtype=pl.Float64).alias(name))
    out = pl.DataFrame(frame, height=n).lazy().select(exprs).collect()
    return {name: out[name].to_numpy() for name in groups}


def band_index(score: np.ndarray, bands: Sequence[Band]) -> np.ndarray:
    """Index of each score's band (as ``ScoreModel.band_of``: below ``upper``; top band takes the rest); -1 for NaN.

    >>> band_index(np.array([0.0, 39.9, 40.0, 100.0, np.nan]), [Band("r", 0, 40), Band("g", 40, 100)]).tolist()
    [0, 0, 1, 1, -1]
    """
    uppers = np.array([b.upper for b in bands[:-1]], dtype=np.float64)
    idx = np.searchsorted(uppers, score, side="right").astype(np.intp)
    idx[np.isnan(score)] = -1
    return idx


def auc_and_lift(y: np.ndarray, risk: np.ndarray, fraction: float = 0.1) -> tuple[float, float]:
    """ROC AUC and top-``fraction`` lift from one sort (ties get average ranks / pro-rata places).

    Gives the same numbers as :func:`healthscore.evaluation.auc` and
    :func:`~healthscore.evaluation.top_decile_lift`; rows with NaN risk are left out.

    >>> auc_and_lift(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))[0]
    0.75
    """
    keep = ~np.isnan(risk)
    r, yy = risk[keep], y[keep].astype(np.float64)
    n = r.size
    n1 = float(yy.sum())
    if n == 0 or n1 == 0:
        return float("nan"), float("nan")
    order = np.argsort(r, kind="stable")
    rs, ys = r[order], yy[order]
    # tie groups of the sorted risks: [start, end) each
    starts = np.flatnonzero(np.r_[True, rs[1:] != rs[:-1]])
    ends = np.r_[starts[1:], n]
    pos_per_group = np.add.reduceat(ys, starts)
    n0 = n - n1
    if n0 == 0:
        auc = float("nan")
    else:
        mean_rank = (starts + ends + 1) / 2.0          # 1-based average rank of the group
        auc = float(((pos_per_group * mean_rank).sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))
    # lift: the k riskiest rows, ties at the edge sharing the remaining places pro rata
    k = max(1, int(round(fraction * n)))
    edge = rs[n - k]
    lo = int(np.searchsorted(rs, edge, side="left"))
    hi = int(np.searchsorted(rs, edge, side="right"))
    cum = np.r_[0.0, np.cumsum(ys)]
    ev_above = cum[n] - cum[hi]
    ev_tied = cum[hi] - cum[lo]
    n_above = n - hi
    events = ev_above + ev_tied * (k - n_above) / (hi - lo)
    lift = float((events / k) / (n1 / n))
    return auc, lift


# ---------------------------------------------------------------- model edits
def edit_weights(model: ScoreModel, variant: str | None = None, metrics: Mapping[str, float] | None = None,
                 categories: Mapping[str, float] | None = None) -> ScoreModel:
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
    variants = [replace(v, weights={**v.weights, **metrics}, categories={**v.categories, **categories})
                if v.name == variant else v for v in model.variants]
    new = replace(model, variants=variants)
    new.validate()
    return new


def move_cutoff(model: ScoreModel, index: int, value: float) -> ScoreModel:
    """A new model whose boundary between band ``index`` and ``index + 1`` sits at ``value``."""
    bands = list(model.bands)
    lo, hi = bands[index].lower, bands[index + 1].upper
    if not lo < value < hi:
        raise ModelError(f"the cut-off between {bands[index].name} and {bands[index + 1].name} must lie "
                         f"between {lo:g} and {hi:g}; got {value:g}")
    bands[index] = replace(bands[index], upper=float(value))
    bands[index + 1] = replace(bands[index + 1], lower=float(value))
    return model.with_bands(bands)


def parse_breakpoints(text: str, method: str) -> dict[str, Any]:
    """Parse the text of a thresholds (``x:score, ...``) or steps (``edge, edge, ...``) control.

    >>> parse_breakpoints("0:0, 2:40, 6:100", "thresholds")
    {'points': [[0.0, 0.0], [2.0, 40.0], [6.0, 100.0]]}
    >>> parse_breakpoints("1, 2", "steps")
    {'edges': [1.0, 2.0]}
    """
    parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    try:
        if method == "thresholds":
            points = [[float(a), float(b)] for a, b in (p.split(":") for p in parts)]
            if len(points) < 2:
                raise ValueError
            return {"points": points}
        return {"edges": [float(p) for p in parts]}
    except ValueError:
        shape = "raw:score pairs such as 0:0, 2:40, 6:100" if method == "thresholds" else "numbers such as 1, 2"
        raise ModelError(f"could not read {text!r}: write {shape}") from None


def format_breakpoints(params: Mapping[str, Any], method: str) -> str:
    """The text shown in a thresholds/steps control (inverse of :func:`parse_breakpoints`)."""
    if method == "thresholds":
        return ", ".join(f"{x:g}:{s:g}" for x, s in params.get("points", []))
    return ", ".join(f"{x:g}" for x in params.get("edges", []))


def hs_model() -> ScoreModel:
    """The bundled sample score model (for examples)."""
    from healthscore.model import load_model

    return load_model(SAMPLE_MODEL)


def _calibration_key(model: ScoreModel, metric: str) -> str:
    """What a metric's sub-score depends on (base and variant parameters, disabled flags)."""
    m = model.metric(metric)
    per_variant = [(v.name, v.params.get(metric), metric in v.disabled) for v in model.variants]
    return json.dumps([m.column, m.method, m.direction, m.params, m.na_policy, per_variant], sort_keys=True,
                      default=str)


# ---------------------------------------------------------------- evidence (no widgets)
class TuningSession:
    """Everything the tuner shows, computed without any widget: build once, ``evaluate(model)`` often.

    Rows: the *book* is every account's snapshot on the last ``as_of`` of the data (distribution,
    band counts and ARR, accounts that change band, contributions); the *holdout* is the
    labelled snapshots from the time split on (AUC, lift, rate per band). The fit uses the rows
    before the split, so the holdout figures stay honest.
    """

    def __init__(self, snapshots: pl.DataFrame, events: pl.DataFrame, model: ScoreModel,
                 outcome: str = "churned", horizon: str = "90d", holdout: date | str | None = None) -> None:
        from healthscore.scoring import calibrate

        if isinstance(snapshots, pl.LazyFrame):
            snapshots = snapshots.collect()
        if isinstance(events, pl.LazyFrame):
            events = events.collect()
        self.snapshots = snapshots.sort(KEYS)
        self.events = events
        self.start = model
        self.sub = calibrate(self.snapshots, model)  # sorted by keys, like self.snapshots
        self._calibrated = {m.name: _calibration_key(model, m.name) for m in model.metrics}
        last = self.sub["as_of"].max()
        book = self.sub.with_row_index("__row").filter(pl.col("as_of") == last).sort("account_id")
        self.book_rows = book["__row"].to_numpy().astype(np.intp)
        self.book = book.select(
            "account_id",
            *(c for c in ("company_name", "segment", "csm") if c in book.columns),
            (pl.col("arr").cast(pl.Float64).fill_null(0.0) if "arr" in book.columns else pl.lit(0.0)).alias("arr"))
        self.arr = self.book["arr"].to_numpy()
        self.outcome, self.horizon, self.holdout = outcome, horizon, holdout
        self.relabel(outcome, horizon, holdout)

    # ------------------------------------------------------------ labels
    def relabel(self, outcome: str, horizon: str, holdout: date | str | None = None) -> None:
        """Label the holdout for another outcome / horizon (the slow path: runs once per choice)."""
        from healthscore.evaluation import time_split
        from healthscore.fitting import label_outcomes

        labelled = label_outcomes(self.snapshots.select(*KEYS), self.events, outcome=outcome, horizon=horizon)
        _, test, split = time_split(labelled, horizon=horizon, split=holdout)
        index = self.sub.select(*KEYS).with_row_index("__row")
        test = test.select(*KEYS, outcome).join(index, on=list(KEYS), how="inner").sort(KEYS)
        self.outcome, self.horizon, self.holdout, self.split = outcome, horizon, holdout, split
        self.holdout_rows = test["__row"].to_numpy().astype(np.intp)
        self.y = test[outcome].cast(pl.Int8).to_numpy().astype(np.float64)
        self.low_is_risk = outcome != "expanded"
        # score only the rows shown: the book first, then the holdout
        self.rows = np.concatenate([self.book_rows, self.holdout_rows])
        self.scorer = FastScorer(self.sub[self.rows], self.start)
        self.recalibrate(self.start)   # the starting figures use the starting calibration
        self.start_eval = self._evaluate(self.start)

    # ------------------------------------------------------------ calibration changes
    def recalibrate(self, model: ScoreModel) -> list[str]:
        """Recompute the sub-scores of metrics whose calibration changed; returns their names."""
        from healthscore.scoring import calibrate

        changed = [m.name for m in model.metrics if self._calibrated.get(m.name) != _calibration_key(model, m.name)]
        if not changed:
            return []
        only = replace(model, metrics=[model.metric(n) for n in changed])
        cols = [m.column for m in only.metrics] + [c for m in only.metrics for k, c in m.params.items()
                                                     if k.endswith("_column")]
        needed = list(dict.fromkeys([*KEYS, *cols, *(c for v in model.variants for c in v.filter)]))
        sub = calibrate(self.snapshots.select(needed), only)
        for n in changed:
            self.sub = self.sub.with_columns(sub[f"sub_{n}"])
            self.scorer.set_column(n, sub[f"sub_{n}"].to_numpy()[self.rows])
            self._calibrated[n] = _calibration_key(model, n)
        return changed

    # ------------------------------------------------------------ the fast path
    def _evaluate(self, model: ScoreModel) -> dict[str, Any]:
        score, drv = self.scorer.score(model, drivers=True)
        nb = len(self.book_rows)
        book_score, hold_score, drv = score[:nb], score[nb:], drv[:nb]
        k = len(model.bands)
        book_band = band_index(book_score, model.bands)
        hold_band = band_index(hold_score, model.bands)
        scored = book_band >= 0
        risk = -hold_score if self.low_is_risk else hold_score
        auc, lift = auc_and_lift(self.y, risk)
        hold_ok = hold_band >= 0
        n_band = np.bincount(hold_band[hold_ok], minlength=k)
        ev_band = np.bincount(hold_band[hold_ok], weights=self.y[hold_ok], minlength=k)
        bins = np.minimum((book_score[scored] // (100 / N_BINS)).astype(np.intp), N_BINS - 1)
        hist = np.bincount(np.clip(bins, 0, N_BINS - 1) * k + book_band[scored], minlength=N_BINS * k)
        contrib = np.nanmean(drv[scored], axis=0) if scored.any() else np.zeros(len(self.scorer.metrics))
        return {
            "score": book_score, "band": book_band,
            "band_counts": np.bincount(book_band[scored], minlength=k),
            "band_arr": np.bincount(book_band[scored], weights=self.arr[scored], minlength=k),
            "auc": auc, "lift": lift,
            "rate": np.where(n_band > 0, ev_band / np.maximum(n_band, 1), np.nan),
            "holdout_events": int(self.y[hold_ok].sum()),
            "holdout_rows": int(hold_ok.sum()),
            "contrib": contrib, "hist": hist,
        }

    def evaluate(self, model: ScoreModel) -> dict[str, Any]:
        """Every figure the tuner shows for ``model`` next to the starting model's (the ``state`` dict)."""
        self.recalibrate(model)
        now, start = self._evaluate(model), self.start_eval
        names = [b.name for b in model.bands]
        start_names = [b.name for b in self.start.bands]
        changed = np.flatnonzero(now["band"] != start["band"])
        changed = changed[np.argsort(-self.arr[changed], kind="stable")]

        def label(idx: int, bands: list[str]) -> str | None:
            return bands[idx] if idx >= 0 else None

        table = self.book[changed[:CHANGED_ROWS]].with_columns(
            pl.Series("old_band", [label(i, start_names) for i in start["band"][changed[:CHANGED_ROWS]]],
                      dtype=pl.String),
            pl.Series("new_band", [label(i, names) for i in now["band"][changed[:CHANGED_ROWS]]], dtype=pl.String),
            pl.Series("old_score", start["score"][changed[:CHANGED_ROWS]]),
            pl.Series("new_score", now["score"][changed[:CHANGED_ROWS]]),
        )
        metrics = self.scorer.metrics
        return {
            "model": model, "hash": model.hash, "variant": None,
            "outcome": self.outcome, "horizon": self.horizon, "split": self.split,
            "accounts": len(self.book_rows), "scored_accounts": int(now["band_counts"].sum()),
            "band_counts": dict(zip(names, now["band_counts"].astype(int).tolist())),
            "band_arr": dict(zip(names, now["band_arr"].tolist())),
            "band_counts_start": dict(zip(start_names, start["band_counts"].astype(int).tolist())),
            "band_arr_start": dict(zip(start_names, start["band_arr"].tolist())),
            "holdout_rows": now["holdout_rows"], "holdout_events": now["holdout_events"],
            "auc": now["auc"], "auc_start": start["auc"], "lift": now["lift"], "lift_start": start["lift"],
            "churn_by_band": dict(zip(names, now["rate"].tolist())),
            "churn_by_band_start": dict(zip(start_names, start["rate"].tolist())),
            "contributions": dict(zip(metrics, now["contrib"].tolist())),
            "contributions_start": dict(zip(metrics, start["contrib"].tolist())),
            "n_changed": int(changed.size), "arr_changed": float(self.arr[changed].sum()),
            "changed": table,
            "histogram": now["hist"].astype(int).tolist(),
        }

    def book_scores(self, model: ScoreModel) -> pl.DataFrame:
        """``account_id``, ``score``, ``band`` of the book under ``model`` (fast path; for checks and export)."""
        self.recalibrate(model)
        score, _ = self.scorer.score(model)
        score = score[:len(self.book_rows)]
        idx = band_index(score, model.bands)
        names = [b.name for b in model.bands]
        return self.book.select("account_id").with_columns(
            pl.Series("score", score).fill_nan(None),
            pl.Series("band", [names[i] if i >= 0 else None for i in idx], dtype=pl.String))
