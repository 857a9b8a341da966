"""One-row-per-customer extracts: their outcome column becomes the standard events table.

A CRM extract holds one row per customer: attributes, metrics and an outcome column, either a churn
flag (Yes/No, True/False, 1/0) or the date the customer churned. Everything downstream reads
snapshots (``account_id``, ``as_of``, ...) and events (``account_id``, ``date``, ``event``), so the
outcome column is turned into events here, in one place, and dropped from the snapshots (a label
left among the features would leak).

With one snapshot per account the outcome is observed over the window from each account's
``as_of`` to the date the extract was observed until: that window is the horizon.

>>> import polars as pl, datetime as dt
>>> frame = pl.DataFrame({"account_id": ["a", "b"], "as_of": [dt.date(2026, 1, 1)] * 2, "Churn": ["Yes", "No"]})
>>> snaps, events = outcomes_from_extract(frame, column="Churn", observed_until=dt.date(2026, 3, 31))
>>> snaps.columns, events.rows()
(['account_id', 'as_of'], [('a', datetime.date(2026, 3, 31), 'churned')])
"""

from __future__ import annotations

import datetime as dt
from statistics import median
from typing import cast

import polars as pl

from healthscore.errors import HealthscoreError
from healthscore.io.snapshots import FALSE_WORDS, TRUE_WORDS

__all__ = [
    "ExtractError",
    "outcomes_from_extract",
    "is_cross_sectional",
    "cadence_of",
    "CADENCE_DAYS",
    "observation_end",
]

# days between snapshots for each cadence; "single" is one snapshot date (a cross-section)
CADENCE_DAYS = {"daily": 1, "weekly": 7, "monthly": 30, "quarterly": 91}


class ExtractError(HealthscoreError, ValueError):
    """An extract's outcome column or dates cannot be read as outcomes."""


def is_cross_sectional(snapshots: pl.DataFrame) -> bool:
    """True when every account has exactly one snapshot (a one-row-per-customer extract).

    >>> import datetime as dt
    >>> is_cross_sectional(pl.DataFrame({"account_id": ["a", "b"], "as_of": [dt.date(2026, 1, 1)] * 2}))
    True
    """
    return snapshots.height > 0 and snapshots["account_id"].n_unique() == snapshots.height


def cadence_of(dates: pl.Series | list[dt.date]) -> str:
    """The snapshot cadence from the median gap between distinct dates: ``single``, ``daily``,
    ``weekly``, ``monthly`` or ``quarterly``.

    >>> cadence_of([dt.date(2026, m, 1) for m in range(1, 7)])
    'monthly'
    >>> cadence_of([dt.date(2026, 1, 5), dt.date(2026, 1, 12), dt.date(2026, 1, 19)])
    'weekly'
    """
    days = sorted(set(dates.drop_nulls().to_list() if isinstance(dates, pl.Series) else dates))
    if len(days) < 2:
        return "single"
    gap = median((b - a).days for a, b in zip(days, days[1:]))
    return min(CADENCE_DAYS, key=lambda c: abs(CADENCE_DAYS[c] - gap))


def _flags(values: pl.Series, column: str) -> pl.Series:
    """A churn flag column as Booleans; every unreadable value is named in the error."""
    if values.dtype == pl.Boolean:
        return values
    text = values.cast(pl.Utf8).str.strip_chars().str.to_lowercase()
    known = text.is_in(list(TRUE_WORDS | FALSE_WORDS)) | text.is_null()
    if not known.all():
        odd = sorted(set(values.filter(~known).cast(pl.Utf8).to_list()))[:5]
        raise ExtractError(
            f"outcome column {column!r}: {', '.join(repr(v) for v in odd)} cannot be read as churned "
            "or not; write Yes/No, True/False or 1/0 (empty when unknown), or name a churn date column"
        )
    return text.is_in(list(TRUE_WORDS))


def observation_end(snapshots: pl.DataFrame, events: pl.DataFrame, outcome: str = "churned") -> dt.date | None:
    """The last day outcomes were observed: the latest of the last ``as_of`` and the last ``outcome`` event."""
    last = cast("dt.date | None", snapshots["as_of"].max()) if snapshots.height else None
    ev = cast("dt.date | None", events.filter(pl.col("event") == outcome)["date"].max()) if events.height else None
    return max((d for d in (last, ev) if d is not None), default=None)


def outcomes_from_extract(
    frame: pl.DataFrame, *, column: str, outcome: str = "churned", observed_until: dt.date | str | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split an extract into (snapshots without ``column``, events ``account_id, date, event``).

    ``column`` is a churn flag (Boolean, Yes/No, True/False, 1/0) or a churn date. A flagged
    account gets one ``outcome`` event on ``observed_until`` (the day after its ``as_of`` when no
    later date is given): the flag says the outcome happened within the observation window, not
    when. A date column gives the event its own date; dates after ``observed_until`` are left out
    (not yet observed) and empty cells mean no event.

    >>> frame = pl.DataFrame({"account_id": ["a", "b"], "as_of": [dt.date(2026, 1, 1)] * 2,
    ...                       "churn_date": [dt.date(2026, 2, 3), None]})
    >>> outcomes_from_extract(frame, column="churn_date")[1].rows()
    [('a', datetime.date(2026, 2, 3), 'churned')]
    """
    if column not in frame.columns:
        raise ExtractError(
            f"outcome column {column!r} is not a column of the extract; columns: "
            f"{', '.join(c for c in frame.columns if c not in ('account_id', 'as_of'))}"
        )
    for key in ("account_id", "as_of"):
        if key not in frame.columns:
            raise ExtractError(
                f"the extract has no {key} column: map it (--map {key}=COLUMN)"
                + (" or give the extract's date with --as-of/--observed-until" if key == "as_of" else "")
            )
    until = dt.date.fromisoformat(observed_until) if isinstance(observed_until, str) else observed_until
    values = frame[column]
    if values.dtype == pl.Datetime or isinstance(values.dtype, pl.Datetime):
        values = values.dt.date()
    if values.dtype == pl.Date:
        events = frame.select("account_id", values.alias("date")).drop_nulls("date")
        if until is not None:
            events = events.filter(pl.col("date") <= until)
    else:
        churned = _flags(values, column)
        day_after = pl.col("as_of").dt.offset_by("1d")
        date = day_after if until is None else pl.max_horizontal(pl.lit(until, pl.Date), day_after)
        events = frame.filter(churned.fill_null(False)).select("account_id", date.alias("date"))
    events = events.with_columns(pl.lit(outcome).alias("event")).sort("account_id", "date")
    return frame.drop(column), events.select(pl.col("account_id").cast(pl.Utf8), "date", "event")
