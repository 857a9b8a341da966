"""A synthetic B2B SaaS book of business whose truth is known.

:func:`make_portfolio` simulates accounts week by week. A latent health process per account
(AR(1) around a segment- and touch-model-dependent mean, with shocks such as the champion
leaving) drives 18 raw signals with noise, heavy tails, saturation, collinearity and missingness
that is not at random. Churn, expansion and contraction are drawn from weekly hazards that are
logistic in a documented linear predictor over the standardised signals, so a fitted model can be
checked against ``portfolio.truth``.

>>> from healthscore.datasets.portfolio import make_portfolio
>>> p = make_portfolio(n_accounts=50, n_weeks=8, seed=1)
>>> p.snapshots.select("account_id", "as_of").n_unique() == p.snapshots.height
True
>>> sorted(p.events["event"].unique().to_list()) <= ["churned", "contracted", "expanded"]
True
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from healthscore import resources
from healthscore.datasets.raw import RawLayer, raw_layer
from healthscore.io import files
from healthscore.results import Summary

__all__ = ["Portfolio", "Truth", "make_portfolio", "sample_dir", "load_sample", "METRICS"]

# ----------------------------------------------------------------------------- the truth
# metric -> (category, direction, churn_coef, expansion_coef, description).
# Coefficients: change in the weekly log-odds of the event per one reference standard deviation of
# the metric (see _REFERENCE), sign included; a null value contributes nothing (it counts as the
# reference mean). Zero means the metric has no effect of its own.
METRICS: dict[str, tuple[str, str, float, float, str]] = {
    "active_users": (
        "usage",
        "higher_is_better",
        0.0,
        0.0,
        "distinct weekly active users (mostly reflects account size; no effect of its own)",
    ),
    "seat_utilization": ("usage", "higher_is_better", -0.30, 0.45, "active users / seats purchased, 0..1.5"),
    "login_days": (
        "usage",
        "higher_is_better",
        -0.25,
        0.10,
        "days with any login in the week, 0..7 (collinear with active users)",
    ),
    "key_feature_adoption": (
        "usage",
        "higher_is_better",
        -0.25,
        0.25,
        "share of the 10 key features used in the last 30 days, 0..1",
    ),
    "api_calls": (
        "usage",
        "higher_is_better",
        -0.15,
        0.25,
        "API calls in the week; effect per SD of log1p(calls), none without an integration",
    ),
    "tickets_opened": (
        "support",
        "lower_is_better",
        0.0,
        0.0,
        "support tickets opened in the week (no effect of its own)",
    ),
    "high_sev_tickets": ("support", "lower_is_better", 0.15, -0.10, "severity-1/2 tickets opened in the week"),
    "csat": (
        "support",
        "higher_is_better",
        -0.15,
        0.0,
        "mean CSAT 1..5 of tickets closed in the week (null without tickets or answers)",
    ),
    "nps": (
        "sentiment",
        "higher_is_better",
        -0.30,
        0.15,
        "NPS answer 0..10 in the week (sparse; unhappy accounts answer less)",
    ),
    "exec_sponsor_engaged": (
        "relationship",
        "higher_is_better",
        -0.20,
        0.25,
        "1 if an executive sponsor met us in the last 90 days",
    ),
    "champion_left": ("relationship", "lower_is_better", 0.30, -0.25, "1 if the champion left in the last 90 days"),
    "csm_assessment": (
        "relationship",
        "higher_is_better",
        -0.25,
        0.15,
        "CSM's 1..5 assessment (high-touch accounts only)",
    ),
    "days_invoice_overdue": ("commercial", "lower_is_better", 0.20, -0.15, "days the oldest open invoice is overdue"),
    "seats_deployed_ratio": (
        "commercial",
        "higher_is_better",
        -0.20,
        0.30,
        "seats provisioned / seats purchased, 0..1.2",
    ),
    "goal_progress": ("outcomes", "higher_is_better", -0.20, 0.20, "share of the success-plan goal achieved, 0..1.2"),
    "email_ctr": (
        "engagement",
        "higher_is_better",
        0.0,
        0.0,
        "click-through rate of CS emails in the last 30 days (no effect)",
    ),
    "community_posts": ("engagement", "higher_is_better", 0.0, 0.0, "community posts in the last 30 days (no effect)"),
    "training_completions": (
        "engagement",
        "higher_is_better",
        0.0,
        0.0,
        "training modules completed in the last 30 days (no effect)",
    ),
}

# Reference mean and SD used to standardise each metric inside the hazards. They are fixed
# constants (measured once on a large portfolio) so the truth does not depend on the sample size.
_REFERENCE: dict[str, tuple[float, float]] = {
    "active_users": (55.0, 126.0),
    "seat_utilization": (0.44, 0.22),
    "login_days": (3.8, 1.8),
    "key_feature_adoption": (0.45, 0.22),
    "api_calls": (6.1, 1.7),
    "tickets_opened": (0.36, 0.68),
    "high_sev_tickets": (0.057, 0.25),
    "csat": (4.0, 0.68),
    "nps": (7.4, 1.7),
    "exec_sponsor_engaged": (0.43, 0.5),
    "champion_left": (0.044, 0.21),
    "csm_assessment": (3.2, 0.94),
    "days_invoice_overdue": (0.94, 5.2),
    "seats_deployed_ratio": (0.74, 0.19),
    "goal_progress": (0.69, 0.37),
    "email_ctr": (0.11, 0.058),
    "community_posts": (0.3, 0.56),
    "training_completions": (0.6, 0.84),
}

STAGES = ("onboarding", "adoption", "mature", "renewal")
SEGMENTS = ("enterprise", "mid_market", "smb")
TOUCH = ("high", "digital")
# base annual churn / expansion at reference signals, per (segment, touch model)
_BASE_RATES: dict[tuple[str, str], tuple[float, float]] = {
    ("enterprise", "high"): (0.02, 0.08),
    ("enterprise", "digital"): (0.027, 0.08),
    ("mid_market", "high"): (0.027, 0.09),
    ("mid_market", "digital"): (0.038, 0.09),
    ("smb", "high"): (0.038, 0.09),
    ("smb", "digital"): (0.057, 0.09),
}
# latent health mean per (segment, touch model)
_HEALTH_MEAN = {
    ("enterprise", "high"): 0.35,
    ("enterprise", "digital"): 0.05,
    ("mid_market", "high"): 0.2,
    ("mid_market", "digital"): -0.05,
    ("smb", "high"): 0.05,
    ("smb", "digital"): -0.25,
}
# log-odds terms that are not metrics: name -> (churn, expansion, description)
_OTHER_TERMS: dict[str, tuple[float, float, str]] = {
    "renewal_within_8_weeks": (1.0, 0.6, "the next renewal date is at most 8 weeks away"),
    "first_13_weeks": (-2.0, -1.5, "the contract started less than 13 weeks ago"),
    "csm_handover_13_weeks": (0.35, 0.0, "the account changed CSM in the last 13 weeks"),
}

# contraction: only in the 8 weeks before a renewal; weekly log-odds intercept and per-SD effects
_CONTRACTION = (-5.5, {"seat_utilization": -0.5, "seats_deployed_ratio": -0.4})

# ------------------------------------------------ the non-linear truth (make_portfolio(truth="nonlinear"))
# Churn only; expansion and contraction stay linear. Each metric adds curve(value) - curve(centre)
# to the weekly churn log-odds (a null adds nothing); ``centre`` is the reference mean in raw units.
# Shapes: saturation (exponential decay towards a floor), thresholds (a jump as soon as anything is
# overdue), a U (seats deployed: both shelfware and over-provisioning raise churn), a sigmoid step
# (NPS detractors) and level effects; two metrics interact with the segment (factor per segment).


def _u_deployed(x: np.ndarray) -> np.ndarray:
    return np.where(x < 0.8, 3.0 * (x - 0.8) ** 2, 15.0 * (x - 0.8) ** 2)


_NONLINEAR: dict[str, tuple[str, object]] = {
    "seat_utilization": ("saturating", lambda x: 1.6 * np.exp(-x / 0.2)),
    "login_days": ("saturating", lambda x: 1.2 * np.exp(-0.7 * x)),
    "key_feature_adoption": ("linear", lambda x: -1.2 * x),
    "api_calls": ("linear in log1p(calls)", lambda x: -0.12 * np.log1p(np.maximum(x, 0.0))),
    "high_sev_tickets": ("capped", lambda x: 0.5 * np.minimum(x, 2.0)),
    "csat": ("linear", lambda x: -0.35 * x),
    "nps": ("threshold (detractors)", lambda x: 0.9 / (1.0 + np.exp(-(6.0 - x) / 0.8))),
    "exec_sponsor_engaged": ("level", lambda x: -0.4 * x),
    "champion_left": ("level, by segment", lambda x: 0.9 * x),
    "csm_assessment": ("levels", lambda x: np.interp(x, [1, 2, 3, 4, 5], [1.0, 0.5, 0.0, -0.2, -0.3])),
    "days_invoice_overdue": ("threshold", lambda x: np.where(x > 0, 0.5 + 0.02 * np.minimum(x, 60.0), 0.0)),
    "seats_deployed_ratio": ("U-shape", _u_deployed),
    "goal_progress": ("saturating", lambda x: 0.8 * np.exp(-x / 0.3)),
}
# metric -> factor per segment (SEGMENTS order) multiplying its curve: the segment interaction
_NONLINEAR_BY_SEGMENT: dict[str, tuple[float, float, float]] = {
    "seat_utilization": (0.5, 1.0, 1.5),
    "champion_left": (1.6, 1.0, 0.5),
}
_NONLINEAR_ARG = ", truth='nonlinear'"
_NONLINEAR_CHURN_SCALE = 2.0  # base annual churn x this: more events for the curves to show in
# grid on which truth.curves records each curve (raw units)
_CURVE_GRID: dict[str, np.ndarray] = {
    "active_users": np.linspace(0, 1000, 41),
    "seat_utilization": np.linspace(0, 1.5, 61),
    "login_days": np.arange(8.0),
    "key_feature_adoption": np.linspace(0, 1, 11),
    "api_calls": np.round(np.expm1(np.linspace(0, 10, 41)), 1),
    "tickets_opened": np.arange(7.0),
    "high_sev_tickets": np.arange(5.0),
    "csat": np.linspace(1, 5, 41),
    "nps": np.arange(11.0),
    "exec_sponsor_engaged": np.array([0.0, 1.0]),
    "champion_left": np.array([0.0, 1.0]),
    "csm_assessment": np.arange(1.0, 6.0),
    "days_invoice_overdue": np.arange(0.0, 91.0, 1.0),
    "seats_deployed_ratio": np.linspace(0, 1.2, 49),
    "goal_progress": np.linspace(0, 1.2, 49),
    "email_ctr": np.linspace(0, 0.4, 41),
    "community_posts": np.arange(6.0),
    "training_completions": np.arange(7.0),
}


def _curve_centre(metric: str) -> float:
    mean = _REFERENCE[metric][0]
    return float(np.expm1(mean)) if metric == "api_calls" else mean


def _nonlinear_churn(metrics: dict[str, np.ndarray], seg: np.ndarray) -> np.ndarray:
    """Per metric (METRICS order) and account: the metric's term of the churn log-odds."""
    out = np.zeros((len(METRICS), len(seg)))
    for k, m in enumerate(METRICS):
        if m not in _NONLINEAR:
            continue
        curve = _NONLINEAR[m][1]
        x = np.asarray(metrics[m], dtype=float)
        term = curve(np.nan_to_num(x)) - curve(np.array(_curve_centre(m)))
        if m in _NONLINEAR_BY_SEGMENT:
            term = term * np.asarray(_NONLINEAR_BY_SEGMENT[m])[seg]
        out[k] = np.where(np.isnan(x), 0.0, term)
    return out


