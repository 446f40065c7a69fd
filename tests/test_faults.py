"""Fault tests against real processes: a Redis server this test starts, flushes and kills, real
worker processes killed with SIGKILL or frozen, a real receiver, and (on PostgreSQL) a proxy
that cuts the worker off its database.

Each test counts the deliveries owed and checks that every one was delivered: none lost.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.extensions import db
from app.models import Delivery
from app.runtime import runtime
from tests.conftest import Api
from tests.faults import ROOT, RedisServer, TcpProxy, Worker, wait_until
from tests.receiver import Receiver, hang, respond


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def env(_migrated: dict[str, str], redis_server: RedisServer) -> dict[str, str]:
    """The usual test settings, with this test's own Redis server."""
    return {**_migrated, "REDIS_URL": redis_server.url}


def counts() -> dict[str, int]:
    rows = db.session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
    db.session.rollback()
    return dict(rows)


def distinct_ids(receiver: Receiver, path: str) -> set[str]:
    return {r.headers["webhook-id"] for r in receiver.requests_for(path)}


def test_it_retries_a_delivery_whose_worker_was_killed_mid_request(
    env: dict[str, str], api: Api, receiver: Receiver, tmp_path: Path
) -> None:
    env = {**env, "HERALD_TIMEOUT": "3"}  # the slow answer (2 s) is within the timeout
    api.event_type("order.slow")
    api.event_type("order.fast")
    api.webhook(receiver.url_for("/slow"), ["order.slow"])
    api.webhook(receiver.url_for("/fast"), ["order.fast"])
    receiver.behave("/slow", hang(2), respond(200))

    with Worker(env, tmp_path / "w1.log") as first:
        first.wait_ready()
        slow = api.publish("order.slow")
        assert wait_until(lambda: receiver.requests_for("/slow"), 20)
        first.kill()  # SIGKILL while the receiver is still answering
        assert first.proc.returncode == -signal.SIGKILL

    fast = [api.publish("order.fast", {"i": i})["id"] for i in range(20)]
    with Worker(env, tmp_path / "w2.log") as second:
        second.wait_ready()
        # Nothing else waits for the dead worker's claim to lapse.
        assert wait_until(lambda: distinct_ids(receiver, "/fast") == set(fast), 30)
        assert len(receiver.requests_for("/slow")) == 1
        # The killed delivery goes out again once its lease lapses, with the same webhook-id.
        assert wait_until(lambda: len(receiver.requests_for("/slow")) >= 2, 60), second.output()
        assert wait_until(lambda: counts().get("succeeded") == 21, 10), counts()
    assert distinct_ids(receiver, "/slow") == {slow["id"]}
    assert counts() == {"succeeded": 21}  # owed 21, delivered 21, lost 0


def test_it_delivers_a_thousand_queued_deliveries_after_flushall_and_a_restart(
    app: Flask, env: dict[str, str], api: Api, redis_server: RedisServer, tmp_path: Path
) -> None:
    api.event_type("user.updated")
    with Receiver() as receiver, Worker(env, tmp_path / "worker.log") as worker:
        api.webhook(receiver.url_for("/a"))
        api.webhook(receiver.url_for("/b"))
        worker.wait_ready()
        worker.signal(signal.SIGSTOP)  # frozen: it cannot take the jobs we are about to queue
        for batch in range(2):
            events = [{"type": "user.updated", "data": {"n": batch * 250 + i}} for i in range(250)]
            r = api.post("/v1/events/batch", {"events": events})
            assert r.status_code == 202, r.get_json()
        assert counts() == {"pending": 1000}
        # The wake-up went to Redis (or already into the frozen worker's blocked BLPOP).
        assert runtime().broker.redis.exists(f"{runtime().broker.prefix}:drain-queued")

        redis_server.client().flushall()
        redis_server.kill()
        redis_server.start()  # empty: every job and key is gone
        assert redis_server.client().dbsize() == 0
        worker.signal(signal.SIGCONT)

        # Only the worker's sweeper, reading the database, can find them now.
        assert wait_until(lambda: len(receiver.requests) >= 1000, 120), worker.output()
        assert wait_until(lambda: counts() == {"succeeded": 1000}, 20), counts()
        assert worker.alive, worker.output()
        delivered = distinct_ids(receiver, "/a") | distinct_ids(receiver, "/b")
        assert len(distinct_ids(receiver, "/a")) == len(distinct_ids(receiver, "/b")) == 500
        assert len(delivered) == 500  # owed 1000 (500 events x 2 webhooks), delivered 1000


