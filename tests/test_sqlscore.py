"""The score model as SQL: DuckDB and PostgreSQL return what the polars engine returns (to 1e-9,
bands and coverage exactly); Snowflake and BigQuery text parses back; what SQL cannot do is refused
with a message naming the metric and method."""

from __future__ import annotations

import datetime as dt
import math
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import healthscore as hs
import polars as pl
import pytest
import sqlglot
from healthscore.app.cli import main
from healthscore.core import sqlscore
from healthscore.core.scoring import score
from healthscore.core.sqlscore import SqlScoreError, score_query, score_sql, score_with
from healthscore.spec.model import DEFAULT_BANDS, Band, Category, Metric, ModelError, ScoreModel, Variant
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.engine_checks import assert_same_scores


@pytest.fixture(scope="module")
def sample() -> tuple[pl.DataFrame, ScoreModel, pl.DataFrame]:
    snaps = hs.load_sample().snapshots
    model = hs.load_model(hs.resources.sample_model())
    return snaps, model, score(snaps, model)


def test_duckdb_equals_polars_on_the_sample(sample):
    snaps, model, expected = sample
    got = score_with("duckdb", snaps, model)
    assert_same_scores(expected, got)
    # variants, N/A, trend, goal, log_z, categorical (null reasons: see the fixed frame below)
    assert set(expected["variant"].unique()) == {"default", "digital"}


def test_duckdb_as_of_keeps_the_latest_date_and_its_history(sample):
    snaps, model, _ = sample
    day = dt.date(2026, 6, 3)
    expected = score(snaps, model, as_of=day)
    got = score_with("duckdb", snaps, model, as_of=day)
    assert expected["as_of"].n_unique() == 1 and expected["score_change_4"].is_not_null().any()
    assert_same_scores(expected, got)