def _truth_curves() -> pl.DataFrame:
    """Long table: metric, segment ("all" = the shape without the segment factor), value,
    churn_logit (the metric's term of the weekly churn log-odds at that value)."""
    parts = []
    for m in METRICS:
        grid = _CURVE_GRID[m].astype(float)
        if m in _NONLINEAR:
            curve = _NONLINEAR[m][1]
            base = curve(grid) - curve(np.array(_curve_centre(m)))
        else:
            base = np.zeros_like(grid)
        factors = [("all", 1.0)] + list(zip(SEGMENTS, _NONLINEAR_BY_SEGMENT.get(m, ())))
        for seg, f in factors:
            parts.append(pl.DataFrame({"metric": m, "segment": seg, "value": grid, "churn_logit": base * f}))
    return pl.concat(parts)


_PHI = 0.9  # weekly persistence of the latent health
_SIGMA = 0.3  # weekly innovation of the latent health
_BURN_IN = 13  # weeks simulated before the first snapshot: fills the 90-day indicators
_WINDOW_90D = 13  # "last 90 days" in weeks


@dataclass(frozen=True)
class Truth:
    """What generated the sample: per-metric effects, the latent health, base rates."""

    effects: pl.DataFrame
    latent: pl.DataFrame
    segment_churn: pl.DataFrame
    other_terms: pl.DataFrame
    # truth="nonlinear": each metric's term of the churn log-odds on a grid of raw values
    # (metric, segment, value, churn_logit); None for the linear truth, where ``effects`` says it all
    curves: pl.DataFrame | None = None
    kind: str = "linear"


