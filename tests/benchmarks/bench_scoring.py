"""Scoring speed and memory: 1,000,000 account-snapshots x 20 metrics.

Mixed calibration methods (thresholds, steps, boolean, categorical, log_z, percentile, trend),
N/A values, five categories, bands, drivers and driver changes. Compared side by side with

* a straightforward pandas implementation of the same rules, written the way an analyst would
  (one calibration function applied per column, groupby for the per-account history); its
  scores are checked against ours to 1e-9 first, so the comparison is honest;
* the floor: numpy weighted sums over an already calibrated matrix (renormalised weights,
  score, coverage and the driver matrix), against our ``combine`` on the same sub-scores.

Peak memory of a full ``score`` run is measured in a fresh subprocess (``ru_maxrss``).
"""

from __future__ import annotations

import datetime as dt
import json
import resource
import statistics
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
from healthscore.core import scoring
from healthscore.core.calibration import fit_calibration
from healthscore.spec.model import DEFAULT_BANDS, Band, Category, Metric, ScoreModel

from tests.benchmarks import Result, timeit

N_ACCOUNTS, N_WEEKS = 20_000, 50
ROOT = Path(__file__).resolve().parents[2]

# name -> (category, method, direction, params, weight, share of N/A)
SPEC: dict[str, tuple[str, str, str, dict, float, float]] = {
    "m00": (
        "usage",
        "thresholds",
        "higher_is_better",
        {"points": [[0.1, 0], [0.3, 40], [0.6, 80], [0.9, 100]]},
        3,
        0.02,
    ),
    "m01": ("usage", "thresholds", "higher_is_better", {"points": [[0, 0], [2, 40], [4, 80], [6, 100]]}, 2, 0.02),
    "m02": ("usage", "thresholds", "higher_is_better", {"points": [[0.1, 0], [0.4, 60], [0.7, 100]]}, 2, 0.05),
    "m03": ("usage", "log_z", "higher_is_better", {"clip": 2.5}, 1, 0.40),
    "m04": ("usage", "percentile", "higher_is_better", {"n_quantiles": 101}, 1, 0.05),
    "m05": (
        "usage",
        "trend",
        "higher_is_better",
        {"window": 4, "min_base": 1, "points": [[-0.3, 0], [0, 60], [0.2, 100]]},
        1,
        0.02,
    ),
    "m06": ("support", "steps", "lower_is_better", {"edges": [1, 2], "scores": [100, 40, 0]}, 2, 0.0),
    "m07": ("support", "thresholds", "higher_is_better", {"points": [[2, 0], [3, 40], [4, 75], [5, 100]]}, 1, 0.6),
    "m08": ("support", "thresholds", "lower_is_better", {"points": [[0, 100], [2, 60], [5, 0]]}, 1, 0.0),
    "m09": ("relationship", "boolean", "higher_is_better", {"true_score": 100, "false_score": 30}, 2, 0.0),
    "m10": ("relationship", "boolean", "lower_is_better", {"true_score": 0, "false_score": 100}, 2, 0.0),
    "m11": (
        "relationship",
        "categorical",
        "higher_is_better",
        {"map": {"1": 0, "2": 25, "3": 50, "4": 75, "5": 100}},
        2,
        0.5,
    ),
    "m12": ("relationship", "steps", "higher_is_better", {"edges": [7, 9], "scores": [0, 60, 100]}, 1, 0.85),
    "m13": ("commercial", "thresholds", "lower_is_better", {"points": [[0, 100], [15, 70], [30, 30], [60, 0]]}, 1, 0.0),
    "m14": ("commercial", "thresholds", "higher_is_better", {"points": [[0.3, 0], [0.6, 50], [0.9, 100]]}, 1, 0.0),
    "m15": ("commercial", "percentile", "higher_is_better", {"n_quantiles": 21}, 1, 0.1),
    "m16": ("engagement", "thresholds", "higher_is_better", {"points": [[0, 0], [0.1, 60], [0.25, 100]]}, 1, 0.1),
    "m17": ("engagement", "steps", "higher_is_better", {"edges": [1, 3], "scores": [40, 80, 100]}, 1, 0.3),
    "m18": ("engagement", "thresholds", "higher_is_better", {"points": [[0, 30], [1, 70], [3, 100]]}, 1, 0.1),
    "m19": ("engagement", "log_z", "lower_is_better", {"clip": 3.0}, 1, 0.2),
}
CATEGORIES = {"usage": 30, "support": 15, "relationship": 25, "commercial": 15, "engagement": 15}
MIN_COVERAGE = 0.78  # leaves about a tenth of the rows without a score


