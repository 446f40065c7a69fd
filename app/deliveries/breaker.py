"""Circuit breakers, one per failing endpoint, kept in a worker process's memory.

An endpoint whose attempts keep failing is sent nothing for a while, then one probe at a
time, so its retries stop taking the threads and CPU the healthy endpoints need. The
breaker only decides when to send: what is owed stays pending in the database, so a
worker that restarts and forgets its breakers loses nothing.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from typing import Literal

THRESHOLD = 10  # consecutive failures that open a breaker
FIRST_OPEN = 1.0  # seconds it stays open the first time
LONGEST_OPEN = 60.0  # each failed probe doubles that, up to the retry schedule's first step
# The furthest a running drain holds an open breaker's backlog: its probes take a held
# delivery early, so the backlog is rewritten once a hold, not at every failed probe.
LONGEST_HOLD = 600.0
LIMIT = 100_000  # endpoints remembered; past that all are forgotten (closed)


class State(enum.Enum):
    CLOSED = "closed"  # send as usual
    OPEN = "open"  # send nothing
    HALF_OPEN = "half-open"  # one probe may go


@dataclass
class _Breaker:
    failures: int = 0  # consecutive
    opened_at: float = 0.0
    duration: float = 0.0  # seconds of the current (or last) opening
    open_until: float = 0.0
    probe_until: float = 0.0  # a probe is out until its outcome comes, or this time


@dataclass(frozen=True)
class Change:
    """A breaker opened, opened again after a failed probe, or closed."""

    kind: Literal["opened", "reopened", "closed"]
    failures: int
    seconds: float  # how long it is open for now, or (closed) how long it was open


class Breakers:
    """Every endpoint's breaker; ``now`` is ``time.monotonic()``. Safe across threads."""

    def __init__(
        self,
        threshold: int = THRESHOLD,
        first: float = FIRST_OPEN,
        longest: float = LONGEST_OPEN,
        limit: int = LIMIT,
    ) -> None:
        self.threshold = threshold
        self.first = first
        self.longest = longest
        self.limit = limit
        self._breakers: dict[str, _Breaker] = {}  # only endpoints whose last attempt failed
        self._lock = threading.Lock()

    def closed(self, endpoint_id: str) -> bool:
        """Whether the endpoint is served as usual (cheap: no clock, no lock)."""
        breaker = self._breakers.get(endpoint_id)
        return breaker is None or breaker.failures < self.threshold

    def not_closed(self) -> list[str]:
        """The endpoints whose breaker is open or half-open."""
        with self._lock:
            return [ep for ep, b in self._breakers.items() if b.failures >= self.threshold]

    def forget(self, endpoint_id: str) -> None:
        """Drop an endpoint's breaker (the endpoint is gone: nothing is owed to it)."""
        with self._lock:
            self._breakers.pop(endpoint_id, None)

    def state(self, endpoint_id: str, now: float) -> State:
        breaker = self._breakers.get(endpoint_id)
        if breaker is None or breaker.failures < self.threshold:
            return State.CLOSED
        if now < breaker.open_until or now < breaker.probe_until:
            return State.OPEN
        return State.HALF_OPEN

    def take_probe(self, endpoint_id: str, now: float, lasts: float) -> bool:
        """Whether the caller may send the one probe of a half-open breaker now.

        The probe holds the breaker open until its outcome is observed, or for ``lasts``
        seconds: a probe that is never sent must not keep the endpoint shut for good.
        """
        with self._lock:
            if self.state(endpoint_id, now) is not State.HALF_OPEN:
                return False
            self._breakers[endpoint_id].probe_until = now + lasts
            return True

    def reopens_at(self, endpoint_id: str, now: float) -> float:
        """When a send held back now should come due: the end of this opening or, once it
        has passed (a probe is out), the earliest a failed probe would let the next one go."""
        breaker = self._breakers.get(endpoint_id)
        if breaker is None:
            return now
        if now < breaker.open_until:
            return breaker.open_until
        return now + min(2 * breaker.duration, self.longest)

    def holds_until(self, endpoint_id: str, now: float) -> float:
        """When a running drain holds an open breaker's backlog to: well past its next probe
        (a minute, or as long again as it has been open, up to LONGEST_HOLD). Left due at
        each probe instead, the whole backlog came into every claim's path at once and was
        rewritten again: a latency spike for every healthy endpoint, at 1, 3, 7, 15 s ..."""
        breaker = self._breakers.get(endpoint_id)
        if breaker is None:
            return now
        held = min(max(self.longest, now - breaker.opened_at), LONGEST_HOLD)
        return max(self.reopens_at(endpoint_id, now), now + held)

    def observe(self, endpoint_id: str, ok: bool, now: float) -> Change | None:
        """Count an attempt's outcome (ok: a 2xx); says when that opened or closed the breaker."""
        with self._lock:
            breaker = self._breakers.get(endpoint_id)
            if ok:
                if breaker is None:
                    return None
                del self._breakers[endpoint_id]
                if breaker.failures < self.threshold:
                    return None
                return Change("closed", breaker.failures, now - breaker.opened_at)
            if breaker is None:
                if len(self._breakers) >= self.limit:
                    self._breakers.clear()
                breaker = self._breakers[endpoint_id] = _Breaker()
            breaker.failures += 1
            if breaker.failures == self.threshold:
                breaker.opened_at = now
                return self._open(breaker, now, self.first, "opened")
            if breaker.failures > self.threshold and breaker.probe_until:
                # The probe failed (or one sent before it opened: either way, not yet well).
                breaker.probe_until = 0.0
                return self._open(breaker, now, min(2 * breaker.duration, self.longest), "reopened")
            return None  # still counting, or an attempt in flight when it opened

    @staticmethod
    def _open(
        breaker: _Breaker, now: float, duration: float, kind: Literal["opened", "reopened"]
    ) -> Change:
        breaker.duration = duration
        breaker.open_until = now + duration
        return Change(kind, breaker.failures, duration)
