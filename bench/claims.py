"""Figure 5b: how long one claim takes as the deliveries table grows (PostgreSQL only).

The table is filled with delivered history (``succeeded`` rows, as a long-running Herald
accumulates) by ``generate_series``, 1,000 deliveries are left due, and the engine's own
``claim_due`` (batch of 200, then ``release`` to put them back) is timed in this process.
Run with the workers stopped, so nothing else claims meanwhile.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from sqlalchemy import text

from bench.stack import Stack
from bench.throughput import Bench

DUE = 1000
REPEATS = 30


@dataclass
class ClaimTime:
    rows: int
    due: int
    batch: int
    median_ms: float
    p95_ms: float
    samples: list[float] = field(default_factory=list)


FILL = text(
    """
    INSERT INTO deliveries (id, event_id, endpoint_id, status, attempts, next_attempt_at,
                            locked_until, last_attempt_at, trigger, created_at)
    SELECT :prefix || lpad(g::text, 9, '0'), :event, :endpoint, :status, :attempts,
           now() - interval '1 second', 'epoch', now(), 'scheduled', now()
    FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS g
    """
)


def run_claims(bench: Bench, sizes: list[int]) -> list[ClaimTime]:
    from app import create_app
    from app.deliveries.engine import claim_due, release
    from app.extensions import db
    from app.runtime import runtime

    stack: Stack = bench.stack
    webhook = bench.herald.create_webhook(f"{stack.receiver_url}/claims")
    published = bench.herald.publish_batch([{"type": "bench.event", "data": {"claim": 1}}])
    event_id = published[0]["id"]
    app = create_app(dict(stack.env), instance_path=str(stack.tmp / "instance"))
    results: list[ClaimTime] = []
    try:
        with app.app_context():
            rt = runtime()
            params = {"event": event_id, "endpoint": webhook["id"]}
            with db.engine.begin() as conn:
                conn.execute(
                    FILL,
                    {**params, "prefix": "dlv_due", "status": "pending", "attempts": 0}
                    | {"first": 1, "last": DUE},
                )
            filled = 0
            for size in sizes:
                with db.engine.begin() as conn:
                    if size > filled:
                        conn.execute(
                            FILL,
                            {**params, "prefix": "dlv_fill", "status": "succeeded"}
                            | {"attempts": 1, "first": filled + 1, "last": size},
                        )
                        filled = size
                    conn.execute(text("ANALYZE deliveries"))
                samples = []
                for _ in range(REPEATS):
                    began = time.perf_counter()
                    sends = claim_due(rt.box, 200, 200, 60)
                    samples.append((time.perf_counter() - began) * 1000)
                    release(sends)
                cuts = statistics.quantiles(samples, n=20, method="inclusive")
                results.append(
                    ClaimTime(
                        rows=size + DUE,
                        due=DUE,
                        batch=200,
                        median_ms=round(statistics.median(samples), 2),
                        p95_ms=round(cuts[18], 2),
                        samples=[round(s, 2) for s in samples],
                    )
                )
            db.session.remove()
            db.engine.dispose()
    finally:
        bench.herald.delete_webhook(webhook["id"])
    return results
