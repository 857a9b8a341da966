"""Tests for healthscore.fitting: point-in-time labels, logistic fits and suggested weights."""
from __future__ import annotations

import datetime as dt
import warnings

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthscore.fitting import label_outcomes, parse_horizon
from healthscore.snapshots import ValidationError

MON = dt.date(2024, 1, 1)  # a Monday


def _weekly(account: str, n: int, start: dt.date = MON) -> pl.DataFrame:
    return pl.DataFrame({"account_id": [account] * n,
                         "as_of": [start + dt.timedelta(weeks=k) for k in range(n)],
                         "x": [float(k) for k in range(n)]})


def _events(rows: list[tuple[str, dt.date, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"account_id": pl.Utf8, "date": pl.Date, "event": pl.Utf8}, orient="row")


def _labels(frame: pl.DataFrame, account: str, outcome: str = "churned") -> dict[dt.date, bool]:
    sub = frame.filter(pl.col("account_id") == account)
    return dict(zip(sub["as_of"].to_list(), sub[outcome].to_list()))


# ---------------------------------------------------------------- label_outcomes: censoring rules
@pytest.fixture
def book() -> tuple[pl.DataFrame, pl.DataFrame]:
    snaps = pl.concat([_weekly(a, 20) for a in "ABCDE"])
    events = _events([
        ("A", MON + dt.timedelta(weeks=5), "churned"),        # exactly on a snapshot day
        ("C", dt.date(2024, 5, 10), "churned"),               # inside the last uncensored window
        ("D", MON + dt.timedelta(days=1), "churned"),         # the day after the first snapshot
        ("E", MON, "churned"),                                # on the first snapshot day
        ("B", MON + dt.timedelta(days=3), "expanded"),        # another outcome: no churn label
    ])
    return snaps, events


def test_labels_every_case(book):
    snaps, events = book
    out = label_outcomes(snaps, events, outcome="churned", horizon="28d")
    # data end = last as_of = 2024-05-13; rows with as_of + 28d beyond that are censored
    last_kept = dt.date(2024, 4, 15)
    assert out["as_of"].max() == last_kept
    d = lambda w: MON + dt.timedelta(weeks=w)  # noqa: E731
    # A: churn on week 5; week 0 ends the day before... window (01-01, 01-29] misses 02-05
    assert _labels(out, "A") == {d(0): False, d(1): True, d(2): True, d(3): True, d(4): True}
    # B: never churns; the expansion event does not count; weeks 16..19 censored
    assert _labels(out, "B") == {d(w): False for w in range(16)}
    # C: churn on 05-10, only the last uncensored snapshot's window reaches it
    c = _labels(out, "C")
    assert len(c) == 16 and c[last_kept] is True and not any(v for k, v in c.items() if k != last_kept)
    # D: churn the day after its first snapshot; everything later dropped
    assert _labels(out, "D") == {d(0): True}
    # E: churn on the first snapshot day: no labellable row
    assert _labels(out, "E") == {}
    assert out.columns == ["account_id", "as_of", "x", "churned"]
    assert out.schema["churned"] == pl.Boolean
    assert out.sort("account_id", "as_of").equals(out)


def test_boundary_day_is_inside_and_as_of_day_is_outside():
    snaps = _weekly("A", 10)
    on_boundary = label_outcomes(snaps, _events([("A", MON + dt.timedelta(days=28), "churned")]),
                                 horizon="28d", data_end=dt.date(2025, 1, 1))
    assert _labels(on_boundary, "A") == {MON: True, MON + dt.timedelta(weeks=1): True,
                                         MON + dt.timedelta(weeks=2): True, MON + dt.timedelta(weeks=3): True}
    one_past = label_outcomes(snaps, _events([("A", MON + dt.timedelta(days=29), "churned")]),
                              horizon="28d", data_end=dt.date(2025, 1, 1))
    assert _labels(one_past, "A")[MON] is False


def test_expansion_keeps_going_after_an_event():
    snaps = _weekly("F", 14)
    events = _events([("F", dt.date(2024, 1, 10), "expanded"), ("F", dt.date(2024, 3, 20), "expanded"),
                      ("F", dt.date(2024, 1, 10), "expanded")])  # duplicate rows count once
    out = label_outcomes(snaps, events, outcome="expanded", horizon="28d", data_end=dt.date(2024, 12, 31))
    got = _labels(out, "F", "expanded")
    assert len(got) == 14  # nothing dropped after an expansion
    want = {MON + dt.timedelta(weeks=w): (w in (0, 1) or 8 <= w <= 11) for w in range(14)}
    assert got == want


def test_data_end_and_horizon_units():
    snaps = _weekly("A", 30)
    none = _events([])
    with pytest.warns(UserWarning, match="no 'churned' event"):
        weekly = label_outcomes(snaps, none, horizon="13w")
    assert weekly.height == 30 - 13
    with pytest.warns(UserWarning):
        later_end = label_outcomes(snaps, none, horizon="13w", data_end=dt.date(2030, 1, 1))
    assert later_end.height == 30
    with pytest.warns(UserWarning):
        months = label_outcomes(snaps, none, horizon="3mo")
    # as_of + 3 calendar months <= 2024-07-22 (the last as_of)
    assert months["as_of"].max() == dt.date(2024, 4, 22)


def test_monthly_cadence_keeps_last_snapshot_of_each_month():
    snaps = _weekly("A", 26)
    events = _events([("A", dt.date(2024, 6, 20), "churned")])
    out = label_outcomes(snaps, events, horizon="28d", cadence="monthly")
    assert out["as_of"].to_list() == [dt.date(2024, 1, 29), dt.date(2024, 2, 26), dt.date(2024, 3, 25),
                                      dt.date(2024, 4, 29), dt.date(2024, 5, 27)]
    assert out["churned"].to_list() == [False, False, False, False, True]


def test_bad_input_is_named():
    snaps = _weekly("A", 5)
    with pytest.raises(ValidationError, match="horizon '90 days'"):
        label_outcomes(snaps, _events([]), horizon="90 days")
    with pytest.raises(ValidationError, match=r"lacks column\(s\) \[.event.\]"):
        label_outcomes(snaps, pl.DataFrame({"account_id": ["A"], "date": [MON]}))
    with pytest.raises(ValidationError, match="already has a column named after the outcome .churned."):
        label_outcomes(snaps.with_columns(churned=pl.lit(True)), _events([]))
    with pytest.raises(ValidationError, match="cadence"):
        label_outcomes(snaps, _events([]), cadence="daily")  # type: ignore[arg-type]
    assert parse_horizon("3mo") == "3mo" and parse_horizon("013w") == "13w"


def _oracle(snaps: pl.DataFrame, events: pl.DataFrame, outcome: str, days: int, terminal: bool) -> dict:
    """Labels by brute force, straight from the definition."""
    end = snaps["as_of"].max()
    ev = [(r["account_id"], r["date"]) for r in events.filter(pl.col("event") == outcome).iter_rows(named=True)]
    out = {}
    for acc, as_of in snaps.select("account_id", "as_of").iter_rows():
        mine = [d for a, d in ev if a == acc]
        if terminal and mine and as_of >= min(mine):
            continue
        if as_of + dt.timedelta(days=days) > end:
            continue
        out[(acc, as_of)] = any(as_of < d <= as_of + dt.timedelta(days=days) for d in mine)
    return out


@settings(max_examples=60, deadline=None)
@given(
    offsets=st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 120)), min_size=1, max_size=40),
    ev=st.lists(st.tuples(st.sampled_from("abcd"), st.integers(-5, 130), st.sampled_from(["churned", "expanded"])),
                max_size=12),
    days=st.integers(1, 60),
    outcome=st.sampled_from(["churned", "expanded"]),
)
def test_labels_match_the_definition(offsets, ev, days, outcome):
    snaps = pl.DataFrame({"account_id": [a for a, _ in offsets],
                          "as_of": [MON + dt.timedelta(days=o) for _, o in offsets]}).unique()
    events = _events([(a, MON + dt.timedelta(days=o), e) for a, o, e in ev])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an outcome absent from the drawn events warns
        out = label_outcomes(snaps, events, outcome=outcome, horizon=f"{days}d")
    got = {(a, d): v for a, d, v in out.select("account_id", "as_of", outcome).iter_rows()}
    assert got == _oracle(snaps, events, outcome, days, terminal=outcome == "churned")

