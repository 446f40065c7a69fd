"""Reading events back and queueing them again."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, select, update

from app.errors import NotFound
from app.extensions import db
from app.models import EPOCH, Delivery, Endpoint, Event, utcnow
from app.pagination import Page, paginate
from app.runtime import runtime


def get_event(event_id: str) -> Event:
    """The event with this id, or NotFound."""
    event = db.session.get(Event, event_id)
    if event is None:
        raise NotFound(f"no event {event_id}")
    return event


def list_events(limit: int, cursor: str | None, type_name: str | None = None) -> Page[Event]:
    stmt = select(Event)
    if type_name:
        stmt = stmt.where(Event.type == type_name)
    return paginate(stmt, Event.id, limit, cursor)


def deliveries_of(event_id: str) -> list[Delivery]:
    stmt = select(Delivery).where(Delivery.event_id == event_id).order_by(Delivery.id)
    return list(db.session.execute(stmt).scalars())


def redeliver(event: Event, endpoint_id: str | None = None) -> int:
    """Queue the event again to every endpoint it went to, or to one (creating the delivery)."""
    now = utcnow()
    if endpoint_id is not None:
        endpoint = db.session.get(Endpoint, endpoint_id)
        if endpoint is None or endpoint.deleted_at is not None:
            raise NotFound(f"no webhook {endpoint_id}")
        existing = db.session.execute(
            select(Delivery).where(
                Delivery.event_id == event.id, Delivery.endpoint_id == endpoint_id
            )
        ).scalar_one_or_none()
        if existing is None:
            db.session.add(Delivery(event_id=event.id, endpoint_id=endpoint_id, trigger="manual"))
            db.session.commit()
            runtime().broker.request_drain()
            return 1
        targets = [existing.id]
    else:
        live = select(Endpoint.id).where(Endpoint.deleted_at.is_(None))
        targets = list(
            db.session.execute(
                select(Delivery.id).where(
                    Delivery.event_id == event.id, Delivery.endpoint_id.in_(live)
                )
            ).scalars()
        )
    return resend(targets, now)


def resend(delivery_ids: list[str], now: Any = None) -> int:
    """Make these deliveries due now as one manual try each (ones in flight are left alone)."""
    if not delivery_ids:
        return 0
    now = now or utcnow()
    result = db.session.execute(
        update(Delivery)
        .where(Delivery.id.in_(delivery_ids), Delivery.locked_until <= now)
        .values(
            status="pending",
            next_attempt_at=now,
            locked_until=EPOCH,
            # A delivery still in its schedule keeps it; a finished one gets one manual try.
            trigger=case((Delivery.status == "pending", Delivery.trigger), else_="manual"),
            cancel_reason=None,
        )
    )
    db.session.commit()
    runtime().broker.request_drain()
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
