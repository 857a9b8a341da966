"""The one set of display formatters: every number, share, amount and date a report or widget shows
is written by one of these, so a percentage reads the same on a scorecard, in the review and in
the backtest report. A missing value (None or NaN) is always shown as :data:`MISSING`.

They return plain text; :mod:`healthscore.render.html` escapes it on the way into a page.

>>> percent(0.123), percent(0.045), money(1_250_000), days(1), count(12345), points(61.6)
('12%', '4.5%', '1.2M', '1 day', '12,345', '62')
>>> points(-3.25, 1, signed=True), date(dt.date(2026, 1, 5)), p_value(0.0004), percent(None)
('-3.2', '5 January 2026', 'p<0.001', '–')
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

__all__ = [
    "MISSING",
    "missing",
    "number",
    "percent",
    "money",
    "days",
    "count",
    "points",
    "date",
    "p_value",
    "metric_value",
    "FORMATTERS",
    "formatter",
]

MISSING = "–"


def missing(x: Any) -> bool:
    """True for None and NaN (a value the report shows as :data:`MISSING`).

    >>> missing(None), missing(float("nan")), missing(0)
    (True, True, False)
    """
    if x is None:
        return True
    try:
        return isinstance(x, float) and math.isnan(x) or (hasattr(x, "__float__") and math.isnan(float(x)))
    except (TypeError, ValueError):
        return False


def number(x: float | None, digits: int = 0) -> str:
    """A number with thousands separators and ``digits`` decimals.

    >>> number(1234.5), number(1234.567, 2)
    ('1,234', '1,234.57')
    """
    if missing(x):
        return MISSING
    return f"{float(x):,.{digits}f}"


def percent(x: float | None, digits: int | None = None) -> str:
    """A share (0..1) as a percentage; small shares keep one decimal unless ``digits`` is given.

    >>> percent(0.5), percent(0.004), percent(0.1234, 1), percent(0)
    ('50%', '0.4%', '12.3%', '0%')
    """
    if missing(x):
        return MISSING
    v = 100 * float(x)
    if digits is None:
        digits = 1 if 0 < abs(v) < 10 else 0
    return f"{v:.{digits}f}%"


def money(x: float | None, currency: str = "") -> str:
    """An amount, shortened to k, M or bn with one decimal; ``currency`` is put in front.

    >>> money(950), money(12_300), money(-2_500_000), money(3.2e9, "$")
    ('950', '12.3k', '-2.5M', '$3.2bn')
    """
    if missing(x):
        return MISSING
    v = float(x)
    for div, unit in ((1e9, "bn"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{currency}{v / div:.1f}{unit}"
    return f"{currency}{v:.0f}"


def days(x: float | None) -> str:
    """A number of days, rounded to whole days.

    >>> days(0), days(1), days(12.4)
    ('0 days', '1 day', '12 days')
    """
    if missing(x):
        return MISSING
    n = round(float(x))
    return f"{n:,} day{'' if abs(n) == 1 else 's'}"


def count(x: int | float | None) -> str:
    """A whole count with thousands separators.

    >>> count(1234567)
    '1,234,567'
    """
    if missing(x):
        return MISSING
    return f"{round(float(x)):,}"


def points(x: float | None, digits: int = 0, *, signed: bool = False) -> str:
    """Score points (0..100 scale); ``signed`` writes a change with its sign.

    >>> points(70), points(2.0, 1, signed=True), points(-0.04, 1, signed=True)
    ('70', '+2.0', '-0.0')
    """
    if missing(x):
        return MISSING
    return f"{float(x):{'+' if signed else ''}.{digits}f}"


def date(d: dt.date | dt.datetime | str | None, *, style: str = "long") -> str:
    """A date: ``long`` (5 January 2026), ``short`` (5 Jan 2026) or ``iso`` (2026-01-05).

    >>> date("2026-01-05", style="short"), date(dt.datetime(2026, 1, 5, 9, 30), style="iso")
    ('5 Jan 2026', '2026-01-05')
    """
    if d is None or not isinstance(d, (str, dt.date)):
        return MISSING
    if isinstance(d, str):
        d = dt.date.fromisoformat(d[:10])
    if isinstance(d, dt.datetime):
        d = d.date()
    if style == "iso":
        return d.isoformat()
    return f"{d.day} {d:%b %Y}" if style == "short" else f"{d.day} {d:%B %Y}"


def p_value(p: float | None) -> str:
    """A p-value as a report writes it.

    >>> p_value(0.0004), p_value(0.0042), p_value(0.2345), p_value(None)
    ('p<0.001', 'p=0.004', 'p=0.23', 'p=n/a')
    """
    if missing(p):
        return "p=n/a"
    p = float(p)
    return "p<0.001" if p < 0.001 else f"p={p:.3f}" if p < 0.01 else f"p={p:.2f}"


def metric_value(x: float | None, method: str = "", unit: str = "") -> str:
    """A raw metric value in its model ``unit`` (ratio and percent as %, days, currency, count);
    without a unit: yes/no for yes/no metrics, whole numbers plain, else two decimals.

    >>> metric_value(0.05, unit="ratio"), metric_value(80, unit="percent"), metric_value(23, unit="days")
    ('5.0%', '80%', '23 days')
    >>> metric_value(1.0, "boolean"), metric_value(1234.0), metric_value(0.456), metric_value(250.4)
    ('yes', '1,234', '0.46', '250')
    """
    if missing(x):
        return MISSING
    v = float(x)
    if method == "boolean":
        return "yes" if v else "no"
    by_unit = {"ratio": percent, "percent": lambda y: percent(y / 100), "days": days, "currency": money, "count": count}
    if unit in by_unit:
        return by_unit[unit](v)
    if abs(v) >= 100 or v.is_integer():
        return f"{v:,.0f}"
    return f"{v:,.2f}"


def points_phrase(x: float, digits: int = 0) -> str:
    """A number of points with the noun agreeing with the number as written.

    >>> points_phrase(1), points_phrase(1.04, 1), points_phrase(11), points_phrase(0.96)
    ('1 point', '1.0 point', '11 points', '1 point')
    """
    text = points(x, digits)
    return f"{text} point{'' if float(text) in (1.0, -1.0) else 's'}"


FORMATTERS: dict[str, Callable[[Any], str]] = {
    "number": number,
    "percent": percent,
    "money": money,
    "days": days,
    "count": count,
    "points": points,
    "date": date,
    "p_value": p_value,
    "metric_value": metric_value,
}


def formatter(spec: str | Callable[[Any], str]) -> Callable[[Any], str]:
    """A formatter by name (``"percent"``), a callable as it is, or a Python format spec
    (``".3f"``, ``",d"``, ``".1%"``) applied to present values.

    >>> formatter("money")(12_300), formatter(".3f")(0.71234), formatter(".1%")(None)
    ('12.3k', '0.712', '–')
    """
    if callable(spec):
        return spec
    if spec in FORMATTERS:
        return FORMATTERS[spec]

    def fmt(x: Any) -> str:
        if missing(x):
            return MISSING
        if isinstance(x, str):
            return x
        try:
            return format(x, spec)
        except (TypeError, ValueError):
            return str(x)

    return fmt
