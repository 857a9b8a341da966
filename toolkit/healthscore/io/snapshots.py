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

import csv
import datetime as dt
import difflib
import io
import os
import re
import sqlite3
import warnings
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import fastexcel
import polars as pl
import pyarrow.parquet as pq

from healthscore.errors import DataWarning, HealthscoreError

KEYS = ("account_id", "as_of")
EVENT_COLUMNS = ("account_id", "date", "event")
MAX_EXAMPLES = 5
_ROW = "__row__"

# The raw signals of the snapshot contract (toolkit/CONTRACTS.md), as the sample portfolio names them.
CONTRACT_SIGNALS = (
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
)
# Columns that can never be negative in the sample portfolio's vocabulary; a user passes
# ``nonnegative=`` to name their own. Name patterns catch the common count-like columns.
KNOWN_NONNEGATIVE = frozenset((*CONTRACT_SIGNALS, "arr", "seats_purchased"))
_NONNEGATIVE_PATTERN = re.compile(r"(_count|_days|_users|_tickets|_calls|_ratio|_rate|_seats|^seats_|^num_|^n_)")
# a date, optionally with a midnight time as pandas and many databases write it ("2026-03-02 00:00:00")
_MIDNIGHT_DATE = r"^(\d{4}-\d{2}-\d{2})(?:[T ]00:00(?::00(?:\.0+)?)?)?$"
_TZ_SUFFIX = r"[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}:?\d{2})$"
EARLIEST_PLAUSIBLE = dt.date(1990, 1, 1)
_DATE_NAME = re.compile(r"(^as_of$|^date$|_date$|_at$|_on$|_start$|_end$|_due$)")
# text a person or a CRM writes for yes and no; 1/0 count too in a column that uses words
TRUE_WORDS = frozenset({"yes", "y", "true", "t", "1", "1.0"})
FALSE_WORDS = frozenset({"no", "n", "false", "f", "0", "0.0"})
_WORDS = frozenset({"yes", "y", "true", "t", "no", "n", "false", "f"})
# a column whose filled cells are at least this share yes/no words is a Boolean column; the rest are errors
_BOOLEAN_SHARE = 0.95


@dataclass(frozen=True)
class Problem:
    """One validation finding: what is wrong, where, examples, and what to do."""

    check: str
    column: str | None
    message: str
    fix: str
    rows: tuple[int, ...] = ()
    examples: tuple[str, ...] = ()
    severity: str = "error"  # "warning": reported, but the table can still be used

    def render(self, row_label: str = "row") -> str:
        where = f"column '{self.column}': " if self.column else ""
        text = f"{where}{self.message}"
        if self.rows:
            shown = ", ".join(
                f"{row_label} {r}" + (f" ({e})" if e else "")
                for r, e in zip(self.rows, self.examples or ("",) * len(self.rows))
            )
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


_CSV_SUFFIXES = (".csv", ".tsv", ".txt")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls")
_DUCKDB_SUFFIXES = (".duckdb", ".ddb")
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
# Readers of damaged files fail in many ways (pyo3 panics derive from BaseException).
_READ_ERRORS = (Exception, pl.exceptions.PanicException)


def _fail(source: str, check: str, message: str, fix: str, column: str | None = None) -> ValidationError:
    return ValidationError(source, [Problem(check, column, message, fix)])


def _sniff_kind(head: bytes) -> str | None:
    """What a file really holds, from its first bytes (None: probably text)."""
    if head.startswith(b"PAR1"):
        return "Parquet"
    if head.startswith(b"PK\x03\x04"):
        return "Excel (xlsx) or another zip"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return "Excel 97-2003 (xls)"
    if head.startswith(b"SQLite format 3\x00"):
        return "SQLite"
    if head[8:12] == b"DUCK":
        return "DuckDB"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16 text"
    if b"\x00" in head[:4096]:
        return "binary"
    return None


_EXPECTED = {
    "CSV": None,
    "Parquet": "Parquet",
    "Excel": ("Excel (xlsx) or another zip", "Excel 97-2003 (xls)"),
    "SQLite": "SQLite",
    "DuckDB": "DuckDB",
}
_RENAME = {
    "Parquet": ".parquet",
    "Excel (xlsx) or another zip": ".xlsx",
    "Excel 97-2003 (xls)": ".xls",
    "SQLite": ".sqlite",
    "DuckDB": ".duckdb",
}


def _check_kind(path: Path, text: str, expected: str) -> None:
    """Refuse an empty file and a file whose content is not what its name says."""
    size = path.stat().st_size
    if size == 0:
        raise _fail(
            text,
            "empty_file",
            "is empty (0 bytes)",
            "The export did not finish or wrote nothing: export the table again.",
        )
    with path.open("rb") as fh:
        head = fh.read(4096)
    kind = _sniff_kind(head)
    wanted = _EXPECTED[expected]
    if expected == "CSV":
        if kind == "UTF-16 text":
            return
        if kind is not None:
            rename = f" Rename it to *{_RENAME[kind]}." if kind in _RENAME else ""
            raise _fail(
                text,
                "mislabelled",
                f"is named like a CSV file but holds {kind} data",
                f"Save the table as UTF-8 CSV, or give the file its real extension.{rename}",
            )
        return
    ok = kind in wanted if isinstance(wanted, tuple) else kind == wanted
    if not ok:
        found = "text (it looks like CSV)" if kind is None else f"{kind} data"
        rename = (
            " Rename it to *.csv." if kind is None else (f" Rename it to *{_RENAME[kind]}." if kind in _RENAME else "")
        )
        raise _fail(
            text,
            "mislabelled",
            f"is named like a {expected} file but holds {found}",
            f"Export it again as {expected}, or give the file its real extension.{rename}",
        )