PUBLISH_THEN_DIE = textwrap.dedent(
    """
    import json, os, signal, sys
    from app import create_app
    from app.queue import Broker

    def die(self):  # the web process dies after the commit, before any enqueue
        os.kill(os.getpid(), signal.SIGKILL)

    Broker.request_drain = die
    app = create_app(json.loads(sys.argv[1]), instance_path=sys.argv[2])
    app.test_client().post(
        "/v1/events",
        json={"type": "user.created", "data": {"crash": True}},
        headers={"Authorization": "Bearer " + sys.argv[3]},
    )
    print("survived", flush=True)
    """
)


def test_it_delivers_when_the_web_process_dies_between_commit_and_enqueue(
    env: dict[str, str], api: Api, receiver: Receiver, tmp_path: Path
) -> None:
    api.event_type("user.created")
    api.webhook(receiver.url_for("/crash"))
    with Worker(env, tmp_path / "worker.log") as worker:
        worker.wait_ready()
        died = subprocess.run(
            [
                sys.executable,
                "-c",
                PUBLISH_THEN_DIE,
                json.dumps(env),
                env["HERALD_INSTANCE"],
                api.key,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert died.returncode == -signal.SIGKILL, died.stderr
        assert "survived" not in died.stdout
        assert counts().get("pending", 0) + counts().get("succeeded", 0) == 1  # committed
        assert wait_until(lambda: len(receiver.requests_for("/crash")) == 1, 30), worker.output()
        assert wait_until(lambda: counts() == {"succeeded": 1}, 10)


def _through(database_url: str, port: int) -> str:
    parts = urlsplit(database_url)
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="needs a database server to be unreachable (SQLite is a local file)",
)
def test_it_survives_the_database_being_unreachable_and_carries_on(
    env: dict[str, str], api: Api, receiver: Receiver, tmp_path: Path
) -> None:
    api.event_type("user.created")
    api.webhook(receiver.url_for("/db"))
    target = urlsplit(env["DATABASE_URL"])
    with TcpProxy((target.hostname or "127.0.0.1", target.port or 5432)) as proxy:
        worker_env = {**env, "DATABASE_URL": _through(env["DATABASE_URL"], proxy.port)}
        with Worker(worker_env, tmp_path / "worker.log") as worker:
            worker.wait_ready()
            before = [api.publish("user.created", {"i": i})["id"] for i in range(5)]
            assert wait_until(lambda: distinct_ids(receiver, "/db") == set(before), 30)
            assert wait_until(lambda: counts() == {"succeeded": 5}, 30)

            # Cut the moment the worker claims: the outage hits it inside a transaction.
            tripped = proxy.cut_on(b"UPDATE deliveries SET locked_until")
            during = [api.publish("user.created", {"i": i})["id"] for i in range(5, 10)]
            assert tripped.wait(30), worker.output()
            # The sweeper and the jobs now fail against the database, and say so.
            assert wait_until(lambda: "sweep failed" in worker.output(), 30), worker.output()
            assert worker.alive
            # The outage holds deliveries back. A claim already past the proxy when it cut
            # may still go out (several drains claim at once), so not all of them, but some.
            seen = distinct_ids(receiver, "/db")
            assert seen <= {*before, *during}
            assert set(during) - seen

            proxy.restore()
            assert wait_until(lambda: distinct_ids(receiver, "/db") == {*before, *during}, 60), (
                worker.output()
            )
            assert worker.alive
            # A delivery sent while the cut was on but not recorded stays leased; it goes out
            # again (same webhook-id) and is recorded once its lease (2 x timeout + 30 s) ends.
            assert wait_until(lambda: counts() == {"succeeded": 10}, 60), counts()


def test_it_accepts_events_while_redis_is_down_and_delivers_them_after(
    env: dict[str, str], api: Api, receiver: Receiver, redis_server: RedisServer, tmp_path: Path
) -> None:
    api.event_type("user.created")
    api.webhook(receiver.url_for("/later"))
    redis_server.kill()

    # The database is the record: publishing (and the rate limiter) carry on without Redis.
    published = {api.publish("user.created", {"i": i})["id"] for i in range(10)}
    assert api.get("/healthz").status_code == 503

    redis_server.start()
    with Worker(env, tmp_path / "worker.log") as worker:
        assert wait_until(lambda: distinct_ids(receiver, "/later") == published, 30), (
            worker.output()
        )
    assert wait_until(lambda: counts() == {"succeeded": 10}, 10), counts()
