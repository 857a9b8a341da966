"""Tests for healthscore.analysis.fitting: point-in-time labels, logistic fits and suggested weights."""

from __future__ import annotations

import datetime as dt
import warnings

import polars as pl
import pytest
from healthscore.analysis.fitting import label_outcomes, parse_horizon
from healthscore.errors import HealthscoreError
from healthscore.io.snapshots import ValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

MON = dt.date(2024, 1, 1)  # a Monday


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """These fits multiply small matrices, where a second BLAS thread only helps when it has a
    core to itself; on a busy two-core machine it makes them many times slower."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _weekly(account: str, n: int, start: dt.date = MON) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "account_id": [account] * n,
            "as_of": [start + dt.timedelta(weeks=k) for k in range(n)],
            "x": [float(k) for k in range(n)],
        }
    )


def _events(rows: list[tuple[str, dt.date, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"account_id": pl.Utf8, "date": pl.Date, "event": pl.Utf8}, orient="row")


def _labels(frame: pl.DataFrame, account: str, outcome: str = "churned") -> dict[dt.date, bool]:
    sub = frame.filter(pl.col("account_id") == account)
    return dict(zip(sub["as_of"].to_list(), sub[outcome].to_list()))


# ---------------------------------------------------------------- label_outcomes: censoring rules
@pytest.fixture
def book() -> tuple[pl.DataFrame, pl.DataFrame]:
    snaps = pl.concat([_weekly(a, 20) for a in "ABCDE"])
    events = _events(
        [
            ("A", MON + dt.timedelta(weeks=5), "churned"),  # exactly on a snapshot day
            ("C", dt.date(2024, 5, 10), "churned"),  # inside the last uncensored window
            ("D", MON + dt.timedelta(days=1), "churned"),  # the day after the first snapshot
            ("E", MON, "churned"),  # on the first snapshot day
            ("B", MON + dt.timedelta(days=3), "expanded"),  # another outcome: no churn label
        ]
    )
    return snaps, events


def test_labels_every_case(book):
    snaps, events = book
    out = label_outcomes(snaps, events, outcome="churned", horizon="28d")
    # data end = last as_of = 2024-05-13; rows with as_of + 28d beyond that are censored
    last_kept = dt.date(2024, 4, 15)
    assert out["as_of"].max() == last_kept
    d = lambda w: MON + dt.timedelta(weeks=w)  # noqa: E731
    # A: churn on week 5; week 0 ends the day before... window (01-01, 01-29] misses 02-05
    assert _labels(out, "A") == {d(0): False, d(1): True, d(2): True, d(3): True, d(4): True}
    # B: never churns; the expansion event does not count; weeks 16..19 censored
    assert _labels(out, "B") == {d(w): False for w in range(16)}
    # C: churn on 05-10, only the last uncensored snapshot's window reaches it
    c = _labels(out, "C")
    assert len(c) == 16 and c[last_kept] is True and not any(v for k, v in c.items() if k != last_kept)
    # D: churn the day after its first snapshot; everything later dropped
    assert _labels(out, "D") == {d(0): True}
    # E: churn on the first snapshot day: no labellable row
    assert _labels(out, "E") == {}
    assert out.columns == ["account_id", "as_of", "x", "churned"]
    assert out.schema["churned"] == pl.Boolean
    assert out.sort("account_id", "as_of").equals(out)


def test_boundary_day_is_inside_and_as_of_day_is_outside():
    snaps = _weekly("A", 10)
    on_boundary = label_outcomes(
        snaps, _events([("A", MON + dt.timedelta(days=28), "churned")]), horizon="28d", data_end=dt.date(2025, 1, 1)
    )
    assert _labels(on_boundary, "A") == {
        MON: True,
        MON + dt.timedelta(weeks=1): True,
        MON + dt.timedelta(weeks=2): True,
        MON + dt.timedelta(weeks=3): True,
    }
    one_past = label_outcomes(
        snaps, _events([("A", MON + dt.timedelta(days=29), "churned")]), horizon="28d", data_end=dt.date(2025, 1, 1)
    )
    assert _labels(one_past, "A")[MON] is False


def test_expansion_keeps_going_after_an_event():
    snaps = _weekly("F", 14)
    events = _events(
        [
            ("F", dt.date(2024, 1, 10), "expanded"),
            ("F", dt.date(2024, 3, 20), "expanded"),
            ("F", dt.date(2024, 1, 10), "expanded"),
        ]
    )  # duplicate rows count once
    out = label_outcomes(snaps, events, outcome="expanded", horizon="28d", data_end=dt.date(2024, 12, 31))
    got = _labels(out, "F", "expanded")
    assert len(got) == 14  # nothing dropped after an expansion
    want = {MON + dt.timedelta(weeks=w): (w in (0, 1) or 8 <= w <= 11) for w in range(14)}
    assert got == want


def test_data_end_and_horizon_units():
    snaps = _weekly("A", 30)
    none = _events([])
    with pytest.warns(UserWarning, match="no 'churned' event"):
        weekly = label_outcomes(snaps, none, horizon="13w")
    assert weekly.height == 30 - 13
    with pytest.warns(UserWarning):
        later_end = label_outcomes(snaps, none, horizon="13w", data_end=dt.date(2030, 1, 1))
    assert later_end.height == 30
    with pytest.warns(UserWarning):
        months = label_outcomes(snaps, none, horizon="3mo")
    # as_of + 3 calendar months <= 2024-07-22 (the last as_of)
    assert months["as_of"].max() == dt.date(2024, 4, 22)


def test_monthly_cadence_keeps_last_snapshot_of_each_month():
    snaps = _weekly("A", 26)
    events = _events([("A", dt.date(2024, 6, 20), "churned")])
    out = label_outcomes(snaps, events, horizon="28d", cadence="monthly")
    assert out["as_of"].to_list() == [
        dt.date(2024, 1, 29),
        dt.date(2024, 2, 26),
        dt.date(2024, 3, 25),
        dt.date(2024, 4, 29),
        dt.date(2024, 5, 27),
    ]
    assert out["churned"].to_list() == [False, False, False, False, True]


def test_bad_input_is_named():
    snaps = _weekly("A", 5)
    with pytest.raises(HealthscoreError, match="horizon '90 days'"):
        label_outcomes(snaps, _events([]), horizon="90 days")
    with pytest.raises(ValidationError, match=r"lacks column\(s\) \[.event.\]"):
        label_outcomes(snaps, pl.DataFrame({"account_id": ["A"], "date": [MON]}))
    with pytest.raises(ValidationError, match="already has a column named after the outcome .churned."):
        label_outcomes(snaps.with_columns(churned=pl.lit(True)), _events([]))
    with pytest.raises(ValidationError, match="cadence"):
        label_outcomes(snaps, _events([]), cadence="daily")  # type: ignore[arg-type]
    assert parse_horizon("3mo") == "3mo" and parse_horizon("013w") == "13w"


def _oracle(snaps: pl.DataFrame, events: pl.DataFrame, outcome: str, days: int, terminal: bool) -> dict:
    """Labels by brute force, straight from the definition."""
    end = snaps["as_of"].max()
    ev = [(r["account_id"], r["date"]) for r in events.filter(pl.col("event") == outcome).iter_rows(named=True)]
    out = {}
    for acc, as_of in snaps.select("account_id", "as_of").iter_rows():
        mine = [d for a, d in ev if a == acc]
        if terminal and mine and as_of >= min(mine):
            continue
        if as_of + dt.timedelta(days=days) > end:
            continue
        out[(acc, as_of)] = any(as_of < d <= as_of + dt.timedelta(days=days) for d in mine)
    return out


@settings(max_examples=60, deadline=None)
@given(
    offsets=st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 120)), min_size=1, max_size=40),
    ev=st.lists(
        st.tuples(st.sampled_from("abcd"), st.integers(-5, 130), st.sampled_from(["churned", "expanded"])), max_size=12
    ),
    days=st.integers(1, 60),
    outcome=st.sampled_from(["churned", "expanded"]),
)
def test_labels_match_the_definition(offsets, ev, days, outcome):
    snaps = pl.DataFrame(
        {"account_id": [a for a, _ in offsets], "as_of": [MON + dt.timedelta(days=o) for _, o in offsets]}
    ).unique()
    events = _events([(a, MON + dt.timedelta(days=o), e) for a, o, e in ev])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an outcome absent from the drawn events warns
        out = label_outcomes(
            snaps, events, outcome=outcome, horizon=f"{days}d", cross_sectional=False
        )  # the panel rule
    got = {(a, d): v for a, d, v in out.select("account_id", "as_of", outcome).iter_rows()}
    assert got == _oracle(snaps, events, outcome, days, terminal=outcome == "churned")


# ---------------------------------------------------------------- fit_logit: statistics against truth
import numpy as np  # noqa: E402
import statsmodels.api as sm  # noqa: E402
from healthscore.analysis.fitting import fit_logit, leakage_check  # noqa: E402
from scipy.special import logit  # noqa: E402
from scipy.stats import norm  # noqa: E402

TRUE = {"const": -1.5, "x1": 0.8, "x2": -0.5}


def _clustered_logistic(seed: int, n_acc: int = 150, per_acc: int = 12, rho: float = 0.6) -> pl.DataFrame:
    """Marginal logistic model P(y|x) = expit(-1.5 + 0.8 x1 - 0.5 x2) with outcomes correlated
    within an account (a Gaussian copula on the logistic noise) and x1 mostly account-level."""
    rng = np.random.default_rng(seed)
    acc = np.repeat(np.arange(n_acc), per_acc)
    x1 = 0.9 * rng.normal(size=n_acc)[acc] + 0.45 * rng.normal(size=acc.size)
    x2 = rng.normal(size=acc.size)
    z = np.sqrt(rho) * rng.normal(size=n_acc)[acc] + np.sqrt(1 - rho) * rng.normal(size=acc.size)
    noise = logit(norm.cdf(z))  # standard logistic marginally, correlated within accounts
    y = TRUE["const"] + TRUE["x1"] * x1 + TRUE["x2"] * x2 + noise > 0
    return pl.DataFrame({"account_id": [f"acc{a}" for a in acc], "x1": x1, "x2": x2, "y": y})


def test_clustered_intervals_cover_the_truth_and_are_wider_than_naive():
    hits = {k: 0 for k in TRUE}
    ratio = []
    reps = 40
    for seed in range(reps):
        fit = fit_logit(_clustered_logistic(seed), ["x1", "x2"], "y")
        for k, b in TRUE.items():
            lo, hi = fit.conf_int_[k]
            hits[k] += lo <= b <= hi
        ratio.append(fit.bse_["x1"] / fit.naive_bse_["x1"])
    coverage = {k: v / reps for k, v in hits.items()}
    assert all(0.85 <= c <= 1.0 for c in coverage.values()), coverage
    # x1 and the outcomes repeat within accounts: the clustered error must be clearly larger
    assert np.median(ratio) > 1.3, np.median(ratio)


def test_naive_intervals_undercover_when_rows_repeat():
    """The reason to cluster: textbook intervals are too narrow on repeated snapshots."""
    hits = 0
    for seed in range(40):
        fit = fit_logit(_clustered_logistic(seed), ["x1", "x2"], "y")
        half = 1.96 * fit.naive_bse_["x1"]
        hits += abs(fit.params_["x1"] - TRUE["x1"]) <= half
    assert hits / 40 < 0.85


def test_clustered_errors_equal_statsmodels_cluster_covariance():
    df = _clustered_logistic(99)
    fit = fit_logit(df, ["x1", "x2"], "y")
    X = sm.add_constant(df.select("x1", "x2").to_numpy())
    groups = df["account_id"].str.replace("acc", "").cast(pl.Int64).to_numpy()
    ref = sm.Logit(df["y"].cast(pl.Float64).to_numpy(), X).fit(
        disp=False, cov_type="cluster", cov_kwds={"groups": groups}
    )
    np.testing.assert_allclose([fit.params_[k] for k in TRUE], ref.params, rtol=1e-6)
    np.testing.assert_allclose([fit.bse_[k] for k in TRUE], ref.bse, rtol=1e-8)
    np.testing.assert_allclose([fit.pvalues_[k] for k in TRUE], ref.pvalues, rtol=1e-6)
    assert fit.result_.cov_type == "cluster" and "x1" in str(fit.result_.summary())
    assert fit.n_groups_ == 150 and fit.n_obs_ == 1800


def test_big_data_start_gives_the_full_newton_answer(monkeypatch):
    import healthscore.analysis.fitting as fitting

    df = _clustered_logistic(5, n_acc=400, per_acc=10)
    full = fit_logit(df, ["x1", "x2"], "y")
    monkeypatch.setattr(fitting, "_BIG_DATA", 1000)  # forces the subsample start + 2 Newton steps
    quick = fit_logit(df, ["x1", "x2"], "y")
    for k in TRUE:
        assert abs(quick.params_[k] - full.params_[k]) < 1e-4 * full.bse_[k]
        assert quick.bse_[k] == pytest.approx(full.bse_[k], rel=1e-6)
    assert quick.result_.mle_retvals["converged"]


def test_null_policy_fills_mean_and_adds_indicator_only_above_threshold():
    df = _clustered_logistic(3)
    n = df.height
    df = df.with_columns(
        pl.when(pl.int_range(n) % 5 == 0).then(None).otherwise(pl.col("x2")).alias("x2"),  # 20% missing
        pl.when(pl.int_range(n) == 7).then(None).otherwise(pl.col("x1")).alias("x1"),  # one missing
    )
    fit = fit_logit(df, ["x1", "x2"], "y", na_threshold=0.05)
    assert fit.terms_ == ["const", "x1", "x2", "na_x2"]
    assert fit.fill_values_["x2"] == pytest.approx(df["x2"].mean())
    assert fit.fill_values_["x1"] == pytest.approx(df["x1"].mean())
    assert fit.n_obs_ == n  # no row dropped
    design = fit.design(df)
    assert design[0, 3] == 1.0 and design[0, 2] == pytest.approx(df["x2"].mean())
    p = fit.predict(df)
    assert p.shape == (n,) and np.all((p > 0) & (p < 1))


def test_penalised_fits_report_no_standard_errors_and_shrink():
    df = _clustered_logistic(4)
    mle = fit_logit(df, ["x1", "x2"], "y")
    ridge = fit_logit(df, ["x1", "x2"], "y", penalty="l2", alpha=1e-6)
    assert not ridge.inference_ and np.isnan(ridge.bse_["x1"]) and np.isnan(ridge.pvalues_["x1"])
    assert ridge.params_["x1"] == pytest.approx(mle.params_["x1"], abs=0.01)  # back on the raw scale
    strong = fit_logit(df, ["x1", "x2"], "y", penalty="l2", alpha=0.5)
    assert abs(strong.params_["x1"]) < 0.5 * abs(mle.params_["x1"])
    lasso = fit_logit(
        df.with_columns(noise=pl.Series(np.random.default_rng(0).normal(size=df.height))),
        ["x1", "x2", "noise"],
        "y",
        penalty="l1",
        alpha=0.02,
    )
    assert lasso.params_["noise"] == 0.0 and lasso.params_["x1"] != 0.0
    assert "no valid standard errors" in ridge.summary() or "penalised" in ridge.summary()


# ---------------------------------------------------------------- separation and leakage
def test_separated_feature_is_detected_and_falls_back_to_l2():
    df = _clustered_logistic(8)
    # 'flag' is 1 exactly when the outcome is true: perfect separation
    df = df.with_columns(flag=pl.col("y").cast(pl.Float64))
    fit = fit_logit(df, ["x1", "flag"], "y")
    assert any("flag alone separates the outcome" in s for s in fit.separation_)
    assert fit.fallback_ and "L2" in fit.fallback_ and fit.penalty_ == "l2" and not fit.inference_
    assert np.isfinite(fit.params_["flag"]) and fit.params_["flag"] > 0
    with pytest.raises(ValidationError, match="quasi-separation"):
        fit_logit(df, ["x1", "flag"], "y", on_separation="raise")


def test_quasi_separation_of_an_indicator_level_is_detected():
    df = _clustered_logistic(9)
    # a rare indicator that is set only on non-events: an empty cell
    df = df.with_columns(rare=(pl.int_range(df.height) % 50 == 0) & ~pl.col("y"))
    fit = fit_logit(df, ["x1", "x2", "rare"], "y")
    assert any("rare" in s and "empty or pure cell" in s for s in fit.separation_)
    assert fit.penalty_ == "l2"


def test_leakage_check_flags_a_feature_built_from_the_label():
    df = _clustered_logistic(10)
    rng = np.random.default_rng(1)
    df = df.with_columns(leaky=pl.col("y").cast(pl.Float64) * 2 + pl.Series(rng.normal(0, 0.3, df.height)))
    out = leakage_check(df, ["x1", "x2", "leaky"], "y").sort("feature")
    got = dict(zip(out["feature"].to_list(), out["leak"].to_list()))
    assert got == {"leaky": True, "x1": False, "x2": False}
    assert out.filter(pl.col("feature") == "leaky")["auc_alone"][0] > 0.95
    assert out.filter(pl.col("feature") == "x1")["auc_alone"][0] < 0.8


# ---------------------------------------------------------------- fit_weights on the sample portfolio
import healthscore as hs  # noqa: E402
from healthscore.analysis.fitting import fit_weights, segment_lr_test  # noqa: E402
from healthscore.datasets.portfolio import load_sample, make_portfolio, sample_dir  # noqa: E402

MODEL = sample_dir() / "model.toml"


@pytest.fixture(scope="module")
def portfolio():
    return make_portfolio(n_accounts=1500, n_weeks=40, seed=2)


@pytest.fixture(scope="module")
def churn_fit(portfolio):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_weights(portfolio.snapshots, portfolio.events, hs.load_model(MODEL))


def _with_truth(fit, portfolio, outcome_col: str) -> pl.DataFrame:
    columns = {m.name: m.column for m in fit.model.metrics}
    truth = portfolio.truth.effects.select(pl.col("metric").alias("column"), outcome_col)
    return fit.table.with_columns(pl.col("metric").replace_strict(columns, default=None).alias("column")).join(
        truth, on="column"
    )


@pytest.mark.slow
def test_churn_signs_follow_the_known_truth(churn_fit, portfolio):
    t = _with_truth(churn_fit, portfolio, "churn_coef")
    strong = t.filter(pl.col("churn_coef").abs() >= 0.25)
    assert strong.height >= 4
    # a healthier sub-score lowers churn: negative coefficients
    right = strong.filter(pl.col("coef") < 0).height
    assert right >= 2 * strong.height / 3, strong
    assert strong.filter((pl.col("coef") > 0) & (pl.col("p_value") < 0.05)).is_empty(), strong
    champ = t.filter(pl.col("metric") == "champion_left").row(0, named=True)
    assert champ["coef"] < 0 and champ["p_value"] < 0.05 and champ["odds_ratio"] < 1
    # the table's odds ratio and interval are exp(10 * coef) and exp(10 * CI)
    assert champ["odds_ratio"] == pytest.approx(np.exp(10 * champ["coef"]))
    lo, hi = churn_fit.logit.conf_int_["sub_champion_left"]
    assert (champ["or_lower"], champ["or_upper"]) == pytest.approx((np.exp(10 * lo), np.exp(10 * hi)))
    assert churn_fit.table["vif"].drop_nulls().min() >= 1.0


@pytest.mark.slow
def test_expansion_index_signs_follow_the_known_truth(portfolio):
    model = hs.load_model(MODEL, name="expansion")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_weights(portfolio.snapshots, portfolio.events, model, outcome="expanded")
    assert not fit.adverse
    t = _with_truth(fit, portfolio, "expansion_coef")
    assert t.filter(pl.col("expansion_coef") > 0).height == t.height
    assert (t["coef"] > 0).all(), t  # every one of these raises expansion odds
    assert "above 1" in fit.summary()
    w = fit.suggested_weights()
    assert w["weight"].sum() == pytest.approx(100.0, abs=0.3)


def test_flags_wrong_sign_and_not_significant(churn_fit):
    for r in churn_fit.table.iter_rows(named=True):
        if r["coef"] is None:
            continue
        assert ("wrong sign" in r["flags"]) == (r["coef"] > 0)
        assert ("not significant" in r["flags"]) == (r["p_value"] > 0.05)
    text = churn_fit.summary()
    assert "odds ratio per 10 points below 1" in text and "champion_left" in text


def test_suggested_weights_follow_the_refit_and_sum_to_100(churn_fit):
    w = churn_fit.suggested_weights()
    basis = churn_fit.basis
    assert basis is not None and basis.inference_
    assert w["weight"].sum() == pytest.approx(100.0, abs=0.5)
    for r in w.iter_rows(named=True):
        coef = basis.params_[f"sub_{r['metric']}"]
        if coef >= 0:
            assert r["weight"] == 0.0 and "wrong sign" in r["reason"]
    pos = {
        r["metric"]: (r["weight"], -basis.params_[f"sub_{r['metric']}"])
        for r in w.iter_rows(named=True)
        if r["weight"] > 0
    }
    (m1, (w1, c1)), (m2, (w2, c2)) = list(pos.items())[:2]
    assert w1 / w2 == pytest.approx(c1 / c2, rel=0.05)  # proportional to the effect (rounding aside)
    churn_fit.drop_insignificant = True
    try:
        w_strict = churn_fit.suggested_weights()
    finally:
        churn_fit.drop_insignificant = False
    ns = [m for m in w_strict["metric"] if basis.pvalues_[f"sub_{m}"] > 0.05]
    assert all(w_strict.filter(pl.col("metric") == m)["weight"][0] == 0.0 for m in ns)


def test_suggested_model_round_trip_keeps_comments_and_refuses_overwrite(churn_fit, tmp_path):
    new = churn_fit.suggested_model()
    assert new.version == "1.0.1" and new.version != churn_fit.model.version
    assert all(not v.weights and not v.categories for v in new.variants)
    cmp = churn_fit.comparison()
    assert cmp["current_share"].sum() == pytest.approx(100.0, abs=0.5)
    assert cmp["suggested_share"].sum() == pytest.approx(100.0, abs=0.5)
    path = churn_fit.save_suggested(tmp_path / "fitted.toml")
    text = path.read_text()
    assert "# Category weights are relative" in text and 'version = "1.0.1"' in text
    back = hs.load_model(path)
    want = dict(churn_fit.suggested_weights().select("metric", "weight").iter_rows())
    assert {m.name: m.weight for m in back.metrics} == pytest.approx(want)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        churn_fit.save_suggested(path)
    path.write_text("keep me")
    with pytest.raises(FileExistsError):
        churn_fit.save_suggested(path)
    assert path.read_text() == "keep me"
    churn_fit.save_suggested(path, overwrite=True)
    assert hs.load_model(path).version == "1.0.1"


def test_too_few_events_warns_with_the_number(portfolio):
    small = portfolio.snapshots.filter(
        pl.col("account_id").is_in(portfolio.snapshots["account_id"].unique().sort().head(120).implode())
    )
    with pytest.warns(UserWarning, match=r"too few events: \d+ events for \d+ features is \d+\.\d events per variable"):
        fit = fit_weights(small, portfolio.events, hs.load_model(MODEL))
    assert any(f.startswith("too few events") for f in fit.flags)
    assert "too few events" in fit.summary()


def test_leaky_feature_is_flagged_by_fit_weights(portfolio):
    from healthscore.analysis.fitting import label_outcomes

    # a "days until churn" style column: it knows the label
    lab = label_outcomes(portfolio.snapshots, portfolio.events).select("account_id", "as_of", "churned")
    leaky = (
        portfolio.snapshots.join(lab, on=["account_id", "as_of"], how="left")
        .with_columns(login_days=pl.when(pl.col("churned")).then(0.0).otherwise(7.0))
        .drop("churned")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_weights(leaky, portfolio.events, hs.load_model(MODEL))
    assert any("possible leakage: sub_login_days" in f for f in fit.flags)
    assert "possible leakage" in fit.table.filter(pl.col("metric") == "login_days")["flags"][0]


@pytest.mark.slow
def test_fitted_model_holds_up_against_the_hand_set_one_on_a_time_split():
    from healthscore.analysis.evaluation import time_split
    from healthscore.analysis.fitting import label_outcomes
    from sklearn.metrics import roc_auc_score

    sample = load_sample()
    hand = hs.load_model(MODEL)
    labelled = label_outcomes(sample.snapshots, sample.events)
    _, test, split = time_split(labelled, horizon="90d")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_weights(sample.snapshots.filter(pl.col("as_of") < split), sample.events, hand)
    keys = test.select("account_id", "as_of", "churned")

    def auc(model) -> float:
        s = hs.score(sample.snapshots, model).join(keys, on=["account_id", "as_of"]).drop_nulls("score")
        return roc_auc_score(s["churned"].to_numpy(), -s["score"].to_numpy())

    sub = hs.calibrate(sample.snapshots, hand).join(keys, on=["account_id", "as_of"])
    logit_auc = roc_auc_score(sub["churned"].to_numpy(), fit.logit.predict(sub))
    hand_auc, fitted_auc = auc(hand), auc(fit.suggested_model())
    assert logit_auc > hand_auc, (logit_auc, hand_auc)  # the fitted regression beats the hand weights
    assert fitted_auc > hand_auc - 0.01, (fitted_auc, hand_auc)  # its weighted score is at least as good


@pytest.mark.slow
def test_segment_lr_test_finds_segments_that_differ_and_not_random_ones(portfolio):
    model = hs.load_model(MODEL)
    rng = np.random.default_rng(0)
    ids = portfolio.snapshots["account_id"].unique().sort()
    coin = pl.DataFrame({"account_id": ids, "coin": rng.choice(["heads", "tails"], ids.len())})
    snaps = portfolio.snapshots.join(coin, on="account_id")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        random_split = segment_lr_test(snaps, portfolio.events, model, by="coin")
    assert random_split.pvalue > 0.01 and "not warranted" in random_split.verdict
    assert random_split.df == len(random_split.segments["heads"].terms_) * 2 - len(random_split.pooled.terms_)
    llf = sum(f.result_.llf for f in random_split.segments.values()) - random_split.pooled.result_.llf
    assert random_split.lr == pytest.approx(max(2 * llf, 0.0))
    # high-touch and digital accounts churn at different base rates and only high-touch ones
    # have a CSM assessment: the per-segment fits must win clearly
    touch = segment_lr_test(portfolio.snapshots, portfolio.events, model, by="touch_model")
    assert touch.pvalue < 0.05 and "are warranted" in touch.verdict
    assert set(touch.table["touch_model"]) == {"high", "digital"}
    assert f"p={touch.pvalue:.3g}" in touch.summary()


# ---------------------------------------------------------------- command line
def test_cli_fit_writes_the_model_prints_the_summary_and_refuses_overwrite(portfolio, tmp_path, capsys):
    from healthscore.app.cli import main

    data, events, out = tmp_path / "snaps.parquet", tmp_path / "events.parquet", tmp_path / "fitted.toml"
    portfolio.snapshots.write_parquet(data)
    portfolio.events.write_parquet(events)
    argv = [
        "fit",
        "--model",
        str(MODEL),
        "--data",
        str(data),
        "--events",
        str(events),
        "--outcome",
        "churned",
        "--horizon",
        "90d",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Weight fit of model 'health'" in printed and "OR per 10 points" in printed
    assert "current %" in printed and "suggested %" in printed and f"written {out}" in printed
    fitted = hs.load_model(out)
    assert fitted.version == "1.0.1" and "# Category weights are relative" in out.read_text()
    before = out.read_text()
    assert main(argv) == 2
    assert "exists" in capsys.readouterr().err and out.read_text() == before
    assert main([*argv, "--overwrite", "--penalty", "l2"]) == 0
    assert "penalised fit: no valid standard errors" in capsys.readouterr().out
    assert main([*argv, "--overwrite", "--horizon", "ninety days"]) == 2
    assert "horizon 'ninety days' is not understood" in capsys.readouterr().err


def test_demo_fit_step_writes_fitted_model(tmp_path):
    from healthscore.app.cli import _demo_steps

    steps = dict(_demo_steps())
    line = steps["fit weights"](tmp_path)
    assert (tmp_path / "fitted_model.toml").is_file() and "fitted_model.toml" in line
    assert hs.load_model(tmp_path / "fitted_model.toml").version != hs.load_model(MODEL).version


def test_raw_features_follow_each_metrics_direction(portfolio):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_weights(portfolio.snapshots, portfolio.events, hs.load_model(MODEL), features="raw")
    assert fit.logit.scale_  # standardised: coefficients per SD of each raw column
    champ = fit.table.filter(pl.col("metric") == "champion_left").row(0, named=True)
    # the champion leaving (a lower-is-better raw flag going 0 -> 1) raises churn: the right sign
    assert champ["coef"] > 0 and "wrong sign" not in champ["flags"]
    w = dict(fit.suggested_weights().select("metric", "weight").iter_rows())
    assert w["champion_left"] > 0
    # a metric is fitted on its raw column (the trend metric on the active-user level itself)
    assert dict(fit.table.select("metric", "feature").iter_rows())["user_trend"] == "active_users"
