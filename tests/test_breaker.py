"""Circuit breakers: the state machine with explicit times, then a real drain and receiver."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select, update

from app.deliveries import holds, jobs
from app.deliveries.breaker import Breakers, Change, State
from app.deliveries.engine import claim_due, defer_due, release, resume
from app.deliveries.jobs import drain
from app.events import fanouts
from app.extensions import db
from app.models import EPOCH, Attempt, Delivery, Endpoint, utcnow
from app.runtime import runtime
from tests.conftest import Api, make_app
from tests.receiver import Receiver, hang, respond

EP = "wh_1"


def failed(breakers: Breakers, times: int, now: float) -> list[Change | None]:
    return [breakers.observe(EP, False, now) for _ in range(times)]


def test_it_opens_at_the_threshold_and_not_before() -> None:
    breakers = Breakers(threshold=3, first=1.0, longest=8.0)

    assert failed(breakers, 2, now=100.0) == [None, None]
    assert breakers.closed(EP)
    assert breakers.state(EP, 100.0) is State.CLOSED

    assert breakers.observe(EP, False, 100.0) == Change("opened", 3, 1.0)
    assert not breakers.closed(EP)
    assert breakers.state(EP, 100.99) is State.OPEN
    assert breakers.reopens_at(EP, 100.5) == 101.0
    assert breakers.state(EP, 101.0) is State.HALF_OPEN


def test_it_counts_only_consecutive_failures() -> None:
    breakers = Breakers(threshold=3)

    failed(breakers, 2, now=0.0)
    assert breakers.observe(EP, True, 0.0) is None  # never opened: nothing to report
    failed(breakers, 2, now=0.0)

    assert breakers.state(EP, 0.0) is State.CLOSED


def test_it_closes_on_a_success() -> None:
    breakers = Breakers(threshold=3, first=1.0)
    failed(breakers, 3, now=10.0)

    assert breakers.observe(EP, True, 12.5) == Change("closed", 3, 2.5)
    assert breakers.state(EP, 12.5) is State.CLOSED
    # Closed means reset: it takes the whole threshold to open again.
    assert failed(breakers, 2, now=13.0) == [None, None]
    assert breakers.closed(EP)


def test_it_lets_one_probe_go_when_half_open() -> None:
    breakers = Breakers(threshold=3, first=1.0, longest=8.0)
    failed(breakers, 3, now=0.0)

    assert not breakers.take_probe(EP, 0.5, lasts=30.0)  # still open
    assert breakers.take_probe(EP, 1.0, lasts=30.0)
    assert not breakers.take_probe(EP, 1.0, lasts=30.0)  # the one probe is out
    assert breakers.state(EP, 20.0) is State.OPEN
    # What is held back meanwhile waits for the earliest a failed probe allows another.
    assert breakers.reopens_at(EP, 1.0) == 3.0
    # A probe whose outcome never comes keeps it shut only for ``lasts``.
    assert breakers.state(EP, 31.0) is State.HALF_OPEN


def test_it_doubles_the_opening_on_each_failed_probe_up_to_the_longest() -> None:
    breakers = Breakers(threshold=3, first=1.0, longest=60.0)
    failed(breakers, 3, now=0.0)
    now, opened = 0.0, []
    for _ in range(8):
        now = breakers.reopens_at(EP, now)
        assert breakers.state(EP, now - 0.01) is State.OPEN
        assert breakers.take_probe(EP, now, lasts=120.0)
        now += 0.5  # the probe's answer takes a while; the opening counts from it
        change = breakers.observe(EP, False, now)
        assert change is not None
        assert change.kind == "reopened"
        opened.append(change.seconds)

    assert opened == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


def test_it_holds_the_backlog_past_the_next_probe_longer_the_longer_it_is_open() -> None:
    breakers = Breakers(threshold=3, first=1.0, longest=60.0)
    assert breakers.holds_until(EP, 5.0) == 5.0  # closed: nothing to hold
    failed(breakers, 3, now=0.0)

    assert breakers.reopens_at(EP, 0.5) == 1.0
    assert breakers.holds_until(EP, 0.5) == 60.5  # a minute at least, not just to the probe
    assert breakers.holds_until(EP, 200.0) == 400.0  # as long again as it has been open
    assert breakers.holds_until(EP, 10_000.0) == 10_600.0  # at most LONGEST_HOLD


def test_it_does_not_reopen_for_failures_sent_before_it_opened() -> None:
    breakers = Breakers(threshold=3, first=1.0)
    failed(breakers, 3, now=0.0)

    assert failed(breakers, 4, now=0.5) == [None] * 4  # in flight when it opened

    assert breakers.state(EP, 1.0) is State.HALF_OPEN


def test_it_forgets_everything_past_its_limit() -> None:
    breakers = Breakers(threshold=1, limit=2)
    breakers.observe("wh_a", False, 0.0)
    breakers.observe("wh_b", False, 0.0)
    assert not breakers.closed("wh_a")

    breakers.observe("wh_c", False, 0.0)

    assert breakers.closed("wh_a")
    assert not breakers.closed("wh_c")


def test_a_stalled_endpoints_hold_ends_with_a_success_not_with_a_timeout() -> None:
    holding = holds.Holds(timeout=5.0)
    holding.push_stalled({EP}, {EP: 0.0}, now=1.0)  # requests out, no answer for 1 s
    [(sends, until)] = holding.deferrals.values()
    assert sends == []
    assert until > utcnow() + timedelta(seconds=holds.STALL_HOLD - 5)

    holding.answered(EP, ok=False)  # a timeout: it still hangs, the backlog stays held
    assert holding.resumes == {}
    holding.answered(EP, ok=True)
    assert holding.resumes == {EP: until}


# The database side: what a breaker defers.


def bare_webhooks(api: Api, count: int) -> tuple[list[str], str]:
    """``count`` webhooks and an event published to them, its deliveries removed so that a
    test can add its own."""
    api.event_type("user.created")
    hooks = [api.webhook(f"http://127.0.0.1:9/{i}")["id"] for i in range(count)]
    event = api.publish("user.created")["id"]
    db.session.execute(Delivery.__table__.delete())
    return hooks, event


def add_deliveries(event: str, rows: dict[str, Delivery]) -> None:
    for row in rows.values():
        row.event_id = event
    db.session.add_all(rows.values())
    db.session.commit()


def test_it_defers_claimed_deliveries_whose_lease_it_still_holds(api: Api) -> None:
    api.event_type("user.created")
    api.webhook("http://127.0.0.1:9/")
    for _ in range(3):
        api.publish("user.created")
    sends = claim_due(runtime().box, limit=10, per_endpoint=10, lease_seconds=60)
    assert len(sends) == 3
    taken = db.session.get(Delivery, sends[0].delivery_id)
    assert taken is not None
    taken.locked_until = theirs = utcnow() + timedelta(minutes=10)  # another worker's now
    db.session.commit()
    until = utcnow() + timedelta(minutes=5)

    release(sends, due_at=until)

    db.session.expire_all()
    rows = [db.session.get(Delivery, s.delivery_id) for s in sends]
    assert [(r.locked_until, r.next_attempt_at == until) for r in rows if r] == [
        (theirs, False),
        (EPOCH, True),
        (EPOCH, True),
    ]
    assert {(r.status, r.attempts) for r in rows if r} == {("pending", 0)}
    assert attempt_count(sends[0].endpoint_id) == 0


def test_it_pushes_only_the_endpoints_unleased_scheduled_deliveries_due_now(api: Api) -> None:
    (hook, other), event = bare_webhooks(api, 2)
    now = utcnow()
    until = now + timedelta(seconds=30)
    rows = {
        "due": Delivery(endpoint_id=hook),
        "retry": Delivery(endpoint_id=hook, attempts=2, next_attempt_at=now + timedelta(seconds=5)),
        "leased": Delivery(endpoint_id=hook, locked_until=now + timedelta(seconds=60)),
        "later": Delivery(endpoint_id=hook, next_attempt_at=now + timedelta(minutes=5)),
        "done": Delivery(endpoint_id=hook, status="succeeded"),
        "resend": Delivery(endpoint_id=hook, trigger="manual"),
        "other": Delivery(endpoint_id=other),
    }
    add_deliveries(event, rows)

    defer_due(hook, until)

    db.session.expire_all()
    # A retry not yet due is left where it is: it is pushed when it comes due.
    assert {name for name, row in rows.items() if row.next_attempt_at == until} == {"due"}
    assert rows["retry"].next_attempt_at == now + timedelta(seconds=5)


def test_a_probe_claims_a_held_delivery_before_it_comes_due(api: Api) -> None:
    (hook,), event = bare_webhooks(api, 1)
    now = utcnow()
    held = Delivery(endpoint_id=hook, next_attempt_at=now + timedelta(seconds=30))
    later = Delivery(endpoint_id=hook, next_attempt_at=now + timedelta(minutes=5))
    add_deliveries(event, {"held": held, "later": later})
    box = runtime().box

    assert claim_due(box, 1, 1, 60, only=hook) == []  # nothing due now
    probe = claim_due(box, 5, 5, 60, only=hook, due_by=now + timedelta(seconds=60))

    assert [s.delivery_id for s in probe] == [held.id]  # held back, not scheduled later


def test_a_held_endpoints_new_deliveries_are_published_held(api: Api) -> None:
    api.event_type("user.created")
    held = api.webhook("http://127.0.0.1:9/held")["id"]
    lapsed = api.webhook("http://127.0.0.1:9/lapsed")["id"]
    free = api.webhook("http://127.0.0.1:9/free")["id"]
    until = utcnow() + timedelta(seconds=30)
    db.session.execute(update(Endpoint).where(Endpoint.id == held).values(held_until=until))
    db.session.execute(  # a hold whose worker went away: over, so it holds nothing
        update(Endpoint)
        .where(Endpoint.id == lapsed)
        .values(held_until=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()

    api.publish("user.created")
    published = utcnow()
    fanouts.writer.flush()  # the held one is written a moment after the publish

    due = {d.endpoint_id: d.next_attempt_at for d in deliveries_of(held, lapsed, free)}
    assert due[held] == until  # no claim meets it, no push has to move it
    assert due[lapsed] <= published
    assert due[free] <= published


def test_holding_marks_the_endpoint_and_bringing_forward_clears_it(api: Api) -> None:
    api.event_type("user.created")
    hook = api.webhook("http://127.0.0.1:9/a")["id"]
    api.publish("user.created")
    until = utcnow() + timedelta(seconds=30)

    defer_due(hook, until)
    assert held_until(hook) == until
    # Another worker's longer hold, and a delivery published under it.
    later = until + timedelta(seconds=60)
    db.session.execute(update(Endpoint).where(Endpoint.id == hook).values(held_until=later))
    db.session.commit()
    api.publish("user.created")
    fanouts.writer.flush()
    assert sorted(d.next_attempt_at for d in deliveries_of(hook)) == [until, later]

    resume(hook, until)  # its breaker closed

    assert held_until(hook) is None
    assert all(d.next_attempt_at <= utcnow() for d in deliveries_of(hook))


def test_a_push_moves_the_mark_only_once_it_runs_short(api: Api) -> None:
    api.event_type("user.created")
    hook = api.webhook("http://127.0.0.1:9/a")["id"]
    until = utcnow() + timedelta(seconds=60)
    defer_due(hook, until)

    defer_due(hook, until + timedelta(seconds=0.5))  # the next push, half a second on
    assert held_until(hook) == until  # not rewritten for so little

    further = until + timedelta(seconds=30)  # a quarter and more short of this one
    defer_due(hook, further)
    assert held_until(hook) == further


def test_a_drain_that_ends_hands_back_what_it_held(api: Api, monkeypatch: Any) -> None:
    monkeypatch.setattr(holds, "breakers", Breakers(threshold=1, first=2.0, longest=60.0))
    monkeypatch.setattr(holds, "_held_upto", {})
    (hook, healed, stalled), event = bare_webhooks(api, 3)
    now = utcnow()
    held = now + timedelta(seconds=60)
    rows = {
        "held": Delivery(endpoint_id=hook, next_attempt_at=held),
        "healed": Delivery(endpoint_id=healed, next_attempt_at=held),
        "stalled": Delivery(endpoint_id=stalled, next_attempt_at=held),
        "later": Delivery(endpoint_id=hook, next_attempt_at=now + timedelta(minutes=30)),
    }
    add_deliveries(event, rows)
    clock = time.monotonic()
    holds.breakers.observe(hook, False, clock)  # open for 2 s; the other one never opened
    holds._held_upto.update({hook: held, healed: held})
    holding = holds.Holds(timeout=5.0)
    holding.stalled[stalled] = held

    holding.hand_back(clock)

    db.session.expire_all()
    # Due at the probe, so whichever drain runs then probes it; not a minute from now.
    assert now < rows["held"].next_attempt_at <= utcnow() + timedelta(seconds=2)
    assert rows["healed"].next_attempt_at <= utcnow()  # its breaker closed: due at once
    assert rows["stalled"].next_attempt_at <= utcnow()  # no drain left to hear it answer
    assert rows["later"].next_attempt_at == now + timedelta(minutes=30)  # never held
    assert holds._held_upto == {hook: held}  # a closing still brings forward all it held


def probing_drain(api: Api, monkeypatch: Any) -> tuple[jobs.Drain, list[str], str, float]:
    """A drain (not run) whose probe claims are counted, a webhook with nothing owed to it
    whose breaker (the only one) is half-open, and the clock it is half-open at."""
    [hook], _ = bare_webhooks(api, 1)
    db.session.commit()  # bare_webhooks's removal of the deliveries
    monkeypatch.setattr(holds, "breakers", Breakers(threshold=1, first=0.0, longest=60.0))
    monkeypatch.setattr(holds, "_held_upto", {})
    claims: list[str] = []
    real = jobs.claim_due

    def counted(*args: Any, **kwargs: Any) -> Any:
        claims.append(kwargs["only"])
        return real(*args, **kwargs)

    monkeypatch.setattr(jobs, "claim_due", counted)
    job = jobs.Drain(runtime(), budget=10.0, idle=0.5)
    job.stopping.set()  # its wake-up relay stops at its next poll
    clock = time.monotonic()
    holds.breakers.observe(hook, False, clock)  # open for 0 s: half-open at once
    return job, claims, hook, clock


def test_a_half_open_breaker_with_nothing_to_probe_looks_again_only_later(
    api: Api, monkeypatch: Any
) -> None:
    job, claims, hook, clock = probing_drain(api, monkeypatch)

    try:
        for _ in range(5):  # five claims in a row find nothing to probe with
            assert job._probe(hook, clock) == []
        assert claims == [hook]  # one look, not five
        assert job._probe(hook, clock + jobs.PROBE_IDLE) == []
        assert claims == [hook, hook]
    finally:
        job.line.close()
    assert not holds.breakers.closed(hook)  # still failing as far as anyone knows


def test_a_deleted_endpoints_breaker_is_forgotten_at_its_first_empty_probe(
    api: Api, monkeypatch: Any
) -> None:
    job, claims, hook, clock = probing_drain(api, monkeypatch)
    holds._held_upto[hook] = utcnow()
    assert api.delete(f"/v1/webhooks/{hook}").status_code == 204

    try:
        assert job._probe(hook, clock) == []
    finally:
        job.line.close()
    assert holds.breakers.not_closed() == []  # nothing probes, pushes or hands it back
    assert holds._held_upto == {}
    assert claims == [hook]


# With a real drain and receiver.


@pytest.fixture
def worker(env: dict[str, str], api: Api) -> Iterator[Flask]:
    """A worker's app whose schedule outlasts these tests: no delivery fails for good."""
    api.event_type("user.created")
    app = make_app(env, HERALD_RETRY_SCHEDULE=",".join(["0"] * 20))
    yield app
    with app.app_context():
        db.engine.dispose()


