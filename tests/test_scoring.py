"""The scoring engine: golden tables, invariants (hypothesis), overrides, variants, the sample end to end."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import healthscore as hs
import numpy as np
import polars as pl
import pytest
from healthscore.app import cli
from healthscore.core import scoring
from healthscore.core.scoring import OverrideError
from healthscore.spec.model import Band, Category, Metric, ModelError, ScoreModel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

ROOT = Path(__file__).resolve().parents[1]
D1, D2, D3 = dt.date(2026, 1, 5), dt.date(2026, 1, 12), dt.date(2026, 1, 19)
BANDS = [Band("red", 0, 40), Band("yellow", 40, 70), Band("green", 70, 100)]


def tiny_model(min_coverage: float = 0.5, **weights: float) -> ScoreModel:
    """2 categories, 3 metrics: usage = a (w 1) + b (w 3), support = c (w 1, lower is better)."""
    w = {"a": 1.0, "b": 3.0, "c": 1.0, "usage": 2.0, "support": 1.0, **weights}
    return ScoreModel(
        "tiny",
        "1.0",
        [
            Metric("a", "a", "usage", params={"points": [[0, 0], [10, 100]]}, weight=w["a"]),
            Metric("b", "b", "usage", params={"points": [[0, 0], [100, 100]]}, weight=w["b"]),
            Metric("c", "c", "support", "lower_is_better", params={"points": [[0, 100], [4, 0]]}, weight=w["c"]),
        ],
        {"usage": Category("usage", w["usage"]), "support": Category("support", w["support"])},
        BANDS,
        min_coverage=min_coverage,
    )


def tiny_snapshots() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "account_id": ["x", "y", "z", "x"],
            "as_of": [D1, D1, D1, D2],
            "segment": ["smb", "smb", "enterprise", "smb"],
            "a": [5.0, None, None, 10.0],
            "b": [80.0, 40.0, None, 80.0],
            "c": [1.0, 2.0, 3.0, 1.0],
        }
    )


# ---------------------------------------------------------------- golden table
def test_golden_table_by_hand():
    out = hs.score(tiny_snapshots(), tiny_model())
    assert out.select("account_id", "as_of").rows() == [("x", D1), ("x", D2), ("y", D1), ("z", D1)]
    row = {r["account_id"] + str(r["as_of"].day): r for r in out.iter_rows(named=True)}
    x1, x2, y, z = row["x5"], row["x12"], row["y5"], row["z5"]
    # x on D1: a=50, b=80, c=75; usage = (1*50 + 3*80) / 4 = 72.5; score = (2*72.5 + 75) / 3
    assert (x1["sub_a"], x1["sub_b"], x1["sub_c"]) == (50.0, 80.0, 75.0)
    assert x1["cat_usage"] == pytest.approx(72.5) and x1["cat_support"] == pytest.approx(75.0)
    assert x1["score"] == pytest.approx(73.333333333, abs=1e-8) and x1["band"] == "green"
    assert x1["coverage"] == pytest.approx(1.0)
    assert (x1["drv_a"], x1["drv_b"], x1["drv_c"]) == pytest.approx((8.333333333, 40.0, 25.0))
    assert x1["score_change_1"] is None and x1["drvchg_a"] is None
    # x on D2: a=100 -> usage = (100 + 240) / 4 = 85; score = (170 + 75) / 3 = 81.667
    assert x2["score"] == pytest.approx(81.666666667) and x2["score_change_1"] == pytest.approx(8.333333333)
    assert (x2["drvchg_a"], x2["drvchg_b"], x2["drvchg_c"]) == pytest.approx((8.333333333, 0.0, 0.0))
    # y: a is N/A -> usage is b alone (40); score = (2*40 + 50) / 3; coverage = 1 - (2/3)(1/4)
    assert y["sub_a"] is None and y["cat_usage"] == pytest.approx(40.0)
    assert y["score"] == pytest.approx(43.333333333) and y["band"] == "yellow"
    assert y["coverage"] == pytest.approx(5 / 6)
    assert (y["drv_a"], y["drv_b"], y["drv_c"]) == pytest.approx((0.0, 26.666666667, 16.666666667))
    # z: only c (weight share 1/3) -> below the 50% minimum: no score, and a reason
    assert z["cat_usage"] is None and z["cat_support"] == pytest.approx(25.0)
    assert z["score"] is None and z["band"] is None and z["coverage"] == pytest.approx(1 / 3)
    assert z["null_reason"] == "coverage 33.3% below minimum 50% (missing: a, b)"
    assert z["drv_c"] is None
    assert x1["null_reason"] is None and x1["variant"] == "default"
    model = tiny_model()
    assert {r["model_hash"] for r in row.values()} == {model.hash}
    assert {(r["model_name"], r["model_version"]) for r in row.values()} == {("tiny", "1.0")}
    assert out["segment"].to_list() == ["smb", "smb", "smb", "enterprise"]  # attributes pass through


def test_score_frame_columns_follow_the_contract():
    out = hs.score(tiny_snapshots(), tiny_model())
    assert out.columns == [
        "account_id",
        "as_of",
        "segment",
        "sub_a",
        "sub_b",
        "sub_c",
        "cat_usage",
        "cat_support",
        "score",
        "band",
        "coverage",
        "null_reason",
        "score_change_1",
        "score_change_4",
        "drv_a",
        "drv_b",
        "drv_c",
        "drvchg_a",
        "drvchg_b",
        "drvchg_c",
        "variant",
        "override_value",
        "override_target",
        "override_reason",
        "override_author",
        "override_computed_score",
        "model_name",
        "model_version",
        "model_hash",
    ]
    assert out.schema["score"] == pl.Float64 and out.schema["band"] == pl.String


def test_na_policy_score(tmp_path):
    model = tiny_model()
    model = ScoreModel(
        model.name,
        model.version,
        [Metric("a", "a", "usage", params={"points": [[0, 0], [10, 100]]}, na_policy="score:20"), *model.metrics[1:]],
        model.categories,
        model.bands,
        model.min_coverage,
    )
    out = hs.score(tiny_snapshots(), model)
    assert out.filter(pl.col("account_id") == "y")["sub_a"].item() == 20.0


def test_no_metric_present():
    snaps = tiny_snapshots().with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in "abc")
    out = hs.score(snaps, tiny_model(min_coverage=0.0))
    assert out["score"].null_count() == out.height
    assert out["null_reason"][0] == "no metric present (missing: a, b, c)"


def test_score_change_4_and_as_of():
    dates = [D1 + dt.timedelta(weeks=i) for i in range(6)]
    snaps = pl.DataFrame(
        {
            "account_id": ["x"] * 6,
            "as_of": dates,
            "segment": ["smb"] * 6,
            "a": [float(i) for i in range(6)],
            "b": [50.0] * 6,
            "c": [0.0] * 6,
        }
    )
    out = hs.score(snaps.sample(fraction=1.0, shuffle=True, seed=1), tiny_model())
    assert out["as_of"].to_list() == dates  # sorted whatever the input order
    # each step of a (+1) adds 10 sub-score points x effective weight (2/3 x 1/4)
    assert out["score_change_1"].to_list()[1:] == pytest.approx([10 / 6] * 5)
    assert out["score_change_4"].to_list()[:4] == [None] * 4
    assert out["score_change_4"].to_list()[4:] == pytest.approx([40 / 6] * 2)
    one = hs.score(snaps, tiny_model(), as_of="2026-02-01")  # a Sunday: the latest snapshot before it
    assert one["as_of"].to_list() == [dates[3]]
    assert one.row(0) == out.filter(pl.col("as_of") == dates[3]).row(0)  # history still used
    with pytest.raises(ModelError, match="no snapshot on or before 2025-01-01"):
        hs.score(snaps, tiny_model(), as_of=dt.date(2025, 1, 1))


def test_calibrate_then_combine_with_other_weights_equals_score():
    snaps = tiny_snapshots()
    heavier = tiny_model().with_weights(metrics={"a": 5}, categories={"support": 4})
    subs = hs.calibrate(snaps, tiny_model())
    assert [c for c in subs.columns if c.startswith("sub_")] == ["sub_a", "sub_b", "sub_c"]
    assert hs.combine(subs, heavier).equals(hs.score(snaps, heavier))


def test_missing_key_and_metric_columns():
    with pytest.raises(ModelError, match=r"missing key column\(s\) \['as_of'\]"):
        hs.score(tiny_snapshots().drop("as_of"), tiny_model())
    with pytest.raises(ModelError, match=r"metrics\[3\] \(c\).column: column 'c' is not in the data"):
        hs.score(tiny_snapshots().drop("c"), tiny_model())
    with pytest.raises(ModelError, match=r"lacks \['sub_c'\]"):
        hs.combine(hs.calibrate(tiny_snapshots(), tiny_model()).drop("sub_c"), tiny_model())


# ---------------------------------------------------------------- properties
value = st.one_of(st.none(), st.floats(min_value=-50, max_value=200, allow_nan=False))
rows = st.lists(st.tuples(st.sampled_from(["p", "q"]), value, value, value), min_size=1, max_size=12)
positive = st.floats(min_value=0.01, max_value=50)


def frame_of(data: list[tuple]) -> pl.DataFrame:
    n = {"p": 0, "q": 0}
    records = []
    for acc, a, b, c in data:
        records.append({"account_id": acc, "as_of": D1 + dt.timedelta(weeks=n[acc]), "a": a, "b": b, "c": c})
        n[acc] += 1
    return pl.DataFrame(
        records, schema={"account_id": pl.String, "as_of": pl.Date, "a": pl.Float64, "b": pl.Float64, "c": pl.Float64}
    )


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(rows, positive, positive, positive, positive, positive, st.floats(0, 1))
def test_bounds_and_drivers_sum(data, wa, wb, wc, wu, ws, cov):
    model = tiny_model(min_coverage=cov, a=wa, b=wb, c=wc, usage=wu, support=ws)
    out = hs.score(frame_of(data), model)
    for col in ["sub_a", "sub_b", "sub_c", "cat_usage", "cat_support", "score"]:
        assert out[col].drop_nulls().is_between(0, 100).all(), col
    assert out["coverage"].is_between(0, 1).all()
    scored = out.filter(pl.col("score").is_not_null())
    total = scored.select(pl.sum_horizontal("drv_a", "drv_b", "drv_c") - pl.col("score")).to_series()
    assert total.abs().max() is None or total.abs().max() < 1e-9
    changed = out.filter(pl.col("score_change_1").is_not_null())
    diff = changed.select(pl.sum_horizontal("drvchg_a", "drvchg_b", "drvchg_c") - pl.col("score_change_1")).to_series()
    assert diff.abs().max() is None or diff.abs().max() < 1e-9
    # null exactly when coverage is below the minimum or nothing is present
    assert (out["score"].is_null() == ((out["coverage"] < cov - 1e-12) | (out["coverage"] == 0))).all()


@SETTINGS
@given(rows, st.sampled_from(["a", "b", "c"]))
def test_na_metric_never_changes_another_sub_score(data, blank):
    snaps = frame_of(data)
    before = hs.calibrate(snaps, tiny_model())
    after = hs.calibrate(snaps.with_columns(pl.lit(None, dtype=pl.Float64).alias(blank)), tiny_model())
    others = [f"sub_{m}" for m in "abc" if m != blank]
    assert after.select(others).equals(before.select(others))
    assert after[f"sub_{blank}"].null_count() == after.height


@SETTINGS
@given(rows, st.floats(min_value=0.001, max_value=1000))
def test_scaling_all_weights_leaves_scores_unchanged(data, k):
    snaps = frame_of(data)
    base = hs.score(snaps, tiny_model(min_coverage=0.3))
    scaled = hs.score(snaps, tiny_model(min_coverage=0.3, a=k, b=3 * k, c=k, usage=2 * k, support=k))
    for col in ["score", "coverage", "cat_usage", "cat_support", "drv_a", "drv_b", "drv_c"]:
        a, b = base[col], scaled[col]
        assert (a.is_null() == b.is_null()).all(), col
        assert ((a - b).abs().drop_nulls() < 1e-9).all(), col


@SETTINGS
@given(rows, st.sampled_from(["a", "b"]), st.floats(min_value=0, max_value=100))
def test_raising_a_higher_is_better_value_never_lowers_the_score(data, metric, bump):
    snaps = frame_of(data)
    raised = snaps.with_columns(pl.col(metric) + bump)
    before, after = hs.score(snaps, tiny_model()), hs.score(raised, tiny_model())
    both = before["score"].is_not_null() & after["score"].is_not_null()
    assert ((after["score"] - before["score"]).filter(both) >= -1e-9).all()
    lowered_c = hs.score(snaps.with_columns(pl.col("c") - bump), tiny_model())  # c: lower is better
    both = before["score"].is_not_null() & lowered_c["score"].is_not_null()
    assert ((lowered_c["score"] - before["score"]).filter(both) >= -1e-9).all()


# ---------------------------------------------------------------- overrides
def overrides(**cols) -> pl.DataFrame:
    base = {
        "account_id": ["x"],
        "metric": [None],
        "value": [90.0],
        "reason": ["renewal signed"],
        "author": ["dana"],
        "created": [D1],
        "expires": [None],
    }
    base.update(cols)
    return pl.DataFrame(base, schema_overrides={"metric": pl.String, "created": pl.Date, "expires": pl.Date})


def test_overall_override_sets_score_and_keeps_the_audit():
    out = hs.score(tiny_snapshots(), tiny_model(), overrides=overrides(expires=[D1]))
    x1 = out.filter((pl.col("account_id") == "x") & (pl.col("as_of") == D1)).row(0, named=True)
    assert x1["score"] == 90.0 and x1["band"] == "green"
    assert x1["override_value"] == 90.0 and x1["override_target"] == "overall"
    assert x1["override_reason"] == "overall: renewal signed" and x1["override_author"] == "dana"
    assert x1["override_computed_score"] == pytest.approx(73.333333333)
    # drivers still explain the computed score
    assert x1["drv_a"] + x1["drv_b"] + x1["drv_c"] == pytest.approx(73.333333333)
    x2 = out.filter((pl.col("account_id") == "x") & (pl.col("as_of") == D2)).row(0, named=True)
    assert x2["override_value"] is None and x2["score"] == pytest.approx(81.666666667)  # expired on D2
    assert x2["score_change_1"] == pytest.approx(81.666666667 - 90.0)  # change of the reported score


def test_metric_override_flows_into_the_score():
    out = hs.score(tiny_snapshots(), tiny_model(), overrides=overrides(account_id=["y"], metric=["a"], value=[100.0]))
    y = out.filter(pl.col("account_id") == "y").row(0, named=True)
    # a = 100 now present: usage = (100 + 3*40) / 4 = 55; score = (110 + 50) / 3
    assert y["sub_a"] == 100.0 and y["score"] == pytest.approx(160 / 3) and y["coverage"] == pytest.approx(1.0)
    assert y["override_value"] is None and y["override_target"] == "a"
    assert y["drv_a"] + y["drv_b"] + y["drv_c"] == pytest.approx(y["score"])


def test_override_validity_window_and_latest_wins():
    table = pl.concat(
        [
            overrides(value=[10.0], created=[D1]),
            overrides(value=[20.0], created=[D2], reason=["newer"]),
            overrides(account_id=["y"], value=[5.0], created=[D2]),  # created after y's only snapshot
        ]
    )
    out = hs.score(tiny_snapshots(), tiny_model(), overrides=table).sort("account_id", "as_of")
    assert out["override_value"].to_list() == [10.0, 20.0, None, None]
    assert out["override_reason"][1] == "overall: newer"


def test_override_errors_name_the_row():
    with pytest.raises(OverrideError, match=r"overrides: row 1 \(account nobody, metric overall\): unknown account"):
        hs.score(tiny_snapshots(), tiny_model(), overrides=overrides(account_id=["nobody"]))
    with pytest.raises(OverrideError, match=r"row 1 \(account x, metric logins\): unknown metric 'logins'"):
        hs.score(tiny_snapshots(), tiny_model(), overrides=overrides(metric=["logins"]))
    with pytest.raises(OverrideError, match=r"value '150.0' must be a number in 0..100"):
        hs.score(tiny_snapshots(), tiny_model(), overrides=overrides(value=[150.0]))
    with pytest.raises(OverrideError, match=r"reason is empty"):
        hs.score(tiny_snapshots(), tiny_model(), overrides=overrides(reason=[""]))
    with pytest.raises(OverrideError, match=r"expires is before created"):
        hs.score(tiny_snapshots(), tiny_model(), overrides=overrides(expires=[dt.date(2025, 1, 1)]))


def test_overrides_from_csv(tmp_path):
    path = tmp_path / "overrides.csv"
    path.write_text(
        "account_id,metric,value,reason,author,created,expires\n"
        "x,overall,15,champion gone,sam,2026-01-01,2026-01-06\n"
        "y,c,100,ticket was a test,sam,,\n"
    )
    out = hs.score(tiny_snapshots(), tiny_model(), overrides=path).sort("account_id", "as_of")
    assert out["override_value"].to_list() == [15.0, None, None, None]
    assert out.filter(pl.col("account_id") == "y")["sub_c"].item() == 100.0
    path.write_text("account_id,metric,value,reason,author,created,expires\nx,,15,r,a,someday,\n")
    with pytest.raises(OverrideError, match=r"overrides.csv: row 1 .*created 'someday' is not a date"):
        hs.score(tiny_snapshots(), tiny_model(), overrides=path)


# ---------------------------------------------------------------- variants
VARIANT_MODEL = """\
[model]
name = "v"
version = "1"
[categories.usage]
weight = 1
[categories.support]
weight = 1
[[metrics]]
name = "a"
column = "a"
category = "usage"
method = "thresholds"
params = { points = [[0, 0], [10, 100]] }
[[metrics]]
name = "c"
column = "c"
category = "support"
direction = "lower_is_better"
method = "thresholds"
params = { points = [[0, 100], [4, 0]] }
[[variants]]
name = "small"
filter = { segment = "smb" }
params = { a = { points = [[0, 0], [5, 100]] } }
categories = { support = 3 }
[[variants]]
name = "big"
filter = { segment = ["enterprise", "mid_market"] }
disabled = ["c"]
"""


def test_variant_selection(tmp_path):
    path = tmp_path / "v.toml"
    path.write_text(VARIANT_MODEL)
    out = hs.score(tiny_snapshots(), hs.load_model(path)).sort("account_id", "as_of")
    assert out["variant"].to_list() == ["small", "small", "small", "big"]
    x1 = out.row(0, named=True)
    # small: a uses its own points (5 of 5 -> 100); support weighs 3 of 4: (100 + 3*75) / 4
    assert x1["sub_a"] == 100.0 and x1["score"] == pytest.approx(81.25)
    z = out.row(3, named=True)
    # big: c is disabled (null, and not counted as missing); a is null too -> nothing present
    assert z["sub_c"] is None and z["coverage"] == 0 and z["null_reason"] == "no metric present (missing: a)"


def test_variant_conflict_names_both_and_the_account(tmp_path):
    path = tmp_path / "v.toml"
    path.write_text(
        VARIANT_MODEL.replace(
            'filter = { segment = ["enterprise", "mid_market"] }', 'filter = { segment = ["enterprise", "smb"] }'
        )
    )
    with pytest.raises(ModelError, match=r"account x \(as_of 2026-01-05\) matches variants 'small' and 'big'"):
        hs.score(tiny_snapshots(), hs.load_model(path))


# ---------------------------------------------------------------- the sample portfolio
@pytest.fixture(scope="module")
def portfolio():
    return hs.make_portfolio(n_accounts=300, n_weeks=30, seed=11)


def test_sample_portfolio_scores_end_to_end(portfolio):
    models = hs.load_models(ROOT / "data" / "model.toml")
    for model in models.values():
        out = hs.score(portfolio.snapshots, model)
        assert out.height == portfolio.snapshots.height
        assert out["score"].null_count() < out.height * 0.05
        assert set(out["band"].drop_nulls().unique()) <= {b.name for b in model.bands}
    health = hs.score(portfolio.snapshots, models["health"])
    assert set(health["variant"].unique()) == {"default", "digital"}
    assert (
        health.filter(pl.col("variant") == "digital")["sub_csm_assessment"].null_count()
        == health.filter(pl.col("variant") == "digital").height
    )
    # the score means something: accounts that later churn score lower at their last snapshot
    churned = portfolio.events.filter(pl.col("event") == "churned")["account_id"].unique()
    last = health.sort("as_of").group_by("account_id").last()
    gap = (
        last.filter(~pl.col("account_id").is_in(churned.implode()))["score"].mean()
        - last.filter(pl.col("account_id").is_in(churned.implode()))["score"].mean()
    )
    assert gap > 5


@pytest.mark.parametrize("template", ["general_saas", "high_touch", "digital", "onboarding"])
def test_templates_score_the_sample(portfolio, template):
    for model in hs.load_models(ROOT / "templates" / "models" / f"{template}.toml").values():
        snaps = portfolio.snapshots
        if template == "high_touch" and model.name == "churn_index":
            model = hs.fit_calibration(model, snaps, outcome=snaps["champion_left"].fill_null(0) > 0)
        else:
            model = hs.fit_calibration(model, snaps)
        out = hs.score(snaps, model)
        assert out["score"].drop_nulls().len() > 0 and out["model_hash"][0] == model.hash


def test_cli_score(portfolio, tmp_path, capsys):
    data = tmp_path / "snapshots.parquet"
    portfolio.snapshots.write_parquet(data)
    out = tmp_path / "scores.parquet"
    last = portfolio.snapshots.filter(pl.col("as_of") == dt.date(2026, 11, 16))
    last_date_account = last["account_id"].sort()[0]
    (tmp_path / "ov.csv").write_text(
        f"account_id,metric,value,reason,author,created,expires\n{last_date_account},overall,5,test,me,,\n"
    )
    code = cli.main(
        [
            "score",
            "--model",
            str(ROOT / "data" / "model.toml"),
            "--data",
            str(data),
            "--out",
            str(out),
            "--as-of",
            "2026-11-16",
            "--overrides",
            str(tmp_path / "ov.csv"),
        ]
    )
    assert code == 0
    scores = pl.read_parquet(out)
    assert scores["as_of"].unique().to_list() == [dt.date(2026, 11, 16)]
    printed = capsys.readouterr().out
    assert "accounts per band at their latest snapshot" in printed and "red" in printed
    assert scores.height == last.height
    assert scores.filter(pl.col("override_value").is_not_null())["account_id"].to_list() == [last_date_account]
    assert scores.filter(pl.col("account_id") == last_date_account)["score"].item() == 5.0
    code = cli.main(
        ["score", "--model", str(ROOT / "data" / "model.toml"), "--data", str(data), "--out", str(tmp_path / "s.txt")]
    )
    assert code == 2 and "use a .parquet or .csv" in capsys.readouterr().err


def test_chunked_scoring_equals_one_go(portfolio):
    model = hs.load_model(ROOT / "data" / "model.toml")
    whole = hs.score(portfolio.snapshots, model)
    chunked = scoring.score_in_chunks(portfolio.snapshots, model, chunk_accounts=70, progress=False)
    assert chunked.equals(whole)
    # a chunk whose accounts all churned early still answers for the portfolio's date, not its own
    early = portfolio.snapshots.group_by("account_id").agg(pl.col("as_of").max()).sort("as_of")["account_id"][:5]
    first = pl.col("account_id").is_in(early.implode())
    snaps = portfolio.snapshots.with_columns(  # renamed so that they make up the first chunk
        pl.when(first).then(pl.lit("0") + pl.col("account_id")).otherwise(pl.col("account_id")).alias("account_id")
    )
    assert portfolio.snapshots.filter(first)["as_of"].max() < dt.date(2026, 11, 16)
    on_date = hs.score(snaps, model, as_of="2026-11-16")
    chunked = scoring.score_in_chunks(snaps, model, as_of="2026-11-16", chunk_accounts=5, progress=False)
    # float sums may differ in the last bit with the frame size; everything else is identical
    assert_frame_equal(chunked, on_date, check_exact=False, rel_tol=0, abs_tol=1e-9)
    assert chunked["as_of"].unique().to_list() == [dt.date(2026, 11, 16)]


@pytest.mark.slow
def test_demo_step_scores_the_bundled_sample(tmp_path):
    summary = cli._demo_score(tmp_path)
    scores = pl.read_parquet(tmp_path / "scores.parquet")
    model = hs.load_model(ROOT / "data" / "model.toml")
    assert summary.startswith(f"health {model.version} (hash {model.hash}): red ")
    assert scores["model_hash"].unique().to_list() == [model.hash]
    counts = scoring.band_summary(scores, model)
    assert counts["accounts"].sum() == scores["account_id"].n_unique()
    for band, n in counts.select("band", "accounts").rows():
        assert f"{band} {n}" in summary


def test_scores_are_identical_from_run_to_run():
    """A score must not depend on the run: band edges and report hashes rely on exact repeats."""
    from healthscore.datasets.portfolio import load_sample

    portfolio = load_sample()  # large enough for polars to split the work across threads
    model = hs.load_model(Path(__file__).parents[1] / "data" / "model.toml")
    sub = hs.calibrate(portfolio.snapshots, model)
    first = hs.combine(sub, model)
    # the defined order: drivers added left to right in model order, so any run can be checked
    drv = first.select([f"drv_{m.name}" for m in model.metrics]).to_numpy()
    in_order = drv[:, 0].copy()
    for j in range(1, drv.shape[1]):
        in_order = in_order + drv[:, j]
    ok = first["score"].is_not_null().to_numpy() & first["override_value"].is_null().to_numpy()
    expected = np.clip(in_order[ok], 0.0, 100.0)
    for _ in range(20):
        again = hs.combine(sub, model)
        assert np.array_equal(again["score"].to_numpy()[ok], expected)  # bit for bit, not approx
        assert again["score"].equals(first["score"])
        assert again["cat_usage"].equals(first["cat_usage"])
