"""The band colours: one validated palette that every chart and report draws from.

Band colours come from the Okabe-Ito palette, which stays distinguishable under the common forms
of colour blindness; every view shows the band *name* beside its colour as well.

>>> band_colour("red")
'#D55E00'
>>> band_colour("Teal", "#999999")
'#999999'
"""

from __future__ import annotations

__all__ = ["BAND_COLOURS", "EXTRA_COLOURS", "SERIES_COLOURS", "NA_COLOUR", "band_colour"]

# Okabe-Ito: vermillion, orange, bluish green; extra bands get sky blue, blue, reddish purple.
BAND_COLOURS: dict[str, str] = {
    "red": "#D55E00",
    "yellow": "#E69F00",
    "green": "#009E73",
}
EXTRA_COLOURS = ["#56B4E9", "#0072B2", "#CC79A7", "#F0E442", "#000000"]
# Neutral series colours (models, cohorts) that do not clash with the band colours.
SERIES_COLOURS = ["#0072B2", "#CC79A7", "#56B4E9", "#000000", "#F0E442", "#999999"]
# not applicable / no score
NA_COLOUR = "#8c959f"


def band_colour(name: str, default: str = "#999999") -> str:
    """The colour of a band by name (case-insensitive), or ``default``."""
    return BAND_COLOURS.get(name.lower(), default)
