"""Snapshot and outcome building from raw events: engines against a brute-force reference, point in
time, golden tables on a hand-made log, and bad input."""

from __future__ import annotations

import datetime as dt
import math
import tempfile
import warnings
from pathlib import Path
from unittest import mock

import polars as pl
import pytest
from healthscore.core import build as build_module
from healthscore.core import sqlgen
from healthscore.core.build import BuildError, BuildWarning, build, build_outcomes, build_snapshots
from healthscore.errors import HealthscoreError
from healthscore.spec.metrics import Grid, SpecError, load_spec, parse_spec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

D0 = dt.date(2025, 1, 1)
TODAY = dt.date(2025, 12, 31)
GRID = [D0 + dt.timedelta(days=5 + 7 * k) for k in range(10)]  # Mondays 2025-01-06 .. 2025-03-10

METRICS = [
    {"name": "posts_28d", "event": "post", "agg": "count", "window": "28d"},
    {"name": "likes_28d", "event": "like", "agg": "count", "window": "28d"},
    {"name": "value_7d", "agg": "sum", "window": "7d"},
    {"name": "post_value_mean_14d", "event": "post", "agg": "mean", "window": "14d"},
    {"name": "users_28d", "agg": "distinct_users", "window": "28d"},
    {"name": "posters_7d", "event": "post", "agg": "distinct_users", "window": "7d"},
    {"name": "active_days_28d", "agg": "active_days", "window": "28d"},
    {"name": "last_like_value", "event": "like", "agg": "last", "window": "21d"},
    {"name": "last_value_ever", "agg": "last"},
    {"name": "events_all", "agg": "count"},
    {"name": "likes_per_post", "ratio": ["likes_28d", "posts_28d"]},
    {"name": "posts_per_seat", "per": "seat", "of": "posts_28d"},
    {"name": "posts_per_user", "per": "active_user", "of": "posts_28d"},
    {"name": "posts_change", "change_of": "posts_28d"},
    {"name": "users_change", "change_of": "users_28d", "min_base": 2},
    {"name": "days_since_like", "days_since": "like"},
    {"name": "tenure_days", "tenure": True},
    {"name": "mrr", "subscription": "mrr"},
    {"name": "seats", "subscription": "seats"},
    {"name": "plan", "field": "plan"},
]


def _spec(folder: Path, metrics=METRICS, outcomes=None, grid=None, **source) -> object:
    tables = {"events": "events.parquet", "subscriptions": "subs.parquet", "accounts": "accounts.parquet", **source}
    data = {
        "source": {k: v for k, v in tables.items() if v is not None},
        "grid": grid or {"dates": [d.isoformat() for d in GRID]},
        "metrics": metrics,
    }
    if outcomes:
        data["outcomes"] = outcomes
    return parse_spec(data, origin=str(folder / "spec.toml"), base=folder)