def drain_in(app: Flask, budget: float, idle: float) -> None:
    with app.app_context():
        drain(budget=budget, idle=idle)


def drain_with(env: dict[str, str], **settings: str) -> None:
    """One drain (10 s budget, 0.5 s idle) by a worker app with these settings."""
    app = make_app(env, **settings)
    try:
        drain_in(app, budget=10.0, idle=0.5)
    finally:
        with app.app_context():
            db.engine.dispose()


def deliveries_of(*endpoint_ids: str) -> list[Delivery]:
    db.session.expire_all()
    rows = db.session.execute(select(Delivery).where(Delivery.endpoint_id.in_(endpoint_ids)))
    found = list(rows.scalars())
    db.session.rollback()
    return found


def held_until(endpoint_id: str) -> Any:
    db.session.expire_all()
    found = db.session.execute(
        select(Endpoint.held_until).where(Endpoint.id == endpoint_id)
    ).scalar()
    db.session.rollback()
    return found


def attempt_count(endpoint_id: str) -> int:
    count = db.session.execute(
        select(func.count()).select_from(Attempt).where(Attempt.endpoint_id == endpoint_id)
    ).scalar_one()
    db.session.rollback()
    return int(count)


def test_it_holds_back_a_failing_endpoint_and_delivers_all_once_it_recovers(
    api: Api, receiver: Receiver, worker: Flask, monkeypatch: Any, caplog: Any
) -> None:
    # A long hold (a minute at least), so only handing the backlog back at the drain's end
    # makes it due by the next probe (its openings: 0.3, 0.6, 1.2 s ...).
    monkeypatch.setattr(holds, "breakers", Breakers(threshold=10, first=0.3, longest=60.0))
    caplog.set_level(logging.INFO, logger="app.deliveries.jobs")
    receiver.behave("/down", respond(500))
    hook = api.webhook(receiver.url_for("/down"))
    events = [{"type": "user.created", "data": {"i": i}} for i in range(60)]
    published = api.post("/v1/events/batch", {"events": events}).get_json()["data"]

    # Long enough for the breaker to open, half-open, fail its probes and reopen.
    drain_in(worker, budget=2.0, idle=1.0)

    failures = len(receiver.requests_for("/down"))
    # The threshold, what was in flight when it opened, and a few probes; not 60 or more.
    assert 10 <= failures <= 25, failures
    waiting = deliveries_of(hook["id"])
    assert {d.status for d in waiting} == {"pending"}
    # Only what was sent counts as an attempt; the deferred ones were not advanced.
    assert sum(d.attempts for d in waiting) == failures == attempt_count(hook["id"])
    deferred = [d for d in waiting if d.attempts == 0]
    assert len(deferred) >= 60 - failures
    # They wait in the database, due after the last request the endpoint was sent.
    last_sent = max(r.at for r in receiver.requests_for("/down"))
    assert all(d.next_attempt_at.timestamp() > last_sent for d in deferred)
    # ... and no later than the breaker's next probe (2.4 s at most), not the hold's minute:
    # the drain has ended, so only their coming due makes a later drain (or the sweeper)
    # probe the endpoint again.
    assert all(d.next_attempt_at <= utcnow() + timedelta(seconds=2.5) for d in deferred)
    assert api.get(f"/v1/webhooks/{hook['id']}").get_json()["status"] == "active"
    before = {d.id: d.attempts for d in waiting}

    receiver.behave("/down", respond(204))
    deadline = time.monotonic() + 20
    while any(d.status == "pending" for d in deliveries_of(hook["id"])):
        assert time.monotonic() < deadline, "deferred deliveries never went out"
        drain_in(worker, budget=2.0, idle=0.5)

    recovered = receiver.requests_for("/down")[failures:]
    assert sorted(r.headers["webhook-id"] for r in recovered) == sorted(
        e["id"] for e in published
    )  # every delivery exactly once more
    assert all(d.attempts == before[d.id] + 1 for d in deliveries_of(hook["id"]))
    assert {d.status for d in deliveries_of(hook["id"])} == {"succeeded"}
    assert holds.breakers.closed(hook["id"])
    logged = [r.getMessage() for r in caplog.records if r.name == "app.deliveries.jobs"]
    assert sum(f"breaker of {hook['id']} opened" in m for m in logged) == 1, logged
    assert sum(f"breaker of {hook['id']} closed" in m for m in logged) == 1, logged


