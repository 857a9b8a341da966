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
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import polars as pl
import tomlkit

from healthscore.errors import HealthscoreError
from healthscore.io import files
from healthscore.spec.alerts import AlertRule, parse_alert_rules
from healthscore.spec.outcomes import (
    Outcome,
    OutcomeError,
    parse_outcomes,
    resolve_outcome,
)
from healthscore.spec.palette import band_colour

DIRECTIONS = ("higher_is_better", "lower_is_better")
DEFAULT_BANDS: tuple[tuple[str, float, float, str, str], ...] = (
    ("red", 0.0, 40.0, "#D55E00", "at risk: act now"),
    ("yellow", 40.0, 70.0, "#E69F00", "watch: something is slipping"),
    ("green", 70.0, 100.0, "#009E73", "healthy"),
)
_METRIC_KEYS = {"name", "column", "category", "direction", "method", "params", "weight", "na_policy",
                "description", "action", "label"}
_MODEL_KEYS = {"name", "version", "description", "min_coverage"}
_DEFINITION_KEYS = {"model", "categories", "metrics", "bands", "variants", "probability", "outcomes", "alerts"}
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
    # outcomes this model is used with beyond the standard three (``[outcomes.<name>]``)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    # early-warning rules (``[[alerts]]``); they read scores and never change one, so no hash
    alerts: list[AlertRule] = field(default_factory=list)
    source: Path | None = field(default=None, compare=False)
    # the TOML text the model was loaded from and where the definition sits in it
    _text: str | None = field(default=None, compare=False, repr=False)
    _prefix: tuple[str, ...] = field(default=(), compare=False, repr=False)

    # ------------------------------------------------------------ identity
    def definition(self) -> dict[str, Any]:
        """The parts of the model that change a score, as plain data (what the hash covers).

        Version, descriptions, labels, actions, band colours and meanings are left out: editing
        them never changes a score, so it never changes the hash.
        """
        return _canonical({
            "name": self.name,
            "min_coverage": self.min_coverage,
            "categories": {c.name: c.weight for c in self.categories.values()},
            "metrics": [{"name": m.name, "column": m.column, "category": m.category,
                         "direction": m.direction, "method": m.method, "params": m.params,
                         "weight": m.weight, "na_policy": m.na_policy} for m in self.metrics],
            "bands": [[b.name, b.lower, b.upper] for b in self.bands],
            "variants": [{"name": v.name, "filter": v.filter, "weights": v.weights,
                          "categories": v.categories, "params": v.params,
                          "disabled": sorted(v.disabled)} for v in self.variants],
        })

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

    def summary(self) -> str:
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
        return "\n".join(lines)

    # ------------------------------------------------------------ expressions
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
    def with_weights(self, metrics: Mapping[str, float] | None = None,
                     categories: Mapping[str, float] | None = None) -> ScoreModel:
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
            categories={k: replace(c, weight=float(categories[k])) if k in categories else c
                        for k, c in self.categories.items()})
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
        new = replace(self, metrics=[replace(m, params={**m.params, **_plain(dict(params))})
                                     if m.name == metric else m for m in self.metrics])
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

    def bump_version(self) -> ScoreModel:
        """A new model whose version's last number is one higher ("1.2.3" -> "1.2.4", "v7" -> "v8")."""
        match = re.search(r"(\d+)(?!.*\d)", self.version)
        version = (self.version[:match.start()] + str(int(match.group(1)) + 1) + self.version[match.end():]
                   if match else f"{self.version}.1")
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

    def _where(self) -> str:
        where = self.source.name if self.source else f"model {self.name!r}"
        prefix = ".".join(self._prefix)
        return f"{where}: {prefix + '.' if prefix else ''}"

    # ------------------------------------------------------------ fitting
    def fit_calibration(self, snapshots: pl.DataFrame, outcome: pl.Series | str | None = None) -> ScoreModel:
        """A new model with the data-derived calibrations (percentile, log_z, monotone bins) fitted.

        The fitted parameters are frozen into the model, so ``save`` stores them and scores do
        not drift when the population changes. ``outcome`` (a Boolean series aligned with the
        rows, or the name of a column of ``snapshots``) is needed by methods fitted against an
        outcome. Variants that override a fitted metric's parameters are fitted on their own rows.
        """
        from healthscore.core import calibration

        if isinstance(outcome, str):
            outcome = snapshots[outcome]
        if outcome is not None and len(outcome) != snapshots.height:
            raise ModelError(f"{self._where()}fit_calibration: outcome has {len(outcome)} values "
                             f"but snapshots have {snapshots.height} rows")
        self.check_columns(snapshots.columns)
        frame = snapshots if outcome is None else snapshots.with_columns(outcome.alias("__outcome"))

        def fit(m: Metric, params: dict[str, Any], rows: pl.DataFrame) -> dict[str, Any]:
            method = calibration.METHODS[m.method]
            out = rows["__outcome"] if "__outcome" in rows.columns else None
            if getattr(method, "needs_outcome", False) or m.method == "monotone_bins":
                if out is None:
                    raise ModelError(f"{self._where()}metric {m.name}: method {m.method} is fitted against "
                                     "an outcome; pass outcome= to fit_calibration")
            try:
                return _plain(calibration.fit_params(m.method, rows[m.column], params,
                                                     direction=m.direction, outcome=out))
            except ValueError as exc:
                raise ModelError(f"{self._where()}metric {m.name}: {exc}") from None

        metrics = []
        for m in self.metrics:
            fitted = calibration.METHODS[m.method].fitted
            metrics.append(replace(m, params=fit(m, m.params, frame)) if fitted else m)
        variants = []
        for v in self.variants:
            vparams = dict(v.params)
            for name, override in v.params.items():
                base = next(m for m in metrics if m.name == name)
                if calibration.METHODS[base.method].fitted:
                    rows = frame.filter(v.matches())
                    vparams[name] = fit(base, {**base.params, **override}, rows) if rows.height else override
            variants.append(replace(v, params=vparams))
        new = replace(self, metrics=metrics, variants=variants)
        new.validate()
        return new

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
        defs = {key: (("models", key), value) for key, value in data["models"].items()}
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


