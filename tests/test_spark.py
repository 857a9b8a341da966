"""The score on Spark (local mode, spark-dialect SQL) equals the polars engine on the bundled sample.

One SparkSession for the module (local[2], two shuffle partitions); `make test` provides Java.
"""

from __future__ import annotations

import shutil

import healthscore as hs
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
