"""The claim on PostgreSQL in one round trip, on a connection a drain keeps for its claims.

Through the ORM session a claim took five round trips (the pool's ping and BEGIN on
checkout, the planner settings, the claim, COMMIT): 4-5 ms a claim at 300 events/s, up to
15-30 ms when the two cores were busy, since each trip waits for the server's process to be
scheduled. Pipelined (psycopg's pipeline mode) they go as one.

The claim's COMMIT does not wait for the WAL to reach the disk (``synchronous_commit``
off, for that transaction only). A claim writes only a lease: if the server crashed before
writing it out, the delivery would be claimable again, and its attempt sent again, as after
a worker's crash (at least once, never lost). Recording an attempt commits durably, which
flushes every claim before it too.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import Connection, Engine

# Transaction-local: a claim touches a few hundred rows, so index scans in order and nested
# loops are always the plan, whatever the table's statistics say. Left to its own plan over
# a table not yet analysed (a burst into a new install), PostgreSQL guessed a few due rows
# and read, probed and sorted all of them: 55 to 550 ms a claim at 30,000 due instead of 3.
# The penalties that steer the planner inflate the plan's cost, so JIT is off too: it would
# compile the claim every time (400 ms).
SETTINGS = "SELECT " + ", ".join(
    f"set_config('{name}', 'off', true)"
    for name in (
        "synchronous_commit",
        "jit",
        *(f"enable_{kind}" for kind in ("sort", "seqscan", "bitmapscan", "hashjoin", "mergejoin")),
    )
)

# Candidates are locked (SKIP LOCKED) before the per-endpoint cut, so the window is only
# twice the claim: each one locked and not taken is a wasted write. Workers claiming at once
# skip each other's rows instead of waiting on them, and the due conditions are rechecked
# as each row is locked. The live-endpoint test is a correlated EXISTS, one primary-key
# probe per candidate (OFFSET 0 keeps it from being pulled up into a join that read and
# sorted the whole due backlog). The conditions are app.deliveries.engine.due_filter's.
CLAIM = """
WITH claimed AS (
    UPDATE deliveries SET locked_until = %(lease)s
    WHERE id IN (
        SELECT ranked.id FROM (
            SELECT w.id,
                   row_number() OVER (PARTITION BY w.endpoint_id ORDER BY w.next_attempt_at)
                   AS rank
            FROM (
                SELECT d.id, d.endpoint_id, d.next_attempt_at
                FROM deliveries AS d
                WHERE d.status = 'pending'
                  AND d.next_attempt_at <= %(due_by)s
                  AND d.locked_until <= %(now)s
                  AND EXISTS (
                      SELECT e.id FROM endpoints AS e
                      WHERE e.id = d.endpoint_id AND e.status = 'active'
                        AND e.deleted_at IS NULL
                      OFFSET 0
                  )
                  AND (d.endpoint_id <> ALL (CAST(%(excluded)s AS varchar[]))
                       OR d.trigger IN ('manual', 'test'))
                  {only}
                ORDER BY d.next_attempt_at
                LIMIT %(window)s
                FOR UPDATE SKIP LOCKED
            ) AS w
        ) AS ranked
        WHERE ranked.rank <= %(per_endpoint)s
        LIMIT %(limit)s
    )
    RETURNING id, event_id, endpoint_id, attempts, trigger
)
SELECT c.id, c.event_id, c.endpoint_id, c.attempts, c.trigger,
       ev.type AS event_type, ev.payload,
       ep.url, CAST(ep.headers AS text) AS headers, CAST(ep.signature AS text) AS signature,
       ep.rate_limit, ep.secret_enc, ep.previous_secret_enc, ep.previous_secret_until
FROM claimed AS c
JOIN events AS ev ON ev.id = c.event_id
JOIN endpoints AS ep ON ep.id = c.endpoint_id
"""
CLAIM_ANY = CLAIM.format(only="")
CLAIM_ONE = CLAIM.format(only="AND d.endpoint_id = %(only)s")


class ClaimLine:
    """A pooled connection held for claiming (a drain holds one for its length).

    A failed claim drops the connection (the database may have gone away), so the next
    claim starts on a fresh one.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Connection | None = None

    def claim(self, one_endpoint: bool, params: dict[str, Any]) -> list[Any]:
        """Run the claim and commit it; its rows, with their event's and endpoint's columns."""
        if self._conn is None:
            self._conn = self._engine.connect()
        raw = self._conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)  # the postgresql+psycopg dialect's
        try:
            with raw.pipeline():
                raw.execute(SETTINGS)
                cursor = raw.cursor(row_factory=namedtuple_row)
                cursor.execute(CLAIM_ONE if one_endpoint else CLAIM_ANY, params)
                raw.commit()
            rows: list[Any] = cursor.fetchall()
            return rows
        except BaseException:
            self.close(broken=True)
            raise

    def close(self, broken: bool = False) -> None:
        """Give the connection back to the pool (or discard it, if a claim broke on it)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if broken:
            conn.invalidate()
        conn.close()
