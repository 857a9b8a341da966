"""Print static HTML pages (scorecards) to PDF with headless Chromium.

The browser is the system's Chromium (Debian's ``chromium`` package), driven through Playwright.
:func:`find_chromium` looks for it; :func:`require_chromium` stops with one line saying what to
install, so a command can refuse ``--pdf`` before it renders anything. Pages are printed with their
print stylesheet on A4 or US Letter, and each PDF is written atomically.

>>> paper_format("letter")
'Letter'
>>> find_chromium(env={"PATH": ""}) is None
True
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from healthscore.errors import UsageError
from healthscore.io import files

__all__ = ["ENV", "PAPERS", "BrowserMissing", "find_chromium", "paper_format", "print_pdfs", "require_chromium"]

ENV = "HEALTHSCORE_CHROMIUM"  # names the browser program explicitly (a path or a name on PATH)
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PAPERS = {"a4": "A4", "letter": "Letter"}
INSTALL = "install Debian's chromium package (apt-get install chromium)"
# a quiet browser: no first-run pages, no background traffic, no updates
ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class BrowserMissing(UsageError):
    """PDFs were asked for, but no Chromium (or no Playwright to drive it) is installed."""


def paper_format(paper: str) -> str:
    """The browser's name for a paper size: ``a4`` or ``letter`` (any case)."""
    key = str(paper).strip().lower()
    if key not in PAPERS:
        raise UsageError(f"--paper {paper}: choose one of {', '.join(PAPERS)}")
    return PAPERS[key]


def find_chromium(*, env: Mapping[str, str] | None = None) -> Path | None:
    """The Chromium program to print with, or None.

    ``HEALTHSCORE_CHROMIUM`` in ``env`` (default: this process's environment) names it, as a path
    or a program name; otherwise the first of chromium, chromium-browser, google-chrome on PATH.
    """
    env = os.environ if env is None else env
    search = env.get("PATH", "")
    named = env.get(ENV, "").strip()
    for name in [named] if named else NAMES:
        found = shutil.which(name, path=search)
        if found:
            return Path(found)
    return None


def require_chromium(*, flag: str = "--pdf", env: Mapping[str, str] | None = None) -> Path:
    """The Chromium program, or :class:`BrowserMissing` saying what to install (``flag`` is the
    option that asked for PDFs, named in the message)."""
    env = os.environ if env is None else env
    program = find_chromium(env=env)
    named = env.get(ENV, "").strip()
    if program is None and named:
        raise BrowserMissing(
            f"{flag} prints with Chromium, but {ENV}={named} is not a program that can run: point it at "
            f"the chromium program, or unset it and {INSTALL}, or drop {flag}"
        )
    if program is None:
        raise BrowserMissing(f"{flag} prints with headless Chromium and none was found: {INSTALL} or drop {flag}")
    if importlib.util.find_spec("playwright") is None:
        raise BrowserMissing(
            f"{flag} drives Chromium through the Python package playwright, which is not installed: "
            f"pip install 'healthscore[pdf]' or drop {flag}"
        )
    return program


def print_pdfs(
    pages: Iterable[tuple[str | os.PathLike[str], str | os.PathLike[str]]],
    *,
    paper: str = "a4",
    chromium: str | os.PathLike[str] | None = None,
) -> list[str | None]:
    """Print each ``(html, pdf)`` pair: the HTML page with its print stylesheet, backgrounds on, on
    ``paper``; the PDF is written atomically. One browser serves all pages; the page may load
    only local files (``file:`` and ``data:``), never the network.

    Returns one entry per pair: None when printed, else why not (the other pages still print).
    Raises :class:`BrowserMissing` when no browser is found (before anything is written).

    Example (needs Chromium, so it is shown rather than run here)::

        print_pdfs([("build/cards/A1.html", "build/cards/A1.pdf")], paper="letter")
    """
    jobs = [(Path(h), Path(p)) for h, p in pages]
    fmt = paper_format(paper)
    program = Path(chromium) if chromium is not None else require_chromium()
    if not jobs:
        return []
    from playwright.sync_api import Route, sync_playwright  # an optional dependency, needed only to print

    def local_only(route: Route) -> None:
        url = route.request.url
        if url.startswith("file:") or url.startswith("data:"):
            route.continue_()
        else:
            route.abort()

    results: list[str | None] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(program), args=ARGS)
        try:
            for html, target in jobs:
                page = browser.new_page()
                try:
                    page.route("**/*", local_only)
                    page.goto(html.resolve().as_uri(), wait_until="load")
                    files.write_bytes(target, page.pdf(format=fmt, print_background=True))
                    results.append(None)
                except Exception as exc:  # one page's failure must not stop the others
                    first = (str(exc).strip().splitlines() or [""])[0]
                    results.append(f"PDF not printed: {type(exc).__name__}: {first}")
                finally:
                    page.close()
        finally:
            browser.close()
    return results