def make_snapshots(n_accounts: int = N_ACCOUNTS, n_weeks: int = N_WEEKS, seed: int = 5) -> pl.DataFrame:
    """Synthetic snapshots sorted by account and week, with the raw columns of SPEC."""
    rng = np.random.default_rng(seed)
    n = n_accounts * n_weeks
    base = {
        "m00": rng.beta(3, 4, n) * 1.2,
        "m01": rng.integers(0, 8, n).astype(float),
        "m02": rng.beta(2, 2, n),
        "m03": rng.lognormal(6, 1.7, n),
        "m04": rng.gamma(2, 30, n),
        "m05": rng.gamma(3, 10, n),
        "m06": rng.poisson(0.2, n).astype(float),
        "m07": rng.uniform(1, 5, n),
        "m08": rng.poisson(0.8, n).astype(float),
        "m09": rng.integers(0, 2, n).astype(float),
        "m10": (rng.random(n) < 0.05).astype(float),
        "m11": rng.integers(1, 6, n).astype(float),
        "m12": rng.integers(0, 11, n).astype(float),
        "m13": np.where(rng.random(n) < 0.8, 0, rng.exponential(20, n)),
        "m14": rng.uniform(0.2, 1.1, n),
        "m15": rng.lognormal(10, 1, n),
        "m16": rng.beta(2, 15, n),
        "m17": rng.poisson(0.8, n).astype(float),
        "m18": rng.poisson(1, n).astype(float),
        "m19": rng.lognormal(1, 1, n),
    }
    cols = {name: np.where(rng.random(n) < SPEC[name][5], np.nan, values) for name, values in base.items()}
    start = dt.date(2025, 1, 6)
    frame = pl.DataFrame(
        {
            "account_id": np.repeat([f"A{i:06d}" for i in range(n_accounts)], n_weeks),
            "as_of": np.tile(
                np.array([start + dt.timedelta(weeks=w) for w in range(n_weeks)], dtype="datetime64[D]"), n_accounts
            ),
            "segment": np.repeat(rng.choice(["smb", "mid_market", "enterprise"], n_accounts), n_weeks),
            **cols,
        }
    )
    return frame.with_columns(pl.col("as_of").cast(pl.Date), *[pl.col(c).fill_nan(None) for c in cols])


def make_model(snapshots: pl.DataFrame) -> ScoreModel:
    """The benchmark model, with its data-derived calibrations fitted on ``snapshots``."""
    metrics = [
        Metric(name, name, cat, direction, method, dict(params), float(weight))
        for name, (cat, method, direction, params, weight, _) in SPEC.items()
    ]
    model = ScoreModel(
        "bench",
        "1",
        metrics,
        {c: Category(c, float(w)) for c, w in CATEGORIES.items()},
        [Band(*b) for b in DEFAULT_BANDS],
        min_coverage=MIN_COVERAGE,
    )
    return fit_calibration(model, snapshots)


# ---------------------------------------------------------------- the pandas baseline
def _interp(x: pd.Series, points: list) -> pd.Series:
    xs, ys = [float(p[0]) for p in points], [float(p[1]) for p in points]
    return pd.Series(np.where(x.isna(), np.nan, np.interp(x.fillna(0), xs, ys)), index=x.index)


def _cal_thresholds(x, p, direction):
    return _interp(x, p["points"])


