"""RQ jobs and the sweeper. A job carries no payload: it claims what the database says is due.

One drain job works on many deliveries at once, as a small pipeline so no stage waits on
another: the job's own thread claims batches ahead of need, signs them and hands them to the
transport's event-loop thread (one per process, so keep-alive connections stay warm) with a
cap per endpoint, so a slow endpoint holds only its own slots; a recorder thread writes
finished attempts in bulk while sending goes on.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta

from flask import Flask, current_app

from app.deliveries import holds
from app.deliveries.breaker import Change, State
from app.deliveries.claimline import ClaimLine
from app.deliveries.engine import (
    ASKED_FOR,
    Send,
    announcement,
    any_due,
    build_headers,
    claim_due,
    endpoint_is_live,
    record,
    release,
)
from app.events import fanouts
from app.extensions import db
from app.logs import log_attempts
from app.metrics import count_attempts
from app.models import utcnow
from app.queue import Wakes
from app.runtime import Runtime, runtime
from app.transport import Outcome

log = logging.getLogger(__name__)

# endpoint -> moving average response time in ms, and moving average share of failed
# attempts, kept across jobs by this worker process
_speed: dict[str, float] = {}
_failing: dict[str, float] = {}

PREFETCH = 6  # claim up to this many times an endpoint's cap, so a fast one never waits
# An endpoint whose moving average response time is under FAST_MS may use FAST_BOOST x the
# cap (at most 3/4 of the worker's requests in flight): on a busy CPU a fast receiver needs
# many requests in flight to stay busy while the worker claims and records. A new, slow or
# hanging one never gets more than the cap; a fast one that starts hanging holds its larger
# cap for one timeout, after which its average marks it slow (or its breaker opens), but
# stops taking the others' slots once stalled (STALL).
FAST_MS = 250.0
FAST_BOOST = 4
# An endpoint whose recent attempts mostly fail (an error answer or none) gets a quarter of
# the cap: its retries are owed anyway, and the slots and CPU it no longer takes keep the
# healthy endpoints' latency where it was. A few successes in a row earn the cap back.
FAILING = 0.5
# A stalled endpoint's requests (holds.STALL) stop counting against the worker's slots: a
# waiting socket costs nothing but a file descriptor, so a hanging endpoint holds only its
# own cap, not a share of everyone's. CEILING x the slots bounds all open requests.
CEILING = 8
# Signed sends go to the event loop in handfuls: it starts sending the first while this
# thread signs the rest (a batch of 90 waited for all 90 signatures).
HANDOFF = 8
FLUSH_EVERY = 0.02  # seconds a finished attempt may wait to be written with others
FLUSH_MAX = 500  # attempts written per bulk statement at most
IDLE_POLL = 0.01  # seconds between claims when nothing was due and no wake-ups can come
WOKEN_POLL = 0.05  # the same with wake-ups: only retries coming due are found by polling
# seconds before a half-open breaker whose probe found nothing to send looks again: each
# look is a claim, and looking at every claim (as when an endpoint went quiet, or was
# deleted with its breaker open) slowed every other endpoint's claims
PROBE_IDLE = 1.0

Result = tuple[Send, Outcome]
Chore = Callable[[], None]  # a database write the drain's thread should not wait for


class Recorder:
    """A thread that writes finished attempts in bulk, in its own app context and session,
    and runs the drain's chores (a breaker's deferrals) after them."""

    def __init__(self, app: Flask) -> None:
        self._app = app
        self._queue: queue.SimpleQueue[Result | Chore | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="herald-record", daemon=True)
        self.written = 0
        # Two counters, each written by one thread only, so no lock is needed.
        self._handed = 0
        self._processed = 0
        self._thread.start()

    @property
    def backlog(self) -> int:
        """Attempts handed over but not yet written: the claimer holds back when it grows."""
        return self._handed - self._processed

    def put(self, result: Result) -> None:
        self._handed += 1
        self._queue.put(result)

    def later(self, chore: Chore) -> None:
        """Run ``chore`` in this thread, after the attempts handed over before it."""
        self._queue.put(chore)

    def close(self) -> int:
        """Write what is left, stop, and return how many attempts were written."""
        self._queue.put(None)
        self._thread.join()
        return self.written

    def _run(self) -> None:
        with self._app.app_context():
            rt = runtime()
            stopping = False
            while not stopping:
                batch: list[Result] = []
                chores: list[Chore] = []
                item = self._queue.get()
                deadline = time.monotonic() + FLUSH_EVERY
                while True:
                    if item is None:
                        stopping = True
                        break
                    if callable(item):
                        chores.append(item)
                    else:
                        batch.append(item)
                    if len(batch) >= FLUSH_MAX:
                        break
                    try:
                        item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        break
                self._write(rt, batch)
                for chore in chores:
                    try:
                        chore()
                    except Exception:
                        # Nothing is lost: a held delivery left leased comes due when its
                        # lease ends, one left due is held again by the next push.
                        log.exception("could not hold or bring forward deliveries")
                        db.session.rollback()

    def _write(self, rt: Runtime, batch: list[Result]) -> None:
        if not batch:
            return
        try:
            recorded = record(batch, rt.policy)
        except Exception:
            # The claims stay leased and come due again when the lease ends (the receiver
            # may then see a retry of an attempt it already had: at least once, never lost).
            log.exception("could not record %d attempts", len(batch))
            db.session.rollback()
        else:
            self.written += len(recorded)
            # Counted before announced: /metrics already shows what the live log shows.
            log_attempts(recorded)
            count_attempts(rt.broker, recorded)
            rt.broker.announce_attempts([announcement(item) for item in recorded])
        finally:
            self._processed += len(batch)


class Drain:
    """One drain job's state: claimed sends per endpoint, what is in flight, what is throttled."""

    def __init__(self, rt: Runtime, budget: float, idle: float) -> None:
        self.rt = rt
        settings = rt.settings
        self.slots = settings.worker_threads  # requests in flight at once, stalled ones aside
        self.ceiling = CEILING * self.slots
        self.cap = settings.endpoint_concurrency
        self.fast_cap = max(self.cap, min(FAST_BOOST * self.cap, 3 * self.slots // 4))
        self.timeout = settings.timeout
        self.speed = _speed
        self.failing = _failing
        self.lease = 2 * settings.timeout + 30
        self.budget = budget
        self.idle = idle
        # Answers from the transport's thread, and None for a wake-up from Redis.
        self.done: queue.SimpleQueue[Result | None] = queue.SimpleQueue()
        self.ready: dict[str, deque[Send]] = {}
        self.inflight: dict[str, int] = {}
        self.held: dict[str, int] = {}  # ready + in flight, per endpoint
        self.throttled: dict[str, float] = {}  # endpoint -> monotonic time its limit allows more
        self.unprobed: dict[str, float] = {}  # endpoint -> when its breaker may look again
        self.running = 0
        self.holding = holds.Holds(self.timeout)  # deferrals, written after each dispatch
        self.line = ClaimLine(db.engine)  # this job's claims' own connection (PostgreSQL)
        # endpoint -> its last answer, or when its first send in flight went out
        self.answered: dict[str, float] = {}
        self.woken = False
        self.stopping = threading.Event()
        wake = rt.broker.wake_listener()
        self.idle_poll = WOKEN_POLL if wake else IDLE_POLL
        if wake is not None:
            threading.Thread(
                target=self._relay_wakes, args=(wake,), name="herald-wake", daemon=True
            ).start()

    def run(self, recorder: Recorder) -> None:
        started = time.monotonic()
        last_work = started
        next_claim = started
        try:
            while True:
                now = time.monotonic()
                over_budget = now - started > self.budget
                if now < next_claim and self.woken:
                    next_claim = now  # something was published: claim it now
                self.woken = False
                if (
                    now >= next_claim
                    and self.backlog < self.slots
                    and recorder.backlog < 4 * FLUSH_MAX
                ):
                    try:
                        claimed = self._claim(now, over_budget)
                        # What was claimed goes out before any probe is claimed: a probe's
                        # claim (3-6 ms) held up a whole tick of healthy sends behind it.
                        self._dispatch()
                        claimed += self._claim_probes(now)
                    except Exception:
                        # A database hiccup must not strand what is in flight: log it, back
                        # off, and keep sending and recording what was already claimed.
                        log.exception("claiming failed; trying again shortly")
                        db.session.rollback()
                        claimed, next_claim = 0, now + 0.5
                    if claimed:
                        last_work = now
                    elif next_claim <= now:
                        next_claim = now + self.idle_poll
                if over_budget:
                    self._release_blocked()
                self._dispatch()
                self.holding.flush(recorder.later)
                # A throttled endpoint still has deliveries due soon: wait for them. So do
                # attempts not yet written: a failed one may be due again at once.
                if recorder.backlog:
                    last_work = now
                waiting = self.held or self.throttled
                if (not waiting and now - last_work > self.idle) or (over_budget and not self.held):
                    break
                if not self.held:
                    timeout = max(self.idle_poll, min(self.throttled.values(), default=0) - now)
                    timeout = min(timeout, 0.1)
                elif self.backlog < self.slots:
                    timeout = max(0.0, next_claim - time.monotonic())
                else:
                    timeout = 0.05  # buffer full: wake on the first finished send
                if self._collect(recorder, timeout):
                    last_work = time.monotonic()
        finally:
            # Whatever stopped the loop, every request already started is still recorded.
            while self.running:
                self._collect(recorder, 1.0)
            self.holding.flush(recorder.later)
            self.stopping.set()

    def cap_of(self, endpoint_id: str) -> int:
        """An endpoint's concurrency cap: the configured one, or more for a proven-fast one,
        a quarter for a failing one, one while its breaker is not closed.

        Only an endpoint whose recent requests came back quickly gets the larger cap, so a
        new or slow one never holds more than the configured cap.
        """
        if not holds.breakers.closed(endpoint_id):
            return 1  # open: only its probe or a try an admin asked for
        if self.failing.get(endpoint_id, 0.0) >= FAILING:
            return max(1, self.cap // 4)
        if self.speed.get(endpoint_id, FAST_MS) < FAST_MS:
            return self.fast_cap
        return self.cap

    def _measured(self, send: Send, outcome: Outcome) -> None:
        """Keep moving averages of the endpoint's response time (no response: the timeout)
        and of its share of failed attempts."""
        took = outcome.duration_ms if outcome.http_status is not None else 1000 * self.timeout
        if send.endpoint_id not in self.speed and len(self.speed) > 100_000:
            self.speed.clear()
            self.failing.clear()
        _average(self.speed, send.endpoint_id, took)
        _average(self.failing, send.endpoint_id, 0.0 if outcome.ok else 1.0)
        change = holds.breakers.observe(send.endpoint_id, outcome.ok, time.monotonic())
        if change is not None:
            self._breaker_changed(send.endpoint_id, change)

    def _breaker_changed(self, endpoint_id: str, change: Change) -> None:
        """Log it; on opening, hold back what this job claimed for the endpoint and push its
        due deliveries out to its next probe, so claims stop meeting them."""
        if change.kind == "closed":
            log.info(
                "breaker of %s closed after %d consecutive failures, open for %.1f s",
                endpoint_id,
                change.failures,
                change.seconds,
            )
            self.holding.breaker_closed(endpoint_id)
            return
        log.log(
            logging.INFO if change.kind == "opened" else logging.DEBUG,
            "breaker of %s %s after %d consecutive failures: no attempts for %.1f s",
            endpoint_id,
            change.kind,
            change.failures,
            change.seconds,
        )
        queued = self.ready.get(endpoint_id, deque())
        held_back = [s for s in queued if s.trigger not in ASKED_FOR]
        if held_back:
            self.ready[endpoint_id] = deque(s for s in queued if s.trigger in ASKED_FOR)
            for send in held_back:
                self._drop(send)
        self.holding.for_breaker(endpoint_id, held_back, time.monotonic())

    def _relay_wakes(self, wake: Wakes) -> None:
        """Pass each wake-up from Redis to the drain's queue, so a publish is heard at once
        even while the drain waits on answers (a hanging endpoint's, say)."""
        try:
            while not self.stopping.is_set():
                if wake.get(timeout=0.2):
                    if self.stopping.is_set():
                        wake.give_back()  # this drain is done: the wake-up is another's
                        break
                    self.done.put(None)
        except Exception as exc:  # Redis went away: the drain polls the database instead
            if not self.stopping.is_set():
                log.warning("lost wake-ups from Redis: %s", exc)
                self.idle_poll = IDLE_POLL
        finally:
            with contextlib.suppress(Exception):
                wake.close()

    def _release_blocked(self) -> None:
        """Past the budget, give back claims waiting on a busy endpoint's slots (a hanging
        one's could keep this job alive for several timeouts): they are due again at once."""
        blocked = [
            ep for ep, q in self.ready.items() if q and self.inflight.get(ep, 0) >= self.cap_of(ep)
        ]
        if not blocked:
            return
        sends = [send for ep in blocked for send in self.ready.pop(ep)]
        for send in sends:
            self._drop(send)
        release(sends)

    @property
    def backlog(self) -> int:
        """Sends in flight or ready to start now. Claims waiting on a busy endpoint's slots
        do not count: a hanging endpoint must not make the others claim less."""
        runnable = sum(
            len(q) for ep, q in self.ready.items() if self.inflight.get(ep, 0) < self.cap_of(ep)
        )
        return self.in_use + runnable

    @property
    def in_use(self) -> int:
        """Requests in flight that take a slot: all but stalled endpoints'."""
        now = time.monotonic()
        stalled = sum(
            n for ep, n in self.inflight.items() if holds.is_stalled(self.answered, ep, now)
        )
        return self.running - stalled

    def _claim(self, now: float, over_budget: bool) -> int:
        """Top up the claimed sends; returns how many were claimed."""
        want = 2 * self.slots - self.backlog
        for endpoint_id, until in list(self.throttled.items()):
            if until <= now:
                del self.throttled[endpoint_id]
        # Past the budget, only endpoints with nothing held are served (so ending a job
        # never stalls the fast ones while the slow ones finish).
        # An endpoint keeps up to four times its cap claimed (in flight plus a queue).
        # An endpoint whose breaker is not closed is left out too: its probe is claimed
        # on its own, so its backlog never fills a claim meant for the healthy ones.
        breaking = holds.breakers.not_closed()
        full = {
            ep for ep, n in self.held.items() if n >= (1 if over_budget else 4 * self.cap_of(ep))
        }
        exclude = full | set(self.throttled) | set(breaking)
        if not over_budget:
            self.holding.push_stalled(full - set(breaking), self.answered, now)
        claimed = claim_due(
            self.rt.box,
            min(want, self.rt.settings.batch_size),
            PREFETCH * self.cap,  # so a fast endpoint's larger cap is kept busy too
            self.lease,
            exclude=exclude,
            line=self.line,
        )
        self._queue(claimed, now)
        return len(claimed)

    def _claim_probes(self, now: float) -> int:
        """Claim a probe for each half-open breaker; returns how many were claimed."""
        probes = [send for ep in holds.breakers.not_closed() for send in self._probe(ep, now)]
        self._queue(probes, now)
        return len(probes)

    def _queue(self, claimed: list[Send], now: float) -> None:
        """Queue claimed sends by endpoint, as rate limits and breakers allow."""
        for send in self._past_breakers(self._within_rate_limits(claimed, now), now):
            self.ready.setdefault(send.endpoint_id, deque()).append(send)
            self.held[send.endpoint_id] = self.held.get(send.endpoint_id, 0) + 1

    def _probe(self, endpoint_id: str, now: float) -> list[Send]:
        """Claim one delivery to probe a half-open breaker with; while it is open, push
        its newly due deliveries out of the due index (holds.PUSH_EVERY)."""
        if holds.breakers.state(endpoint_id, now) is State.HALF_OPEN:
            if self.held.get(endpoint_id, 0) or endpoint_id in self.throttled:
                return []
            if now < self.unprobed.get(endpoint_id, 0.0):
                return []
            held = self.holding.probe_due_by(endpoint_id)
            probe = claim_due(
                self.rt.box, 1, 1, self.lease, only=endpoint_id, due_by=held, line=self.line
            )
            if not probe:  # nothing owed to it, held or not
                if endpoint_is_live(endpoint_id):
                    self.unprobed[endpoint_id] = now + PROBE_IDLE
                else:  # deleted or disabled: nothing will be
                    self.holding.forget(endpoint_id)
            return probe
        self.holding.push_open(endpoint_id, now)
        return []

    def _within_rate_limits(self, claimed: list[Send], now: float) -> list[Send]:
        """The claimed sends that their endpoint's rate limit allows now; the rest go back."""
        limited: dict[str, list[Send]] = {}
        allowed: list[Send] = []
        for send in claimed:
            if send.rate_limit:
                limited.setdefault(send.endpoint_id, []).append(send)
            else:
                allowed.append(send)
        returned: list[Send] = []
        for endpoint_id, sends in limited.items():
            rate = sends[0].rate_limit or 1
            granted, wait = self.rt.broker.take_tokens(endpoint_id, rate, len(sends))
            allowed.extend(sends[:granted])
            if granted < len(sends):
                returned.extend(sends[granted:])
                self.throttled[endpoint_id] = now + max(wait, 0.001)
        release(returned)
        return allowed

    def _past_breakers(self, claimed: list[Send], now: float) -> list[Send]:
        """The claimed sends their endpoint's breaker lets go: all if it is closed, one probe
        if it is half-open; the rest are deferred to when it may half-open again (an admin's
        resend or test goes whatever the breaker says)."""
        allowed: list[Send] = []
        deferred: dict[str, list[Send]] = {}
        for send in claimed:
            endpoint_id = send.endpoint_id
            if holds.breakers.closed(endpoint_id) or send.trigger in ASKED_FOR:
                allowed.append(send)
            elif holds.breakers.take_probe(endpoint_id, now, self.lease):
                allowed.append(send)
                # While the probe is out the rest of the backlog waits, out of the due index.
                deferred.setdefault(endpoint_id, [])
            else:
                deferred.setdefault(endpoint_id, []).append(send)
        for endpoint_id, sends in deferred.items():
            self.holding.for_breaker(endpoint_id, sends, now)
        return allowed

    def _dispatch(self) -> None:
        """Start sends while slots are free, at most an endpoint's cap at once each.

        Round-robin, one send per endpoint per pass, so when slots are short every
        endpoint with work gets its turn rather than the first ones taking them all.
        """
        # A claim that waited behind a slow endpoint's slots too long to finish within its
        # lease goes back instead: sending it late could race the next claimer.
        latest = utcnow() + timedelta(seconds=self.rt.settings.timeout + 5)
        stale: list[Send] = []
        batch: list[tuple[Send, str, bytes, dict[str, str]]] = []
        timestamp = int(time.time())
        # Failing endpoints take their turn after the healthy ones in every pass.
        open_eps = sorted(
            (ep for ep, q in self.ready.items() if q),
            key=lambda ep: self.failing.get(ep, 0.0) >= FAILING,
        )
        free = min(self.slots - self.in_use, self.ceiling - self.running)
        while open_eps and free > 0:
            still_open = []
            for endpoint_id in open_eps:
                if free <= 0:
                    break
                queued = self.ready[endpoint_id]
                flying = self.inflight.get(endpoint_id, 0)
                if not queued or flying >= self.cap_of(endpoint_id):
                    continue
                send = queued.popleft()
                if send.lease is not None and send.lease < latest:
                    stale.append(send)
                    self._drop(send)
                else:
                    if not flying:
                        self.answered[endpoint_id] = time.monotonic()
                    self.inflight[endpoint_id] = flying + 1
                    self.running += 1
                    free -= 1
                    self._sign(send, timestamp, batch)
                    if len(batch) >= HANDOFF:
                        self.rt.transport.start(batch, self._answered)
                        batch = []
                still_open.append(endpoint_id)
            open_eps = still_open
        if batch:
            self.rt.transport.start(batch, self._answered)
        for endpoint_id in [ep for ep, q in self.ready.items() if not q]:
            del self.ready[endpoint_id]
        release(stale)

    def _sign(
        self, send: Send, timestamp: int, batch: list[tuple[Send, str, bytes, dict[str, str]]]
    ) -> None:
        try:
            send.headers = build_headers(send, timestamp)
        except Exception as exc:  # never lose a claimed delivery to a bug: log it as failed
            log.exception("signing %s failed", send.delivery_id)
            self._answered(send, Outcome.internal(exc))
        else:
            batch.append((send, send.url, send.payload, send.headers))

    def _answered(self, send: Send, outcome: Outcome) -> None:
        """Runs in the transport's thread: hand the outcome to the drain's."""
        self.done.put((send, outcome))

    def _collect(self, recorder: Recorder, timeout: float) -> int:
        """Hand finished sends to the recorder, waiting up to ``timeout`` for the first answer
        or wake-up; returns how many sends finished."""
        try:
            result = self.done.get(timeout=timeout) if timeout else self.done.get_nowait()
        except queue.Empty:
            return 0
        count = 0
        while True:
            if result is None:
                self.woken = True
            else:
                recorder.put(result)
                self._measured(*result)
                self._finished(*result)
                count += 1
            try:
                result = self.done.get_nowait()
            except queue.Empty:
                return count

    def _finished(self, send: Send, outcome: Outcome) -> None:
        self.running -= 1
        endpoint_id = send.endpoint_id
        self.inflight[endpoint_id] -= 1
        self.holding.answered(endpoint_id, outcome.ok)
        if self.inflight[endpoint_id]:
            self.answered[endpoint_id] = time.monotonic()
        else:
            del self.inflight[endpoint_id]
            del self.answered[endpoint_id]
        self._drop(send)

    def _drop(self, send: Send) -> None:
        self.held[send.endpoint_id] -= 1
        if not self.held[send.endpoint_id]:
            del self.held[send.endpoint_id]


def _average(averages: dict[str, float], key: str, value: float) -> None:
    """Move ``averages[key]`` a fifth of the way to ``value`` (the first value as it is)."""
    before = averages.get(key)
    averages[key] = value if before is None else 0.8 * before + 0.2 * value


def drain(budget: float = 300.0, idle: float = 0.5) -> int:
    """Deliver what is due until idle or out of budget; returns the number of attempts made.

    The budget ends a busy job well inside RQ's job timeout (600 s). Each handover to the
    next job pauses this worker's sending for tens of milliseconds, so it is rare.
    """
    rt = runtime()
    rt.broker.drain_started()
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    recorder = Recorder(app)
    job = Drain(rt, budget, idle)
    try:
        job.run(recorder)
    finally:
        job.line.close()
        made = recorder.close()
        # Claimed but never started (the loop stopped on an error): due again at once,
        # or when the lease ends if the database is what failed.
        unsent = [s for q in job.ready.values() for s in q]
        try:
            db.session.rollback()  # a failed statement may have left the session unusable
            release(unsent)
            job.holding.hand_back(time.monotonic())
        except Exception:
            # Nothing is lost: a backlog left held long comes due when its hold ends.
            log.exception("could not release %d claimed deliveries or hand back holds", len(unsent))
    if any_due():
        rt.broker.request_drain()
    return made


def sweep_forever(app: Flask, stop: threading.Event) -> None:
    """Every sweep interval, wake a worker if anything is due (Redis may have lost the job),
    after writing the held deliveries a publish left unwritten (app/events/fanouts.py)."""
    with app.app_context():
        rt = runtime()
        while not stop.wait(rt.settings.sweep_interval):
            try:
                fanouts.write_stale()
                if any_due():
                    rt.broker.request_drain()
            except Exception:  # a database or Redis outage must not kill the sweeper
                log.exception("sweep failed; trying again in %ss", rt.settings.sweep_interval)
                # Drop the dead transaction, or every later sweep fails the same way.
                db.session.remove()