# ------------------------------------------------------------------------ brute-force reference
def reference(events: list[dict], subs: list[dict], accounts: list[dict], grid: list[dt.date]) -> pl.DataFrame:
    """Every metric of METRICS computed the plain way, one account and date at a time."""
    ids = sorted({s["account_id"] for s in subs})
    rows = []
    for a in ids:
        evs = [e for e in events if e["account_id"] == a]
        my_subs = [s for s in subs if s["account_id"] == a]
        start = min([e["time"].date() for e in evs] + [s["start"] for s in my_subs])
        for t in grid:
            if t < start:
                continue

            def window(n, event=None, shift=0):
                hi = t - dt.timedelta(days=shift)
                return [
                    e
                    for e in evs
                    if (event is None or e["event"] == event)
                    and e["time"].date() <= hi
                    and (n is None or e["time"].date() > hi - dt.timedelta(days=n))
                ]

            def users(n, event=None, shift=0):
                return len({e["user_id"] for e in window(n, event, shift) if e["user_id"] is not None})

            def last(n, event=None):
                vals = [e for e in window(n, event) if e["value"] is not None]
                if not vals:
                    return None
                top = max(e["time"] for e in vals)
                return max(e["value"] for e in vals if e["time"] == top)

            def div(x, y):
                return None if x is None or y is None or y == 0 else x / y

            posts, likes = len(window(28, "post")), len(window(28, "like"))
            prev_posts = len(window(28, "post", 28))
            u28, prev_u = users(28), users(28, None, 28)
            pv = [e["value"] for e in window(14, "post") if e["value"] is not None]
            active = [s for s in my_subs if s["start"] <= t and (s["end"] is None or s["end"] > t)]
            started = [s for s in my_subs if s["start"] <= t]
            seats = float(sum(s["seats"] for s in active)) if started else None
            likes_ever = [e["time"].date() for e in window(None, "like")]
            plans = sorted(
                (r["changed_at"], r["plan"])
                for r in accounts
                if r["account_id"] == a and r["changed_at"] <= t and r["plan"] is not None
            )
            rows.append(
                {
                    "account_id": a,
                    "as_of": t,
                    "posts_28d": posts,
                    "likes_28d": likes,
                    "value_7d": math.fsum(e["value"] for e in window(7) if e["value"] is not None),
                    "post_value_mean_14d": math.fsum(pv) / len(pv) if pv else None,
                    "users_28d": u28,
                    "posters_7d": users(7, "post"),
                    "active_days_28d": len({e["time"].date() for e in window(28)}),
                    "last_like_value": last(21, "like"),
                    "last_value_ever": last(None),
                    "events_all": len(window(None)),
                    "likes_per_post": div(likes, posts),
                    "posts_per_seat": div(posts, seats),
                    "posts_per_user": div(posts, u28),
                    "posts_change": div(posts - prev_posts, prev_posts),
                    "users_change": div(u28 - prev_u, prev_u) if prev_u >= 2 else None,
                    "days_since_like": (t - max(likes_ever)).days if likes_ever else None,
                    "tenure_days": (t - start).days,
                    "mrr": float(sum(s["mrr"] for s in active)) if started else None,
                    "seats": seats,
                    "plan": plans[-1][1] if plans else None,
                }
            )
    schema = {"account_id": pl.String, "as_of": pl.Date}
    for m in METRICS:
        name = m["name"]
        if name == "plan":
            schema[name] = pl.String
        elif m.get("agg") in ("count", "distinct_users", "active_days") or "days_since" in m or "tenure" in m:
            schema[name] = pl.Int64
        else:
            schema[name] = pl.Float64
    return pl.DataFrame(rows, schema=schema, orient="row").sort("account_id", "as_of")


def _write(folder: Path, events: list[dict], subs: list[dict], accounts: list[dict]) -> None:
    pl.DataFrame(
        events,
        schema={
            "account_id": pl.String,
            "time": pl.Datetime("us"),
            "event": pl.String,
            "value": pl.Float64,
            "user_id": pl.String,
        },
    ).write_parquet(folder / "events.parquet")
    pl.DataFrame(
        subs, schema={"account_id": pl.String, "start": pl.Date, "end": pl.Date, "mrr": pl.Float64, "seats": pl.Int64}
    ).write_parquet(folder / "subs.parquet")
    pl.DataFrame(accounts, schema={"account_id": pl.String, "changed_at": pl.Date, "plan": pl.String}).write_parquet(
        folder / "accounts.parquet"
    )


_event = st.fixed_dictionaries(
    {
        "account_id": st.sampled_from(["a", "b", "c"]),
        "time": st.builds(
            lambda d, m: dt.datetime.combine(D0, dt.time()) + dt.timedelta(days=d, minutes=m),
            st.integers(0, 75),
            st.sampled_from([0, 1, 600, 1439]),
        ),
        "event": st.sampled_from(["post", "like", "login"]),
        "value": st.one_of(st.none(), st.integers(0, 20).map(lambda x: x / 4)),
        "user_id": st.one_of(st.none(), st.sampled_from(["u1", "u2", "u3", "u4"])),
    }
)


