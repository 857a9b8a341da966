"""Cohort comparison: golden statistics on tiny frames, detection of the sample's built-in cohort
differences, the nominal error rate on random splits, and the invariants of the movement views."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
from healthscore.analysis import cohorts
from healthscore.analysis.cohorts import (
    band_migration,
    biggest_movers,
    compare_cohorts,
    csm_view,
    metric_deciles,
    score_trend,
    suggest_breakpoints,
)
from healthscore.core.kernels import wilson_interval
from hypothesis import given, settings
from hypothesis import strategies as st

D0 = dt.date(2026, 1, 5)


def _day(weeks: int) -> dt.date:
    return D0 + dt.timedelta(weeks=weeks)


def _band(score: float) -> str:
    return "red" if score < 40 else "yellow" if score < 70 else "green"


# ------------------------------------------------------------------ golden values on tiny frames
def test_wilson_interval_golden():
    lo, hi = wilson_interval([5, 1, 0, 3], [20, 4, 4, 0])
    # closed form: (p + z^2/2n -/+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), z = 1.95996
    assert lo[:3] == pytest.approx([0.111862, 0.045587, 0.0], abs=1e-6)
    assert hi[:3] == pytest.approx([0.468701, 0.699358, 0.489891], abs=1e-6)
    assert math.isnan(lo[3]) and math.isnan(hi[3])  # no accounts, no interval


def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(3)
    for m in (1, 2, 7, 30):
        p = rng.uniform(0, 0.2, size=m)
        assert cohorts._holm(p) == pytest.approx(multipletests(p, method="holm")[1], abs=1e-12)


def _tiny() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Two cohorts of four accounts, perfectly separated scores, two snapshots 13 weeks apart.
    a1 churns five weeks after the first snapshot, so it has no second snapshot."""
    ids = ["a1", "a2", "a3", "a4", "b1", "b2", "b3", "b4"]
    seg = ["smb"] * 4 + ["enterprise"] * 4
    first = [10.0, 20.0, 45.0, 55.0, 60.0, 65.0, 75.0, 80.0]
    rows = []
    for when, sc in [(D0, first), (_day(13), [None, *first[1:]])]:
        for i, a in enumerate(ids):
            if sc[i] is None:
                continue
            rows.append(
                {
                    "account_id": a,
                    "as_of": when,
                    "segment": seg[i],
                    "arr": 1000.0 * (i + 1),
                    "score": sc[i],
                    "band": _band(sc[i]),
                }
            )
    scores = pl.DataFrame(rows)
    events = pl.DataFrame({"account_id": ["a1"], "date": [D0 + dt.timedelta(days=35)], "event": ["churned"]})
    return scores, events


def test_compare_cohorts_golden_tests_and_effect_sizes():
    scores, events = _tiny()
    # the first snapshot: all eight accounts, every smb score below every enterprise score
    cmp = compare_cohorts(scores, by="segment", as_of=D0, min_size=5)
    tests = {(r["metric"], r["kind"]): r for r in cmp.tests.iter_rows(named=True)}
    kw = tests[("score", "omnibus")]
    assert kw["statistic"] == pytest.approx(16 / 3)  # H = 12/(8*9) * (10^2 + 26^2)/4 - 27
    assert kw["effect_size"] == pytest.approx((16 / 3) / 7)  # epsilon-squared = H / (n - 1)
    assert kw["p_value"] == pytest.approx(0.0209213, abs=1e-6)
    # band mix: smb red, red, yellow, yellow / enterprise yellow, yellow, green, green
    mix = tests[("band_mix", "omnibus")]
    # expected counts 1, 2, 1 per row: chi2 = 4 * (1 - 0)^2 / 1 = 4
    assert mix["statistic"] == pytest.approx(4.0) and mix["df"] == 2
    assert mix["effect_size"] == pytest.approx(math.sqrt(4 / 8))  # Cramér's V = sqrt(chi2 / (n (k-1)))
    assert mix["p_value"] == pytest.approx(math.exp(-2))  # chi-square(2) survival = exp(-x/2)
    pair = tests[("score", "pairwise")]
    assert {pair["group_a"], pair["group_b"]} == {"enterprise", "smb"}
    assert abs(pair["effect_size"]) == pytest.approx(1.0)  # Cliff's delta: no overlap
    assert pair["p_value"] == pytest.approx(2 / 70)  # exact Mann-Whitney, 4 vs 4, fully separated
    # Holm over the two omnibus tests: the smaller p doubles, the larger keeps max(own, that)
    omni = cmp.tests.filter(pl.col("kind") == "omnibus").sort("p_value")
    assert omni["p_adjusted"].to_list() == pytest.approx([2 * 0.0209213, math.exp(-2)], abs=1e-6)
    s = cmp.cohorts.sort("cohort")
    assert s["accounts"].to_list() == [4, 4]
    assert s["score_median"].to_list() == [70.0, 32.5]
    assert s["small"].to_list() == [True, True]  # flagged, not hidden
    assert s["share_red"].to_list() == [0.0, 0.5]
    assert cmp.bands == ["red", "yellow", "green"]


