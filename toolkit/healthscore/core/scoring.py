"""The scoring engine: snapshots + score model -> one score row per account and ``as_of``.

Two steps, so the tuner can change weights without recalibrating:

* :func:`calibrate` turns each raw metric into a 0..100 sub-score (``sub_<metric>``) with the
  metric's calibration method, picking each account's variant from its attributes;
* :func:`combine` turns sub-scores into category scores, the overall score, band, coverage,
  null reason, trend, drivers, variant, override audit and the model stamp.

:func:`score` runs both. The rules:

* a null sub-score is N/A: it is left out and the weights of the metrics that are present are
  renormalised within their category, then across the categories that still have a metric;
* ``coverage`` is the share of the model's (variant's) nominal weight whose metric is present;
  below ``min_coverage`` the score and band are null and ``null_reason`` says why;
* ``drv_<m>`` is the metric's effective weight times its sub-score, so the drivers add up to the
  score; ``drvchg_<m>`` is the change of a driver since the account's previous snapshot, so those
  add up to the change of the computed score;
* overrides apply on top (see :func:`read_overrides`). A metric override replaces that sub-score
  before the score is combined, so the drivers include it. An overall override replaces ``score``
  and ``band`` only: the drivers still explain the computed score, which is kept in
  ``override_computed_score``; ``score_change_*`` are changes of the reported score.

>>> import healthscore as hs, polars as pl, datetime as dt
>>> from healthscore.spec.model import ScoreModel, Metric, Category, Band, DEFAULT_BANDS
>>> model = ScoreModel("demo", "1", [Metric("logins", "login_days", "usage", params={"points": [[0, 0], [5, 100]]}),
...                                  Metric("csat", "csat", "support", params={"points": [[1, 0], [5, 100]]})],
...                    {"usage": Category("usage", 2), "support": Category("support", 1)},
...                    [Band(*b) for b in DEFAULT_BANDS], min_coverage=0.5)
>>> snaps = pl.DataFrame({"account_id": ["a", "b"], "as_of": [dt.date(2026, 1, 5)] * 2,
...                       "login_days": [5.0, 2.5], "csat": [3.0, None]})
>>> hs.score(snaps, model).select("account_id", pl.col("score").round(2), "band", pl.col("coverage").round(3)).rows()
[('a', 83.33, 'green', 1.0), ('b', 50.0, 'yellow', 0.667)]
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import operator
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import polars as pl

from healthscore.core import calibration
from healthscore.core.calibration import ratio
from healthscore.errors import HealthscoreError
from healthscore.io import files
from healthscore.io.stream import SnapshotScan
from healthscore.spec.model import ModelError, ScoreModel

KEYS = ("account_id", "as_of")
OVERALL = "overall"
AUDIT_COLUMNS = ("override_value", "override_target", "override_reason", "override_author", "override_computed_score")
_EPS = 1e-12
# Scoring is wide and row-wise (dozens of columns per row, no joins): polars' in-memory engine ran
# it about 3x faster than the streaming engine on 1M rows x 20 metrics, and keeps row order.
ENGINE: Final = "in-memory"


def _add(terms: list[pl.Expr]) -> pl.Expr:
    """Sum of non-null terms, always added left to right.

    ``pl.sum_horizontal`` may add its inputs in a different order from run to run, which changes
    the last bit of a float sum: a score must not depend on the run (band edges, report hashes).
    """
    terms = list(terms)
    if len(terms) < 64:
        return functools.reduce(operator.add, terms)
    # A chain of thousands of nested additions makes polars' planner slow down quadratically
    # (3,000 metrics: minutes); a fold adds the same terms in the same order, one column at a time.
    return pl.fold(acc=terms[0], function=operator.add, exprs=terms[1:], returns_scalar=False)


Frame = pl.DataFrame | pl.LazyFrame


class OverrideError(ModelError):
    """An override file is wrong (unknown account or metric, bad value, missing reason...)."""


class ScoresError(HealthscoreError, ValueError):
    """A score frame cannot be used as it is: produced by another model, or with repeated
    (account_id, as_of) rows."""


def check_scores(
    scores: Frame,
    model: ScoreModel | None = None,
    *,
    scores_source: str = "the scores",
    model_source: str = "the model",
) -> None:
    """Refuse a score frame that does not belong to ``model`` or holds one snapshot twice.

    Every score row carries the ``model_hash`` of the model that produced it; reports must use
    that same model, or they would show the areas and metrics of one model beside the score of
    another. Raises :class:`ScoresError` naming both hashes and both sources, or the repeated
    rows (1-based row numbers). Reads only the key and hash columns of a lazy frame.

    >>> import polars as pl, datetime as dt
    >>> f = pl.DataFrame({"account_id": ["a", "a"], "as_of": [dt.date(2026, 1, 5)] * 2, "model_hash": ["h1"] * 2})
    >>> check_scores(f)
    Traceback (most recent call last):
    ...
    healthscore.core.scoring.ScoresError: the scores: 2 rows repeat an (account_id, as_of) pair: rows 1 and 2 (account 'a', as_of 2026-01-05); keep one score row per account and date (score the snapshots again without the repeats)
    """
    lf = scores.lazy()
    columns = lf.collect_schema().names()
    missing = [k for k in KEYS if k not in columns]
    if missing:
        raise ScoresError(
            f"{scores_source}: missing column(s) {missing}; pass a score frame written by 'healthscore score'"
        )
    if model is not None:
        if "model_hash" not in columns:
            raise ScoresError(
                f"{scores_source}: has no model_hash column, so the model that produced it is "
                f"unknown; score the snapshots again with {model_source} ('healthscore score')"
            )
        hashes = (
            lf.select(pl.col("model_hash").cast(pl.String))
            .unique()
            .collect()["model_hash"]
            .drop_nulls()
            .sort()
            .to_list()
        )
        wrong = [h for h in hashes if h != model.hash]
        if wrong or not hashes:
            found = ", ".join(hashes) if hashes else "none"
            raise ScoresError(
                f"{scores_source} were produced by model hash {found}, but {model_source} "
                f"({model.name} {model.version}) has hash {model.hash}; pass the model file that produced "
                f"these scores, or score the snapshots again with {model_source} ('healthscore score')"
            )
    keys = lf.select(*KEYS).with_row_index("__row", offset=1)
    dup = keys.filter(pl.struct(*KEYS).is_duplicated()).sort(*KEYS, "__row").collect()
    if dup.height:
        first = dup.filter((pl.col("account_id") == dup["account_id"][0]) & (pl.col("as_of") == dup["as_of"][0]))
        rows = first["__row"].to_list()
        shown = (
            " and ".join(str(r) for r in rows[:5])
            if len(rows) <= 2
            else ", ".join(str(r) for r in rows[:5]) + (" ..." if len(rows) > 5 else "")
        )
        more = f"; {dup.height} repeated rows in all" if dup.height > len(rows) else ""
        raise ScoresError(
            f"{scores_source}: {dup.height} rows repeat an (account_id, as_of) pair: rows {shown} "
            f"(account {first['account_id'][0]!r}, as_of {first['as_of'][0]}){more}; keep one score row per "
            "account and date (score the snapshots again without the repeats)"
        )


# ---------------------------------------------------------------- calibrate
def calibrate(snapshots: Frame, model: ScoreModel) -> pl.DataFrame:
    """Keys, attribute columns, ``variant`` and one ``sub_<metric>`` (0..100 or null) per metric.

    Attribute columns are all input columns except the model's metric columns. Each row gets the
    variant whose filter it matches (``default`` when none); a row matching two variants is a
    :class:`ModelError` naming both and the account. Sorted by ``account_id``, ``as_of``.
    """
    lf = snapshots.lazy()
    columns = lf.collect_schema().names()
    _check_keys(columns)
    model.check_data(snapshots)
    metric_cols = {m.column for m in model.metrics}
    attrs = [c for c in columns if c not in metric_cols and c not in KEYS and c != "variant"]
    nvar = (
        pl.sum_horizontal([v.matches().cast(pl.Int32) for v in model.variants])
        if model.variants
        else pl.lit(0, dtype=pl.Int32)
    )
    out = (
        lf.with_columns(_variant_expr(model).alias("variant"), nvar.alias("__nvar"))
        .select(*KEYS, *attrs, "variant", "__nvar", *[_sub_expr(model, m.name) for m in model.metrics])
        .collect(engine=ENGINE)
    )
    if model.variants and cast(int, out["__nvar"].max()) > 1:
        _raise_conflict(out, model)
    out = out.drop("__nvar")
    return out if _is_sorted(out) else out.sort(KEYS)


def _check_keys(columns: Iterable[str]) -> None:
    missing = [k for k in KEYS if k not in set(columns)]
    if missing:
        raise ModelError(f"snapshots: missing key column(s) {missing}; every snapshot row needs account_id and as_of")


def _variant_expr(model: ScoreModel) -> pl.Expr:
    if not model.variants:
        return pl.lit("default", dtype=pl.String)
    chain: Any = pl
    for v in model.variants:
        chain = chain.when(v.matches()).then(pl.lit(v.name))
    return cast(pl.Expr, chain.otherwise(pl.lit("default")))


def _raise_conflict(frame: pl.DataFrame, model: ScoreModel) -> None:
    bad = frame.filter(pl.col("__nvar") > 1).sort(KEYS).row(0, named=True)
    names = [v.name for v in model.variants if all(bad.get(col) in vals for col, vals in v.filter.items())]
    n = frame.filter(pl.col("__nvar") > 1).height
    raise ModelError(
        f"{model._where()}variants: account {bad['account_id']} (as_of {bad['as_of']}) matches variants "
        f"{' and '.join(repr(x) for x in names)} ({n} snapshot rows match more than one variant); "
        "make the variant filters exclusive"
    )


def _calibrated(model: ScoreModel, metric_name: str, variant: str | None) -> pl.Expr:
    """Sub-score expression of one metric as one variant defines it (N/A policy applied)."""

    resolved = model.resolve(variant)
    i, m = next((i, m) for i, m in enumerate(resolved.metrics, 1) if m.name == metric_name)
    missing = sorted(calibration.METHODS[m.method].fitted_keys - set(m.params))
    if missing:
        where = f" (variant {variant})" if variant else ""
        raise ModelError(
            f"{model._where()}metrics[{i}] ({m.name}).params{where}: method {m.method} learns "
            f"{', '.join(missing)} from data and has not been fitted; run "
            "hs.fit_calibration(model, snapshots) and save the model"
        )
    try:
        expr = calibration.calibrate_expr(m.column, m.method, m.params, m.direction)
    except ValueError as exc:
        raise ModelError(f"{model._where()}metrics[{i}] ({m.name}).params: {exc}") from None
    if m.na_score is not None:
        expr = expr.fill_null(m.na_score)
    return expr


def _sub_expr(model: ScoreModel, name: str) -> pl.Expr:
    """``sub_<name>``: the base calibration, replaced for the variants that change the metric."""
    expr = _calibrated(model, name, None)
    special = [v for v in model.variants if name in v.params or name in v.disabled]
    if special:
        chain: Any = pl
        for v in special:
            chain = chain.when(pl.col("variant") == v.name).then(
                pl.lit(None, dtype=pl.Float64) if name in v.disabled else _calibrated(model, name, v.name)
            )
        expr = chain.otherwise(expr)
    return expr.cast(pl.Float64).alias(f"sub_{name}")


# ---------------------------------------------------------------- combine
def _per_variant(model: ScoreModel, values: dict[str | None, float]) -> pl.Expr:
    """A number that depends on the row's variant (a literal when every variant agrees)."""
    default = values[None]
    differing = {k: v for k, v in values.items() if k is not None and v != default}
    if not differing:
        return pl.lit(default, dtype=pl.Float64)
    chain: Any = pl
    for name, value in differing.items():
        chain = chain.when(pl.col("variant") == name).then(pl.lit(value, dtype=pl.Float64))
    return cast(pl.Expr, chain.otherwise(pl.lit(default, dtype=pl.Float64)))


