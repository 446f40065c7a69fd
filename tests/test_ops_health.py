"""GET /healthz: database, Redis and whether workers have been seen recently."""

from __future__ import annotations

import socket

from flask import Flask
from flask.testing import FlaskClient

from app.heartbeat import STALE_AFTER, beat, leave, workers_alive
from app.runtime import runtime
from tests.conftest import make_app


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_it_is_ok_when_everything_answers_and_a_worker_beat(
    app: Flask, client: FlaskClient
) -> None:
    beat(runtime().broker)
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.get_json() == {"status": "ok", "database": "ok", "redis": "ok", "workers": "ok"}


def test_it_says_when_no_worker_was_seen_but_keeps_serving(app: Flask, client: FlaskClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    body = r.get_json()
    assert body["status"] == "degraded"
    assert body["database"] == "ok"
    assert body["redis"] == "ok"
    assert body["workers"].startswith("none seen")


def test_it_forgets_a_worker_that_stopped_beating(app: Flask) -> None:
    broker = runtime().broker
    beat(broker, "host-a:1", now=1000.0)
    beat(broker, "host-b:2", now=1000.0 + STALE_AFTER + 5)
    assert workers_alive(broker, now=1000.0 + STALE_AFTER + 10) == 1
    leave(broker, "host-b:2")
    assert workers_alive(broker, now=1000.0 + STALE_AFTER + 10) == 0


def test_it_is_503_naming_redis_when_redis_is_down(env: dict[str, str]) -> None:
    app = make_app(env, REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0")
    r = app.test_client().get("/healthz")
    assert r.status_code == 503
    assert r.get_json()["redis"] == "down"
    assert r.get_json()["database"] == "ok"


def test_it_is_503_naming_the_database_when_it_is_down(env: dict[str, str]) -> None:
    url = f"postgresql://nobody@127.0.0.1:{closed_port()}/nothing"
    app = make_app(env, DATABASE_URL=url)
    r = app.test_client().get("/healthz")
    assert r.status_code == 503
    assert r.get_json()["database"] == "down"
    assert r.get_json()["redis"] == "ok"