def _cal_steps(x, p, direction):
    idx = np.searchsorted(np.asarray(p["edges"], float), x.fillna(0).to_numpy(), side="right")
    return pd.Series(np.where(x.isna(), np.nan, np.asarray(p["scores"], float)[idx]), index=x.index)


def _cal_boolean(x, p, direction):
    return x.map({1.0: float(p["true_score"]), 0.0: float(p["false_score"])})


def _cal_categorical(x, p, direction):
    return x.map({float(k): float(v) for k, v in p["map"].items()})


def _flip(s, direction):
    return 100 - s if direction == "lower_is_better" else s


def _cal_log_z(x, p, direction):
    z = (np.log1p(x) - p["center"]) / p["scale"]
    clip = p["clip"]
    return _flip((z.clip(-clip, clip) + clip) / (2 * clip) * 100, direction)


def _cal_percentile(x, p, direction):
    q = np.asarray(p["quantiles"], float)
    pct = np.linspace(0, 100, len(q))
    xs = np.unique(q)
    ys = np.array([(pct[q == v].min() + pct[q == v].max()) / 2 for v in xs])
    out = pd.Series(np.interp(x.fillna(0), xs, ys), index=x.index)
    out = out.where(x >= xs[0], 0.0).where(x <= xs[-1], 100.0).where(x.notna())
    return _flip(out, direction)


def _cal_trend(x, p, direction, accounts):
    w = int(p["window"])
    grouped = x.groupby(accounts)
    mean = grouped.transform(lambda s: s.rolling(w, min_periods=1).mean())
    before = mean.groupby(accounts).shift(w)
    change = (mean - before) / np.maximum(before.abs(), p["min_base"])
    seen = grouped.cumcount() + 1
    change = change.where((seen >= 2 * w) & x.notna())
    return _interp(change, p["points"])


CALIBRATORS = {
    "thresholds": _cal_thresholds,
    "steps": _cal_steps,
    "boolean": _cal_boolean,
    "categorical": _cal_categorical,
    "log_z": _cal_log_z,
    "percentile": _cal_percentile,
}


def pandas_score(df: pd.DataFrame, model: ScoreModel) -> pd.DataFrame:
    """The same rules as ``healthscore.score`` (no variants, no overrides), in plain pandas."""
    df = df.sort_values(["account_id", "as_of"]).reset_index(drop=True)
    out = df[["account_id", "as_of", "segment"]].copy()
    for m in model.metrics:
        if m.method == "trend":
            out[f"sub_{m.name}"] = _cal_trend(df[m.column], m.params, m.direction, df["account_id"])
        else:
            out[f"sub_{m.name}"] = CALIBRATORS[m.method](df[m.column], m.params, m.direction).clip(0, 100)
    cats = {c: [m for m in model.metrics if m.category == c] for c in model.categories}
    total_w = sum(cat.weight for cat in model.categories.values())
    present_cat_w = pd.Series(0.0, index=out.index)
    coverage = pd.Series(0.0, index=out.index)
    cat_present_w = {}
    for c, members in cats.items():
        cat_w_sum = sum(m.weight for m in members)
        pw = sum(out[f"sub_{m.name}"].notna() * m.weight for m in members)
        cat_present_w[c] = pw
        out[f"cat_{c}"] = sum(out[f"sub_{m.name}"].fillna(0) * m.weight for m in members) / pw.where(pw > 0)
        present_cat_w += (pw > 0) * model.categories[c].weight
        coverage += pw / cat_w_sum * model.categories[c].weight / total_w
    out["coverage"] = coverage.clip(0, 1)
    ok = (present_cat_w > 0) & (out["coverage"] >= model.min_coverage - 1e-12)
    for c, members in cats.items():
        pw = cat_present_w[c]
        for m in members:
            eff = (
                model.categories[c].weight
                / present_cat_w.where(present_cat_w > 0)
                * (out[f"sub_{m.name}"].notna() * m.weight)
                / pw.where(pw > 0)
            ).fillna(0)
            out[f"drv_{m.name}"] = (eff * out[f"sub_{m.name}"].fillna(0)).where(ok)
    out["score"] = out[[f"drv_{m.name}" for m in model.metrics]].sum(axis=1).clip(0, 100).where(ok)
    out["band"] = pd.cut(
        out["score"], [b.lower for b in model.bands] + [np.inf], labels=[b.name for b in model.bands], right=False
    ).astype(object)
    grouped = out.groupby("account_id")
    out["score_change_1"] = out["score"] - grouped["score"].shift(1)
    out["score_change_4"] = out["score"] - grouped["score"].shift(4)
    for m in model.metrics:
        out[f"drvchg_{m.name}"] = out[f"drv_{m.name}"] - grouped[f"drv_{m.name}"].shift(1)
    return out