PerVariant = dict[str, dict[str | None, float]]  # name -> {variant (None = default): value}


def weight_table(model: ScoreModel) -> tuple[PerVariant, PerVariant, PerVariant]:
    """Per variant: each metric's raw weight, each category's weight and each metric's nominal share
    of the total weight (0 where its category holds no weight). The one rule every engine follows.

    >>> import healthscore as hs
    >>> metric_w, cat_w, share = weight_table(hs.load_model(hs.resources.sample_model()))
    >>> round(sum(v[None] for v in share.values()), 9)
    1.0
    """
    resolved: dict[str | None, ScoreModel] = {
        None: model.resolve(None),
        **{v.name: model.resolve(v.name) for v in model.variants},
    }
    metric_w: PerVariant = {m.name: {} for m in model.metrics}
    cat_w: PerVariant = {c: {} for c in model.categories}
    share: PerVariant = {m.name: {} for m in model.metrics}
    for key, r in resolved.items():
        shares = r.nominal_shares()
        for c, cat in r.categories.items():
            cat_w[c][key] = cat.weight
        for m in r.metrics:
            metric_w[m.name][key] = m.weight
            share[m.name][key] = shares[m.name]
    return metric_w, cat_w, share


def _weights(model: ScoreModel) -> tuple[dict[str, pl.Expr], dict[str, pl.Expr], dict[str, pl.Expr]]:
    """Per metric: raw weight; per category: weight; per metric: nominal share, as expressions."""
    metric_w, cat_w, share = weight_table(model)
    return (
        {k: _per_variant(model, v) for k, v in metric_w.items()},
        {k: _per_variant(model, v) for k, v in cat_w.items()},
        {k: _per_variant(model, v) for k, v in share.items()},
    )


