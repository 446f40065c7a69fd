"""Publishing: validate, de-duplicate, fan out to subscribed endpoints, coalesce, then wake.

The event and its deliveries are written in one transaction; the worker is woken only
after the commit (and the sweeper covers a crash in between).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from app.deliveries.bulk import insert_family
from app.deliveries.engine import LIVE_ENDPOINT, payload_json
from app.errors import Conflict, Invalid, parse
from app.events import fanouts
from app.events.catalogue import check_data, load_types
from app.events.schemas import EventBatchIn, EventIn
from app.extensions import db
from app.ids import new_id
from app.models import EPOCH, Delivery, Endpoint, Event, subscribes, utcnow
from app.runtime import runtime

IDEMPOTENCY_WINDOW = timedelta(hours=24)
EVENTS = Event.__table__
DELIVERIES = Delivery.__table__
ENDPOINTS = Endpoint.__table__
# Core rows, not ORM objects: every publish reads every live endpoint.
LIVE_ENDPOINTS = select(ENDPOINTS.c.id, ENDPOINTS.c.events, ENDPOINTS.c.held_until).where(
    *LIVE_ENDPOINT
)


@dataclass(frozen=True)
class Published:
    id: str
    type: str
    created_at: datetime
    deliveries: int

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "created_at": iso(self.created_at),
            "deliveries": self.deliveries,
        }


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_event(body: Any) -> EventIn:
    return parse(EventIn, body)


def parse_batch(body: Any) -> EventBatchIn:
    return parse(EventBatchIn, body)


def _dedupe_key(spec: EventIn, header_key: str | None, index: int | None) -> str | None:
    if header_key:
        return f"key:{header_key}" if index is None else f"key:{header_key}#{index}"
    if spec.id:
        return f"id:{spec.id}"
    return None


def _hash(spec: EventIn) -> str:
    canonical = json.dumps(spec.model_dump(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def publish(specs: list[EventIn], header_key: str | None, batch: bool) -> list[Published]:
    """Publish events all or nothing; a repeated idempotency key answers the first result."""
    types = load_types({s.type for s in specs})
    prefix = "events." if batch else ""
    for i, spec in enumerate(specs):
        where = f"{prefix}{i}.data" if batch else "data"
        check_data(types, spec.type, spec.data, where)
    keys = [_dedupe_key(s, header_key, i if batch else None) for i, s in enumerate(specs)]
    seen: set[str] = set()
    for i, key in enumerate(keys):
        if key and key in seen:
            raise Invalid.field(f"{prefix}{i}.id", "is repeated within this batch")
        if key:
            seen.add(key)
    hashes = [_hash(s) for s in specs]
    try:
        return _publish(specs, keys, hashes)
    except IntegrityError:
        # Another request took the same key between our look-up and our insert.
        db.session.rollback()
        return _publish(specs, keys, hashes)


def _previous(keys: list[str | None], hashes: list[str]) -> dict[int, Event]:
    """Events already published under these keys within the window (409 on another body)."""
    wanted = {k for k in keys if k}
    if not wanted:
        return {}
    now = utcnow()
    found = {
        e.idempotency_key: e
        for e in db.session.execute(
            select(Event).where(Event.idempotency_key.in_(wanted))
        ).scalars()
    }
    earlier: dict[int, Event] = {}
    for i, key in enumerate(keys):
        event = found.get(key) if key else None
        if event is None:
            continue
        if now - event.created_at > IDEMPOTENCY_WINDOW:
            event.idempotency_key = None  # expired: the key is free again
            continue
        if event.request_hash != hashes[i]:
            raise Conflict("this idempotency key was already used with a different body")
        earlier[i] = event
    db.session.flush()
    return earlier


def _publish(specs: list[EventIn], keys: list[str | None], hashes: list[str]) -> list[Published]:
    earlier = _previous(keys, hashes)
    endpoints = db.session.execute(LIVE_ENDPOINTS).all()
    now = utcnow()
    # Deliveries to an endpoint a worker holds are inserted held (next_attempt_at), so no
    # claim meets them and no worker has to move them after. They are written a moment
    # after the commit (fanouts.py), off the other deliveries' path, unless the batch
    # coalesces: a newer event's supersede must find an older one's held deliveries.
    held = {ep.id: ep.held_until for ep in endpoints if ep.held_until and ep.held_until > now}
    held_inline = bool(held) and any(spec.coalesce_key for spec in specs)
    results: list[Published] = []
    event_rows: list[dict[str, Any]] = []
    delivery_rows: list[dict[str, Any]] = []
    later: fanouts.Held = {}  # held endpoint -> (held until, its events)
    newest_by_coalesce: dict[tuple[str, str], tuple[str, list[str]]] = {}
    for i, spec in enumerate(specs):
        if i in earlier:
            event = earlier[i]
            count = db.session.execute(
                select(func.count()).where(DELIVERIES.c.event_id == event.id)
            ).scalar_one()
            results.append(Published(event.id, event.type, event.created_at, count))
            continue
        event_id = new_id("evt")
        body = {
            "id": event_id,
            "type": spec.type,
            "created_at": iso(now),
            "live_mode": True,
            "data": spec.data,
            "previous_data": spec.previous_data,
        }
        event_rows.append(
            {
                "id": event_id,
                "type": spec.type,
                "payload": payload_json(body),
                "live_mode": True,
                "idempotency_key": keys[i],
                "request_hash": hashes[i],
                "coalesce_key": spec.coalesce_key,
            }
        )
        targets = [ep.id for ep in endpoints if subscribes(ep.events, spec.type)]
        for endpoint_id in targets:
            if endpoint_id in held and not held_inline:
                later.setdefault(endpoint_id, (held[endpoint_id], []))[1].append(event_id)
                continue
            row: dict[str, Any] = {
                "id": new_id("dlv"),
                "event_id": event_id,
                "endpoint_id": endpoint_id,
                "status": "pending",
                "attempts": 0,
                "trigger": "scheduled",
            }
            if held_inline:
                row["next_attempt_at"] = held.get(endpoint_id, now)
            delivery_rows.append(row)
        if spec.coalesce_key:
            newest_by_coalesce[(spec.coalesce_key, spec.type)] = (event_id, targets)
        results.append(Published(event_id, spec.type, now, len(targets)))
    due = {} if held_inline else {"next_attempt_at": now}  # else in each row: one statement
    listed = [fanouts.listing(later)] if later else []
    insert_family(
        (EVENTS, event_rows, {"created_at": now}),
        (DELIVERIES, delivery_rows, {**due, "locked_until": EPOCH, "created_at": now}),
        (fanouts.FANOUTS, listed, {"created_at": now}),
    )
    for (coalesce_key, type_name), (newest, targets) in newest_by_coalesce.items():
        supersede(coalesce_key, type_name, newest, targets, now)
    db.session.commit()
    if delivery_rows:
        runtime().broker.request_drain()
    for fanout in listed:
        fanouts.write_later(fanouts.Listed(fanout["id"], later, now))
    return results


def supersede(
    coalesce_key: str, type_name: str, newest: str, targets: list[str], now: datetime
) -> None:
    """Cancel unsucceeded deliveries of older events with the same key, type and endpoint.

    One being sent right now is cancelled too: taking its lease means the worker's outcome
    is logged as an attempt but cannot put the delivery back in the queue, so a failed older
    state is never retried after the newest one.
    """
    if not targets:
        return
    older = select(EVENTS.c.id).where(
        EVENTS.c.coalesce_key == coalesce_key,
        EVENTS.c.type == type_name,
        EVENTS.c.id != newest,
        EVENTS.c.id < newest,
    )
    db.session.execute(
        update(DELIVERIES)
        .where(
            DELIVERIES.c.event_id.in_(older),
            DELIVERIES.c.endpoint_id.in_(targets),
            DELIVERIES.c.status == "pending",
        )
        .values(status="cancelled", cancel_reason="superseded", locked_until=EPOCH)
    )