@st.composite
def raw_data(draw):
    events = draw(st.lists(_event, max_size=60))
    subs, accounts = [], []
    for a in ["a", "b", "c"]:
        day = draw(st.integers(0, 30))
        for _ in range(draw(st.integers(1, 3))):
            start = D0 + dt.timedelta(days=day)
            length = draw(st.one_of(st.none(), st.integers(1, 40)))
            end = None if length is None else start + dt.timedelta(days=length)
            subs.append(
                {
                    "account_id": a,
                    "start": start,
                    "end": end,
                    "mrr": float(draw(st.integers(0, 500))),
                    "seats": draw(st.integers(0, 4)),
                }
            )
            if end is None:
                break
            day = (end - D0).days + draw(st.integers(0, 15))
        for k in range(draw(st.integers(0, 3))):
            accounts.append(
                {
                    "account_id": a,
                    "changed_at": D0 + dt.timedelta(days=20 * k + draw(st.integers(0, 19))),
                    "plan": draw(st.sampled_from(["basic", "pro", None])),
                }
            )
    return events, subs, accounts


def _assert_close(left: pl.DataFrame, right: pl.DataFrame) -> None:
    assert_frame_equal(left, right, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_data())
def test_engines_equal_brute_force(data):
    events, subs, accounts = data
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _write(folder, events, subs, accounts)
        spec = _spec(folder)
        expected = reference(events, subs, accounts, GRID)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BuildWarning)
            got_polars = build_snapshots(spec, engine="polars", today=TODAY)
            got_duckdb = build_snapshots(spec, engine="duckdb", today=TODAY)
            with mock.patch.object(build_module, "EVENTS_PER_PART", 7):  # a log of 7+ events goes in parts
                got_parts = build_snapshots(spec, engine="polars", today=TODAY)
                got_duckdb_parts = build_snapshots(spec, engine="duckdb", today=TODAY)
    _assert_close(got_polars, expected)
    assert got_parts.equals(got_polars, null_equal=True)  # in parts of accounts or whole: bit for bit
    _assert_close(got_duckdb_parts, expected)
    _assert_close(got_duckdb, expected)
    # counts are integers and exact
    for name in ("posts_28d", "users_28d", "active_days_28d", "tenure_days"):
        assert got_polars[name].to_list() == got_duckdb[name].to_list() == expected[name].to_list()


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_data(), st.lists(_event, min_size=1, max_size=20))
def test_point_in_time(data, extra):
    """Events appended after an as_of never change a metric at or before that as_of."""
    events, subs, accounts = data
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _write(folder, events, subs, accounts)
        spec = _spec(folder)
        before = {e: build_snapshots(spec, engine=e, today=TODAY) for e in ("polars", "duckdb")}
        for t in (GRID[2], GRID[6]):
            later = [
                {
                    **e,
                    "time": dt.datetime.combine(t, dt.time())
                    + dt.timedelta(days=1)
                    + (e["time"] - dt.datetime.combine(D0, dt.time())),
                }
                for e in extra
            ]
            _write(folder, events + later, subs, accounts)
            for engine, old in before.items():
                new = build_snapshots(spec, engine=engine, today=TODAY)
                _assert_close(new.filter(pl.col("as_of") <= t), old.filter(pl.col("as_of") <= t))


# ------------------------------------------------------------------------ golden tables
def _ts(day: int, hour: int = 12, minute: int = 0) -> dt.datetime:
    return dt.datetime(2025, 1, 1, hour, minute) + dt.timedelta(days=day - 1)


@pytest.fixture()
def golden(tmp_path: Path) -> Path:
    # account a: posts on Jan 1 (value 1), Jan 6 23:59 (value 3), Jan 10; likes Jan 5 and Jan 20
    events = [
        {"account_id": "a", "time": _ts(1, 9), "event": "post", "value": 1.0, "user_id": "u1"},
        {"account_id": "a", "time": _ts(5), "event": "like", "value": 2.0, "user_id": "u2"},
        {"account_id": "a", "time": _ts(6, 23, 59), "event": "post", "value": 3.0, "user_id": "u1"},
        {"account_id": "a", "time": _ts(7, 0, 0), "event": "post", "value": 10.0, "user_id": "u3"},
        {"account_id": "a", "time": _ts(10), "event": "post", "value": None, "user_id": "u3"},
        {"account_id": "a", "time": _ts(20), "event": "like", "value": 4.0, "user_id": None},
        {"account_id": "b", "time": _ts(3), "event": "post", "value": 5.0, "user_id": "v1"},
    ]
    subs = [
        {"account_id": "a", "start": dt.date(2025, 1, 1), "end": dt.date(2025, 1, 15), "mrr": 100.0, "seats": 4},
        {"account_id": "a", "start": dt.date(2025, 1, 15), "end": None, "mrr": 150.0, "seats": 5},
        {"account_id": "b", "start": dt.date(2025, 1, 2), "end": dt.date(2025, 1, 18), "mrr": 50.0, "seats": 2},
    ]
    accounts = [
        {"account_id": "a", "changed_at": dt.date(2025, 1, 1), "plan": "basic"},
        {"account_id": "a", "changed_at": dt.date(2025, 1, 13), "plan": "pro"},
        {"account_id": "a", "changed_at": dt.date(2025, 1, 14), "plan": None},
    ]
    _write(tmp_path, events, subs, accounts)
    return tmp_path


