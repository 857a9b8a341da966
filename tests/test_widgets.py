"""The weight tuner: recomputed figures equal the scoring engine's, history, save, fit adoption."""

from __future__ import annotations

import html
import json
import math
import shutil
from pathlib import Path

import healthscore as hs
import numpy as np
import polars as pl
import pytest
from healthscore.analysis import evaluation
from healthscore.app.widgets import (
    MAX_COVERAGE_DROP,
    SCORE_DECIMALS,
    STATE_KEYS,
    FastScorer,
    Suggestion,
    WeightTuner,
    auc_and_lift,
    auc_lift_influence,
    band_index,
    breakpoint_rows,
    breakpoints_from_rows,
    edit_weights,
    move_cutoff,
    paired_auc_interval,
    weights_for_share,
)
from healthscore.spec.model import ModelError
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
MODEL_FILE = ROOT / "data" / "model.toml"


@pytest.fixture(scope="module")
def portfolio():
    return hs.datasets.make_portfolio(n_accounts=300, n_weeks=40, seed=11)


@pytest.fixture(scope="module")
def model():
    return hs.load_model(MODEL_FILE)


@pytest.fixture()
def tuner(portfolio, model):
    return WeightTuner(portfolio.snapshots, portfolio.events, model)


def reference(tuner: WeightTuner, portfolio) -> dict:
    """The tuner's figures recomputed independently: full calibrate + combine + evaluation functions."""
    model, outcome, horizon = tuner.model, tuner.session.outcome, tuner.session.horizon
    scores = hs.combine(hs.calibrate(portfolio.snapshots, model), model)
    # the tuner's scores sit on a 1e-9 grid (the engine's last bit depends on its order of
    # addition, which varies run to run): rank and band the engine's scores on the same grid
    scores = scores.with_columns(pl.col("score").round(SCORE_DECIMALS)).with_columns(
        model.band_of(pl.col("score")).alias("band")
    )
    book = scores.filter(pl.col("as_of") == scores["as_of"].max()).sort("account_id")
    labelled = hs.label_outcomes(portfolio.snapshots, portfolio.events, outcome=outcome, horizon=horizon)
    _, test, _ = evaluation.time_split(labelled, horizon=horizon, split=tuner.state["split"])
    start = hs.combine(hs.calibrate(portfolio.snapshots, tuner.start), tuner.start)
    # the holdout rows both the tuned and the starting model score
    hold = (
        test.select("account_id", "as_of", outcome)
        .join(scores.select("account_id", "as_of", "score", "band"), on=["account_id", "as_of"])
        .join(start.select("account_id", "as_of", pl.col("score").alias("start_score")), on=["account_id", "as_of"])
        .filter(pl.col("score").is_not_null() & pl.col("start_score").is_not_null())
        .sort("account_id", "as_of")
    )
    risk = evaluation.risk_of(hold["score"], outcome)
    names = [b.name for b in model.bands]
    bands = evaluation.band_table(hold.filter(pl.col("score").is_not_null()), outcome, order=names)
    counts = book.filter(pl.col("band").is_not_null()).group_by("band").agg(pl.len(), pl.col("arr").sum())
    return {
        "book": book,
        "auc": evaluation.auc(hold[outcome], risk),
        "lift": evaluation.top_decile_lift(hold[outcome], risk),
        "rates": dict(zip(bands["band"].to_list(), bands["rate"].to_list())),
        "counts": {b: n for b, n, _ in counts.iter_rows()},
        "arr": {b: a for b, _, a in counts.iter_rows()},
        "holdout_rows": hold.filter(pl.col("score").is_not_null()).height,
    }


def assert_matches_engine(tuner: WeightTuner, portfolio) -> None:
    ref = reference(tuner, portfolio)
    st_ = tuner.state
    mine = tuner.session.book_scores(tuner.model)
    assert mine["account_id"].to_list() == ref["book"]["account_id"].to_list()
    a, b = mine["score"].to_numpy(), ref["book"]["score"].to_numpy()
    assert np.array_equal(np.isnan(a), np.isnan(b))
    assert np.nanmax(np.abs(a - b)) <= 1e-9
    assert mine["band"].to_list() == ref["book"]["band"].to_list()
    assert st_["band_counts"] == {b.name: ref["counts"].get(b.name, 0) for b in tuner.model.bands}
    assert st_["band_arr"] == pytest.approx({b.name: ref["arr"].get(b.name, 0.0) for b in tuner.model.bands}, abs=1e-6)
    assert st_["auc"] == pytest.approx(ref["auc"], abs=1e-9)
    assert st_["lift"] == pytest.approx(ref["lift"], abs=1e-9)
    assert st_["holdout_rows"] == ref["holdout_rows"]
    for band, rate in ref["rates"].items():
        if rate is None:  # no holdout row in the band
            assert math.isnan(st_["churn_by_band"][band])
        else:
            assert st_["churn_by_band"][band] == pytest.approx(rate, abs=1e-12)


