"""Delivery end to end: publish through the API, a worker's drain, a real receiver."""

from __future__ import annotations

import itertools
import json
import threading
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from app.deliveries.jobs import drain
from app.extensions import db
from app.models import Attempt, Delivery, Endpoint, utcnow
from tests.conftest import Api, make_app
from tests.receiver import Receiver, garbage, hang, huge, reset, respond
from tests.verify import verify_both


def attempts_of(webhook_id: str) -> list[Attempt]:
    db.session.expire_all()
    return list(
        db.session.execute(
            select(Attempt).where(Attempt.endpoint_id == webhook_id).order_by(Attempt.id)
        ).scalars()
    )


def delivery_of(event_id: str) -> Delivery:
    db.session.expire_all()
    return db.session.execute(select(Delivery).where(Delivery.event_id == event_id)).scalar_one()


@pytest.fixture
def user_created(api: Api) -> str:
    api.event_type("user.created")
    api.event_type("team.deleted")
    return "user.created"


def test_it_delivers_a_signed_event_the_official_libraries_verify(
    api: Api, receiver: Receiver, deliver: Any, user_created: str
) -> None:
    hook = api.webhook(receiver.url_for("/a"), ["user.created"], headers={"X-Tenant": "acme"})
    event = api.publish("user.created", {"id": "u1", "display_name": "My Team"})
    assert event["deliveries"] == 1

    deliver()

    [req] = receiver.wait_for(1)
    body = verify_both(hook["secret"], req.body, req.headers)
    assert body == {
        "id": event["id"],
        "type": "user.created",
        "created_at": event["created_at"],
        "live_mode": True,
        "data": {"id": "u1", "display_name": "My Team"},
        "previous_data": None,
    }
    assert req.headers["webhook-id"] == event["id"] == req.headers["svix-id"]
    assert req.headers["herald-webhook-id"] == hook["id"]
    assert req.headers["herald-attempt"] == "1"
    assert req.headers["user-agent"].startswith("Herald/")
    assert req.headers["content-type"] == "application/json"
    assert req.headers["x-tenant"] == "acme"
    [att] = attempts_of(hook["id"])
    assert (att.status, att.http_status, att.trigger, att.number) == (
        "success",
        200,
        "scheduled",
        1,
    )
    assert delivery_of(event["id"]).status == "succeeded"


def test_it_fans_out_only_to_active_subscribed_webhooks(
    api: Api, receiver: Receiver, deliver: Any, user_created: str
) -> None:
    api.webhook(receiver.url_for("/exact"), ["user.created"])
    api.webhook(receiver.url_for("/star"), ["*"])
    api.webhook(receiver.url_for("/other"), ["team.deleted"])
    api.webhook(receiver.url_for("/pending"), ["*"], status="pending")
    disabled = api.webhook(receiver.url_for("/disabled"), ["*"])
    api.patch(f"/v1/webhooks/{disabled['id']}", {"status": "disabled"})

    assert api.publish("user.created")["deliveries"] == 2
    deliver()

    receiver.wait_for(2)
    assert sorted(r.path for r in receiver.requests) == ["/exact", "/star"]


def test_it_retries_with_the_same_id_and_fresh_signatures_until_success(
    api: Api, receiver: Receiver, deliver: Any, user_created: str
) -> None:
    receiver.behave("/flaky", respond(500), respond(503), respond(200))
    hook = api.webhook(receiver.url_for("/flaky"))
    event = api.publish("user.created")

    deliver()

    reqs = receiver.wait_for(3)
    assert {r.headers["webhook-id"] for r in reqs} == {event["id"]}
    assert [r.headers["herald-attempt"] for r in reqs] == ["1", "2", "3"]
    for req in reqs:
        verify_both(hook["secret"], req.body, req.headers)
    assert [(a.number, a.status, a.http_status) for a in attempts_of(hook["id"])] == [
        (1, "failure", 500),
        (2, "failure", 503),
        (3, "success", 200),
    ]
    delivery = delivery_of(event["id"])
    assert (delivery.status, delivery.attempts) == ("succeeded", 3)


