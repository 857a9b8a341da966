"""Cohort comparison: where health is good or bad, whether differences are real, how accounts move.

Every function takes the score frame of :func:`healthscore.score` (one row per account and
``as_of``) and returns aggregated polars frames; charts are built from those aggregates only, so
a chart never embeds account-level rows it does not need.

* :func:`compare_cohorts` - one cross-section by any attribute or combination, with the tests
  that tell a real difference from noise (Kruskal-Wallis, chi-square, pairwise tests with a
  multiple-testing correction, effect sizes) and Wilson intervals on churn and expansion rates.
* :func:`score_trend`, :func:`band_migration`, :func:`biggest_movers` - movement over time.
* :func:`metric_deciles`, :func:`suggest_breakpoints` - churn by decile of a raw metric, and the
  breakpoints the ``thresholds`` calibration can take.
* :func:`csm_view` - the portfolio per CSM and the relation between CSM handovers and churn.
* :func:`cohort_review` - everything the leadership review shows, in one object.

Derived dimensions usable in ``by``: ``signup_quarter`` (from ``contract_start``), ``arr_band``
(readable ARR ranges) and ``handovers`` (CSM changes on the account so far: ``0``, ``1``, ``2+``).

>>> import datetime as dt, polars as pl
>>> scores = pl.DataFrame({
...     "account_id": [f"a{i}" for i in range(8)], "as_of": [dt.date(2026, 1, 5)] * 8,
...     "segment": ["smb"] * 4 + ["enterprise"] * 4, "arr": [1e4] * 4 + [1e5] * 4,
...     "score": [20.0, 30, 35, 60, 70, 75, 80, 90],
...     "band": ["red", "red", "red", "yellow", "green", "green", "green", "green"]})
>>> cmp = compare_cohorts(scores, by="segment", min_size=5)
>>> cmp.cohorts.select("cohort", "accounts", "score_median", "small").rows()
[('enterprise', 4, 77.5, True), ('smb', 4, 32.5, True)]
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from healthscore.core.extract import is_cross_sectional
from healthscore.core.kernels import wilson_interval
from healthscore.core.labels import label_outcomes
from healthscore.core.scoring import score
from healthscore.io.snapshots import read_events, read_snapshots
from healthscore.io.tables import load_scores
from healthscore.results import Summary
from healthscore.spec.model import load_model
from healthscore.spec.outcomes import horizon_words, parse_horizon, resolve_outcome

KEYS = ["account_id", "as_of"]
DERIVED = ("signup_quarter", "arr_band", "handovers")
UNSCORED = "unscored"
NONE_LABEL = "(none)"
# ARR band edges; labels are readable ranges, the last band is open-ended.
ARR_BREAKS = [10_000.0, 50_000.0, 100_000.0, 250_000.0]
ARR_LABELS = ["under 10k", "10k-50k", "50k-100k", "100k-250k", "250k and over"]
HANDOVER_LABELS = ["0 handovers", "1 handover", "2+ handovers"]
# what the accounts did, for sentences ("... of the accounts that churned")
_OUTCOME_NOUNS = {"churned": "churned", "contracted": "contracted", "expanded": "expanded"}
# the topic of each omnibus test in plain words
_TEST_TOPICS = {"score": "health score", "band_mix": "band mix", "churned": "churn rate", "expanded": "expansion rate"}


# ------------------------------------------------------------------------------------------
# small statistics helpers (library calls; thin wrappers for vectors and empty groups)
def cliffs_delta(a: np.ndarray, b: np.ndarray) -> float:
    """Cliff's delta: P(a > b) - P(a < b), from the Mann-Whitney U statistic (ties count half).

    >>> cliffs_delta(np.array([3.0, 4.0]), np.array([1.0, 2.0]))
    1.0
    """
    from scipy.stats import mannwhitneyu  # scipy.stats is loaded only when a test statistic is computed

    u = mannwhitneyu(a, b, alternative="two-sided").statistic
    return float(2.0 * u / (len(a) * len(b)) - 1.0)


def epsilon_squared(h: float, n: int) -> float:
    """Epsilon-squared effect size of a Kruskal-Wallis H over ``n`` observations: H / (n - 1).

    >>> epsilon_squared(9.0, 10)
    1.0
    """
    return float(h / (n - 1)) if n > 1 else float("nan")


def cramers_v(chi2: float, n: int, shape: tuple[int, int]) -> float:
    """Cramér's V of a chi-square statistic on an ``r x c`` table holding ``n`` observations.

    >>> cramers_v(10.0, 40, (2, 2))
    0.5
    """
    k = min(shape) - 1
    return float(math.sqrt(chi2 / (n * k))) if n > 0 and k > 0 else float("nan")


def _format_p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "p=n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}" if p < 0.01 else f"p={p:.2f}"


def _pct(x: float | None) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{100 * x:.1f}%" if 0 < abs(x) < 0.1 else f"{100 * x:.0f}%"


def _money(x: float | None) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    for div, unit in [(1e9, "bn"), (1e6, "M"), (1e3, "k")]:
        if abs(x) >= div:
            return f"{x / div:.1f}{unit}"
    return f"{x:.0f}"


# ------------------------------------------------------------------------------------------
# preparing frames
def _as_date(value: str | dt.date | dt.datetime | None) -> dt.date | None:
    if value is None or isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.datetime):
        return value.date()
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"date {value!r} is not understood: write it as YYYY-MM-DD, e.g. 2026-03-02") from None


def _require(
    frame: pl.DataFrame, columns: Sequence[str], what: str, fix: str = "pass the output of healthscore.score()"
) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{what} lacks column(s) {', '.join(missing)}; it has {', '.join(frame.columns[:12])}"
            f"{' ...' if len(frame.columns) > 12 else ''}: {fix}"
        )


def with_derived(scores: pl.DataFrame) -> pl.DataFrame:
    """Add the derived cohort dimensions that the data allows: ``signup_quarter``, ``arr_band``,
    ``handovers`` (CSM changes on the account up to each snapshot: point-in-time)."""
    exprs: list[pl.Expr] = []
    cols = scores.columns
    if "contract_start" in cols and "signup_quarter" not in cols:
        start = pl.col("contract_start")
        exprs.append(pl.format("{}-Q{}", start.dt.year(), start.dt.quarter()).alias("signup_quarter"))
    if "arr" in cols and "arr_band" not in cols:
        idx = pl.sum_horizontal([(pl.col("arr") >= b).cast(pl.Int32) for b in ARR_BREAKS])
        exprs.append(
            pl.when(pl.col("arr").is_not_null())
            .then(idx)
            .otherwise(None)
            .replace_strict(dict(enumerate(ARR_LABELS)), return_dtype=pl.Enum(ARR_LABELS))
            .alias("arr_band")
        )
    out = scores.with_columns(exprs) if exprs else scores
    if "csm" in cols and "handovers" not in cols:
        # a handover is a change of the (last known) CSM from one snapshot to the next
        # an unassigned CSM (null, blank, "(unassigned)") is a gap in the data, not a new CSM
        named = pl.when(is_unassigned("csm")).then(None).otherwise(pl.col("csm").cast(pl.Utf8))
        ffill = named.forward_fill().over("account_id", order_by="as_of")
        out = (
            out.sort(KEYS)
            .with_columns(_csm_ff=ffill)
            .with_columns(
                (pl.col("_csm_ff") != pl.col("_csm_ff").shift(1).over("account_id", order_by="as_of"))
                .fill_null(False)
                .cast(pl.Int32)
                .cum_sum()
                .over("account_id", order_by="as_of")
                .alias("_handovers")
            )
            .with_columns(
                pl.col("_handovers")
                .clip(0, 2)
                .replace_strict(dict(enumerate(HANDOVER_LABELS)), return_dtype=pl.Enum(HANDOVER_LABELS))
                .alias("handovers")
            )
            .drop("_csm_ff", "_handovers")
        )
    return out


def _cohort_label(by: list[str]) -> pl.Expr:
    parts = [pl.col(c).cast(pl.Utf8).fill_null(NONE_LABEL) for c in by]
    return pl.concat_str(parts, separator=" · ").alias("cohort")


def _dates(scores: pl.DataFrame) -> list[dt.date]:
    return sorted(scores.get_column("as_of").unique().to_list())


def _snap_date(scores: pl.DataFrame, when: str | dt.date | None, what: str) -> dt.date:
    """The latest snapshot date on or before ``when`` (the last date when ``when`` is None)."""
    dates = _dates(scores)
    if not dates:
        raise ValueError("the score frame is empty: nothing to compare")
    when = _as_date(when)
    if when is None:
        return dates[-1]
    earlier = [d for d in dates if d <= when]
    if not earlier:
        raise ValueError(f"{what} {when} is before the first snapshot ({dates[0]}); choose a later date")
    return earlier[-1]


def cross_section(
    scores: pl.DataFrame, as_of: str | dt.date | None = None, events: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Each account's latest snapshot on or before ``as_of`` (default: the last date), leaving out
    accounts that are gone by then: no snapshot within one snapshot interval (the median gap
    between snapshot dates; no rows exist after churn) or, with ``events``, churned on or before it.
    """
    when = _snap_date(scores, as_of, "as_of")
    dates = [d for d in _dates(scores) if d <= when]
    gaps = np.diff(np.array(dates, dtype="datetime64[D]")).astype(int)
    cadence = dt.timedelta(days=int(np.median(gaps))) if len(gaps) else None
    rows = scores.lazy().filter(pl.col("as_of") <= when)
    if cadence is not None:
        rows = rows.filter(pl.col("as_of") > when - cadence)
    rows = rows.filter(pl.col("as_of") == pl.col("as_of").max().over("account_id")).collect()
    if events is not None and events.height:
        _require(
            events,
            ["account_id", "date", "event"],
            "the events table",
            "pass the outcome events (healthscore.read_events)",
        )
        gone = (
            events.filter((pl.col("event") == "churned") & (pl.col("date") <= when))
            .select(pl.col("account_id").cast(rows.schema["account_id"]))
            .unique()
        )
        rows = rows.join(gone, on="account_id", how="anti")
    return rows.sort("account_id")


