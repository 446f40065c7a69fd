"""The webhook pages through Flask's test client: list, create, the webhook page and its actions."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.auth.accounts import create_owner
from app.deliveries.engine import attempt as send_once
from app.deliveries.engine import claim_due, defer_due, record, resume
from app.deliveries.retry import RetryPolicy
from app.endpoints import service
from app.extensions import db
from app.models import Attempt, Delivery, Endpoint, utcnow
from app.runtime import runtime
from tests.conftest import Api
from tests.dashboard import OWNER_EMAIL, OWNER_PASSWORD, Admin, csrf_token
from tests.receiver import Receiver, respond


@pytest.fixture
def admin(app: Flask, client: FlaskClient) -> Admin:
    create_owner(OWNER_EMAIL, OWNER_PASSWORD)
    token = csrf_token(client)
    r = client.post(
        "/login", data={"email": OWNER_EMAIL, "password": OWNER_PASSWORD, "csrf_token": token}
    )
    assert r.status_code == 302
    return Admin(client)


@pytest.fixture
def catalogue(api: Api) -> None:
    for name in ("user.created", "user.deleted", "team.created", "payment.failed"):
        api.event_type(name, description=f"when {name}")


def endpoint(endpoint_id: str) -> Endpoint:
    db.session.expire_all()
    row = db.session.get(Endpoint, endpoint_id)
    assert row is not None
    return row


def created_id(response: Any) -> str:
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    match = re.search(r"/webhooks/(wh_[0-9a-z]+)$", response.headers["Location"])
    assert match
    return match.group(1)


def test_it_shows_an_empty_list_with_a_way_to_start(admin: Admin) -> None:
    page = admin.get("/webhooks").get_data(as_text=True)
    assert "No webhooks yet" in page
    assert 'href="/webhooks/new"' in page


def test_it_groups_event_types_by_prefix_on_the_create_page(admin: Admin, catalogue: None) -> None:
    page = admin.get("/webhooks/new").get_data(as_text=True)
    assert page.index("payment.*") < page.index("team.*") < page.index("user.*")
    assert 'value="user.deleted"' in page
    assert 'value="*"' in page


def test_it_creates_a_pending_webhook_from_the_form(
    admin: Admin, catalogue: None, receiver: Receiver
) -> None:
    r = admin.post(
        "/webhooks",
        {
            "url": receiver.url_for("/hook"),
            "description": "Billing",
            "events": ["user.created", "team.created"],
            "headers": "X-Tenant: acme\n\nX-Env: prod",
            "scheme": "standard",
        },
    )
    hook = endpoint(created_id(r))
    assert hook.status == "pending"
    assert hook.events == ["team.created", "user.created"]
    assert hook.headers == {"X-Tenant": "acme", "X-Env": "prod"}
    assert hook.description == "Billing"
    assert service.current_secret(hook).startswith("whsec_")


def test_it_shows_validation_errors_beside_the_fields(admin: Admin, catalogue: None) -> None:
    r = admin.post(
        "/webhooks",
        {"url": "ftp://example.com", "description": "kept", "headers": "no colon here"},
    )
    assert r.status_code == 422
    page = r.get_data(as_text=True)
    assert 'id="headers-error"' in page
    assert "Name: value" in page
    assert 'value="kept"' in page  # what was typed stays
    r = admin.post("/webhooks", {"url": "ftp://example.com", "events": ["user.created"]})
    page = r.get_data(as_text=True)
    assert r.status_code == 422
    assert 'id="url-error"' in page
    assert "http or https URL" in page
    r = admin.post("/webhooks", {"url": "https://example.com/x"})
    page = r.get_data(as_text=True)
    assert 'id="events-error"' in page
    assert "at least one event type" in page
    assert db.session.execute(select(Endpoint)).first() is None


def test_it_creates_a_github_style_webhook_with_a_plain_secret(
    admin: Admin, catalogue: None
) -> None:
    r = admin.post(
        "/webhooks",
        {
            "url": "https://example.com/gh",
            "events": ["*"],
            "scheme": "hmac-sha256-hex",
            "signature_header": "X-Hub-Signature-256",
            "signature_prefix": "sha256=",
            "secret": "your_webhook_secret",
        },
    )
    hook = endpoint(created_id(r))
    assert hook.events == ["*"]
    assert hook.signature == {
        "scheme": "hmac-sha256-hex",
        "header": "X-Hub-Signature-256",
        "prefix": "sha256=",
    }
    assert service.current_secret(hook) == "your_webhook_secret"
    page = admin.get(f"/webhooks/{hook.id}").get_data(as_text=True)
    assert "X-Hub-Signature-256: sha256=&lt;hex&gt;" in page


def test_it_refuses_a_signature_header_herald_sets_itself(admin: Admin) -> None:
    r = admin.post(
        "/webhooks",
        {
            "url": "https://example.com/gh",
            "events": ["*"],
            "scheme": "hmac-sha256-hex",
            "signature_header": "webhook-signature",
        },
    )
    assert r.status_code == 422
    page = r.get_data(as_text=True)
    assert 'id="signature_header-error"' in page
    assert "set by Herald" in page


def test_it_shows_the_webhook_page_with_its_secret_hidden(admin: Admin, api: Api) -> None:
    hook = api.webhook("https://example.com/a", description="Orders")
    r = admin.get(f"/webhooks/{hook['id']}")
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "no-store"
    page = r.get_data(as_text=True)
    assert f'<code class="secret-value" id="wh-secret" hidden>{hook["secret"]}</code>' in page
    assert 'data-reveal-target="#wh-secret"' in page
    assert 'data-copy-target="#wh-secret"' in page
    assert "No attempts yet" in page
    assert f'sse-connect="/webhooks/{hook["id"]}/stream?after=att_' in page


def test_it_says_when_a_worker_holds_the_webhooks_deliveries_back(admin: Admin, api: Api) -> None:
    hook = api.webhook("https://example.com/a")
    assert 'id="held-callout"' not in admin.get(f"/webhooks/{hook['id']}").get_data(as_text=True)

    until = utcnow() + timedelta(seconds=30)
    defer_due(hook["id"], until)  # as a worker does when its breaker opens
    page = admin.get(f"/webhooks/{hook['id']}").get_data(as_text=True)
    assert 'id="held-callout"' in page
    assert until.strftime("%Y-%m-%d %H:%M:%S UTC") in page

    resume(hook["id"], until)  # its first 2xx
    assert 'id="held-callout"' not in admin.get(f"/webhooks/{hook['id']}").get_data(as_text=True)


def test_it_lists_webhooks_with_status_rate_and_last_delivery(
    admin: Admin, api: Api, receiver: Receiver, deliver: Any
) -> None:
    api.event_type("user.created")
    good = api.webhook(receiver.url_for("/ok"), ["user.created"], description="Good one")
    bad = api.webhook(receiver.url_for("/bad"), ["user.created"])
    receiver.behave("/bad", respond(500))
    api.publish("user.created")
    deliver()
    page = admin.get("/webhooks").get_data(as_text=True)
    good_row = page[page.index(f'id="webhook-{good["id"]}"') :]
    assert "Good one" in good_row
    assert "badge-active" in good_row
    assert ">100%<" in good_row.split("</tr>")[0]
    assert '<time class="relative"' in good_row.split("</tr>")[0]
    bad_row = page[page.index(f'id="webhook-{bad["id"]}"') :].split("</tr>")[0]
    assert "badge-disabled" in bad_row
    assert "failed all 5 attempts" in bad_row
    assert ">0.0%<" in bad_row


def test_it_activates_a_pending_webhook_inline(admin: Admin, api: Api, receiver: Receiver) -> None:
    hook = api.webhook(receiver.url_for("/a"), status="pending")
    receiver.behave("/a", respond(200, b'{"ok": true}'))
    r = admin.htmx_post(f"/webhooks/{hook['id']}/activate")
    page = r.get_data(as_text=True)
    assert r.status_code == 200
    assert "<html" not in page  # a fragment
    assert "HTTP 200" in page
    assert "now active" in page
    assert "{&#34;ok&#34;: true}" in page
    assert 'id="wh-status" hx-swap-oob="true">active<' in page
    assert '<div class="page-actions" id="wh-actions" hx-swap-oob="true">' in page
    assert endpoint(hook["id"]).status == "active"
    [req] = receiver.wait_for(1)
    assert json.loads(req.body)["live_mode"] is False


def test_it_keeps_a_webhook_pending_when_activation_fails(
    admin: Admin, api: Api, receiver: Receiver
) -> None:
    hook = api.webhook(receiver.url_for("/a"), status="pending")
    receiver.behave("/a", respond(503, b"down for maintenance"))
    page = admin.htmx_post(f"/webhooks/{hook['id']}/activate").get_data(as_text=True)
    assert "HTTP 503" in page
    assert "stays pending" in page
    assert "down for maintenance" in page
    assert endpoint(hook["id"]).status == "pending"
    dead = api.webhook("http://127.0.0.1:9/nothing", status="pending")
    page = admin.htmx_post(f"/webhooks/{dead['id']}/activate").get_data(as_text=True)
    assert "No response" in page


def test_it_sends_a_test_event_of_a_chosen_type(
    admin: Admin, api: Api, receiver: Receiver, catalogue: None
) -> None:
    hook = api.webhook(receiver.url_for("/a"))
    page = admin.htmx_post(
        f"/webhooks/{hook['id']}/test", {"event_type": "payment.failed"}
    ).get_data(as_text=True)
    assert "Success" in page
    [req] = receiver.wait_for(1)
    assert json.loads(req.body)["type"] == "payment.failed"
    assert (
        admin.htmx_post(f"/webhooks/{hook['id']}/test", {"event_type": "nope"}).status_code == 400
    )


def test_it_works_without_javascript_too(admin: Admin, api: Api, receiver: Receiver) -> None:
    hook = api.webhook(receiver.url_for("/a"), status="pending")
    r = admin.post(f"/webhooks/{hook['id']}/activate")
    assert r.status_code == 302
    page = admin.get(r.headers["Location"]).get_data(as_text=True)
    assert "Activated" in page
    assert "HTTP 200" in page


def test_it_refuses_an_htmx_post_without_the_csrf_header(admin: Admin, api: Api) -> None:
    hook = api.webhook("https://example.com/a", status="pending")
    r = admin.client.post(f"/webhooks/{hook['id']}/activate", headers={"HX-Request": "true"})
    assert r.status_code == 400
    assert endpoint(hook["id"]).status == "pending"


def test_it_rotates_the_secret_with_a_grace_period(admin: Admin, api: Api) -> None:
    hook = api.webhook("https://example.com/a")
    r = admin.post(f"/webhooks/{hook['id']}/secret/rotate")
    assert r.status_code == 302
    row = endpoint(hook["id"])
    assert service.current_secret(row) != hook["secret"]
    assert row.previous_secret_until is not None
    page = admin.get(f"/webhooks/{hook['id']}").get_data(as_text=True)
    assert "New signing secret in place" in page
    assert "previous secret still signs too" in page


def test_it_edits_a_webhook_and_its_signature_scheme(
    admin: Admin, api: Api, catalogue: None
) -> None:
    hook = api.webhook("https://example.com/a", ["user.created"])
    r = admin.post(
        f"/webhooks/{hook['id']}",
        {
            "url": "https://example.com/b",
            "description": "moved",
            "events": ["user.deleted", "team.created"],
            "headers": "X-A: 1",
            "scheme": "hmac-sha256-hex",
            "signature_header": "X-Webhook-Signature",
            "signature_prefix": "",
        },
    )
    assert r.status_code == 302
    row = endpoint(hook["id"])
    assert (row.url, row.description, row.headers) == (
        "https://example.com/b",
        "moved",
        {"X-A": "1"},
    )
    assert row.events == ["team.created", "user.deleted"]
    assert row.signature["scheme"] == "hmac-sha256-hex"
    r = admin.post(f"/webhooks/{hook['id']}", {"url": "nope", "events": ["*"]})
    assert r.status_code == 422
    page = r.get_data(as_text=True)
    assert 'id="url-error"' in page
    assert "Not saved" in page
    assert endpoint(hook["id"]).url == "https://example.com/b"


def test_it_disables_enables_and_deletes(admin: Admin, api: Api) -> None:
    hook = api.webhook("https://example.com/a")
    admin.post(f"/webhooks/{hook['id']}/status", {"status": "disabled"})
    row = endpoint(hook["id"])
    assert (row.status, row.disabled_reason) == ("disabled", "Disabled from the dashboard")
    admin.post(f"/webhooks/{hook['id']}/status", {"status": "active"})
    assert endpoint(hook["id"]).status == "active"
    assert admin.post(f"/webhooks/{hook['id']}/status", {"status": "bogus"}).status_code == 400
    r = admin.post(f"/webhooks/{hook['id']}/delete")
    assert r.status_code == 302
    assert r.headers["Location"] == "/webhooks"
    assert endpoint(hook["id"]).deleted_at is not None
    assert admin.get(f"/webhooks/{hook['id']}").status_code == 404


def test_it_filters_and_pages_the_attempt_log(
    admin: Admin, api: Api, receiver: Receiver, deliver: Any
) -> None:
    api.event_type("user.created")
    api.event_type("team.created")
    hook = api.webhook(receiver.url_for("/a"))
    for n in range(30):
        api.publish("user.created" if n % 2 else "team.created", {"n": n})
    deliver()
    url = f"/webhooks/{hook['id']}"
    partial = admin.get(url, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert partial.startswith('<div id="attempt-log"')
    assert partial.count('class="attempt ') == 25
    older = re.search(r'href="([^"]*cursor=att_[0-9a-z]+)"', partial)
    assert older
    rest = admin.get(older.group(1).replace("&amp;", "&"), headers={"HX-Request": "true"})
    assert rest.get_data(as_text=True).count('class="attempt ') == 5
    assert "sse-connect" not in rest.get_data(as_text=True)  # older pages are not live
    only = admin.get(f"{url}?event_type=team.created", headers={"HX-Request": "true"})
    assert only.get_data(as_text=True).count("<code>team.created</code>") == 15
    assert "<code>user.created</code>" not in only.get_data(as_text=True)
    full = admin.get(f"{url}?status=failure").get_data(as_text=True)  # a full page works too
    assert "<html" in full
    assert "No attempts match these filters" in full


def test_it_shows_an_attempts_detail_and_resends_it(
    admin: Admin, api: Api, receiver: Receiver, deliver: Any
) -> None:
    api.event_type("user.created")
    hook = api.webhook(receiver.url_for("/a"))
    receiver.behave("/a", respond(422, b'{"error": "bad customer"}', {"X-Why": "test"}))
    event = api.publish("user.created", {"id": "u1"})
    deliver()
    first = db.session.execute(select(Attempt).order_by(Attempt.id)).scalars().first()
    assert first is not None
    page = admin.get(f"/webhooks/{hook['id']}/attempts/{first.id}").get_data(as_text=True)
    assert "webhook-signature" in page
    assert "herald-attempt" in page
    assert '<span class="json-key">&#34;id&#34;</span>' in page  # pretty-printed body
    assert "bad customer" in page
    assert "x-why" in page.lower()
    assert event["id"] in page
    receiver.behave("/a", respond(200))
    api.patch(f"/v1/webhooks/{hook['id']}", {"status": "active"})  # it failed all 5 attempts
    r = admin.post(f"/webhooks/{hook['id']}/deliveries/{first.delivery_id}/resend")
    assert r.status_code == 302
    deliver()
    db.session.expire_all()
    delivery = db.session.get(Delivery, first.delivery_id)
    assert delivery is not None
    assert delivery.status == "succeeded"
    other = api.webhook(receiver.url_for("/b"))
    assert admin.get(f"/webhooks/{other['id']}/attempts/{first.id}").status_code == 404


def test_it_tells_when_a_failing_delivery_retries_next(
    app: Flask, admin: Admin, api: Api, receiver: Receiver, deliver: Any
) -> None:
    api.event_type("user.created")
    hook = api.webhook(receiver.url_for("/a"))
    receiver.behave("/a", respond(500))
    api.publish("user.created")
    # The tests' schedule retries at once; record this failure with a 5 minute delay instead.
    rt = runtime()
    [send] = claim_due(rt.box, 10, 10, 60)
    record([send_once(rt.transport, send)], RetryPolicy((300, 600)))
    att = db.session.execute(select(Attempt)).scalars().one()
    page = admin.get(f"/webhooks/{hook['id']}/attempts/{att.id}").get_data(as_text=True)
    retry = page[page.index('id="next-retry"') :].split("</dd>")[0]
    assert '<time class="relative"' in retry


def test_it_recovers_failed_deliveries(
    admin: Admin, api: Api, receiver: Receiver, deliver: Any
) -> None:
    api.event_type("user.created")
    hook = api.webhook(receiver.url_for("/a"))
    receiver.behave("/a", respond(500))
    api.publish("user.created")
    deliver()
    api.patch(f"/v1/webhooks/{hook['id']}", {"status": "active"})
    receiver.behave("/a", respond(200))
    r = admin.post(f"/webhooks/{hook['id']}/recover", {"hours": "24"})
    assert r.status_code == 302
    assert "Queued 1 failed delivery" in admin.get(r.headers["Location"]).get_data(as_text=True)
    deliver()
    assert db.session.execute(select(Delivery.status)).scalar_one() == "succeeded"
    assert admin.post(f"/webhooks/{hook['id']}/recover", {"hours": "5"}).status_code == 400


def test_it_draws_the_hourly_health_chart(
    admin: Admin, api: Api, receiver: Receiver, deliver: Any
) -> None:
    api.event_type("user.created")
    hook = api.webhook(receiver.url_for("/a"))
    receiver.behave("/a", respond(200), respond(200), respond(500))
    for _ in range(3):
        api.publish("user.created")
    deliver()
    page = admin.get(f"/webhooks/{hook['id']}").get_data(as_text=True)
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert svg.count('class="bar-group"') == 24
    assert 'class="bar-success"' in svg
    assert 'class="bar-failure"' in svg
    assert "UTC · 2 succeeded, " in svg


def test_it_streams_new_attempts_as_server_sent_events(
    app: Flask, admin: Admin, api: Api, receiver: Receiver
) -> None:
    app.config["HERALD_SSE_HEARTBEAT"] = 0.2
    hook = api.webhook(receiver.url_for("/a"))
    r = admin.get(f"/webhooks/{hook['id']}/stream", buffered=False)
    assert r.status_code == 200
    assert r.mimetype == "text/event-stream"
    assert r.headers["X-Accel-Buffering"] == "no"
    chunks = (c.decode() if isinstance(c, bytes) else c for c in r.response)
    assert next(chunks).startswith(": connected")
    assert next(chunks) == ": heartbeat\n\n"
    result = api.post("/v1/webhooks/test", {"webhook_id": hook["id"]}).get_json()
    for _ in range(20):
        chunk = next(chunks)
        if chunk.startswith("id: "):
            break
    lines = chunk.split("\n")
    assert lines[0] == f"id: {result['attempt_id']}"
    assert lines[1] == "event: attempt"
    assert lines[2].startswith(f'data: <tr id="attempt-{result["attempt_id"]}"')
    assert lines[3:] == ["", ""]  # the whole row on one data line
    assert "is-new" in lines[2]
    broker = runtime().broker
    channel = broker.channel(hook["id"])
    assert broker.redis.pubsub_numsub(channel) == [(channel.encode(), 1)]
    r.close()  # the client went away: the stream ends and leaves the channel
    assert broker.redis.pubsub_numsub(channel) == [(channel.encode(), 0)]


def test_it_replays_attempts_made_between_the_page_and_its_stream(
    app: Flask, admin: Admin, api: Api, receiver: Receiver
) -> None:
    app.config["HERALD_SSE_HEARTBEAT"] = 0.2
    hook = api.webhook(receiver.url_for("/a"))
    page = admin.get(f"/webhooks/{hook['id']}").get_data(as_text=True)
    found = re.search(r'sse-connect="([^"]+)"', page)
    assert found
    stream_url = found.group(1).replace("&amp;", "&")
    made = [
        api.post("/v1/webhooks/test", {"webhook_id": hook["id"]}).get_json()["attempt_id"]
        for _ in range(2)
    ]
    r = admin.get(stream_url, buffered=False)
    chunks = (c.decode() if isinstance(c, bytes) else c for c in r.response)
    assert next(chunks).startswith(": connected")
    replayed = [next(chunks).split("\n")[0] for _ in range(2)]
    assert replayed == [f"id: {made[0]}", f"id: {made[1]}"]  # oldest first, newest ends on top
    r.close()
    filtered = admin.get(
        f"/webhooks/{hook['id']}/stream?status=failure&after={made[0][:-16]}0000000000000000",
        buffered=False,
    )
    chunks = (c.decode() if isinstance(c, bytes) else c for c in filtered.response)
    assert next(chunks).startswith(": connected")
    assert next(chunks) == ": heartbeat\n\n"  # both succeeded: nothing for this filter
    filtered.close()
