"""Scorecard folders that are safe to share, and scores paired with the model that made them.

* page names never take the folder's own names (``index``, ``manifest``) nor collide without case;
* the manifest and the index cover every run into the folder (the latest row of an account wins);
* a second batch into the same folder waits for the first, or stops with a clear message;
* nothing but pages, the index and the manifest stays in the folder (inputs, logs, temp files);
* atomic writes flush to disk before the rename;
* scores from another model, or with a repeated (account_id, as_of), are refused.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import healthscore as hs
import polars as pl
import pytest
from healthscore.app import batch as batch_run
from healthscore.app import cli
from healthscore.core.scoring import ScoresError, check_scores
from healthscore.io import files
from hypothesis import given, settings
from hypothesis import strategies as st

MODEL_TOML = """
[model]
name = "foldertest"
version = "1.0.0"
min_coverage = 0.3

[categories.usage]
weight = 1

[[metrics]]
name = "logins"
column = "login_days"
category = "usage"
method = "thresholds"
params = { points = [[0, 0], [5, 100]] }
"""


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "foldertest.toml"
    path.write_text(MODEL_TOML)
    return path


@pytest.fixture(scope="module")
def other_model_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("other") / "other.toml"
    path.write_text(MODEL_TOML.replace("[[0, 0], [5, 100]]", "[[0, 0], [4, 100]]"))
    return path


IDS = ["index", "ACME", "acme", "Manifest", "plain"]


@pytest.fixture(scope="module")
def book(tmp_path_factory, model_path):
    """Five accounts whose ids clash with the folder's own names or with each other without case."""
    p = hs.make_portfolio(n_accounts=5, n_weeks=8, seed=3)
    old = p.snapshots["account_id"].unique().sort().to_list()
    mapping = pl.DataFrame({"account_id": old, "new": IDS, "name": [f"Company {i}" for i in IDS]})
    snaps = (
        p.snapshots.join(mapping, on="account_id")
        .drop("account_id", "company_name")
        .rename({"new": "account_id", "name": "company_name"})
    )
    folder = tmp_path_factory.mktemp("book")
    scores = hs.score(snaps, hs.load_model(model_path))
    scores.write_parquet(folder / "scores.parquet")
    return {"folder": folder, "scores": scores, "snapshots": snaps}


# ----------------------------------------------------------------------------- names
def test_reserved_ids_get_their_own_page_name():
    for aid in ("index", "INDEX", "Index", "manifest", "con", "nul", "lpt1"):
        name = batch_run.safe_name(aid)
        assert name.lower() not in batch_run.RESERVED and name.startswith(aid) and name != aid
    assert batch_run.safe_name("indexes") == "indexes"  # only the exact names are reserved


def test_case_colliding_ids_get_distinct_pages():
    files_ = batch_run.page_files(["ACME", "acme", "Acme", "b"])
    assert len({f.lower() for f in files_.values()}) == 4
    assert files_["b"] == "b.html"


def test_earlier_pages_keep_their_names_and_are_never_taken():
    earlier = {"acme": "acme.html", "old": "old.html"}
    files_ = batch_run.page_files(["ACME", "acme"], earlier)
    assert files_["acme"] == "acme.html"  # links from earlier runs stay valid
    assert files_["ACME"].lower() != "acme.html"
    # an earlier page that an older version wrote under a reserved or unsafe name is not kept
    assert batch_run.page_files(["index"], {"index": "index.html"})["index"] != "index.html"
    assert batch_run.page_files(["x"], {"x": "../x.html"})["x"] == "x.html"


@given(
    st.lists(st.text(alphabet="aAbB._-/ xX", min_size=1, max_size=6), min_size=1, max_size=12, unique=True),
    st.dictionaries(
        st.text(alphabet="aAbB", min_size=1, max_size=4),
        st.sampled_from(["a.html", "A.html", "b.html", "index.html", "B-1.html"]),
        max_size=4,
    ),
)
@settings(max_examples=300, deadline=None)
def test_page_files_are_unique_without_case_and_never_reserved(ids, earlier):
    files_ = batch_run.page_files(ids, earlier)
    assert set(files_) == set(ids)
    lower = [f.lower() for f in files_.values()]
    assert len(set(lower)) == len(lower)
    assert not any(f[:-5] in batch_run.RESERVED for f in lower)
    # no new page takes a file that one earlier account alone still holds
    claims: dict[str, list[str]] = {}
    for a, f in earlier.items():
        claims.setdefault(f.lower(), []).append(a)
    held = {f: owners[0] for f, owners in claims.items() if len(owners) == 1 and owners[0] not in ids}
    assert not any(held.get(f.lower(), a) != a for a, f in files_.items())


