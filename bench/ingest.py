"""Figure 4: ingest. ``POST /v1/events`` (single) and ``/v1/events/batch`` (100) under gunicorn.

``clients`` threads, each with its own keep-alive session, post for ``seconds``; every
request's latency is kept. One webhook is subscribed, so each event writes its delivery too
(and the workers deliver it meanwhile, as they would in production).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from bench.stack import BenchError
from bench.throughput import Bench, event_data, percentiles

INGEST_TYPE = "bench.ingest"


@dataclass
class Ingest:
    mode: str  # "single" or "batch of 100"
    clients: int
    seconds: float
    requests: int = 0
    requests_per_s: float = 0.0
    events_per_s: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    errors: int = 0


def run_ingest(bench: Bench, batch: int, clients: int, seconds: float) -> Ingest:
    result = Ingest("single" if batch == 1 else f"batch of {batch}", clients, seconds)
    base = bench.herald.base
    key = bench.stack.api_key
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(n: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        mine: list[float] = []
        seq = n * 1_000_000
        while time.perf_counter() < stop_at:
            body: dict[str, Any]
            if batch == 1:
                url, body = f"{base}/events", {"type": INGEST_TYPE, "data": event_data(seq)}
            else:
                events = [{"type": INGEST_TYPE, "data": event_data(seq + i)} for i in range(batch)]
                url, body = f"{base}/events/batch", {"events": events}
            seq += batch
            began = time.perf_counter()
            try:
                ok = session.post(url, json=body, timeout=30).status_code == 202
            except requests.RequestException:
                ok = False
            mine.append((time.perf_counter() - began) * 1000)
            if not ok:
                with lock:
                    errors[0] += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 60)
    elapsed = time.perf_counter() - started
    if errors[0]:
        raise BenchError(f"ingest ({result.mode}): {errors[0]} requests failed")
    result.requests = len(latencies)
    result.requests_per_s = round(len(latencies) / elapsed, 1)
    result.events_per_s = round(len(latencies) * batch / elapsed, 1)
    result.latency_ms = percentiles(latencies)
    return result