def _read_raw(
    source: str | os.PathLike[str],
    table: str | None,
    query: str | None,
    sheet: str | None = None,
    wanted: str = "snapshots",
) -> tuple[pl.DataFrame, bool]:
    """Read a table as it is stored. Returns the frame and whether all its columns are text."""
    text = str(source)
    lower = text.lower()
    if "://" in text:
        return _read_uri(text, table, query), False
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"{text}: no such file. Give the path of a CSV, Parquet, Excel, DuckDB or SQLite file.")
    if path.is_dir():
        raise ValidationError(
            text,
            [
                Problem(
                    "not_a_file",
                    None,
                    "is a folder, not a file",
                    f"Point at the {wanted} file inside it, e.g. {wanted}.parquet.",
                )
            ],
        )
    if lower.endswith(_CSV_SUFFIXES):
        _check_kind(path, text, "CSV")
        return _read_csv(path, text, tab=lower.endswith(".tsv")), True
    if lower.endswith(_PARQUET_SUFFIXES):
        _check_kind(path, text, "Parquet")
        try:
            frame = pl.read_parquet(path)
        except _READ_ERRORS as exc:
            raise _fail(
                text,
                "unreadable",
                f"is damaged and cannot be read as Parquet ({_short(exc)})",
                "The file is truncated or corrupted: copy or export it again.",
            ) from None
        damaged = _parquet_statistics_mismatch(path, frame)
        if damaged:
            raise _fail(
                text,
                "unreadable",
                "is damaged: it holds values outside the minimum, maximum or null count "
                "recorded in the file's own footer",
                "The file was corrupted after it was written (copy, disk or transfer): copy or export it again.",
                damaged,
            )
        return frame, False
    if lower.endswith(_EXCEL_SUFFIXES):
        _check_kind(path, text, "Excel")
        return _read_excel(path, text, sheet), False
    if lower.endswith(_DUCKDB_SUFFIXES):
        _check_kind(path, text, "DuckDB")
        try:
            return _read_duckdb(path, table, query, wanted), False
        except ValidationError:
            raise
        except _READ_ERRORS as exc:
            raise _fail(
                text,
                "unreadable",
                f"cannot be read as a DuckDB database ({_short(exc)})",
                "Check the file is a DuckDB database written by a compatible DuckDB version, and the table or query.",
            ) from None
    if lower.endswith(_SQLITE_SUFFIXES):
        _check_kind(path, text, "SQLite")
        try:
            return _read_sqlite(path, table, query, wanted), False
        except ValidationError:
            raise
        except _READ_ERRORS as exc:
            raise _fail(
                text,
                "unreadable",
                f"cannot be read as a SQLite database ({_short(exc)})",
                "Check the file is a complete SQLite database, and the table or query.",
            ) from None
    raise ValidationError(
        text,
        [
            Problem(
                "format",
                None,
                f"unknown file type '{path.suffix}'",
                "Use .csv, .parquet, .xlsx, .duckdb, .sqlite or a SQL URI.",
            )
        ],
    )


def _parquet_statistics_mismatch(path: Path, frame: pl.DataFrame) -> str | None:
    """The first column whose values contradict the min/max/null count the writer recorded (None: all agree).

    Parquet pages carry no checksum by default, so damaged bytes can decode into other numbers;
    the footer's statistics were computed from the true values and catch most such damage.
    """
    try:
        meta = pq.ParquetFile(path).metadata
    except _READ_ERRORS:
        return None
    names: list[str] = [meta.schema.column(j).name for j in range(meta.num_columns)]
    for j, name in enumerate(names):
        if name not in frame.columns or names.count(name) > 1:
            continue
        series = frame.get_column(name)
        if not (series.dtype.is_numeric() or series.dtype in (pl.Date, pl.String)):
            continue
        lows: list[Any] = []
        highs: list[Any] = []
        nulls = 0
        recorded = True
        for g in range(meta.num_row_groups):
            st = meta.row_group(g).column(j).statistics
            if st is None or not st.has_min_max or st.null_count is None:
                recorded = False
                break
            lows.append(st.min)
            highs.append(st.max)
            nulls += st.null_count
        if not recorded or not lows:
            continue
        values = series.drop_nulls()
        if series.dtype.is_float():
            values = values.filter(values.is_not_nan())
        if series.null_count() != nulls:
            return name
        if values.len() and isinstance(lows[0], (int, float, str, dt.date)):
            try:
                if values.min() < min(lows) or values.max() > max(highs):
                    return name
            except TypeError:
                continue
    return None


