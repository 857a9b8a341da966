"""Calibration methods: golden tables checked by hand, parameter checks, and properties."""

from __future__ import annotations

import datetime as dt
import doctest
import math

import numpy as np
import polars as pl
import pytest
import tomlkit
from healthscore.core import calibration
from healthscore.core.calibration import (
    METHODS,
    calibrate_expr,
    check_params,
    describe,
    fit_params,
)
from hypothesis import given, settings
from hypothesis import strategies as st

NAN, INF = float("nan"), float("inf")


def run(values, method, params, direction="higher_is_better", dtype=pl.Float64):
    df = pl.DataFrame({"x": values}, schema={"x": dtype})
    return df.select(calibrate_expr("x", method, params, direction))["x"].to_list()


def approx_list(expected):
    """Compare lists with nulls: None must be None, numbers approximately equal."""
    return [None if e is None else pytest.approx(e, abs=1e-9) for e in expected]


def test_docstring_examples_run():
    result = doctest.testmod(calibration)
    assert result.attempted >= 30
    assert result.failed == 0


def test_registry_shape():
    assert set(METHODS) == {
        "thresholds",
        "steps",
        "goal",
        "trend",
        "percentile",
        "log_z",
        "boolean",
        "categorical",
        "monotone_bins",
    }
    assert {m for m, spec in METHODS.items() if spec.fitted} == {"percentile", "log_z", "monotone_bins", "categorical"}
    assert {m for m, spec in METHODS.items() if spec.needs_history} == {"trend"}
    for name, spec in METHODS.items():
        assert spec.name == name
        assert not spec.required & spec.optional
        assert spec.fitted_keys <= spec.required


# ---------------------------------------------------------------------------------- thresholds


def test_thresholds_golden_at_and_around_breakpoints():
    p = {"points": [[1, 0], [3, 50], [5, 100]]}
    values = [-50.0, 0.9, 1.0, 1.1, 2.9, 3.0, 3.1, 4.9, 5.0, 5.1, 1e12, None, NAN, INF, -INF]
    expected = [0, 0, 0, 2.5, 47.5, 50, 52.5, 97.5, 100, 100, 100, None, None, None, None]
    assert run(values, "thresholds", p) == approx_list(expected)


def test_thresholds_going_down_for_lower_is_better():
    p = {"points": [[0, 100], [2, 60], [6, 0]]}
    values = [-1.0, 0.0, 1.0, 1.9, 2.0, 2.1, 3.0, 5.9, 6.0, 6.1, None]
    expected = [100, 100, 80, 62, 60, 58.5, 45, 1.5, 0, 0, None]
    assert run(values, "thresholds", p, "lower_is_better") == approx_list(expected)


def test_thresholds_direction_disagreement_is_refused():
    with pytest.raises(ValueError, match="higher_is_better"):
        calibrate_expr("x", "thresholds", {"points": [[0, 100], [2, 0]]}, "higher_is_better")


def test_thresholds_with_vanishing_spacing_act_as_a_step_not_nan():
    p = {"points": [[0, 0], [2.2e-313, 100]]}  # spacing a CPU may flush to zero
    assert run([-1.0, 0.0, 2.2e-313, 1.0], "thresholds", p) == [0, 0, 100, 100]


def test_integer_column_is_calibrated_like_float():
    assert run([0, 2, 6, None], "thresholds", {"points": [[0, 0], [4, 100]]}, dtype=pl.Int64) == [0, 50, 100, None]


def test_params_from_toml_work_unchanged():
    doc = tomlkit.parse("points = [[0, 0], [2.5, 40], [5, 100]]  # days a week\n")
    assert check_params("thresholds", doc) == []
    assert run([2.5, 3.75], "thresholds", doc) == approx_list([40, 70])


# ---------------------------------------------------------------------------------------- steps


def test_steps_golden():
    p = {"edges": [7, 9], "scores": [0, 50, 100]}
    values = [-3.0, 6.99, 7.0, 7.01, 8.99, 9.0, 9.01, 10.0, None, NAN]
    expected = [0, 0, 50, 50, 50, 100, 100, 100, None, None]
    assert run(values, "steps", p) == expected


def test_steps_lower_is_better_and_single_step():
    p = {"edges": [1, 3], "scores": [100, 40, 0]}
    assert run([0.0, 0.99, 1.0, 2.99, 3.0, 50.0, None], "steps", p, "lower_is_better") == [100, 100, 40, 40, 0, 0, None]
    assert run([-1.0, 5.0, None], "steps", {"edges": [], "scores": [70]}) == [70, 70, None]


# ----------------------------------------------------------------------------------------- goal


def goal_frame(rows):
    """rows: (as_of, goal_start, goal_due, goal_progress)."""
    return pl.DataFrame(
        rows,
        schema={"as_of": pl.Date, "goal_start": pl.Date, "goal_due": pl.Date, "goal_progress": pl.Float64},
        orient="row",
    )


D = dt.date
START, DUE = D(2024, 1, 1), D(2024, 1, 31)  # 30 days
GOAL = {"start_column": "goal_start", "due_column": "goal_due"}