@dataclass(frozen=True)
class Portfolio:
    """A book of business: weekly ``snapshots``, one row per account in ``accounts``, outcome
    ``events`` and (for generated samples) the ``truth`` behind them."""

    snapshots: pl.DataFrame
    accounts: pl.DataFrame
    events: pl.DataFrame
    truth: Truth
    origin: str | None = None  # how it was generated, e.g. "make_portfolio(n_accounts=2000, ...)"

    # data files written by save() (besides README.md), in a fixed order
    FILES = (
        "snapshots.parquet",
        "events.parquet",
        "accounts.parquet",
        "truth_effects.csv",
        "truth_latent.parquet",
        "truth_segment_churn.csv",
        "truth_other_terms.csv",
        "latest_week.csv",
    )

    @cached_property
    def raw(self) -> RawLayer:
        """The raw layer behind the snapshots: event log, subscriptions, CRM change log and the metric
        spec that rebuilds the event-derived columns exactly (computed on first use, then kept).

        >>> make_portfolio(n_accounts=10, n_weeks=3, seed=2).raw.subscriptions["seats"].min() >= 3
        True
        """
        found = re.search(r"seed=(\d+)", self.origin or "")
        return raw_layer(self.snapshots, self.events, seed=int(found.group(1)) if found else 0)

    def summary(self) -> Summary:
        """A few lines: accounts by segment, ARR, weeks, annualised churn and expansion rates."""
        s = portfolio_stats(self)
        lines = [
            f"{s['accounts']} accounts, {s['weeks']} weekly snapshots "
            f"({s['first']} .. {s['last']}), {s['rows']} rows; latest ARR {s['arr']:,.0f}"
        ]
        for seg, n in s["by_segment"].items():
            lines.append(f"  {seg:<11} {n:>6} accounts")
        lines.append(
            f"annual logo churn {s['churn_rate']:.1%}, accounts expanding per year "
            f"{s['expansion_rate']:.1%}, contracting {s['contraction_rate']:.1%}"
        )
        return Summary("\n".join(lines))

    def save(self, folder: str | os.PathLike[str]) -> list[Path]:
        """Write every table and a ``README.md`` data dictionary into ``folder`` atomically;
        returns the paths written."""
        folder = Path(folder)
        tables = [
            self.snapshots,
            self.events,
            self.accounts,
            self.truth.effects,
            self.truth.latent,
            self.truth.segment_churn,
            self.truth.other_terms,
            latest_week(self.snapshots),
        ]
        for name, frame in zip(self.FILES, tables, strict=True):
            (files.write_parquet if name.endswith(".parquet") else files.write_csv)(frame, folder / name)
        extra = []
        if self.truth.curves is not None:
            files.write_csv(self.truth.curves, folder / "truth_curves.csv")
            extra.append("truth_curves.csv")
        files.write_text(folder / "README.md", data_dictionary(self))
        return [folder / name for name in (*self.FILES, *extra, "README.md")]

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Portfolio:
        """Read a portfolio written by :meth:`save`."""
        folder = Path(folder)
        missing = [n for n in cls.FILES if not (folder / n).exists()]
        if missing:
            raise FileNotFoundError(
                f"{folder}: missing {', '.join(missing)}; run 'healthscore sample --out {folder}' to regenerate"
            )
        truth = Truth(
            effects=pl.read_csv(folder / "truth_effects.csv"),
            latent=pl.read_parquet(folder / "truth_latent.parquet"),
            segment_churn=pl.read_csv(folder / "truth_segment_churn.csv"),
            other_terms=pl.read_csv(folder / "truth_other_terms.csv"),
            curves=pl.read_csv(folder / "truth_curves.csv") if (folder / "truth_curves.csv").exists() else None,
            kind="nonlinear" if (folder / "truth_curves.csv").exists() else "linear",
        )
        readme = folder / "README.md"
        found = re.search(r"`(make_portfolio\([^`]*\))`", readme.read_text()) if readme.exists() else None
        return cls(
            snapshots=pl.read_parquet(folder / "snapshots.parquet"),
            accounts=pl.read_parquet(folder / "accounts.parquet"),
            events=pl.read_parquet(folder / "events.parquet"),
            truth=truth,
            origin=found.group(1) if found else None,
        )


def latest_week(snapshots: pl.DataFrame) -> pl.DataFrame:
    """The latest snapshot of every account (churned accounts keep their last week)."""
    return snapshots.sort("account_id", "as_of").group_by("account_id", maintain_order=True).last()


def portfolio_summary_line(p: Portfolio) -> str:
    """One line: accounts by segment, latest ARR, annual churn and expansion rates."""
    s = portfolio_stats(p)
    segs = ", ".join(f"{k} {v}" for k, v in s["by_segment"].items())
    return (
        f"{s['accounts']} accounts ({segs}) over {s['weeks']} weeks, ARR {s['arr'] / 1e6:.1f}M; "
        f"annual churn {s['churn_rate']:.1%}, expanding {s['expansion_rate']:.1%}"
    )


def portfolio_stats(p: Portfolio) -> dict:
    """Headline numbers of a portfolio; rates are events per account-year observed."""
    snaps = p.snapshots
    weeks = snaps["as_of"].n_unique()
    exposure_years = snaps.height / 52.0
    ev = p.events.group_by("event").agg(pl.col("account_id").n_unique().alias("n"))
    count = dict(zip(ev["event"].to_list(), ev["n"].to_list()))
    latest = latest_week(snaps)
    by_seg = latest.group_by("segment").len().sort("segment")
    return {
        "accounts": snaps["account_id"].n_unique(),
        "weeks": weeks,
        "rows": snaps.height,
        "first": snaps["as_of"].min(),
        "last": snaps["as_of"].max(),
        "arr": float(latest.filter(pl.col("as_of") == snaps["as_of"].max())["arr"].sum()),
        "by_segment": dict(zip(by_seg["segment"].to_list(), by_seg["len"].to_list())),
        "churn_rate": count.get("churned", 0) / max(exposure_years, 1e-9),
        "expansion_rate": count.get("expanded", 0) / max(exposure_years, 1e-9),
        "contraction_rate": count.get("contracted", 0) / max(exposure_years, 1e-9),
    }


# ----------------------------------------------------------------------------- names
_NAME_A = [
    "Blue",
    "North",
    "Iron",
    "Silver",
    "Cedar",
    "Bright",
    "Stone",
    "Red",
    "Oak",
    "Clear",
    "Swift",
    "Golden",
    "River",
    "Summit",
    "Pine",
    "Harbor",
    "Falcon",
    "Maple",
    "Copper",
    "Green",
    "Granite",
    "Lake",
    "Star",
    "Cobalt",
    "Echo",
    "Prairie",
    "Atlas",
    "Willow",
    "Amber",
    "Coral",
    "Orchid",
    "Birch",
    "Delta",
    "Vista",
    "Polar",
    "Crescent",
    "Ember",
    "Sierra",
    "Meadow",
    "Beacon",
]
_NAME_B = [
    "field",
    "stone",
    "wave",
    "bridge",
    "point",
    "gate",
    "line",
    "path",
    "works",
    "crest",
    "brook",
    "forge",
    "ridge",
    "light",
    "view",
    "wood",
    "peak",
    "port",
    "spring",
    "mark",
    "vale",
    "shore",
    "well",
    "haven",
    "stream",
    "rock",
    "side",
    "wind",
    "moor",
    "bay",
]
_NAME_C = [
    "Analytics",
    "Logistics",
    "Health",
    "Systems",
    "Labs",
    "Foods",
    "Energy",
    "Media",
    "Partners",
    "Robotics",
    "Finance",
    "Supply",
    "Networks",
    "Retail",
    "Studios",
    "Bio",
]
_SUFFIX = {
    "North America": ["Inc", "LLC", "Corp"],
    "EMEA": ["Ltd", "GmbH", "SA", "BV"],
    "APAC": ["Pte Ltd", "Pty Ltd", "KK"],
    "LATAM": ["SA", "Ltda", "SRL"],
}
_FIRST = [
    "Alex",
    "Maria",
    "Sam",
    "Priya",
    "Jordan",
    "Chen",
    "Fatima",
    "Lukas",
    "Ana",
    "Tom",
    "Aisha",
    "Diego",
    "Hannah",
    "Kenji",
    "Olivia",
    "Mateo",
    "Sofia",
    "Noah",
    "Leila",
    "Ivan",
]
_LAST = [
    "Rivera",
    "Okafor",
    "Schmidt",
    "Patel",
    "Nguyen",
    "Kowalski",
    "Haddad",
    "Silva",
    "Berg",
    "Tanaka",
    "Murphy",
    "Costa",
    "Novak",
    "Adeyemi",
    "Larsen",
    "Moreau",
    "Reyes",
    "Kim",
]
INDUSTRIES = [
    "software",
    "financial services",
    "healthcare",
    "manufacturing",
    "retail",
    "education",
    "media",
    "logistics",
]
REGIONS = ["North America", "EMEA", "APAC", "LATAM"]


