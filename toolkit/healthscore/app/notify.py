"""Deliver new alerts to a webhook (a chat channel, a CRM task endpoint, an on-call tool).

Each alert is POSTed as JSON: a readable ``text`` line plus the structured ``alert`` record, with an
``Idempotency-Key`` header set to the alert id so a receiver can drop a repeat. Delivery goes through
an outbox file (JSON lines): alerts are added to it first, each delivery is recorded in it, and alerts
not yet delivered stay there and are sent first on the next run. The outbox is rewritten atomically
after every delivery, so a crash never loses an alert, and an alert recorded as delivered is never
sent again. Timeouts and server errors are retried with exponential back-off, a bounded number of
times; a client error (4xx other than 408/429) is not retried and the alert stays in the outbox.

>>> text_line({"severity": "high", "account_id": "A1", "rule": "entered_red", "owner": "CSM",
...            "action": "Call them.", "as_of": "2026-11-16"})
'[high] A1: entered_red (2026-11-16) -> CSM: Call them.'
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from healthscore.errors import HealthscoreError
from healthscore.io import files

__all__ = ["DeliveryError", "Delivery", "deliver_alerts", "text_line", "read_outbox"]

_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


class DeliveryError(HealthscoreError):
    """The webhook or the outbox cannot be used as given."""


@dataclass
class Delivery:
    """What one delivery run did."""

    delivered: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.pending

    def summary(self) -> str:
        line = (
            f"webhook: {len(self.delivered)} delivered, {len(self.pending)} waiting in the outbox, "
            f"{len(self.skipped)} already delivered before"
        )
        if self.errors:
            first = next(iter(self.errors.items()))
            line += f" (last error for {first[0]}: {first[1]})"
        return line


def text_line(alert: Mapping[str, Any]) -> str:
    """One readable line for a chat message."""
    return (
        f"[{alert.get('severity', '')}] {alert.get('account_id', '')}: {alert.get('rule', '')} "
        f"({alert.get('as_of', '')}) -> {alert.get('owner', '')}: {alert.get('action', '')}"
    )


def read_outbox(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The outbox entries: ``{"alert_id", "alert", "delivered", "attempts", "last_error"}`` per line."""
    path = Path(path)
    if not path.exists():
        return []
    entries = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise DeliveryError(f"outbox {path}: line {n} is not JSON; fix or remove that line") from None
        if not isinstance(entry, dict) or "alert_id" not in entry or "alert" not in entry:
            raise DeliveryError(f"outbox {path}: line {n} has no alert_id/alert; it was not written by healthscore")
        entries.append(entry)
    return entries


def _write_outbox(path: Path, entries: list[dict[str, Any]]) -> None:
    files.write_text(path, "".join(json.dumps(e, sort_keys=True, default=str) + "\n" for e in entries))


def _post(url: str, body: bytes, key: str, timeout: float) -> int:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Idempotency-Key": key, "User-Agent": "healthscore-alerts"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()
        return int(response.status)


def deliver_alerts(
    alerts: Iterable[Mapping[str, Any]],
    url: str,
    outbox: str | os.PathLike[str],
    *,
    timeout: float = 10.0,
    retries: int = 4,
    backoff: float = 0.5,
    max_backoff: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """Post every undelivered alert of the outbox (oldest first), then the given ``alerts``.

    ``alerts`` are records (dicts) with at least ``alert_id``; ones already in the outbox are not
    added twice. Each alert gets ``1 + retries`` attempts, waiting ``backoff * 2**k`` seconds (at most
    ``max_backoff``) between them.
    """
    if not url.startswith(("http://", "https://")):
        raise DeliveryError(f"--webhook {url!r}: give an http:// or https:// address")
    if timeout <= 0 or retries < 0:
        raise DeliveryError("timeout must be above 0 and retries at least 0")
    path = Path(outbox)
    entries = read_outbox(path)
    known = {e["alert_id"] for e in entries}
    result = Delivery()
    for alert in alerts:
        record = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in dict(alert).items()}
        key = str(record.get("alert_id") or "")
        if not key:
            raise DeliveryError("an alert without alert_id cannot be delivered exactly once")
        if key in known:
            if any(e["alert_id"] == key and e.get("delivered") for e in entries):
                result.skipped.append(key)
            continue
        entries.append({"alert_id": key, "alert": record, "delivered": None, "attempts": 0, "last_error": None})
        known.add(key)
    _write_outbox(path, entries)  # nothing is lost from here on, even if the posts below crash

    for entry in entries:
        if entry.get("delivered"):
            continue
        key = entry["alert_id"]
        body = json.dumps({"text": text_line(entry["alert"]), "alert": entry["alert"]}, default=str).encode()
        for attempt in range(retries + 1):
            entry["attempts"] = int(entry.get("attempts") or 0) + 1
            try:
                _post(url, body, key, timeout)
            except urllib.error.HTTPError as exc:
                entry["last_error"] = f"HTTP {exc.code}"
                if exc.code not in _RETRY_STATUS:
                    break
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                entry["last_error"] = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            else:
                entry["delivered"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                entry["last_error"] = None
                break
            if attempt < retries:
                sleep(min(max_backoff, backoff * 2**attempt))
        _write_outbox(path, entries)
        if entry.get("delivered"):
            result.delivered.append(key)
        else:
            result.pending.append(key)
            result.errors[key] = str(entry["last_error"])
    return result
