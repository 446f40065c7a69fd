"""The recorder's two bulk writes: new attempt rows, and each claimed delivery moved on.

On PostgreSQL each is one statement over a JSON array of rows: psycopg's ``executemany``
runs a statement per row, and its array parameters are built element by element in
Python, which cost the worker about 100 and 40 us of CPU a delivery; ``json.dumps`` of the
batch costs about 3. Elsewhere (SQLite) ``executemany`` is one prepared statement in C.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, text, update

from app.extensions import db
from app.models import EPOCH, Attempt, Delivery

ATTEMPTS = Attempt.__table__
DELIVERIES = Delivery.__table__

# Columns each attempt row carries (created_at is one value for the whole batch).
ATTEMPT_COLUMNS = ", ".join(c.name for c in ATTEMPTS.columns if c.name != "created_at")

INSERT_ATTEMPTS = text(
    f"INSERT INTO attempts ({ATTEMPT_COLUMNS}, created_at) "  # noqa: S608 - column names only
    f"SELECT {ATTEMPT_COLUMNS}, :created_at "
    "FROM json_populate_recordset(NULL::attempts, CAST(:rows AS json))"
)

# A delivery moves on only if this worker's lease still holds (an expired lease may
# have been claimed again by another worker, whose attempt then decides).
FINISH_DELIVERIES = text(
    """
    UPDATE deliveries AS d
    SET status = v.status, attempts = v.attempts, next_attempt_at = v.next_at,
        last_attempt_at = :now, locked_until = :epoch
    FROM json_to_recordset(CAST(:rows AS json))
         AS v(id varchar, lease timestamptz, status varchar, attempts integer,
              next_at timestamptz)
    WHERE d.id = v.id AND d.locked_until = v.lease
    """
)

Move = tuple[str, datetime | None, str, int, datetime]


def _postgres() -> bool:
    return bool(db.session.get_bind().dialect.name == "postgresql")


def insert_attempts(rows: Sequence[dict[str, Any]], created_at: datetime) -> None:
    """Insert attempt rows (every column but created_at), all made at ``created_at``."""
    if not rows:
        return
    if not _postgres():
        db.session.execute(insert(ATTEMPTS), [{**row, "created_at": created_at} for row in rows])
        return
    db.session.execute(INSERT_ATTEMPTS, {"rows": json.dumps(rows), "created_at": created_at})


def finish_deliveries(moves: Sequence[Move], now: datetime) -> None:
    """Apply (delivery id, lease, status, attempts, next attempt at) to leased deliveries."""
    if not moves:
        return
    moves = sorted(moves)  # one lock order for every writer
    if _postgres():
        rows = [
            {
                "id": delivery_id,
                "lease": lease.isoformat() if lease else None,
                "status": status,
                "attempts": attempts,
                "next_at": next_at.isoformat(),
            }
            for delivery_id, lease, status, attempts, next_at in moves
        ]
        db.session.execute(
            FINISH_DELIVERIES, {"rows": json.dumps(rows), "now": now, "epoch": EPOCH}
        )
        return
    stmt = (
        update(DELIVERIES)
        .where(DELIVERIES.c.id == bindparam("b_id"))
        .where(DELIVERIES.c.locked_until == bindparam("b_lease"))
        .values(
            status=bindparam("b_status"),
            attempts=bindparam("b_attempts"),
            next_attempt_at=bindparam("b_next"),
            last_attempt_at=now,
            locked_until=EPOCH,
        )
    )
    db.session.execute(
        stmt,
        [
            {"b_id": i, "b_lease": lease, "b_status": s, "b_attempts": n, "b_next": at}
            for i, lease, s, n, at in moves
        ],
    )