def test_it_retries_what_comes_due_while_attempts_are_still_being_written(
    api: Api, receiver: Receiver, deliver: Any, user_created: str, monkeypatch: Any
) -> None:
    # A loaded database can take longer to write an attempt than the drain's idle window;
    # the drain must not stop while a failed attempt (due again at once here) is unwritten.
    from app.deliveries import jobs

    def slow_record(*args: Any, **kwargs: Any) -> Any:
        threading.Event().wait(0.5)
        return record(*args, **kwargs)

    record = jobs.record
    monkeypatch.setattr(jobs, "record", slow_record)
    receiver.behave("/slow-db", respond(503), respond(200))
    hook = api.webhook(receiver.url_for("/slow-db"))
    api.publish("user.created")

    deliver(idle=0.2)

    assert [(a.number, a.status) for a in attempts_of(hook["id"])] == [
        (1, "failure"),
        (2, "success"),
    ]


def test_it_disables_the_webhook_when_a_delivery_exhausts_its_attempts(
    api: Api, receiver: Receiver, deliver: Any, user_created: str
) -> None:
    receiver.behave("/down", respond(500, b"boom"))
    hook = api.webhook(receiver.url_for("/down"))
    first = api.publish("user.created")

    deliver()

    assert len(attempts_of(hook["id"])) == 5
    assert delivery_of(first["id"]).status == "failed"
    got = api.get(f"/v1/webhooks/{hook['id']}").get_json()
    assert got["status"] == "disabled"
    assert "failed all 5 attempts" in got["disabled_reason"]
    assert "HTTP 500" in got["disabled_reason"]
    assert got["deliveries"] == {"succeeded": 0, "failed": 1, "pending": 0}

    # Its other deliveries wait while it is disabled ...
    api.post("/v1/webhooks", {"url": receiver.url_for("/other"), "events": ["*"]})
    waiting_id = db.session.execute(
        select(Endpoint.id).where(Endpoint.id == hook["id"])
    ).scalar_one()
    receiver.behave("/down", respond(200))
    db.session.add(Delivery(event_id=first["id"], endpoint_id=waiting_id))
    db.session.commit()
    deliver()
    assert len(attempts_of(hook["id"])) == 5

    # ... and go once it is enabled again.
    assert api.patch(f"/v1/webhooks/{hook['id']}", {"status": "active"}).status_code == 200
    deliver()
    assert attempts_of(hook["id"])[-1].status == "success"


def test_it_disables_the_webhook_at_once_on_410(
    api: Api, receiver: Receiver, deliver: Any, user_created: str
) -> None:
    receiver.behave("/gone", respond(410))
    hook = api.webhook(receiver.url_for("/gone"))
    api.publish("user.created")

    deliver()

    assert len(attempts_of(hook["id"])) == 1
    got = api.get(f"/v1/webhooks/{hook['id']}").get_json()
    assert got["status"] == "disabled"
    assert "410" in got["disabled_reason"]


def test_it_does_not_follow_redirects(
    api: Api, receiver: Receiver, deliver: Any, user_created: str
) -> None:
    receiver.behave("/moved", respond(302, headers={"Location": receiver.url_for("/target")}))
    hook = api.webhook(receiver.url_for("/moved"))
    api.publish("user.created")

    deliver(budget=0.5)

    first = attempts_of(hook["id"])[0]
    assert (first.status, first.http_status) == ("failure", 302)
    assert receiver.requests_for("/target") == []


