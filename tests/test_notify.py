"""Webhook delivery of new alerts against a local HTTP server that fails, stalls and repeats on purpose:
no alert is lost and none is delivered twice."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from healthscore.app.notify import DeliveryError, deliver_alerts, read_outbox


class Receiver:
    """A webhook on 127.0.0.1: ``plan`` says what each request gets (``ok``, ``500``, ``400``, ``slow``);
    requests past the plan get ``ok``. Accepted bodies are kept, and so are the idempotency keys."""

    def __init__(self, plan: list[str]) -> None:
        self.plan = list(plan)
        self.requests: list[str] = []
        self.accepted: list[dict] = []
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = self.headers["Idempotency-Key"]
                receiver.requests.append(key)
                what = receiver.plan.pop(0) if receiver.plan else "ok"
                if what == "slow":  # answer after the client gave up (bounded wait)
                    receiver.release.wait(2.0)
                    what = "ok"
                if what == "ok":
                    receiver.accepted.append({"key": key, **body})
                    self.send_response(200)
                else:
                    self.send_response(int(what))
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def alert(i: int) -> dict:
    return {
        "alert_id": f"id{i}",
        "account_id": f"A{i}",
        "rule": "entered_red",
        "severity": "high",
        "owner": "CSM",
        "action": "Call them.",
        "as_of": "2026-11-16",
        "status": "new",
        "evidence": json.dumps({"score": 30 + i}),
    }


def no_sleep(_: float) -> None:
    pass


def test_every_alert_is_posted_once_with_text_record_and_idempotency_key(tmp_path: Path):
    with Receiver([]) as hook:
        result = deliver_alerts([alert(1), alert(2)], hook.url, tmp_path / "outbox.jsonl", sleep=no_sleep)
    assert result.delivered == ["id1", "id2"] and result.ok
    assert [a["key"] for a in hook.accepted] == ["id1", "id2"]
    first = hook.accepted[0]
    assert first["text"] == "[high] A1: entered_red (2026-11-16) -> CSM: Call them."
    assert first["alert"]["evidence"] == json.dumps({"score": 31})
    assert all(e["delivered"] for e in read_outbox(tmp_path / "outbox.jsonl"))


def test_server_errors_and_timeouts_are_retried_with_growing_waits(tmp_path: Path):
    waits: list[float] = []
    with Receiver(["500", "slow", "503"]) as hook:
        result = deliver_alerts(
            [alert(1)], hook.url, tmp_path / "outbox.jsonl", timeout=0.3, retries=4, backoff=0.1, sleep=waits.append
        )
    assert result.delivered == ["id1"]
    assert waits == [0.1, 0.2, 0.4]  # three failures, then success
    # the stalled request may still have been accepted late by the server: the receiver sees the same key,
    # which is what the idempotency key is for; our side recorded one delivery
    assert {a["key"] for a in hook.accepted} == {"id1"}
    assert read_outbox(tmp_path / "outbox.jsonl")[0]["attempts"] == 4


def test_undelivered_alerts_wait_in_the_outbox_and_go_first_next_time(tmp_path: Path):
    outbox = tmp_path / "outbox.jsonl"
    with Receiver(["500"] * 3) as hook:  # id1 fails all three attempts, id2 then gets through
        first = deliver_alerts([alert(1), alert(2)], hook.url, outbox, retries=2, sleep=no_sleep)
    assert first.pending == ["id1"] and first.delivered == ["id2"] and not first.ok
    assert "HTTP 500" in first.summary()
    with Receiver([]) as hook:
        # the next run: id2 again (the same alert reported twice) and a new id3
        second = deliver_alerts([alert(2), alert(3)], hook.url, outbox, sleep=no_sleep)
    assert [a["key"] for a in hook.accepted] == ["id1", "id3"]  # the waiting one first; id2 not again
    assert second.delivered == ["id1", "id3"] and second.skipped == ["id2"]
    entries = read_outbox(outbox)
    assert [e["alert_id"] for e in entries] == ["id1", "id2", "id3"] and all(e["delivered"] for e in entries)


def test_a_client_error_is_not_retried_and_the_alert_stays(tmp_path: Path):
    waits: list[float] = []
    with Receiver(["400"]) as hook:
        result = deliver_alerts([alert(1)], hook.url, tmp_path / "o.jsonl", sleep=waits.append)
    assert hook.requests == ["id1"] and waits == [] and result.pending == ["id1"]


def test_an_unreachable_webhook_loses_nothing(tmp_path: Path):
    with Receiver([]) as hook:
        url = hook.url
    # the server is gone: connection refused on every attempt
    result = deliver_alerts([alert(1)], url, tmp_path / "o.jsonl", retries=1, sleep=no_sleep, timeout=1)
    assert result.pending == ["id1"]
    assert read_outbox(tmp_path / "o.jsonl")[0]["alert"]["account_id"] == "A1"


def test_bad_inputs_are_reported(tmp_path: Path):
    with pytest.raises(DeliveryError, match="give an http:// or https:// address"):
        deliver_alerts([alert(1)], "ftp://x", tmp_path / "o.jsonl")
    (tmp_path / "bad.jsonl").write_text("not json\n")
    with pytest.raises(DeliveryError, match="line 1 is not JSON"):
        deliver_alerts([alert(1)], "http://127.0.0.1:9/", tmp_path / "bad.jsonl")