def numbers(state: dict) -> dict:
    """The comparable part of a state (frames and models left out)."""
    return {k: v for k, v in state.items() if k not in ("model", "changed")}


# ---------------------------------------------------------------- against the engine
def test_start_state_matches_engine(tuner, portfolio):
    assert set(tuner.state) == set(STATE_KEYS)
    assert tuner.state["auc"] == tuner.state["auc_start"]
    assert tuner.state["n_changed"] == 0
    assert 0.5 < tuner.state["auc"] < 1.0  # the sample score does predict churn
    assert_matches_engine(tuner, portfolio)


def test_metric_slider_recomputes_like_engine(tuner, portfolio):
    before = dict(tuner.state)
    tuner.metric_sliders["login_days"].value = 6
    assert tuner.model.metric("login_days").weight == 6.0
    assert tuner.state["auc"] != before["auc"]
    assert tuner.state["auc_start"] == before["auc"]
    assert_matches_engine(tuner, portfolio)
    tuner.category_sliders["support"].value = 45
    assert tuner.model.categories["support"].weight == 45.0
    assert_matches_engine(tuner, portfolio)
    # accounts that change band: the count and the table agree with the engine's bands
    start = hs.combine(hs.calibrate(portfolio.snapshots, tuner.start), tuner.start)
    start = start.filter(pl.col("as_of") == start["as_of"].max()).sort("account_id")
    now = tuner.session.book_scores(tuner.model)
    moved = (start["band"] != now["band"]).fill_null(False) | (start["band"].is_null() != now["band"].is_null())
    assert tuner.state["n_changed"] == int(moved.sum()) > 0
    table = tuner.state["changed"]
    assert table.height == min(15, int(moved.sum()))
    assert table["arr"].to_list() == sorted(table["arr"].to_list(), reverse=True)
    assert (table["old_band"] != table["new_band"]).all()


def test_variant_edit_changes_only_that_variant(tuner, portfolio):
    tuner.variant_select.value = "digital"
    assert tuner.metric_sliders["csm_assessment"].disabled
    assert tuner.category_sliders["usage"].value == 40  # the variant's own weight is shown
    tuner.category_sliders["usage"].value = 70
    assert tuner.model.resolve("digital").categories["usage"].weight == 70.0
    assert tuner.model.categories["usage"].weight == 30.0
    assert_matches_engine(tuner, portfolio)


def set_table(tuner: WeightTuner, metric: str, rows: list) -> bool:
    """Type rows into a metric's breakpoint table and press apply."""
    table = tuner.threshold_tables[metric]
    table.set_rows(rows)
    return table.apply()


def test_threshold_cutoff_and_coverage_controls(tuner, portfolio):
    assert set_table(tuner, "login_days", [(0, 0), (3, 50), (7, 100)])
    assert tuner.model.metric("login_days").params["points"] == [[0.0, 0.0], [3.0, 50.0], [7.0, 100.0]]
    assert_matches_engine(tuner, portfolio)
    tuner.cutoff_sliders[0].value = 55
    assert [(b.lower, b.upper) for b in tuner.model.bands] == [(0, 55), (55, 70), (70, 100)]
    assert_matches_engine(tuner, portfolio)
    tuner.coverage_slider.value = 0.9
    assert tuner.model.min_coverage == 0.9
    assert tuner.state["scored_accounts"] < tuner.state["accounts"]
    assert_matches_engine(tuner, portfolio)


def test_bad_input_is_reported_and_control_restored(tuner):
    model = tuner.model
    tuner.cutoff_sliders[0].value = 85  # beyond the next cut-off (70)
    assert tuner.model == model
    assert tuner.cutoff_sliders[0].value == 40
    assert "between 0 and 70" in tuner.status.value
    assert not set_table(tuner, "csat", [(2, 0), (2, 40)])
    assert "row 2: value 2 must be above row 1's 2" in html.unescape(tuner.threshold_tables["csat"].message.value)
    assert tuner.model == model


def test_outcome_and_horizon_selectors(tuner, portfolio):
    tuner.horizon_select.value = "60d"
    assert tuner.state["horizon"] == "60d"
    assert_matches_engine(tuner, portfolio)
    tuner.outcome_select.value = "expanded"
    assert tuner.state["outcome"] == "expanded"
    assert_matches_engine(tuner, portfolio)
    tuner.horizon_select.value = "365d"  # longer than the history allows: nothing to label
    assert "365d" in tuner.status.value and tuner.state["horizon"] == "60d"
    assert tuner.horizon_select.value == "60d"  # the control shows what the figures are about