# ----------------------------------------------------------------------------- files
def test_atomic_writes_flush_the_file_and_the_folder(tmp_path, monkeypatch):
    synced: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else str(fd))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    files.write_text(tmp_path / "a.txt", "hello")
    assert len(synced) == 2
    if os.path.exists("/proc/self/fd"):
        assert synced[0].startswith(str(tmp_path / ".a.txt.")) and synced[1] == str(tmp_path)
    assert (tmp_path / "a.txt").read_text() == "hello"


def test_stale_temporaries_are_removed_but_fresh_ones_kept(tmp_path):
    old, fresh, page = tmp_path / ".a.html.k1.tmp", tmp_path / ".b.html.k2.tmp", tmp_path / "a.html"
    for p in (old, fresh, page):
        p.write_text("x")
    hour_ago = time.time() - 7200
    os.utime(old, (hour_ago, hour_ago))
    assert files.clean_stale_temporaries(tmp_path) == [old]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".b.html.k2.tmp", "a.html"]


def test_folder_lock_makes_a_second_writer_wait_then_stop(tmp_path):
    with files.folder_lock(tmp_path, what="first batch"):
        t0 = time.monotonic()
        with pytest.raises(files.FolderBusyError) as busy:
            with files.folder_lock(tmp_path, timeout=0.5):
                pass
        assert time.monotonic() - t0 >= 0.5
        message = str(busy.value)
        assert f"pid {os.getpid()}" in message and "first batch" in message and "--out" in message
    with files.folder_lock(tmp_path, timeout=0):  # released: free again at once
        pass
    assert not (tmp_path / files.LOCK_NAME).exists()


def test_a_killed_holder_releases_the_lock(tmp_path):
    code = (
        "import sys, time; from healthscore.io import files\n"
        "with files.folder_lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(60)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(files.FolderBusyError):
            with files.folder_lock(tmp_path, timeout=0.2):
                pass
        proc.kill()
        proc.wait(timeout=10)
        with files.folder_lock(tmp_path, timeout=5):  # the kernel dropped the dead holder's lock
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_a_busy_folder_stops_the_batch_before_anything_is_written(book, model_path, tmp_path):
    with files.folder_lock(tmp_path, what="scorecard batch"):
        with pytest.raises(files.FolderBusyError, match="another process is writing into this folder"):
            batch_run.render_scorecards(
                book["folder"] / "scores.parquet", model_path, "all", tmp_path, wait=0.3, progress=False
            )
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- pairing
def test_scores_of_another_model_are_refused_naming_both(book, model_path, other_model_path, tmp_path):
    other = hs.load_model(other_model_path)
    mine = hs.load_model(model_path)
    assert other.hash != mine.hash
    with pytest.raises(ScoresError) as err:
        batch_run.render_scorecards(
            book["folder"] / "scores.parquet", other_model_path, "all", tmp_path, progress=False
        )
    message = str(err.value)
    for needle in (mine.hash, other.hash, str(book["folder"] / "scores.parquet"), str(other_model_path)):
        assert needle in message
    assert [p.name for p in tmp_path.iterdir()] == []  # refused before any page or work file


def test_repeated_score_rows_are_refused_naming_the_rows(book, model_path, tmp_path):
    scores = book["scores"]
    # the same account and date twice, with another score: a page would show either one
    twin = scores.slice(5, 1).with_columns(pl.lit(1.0).alias("score"), pl.lit("red").alias("band"))
    bad = pl.concat([scores, twin])
    bad.write_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ScoresError) as err:
        batch_run.render_scorecards(tmp_path / "bad.parquet", model_path, "all", tmp_path / "cards", progress=False)
    row = scores.row(5, named=True)
    assert f"rows 6 and {scores.height + 1}" in str(err.value)
    assert repr(row["account_id"]) in str(err.value) and str(row["as_of"]) in str(err.value)
    # the library refuses it too, for one account's card
    from healthscore.analysis.scorecard import scorecard_data

    with pytest.raises(ScoresError, match="2 score rows for as_of"):
        scorecard_data(bad, hs.load_model(model_path), row["account_id"])


def test_a_card_refuses_a_model_that_did_not_make_its_scores(book, other_model_path):
    from healthscore.analysis.scorecard import scorecard_data

    with pytest.raises(ScoresError, match="produced by model hash"):
        scorecard_data(book["scores"], hs.load_model(other_model_path), "plain")


def test_scores_without_a_model_hash_are_refused(book, model_path):
    with pytest.raises(ScoresError, match="no model_hash column"):
        check_scores(book["scores"].drop("model_hash"), hs.load_model(model_path), scores_source="x.parquet")
    check_scores(book["scores"], hs.load_model(model_path))  # the right pair passes


