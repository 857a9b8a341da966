"""Learned shapes: against the known non-linear truth, against gradient boosting, and their flags."""

from __future__ import annotations

from dataclasses import replace

import healthscore as hs
import numpy as np
import polars as pl
import pytest
from healthscore.analysis.evaluation import ProbabilityMap, auc, time_split
from healthscore.core.calibration import calibrate_expr
from healthscore.datasets.portfolio import METRICS
from healthscore.spec.model import Category, Metric, ScoreModel
from scipy.stats import spearmanr
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

HORIZON = "7d"  # the truth is a weekly hazard of the current values: a 7-day label reads it directly


def _model() -> ScoreModel:
    """Every signal with a neutral starting calibration, plus the lifecycle stage as a level metric."""
    metrics = []
    for name, (cat, direction, *_rest) in METRICS.items():
        if name in ("exec_sponsor_engaged", "champion_left"):
            good = direction == "higher_is_better"
            metrics.append(
                Metric(
                    name,
                    name,
                    cat,
                    direction,
                    "boolean",
                    {"true_score": 100 if good else 0, "false_score": 0 if good else 100},
                )
            )
        else:
            pts = [[0, 0], [1, 100]] if direction == "higher_is_better" else [[0, 100], [1, 0]]
            metrics.append(Metric(name, name, cat, direction, "thresholds", {"points": pts}))
    metrics.append(
        Metric(
            "lifecycle_stage",
            "lifecycle_stage",
            "lifecycle",
            "higher_is_better",
            "categorical",
            {"map": {"onboarding": 50, "adoption": 50, "mature": 50, "renewal": 50}},
        )
    )
    cats = {c: Category(c) for c in {m.category for m in metrics}}
    bands = [hs.spec.model.Band(*b[:3]) for b in hs.spec.model.DEFAULT_BANDS]
    model = ScoreModel("nonlinear", "1.0.0", metrics, cats, bands)
    model.validate()
    return model


@pytest.fixture(scope="module")
def world():
    p = hs.make_portfolio(n_accounts=3000, n_weeks=104, seed=11, truth="nonlinear")
    labelled = hs.label_outcomes(p.snapshots, p.events, horizon=HORIZON)
    train, test, split = time_split(labelled, horizon=HORIZON, train_share=0.6)
    with threadpool_limits(limits=1, user_api="blas"):
        fit = hs.fit_shapes(p.snapshots.filter(pl.col("as_of") < split), p.events, _model(), horizon=HORIZON)
    return p, train, test, fit


def _raw(frame: pl.DataFrame) -> np.ndarray:
    stage = pl.col("lifecycle_stage").replace_strict(
        ["onboarding", "adoption", "mature", "renewal"], [0.0, 1.0, 2.0, 3.0]
    )
    return frame.select(*[pl.col(m).cast(pl.Float64) for m in METRICS], stage).to_numpy()


def test_learned_score_ranks_like_gradient_boosting(world) -> None:
    p, train, test, fit = world
    y_tr, y_te = train["churned"].to_numpy(), test["churned"].to_numpy()
    X_tr, X_te = _raw(train), _raw(test)
    with threadpool_limits(limits=1):
        hgb = HistGradientBoostingClassifier(random_state=0, categorical_features=[X_tr.shape[1] - 1])
        auc_hgb = auc(y_te, hgb.fit(X_tr, y_tr).predict_proba(X_te)[:, 1])
        # L2 logistic regression on the raw values: mean-filled, with a missing indicator per column
        mean = np.nanmean(X_tr, axis=0)
        sd = np.nanstd(X_tr, axis=0) + 1e-12
        keep = np.isnan(X_tr).any(axis=0)

        def design(X):
            miss = np.isnan(X)[:, keep].astype(float)
            return np.column_stack([(np.where(np.isnan(X), mean, X) - mean) / sd, miss])

        lr = LogisticRegression(C=1.0, max_iter=2000).fit(design(X_tr), y_tr)
        auc_lr = auc(y_te, lr.predict_proba(design(X_te))[:, 1])
    scored = hs.score(p.snapshots, fit.model).select("account_id", "as_of", "score")
    te = test.select("account_id", "as_of", "churned").join(scored, on=["account_id", "as_of"], how="left")
    auc_shapes = auc(te["churned"], -te["score"].to_numpy())
    print(f"AUC shapes {auc_shapes:.4f}  HGB {auc_hgb:.4f}  L2 logistic {auc_lr:.4f}")
    assert te["score"].null_count() == 0  # every metric has a score for missing values: nothing drops out
    assert auc_shapes >= 0.98 * auc_hgb
    assert auc_shapes >= auc_lr


