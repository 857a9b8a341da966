"""Model monitoring: does the score still see the population it was fitted on, and does it still rank?

A fitted model carries a *reference* (the ``[reference]`` table of its file): the period it was
fitted on, the decile bins of every metric and of the score with their shares, the N/A shares, and
the score's AUC with its interval for the fitted outcome and horizon. :func:`monitor` holds later
snapshots against it, period by period (quarters by default):

* population stability index (PSI) of each metric and of the score over the reference bins plus
  one N/A bin, so a metric that stops being measured drifts as surely as one whose values move;
  below 0.1 is stable, 0.1 to 0.25 is worth watching, above 0.25 is drift;
* the change of each N/A share;
* AUC per period with its interval clustered by account (:func:`evaluation.auc_ci`), and, when the
  model holds a probability map for the same outcome and horizon, predicted against observed rates
  and the expected calibration error.

"Refit recommended" when a metric or the score drifts (PSI above 0.25 in a period with at least
``min_rows`` rows) or when a period's AUC interval lies wholly below the reference interval (its
upper bound under the reference's lower bound): the score then ranks worse than when it was fitted,
by more than chance explains.

>>> round(psi([0.5, 0.5], [0.6, 0.4]), 4)     # (0.6-0.5)*ln(0.6/0.5) + (0.4-0.5)*ln(0.4/0.5)
0.0405
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import numpy as np
import polars as pl
from scipy.special import rel_entr
from statsmodels.stats.proportion import proportion_confint

from healthscore.analysis.evaluation import ProbabilityMap, auc_ci, expected_calibration_error, risk_of
from healthscore.core.labels import label_outcomes
from healthscore.core.scoring import score as score_frame
from healthscore.errors import HealthscoreError
from healthscore.results import Summary
from healthscore.spec.model import ScoreModel
from healthscore.spec.outcomes import horizon_words, parse_horizon

__all__ = [
    "psi",
    "reference_bins",
    "binned_shares",
    "reference_from",
    "monitor",
    "Monitoring",
    "MonitoringError",
    "PSI_WATCH",
    "PSI_DRIFT",
    "ALERT_COLUMNS",
]

PSI_WATCH = 0.1  # from here on a distribution has moved enough to watch
PSI_DRIFT = 0.25  # above this the population is no longer the one the model was fitted on
EPSILON = 1e-4  # share given to an empty bin, so a bin empty on one side counts without dividing by zero
SCORE = "score"  # the variable name of the score in the drift table
ALERT_COLUMNS: dict[str, Any] = {
    "account_id": pl.String,
    "rule": pl.String,
    "kind": pl.String,
    "severity": pl.String,
    "owner": pl.String,
    "action": pl.String,
    "fired_at": pl.Date,
    "evidence": pl.String,
    "model_hash": pl.String,
}
_KEYS = ["account_id", "as_of"]


class MonitoringError(HealthscoreError, ValueError):
    """Monitoring cannot run as asked (no reference, no rows, a reference for another outcome...)."""


# ---------------------------------------------------------------- PSI and bins
def psi(
    expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray, *, epsilon: float = EPSILON
) -> float:
    """Population stability index of ``actual`` against ``expected`` shares (or counts) per bin.

    ``sum((a - e) * ln(a / e))``, computed as the symmetric relative entropy
    ``sum(rel_entr(a, e) + rel_entr(e, a))`` (the same number). Both are normalised to shares
    first; a bin empty on either side gets the share ``epsilon`` instead of 0, the usual way to
    keep an empty bin from making the index infinite.

    >>> psi([10, 10, 0], [10, 10, 0])
    0.0
    >>> round(psi([0.25, 0.25, 0.5], [0.5, 0.25, 0.25]), 4)
    0.3466
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape or e.ndim != 1 or e.size == 0:
        raise ValueError(f"psi needs two equally long lists of bin shares; got {e.shape} and {a.shape}")
    if e.sum() <= 0 or a.sum() <= 0:
        return float("nan")
    e = np.where(e > 0, e / e.sum(), epsilon)
    a = np.where(a > 0, a / a.sum(), epsilon)
    return float(np.sum(rel_entr(a, e) + rel_entr(e, a)))