def test_compare_cohorts_outcomes_point_in_time():
    scores, events = _tiny()
    cmp = compare_cohorts(scores, by="segment", events=events, horizon="90d", min_size=2)
    assert cmp.label_dates == [D0]  # the only snapshot followed by a full 90 days of data
    s = cmp.cohorts.sort("cohort")
    # the cross-section is the last date: a1 churned before it and is not in the portfolio any more
    assert s["accounts"].to_list() == [4, 3]
    # churn is labelled on the cohort as it was at D0: 1 of 4 smb accounts, 0 of 4 enterprise
    assert s["labelled"].to_list() == [4, 4]
    assert s["churned"].to_list() == [0, 1]
    assert s["churn_rate"].to_list() == [0.0, 0.25]
    assert s["churn_lower"].to_list() == pytest.approx([0.0, 0.045587], abs=1e-6)
    assert s["churn_upper"].to_list() == pytest.approx([0.489891, 0.699358], abs=1e-6)
    pair = cmp.tests.filter((pl.col("metric") == "churned") & (pl.col("kind") == "pairwise")).row(0, named=True)
    assert pair["test"] == "Fisher's exact"  # too few events for the normal approximation
    assert pair["p_value"] == pytest.approx(1.0)
    assert abs(pair["effect_size"]) == pytest.approx(0.25)  # risk difference


def test_derived_dimensions_and_multi_attribute_cohorts():
    scores, _ = _tiny()
    scores = scores.with_columns(
        contract_start=pl.when(pl.col("account_id").is_in(["a1", "b1"]))
        .then(pl.lit(dt.date(2024, 2, 1)))
        .otherwise(pl.lit(dt.date(2025, 11, 30))),
        touch_model=pl.when(pl.col("account_id").str.ends_with("1")).then(pl.lit("digital")).otherwise(pl.lit("high")),
    )
    q = compare_cohorts(scores, by="signup_quarter", as_of=D0, min_size=1)
    assert q.cohorts["cohort"].to_list() == ["2024-Q1", "2025-Q4"]
    assert q.cohorts["accounts"].to_list() == [2, 6]
    bands = compare_cohorts(scores.with_columns(arr=pl.col("arr") * 20), by="arr_band", as_of=D0, min_size=1)
    # ARR 20k..160k: bands in their natural order, not alphabetical
    assert bands.cohorts["cohort"].to_list() == ["10k-50k", "50k-100k", "100k-250k"]
    assert bands.cohorts["accounts"].to_list() == [2, 2, 4]
    combo = compare_cohorts(scores, by=["segment", "touch_model"], as_of=D0, min_size=1)
    assert combo.cohorts["cohort"].to_list() == [
        "enterprise · digital",
        "enterprise · high",
        "smb · digital",
        "smb · high",
    ]
    with pytest.raises(ValueError, match="cannot group by tier"):
        compare_cohorts(scores, by="tier")
    with pytest.raises(ValueError, match="events table lacks column.s. date, event"):
        compare_cohorts(scores, events=pl.DataFrame({"account_id": ["a1"]}))


# ------------------------------------------------------------------ the sample portfolio
@pytest.fixture(scope="module")
def sample():
    from healthscore.core.scoring import score
    from healthscore.datasets.portfolio import load_sample, sample_dir
    from healthscore.spec.model import load_model

    p = load_sample()
    return p, score(p.snapshots, load_model(sample_dir() / "model.toml"))


@pytest.mark.slow
def test_detects_the_built_in_segment_differences(sample):
    p, scores = sample
    cmp = compare_cohorts(scores, by=["segment", "touch_model"], events=p.events)
    truth = p.truth.segment_churn.with_columns(cohort=pl.concat_str("segment", "touch_model", separator=" · ")).sort(
        "base_annual_churn"
    )
    low, high = truth["cohort"][0], truth["cohort"][-1]
    assert high == "smb · digital"  # the sample's documented truth
    rates = dict(cmp.cohorts.select("cohort", "churn_rate").rows())
    assert rates[high] > 2 * rates[low]  # the right direction, and clearly
    omnibus = cmp.tests.filter((pl.col("kind") == "omnibus") & (pl.col("metric") == "churned")).row(0, named=True)
    assert omnibus["significant"] and omnibus["p_adjusted"] < 0.001
    pair = cmp._pair("churned", high, low)
    assert pair is not None and pair["significant"]
    text = cmp.describe()[0]
    assert text.startswith("smb · digital accounts churn at") and "significant difference" in text
    assert set(cmp.charts()) == {"scores", "band_mix", "churn"}