# ---------------------------------------------------------------- history
def test_undo_and_reset_restore_exact_state(tuner):
    s0 = numbers(tuner.state)
    tuner.metric_sliders["nps"].value = 4
    s1 = numbers(tuner.state)
    tuner.category_sliders["usage"].value = 60
    tuner.cutoff_sliders[1].value = 75
    assert numbers(tuner.state) != s1
    assert tuner.undo() and tuner.undo()
    assert numbers(tuner.state) == s1
    assert tuner.category_sliders["usage"].value == 30 and tuner.cutoff_sliders[1].value == 70
    assert tuner.undo()
    assert numbers(tuner.state) == s0 and tuner.model == tuner.start
    assert not tuner.undo()
    tuner.metric_sliders["csat"].value = 5
    assert set_table(tuner, "login_days", [(0, 0), (5, 100)])
    tuner.reset()
    assert tuner.model == tuner.start
    assert numbers(tuner.state) == s0
    assert tuner.metric_sliders["csat"].value == 1 and tuner.metric_sliders["nps"].value == 1
    assert tuner.threshold_tables["login_days"].rows() == [(0, 0), (2, 40), (4, 80), (6, 100)]
    tuner.undo()  # reset itself can be undone
    assert tuner.model.metric("csat").weight == 5


# ---------------------------------------------------------------- save
def test_a_new_version_of_the_bundled_model_goes_to_the_working_folder(tmp_path, portfolio, monkeypatch):
    """Package data is never written: the bundled sample's next version lands where the user works."""
    monkeypatch.chdir(tmp_path)
    tuner = WeightTuner(portfolio.snapshots, portfolio.events, hs.load_model(hs.resources.sample_model()))
    tuner.metric_sliders["login_days"].value = 4.5
    path = tuner.save()
    assert path.parent == tmp_path and path.name.startswith("model_v") and path.exists()
    assert not list(hs.resources.sample_dir().glob("model_v*.toml"))


def test_save_writes_a_new_version_and_overwrites_only_after_confirmation(tmp_path, portfolio):
    path = tmp_path / "model.toml"
    shutil.copy(MODEL_FILE, path)
    original = path.read_text()
    model = hs.load_model(path)
    tuner = WeightTuner(portfolio.snapshots, portfolio.events, model)
    tuner.metric_sliders["login_days"].value = 4.5
    tuner.save_button.click()  # the default: a new file next to the original
    first = tmp_path / "model_v1.0.1.toml"
    assert path.read_text() == original
    text = first.read_text()
    assert "# Category weights are relative: they are rescaled to add up to 100%." in text
    assert "# detractors (0-6), passives (7-8), promoters (9-10)" in text
    saved = hs.load_model(first)
    assert saved.version == "1.0.1" and saved.metric("login_days").weight == 4.5
    assert hs.load_model(first, name="expansion") == hs.load_models(MODEL_FILE)["expansion"]
    changed = [(a, b) for a, b in zip(original.splitlines(), text.splitlines()) if a != b]
    assert len(original.splitlines()) == len(text.splitlines()) and len(changed) == 2  # version + weight
    assert "model_v1.0.1.toml" in tuner.status.value
    tuner.metric_sliders["nps"].value = 2
    assert tuner.save() == tmp_path / "model_v1.0.2.toml"
    assert hs.load_model(tmp_path / "model_v1.0.2.toml").version == "1.0.2" and path.read_text() == original

    # overwriting the original takes two presses: the first only asks
    tuner.overwrite_button.click()
    assert path.read_text() == original
    assert tuner.overwrite_confirm.layout.display == "flex" and "overwrite model.toml?" in tuner.status.value
    tuner.overwrite_confirm.click()
    assert hs.load_model(path).version == "1.0.3" and hs.load_model(path).metric("nps").weight == 2
    assert tuner.overwrite_confirm.layout.display == "none"

    # a file the tuner did not write is never replaced without overwrite=True
    squatter = tmp_path / "model_v1.0.4.toml"
    squatter.write_text("# somebody else's file\n")
    tuner.save_button.click()
    assert "already exists" in tuner.status.value and squatter.read_text() == "# somebody else's file\n"
    with pytest.raises(ModelError, match="already exists"):
        tuner.save(squatter)
    fresh = tmp_path / "new" / "tuned.toml"
    tuner.save(fresh)
    assert hs.load_model(fresh).version == "1.0.4"


