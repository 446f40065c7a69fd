"""`flask --app wsgi doctor`: check a deployment and say what is wrong in plain words.

Each check gives a Finding: ``ok``, ``warn`` (works, but not as production should) or
``fail`` (something will not work). The command exits 1 when anything failed.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, timedelta

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import current_app
from sqlalchemy import func, select, text

from app.config import Settings
from app.deliveries.engine import DELIVERIES, due_filter
from app.extensions import db
from app.heartbeat import STALE_AFTER, last_seen, workers_alive
from app.models import Endpoint, utcnow
from app.runtime import runtime

# Addresses that no allow-list should open: cloud metadata services hand out credentials.
METADATA = [ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")]


@dataclass(frozen=True)
class Finding:
    level: str  # ok, warn or fail
    topic: str
    message: str


def diagnose() -> list[Finding]:
    """Run every check; a check that crashes is itself reported, never raised."""
    findings: list[Finding] = []
    base: list[Callable[[], Iterator[Finding]]] = [
        _environment,
        _database,
        _redis,
        _workers,
        _allow_list,
    ]
    # These read Herald's tables: pointless (and noisy) until the database is right.
    needs_schema: list[Callable[[], Iterator[Finding]]] = [_secrets_decrypt, _backlog]
    for check in base:
        findings.extend(_run(check))
    if any(f.topic == "database" and f.level == "fail" for f in findings):
        return findings
    for check in needs_schema:
        findings.extend(_run(check))
    return findings


def _run(check: Callable[[], Iterator[Finding]]) -> list[Finding]:
    try:
        return list(check())
    except Exception as exc:  # a broken dependency must not hide the other checks
        db.session.rollback()
        name = check.__name__.strip("_").replace("_", " ")
        return [Finding("fail", name, f"the check itself failed: {_first_line(exc)}")]


def _settings() -> Settings:
    return runtime().settings


def _environment() -> Iterator[Finding]:
    s = _settings()
    if s.env != "production":
        yield Finding(
            "warn",
            "environment",
            f"HERALD_ENV is {s.env!r}: set HERALD_ENV=production on a server, so that "
            "SECRET_KEY and HERALD_ENCRYPTION_KEYS must come from the environment and "
            "cookies are sent over HTTPS only",
        )
    else:
        yield Finding(
            "ok", "environment", "production, with SECRET_KEY and HERALD_ENCRYPTION_KEYS set"
        )
    if s.env == "production" and not s.proxy_fix:
        yield Finding(
            "warn",
            "proxy",
            "HERALD_PROXY_FIX is 0: behind nginx set it to 1, or Herald sees every visitor "
            "as 127.0.0.1 over plain http",
        )
    if s.env == "production" and s.log_format != "json":
        yield Finding("warn", "logs", "HERALD_LOG_FORMAT is text; json suits a log collector")


def _database() -> Iterator[Finding]:
    s = _settings()
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:
        db.session.rollback()
        yield Finding("fail", "database", f"cannot connect to DATABASE_URL: {_first_line(exc)}")
        return
    # Alembic logs each context at INFO; the doctor's own lines are the report.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    with db.engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    db.session.rollback()
    migrate = current_app.extensions["migrate"]
    config = migrate.migrate.get_config(migrate.directory)
    heads = set(ScriptDirectory.from_config(config).get_heads())
    if not current:
        yield Finding("fail", "database", "reachable but empty: run `flask --app wsgi db upgrade`")
    elif current != heads:
        yield Finding(
            "fail",
            "database",
            f"reachable but not migrated (at {', '.join(sorted(current))}, the code needs "
            f"{', '.join(sorted(heads))}): run `flask --app wsgi db upgrade`",
        )
    else:
        yield Finding("ok", "database", f"reachable and migrated ({', '.join(sorted(heads))})")
    if s.database_url.startswith("sqlite") and s.env == "production":
        yield Finding(
            "warn",
            "database",
            "SQLite in production: fine for one small server, but use PostgreSQL "
            "(DATABASE_URL=postgresql://...) for several workers or hosts",
        )


def _redis() -> Iterator[Finding]:
    s = _settings()
    broker = runtime().broker
    if not s.redis_url:
        level = "warn" if s.env == "production" else "ok"
        yield Finding(
            level,
            "redis",
            "REDIS_URL is not set: using the embedded Redis in instance/ (set REDIS_URL to a "
            "Redis server in production)",
        )
    if broker.ping():
        yield Finding("ok", "redis", "reachable")
    else:
        yield Finding("fail", "redis", "cannot reach Redis at REDIS_URL")


def _workers() -> Iterator[Finding]:
    broker = runtime().broker
    if not broker.ping():
        yield Finding("fail", "workers", "unknown: Redis, where workers report, is down")
        return
    alive = workers_alive(broker)
    if alive:
        yield Finding("ok", "workers", f"{alive} alive (heartbeat in the last {STALE_AFTER:g} s)")
        return
    seen = last_seen(broker)
    when = "never" if seen is None else f"last seen {int(utcnow().timestamp() - seen)} s ago"
    yield Finding(
        "fail",
        "workers",
        f"no worker is running ({when}): nothing will be delivered. Start some with "
        "`systemctl enable --now herald-worker@1 herald-worker@2`",
    )


def _allow_list() -> Iterator[Finding]:
    nets = _settings().allow_networks
    if not nets:
        yield Finding(
            "ok", "allow-list", "empty: private and loopback addresses are refused (safest)"
        )
        return
    bad = False
    for net in nets:
        if net.prefixlen == 0:
            bad = True
            yield Finding(
                "fail",
                "allow-list",
                f"{net} in HERALD_ALLOW_NETWORKS switches the private-address guard off: "
                "webhooks could reach your internal services",
            )
        elif any(addr.version == net.version and addr in net for addr in METADATA):
            bad = True
            yield Finding(
                "fail",
                "allow-list",
                f"{net} opens the cloud metadata address 169.254.169.254 (it hands out "
                "credentials): list narrower networks",
            )
        elif net.is_global:
            yield Finding(
                "warn",
                "allow-list",
                f"{net} is public: public addresses are allowed anyway, so it does nothing",
            )
        elif net.is_loopback and _settings().env == "production":
            yield Finding(
                "warn",
                "allow-list",
                f"{net} lets webhooks reach this server's own services (Redis, PostgreSQL); "
                "remove it unless a receiver really runs here",
            )
        elif (net.version == 4 and net.prefixlen < 8) or (net.version == 6 and net.prefixlen < 16):
            yield Finding("warn", "allow-list", f"{net} is very wide: list narrower networks")
    if not bad:
        yield Finding("ok", "allow-list", ", ".join(str(n) for n in nets))


def _secrets_decrypt() -> Iterator[Finding]:
    box = runtime().box
    broken = []
    rows = db.session.execute(
        select(Endpoint.id, Endpoint.secret_enc).where(Endpoint.deleted_at.is_(None))
    ).all()
    db.session.rollback()
    for endpoint_id, token in rows:
        try:
            box.decrypt(token)
        except ValueError:
            broken.append(endpoint_id)
    if broken:
        yield Finding(
            "fail",
            "encryption keys",
            f"{len(broken)} webhook secrets cannot be decrypted with HERALD_ENCRYPTION_KEYS "
            f"(e.g. {broken[0]}): put back the key they were made with, after the new one",
        )
    else:
        yield Finding(
            "ok",
            "encryption keys",
            f"{len(_settings().encryption_keys)} key(s); all {len(rows)} secrets decrypt",
        )


def _backlog() -> Iterator[Finding]:
    now = utcnow()
    oldest = db.session.execute(
        select(func.min(DELIVERIES.c.next_attempt_at)).where(*due_filter(now))
    ).scalar_one()
    db.session.rollback()
    if oldest is not None and oldest.tzinfo is None:  # SQLite keeps no zone under min()
        oldest = oldest.replace(tzinfo=UTC)
    if oldest is not None and now - oldest > timedelta(minutes=5):
        minutes = int((now - oldest).total_seconds() // 60)
        yield Finding(
            "warn",
            "backlog",
            f"the oldest due delivery has waited {minutes} min: add workers or look for a "
            "stuck one",
        )
    else:
        yield Finding("ok", "backlog", "no delivery waits more than 5 min past its time")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def report(findings: list[Finding]) -> str:
    """The findings as lines an operator reads top to bottom, problems marked."""
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    lines = [f"{marks[f.level]}  {f.topic}: {f.message}" for f in findings]
    failed = sum(f.level == "fail" for f in findings)
    warned = sum(f.level == "warn" for f in findings)
    if failed:
        lines.append(f"\n{failed} problem(s) to fix, {warned} warning(s).")
    elif warned:
        lines.append(f"\nNothing broken; {warned} warning(s).")
    else:
        lines.append("\nAll good.")
    return "\n".join(lines)
