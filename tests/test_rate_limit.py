"""A webhook's rate_limit holds across worker processes and holds up no other webhook."""

from __future__ import annotations

from flask import Flask

from app.runtime import runtime
from tests.conftest import Api
from tests.receiver import Receiver
from tests.test_concurrency import publish_many, race

LIMIT = 5  # deliveries per second; the bucket holds one second's worth (burst = LIMIT)


def most_in_window(times: list[float], window: float) -> int:
    """The largest number of arrivals within any ``window`` seconds."""
    times = sorted(times)
    best = 0
    for i, start in enumerate(times):
        best = max(best, sum(1 for t in times[i:] if t < start + window))
    return best


def test_it_takes_tokens_up_to_the_burst_then_says_how_long_to_wait(app: Flask) -> None:
    broker = runtime().broker

    granted, wait = broker.take_tokens("wh_bucket", 10, 25)

    assert granted == 10
    assert 0 < wait <= 0.1 + 0.01
    assert broker.take_tokens("wh_bucket", 10, 5)[0] == 0
    assert broker.take_tokens("wh_other", 10, 3) == (3, 0.0)


def test_it_holds_the_limit_across_two_workers_without_holding_up_others(
    app: Flask, env: dict[str, str], api: Api, receiver: Receiver
) -> None:
    api.event_type("user.created")
    api.webhook(receiver.url_for("/limited"), rate_limit=LIMIT)
    api.webhook(receiver.url_for("/free"))
    publish_many(api, 30)

    race(env, processes=2, budget=15, idle=1.5)

    limited = sorted(r.at for r in receiver.requests_for("/limited"))
    free = sorted(r.at for r in receiver.requests_for("/free"))
    assert len(limited) == 30  # all delivered, each once
    assert len(free) == 30
    assert len({r.headers["webhook-id"] for r in receiver.requests_for("/limited")}) == 30
    span = limited[-1] - limited[0]
    assert LIMIT * span + LIMIT + 1 >= 30  # 25 sends past the burst need about 5 s
    assert most_in_window(limited, 1.0) <= 2 * LIMIT + 1
    assert most_in_window(limited, 3.0) <= 3 * LIMIT + LIMIT + 1
    # The other webhook did not queue behind the limited one: it was done early.
    assert free[-1] < limited[14]