def test_overwrite_refuses_an_original_edited_elsewhere(tmp_path, portfolio):
    path = tmp_path / "model.toml"
    shutil.copy(MODEL_FILE, path)
    tuner = WeightTuner(portfolio.snapshots, portfolio.events, hs.load_model(path))
    tuner.metric_sliders["csat"].value = 3
    path.write_text(path.read_text().replace("min_coverage = 0.6", "min_coverage = 0.5"))  # edited elsewhere
    with pytest.raises(ModelError, match="changed on disk"):
        tuner.save(overwrite=True)
    assert "min_coverage = 0.5" in path.read_text()
    assert hs.load_model(tuner.save()).metric("csat").weight == 3  # a new version still works


# ---------------------------------------------------------------- fit
@pytest.mark.slow
def test_fit_then_adopt(tuner, portfolio):
    fit = tuner.run_fit()
    suggested = fit.suggested_model()
    sug = tuner.suggestion
    assert not tuner.adopt_buttons["login_days"].disabled and not tuner.adopt_all_button.disabled
    # the suggestion and its interval are shares of the score, the unit the sliders show
    shares = suggested.weight_shares()
    for name, (share, lo, hi) in sug.shares.items():
        assert share == pytest.approx(shares[name])
        assert math.isnan(lo) or lo <= share <= hi
        assert math.isnan(lo) or 0 <= lo <= hi <= 100
    label = tuner.suggestion_labels["api_calls"].value
    share, lo, hi = sug.shares["api_calls"]
    assert f"fit {share:.1f}%" in label and (math.isnan(lo) or f"[{lo:.1f}, {hi:.1f}]" in label)
    # adopting one metric gives it exactly the suggested share (other weights kept) when its category
    # holds that much; otherwise the status says why and nothing changes
    total = sum(c.weight for c in tuner.model.categories.values())

    def room(n):
        return 100 * tuner.model.categories[tuner.model.metric(n).category].weight / total

    several = [
        n for n in sug.shares if sum(m.category == tuner.model.metric(n).category for m in tuner.model.metrics) > 1
    ]
    fits = [n for n in several if 0 < sug.shares[n][0] < room(n)]
    too_big = [n for n in several if sug.shares[n][0] >= room(n)]
    assert fits
    name = max(fits, key=lambda n: sug.shares[n][0])
    tuner.adopt_buttons[name].click()
    assert tuner.state["shares"][name] == pytest.approx(sug.shares[name][0], abs=1e-9)
    if too_big:
        before_click = tuner.model
        tuner.adopt_buttons[too_big[0]].click()
        assert tuner.model == before_click
        assert "raise that category's weight first" in html.unescape(tuner.status.value)
    before = tuner.model
    if not tuner.adopt_all():  # blocked by a coverage drop: confirm, as the user would
        assert tuner.model == before and "hs-coverage-warning" in tuner.adopt_warning.value
        assert tuner.adopt_all(confirm=True)
    for n, w in sug.weights.items():
        assert tuner.metric_sliders[n].value == pytest.approx(w)
    for n, (share, _, _) in sug.shares.items():  # after adopting all, the shares are the suggested ones
        assert tuner.state["shares"][n] == pytest.approx(share, abs=1e-6)
    # same scores as the fitted model (base variant: the digital variant keeps its own overrides)
    ref = hs.combine(hs.calibrate(portfolio.snapshots, suggested), suggested)
    ref = ref.filter((pl.col("as_of") == ref["as_of"].max()) & (pl.col("variant") == "default")).sort("account_id")
    mine = tuner.session.book_scores(tuner.model).join(ref.select("account_id"), on="account_id").sort("account_id")
    assert ref.height > 20
    assert np.allclose(mine["score"].to_numpy(), ref["score"].to_numpy(), atol=1e-9, equal_nan=True)
    tuner.undo()
    assert tuner.model == before


# ---------------------------------------------------------------- charts get aggregates only
def test_charts_are_fed_small_parameters(tuner):
    spec_before = json.dumps(tuner.distribution.spec, sort_keys=True)
    hist_before = list(tuner.distribution.params.hist)
    tuner.metric_sliders["high_sev_tickets"].value = 8
    assert json.dumps(tuner.distribution.spec, sort_keys=True) == spec_before  # no re-render
    assert list(tuner.distribution.params.hist) == tuner.state["histogram"] != hist_before
    assert sum(tuner.state["histogram"]) == tuner.state["scored_accounts"]
    assert '"values"' not in spec_before and len(spec_before) < 10_000  # no rows embedded
    contrib = tuner.contributions.params.contrib
    assert contrib == pytest.approx([round(v, 4) for v in tuner.state["contributions"].values()])
    # contributions are mean driver points: they add up to the mean score of the book
    scores = tuner.session.book_scores(tuner.model)["score"].drop_nulls()
    assert sum(tuner.state["contributions"].values()) == pytest.approx(scores.mean(), abs=1e-9)


