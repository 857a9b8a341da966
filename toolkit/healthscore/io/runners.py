"""Run a query on another engine and read the answer back as a polars frame.

Three engines besides polars: DuckDB (in process), Spark (a session you pass, or a local one)
and PostgreSQL (a connection string). Each function takes the query text and the tables it reads
(name -> polars frame, or for Spark also a Spark DataFrame or the name of a table the session
already has), runs it where the data lives, and returns a polars frame in the query's row order.
Query generation lives in ``healthscore.core.sqlscore``; this module only connects and moves rows.

>>> import polars as pl
>>> run_duckdb("SELECT SUM(x) AS total FROM t", {"t": pl.DataFrame({"x": [1.5, 2.5]})})["total"].to_list()
[4.0]
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from healthscore.errors import HealthscoreError

__all__ = [
    "ENGINES",
    "EngineError",
    "run_duckdb",
    "run_duckdb_to_file",
    "run_spark",
    "run_spark_to_folder",
    "run_postgres",
    "spark_session",
]

ENGINES = ("polars", "duckdb", "spark", "postgres")


class EngineError(HealthscoreError):
    """An engine is missing, cannot be reached, or refused a query; the message says how to fix it."""


def run_duckdb(
    sql: str, tables: Mapping[str, pl.DataFrame | pl.LazyFrame], *, connection: duckdb.DuckDBPyConnection | None = None
) -> pl.DataFrame:
    """Run ``sql`` on DuckDB with ``tables`` registered as views (no copy); the result as polars.

    ``connection`` (optional) is a DuckDB connection whose own tables the query may also read,
    e.g. ``duckdb.connect("warehouse.duckdb")``.
    """
    con = connection if connection is not None else duckdb.connect()
    try:
        for name, frame in tables.items():
            data = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
            con.register(name, data.to_arrow())
        try:
            return pl.from_arrow(con.sql(sql).to_arrow_table())
        except duckdb.Error as exc:
            raise EngineError(f"DuckDB refused the query: {exc}") from None
    finally:
        for name in tables:
            con.unregister(name)
        if connection is None:
            con.close()


def run_duckdb_to_file(
    sql: str,
    tables: Mapping[str, str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    memory_limit: str | None = None,
) -> None:
    """Run ``sql`` on DuckDB over Parquet files read in place (view name -> path) and write the
    result to the Parquet file ``out``: no row passes through this process, and DuckDB spills to a
    temporary folder beyond ``memory_limit`` (e.g. ``"4GB"``), so both may be larger than memory.

    >>> import polars as pl, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); pl.DataFrame({"x": [1.5, 2.5]}).write_parquet(d / "t.parquet")
    >>> run_duckdb_to_file("SELECT SUM(x) AS total FROM t", {"t": d / "t.parquet"}, d / "out.parquet")
    >>> pl.read_parquet(d / "out.parquet")["total"].to_list()
    [4.0]
    """
    with tempfile.TemporaryDirectory(prefix="healthscore-duckdb-") as tmp:
        con = None
        try:
            settings = {"temp_directory": tmp, **({"memory_limit": memory_limit} if memory_limit else {})}
            con = duckdb.connect(config=settings)
            for name, path in tables.items():
                con.read_parquet(str(path)).create_view(name)
            con.sql(sql).write_parquet(str(out), compression="zstd")
        except duckdb.OutOfMemoryException:
            raise EngineError(
                f"DuckDB needed more memory than its limit ({memory_limit or 'default'}) allows; raise the limit"
            ) from None
        except duckdb.Error as exc:
            raise EngineError(f"DuckDB refused the query or its settings: {exc}") from None
        finally:
            if con is not None:
                con.close()


def run_spark_to_folder(
    sql: str, tables: Mapping[str, str | os.PathLike[str]], out: str | os.PathLike[str], *, session: Any = None
) -> None:
    """Run ``sql`` with Spark SQL over Parquet files or folders (view name -> path) and write the
    result to ``out`` as a folder of Parquet files, Spark's own way: the rows stay in Spark."""
    spark = session if session is not None else spark_session()
    for name, path in tables.items():
        spark.read.parquet(str(path)).createOrReplaceTempView(name)
    try:
        spark.sql(sql).write.mode("overwrite").parquet(str(out))
    except Exception as exc:  # py4j and Spark analysis errors share no base class importable without pyspark
        raise EngineError(f"Spark refused the query: {str(exc).splitlines()[0]}") from None
    finally:
        for name in tables:
            spark.catalog.dropTempView(name)


