"""Retention: delete attempts, finished deliveries and event payloads older than
HERALD_RETENTION_DAYS, in bounded batches, each its own short transaction.

"Keeping the counters right" means the webhook's delivery counters (``deliveries`` on
``GET /v1/webhooks/{id}``) read the same before and after: each batch of finished deliveries
it deletes is added to ``retained_delivery_counts`` in the same transaction, and the counters
add that table to the live rows. Nothing still owed is touched: a pending delivery and its
event stay whatever their age. Ids sort by time, so "older than" is a primary-key range and
every batch walks an index, never the whole table.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, exists, select
from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db
from app.ids import id_floor
from app.models import Attempt, Delivery, Event, RetainedDeliveryCount, utcnow

FINISHED = ("succeeded", "failed", "cancelled")
COUNTED = ("succeeded", "failed")


@dataclass
class Purged:
    """What one retention run deleted."""

    attempts: int = 0
    deliveries: int = 0
    events: int = 0
    batches: int = 0
    longest_batch: float = 0.0  # seconds: the longest any one transaction held its locks

    @property
    def total(self) -> int:
        return self.attempts + self.deliveries + self.events


def retained_counts(endpoint_id: str) -> dict[str, int]:
    """Finished deliveries of this endpoint that retention has deleted, by status."""
    rows = db.session.execute(
        select(RetainedDeliveryCount.status, RetainedDeliveryCount.count).where(
            RetainedDeliveryCount.endpoint_id == endpoint_id
        )
    ).all()
    return {status: int(count) for status, count in rows}


def purge(
    days: int,
    batch: int = 1000,
    now: datetime | None = None,
    pause: float = 0.0,
    max_batches: int | None = None,
) -> Purged:
    """Delete what is older than ``days`` days, ``batch`` rows per transaction."""
    cutoff = (now or utcnow()) - timedelta(days=days)
    done = Purged()
    limit = max_batches if max_batches is not None else 10**9
    for step in (_attempts_batch, _deliveries_batch, _events_batch):
        after = ""
        while done.batches < limit:
            started = time.monotonic()
            count, after = step(cutoff, batch, after, done)
            done.batches += 1
            done.longest_batch = max(done.longest_batch, time.monotonic() - started)
            if count < batch:
                break
            if pause:
                time.sleep(pause)  # let the workers' writes through between batches
    return done


def _older(
    id_column: Any, prefix: str, cutoff: datetime, after: str, batch: int, *columns: Any
) -> Select[Any]:
    """The next ``batch`` rows made before ``cutoff``, after ``after``: a primary-key range."""
    return (
        select(id_column, *columns)
        .where(id_column < id_floor(prefix, cutoff.timestamp()), id_column > after)
        .order_by(id_column)
        .limit(batch)
    )


def _attempts_batch(cutoff: datetime, batch: int, after: str, done: Purged) -> tuple[int, str]:
    ids = list(db.session.execute(_older(Attempt.id, "att", cutoff, after, batch)).scalars())
    if ids:
        db.session.execute(delete(Attempt).where(Attempt.id.in_(ids)))
    db.session.commit()
    done.attempts += len(ids)
    return len(ids), ids[-1] if ids else after


def _deliveries_batch(cutoff: datetime, batch: int, after: str, done: Purged) -> tuple[int, str]:
    """Finished deliveries whose last attempt is older than the cutoff, counted as they go."""
    scanned = list(
        db.session.execute(
            _older(
                Delivery.id, "dlv", cutoff, after, batch, Delivery.status, Delivery.last_attempt_at
            )
        ).all()
    )
    wanted = [
        row.id
        for row in scanned
        if row.status in FINISHED and (row.last_attempt_at is None or row.last_attempt_at < cutoff)
    ]
    if wanted:
        # A recent attempt (a manual resend of an old delivery) keeps its delivery: the
        # attempts step deleted only old ones, so its rows must go before the delivery.
        db.session.execute(delete(Attempt).where(Attempt.delivery_id.in_(wanted)))
        # The status is checked again in the DELETE: a delivery recovered since the SELECT
        # is pending now and must stay. RETURNING says exactly what went, for the counters.
        gone = db.session.execute(
            delete(Delivery)
            .where(Delivery.id.in_(wanted), Delivery.status.in_(FINISHED))
            .returning(Delivery.endpoint_id, Delivery.status)
        ).all()
        _add_retained(Counter((row.endpoint_id, row.status) for row in gone))
        done.deliveries += len(gone)
    db.session.commit()
    return len(scanned), scanned[-1].id if scanned else after


def _add_retained(counts: Counter[tuple[str, str]]) -> None:
    rows = [
        {"endpoint_id": endpoint_id, "status": status, "count": n}
        for (endpoint_id, status), n in counts.items()
        if status in COUNTED
    ]
    if not rows:
        return
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(RetainedDeliveryCount).values(rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=["endpoint_id", "status"],
        set_={"count": RetainedDeliveryCount.count + stmt.excluded.count},
    )
    db.session.execute(stmt)


def _events_batch(cutoff: datetime, batch: int, after: str, done: Purged) -> tuple[int, str]:
    """Old events with no delivery left (their payload goes with them)."""
    scanned = list(db.session.execute(_older(Event.id, "evt", cutoff, after, batch)).scalars())
    if scanned:
        owed = exists().where(Delivery.event_id == Event.id)
        result = db.session.execute(
            delete(Event).where(Event.id.in_(scanned), ~owed).returning(Event.id)
        ).all()
        done.events += len(result)
    db.session.commit()
    return len(scanned), scanned[-1] if scanned else after
