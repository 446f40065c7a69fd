"""A full run with real processes (gunicorn, a worker, the CLI) at their most talkative: no
signing secret, API key, password or configured key appears in any log line."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests
from flask import Flask

from tests.faults import ROOT, Worker, free_port, wait_until
from tests.receiver import Receiver, hang, respond


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


class Web:
    """gunicorn serving Herald, with access and debug logs written to a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._out = open(log, "ab")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "wsgi:app", "-b", f"127.0.0.1:{self.port}",
             "-w", "1", "--access-logfile", "-", "--error-logfile", "-", "--log-level", "debug"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def up(self) -> bool:
        try:
            return requests.get(f"{self.base}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)
        self._out.close()


def test_it_writes_no_secret_or_key_to_any_log(
    app: Flask, env: dict[str, str], receiver: Receiver, tmp_path: Path
) -> None:
    # (``app`` is asked for so that its teardown empties the tables this run fills.)
    password = "correct horse " + secrets.token_hex(8)
    plain_secret = "plain-" + secrets.token_hex(12)
    chosen_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    receiver_token = "rcv-" + secrets.token_hex(12)
    wrong_key = "hk_" + secrets.token_hex(20)
    logs: list[str] = []

    logs.append(cli(env, "users", "create", "admin@example.com", "--password", password).stderr)
    made = cli(env, "keys", "create", "log-test")
    api_key = made.stdout.strip().splitlines()[-1]  # printed once, on purpose: not a log
    logs.append(made.stderr)
    receiver.behave("/fails", respond(500, b"nope"), hang(3), respond(200))

    web = Web({**env, "HERALD_TIMEOUT": "1"}, tmp_path / "web.log")
    try:
        assert wait_until(web.up, 30), (tmp_path / "web.log").read_text()
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {api_key}"

        def call(method: str, path: str, **kw: Any) -> Any:
            return session.request(method, web.base + path, timeout=10, **kw)

        assert call("POST", "/v1/event-types", json={"name": "user.created"}).status_code == 201
        standard = call(
            "POST",
            "/v1/webhooks",
            json={
                "url": receiver.url_for("/ok"),
                "events": ["*"],
                "secret": chosen_secret,
                "headers": {"Authorization": f"Bearer {receiver_token}"},
            },
        ).json()
        compat = call(
            "POST",
            "/v1/webhooks",
            json={
                "url": receiver.url_for("/fails"),
                "events": ["*"],
                "secret": plain_secret,
                "signature": {"scheme": "hmac-sha256-hex", "header": "X-Hub-Signature-256",
                              "prefix": "sha256="},
            },
        ).json()  # fmt: skip
        rotated = call("POST", f"/v1/webhooks/{standard['id']}/secret/rotate").json()["secret"]
        assert call("GET", f"/v1/webhooks/{compat['id']}/secret").json() == {"secret": plain_secret}
        assert call("POST", f"/v1/webhooks/{standard['id']}/activate").status_code == 200
        for i in range(3):
            assert call("POST", "/v1/events", json={"type": "user.created", "data": {"i": i}})
        # Mistakes are logged too: a wrong key, bad JSON, a secret that is refused.
        assert (
            requests.get(
                f"{web.base}/v1/webhooks",
                headers={"Authorization": f"Bearer {wrong_key}"},
                timeout=5,
            ).status_code
            == 401
        )
        assert call("POST", "/v1/events", data=b"{nope", headers={"Content-Type":
                    "application/json"}).status_code == 400  # fmt: skip
        assert call("POST", "/v1/webhooks/test", json={"webhook_id": compat["id"]}).ok

        with Worker({**env, "HERALD_TIMEOUT": "1"}, tmp_path / "worker.log") as worker:
            assert wait_until(lambda: len(receiver.requests_for("/ok")) >= 4, 30)
            assert wait_until(lambda: len(receiver.requests_for("/fails")) >= 5, 30)
            logs.append(worker.output())
    finally:
        web.close()
    logs.append((tmp_path / "web.log").read_text())
    logs.append(cli(env, "keys", "reencrypt").stderr)

    text = "\n".join(logs)
    assert "POST /v1/webhooks" in text  # the access log was captured
    assert "Listening on" in text  # and the worker's
    forbidden = {
        "API key": api_key,
        "wrong API key": wrong_key,
        "password": password,
        "chosen secret": chosen_secret,
        "chosen secret's key": chosen_secret.removeprefix("whsec_"),
        "generated secret": standard["secret"],
        "rotated secret": rotated,
        "plain secret": plain_secret,
        "receiver's token": receiver_token,
        "SECRET_KEY": env["SECRET_KEY"],
        "encryption key": env["HERALD_ENCRYPTION_KEYS"],
    }
    for name, value in forbidden.items():
        assert value not in text, f"the {name} appears in the logs"
