"""The live attempt log: Server-Sent Events fed by the workers' Redis pub/sub announcements.

A page and its stream cannot start at the same instant, so the stream first replays the
attempts made since shortly before the page was rendered (``after``), then follows the
channel. The browser drops a row it already shows, so the overlap is harmless.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator

import redis
from sqlalchemy import select

from app.extensions import db
from app.models import Attempt
from app.runtime import runtime

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
POLL_SECONDS = 1.0
BACKLOG = 100


def sse_message(event: str, html: str, event_id: str | None = None) -> str:
    """One SSE message; the fragment is put on one line (the stream's contract)."""
    one_line = " ".join(line.strip() for line in html.splitlines() if line.strip())
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {one_line}\n\n"


def attempt_stream(
    endpoint_id: str,
    render: Callable[[Attempt], str | None],
    after: str | None = None,
    heartbeat: float = HEARTBEAT_SECONDS,
) -> Iterator[str]:
    """Yield the endpoint's attempts newer than ``after``, then each new one, as rendered rows.

    ``render`` returns None for an attempt the viewer filtered out. Heartbeat comments keep
    proxies from closing an idle stream; it ends when the client goes away (the server
    closes the generator when a write fails).
    """
    broker = runtime().broker
    pubsub = broker.redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    try:
        pubsub.subscribe(broker.channel(endpoint_id))  # before the backlog: nothing falls between
        yield ": connected\nretry: 2000\n\n"
        sent: set[str] = set()
        if after:
            for earlier in _backlog(endpoint_id, after):
                html = render(earlier)
                sent.add(earlier.id)
                if html is not None:
                    yield sse_message("attempt", html, earlier.id)
            db.session.rollback()
        last_beat = time.monotonic()
        while True:
            message = pubsub.get_message(timeout=min(POLL_SECONDS, heartbeat))
            if message is not None and message.get("type") == "message":
                attempt = _load(message["data"])
                if attempt is not None and attempt.id not in sent:
                    html = render(attempt)
                    if html is not None:
                        yield sse_message("attempt", html, attempt.id)
                        last_beat = time.monotonic()
                db.session.rollback()  # end the read: the next attempt must be seen
            if time.monotonic() - last_beat >= heartbeat:
                yield ": heartbeat\n\n"
                last_beat = time.monotonic()
    except (redis.RedisError, OSError) as exc:
        # The browser's EventSource reconnects by itself; the next connect subscribes again.
        log.info("live log stream ended: %s", exc)
    finally:
        with contextlib.suppress(redis.RedisError, OSError):
            pubsub.close()
        db.session.remove()


def _backlog(endpoint_id: str, after: str) -> list[Attempt]:
    stmt = (
        select(Attempt)
        .where(Attempt.endpoint_id == endpoint_id, Attempt.id > after)
        .order_by(Attempt.id)
        .limit(BACKLOG)
    )
    return list(db.session.execute(stmt).scalars())


def _load(raw: bytes | str) -> Attempt | None:
    try:
        attempt_id = json.loads(raw)["attempt_id"]
    except (ValueError, KeyError, TypeError):
        return None
    return db.session.get(Attempt, attempt_id)
