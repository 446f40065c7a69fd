"""Figure 6: a worker's resident memory when every receiver answers with a large body.

Ten webhooks whose receiver (nginx, ``/big/...``) answers 200 with an 8 MiB body to every
request. Herald reads only the start of an answer and drops the connection, so the worker's
memory must not grow with what receivers send back. The largest worker's resident memory is
read after a warm-up (``start``), every 0.1 s while the deliveries go out (``peak``), and at
the end (``end``); the target is flat and under 200 MB.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.monitor import Sampler
from bench.nginx import BIG_BODY_BYTES
from bench.throughput import Bench, make_webhooks, publish

WEBHOOKS = 10


@dataclass
class Memory:
    answer: str
    webhooks: int
    deliveries: int
    deliveries_per_s: float = 0.0
    rss_start_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_end_mb: float = 0.0


def run_memory(bench: Bench, deliveries: int, batch: int) -> Memory:
    events = max(1, deliveries // WEBHOOKS)
    result = Memory(
        answer=f"200 with an {BIG_BODY_BYTES // 2**20} MiB body",
        webhooks=WEBHOOKS,
        deliveries=events * WEBHOOKS,
    )
    ids = [w["id"] for w in make_webhooks(bench, WEBHOOKS, "big/memory")]
    try:
        warm = 20
        publish(bench, warm, batch)
        bench.wait_succeeded(ids, warm * WEBHOOKS)
        with Sampler(bench.worker_pids) as sampler:
            started = time.time()
            publish(bench, events, batch)
            finished = bench.wait_succeeded(ids, (warm + events) * WEBHOOKS)
        result.deliveries_per_s = round(result.deliveries / (finished - started), 1)
        result.rss_start_mb = round(sampler.largest(sampler.first), 1)
        result.rss_peak_mb = round(sampler.peak_mb, 1)
        result.rss_end_mb = round(sampler.largest(sampler.last), 1)
    finally:
        for webhook_id in ids:
            bench.herald.delete_webhook(webhook_id)
    return result
