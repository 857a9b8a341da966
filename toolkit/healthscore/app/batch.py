"""Batch rendering: scorecards for many accounts in warm kernels (pages, index, manifest) and
the cohort review, each an executed notebook exported as a static page."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import polars as pl

from healthscore import resources
from healthscore.analysis.scorecard import (
    INDEX_COLUMNS,
    _band_table,
    accounts_by_risk,
    load_scores,
    order_by_risk,
    peer_figures,
)
from healthscore.app import pdf as pdf_print
from healthscore.core.scoring import check_scores
from healthscore.io import files
from healthscore.render.index import index_csv_frame, index_page
from healthscore.render.reports import (
    TEMPLATE_NAME,
    TEMPLATES,
    _html_exporter,
    export_html,
)
from healthscore.results import Summary
from healthscore.spec.model import load_model

NOTEBOOK = resources.notebook("scorecard")
MANIFEST_COLUMNS = {
    "account_id": pl.String,
    "company_name": pl.String,
    "status": pl.String,
    "file": pl.String,
    "model_hash": pl.String,
    "data_hash": pl.String,
    "notebook_hash": pl.String,
    "as_of": pl.String,
    "seconds": pl.Float64,
    "error": pl.String,
    "score": pl.Float64,
    "band": pl.String,
    "pdf": pl.String,
    "paper": pl.String,
}
_DONE = ("rendered", "unchanged")
# names an account page may never take (compared without case): the folder's own files, and the
# device names Windows refuses as file names
RESERVED = frozenset(
    {"index", "manifest", "con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
)
_PAGE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*\.html")
_PROTO = "@@healthscore "  # marks protocol lines in a worker's output
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(account_id: str) -> str:
    """A file name for an account id that cannot leave its folder, take a reserved name
    (``index``, ``manifest``, ...) or collide with another id.

    >>> safe_name("ACME-001")
    'ACME-001'
    >>> safe_name("../x")            # path characters are replaced and a short hash keeps it unique
    'x-d6b96a97'
    >>> safe_name("index")           # the folder's own index page is never overwritten
    'index-1bc04b52'
    """
    base = _SAFE.sub("_", account_id).strip("._")[:80] or "account"
    if base == account_id and base.lower() not in RESERVED:
        return base
    return _hashed_name(account_id)


def _hashed_name(account_id: str) -> str:
    base = _SAFE.sub("_", account_id).strip("._")[:80] or "account"
    return f"{base}-{hashlib.sha256(account_id.encode()).hexdigest()[:8]}"


def page_files(ids: list[str], earlier: dict[str, str] | None = None) -> dict[str, str]:
    """The page file of each account: ``safe_name`` + ``.html``, unique without regard to case
    (``ACME`` and ``acme`` would share one file on macOS and Windows, and in a zip).

    ``earlier`` maps the accounts of earlier runs in the folder to their files: they keep them,
    so links stay valid, and a new account never takes one. An account whose plain name clashes
    gets the hashed form (name plus a short hash of the exact id).

    >>> page_files(["ACME", "acme", "b"])
    {'ACME': 'ACME-a8308e8e.html', 'acme': 'acme-822b33ad.html', 'b': 'b.html'}
    >>> page_files(["acme"], earlier={"ACME": "ACME.html"})
    {'acme': 'acme-822b33ad.html'}
    """
    earlier = {a: f for a, f in (earlier or {}).items() if f and _PAGE.fullmatch(f) and f[:-5].lower() not in RESERVED}
    out: dict[str, str] = {}
    taken: dict[str, str] = {}  # lower-case file -> account
    for aid, f in earlier.items():
        if taken.setdefault(f.lower(), aid) == aid:
            if aid in ids:
                out[aid] = f
    new = [a for a in ids if a not in out]
    plain = {a: safe_name(a) + ".html" for a in new}
    counts: dict[str, int] = {}
    for f in plain.values():
        counts[f.lower()] = counts.get(f.lower(), 0) + 1
    for aid in new:
        f = plain[aid]
        if counts[f.lower()] > 1 or taken.get(f.lower(), aid) != aid:
            f = _hashed_name(aid) + ".html"
        if taken.get(f.lower(), aid) != aid:
            raise ValueError(
                f"account ids {taken[f.lower()]!r} and {aid!r} map to the same page file {f!r}; "
                "write them into different folders"
            )
        taken[f.lower()] = aid
        out[aid] = f
    return {a: out[a] for a in ids}


def _sha(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:12]


def _select_accounts(scores: pl.DataFrame, accounts: str | list[str]) -> list[str]:
    """``all``, ``column=value`` (e.g. ``segment=smb``), a comma-separated string or a list of ids."""
    if isinstance(accounts, str):
        spec = accounts.strip()
        if spec == "all":
            return scores["account_id"].unique().sort().to_list()
        if "=" in spec:
            col, value = (s.strip() for s in spec.split("=", 1))
            if col not in scores.columns:
                raise ValueError(f"--accounts {spec!r}: the scores have no column {col!r}")
            ids = scores.filter(pl.col(col).cast(pl.String) == value)["account_id"].unique().sort().to_list()
            if not ids:
                raise ValueError(f"--accounts {spec!r}: no account has {col} = {value!r}")
            return ids
        accounts = [a.strip() for a in spec.split(",") if a.strip()]
    return list(dict.fromkeys(str(a) for a in accounts))


def _rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        import psutil  # optional: memory figures only

        return psutil.Process(pid).memory_info().rss / 2**20
    except Exception:  # the process is gone or psutil is missing: no figure rather than a crash
        return None


class WarmKernel:
    """One long-lived kernel that runs a parameterised notebook again and again.

    Parameters are injected the way papermill does (``parameterize_notebook``); the user's
    variables are deleted before each run so nothing of the previous account survives, while
    imported modules and file caches stay warm. No input/output history is kept, so memory stays
    flat however many accounts one kernel renders.
    """

    # cheaper than %reset (which runs a full garbage collection: ~0.5 s with altair loaded)
    _CLEAR = (
        "_ip = get_ipython()\n"
        "for _k in [k for k in _ip.user_ns if not k.startswith('_') and k not in _ip.user_ns_hidden]:\n"
        "    del _ip.user_ns[_k]"
    )

    # run once per kernel: the imports and the chart engine's start-up (~1 s) are paid before the
    # first account, while the parent is still preparing
    _WARM_UP = (
        "import altair, vl_convert\n"
        "from healthscore import reports\n"
        "vl_convert.vegalite_to_svg({'mark': 'point', 'data': {'values': [{'x': 1}]},\n"
        "                            'encoding': {'x': {'field': 'x', 'type': 'quantitative'}}})"
    )

    def __init__(
        self,
        notebook: str | os.PathLike[str] = NOTEBOOK,
        *,
        timeout: int = 300,
        cwd: str | os.PathLike[str] | None = None,
        warm_up: bool = True,
        while_starting: Any = None,
    ) -> None:
        """``while_starting`` (a callable) runs while the kernel process boots."""
        from nbclient import NotebookClient  # the notebook client is needed only to run a notebook
        from papermill.iorw import load_notebook_node  # papermill is needed only to run a notebook

        self.template = load_notebook_node(str(notebook))  # adds the metadata papermill relies on
        kernel = self.template.metadata.get("kernelspec", {}).get("name", "python3")
        self.client = NotebookClient(
            nbformat.v4.new_notebook(),
            timeout=timeout,
            kernel_name=kernel,
            resources={"metadata": {"path": str(cwd or os.getcwd())}},
            extra_arguments=["--HistoryManager.enabled=False"],
        )
        self._warm_up = warm_up
        self._start(while_starting)

    def _start(self, while_starting: Any = None) -> None:
        self.client.km = self.client.create_kernel_manager()
        self.client.start_new_kernel()  # launches the process
        if while_starting is not None:
            while_starting()
        self.client.start_new_kernel_client()  # waits until the kernel answers
        if self._warm_up:
            cell = nbformat.v4.new_code_cell(self._WARM_UP)
            self.client.nb = nbformat.v4.new_notebook(cells=[cell])
            self.client.execute_cell(cell, 0, store_history=False)

    @property
    def kernel_pid(self) -> int | None:
        prov = getattr(self.client.km, "provisioner", None)
        return getattr(prov, "pid", None) or getattr(getattr(prov, "process", None), "pid", None)

    def run(self, parameters: dict[str, Any]) -> nbformat.NotebookNode:
        """Execute the notebook with ``parameters``; returns the executed notebook.

        Raises nbclient's ``CellExecutionError`` when a cell fails; the kernel is restarted when it
        died or timed out, so the next run starts clean."""
        from nbclient.exceptions import (  # the notebook client is needed only to run a notebook
            CellTimeoutError,
            DeadKernelError,
        )
        from papermill.parameterize import parameterize_notebook  # papermill is needed only to run a notebook

        nb = parameterize_notebook(copy.deepcopy(self.template), parameters)
        reset = nbformat.v4.new_code_cell(self._CLEAR)
        reset.metadata["tags"] = ["remove-cell"]
        nb.cells.insert(0, reset)
        self.client.nb = nb
        self.client.reset_execution_trackers()
        try:
            for index, cell in enumerate(nb.cells):
                if cell.cell_type == "code":
                    self.client.execute_cell(cell, index, store_history=False)
        except (DeadKernelError, CellTimeoutError):
            self.restart()
            raise
        del nb.cells[0]
        return nb

    def restart(self) -> None:
        self.close()
        self._start()

    def close(self) -> None:
        try:
            self.client._cleanup_kernel()  # stops the channels and shuts the kernel down
        except Exception:  # shutting down a dead kernel must not hide the real error
            pass


def _render_one(kernel: WarmKernel, task: dict[str, Any]) -> dict[str, Any]:
    """Run and export one account; never raises (the error goes into the manifest row)."""
    from nbclient.exceptions import CellExecutionError  # the notebook client is needed only to run a notebook

    t0 = time.perf_counter()
    row = {"account_id": task["account_id"], "status": "rendered", "file": task["file"], "error": None}
    try:
        nb = kernel.run(task["parameters"])
        export_html(nb, Path(task["out_dir"]) / task["file"], title=task["title"])
    except CellExecutionError as exc:
        row.update(status="failed", error=f"{exc.ename}: {exc.evalue}".strip())
    except Exception as exc:  # one account's failure must not sink the batch
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}".strip())
    row["seconds"] = time.perf_counter() - t0
    return row


def _worker_main() -> None:
    """Entry point of a worker process (``python -c``): one warm kernel; tasks arrive as JSON lines
    on stdin, results leave as JSON lines on the original stdout (stray prints go to stderr)."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    notebook, timeout, cwd = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    def send(msg: dict[str, Any]) -> None:
        proto.write(_PROTO + json.dumps(msg, default=str) + "\n")

    kernel = None
    try:
        kernel = WarmKernel(notebook, timeout=timeout, cwd=cwd, while_starting=_html_exporter)
        send({"kind": "ready"})
        for line in sys.stdin:
            row = _render_one(kernel, json.loads(line))
            row["worker_rss_mb"] = _rss_mb(os.getpid())
            row["kernel_rss_mb"] = _rss_mb(kernel.kernel_pid)
            send({"kind": "done", "row": row})
    except BaseException as exc:  # tell the parent why this worker stopped
        send({"kind": "dead", "error": f"{type(exc).__name__}: {exc}"})
    finally:
        if kernel is not None:
            kernel.close()


