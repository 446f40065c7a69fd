"""Herald: a self-hosted webhook sender. ``create_app`` assembles it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import Settings, load_settings
from app.extensions import csrf, db, login, migrate
from app.logs import configure_logging
from app.runtime import init_runtime
from app.security import init_security
from app.static_assets import version_static_urls
from app.version import __version__

__all__ = ["__version__", "create_app"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def create_app(env: Mapping[str, str] | None = None, instance_path: str | None = None) -> Flask:
    """Build the app from environment variables (``env`` replaces os.environ in tests)."""
    app = Flask(
        __name__,
        instance_path=instance_path or os.path.join(ROOT, "instance"),
        template_folder=os.path.join(ROOT, "templates"),
        static_folder=os.path.join(ROOT, "static"),
    )
    settings = load_settings(os.environ if env is None else env, _instance(app))
    _configure(app, settings)
    configure_logging(settings)
    if settings.proxy_fix:
        # Only behind nginx: X-Forwarded-* from anyone else would be believed otherwise.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app,
            x_for=settings.proxy_fix,
            x_proto=settings.proxy_fix,
            x_host=settings.proxy_fix,
            x_port=settings.proxy_fix,
        )
    init_runtime(app, settings)

    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(ROOT, "migrations"))
    csrf.init_app(app)
    login.init_app(app)

    from app import health
    from app.api import bp as api_bp
    from app.api.errors import register_json_errors
    from app.cli import register_cli

    csrf.exempt(api_bp)  # the API authenticates with bearer keys, not cookies
    app.register_blueprint(api_bp)
    app.register_blueprint(health.bp)
    register_json_errors(app)
    version_static_urls(app)
    _register_faces(app)
    init_security(app, settings)
    register_cli(app)
    return app


def _register_faces(app: Flask) -> None:
    """The dashboard and sign-in, when present (they are their own features)."""
    try:
        from app.auth import bp as auth_bp
        from app.dashboard import bp as dashboard_bp
    except ImportError:
        return
    app.register_blueprint(auth_bp)
    app.register_blueprint(dashboard_bp)


def _instance(app: Flask) -> Any:
    from pathlib import Path

    path = Path(app.instance_path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _configure(app: Flask, settings: Settings) -> None:
    production = settings.env == "production"
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=_engine_options(settings.database_url),
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=production,
        REMEMBER_COOKIE_SECURE=production,
        REMEMBER_COOKIE_HTTPONLY=True,
        WTF_CSRF_TIME_LIMIT=None,
        JSON_SORT_KEYS=False,
        HERALD_SETTINGS=settings,
    )


def _engine_options(url: str) -> dict[str, Any]:
    # hide_parameters: a database error's log line must not carry row values (webhook
    # headers, URLs with credentials) into the logs.
    if url.startswith("sqlite"):
        return {
            "connect_args": {"timeout": 30, "check_same_thread": False},
            "hide_parameters": True,
        }
    return {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20, "hide_parameters": True}


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets the web app read while a worker writes; busy_timeout waits out the lock."""
    import sqlite3

    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


@event.listens_for(Engine, "connect")
def _postgres_custom_plans(dbapi_connection: Any, _record: Any) -> None:
    """Plan each statement for its own values, not once for any values.

    psycopg prepares a statement after a few runs, and PostgreSQL may then switch to a
    generic plan. For the claim (``LIMIT`` and ``now`` as parameters) over a deep backlog
    that plan took 20 ms against 8 ms; planning each time costs well under a millisecond.
    """
    import psycopg

    if isinstance(dbapi_connection, psycopg.Connection):
        dbapi_connection.execute("SET plan_cache_mode = force_custom_plan")
        dbapi_connection.commit()  # a rollback would undo the SET
