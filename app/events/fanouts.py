"""Deliveries to held endpoints, written a moment after the publish's commit (held_fanouts).

A held endpoint (its breaker open, or hanging) is sent nothing until its hold ends, at
least a second away, so its deliveries need not be in the publish's transaction, nor
written while the deliveries due now are claimed and sent. In the publish's transaction
they were a third of the rows written while two endpoints of ten were held; written right
after the commit, they ran beside the woken worker's claim, on the same two cores, and the
healthy deliveries arrived 2 ms later at the median.

So the publish commits one row listing them with its events, and hands the list to this
process's writer thread, which writes the deliveries DELAY later (every list queued by
then, in one statement) and deletes the lists. Deleting a list is the claim: whoever
deletes it (the writer, or the sweeper after a crash or an outage) writes it, once.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from flask import Flask, current_app
from sqlalchemy import delete, select

from app.deliveries.bulk import insert_rows, on_postgres
from app.extensions import db
from app.ids import new_id
from app.models import EPOCH, Delivery, Endpoint, HeldFanout, utcnow

log = logging.getLogger(__name__)

FANOUTS = HeldFanout.__table__
DELIVERIES = Delivery.__table__
ENDPOINTS = Endpoint.__table__
# The writer's wait: long enough for a woken worker to claim what the publish made due,
# short against the shortest hold (1 s), and it gathers concurrent publishes' lists.
DELAY = 0.02
# A list older than this was left by a process that did not write it (the writer does
# within DELAY of its commit, unless the database was away).
GRACE = timedelta(seconds=5)
SWEEP_BATCH = 100

Held = dict[str, tuple[datetime, list[str]]]  # held endpoint -> (held until, event ids)
SCHEDULED = {"status": "pending", "attempts": 0, "trigger": "scheduled"}

# The lists' deliveries on PostgreSQL, in one statement: each row is written only if this
# statement took (deleted) its list and its endpoint is not deleted. The lists are locked
# in id order, so two writers taking overlapping sets wait for each other, never deadlock.
TAKE = """
WITH locked AS (
    SELECT id FROM held_fanouts WHERE id = ANY(%(fanouts)s) ORDER BY id FOR UPDATE
), taken AS (
    DELETE FROM held_fanouts AS h USING locked WHERE h.id = locked.id RETURNING h.id
), live AS (
    SELECT e.id FROM endpoints AS e
    WHERE e.id = ANY(%(endpoints)s) AND e.deleted_at IS NULL AND EXISTS (SELECT FROM taken)
    FOR SHARE
), written AS (
    INSERT INTO deliveries (id, event_id, endpoint_id, next_attempt_at, created_at, status,
                            attempts, trigger, locked_until)
    SELECT r.id, r.event_id, r.endpoint_id, r.next_attempt_at, r.created_at, %(status)s,
           %(attempts)s, %(trigger)s, %(epoch)s
    FROM json_to_recordset(%(rows)s::json) AS r(id varchar, event_id varchar,
         endpoint_id varchar, next_attempt_at timestamptz, created_at timestamptz,
         list varchar)
    WHERE r.endpoint_id IN (SELECT id FROM live) AND r.list IN (SELECT id FROM taken)
)
SELECT (SELECT count(*) FROM taken), set_config('synchronous_commit', 'off', true)
"""


@dataclass(frozen=True)
class Listed:
    """A committed list: its id, its deliveries, and its publish's time."""

    id: str
    held: Held
    created_at: datetime


def listing(held: Held) -> dict[str, str]:
    """The row listing a publish's held deliveries (its id, and the list as JSON), for the
    publish to insert with its events (created_at is the publish's)."""
    listed = [
        [endpoint_id, until.isoformat(), events] for endpoint_id, (until, events) in held.items()
    ]
    return {"id": new_id("hfo"), "rows": json.dumps(listed)}


