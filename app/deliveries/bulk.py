"""Bulk writes on the hot paths: events and deliveries at publish, attempts and moved-on
deliveries in the recorder.

On PostgreSQL each is one statement over a JSON array of rows: psycopg's ``executemany``
runs a statement per row, and its array parameters are built element by element in
Python, which cost about 100 and 40 us of CPU a row; ``json.dumps`` of the batch costs
about 3. Elsewhere (SQLite) ``executemany`` is one prepared statement in C.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, TextClause, bindparam, insert, text, update

from app.extensions import db
from app.models import EPOCH, Delivery

DELIVERIES = Delivery.__table__

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
Rows = tuple[Table, Sequence[dict[str, Any]], dict[str, Any]]  # table, rows, shared values
Shape = tuple[str, tuple[str, ...], tuple[str, ...]]  # table, row columns, shared columns


def on_postgres() -> bool:
    """Whether this session's database is PostgreSQL (elsewhere it is SQLite)."""
    return bool(db.session.get_bind().dialect.name == "postgresql")


def _insert_sql(table: str, columns: tuple[str, ...], same: tuple[str, ...], prefix: str) -> str:
    # Only names from Herald's own tables and rows reach this text, never a value.
    return (
        f"INSERT INTO {table} ({', '.join((*columns, *same))}) "  # noqa: S608
        f"SELECT {', '.join((*columns, *(f':{prefix}{name}' for name in same)))} "
        f"FROM json_populate_recordset(NULL::{table}, CAST(:{prefix}rows AS json))"
    )


@functools.cache
def _insert_statement(table: str, columns: tuple[str, ...], same: tuple[str, ...]) -> TextClause:
    return text(_insert_sql(table, columns, same, ""))


@functools.cache
def _family_statement(shapes: tuple[Shape, ...]) -> TextClause:
    *first, last = (_insert_sql(*shape, f"t{n}_") for n, shape in enumerate(shapes))
    ctes = ", ".join(f"t{n} AS ({sql})" for n, sql in enumerate(first))
    return text(f"WITH {ctes} {last}")


def insert_rows(table: Table, rows: Sequence[dict[str, Any]], **same: Any) -> None:
    """Insert ``rows`` (each with the same keys, JSON-able values or aware datetimes), all
    sharing ``same``."""
    if not rows:
        return
    if not on_postgres():
        db.session.execute(insert(table), [{**row, **same} for row in rows])
        return
    statement = _insert_statement(table.name, tuple(rows[0]), tuple(same))
    db.session.execute(statement, {"rows": _json(rows), **same})


def insert_family(parent: Rows, *children: Rows) -> None:
    """Insert rows, and rows of other tables (which may refer to them), each as
    insert_rows's table, rows and shared values: on PostgreSQL in one statement, so a
    publish waits for one round trip before its commit, not one a table. The children's
    foreign keys are checked at the end of the statement, when the parent rows are there."""
    family = [rows for rows in (parent, *children) if rows[1]]
    if not (on_postgres() and parent[1] and len(family) > 1):
        for table, rows, same in family:
            insert_rows(table, rows, **same)
        return
    statement = _family_statement(
        tuple((table.name, tuple(rows[0]), tuple(same)) for table, rows, same in family)
    )
    params: dict[str, Any] = {}
    for n, (_, rows, same) in enumerate(family):
        params[f"t{n}_rows"] = _json(rows)
        params.update({f"t{n}_{name}": value for name, value in same.items()})
    db.session.execute(statement, params)


def _json(rows: Sequence[dict[str, Any]]) -> str:
    return json.dumps(rows, default=_json_value)


def _json_value(value: Any) -> str:
    """A row's datetime as the ISO text json_populate_recordset reads (aware: UTC kept)."""
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


def finish_deliveries(moves: Sequence[Move], now: datetime) -> None:
    """Apply (delivery id, lease, status, attempts, next attempt at) to leased deliveries."""
    if not moves:
        return
    moves = sorted(moves)  # one lock order for every writer
    if on_postgres():
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
