"""/v1/webhooks: create, list, get, patch, delete, secrets, attempts, recover, and their errors."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import Api
from tests.receiver import Receiver, respond

URL = "https://example.com/hook"


def error_of(response: Any, status: int) -> dict[str, Any]:
    """The error object of a response that must be API.md's JSON error with ``status``."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    error: dict[str, Any] = response.get_json()["error"]
    assert isinstance(error["code"], str)
    assert isinstance(error["message"], str)
    return error


def test_it_creates_a_webhook_with_a_generated_secret(api: Api) -> None:
    api.event_type("user.created")
    r = api.post(
        "/v1/webhooks",
        {"url": URL, "events": ["user.created"], "description": "CRM", "rate_limit": 5},
    )
    assert r.status_code == 201
    hook = r.get_json()
    assert hook["id"].startswith("wh_")
    assert hook["secret"].startswith("whsec_")
    assert (hook["url"], hook["events"], hook["description"]) == (URL, ["user.created"], "CRM")
    assert (hook["status"], hook["disabled_reason"], hook["rate_limit"]) == ("active", None, 5)
    assert hook["headers"] == {}
    assert hook["created_at"].endswith("Z")


def test_it_keeps_a_secret_given_in_the_whsec_form(api: Api) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    hook = api.webhook(URL, secret=secret)
    assert hook["secret"] == secret
    assert api.get(f"/v1/webhooks/{hook['id']}/secret").get_json() == {"secret": secret}


def test_it_lists_newest_first_with_a_cursor_and_no_secrets(api: Api) -> None:
    made = [api.webhook(f"{URL}/{i}")["id"] for i in range(5)]
    first = api.get("/v1/webhooks?limit=2").get_json()
    assert [h["id"] for h in first["data"]] == made[::-1][:2]
    assert all("secret" not in h for h in first["data"])
    second = api.get(f"/v1/webhooks?limit=2&cursor={first['next_cursor']}").get_json()
    third = api.get(f"/v1/webhooks?limit=2&cursor={second['next_cursor']}").get_json()
    seen = [h["id"] for page in (first, second, third) for h in page["data"]]
    assert seen == made[::-1]
    assert third["next_cursor"] is None


def test_it_gets_a_webhook_with_its_counters(api: Api) -> None:
    hook = api.webhook(URL)
    got = api.get(f"/v1/webhooks/{hook['id']}").get_json()
    assert got["deliveries"] == {"succeeded": 0, "failed": 0, "pending": 0}
    assert "secret" not in got


def test_it_patches_only_the_fields_given(api: Api) -> None:
    api.event_type("a.b")
    hook = api.webhook(URL, ["a.b"], description="before")
    r = api.patch(f"/v1/webhooks/{hook['id']}", {"description": "after", "headers": {"X-A": "1"}})
    assert r.status_code == 200
    got = r.get_json()
    assert (got["description"], got["headers"], got["events"], got["url"]) == (
        "after",
        {"X-A": "1"},
        ["a.b"],
        URL,
    )
    disabled = api.patch(f"/v1/webhooks/{hook['id']}", {"status": "disabled"}).get_json()
    assert disabled["status"] == "disabled"


def test_it_deletes_a_webhook_and_cancels_its_pending_deliveries(api: Api) -> None:
    api.event_type("user.created")
    hook = api.webhook("http://127.0.0.1:9/")
    event = api.publish("user.created")
    assert api.delete(f"/v1/webhooks/{hook['id']}").status_code == 204
    error_of(api.get(f"/v1/webhooks/{hook['id']}"), 404)
    [delivery] = api.get(f"/v1/events/{event['id']}").get_json()["deliveries"]
    assert delivery["status"] == "cancelled"
    # Its log stays readable.
    assert api.get(f"/v1/webhooks/{hook['id']}/attempts").status_code == 200
    assert api.publish("user.created")["deliveries"] == 0


def test_it_rotates_the_secret(api: Api) -> None:
    hook = api.webhook(URL)
    new = api.post(f"/v1/webhooks/{hook['id']}/secret/rotate").get_json()["secret"]
    assert new.startswith("whsec_")
    assert new != hook["secret"]
    assert api.get(f"/v1/webhooks/{hook['id']}/secret").get_json() == {"secret": new}


