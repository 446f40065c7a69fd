"""The typed models: the database is the source of truth for everything owed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.ids import new_id

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class User(UserMixin, db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("key"))
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class EventType(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "event_types"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    schema: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Endpoint(db.Model):  # type: ignore[name-defined,misc]
    """A subscriber URL (API name: webhook)."""

    __tablename__ = "endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("wh"))
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    events: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="active")
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    rate_limit: Mapped[int | None] = mapped_column(Integer)
    signature: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    secret_enc: Mapped[str] = mapped_column(Text)
    previous_secret_enc: Mapped[str | None] = mapped_column(Text)
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A worker holds this endpoint's deliveries back until then (its breaker is open, or it
    # hangs): a publish inserts them already held, so no claim meets them and no push has
    # to move them. Set and cleared by the worker (app/deliveries/holds.py); it expires by
    # itself, so a worker that dies holding it delays them at most that long.
    held_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_endpoints_status", "status"),)


def subscribes(events: list[str], event_type: str) -> bool:
    """Whether an endpoint subscribed to ``events`` (its ``events`` column) gets
    ``event_type``: a function of the column, so a publish's core rows can ask too."""
    return "*" in events or event_type in events


class Event(db.Model):  # type: ignore[name-defined,misc]
    """A published event; ``payload`` is the exact body every delivery sends."""

    __tablename__ = "events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("evt"))
    type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[str] = mapped_column(Text)
    live_mode: Mapped[bool] = mapped_column(Boolean, default=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    request_hash: Mapped[str | None] = mapped_column(String(64))
    coalesce_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_events_type_id", "type", "id"),
        Index("ix_events_coalesce", "coalesce_key", "type"),
    )

    def body(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.payload)
        return parsed


class Delivery(db.Model):  # type: ignore[name-defined,misc]
    """One event bound for one endpoint; claimed by a worker through ``locked_until``."""

    __tablename__ = "deliveries"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("dlv"))
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"))
    # No foreign key: endpoints are never deleted (only marked), and its check, once per
    # row a publish inserts, was a third of a fan-out's cost (migration 0005).
    endpoint_id: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime] = mapped_column(UTCDateTime, default=lambda: EPOCH)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_reason: Mapped[str | None] = mapped_column(String(32))
    trigger: Mapped[str] = mapped_column(String(16), default="scheduled")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        Index("ix_deliveries_endpoint_due", "endpoint_id", "status", "next_attempt_at"),
        Index("ix_deliveries_event", "event_id"),
        # Room in each page keeps a claim's update of locked_until a HOT update (0003).
        {"postgresql_with": {"fillfactor": 70}},
    )


class HeldFanout(db.Model):  # type: ignore[name-defined,misc]
    """A publish's deliveries to held endpoints, written a moment after its commit.

    The publish commits this row with its events and their other deliveries; its process's
    writer thread then writes the held deliveries it lists, deleting it. If that never
    happens (a crash, an outage), the sweeper does it (app/events/fanouts.py).
    """

    __tablename__ = "held_fanouts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("hfo"))
    # JSON: [[endpoint id, held until (ISO), [event ids]], ...]
    rows: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Attempt(db.Model):  # type: ignore[name-defined,misc]
    """One HTTP request of a delivery, logged whatever its outcome."""

    __tablename__ = "attempts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("att"))
    delivery_id: Mapped[str] = mapped_column(ForeignKey("deliveries.id"))
    endpoint_id: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(100))
    number: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(Text)
    http_status: Mapped[int | None] = mapped_column(Integer)
    request_headers: Mapped[dict[str, str]] = mapped_column(JSON)
    response_headers: Mapped[dict[str, str] | None] = mapped_column(JSON)
    response_body: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_attempts_endpoint_id", "endpoint_id", "id"),
        # The dashboard's log filters: a rare status or type must not scan the whole log.
        Index("ix_attempts_endpoint_status_id", "endpoint_id", "status", "id"),
        Index("ix_attempts_endpoint_type_id", "endpoint_id", "event_type", "id"),
        Index("ix_attempts_delivery", "delivery_id"),
        Index("ix_attempts_event", "event_id"),
    )


class RetainedDeliveryCount(db.Model):  # type: ignore[name-defined,misc]
    """Finished deliveries that retention deleted, counted per endpoint and final status.

    The webhook's delivery counters add these to the live rows, so they stay right after
    old deliveries are gone.
    """

    __tablename__ = "retained_delivery_counts"

    endpoint_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
