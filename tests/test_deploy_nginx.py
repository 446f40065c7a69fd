"""The real deployment, end to end: nginx with the shipped site, gunicorn with the shipped
configuration, a worker from the shipped systemd unit, PostgreSQL (when DATABASE_URL says so,
else SQLite) and Redis. Then, through nginx only: sign in, create a webhook, publish an
event, receive the signed delivery, and watch its attempt arrive on the live log stream.

nginx runs as it ships except for what a loopback test must change: ports, paths, and TLS
(turned off: the certificate lines are dropped and `listen 443 ssl` becomes a loopback port).
The proxy, buffering, body-size and static rules are the shipped ones, byte for byte.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
import requests
from cryptography.fernet import Fernet
from standardwebhooks.webhooks import Webhook

from app.queue import start_embedded_redis
from tests.receiver import Receiver

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
VENV_BIN = ROOT / ".venv" / "bin"
EMAIL = "ops@example.com"
PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|name="csrf-token" content="([^"]+)"')


def _nginx() -> str:
    """nginx from Debian's packages: installed here when missing and we are root (as in CI)."""
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip("nginx is missing; install it with `sudo apt-get install -y nginx`")
    subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=300)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "nginx"],
        check=True,
        timeout=600,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    return "/usr/sbin/nginx"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def exec_start(unit: str) -> list[str]:
    """The shipped unit's ExecStart, with the install path /srv/herald made this checkout."""
    text = (DEPLOY / "systemd" / unit).read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("ExecStart="))
    return [part.replace("/srv/herald", str(ROOT)) for part in shlex.split(line[10:])]


def render_site(tmp: Path, port: int, redirect_port: int, upstream: str) -> Path:
    """The shipped site and its locations, with loopback ports, local paths and TLS off."""
    locations = (DEPLOY / "nginx" / "herald-locations.conf").read_text()
    shipped_locations = locations
    locations = locations.replace("/srv/herald/static/", f"{ROOT}/static/")
    (tmp / "herald-locations.conf").write_text(locations)

    site_lines = []
    for line in (DEPLOY / "nginx" / "herald.conf").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith(("ssl_", "listen [::]", "add_header Strict-Transport-Security")):
            continue  # TLS (and IPv6) off for the loopback test
        line = line.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{port};")
        line = line.replace("listen 80;", f"listen 127.0.0.1:{redirect_port};")
        line = line.replace("server 127.0.0.1:8000;", f"server {upstream};")
        line = line.replace(
            "/etc/nginx/snippets/herald-locations.conf", str(tmp / "herald-locations.conf")
        )
        line = line.replace("/var/www/html", str(tmp))
        site_lines.append(line)
    site = "\n".join(site_lines) + "\n"
    assert "ssl" not in re.sub(r"#.*", "", site)
    assert f"listen 127.0.0.1:{port};" in site
    assert f"server {upstream};" in site
    # The rules under test are the shipped ones: only the static files' path differs.
    changed = [
        (a, b)
        for a, b in zip(shipped_locations.splitlines(), locations.splitlines(), strict=True)
        if a != b
    ]
    assert changed == [("    alias /srv/herald/static/;", f"    alias {ROOT}/static/;")]
    (tmp / "herald-site.conf").write_text(site)

    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"""{user}daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log info;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {tmp}/nginx-access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    # As eager to compress as a site could be: the stream's own rule must still win.
    gzip on;
    gzip_types text/css application/json text/event-stream;
    gzip_min_length 1;
    include {tmp}/herald-site.conf;
}}
"""
    )
    return conf