def test_goal_golden_with_dates():
    df = goal_frame(
        [
            (D(2023, 12, 25), START, DUE, 0.3),  # before the goal starts -> null
            (D(2024, 1, 1), START, DUE, 0.3),  # start day: nothing expected yet -> null
            (D(2024, 1, 2), START, DUE, 1 / 60),  # the day after: expected 1/30, half of it reached
            (D(2024, 1, 16), START, DUE, 0.25),  # half way: expected 0.5 -> attainment 0.5
            (D(2024, 1, 16), START, DUE, 0.5),  # on pace
            (D(2024, 1, 16), START, DUE, 0.6),  # ahead of pace, clipped
            (D(2024, 1, 16), START, DUE, 0.0),
            (D(2024, 1, 7), START, DUE, 0.1),  # 6/30 elapsed: expected 0.2
            (D(2024, 1, 31), START, DUE, 0.9),  # due day: full target expected
            (D(2024, 2, 15), START, DUE, 0.8),  # after the due date: full target expected
            (D(2024, 1, 16), START, DUE, None),  # not measured
            (D(2024, 1, 16), None, DUE, 0.5),  # no goal set
        ]
    )
    out = df.select(calibrate_expr("goal_progress", "goal", GOAL))["goal_progress"].to_list()
    assert out == approx_list([None, None, 50, 50, 100, 100, 0, 50, 90, 80, None, None])


def test_goal_target_zero_at_full_at_and_direction():
    df = goal_frame([(D(2024, 1, 16), START, DUE, v) for v in (0.4, 0.5, 0.75, 0.9, 1.0)])
    p = {**GOAL, "target": 2.0, "zero_at": 0.5, "full_at": 1.0}  # expected by now: 1.0
    out = df.select(calibrate_expr("goal_progress", "goal", p))["goal_progress"].to_list()
    assert out == approx_list([0, 0, 50, 80, 100])
    flipped = df.select(calibrate_expr("goal_progress", "goal", p, "lower_is_better"))["goal_progress"].to_list()
    assert flipped == approx_list([100, 100, 50, 20, 0])


def test_goal_too_early_to_judge_below_min_expected():
    days = [D(2024, 1, 2), D(2024, 1, 3), D(2024, 1, 4)]  # expected 1/30, 2/30, 3/30 of the target
    df = goal_frame([(day, START, DUE, 0.05) for day in days])
    p = {**GOAL, "min_expected": 0.1}
    out = df.select(calibrate_expr("goal_progress", "goal", p))["goal_progress"].to_list()
    assert out == approx_list([None, None, 50])
    # the default threshold is 2% of the target: a 100-day goal is judged from its third day on
    long_goal = goal_frame(
        [(D(2024, 1, 2), START, D(2024, 4, 10), 0.005), (D(2024, 1, 3), START, D(2024, 4, 10), 0.005)]
    )
    out = long_goal.select(calibrate_expr("goal_progress", "goal", GOAL))["goal_progress"].to_list()
    assert out == approx_list([None, 25])


def test_goal_zero_length_period_and_custom_date_column():
    df = goal_frame([(D(2024, 1, 1), START, START, 0.5), (D(2024, 1, 2), START, START, 0.5)])
    df = df.rename({"as_of": "week"})
    p = {**GOAL, "date_column": "week"}
    assert df.select(calibrate_expr("goal_progress", "goal", p))["goal_progress"].to_list() == [None, 50.0]


# ---------------------------------------------------------------------------------------- trend

TREND = {"window": 2, "points": [[-0.5, 0], [0, 60], [0.5, 100]], "min_base": 1}


def history():
    rows = []
    for acct, values in {
        "a": [10, 10, 5, 5, 5],  # halves, then partly recovers in the window
        "b": [0, 0, 0.2, 0.2],  # tiny base: min_base keeps the change finite
        "c": [4, None, 4, 6, None],  # nulls inside a window are skipped
        "d": [1, 2, 3],  # fewer than 2 x window snapshots
        "e": [3, 3, 3, 3],  # flat: no change
    }.items():
        for week, v in enumerate(values):
            rows.append((acct, D(2024, 1, 1) + dt.timedelta(weeks=week), None if v is None else float(v)))
    df = pl.DataFrame(rows, schema={"account_id": pl.Utf8, "as_of": pl.Date, "x": pl.Float64}, orient="row")
    # shuffled on purpose: the method must order by as_of itself
    return df.sample(fraction=1.0, shuffle=True, seed=7)


def test_trend_golden_with_account_history():
    df = history()
    out = df.with_columns(s=calibrate_expr("x", "trend", TREND)).sort("account_id", "as_of")
    expected = {
        "a": [None, None, None, 0, 20],  # -50% then (5 - 7.5) / 7.5 = -33.3% -> 60 * (1 - 2/3)
        "b": [None, None, None, 76],  # (0.2 - 0) / max(0, 1) = +20% -> 60 + 40 * 0.4
        "c": [None, None, None, 80, None],  # mean(4, 6) = 5 vs mean(4) = 4 -> +25%; current null -> null
        "d": [None, None, None],
        "e": [None, None, None, 60],
    }
    for acct, exp in expected.items():
        got = out.filter(pl.col("account_id") == acct)["s"].to_list()
        assert got == approx_list(exp), acct


