"""Outcome definitions: the one place that says whether an outcome is adverse and whether it ends
the account, and how a horizon is written.

Nothing in healthscore infers this from an outcome's name: the three standard outcomes are defined
here explicitly, a score model or metric spec may define more (``[outcomes.<name>]``), and an
unknown name is an error that lists the defined ones.

>>> resolve_outcome("churned")
Outcome(name='churned', adverse=True, terminal=True)
>>> resolve_outcome("purchased", {"purchased": Outcome("purchased", adverse=False)}).adverse
False
>>> parse_horizon(" 13w ")
'13w'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from healthscore.errors import HealthscoreError

__all__ = [
    "Outcome",
    "OutcomeError",
    "STANDARD_OUTCOMES",
    "resolve_outcome",
    "parse_outcomes",
    "parse_horizon",
    "horizon_days",
    "horizon_words",
]


class OutcomeError(HealthscoreError, ValueError):
    """An outcome name or definition that cannot be used."""


@dataclass(frozen=True)
class Outcome:
    """One outcome: ``adverse`` outcomes (churn, contraction) are signalled by a *low* score,
    favourable ones (expansion, purchase) by a high one; a ``terminal`` outcome ends the account,
    so no snapshot after it can be labelled."""

    name: str
    adverse: bool = True
    terminal: bool = False
    description: str = ""

    def __repr__(self) -> str:
        return f"Outcome(name={self.name!r}, adverse={self.adverse}, terminal={self.terminal})"

    @property
    def low_score_signals(self) -> bool:
        """True when a low health score is the warning sign for this outcome."""
        return self.adverse


STANDARD_OUTCOMES: dict[str, Outcome] = {
    "churned": Outcome("churned", adverse=True, terminal=True, description="the account left"),
    "contracted": Outcome("contracted", adverse=True, terminal=False, description="the account paid less"),
    "expanded": Outcome("expanded", adverse=False, terminal=False, description="the account paid more"),
}

_KEYS = {"adverse", "terminal", "description", "from", "gap", "threshold", "days", "column", "field", "value", "label"}


def parse_outcomes(table: Mapping[str, Any], *, source: str = "model") -> dict[str, Outcome]:
    """Read ``[outcomes.<name>]`` tables; ``adverse`` must be stated, ``terminal`` defaults to false.

    Keys that describe how a raw-data builder derives the outcome (``from``, ``gap``, ...) are kept
    by the builder; here only the meaning is read.

    >>> parse_outcomes({"purchased": {"adverse": False}})["purchased"].adverse
    False
    """
    out: dict[str, Outcome] = {}
    for name, spec in table.items():
        if not isinstance(spec, Mapping):
            raise OutcomeError(f"{source}: [outcomes.{name}] must be a table with adverse = true|false")
        unknown = sorted(set(spec) - _KEYS)
        if unknown:
            raise OutcomeError(f"{source}: [outcomes.{name}] has unknown key(s) {unknown}; allowed: {sorted(_KEYS)}")
        if not isinstance(spec.get("adverse"), bool):
            raise OutcomeError(
                f"{source}: [outcomes.{name}] needs adverse = true (churn-like, a low score warns) "
                "or adverse = false (expansion-like, a high score signals it)"
            )
        terminal = spec.get("terminal", False)
        if not isinstance(terminal, bool):
            raise OutcomeError(f"{source}: [outcomes.{name}].terminal must be true or false")
        out[str(name)] = Outcome(
            str(name), adverse=spec["adverse"], terminal=terminal, description=str(spec.get("description", ""))
        )
    return out


def resolve_outcome(outcome: str | Outcome, definitions: Mapping[str, Outcome] | None = None) -> Outcome:
    """The definition of ``outcome``: given ones first, then the standard three.

    >>> resolve_outcome("renewed")
    Traceback (most recent call last):
    ...
    healthscore.spec.outcomes.OutcomeError: outcome 'renewed' is not defined; defined: churned, contracted, expanded. Define it in the model as [outcomes.renewed] with adverse = true or false
    """
    if isinstance(outcome, Outcome):
        return outcome
    known = {**STANDARD_OUTCOMES, **(definitions or {})}
    if outcome in known:
        return known[outcome]
    raise OutcomeError(
        f"outcome {outcome!r} is not defined; defined: {', '.join(sorted(known))}. "
        f"Define it in the model as [outcomes.{outcome}] with adverse = true or false"
    )


_HORIZON = re.compile(r"^\s*(\d+)\s*(d|w|mo)\s*$")


def parse_horizon(horizon: str, *, allow_zero: bool = False) -> str:
    """Check a horizon such as ``"90d"``, ``"13w"`` or ``"3mo"`` and return it normalised.

    ``allow_zero=True`` also accepts a zero duration (an alert cool-down of ``"0d"``).

    >>> parse_horizon("0d", allow_zero=True)
    '0d'
    """
    m = _HORIZON.match(str(horizon))
    if not m or (int(m.group(1)) == 0 and not allow_zero):
        raise OutcomeError(
            f"horizon {horizon!r} is not understood: write a positive number of days, "
            "weeks or calendar months, e.g. '90d', '13w' or '3mo'"
        )
    return f"{int(m.group(1))}{m.group(2)}"


def horizon_days(horizon: str, *, allow_zero: bool = False) -> int:
    """The horizon as a whole number of days (a month counts 30).

    >>> horizon_days("13w"), horizon_days("3mo")
    (91, 90)
    """
    m = _HORIZON.match(parse_horizon(horizon, allow_zero=allow_zero))
    assert m is not None
    n, unit = int(m.group(1)), m.group(2)
    return n * {"d": 1, "w": 7, "mo": 30}[unit]


def horizon_timedelta(horizon: str) -> timedelta:
    """The horizon as a :class:`datetime.timedelta` (a month counts 30 days)."""
    return timedelta(days=horizon_days(horizon))


def horizon_words(horizon: str) -> str:
    """Plain words for a horizon.

    >>> horizon_words("90d"), horizon_words("1w"), horizon_words("3mo")
    ('90 days', '1 week', '3 months')
    """
    m = _HORIZON.match(parse_horizon(horizon))
    assert m is not None
    n, unit = int(m.group(1)), m.group(2)
    word = {"d": "day", "w": "week", "mo": "month"}[unit]
    return f"{n} {word}{'' if n == 1 else 's'}"