# ---------------------------------------------------------------- pure helpers
@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 6)), min_size=2, max_size=80), st.sampled_from([0.1, 0.25, 0.5])
)
def test_auc_and_lift_equal_evaluation_functions(rows, fraction):
    y = np.array([float(a) for a, _ in rows])
    risk = np.array([float(b) for _, b in rows])  # few distinct values: many ties
    auc, lift = auc_and_lift(y, risk, fraction)
    if 0 < y.sum() < y.size:
        assert auc == pytest.approx(evaluation.auc(y, risk), abs=1e-12)
    else:
        assert math.isnan(auc)
    if y.sum() > 0:
        assert lift == pytest.approx(evaluation.top_decile_lift(y, risk, fraction), abs=1e-12)


def test_fast_scorer_agrees_with_combine(portfolio, model):
    sub = hs.calibrate(portfolio.snapshots, model)
    scorer, again = FastScorer(sub, model), FastScorer(sub, model)
    rng = np.random.default_rng(5)
    for _ in range(4):
        m = edit_weights(
            model,
            None,
            metrics={x.name: float(rng.choice([0, 0.5, 1.3, 2, 7])) for x in model.metrics},
            categories={c: float(rng.integers(0, 40)) for c in model.categories},
        )
        m = edit_weights(m, "digital", categories={"usage": float(rng.integers(1, 80))})
        ours, drivers = scorer.score(m, drivers=True)
        ref = hs.combine(sub, m)
        theirs = ref["score"].to_numpy()
        assert np.array_equal(np.isnan(ours), np.isnan(theirs))
        assert np.nanmax(np.abs(ours - theirs)) <= 1e-9
        assert np.array_equal(ours, np.round(ours, SCORE_DECIMALS), equal_nan=True)  # on the grid
        assert np.array_equal(ours, again.score(m)[0], equal_nan=True)  # deterministic
        scored = ~np.isnan(ours)
        for j, x in enumerate(model.metrics):
            assert np.allclose(drivers[j][scored], ref[f"drv_{x.name}"].to_numpy()[scored], rtol=0, atol=1e-9)


def test_band_index_follows_band_of(model):
    scores = np.array([0.0, 39.999, 40.0, 69.5, 70.0, 100.0, np.nan])
    assert band_index(scores, model.bands).tolist() == [0, 0, 1, 1, 2, 2, -1]
    ref = pl.select(model.band_of(pl.Series(scores).fill_nan(None))).to_series().to_list()
    assert [model.bands[i].name if i >= 0 else None for i in band_index(scores, model.bands)] == ref


def test_model_edit_helpers(model):
    with pytest.raises(ModelError, match="between 0 and 70"):
        move_cutoff(model, 0, 70)
    assert [b.upper for b in move_cutoff(model, 1, 80).bands] == [40, 80, 100]
    for name in ("login_days", "high_sev_tickets", "days_invoice_overdue"):
        m = model.metric(name)
        params = breakpoints_from_rows(breakpoint_rows(m.params, m.method), m.method, m.direction)
        assert model.with_params(name, params) == model  # the table round-trips the parameters
    with pytest.raises(ModelError, match="no variant"):
        edit_weights(model, "enterprise", metrics={"nps": 1})


# ---------------------------------------------------------------- same rows, paired interval
def _clustered_data(n_accounts: int, rows: int, seed: int, gap: float):
    """Accounts with several rows each (outcome and health shared within an account) and two risks."""
    rng = np.random.default_rng(seed)
    health = rng.normal(size=n_accounts)
    y_acc = rng.random(n_accounts) < 1 / (1 + np.exp(1.5 + 1.2 * health))
    groups = np.repeat(np.arange(n_accounts), rows)
    y = y_acc[groups].astype(float)
    base = -health[groups] + rng.normal(scale=1.0, size=groups.size)
    # each score also errs the same way on every row of an account, as real scores do
    risk_a = (
        base
        + gap * (y - 0.5)
        + rng.normal(scale=0.6, size=n_accounts)[groups]
        + rng.normal(scale=0.3, size=groups.size)
    )
    risk_b = base + rng.normal(scale=0.6, size=n_accounts)[groups] + rng.normal(scale=0.3, size=groups.size)
    return y, risk_a, risk_b, groups


