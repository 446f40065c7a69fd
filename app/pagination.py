"""Cursor pagination over time-sortable ids, newest first."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select

from app.errors import Invalid
from app.extensions import db

T = TypeVar("T")
CURSOR = re.compile(r"^[a-z]{2,4}_[0-9a-z]{26}$")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    next_cursor: str | None


def parse_limit(raw: str | None, default: int = 50, most: int = 250) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise Invalid.field("limit", f"must be a whole number from 1 to {most}")
    return int(raw)


def parse_cursor(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    if not CURSOR.match(raw):
        raise Invalid.field("cursor", "is not a cursor this API returned")
    return raw


def paginate(stmt: Select[Any], id_column: Any, limit: int, cursor: str | None) -> Page[Any]:
    """Run ``stmt`` newest first from ``cursor``; one row more than asked tells if more exist."""
    if cursor:
        stmt = stmt.where(id_column < cursor)
    rows = list(db.session.execute(stmt.order_by(id_column.desc()).limit(limit + 1)).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, rows[-1].id if more and rows else None)
