"""Hostile receivers against a real worker process: each one costs a logged attempt with a clear
error, the worker's memory stays bounded (a gigabyte is never read) and it keeps delivering."""

from __future__ import annotations

import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.extensions import db
from app.models import Delivery
from tests.conftest import Api
from tests.faults import Worker, wait_until
from tests.receiver import Behaviour, Receiver, garbage, hang, reset, respond

GIB = 1024**3
MIB = 1024


def stream(status: int, size: int = GIB) -> Behaviour:
    """``status`` with a body of ``size`` bytes, written until the client hangs up."""

    def run(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Length", str(size))
        handler.end_headers()
        _pour(handler, size)

    return run


def endless_status_line(size: int = GIB) -> Behaviour:
    """A gigabyte of bytes with no line end: not even a status line ever completes."""

    def run(handler: BaseHTTPRequestHandler) -> None:
        _pour(handler, size)

    return run


def trickle(every: float = 0.2) -> Behaviour:
    """A 200 whose body then comes one byte at a time, for as long as anyone listens."""

    def run(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(1_000_000))
        handler.end_headers()
        _drip(handler, every)

    return run


def trickle_headers(every: float = 0.3) -> Behaviour:
    """A status line, then a header that never ends, one byte at a time."""

    def run(handler: BaseHTTPRequestHandler) -> None:
        _drip(handler, every, first=b"HTTP/1.1 200 OK\r\nX-Slow: ")

    return run


def _drip(handler: BaseHTTPRequestHandler, every: float, first: bytes = b"") -> None:
    """``first``, then one byte every ``every`` seconds until the sender hangs up."""
    try:
        handler.wfile.write(first)
        for _ in range(1_000_000):
            handler.wfile.write(b"x")
            handler.wfile.flush()
            time.sleep(every)
    except OSError:
        pass
    handler.close_connection = True


def _pour(handler: BaseHTTPRequestHandler, size: int) -> None:
    block = b"x" * (64 * 1024)
    sent = 0
    try:
        while sent < size:
            handler.wfile.write(block)
            sent += len(block)
    except OSError:
        pass  # the sender read what it wanted and closed
    handler.close_connection = True


# path -> (behaviour, expected attempt: status, http_status, error)
HOSTILE: dict[str, tuple[Behaviour, str, int | None, str | None]] = {
    "/hang": (hang(6), "failure", None, "timed out after 2 s"),
    "/trickle-headers": (trickle_headers(), "failure", None, "timed out after 2 s"),
    "/reset": (reset(), "failure", None, "connection reset by peer"),
    "/garbage": (garbage(), "failure", None, "invalid HTTP response"),
    "/endless": (endless_status_line(), "failure", None, "invalid HTTP response"),
    "/redirect": (
        respond(302, headers={"Location": "/followed"}),
        "failure",
        302,
        None,
    ),
    "/gone": (respond(410, b"gone"), "failure", 410, None),
    "/busy": (respond(429, b"slow down", {"Retry-After": "100"}), "failure", 429, None),
    "/huge-error": (stream(500), "failure", 500, None),
    # API.md: success is any 2xx within the timeout. The status came in time; Herald reads
    # the first 4 KiB of the gigabyte and hangs up.
    "/huge-ok": (stream(200), "success", 200, None),
    # Same for a body that trickles in: the attempt ends at the timeout, not 4 KiB later.
    "/trickle": (trickle(), "success", 200, None),
}


def attempts(api: Api, hook_id: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = api.get(f"/v1/webhooks/{hook_id}/attempts").get_json()["data"]
    return data


def test_it_logs_a_clear_failure_for_each_hostile_receiver_and_keeps_going(
    env: dict[str, str], api: Api, tmp_path: Path
) -> None:
    # One try now, the next in a minute (never within this test); 2 s per attempt.
    env = {**env, "HERALD_RETRY_SCHEDULE": "60", "HERALD_TIMEOUT": "2"}
    api.event_type("hostile.poke")
    api.event_type("calm.poke")
    with Receiver() as receiver, Worker(env, tmp_path / "worker.log") as worker:
        hooks = {}
        for path, (behaviour, *_) in HOSTILE.items():
            receiver.behave(path, behaviour)
            hooks[path] = api.webhook(receiver.url_for(path), ["hostile.poke"])["id"]
        fine = api.webhook(receiver.url_for("/fine"), ["calm.poke"])["id"]
        worker.wait_ready()
        baseline_kib = worker.peak_rss_kib()

        event = api.publish("hostile.poke")
        assert event["deliveries"] == len(HOSTILE)
        assert wait_until(lambda: all(attempts(api, h) for h in hooks.values()), 60, 0.5), (
            worker.output()
        )

        for path, (_, status, http_status, error) in HOSTILE.items():
            [logged] = attempts(api, hooks[path])
            assert (logged["status"], logged["http_status"]) == (status, http_status), path
            if error:
                assert logged["error"] == error, (path, logged["error"])
            assert len((logged["response_body"] or "").encode()) <= 4096, path

        assert not receiver.requests_for("/followed")  # a 3xx is never followed
        gone = api.get(f"/v1/webhooks/{hooks['/gone']}").get_json()
        assert gone["status"] == "disabled"
        assert "410" in gone["disabled_reason"]
        busy = db.session.execute(
            select(Delivery).where(Delivery.endpoint_id == hooks["/busy"])
        ).scalar_one()
        wait: datetime = busy.next_attempt_at
        assert busy.last_attempt_at is not None
        assert 99 <= (wait - busy.last_attempt_at).total_seconds() <= 101  # Retry-After: 100
        db.session.rollback()

        # Two gigabytes were offered; the worker's memory barely moved.
        assert worker.peak_rss_kib() - baseline_kib < 64 * MIB
        # And it keeps working.
        api.publish("calm.poke")
        assert wait_until(lambda: receiver.requests_for("/fine"), 30), worker.output()
        assert wait_until(lambda: attempts(api, fine), 10, 0.2)
        assert attempts(api, fine)[0]["status"] == "success"
        assert worker.alive
