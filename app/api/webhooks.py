"""/v1/webhooks: thin routes over app.endpoints."""

from __future__ import annotations

from datetime import UTC

from flask import Response, jsonify, request

from app.api import bp, present
from app.api.parsing import json_object
from app.deliveries.log import list_attempts
from app.endpoints import service
from app.endpoints.schemas import Recover, Rotate, WebhookTest
from app.endpoints.testing import activate, send_test
from app.errors import parse
from app.pagination import parse_cursor, parse_limit


def _page_args() -> tuple[int, str | None]:
    return parse_limit(request.args.get("limit")), parse_cursor(request.args.get("cursor"))


@bp.post("/webhooks")
def create_webhook() -> tuple[Response, int]:
    spec = service.parse_create(json_object())
    endpoint, secret = service.create_endpoint(spec)
    return jsonify(present.webhook(endpoint, secret=secret)), 201


@bp.get("/webhooks")
def list_webhooks() -> Response:
    page = service.list_endpoints(*_page_args())
    return jsonify(
        {"data": [present.webhook(e) for e in page.items], "next_cursor": page.next_cursor}
    )


@bp.get("/webhooks/<endpoint_id>")
def get_webhook(endpoint_id: str) -> Response:
    endpoint = service.get_endpoint(endpoint_id)
    counters = service.delivery_counters(endpoint.id)
    return jsonify(present.webhook(endpoint, deliveries=counters))


@bp.patch("/webhooks/<endpoint_id>")
def patch_webhook(endpoint_id: str) -> Response:
    endpoint = service.get_endpoint(endpoint_id)
    spec = service.parse_update(json_object())
    return jsonify(present.webhook(service.update_endpoint(endpoint, spec)))


@bp.delete("/webhooks/<endpoint_id>")
def delete_webhook(endpoint_id: str) -> tuple[str, int]:
    service.delete_endpoint(service.get_endpoint(endpoint_id))
    return "", 204


@bp.get("/webhooks/<endpoint_id>/secret")
def get_secret(endpoint_id: str) -> Response:
    return jsonify({"secret": service.current_secret(service.get_endpoint(endpoint_id))})


@bp.post("/webhooks/<endpoint_id>/secret/rotate")
def rotate_secret(endpoint_id: str) -> Response:
    endpoint = service.get_endpoint(endpoint_id)
    spec = parse(Rotate, json_object(optional=True))
    return jsonify({"secret": service.rotate_secret(endpoint, spec.secret)})


@bp.post("/webhooks/<endpoint_id>/activate")
def activate_webhook(endpoint_id: str) -> Response:
    json_object(optional=True)
    return jsonify(activate(service.get_endpoint(endpoint_id)).as_json())


@bp.post("/webhooks/test")
def test_webhook() -> Response:
    spec = parse(WebhookTest, json_object())
    return jsonify(send_test(service.get_endpoint(spec.webhook_id), spec.event_type).as_json())


@bp.get("/webhooks/<endpoint_id>/attempts")
def webhook_attempts(endpoint_id: str) -> Response:
    endpoint = service.get_endpoint(endpoint_id, include_deleted=True)
    page = list_attempts(
        endpoint.id,
        *_page_args(),
        status=request.args.get("status") or None,
        event_type=request.args.get("event_type") or None,
        event_id=request.args.get("event_id") or None,
    )
    return jsonify(
        {"data": [present.attempt(a) for a in page.items], "next_cursor": page.next_cursor}
    )


@bp.post("/webhooks/<endpoint_id>/recover")
def recover_webhook(endpoint_id: str) -> tuple[Response, int]:
    endpoint = service.get_endpoint(endpoint_id)
    spec = parse(Recover, json_object())
    since = spec.since if spec.since.tzinfo else spec.since.replace(tzinfo=UTC)
    return jsonify({"recovered": service.recover(endpoint, since)}), 202
