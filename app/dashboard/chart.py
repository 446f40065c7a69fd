"""The endpoint health chart: hourly successes and failures as SVG geometry (no chart JS)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.deliveries.stats import HourBucket

WIDTH = 720
HEIGHT = 140
AXIS = 2  # the hour labels sit under the SVG, in HTML
GAP = 4


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    success_y: float
    success_h: float
    failure_y: float
    failure_h: float
    label: str  # the tooltip: "14:00 UTC · 120 succeeded, 3 failed"
    tick: str | None  # an hour label under every sixth bar


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    peak: int
    width: int = WIDTH
    height: int = HEIGHT
    baseline: int = HEIGHT - AXIS


def health_chart(buckets: Sequence[HourBucket]) -> Chart:
    """Stacked bars, successes under failures, scaled to the busiest hour."""
    peak = max((b.tally.total for b in buckets), default=0)
    plot = HEIGHT - AXIS
    slot = WIDTH / max(len(buckets), 1)
    bars = []
    for i, bucket in enumerate(buckets):
        ok, bad = bucket.tally.success, bucket.tally.failure
        ok_h = plot * ok / peak if peak else 0.0
        bad_h = plot * bad / peak if peak else 0.0
        # A non-empty hour stays visible however busy the busiest one was.
        if ok and ok_h < 2:
            ok_h = 2.0
        if bad and bad_h < 2:
            bad_h = 2.0
        hour = bucket.start.strftime("%H:00")
        bars.append(
            Bar(
                x=round(i * slot + GAP / 2, 2),
                width=round(slot - GAP, 2),
                success_y=round(plot - ok_h, 2),
                success_h=round(ok_h, 2),
                failure_y=round(plot - ok_h - bad_h, 2),
                failure_h=round(bad_h, 2),
                label=f"{hour} UTC · {ok} succeeded, {bad} failed",
                tick=hour if i % 6 == 0 or i == len(buckets) - 1 else None,
            )
        )
    return Chart(bars, peak)
