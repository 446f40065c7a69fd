"""The worker's housekeeping thread: heartbeats for /healthz, and retention on a schedule."""

from __future__ import annotations

import logging
import threading
import time

import redis
from flask import Flask

from app.extensions import db
from app.heartbeat import BEAT_INTERVAL, beat, leave, worker_name
from app.retention import purge
from app.runtime import runtime

log = logging.getLogger(__name__)


def run_retention_once(lock_seconds: float = 3600) -> bool:
    """Run retention unless another worker holds the lock or ran it this interval."""
    rt = runtime()
    settings = rt.settings
    # One worker of N does it per interval: the key lives for the interval, so a restart
    # storm does not run it again, and a crashed run is retried one interval later.
    key = f"{rt.broker.prefix}:retention-ran"
    if not rt.broker.redis.set(key, worker_name(), nx=True, ex=int(settings.retention_interval)):
        return False
    started = time.monotonic()
    done = purge(settings.retention_days, settings.retention_batch, pause=0.05)
    log.info(
        "retention deleted %s attempts, %s deliveries and %s events older than %s days",
        done.attempts,
        done.deliveries,
        done.events,
        settings.retention_days,
        extra={
            "event": "retention",
            "attempts_deleted": done.attempts,
            "deliveries_deleted": done.deliveries,
            "events_deleted": done.events,
            "batches": done.batches,
            "longest_batch_ms": round(done.longest_batch * 1000),
            "duration_ms": round((time.monotonic() - started) * 1000),
        },
    )
    return True


def housekeep_forever(app: Flask, stop: threading.Event) -> None:
    """Beat every few seconds; run retention when it is due. Outages are logged, not fatal."""
    with app.app_context():
        rt = runtime()
        name = worker_name()
        next_retention = time.monotonic() + 10  # let the worker settle in first
        try:
            while True:
                try:
                    beat(rt.broker, name)
                except (redis.RedisError, OSError) as exc:
                    log.warning("heartbeat failed: %s", exc)
                if time.monotonic() >= next_retention:
                    next_retention = time.monotonic() + min(rt.settings.retention_interval, 300)
                    try:
                        run_retention_once()
                    except Exception:
                        db.session.rollback()
                        log.exception("retention failed; trying again later")
                if stop.wait(BEAT_INTERVAL):
                    break
        finally:
            leave(rt.broker, name)