@pytest.mark.slow
def test_random_splits_keep_the_nominal_error_rate(sample):
    """Random cohorts of one population: each test at its nominal level (raw p < 0.05), and the
    corrected families ('any omnibus test', 'any pairwise score test') at most ~alpha."""
    p, scores = sample
    # one population (no real cohort structure), a short history so each run is quick
    frame = scores.filter(pl.col("as_of") >= scores["as_of"].max() - dt.timedelta(weeks=27)).select(
        "account_id", "as_of", "score", "band", "arr"
    )
    ids = frame["account_id"].unique().sort()
    rng = np.random.default_rng(20261123)
    n_splits = 400  # a rate of 0.05 then has a standard error of 0.011
    flags = dict.fromkeys(["score", "band_mix", "churned", "expanded", "any omnibus", "any pairwise"], 0)
    for _ in range(n_splits):
        groups = pl.DataFrame({"account_id": ids, "split": rng.choice(["x", "y", "z"], size=len(ids))})
        tests = compare_cohorts(frame.join(groups, on="account_id"), by="split", events=p.events).tests
        omnibus = tests.filter(pl.col("kind") == "omnibus")
        assert sorted(omnibus["metric"]) == ["band_mix", "churned", "expanded", "score"]
        for metric, p_value in omnibus.select("metric", "p_value").iter_rows():
            flags[metric] += p_value < 0.05
        flags["any omnibus"] += omnibus["significant"].any()
        flags["any pairwise"] += tests.filter((pl.col("kind") == "pairwise") & (pl.col("metric") == "score"))[
            "significant"
        ].any()
    rates = {k: v / n_splits for k, v in flags.items()}
    assert all(r <= 0.08 for r in rates.values()), rates


# ------------------------------------------------------------------ movement
def _movement_frame() -> pl.DataFrame:
    # a: green -> red; b: red -> red; c: yellow -> green; d only at the start; e only at the end; f unscored at start
    rows = [
        ("a", 0, 80.0, 10.0),
        ("b", 0, 20.0, 5.0),
        ("c", 0, 50.0, 7.0),
        ("d", 0, 90.0, 1.0),
        ("f", 0, None, 3.0),
        ("a", 4, 30.0, 11.0),
        ("b", 4, 25.0, 6.0),
        ("c", 4, 75.0, 8.0),
        ("e", 4, 60.0, 2.0),
        ("f", 4, 45.0, 4.0),
    ]
    return pl.DataFrame(
        [
            {
                "account_id": a,
                "as_of": _day(w),
                "segment": "smb" if a in "abf" else "enterprise",
                "arr": arr,
                "score": sc,
                "band": None if sc is None else _band(sc),
            }
            for a, w, sc, arr in rows
        ]
    )