def _weights_finite(model: ScoreModel) -> bool:
    """Do the weights of every variant add up to finite numbers (so shares are not 0, NaN or inf)?"""
    for r in [model.resolve(None), *(model.resolve(v.name) for v in model.variants)]:
        per_cat: dict[str, float] = {}
        for m in r.metrics:
            per_cat[m.category] = per_cat.get(m.category, 0.0) + m.weight
        sums = [sum(c.weight for c in r.categories.values()), *per_cat.values()]
        if not all(math.isfinite(x) for x in sums):
            return False
    return True


def combine(
    subscores: pl.DataFrame, model: ScoreModel, *, overrides: pl.DataFrame | str | os.PathLike[str] | None = None
) -> pl.DataFrame:
    """Everything after calibration: categories, score, band, coverage, trend, drivers, stamp.

    ``subscores`` is the output of :func:`calibrate` (weights, bands and coverage of ``model`` may
    differ from the model used to calibrate). Output columns follow the "Score frame" contract.
    """
    columns = subscores.columns
    _check_keys(columns)
    missing = [f"sub_{m.name}" for m in model.metrics if f"sub_{m.name}" not in columns]
    if missing:
        raise ModelError(f"{model._where()}the sub-score frame lacks {missing}; run calibrate() with this model")
    frame = subscores
    if "variant" not in columns:
        model.check_columns([*columns, *(m.column for m in model.metrics)])
        frame = frame.with_columns(_variant_expr(model).alias("variant"))
    else:
        unknown = set(frame["variant"].unique().drop_nulls()) - {"default", *(v.name for v in model.variants)}
        if unknown:
            raise ModelError(
                f"{model._where()}variants: sub-scores carry variant(s) {sorted(unknown)} "
                "that the model does not define; calibrate again with this model"
            )
    sub_cols = {f"sub_{m.name}" for m in model.metrics}
    derived = ("cat_", "drv_", "drvchg_", "override_")
    attrs = [
        c
        for c in frame.columns
        if c not in sub_cols
        and c not in KEYS
        and c != "variant"
        and not c.startswith(derived)
        and c not in _OUTPUT_SCALARS
    ]
    frame = frame.select(*KEYS, *attrs, "variant", *sorted(sub_cols, key=_metric_order(model)))
    if not _is_sorted(frame):
        frame = frame.sort(KEYS)

    audit: pl.DataFrame | None = None
    if overrides is not None:
        table = read_overrides(overrides, model, accounts=frame["account_id"])
        frame, audit = _apply_overrides(frame, table, model)

    metric_w, cat_w, share = _weights(model)
    by_cat = {c: [m.name for m in model.metrics if m.category == c] for c in model.categories}
    sub = {m.name: pl.col(f"sub_{m.name}") for m in model.metrics}
    present_w = {n: pl.when(sub[n].is_not_null()).then(metric_w[n]).otherwise(0.0) for n in sub}

    cat_of = {m.name: m.category for m in model.metrics}
    # pw = weight if present else 0; ps = pw x sub-score (both inline: materialising them costs
    # more in memory traffic than computing them twice); cw = present weight of the category;
    # f = the category's share of the score per unit of present weight, so drv = ps x f.
    ps = {n: pl.when(sub[n].is_not_null()).then(metric_w[n] * sub[n]).otherwise(0.0) for n in sub}
    lf = (
        frame.lazy()
        .with_columns(
            _add([pl.when(sub[n].is_not_null()).then(share[n]).otherwise(0.0) for n in sub])
            .clip(0.0, 1.0)
            .alias("coverage"),
            *[_add([present_w[n] for n in names] or [pl.lit(0.0)]).alias(f"__cw_{c}") for c, names in by_cat.items()],
        )
        .with_columns(
            *[
                pl.when(pl.col(f"__cw_{c}") > 0)
                .then(ratio(_add([ps[n] for n in names] or [pl.lit(0.0)]), pl.col(f"__cw_{c}")))
                .clip(0.0, 100.0)
                .alias(f"cat_{c}")
                for c, names in by_cat.items()
            ],
            _add([pl.when(pl.col(f"__cw_{c}") > 0).then(cat_w[c]).otherwise(0.0) for c in by_cat]).alias("__tot"),
            # coverage > 0 exactly when some category with weight has a metric present
            ((pl.col("coverage") > 0) & (pl.col("coverage") >= model.min_coverage - _EPS)).alias("__ok"),
        )
        .with_columns(
            *[
                pl.when(pl.col("__ok"))
                .then(
                    pl.when(pl.col(f"__cw_{c}") > 0)
                    .then(ratio(ratio(cat_w[c], pl.col("__tot")), pl.col(f"__cw_{c}")))
                    .otherwise(0.0)
                )
                .alias(f"__f_{c}")
                for c in by_cat
            ],
        )
        .with_columns(
            *[(ps[n] * pl.col(f"__f_{cat_of[n]}")).alias(f"drv_{n}") for n in sub],
        )
        .with_columns(
            # clipped only against float rounding (100.00000000000001); drivers still sum to it within 1e-12
            pl.when(pl.col("__ok")).then(_add([pl.col(f"drv_{n}") for n in sub]).clip(0.0, 100.0)).alias("__computed"),
        )
        .with_columns(
            # weights at the edge of float range give NaN or inf: such a score is null, never banded
            (
                (pl.col("__ok") & ~pl.col("__computed").is_finite().fill_null(False))
                | pl.lit(not _weights_finite(model))
            ).alias("__nonfinite"),
        )
        .with_columns(
            pl.when(~pl.col("__nonfinite")).then(pl.col("__computed")).alias("__computed"),
        )
    )
    if audit is not None:
        lf = lf.join(audit.lazy(), on=list(KEYS), how="left")
    else:
        lf = lf.with_columns(
            pl.lit(None, dtype=pl.Float64).alias("override_value"),
            *[pl.lit(None, dtype=pl.String).alias(c) for c in AUDIT_COLUMNS[1:4]],
        )
    lf = lf.with_columns(
        pl.coalesce(pl.col("override_value"), pl.col("__computed")).alias("score"),
        pl.when(pl.col("override_value").is_not_null()).then(pl.col("__computed")).alias("override_computed_score"),
    ).with_columns(
        model.band_of(pl.col("score")).alias("band"),
    )
    # Trend and driver changes need each account's snapshots in date order: the narrow input was
    # sorted; the streaming engine may still reorder, so check (cheap) before sorting the wide frame.
    out = lf.collect(engine=ENGINE)
    if not _is_sorted(out):
        out = out.sort(KEYS)
    out = out.with_columns(
        _null_reason(out, model, metric_w),
        (pl.col("account_id") == pl.col("account_id").shift(1)).alias("__same1"),
        (pl.col("account_id") == pl.col("account_id").shift(4)).alias("__same4"),
    )
    same1, same4 = pl.col("__same1"), pl.col("__same4")
    out = out.with_columns(
        pl.when(same1).then(pl.col("score") - pl.col("score").shift(1)).alias("score_change_1"),
        pl.when(same4).then(pl.col("score") - pl.col("score").shift(4)).alias("score_change_4"),
        *[pl.when(same1).then(pl.col(f"drv_{n}") - pl.col(f"drv_{n}").shift(1)).alias(f"drvchg_{n}") for n in sub],
        pl.lit(model.name).alias("model_name"),
        pl.lit(model.version).alias("model_version"),
        pl.lit(model.hash).alias("model_hash"),
    )
    names = [m.name for m in model.metrics]
    return out.select(
        *KEYS,
        *attrs,
        *[f"sub_{n}" for n in names],
        *[f"cat_{c}" for c in model.categories],
        "score",
        "band",
        "coverage",
        "null_reason",
        "score_change_1",
        "score_change_4",
        *[f"drv_{n}" for n in names],
        *[f"drvchg_{n}" for n in names],
        "variant",
        *AUDIT_COLUMNS,
        "model_name",
        "model_version",
        "model_hash",
    )


