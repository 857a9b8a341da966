"""The backtest's charts: tidy frames of an :class:`~healthscore.analysis.evaluation.Evaluation`
in, altair charts out; one theme (:mod:`healthscore.viz.charts`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import altair as alt
import polars as pl

from healthscore.analysis.evaluation import Evaluation
from healthscore.viz.charts import band_scale, with_banner

__all__ = [
    "charts",
    "roc_chart",
    "reliability_chart",
    "band_rate_chart",
    "lift_chart",
    "trajectory_chart",
    "comparison_chart",
]


def charts(ev: Evaluation) -> dict[str, Any]:
    """``roc``, ``reliability``, ``bands``, ``lift``, ``trajectories`` and ``comparison``; each under a
    red banner when a model saw the holdout it is judged on (``ev.overlaps``)."""
    out = {
        "roc": roc_chart(ev.roc),
        "reliability": reliability_chart(ev.reliability),
        "bands": band_rate_chart(ev.bands, ev.band_orders, ev.outcome),
        "lift": lift_chart(ev.gains),
        "trajectories": trajectory_chart(ev.trajectories, ev.outcome),
        "comparison": comparison_chart(ev.segments, ev.by),
    }
    overlaps = getattr(ev, "overlaps", None)
    if overlaps:
        text = "overlap: this model saw the holdout (" + ", ".join(overlaps) + ")"
        out = {key: with_banner(chart, text) for key, chart in out.items()}
    return out


# model legends sit under the chart: a browser's font can be wider than the one the SVG was laid
# out with, and a legend at the right edge would then be clipped
_MODEL_LEGEND = {"orient": "bottom", "direction": "vertical", "labelLimit": 400}


def _diagonal(alt: Any, x: str, y: str) -> Any:
    return (
        alt.Chart(pl.DataFrame({x: [0.0, 1.0], y: [0.0, 1.0]}))
        .mark_line(strokeDash=[4, 4], color="#888", strokeWidth=1)
        .encode(x=f"{x}:Q", y=f"{y}:Q")
    )


def roc_chart(roc: pl.DataFrame) -> Any:
    """ROC curves, one line per model, against the chance diagonal (frame from :func:`roc_points`)."""
    lines = (
        alt.Chart(roc)
        .mark_line(strokeWidth=2)
        .encode(
            x=alt.X("fpr:Q", title="false positive rate (share of non-events flagged)"),
            y=alt.Y("tpr:Q", title="true positive rate (share of events caught)"),
            color=alt.Color("model:N", title="model", legend=_MODEL_LEGEND),
            tooltip=["model:N", alt.Tooltip("fpr:Q", format=".2f"), alt.Tooltip("tpr:Q", format=".2f")],
        )
    )
    return (_diagonal(alt, "fpr", "tpr") + lines).properties(title="ROC on the holdout", width=360, height=300)


def reliability_chart(rel: pl.DataFrame) -> Any:
    """Observed against predicted probability per bin, Wilson error bars; the diagonal is perfect calibration."""
    base = alt.Chart(rel).encode(
        x=alt.X("mean_predicted:Q", title="predicted probability (map fitted on training rows)"),
        color=alt.Color("model:N", title="model"),
    )
    top = (
        max(float(rel["observed_upper"].max() or 0.0), float(rel["mean_predicted"].max() or 0.0), 0.05)
        if rel.height
        else 1.0
    )
    diag = (
        alt.Chart(pl.DataFrame({"mean_predicted": [0.0, top], "observed": [0.0, top]}))
        .mark_line(strokeDash=[4, 4], color="#888", strokeWidth=1)
        .encode(x="mean_predicted:Q", y="observed:Q")
    )
    pts = base.mark_line(point=True).encode(
        y=alt.Y("observed:Q", title="observed event rate"),
        tooltip=[
            "model:N",
            "count:Q",
            alt.Tooltip("mean_predicted:Q", format=".3f"),
            alt.Tooltip("observed:Q", format=".3f"),
        ],
    )
    bars = base.mark_errorbar().encode(y=alt.Y("observed_lower:Q", title="observed event rate"), y2="observed_upper:Q")
    return (diag + bars + pts).properties(title="Reliability: predicted vs observed", width=360, height=300)


def band_rate_chart(
    bands: pl.DataFrame, orders: Mapping[str, list[str]] | None = None, outcome: str = "churned"
) -> Any:
    """Event rate per band with Wilson 95% error bars, one panel per model; bars in band colours
    and each band's name on the axis beside its bar."""
    names: list[str] = []
    for order in (orders or {}).values():
        names += [n for n in order if n not in names]
    names += [n for n in bands["band"].unique(maintain_order=True).to_list() if n not in names] if bands.height else []
    x = alt.X("band:N", sort=names, title="band")
    base = alt.Chart().encode(x=x)
    bars = base.mark_bar().encode(
        y=alt.Y("rate:Q", title=f"share {outcome} within horizon", axis=alt.Axis(format="%")),
        color=alt.Color("band:N", scale=band_scale(names), title="band"),
        tooltip=[
            "model:N",
            "band:N",
            "count:Q",
            "events:Q",
            alt.Tooltip("rate:Q", format=".1%"),
            alt.Tooltip("rate_lower:Q", format=".1%"),
            alt.Tooltip("rate_upper:Q", format=".1%"),
        ],
    )
    err = base.mark_errorbar(color="#333").encode(
        y=alt.Y("rate_lower:Q", title=f"share {outcome} within horizon"), y2="rate_upper:Q"
    )
    label = base.mark_text(dy=-8, fontSize=10).encode(y="rate_upper:Q", text=alt.Text("rate:Q", format=".1%"))
    models = bands["model"].unique(maintain_order=True).to_list() if bands.height else []
    return (
        alt.layer(bars, err, label, data=bands)
        .properties(width=200, height=240)
        .facet(column=alt.Column("model:N", title=None, sort=models))
        .properties(title=f"{outcome.capitalize()} rate by band (95% Wilson interval)")
    )