def test_trend_without_min_base_saturates_instead_of_exploding():
    df = history().filter(pl.col("account_id") == "b")
    p = {k: v for k, v in TREND.items() if k != "min_base"}
    out = df.with_columns(s=calibrate_expr("x", "trend", p)).sort("as_of")["s"].to_list()
    assert out == [None, None, None, 100.0]


def test_trend_custom_key_columns():
    df = history().rename({"account_id": "acct", "as_of": "week"})
    p = {**TREND, "account_column": "acct", "date_column": "week"}
    out = df.with_columns(s=calibrate_expr("x", "trend", p)).filter(pl.col("acct") == "a").sort("week")
    assert out["s"].to_list() == approx_list([None, None, None, 0, 20])


# ----------------------------------------------------------------------------------- percentile


def test_percentile_golden():
    p = {"quantiles": [0, 10, 20, 40, 100]}  # percentiles 0, 25, 50, 75, 100
    values = [-1.0, 0.0, 5.0, 9.9, 10.0, 10.1, 30.0, 40.0, 70.0, 99.9, 100.0, 100.1, 1000.0, None, NAN]
    expected = [0, 0, 12.5, 24.75, 25, 25.25, 62.5, 75, 87.5, 75 + 59.9 * 25 / 60, 100, 100, 100, None, None]
    assert run(values, "percentile", p) == approx_list(expected)
    flipped = [None if e is None else 100 - e for e in expected]
    assert run(values, "percentile", p, "lower_is_better") == approx_list(flipped)


def test_percentile_mass_point_gets_middle_of_its_range():
    p = {"quantiles": [0, 0, 0, 10, 20]}  # 0 covers percentiles 0..50
    assert run([-1.0, 0.0, 5.0, 10.0, 20.0, 21.0], "percentile", p) == approx_list([0, 25, 50, 75, 100, 100])
    assert run([2.0, 3.0, 4.0], "percentile", {"quantiles": [3, 3]}) == [0.0, 50.0, 100.0]
    assert run([-1.0, 0.0, 5.0, 10.0, 11.0], "percentile", {"quantiles": [0, 5, 10, 10, 10]}) == approx_list(
        [0, 0, 25, 75, 100]
    )


def test_percentile_fit_freezes_quantiles():
    ref = pl.Series("x", [float(v) for v in range(101)] + [None, NAN, INF])
    fitted = fit_params("percentile", ref, {"n_quantiles": 5})
    assert fitted == {"n_quantiles": 5, "quantiles": [0.0, 25.0, 50.0, 75.0, 100.0]}
    assert len(fit_params("percentile", ref, {})["quantiles"]) == 101
    assert all(type(q) is float for q in fitted["quantiles"])
    with pytest.raises(ValueError, match="no finite values"):
        fit_params("percentile", pl.Series("x", [None, NAN], dtype=pl.Float64), {})


# ---------------------------------------------------------------------------------------- log_z


def test_log_z_golden():
    p = {"center": 1.0, "scale": 0.5, "clip": 2.0}

    def raw(z):  # the raw value whose log1p sits z standard deviations from the centre
        return math.exp(1.0 + 0.5 * z) - 1

    values = [
        0.0,
        raw(-2.1),
        raw(-2.0),
        raw(-1.9),
        raw(-1),
        raw(0),
        raw(1),
        raw(1.9),
        raw(2.0),
        raw(2.1),
        1e9,
        -1.0,
        -2.0,
        None,
        NAN,
    ]
    expected = [0, 0, 0, 2.5, 25, 50, 75, 97.5, 100, 100, 100, None, None, None, None]
    assert run(values, "log_z", p) == approx_list(expected)
    assert run(values, "log_z", p, "lower_is_better") == approx_list([None if e is None else 100 - e for e in expected])


def test_log_z_fit_and_default_clip():
    ref = pl.Series("x", [math.exp(v) - 1 for v in (1.0, 3.0)] * 10)
    fitted = fit_params("log_z", ref, {})
    assert fitted["center"] == pytest.approx(2.0)
    assert fitted["scale"] == pytest.approx(1.0)
    assert fitted["clip"] == 2.5
    # z = +1 of 2.5 -> 70
    assert run([math.exp(3.0) - 1], "log_z", fitted) == approx_list([70])
    constant = fit_params("log_z", pl.Series("x", [4.0] * 5), {})
    assert constant["scale"] == 1.0 and run([4.0], "log_z", constant) == approx_list([50])


# ---------------------------------------------------------------------------- boolean, categorical


def test_boolean_golden():
    p = {"true_score": 100, "false_score": 0}
    assert run([1.0, 0.0, None, 0.5, NAN, 2.0], "boolean", p) == [100, 0, None, None, None, None]
    assert run([True, False, None], "boolean", p, dtype=pl.Boolean) == [100, 0, None]
    bad = {"true_score": 0, "false_score": 100}
    assert run([1.0, 0.0], "boolean", bad, "lower_is_better") == [0, 100]


