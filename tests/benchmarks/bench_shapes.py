"""Learned shapes at scale: fit_shapes against scikit-learn's HistGradientBoostingClassifier.

Both learn non-linear curves from the same labelled rows (20 metrics with saturating, threshold
and U-shaped effects, repeated snapshots per account). fit_shapes also cross-validates its
penalty, tests every curve's shape and computes clustered standard errors, and its result is an
additive score model; the goal is that all of it costs at most 3 times the boosting fit.

``HEALTHSCORE_BENCH_ROWS`` sets the size: the default (200,000 rows) keeps ``make bench`` short;
the goal is stated for ``HEALTHSCORE_BENCH_ROWS=1000000``. Both sides run on one thread and each
is fitted once (a warm-up would double a run of minutes). The ratio compares CPU time, which a
machine shared with other jobs does not inflate; wall times and the load average are in the
detail.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

from tests.benchmarks import Result

N_ROWS = int(os.environ.get("HEALTHSCORE_BENCH_ROWS", "200000"))
N_FEATURES = 20
WEEKS = 20


def _data(seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n_acc = N_ROWS // WEEKS
    acc = np.repeat(np.arange(n_acc), WEEKS)
    week = np.tile(np.arange(WEEKS), n_acc)
    X = rng.normal(size=(N_ROWS, N_FEATURES)) + 0.5 * rng.normal(size=(n_acc, N_FEATURES))[acc]
    shapes = [lambda x: 0.6 * np.exp(-x), lambda x: 0.5 * (x > 0.5), lambda x: 0.3 * x**2, lambda x: -0.3 * x]
    eta = -3.0 + sum(shapes[j % 4](X[:, j]) * (1.0 if j < 12 else 0.0) for j in range(N_FEATURES))
    y = rng.random(N_ROWS) < 1 / (1 + np.exp(-eta))
    X[rng.random(X.shape) < 0.02] = np.nan  # a few values not measured
    as_of = np.datetime64("2025-01-06") + 7 * week.astype("timedelta64[D]")
    return pl.DataFrame(
        {
            "account_id": acc,
            "as_of": as_of.astype("datetime64[D]"),
            **{f"f{j:02d}": X[:, j] for j in range(N_FEATURES)},
            "churned": y,
        }
    ).with_columns(pl.col("as_of").cast(pl.Date))


def _model():
    from healthscore.spec.model import DEFAULT_BANDS, Band, Category, Metric, ScoreModel

    metrics = [
        Metric(f"f{j:02d}", f"f{j:02d}", "all", "higher_is_better", "thresholds", {"points": [[-1, 0], [1, 100]]})
        for j in range(N_FEATURES)
    ]
    return ScoreModel("bench", "1", metrics, {"all": Category("all")}, [Band(*b[:3]) for b in DEFAULT_BANDS])


def bench_fit_shapes_vs_hist_gradient_boosting() -> list[Result]:
    # imported here, so that discovering the benchmarks stays light
    from healthscore.analysis.evaluation import auc
    from healthscore.analysis.shapes import fit_shapes
    from healthscore.core.scoring import score
    from sklearn.ensemble import HistGradientBoostingClassifier

    # one BLAS/OpenMP thread on both sides (the machine is shared, see bench_fitting); the limit
    # reaches only the libraries loaded by now, hence after the imports: a boosting library
    # loaded later would run its own OpenMP threads against the other jobs on the machine
    with threadpool_limits(limits=1):
        return _shapes_vs_hgb(fit_shapes, HistGradientBoostingClassifier, score, auc)


def _shapes_vs_hgb(fit_shapes: Any, HistGradientBoostingClassifier: Any, score: Any, auc: Any) -> list[Result]:
    frame = _data()
    names = [f"f{j:02d}" for j in range(N_FEATURES)]
    X, y = frame.select(names).to_numpy(), frame["churned"].to_numpy()
    model = _model()
    load_before = os.getloadavg()[0]
    fit, ours_cpu, ours_wall = _timed(lambda: fit_shapes(frame, None, model, horizon="7d"))
    hgb, base_cpu, base_wall = _timed(lambda: HistGradientBoostingClassifier(random_state=0).fit(X, y))
    ratio = ours_cpu / base_cpu
    s = score(frame.drop("churned"), fit.model)["score"].to_numpy()
    detail = {
        "rows": N_ROWS,
        "features": N_FEATURES,
        "clock": "CPU seconds of this process (one thread each)",
        "wall_ours": ours_wall,
        "wall_hgb": base_wall,
        "wall_ratio": ours_wall / base_wall,
        "load_average_1min": [load_before, os.getloadavg()[0]],
        "in_sample_auc_shapes": auc(y, -s),
        "in_sample_auc_hgb": auc(y, hgb.predict_proba(X)[:, 1]),
    }
    return [
        Result(
            f"fit_shapes {N_ROWS:,} x {N_FEATURES}",
            "CPU time vs HistGradientBoosting (ours/HGB)",
            ours_cpu,
            base_cpu,
            ratio,
            "ours/HGB <= 3",
            ratio <= 3.0,
            "s",
            detail,
        )
    ]


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``fn()``'s result, the CPU seconds this process spent in it and the wall seconds."""
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - cpu, time.perf_counter() - wall
