"""Figure 1: end-to-end throughput, and the bare ``requests`` loop beside it in the same run.

Events are published through the API in batches, fanned out, signed, delivered and logged;
the clock stops when the database says the last delivery succeeded (its attempt is written
in the same transaction). Arrival times at the receiver give the latencies and duplicates.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from bench.api import EVENT_TYPE, Herald, Watchdog
from bench.baseline import Target, run_baseline
from bench.db import wait_succeeded
from bench.monitor import CpuMeter, Sampler
from bench.stack import Stack


@dataclass
class Bench:
    """What every scenario needs: the running stack and handles on it."""

    stack: Stack
    herald: Herald
    receiver: Any  # bench.nginx.ArrivalLog (or the Python receiver's client)
    engine: Engine
    worker_pids: list[int]
    cpu_groups: dict[str, list[int]]
    timeout: float

    def wait_succeeded(self, endpoint_ids: list[str], owed: int) -> float:
        """Wait until ``owed`` deliveries to these webhooks have succeeded (failing fast on
        a stall or a dead process); returns when that was seen."""
        watchdog = Watchdog(self.timeout, 10 * self.timeout)
        return wait_succeeded(self.engine, endpoint_ids, owed, watchdog, self.stack.check_alive)


@dataclass
class Throughput:
    webhooks: int
    workers: int
    events: int
    deliveries: int = 0
    seconds: float = 0.0
    deliveries_per_s: float = 0.0
    publish_seconds: float = 0.0
    baseline_req_per_s: float = 0.0
    ratio: float = 0.0
    worker_rss_mb: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    duplicates: int = 0
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    machine_busy_pct: float = 0.0


def event_data(seq: int) -> dict[str, Any]:
    """A plausible event whose delivered body is about 1 KiB, the size DESIGN.md measured."""
    return {
        "id": str(uuid.uuid4()),
        "seq": seq,
        "email": f"user{seq}@example.com",
        "display_name": f"Benchmark User {seq}",
        "plan": "team",
        "tags": ["bench", "load", "herald"],
        "note": "lorem ipsum dolor sit amet " * 30,
    }


def herald_body(data: dict[str, Any]) -> tuple[str, bytes]:
    """A body shaped like the one Herald delivers, for the baseline loops."""
    event_id = f"evt_base{uuid.uuid4().hex}"
    body = {
        "id": event_id,
        "type": EVENT_TYPE,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "live_mode": True,
        "data": data,
        "previous_data": None,
    }
    return event_id, json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def percentiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50": round(cuts[49], 1),
        "p95": round(cuts[94], 1),
        "p99": round(cuts[98], 1),
        "max": round(max(values), 1),
    }


def created_at(published: dict[str, Any]) -> float:
    """The event's creation time (the API's ``created_at``) as Unix seconds."""
    text = str(published["created_at"]).replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


PUBLISHERS = 4  # concurrent publishing clients: one alone would be the bottleneck measured


def publish(bench: Bench, count: int, batch: int) -> dict[str, float]:
    """Publish ``count`` events in batches from a few clients; event id -> its creation time."""
    local = threading.local()

    def one(start: int) -> list[tuple[str, float]]:
        client = getattr(local, "herald", None)
        if client is None:
            client = local.herald = Herald(bench.stack.web_url, bench.stack.api_key)
        events = [
            {"type": EVENT_TYPE, "data": event_data(i)}
            for i in range(start, min(count, start + batch))
        ]
        return [(p["id"], created_at(p)) for p in client.publish_batch(events)]

    created: dict[str, float] = {}
    with ThreadPoolExecutor(PUBLISHERS) as pool:
        for answer in pool.map(one, range(0, count, batch)):
            created.update(answer)
    bench.stack.check_alive()
    return created


def latencies_ms(arrivals: dict[str, float], created: dict[str, float]) -> list[float]:
    """Receiver-side arrival minus the event's creation time, per delivery."""
    out = []
    for key, arrived in arrivals.items():
        event_id = key.split(" ", 1)[1]
        if event_id in created:
            out.append((arrived - created[event_id]) * 1000)
    return out


def make_webhooks(bench: Bench, count: int, tag: str) -> list[dict[str, Any]]:
    base = bench.stack.receiver_url
    return [bench.herald.create_webhook(f"{base}/{tag}/{i}") for i in range(count)]


def run_throughput(
    bench: Bench, webhooks: int, deliveries: int, batch: int, baseline: bool = True
) -> Throughput:
    """Publish ``deliveries / webhooks`` events to ``webhooks`` webhooks and time it all
    (and, with ``baseline``, the bare loop against the same receiver just before)."""
    events = max(1, deliveries // webhooks)
    result = Throughput(webhooks=webhooks, workers=len(bench.worker_pids), events=events)
    created = make_webhooks(bench, webhooks, f"tp{webhooks}w{len(bench.worker_pids)}")
    ids = [w["id"] for w in created]
    try:
        # Warm-up: the workers' pools and keep-alive connections, gunicorn's threads.
        warm = max(2, 200 // webhooks)
        bench.receiver.reset()
        publish(bench, warm, batch)
        bench.wait_succeeded(ids, warm * webhooks)

        if baseline:
            # The yardstick, in the same run: one thread, one Session, the same signed bodies.
            targets = [Target(w["url"], w["id"], w["secret"]) for w in created]
            bodies = [herald_body(event_data(i)) for i in range(min(deliveries, 3000))]
            result.baseline_req_per_s = round(run_baseline(targets, bodies), 1)

        bench.receiver.reset()
        expected = events * webhooks
        with Sampler(bench.worker_pids) as sampler, CpuMeter(bench.cpu_groups) as cpu:
            started = time.time()
            made = publish(bench, events, batch)
            result.publish_seconds = round(time.time() - started, 3)
            finished = bench.wait_succeeded(ids, (warm + events) * webhooks)
        time.sleep(0.2)  # nginx flushes its log every 100 ms
        stats = bench.receiver.stats()
        arrivals = bench.receiver.arrivals()
        result.deliveries = expected
        result.seconds = round(finished - started, 3)
        result.deliveries_per_s = round(expected / (finished - started), 1)
        if result.baseline_req_per_s:
            result.ratio = round(result.deliveries_per_s / result.baseline_req_per_s, 3)
        result.worker_rss_mb = round(sampler.peak_mb, 1)
        result.latency_ms = percentiles(latencies_ms(arrivals, made))
        result.duplicates = int(stats["duplicates"])
        result.cpu_seconds = cpu.used
        result.machine_busy_pct = cpu.machine_busy_pct
    finally:
        for webhook_id in ids:  # the next scenario starts with only its own webhooks
            bench.herald.delete_webhook(webhook_id)
    return result
