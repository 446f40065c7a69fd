"""Dashboard page-render benchmark: ``make bench-pages`` / ``python -m bench.pages``.

Seeds one webhook with a growing attempt log (bulk inserts, one attempt a minute going back
from now, 5 % failures, one event type in a thousand), and at 1k, 10k and 100k attempts
times, through the real app and a signed-in session: the webhook page, the log's first page
(the htmx partial), the log filtered to failures, to a common and to a rare event type, and
the webhooks list. Cursor pagination and the attempts' (endpoint, ..., id) indexes should
keep every figure flat as the log grows.

Runs on SQLite in a temporary folder by default; set DATABASE_URL (and REDIS_URL) to time
PostgreSQL. Results go to bench/results/pages-latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import insert, text

from app import create_app
from app.auth.accounts import create_owner
from app.extensions import db
from app.ids import id_floor
from app.models import Attempt, Delivery, Endpoint, Event, EventType
from app.queue import start_embedded_redis

RESULTS = Path(__file__).resolve().parent / "results"
LEVELS = (1_000, 10_000, 100_000)
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
TYPES = ("user.created", "user.deleted", "team.created", "payment.failed")
EMAIL, PASSWORD = "bench@example.com", "bench password"


def id_at(prefix: str, moment: datetime, rng: random.Random) -> str:
    """A sortable id of this time, as the app would have made it then."""
    return id_floor(prefix, moment.timestamp())[:-16] + "".join(rng.choices(ALPHABET, k=16))


def seed(endpoint: Endpoint, start: int, count: int, now: datetime, rng: random.Random) -> None:
    """Attempts ``start`` to ``start + count`` (0 = newest), one a minute back from now."""
    batch = 5_000
    for first in range(start, start + count, batch):
        events, deliveries, attempts = [], [], []
        for n in range(first, min(first + batch, start + count)):
            at = now - timedelta(minutes=n + 1)
            ok = rng.random() >= 0.05
            event_id, delivery_id = id_at("evt", at, rng), id_at("dlv", at, rng)
            # payment.failed is rare (1 in 1000): filtering to it must not scan the whole log.
            event_type = "payment.failed" if n % 1000 == 0 else TYPES[n % 3]
            payload = json.dumps({"id": event_id, "type": event_type, "data": {"n": n}})
            events.append({"id": event_id, "type": event_type, "payload": payload,
                           "live_mode": True, "created_at": at})  # fmt: skip
            deliveries.append(
                {
                    "id": delivery_id,
                    "event_id": event_id,
                    "endpoint_id": endpoint.id,
                    "status": "succeeded" if ok else "failed",
                    "attempts": 1,
                    "next_attempt_at": at,
                    "locked_until": datetime(1970, 1, 1, tzinfo=UTC),
                    "last_attempt_at": at,
                    "trigger": "scheduled",
                    "created_at": at,
                }
            )
            attempts.append(
                {
                    "id": id_at("att", at, rng),
                    "delivery_id": delivery_id,
                    "endpoint_id": endpoint.id,
                    "event_id": event_id,
                    "event_type": event_type,
                    "number": 1,
                    "trigger": "scheduled",
                    "status": "success" if ok else "failure",
                    "url": endpoint.url,
                    "http_status": 200 if ok else 503,
                    "request_headers": {"content-type": "application/json", "webhook-id": event_id},
                    "response_headers": {"content-type": "text/plain"},
                    "response_body": "ok" if ok else "unavailable",
                    "error": None,
                    "duration_ms": rng.randint(3, 400),
                    "created_at": at,
                }
            )
        db.session.execute(insert(Event.__table__), events)
        db.session.execute(insert(Delivery.__table__), deliveries)
        db.session.execute(insert(Attempt.__table__), attempts)
        db.session.commit()


def time_get(client: FlaskClient, path: str, repeat: int, **kw: Any) -> dict[str, float]:
    """Median and p95 milliseconds of ``repeat`` GETs (after two warm-up calls)."""
    for _ in range(2):
        assert client.get(path, **kw).status_code == 200, path
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path, **kw)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, path
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 2),
        "p95_ms": round(samples[int(len(samples) * 0.95) - 1], 2),
    }


SCHEMA = f"herald_bench_pages_{os.getpid()}"


def _postgres_url() -> str | None:
    """The server's URL (plain psycopg form), when DATABASE_URL names PostgreSQL."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        return None
    return "postgresql://" + url.split("://", 1)[1]


