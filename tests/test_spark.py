"""The score on Spark (local mode, spark-dialect SQL) equals the polars engine on the bundled sample.

One SparkSession for the module (local[2], two shuffle partitions); `make test` provides Java.
"""

from __future__ import annotations

import shutil

import healthscore as hs
import polars as pl
import pytest
from healthscore.core.scoring import score
from healthscore.core.sqlscore import score_with

from tests.engine_checks import assert_same_scores

pyspark = pytest.importorskip("pyspark", reason="Spark tests need the spark extra: pip install 'healthscore[spark]'")
if shutil.which("java") is None:
    pytest.skip(
        "Spark needs Java 17 or newer: `make engines` installs Debian's openjdk-17-jre-headless",
        allow_module_level=True,
    )

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spark():
    from healthscore.io.runners import spark_session

    session = spark_session("local[2]", shuffle_partitions=2)
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def test_spark_equals_polars_on_the_sample(spark, tmp_path):
    snaps = hs.load_sample().snapshots
    model = hs.load_model(hs.resources.sample_model())
    expected = score(snaps, model)
    # the data as a Spark user has it: a table read by the session, not a polars frame
    path = tmp_path / "snapshots.parquet"
    snaps.write_parquet(path)
    frame = spark.read.parquet(str(path))
    got = score_with("spark", frame, model, session=spark)
    assert_same_scores(expected, got)
    # file in, folder out: the rows stay in Spark
    from healthscore.core.sqlscore import score_file_with

    out = score_file_with("spark", path, model, tmp_path / "scores", session=spark)
    assert_same_scores(expected, pl.read_parquet(out / "*.parquet").sort("account_id", "as_of"))


def test_spark_builds_the_same_snapshots_and_outcomes_as_polars(spark, tmp_path):
    """The builder on Spark (event log read by Spark, the DuckDB engine's SQL run as Spark SQL)
    gives the polars engine's snapshots and outcome events: same rows, values within 1e-9."""
    import datetime as dt

    import polars as pl
    from healthscore.core.build import build

    book = hs.make_portfolio(n_accounts=40, n_weeks=20, seed=5)
    spec = book.raw.save(tmp_path / "raw")
    today = dt.date(2027, 6, 1)
    expected = build(spec, engine="polars", today=today)
    got = build(spec, engine="spark", session=spark, today=today)
    keys = ["account_id", "as_of"]
    a, b = expected.snapshots.sort(keys), got.snapshots.sort(keys)
    assert a.height > 500 and a.columns == b.columns
    assert a.select(keys).equals(b.select(keys))
    for name in a.columns[2:]:
        x, y = a[name], b[name]
        if x.dtype.is_numeric():
            assert (x.is_null() == y.is_null()).all(), name
            assert ((x.cast(pl.Float64) - y.cast(pl.Float64)).abs().fill_null(0) <= 1e-9).all(), name
        else:
            assert x.cast(pl.String).equals(y.cast(pl.String)), name
    ev = ["account_id", "date", "event"]
    assert expected.events.select(ev).sort(ev).equals(got.events.select(ev).sort(ev))


def test_spark_build_refuses_a_database_file(spark, tmp_path):
    from healthscore.core.build import BuildError, build
    from healthscore.spec.metrics import parse_spec

    spec = parse_spec(
        {
            "source": {"events": str(tmp_path / "events.duckdb")},
            "metrics": [{"name": "n", "agg": "count", "window": "28d"}],
        }
    )
    with pytest.raises(BuildError, match="Spark engine reads Parquet or CSV"):
        build(spec, engine="spark", session=spark)
