"""The retry policy: the schedule, jitter, and Retry-After within bounds."""

from __future__ import annotations

from app.deliveries.retry import RetryPolicy

DEFAULT = RetryPolicy((60, 300, 1800, 7200))


def test_it_allows_five_attempts_by_default() -> None:
    assert DEFAULT.max_attempts == 5
    assert DEFAULT.delay_after(5) is None


def test_it_jitters_each_delay_by_at_most_twenty_percent() -> None:
    for attempt, base in enumerate((60, 300, 1800, 7200), start=1):
        delays = [DEFAULT.delay_after(attempt) for _ in range(200)]
        assert all(d is not None and base * 0.8 <= d <= base * 1.2 for d in delays)
        assert len(set(delays)) > 1


def test_it_honours_retry_after_within_one_to_two_times_the_delay() -> None:
    assert DEFAULT.delay_after(1, retry_after=90) == 90
    assert DEFAULT.delay_after(1, retry_after=5) == 60
    assert DEFAULT.delay_after(1, retry_after=100000) == 120
