"""Reading and validating the two input tables: snapshots and outcome events.

Snapshots hold one row per account per ``as_of`` date; events hold one row per account event
(``churned``, ``expanded``, ...). Both are read from CSV, Parquet, Excel, a DuckDB or SQLite file,
or a SQL URI, and validated on entry. Every problem names the source, the column, up to five
example rows and what to do; nothing is silently coerced.

>>> import polars as pl, datetime as dt
>>> frame = pl.DataFrame({"account_id": ["a", "a"], "as_of": [dt.date(2026, 1, 5)] * 2, "logins": [3.0, -1.0]})
>>> [p.check for p in validate_snapshots(frame, source="example", nonnegative=["logins"])]
['duplicate_key', 'negative']
"""
from __future__ import annotations

import datetime as dt
import difflib
import os
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from healthscore.errors import HealthscoreError

KEYS = ("account_id", "as_of")
EVENT_COLUMNS = ("account_id", "date", "event")
MAX_EXAMPLES = 5
_ROW = "__row__"

# Columns that can never be negative in the sample portfolio's vocabulary; a user passes
# ``nonnegative=`` to name their own. Name patterns catch the common count-like columns.
KNOWN_NONNEGATIVE = frozenset({
    "active_users", "seat_utilization", "login_days", "key_feature_adoption", "api_calls",
    "tickets_opened", "high_sev_tickets", "csat", "nps", "exec_sponsor_engaged", "champion_left",
    "csm_assessment", "days_invoice_overdue", "seats_deployed_ratio", "goal_progress", "email_ctr",
    "community_posts", "training_completions", "arr", "seats_purchased",
})
_NONNEGATIVE_PATTERN = re.compile(r"(_count|_days|_users|_tickets|_calls|_ratio|_rate|_seats|^seats_|^num_|^n_)")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$")
_DATE_NAME = re.compile(r"(^as_of$|^date$|_date$|_at$|_on$|_start$|_end$|_due$)")


@dataclass(frozen=True)
class Problem:
    """One validation finding: what is wrong, where, examples, and what to do."""

    check: str
    column: str | None
    message: str
    fix: str
    rows: tuple[int, ...] = ()
    examples: tuple[str, ...] = ()

    def render(self, row_label: str = "row") -> str:
        where = f"column '{self.column}': " if self.column else ""
        text = f"{where}{self.message}"
        if self.rows:
            shown = ", ".join(f"{row_label} {r}" + (f" ({e})" if e else "") for r, e in
                              zip(self.rows, self.examples or ("",) * len(self.rows)))
            text += f" [e.g. {shown}]"
        return f"{text}. {self.fix}"


@dataclass
class ValidationError(HealthscoreError, ValueError):
    """Raised when an input table has problems; ``problems`` lists them all, not just the first."""

    source: str
    problems: list[Problem] = field(default_factory=list)
    row_label: str = "row"

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        n = len(self.problems)
        lines = [f"{self.source}: {n} problem{'s' if n != 1 else ''}"]
        lines += [f"  - {p.render(self.row_label)}" for p in self.problems]
        return "\n".join(lines)


# ------------------------------------------------------------------ reading (edges)
def _row_label(source: str) -> tuple[str, int]:
    """How rows are numbered in messages: CSV lines (header is line 1) or 1-based data rows."""
    return ("line", 2) if str(source).lower().endswith((".csv", ".tsv", ".txt")) else ("row", 1)