def lift_chart(gains: pl.DataFrame) -> Any:
    """Cumulative gains: share of events captured when working the riskiest share of accounts."""
    lines = (
        alt.Chart(gains)
        .mark_line(strokeWidth=2)
        .encode(
            x=alt.X("flagged:Q", title="share of accounts worked, riskiest first", axis=alt.Axis(format="%")),
            y=alt.Y("captured:Q", title="share of events captured", axis=alt.Axis(format="%")),
            color=alt.Color("model:N", title="model", legend=_MODEL_LEGEND),
            tooltip=[
                "model:N",
                alt.Tooltip("flagged:Q", format=".0%"),
                alt.Tooltip("captured:Q", format=".0%"),
                alt.Tooltip("lift:Q", format=".2f"),
            ],
        )
    )
    decile = alt.Chart(pl.DataFrame({"flagged": [0.1]})).mark_rule(color="#bbb").encode(x="flagged:Q")
    return (_diagonal(alt, "flagged", "captured") + decile + lines).properties(
        title="Gains: events caught, riskiest first", width=360, height=300
    )


def trajectory_chart(traj: pl.DataFrame, outcome: str = "churned") -> Any:
    """Mean score by weeks before the event, with 95% bands, for accounts with and without it."""
    x = alt.X("weeks_before:Q", title=f"weeks before {outcome} / data end", scale=alt.Scale(reverse=True))
    base = alt.Chart().encode(x=x, color=alt.Color("group:N", title="accounts"))
    band = base.mark_area(opacity=0.25).encode(y=alt.Y("score_lower:Q", title="mean score"), y2="score_upper:Q")
    line = base.mark_line(strokeWidth=2).encode(
        y="mean_score:Q", tooltip=["group:N", "weeks_before:Q", alt.Tooltip("mean_score:Q", format=".1f"), "accounts:Q"]
    )
    models = traj["model"].unique(maintain_order=True).to_list() if traj.height else []
    return (
        alt.layer(band, line, data=traj)
        .properties(width=300, height=240)
        .facet(column=alt.Column("model:N", title=None, sort=models))
        .properties(title=f"Score trajectories before {outcome}")
    )


def comparison_chart(segments: pl.DataFrame, by: str | None = "segment") -> Any:
    """Head to head: AUC with its 95% interval per model, overall and per segment."""
    col = by or "segment"
    order = segments[col].unique(maintain_order=True).to_list() if segments.height else []
    models = segments["model"].unique(maintain_order=True).to_list() if segments.height else []
    lows = segments["auc_lower"].fill_nan(None).drop_nulls() if segments.height else pl.Series([0.5])
    domain = [min(0.5, math.floor(float(lows.min() if lows.len() else 0.5) * 10) / 10), 1.0]
    # one explicit scale for every layer, else the 0.5 rule's default scale drags the axis to zero
    x_scale = alt.Scale(domain=domain, nice=False)
    legend = alt.Legend(**_MODEL_LEGEND)
    base = alt.Chart(segments).encode(
        y=alt.Y(f"{col}:N", sort=order, title=None, axis=alt.Axis(labelLimit=200)),
        yOffset=alt.YOffset("model:N", sort=models),
        color=alt.Color("model:N", title="model", sort=models, legend=legend),
    )
    bars = base.mark_rule(strokeWidth=2).encode(
        x=alt.X(
            "auc_lower:Q",
            title="AUC (95% CI, clustered by account)",
            scale=x_scale,
            axis=alt.Axis(format=".1f", tickMinStep=0.1),
        ),
        x2="auc_upper:Q",
    )
    pts = base.mark_point(filled=True, size=60).encode(
        x=alt.X("auc:Q", scale=x_scale),
        tooltip=[
            "model:N",
            f"{col}:N",
            alt.Tooltip("auc:Q", format=".3f"),
            alt.Tooltip("auc_lower:Q", format=".3f"),
            alt.Tooltip("auc_upper:Q", format=".3f"),
            "events:Q",
            "rows:Q",
        ],
    )
    half = (
        alt.Chart(pl.DataFrame({"auc": [0.5]}))
        .mark_rule(strokeDash=[4, 4], color="#888")
        .encode(x=alt.X("auc:Q", scale=x_scale))
    )
    return (half + bars + pts).properties(
        title="Model comparison on the same holdout",
        width=420,
        height=alt.Step(14),
        padding={"left": 12, "right": 8, "top": 4, "bottom": 4},
    )