class _Worker:
    """The parent's handle on one worker process; a thread turns its output into events."""

    def __init__(self, wid: int, notebook: str, timeout: int, log: Path, events: Any) -> None:

        self.wid, self.task = wid, None
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log, "w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from healthscore.app.batch import _worker_main; _worker_main()",
                notebook,
                str(timeout),
                os.getcwd(),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=self._read, args=(events,), daemon=True).start()

    def _read(self, events: Any) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(_PROTO):
                events.put((self, json.loads(line[len(_PROTO) :])))
        events.put((self, {"kind": "eof"}))

    def send(self, task: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.task = task
        self.proc.stdin.write(json.dumps(task) + "\n")
        self.proc.stdin.flush()

    def no_more_tasks(self) -> None:
        """Close stdin: the worker finishes its loop and shuts its kernel down."""
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()

    def close(self) -> None:
        try:
            self.no_more_tasks()
            self.proc.wait(timeout=30)
        except Exception:  # a stuck worker is killed rather than waited for
            self.proc.kill()
        self._log.close()


@dataclass
class ScorecardRun:
    """What ``render_scorecards`` did: the manifest (one row per account), where, and the memory of
    the workers after each report (``memory``: report, worker, worker_rss_mb, kernel_rss_mb)."""

    out_dir: Path
    manifest: pl.DataFrame
    memory: pl.DataFrame
    seconds: float

    def to_frame(self) -> pl.DataFrame:
        """The manifest: one row per account with its status, file and hashes."""
        return self.manifest

    @property
    def failed(self) -> pl.DataFrame:
        return self.manifest.filter(pl.col("status") == "failed")

    @property
    def ok(self) -> bool:
        return self.failed.is_empty()

    def summary(self) -> Summary:
        counts = dict(self.manifest.group_by("status").len().iter_rows())
        parts = [f"{counts.get(s, 0)} {s}" for s in ("rendered", "unchanged", "failed")]
        lines = [
            f"scorecards in {self.out_dir}: " + ", ".join(parts) + f" in {self.seconds:.1f} s",
            f"open {self.out_dir / 'index.html'}",
        ]
        printed = self.manifest.drop_nulls("pdf")
        if printed.height:
            papers = ", ".join(sorted(set(printed["paper"].drop_nulls())))
            lines.insert(1, f"{printed.height} PDF{'s' if printed.height != 1 else ''} ({papers}) beside the pages")
        for r in self.failed.head(10).iter_rows(named=True):
            lines.append(f"  failed {r['account_id']}: {r['error']}")
        return Summary("\n".join(lines))


def _prepare_inputs(scores: pl.DataFrame | str | os.PathLike[str], model: Any, inputs: Path) -> tuple[Path, Any, Path]:
    """Paths the notebook can read: frames and model objects are written into the private work
    folder ``inputs`` (never into the shared output folder)."""

    if isinstance(scores, pl.DataFrame):
        scores_path = inputs / "scores.parquet"
        files.write_parquet(scores, scores_path)
    else:
        scores_path = Path(scores)
        if not scores_path.is_file():
            raise FileNotFoundError(f"{scores_path}: no such scores file; write one with 'healthscore score'")
    if isinstance(model, (str, os.PathLike)):
        model_path = Path(model)
        model = load_model(model_path)
    else:
        model_path = inputs / "model.toml"
        model.save(model_path)
    return scores_path.resolve(), model, model_path.resolve()


def _read_manifest(path: Path) -> pl.DataFrame:
    if not path.is_file():
        return pl.DataFrame(schema=MANIFEST_COLUMNS)
    try:
        old = pl.read_csv(path, schema_overrides=MANIFEST_COLUMNS, infer_schema=False)
        old = old.select(
            [pl.col(c).cast(t) if c in old.columns else pl.lit(None, t).alias(c) for c, t in MANIFEST_COLUMNS.items()]
        )
    except Exception:  # an unreadable manifest only costs a full re-render
        return pl.DataFrame(schema=MANIFEST_COLUMNS)
    # a row still pending belongs to a batch that was stopped before the account finished
    pending = pl.col("status") == "pending"
    return (
        old.drop_nulls("account_id")
        .unique("account_id", keep="last", maintain_order=True)
        .with_columns(
            pl.when(pending).then(pl.lit("failed")).otherwise(pl.col("status")).alias("status"),
            pl.when(pending)
            .then(pl.lit("interrupted: the batch stopped before this account finished; run it again"))
            .otherwise(pl.col("error"))
            .alias("error"),
        )
    )


def pdf_file(page: str) -> str:
    """The PDF beside an account's page: the same safe name with ``.pdf``.

    >>> pdf_file("ACME-001.html")
    'ACME-001.pdf'
    """
    return page[: -len(".html")] + ".pdf" if page.endswith(".html") else page + ".pdf"


INDEX_TITLE = "Customer health scorecards"


# account columns the index shows beside the score (CONTRACTS: snapshot attributes)
ACCOUNT_COLUMNS = ("company_name", "csm", "arr", "renewal_date")


def index_tables(
    folder: pl.DataFrame,
    scores: pl.DataFrame,
    model: Any,
    *,
    current: list[str],
    as_of: str | None = None,
    snapshots: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The rows of the folder's index, riskiest first (see ``accounts_by_risk``), with each
    account's ``page`` and ``pdf`` (null when it has none), and the accounts that failed (account_id,
    company_name, error).

    ``folder`` is the folder's manifest (every account rendered into it); accounts of this run
    (``current``) are described from ``scores``; accounts only earlier runs rendered keep the
    score and band their manifest row recorded, and blanks for the rest. Account columns the
    scores lack (CSM, ARR, renewal date, company name) are taken from ``snapshots`` when given.
    """
    wanted = [c for c in ACCOUNT_COLUMNS if c not in scores.columns]
    if (
        snapshots is not None
        and {"account_id", "as_of"} <= set(snapshots.columns)
        and snapshots.schema["as_of"] == scores.schema["as_of"]
    ):
        wanted = [c for c in wanted if c in snapshots.columns]
        if wanted:
            extra = snapshots.select("account_id", "as_of", *wanted).unique(["account_id", "as_of"], keep="last")
            scores = scores.join(extra, on=["account_id", "as_of"], how="left")
    here = [a for a in current if a in set(scores["account_id"].unique().to_list())]
    risk = accounts_by_risk(scores, model, accounts=here, as_of=as_of)
    earlier = folder.filter(~pl.col("account_id").is_in(risk["account_id"].to_list()))
    old = earlier.select(
        [
            pl.col(c).cast(t, strict=False)
            if c in ("account_id", "company_name", "score", "band") and c in earlier.columns
            else pl.lit(None, t).alias(c)
            for c, t in INDEX_COLUMNS.items()
        ]
    )
    rows = order_by_risk(pl.concat([risk, old], how="vertical"), model.band_order)
    done = pl.col("status").is_in(list(_DONE))
    printed = pl.col("pdf") if "pdf" in folder.columns else pl.lit(None, pl.String)
    pages = folder.select(
        "account_id",
        page=pl.when(done).then(pl.col("file")).otherwise(None),
        # a PDF counts only when it is the one printed beside this page
        pdf=pl.when(done & (printed == (pl.col("file").str.replace(r"\.html$", "") + ".pdf")))
        .then(printed)
        .otherwise(None),
    )
    rows = rows.join(pages, on="account_id", how="left", maintain_order="left")
    names = rows.select("account_id", name=pl.col("company_name"))
    failed = (
        folder.filter(pl.col("status") == "failed")
        .join(names, on="account_id", how="left", maintain_order="left")
        .select("account_id", pl.coalesce("company_name", "name").alias("company_name"), "error")
    )
    return rows, failed


def write_index(out: Path, rows: pl.DataFrame, failed: pl.DataFrame, model: Any, title: str = INDEX_TITLE) -> None:
    """``index.html`` (sortable, searchable, riskiest first) and ``index.csv`` (the same rows in
    the same order) into ``out``, each written atomically."""
    colours = {name: swatch for name, _, _, swatch, _ in _band_table(model)}
    page = index_page(rows, title=title, band_order=model.band_order, colours=colours, failed=failed)
    files.write_text(out / "index.html", page)
    files.write_csv(index_csv_frame(rows), out / "index.csv")


def render_scorecards(
    scores: pl.DataFrame | str | os.PathLike[str],
    model: Any,
    accounts: str | list[str] = "all",
    out_dir: str | os.PathLike[str] = "build/scorecards",
    *,
    internal: bool = False,
    workers: int = 2,
    as_of: str | dt.date | None = None,
    variant: str | None = None,
    peer_by: str = "segment",
    probabilities: str | os.PathLike[str] | None = None,
    snapshots: pl.DataFrame | str | os.PathLike[str] | None = None,
    notebook: str | os.PathLike[str] = NOTEBOOK,
    timeout: int = 300,
    progress: bool = True,
    force: bool = False,
    wait: float = 30.0,
    pdf: bool = False,
    paper: str = "a4",
) -> ScorecardRun:
    """Render one static HTML scorecard per account with the scorecard notebook.

    Each of ``workers`` processes keeps one kernel warm and runs the notebook for account after
    account (parameters injected as papermill does), then exports the HTML in process. Writes
    ``out_dir/<account>.html`` (see :func:`page_files`), ``out_dir/index.html`` (internal: the
    accounts riskiest first, sortable and searchable), ``out_dir/index.csv`` (its rows) and
    ``out_dir/manifest.csv`` (account_id, company_name, status, file, model_hash, data_hash,
    notebook_hash, as_of, seconds, error, score, band). The manifest and the index cover every
    account in the folder: rows of earlier runs stay, and an account rendered again replaces its
    row. ``run.manifest`` holds this run's rows.

    The folder is meant for sharing: the batch's own inputs and worker logs live in a private
    temporary folder that is removed at the end, and half-written files of killed runs are
    removed at the start. A second batch into the same folder waits up to ``wait`` seconds for
    the first, then stops with :class:`healthscore.io.files.FolderBusyError`. Scores produced by
    another model than ``model``, or with one (account_id, as_of) twice, are refused
    (:class:`healthscore.core.scoring.ScoresError`).
    ``snapshots`` (optional) supplies raw metric values for the metric table when the scores do not
    carry them. Accounts already rendered from the same model, data and notebook (and report
    settings) are skipped unless ``force``.
    A failing account is recorded as ``failed`` and the others still complete.

    ``pdf=True`` also prints each page to ``out_dir/<account>.pdf`` (see :func:`pdf_file`) with
    headless Chromium, on ``paper`` (``a4`` or ``letter``), listed in the manifest's ``pdf`` and
    ``paper`` columns. Without a browser it raises :class:`healthscore.app.pdf.BrowserMissing`
    before anything is rendered or written.

    Example (a batch takes seconds per account, so it is shown rather than run here)::

        run = render_scorecards("scores.parquet", "model.toml", "segment=smb", "build/cards")
        print(run.summary())
    """
    t_start = time.perf_counter()
    chromium = None
    if pdf:  # a wrong paper or a missing browser stops here, before any folder or file is written
        pdf_print.paper_format(paper)
        chromium = pdf_print.require_chromium()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with (
        files.folder_lock(out, timeout=wait, what="scorecard batch"),
        tempfile.TemporaryDirectory(prefix="healthscore-scorecards-") as work,
    ):
        _tidy_folder(out)
        return _render_into(
            out,
            Path(work),
            t_start,
            scores,
            model,
            accounts,
            internal=internal,
            workers=workers,
            as_of=as_of,
            variant=variant,
            peer_by=peer_by,
            probabilities=probabilities,
            snapshots=snapshots,
            notebook=notebook,
            timeout=timeout,
            progress=progress,
            force=force,
            paper=paper if chromium is not None else None,
            chromium=chromium,
        )


def _checked_earlier(row: dict[str, Any]) -> dict[str, Any]:
    """An earlier run's manifest row; a page name that is unsafe or reserved (an older version
    could write an account called ``index`` over the index page) no longer counts as rendered."""
    f = row.get("file") or ""
    if row.get("status") in _DONE and (not _PAGE.fullmatch(f) or f[:-5].lower() in RESERVED):
        return {
            **row,
            "status": "failed",
            "error": f"its page {f!r} clashes with the folder's own files; render this account again",
        }
    return row


def _tidy_folder(out: Path) -> None:
    """Before a batch writes: remove the half-written files of killed runs, and the private
    inputs folder that earlier versions kept inside the shared folder (every account's peer
    percentiles, worker logs)."""
    files.clean_stale_temporaries(out, older_than=0)  # we hold the folder's lock: nobody else writes
    legacy = out / ".inputs"
    if legacy.is_dir() and not legacy.is_symlink():
        shutil.rmtree(legacy, ignore_errors=True)


def _log_tail(logs: list[Path], lines: int = 3) -> str:
    tails = []
    for log in logs:
        try:
            text = [t for t in log.read_text(errors="replace").splitlines() if t.strip()]
        except OSError:
            continue
        if text:
            tails.append(" | ".join(text[-lines:]))
    return ("; worker output: " + " || ".join(tails))[:2000] if tails else ""


def _render_into(
    out: Path,
    work: Path,
    t_start: float,
    scores: Any,
    model: Any,
    accounts: Any,
    *,
    internal: bool,
    workers: int,
    as_of: Any,
    variant: str | None,
    peer_by: str,
    probabilities: Any,
    snapshots: Any,
    notebook: Any,
    timeout: int,
    progress: bool,
    force: bool,
    paper: str | None = None,
    chromium: Path | None = None,
) -> ScorecardRun:
    from tqdm.auto import tqdm  # progress bars are loaded only for long runs

    scores_path, model_obj, model_path = _prepare_inputs(scores, model, work)
    snapshots_path = None
    if isinstance(snapshots, pl.DataFrame):
        snapshots_path = (work / "snapshots.parquet").resolve()
        files.write_parquet(snapshots, snapshots_path)
    elif snapshots is not None:
        snapshots_path = Path(snapshots).resolve()
        if not snapshots_path.is_file():
            raise FileNotFoundError(f"{snapshots}: no such snapshots file")
    frame = load_scores(scores_path)
    check_scores(
        frame,
        model_obj,
        scores_source="the scores frame" if isinstance(scores, pl.DataFrame) else f"scores {scores}",
        model_source=f"model {model}" if isinstance(model, (str, os.PathLike)) else "the model given",
    )
    ids = _select_accounts(frame, accounts)
    as_of_s = None if as_of is None else str(as_of)

    # peers once for the whole batch (aggregates only), instead of once per kernel; written below,
    # once the workers are starting
    cohort_path = (work / f"peers-{peer_by}.parquet").resolve() if peer_by in frame.columns else None

    template_bytes = b"".join(p.read_bytes() for p in sorted((TEMPLATES / TEMPLATE_NAME).iterdir()) if p.is_file())
    settings = repr((internal, as_of_s, variant, peer_by, str(probabilities))).encode()
    model_hash = str(model_obj.hash)
    data_hash = _sha(
        scores_path.read_bytes(),
        Path(probabilities).read_bytes() if probabilities else b"",
        snapshots_path.read_bytes() if snapshots_path else b"",
    )
    # the notebook, the template, this module's code and the report settings: any change re-renders
    notebook_hash = _sha(Path(notebook).read_bytes(), template_bytes, Path(__file__).read_bytes(), settings)

    latest = (
        frame.filter(pl.col("account_id").is_in(ids)).filter(pl.col("as_of") <= dt.date.fromisoformat(as_of_s))
        if as_of_s
        else frame.filter(pl.col("account_id").is_in(ids))
    )
    latest = (
        latest.sort("account_id", "as_of")
        .group_by("account_id")
        .last()
        .select("account_id", *[c for c in ("company_name", "score", "band") if c in frame.columns])
    )
    for c in ("company_name", "score", "band"):
        if c not in latest.columns:
            latest = latest.with_columns(pl.lit(None, pl.Float64 if c == "score" else pl.String).alias(c))
    names = dict(zip(latest["account_id"], latest["company_name"]))
    shown = {r["account_id"]: (r["score"], r["band"]) for r in latest.iter_rows(named=True)}

    manifest_path = out / "manifest.csv"
    # rows of earlier runs stay (keyed by account; this run's row replaces an account's old one)
    previous = {r["account_id"]: r for r in _read_manifest(manifest_path).iter_rows(named=True)}
    page = page_files(ids, {a: r["file"] for a, r in previous.items()})
    rows: dict[str, dict[str, Any]] = {}
    tasks = []
    for aid in ids:
        file = page[aid]
        stamp = {"model_hash": model_hash, "data_hash": data_hash, "notebook_hash": notebook_hash}
        score_now, band_now = shown.get(aid, (None, None))
        base = {
            "account_id": aid,
            "company_name": names.get(aid),
            "file": file,
            "as_of": as_of_s,
            "error": None,
            "score": score_now,
            "band": band_now,
            "pdf": None,
            "paper": None,
            **stamp,
        }
        old = previous.get(aid)
        if (
            not force
            and old is not None
            and old["status"] in _DONE
            and (out / file).is_file()
            and old["file"] == file
            and all(old[k] == v for k, v in stamp.items())
            and old["as_of"] == as_of_s
        ):
            kept = old.get("pdf") == pdf_file(file) and (out / pdf_file(file)).is_file()
            rows[aid] = {**base, "status": "unchanged", "seconds": 0.0}
            if kept:  # the PDF of the unchanged page still holds
                rows[aid].update(pdf=old["pdf"], paper=old.get("paper"))
            continue
        rows[aid] = {**base, "status": "pending", "seconds": None}
        params = {
            "account_id": aid,
            "as_of": as_of_s,
            "scores": str(scores_path),
            "model": str(model_path),
            "variant": variant,
            "internal": internal,
            "cohort": str(cohort_path) if cohort_path else None,
            "peer_by": peer_by,
            "probabilities": str(Path(probabilities).resolve()) if probabilities else None,
            "snapshots": str(snapshots_path) if snapshots_path else None,
        }
        tasks.append(
            {
                "index": len(tasks),
                "account_id": aid,
                "file": file,
                "out_dir": str(out),
                "title": f"{names.get(aid) or aid}: health scorecard",
                "parameters": params,
            }
        )

    def merged() -> pl.DataFrame:
        """Earlier runs' rows in their order, updated by this run's, then this run's new ones."""
        order = list(previous) + [a for a in ids if a not in previous]
        table = [rows.get(a) or _checked_earlier(previous[a]) for a in order]
        return pl.DataFrame([{c: r.get(c) for c in MANIFEST_COLUMNS} for r in table], schema=MANIFEST_COLUMNS)

    def write_manifest() -> pl.DataFrame:
        files.write_csv(merged(), manifest_path)
        return pl.DataFrame([rows[a] for a in ids], schema=MANIFEST_COLUMNS)

    memory: list[dict[str, Any]] = []
    if tasks:
        events: queue.Queue = queue.Queue()
        n_workers = max(1, min(int(workers), len(tasks)))
        logs = [work / f"worker-{w}.log" for w in range(n_workers)]
        pool = [_Worker(w, str(Path(notebook).resolve()), timeout, logs[w], events) for w in range(n_workers)]
        todo = list(reversed(tasks))
        live, remaining = n_workers, len(tasks)
        bar = tqdm(total=len(tasks), desc="scorecards", unit="report", disable=not progress)

        def finish(account_id: str, **fields: Any) -> None:
            nonlocal remaining
            rows[account_id].update(fields)
            remaining -= 1
            bar.update()
            write_manifest()

        try:
            if cohort_path is not None:  # written before any task is sent: tasks go out on "ready"
                files.write_parquet(peer_figures(frame, by=peer_by), cohort_path)
            while remaining and live:
                worker, msg = events.get()
                if msg["kind"] == "done":
                    row = msg["row"]
                    worker.task = None
                    memory.append(
                        {
                            "report": len(memory) + 1,
                            "worker": worker.wid,
                            "worker_rss_mb": row.get("worker_rss_mb"),
                            "kernel_rss_mb": row.get("kernel_rss_mb"),
                        }
                    )
                    finish(row["account_id"], status=row["status"], seconds=row["seconds"], error=row["error"])
                if msg["kind"] in ("ready", "done"):
                    if todo:
                        worker.send(todo.pop())
                    else:
                        worker.no_more_tasks()
                elif msg["kind"] in ("dead", "eof"):
                    live -= msg["kind"] == "eof"
                    if worker.task is not None:  # the account it was rendering goes down with it
                        finish(
                            worker.task["account_id"],
                            status="failed",
                            seconds=None,
                            error=msg.get("error") or "worker process stopped",
                        )
                        worker.task = None
        finally:
            bar.close()
            for w in pool:
                w.close()
        for r in rows.values():
            if r["status"] == "pending":
                r.update(status="failed", error="not rendered: no worker could start a kernel" + _log_tail(logs))
    if chromium is not None and paper is not None:
        _print_pages(out, rows, ids, paper, chromium)
    else:  # a page rendered again without --pdf: its old PDF would no longer match it
        for aid in ids:
            old = previous.get(aid)
            if rows[aid]["status"] == "rendered" and old is not None and old.get("pdf") == pdf_file(rows[aid]["file"]):
                (out / pdf_file(rows[aid]["file"])).unlink(missing_ok=True)
    manifest = write_manifest()
    folder = merged()  # the index lists every account in the folder, from this run and earlier ones
    raw = load_scores(snapshots_path) if snapshots_path is not None else None
    rows, failed = index_tables(folder, frame, model_obj, current=ids, as_of=as_of_s, snapshots=raw)
    write_index(out, rows, failed, model_obj)
    return ScorecardRun(
        out_dir=out,
        manifest=manifest,
        memory=pl.DataFrame(
            memory,
            schema={"report": pl.Int64, "worker": pl.Int64, "worker_rss_mb": pl.Float64, "kernel_rss_mb": pl.Float64},
        ),
        seconds=time.perf_counter() - t_start,
    )


