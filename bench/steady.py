"""Figures 2 and 3: latency under a steady load, and how it holds while two webhooks misbehave.

The load is ``rate`` events a second, published in batches every 50 ms, spread round-robin
over ``webhooks`` event types with one webhook subscribed to each (so ``rate`` deliveries a
second in all). Latency is the receiver's arrival time minus the event's ``created_at``.

For isolation the same load runs again with two more webhooks subscribed to every type: one
whose requests all hang until Herald's timeout, one that answers 500 to everything. That
triples the deliveries each event makes, so a control run has the same two extra webhooks
answering 204: isolation proper is the misbehaving run against the control.

``run_interleaved`` takes the loads in turn, a few rounds each (every other round in reverse
order), and pools each one's rounds: a slow stretch of a shared two-core machine (seen as
20-40 ms publishes, whichever load ran then), or the tables' growth, then falls on every
load alike instead of deciding one of them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.monitor import CpuMeter
from bench.nginx import BlackHole
from bench.throughput import Bench, created_at, event_data, latencies_ms, percentiles

TICK = 0.05  # seconds between publish batches: smaller batches, so a p99 is not one burst
# The first second of each load is published but not measured: new webhooks open their
# connections and earn their caps then, so the window shows the steady state it is named for.
WARMUP = 1.0


@dataclass
class Steady:
    label: str
    workers: int
    target_events_per_s: float
    seconds: float
    events: int = 0
    published_per_s: float = 0.0
    delivered_per_s: float = 0.0  # healthy webhooks' deliveries over the load window
    latency_ms: dict[str, float] = field(default_factory=dict)
    misbehaving: list[str] = field(default_factory=list)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    machine_busy_pct: float = 0.0
    rounds: int = 1  # interleaved with the other loads, ``seconds`` in all


@dataclass
class _Load:
    """One round of a steady load, before it is pooled with its other rounds."""

    result: Steady
    latencies: list[float]
    load_seconds: float
    arrivals: int
    span: float  # from the window's start to its last arrival


def steady_types(webhooks: int) -> list[str]:
    return [f"bench.steady.{i}" for i in range(webhooks)]


def run_steady(
    bench: Bench, rate: float, seconds: float, webhooks: int, extras: str | None = None
) -> Steady:
    """The steady load; ``extras`` adds two webhooks on every type, "misbehaving" or "healthy"."""
    return _pooled([_load(bench, rate, seconds, webhooks, extras)])


def run_interleaved(
    bench: Bench,
    rate: float,
    seconds: float,
    webhooks: int,
    kinds: list[str | None],
    rounds: int,
) -> list[Steady]:
    """Each of the loads ``kinds`` (``extras`` of run_steady), taken in turn ``rounds`` times
    for ``seconds / rounds`` each, with each load's rounds pooled."""
    loads: dict[str | None, list[_Load]] = {kind: [] for kind in kinds}
    for n in range(rounds):
        # Every other round in reverse: each load takes the turns after the others as often
        # as before them (the tables grow with every round, and a claim or an insert costs a
        # little more on a bigger one: taken in one order, the last load paid all of it).
        for kind in kinds if n % 2 == 0 else kinds[::-1]:
            part = n + 1 if rounds > 1 else None
            loads[kind].append(_load(bench, rate, seconds / rounds, webhooks, kind, part))
    return [_pooled(parts) for parts in loads.values()]


def _pooled(parts: list[_Load]) -> Steady:
    result = parts[0].result
    if len(parts) > 1:
        result.rounds = len(parts)
        result.seconds = sum(p.result.seconds for p in parts)
        result.events = sum(p.result.events for p in parts)
        result.published_per_s = round(result.events / sum(p.load_seconds for p in parts), 1)
        arrived, span = sum(p.arrivals for p in parts), sum(p.span for p in parts)
        result.delivered_per_s = round(arrived / max(span, 1e-9), 1)
        result.latency_ms = percentiles([ms for p in parts for ms in p.latencies])
        result.cpu_seconds = {
            name: round(sum(p.result.cpu_seconds.get(name, 0.0) for p in parts), 2)
            for name in result.cpu_seconds
        }
        busy = sum(p.result.machine_busy_pct * p.load_seconds for p in parts)
        result.machine_busy_pct = round(busy / sum(p.load_seconds for p in parts), 1)
    return result


