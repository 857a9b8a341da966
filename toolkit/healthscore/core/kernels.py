"""Shared numeric kernels: the one home of the small statistics every part of healthscore uses.

>>> lo, hi = wilson_interval([5], [20])
>>> round(float(lo[0]), 4), round(float(hi[0]), 4)
(0.1119, 0.4687)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from statsmodels.stats.proportion import proportion_confint

__all__ = ["wilson_interval"]


def wilson_interval(
    successes: Sequence[float] | np.ndarray, totals: Sequence[float] | np.ndarray, *, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for each rate ``successes / totals`` (statsmodels); NaN where the total is 0."""
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(totals, dtype=np.float64)
    lo = np.full(k.shape, np.nan)
    hi = np.full(k.shape, np.nan)
    ok = n > 0
    if ok.any():
        lo[ok], hi[ok] = proportion_confint(k[ok], n[ok], alpha=1.0 - confidence, method="wilson")
    return lo, hi
