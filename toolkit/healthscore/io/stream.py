"""Snapshots read in parts: a lazy scan of the file, from which whole accounts (or a window of
dates) are read one part at a time, typed and validated as :func:`read_snapshots` would the whole
table. Memory then follows the size of a part, not of the file.

Parquet, Arrow IPC and CSV files are scanned lazily; other sources (Excel, DuckDB, SQLite, SQL
URIs) are read and validated whole, then served in the same parts.

>>> import polars as pl, datetime as dt
>>> scan = SnapshotScan.of_frame(pl.DataFrame({"account_id": ["b", "a"], "as_of": [dt.date(2026, 1, 5)] * 2}))
>>> scan.read(pl.col("account_id") == "a").rows()
[('a', datetime.date(2026, 1, 5))]
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from healthscore.io import snapshots as snap
from healthscore.io.snapshots import KEYS, ValidationError

LAZY_SUFFIXES = (".parquet", ".pq", ".arrow", ".ipc", ".feather", ".csv", ".tsv", ".txt")


@dataclass
class SnapshotScan:
    """A snapshot table that can be read in parts (see the module docstring).

    ``lazy`` is the scan as stored, with a row number column for messages; ``kinds`` says how
    text columns are typed (decided once on the whole table), None when nothing needs typing;
    ``validated`` is True when the whole table was already read and validated.
    """

    source: str
    lazy: pl.LazyFrame
    kinds: dict[str, str] | None = None
    validated: bool = False
    today: dt.date | None = None
    nonnegative: list[str] | None = None
    timezone: str | None = None

    @classmethod
    def of_frame(cls, frame: pl.DataFrame | pl.LazyFrame, source: str = "snapshots") -> SnapshotScan:
        """A frame already in memory (or a lazy query), validated whole first when eager."""
        if isinstance(frame, pl.DataFrame):
            frame = snap.read_snapshots(frame)
            return cls(source, frame.lazy(), validated=True)
        return cls(source, frame.with_row_index(snap._ROW), kinds=_kinds_of(frame))

    def keys(self) -> pl.LazyFrame:
        """``account_id`` (text) and ``as_of`` (date) of every row, lazily: what a plan of the
        parts needs, without the metric columns."""
        schema = self.lazy.collect_schema()
        missing = snap._missing_columns(pl.DataFrame(schema=schema), KEYS)
        if missing:
            raise ValidationError(self.source, missing, snap._row_label(self.source)[0])
        return self.lazy.select(pl.col("account_id").cast(pl.String), _as_date(schema["as_of"]))

    def date(self) -> pl.Expr:
        """The ``as_of`` column as a date, for filters on the stored table."""
        return _as_date(self.lazy.collect_schema()["as_of"])

    def typed(self) -> pl.LazyFrame:
        """The whole table with its columns typed as :func:`read_snapshots` types them, lazily and
        without validation: for checks that aggregate over it (e.g. ``ScoreModel.check_data``)."""
        if self.validated:
            return self.lazy
        casts = []
        for name, kind in (self.kinds or {}).items():
            col = pl.col(name).str.strip_chars()
            value = (
                snap._text_to_date(col, self.timezone)
                if kind == "date"
                else col.cast(pl.Float64, strict=False)
                if kind == "number"
                else col
            )
            casts.append(pl.when(col.is_not_null() & (col != "")).then(value).alias(name))
        lf = self.lazy.with_columns(casts) if casts else self.lazy
        return lf.drop(snap._ROW)

    def read(self, predicate: pl.Expr, *, allow_empty: bool = False) -> pl.DataFrame:
        """The rows matching ``predicate`` (on the stored columns; see :meth:`date`), typed and
        validated, sorted by account and date. Raises :class:`ValidationError` for their problems
        (no row at all is one, unless ``allow_empty``)."""
        try:
            part = self.lazy.filter(predicate).collect()
        except (pl.exceptions.PolarsError, OSError) as exc:  # damage found part-way through a large file
            raise self._damaged(exc) from None
        if self.validated:
            return part
        label, offset = snap._row_label(self.source)
        prior: list[snap.Problem] = []
        if self.kinds is not None:
            part, prior = snap._type_text_columns(part, ["as_of"], offset, self.timezone, kinds=self.kinds)
        if "account_id" in part.columns and part.schema["account_id"] != pl.String:
            part = part.with_columns(pl.col("account_id").cast(pl.String))
        if part.is_empty() and allow_empty:
            return part.drop(snap._ROW)
        problems = snap.validate_snapshots(
            part,
            source=self.source,
            today=self.today,
            nonnegative=self.nonnegative,
            row_offset=offset,
            timezone=self.timezone,
            _prior=prior,
        )
        if "as_of" in part.columns and isinstance(part.schema["as_of"], pl.Datetime):
            part, _ = snap._typed_dates(part, "as_of", self.timezone, offset)
        return snap._finish(part, problems, self.source, label, KEYS)

    def _damaged(self, exc: Exception) -> ValidationError:
        return snap._fail(
            self.source,
            "file",
            f"cannot be read: {snap._short(exc)}",
            "Export the file again; if it was copied, check the copy is complete",
        )

    def split(self, parts: Sequence[Sequence[str]], folder: Path, *, keep: pl.Expr | None = None) -> list[SnapshotScan]:
        """The table written once, in one streaming pass, into a folder of Parquet files per part
        of accounts (only the rows matching ``keep``, when given), and a scan of each part in the
        order of ``parts``: reading one part then reads its own files, not the whole table again.
        A table already in memory is served as it is.

        >>> import polars as pl, datetime as dt, tempfile, pathlib
        >>> frame = pl.DataFrame({"account_id": ["a", "b", "c"], "as_of": [dt.date(2026, 1, 5)] * 3, "x": [1, 2, 3]})
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "s.parquet"
        >>> frame.write_parquet(path)
        >>> scan = SnapshotScan("s.parquet", pl.scan_parquet(path, row_index_name=snap._ROW))
        >>> [p.read(pl.lit(True))["x"].to_list() for p in scan.split([["b", "a"], ["c"]], path.parent / "parts")]
        [[1, 2], [3]]
        """
        if self.validated:
            return [self] * len(parts)
        try:
            scans = split_by_account(self.lazy if keep is None else self.lazy.filter(keep), parts, folder)
        except (pl.exceptions.PolarsError, OSError) as exc:  # damage found part-way through a large file
            raise self._damaged(exc) from None
        return [dataclasses.replace(self, lazy=lazy) for lazy in scans]


# at most this many folders when a table is split by account (see split_by_account)
MAX_SPLITS = 16


def split_by_account(rows: pl.LazyFrame, parts: Sequence[Sequence[str]], folder: Path) -> list[pl.LazyFrame]:
    """``rows`` written in one streaming pass into at most :data:`MAX_SPLITS` folders of Parquet
    files, each holding whole consecutive parts of accounts (``account_id`` as text in ``parts``;
    rows of other accounts are dropped) in their stored order, and a lazy scan of each part's
    rows in the order of ``parts``.

    >>> import tempfile, pathlib
    >>> rows = pl.LazyFrame({"account_id": [3, 1, 2, 1], "x": [1, 2, 3, 4]})
    >>> [p.collect()["x"].to_list() for p in split_by_account(rows, [["1"], ["2", "3"]], pathlib.Path(tempfile.mkdtemp()))]
    [[2, 4], [1, 3]]
    """
    # the writer holds a buffer per open folder, so their number, not the table's size, sets the memory
    folders = min(len(parts), MAX_SPLITS)
    home = [k * folders // len(parts) for k in range(len(parts))]
    index = pl.DataFrame(
        {"__key": [a for ids in parts for a in ids], "__split": [home[k] for k, ids in enumerate(parts) for _ in ids]},
        schema={"__key": pl.String, "__split": pl.UInt32},
    )
    (
        rows.with_columns(pl.col("account_id").cast(pl.String).alias("__key"))
        .join(index.lazy(), on="__key", how="inner", maintain_order="left")
        .drop("__key")
        .sink_parquet(pl.PartitionBy(folder, key="__split", include_key=False), mkdir=True)
    )
    empty = pl.LazyFrame(schema=rows.collect_schema())  # a folder without rows has no file
    scans = [
        pl.scan_parquet(folder / f"__split={j}" / "*.parquet", hive_partitioning=False)
        if (folder / f"__split={j}").is_dir()
        else empty
        for j in range(folders)
    ]
    if folders == len(parts):
        return scans
    return [scans[home[k]].filter(pl.col("account_id").cast(pl.String).is_in(list(ids))) for k, ids in enumerate(parts)]


def _as_date(dtype: pl.DataType) -> pl.Expr:
    col = pl.col("as_of")
    if dtype == pl.String:  # as read_snapshots types it (time-zone-aware text is read whole)
        return snap._text_to_date(col.str.strip_chars(), None).alias("as_of")
    return col.alias("as_of")


def _kinds_of(lf: pl.LazyFrame) -> dict[str, str] | None:
    schema = lf.collect_schema()
    if any(t == pl.String for c, t in schema.items() if c not in ("account_id", snap._ROW)):
        return snap.text_column_kinds(lf, ["as_of"])
    return None


# files below this size are read whole (and checked whole); larger Parquet and Arrow files in parts
STREAM_FROM_BYTES = 64 * 2**20
BINARY_SUFFIXES = (".parquet", ".pq", ".arrow", ".ipc", ".feather")


def scan_snapshots(
    source: str | os.PathLike[str] | pl.DataFrame,
    *,
    table: str | None = None,
    today: dt.date | None = None,
    nonnegative: Iterable[str] | None = None,
    sheet: str | None = None,
    timezone: str | None = None,
) -> SnapshotScan:
    """Open snapshots for reading in parts: lazily for Parquet, Arrow IPC and CSV files whose
    ``as_of`` is a date or plain text; other sources (and time-zone-aware dates) are read and
    validated whole (see :func:`read_snapshots`)."""
    if isinstance(source, pl.DataFrame):
        return SnapshotScan.of_frame(source)
    text = str(source)
    lower = text.lower()
    path = Path(text)

    def whole() -> SnapshotScan:
        frame = snap.read_snapshots(
            source, table=table, today=today, nonnegative=nonnegative, sheet=sheet, timezone=timezone
        )
        return SnapshotScan(text.split("@")[-1], frame.lazy(), validated=True)

    # a file small enough to read whole gets every check of read_snapshots (sniffed delimiters, damaged
    # files caught by their own statistics, ragged rows); only large binary files are read in parts
    if (
        "://" in text
        or table is not None
        or sheet is not None
        or timezone is not None
        or not lower.endswith(LAZY_SUFFIXES)
        or not path.is_file()
        or path.stat().st_size < STREAM_FROM_BYTES
        or not lower.endswith(BINARY_SUFFIXES)
    ):
        return whole()
    try:
        if lower.endswith((".parquet", ".pq")):
            lf = pl.scan_parquet(path, row_index_name=snap._ROW)
        else:
            lf = pl.scan_ipc(path, row_index_name=snap._ROW)
        kinds = _kinds_of(lf)
        as_of = lf.collect_schema().get("as_of")
    except (pl.exceptions.PolarsError, OSError):  # not what its name says, or damaged: the whole read says which
        return whole()
    if as_of is not None and as_of not in (pl.Date, pl.String):  # timestamps: their day needs the whole read
        return whole()
    return SnapshotScan(
        text,
        lf,
        kinds=kinds,
        today=today,
        timezone=timezone,
        nonnegative=list(nonnegative) if nonnegative is not None else None,
    )