_OUTPUT_SCALARS = {
    "score",
    "band",
    "coverage",
    "null_reason",
    "score_change_1",
    "score_change_4",
    "model_name",
    "model_version",
    "model_hash",
}


def _metric_order(model: ScoreModel) -> Callable[[str], int]:
    order = {f"sub_{m.name}": i for i, m in enumerate(model.metrics)}
    return lambda c: order[c]


def _is_sorted(frame: pl.DataFrame) -> bool:
    """Are the rows in (account_id, as_of) order? One vectorised pass, no copy of the frame."""
    acc, day = pl.col("account_id"), pl.col("as_of")
    later = (acc > acc.shift(1)) | ((acc == acc.shift(1)) & (day >= day.shift(1)))
    return bool(frame.select(later.fill_null(True).all()).item())


def _null_reason(frame: pl.DataFrame, model: ScoreModel, metric_w: dict[str, pl.Expr]) -> pl.Series:
    """``null_reason``: why the score is null (nothing present, or coverage below the minimum).

    Spelled out only for the rows without a score (usually few), then put back in place.
    """
    rows = frame.with_row_index("__i").filter(pl.col("score").is_null())
    missing = pl.concat_str(
        [pl.when(pl.col(f"sub_{n}").is_null() & (w > 0)).then(pl.lit(n)) for n, w in metric_w.items()],
        separator=", ",
        ignore_nulls=True,
    )
    # rounded down to 0.1%, so a coverage just under the minimum never prints as equal to it
    # formatted from whole tenths: a float division here printed 49.900000000000006 in some runs
    tenths = (pl.col("coverage") * 1000).floor().cast(pl.Int64)
    pct = (tenths // 10).cast(pl.String) + pl.lit(".") + (tenths % 10).cast(pl.String)
    reason = (
        pl.when(pl.col("__nonfinite"))
        .then(
            pl.lit(
                "score is not a finite number: the weights are too far apart for floating point; "
                "use relative weights between 1e-6 and 1e6"
            )
        )
        .when(pl.col("coverage") <= 0)
        .then(pl.lit("no metric present (missing: ") + missing + pl.lit(")"))
        .otherwise(
            pl.lit("coverage ")
            + pct
            + pl.lit(f"% below minimum {model.min_coverage * 100:g}% (missing: ")
            + missing
            + pl.lit(")")
        )
    )
    out = pl.repeat(None, frame.height, dtype=pl.String, eager=True).alias("null_reason")
    if rows.height:
        out = out.scatter(rows["__i"], rows.select(reason).to_series())
    return out


# ---------------------------------------------------------------- overrides
def read_overrides(
    source: pl.DataFrame | str | os.PathLike[str], model: ScoreModel, accounts: pl.Series | Iterable[str] | None = None
) -> pl.DataFrame:
    """Read and check manual overrides (a frame, or a CSV / Parquet file).

    Columns: ``account_id``, ``metric`` (a metric name; empty, null or ``overall`` for the
    overall score), ``value`` (0..100), ``reason``, ``author``, ``created``, ``expires`` (dates;
    empty = no limit). An override applies to snapshots with ``created <= as_of <= expires``;
    when two apply to the same account, metric and snapshot, the one created last wins.
    Unknown accounts (when ``accounts`` is given) and unknown metrics raise :class:`OverrideError`.
    """
    if isinstance(source, pl.DataFrame):
        label, raw = "overrides", source
    else:
        path = Path(source)
        label = path.name
        if not path.exists():
            raise FileNotFoundError(f"overrides file {path} does not exist")
        raw = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path, infer_schema=False)
    need = ["account_id", "value", "reason", "author"]
    missing = [c for c in need if c not in raw.columns]
    if missing:
        raise OverrideError(
            f"{label}: missing column(s) {missing}; an override needs account_id, metric, "
            "value, reason, author, created, expires"
        )
    frame = raw.with_row_index("__row", offset=1)
    for col in ("metric", "created", "expires"):
        if col not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(col))
    frame = frame.with_columns(
        pl.col("account_id").cast(pl.String),
        pl.col("metric").cast(pl.String).str.strip_chars().replace("", None).fill_null(OVERALL),
        pl.col("value").cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False).alias("__value"),
        pl.col("value").cast(pl.String).alias("__value_text"),
        pl.col("reason").cast(pl.String),
        pl.col("author").cast(pl.String),
        *[_as_date(pl.col(c)).alias(c) for c in ("created", "expires")],
        *[pl.col(c).cast(pl.String).alias(f"__{c}_text") for c in ("created", "expires")],
    )
    problems: list[str] = []

    def report(mask: pl.Expr, what: str | Callable[..., str]) -> None:
        bad = frame.filter(mask)
        for r in bad.head(5).iter_rows(named=True):
            problems.append(
                f"{label}: row {r['__row']} (account {r['account_id']}, metric {r['metric']}): {what(r)}"
                if callable(what)
                else f"{label}: row {r['__row']} (account {r['account_id']}, metric {r['metric']}): {what}"
            )
        if bad.height > 5:
            problems.append(f"{label}: ... and {bad.height - 5} more rows like that")

    names = [m.name for m in model.metrics]
    report(pl.col("account_id").is_null(), "account_id is empty")
    report(
        ~pl.col("metric").is_in([*names, OVERALL]),
        lambda r: f"unknown metric {r['metric']!r}; use one of {names} or 'overall'",
    )
    report(
        pl.col("__value").is_null() | ~pl.col("__value").is_between(0, 100),
        lambda r: f"value {r['__value_text']!r} must be a number in 0..100",
    )
    for col in ("reason", "author"):
        report(
            pl.col(col).is_null() | (pl.col(col).str.strip_chars() == ""),
            f"{col} is empty; every override needs a {col} so it stays auditable",
        )
    for col in ("created", "expires"):
        report(
            pl.col(col).is_null()
            & pl.col(f"__{col}_text").is_not_null()
            & (pl.col(f"__{col}_text").str.strip_chars() != ""),
            lambda r, col=col: f"{col} {r[f'__{col}_text']!r} is not a date (use YYYY-MM-DD)",
        )
    report(pl.col("expires") < pl.col("created"), "expires is before created")
    if accounts is not None:
        known = pl.Series(list(accounts) if not isinstance(accounts, pl.Series) else accounts).cast(pl.String)
        report(
            ~pl.col("account_id").is_in(known.unique().implode()),
            "unknown account: it has no snapshot in the data being scored",
        )
    if problems:
        raise OverrideError("\n".join(problems))
    return frame.select(
        "account_id",
        "metric",
        pl.col("__value").alias("value"),
        "reason",
        "author",
        "created",
        "expires",
        pl.col("__row").alias("row"),
    ).sort("row")


