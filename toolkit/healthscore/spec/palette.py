"""The band colours: one validated palette that every chart and report draws from.

Band colours stay distinguishable under the common forms of colour blindness; every view shows the band *name* beside its colour as well.

>>> band_colour("red")
'#A6192E'
>>> band_colour("Teal", "#999999")
'#999999'

A colour written in a model must be hex (``#rgb`` or ``#rrggbb``) or one of :data:`NAMED_COLOURS`;
:func:`parse_colour` turns it into ``#rrggbb`` or refuses it, so only validated values ever reach
CSS or a chart.

>>> parse_colour("#c00"), parse_colour("Vermillion")
('#cc0000', '#D55E00')
>>> parse_colour("#c00;background-image:url(x)")
Traceback (most recent call last):
ValueError: '#c00;background-image:url(x)' is not a colour: write #rgb or #rrggbb hex, or one of the names blue, green, grey, orange, purple, red, sky_blue, vermillion, yellow, black
"""

from __future__ import annotations

import re

__all__ = [
    "BAND_COLOURS",
    "EXTRA_COLOURS",
    "SERIES_COLOURS",
    "NA_COLOUR",
    "NAMED_COLOURS",
    "band_colour",
    "parse_colour",
    "is_colour",
    "safe_colour",
]

# Band colours that stay apart under deuteranopia and protanopia (they differ in lightness as well
# as hue: dark red, dark amber, teal) and reach 3:1 against white as fills; extra bands get the
# Okabe-Ito sky blue, blue, reddish purple. tests/test_palette_access.py holds both properties.
BAND_COLOURS: dict[str, str] = {
    "red": "#A6192E",
    "yellow": "#B07800",
    "green": "#0F7B8A",
}
EXTRA_COLOURS = ["#56B4E9", "#0072B2", "#CC79A7", "#F0E442", "#000000"]
# Neutral series colours (models, cohorts) that do not clash with the band colours.
SERIES_COLOURS = ["#0072B2", "#CC79A7", "#56B4E9", "#000000", "#F0E442", "#999999"]
# not applicable / no score
NA_COLOUR = "#8c959f"


def band_colour(name: str, default: str = "#999999") -> str:
    """The colour of a band by name (case-insensitive), or ``default``."""
    return BAND_COLOURS.get(name.lower(), default)


# the colour names a model may use (case-insensitive), each a fixed Okabe-Ito hex value
NAMED_COLOURS: dict[str, str] = {
    "red": "#D55E00",
    "vermillion": "#D55E00",
    "orange": "#E69F00",
    "yellow": "#F0E442",
    "green": "#009E73",
    "sky_blue": "#56B4E9",
    "blue": "#0072B2",
    "purple": "#CC79A7",
    "grey": "#8c959f",
    "black": "#000000",
}
_HEX = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")


def parse_colour(value: str) -> str:
    """A model colour as ``#rrggbb``: hex stays hex (``#rgb`` is expanded), a name from
    :data:`NAMED_COLOURS` becomes its hex value; anything else raises ``ValueError`` saying the fix."""
    text = value
    if isinstance(text, str) and _HEX.fullmatch(text):
        digits = text[1:]
        return "#" + ("".join(c * 2 for c in digits) if len(digits) == 3 else digits)
    if isinstance(text, str) and text.lower().replace(" ", "_") in NAMED_COLOURS:
        return NAMED_COLOURS[text.lower().replace(" ", "_")]
    names = ", ".join(sorted(n for n in NAMED_COLOURS if n != "black")) + ", black"
    raise ValueError(f"{value!r} is not a colour: write #rgb or #rrggbb hex, or one of the names {names}")


def is_colour(value: object) -> bool:
    """True when ``value`` is a colour :func:`parse_colour` accepts.

    >>> is_colour("#009E73"), is_colour("red"), is_colour("url(x)")
    (True, True, False)
    """
    try:
        parse_colour(value)  # type: ignore[arg-type]
    except (ValueError, AttributeError):
        return False
    return True


def safe_colour(value: object, default: str = NA_COLOUR) -> str:
    """``value`` as ``#rrggbb`` when it is a valid colour, else ``default``: the only way a colour
    reaches CSS or a chart.

    >>> safe_colour("#c00"), safe_colour("red;x:url(y)")
    ('#cc0000', '#8c959f')
    """
    return parse_colour(value) if is_colour(value) else default  # type: ignore[arg-type]
