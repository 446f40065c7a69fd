"""Coalescing (API.md): with a coalesce_key, only the newest undelivered state is sent."""

from __future__ import annotations

import json
from pathlib import Path

from flask import Flask
from sqlalchemy import select

from app.deliveries.engine import claim_due, record
from app.extensions import db
from app.models import Delivery
from app.runtime import runtime
from app.transport import Outcome
from tests.conftest import Api
from tests.faults import Worker, free_port, wait_until
from tests.receiver import Receiver


def states() -> dict[str, tuple[str, str | None]]:
    rows = db.session.execute(select(Delivery)).scalars().all()
    found = {row.event_id: (row.status, row.cancel_reason) for row in rows}
    db.session.rollback()
    return found


def test_it_sends_only_the_newest_state_once_a_down_receiver_comes_back(
    env: dict[str, str], api: Api, tmp_path: Path
) -> None:
    api.event_type("user.updated")
    api.event_type("user.deleted")
    port = free_port()  # nothing listens here yet: the receiver is down
    api.webhook(f"http://127.0.0.1:{port}/state")
    # Retries every second for long enough that the webhook is not disabled meanwhile.
    worker_env = {**env, "HERALD_RETRY_SCHEDULE": ",".join(["1"] * 19)}

    with Worker(worker_env, tmp_path / "worker.log") as worker:
        worker.wait_ready()
        first = api.publish("user.updated", {"name": "v1"}, coalesce_key="user-42")
        assert wait_until(lambda: db.session.execute(
            select(Delivery.attempts).where(Delivery.event_id == first["id"])
        ).scalar_one() >= 1, 30)  # fmt: skip
        db.session.rollback()
        middle = [
            api.publish("user.updated", {"name": f"v{i}"}, coalesce_key="user-42") for i in (2, 3)
        ]
        newest = api.publish("user.updated", {"name": "v4"}, coalesce_key="user-42")
        other_key = api.publish("user.updated", {"name": "w1"}, coalesce_key="user-43")
        other_type = api.publish("user.deleted", {"name": "v4"}, coalesce_key="user-42")

        with Receiver(port) as receiver:  # the receiver comes back
            assert wait_until(lambda: "pending" not in {s for s, _ in states().values()}, 30), (
                worker.output()
            )
            bodies = [json.loads(r.body) for r in receiver.requests]

    superseded = ("cancelled", "superseded")
    assert states() == {
        first["id"]: superseded,
        middle[0]["id"]: superseded,
        middle[1]["id"]: superseded,
        newest["id"]: ("succeeded", None),
        other_key["id"]: ("succeeded", None),
        other_type["id"]: ("succeeded", None),
    }
    sent = sorted((b["type"], b["data"]["name"]) for b in bodies)
    assert sent == [("user.deleted", "v4"), ("user.updated", "v4"), ("user.updated", "w1")]


def test_it_does_not_retry_an_older_state_that_was_in_flight_when_superseded(
    app: Flask, api: Api, receiver: Receiver
) -> None:
    api.event_type("user.updated")
    api.webhook(receiver.url_for("/state"))
    older = api.publish("user.updated", {"name": "old"}, coalesce_key="user-7")
    rt = runtime()
    [in_flight] = claim_due(rt.box, limit=10, per_endpoint=10, lease_seconds=60)
    assert in_flight.event_id == older["id"]

    newer = api.publish("user.updated", {"name": "new"}, coalesce_key="user-7")
    # The older attempt now fails; the retry schedule would normally bring it back.
    record([(in_flight, Outcome(None, None, None, "connection refused", 3))], rt.policy)

    assert states()[older["id"]] == ("cancelled", "superseded")
    assert states()[newer["id"]] == ("pending", None)
    assert len(api.get(f"/v1/events/{older['id']}").get_json()["deliveries"]) == 1
