"""Charts of the alert backtest: how precise each rule is against how early it warns.

>>> import polars as pl
>>> table = pl.DataFrame({"rule": ["red", "all rules"], "alerts": [40, 60], "precision": [0.3, 0.25],
...                       "precision_lower": [0.2, 0.15], "precision_upper": [0.4, 0.35],
...                       "lead_days_median": [35.0, 42.0], "share_caught": [0.5, 0.7]})
>>> precision_lead_chart(table, "churned", "90d").to_dict()["layer"][0]["mark"]["type"]
'rule'
"""

from __future__ import annotations

import altair as alt
import polars as pl

from healthscore.viz import charts  # noqa: F401  (registers and enables the healthscore theme)

__all__ = ["precision_lead_chart"]


def precision_lead_chart(table: pl.DataFrame, outcome: str = "churned", horizon: str = "90d") -> alt.LayerChart:
    """Precision (with its 95% interval) against the median lead time, one point per rule; the
    point's size is the share of outcome events the rule caught."""
    data = (
        table.select(
            "rule", "alerts", "precision", "precision_lower", "precision_upper", "lead_days_median", "share_caught"
        )
        .drop_nulls(["precision", "lead_days_median"])
        .to_dicts()
    )
    base = alt.Chart(alt.Data(values=data)).encode(
        x=alt.X("lead_days_median:Q", title="median lead time before the event (days)", scale=alt.Scale(zero=True))
    )
    bars = base.mark_rule(opacity=0.5).encode(
        y=alt.Y(
            "precision_lower:Q",
            title=f"precision: share of alerts followed by {outcome} within {horizon}",
            axis=alt.Axis(format="%"),
        ),
        y2="precision_upper:Q",
    )
    points = base.mark_circle(opacity=0.85).encode(
        y="precision:Q",
        size=alt.Size("share_caught:Q", title="share caught", legend=alt.Legend(format="%")),
        color=alt.Color("rule:N", title="rule"),
        tooltip=[
            alt.Tooltip("rule:N"),
            alt.Tooltip("alerts:Q", format=","),
            alt.Tooltip("precision:Q", format=".1%"),
            alt.Tooltip("lead_days_median:Q", title="lead days"),
            alt.Tooltip("share_caught:Q", format=".0%"),
        ],
    )
    labels = base.mark_text(align="left", dx=8, fontSize=11).encode(y="precision:Q", text="rule:N")
    return alt.layer(bars, points, labels).properties(title="Alert rules: precision against lead time")
