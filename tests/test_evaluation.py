"""Backtesting: metric functions against hand-computed values, statistics on data whose truth is
known, the time split, head to head on the sample portfolio, the HTML report and the CLI."""

from __future__ import annotations

import datetime as dt
import json
import math
import re

import healthscore as hs
import numpy as np
import polars as pl
import pytest
from healthscore.analysis import evaluation as E
from healthscore.app import cli
from healthscore.datasets.portfolio import sample_dir
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

MODEL = sample_dir() / "model.toml"


# ---------------------------------------------------------------- AUC and its interval
def test_auc_of_a_tiny_example_by_hand():
    # pairs (pos, neg): 0.35>0.1 yes, 0.35>0.4 no, 0.8>0.1 yes, 0.8>0.4 yes -> 3/4
    assert E.auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # a tie between a positive and a negative counts one half
    assert E.auc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == pytest.approx((0.5 + 1 + 1 + 1) / 4)
    # direction: a low score means churn, so risk = -score
    score = np.array([80.0, 60.0, 70.0, 20.0])
    assert E.auc([0, 0, 1, 1], E.risk_of(score, "churned")) == pytest.approx(0.75)
    assert E.auc([0, 0, 1, 1], E.risk_of(score, "expanded")) == pytest.approx(0.25)
    # one class only: undefined, not a crash
    assert math.isnan(E.auc([0, 0, 0], [1, 2, 3]))


def test_missing_values_are_dropped_pairwise():
    y = pl.Series([0, 1, None, 1, 0], dtype=pl.Int64)
    risk = pl.Series([0.1, 0.9, 0.5, None, 0.2])
    assert E.auc(y, risk) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="0/1"):
        E.auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="one value per row"):
        E.auc([0, 1, 1], [0.1, 0.2])


