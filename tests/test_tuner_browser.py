"""The tuner in a real browser: JupyterLab headless + Debian's Chromium driven by Playwright.

Opens notebooks/tune_weights.ipynb (a copy, on a small sample) in a 1280x800 window, runs all
cells, moves a weight slider with the keyboard and checks that the AUC and band counts on screen
change; checks that nothing in the evidence panel (chart titles, tables) is clipped at that size;
fits weights and checks that "adopt all", which lowers coverage on this sample, shows a red warning
and changes nothing until the confirmation box is ticked. Screenshots are kept under the test's
temporary directory (the path is printed). Without /usr/bin/chromium the test fails, unless
HEALTHSCORE_NO_BROWSER=1 says this machine has no browser on purpose.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import healthscore as hs
import nbformat
import pytest
from healthscore.app import pdf

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
VIEWPORT = {"width": 1280, "height": 800}

# Every box in the evidence panel that could cut its content (the panel, its HTML blocks and
# tables, the chart containers and their SVG) and every chart title: a box is clipped when its
# content is wider than it (scrollWidth > clientWidth); a title when it reaches outside its
# chart's box or the panel. Returns the offenders with their sizes.
CLIPPED_JS = """
() => {
  const panel = document.querySelector('.hs-tuner-evidence');
  if (!panel) return ['no evidence panel'];
  const out = [];
  const boxes = [panel, document.querySelector('.hs-tuner'),
                 ...panel.querySelectorAll('.widget-html, .widget-html-content, table, .vega-embed')];
  for (const e of boxes) {
    if (e.scrollWidth > e.clientWidth + 1)
      out.push(`${e.className || e.tagName}: scrollWidth ${e.scrollWidth} > clientWidth ${e.clientWidth}`);
  }
  const p = panel.getBoundingClientRect();
  if (p.right > document.documentElement.clientWidth + 1) out.push(`panel ends at ${p.right}px, off the window`);
  const titles = panel.querySelectorAll('.vega-embed svg .role-title text');
  if (titles.length < 4) out.push(`expected two titles and two subtitles, found ${titles.length}`);
  for (const t of titles) {
    const r = t.getBoundingClientRect(), c = t.closest('.vega-embed').getBoundingClientRect();
    if (r.left < c.left - 1 || r.right > c.right + 1 || r.right > p.right + 1 || r.width === 0)
      out.push(`title '${t.textContent}' spans ${r.left}..${r.right}, chart ${c.left}..${c.right}, panel ..${p.right}`);
  }
  return out;
}
"""
FLAGS = ["--headless", "--no-sandbox", *pdf.ARGS]  # the quiet browser the PDF printer uses

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"JupyterLab exited with status {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"JupyterLab did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _lab_root(tmp: Path) -> Path:
    """A folder laid out like the repository: notebooks/ + a small data/ sample."""
    (tmp / "notebooks").mkdir(parents=True)
    (tmp / "data").mkdir()
    # the user's own files, written into the parameter cell as a user would (relative to the notebook)
    nb = nbformat.read(ROOT / "notebooks" / "tune_weights.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    own = {"snapshots": "../data/snapshots.parquet", "events": "../data/events.parquet", "model": "../data/model.toml"}
    lines = cell.source.splitlines()
    for i, line in enumerate(lines):
        name = line.split("=", 1)[0].strip()
        if name in own:
            lines[i] = f'{name} = "{own.pop(name)}"'
    assert not own, f"the parameter cell no longer sets {sorted(own)}"
    cell.source = "\n".join(lines)
    nbformat.write(nb, tmp / "notebooks" / "tune_weights.ipynb")
    shutil.copy(ROOT / "data" / "model.toml", tmp / "data")
    p = hs.datasets.make_portfolio(n_accounts=200, n_weeks=40, seed=5)
    p.snapshots.write_parquet(tmp / "data" / "snapshots.parquet")
    p.events.write_parquet(tmp / "data" / "events.parquet")
    return tmp


def test_slider_moves_auc_in_jupyterlab(tmp_path):
    if os.environ.get("HEALTHSCORE_NO_BROWSER") == "1":
        pytest.skip("HEALTHSCORE_NO_BROWSER=1: this machine runs without a browser on purpose")
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium; .ci/run does "
        "this), or set HEALTHSCORE_NO_BROWSER=1 to leave the browser test out on purpose"
    )
    from playwright.sync_api import sync_playwright

    root = _lab_root(tmp_path / "lab")
    home = tmp_path / "jupyter"
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
    )
    # the kernel imports the healthscore under test, whatever the server's working folder
    package_root = str(Path(hs.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    port, token = _free_port(), secrets.token_hex(16)
    log = tmp_path / "lab.log"
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        f"--port={port}",
        "--ip=127.0.0.1",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    artifacts = tmp_path / "artifacts"  # kept with pytest's temporary directories
    artifacts.mkdir()
    shot = artifacts / "tuner_browser.png"
    print(f"screenshots: {artifacts}")
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root)
    try:
        _wait_for_server(f"http://127.0.0.1:{port}/api/status?token={token}", proc, log)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
            try:
                page = browser.new_page(viewport=VIEWPORT)
                page.set_default_timeout(60_000)
                page.goto(f"http://127.0.0.1:{port}/lab/tree/notebooks/tune_weights.ipynb?token={token}")
                page.wait_for_selector(".jp-NotebookPanel", timeout=120_000)
                try:  # JupyterLab may ask which kernel to start
                    page.wait_for_selector(".jp-Dialog .jp-mod-accept", timeout=5_000)
                    page.click(".jp-Dialog .jp-mod-accept")
                except Exception:
                    pass
                page.wait_for_selector("text=/Python 3 \\(ipykernel\\) \\| Idle/", timeout=120_000)
                page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
                page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
                auc = page.locator(".hs-auc")
                auc.wait_for(state="visible", timeout=240_000)
                page.locator(".hs-tuner .vega-embed").first.wait_for(state="visible", timeout=60_000)
                no_news = page.get_by_role("button", name="No", exact=True)
                if no_news.count() and no_news.first.is_visible():  # the "Jupyter news?" toast
                    no_news.first.click()
                before_auc = auc.inner_text()
                before_counts = page.locator(".hs-tuner-bands").inner_text()
                assert re.fullmatch(r"0\.\d{3}", before_auc), before_auc

                handle = page.locator(".hs-w-login_days .noUi-handle")
                handle.scroll_into_view_if_needed()
                handle.focus()
                for _ in range(30):  # +3.0 in steps of 0.1
                    handle.press("ArrowRight")
                page.wait_for_function(
                    "([before]) => { const e = document.querySelector('.hs-auc');"
                    " return e && e.textContent.trim() !== before; }",
                    arg=[before_auc],
                    timeout=60_000,
                )
                after_auc = auc.inner_text()
                after_counts = page.locator(".hs-tuner-bands").inner_text()
                readout = page.locator(".hs-w-login_days .widget-readout").inner_text()
                assert after_auc != before_auc
                assert after_counts != before_counts
                assert float(readout) == pytest.approx(5.0)  # 2.0 in the model + 3.0
                assert "(edited)" in page.locator(".hs-tuner").inner_text()
                # a change this small is within the noise: no colour, and it says so
                change = page.locator(".hs-auc-change")
                if change.get_attribute("data-measurable") == "no":
                    assert "no measurable change" in change.inner_text()
                    assert change.evaluate("e => getComputedStyle(e).color") == "rgb(119, 119, 119)"

                # readable at 1280x800: nothing in the evidence panel is cut off
                page.locator(".hs-tuner-evidence .vega-embed svg .role-title").first.wait_for(timeout=60_000)
                assert page.evaluate(CLIPPED_JS) == []
                page.locator(".hs-tuner-summary").scroll_into_view_if_needed()
                page.screenshot(path=str(artifacts / "evidence_1280x800.png"))  # what the reader sees

                # fit, then adopt all: on this sample it leaves accounts unscored, so it must wait
                page.locator(".hs-tuner button", has_text="fit weights").click()
                page.locator(".hs-suggest").first.wait_for(state="visible", timeout=300_000)
                auc_before_adopt = auc.inner_text()
                counts_before_adopt = page.locator(".hs-tuner-bands").inner_text()
                page.locator(".hs-adopt-all").click()
                warning = page.locator(".hs-adopt-warning .hs-coverage-warning")
                warning.wait_for(state="visible", timeout=60_000)
                assert "accounts unscored" in warning.inner_text()
                assert warning.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(192, 57, 43)"
                confirm = page.locator(".hs-confirm-drop input[type=checkbox]")
                assert confirm.is_visible() and not confirm.is_checked()
                page.wait_for_timeout(1_000)  # give a wrongful update time to show
                assert auc.inner_text() == auc_before_adopt  # blocked: the figures did not move
                assert page.locator(".hs-tuner-bands").inner_text() == counts_before_adopt
                assert "confirmation" in page.locator(".hs-tuner-status").inner_text()
                assert page.evaluate(CLIPPED_JS) == []
                warning.scroll_into_view_if_needed()
                page.screenshot(path=str(artifacts / "adopt_all_blocked.png"))
                confirm.check()
                page.locator(".hs-adopt-all").click()
                page.locator(".hs-tuner-coverage .hs-coverage-warning").wait_for(state="visible", timeout=60_000)
                warning.wait_for(state="detached", timeout=60_000)
                assert page.locator(".hs-tuner-bands").inner_text() != counts_before_adopt
                assert page.evaluate(CLIPPED_JS) == []
                page.locator(".hs-tuner-coverage").scroll_into_view_if_needed()
                page.screenshot(path=str(shot))
            except Exception:
                page.screenshot(path=str(artifacts / "tuner_browser_failure.png"))
                raise
            finally:
                browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    assert shot.exists() and shot.stat().st_size > 10_000
