"""/v1/events and /v1/event-types: publish, batches, idempotency, schemas, redeliver, errors."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api
from tests.receiver import Receiver
from tests.test_api_webhooks import error_of
from tests.verify import verify_both

SCHEMA = {
    "type": "object",
    "required": ["id"],
    "properties": {"id": {"type": "string"}},
}


@pytest.fixture
def types(api: Api) -> None:
    api.event_type("user.created", description="A user signed up", schema=SCHEMA)
    api.event_type("team.deleted")


def test_it_lists_and_creates_event_types(api: Api, types: None) -> None:
    listed = api.get("/v1/event-types").get_json()["data"]
    by_name = {t["name"]: t for t in listed}
    assert by_name["user.created"]["description"] == "A user signed up"
    assert by_name["user.created"]["schema"] == SCHEMA
    assert by_name["team.deleted"]["schema"] is None
    error = error_of(api.post("/v1/event-types", {"name": "team.deleted"}), 409)
    assert error["code"] == "conflict"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": "has space"}, "name"),
        ({"name": "x.y", "schema": {"type": "nonsense"}}, "schema"),
        ({"name": "x.y", "schema": "string"}, "schema"),
        ({"name": "x.y", "description": 7}, "description"),
    ],
)
def test_it_rejects_an_invalid_event_type(api: Api, body: dict[str, Any], field: str) -> None:
    assert field in error_of(api.post("/v1/event-types", body), 422)["fields"]


def test_it_archives_an_event_type(api: Api, types: None) -> None:
    assert api.delete("/v1/event-types/team.deleted").status_code == 204
    names = [t["name"] for t in api.get("/v1/event-types").get_json()["data"]]
    assert names == ["user.created"]
    error = error_of(api.post("/v1/events", {"type": "team.deleted", "data": {}}), 422)
    assert "type" in error["fields"]
    error_of(api.delete("/v1/event-types/no.such"), 404)


def test_it_publishes_and_reads_back_an_event(api: Api, types: None) -> None:
    api.webhook("https://example.com/a", ["user.created"])
    r = api.post(
        "/v1/events",
        {"type": "user.created", "data": {"id": "u1"}, "previous_data": {"id": "u0"}},
    )
    assert r.status_code == 202
    published = r.get_json()
    assert published["id"].startswith("evt_")
    assert (published["type"], published["deliveries"]) == ("user.created", 1)
    got = api.get(f"/v1/events/{published['id']}").get_json()
    assert (got["data"], got["previous_data"], got["live_mode"]) == (
        {"id": "u1"},
        {"id": "u0"},
        True,
    )
    [delivery] = got["deliveries"]
    assert (delivery["status"], delivery["attempts"]) == ("pending", 0)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"data": {"id": "1"}}, "type"),
        ({"type": "user.created"}, "data"),
        ({"type": "user.created", "data": [1]}, "data"),
        ({"type": "user.created", "data": {"id": 5}}, "data"),
        ({"type": "user.created", "data": {}}, "data"),
        ({"type": "no.such", "data": {}}, "type"),
        ({"type": "user.created", "data": {"id": "1"}, "previous_data": 3}, "previous_data"),
        ({"type": "user.created", "data": {"id": "1"}, "extra": True}, "extra"),
        ({"type": "user.created", "data": {"id": "1"}, "coalesce_key": ""}, "coalesce_key"),
    ],
)
def test_it_rejects_an_invalid_event(
    api: Api, types: None, body: dict[str, Any], field: str
) -> None:
    assert field in error_of(api.post("/v1/events", body), 422)["fields"]
    assert api.get("/v1/events").get_json()["data"] == []


def test_it_publishes_a_batch_all_or_nothing(api: Api, types: None) -> None:
    api.webhook("https://example.com/a")
    good = {"type": "team.deleted", "data": {}}
    bad = {"type": "user.created", "data": {"no": "id"}}
    error = error_of(api.post("/v1/events/batch", {"events": [good, bad]}), 422)
    assert "events.1.data" in error["fields"]
    assert api.get("/v1/events").get_json()["data"] == []

    r = api.post("/v1/events/batch", {"events": [good, good]})
    assert r.status_code == 202
    assert [e["deliveries"] for e in r.get_json()["data"]] == [1, 1]
    assert len(api.get("/v1/events").get_json()["data"]) == 2


@pytest.mark.parametrize(
    "body", [{"events": []}, {"events": [{"type": "team.deleted", "data": {}}] * 501}, {}]
)
def test_it_bounds_a_batch(api: Api, types: None, body: dict[str, Any]) -> None:
    assert "events" in error_of(api.post("/v1/events/batch", body), 422)["fields"]


def test_it_answers_a_repeated_idempotency_key_with_the_first_result(api: Api, types: None) -> None:
    api.webhook("https://example.com/a")
    body = {"type": "team.deleted", "data": {"n": 1}}
    headers = {"Idempotency-Key": "order-42"}
    first = api.post("/v1/events", body, headers=headers)
    again = api.post("/v1/events", body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.get_json() == again.get_json()
    assert len(api.get("/v1/events").get_json()["data"]) == 1

    other = api.post("/v1/events", {**body, "data": {"n": 2}}, headers=headers)
    assert error_of(other, 409)["code"] == "conflict"
    assert len(api.get("/v1/events").get_json()["data"]) == 1


def test_it_deduplicates_on_the_producer_id(api: Api, types: None) -> None:
    body = {"type": "team.deleted", "data": {"n": 1}, "id": "producer-7"}
    first = api.post("/v1/events", body).get_json()
    assert api.post("/v1/events", body).get_json()["id"] == first["id"]
    error_of(api.post("/v1/events", {**body, "data": {"n": 9}}), 409)
    repeated = {"events": [body, body]}
    assert "events.1.id" in error_of(api.post("/v1/events/batch", repeated), 422)["fields"]


def test_it_lists_events_newest_first_by_type_with_a_cursor(api: Api, types: None) -> None:
    ids = [
        api.publish("team.deleted" if i % 2 else "user.created", {"id": str(i)})["id"]
        for i in range(5)
    ]
    page = api.get("/v1/events?limit=2").get_json()
    rest = api.get(f"/v1/events?limit=10&cursor={page['next_cursor']}").get_json()
    assert [e["id"] for e in page["data"] + rest["data"]] == ids[::-1]
    assert rest["next_cursor"] is None
    teams = api.get("/v1/events?type=team.deleted").get_json()["data"]
    assert [e["id"] for e in teams] == [ids[3], ids[1]]
    error_of(api.get("/v1/events/evt_nope"), 404)
    error_of(api.post("/v1/events/evt_nope/redeliver"), 404)


def test_it_redelivers_to_every_webhook_or_one(
    api: Api, types: None, receiver: Receiver, deliver: Any
) -> None:
    a = api.webhook(receiver.url_for("/a"))
    api.webhook(receiver.url_for("/b"))
    event = api.publish("team.deleted")
    deliver()
    assert len(receiver.wait_for(2)) == 2

    everywhere = api.post(f"/v1/events/{event['id']}/redeliver")
    assert (everywhere.status_code, everywhere.get_json()) == (202, {"deliveries": 2})
    deliver()
    one = api.post(f"/v1/events/{event['id']}/redeliver", {"webhook_id": a["id"]})
    assert one.get_json() == {"deliveries": 1}
    deliver()

    reqs = receiver.wait_for(5)
    assert sorted(r.path for r in reqs) == ["/a", "/a", "/a", "/b", "/b"]
    assert {r.headers["webhook-id"] for r in reqs} == {event["id"]}
    for req in receiver.requests_for("/a"):
        verify_both(a["secret"], req.body, req.headers)
    error = error_of(api.post(f"/v1/events/{event['id']}/redeliver", {"webhook_id": 3}), 422)
    assert "webhook_id" in error["fields"]
