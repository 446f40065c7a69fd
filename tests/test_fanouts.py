"""A held endpoint's deliveries: written just after the publish's commit, never lost."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from app.events import fanouts
from app.extensions import db
from app.models import Delivery, Endpoint, HeldFanout, utcnow
from app.runtime import runtime
from tests.conftest import Api


def held_and_free(api: Api) -> tuple[str, str, datetime]:
    api.event_type("user.created")
    held = api.webhook("http://127.0.0.1:9/held")["id"]
    free = api.webhook("http://127.0.0.1:9/free")["id"]
    until = utcnow() + timedelta(seconds=30)
    db.session.execute(update(Endpoint).where(Endpoint.id == held).values(held_until=until))
    db.session.commit()
    return held, free, until


def due_times(*endpoint_ids: str) -> dict[str, list[datetime]]:
    db.session.expire_all()
    rows = db.session.execute(
        select(Delivery.endpoint_id, Delivery.next_attempt_at).where(
            Delivery.endpoint_id.in_(endpoint_ids)
        )
    ).all()
    db.session.rollback()
    found: dict[str, list[datetime]] = {e: [] for e in endpoint_ids}
    for endpoint_id, at in rows:
        found[endpoint_id].append(at)
    return found


def lists_left() -> int:
    count = db.session.execute(select(func.count()).select_from(HeldFanout)).scalar_one()
    db.session.rollback()
    return int(count)


def test_held_deliveries_are_written_after_the_wake_up_and_leave_no_list(
    api: Api, monkeypatch: Any
) -> None:
    held, free, until = held_and_free(api)
    broker = runtime().broker
    woken_with: list[dict[str, list[datetime]]] = []
    wake = broker.request_drain
    monkeypatch.setattr(
        broker, "request_drain", lambda: woken_with.append(due_times(held, free)) or wake()
    )

    published = api.publish("user.created")

    assert published["deliveries"] == 2
    [seen] = woken_with
    assert seen[held] == []  # the free one went first
    assert len(seen[free]) == 1
    deadline = time.monotonic() + 10
    while due_times(held)[held] == [] and time.monotonic() < deadline:
        time.sleep(0.01)  # this process's writer thread, DELAY later
    assert due_times(held)[held] == [until]  # then the held one, held
    assert lists_left() == 0


def test_a_writer_that_fails_leaves_them_to_the_sweeper(api: Api, monkeypatch: Any) -> None:
    held, free, until = held_and_free(api)
    monkeypatch.setattr(fanouts, "writer", fanouts.Writer(background=False))

    def outage(*args: Any) -> int:
        raise OSError("the database went away")

    with monkeypatch.context() as patch:
        patch.setattr(fanouts, "take", outage)
        assert api.publish("user.created")["deliveries"] == 2  # published: it has committed
        assert fanouts.writer.flush() == 0  # logged, not raised
    assert due_times(held, free)[held] == []
    assert lists_left() == 1

    assert fanouts.write_stale() == 0  # too fresh: its writer may still be writing it
    later = utcnow() + fanouts.GRACE + timedelta(seconds=1)
    assert fanouts.write_stale(later) == 1
    assert fanouts.write_stale(later) == 0

    after = due_times(held, free)
    assert after[held] == [until]
    assert len(after[free]) == 1
    assert lists_left() == 0


def test_a_list_skips_an_endpoint_deleted_before_it_is_written(api: Api, monkeypatch: Any) -> None:
    held, _, _ = held_and_free(api)
    monkeypatch.setattr(fanouts, "writer", fanouts.Writer(background=False))
    api.publish("user.created")
    assert api.delete(f"/v1/webhooks/{held}").status_code == 204

    assert fanouts.writer.flush() == 1
    assert due_times(held)[held] == []  # nothing pending to a deleted webhook
    assert lists_left() == 0


def test_a_list_is_written_once_by_whoever_takes_it_first(api: Api, monkeypatch: Any) -> None:
    held, _, until = held_and_free(api)
    monkeypatch.setattr(fanouts, "writer", fanouts.Writer(background=False))
    api.publish("user.created")

    assert fanouts.write_stale(utcnow() + fanouts.GRACE + timedelta(seconds=1)) == 1  # sweeper
    assert fanouts.writer.flush() == 0  # then the writer, late: it finds the list gone

    assert due_times(held)[held] == [until]  # once


def test_the_lists_of_several_publishes_are_written_together(api: Api, monkeypatch: Any) -> None:
    held, free, until = held_and_free(api)
    monkeypatch.setattr(fanouts, "writer", fanouts.Writer(background=False))
    for _ in range(3):
        api.publish("user.created")
    assert lists_left() == 3

    assert fanouts.writer.flush() == 3
    assert fanouts.writer.flush() == 0

    after = due_times(held, free)
    assert after[held] == [until] * 3
    assert len(after[free]) == 3
    assert lists_left() == 0


def test_a_coalescing_publish_writes_held_deliveries_in_its_own_transaction(
    api: Api, monkeypatch: Any
) -> None:
    held, free, until = held_and_free(api)
    listed: list[Any] = []
    monkeypatch.setattr(fanouts, "listing", lambda *args: listed.append(args))

    api.publish("user.created", coalesce_key="user_1")

    assert listed == []
    assert due_times(held, free)[held] == [until]


def test_a_publish_to_held_endpoints_only_lists_them_and_wakes_no_one(
    api: Api, monkeypatch: Any
) -> None:
    api.event_type("user.created")
    held = api.webhook("http://127.0.0.1:9/held")["id"]
    until = utcnow() + timedelta(seconds=30)
    db.session.execute(update(Endpoint).where(Endpoint.id == held).values(held_until=until))
    db.session.commit()
    monkeypatch.setattr(fanouts, "writer", fanouts.Writer(background=False))
    woken: list[bool] = []
    monkeypatch.setattr(runtime().broker, "request_drain", lambda: woken.append(True))

    batch = api.post("/v1/events/batch", {"events": [{"type": "user.created", "data": {}}] * 3})

    assert batch.status_code == 202
    assert woken == []  # nothing is due now
    assert lists_left() == 1
    assert fanouts.writer.flush() == 1
    assert due_times(held)[held] == [until] * 3
