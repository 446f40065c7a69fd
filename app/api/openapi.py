"""The OpenAPI 3.1 document of /v1, built from the same pydantic models that validate."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from pydantic import BaseModel

from app.api import bp
from app.endpoints.schemas import Recover, Rotate, WebhookCreate, WebhookTest, WebhookUpdate
from app.events.schemas import EventBatchIn, EventIn, EventTypeIn, RedeliverIn
from app.version import __version__

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }
    },
}
OBJ = {"type": "object"}
PAGE = {
    "type": "object",
    "required": ["data", "next_cursor"],
    "properties": {
        "data": {"type": "array", "items": OBJ},
        "next_cursor": {"type": ["string", "null"]},
    },
}


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(ref_template="#/components/schemas/{model}", by_alias=True)


def _body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    return {
        "required": required,
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
        },
    }


def _op(
    summary: str,
    ok: int,
    ok_schema: dict[str, Any] | None,
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if ok_schema is None:
        responses[str(ok)] = {"description": "done"}
    else:
        responses[str(ok)] = {
            "description": "ok",
            "content": {"application/json": {"schema": ok_schema}},
        }
    for status in ("400", "401", "404", "409", "413", "415", "422", "429"):
        responses[status] = {
            "description": "error",
            "content": {"application/json": {"schema": ERROR}},
        }
    op: dict[str, Any] = {"summary": summary, "responses": responses, "security": [{"bearer": []}]}
    if body:
        op["requestBody"] = body
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


PAGING = [
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 250}),
    _query("cursor", {"type": "string"}),
]


def document() -> dict[str, Any]:
    models: list[type[BaseModel]] = [
        WebhookCreate,
        WebhookUpdate,
        WebhookTest,
        Recover,
        Rotate,
        EventIn,
        EventBatchIn,
        EventTypeIn,
        RedeliverIn,
    ]
    schemas: dict[str, Any] = {}
    for model in models:
        schema = _schema(model)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    wid = [_path_param("webhook_id")]
    attempts_q = [
        *wid,
        *PAGING,
        _query("status", {"enum": ["success", "failure"]}),
        _query("event_type", {"type": "string"}),
        _query("event_id", {"type": "string"}),
    ]
    paths = {
        "/v1/webhooks": {
            "post": _op("Create a webhook", 201, OBJ, _body(WebhookCreate)),
            "get": _op("List webhooks", 200, PAGE, params=PAGING),
        },
        "/v1/webhooks/test": {"post": _op("Send a test event", 200, OBJ, _body(WebhookTest))},
        "/v1/webhooks/{webhook_id}": {
            "get": _op("Get a webhook with its delivery counters", 200, OBJ, params=wid),
            "patch": _op("Change a webhook", 200, OBJ, _body(WebhookUpdate), wid),
            "delete": _op("Delete a webhook", 204, None, params=wid),
        },
        "/v1/webhooks/{webhook_id}/secret": {
            "get": _op("Get the signing secret", 200, OBJ, params=wid)
        },
        "/v1/webhooks/{webhook_id}/secret/rotate": {
            "post": _op("Rotate the signing secret", 200, OBJ, _body(Rotate, False), wid)
        },
        "/v1/webhooks/{webhook_id}/activate": {
            "post": _op("Activate with a test event", 200, OBJ, params=wid)
        },
        "/v1/webhooks/{webhook_id}/attempts": {
            "get": _op("The attempt log", 200, PAGE, params=attempts_q)
        },
        "/v1/webhooks/{webhook_id}/recover": {
            "post": _op("Queue failed deliveries again", 202, OBJ, _body(Recover), wid)
        },
        "/v1/events": {
            "post": _op("Publish an event", 202, OBJ, _body(EventIn)),
            "get": _op(
                "List events", 200, PAGE, params=[*PAGING, _query("type", {"type": "string"})]
            ),
        },
        "/v1/events/batch": {
            "post": _op("Publish up to 500 events", 202, OBJ, _body(EventBatchIn))
        },
        "/v1/events/{event_id}": {
            "get": _op("An event and its deliveries", 200, OBJ, params=[_path_param("event_id")])
        },
        "/v1/events/{event_id}/redeliver": {
            "post": _op(
                "Queue an event again",
                202,
                OBJ,
                _body(RedeliverIn, False),
                [_path_param("event_id")],
            )
        },
        "/v1/event-types": {
            "get": _op("The event-type catalogue", 200, OBJ),
            "post": _op("Add an event type", 201, OBJ, _body(EventTypeIn)),
        },
        "/v1/event-types/{name}": {
            "delete": _op("Archive an event type", 204, None, params=[_path_param("name")])
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Herald", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(document())
