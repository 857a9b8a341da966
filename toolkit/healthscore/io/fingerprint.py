"""A content hash of a table: which snapshots a model was fitted on, in 16 hex characters.

The hash reads the values, not the file: the same rows give the same hash whatever their order,
file format or column order, on any machine (no hash seeded per process). Rows are put in key
order first (``account_id``, ``as_of`` when present, then every column), each column is turned
into bytes in a fixed way (numbers as 64-bit floats, dates as days, text as UTF-8, a missing
value marked apart from any value) and fed with its name and type to sha256.

>>> import polars as pl
>>> a = pl.DataFrame({"account_id": ["x", "y"], "logins": [3, None]})
>>> b = a.reverse().select("logins", "account_id")
>>> data_hash(a) == data_hash(b), data_hash(a) == data_hash(a.with_columns(pl.col("logins") + 1))
(True, False)
>>> len(data_hash(a))
16
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import polars as pl

__all__ = ["data_hash"]

_KEYS = ("account_id", "as_of")


def data_hash(frame: pl.DataFrame | pl.LazyFrame, columns: Sequence[str] | None = None) -> str:
    """sha256 of the table's values (only ``columns`` when given), first 16 hex characters."""
    df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    cols = sorted(columns if columns is not None else df.columns)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"data_hash: the table has no column(s) {missing}; it has {df.columns[:12]}")
    df = df.select(cols)
    if df.height and cols:
        keys = [c for c in _KEYS if c in cols] + [c for c in cols if c not in _KEYS]
        # nested or object columns do not sort; they still hash, in the order of the sortable keys
        sortable = [
            c
            for c in keys
            if df.schema[c].is_numeric()
            or df.schema[c].is_temporal()
            or df.schema[c] in (pl.String, pl.Boolean, pl.Categorical, pl.Enum)
        ]
        if sortable:
            df = df.sort(sortable, nulls_last=True, maintain_order=True)
    h = hashlib.sha256(f"rows={df.height}".encode())
    for name in cols:
        s = df.get_column(name)
        h.update(f"|{name}:{_kind(s.dtype)}|".encode())
        h.update(np.asarray(s.is_null().to_numpy(), dtype=np.uint8).tobytes())
        h.update(_value_bytes(s))
    return h.hexdigest()[:16]


def _kind(dtype: pl.DataType) -> str:
    """The type family that decides how values become bytes (Int32 and Int64 hash alike)."""
    if dtype == pl.Boolean or dtype.is_numeric():
        return "number"
    if dtype == pl.Date:
        return "date"
    if isinstance(dtype, pl.Datetime):
        return "datetime"
    return "text"


def _value_bytes(s: pl.Series) -> bytes:
    kind = _kind(s.dtype)
    if kind == "number":
        return s.cast(pl.Float64).fill_null(0.0).to_numpy().astype("<f8").tobytes()
    if kind == "date":
        return s.cast(pl.Int32).fill_null(0).to_numpy().astype("<i8").tobytes()
    if kind == "datetime":
        return (
            s.dt.cast_time_unit("us")
            .dt.replace_time_zone(None)
            .cast(pl.Int64)
            .fill_null(0)
            .to_numpy()
            .astype("<i8")
            .tobytes()
        )
    try:
        values = (s.cast(pl.String) if s.dtype != pl.String else s).fill_null("").to_list()
    except pl.exceptions.PolarsError:  # nested values (lists, structs) have no text cast: their repr
        values = ["" if v is None else repr(v) for v in s.to_list()]
    return "\x00".join(values).encode("utf-8")