def _print_pages(out: Path, rows: dict[str, dict[str, Any]], ids: list[str], paper: str, chromium: Path) -> None:
    """Print the PDF beside each page of this run (an unchanged page keeps a PDF already printed on
    the same paper); a page that cannot be printed marks its account failed."""
    name = pdf_print.paper_format(paper)
    todo = []
    for aid in ids:
        r = rows[aid]
        if r["status"] not in _DONE:
            continue
        target = pdf_file(r["file"])
        if r["status"] == "unchanged" and r.get("pdf") == target and r.get("paper") == name:
            continue
        todo.append(aid)
    try:
        results = pdf_print.print_pdfs(
            [(out / rows[a]["file"], out / pdf_file(rows[a]["file"])) for a in todo], paper=paper, chromium=chromium
        )
    except Exception as exc:  # the browser did not start: every page of this run goes without its PDF
        first = (str(exc).strip().splitlines() or [""])[0]
        results = [f"PDF not printed: the browser {chromium} did not start: {type(exc).__name__}: {first}"] * len(todo)
    for aid, error in zip(todo, results):
        if error is None:
            rows[aid].update(pdf=pdf_file(rows[aid]["file"]), paper=name)
        else:
            rows[aid].update(status="failed", error=error, pdf=None, paper=None)