def _band_order(scores: pl.DataFrame) -> list[str]:
    """Band names from worst to best (by the mean score of the rows in each band)."""
    if "band" not in scores.columns:
        return []
    order = (
        scores.filter(pl.col("band").is_not_null() & pl.col("score").is_not_null())
        .group_by("band")
        .agg(pl.col("score").mean())
        .sort("score", "band")
    )
    return order.get_column("band").to_list()


def _label_windows(
    scores: pl.DataFrame, events: pl.DataFrame, outcome: str, horizon: str, as_of: dt.date, periods: int | None
) -> tuple[pl.DataFrame, list[dt.date]]:
    """Point-in-time outcome labels on snapshot dates ``horizon`` apart, counting back from the
    latest date on or before ``as_of`` whose horizon is fully observed (at most ``periods`` dates).

    Each account contributes one row per window, its attributes as of the window start. For a
    terminal outcome such as churn this is a discrete-time hazard: the windows of one account do
    not overlap and an account leaves after its event, so pooled counts give valid rates and tests.
    """

    horizon = parse_horizon(horizon)
    all_dates = _dates(scores)
    if is_cross_sectional(scores):  # one snapshot per account: the outcome over the observation window
        labelled = label_outcomes(scores.select(KEYS), events, outcome=outcome, cross_sectional=True)
        return labelled.select(*KEYS, outcome), all_dates
    picked = _spaced_dates([d for d in all_dates if d <= as_of], horizon, all_dates[-1])
    if periods is not None:
        picked = picked[-periods:] if periods > 0 else []
    if not picked:
        return scores.select(KEYS).clear().with_columns(pl.lit(None, pl.Boolean).alias(outcome)), []
    snap = scores.filter(pl.col("as_of").is_in(picked)).select(KEYS)
    labelled = label_outcomes(
        snap, events, outcome=outcome, horizon=horizon, data_end=all_dates[-1], cross_sectional=False
    )
    return labelled.select(*KEYS, outcome), picked


# ------------------------------------------------------------------------------------------
# the comparison
@dataclass
class CohortComparison:
    """Result of :func:`compare_cohorts`: ``cohorts`` (one row per cohort), ``tests`` (one row
    per test), ``band_mix`` (cohort x band), plus ``summary()``, ``to_frame()``, ``charts()`` and
    ``describe()``."""

    by: list[str]
    as_of: dt.date
    cohorts: pl.DataFrame
    tests: pl.DataFrame
    band_mix: pl.DataFrame
    bands: list[str]
    outcome: str
    horizon: str
    label_dates: list[dt.date]
    min_size: int
    alpha: float
    correction: str
    meta: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> Summary:
        """The findings in plain sentences, one per line."""
        return Summary("\n".join([f"Cohorts by {self.dimension} on {self.as_of}:"] + self.describe()))

    def to_frame(self) -> pl.DataFrame:
        """One row per cohort: size, ARR, score distribution, band shares and outcome rates."""
        return self.cohorts

    @property
    def dimension(self) -> str:
        return " x ".join(self.by)

    def significant(self, kind: str = "omnibus") -> pl.DataFrame:
        """The tests of ``kind`` (``omnibus`` or ``pairwise``) that are significant after correction."""
        return self.tests.filter((pl.col("kind") == kind) & pl.col("significant"))

    def describe(self) -> list[str]:
        """Plain-language findings, one sentence each, most important first."""
        s = self.cohorts
        out: list[str] = []
        dim = self.dimension.replace("_", " ")
        tests = {r["metric"]: r for r in self.tests.filter(pl.col("kind") == "omnibus").iter_rows(named=True)}
        rated = s.filter(pl.col("labelled") > 0) if "labelled" in s.columns else s.clear()
        if rated.filter(~pl.col("small")).height >= 2:  # headline figures from cohorts big enough to trust
            rated = rated.filter(~pl.col("small"))
        if rated.height >= 2 and "churned" in tests:
            t = tests["churned"]
            hi_row = rated.sort("churn_rate", descending=True).row(0, named=True)
            lo_row = rated.sort("churn_rate").row(0, named=True)
            pair = self._pair("churned", hi_row["cohort"], lo_row["cohort"])
            p = pair["p_adjusted"] if pair else t["p_adjusted"]
            verdict = "a significant difference" if t["significant"] else "not a significant difference"
            out.append(
                f"{self._who(hi_row['cohort'], start=True)} churn at {_pct(hi_row['churn_rate'])} per {self.horizon} vs "
                f"{_pct(lo_row['churn_rate'])} for {self._who(lo_row['cohort'])} ({_format_p(p)}; "
                f"{verdict} across {dim} cohorts, {_format_p(t['p_adjusted'])})."
            )
        if "score" in tests and s.height >= 2:
            t = tests["score"]
            ranked = s.filter(pl.col("score_median").is_not_null()).sort("score_median", descending=True)
            if ranked.height >= 2:
                top, bottom = ranked.row(0, named=True), ranked.row(-1, named=True)
                if t["significant"]:
                    out.append(
                        f"Scores differ between {dim} cohorts (Kruskal-Wallis {_format_p(t['p_adjusted'])}, "
                        f"epsilon-squared {t['effect_size']:.2f}): median {top['score_median']:.0f} for "
                        f"{top['cohort']} vs {bottom['score_median']:.0f} for {bottom['cohort']}."
                    )
                else:
                    out.append(
                        f"Scores do not differ significantly between {dim} cohorts ({_format_p(t['p_adjusted'])})."
                    )
        if "band_mix" in tests and self.bands:
            t = tests["band_mix"]
            worst = self.bands[0]
            col = f"share_{worst}"
            if col in s.columns and s.height >= 2:
                r = s.sort(col, descending=True).row(0, named=True)
                out.append(
                    f"Band mix {'differs' if t['significant'] else 'does not differ significantly'} between "
                    f"{dim} cohorts ({_format_p(t['p_adjusted'])}, Cramér's V {t['effect_size']:.2f}); the "
                    f"largest share in {worst} is {r['cohort']} with {_pct(r[col])}."
                )
        if rated.height >= 2 and "expanded" in tests and tests["expanded"]["significant"]:
            hi_row = rated.sort("expansion_rate", descending=True).row(0, named=True)
            out.append(
                f"Expansion differs between {dim} cohorts ({_format_p(tests['expanded']['p_adjusted'])}): "
                f"highest {hi_row['cohort']} at {_pct(hi_row['expansion_rate'])} per {self.horizon}."
            )
        small = s.filter(pl.col("small"))
        if small.height:
            out.append(
                f"{small.height} cohort(s) have fewer than {self.min_size} accounts "
                f"({', '.join(small.get_column('cohort').to_list()[:5])}"
                f"{' ...' if small.height > 5 else ''}); their figures are uncertain."
            )
        return out

    def plain_findings(self) -> tuple[str, list[str]]:
        """Whether cohorts differ, in plain words with no test names (:meth:`describe` has them): a
        lead sentence and up to three findings."""
        cmp = self
        sig = cmp.significant()
        dim = cmp.dimension.replace("_", " ")
        if sig.height:
            names = sorted({_TEST_TOPICS.get(m, m.replace("_", " ")) for m in sig.get_column("metric").to_list()})
            lead = (
                f"{dim.capitalize()} cohorts differ significantly (more than chance would explain) in: "
                f"{', '.join(names)}."
            )
        else:
            lead = f"No significant differences between {dim} cohorts: the gaps below could be chance."
        s = cmp.cohorts
        tests = {r["metric"]: r for r in cmp.tests.filter(pl.col("kind") == "omnibus").iter_rows(named=True)}
        out: list[str] = []
        rated = s.filter(pl.col("labelled") > 0) if "labelled" in s.columns else s.clear()
        if rated.filter(~pl.col("small")).height >= 2:
            rated = rated.filter(~pl.col("small"))
        per = horizon_words(cmp.horizon) if cmp.horizon != "observation window" else "the observation window"
        if rated.height >= 2:
            hi = rated.sort("churn_rate", descending=True).row(0, named=True)
            lo = rated.sort("churn_rate").row(0, named=True)
            real = tests.get(cmp.outcome, {}).get("significant")
            out.append(
                f"{cmp._who(hi['cohort'], start=True)} churn at {_pct(hi['churn_rate'])} per {per} vs "
                f"{_pct(lo['churn_rate'])} for {cmp._who(lo['cohort'])}"
                + ("." if real else " (a gap this size could be chance).")
            )
        ranked = s.filter(pl.col("score_median").is_not_null()).sort("score_median", descending=True)
        if ranked.height >= 2:
            top, bottom = ranked.row(0, named=True), ranked.row(-1, named=True)
            out.append(
                f"Median score {top['score_median']:.0f} for {top['cohort']} vs {bottom['score_median']:.0f} "
                f"for {bottom['cohort']}."
            )
        if cmp.bands and f"share_{cmp.bands[0]}" in s.columns and s.height >= 2:
            col = f"share_{cmp.bands[0]}"
            r = s.sort(col, descending=True).row(0, named=True)
            out.append(f"The largest share in {cmp.bands[0]}: {r['cohort']} with {_pct(r[col])}.")
        return lead, out

    def _who(self, cohort: str, start: bool = False) -> str:
        if self.by == ["handovers"]:
            return f"{'A' if start else 'a'}ccounts with {cohort}"
        return f"{cohort} accounts"

    def _pair(self, metric: str, a: str, b: str) -> dict[str, Any] | None:
        rows = self.tests.filter(
            (pl.col("kind") == "pairwise")
            & (pl.col("metric") == metric)
            & (
                ((pl.col("group_a") == a) & (pl.col("group_b") == b))
                | ((pl.col("group_a") == b) & (pl.col("group_b") == a))
            )
        )
        return rows.row(0, named=True) if rows.height else None

    def charts(self) -> dict[str, Any]:
        """Altair charts: ``scores`` (distribution by cohort), ``band_mix`` and, with outcomes,
        ``churn`` (rates with Wilson intervals); drawn by :mod:`healthscore.viz.cohorts`."""
        from healthscore.viz import cohorts as cohort_charts  # viz sits above analysis: charts are drawn on request

        return cohort_charts.comparison_charts(self)

    def __repr__(self) -> str:
        sig = self.significant().get_column("metric").to_list()
        return f"CohortComparison(by={self.by}, as_of={self.as_of}, cohorts={self.cohorts.height}, significant={sig})"


