"""The score model: a health-score definition kept in a TOML file under version control.

A model says which raw signals count, how each is calibrated to a 0..100 sub-score, how the
sub-scores are weighted within categories and across them, which bands the score falls into,
how much of the weight must be present for a score to be shown, and which segment variants
change any of that. ``templates/models/*.toml`` documents the file format with comments.

>>> import healthscore as hs, tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "m.toml"
>>> _ = path.write_text('''
... [model]
... name = "health"
... version = "1.0.0"
... min_coverage = 0.5
... [categories.usage]
... weight = 1
... [[metrics]]
... name = "logins"
... column = "login_days"
... category = "usage"
... method = "thresholds"
... weight = 1
... params = { points = [[0, 0], [5, 100]] }
... ''')
>>> model = hs.load_model(path)
>>> model.name, [m.name for m in model.metrics], [b.name for b in model.bands]
('health', ['logins'], ['red', 'yellow', 'green'])
>>> model.with_weights(metrics={"logins": 2}).hash != model.hash
True
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
import re
import tomllib
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any, cast

import polars as pl
import tomlkit

from healthscore.errors import DataWarning, HealthscoreError
from healthscore.io import files
from healthscore.results import Summary
from healthscore.spec import calibration
from healthscore.spec.alerts import AlertRule, parse_alert_rules
from healthscore.spec.outcomes import (
    Outcome,
    OutcomeError,
    parse_outcomes,
    resolve_outcome,
)
from healthscore.spec.palette import band_colour, parse_colour

DIRECTIONS = ("higher_is_better", "lower_is_better")
DEFAULT_BANDS: tuple[tuple[str, float, float, str, str], ...] = (
    ("red", 0.0, 40.0, "#A6192E", "at risk: act now"),
    ("yellow", 40.0, 70.0, "#B07800", "watch: something is slipping"),
    ("green", 70.0, 100.0, "#0F7B8A", "healthy"),
)
_METRIC_KEYS = {
    "name",
    "column",
    "category",
    "direction",
    "method",
    "params",
    "weight",
    "na_policy",
    "description",
    "action",
    "label",
    "unit",
    "range",
    "audience",
    "action_audience",
    "customer_label",
    "customer_description",
    "customer_action",
    "action_owner",
}
# Weights are relative; beyond this range a sum of weights loses precision or overflows.
MAX_WEIGHT = 1e6
MIN_POSITIVE_WEIGHT = 1e-6
# a stated unit implies the range of the raw values
UNIT_RANGES = {"ratio": (0.0, 1.0), "percent": (0.0, 100.0)}
AUDIENCES = ("customer", "internal")
_CATEGORY_KEYS = {"weight", "label", "audience", "customer_label"}
_FIELD_KEYS = {"label", "audience", "format", "customer_label"}
FIELD_FORMATS = ("text", "money", "date", "percent", "count", "days", "number")
# the account fields a report shows when a model has no [report.fields] table: all internal
DEFAULT_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("csm", "CSM", "text"),
    ("arr", "ARR", "money"),
    ("renewal_date", "Renewal date", "date"),
    ("segment", "Segment", "text"),
    ("lifecycle_stage", "Lifecycle stage", "text"),
)
_MODEL_KEYS = {"name", "version", "description", "min_coverage"}
_DEFINITION_KEYS = {
    "model",
    "categories",
    "metrics",
    "bands",
    "variants",
    "probability",
    "reference",
    "fitted",
    "outcomes",
    "alerts",
    "report",
}
# what a fitted model records about its fit (``[fitted]``); the dates are TOML dates
FITTED_KEYS = (
    "method",
    "outcome",
    "horizon",
    "data_hash",
    "rows",
    "first_as_of",
    "last_as_of",
    "observed_until",
    "fitted_at",
)
_FITTED_DATES = ("first_as_of", "last_as_of", "observed_until", "fitted_at")
_VARIANT_KEYS = {"name", "description", "filter", "weights", "categories", "params", "disabled"}
_BAND_KEYS = {"name", "lower", "upper", "colour", "meaning"}
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ModelError(HealthscoreError, ValueError):
    """A score model (or the way it is applied) is wrong; the message names the file and the key."""


@dataclass(frozen=True)
class Metric:
    """One raw signal and how it becomes a sub-score."""

    name: str
    column: str
    category: str
    direction: str = "higher_is_better"
    method: str = "thresholds"
    params: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0
    na_policy: str = "exclude"
    description: str = ""
    action: str = ""
    label: str = ""
    # what the raw values are ("ratio" 0..1, "percent" 0..100, or free text such as "days") and the
    # range they must fall in; both only check the data (they never change a score)
    unit: str = ""
    value_range: tuple[float, float] | None = None

    # who may read it: "customer" (the customer scorecard) or "internal" (the team only, the default)
    audience: str = "internal"
    action_audience: str = "internal"
    customer_label: str = ""
    customer_description: str = ""
    customer_action: str = ""
    # who does the step, named for the reader of the card (e.g. "your admin with your CSM"); a step
    # without one reads as a joint step of the customer's team and the CSM
    action_owner: str = ""

    @property
    def expected_range(self) -> tuple[float, float] | None:
        """The range raw values should fall in: ``range`` if stated, else the one the unit implies."""
        return self.value_range or UNIT_RANGES.get(self.unit)

    @property
    def for_customer(self) -> bool:
        """Shown on customer scorecards."""
        return self.audience == "customer"

    def customer_text(self) -> tuple[str, str, str]:
        """(label, description, action) in the customer's words; the action is empty unless a
        ``customer_action`` is written or ``action_audience = "customer"``."""
        label = self.customer_label or self.label or self.name.replace("_", " ")
        action = self.customer_action or (self.action if self.action_audience == "customer" else "")
        return label, self.customer_description or self.description, action

    @property
    def na_score(self) -> float | None:
        """The sub-score given when the value is missing (``na_policy = "score:<value>"``), else None."""
        if self.na_policy.startswith("score:"):
            return float(self.na_policy.split(":", 1)[1])
        return None


@dataclass(frozen=True)
class Category:
    """A group of metrics with its own weight (e.g. usage, support, relationship)."""

    name: str
    weight: float = 1.0
    label: str = ""
    audience: str = "internal"
    customer_label: str = ""


@dataclass(frozen=True)
class ReportField:
    """An account attribute a scorecard may show (CSM, ARR, renewal date...), with its audience
    and its display format (one of :data:`FIELD_FORMATS`)."""

    column: str
    label: str = ""
    audience: str = "internal"
    format: str = "text"
    customer_label: str = ""


@dataclass(frozen=True)
class Band:
    """A score range ``lower <= score < upper`` (the top band includes 100)."""

    name: str
    lower: float
    upper: float
    colour: str = ""
    meaning: str = ""


@dataclass(frozen=True)
class Variant:
    """A segment- or stage-specific version of the model, chosen by a filter on account attributes.

    ``filter`` maps an attribute column to the allowed values (all keys must match). ``weights``
    and ``categories`` override weights, ``params`` overrides calibration parameters per metric
    (merged over the base parameters), ``disabled`` lists metrics that do not count in this variant.
    """

    name: str
    filter: dict[str, list[Any]]
    description: str = ""
    weights: dict[str, float] = field(default_factory=dict)
    categories: dict[str, float] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    disabled: list[str] = field(default_factory=list)

    def matches(self) -> pl.Expr:
        """Boolean expression: does a snapshot row belong to this variant?"""
        exprs = [pl.col(col).is_in(list(values)).fill_null(False) for col, values in self.filter.items()]
        return pl.all_horizontal(exprs) if exprs else pl.lit(False)


@dataclass(frozen=True)
class ScoreModel:
    """One score definition (health, churn index, ...). Build it with :func:`load_model`.

    The ``with_*`` methods return new, validated models; :meth:`save` writes the model back into
    the TOML file it came from and changes only what changed there.
    """

    name: str
    version: str
    metrics: list[Metric]
    categories: dict[str, Category]
    bands: list[Band]
    min_coverage: float = 0.0
    description: str = ""
    variants: list[Variant] = field(default_factory=list)
    # score -> probability of the outcome, fitted on training rows by ``evaluation.ProbabilityMap``
    # and frozen here (plain data); it reads a score, never changes one, so the hash leaves it out
    probability: dict[str, Any] | None = None
    # what the score and its metrics looked like when the model was fitted or last checked (period,
    # decile bins and shares, N/A shares, AUC with its interval), written by
    # ``analysis.monitoring.reference_from``; plain data that watches the score, so outside the hash
    reference: dict[str, Any] | None = None
    # what a fitted model was fitted on (``[fitted]``: method, outcome, horizon, data hash, training
    # window, fitting date), written by the fits; plain data about its history, so outside the hash
    fitted: dict[str, Any] | None = None
    # outcomes this model is used with beyond the standard three (``[outcomes.<name>]``)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    # early-warning rules (``[[alerts]]``); they read scores and never change one, so no hash
    alerts: list[AlertRule] = field(default_factory=list)
    # account fields reports may show, with their audience (``[report.fields.<column>]``)
    fields: list[ReportField] = field(
        default_factory=lambda: [ReportField(*f[:2], "internal", f[2]) for f in DEFAULT_FIELDS]
    )
    source: Path | None = field(default=None, compare=False)
    # the TOML text the model was loaded from and where the definition sits in it
    _text: str | None = field(default=None, compare=False, repr=False)
    _prefix: tuple[str, ...] = field(default=(), compare=False, repr=False)

    # ------------------------------------------------------------ identity
    def definition(self) -> dict[str, Any]:
        """The parts of the model that change a score, as plain data (what the hash covers).

        Version, descriptions, labels, actions, audiences, report fields, band colours and meanings
        are left out: editing them never changes a score, so it never changes the hash.
        """
        return cast(
            dict[str, Any],
            _canonical(
                {
                    "name": self.name,
                    "min_coverage": self.min_coverage,
                    "categories": {c.name: c.weight for c in self.categories.values()},
                    "metrics": [
                        {
                            "name": m.name,
                            "column": m.column,
                            "category": m.category,
                            "direction": m.direction,
                            "method": m.method,
                            "params": m.params,
                            "weight": m.weight,
                            "na_policy": m.na_policy,
                        }
                        for m in self.metrics
                    ],
                    "bands": [[b.name, b.lower, b.upper] for b in self.bands],
                    "variants": [
                        {
                            "name": v.name,
                            "filter": v.filter,
                            "weights": v.weights,
                            "categories": v.categories,
                            "params": v.params,
                            "disabled": sorted(v.disabled),
                        }
                        for v in self.variants
                    ],
                }
            ),
        )

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON definition, first 12 hex characters."""
        text = json.dumps(self.definition(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]

    def outcome(self, name: str | Outcome) -> Outcome:
        """The definition of outcome ``name``: the model's own, else one of the standard three."""
        return resolve_outcome(name, self.outcomes)

    def metric(self, name: str) -> Metric:
        """The metric called ``name``."""
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(f"model {self.name!r} has no metric {name!r}; it has {[m.name for m in self.metrics]}")

    @property
    def columns(self) -> list[str]:
        """Snapshot columns the model reads (metric columns and columns named in parameters)."""
        cols: list[str] = []
        for m in self.metrics:
            cols.append(m.column)
            cols += [v for k, v in m.params.items() if k.endswith("_column") and isinstance(v, str)]
        cols += [c for v in self.variants for c in v.filter]
        return list(dict.fromkeys(cols))

    def __str__(self) -> str:
        return self.summary()

    def summary(self) -> Summary:
        """A readable overview: categories, metrics with weights and methods, bands, variants."""
        lines = [f"score model {self.name!r} version {self.version} (hash {self.hash})"]
        if self.description:
            lines.append(f"  {self.description}")
        lines.append(f"  minimum coverage {self.min_coverage:.0%}")
        total = sum(c.weight for c in self.categories.values()) or 1.0
        for cat in self.categories.values():
            lines.append(f"  {cat.name} ({cat.weight / total:.0%} of the score)")
            for m in (m for m in self.metrics if m.category == cat.name):
                arrow = "+" if m.direction == "higher_is_better" else "-"
                lines.append(f"    {arrow} {m.name:<24} weight {m.weight:<6g} {m.method}")
        lines.append("  bands: " + ", ".join(f"{b.name} {b.lower:g}-{b.upper:g}" for b in self.bands))
        for v in self.variants:
            lines.append(f"  variant {v.name}: {v.filter}")
        return Summary("\n".join(lines))

    # ------------------------------------------------------------ expressions
    @property
    def band_order(self) -> list[str]:
        """Band names from the lowest score range to the highest (worst to best health)."""
        return [b.name for b in sorted(self.bands, key=lambda b: b.lower)]

    def alarm_band(self, outcome: str | Outcome = "churned") -> str | None:
        """The band whose members are flagged for ``outcome``: 'red' when the model has it, else the
        lowest band; for a favourable outcome (expansion) the highest band."""
        names = self.band_order
        if not names:
            return None
        if self.outcome(outcome).adverse:
            return "red" if "red" in names else names[0]
        return names[-1]

    def _share_parts(self) -> tuple[dict[str, float], float]:
        """Weight per category and the total over categories whose metrics carry weight."""
        in_cat = {c: sum(m.weight for m in self.metrics if m.category == c) for c in self.categories}
        return in_cat, sum(cat.weight for c, cat in self.categories.items() if in_cat[c] > 0)

    def nominal_shares(self) -> dict[str, float]:
        """Each metric's fraction of the overall score when every metric is present (0 to 1), in the
        order of operations the scoring engines use.

        The one rule for turning category and metric weights into shares: a category whose metrics
        carry no weight drops out, so the shares of a model with any weight add up to 1.

        >>> m = ScoreModel("m", "1", [Metric("a", "a", "x", weight=1), Metric("b", "b", "y", weight=0)],
        ...                {"x": Category(1.0), "y": Category(3.0)}, [Band(*b[:3]) for b in DEFAULT_BANDS])
        >>> m.nominal_shares(), m.weight_shares()
        ({'a': 1.0, 'b': 0.0}, {'a': 100.0, 'b': 0.0})
        """
        in_cat, total = self._share_parts()
        return {
            m.name: self.categories[m.category].weight / total * m.weight / in_cat[m.category]
            if total > 0 and in_cat[m.category] > 0
            else 0.0
            for m in self.metrics
        }

    def weight_shares(self) -> dict[str, float]:
        """The same shares in percent, for the fit, the tuner and the reports. The metric's part of its
        category comes first, so a category's only metric shows its category's share to the last bit
        whatever its own weight."""
        in_cat, total = self._share_parts()
        return {
            m.name: 100.0 * (m.weight / in_cat[m.category]) * self.categories[m.category].weight / total
            if total > 0 and in_cat[m.category] > 0
            else 0.0
            for m in self.metrics
        }

    def band_of(self, score: pl.Expr | str) -> pl.Expr:
        """Band name of a score expression (null stays null).

        >>> import polars as pl
        >>> m = ScoreModel("m", "1", [], {}, [Band(*b[:3]) for b in DEFAULT_BANDS])
        >>> pl.select(m.band_of(pl.lit(70.0))).item()
        'green'
        """
        expr = pl.col(score) if isinstance(score, str) else score
        chain: Any = pl.when(expr.is_null()).then(pl.lit(None, dtype=pl.String))
        for band in self.bands[:-1]:
            chain = chain.when(expr < band.upper).then(pl.lit(band.name))
        return chain.otherwise(pl.lit(self.bands[-1].name)) if self.bands else pl.lit(None, dtype=pl.String)

    def in_band(self, score: pl.Expr | str, band: str) -> pl.Expr:
        """Is the score in ``band``: the same as ``band_of(score) == band`` (null stays null), with
        numeric comparisons only, so it is cheap over long histories.

        >>> import polars as pl
        >>> m = ScoreModel("m", "1", [], {}, [Band(*b[:3]) for b in DEFAULT_BANDS])
        >>> pl.select(m.in_band(pl.Series([10.0, 40.0, None]), "red")).to_series().to_list()
        [True, False, None]
        """
        expr = pl.col(score) if isinstance(score, str) else score
        names = [b.name for b in self.bands]
        if band not in names:
            return pl.when(expr.is_null()).then(pl.lit(None, pl.Boolean)).otherwise(pl.lit(False))
        k = names.index(band)
        # band_of picks the first band whose upper bound the score is below (the last band otherwise)
        below_earlier = [expr < b.upper for b in self.bands[:k]]
        out = ~pl.any_horizontal(below_earlier) if below_earlier else pl.lit(True)
        if k < len(self.bands) - 1:
            out = out & (expr < self.bands[k].upper)
        return pl.when(expr.is_null()).then(pl.lit(None, pl.Boolean)).otherwise(out)

    # ------------------------------------------------------------ variants
    def resolve(self, variant: str | None) -> ScoreModel:
        """The model as it applies to accounts of one variant (``None``/"default": the base model).

        Disabled metrics get weight 0; parameter overrides are merged over the base parameters.
        """
        if variant in (None, "default"):
            return replace(self, variants=[])
        v = next((v for v in self.variants if v.name == variant), None)
        if v is None:
            raise KeyError(f"model {self.name!r} has no variant {variant!r}")
        metrics = []
        for m in self.metrics:
            weight = 0.0 if m.name in v.disabled else v.weights.get(m.name, m.weight)
            params = {**m.params, **v.params.get(m.name, {})}
            metrics.append(replace(m, weight=float(weight), params=params))
        cats = {k: replace(c, weight=float(v.categories.get(k, c.weight))) for k, c in self.categories.items()}
        return replace(self, metrics=metrics, categories=cats, variants=[])

    # ------------------------------------------------------------ changes -> new models
    def with_weights(
        self, metrics: Mapping[str, float] | None = None, categories: Mapping[str, float] | None = None
    ) -> ScoreModel:
        """A new model with some metric and/or category weights replaced.

        >>> m = ScoreModel("m", "1", [Metric("a", "a", "u", params={"points": [[0, 0], [1, 100]]})], {"u": Category("u")},
        ...                [Band(*b[:3]) for b in DEFAULT_BANDS])
        >>> m.with_weights(metrics={"a": 3}).metrics[0].weight
        3.0
        """
        metrics, categories = dict(metrics or {}), dict(categories or {})
        unknown = set(metrics) - {m.name for m in self.metrics}
        unknown |= {f"category {c}" for c in set(categories) - set(self.categories)}
        if unknown:
            raise ModelError(f"{self._where()}with_weights: unknown {sorted(unknown)}")
        new = replace(
            self,
            metrics=[replace(m, weight=float(metrics[m.name])) if m.name in metrics else m for m in self.metrics],
            categories={
                k: replace(c, weight=float(categories[k])) if k in categories else c for k, c in self.categories.items()
            },
        )
        new.validate()
        return new

    def with_bands(self, bands: Iterable[Band | Mapping[str, Any]]) -> ScoreModel:
        """A new model with these bands (``Band`` objects or dicts with the same keys)."""
        parsed = [b if isinstance(b, Band) else Band(**dict(b)) for b in bands]
        parsed = [replace(b, lower=float(b.lower), upper=float(b.upper)) for b in parsed]
        new = replace(self, bands=sorted(parsed, key=lambda b: b.lower))
        new.validate()
        return new

    def with_params(self, metric: str, params: Mapping[str, Any]) -> ScoreModel:
        """A new model where ``metric``'s calibration parameters are updated with ``params``."""
        self.metric(metric)
        new = replace(
            self,
            metrics=[
                replace(m, params={**m.params, **_plain(dict(params))}) if m.name == metric else m for m in self.metrics
            ],
        )
        new.validate()
        return new

    def with_min_coverage(self, min_coverage: float) -> ScoreModel:
        """A new model with another minimum coverage (0..1)."""
        new = replace(self, min_coverage=float(min_coverage))
        new.validate()
        return new

    def with_probability_map(self, pmap: Any) -> ScoreModel:
        """A copy with a fitted score-to-probability map frozen in (``ProbabilityMap`` or its
        ``to_dict()``; ``None`` removes it). It is saved as the ``[probability]`` table."""
        data = pmap.to_dict() if hasattr(pmap, "to_dict") else pmap
        return replace(self, probability=None if data is None else _plain(dict(data)))

    def with_reference(self, reference: Mapping[str, Any] | None) -> ScoreModel:
        """A copy with a monitoring reference frozen in (``None`` removes it). It is saved as the
        ``[reference]`` table and, like ``[probability]``, leaves the hash unchanged.

        >>> m = ScoreModel("m", "1", [], {}, [Band(*b[:3]) for b in DEFAULT_BANDS])
        >>> m.with_reference({"outcome": "churned"}).reference, m.with_reference({"a": 1}).hash == m.hash
        ({'outcome': 'churned'}, True)
        """
        return replace(self, reference=None if reference is None else _plain(dict(reference)))

    def with_fitted(self, fitted: Mapping[str, Any] | None) -> ScoreModel:
        """A copy that records what it was fitted on (``None`` removes the record). It is saved as the
        ``[fitted]`` table and, like ``[reference]``, leaves the hash unchanged. Dates may be given
        as ``date`` objects or ISO text; they are kept as dates.

        >>> m = ScoreModel("m", "1", [], {}, [Band(*b[:3]) for b in DEFAULT_BANDS])
        >>> f = m.with_fitted({"method": "weights", "first_as_of": "2024-01-01", "observed_until": "2024-06-30"})
        >>> f.training_window, f.hash == m.hash
        ((datetime.date(2024, 1, 1), datetime.date(2024, 6, 30)), True)
        """
        if fitted is None:
            return replace(self, fitted=None)
        problems = _fitted_problems(fitted)
        if problems:
            raise ModelError("\n".join(f"{self._where()}{p}" for p in problems))
        return replace(self, fitted=_fitted_plain(fitted))

    @property
    def training_window(self) -> tuple[date, date] | None:
        """First snapshot and last day of outcomes the model was fitted on (``[fitted]``), else None.

        The window ends on ``observed_until``: the fit read events up to that day, so any holdout
        that starts on or before it was partly seen.
        """
        f = self.fitted or {}
        first, last = f.get("first_as_of"), f.get("observed_until") or f.get("last_as_of")
        return (first, last) if isinstance(first, date) and isinstance(last, date) else None

    def bump_version(self) -> ScoreModel:
        """A new model whose version's last number is one higher ("1.2.3" -> "1.2.4", "v7" -> "v8")."""
        match = re.search(r"(\d+)(?!.*\d)", self.version)
        version = (
            self.version[: match.start()] + str(int(match.group(1)) + 1) + self.version[match.end() :]
            if match
            else f"{self.version}.1"
        )
        return replace(self, version=version)

    # ------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise :class:`ModelError` listing every problem, each with the file and key path."""
        problems = _problems(self)
        if problems:
            raise ModelError("\n".join(f"{self._where()}{p}" for p in problems))

    def check_columns(self, columns: Iterable[str]) -> None:
        """Raise :class:`ModelError` when a column the model needs is not among ``columns``."""
        have = set(columns)
        problems = []
        for i, m in enumerate(self.metrics, 1):
            if m.column not in have:
                problems.append(f"metrics[{i}] ({m.name}).column: column {m.column!r} is not in the data")
            for k, v in m.params.items():
                if k.endswith("_column") and isinstance(v, str) and v not in have:
                    problems.append(f"metrics[{i}] ({m.name}).params.{k}: column {v!r} is not in the data")
        for i, v in enumerate(self.variants, 1):
            for col in v.filter:
                if col not in have:
                    problems.append(f"variants[{i}] ({v.name}).filter.{col}: attribute {col!r} is not in the data")
        if problems:
            problems.append(f"(the data has columns: {', '.join(sorted(have))})")
            raise ModelError("\n".join(f"{self._where()}{p}" for p in problems))

    def check_data(
        self, data: pl.DataFrame | pl.LazyFrame, *, source: str = "snapshots", warn: bool = True
    ) -> list[str]:
        """Check snapshots against the model before scoring.

        Raises :class:`ModelError` when a column the model reads is missing or holds dates or text
        (a metric must be a number). Returns (and, with ``warn``, issues as
        :class:`~healthscore.errors.DataWarning`) the warnings: raw values outside the metric's
        ``range`` or ``unit``, or a metric whose values look like percentages where its calibration
        points are ratios (0..1).

        >>> import polars as pl
        >>> m = ScoreModel("m", "1", [Metric("u", "u", "c", params={"points": [[0, 0], [1, 100]]}, unit="ratio")],
        ...                {"c": Category("c")}, [Band(*b[:3]) for b in DEFAULT_BANDS])
        >>> print(m.check_data(pl.DataFrame({"u": [50.0, 80.0, 0.5]}), warn=False)[0])  # doctest: +ELLIPSIS
        snapshots: column 'u' (metric u): 2 of 3 values are outside [0, 1] (unit ratio) (seen 0.5 to 80)...
        """
        schema = data.collect_schema() if isinstance(data, pl.LazyFrame) else data.schema
        self.check_columns(schema.names())
        problems: list[str] = []
        numeric: list[Metric] = []
        for i, m in enumerate(self.metrics, 1):
            dtype = schema[m.column]
            at = f"metrics[{i}] ({m.name}).column: column {m.column!r}"
            if m.column in ("account_id", "as_of"):
                problems.append(f"{at} is a key column, not a measurement; point the metric at a numeric column")
            elif dtype.is_temporal():
                problems.append(
                    f"{at} holds dates ({dtype}); a metric needs numbers, e.g. days since that date "
                    "computed in the export"
                )
            elif dtype == pl.String and m.method in ("categorical", "boolean"):
                continue  # levels and yes/no words are text by nature; their calibration reads them
            elif dtype == pl.String:
                if isinstance(data, pl.DataFrame):
                    values = data.get_column(m.column).drop_nulls()
                    if values.len():
                        shown = ", ".join(repr(v) for v in values.unique(maintain_order=True).head(5).to_list())
                        problems.append(
                            f"{at} holds text (values such as {shown}); a metric needs numbers: "
                            "correct the cells, point the metric at a numeric column, or give it "
                            'method = "categorical" (level scores)'
                        )
                else:
                    problems.append(f"{at} holds text; a metric needs numbers")
            elif dtype.is_numeric():
                numeric.append(m)
            elif dtype not in (pl.Boolean, pl.Null):
                problems.append(f"{at} has type {dtype}; a metric needs numbers")
        if problems:
            raise ModelError("\n".join(f"{self._where()}{p}" for p in problems))
        if not isinstance(data, pl.DataFrame) or not numeric:
            return []
        found: list[str] = []
        stats = data.select(
            *[
                pl.struct(
                    pl.col(m.column).count().alias("n"),
                    pl.col(m.column).min().cast(pl.Float64).alias("lo"),
                    pl.col(m.column).max().cast(pl.Float64).alias("hi"),
                    *(
                        [(~pl.col(m.column).is_between(*m.expected_range)).sum().alias("out")]
                        if m.expected_range
                        else []
                    ),
                    (pl.col(m.column) > 1.5).sum().alias("above1"),
                ).alias(m.name)
                for m in numeric
            ]
        ).row(0, named=True)
        for m in numeric:
            st = stats[m.name]
            where = f"{source}: column {m.column!r} (metric {m.name})"
            if m.expected_range and st.get("out"):
                lo, hi = m.expected_range
                unit = f" (unit {m.unit})" if m.unit and not m.value_range else ""
                hint = (
                    ' They look like percentages: divide by 100, or state unit = "percent" and calibrate in percent.'
                    if m.expected_range == (0.0, 1.0) and st["hi"] is not None and st["hi"] <= 100
                    else " Check the export's unit, or correct the model's range."
                )
                found.append(
                    f"{where}: {st['out']} of {st['n']} values are outside [{lo:g}, {hi:g}]{unit} "
                    f"(seen {st['lo']:g} to {st['hi']:g}).{hint}"
                )
            elif (
                not m.expected_range
                and m.method == "thresholds"
                and st["n"]
                and _points_are_ratios(m.params)
                and st["above1"] > st["n"] / 2
            ):
                found.append(
                    f"{where}: {st['above1']} of {st['n']} values are above 1 (seen {st['lo']:g} to "
                    f"{st['hi']:g}) but the calibration points are ratios between 0 and 1, so almost every "
                    "value gets the top sub-score. If the export sends percentages, divide by 100; state "
                    'unit = "ratio" or range = [lo, hi] in the model to check this exactly.'
                )
        if warn:
            for text in found:
                warnings.warn(DataWarning(text), stacklevel=2)
        return found

    def _where(self) -> str:
        where = self.source.name if self.source else f"model {self.name!r}"
        prefix = ".".join(self._prefix)
        return f"{where}: {prefix + '.' if prefix else ''}"

    # ------------------------------------------------------------ fitting
    def fit_calibration(self, snapshots: pl.DataFrame, outcome: pl.Series | str | None = None) -> ScoreModel:
        """Deprecated: use ``hs.fit_calibration(model, snapshots, outcome=...)``; this method goes in
        the next release."""
        warnings.warn(
            "ScoreModel.fit_calibration moved to healthscore.fit_calibration(model, snapshots, "
            "outcome=...); the method goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        # the one-release shim: core sits above spec, so it is looked up at call time
        core = importlib.import_module("healthscore.core.calibration")
        return core.fit_calibration(self, snapshots, outcome=outcome)  # type: ignore[no-any-return]

    # ------------------------------------------------------------ saving
    def to_toml(self) -> str:
        """The model as TOML text (keeping the comments and layout of the file it came from)."""
        if self._text is not None:
            doc = tomlkit.parse(self._text)
        else:
            doc = tomlkit.document()
        _write_into(doc, self)
        return tomlkit.dumps(doc)

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the model to ``path`` (default: the file it came from), atomically.

        When ``path`` is the file the model came from, the file as it is now is edited in place:
        only the values that differ (weights, parameters, bands, coverage, version, ...) change,
        comments and layout stay, and other definitions in the same file are left alone.
        """
        target = Path(path) if path is not None else self.source
        if target is None:
            raise ModelError(f"model {self.name!r} was not loaded from a file: pass save(path)")
        base = self._text
        if target.exists() and self.source is not None and target.resolve() == self.source.resolve():
            base = target.read_text(encoding="utf-8")
        doc = tomlkit.parse(base) if base is not None else tomlkit.document()
        _write_into(doc, self)
        text = tomlkit.dumps(doc)
        files.write_text(target, text)
        object.__setattr__(self, "_text", text)
        return target


# ---------------------------------------------------------------- loading
def load_models(path: str | os.PathLike[str]) -> dict[str, ScoreModel]:
    """Every score definition in a TOML file, by name.

    A file holds one definition (``[model]``, ``[categories.*]``, ``[[metrics]]`` ... at the top)
    or several under ``[models.<name>]`` (``[models.churn.model]``, ``[[models.churn.metrics]]`` ...).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"score model file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(f"{path.name}: not valid TOML: {exc}") from None
    if "models" in data:
        extra = set(data) - {"models"}
        if extra:
            raise ModelError(f"{path.name}: with [models.<name>] tables, put {sorted(extra)} inside each model")
        if not isinstance(data["models"], dict) or not data["models"]:
            raise ModelError(f"{path.name}: models: expected one or more [models.<name>] tables")
        defs: dict[str | None, tuple[tuple[str, ...], Any]] = {
            key: (("models", key), value) for key, value in data["models"].items()
        }
    else:
        defs = {None: ((), data)}
    models: dict[str, ScoreModel] = {}
    for key, (prefix, table) in defs.items():
        model = _parse(table, path, prefix, default_name=key or path.stem, text=text)
        if model.name in models:
            raise ModelError(f"{path.name}: {'.'.join(prefix)}: two definitions are called {model.name!r}")
        models[model.name] = model
    return models


def load_model(path: str | os.PathLike[str], name: str | None = None) -> ScoreModel:
    """One score definition from a TOML file: the first one, or the one called ``name``.

    Raises :class:`ModelError` naming the file and the key for every problem found.
    """
    models = load_models(path)
    if name is None:
        return next(iter(models.values()))
    if name not in models:
        raise ModelError(f"{Path(path).name}: no model called {name!r}; it defines {sorted(models)}")
    return models[name]


def _parse(table: dict[str, Any], path: Path, prefix: tuple[str, ...], default_name: str, text: str) -> ScoreModel:
    where = f"{path.name}: {'.'.join(prefix) + '.' if prefix else ''}"
    problems: list[str] = []

    def need(container: dict[str, Any], key: str, kind: type | tuple[type, ...], at: str, default: Any = ...) -> Any:
        if key not in container:
            if default is ...:
                problems.append(f"{at}{key}: required")
                return None
            return default
        value = container[key]
        if isinstance(value, bool) and kind in (float, (int, float)):
            problems.append(f"{at}{key}: expected a number, got {value!r}")
            return default if default is not ... else None
        if not isinstance(value, kind):
            problems.append(f"{at}{key}: expected {_kind(kind)}, got {value!r}")
            return default if default is not ... else None
        return value

    for key in set(table) - _DEFINITION_KEYS:
        problems.append(f"{key}: unknown section (expected one of {sorted(_DEFINITION_KEYS)})")
    head = table.get("model", {})
    if not isinstance(head, dict):
        problems.append("model: expected a [model] table")
        head = {}
    for key in set(head) - _MODEL_KEYS:
        problems.append(f"model.{key}: unknown key (expected one of {sorted(_MODEL_KEYS)})")
    name = need(head, "name", str, "model.", default_name)
    version = need(head, "version", (str, int, float), "model.", "1.0.0")
    description = need(head, "description", str, "model.", "")
    min_coverage = need(head, "min_coverage", (int, float), "model.", 0.0)

    categories: dict[str, Category] = {}
    raw_cats = table.get("categories", {})
    if not isinstance(raw_cats, dict):
        problems.append("categories: expected [categories.<name>] tables")
        raw_cats = {}
    for cname, ctab in raw_cats.items():
        at = f"categories.{cname}."
        if isinstance(ctab, (int, float)) and not isinstance(ctab, bool):
            ctab = {"weight": ctab}
        if not isinstance(ctab, dict):
            problems.append(f"categories.{cname}: expected a table with weight and label")
            continue
        for key in set(ctab) - _CATEGORY_KEYS:
            problems.append(f"{at}{key}: unknown key (expected one of {sorted(_CATEGORY_KEYS)})")
        categories[cname] = Category(
            cname,
            float(need(ctab, "weight", (int, float), at, 1.0) or 0.0),
            need(ctab, "label", str, at, ""),
            need(ctab, "audience", str, at, "internal"),
            need(ctab, "customer_label", str, at, ""),
        )

    metrics: list[Metric] = []
    for i, at, mtab in _entries(table, "metrics", _METRIC_KEYS, problems):
        mname = need(mtab, "name", str, at)
        weight = need(mtab, "weight", (int, float), at, 1.0)
        metrics.append(
            Metric(
                name=mname or f"metric_{i}",
                column=need(mtab, "column", str, at, mname) or "",
                category=need(mtab, "category", str, at) or "",
                direction=need(mtab, "direction", str, at, "higher_is_better"),
                method=need(mtab, "method", str, at) or "",
                params=need(mtab, "params", dict, at, {}),
                weight=float(weight if weight is not None else 0.0),
                na_policy=need(mtab, "na_policy", str, at, "exclude"),
                description=need(mtab, "description", str, at, ""),
                action=need(mtab, "action", str, at, ""),
                label=need(mtab, "label", str, at, ""),
                unit=need(mtab, "unit", str, at, ""),
                value_range=_range(mtab.get("range"), problems, f"{at}range"),
                audience=need(mtab, "audience", str, at, "internal"),
                action_audience=need(mtab, "action_audience", str, at, "internal"),
                customer_label=need(mtab, "customer_label", str, at, ""),
                customer_description=need(mtab, "customer_description", str, at, ""),
                customer_action=need(mtab, "customer_action", str, at, ""),
                action_owner=need(mtab, "action_owner", str, at, ""),
            )
        )

    bands: list[Band] = [] if "bands" in table else [Band(*b) for b in DEFAULT_BANDS]
    for i, at, btab in _entries(table, "bands", _BAND_KEYS, problems):
        bname = need(btab, "name", str, at) or f"band_{i}"
        bands.append(
            Band(
                bname,
                float(need(btab, "lower", (int, float), at, 0.0) or 0.0),
                float(need(btab, "upper", (int, float), at, 0.0) or 0.0),
                need(btab, "colour", str, at, "") or _default_colour(bname),
                need(btab, "meaning", str, at, ""),
            )
        )

    variants: list[Variant] = []
    for i, at, vtab in _entries(table, "variants", _VARIANT_KEYS, problems):
        filt = need(vtab, "filter", dict, at) or {}
        variants.append(
            Variant(
                name=need(vtab, "name", str, at) or f"variant_{i}",
                filter={k: list(v) if isinstance(v, list) else [v] for k, v in filt.items()},
                description=need(vtab, "description", str, at, ""),
                weights={
                    k: float(v)
                    for k, v in (need(vtab, "weights", dict, at, {}) or {}).items()
                    if _is_number(v, problems, f"{at}weights.{k}")
                },
                categories={
                    k: float(v)
                    for k, v in (need(vtab, "categories", dict, at, {}) or {}).items()
                    if _is_number(v, problems, f"{at}categories.{k}")
                },
                params=need(vtab, "params", dict, at, {}) or {},
                disabled=list(need(vtab, "disabled", list, at, []) or []),
            )
        )

    fields = [ReportField(*f[:2], "internal", f[2]) for f in DEFAULT_FIELDS]
    report = table.get("report")
    if report is not None:
        raw_fields = report.get("fields", {}) if isinstance(report, dict) else None
        if not isinstance(raw_fields, dict) or set(report) - {"fields"}:
            problems.append("report: expected [report.fields.<column>] tables (label, audience, format)")
            raw_fields = {}
        fields = []
        for col, ftab in raw_fields.items():
            at = f"report.fields.{col}."
            if not isinstance(ftab, dict):
                problems.append(f"report.fields.{col}: expected a table with label, audience and format")
                continue
            for key in set(ftab) - _FIELD_KEYS:
                problems.append(f"{at}{key}: unknown key (expected one of {sorted(_FIELD_KEYS)})")
            fields.append(
                ReportField(
                    col,
                    need(ftab, "label", str, at, ""),
                    need(ftab, "audience", str, at, "internal"),
                    need(ftab, "format", str, at, "text"),
                    need(ftab, "customer_label", str, at, ""),
                )
            )

    probability = table.get("probability")
    if probability is not None and not isinstance(probability, dict):
        problems.append("probability: expected a [probability] table (written by 'healthscore evaluate --freeze')")
        probability = None

    reference = table.get("reference")
    if reference is not None and not isinstance(reference, dict):
        problems.append("reference: expected a [reference] table (written by 'healthscore monitor --set-reference')")
        reference = None

    fitted = table.get("fitted")
    if fitted is not None:
        if not isinstance(fitted, dict):
            problems.append("fitted: expected a [fitted] table (written by 'healthscore fit')")
            fitted = None
        else:
            fitted_problems = _fitted_problems(fitted)
            problems += fitted_problems
            fitted = None if fitted_problems else _fitted_plain(fitted)

    outcomes: dict[str, Outcome] = {}
    if table.get("outcomes") is not None:
        try:
            outcomes = parse_outcomes(table["outcomes"], source=path.name)
        except OutcomeError as exc:
            problems.append(str(exc).removeprefix(f"{path.name}: "))

    alerts, alert_problems = parse_alert_rules(
        table.get("alerts"),
        bands=[b.name for b in bands],
        metrics=[m.name for m in metrics],
        categories=list(categories),
        has_probability=isinstance(probability, dict),
    )
    problems += alert_problems

    if problems:
        raise ModelError("\n".join(where + p for p in problems))
    model = ScoreModel(
        name=name,
        version=str(version),
        metrics=metrics,
        categories=categories,
        bands=sorted(bands, key=lambda b: b.lower),
        min_coverage=float(min_coverage),
        description=description,
        variants=variants,
        source=path,
        probability=_plain(dict(probability)) if probability is not None else None,
        outcomes=outcomes,
        reference=_plain(dict(reference)) if reference is not None else None,
        fitted=fitted,
        alerts=alerts,
        fields=fields,
        _text=text,
        _prefix=prefix,
    )
    model.validate()
    return model


def _entries(
    table: dict[str, Any], key: str, allowed: set[str], problems: list[str]
) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """Each table of the array ``[[key]]`` as (1-based index, key path prefix, table).

    Reports (in ``problems``) an array that is not one of tables and keys not in ``allowed``.
    """
    raw = table.get(key, [])
    if not isinstance(raw, list):
        problems.append(f"{key}: expected [[{key}]] tables")
        return
    for i, entry in enumerate(raw, 1):
        if not isinstance(entry, dict):
            problems.append(f"{key}[{i}]: expected a table")
            continue
        name = entry.get("name")
        at = f"{key}[{i}] ({name})." if isinstance(name, str) else f"{key}[{i}]."
        for extra in sorted(set(entry) - allowed):
            problems.append(f"{at}{extra}: unknown key (expected one of {sorted(allowed)})")
        yield i, at, entry


def _problems(model: ScoreModel) -> list[str]:
    """Every semantic problem of a model, each as 'key.path: what is wrong (and what to do)'."""

    out: list[str] = []
    if not _NAME_RE.match(model.name or ""):
        out.append(f"model.name: {model.name!r} must be letters, digits and underscores")
    if not 0.0 <= model.min_coverage <= 1.0:
        out.append(f"model.min_coverage: {model.min_coverage:g} must be between 0 and 1 (a share of the weight)")
    if not model.metrics:
        out.append("metrics: the model has no [[metrics]]")
    if not model.categories:
        out.append("categories: the model has no [categories.<name>] tables")
    for cat in model.categories.values():
        problem = _weight_problem(cat.weight)
        if problem:
            out.append(f"categories.{cat.name}.weight: {problem}")
    if model.categories and all(c.weight == 0 for c in model.categories.values()):
        out.append("categories: all category weights are zero; give at least one a positive weight")
    seen: set[str] = set()
    for i, m in enumerate(model.metrics, 1):
        at = f"metrics[{i}] ({m.name})"
        if m.name in seen:
            out.append(f"{at}.name: duplicate metric name {m.name!r}; metric names must be unique")
        seen.add(m.name)
        if not _NAME_RE.match(m.name):
            out.append(f"{at}.name: {m.name!r} must be letters, digits and underscores (it becomes sub_{m.name})")
        if m.category not in model.categories:
            out.append(
                f"{at}.category: unknown category {m.category!r}; "
                f"declare [categories.{m.category}] or use one of {sorted(model.categories)}"
            )
        if m.direction not in DIRECTIONS:
            out.append(f"{at}.direction: {m.direction!r} must be one of {list(DIRECTIONS)}")
        problem = _weight_problem(m.weight)
        if problem:
            out.append(f"{at}.weight: {problem}")
        if m.unit and m.unit not in UNIT_RANGES and not re.fullmatch(r"[A-Za-z_ %/$-]{1,30}", m.unit):
            out.append(f'{at}.unit: {m.unit!r}: use "ratio" (0..1), "percent" (0..100) or a short word such as "days"')
        if m.value_range is not None:
            lo, hi = m.value_range
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                out.append(f"{at}.range: [{lo:g}, {hi:g}] must be two finite numbers, the lower first")
        if m.na_policy != "exclude":
            ok = m.na_policy.startswith("score:")
            if ok:
                try:
                    ok = 0 <= float(m.na_policy[6:]) <= 100
                except ValueError:
                    ok = False
            if not ok:
                out.append(f'{at}.na_policy: {m.na_policy!r} must be "exclude" or "score:<0..100>"')
        if m.method not in calibration.METHODS:
            out.append(f"{at}.method: unknown method {m.method!r}; use one of {sorted(calibration.METHODS)}")
        else:
            out += [f"{at}.params: {msg}" for msg in _param_problems(m.method, m.params, m.direction)]
    for cat in model.categories.values():
        if cat.audience not in AUDIENCES:
            out.append(f'categories.{cat.name}.audience: {cat.audience!r} must be "customer" or "internal"')
    for i, m in enumerate(model.metrics, 1):
        at = f"metrics[{i}] ({m.name})"
        for key in ("audience", "action_audience"):
            if getattr(m, key) not in AUDIENCES:
                out.append(f'{at}.{key}: {getattr(m, key)!r} must be "customer" or "internal"')
        mcat = model.categories.get(m.category)
        if m.audience == "customer" and mcat is not None and mcat.audience != "customer":
            out.append(
                f"{at}.audience: a customer metric in the internal category {m.category!r}; set "
                f'audience = "customer" in [categories.{m.category}] or keep the metric internal'
            )
    for f in model.fields:
        if f.audience not in AUDIENCES:
            out.append(f'report.fields.{f.column}.audience: {f.audience!r} must be "customer" or "internal"')
        if f.format not in FIELD_FORMATS:
            out.append(f"report.fields.{f.column}.format: {f.format!r} must be one of {list(FIELD_FORMATS)}")
    if model.metrics and all(m.weight == 0 for m in model.metrics):
        out.append("metrics: all metric weights are zero; give at least one a positive weight")
    out += _band_problems(model.bands)
    names = {m.name for m in model.metrics}
    metric_cols = {m.column for m in model.metrics}
    vnames: set[str] = set()
    for i, v in enumerate(model.variants, 1):
        at = f"variants[{i}] ({v.name})"
        if v.name in vnames or v.name == "default":
            out.append(f"{at}.name: {v.name!r} is used twice or reserved; variant names must be unique")
        vnames.add(v.name)
        if not v.filter:
            out.append(f'{at}.filter: empty; say which accounts it applies to, e.g. filter = {{segment = "smb"}}')
        for col in v.filter:
            if col in metric_cols:
                out.append(f"{at}.filter.{col}: {col!r} is a metric column; filter on account attributes")
        for key, table in (("weights", v.weights), ("params", v.params)):
            for mname in table:
                if mname not in names:
                    out.append(f"{at}.{key}.{mname}: unknown metric {mname!r}")
        for mname in v.disabled:
            if mname not in names:
                out.append(f"{at}.disabled: unknown metric {mname!r}")
        for cname in v.categories:
            if cname not in model.categories:
                out.append(f"{at}.categories.{cname}: unknown category {cname!r}")
        for section, weights in (("weights", v.weights), ("categories", v.categories)):
            for key, w in weights.items():
                problem = _weight_problem(w)
                if problem:
                    out.append(f"{at}.{section}.{key}: {problem}")
        if not out or not any(s.startswith(at) for s in out):
            resolved = model.resolve(v.name)
            if all(m.weight == 0 for m in resolved.metrics) or all(c.weight == 0 for c in resolved.categories.values()):
                out.append(f"{at}: all weights are zero in this variant")
            for m in resolved.metrics:
                if m.name in v.params and m.method in calibration.METHODS:
                    out += [f"{at}.params.{m.name}: {msg}" for msg in _param_problems(m.method, m.params, m.direction)]
    return out


def _fitted_plain(fitted: Mapping[str, Any]) -> dict[str, Any]:
    """The ``[fitted]`` record as plain data, its dates as ``date`` objects, keys in a fixed order."""
    data = _plain(dict(fitted))
    for key in _FITTED_DATES:
        value = data.get(key)
        if isinstance(value, datetime):
            data[key] = value.date()
        elif isinstance(value, str):
            data[key] = date.fromisoformat(value)
    order = {k: i for i, k in enumerate(FITTED_KEYS)}
    return dict(sorted(data.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def _fitted_problems(fitted: Mapping[str, Any]) -> list[str]:
    """What is wrong with a ``[fitted]`` record (dates that are not dates, a window that runs backwards)."""
    out: list[str] = []
    data = _plain(dict(fitted))
    for key in _FITTED_DATES:
        value = data.get(key)
        if value is None or isinstance(value, date):
            continue
        try:
            date.fromisoformat(str(value))
        except ValueError:
            out.append(f"fitted.{key}: {value!r} is not a date; write it as YYYY-MM-DD")
    if not out:
        plain = _fitted_plain(data)
        first, last = plain.get("first_as_of"), plain.get("observed_until")
        if isinstance(first, date) and isinstance(last, date) and last < first:
            out.append(f"fitted.observed_until: {last} is before first_as_of {first}; the window must run forwards")
    return out


def _points_are_ratios(params: Mapping[str, Any]) -> bool:
    points: Any = params.get("points")  # may be anything from the file; bad shapes fail below
    try:
        xs = [float(p[0]) for p in points]
    except (TypeError, ValueError, IndexError):
        return False
    return bool(xs) and min(xs) >= 0 and max(xs) <= 1


def _weight_problem(weight: float) -> str | None:
    """Why a weight is unusable (None when fine): weights are relative, 0 or 1e-6..1e6."""
    if not math.isfinite(weight):
        return f"{weight} is not a finite number; use a relative weight such as 1, 2 or 30"
    if weight < 0:
        return f"{weight:g} is negative; weights must be >= 0"
    if weight > MAX_WEIGHT:
        return f"{weight:g} is too large (at most {MAX_WEIGHT:g}); weights are relative, so scale them all down"
    if 0 < weight < MIN_POSITIVE_WEIGHT:
        return (
            f"{weight:g} is too small (0, or at least {MIN_POSITIVE_WEIGHT:g}); weights are relative, so "
            "scale them all up, or use 0 to switch the metric off"
        )
    return None


def _param_problems(method: str, params: dict[str, Any], direction: str) -> list[str]:
    """Parameter problems from the calibration module; fitted entries may still be missing."""

    known = direction if direction in DIRECTIONS else None
    return list(calibration.check_params(method, params, known, require_fitted=False))


def _band_problems(bands: list[Band]) -> list[str]:
    out: list[str] = []
    if not bands:
        return ["bands: no bands; define [[bands]] covering 0..100"]
    names = [b.name for b in bands]
    for name in {n for n in names if names.count(n) > 1}:
        out.append(f"bands: band name {name!r} is used twice")
    for i, b in enumerate(bands, 1):
        if b.colour:
            try:
                parse_colour(b.colour)
            except ValueError as exc:
                out.append(f"bands[{i}] ({b.name}).colour: {exc}")
    ordered = sorted(enumerate(bands, 1), key=lambda ib: ib[1].lower)
    for i, b in ordered:
        if b.upper <= b.lower:
            out.append(f"bands[{i}] ({b.name}): upper {b.upper:g} must be above lower {b.lower:g}")
    first, last = ordered[0][1], ordered[-1][1]
    if first.lower != 0:
        out.append(f"bands[{ordered[0][0]}] ({first.name}).lower: bands must start at 0, not {first.lower:g}")
    if last.upper != 100:
        out.append(f"bands[{ordered[-1][0]}] ({last.name}).upper: bands must end at 100, not {last.upper:g}")
    for (_, a), (j, b) in zip(ordered, ordered[1:]):
        if b.lower > a.upper:
            out.append(
                f"bands[{j}] ({b.name}).lower: gap between {a.name} (ends {a.upper:g}) and "
                f"{b.name} (starts {b.lower:g}); bands must cover 0..100 without gaps"
            )
        elif b.lower < a.upper:
            out.append(
                f"bands[{j}] ({b.name}).lower: {b.name} (starts {b.lower:g}) overlaps {a.name} "
                f"(ends {a.upper:g}); each band must start where the previous one ends"
            )
    return out


# ---------------------------------------------------------------- writing back
def _write_into(doc: Any, model: ScoreModel) -> None:
    """Update the tomlkit document ``doc`` in place so it describes ``model``; touch only changes."""
    table = doc
    for key in model._prefix:
        if key not in table:
            table[key] = tomlkit.table(is_super_table=True)
        table = table[key]

    head = table.get("model")
    if head is None:
        head = tomlkit.table()
        table["model"] = head
    _set(head, "name", model.name)
    _set(head, "version", model.version)
    if model.description or "description" in head:
        _set(head, "description", model.description)
    if model.min_coverage or "min_coverage" in head:
        _set(head, "min_coverage", model.min_coverage)

    cats = table.get("categories")
    if cats is None:
        cats = tomlkit.table(is_super_table=True)
        table["categories"] = cats
    for name in [k for k in cats if k not in model.categories]:
        del cats[name]
    for cat in model.categories.values():
        if cat.name not in cats:
            cats[cat.name] = tomlkit.table()
        ctab = cats[cat.name]
        if not isinstance(ctab, dict):  # written as `usage = 30`
            if _plain(ctab) != cat.weight:
                cats[cat.name] = _num(cat.weight, ctab)
            continue
        _set(ctab, "weight", cat.weight)
        if cat.label or "label" in ctab:
            _set(ctab, "label", cat.label)
        if cat.audience != "internal" or "audience" in ctab:
            _set(ctab, "audience", cat.audience)
        if cat.customer_label or "customer_label" in ctab:
            _set(ctab, "customer_label", cat.customer_label)

    _write_aot(table, "metrics", [_metric_dict(m) for m in model.metrics], key="name")
    if "bands" in table or [(b.name, b.lower, b.upper) for b in model.bands] != [b[:3] for b in DEFAULT_BANDS]:
        _write_aot(
            table,
            "bands",
            [
                {"name": b.name, "lower": b.lower, "upper": b.upper, "colour": b.colour, "meaning": b.meaning}
                for b in model.bands
            ],
            key=None,
        )
    if model.variants or "variants" in table:
        _write_aot(table, "variants", [_variant_dict(v) for v in model.variants], key="name")
    default_fields = [ReportField(*f[:2], "internal", f[2]) for f in DEFAULT_FIELDS]
    if model.fields != default_fields or "report" in table:
        report = table.get("report")
        if report is None:
            report = tomlkit.table(is_super_table=True)
            table["report"] = report
        ftabs = report.get("fields")
        if ftabs is None:
            ftabs = tomlkit.table(is_super_table=True)
            report["fields"] = ftabs
        for col in [k for k in ftabs if k not in {f.column for f in model.fields}]:
            del ftabs[col]
        for f in model.fields:
            if f.column not in ftabs:
                ftabs[f.column] = tomlkit.table()
            ftab = ftabs[f.column]
            for key in ("label", "audience", "format", "customer_label"):
                value = getattr(f, key)
                if value != {"audience": "internal", "format": "text"}.get(key, "") or key in ftab:
                    _set(ftab, key, value)
    if model.probability is None:
        table.pop("probability", None)
    elif "probability" not in table or _plain(table["probability"]) != model.probability:
        prob = tomlkit.table()
        prob.comment("score -> probability map fitted on training rows; frozen by healthscore evaluate --freeze")
        for key, value in model.probability.items():
            prob[key] = value
        table["probability"] = prob
    if model.reference is None:
        table.pop("reference", None)
    elif "reference" not in table or _plain(table["reference"]) != model.reference:
        ref = tomlkit.table()
        ref.comment("what the score looked like when it was fitted; read by healthscore monitor")
        for key, value in model.reference.items():
            ref[key] = value
        table["reference"] = ref
    if model.fitted is None:
        table.pop("fitted", None)
    elif "fitted" not in table or _plain(table["fitted"]) != model.fitted:
        fit = tomlkit.table()
        fit.comment("what this model was fitted on; healthscore evaluate refuses a holdout inside this window")
        for key, value in model.fitted.items():
            fit[key] = value
        table["fitted"] = fit
    # [[alerts]] tables already in the file stay exactly as written; a model built in code writes its own
    if model.alerts and "alerts" not in table:
        aot = tomlkit.aot()
        for rule in model.alerts:
            entry = tomlkit.table()
            for key, value in rule.to_dict().items():
                entry[key] = value
            aot.append(entry)
        table["alerts"] = aot
    elif model.alerts:
        # a rule's numeric setting tuned in code (threshold value, drop points, probability) is written
        # into its own entry; everything else in the entry stays as written
        rules = {r.name: r for r in model.alerts}
        for entry in table["alerts"]:
            tuned = rules.get(_plain(entry.get("name")))
            for key in ("value", "points", "at_least"):
                if tuned is not None and key in entry and getattr(tuned, key) is not None:
                    _set(entry, key, float(getattr(tuned, key)))


def _metric_dict(m: Metric) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": m.name,
        "column": m.column,
        "category": m.category,
        "direction": m.direction,
        "method": m.method,
        "weight": m.weight,
        "na_policy": m.na_policy,
        "label": m.label,
        "description": m.description,
        "action": m.action,
        "unit": m.unit,
        "range": list(m.value_range) if m.value_range else None,
        "audience": m.audience,
        "action_audience": m.action_audience,
        "customer_label": m.customer_label,
        "customer_description": m.customer_description,
        "customer_action": m.customer_action,
        "action_owner": m.action_owner,
        "params": m.params,
    }
    return d


def _variant_dict(v: Variant) -> dict[str, Any]:
    return {
        "name": v.name,
        "description": v.description,
        "filter": {k: vals[0] if len(vals) == 1 else vals for k, vals in v.filter.items()},
        "weights": v.weights,
        "categories": v.categories,
        "params": v.params,
        "disabled": v.disabled,
    }


_OPTIONAL_DEFAULTS: dict[str, Any] = {
    "na_policy": "exclude",
    "label": "",
    "description": "",
    "action": "",
    "unit": "",
    "range": None,
    "audience": "internal",
    "action_audience": "internal",
    "customer_label": "",
    "customer_description": "",
    "customer_action": "",
    "action_owner": "",
    "direction": "higher_is_better",
    "weights": {},
    "categories": {},
    "params": {},
    "disabled": [],
    "colour": "",
    "meaning": "",
}


def _write_aot(table: Any, name: str, rows: list[dict[str, Any]], key: str | None) -> None:
    """Make the array of tables ``table[name]`` hold ``rows``, editing matching entries in place."""
    aot = table.get(name)
    if aot is None or not isinstance(aot, list):
        aot = tomlkit.aot()
        table[name] = aot
    existing = list(aot)
    if key is not None:
        by_key = {e.get(key): e for e in existing}
        matched = [by_key.get(r[key]) for r in rows]
    else:
        matched = [existing[i] if i < len(existing) else None for i in range(len(rows))]
    keep = {id(e) for e in matched if e is not None}
    # drop entries no longer in the model (from the end so indices stay valid)
    for i in reversed(range(len(existing))):
        if id(existing[i]) not in keep:
            del aot[i]
    for row, entry in zip(rows, matched):
        if entry is None:
            entry = tomlkit.table()
            for k, v in row.items():
                if k in _OPTIONAL_DEFAULTS and v == _OPTIONAL_DEFAULTS[k]:
                    continue
                entry[k] = v
            aot.append(entry)
            continue
        for k, v in row.items():
            if v is None:  # an optional key the model no longer has
                if k in entry:
                    del entry[k]
                continue
            if k not in entry and k in _OPTIONAL_DEFAULTS and v == _OPTIONAL_DEFAULTS[k]:
                continue
            if isinstance(v, dict) and k in entry and isinstance(entry[k], dict):
                sub = entry[k]
                for sk in [sk for sk in sub if sk not in v]:
                    del sub[sk]
                for sk, sv in v.items():
                    _set(sub, sk, sv)
            else:
                _set(entry, k, v)


def _set(table: Any, key: str, value: Any) -> None:
    """Set ``table[key] = value`` only when the value differs (so untouched keys keep their format)."""
    if key in table and _same(_plain(table[key]), value):
        return
    old = table.get(key)
    table[key] = _num(value, old) if isinstance(value, float) else value


def _same(a: Any, b: Any) -> bool:
    return bool(_canonical(a) == _canonical(b))


def _num(value: float, old: Any) -> Any:
    """A float written as an int when it is whole and the file used an int there before."""
    if value.is_integer() and (old is None or isinstance(_plain(old), int)) and abs(value) < 1e15:
        return int(value)
    return value


# ---------------------------------------------------------------- helpers
def _plain(value: Any) -> Any:
    """tomlkit items and numpy scalars -> plain Python values (recursively)."""
    if hasattr(value, "unwrap"):
        value = value.unwrap()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (TypeError, ValueError):
            return value
    return value


def _canonical(value: Any) -> Any:
    """Numbers as floats, mappings with sorted keys: so ``2`` and ``2.0`` hash the same."""
    value = _plain(value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return {k: _canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return str(value)


def _kind(kind: type | tuple[type, ...]) -> str:
    names = {str: "text", int: "a number", float: "a number", dict: "a table", list: "a list"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def _is_number(value: Any, problems: list[str], at: str) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        problems.append(f"{at}: expected a number, got {value!r}")
        return False
    return True


def _range(value: Any, problems: list[str], at: str) -> tuple[float, float] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)
    ):
        problems.append(f"{at}: expected [lower, upper], e.g. range = [0, 1], got {value!r}")
        return None
    return float(value[0]), float(value[1])


def _default_colour(name: str) -> str:
    return band_colour(name)