def _learned_vs_truth(p, fit, metric: str, train: pl.DataFrame) -> tuple[float, pl.DataFrame]:
    m = fit.model.metric(metric)
    truth = p.truth.curves.filter((pl.col("metric") == metric) & (pl.col("segment") == "all"))
    values = train[m.column].drop_nulls()
    truth = truth.filter(pl.col("value").is_between(values.quantile(0.02), values.quantile(0.98)))
    sub = truth.select(calibrate_expr("value", m.method, m.params, m.direction))["value"].to_numpy()
    return float(spearmanr(-sub, truth["churn_logit"].to_numpy()).statistic), truth.with_columns(sub=sub)


# every metric with a real effect whose truth has a rank on its grid (booleans, two-valued counts
# and the capped high_sev_tickets have too few distinct values): the goal is Spearman >= 0.9
TRACKED = [
    "seat_utilization",
    "login_days",
    "key_feature_adoption",
    "api_calls",
    "csat",
    "nps",
    "csm_assessment",
    "goal_progress",
    "days_invoice_overdue",  # a mass at 0, then a jump and a slope
    "seats_deployed_ratio",  # a U with its minimum at 0.8 and a steep, thinly populated right arm
]


@pytest.mark.parametrize("metric", TRACKED)
def test_learned_curve_tracks_the_true_curve(world, metric) -> None:
    p, train, _test, fit = world
    rho, _ = _learned_vs_truth(p, fit, metric, train)
    assert rho >= 0.9, (metric, rho)


def test_levels_follow_the_truth(world) -> None:
    _p, _train, _test, fit = world
    # champion left raises churn, an engaged sponsor lowers it; onboarding accounts churn least
    # and those close to renewal most (the hazards' other terms, seen through the stage)
    champ, sponsor = fit.model.metric("champion_left"), fit.model.metric("exec_sponsor_engaged")
    assert champ.params["true_score"] < champ.params["false_score"]
    assert sponsor.params["true_score"] > sponsor.params["false_score"]
    stage = fit.model.metric("lifecycle_stage").params["map"]
    assert stage["onboarding"] == max(stage.values()) and stage["renewal"] == min(stage.values())


def test_u_shape_is_kept_where_the_data_say_so(world) -> None:
    p, train, _test, fit = world
    m = fit.model.metric("seats_deployed_ratio")
    row = fit.table.filter(pl.col("metric") == "seats_deployed_ratio").row(0, named=True)
    assert row["shape"] == "u-shape" and m.params["monotone"] is False
    scores = np.asarray(m.params["scores"])
    best = int(np.argmax(scores))
    assert 0 < best < scores.size - 1  # the best bin is inside, both ends score lower
    edges = [-np.inf, *m.params["edges"], np.inf]
    assert edges[best] - 0.1 <= 0.8 <= edges[best + 1] + 0.1  # the true minimum of the risk is at 0.8
    # the metrics without any effect are not turned into U-shapes
    for name in ("email_ctr", "community_posts", "training_completions", "tickets_opened"):
        assert fit.table.filter(pl.col("metric") == name)["shape"][0] != "u-shape", name


def test_fitted_model_round_trips_through_toml(world, tmp_path) -> None:
    p, _train, _test, fit = world
    path = fit.save(tmp_path / "fitted.toml")
    again = hs.load_model(path)
    assert again.hash == fit.model.hash
    a = hs.score(p.snapshots.head(2000), fit.model)["score"]
    b = hs.score(p.snapshots.head(2000), again)["score"]
    assert a.equals(b)
    # the weights are the curves' strengths: the shares in the table add up to 100
    assert abs(fit.table["share"].sum() - 100.0) < 1e-3


def test_wrong_sign_is_flagged_with_evidence_and_not_zeroed(world) -> None:
    p, train, _test, _fit = world
    model = _model()
    flipped = [
        replace(m, direction="lower_is_better", params={"points": [[0, 100], [1, 0]]}) if m.name == "login_days" else m
        for m in model.metrics
    ]
    model = replace(model, metrics=flipped)
    snaps = p.snapshots.filter(pl.col("as_of") <= train["as_of"].max())
    with threadpool_limits(limits=1, user_api="blas"):
        fit = hs.fit_shapes(snaps, p.events, model, horizon=HORIZON)
    row = fit.table.filter(pl.col("metric") == "login_days").row(0, named=True)
    assert "wrong sign" in row["flags"]
    note = next(f for f in fit.flags if f.startswith("wrong sign: login_days"))
    assert "lower_is_better" in note and "higher_is_better" in note and "p=" in note and "flip" in note
    assert row["weight"] > 0 and row["direction"] == "higher_is_better"  # follows the data, flagged
    held = hs.fit_shapes(snaps, p.events, model, horizon=HORIZON, follow_data=False)
    assert any(f.startswith("wrong sign: login_days") for f in held.flags)
    assert held.model.metric("login_days").direction == "lower_is_better"


