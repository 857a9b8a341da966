"""Model monitoring: PSI, the reference in the model file, drift and AUC checks, alerts, report and CLI."""

from __future__ import annotations

import json
import math
import re

import healthscore as hs
import numpy as np
import polars as pl
import pytest
from healthscore.analysis.evaluation import auc_ci
from healthscore.analysis.fitting import label_outcomes
from healthscore.analysis.monitoring import (
    ALERT_COLUMNS,
    PSI_WATCH,
    MonitoringError,
    binned_shares,
    monitor,
    psi,
    reference_bins,
    reference_from,
)
from healthscore.app.cli import main
from healthscore.core.scoring import score
from healthscore.render.monitoring import monitoring_report
from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import book_on_disk

MODEL_FILE = hs.datasets.sample_dir() / "model.toml"


# ---------------------------------------------------------------- PSI
def test_psi_matches_a_hand_computation():
    # bins 1 and 3 move by 0.1 each: 0.1*ln(0.2/0.1) + (-0.1)*ln(0.2/0.3) = 0.1*ln(2) + 0.1*ln(1.5) = 0.1*ln(3)
    assert psi([0.1, 0.2, 0.3, 0.4], [0.2, 0.2, 0.2, 0.4]) == pytest.approx(0.1 * math.log(3.0), abs=1e-12)
    # counts are normalised to shares first
    assert psi([10, 20, 30, 40], [2, 2, 2, 4]) == pytest.approx(0.1 * math.log(3.0), abs=1e-12)
    # an empty reference bin counts as a share of 1e-4:
    # (0.1 - 0.0001)*ln(0.1/0.0001) + (0.4 - 0.5)*ln(0.4/0.5)
    hand = 0.0999 * math.log(1000.0) + 0.1 * math.log(1.25)
    assert psi([0.5, 0.5, 0.0], [0.5, 0.4, 0.1]) == pytest.approx(hand, abs=1e-12)
    assert psi([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]) == 0.0
    with pytest.raises(ValueError, match="equally long"):
        psi([0.5, 0.5], [1.0])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), min_size=2, max_size=12).filter(
        lambda bins: sum(a for a, _ in bins) > 0 and sum(b for _, b in bins) > 0
    )
)
def test_psi_is_symmetric_non_negative_and_equal_to_the_textbook_sum(bins):
    e = np.array([a for a, _ in bins], float)
    a = np.array([b for _, b in bins], float)
    value = psi(e, a)
    assert value >= 0.0
    assert value == pytest.approx(psi(a, e), rel=1e-12, abs=1e-15)
    es = np.where(e > 0, e / e.sum(), 1e-4)
    as_ = np.where(a > 0, a / a.sum(), 1e-4)
    assert value == pytest.approx(float(np.sum((as_ - es) * np.log(as_ / es))), rel=1e-9, abs=1e-12)


def test_bins_are_closed_on_the_right_and_count_missing_values():
    values = pl.Series("x", [0.0, 1, 1, 2, 2, 2, 3, None, None, float("nan")])
    bins = reference_bins(values, n_bins=4)
    # quantiles 0.25/0.5/0.75 of the 7 present values [0,1,1,2,2,2,3] are 1, 2, 2 -> edges 1, 2
    assert bins["edges"] == [1.0, 2.0]
    assert bins["shares"] == pytest.approx([3 / 7, 3 / 7, 1 / 7], abs=1e-6)
    assert bins["na_share"] == pytest.approx(0.3)
    shares, na = binned_shares(pl.Series("x", [1.0, 1.5, 5.0, None]), bins)
    assert shares.tolist() == [0.25, 0.25, 0.25, 0.25] and na == 0.25
    cats = reference_bins(pl.Series("plan", ["a", "a", "b", None]))
    assert cats["categories"] == ["a", "b"] and cats["na_share"] == 0.25
    shares, _ = binned_shares(pl.Series("plan", ["a", "c", None, None]), cats)
    assert shares.tolist() == [0.25, 0.0, 0.25, 0.5]  # a, b, unseen c, N/A


