"""``score_to_file`` (what ``healthscore score`` runs): snapshots read and scored part by part,
scores written as they come. The scores must equal the in-memory ``score`` bit for bit, with and
without ``as_of``, whatever the size of a part; a problem in the file is reported as
``read_snapshots`` reports it; ``as_of`` reads only the history that date needs.
"""

from __future__ import annotations

import datetime as dt

import healthscore as hs
import polars as pl
import pytest
from healthscore import resources
from healthscore.app import cli
from healthscore.core import scoring
from healthscore.io import stream
from healthscore.io.snapshots import ValidationError, read_snapshots
from healthscore.io.stream import scan_snapshots
from healthscore.spec.model import DEFAULT_BANDS, Band, Category, Metric, ScoreModel
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def model():
    """The high-touch starter model: a trend metric (window 4), a variant, booleans, steps."""
    return hs.load_model(resources.starter_model("high_touch"), "health")


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """A small portfolio with gaps: some weekly rows removed, and accounts that start late."""
    p = hs.make_portfolio(n_accounts=60, n_weeks=30, seed=11)
    snaps = p.snapshots
    # drop a scattering of rows so some accounts have holes in their history
    snaps = snaps.with_row_index("__i").filter((pl.col("__i") % 17 != 3) | (pl.col("__i") < 40)).drop("__i")
    folder = tmp_path_factory.mktemp("stream")
    snaps.write_parquet(folder / "snapshots.parquet")
    snaps.write_csv(folder / "snapshots.csv")
    return folder, read_snapshots(folder / "snapshots.parquet")


def _same(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert a.columns == b.columns
    assert a.schema == b.schema
    assert a.height == b.height
    assert a.equals(b, null_equal=True)  # bit for bit: no tolerance


@pytest.fixture(autouse=True)
def _stream_every_binary_file(monkeypatch: pytest.MonkeyPatch) -> None:
    # the command reads small files whole; these tests exercise the part-by-part path on small files
    monkeypatch.setattr(stream, "STREAM_FROM_BYTES", 0)


def test_history_rows_follows_the_trend_window(model):
    trend = next(m for m in model.metrics if m.method == "trend")
    assert scoring.history_rows(model) == 4 + 2 * int(trend.params["window"])


@pytest.mark.parametrize("rows_per_part", [97, 10_000])
def test_streamed_scores_equal_the_in_memory_scores(book, model, tmp_path, rows_per_part):
    folder, snaps = book
    expected = scoring.score(snaps, model)
    done = scoring.score_to_file(
        scan_snapshots(folder / "snapshots.parquet"), model, tmp_path / "s.parquet", rows_per_part=rows_per_part
    )
    _same(pl.read_parquet(done.path), expected)
    assert (done.rows, done.accounts) == (expected.height, expected["account_id"].n_unique())
    latest = expected.sort("account_id", "as_of").group_by("account_id").last()
    assert (
        done.latest.sort("account_id").select("score", "band").equals(latest.sort("account_id").select("score", "band"))
    )


def test_every_as_of_equals_the_in_memory_scores(book, model, tmp_path):
    folder, snaps = book
    scan = scan_snapshots(folder / "snapshots.parquet")
    dates = snaps["as_of"].unique().sort()
    # early (history shorter than the depth), middle, last, and a day between two snapshots
    for day in [dates[2], dates[15], dates[-1], dates[20] + dt.timedelta(days=3)]:
        expected = scoring.score(snaps, model, as_of=day)
        done = scoring.score_to_file(scan, model, tmp_path / "s.parquet", as_of=day, rows_per_part=50)
        _same(pl.read_parquet(done.path), expected)
        assert done.as_of == expected["as_of"][0]
        # the trend and the change over four snapshots are really there, not all null
        if day >= dates[15]:
            assert expected["score_change_4"].drop_nulls().len() > 0
            assert expected["sub_user_trend"].drop_nulls().len() > 0


def test_csv_in_and_out_equal_the_in_memory_path(book, model, tmp_path):
    folder, _ = book
    snaps = read_snapshots(folder / "snapshots.csv")  # typed from text, as the command reads CSV
    expected = scoring.score(snaps, model)
    scoring.score_to_file(scan_snapshots(folder / "snapshots.csv"), model, tmp_path / "s.csv", rows_per_part=200)
    expected.write_csv(tmp_path / "expected.csv")
    assert (tmp_path / "s.csv").read_bytes() == (tmp_path / "expected.csv").read_bytes()


def test_text_columns_are_typed_on_the_whole_file_not_per_part(tmp_path):
    """A column numeric in most of the file but not in one part keeps one type everywhere."""
    model = ScoreModel(
        "t",
        "1",
        [Metric("x", "x", "c", params={"points": [[0, 0], [10, 100]]})],
        {"c": Category("c", 1)},
        [Band(*b) for b in DEFAULT_BANDS],
    )
    n = 40
    frame = pl.DataFrame(
        {
            "account_id": [f"a{i:02d}" for i in range(n)],
            "as_of": [dt.date(2026, 1, 5)] * n,
            "x": [float(i % 10) for i in range(n)],
            # text in the first part only; numbers (90%) elsewhere: numeric overall
            "seats": [" n/a " if i < 4 else str(i) for i in range(n)],
        }
    )
    frame.write_parquet(tmp_path / "in.parquet")
    with pytest.raises(ValidationError) as whole:
        read_snapshots(tmp_path / "in.parquet")
    with pytest.raises(ValidationError) as parts:
        scoring.score_to_file(scan_snapshots(tmp_path / "in.parquet"), model, tmp_path / "s.parquet", rows_per_part=4)
    assert "'seats'" in str(parts.value) and "row 1 (' n/a ')" in str(parts.value)
    assert str(parts.value).splitlines()[1] == str(whole.value).splitlines()[1]
    assert not (tmp_path / "s.parquet").exists()  # nothing written, not even half a file


def test_a_repeated_snapshot_is_reported_like_read_snapshots(book, model, tmp_path):
    folder, snaps = book
    bad = pl.concat([snaps, snaps.slice(100, 1)]).sort("account_id", "as_of")
    bad.write_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ValidationError) as whole:
        read_snapshots(tmp_path / "bad.parquet")
    with pytest.raises(ValidationError) as parts:
        scoring.score_to_file(
            scan_snapshots(tmp_path / "bad.parquet"), model, tmp_path / "s.parquet", rows_per_part=300
        )
    assert str(parts.value) == str(whole.value)
    assert "duplicate" in str(parts.value) or "share an (account_id, as_of)" in str(parts.value)
    # the file split into parts is removed with the half-written scores
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet"]


