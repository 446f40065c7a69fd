"""Prometheus metrics, right across any number of gunicorn and worker processes and hosts.

Counters live in Redis (one HINCRBY pipeline per recorded batch), not in process memory, so
whichever gunicorn process answers a scrape reports every worker's attempts, and a restart
loses nothing. Gauges (queue depth, oldest due delivery, webhooks by status) are read from the
database at scrape time: it is the source of truth for what is owed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC
from typing import TYPE_CHECKING

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from app.deliveries.engine import DELIVERIES, ENDPOINTS, due_filter
from app.extensions import db
from app.heartbeat import workers_alive
from app.models import utcnow
from app.queue import Broker

if TYPE_CHECKING:
    from app.deliveries.engine import Recorded

# Attempt duration buckets in seconds: a loopback receiver answers in milliseconds, a slow one
# runs into the timeout (10 s by default).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _keys(broker: Broker) -> dict[str, str]:
    base = f"{broker.prefix}:metrics"
    return {
        "attempts": f"{base}:attempts",
        "deliveries": f"{base}:deliveries",
        "duration": f"{base}:attempt-duration",
    }


def _bucket(seconds: float) -> str:
    for bound in BUCKETS:
        if seconds <= bound:
            return repr(bound)
    return "+Inf"


def count_attempts(broker: Broker, recorded: Sequence[Recorded]) -> None:
    """Add a batch of recorded attempts to the shared counters (never raises)."""
    if not recorded:
        return
    attempts: Counter[str] = Counter()
    deliveries: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    total_seconds = 0.0
    for item in recorded:
        attempts["success" if item.outcome.ok else "failure"] += 1
        # A delivery's outcome: it ended (succeeded/failed) or it will be tried again.
        deliveries["retrying" if item.final_status == "pending" else item.final_status] += 1
        seconds = item.outcome.duration_ms / 1000
        buckets[_bucket(seconds)] += 1
        total_seconds += seconds
    keys = _keys(broker)
    try:
        pipe = broker.redis.pipeline(transaction=False)
        for name, n in attempts.items():
            pipe.hincrby(keys["attempts"], name, n)
        for name, n in deliveries.items():
            pipe.hincrby(keys["deliveries"], name, n)
        for name, n in buckets.items():
            pipe.hincrby(keys["duration"], name, n)
        pipe.hincrby(keys["duration"], "count", len(recorded))
        pipe.hincrbyfloat(keys["duration"], "sum", total_seconds)
        pipe.execute()
    except (redis.RedisError, OSError):
        pass  # metrics must never cost a delivery; the attempt rows are the record


def _hash(broker: Broker, key: str) -> dict[str, float]:
    raw: dict[bytes, bytes] = broker.redis.hgetall(key)  # type: ignore[assignment]
    return {k.decode(): float(v) for k, v in raw.items()}


class HeraldCollector(Collector):
    """Reads the shared counters from Redis and the gauges from the database per scrape."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def collect(self) -> Iterable[Metric]:
        yield from self._counters()
        yield from self._gauges()

    def _counters(self) -> Iterable[Metric]:
        keys = _keys(self.broker)
        attempts = CounterMetricFamily(
            "herald_attempts", "HTTP attempts made, by outcome.", labels=["outcome"]
        )
        counts = _hash(self.broker, keys["attempts"])
        for outcome in ("success", "failure"):
            attempts.add_metric([outcome], counts.get(outcome, 0.0))
        yield attempts

        deliveries = CounterMetricFamily(
            "herald_deliveries",
            "Delivery outcomes after each attempt: succeeded, failed (attempts used up) "
            "or retrying.",
            labels=["outcome"],
        )
        counts = _hash(self.broker, keys["deliveries"])
        for outcome in ("succeeded", "failed", "retrying"):
            deliveries.add_metric([outcome], counts.get(outcome, 0.0))
        yield deliveries

        raw = _hash(self.broker, keys["duration"])
        cumulative = 0.0
        buckets: list[tuple[str, float]] = []
        for bound in BUCKETS:
            cumulative += raw.get(repr(bound), 0.0)
            buckets.append((repr(bound), cumulative))
        buckets.append(("+Inf", raw.get("count", 0.0)))
        yield HistogramMetricFamily(
            "herald_attempt_duration_seconds",
            "Duration of HTTP attempts, from sending to the end of the response.",
            buckets=buckets,
            sum_value=raw.get("sum", 0.0),
        )

    def _gauges(self) -> Iterable[Metric]:
        now = utcnow()
        due = db.session.execute(
            select(func.count(), func.min(DELIVERIES.c.next_attempt_at)).where(*due_filter(now))
        ).one()
        pending = db.session.execute(
            select(func.count()).where(DELIVERIES.c.status == "pending")
        ).scalar_one()
        by_status: dict[str, int] = dict(
            db.session.execute(
                select(ENDPOINTS.c.status, func.count())
                .where(ENDPOINTS.c.deleted_at.is_(None))
                .group_by(ENDPOINTS.c.status)
            ).all()
        )
        db.session.rollback()

        yield GaugeMetricFamily(
            "herald_deliveries_due",
            "Deliveries due now and not being sent: the real queue depth.",
            value=due[0],
        )
        oldest = due[1]
        if oldest is not None and oldest.tzinfo is None:  # SQLite keeps no zone under min()
            oldest = oldest.replace(tzinfo=UTC)
        yield GaugeMetricFamily(
            "herald_oldest_due_delivery_age_seconds",
            "How long the oldest due delivery has waited past its time (0 when none is due).",
            value=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        )
        yield GaugeMetricFamily(
            "herald_deliveries_pending",
            "Deliveries not finished yet, due now or waiting for a retry.",
            value=pending,
        )
        webhooks = GaugeMetricFamily("herald_webhooks", "Webhooks by status.", labels=["status"])
        for status in ("active", "pending", "disabled"):
            webhooks.add_metric([status], by_status.get(status, 0))
        yield webhooks
        yield GaugeMetricFamily(
            "herald_webhooks_disabled",
            "Webhooks disabled (by failures, 410 Gone or by hand).",
            value=by_status.get("disabled", 0),
        )
        yield GaugeMetricFamily(
            "herald_rq_queue_length",
            "Wake-up jobs waiting in the RQ queue (not deliveries: a job drains many).",
            value=self.broker.queue().count,
        )
        yield GaugeMetricFamily(
            "herald_workers_alive",
            "Workers that sent a heartbeat in the last minute.",
            value=workers_alive(self.broker),
        )


def render(broker: Broker) -> bytes:
    """The Prometheus text exposition of Herald's metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HeraldCollector(broker))
    return generate_latest(registry)