def _short(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return first[:200]


def _read_csv(path: Path, text: str, *, tab: bool) -> pl.DataFrame:
    """CSV as all-text columns: encoding, BOM and delimiter sniffed; ragged rows and repeated headers refused."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        data = data.decode("utf-16").encode("utf-8")
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        body = data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            body = data.decode("cp1252")
        except UnicodeDecodeError as exc:
            raise _fail(
                text, "encoding", f"is not UTF-8 text (byte {exc.start})", "Save the file as UTF-8 CSV."
            ) from None
        data = body.encode("utf-8")
    if not body.strip():
        raise _fail(
            text, "empty_file", "holds no header and no rows", "The export wrote nothing: export the table again."
        )
    sample = body[:65536]
    lines = [ln for ln in sample.splitlines()[:50] if ln.strip()]
    sep = "\t" if tab else _sniff_delimiter(lines)
    header = next(csv.reader([lines[0]], delimiter=sep))
    names = [h.strip() for h in header]
    dup = sorted({n for n in names if names.count(n) > 1})
    problems = []
    if dup:
        problems.append(
            Problem(
                "duplicate_header",
                None,
                f"the header repeats column name(s) {', '.join(map(repr, dup))}",
                "Give every column its own name (rename or drop the repeat).",
            )
        )
    ragged = _ragged_lines(body, sep, len(header))
    if ragged:
        n, examples = ragged
        rows = tuple(line for line, _ in examples)
        ex = tuple(f"{k} fields" for _, k in examples)
        problems.append(
            Problem(
                "ragged_rows",
                None,
                f"{n} line(s) have a different number of fields than the header ({len(header)})",
                "A field holds an unquoted delimiter, or the file was cut or joined: quote fields "
                "that contain the delimiter and export again.",
                rows,
                ex,
            )
        )
    if problems:
        raise ValidationError(text, problems, "line")
    try:
        # All text: types are decided column by column below, so bad cells are reported, not guessed.
        frame = pl.read_csv(io.BytesIO(data), infer_schema=False, separator=sep, null_values=[""])
    except _READ_ERRORS as exc:
        raise _fail(
            text,
            "unreadable",
            f"cannot be read as CSV ({_short(exc)})",
            "Check the delimiter and quoting; export as UTF-8 CSV.",
        ) from None
    return frame.rename({c: c.strip() for c in frame.columns if c != c.strip()})


def _sniff_delimiter(lines: list[str]) -> str:
    """The delimiter that splits the first lines into the same number (>1) of fields: , ; tab or |."""
    best, best_n = ",", 1
    for sep in (",", ";", "\t", "|"):
        counts = {len(row) for row in csv.reader(lines, delimiter=sep)}
        if len(counts) == 1:
            n = counts.pop()
            if n > best_n:
                best, best_n = sep, n
    return best


def _ragged_lines(body: str, sep: str, width: int) -> tuple[int, list[tuple[int, int]]] | None:
    """Records whose field count differs from the header: (count, first examples as (line, fields))."""
    # fast path: no quotes and every line splits into the header's width
    if '"' not in body:
        counts = pl.Series(body.splitlines()).filter(pl.Series(body.splitlines()).str.strip_chars() != "")
        if counts.str.count_matches(sep, literal=True).eq(width - 1).all():
            return None
    bad: list[tuple[int, int]] = []
    n = 0
    reader = csv.reader(io.StringIO(body), delimiter=sep)
    for i, row in enumerate(reader):
        if i == 0 or not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != width:
            n += 1
            if len(bad) < MAX_EXAMPLES:
                bad.append((reader.line_num, len(row)))
    return (n, bad) if n else None


def _read_excel(path: Path, text: str, sheet: str | None) -> pl.DataFrame:
    try:
        names = list(fastexcel.read_excel(str(path)).sheet_names)
    except _READ_ERRORS as exc:
        raise _fail(
            text,
            "unreadable",
            f"is damaged and cannot be read as Excel ({_short(exc)})",
            "Open it in Excel and save it again as .xlsx, or export the sheet as CSV.",
        ) from None
    if sheet is None:
        if len(names) > 1:
            raise _fail(
                text,
                "sheet",
                f"holds {len(names)} sheets ({', '.join(map(repr, names))})",
                'Say which one to read with --sheet NAME (sheet="NAME" in Python).',
            )
        sheet = names[0] if names else None
    elif sheet not in names:
        raise _fail(
            text,
            "sheet",
            f"has no sheet {sheet!r} (sheets: {', '.join(map(repr, names))})",
            "Pass one of the listed sheet names.",
        )
    try:
        return pl.read_excel(path, sheet_name=sheet)
    except _READ_ERRORS as exc:
        raise _fail(
            text,
            "unreadable",
            f"sheet {sheet!r} cannot be read ({_short(exc)})",
            "Check the sheet holds one table with a header row, or export it as CSV.",
        ) from None


def _pick_table(tables: Sequence[str], table: str | None, source: str, wanted: str) -> str:
    if table:
        if table not in tables:
            raise ValidationError(
                source,
                [
                    Problem(
                        "table",
                        None,
                        f"has no table '{table}' (tables: {', '.join(tables)})",
                        "Pass one of the listed tables.",
                    )
                ],
            )
        return table
    if wanted in tables:
        return wanted
    if len(tables) == 1:
        return tables[0]
    raise ValidationError(
        source,
        [
            Problem(
                "table",
                None,
                f"holds {len(tables)} tables ({', '.join(tables) or 'none'})",
                f"Name one with --table NAME (table=\"NAME\" in Python), or call it '{wanted}'.",
            )
        ],
    )


def _read_duckdb(path: Path, table: str | None, query: str | None, wanted: str = "snapshots") -> pl.DataFrame:
    import duckdb  # DuckDB is loaded only for DuckDB files and the DuckDB engine

    with duckdb.connect(str(path), read_only=True) as con:
        if query is None:
            tables = [r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()]
            query = f'select * from "{_pick_table(tables, table, str(path), wanted)}"'
        return cast(pl.DataFrame, con.sql(query).pl())


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
        import sqlalchemy  # optional: only SQL URIs of other databases need SQLAlchemy
    except ImportError as exc:
        raise ValidationError(
            uri.split("@")[-1],
            [
                Problem(
                    "driver",
                    None,
                    f"reading '{scheme}://' URIs needs SQLAlchemy and the database driver",
                    "pip install sqlalchemy and the driver (e.g. psycopg for PostgreSQL), or export the table to Parquet.",
                )
            ],
        ) from exc
    engine = sqlalchemy.create_engine(uri)
    with engine.connect() as con:
        return pl.read_database(query or f'select * from "{table or "snapshots"}"', connection=con)


# ------------------------------------------------------------------ typing text columns
def _example_rows(
    frame: pl.DataFrame, mask: pl.Expr, column: str | None, offset: int
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    hits = frame.filter(mask).head(MAX_EXAMPLES)
    rows = tuple(int(r) + offset for r in hits[_ROW])
    if column is None:
        return rows, ()
    return rows, tuple(repr(v) if isinstance(v, str) else str(v) for v in hits[column].to_list())


def _text_to_date(col: pl.Expr, timezone: str | None) -> pl.Expr:
    """YYYY-MM-DD (optionally with a midnight time) -> date; with ``timezone``, also timestamps with an offset."""
    plain = col.str.extract(_MIDNIGHT_DATE, 1).str.to_date("%Y-%m-%d", strict=False)
    if timezone is None:
        return plain
    aware = (
        pl.when(col.str.contains(_TZ_SUFFIX))
        .then(col.str.replace(r"\s+(Z|[+-])", "$1").str.to_datetime(strict=False, time_zone="UTC", time_unit="us"))
        .dt.convert_time_zone(timezone)
        .dt.date()
    )
    return pl.coalesce(plain, aware)


def _timezone_problem(n: int, column: str, rows: tuple[int, ...], ex: tuple[str, ...]) -> Problem:
    return Problem(
        "timezone",
        column,
        f"{n} value(s) are timestamps with a time zone; the date depends on the zone",
        "Say in which zone a day is counted: --timezone UTC (or e.g. Europe/Berlin) on the command line, "
        'timezone="UTC" in Python.',
        rows,
        ex,
    )


NUMERIC_SHARE = 0.5  # a text column is numeric when at least this share of its filled cells are numbers


def text_column_kinds(frame: pl.DataFrame | pl.LazyFrame, date_columns: Iterable[str] = ("as_of",)) -> dict[str, str]:
    """How :func:`read_snapshots` types each text column: ``date``, ``number`` or ``text``.

    Decided on the whole table in one aggregate query, so a table read in parts types every
    part alike (pass the result as ``kinds`` to ``_type_text_columns``).
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
            exprs += [
                (col.is_not_null() & (col != "")).sum().alias(f"f{i}"),
                col.cast(pl.Float64, strict=False).is_not_null().sum().alias(f"n{i}"),
            ]
        counts = lf.select(exprs).collect(engine="streaming").row(0)
        for i, name in enumerate(counted):
            n_filled, n_numeric = counts[2 * i], counts[2 * i + 1]
            if n_filled and n_numeric / n_filled >= NUMERIC_SHARE:
                kinds[name] = "number"
    return kinds


def _type_text_columns(
    frame: pl.DataFrame,
    date_columns: Iterable[str],
    offset: int,
    timezone: str | None = None,
    kinds: dict[str, str] | None = None,
) -> tuple[pl.DataFrame, list[Problem]]:
    """Give text columns their types: dates where the column is a date, numbers where it is numeric.

    A column is numeric when at least half of its filled cells parse as numbers; the cells that do
    not are reported rather than turned into nulls. ``kinds`` (from :func:`text_column_kinds`)
    decides the numeric columns instead of this frame's own cells.
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
            parsed = _text_to_date(col, timezone)
            bad = filled & parsed.is_null()
            aware = bad & col.str.contains(_TZ_SUFFIX)
            if timezone is None and frame.select(aware.any()).item():
                rows, ex = _example_rows(frame, aware, name, offset)
                problems.append(_timezone_problem(frame.select(aware.sum()).item(), name, rows, ex))
                bad = bad & ~aware
            if frame.select(bad.any()).item():
                rows, ex = _example_rows(frame, bad, name, offset)
                n = frame.select(bad.sum()).item()
                problems.append(
                    Problem(
                        "unparseable_date",
                        name,
                        f"{n} value{'s' * (n != 1)} not a date in YYYY-MM-DD form",
                        "Write dates as YYYY-MM-DD (e.g. 2026-03-02), without a time of day; leave the "
                        "cell empty when unknown.",
                        rows,
                        ex,
                    )
                )
            casts.append(pl.when(filled).then(parsed).alias(name))
            continue
        lower = col.str.to_lowercase()
        n_filled, n_word, n_yes_no = frame.select(
            filled.sum().alias("f"),
            (filled & lower.is_in(list(_WORDS))).sum().alias("w"),
            (filled & lower.is_in(list(TRUE_WORDS | FALSE_WORDS))).sum().alias("b"),
        ).row(0)
        if n_word and n_yes_no / n_filled >= _BOOLEAN_SHARE:
            bad = filled & ~lower.is_in(list(TRUE_WORDS | FALSE_WORDS))
            if n_yes_no < n_filled:
                rows, ex = _example_rows(frame, bad, name, offset)
                odd = sorted(set(frame.filter(bad)[name].drop_nulls().str.strip_chars().to_list()))[:MAX_EXAMPLES]
                problems.append(
                    Problem(
                        "not_boolean",
                        name,
                        f"{n_filled - n_yes_no} value(s) in a yes/no column cannot be read as yes "
                        f"or no: {', '.join(repr(v) for v in odd)}",
                        "Write Yes/No, True/False, Y/N or 1/0; leave the cell empty when unknown.",
                        rows,
                        ex,
                    )
                )
            casts.append(
                pl.when(filled & lower.is_in(list(TRUE_WORDS)))
                .then(pl.lit(True))
                .when(filled & lower.is_in(list(FALSE_WORDS)))
                .then(pl.lit(False))
                .otherwise(pl.lit(None, pl.Boolean))
                .alias(name)
            )
            continue
        number = col.cast(pl.Float64, strict=False)
        n_filled, n_numeric = frame.select(filled.sum().alias("f"), number.is_not_null().sum().alias("n")).row(0)
        numeric = (
            kinds.get(name) == "number"
            if kinds is not None
            else bool(n_filled) and n_numeric / n_filled >= NUMERIC_SHARE
        )
        if numeric:
            bad = filled & number.is_null()
            if n_numeric < n_filled:
                rows, ex = _example_rows(frame, bad, name, offset)
                values = frame.filter(bad).select(col.unique().sort().head(MAX_EXAMPLES)).to_series().to_list()
                problems.append(
                    Problem(
                        "not_numeric",
                        name,
                        f"{n_filled - n_numeric} value(s) in a numeric column are not numbers "
                        f"(values such as {', '.join(map(repr, values))})",
                        "Write plain numbers with a dot for decimals (0.3, not 30% or 0,3; 1 or 0, not "
                        "TRUE/FALSE); leave the cell empty for 'not measured' (empty is N/A, never zero).",
                        rows,
                        ex,
                    )
                )
            casts.append(pl.when(filled).then(number).alias(name))
        else:
            casts.append(pl.when(filled).then(col).alias(name))
    return (frame.with_columns(casts) if casts else frame), problems


def _typed_dates(
    frame: pl.DataFrame, column: str, timezone: str | None, offset: int
) -> tuple[pl.DataFrame, list[Problem]]:
    """A Datetime ``column`` (Parquet, DuckDB, a frame) as dates; time-zone-aware ones need ``timezone``."""
    dtype = frame.schema.get(column)
    if not isinstance(dtype, pl.Datetime):
        return frame, []
    if dtype.time_zone is not None:
        if timezone is None:
            rows, ex = _example_rows(frame, pl.col(column).is_not_null(), column, offset)
            n = frame.select(pl.col(column).is_not_null().sum()).item()
            return frame, [_timezone_problem(n, column, rows, ex)]
        return frame.with_columns(pl.col(column).dt.convert_time_zone(timezone).dt.date()), []
    return frame.with_columns(pl.col(column).dt.date()), []


# ------------------------------------------------------------------ validation (pure)
def _nonnegative_columns(frame: pl.DataFrame, nonnegative: Iterable[str] | None) -> list[str]:
    numeric = [n for n, t in frame.schema.items() if t.is_numeric() and n != _ROW]
    if nonnegative is not None:
        return [n for n in nonnegative if n in numeric]
    # columns a score frame derives (driver changes, score changes) can be negative
    derived = ("drv_", "drvchg_", "score_change_", "cat_", "sub_", "override_")
    return [
        n for n in numeric if (n in KNOWN_NONNEGATIVE or _NONNEGATIVE_PATTERN.search(n)) and not n.startswith(derived)
    ]


def _missing_columns(frame: pl.DataFrame, required: Sequence[str]) -> list[Problem]:
    problems = []
    for name in required:
        if name not in frame.columns:
            close = difflib.get_close_matches(name, frame.columns, n=1, cutoff=0.6)
            hint = f" Did you mean '{close[0]}'? Rename it." if close else ""
            problems.append(
                Problem(
                    "missing_column",
                    name,
                    "required column is missing",
                    f"Add a '{name}' column.{hint} Columns present: {', '.join(frame.columns[:15])}.",
                )
            )
    return problems


def validate_snapshots(
    frame: pl.DataFrame,
    *,
    source: str = "snapshots",
    today: dt.date | None = None,
    nonnegative: Iterable[str] | None = None,
    row_offset: int = 1,
    timezone: str | None = None,
    _prior: Sequence[Problem] = (),
) -> list[Problem]:
    """Check a typed snapshot frame and return its problems (empty when clean).

    ``nonnegative`` names the columns that cannot be negative; by default the known metric names
    and count-like names (``*_count``, ``*_days``, ``*_users``, ...). Problems with
    ``severity == "warning"`` (implausible dates) do not stop the table from being used.
    """
    problems = list(_prior)
    if _ROW not in frame.columns:
        frame = frame.with_row_index(_ROW)
    if frame.height == 0:
        return problems + [
            Problem("empty", None, "has no rows", "Export the snapshots again; the file holds only a header.")
        ]
    problems += _missing_columns(frame, KEYS)
    if any(p.check == "missing_column" for p in problems):
        return problems
    today = today or dt.date.today()

    def ex(mask: pl.Expr, col: str | None = None) -> tuple[tuple[int, ...], tuple[str, ...]]:
        return _example_rows(frame, mask, col, row_offset)

    if isinstance(frame.schema["as_of"], pl.Datetime):
        frame, tz_problems = _typed_dates(frame, "as_of", timezone, row_offset)
        if tz_problems:
            return problems + tz_problems
    if frame.schema["as_of"] not in (pl.Date,) and not any(p.column == "as_of" for p in problems):
        problems.append(
            Problem(
                "type",
                "as_of",
                f"has type {frame.schema['as_of']}, expected dates",
                "Store as_of as a date (YYYY-MM-DD).",
            )
        )
        return problems

    for key in KEYS:
        mask = pl.col(key).is_null() | (pl.col(key).cast(pl.String).str.strip_chars() == "")
        n = frame.select(mask.sum()).item()
        if n and not any(p.column == key and p.check == "unparseable_date" for p in problems):
            rows, _ = ex(mask)
            problems.append(
                Problem(
                    "null_key", key, f"{n} row(s) have no {key}", f"Every row needs an {key}; fill or drop them.", rows
                )
            )

    if frame.schema["account_id"] == pl.String:
        padded = pl.col("account_id") != pl.col("account_id").str.strip_chars()
        n = frame.select(padded.sum()).item()
        if n:
            rows, exs = ex(padded, "account_id")
            problems.append(
                Problem(
                    "whitespace_id",
                    "account_id",
                    f"{n} id(s) have spaces before or after them, so 'A1 ' and 'A1' would count as two accounts",
                    "Trim the spaces in the export (e.g. TRIM() in the query or the spreadsheet).",
                    rows,
                    exs,
                )
            )

    dup = pl.struct(KEYS).is_duplicated() & pl.col("as_of").is_not_null() & pl.col("account_id").is_not_null()
    n = frame.select(dup.sum()).item()
    if n:
        rows, _ = ex(dup)
        first = frame.filter(dup).row(0, named=True)
        problems.append(
            Problem(
                "duplicate_key",
                None,
                f"{n} rows share an (account_id, as_of) pair with another row, e.g. "
                f"({first['account_id']!r}, {first['as_of']})",
                "Keep one row per account per as_of date (aggregate or drop the repeats).",
                rows,
            )
        )

    future = pl.col("as_of") > pl.lit(today)
    n = frame.select(future.sum()).item()
    if n:
        rows, exs = ex(future, "as_of")
        problems.append(
            Problem(
                "future_date",
                "as_of",
                f"{n} row(s) dated after today ({today})",
                "Snapshots describe the past: fix the dates or the system clock of the export.",
                rows,
                exs,
            )
        )

    early = pl.col("as_of") < pl.lit(EARLIEST_PLAUSIBLE)
    n = frame.select(early.sum()).item()
    if n:
        rows, exs = ex(early, "as_of")
        problems.append(
            Problem(
                "implausible_date",
                "as_of",
                f"{n} row(s) dated before {EARLIEST_PLAUSIBLE}",
                "Dates such as 1900-01-01 or 1970-01-01 are usually an empty cell written as a zero "
                "date: fix them in the export.",
                rows,
                exs,
                "warning",
            )
        )
    latest = dt.date(today.year + 50, 1, 1)
    for name, dtype in frame.schema.items():
        if name in (_ROW, "as_of") or dtype != pl.Date:
            continue
        odd = (pl.col(name) < pl.lit(EARLIEST_PLAUSIBLE)) | (pl.col(name) >= pl.lit(latest))
        n = frame.select(odd.sum()).item()
        if n:
            rows, exs = ex(odd, name)
            problems.append(
                Problem(
                    "implausible_date",
                    name,
                    f"{n} value(s) before {EARLIEST_PLAUSIBLE} or after {latest.year - 1}",
                    "Zero dates (1900-01-01) and placeholders (9999-12-31) "
                    "usually stand for 'unknown': leave the cell empty instead.",
                    rows,
                    exs,
                    "warning",
                )
            )

    for name, dtype in frame.schema.items():
        if name == _ROW or not dtype.is_float():
            continue
        bad = pl.col(name).is_infinite() | pl.col(name).is_nan()
        n = frame.select(bad.sum()).item()
        if n:
            rows, exs = ex(bad, name)
            problems.append(
                Problem(
                    "not_finite",
                    name,
                    f"{n} value(s) are infinite or NaN",
                    "Replace them with a real value, or leave the cell empty for 'not measured'.",
                    rows,
                    exs,
                )
            )

    for name in _nonnegative_columns(frame, nonnegative):
        neg = pl.col(name) < 0
        n = frame.select(neg.sum()).item()
        if n:
            rows, exs = ex(neg, name)
            problems.append(
                Problem(
                    "negative",
                    name,
                    f"{n} negative value(s) where none are possible",
                    "Correct the export; leave the cell empty for 'not measured' (never a negative code).",
                    rows,
                    exs,
                )
            )
    return problems


def _finish(frame: pl.DataFrame, problems: list[Problem], source: str, label: str, sort: Sequence[str]) -> pl.DataFrame:
    errors = [p for p in problems if p.severity != "warning"]
    if errors:
        raise ValidationError(source, errors, label)
    warn_problems(source, [p for p in problems if p.severity == "warning"], label)
    return frame.drop(_ROW).sort(list(sort))


def warn_problems(source: str, problems: Sequence[Problem], row_label: str = "row") -> None:
    """Issue each warning-level problem as a :class:`~healthscore.errors.DataWarning`."""
    for p in problems:
        warnings.warn(DataWarning(f"{source}: {p.render(row_label)}"), stacklevel=3)


def map_columns(frame: pl.DataFrame, columns: Mapping[str, str] | None, *, source: str = "snapshots") -> pl.DataFrame:
    """Rename the table's own column names to the roles healthscore reads (``{"account_id": "customerID"}``).

    A mapped column that is missing is an error naming the columns present.

    >>> import polars as pl
    >>> map_columns(pl.DataFrame({"customerID": ["a"], "x": [1]}), {"account_id": "customerID"}).columns
    ['account_id', 'x']
    """
    if not columns:
        return frame
    problems = []
    for role, column in columns.items():
        if column not in frame.columns:
            close = difflib.get_close_matches(column, frame.columns, n=1, cutoff=0.6)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            problems.append(
                Problem(
                    "missing_column",
                    column,
                    f"is mapped to {role} but is not a column",
                    f"Map {role} to one of: {', '.join(frame.columns[:30])}.{hint}",
                )
            )
        elif role != column and role in frame.columns and role not in columns.values():
            problems.append(
                Problem(
                    "mapped_twice",
                    role,
                    f"exists and '{column}' is also mapped to it",
                    f"Drop or rename the '{role}' column, or map {role} to it.",
                )
            )
    if problems:
        raise ValidationError(source, problems)
    return frame.rename({column: role for role, column in columns.items() if column != role})


def read_snapshots(
    source: str | os.PathLike[str] | pl.DataFrame,
    *,
    table: str | None = None,
    query: str | None = None,
    today: dt.date | None = None,
    nonnegative: Iterable[str] | None = None,
    sheet: str | None = None,
    timezone: str | None = None,
    columns: Mapping[str, str] | None = None,
    as_of: dt.date | str | None = None,
) -> pl.DataFrame:
    """Read snapshots from a file, URI or frame, validate them, and return them sorted by account and date.

    Raises :class:`ValidationError` listing every problem found; implausible values that can still be
    used are issued as :class:`~healthscore.errors.DataWarning`. ``sheet`` picks the sheet of an Excel
    workbook with several; ``timezone`` (e.g. ``"UTC"``) says in which zone a time-zone-aware ``as_of``
    falls on its day. ``columns`` maps the roles healthscore reads to the table's own names, e.g.
    ``{"account_id": "customerID", "as_of": "date"}``. ``as_of`` supplies the date of a table that has
    no ``as_of`` column (a one-row-per-customer extract taken on that day). Yes/No, True/False, Y/N
    (and 1/0 alongside them) text columns are read as Booleans.

    >>> import polars as pl, datetime as dt
    >>> read_snapshots(pl.DataFrame({"account_id": ["b", "a"], "as_of": [dt.date(2026, 1, 5)] * 2})).get_column("account_id").to_list()
    ['a', 'b']
    >>> read_snapshots(pl.DataFrame({"customerID": ["a"], "Partner": ["Yes"]}), columns={"account_id": "customerID"},
    ...                as_of="2026-01-05").row(0)
    ('a', datetime.date(2026, 1, 5), True)
    """
    _check_timezone(timezone)
    if isinstance(source, pl.DataFrame):
        name, raw, all_text = "snapshots", source, False
    else:
        name = str(source).split("@")[-1]  # never echo credentials of a URI
        raw, all_text = _read_raw(source, table, query, sheet)
    raw = map_columns(raw, columns, source=name)
    if as_of is not None and "as_of" not in raw.columns:
        day = dt.date.fromisoformat(as_of) if isinstance(as_of, str) else as_of
        raw = raw.insert_column(min(1, raw.width), pl.lit(day, pl.Date).alias("as_of"))
    label, offset = _row_label(name)
    frame = raw.with_row_index(_ROW)
    prior: list[Problem] = []
    if all_text or any(t == pl.String for c, t in raw.schema.items() if c != "account_id"):
        frame, prior = _type_text_columns(frame, ["as_of"], offset, timezone)
    if "account_id" in frame.columns and frame.schema["account_id"] != pl.String:
        frame = frame.with_columns(pl.col("account_id").cast(pl.String))
    problems = validate_snapshots(
        frame, source=name, today=today, nonnegative=nonnegative, row_offset=offset, timezone=timezone, _prior=prior
    )
    if "as_of" in frame.columns and isinstance(frame.schema["as_of"], pl.Datetime):
        frame, _ = _typed_dates(frame, "as_of", timezone, offset)
    return _finish(frame, problems, name, label, KEYS)


def _check_timezone(timezone: str | None) -> None:
    if timezone is None:
        return
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            "timezone",
            [
                Problem(
                    "timezone",
                    None,
                    f"{timezone!r} is not a known time zone",
                    "Use a name such as UTC, Europe/Berlin or America/New_York.",
                )
            ],
        ) from None


def read_events(
    source: str | os.PathLike[str] | pl.DataFrame,
    *,
    table: str | None = None,
    query: str | None = None,
    sheet: str | None = None,
    timezone: str | None = None,
    today: dt.date | None = None,
    columns: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """Read and validate the outcome events table (``account_id, date, event[, details]``).

    >>> import polars as pl, datetime as dt
    >>> read_events(pl.DataFrame({"account_id": ["a"], "date": [dt.date(2026, 2, 1)], "event": ["churned"]})).columns
    ['account_id', 'date', 'event']
    """
    _check_timezone(timezone)
    if isinstance(source, pl.DataFrame):
        name, raw, all_text = "events", source, False
    else:
        name = str(source).split("@")[-1]
        if str(source).lower().endswith((".duckdb", ".ddb")) and table is None and query is None:
            table = "events"
        raw, all_text = _read_raw(source, table, query, sheet, wanted="events")
    # only the event table's own roles; a mapping shared with the snapshots names other columns too
    raw = map_columns(
        raw, {r: c for r, c in (columns or {}).items() if r in EVENT_COLUMNS and c in raw.columns}, source=name
    )
    label, offset = _row_label(name)
    frame = raw.with_row_index(_ROW)
    problems: list[Problem] = []
    if all_text or any(t == pl.String for c, t in raw.schema.items() if c in ("date",)):
        typed, problems = _type_text_columns(
            frame.select(_ROW, *[c for c in ("date",) if c in frame.columns]), ["date"], offset, timezone
        )
        frame = frame.with_columns(typed.drop(_ROW))
    if frame.height == 0:
        problems.append(Problem("empty", None, "has no rows", "Export the events again; the file holds only a header."))
    problems += _missing_columns(frame, EVENT_COLUMNS)
    if not problems and isinstance(frame.schema["date"], pl.Datetime):
        frame, tz_problems = _typed_dates(frame, "date", timezone, offset)
        problems += tz_problems
    if not problems and frame.schema["date"] != pl.Date:
        problems.append(
            Problem(
                "type",
                "date",
                f"has type {frame.schema['date']}, expected dates",
                "Store the event date as a date (YYYY-MM-DD).",
            )
        )
    if not problems:
        frame = frame.with_columns(pl.col("account_id").cast(pl.String), pl.col("event").cast(pl.String))
        for col in EVENT_COLUMNS:
            mask = pl.col(col).is_null()
            n = frame.select(mask.sum()).item()
            if n:
                rows, _ = _example_rows(frame, mask, None, offset)
                problems.append(
                    Problem("null_value", col, f"{n} event(s) without {col}", f"Fill in {col} for every event.", rows)
                )
        padded = pl.col("account_id") != pl.col("account_id").str.strip_chars()
        n = frame.select(padded.sum()).item()
        if n:
            rows, exs = _example_rows(frame, padded, "account_id", offset)
            problems.append(
                Problem(
                    "whitespace_id",
                    "account_id",
                    f"{n} id(s) have spaces before or after them",
                    "Trim the spaces in the export, so the ids match the snapshots.",
                    rows,
                    exs,
                )
            )
        today = today or dt.date.today()
        odd = (pl.col("date") < pl.lit(EARLIEST_PLAUSIBLE)) | (pl.col("date") > pl.lit(today + dt.timedelta(days=366)))
        n = frame.select(odd.sum()).item()
        if n:
            rows, exs = _example_rows(frame, odd, "date", offset)
            problems.append(
                Problem(
                    "implausible_date",
                    "date",
                    f"{n} event(s) dated before {EARLIEST_PLAUSIBLE} or more than a year after today",
                    "Fix the dates in the export; placeholder dates such as 2099-12-31 are not events.",
                    rows,
                    exs,
                    "warning",
                )
            )
    return _finish(frame, problems, name, label, ("account_id", "date", "event"))


def check_events(
    events: pl.DataFrame, snapshots: pl.DataFrame, *, terminal: Iterable[str] = ("churned",), source: str = "events"
) -> list[Problem]:
    """Warnings about events that do not fit the snapshots (all of severity ``warning``).

    Events of accounts with no snapshot, events dated before the account's first snapshot, and a
    terminal event (``churned`` by default) recorded twice for one account.

    >>> import polars as pl, datetime as dt
    >>> snaps = pl.DataFrame({"account_id": ["a"], "as_of": [dt.date(2026, 1, 5)]})
    >>> ev = pl.DataFrame({"account_id": ["a", "zz"], "date": [dt.date(2025, 1, 1), dt.date(2026, 2, 1)],
    ...                    "event": ["churned", "churned"]})
    >>> [p.check for p in check_events(ev, snaps)]
    ['unknown_account', 'before_first_snapshot']
    """
    out: list[Problem] = []
    ev = events.select("account_id", "date", "event").with_row_index("__i", offset=1)
    first = snapshots.group_by("account_id").agg(pl.col("as_of").min().alias("__first"))
    joined = ev.join(first, on="account_id", how="left").sort("__i")

    def add(mask: pl.Expr, check: str, message: str, fix: str) -> None:
        hits = joined.filter(mask)
        if hits.height:
            head = hits.head(MAX_EXAMPLES)
            ex = tuple(f"{a} {e} {d}" for a, e, d in head.select("account_id", "event", "date").rows())
            out.append(
                Problem(
                    check, "account_id", message.format(n=hits.height), fix, tuple(head["__i"].to_list()), ex, "warning"
                )
            )

    add(
        pl.col("__first").is_null(),
        "unknown_account",
        "{n} event(s) of accounts that have no snapshot",
        "Check the two exports cover the same accounts and use the same ids; these events are ignored.",
    )
    add(
        pl.col("date") < pl.col("__first"),
        "before_first_snapshot",
        "{n} event(s) dated before the account's first snapshot",
        "Check the dates; events before the snapshots began cannot be predicted and are ignored.",
    )
    terminal = list(terminal)
    repeated = pl.col("event").is_in(terminal) & (pl.col("__i") != pl.col("__i").min().over("account_id", "event"))
    add(
        repeated,
        "repeated_terminal",
        "{n} repeated ending event(s) (" + ", ".join(terminal) + ") of one account",
        "An account ends once: keep the first record, or record a return as a separate event.",
    )
    return out


def describe(frame: pl.DataFrame) -> str:
    """A short plain-text summary of a validated snapshot frame (rows, accounts, dates, metric coverage)."""
    numeric = [n for n, t in frame.schema.items() if t.is_numeric()]
    first, last = frame.select(pl.col("as_of").min().alias("a"), pl.col("as_of").max().alias("b")).row(0)
    lines = [f"{frame.height:,} snapshots of {frame['account_id'].n_unique():,} accounts, {first} to {last}"]
    if numeric:
        filled = frame.select([(1 - pl.col(c).null_count() / pl.len()).alias(c) for c in numeric]).row(0, named=True)
        lines.append("numeric columns (share filled): " + ", ".join(f"{c} {v:.0%}" for c, v in filled.items()))
    return "\n".join(lines)
