"""Shared test helpers."""

from __future__ import annotations

from pathlib import Path

import pytest


def book_on_disk(
    tmp_path_factory: pytest.TempPathFactory, name: str, *, seed: int, n_accounts: int = 300, n_weeks: int = 30
):
    """A small sample portfolio written as snapshots.parquet and events.parquet in a fresh folder.

    Returns ``(folder, portfolio)``.
    """
    from healthscore.datasets.portfolio import make_portfolio

    folder: Path = tmp_path_factory.mktemp(name)
    book = make_portfolio(n_accounts=n_accounts, n_weeks=n_weeks, seed=seed)
    book.snapshots.write_parquet(folder / "snapshots.parquet")
    book.events.write_parquet(folder / "events.parquet")
    return folder, book