# ---------------------------------------------------------------- the sample
@pytest.fixture(scope="module")
def sample():
    book = hs.load_sample()
    model = hs.load_model(MODEL_FILE)
    dates = book.snapshots["as_of"].unique().sort()
    half = dates[len(dates) // 2 - 1]
    reference = reference_from(book.snapshots, book.events, model, period=(dates[0], half))
    return book, model, half, reference


def _second_half(book, half):
    return book.snapshots.filter(pl.col("as_of") > half)


def test_reference_holds_the_period_bins_and_the_auc(sample):
    book, model, half, ref = sample
    assert (ref["first_as_of"], ref["last_as_of"]) == ("2025-11-24", half.isoformat())
    assert ref["outcome"] == "churned" and ref["horizon"] == "90d" and ref["model_hash"] == model.hash
    assert set(ref["metrics"]) == {m.name for m in model.metrics}
    assert len(ref["score"]["edges"]) == 9 and sum(ref["score"]["shares"]) == pytest.approx(1.0, abs=1e-5)
    assert ref["metrics"]["nps"]["na_share"] > 0.9  # nps is sparse in the sample
    assert ref["auc_lower"] < ref["auc"] < ref["auc_upper"] and 0.6 < ref["auc"] < 0.8


def test_no_drift_on_the_stationary_sample(sample):
    book, model, half, ref = sample
    mon = monitor(_second_half(book, half), book.events, model, reference=ref)
    # the synthetic portfolio is stationary: every metric and the score stay far below the watch level
    assert mon.drift["psi"].max() < 0.02
    assert (mon.drift["status"] == "stable").all()
    assert mon.verdict == "stable" and not mon.refit
    assert not mon.performance["auc_below_reference"].any()
    assert mon.drift_alerts().height == 0 and mon.drift_alerts().schema == pl.Schema(ALERT_COLUMNS)
    assert str(mon.summary()).startswith("stable: ")
    assert mon.to_frame()["period"].to_list() == ["2026Q2", "2026Q3", "2026Q4"]


def _shift(frame, half, column, how):
    late = pl.col("as_of") > half
    return frame.with_columns(pl.when(late).then(how(pl.col(column))).otherwise(pl.col(column)).alias(column))


def _some_missing(frame, half, column, share, seed=0):
    rng = np.random.default_rng(seed)
    blank = pl.Series("_blank", rng.random(frame.height) < share)
    return (
        frame.with_columns(blank)
        .with_columns(
            pl.when((pl.col("as_of") > half) & pl.col("_blank")).then(None).otherwise(pl.col(column)).alias(column)
        )
        .drop("_blank")
    )


@pytest.mark.parametrize(
    "metric, column, change",
    [
        ("login_days", "login_days", lambda f, h: _shift(f, h, "login_days", lambda c: c + 3.0)),
        ("api_calls", "api_calls", lambda f, h: _shift(f, h, "api_calls", lambda c: c * 100.0)),
        ("seat_utilization", "seat_utilization", lambda f, h: _some_missing(f, h, "seat_utilization", 0.4)),
    ],
    ids=["shift-3-days", "scale-100x", "40pct-missing"],
)
def test_injected_drift_is_detected_and_recommends_a_refit(sample, metric, column, change):
    book, model, half, ref = sample
    drifted = change(_second_half(book, half), half)
    mon = monitor(drifted, book.events, model, reference=ref)
    rows = mon.drift.filter(pl.col("variable") == metric)
    assert (rows["psi"] > 0.25).all() and (rows["status"] == "drift").all()
    # the other metrics did not move
    others = mon.drift.filter((pl.col("variable") != metric) & (pl.col("variable") != "score"))
    assert others["psi"].max() < PSI_WATCH
    assert mon.verdict == "refit recommended"
    assert str(mon.summary()).startswith(f"refit recommended: {metric} drifted: PSI ")
    alerts = mon.drift_alerts()
    assert alerts.height == 1 and alerts.schema == pl.Schema(ALERT_COLUMNS)
    alert = alerts.row(0, named=True)
    assert alert["account_id"] is None and alert["kind"] == alert["rule"] == "model_drift"
    assert alert["severity"] == "high" and alert["owner"] == "CS operations"
    assert alert["action"].startswith(f"refit the model: {metric} drifted")
    assert alert["fired_at"] == drifted["as_of"].max() and alert["model_hash"] == model.hash
    evidence = json.loads(alert["evidence"])
    assert {f["variable"] for f in evidence["findings"] if f["level"] == "refit"} >= {metric}
    if metric == "seat_utilization":
        assert rows["na_share"].to_numpy() == pytest.approx(0.4, abs=0.02)
        assert mon.headline().endswith(f"(N/A 0% -> {rows['na_share'][-1]:.0%})")


def test_a_score_that_stops_ranking_is_caught_by_its_auc(sample):
    """Shuffle the metrics across the later snapshots: the distributions stay, the ranking goes."""
    book, model, half, ref = sample
    cols = list(dict.fromkeys(m.column for m in model.metrics))
    late = _second_half(book, half)
    perm = np.random.default_rng(0).permutation(late.height)
    shuffled = late.with_columns([pl.Series(c, late[c].to_numpy()[perm]) for c in cols])
    data = pl.concat([book.snapshots.filter(pl.col("as_of") <= half), shuffled])
    mon = monitor(data, book.events, model, reference=ref)
    assert mon.drift["psi"].max() < PSI_WATCH
    below = mon.performance.filter(pl.col("auc_below_reference"))["period"].to_list()
    assert below == ["2026Q2", "2026Q3"]
    assert mon.verdict == "refit recommended" and "AUC in 2026Q3" in mon.headline()


def test_auc_by_quarter_equals_auc_ci_on_the_same_rows(sample):
    book, model, half, ref = sample
    mon = monitor(book.snapshots, book.events, model, reference=ref)
    labels = label_outcomes(book.snapshots.select("account_id", "as_of"), book.events, horizon="90d")
    rows = (
        score(book.snapshots, model)
        .select("account_id", "as_of", "score")
        .join(labels, on=["account_id", "as_of"])
        .filter(pl.col("score").is_not_null())
        .with_columns(q=pl.format("{}Q{}", pl.col("as_of").dt.year(), pl.col("as_of").dt.quarter()))
    )
    checked = 0
    for r in mon.performance.iter_rows(named=True):
        part = rows.filter(pl.col("q") == r["period"])
        if part.is_empty():
            assert math.isnan(r["auc"]) and r["labelled_rows"] == 0
            continue
        ci = auc_ci(part["churned"].cast(pl.Float64), -part["score"].to_numpy(), groups=part["account_id"])
        assert (r["auc"], r["auc_lower"], r["auc_upper"]) == pytest.approx(tuple(ci), abs=1e-12)
        assert r["labelled_rows"] == part.height and r["events"] == int(part["churned"].sum())
        checked += 1
    assert checked == 4  # 2025Q4 .. 2026Q3 have labels; 2026Q4 is within the horizon of the data's end


def test_calibration_is_read_through_the_models_probability_map(sample):
    book, model, half, ref = sample
    pm = hs.ProbabilityMap("logistic")
    first = score(book.snapshots, model).join(
        label_outcomes(book.snapshots.select("account_id", "as_of"), book.events), on=["account_id", "as_of"]
    )
    pm.fit(first["score"], first["churned"])
    mon = monitor(book.snapshots, book.events, model.with_probability_map(pm), reference=ref)
    cal = mon.performance.filter(pl.col("labelled_rows") > 0)
    assert cal["ece"].is_not_nan().all() and (cal["observed_lower"] <= cal["observed_upper"]).all()
    assert "calibration (probability map of the model):" in str(mon.summary())


def test_monitor_needs_a_reference(sample):
    book, model, _, _ = sample
    with pytest.raises(MonitoringError, match="no \\[reference\\] table"):
        monitor(book.snapshots, book.events, model)
    with pytest.raises(MonitoringError, match="'quarter' or 'month'"):
        monitor(book.snapshots, None, model, reference=sample[3], by="week")


def test_charts_are_drawn_from_aggregates(sample):
    book, model, half, ref = sample
    mon = monitor(_second_half(book, half), book.events, model, reference=ref)
    charts = mon.charts()
    assert set(charts) == {"psi", "auc"}
    spec = json.dumps(charts["psi"].to_dict()) + json.dumps(charts["auc"].to_dict())
    assert "account_id" not in spec and book.snapshots["account_id"][0] not in spec


# ---------------------------------------------------------------- the model file
def test_reference_round_trips_through_the_model_file_and_leaves_the_hash(sample, tmp_path):
    _, model, _, ref = sample
    with_ref = model.with_reference(ref)
    assert with_ref.hash == model.hash
    path = with_ref.save(tmp_path / "watched.toml")
    again = hs.load_model(path)
    assert again.reference == ref and again.hash == model.hash
    text = path.read_text()
    again.save()  # saving an unchanged model changes nothing
    assert path.read_text() == text
    again.with_reference(None).save()
    assert hs.load_model(path).reference is None and "[models.health.reference" not in path.read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(
        "reference = 3\n"
        + MODEL_FILE.read_text().split("# ====", 1)[0]
        + '[model]\nname = "m"\n[categories.u]\nweight = 1\n[[metrics]]\nname = "x"\n'
        'category = "u"\nmethod = "thresholds"\nparams = { points = [[0, 0], [1, 100]] }\n'
    )
    with pytest.raises(hs.ModelError, match=r"reference: expected a \[reference\] table"):
        hs.load_model(bad)


def test_a_fitted_model_is_saved_with_its_reference(tmp_path):
    book = hs.make_portfolio(n_accounts=500, n_weeks=40, seed=5)
    model = hs.load_model(MODEL_FILE)
    with pytest.warns(UserWarning):
        fit = hs.fit_weights(book.snapshots, book.events, model, horizon="8w")
    saved = hs.load_model(fit.save_suggested(tmp_path / "fitted.toml"))
    ref = saved.reference
    assert ref is not None and ref["model_hash"] == saved.hash != model.hash
    assert (ref["outcome"], ref["horizon"]) == ("churned", "8w")
    assert (ref["first_as_of"], ref["last_as_of"]) == tuple(
        d.isoformat() for d in (book.snapshots["as_of"].min(), book.snapshots["as_of"].max())
    )
    assert ref == reference_from(book.snapshots, book.events, saved, horizon="8w")
    # monitoring the fitted model on its own history finds nothing
    assert monitor(book.snapshots, book.events, saved).verdict == "stable"


# ---------------------------------------------------------------- report and command line
_NAMESPACES = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}


