"""Test deliveries and Activate: one synchronous, logged attempt whose result is answered."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from app.deliveries.engine import attempt, make_send, payload_json, record
from app.endpoints.service import set_status
from app.extensions import db
from app.ids import new_id
from app.logs import log_attempts
from app.models import Delivery, Endpoint, Event, utcnow
from app.runtime import runtime

TEST_EVENT_TYPE = "herald.test"
RESPONSE_PREVIEW = 1024


@dataclass(frozen=True)
class TestResult:
    status: str
    http_status: int | None
    response: str
    duration_ms: int
    attempt_id: str

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "http_status": self.http_status,
            "response": self.response,
            "duration_ms": self.duration_ms,
            "attempt_id": self.attempt_id,
        }


def send_test(endpoint: Endpoint, event_type: str = TEST_EVENT_TYPE) -> TestResult:
    """Send a test event (live_mode false) now, whatever the endpoint's status."""
    rt = runtime()
    now = utcnow()
    event_id = new_id("evt")
    body = {
        "id": event_id,
        "type": event_type,
        "created_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "live_mode": False,
        "data": {"webhook_id": endpoint.id, "message": "This is a test event from Herald."},
        "previous_data": None,
    }
    event = Event(id=event_id, type=event_type, payload=payload_json(body), live_mode=False)
    # Leased from the start so no worker picks it up while we send it ourselves.
    lease = now + timedelta(seconds=2 * rt.settings.timeout + 30)
    delivery = Delivery(
        event_id=event_id, endpoint_id=endpoint.id, trigger="test", locked_until=lease
    )
    db.session.add(event)
    db.session.flush()  # the event row first: the delivery's foreign key points at it
    db.session.add(delivery)
    db.session.commit()
    send = make_send(delivery.id, event, endpoint, 1, "test", rt.box, now)
    send.lease = lease
    send, outcome = attempt(rt.transport, send)
    recorded = record([(send, outcome)], rt.policy)[0]
    rt.broker.announce_attempts([{"attempt_id": recorded.attempt_id, "endpoint_id": endpoint.id}])
    # Logged (trigger "test") but not counted in /metrics: those count live traffic only.
    log_attempts([recorded])
    if outcome.http_status is not None:
        text = (outcome.body or "")[:RESPONSE_PREVIEW]
    else:
        text = outcome.error or "no response"
    return TestResult(
        status="success" if outcome.ok else "failure",
        http_status=outcome.http_status,
        response=text,
        duration_ms=outcome.duration_ms,
        attempt_id=recorded.attempt_id,
    )


def activate(endpoint: Endpoint) -> TestResult:
    """Send a test event; on a 2xx the endpoint becomes active."""
    result = send_test(endpoint)
    if result.status == "success" and endpoint.status != "active":
        db.session.refresh(endpoint)
        set_status(endpoint, "active")
    return result
