"""The naive baseline: one RQ job per delivery (kept here as a yardstick, never in Herald).

Each job signs one body and POSTs it with a module-level ``requests.Session`` (keep-alive,
so the comparison is generous to it); it writes nothing to a database. The jobs are queued
up front, then one RQ ``SimpleWorker`` (RQ's fastest) runs them all in burst mode.
"""

from __future__ import annotations

import time

import redis
import requests
from rq import Queue, SimpleWorker

from bench.baseline import Target, signed_headers
from bench.stack import BenchError, Stack

_session: requests.Session | None = None


def send_one(url: str, webhook_id: str, secret: str, event_id: str, body: bytes) -> int:
    """The RQ job: sign and POST one delivery."""
    global _session
    if _session is None:
        _session = requests.Session()
        _session.trust_env = False
    target = Target(url, webhook_id, secret)
    response = _session.post(
        url, data=body, headers=signed_headers(target, event_id, body), timeout=10
    )
    return response.status_code


def run_naive(stack: Stack, targets: list[Target], bodies: list[tuple[str, bytes]]) -> float:
    """Deliveries per second of one naive RQ worker process over ``bodies``."""
    connection = redis.Redis.from_url(stack.env["REDIS_URL"])
    name = f"{stack.redis_prefix or 'bench'}-naive"
    queue = Queue(name, connection=connection)
    jobs = [
        Queue.prepare_data(
            send_one,
            args=(t.url, t.webhook_id, t.secret, event_id, body),
            result_ttl=0,
        )
        for i, (event_id, body) in enumerate(bodies)
        for t in [targets[i % len(targets)]]
    ]
    queue.enqueue_many(jobs)
    # In this process (idle otherwise), so start-up is not timed: only the jobs are.
    worker = SimpleWorker([queue], connection=connection)
    started = time.perf_counter()
    worker.work(burst=True, logging_level="WARNING")
    seconds = time.perf_counter() - started
    left = queue.count
    queue.delete(delete_jobs=True)
    if left:
        raise BenchError(f"naive worker left {left} jobs")
    return len(bodies) / seconds