def _fast_difference(y, risk_a, risk_b, groups, confidence=0.95):
    auc_a, _, inf_a = auc_lift_influence(y, risk_a, influence=True)
    auc_b, _, inf_b = auc_lift_influence(y, risk_b, influence=True)
    return paired_auc_interval(inf_a, inf_b, groups, auc_a, auc_b, confidence=confidence)


def test_paired_interval_matches_a_paired_bootstrap_by_account():
    from sklearn.metrics import roc_auc_score

    y, risk_a, risk_b, groups = _clustered_data(400, 3, seed=4, gap=0.0)
    d = _fast_difference(y, risk_a, risk_b, groups)
    assert d.auc == pytest.approx(roc_auc_score(y, risk_a), abs=1e-12)
    assert d.auc_start == pytest.approx(roc_auc_score(y, risk_b), abs=1e-12)
    # the explicit bootstrap: resample accounts with replacement, both risks on the same resample
    rng = np.random.default_rng(0)
    rows_of = np.arange(y.size).reshape(400, 3)
    diffs = []
    for _ in range(1500):
        idx = rows_of[rng.integers(0, 400, 400)].ravel()
        diffs.append(roc_auc_score(y[idx], risk_a[idx]) - roc_auc_score(y[idx], risk_b[idx]))
    se_boot = float(np.std(diffs, ddof=1))
    se_fast = (d.difference_upper - d.difference) / 1.959963984540054
    assert se_fast == pytest.approx(se_boot, rel=0.12)
    # resampling rows instead of accounts would understate it: the rows of an account move together
    auc_a, _, inf_a = auc_lift_influence(y, risk_a, influence=True)
    auc_b, _, inf_b = auc_lift_influence(y, risk_b, influence=True)
    by_row = paired_auc_interval(inf_a, inf_b, np.arange(y.size), auc_a, auc_b)
    assert by_row.difference_upper - by_row.difference < 0.8 * (d.difference_upper - d.difference)


def test_paired_interval_excludes_zero_only_for_a_real_change():
    y, risk_a, risk_b, groups = _clustered_data(600, 2, seed=9, gap=1.5)
    better = _fast_difference(y, risk_a, risk_b, groups)
    assert better.difference > 0 and better.measurable and better.difference_lower > 0
    same = _fast_difference(y, risk_b, risk_b, groups)
    assert same.difference == 0 and (same.difference_lower, same.difference_upper) == (0, 0)
    assert not same.measurable
    # a tiny perturbation of the same score: a change in the third decimal, not a measurable one
    rng = np.random.default_rng(1)
    tiny = _fast_difference(y, risk_b + rng.normal(scale=0.02, size=y.size), risk_b, groups)
    assert abs(tiny.difference) < 0.01 and not tiny.measurable


def test_auc_change_coloured_only_when_measurable(tuner):
    tuner.metric_sliders["login_days"].value = 2.1  # a nudge
    st_ = tuner.state
    assert st_["auc_difference"] != 0 and not st_["auc_change_measurable"]
    assert "no measurable change" in tuner.summary_html.value
    assert "#009E73" not in tuner.summary_html.value and "#D55E00" not in tuner.summary_html.value
    for cat in tuner.model.categories:  # score on engagement with CS only: much worse
        if cat != "engagement":
            tuner.category_sliders[cat].value = 0
    st_ = tuner.state
    assert st_["auc_change_measurable"] and st_["auc_difference_upper"] < 0
    assert "data-measurable='yes' style='color:#D55E00'" in tuner.summary_html.value
    assert "no measurable change" not in tuner.summary_html.value


def test_figures_compare_both_models_on_the_same_rows(tuner, portfolio):
    tuner.coverage_slider.value = 0.95  # the tuned model scores fewer rows
    st_ = tuner.state
    assert st_["scored_accounts"] < st_["scored_accounts_start"]
    assert st_["coverage_drop"] > MAX_COVERAGE_DROP
    assert st_["unscored_either"] == st_["accounts"] - st_["scored_accounts"]  # a subset of the start's rows
    # both AUCs come from the rows both models score: the start's AUC there is not its AUC overall
    s = tuner.session
    start_risk = s.start_eval["risk"]
    now_ok = ~np.isnan(s._evaluate(tuner.model)["risk"])
    both = now_ok & ~np.isnan(start_risk)
    assert st_["holdout_rows"] == int(both.sum()) < int((~np.isnan(start_risk)).sum())
    assert st_["auc_start"] == pytest.approx(auc_and_lift(s.y[both], start_risk[both])[0], abs=1e-12)
    assert st_["auc_start"] != pytest.approx(auc_and_lift(s.y, start_risk)[0], abs=1e-6)
    assert st_["holdout_rows_left_out"] == int((~np.isnan(start_risk)).sum() - both.sum())
    assert st_["holdout_events"] + st_["holdout_events_left_out"] == st_["holdout_events_start"]
    html_ = tuner.coverage_html.value
    assert "hs-coverage-warning" in html_ and f"{st_['accounts'] - st_['scored_accounts']:,}</b> of" in html_
    assert "left out" in html_
    assert_matches_engine(tuner, portfolio)