@pytest.mark.parametrize(
    ("behaviour", "error"),
    [
        (hang(5), "timed out after 1 s"),
        (reset(), "connection reset by peer"),
        (garbage(), "invalid HTTP response"),
    ],
    ids=["hang", "reset", "garbage"],
)
def test_it_logs_a_failed_attempt_when_the_receiver_misbehaves(
    api: Api, receiver: Receiver, user_created: str, behaviour: Any, error: str
) -> None:
    receiver.behave("/bad", behaviour)
    hook = api.webhook(receiver.url_for("/bad"))
    api.publish("user.created")

    drain(budget=0.1, idle=0.0)

    att = attempts_of(hook["id"])[0]
    assert (att.status, att.http_status) == ("failure", None)
    assert att.error == error


def test_it_records_a_response_whose_body_and_headers_hold_nul_bytes(
    api: Api, receiver: Receiver, deliver: Any, user_created: str
) -> None:
    # PostgreSQL text cannot hold NUL: one such answer must not fail its whole batch.
    receiver.behave(
        "/nul", respond(200, b"ok\x00\xff done", headers={"X-Odd": "a\x00b"}), respond(200)
    )
    hook = api.webhook(receiver.url_for("/nul"))
    api.publish("user.created")
    api.publish("user.created")

    deliver()

    attempts = attempts_of(hook["id"])
    assert sorted(a.status for a in attempts) == ["success", "success"]
    odd = next(a for a in attempts if a.response_body)
    assert odd.response_body == "ok\ufffd\ufffd done"
    assert "\x00" not in json.dumps(odd.response_headers)


def test_it_gives_a_failing_endpoint_a_quarter_of_its_slots(
    env: dict[str, str], api: Api, receiver: Receiver, user_created: str
) -> None:
    # A failing receiver's retries are owed anyway: once its attempts fail it gets one slot
    # of four, so a slow failing one cannot hold the threads the healthy ones need.
    def slow_failure(handler: Any) -> None:
        threading.Event().wait(0.3)
        respond(500)(handler)

    receiver.behave("/failing", *[slow_failure] * 40)
    api.webhook(receiver.url_for("/failing"))
    for i in range(8):
        api.publish("user.created", {"i": i})

    with make_app(env, HERALD_ENDPOINT_CONCURRENCY="4").app_context():
        drain(budget=2.0, idle=0.2)

    arrivals = [r.at for r in receiver.requests_for("/failing")]
    # Before any answer could come back (0.3 s), only the first wave can have arrived.
    first_wave = [t for t in arrivals if t - arrivals[0] < 0.29]
    assert len(first_wave) == 4  # unknown yet: the whole cap
    later = arrivals[len(first_wave) :]
    assert len(later) >= 2
    gaps = [b - a for a, b in itertools.pairwise(later)]
    assert min(gaps) > 0.25, gaps  # then one at a time


def test_it_logs_connection_refused(api: Api, user_created: str) -> None:
    hook = api.webhook("http://127.0.0.1:9/nothing-listens")
    api.publish("user.created")

    drain(budget=0.1, idle=0.0)

    att = attempts_of(hook["id"])[0]
    assert (att.http_status, att.error) == (None, "connection refused")


def test_it_reads_only_the_first_4_kib_of_a_huge_response(
    api: Api, receiver: Receiver, deliver: Any, user_created: str
) -> None:
    receiver.behave("/huge", huge(200 * 1024 * 1024))
    hook = api.webhook(receiver.url_for("/huge"))
    api.publish("user.created")

    deliver()

    att = attempts_of(hook["id"])[0]
    assert (att.status, att.http_status) == ("success", 200)
    assert att.response_body is not None
    assert len(att.response_body) == 4096


