"""Atomic file output: a reader never sees a half-written file, and a failure leaves the old one.

Everything healthscore writes (models, scores, reports, sample data) goes through here.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_text(d / "a.txt", "hello")
>>> (d / "a.txt").read_text()
'hello'
>>> oct((d / "a.txt").stat().st_mode & 0o077) == oct(0o077 & ~_umask() & 0o066)
True
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from healthscore.errors import HealthscoreError

try:  # advisory locks: POSIX
    import fcntl
except ImportError:  # Windows: a lock file created exclusively stands in
    fcntl = None  # type: ignore[assignment]


class WriteError(HealthscoreError, OSError):
    """A file could not be written (full disk, quota, file size limit); the old file is kept."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    The parent folder is created when missing. Before the rename the file's data is flushed to
    disk, and after it the folder entry, so a crash leaves either the old or the new file, never
    an empty one. On an exception the temporary file is removed and ``path`` is untouched.
    Temporary files are named ``.<name>.<random>.tmp``; :func:`clean_stale_temporaries` removes
    those that a killed process left behind.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file private (0600); give it the mode an ordinary write would have.
        os.chmod(tmp, 0o666 & ~_umask())
        fsync_file(tmp)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a file's data and metadata to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk; a no-op where folders
    cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder: the data itself is already synced
        pass
    finally:
        os.close(fd)


STALE_SECONDS = 3600.0


def clean_stale_temporaries(folder: str | os.PathLike[str], *, older_than: float = STALE_SECONDS) -> list[Path]:
    """Remove the ``.<name>.<random>.tmp`` files that :func:`atomic_path` leaves when a process is
    killed mid-write, and the folders of that name a streaming score splits a large file into.
    Only those older than ``older_than`` seconds go (0: all), so a write still under way in
    another process is left alone. Returns the paths removed.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / ".a.html.x1y2.tmp").write_text("half"); _ = (d / "a.html").write_text("whole")
    >>> (d / ".s.parquet.k3j4.tmp" / "__split=0").mkdir(parents=True)
    >>> [p.name for p in clean_stale_temporaries(d, older_than=0)], sorted(p.name for p in d.iterdir())
    (['.a.html.x1y2.tmp', '.s.parquet.k3j4.tmp'], ['a.html'])
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    now, removed = time.time(), []
    for p in sorted(root.glob(".*.tmp")):
        try:
            if now - p.stat().st_mtime >= older_than:
                shutil.rmtree(p) if p.is_dir() else p.unlink()  # folders: a split of a large file
                removed.append(p)
        except FileNotFoundError:  # another process finished or removed it meanwhile
            continue
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_parquet(frame: pl.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write ``frame`` as Parquet atomically (zstd; statistics on, so readers can skip row groups)."""
    with _polars_write(path), atomic_path(path) as tmp:
        frame.write_parquet(tmp, compression="zstd", statistics=True)


def write_csv(frame: pl.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write ``frame`` as CSV atomically."""
    with _polars_write(path), atomic_path(path) as tmp:
        frame.write_csv(tmp)


@contextlib.contextmanager
def _polars_write(path: str | os.PathLike[str]) -> Iterator[None]:
    """polars reports a failed write (e.g. 'File too large') as a ComputeError: name the file instead."""
    try:
        yield
    except pl.exceptions.PolarsError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WriteError(
            f"could not write {path}: {reason}; check free disk space, quota and file size "
            "limits, then run again (the previous file, if any, is unchanged)"
        ) from None


# ------------------------------------------------------------------ folder locks
LOCK_NAME = ".healthscore.lock"


class FolderBusyError(HealthscoreError):
    """Another process is writing into the same output folder."""


@contextlib.contextmanager
def folder_lock(
    folder: str | os.PathLike[str], *, timeout: float = 30.0, what: str = "a batch", poll: float = 0.2
) -> Iterator[Path]:
    """Hold the folder's lock file (``.healthscore.lock``) while writing into it.

    A second writer waits up to ``timeout`` seconds, then raises :class:`FolderBusyError` naming
    the holder (process id, host, start time). The lock is an advisory ``flock``, so a killed
    holder releases it at once; the file is removed on release.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> with folder_lock(d) as lock:
    ...     lock.name
    '.healthscore.lock'
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_NAME
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        fd = _try_lock(path)
        if fd is not None:
            break
        if time.monotonic() >= deadline:
            try:
                holder = path.read_text().strip() or "unknown process"
            except OSError:
                holder = "unknown process"
            raise FolderBusyError(
                f"{root}: another process is writing into this folder ({holder}); waited {timeout:g} s. "
                "Wait for it to finish and run again, or write to another folder (--out). If no such "
                f"process is running any more, delete {path}."
            )
        time.sleep(poll)
    try:
        os.ftruncate(fd, 0)
        os.write(
            fd,
            f"{what}: pid {os.getpid()} on {socket.gethostname()} since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(),
        )
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _try_lock(path: Path) -> int | None:
    """An open, locked descriptor of ``path``, or None while another process holds it."""
    if fcntl is None:
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    try:
        same = os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:  # the holder removed it as we locked it: try again with a new file
        same = False
    if not same:
        os.close(fd)
        return None
    return fd
