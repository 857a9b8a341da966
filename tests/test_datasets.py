"""The sample portfolio: contract, determinism, and that the documented truth shows in the data."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from healthscore.app import cli
from healthscore.datasets.portfolio import (
    _REFERENCE,
    METRICS,
    SAMPLE_ARGS,
    Portfolio,
    data_dictionary,
    load_sample,
    make_portfolio,
    sample_dir,
)
from healthscore.io.snapshots import CONTRACT_SIGNALS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

ATTRIBUTES = {
    "account_id": pl.String,
    "as_of": pl.Date,
    "company_name": pl.String,
    "segment": pl.String,
    "touch_model": pl.String,
    "industry": pl.String,
    "region": pl.String,
    "csm": pl.String,
    "lifecycle_stage": pl.String,
    "arr": pl.Float64,
    "seats_purchased": pl.Int64,
    "contract_start": pl.Date,
    "renewal_date": pl.Date,
    "goal_start": pl.Date,
    "goal_due": pl.Date,
}
# golden: the snapshot contract's raw signals, written out here so that a change to either list fails
CONTRACT_METRICS = [
    "active_users",
    "seat_utilization",
    "login_days",
    "key_feature_adoption",
    "api_calls",
    "tickets_opened",
    "high_sev_tickets",
    "csat",
    "nps",
    "exec_sponsor_engaged",
    "champion_left",
    "csm_assessment",
    "days_invoice_overdue",
    "seats_deployed_ratio",
    "goal_progress",
    "email_ctr",
    "community_posts",
    "training_completions",
]


@pytest.fixture(scope="module")
def small() -> Portfolio:
    return make_portfolio(n_accounts=300, n_weeks=30, seed=3)


@pytest.fixture(scope="module")
def medium() -> Portfolio:
    """Large enough for rates and effects to show clearly; about two seconds to generate."""
    return make_portfolio(n_accounts=5000, n_weeks=52, seed=11)


def _churn_dates(p: Portfolio) -> pl.DataFrame:
    return p.events.filter(pl.col("event") == "churned").select("account_id", churn_date="date")


def _weekly_outcome(p: Portfolio, event: str) -> pl.DataFrame:
    """Each snapshot with ``y`` = the event happens before the next weekly snapshot."""
    ev = p.events.filter(pl.col("event") == event).select("account_id", "date")
    hit = (
        p.snapshots.select("account_id", "as_of")
        .join(ev, on="account_id", how="inner")
        .filter((pl.col("date") > pl.col("as_of")) & (pl.col("date") <= pl.col("as_of") + pl.duration(days=7)))
        .select("account_id", "as_of")
        .unique()
        .with_columns(y=pl.lit(1))
    )
    return (
        p.snapshots.join(hit, on=["account_id", "as_of"], how="left")
        .with_columns(pl.col("y").fill_null(0))
        .sort("account_id", "as_of")
    )


def _assert_same(a: Portfolio, b: Portfolio) -> None:
    """Every table of two portfolios is equal (values, types, order)."""
    for name in ("snapshots", "events", "accounts"):
        assert getattr(a, name).equals(getattr(b, name)), name
    for name in ("effects", "latent", "segment_churn", "other_terms"):
        assert getattr(a.truth, name).equals(getattr(b.truth, name)), name


# ---------------------------------------------------------------- contract
def test_snapshot_columns_and_types_follow_the_contract(small: Portfolio) -> None:
    expected = {**ATTRIBUTES, **{m: pl.Float64 for m in CONTRACT_METRICS}}
    assert list(small.snapshots.schema.items()) == list(expected.items())
    assert list(METRICS) == CONTRACT_METRICS
    # the contract's own list in the io layer (what checks and benchmarks read) names the same signals
    assert list(CONTRACT_SIGNALS) == CONTRACT_METRICS
    assert dict(small.events.schema) == {
        "account_id": pl.String,
        "date": pl.Date,
        "event": pl.String,
        "details": pl.String,
    }
    assert small.truth.effects.columns == [
        "metric",
        "category",
        "direction",
        "churn_coef",
        "expansion_coef",
        "description",
    ]
    assert small.truth.effects["metric"].to_list() == CONTRACT_METRICS
    assert dict(small.truth.latent.schema) == {"account_id": pl.String, "as_of": pl.Date, "health": pl.Float64}
    assert small.truth.latent.height == small.snapshots.height


def test_categorical_values_keys_and_dates(small: Portfolio) -> None:
    s = small.snapshots
    assert set(s["segment"].unique()) == {"enterprise", "mid_market", "smb"}
    assert set(s["touch_model"].unique()) == {"high", "digital"}
    assert set(s["lifecycle_stage"].unique()) == {"onboarding", "adoption", "mature", "renewal"}
    assert set(small.events["event"].unique()) <= {"churned", "expanded", "contracted"}
    assert s.select("account_id", "as_of").is_duplicated().sum() == 0
    assert (s["as_of"].dt.weekday() == 1).all()  # Mondays
    assert s["as_of"].max() == dt.date(2026, 11, 16) and s["as_of"].n_unique() == 30
    assert (s["contract_start"] <= s["as_of"]).all()
    assert (s["renewal_date"] > s["as_of"]).all()
    assert (s["renewal_date"] <= s["as_of"] + dt.timedelta(days=366)).all()
    # renewals fall on the contract's anniversary, and the goal starts on the previous one
    for col in ("renewal_date", "goal_start"):
        assert (s[col].dt.month() == s["contract_start"].dt.month()).all(), col
        assert (s[col].dt.day() == s["contract_start"].dt.day()).all(), col
    assert (s["renewal_date"].dt.year() - s["goal_start"].dt.year() == 1).all()
    assert (s["goal_start"] <= s["as_of"]).all() and (s["goal_due"] > s["goal_start"]).all()
    onboarding = s.filter(pl.col("lifecycle_stage") == "onboarding")
    assert ((onboarding["as_of"] - onboarding["contract_start"]).dt.total_days() < 91).all()
    # every company name is a few words, and names are distinct in a small book
    assert small.accounts["company_name"].n_unique() == small.accounts.height
    assert small.accounts["account_id"].to_list() == sorted(s["account_id"].unique().to_list())


def test_metric_ranges_and_missingness_rules(small: Portfolio) -> None:
    s = small.snapshots
    bounds = {
        "seat_utilization": (0, 1.5),
        "login_days": (0, 7),
        "key_feature_adoption": (0, 1),
        "csat": (1, 5),
        "nps": (0, 10),
        "csm_assessment": (1, 5),
        "seats_deployed_ratio": (0, 1.2),
        "goal_progress": (0, 1.2),
        "email_ctr": (0, 1),
        "exec_sponsor_engaged": (0, 1),
        "champion_left": (0, 1),
    }
    for col, (lo, hi) in bounds.items():
        assert s[col].min() >= lo and s[col].max() <= hi, col
    for col in CONTRACT_METRICS:
        assert s[col].drop_nulls().min() >= 0, col
        assert s[col].is_nan().sum() == 0, col
    # csm_assessment exists for high-touch accounts only
    by_touch = s.group_by("touch_model").agg(pl.col("csm_assessment").null_count() / pl.len())
    shares = dict(by_touch.rows())
    assert shares["digital"] == 1.0 and shares["high"] == 0.0
    # an account either has an integration (api_calls every week) or not (null every week)
    per_account = s.group_by("account_id").agg(pl.col("api_calls").is_null().mean().alias("null_share"))
    assert set(per_account["null_share"].round(6).unique()) <= {0.0, 1.0}
    # csat is null without tickets
    assert (
        s.filter(pl.col("tickets_opened") == 0)["csat"].null_count() == s.filter(pl.col("tickets_opened") == 0).height
    )
    # NPS is sparse
    assert s["nps"].null_count() / s.height > 0.85
    # high-severity tickets are a subset of tickets
    assert (s["high_sev_tickets"] <= s["tickets_opened"]).all()
    assert ((s["active_users"] / s["seats_purchased"]).round(4) == s["seat_utilization"]).all()


def test_no_snapshot_on_or_after_churn(small: Portfolio) -> None:
    churn = _churn_dates(small)
    assert churn["account_id"].is_duplicated().sum() == 0
    joined = small.snapshots.join(churn, on="account_id")
    assert (joined["as_of"] < joined["churn_date"]).all()
    last = joined.group_by("account_id").agg(pl.col("as_of").max(), pl.col("churn_date").first())
    assert ((last["churn_date"] - last["as_of"]).dt.total_days().is_between(1, 6)).all()
    # nothing happens to an account after it churned
    after = small.events.join(churn, on="account_id").filter(pl.col("date") > pl.col("churn_date"))
    assert after.height == 0


def test_csm_changes_for_some_accounts_and_seats_follow_events(medium: Portfolio) -> None:
    s = medium.snapshots
    changed = s.group_by("account_id").agg(pl.col("csm").drop_nulls().n_unique())
    assert 0.02 < (changed["csm"] > 1).mean() < 0.3
    assert s.filter(pl.col("touch_model") == "digital", pl.col("segment") == "smb")["csm"].null_count() > 0
    # an expansion shows as more seats (and ARR) in the next snapshot
    exp = medium.events.filter(pl.col("event") == "expanded").with_columns(
        added=pl.col("details").str.extract(r"\+(\d+) seats").cast(pl.Int64)
    )
    ordered = s.sort("account_id", "as_of").with_columns(
        d_seats=pl.col("seats_purchased").diff().over("account_id"),
        d_arr=pl.col("arr").diff().over("account_id"),
        prev_as_of=pl.col("as_of").shift().over("account_id"),
    )
    rows = exp.join(ordered, on="account_id").filter(
        (pl.col("date") > pl.col("prev_as_of")) & (pl.col("date") < pl.col("as_of"))
    )
    assert rows.height > 100
    assert (rows["d_seats"] >= rows["added"]).mean() > 0.95
    assert (rows["d_arr"] > 0).mean() > 0.95
    reasons = medium.events.filter(pl.col("event") == "churned")["details"]
    assert reasons.null_count() == 0 and reasons.n_unique() >= 6


# ---------------------------------------------------------------- determinism and files
def test_same_seed_gives_identical_files(tmp_path) -> None:
    a = make_portfolio(n_accounts=200, n_weeks=12, seed=5)
    b = make_portfolio(n_accounts=200, n_weeks=12, seed=5)
    paths_a = a.save(tmp_path / "a")
    paths_b = b.save(tmp_path / "b")
    assert [p.name for p in paths_a] == [*Portfolio.FILES, "README.md"]
    for pa, pb in zip(paths_a, paths_b):
        assert pa.read_bytes() == pb.read_bytes(), pa.name
    c = make_portfolio(n_accounts=200, n_weeks=12, seed=6)
    assert not c.snapshots.equals(a.snapshots)


def test_save_load_round_trip_and_missing_files(tmp_path, small: Portfolio) -> None:
    small.save(tmp_path)
    back = Portfolio.load(tmp_path)
    _assert_same(back, small)
    assert back.origin == small.origin == "make_portfolio(n_accounts=300, n_weeks=30, seed=3, end=date(2026, 11, 16))"
    latest = pl.read_csv(tmp_path / "latest_week.csv", try_parse_dates=True)
    assert latest.height == small.accounts.height
    assert latest["account_id"].is_duplicated().sum() == 0
    (tmp_path / "events.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="events.parquet.*healthscore sample"):
        Portfolio.load(tmp_path)


def test_bundled_sample_equals_a_regeneration() -> None:
    folder = sample_dir()
    assert all((folder / name).exists() for name in Portfolio.FILES), "run 'make data' and commit data/"
    fresh = make_portfolio(**SAMPLE_ARGS)
    _assert_same(load_sample(), fresh)
    assert (folder / "README.md").read_text() == data_dictionary(fresh)


def test_data_dictionary_documents_every_column_and_effect(small: Portfolio) -> None:
    text = data_dictionary(small)
    for col in [*small.snapshots.columns, *small.events.columns]:
        assert f"`{col}`" in text, col
    for metric, churn, expansion in small.truth.effects.select("metric", "churn_coef", "expansion_coef").rows():
        assert f"| `{metric}` | {churn:+.2f} | {expansion:+.2f} |" in text
    assert "make_portfolio(n_accounts=300, n_weeks=30, seed=3" in text


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 40), weeks=st.integers(1, 8), seed=st.integers(0, 2**32 - 1))
def test_invariants_hold_for_any_size_and_seed(n: int, weeks: int, seed: int) -> None:
    p = make_portfolio(n_accounts=n, n_weeks=weeks, seed=seed)
    s = p.snapshots
    assert s.select("account_id", "as_of").is_duplicated().sum() == 0
    assert s["account_id"].n_unique() <= n and s["as_of"].n_unique() <= weeks
    assert (s["seats_purchased"] >= 1).all()
    churn = _churn_dates(p)
    assert (s.join(churn, on="account_id")["as_of"] < s.join(churn, on="account_id")["churn_date"]).all()
    assert p.accounts.height == s["account_id"].n_unique()
    assert set(p.events["account_id"].unique()) <= set(s["account_id"].unique())


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="n_accounts"):
        make_portfolio(n_accounts=0)


# ---------------------------------------------------------------- the truth shows in the data
def test_rates_within_targets(medium: Portfolio) -> None:
    s = medium.snapshots
    first = s.filter(pl.col("as_of") == s["as_of"].min()).select("account_id", "segment", "touch_model")
    churned = set(_churn_dates(medium)["account_id"])
    expanded = set(medium.events.filter(pl.col("event") == "expanded")["account_id"])
    cohort = first.with_columns(
        churned=pl.col("account_id").is_in(list(churned)), expanded=pl.col("account_id").is_in(list(expanded))
    )
    assert 0.08 <= cohort["churned"].mean() <= 0.15
    assert 0.15 <= cohort["expanded"].mean() <= 0.25
    rate = dict(cohort.group_by(pl.format("{}/{}", "segment", "touch_model")).agg(pl.col("churned").mean()).rows())
    assert rate["smb/digital"] > 2.5 * rate["enterprise/high"]
    contracted = medium.events.filter(pl.col("event") == "contracted")
    assert 0 < contracted.height < medium.events.filter(pl.col("event") == "expanded").height


def test_churn_falls_across_deciles_of_latent_health(medium: Portfolio) -> None:
    weekly = _weekly_outcome(medium, "churned").join(medium.truth.latent, on=["account_id", "as_of"])
    by_decile = (
        weekly.with_columns(decile=(pl.col("health").rank("ordinal") * 10 / pl.len()).floor().clip(0, 9))
        .group_by("decile")
        .agg(rate=pl.col("y").mean())
        .sort("decile")
    )
    rates = by_decile["rate"].to_numpy()
    assert rates[0] > 4 * rates[-1]
    rho = stats.spearmanr(by_decile["decile"].to_numpy(), rates).statistic
    assert rho < -0.85


def test_churners_used_the_product_less_before_churning(medium: Portfolio) -> None:
    churn = _churn_dates(medium)
    s = medium.snapshots
    before = s.join(churn, on="account_id").filter(pl.col("as_of") >= pl.col("churn_date") - pl.duration(weeks=8))
    retained = s.join(churn, on="account_id", how="anti").filter(
        pl.col("as_of") >= s["as_of"].max() - dt.timedelta(weeks=8)
    )
    for col, sign in [
        ("login_days", -1),
        ("seat_utilization", -1),
        ("key_feature_adoption", -1),
        ("days_invoice_overdue", +1),
        ("champion_left", +1),
    ]:
        diff = before[col].mean() - retained[col].mean()
        assert sign * diff > 0, (col, diff)
    # expanders had fuller seats before expanding
    exp = medium.events.filter(pl.col("event") == "expanded").group_by("account_id").agg(pl.col("date").min())
    pre = s.join(exp, on="account_id").filter(
        pl.col("as_of").is_between(pl.col("date") - pl.duration(weeks=8), pl.col("date"))
    )
    never = s.join(exp, on="account_id", how="anti")
    assert pre["seat_utilization"].mean() > never["seat_utilization"].mean() + 0.05


def test_churners_decline_in_the_weeks_before_churn(medium: Portfolio) -> None:
    """Trend signals have something to find: health and usage slide before a churn."""
    churn = _churn_dates(medium)
    s = (
        medium.snapshots.join(churn, on="account_id")
        .join(medium.truth.latent, on=["account_id", "as_of"])
        .with_columns(weeks_before=(pl.col("churn_date") - pl.col("as_of")).dt.total_days() // 7)
    )
    late = s.filter(pl.col("weeks_before") < 4)
    early = s.filter(pl.col("weeks_before").is_between(12, 20))
    assert late["health"].mean() < early["health"].mean() - 0.3
    assert late["login_days"].mean() < early["login_days"].mean() - 0.3
    assert late["seat_utilization"].mean() < early["seat_utilization"].mean()


def test_unhappy_accounts_answer_nps_less(medium: Portfolio) -> None:
    s = medium.snapshots.join(medium.truth.latent, on=["account_id", "as_of"])
    q = s.with_columns(quintile=(pl.col("health").rank("ordinal") * 5 / pl.len()).floor().clip(0, 4))
    answer = dict(q.group_by("quintile").agg(pl.col("nps").is_not_null().mean()).rows())
    assert answer[0] < 0.7 * answer[4]
    # and those who answer are less positive when health is low
    means = dict(q.group_by("quintile").agg(pl.col("nps").mean()).rows())
    assert means[0] < means[4] - 2


def _design(weekly: pl.DataFrame) -> tuple[np.ndarray, list[str]]:
    """The generator's linear predictor as a design matrix: every metric standardised with the
    reference mean/SD (nulls at the mean), segment x touch intercepts, renewal and tenure terms."""

    def z(c: str) -> np.ndarray:
        v = weekly[c].to_numpy().astype(float)
        v = np.log1p(v) if c == "api_calls" else v
        return np.nan_to_num((v - _REFERENCE[c][0]) / _REFERENCE[c][1], nan=0.0)

    group = (weekly["segment"] + "/" + weekly["touch_model"]).to_numpy()
    levels = sorted(set(group))
    days_to_renewal = (weekly["renewal_date"] - weekly["as_of"]).dt.total_days().to_numpy()
    tenure = (weekly["as_of"] - weekly["contract_start"]).dt.total_days().to_numpy()
    x = np.column_stack(
        [z(c) for c in CONTRACT_METRICS] + [group == g for g in levels] + [days_to_renewal <= 56, tenure < 91]
    ).astype(float)
    return x, CONTRACT_METRICS + levels + ["renewal_within_8_weeks", "first_13_weeks"]


@pytest.mark.slow
@pytest.mark.parametrize("event, column", [("churned", "churn_coef"), ("expanded", "expansion_coef")])
def test_a_logit_recovers_the_true_effects(medium: Portfolio, event: str, column: str) -> None:
    import statsmodels.api as sm
    from threadpoolctl import threadpool_limits

    weekly = _weekly_outcome(medium, event)
    x, names = _design(weekly)
    with threadpool_limits(1):  # a tall, thin problem: BLAS threads only contend with each other
        fit = sm.Logit(weekly["y"].to_numpy(), x).fit(
            disp=0, cov_type="cluster", cov_kwds={"groups": weekly["account_id"].rank("dense").to_numpy()}
        )
    est = dict(zip(names, fit.params))
    se = dict(zip(names, fit.bse))
    truth = dict(zip(medium.truth.effects["metric"], medium.truth.effects[column]))
    inside = [m for m in CONTRACT_METRICS if abs(est[m] - truth[m]) < 1.96 * se[m]]
    assert len(inside) >= 15, {m: (truth[m], round(est[m], 3), round(se[m], 3)) for m in CONTRACT_METRICS}
    for m in CONTRACT_METRICS:  # nothing far off
        assert abs(est[m] - truth[m]) < 3.5 * se[m], (m, truth[m], est[m], se[m])
    # jointly: the documented effects fit the data, and "no effect at all" clearly does not
    k = len(CONTRACT_METRICS)
    r = np.eye(len(names))[:k]
    q = np.array([truth[m] for m in CONTRACT_METRICS])
    assert fit.wald_test((r, q), scalar=True).pvalue > 0.01
    assert fit.wald_test((r, np.zeros(k)), scalar=True).pvalue < 1e-10
    strong = [m for m in CONTRACT_METRICS if abs(truth[m]) >= 3 * se[m]]  # effects this sample can see
    assert len(strong) >= 5
    assert all(np.sign(est[m]) == np.sign(truth[m]) for m in strong)
    assert sum(abs(est[m] / se[m]) > 1.96 for m in strong) >= 0.75 * len(strong)
    # metrics without an effect of their own come out not significant
    null = [m for m in CONTRACT_METRICS if truth[m] == 0]
    assert sum(abs(est[m] / se[m]) > 1.96 for m in null) <= 1
    # base rates: the segment x touch intercepts are the weekly log-odds of the documented annual rates
    rates = medium.truth.segment_churn
    base = "base_annual_churn" if event == "churned" else "base_annual_expansion"
    for seg, touch, annual in rates.select("segment", "touch_model", base).rows():
        weekly_p = 1 - (1 - annual) ** (1 / 52)
        name = f"{seg}/{touch}"
        assert abs(est[name] - np.log(weekly_p / (1 - weekly_p))) < max(3 * se[name], 0.3), name


# ---------------------------------------------------------------- command line
def test_cli_sample_writes_the_files(tmp_path, capsys) -> None:
    code = cli.main(["sample", "--out", str(tmp_path / "s"), "--accounts", "60", "--weeks", "6", "--seed", "2"])
    out = capsys.readouterr().out
    assert code == 0
    for name in Portfolio.FILES:
        assert (tmp_path / "s" / name).exists()
        assert f"{name}" in out
    assert "60 accounts" in out and "annual logo churn" in out
    again = make_portfolio(n_accounts=60, n_weeks=6, seed=2)
    assert Portfolio.load(tmp_path / "s").snapshots.equals(again.snapshots)


def test_cli_sample_end_date_moves_to_a_monday(tmp_path, capsys) -> None:
    code = cli.main(["sample", "--out", str(tmp_path), "--accounts", "20", "--weeks", "3", "--end", "2026-06-03"])
    assert code == 0 and "2026-05-18 .. 2026-06-01" in capsys.readouterr().out
    assert pl.read_parquet(tmp_path / "snapshots.parquet")["as_of"].max() == dt.date(2026, 6, 1)


def test_cli_sample_refuses_bad_sizes(tmp_path, capsys) -> None:
    code = cli.main(["sample", "--out", str(tmp_path), "--accounts", "0"])
    assert code == 2
    assert "--accounts" in capsys.readouterr().err


def test_demo_step_summarises_the_sample(tmp_path) -> None:
    step = dict(cli._demo_steps())["load the sample portfolio"]
    line = step(tmp_path)
    assert "2000 accounts" in line and "annual churn" in line
    assert "\n" not in line
    assert "enterprise" in (tmp_path / "sample_summary.txt").read_text()
