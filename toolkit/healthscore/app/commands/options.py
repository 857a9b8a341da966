"""Command-line options shared by the commands that read data: column mapping and extracts.

``--map ROLE=COLUMN`` names the table's own columns (``--map account_id=customerID``); the same
parser serves ``build``. A one-row-per-customer extract passes its outcome as a column
(``--outcome-column Churn``) instead of an events table, its date with ``--as-of`` when it has no
``as_of`` column, and the last day outcomes were observed with ``--observed-until``.

>>> parse_map(["account_id=customerID", "as_of = date"])
{'account_id': 'customerID', 'as_of': 'date'}
"""

from __future__ import annotations

import argparse
import datetime as dt

import polars as pl

from healthscore.core.extract import ExtractError, outcomes_from_extract
from healthscore.errors import UsageError
from healthscore.io.snapshots import read_events, read_snapshots

__all__ = ["parse_map", "add_map_arg", "add_extract_args", "read_data", "read_history"]


def parse_map(items: list[str] | None) -> dict[str, str]:
    """``ROLE=COLUMN`` items as a dict; a malformed item is a usage error showing the form."""
    out: dict[str, str] = {}
    for item in items or []:
        role, sep, column = item.partition("=")
        if not sep or not role.strip() or not column.strip():
            raise UsageError(f"--map {item!r}: write ROLE=COLUMN, e.g. --map account_id=customerID")
        out[role.strip()] = column.strip()
    return out


def add_map_arg(p: argparse.ArgumentParser, help_text: str | None = None) -> None:
    p.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="ROLE=COLUMN",
        help=help_text
        or "the data's own column name for a role; repeat, e.g. --map account_id=customerID --map as_of=snapshot_date",
    )


def _date(flag: str):
    def parse(text: str) -> dt.date:
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} {text!r}: give a date as YYYY-MM-DD") from None

    return parse


def add_extract_args(p: argparse.ArgumentParser, *, as_of: bool = True, outcome: bool = True) -> None:
    """--map, and for one-row-per-customer extracts --as-of, --observed-until and --outcome-column."""
    add_map_arg(p)
    if as_of:
        p.add_argument(
            "--as-of",
            type=_date("--as-of"),
            metavar="YYYY-MM-DD",
            help="date of an extract without an as_of column (one row per customer)",
        )
    p.add_argument(
        "--observed-until",
        type=_date("--observed-until"),
        metavar="YYYY-MM-DD",
        help="last day outcomes were observed in an extract (also its date when it has no as_of)",
    )
    if outcome:
        p.add_argument(
            "--outcome-column",
            metavar="COLUMN",
            help="the extract's churn flag (Yes/No, True/False, 1/0) or churn date column; replaces --events",
        )


def read_data(args: argparse.Namespace, source: str | None = None) -> pl.DataFrame:
    """The snapshots named by ``--data`` (or ``source``), columns mapped, a missing as_of supplied."""
    as_of = getattr(args, "as_of", None) or getattr(args, "observed_until", None)
    if isinstance(as_of, str):
        as_of = dt.date.fromisoformat(as_of)
    return read_snapshots(
        source if source is not None else args.data, columns=parse_map(getattr(args, "map", [])), as_of=as_of
    )


def read_history(
    args: argparse.Namespace, snaps: pl.DataFrame | None = None, required: bool = True
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """(snapshots, events): events from ``--events``, or from the extract's ``--outcome-column``."""
    snaps = read_data(args) if snaps is None else snaps
    column = getattr(args, "outcome_column", None)
    events_path = getattr(args, "events", None)
    if column and events_path:
        raise UsageError("pass either --events or --outcome-column, not both")
    if column:
        try:
            return outcomes_from_extract(
                snaps,
                column=column,
                outcome=getattr(args, "outcome", "churned"),
                observed_until=getattr(args, "observed_until", None),
            )
        except ExtractError as exc:
            raise UsageError(f"--outcome-column {column}: {exc}") from None
    if events_path:
        return snaps, read_events(events_path, columns=parse_map(getattr(args, "map", [])))
    if required:
        raise UsageError(
            "pass the outcomes: --events FILE (account_id, date, event), or for a one-row-per-"
            "customer extract --outcome-column COLUMN (a churn flag or churn date)"
        )
    return snaps, None