class Writer:
    """This process's writer of committed lists: a thread started at the first one, and a
    last flush at exit. Never raises into a publish: the lists are committed, and what it
    cannot write the sweeper writes."""

    def __init__(self, background: bool = True) -> None:
        self.background = background  # False: only flush() writes (tests)
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a child starts its own thread

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._writing = threading.Lock()  # a flush returns once what it found is written
        self._queued: list[tuple[Flask, Listed]] = []
        self._wake = threading.Event()
        self._started = False

    def put(self, app: Flask, listed: Listed) -> None:
        with self._lock:
            self._queued.append((app, listed))
            if self.background and not self._started:
                self._started = True
                threading.Thread(target=self._run, name="held-writer", daemon=True).start()
                atexit.register(self.flush)
        self._wake.set()

    def flush(self) -> int:
        """Write every queued list now (or wait for the write in progress); how many lists
        this call wrote."""
        with self._writing:
            with self._lock:
                queued, self._queued = self._queued, []
            by_app: dict[Flask, list[Listed]] = {}
            for app, listed in queued:
                by_app.setdefault(app, []).append(listed)
            written = 0
            for app, lists in by_app.items():
                try:
                    with app.app_context():
                        try:
                            written += take(lists)
                        finally:
                            db.session.remove()
                except Exception:
                    log.exception("%d lists of held deliveries are left to the sweeper", len(lists))
            return written

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(DELAY)
            self._wake.clear()
            self.flush()


writer = Writer()


def write_later(listed: Listed) -> None:
    """Queue a committed list for this process's writer (in a request or app context)."""
    writer.put(current_app._get_current_object(), listed)  # type: ignore[attr-defined]


def write_stale(now: datetime | None = None) -> int:
    """The sweeper's part: write the deliveries of lists left unwritten; how many lists."""
    cutoff = (now or utcnow()) - GRACE
    stale = db.session.execute(
        select(FANOUTS.c.id, FANOUTS.c.rows, FANOUTS.c.created_at)
        .where(FANOUTS.c.created_at < cutoff)
        .order_by(FANOUTS.c.id)
        .limit(SWEEP_BATCH)
    ).all()
    db.session.rollback()
    lists = [
        Listed(
            fanout.id,
            {ep: (datetime.fromisoformat(until), ev) for ep, until, ev in json.loads(fanout.rows)},
            fanout.created_at,
        )
        for fanout in stale
    ]
    return take(lists) if lists else 0


def take(lists: Sequence[Listed]) -> int:
    """Delete the lists and write the deliveries of those this call deleted (to endpoints
    not deleted meanwhile: a delete cancels what is pending, and these would not be); how
    many it deleted. The endpoints are share-locked, so a delete either waits and then
    cancels these too, or commits first and is seen here."""
    if on_postgres():
        return _take_on_postgres(lists)
    taken = 0
    for listed in lists:
        result = db.session.execute(delete(FANOUTS).where(FANOUTS.c.id == listed.id))
        if result.rowcount:  # type: ignore[attr-defined]
            taken += 1
            kept = db.session.execute(
                select(ENDPOINTS.c.id)
                .where(ENDPOINTS.c.id.in_(list(listed.held)), ENDPOINTS.c.deleted_at.is_(None))
                .with_for_update(read=True)
            )
            live = set(kept.scalars())
            rows = [row for row in _rows(listed) if row["endpoint_id"] in live]
            insert_rows(DELIVERIES, rows, **SCHEDULED, locked_until=EPOCH)
        db.session.commit()
    return taken


def _rows(listed: Listed) -> list[dict[str, Any]]:
    """A list's deliveries, as rows for insert_rows (with SCHEDULED and locked_until)."""
    return [
        {
            "id": new_id("dlv"),
            "event_id": event_id,
            "endpoint_id": endpoint_id,
            "next_attempt_at": until,
            "created_at": listed.created_at,
        }
        for endpoint_id, (until, events) in listed.held.items()
        for event_id in events
    ]


def _take_on_postgres(lists: Sequence[Listed]) -> int:
    """take's statements and its commit as one, sent in one round trip on a connection of
    its own. The commit does not wait for the disk: were it lost in a crash, the lists,
    committed with their publishes, would be there for the sweeper."""
    params = {
        "fanouts": [listed.id for listed in lists],
        "endpoints": sorted({ep for listed in lists for ep in listed.held}),
        "rows": json.dumps(
            [{**row, "list": listed.id} for listed in lists for row in _rows(listed)],
            default=datetime.isoformat,
        ),
        "epoch": EPOCH,
        **SCHEDULED,
    }
    with db.engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)  # the postgresql+psycopg dialect's
        with raw.pipeline():
            cursor = raw.execute(TAKE, params)
            raw.commit()
        taken = cursor.fetchone()
    return int(taken[0]) if taken else 0