GOLDEN_METRICS = [
    {"name": "posts_7d", "event": "post", "agg": "count", "window": "7d"},
    {"name": "likes_7d", "event": "like", "agg": "count", "window": "7d"},
    {"name": "value_7d", "agg": "sum", "window": "7d"},
    {"name": "post_mean_7d", "event": "post", "agg": "mean", "window": "7d"},
    {"name": "users_7d", "agg": "distinct_users", "window": "7d"},
    {"name": "days_7d", "agg": "active_days", "window": "7d"},
    {"name": "last_7d", "agg": "last", "window": "7d"},
    {"name": "likes_per_post", "ratio": ["likes_7d", "posts_7d"]},
    {"name": "posts_per_seat", "per": "seat", "of": "posts_7d"},
    {"name": "posts_per_user", "per": "active_user", "of": "posts_7d"},
    {"name": "posts_change", "change_of": "posts_7d"},
    {"name": "posts_change_min3", "change_of": "posts_7d", "min_base": 3},
    {"name": "days_since_like", "days_since": "like"},
    {"name": "tenure_days", "tenure": True},
    {"name": "mrr", "subscription": "mrr"},
    {"name": "plan", "field": "plan"},
]


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_golden_metrics(golden: Path, engine: str):
    spec = _spec(golden, GOLDEN_METRICS, grid={"dates": ["2025-01-06", "2025-01-13", "2025-01-20"]})
    got = build_snapshots(spec, engine=engine, today=TODAY)
    n = None
    expected = pl.DataFrame(
        [
            # a, Jan 6: window Dec 31..Jan 6 holds posts Jan 1 (1.0) and Jan 6 23:59 (3.0), like Jan 5 (2.0)
            ("a", dt.date(2025, 1, 6), 2, 1, 6.0, 2.0, 2, 3, 3.0, 0.5, 0.5, 1.0, n, n, 1, 5, 100.0, "basic"),
            # a, Jan 13: window Jan 7..13 holds posts Jan 7 00:00 (10.0) and Jan 10 (no value); plan pro since Jan 13
            ("a", dt.date(2025, 1, 13), 2, 0, 10.0, 10.0, 1, 2, 10.0, 0.0, 0.5, 2.0, 0.0, n, 8, 12, 100.0, "pro"),
            # a, Jan 20: like Jan 20 (4.0, no user); a blank plan on Jan 14 keeps pro; new subscription since Jan 15
            ("a", dt.date(2025, 1, 20), 0, 1, 4.0, n, 0, 1, 4.0, n, 0.0, n, -1.0, n, 0, 19, 150.0, "pro"),
            ("b", dt.date(2025, 1, 6), 1, 0, 5.0, 5.0, 1, 1, 5.0, 0.0, 0.5, 1.0, n, n, n, 4, 50.0, n),
            ("b", dt.date(2025, 1, 13), 0, 0, 0.0, n, 0, 0, n, n, 0.0, n, -1.0, n, n, 11, 50.0, n),
            # b's subscription ended Jan 18 and no churn rule is given: b stays, paying 0 for 0 seats (per seat: null)
            ("b", dt.date(2025, 1, 20), 0, 0, 0.0, n, 0, 0, n, n, n, n, n, n, n, 18, 0.0, n),
        ],
        schema=got.schema,
        orient="row",
    )
    _assert_close(got, expected)