def _as_date(expr: pl.Expr) -> pl.Expr:
    text = expr.cast(pl.String).str.strip_chars().str.slice(0, 10)
    return text.str.to_date("%Y-%m-%d", strict=False)


def _apply_overrides(frame: pl.DataFrame, table: pl.DataFrame, model: ScoreModel) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Apply metric overrides to the sub-scores; return the frame and the per-row audit table."""
    active = (
        frame.select(KEYS)
        .join(table, on="account_id", how="inner")
        .filter(
            (pl.col("created").is_null() | (pl.col("created") <= pl.col("as_of")))
            & (pl.col("expires").is_null() | (pl.col("expires") >= pl.col("as_of")))
        )
        .sort([*KEYS, "metric", "created", "row"], nulls_last=False)
        .group_by([*KEYS, "metric"])
        .last()
    )
    metric_rows = active.filter(pl.col("metric") != OVERALL)
    if metric_rows.height:
        wide = metric_rows.pivot(on="metric", index=list(KEYS), values="value")
        wide = wide.rename({c: f"__ov_{c}" for c in wide.columns if c not in KEYS})
        frame = (
            frame.join(wide, on=list(KEYS), how="left")
            .with_columns(
                *[
                    pl.coalesce(pl.col(f"__ov_{n}"), pl.col(f"sub_{n}")).alias(f"sub_{n}")
                    for n in (c[5:] for c in wide.columns if c.startswith("__ov_"))
                ]
            )
            .drop([c for c in wide.columns if c.startswith("__ov_")])
        )
    audit = (
        active.sort([*KEYS, "metric"])
        .group_by(KEYS)
        .agg(
            pl.col("value").filter(pl.col("metric") == OVERALL).first().alias("override_value"),
            pl.col("metric").str.join(", ").alias("override_target"),
            (pl.col("metric") + pl.lit(": ") + pl.col("reason")).str.join("; ").alias("override_reason"),
            pl.col("author").unique(maintain_order=True).str.join(", ").alias("override_author"),
        )
    )
    return frame, audit


# ---------------------------------------------------------------- score
def score(
    snapshots: Frame,
    model: ScoreModel,
    *,
    overrides: pl.DataFrame | str | os.PathLike[str] | None = None,
    as_of: dt.date | str | None = None,
) -> pl.DataFrame:
    """Score every snapshot (or only the latest snapshot date on or before ``as_of``).

    Past snapshots are scored with their history, so trend and driver changes are right even
    when only one date is returned. See the module docstring for the rules.
    """
    frame = snapshots.lazy()
    cutoff = _cutoff(frame, as_of)
    if cutoff is not None:
        frame = frame.filter(pl.col("as_of") <= cutoff)
    out = combine(calibrate(frame, model), model, overrides=overrides)
    return out.filter(pl.col("as_of") == cutoff) if cutoff is not None else out


def _cutoff(frame: pl.LazyFrame, as_of: dt.date | str | None) -> dt.date | None:
    """The latest snapshot date on or before ``as_of`` across the whole frame (None: no as_of)."""
    if as_of is None:
        return None
    wanted = dt.date.fromisoformat(as_of) if isinstance(as_of, str) else as_of
    cutoff = cast(
        "dt.date | None", frame.filter(pl.col("as_of") <= wanted).select(pl.col("as_of").max()).collect().item()
    )
    if cutoff is None:
        first = frame.select(pl.col("as_of").min()).collect().item()
        raise ModelError(f"snapshots: no snapshot on or before {wanted} (the first is {first})")
    return cutoff


def score_in_chunks(
    snapshots: pl.DataFrame,
    model: ScoreModel,
    *,
    overrides: pl.DataFrame | str | os.PathLike[str] | None = None,
    as_of: dt.date | str | None = None,
    chunk_accounts: int = 20_000,
    progress: bool = True,
) -> pl.DataFrame:
    """:func:`score` over groups of whole accounts, with a progress bar (for large inputs).

    Each chunk holds every snapshot of its accounts, so trend and drivers are the same as in one go;
    with ``as_of`` every chunk returns the same (portfolio-wide) snapshot date.
    """
    from tqdm.auto import tqdm  # progress bars are loaded only for long runs

    cutoff = _cutoff(snapshots.lazy(), as_of)
    if cutoff is not None:
        snapshots = snapshots.filter(pl.col("as_of") <= cutoff)
    accounts = snapshots["account_id"].unique().sort()
    if overrides is not None:
        overrides = read_overrides(overrides, model, accounts=accounts)
    chunks = list(_chunks(accounts, chunk_accounts))
    parts = []
    for ids in tqdm(chunks, desc=f"scoring {model.name}", unit="chunk", disable=not progress or len(chunks) < 2):
        part = snapshots.filter(pl.col("account_id").is_in(ids.implode()))
        ov = None if overrides is None else overrides.filter(pl.col("account_id").is_in(ids.implode()))
        out = score(part, model, overrides=ov)
        parts.append(out.filter(pl.col("as_of") == cutoff) if cutoff is not None else out)
    return pl.concat(parts, how="vertical_relaxed").sort(KEYS)


# ---------------------------------------------------------------- streaming to a file
ROWS_PER_PART = 200_000


@dataclass
class ScoredFile:
    """What :func:`score_to_file` wrote: the file, its row and account counts, and each
    account's latest score row (account_id, as_of, score, band) for a summary such as
    :func:`band_summary`."""

    path: Path
    rows: int
    accounts: int
    latest: pl.DataFrame
    as_of: dt.date | None = None

    def __repr__(self) -> str:
        return f"ScoredFile({self.path}, {self.rows:,} rows, {self.accounts:,} accounts)"


def history_rows(model: ScoreModel) -> int:
    """How many snapshots of an account, up to and including a date, decide its score on that
    date: the date itself, the four before it (``score_change_4``; ``drvchg_*`` needs one) and,
    for a ``trend`` metric of window w, the 2w - 1 rows its oldest of those reads.

    >>> from healthscore.spec.model import ScoreModel, Metric, Category, Band, DEFAULT_BANDS
    >>> m = ScoreModel("d", "1", [Metric("u", "users", "usage", method="trend",
    ...                                  params={"window": 4, "points": [[-1, 0], [1, 100]]})],
    ...                {"usage": Category("usage", 1)}, [Band(*b) for b in DEFAULT_BANDS])
    >>> history_rows(m)
    12
    """
    windows = [1]
    for key in (None, *(v.name for v in model.variants)):
        for m in model.resolve(key).metrics:
            if m.method == "trend":
                windows.append(2 * int(m.params.get("window", 4)))
    return 4 + max(windows)


def _parts(counts: pl.DataFrame, rows_per_part: int) -> list[list[str]]:
    """Accounts (sorted) grouped into runs of about ``rows_per_part`` rows; an account is never split."""
    parts: list[list[str]] = []
    current: list[str] = []
    size = 0
    for aid, n in counts.sort("account_id").iter_rows():
        if current and size + n > rows_per_part:
            parts.append(current)
            current, size = [], 0
        current.append(aid)
        size += n
    if current:
        parts.append(current)
    return parts


class _PartWriter:
    """Writes score parts one after the other into one Parquet or CSV file (atomically)."""

    def __init__(self, tmp: Path, suffix: str) -> None:
        self.tmp, self.csv = tmp, suffix == ".csv"
        self.schema: pl.Schema | None = None
        self._writer: Any = None
        self._fh: Any = None

    def write(self, part: pl.DataFrame) -> None:
        if self.schema is None:
            self.schema = part.schema
        else:
            part = part.cast(self.schema)  # the same types in every part, as one frame would have
        if self.csv:
            if self._fh is None:
                self._fh = open(self.tmp, "wb")
                part.write_csv(self._fh, include_header=True)
            else:
                part.write_csv(self._fh, include_header=False)
            return
        table = part.to_arrow()
        if self._writer is None:
            import pyarrow.parquet as pq  # only the streaming writer needs pyarrow

            # dictionary pages for the text columns only: on float columns they cost time and gain nothing
            text = [n for n, t in part.schema.items() if t in (pl.String, pl.Categorical)]
            self._writer = pq.ParquetWriter(
                self.tmp, table.schema, compression="zstd", write_statistics=True, use_dictionary=text
            )
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._fh is not None:
            self._fh.close()


def score_to_file(
    snapshots: Any,
    model: ScoreModel,
    out: str | os.PathLike[str],
    *,
    overrides: pl.DataFrame | str | os.PathLike[str] | None = None,
    as_of: dt.date | str | None = None,
    rows_per_part: int = ROWS_PER_PART,
    progress: bool = False,
) -> ScoredFile:
    """Score snapshots part by part and write the scores to ``out`` (.parquet or .csv) as they come.

    ``snapshots`` is a :class:`healthscore.io.stream.SnapshotScan` (see ``scan_snapshots``), a
    frame or a lazy frame. Each part holds whole accounts, about ``rows_per_part`` rows, so
    memory follows the part and not the table, and the scores are the same as :func:`score`'s
    (bit for bit, same row order). With ``as_of`` only the dates that date needs are read: the
    last :func:`history_rows` snapshot dates on or before it (and, for the few accounts with
    gaps there, their earlier rows), so memory does not grow with the length of the history.
    The file appears whole or not at all.

    >>> import polars as pl, datetime as dt, tempfile, pathlib
    >>> from healthscore.spec.model import ScoreModel, Metric, Category, Band, DEFAULT_BANDS
    >>> model = ScoreModel("demo", "1", [Metric("logins", "login_days", "usage", params={"points": [[0, 0], [5, 100]]})],
    ...                    {"usage": Category("usage", 1)}, [Band(*b) for b in DEFAULT_BANDS])
    >>> snaps = pl.DataFrame({"account_id": ["a", "b"], "as_of": [dt.date(2026, 1, 5)] * 2, "login_days": [5.0, 2.5]})
    >>> done = score_to_file(snaps, model, pathlib.Path(tempfile.mkdtemp()) / "scores.parquet", rows_per_part=1)
    >>> pl.read_parquet(done.path).equals(score(snaps, model))
    True
    """
    from tqdm.auto import tqdm  # progress bars are loaded only for long runs

    scan = snapshots if isinstance(snapshots, SnapshotScan) else SnapshotScan.of_frame(snapshots)
    target = Path(out)
    if target.suffix not in (".parquet", ".csv"):
        raise ValueError(f"{target}: write scores to a .parquet or .csv file")
    keys = scan.keys()
    day = scan.date()
    cutoff = _cutoff(keys, as_of)
    window = start = None
    if cutoff is None:
        counts = keys.group_by("account_id").len().collect(engine="streaming")
        todo = [(ids, pl.col("account_id").cast(pl.String).is_in(ids)) for ids in _parts(counts, rows_per_part)]
        short: set[str] = set()
    else:
        depth = history_rows(model)
        dates = (
            keys.filter(pl.col("as_of") <= cutoff)
            .select(pl.col("as_of").unique())
            .collect(engine="streaming")["as_of"]
            .sort(descending=True)
        )
        start = dates[depth - 1] if dates.len() >= depth else None
        window = (day <= cutoff) if start is None else ((day <= cutoff) & (day >= start))
        near = keys.filter(pl.col("as_of") <= cutoff)
        near = near if start is None else near.filter(pl.col("as_of") >= start)
        counts = (
            near.group_by("account_id")
            .agg(pl.len().alias("len"), (pl.col("as_of") == cutoff).any().alias("current"))
            .filter(pl.col("current"))
            .collect(engine="streaming")
        )
        # an account with fewer rows than the depth in the window may have older rows it needs
        short = set() if start is None else set(counts.filter(pl.col("len") < depth)["account_id"])
        todo = [
            (ids, pl.col("account_id").cast(pl.String).is_in(ids) & window)
            for ids in _parts(counts.select("account_id", "len"), rows_per_part)
        ]
    table = None
    if overrides is not None:
        known = keys if cutoff is None else keys.filter(pl.col("as_of") <= cutoff)
        table = read_overrides(
            overrides,
            model,
            accounts=known.select(pl.col("account_id").unique()).collect(engine="streaming")["account_id"],
        )
    if not todo:  # nothing to score: read everything so the table's own problem is reported
        scan.read(pl.lit(True))
        raise ModelError(f"{scan.source}: no snapshot to score")

    n_rows, n_accounts, latest = 0, 0, []
    with (
        files.atomic_path(target) as tmp,
        tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp") as split_dir,
    ):
        bar = tqdm(total=len(todo), desc=f"scoring {model.name}", unit="part", disable=not progress or len(todo) < 2)
        # a large file is split by part once, so that each part reads its own rows, not the whole file
        bar.set_postfix_str("splitting the file by account")
        keep = None if window is None else (window | pl.col("account_id").cast(pl.String).is_in(list(short)))
        scans = scan.split([ids for ids, _ in todo], Path(split_dir), keep=keep) if len(todo) > 1 else [scan]
        bar.set_postfix_str("")
        writer = _PartWriter(tmp, target.suffix)
        try:
            for (ids, predicate), source in zip(todo, scans, strict=True):
                part = source.read(predicate)
                older = [a for a in ids if a in short]
                if older and start is not None:
                    earlier = source.read(
                        pl.col("account_id").cast(pl.String).is_in(older) & (day < start), allow_empty=True
                    )
                    if earlier.height:
                        part = pl.concat([earlier, part], how="vertical_relaxed").sort(KEYS)
                ov = None if table is None else table.filter(pl.col("account_id").is_in(ids))
                scored = combine(calibrate(part, model), model, overrides=ov)
                del part
                if cutoff is not None:
                    scored = scored.filter(pl.col("as_of") == cutoff)
                writer.write(scored)
                n_rows += scored.height
                n_accounts += scored["account_id"].n_unique()
                latest.append(
                    scored.group_by("account_id")
                    .agg(pl.all().sort_by("as_of").last())
                    .select("account_id", "as_of", "score", "band")
                )
                del scored
                bar.update()
        finally:
            writer.close()
            bar.close()
    return ScoredFile(target, n_rows, n_accounts, pl.concat(latest).sort("account_id"), cutoff)


def _chunks(ids: pl.Series, size: int) -> Iterator[pl.Series]:
    for start in range(0, len(ids), max(1, size)):
        yield ids.slice(start, size)


def band_summary(scores: pl.DataFrame, model: ScoreModel) -> pl.DataFrame:
    """Accounts per band (with a ``no score`` row) at each account's latest scored snapshot."""
    latest = scores.sort(KEYS).group_by("account_id").last()
    order = {b.name: i for i, b in enumerate(model.bands)}
    return (
        latest.with_columns(pl.col("band").fill_null("no score"))
        .group_by("band")
        .agg(pl.len().alias("accounts"), pl.col("score").mean().alias("mean_score"))
        .with_columns((pl.col("accounts") / pl.col("accounts").sum()).alias("share"))
        .sort(pl.col("band").replace_strict(order, default=len(order)))
    )