def test_shapes_reject_an_outcome_that_never_happens(world) -> None:
    p, _train, _test, _fit = world
    snaps = p.snapshots.head(5000).with_columns(churned=pl.lit(False))
    with pytest.raises(hs.ValidationError, match="nothing to learn"):
        hs.fit_shapes(snaps, None, _model(), horizon=HORIZON)


# ---------------------------------------------------------------- honest probabilities
def test_probability_bins_hold_at_least_30_events_and_carry_intervals() -> None:
    rng = np.random.default_rng(3)
    s = rng.uniform(0, 100, 20_000)
    y = rng.random(s.size) < 0.3 * (1 - s / 100) ** 2  # almost no events at the top
    pm = ProbabilityMap("isotonic").fit(s, y)
    assert min(pm.events_) >= 30
    assert 0 < min(pm.probabilities_) and max(pm.probabilities_) < 1
    lo, hi = pm.predict_interval([5.0, 95.0])
    p = pm.predict([5.0, 95.0])
    assert (lo < p).all() and (p < hi).all() and lo[1] > 0
    again = ProbabilityMap.from_dict(pm.to_dict())
    assert np.allclose(again.predict_interval([50.0]), pm.predict_interval([50.0]))
    assert "95% interval" in pm.explain(95)


def test_probability_map_never_says_zero_from_a_handful_of_accounts() -> None:
    s = np.r_[np.linspace(0, 50, 400), np.linspace(50.1, 100, 12)]
    y = np.r_[np.tile([1, 0, 0, 0], 100), np.zeros(12)]  # 12 top accounts, none churned
    pm = ProbabilityMap("isotonic").fit(s, y)
    assert pm.predict([100.0])[0] > 0.05  # pooled with enough events, not a 0% from 12 accounts


def test_old_probability_maps_still_load() -> None:
    old = {
        "method": "isotonic",
        "outcome": "churned",
        "horizon": "90d",
        "n_train": 100,
        "events_train": 10,
        "scores": [0.0, 100.0],
        "probabilities": [0.2, 0.05],
    }
    pm = ProbabilityMap.from_dict(old)
    assert pm.predict([50.0]).round(3).tolist() == [0.125]
    lo, hi = pm.predict_interval([50.0])
    assert np.isnan(lo).all() and np.isnan(hi).all()


# ---------------------------------------------------------------- the joint fit's own numerics
def test_joint_logit_with_a_plain_ridge_equals_scikit_learn() -> None:
    from healthscore.analysis.shapes import _Logit
    from scipy import sparse

    rng = np.random.default_rng(5)
    n, d = 4000, 6
    level = rng.integers(0, d, n)
    X = sparse.csr_matrix((np.ones(n), level, np.arange(n + 1)), shape=(n, d))
    y = (rng.random(n) < 1 / (1 + np.exp(-(-1.5 + 0.4 * level - 0.05 * level**2)))).astype(float)
    alpha = 1e-3
    ours = _Logit.fit(X, y, sparse.identity(d, format="csr"), alpha, tol=1e-10)
    ref = LogisticRegression(C=1 / (alpha * n), tol=1e-8, max_iter=1000).fit(X, y)
    assert np.allclose(ours.coef, ref.coef_[0], atol=1e-4)
    assert abs(ours.intercept - ref.intercept_[0]) < 1e-4
    assert np.allclose(ours.predict(X), ref.predict_proba(X)[:, 1], atol=1e-5)


def test_neighbour_penalty_smooths_thin_bins_towards_their_neighbours() -> None:
    from healthscore.analysis.shapes import _Encoding, _Logit, _penalty
    from scipy import sparse

    # a rising curve over 8 bins; the last bin is thin and, by chance, event-free
    rng = np.random.default_rng(8)
    sizes = [3000] * 7 + [60]
    level = np.repeat(np.arange(8), sizes)
    y = (rng.random(level.size) < 1 / (1 + np.exp(-(-3 + 0.3 * level)))).astype(float)
    y[level == 7] = 0.0
    X = sparse.csr_matrix((np.ones(level.size), level, np.arange(level.size + 1)), shape=(level.size, 8))
    enc = _Encoding("m", "bins", [str(i) for i in range(8)], level, counts=np.bincount(level))
    p = _penalty(enc)
    steps = _Logit.fit(X, y, sparse.csr_matrix(p.T @ p), 3e-3).coef
    ridge = _Logit.fit(X, y, sparse.identity(8, format="csr"), 3e-3).coef
    # towards the neighbour (the curve beside it), not towards the overall rate
    assert abs(steps[7] - steps[6]) < abs(ridge[7] - ridge[6])
    assert np.all(np.diff(steps[:7]) > 0)