def _load(
    bench: Bench,
    rate: float,
    seconds: float,
    webhooks: int,
    extras: str | None,
    part: int | None = None,
) -> _Load:
    label = {None: "steady", "misbehaving": "isolation", "healthy": "control"}[extras]
    result = Steady(label, len(bench.worker_pids), rate, seconds)
    types = steady_types(webhooks)
    tag = f"{label}{len(bench.worker_pids)}" + (f"r{part}" if part else "")
    healthy = [
        bench.herald.create_webhook(f"{bench.stack.receiver_url}/{tag}/{i}", [kind])
        for i, kind in enumerate(types)
    ]
    extra: list[str] = []
    hole: BlackHole | None = None
    if extras == "misbehaving":
        hole = BlackHole()
        hang = bench.herald.create_webhook(f"http://127.0.0.1:{hole.port}/hang", types)
        fail = bench.herald.create_webhook(f"{bench.stack.receiver_url}/fail/{tag}", types)
        extra = [hang["id"], fail["id"]]
        result.misbehaving = ["hangs until the timeout", "answers 500"]
    elif extras == "healthy":
        extra = [
            bench.herald.create_webhook(f"{bench.stack.receiver_url}/extra/{n}/{tag}", types)["id"]
            for n in range(2)
        ]
    ids = [w["id"] for w in healthy]
    try:
        bench.receiver.reset()
        created: dict[str, float] = {}
        answered: dict[str, float] = {}  # when the publish's 202 reached the client
        per_tick = rate * TICK
        owed = 0.0
        seq = 0
        with CpuMeter(bench.cpu_groups) as cpu:
            began = time.time()
            started = began + WARMUP
            next_tick = began
            warmup_ids: set[str] = set()
            while time.time() - started < seconds:
                owed += per_tick
                count = int(owed)
                owed -= count
                if count:
                    events = [
                        {"type": types[(seq + i) % len(types)], "data": event_data(seq + i)}
                        for i in range(count)
                    ]
                    seq += count
                    warming = time.time() < started
                    batch = bench.herald.publish_batch(events)
                    answer = time.time()
                    for published in batch:
                        created[published["id"]] = created_at(published)
                        answered[published["id"]] = answer
                        if warming:
                            warmup_ids.add(published["id"])
                next_tick += TICK
                time.sleep(max(0.0, next_tick - time.time()))
            load_seconds = time.time() - started
            bench.stack.check_alive()
            bench.wait_succeeded(ids, len(created))
        time.sleep(0.2)  # nginx flushes its log every 100 ms
        arrivals = {
            k: v
            for k, v in bench.receiver.arrivals().items()
            if f"/{tag}/" in k and k.split(" ", 1)[1] not in warmup_ids
        }
        last = max(arrivals.values(), default=started)
        result.events = len(created) - len(warmup_ids)
        result.published_per_s = round(result.events / load_seconds, 1)
        result.delivered_per_s = round(len(arrivals) / max(last - started, 1e-9), 1)
        latencies = latencies_ms(arrivals, created)
        result.latency_ms = percentiles(latencies)
        if os.environ.get("HERALD_BENCH_KEEP"):
            timeline = bench.stack.tmp / f"timeline-{tag}.tsv"
            _write_timeline(timeline, arrivals, created, answered, started)
        result.cpu_seconds = cpu.used
        result.machine_busy_pct = cpu.machine_busy_pct
    finally:
        for webhook_id in ids + extra:
            bench.herald.delete_webhook(webhook_id)
        if hole:
            hole.close()
    return _Load(result, latencies, load_seconds, len(arrivals), last - started)


def _write_timeline(
    path: Path,
    arrivals: dict[str, float],
    created: dict[str, float],
    answered: dict[str, float],
    t0: float,
) -> None:
    """For a kept run: each delivery's creation (s into the window), latency (ms), path, and
    how long after its creation the publish was answered (ms: the web and database's part)."""
    rows = []
    for key, arrived in arrivals.items():
        uri, event_id = key.split(" ", 1)
        if event_id in created:
            made = created[event_id]
            answer = (answered[event_id] - made) * 1000
            rows.append(f"{made - t0:.3f}\t{(arrived - made) * 1000:.1f}\t{uri}\t{answer:.1f}\n")
    path.write_text(f"# window start {t0:.3f} (Unix s)\n" + "".join(sorted(rows)))
