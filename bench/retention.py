"""Retention on a large log: ``python -m bench.retention [--deliveries N] [--batch B]``.

Seeds PostgreSQL (its own schema, dropped afterwards) with N delivered events older than the
retention, each with two attempts, plus a tenth as many recent ones; then runs retention while
a writer thread keeps recording new deliveries and attempts the way a worker does. Prints rows
deleted per second, the longest single batch transaction, and the writer's slowest write
during the run (what "without long locks" means for the workers).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import secrets
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
from cryptography.fernet import Fernet

POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _id(prefix: str, at: datetime) -> str:
    from app.ids import id_floor

    return id_floor(prefix, at.timestamp())[:-16] + "".join(random.choices(_ALPHABET, k=16))


def _copy(conn: psycopg.Connection, table: str, columns: list[str], rows: list[tuple]) -> None:  # type: ignore[type-arg]
    buf = io.StringIO()
    for row in rows:
        buf.write("\t".join("\\N" if v is None else str(v) for v in row) + "\n")
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
        cp.write(buf.getvalue())


def seed(conn: psycopg.Connection, endpoint_id: str, old: int, recent: int) -> None:
    now = datetime.now(UTC)
    events, deliveries, attempts = [], [], []
    epoch = "1970-01-01 00:00:00+00"
    for i in range(old + recent):
        at = now - (timedelta(days=40, seconds=i) if i < old else timedelta(hours=i % 48))
        evt, dlv = _id("evt", at), _id("dlv", at)
        events.append((evt, "user.created", '{"data":{"n":1}}', "t", at.isoformat()))
        deliveries.append(
            (
                dlv,
                evt,
                endpoint_id,
                "succeeded",
                2,
                at.isoformat(),
                epoch,
                at.isoformat(),
                "scheduled",
                at.isoformat(),
            )
        )
        for n in (1, 2):
            attempts.append(
                (
                    _id("att", at),
                    dlv,
                    endpoint_id,
                    evt,
                    "user.created",
                    n,
                    "scheduled",
                    "success" if n == 2 else "failure",
                    "http://127.0.0.1:9/h",
                    200 if n == 2 else 500,
                    "{}",
                    "{}",
                    "x" * 200,
                    None,
                    12,
                    at.isoformat(),
                )
            )
    _copy(conn, "events", ["id", "type", "payload", "live_mode", "created_at"], events)
    _copy(
        conn,
        "deliveries",
        [
            "id",
            "event_id",
            "endpoint_id",
            "status",
            "attempts",
            "next_attempt_at",
            "locked_until",
            "last_attempt_at",
            "trigger",
            "created_at",
        ],
        deliveries,
    )
    _copy(
        conn,
        "attempts",
        [
            "id",
            "delivery_id",
            "endpoint_id",
            "event_id",
            "event_type",
            "number",
            "trigger",
            "status",
            "url",
            "http_status",
            "request_headers",
            "response_headers",
            "response_body",
            "error",
            "duration_ms",
            "created_at",
        ],
        attempts,
    )
    conn.commit()


def writer(url: str, endpoint_id: str, stop: threading.Event, latencies: list[float]) -> None:
    """Record a delivery and its attempt every few ms, as a worker would, timing each commit."""
    with psycopg.connect(url) as conn:
        while not stop.is_set():
            now = datetime.now(UTC)
            started = time.perf_counter()
            evt, dlv = _id("evt", now), _id("dlv", now)
            conn.execute(
                "INSERT INTO events (id, type, payload, live_mode, created_at) "
                "VALUES (%s, 'user.created', '{}', true, %s)",
                (evt, now),
            )
            conn.execute(
                "INSERT INTO deliveries (id, event_id, endpoint_id, status, attempts, "
                "next_attempt_at, locked_until, last_attempt_at, trigger, created_at) VALUES "
                "(%s, %s, %s, 'succeeded', 1, %s, %s, %s, 'scheduled', %s)",
                (dlv, evt, endpoint_id, now, datetime(1970, 1, 1, tzinfo=UTC), now, now),
            )
            conn.execute(
                "INSERT INTO attempts (id, delivery_id, endpoint_id, event_id, event_type, "
                "number, trigger, status, url, http_status, request_headers, duration_ms, "
                "created_at) VALUES (%s, %s, %s, %s, 'user.created', 1, 'scheduled', "
                "'success', 'http://127.0.0.1:9/h', 200, '{}', 5, %s)",
                (_id("att", now), dlv, endpoint_id, evt, now),
            )
            conn.commit()
            latencies.append(time.perf_counter() - started)
            time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()

    schema = f"bench_retention_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}".encode())
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    try:
        from flask_migrate import upgrade

        from app import create_app
        from app.endpoints.service import delivery_counters
        from app.extensions import db
        from app.models import Endpoint
        from app.retention import purge

        app = create_app(
            {
                "HERALD_ENV": "test",
                "DATABASE_URL": url,
                "REDIS_URL": "redis://127.0.0.1:1/0",  # retention needs no Redis
                "SECRET_KEY": secrets.token_urlsafe(32),
                "HERALD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
                "HERALD_LOG_LEVEL": "warning",
            },
            instance_path=f"/tmp/{schema}",
        )
        with app.app_context():
            upgrade()
            endpoint = Endpoint(url="http://127.0.0.1:9/h", events=["*"], secret_enc="x")
            db.session.add(endpoint)
            db.session.commit()
            endpoint_id = endpoint.id
            t0 = time.perf_counter()
            with psycopg.connect(url) as conn:
                seed(conn, endpoint_id, args.deliveries, args.deliveries // 10)
                conn.execute("ANALYZE")
                conn.commit()
            seeded = time.perf_counter() - t0
            before = delivery_counters(endpoint_id)
            db.session.rollback()

            stop = threading.Event()
            latencies: list[float] = []
            thread = threading.Thread(target=writer, args=(url, endpoint_id, stop, latencies))
            thread.start()
            time.sleep(0.5)
            t0 = time.perf_counter()
            done = purge(30, batch=args.batch)
            took = time.perf_counter() - t0
            stop.set()
            thread.join()
            after = delivery_counters(endpoint_id)
            db.session.rollback()
            new_rows = len(latencies)
            # The writer's own rows are succeeded deliveries too: remove them from "after".
            after_old = {**after, "succeeded": after["succeeded"] - new_rows}
            latencies.sort()
            result = {
                "machine": f"{platform.node()} {os.cpu_count()} cores, {platform.platform()}",
                "deliveries_old": args.deliveries,
                "rows_seeded": 4 * (args.deliveries + args.deliveries // 10),
                "seed_seconds": round(seeded, 1),
                "batch": args.batch,
                "deleted": {
                    "attempts": done.attempts,
                    "deliveries": done.deliveries,
                    "events": done.events,
                },
                "batches": done.batches,
                "purge_seconds": round(took, 2),
                "rows_per_second": round(done.total / took),
                "longest_batch_ms": round(done.longest_batch * 1000, 1),
                "concurrent_writes": new_rows,
                "write_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
                "write_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
                "write_max_ms": round(latencies[-1] * 1000, 1),
                "counters_kept": before == after_old,
            }
            print(json.dumps(result, indent=2))
            db.engine.dispose()
    finally:
        shutil.rmtree(f"/tmp/{schema}", ignore_errors=True)
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE".encode())


if __name__ == "__main__":
    main()