def _parse(table: dict[str, Any], path: Path, prefix: tuple[str, ...], default_name: str,
           text: str) -> ScoreModel:
    where = f"{path.name}: {'.'.join(prefix) + '.' if prefix else ''}"
    problems: list[str] = []

    def need(container: dict, key: str, kind: type | tuple, at: str, default: Any = ...) -> Any:
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
        head, _ = {}, problems.append("model: expected a [model] table")
    for key in set(head) - _MODEL_KEYS:
        problems.append(f"model.{key}: unknown key (expected one of {sorted(_MODEL_KEYS)})")
    name = need(head, "name", str, "model.", default_name)
    version = need(head, "version", (str, int, float), "model.", "1.0.0")
    description = need(head, "description", str, "model.", "")
    min_coverage = need(head, "min_coverage", (int, float), "model.", 0.0)

    categories: dict[str, Category] = {}
    raw_cats = table.get("categories", {})
    if not isinstance(raw_cats, dict):
        raw_cats, _ = {}, problems.append("categories: expected [categories.<name>] tables")
    for cname, ctab in raw_cats.items():
        at = f"categories.{cname}."
        if isinstance(ctab, (int, float)) and not isinstance(ctab, bool):
            ctab = {"weight": ctab}
        if not isinstance(ctab, dict):
            problems.append(f"categories.{cname}: expected a table with weight and label")
            continue
        for key in set(ctab) - {"weight", "label"}:
            problems.append(f"{at}{key}: unknown key (expected weight, label)")
        categories[cname] = Category(cname, float(need(ctab, "weight", (int, float), at, 1.0) or 0.0),
                                     need(ctab, "label", str, at, ""))

    metrics: list[Metric] = []
    for i, at, mtab in _entries(table, "metrics", _METRIC_KEYS, problems):
        mname = need(mtab, "name", str, at)
        weight = need(mtab, "weight", (int, float), at, 1.0)
        metrics.append(Metric(
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
        ))

    bands: list[Band] = [] if "bands" in table else [Band(*b) for b in DEFAULT_BANDS]
    for i, at, btab in _entries(table, "bands", _BAND_KEYS, problems):
        bname = need(btab, "name", str, at) or f"band_{i}"
        bands.append(Band(bname, float(need(btab, "lower", (int, float), at, 0.0) or 0.0),
                          float(need(btab, "upper", (int, float), at, 0.0) or 0.0),
                          need(btab, "colour", str, at, "") or _default_colour(bname),
                          need(btab, "meaning", str, at, "")))

    variants: list[Variant] = []
    for i, at, vtab in _entries(table, "variants", _VARIANT_KEYS, problems):
        filt = need(vtab, "filter", dict, at) or {}
        variants.append(Variant(
            name=need(vtab, "name", str, at) or f"variant_{i}",
            filter={k: list(v) if isinstance(v, list) else [v] for k, v in filt.items()},
            description=need(vtab, "description", str, at, ""),
            weights={k: float(v) for k, v in (need(vtab, "weights", dict, at, {}) or {}).items()
                     if _is_number(v, problems, f"{at}weights.{k}")},
            categories={k: float(v) for k, v in (need(vtab, "categories", dict, at, {}) or {}).items()
                        if _is_number(v, problems, f"{at}categories.{k}")},
            params=need(vtab, "params", dict, at, {}) or {},
            disabled=list(need(vtab, "disabled", list, at, []) or []),
        ))

    probability = table.get("probability")
    if probability is not None and not isinstance(probability, dict):
        probability, _ = None, problems.append("probability: expected a [probability] table "
                                               "(written by 'healthscore evaluate --freeze')")

    outcomes: dict[str, Outcome] = {}
    if table.get("outcomes") is not None:
        try:
            outcomes = parse_outcomes(table["outcomes"], source=path.name)
        except OutcomeError as exc:
            problems.append(str(exc).removeprefix(f"{path.name}: "))

    alerts, alert_problems = parse_alert_rules(
        table.get("alerts"), bands=[b.name for b in bands], metrics=[m.name for m in metrics],
        categories=list(categories), has_probability=isinstance(probability, dict))
    problems += alert_problems

    if problems:
        raise ModelError("\n".join(where + p for p in problems))
    model = ScoreModel(
        name=name, version=str(version), metrics=metrics, categories=categories,
        bands=sorted(bands, key=lambda b: b.lower), min_coverage=float(min_coverage),
        description=description, variants=variants, source=path,
        probability=_plain(dict(probability)) if probability is not None else None, outcomes=outcomes,
        alerts=alerts, _text=text, _prefix=prefix)
    model.validate()
    return model