def test_band_migration_golden():
    s = _movement_frame()
    m = band_migration(s, _day(0), _day(4))
    assert m.columns == ["from_band", "red", "yellow", "green", "unscored", "total"]
    assert m.rows() == [
        ("red", 1, 0, 0, 0, 1),
        ("yellow", 0, 0, 1, 0, 1),
        ("green", 1, 0, 0, 0, 1),
        ("unscored", 0, 1, 0, 0, 1),
    ]
    arr = band_migration(s, _day(0), _day(4), weight="arr")
    assert arr.filter(pl.col("from_band") == "green")["red"].item() == 11.0  # ARR at the end date
    assert arr["total"].sum() == 11.0 + 6.0 + 8.0 + 4.0
    # dates snap to the latest snapshot on or before them
    assert band_migration(s, _day(1), _day(6)).rows() == m.rows()
    with pytest.raises(ValueError, match="before the first snapshot"):
        band_migration(s, D0 - dt.timedelta(days=1), _day(4))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.booleans(),
            st.one_of(st.none(), st.floats(0, 100)),
            st.one_of(st.none(), st.floats(0, 100)),
            st.floats(1, 1e6),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_band_migration_totals_add_up(accounts):
    rows = []
    for i, (at_start, at_end, s0, s1, arr) in enumerate(accounts):
        for present, when, sc in [(at_start, _day(0), s0), (at_end, _day(2), s1)]:
            if present:
                rows.append(
                    {
                        "account_id": f"x{i}",
                        "as_of": when,
                        "score": sc,
                        "arr": arr,
                        "band": None if sc is None else _band(sc),
                    }
                )
    # a third account makes sure both dates exist in the frame
    rows += [
        {"account_id": "anchor", "as_of": d, "score": 50.0, "arr": 1.0, "band": "yellow"} for d in (_day(0), _day(2))
    ]
    s = pl.DataFrame(
        rows, schema={"account_id": pl.Utf8, "as_of": pl.Date, "score": pl.Float64, "arr": pl.Float64, "band": pl.Utf8}
    )
    both = {f"x{i}" for i, t in enumerate(accounts) if t[0] and t[1]} | {"anchor"}
    counts = band_migration(s, _day(0), _day(2))
    bands = [c for c in counts.columns if c not in ("from_band", "total")]
    assert counts["total"].sum() == len(both)
    assert counts.select(pl.sum_horizontal(bands).alias("s"))["s"].to_list() == counts["total"].to_list()
    end_arr = s.filter((pl.col("as_of") == _day(2)) & pl.col("account_id").is_in(list(both)))["arr"].sum()
    assert band_migration(s, _day(0), _day(2), weight="arr")["total"].sum() == pytest.approx(end_arr)
    start = s.filter((pl.col("as_of") == _day(0)) & pl.col("account_id").is_in(list(both)))
    by_start = dict(start.group_by(pl.col("band").fill_null("unscored")).len().rows())
    assert dict(counts.select("from_band", "total").rows()) == {b: by_start.get(b, 0) for b in counts["from_band"]}


def test_biggest_movers_and_their_drivers():
    s = _movement_frame().with_columns(drv_login_days=pl.col("score") * 0.7, drv_csat=pl.col("score") * 0.3)
    movers = biggest_movers(s, _day(0), _day(4), n=2)
    assert movers["account_id"].to_list() == ["a", "c"]  # -50 and +25; d and e are not present at both dates
    a = movers.row(0, named=True)
    assert a["change"] == -50.0 and a["band_start"] == "green" and a["band_end"] == "red"
    assert a["top_driver"] == "login_days" and a["top_driver_points"] == pytest.approx(-35.0)
    assert a["drivers"] == "login_days -35.0, csat -15.0"
    assert biggest_movers(s, _day(0), _day(4), direction="up")["account_id"].to_list() == ["c", "b"]


def test_score_trend_by_cohort():
    t = score_trend(_movement_frame(), "segment")
    got = {(r["cohort"], r["as_of"]): (r["accounts"], r["score_mean"]) for r in t.iter_rows(named=True)}
    assert got[("smb", _day(0))] == (3, 50.0)  # a, b, f (f unscored, not in the mean)
    assert got[("smb", _day(4))] == (3, pytest.approx((30 + 25 + 45) / 3))
    assert got[("enterprise", _day(4))] == (2, 67.5)


# ------------------------------------------------------------------ metric cohorts
@pytest.mark.slow
def test_metric_deciles_follow_the_truth(sample):
    from healthscore.core.calibration import check_params

    p, _ = sample
    dec = metric_deciles(p.snapshots, p.events, "seat_utilization")
    measured = dec.filter(pl.col("decile").is_not_null()).sort("decile")
    assert measured.height == 10
    labelled = cohorts._spaced_dates(sorted(p.snapshots["as_of"].unique().to_list()), "90d", p.snapshots["as_of"].max())
    assert len(labelled) >= 3
    # every labelled row is in exactly one decile (or the "not measured" row)
    assert (dec["events"] <= dec["rows"]).all()
    assert ((dec["rate_lower"] <= dec["rate"]) & (dec["rate"] <= dec["rate_upper"])).all()
    direction = p.truth.effects.filter(pl.col("metric") == "seat_utilization")["direction"].item()
    assert direction == "higher_is_better"
    assert measured["rate"][0] > 2 * measured["rate"][-1]  # low utilisation churns more
    bp = suggest_breakpoints(dec)
    assert bp["direction"] == "higher_is_better"
    assert check_params("thresholds", {"points": bp["points"]}) == []  # the calibration takes them as they are
    sc = [s for _, s in bp["points"]]
    assert sc == sorted(sc) and sc[0] == 0.0 and sc[-1] == 100.0
    assert bp["crossing"] is not None and measured["median"][0] < bp["crossing"] < measured["median"][-1]


