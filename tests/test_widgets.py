"""The weight tuner: recomputed figures equal the scoring engine's, history, save, fit adoption."""
from __future__ import annotations

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
    SCORE_DECIMALS,
    STATE_KEYS,
    FastScorer,
    WeightTuner,
    auc_and_lift,
    band_index,
    edit_weights,
    format_breakpoints,
    move_cutoff,
    parse_breakpoints,
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
        model.band_of(pl.col("score")).alias("band"))
    book = scores.filter(pl.col("as_of") == scores["as_of"].max()).sort("account_id")
    labelled = hs.label_outcomes(portfolio.snapshots, portfolio.events, outcome=outcome, horizon=horizon)
    _, test, _ = evaluation.time_split(labelled, horizon=horizon, split=tuner.state["split"])
    hold = (test.select("account_id", "as_of", outcome)
            .join(scores.select("account_id", "as_of", "score", "band"), on=["account_id", "as_of"])
            .sort("account_id", "as_of"))
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
    assert st_["band_arr"] == pytest.approx({b.name: ref["arr"].get(b.name, 0.0) for b in tuner.model.bands},
                                            abs=1e-6)
    assert st_["auc"] == pytest.approx(ref["auc"], abs=1e-9)
    assert st_["lift"] == pytest.approx(ref["lift"], abs=1e-9)
    assert st_["holdout_rows"] == ref["holdout_rows"]
    for band, rate in ref["rates"].items():
        assert st_["churn_by_band"][band] == pytest.approx(rate, abs=1e-12)


def numbers(state: dict) -> dict:
    """The comparable part of a state (frames and models left out)."""
    return {k: v for k, v in state.items() if k not in ("model", "changed")}


# ---------------------------------------------------------------- against the engine
def test_start_state_matches_engine(tuner, portfolio):
    assert set(tuner.state) == set(STATE_KEYS)
    assert tuner.state["auc"] == tuner.state["auc_start"]
    assert tuner.state["n_changed"] == 0
    assert 0.5 < tuner.state["auc"] < 1.0          # the sample score does predict churn
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
    assert tuner.category_sliders["usage"].value == 40          # the variant's own weight is shown
    tuner.category_sliders["usage"].value = 70
    assert tuner.model.resolve("digital").categories["usage"].weight == 70.0
    assert tuner.model.categories["usage"].weight == 30.0
    assert_matches_engine(tuner, portfolio)


def test_threshold_cutoff_and_coverage_controls(tuner, portfolio):
    tuner.threshold_inputs["login_days"].value = "0:0, 3:50, 7:100"
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
    tuner.cutoff_sliders[0].value = 85                 # beyond the next cut-off (70)
    assert tuner.model == model
    assert tuner.cutoff_sliders[0].value == 40
    assert "between 0 and 70" in tuner.status.value
    tuner.threshold_inputs["csat"].value = "two:forty"
    assert "raw:score pairs" in tuner.status.value
    assert tuner.threshold_inputs["csat"].value == format_breakpoints(model.metric("csat").params, "thresholds")


def test_outcome_and_horizon_selectors(tuner, portfolio):
    tuner.horizon_select.value = "60d"
    assert tuner.state["horizon"] == "60d"
    assert_matches_engine(tuner, portfolio)
    tuner.outcome_select.value = "expanded"
    assert tuner.state["outcome"] == "expanded"
    assert_matches_engine(tuner, portfolio)
    tuner.horizon_select.value = "365d"            # longer than the history allows: nothing to label
    assert "365d" in tuner.status.value and tuner.state["horizon"] == "60d"
    assert tuner.horizon_select.value == "60d"     # the control shows what the figures are about


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
    tuner.threshold_inputs["login_days"].value = "0:0, 5:100"
    tuner.reset()
    assert tuner.model == tuner.start
    assert numbers(tuner.state) == s0
    assert tuner.metric_sliders["csat"].value == 1 and tuner.metric_sliders["nps"].value == 1
    assert tuner.threshold_inputs["login_days"].value == "0:0, 2:40, 4:80, 6:100"
    tuner.undo()                                       # reset itself can be undone
    assert tuner.model.metric("csat").weight == 5


# ---------------------------------------------------------------- save
def test_save_keeps_comments_bumps_version_and_refuses_strangers(tmp_path, portfolio):
    path = tmp_path / "model.toml"
    shutil.copy(MODEL_FILE, path)
    original = path.read_text()
    model = hs.load_model(path)
    tuner = WeightTuner(portfolio.snapshots, portfolio.events, model)
    tuner.metric_sliders["login_days"].value = 4.5
    assert tuner.save() == path
    text = path.read_text()
    assert "# Category weights are relative: they are rescaled to add up to 100%." in text
    assert "# detractors (0-6), passives (7-8), promoters (9-10)" in text
    saved = hs.load_model(path)
    assert saved.version == "1.0.1" and saved.metric("login_days").weight == 4.5
    assert hs.load_model(path, name="expansion") == hs.load_models(MODEL_FILE)["expansion"]
    # only the changed lines differ
    changed = [(a, b) for a, b in zip(original.splitlines(), text.splitlines()) if a != b]
    assert len(original.splitlines()) == len(text.splitlines()) and len(changed) == 2
    tuner.metric_sliders["nps"].value = 2
    tuner.save()
    assert hs.load_model(path).version == "1.0.2"

    stranger = tmp_path / "notes.toml"
    stranger.write_text("# somebody else's file\n")
    with pytest.raises(ModelError, match="already exists"):
        tuner.save(stranger)
    assert stranger.read_text() == "# somebody else's file\n"
    tuner.save_path.value = str(stranger)
    tuner.save_button.click()
    assert "already exists" in tuner.status.value and stranger.read_text() == "# somebody else's file\n"
    tuner.save(stranger, overwrite=True)
    assert hs.load_model(stranger).metric("nps").weight == 2

    path.write_text(path.read_text().replace("min_coverage = 0.6", "min_coverage = 0.5"))   # edited elsewhere
    with pytest.raises(ModelError, match="changed on disk"):
        tuner.save()
    fresh = tmp_path / "new" / "tuned.toml"
    tuner.save(fresh)
    assert hs.load_model(fresh).version == "1.0.4"