def _read_raw(source: str | os.PathLike[str], table: str | None, query: str | None) -> tuple[pl.DataFrame, bool]:
    """Read a table as it is stored. Returns the frame and whether all its columns are text."""
    text = str(source)
    lower = text.lower()
    if "://" in text:
        return _read_uri(text, table, query), False
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"{text}: no such file. Give the path of a CSV, Parquet, Excel, DuckDB or SQLite file.")
    if path.is_dir():
        raise ValidationError(text, [Problem("not_a_file", None, "is a folder, not a file",
                                             "Point at the snapshot file inside it, e.g. snapshots.parquet.")])
    if lower.endswith((".csv", ".tsv", ".txt")):
        sep = "\t" if lower.endswith(".tsv") else ","
        try:
            # All text: types are decided column by column below, so bad cells are reported, not guessed.
            return pl.read_csv(path, infer_schema=False, separator=sep, null_values=[""]), True
        except pl.exceptions.ComputeError as exc:
            raise ValidationError(text, [Problem("unreadable", None, f"cannot be read as CSV ({exc})",
                                                 "Check the delimiter and quoting; export as UTF-8 CSV.")]) from exc
    if lower.endswith((".parquet", ".pq")):
        return pl.read_parquet(path), False
    if lower.endswith((".xlsx", ".xlsm", ".xls")):
        return pl.read_excel(path, sheet_id=1), False
    if lower.endswith((".duckdb", ".ddb")):
        return _read_duckdb(path, table, query), False
    if lower.endswith((".db", ".sqlite", ".sqlite3")):
        return _read_sqlite(path, table, query), False
    raise ValidationError(text, [Problem("format", None, f"unknown file type '{path.suffix}'",
                                         "Use .csv, .parquet, .xlsx, .duckdb, .sqlite or a SQL URI.")])


def _pick_table(tables: Sequence[str], table: str | None, source: str, wanted: str) -> str:
    if table:
        if table not in tables:
            raise ValidationError(source, [Problem("table", None, f"has no table '{table}' (tables: {', '.join(tables)})",
                                                   "Pass one of the listed tables.")])
        return table
    if wanted in tables:
        return wanted
    if len(tables) == 1:
        return tables[0]
    raise ValidationError(source, [Problem("table", None, f"holds {len(tables)} tables ({', '.join(tables) or 'none'})",
                                           f"Name one with table=..., or call it '{wanted}'.")])


def _read_duckdb(path: Path, table: str | None, query: str | None, wanted: str = "snapshots") -> pl.DataFrame:
    import duckdb

    with duckdb.connect(str(path), read_only=True) as con:
        if query is None:
            tables = [r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()]
            query = f'select * from "{_pick_table(tables, table, str(path), wanted)}"'
        return con.sql(query).pl()


def _read_sqlite(path: Path | str, table: str | None, query: str | None, wanted: str = "snapshots") -> pl.DataFrame:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        if query is None:
            tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'").fetchall()]
            query = f'select * from "{_pick_table(tables, table, str(path), wanted)}"'
        return pl.read_database(query, connection=con, infer_schema_length=None)
    finally:
        con.close()


def _read_uri(uri: str, table: str | None, query: str | None) -> pl.DataFrame:
    scheme, _, rest = uri.partition("://")
    if scheme == "sqlite":
        return _read_sqlite(rest[1:], table, query)  # sqlite:///relative or sqlite:////absolute
    if scheme == "duckdb":
        return _read_duckdb(Path(rest), table, query)
    try:
        import sqlalchemy
    except ImportError as exc:
        raise ValidationError(uri.split("@")[-1], [Problem(
            "driver", None, f"reading '{scheme}://' URIs needs SQLAlchemy and the database driver",
            "pip install sqlalchemy and the driver (e.g. psycopg for PostgreSQL), or export the table to Parquet.")]) from exc
    engine = sqlalchemy.create_engine(uri)
    with engine.connect() as con:
        return pl.read_database(query or f'select * from "{table or "snapshots"}"', connection=con)


# ------------------------------------------------------------------ typing text columns
def _example_rows(frame: pl.DataFrame, mask: pl.Expr, column: str | None, offset: int) -> tuple[tuple[int, ...], tuple[str, ...]]:
    hits = frame.filter(mask).head(MAX_EXAMPLES)
    rows = tuple(int(r) + offset for r in hits[_ROW])
    if column is None:
        return rows, ()
    return rows, tuple(repr(v) if isinstance(v, str) else str(v) for v in hits[column].to_list())


NUMERIC_SHARE = 0.8  # a text column is numeric when at least this share of its filled cells are numbers