def test_it_sends_a_resend_while_the_breaker_is_open(
    api: Api, receiver: Receiver, worker: Flask, monkeypatch: Any
) -> None:
    monkeypatch.setattr(holds, "breakers", Breakers(threshold=3, first=60.0, longest=60.0))
    receiver.behave("/down", respond(204), respond(500))
    hook = api.webhook(receiver.url_for("/down"))
    delivered = api.publish("user.created")
    drain_in(worker, budget=1.0, idle=0.2)
    for i in range(5):
        api.publish("user.created", {"i": i})
    drain_in(worker, budget=1.0, idle=0.2)
    assert not holds.breakers.closed(hook["id"])
    sent = len(receiver.requests_for("/down"))

    receiver.behave("/down", respond(204))
    scheduled = api.publish("user.created")  # due now, but the breaker is open
    assert api.post(f"/v1/events/{delivered['id']}/redeliver").status_code == 202
    drain_in(worker, budget=1.0, idle=0.2)

    # The resend went first, through the open breaker; its success closed the breaker, and
    # only then did the delivery it held back go out, at once rather than at its deferral.
    resent, *after = receiver.requests_for("/down")[sent:]
    assert (resent.headers["webhook-id"], resent.headers["herald-attempt"]) == (
        delivered["id"],
        "2",
    )
    assert holds.breakers.closed(hook["id"])
    assert scheduled["id"] in {r.headers["webhook-id"] for r in after}
    [waited] = [d for d in deliveries_of(hook["id"]) if d.event_id == scheduled["id"]]
    assert (waited.status, waited.attempts) == ("succeeded", 1)


