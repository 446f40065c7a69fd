"""Fixtures: a real database (SQLite, or PostgreSQL from DATABASE_URL), a real Redis (embedded,
or the server from REDIS_URL), a real receiver on 127.0.0.1, and an in-process worker.

Each test run gets its own PostgreSQL schema and Redis key prefix, so runs never collide.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from app import create_app
from app.cli import create_api_key
from app.events import fanouts
from app.extensions import db
from app.queue import start_embedded_redis
from tests.receiver import Receiver

RUN = secrets.token_hex(4)
TABLES = [
    "retained_delivery_counts",
    "attempts",
    "deliveries",
    "events",
    "endpoints",
    "event_types",
    "api_keys",
    "users",
]


def _database(tmp: Path) -> tuple[str, str | None]:
    """The database URL for this run, and the PostgreSQL schema to drop afterwards."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        return f"sqlite:///{tmp / 'test.db'}", None
    schema = f"herald_test_{RUN}"
    plain = "postgresql://" + url.split("://", 1)[1]
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}", schema


@pytest.fixture(scope="session")
def base_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("herald")
    database_url, schema = _database(tmp)
    redis_url = os.environ.get("REDIS_URL") or start_embedded_redis(tmp / "redis")
    env = {
        "HERALD_ENV": "test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": "test-secret-key-0123456789",
        "HERALD_ENCRYPTION_KEYS": "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg=",
        "HERALD_REDIS_PREFIX": f"test{RUN}",
        "HERALD_RETRY_SCHEDULE": "0,0,0,0",
        "HERALD_TIMEOUT": "1",
        "HERALD_SWEEP_INTERVAL": "0.2",
        "HERALD_ALLOW_NETWORKS": "127.0.0.0/8",
        "HERALD_INSTANCE": str(tmp / "instance"),
    }
    yield env
    conn = redis.Redis.from_url(redis_url)
    for key in conn.scan_iter(f"*test{RUN}*", count=1000):
        conn.delete(key)
    if not os.environ.get("REDIS_URL"):
        conn.shutdown(nosave=True)
    if schema:
        plain = "postgresql://" + os.environ["DATABASE_URL"].split("://", 1)[1]
        with psycopg.connect(plain, autocommit=True) as pg:
            pg.execute(f"DROP SCHEMA {schema} CASCADE")


def make_app(env: dict[str, str], **overrides: str) -> Flask:
    merged = {**env, **overrides}
    return create_app(merged, instance_path=merged["HERALD_INSTANCE"])


@pytest.fixture(scope="session")
def _migrated(base_env: dict[str, str]) -> dict[str, str]:
    """The schema is made by the real migration, as `flask db upgrade` would."""
    from flask_migrate import upgrade

    app = make_app(base_env)
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return base_env


@pytest.fixture
def env(_migrated: dict[str, str]) -> dict[str, str]:
    return dict(_migrated)


@pytest.fixture
def app(env: dict[str, str]) -> Iterator[Flask]:
    app = make_app(env)
    app.config["TESTING"] = True
    with app.app_context():
        _clean(app)  # before too: session-scoped servers (browser tests) leave rows behind
        yield app
        fanouts.writer.flush()  # before the tables are emptied under it
        db.session.remove()
        _clean(app)
        db.engine.dispose()


def _clean(app: Flask) -> None:
    """Empty every table and Herald's Redis keys."""
    with db.engine.begin() as conn:
        for table in TABLES:
            conn.execute(text(f"DELETE FROM {table}"))
    broker = app.extensions["herald"].broker
    for key in broker.redis.scan_iter(f"{broker.prefix}*", count=1000):
        broker.redis.delete(key)
    broker.redis.delete(f"rq:queue:{broker.queue_name}")


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> Any:
    return app.test_cli_runner()


class Api:
    """A /v1 client that sends the bearer key and JSON."""

    def __init__(self, client: FlaskClient, key: str) -> None:
        self.client = client
        self.key = key

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", **(extra or {})}

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, headers=self._headers(kw.pop("headers", None)), **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.client.post(
            path, json=json, headers=self._headers(kw.pop("headers", None)), **kw
        )

    def patch(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.client.patch(
            path, json=json, headers=self._headers(kw.pop("headers", None)), **kw
        )

    def delete(self, path: str, **kw: Any) -> Any:
        return self.client.delete(path, headers=self._headers(kw.pop("headers", None)), **kw)

    # Shortcuts for set-up in tests
    def event_type(self, name: str, **fields: Any) -> dict[str, Any]:
        r = self.post("/v1/event-types", {"name": name, **fields})
        assert r.status_code == 201, r.get_json()
        return r.get_json()  # type: ignore[no-any-return]

    def webhook(self, url: str, events: list[str] | None = None, **fields: Any) -> dict[str, Any]:
        r = self.post("/v1/webhooks", {"url": url, "events": events or ["*"], **fields})
        assert r.status_code == 201, r.get_json()
        return r.get_json()  # type: ignore[no-any-return]

    def publish(
        self, type_: str, data: dict[str, Any] | None = None, **fields: Any
    ) -> dict[str, Any]:
        r = self.post("/v1/events", {"type": type_, "data": data or {"n": 1}, **fields})
        assert r.status_code == 202, r.get_json()
        return r.get_json()  # type: ignore[no-any-return]


@pytest.fixture
def api_key(app: Flask) -> str:
    return create_api_key("tests")[1]


@pytest.fixture
def api(client: FlaskClient, api_key: str) -> Api:
    return Api(client, api_key)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as rcv:
        yield rcv


@pytest.fixture
def deliver(app: Flask) -> Any:
    """Run one in-process drain (what a worker's job does) and return attempts made."""
    from app.deliveries.jobs import drain

    def run(budget: float = 5.0, idle: float = 0.2) -> int:
        return drain(budget=budget, idle=idle)

    return run