def text_column_kinds(frame: pl.DataFrame | pl.LazyFrame, date_columns: Iterable[str] = ("as_of",)) -> dict[str, str]:
    """How :func:`read_snapshots` types each text column: ``date``, ``number`` or ``text``.

    Decided on the whole table in one aggregate query, so a table read in chunks types every
    chunk alike (pass the result as ``kinds`` to ``_type_text_columns``).
    """
    lf = frame.lazy()
    schema = lf.collect_schema()
    date_columns = set(date_columns)
    kinds: dict[str, str] = {}
    counted = []
    for name, dtype in schema.items():
        if name == _ROW or dtype != pl.String or name == "account_id":
            continue
        if name in date_columns or _DATE_NAME.search(name):
            kinds[name] = "date"
            continue
        counted.append(name)
        kinds[name] = "text"
    if counted:
        exprs = []
        for i, name in enumerate(counted):
            col = pl.col(name).str.strip_chars()
            exprs += [(col.is_not_null() & (col != "")).sum().alias(f"f{i}"),
                      col.cast(pl.Float64, strict=False).is_not_null().sum().alias(f"n{i}")]
        counts = lf.select(exprs).collect(engine="streaming").row(0)
        for i, name in enumerate(counted):
            n_filled, n_numeric = counts[2 * i], counts[2 * i + 1]
            if n_filled and n_numeric / n_filled >= NUMERIC_SHARE:
                kinds[name] = "number"
    return kinds


def _type_text_columns(frame: pl.DataFrame, date_columns: Iterable[str], offset: int,
                       kinds: dict[str, str] | None = None) -> tuple[pl.DataFrame, list[Problem]]:
    """Give text columns their types: dates where the column is a date, numbers where it is numeric.

    A column is numeric when most of its filled cells parse as numbers; the cells that do not are
    reported rather than turned into nulls. ``kinds`` (from :func:`text_column_kinds`) decides
    the numeric columns instead of this frame's own cells.
    """
    problems: list[Problem] = []
    date_columns = set(date_columns)
    casts: list[pl.Expr] = []
    for name, dtype in frame.schema.items():
        if name == _ROW or dtype != pl.String or name == "account_id":
            continue
        col = pl.col(name).str.strip_chars()
        filled = col.is_not_null() & (col != "")
        if name in date_columns or _DATE_NAME.search(name):
            parsed = col.str.to_date("%Y-%m-%d", strict=False)
            bad = filled & parsed.is_null()
            if frame.select(bad.any()).item():
                rows, ex = _example_rows(frame, bad, name, offset)
                n = frame.select(bad.sum()).item()
                problems.append(Problem("unparseable_date", name, f"{n} value{'s' * (n != 1)} not a date in YYYY-MM-DD form",
                                        "Write dates as YYYY-MM-DD (e.g. 2026-03-02); leave the cell empty when unknown.",
                                        rows, ex))
            casts.append(pl.when(filled).then(parsed).alias(name))
            continue
        number = col.cast(pl.Float64, strict=False)
        n_filled, n_numeric = frame.select(filled.sum().alias("f"), number.is_not_null().sum().alias("n")).row(0)
        numeric = (kinds.get(name) == "number" if kinds is not None
                   else bool(n_filled) and n_numeric / n_filled >= NUMERIC_SHARE)
        if numeric:
            bad = filled & number.is_null()
            if n_numeric < n_filled:
                rows, ex = _example_rows(frame, bad, name, offset)
                problems.append(Problem("not_numeric", name, f"{n_filled - n_numeric} value(s) in a numeric column are not numbers",
                                        "Correct them, or leave the cell empty for 'not measured' (empty is N/A, never zero).",
                                        rows, ex))
            casts.append(pl.when(filled).then(number).alias(name))
        else:
            casts.append(pl.when(filled).then(col).alias(name))
    return (frame.with_columns(casts) if casts else frame), problems


# ------------------------------------------------------------------ validation (pure)
def _nonnegative_columns(frame: pl.DataFrame, nonnegative: Iterable[str] | None) -> list[str]:
    numeric = [n for n, t in frame.schema.items() if t.is_numeric() and n != _ROW]
    if nonnegative is not None:
        return [n for n in nonnegative if n in numeric]
    return [n for n in numeric if n in KNOWN_NONNEGATIVE or _NONNEGATIVE_PATTERN.search(n)]


def _missing_columns(frame: pl.DataFrame, required: Sequence[str]) -> list[Problem]:
    problems = []
    for name in required:
        if name not in frame.columns:
            close = difflib.get_close_matches(name, frame.columns, n=1, cutoff=0.6)
            hint = f" Did you mean '{close[0]}'? Rename it." if close else ""
            problems.append(Problem("missing_column", name, "required column is missing",
                                    f"Add a '{name}' column.{hint} Columns present: {', '.join(frame.columns[:15])}."))
    return problems