def _company_names(rng: np.random.Generator, region: np.ndarray) -> list[str]:
    """Plausible, deterministic company names; distinct while the word lists allow it."""
    n = len(region)
    space = len(_NAME_A) * len(_NAME_B) * len(_NAME_C)
    code = rng.choice(space, size=n, replace=n > space)
    a, rest = np.divmod(code, len(_NAME_B) * len(_NAME_C))
    b, c = np.divmod(rest, len(_NAME_C))
    pick = rng.integers(0, 12, size=n)
    suffixes = [_SUFFIX[r] for r in REGIONS]
    return [
        f"{_NAME_A[i]}{_NAME_B[j]} {_NAME_C[k]} {suffixes[r][p % len(suffixes[r])]}"
        for i, j, k, r, p in zip(a, b, c, region, pick)
    ]


def _csm_pool(n_csm: int) -> list[str]:
    """``n_csm`` distinct CSM names (a step coprime with the grid size visits every pair once)."""
    grid = len(_FIRST) * len(_LAST)
    names = []
    for i in range(n_csm):
        j = (i * 7) % grid
        name = f"{_FIRST[j % len(_FIRST)]} {_LAST[j // len(_FIRST)]}"
        names.append(name if i < grid else f"{name} {i // grid + 1}")
    return names


# ----------------------------------------------------------------------------- simulation
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _add_months(day: np.ndarray, months: int | np.ndarray) -> np.ndarray:
    """Shift datetime64[D] dates by whole months (days of month are at most 28 here)."""
    m = day.astype("datetime64[M]")
    dom = day - m.astype("datetime64[D]")
    return (m + months).astype("datetime64[D]") + dom


def _next_renewal(start: np.ndarray, day: np.datetime64) -> np.ndarray:
    """First contract anniversary of ``start`` strictly after ``day`` (annual contracts)."""
    years = (np.datetime64(day, "Y") - start.astype("datetime64[Y]")).astype(np.int64)
    ann = _add_months(start, 12 * years)
    return np.where(ann <= day, _add_months(start, 12 * (years + 1)), ann)


def _lookup(table: dict[tuple[str, str], float], seg: np.ndarray, touch: np.ndarray) -> np.ndarray:
    grid = np.array([[table[(s, t)] for t in TOUCH] for s in SEGMENTS])
    return grid[seg, touch]


def _weekly_logit(annual: np.ndarray) -> np.ndarray:
    weekly = 1.0 - (1.0 - annual) ** (1.0 / 52.0)
    return np.log(weekly / (1.0 - weekly))


