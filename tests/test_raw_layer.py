"""The sample portfolio's raw layer: building it on either engine gives back the portfolio's
event-derived, subscription and CRM columns and its outcome events, exactly; it is deterministic."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from healthscore.app import cli, demo_raw
from healthscore.core.build import build
from healthscore.datasets.portfolio import Portfolio, load_sample, make_portfolio
from healthscore.datasets.raw import RawLayer, compare_built, raw_layer
from healthscore.spec.metrics import load_spec

TODAY = dt.date(2027, 6, 1)  # after every generated date, so the checks on future events stay quiet
KEYS = ["account_id", "as_of"]
COUNTS = ["active_users", "login_days", "tickets_opened", "high_sev_tickets", "seats_purchased"]
VALUES = ["api_calls", "csat", "nps", "csm_assessment", "exec_sponsor_engaged", "champion_left", "days_invoice_overdue"]
TEXTS = ["segment", "touch_model", "industry", "region", "csm"]
OUTCOME_KEYS = ["account_id", "date", "event"]


def check_equal(built: pl.DataFrame, snapshots: pl.DataFrame) -> None:
    """Same rows; counts equal as integers; other values and nulls equal within 1e-9; texts equal."""
    assert built.select(KEYS).sort(KEYS).equals(snapshots.select(KEYS).sort(KEYS))
    both = built.join(snapshots, on=KEYS, suffix="_snap")
    assert both.height == snapshots.height
    for c in COUNTS:  # whole numbers, never null, equal exactly
        a, b = both[c].cast(pl.Float64), both[f"{c}_snap"].cast(pl.Float64)
        assert a.null_count() == 0 and b.null_count() == 0, c
        assert (a == b).all() and (a == a.round(0)).all(), c
    for c in VALUES:
        a, b = both[c].cast(pl.Float64), both[f"{c}_snap"]
        assert (a.is_null() == b.is_null()).all(), c
        assert ((a - b).abs().fill_null(0) <= 1e-9).all(), c
    for c in TEXTS:
        assert both[c].eq_missing(both[f"{c}_snap"]).all(), c
    # the snapshot keeps the ratio to 4 decimals; ARR is 12 x MRR
    assert ((both["seat_utilization"].round(4) - both["seat_utilization_snap"]).abs() <= 1e-9).all()
    assert ((both["mrr"] * 12 - both["arr"]).abs() <= 1e-6).all()


def outcomes(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(OUTCOME_KEYS).sort(OUTCOME_KEYS)


@pytest.fixture(scope="module")
def small() -> Portfolio:
    return make_portfolio(n_accounts=150, n_weeks=26, seed=5)


@pytest.fixture(scope="module")
def small_spec(small: Portfolio, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small.raw.save(tmp_path_factory.mktemp("raw_small"))


@pytest.fixture(scope="module")
def sample_slice(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pl.DataFrame, pl.DataFrame]:
    """The bundled sample's own raw layer, cut to 120 accounts (churned ones, expanding and
    contracting ones among them), with the bundled snapshots and events of those accounts."""
    sample = load_sample()
    ev = sample.events
    wanted = pl.concat(
        [
            ev.filter(pl.col("event") == e)["account_id"].unique().sort().head(20)
            for e in ("churned", "expanded", "contracted")
        ]
        + [sample.snapshots["account_id"].unique().sort().head(60)]
    ).unique()
    raw = sample.raw
    keep = pl.col("account_id").is_in(wanted.implode())
    cut = RawLayer(raw.events.filter(keep), raw.subscriptions.filter(keep), raw.crm.filter(keep), raw.spec_toml)
    spec = cut.save(tmp_path_factory.mktemp("raw_sample"))
    return spec, sample.snapshots.filter(keep), ev.filter(keep)


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_small_portfolio_rebuilds_exactly(small: Portfolio, small_spec: Path, engine: str) -> None:
    result = build(small_spec, engine=engine, today=TODAY)
    check_equal(result.snapshots, small.snapshots)
    assert outcomes(result.events).equals(outcomes(small.events))
    assert small.events.filter(pl.col("event") == "churned").height > 0


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_bundled_sample_slice_rebuilds_exactly(sample_slice, engine: str) -> None:
    spec, snapshots, events = sample_slice
    result = build(spec, engine=engine, today=TODAY)
    check_equal(result.snapshots, snapshots)
    assert outcomes(result.events).equals(outcomes(events))
    assert set(events["event"]) == {"churned", "expanded", "contracted"}


def test_churn_is_where_the_subscriptions_end(small: Portfolio) -> None:
    subs = small.raw.subscriptions.sort("account_id", "start")
    nxt = pl.col("start").shift(-1).over("account_id", order_by="start")
    inner = subs.with_columns(nxt.alias("next")).filter(pl.col("next").is_not_null())
    assert inner["end"].equals(inner["next"].alias("end"))  # each row ends the day the next one starts
    ends = subs.group_by("account_id").agg(pl.col("end").last()).filter(pl.col("end").is_not_null())
    churn = small.events.filter(pl.col("event") == "churned")
    assert (
        ends.select("account_id", pl.col("end").alias("date"))
        .sort("account_id")
        .equals(churn.select("account_id", "date").sort("account_id"))
    )


def test_events_lie_in_their_snapshot_week(small: Portfolio) -> None:
    ev = small.raw.events.with_columns(pl.col("time").dt.date().alias("day"))
    weeks = small.snapshots.select("account_id", "as_of")
    placed = ev.join_asof(
        weeks.sort("as_of"),
        left_on="day",
        right_on="as_of",
        by="account_id",
        strategy="forward",
        check_sortedness=False,
    )
    assert placed["as_of"].null_count() == 0  # nothing after an account's last snapshot
    assert ((placed["as_of"] - placed["day"]).dt.total_days() <= 6).all()
    assert set(ev["event"]) == {"session", "login", "api_calls", "ticket_opened", "csat_response", "nps_response"}


def test_raw_layer_is_deterministic_and_lazy() -> None:
    a, b = make_portfolio(n_accounts=40, n_weeks=6, seed=9), make_portfolio(n_accounts=40, n_weeks=6, seed=9)
    assert "raw" not in a.__dict__  # make_portfolio pays nothing for it
    for name in ("events", "subscriptions", "crm"):
        assert getattr(a.raw, name).equals(getattr(b.raw, name)), name
    assert a.raw.spec_toml == b.raw.spec_toml
    assert a.raw is a.raw
    other = raw_layer(a.snapshots, a.events, seed=10)
    assert not other.events.equals(a.raw.events)
    assert other.events.group_by("event").len().sort("event").equals(a.raw.events.group_by("event").len().sort("event"))


def test_compare_built_reports_a_difference(small: Portfolio) -> None:
    changed = small.snapshots.with_columns(
        pl.when(pl.col("account_id") == small.snapshots["account_id"][0])
        .then(pl.col("login_days") + 1)
        .otherwise(pl.col("login_days"))
        .alias("login_days")
    )
    table = compare_built(changed.with_columns(mrr=pl.col("arr") / 12), small.snapshots)
    differ = dict(table.select("metric", "differ").iter_rows())
    assert (
        differ["login_days"] == small.snapshots.filter(pl.col("account_id") == small.snapshots["account_id"][0]).height
    )
    assert sum(differ.values()) == differ["login_days"]


def test_spec_reads_and_names_its_tables(small: Portfolio, small_spec: Path) -> None:
    spec = load_spec(small_spec)
    assert spec.source.events.path.name == "events.parquet"
    assert spec.source.subscriptions.path.name == "subscriptions.parquet"
    assert spec.source.accounts.path.name == "crm.parquet"
    assert spec.grid.start == small.snapshots["as_of"].min() and spec.grid.end == small.snapshots["as_of"].max()
    assert {r.name for r in spec.outcomes} == {"churned", "expanded", "contracted"}


def test_sample_command_writes_the_raw_layer_and_build_rebuilds_it(tmp_path: Path, capsys) -> None:
    out = tmp_path / "s"
    assert cli.main(["sample", "--out", str(out), "--accounts", "40", "--weeks", "8", "--seed", "2", "--raw"]) == 0
    assert sorted(p.name for p in (out / "raw").iterdir()) == [
        "crm.parquet",
        "events.parquet",
        "spec.toml",
        "subscriptions.parquet",
    ]
    built = tmp_path / "built.parquet"
    assert (
        cli.main(
            [
                "build",
                "--spec",
                str(out / "raw" / "spec.toml"),
                "--out",
                str(built),
                "--engine",
                "duckdb",
                "--no-progress",
            ]
        )
        == 0
    )
    check_equal(pl.read_parquet(built), pl.read_parquet(out / "snapshots.parquet"))
    assert "raw layer" in capsys.readouterr().out


def test_demo_starts_by_building_from_raw_events(tmp_path: Path, small: Portfolio, monkeypatch) -> None:
    title, step = cli._demo_steps()[0]
    assert title == "build snapshots from raw events"
    monkeypatch.setattr(demo_raw, "load_sample", lambda: small)  # the same step on a small portfolio
    text = step(tmp_path)
    assert (tmp_path / "raw" / "spec.toml").is_file()
    assert f"built {small.snapshots.height:,} snapshots of 150 accounts" in text
    assert "columns equal to the bundled snapshots on every row" in text and "DIFFERENT" not in text
    assert f"{small.events.height} outcome events equal to the bundled events" in text
    broken = Portfolio(
        small.snapshots.with_columns(pl.col("nps") + 1), small.accounts, small.events, small.truth, small.origin
    )
    monkeypatch.setattr(demo_raw, "load_sample", lambda: broken)
    good = small.raw
    monkeypatch.setattr(Portfolio, "raw", property(lambda self: good))  # raw data of the unbroken one
    assert "DIFFERENT from the bundled snapshots: nps (" in step(tmp_path / "again")