def _delong_by_pairs(y: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """DeLong written out from its definition, pair by pair (slow; small inputs only)."""
    pos, neg = x[y == 1], x[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    a = psi.mean()
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return a, v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size


def test_delong_interval_matches_the_definition():
    rng = np.random.default_rng(3)
    y = (rng.random(300) < 0.3).astype(float)
    x = np.round(rng.normal(size=300) + y, 1)  # rounded: plenty of ties
    a, var = _delong_by_pairs(y, x)
    ci = E.auc_ci(y, x, confidence=0.95)
    assert ci.estimate == pytest.approx(a)
    half = stats.norm.ppf(0.975) * math.sqrt(var)
    assert ci.lower == pytest.approx(a - half)
    assert ci.upper == pytest.approx(a + half)


def test_delong_interval_covers_the_true_auc():
    # binormal data: AUC = Phi(d / sqrt(2)) exactly
    d, truth = 0.8, stats.norm.cdf(0.8 / math.sqrt(2))
    rng = np.random.default_rng(11)
    hits = 0
    for _ in range(300):
        y = (rng.random(400) < 0.25).astype(float)
        x = rng.normal(size=400) + d * y
        ci = E.auc_ci(y, x)
        hits += ci.lower <= truth <= ci.upper
    assert 0.90 <= hits / 300 <= 0.99


@settings(max_examples=80, deadline=None)
@given(values=st.lists(st.tuples(st.booleans(), st.integers(0, 6), st.integers(0, 9)), min_size=4, max_size=80))
def test_interval_estimate_is_the_sklearn_auc_with_ties_and_groups(values):
    from sklearn.metrics import roc_auc_score

    y = np.array([float(v[0]) for v in values])
    x = np.array([float(v[1]) for v in values])  # few distinct values: many ties
    g = np.array([v[2] for v in values])
    if y.min() == y.max():
        assert math.isnan(E.auc_ci(y, x).estimate)
        return
    enough = min(y.sum(), (1 - y).sum()) >= 2
    for ci, has_interval in ((E.auc_ci(y, x), enough), (E.auc_ci(y, x, groups=g), len(set(g)) >= 2)):
        assert ci.estimate == pytest.approx(roc_auc_score(y, x))
        if has_interval:
            assert 0.0 <= ci.lower <= ci.estimate <= ci.upper <= 1.0
    if not enough:  # one event (or one non-event): no interval rather than a made-up one
        assert math.isnan(E.auc_ci(y, x).lower)


def test_clustered_interval_does_not_count_repeats_as_evidence():
    rng = np.random.default_rng(5)
    y = (rng.random(1000) < 0.2).astype(float)
    x = rng.normal(size=1000) + y
    once = E.auc_ci(y, x)
    # every account seen 8 times with the same values: no new information
    y8, x8, g8 = np.repeat(y, 8), np.repeat(x, 8), np.repeat(np.arange(1000), 8)
    naive = E.auc_ci(y8, x8)
    clustered = E.auc_ci(y8, x8, groups=g8)
    width = lambda ci: ci.upper - ci.lower  # noqa: E731
    assert width(naive) == pytest.approx(width(once) / math.sqrt(8), rel=0.05)
    assert width(clustered) == pytest.approx(width(once), rel=0.05)
    # string account ids work the same as integer ones
    assert E.auc_ci(y8, x8, groups=pl.Series([f"a{i}" for i in g8])) == pytest.approx(clustered)


# ---------------------------------------------------------------- other ranking metrics
def test_pr_auc_by_hand():
    # ranked: .8 (event) .4 (no) .35 (event) .1 (no): precision 1 at the first event, 2/3 at the second
    assert E.pr_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx((1 + 2 / 3) / 2)


@pytest.mark.parametrize("n,events,expected", [(1000, 50, 10.0), (1000, 250, 4.0), (200, 10, 10.0), (100, 50, 2.0)])
def test_lift_of_a_perfect_ranking_is_one_over_base_rate_capped_at_ten(n, events, expected):
    y = np.r_[np.ones(events), np.zeros(n - events)]
    risk = -np.arange(n, dtype=float)  # events ranked first
    assert E.top_decile_lift(y, risk) == pytest.approx(expected)
    assert E.capture_rate(y, risk) == pytest.approx(min(1.0, 0.1 * n / events))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(20, 400), share=st.floats(0.01, 0.9), seed=st.integers(0, 10_000))
def test_lift_properties(n, share, seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < share).astype(float)
    if y.sum() == 0:
        y[0] = 1.0
    base = y.mean()
    perfect = E.top_decile_lift(y, y + rng.random(n) * 0.5)  # every event above every non-event
    k = round(0.1 * n)  # the top decile is k whole rows, so the cap is n / k (10 when n divides evenly)
    assert perfect == pytest.approx(min(1 / base, n / k))
    # any ranking: between 0 and the perfect lift; all tied: exactly 1 (ties share the places)
    assert 0.0 <= E.top_decile_lift(y, rng.random(n)) <= perfect + 1e-9
    assert E.top_decile_lift(y, np.zeros(n)) == pytest.approx(1.0)


def test_gains_and_roc_curves():
    g = E.gains_curve([1, 0, 1, 0], [4, 3, 2, 1], points=5)
    assert g["captured"].to_list() == pytest.approx([0.0, 0.5, 0.5, 1.0, 1.0])
    r = E.roc_points([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], points=101)
    # area under the resampled curve approximates the AUC
    assert np.trapezoid(r["tpr"].to_numpy(), r["fpr"].to_numpy()) == pytest.approx(0.75, abs=0.01)


# ---------------------------------------------------------------- probabilities
def test_brier_by_hand():
    assert E.brier([0, 1, 1], [0.2, 0.6, 1.0]) == pytest.approx((0.04 + 0.16 + 0.0) / 3)


def test_ece_of_perfectly_calibrated_probabilities_is_near_zero():
    rng = np.random.default_rng(2)
    p = rng.uniform(0.0, 0.4, 200_000)
    y = (rng.random(p.size) < p).astype(float)
    assert E.expected_calibration_error(y, p) < 0.005
    # the same outcomes against probabilities twice too high: the error is about the mean gap
    assert E.expected_calibration_error(y, np.minimum(2 * p, 1)) == pytest.approx(p.mean(), abs=0.01)


def test_reliability_curve_bins():
    rng = np.random.default_rng(4)
    p = rng.uniform(0, 1, 10_000)
    y = (rng.random(p.size) < p).astype(float)
    rc = E.reliability_curve(y, p, n_bins=10)
    assert rc.height == 10 and rc["count"].sum() == 10_000
    assert (rc["observed_lower"] <= rc["observed"]).all() and (rc["observed"] <= rc["observed_upper"]).all()
    assert np.abs(rc["observed"] - rc["mean_predicted"]).max() < 0.05


@pytest.mark.parametrize("method", ["isotonic", "logistic"])
def test_probability_map_is_calibrated_on_held_out_data(method, tmp_path):
    rng = np.random.default_rng(8)

    def draw(n):
        s = rng.uniform(0, 100, n)
        p = 1 / (1 + np.exp(-(1.0 - 0.06 * s)))  # churn falls as the score rises
        return s, (rng.random(n) < p).astype(float)

    s_train, y_train = draw(40_000)
    s_test, y_test = draw(40_000)
    pm = E.ProbabilityMap(method=method, outcome="churned").fit(s_train, y_train)
    pred = pm.predict(s_test)
    # deciles of the score: pooled steps make many predictions equal, so deciles of the prediction tie
    deciles = np.quantile(s_test, np.linspace(0, 1, 11))
    idx = np.clip(np.searchsorted(deciles[1:-1], s_test, side="right"), 0, 9)
    for d in range(10):
        sel = idx == d
        assert abs(pred[sel].mean() - y_test[sel].mean()) < 0.03, f"decile {d}"
    assert E.expected_calibration_error(y_test, pred) < 0.01
    # frozen as plain data and back: same predictions, through JSON
    pm.save(tmp_path / "pm.json")
    back = E.ProbabilityMap.load(tmp_path / "pm.json")
    assert json.loads((tmp_path / "pm.json").read_text())["method"] == method
    np.testing.assert_allclose(back.predict(s_test[:500]), pred[:500], atol=1e-6)
    # the polars expression agrees with predict, and keeps nulls null
    frame = pl.DataFrame({"score": [*s_test[:200].tolist(), None]})
    got = frame.select(p=pm.expr())["p"]
    np.testing.assert_allclose(got[:200].to_numpy(), pred[:200], atol=1e-9)
    assert got[200] is None
    assert re.fullmatch(
        r"a score of 20 means a \d+% chance \(95% interval \d+% to \d+%\) to churn within 90 days", pm.explain(20)
    )
    never = E.ProbabilityMap.from_dict({"method": "isotonic", "scores": [0, 50, 100], "probabilities": [0.3, 0.0, 0.0]})
    assert never.explain(90) == "a score of 90 means an under 1% chance to churn within 90 days"


def test_probability_map_refuses_untrainable_input():
    with pytest.raises(ValueError, match="with and without the outcome"):
        E.ProbabilityMap().fit([10, 20, 30], [0, 0, 0])
    with pytest.raises(ValueError, match="not fitted"):
        E.ProbabilityMap().predict([10])
    with pytest.raises(ValueError, match="'isotonic' or 'logistic'"):
        E.ProbabilityMap(method="spline")


# ---------------------------------------------------------------- bands and cut-offs
def _wilson_by_formula(k: int, n: int, z: float = stats.norm.ppf(0.975)) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def test_band_table_counts_rates_and_wilson_intervals():
    frame = pl.DataFrame(
        {
            "band": ["red"] * 10 + ["yellow"] * 40 + ["green"] * 50 + [None] * 3,
            "churned": [True] * 4 + [False] * 6 + [True] * 2 + [False] * 38 + [False] * 50 + [True, False, False],
        }
    )
    t = E.band_table(frame, "churned", order=["red", "yellow", "green"])
    assert t["band"].to_list() == ["red", "yellow", "green", "(none)"]
    assert t["count"].to_list() == [10, 40, 50, 3]
    assert t["events"].to_list() == [4, 2, 0, 1]
    assert t["rate"].to_list() == pytest.approx([0.4, 0.05, 0.0, 1 / 3])
    lo, hi = _wilson_by_formula(4, 10)
    assert (t["rate_lower"][0], t["rate_upper"][0]) == pytest.approx((lo, hi))
    assert (round(lo, 4), round(hi, 4)) == (0.1682, 0.6873)  # the textbook Wilson interval for 4/10
    assert t["rate_lower"][2] == pytest.approx(0.0, abs=1e-12) and t["rate_upper"][2] == pytest.approx(
        _wilson_by_formula(0, 50)[1]
    )


def test_red_band_confusion_by_hand():
    frame = pl.DataFrame(
        {"band": ["red", "red", "red", "yellow", "green", "green"], "churned": [True, True, False, True, False, False]}
    )
    c = E.red_band_confusion(frame, "churned")
    assert c == {
        "flagged": 3,
        "hits": 2,
        "false_alarms": 1,
        "misses": 1,
        "precision": pytest.approx(2 / 3),
        "recall": pytest.approx(2 / 3),
    }


def test_cutoff_for_precision_by_hand():
    y = [1, 1, 0, 1, 0, 0, 1]
    s = [10, 20, 30, 40, 50, 60, 70]
    # flag score <= c: precision 1, 1, 2/3, 3/4, 3/5, 1/2, 4/7
    assert E.cutoff_for_precision(y, s, 0.75) == E.Cutoff(40.0, 4, 0.75, 0.75)
    assert E.cutoff_for_precision(y, s, 1.0) == E.Cutoff(20.0, 2, 1.0, 0.5)
    assert E.cutoff_for_precision(y, s, 0.5).cutoff == 70.0
    assert E.cutoff_for_precision([0, 0, 1], [10, 20, 30], 0.9) is None
    # expansion: a high score is the signal, flag score >= c
    assert E.cutoff_for_precision([0, 0, 1, 1], [10, 20, 30, 40], 1.0, outcome="expanded") == E.Cutoff(
        30.0, 2, 1.0, 1.0
    )


@settings(max_examples=60, deadline=None)
@given(scores=st.lists(st.integers(0, 20), min_size=1, max_size=60), k=st.integers(1, 70))
def test_cutoff_for_capacity_never_exceeds_capacity(scores, k):
    c = E.cutoff_for_capacity(scores, k)
    s = np.asarray(scores, dtype=float)
    if c is None:  # only when the lowest tie group alone is larger than k
        assert (s == s.min()).sum() > k
        return
    assert c.flagged == (s <= c.cutoff).sum() <= k
    # as many as fit: the next score up would exceed k
    higher = s[s > c.cutoff]
    if higher.size:
        assert (s <= higher.min()).sum() > k


# ---------------------------------------------------------------- the time split
@pytest.fixture(scope="module")
def portfolio():
    return hs.make_portfolio(n_accounts=500, n_weeks=52, seed=21)


def test_time_split_never_shares_a_date_and_train_labels_stop_at_the_split(portfolio):
    labelled = hs.label_outcomes(portfolio.snapshots, portfolio.events, outcome="churned", horizon="90d")
    train, test, split = E.time_split(labelled, horizon="90d")
    assert not set(train["as_of"].unique()) & set(test["as_of"].unique())
    assert train["as_of"].max() + dt.timedelta(days=90) <= split <= test["as_of"].min()
    d0, d1 = labelled["as_of"].min(), labelled["as_of"].max()
    assert abs((split - d0).days - 0.7 * (d1 - d0).days) <= 1
    # labels computed without any event after the split are the same training labels
    blind = portfolio.events.filter(pl.col("date") <= split)
    relabelled = hs.label_outcomes(portfolio.snapshots, blind, outcome="churned", horizon="90d")
    again = relabelled.join(train.select("account_id", "as_of"), on=["account_id", "as_of"], how="semi")
    assert again.sort("account_id", "as_of")["churned"].to_list() == train["churned"].to_list()
    # an explicit split date, as text
    tr2, te2, s2 = E.time_split(labelled, horizon="90d", split="2026-07-06")
    assert s2 == dt.date(2026, 7, 6) and te2["as_of"].min() >= s2
    with pytest.raises(E.EvaluationError, match="no training rows"):
        E.time_split(labelled, horizon="90d", split=d0)
    with pytest.raises(E.EvaluationError, match="YYYY-MM-DD"):
        E.time_split(labelled, horizon="90d", split="next week")


# ---------------------------------------------------------------- head to head
def _random_weights_score(snapshots: pl.DataFrame, model, seed: int) -> pl.DataFrame:
    """A model with random weights of random sign on the same calibrated sub-scores."""
    subs = hs.calibrate(snapshots, model)
    cols = [c for c in subs.columns if c.startswith("sub_")]
    w = np.random.default_rng(seed).uniform(-1, 1, len(cols))
    num = pl.sum_horizontal([pl.col(c).fill_null(50.0) * float(wi) for c, wi in zip(cols, w)])
    raw = num / float(np.abs(w).sum())  # in -100..100
    return subs.select("account_id", "as_of", score=50.0 + raw / 2.0)


@pytest.fixture(scope="module")
def head_to_head(portfolio):
    model = hs.load_model(MODEL)
    models = {"health": model}
    for seed in (1, 2, 3):
        models[f"random {seed}"] = _random_weights_score(portfolio.snapshots, model, seed)
    rng = np.random.default_rng(0)
    models["noise"] = portfolio.snapshots.select("account_id", "as_of").with_columns(
        score=pl.Series(rng.uniform(0, 100, portfolio.snapshots.height))
    )
    return E.evaluate(portfolio.snapshots, portfolio.events, models, outcome="churned", horizon="90d")


def test_sensible_model_beats_random_weights_on_the_same_holdout(head_to_head):
    t = {r["model"]: r for r in head_to_head.table.iter_rows(named=True)}
    assert list(t) == ["health", "random 1", "random 2", "random 3", "noise"]
    assert len({r["rows"] for r in t.values()}) == 1  # one holdout for all
    for name in ("random 1", "random 2", "random 3", "noise"):
        assert t["health"]["auc"] > t[name]["auc"] + 0.05, name
    assert t["health"]["auc"] > 0.65 and t["health"]["lift_top10"] > 2.0
    assert head_to_head.best() == "health"
    # a pure-noise score: its interval covers the truth, 0.5
    assert t["noise"]["auc_lower"] < 0.5 < t["noise"]["auc_upper"]


def test_evaluation_tables_hang_together(head_to_head, portfolio):
    ev = head_to_head
    h = ev.table.row(0, named=True)
    assert h["events"] == ev.test_events and h["rows"] == ev.test_rows
    assert h["event_rate"] == pytest.approx(ev.test_events / ev.test_rows)
    # per segment: the segment rows add up to the whole
    seg = ev.segments.filter(pl.col("model") == "health")
    assert seg["segment"].to_list()[0] == "(all)"
    parts = seg.filter(pl.col("segment") != "(all)")
    assert set(parts["segment"]) == set(portfolio.snapshots["segment"].unique())
    assert parts["rows"].sum() == h["rows"] and parts["events"].sum() == h["events"]
    # bands: red, yellow, green in order, counts add up, churn falls from red to green
    bands = ev.bands.filter(pl.col("model") == "health")
    assert bands["band"].to_list()[:3] == ["red", "yellow", "green"]
    assert bands["count"].sum() == h["rows"]
    red, yellow, green = bands["rate"].to_list()[:3]
    assert red > green and yellow > green
    assert set(ev.bands["model"]) == {"health"}  # score frames without bands get no band table
    assert h["alarm_band"] == "red"
    assert h["alarm_flagged"] == bands["count"][0]
    assert h["misses"] == h["events"] - bands["events"][0]
    # the probability map is fitted on training rows and is roughly calibrated on the holdout (the
    # sample's churn rate drifts down as the frailest accounts leave, so not exactly)
    assert set(ev.probability_maps) == set(ev.models)
    p = h["event_rate"]
    assert h["ece"] < 0.05 and h["brier"] < 1.1 * p * (1 - p)
    # trajectories: churned accounts score lower than retained ones in the weeks before churn
    tr = ev.trajectories.filter(pl.col("model") == "health", pl.col("weeks_before").is_between(1, 8))
    by_group = dict(tr.group_by("group").agg(pl.col("mean_score").mean()).iter_rows())
    assert by_group["churned"] < by_group["retained"] - 5
    text = ev.summary()
    assert "AUC" in text and "health" in text and "Best by AUC: health" in text
    shown = ev._repr_html_()  # what a notebook displays
    assert shown.count("<table") == 2 and f"{h['auc']:.3f}" in shown


def test_expansion_is_scored_in_its_own_direction(portfolio):
    ev = E.evaluate(
        portfolio.snapshots,
        portfolio.events,
        hs.load_model(MODEL, "expansion"),
        outcome="expanded",
        horizon="90d",
        by=None,
    )
    r = ev.table.row(0, named=True)
    assert r["auc"] > 0.6  # a high expansion index means likely to expand
    assert r["alarm_band"] == ev.band_orders[r["model"]][-1]  # the top band is the one to act on
    assert ev.segments["segment"].to_list() == ["(all)"]


def test_evaluate_errors_name_the_problem(portfolio):
    model = hs.load_model(MODEL)
    with pytest.raises(E.EvaluationError, match="by 'tier'"):
        E.evaluate(portfolio.snapshots, portfolio.events, model, by="tier")
    with pytest.raises(E.EvaluationError, match="lacks column"):
        E.evaluate(portfolio.snapshots, portfolio.events, {"x": pl.DataFrame({"account_id": ["a"]})})
    with pytest.raises(E.EvaluationError, match="no model"):
        E.evaluate(portfolio.snapshots, portfolio.events, [])


# ---------------------------------------------------------------- the report
@pytest.mark.slow
def test_html_report_is_static_and_self_contained(head_to_head, tmp_path):
    paths = head_to_head.save(tmp_path / "report")
    html = (tmp_path / "report" / "evaluation.html").read_text(encoding="utf-8")
    assert html.count("<svg") >= 6  # comparison, ROC, gains, bands, reliability, trajectories
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", html, re.IGNORECASE)
    assert "@import" not in html and "url(http" not in html
    for needle in ("Head to head", "random 1", "red", "yellow", "green", "Wilson"):
        assert needle in html
    table = pl.read_csv(tmp_path / "report" / "evaluation.csv")
    assert table["model"].to_list() == head_to_head.models
    assert json.loads((tmp_path / "report" / "probability_health.json").read_text())["method"] == "isotonic"
    assert len(paths) == 4 + len(head_to_head.models)
    charts = head_to_head.charts()
    assert set(charts) == {"roc", "reliability", "bands", "lift", "trajectories", "comparison"}
    # band colours with their names: the band chart maps each band name to its colour
    spec = json.dumps(charts["bands"].to_dict())
    scale = re.search(r'"scale": (\{"domain": \[[^]]*\], "range": \[[^]]*\]\})', spec)
    colours = dict(zip(*json.loads(scale.group(1)).values()))
    assert {k: colours[k] for k in ("red", "yellow", "green")} == {
        "red": "#A6192E",
        "yellow": "#B07800",
        "green": "#0F7B8A",
    }


# ---------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def cli_inputs(tmp_path_factory, portfolio):
    d = tmp_path_factory.mktemp("cli")
    portfolio.snapshots.write_parquet(d / "snapshots.parquet")
    portfolio.events.write_parquet(d / "events.parquet")
    return d


@pytest.mark.slow
def test_cli_evaluate_writes_the_report_and_prints_the_key_table(cli_inputs, capsys):
    d = cli_inputs
    rc = cli.main(
        [
            "evaluate",
            "--model",
            str(MODEL),
            "--model",
            f"{MODEL}#expansion",
            "--data",
            str(d / "snapshots.parquet"),
            "--events",
            str(d / "events.parquet"),
            "--out",
            str(d / "out"),
            "--split",
            "2026-06-01",
            "--capacity",
            "25",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert (d / "out" / "evaluation.html").is_file() and (d / "out" / "evaluation.csv").is_file()
    assert "AUC [95% CI]" in out and "health" in out and "expansion" in out
    table = pl.read_csv(d / "out" / "evaluation.csv")
    assert table["capacity_k"].to_list() == [25, 25]


@pytest.mark.slow
def test_cli_evaluate_freeze_writes_the_model_with_its_probability_map(cli_inputs):
    d = cli_inputs
    rc = cli.main(
        [
            "evaluate",
            "--model",
            str(MODEL),
            "--data",
            str(d / "snapshots.parquet"),
            "--events",
            str(d / "events.parquet"),
            "--out",
            str(d / "frozen"),
            "--split",
            "2026-06-01",
            "--freeze",
        ]
    )
    assert rc == 0
    frozen = hs.load_model(d / "frozen" / "health_with_probability.toml")
    saved = E.ProbabilityMap.load(d / "frozen" / "probability_health.json")
    assert frozen.probability == saved.to_dict()
    assert frozen.hash == hs.load_model(MODEL).hash


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--split", "soon"], "YYYY-MM-DD"),
        (["--split", "2020-01-01"], "no training rows"),
        (["--by", "tier"], "tier"),
        (["--horizon", "ninety"], "horizon"),
        (["--target-precision", "7"], "target-precision"),
        (["--outcome", "upsold"], "holds no 'upsold' event (it holds: churned, contracted, expanded)"),
    ],
)
def test_cli_evaluate_user_errors_exit_2_with_a_message(cli_inputs, capsys, extra, message):
    d = cli_inputs
    rc = cli.main(
        [
            "evaluate",
            "--model",
            str(MODEL),
            "--data",
            str(d / "snapshots.parquet"),
            "--events",
            str(d / "events.parquet"),
            "--out",
            str(d / "bad"),
            *extra,
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "Traceback" not in err
    assert not (d / "bad" / "evaluation.html").exists()


def test_cli_evaluate_missing_files_and_help(cli_inputs, capsys):
    d = cli_inputs
    rc = cli.main(
        [
            "evaluate",
            "--model",
            str(d / "nope.toml"),
            "--data",
            str(d / "snapshots.parquet"),
            "--events",
            str(d / "events.parquet"),
            "--out",
            str(d / "x"),
        ]
    )
    assert rc == 2 and "nope.toml" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["evaluate", "--help"])
    assert exc.value.code == 0
    assert "--split" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:  # --model is required
        cli.main(["evaluate", "--data", "x", "--events", "y", "--out", "z"])
    assert exc.value.code == 2


@pytest.mark.slow
def test_demo_step_evaluates_the_bundled_model_and_a_fitted_one(tmp_path):
    # a stand-in for the model the fit step writes into the demo folder
    fitted = hs.load_model(MODEL).with_weights(metrics={"seat_utilization": 10.0, "login_days": 0.5})
    fitted.save(tmp_path / "fitted_model.toml")
    line = cli._demo_evaluate(tmp_path)
    table = pl.read_csv(tmp_path / "evaluation" / "evaluation.csv")
    assert table["model"].to_list() == ["health", "health (fitted_model)"]  # same name, told apart by file
    assert table["model_hash"].to_list() == [hs.load_model(MODEL).hash, fitted.hash]
    assert "holdout AUC health" in line and (tmp_path / "evaluation" / "evaluation.html").is_file()