def test_it_signs_with_both_secrets_during_a_rotation_grace(
    api: Api, receiver: Receiver, deliver: Any, user_created: str
) -> None:
    hook = api.webhook(receiver.url_for("/rot"))
    rotated = api.post(f"/v1/webhooks/{hook['id']}/secret/rotate").get_json()["secret"]
    assert rotated != hook["secret"]
    assert api.get(f"/v1/webhooks/{hook['id']}/secret").get_json() == {"secret": rotated}
    api.publish("user.created")

    deliver()

    [req] = receiver.wait_for(1)
    assert len(req.headers["webhook-signature"].split(" ")) == 2
    verify_both(hook["secret"], req.body, req.headers)
    verify_both(rotated, req.body, req.headers)

    # After the grace period only the new secret signs.
    endpoint = db.session.get(Endpoint, hook["id"])
    assert endpoint is not None
    endpoint.previous_secret_until = utcnow() - timedelta(seconds=1)
    db.session.commit()
    api.publish("user.created")
    deliver()
    last = receiver.wait_for(2)[-1]
    assert len(last.headers["webhook-signature"].split(" ")) == 1
    verify_both(rotated, last.body, last.headers)
    with pytest.raises(Exception, match=r"[Ss]ignature"):
        verify_both(hook["secret"], last.body, last.headers)


def test_it_sends_only_the_newest_of_coalesced_events(
    api: Api, receiver: Receiver, deliver: Any, user_created: str
) -> None:
    hook = api.webhook(receiver.url_for("/co"))
    events = [api.publish("user.created", {"v": i}, coalesce_key="user-1") for i in range(3)]

    deliver()

    [req] = receiver.wait_for(1)
    assert json.loads(req.body)["data"] == {"v": 2}
    statuses = [(delivery_of(e["id"]).status, delivery_of(e["id"]).cancel_reason) for e in events]
    assert statuses == [
        ("cancelled", "superseded"),
        ("cancelled", "superseded"),
        ("succeeded", None),
    ]
    assert len(attempts_of(hook["id"])) == 1


def test_it_never_sends_an_attempt_twice_when_workers_race(
    app: Flask, api: Api, receiver: Receiver, user_created: str
) -> None:
    api.webhook(receiver.url_for("/race"))
    batch = [{"type": "user.created", "data": {"i": i}} for i in range(300)]
    assert api.post("/v1/events/batch", {"events": batch}).status_code == 202

    def worker() -> None:
        with app.app_context():
            drain(budget=3, idle=0.3)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    reqs = receiver.wait_for(300)
    ids = [r.headers["webhook-id"] for r in reqs]
    assert len(ids) == len(set(ids)) == 300


def test_it_answers_activate_with_the_test_result(
    api: Api, receiver: Receiver, user_created: str
) -> None:
    receiver.behave("/act", respond(500, b"not yet"), respond(200, b"welcome"))
    hook = api.webhook(receiver.url_for("/act"), status="pending")

    failed = api.post(f"/v1/webhooks/{hook['id']}/activate").get_json()
    assert failed["status"] == "failure"
    assert failed["http_status"] == 500
    assert failed["response"] == "not yet"
    assert api.get(f"/v1/webhooks/{hook['id']}").get_json()["status"] == "pending"

    ok = api.post(f"/v1/webhooks/{hook['id']}/activate").get_json()
    assert (ok["status"], ok["http_status"], ok["response"]) == ("success", 200, "welcome")
    assert ok["attempt_id"].startswith("att_")
    assert isinstance(ok["duration_ms"], int)
    assert api.get(f"/v1/webhooks/{hook['id']}").get_json()["status"] == "active"

    [_, req] = receiver.wait_for(2)
    body = verify_both(hook["secret"], req.body, req.headers)
    assert body["live_mode"] is False
    trig = [a.trigger for a in attempts_of(hook["id"])]
    assert trig == ["test", "test"]


def test_it_answers_a_test_send_with_no_response_when_nothing_listens(
    api: Api, user_created: str
) -> None:
    hook = api.webhook("http://127.0.0.1:9/")
    result = api.post("/v1/webhooks/test", {"webhook_id": hook["id"], "event_type": "user.created"})
    assert result.status_code == 200
    body = result.get_json()
    assert (body["status"], body["http_status"], body["response"]) == (
        "failure",
        None,
        "connection refused",
    )