# ---------------------------------------------------------------- fit
@pytest.mark.slow
def test_fit_then_adopt(tuner, portfolio):
    fit = tuner.run_fit()
    suggested = fit.suggested_model()
    sug = tuner.suggestion
    assert not tuner.adopt_buttons["login_days"].disabled and not tuner.adopt_all_button.disabled
    assert tuner.suggestion_labels["login_days"].value.count("fit ") == 1
    # suggestions keep each category's current total, so a slider keeps its scale
    for cat in tuner.model.categories:
        names = [m.name for m in tuner.model.metrics if m.category == cat]
        total = sum(sug.metrics[n][0] for n in names)
        assert total == pytest.approx(sum(tuner.model.metric(n).weight for n in names)) or total == 0
    for _w, lo, hi in sug.metrics.values():
        assert math.isnan(lo) or lo <= hi
    tuner.adopt_buttons["login_days"].click()
    want = sug.metrics["login_days"][0]
    assert tuner.metric_sliders["login_days"].value == pytest.approx(want)
    assert tuner.model.metric("login_days").weight == pytest.approx(want)
    tuner.adopt_all()
    for name, (w, _, _) in sug.metrics.items():
        assert tuner.metric_sliders[name].value == pytest.approx(w)
    # same scores as the fitted model (base variant: the digital variant keeps its own overrides)
    ref = hs.combine(hs.calibrate(portfolio.snapshots, suggested), suggested)
    ref = ref.filter((pl.col("as_of") == ref["as_of"].max()) & (pl.col("variant") == "default")).sort("account_id")
    mine = tuner.session.book_scores(tuner.model).join(ref.select("account_id"), on="account_id").sort("account_id")
    assert ref.height > 20
    assert np.allclose(mine["score"].to_numpy(), ref["score"].to_numpy(), atol=1e-9, equal_nan=True)
    tuner.undo()
    assert tuner.model.metric("login_days").weight == pytest.approx(want)


# ---------------------------------------------------------------- charts get aggregates only
def test_charts_are_fed_small_parameters(tuner):
    spec_before = json.dumps(tuner.distribution.spec, sort_keys=True)
    hist_before = list(tuner.distribution.params.hist)
    tuner.metric_sliders["high_sev_tickets"].value = 8
    assert json.dumps(tuner.distribution.spec, sort_keys=True) == spec_before     # no re-render
    assert list(tuner.distribution.params.hist) == tuner.state["histogram"] != hist_before
    assert sum(tuner.state["histogram"]) == tuner.state["scored_accounts"]
    assert '"values"' not in spec_before and len(spec_before) < 10_000           # no rows embedded
    contrib = tuner.contributions.params.contrib
    assert contrib == pytest.approx([round(v, 4) for v in tuner.state["contributions"].values()])
    # contributions are mean driver points: they add up to the mean score of the book
    scores = tuner.session.book_scores(tuner.model)["score"].drop_nulls()
    assert sum(tuner.state["contributions"].values()) == pytest.approx(scores.mean(), abs=1e-9)


# ---------------------------------------------------------------- pure helpers
@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 6)), min_size=2, max_size=80),
       st.sampled_from([0.1, 0.25, 0.5]))
def test_auc_and_lift_equal_evaluation_functions(rows, fraction):
    y = np.array([float(a) for a, _ in rows])
    risk = np.array([float(b) for _, b in rows])      # few distinct values: many ties
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
        m = edit_weights(model, None, metrics={x.name: float(rng.choice([0, 0.5, 1.3, 2, 7])) for x in model.metrics},
                         categories={c: float(rng.integers(0, 40)) for c in model.categories})
        m = edit_weights(m, "digital", categories={"usage": float(rng.integers(1, 80))})
        ours, drivers = scorer.score(m, drivers=True)
        ref = hs.combine(sub, m)
        theirs = ref["score"].to_numpy()
        assert np.array_equal(np.isnan(ours), np.isnan(theirs))
        assert np.nanmax(np.abs(ours - theirs)) <= 1e-9
        assert np.array_equal(ours, np.round(ours, SCORE_DECIMALS), equal_nan=True)    # on the grid
        assert np.array_equal(ours, again.score(m)[0], equal_nan=True)               # deterministic
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
    assert parse_breakpoints(format_breakpoints(model.metric("login_days").params, "thresholds"), "thresholds") \
        == {"points": [[0.0, 0.0], [2.0, 40.0], [4.0, 80.0], [6.0, 100.0]]}
    with pytest.raises(ModelError, match="no variant"):
        edit_weights(model, "enterprise", metrics={"nps": 1})