def _numeric(values: pl.Series) -> bool:
    return values.dtype.is_numeric() or values.dtype == pl.Boolean


def reference_bins(values: pl.Series, *, n_bins: int = 10) -> dict[str, Any]:
    """Decile bins of one column in the reference period: edges, shares of the non-missing values
    per bin, the N/A share and the row count. Text columns get one bin per category instead.

    Bins are closed on the right: a value equal to an edge falls in the bin below it, so a column
    with few distinct values (login days 0..7) keeps one bin per value.

    >>> b = reference_bins(pl.Series([1.0, 2, 3, 4, None]), n_bins=2)
    >>> b["edges"], b["shares"], b["na_share"]
    ([2.5], [0.5, 0.5], 0.2)
    """
    n = values.len()
    na = values.null_count() + (values.is_nan().sum() if values.dtype.is_float() else 0)
    present = values.drop_nulls()
    if values.dtype.is_float():
        present = present.filter(present.is_not_nan())
    out: dict[str, Any] = {"rows": int(n), "na_share": round(na / n, 6) if n else 0.0}
    if _numeric(values):
        x = present.cast(pl.Float64).to_numpy()
        edges = np.unique(np.quantile(x, np.linspace(0, 1, n_bins + 1)[1:-1])) if x.size else np.array([])
        counts = np.bincount(np.searchsorted(edges, x, side="left"), minlength=edges.size + 1)
        out["edges"] = [float(v) for v in edges]
    else:
        cats = present.cast(pl.String).value_counts(sort=True, name="n")
        out["categories"] = [str(c) for c in cats[present.name]]
        counts = cats["n"].to_numpy()
    out["shares"] = (
        [round(float(c) / x_total, 6) for c in counts] if (x_total := float(counts.sum())) else [0.0] * int(counts.size)
    )
    return out


def binned_shares(values: pl.Series, bins: Mapping[str, Any]) -> tuple[np.ndarray, float]:
    """Shares of ``values`` over the reference ``bins``: one share per bin among the present values,
    then a last entry for N/A; shares of all rows, so they add up to 1. Also returns the N/A share.
    Categories unseen in the reference share one extra bin before the N/A bin.

    >>> s, na = binned_shares(pl.Series([1.0, 3.0, None, 5.0]), {"edges": [2.0, 4.0]})
    >>> s.tolist(), na
    ([0.25, 0.25, 0.25, 0.25], 0.25)
    """
    n = values.len()
    present = values.drop_nulls()
    if values.dtype.is_float():
        present = present.filter(present.is_not_nan())
    na = n - present.len()
    if "categories" in bins:
        cats = list(bins["categories"])
        idx = {c: i for i, c in enumerate(cats)}
        codes = np.array([idx.get(v, len(cats)) for v in present.cast(pl.String).to_list()], dtype=np.int64)
        counts = np.bincount(codes, minlength=len(cats) + 1).astype(np.float64)
    else:
        edges = np.asarray(bins.get("edges", []), dtype=np.float64)
        x = present.cast(pl.Float64).to_numpy()
        counts = np.bincount(np.searchsorted(edges, x, side="left"), minlength=edges.size + 1).astype(np.float64)
    shares = np.append(counts, na) / n if n else np.zeros(counts.size + 1)
    return shares, (na / n if n else float("nan"))


def _expected(bins: Mapping[str, Any]) -> np.ndarray:
    """The reference shares on the same footing as :func:`binned_shares` (of all rows, N/A last)."""
    na = float(bins.get("na_share", 0.0))
    shares = np.asarray(bins.get("shares", []), dtype=np.float64) * (1.0 - na)
    if "categories" in bins:
        shares = np.append(shares, 0.0)  # no unseen category in the reference itself
    return np.append(shares, na)