def compare_cohorts(
    scores: pl.DataFrame,
    *,
    by: str | Sequence[str] = "segment",
    events: pl.DataFrame | None = None,
    as_of: str | dt.date | None = None,
    outcome: str = "churned",
    horizon: str = "90d",
    min_size: int = 30,
    alpha: float = 0.05,
    correction: Literal["holm", "fdr_bh"] = "holm",
    periods: int | None = None,
    max_pairs: int = 66,
) -> CohortComparison:
    """Compare cohorts of accounts by one attribute or a combination (``by=["segment", "touch_model"]``).

    The cross-section is each account's latest snapshot on or before ``as_of`` (default: the last
    date). With ``events``, churn (``outcome``) and expansion rates per ``horizon`` are labelled
    point-in-time on snapshot dates ``horizon`` apart, counting back from the latest date on or
    before ``as_of`` whose horizon is fully observed (``periods`` of them; default all that fit),
    with Wilson intervals; an account's cohort is taken as of each window's start. Repeatable
    outcomes (expansion) use the latest window only, so each account counts once.
    Omnibus tests (Kruskal-Wallis on scores, chi-square on band mix and on outcome rates) are
    corrected together; pairwise tests (Mann-Whitney, two-proportion z or Fisher's exact when a
    cell is sparse) are corrected within each metric; beyond ``max_pairs`` pairs (12 cohorts) each
    cohort is tested against all others instead (``group_b`` is ``"all others"``). Cohorts smaller
    than ``min_size`` are flagged in the ``small`` column, never dropped.

    Example (``scores`` from :func:`healthscore.score`, ``events`` the outcome table)::

        cmp = hs.compare_cohorts(scores, by=["segment", "touch_model"], events=events)
        cmp.describe()[0]
        # 'smb · digital accounts churn at 4.0% per 90d vs 0.3% for enterprise · high accounts (p<0.001; ...)'
    """
    by = [b for b in ([by] if isinstance(by, str) else list(by)) if b]
    _require(scores, ["account_id", "as_of", "score"], "the score frame")
    if not by:  # no dimension: the portfolio as one cohort
        scores, by = scores.with_columns(pl.lit(WHOLE_PORTFOLIO).alias("portfolio")), ["portfolio"]
    frame = with_derived(_narrow(scores, by))
    unknown = [c for c in by if c not in frame.columns]
    if unknown:
        raise ValueError(
            f"cannot group by {', '.join(unknown)}: not a column of the score frame. Columns available: "
            f"{', '.join(c for c in scores.columns if _is_attribute(c)) or 'none'}; derived: {', '.join(DERIVED)}"
        )
    frame = bin_numeric(frame, by)
    when = _snap_date(frame, as_of, "as_of")
    snap = cross_section(frame, when, events).with_columns(_cohort_label(by))
    bands = _band_order(frame)
    if "arr" not in snap.columns:
        snap = snap.with_columns(arr=pl.lit(None, pl.Float64))
    band_col = pl.col("band").fill_null(UNSCORED) if "band" in snap.columns else pl.lit(UNSCORED)
    snap = snap.with_columns(_band=band_col)

    summary = (
        snap.group_by(*by, "cohort")
        .agg(
            accounts=pl.len(),
            arr=pl.col("arr").sum(),
            scored=pl.col("score").count(),
            score_mean=pl.col("score").mean(),
            score_median=pl.col("score").median(),
            score_q1=pl.col("score").quantile(0.25, interpolation="linear"),
            score_q3=pl.col("score").quantile(0.75, interpolation="linear"),
            score_p10=pl.col("score").quantile(0.10, interpolation="linear"),
            score_p90=pl.col("score").quantile(0.90, interpolation="linear"),
            *[(pl.col("_band") == b).mean().alias(f"share_{b}") for b in bands],
            *[pl.col("arr").filter(pl.col("_band") == b).sum().alias(f"arr_{b}") for b in bands[:1]],
        )
        .sort(by, nulls_last=True)
    )
    total_arr = summary.get_column("arr").sum()
    summary = summary.with_columns(
        arr_share=pl.col("arr") / total_arr if total_arr else pl.lit(None, pl.Float64),
        small=pl.col("accounts") < min_size,
    )

    band_mix = (
        snap.group_by("cohort", "_band")
        .agg(accounts=pl.len(), arr=pl.col("arr").sum())
        .rename({"_band": "band"})
        .with_columns(share=pl.col("accounts") / pl.col("accounts").sum().over("cohort"))
        .sort("cohort", "band")
    )

    scores_by = {
        k[0]: g.get_column("score").drop_nulls().to_numpy()
        for k, g in snap.partition_by("cohort", as_dict=True, maintain_order=True).items()
    }
    rows: list[dict[str, Any]] = []
    rows += _kruskal(scores_by)
    rows += _chi2_table(band_mix.select("cohort", "band", "accounts"), "band_mix", "chi-square (band mix)")

    label_dates: list[dt.date] = []
    if events is not None:
        has_expansions = outcome != "expanded" and events.filter(pl.col("event") == "expanded").height > 0
        outcomes = [(outcome, "churn")] + ([("expanded", "expansion")] if has_expansions else [])

        for name, prefix in outcomes:
            # an account leaves after a terminal outcome, so its windows pool as a discrete-time
            # hazard; a repeatable one (expansion) clusters within accounts: one window per account
            windows = periods if resolve_outcome(name).terminal else 1
            labels, picked = _label_windows(frame, events, name, horizon, when, windows)
            label_dates = label_dates or picked
            lab = labels.join(frame.select(*KEYS, *by), on=KEYS, how="left").with_columns(_cohort_label(by))
            counts = lab.group_by("cohort").agg(n=pl.len(), k=pl.col(name).sum().cast(pl.Int64))
            summary = _add_rates(summary, counts, prefix)
            table = counts.select("cohort", pl.col("k").alias("yes"), (pl.col("n") - pl.col("k")).alias("no"))
            long = table.unpivot(index="cohort", variable_name="band", value_name="accounts")
            rows += _chi2_table(long, name, f"chi-square ({name} rate)")
            rows += _pairwise_proportions(counts, name, max_pairs)
    rows += _pairwise_mannwhitney(scores_by, max_pairs)
    tests = _adjust(rows, alpha, correction)
    return CohortComparison(
        by=by,
        as_of=when,
        cohorts=summary,
        tests=tests,
        band_mix=band_mix,
        bands=bands,
        outcome=outcome,
        horizon="observation window" if is_cross_sectional(frame) else horizon,
        label_dates=label_dates,
        min_size=min_size,
        alpha=alpha,
        correction=correction,
    )


WHOLE_PORTFOLIO = "all accounts"
PERIOD_DAYS = 91  # the review's default period: 13 weeks back, on weekly or monthly snapshots alike
BIN_LEVELS = 5  # a numeric column with more distinct values than this is grouped in quintiles


def bin_numeric(frame: pl.DataFrame, by: Sequence[str], bins: int = BIN_LEVELS) -> pl.DataFrame:
    """Numeric grouping columns with more than ``bins`` distinct values as quantile bins (text
    labels such as ``"Q1: 0 to 12"``, which sort in order); other columns unchanged. Empty stays empty.

    >>> f = pl.DataFrame({"tenure": [float(v) for v in range(10)]})
    >>> bin_numeric(f, ["tenure"])["tenure"].unique().sort().to_list()[:2]
    ['Q1: 0 to 1', 'Q2: 2 to 3']
    """
    exprs = []
    for c in by:
        dtype = frame.schema[c]
        if not dtype.is_numeric() or frame[c].n_unique() <= bins:
            continue
        v = frame[c].cast(pl.Float64).drop_nulls().drop_nans()
        edges = sorted({float(e) for e in np.quantile(v.to_numpy(), np.linspace(0, 1, bins + 1)[1:-1])})
        idx = pl.sum_horizontal([(pl.col(c).cast(pl.Float64) > e).cast(pl.Int32) for e in edges])
        labels = []
        for i in range(len(edges) + 1):
            part = v.filter((v > edges[i - 1]) if i else pl.Series([True] * v.len()))
            part = part.filter(part <= edges[i]) if i < len(edges) else part
            lo, hi = (part.min(), part.max()) if part.len() else (float("nan"), float("nan"))
            labels.append(f"Q{i + 1}: {_num_text(lo)} to {_num_text(hi)}")
        exprs.append(
            pl.when(pl.col(c).is_not_null() & pl.col(c).cast(pl.Float64).is_finite())
            .then(idx)
            .otherwise(None)
            .replace_strict(dict(enumerate(labels)), default=None, return_dtype=pl.Utf8)
            .alias(c)
        )
    return frame.with_columns(exprs) if exprs else frame


def _num_text(x: float) -> str:
    return "-" if x != x else f"{x:,.0f}" if abs(x) >= 100 or float(x).is_integer() else f"{x:,.2g}"


