"""What a drain holds back in the database instead of sending, so claims stop meeting it.

Two kinds of endpoint get their due deliveries moved later (``next_attempt_at``), out of the
due index every claim reads in order:

- one whose circuit breaker is open (breaker.py): while this process's drain runs and
  probes it, its backlog is held well past the next probe (``Breakers.holds_until``), since
  the probe takes a held delivery early; the first 2xx brings everything held forward. When
  the drain ends, what it held is handed back to the breaker's next probe time
  (``Holds.hand_back``), so it is due again then in the database for any worker's drain or
  sweeper to find: an endpoint is never left unprobed for the length of a long hold.
- one that is stalled (requests out, none answered for STALL seconds, queue full): what
  comes due for it waits until its next 2xx brings it forward, the drain ends, or
  STALL_HOLD seconds pass.

Either way the endpoint is marked held (``Endpoint.held_until``), so what is published to
it meanwhile is inserted held too.

Nothing is lost either way: a held delivery stays ``pending``, with no attempt counted. The
writes are collected while the drain claims and sends, and run in the recorder's thread.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from app.deliveries.breaker import Breakers
from app.deliveries.engine import Send, defer_due, release, resume
from app.models import utcnow

# endpoint -> circuit breaker: one that keeps failing is sent nothing for a while
breakers = Breakers()
# endpoint -> the latest time its breaker held deliveries to: brought forward on closing,
# and how far ahead its probe may take one
_held_upto: dict[str, datetime] = {}

# Seconds between holding an endpoint's newly due deliveries. What is published to a held
# endpoint is written held already, so what comes due between pushes is only its retries.
# Every 0.5 s, a worker pushed 4-5 times a second for two held endpoints, each push holding
# its GIL (and its sends) for about 4 ms on a loaded machine.
PUSH_EVERY = 2.0
# An endpoint with requests out and no answer for STALL seconds is stalled. (Its requests
# also stop counting against the worker's slots: see Drain.in_use.)
STALL = 0.5
# How long a stalled endpoint's newly due deliveries are held at most. Long, so a hanging
# endpoint's backlog is not rewritten each time a hold ends: its timeouts count towards its
# breaker meanwhile, and a 2xx (or a closing breaker) brings the backlog forward at once.
STALL_HOLD = 60.0


def is_stalled(answered: dict[str, float], endpoint_id: str, now: float) -> bool:
    """Whether an endpoint with requests out (``answered``: its last answer, or when its
    first request went out) has had no answer for STALL seconds."""
    return now - answered.get(endpoint_id, now) >= STALL


class Holds:
    """One drain job's holds, per endpoint: what to defer and until when, what to bring
    forward, and when its backlog was last pushed."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.deferrals: dict[str, tuple[list[Send], datetime]] = {}
        self.resumes: dict[str, datetime] = {}  # endpoint -> bring forward up to this time
        self.pushed: dict[str, float] = {}  # endpoint -> when its backlog was last held
        # stalled endpoint -> how far its newly due deliveries were held: brought forward
        # at its next answer
        self.stalled: dict[str, datetime] = {}

    def for_breaker(self, endpoint_id: str, sends: list[Send], now: float) -> None:
        """Hold ``sends`` (claimed, unsent) and the endpoint's due backlog for its breaker."""
        until = _wall(breakers.holds_until(endpoint_id, now), now)
        self._hold(endpoint_id, sends, until)
        _held_upto[endpoint_id] = max(until, _held_upto.get(endpoint_id, until))

    def push_open(self, endpoint_id: str, now: float) -> None:
        """Every PUSH_EVERY seconds, hold what came due for an open breaker since."""
        if now - self.pushed.get(endpoint_id, -math.inf) >= PUSH_EVERY:
            self.for_breaker(endpoint_id, [], now)

    def push_stalled(self, full: Iterable[str], answered: dict[str, float], now: float) -> None:
        """Hold what comes due for endpoints whose slots and queue are ``full`` and that have
        not ``answered`` for STALL seconds, until their next 2xx (or STALL_HOLD): this worker
        cannot send it sooner, and left due it is read past by every claim (a hanging
        endpoint's backlog grows by its whole share of the traffic until its breaker opens,
        a timeout or two later). Only newly due rows are written each time."""
        for endpoint_id in full:
            if (
                is_stalled(answered, endpoint_id, now)
                and now - self.pushed.get(endpoint_id, -math.inf) >= PUSH_EVERY
            ):
                until = utcnow() + timedelta(seconds=max(self.timeout, STALL_HOLD))
                self.stalled[endpoint_id] = until
                self._hold(endpoint_id, [], until)

    def answered(self, endpoint_id: str, ok: bool) -> None:
        """A 2xx came: a stalled endpoint's held deliveries may go now. (A timeout or an
        error leaves them held: bringing a hanging endpoint's backlog forward after each
        timeout only had it read past, then rewritten, again.)"""
        if ok and endpoint_id in self.stalled:
            self.resumes[endpoint_id] = self.stalled.pop(endpoint_id)

    def breaker_closed(self, endpoint_id: str) -> None:
        """Bring forward everything the endpoint's breaker held (and retries due meanwhile)."""
        upto = _held_upto.pop(endpoint_id, None)
        if upto is not None:
            self.resumes[endpoint_id] = upto

    def forget(self, endpoint_id: str) -> None:
        """An endpoint deleted or disabled: drop its breaker and what was held for it, or
        every claim and every drain's end kept asking after it for the process's life."""
        breakers.forget(endpoint_id)
        _held_upto.pop(endpoint_id, None)
        self.stalled.pop(endpoint_id, None)
        self.pushed.pop(endpoint_id, None)

    @staticmethod
    def probe_due_by(endpoint_id: str) -> datetime | None:
        """How far ahead a half-open breaker's probe may take a held delivery."""
        return _held_upto.get(endpoint_id)

    def flush(self, later: Callable[[Callable[[], None]], None]) -> None:
        """Hand what was collected to ``later`` (the recorder's thread), so claims and sends
        never wait on it (a long backlog's rewrite took up to 28 ms)."""
        if self.deferrals or self.resumes:
            later(functools.partial(_write, self.deferrals, self.resumes))
            self.deferrals, self.resumes = {}, {}

    def hand_back(self, now: float) -> None:
        """The drain ends: what it held for open breakers comes due at each one's next probe
        instead (a closed one's at once), and what it held for stalled endpoints at once,
        for whichever drain or sweeper runs then. A long hold is only safe while the drain
        that set it is there to probe early, or to hear the endpoint answer."""
        for endpoint_id, until in self.stalled.items():
            resume(endpoint_id, until)
        self.stalled = {}
        for endpoint_id, upto in list(_held_upto.items()):
            if breakers.closed(endpoint_id):
                del _held_upto[endpoint_id]
                resume(endpoint_id, upto)
            else:
                resume(endpoint_id, upto, due_at=_wall(breakers.reopens_at(endpoint_id, now), now))

    def _hold(self, endpoint_id: str, sends: list[Send], until: datetime) -> None:
        earlier, _ = self.deferrals.get(endpoint_id, ([], until))
        self.deferrals[endpoint_id] = (earlier + sends, until)
        self.pushed[endpoint_id] = time.monotonic()


def _wall(at: float, now: float) -> datetime:
    """The breaker's monotonic time ``at`` (``now`` being the monotonic time now) as a UTC
    datetime, for the database."""
    return utcnow() + timedelta(seconds=at - now)


def _write(deferrals: dict[str, tuple[list[Send], datetime]], resumes: dict[str, datetime]) -> None:
    """Defer the sends held back and the rest of each endpoint's due backlog (left due, it
    would fill the next claims' windows ahead of every healthy endpoint's new deliveries);
    bring forward what closed breakers and answering endpoints had held."""
    for endpoint_id, (sends, until) in deferrals.items():
        release(sends, due_at=until)
        defer_due(endpoint_id, until)
    for endpoint_id, upto in resumes.items():
        resume(endpoint_id, upto)