OUTCOMES = {
    "churned": {"adverse": True, "terminal": True, "from": "subscriptions", "gap": "7d"},
    "expanded": {"adverse": False, "from": "mrr", "threshold": 0.1},
    "contracted": {"adverse": True, "from": "mrr", "threshold": -0.1},
    "inactive": {"adverse": True, "from": "activity", "days": 10},
}


@pytest.fixture()
def lifecycle(tmp_path: Path) -> Path:
    d = dt.date
    subs = [
        # a: 100 -> 105 (+5 %, no event) -> 150 (+43 %, expanded) -> 120 (-20 %, contracted); 5-day gap is no churn
        {"account_id": "a", "start": d(2025, 1, 1), "end": d(2025, 2, 1), "mrr": 100.0, "seats": 1},
        {"account_id": "a", "start": d(2025, 2, 1), "end": d(2025, 3, 1), "mrr": 105.0, "seats": 1},
        {"account_id": "a", "start": d(2025, 3, 6), "end": d(2025, 4, 1), "mrr": 150.0, "seats": 1},
        {"account_id": "a", "start": d(2025, 4, 1), "end": None, "mrr": 120.0, "seats": 1},
        # b: churns Feb 1 (back after 28 days: re-activation), then churns for good on Apr 1
        {"account_id": "b", "start": d(2025, 1, 1), "end": d(2025, 2, 1), "mrr": 50.0, "seats": 1},
        {"account_id": "b", "start": d(2025, 3, 1), "end": d(2025, 4, 1), "mrr": 50.0, "seats": 1},
    ]
    events = [
        {
            "account_id": a,
            "time": dt.datetime(2025, 1, 1) + dt.timedelta(days=k),
            "event": "login",
            "value": None,
            "user_id": None,
        }
        for a in ("a", "b")
        for k in (0, 3, 20, 31, 45, 100)
    ]
    _write(tmp_path, events, subs, [])
    return tmp_path


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_golden_outcomes(lifecycle: Path, engine: str):
    spec = _spec(
        lifecycle,
        [{"name": "mrr", "subscription": "mrr"}],
        outcomes=OUTCOMES,
        grid={"every": "2w", "start": "2025-01-06", "end": "2025-04-28"},
        accounts=None,
    )
    result = build(spec, engine=engine, today=TODAY)
    d = dt.date
    expected = pl.DataFrame(
        [
            # inactivity: 10 days without a login after Jan 4, Jan 21, Feb 1 and Feb 15 (Apr 11 + 10 is past the data)
            ("a", d(2025, 1, 14), "inactive"),
            ("a", d(2025, 1, 31), "inactive"),
            ("a", d(2025, 2, 11), "inactive"),
            ("a", d(2025, 2, 25), "inactive"),
            ("a", d(2025, 3, 6), "expanded"),
            ("a", d(2025, 4, 1), "contracted"),
            ("b", d(2025, 1, 14), "inactive"),
            ("b", d(2025, 1, 31), "inactive"),
            ("b", d(2025, 2, 1), "churned"),
            ("b", d(2025, 2, 11), "inactive"),
            ("b", d(2025, 2, 25), "inactive"),
            ("b", d(2025, 4, 1), "churned"),
        ],
        schema={"account_id": pl.String, "date": pl.Date, "event": pl.String},
        orient="row",
    )
    assert_frame_equal(result.events, expected)
    # b has no rows while churned (Feb 1 .. Mar 1) nor after its final churn; a has every row
    grid = [d(2025, 1, 6) + dt.timedelta(days=14 * k) for k in range(9)]
    b_rows = result.snapshots.filter(pl.col("account_id") == "b")["as_of"].to_list()
    assert b_rows == [x for x in grid if x < d(2025, 2, 1) or d(2025, 3, 1) <= x < d(2025, 4, 1)]
    assert result.snapshots.filter(pl.col("account_id") == "a")["as_of"].to_list() == grid
    assert result.snapshots.filter(pl.col("account_id") == "a")["mrr"].to_list() == [
        100.0,
        100.0,
        105.0,
        105.0,
        0.0,
        150.0,
        150.0,
        120.0,
        120.0,
    ]