def _entries(table: dict[str, Any], key: str, allowed: set[str],
             problems: list[str]) -> Iterator[tuple[int, str, dict[str, Any]]]:
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
    from healthscore.core import calibration

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
        if not math.isfinite(cat.weight) or cat.weight < 0:
            out.append(f"categories.{cat.name}.weight: {cat.weight:g} is negative; weights must be >= 0")
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
            out.append(f"{at}.category: unknown category {m.category!r}; "
                       f"declare [categories.{m.category}] or use one of {sorted(model.categories)}")
        if m.direction not in DIRECTIONS:
            out.append(f"{at}.direction: {m.direction!r} must be one of {list(DIRECTIONS)}")
        if not math.isfinite(m.weight) or m.weight < 0:
            out.append(f"{at}.weight: {m.weight:g} is negative; weights must be >= 0")
        if m.na_policy != "exclude":
            ok = m.na_policy.startswith("score:")
            if ok:
                try:
                    ok = 0 <= float(m.na_policy[6:]) <= 100
                except ValueError:
                    ok = False
            if not ok:
                out.append(f"{at}.na_policy: {m.na_policy!r} must be \"exclude\" or \"score:<0..100>\"")
        if m.method not in calibration.METHODS:
            out.append(f"{at}.method: unknown method {m.method!r}; use one of {sorted(calibration.METHODS)}")
        else:
            out += [f"{at}.params: {msg}" for msg in _param_problems(m.method, m.params, m.direction)]
    if model.metrics and all(m.weight == 0 for m in model.metrics):
        out.append("metrics: all metric weights are zero; give at least one a positive weight")
    out += _band_problems(model.bands)
    names = [m.name for m in model.metrics]
    vnames: set[str] = set()
    for i, v in enumerate(model.variants, 1):
        at = f"variants[{i}] ({v.name})"
        if v.name in vnames or v.name == "default":
            out.append(f"{at}.name: {v.name!r} is used twice or reserved; variant names must be unique")
        vnames.add(v.name)
        if not v.filter:
            out.append(f"{at}.filter: empty; say which accounts it applies to, e.g. filter = {{segment = \"smb\"}}")
        metric_cols = {m.column for m in model.metrics}
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
        for key, w in [*v.weights.items(), *v.categories.items()]:
            if not math.isfinite(w) or w < 0:
                out.append(f"{at}: weight of {key} is {w:g}; weights must be >= 0")
        if not out or not any(s.startswith(at) for s in out):
            resolved = model.resolve(v.name)
            if all(m.weight == 0 for m in resolved.metrics) or all(
                    c.weight == 0 for c in resolved.categories.values()):
                out.append(f"{at}: all weights are zero in this variant")
            for j, m in enumerate(resolved.metrics, 1):
                if m.name in v.params and m.method in calibration.METHODS:
                    out += [f"{at}.params.{m.name}: {msg}"
                            for msg in _param_problems(m.method, m.params, m.direction)]
    return out


