"""Outcome labels, point in time: for each snapshot, does the outcome happen in (as_of, as_of + horizon]?

Whether an outcome ends the account (no snapshot after it can be labelled) comes from its
definition in :mod:`healthscore.spec.outcomes`, never from its name.

>>> import polars as pl, datetime as dt
>>> snaps = pl.DataFrame({"account_id": ["a"] * 3, "as_of": [dt.date(2026, 1, 5) + dt.timedelta(weeks=i) for i in range(3)]})
>>> events = pl.DataFrame({"account_id": ["a"], "date": [dt.date(2026, 1, 14)], "event": ["churned"]})
>>> label_outcomes(snaps, events, horizon="7d", data_end=dt.date(2026, 3, 1))["churned"].to_list()
[False, True]
"""

from __future__ import annotations

import warnings
from datetime import date
from typing import Literal, cast

import polars as pl

from healthscore.core.extract import is_cross_sectional, observation_end
from healthscore.io.snapshots import Problem, ValidationError
from healthscore.spec.outcomes import parse_horizon, resolve_outcome

__all__ = ["label_outcomes"]


def _input_error(source: str, message: str, fix: str, column: str | None = None) -> Exception:
    """A ValidationError naming the table (and column) at fault and what to do about it."""
    return ValidationError(source, [Problem("fitting", column, message, fix)])


def _require(frame: pl.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise _input_error(
            what,
            f"lacks column(s) {missing}; it has {frame.columns[:12]}",
            f"Rename the columns or pass a {what} table with {columns}",
            column=missing[0],
        )


def _as_date(frame: pl.DataFrame, column: str, what: str) -> pl.DataFrame:
    dtype = frame.schema[column]
    if dtype == pl.Date:
        return frame
    if isinstance(dtype, pl.Datetime):
        return frame.with_columns(pl.col(column).dt.date())
    raise _input_error(
        what, f"must be a date, not {dtype}", f"Parse it first, e.g. pl.col({column!r}).str.to_date()", column=column
    )


def label_outcomes(
    snapshots: pl.DataFrame | pl.LazyFrame,
    events: pl.DataFrame | pl.LazyFrame,
    *,
    outcome: str = "churned",
    horizon: str = "90d",
    cadence: Literal["weekly", "monthly"] = "weekly",
    data_end: date | None = None,
    terminal: bool | None = None,
    cross_sectional: bool | None = None,
) -> pl.DataFrame:
    """Label each snapshot by whether ``outcome`` happens in ``(as_of, as_of + horizon]``.

    Rules, so the labels are point-in-time and unbiased:

    * the event must fall strictly after ``as_of`` and on or before ``as_of + horizon``;
    * terminal outcomes (``churned`` by default, see ``terminal``): snapshots on or after the
      account's first such event are dropped; non-terminal outcomes (``expanded``) label each
      snapshot by the next event after it and keep going;
    * censored rows are dropped: those with ``as_of + horizon`` past the end of the data, which
      is the last snapshot ``as_of`` unless ``data_end`` is given;
    * ``cadence="monthly"`` keeps one snapshot per account and calendar month (the last one),
      for fits that want fewer, less dependent rows;
    * one snapshot per account (a CRM extract; ``cross_sectional=None`` detects it): the horizon is
      the observation window, ``(as_of, data_end]`` with ``data_end`` the last day observed (by
      default the latest ``as_of`` or ``outcome`` event), and no row is censored.

    The result holds the snapshot columns unchanged plus one Boolean column named ``outcome``,
    sorted by ``account_id`` and ``as_of``. Nothing else from the future is joined on.

    >>> import datetime as dt, polars as pl
    >>> snaps = pl.DataFrame({"account_id": ["a"] * 4,
    ...     "as_of": [dt.date(2024, 1, 1) + dt.timedelta(weeks=k) for k in range(4)]})
    >>> ev = pl.DataFrame({"account_id": ["a"], "date": [dt.date(2024, 1, 10)], "event": ["churned"]})
    >>> label_outcomes(snaps, ev, horizon="7d", data_end=dt.date(2024, 3, 1))["churned"].to_list()
    [False, True]
    """
    if cadence not in ("weekly", "monthly"):
        raise _input_error(
            "cadence",
            f"cadence {cadence!r} is not known",
            "Use 'weekly' (every snapshot) or 'monthly' (the last snapshot of each month)",
        )
    horizon = parse_horizon(horizon)
    if terminal is None:
        terminal = resolve_outcome(outcome).terminal
    snaps = snapshots.collect() if isinstance(snapshots, pl.LazyFrame) else snapshots
    ev = events.collect() if isinstance(events, pl.LazyFrame) else events
    _require(snaps, ["account_id", "as_of"], "snapshots")
    _require(ev, ["account_id", "date", "event"], "events")
    if outcome in snaps.columns:
        raise _input_error(
            "snapshots",
            f"already has a column named after the outcome {outcome!r}",
            "Outcomes come from the events table only: drop or rename that column so no "
            "label can leak into the features",
            column=outcome,
        )
    snaps = _as_date(snaps, "as_of", "snapshots")
    ev = _as_date(ev, "date", "events")
    if snaps.is_empty():
        return snaps.with_columns(pl.lit(None, pl.Boolean).alias(outcome)).clear()

    if cross_sectional is None:
        cross_sectional = is_cross_sectional(snaps)
    if cross_sectional:
        if data_end is None:
            data_end = observation_end(snaps, ev, outcome)
        # each row's window runs from its as_of to the end of observation: that window is the horizon
    if data_end is None:
        data_end = cast("date | None", snaps["as_of"].max())
    ev = (
        ev.lazy()
        .filter(pl.col("event") == outcome)
        .select(pl.col("account_id").cast(snaps.schema["account_id"]), pl.col("date"))
        .drop_nulls()
        .unique()
        .sort("account_id", "date")
        .collect()
    )
    if ev.is_empty():
        warnings.warn(f"the events table holds no {outcome!r} event: every label is False", stacklevel=2)

    rows = snaps.lazy()
    if cadence == "monthly":
        rows = rows.sort("account_id", "as_of").filter(
            pl.col("as_of") == pl.col("as_of").max().over("account_id", pl.col("as_of").dt.truncate("1mo"))
        )
    end = pl.lit(data_end) if cross_sectional else pl.col("as_of").dt.offset_by(horizon)
    rows = rows.with_columns(_next_after=pl.col("as_of").dt.offset_by("1d")).sort("account_id", "_next_after")
    # forward as-of join on as_of + 1 day: the first event strictly after as_of
    labelled = rows.join_asof(
        ev.lazy().rename({"date": "_event"}),
        left_on="_next_after",
        right_on="_event",
        by="account_id",
        strategy="forward",
        check_sortedness=False,
    )
    if terminal:
        first = ev.group_by("account_id").agg(_first=pl.col("date").min()).lazy()
        labelled = labelled.join(first, on="account_id", how="left").filter(
            pl.col("_first").is_null() | (pl.col("as_of") < pl.col("_first"))
        )
    out = (
        labelled.filter(end <= pl.lit(data_end))
        .with_columns(pl.col("_event").is_not_null().and_(pl.col("_event") <= end).alias(outcome))
        .select(*snaps.columns, outcome)
        .sort("account_id", "as_of")
        .collect()
    )
    return out


# ---------------------------------------------------------------- logistic fits
# A standard error above this many log-odds per standard deviation of the feature means the
# likelihood is flat in that direction: the mark of (quasi-)separation, not of a real effect.
