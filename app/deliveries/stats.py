"""Numbers about an endpoint's recent deliveries: 24 h success rates, hourly health, last send.

Every query reads a bounded slice of the attempt log through the (endpoint_id, id) index:
ids sort by time, so "the last 24 hours" is an id range and history never gets scanned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Integer, cast, func, select

from app.extensions import db
from app.ids import id_floor
from app.models import Attempt, Delivery

DAY = timedelta(hours=24)


@dataclass(frozen=True)
class Tally:
    """Successful and failed attempts in a window."""

    success: int = 0
    failure: int = 0

    @property
    def total(self) -> int:
        return self.success + self.failure

    @property
    def rate(self) -> float | None:
        """The share of attempts that succeeded, or None when there were none."""
        return self.success / self.total if self.total else None


@dataclass(frozen=True)
class HourBucket:
    start: datetime
    tally: Tally


def _hour_number(dialect: str) -> ColumnElement[Any]:
    """Hours since the epoch of an attempt, computed in the database to group by."""
    if dialect == "sqlite":
        # // is integer division in SQL; SQLAlchemy's / would divide as floats.
        return cast(func.strftime("%s", Attempt.created_at), Integer) // 3600
    return cast(func.floor(func.extract("epoch", Attempt.created_at) / 3600), Integer)


def hourly_health(endpoint_id: str, now: datetime, hours: int = 24) -> list[HourBucket]:
    """Successes and failures per hour over the last ``hours`` hours, oldest first."""
    current = int(now.timestamp()) // 3600
    first = current - hours + 1
    since = datetime.fromtimestamp(first * 3600, tz=now.tzinfo)
    hour = _hour_number(db.engine.dialect.name).label("hour")
    rows = db.session.execute(
        select(hour, Attempt.status, func.count())
        .where(Attempt.endpoint_id == endpoint_id, Attempt.id >= id_floor("att", since.timestamp()))
        .group_by(hour, Attempt.status)
    ).all()
    counts: dict[int, dict[str, int]] = {}
    for number, status, n in rows:
        bucket = counts.setdefault(int(number), {})
        bucket[status] = bucket.get(status, 0) + n
    return [
        HourBucket(
            datetime.fromtimestamp(h * 3600, tz=now.tzinfo),
            Tally(counts.get(h, {}).get("success", 0), counts.get(h, {}).get("failure", 0)),
        )
        for h in range(first, current + 1)
    ]


def day_tallies(endpoint_ids: Sequence[str], now: datetime) -> dict[str, Tally]:
    """For each endpoint, its attempts' successes and failures over the last 24 hours."""
    if not endpoint_ids:
        return {}
    since = id_floor("att", (now - DAY).timestamp())
    # One count per endpoint and status, each an index range on (endpoint_id, status, id):
    # a grouped query would let SQLite walk the endpoint's whole history instead.
    counts = [
        select(func.count())
        .select_from(Attempt)
        .where(Attempt.endpoint_id == e, Attempt.status == status, Attempt.id >= since)
        .scalar_subquery()
        for e in endpoint_ids
        for status in ("success", "failure")
    ]
    row = db.session.execute(select(*counts)).one()
    return {e: Tally(int(row[2 * i]), int(row[2 * i + 1])) for i, e in enumerate(endpoint_ids)}


def last_attempts(endpoint_ids: Sequence[str]) -> dict[str, Attempt]:
    """Each endpoint's newest attempt (one index probe per endpoint), when it has one."""
    if not endpoint_ids:
        return {}
    newest = [
        select(func.max(Attempt.id)).where(Attempt.endpoint_id == e).scalar_subquery()
        for e in endpoint_ids
    ]
    ids = [i for i in db.session.execute(select(*newest)).one() if i is not None]
    if not ids:
        return {}
    rows = db.session.execute(select(Attempt).where(Attempt.id.in_(ids))).scalars()
    return {a.endpoint_id: a for a in rows}


def open_deliveries(endpoint_id: str) -> int:
    """Deliveries still owed to the endpoint (retrying, or waiting for it to be enabled)."""
    return int(
        db.session.execute(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.endpoint_id == endpoint_id, Delivery.status == "pending")
        ).scalar_one()
    )


def get_delivery(delivery_id: str) -> Delivery | None:
    """The delivery behind an attempt: whether and when it will be tried again."""
    return db.session.get(Delivery, delivery_id)
