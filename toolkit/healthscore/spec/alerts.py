"""Alert rules: the early warnings a score model raises, read from its ``[[alerts]]`` tables.

Each rule says when an account needs attention (``kind`` and its settings), how urgent it is
(``severity``), who acts (``owner``, a role), what to do (``action``, the playbook step) and how long
to wait before the same account is alerted again by the same rule (``cooldown``). Alerts are for the
account team only: ``audience`` is always ``"internal"``.

Kinds and their settings:

==============  ==============================================================================
``enters_band`` ``band = "red"``: the score is in that band
``drop``        ``points = 15, within = "4w"``: the score fell at least ``points`` below its highest
                value in the ``within`` window before
``threshold``   ``metric = "seat_utilization"`` (a metric's sub-score, a category's score or
                ``"score"``) or ``column = "days_invoice_overdue"`` (a data column), ``op`` one of
                ``<  <=  >  >=`` and ``value``
``trend``       ``metric`` or ``column``, ``change = -0.30`` (relative) and ``over = "4w"``: the mean
                over the last ``over`` changed by at least ``change`` against the ``over`` before
``event``       ``column`` equals ``equals`` (e.g. ``champion_left``, ``equals = 1``)
``flag``        ``column`` is truthy (true, non-zero, non-empty)
``probability`` ``at_least = 0.3``: the model's frozen score-to-probability map reads at least this
``all``/``any`` ``all = ["a", "b"]`` or ``any = [...]``: a combination of other rules, by name
==============  ==============================================================================

Any rule may add ``filter = { lifecycle_stage = "renewal" }`` (attribute -> allowed value or values)
to watch only some accounts.

>>> rules, problems = parse_alert_rules([{"name": "red", "kind": "enters_band", "band": "red",
...     "severity": "high", "owner": "CSM", "action": "Call the customer this week.", "cooldown": "14d"}],
...     bands=["red", "yellow", "green"], metrics=[], categories=[], has_probability=False)
>>> problems, rules[0].kind, rules[0].cooldown_days
([], 'enters_band', 14)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from healthscore.spec.outcomes import OutcomeError, horizon_days, parse_horizon

__all__ = ["AlertRule", "KINDS", "SEVERITIES", "OWNERS", "OPS", "parse_alert_rules"]

KINDS = ("enters_band", "drop", "threshold", "trend", "event", "flag", "probability", "all", "any")
SEVERITIES = ("low", "medium", "high", "critical")
OWNERS = ("CSM", "CS manager", "executive sponsor")
OPS = ("<", "<=", ">", ">=")
_COMMON = {"name", "kind", "severity", "owner", "action", "cooldown", "audience", "description", "filter"}
_KIND_KEYS: dict[str, set[str]] = {
    "enters_band": {"band"},
    "drop": {"points", "within"},
    "threshold": {"metric", "column", "op", "value"},
    "trend": {"metric", "column", "change", "over"},
    "event": {"column", "equals"},
    "flag": {"column"},
    "probability": {"at_least"},
    "all": {"all"},
    "any": {"any"},
}
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class AlertRule:
    """One alert rule of a score model (see the module docstring for the kinds)."""

    name: str
    kind: str
    severity: str
    owner: str
    action: str
    cooldown: str = "0d"
    audience: str = "internal"
    description: str = ""
    band: str | None = None
    points: float | None = None
    within: str | None = None
    metric: str | None = None
    column: str | None = None
    op: str | None = None
    value: float | None = None
    change: float | None = None
    over: str | None = None
    equals: Any = None
    at_least: float | None = None
    rules: tuple[str, ...] = ()
    filter: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"AlertRule({self.name!r}, {self.kind}, {self.severity}, owner={self.owner!r})"

    @property
    def cooldown_days(self) -> int:
        """The cool-down as whole days (0: alert again as soon as the condition holds again)."""
        return horizon_days(self.cooldown, allow_zero=True)

    @property
    def within_days(self) -> int | None:
        return None if self.within is None else horizon_days(self.within)

    @property
    def over_days(self) -> int | None:
        return None if self.over is None else horizon_days(self.over)

    def to_dict(self) -> dict[str, Any]:
        """The rule as it is written in a ``[[alerts]]`` table (unset keys left out)."""
        out: dict[str, Any] = {"name": self.name}
        if self.kind not in ("all", "any"):
            out["kind"] = self.kind
        for key in (
            "band",
            "points",
            "within",
            "metric",
            "column",
            "op",
            "value",
            "change",
            "over",
            "equals",
            "at_least",
        ):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.kind in ("all", "any"):
            out[self.kind] = list(self.rules)
        if self.filter:
            out["filter"] = {k: v[0] if len(v) == 1 else list(v) for k, v in self.filter.items()}
        out.update(severity=self.severity, owner=self.owner, action=self.action, cooldown=self.cooldown)
        if self.description:
            out["description"] = self.description
        return out


def parse_alert_rules(
    raw: Any, *, bands: Iterable[str], metrics: Iterable[str], categories: Iterable[str], has_probability: bool
) -> tuple[list[AlertRule], list[str]]:
    """Read the ``[[alerts]]`` tables; return the rules and every problem as ``alerts[i] (name).key: ...``.

    The caller (the score model loader) adds the file name and raises one error with all problems.
    """
    problems: list[str] = []
    if raw is None:
        return [], problems
    if not isinstance(raw, list):
        return [], ["alerts: expected [[alerts]] tables, one per rule"]
    bands, metrics, categories = list(bands), list(metrics), list(categories)
    rules: list[AlertRule] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw, 1):
        if not isinstance(entry, Mapping):
            problems.append(f"alerts[{i}]: expected a table with name, kind, severity, owner and action")
            continue
        name = entry.get("name")
        at = f"alerts[{i}] ({name})." if isinstance(name, str) else f"alerts[{i}]."
        rule = _parse_one(entry, at, bands, metrics, categories, has_probability, problems)
        if rule is None:
            continue
        if rule.name in seen:
            problems.append(f"{at}name: {rule.name!r} is used by an earlier rule; give each rule its own name")
        seen.add(rule.name)
        rules.append(rule)
    names = {r.name for r in rules}
    for rule in rules:
        for part in rule.rules:
            if part not in names:
                problems.append(
                    f"alerts ({rule.name}).{rule.kind}: no rule called {part!r}; "
                    f"name rules defined in this model: {sorted(names - {rule.name})}"
                )
    problems += _cycles(rules)
    return rules, problems


def _parse_one(
    entry: Mapping[str, Any],
    at: str,
    bands: list[str],
    metrics: list[str],
    categories: list[str],
    has_probability: bool,
    problems: list[str],
) -> AlertRule | None:
    start = len(problems)
    kind = entry.get("kind")
    combos = [k for k in ("all", "any") if k in entry]
    if kind is None and len(combos) == 1:
        kind = combos[0]
    if kind is None:
        problems.append(f"{at}kind: required; use one of {list(KINDS)} (or all = [...] / any = [...])")
        return None
    if kind not in KINDS:
        problems.append(f"{at}kind: unknown kind {kind!r}; use one of {list(KINDS)}")
        return None
    allowed = _COMMON | _KIND_KEYS[kind]
    for extra in sorted(set(entry) - allowed):
        problems.append(
            f"{at}{extra}: not a setting of a {kind!r} rule (it takes {sorted(_KIND_KEYS[kind])} and {sorted(_COMMON)})"
        )

    def text(key: str, required: bool = True, default: str | None = None) -> str | None:
        value = entry.get(key, default)
        if value is None:
            if required:
                problems.append(f"{at}{key}: required")
            return None
        if not isinstance(value, str) or (required and not value.strip()):
            problems.append(f"{at}{key}: expected text, got {value!r}")
            return None
        return value

    def number(key: str, required: bool = True) -> float | None:
        value = entry.get(key)
        if value is None:
            if required:
                problems.append(f"{at}{key}: required (a number)")
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            problems.append(f"{at}{key}: expected a number, got {value!r}")
            return None
        return float(value)

    def duration(key: str, default: str | None = None, allow_zero: bool = False) -> str | None:
        value = entry.get(key, default)
        if value is None:
            problems.append(f'{at}{key}: required, e.g. {key} = "4w" or "28d"')
            return None
        try:
            return parse_horizon(str(value), allow_zero=allow_zero)
        except OutcomeError:
            none = ' ("0d" for none)' if allow_zero else ""
            problems.append(f'{at}{key}: {value!r} is not a duration; write days or weeks such as "28d" or "4w"{none}')
            return None

    name = text("name")
    if name is not None and not _NAME_RE.match(name):
        problems.append(f"{at}name: {name!r} must be letters, digits and underscores (it names the alert)")
    severity = text("severity")
    if severity is not None and severity not in SEVERITIES:
        problems.append(f"{at}severity: {severity!r} is not a severity; use one of {list(SEVERITIES)}")
    owner = text("owner")
    if owner is not None and owner not in OWNERS:
        problems.append(f"{at}owner: {owner!r} is not a role; use one of {list(OWNERS)}")
    action = text("action")
    description = text("description", required=False, default="") or ""
    audience = entry.get("audience", "internal")
    if audience != "internal":
        problems.append(
            f'{at}audience: alerts are for the account team only; write audience = "internal" '
            f"or leave it out (got {audience!r})"
        )
    cooldown = duration("cooldown", default="0d", allow_zero=True)

    filt: dict[str, tuple[Any, ...]] = {}
    raw_filter = entry.get("filter", {})
    if not isinstance(raw_filter, Mapping):
        problems.append(f'{at}filter: expected a table such as filter = {{ lifecycle_stage = "renewal" }}')
    else:
        for col, values in raw_filter.items():
            vals = tuple(values) if isinstance(values, list) else (values,)
            if not vals:
                problems.append(f"{at}filter.{col}: empty list; give the allowed values")
            filt[str(col)] = vals

    fields: dict[str, Any] = {}
    if kind == "enters_band":
        band = text("band")
        if band is not None and band not in bands:
            problems.append(f"{at}band: the model has no band {band!r}; use one of {bands}")
        fields["band"] = band
    elif kind == "drop":
        points = number("points")
        if points is not None and points <= 0:
            problems.append(f"{at}points: {points:g} must be above 0 (the score points lost)")
        fields.update(points=points, within=duration("within"))
    elif kind in ("threshold", "trend"):
        metric, column = entry.get("metric"), entry.get("column")
        if (metric is None) == (column is None):
            problems.append(
                f'{at}metric: give exactly one of metric = (a metric, a category or "score") '
                "or column = (a column of the scores)"
            )
        if metric is not None:
            if not isinstance(metric, str) or metric not in ("score", *metrics, *categories):
                problems.append(
                    f'{at}metric: {metric!r} is not "score", a metric ({", ".join(metrics)}) or a '
                    f"category ({', '.join(categories)}); for a data column write column = ..."
                )
        if column is not None and not isinstance(column, str):
            problems.append(f"{at}column: expected a column name, got {column!r}")
        fields.update(
            metric=metric if isinstance(metric, str) else None, column=column if isinstance(column, str) else None
        )
        if kind == "threshold":
            op = entry.get("op")
            if op not in OPS:
                problems.append(f"{at}op: {op!r} must be one of {list(OPS)}")
            fields.update(op=op, value=number("value"))
        else:
            change = number("change")
            if change is not None and (change == 0 or change < -1):
                problems.append(
                    f"{at}change: {change:g} must be a relative change other than 0 and not below -1, "
                    "e.g. -0.30 for a fall of 30%"
                )
            fields.update(change=change, over=duration("over"))
    elif kind in ("event", "flag"):
        fields["column"] = text("column")
        if kind == "event":
            if "equals" not in entry:
                problems.append(
                    f"{at}equals: required, the value that marks the event (e.g. equals = 1); "
                    'for any true/non-zero value use kind = "flag"'
                )
            fields["equals"] = entry.get("equals")
    elif kind == "probability":
        at_least = number("at_least")
        if at_least is not None and not 0 < at_least < 1:
            problems.append(f"{at}at_least: {at_least:g} must be a probability between 0 and 1")
        if not has_probability:
            problems.append(
                f"{at}kind: a probability rule reads the model's [probability] map, and this model "
                "has none; freeze one with 'healthscore evaluate --freeze' or remove the rule"
            )
        fields["at_least"] = at_least
    else:
        parts = entry.get(kind)
        if not isinstance(parts, list) or len(parts) < 2 or not all(isinstance(p, str) for p in parts):
            problems.append(f'{at}{kind}: expected a list of two or more rule names, e.g. {kind} = ["a", "b"]')
            parts = []
        elif name in parts:
            problems.append(f"{at}{kind}: a rule cannot include itself")
        if len(combos) > 1:
            problems.append(f"{at}: give all = [...] or any = [...], not both")
        fields["rules"] = tuple(parts)
    if len(problems) > start:
        return None
    return AlertRule(
        name=name or "",
        kind=kind,
        severity=severity or "",
        owner=owner or "",
        action=action or "",
        cooldown=cooldown or "0d",
        audience="internal",
        description=description,
        filter=filt,
        **fields,
    )


def _cycles(rules: list[AlertRule]) -> list[str]:
    """Combinations that (indirectly) include themselves."""
    parts = {r.name: r.rules for r in rules}
    out: list[str] = []
    for rule in rules:
        stack = list(rule.rules)
        seen: set[str] = set()
        while stack:
            name = stack.pop()
            if name == rule.name:
                out.append(
                    f"alerts ({rule.name}).{rule.kind}: the rule includes itself through {sorted(seen)}; "
                    "combinations must not form a loop"
                )
                break
            if name not in seen:
                seen.add(name)
                stack += parts.get(name, ())
    return out


def order_rules(rules: Iterable[AlertRule]) -> list[AlertRule]:
    """Rules with every combination after the rules it combines (the order to evaluate them)."""
    pending, done, out = list(rules), set(), []
    while pending:
        ready = [r for r in pending if all(p in done for p in r.rules)]
        if not ready:  # a loop; parse_alert_rules reports it
            raise ValueError(f"alert rules {[r.name for r in pending]} combine each other in a loop")
        for r in ready:
            out.append(r)
            done.add(r.name)
        pending = [r for r in pending if r.name not in done]
    return out
