"""Reading raw tables for the builder, and running generated SQL on DuckDB.

Two sides:

* polars: :func:`scan_table` gives a lazy frame over a Parquet or CSV file (read in place, in
  batches); a DuckDB or SQLite table is read through DuckDB / sqlite3 into memory.
* Spark: :class:`SparkBuildSession` does the same on a Spark session (files read by Spark, the
  trees rendered as Spark SQL), so the builder's DuckDB steps run unchanged on a cluster.
* DuckDB: :class:`DuckDBSession` opens an in-memory DuckDB that spills to a private temporary
  folder (out of core), turns each raw table into a sqlglot relation that reads the file in place
  (``read_parquet``, ``read_csv``, an attached DuckDB file), registers small polars frames, and runs
  sqlglot expression trees, returning polars frames.

CSV files are read as text on both sides, so a bad cell is reported by the builder rather than
guessed by a reader.

>>> s = DuckDBSession()
>>> s.run(exp.select(exp.Literal.number(1).as_("x"))).to_dicts()
[{'x': 1}]
>>> s.close()
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any, cast

import duckdb
import polars as pl
import pyarrow as pa
from sqlglot import exp

from healthscore.errors import HealthscoreError

__all__ = ["SourceError", "scan_table", "read_table", "DuckDBSession", "SparkBuildSession", "table_names"]


class SourceError(HealthscoreError, ValueError):
    """A raw table that cannot be read (missing file, unknown table, unreadable content)."""


def _kind(path: Path) -> str:
    s = path.suffix.lower()
    return {
        ".parquet": "parquet",
        ".pq": "parquet",
        ".csv": "csv",
        ".tsv": "csv",
        ".txt": "csv",
        ".duckdb": "duckdb",
        ".ddb": "duckdb",
        ".db": "sqlite",
        ".sqlite": "sqlite",
        ".sqlite3": "sqlite",
    }.get(s, "unknown")


def _exists(path: Path, what: str) -> None:
    if not path.exists():
        raise SourceError(
            f"{path}: no such file ({what}). Fix the path in [source] of the metric spec "
            "(relative paths start at the spec's folder)."
        )


def table_names(path: Path) -> list[str]:
    """Tables of a DuckDB or SQLite file."""
    if _kind(path) == "duckdb":
        with duckdb.connect(str(path), read_only=True) as con:
            return [r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()]
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[0] for r in db.execute("select name from sqlite_master where type = 'table'").fetchall()]
    finally:
        db.close()


def _pick(path: Path, table: str | None, wanted: str) -> str:
    tables = table_names(path)
    if table:
        if table not in tables:
            raise SourceError(
                f"{path}: has no table {table!r} (tables: {', '.join(tables) or 'none'}); fix table = ... in [source]"
            )
        return table
    if wanted in tables:
        return wanted
    if len(tables) == 1:
        return tables[0]
    raise SourceError(
        f"{path}: holds {len(tables)} tables ({', '.join(tables) or 'none'}); name one in [source] "
        f'as {{ path = "{path.name}", table = "..." }}'
    )


def _read_sqlite_arrow(path: Path, table: str) -> pa.Table:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cur = con.execute(f'select * from "{table.replace(chr(34), chr(34) * 2)}"')
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
    finally:
        con.close()
    return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None).to_arrow()


def scan_table(path: Path, table: str | None = None, *, wanted: str = "events") -> pl.LazyFrame:
    """A lazy frame over a raw table; CSV columns are text."""
    _exists(path, wanted)
    kind = _kind(path)
    if kind == "parquet":
        return pl.scan_parquet(path)
    if kind == "csv":
        sep = "\t" if path.suffix.lower() == ".tsv" else ","
        return pl.scan_csv(path, infer_schema=False, separator=sep)
    if kind == "duckdb":
        name = _pick(path, table, wanted)
        with duckdb.connect(str(path), read_only=True) as con:
            return pl.from_arrow(con.sql(f'select * from "{name}"').to_arrow_table()).lazy()  # type: ignore[union-attr]
    if kind == "sqlite":
        return pl.from_arrow(_read_sqlite_arrow(path, _pick(path, table, wanted))).lazy()  # type: ignore[union-attr]
    raise SourceError(f"{path}: unknown file type '{path.suffix}'; use .parquet, .csv, .duckdb or .sqlite")


def read_table(path: Path, table: str | None = None, *, wanted: str = "subscriptions") -> pl.DataFrame:
    """A whole raw table in memory (subscriptions and accounts are small)."""
    return scan_table(path, table, wanted=wanted).collect()


class DuckDBSession:
    """An in-memory DuckDB connection that spills to its own temporary folder; close() removes it."""

    def __init__(self, *, threads: int | None = None, memory_limit: str | None = None) -> None:
        self._tmp = tempfile.mkdtemp(prefix="healthscore-duckdb-")
        self.con = duckdb.connect()
        self.con.execute(f"set temp_directory = '{self._tmp}'")
        self.con.execute("set preserve_insertion_order = false")
        if threads:
            self.con.execute(f"set threads = {int(threads)}")
        if memory_limit:
            self.con.execute(f"set memory_limit = '{memory_limit.replace(chr(39), '')}'")
        self._attached: dict[Path, str] = {}
        self._n = 0

    def relation(self, path: Path, table: str | None = None, *, wanted: str = "events") -> exp.Expression:
        """A sqlglot relation that reads the raw table in place (SQLite tables are copied in)."""
        _exists(path, wanted)
        kind = _kind(path)
        lit = exp.Literal.string(str(path))
        if kind == "parquet":
            return exp.Table(this=exp.Anonymous(this="read_parquet", expressions=[lit]))
        if kind == "csv":
            args: list[exp.Expression] = [
                lit,
                exp.EQ(this=exp.column("all_varchar"), expression=exp.true()),
                exp.EQ(this=exp.column("header"), expression=exp.true()),
            ]
            if path.suffix.lower() == ".tsv":
                args.append(exp.EQ(this=exp.column("delim"), expression=exp.Literal.string("\t")))
            return exp.Table(this=exp.Anonymous(this="read_csv", expressions=args))
        if kind == "duckdb":
            name = _pick(path, table, wanted)
            if path not in self._attached:
                alias = f"src{len(self._attached)}"
                self.con.execute(f"attach '{str(path).replace(chr(39), chr(39) * 2)}' as {alias} (read_only)")
                self._attached[path] = alias
            return exp.table_(name, db="main", catalog=self._attached[path], quoted=True)
        if kind == "sqlite":
            return self.register(pl.from_arrow(_read_sqlite_arrow(path, _pick(path, table, wanted))), wanted)  # type: ignore[arg-type]
        raise SourceError(f"{path}: unknown file type '{path.suffix}'; use .parquet, .csv, .duckdb or .sqlite")

    def register(self, frame: pl.DataFrame, name: str) -> exp.Table:
        """Make a polars frame visible to SQL under a fresh name; returns the table expression."""
        self._n += 1
        view = f"hs_{name}_{self._n}"
        self.con.register(view, frame.to_arrow())
        return exp.to_table(view)

    def split(self, query: exp.Select, key: str, parts: int, columns: list[str]) -> list[exp.Expression]:
        """Write ``query``'s rows once, in one pass, into a Parquet folder per value of its column
        ``key`` (0 .. parts - 1) under this session's temporary folder; returns a relation of
        ``columns`` for each part, named ``events`` (an empty part reads as no rows)."""
        folder = Path(self._tmp) / f"split{self._n}"
        self._n += 1
        try:
            self.con.sql(query.sql("duckdb")).write_parquet(str(folder), partition_by=[key])
        except duckdb.Error as exc:
            raise SourceError(f"DuckDB could not split the event log by account: {exc}") from None
        out: list[exp.Expression] = []
        for k in range(parts):
            where = folder / f"{key}={k}"
            if not where.is_dir():
                out.append(exp.select(*columns).from_(query.subquery("q")).where(exp.false()).subquery("events"))
                continue
            files = exp.Anonymous(this="read_parquet", expressions=[exp.Literal.string(str(where / "*.parquet"))])
            out.append(exp.select(*columns).from_(exp.Table(this=files)).subquery("events"))
        return out

    def schema(self, relation: exp.Expression) -> dict[str, str]:
        """Column name -> DuckDB type of a relation."""
        q = exp.select("*").from_(relation).limit(0)
        rel = self.con.sql(q.sql("duckdb"))
        return {n: str(t) for n, t in zip(rel.columns, rel.types)}

    def run(self, query: exp.Expression) -> pl.DataFrame:
        """Run a sqlglot expression tree and return the result as a polars frame."""
        try:
            return cast(pl.DataFrame, self.con.sql(query.sql("duckdb")).pl())
        except duckdb.OutOfMemoryException:
            limit = self.con.execute("select current_setting('memory_limit')").fetchone()
            raise SourceError(
                f"DuckDB needed more memory than its limit ({limit[0] if limit else '?'}) allows for the build "
                "query. Raise it (--memory-limit), or build with the polars engine, which splits a large "
                "log by account"
            ) from None
        except duckdb.Error as exc:
            raise SourceError(
                f"DuckDB could not run the build query: {exc}. Check the column types of the raw "
                "tables; report it if they are right."
            ) from exc

    def close(self) -> None:
        self.con.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> DuckDBSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Spark type names as the builder's checks spell them (DuckDB's names)
_SPARK_TYPES = {
    "string": "VARCHAR",
    "timestamp": "TIMESTAMP WITH TIME ZONE",  # Spark's TIMESTAMP is an instant
    "timestamp_ntz": "TIMESTAMP",
    "date": "DATE",
    "double": "DOUBLE",
    "float": "FLOAT",
    "bigint": "BIGINT",
    "int": "INTEGER",
    "smallint": "SMALLINT",
    "tinyint": "TINYINT",
    "boolean": "BOOLEAN",
}


class SparkBuildSession:
    """The :class:`DuckDBSession` interface on a Spark session: raw Parquet and CSV files are read
    by Spark (in place, in parallel), small frames are registered as temporary views, and sqlglot
    trees run as Spark SQL. ``close()`` drops the views it made; the session stays open.

    Only Parquet and CSV sources: a DuckDB or SQLite file lives on one machine, so read it with
    the polars or DuckDB engine instead.
    """

    def __init__(self, session: object) -> None:
        self.spark: Any = session
        self._views: list[str] = []
        self._tmp = tempfile.mkdtemp(prefix="healthscore-spark-")

    def _view(self, frame: Any, name: str) -> exp.Table:
        view = f"hs_{name}_{len(self._views) + 1}"
        frame.createOrReplaceTempView(view)
        self._views.append(view)
        return exp.to_table(view)

    def relation(self, path: Path, table: str | None = None, *, wanted: str = "events") -> exp.Expression:
        """A view over the raw file, read by Spark (CSV as text, like the other engines)."""
        _exists(path, wanted)
        kind = _kind(path)
        if kind == "parquet":
            return self._view(self.spark.read.parquet(str(path)), wanted)
        if kind == "csv":
            sep = "\t" if path.suffix.lower() == ".tsv" else ","
            reader = self.spark.read.option("header", "true").option("inferSchema", "false").option("sep", sep)
            return self._view(reader.csv(str(path)), wanted)
        raise SourceError(
            f"{path}: the Spark engine reads Parquet and CSV files; for a {path.suffix} file use "
            "--engine polars or --engine duckdb (or export the table to Parquet)"
        )

    def register(self, frame: pl.DataFrame, name: str) -> exp.Table:
        """Make a polars frame visible to Spark SQL (through Parquet, so dates and doubles keep their bits)."""
        path = Path(self._tmp) / f"{name}_{len(self._views) + 1}.parquet"
        frame.write_parquet(path)
        return self._view(self.spark.read.parquet(str(path)), name)

    def schema(self, relation: exp.Expression) -> dict[str, str]:
        """Column name -> type, spelled as DuckDB spells it."""
        df = self.spark.sql(exp.select("*").from_(relation).limit(0).sql("spark"))
        return {
            f.name: _SPARK_TYPES.get(f.dataType.simpleString(), f.dataType.simpleString().upper()) for f in df.schema
        }

    def run(self, query: exp.Expression) -> pl.DataFrame:
        """Run a sqlglot expression tree as Spark SQL; the result comes back as a polars frame."""
        try:
            arrow = self.spark.sql(query.sql("spark")).toArrow()
        except Exception as exc:  # py4j and Spark analysis errors share no base class importable without pyspark
            raise SourceError(
                f"Spark could not run the build query: {str(exc).splitlines()[0]}. Check the column "
                "types of the raw tables; report it if they are right."
            ) from None
        return cast(pl.DataFrame, pl.from_arrow(arrow))

    def close(self) -> None:
        for view in self._views:
            self.spark.catalog.dropTempView(view)
        self._views.clear()
        shutil.rmtree(self._tmp, ignore_errors=True)