def test_categorical_numeric_levels_and_labels():
    p = {
        "map": {"1": 0, "2": 25, "3": 50, "4": 75, "5": 100},
        "labels": {"1": "at risk", "3": "steady", "5": "advocate"},
    }
    assert run([1.0, 2.0, 3.0, 4.0, 5.0, 2.5, 6.0, None, NAN], "categorical", p) == [
        0,
        25,
        50,
        75,
        100,
        None,
        None,
        None,
        None,
    ]
    assert run([1, 5, 9, None], "categorical", p, dtype=pl.Int64) == [0, 100, None, None]
    assert run(["1", "4", "x"], "categorical", p, dtype=pl.Utf8) == [0, 75, None]


def test_categorical_text_levels():
    p = {"map": {"gold": 100, "silver": 60, "true": 5}}
    assert run(["gold", "silver", "Gold", None], "categorical", p, dtype=pl.Utf8) == [100, 60, None, None]
    assert run([True, False], "categorical", p, dtype=pl.Boolean) == [5, None]


# -------------------------------------------------------------------------------- monotone_bins


def staircase(rates=(0.4, 0.2, 0.3, 0.1), per_bin=250):
    """Values 0..999 in four quartile bins with a known event rate each."""
    values = np.arange(per_bin * len(rates), dtype=float)
    outcome = np.zeros_like(values, dtype=bool)
    for k, r in enumerate(rates):
        outcome[k * per_bin : k * per_bin + int(r * per_bin)] = True
    return pl.Series("x", values), pl.Series("churned", outcome)


def test_monotone_bins_pools_violators_and_scores_by_rate():
    values, outcome = staircase()
    fitted = fit_params("monotone_bins", values, {"n_bins": 4, "min_bin_size": 50}, outcome=outcome)
    # bins 1 (20%) and 2 (30%) violate "risk falls as the metric rises" and are pooled at 25%
    assert fitted["edges"] == [250.0, 750.0]  # each bin starts at a value seen in the data
    assert fitted["rates"] == pytest.approx([0.4, 0.25, 0.1])
    assert fitted["counts"] == [250, 500, 250]
    assert fitted["scores"] == pytest.approx([0, 50, 100])
    assert check_params("monotone_bins", fitted, "higher_is_better") == []
    assert run([0.0, 249.9, 250.0, 749.9, 750.0, 5000.0, None], "monotone_bins", fitted) == [
        0,
        0,
        50,
        50,
        100,
        100,
        None,
    ]


def test_monotone_bins_against_a_good_outcome():
    # expansion: the more of the metric, the more expansions; the highest-rate bin scores 100
    values, outcome = staircase(rates=(0.1, 0.3, 0.2, 0.4))
    fitted = fit_params(
        "monotone_bins", values, {"n_bins": 4, "outcome_is": "good"}, "higher_is_better", outcome=outcome
    )
    assert fitted["rates"] == pytest.approx([0.1, 0.25, 0.4])
    assert fitted["scores"] == pytest.approx([0, 50, 100])
    assert check_params("monotone_bins", {"outcome_is": "great"}, require_fitted=False) == [
        "'outcome_is' must be \"bad\" (e.g. churned) or \"good\" (e.g. expanded), got 'great'"
    ]


def test_monotone_bins_keep_the_tail_above_a_mass_point():
    # 90% of accounts have no severe ticket; quantile edges alone would leave a single bin
    values = pl.Series("high_sev_tickets", [0.0] * 900 + [1.0] * 60 + [2.0] * 30 + [4.0] * 10)
    outcome = pl.Series(
        "churned",
        [False] * 855 + [True] * 45 + [False] * 48 + [True] * 12 + [False] * 21 + [True] * 9 + [False] * 5 + [True] * 5,
    )
    fitted = fit_params("monotone_bins", values, {"n_bins": 10, "min_bin_size": 10}, "lower_is_better", outcome=outcome)
    assert fitted["edges"] == [1.0, 2.0, 4.0]
    assert fitted["counts"] == [900, 60, 30, 10]
    assert fitted["rates"] == pytest.approx([0.05, 0.2, 0.3, 0.5])
    assert fitted["scores"] == pytest.approx([100, 100 * 0.3 / 0.45, 100 * 0.2 / 0.45, 0])


def test_monotone_bins_lower_is_better_and_no_signal():
    values, outcome = staircase(rates=(0.1, 0.3, 0.2, 0.4))
    fitted = fit_params("monotone_bins", values, {"n_bins": 4}, "lower_is_better", outcome=outcome)
    assert fitted["rates"] == pytest.approx([0.1, 0.25, 0.4])
    assert fitted["scores"] == pytest.approx([100, 50, 0])
    # a metric that goes the wrong way entirely collapses into one bin: no information, 50 for all
    wrong = fit_params(
        "monotone_bins", values, {"n_bins": 4}, "higher_is_better", outcome=pl.Series(np.sort(outcome.to_numpy()))
    )
    assert wrong["edges"] == [] and wrong["scores"] == [50.0]


def test_monotone_bins_respect_min_bin_size():
    rng = np.random.default_rng(3)
    v = rng.exponential(2.0, 1000)
    y = rng.random(1000) < 1 / (1 + np.exp(v - 1.0))
    fitted = fit_params(
        "monotone_bins", pl.Series("x", v), {"n_bins": 10, "min_bin_size": 300}, outcome=pl.Series("y", y)
    )
    assert sum(fitted["counts"]) == 1000
    assert min(fitted["counts"]) >= 300
    assert np.all(np.diff(fitted["rates"]) <= 0)
    assert len(fitted["scores"]) == len(fitted["edges"]) + 1