# ===================================================================== cohort review
REVIEW_NOTEBOOK = resources.notebook("cohort_review")


def render_review(
    data: str | os.PathLike[str] | pl.DataFrame,
    out: str | os.PathLike[str],
    *,
    events: str | os.PathLike[str] | pl.DataFrame | None = None,
    model: str | os.PathLike[str] | None = None,
    by: str = "segment",
    date_from: str | None = None,
    date_to: str | None = None,
    horizon: str = "90d",
    timeout: int = 900,
) -> Path:
    """Run ``notebooks/cohort_review.ipynb`` with papermill and write the leadership cohort review
    as one static HTML file with no code: executive summary first, then the detail.

    ``data`` holds snapshots (scored with ``model``) or a score frame; frames are passed through
    a temporary Parquet file. Returns the path written.

    Example (a papermill run; the tests execute it)::

        render_review("data/snapshots.parquet", "review.html", events="data/events.parquet",
                      model="data/model.toml", by="segment")
    """
    import papermill as pm  # papermill is needed only to run a notebook
    from papermill.exceptions import PapermillExecutionError  # papermill is needed only to run a notebook

    _check_review_scores(data, model)
    with tempfile.TemporaryDirectory(prefix="hs-review-") as tmp:

        def _path(value: Any, name: str) -> str | None:
            if value is None:
                return None
            if isinstance(value, pl.DataFrame):
                target = Path(tmp) / f"{name}.parquet"
                value.write_parquet(target)
                return str(target)
            if not Path(value).exists():
                raise FileNotFoundError(f"{value}: no such file (the {name} for the cohort review)")
            return str(Path(value).resolve())

        params = {
            "data": _path(data, "data"),
            "events": _path(events, "events"),
            "model": _path(model, "model"),
            "by": by,
            "date_from": None if date_from is None else str(date_from),
            "date_to": None if date_to is None else str(date_to),
            "horizon": horizon,
        }
        try:
            nb = pm.execute_notebook(
                str(REVIEW_NOTEBOOK),
                str(Path(tmp) / "review.ipynb"),
                parameters=params,
                kernel_name="python3",
                progress_bar=False,
                execution_timeout=timeout,
                cwd=str(REVIEW_NOTEBOOK.parent),
                # a local kernel on loopback: its start-up warning about TCP is noise
                extra_arguments=["--IPKernelApp.log_level=ERROR"],
            )
        except PapermillExecutionError as exc:
            # the notebook's error names the file, column or setting; show it without the traceback
            raise ValueError(f"the cohort review could not be built: {exc.ename}: {exc.evalue}") from None
    export_html(
        nbformat.from_dict(nb),
        out,
        title="Cohort review by " + " x ".join(b.strip().replace("_", " ") for b in by.split(",")),
    )
    return Path(out)


