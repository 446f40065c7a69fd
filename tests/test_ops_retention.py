"""Retention deletes old attempts, finished deliveries and events in bounded batches, keeps
everything still owed, and keeps the webhook's delivery counters right (SQLite and PostgreSQL).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, insert, select

from app.housekeeping import run_retention_once
from app.ids import id_floor, new_id
from app.models import Attempt, Delivery, Event, utcnow
from app.retention import purge
from tests.conftest import Api

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# A large log: 25,000 old deliveries with 50,000 attempts, many batches on every table, and
# still seconds on CI's 2 cores.
LARGE = 25_000


def old_id(prefix: str, at: datetime) -> str:
    """An id as one made at ``at`` would be (ids sort by their creation time)."""
    return id_floor(prefix, at.timestamp())[:-16] + "".join(random.choices(_ALPHABET, k=16))


@dataclass
class Seeded:
    webhook_id: str
    old_finished: int
    kept_pending_event: str
    kept_recent_event: str
    resent_delivery: str
    resent_attempt: str


def _attempt_row(delivery: dict[str, Any], at: datetime, number: int, ok: bool) -> dict[str, Any]:
    return {
        "id": old_id("att", at),
        "delivery_id": delivery["id"],
        "endpoint_id": delivery["endpoint_id"],
        "event_id": delivery["event_id"],
        "event_type": "user.created",
        "number": number,
        "trigger": "scheduled",
        "status": "success" if ok else "failure",
        "url": "http://127.0.0.1:9/hook",
        "http_status": 200 if ok else 500,
        "request_headers": {"content-type": "application/json"},
        "response_headers": {},
        "response_body": "x" * 200,
        "error": None,
        "duration_ms": 12,
        "created_at": at,
    }


def seed(api: Api, old_count: int) -> Seeded:
    """Old finished deliveries (2 attempts each) plus the rows retention must keep."""
    api.event_type("user.created")
    webhook_id = api.webhook("http://127.0.0.1:9/hook", ["user.created"])["id"]
    now = utcnow()
    events: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []
    attempts: list[dict[str, Any]] = []

    def add(age: timedelta, status: str, last: timedelta | None = None) -> dict[str, Any]:
        at = now - age
        event = {
            "id": old_id("evt", at),
            "type": "user.created",
            "payload": '{"data": {"email": "ada@example.com"}}',
            "live_mode": True,
            "created_at": at,
        }
        delivery = {
            "id": old_id("dlv", at),
            "event_id": event["id"],
            "endpoint_id": webhook_id,
            "status": status,
            "attempts": 2,
            "next_attempt_at": at,
            "locked_until": datetime(1970, 1, 1, tzinfo=now.tzinfo),
            "last_attempt_at": now - (last or age),
            "trigger": "scheduled",
            "created_at": at,
        }
        events.append(event)
        deliveries.append(delivery)
        return delivery

    for i in range(old_count):
        age = timedelta(days=40, seconds=i)
        d = add(age, "succeeded" if i % 3 else "failed")
        attempts.append(_attempt_row(d, now - age, 1, False))
        attempts.append(_attempt_row(d, now - age + timedelta(seconds=1), 2, i % 3 != 0))
    pending = add(timedelta(days=45), "pending")
    attempts.append(_attempt_row(pending, now - timedelta(days=45), 1, False))
    recent = add(timedelta(days=2), "succeeded")
    attempts.append(_attempt_row(recent, now - timedelta(days=2), 1, True))
    # An old delivery resent by hand yesterday: its new attempt (and so the delivery) stay.
    resent = add(timedelta(days=50), "succeeded", last=timedelta(days=1))
    attempts.append(_attempt_row(resent, now - timedelta(days=50), 1, False))
    resent_attempt = _attempt_row(resent, now - timedelta(days=1), 2, True)
    attempts.append(resent_attempt)
    # An old event no webhook subscribed to.
    events.append(
        {
            "id": old_id("evt", now - timedelta(days=60)),
            "type": "user.created",
            "payload": "{}",
            "live_mode": True,
            "created_at": now - timedelta(days=60),
        }
    )
    from app.extensions import db

    for table, rows in ((Event, events), (Delivery, deliveries), (Attempt, attempts)):
        for start in range(0, len(rows), 2000):
            db.session.execute(insert(table.__table__), rows[start : start + 2000])
    db.session.commit()
    return Seeded(
        webhook_id=webhook_id,
        old_finished=old_count,
        kept_pending_event=pending["event_id"],
        kept_recent_event=recent["event_id"],
        resent_delivery=resent["id"],
        resent_attempt=resent_attempt["id"],
    )


def count(model: Any) -> int:
    from app.extensions import db

    n = db.session.execute(select(func.count()).select_from(model)).scalar_one()
    db.session.rollback()
    return int(n)


def counters(api: Api, webhook_id: str) -> dict[str, int]:
    r = api.get(f"/v1/webhooks/{webhook_id}")
    assert r.status_code == 200
    return r.get_json()["deliveries"]  # type: ignore[no-any-return]


def test_it_deletes_a_large_old_log_in_batches_and_keeps_the_counters(app: Flask, api: Api) -> None:
    seeded = seed(api, LARGE)
    before = counters(api, seeded.webhook_id)
    failed = len(range(0, LARGE, 3))
    assert before == {"succeeded": LARGE - failed + 2, "failed": failed, "pending": 1}

    done = purge(30, batch=1000)

    assert done.deliveries == LARGE
    assert done.attempts >= 2 * LARGE  # every old attempt, the kept deliveries' old ones too
    assert done.events == LARGE + 1
    assert done.batches > (4 * LARGE) // 1000  # bounded: many small transactions
    assert counters(api, seeded.webhook_id) == before
    # Kept: the pending delivery and its event, the recent delivery, the resent one.
    assert count(Delivery) == 3
    assert count(Event) == 3
    from app.extensions import db

    kept_events = set(db.session.execute(select(Event.id)).scalars())
    assert {seeded.kept_pending_event, seeded.kept_recent_event} <= kept_events
    kept_attempts = set(db.session.execute(select(Attempt.id)).scalars())
    assert seeded.resent_attempt in kept_attempts
    assert count(Attempt) == 2  # the recent delivery's and the resend's


def test_it_commits_each_batch_on_its_own(app: Flask, api: Api) -> None:
    seed(api, 300)
    done = purge(30, batch=100, max_batches=1)
    assert done.attempts == 100
    # Another connection sees the batch gone: it was committed, not held in a long transaction.
    from app.extensions import db

    with db.engine.connect() as other:
        left = other.execute(select(func.count()).select_from(Attempt)).scalar_one()
    assert left == 2 * 300 + 4 - 100


def test_it_deletes_nothing_newer_than_the_retention(app: Flask, api: Api) -> None:
    seeded = seed(api, 50)
    before = counters(api, seeded.webhook_id)
    done = purge(90)
    assert done.total == 0
    assert count(Delivery) == 53
    assert counters(api, seeded.webhook_id) == before


def test_it_runs_twice_without_changing_the_counters(app: Flask, api: Api) -> None:
    seeded = seed(api, 40)
    before = counters(api, seeded.webhook_id)
    purge(30, batch=7)
    assert purge(30, batch=7).total == 0
    assert counters(api, seeded.webhook_id) == before


def test_it_leaves_events_made_through_the_api_alone(app: Flask, api: Api) -> None:
    api.event_type("user.created")
    api.webhook("http://127.0.0.1:9/hook", ["user.created"])
    api.publish("user.created")
    assert purge(1).total == 0
    assert count(Event) == 1


def test_it_runs_once_per_interval_across_workers(app: Flask, api: Api) -> None:
    seed(api, 20)
    assert run_retention_once() is True
    assert count(Delivery) == 3
    # Another worker in the same interval finds the run done.
    assert run_retention_once() is False


def test_its_old_ids_sort_before_new_ones() -> None:
    long_ago = utcnow() - timedelta(days=31)
    assert old_id("att", long_ago) < id_floor("att", (utcnow() - timedelta(days=30)).timestamp())
    assert new_id("att") > id_floor("att", (utcnow() - timedelta(days=30)).timestamp())


@pytest.mark.parametrize("days", ["0", "abc", "4000"])
def test_it_refuses_a_bad_retention_setting(env: dict[str, str], days: str) -> None:
    from app.config import ConfigError
    from tests.conftest import make_app

    with pytest.raises(ConfigError, match="HERALD_RETENTION_DAYS"):
        make_app(env, HERALD_RETENTION_DAYS=days)
