"""Backtesting: predictive quality of a readable weighted score, and the cost of the metrics.

Quality: on the sample portfolio's time-split holdout, the AUC of the fitted weighted score
(``fit_weights(...).suggested_model()`` fitted on the training rows only) against scikit-learn's
HistGradientBoostingClassifier trained on the same raw signals (nulls handled natively) on the
same rows. Goal: at least 0.98 of the gradient-boosting AUC while staying a weighted score a CS
team can read.

Speed: the tuner recomputes the AUC and its clustered interval on every slider move; that
should cost about what scikit-learn's bare ``roc_auc_score`` costs.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from healthscore.io.snapshots import CONTRACT_SIGNALS

from tests.benchmarks import Result, timeit

HORIZON = "90d"
RAW_SIGNALS = CONTRACT_SIGNALS  # the raw signals of the snapshot contract


def _fitted_model(snapshots: pl.DataFrame, events: pl.DataFrame, model, split) -> tuple[object, str]:
    """The suggested model of a fit on rows before the split, or the hand-set one if fitting is missing."""
    try:
        from healthscore.analysis.fitting import fit_weights
    except ImportError:
        return model, "hand-set (fit_weights not available)"
    train_snaps = snapshots.filter(pl.col("as_of") < split)
    train_events = events.filter(pl.col("date") < split)
    fit = fit_weights(train_snaps, train_events, model, outcome="churned", horizon=HORIZON)
    return fit.suggested_model(), "fitted on training rows"


def bench_holdout_auc_vs_gradient_boosting() -> list[Result]:
    import healthscore as hs
    from healthscore.analysis import evaluation as E
    from healthscore.datasets.portfolio import load_sample, sample_dir
    from sklearn.ensemble import HistGradientBoostingClassifier

    sample = load_sample()
    snaps, events = sample.snapshots, sample.events
    hand = hs.load_model(sample_dir() / "model.toml")
    labelled = hs.label_outcomes(snaps, events, outcome="churned", horizon=HORIZON)
    train, test, split = E.time_split(labelled, horizon=HORIZON)
    fitted, how = _fitted_model(snaps, events, hand, split)

    keys = ["account_id", "as_of"]
    scores = {
        name: hs.score(snaps, m).select(*keys, pl.col("score").alias(f"score_{name}"))
        for name, m in [("fitted", fitted), ("hand", hand)]
    }
    rows = test.select(*keys, "churned", *[c for c in RAW_SIGNALS if c in test.columns])
    for s in scores.values():
        rows = rows.join(s, on=keys, how="left")
    signals = [c for c in RAW_SIGNALS if c in test.columns]
    hgb = HistGradientBoostingClassifier(random_state=0).fit(
        train.select(signals).to_numpy().astype(float), train["churned"].to_numpy()
    )
    rows = rows.sort(keys).with_columns(
        p_hgb=pl.Series(hgb.predict_proba(rows.sort(keys).select(signals).to_numpy().astype(float))[:, 1])
    )

    def head_to_head(name: str) -> tuple[float, float, dict]:
        # score and baseline on exactly the same rows: those the score covers (null = below coverage)
        r = rows.filter(pl.col(f"score_{name}").is_not_null())
        y = r["churned"].cast(pl.Float64).to_numpy()
        return (
            E.auc(y, E.risk_of(r[f"score_{name}"], "churned")),
            E.auc(y, r["p_hgb"]),
            {"compared_rows": r.height, "scored_share": r.height / rows.height, "events": int(y.sum())},
        )

    auc_fit, hgb_fit, d_fit = head_to_head("fitted")
    auc_hand, hgb_hand, d_hand = head_to_head("hand")
    common = {"split": str(split), "train_rows": train.height, "test_rows": rows.height, "signals": len(signals)}
    return [
        Result(
            "holdout AUC, sample portfolio",
            "fitted score vs HistGradientBoosting",
            auc_fit,
            hgb_fit,
            auc_fit / hgb_fit,
            "ours/HGB >= 0.98",
            auc_fit / hgb_fit >= 0.98,
            "",
            {**common, **d_fit, "fitted_model": how},
        ),
        Result(
            "holdout AUC, sample portfolio",
            "hand-set score vs HistGradientBoosting",
            auc_hand,
            hgb_hand,
            auc_hand / hgb_hand,
            "context (no goal)",
            None,
            "",
            {**common, **d_hand},
        ),
    ]


def bench_auc_interval_speed() -> list[Result]:
    from healthscore.analysis import evaluation as E
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    n = 100_000  # the tuner's book size, one row per account
    x = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(3.0 - x))).astype(float)
    groups = np.arange(n) // 4
    ours = timeit(lambda: E.auc_ci(y, x, groups=groups), repeat=5)
    base = timeit(lambda: roc_auc_score(y, x), repeat=5)
    return [
        Result(
            "AUC + clustered DeLong CI, 100k rows",
            "time vs sklearn roc_auc_score (sklearn/ours)",
            ours,
            base,
            base / ours,
            "sklearn/ours >= 1 (no slower)",
            base / ours >= 1.0,
            "s",
        )
    ]