def _narrow(scores: pl.DataFrame, by: Sequence[str], extra: Sequence[str] = ()) -> pl.DataFrame:
    """Only the columns a comparison needs (score frames are wide: sub_, cat_, drv_ per metric)."""
    sources = {"signup_quarter": "contract_start", "arr_band": "arr", "handovers": "csm"}
    want = [*KEYS, "score", "band", "arr", *by, *[sources.get(b, b) for b in by], *extra]
    return scores.select(list(dict.fromkeys(c for c in want if c in scores.columns)))


def _is_attribute(col: str) -> bool:
    return not (
        col in KEYS
        or col.startswith(("sub_", "cat_", "drv_", "drvchg_", "score", "override_", "model_"))
        or col in ("band", "coverage", "null_reason", "variant")
    )


def _add_rates(summary: pl.DataFrame, counts: pl.DataFrame, prefix: str) -> pl.DataFrame:
    out = summary.join(counts, on="cohort", how="left").with_columns(pl.col("n", "k").fill_null(0))
    lo, hi = wilson_interval(out.get_column("k").to_numpy(), out.get_column("n").to_numpy())
    rate = pl.when(pl.col("n") > 0).then(pl.col("k") / pl.col("n"))
    out = out.with_columns(
        rate.alias(f"{prefix}_rate"),
        pl.Series(f"{prefix}_lower", lo).fill_nan(None),
        pl.Series(f"{prefix}_upper", hi).fill_nan(None),
    )
    names = {"n": "labelled", "k": "churned" if prefix == "churn" else "expanded"}
    if "labelled" in out.columns:
        names["n"] = f"labelled_{prefix}"
    return out.rename(names)


def _test_row(
    metric: str,
    kind: str,
    test: str,
    statistic: float,
    p: float,
    effect: float,
    measure: str,
    n: int,
    group_a: str | None = None,
    group_b: str | None = None,
    df: int | None = None,
) -> dict[str, Any]:
    return {
        "metric": metric,
        "kind": kind,
        "test": test,
        "group_a": group_a,
        "group_b": group_b,
        "n": int(n),
        "statistic": float(statistic),
        "df": df,
        "p_value": float(p),
        "effect_size": float(effect),
        "effect_measure": measure,
    }