def test_adopt_all_with_a_coverage_drop_waits_for_confirmation(tuner):
    # a suggestion that puts all the weight on the sparse NPS answer: most accounts lose their score
    tuner.suggestion = Suggestion(
        weights={m.name: (1.0 if m.name == "nps" else 0.0) for m in tuner.model.metrics},
        shares={},
        categories=dict.fromkeys(tuner.model.categories, 10.0),
    )
    tuner.adopt_all_button.disabled = False
    before = tuner.model
    tuner.adopt_all_button.click()
    assert tuner.model == before  # blocked
    warning = tuner.adopt_warning.value
    assert "hs-coverage-warning" in warning and "accounts unscored" in warning and "#C0392B" in warning
    assert tuner.confirm_drop.layout.display == "flex" and "confirmation" in tuner.status.value
    tuner.confirm_drop.value = True
    tuner.adopt_all_button.click()
    assert tuner.model != before and tuner.model.metric("login_days").weight == 0
    assert tuner.state["coverage_drop"] > MAX_COVERAGE_DROP
    assert tuner.adopt_warning.value == "" and tuner.confirm_drop.layout.display == "none"
    assert not tuner.confirm_drop.value  # the next drop asks again
    assert "hs-coverage-warning" in tuner.coverage_html.value  # the panel keeps saying so
    tuner.undo()
    assert tuner.model == before


# ---------------------------------------------------------------- shares and single-metric categories
def test_weights_are_shown_as_shares_of_the_score(tuner):
    tuner.metric_sliders["login_days"].value = 4
    shares = tuner.model.weight_shares()
    assert tuner.state["shares"] == shares
    assert sum(shares.values()) == pytest.approx(100)
    for name, label in tuner.share_labels.items():
        assert f"{shares[name]:.1f}%" in label.value
    assert "30.0% of the score" in tuner.category_share_labels["usage"].value  # 30 of 100
    w, c = weights_for_share(tuner.model, "csat", 9.0)
    assert edit_weights(tuner.model, None, metrics=w, categories=c).weight_shares()["csat"] == pytest.approx(9.0)
    with pytest.raises(ModelError, match="more than category 'support' holds"):
        weights_for_share(tuner.model, "csat", 30.0)
    tuner.variant_select.value = "digital"  # the variant's own shares
    assert tuner.state["shares"] == tuner.model.resolve("digital").weight_shares()
    assert tuner.state["shares"]["csm_assessment"] == 0


def test_single_metric_category_says_why_its_slider_does_nothing(tuner):
    assert set(tuner.single_notes) == {"nps", "goal_progress"}
    note = tuner.single_notes["nps"].value
    assert "only metric in Customer sentiment" in note and "category weight" in note
    before = numbers(tuner.state)
    tuner.metric_sliders["nps"].value = 3  # no effect on any figure ...
    after = numbers(tuner.state)
    assert {k: v for k, v in after.items() if k != "hash"} == {k: v for k, v in before.items() if k != "hash"}
    tuner.category_sliders["sentiment"].value = 20  # ... the category weight has one
    assert tuner.state["shares"]["nps"] == pytest.approx(100 * 20 / 110)
    assert f"{100 * 20 / 110:.1f}%" in tuner.single_notes["nps"].value
    # adopting a share for it moves the category weight
    w, c = weights_for_share(tuner.model, "nps", 5.0)
    assert not w and set(c) == {"sentiment"}