def test_outcome_meaning_comes_from_spec_outcomes(lifecycle: Path):
    spec = _spec(lifecycle, [{"name": "mrr", "subscription": "mrr"}], outcomes=OUTCOMES, accounts=None)
    assert spec.outcome_definitions["churned"].terminal and spec.outcome_definitions["churned"].adverse
    assert not spec.outcome_definitions["expanded"].adverse
    assert build_outcomes(spec, today=TODAY)["event"].n_unique() == 4


def test_grid_kinds(golden: Path):
    base = _spec(golden, [{"name": "tenure_days", "tenure": True}], grid={"every": "1w", "end": "2025-02-10"})
    weekly = build_snapshots(base, today=TODAY)
    assert {d.weekday() for d in weekly["as_of"]} == {0}
    assert weekly.filter(pl.col("account_id") == "a")["as_of"].min() == dt.date(2025, 1, 6)
    monthly = build_snapshots(base, grid="1mo", today=TODAY)
    assert monthly["as_of"].unique().sort().to_list() == [dt.date(2025, 1, 1), dt.date(2025, 2, 1)]
    anniversary = build_snapshots(base.with_grid(Grid("anniversary", (), None, dt.date(2025, 3, 5))), today=TODAY)
    assert anniversary.filter(pl.col("account_id") == "b")["as_of"].to_list() == [
        dt.date(2025, 2, 2),
        dt.date(2025, 3, 2),
    ]


# ------------------------------------------------------------------------ bad input
def _csv_spec(folder: Path, rows: list[str], metrics=None) -> object:
    (folder / "events.csv").write_text("customer,event_time,event_type,value\n" + "\n".join(rows) + "\n")
    return parse_spec(
        {
            "source": {
                "events": "events.csv",
                "columns": {"account_id": "customer", "time": "event_time", "event": "event_type"},
            },
            "grid": {"dates": ["2025-01-06"]},
            "metrics": metrics or [{"name": "v", "agg": "sum", "window": "7d"}],
        },
        origin=str(folder / "spec.toml"),
        base=folder,
    )


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
@pytest.mark.parametrize(
    "rows, words",
    [
        (["a,2025-01-02 10:00,post,1", "a,02/01/2025,post,1"], ["event_time", "not readable", "02/01/2025"]),
        (["a,2025-01-02T10:00:00+01:00,post,1", "a,2025-01-03 10:00,post,1"], ["event_time", "ambiguous", "offset"]),
        (["a,2025-01-02 10:00,post,1", "a,2099-01-03 10:00,post,1"], ["event_time", "after today", "2099-01-03"]),
        (["a,2025-01-02 10:00,post,-3"], ["value", "negative", "allow_negative"]),
        (["a,2025-01-02 10:00,post,lots"], ["value", "not numbers", "lots"]),
    ],
)
def test_bad_events(tmp_path: Path, engine: str, rows, words):
    spec = _csv_spec(tmp_path, rows)
    with pytest.raises(BuildError) as err:
        build_snapshots(spec, engine=engine, today=dt.date(2025, 6, 1))
    text = str(err.value)
    assert "events.csv" in text
    for w in words:
        assert w in text


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_text_times_with_offsets_convert_to_the_zone(tmp_path: Path, engine: str):
    # 2025-01-06 23:30 at -05:00 is Jan 7 in UTC: outside the window ending Jan 6
    spec = _csv_spec(tmp_path, ["a,2025-01-06T23:30:00-05:00,post,1", "a,2025-01-06T10:00:00Z,post,2"])
    assert build_snapshots(spec, engine=engine, today=TODAY)["v"].to_list() == [2.0]


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_unknown_accounts_warn_and_are_left_out(golden: Path, engine: str):
    frame = pl.read_parquet(golden / "events.parquet")
    extra = frame.head(2).with_columns(pl.lit("zz").alias("account_id"))
    pl.concat([frame, extra]).write_parquet(golden / "events.parquet")
    spec = _spec(golden, [{"name": "n", "agg": "count", "window": "7d"}])
    with pytest.warns(BuildWarning, match="2 event\\(s\\) of accounts not in .*subs.parquet"):
        out = build_snapshots(spec, engine=engine, today=TODAY)
    assert "zz" not in out["account_id"].to_list()


