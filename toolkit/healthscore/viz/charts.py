"""One chart theme for every healthscore chart; band colours come from :mod:`healthscore.spec.palette`.

>>> band_colour("red")
'#A6192E'
>>> import altair as alt
>>> alt.theme.active == THEME_NAME or enable_theme() is None
True
"""

from __future__ import annotations

import altair as alt

from healthscore.spec.palette import (
    BAND_COLOURS,
    EXTRA_COLOURS,
    NA_COLOUR,
    SERIES_COLOURS,
    band_colour,
)

__all__ = [
    "THEME_NAME",
    "BAND_COLOURS",
    "EXTRA_COLOURS",
    "SERIES_COLOURS",
    "NA_COLOUR",
    "band_colour",
    "band_scale",
    "enable_theme",
    "with_banner",
]

THEME_NAME = "healthscore"


def band_scale(names: list[str], colours: list[str] | None = None) -> alt.Scale:
    """An altair colour scale mapping band names to their colours, in the given order.

    >>> band_scale(["red", "green"]).to_dict()["range"]
    ['#A6192E', '#0F7B8A']
    """
    colours = colours or [band_colour(n, EXTRA_COLOURS[i % len(EXTRA_COLOURS)]) for i, n in enumerate(names)]
    return alt.Scale(domain=list(names), range=list(colours))


@alt.theme.register(THEME_NAME, enable=False)
def _theme() -> alt.theme.ThemeConfig:
    font = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
    return {
        "config": {
            "font": font,
            "view": {"stroke": None, "continuousWidth": 420, "continuousHeight": 260},
            "axis": {"labelFontSize": 11, "titleFontSize": 12, "gridColor": "#e6e6e6", "domainColor": "#888"},
            "legend": {"labelFontSize": 11, "titleFontSize": 12},
            "title": {"fontSize": 14, "anchor": "start", "fontWeight": 600},
            "range": {"category": SERIES_COLOURS},
        }
    }


def with_banner(chart: alt.TopLevelMixin, text: str, colour: str | None = None) -> alt.VConcatChart:
    """The chart under a one-line banner in the alarm colour (red unless ``colour`` is given), for
    a warning that must travel with the figure, e.g. that a model saw the holdout it is judged on.

    >>> c = alt.Chart().mark_point()
    >>> spec = with_banner(c, "overlap: this model saw the holdout").to_dict()
    >>> spec["vconcat"][0]["mark"]["color"] == band_colour("red"), spec["vconcat"][0]["data"]["values"][0]["text"]
    (True, 'overlap: this model saw the holdout')
    """
    banner = (
        alt.Chart(alt.Data(values=[{"text": text}]))
        .mark_text(
            color=colour or band_colour("red"),
            fontSize=14,
            fontWeight="bold",
            align="left",
            baseline="middle",
            x=0,
            y=10,
            limit=1000,
        )
        .encode(text="text:N")
        .properties(height=20, width=400)
    )
    # top-level-only settings (padding, autosize) move from the chart to the concatenation
    inner = chart.copy(deep=False)  # type: ignore[attr-defined]  # altair's stubs omit copy() on charts
    top = {}
    for key in ("padding", "autosize", "background"):
        value = getattr(inner, key, alt.Undefined)
        if value is not alt.Undefined:
            top[key] = value
            setattr(inner, key, alt.Undefined)
    return alt.vconcat(banner, inner, **top)


def enable_theme() -> None:
    """Make the healthscore theme the active altair theme."""
    alt.theme.enable(THEME_NAME)


enable_theme()
