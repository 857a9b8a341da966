"""Sample portfolio generation speed.

* The bundled sample (2,000 accounts x 52 weeks) against a row-by-row simulation written the
  plain way: a Python loop over accounts and weeks that only draws the latent health and the
  weekly signal noise (a fraction of what ``make_portfolio`` does). The loop is timed on 500
  accounts and scaled linearly to 2,000, since its cost is proportional to account-weeks.
* A wide, short book (100,000 accounts x 4 weeks, what the tuner benchmark needs) against the
  linear extrapolation of the 2,000 x 52 run per snapshot row: a ratio above 1 means the
  generator scales better than linearly in rows (the burn-in weeks are paid per account).
"""

from __future__ import annotations

import math
import random
import time

from healthscore.datasets.portfolio import make_portfolio

from tests.benchmarks import Result, timeit


def _row_loop(n_accounts: int, n_weeks: int, seed: int = 7) -> list[tuple]:
    """Latent AR(1) health plus eight noisy signals, one account-week at a time."""
    rnd = random.Random(seed)
    rows = []
    for i in range(n_accounts):
        mu = rnd.gauss(0, 0.5)
        h = mu + rnd.gauss(0, 0.69)
        for w in range(26 + n_weeks):
            h = mu + 0.9 * (h - mu) + rnd.gauss(0, 0.3)
            if w < 26:
                continue
            u = h + rnd.gauss(0, 0.4)
            p = 1 / (1 + math.exp(-(0.3 + 0.8 * u)))
            logins = sum(rnd.random() < p for _ in range(7))
            kfa = sum(rnd.random() < 1 / (1 + math.exp(-(-0.2 + 0.7 * h))) for _ in range(10)) / 10
            calls = math.exp(2.5 + 0.5 * h + 0.8 * rnd.gauss(0, 1))
            csat = min(5, max(1, round(4 + 0.5 * h + 0.6 * rnd.gauss(0, 1), 1)))
            nps = min(10, max(0, round(7 + 1.6 * h + 1.2 * rnd.gauss(0, 1))))
            ctr = 1 / (1 + math.exp(-(-2.2 + 0.35 * h + 0.5 * rnd.gauss(0, 1))))
            rows.append((i, w, h, logins, kfa, calls, csat, nps, ctr))
    return rows


def bench_sample_generation() -> list[Result]:
    ours = timeit(lambda: make_portfolio(n_accounts=2000, n_weeks=52, seed=7), repeat=3)
    t0 = time.perf_counter()
    _row_loop(500, 52)
    loop = (time.perf_counter() - t0) * 4
    return [
        Result(
            "datasets.make_portfolio",
            "2,000 accounts x 52 weeks",
            ours,
            loop,
            loop / ours,
            "< 5 s, faster than a row loop",
            ours < 5 and ours < loop,
            detail={"baseline": "Python loop over account-weeks (latent + 8 signals), 500 accounts x4"},
        )
    ]


def bench_wide_book() -> list[Result]:
    small = make_portfolio(n_accounts=2000, n_weeks=52, seed=7)
    t_small = timeit(lambda: make_portfolio(n_accounts=2000, n_weeks=52, seed=7), repeat=2)
    t0 = time.perf_counter()
    wide = make_portfolio(n_accounts=100_000, n_weeks=4, seed=7)
    ours = time.perf_counter() - t0
    linear = t_small * wide.snapshots.height / small.snapshots.height
    return [
        Result(
            "datasets.make_portfolio",
            "100,000 accounts x 4 weeks",
            ours,
            linear,
            linear / ours,
            "< 20 s",
            ours < 20,
            detail={"rows": wide.snapshots.height, "baseline": "2,000 x 52 run scaled per row"},
        )
    ]
