"""Charts of model monitoring: how far each metric moved per period (PSI), and whether the score still ranks.

Both charts are built from aggregated figures only (one number per metric and period), never from
account rows.

>>> import polars as pl
>>> drift = pl.DataFrame({"period": ["2026Q1", "2026Q2"], "variable": ["score", "score"], "psi": [0.01, 0.3]})
>>> psi_chart(drift).to_dict()["layer"][0]["mark"]["type"]
'rect'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import altair as alt
import polars as pl

from healthscore.viz.charts import BAND_COLOURS, EXTRA_COLOURS, NA_COLOUR  # importing it enables the theme

__all__ = ["psi_chart", "auc_chart"]

_STABLE, _WATCH, _DRIFT = BAND_COLOURS["green"], BAND_COLOURS["yellow"], BAND_COLOURS["red"]
_AUC = EXTRA_COLOURS[1]


def psi_chart(frame: pl.DataFrame, *, watch: float = 0.1, drift: float = 0.25) -> alt.LayerChart:
    """PSI per variable (rows, the score first) and period (columns), coloured stable / watch / drift
    and labelled with the value (frame: ``Monitoring.drift``)."""
    high = drift
    frame = (
        frame.select("period", "variable", "psi")
        .with_columns(
            level=pl.when(pl.col("psi").is_nan())
            .then(pl.lit("no value"))
            .when(pl.col("psi") > high)
            .then(pl.lit(f"drift (above {high:g})"))
            .when(pl.col("psi") >= watch)
            .then(pl.lit(f"watch ({watch:g} to {high:g})"))
            .otherwise(pl.lit(f"stable (below {watch:g})"))
        )
        .with_columns(pl.col("psi").fill_nan(None))
    )
    names = frame["variable"].unique(maintain_order=True).to_list()
    order = ["score", *sorted(n for n in names if n != "score")] if "score" in names else sorted(names)
    periods = sorted(frame["period"].unique().to_list())
    levels = [f"stable (below {watch:g})", f"watch ({watch:g} to {high:g})", f"drift (above {high:g})", "no value"]
    base = alt.Chart(frame).encode(
        x=alt.X("period:N", sort=periods, title=None, axis=alt.Axis(labelAngle=0, orient="top")),
        y=alt.Y("variable:N", sort=order, title=None),
    )
    cells = base.mark_rect(stroke="white").encode(
        color=alt.Color(
            "level:N",
            title="population stability",
            scale=alt.Scale(domain=levels, range=[_STABLE, _WATCH, _DRIFT, NA_COLOUR]),
        ),
        tooltip=["period:N", "variable:N", alt.Tooltip("psi:Q", format=".3f")],
    )
    text = base.mark_text(fontSize=10, color="#222").encode(text=alt.Text("psi:Q", format=".2f"))
    return (cells + text).properties(
        title="Population stability (PSI) against the reference, per period", width=alt.Step(70), height=alt.Step(18)
    )


def auc_chart(performance: pl.DataFrame, reference: Mapping[str, Any]) -> alt.LayerChart:
    """AUC per period with its interval, over a band for the reference interval and a rule at the
    reference AUC (frame: ``Monitoring.performance``)."""
    frame = (
        performance.select("period", "labelled_rows", "events", "auc", "auc_lower", "auc_upper")
        .with_columns(pl.col("auc", "auc_lower", "auc_upper").fill_nan(None))
        .filter(pl.col("auc").is_not_null())
    )
    periods = sorted(performance["period"].to_list())
    lows = [
        v
        for v in [*frame["auc_lower"].drop_nulls().to_list(), reference.get("auc_lower")]
        if v is not None and not math.isnan(v)
    ]
    bottom = min(0.5, math.floor(min(lows, default=0.5) * 10) / 10)
    y_scale = alt.Scale(domain=[bottom, 1.0], nice=False)
    x = alt.X("period:N", sort=periods, title=None, scale=alt.Scale(domain=periods), axis=alt.Axis(labelAngle=0))
    layers = []
    if reference.get("auc_lower") is not None and reference.get("auc_upper") is not None:
        ref = pl.DataFrame(
            {
                "lo": [float(reference["auc_lower"])],
                "hi": [float(reference["auc_upper"])],
                "auc": [float(reference.get("auc", float("nan")))],
            }
        )
        layers.append(
            alt.Chart(ref).mark_rect(color="#888", opacity=0.18).encode(y=alt.Y("lo:Q", scale=y_scale), y2="hi:Q")
        )
        layers.append(alt.Chart(ref).mark_rule(color="#666", strokeDash=[4, 4]).encode(y=alt.Y("auc:Q", scale=y_scale)))
    half = alt.Chart(pl.DataFrame({"auc": [0.5]})).mark_rule(color="#bbb").encode(y=alt.Y("auc:Q", scale=y_scale))
    base = alt.Chart(frame).encode(x=x)
    bars = base.mark_rule(strokeWidth=2, color=_AUC).encode(
        y=alt.Y("auc_lower:Q", scale=y_scale, title="AUC (95% interval, clustered by account)"), y2="auc_upper:Q"
    )
    pts = base.mark_point(filled=True, size=70, color=_AUC).encode(
        y=alt.Y("auc:Q", scale=y_scale),
        tooltip=[
            "period:N",
            alt.Tooltip("auc:Q", format=".3f"),
            alt.Tooltip("auc_lower:Q", format=".3f"),
            alt.Tooltip("auc_upper:Q", format=".3f"),
            "labelled_rows:Q",
            "events:Q",
        ],
    )
    return alt.layer(*layers, half, bars, pts).properties(
        title="AUC per period; grey band: the reference interval", width=alt.Step(80), height=260
    )
