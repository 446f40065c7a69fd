"""How domain objects look as JSON on the API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.events.publish import iso
from app.models import Attempt, Delivery, Endpoint, Event, EventType


def when(moment: datetime | None) -> str | None:
    return iso(moment) if moment else None


def webhook(endpoint: Endpoint, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "events": endpoint.events,
        "status": endpoint.status,
        "disabled_reason": endpoint.disabled_reason,
        "headers": endpoint.headers or {},
        "rate_limit": endpoint.rate_limit,
        "signature": endpoint.signature or {"scheme": "standard"},
        "created_at": when(endpoint.created_at),
        "updated_at": when(endpoint.updated_at),
    }
    body.update(extra)
    return body


def attempt(row: Attempt) -> dict[str, Any]:
    return {
        "id": row.id,
        "webhook_id": row.endpoint_id,
        "delivery_id": row.delivery_id,
        "event_id": row.event_id,
        "event_type": row.event_type,
        "attempt": row.number,
        "trigger": row.trigger,
        "status": row.status,
        "url": row.url,
        "http_status": row.http_status,
        "duration_ms": row.duration_ms,
        "request_headers": row.request_headers,
        "response_headers": row.response_headers,
        "response_body": row.response_body,
        "error": row.error,
        "created_at": when(row.created_at),
    }


def delivery(row: Delivery) -> dict[str, Any]:
    return {
        "id": row.id,
        "webhook_id": row.endpoint_id,
        "status": row.status,
        "attempts": row.attempts,
        "next_attempt_at": when(row.next_attempt_at) if row.status == "pending" else None,
        "last_attempt_at": when(row.last_attempt_at),
        "cancel_reason": row.cancel_reason,
    }


def event(row: Event, deliveries: list[Delivery] | None = None) -> dict[str, Any]:
    body = row.body()
    out: dict[str, Any] = {
        "id": row.id,
        "type": row.type,
        "created_at": when(row.created_at),
        "live_mode": row.live_mode,
        "data": body.get("data"),
        "previous_data": body.get("previous_data"),
        "coalesce_key": row.coalesce_key,
    }
    if deliveries is not None:
        out["deliveries"] = [delivery(d) for d in deliveries]
    return out


def event_type(row: EventType) -> dict[str, Any]:
    return {
        "name": row.name,
        "description": row.description,
        "schema": row.schema,
        "archived": row.archived_at is not None,
        "created_at": when(row.created_at),
    }
