"""The synthetic portfolio with a known truth, and the bundled sample.

>>> from healthscore.datasets import make_portfolio
>>> make_portfolio(n_accounts=20, n_weeks=4, seed=1).snapshots.height
80
"""

from healthscore.datasets.portfolio import (
    METRICS,
    SAMPLE_ARGS,
    Portfolio,
    Truth,
    load_sample,
    make_portfolio,
    portfolio_summary_line,
    sample_dir,
)
from healthscore.datasets.raw import RawLayer

__all__ = [
    "METRICS",
    "SAMPLE_ARGS",
    "Portfolio",
    "Truth",
    "load_sample",
    "make_portfolio",
    "portfolio_summary_line",
    "sample_dir",
    "RawLayer",
]
