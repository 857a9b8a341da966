"""One-row-per-customer extracts end to end, column mapping, cadence from dates, booleans and
learned categorical levels, and `healthscore init`."""

from __future__ import annotations

import datetime as dt
import re
import warnings
from pathlib import Path

import healthscore as hs
import numpy as np
import polars as pl
import pytest
from healthscore.analysis import cohorts, evaluation
from healthscore.analysis.fitting import label_outcomes
from healthscore.analysis.scorecard import scorecard_data
from healthscore.app.cli import main
from healthscore.core.calibration import fit_levels, shrunk_rates
from healthscore.core.extract import cadence_of, outcomes_from_extract
from healthscore.core.scoring import score
from healthscore.datasets.extract import EXTRACT_TRUTH, make_extract
from healthscore.io.snapshots import ValidationError, read_snapshots
from healthscore.spec.model import load_model

AS_OF = "2026-01-31"
MAP = ["--map", "account_id=customerID", "--as-of", AS_OF, "--outcome-column", "Churn"]


@pytest.fixture(scope="module")
def crm(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("crm")
    make_extract(n_customers=2500, seed=11).write_csv(folder / "crm.csv")
    return folder / "crm.csv"


@pytest.fixture(scope="module")
def starter(crm) -> Path:
    out = crm.parent / "starter"
    assert main(["init", "--extract", str(crm), *MAP, "--out", str(out)]) == 0
    return out / "model.toml"


def _extract_frames(n=2500, seed=11):
    ex = make_extract(n_customers=n, seed=seed)
    snaps = read_snapshots(ex.frame, columns={"account_id": "customerID"}, as_of=ex.as_of)
    return outcomes_from_extract(snaps, column="Churn")


# ---------------------------------------------------------------- the extract end to end
def test_validate_reads_the_extract(crm, capsys):
    assert main(["validate", str(crm), *MAP]) == 0
    out = capsys.readouterr().out
    churned = int((pl.read_csv(crm)["Churn"] == "Yes").sum())
    assert f"{churned:,} of 2,500 accounts churned" in out


def test_init_recovers_the_true_directions(starter):
    model = load_model(starter)
    by_column = {m.column: m for m in model.metrics}
    assert "customerID" not in by_column and "Churn" not in by_column
    assert by_column["tenure"].direction == "higher_is_better"  # truth: -0.9 per SD
    assert by_column["MonthlyCharges"].direction == "lower_is_better"  # truth: +0.3 per SD
    assert by_column["SupportCalls"].direction == "lower_is_better"  # truth: +0.18 per call
    contract = by_column["Contract"].params["map"]
    order = sorted(contract, key=contract.get)
    truth = EXTRACT_TRUTH["Contract"]
    assert order == sorted(truth, key=lambda k: -truth[k])  # riskiest level scores lowest
    partner = by_column["Partner"].params
    assert partner["true_score"] > partner["false_score"]  # truth: having a partner lowers churn
    assert by_column["SeniorCitizen"].method == "boolean"


def test_fit_evaluate_review_scorecards(crm, starter, tmp_path, capsys):
    fitted = tmp_path / "fitted.toml"
    assert main(["fit", "--model", str(starter), "--data", str(crm), *MAP, "--out", str(fitted)]) == 0
    out = capsys.readouterr().out
    assert "within the observation window" in out and fitted.is_file()

    # the fitted model saw every account of the extract: its backtest here would flatter it
    assert main(["evaluate", "--model", str(fitted), "--data", str(crm), *MAP, "--out", str(tmp_path / "ev")]) != 0
    assert "saw the holdout" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(starter), "--data", str(crm), *MAP, "--out", str(tmp_path / "ev")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("Backtest: churned within the observation window")
    assert "5-fold cross-validation, stratified by churned and grouped by account" in first
    auc = float(pl.read_csv(tmp_path / "ev" / "evaluation.csv")["auc"][0])
    assert 0.7 < auc < 0.95

    html = tmp_path / "review.html"
    assert (
        main(["review", "--data", str(crm), "--model", str(fitted), *MAP, "--by", "Contract", "--out", str(html)]) == 0
    )
    text = html.read_text()
    assert "one snapshot" in text and "Month-to-month" in text

    scores = tmp_path / "scores.parquet"
    assert (
        main(
            [
                "score",
                "--model",
                str(fitted),
                "--data",
                str(crm),
                "--map",
                "account_id=customerID",
                "--observed-until",
                AS_OF,
                "--out",
                str(scores),
            ]
        )
        == 0
    )
    capsys.readouterr()
    snaps = read_snapshots(str(crm), columns={"account_id": "customerID"}, as_of=AS_OF)
    account = snaps.filter(pl.col("Contract") == "Two year")["account_id"][0]
    card = scorecard_data(pl.read_parquet(scores), load_model(fitted), account, snapshots=snaps, internal=True)
    values = dict(zip(card.metrics["metric"], card.metrics["level"]))
    assert values["contract"] == "Two year"
    assert values["partner"] in ("yes", "no")


def test_review_unknown_column_lists_the_columns(crm, starter, tmp_path, capsys):
    assert (
        main(
            [
                "review",
                "--data",
                str(crm),
                "--model",
                str(starter),
                *MAP,
                "--by",
                "Contrct",
                "--out",
                str(tmp_path / "r.html"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "Contrct is not a column" in err and "Contract" in err and "PaymentMethod" in err


def test_kfold_and_random_splits():
    snaps, events = _extract_frames(1500, 3)
    model = (
        load_model(Path(__file__).parent.parent / "toolkit/healthscore/resources/sample/model.toml") if False else None
    )
    frame = score(snaps.with_columns(tenure_score=pl.col("tenure")), _tenure_model())
    ev = evaluation.evaluate(snaps, events, frame.select("account_id", "as_of", "score"))
    assert ev.method == "kfold" and ev.folds == 5 and ev.test_rows == snaps.height
    assert str(ev.summary()).splitlines()[0].endswith("(every row is scored by the fold that did not see it)")
    # the pooled AUC is the plain AUC of the score: the folds only fit the probability map
    labelled = label_outcomes(snaps, events).join(frame, on=["account_id", "as_of"])
    assert ev.table["auc"][0] == pytest.approx(evaluation.auc(labelled["churned"], -labelled["score"]))
    rnd = evaluation.evaluate(snaps, events, frame.select("account_id", "as_of", "score"), split="random")
    assert rnd.method == "random" and rnd.test_rows == pytest.approx(0.3 * snaps.height, rel=0.1)
    assert "random holdout" in str(rnd.summary()).splitlines()[0]
    assert model is None


def _tenure_model():
    text = """
[model]
name = "tenure_only"
version = "1.0.0"
[categories.c]
weight = 1
[[metrics]]
name = "tenure"
column = "tenure"
category = "c"
method = "thresholds"
[metrics.params]
points = [[0, 0], [72, 100]]
"""
    import tempfile

    path = Path(tempfile.mkdtemp()) / "m.toml"
    path.write_text(text)
    return load_model(path)


def test_label_outcomes_one_snapshot_per_account():
    snaps = pl.DataFrame({"account_id": ["a", "b", "c"], "as_of": [dt.date(2026, 1, 1)] * 3})
    events = pl.DataFrame(
        {"account_id": ["a", "c"], "date": [dt.date(2026, 6, 1), dt.date(2025, 12, 1)], "event": ["churned", "churned"]}
    )
    out = label_outcomes(snaps, events, horizon="30d")  # the horizon is the observation window
    assert dict(zip(out["account_id"], out["churned"])) == {"a": True, "b": False}  # c churned before as_of


def test_churn_date_column_and_bad_flags():
    frame = pl.DataFrame(
        {
            "account_id": ["a", "b", "c"],
            "as_of": [dt.date(2026, 1, 1)] * 3,
            "left_on": [dt.date(2026, 2, 1), None, dt.date(2026, 9, 1)],
        }
    )
    _, events = outcomes_from_extract(frame, column="left_on", observed_until=dt.date(2026, 6, 30))
    assert events.rows() == [("a", dt.date(2026, 2, 1), "churned")]
    bad = frame.with_columns(flag=pl.Series(["Yes", "Maybe", "no"]))
    with pytest.raises(hs.HealthscoreError, match="'Maybe' cannot be read"):
        outcomes_from_extract(bad, column="flag")


# ---------------------------------------------------------------- column mapping
def test_column_mapping(tmp_path, capsys):
    path = tmp_path / "x.csv"
    pl.DataFrame({"cid": ["a", "b"], "snap": ["2026-01-05", "2026-01-05"], "logins": ["3", ""]}).write_csv(path)
    frame = read_snapshots(str(path), columns={"account_id": "cid", "as_of": "snap"})
    assert frame.columns == ["account_id", "as_of", "logins"] and frame["logins"].to_list() == [3.0, None]
    with pytest.raises(ValidationError, match="'cdi': is mapped to account_id but is not a column.*Did you mean 'cid'"):
        read_snapshots(str(path), columns={"account_id": "cdi", "as_of": "snap"})
    assert main(["validate", str(path), "--map", "account_id=cid", "--map", "as_of=snap"]) == 0
    assert main(["validate", str(path), "--map", "account_id"]) == 2
    assert "write ROLE=COLUMN" in capsys.readouterr().err


# ---------------------------------------------------------------- booleans
def test_yes_no_text_is_boolean_and_bad_cells_are_listed(tmp_path):
    path = tmp_path / "b.csv"
    values = ["Yes", "No", "y", "N", "TRUE", "false", "1", "0"] * 5
    pl.DataFrame(
        {"account_id": [f"a{i}" for i in range(40)], "as_of": ["2026-01-05"] * 40, "Partner": values}
    ).write_csv(path)
    frame = read_snapshots(str(path))
    assert frame.schema["Partner"] == pl.Boolean
    assert frame.sort("account_id")["Partner"].sum() == 20
    values[3] = "Yse"
    pl.DataFrame(
        {"account_id": [f"a{i}" for i in range(40)], "as_of": ["2026-01-05"] * 40, "Partner": values}
    ).write_csv(path)
    with pytest.raises(ValidationError, match=r"column 'Partner': 1 value\(s\) in a yes/no column .*'Yse'"):
        read_snapshots(str(path))
    # a column with a real third level is a category, not a broken boolean
    three = pl.DataFrame(
        {
            "account_id": ["a", "b", "c"],
            "as_of": ["2026-01-05"] * 3,
            "OnlineSecurity": ["Yes", "No", "No internet service"],
        }
    )
    assert read_snapshots(three).schema["OnlineSecurity"] == pl.String


# ---------------------------------------------------------------- learned categorical levels
def test_categorical_levels_against_a_hand_computation():
    levels = ["gold"] * 50 + ["silver"] * 40 + ["tin"] * 3 + ["lead"] * 2
    churn = [True] * 5 + [False] * 45 + [True] * 16 + [False] * 24 + [True, True, False] + [True, False]
    fitted = fit_levels(pl.Series("plan", levels), pl.Series(churn), {"prior_weight": 10, "min_level_rows": 30})
    # by hand: p = 24/95; gold (5 + 10p)/(50 + 10); silver (16 + 10p)/(40 + 10); tin and lead pooled: 3 of 5
    p = 24 / 95
    gold, silver, pooled = (5 + 10 * p) / 60, (16 + 10 * p) / 50, (3 + 10 * p) / 15
    assert fitted["rates"]["gold"] == pytest.approx(gold, abs=1e-6)
    assert fitted["rates"]["silver"] == pytest.approx(silver, abs=1e-6)
    assert fitted["rates"]["tin"] == fitted["rates"]["lead"] == pytest.approx(pooled, abs=1e-6)
    for level, rate in [("gold", gold), ("silver", silver), ("tin", pooled)]:
        assert fitted["map"][level] == pytest.approx(100 - 50 * rate / p, abs=1e-4)
    rates, overall = shrunk_rates(np.array([5.0, 16.0]), np.array([50, 40]), 0.0)
    assert list(rates) == [0.1, 0.4] and overall == pytest.approx(21 / 90)


def test_fit_calibration_learns_missing_maps_and_raw_fit_takes_text():
    snaps, events = _extract_frames(1200, 5)
    text = """
[model]
name = "cats"
version = "1.0.0"
[categories.c]
weight = 1
[[metrics]]
name = "contract"
column = "Contract"
category = "c"
method = "categorical"
[[metrics]]
name = "partner"
column = "Partner"
category = "c"
method = "boolean"
[metrics.params]
true_score = 100
false_score = 0
"""
    import tempfile

    path = Path(tempfile.mkdtemp()) / "m.toml"
    path.write_text(text)
    model = load_model(path)
    labelled = label_outcomes(snaps, events)
    fitted = hs.fit_calibration(model, labelled, outcome="churned")
    levels = fitted.metric("contract").params["map"]
    assert levels["Month-to-month"] < levels["One year"] < levels["Two year"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hs.fit_weights(snaps, events, fitted, features="raw")
    assert set(fit.table["metric"]) == {"contract", "partner"}


# ---------------------------------------------------------------- cadence from dates
def _monthly_scores(model):
    dates = [dt.date(2025, m, 28) for m in range(1, 13)]
    rows = [
        {"account_id": a, "as_of": d, "tenure": float(10 + 5 * i + (20 if a == "b" else 0))}
        for a in ("a", "b")
        for i, d in enumerate(dates)
    ]
    return score(pl.DataFrame(rows), model), dates


def test_monthly_snapshots_since_last_month_is_30_days():
    model = _tenure_model()
    scores, dates = _monthly_scores(model)
    assert cadence_of(scores["as_of"]) == "monthly"
    card = scorecard_data(scores, model, "a", peer_by="none", internal=True)  # the metric is internal
    # one month of change (5 tenure points of 72 = 6.9 score points), not four
    assert card.changes["points"].sum() == pytest.approx(100 * 5 / 72, abs=0.05)


def test_monthly_defaults_for_review_and_capacity():
    model = _tenure_model()
    scores, dates = _monthly_scores(model)
    rev = cohorts.cohort_review(scores, by=[])
    assert rev.date_from == dates[-4]  # 91 days back lands on the snapshot three months earlier
    assert rev.comparison.cohorts["cohort"].to_list() == ["all accounts"]
    events = pl.DataFrame({"account_id": ["a"], "date": [dt.date(2025, 12, 1)], "event": ["churned"]})
    flagged = scores.select("account_id", "as_of", "score").with_columns(churned=pl.col("account_id") == "a")
    cap = evaluation._capacity(flagged, "churned", None)
    assert cap["capacity_k"] == 1  # a tenth of the two accounts per month, at least one
    assert events.height == 1


def test_no_segment_means_no_grouping():
    p = hs.make_portfolio(n_accounts=250, n_weeks=40, seed=3)
    snaps = p.snapshots.drop("segment")
    ev = evaluation.evaluate(snaps, p.events, hs.load_model(hs.datasets.sample_dir() / "model.toml"))
    assert ev.by is None and ev.method == "time"
    assert str(ev.summary()).splitlines()[0].startswith("Backtest: churned within 90 days, time split at")
    cmp = cohorts.compare_cohorts(
        score(snaps, hs.load_model(hs.datasets.sample_dir() / "model.toml")), by=[], events=p.events
    )
    assert cmp.cohorts.height == 1
    with pytest.raises(ValueError, match=r"Columns available: .*region"):
        cohorts.compare_cohorts(
            score(snaps, hs.load_model(hs.datasets.sample_dir() / "model.toml")).join(
                snaps.select("account_id", "as_of", "region"), on=["account_id", "as_of"]
            ),
            by="segment",
        )


# ---------------------------------------------------------------- init from raw events
def test_init_from_events_writes_a_spec_and_model_that_load_and_score(tmp_path, capsys):
    rng = np.random.default_rng(0)
    start = dt.datetime(2025, 1, 6)
    rows, subs = [], []
    for i in range(60):
        acc = f"acc{i}"
        active = 400 if i % 3 else int(rng.integers(120, 300))
        subs.append(
            {
                "account_id": acc,
                "start": dt.date(2025, 1, 6),
                "end": None if i % 3 else (start + dt.timedelta(days=active)).date(),
                "mrr": 100.0,
                "seats": 5,
            }
        )
        for d in range(0, min(active, 400), int(rng.integers(1, 4)) if i % 3 else 6):
            rows.append(
                {
                    "account_id": acc,
                    "time": start + dt.timedelta(days=d, hours=9),
                    "event": "login",
                    "value": None,
                    "user_id": "u1",
                }
            )
            if d % 9 == 0:
                rows.append(
                    {
                        "account_id": acc,
                        "time": start + dt.timedelta(days=d, hours=10),
                        "event": "report",
                        "value": 1.0,
                        "user_id": "u1",
                    }
                )
    pl.DataFrame(rows).write_parquet(tmp_path / "events.parquet")
    pl.DataFrame(
        subs, schema={"account_id": pl.String, "start": pl.Date, "end": pl.Date, "mrr": pl.Float64, "seats": pl.Int64}
    ).write_parquet(tmp_path / "subs.parquet")
    out = tmp_path / "starter"
    assert (
        main(
            [
                "init",
                "--events",
                str(tmp_path / "events.parquet"),
                "--subscriptions",
                str(tmp_path / "subs.parquet"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    spec = hs.load_spec(out / "metrics.toml")
    names = {m.name for m in spec.metrics}
    assert {"login_7d", "login_28d", "days_since_login", "report_28d", "tenure_days"} <= names
    model = load_model(out / "model.toml")
    text = (out / "model.toml").read_text()
    assert "internal" in text and re.search(r"earliest|snapshots dated", text)
    built = hs.build_snapshots(spec)
    scored = score(built, model)
    assert scored["score"].drop_nulls().len() > 0
    assert model.metric("days_since_login").direction == "lower_is_better"