# ---------------------------------------------------------------- threshold table
@pytest.mark.parametrize(
    "rows, method, direction, message",
    [
        ([(0, 0), (2, 40), (2, 80)], "thresholds", "higher_is_better", "row 3: value 2 must be above row 2's 2"),
        ([(0, 0), (2, 140)], "thresholds", "higher_is_better", "row 2: sub-score 140 must be a number from 0 to 100"),
        ([(0, 0), (2, -1)], "thresholds", "higher_is_better", "row 2: sub-score -1"),
        ([(0, 50), (2, 40)], "thresholds", "higher_is_better", "row 2: sub-score 40 is below row 1's 50"),
        ([(0, 100), (15, 70), (30, 80)], "thresholds", "lower_is_better", "row 3: sub-score 80 is above row 2's 70"),
        ([(0, 0)], "thresholds", "higher_is_better", "at least two rows"),
        ([(None, 100), (2, 40), (1, 0)], "steps", "lower_is_better", "row 3: value 1 must be above row 2's 2"),
        ([(None, 100), (1, 40), (2, 60)], "steps", "lower_is_better", "row 3: sub-score 60 is above row 2's 40"),
    ],
)
def test_breakpoint_table_rows_are_checked(rows, method, direction, message):
    with pytest.raises(ModelError, match=message.replace("(", r"\(")):
        breakpoints_from_rows(rows, method, direction)


def test_breakpoint_table_in_the_tuner(tuner, portfolio):
    table = tuner.threshold_tables["days_invoice_overdue"]  # lower is better
    assert table.rows() == [(0, 100), (15, 70), (30, 30), (60, 0)]
    before = tuner.model
    table.scores[2].value = 90  # rises: against the direction
    assert not table.apply()
    assert "row 3: sub-score 90 is above row 2's 70" in html.unescape(table.message.value)
    assert tuner.model == before
    table.scores[2].value = 50
    table.add_row()
    assert table.rows()[-1] == (61, 0)
    assert table.apply() and table.message.value == ""
    assert tuner.model.metric("days_invoice_overdue").params["points"] == [
        [0, 100],
        [15, 70],
        [30, 50],
        [60, 0],
        [61, 0],
    ]
    steps = tuner.threshold_tables["high_sev_tickets"]
    assert steps.rows() == [(None, 100), (1, 40), (2, 0)]
    steps.values[2].value = 3
    assert steps.apply()
    assert tuner.model.metric("high_sev_tickets").params == {"edges": [1, 3], "scores": [100, 40, 0]}
    assert_matches_engine(tuner, portfolio)
    tuner.undo()
    assert steps.rows() == [(None, 100), (1, 40), (2, 0)]  # the table follows undo


# ---------------------------------------------------------------- alerts tab
def test_alert_setting_moves_the_backtest_and_is_saved(tmp_path, portfolio):
    from healthscore.analysis.alerts import backtest_alerts
    from healthscore.app.widgets import with_alert_setting

    path = tmp_path / "model.toml"
    shutil.copy(MODEL_FILE, path)
    tuner = WeightTuner(portfolio.snapshots, portfolio.events, hs.load_model(path))
    assert set(tuner.alerts.sliders) == {"score_drop", "no_sponsor_at_renewal", "low_seat_utilization"}
    tuner.tabs.selected_index = 3  # opening the tab runs the backtest
    start = tuner.alerts.state["start"]
    assert tuner.alerts.state["now"].equals(start)
    tuner.alerts.sliders["low_seat_utilization"].value = 60  # a looser threshold: more alerts
    now = tuner.alerts.state["now"]
    rule = next(r for r in tuner.model.alerts if r.name == "low_seat_utilization")
    assert rule.value == 60 and tuner.model.hash == tuner.start.hash  # a rule never changes a score
    # the same figures as a backtest run from scratch on the engine's scores
    scores = hs.combine(hs.calibrate(portfolio.snapshots, tuner.model), tuner.model)
    ref = backtest_alerts(
        scores, portfolio.events, tuner.model, outcome="churned", horizon="90d", snapshots=portfolio.snapshots
    ).table
    assert now.equals(ref)

    def row(t, name):
        return next(r for r in t.iter_rows(named=True) if r["rule"] == name)

    assert row(now, "low_seat_utilization")["alerts"] > row(start, "low_seat_utilization")["alerts"]
    assert row(now, "entered_red") == row(start, "entered_red")
    table = tuner.alerts.table_html.value
    assert (
        f"<span class='hs-alert-alerts'>{row(now, 'low_seat_utilization')['alerts']:,}</span> "
        f"({row(start, 'low_seat_utilization')['alerts']:,})"
    ) in table
    tuner.undo()
    assert tuner.alerts.sliders["low_seat_utilization"].value == 25
    tuner.alerts.sliders["score_drop"].value = 10
    saved = hs.load_model(tuner.save())
    assert next(r.points for r in saved.alerts if r.name == "score_drop") == 10
    assert next(r.value for r in saved.alerts if r.name == "low_seat_utilization") == 25
    with pytest.raises(ModelError, match="no alert rule 'entered_red' with a numeric setting"):
        with_alert_setting(tuner.model, "entered_red", 3)
    with pytest.raises(ModelError, match="out of range"):
        with_alert_setting(tuner.model, "score_drop", 0)
