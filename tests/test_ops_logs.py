"""Structured logs: one JSON object a line, ids on delivery lines, never a secret."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app.logs import JsonFormatter, TextFormatter, scrub
from tests.conftest import Api
from tests.receiver import Receiver, respond

ROOT = Path(__file__).resolve().parent.parent


def records_as_json(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    formatter = JsonFormatter()
    return [json.loads(formatter.format(record)) for record in caplog.records]


def test_it_logs_each_attempt_with_the_event_delivery_and_webhook_ids(
    app: Flask, api: Api, receiver: Receiver, deliver: Any, caplog: pytest.LogCaptureFixture
) -> None:
    api.event_type("user.created")
    webhook = api.webhook(receiver.url_for("/hook"), ["user.created"])
    receiver.behave("/hook", respond(503), respond(200))
    event = api.publish("user.created", {"email": "ada@example.com"})
    caplog.set_level(logging.INFO, logger="herald.delivery")
    deliver()

    lines = [r for r in records_as_json(caplog) if r.get("event") == "delivery_attempt"]
    assert [line["attempt"] for line in lines] == [1, 2]
    first, second = lines
    assert first["level"] == "warning"
    assert first["outcome"] == "failure"
    assert first["http_status"] == 503
    assert first["delivery_status"] == "pending"
    assert second["level"] == "info"
    assert second["outcome"] == "success"
    for line in lines:
        assert line["event_id"] == event["id"]
        assert line["webhook_id"] == webhook["id"]
        assert line["delivery_id"].startswith("dlv_")
        assert line["attempt_id"].startswith("att_")
        assert isinstance(line["duration_ms"], int)
    dumped = json.dumps(lines)
    assert webhook["secret"] not in dumped
    assert webhook["secret"].removeprefix("whsec_") not in dumped
    assert "ada@example.com" not in dumped  # payloads stay out of the logs
    assert "webhook-signature" not in dumped


def test_it_never_writes_a_secret_whatever_a_caller_logs() -> None:
    log = logging.getLogger("herald.test")
    record = log.makeRecord(
        "herald.test",
        logging.INFO,
        __file__,
        1,
        "rotated to %s for key %s, header Authorization: Bearer %s, sig v1,%s",
        ("whsec_c2VjcmV0c2VjcmV0c2VjcmV0", "hk_abcdefghijklmnop", "hk_zzzzzzzzzzzz", "A" * 44),
        None,
        extra={"secret": "whsec_xyz", "api_key": "hk_1234567890", "webhook_id": "wh_1"},
    )
    for formatter in (JsonFormatter(), TextFormatter()):
        line = formatter.format(record)
        assert "c2VjcmV0" not in line
        assert "abcdefghijklmnop" not in line
        assert "zzzzzzzzzzzz" not in line
        assert "A" * 44 not in line
        assert "whsec_xyz" not in line
        assert "1234567890" not in line
        assert "wh_1" in line
    data = json.loads(JsonFormatter().format(record))
    assert data["secret"] == "[redacted]"
    assert data["webhook_id"] == "wh_1"


def test_it_scrubs_bearer_tokens_in_any_case() -> None:
    assert scrub("authorization: bearer abc.def") == "authorization: bearer [redacted]"


def test_it_writes_one_json_object_a_line_from_a_real_worker(
    app: Flask, env: dict[str, str], api: Api, receiver: Receiver
) -> None:
    api.event_type("user.created")
    webhook = api.webhook(receiver.url_for("/hook"), ["user.created"])
    event = api.publish("user.created")
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--burst"],
        cwd=ROOT,
        env={**os.environ, **env, "HERALD_LOG_FORMAT": "json"},
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines
    parsed = [json.loads(line) for line in lines]  # every line is one JSON object
    attempts = [p for p in parsed if p.get("event") == "delivery_attempt"]
    assert len(attempts) == 1
    assert attempts[0]["event_id"] == event["id"]
    assert attempts[0]["webhook_id"] == webhook["id"]
    assert webhook["secret"] not in done.stderr + done.stdout


def test_it_refuses_an_unknown_log_format(env: dict[str, str]) -> None:
    from app.config import ConfigError
    from tests.conftest import make_app

    with pytest.raises(ConfigError, match="HERALD_LOG_FORMAT"):
        make_app(env, HERALD_LOG_FORMAT="xml")


def test_it_logs_a_test_send_but_leaves_it_out_of_the_metrics(
    app: Flask, api: Api, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    webhook = api.webhook(receiver.url_for("/hook"), status="pending")
    caplog.set_level(logging.INFO, logger="herald.delivery")
    r = api.post(f"/v1/webhooks/{webhook['id']}/activate")
    assert r.get_json()["status"] == "success"
    lines = [r for r in records_as_json(caplog) if r.get("event") == "delivery_attempt"]
    assert len(lines) == 1
    assert lines[0]["trigger"] == "test"
    assert lines[0]["webhook_id"] == webhook["id"]
    metrics = api.client.get("/metrics").get_data(as_text=True)
    assert 'herald_attempts_total{outcome="success"} 0.0' in metrics
