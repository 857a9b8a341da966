"""``healthscore scorecards --pdf``: one single-page PDF per account beside its page, on A4 or US
Letter, printed by headless Chromium; without a browser the command stops before rendering.

The printing tests need Debian's ``chromium`` (``make test`` provides it); ``HEALTHSCORE_NO_BROWSER=1``
skips them on a machine without a browser on purpose.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
from pathlib import Path

import healthscore as hs
import polars as pl
import pytest
from healthscore import resources
from healthscore.analysis import scorecard as cards
from healthscore.app import cli
from healthscore.app import pdf as pdf_print
from healthscore.errors import UsageError

# points per side: A4 is 210 x 297 mm, Letter 8.5 x 11 in
SIZES = {"A4": (595.28, 841.89), "Letter": (612.0, 792.0)}


def pdf_pages(data: bytes) -> int:
    """Pages of a PDF: with pypdf when the environment has it, else the page objects counted and
    held equal to the page tree's own count."""
    try:
        import pypdf  # optional: a real PDF reader when installed
    except ImportError:
        leaves = len(re.findall(rb"/Type\s*/Page(?![A-Za-z])", data))
        counts = [int(n) for n in re.findall(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)", data)]
        counts += [int(n) for n in re.findall(rb"/Count\s+(\d+)[^>]*?/Type\s*/Pages\b", data)]
        assert counts and max(counts) == leaves, (leaves, counts)
        return leaves
    import io

    return len(pypdf.PdfReader(io.BytesIO(data)).pages)


def media_box(data: bytes) -> tuple[float, float]:
    found = re.search(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", data)
    assert found, "no MediaBox in the PDF"
    return float(found.group(1)), float(found.group(2))


def _browser_or_fail() -> Path:
    found = pdf_print.find_chromium()
    if found is not None:
        return found
    if os.environ.get("HEALTHSCORE_NO_BROWSER") == "1":
        pytest.skip("HEALTHSCORE_NO_BROWSER=1: no browser on this machine by choice")
    pytest.fail("no Chromium found: install Debian's chromium package (apt-get install chromium)")


# ----------------------------------------------------------------------------- finding the browser
def _program(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_finder_looks_on_path_and_honours_the_variable(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert pdf_print.find_chromium(env={"PATH": str(empty)}) is None
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    browser = _program(bin_dir, "chromium-browser")
    assert pdf_print.find_chromium(env={"PATH": str(bin_dir)}) == browser
    other = _program(tmp_path, "my-chromium")
    assert pdf_print.find_chromium(env={"PATH": str(bin_dir), pdf_print.ENV: str(other)}) == other
    # a variable that names nothing runnable is not replaced by a guess from PATH
    assert pdf_print.find_chromium(env={"PATH": str(bin_dir), pdf_print.ENV: str(tmp_path / "nope")}) is None
    with pytest.raises(pdf_print.BrowserMissing, match=rf"{pdf_print.ENV}=.*nope"):
        pdf_print.require_chromium(env={"PATH": str(bin_dir), pdf_print.ENV: str(tmp_path / "nope")})


def test_paper_names():
    assert [pdf_print.paper_format(p) for p in ("a4", "A4", "letter")] == ["A4", "A4", "Letter"]
    with pytest.raises(UsageError, match="--paper legal: choose one of a4, letter"):
        pdf_print.paper_format("legal")


def _argv(scores: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return ["scorecards", "--model", str(model), "--scores", str(scores), "--out", str(out), *extra]


@pytest.mark.parametrize("variable", [None, "/nowhere/chromium"])
def test_no_browser_stops_before_rendering(tmp_path, monkeypatch, capsys, variable):
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    if variable is None:
        monkeypatch.delenv(pdf_print.ENV, raising=False)
    else:
        monkeypatch.setenv(pdf_print.ENV, variable)
    out = tmp_path / "cards"
    # the inputs need not even exist: the browser is checked first
    rc = cli.main(_argv(tmp_path / "scores.parquet", tmp_path / "model.toml", out, "--pdf", "--paper", "letter"))
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("healthscore: error: --pdf ")
    assert "apt-get install chromium" in lines[0] and "drop --pdf" in lines[0]
    if variable is not None:
        assert f"{pdf_print.ENV}={variable}" in lines[0]
    assert not out.exists()  # nothing rendered, no folder, no half-written page or PDF


def test_paper_needs_pdf(tmp_path, capsys):
    rc = cli.main(_argv(tmp_path / "s.parquet", tmp_path / "m.toml", tmp_path / "out", "--paper", "a4"))
    assert rc == 2 and "add --pdf" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_library_refuses_before_writing(tmp_path, monkeypatch):
    from healthscore.app import batch

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(pdf_print.ENV, raising=False)
    with pytest.raises(pdf_print.BrowserMissing, match="apt-get install chromium"):
        batch.render_scorecards(tmp_path / "s.parquet", tmp_path / "m.toml", "all", tmp_path / "out", pdf=True)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- printing
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>t</title>
<style>@media print { .screen { display: none } } @page { size: auto; margin: 10mm }</style></head>
<body><h1>Printed</h1><p class="screen">screen only</p><img src="http://127.0.0.1:9/never.png" alt=""></body></html>"""


@pytest.mark.browser
def test_print_pdfs_on_both_papers(tmp_path):
    chromium = _browser_or_fail()
    page = tmp_path / "page.html"
    page.write_text(PAGE)
    targets = {paper: tmp_path / f"page-{paper}.pdf" for paper in ("a4", "letter")}
    for paper, target in targets.items():
        assert pdf_print.print_pdfs([(page, target)], paper=paper, chromium=chromium) == [None]
    for paper, target in targets.items():
        data = target.read_bytes()
        assert data.startswith(b"%PDF-") and pdf_pages(data) == 1
        width, height = media_box(data)
        want = SIZES[pdf_print.paper_format(paper)]
        assert abs(width - want[0]) < 2 and abs(height - want[1]) < 2, (paper, width, height)
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary left behind


@pytest.fixture(scope="module")
def sample_scores(tmp_path_factory) -> Path:
    """The bundled sample's last 30 weeks, scored with its model."""
    snaps = hs.load_sample().snapshots
    last = snaps["as_of"].max()
    snaps = snaps.filter(pl.col("as_of") > last - dt.timedelta(weeks=cards.TREND_WEEKS + 4))
    path = tmp_path_factory.mktemp("sample") / "scores.parquet"
    hs.score(snaps, hs.load_model(resources.sample_model())).write_parquet(path)
    return path


@pytest.mark.browser
@pytest.mark.notebook
@pytest.mark.slow
def test_cli_writes_one_page_pdf_per_account(sample_scores, tmp_path, capsys):
    _browser_or_fail()
    scores = pl.read_parquet(sample_scores)
    latest = scores.filter(pl.col("as_of") == scores["as_of"].max()).drop_nulls("score").sort("score", "account_id")
    # the lowest-scored account has the longest card (every area red, every next step); and a green one
    ids = [latest["account_id"][0], latest.filter(pl.col("band") == "green")["account_id"][0]]
    out = tmp_path / "cards"
    argv = _argv(sample_scores, resources.sample_model(), out, "--accounts", ",".join(ids), "--workers", "1")

    assert cli.main([*argv, "--pdf"]) == 0
    assert "2 PDFs (A4)" in capsys.readouterr().out
    first = pl.read_csv(out / "manifest.csv")
    assert first["status"].to_list() == ["rendered", "rendered"]
    assert first["pdf"].to_list() == [f[: -len(".html")] + ".pdf" for f in first["file"]]
    assert first["paper"].to_list() == ["A4", "A4"]
    pages = {f: (out / f).stat().st_mtime_ns for f in first["file"]}
    for name in first["pdf"]:
        data = (out / name).read_bytes()
        assert data.startswith(b"%PDF-") and pdf_pages(data) == 1, name
        assert abs(media_box(data)[0] - SIZES["A4"][0]) < 2
    index = (out / "index.html").read_text()
    assert all(f'href="{name}"' in index for name in first["pdf"])

    # the same pages on Letter: the HTML is unchanged, the PDFs are printed again
    assert cli.main([*argv, "--pdf", "--paper", "letter"]) == 0
    second = pl.read_csv(out / "manifest.csv")
    assert second["status"].to_list() == ["unchanged", "unchanged"]
    assert second["paper"].to_list() == ["Letter", "Letter"]
    assert {f: (out / f).stat().st_mtime_ns for f in second["file"]} == pages
    for name in second["pdf"]:
        data = (out / name).read_bytes()
        assert pdf_pages(data) == 1 and abs(media_box(data)[1] - SIZES["Letter"][1]) < 2, name

    # rendered again without --pdf: the old PDFs, which no longer match the pages, are removed
    assert cli.main([*argv, "--force"]) == 0
    third = pl.read_csv(out / "manifest.csv")
    assert third["pdf"].null_count() == 2 and not list(out.glob("*.pdf"))
    assert not list(out.glob(".*.tmp"))