def validate_snapshots(frame: pl.DataFrame, *, source: str = "snapshots", today: dt.date | None = None,
                       nonnegative: Iterable[str] | None = None, row_offset: int = 1,
                       _prior: Sequence[Problem] = ()) -> list[Problem]:
    """Check a typed snapshot frame and return its problems (empty when clean).

    ``nonnegative`` names the columns that cannot be negative; by default the known metric names
    and count-like names (``*_count``, ``*_days``, ``*_users``, ...).
    """
    problems = list(_prior)
    if _ROW not in frame.columns:
        frame = frame.with_row_index(_ROW)
    if frame.height == 0:
        return problems + [Problem("empty", None, "has no rows", "Export the snapshots again; the file holds only a header.")]
    problems += _missing_columns(frame, KEYS)
    if any(p.check == "missing_column" for p in problems):
        return problems
    today = today or dt.date.today()
    ex = lambda mask, col=None: _example_rows(frame, mask, col, row_offset)  # noqa: E731

    if frame.schema["as_of"] == pl.Datetime or isinstance(frame.schema["as_of"], pl.Datetime):
        frame = frame.with_columns(pl.col("as_of").dt.date())
    if frame.schema["as_of"] not in (pl.Date,) and not any(p.column == "as_of" for p in problems):
        problems.append(Problem("type", "as_of", f"has type {frame.schema['as_of']}, expected dates",
                                "Store as_of as a date (YYYY-MM-DD)."))
        return problems

    for key in KEYS:
        mask = pl.col(key).is_null() | (pl.col(key).cast(pl.String).str.strip_chars() == "")
        n = frame.select(mask.sum()).item()
        if n and not any(p.column == key and p.check == "unparseable_date" for p in problems):
            rows, _ = ex(mask)
            problems.append(Problem("null_key", key, f"{n} row(s) have no {key}", f"Every row needs an {key}; fill or drop them.", rows))

    dup = pl.struct(KEYS).is_duplicated() & pl.col("as_of").is_not_null() & pl.col("account_id").is_not_null()
    n = frame.select(dup.sum()).item()
    if n:
        rows, _ = ex(dup)
        first = frame.filter(dup).row(0, named=True)
        problems.append(Problem("duplicate_key", None,
                                f"{n} rows share an (account_id, as_of) pair with another row, e.g. "
                                f"({first['account_id']!r}, {first['as_of']})",
                                "Keep one row per account per as_of date (aggregate or drop the repeats).", rows))

    future = pl.col("as_of") > pl.lit(today)
    n = frame.select(future.sum()).item()
    if n:
        rows, exs = ex(future, "as_of")
        problems.append(Problem("future_date", "as_of", f"{n} row(s) dated after today ({today})",
                                "Snapshots describe the past: fix the dates or the system clock of the export.", rows, exs))

    for name, dtype in frame.schema.items():
        if name == _ROW or not dtype.is_float():
            continue
        bad = pl.col(name).is_infinite() | pl.col(name).is_nan()
        n = frame.select(bad.sum()).item()
        if n:
            rows, exs = ex(bad, name)
            problems.append(Problem("not_finite", name, f"{n} value(s) are infinite or NaN",
                                    "Replace them with a real value, or leave the cell empty for 'not measured'.", rows, exs))

    for name in _nonnegative_columns(frame, nonnegative):
        neg = pl.col(name) < 0
        n = frame.select(neg.sum()).item()
        if n:
            rows, exs = ex(neg, name)
            problems.append(Problem("negative", name, f"{n} negative value(s) where none are possible",
                                    "Correct the export; leave the cell empty for 'not measured' (never a negative code).",
                                    rows, exs))
    return problems


def _finish(frame: pl.DataFrame, problems: list[Problem], source: str, label: str, sort: Sequence[str]) -> pl.DataFrame:
    if problems:
        raise ValidationError(source, problems, label)
    return frame.drop(_ROW).sort(list(sort))


