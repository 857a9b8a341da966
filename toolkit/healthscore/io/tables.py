"""Score frames and snapshot tables read from Parquet or CSV, cached per file version: a warm
kernel that renders many accounts reads each file once.

>>> import tempfile, pathlib, polars as pl
>>> path = pathlib.Path(tempfile.mkdtemp()) / "scores.csv"
>>> pl.DataFrame({"account_id": ["a"], "score": [50.0]}).write_csv(path)
>>> load_scores(path).rows()
[('a', 50.0)]
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import polars as pl

__all__ = ["load_scores"]


def _read_table(path: str | os.PathLike[str]) -> pl.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file; pass the scores written by 'healthscore score'")
    if p.suffix.lower() in {".parquet", ".pq"}:
        return pl.read_parquet(p)
    if p.suffix.lower() == ".csv":
        return pl.read_csv(p, try_parse_dates=True, infer_schema_length=10_000)
    raise ValueError(f"{p}: cannot read '{p.suffix}' files; use .parquet or .csv")


@functools.lru_cache(maxsize=4)
def _cached_table(path: str, mtime_ns: int, size: int) -> pl.DataFrame:
    return _read_table(path)


def load_scores(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Read a score frame (Parquet or CSV); cached per file version, so a warm kernel that renders
    many accounts reads it once."""
    st = Path(path).stat() if Path(path).is_file() else None
    if st is None:
        return _read_table(path)  # raises the clear error
    return _cached_table(str(Path(path).resolve()), st.st_mtime_ns, st.st_size)