@dataclass
class _Book:
    """Per-account constants drawn once (index i is account i)."""

    seg: np.ndarray
    touch: np.ndarray
    industry: np.ndarray
    region: np.ndarray
    start: np.ndarray
    seats: np.ndarray
    price: np.ndarray
    integrated: np.ndarray
    names: list[str]
    csm_names: list[str]
    pools: list[np.ndarray]  # CSM indices per segment (high touch), then the digital team

    def draw_csm(self, rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
        """A CSM index for each account in ``mask`` (-1 elsewhere and for digital SMB)."""
        out = np.full(len(mask), -1, dtype=np.int64)
        high = self.touch == 0
        for s in range(3):
            m = mask & (self.seg == s) & high
            out[m] = rng.choice(self.pools[s], size=int(m.sum()))
        m = mask & (self.seg < 2) & ~high
        out[m] = rng.choice(self.pools[3], size=int(m.sum()))
        return out


def _draw_book(rng: np.random.Generator, n: int, end: np.datetime64) -> _Book:
    seg = rng.choice(3, size=n, p=[0.15, 0.35, 0.5])
    touch = (rng.random(n) >= np.array([0.9, 0.5, 0.1])[seg]).astype(np.int64)  # 0 high, 1 digital
    industry = rng.integers(0, len(INDUSTRIES), size=n)
    region = rng.choice(len(REGIONS), size=n, p=[0.5, 0.3, 0.15, 0.05])
    seats = np.maximum(3, np.round(np.exp(rng.normal(np.log([400.0, 60.0, 12.0])[seg], 0.6)))).astype(np.int64)
    price = np.array([700.0, 550.0, 420.0])[seg] * np.exp(rng.normal(0, 0.15, n))
    # contract starts spread over ~4 years before the last snapshot, more of them recent (growth)
    start = end - ((4 * 365 * rng.random(n) ** 1.3).astype(np.int64) + 7).astype("timedelta64[D]")
    dom = (start - start.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64)
    start = start - np.maximum(dom - 27, 0).astype("timedelta64[D]")  # day <= 28: clean anniversaries
    integrated = rng.random(n) < np.array([0.7, 0.5, 0.25])[seg]
    names = _company_names(rng, region)
    # CSM pools: high-touch accounts per CSM by segment; digital mid-market/enterprise share a team
    sizes = [max(1, -(-int(((seg == s) & (touch == 0)).sum()) // per)) for s, per in enumerate((12, 35, 60))]
    sizes.append(max(1, -(-int(((seg < 2) & (touch == 1)).sum()) // 150)))
    bounds = np.cumsum([0, *sizes])
    pools = [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    return _Book(
        seg, touch, industry, region, start, seats, price, integrated, names, _csm_pool(int(bounds[-1])), pools
    )


def make_portfolio(
    n_accounts: int = 2000,
    n_weeks: int = 52,
    seed: int = 7,
    end: date = date(2026, 11, 16),
    progress: bool = False,
    truth: Literal["linear", "nonlinear"] = "linear",
) -> Portfolio:
    """Generate a sample portfolio whose true effects are known.

    ``end`` is the last snapshot date (moved back to a Monday); snapshots are weekly. Accounts
    whose contract starts inside the window appear from their first Monday on, in ``onboarding``.
    ``progress`` shows a progress bar over the simulated weeks.

    ``truth="nonlinear"`` draws churn from curves instead of straight lines: saturation (seat
    utilisation, logins, goal progress), thresholds (any overdue invoice, NPS detractors), a
    U-shape (seats deployed), level effects, and a segment interaction (seat utilisation matters
    more for SMB, a champion leaving more for enterprise). Base churn is doubled so the curves
    show. ``truth.curves`` records every curve on a grid of raw values. The signals themselves
    are drawn exactly as for the linear truth (same seed, same snapshots until churn differs).

    >>> nl = make_portfolio(n_accounts=30, n_weeks=4, seed=3, truth="nonlinear")
    >>> nl.truth.kind, nl.truth.curves.columns
    ('nonlinear', ['metric', 'segment', 'value', 'churn_logit'])

    >>> p = make_portfolio(n_accounts=30, n_weeks=4, seed=3)
    >>> p.snapshots["as_of"].max()
    datetime.date(2026, 11, 16)
    >>> p.truth.effects.columns
    ['metric', 'category', 'direction', 'churn_coef', 'expansion_coef', 'description']
    """
    if n_accounts < 1 or n_weeks < 1:
        raise ValueError(f"n_accounts and n_weeks must be at least 1 (got {n_accounts}, {n_weeks})")
    if truth not in ("linear", "nonlinear"):
        raise ValueError(f"truth must be 'linear' or 'nonlinear', got {truth!r}")
    end = end - timedelta(days=end.weekday())
    first64 = np.datetime64(end, "D") - np.timedelta64(7 * (n_weeks - 1), "D")
    sim = _Simulation(np.random.default_rng(seed), n_accounts, np.datetime64(end, "D"), truth == "nonlinear")
    cols: dict[str, list[np.ndarray]] = {}
    events: list[np.ndarray] = []
    steps = range(-_BURN_IN, n_weeks)  # week 0 is the first snapshot
    if progress:
        from tqdm.auto import tqdm  # progress bars are loaded only for long runs

        steps = tqdm(steps, desc="simulating weeks", unit="week")
    for wk in steps:
        day = first64 + np.timedelta64(7 * wk, "D")
        sim.advance(wk, day)
        if wk < 0:
            continue
        week, zs = sim.observe(wk, day)
        for k, v in week.items():
            cols.setdefault(k, []).append(v)
        events.append(sim.outcomes(day, zs))
    data = {k: np.concatenate(v) for k, v in cols.items()}
    origin = (
        f"make_portfolio(n_accounts={n_accounts}, n_weeks={n_weeks}, seed={seed}, "
        f"end=date({end.year}, {end.month}, {end.day}){_NONLINEAR_ARG if sim.nonlinear else ''})"
    )
    return _assemble(sim.book, data, np.concatenate(events, axis=1), first64, origin, sim.nonlinear)


class _Simulation:
    """The weekly state of every account and how it moves; one instance per portfolio.

    The random draws happen in a fixed order and always for all accounts (churned or not yet
    started ones too), so a seed fixes everything.
    """

    def __init__(self, rng: np.random.Generator, n: int, end: np.datetime64, nonlinear: bool = False) -> None:
        self.rng, self.n, self.nonlinear = rng, n, nonlinear
        self.book = book = _draw_book(rng, n, end)
        self.high = book.touch == 0
        self.csm = book.draw_csm(rng, np.ones(n, dtype=bool))
        # latent health: AR(1) around an account mean that depends on segment and touch model
        self.mu = _lookup(_HEALTH_MEAN, book.seg, book.touch) + rng.normal(0, 0.5, n)
        self.h = self.mu + rng.normal(0, _SIGMA / np.sqrt(1 - _PHI**2), n)
        self.eff_dr = rng.normal(0, 0.4, n)  # how fully an account provisions its seats
        self.eff_kf = rng.normal(0, 0.4, n)  # how broadly it uses the key features
        scale = (_NONLINEAR_CHURN_SCALE, 1.0) if nonlinear else (1.0, 1.0)
        self.base = np.stack(
            [
                _weekly_logit(scale[i] * _lookup({k: v[i] for k, v in _BASE_RATES.items()}, book.seg, book.touch))
                for i in (0, 1)
            ]
        )
        self.coef = np.array([[v[2] for v in METRICS.values()], [v[3] for v in METRICS.values()]])
        self.other = np.array([[v[0] for v in _OTHER_TERMS.values()], [v[1] for v in _OTHER_TERMS.values()]])
        self.ref = np.array(list(_REFERENCE.values()))  # [metric, (mean, sd)] in METRICS order
        never = -10_000
        self.last_meeting = np.where(rng.random(n) < 0.4, -rng.integers(1, 13, n), never) - _BURN_IN
        self.last_champion = np.full(n, never)
        self.last_handover = np.full(n, never)
        self.overdue = np.zeros(n)
        self.assessment = np.clip(np.round(3 + 0.9 * self.h + rng.normal(0, 0.5, n)), 1, 5)
        self.seats = book.seats.copy()
        self.arr = np.round(self.seats * book.price, 0)
        self.alive = np.ones(n, dtype=bool)
        self.started = np.zeros(n, dtype=bool)
        self.tenure = np.zeros(n, dtype=np.int64)
        self.aux: dict[str, np.ndarray] = {}

    def advance(self, wk: int, day: np.datetime64) -> None:
        """Move health and the slow states (meetings, invoices, CSM view, shocks) one week on."""
        rng, n, h = self.rng, self.n, self.h
        self.tenure = (day - self.book.start).astype(np.int64)  # days since the contract started
        self.started = started = self.tenure >= 0
        # shocks: the champion leaves, the CSM changes; both dent health
        champ = started & (rng.random(n) < 0.004)
        self.last_champion = np.where(champ, wk, self.last_champion)
        hand = started & (self.csm >= 0) & (rng.random(n) < 0.004)
        self.csm = np.where(hand, self.book.draw_csm(rng, hand), self.csm)
        self.last_handover = np.where(hand, wk, self.last_handover)
        self.h = h = self.mu + _PHI * (h - self.mu) + rng.normal(0, _SIGMA, n) - 0.8 * champ - 0.2 * hand
        meet = rng.random(n) < _sigmoid(np.where(self.high, -2.0, -4.0) + 0.8 * h)
        self.last_meeting = np.where(meet & started, wk, self.last_meeting)
        # invoices: an overdue invoice gets paid or ages another week; healthier accounts pay sooner
        pay = rng.random(n) < _sigmoid(0.3 + 0.8 * h)
        new_over = rng.random(n) < _sigmoid(-3.8 - 0.7 * h)
        self.overdue = np.where(
            self.overdue > 0, np.where(pay, 0.0, self.overdue + 7), np.where(new_over, rng.integers(1, 15, n), 0.0)
        )
        revisit = rng.random(n) < 0.3  # CSMs revisit their assessment every few weeks
        self.assessment = np.where(
            revisit, np.clip(np.round(3 + 0.9 * h + rng.normal(0, 0.5, n)), 1, 5), self.assessment
        )

    def observe(self, wk: int, day: np.datetime64) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """This week's snapshot rows (accounts that are customers) and the standardised signals."""
        rng, n, h, seats, tenure = self.rng, self.n, self.h, self.seats, self.tenure
        renewal = _next_renewal(self.book.start, day)
        goal_start = np.maximum(_add_months(renewal, -12), self.book.start)  # one goal per contract year
        young = tenure < 91
        ramp = np.clip(tenure / 70.0, 0.3, 1.0)  # usage ramps up over the first ten weeks

        u = h + rng.normal(0, 0.4, n)  # shared weekly usage factor: logins and active users move together
        z = rng.normal(size=(8, n))
        dr = np.round(seats * np.clip(_sigmoid(0.8 + 0.6 * h + self.eff_dr) * 1.15 * ramp, 0, 1.2)) / seats
        deployed = np.round(dr * seats).astype(np.int64)
        active = rng.binomial(deployed, _sigmoid(0.3 + 0.8 * u))  # saturates at the deployed seats
        logins = rng.binomial(7, _sigmoid(0.2 + 0.9 * u + 0.3 * z[0]))
        kfa = rng.binomial(10, _sigmoid(-0.2 + 0.7 * h + self.eff_kf)) / 10.0
        spike = rng.random(n) < 0.03  # batch jobs: rare weeks with many times the usual calls
        calls = np.round(
            np.exp(0.9 * np.log1p(deployed) + 2.5 + 0.5 * h + 0.8 * z[1]) * np.where(spike, np.exp(2 + z[2]), 1.0)
        )
        tickets = rng.poisson(0.04 * np.sqrt(seats) * np.exp(-0.35 * h) * np.where(young, 2.0, 1.0))
        high_sev = rng.binomial(tickets, _sigmoid(-1.8 - 0.5 * h))
        csat_seen = (tickets > 0) & (rng.random(n) < _sigmoid(0.5 + 0.8 * h))
        nps_seen = rng.random(n) < 0.08 * _sigmoid(0.3 + 1.2 * h)  # unhappy accounts answer less
        on_line = np.clip((day - goal_start).astype(np.int64) / 182.0, 0, 1)  # where the goal line is
        metrics = {
            "active_users": active,
            "seat_utilization": np.minimum(active / seats, 1.5),
            "login_days": logins,
            "key_feature_adoption": kfa,
            "api_calls": np.where(self.book.integrated, calls, np.nan),
            "tickets_opened": tickets,
            "high_sev_tickets": high_sev,
            "csat": np.where(csat_seen, np.clip(np.round(4.0 + 0.5 * h + 0.6 * z[3], 1), 1, 5), np.nan),
            "nps": np.where(nps_seen, np.clip(np.round(7 + 1.6 * h + 1.2 * z[4]), 0, 10), np.nan),
            "exec_sponsor_engaged": (wk - self.last_meeting < _WINDOW_90D),
            "champion_left": (wk - self.last_champion < _WINDOW_90D),
            "csm_assessment": np.where(self.high, self.assessment, np.nan),
            "days_invoice_overdue": self.overdue,
            "seats_deployed_ratio": dr,
            "goal_progress": np.clip(on_line * np.clip(1 + 0.35 * h + 0.1 * z[5], 0, 1.5), 0, 1.2),
            "email_ctr": _sigmoid(-2.2 + 0.35 * h + 0.5 * z[6]),
            "community_posts": rng.poisson(0.3 * np.exp(0.25 * h)),
            "training_completions": rng.poisson(np.where(young, 1.5, 0.5) * np.exp(0.15 * h)),
        }
        # the hazards see exactly the snapshot columns (api_calls on the log scale); a null counts
        # as the reference mean, i.e. contributes nothing that week
        seen = np.stack([np.log1p(v) if m == "api_calls" else v for m, v in metrics.items()]).astype(float)
        zs = np.nan_to_num((seen - self.ref[:, :1]) / self.ref[:, 1:], nan=0.0)
        to_renewal = (renewal - day).astype(np.int64)
        self.aux = {
            "near_renewal": to_renewal <= 56,
            "young": young,
            "handover": (wk - self.last_handover) < _WINDOW_90D,
            "champion_left": metrics["champion_left"],
        }
        if self.nonlinear:
            self.aux["churn_terms"] = _nonlinear_churn(metrics, self.book.seg)

        i = np.flatnonzero(self.alive & self.started)
        stage = np.where(young, 0, np.where((tenure >= 270) & (to_renewal <= 90), 3, np.where(tenure < 365, 1, 2)))
        week = {
            "_i": i,
            "_wk": np.full(len(i), wk),
            "_csm": self.csm[i],
            "_stage": stage[i],
            "_health": h[i],
            "arr": self.arr[i],
            "seats_purchased": seats[i],
            "renewal_date": renewal[i],
            "goal_start": goal_start[i],
            "goal_due": goal_start[i] + np.timedelta64(182, "D"),
        }
        week.update({m: v[i].astype(float) for m, v in metrics.items()})
        return week, zs

    def outcomes(self, day: np.datetime64, zs: np.ndarray) -> np.ndarray:
        """Draw this week's churn, expansion and contraction; rows (account, day, event, detail)."""
        rng, n, seats, aux = self.rng, self.n, self.seats, self.aux
        terms = np.stack([aux["near_renewal"], aux["young"], aux["handover"]]).astype(float)
        lp = self.base + self.coef @ zs + self.other @ terms  # [churn, expansion] weekly log-odds
        contrib = self.coef[0][:, None] * zs
        if self.nonlinear:
            contrib = aux["churn_terms"]
            lp[0] = self.base[0] + contrib.sum(axis=0) + self.other[0] @ terms
        row = self.alive & self.started
        churn = row & (rng.random(n) < _sigmoid(lp[0]))
        expand = row & ~churn & (rng.random(n) < _sigmoid(lp[1]))
        cut = np.minimum(np.maximum(1, np.round(seats * rng.uniform(0.1, 0.3, n))), seats - 1).astype(np.int64)
        contract = (
            row
            & ~churn
            & ~expand
            & aux["near_renewal"]
            & (cut > 0)
            & (rng.random(n) < _sigmoid(_contraction_logit(zs)))
        )
        add = np.maximum(1, np.round(seats * rng.uniform(0.08, 0.4, n))).astype(np.int64)
        when = day.astype(np.int64) + rng.integers(1, 7, n)  # dated within the next six days
        j = np.flatnonzero(churn)
        reason = _churn_reason(rng, contrib[:, j], aux["champion_left"][j])
        out = []
        for code, mask, detail in ((0, churn, None), (1, expand, add), (2, contract, cut)):
            j = np.flatnonzero(mask)
            out.append(np.stack([j, when[j], np.full(len(j), code), reason if detail is None else detail[j]]))
        per_seat = self.arr / seats
        self.seats = np.where(expand, seats + add, np.where(contract, seats - cut, seats))
        self.arr = np.where(expand | contract, np.round(per_seat * self.seats, 0), self.arr)
        self.alive &= ~churn
        return np.concatenate(out, axis=1)


def _contraction_logit(zs: np.ndarray) -> np.ndarray:
    rows = {m: k for k, m in enumerate(METRICS)}
    return _CONTRACTION[0] + sum(c * zs[rows[m]] for m, c in _CONTRACTION[1].items())


EVENTS = ("churned", "expanded", "contracted")
_OUTSIDE_REASONS = ("budget cuts", "switched to a competitor", "acquired", "project ended")
# metric index -> churn reason when that metric pushed the hazard up most
_REASON_OF_METRIC = {
    1: "low adoption",
    2: "low adoption",
    3: "low adoption",
    4: "low adoption",
    6: "support experience",
    7: "support experience",
    8: "unhappy with the product",
    9: "no executive sponsor",
    10: "champion left",
    11: "relationship",
    12: "budget / non-payment",
    13: "low adoption",
    14: "goals not met",
}
REASONS = tuple(dict.fromkeys([*_REASON_OF_METRIC.values(), *_OUTSIDE_REASONS]))


def _churn_reason(rng: np.random.Generator, contrib: np.ndarray, champ_left: np.ndarray) -> np.ndarray:
    """Reason codes (index into REASONS): mostly the metric that pushed churn up most, sometimes
    an outside reason the data cannot see."""
    k = contrib.shape[1]
    named = np.array([REASONS.index(_REASON_OF_METRIC.get(m, "low adoption")) for m in range(contrib.shape[0])])[
        np.argmax(contrib, axis=0)
    ]
    outside = np.array([REASONS.index(r) for r in _OUTSIDE_REASONS])[rng.integers(0, 4, k)]
    strong = (contrib.max(axis=0, initial=0.0) > 0.25) & (rng.random(k) < 0.75)
    out = np.where(strong, named, outside)
    return np.where((champ_left > 0) & (rng.random(k) < 0.6), REASONS.index("champion left"), out)


def _assemble(
    book: _Book,
    data: dict[str, np.ndarray],
    events: np.ndarray,
    first64: np.datetime64,
    origin: str,
    nonlinear: bool = False,
) -> Portfolio:
    n = len(book.seg)
    width = max(5, len(str(n)))  # zero-padded ids sort like their numbers
    ids = pl.Series("account_id", np.arange(1, n + 1)).cast(pl.String).str.zfill(width)
    ids = ("A" + ids).alias("account_id")
    attrs = pl.DataFrame(
        [
            ids,
            pl.Series("company_name", book.names),
            pl.Series(SEGMENTS).gather(book.seg).alias("segment"),
            pl.Series(TOUCH).gather(book.touch).alias("touch_model"),
            pl.Series(INDUSTRIES).gather(book.industry).alias("industry"),
            pl.Series(REGIONS).gather(book.region).alias("region"),
            pl.Series("contract_start", book.start),
        ]
    )
    order = np.lexsort((data["_wk"], data["_i"]))  # account, then week
    raw = pl.DataFrame({k: v[order] for k, v in data.items()}, nan_to_null=True)
    first = first64.astype(object)
    as_of = (pl.lit(first) + pl.duration(weeks=pl.col("_wk"))).cast(pl.Date)
    snaps = pl.concat([attrs[raw["_i"].to_numpy()], raw], how="horizontal").with_columns(
        as_of=as_of,
        csm=pl.Series(book.csm_names, dtype=pl.String).gather(raw["_csm"].replace(-1, None)),
        lifecycle_stage=pl.Series(STAGES).gather(raw["_stage"]),
    )
    snaps = snaps.select(
        "account_id",
        "as_of",
        "company_name",
        "segment",
        "touch_model",
        "industry",
        "region",
        "csm",
        "lifecycle_stage",
        pl.col("arr").cast(pl.Float64),
        pl.col("seats_purchased").cast(pl.Int64),
        "contract_start",
        *[pl.col(c).cast(pl.Date) for c in ("renewal_date", "goal_start", "goal_due")],
        *[pl.col(m).cast(pl.Float64).round(4) for m in METRICS],
    )
    latent = snaps.select("account_id", "as_of").with_columns(health=raw["_health"].round(6))

    ev = pl.DataFrame(
        {"_i": events[0], "date": events[1], "_e": events[2], "_d": events[3]},
        schema={"_i": pl.Int64, "date": pl.Int64, "_e": pl.Int64, "_d": pl.Int64},
    )
    reasons = pl.Series(REASONS).gather(ev["_d"].clip(0, len(REASONS) - 1))  # used for churn only
    ev = ev.select(
        account_id=ids.gather(ev["_i"]),
        date=pl.col("date").cast(pl.Int32).cast(pl.Date),
        event=pl.Series(EVENTS).gather(ev["_e"]),
        details=pl.when(pl.col("_e") == 0)
        .then(reasons)
        .when(pl.col("_e") == 1)
        .then(pl.format("+{} seats", pl.col("_d")))
        .otherwise(pl.format("-{} seats", pl.col("_d"))),
    ).sort("date", "account_id", "event")
    return Portfolio(
        snapshots=snaps, accounts=_accounts_table(snaps, ev), events=ev, truth=_truth(latent, nonlinear), origin=origin
    )


def _accounts_table(snaps: pl.DataFrame, ev: pl.DataFrame) -> pl.DataFrame:
    """One row per account: attributes as of its latest snapshot, first/last week, churn date."""
    churned = ev.filter(pl.col("event") == "churned").select("account_id", churn_date="date")
    span = snaps.group_by("account_id").agg(first_as_of=pl.col("as_of").min())
    return (
        latest_week(snaps)
        .select(
            "account_id",
            "company_name",
            "segment",
            "touch_model",
            "industry",
            "region",
            "csm",
            "arr",
            "seats_purchased",
            "contract_start",
            "renewal_date",
            last_as_of="as_of",
        )
        .join(span, on="account_id")
        .join(churned, on="account_id", how="left")
        .with_columns(
            status=pl.when(pl.col("churn_date").is_null()).then(pl.lit("active")).otherwise(pl.lit("churned"))
        )
        .sort("account_id")
    )


def _truth(latent: pl.DataFrame, nonlinear: bool = False) -> Truth:
    effects = pl.DataFrame(
        {
            "metric": list(METRICS),
            "category": [v[0] for v in METRICS.values()],
            "direction": [v[1] for v in METRICS.values()],
            "churn_coef": [v[2] for v in METRICS.values()],
            "expansion_coef": [v[3] for v in METRICS.values()],
            "description": [v[4] for v in METRICS.values()],
        }
    )
    keys = [(s, t) for s in SEGMENTS for t in TOUCH]
    segment_churn = pl.DataFrame(
        {
            "segment": [s for s, _ in keys],
            "touch_model": [t for _, t in keys],
            "base_annual_churn": [_BASE_RATES[k][0] for k in keys],
            "base_annual_expansion": [_BASE_RATES[k][1] for k in keys],
            "health_mean": [_HEALTH_MEAN[k] for k in keys],
        }
    )
    other = pl.DataFrame(
        {
            "term": list(_OTHER_TERMS),
            "churn_coef": [v[0] for v in _OTHER_TERMS.values()],
            "expansion_coef": [v[1] for v in _OTHER_TERMS.values()],
            "description": [v[2] for v in _OTHER_TERMS.values()],
        }
    )
    if not nonlinear:
        return Truth(effects=effects, latent=latent, segment_churn=segment_churn, other_terms=other)
    # the churn coefficients do not apply: churn follows truth.curves (expansion stays linear)
    effects = effects.with_columns(
        churn_coef=pl.lit(None, pl.Float64),
        churn_shape=pl.Series([_NONLINEAR[m][0] if m in _NONLINEAR else "none" for m in METRICS]),
    )
    segment_churn = segment_churn.with_columns(pl.col("base_annual_churn") * _NONLINEAR_CHURN_SCALE)
    return Truth(
        effects=effects,
        latent=latent,
        segment_churn=segment_churn,
        other_terms=other,
        curves=_truth_curves(),
        kind="nonlinear",
    )


# ----------------------------------------------------------------------------- data dictionary
# metric -> (unit and range, what a null means)
_UNITS: dict[str, tuple[str, str]] = {
    "active_users": ("users, 0..seats provisioned", "never null"),
    "seat_utilization": ("ratio 0..1.5 (active users / seats purchased)", "never null"),
    "login_days": ("days 0..7", "never null"),
    "key_feature_adoption": ("share 0..1 of the 10 key features", "never null"),
    "api_calls": ("calls per week, heavy tailed", "the account has no integration (same every week)"),
    "tickets_opened": ("tickets per week", "never null"),
    "high_sev_tickets": ("tickets per week (a subset of tickets_opened)", "never null"),
    "csat": ("score 1..5, one decimal", "no ticket that week, or nobody answered the survey"),
    "nps": ("answer 0..10", "no answer that week (most weeks); unhappier accounts answer less"),
    "exec_sponsor_engaged": ("flag 0/1", "never null"),
    "champion_left": ("flag 0/1", "never null"),
    "csm_assessment": ("score 1..5", "digital (low-touch) account: no CSM assessment"),
    "days_invoice_overdue": ("days, 0 when nothing is overdue", "never null"),
    "seats_deployed_ratio": ("ratio 0..1.2 (seats provisioned / purchased)", "never null"),
    "goal_progress": ("share 0..1.2 of the success-plan goal", "never null"),
    "email_ctr": ("rate 0..1", "never null"),
    "community_posts": ("posts in the last 30 days", "never null"),
    "training_completions": ("modules in the last 30 days", "never null"),
}

_ATTRIBUTE_DOCS = [
    ("account_id", "Utf8", "account key, `A` + zero-padded number"),
    ("as_of", "Date", "snapshot date, weekly on Mondays"),
    ("company_name", "Utf8", "invented company name (word lists, not real companies)"),
    ("segment", "Utf8", "`enterprise`, `mid_market` or `smb`"),
    ("touch_model", "Utf8", "`high` (named CSM) or `digital` (pooled / automated coverage)"),
    ("industry", "Utf8", "one of " + ", ".join(f"`{i}`" for i in INDUSTRIES)),
    ("region", "Utf8", "one of " + ", ".join(f"`{r}`" for r in REGIONS)),
    ("csm", "Utf8", "CSM that week; changes for some accounts; null for digital SMB accounts"),
    (
        "lifecycle_stage",
        "Utf8",
        "`onboarding` (first 13 weeks), `renewal` (renewal at most 90 days "
        "away, after 9 months), `adoption` (first year), `mature`",
    ),
    ("arr", "Float64", "annual recurring revenue that week, in dollars (moves with seat changes)"),
    ("seats_purchased", "Int64", "seats under contract that week"),
    ("contract_start", "Date", "first day of the first contract (annual contracts renew on its anniversary)"),
    ("renewal_date", "Date", "next contract anniversary after `as_of`"),
    ("goal_start", "Date", "start of the current success-plan goal (start of the contract year)"),
    ("goal_due", "Date", "goal due date, 26 weeks after `goal_start`; the goal line rises linearly in between"),
]

_ACCOUNT_DOCS = [
    ("account_id ... region", "as in the snapshots"),
    ("csm, arr, seats_purchased, renewal_date", "as of the account's latest snapshot"),
    ("contract_start", "first day of the first contract"),
    ("first_as_of, last_as_of", "first and latest snapshot date of the account"),
    ("churn_date", "date of the churn event, null when the account did not churn"),
    ("status", "`churned` or `active`"),
]


def _table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def data_dictionary(p: Portfolio) -> str:
    """The README.md written beside a saved portfolio: files, every column, and the truth."""
    st = portfolio_stats(p)
    made = f"`{p.origin}`" if p.origin else "an unknown call"
    reasons = ", ".join(f"`{r}`" for r in REASONS)
    metric_rows = [
        [f"`{m}`", cat, direction.replace("_", " "), _UNITS[m][0], _UNITS[m][1], text]
        for m, (cat, direction, _c, _e, text) in METRICS.items()
    ]
    truth_rows = [
        [f"`{m}`", f"{c:+.2f}", f"{e:+.2f}", f"{_REFERENCE[m][0]:g}", f"{_REFERENCE[m][1]:g}"]
        for m, (_c, _d, c, e, _x) in METRICS.items()
    ]
    base_rows = [
        [s, t, f"{_BASE_RATES[(s, t)][0]:.1%}", f"{_BASE_RATES[(s, t)][1]:.1%}", f"{_HEALTH_MEAN[(s, t)]:+.2f}"]
        for s in SEGMENTS
        for t in TOUCH
    ]
    other_rows = [[f"`{k}`", f"{c:+.2f}", f"{e:+.2f}", d] for k, (c, e, d) in _OTHER_TERMS.items()]
    contraction = " ".join(f"{c:+.1f} x z({m})" for m, c in _CONTRACTION[1].items())
    return f"""# Sample portfolio: data dictionary

A synthetic book of business of a B2B software company, generated by {made}
(`healthscore sample`, or `make data` for this folder). Nothing in it is real. Because it is
simulated, the true effect of every signal on churn and on expansion is known, so the score
models, fits and backtests built with healthscore can be checked against it. The same call
always writes the same bytes.

{st["accounts"]:,} accounts, {st["rows"]:,} snapshot rows over {st["weeks"]} weeks ({st["first"]} to {st["last"]}).
Observed rates: {st["churn_rate"]:.1%} logo churn and {st["expansion_rate"]:.1%} of accounts expanding
per account-year, {st["contraction_rate"]:.1%} contracting.

```python
from healthscore.datasets import load_sample      # this folder, or the same data regenerated
p = load_sample()
p.snapshots, p.events, p.accounts, p.truth.effects
```

## Files

{
        _table(
            ["file", "contents"],
            [
                ["`snapshots.parquet`", "one row per account and week: attributes and the 18 raw signals"],
                ["`events.parquet`", "outcomes: churned, expanded, contracted (never stored on a snapshot)"],
                ["`accounts.parquet`", "one row per account: attributes at its latest snapshot, churn date, status"],
                ["`latest_week.csv`", "the latest snapshot of every account, for spreadsheets"],
                ["`truth_effects.csv`", "true effect of each signal on churn and on expansion"],
                ["`truth_segment_churn.csv`", "base annual churn and expansion per segment and touch model"],
                ["`truth_other_terms.csv`", "the other terms of the hazards (renewal, new contract, CSM handover)"],
                ["`truth_latent.parquet`", "`account_id`, `as_of`, `health`: the hidden health behind the signals"],
            ],
        )
    }

## Snapshots: attributes

Keys are `account_id` and `as_of`. An account has rows from the Monday on or after its contract
start (or the first week of the window) until the last week before it churned; never after.

{_table(["column", "type", "meaning"], [[f"`{c}`", t, m] for c, t, m in _ATTRIBUTE_DOCS])}

## Snapshots: raw signals

All Float64. A null means "not measured or not applicable"; it is never a stand-in for zero.

{_table(["column", "category", "direction", "unit", "null means", "description"], metric_rows)}

## Events

{
        _table(
            ["column", "type", "meaning"],
            [
                ["`account_id`", "Utf8", "the account"],
                ["`date`", "Date", "day of the event, 1 to 6 days after the snapshot it followed"],
                ["`event`", "Utf8", "`churned` (at most once, last event of the account), `expanded`, `contracted`"],
                ["`details`", "Utf8", f"churn reason ({reasons}); `+N seats` or `-N seats` for seat changes"],
            ],
        )
    }

The churn reason names the signal that pushed the churn hazard up most that week when that push
was large (three times in four), the champion leaving (most of the time when it happened), or
else a reason the data cannot see (budget cuts, a competitor, an acquisition, a finished project).

## Accounts

{_table(["column", "meaning"], [[c, m] for c, m in _ACCOUNT_DOCS])}

## The truth

**Health.** Each account has a hidden health value that moves week by week as an AR(1) process
(persistence {_PHI}, weekly noise SD {_SIGMA}) around its own mean: the segment and touch-model
mean below plus an account effect (SD 0.5). The champion leaving knocks it down by 0.8 and a CSM
handover by 0.2; both then fade at the same persistence. Health drives every signal with noise:
logins and active users share one weekly usage factor (so they are collinear), active users
cannot exceed the seats provisioned (saturation), API calls are log-normal with rare spikes
(heavy tail), onboarding accounts ramp their usage up over about ten weeks and open more
tickets, and survey answers are rarer for unhappy accounts (missing not at random).

**Hazards.** Every week, for every account still a customer, the log-odds of churning before
the next snapshot is

    logit P(churn) = base(segment, touch) + sum over signals of churn_coef x z(signal) + other terms

where z(signal) = (value - reference mean) / reference SD, with `api_calls` taken as
log1p(calls), and a null value contributes nothing (z = 0). Expansion works the same way with
`expansion_coef` and its own base rate; an expansion adds 8 to 40 % seats (ARR follows).
Contraction happens only in the 8 weeks before a renewal, with weekly log-odds
{_CONTRACTION[0]:+.1f} {contraction}, and removes 10 to 30 % of the seats. The hazards read
exactly the values stored in `snapshots.parquet` (before rounding to 4 decimals), so a weekly
logistic regression on these columns recovers the coefficients. Coefficients of zero are real
zeros: those signals only travel with health, they do not cause anything.

{_table(["signal", "churn_coef", "expansion_coef", "reference mean", "reference SD"], truth_rows)}

Base rates: the annual rate an account would have with every signal at its reference mean and
no other term active (weekly log-odds = logit(1 - (1 - annual)^(1/52))). Health mean is the
centre of the hidden health process for that group.

{_table(["segment", "touch model", "base annual churn", "base annual expansion", "health mean"], base_rows)}

Other terms of the hazards (log-odds):

{_table(["term", "churn", "expansion", "when"], other_rows)}
"""


# ----------------------------------------------------------------------------- bundled copy
def sample_dir() -> Path:
    """The folder of the bundled sample (a package resource)."""
    return resources.sample_dir()


SAMPLE_ARGS = {"n_accounts": 2000, "n_weeks": 52, "seed": 7, "end": date(2026, 11, 16)}


def load_sample() -> Portfolio:
    """The bundled sample portfolio (2,000 accounts x 52 weeks, seed 7).

    Read from ``data/`` when it is there (a source checkout); otherwise regenerated in memory,
    which gives the same tables.
    """
    folder = sample_dir()
    if all((folder / name).exists() for name in Portfolio.FILES):
        return Portfolio.load(folder)
    return make_portfolio(**SAMPLE_ARGS)
