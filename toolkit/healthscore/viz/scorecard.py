"""The scorecard's trend chart and its inline SVG."""

from __future__ import annotations

from typing import Any

import polars as pl

from healthscore.analysis.scorecard import Scorecard
from healthscore.viz.charts import band_scale


def trend_chart(card: Scorecard, *, width: int = 700, height: int = 220) -> Any:
    """The score over the last 26 weeks on the band areas, each band named beside its colour.

    Built from this account's trend rows and the model's bands only."""
    import altair as alt  # altair is loaded only when a chart is drawn

    names = [b[0] for b in card.bands]
    band_rows = pl.DataFrame(
        {"band": names, "lower": [b[1] for b in card.bands], "upper": [b[2] for b in card.bands]}
    ).with_columns(mid=(pl.col("lower") + pl.col("upper")) / 2)
    scale = band_scale(names, [b[3] for b in card.bands])
    y = alt.Y("lower:Q", title="score", scale=alt.Scale(domain=[0, 100], nice=False))
    areas = (
        alt.Chart(band_rows)
        .mark_rect(opacity=0.14)
        .encode(y=y, y2="upper:Q", color=alt.Color("band:N", scale=scale, legend=None))
    )
    # band names sit right of the plot, beside their colour, clear of the line's last point
    names_layer = (
        alt.Chart(band_rows)
        .mark_text(align="left", dx=8, fontSize=11, fontWeight=600)
        .encode(
            x=alt.value(width), y=alt.Y("mid:Q"), text="band:N", color=alt.Color("band:N", scale=scale, legend=None)
        )
    )
    data = card.trend.select("as_of", "score").drop_nulls("score")
    x = alt.X("as_of:T", title=None, axis=alt.Axis(format="%d %b", labelAngle=0, tickCount=6))
    line = (
        alt.Chart(data)
        .mark_line(color="#1f2328", strokeWidth=2.2)
        .encode(x=x, y=alt.Y("score:Q", scale=alt.Scale(domain=[0, 100])))
    )
    dots = alt.Chart(data.tail(1)).mark_point(filled=True, size=70, color="#1f2328").encode(x=x, y="score:Q")
    last = (
        alt.Chart(data.tail(1))
        .mark_text(align="right", dx=-8, dy=-12, fontSize=12, fontWeight=700)
        .encode(x=x, y="score:Q", text=alt.Text("score:Q", format=".0f"))
    )
    return (
        alt.layer(areas, names_layer, line, dots, last)
        .properties(width=width, height=height)
        .configure_view(stroke=None)
    )


def chart_svg(chart: Any) -> str:
    """An altair chart as inline SVG (no scripts, no network; the data stays out of the page)."""
    import vl_convert  # the chart renderer is loaded only when an SVG is written

    return vl_convert.vegalite_to_svg(chart.to_dict(validate=False))  # schema validation costs ~0.3 s
