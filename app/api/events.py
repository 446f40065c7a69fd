"""/v1/events and /v1/event-types: thin routes over app.events."""

from __future__ import annotations

from flask import Response, jsonify, request

from app.api import bp, present
from app.api.parsing import json_object
from app.errors import Invalid, parse
from app.events import catalogue, publish, service
from app.events.schemas import RedeliverIn
from app.pagination import parse_cursor, parse_limit


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > 255:
        raise Invalid.field("Idempotency-Key", "must be 1 to 255 characters")
    return key


@bp.post("/events")
def publish_event() -> tuple[Response, int]:
    spec = publish.parse_event(json_object())
    result = publish.publish([spec], _idempotency_key(), batch=False)[0]
    return jsonify(result.as_json()), 202


@bp.post("/events/batch")
def publish_batch() -> tuple[Response, int]:
    batch = publish.parse_batch(json_object())
    results = publish.publish(batch.events, _idempotency_key(), batch=True)
    return jsonify({"data": [r.as_json() for r in results]}), 202


@bp.get("/events")
def list_events() -> Response:
    page = service.list_events(
        parse_limit(request.args.get("limit")),
        parse_cursor(request.args.get("cursor")),
        request.args.get("type") or None,
    )
    return jsonify(
        {"data": [present.event(e) for e in page.items], "next_cursor": page.next_cursor}
    )


@bp.get("/events/<event_id>")
def get_event(event_id: str) -> Response:
    event = service.get_event(event_id)
    return jsonify(present.event(event, service.deliveries_of(event.id)))


@bp.post("/events/<event_id>/redeliver")
def redeliver_event(event_id: str) -> tuple[Response, int]:
    event = service.get_event(event_id)
    spec = parse(RedeliverIn, json_object(optional=True))
    return jsonify({"deliveries": service.redeliver(event, spec.webhook_id)}), 202


@bp.get("/event-types")
def list_event_types() -> Response:
    archived = request.args.get("include_archived") in ("1", "true")
    return jsonify({"data": [present.event_type(t) for t in catalogue.list_event_types(archived)]})


@bp.post("/event-types")
def create_event_type() -> tuple[Response, int]:
    spec = catalogue.parse_event_type(json_object())
    return jsonify(present.event_type(catalogue.create_event_type(spec))), 201


@bp.delete("/event-types/<name>")
def archive_event_type(name: str) -> tuple[str, int]:
    catalogue.archive_event_type(catalogue.get_event_type(name))
    return "", 204
