"""One chart theme for every healthscore chart, and the band colours.

Band colours come from the Okabe-Ito palette, which stays distinguishable under the common
forms of colour blindness; every chart shows the band *name* beside its colour as well.

>>> band_colour("red")
'#D55E00'
>>> import altair as alt
>>> alt.theme.active == THEME_NAME or enable_theme() is None
True
"""
from __future__ import annotations

import altair as alt

THEME_NAME = "healthscore"

# Okabe-Ito: vermillion, orange, bluish green; extra bands get sky blue, blue, reddish purple.
BAND_COLOURS: dict[str, str] = {
    "red": "#D55E00",
    "yellow": "#E69F00",
    "green": "#009E73",
}
EXTRA_COLOURS = ["#56B4E9", "#0072B2", "#CC79A7", "#F0E442", "#000000"]
# Neutral series colours (models, cohorts) that do not clash with the band colours.
SERIES_COLOURS = ["#0072B2", "#CC79A7", "#56B4E9", "#000000", "#F0E442", "#999999"]


def band_colour(name: str, default: str = "#999999") -> str:
    """The colour of a band by name (case-insensitive), or ``default``."""
    return BAND_COLOURS.get(name.lower(), default)


def band_scale(names: list[str], colours: list[str] | None = None) -> alt.Scale:
    """An altair colour scale mapping band names to their colours, in the given order.

    >>> band_scale(["red", "green"]).to_dict()["range"]
    ['#D55E00', '#009E73']
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


def enable_theme() -> None:
    """Make the healthscore theme the active altair theme."""
    alt.theme.enable(THEME_NAME)


enable_theme()