def test_it_filters_and_pages_the_attempt_log(api: Api, receiver: Receiver, deliver: Any) -> None:
    api.event_type("user.created")
    api.event_type("team.deleted")
    receiver.behave("/log", respond(200), respond(500), respond(200))
    hook = api.webhook(receiver.url_for("/log"))
    first = api.publish("user.created")
    deliver()
    api.publish("team.deleted")
    deliver(idle=1.0)  # the failure, then its immediate retry (schedule 0 in tests)
    path = f"/v1/webhooks/{hook['id']}/attempts"
    everything = api.get(path).get_json()["data"]
    assert [(a["status"], a["event_type"]) for a in everything] == [
        ("success", "team.deleted"),
        ("failure", "team.deleted"),
        ("success", "user.created"),
    ]
    assert everything[1]["http_status"] == 500
    assert [a["attempt"] for a in everything] == [2, 1, 1]
    failures = api.get(f"{path}?status=failure").get_json()["data"]
    assert [a["event_type"] for a in failures] == ["team.deleted"]
    by_type = api.get(f"{path}?event_type=user.created").get_json()["data"]
    assert [a["event_id"] for a in by_type] == [first["id"]]
    by_event = api.get(f"{path}?event_id={first['id']}").get_json()["data"]
    assert len(by_event) == 1
    page = api.get(f"{path}?limit=2").get_json()
    rest = api.get(f"{path}?limit=2&cursor={page['next_cursor']}").get_json()
    assert [a["id"] for a in page["data"] + rest["data"]] == [a["id"] for a in everything]


def test_it_recovers_failed_deliveries_since_a_time(
    api: Api, receiver: Receiver, deliver: Any
) -> None:
    api.event_type("user.created")
    receiver.behave("/rec", respond(500), respond(500), respond(500), respond(500), respond(500))
    hook = api.webhook(receiver.url_for("/rec"))
    event = api.publish("user.created")
    deliver()
    assert api.get(f"/v1/webhooks/{hook['id']}").get_json()["status"] == "disabled"
    receiver.behave("/rec", respond(200))
    api.patch(f"/v1/webhooks/{hook['id']}", {"status": "active"})

    r = api.post(f"/v1/webhooks/{hook['id']}/recover", {"since": "2020-01-01T00:00:00Z"})
    assert r.status_code == 202
    assert r.get_json() == {"recovered": 1}
    deliver()
    [delivery] = api.get(f"/v1/events/{event['id']}").get_json()["deliveries"]
    assert delivery["status"] == "succeeded"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": ["*"]}, "url"),
        ({"url": "ftp://example.com/", "events": ["*"]}, "url"),
        ({"url": "not a url", "events": ["*"]}, "url"),
        ({"url": "http://example.com:99999/", "events": ["*"]}, "url"),
        ({"url": URL}, "events"),
        ({"url": URL, "events": []}, "events"),
        ({"url": URL, "events": "user.created"}, "events"),
        ({"url": URL, "events": ["bad type!"]}, "events.0"),
        ({"url": URL, "events": ["never.declared"]}, "events"),
        ({"url": URL, "events": ["*"], "secret": "whsec_short"}, "secret"),
        ({"url": URL, "events": ["*"], "headers": {"webhook-id": "x"}}, "headers"),
        ({"url": URL, "events": ["*"], "headers": {"X-A": "a\r\nb"}}, "headers"),
        ({"url": URL, "events": ["*"], "rate_limit": 0}, "rate_limit"),
        ({"url": URL, "events": ["*"], "rate_limit": "5"}, "rate_limit"),
        ({"url": URL, "events": ["*"], "status": "disabled"}, "status"),
        ({"url": URL, "events": ["*"], "colour": "red"}, "colour"),
        ({"url": 5, "events": ["*"]}, "url"),
    ],
)
def test_it_rejects_an_invalid_webhook(api: Api, body: dict[str, Any], field: str) -> None:
    error = error_of(api.post("/v1/webhooks", body), 422)
    assert error["code"] == "validation_error"
    assert field in error["fields"], error
    assert api.get("/v1/webhooks").get_json()["data"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "gopher://x/"}, "url"),
        ({"status": "gone"}, "status"),
        ({"events": []}, "events"),
        ({"secret": "whsec_x"}, "secret"),
    ],
)
def test_it_rejects_an_invalid_change(api: Api, body: dict[str, Any], field: str) -> None:
    hook = api.webhook(URL)
    error = error_of(api.patch(f"/v1/webhooks/{hook['id']}", body), 422)
    assert field in error["fields"]
    assert api.get(f"/v1/webhooks/{hook['id']}").get_json()["url"] == URL


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/v1/webhooks/wh_nope", None),
        ("patch", "/v1/webhooks/wh_nope", {"description": "x"}),
        ("delete", "/v1/webhooks/wh_nope", None),
        ("get", "/v1/webhooks/wh_nope/secret", None),
        ("post", "/v1/webhooks/wh_nope/secret/rotate", None),
        ("post", "/v1/webhooks/wh_nope/activate", None),
        ("get", "/v1/webhooks/wh_nope/attempts", None),
        ("post", "/v1/webhooks/wh_nope/recover", {"since": "2026-01-01T00:00:00Z"}),
        ("post", "/v1/webhooks/test", {"webhook_id": "wh_nope"}),
        ("get", "/v1/no-such-route", None),
    ],
)
def test_it_answers_404_in_json_for_unknown_ids(
    api: Api, method: str, path: str, body: Any
) -> None:
    kwargs = {"json": body} if body is not None else {}
    error = error_of(getattr(api, method)(path, **kwargs), 404)
    assert error["code"] == "not_found"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/recover", {"since": "yesterday"}, "since"),
        ("/recover", {}, "since"),
        ("/secret/rotate", {"secret": 5}, "secret"),
    ],
)
def test_it_validates_webhook_actions(api: Api, path: str, body: Any, field: str) -> None:
    hook = api.webhook(URL)
    error = error_of(api.post(f"/v1/webhooks/{hook['id']}{path}", body), 422)
    assert field in error["fields"]


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("limit=251", "limit"), ("limit=x", "limit"), ("cursor=zz", "cursor")],
)
def test_it_validates_paging(api: Api, query: str, field: str) -> None:
    error = error_of(api.get(f"/v1/webhooks?{query}"), 422)
    assert field in error["fields"]


