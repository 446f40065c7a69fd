"""The delivery engine: claim due deliveries, build signed requests, record outcomes in bulk.

Claims are conditional updates of ``locked_until`` (a lease), so two workers never send the
same attempt at once, and a worker that dies only delays its claims until the lease ends.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    Integer,
    Text,
    bindparam,
    cast,
    func,
    or_,
    select,
    update,
)

from app.crypto import SecretBox
from app.deliveries.bulk import Move, finish_deliveries, insert_rows, on_postgres
from app.deliveries.claimline import ClaimLine
from app.deliveries.retry import RetryPolicy
from app.extensions import db
from app.ids import new_id
from app.models import EPOCH, Attempt, Delivery, Endpoint, Event, UTCDateTime, utcnow
from app.signing import sign_hex, signature_header
from app.transport import Outcome, Transport
from app.version import __version__

DELIVERIES = Delivery.__table__
ENDPOINTS = Endpoint.__table__
EVENTS = Event.__table__
USER_AGENT = f"Herald/{__version__}"
# Tries an admin asked for (a resend, a test send): no breaker or exclusion holds them back.
ASKED_FOR = ("manual", "test")


@dataclass
class Send:
    """Everything needed to make one attempt, detached from the ORM session."""

    delivery_id: str
    event_id: str
    event_type: str
    endpoint_id: str
    url: str
    payload: bytes
    number: int
    trigger: str
    secrets: list[str]
    extra_headers: dict[str, str]
    compat: tuple[str, str, str] | None  # (header, prefix, secret) for the hex scheme
    rate_limit: int | None = None  # deliveries per second, enforced across workers
    lease: datetime | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Recorded:
    attempt_id: str
    send: Send
    outcome: Outcome
    next_attempt_at: datetime | None
    final_status: str


def live_secrets(endpoint: Endpoint, box: SecretBox, now: datetime) -> list[str]:
    """The current secret, then the previous one while its rotation grace lasts."""
    secrets = [box.decrypt(endpoint.secret_enc)]
    if (
        endpoint.previous_secret_enc
        and endpoint.previous_secret_until
        and endpoint.previous_secret_until > now
    ):
        secrets.append(box.decrypt(endpoint.previous_secret_enc))
    return secrets


def compat_signing(
    signature: dict[str, str] | None, secrets: list[str]
) -> tuple[str, str, str] | None:
    """The hex header keeps the old secret during the grace: its receivers compare one value."""
    sig = signature or {}
    if sig.get("scheme") != "hmac-sha256-hex":
        return None
    return (sig.get("header") or "X-Webhook-Signature", sig.get("prefix", ""), secrets[-1])


def make_send(
    delivery_id: str,
    event: Event,
    endpoint: Endpoint,
    number: int,
    trigger: str,
    box: SecretBox,
    now: datetime,
) -> Send:
    secrets = live_secrets(endpoint, box, now)
    return Send(
        delivery_id=delivery_id,
        event_id=event.id,
        event_type=event.type,
        endpoint_id=endpoint.id,
        url=endpoint.url,
        payload=event.payload.encode(),
        number=number,
        trigger=trigger,
        secrets=secrets,
        extra_headers=dict(endpoint.headers or {}),
        compat=compat_signing(endpoint.signature, secrets),
        rate_limit=endpoint.rate_limit,
    )


def build_headers(send: Send, timestamp: int) -> dict[str, str]:
    """The request headers of one attempt, signed with a fresh timestamp."""
    signature = signature_header(send.secrets, send.event_id, timestamp, send.payload)
    headers = dict(send.extra_headers)
    headers.update(
        {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": send.event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
            "svix-id": send.event_id,
            "svix-timestamp": str(timestamp),
            "svix-signature": signature,
            "herald-webhook-id": send.endpoint_id,
            "herald-attempt": str(send.number),
        }
    )
    if send.compat:
        name, prefix, secret = send.compat
        headers[name] = prefix + sign_hex(secret, send.payload)
    return headers


def attempt(transport: Transport, send: Send) -> tuple[Send, Outcome]:
    """Sign and POST once, waiting for the answer (a test send from the dashboard)."""
    send.headers = build_headers(send, int(time.time()))
    return send, transport.post(send.url, send.payload, send.headers)


# An endpoint deliveries can go to: active and not deleted (claims, probes and publishes).
LIVE_ENDPOINT = (ENDPOINTS.c.status == "active", ENDPOINTS.c.deleted_at.is_(None))


def due_filter(now: Any, due_by: Any = None) -> list[Any]:
    """Deliveries owed at ``now`` (a datetime or a bound parameter): pending, due (by
    ``due_by`` if given), not leased, to a live active endpoint."""
    # A correlated EXISTS, one primary-key probe per candidate: as IN (or a plain EXISTS)
    # PostgreSQL made it a join, then read and sorted the whole due backlog (23 ms at 30,000
    # due) instead of reading the due index in order until the claim was full. OFFSET 0
    # keeps the subquery from being pulled up into a join.
    live = (
        select(ENDPOINTS.c.id)
        .where(ENDPOINTS.c.id == DELIVERIES.c.endpoint_id, *LIVE_ENDPOINT)
        .offset(0)
    )
    return [
        DELIVERIES.c.status == "pending",
        DELIVERIES.c.next_attempt_at <= (now if due_by is None else due_by),
        DELIVERIES.c.locked_until <= now,
        live.exists(),
    ]


def endpoint_is_live(endpoint_id: str) -> bool:
    """Whether deliveries to this endpoint can still be claimed (active, not deleted)."""
    found = db.session.execute(
        select(ENDPOINTS.c.id).where(ENDPOINTS.c.id == endpoint_id, *LIVE_ENDPOINT)
    ).first()
    db.session.rollback()
    return found is not None


def any_due(now: datetime | None = None) -> bool:
    now = now or utcnow()
    row = db.session.execute(select(DELIVERIES.c.id).where(*due_filter(now)).limit(1)).first()
    db.session.rollback()
    return row is not None


def claim_due(
    box: SecretBox,
    limit: int,
    per_endpoint: int,
    lease_seconds: float,
    exclude: Iterable[str] = (),
    only: str | None = None,
    due_by: datetime | None = None,
    line: ClaimLine | None = None,
) -> list[Send]:
    """Claim up to ``limit`` due deliveries (at most ``per_endpoint`` each) in one statement:
    none of the ``exclude``d endpoints' but tries an admin asked for; ``only`` one endpoint's,
    counting as due what is due by ``due_by`` too (a breaker's probe takes a held one).

    On PostgreSQL the claim runs on ``line`` (a drain's own), or on one made for it."""
    now = utcnow()
    lease = now + timedelta(seconds=lease_seconds)
    params = {
        "now": now,
        "lease": lease,
        "window": limit * 2,
        "limit": limit,
        "per_endpoint": per_endpoint,
        "excluded": list(exclude),
        "only": only,
        "due_by": max(now, due_by or now),
    }
    if not on_postgres():
        rows = _claimed_sqlite(_claim_statement(only is not None), params)
    elif line is None:
        line = ClaimLine(db.engine)
        try:
            rows = line.claim(only is not None, params)
        finally:
            line.close()
    else:
        rows = line.claim(only is not None, params)
    sends = []
    for row in rows:
        secrets = _secrets_cached(row, box, now)
        sends.append(
            Send(
                delivery_id=row.id,
                event_id=row.event_id,
                event_type=row.event_type,
                endpoint_id=row.endpoint_id,
                url=row.url,
                payload=row.payload.encode(),
                number=row.attempts + 1,
                trigger=row.trigger,
                secrets=secrets,
                extra_headers=_json_cached(row.headers),
                compat=compat_signing(_json_cached(row.signature), secrets),
                rate_limit=row.rate_limit,
                lease=lease,
            )
        )
    return sends


@functools.cache
def _claim_statement(one_endpoint: bool) -> Any:
    """SQLite's claiming statement (PostgreSQL's is claimline.CLAIM), built once: every
    value in it is a bound parameter. Building the expression anew cost about as much CPU
    as running it, once per claim."""
    now = bindparam("now", type_=UTCDateTime())
    due_by = bindparam("due_by", type_=UTCDateTime()) if one_endpoint else None
    conditions = [
        *due_filter(now, due_by),
        or_(
            DELIVERIES.c.endpoint_id.not_in(bindparam("excluded", expanding=True)),
            DELIVERIES.c.trigger.in_(ASKED_FOR),
        ),
    ]
    if one_endpoint:
        conditions.append(DELIVERIES.c.endpoint_id == bindparam("only"))
    window = (
        select(DELIVERIES.c.id, DELIVERIES.c.endpoint_id, DELIVERIES.c.next_attempt_at)
        .where(*conditions)
        .order_by(DELIVERIES.c.next_attempt_at)
        .limit(bindparam("window", type_=Integer()))
        .subquery()
    )
    ranked = select(
        window.c.id,
        func.row_number()
        .over(partition_by=window.c.endpoint_id, order_by=window.c.next_attempt_at)
        .label("rank"),
    ).subquery()
    picked = (
        select(ranked.c.id)
        .where(ranked.c.rank <= bindparam("per_endpoint", type_=Integer()))
        .limit(bindparam("limit", type_=Integer()))
    )
    # SQLite has one writer and no row locks: the due conditions are checked again here.
    return (
        update(DELIVERIES)
        .where(
            DELIVERIES.c.id.in_(picked),
            DELIVERIES.c.status == "pending",
            DELIVERIES.c.locked_until <= now,
        )
        .values(locked_until=bindparam("lease", type_=UTCDateTime()))
        .returning(
            DELIVERIES.c.id,
            DELIVERIES.c.event_id,
            DELIVERIES.c.endpoint_id,
            DELIVERIES.c.attempts,
            DELIVERIES.c.trigger,
        )
    )


ENDPOINT_COLUMNS = (
    ENDPOINTS.c.url,
    # As text, parsed through a cache: every delivery to an endpoint carries the same two.
    cast(ENDPOINTS.c.headers, Text).label("headers"),
    cast(ENDPOINTS.c.signature, Text).label("signature"),
    ENDPOINTS.c.rate_limit,
    ENDPOINTS.c.secret_enc,
    ENDPOINTS.c.previous_secret_enc,
    ENDPOINTS.c.previous_secret_until,
)


def _claimed_sqlite(claim: Any, params: dict[str, Any]) -> list[Any]:
    """Run SQLite's claim, then read the claimed rows' event and endpoint columns.
    Core rows, not ORM objects: this runs for every batch on the hot path."""
    rows = db.session.execute(claim, params).all()
    db.session.commit()
    if not rows:
        return []
    events = {
        e.id: e
        for e in db.session.execute(
            select(EVENTS.c.id, EVENTS.c.type, EVENTS.c.payload).where(
                EVENTS.c.id.in_({r.event_id for r in rows})
            )
        )
    }
    endpoints = {
        e.id: e
        for e in db.session.execute(
            select(ENDPOINTS.c.id, *ENDPOINT_COLUMNS).where(
                ENDPOINTS.c.id.in_({r.endpoint_id for r in rows})
            )
        )
    }
    db.session.rollback()  # end the read transaction
    merged = []
    for row in rows:
        event, endpoint = events[row.event_id], endpoints[row.endpoint_id]
        merged.append(
            SimpleNamespace(
                **row._mapping,
                event_type=event.type,
                payload=event.payload,
                **{c.name: endpoint._mapping[c.name] for c in ENDPOINT_COLUMNS},
            )
        )
    return merged


# Decrypting a Fernet token costs more than signing; ciphertexts are immutable, so a
# small cache keyed by them is always right (a rotation writes a new ciphertext).
_plain_secrets: dict[tuple[int, str], str] = {}


_parsed_json: dict[str, Any] = {}


def _cached(cache: dict[Any, Any], key: Any, make: Callable[[], Any]) -> Any:
    """``cache[key]``, made by ``make`` on a miss; emptied past 10,000 entries."""
    value = cache.get(key)
    if value is None:
        if len(cache) > 10_000:
            cache.clear()
        value = cache[key] = make()
    return value


def _json_cached(text: str | None) -> Any:
    """The parsed JSON of an endpoint's headers or signature (shared: never mutate it)."""
    if text is None:
        return {}
    return _cached(_parsed_json, text, lambda: json.loads(text) or {})


def _decrypt_cached(box: SecretBox, token: str) -> str:
    return str(_cached(_plain_secrets, (id(box), token), lambda: box.decrypt(token)))


def _secrets_cached(endpoint: Any, box: SecretBox, now: datetime) -> list[str]:
    secrets = [_decrypt_cached(box, endpoint.secret_enc)]
    if (
        endpoint.previous_secret_enc
        and endpoint.previous_secret_until
        and endpoint.previous_secret_until > now
    ):
        secrets.append(_decrypt_cached(box, endpoint.previous_secret_enc))
    return secrets


def release(sends: Sequence[Send], due_at: datetime | None = None) -> None:
    """Give claimed deliveries back unsent, no attempt counted: still due (a rate limit says
    wait), or due at ``due_at`` (a breaker holds them). A lease taken since is left alone."""
    if not sends:
        return
    moved = {"next_attempt_at": due_at} if due_at else {}
    stmt = (
        update(DELIVERIES)
        .where(DELIVERIES.c.id == bindparam("b_id"))
        .where(DELIVERIES.c.locked_until == bindparam("b_lease"))
        .values(locked_until=EPOCH, **moved)
    )
    db.session.execute(stmt, [{"b_id": s.delivery_id, "b_lease": s.lease} for s in sends])
    db.session.commit()


def defer_due(endpoint_id: str, until: datetime) -> None:
    """Move an endpoint's pending deliveries due now (and not leased) to ``until``, so
    claims stop meeting them in the due index while it cannot be sent to, and have new
    ones published held as long (``Endpoint.held_until``). Only what came due is written:
    the rest waits already, and rewriting a long backlog each time took tens of ms."""
    now = utcnow()
    # A drain pushes a hold every PUSH_EVERY seconds, a minute or more ahead: the mark is
    # moved only once it has run a quarter short, not rewritten (and committed durably) at
    # each push for a few seconds more.
    short = ENDPOINTS.c.held_until < until - (until - now) / 4
    _hold_new(endpoint_id, until, or_(ENDPOINTS.c.held_until.is_(None), short))
    db.session.execute(
        update(DELIVERIES)
        .where(
            *_waiting_for(endpoint_id, now),
            DELIVERIES.c.next_attempt_at <= now,
            DELIVERIES.c.trigger.not_in(ASKED_FOR),
        )
        .values(next_attempt_at=until)
    )
    db.session.commit()


def resume(endpoint_id: str, upto: datetime, due_at: datetime | None = None) -> None:
    """Make an endpoint's pending deliveries due before ``upto`` due now (its breaker closed,
    so what it deferred, and retries it scheduled meanwhile, need not wait any longer), or
    due at ``due_at`` if that is sooner (a drain that held them ends: its next probe)."""
    now = utcnow()
    due = max(now, due_at or now)
    # New deliveries may have been published held as long as another worker said.
    held = db.session.execute(
        select(ENDPOINTS.c.held_until).where(ENDPOINTS.c.id == endpoint_id)
    ).scalar()
    upto = max(upto, held or upto)
    _hold_new(endpoint_id, due if due > now else None)
    db.session.execute(
        update(DELIVERIES)
        .where(
            *_waiting_for(endpoint_id, now),
            DELIVERIES.c.next_attempt_at > due,
            DELIVERIES.c.next_attempt_at <= upto,
        )
        .values(next_attempt_at=due)
    )
    db.session.commit()


def _hold_new(endpoint_id: str, until: datetime | None, *only_if: Any) -> None:
    """Have deliveries published to the endpoint from now on come due at ``until`` (None:
    at once), if its row meets ``only_if``."""
    db.session.execute(
        update(ENDPOINTS).where(ENDPOINTS.c.id == endpoint_id, *only_if).values(held_until=until)
    )


def _waiting_for(endpoint_id: str, now: datetime) -> list[Any]:
    """An endpoint's pending deliveries that no worker holds: the ones a breaker may move."""
    return [
        DELIVERIES.c.endpoint_id == endpoint_id,
        DELIVERIES.c.status == "pending",
        DELIVERIES.c.locked_until <= now,
    ]


def _failure_reason(outcome: Outcome) -> str:
    if outcome.http_status is not None:
        return f"HTTP {outcome.http_status}"
    return outcome.error or "no response"


def record(results: Sequence[tuple[Send, Outcome]], policy: RetryPolicy) -> list[Recorded]:
    """Write every attempt and move every claimed delivery on, in a few bulk statements."""
    if not results:
        return []
    now = utcnow()
    attempt_rows: list[dict[str, Any]] = []
    moves: list[Move] = []
    disable: dict[str, str] = {}
    recorded: list[Recorded] = []
    for send, outcome in results:
        attempt_id = new_id("att")
        attempt_rows.append(
            {
                "id": attempt_id,
                "delivery_id": send.delivery_id,
                "endpoint_id": send.endpoint_id,
                "event_id": send.event_id,
                "event_type": send.event_type,
                "number": send.number,
                "trigger": send.trigger,
                "status": "success" if outcome.ok else "failure",
                "url": send.url,
                "http_status": outcome.http_status,
                "request_headers": send.headers,
                "response_headers": outcome.headers,
                "response_body": outcome.body if outcome.body is not None else None,
                "error": outcome.error if not outcome.ok else None,
                "duration_ms": outcome.duration_ms,
            }
        )
        next_at: datetime | None = None
        if outcome.ok:
            status = "succeeded"
        elif send.trigger in ("manual", "test"):
            status = "failed"  # a resend or a test is one try; the schedule is not restarted
        else:
            honoured = outcome.retry_after if outcome.http_status in (429, 503) else None
            delay = policy.delay_after(send.number, honoured)
            if delay is None:
                status = "failed"
                disable.setdefault(
                    send.endpoint_id,
                    f"Delivery {send.delivery_id} failed all {send.number} attempts "
                    f"(last: {_failure_reason(outcome)})",
                )
            else:
                status = "pending"
                next_at = now + timedelta(seconds=delay)
        if outcome.http_status == 410 and send.trigger != "test":
            disable[send.endpoint_id] = "The endpoint answered 410 Gone"
        moves.append((send.delivery_id, send.lease, status, send.number, next_at or now))
        recorded.append(Recorded(attempt_id, send, outcome, next_at, status))

    insert_rows(Attempt.__table__, attempt_rows, created_at=now)
    finish_deliveries(moves, now)
    for endpoint_id, reason in disable.items():
        db.session.execute(
            update(ENDPOINTS)
            .where(ENDPOINTS.c.id == endpoint_id, ENDPOINTS.c.status == "active")
            .values(status="disabled", disabled_reason=reason, updated_at=now)
        )
    db.session.commit()
    return recorded


def announcement(item: Recorded) -> dict[str, Any]:
    """The small message the live log receives for a new attempt."""
    return {
        "attempt_id": item.attempt_id,
        "endpoint_id": item.send.endpoint_id,
        "delivery_id": item.send.delivery_id,
        "event_id": item.send.event_id,
        "status": "success" if item.outcome.ok else "failure",
        "http_status": item.outcome.http_status,
    }


def payload_json(body: dict[str, Any]) -> str:
    """The one serialisation of a delivery body: compact, stable key order as given."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)