def spark_session(master: str = "local[2]", *, shuffle_partitions: int = 4, driver_memory: str = "4g") -> Any:
    """A Spark session for local work (``local[2]``: two cores, few shuffle partitions).

    ``driver_memory`` is the JVM heap of the driver, which in local mode also runs the tasks
    (Spark's own default, 1g, runs out at about a million snapshot rows); it takes effect only when
    no Spark JVM is running yet.

    Needs the ``spark`` extra (``pip install 'healthscore[spark]'``) and Java 17 or newer.
    """
    try:
        # pyspark is an optional, heavy dependency: imported only when Spark is asked for
        from pyspark.sql import SparkSession
    except ImportError:
        raise EngineError("Spark needs pyspark: pip install 'healthscore[spark]' (and Java 17 or newer)") from None
    return (
        SparkSession.builder.master(master)
        .appName("healthscore")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.driver.memory", driver_memory)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )


def run_spark(sql: str, tables: Mapping[str, Any], *, session: Any = None) -> pl.DataFrame:
    """Run ``sql`` with Spark SQL; ``tables`` maps view names to polars frames, Spark DataFrames,
    or names of tables the session has. The result comes back to the driver as Arrow, then polars.

    For data that does not fit one machine, pass Spark DataFrames and keep the result in Spark
    with ``session.sql(score_sql(model, dialect="spark"))`` instead of collecting it here.
    """
    spark = session if session is not None else spark_session()
    with tempfile.TemporaryDirectory(prefix="healthscore-spark-") as tmp:
        for name, frame in tables.items():
            if isinstance(frame, str):
                spark.table(frame).createOrReplaceTempView(name)
            elif isinstance(frame, (pl.DataFrame, pl.LazyFrame)):
                # through Parquet, so dates stay dates and every double keeps its bits
                path = Path(tmp) / f"{name}.parquet"
                (frame.collect() if isinstance(frame, pl.LazyFrame) else frame).write_parquet(path)
                spark.read.parquet(str(path)).createOrReplaceTempView(name)
            else:
                frame.createOrReplaceTempView(name)
        try:
            arrow = spark.sql(sql).toArrow()
        except Exception as exc:  # py4j and Spark analysis errors share no base class importable without pyspark
            raise EngineError(f"Spark refused the query: {str(exc).splitlines()[0]}") from None
        finally:
            for name in tables:
                spark.catalog.dropTempView(name)
    return pl.from_arrow(arrow)


_PG_TYPES = {
    pl.Float64: "DOUBLE PRECISION",
    pl.Float32: "REAL",
    pl.Int64: "BIGINT",
    pl.Int32: "INTEGER",
    pl.Int16: "SMALLINT",
    pl.Int8: "SMALLINT",
    pl.UInt8: "SMALLINT",
    pl.UInt16: "INTEGER",
    pl.UInt32: "BIGINT",
    pl.Boolean: "BOOLEAN",
    pl.String: "TEXT",
    pl.Date: "DATE",
    pl.Datetime: "TIMESTAMP",
}


def run_postgres(sql: str, tables: Mapping[str, pl.DataFrame], *, dsn: str) -> pl.DataFrame:
    """Load ``tables`` into temporary PostgreSQL tables (COPY), run ``sql``, read the answer back.

    ``dsn`` is a libpq connection string (``"host=127.0.0.1 port=5432 dbname=x user=y"``).
    Needs psycopg (``pip install 'psycopg[binary]'``).
    """
    try:
        # psycopg is optional: only PostgreSQL users need it
        import psycopg
        from psycopg import sql as pgsql  # optional dependency: loaded on first use
    except ImportError:
        raise EngineError("PostgreSQL needs psycopg: pip install 'psycopg[binary]'") from None
    try:
        conn = psycopg.connect(dsn)
    except psycopg.Error as exc:
        raise EngineError(f"cannot connect to PostgreSQL ({dsn}): {exc}") from None
    with conn:
        with conn.cursor() as cur:
            for name, frame in tables.items():
                cols = []
                for col, dtype in frame.schema.items():
                    pg = _PG_TYPES.get(dtype.base_type() if hasattr(dtype, "base_type") else dtype)
                    if pg is None:
                        raise EngineError(
                            f"table {name}: column {col!r} has type {dtype}, which this loader "
                            "cannot send to PostgreSQL; cast it to text, a number or a date"
                        )
                    cols.append(pgsql.SQL("{} {}").format(pgsql.Identifier(col), pgsql.SQL(pg)))
                cur.execute(
                    pgsql.SQL("CREATE TEMPORARY TABLE {} ({})").format(
                        pgsql.Identifier(name), pgsql.SQL(", ").join(cols)
                    )
                )
                buf = io.BytesIO()
                # floats written with the shortest text that reads back as the same double
                frame.write_csv(buf, include_header=False, null_value="\\N", float_precision=None)
                with cur.copy(
                    pgsql.SQL("COPY {} FROM STDIN WITH (FORMAT csv, NULL '\\N')").format(pgsql.Identifier(name))
                ) as copy:
                    copy.write(buf.getvalue())
            try:
                cur.execute(sql)
            except psycopg.Error as exc:
                raise EngineError(f"PostgreSQL refused the query: {str(exc).splitlines()[0]}") from None
            names = [d.name for d in cur.description]
            rows = cur.fetchall()
    return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)