def _check_review_scores(data: Any, model: Any) -> None:
    """A score frame handed to the review must come from ``model`` (when given) and hold each
    (account_id, as_of) once; snapshots are scored inside the notebook and need no check."""

    if isinstance(data, pl.DataFrame):
        lf, label = data.lazy(), "the review data"
    else:
        path = Path(data)
        suffix = path.suffix.lower()
        if not path.is_file() or suffix not in {".parquet", ".pq", ".csv"}:
            return  # the notebook reports what it cannot read
        lf = pl.scan_parquet(path) if suffix != ".csv" else pl.scan_csv(path, infer_schema=False)
        label = f"--data {data}"
    columns = lf.collect_schema().names()
    if "score" not in columns:
        return
    if "as_of" in columns and lf.collect_schema()["as_of"] == pl.String:
        lf = lf.with_columns(pl.col("as_of").str.strip_chars())
    score_model = load_model(model) if model is not None else None
    check_scores(
        lf, score_model, scores_source=label, model_source=f"--model {model}" if model is not None else "the model"
    )


def one_per_band(scores: pl.DataFrame, bands: tuple[str, ...] = ("green", "yellow", "red")) -> list[str]:
    """One account per band at the latest date (the middle one by score within its band), e.g. to
    show what each band's scorecard looks like.

    >>> f = pl.DataFrame({"account_id": list("abcd"), "as_of": [dt.date(2026, 1, 5)] * 4,
    ...                   "score": [90.0, 50.0, 10.0, 80.0], "band": ["green", "yellow", "red", "green"]})
    >>> one_per_band(f)
    ['a', 'b', 'c']
    """
    latest = scores.filter(pl.col("as_of") == pl.col("as_of").max()).drop_nulls("score")
    picked = []
    for band in bands:
        rows = latest.filter(pl.col("band") == band).sort("score", "account_id")
        if rows.height:
            picked.append(rows["account_id"][rows.height // 2])
    return picked
