"""The real worker process and the sweeper that makes Redis disposable."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from flask import Flask
from rq import SimpleWorker

from app.queue import Broker
from app.runtime import runtime
from tests.conftest import Api
from tests.receiver import Receiver

ROOT = Path(__file__).resolve().parent.parent


def worker_env(env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **env, "FLASK_APP": "wsgi"}


def run_worker(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker", *args],
        cwd=ROOT,
        env=worker_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_it_delivers_through_the_real_worker_process(
    env: dict[str, str], api: Api, receiver: Receiver
) -> None:
    api.event_type("user.created")
    api.webhook(receiver.url_for("/w"))
    for i in range(20):
        api.publish("user.created", {"i": i})

    done = run_worker(env, "--burst")

    assert done.returncode == 0, done.stderr
    assert len(receiver.wait_for(20)) == 20


def test_it_delivers_after_redis_loses_every_job(
    app: Flask, env: dict[str, str], api: Api, receiver: Receiver
) -> None:
    api.event_type("user.created")
    api.webhook(receiver.url_for("/flushed"))
    for i in range(50):
        api.publish("user.created", {"i": i})
    broker = runtime().broker
    assert broker.queue().count >= 1
    # What FLUSHALL does to Herald's keys, without touching other users of this Redis.
    for key in broker.redis.scan_iter("*", count=1000):
        if broker.prefix in key.decode() or broker.queue_name in key.decode():
            broker.redis.delete(key)
    assert broker.queue().count == 0

    done = run_worker(env, "--burst")

    assert done.returncode == 0, done.stderr
    assert len(receiver.wait_for(50)) == 50


def test_it_delivers_when_the_process_dies_between_commit_and_enqueue(
    env: dict[str, str], api: Api, receiver: Receiver
) -> None:
    api.event_type("user.created")
    api.webhook(receiver.url_for("/crash"))
    # The commit happens, the wake-up never does (as if the web process died right there).
    with mock.patch.object(Broker, "request_drain", return_value=False):
        api.publish("user.created")

    # A long-running worker's sweeper finds the owed delivery on its own.
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker"],
        cwd=ROOT,
        env=worker_env(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert len(receiver.wait_for(1, timeout=30)) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_it_keeps_working_when_a_job_fails(
    app: Flask, env: dict[str, str], api: Api, receiver: Receiver, monkeypatch: Any
) -> None:
    api.event_type("user.created")
    api.webhook(receiver.url_for("/after"))
    api.publish("user.created")
    # A bad job in the queue (e.g. from an older version) must not stop the worker.
    runtime().broker.queue().enqueue("app.deliveries.jobs.no_such_job")

    done = run_worker(env, "--burst")

    assert done.returncode == 0, done.stderr
    assert len(receiver.wait_for(1)) == 1


@pytest.mark.parametrize("name", ["HERALD_TIMEOUT", "HERALD_RETRY_SCHEDULE", "DATABASE_URL"])
def test_it_refuses_to_start_with_a_bad_setting(env: dict[str, str], name: str) -> None:
    bad = {"HERALD_TIMEOUT": "soon", "HERALD_RETRY_SCHEDULE": "1,x", "DATABASE_URL": "mysql://x"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--burst"],
        cwd=ROOT,
        env={**worker_env(env), name: bad[name]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert name in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 60


def test_it_waits_for_jobs_quietly_past_the_redis_read_timeout(env: dict[str, str]) -> None:
    # RQ blocks for minutes waiting for a job; the app's 5 s read timeout must not cut that
    # wait short and have the worker report Redis as down every few seconds.
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker"],
        cwd=ROOT,
        env=worker_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(8)
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=20)
    assert "Listening on" in output
    assert "could not connect to Redis" not in output


def test_a_redis_outage_in_rqs_upkeep_does_not_end_the_worker(app: Flask) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    from app.cli import _FreshSessionWorker

    broker = runtime().broker
    worker = _FreshSessionWorker([broker.queue()], connection=broker.redis)
    outage = RedisConnectionError("Connection closed by server.")
    # RQ's work loop quits on whatever these raise; they must swallow an outage instead.
    with mock.patch.object(SimpleWorker, "clean_registries", side_effect=outage):
        worker.run_maintenance_tasks()
    with mock.patch("rq.worker.base.is_suspended", side_effect=outage):
        worker.check_for_suspension(burst=False)