def test_duckdb_scores_a_file_into_a_file_under_a_memory_limit(sample, tmp_path):
    """File in, file out: DuckDB reads the snapshots in place and writes the scores without them
    passing through this process; under a small memory limit it spills and gives the same scores."""
    snaps, model, expected = sample
    snaps.write_parquet(tmp_path / "snaps.parquet")
    out = sqlscore.score_file_with(
        "duckdb", tmp_path / "snaps.parquet", model, tmp_path / "scores.parquet", memory_limit="256MB"
    )
    assert_same_scores(expected, pl.read_parquet(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.parquet", "snaps.parquet"]
    with pytest.raises(SqlScoreError, match="use polars, duckdb or spark"):
        sqlscore.score_file_with("postgres", tmp_path / "snaps.parquet", model, tmp_path / "x.parquet")
    with pytest.raises(hs.HealthscoreError, match="DuckDB"):  # a setting DuckDB refuses: an error, no file
        sqlscore.score_file_with(
            "duckdb", tmp_path / "snaps.parquet", model, tmp_path / "x.parquet", memory_limit="lots"
        )
    assert not (tmp_path / "x.parquet").exists()
    # a missing file, a file that is not Parquet, a limit for an engine without one: errors that say so
    (tmp_path / "snaps.csv").write_text("account_id,as_of\na,2026-01-05\n")
    for engine, source, kw, words in [
        ("duckdb", tmp_path / "missing.parquet", {}, "no such file"),
        ("duckdb", tmp_path / "snaps.csv", {}, "cannot be read as Parquet"),
        ("polars", tmp_path / "snaps.parquet", {"memory_limit": "1GB"}, "duckdb engine only"),
    ]:
        with pytest.raises(SqlScoreError, match=words):
            sqlscore.score_file_with(engine, source, model, tmp_path / "x.parquet", **kw)
    assert not (tmp_path / "x.parquet").exists()


# ---------------------------------------------------------------- every method, random data
def _model() -> ScoreModel:
    q = [float(v) for v in range(0, 150, 10)]  # 15 quantiles: the long (numpy) interpolation path
    metrics = [
        Metric("th", "a", "usage", params={"points": [[0, 0], [0.3, 40], [0.7, 90], [1, 100]]}, weight=3),
        Metric("st", "b", "usage", "lower_is_better", "steps", {"edges": [1, 2, 5], "scores": [100, 60, 20, 0]}),
        Metric(
            "tr",
            "a",
            "usage",
            method="trend",
            params={"window": 2, "min_base": 0.1, "points": [[-0.5, 0], [0, 60], [0.5, 100]]},
        ),
        Metric("pc", "c", "support", method="percentile", params={"quantiles": q}, weight=2),
        Metric("pc2", "c", "support", "lower_is_better", "percentile", {"quantiles": [0, 5, 5, 40]}),
        Metric("lz", "c", "support", method="log_z", params={"center": 2.0, "scale": 1.3, "clip": 2.0}),
        Metric("bo", "d", "relation", method="boolean", params={"true_score": 100, "false_score": 20}),
        Metric(
            "ca",
            "e",
            "relation",
            method="categorical",
            params={"map": {"1": 0, "2": 50, "3": 100}},
            na_policy="score:50",
        ),
        Metric(
            "mb", "b", "relation", "lower_is_better", "monotone_bins", {"edges": [1.0, 3.0], "scores": [100, 30, 0]}
        ),
        Metric("go", "a", "outcomes", method="goal", params={"start_column": "gs", "due_column": "gd", "target": 0.8}),
    ]
    cats = {
        "usage": Category("usage", 3),
        "support": Category("support", 2),
        "relation": Category("relation", 1),
        "outcomes": Category("outcomes", 1),
        "empty": Category("empty", 1),
    }
    variants = [
        Variant(
            "small",
            {"seg": ["s"]},
            disabled=["ca"],
            weights={"th": 1.0},
            categories={"usage": 5},
            params={"st": {"scores": [100, 80, 40, 10]}, "tr": {"window": 1}},
        )
    ]
    return ScoreModel(
        "random", "1", metrics, cats, [Band(*b[:3]) for b in DEFAULT_BANDS], min_coverage=0.55, variants=variants
    )


_value = st.one_of(
    st.none(),
    st.just(math.nan),
    st.just(math.inf),
    st.floats(-1.5, 7.0, allow_nan=False).map(lambda v: round(v, 2)),
    st.sampled_from([0.0, 1.0, 2.0, 3.0, 5.0, 0.3, 0.7]),
)


@st.composite
def _frames(draw) -> pl.DataFrame:
    n_acc, n_weeks = draw(st.integers(1, 3)), draw(st.integers(1, 7))
    rows = []
    for a in range(n_acc):
        seg = draw(st.sampled_from(["s", "l", None]))
        for w in range(n_weeks):
            rows.append(
                {
                    "account_id": f"acc{a}",
                    "as_of": dt.date(2025, 1, 6) + dt.timedelta(weeks=w),
                    "seg": seg,
                    **{c: draw(_value) for c in "abcde"},
                    "gs": dt.date(2025, 1, 1) + dt.timedelta(days=draw(st.integers(-20, 40))),
                    "gd": dt.date(2025, 2, 1) + dt.timedelta(days=draw(st.integers(-40, 30))),
                }
            )
    return pl.DataFrame(
        rows,
        schema={
            "account_id": pl.String,
            "as_of": pl.Date,
            "seg": pl.String,
            **{c: pl.Float64 for c in "abcde"},
            "gs": pl.Date,
            "gd": pl.Date,
        },
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=_frames())
def test_duckdb_equals_polars_on_random_snapshots(frame):
    model = _model()
    assert_same_scores(score(frame, model), score_with("duckdb", frame, model))


# ---------------------------------------------------------------- PostgreSQL
def _postgres_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL cluster on 127.0.0.1 and a free port; stopped and removed afterwards."""
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql); `make engines` installs it")
    root = Path(tempfile.mkdtemp(prefix="hs-pg-"))
    data = root / "data"
    prefix: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: run it as an unprivileged user
        user = pwd.getpwnam("nobody")
        os.chown(root, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "nobody", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = lambda *args: subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)  # noqa: E731
    run(str(bindir / "initdb"), "-D", str(data), "-U", "hs", "--auth=trust", "-E", "UTF8", "--no-sync")
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={data} -c fsync=off"
    run(str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "-t", "60", "start")
    try:
        yield f"host=127.0.0.1 port={port} dbname=postgres user=hs connect_timeout=10"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


def test_postgres_equals_polars_on_the_sample(sample, postgres):
    pytest.importorskip("psycopg", reason="PostgreSQL tests need psycopg (pip install 'psycopg[binary]')")
    snaps, model, expected = sample
    got = score_with("postgres", snaps, model, dsn=postgres)
    assert_same_scores(expected, got)


def test_postgres_equals_polars_on_every_method(postgres):
    pytest.importorskip("psycopg", reason="PostgreSQL tests need psycopg (pip install 'psycopg[binary]')")
    frame = _fixed_frame()
    model = _model()
    assert_same_scores(score(frame, model), score_with("postgres", frame, model, dsn=postgres))


def _fixed_frame() -> pl.DataFrame:
    """Three accounts over eight weeks touching every branch of every method."""
    vals = [None, math.nan, -1.2, 0.0, 0.3, 1.0, 2.0, 5.0, 0.7, 3.0, math.inf, 6.5]
    rows = []
    for a, seg in enumerate(["s", "l", None]):
        for w in range(8):
            k = a * 8 + w
            rows.append(
                {
                    "account_id": f"acc{a}",
                    "as_of": dt.date(2025, 1, 6) + dt.timedelta(weeks=w),
                    "seg": seg,
                    **{c: vals[(k * (i + 2) + i) % len(vals)] for i, c in enumerate("abcde")},
                    "gs": dt.date(2025, 1, 1) + dt.timedelta(days=7 * (a - 1)),
                    "gd": dt.date(2025, 3, 1),
                }
            )
    return pl.DataFrame(
        rows,
        schema={
            "account_id": pl.String,
            "as_of": pl.Date,
            "seg": pl.String,
            **{c: pl.Float64 for c in "abcde"},
            "gs": pl.Date,
            "gd": pl.Date,
        },
    )


def test_duckdb_equals_polars_on_the_fixed_frame():
    frame, model = _fixed_frame(), _model()
    expected = score(frame, model)
    assert expected["score"].is_null().any() and expected["score"].is_not_null().any()
    assert expected["null_reason"].str.starts_with("coverage ").any()
    assert_same_scores(expected, score_with("duckdb", frame, model))


# ---------------------------------------------------------------- dialects
@pytest.mark.parametrize("dialect", ["snowflake", "bigquery", "spark", "postgres", "duckdb"])
def test_every_dialect_parses_back_to_the_same_query(sample, dialect):
    _, model, _ = sample
    text = score_sql(model, dialect=dialect)
    tree = sqlglot.parse_one(text, read=dialect)
    again = tree.sql(dialect=dialect)
    # the same query (sqlglot may change the case of a keyword such as EPOCH)
    assert again.lower() == score_query(model, dialect=dialect).sql(dialect=dialect).lower()
    assert f"model health {model.hash}" in text


def test_the_query_reads_as_steps_with_the_model_named(sample):
    _, model, _ = sample
    query = score_query(model, dialect="snowflake", table="analytics.snapshots")
    names = [cte.alias for cte in query.args["with_"].expressions]
    assert names == [
        "prepared",
        "trend_windows",
        "trend_lagged",
        "measured",
        "calibrated",
        "subscores",
        "presence",
        "categories",
        "coverage_gate",
        "factors",
        "drivers",
        "scored",
    ]
    text = query.sql(dialect="snowflake", pretty=True)
    assert "FROM analytics.snapshots" in text
    assert "csm_assessment (categorical, csm_assessment)" in text


def test_sums_are_written_left_to_right(sample):
    _, model, _ = sample
    scored = next(c for c in score_query(model).args["with_"].expressions if c.alias == "scored")
    total = scored.this.expressions[1].this.args["ifs"][0].args["true"]
    text = total.sql()
    names = [m.name for m in model.metrics]
    assert [text.index(f"drv_{n}") for n in names] == sorted(text.index(f"drv_{n}") for n in names)
    assert "(" not in text.split("CASE", 1)[-1].split("<")[0].replace("(drv", "")  # no regrouping brackets


def test_unknown_dialect_and_engine_are_refused(sample):
    _, model, _ = sample
    with pytest.raises(SqlScoreError, match="unknown SQL dialect 'oracle'; use one of duckdb, spark"):
        score_sql(model, dialect="oracle")
    with pytest.raises(SqlScoreError, match="unknown engine 'pandas'"):
        score_with("pandas", pl.DataFrame(), model)


def test_overrides_are_refused_outside_polars(sample):
    snaps, model, _ = sample
    with pytest.raises(SqlScoreError, match="overrides are applied by the polars engine only"):
        score_with("duckdb", snaps, model, overrides=pl.DataFrame({"account_id": ["x"]}))


def test_unfitted_method_names_metric_and_method():
    model = ScoreModel(
        "m",
        "1",
        [Metric("calls", "api_calls", "usage", method="log_z", params={"clip": 2.0})],
        {"usage": Category("usage")},
        [Band(*b[:3]) for b in DEFAULT_BANDS],
    )
    with pytest.raises(ModelError, match=r"metrics\[1\] \(calls\).params: method log_z learns center, scale"):
        score_sql(model)


def test_a_method_without_sql_form_names_metric_and_method(sample, monkeypatch):
    _, model, _ = sample
    monkeypatch.delitem(sqlscore._MEASURES, "goal")
    with pytest.raises(
        SqlScoreError,
        match=r"metrics\[14\] \(goal_progress\): calibration method 'goal' has no "
        "SQL form yet",
    ):
        score_sql(model)


# ---------------------------------------------------------------- CLI
def test_cli_prints_sql_and_writes_a_dbt_model(tmp_path, capsys):
    model_file = str(hs.resources.sample_model())
    assert main(["sql", "--model", model_file, "--dialect", "bigquery"]) == 0
    printed = capsys.readouterr().out
    sqlglot.parse_one(printed, read="bigquery")
    assert "FLOAT64" in printed
    assert (
        main(
            [
                "sql",
                "--model",
                model_file,
                "--dialect",
                "snowflake",
                "--table",
                "stg_snapshots",
                "--dbt",
                str(tmp_path / "models"),
            ]
        )
        == 0
    )
    sql = (tmp_path / "models" / "health_scores.sql").read_text()
    schema = (tmp_path / "models" / "schema.yml").read_text()
    assert "FROM {{ ref('stg_snapshots') }}" in sql and "{{ config(materialized='table') }}" in sql
    sqlglot.parse_one(sql.split("}}", 1)[1].replace("{{ ref('stg_snapshots') }}", "stg_snapshots"), read="snowflake")
    for needle in (
        "unique_combination_of_columns",
        "combination_of_columns: [account_id, as_of]",
        "tests: [not_null]",
        "min_value: 0",
        "max_value: 100",
        '["red", "yellow", "green"]',
    ):
        assert needle in schema
    assert main(["sql", "--model", model_file, "--table", "a.b", "--dbt", str(tmp_path / "x")]) == 2
    assert "--table 'a.b': with --dbt" in capsys.readouterr().err
