"""The numbers behind the webhook pages: hourly health and 24-hour tallies."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from app.deliveries import stats
from app.extensions import db
from app.models import Attempt, utcnow
from tests.conftest import Api
from tests.receiver import Receiver, respond


def test_it_counts_every_attempt_of_an_hour_in_its_bar(
    api: Api, receiver: Receiver, deliver: Any
) -> None:
    api.event_type("user.created")
    hook = api.webhook(receiver.url_for("/a"))
    receiver.behave("/a", respond(200), respond(200), respond(500))
    for _ in range(3):
        api.publish("user.created")
    deliver()
    now = utcnow()
    hour = now.replace(minute=0, second=0, microsecond=0)
    ids = list(db.session.execute(select(Attempt.id).order_by(Attempt.id)).scalars())
    for n, attempt_id in enumerate(ids):  # seconds apart, all in this hour
        db.session.execute(
            update(Attempt)
            .where(Attempt.id == attempt_id)
            .values(created_at=hour + timedelta(seconds=n * 7 + 1))
        )
    db.session.commit()
    buckets = stats.hourly_health(hook["id"], now)
    assert len(buckets) == 24
    assert buckets[-1].start == hour
    assert (buckets[-1].tally.success, buckets[-1].tally.failure) == (2, 5)  # 500s retried
    assert sum(b.tally.total for b in buckets[:-1]) == 0
    day = stats.day_tallies([hook["id"], "wh_none"], now)
    assert (day[hook["id"]].success, day[hook["id"]].failure) == (2, 5)
    assert day["wh_none"].rate is None
