"""Worker processes racing on one database: no double sends, no lost deliveries."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from flask import Flask
from sqlalchemy import func, select

from app.deliveries.breaker import THRESHOLD
from app.extensions import db
from app.models import Attempt, Delivery
from tests.conftest import Api
from tests.receiver import Receiver, respond

ROOT = Path(__file__).resolve().parent.parent
# The test receiver is a threaded http.server in this process: keep the racing workers'
# concurrency within what it answers promptly, so no attempt times out.
RACE_ENV = {
    "HERALD_WORKER_THREADS": "6",
    "HERALD_ENDPOINT_CONCURRENCY": "2",
    "HERALD_TIMEOUT": "10",
    "HERALD_BATCH_SIZE": "20",
}


def race(env: dict[str, str], processes: int, budget: float, idle: float) -> list[int]:
    """Start ``processes`` drains together (as separate processes); their attempt counts."""
    start = time.time() + 3  # after every process has imported Herald
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.drain_process", str(start), str(budget), str(idle)],
            cwd=ROOT,
            env={**os.environ, **env, **RACE_ENV},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    counts = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=budget + 60)
            assert proc.returncode == 0, err[-3000:]
            counts.append(int(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    return counts


def publish_many(api: Api, count: int) -> None:
    for start in range(0, count, 100):
        stop = min(count, start + 100)
        events = [{"type": "user.created", "data": {"i": i}} for i in range(start, stop)]
        r = api.post("/v1/events/batch", {"events": events})
        assert r.status_code == 202, r.get_json()


def test_it_sends_each_delivery_once_with_four_workers_racing(
    app: Flask, env: dict[str, str], api: Api, receiver: Receiver
) -> None:
    api.event_type("user.created")
    paths = [f"/race/{i}" for i in range(4)]
    for path in paths:
        api.webhook(receiver.url_for(path))
    # One endpoint fails its first requests, so retries race too (the schedule is 0 s). Fewer
    # than a breaker's threshold: a process whose breaker opened would hold the endpoint's
    # backlog past the end of its one drain, where a running worker's sweeper would send it.
    fails = THRESHOLD - 1
    receiver.behave(paths[0], *[respond(500)] * fails, respond(200))
    publish_many(api, 300)

    counts = race(env, processes=4, budget=60, idle=1.5)

    requests = receiver.wait_for(1200 + fails, timeout=5)
    errors = db.session.execute(select(Attempt.error).where(Attempt.http_status.is_(None))).all()
    assert not errors, Counter(errors).most_common(3)
    assert len(requests) == 1200 + fails
    assert sum(counts) == 1200 + fails  # every attempt was recorded by the process that made it
    assert sum(1 for n in counts if n) >= 2, counts  # they really raced
    sent = Counter((r.path, r.headers["webhook-id"], r.headers["herald-attempt"]) for r in requests)
    assert max(sent.values()) == 1  # no attempt was sent twice
    delivered = {(r.path, r.headers["webhook-id"]) for r in requests}
    assert len(delivered) == 1200  # nothing lost
    db.session.rollback()
    statuses = dict(
        db.session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
    )
    assert statuses == {"succeeded": 1200}
    attempts = db.session.execute(select(func.count()).select_from(Attempt)).scalar_one()
    assert attempts == 1200 + fails