def test_monotone_bins_fit_errors():
    values, outcome = staircase()
    with pytest.raises(ValueError, match="needs an outcome"):
        fit_params("monotone_bins", values, {})
    with pytest.raises(ValueError, match="0/1 or Boolean"):
        fit_params("monotone_bins", values, {}, outcome=pl.Series([2.0] * len(values)))
    with pytest.raises(ValueError, match="differ in length"):
        fit_params("monotone_bins", values, {}, outcome=outcome.head(10))


def test_fit_params_leaves_unfitted_methods_alone():
    p = {"points": [[0, 0], [1, 100]]}
    assert fit_params("thresholds", pl.Series([1.0, 2.0]), p) == p
    with pytest.raises(ValueError, match="unknown calibration method"):
        fit_params("nope", pl.Series([1.0]), {})


# -------------------------------------------------------------- both evaluation plans, engines


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 40),
    st.lists(st.one_of(st.none(), st.floats(-200, 200)), min_size=1, max_size=50),
    st.randoms(use_true_random=False),
)
def test_property_chain_and_numpy_plans_agree_with_numpy(n_points, values, rnd):
    # up to 12 breakpoints run as a when/then chain, more through numpy: both must match np.interp
    xs = sorted(rnd.sample(range(-150, 150), n_points))
    ys = sorted(rnd.uniform(0, 100) for _ in xs)
    got = run(values, "thresholds", {"points": [[x, y] for x, y in zip(xs, ys)]})
    want = [None if v is None else float(np.interp(v, xs, ys)) for v in values]
    assert got == approx_list(want)
    edges = xs[:-1]
    scores = ys
    got_steps = run(values, "steps", {"edges": edges, "scores": scores})
    want_steps = [None if v is None else scores[int(np.searchsorted(edges, v, side="right"))] for v in values]
    assert got_steps == want_steps


def test_lazy_streaming_gives_the_same_scores():
    rng = np.random.default_rng(5)
    df = history().vstack(history().with_columns(pl.col("account_id") + "2"))
    df = df.with_columns(y=pl.Series(rng.gamma(2, 2, df.height)))
    exprs = [
        calibrate_expr("x", "trend", TREND).alias("t"),
        calibrate_expr("y", "percentile", {"quantiles": list(np.linspace(0, 12, 101))}).alias("p"),
        calibrate_expr("y", "thresholds", {"points": [[0, 0], [2, 50], [8, 100]]}).alias("th"),
    ]
    eager = df.with_columns(exprs).sort("account_id", "as_of")
    streamed = df.lazy().with_columns(exprs).collect(engine="streaming").sort("account_id", "as_of")
    assert streamed.equals(eager)
    assert eager["p"].null_count() == 0 and eager["t"].null_count() < eager.height


# ---------------------------------------------------------------------------------- check_params