def test_cli_scorecards_and_review_refuse_a_mismatch(book, other_model_path, capsys, tmp_path):
    scores = str(book["folder"] / "scores.parquet")
    code = cli.main(["scorecards", "--model", str(other_model_path), "--scores", scores, "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 1 and "produced by model hash" in err and "Traceback" not in err
    code = cli.main(["review", "--data", scores, "--model", str(other_model_path), "--out", str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    assert code == 1 and "produced by model hash" in err and str(other_model_path) in err
    assert not (tmp_path / "r.html").exists()


# ----------------------------------------------------------------------------- the folder over runs
def _work_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("healthscore-scorecards-*")}


@pytest.mark.notebook
@pytest.mark.slow
def test_folder_over_two_runs(book, model_path, tmp_path):
    out = tmp_path / "cards"
    before = _work_dirs()
    first = batch_run.render_scorecards(
        book["folder"] / "scores.parquet", model_path, "all", out, workers=1, progress=False
    )
    assert first.ok, first.manifest
    pages = dict(zip(first.manifest["account_id"], first.manifest["file"]))
    # every account has its own page; none is the index or the manifest; none differ only in case
    assert len({f.lower() for f in pages.values()}) == len(IDS)
    assert pages["index"] != "index.html" and pages["Manifest"].lower() != "manifest.html"
    index = (out / "index.html").read_text()
    assert "Customer health scorecards" in index and "Company index" in index
    assert "Company index" in (out / pages["index"]).read_text()
    shared = {"index.html", "index.csv", "manifest.csv", *pages.values()}
    assert {p.name for p in out.iterdir()} == shared

    # a second run of one account: a crashed run's leftovers and an old inputs folder are in the
    # folder, and another batch holds the lock for a moment
    (out / ".plain.html.x1y2z3.tmp").write_text("half a page")
    (out / ".inputs").mkdir()
    (out / ".inputs" / "peers-segment.parquet").write_text("every account's percentiles")
    holding = threading.Event()

    def hold() -> None:
        with files.folder_lock(out, what="scorecard batch"):
            holding.set()
            time.sleep(1.5)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(10)
    t0 = time.monotonic()
    second = batch_run.render_scorecards(
        book["folder"] / "scores.parquet", model_path, ["plain"], out, workers=1, progress=False, force=True, wait=60
    )
    holder.join()
    assert time.monotonic() - t0 >= 1.0  # it waited for the holder instead of writing beside it
    assert second.manifest["account_id"].to_list() == ["plain"]
    assert second.manifest["status"].to_list() == ["rendered"]

    on_disk = pl.read_csv(out / "manifest.csv")
    assert sorted(on_disk["account_id"].to_list()) == sorted(IDS)  # merged with the first run
    assert on_disk["account_id"].n_unique() == len(IDS)
    row = on_disk.filter(pl.col("account_id") == "plain").row(0, named=True)
    assert row["seconds"] == pytest.approx(second.manifest["seconds"][0])  # the latest run's row
    index = (out / "index.html").read_text()
    for f in pages.values():
        assert f'href="{f}"' in index
    assert f"{len(IDS)} accounts" in index
    # the index lists both runs' accounts, the CSV beside it the same rows in the same order
    listed = pl.read_csv(out / "index.csv", infer_schema=False)
    assert sorted(listed["account_id"].to_list()) == sorted(IDS)
    assert re.findall(r'<tr data-account="([^"]*)"', index) == [html.escape(a) for a in listed["account_id"]]
    assert {p.name for p in out.iterdir()} == shared  # no temp file, no inputs, no lock, no logs
    assert _work_dirs() == before  # the private work folders are gone too


@pytest.mark.notebook
@pytest.mark.slow
def test_two_batches_at_once_keep_every_row(book, model_path, tmp_path):
    """Two processes render different accounts into one folder at the same time."""
    out = tmp_path / "cards"
    code = (
        "import sys\nfrom healthscore.app.batch import render_scorecards\n"
        "run = render_scorecards(sys.argv[1], sys.argv[2], sys.argv[3].split(','), sys.argv[4], "
        "workers=1, progress=False, wait=600)\nsys.exit(0 if run.ok else 1)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = [str(book["folder"] / "scores.parquet"), str(model_path)]
    procs = [
        subprocess.Popen([sys.executable, "-c", code, *args, ids, str(out)], env=env)
        for ids in ("index,ACME", "acme,plain")
    ]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    on_disk = pl.read_csv(out / "manifest.csv")
    assert sorted(on_disk["account_id"].to_list()) == sorted(["index", "ACME", "acme", "plain"])
    assert set(on_disk["status"]) == {"rendered"}
    listed = pl.read_csv(out / "index.csv", infer_schema=False)
    assert sorted(listed["account_id"].to_list()) == sorted(["index", "ACME", "acme", "plain"])