def test_a_stalled_endpoints_backlog_leaves_the_due_index_and_still_goes_out_once(
    env: dict[str, str], api: Api, receiver: Receiver, monkeypatch: Any
) -> None:
    # One slot per endpoint: four claimed fill it. The receiver holds the first answer for
    # over a second, so the endpoint stalls with its backlog due behind it.
    api.event_type("user.created")
    monkeypatch.setattr(holds, "PUSH_EVERY", 0.2)
    pushed: list[str] = []
    real_defer_due = holds.defer_due

    def spy(endpoint_id: str, until: Any, **options: Any) -> None:
        pushed.append(endpoint_id)
        real_defer_due(endpoint_id, until, **options)

    monkeypatch.setattr(holds, "defer_due", spy)
    receiver.behave("/slow", hang(1.2), respond(204))
    hook = api.webhook(receiver.url_for("/slow"))
    published = [api.publish("user.created", {"n": n})["id"] for n in range(12)]
    drain_with(env, HERALD_ENDPOINT_CONCURRENCY="1", HERALD_RETRY_SCHEDULE="60", HERALD_TIMEOUT="5")

    # Deferred while stalled (for up to the 5 s timeout), brought forward by the first
    # answer: the 0.5 s idle drain would otherwise have ended with them still waiting.
    assert hook["id"] in pushed
    assert hook["id"] not in holds.breakers.not_closed()  # no failure, no breaker
    seen = [r.headers["webhook-id"] for r in receiver.requests_for("/slow")]
    assert sorted(seen) == sorted(published)  # every one, exactly once
    assert {d.status for d in deliveries_of(hook["id"])} == {"succeeded"}


