"""A synthetic B2B SaaS book of business whose truth is known.

:func:`make_portfolio` simulates accounts week by week. A latent health process per account
(AR(1) around a segment- and touch-model-dependent mean, with shocks such as the champion
leaving) drives 18 raw signals with noise, heavy tails, saturation, collinearity and missingness
that is not at random. Churn, expansion and contraction are drawn from weekly hazards that are
logistic in a documented linear predictor over the standardised signals, so a fitted model can be
checked against ``portfolio.truth``.

>>> from healthscore.datasets import make_portfolio
>>> p = make_portfolio(n_accounts=50, n_weeks=8, seed=1)
>>> p.snapshots.select("account_id", "as_of").n_unique() == p.snapshots.height
True
>>> sorted(p.events["event"].unique().to_list()) <= ["churned", "contracted", "expanded"]
True
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from healthscore import files

__all__ = ["Portfolio", "Truth", "make_portfolio", "sample_dir", "load_sample", "METRICS"]

# ----------------------------------------------------------------------------- the truth
# metric -> (category, direction, churn_coef, expansion_coef, description).
# Coefficients: change in the weekly log-odds of the event per one reference standard deviation of
# the metric (see _REFERENCE), sign included. Zero means the metric has no effect at all.
METRICS: dict[str, tuple[str, str, float, float, str]] = {
    "active_users": ("usage", "higher_is_better", 0.0, 0.0,
                     "distinct weekly active users (mostly reflects account size; no effect of its own)"),
    "seat_utilization": ("usage", "higher_is_better", -0.30, 0.45,
                         "active users / seats purchased, 0..1.5"),
    "login_days": ("usage", "higher_is_better", -0.25, 0.10,
                   "days with any login in the week, 0..7 (collinear with active users)"),
    "key_feature_adoption": ("usage", "higher_is_better", -0.25, 0.25,
                             "share of the 10 key features used in the last 30 days, 0..1"),
    "api_calls": ("usage", "higher_is_better", -0.15, 0.25,
                  "API calls in the week; effect per SD of log1p(calls), none without an integration"),
    "tickets_opened": ("support", "lower_is_better", 0.0, 0.0,
                       "support tickets opened in the week (no effect of its own)"),
    "high_sev_tickets": ("support", "lower_is_better", 0.15, -0.10,
                         "severity-1/2 tickets opened in the week"),
    "csat": ("support", "higher_is_better", -0.10, 0.0,
             "CSAT 1..5 of closed tickets; effect acts on the customer's satisfaction whether or not asked"),
    "nps": ("sentiment", "higher_is_better", -0.20, 0.15,
            "NPS 0..10; effect acts on the customer's sentiment whether or not they answered"),
    "exec_sponsor_engaged": ("relationship", "higher_is_better", -0.20, 0.25,
                             "1 if an executive sponsor met us in the last 90 days"),
    "champion_left": ("relationship", "lower_is_better", 0.30, -0.25,
                      "1 if the champion left in the last 90 days"),
    "csm_assessment": ("relationship", "higher_is_better", -0.25, 0.15,
                       "CSM's 1..5 assessment (high-touch only; no effect where null)"),
    "days_invoice_overdue": ("commercial", "lower_is_better", 0.20, -0.15,
                             "days the oldest open invoice is overdue"),
    "seats_deployed_ratio": ("commercial", "higher_is_better", -0.20, 0.30,
                             "seats provisioned / seats purchased, 0..1.2"),
    "goal_progress": ("outcomes", "higher_is_better", -0.20, 0.20,
                      "share of the success-plan goal achieved, 0..1.2"),
    "email_ctr": ("engagement", "higher_is_better", 0.0, 0.0,
                  "click-through rate of CS emails in the last 30 days (no effect)"),
    "community_posts": ("engagement", "higher_is_better", 0.0, 0.0,
                        "community posts in the last 30 days (no effect)"),
    "training_completions": ("engagement", "higher_is_better", 0.0, 0.0,
                             "training modules completed in the last 30 days (no effect)"),
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
    "csat": (3.96, 0.69),
    "nps": (6.9, 1.8),
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
    ("enterprise", "high"): (0.014, 0.08),
    ("enterprise", "digital"): (0.02, 0.08),
    ("mid_market", "high"): (0.02, 0.09),
    ("mid_market", "digital"): (0.028, 0.09),
    ("smb", "high"): (0.028, 0.09),
    ("smb", "digital"): (0.042, 0.09),
}
# latent health mean per (segment, touch model)
_HEALTH_MEAN = {
    ("enterprise", "high"): 0.35, ("enterprise", "digital"): 0.05,
    ("mid_market", "high"): 0.2, ("mid_market", "digital"): -0.05,
    ("smb", "high"): 0.05, ("smb", "digital"): -0.25,
}
# log-odds terms that are not metrics: name -> (churn, expansion, description)
_OTHER_TERMS: dict[str, tuple[float, float, str]] = {
    "renewal_within_8_weeks": (1.0, 0.6, "the next renewal date is at most 8 weeks away"),
    "first_13_weeks": (-2.0, -1.5, "the contract started less than 13 weeks ago"),
    "csm_handover_13_weeks": (0.35, 0.0, "the account changed CSM in the last 13 weeks"),
}

_PHI = 0.9          # weekly persistence of the latent health
_SIGMA = 0.3        # weekly innovation of the latent health
_BURN_IN = 26       # weeks simulated before the first snapshot (states, indicators)
_WINDOW_90D = 13    # "last 90 days" in weeks


@dataclass(frozen=True)
class Truth:
    """What generated the sample: per-metric effects, the latent health, base rates."""

    effects: pl.DataFrame
    latent: pl.DataFrame
    segment_churn: pl.DataFrame
    other_terms: pl.DataFrame


@dataclass(frozen=True)
class Portfolio:
    """A book of business: weekly ``snapshots``, one row per account in ``accounts``, outcome
    ``events`` and (for generated samples) the ``truth`` behind them."""

    snapshots: pl.DataFrame
    accounts: pl.DataFrame
    events: pl.DataFrame
    truth: Truth

    # files written by save(), in a fixed order
    FILES = ("snapshots.parquet", "events.parquet", "accounts.parquet", "truth_effects.csv",
             "truth_latent.parquet", "truth_segment_churn.csv", "truth_other_terms.csv",
             "latest_week.csv")

    def summary(self) -> str:
        """A few lines: accounts by segment, ARR, weeks, annualised churn and expansion rates."""
        s = portfolio_stats(self)
        lines = [f"{s['accounts']} accounts, {s['weeks']} weekly snapshots "
                 f"({s['first']} .. {s['last']}), {s['rows']} rows; latest ARR {s['arr']:,.0f}"]
        for seg, n in s["by_segment"].items():
            lines.append(f"  {seg:<11} {n:>6} accounts")
        lines.append(f"annual logo churn {s['churn_rate']:.1%}, accounts expanding per year "
                     f"{s['expansion_rate']:.1%}, contracting {s['contraction_rate']:.1%}")
        return "\n".join(lines)

    def save(self, folder: str | os.PathLike[str]) -> list[Path]:
        """Write every table into ``folder`` atomically; returns the paths written."""
        folder = Path(folder)
        paths = [folder / name for name in self.FILES]
        files.write_parquet(self.snapshots, paths[0])
        files.write_parquet(self.events, paths[1])
        files.write_parquet(self.accounts, paths[2])
        files.write_csv(self.truth.effects, paths[3])
        files.write_parquet(self.truth.latent, paths[4])
        files.write_csv(self.truth.segment_churn, paths[5])
        files.write_csv(self.truth.other_terms, paths[6])
        files.write_csv(latest_week(self.snapshots), paths[7])
        return paths

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Portfolio:
        """Read a portfolio written by :meth:`save`."""
        folder = Path(folder)
        missing = [n for n in cls.FILES if not (folder / n).exists()]
        if missing:
            raise FileNotFoundError(f"{folder}: missing {', '.join(missing)}; "
                                    f"run 'healthscore sample --out {folder}' to regenerate")
        truth = Truth(effects=pl.read_csv(folder / "truth_effects.csv"),
                      latent=pl.read_parquet(folder / "truth_latent.parquet"),
                      segment_churn=pl.read_csv(folder / "truth_segment_churn.csv"),
                      other_terms=pl.read_csv(folder / "truth_other_terms.csv"))
        return cls(snapshots=pl.read_parquet(folder / "snapshots.parquet"),
                   accounts=pl.read_parquet(folder / "accounts.parquet"),
                   events=pl.read_parquet(folder / "events.parquet"), truth=truth)


def latest_week(snapshots: pl.DataFrame) -> pl.DataFrame:
    """The latest snapshot of every account (churned accounts keep their last week)."""
    return (snapshots.sort("account_id", "as_of")
            .group_by("account_id", maintain_order=True).last())


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
        "accounts": snaps["account_id"].n_unique(), "weeks": weeks, "rows": snaps.height,
        "first": snaps["as_of"].min(), "last": snaps["as_of"].max(),
        "arr": float(latest.filter(pl.col("as_of") == snaps["as_of"].max())["arr"].sum()),
        "by_segment": dict(zip(by_seg["segment"].to_list(), by_seg["len"].to_list())),
        "churn_rate": count.get("churned", 0) / max(exposure_years, 1e-9),
        "expansion_rate": count.get("expanded", 0) / max(exposure_years, 1e-9),
        "contraction_rate": count.get("contracted", 0) / max(exposure_years, 1e-9),
    }


# ----------------------------------------------------------------------------- names
_NAME_A = ["Blue", "North", "Iron", "Silver", "Cedar", "Bright", "Stone", "Red", "Oak", "Clear",
           "Swift", "Golden", "River", "Summit", "Pine", "Harbor", "Falcon", "Maple", "Copper",
           "Green", "Granite", "Lake", "Star", "Cobalt", "Echo", "Prairie", "Atlas", "Willow",
           "Amber", "Coral", "Orchid", "Birch", "Delta", "Vista", "Polar", "Crescent", "Ember",
           "Sierra", "Meadow", "Beacon"]
_NAME_B = ["field", "stone", "wave", "bridge", "point", "gate", "line", "path", "works", "crest",
           "brook", "forge", "ridge", "light", "view", "wood", "peak", "port", "spring", "mark",
           "vale", "shore", "well", "haven", "stream", "rock", "side", "wind", "moor", "bay"]
_NAME_C = ["Analytics", "Logistics", "Health", "Systems", "Labs", "Foods", "Energy", "Media",
           "Partners", "Robotics", "Finance", "Supply", "Networks", "Retail", "Studios", "Bio"]
_SUFFIX = {"North America": ["Inc", "LLC", "Corp"], "EMEA": ["Ltd", "GmbH", "SA", "BV"],
           "APAC": ["Pte Ltd", "Pty Ltd", "KK"], "LATAM": ["SA", "Ltda", "SRL"]}
_FIRST = ["Alex", "Maria", "Sam", "Priya", "Jordan", "Chen", "Fatima", "Lukas", "Ana", "Tom",
          "Aisha", "Diego", "Hannah", "Kenji", "Olivia", "Mateo", "Sofia", "Noah", "Leila", "Ivan"]
_LAST = ["Rivera", "Okafor", "Schmidt", "Patel", "Nguyen", "Kowalski", "Haddad", "Silva", "Berg",
         "Tanaka", "Murphy", "Costa", "Novak", "Adeyemi", "Larsen", "Moreau", "Reyes", "Kim"]
INDUSTRIES = ["software", "financial services", "healthcare", "manufacturing", "retail",
              "education", "media", "logistics"]
REGIONS = ["North America", "EMEA", "APAC", "LATAM"]


def _company_names(rng: np.random.Generator, region: np.ndarray) -> list[str]:
    n = len(region)
    space = len(_NAME_A) * len(_NAME_B) * len(_NAME_C)
    code = rng.choice(space, size=n, replace=n > space)
    a, rest = np.divmod(code, len(_NAME_B) * len(_NAME_C))
    b, c = np.divmod(rest, len(_NAME_C))
    pick = rng.integers(0, 12, size=n)
    return [f"{_NAME_A[i]}{_NAME_B[j]} {_NAME_C[k]} {_SUFFIX[r][p % len(_SUFFIX[r])]}"
            for i, j, k, r, p in zip(a, b, c, region, pick)]


def _csm_pool(n_csm: int, offset: int) -> list[str]:
    # deterministic, distinct names; offset keeps segment pools apart
    names = []
    for i in range(offset, offset + n_csm):
        f, l = _FIRST[i % len(_FIRST)], _LAST[(i * 7 + i // len(_FIRST)) % len(_LAST)]
        names.append(f"{f} {l}" + ("" if i < len(_FIRST) * len(_LAST) else f" {i}"))
    return names


# ----------------------------------------------------------------------------- simulation
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def _weekly(annual: float) -> float:
    return 1.0 - (1.0 - annual) ** (1.0 / 52.0)


def _anniversary_after(start: np.ndarray, day: np.ndarray) -> np.ndarray:
    """First anniversary of ``start`` strictly after ``day`` (both datetime64[D] arrays)."""
    start_m = start.astype("datetime64[M]")
    dom = (start - start_m.astype("datetime64[D]")).astype(np.int64)
    years = (day.astype("datetime64[Y]") - start.astype("datetime64[Y]")).astype(np.int64)
    ann = (start_m + 12 * years).astype("datetime64[D]") + dom
    bump = ann <= day
    return np.where(bump, (start_m + 12 * (years + 1)).astype("datetime64[D]") + dom, ann)


def make_portfolio(n_accounts: int = 2000, n_weeks: int = 52, seed: int = 7,
                   end: date = date(2026, 11, 16)) -> Portfolio:
    """Generate a sample portfolio whose true effects are known.

    ``end`` is the last snapshot date (moved back to a Monday); snapshots are weekly.

    >>> p = make_portfolio(n_accounts=30, n_weeks=4, seed=3)
    >>> p.snapshots["as_of"].max()
    datetime.date(2026, 11, 16)
    >>> p.truth.effects.columns
    ['metric', 'category', 'direction', 'churn_coef', 'expansion_coef', 'description']
    """
    if n_accounts < 1 or n_weeks < 1:
        raise ValueError(f"n_accounts and n_weeks must be at least 1 (got {n_accounts}, {n_weeks})")
    rng = np.random.default_rng(seed)
    n = n_accounts
    end = end - timedelta(days=end.weekday())
    end64 = np.datetime64(end, "D")
    first64 = end64 - np.timedelta64(7 * (n_weeks - 1), "D")
    sim0 = first64 - np.timedelta64(7 * _BURN_IN, "D")

    # --- accounts -------------------------------------------------------------------------
    seg = rng.choice(3, size=n, p=[0.15, 0.35, 0.5])
    p_high = np.array([0.9, 0.5, 0.1])[seg]
    touch = (rng.random(n) >= p_high).astype(np.int64)  # 0 high, 1 digital
    industry = rng.integers(0, len(INDUSTRIES), size=n)
    region = rng.choice(len(REGIONS), size=n, p=[0.5, 0.3, 0.15, 0.05])
    seats0 = np.maximum(3, np.round(np.exp(rng.normal(np.log([400.0, 60.0, 12.0])[seg], 0.6)))).astype(np.int64)
    price = np.array([700.0, 550.0, 420.0])[seg] * np.exp(rng.normal(0, 0.15, n))
    # contract starts spread over ~4 years before the last snapshot, more of them recent (growth)
    age_days = (4 * 365 * rng.random(n) ** 1.3).astype(np.int64) + 7
    start = end64 - age_days.astype("timedelta64[D]")
    dom = (start - start.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64)
    start = start - np.maximum(dom - 27, 0).astype("timedelta64[D]")  # no 29th-31st: clean anniversaries
    integrated = rng.random(n) < np.array([0.7, 0.5, 0.25])[seg]
    names = _company_names(rng, np.array(REGIONS)[region])

    # CSM pools: one pool per segment for high touch; a small pooled team for digital mid/ent
    per_csm = np.array([12, 35, 60])
    pools = []
    off = 0
    for s in range(3):
        k = max(1, int(np.ceil(((seg == s) & (touch == 0)).sum() / per_csm[s])))
        pools.append(np.arange(off, off + k))
        off += k
    digital_pool = np.arange(off, off + max(1, int(np.ceil(((seg < 2) & (touch == 1)).sum() / 150))))
    off += len(digital_pool)
    csm_names = _csm_pool(off, 0)

    def draw_csm(mask: np.ndarray) -> np.ndarray:
        out = np.full(n, -1, dtype=np.int64)
        for s in range(3):
            m = mask & (seg == s) & (touch == 0)
            out[m] = rng.choice(pools[s], size=m.sum())
        m = mask & (seg < 2) & (touch == 1)
        out[m] = rng.choice(digital_pool, size=m.sum())
        return out

    csm = draw_csm(np.ones(n, dtype=bool))

    # --- latent health and per-account effects --------------------------------------------
    mu = np.vectorize(lambda s, t: _HEALTH_MEAN[(SEGMENTS[s], TOUCH[t])])(seg, touch) + rng.normal(0, 0.5, n)
    h = mu + rng.normal(0, _SIGMA / np.sqrt(1 - _PHI ** 2), n)
    eff_dr = rng.normal(0, 0.4, n)
    eff_kf = rng.normal(0, 0.4, n)
    base = np.array([[_BASE_RATES[(a, b)] for b in TOUCH] for a in SEGMENTS])  # [seg, touch, 2]
    churn0 = np.vectorize(lambda p: _logit(_weekly(p)))(base[seg, touch, 0])
    expand0 = np.vectorize(lambda p: _logit(_weekly(p)))(base[seg, touch, 1])

    coef_c = np.array([METRICS[m][2] for m in METRICS])
    coef_e = np.array([METRICS[m][3] for m in METRICS])
    ref_mean = np.array([_REFERENCE[m][0] for m in METRICS])
    ref_sd = np.array([_REFERENCE[m][1] for m in METRICS])
    other = {k: v for k, v in _OTHER_TERMS.items()}

    never = -10_000
    last_meeting = np.where(rng.random(n) < 0.4, -rng.integers(1, 13, n), never)
    last_champion = np.full(n, never)
    last_handover = np.full(n, never)
    overdue = np.zeros(n)
    assessment = np.clip(np.round(3 + 0.9 * h + rng.normal(0, 0.5, n)), 1, 5)
    seats = seats0.copy()
    arr = np.round(seats0 * price, 0)
    alive = np.ones(n, dtype=bool)

    weeks_out: list[pl.DataFrame] = []
    events: list[pl.DataFrame] = []
    latent: list[np.ndarray] = []
    total = _BURN_IN + n_weeks
    for t in range(total):
        day = sim0 + np.timedelta64(7 * t, "D")
        tenure = (day - start).astype(np.int64)  # days
        started = tenure >= 0
        # shocks: champion leaves, CSM handover
        champ = started & (rng.random(n) < 0.004)
        last_champion = np.where(champ, t, last_champion)
        hand = started & (csm >= 0) & (rng.random(n) < 0.004)
        new_csm = draw_csm(hand)
        csm = np.where(hand, new_csm, csm)
        last_handover = np.where(hand, t, last_handover)
        h = mu + _PHI * (h - mu) + rng.normal(0, _SIGMA, n) - 0.8 * champ - 0.2 * hand
        ramp = np.clip(tenure / 70.0, 0.3, 1.0)  # usage ramps over the first ~10 weeks
        meet = rng.random(n) < _sigmoid(np.where(touch == 0, -2.0, -4.0) + 0.8 * h)
        last_meeting = np.where(meet & started, t, last_meeting)
        # invoices: an overdue invoice either gets paid or ages another week
        pay = rng.random(n) < _sigmoid(0.3 + 0.8 * h)
        new_over = rng.random(n) < _sigmoid(-3.8 - 0.7 * h)
        overdue = np.where(overdue > 0, np.where(pay, 0.0, overdue + 7),
                           np.where(new_over, rng.integers(1, 15, n), 0.0))
        upd = rng.random(n) < 0.3  # CSMs revisit their assessment now and then
        assessment = np.where(upd, np.clip(np.round(3 + 0.9 * h + rng.normal(0, 0.5, n)), 1, 5), assessment)
        # weekly signal noise is drawn for everyone every week: the stream does not depend on churn
        u = h + rng.normal(0, 0.4, n)
        z = rng.normal(size=(8, n))
        spike = rng.random(n) < 0.03
        if t < _BURN_IN:
            continue
        wk = t - _BURN_IN
        renewal = _anniversary_after(start, day)
        goal_start = _anniversary_after(start, day - np.timedelta64(366, "D"))
        goal_start = np.where(goal_start > day, start, goal_start)
        goal_start = np.maximum(goal_start, start)
        goal_due = goal_start + np.timedelta64(182, "D")

        dr = np.clip(np.round(seats * np.clip(_sigmoid(0.8 + 0.6 * h + eff_dr) * 1.15 * ramp, 0, 1.2)) / seats, 0, 1.2)
        deployed = np.round(dr * seats).astype(np.int64)
        active = rng.binomial(deployed, _sigmoid(0.3 + 0.8 * u))
        util = np.minimum(active / seats, 1.5)
        logins = rng.binomial(7, _sigmoid(0.2 + 0.9 * u + 0.3 * z[0]))
        kfa = rng.binomial(10, _sigmoid(-0.2 + 0.7 * h + eff_kf)) / 10.0
        calls = np.round(np.exp(0.9 * np.log1p(deployed) + 2.5 + 0.5 * h + 0.8 * z[1])
                         * np.where(spike, np.exp(2 + z[2]), 1.0))
        tickets = rng.poisson(0.04 * np.sqrt(seats) * np.exp(-0.35 * h) * np.where(tenure < 91, 2.0, 1.0))
        high_sev = rng.binomial(tickets, _sigmoid(-1.8 - 0.5 * h))
        csat_true = np.clip(np.round(4.0 + 0.5 * h + 0.6 * z[3], 1), 1, 5)
        csat_seen = (tickets > 0) & (rng.random(n) < _sigmoid(0.5 + 0.8 * h))
        nps_true = np.clip(np.round(7 + 1.6 * h + 1.2 * z[4]), 0, 10)
        nps_seen = rng.random(n) < 0.08 * _sigmoid(0.3 + 1.2 * h)  # unhappy accounts answer less
        exec_eng = (t - last_meeting < _WINDOW_90D).astype(float)
        champ_left = (t - last_champion < _WINDOW_90D).astype(float)
        expected = np.clip((day - goal_start).astype(np.int64) / 182.0, 0, 1)
        progress = np.clip(expected * np.clip(1 + 0.35 * h + 0.1 * z[5], 0, 1.5), 0, 1.2)
        ctr = np.clip(_sigmoid(-2.2 + 0.35 * h + 0.5 * z[6]), 0, 1)
        posts = rng.poisson(0.3 * np.exp(0.25 * h))
        training = rng.poisson(np.where(tenure < 91, 1.5, 0.5) * np.exp(0.15 * h))
        high = touch == 0

        # values the hazards see (complete where the customer's state exists unobserved)
        hz = np.stack([active, util, logins, kfa, np.log1p(calls), tickets, high_sev, csat_true,
                       nps_true, exec_eng, champ_left, assessment, overdue, dr, progress, ctr, posts,
                       training]).astype(float)
        zs = (hz - ref_mean[:, None]) / ref_sd[:, None]
        zs[4] = np.where(integrated, zs[4], 0.0)
        zs[11] = np.where(high, zs[11], 0.0)
        near_renewal = (renewal - day).astype(np.int64) <= 56
        young = tenure < 91
        handover = (t - last_handover) < _WINDOW_90D
        terms = np.stack([near_renewal, young, handover]).astype(float)
        oc = np.array([v[0] for v in other.values()])
        oe = np.array([v[1] for v in other.values()])
        lp_churn = churn0 + coef_c @ zs + oc @ terms
        lp_exp = expand0 + coef_e @ zs + oe @ terms

        to_renewal = (renewal - day).astype(np.int64)
        stage = np.where(young, 0, np.where((tenure >= 270) & (to_renewal <= 90), 3,
                                            np.where(tenure < 365, 1, 2)))
        row = alive & started
        idx = np.flatnonzero(row)
        latent.append(np.stack([idx, np.full(len(idx), wk), h[idx]]))
        weeks_out.append(pl.DataFrame({
            "_i": idx, "_wk": np.full(len(idx), wk),
            "csm_i": csm[idx], "_stage": stage[idx],
            "arr": arr[idx], "seats_purchased": seats[idx],
            "renewal_date": renewal[idx], "goal_start": goal_start[idx], "goal_due": goal_due[idx],
            "active_users": active[idx].astype(float),
            "seat_utilization": util[idx],
            "login_days": logins[idx].astype(float),
            "key_feature_adoption": kfa[idx],
            "api_calls": np.where(integrated, calls, np.nan)[idx],
            "tickets_opened": tickets[idx].astype(float),
            "high_sev_tickets": high_sev[idx].astype(float),
            "csat": np.where(csat_seen, csat_true, np.nan)[idx],
            "nps": np.where(nps_seen, nps_true, np.nan)[idx],
            "exec_sponsor_engaged": exec_eng[idx],
            "champion_left": champ_left[idx],
            "csm_assessment": np.where(high, assessment, np.nan)[idx],
            "days_invoice_overdue": overdue[idx],
            "seats_deployed_ratio": dr[idx],
            "goal_progress": progress[idx],
            "email_ctr": ctr[idx],
            "community_posts": posts[idx].astype(float),
            "training_completions": training[idx].astype(float),
        }, nan_to_null=True))

        # outcomes: drawn from this week's snapshot, dated within the following six days
        churn = row & (rng.random(n) < _sigmoid(lp_churn))
        expand = row & ~churn & (rng.random(n) < _sigmoid(lp_exp))
        contract = row & ~churn & ~expand & near_renewal & (rng.random(n) < _sigmoid(-5.5 - 0.5 * zs[1] - 0.4 * zs[13]))
        offset = rng.integers(1, 7, n)
        reason = _churn_reason(rng, coef_c[:, None] * zs, champ_left)
        add = np.maximum(1, np.round(seats * rng.uniform(0.08, 0.4, n))).astype(np.int64)
        cut = np.maximum(1, np.round(seats * rng.uniform(0.1, 0.3, n))).astype(np.int64)
        cut = np.minimum(cut, seats - 1)
        contract &= cut > 0
        for mask, name, detail in [(churn, "churned", reason), (expand, "expanded", np.char.add("+", add.astype(str))),
                                   (contract, "contracted", np.char.add("-", cut.astype(str)))]:
            j = np.flatnonzero(mask)
            if len(j):
                events.append(pl.DataFrame({"_i": j, "date": day + offset[j].astype("timedelta64[D]"),
                                            "event": [name] * len(j),
                                            "details": [f"{d} seats" if name != "churned" else d for d in detail[j]]}))
        per_seat = arr / seats
        seats = np.where(expand, seats + add, np.where(contract, seats - cut, seats))
        arr = np.where(expand | contract, np.round(per_seat * seats, 0), arr)
        alive &= ~churn

    return _assemble(n, seg, touch, industry, region, start, names, csm_names, weeks_out, events,
                     latent, first64, base)


_REASONS_BY_TERM = {1: "low adoption", 2: "low adoption", 3: "low adoption", 6: "support experience",
                    7: "support experience", 8: "poor sentiment", 10: "champion left",
                    11: "relationship", 12: "budget / non-payment", 13: "low adoption",
                    14: "goals not met"}
_OTHER_REASONS = ["budget cuts", "switched to a competitor", "acquired", "project ended"]


def _churn_reason(rng: np.random.Generator, contrib: np.ndarray, champ_left: np.ndarray) -> np.ndarray:
    """The metric that pushed churn up most names the reason; otherwise a common outside reason."""
    top = np.argmax(contrib, axis=0)
    strong = contrib.max(axis=0) > 0.25
    outside = np.array(_OTHER_REASONS)[rng.integers(0, len(_OTHER_REASONS), contrib.shape[1])]
    named = np.array([_REASONS_BY_TERM.get(i, "low adoption") for i in range(contrib.shape[0])])[top]
    out = np.where(strong & (rng.random(contrib.shape[1]) < 0.75), named, outside)
    return np.where(champ_left > 0, np.where(rng.random(len(out)) < 0.6, "champion left", out), out)


def _assemble(n, seg, touch, industry, region, start, names, csm_names, weeks_out, events, latent,
              first64, base) -> Portfolio:
    ids = np.char.add("A", np.char.zfill(np.arange(1, n + 1).astype(str), 5))
    attrs = pl.DataFrame({
        "account_id": ids, "company_name": names,
        "segment": np.array(SEGMENTS)[seg], "touch_model": np.array(TOUCH)[touch],
        "industry": np.array(INDUSTRIES)[industry], "region": np.array(REGIONS)[region],
        "contract_start": start,
    })
    csm_s = pl.Series("csm", csm_names, dtype=pl.String)
    raw = pl.concat(weeks_out)
    first = first64.astype(object)
    snaps = pl.concat([attrs[raw["_i"].to_numpy()], raw], how="horizontal")
    metric_cols = list(METRICS)
    snaps = snaps.with_columns(
        as_of=pl.lit(first) + pl.duration(weeks=pl.col("_wk")),
        csm=csm_s.gather(pl.Series(raw["csm_i"]).replace(-1, None).cast(pl.Int64)),
        lifecycle_stage=pl.Series(STAGES).gather(raw["_stage"]),
        seats_purchased=pl.col("seats_purchased").cast(pl.Int64),
        arr=pl.col("arr").cast(pl.Float64),
    ).with_columns(pl.col("as_of").cast(pl.Date))
    snaps = snaps.select(
        "account_id", "as_of", "company_name", "segment", "touch_model", "industry", "region", "csm",
        "lifecycle_stage", "arr", "seats_purchased", "contract_start", "renewal_date", "goal_start",
        "goal_due", *[pl.col(m).cast(pl.Float64).round(4) for m in metric_cols],
    ).sort("account_id", "as_of")

    lat = np.concatenate(latent, axis=1)
    truth_latent = pl.DataFrame({
        "account_id": ids[lat[0].astype(np.int64)],
        "as_of": lat[1].astype(np.int64),
        "health": np.round(lat[2], 6),
    }).with_columns(as_of=(pl.lit(first) + pl.duration(weeks=pl.col("as_of"))).cast(pl.Date)) \
        .sort("account_id", "as_of")

    ev_schema = {"account_id": pl.String, "date": pl.Date, "event": pl.String, "details": pl.String}
    if events:
        ev = pl.concat(events)
        ev = pl.DataFrame({"account_id": ids[ev["_i"].to_numpy()]}).hstack(ev.drop("_i"))
        ev = ev.with_columns(pl.col("date").cast(pl.Date)).select(list(ev_schema)) \
            .sort("date", "account_id", "event")
    else:
        ev = pl.DataFrame(schema=ev_schema)

    last = latest_week(snaps)
    churned = ev.filter(pl.col("event") == "churned").select("account_id", churn_date="date")
    accounts = (last.select("account_id", "company_name", "segment", "touch_model", "industry", "region",
                            "csm", "arr", "seats_purchased", "contract_start", "renewal_date",
                            last_as_of="as_of")
                .join(snaps.group_by("account_id").agg(first_as_of=pl.col("as_of").min()), on="account_id")
                .join(churned, on="account_id", how="left")
                .with_columns(status=pl.when(pl.col("churn_date").is_null()).then(pl.lit("active"))
                              .otherwise(pl.lit("churned")))
                .sort("account_id"))

    effects = pl.DataFrame({
        "metric": list(METRICS),
        "category": [v[0] for v in METRICS.values()],
        "direction": [v[1] for v in METRICS.values()],
        "churn_coef": [v[2] for v in METRICS.values()],
        "expansion_coef": [v[3] for v in METRICS.values()],
        "description": [v[4] for v in METRICS.values()],
    })
    seg_rates = pl.DataFrame({
        "segment": [s for s in SEGMENTS for _ in TOUCH],
        "touch_model": [t for _ in SEGMENTS for t in TOUCH],
        "base_annual_churn": [_BASE_RATES[(s, t)][0] for s in SEGMENTS for t in TOUCH],
        "base_annual_expansion": [_BASE_RATES[(s, t)][1] for s in SEGMENTS for t in TOUCH],
    })
    other = pl.DataFrame({
        "term": list(_OTHER_TERMS),
        "churn_coef": [v[0] for v in _OTHER_TERMS.values()],
        "expansion_coef": [v[1] for v in _OTHER_TERMS.values()],
        "description": [v[2] for v in _OTHER_TERMS.values()],
    })
    return Portfolio(snapshots=snaps, accounts=accounts, events=ev,
                     truth=Truth(effects=effects, latent=truth_latent, segment_churn=seg_rates,
                                 other_terms=other))


# ----------------------------------------------------------------------------- bundled copy
def sample_dir() -> Path:
    """The repository's ``data/`` folder that holds the bundled sample."""
    return Path(__file__).resolve().parents[2] / "data"


def load_sample() -> Portfolio:
    """Load the bundled sample portfolio (2,000 accounts x 52 weeks, seed 7)."""
    return Portfolio.load(sample_dir())