# ---------------------------------------------------------------- the numpy floor
def numpy_floor(
    sub: np.ndarray, metric_w: np.ndarray, cat_of: np.ndarray, cat_w: np.ndarray, min_coverage: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Renormalised weighted sum over a calibrated matrix (NaN = N/A): score, coverage, drivers."""
    present = ~np.isnan(sub)
    onehot = np.eye(len(cat_w))[cat_of]  # metrics x categories
    pw = present * metric_w  # present weight per metric
    cw = pw @ onehot  # present weight per category
    cat_present = cw > 0
    tot = cat_present @ cat_w
    nominal = metric_w / (metric_w @ onehot)[cat_of] * cat_w[cat_of] / cat_w.sum()
    coverage = present @ nominal
    with np.errstate(invalid="ignore", divide="ignore"):
        eff = pw / cw[:, cat_of] * (cat_w[cat_of] / tot[:, None])
    drivers = np.nan_to_num(eff) * np.nan_to_num(sub)
    score = drivers.sum(axis=1)
    score[(tot == 0) | (coverage < min_coverage - 1e-12)] = np.nan
    return score, coverage, drivers


# ---------------------------------------------------------------- benchmarks
def _peak_memory_mb() -> float:
    """Peak resident memory of a fresh process that builds the data, fits the model and scores it.

    Read from /proc (VmHWM, which starts afresh at exec) rather than ru_maxrss, which Linux
    carries over from the parent that started the process.
    """
    code = textwrap.dedent("""
        import json, re
        from tests.benchmarks.bench_scoring import make_snapshots, make_model
        from healthscore.core import scoring
        snaps = make_snapshots()
        model = make_model(snaps)
        out = scoring.score(snaps, model)
        status = open("/proc/self/status").read()
        print(json.dumps({"rows": out.height, "hwm_kb": int(re.search(r"VmHWM:\\s+(\\d+)", status).group(1))}))
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["hwm_kb"] / 1024


def _cpu_seconds(fn: Callable[[], object], repeat: int) -> float:
    """Median CPU time (user + system, all threads) of ``fn``: steadier than wall time on a busy machine."""
    times = []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_SELF)
        fn()
        after = resource.getrusage(resource.RUSAGE_SELF)
        times.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return statistics.median(times)


def _check_same(ours: pl.DataFrame, theirs: pd.DataFrame, model: ScoreModel, sample: int = 50_000) -> float:
    """Largest absolute difference between our and the pandas scores on a sample of rows."""
    rows = np.random.default_rng(0).choice(ours.height, size=min(sample, ours.height), replace=False)
    cols = (
        ["score", "coverage", "score_change_1", "score_change_4"]
        + [f"{p}_{m.name}" for m in model.metrics for p in ("sub", "drv", "drvchg")]
        + [f"cat_{c}" for c in model.categories]
    )
    worst = 0.0
    for col in cols:
        a = ours[col].to_numpy()[rows].astype(float)
        b = theirs[col].to_numpy()[rows].astype(float)
        if not np.array_equal(np.isnan(a), np.isnan(b)):
            raise AssertionError(f"pandas baseline disagrees on which rows have {col}")
        if np.any(~np.isnan(a)):
            worst = max(worst, float(np.nanmax(np.abs(a - b))))
    bands_equal = (ours["band"].to_numpy()[rows] == theirs["band"].to_numpy()[rows]) | (
        ours["band"].is_null().to_numpy()[rows] & theirs["band"].isna().to_numpy()[rows]
    )
    if not bands_equal.all():
        raise AssertionError("pandas baseline disagrees on bands")
    if worst > 1e-9:
        raise AssertionError(f"pandas baseline differs by {worst:g} (> 1e-9)")
    return worst