@pytest.mark.parametrize(
    "method, params, direction, fragment",
    [
        ("thresold", {}, None, "unknown calibration method 'thresold' (did you mean 'thresholds'?)"),
        ("thresholds", {}, None, "missing parameter 'points'"),
        ("thresholds", {"points": [[0, 0], [1, 100]], "slope": 2}, None, "unknown parameter 'slope'"),
        (
            "thresholds",
            {"points": [[0, 0], [0, 100]]},
            None,
            "raw values must be strictly increasing: 0 is followed by 0",
        ),
        (
            "thresholds",
            {"points": [[3, 0], [1, 100]]},
            None,
            "raw values must be strictly increasing: 3 is followed by 1",
        ),
        ("thresholds", {"points": [[0, 0]]}, None, "at least two [raw, score] pairs"),
        ("thresholds", {"points": [[0, "low"], [1, 100]]}, None, "at least two [raw, score] pairs"),
        ("thresholds", {"points": [[0, 0], [1, 120]]}, None, "must lie in 0..100, got 120"),
        (
            "thresholds",
            {"points": [[0, 100], [1, 0]]},
            "higher_is_better",
            "scores go down although direction is higher_is_better",
        ),
        (
            "thresholds",
            {"points": [[0, 0], [1, 100]]},
            "lower_is_better",
            "scores go up although direction is lower_is_better",
        ),
        ("thresholds", {"points": [[0, 0], [1, 100]]}, "up", "direction must be one of"),
        ("steps", {"edges": [1, 2], "scores": [0, 100]}, None, "one more entry than 'edges'"),
        (
            "steps",
            {"edges": [2, 1], "scores": [0, 50, 100]},
            None,
            "'edges' must be strictly increasing: 2 is followed by 1",
        ),
        ("steps", {"edges": [1], "scores": [100, 0]}, "higher_is_better", "scores go down"),
        ("steps", {"edges": [True], "scores": [0, 100]}, None, "'edges' must be a list"),
        ("goal", {"start_column": "goal_start"}, None, "missing parameter 'due_column'"),
        ("goal", {**GOAL, "target": 0}, None, "'target' must be positive"),
        (
            "goal",
            {**GOAL, "full_at": 0.5, "zero_at": 0.5},
            None,
            "'full_at' (0.5) must be greater than 'zero_at' (0.5)",
        ),
        ("goal", {"start_column": 3, "due_column": "goal_due"}, None, "'start_column' must be a column name"),
        ("goal", {**GOAL, "min_expected": -0.1}, None, "'min_expected' must not be negative"),
        ("trend", {"window": 0, "points": [[-1, 0], [1, 100]]}, None, "'window' must be a positive integer"),
        ("trend", {"window": 2.5, "points": [[-1, 0], [1, 100]]}, None, "'window' must be a positive integer"),
        (
            "trend",
            {"window": 2, "points": [[-1, 0], [1, 100]], "min_base": -1},
            None,
            "'min_base' must be a positive number",
        ),
        ("percentile", {"quantiles": [3, 2, 5]}, None, "'quantiles' must be non-decreasing: 3 is followed by 2"),
        ("percentile", {"quantiles": [3]}, None, "'quantiles' must be a list of at least 2"),
        ("percentile", {}, None, "missing parameter 'quantiles' for method 'percentile' (fit it with fit_params)"),
        ("log_z", {"center": 1.0, "scale": 0.0}, None, "'scale' must be a positive number"),
        ("log_z", {"center": "mid", "scale": 1.0}, None, "'center' must be a number"),
        ("boolean", {"true_score": 100}, None, "missing parameter 'false_score'"),
        (
            "boolean",
            {"true_score": 100, "false_score": 0},
            "lower_is_better",
            "disagree with direction lower_is_better",
        ),
        ("boolean", {"true_score": True, "false_score": 0}, None, "'true_score' must be a number in 0..100"),
        ("categorical", {"map": {}}, None, "'map' must be a non-empty table"),
        ("categorical", {"map": {"1": 150}}, None, "'map' level '1' must map to a number in 0..100"),
        ("categorical", {"map": {"1": 0}, "labels": {"2": "ok"}}, None, "'labels' has level '2' that is not in 'map'"),
        (
            "monotone_bins",
            {"n_bins": 10},
            None,
            "missing parameter 'edges' for method 'monotone_bins' (fit it with fit_params)",
        ),
        ("monotone_bins", {"edges": [1], "scores": [0, 100], "n_bins": 1}, None, "'n_bins' must be an integer >= 2"),
        ("monotone_bins", {"edges": [1], "scores": [100, 0]}, "higher_is_better", "scores go down"),
        ("monotone_bins", {"edges": [1], "scores": [0, 100], "outcome_is": "churn"}, None, "'outcome_is' must be"),
    ],
)
def test_check_params_messages(method, params, direction, fragment):
    msgs = check_params(method, params, direction)
    assert any(fragment in m for m in msgs), msgs
    # the same problem stops the expression from being built
    with pytest.raises(ValueError, match=f"calibration '{method}'" if method in METHODS else "unknown"):
        calibrate_expr("x", method, params, direction or "higher_is_better")


def test_check_params_accepts_good_params_and_unfitted_models():
    good = {
        "thresholds": {"points": [[0, 0], [5, 100]]},
        "steps": {"edges": [1], "scores": [0, 100]},
        "goal": GOAL,
        "trend": TREND,
        "percentile": {"quantiles": [0, 1, 2]},
        "log_z": {"center": 0.0, "scale": 1.0, "clip": 3},
        "boolean": {"true_score": 100, "false_score": 0},
        "categorical": {"map": {"1": 0, "2": 100}, "labels": {"1": "poor"}},
        "monotone_bins": {"edges": [1.0], "scores": [0.0, 100.0], "n_bins": 5},
    }
    assert set(good) == set(METHODS)
    for method, params in good.items():
        assert check_params(method, params, "higher_is_better") == [], method
        assert isinstance(describe(method, params), str) and describe(method, params)
    assert check_params("percentile", {"n_quantiles": 11}, require_fitted=False) == []
    assert check_params("monotone_bins", {"n_bins": 1}, require_fitted=False) == [
        "'n_bins' must be an integer >= 2, got 1"
    ]
    assert check_params("log_z", {}, require_fitted=False) == []
    assert check_params("thresholds", [1, 2]) == ["parameters of method 'thresholds' must be a table, got list"]


def test_describe_lines():
    assert describe("thresholds", {"points": [[0, 0], [5, 100]]}, unit="days") == (
        "0 at 0 days or less, 100 at 5 days or more, linear in between"
    )
    assert describe("trend", TREND) == (
        "change of the mean over the last 2 snapshots against the 2 before: "
        "0 at -50% or less, 60 at +0%, 100 at +50% or more, linear in between"
    )
    assert describe("log_z", {"center": 0.0, "scale": 1.0, "clip": 1.0}, "lower_is_better") == (
        "100 at -0.6321 or less, 50 at 0, 0 at 1.718 or more, on a log scale"
    )
    assert describe("percentile", {"quantiles": [0, 10, 20]}) == (
        "percentile in the reference population (median 10); the highest values score 100"
    )
    assert describe("percentile", {}) == "percentile in a reference population (not fitted yet)"
    assert describe("boolean", {"true_score": 0, "false_score": 100}) == "yes: 0, no: 100"