def _kruskal(groups: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    from scipy.stats import kruskal  # scipy.stats is loaded only when a test statistic is computed

    arrays = [a for a in groups.values() if len(a) > 0]
    n = sum(len(a) for a in arrays)
    if len(arrays) < 2 or np.unique(np.concatenate(arrays)).size < 2:
        return []
    h, p = kruskal(*arrays)
    return [
        _test_row(
            "score", "omnibus", "Kruskal-Wallis", h, p, epsilon_squared(h, n), "epsilon_squared", n, df=len(arrays) - 1
        )
    ]


def _chi2_table(long: pl.DataFrame, metric: str, test: str) -> list[dict[str, Any]]:
    """Chi-square of independence on a (cohort, band, accounts) table; empty rows/columns dropped."""
    from scipy.stats import chi2_contingency  # scipy.stats is loaded only when a test statistic is computed

    if long.is_empty():
        return []
    wide = long.pivot(on="band", index="cohort", values="accounts", sort_columns=True).fill_null(0).sort("cohort")
    table = wide.drop("cohort").to_numpy().astype(float)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    if table.shape[0] < 2 or table.shape[1] < 2:
        return []
    res = chi2_contingency(table)
    n = int(table.sum())
    return [
        _test_row(
            metric,
            "omnibus",
            test,
            res.statistic,
            res.pvalue,
            cramers_v(res.statistic, n, table.shape),
            "cramers_v",
            n,
            df=int(res.dof),
        )
    ]


REST = "all others"


def _pairs(names: list[str], max_pairs: int) -> list[tuple[str, str]]:
    """All pairs of cohorts, or each cohort against all others when there would be more than
    ``max_pairs`` pairs (with many cohorts, k(k-1)/2 corrected tests say little and cost a lot)."""
    pairs = list(itertools.combinations(names, 2))
    return pairs if len(pairs) <= max_pairs else [(a, REST) for a in names]


def _pairwise_mannwhitney(groups: dict[str, np.ndarray], max_pairs: int) -> list[dict[str, Any]]:
    from scipy.stats import mannwhitneyu  # scipy.stats is loaded only when a test statistic is computed

    rows = []
    names = [k for k, a in groups.items() if len(a) > 0]
    for a, b in _pairs(names, max_pairs):
        x = groups[a]
        y = np.concatenate([groups[k] for k in names if k != a]) if b == REST else groups[b]
        if len(y) == 0:
            continue
        res = mannwhitneyu(x, y, alternative="two-sided")
        delta = 2.0 * res.statistic / (len(x) * len(y)) - 1.0
        rows.append(
            _test_row(
                "score",
                "pairwise",
                "Mann-Whitney U",
                res.statistic,
                res.pvalue,
                delta,
                "cliffs_delta",
                len(x) + len(y),
                a,
                b,
            )
        )
    return rows


def _pairwise_proportions(counts: pl.DataFrame, metric: str, max_pairs: int) -> list[dict[str, Any]]:
    """Two-proportion z-test per pair of cohorts; Fisher's exact when an expected count is below 5."""
    from scipy.stats import fisher_exact  # scipy.stats is loaded only when a test statistic is computed
    from statsmodels.stats.proportion import (
        proportions_ztest,  # statsmodels takes about a second to import; only fits and tests need it
    )

    rows = []
    c = {r["cohort"]: (int(r["k"]), int(r["n"])) for r in counts.sort("cohort").iter_rows(named=True) if r["n"] > 0}
    total_k, total_n = sum(k for k, _ in c.values()), sum(n for _, n in c.values())
    for a, b in _pairs(sorted(c), max_pairs):
        (ka, na) = c[a]
        (kb, nb) = (total_k - ka, total_n - na) if b == REST else c[b]
        if nb == 0:
            continue
        diff = ka / na - kb / nb
        pooled = (ka + kb) / (na + nb)
        expected = min(na, nb) * min(pooled, 1 - pooled)
        if pooled in (0.0, 1.0):
            stat, p, test = 0.0, 1.0, "two-proportion z"
        elif expected < 5:
            stat, p = fisher_exact([[ka, na - ka], [kb, nb - kb]])
            test = "Fisher's exact"
        else:
            stat, p = proportions_ztest([ka, kb], [na, nb])
            test = "two-proportion z"
        rows.append(_test_row(metric, "pairwise", test, stat, p, diff, "risk_difference", na + nb, a, b))
    return rows


_TEST_SCHEMA = {
    "metric": pl.Utf8,
    "kind": pl.Utf8,
    "test": pl.Utf8,
    "group_a": pl.Utf8,
    "group_b": pl.Utf8,
    "n": pl.Int64,
    "statistic": pl.Float64,
    "df": pl.Int64,
    "p_value": pl.Float64,
    "effect_size": pl.Float64,
    "effect_measure": pl.Utf8,
}


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values; equal to statsmodels' ``multipletests(method="holm")``
    (checked in the tests), which runs a full ``gc.collect()`` per call (~0.3 s in a notebook).

    >>> _holm(np.array([0.01, 0.04, 0.03])).tolist()
    [0.03, 0.06, 0.06]
    """
    order = np.argsort(p, kind="stable")
    m = len(p)
    stepped = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


def _adjust(rows: list[dict[str, Any]], alpha: float, method: str) -> pl.DataFrame:
    """Multiple-testing correction: omnibus tests as one family, pairwise tests per metric."""
    from statsmodels.stats.multitest import (
        multipletests,  # statsmodels takes about a second to import; only fits and tests need it
    )

    tests = pl.DataFrame(rows, schema=_TEST_SCHEMA, orient="row").with_row_index("_i")
    adjusted = np.full(tests.height, np.nan)
    for _, g in tests.group_by(
        pl.when(pl.col("kind") == "omnibus").then(pl.lit("")).otherwise(pl.col("metric")), pl.col("kind")
    ):
        p = g.get_column("p_value").to_numpy()
        ok = np.isfinite(p)
        if ok.any():
            adj = np.full(p.shape, np.nan)
            adj[ok] = _holm(p[ok]) if method == "holm" else multipletests(p[ok], alpha=alpha, method=method)[1]
            adjusted[g.get_column("_i").to_numpy()] = adj
    return (
        tests.with_columns(pl.Series("p_adjusted", adjusted).fill_nan(None))
        .with_columns(significant=(pl.col("p_adjusted") < alpha).fill_null(False))
        .drop("_i")
    )


# ------------------------------------------------------------------------------------------
# movement over time
def score_trend(scores: pl.DataFrame, by: str | Sequence[str] = "segment") -> pl.DataFrame:
    """Mean and median score per cohort per ``as_of`` (cohort membership as of each snapshot).

    >>> import datetime as dt
    >>> s = pl.DataFrame({"account_id": ["a", "b", "a", "b"], "segment": ["x", "x", "x", "x"],
    ...     "as_of": [dt.date(2026, 1, 5)] * 2 + [dt.date(2026, 1, 12)] * 2, "score": [10.0, 30, 20, 40]})
    >>> score_trend(s, "segment").get_column("score_mean").to_list()
    [20.0, 30.0]
    """
    by = [by] if isinstance(by, str) else list(by)
    frame = with_derived(scores)
    return (
        frame.with_columns(_cohort_label(by))
        .group_by(*by, "cohort", "as_of")
        .agg(accounts=pl.len(), score_mean=pl.col("score").mean(), score_median=pl.col("score").median())
        .sort("cohort", "as_of")
    )


def _pair_frame(
    scores: pl.DataFrame, start: str | dt.date, end: str | dt.date
) -> tuple[pl.DataFrame, dt.date, dt.date]:
    """Accounts present at both snapshot dates, side by side (``_start`` / ``_end`` suffixes)."""
    d0 = _snap_date(scores, start, "start")
    d1 = _snap_date(scores, end, "end")
    if d0 >= d1:
        raise ValueError(f"start {d0} must be before end {d1} (dates snap to the latest snapshot on or before them)")
    a = scores.filter(pl.col("as_of") == d0)
    b = scores.filter(pl.col("as_of") == d1)
    both = a.join(b, on="account_id", how="inner", suffix="_end")
    return both.rename({c: f"{c}_start" for c in a.columns if c != "account_id"}), d0, d1


def migration_long(scores: pl.DataFrame, start: str | dt.date, end: str | dt.date) -> pl.DataFrame:
    """Tidy band migration: ``from_band``, ``to_band``, ``accounts``, ``arr`` (ARR at ``end``).
    Only accounts present at both dates; a null band counts as ``unscored``."""
    pair, _, _ = _pair_frame(scores, start, end)
    arr = pl.col("arr_end") if "arr_end" in pair.columns else pl.lit(None, pl.Float64)
    return (
        pair.select(
            from_band=pl.col("band_start").fill_null(UNSCORED), to_band=pl.col("band_end").fill_null(UNSCORED), arr=arr
        )
        .group_by("from_band", "to_band")
        .agg(accounts=pl.len(), arr=pl.col("arr").sum())
        .sort("from_band", "to_band")
    )


def band_migration(
    scores: pl.DataFrame, start: str | dt.date, end: str | dt.date, weight: Literal["arr"] | None = None
) -> pl.DataFrame:
    """Band migration matrix between two dates: one row per band at ``start`` (``from_band``), one
    column per band at ``end``, cells = accounts (or ARR at ``end`` with ``weight="arr"``), and a
    ``total`` column. Only accounts present at both dates; bands ordered worst to best.

    >>> import datetime as dt
    >>> d = [dt.date(2026, 1, 5), dt.date(2026, 2, 2)]
    >>> s = pl.DataFrame({"account_id": ["a", "b", "a", "b"], "as_of": [d[0], d[0], d[1], d[1]],
    ...     "score": [80.0, 20, 20, 25], "band": ["green", "red", "red", "red"], "arr": [1.0, 2, 3, 4]})
    >>> band_migration(s, d[0], d[1]).rows()
    [('red', 1, 0, 1), ('green', 1, 0, 1)]
    """
    if weight not in (None, "arr"):
        raise ValueError(f"weight must be None (accounts) or 'arr', not {weight!r}")
    long = migration_long(scores, start, end)
    order = _band_order(scores)
    present = set(long.get_column("from_band")) | set(long.get_column("to_band"))
    names = [b for b in order if b in present] + sorted(present - set(order))
    value = "arr" if weight == "arr" else "accounts"
    enum = pl.Enum(names)
    grid = pl.DataFrame({"from_band": names}).join(pl.DataFrame({"to_band": names}), how="cross")
    full = (
        grid.join(long, on=["from_band", "to_band"], how="left")
        .with_columns(pl.col(value).fill_null(0))
        .with_columns(pl.col("from_band", "to_band").cast(enum))
        .sort("from_band", "to_band")
    )
    wide = full.pivot(on="to_band", index="from_band", values=value, sort_columns=False)
    wide = wide.select("from_band", *names).with_columns(total=pl.sum_horizontal(names))
    return wide.with_columns(pl.col("from_band").cast(pl.Utf8))


def biggest_movers(
    scores: pl.DataFrame,
    start: str | dt.date,
    end: str | dt.date,
    n: int = 10,
    direction: Literal["both", "down", "up"] = "both",
    top_drivers: int = 3,
    labels: dict[str, str] | None = None,
) -> pl.DataFrame:
    """The ``n`` accounts whose score changed most between two dates, with the metrics behind the
    change (difference of their ``drv_`` contributions, which sums to the score change).

    Columns: ``account_id``, name/segment when present, ``score_start``, ``score_end``, ``change``,
    ``band_start``, ``band_end``, ``top_driver``, ``top_driver_points``, ``drivers`` (text: each
    metric by its label in ``labels`` when given, else by its name).
    """
    if direction not in ("both", "down", "up"):
        raise ValueError(f"direction must be 'both', 'down' or 'up', not {direction!r}")
    pair, _, _ = _pair_frame(scores, start, end)
    drv = [c[len("drv_") :] for c in scores.columns if c.startswith("drv_")]
    pair = pair.with_columns(change=pl.col("score_end") - pl.col("score_start")).filter(pl.col("change").is_not_null())
    if direction == "down":
        pair = pair.filter(pl.col("change") < 0)
    elif direction == "up":
        pair = pair.filter(pl.col("change") > 0)
    top = pair.sort(pl.col("change").abs(), "account_id", descending=[True, False]).head(n)
    keep = [f"{c}_end" for c in ("company_name", "segment", "touch_model", "csm", "arr") if f"{c}_end" in top.columns]
    out = top.select("account_id", *keep, "score_start", "score_end", "change", "band_start", "band_end")
    out = out.rename({c: c[: -len("_end")] for c in keep})
    if not drv:
        return out
    contrib = (
        top.select(
            "account_id",
            "change",
            *[(pl.col(f"drv_{m}_end").fill_null(0) - pl.col(f"drv_{m}_start").fill_null(0)).alias(m) for m in drv],
        )
        .unpivot(index=["account_id", "change"], variable_name="metric", value_name="points")
        # drivers that pushed in the direction of the change, biggest first
        .filter((pl.col("points") * pl.col("change").sign()) > 0)
        .sort("account_id", pl.col("points").abs(), "metric", descending=[False, True, False])
        .group_by("account_id", maintain_order=True)
        .head(top_drivers)
        .group_by("account_id", maintain_order=True)
        .agg(
            top_driver=pl.col("metric").first(),
            top_driver_points=pl.col("points").first(),
            drivers=pl.format(
                "{} {}",
                pl.col("metric").replace(labels or {}),
                pl.col("points").round(1).cast(pl.Utf8),
            ).str.join(", "),
        )
    )
    return out.join(contrib, on="account_id", how="left").sort(
        pl.col("change").abs(), "account_id", descending=[True, False]
    )


# ------------------------------------------------------------------------------------------
# metric cohorts
def _spaced_dates(dates: list[dt.date], horizon: str, data_end: dt.date) -> list[dt.date]:
    """Snapshot dates whose horizons do not overlap, counted back from the last labellable one."""
    ends = pl.DataFrame({"as_of": dates}).with_columns(end=pl.col("as_of").dt.offset_by(horizon))
    ok = ends.filter(pl.col("end") <= data_end).sort("as_of", descending=True).rows()
    picked: list[dt.date] = []
    for as_of, end in ok:  # a loop over a few dozen dates, not rows
        if not picked or end <= picked[-1]:
            picked.append(as_of)
    return sorted(picked)


def metric_deciles(
    snapshots: pl.DataFrame,
    events: pl.DataFrame,
    metric: str,
    outcome: str = "churned",
    horizon: str = "90d",
    q: int = 10,
) -> pl.DataFrame:
    """Outcome rate by decile (``q``-tile) of a raw metric, with Wilson intervals.

    Rows are point-in-time: snapshots on dates ``horizon`` apart (so one account's outcome
    windows do not overlap) labelled by :func:`healthscore.label_outcomes`. Ties stay in one
    decile, so a metric with few distinct values gets fewer rows. Missing values form their own
    row (``decile`` null, ``label`` "not measured"): a missing signal is often informative.
    Columns: ``decile``, ``label``, ``rows``, ``accounts``, ``low``, ``median``, ``high``, ``events``,
    ``rate``, ``rate_lower``, ``rate_upper``, ``portfolio_rate``.
    """

    _require(
        snapshots,
        ["account_id", "as_of", metric],
        "the snapshot frame",
        f"pass snapshots holding the raw metric {metric!r}",
    )
    horizon = parse_horizon(horizon)
    data_end = snapshots.get_column("as_of").max()
    cross = is_cross_sectional(snapshots)
    picked = _dates(snapshots) if cross else _spaced_dates(_dates(snapshots), horizon, data_end)
    if not picked:
        raise ValueError(f"no snapshot is followed by a full {horizon} of data: use a shorter horizon")
    rows = snapshots.filter(pl.col("as_of").is_in(picked)).select("account_id", "as_of", metric)
    lab = label_outcomes(
        rows, events, outcome=outcome, horizon=horizon, data_end=None if cross else data_end, cross_sectional=cross
    )
    v = pl.col(metric)
    n_valid = v.count()
    lab = lab.with_columns(
        decile=pl.when(v.is_not_null()).then(((v.rank("min") - 1) * q / n_valid).floor().cast(pl.Int32) + 1)
    )
    # ties at a decile edge share the lower decile number; renumber the deciles that exist 1..k
    lab = lab.with_columns(decile=pl.col("decile").rank("dense").cast(pl.Int32))
    table = (
        lab.group_by("decile")
        .agg(
            rows=pl.len(),
            accounts=pl.col("account_id").n_unique(),
            low=v.min(),
            median=v.median(),
            high=v.max(),
            events=pl.col(outcome).sum().cast(pl.Int64),
        )
        .sort("decile", nulls_last=True)
    )
    lo, hi = wilson_interval(table.get_column("events").to_numpy(), table.get_column("rows").to_numpy())
    portfolio = float(lab.get_column(outcome).mean()) if lab.height else float("nan")
    return table.with_columns(
        label=pl.when(pl.col("decile").is_null())
        .then(pl.lit("not measured"))
        .otherwise(
            pl.format(
                "D{} ({} to {})", pl.col("decile"), pl.col("low").round_sig_figs(3), pl.col("high").round_sig_figs(3)
            )
        ),
        rate=pl.col("events") / pl.col("rows"),
        rate_lower=pl.Series(lo),
        rate_upper=pl.Series(hi),
        portfolio_rate=pl.lit(portfolio),
        metric=pl.lit(metric),
        outcome=pl.lit(outcome),
    ).select(
        "metric",
        "outcome",
        "decile",
        "label",
        "rows",
        "accounts",
        "low",
        "median",
        "high",
        "events",
        "rate",
        "rate_lower",
        "rate_upper",
        "portfolio_rate",
    )


def suggest_breakpoints(
    deciles: pl.DataFrame, direction: Literal["higher_is_better", "lower_is_better"] | None = None
) -> dict[str, Any]:
    """Breakpoints for the ``thresholds`` calibration from a :func:`metric_deciles` table.

    The outcome rate per decile is smoothed to be monotone (isotonic regression, direction
    inferred when not given) and mapped to a score: the lowest rate scores 100, the portfolio
    rate 50, the highest rate 0 (linear in between). Returns ``{"points": [[raw, score], ...],
    "direction": ..., "crossing": raw}`` where ``crossing`` is the raw value at which the rate
    crosses the portfolio average, the natural yellow/green boundary.

    >>> d = pl.DataFrame({"decile": [1, 2, 3, 4], "median": [1.0, 2.0, 3.0, 4.0],
    ...                   "rate": [0.4, 0.2, 0.1, 0.05], "rows": [100] * 4, "portfolio_rate": [0.1875] * 4})
    >>> suggest_breakpoints(d)["points"]
    [[1.0, 0.0], [2.0, 47.1], [3.0, 81.8], [4.0, 100.0]]
    """
    from sklearn.isotonic import IsotonicRegression  # scikit-learn is loaded only when a model is fitted

    d = deciles.filter(pl.col("decile").is_not_null() & pl.col("median").is_not_null()).sort("median")
    if d.height < 2:
        raise ValueError("need at least two deciles with values to suggest breakpoints")
    x = d.get_column("median").to_numpy().astype(float)
    y = d.get_column("rate").to_numpy().astype(float)
    w = d.get_column("rows").to_numpy().astype(float)
    if direction is None:
        direction = "higher_is_better" if np.corrcoef(x, y)[0, 1] <= 0 else "lower_is_better"
    # higher_is_better: churn falls as the metric rises, so the fitted rate is decreasing
    iso = IsotonicRegression(increasing=direction == "lower_is_better").fit(x, y, sample_weight=w)
    fitted = iso.predict(x)
    avg = float(d.get_column("portfolio_rate")[0])
    lo, hi = float(fitted.min()), float(fitted.max())
    upper = np.where(fitted <= avg, 100 - 50 * (fitted - lo) / max(avg - lo, 1e-12), np.nan)
    lower = 50 - 50 * (fitted - avg) / max(hi - avg, 1e-12)
    score = np.clip(np.where(fitted <= avg, upper, lower), 0, 100)
    points = [[float(round(a, 6)), float(round(s, 1))] for a, s in zip(x, score)]
    # the raw value where the smoothed rate crosses the average (linear interpolation)
    crossing = None
    s50 = score - 50
    for i in range(len(x) - 1):
        if s50[i] == 0:
            crossing = float(x[i])
            break
        if s50[i] * s50[i + 1] < 0:
            crossing = float(x[i] + (x[i + 1] - x[i]) * s50[i] / (s50[i] - s50[i + 1]))
            break
    return {"points": points, "direction": direction, "crossing": crossing}


# ------------------------------------------------------------------------------------------
# CSM view
PROCESS_NOTE = (
    "This view is a signal about process and investment (coverage, portfolio size, how "
    "handovers are run), not a ranking of people: portfolios differ in segment mix and "
    "difficulty, and CSMs are listed alphabetically on purpose."
)


@dataclass
class CSMView:
    """Result of :func:`csm_view`: ``portfolio`` (one row per CSM, alphabetical) and
    ``handovers`` (a :class:`CohortComparison` by number of CSM handovers on the account)."""

    portfolio: pl.DataFrame
    handovers: CohortComparison
    note: str = PROCESS_NOTE
    # accounts (and their ARR) with no CSM in the data: left out of ``portfolio``, reported as a finding
    unassigned: int = 0
    unassigned_arr: float = 0.0
    accounts: int = 0

    @property
    def unassigned_share(self) -> float:
        """The share of accounts with no CSM in the data (NaN for an empty book)."""
        return self.unassigned / self.accounts if self.accounts else float("nan")

    def data_quality(self) -> list[str]:
        """Data-quality findings, one plain sentence each: accounts with no CSM in the data."""
        if not self.unassigned:
            return []
        return [
            f"{_pct(self.unassigned_share)} of accounts ({self.unassigned:,} of {self.accounts:,}, ARR "
            f"{_money(self.unassigned_arr)}) have no CSM in the data: fix the CRM export. They are left "
            "out of the per-CSM table."
        ]

    def describe(self) -> list[str]:
        """Findings about handovers, followed by the note on how to read this view."""
        return self.handovers.describe()[:3] + [self.note]

    def plain(self) -> list[str]:
        """Findings about handovers in plain words (no test names), then the note on reading this view."""
        lead, found = self.handovers.plain_findings()
        return [lead, *found[:2], self.note]

    def charts(self) -> dict[str, Any]:
        """The handover comparison's charts, named ``handovers_<name>``."""
        return {f"handovers_{k}": v for k, v in self.handovers.charts().items()}


def csm_view(
    scores: pl.DataFrame,
    events: pl.DataFrame | None = None,
    as_of: str | dt.date | None = None,
    horizon: str = "90d",
    min_size: int = 30,
) -> CSMView:
    """Portfolio per CSM (accounts, ARR, share and ARR in the worst band, mean score) and the
    relation between CSM handovers on an account and its health and churn."""
    _require(scores, ["account_id", "as_of", "score", "csm"], "the score frame")
    frame = with_derived(scores)
    when = _snap_date(frame, as_of, "as_of")
    snap = cross_section(frame, when, events)
    bands = _band_order(frame)
    worst = bands[0] if bands else None
    arr = pl.col("arr") if "arr" in snap.columns else pl.lit(None, pl.Float64)
    in_worst = (pl.col("band") == worst).fill_null(False) if worst else pl.lit(False)
    snap = snap.with_columns(_arr=arr, _worst=in_worst, _none=is_unassigned("csm"))
    nobody = snap.filter(pl.col("_none"))
    portfolio = (
        snap.filter(~pl.col("_none"))
        .group_by(pl.col("csm").cast(pl.Utf8))
        .agg(
            accounts=pl.len(),
            arr=pl.col("_arr").sum(),
            score_mean=pl.col("score").mean(),
            in_red=pl.col("_worst").sum().cast(pl.Int64),
            share_red=pl.col("_worst").mean(),
            arr_red=pl.col("_arr").filter(pl.col("_worst")).sum(),
            with_handover=(pl.col("handovers") != HANDOVER_LABELS[0]).mean(),
        )
        .sort("csm")
    )
    handovers = compare_cohorts(frame, by="handovers", events=events, as_of=when, horizon=horizon, min_size=min_size)
    return CSMView(
        portfolio=portfolio,
        handovers=handovers,
        unassigned=nobody.height,
        unassigned_arr=float(nobody.get_column("_arr").sum() or 0.0),
        accounts=snap.height,
    )


# ------------------------------------------------------------------------------------------
# the leadership review
@dataclass
class CohortReview:
    """Everything the leadership cohort review shows (see :func:`cohort_review`)."""

    by: list[str]
    date_from: dt.date
    date_to: dt.date
    comparison: CohortComparison
    trend: pl.DataFrame
    migration: pl.DataFrame
    migration_long: pl.DataFrame
    movers: pl.DataFrame
    portfolio: dict[str, Any]
    csm: CSMView | None
    score_deciles: pl.DataFrame | None = None
    # why movement (trend, migration, movers) is left out, e.g. a single snapshot date
    movement_note: str | None = None
    # the book at the start of the period by band, and where the period's churn came from
    band_outcomes: pl.DataFrame | None = None
    # metric name -> its label in the score model (what the first screen shows)
    labels: dict[str, str] = field(default_factory=dict)

    def label(self, name: str) -> str:
        """A metric's label from the score model (its name in words when the model is not known).

        The first screen of the review shows labels, never column names."""
        return self.labels.get(name) or name.replace("_", " ")

    @property
    def single_date(self) -> bool:
        return self.movement_note is not None

    def headline(self) -> list[str]:
        """Where the period's churn came from, by band at the start of the period: plain sentences,
        the honest headline of the review (a small red band can hold a large share of churn, or not)."""
        bo = self.band_outcomes
        noun = _OUTCOME_NOUNS.get(self.comparison.outcome, f"had the outcome {self.comparison.outcome!r}")
        if bo is None:
            return [
                "No outcome events were given, so the review cannot say where churn came from: pass the "
                "events to see it."
            ]
        n, k = int(bo["accounts"].sum()), int(bo["churned"].sum())
        arr, lost = float(bo["arr"].sum()), float(bo["arr_lost"].sum())
        span = (
            f"In the observation window after {self.date_from}"
            if self.single_date
            else f"From {self.date_from} to {self.date_to}"
        )
        lost_text = f", with ARR {_money(lost)} ({_pct(lost / arr if arr else float('nan'))} of ARR)" if arr else ""
        out = [
            f"{span}, {k:,} of the {n:,} accounts in the book at the start {noun} ({_pct(k / n if n else 0)}){lost_text}."
        ]
        if not k:
            return out
        rows = list(bo.iter_rows(named=True))
        first, rest = rows[0], rows[1:]
        link = "but" if (first["churned_share"] or 0) > (first["accounts_share"] or 0) else "and"
        text = (
            f"{first['band'][:1].upper()}{first['band'][1:]} held {_pct(first['accounts_share'])} of accounts "
            f"({_pct(first['arr_share'])} of ARR) at the start {link} {_pct(first['churned_share'])} of the "
            f"accounts that {noun}" + (f" ({_pct(first['arr_lost_share'])} of the ARR lost)" if arr else "")
        )
        if rest:
            r = rest[0]
            text += (
                f"; {r['band']} {_pct(r['accounts_share'])} of accounts and {_pct(r['churned_share'])} of the "
                f"accounts that {noun}"
            )
            text += "".join(
                f"; {r['band']} {_pct(r['accounts_share'])} and {_pct(r['churned_share'])}" for r in rest[1:]
            )
        out.append(text + ".")
        share = first["churned_share"] or 0.0
        if share < 0.5:
            out.append(
                f"A watch list of {first['band']} accounts alone would have missed {_pct(1 - share)} of the "
                f"accounts that {noun}."
            )
        out.append(
            "Share of each band's accounts that "
            + noun
            + ": "
            + ", ".join(f"{r['band']} {_pct(r['churn_rate'])}" for r in rows)
            + "."
        )
        return out

    def book_now(self) -> list[str]:
        """The book at the end of the period in plain sentences: size, score, band mix, ARR in the worst band."""
        p = self.portfolio
        worst = p["worst_band"]
        change = "" if self.single_date else f" ({p['score_change']:+.1f} points of mean score since {self.date_from})"
        return [
            f"{p['accounts']:,} accounts, ARR {_money(p['arr'])}; median score {p['score_median']:.0f}{change}.",
            "Band mix now: " + ", ".join(f"{b} {_pct(s)}" for b, s in p["band_shares"].items()) + ".",
            f"ARR in {worst} now (the ARR at risk if only {worst} counts): {_money(p['arr_at_risk'])} "
            f"({_pct(p['arr_at_risk_share'])} of ARR) across {p['accounts_at_risk']:,} accounts.",
        ]

    def movements(self) -> list[str]:
        """How accounts moved over the period, with the metric labels behind the largest drops."""
        p = self.portfolio
        if self.movement_note:
            return [self.movement_note]
        out = [
            f"{p['moved_down']:,} accounts moved to a worse band (ARR {_money(p['arr_moved_down'])}), "
            f"{p['moved_up']:,} to a better one; {p['into_worst']:,} newly in {p['worst_band']}."
        ]
        shift = (
            self.trend.filter(pl.col("as_of").is_in([self.date_from, self.date_to]))
            .group_by("cohort")
            .agg(change=(pl.col("score_mean").sort_by("as_of").diff().last()))
            .drop_nulls()
            .sort(pl.col("change").abs(), "cohort", descending=[True, False])
        )
        small = self.comparison.cohorts.filter(pl.col("small")).get_column("cohort")
        shift = shift.filter(~pl.col("cohort").is_in(small.implode()))  # small cohorts swing by chance
        if shift.height:
            r = shift.row(0, named=True)
            out.append(f"The largest cohort shift: {r['cohort']}, {r['change']:+.1f} points of mean score.")
        down = self.movers.filter(pl.col("change") < 0).head(3)
        if down.height:
            who = [
                f"{r.get('company_name') or r['account_id']} ({r['change']:+.0f}"
                + (f", mostly {self.label(r['top_driver'])}" if r.get("top_driver") else "")
                + ")"
                for r in down.iter_rows(named=True)
            ]
            out.append("Largest drops: " + "; ".join(who) + ".")
        return out

    def differences(self) -> tuple[str, list[str]]:
        """Whether cohorts differ, in plain words (the tests behind it are in the appendix): a lead
        sentence and up to three findings (:meth:`CohortComparison.plain_findings`)."""
        return self.comparison.plain_findings()

    def data_quality(self) -> list[str]:
        """Problems in the data a reader must fix before trusting part of the review."""
        return self.csm.data_quality() if self.csm is not None else []

    def first_screen(self) -> list[tuple[str, str, list[str]]]:
        """The executive summary as ``(key, lead, sentences)`` blocks in reading order, plain words
        only: the honest headline, the book now, movements, cohort differences, data quality."""
        lead, found = self.differences()
        blocks = [
            ("headline", f"Portfolio health on {self.date_to}.", self.headline()),
            ("now", "The book now.", self.book_now()),
            (
                "movements",
                "Movements." if self.single_date else f"Movements since {self.date_from}.",
                self.movements(),
            ),
            ("differences", lead, found),
        ]
        if self.data_quality():
            blocks.append(("data_quality", "Data quality.", self.data_quality()))
        return blocks

    def executive_summary(self) -> str:
        """Markdown: the first screen of the review in plain words (see :meth:`first_screen`)."""
        parts = []
        for key, lead, sentences in self.first_screen():
            if key == "differences":
                parts.append(f"**{lead}**" + ("\n\n" + "\n".join("- " + s for s in sentences) if sentences else ""))
            else:
                parts.append(f"**{lead}** " + " ".join(sentences))
        return "\n\n".join(parts)

    def heading(self) -> str:
        """Markdown title block: dimension, period, model stamp when the frame carries one."""
        stamp = self.portfolio.get("model")
        return (
            f"# Cohort review by {self.comparison.dimension.replace('_', ' ')}\n\n"
            f"Period {self.date_from} to {self.date_to}"
            + (f" · score model {stamp}" if stamp else "")
            + f" · outcome rates per {self.comparison.horizon}, labelled point-in-time."
        )

    def cohort_table(self) -> str:
        """HTML table, one row per cohort (see :func:`healthscore.render.review.cohort_table`)."""
        from healthscore.render import review as review_html  # render sits above analysis: HTML on request

        return review_html.cohort_table(self)

    def tests_table(self, kind: str = "omnibus") -> str:
        """HTML table of the tests of ``kind`` (see :func:`healthscore.render.review.significance_table`)."""
        from healthscore.render import review as review_html  # render sits above analysis: HTML on request

        return review_html.significance_table(self, kind)

    def movers_table(self) -> str:
        """HTML table of the biggest movers (see :func:`healthscore.render.review.movers_table`)."""
        from healthscore.render import review as review_html  # render sits above analysis: HTML on request

        return review_html.movers_table(self)

    def csm_table(self) -> str:
        """HTML table of the portfolio per CSM (see :func:`healthscore.render.review.csm_table`)."""
        from healthscore.render import review as review_html  # render sits above analysis: HTML on request

        return review_html.csm_table(self)

    def charts(self) -> dict[str, Any]:
        """Every chart of the review by name; drawn by :mod:`healthscore.viz.cohorts`."""
        from healthscore.viz import cohorts as cohort_charts  # viz sits above analysis: charts are drawn on request

        return cohort_charts.review_charts(self)


def cohort_review(
    scores: pl.DataFrame,
    events: pl.DataFrame | None = None,
    *,
    by: str | Sequence[str] = "segment",
    date_from: str | dt.date | None = None,
    date_to: str | dt.date | None = None,
    horizon: str = "90d",
    movers: int = 10,
    labels: dict[str, str] | None = None,
) -> CohortReview:
    """Build the leadership cohort review between ``date_from`` (default: the snapshot 13 weeks,
    91 days, before ``date_to``, whatever the cadence) and ``date_to`` (default: the last snapshot).

    With a single snapshot date (a one-row-per-customer extract) there is no movement to show:
    trend, migration and movers are left out and ``movement_note`` says why. ``labels`` maps metric
    names to the words the review shows for them (:func:`metric_labels` of the score model)."""
    by = [b for b in ([by] if isinstance(by, str) else list(by)) if b]
    if not by:  # no dimension: the portfolio as one cohort
        scores, by = scores.with_columns(pl.lit(WHOLE_PORTFOLIO).alias("portfolio")), ["portfolio"]
    frame = with_derived(scores)
    d1 = _snap_date(frame, date_to, "date_to")
    dates = [d for d in _dates(frame) if d <= d1]
    # a period that starts before the data starts where the data does
    start = _as_date(date_from)
    if start is None:
        back = [d for d in dates if d <= d1 - dt.timedelta(days=PERIOD_DAYS)]
        d0 = back[-1] if back else dates[0]
    else:
        d0 = dates[0] if start < dates[0] else _snap_date(frame, start, "date_from")
    note = None
    if len(dates) == 1:
        note = (
            f"Left out: every account has one snapshot ({d1}), so there is no earlier score to move "
            "from; score trends, band migration and movers need snapshots on two dates or more."
        )
    elif d0 >= d1:
        raise ValueError(f"date_from {d0} must be before date_to {d1}")
    comparison = compare_cohorts(frame, by=by, events=events, as_of=d1, horizon=horizon)
    window = frame.filter(pl.col("as_of").is_between(d0, d1))
    if note is None:
        trend = score_trend(window, by)
        long = migration_long(frame, d0, d1)
        matrix = band_migration(frame, d0, d1)
        mv = biggest_movers(frame, d0, d1, n=movers, labels=labels)
    else:
        trend, matrix, mv = pl.DataFrame(), pl.DataFrame(), pl.DataFrame()
        long = pl.DataFrame(schema={"from_band": pl.Utf8, "to_band": pl.Utf8, "accounts": pl.Int64, "arr": pl.Float64})
    bands = _band_order(frame)
    worst = bands[0] if bands else "red"
    rank = {b: i for i, b in enumerate(bands)}
    moves = long.with_columns(
        r0=pl.col("from_band").replace_strict(rank, default=None, return_dtype=pl.Int32),
        r1=pl.col("to_band").replace_strict(rank, default=None, return_dtype=pl.Int32),
    )
    snap = cross_section(frame, d1, events)
    start_snap = frame.filter(pl.col("as_of") == d0)
    arr = snap.get_column("arr") if "arr" in snap.columns else pl.Series([0.0] * snap.height)
    in_worst = snap.get_column("band") == worst
    total_arr = float(arr.sum() or 0.0)
    portfolio = {
        "accounts": snap.height,
        "arr": total_arr,
        "score_median": float(snap.get_column("score").median() or float("nan")),
        "score_change": float((snap.get_column("score").mean() or 0) - (start_snap.get_column("score").mean() or 0)),
        "band_shares": {b: float((snap.get_column("band") == b).mean() or 0) for b in reversed(bands)},
        "worst_band": worst,
        "arr_at_risk": float(arr.filter(in_worst.fill_null(False)).sum() or 0.0),
        "accounts_at_risk": int(in_worst.fill_null(False).sum()),
        "moved_down": int(moves.filter(pl.col("r1") < pl.col("r0")).get_column("accounts").sum()),
        "arr_moved_down": float(moves.filter(pl.col("r1") < pl.col("r0")).get_column("arr").sum() or 0.0),
        "moved_up": int(moves.filter(pl.col("r1") > pl.col("r0")).get_column("accounts").sum()),
        "into_worst": int(
            moves.filter((pl.col("to_band") == worst) & (pl.col("from_band") != worst)).get_column("accounts").sum()
        ),
    }
    if "model_name" in frame.columns and frame.height:
        last = frame.row(frame.height - 1, named=True)
        portfolio["model"] = f"{last['model_name']} {last.get('model_version') or ''} ({last.get('model_hash') or ''})"
    portfolio["arr_at_risk_share"] = portfolio["arr_at_risk"] / total_arr if total_arr else float("nan")
    csm = csm_view(frame, events, as_of=d1, horizon=horizon) if "csm" in frame.columns else None
    deciles = None
    if events is not None and events.filter(pl.col("event") == comparison.outcome).height:
        # does the score rank churn? the same point-in-time windows, up to the end of the period
        try:
            deciles = metric_deciles(
                frame.filter(pl.col("as_of") <= d1).select(*KEYS, "score"),
                events,
                "score",
                outcome=comparison.outcome,
                horizon=horizon,
            )
        except ValueError:  # no snapshot followed by a full horizon before date_to
            deciles = None
    has_outcome = (
        "band" in frame.columns
        and events is not None
        and events.filter(pl.col("event") == comparison.outcome).height > 0
    )
    outcomes = band_outcomes(frame, events, d0, d1, outcome=comparison.outcome) if has_outcome else None
    return CohortReview(
        by=by,
        date_from=d0,
        date_to=d1,
        comparison=comparison,
        trend=trend,
        migration=matrix,
        migration_long=long,
        movers=mv,
        portfolio=portfolio,
        csm=csm,
        score_deciles=deciles,
        movement_note=note,
        band_outcomes=outcomes,
        labels=dict(labels or {}),
    )


# ------------------------------------------------------------------------------------------
# edge: files in, review out (used by notebooks/cohort_review.ipynb and `healthscore review`)
def _read_frame(path: str) -> pl.DataFrame:

    if Path(path).suffix.lower() in {".parquet", ".pq", ".csv"} or not Path(path).exists():
        return load_scores(path)  # score frames or snapshots; a missing file gets a clear error
    return read_snapshots(path)  # Excel, DuckDB, SQL URIs


def load_review_inputs(
    data: str | pl.DataFrame, events: str | pl.DataFrame | None = None, model: str | None = None
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Read what the review needs: ``data`` is a score frame (has a ``score`` column) or snapshots,
    which are then scored with ``model``; ``events`` is optional. Returns (scores, events)."""
    frame = data if isinstance(data, pl.DataFrame) else _read_frame(str(data))
    if "score" not in frame.columns:
        if model is None:
            raise ValueError(f"{data}: these are snapshots without a 'score' column; pass --model to score them")

        snaps = read_snapshots(frame)
        frame = score(snaps, load_model(model))
        # every attribute and metric column can define a cohort, not only those a score row carries
        extra = [c for c in snaps.columns if c not in frame.columns]
        if extra:
            frame = frame.join(snaps.select(*KEYS, *extra), on=list(KEYS), how="left")
    ev = None
    if events is not None:
        ev = read_events(events)
    return frame, ev


def review_from_files(
    data: str,
    events: str | None = None,
    model: str | None = None,
    by: str = "segment",
    date_from: str | None = None,
    date_to: str | None = None,
    horizon: str = "90d",
) -> CohortReview:
    """:func:`cohort_review` from file paths; ``by`` may name several attributes joined by commas."""
    scores, ev = load_review_inputs(data, events, model)
    dims = [b.strip() for b in by.split(",") if b.strip()] if isinstance(by, str) else list(by)
    labels = metric_labels(load_model(model)) if model else None
    return cohort_review(
        scores, ev, by=dims, date_from=date_from or None, date_to=date_to or None, horizon=horizon, labels=labels
    )


def metric_labels(model: Any) -> dict[str, str]:
    """Metric name (and column) -> the label the score model gives it; the name in words when the
    model has no label for it.

    >>> from healthscore import resources
    >>> metric_labels(load_model(resources.sample_model()))["seat_utilization"]
    'Seat utilisation'
    """
    out: dict[str, str] = {}
    for m in model.metrics:
        label = m.label or m.name.replace("_", " ")
        out.setdefault(m.column, label)
        out[m.name] = label
    return out


# ------------------------------------------------------------------------------------------
# the honest headline: where the period's churn came from, by band at the start
UNASSIGNED_CSM = ("", "(unassigned)", "unassigned")


def is_unassigned(column: str = "csm") -> pl.Expr:
    """True where the CSM is missing: null, blank, or written as ``(unassigned)``/``unassigned``.

    >>> pl.DataFrame({"csm": ["Ann", None, "  ", "(Unassigned)"]}).select(is_unassigned())["csm"].to_list()
    [False, True, True, True]
    """
    text = pl.col(column).cast(pl.Utf8)
    return text.is_null() | text.str.strip_chars().str.to_lowercase().is_in(UNASSIGNED_CSM)


def band_outcomes(
    scores: pl.DataFrame,
    events: pl.DataFrame | None,
    start: str | dt.date,
    end: str | dt.date | None = None,
    *,
    outcome: str = "churned",
) -> pl.DataFrame:
    """The book at ``start`` by band, and where the ``outcome`` over the period came from.

    The book is each account's latest snapshot on or before ``start`` (as in :func:`cross_section`:
    accounts already gone are left out); an
    account counts as churned when it has an ``outcome`` event after ``start`` and on or before
    ``end`` (with a single snapshot date, ``end`` equal to ``start``: any later event, the
    observation window). Lost ARR is the start ARR of the accounts that churned. One row per band,
    worst first (accounts without a band as ``unscored``, last): ``accounts``, ``accounts_share``,
    ``arr``, ``arr_share``, ``churned``, ``churned_share`` (of all churned accounts), ``arr_lost``,
    ``arr_lost_share`` (of all lost ARR) and ``churn_rate`` (of the band's own accounts).

    >>> d0, d1 = dt.date(2026, 1, 5), dt.date(2026, 4, 6)
    >>> s = pl.DataFrame({"account_id": ["a", "b", "c", "d"], "as_of": [d0] * 4,
    ...     "score": [20.0, 50, 60, 90], "band": ["red", "yellow", "yellow", "green"], "arr": [1.0, 2, 3, 4]})
    >>> e = pl.DataFrame({"account_id": ["a", "c"], "date": [dt.date(2026, 2, 1)] * 2, "event": ["churned"] * 2})
    >>> band_outcomes(s, e, d0, d1).select("band", "accounts_share", "churned_share", "arr_lost_share").rows()
    [('red', 0.25, 0.5, 0.25), ('yellow', 0.5, 0.5, 0.75), ('green', 0.25, 0.0, 0.0)]
    """
    _require(scores, ["account_id", "as_of", "score", "band"], "the score frame")
    d0 = _snap_date(scores, start, "start")
    d1 = _snap_date(scores, end, "end") if end is not None else d0
    book = cross_section(scores, d0, events)
    arr = pl.col("arr").cast(pl.Float64).fill_null(0.0) if "arr" in book.columns else pl.lit(0.0)
    book = book.select("account_id", band=pl.col("band").cast(pl.Utf8).fill_null(UNSCORED), arr=arr)
    churned = pl.DataFrame(schema={"account_id": book.schema["account_id"]})
    if events is not None and events.height:
        window = (pl.col("date") > d0) & ((pl.col("date") <= d1) if d1 > d0 else pl.lit(True))
        churned = (
            events.filter((pl.col("event") == outcome) & window)
            .select(pl.col("account_id").cast(book.schema["account_id"]))
            .unique()
        )
    book = book.with_columns(_out=pl.col("account_id").is_in(churned.get_column("account_id").implode()))
    order = [b for b in _band_order(scores) if b != UNSCORED]
    present = book.get_column("band").unique().to_list()
    names = [b for b in order if b in present] + sorted(set(present) - set(order) - {UNSCORED})
    names += [UNSCORED] if UNSCORED in present else []
    per = (
        book.group_by("band")
        .agg(
            accounts=pl.len().cast(pl.Int64),
            arr=pl.col("arr").sum(),
            churned=pl.col("_out").sum().cast(pl.Int64),
            arr_lost=pl.col("arr").filter(pl.col("_out")).sum(),
        )
        .with_columns(pl.col("band").cast(pl.Enum(names)))
        .sort("band")
        .with_columns(pl.col("band").cast(pl.Utf8))
    )

    def share(col: str) -> pl.Expr:
        total = pl.col(col).sum()
        return pl.when(total > 0).then(pl.col(col) / total).otherwise(None)

    return per.select(
        "band",
        "accounts",
        share("accounts").alias("accounts_share"),
        "arr",
        share("arr").alias("arr_share"),
        "churned",
        share("churned").alias("churned_share"),
        "arr_lost",
        share("arr_lost").alias("arr_lost_share"),
        (pl.col("churned") / pl.col("accounts")).alias("churn_rate"),
    )