@pytest.mark.parametrize("folders", [16, 2])
def test_each_part_reads_its_own_split_not_the_whole_file(book, model, tmp_path, monkeypatch, folders):
    """A part reads its own rows of the file split once (a folder each, or several parts to a
    folder when there are more parts than folders)."""
    folder, snaps = book
    monkeypatch.setattr(stream, "MAX_SPLITS", folders)
    reads: list[int] = []
    original = stream.SnapshotScan.read

    def counting(self, predicate, **kw):
        reads.append(self.lazy.select(pl.len()).collect().item())
        return original(self, predicate, **kw)

    monkeypatch.setattr(stream.SnapshotScan, "read", counting)
    done = scoring.score_to_file(
        scan_snapshots(folder / "snapshots.parquet"), model, tmp_path / "s.parquet", rows_per_part=400
    )
    assert len(reads) > 3 and max(reads) < snaps.height / 2  # each read sees one part's rows only
    assert sum(reads) == snaps.height
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.parquet"]  # the split is gone
    _same(pl.read_parquet(done.path), scoring.score(snaps, model))


def test_as_of_reads_only_the_history_it_needs(model, tmp_path):
    """A broken value a year before the date is never read for that date (so it cannot cost memory),
    while scoring the whole history reports it."""
    snaps = hs.make_portfolio(n_accounts=60, n_weeks=30, seed=11).snapshots  # no holes: no older rows needed
    first = snaps["as_of"].min()
    broken = snaps.with_columns(
        pl.when(pl.col("as_of") == first).then(-5.0).otherwise(pl.col("login_days")).alias("login_days")
    )
    broken.write_parquet(tmp_path / "broken.parquet")
    last = snaps["as_of"].max()
    done = scoring.score_to_file(scan_snapshots(tmp_path / "broken.parquet"), model, tmp_path / "s.parquet", as_of=last)
    _same(pl.read_parquet(done.path), scoring.score(snaps, model, as_of=last))
    with pytest.raises(ValidationError, match="negative"):
        scoring.score_to_file(scan_snapshots(tmp_path / "broken.parquet"), model, tmp_path / "all.parquet")


def test_the_command_writes_what_score_returns(book, model, tmp_path, capsys):
    folder, snaps = book
    model_path = tmp_path / "model.toml"
    model.save(model_path)
    argv = [
        "score",
        "--model",
        str(model_path),
        "--data",
        str(folder / "snapshots.parquet"),
        "--out",
        str(tmp_path / "scores.parquet"),
        "--as-of",
        str(snaps["as_of"].max()),
    ]
    assert cli.main(argv) == 0
    _same(pl.read_parquet(tmp_path / "scores.parquet"), scoring.score(snaps, model, as_of=snaps["as_of"].max()))
    out = capsys.readouterr().out
    assert f"scored {snaps.filter(pl.col('as_of') == snaps['as_of'].max()).height:,} accounts" in out
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@given(
    n_accounts=st.integers(1, 12),
    n_weeks=st.integers(1, 16),
    part=st.sampled_from([1, 40, 1000]),
    holes=st.integers(2, 9),
    as_of_index=st.one_of(st.none(), st.integers(0, 15)),
)
@settings(max_examples=12, deadline=None)
def test_streaming_equals_in_memory_on_random_books(
    tmp_path_factory, model, n_accounts, n_weeks, part, holes, as_of_index
):
    folder = tmp_path_factory.mktemp("random")
    p = hs.make_portfolio(n_accounts=n_accounts, n_weeks=n_weeks, seed=n_accounts * 31 + n_weeks)
    snaps = p.snapshots.with_row_index("__i").filter(pl.col("__i") % holes != 1).drop("__i")
    if snaps.is_empty():
        return
    snaps.write_parquet(folder / "in.parquet")
    snaps = read_snapshots(folder / "in.parquet")
    dates = snaps["as_of"].unique().sort()
    day = None if as_of_index is None else dates[min(as_of_index, dates.len() - 1)]
    done = scoring.score_to_file(
        scan_snapshots(folder / "in.parquet"), model, folder / "s.parquet", as_of=day, rows_per_part=part
    )
    _same(pl.read_parquet(done.path), scoring.score(snaps, model, as_of=day))
