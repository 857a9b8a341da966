"""The tuner in a real browser: JupyterLab headless + Debian's Chromium driven by Playwright.

Opens notebooks/tune_weights.ipynb (a copy, on a small sample), runs all cells, moves a weight
slider with the keyboard and checks that the AUC and band counts on screen change. A screenshot
is saved under build/test-artifacts/. Without /usr/bin/chromium the test fails, unless
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
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "build" / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

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
    shutil.copy(ROOT / "notebooks" / "tune_weights.ipynb", tmp / "notebooks")
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
        "this), or set HEALTHSCORE_NO_BROWSER=1 to leave the browser test out on purpose")
    from playwright.sync_api import sync_playwright

    root = _lab_root(tmp_path / "lab")
    home = tmp_path / "jupyter"
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"))
    port, token = _free_port(), secrets.token_hex(16)
    log = tmp_path / "lab.log"
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.news_url=",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "tuner_browser.png"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root)
    try:
        _wait_for_server(f"http://127.0.0.1:{port}/api/status?token={token}", proc, log)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1700, "height": 2000})
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
                if no_news.count() and no_news.first.is_visible():   # the "Jupyter news?" toast
                    no_news.first.click()
                before_auc = auc.inner_text()
                before_counts = page.locator(".hs-tuner-bands").inner_text()
                assert re.fullmatch(r"0\.\d{3}", before_auc), before_auc

                handle = page.locator(".hs-w-login_days .noUi-handle")
                handle.scroll_into_view_if_needed()
                handle.focus()
                for _ in range(30):               # +3.0 in steps of 0.1
                    handle.press("ArrowRight")
                page.wait_for_function(
                    "([before]) => { const e = document.querySelector('.hs-auc');"
                    " return e && e.textContent.trim() !== before; }", arg=[before_auc], timeout=60_000)
                after_auc = auc.inner_text()
                after_counts = page.locator(".hs-tuner-bands").inner_text()
                readout = page.locator(".hs-w-login_days .widget-readout").inner_text()
                page.locator(".hs-tuner").screenshot(path=str(shot))
                assert after_auc != before_auc
                assert after_counts != before_counts
                assert float(readout) == pytest.approx(5.0)     # 2.0 in the model + 3.0
                assert "(edited)" in page.locator(".hs-tuner").inner_text()
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "tuner_browser_failure.png"))
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
