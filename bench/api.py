"""The few calls of Herald's /v1 API the benchmark needs, plus the receiver's control routes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests

from bench.stack import BenchError

EVENT_TYPE = "bench.event"
TIMEOUT = 30  # seconds per request: a stuck web app fails the run instead of hanging it


class Herald:
    def __init__(self, base_url: str, api_key: str) -> None:
        self.base = f"{base_url}/v1"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"

    def _call(self, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        response = self.session.request(method, self.base + path, timeout=TIMEOUT, **kwargs)
        if response.status_code != expect:
            raise BenchError(
                f"{method} /v1{path} answered {response.status_code}, expected {expect}: "
                f"{response.text[:500]}"
            )
        return response.json() if response.content else None

    def create_event_type(self, name: str = EVENT_TYPE) -> None:
        self._call(
            "POST",
            "/event-types",
            201,
            json={"name": name, "description": "benchmark traffic"},
        )

    def create_webhook(self, url: str, events: list[str] | None = None) -> dict[str, Any]:
        body = {"url": url, "events": events or [EVENT_TYPE], "description": "benchmark"}
        webhook: dict[str, Any] = self._call("POST", "/webhooks", 201, json=body)
        return webhook

    def delete_webhook(self, webhook_id: str) -> None:
        self._call("DELETE", f"/webhooks/{webhook_id}", 204)

    def counters(self, webhook_id: str) -> dict[str, int]:
        webhook = self._call("GET", f"/webhooks/{webhook_id}", 200)
        counters: dict[str, int] = webhook["deliveries"]
        return counters

    def publish_batch(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        answer = self._call("POST", "/events/batch", 202, json={"events": events})
        published: list[dict[str, Any]] = answer["data"]
        return published


class Receiver:
    def __init__(self, base_url: str) -> None:
        self.base = base_url
        self.session = requests.Session()

    def reset(self) -> None:
        self.session.post(f"{self.base}/reset", timeout=TIMEOUT).raise_for_status()

    def stats(self) -> dict[str, Any]:
        response = self.session.get(f"{self.base}/stats", timeout=TIMEOUT)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def arrivals(self) -> dict[str, float]:
        response = self.session.get(f"{self.base}/arrivals", timeout=TIMEOUT)
        response.raise_for_status()
        arrivals: dict[str, float] = response.json()
        return arrivals

    def wait_for(self, unique: int, watchdog: Watchdog, on_poll: Any = None) -> dict[str, Any]:
        return wait_for_unique(self.stats, unique, watchdog, on_poll, pause=0.02)


def wait_for_unique(
    stats_of: Callable[[], dict[str, Any]],
    unique: int,
    watchdog: Watchdog,
    on_poll: Any = None,
    pause: float = 0.05,
) -> dict[str, Any]:
    """Poll until ``unique`` distinct deliveries arrived; the watchdog ends a stalled wait."""
    while True:
        stats = stats_of()
        if stats["unique"] >= unique:
            return stats
        watchdog.check(stats["unique"], f"the receiver saw {stats['unique']} of {unique}")
        if on_poll:
            on_poll()
        time.sleep(pause)


class Watchdog:
    """Ends a wait that stops making progress, and any wait at all after ``limit`` seconds.

    Progress-based, because the run's size varies (10 webhooks x 5000 events is 50,000
    deliveries) while a stall is a stall whatever the size.
    """

    def __init__(self, stall: float, limit: float) -> None:
        self.stall = stall
        now = time.monotonic()
        self.hard_deadline = now + limit
        self.last_progress = now
        self.best = -1

    def check(self, value: int, where: str) -> None:
        now = time.monotonic()
        if value > self.best:
            self.best, self.last_progress = value, now
        if now - self.last_progress > self.stall:
            raise BenchError(f"no progress for {self.stall:g} s: {where}")
        if now > self.hard_deadline:
            raise BenchError(f"still unfinished at the time limit: {where}")