def bench_scoring() -> list[Result]:
    peak = _peak_memory_mb()  # first, while this process is still small
    snaps = make_snapshots()
    model = make_model(snaps)
    n = snaps.height
    detail = {"rows": n, "metrics": len(model.metrics), "accounts": N_ACCOUNTS, "weeks": N_WEEKS}

    ours = scoring.score(snaps, model)
    frame_pd = snaps.to_pandas()
    theirs = pandas_score(frame_pd, model)
    worst = _check_same(ours, theirs, model)

    t_score = timeit(lambda: scoring.score(snaps, model), repeat=3, warmup=1)
    t_pandas = timeit(lambda: pandas_score(frame_pd, model), repeat=1, warmup=0)
    c_score = _cpu_seconds(lambda: scoring.score(snaps, model), repeat=3)
    c_pandas = _cpu_seconds(lambda: pandas_score(frame_pd, model), repeat=1)

    subs = scoring.calibrate(snaps, model)
    t_combine = timeit(lambda: scoring.combine(subs, model), repeat=3, warmup=1)
    names = [m.name for m in model.metrics]
    matrix = subs.select([f"sub_{m}" for m in names]).to_numpy().astype(float)
    cat_names = list(model.categories)
    metric_w = np.array([m.weight for m in model.metrics])
    cat_of = np.array([cat_names.index(m.category) for m in model.metrics])
    cat_w = np.array([model.categories[c].weight for c in cat_names])
    floor_score, _, _ = numpy_floor(matrix, metric_w, cat_of, cat_w, model.min_coverage)
    ours_sorted = scoring.combine(subs, model)["score"].to_numpy().astype(float)
    if not np.allclose(floor_score, ours_sorted, atol=1e-9, equal_nan=True):
        raise AssertionError("numpy floor disagrees with combine()")
    floor = lambda: numpy_floor(matrix, metric_w, cat_of, cat_w, model.min_coverage)  # noqa: E731
    t_floor = timeit(floor, repeat=3, warmup=1)
    c_combine = _cpu_seconds(lambda: scoring.combine(subs, model), repeat=3)
    c_floor = _cpu_seconds(floor, repeat=3)

    return [
        Result(
            "scoring",
            "score() vs pandas, 1M x 20",
            t_score,
            t_pandas,
            t_pandas / t_score,
            ">= 10x faster",
            t_pandas / t_score >= 10,
            detail={**detail, "max_abs_diff": worst},
        ),
        Result(
            "scoring",
            "combine() vs numpy floor",
            t_combine,
            t_floor,
            t_combine / t_floor,
            "<= 5x the floor",
            t_combine / t_floor <= 5,
            detail=detail,
        ),
        Result(
            "scoring",
            "score() vs pandas, CPU time",
            c_score,
            c_pandas,
            c_pandas / c_score,
            ">= 10x less CPU",
            c_pandas / c_score >= 10,
            detail=detail,
        ),
        Result(
            "scoring",
            "combine() vs numpy floor, CPU time",
            c_combine,
            c_floor,
            c_combine / c_floor,
            "<= 5x the floor",
            c_combine / c_floor <= 5,
            detail=detail,
        ),
        Result(
            "scoring",
            "score() vs numpy floor (info)",
            t_score,
            t_floor,
            t_score / t_floor,
            "(calibration included)",
            None,
            detail=detail,
        ),
        Result(
            "scoring",
            "peak memory of score(), 1M x 20",
            peak,
            4096.0,
            peak / 4096.0,
            "< 4 GB",
            peak < 4096,
            unit="MB",
            detail=detail,
        ),
    ]
