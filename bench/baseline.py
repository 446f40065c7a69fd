"""The yardstick: one thread, one ``requests.Session``, posting what Herald would post.

Each request is signed just before it is sent (Herald signs every attempt with a fresh
timestamp) and carries the same header set as ``app.deliveries.engine.build_headers``, so
the gap between this loop and Herald is Herald's own overhead: queueing, claiming, recording.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import requests

from app.signing import signature_header
from app.version import __version__
from bench.stack import BenchError

USER_AGENT = f"Herald/{__version__}"


@dataclass(frozen=True)
class Target:
    url: str
    webhook_id: str
    secret: str


def signed_headers(target: Target, event_id: str, body: bytes, attempt: int = 1) -> dict[str, str]:
    timestamp = int(time.time())
    signature = signature_header([target.secret], event_id, timestamp, body)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
        "svix-id": event_id,
        "svix-timestamp": str(timestamp),
        "svix-signature": signature,
        "herald-webhook-id": target.webhook_id,
        "herald-attempt": str(attempt),
    }


def run_baseline(targets: list[Target], bodies: list[tuple[str, bytes]]) -> float:
    """POST every body once, round-robin over the targets; returns requests per second."""
    session = requests.Session()
    session.trust_env = False
    # Warm the connection so the figure is steady-state keep-alive, like a warm Herald pool.
    first_id, first_body = bodies[0]
    session.post(
        targets[0].url + "-warm",
        data=first_body,
        headers=signed_headers(targets[0], first_id, first_body),
        timeout=10,
    )
    started = time.perf_counter()
    for i, (event_id, body) in enumerate(bodies):
        target = targets[i % len(targets)]
        response = session.post(
            target.url, data=body, headers=signed_headers(target, event_id, body), timeout=10
        )
        if not response.ok:
            raise BenchError(f"baseline: the receiver answered {response.status_code}")
    return len(bodies) / (time.perf_counter() - started)
