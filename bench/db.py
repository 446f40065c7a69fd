"""The benchmark's own read-only look at Herald's database: is every delivery done yet?

Counting in SQL rather than through ``GET /v1/webhooks/{id}`` keeps the poller's load off
the web app being measured (100 webhooks would be 100 requests a poll).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import Engine, create_engine, text

from bench.api import Watchdog
from bench.stack import BenchError


def engine_for(database_url: str) -> Engine:
    if database_url.startswith(("postgres://", "postgresql://")):
        database_url = "postgresql+psycopg://" + database_url.split("://", 1)[1]
    return create_engine(database_url, pool_size=2)


def counts(engine: Engine, endpoint_ids: list[str]) -> dict[str, int]:
    """Deliveries by status over these endpoints."""
    marks = ", ".join(f":e{i}" for i in range(len(endpoint_ids)))
    sql = text(
        f"SELECT status, count(*) FROM deliveries WHERE endpoint_id IN ({marks}) GROUP BY status"
    )
    with engine.connect() as conn:
        rows = conn.execute(sql, {f"e{i}": e for i, e in enumerate(endpoint_ids)}).all()
    return {str(status): int(n) for status, n in rows}


def wait_succeeded(
    engine: Engine,
    endpoint_ids: list[str],
    expected: int,
    watchdog: Watchdog,
    on_poll: Callable[[], None],
) -> float:
    """Poll until ``expected`` deliveries succeeded; returns when that was seen (time.time())."""
    first: tuple[float, int] | None = None
    while True:
        now = counts(engine, endpoint_ids)
        if now.get("failed"):
            raise BenchError(f"{now['failed']} deliveries failed")
        done = now.get("succeeded", 0)
        seen = time.time()
        if done >= expected:
            return seen
        watchdog.check(done, f"{done} of {expected} deliveries succeeded")
        on_poll()
        # Each poll counts every delivery of the run: over a deep backlog, polling every
        # 20 ms took PostgreSQL CPU from the run being measured. Far from the end, sleep
        # for a quarter of the time the rest should take; near it, every 20 ms.
        first = first or (seen, done)
        rate = (done - first[1]) / max(seen - first[0], 1e-3)
        left = (expected - done) / rate if rate > 0 else 0.0
        time.sleep(min(1.0, max(0.02, left / 4)))