@dataclass
class Deployment:
    tmp: Path
    env: dict[str, str]
    base: str = ""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    api_key: str = ""

    def flask(self, *args: str) -> str:
        done = subprocess.run(
            [str(VENV_BIN / "flask"), "--app", "wsgi", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def spawn(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 (the child keeps its copy)
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # its own group: stopped with everything it forks
            )
        finally:
            log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_until(self, what: str, check: Any, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                assert proc.poll() is None, f"{name} exited:\n{self.log(name)[-3000:]}"
            with contextlib.suppress(requests.RequestException):
                result = check()
                if result:
                    return result
            time.sleep(0.2)
        logs = "\n".join(f"--- {n}\n{self.log(n)[-1500:]}" for n in self.procs)
        raise AssertionError(f"{what} did not happen within {timeout} s\n{logs}")

    def stop(self) -> None:
        for name in ("nginx", "worker", "web"):
            proc = self.procs.get(name)
            if proc is None:
                continue
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    nginx = _nginx()
    token = secrets.token_hex(4)
    database = os.environ.get("DATABASE_URL", "")
    schema = None
    if database.startswith(("postgres://", "postgresql://")):
        schema = f"herald_e2e_{token}"
        plain = "postgresql://" + database.split("://", 1)[1]
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}".encode())
        sep = "&" if "?" in database else "?"
        database_url = f"{database}{sep}options=-csearch_path%3D{schema}"
    else:
        database_url = f"sqlite:///{tmp_path / 'herald.db'}"
    redis_url = os.environ.get("REDIS_URL") or start_embedded_redis(tmp_path / "redis")
    prefix = f"e2e{token}"
    web_port = free_port()
    env = {
        **os.environ,
        "HERALD_ENV": "test",  # production would send session cookies over HTTPS only
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "HERALD_REDIS_PREFIX": prefix,
        "SECRET_KEY": secrets.token_urlsafe(32),
        "HERALD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "HERALD_ALLOW_NETWORKS": "127.0.0.0/8",
        "HERALD_PROXY_FIX": "1",
        "HERALD_LOG_FORMAT": "json",
        "HERALD_SWEEP_INTERVAL": "0.2",
        "HERALD_BIND": f"127.0.0.1:{web_port}",
        "WEB_CONCURRENCY": "2",
        "HERALD_WEB_THREADS": "8",
        "HERALD_WEB_GRACEFUL_TIMEOUT": "3",
        "PYTHONUNBUFFERED": "1",
    }
    dep = Deployment(tmp_path, env)
    try:
        dep.flask("db", "upgrade")
        dep.flask("users", "create", EMAIL, "--password", PASSWORD)
        dep.api_key = dep.flask("keys", "create", "e2e").strip().splitlines()[-1].strip()
        dep.spawn("web", exec_start("herald-web.service"))
        dep.spawn("worker", exec_start("herald-worker@.service"))
        port = free_port()
        conf = render_site(tmp_path, port, free_port(), f"127.0.0.1:{web_port}")
        checked = subprocess.run(
            [nginx, "-t", "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "e.log")],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert checked.returncode == 0, checked.stderr
        dep.spawn(
            "nginx", [nginx, "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "e.log")]
        )
        dep.base = f"http://127.0.0.1:{port}"
        yield dep
    finally:
        dep.stop()
        conn = redis.Redis.from_url(redis_url)
        for key in conn.scan_iter(f"*{prefix}*", count=1000):
            conn.delete(key)
        if not os.environ.get("REDIS_URL"):
            conn.shutdown(nosave=True)
        if schema:
            plain = "postgresql://" + database.split("://", 1)[1]
            with psycopg.connect(plain, autocommit=True) as pg:
                pg.execute(f"DROP SCHEMA {schema} CASCADE".encode())


def csrf_token(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1) or match.group(2)


class StreamReader:
    """Reads an SSE response line by line on a thread, so the test can wait with a timeout."""

    def __init__(self, response: requests.Response) -> None:
        self.response = response
        response.encoding = "utf-8"  # SSE is UTF-8 by definition
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for line in self.response.iter_lines(chunk_size=1, decode_unicode=True):
                self.lines.put(line)
        except (requests.RequestException, OSError, ValueError, AttributeError):
            pass
        finally:
            self.lines.put(None)  # the stream ended

    def next_matching(self, pattern: str, timeout: float) -> list[str]:
        """Lines up to and including the first that starts with ``pattern``."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"the stream ended; lines so far: {seen}")
            seen.append(line)
            if line.startswith(pattern):
                return seen
        raise AssertionError(f"no {pattern!r} line within {timeout} s; lines so far: {seen}")

    def close(self) -> None:
        # Shut the socket first: closing the response alone waits for the reader thread's
        # pending read, i.e. for the next heartbeat.
        sock = getattr(getattr(self.response.raw, "_connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.response.close()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()


def test_it_delivers_and_streams_through_nginx(deployment: Deployment, receiver: Receiver) -> None:
    dep = deployment
    base = dep.base
    bearer = {"Authorization": f"Bearer {dep.api_key}"}

    # Up: nginx answers for gunicorn, and the worker's heartbeat shows in /healthz.
    health = dep.wait_until(
        "a healthy deployment with a worker",
        lambda: (
            (r := requests.get(f"{base}/healthz", timeout=5)).status_code == 200
            and r.json()["workers"] == "ok"
            and r.json()
        ),
    )
    assert health == {"status": "ok", "database": "ok", "redis": "ok", "workers": "ok"}

    # Sign in through nginx.
    browser = requests.Session()
    page = browser.get(f"{base}/login", timeout=10)
    assert page.status_code == 200
    signed_in = browser.post(
        f"{base}/login",
        data={"email": EMAIL, "password": PASSWORD, "csrf_token": csrf_token(page.text)},
        allow_redirects=False,
        timeout=10,
    )
    assert signed_in.status_code == 302, signed_in.text[:500]
    assert signed_in.headers["Location"].endswith("/webhooks")

    # Create a webhook in the dashboard.
    r = requests.post(
        f"{base}/v1/event-types", json={"name": "user.created"}, headers=bearer, timeout=10
    )
    assert r.status_code == 201, r.text
    form = browser.get(f"{base}/webhooks/new", timeout=10)
    assert form.status_code == 200
    created = browser.post(
        f"{base}/webhooks",
        data={
            "url": receiver.url_for("/hooks/e2e"),
            "description": "end to end",
            "events": "*",
            "headers": "",
            "csrf_token": csrf_token(form.text),
        },
        allow_redirects=False,
        timeout=10,
    )
    assert created.status_code in (302, 303), created.text[:1000]
    match = re.search(r"/webhooks/(wh_[0-9a-z]+)", created.headers["Location"])
    assert match, created.headers["Location"]
    webhook_id = match.group(1)
    assert browser.get(f"{base}/webhooks/{webhook_id}", timeout=10).status_code == 200
    # A dashboard webhook waits for Activate (a test event) before live events go to it.
    activated = requests.post(
        f"{base}/v1/webhooks/{webhook_id}/activate", headers=bearer, timeout=30
    )
    assert activated.status_code == 200, activated.text
    assert activated.json()["status"] == "success"
    receiver.wait_for(1, timeout=10)

    # Open the live log through nginx before anything is sent.
    response = browser.get(f"{base}/webhooks/{webhook_id}/stream", stream=True, timeout=(5, 60))
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert "Content-Encoding" not in response.headers  # gzip would hold messages back
    stream = StreamReader(response)
    try:
        stream.next_matching(":", timeout=10)  # the first comment: subscribed

        # Publish through nginx; the worker delivers, signed, to the real receiver.
        published = requests.post(
            f"{base}/v1/events",
            json={"type": "user.created", "data": {"id": "42", "email": "ada@example.com"}},
            headers=bearer,
            timeout=10,
        )
        assert published.status_code == 202, published.text
        event = published.json()
        assert event["deliveries"] == 1
        got = receiver.wait_for(2, timeout=30)
        assert len(got) == 2, "the worker did not deliver"
        secret = requests.get(
            f"{base}/v1/webhooks/{webhook_id}/secret", headers=bearer, timeout=10
        ).json()["secret"]
        delivered = got[1]
        body = Webhook(secret).verify(delivered.body, delivered.headers)
        assert body["id"] == event["id"]
        assert body["data"] == {"id": "42", "email": "ada@example.com"}
        assert delivered.headers["herald-webhook-id"] == webhook_id

        # The attempt arrives on the still-open stream, well before the 15 s heartbeat (the
        # worker announces it once recorded, a moment after the receiver answered).
        assert stream.next_matching("event: attempt", timeout=10)[-1] == "event: attempt"
        data = stream.next_matching("data:", timeout=5)[-1]
        attempts = requests.get(
            f"{base}/v1/webhooks/{webhook_id}/attempts",
            params={"event_id": event["id"]},
            headers=bearer,
            timeout=10,
        ).json()["data"]
        assert len(attempts) == 1
        assert attempts[0]["id"] in data
        assert stream.thread.is_alive()  # still streaming: nothing waited for the end
    finally:
        stream.close()

    # Static files come from nginx itself, with a year's cache.
    css = browser.get(f"{base}/static/css/herald.css", timeout=10)
    assert css.status_code == 200
    assert "max-age=31536000" in css.headers["Cache-Control"]
    assert css.content == (ROOT / "static" / "css" / "herald.css").read_bytes()

    # Bodies over the shipped limit stop at nginx.
    big = requests.post(
        f"{base}/v1/events",
        data=b"x" * (3 * 1024 * 1024),
        headers={**bearer, "Content-Type": "application/json"},
        timeout=30,
    )
    assert big.status_code == 413

    # /metrics (allowed from loopback) counts what the worker process did.
    metrics = requests.get(f"{base}/metrics", timeout=10)
    assert metrics.status_code == 200
    assert 'herald_attempts_total{outcome="success"} 1.0' in metrics.text

    # gunicorn never saw a static request; its access lines and the worker's are JSON.
    web_lines = [json.loads(ln) for ln in dep.log("web").splitlines() if ln.startswith("{")]
    paths = [ln.get("path") for ln in web_lines if ln.get("event") == "http_request"]
    assert "/v1/events" in paths
    assert not any(p and p.startswith("/static/") for p in paths)
    worker_lines = [json.loads(ln) for ln in dep.log("worker").splitlines() if ln.startswith("{")]
    attempt_lines = [ln for ln in worker_lines if ln.get("event") == "delivery_attempt"]
    assert attempt_lines[0]["event_id"] == event["id"]
    assert attempt_lines[0]["webhook_id"] == webhook_id
    assert secret not in dep.log("worker") + dep.log("web")
