"""What the dashboard shows about events: finding one, and where each of its deliveries stands."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select

from app.extensions import db
from app.models import Attempt, Delivery, Endpoint, Event
from app.pagination import CURSOR

# A delivery due within this long is worth watching for on the event's page.
SETTLING = timedelta(minutes=1)


def find_event(query: str) -> Event | None:
    """The event with this Herald id (``evt_...``) or this producer-given id, if any."""
    query = query.strip()
    if not query:
        return None
    # Publishing stores a producer's own id as the idempotency key "id:<their id>".
    conditions = [Event.idempotency_key == f"id:{query}"]
    if CURSOR.match(query):
        conditions.append(Event.id == query)
    return db.session.execute(select(Event).where(or_(*conditions)).limit(1)).scalar_one_or_none()


def producer_id(event: Event) -> str | None:
    """The id the producer gave the event, when it gave one."""
    key = event.idempotency_key
    return key.removeprefix("id:") if key and key.startswith("id:") else None


def delivery_counts(event_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """For each event, how many of its deliveries are in each status (one grouped query)."""
    if not event_ids:
        return {}
    rows = db.session.execute(
        select(Delivery.event_id, Delivery.status, func.count())
        .where(Delivery.event_id.in_(event_ids))
        .group_by(Delivery.event_id, Delivery.status)
    )
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for event_id, status, n in rows:
        counts[event_id][status] = n
    return dict(counts)


@dataclass(frozen=True)
class DeliveryRow:
    """One delivery of an event, with its webhook and the outcome of its latest attempt."""

    delivery: Delivery
    endpoint: Endpoint
    last_attempt: Attempt | None
    in_flight: bool
    settling: bool  # sending now or due soon, so its status will change shortly

    @property
    def can_resend(self) -> bool:
        return self.endpoint.deleted_at is None and not self.in_flight

    @property
    def waiting_on_webhook(self) -> bool:
        """Pending, but held back because its webhook is not active."""
        return self.delivery.status == "pending" and self.endpoint.status != "active"


def deliveries_of(event: Event, now: datetime) -> list[DeliveryRow]:
    """The event's deliveries (oldest first) with their webhooks and latest attempts."""
    deliveries = list(
        db.session.execute(
            select(Delivery).where(Delivery.event_id == event.id).order_by(Delivery.id)
        ).scalars()
    )
    if not deliveries:
        return []
    endpoints = {
        e.id: e
        for e in db.session.execute(
            select(Endpoint).where(Endpoint.id.in_({d.endpoint_id for d in deliveries}))
        ).scalars()
    }
    # An event has a handful of attempts per webhook, found through ix_attempts_event.
    latest: dict[str, Attempt] = {}
    for attempt in db.session.execute(
        select(Attempt).where(Attempt.event_id == event.id).order_by(Attempt.id)
    ).scalars():
        latest[attempt.delivery_id] = attempt
    rows = []
    for d in deliveries:
        endpoint = endpoints[d.endpoint_id]
        in_flight = d.status == "pending" and d.locked_until > now
        due_soon = (
            d.status == "pending"
            and endpoint.status == "active"
            and endpoint.deleted_at is None
            and d.next_attempt_at - now < SETTLING
        )
        rows.append(DeliveryRow(d, endpoint, latest.get(d.id), in_flight, in_flight or due_soon))
    return rows
