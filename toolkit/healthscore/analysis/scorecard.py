"""One account's scorecard content as tidy frames (:class:`Scorecard`), peer figures, and the
cached readers a warm kernel uses to render many accounts. ``render.scorecard`` turns it into HTML.

A scorecard is built for one audience. The customer version holds only what the model marks
``audience = "customer"`` (metrics, categories, actions, account fields), in the customer's words,
and no model hash or variant name; the internal version holds everything. Values stay numbers
here: ``render`` formats them.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from healthscore.analysis.alerts import AlertError, alert_history
from healthscore.core.scoring import ScoresError, score
from healthscore.datasets.portfolio import load_sample
from healthscore.io.tables import _cached_table as _cached_table  # the readers moved to io; kept importable here
from healthscore.io.tables import load_scores as load_scores
from healthscore.results import Summary
from healthscore.spec.model import load_model
from healthscore.spec.palette import NA_COLOUR, band_colour, safe_colour

TREND_WEEKS = 26
CHANGE_DAYS = 30  # "since last month": against the snapshot nearest 30 days earlier
MIN_COHORT = 5  # fewer peers than this and percentiles would point at individuals
NOT_APPLICABLE = "not applicable"
MAX_ACTIONS = 3  # next steps shown, those that would recover the most points first
# account columns an internal view shows when the data holds them (CONTRACTS: snapshot attributes)
ACCOUNT_COLUMNS: dict[str, tuple[str, str]] = {
    "csm": ("CSM", "text"),
    "arr": ("ARR", "money"),
    "renewal_date": ("Renewal date", "date"),
}
INDEX_COLUMNS: dict[str, pl.DataType] = {
    "rank": pl.Int64(),
    "account_id": pl.String(),
    "company_name": pl.String(),
    "as_of": pl.Date(),
    "band": pl.String(),
    "score": pl.Float64(),
    "score_change": pl.Float64(),
    "csm": pl.String(),
    "arr": pl.Float64(),
    "renewal_date": pl.Date(),
    "days_to_renewal": pl.Int64(),
}
ALERT_HISTORY_COLUMNS: dict[str, pl.DataType] = {
    "fired_at": pl.Date(),
    "rule": pl.String(),
    "severity": pl.String(),
    "owner": pl.String(),
    "action": pl.String(),
    "status": pl.String(),
    "resolved_on": pl.Date(),
}
OVERRIDE_COLUMNS: dict[str, pl.DataType] = {
    "from_date": pl.Date(),
    "to_date": pl.Date(),
    "target": pl.String(),
    "value": pl.Float64(),
    "computed_score": pl.Float64(),
    "reason": pl.String(),
    "author": pl.String(),
}
JOINT_OWNER = "your team with your CSM"  # who does a step whose metric names no action_owner


def _recoverable_points(model: Any, cur: dict[str, Any]) -> dict[str, float]:
    """Points each metric would add to the score at a sub-score of 100: its effective weight (the
    model's base weights, renormalised over the metrics present, as scoring does) times its gap."""
    present = [m for m in model.metrics if cur.get(f"sub_{m.name}") is not None]
    in_cat: dict[str, float] = {}
    for m in present:
        in_cat[m.category] = in_cat.get(m.category, 0.0) + m.weight
    cat_w = {c: getattr(model.categories.get(c), "weight", 1.0) for c in in_cat if in_cat[c] > 0}
    total = sum(cat_w.values())
    return {
        m.name: (cat_w[m.category] / total) * (m.weight / in_cat[m.category]) * (100 - cur[f"sub_{m.name}"])
        for m in present
        if total > 0 and m.category in cat_w
    }


@dataclass
class Scorecard:
    """The content of one account's scorecard as tidy frames; ``scorecard_sections`` renders it.

    Frames: ``trend`` (as_of, score, band), ``categories`` (category, label, score, band, colour),
    ``metrics`` (metric, label, category, raw, method, unit, sub_score, description, status, colour),
    ``changes`` (metric, label, points), ``peers`` (measure, label, percentile, cohort_median) or
    None when the cohort is too small, ``actions`` (metric, label, action, owner, points: what reaching 100 would add; at most
    ``MAX_ACTIONS``, most points first). ``fields`` are the
    account fields shown (label, value, format). ``audience`` is ``customer`` or ``internal``; a
    customer scorecard has no ``model_hash``, ``variant`` or ``null_reason`` (``report_id`` names
    it), and ``internal_fields`` is None.

    Internal only (None on a customer scorecard): ``probability_interval`` (lower, upper,
    confidence) of the outcome probability in ``internal_fields``; ``alert_history`` (one row per
    alert fired for this account up to ``as_of``, newest first: fired_at, rule, severity, owner,
    action, status ``open`` or ``resolved``, resolved_on), with ``alert_note`` saying why it is
    None when the rules could not run; ``overrides`` (from_date, to_date, target, value,
    computed_score, reason, author: each manual override applied to the score).
    """

    account_id: str
    company_name: str
    as_of: dt.date
    score: float | None
    band: str | None
    band_colour: str
    band_meaning: str
    coverage: float | None
    null_reason: str | None
    previous_score: float | None
    previous_as_of: dt.date | None
    trend: pl.DataFrame
    categories: pl.DataFrame
    metrics: pl.DataFrame
    changes: pl.DataFrame
    peers: pl.DataFrame | None
    peer_cohort: str | None
    peer_size: int
    actions: pl.DataFrame
    model_name: str
    model_version: str
    model_hash: str
    variant: str | None
    bands: list[tuple[str, float, float, str, str]]
    audience: str = "customer"
    report_id: str = ""
    fields: list[tuple[str, Any, str]] = field(default_factory=list)
    internal_fields: list[tuple[str, Any, str]] | None = field(default=None)
    probability_interval: tuple[float, float, float] | None = None
    alert_history: pl.DataFrame | None = None
    alert_note: str = ""
    overrides: pl.DataFrame | None = None

    @property
    def internal(self) -> dict[str, Any] | None:
        """The internal-only fields by label (None on a customer scorecard)."""
        return None if self.internal_fields is None else {k: v for k, v, _ in self.internal_fields}

    def summary(self) -> Summary:
        """A few readable lines: who, when, score and band, what pulls it down."""
        score = "no score" if self.score is None else f"{self.score:.0f}/100 ({self.band})"
        lines = [f"{self.company_name} ({self.account_id}) on {self.as_of}: {score}"]
        reds = self.actions["label"].to_list()
        if reds:
            lines.append("red metrics: " + ", ".join(reds))
        if self.peers is not None:
            lines.append(f"peer cohort {self.peer_cohort}: {self.peer_size} accounts")
        if self.audience == "internal":
            lines.append(f"model {self.model_name} v{self.model_version} ({self.model_hash})")
        else:
            lines.append(f"customer scorecard, report {self.report_id}")
        return Summary("\n".join(lines))


@functools.lru_cache(maxsize=4)
def _cached_model(path: str, mtime_ns: int) -> Any:
    return load_model(path)


@functools.lru_cache(maxsize=2)
def _cached_sample_scores(path: str, mtime_ns: int) -> pl.DataFrame:
    return score(load_sample().snapshots, _cached_model(path, mtime_ns))


def sample_scores(model: str | os.PathLike[str]) -> pl.DataFrame:
    """The bundled sample portfolio scored with the model file ``model`` (about a second; cached per
    file version): what the scorecard notebook shows when it is opened without a score file.

    >>> from healthscore import resources
    >>> sample_scores(resources.sample_model()).filter(pl.col("account_id") == "A00001")["band"].drop_nulls().len() > 0
    True
    """
    p = Path(model)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such model file")
    return _cached_sample_scores(str(p.resolve()), p.stat().st_mtime_ns)


def load_scorecard_model(path: str | os.PathLike[str]) -> Any:
    """``hs.load_model`` cached per file version (see ``load_scores``)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such model file")
    return _cached_model(str(p.resolve()), p.stat().st_mtime_ns)


def peer_figures(scores: pl.DataFrame, by: str = "segment") -> pl.DataFrame:
    """Each account's percentile within its peer cohort (same ``by`` value, same date), per measure.

    Returns account_id, as_of, cohort, measure (``score`` or ``cat_<name>``), percentile (0..100:
    share of the other peers with a lower value, ties counted half), cohort_size, cohort_median.
    Only aggregates of the cohort: safe to hand to one account's report.

    >>> f = pl.DataFrame({"account_id": list("abcde"), "as_of": [dt.date(2025, 1, 6)] * 5,
    ...                   "segment": ["smb"] * 5, "score": [10.0, 20, 30, 40, 50]})
    >>> peer_figures(f).sort("account_id")["percentile"].to_list()
    [0.0, 25.0, 50.0, 75.0, 100.0]
    """
    if by not in scores.columns:
        raise ValueError(
            f"scores have no column {by!r} to form peer cohorts; choose one of "
            f"{[c for c in scores.columns if scores[c].dtype == pl.String][:8]}"
        )
    measures = ["score"] + sorted(c for c in scores.columns if c.startswith("cat_"))
    long = (
        scores.select("account_id", "as_of", pl.col(by).cast(pl.String).alias("cohort"), *measures)
        .unpivot(index=["account_id", "as_of", "cohort"], on=measures, variable_name="measure")
        .drop_nulls("value")
    )
    grp = ["as_of", "cohort", "measure"]
    n = pl.len().over(grp)
    return (
        long.with_columns(
            percentile=pl.when(n > 1)
            .then((pl.col("value").rank("average").over(grp) - 1) / (n - 1) * 100)
            .otherwise(None),
            cohort_size=n.cast(pl.Int64),
            cohort_median=pl.col("value").median().over(grp),
        )
        .drop("value")
        .sort("account_id", "as_of", "measure")
    )


def _band_table(model: Any) -> list[tuple[str, float, float, str, str]]:
    return [
        (b.name, float(b.lower), float(b.upper), safe_colour(b.colour or _band_colour(b.name)), b.meaning or "")
        for b in sorted(model.bands, key=lambda b: b.lower)
    ]


def _band_colour(name: str | None) -> str:
    return NA_COLOUR if name is None else band_colour(name)


def _label(obj: Any, fallback: str, customer: bool = False) -> str:
    text = (getattr(obj, "customer_label", "") if customer else "") or getattr(obj, "label", None)
    return (text or fallback.replace("_", " ")).strip()


def report_id(model_hash: str, account_id: str, as_of: dt.date, variant: str | None) -> str:
    """A short id naming one scorecard (model, account, date, variant) without revealing them.

    >>> len(report_id("abc", "a1", dt.date(2026, 1, 5), None))
    10
    """
    key = "|".join([str(model_hash), account_id, as_of.isoformat(), str(variant or "")])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:10]


def scorecard_data(
    scores: pl.DataFrame,
    model: Any,
    account_id: str,
    *,
    as_of: dt.date | str | None = None,
    variant: str | None = None,
    internal: bool = False,
    cohort: pl.DataFrame | None = None,
    peer_by: str = "segment",
    probabilities: Any = None,
    snapshots: pl.DataFrame | None = None,
) -> Scorecard:
    """Build one account's :class:`Scorecard` from a score frame (``hs.score`` output) and its model.

    ``as_of`` defaults to the account's latest snapshot; ``cohort`` is a ``peer_figures`` frame
    (computed from ``scores`` when None). Raw metric values come from the score frame when it
    carries the metric columns, else from ``snapshots``. ``probabilities`` (internal only) is a
    fitted ``evaluation.ProbabilityMap`` that reads the score as a probability of the outcome.
    ``internal=False`` builds the customer scorecard: customer-audience content only.
    Raises ``ValueError`` naming the account when it has no rows.

    >>> # see tests/test_scorecards.py for complete examples on a sample portfolio
    """
    account_id = str(account_id)
    rows = scores.filter(pl.col("account_id") == account_id)
    if variant not in (None, "", "default") and "variant" in rows.columns:
        rows = rows.filter(pl.col("variant") == variant)
    if rows.is_empty():
        raise ValueError(
            f"account {account_id!r} has no rows in the scores"
            + (f" for variant {variant!r}" if variant not in (None, "", "default") else "")
            + "; check the account id (see the account_id column of the scores file)"
        )
    rows = rows.sort("as_of")
    repeated = rows.filter(pl.col("as_of").is_duplicated())
    if repeated.height:
        raise ScoresError(
            f"account {account_id!r} has {repeated.height} score rows for as_of "
            f"{repeated['as_of'][0]} (one expected); keep one score row per account and date "
            "(score the snapshots again without the repeats)"
        )
    stamped = rows["model_hash"].drop_nulls().unique().sort().to_list() if "model_hash" in rows.columns else []
    if any(h != model.hash for h in stamped):
        raise ScoresError(
            f"the scores of account {account_id!r} were produced by model hash "
            f"{', '.join(stamped)}, but the model {model.name} {model.version} has hash "
            f"{model.hash}; pass the model that produced the scores, or score again with this one"
        )
    if as_of is not None:
        as_of = dt.date.fromisoformat(as_of) if isinstance(as_of, str) else as_of
        rows = rows.filter(pl.col("as_of") <= as_of)
        if rows.is_empty():
            raise ValueError(f"account {account_id!r} has no snapshot on or before {as_of}")
    cur = rows.row(-1, named=True)
    customer = not internal
    bands = _band_table(model)
    band_info = {b[0]: b for b in bands}

    # trend: this account's last 26 weeks only
    start = cur["as_of"] - dt.timedelta(weeks=TREND_WEEKS)
    trend = rows.filter(pl.col("as_of") > start).select("as_of", "score", "band")

    # categories (in model order)
    shown_cats = {n: c for n, c in model.categories.items() if internal or getattr(c, "audience", "") == "customer"}
    shown_metrics = [m for m in model.metrics if internal or getattr(m, "audience", "") == "customer"]
    cats = []
    for name, cat in shown_cats.items():
        col = f"cat_{name}"
        if col in rows.columns:
            cats.append({"category": name, "label": _label(cat, name, customer), "score": cur[col]})
    categories = pl.DataFrame(cats, schema={"category": pl.String, "label": pl.String, "score": pl.Float64})
    categories = categories.with_columns(band=model.band_of(pl.col("score")))

    # metrics: raw value (from the scores or the snapshots), sub-score, status
    raw_row = dict(cur)
    if snapshots is not None:
        snap = snapshots.filter((pl.col("account_id") == account_id) & (pl.col("as_of") == cur["as_of"]))
        if snap.height:
            raw_row = snap.row(0, named=True) | {k: v for k, v in cur.items() if k not in snap.columns}
    mrows = []
    for m in shown_metrics:
        col = f"sub_{m.name}"
        value = raw_row.get(m.column)
        raw = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        # a level's own text (a categorical or yes/no column) is shown as written, with its label if any
        level = _level_text(value, m) if isinstance(value, (str, bool)) or m.method == "categorical" else None
        if customer:
            label, description, action = m.customer_text()
        else:
            label, description, action = _label(m, m.name), m.description or "", m.action or ""
        cat = shown_cats.get(m.category)
        mrows.append(
            {
                "metric": m.name,
                "label": label,
                "category": _label(cat, m.category, customer) if cat is not None else "",
                "raw": raw,
                "level": level,
                "method": m.method,
                "unit": getattr(m, "unit", "") or "",
                "sub_score": cur.get(col),
                "description": description,
                "action": action,
                "owner": m.action_owner or JOINT_OWNER,
            }
        )
    metrics = pl.DataFrame(
        mrows,
        schema={
            "metric": pl.String,
            "label": pl.String,
            "category": pl.String,
            "raw": pl.Float64,
            "level": pl.String,
            "method": pl.String,
            "unit": pl.String,
            "sub_score": pl.Float64,
            "description": pl.String,
            "action": pl.String,
            "owner": pl.String,
        },
    )
    metrics = metrics.with_columns(status=model.band_of(pl.col("sub_score")).fill_null(NOT_APPLICABLE))
    colours = {name: colour for name, _, _, colour, _ in bands} | {NOT_APPLICABLE: NA_COLOUR}
    metrics = metrics.with_columns(colour=pl.col("status").replace_strict(colours, default=NA_COLOUR))
    categories = categories.with_columns(
        colour=pl.col("band").replace_strict(colours, default=NA_COLOUR).fill_null(NA_COLOUR)
    )

    # what changed: drivers of the score change summed over the last few snapshots
    prev_rows = rows.filter(pl.col("as_of") < cur["as_of"])
    if prev_rows.height:
        # the snapshot nearest CHANGE_DAYS before the current one, whatever the cadence
        target = cur["as_of"] - dt.timedelta(days=CHANGE_DAYS)
        gap = (pl.col("as_of") - pl.lit(target)).dt.total_days().abs()
        base = prev_rows.with_columns(_gap=gap).sort("_gap", "as_of", descending=[False, True])["as_of"][0]
        prev_rows = prev_rows.filter(pl.col("as_of") <= base)
    recent = rows.filter(pl.col("as_of") > (prev_rows["as_of"].max() if prev_rows.height else dt.date.min))
    previous = prev_rows.row(-1, named=True) if prev_rows.height else None
    drv = [f"drvchg_{m.name}" for m in shown_metrics if f"drvchg_{m.name}" in rows.columns]
    labels = dict(zip(metrics["metric"], metrics["label"]))
    changes = (
        (
            recent.select(pl.col(drv).fill_null(0).sum())
            .unpivot(variable_name="metric", value_name="points")
            .with_columns(pl.col("metric").str.strip_prefix("drvchg_"))
            .with_columns(label=pl.col("metric").replace_strict(labels, default=None))
            .filter(pl.col("points").abs() >= 0.05)
            .sort(pl.col("points").abs(), "metric", descending=[True, False])
            .select("metric", "label", "points")
        )
        if (drv and previous is not None)
        else pl.DataFrame(schema={"metric": pl.String, "label": pl.String, "points": pl.Float64})
    )

    # peers: anonymised percentiles, only for a cohort of MIN_COHORT or more
    peers, peer_cohort, peer_size = None, None, 0
    if peer_by in rows.columns:
        figs = cohort if cohort is not None else peer_figures(scores, by=peer_by)
        mine = figs.filter((pl.col("account_id") == account_id) & (pl.col("as_of") == cur["as_of"]))
        size_row = mine.filter(pl.col("measure") == "score")
        peer_cohort = cur[peer_by]
        peer_size = int(size_row["cohort_size"][0]) if size_row.height else 0
        if peer_size >= MIN_COHORT:
            cat_labels = {f"cat_{n}": _label(c, n, customer) for n, c in shown_cats.items()}
            order = {m: i for i, m in enumerate(["score", *cat_labels])}  # overall first, then model order
            peers = (
                mine.filter(pl.col("cohort_size") >= MIN_COHORT)
                .with_columns(
                    label=pl.col("measure").replace_strict({"score": "Overall score"} | cat_labels, default=None),
                    order=pl.col("measure").replace_strict(order, default=len(order)),
                )
                .drop_nulls("label")
                .sort("order")
                .select("measure", "label", "percentile", "cohort_median")
            )

    reds = {b[0] for b in bands[:1]}  # the lowest band is the one that asks for action
    gain = _recoverable_points(model, cur)
    actions = (
        metrics.filter(pl.col("status").is_in(list(reds)) & (pl.col("action") != ""))
        .with_columns(points=pl.col("metric").replace_strict(gain, default=0.0, return_dtype=pl.Float64))
        .sort("points", "metric", descending=[True, False])
        .head(MAX_ACTIONS)
        .select("metric", "label", "action", "owner", "points")
    )

    fields: list[tuple[str, Any, str]] = []
    internal_fields: list[tuple[str, Any, str]] | None = [] if internal else None
    for f in getattr(model, "fields", []):
        if f.column not in rows.columns:
            continue
        if f.audience == "customer":
            label = (f.customer_label if customer else "") or f.label or f.column.replace("_", " ")
            fields.append((label, cur.get(f.column), f.format))
        elif internal_fields is not None:
            internal_fields.append((f.label or f.column.replace("_", " "), cur.get(f.column), f.format))
    probability_interval = None
    alerts_fired, alert_note, overrides = None, "", None
    if internal_fields is not None:
        shown_columns = {f.column for f in getattr(model, "fields", [])}
        for column, (label, kind) in ACCOUNT_COLUMNS.items():
            if column in rows.columns and column not in shown_columns:
                internal_fields.append((label, cur.get(column), kind))
        renewal = _as_date(cur.get("renewal_date"))
        if renewal is not None:
            internal_fields.append(("Days to renewal", (renewal - cur["as_of"]).days, "count"))
        if probabilities is not None and cur.get("score") is not None:
            outcome = getattr(probabilities, "outcome", "churned").replace("churned", "churn")
            key = f"{outcome.capitalize()} probability ({getattr(probabilities, 'horizon', '')})"
            internal_fields.append((key, float(probabilities.predict([cur["score"]])[0]), "percent"))
            lower, upper = (float(v[0]) for v in probabilities.predict_interval([cur["score"]]))
            if not (math.isnan(lower) or math.isnan(upper)):
                confidence = float(getattr(probabilities, "confidence", 0.95))
                probability_interval = (lower, upper, confidence)
                internal_fields.append((f"{key}, {confidence:.0%} interval", (lower, upper), "percent_range"))
        account_snaps = snapshots.filter(pl.col("account_id") == account_id) if snapshots is not None else None
        try:
            alerts_fired = account_alert_history(rows, model, snapshots=account_snaps)
        except AlertError as exc:
            alert_note = f"The alert rules could not run on this account's data: {exc}"
        if not getattr(model, "alerts", None):
            alert_note = "The health model has no alert rules."
        overrides = override_history(rows)

    band = cur.get("band")
    model_hash = str(cur.get("model_hash") or model.hash)
    return Scorecard(
        account_id=account_id,
        company_name=str(cur.get("company_name") or account_id),
        as_of=cur["as_of"],
        score=cur.get("score"),
        band=band,
        band_colour=band_info[band][3] if band in band_info else _band_colour(band),
        band_meaning=band_info[band][4] if band in band_info else "",
        # the reason names the missing metrics, some of them internal
        coverage=cur.get("coverage"),
        null_reason=cur.get("null_reason") if internal else None,
        previous_score=previous.get("score") if previous else None,
        previous_as_of=previous["as_of"] if previous else None,
        trend=trend,
        categories=categories,
        metrics=metrics.drop("action", "owner"),
        changes=changes,
        peers=peers,
        peer_cohort=peer_cohort,
        peer_size=peer_size,
        actions=actions,
        model_name=str(cur.get("model_name") or model.name) if internal else "",
        model_version=str(cur.get("model_version") or model.version) if internal else "",
        model_hash=model_hash if internal else "",
        variant=cur.get("variant") if internal else None,
        bands=bands,
        audience="internal" if internal else "customer",
        report_id=report_id(model_hash, account_id, cur["as_of"], cur.get("variant")),
        fields=fields,
        internal_fields=internal_fields,
        probability_interval=probability_interval,
        alert_history=alerts_fired,
        alert_note=alert_note,
        overrides=overrides,
    )


def _level_text(value: Any, metric: Any) -> str:
    """A categorical or yes/no value as text: the level's label from the model when it has one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    labels = (metric.params or {}).get("labels") or {}
    key = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    return str(labels.get(key, key))


def _as_date(value: Any) -> dt.date | None:
    """A date from a date, datetime or ISO text; None when it is none of those."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip()[:10])
        except ValueError:
            return None
    return None


def account_alert_history(rows: pl.DataFrame, model: Any, *, snapshots: pl.DataFrame | None = None) -> pl.DataFrame:
    """The alerts the model's ``[[alerts]]`` rules fired for the accounts in ``rows`` (a score
    history, usually one account's up to the scorecard date), newest first: fired_at, rule,
    severity, owner, action, status (``open`` or ``resolved``), resolved_on.

    Rules that read data columns the scores lack take them from ``snapshots``; when neither has
    them :class:`healthscore.analysis.alerts.AlertError` says which.

    >>> from healthscore.spec.model import ScoreModel, Metric, Category, Band, DEFAULT_BANDS
    >>> from healthscore.spec.alerts import AlertRule
    >>> rule = AlertRule("entered_red", "enters_band", "high", "CSM", "Call them.", band="red")
    >>> model = ScoreModel("m", "1", [Metric("a", "a", "u", params={"points": [[0, 0], [1, 100]]})],
    ...                    {"u": Category("u")}, [Band(*b[:3]) for b in DEFAULT_BANDS], alerts=[rule])
    >>> weeks = [dt.date(2026, 1, 5) + dt.timedelta(weeks=k) for k in range(4)]
    >>> rows = pl.DataFrame({"account_id": ["A1"] * 4, "as_of": weeks, "score": [55.0, 35.0, 30.0, 60.0]})
    >>> account_alert_history(rows, model).select("fired_at", "rule", "status", "resolved_on").rows()
    [(datetime.date(2026, 1, 12), 'entered_red', 'resolved', datetime.date(2026, 1, 26))]
    """
    if not getattr(model, "alerts", None) or rows.is_empty():
        return pl.DataFrame(schema=ALERT_HISTORY_COLUMNS)
    history = alert_history(rows, model, snapshots=snapshots)
    if history.is_empty():
        return pl.DataFrame(schema=ALERT_HISTORY_COLUMNS)
    last = history.sort("alert_id", "as_of").group_by("alert_id").last()
    return (
        last.with_columns(
            status=pl.when(pl.col("status") == "resolved").then(pl.lit("resolved")).otherwise(pl.lit("open")),
            resolved_on=pl.when(pl.col("status") == "resolved").then(pl.col("as_of")).otherwise(None),
        )
        .select(list(ALERT_HISTORY_COLUMNS))
        .cast(ALERT_HISTORY_COLUMNS)
        .sort(["fired_at", "severity", "rule"], descending=[True, False, False])
    )


def override_history(rows: pl.DataFrame) -> pl.DataFrame:
    """The manual overrides applied to an account's scores (the ``override_*`` audit columns of
    the score frame): one row per distinct override, with the first and last date it applied,
    newest first. Empty when the scores carry no override.

    >>> rows = pl.DataFrame({"as_of": [dt.date(2026, 1, 5), dt.date(2026, 1, 12), dt.date(2026, 1, 19)],
    ...     "override_target": [None, "overall", "overall"], "override_value": [None, 20.0, 20.0],
    ...     "override_computed_score": [None, 64.0, 61.0], "override_reason": [None, "lost sponsor"] * 1 + ["lost sponsor"],
    ...     "override_author": [None, "kim", "kim"]})
    >>> override_history(rows).select("from_date", "to_date", "target", "value", "author").rows()
    [(datetime.date(2026, 1, 12), datetime.date(2026, 1, 19), 'overall', 20.0, 'kim')]
    """
    if "override_target" not in rows.columns:
        return pl.DataFrame(schema=OVERRIDE_COLUMNS)
    source = {
        "value": "override_value",
        "computed_score": "override_computed_score",
        "reason": "override_reason",
        "author": "override_author",
    }
    applied = rows.filter(pl.col("override_target").is_not_null()).select(
        "as_of",
        pl.col("override_target").cast(pl.String).alias("target"),
        *[
            (pl.col(col) if col in rows.columns else pl.lit(None)).cast(OVERRIDE_COLUMNS[name]).alias(name)
            for name, col in source.items()
        ],
    )
    if applied.is_empty():
        return pl.DataFrame(schema=OVERRIDE_COLUMNS)
    key = ["target", "value", "reason", "author"]
    return (
        applied.sort("as_of")
        .group_by(key, maintain_order=True)
        .agg(
            from_date=pl.col("as_of").first(),
            to_date=pl.col("as_of").last(),
            computed_score=pl.col("computed_score").last(),
        )
        .select(list(OVERRIDE_COLUMNS))
        .cast(OVERRIDE_COLUMNS)
        .sort("from_date", "target", descending=[True, False])
    )


def accounts_by_risk(
    scores: pl.DataFrame,
    model: Any,
    *,
    accounts: list[str] | None = None,
    as_of: dt.date | str | None = None,
) -> pl.DataFrame:
    """Each account's latest score row (on or before ``as_of``), riskiest first, for an internal
    list of accounts: the band (worst first, in the model's band order), then the score change
    since the previous score (biggest fall first), then ARR (largest first), then days to renewal
    (soonest first); blanks go last at every step, and the account id breaks the remaining ties.

    Columns: rank, account_id, company_name, as_of, band, score, score_change, csm, arr,
    renewal_date, days_to_renewal. A column the scores do not hold (``csm``, ``arr``,
    ``renewal_date``, ``company_name``) is null, never an error.

    >>> from healthscore.spec.model import ScoreModel, Metric, Category, Band, DEFAULT_BANDS
    >>> model = ScoreModel("m", "1", [Metric("a", "a", "u", params={"points": [[0, 0], [1, 100]]})],
    ...                    {"u": Category("u")}, [Band(*b[:3]) for b in DEFAULT_BANDS])
    >>> d0, d1 = dt.date(2026, 1, 5), dt.date(2026, 1, 12)
    >>> scores = pl.DataFrame({"account_id": ["g", "g", "r1", "r1", "r2", "r2"], "as_of": [d0, d1] * 3,
    ...     "score": [80.0, 75.0, 30.0, 35.0, 38.0, 20.0], "band": ["green", "green", "red", "red", "red", "red"]})
    >>> accounts_by_risk(scores, model).select("rank", "account_id", "score_change").rows()
    [(1, 'r2', -18.0), (2, 'r1', 5.0), (3, 'g', -5.0)]
    """
    frame = scores
    if accounts is not None:
        frame = frame.filter(pl.col("account_id").is_in(list(accounts)))
    if as_of is not None:
        day = dt.date.fromisoformat(as_of) if isinstance(as_of, str) else as_of
        frame = frame.filter(pl.col("as_of") <= day)
    change = (
        pl.col("score_change_1")
        if "score_change_1" in frame.columns
        else pl.col("score") - pl.col("score").shift(1).over("account_id", order_by="as_of")
    )

    def column(name: str) -> pl.Expr:
        if name not in frame.columns:
            return pl.lit(None, INDEX_COLUMNS[name]).alias(name)
        return pl.col(name).cast(INDEX_COLUMNS[name], strict=False).alias(name)

    renewal = pl.col("renewal_date")
    if "renewal_date" in frame.columns and frame.schema["renewal_date"] == pl.String:
        renewal = renewal.str.strip_chars().str.slice(0, 10).str.to_date(strict=False)
    latest = (
        frame.sort("account_id", "as_of")
        .with_columns(score_change=change.cast(pl.Float64))
        .group_by("account_id", maintain_order=True)
        .last()
        .select(
            pl.col("account_id").cast(pl.String),
            column("company_name"),
            pl.col("as_of"),
            column("band"),
            column("score"),
            pl.col("score_change"),
            column("csm"),
            column("arr"),
            (renewal.cast(pl.Date, strict=False) if "renewal_date" in frame.columns else column("renewal_date")).alias(
                "renewal_date"
            ),
        )
    )
    latest = latest.with_columns(
        days_to_renewal=(pl.col("renewal_date") - pl.col("as_of")).dt.total_days(),
        rank=pl.lit(None, pl.Int64),
    )
    return order_by_risk(latest.select(list(INDEX_COLUMNS)).cast(INDEX_COLUMNS), model.band_order)


def order_by_risk(rows: pl.DataFrame, band_order: list[str]) -> pl.DataFrame:
    """``rows`` (the columns of :func:`accounts_by_risk`) sorted riskiest first and ranked from 1:
    band in ``band_order`` (worst first; a band the model does not know comes after the known
    ones, no band last), then score change (biggest fall first), ARR (largest first), days to
    renewal (soonest first), account id; blanks last at every step.

    >>> rows = pl.DataFrame({"account_id": ["a", "b", "c", "d"], "band": ["green", None, "red", "red"],
    ...     "score_change": [-9.0, -20.0, 2.0, 2.0], "arr": [1.0, 1.0, 5.0, None], "days_to_renewal": [1, 1, 9, 1]})
    >>> order_by_risk(rows, ["red", "yellow", "green"]).select("rank", "account_id").rows()
    [(1, 'c'), (2, 'd'), (3, 'a'), (4, 'b')]
    """
    order = {name: i for i, name in enumerate(band_order)}
    keys = {"score_change": pl.Float64, "arr": pl.Float64, "days_to_renewal": pl.Int64}
    frame = rows.with_columns(
        [pl.lit(None, dtype).alias(c) for c, dtype in keys.items() if c not in rows.columns]
        + [pl.lit(None, pl.String).alias("band")] * ("band" not in rows.columns)
    )
    rank = (
        pl.when(pl.col("band").is_null())
        .then(None)
        .otherwise(pl.col("band").replace_strict(order, default=len(order), return_dtype=pl.Int64))
    )
    ordered = (
        frame.with_columns(_band_rank=rank)
        .sort(
            ["_band_rank", "score_change", "arr", "days_to_renewal", "account_id"],
            descending=[False, False, True, False, False],
            nulls_last=True,
        )
        .drop("_band_rank")
        .with_columns(rank=pl.int_range(1, pl.len() + 1, dtype=pl.Int64))
    )
    return ordered.select(["rank", *[c for c in ordered.columns if c != "rank"]])
