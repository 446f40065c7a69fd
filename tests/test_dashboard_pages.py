"""The other dashboard pages (events, event types, API keys) and what every page shares:
sign-in required, no inline script or style (CSP), vendored or CDN assets with SRI."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.auth.accounts import create_owner
from app.extensions import db
from app.models import ApiKey, EventType
from tests.conftest import Api, make_app
from tests.dashboard import OWNER_EMAIL, OWNER_PASSWORD, Admin, csrf_token
from tests.receiver import Receiver, respond

PAGES = ["/webhooks", "/webhooks/new", "/events", "/event-types", "/api-keys"]


@pytest.fixture
def admin(app: Flask, client: FlaskClient) -> Admin:
    create_owner(OWNER_EMAIL, OWNER_PASSWORD)
    token = csrf_token(client)
    client.post(
        "/login", data={"email": OWNER_EMAIL, "password": OWNER_PASSWORD, "csrf_token": token}
    )
    return Admin(client)


def test_it_redirects_anonymous_visitors_from_every_page(app: Flask, client: FlaskClient) -> None:
    create_owner(OWNER_EMAIL, OWNER_PASSWORD)
    for path in [*PAGES, "/webhooks/wh_x", "/events/evt_x"]:
        r = client.get(path)
        assert r.status_code == 302, path
        assert "/login" in r.headers["Location"]


def test_it_renders_every_page_without_inline_script_or_style(admin: Admin, api: Api) -> None:
    api.event_type("user.created")
    hook = api.webhook("https://example.com/a")
    event = api.publish("user.created")
    for path in [*PAGES, f"/webhooks/{hook['id']}", f"/events/{event['id']}"]:
        r = admin.get(path)
        assert r.status_code == 200, path
        page = r.get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)", page), path
        assert " style=" not in page, path
        assert "hx-on" not in page, path
        assert '<meta name="csrf-token"' in page, path


def test_it_serves_vendored_htmx_with_sri_or_the_cdn_when_configured(
    admin: Admin, env: dict[str, str]
) -> None:
    page = admin.get("/webhooks").get_data(as_text=True)
    assert '<script src="/static/vendor/htmx-2.0.11.min.js" integrity="sha384-' in page
    assert 'src="/static/vendor/htmx-ext-sse-2.2.4.min.js" integrity="sha384-' in page
    assert admin.get("/static/vendor/htmx-2.0.11.min.js").status_code == 200
    cdn = make_app(env, HERALD_ASSETS_CDN="true")
    with cdn.test_request_context("/"):
        from flask import render_template

        html = render_template("auth/login.html", form={}, error=None)
    assert 'src="https://unpkg.com/htmx.org@2.0.11/dist/htmx.min.js" integrity="sha384-' in html


def test_it_adds_archives_and_restores_event_types(admin: Admin) -> None:
    r = admin.post("/event-types", {"name": "user.created", "description": "A user signed up"})
    assert r.status_code == 302
    r = admin.post("/event-types", {"name": "bad name!", "schema": "{not json"})
    page = r.get_data(as_text=True)
    assert r.status_code == 422
    assert 'id="et-name-error"' in page
    assert 'id="et-schema-error"' in page
    r = admin.post("/event-types", {"name": "user.created"})
    assert r.status_code == 409
    assert "already exists" in r.get_data(as_text=True)
    r = admin.post(
        "/event-types",
        {"name": "payment.failed", "schema": '{"type": "object", "required": ["amount"]}'},
    )
    assert r.status_code == 302
    assert db.session.get(EventType, "payment.failed").schema["required"] == ["amount"]

    fragment = admin.htmx_post("/event-types/user.created/archive").get_data(as_text=True)
    assert fragment.startswith('<div id="catalogue">')
    assert "Archived user.created" in fragment
    db.session.expire_all()
    assert db.session.get(EventType, "user.created").archived_at is not None
    admin.post("/event-types/user.created/restore")
    db.session.expire_all()
    assert db.session.get(EventType, "user.created").archived_at is None


def test_it_creates_a_key_shown_once_and_revokes_it(admin: Admin, client: FlaskClient) -> None:
    r = admin.post("/api-keys", {"name": "  "})
    assert r.status_code == 422
    assert 'id="key-name-error"' in r.get_data(as_text=True)
    r = admin.post("/api-keys", {"name": "billing"})
    assert r.headers["Cache-Control"] == "no-store"
    plain = re.search(r'id="new-key-value">(hk_[^<]+)<', r.get_data(as_text=True))
    assert plain
    key = plain.group(1)
    assert client.get("/v1/webhooks", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    listing = admin.get("/api-keys").get_data(as_text=True)
    assert key not in listing
    assert "billing" in listing
    row = db.session.execute(select(ApiKey)).scalar_one()
    fragment = admin.htmx_post(f"/api-keys/{row.id}/revoke").get_data(as_text=True)
    assert "Revoked billing" in fragment
    assert client.get("/v1/webhooks", headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_it_lists_filters_and_finds_events(admin: Admin, api: Api) -> None:
    api.event_type("user.created")
    api.event_type("team.created")
    first = api.publish("user.created", id="order-1")
    api.publish("team.created")
    page = admin.get("/events?type=user.created").get_data(as_text=True)
    assert first["id"] in page
    assert "team.created</code></td>" not in page
    r = admin.get(f"/events?q={first['id']}")
    assert r.status_code == 302
    assert r.headers["Location"].endswith(f"/events/{first['id']}")
    r = admin.get("/events?q=order-1", headers={"HX-Request": "true"})
    assert r.status_code == 204
    assert r.headers["HX-Location"].endswith(first["id"])
    assert "No event matches" in admin.get("/events?q=nothing-like-it").get_data(as_text=True)


def test_it_shows_an_events_deliveries_and_resends_one(
    admin: Admin, api: Api, receiver: Receiver, deliver: Any
) -> None:
    api.event_type("user.created")
    hook = api.webhook(receiver.url_for("/a"))
    receiver.behave("/a", respond(500))
    event = api.publish("user.created")
    deliver()
    page = admin.get(f"/events/{event['id']}").get_data(as_text=True)
    assert f"/webhooks/{hook['id']}" in page
    assert "failed" in page
    api.patch(f"/v1/webhooks/{hook['id']}", {"status": "active"})
    receiver.behave("/a", respond(200))
    delivery_id = re.search(r'id="delivery-(dlv_[0-9a-z]+)"', page)
    assert delivery_id
    fragment = admin.htmx_post(
        f"/events/{event['id']}/deliveries/{delivery_id.group(1)}/resend"
    ).get_data(as_text=True)
    assert "Resending to" in fragment
    deliver()
    assert "succeeded" in admin.get(f"/events/{event['id']}").get_data(as_text=True)
