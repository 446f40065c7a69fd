"""Sign-in throttling: a few wrong passwords per address and email, then a pause."""

from __future__ import annotations

import contextlib
import hashlib

import redis

from app.runtime import runtime

MAX_FAILURES = 10
WINDOW_SECONDS = 15 * 60


def _key(ip: str, email: str) -> str:
    digest = hashlib.sha256(f"{ip}|{email.strip().lower()}".encode()).hexdigest()[:32]
    return f"{runtime().broker.prefix}:login-failures:{digest}"


def is_throttled(ip: str, email: str) -> bool:
    """True after MAX_FAILURES wrong sign-ins within the window (False when Redis is away)."""
    try:
        count = runtime().broker.redis.get(_key(ip, email))
    except (redis.RedisError, OSError):
        return False
    return count is not None and int(count) >= MAX_FAILURES


def record_failure(ip: str, email: str) -> None:
    try:
        pipe = runtime().broker.redis.pipeline()
        key = _key(ip, email)
        pipe.incr(key)
        pipe.expire(key, WINDOW_SECONDS)
        pipe.execute()
    except (redis.RedisError, OSError):
        pass  # throttling is a guard, not a reason to refuse every sign-in


def clear(ip: str, email: str) -> None:
    with contextlib.suppress(redis.RedisError, OSError):
        runtime().broker.redis.delete(_key(ip, email))
