"""Browser fixtures: Debian's chromium through Playwright, the real app on a free port, a real
worker process and a real receiver. One browser for the whole session."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

from tests.conftest import TABLES, make_app
from tests.receiver import Receiver

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


# As strict as the dashboard promises to be: no inline script or style, no eval.
STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@dataclass
class Live:
    url: str
    receiver: Receiver
    env: dict[str, str]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian chromium is not installed (make browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def live(_migrated: dict[str, str]) -> Iterator[Live]:
    """The web app served by werkzeug's threaded server, and `flask worker` in a subprocess."""
    env = dict(_migrated)
    app = make_app(env)

    @app.after_request
    def strict_csp(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", STRICT_CSP)
        return response

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    worker = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        with Receiver() as receiver:
            yield Live(f"http://127.0.0.1:{server.server_port}", receiver, env)
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=5)
        server.shutdown()
        thread.join(timeout=10)
        with app.app_context():
            from app.extensions import db

            with db.engine.begin() as conn:
                for table in TABLES:
                    conn.execute(text(f"DELETE FROM {table}"))
            broker = app.extensions["herald"].broker
            for key in broker.redis.scan_iter(f"{broker.prefix}*", count=1000):
                broker.redis.delete(key)
            db.engine.dispose()


def wait_until(check: object, timeout: float = 10.0) -> None:
    """Poll a condition (for state outside the browser, such as the receiver's requests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")
