"""The cohort review's charts: tidy aggregated frames in, altair charts out (built from aggregates
only, so a chart never embeds account-level rows it does not need).

>>> import datetime as dt, polars as pl
>>> from healthscore.analysis.cohorts import compare_cohorts
>>> scores = pl.DataFrame({"account_id": [f"a{i}" for i in range(6)], "as_of": [dt.date(2026, 1, 5)] * 6,
...                        "segment": ["smb"] * 3 + ["ent"] * 3, "score": [20.0, 30, 60, 70, 80, 90],
...                        "band": ["red", "red", "yellow", "green", "green", "green"]})
>>> sorted(comparison_charts(compare_cohorts(scores, by="segment", min_size=2)))
['band_mix', 'scores']
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import altair as alt
import polars as pl

from healthscore.analysis.cohorts import UNSCORED, CohortComparison, CohortReview
from healthscore.viz import charts
from healthscore.viz.charts import band_scale

__all__ = [
    "comparison_charts",
    "review_charts",
    "score_distribution_chart",
    "band_mix_chart",
    "rate_chart",
    "trend_chart",
    "migration_chart",
    "decile_chart",
]


def comparison_charts(cmp: CohortComparison) -> dict[str, Any]:
    """``scores`` (distribution by cohort), ``band_mix`` and, with outcomes, ``churn``."""
    out: dict[str, Any] = {
        "scores": score_distribution_chart(cmp.cohorts, cmp.dimension),
        "band_mix": band_mix_chart(cmp.band_mix, cmp.bands, cmp.dimension),
    }
    if "churn_rate" in cmp.cohorts.columns and cmp.cohorts["labelled"].sum() > 0:
        out["churn"] = rate_chart(cmp.cohorts, "churn", f"Churn per {cmp.horizon}", cmp.dimension)
    return out


def review_charts(review: CohortReview) -> dict[str, Any]:
    """Every chart of the leadership review by name."""
    out: dict[str, Any] = comparison_charts(review.comparison)
    if getattr(review, "movement_note", None) is None:  # one snapshot date: no movement to draw
        out["trend"] = trend_chart(review.trend)
        out["migration"] = migration_chart(
            review.migration_long, review.comparison.bands, review.date_from, review.date_to
        )
    if review.score_deciles is not None and review.score_deciles.height:
        out["score_deciles"] = decile_chart(review.score_deciles)
    if review.csm is not None:
        handovers = comparison_charts(review.csm.handovers)
        if "churn" in handovers:
            out["handovers_churn"] = handovers["churn"]
    return out


def _finish(chart: Any, title: str, subtitle: str) -> Any:
    """Title with an explanatory subtitle, and room on the left: static SVG export measures label
    text with its own font, and long cohort names would otherwise be clipped."""
    return chart.properties(
        title=alt.TitleParams(title, subtitle=subtitle), padding={"left": 24, "top": 6, "right": 12, "bottom": 6}
    )


def score_distribution_chart(summary: pl.DataFrame, dimension: str = "cohort") -> alt.LayerChart:
    """Score distribution per cohort as a box plot drawn from aggregates (p10-p90 whiskers,
    quartile box, median tick); cohort sizes in the tooltip."""
    data = summary.select(
        "cohort", "accounts", "score_p10", "score_q1", "score_median", "score_q3", "score_p90", "small"
    ).to_pandas()
    base = alt.Chart(data).encode(y=alt.Y("cohort:N", title=None, sort=None))
    tip = [
        alt.Tooltip("cohort:N"),
        alt.Tooltip("accounts:Q"),
        alt.Tooltip("score_median:Q", format=".0f"),
        alt.Tooltip("score_q1:Q", format=".0f"),
        alt.Tooltip("score_q3:Q", format=".0f"),
    ]
    whisker = base.mark_rule(color="#555").encode(
        x=alt.X("score_p10:Q", title="score (0-100)", scale=alt.Scale(domain=[0, 100])), x2="score_p90:Q"
    )
    box = base.mark_bar(size=14, color=charts.SERIES_COLOURS[2]).encode(x="score_q1:Q", x2="score_q3:Q", tooltip=tip)
    median = base.mark_tick(color="#000", thickness=2, size=14).encode(x="score_median:Q", tooltip=tip)
    return _finish(
        whisker + box + median,
        f"Score by {dimension.replace('_', ' ')}",
        "box: middle half of the accounts, tick: median, line: 10th to 90th percentile",
    )


def band_mix_chart(band_mix: pl.DataFrame, bands: list[str], dimension: str = "cohort") -> alt.Chart:
    """Stacked bars of band shares per cohort, band colours with their names in the legend."""
    order = bands + sorted(set(band_mix.get_column("band")) - set(bands))
    colours = [
        charts.band_colour(b, "#BBBBBB" if b == UNSCORED else charts.EXTRA_COLOURS[i % 5]) for i, b in enumerate(order)
    ]
    data = band_mix.with_columns(
        order=pl.col("band").replace_strict({b: i for i, b in enumerate(order)}, default=len(order))
    ).to_pandas()
    chart = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("cohort:N", title=None),
            x=alt.X("share:Q", stack="normalize", axis=alt.Axis(format="%"), title="share of accounts"),
            color=alt.Color("band:N", scale=band_scale(order, colours), title="band"),
            order=alt.Order("order:Q"),
            tooltip=["cohort:N", "band:N", "accounts:Q", alt.Tooltip("share:Q", format=".0%")],
        )
    )
    return _finish(chart, f"Band mix by {dimension.replace('_', ' ')}", "share of accounts in each band")


def rate_chart(
    summary: pl.DataFrame, prefix: str = "churn", title: str = "Churn rate", dimension: str = "cohort"
) -> alt.LayerChart:
    """Rate per cohort (point) with its Wilson interval (rule)."""
    data = summary.select(
        "cohort",
        pl.col(f"{prefix}_rate").alias("rate"),
        pl.col(f"{prefix}_lower").alias("lo"),
        pl.col(f"{prefix}_upper").alias("hi"),
        size=pl.when(pl.col("small")).then(pl.lit("small")).otherwise(pl.lit("large enough")),
    ).to_pandas()
    base = alt.Chart(data).encode(y=alt.Y("cohort:N", title=None, sort=None))
    rule = base.mark_rule(color="#555").encode(x=alt.X("lo:Q", axis=alt.Axis(format="%"), title=title), x2="hi:Q")
    point = base.mark_point(filled=True, size=60, color=charts.SERIES_COLOURS[0]).encode(
        x="rate:Q",
        shape=alt.Shape("size:N", title="cohort size", legend=alt.Legend(labelLimit=200)),
        tooltip=[
            "cohort:N",
            alt.Tooltip("rate:Q", format=".1%"),
            alt.Tooltip("lo:Q", format=".1%"),
            alt.Tooltip("hi:Q", format=".1%"),
        ],
    )
    return _finish(rule + point, f"{title} by {dimension.replace('_', ' ')}", "point: rate, line: 95% Wilson interval")


def trend_chart(trend: pl.DataFrame) -> alt.Chart:
    """Mean score per cohort over time."""
    chart = (
        alt.Chart(trend.to_pandas())
        .mark_line(point=False)
        .encode(
            x=alt.X("as_of:T", title="snapshot"),
            y=alt.Y("score_mean:Q", title="mean score", scale=alt.Scale(zero=False)),
            color=alt.Color("cohort:N", title="cohort", legend=alt.Legend(labelLimit=240)),
            tooltip=["cohort:N", "as_of:T", alt.Tooltip("score_mean:Q", format=".1f"), "accounts:Q"],
        )
    )
    return _finish(chart, "Score trend by cohort", "mean score of the accounts in each cohort on each snapshot")


def migration_chart(
    long: pl.DataFrame, bands: list[str], start: dt.date | None = None, end: dt.date | None = None
) -> alt.LayerChart:
    """Heatmap of band migration with the account count written in each cell."""
    order = bands + sorted((set(long.get_column("from_band")) | set(long.get_column("to_band"))) - set(bands))
    data = long.to_pandas()
    base = alt.Chart(data).encode(
        x=alt.X("to_band:N", sort=order, title=f"band at {end}" if end else "band at end", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("from_band:N", sort=order, title=f"band at {start}" if start else "band at start"),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("accounts:Q", scale=alt.Scale(scheme="blues"), title="accounts"),
        tooltip=["from_band:N", "to_band:N", "accounts:Q", alt.Tooltip("arr:Q", format=",.0f")],
    )
    text = base.mark_text(fontSize=13).encode(
        text="accounts:Q",
        color=alt.condition(
            alt.datum.accounts > float(long.get_column("accounts").max() or 0) / 2,
            alt.value("white"),
            alt.value("black"),
        ),
    )
    return _finish(
        (cells + text).properties(width=260, height=220),
        "Band migration",
        "accounts by band at the start (rows) and at the end (columns)",
    )


def decile_chart(deciles: pl.DataFrame) -> alt.LayerChart:
    """Outcome rate by metric decile with Wilson intervals and the portfolio average as a dashed line."""
    d = deciles.filter(pl.col("decile").is_not_null())
    metric = d.get_column("metric")[0] if d.height else "metric"
    outcome = d.get_column("outcome")[0] if d.height else "outcome"
    data = d.to_pandas()
    x = alt.X("median:Q", title=f"{metric} (decile median)")
    base = alt.Chart(data)
    band = base.mark_rule(color="#555").encode(
        x=x, y=alt.Y("rate_lower:Q", axis=alt.Axis(format="%"), title=f"{outcome} rate"), y2="rate_upper:Q"
    )
    line = base.mark_line(point=True, color=charts.SERIES_COLOURS[0]).encode(
        x=x,
        y="rate:Q",
        tooltip=[
            "label:N",
            "rows:Q",
            alt.Tooltip("rate:Q", format=".1%"),
            alt.Tooltip("rate_lower:Q", format=".1%"),
            alt.Tooltip("rate_upper:Q", format=".1%"),
        ],
    )
    avg = base.mark_rule(strokeDash=[4, 4], color="#999").encode(y="mean(portfolio_rate):Q")
    return _finish(
        band + line + avg,
        f"{outcome} rate by decile of {metric}",
        "line: rate per decile, bars: 95% Wilson interval, dashed: portfolio average",
    )
