"""gunicorn with the shipped deploy/gunicorn.conf.py: an open live-log stream does not hold up
other requests (one worker, so only the threads the config gives it can serve them)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask

from app.auth.accounts import create_owner
from app.endpoints import service

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def gunicorn(app: Flask, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "deploy/gunicorn.conf.py",
            "wsgi:app",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--graceful-timeout",
            "1",
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                requests.get(f"{url}/login", timeout=5)
                break
            except requests.RequestException:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def test_it_serves_pages_while_a_live_log_stream_is_open(app: Flask, gunicorn: str) -> None:
    create_owner("owner@example.com", "long enough")
    hook, _ = service.create_endpoint(
        service.parse_create({"url": "https://example.com/a", "events": ["*"]})
    )
    browser = requests.Session()
    token = re.search(r'name="csrf-token" content="([^"]+)"', browser.get(f"{gunicorn}/login").text)
    assert token
    signed_in = browser.post(
        f"{gunicorn}/login",
        data={"email": "owner@example.com", "password": "long enough", "csrf_token": token[1]},
        timeout=10,
    )
    assert signed_in.url.endswith("/webhooks")
    streams = [
        browser.get(f"{gunicorn}/webhooks/{hook.id}/stream", stream=True, timeout=10)
        for _ in range(2)
    ]
    try:
        for stream in streams:
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            assert stream.headers["X-Accel-Buffering"] == "no"
            assert next(stream.iter_lines()).startswith(b": connected")
        page = browser.get(f"{gunicorn}/webhooks", timeout=5)
        assert page.status_code == 200
        assert hook.id in page.text
    finally:
        for stream in streams:
            stream.close()
