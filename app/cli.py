"""Command line: users, keys and the worker; ``flask db`` comes from Flask-Migrate."""

from __future__ import annotations

import gc
import logging
import sys
import threading
from typing import Any

import click
import redis
from flask import Flask, current_app
from rq import SimpleWorker
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from app.apikeys import create_api_key
from app.extensions import db
from app.models import Endpoint, User
from app.runtime import runtime

log = logging.getLogger(__name__)


def create_user(email: str, password: str) -> User:
    email = email.strip().lower()
    if db.session.execute(select(User).where(User.email == email)).scalar_one_or_none():
        raise click.ClickException(f"a user {email} already exists")
    if len(password) < 8:
        raise click.ClickException("the password needs at least 8 characters")
    user = User(email=email, password_hash=generate_password_hash(password))
    db.session.add(user)
    db.session.commit()
    return user


def reencrypt_secrets() -> int:
    """After adding a new key first in HERALD_ENCRYPTION_KEYS: move every secret onto it."""
    box = runtime().box
    endpoints = db.session.execute(select(Endpoint)).scalars().all()
    for endpoint in endpoints:
        try:
            endpoint.secret_enc = box.rotate(endpoint.secret_enc)
            if endpoint.previous_secret_enc:
                endpoint.previous_secret_enc = box.rotate(endpoint.previous_secret_enc)
        except ValueError:
            # All or nothing: a half-rotated database would tempt someone to drop the old key.
            db.session.rollback()
            raise click.ClickException(
                f"webhook {endpoint.id}: its secret cannot be decrypted with any key in "
                "HERALD_ENCRYPTION_KEYS (keep the old key in the list, after the new one); "
                "nothing was changed"
            ) from None
    db.session.commit()
    return len(endpoints)


def register_cli(app: Flask) -> None:
    users = click.Group("users", help="Admin accounts.")
    keys = click.Group("keys", help="API keys.")

    @users.command("create")
    @click.argument("email")
    @click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
    def users_create(email: str, password: str) -> None:
        """Create an admin account."""
        user = create_user(email, password)
        click.echo(f"created user {user.email}")

    @keys.command("create")
    @click.argument("name")
    def keys_create(name: str) -> None:
        """Create an API key; the key alone is the last line printed."""
        if not name.strip() or len(name) > 100:
            raise click.ClickException("NAME must be 1 to 100 characters")
        key, plain = create_api_key(name.strip())
        click.echo(f"created API key {key.id} ({key.name}); it is shown only once:")
        click.echo(plain)

    @keys.command("reencrypt")
    def keys_reencrypt() -> None:
        """Re-encrypt every signing secret under the newest HERALD_ENCRYPTION_KEYS key."""
        count = reencrypt_secrets()
        click.echo(f"re-encrypted the secrets of {count} webhooks under the newest key")

    @app.cli.command("worker")
    @click.option("--burst", is_flag=True, help="Deliver what is due now, then exit.")
    def worker(burst: bool) -> None:
        """Run an RQ worker on Herald's queue, with the sweeper beside it."""
        run_worker(current_app._get_current_object(), burst)  # type: ignore[attr-defined]

    @app.cli.command("doctor")
    def doctor() -> None:
        """Check this deployment's configuration and say what is wrong."""
        from app.doctor import diagnose, report

        findings = diagnose()
        click.echo(report(findings))
        if any(f.level == "fail" for f in findings):
            raise SystemExit(1)

    app.cli.add_command(users)
    app.cli.add_command(keys)


# How long a thread may hold the GIL while another waits for it (Python's default is 5 ms).
# The drain's thread waits on the database, the transport's loop and the recorder run
# Python: back from a claim, the drain waited up to several 5 ms turns to go on (claims of
# 15-30 ms against 3). Handing over every millisecond costs little against that.
SWITCH_INTERVAL = 0.001  # seconds


def run_worker(app: Flask, burst: bool) -> None:
    from app.deliveries.engine import any_due
    from app.deliveries.jobs import sweep_forever
    from app.housekeeping import housekeep_forever

    broker = runtime().broker
    stop = threading.Event()
    if any_due():
        broker.request_drain()
    housekeeping = threading.Thread(
        target=housekeep_forever, args=(app, stop), name="herald-housekeeping", daemon=True
    )
    if not burst:
        threading.Thread(
            target=sweep_forever, args=(app, stop), name="herald-sweeper", daemon=True
        ).start()
        housekeeping.start()
    # SimpleWorker runs jobs in this process, so the sending pool and its keep-alive
    # connections survive from one job to the next (a forking worker would lose them).
    connection = broker.worker_redis()
    rq_worker = _FreshSessionWorker([broker.queue(connection)], connection=connection)
    # Everything made so far (Flask, SQLAlchemy, the app) lives as long as the process. Left
    # to the collector, each full collection walked all of it: 100-160 ms pauses of every
    # thread, which made a busy worker's p99 latency. Frozen, they are skipped.
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        rq_worker.work(burst=burst, logging_level="INFO")
    finally:
        stop.set()
        if housekeeping.is_alive():
            housekeeping.join(timeout=5)  # it takes this worker off the heartbeat list


class _FreshSessionWorker(SimpleWorker):
    """Each job starts on a fresh database session, as each web request does.

    Jobs share this long-lived process: without this, a job that failed because the database
    went away would leave a dead transaction that fails every later job ("Can't reconnect
    until invalid transaction is rolled back"), long after the database is back.
    """

    def execute_job(self, job: Any, queue: Any) -> Any:
        try:
            return super().execute_job(job, queue)
        finally:
            db.session.remove()

    # RQ ends its loop, and with it this worker, on an error in its registry clean-up or its
    # suspension check (seen: Redis restarted while the clean-up ran at start-up). A Redis
    # outage there only postpones them; the dequeue that follows waits for Redis by itself.
    def run_maintenance_tasks(self) -> None:
        try:
            super().run_maintenance_tasks()  # type: ignore[no-untyped-call]
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("RQ's registry clean-up failed (trying again later): %s", exc)

    def check_for_suspension(self, burst: bool) -> None:
        try:
            super().check_for_suspension(burst)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("could not check whether workers are suspended: %s", exc)