@pytest.mark.parametrize(
    "subs, words",
    [
        ([("a", "2025-01-10", "2025-01-05")], ["end before", "2025-01-10"]),
        ([("a", "2025-01-01", "2025-02-01"), ("a", "2025-01-20", None)], ["overlap", "2025-01-20"]),
    ],
)
def test_bad_subscriptions(golden: Path, subs, words):
    pl.DataFrame(
        subs, schema={"account_id": pl.String, "start": pl.String, "end": pl.String}, orient="row"
    ).with_columns(pl.lit(10.0).alias("mrr"), pl.lit(1).alias("seats")).write_csv(golden / "subs.csv")
    spec = _spec(golden, [{"name": "mrr", "subscription": "mrr"}], subscriptions="subs.csv")
    with pytest.raises(BuildError) as err:
        build_snapshots(spec, today=TODAY)
    assert "subs.csv" in str(err.value)
    for w in words:
        assert w in str(err.value)


def test_spec_errors_name_file_key_and_fix(tmp_path: Path):
    path = tmp_path / "spec.toml"
    path.write_text('[source]\nevents = "e.parquet"\n[[metrics]]\nname = "x"\nagg = "median"\nwindow = "7d"\n')
    with pytest.raises(SpecError, match=r"spec.toml: metrics\[0\] \(x\).agg = 'median' is not known; use one of"):
        load_spec(path)
    with pytest.raises(SpecError, match="names no metric defined above"):
        parse_spec({"source": {"events": "e.parquet"}, "metrics": [{"name": "r", "ratio": ["a", "b"]}]})
    with pytest.raises(SpecError, match="window"):
        parse_spec({"source": {"events": "e.parquet"}, "metrics": [{"name": "w", "agg": "count", "window": "soon"}]})
    with pytest.raises(HealthscoreError, match="spec: \\[outcomes.gone\\] needs adverse"):
        parse_spec(
            {
                "source": {"events": "e.parquet"},
                "metrics": [{"name": "w", "agg": "count"}],
                "outcomes": {"gone": {"from": "activity", "days": 30}},
            }
        )


def test_static_field_needs_a_date_or_static(golden: Path):
    pl.DataFrame({"account_id": ["a", "b"], "industry": ["retail", "bank"]}).write_parquet(golden / "crm.parquet")
    spec = _spec(golden, [{"name": "industry", "field": "industry"}], accounts="crm.parquet")
    with pytest.raises(BuildError, match="static = true"):
        build_snapshots(spec, today=TODAY)
    spec = _spec(golden, [{"name": "industry", "field": "industry", "static": True}], accounts="crm.parquet")
    for engine in ("polars", "duckdb"):
        out = build_snapshots(spec, engine=engine, today=TODAY)
        assert out.filter(pl.col("account_id") == "b")["industry"].unique().to_list() == ["bank"]


def test_sql_is_a_tree_with_one_commented_cte_per_step(golden: Path):
    spec = _spec(golden, GOLDEN_METRICS)
    tree = sqlgen.snapshot_query(spec)
    names = (
        [c.alias for c in tree.args["with_"].expressions]
        if "with_" in tree.args
        else [c.alias for c in tree.args["with"].expressions]
    )
    assert names[0] == "grid_rows" and "subs_at" in names and "tenure" in names
    text = tree.sql("duckdb", pretty=True)
    assert "posts_7d" in text and "/* window 7 days, event = 'post'" in text
    assert "MAX_BY" in tree.sql("spark")


def test_duckdb_reads_csv_duckdb_and_sqlite_files(golden: Path):
    import sqlite3

    import duckdb

    frame = pl.read_parquet(golden / "events.parquet")
    spec = _spec(golden, [{"name": "n", "agg": "count", "window": "28d"}])
    expected = build_snapshots(spec, engine="duckdb", today=TODAY)
    with duckdb.connect(str(golden / "raw.duckdb")) as con:
        con.register("f", frame.to_arrow())
        con.execute("create table events as select * from f")
    with sqlite3.connect(golden / "raw.sqlite") as con:
        con.execute("create table events (account_id text, time text, event text, value real, user_id text)")
        con.executemany(
            "insert into events values (?, ?, ?, ?, ?)",
            [(r[0], r[1].isoformat(sep=" "), r[2], r[3], r[4]) for r in frame.iter_rows()],
        )
    frame.with_columns(pl.col("time").dt.strftime("%Y-%m-%d %H:%M:%S")).write_csv(golden / "events.csv")
    for file in ("raw.duckdb", "raw.sqlite", "events.csv"):
        for engine in ("polars", "duckdb"):
            got = build_snapshots(
                _spec(golden, [{"name": "n", "agg": "count", "window": "28d"}], events=file), engine=engine, today=TODAY
            )
            assert_frame_equal(got, expected)