def read_snapshots(source: str | os.PathLike[str] | pl.DataFrame, *, table: str | None = None, query: str | None = None,
                   today: dt.date | None = None, nonnegative: Iterable[str] | None = None) -> pl.DataFrame:
    """Read snapshots from a file, URI or frame, validate them, and return them sorted by account and date.

    Raises :class:`ValidationError` listing every problem found.

    >>> import polars as pl, datetime as dt
    >>> read_snapshots(pl.DataFrame({"account_id": ["b", "a"], "as_of": [dt.date(2026, 1, 5)] * 2})).get_column("account_id").to_list()
    ['a', 'b']
    """
    if isinstance(source, pl.DataFrame):
        name, raw, all_text = "snapshots", source, False
    else:
        name = str(source).split("@")[-1]  # never echo credentials of a URI
        raw, all_text = _read_raw(source, table, query)
    label, offset = _row_label(name)
    frame = raw.with_row_index(_ROW)
    prior: list[Problem] = []
    if all_text or any(t == pl.String for c, t in raw.schema.items() if c != "account_id"):
        frame, prior = _type_text_columns(frame, ["as_of"], offset)
    if "account_id" in frame.columns and frame.schema["account_id"] != pl.String:
        frame = frame.with_columns(pl.col("account_id").cast(pl.String))
    problems = validate_snapshots(frame, source=name, today=today, nonnegative=nonnegative, row_offset=offset, _prior=prior)
    if "as_of" in frame.columns and isinstance(frame.schema["as_of"], pl.Datetime):
        frame = frame.with_columns(pl.col("as_of").dt.date())
    return _finish(frame, problems, name, label, KEYS)


def read_events(source: str | os.PathLike[str] | pl.DataFrame, *, table: str | None = None,
                query: str | None = None) -> pl.DataFrame:
    """Read and validate the outcome events table (``account_id, date, event[, details]``).

    >>> import polars as pl, datetime as dt
    >>> read_events(pl.DataFrame({"account_id": ["a"], "date": [dt.date(2026, 2, 1)], "event": ["churned"]})).columns
    ['account_id', 'date', 'event']
    """
    if isinstance(source, pl.DataFrame):
        name, raw, all_text = "events", source, False
    else:
        name = str(source).split("@")[-1]
        if str(source).lower().endswith((".duckdb", ".ddb")) and table is None and query is None:
            table = "events"
        raw, all_text = _read_raw(source, table, query)
    label, offset = _row_label(name)
    frame = raw.with_row_index(_ROW)
    problems: list[Problem] = []
    if all_text or any(t == pl.String for c, t in raw.schema.items() if c in ("date",)):
        typed, problems = _type_text_columns(frame.select(_ROW, *[c for c in ("date",) if c in frame.columns]), ["date"], offset)
        frame = frame.with_columns(typed.drop(_ROW))
    if frame.height == 0:
        problems.append(Problem("empty", None, "has no rows", "Export the events again; the file holds only a header."))
    problems += _missing_columns(frame, EVENT_COLUMNS)
    if not problems:
        if isinstance(frame.schema["date"], pl.Datetime):
            frame = frame.with_columns(pl.col("date").dt.date())
        frame = frame.with_columns(pl.col("account_id").cast(pl.String), pl.col("event").cast(pl.String))
        for col in EVENT_COLUMNS:
            mask = pl.col(col).is_null()
            n = frame.select(mask.sum()).item()
            if n:
                rows, _ = _example_rows(frame, mask, None, offset)
                problems.append(Problem("null_value", col, f"{n} event(s) without {col}", f"Fill in {col} for every event.", rows))
    return _finish(frame, problems, name, label, ("account_id", "date", "event"))


def describe(frame: pl.DataFrame) -> str:
    """A short plain-text summary of a validated snapshot frame (rows, accounts, dates, metric coverage)."""
    numeric = [n for n, t in frame.schema.items() if t.is_numeric()]
    first, last = frame.select(pl.col("as_of").min().alias("a"), pl.col("as_of").max().alias("b")).row(0)
    lines = [f"{frame.height:,} snapshots of {frame['account_id'].n_unique():,} accounts, {first} to {last}"]
    if numeric:
        filled = frame.select([(1 - pl.col(c).null_count() / pl.len()).alias(c) for c in numeric]).row(0, named=True)
        lines.append("numeric columns (share filled): " + ", ".join(f"{c} {v:.0%}" for c, v in filled.items()))
    return "\n".join(lines)