# ------------------------------------------------------------------------------------ properties

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
raw_values = st.lists(st.one_of(st.none(), finite, st.sampled_from([NAN, INF, -INF])), min_size=1, max_size=40)


@st.composite
def monotone_points(draw, direction="higher_is_better"):
    xs = sorted(set(draw(st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=2, max_size=8))))
    if len(xs) < 2:
        xs = [xs[0], xs[0] + 1.0]
    scores = sorted(draw(st.lists(st.floats(0, 100), min_size=len(xs), max_size=len(xs))))
    if direction == "lower_is_better":
        scores = scores[::-1]
    return [[x, s] for x, s in zip(xs, scores)]


@st.composite
def any_method(draw):
    """A method with valid parameters and a direction they agree with."""
    direction = draw(st.sampled_from(["higher_is_better", "lower_is_better"]))
    method = draw(
        st.sampled_from(["thresholds", "steps", "percentile", "log_z", "monotone_bins", "boolean", "categorical"])
    )
    if method == "thresholds":
        params = {"points": draw(monotone_points(direction))}
    elif method in ("steps", "monotone_bins"):
        edges = sorted(set(draw(st.lists(st.floats(-1e4, 1e4, allow_nan=False), max_size=6))))
        scores = sorted(draw(st.lists(st.floats(0, 100), min_size=len(edges) + 1, max_size=len(edges) + 1)))
        params = {"edges": edges, "scores": scores[::-1] if direction == "lower_is_better" else scores}
    elif method == "percentile":
        params = {"quantiles": sorted(draw(st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=2, max_size=30)))}
    elif method == "log_z":
        params = {
            "center": draw(st.floats(-5, 20)),
            "scale": draw(st.floats(0.01, 10)),
            "clip": draw(st.floats(0.5, 5)),
        }
    elif method == "boolean":
        a, b = sorted(draw(st.lists(st.floats(0, 100), min_size=2, max_size=2)))
        params = (
            {"true_score": b, "false_score": a}
            if direction == "higher_is_better"
            else {"true_score": a, "false_score": b}
        )
    else:
        levels = draw(st.lists(st.integers(-3, 9), min_size=1, max_size=6, unique=True))
        params = {"map": {str(k): draw(st.floats(0, 100)) for k in levels}}
    return method, params, direction


@settings(max_examples=150, deadline=None)
@given(any_method(), raw_values)
def test_property_bounds_and_null_in_null_out(spec, values):
    method, params, direction = spec
    out = run(values, method, params, direction)
    assert len(out) == len(values)
    for v, s in zip(values, out):
        if s is not None:
            assert 0.0 <= s <= 100.0
        if v is None or not math.isfinite(v):
            assert s is None
        elif method in ("thresholds", "steps", "percentile", "monotone_bins"):
            assert s is not None  # total methods score every finite value
        elif method == "log_z" and v > -1:
            assert s is not None


@settings(max_examples=150, deadline=None)
@given(any_method(), st.lists(finite, min_size=2, max_size=40))
def test_property_monotone_in_stated_direction(spec, values):
    method, params, direction = spec
    if method in ("boolean", "categorical"):
        return  # level maps have no order to respect
    xs = sorted(values)
    out = run(xs, method, params, direction)
    pairs = [(a, b) for a, b in zip(out, out[1:]) if a is not None and b is not None]
    for a, b in pairs:
        if direction == "higher_is_better":
            assert b >= a - 1e-9
        else:
            assert b <= a + 1e-9


