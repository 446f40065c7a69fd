"""Worker heartbeats in Redis, so /healthz, /metrics and doctor can tell whether workers live."""

from __future__ import annotations

import contextlib
import os
import socket
import time

import redis

from app.queue import Broker

# A worker beats every few seconds; one not heard from for this long counts as gone.
BEAT_INTERVAL = 5.0
STALE_AFTER = 60.0


def _key(broker: Broker) -> str:
    return f"{broker.prefix}:workers"


def worker_name() -> str:
    """This process as the heartbeat names it: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def beat(broker: Broker, name: str | None = None, now: float | None = None) -> None:
    """Record that this worker is alive now, and forget workers long gone."""
    now = time.time() if now is None else now
    key = _key(broker)
    pipe = broker.redis.pipeline(transaction=False)
    pipe.zadd(key, {name or worker_name(): now})
    pipe.zremrangebyscore(key, "-inf", now - 24 * 3600)
    pipe.expire(key, 24 * 3600)
    pipe.execute()


def leave(broker: Broker, name: str | None = None) -> None:
    """A worker shutting down cleanly says so, rather than going stale."""
    with contextlib.suppress(redis.RedisError, OSError):
        broker.redis.zrem(_key(broker), name or worker_name())


def workers_alive(broker: Broker, within: float = STALE_AFTER, now: float | None = None) -> int:
    """How many workers have beaten within the last ``within`` seconds."""
    now = time.time() if now is None else now
    return int(broker.redis.zcount(_key(broker), now - within, "+inf"))


def last_seen(broker: Broker) -> float | None:
    """Unix time of the most recent heartbeat of any worker, or None if none ever beat."""
    newest = broker.redis.zrevrange(_key(broker), 0, 0, withscores=True)
    return float(newest[0][1]) if newest else None
