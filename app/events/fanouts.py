"""Deliveries to held endpoints, written just after the publish's commit (held_fanouts).

A held endpoint (its breaker open, or hanging) is sent nothing until its hold ends, so its
deliveries need not be in the publish's transaction. There they were a third of the rows
written while two endpoints of ten were held, and every healthy endpoint's delivery waited
for them. The publish commits one row listing them, wakes a worker, then writes them and
deletes that row in a second transaction. Deleting the row is the claim: whoever deletes
it (that publish, or the sweeper after a crash or an outage in between) writes them, once.
"""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select

from app.deliveries.bulk import insert_rows
from app.extensions import db
from app.ids import new_id
from app.models import EPOCH, Delivery, Endpoint, HeldFanout, utcnow

log = logging.getLogger(__name__)

FANOUTS = HeldFanout.__table__
DELIVERIES = Delivery.__table__
ENDPOINTS = Endpoint.__table__
# A list older than this was left by a publish that did not finish (it writes its own
# within milliseconds of committing it).
GRACE = timedelta(seconds=5)
SWEEP_BATCH = 100

Held = dict[str, tuple[datetime, list[str]]]  # held endpoint -> (held until, event ids)


def stash(held: Held, now: datetime) -> str:
    """Add the list of a publish's held deliveries to its transaction; the list's id."""
    fanout_id = new_id("hfo")
    listed = [
        [endpoint_id, until.isoformat(), events] for endpoint_id, (until, events) in held.items()
    ]
    db.session.execute(
        insert(FANOUTS).values(id=fanout_id, rows=json.dumps(listed), created_at=now)
    )
    return fanout_id


def write(fanout_id: str, held: Held, now: datetime) -> None:
    """Write a committed list's deliveries, unless the sweeper has. Never raises: the
    publish has committed, and the sweeper writes what is left."""
    try:
        _take(fanout_id, held, now)
    except Exception:
        log.exception("held deliveries of %s are left to the sweeper", fanout_id)
        with contextlib.suppress(Exception):
            db.session.rollback()


def write_stale(now: datetime | None = None) -> int:
    """The sweeper's part: write the deliveries of lists their publish left; how many lists."""
    cutoff = (now or utcnow()) - GRACE
    stale = db.session.execute(
        select(FANOUTS.c.id, FANOUTS.c.rows, FANOUTS.c.created_at)
        .where(FANOUTS.c.created_at < cutoff)
        .order_by(FANOUTS.c.id)
        .limit(SWEEP_BATCH)
    ).all()
    db.session.rollback()
    taken = 0
    for fanout in stale:
        listed = json.loads(fanout.rows)
        held = {ep: (datetime.fromisoformat(until), events) for ep, until, events in listed}
        taken += _take(fanout.id, held, fanout.created_at)
    return taken


def _take(fanout_id: str, held: Held, created_at: datetime) -> bool:
    """Delete the list and, if this call is the one that did, write its deliveries (to the
    endpoints not deleted meanwhile: a delete cancels what is pending, and these would not
    be). The endpoints are share-locked, so a delete either waits and then cancels these
    too, or commits first and is seen here."""
    result = db.session.execute(delete(FANOUTS).where(FANOUTS.c.id == fanout_id))
    deleted = bool(result.rowcount)  # type: ignore[attr-defined]
    if deleted:
        kept = db.session.execute(
            select(ENDPOINTS.c.id)
            .where(ENDPOINTS.c.id.in_(list(held)), ENDPOINTS.c.deleted_at.is_(None))
            .with_for_update(read=True)
        )
        live = set(kept.scalars())
        rows = [
            {
                "id": new_id("dlv"),
                "event_id": event_id,
                "endpoint_id": endpoint_id,
                "next_attempt_at": until,
            }
            for endpoint_id, (until, events) in held.items()
            if endpoint_id in live
            for event_id in events
        ]
        insert_rows(
            DELIVERIES,
            rows,
            status="pending",
            attempts=0,
            trigger="scheduled",
            locked_until=EPOCH,
            created_at=created_at,
        )
    db.session.commit()
    return deleted