@settings(max_examples=60, deadline=None)
@given(
    st.lists(finite, min_size=5, max_size=200),
    st.lists(finite, min_size=1, max_size=20),
    st.floats(-1e6, 1e6),
    st.sampled_from(["higher_is_better", "lower_is_better"]),
)
def test_property_percentile_frozen_against_a_shifted_population(reference, probe, shift, direction):
    fitted = fit_params("percentile", pl.Series("x", reference), {"n_quantiles": 21}, direction)
    expr = calibrate_expr("x", "percentile", fitted, direction)
    alone = pl.DataFrame({"x": probe}).select(expr)["x"].to_list()
    # the same probe values scored inside a population shifted by `shift` get the same scores
    crowd = pl.DataFrame({"x": probe + [r + shift for r in reference]}).select(expr)["x"].to_list()
    assert crowd[: len(probe)] == alone


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-(10**6), 10**6), min_size=2, max_size=60, unique=True),
    st.sampled_from(["higher_is_better", "lower_is_better"]),
)
def test_property_percentile_of_the_reference_itself(reference, direction):
    # with one quantile per reference value, the i-th smallest value sits at percentile 100*i/(n-1)
    # (distinct integers: np.quantile cannot tell apart values closer than its rounding)
    reference = [float(r) / 8 for r in reference]
    n = len(reference)
    fitted = fit_params("percentile", pl.Series("x", reference), {"n_quantiles": n}, direction)
    got = run(sorted(reference), "percentile", fitted, direction)
    expected = np.linspace(0, 100, n)
    if direction == "lower_is_better":
        expected = 100 - expected
    assert got == pytest.approx(list(expected), abs=1e-3)  # np.quantile rounds in the last bits


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 50, allow_nan=False), st.booleans()), min_size=20, max_size=300),
    st.sampled_from(["higher_is_better", "lower_is_better"]),
    st.sampled_from(["bad", "good"]),
    st.integers(2, 12),
    st.integers(1, 40),
)
def test_property_monotone_bins_rates_are_monotone(rows, direction, outcome_is, n_bins, min_bin_size):
    values = pl.Series("x", [r[0] for r in rows])
    outcome = pl.Series("y", [r[1] for r in rows])
    settings_ = {"n_bins": n_bins, "min_bin_size": min_bin_size, "outcome_is": outcome_is}
    fitted = fit_params("monotone_bins", values, settings_, direction, outcome=outcome)
    rates = np.asarray(fitted["rates"])
    assert sum(fitted["counts"]) == len(rows)
    if len(rates) > 1:
        assert min(fitted["counts"]) >= min_bin_size
        # strictly monotone: rates fall along a better metric for a bad outcome, rise for a good one
        rising = (direction == "lower_is_better") == (outcome_is == "bad")
        steps = np.diff(rates)
        assert np.all(steps > 0) if rising else np.all(steps < 0)
        assert min(fitted["scores"]) == 0 and max(fitted["scores"]) == 100
    assert check_params("monotone_bins", fitted, direction) == []
    # the stored rates are the real event rates of the rows that fall in each bin
    idx = np.searchsorted(fitted["edges"], values.to_numpy(), side="right")
    y = outcome.to_numpy().astype(float)
    for k, r in enumerate(rates):
        assert y[idx == k].mean() == pytest.approx(r, abs=1e-6)  # stored rounded to 6 decimals


# ------------------------------------------------------------------------------ command line

SMALL_MODEL = """\
# a small model whose sub-scores are learnt from data
[model]
name = "learnt"
version = "1.0.0"
min_coverage = 0.3

[categories.usage]
weight = 1

[[metrics]]
name = "api_calls"
column = "api_calls"
category = "usage"
method = "percentile"
weight = 1
[metrics.params]
n_quantiles = 11                # deciles

[[metrics]]
name = "login_days"
column = "login_days"
category = "usage"
method = "monotone_bins"
weight = 2
[metrics.params]
n_bins = 4
min_bin_size = 100
"""


@pytest.fixture(scope="module")
def small_book(tmp_path_factory):
    from tests.conftest import book_on_disk

    folder, book = book_on_disk(tmp_path_factory, "book", seed=11)
    (folder / "model.toml").write_text(SMALL_MODEL)
    return folder, book


def test_cli_calibrate_freezes_fitted_settings(small_book, capsys):
    from healthscore.analysis.fitting import label_outcomes
    from healthscore.app import cli
    from healthscore.spec.model import load_model

    folder, book = small_book
    out = folder / "fitted.toml"
    argv = [
        "calibrate",
        "--model",
        str(folder / "model.toml"),
        "--data",
        str(folder / "snapshots.parquet"),
        "--events",
        str(folder / "events.parquet"),
        "--out",
        str(out),
    ]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "api_calls" in printed and "percentile in the reference population" in printed
    assert "login_days" in printed and "(bins fitted against the outcome)" in printed

    model = load_model(out)
    params = {m.name: m.params for m in model.metrics}
    # the monotone bins were fitted on the labelled snapshots, exactly as fit_params does it
    labelled = label_outcomes(book.snapshots, book.events, outcome="churned", horizon="90d")
    expected = fit_params(
        "monotone_bins", labelled["login_days"], {"n_bins": 4, "min_bin_size": 100}, outcome=labelled["churned"]
    )
    assert params["login_days"]["edges"] == pytest.approx(expected["edges"])
    assert params["login_days"]["scores"] == pytest.approx(expected["scores"])
    assert len(params["api_calls"]["quantiles"]) == 11
    assert "# a small model whose sub-scores are learnt from data" in out.read_text()  # comments kept
    assert all(check_params(m.method, m.params, m.direction) == [] for m in model.metrics)

    # an existing output is not replaced silently
    assert cli.main(argv) == 2
    assert "exists" in capsys.readouterr().err


def test_cli_calibrate_errors_name_what_to_do(small_book, tmp_path, capsys):
    from healthscore.app import cli

    folder, _ = small_book
    base = ["--data", str(folder / "snapshots.parquet"), "--out", str(tmp_path / "x.toml")]
    assert cli.main(["calibrate", "--model", str(folder / "model.toml"), *base]) == 2
    assert "login_days: monotone_bins is fitted against an outcome; pass --events" in capsys.readouterr().err
    plain = tmp_path / "plain.toml"
    plain.write_text(
        SMALL_MODEL.split("[[metrics]]")[0] + '[[metrics]]\nname = "nps"\ncolumn = "nps"\n'
        'category = "usage"\nmethod = "thresholds"\nweight = 1\n[metrics.params]\n'
        "points = [[0, 0], [10, 100]]\n"
    )
    assert cli.main(["calibrate", "--model", str(plain), *base]) == 1  # a model problem, not an argument
    assert "nothing to fit" in capsys.readouterr().err