def test_suggest_breakpoints_lower_is_better():
    d = pl.DataFrame(
        {
            "decile": [1, 2, 3],
            "median": [0.0, 5.0, 20.0],
            "rate": [0.02, 0.05, 0.2],
            "rows": [100, 100, 100],
            "portfolio_rate": [0.09] * 3,
        }
    )
    bp = suggest_breakpoints(d)
    assert bp["direction"] == "lower_is_better"
    assert bp["points"] == [[0.0, 100.0], [5.0, 78.6], [20.0, 0.0]]


# ------------------------------------------------------------------ CSM view
def test_csm_view_counts_handovers_point_in_time():
    csm = ["Ann", "Ann", None, "Bo", "Bo", "Ann"]  # Ann -> Bo -> Ann: two handovers, a gap is not one
    rows = [
        {"account_id": "h", "as_of": _day(w), "csm": c, "score": 30.0, "band": "red", "arr": 5.0}
        for w, c in enumerate(csm)
    ]
    rows += [
        {"account_id": "k", "as_of": _day(w), "csm": "Cy", "score": 80.0, "band": "green", "arr": 7.0} for w in range(6)
    ]
    s = pl.DataFrame(rows)
    derived = cohorts.with_derived(s).filter(pl.col("account_id") == "h").sort("as_of")
    assert derived["handovers"].cast(pl.Utf8).to_list() == ["0 handovers"] * 3 + ["1 handover"] * 2 + ["2+ handovers"]
    view = csm_view(s, min_size=1)
    assert view.portfolio["csm"].to_list() == ["Ann", "Cy"]  # alphabetical: not a ranking
    assert view.portfolio.select("accounts", "in_red", "share_red", "arr_red").rows() == [
        (1, 1, 1.0, 5.0),
        (1, 0, 0.0, 0.0),
    ]
    assert "not a ranking of people" in view.describe()[-1]


def test_many_cohorts_are_tested_against_all_others():
    scores, _ = _tiny()
    three = scores.with_columns(tier=pl.col("account_id").str.slice(1, 1).replace({"1": "p", "2": "p"}))
    every_pair = compare_cohorts(three, by="tier", as_of=D0, min_size=1)
    pairs = every_pair.tests.filter(pl.col("kind") == "pairwise")
    assert pairs.height == 3 and "all others" not in pairs["group_b"].to_list()  # p, 3, 4: three pairs
    rest = compare_cohorts(three, by="tier", as_of=D0, min_size=1, max_pairs=2).tests.filter(
        pl.col("kind") == "pairwise"
    )
    assert rest["group_b"].to_list() == ["all others"] * 3
    # "3" holds a3 (45) and b3 (75); against the six others (10, 20, 55, 60, 65, 80): 45 wins 2 and
    # loses 4, 75 wins 5 and loses 1, so Cliff's delta = (7 - 5) / 12
    three_vs_rest = rest.filter(pl.col("group_a") == "3").row(0, named=True)
    assert three_vs_rest["n"] == 8 and three_vs_rest["effect_size"] == pytest.approx(2 / 12)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["p", "q", "r"]), st.one_of(st.none(), st.floats(0, 100)), st.floats(0, 1e5)),
        min_size=2,
        max_size=60,
    )
)
def test_comparison_invariants(accounts):
    s = pl.DataFrame(
        [
            {
                "account_id": f"x{i}",
                "as_of": D0,
                "tier": t,
                "score": sc,
                "arr": arr,
                "band": None if sc is None else _band(sc),
            }
            for i, (t, sc, arr) in enumerate(accounts)
        ],
        schema={
            "account_id": pl.Utf8,
            "as_of": pl.Date,
            "tier": pl.Utf8,
            "score": pl.Float64,
            "arr": pl.Float64,
            "band": pl.Utf8,
        },
    )
    cmp = compare_cohorts(s, by="tier", min_size=5)
    assert cmp.cohorts["accounts"].sum() == len(accounts)  # every account in exactly one cohort
    assert cmp.cohorts["arr"].sum() == pytest.approx(sum(a for *_, a in accounts))
    assert cmp.cohorts["small"].to_list() == [n < 5 for n in cmp.cohorts["accounts"]]
    shares = cmp.band_mix.group_by("cohort").agg(pl.col("share").sum())["share"]
    assert shares.to_list() == pytest.approx([1.0] * len(shares))
    t = cmp.tests
    if t.height:
        assert ((t["p_value"] >= 0) & (t["p_value"] <= 1)).all()
        assert (t["p_adjusted"] >= t["p_value"] - 1e-12).all()
        bounded = t.filter(pl.col("effect_measure").is_in(["cliffs_delta", "cramers_v"]))["effect_size"]
        assert (bounded.abs() <= 1 + 1e-9).all()
        assert (t.filter(pl.col("effect_measure") == "cramers_v")["effect_size"] >= 0).all()
