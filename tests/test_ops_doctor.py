"""`flask --app wsgi doctor` says in plain words what is wrong with a deployment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from flask import Flask

from app.heartbeat import beat
from app.runtime import runtime
from tests.conftest import Api, make_app


def doctor(app: Flask) -> Any:
    return app.test_cli_runner().invoke(args=["doctor"])


def doctor_with(env: dict[str, str], **overrides: str) -> Any:
    """The doctor's verdict on an app configured with ``overrides``."""
    other = make_app(env, **overrides)
    with other.app_context():
        return doctor(other)


def test_it_passes_a_healthy_deployment(app: Flask, api: Api) -> None:
    api.webhook("http://127.0.0.1:9/hook")
    beat(runtime().broker)
    result = doctor(app)
    assert result.exit_code == 0, result.output
    assert "ok    database: reachable and migrated" in result.output
    assert "ok    workers: 1 alive" in result.output
    assert "all 1 secrets decrypt" in result.output
    assert "FAIL" not in result.output


def test_it_fails_when_no_worker_runs(app: Flask) -> None:
    result = doctor(app)
    assert result.exit_code == 1
    assert "FAIL  workers: no worker is running (never)" in result.output
    assert "herald-worker@1" in result.output


def test_it_fails_on_an_unmigrated_database(env: dict[str, str], tmp_path: Path) -> None:
    result = doctor_with(env, DATABASE_URL=f"sqlite:///{tmp_path / 'empty.db'}")
    assert result.exit_code == 1
    assert "reachable but empty: run `flask --app wsgi db upgrade`" in result.output


def test_it_fails_on_an_unreachable_database(env: dict[str, str]) -> None:
    result = doctor_with(env, DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    assert result.exit_code == 1
    assert "FAIL  database: cannot connect to DATABASE_URL" in result.output


def test_it_fails_an_allow_list_that_opens_everything(env: dict[str, str]) -> None:
    result = doctor_with(env, HERALD_ALLOW_NETWORKS="0.0.0.0/0,169.254.0.0/16,8.8.8.0/24")
    assert "FAIL  allow-list: 0.0.0.0/0 in HERALD_ALLOW_NETWORKS switches the private" in (
        result.output
    )
    assert "FAIL  allow-list: 169.254.0.0/16 opens the cloud metadata address" in result.output
    assert "WARN  allow-list: 8.8.8.0/24 is public" in result.output


def test_it_warns_about_development_settings_on_a_server(env: dict[str, str]) -> None:
    result = doctor_with(env, HERALD_ENV="production", HERALD_LOG_FORMAT="text")
    assert "WARN  proxy: HERALD_PROXY_FIX is 0" in result.output
    assert "WARN  logs: HERALD_LOG_FORMAT is text" in result.output
    assert "WARN  allow-list: 127.0.0.0/8 lets webhooks reach this server's own" in result.output


def test_it_fails_when_a_key_that_secrets_need_was_removed(
    app: Flask, env: dict[str, str], api: Api
) -> None:
    api.webhook("http://127.0.0.1:9/hook")
    result = doctor_with(env, HERALD_ENCRYPTION_KEYS=Fernet.generate_key().decode())
    assert result.exit_code == 1
    assert "1 webhook secrets cannot be decrypted with HERALD_ENCRYPTION_KEYS" in result.output


def test_it_names_a_missing_production_key_before_anything_else(env: dict[str, str]) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    bare = {k: v for k, v in {**os.environ, **env}.items() if k != "SECRET_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "doctor"],
        cwd=root,
        env={**bare, "HERALD_ENV": "production"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "SECRET_KEY: required when HERALD_ENV=production" in done.stderr