def database_url(workdir: Path) -> str:
    """SQLite in the temp folder, or a schema of our own on the PostgreSQL server."""
    plain = _postgres_url()
    if plain is None:
        return f"sqlite:///{workdir / 'bench.db'}"
    import psycopg

    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
    sep = "&" if "?" in plain else "?"
    return f"{plain}{sep}options=-csearch_path%3D{SCHEMA}"


def drop_schema() -> None:
    plain = _postgres_url()
    if plain is not None:
        import psycopg

        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


def make_app(workdir: Path) -> Flask:
    env = {
        "HERALD_ENV": "test",
        "DATABASE_URL": database_url(workdir),
        "REDIS_URL": os.environ.get("REDIS_URL") or start_embedded_redis(workdir / "redis"),
        "SECRET_KEY": "bench-secret-key-0123456789",
        "HERALD_ENCRYPTION_KEYS": "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg=",
        "HERALD_REDIS_PREFIX": f"benchpages{os.getpid()}",
    }
    app = create_app(env, instance_path=str(workdir / "instance"))
    app.config["WTF_CSRF_ENABLED"] = False  # the benchmark signs in without reading a form
    return app


def run(repeat: int) -> dict[str, Any]:
    from flask_migrate import upgrade

    from app.endpoints import service

    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="herald-bench-pages-") as tmp:
        app = make_app(Path(tmp))
        with app.app_context():
            upgrade()
            try:
                create_owner(EMAIL, PASSWORD)
                for name in TYPES:
                    db.session.add(EventType(name=name, description=name))
                db.session.commit()
                spec = service.parse_create(
                    {"url": "https://receiver.example/hook", "events": ["*"]}
                )
                endpoint, _ = service.create_endpoint(spec)
                client = app.test_client()
                signed_in = client.post("/login", data={"email": EMAIL, "password": PASSWORD})
                assert signed_in.status_code == 302
                now = datetime.now(UTC)
                results: list[dict[str, Any]] = []
                seeded = 0
                for level in LEVELS:
                    started = time.perf_counter()
                    seed(endpoint, seeded, level - seeded, now, rng)
                    seed_s = time.perf_counter() - started
                    seeded = level
                    if db.engine.dialect.name == "postgresql":
                        with db.engine.begin() as conn:
                            conn.execute(text("ANALYZE attempts; ANALYZE deliveries"))
                    page = f"/webhooks/{endpoint.id}"
                    partial = {"headers": {"HX-Request": "true"}}
                    results.append(
                        {
                            "attempts": level,
                            "seed_seconds": round(seed_s, 2),
                            "webhook_page": time_get(client, page, repeat),
                            "log_first_page": time_get(client, page, repeat, **partial),
                            "log_failures_first_page": time_get(
                                client, f"{page}?status=failure", repeat, **partial
                            ),
                            "log_one_type_first_page": time_get(
                                client, f"{page}?event_type=team.created", repeat, **partial
                            ),
                            "log_rare_type_first_page": time_get(
                                client, f"{page}?event_type=payment.failed", repeat, **partial
                            ),
                            "webhooks_list": time_get(client, "/webhooks", repeat),
                        }
                    )
                    print_level(results[-1])
            finally:
                db.session.remove()
                db.engine.dispose()
                drop_schema()
                broker = app.extensions["herald"].broker
                if not os.environ.get("REDIS_URL"):
                    broker.redis.shutdown(nosave=True)
        return {
            "benchmark": "dashboard pages",
            "database": "postgresql"
            if "postgres" in app.config["SQLALCHEMY_DATABASE_URI"]
            else "sqlite",
            "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
            "python": platform.python_version(),
            "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "repeat": repeat,
            "levels": results,
        }


def print_level(row: dict[str, Any]) -> None:
    cells = [
        f"{name} {row[name]['median_ms']:.1f} ms"
        for name in (
            "webhook_page",
            "log_first_page",
            "log_failures_first_page",
            "log_one_type_first_page",
            "log_rare_type_first_page",
            "webhooks_list",
        )
    ]
    print(
        f"{row['attempts']:>7,} attempts (seeded in {row['seed_seconds']} s): " + ", ".join(cells)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30, help="timed requests per page")
    args = parser.parse_args()
    report = run(args.repeat)
    RESULTS.mkdir(exist_ok=True)
    name = "pages-latest.json" if report["database"] == "sqlite" else "pages-latest-pg.json"
    (RESULTS / name).write_text(json.dumps(report, indent=2) + "\n")
    print(f"median of {args.repeat} requests each; written to bench/results/{name}")


if __name__ == "__main__":
    main()
