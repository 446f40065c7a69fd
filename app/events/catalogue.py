"""The event-type catalogue: names, descriptions and optional JSON schemas for ``data``."""

from __future__ import annotations

from typing import Any

from jsonschema.validators import validator_for
from sqlalchemy import select

from app.errors import Conflict, Invalid, NotFound, parse
from app.events.schemas import EventTypeIn
from app.extensions import db
from app.models import EventType, utcnow


def parse_event_type(body: Any) -> EventTypeIn:
    return parse(EventTypeIn, body)


def list_event_types(include_archived: bool = False) -> list[EventType]:
    stmt = select(EventType).order_by(EventType.name)
    if not include_archived:
        stmt = stmt.where(EventType.archived_at.is_(None))
    return list(db.session.execute(stmt).scalars())


def create_event_type(spec: EventTypeIn) -> EventType:
    existing = db.session.get(EventType, spec.name)
    if existing is not None and existing.archived_at is None:
        raise Conflict(f"event type {spec.name} already exists")
    if existing is not None:  # re-adding an archived type brings it back
        existing.archived_at = None
        existing.description = spec.description
        existing.schema = spec.schema_
        db.session.commit()
        return existing
    event_type = EventType(name=spec.name, description=spec.description, schema=spec.schema_)
    db.session.add(event_type)
    db.session.commit()
    return event_type


def get_event_type(name: str) -> EventType:
    """The event type with this name, or NotFound."""
    event_type = db.session.get(EventType, name)
    if event_type is None:
        raise NotFound(f"no event type {name}")
    return event_type


def archive_event_type(event_type: EventType) -> None:
    """Archived types take no new events or subscriptions; history stays."""
    event_type.archived_at = utcnow()
    db.session.commit()


def check_data(types: dict[str, Any], type_name: str, data: Any, field: str) -> None:
    """Raise Invalid unless ``type_name`` is a live type and ``data`` matches its schema."""
    event_type = types.get(type_name)
    if event_type is None or event_type.archived_at is not None:
        raise Invalid.field(field.replace("data", "type"), f"unknown event type {type_name!r}")
    if event_type.schema:
        validator = validator_for(event_type.schema)(event_type.schema)
        error = next(iter(validator.iter_errors(data)), None)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path)
            detail = f"{error.message}" + (f" (at {where})" if where else "")
            raise Invalid.field(field, f"does not match the schema of {type_name}: {detail}")


def load_types(names: set[str]) -> dict[str, Any]:
    """The named types' name, schema and archived_at (core rows: every publish reads them)."""
    rows = db.session.execute(
        select(EventType.name, EventType.schema, EventType.archived_at).where(
            EventType.name.in_(names)
        )
    )
    return {t.name: t for t in rows}