def test_it_validates_the_test_send(api: Api) -> None:
    error = error_of(api.post("/v1/webhooks/test", {"event_type": "x"}), 422)
    assert "webhook_id" in error["fields"]


def test_it_needs_a_valid_api_key(client: FlaskClient, api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        error = error_of(client.get("/v1/webhooks", headers=headers), 401)
        assert error["code"] == "unauthorized"


def test_it_answers_400_415_and_413_in_json(api: Api, client: FlaskClient) -> None:
    auth = {"Authorization": f"Bearer {api.key}"}
    bad_json = client.post(
        "/v1/webhooks", data="{not json", headers={**auth, "Content-Type": "application/json"}
    )
    assert error_of(bad_json, 400)["code"] == "bad_request"
    not_json = client.post(
        "/v1/webhooks", data="url=x", headers={**auth, "Content-Type": "text/plain"}
    )
    assert error_of(not_json, 415)["code"] == "unsupported_media_type"
    array = api.post("/v1/webhooks", [1, 2])
    assert "body" in error_of(array, 422)["fields"]
    huge = client.post(
        "/v1/webhooks",
        data=b'{"url": "' + b"x" * (2 * 1024 * 1024) + b'"}',
        headers={**auth, "Content-Type": "application/json"},
    )
    assert error_of(huge, 413)["code"] == "payload_too_large"


def test_it_serves_an_openapi_document_of_every_route(client: FlaskClient) -> None:
    doc = client.get("/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    assert {"/v1/webhooks", "/v1/events", "/v1/events/batch", "/v1/event-types"} <= set(
        doc["paths"]
    )
    create = doc["components"]["schemas"]["WebhookCreate"]
    assert set(create["required"]) == {"url", "events"}
