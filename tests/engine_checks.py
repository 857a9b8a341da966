"""Shared checks for the engine tests: a score frame from another engine equals the polars one."""

from __future__ import annotations

import polars as pl

TOLERANCE = 1e-9
# columns that must agree exactly: labels, keys, and coverage (a sum of the same shares in the same order)
EXACT = ("band", "null_reason", "variant", "coverage", "model_name", "model_version", "model_hash")


def assert_same_scores(expected: pl.DataFrame, got: pl.DataFrame) -> None:
    """Same columns in the same order, same rows, floats within 1e-9, the rest exactly equal."""
    assert got.columns == expected.columns
    assert got.height == expected.height
    assert got.select("account_id", "as_of").cast({"as_of": pl.Date}).equals(expected.select("account_id", "as_of"))
    for col in expected.columns:
        a, b = expected[col], got[col]
        assert (a.is_null() == b.is_null()).all(), f"{col}: nulls differ in {(a.is_null() != b.is_null()).sum()} rows"
        if a.dtype == pl.Float64 and col not in EXACT:
            diff = (a - b.cast(pl.Float64)).abs().max()
            assert diff is None or diff <= TOLERANCE, f"{col}: largest difference {diff}"
        elif a.dtype.is_temporal():
            assert (a == b.cast(a.dtype)).fill_null(True).all(), col
        else:
            same = (a.cast(pl.String) == b.cast(pl.String)).fill_null(True)
            assert same.all(), (
                f"{col}: {(~same).sum()} rows differ, e.g. {a.filter(~same).head(2).to_list()} "
                f"vs {b.filter(~same).head(2).to_list()}"
            )
