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
import tempfile
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from healthscore.errors import HealthscoreError


class WriteError(HealthscoreError, OSError):
    """A file could not be written (full disk, quota, file size limit); the old file is kept."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    The parent folder is created when missing. On an exception the temporary file is removed and
    ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file private (0600); give it the mode an ordinary write would have.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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
        raise WriteError(f"could not write {path}: {reason}; check free disk space, quota and file size "
                         "limits, then run again (the previous file, if any, is unchanged)") from None
