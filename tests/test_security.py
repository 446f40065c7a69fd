"""Security headers on every response, request-size limits and rate limits (API and sign-in)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from app.config import ConfigError
from app.extensions import db
from tests.conftest import Api, make_app


def assert_secure(headers: Any) -> None:
    csp = headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"


@pytest.mark.parametrize(
    "path",
    ["/v1/webhooks", "/v1/openapi.json", "/v1/nowhere", "/healthz", "/static/favicon.svg", "/x"],
)
def test_it_sends_security_headers_on_every_response(api: Api, path: str) -> None:
    response = api.get(path)
    assert_secure(response.headers)


def test_it_sends_security_headers_on_errors_and_unauthenticated_calls(api: Api) -> None:
    assert_secure(api.client.get("/v1/webhooks").headers)  # 401
    assert_secure(api.post("/v1/webhooks", {"url": 1}).headers)  # 422


def test_it_allows_the_cdn_origin_only_when_the_cdn_is_on(env: dict[str, str]) -> None:
    cdn = make_app(env, HERALD_ASSETS_CDN="true")
    csp = cdn.test_client().get("/healthz").headers["Content-Security-Policy"]
    assert "script-src 'self' https://unpkg.com;" in csp
    assert "style-src 'self';" in csp


def test_it_marks_production_for_https_only(env: dict[str, str]) -> None:
    prod = make_app(env, HERALD_ENV="production")
    assert prod.config["SESSION_COOKIE_SECURE"] is True
    assert prod.config["SESSION_COOKIE_HTTPONLY"] is True
    assert "max-age" in prod.test_client().get("/healthz").headers["Strict-Transport-Security"]


def test_it_answers_413_in_the_api_shape_for_a_body_over_the_limit(api: Api) -> None:
    body = json.dumps({"type": "user.created", "data": {"blob": "x" * (1024 * 1024)}})
    r = api.client.post(
        "/v1/events",
        data=body,
        headers={"Authorization": f"Bearer {api.key}", "Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert r.get_json() == {
        "error": {"code": "payload_too_large", "message": "request body too large"}
    }


def test_it_takes_the_body_limit_from_the_environment(env: dict[str, str], api_key: str) -> None:
    small = make_app(env, HERALD_MAX_BODY_BYTES="2048")
    with small.app_context():
        r = small.test_client().post(
            "/v1/events",
            data=json.dumps({"type": "a.b", "data": {"x": "y" * 3000}}),
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        )
        db.session.remove()
    assert r.status_code == 413
    assert r.get_json()["error"]["code"] == "payload_too_large"


@pytest.fixture
def limited(app: Flask, env: dict[str, str]) -> Iterator[Flask]:
    """An app with small limits (``app`` is asked for so its teardown empties the tables)."""
    from app.cli import create_user

    limited = make_app(
        env, HERALD_API_RATE_LIMIT="3 per minute", HERALD_LOGIN_RATE_LIMIT="2/minute"
    )
    limited.config["WTF_CSRF_ENABLED"] = False
    if "auth.login" not in limited.view_functions:  # the sign-in form is its own feature
        limited.add_url_rule(
            "/login", "auth.login", lambda: ("wrong password", 200), methods=["GET", "POST"]
        )
    with limited.app_context():
        create_user("admin@example.com", "the-right-password")  # so a sign-in is judged
        yield limited
        db.session.remove()


def test_it_rate_limits_the_api_per_key(limited: Flask, api_key: str) -> None:
    from app.apikeys import create_api_key

    other_key = create_api_key("other")[1]
    client = limited.test_client()
    mine = {"Authorization": f"Bearer {api_key}"}
    # One allowance per key across all routes of the API.
    paths = ["/v1/webhooks", "/v1/events", "/v1/event-types", "/v1/webhooks"]
    answers = [client.get(path, headers=mine) for path in paths]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    refused = answers[-1]
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert set(refused.get_json()) == {"error"}
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert_secure(refused.headers)
    # Another key has its own allowance.
    other = client.get("/v1/webhooks", headers={"Authorization": f"Bearer {other_key}"})
    assert other.status_code == 200


def test_it_rate_limits_failed_sign_ins_per_address(limited: Flask) -> None:
    client = limited.test_client()
    form = {"email": "admin@example.com", "password": "wrong-password"}
    first = client.post("/login", data=form, environ_base={"REMOTE_ADDR": "203.0.113.7"})
    second = client.post("/login", data=form, environ_base={"REMOTE_ADDR": "203.0.113.7"})
    third = client.post("/login", data=form, environ_base={"REMOTE_ADDR": "203.0.113.7"})
    elsewhere = client.post("/login", data=form, environ_base={"REMOTE_ADDR": "203.0.113.8"})

    assert first.status_code != 429
    assert second.status_code != 429
    assert third.status_code == 429
    assert int(third.headers["Retry-After"]) >= 1
    assert elsewhere.status_code != 429
    # Reading the form is never limited.
    assert client.get("/login", environ_base={"REMOTE_ADDR": "203.0.113.7"}).status_code != 429


@pytest.mark.parametrize("value", ["lots", "10 per fortnight"])
def test_it_refuses_a_bad_rate_limit_setting(env: dict[str, str], value: str) -> None:
    with pytest.raises(ConfigError, match="HERALD_API_RATE_LIMIT"):
        make_app(env, HERALD_API_RATE_LIMIT=value)
