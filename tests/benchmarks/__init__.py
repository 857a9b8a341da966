"""Benchmarks: each ``bench_*.py`` module here defines functions named ``bench_*``.

A benchmark function takes no arguments and returns a list of :class:`Result` rows. Every row
compares our implementation with a baseline measured side by side in the same process, so the
figure that matters is a ratio, not a wall-clock time on some machine.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Result:
    """One line of the benchmark table.

    ``ratio`` is expressed so that bigger is better for speed-ups ("baseline / ours") unless the
    benchmark says otherwise in ``goal``; ``ok`` says whether the goal was met.
    """

    benchmark: str
    measure: str
    ours: float
    baseline: float | None
    ratio: float | None
    goal: str
    ok: bool | None
    unit: str = "s"
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def timeit(fn: Callable[[], Any], repeat: int = 3, warmup: int = 1) -> float:
    """Median wall time of ``fn`` over ``repeat`` runs after ``warmup`` runs, in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
