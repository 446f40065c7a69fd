"""The attempt log: newest first, filtered, cursor-paginated on the (endpoint, id) index."""

from __future__ import annotations

from sqlalchemy import select

from app.errors import Invalid, NotFound
from app.extensions import db
from app.models import Attempt
from app.pagination import Page, paginate

STATUSES = {"success", "failure"}


def list_attempts(
    endpoint_id: str,
    limit: int,
    cursor: str | None,
    status: str | None = None,
    event_type: str | None = None,
    event_id: str | None = None,
) -> Page[Attempt]:
    stmt = select(Attempt).where(Attempt.endpoint_id == endpoint_id)
    if status:
        if status not in STATUSES:
            raise Invalid.field("status", "must be success or failure")
        stmt = stmt.where(Attempt.status == status)
    if event_type:
        stmt = stmt.where(Attempt.event_type == event_type)
    if event_id:
        stmt = stmt.where(Attempt.event_id == event_id)
    return paginate(stmt, Attempt.id, limit, cursor)


def get_attempt(attempt_id: str) -> Attempt:
    """The attempt with this id, or NotFound."""
    row = db.session.get(Attempt, attempt_id)
    if row is None:
        raise NotFound(f"no attempt {attempt_id}")
    return row