def test_a_stalled_endpoint_does_not_take_the_workers_slots(
    env: dict[str, str], api: Api, receiver: Receiver
) -> None:
    # Two requests in flight per worker, and two per endpoint: the hanging endpoint's two
    # fill the worker. Once it has not answered for STALL seconds they stop counting, so the
    # healthy endpoint's deliveries go out while the hanging ones are still open.
    api.event_type("slow.thing")
    api.event_type("fast.thing")
    receiver.behave("/hanging", hang(3.0))
    receiver.behave("/fast", respond(204))
    api.webhook(receiver.url_for("/hanging"), ["slow.thing"])
    api.webhook(receiver.url_for("/fast"), ["fast.thing"])
    for n in range(2):
        api.publish("slow.thing", {"n": n})  # due first, so claimed and started first
    fast = [api.publish("fast.thing", {"n": n})["id"] for n in range(6)]
    drain_with(
        env,
        HERALD_WORKER_THREADS="2",
        HERALD_ENDPOINT_CONCURRENCY="2",
        HERALD_RETRY_SCHEDULE="60",
        HERALD_TIMEOUT="5",
    )

    hanging = receiver.requests_for("/hanging")
    answered = min(r.at for r in hanging) + 3.0
    arrived = receiver.requests_for("/fast")
    assert sorted(r.headers["webhook-id"] for r in arrived) == sorted(fast)
    assert max(r.at for r in arrived) < answered  # not held behind the hanging requests