def _param_problems(method: str, params: dict[str, Any], direction: str) -> list[str]:
    """Parameter problems from the calibration module; fitted entries may still be missing."""
    from healthscore.core import calibration

    direction = direction if direction in DIRECTIONS else None
    return list(calibration.check_params(method, params, direction, require_fitted=False))


def _band_problems(bands: list[Band]) -> list[str]:
    out: list[str] = []
    if not bands:
        return ["bands: no bands; define [[bands]] covering 0..100"]
    names = [b.name for b in bands]
    for name in {n for n in names if names.count(n) > 1}:
        out.append(f"bands: band name {name!r} is used twice")
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
            out.append(f"bands[{j}] ({b.name}).lower: gap between {a.name} (ends {a.upper:g}) and "
                       f"{b.name} (starts {b.lower:g}); bands must cover 0..100 without gaps")
        elif b.lower < a.upper:
            out.append(f"bands[{j}] ({b.name}).lower: {b.name} (starts {b.lower:g}) overlaps {a.name} "
                       f"(ends {a.upper:g}); each band must start where the previous one ends")
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

    _write_aot(table, "metrics", [_metric_dict(m) for m in model.metrics], key="name")
    if "bands" in table or [(b.name, b.lower, b.upper) for b in model.bands] != [b[:3] for b in DEFAULT_BANDS]:
        _write_aot(table, "bands", [{"name": b.name, "lower": b.lower, "upper": b.upper, "colour": b.colour,
                                     "meaning": b.meaning} for b in model.bands], key=None)
    if model.variants or "variants" in table:
        _write_aot(table, "variants", [_variant_dict(v) for v in model.variants], key="name")
    if model.probability is None:
        table.pop("probability", None)
    elif "probability" not in table or _plain(table["probability"]) != model.probability:
        prob = tomlkit.table()
        prob.comment("score -> probability map fitted on training rows; frozen by healthscore evaluate --freeze")
        for key, value in model.probability.items():
            prob[key] = value
        table["probability"] = prob
    # [[alerts]] tables already in the file stay exactly as written; a model built in code writes its own
    if model.alerts and "alerts" not in table:
        aot = tomlkit.aot()
        for rule in model.alerts:
            entry = tomlkit.table()
            for key, value in rule.to_dict().items():
                entry[key] = value
            aot.append(entry)
        table["alerts"] = aot


def _metric_dict(m: Metric) -> dict[str, Any]:
    d: dict[str, Any] = {"name": m.name, "column": m.column, "category": m.category, "direction": m.direction,
                         "method": m.method, "weight": m.weight, "na_policy": m.na_policy,
                         "label": m.label, "description": m.description, "action": m.action,
                         "params": m.params}
    return d


def _variant_dict(v: Variant) -> dict[str, Any]:
    return {"name": v.name, "description": v.description,
            "filter": {k: vals[0] if len(vals) == 1 else vals for k, vals in v.filter.items()},
            "weights": v.weights, "categories": v.categories, "params": v.params, "disabled": v.disabled}


_OPTIONAL_DEFAULTS = {"na_policy": "exclude", "label": "", "description": "", "action": "",
                      "direction": "higher_is_better", "weights": {}, "categories": {}, "params": {},
                      "disabled": [], "colour": "", "meaning": ""}


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
    return _canonical(a) == _canonical(b)


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


def _kind(kind: type | tuple) -> str:
    names = {str: "text", int: "a number", float: "a number", dict: "a table", list: "a list"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def _is_number(value: Any, problems: list[str], at: str) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        problems.append(f"{at}: expected a number, got {value!r}")
        return False
    return True


def _default_colour(name: str) -> str:
    return band_colour(name)