# ---------------------------------------------------------------- scored and labelled rows
def _frame(data: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    return data.collect() if isinstance(data, pl.LazyFrame) else data


def _as_day(value: date | str, what: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise MonitoringError(f"{what} {value!r} is not a date: write it as YYYY-MM-DD") from None


def _scored(
    snapshots: pl.DataFrame, events: pl.DataFrame | None, model: ScoreModel, outcome: str, horizon: str
) -> pl.DataFrame:
    """Keys, each metric's raw column, the score and (with events) the point-in-time label.

    Every snapshot is scored with its full history (trend metrics need the weeks before) and
    labelled against the end of the data given, then callers pick their period.
    """
    missing = [c for c in _KEYS if c not in snapshots.columns]
    if missing:
        raise MonitoringError(
            f"snapshots: missing key column(s) {missing}; every snapshot row needs account_id and as_of"
        )
    if snapshots.is_empty():
        raise MonitoringError("snapshots: the table is empty; pass the snapshots to monitor")
    model.check_columns(snapshots.columns)
    columns = list(dict.fromkeys(m.column for m in model.metrics))
    raw = snapshots.select(*_KEYS, *columns)
    scores = score_frame(snapshots, model).select(*_KEYS, "score")
    rows = raw.join(scores, on=_KEYS, how="left")
    if events is not None:
        definition = model.outcome(outcome)
        labels = label_outcomes(
            snapshots.select(_KEYS), events, outcome=outcome, horizon=horizon, terminal=definition.terminal
        )
        rows = rows.join(labels.rename({outcome: "_label"}), on=_KEYS, how="left")
    else:
        rows = rows.with_columns(pl.lit(None, pl.Boolean).alias("_label"))
    return rows.sort(_KEYS)


def _auc(rows: pl.DataFrame, model: ScoreModel, outcome: str, confidence: float) -> dict[str, Any]:
    """AUC of the score on the labelled, scored rows, clustered by account."""
    part = rows.filter(pl.col("_label").is_not_null() & pl.col("score").is_not_null())
    y = part["_label"].cast(pl.Float64).to_numpy()
    ci = auc_ci(y, risk_of(part["score"], model.outcome(outcome)), confidence=confidence, groups=part["account_id"])
    return {
        "labelled_rows": part.height,
        "events": int(y.sum()),
        "auc": ci.estimate,
        "auc_lower": ci.lower,
        "auc_upper": ci.upper,
    }


# ---------------------------------------------------------------- reference
def reference_from(
    snapshots: pl.DataFrame | pl.LazyFrame,
    events: pl.DataFrame | pl.LazyFrame | None,
    model: ScoreModel,
    *,
    outcome: str = "churned",
    horizon: str = "90d",
    period: tuple[date | str, date | str] | None = None,
    n_bins: int = 10,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """The monitoring reference of ``model`` on ``period`` (first and last ``as_of``; default: all
    snapshots): plain data to store with ``model.with_reference(...)``.

    Holds the period, per metric (raw column) and for the score the decile edges and shares with
    the N/A share, and the score's AUC with its ``confidence`` interval (clustered by account) for
    ``outcome`` within ``horizon``. Labels look past the period's end as far as the data reaches.

    >>> import healthscore as hs
    >>> p = hs.make_portfolio(n_accounts=300, n_weeks=30, seed=3)
    >>> m = hs.load_model(hs.datasets.sample_dir() / "model.toml")
    >>> ref = reference_from(p.snapshots, p.events, m, horizon="28d")
    >>> sorted(ref["score"]), len(ref["metrics"]) == len(m.metrics), 0.5 < ref["auc"] <= 1
    (['edges', 'na_share', 'rows', 'shares'], True, True)
    """
    horizon = parse_horizon(horizon)
    snaps = _frame(snapshots)
    rows = _scored(snaps, None if events is None else _frame(events), model, outcome, horizon)
    first, last = rows["as_of"].min(), rows["as_of"].max()
    if period is not None:
        first, last = _as_day(period[0], "period start"), _as_day(period[1], "period end")
        rows = rows.filter(pl.col("as_of").is_between(first, last))
        if rows.is_empty():
            raise MonitoringError(
                f"no snapshot falls in the reference period {first} .. {last}; the data "
                f"runs {snaps['as_of'].min()} .. {snaps['as_of'].max()}"
            )
        first, last = rows["as_of"].min(), rows["as_of"].max()
    ref: dict[str, Any] = {
        "outcome": outcome,
        "horizon": horizon,
        "first_as_of": first.isoformat(),
        "last_as_of": last.isoformat(),
        "rows": rows.height,
        "accounts": rows["account_id"].n_unique(),
        "model_hash": model.hash,
        "confidence": confidence,
    }
    if events is not None:
        ref.update(
            {
                k: v
                for k, v in _auc(rows, model, outcome, confidence).items()
                if not (isinstance(v, float) and math.isnan(v))
            }
        )
    ref["score"] = reference_bins(rows["score"], n_bins=n_bins)
    ref["metrics"] = {
        m.name: {"column": m.column, **reference_bins(rows[m.column], n_bins=n_bins)} for m in model.metrics
    }
    return ref


# ---------------------------------------------------------------- monitoring
@dataclass
class Finding:
    """One reason to refit or to watch: what moved, in which period, by how much."""

    level: Literal["refit", "watch"]
    period: str
    variable: str
    measure: str
    value: float
    text: str
    detail: str = ""  # what else changed (the N/A share), appended when findings are gathered

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "period": self.period,
            "variable": self.variable,
            "measure": self.measure,
            "value": None if math.isnan(self.value) else round(self.value, 4),
            "text": self.text,
        }


@dataclass
class Monitoring:
    """The result of :func:`monitor`.

    ``drift``: one row per period and variable (each metric and ``score``) with PSI, N/A shares
    and a status; ``performance``: one row per period with AUC and its interval, the reference AUC
    and, with a probability map, predicted against observed rates; ``findings``: every reason to
    refit or watch; ``verdict``: ``"refit recommended"``, ``"watch"`` or ``"stable"``.
    """

    model_name: str
    model_version: str
    model_hash: str
    outcome: str
    horizon: str
    by: str
    reference: dict[str, Any]
    drift: pl.DataFrame
    performance: pl.DataFrame
    findings: list[Finding]
    notes: list[str] = field(default_factory=list)
    min_rows: int = 200

    @property
    def verdict(self) -> str:
        if any(f.level == "refit" for f in self.findings):
            return "refit recommended"
        return "watch" if self.findings else "stable"

    @property
    def refit(self) -> bool:
        """True when a refit is recommended."""
        return self.verdict == "refit recommended"

    def reasons(self, level: Literal["refit", "watch"]) -> list[str]:
        """The findings of one level in words, one per variable and measure, periods gathered:
        "seat_utilization drifted: PSI 0.91 in 2026Q2, 7.55 in 2026Q3"."""
        groups: dict[tuple[str, str], list[Finding]] = {}
        for f in self.findings:
            if f.level == level:
                groups.setdefault((f.variable, f.measure), []).append(f)
        out = []
        for (variable, measure), fs in groups.items():
            if measure != "psi":
                out += [f.text for f in fs]
                continue
            what = "the score" if variable == SCORE else variable
            verb = "drifted" if level == "refit" else "moved"
            out.append(f"{what} {verb}: PSI " + ", ".join(f"{f.value:.2f} in {f.period}" for f in fs) + fs[-1].detail)
        return out

    def headline(self) -> str:
        """The verdict in plain words with its reasons, one line."""
        refit, watch = self.reasons("refit"), self.reasons("watch")
        if refit:
            return "refit recommended: " + "; ".join(_shorten(refit, 6))
        if watch:
            return "watch, no refit needed yet: " + "; ".join(_shorten(watch, 6))
        return f"stable: every metric and the score stay within PSI {PSI_WATCH:g} of the reference" + (
            " and the AUC holds" if self.performance["auc"].is_not_nan().any() else ""
        )

    def summary(self) -> Summary:
        """Plain words first (the verdict and why), then the reference and the period table."""
        ref = self.reference
        lines = [self.headline(), ""]
        lines.append(
            f"model {self.model_name} {self.model_version} (hash {self.model_hash}); {self.outcome} within "
            f"{horizon_words(self.horizon)}"
        )
        auc_text = (
            f", AUC {ref['auc']:.3f} [{ref['auc_lower']:.3f}, {ref['auc_upper']:.3f}]"
            if "auc_lower" in ref and "auc_upper" in ref
            else ""
        )
        lines.append(f"reference: {ref['first_as_of']} .. {ref['last_as_of']}, {ref['rows']:,} snapshots{auc_text}")
        lines.append(
            f"rules: PSI above {PSI_DRIFT:g} is drift (refit), {PSI_WATCH:g} to {PSI_DRIFT:g} is worth "
            f"watching; a period whose AUC interval lies wholly below the reference interval means "
            f"the score ranks worse (refit); periods with fewer than {self.min_rows} rows are shown, "
            "not judged"
        )
        lines += ["", f"{'period':<10}{'rows':>8}{'score PSI':>11}  {'largest metric PSI':<34}{'AUC [interval]'}"]
        for r in self.to_frame().iter_rows(named=True):
            worst = f"{r['max_metric_psi']:.3f} {r['max_metric'] or ''}" if r["max_metric"] else "-"
            auc = (
                f"{r['auc']:.3f} [{r['auc_lower']:.3f}, {r['auc_upper']:.3f}]"
                if not _nan(r["auc_lower"])
                else (f"{r['auc']:.3f}" if not _nan(r["auc"]) else "- (no labels)")
            )
            lines.append(f"{r['period']:<10}{r['rows']:>8,}{_num(r['score_psi']):>11}  {worst:<34}{auc}")
        if self.performance["ece"].is_not_nan().any():
            lines += ["", "calibration (probability map of the model):"]
            for r in self.performance.filter(pl.col("ece").is_not_nan()).iter_rows(named=True):
                lines.append(
                    f"  {r['period']:<10} predicted {r['mean_predicted']:.1%}, observed {r['observed']:.1%} "
                    f"[{r['observed_lower']:.1%}, {r['observed_upper']:.1%}], ECE {r['ece']:.4f}"
                )
        watch = self.reasons("watch")
        if watch and self.refit:
            lines += ["", "also worth watching: " + "; ".join(_shorten(watch, 8))]
        lines += [f"note: {n}" for n in self.notes]
        return Summary("\n".join(lines))

    def __str__(self) -> str:
        return str(self.summary())

    def __repr__(self) -> str:
        return f"Monitoring({self.model_name!r}, {self.verdict}, {self.performance.height} periods)"

    def to_frame(self) -> pl.DataFrame:
        """One row per period: rows, score PSI, the metric with the largest PSI, AUC with its
        interval, calibration and the period's status."""
        metrics = self.drift.filter(pl.col("variable") != SCORE)
        worst = (
            metrics.filter(pl.col("psi").is_not_nan())
            .sort(["period", "psi", "variable"], descending=[False, True, False])
            .group_by("period", maintain_order=True)
            .agg(max_metric=pl.col("variable").first(), max_metric_psi=pl.col("psi").first())
        )
        score = self.drift.filter(pl.col("variable") == SCORE).select(
            "period", score_psi="psi", score_na_share="na_share"
        )
        status = {p: "stable" for p in self.performance["period"].to_list()}
        for f in self.findings:
            if f.level == "refit" or status.get(f.period) == "stable":
                status[f.period] = "refit recommended" if f.level == "refit" else "watch"
        out = (
            self.performance.select("period", "period_start", "period_end", "rows")
            .join(score, on="period", how="left")
            .join(worst, on="period", how="left")
            .join(self.performance.drop("period_start", "period_end", "rows"), on="period", how="left")
            .with_columns(status=pl.col("period").replace_strict(status, default="stable"))
            .sort("period_start")
        )
        return out

    def charts(self) -> dict[str, Any]:
        """``psi``: PSI per metric and period; ``auc``: AUC per period with its interval against the
        reference interval."""
        # viz sits above analysis: charts are drawn on request
        from healthscore.viz.monitoring import auc_chart, psi_chart

        return {
            "psi": psi_chart(self.drift, watch=PSI_WATCH, drift=PSI_DRIFT),
            "auc": auc_chart(self.performance, self.reference),
        }

    def drift_alerts(self, *, rule: str = "model_drift", owner: str = "CS operations") -> pl.DataFrame:
        """Alerts on the model itself, in the alerts-table shape: no row when stable, else one row
        (``account_id`` null) with severity ``high`` (refit recommended) or ``medium`` (watch),
        the action, the date of the latest period with a finding and every finding as JSON evidence.

        >>> Monitoring.empty_alerts().columns[:4]
        ['account_id', 'rule', 'kind', 'severity']
        """
        if not self.findings:
            return self.empty_alerts()
        level: Literal["refit", "watch"] = "refit" if self.refit else "watch"
        chosen = [f for f in self.findings if f.level == level]
        ends = dict(zip(self.performance["period"].to_list(), self.performance["period_end"].to_list()))
        fired = max(ends[f.period] for f in chosen)
        if self.refit:
            action = "refit the model: " + "; ".join(_shorten(self.reasons(level), 4))
        else:
            action = "refit the model: not needed yet; check at the next run whether these keep moving: " + "; ".join(
                _shorten(self.reasons(level), 4)
            )
        evidence = {
            "verdict": self.verdict,
            "model": self.model_name,
            "model_version": self.model_version,
            "outcome": self.outcome,
            "horizon": self.horizon,
            "reference_period": [self.reference["first_as_of"], self.reference["last_as_of"]],
            "reference_auc": _jsonable(
                [self.reference.get("auc"), self.reference.get("auc_lower"), self.reference.get("auc_upper")]
            ),
            "findings": [f.to_dict() for f in self.findings],
        }
        row = {
            "account_id": None,
            "rule": rule,
            "kind": "model_drift",
            "severity": "high" if self.refit else "medium",
            "owner": owner,
            "action": action,
            "fired_at": fired,
            "evidence": json.dumps(evidence, sort_keys=True),
            "model_hash": self.model_hash,
        }
        return pl.DataFrame([row], schema=ALERT_COLUMNS)

    @staticmethod
    def empty_alerts() -> pl.DataFrame:
        """An alerts table with no row (the shape :meth:`drift_alerts` returns)."""
        return pl.DataFrame(schema=ALERT_COLUMNS)


def _nan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _num(x: Any) -> str:
    return "-" if _nan(x) else f"{x:.3f}"


def _jsonable(values: list[Any]) -> list[Any]:
    return [None if _nan(v) else v for v in values]


def _shorten(texts: list[str], n: int) -> list[str]:
    return texts[:n] + ([f"and {len(texts) - n} more"] if len(texts) > n else [])


def _period_expr(by: str) -> tuple[pl.Expr, pl.Expr]:
    """(period start, period label) of ``as_of`` for ``by`` = quarter or month."""
    if by == "quarter":
        start = pl.col("as_of").dt.truncate("1q")
        label = pl.format("{}Q{}", start.dt.year(), start.dt.quarter())
    elif by == "month":
        start = pl.col("as_of").dt.truncate("1mo")
        label = start.dt.strftime("%Y-%m")
    else:
        raise MonitoringError(f"by={by!r} is not known: monitor by 'quarter' or 'month'")
    return start, label


def _check_reference(reference: Mapping[str, Any], model: ScoreModel) -> None:
    need = ["first_as_of", "last_as_of", "score", "metrics"]
    missing = [k for k in need if k not in reference]
    if missing:
        raise MonitoringError(
            f"the reference lacks {missing}; rebuild it with reference_from(...) "
            "or 'healthscore monitor --set-reference'"
        )


def monitor(
    snapshots: pl.DataFrame | pl.LazyFrame,
    events: pl.DataFrame | pl.LazyFrame | None,
    model: ScoreModel,
    *,
    reference: Mapping[str, Any] | None = None,
    by: str = "quarter",
    outcome: str | None = None,
    horizon: str | None = None,
    min_rows: int = 200,
    confidence: float | None = None,
) -> Monitoring:
    """Hold ``snapshots`` (and the outcomes in ``events``) against the model's reference, period by period.

    ``reference`` defaults to the model's ``[reference]`` table; outcome, horizon and the interval's
    confidence default to the reference's. ``events=None`` checks drift only. Every period in the
    data is compared, including any inside the reference period (those show what no drift looks like).

    >>> import healthscore as hs, polars as pl, datetime as dt
    >>> p = hs.make_portfolio(n_accounts=300, n_weeks=40, seed=3)
    >>> m = hs.load_model(hs.datasets.sample_dir() / "model.toml")
    >>> ref = reference_from(p.snapshots, p.events, m, horizon="28d", period=(p.snapshots["as_of"].min(), "2026-05-01"))
    >>> mon = monitor(p.snapshots, p.events, m, reference=ref)
    >>> mon.verdict in ("stable", "watch", "refit recommended"), mon.to_frame().columns[:3]
    (True, ['period', 'period_start', 'period_end'])
    """
    reference = dict(reference if reference is not None else (model.reference or {}))
    if not reference:
        raise MonitoringError(
            f"model {model.name!r} has no [reference] table: set one with "
            "'healthscore monitor --set-reference' (or model.with_reference(reference_from(...))) "
            "from the period the model was fitted on"
        )
    _check_reference(reference, model)
    outcome = outcome or str(reference.get("outcome", "churned"))
    horizon = parse_horizon(horizon or str(reference.get("horizon", "90d")))
    confidence = float(confidence if confidence is not None else reference.get("confidence", 0.95))
    notes: list[str] = []
    same_target = outcome == reference.get("outcome") and horizon == reference.get("horizon")
    if events is not None and not same_target:
        notes.append(
            f"the reference AUC is for {reference.get('outcome')} within {reference.get('horizon')}, "
            f"this run checks {outcome} within {horizon}: AUCs are not compared"
        )
    if reference.get("model_hash") not in (None, model.hash):
        notes.append(
            f"the reference was taken with model hash {reference.get('model_hash')}, this model is "
            f"{model.hash}: the score's reference bins came from another definition; set a new reference"
        )
    rows = _scored(_frame(snapshots), None if events is None else _frame(events), model, outcome, horizon)
    start, label = _period_expr(by)
    rows = rows.with_columns(start.alias("_start"), label.alias("period"))

    variables = [(SCORE, "score", reference["score"])]
    for m in model.metrics:
        bins = reference["metrics"].get(m.name)
        if bins is None:
            notes.append(f"metric {m.name} has no reference bins (added after the reference was set): not checked")
            continue
        variables.append((m.name, m.column, bins))

    pmap = _probability_map(model, outcome, horizon, notes)
    ref_ok = events is not None and same_target and "auc_lower" in reference
    drift_rows: list[dict[str, Any]] = []
    perf_rows: list[dict[str, Any]] = []
    findings: list[Finding] = []
    ref_lo = float(reference.get("auc_lower", float("nan")))
    ref_auc = float(reference.get("auc", float("nan")))
    ref_hi = float(reference.get("auc_upper", float("nan")))
    for (_, period), part in rows.sort("_start").group_by(["_start", "period"], maintain_order=True):
        judged = part.height >= min_rows
        for name, column, bins in variables:
            actual, na = binned_shares(part[column], bins)
            value = psi(_expected(bins), actual)
            ref_na = float(bins.get("na_share", 0.0))
            status = (
                ("drift" if value > PSI_DRIFT else "watch" if value >= PSI_WATCH else "stable")
                if judged and not math.isnan(value)
                else "too few rows"
            )
            drift_rows.append(
                {
                    "period": period,
                    "variable": name,
                    "column": column,
                    "rows": part.height,
                    "psi": value,
                    "na_share": na,
                    "ref_na_share": ref_na,
                    "na_change": na - ref_na,
                    "status": status,
                }
            )
            if status in ("drift", "watch"):
                what = "the score" if name == SCORE else name
                na_text = f"N/A {ref_na:.0%} -> {na:.0%}" if abs(na - ref_na) >= 0.05 else ""
                findings.append(
                    Finding(
                        "refit" if status == "drift" else "watch",
                        period,
                        name,
                        "psi",
                        value,
                        f"{what} {'drifted' if status == 'drift' else 'moved'} in {period} "
                        f"(PSI {value:.2f}{', ' + na_text if na_text else ''})",
                        detail=f" ({na_text})" if na_text else "",
                    )
                )
        perf = {
            "period": period,
            "period_start": part["as_of"].min(),
            "period_end": part["as_of"].max(),
            "rows": part.height,
            "accounts": part["account_id"].n_unique(),
            **_auc(part, model, outcome, confidence),
            "ref_auc": ref_auc,
            "ref_auc_lower": ref_lo,
            "ref_auc_upper": ref_hi,
        }
        perf.update(_calibration(part, pmap, confidence))
        below = bool(ref_ok and judged and not math.isnan(perf["auc_upper"]) and perf["auc_upper"] < ref_lo)
        perf["auc_below_reference"] = below
        if below:
            findings.append(
                Finding(
                    "refit",
                    period,
                    SCORE,
                    "auc",
                    perf["auc"],
                    f"AUC in {period} {perf['auc']:.3f} [{perf['auc_lower']:.3f}, "
                    f"{perf['auc_upper']:.3f}] fell below the reference {ref_auc:.3f} "
                    f"[{ref_lo:.3f}, {ref_hi:.3f}]",
                )
            )
        cal_off = (
            not math.isnan(perf["observed_lower"])
            and judged
            and not perf["observed_lower"] <= perf["mean_predicted"] <= perf["observed_upper"]
        )
        if cal_off:
            findings.append(
                Finding(
                    "watch",
                    period,
                    SCORE,
                    "calibration",
                    perf["observed"],
                    f"in {period} {perf['observed']:.1%} had the outcome where the probability "
                    f"map predicted {perf['mean_predicted']:.1%}",
                )
            )
        perf_rows.append(perf)

    drift = pl.DataFrame(
        drift_rows,
        schema={
            "period": pl.String,
            "variable": pl.String,
            "column": pl.String,
            "rows": pl.Int64,
            "psi": pl.Float64,
            "na_share": pl.Float64,
            "ref_na_share": pl.Float64,
            "na_change": pl.Float64,
            "status": pl.String,
        },
    )
    performance = pl.DataFrame(
        perf_rows,
        schema={
            "period": pl.String,
            "period_start": pl.Date,
            "period_end": pl.Date,
            "rows": pl.Int64,
            "accounts": pl.Int64,
            "labelled_rows": pl.Int64,
            "events": pl.Int64,
            "auc": pl.Float64,
            "auc_lower": pl.Float64,
            "auc_upper": pl.Float64,
            "ref_auc": pl.Float64,
            "ref_auc_lower": pl.Float64,
            "ref_auc_upper": pl.Float64,
            "mean_predicted": pl.Float64,
            "observed": pl.Float64,
            "observed_lower": pl.Float64,
            "observed_upper": pl.Float64,
            "ece": pl.Float64,
            "auc_below_reference": pl.Boolean,
        },
    )
    if events is not None and performance["auc"].is_nan().all():
        notes.append(
            f"no period has labelled rows: {outcome} within {horizon_words(horizon)} needs snapshots "
            "at least a horizon before the end of the data"
        )
    return Monitoring(
        model_name=model.name,
        model_version=model.version,
        model_hash=model.hash,
        outcome=outcome,
        horizon=horizon,
        by=by,
        reference=reference,
        drift=drift,
        performance=performance,
        findings=findings,
        notes=notes,
        min_rows=min_rows,
    )


def _probability_map(model: ScoreModel, outcome: str, horizon: str, notes: list[str]) -> ProbabilityMap | None:
    """The model's frozen probability map when it reads the same outcome and horizon, else None."""
    if not model.probability:
        return None
    pm = ProbabilityMap.from_dict(model.probability)
    if pm.outcome != outcome or parse_horizon(pm.horizon) != horizon:
        notes.append(f"the probability map is for {pm.outcome} within {pm.horizon}: calibration not checked")
        return None
    return pm


def _calibration(part: pl.DataFrame, pmap: ProbabilityMap | None, confidence: float) -> dict[str, float]:
    """Mean predicted probability, observed rate with its Wilson interval, and ECE on labelled rows."""
    nan = float("nan")
    out = {"mean_predicted": nan, "observed": nan, "observed_lower": nan, "observed_upper": nan, "ece": nan}
    if pmap is None:
        return out
    lab = part.filter(pl.col("_label").is_not_null() & pl.col("score").is_not_null())
    if lab.is_empty():
        return out
    y = lab["_label"].cast(pl.Float64).to_numpy()
    p = pmap.predict(lab["score"])
    lo, hi = proportion_confint(y.sum(), y.size, alpha=1.0 - confidence, method="wilson")
    return {
        "mean_predicted": float(p.mean()),
        "observed": float(y.mean()),
        "observed_lower": float(lo),
        "observed_upper": float(hi),
        "ece": expected_calibration_error(y, p),
    }