def test_cli_build_writes_both_files_and_maps_columns(golden: Path, capsys):
    from healthscore.app.cli import main

    frame = pl.read_parquet(golden / "events.parquet").rename({"account_id": "customerID"})
    frame.write_parquet(golden / "events.parquet")
    (golden / "spec.toml").write_text(
        '[source]\nevents = "events.parquet"\nsubscriptions = "subs.parquet"\n'
        '[grid]\nevery = "1w"\nend = "2025-01-20"\n'
        '[[metrics]]\nname = "posts_7d"\nevent = "post"\nagg = "count"\nwindow = "7d"\n'
        '[outcomes.churned]\nadverse = true\nterminal = true\nfrom = "subscriptions"\n'
    )
    args = [
        "build",
        "--spec",
        str(golden / "spec.toml"),
        "--out",
        str(golden / "out" / "snaps.parquet"),
        "--events-out",
        str(golden / "out" / "events.csv"),
        "--no-progress",
    ]
    assert main(args) == 1  # the events use customerID: a data problem
    assert "--map account_id=<column>" in capsys.readouterr().err
    assert not (golden / "out" / "snaps.parquet").exists()
    # a memory limit for an engine that has none, or one that is not a size: the error says so
    assert main(args + ["--map", "account_id=customerID", "--memory-limit", "1GB"]) == 1
    assert "duckdb engine only" in capsys.readouterr().err
    assert main(args + ["--map", "account_id=customerID", "--engine", "duckdb", "--memory-limit", "lots"]) == 1
    assert "write it like 4GB" in capsys.readouterr().err
    assert not (golden / "out" / "snaps.parquet").exists()
    limited = ["--engine", "duckdb", "--memory-limit", "256MB"]
    assert main(args + ["--map", "account_id=customerID", *limited]) == 0
    snaps = pl.read_parquet(golden / "out" / "snaps.parquet")
    assert snaps.filter(pl.col("account_id") == "a")["posts_7d"].to_list() == [2, 2, 0]
    # b's subscription ended Jan 18, but the data ends Jan 20: the 7-day gap is not yet confirmed, no churn
    assert pl.read_csv(golden / "out" / "events.csv").columns == ["account_id", "date", "event"]
    assert pl.read_csv(golden / "out" / "events.csv").height == 0


def test_a_large_log_is_built_in_parts_of_accounts_with_the_same_result(tmp_path: Path, monkeypatch):
    """The sample's raw layer (every metric kind) built whole and in parts of accounts: the same
    snapshots and outcome events, and the split is removed afterwards."""
    import healthscore as hs

    spec = hs.make_portfolio(n_accounts=60, n_weeks=20, seed=9).raw.save(tmp_path / "raw")
    today = dt.date(2027, 6, 1)
    whole = build(spec, engine="polars", today=today)
    monkeypatch.setattr(build_module, "EVENTS_PER_PART", 5_000)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    splits: list[int] = []
    original = build_module.split_by_account

    def split(rows, parts, folder):
        splits.append(len(parts))
        return original(rows, parts, folder)

    monkeypatch.setattr(build_module, "split_by_account", split)
    parts = build(spec, engine="polars", today=today)
    assert parts.snapshots.equals(whole.snapshots, null_equal=True)
    assert parts.events.equals(whole.events)
    duck = build(spec, engine="duckdb", today=today)  # DuckDB in parts too (no split: it reads the log again)
    _assert_close(duck.snapshots, whole.snapshots)
    assert duck.events.equals(whole.events)
    assert whole.snapshots["account_id"].n_unique() == 60 and whole.snapshots.width > 8
    assert splits and splits[0] > 2  # the log really was split
    assert list((tmp_path / "scratch").iterdir()) == []
