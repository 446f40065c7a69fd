"""Fuzz every /v1 operation from its own OpenAPI document with schemathesis (valid and invalid
input, bounded in examples): never a 500, and every error in API.md's JSON shape."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis

# Imported now, at collection, rather than lazily deep inside a fixture: CPython 3.11 can
# fail pytest's assertion rewriting of it with "AST constructor recursion depth mismatch".
import schemathesis.specs.openapi.schemas
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from app.api.openapi import document
from tests.conftest import Api
from tests.receiver import Receiver

OPERATIONS = sorted(
    (path, method.upper()) for path, item in document()["paths"].items() for method in item
)


@dataclass
class Known:
    """Real things the fuzzer may aim at, so calls get past "unknown id"."""

    webhook_id: str
    event_id: str
    url: str


@pytest.fixture
def known(api: Api, receiver: Receiver) -> Known:
    api.event_type("user.created")
    url = receiver.url_for("/fuzz")
    hook = api.webhook(url, ["user.created"])
    event = api.publish("user.created", {"id": "1"})
    return Known(hook["id"], event["id"], url)


@pytest.fixture
def v1_schema(app: Flask, known: Known) -> Any:
    return schemathesis.openapi.from_wsgi("/v1/openapi.json", app)


def aim(case: Any, known: Known) -> None:
    """Point a generated case at real ids, a known event type and a reachable URL."""
    params = case.path_parameters or {}
    if "webhook_id" in params:
        params["webhook_id"] = known.webhook_id
    if "event_id" in params:
        params["event_id"] = known.event_id
    if "name" in params:
        params["name"] = "user.created"
    body = case.body
    if isinstance(body, dict):
        if "type" in body:
            body["type"] = "user.created"
        events = body.get("events")
        if isinstance(events, list) and events and all(isinstance(e, dict) for e in events):
            for event in events:  # a batch
                event["type"] = "user.created"
        elif isinstance(events, list):
            body["events"] = ["user.created"]  # a webhook's subscriptions
        if "url" in body:
            body["url"] = known.url
        if "webhook_id" in body:
            body["webhook_id"] = known.webhook_id


def api_error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every error is {"error": {"code", "message"[, "fields"]}}, as API.md says."""
    if response.status_code < 400:
        return None
    body = json.loads(response.content)
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error.get("code"), str), body
    assert isinstance(error.get("message"), str), body
    assert set(error) <= {"code", "message", "fields"}, body
    fields = error.get("fields", {})
    assert isinstance(fields, dict), body
    assert all(isinstance(v, str) for v in fields.values()), body
    if response.status_code == 429:
        assert "Retry-After" in response.headers
    return True


def no_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    assert response.status_code < 500, (response.status_code, response.content[:500])
    return True


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_it_never_answers_500_and_always_in_the_error_shape(
    v1_schema: Any, known: Known, api_key: str, path: str, method: str, mode: GenerationMode
) -> None:
    operation = v1_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode), aimed=st.booleans())
    @settings(
        max_examples=15,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Any, aimed: bool) -> None:
        if aimed:
            aim(case, known)
        case.call_and_validate(
            headers={"Authorization": f"Bearer {api_key}"},
            checks=[
                no_server_error,
                api_error_shape,
                # And every answer is one the OpenAPI document declares.
                schemathesis.checks.status_code_conformance,
                schemathesis.checks.content_type_conformance,
                schemathesis.checks.response_schema_conformance,
            ],
        )

    fuzz()