def _urls(html: str) -> set[str]:
    return set(re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s\"'<>)]*", html))


def test_report_is_static_and_escaped(sample, tmp_path):
    book, model, half, ref = sample
    drifted = _shift(_second_half(book, half), half, "api_calls", lambda c: c * 100.0)
    mon = monitor(drifted, book.events, model, reference=ref)
    html = monitoring_report(mon, tmp_path / "r.html", title="<b>watch</b> & see")
    assert (tmp_path / "r.html").read_text() == html
    assert "<script" not in html.lower() and _urls(html) <= _NAMESPACES
    assert "&lt;b&gt;watch&lt;/b&gt; &amp; see" in html and "<b>watch</b>" not in html
    assert html.index("Refit recommended") < html.index("Period by period") < html.index("<svg")
    assert "api_calls drifted: PSI" in html


def test_cli_sets_a_reference_and_writes_the_report(tmp_path_factory, capsys):
    folder, book = book_on_disk(tmp_path_factory, "monitor", seed=11, n_accounts=300, n_weeks=40)
    data, events = str(folder / "snapshots.parquet"), str(folder / "events.parquet")
    until = book.snapshots["as_of"].unique().sort()[19].isoformat()
    watched, report = folder / "watched.toml", folder / "report.html"
    rc = main(
        [
            "monitor",
            "--model",
            f"{MODEL_FILE}#health",
            "--data",
            data,
            "--events",
            events,
            "--horizon",
            "28d",
            "--set-reference",
            "--reference-until",
            until,
            "--out-model",
            str(watched),
            "--out",
            str(report),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and watched.is_file() and report.is_file()
    assert f".. {until}" in out and out.index("reference") < out.index("written")
    saved = hs.load_model(watched)
    assert saved.reference["last_as_of"] == until and saved.reference["horizon"] == "28d"
    html = report.read_text()
    assert "<script" not in html.lower() and _urls(html) <= _NAMESPACES
    # a model with a reference needs no --set-reference; the verdict is printed first
    again = folder / "again.html"
    assert main(["monitor", "--model", str(watched), "--data", data, "--events", events, "--out", str(again)]) == 0
    first_line = capsys.readouterr().out.splitlines()[0]
    assert first_line.split(":")[0] in ("stable", "watch, no refit needed yet", "refit recommended")
    assert again.is_file()


def test_cli_errors_are_messages(tmp_path_factory, capsys):
    folder, _ = book_on_disk(tmp_path_factory, "monitor_err", seed=12, n_accounts=60, n_weeks=12)
    data = str(folder / "snapshots.parquet")
    rc = main(["monitor", "--model", str(MODEL_FILE), "--data", data, "--out", str(folder / "r.html")])
    err = capsys.readouterr().err
    assert rc == 2 and "has no [reference] table" in err and "--set-reference" in err
    assert main(["monitor", "--model", str(MODEL_FILE), "--data", data, "--set-reference"]) == 2
    assert "--out-model" in capsys.readouterr().err
    assert main(["monitor", "--model", str(MODEL_FILE), "--data", data, "--out", str(folder / "r.txt")]) == 2
    assert ".html" in capsys.readouterr().err
