"""Compatibility signatures: receivers written for in-house senders and GitHub work unchanged."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask, abort, request
from werkzeug.serving import make_server

from app.extensions import db
from app.models import Endpoint, utcnow
from tests.conftest import Api
from tests.verify import verify_both

PLAIN_SECRET = "your_webhook_secret"


class RecipeReceiver:
    """A Flask receiver exactly as the common recipe writes it, on 127.0.0.1."""

    def __init__(self, secret: str, header: str, prefix: str = "") -> None:
        self.secret = secret
        self.accepted: list[bytes] = []
        self.rejected = 0
        receiver = Flask("recipe")

        @receiver.post("/hook")
        def hook() -> tuple[str, int]:
            body = request.get_data()
            expected = prefix + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, request.headers.get(header, "")):
                self.rejected += 1
                abort(401)
            self.accepted.append(body)
            return "ok", 200

        self.server = make_server("127.0.0.1", 0, receiver, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.headers: list[dict[str, str]] = []

        @receiver.before_request
        def keep_headers() -> None:
            self.headers.append({k.lower(): v for k, v in request.headers.items()})

        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def recipe() -> Iterator[RecipeReceiver]:
    rcv = RecipeReceiver(PLAIN_SECRET, "X-Webhook-Signature")
    yield rcv
    rcv.close()


@pytest.fixture
def github() -> Iterator[RecipeReceiver]:
    rcv = RecipeReceiver(PLAIN_SECRET, "X-Hub-Signature-256", prefix="sha256=")
    yield rcv
    rcv.close()


def hex_webhook(api: Api, url: str, **signature: str) -> dict[str, Any]:
    api.event_type("user.created")
    return api.webhook(
        url,
        secret=PLAIN_SECRET,
        signature={"scheme": "hmac-sha256-hex", **signature},
    )


def test_it_is_accepted_by_the_common_recipe(
    api: Api, recipe: RecipeReceiver, deliver: Any
) -> None:
    hook = hex_webhook(api, recipe.url, header="X-Webhook-Signature", prefix="")
    assert hook["signature"] == {
        "scheme": "hmac-sha256-hex",
        "header": "X-Webhook-Signature",
        "prefix": "",
    }
    api.publish("user.created", {"id": "u1"})
    deliver()
    assert len(recipe.accepted) == 1
    assert recipe.rejected == 0
    # The Standard Webhooks headers still verify, keyed by the secret's UTF-8 bytes.
    verify_both(PLAIN_SECRET.encode(), recipe.accepted[0], recipe.headers[0])


def test_it_is_accepted_by_a_github_style_check(
    api: Api, github: RecipeReceiver, deliver: Any
) -> None:
    hook = hex_webhook(api, github.url, header="X-Hub-Signature-256", prefix="sha256=")
    api.publish("user.created")
    deliver()
    assert len(github.accepted) == 1
    test = api.post("/v1/webhooks/test", {"webhook_id": hook["id"]}).get_json()
    assert test["status"] == "success"
    assert len(github.accepted) == 2


def test_it_fails_a_receiver_holding_the_wrong_secret(
    api: Api, recipe: RecipeReceiver, deliver: Any
) -> None:
    recipe.secret = "not_the_secret_at_all"
    hook = hex_webhook(api, recipe.url)
    result = api.post(f"/v1/webhooks/{hook['id']}/activate").get_json()
    assert (result["status"], result["http_status"]) == ("failure", 401)
    assert recipe.rejected == 1


def test_it_keeps_the_old_secret_on_the_hex_header_during_a_rotation_grace(
    api: Api, recipe: RecipeReceiver, deliver: Any
) -> None:
    hook = hex_webhook(api, recipe.url)
    new_secret = "the_new_plain_secret"
    rotated = api.post(f"/v1/webhooks/{hook['id']}/secret/rotate", {"secret": new_secret})
    assert rotated.get_json() == {"secret": new_secret}

    api.publish("user.created")
    deliver()
    # The hex header still carries one value, signed with the old secret ...
    assert len(recipe.accepted) == 1
    headers = recipe.headers[-1]
    # ... while the Standard Webhooks header carries both.
    assert len(headers["webhook-signature"].split(" ")) == 2
    verify_both(PLAIN_SECRET.encode(), recipe.accepted[0], headers)
    verify_both(new_secret.encode(), recipe.accepted[0], headers)

    endpoint = db.session.get(Endpoint, hook["id"])
    assert endpoint is not None
    endpoint.previous_secret_until = utcnow() - timedelta(seconds=1)
    db.session.commit()
    # After the grace the hex header switches: a receiver holding the new secret accepts it.
    recipe.secret = new_secret
    api.publish("user.created")
    deliver()
    assert (len(recipe.accepted), recipe.rejected) == (2, 0)
    assert len(recipe.headers[-1]["webhook-signature"].split(" ")) == 1


@pytest.mark.parametrize(
    ("signature", "field"),
    [
        ({"scheme": "md5"}, "signature.scheme"),
        ({"scheme": "hmac-sha256-hex", "header": "Bad Header"}, "signature.header"),
        ({"scheme": "hmac-sha256-hex", "header": "webhook-signature"}, "signature.header"),
        ({"scheme": "hmac-sha256-hex", "header": "Herald-Attempt"}, "signature.header"),
        ({"scheme": "hmac-sha256-hex", "header": "Content-Type"}, "signature.header"),
        ({"scheme": "hmac-sha256-hex", "extra": 1}, "signature.extra"),
    ],
)
def test_it_rejects_a_bad_signature_object(api: Api, signature: dict[str, Any], field: str) -> None:
    api.event_type("user.created")
    r = api.post(
        "/v1/webhooks",
        {
            "url": "http://127.0.0.1:9/",
            "events": ["*"],
            "secret": PLAIN_SECRET,
            "signature": signature,
        },
    )
    assert r.status_code == 422
    assert field in r.get_json()["error"]["fields"]


def test_it_accepts_a_plain_secret_only_with_the_hex_scheme(api: Api) -> None:
    r = api.post(
        "/v1/webhooks", {"url": "http://127.0.0.1:9/", "events": ["*"], "secret": PLAIN_SECRET}
    )
    assert r.status_code == 422
    assert "secret" in r.get_json()["error"]["fields"]


def test_it_rejects_a_custom_header_that_collides_with_the_signature_header(api: Api) -> None:
    r = api.post(
        "/v1/webhooks",
        {
            "url": "http://127.0.0.1:9/",
            "events": ["*"],
            "secret": PLAIN_SECRET,
            "signature": {"scheme": "hmac-sha256-hex", "header": "X-Sig"},
            "headers": {"x-sig": "forged"},
        },
    )
    assert r.status_code == 422
    assert "headers" in r.get_json()["error"]["fields"]
