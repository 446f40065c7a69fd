"""The command line: db upgrade on a fresh database, users create, keys create."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.security import check_password_hash

from app.extensions import db
from app.models import ApiKey, User

ROOT = Path(__file__).resolve().parent.parent


def test_it_creates_the_schema_with_db_upgrade(tmp_path: Path, env: dict[str, str]) -> None:
    fresh = {
        **os.environ,
        **env,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}",
        "HERALD_INSTANCE": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env=fresh,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(tmp_path / "fresh.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"endpoints", "events", "deliveries", "attempts", "api_keys", "users"} <= tables


def test_the_migrations_build_the_schema_the_models_declare(app: Flask) -> None:
    """No table, column, index or key differs (on whichever database this run uses)."""
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []


def test_it_creates_an_api_key_whose_last_line_is_the_key(runner: Any, client: FlaskClient) -> None:
    result = runner.invoke(args=["keys", "create", "backend"])
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    stored = db.session.execute(select(ApiKey)).scalar_one()
    assert stored.name == "backend"
    assert key not in (stored.key_hash, stored.hint)
    r = client.get("/v1/webhooks", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200


def test_it_refuses_an_empty_key_name(runner: Any) -> None:
    result = runner.invoke(args=["keys", "create", "  "])
    assert result.exit_code != 0
    assert "NAME" in result.output


def test_it_creates_an_admin_with_a_hashed_password(runner: Any) -> None:
    result = runner.invoke(
        args=["users", "create", "Ada@Example.com", "--password", "correct horse"]
    )
    assert result.exit_code == 0, result.output
    user = db.session.execute(select(User)).scalar_one()
    assert user.email == "ada@example.com"
    assert user.password_hash != "correct horse"
    assert check_password_hash(user.password_hash, "correct horse")

    again = runner.invoke(args=["users", "create", "ada@example.com", "--password", "whatever1"])
    assert again.exit_code != 0
    assert "already exists" in again.output
    short = runner.invoke(args=["users", "create", "bob@example.com", "--password", "short"])
    assert short.exit_code != 0
