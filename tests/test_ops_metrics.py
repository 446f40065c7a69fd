"""GET /metrics: Prometheus text, counted in Redis so every process sees every worker's work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Api, make_app
from tests.receiver import Receiver, respond

ROOT = Path(__file__).resolve().parent.parent


def scrape(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.mimetype == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(r.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_it_counts_attempts_by_outcome_with_their_durations(
    app: Flask, client: FlaskClient, api: Api, receiver: Receiver, deliver: Any
) -> None:
    api.event_type("user.created")
    api.webhook(receiver.url_for("/ok"), ["user.created"])
    api.webhook(receiver.url_for("/down"), ["user.created"])
    receiver.behave("/down", respond(500))
    api.publish("user.created")
    # The tests' retry schedule is 0,0,0,0: the failing delivery uses all 5 attempts at once.
    assert deliver() == 6

    samples = scrape(client)
    assert value(samples, "herald_attempts_total", outcome="success") == 1
    assert value(samples, "herald_attempts_total", outcome="failure") == 5
    assert value(samples, "herald_deliveries_total", outcome="succeeded") == 1
    assert value(samples, "herald_deliveries_total", outcome="retrying") == 4
    assert value(samples, "herald_deliveries_total", outcome="failed") == 1
    assert value(samples, "herald_attempt_duration_seconds_count") == 6
    assert value(samples, "herald_attempt_duration_seconds_bucket", le="+Inf") == 6
    assert value(samples, "herald_attempt_duration_seconds_bucket", le="30.0") == 6
    # Used up, the failing webhook was disabled.
    assert value(samples, "herald_webhooks_disabled") == 1
    assert value(samples, "herald_attempt_duration_seconds_sum") >= 0


def test_it_reports_the_queue_and_the_oldest_due_delivery(
    app: Flask, client: FlaskClient, api: Api, receiver: Receiver
) -> None:
    api.event_type("user.created")
    api.webhook(receiver.url_for("/ok"), ["user.created"])
    samples = scrape(client)
    assert value(samples, "herald_deliveries_due") == 0
    assert value(samples, "herald_oldest_due_delivery_age_seconds") == 0

    api.publish("user.created")
    api.publish("user.created")
    samples = scrape(client)
    assert value(samples, "herald_deliveries_due") == 2
    assert value(samples, "herald_deliveries_pending") == 2
    assert value(samples, "herald_oldest_due_delivery_age_seconds") > 0
    assert value(samples, "herald_rq_queue_length") >= 1


def test_it_reports_disabled_webhooks(app: Flask, client: FlaskClient, api: Api) -> None:
    first = api.webhook("http://127.0.0.1:9/a")
    api.webhook("http://127.0.0.1:9/b")
    assert api.patch(f"/v1/webhooks/{first['id']}", {"status": "disabled"}).status_code == 200
    samples = scrape(client)
    assert value(samples, "herald_webhooks_disabled") == 1
    assert value(samples, "herald_webhooks", status="active") == 1
    assert value(samples, "herald_webhooks", status="disabled") == 1


def test_it_counts_what_other_processes_delivered(
    app: Flask, env: dict[str, str], client: FlaskClient, api: Api, receiver: Receiver
) -> None:
    """A worker process delivers; a second web app instance (another gunicorn worker) sees it."""
    api.event_type("user.created")
    api.webhook(receiver.url_for("/ok"), ["user.created"])
    for _ in range(3):
        api.publish("user.created")
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--burst"],
        cwd=ROOT,
        env={**os.environ, **env, "HERALD_LOG_FORMAT": "json"},
        check=True,
        timeout=60,
        capture_output=True,
    )
    assert len(receiver.wait_for(3)) == 3
    other = make_app(env)
    samples = scrape(other.test_client())
    assert value(samples, "herald_attempts_total", outcome="success") == 3
    assert value(samples, "herald_deliveries_total", outcome="succeeded") == 3


def test_it_starts_from_zero_with_no_traffic(app: Flask, client: FlaskClient) -> None:
    samples = scrape(client)
    assert value(samples, "herald_attempts_total", outcome="success") == 0
    assert value(samples, "herald_attempt_duration_seconds_count") == 0
    assert value(samples, "herald_workers_alive") == 0
