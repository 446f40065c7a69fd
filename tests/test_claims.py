"""Claims and wake-ups: one drain hears each publish, and a claim's connection heals itself."""

from __future__ import annotations

import os

import pytest
from flask import Flask
from psycopg import OperationalError
from sqlalchemy import text

from app.deliveries.claimline import ClaimLine
from app.deliveries.engine import claim_due
from app.extensions import db
from app.queue import WAKE_TOKENS
from app.runtime import runtime
from tests.conftest import Api

on_postgres = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="the claim line is PostgreSQL's",
)


def test_each_wake_up_is_heard_by_one_drain(app: Flask) -> None:
    broker = runtime().broker
    broker.redis.delete(broker.wake_key)
    first, second = broker.wake_listener(), broker.wake_listener()
    assert first is not None
    assert second is not None
    try:
        broker.request_drain()

        heard = [first.get(timeout=0.2), second.get(timeout=0.2)]

        assert sorted(heard) == [False, True]
    finally:
        first.close()
        second.close()


def test_a_burst_leaves_only_a_few_wake_ups(app: Flask) -> None:
    broker = runtime().broker
    broker.redis.delete(broker.wake_key)
    for _ in range(20):
        broker.request_drain()

    # Enough to wake more than one drain; not twenty stale ones for drains yet to come.
    assert broker.redis.llen(broker.wake_key) == WAKE_TOKENS


def test_a_drain_that_stops_gives_its_wake_up_back(app: Flask) -> None:
    broker = runtime().broker
    broker.redis.delete(broker.wake_key)
    wakes = broker.wake_listener()
    assert wakes is not None
    try:
        broker.request_drain()
        assert wakes.get(timeout=0.2)

        wakes.give_back()

        assert wakes.get(timeout=0.2)
    finally:
        wakes.close()


@on_postgres
def test_a_claim_line_claims_once_and_leaves_the_pool_durable(app: Flask, api: Api) -> None:
    api.event_type("user.created")
    api.webhook("https://example.com/hook")
    api.publish("user.created", {"n": 1})
    line = ClaimLine(db.engine)
    try:
        [send] = claim_due(runtime().box, 10, 10, 60, line=line)
        assert claim_due(runtime().box, 10, 10, 60, line=line) == []
        # The claim's own settings (no waiting for the disk, planner penalties) were its
        # transaction's only: what else runs on this connection later is durable.
        raw = line._conn.connection.driver_connection  # type: ignore[union-attr]
        assert raw.execute("SHOW synchronous_commit").fetchone() == ("on",)
        assert raw.execute("SHOW enable_seqscan").fetchone() == ("on",)
        raw.rollback()
    finally:
        line.close()
    assert send.event_type == "user.created"


@on_postgres
def test_a_claim_line_whose_connection_died_claims_on_a_new_one(app: Flask, api: Api) -> None:
    api.event_type("user.created")
    api.webhook("https://example.com/hook")
    line = ClaimLine(db.engine)
    try:
        assert claim_due(runtime().box, 10, 10, 60, line=line) == []
        pid = line._conn.connection.driver_connection.info.backend_pid  # type: ignore[union-attr]
        with db.engine.connect() as conn:  # as if the server restarted under the line
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        api.publish("user.created", {"n": 1})

        with pytest.raises(OperationalError):
            claim_due(runtime().box, 10, 10, 60, line=line)
        [send] = claim_due(runtime().box, 10, 10, 60, line=line)
    finally:
        line.close()
    assert send.event_type == "user.created"
