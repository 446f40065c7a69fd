"""The retry policy as data: delays between attempts, jitter, Retry-After honoured."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    schedule: tuple[int, ...]
    jitter: float = 0.2

    @property
    def max_attempts(self) -> int:
        return len(self.schedule) + 1

    def delay_after(self, attempt: int, retry_after: float | None = None) -> float | None:
        """Seconds until the next try after failed attempt number ``attempt``; None when spent."""
        if attempt >= self.max_attempts:
            return None
        base = float(self.schedule[attempt - 1])
        if retry_after is not None:
            # The receiver's wish counts, within 1x to 2x of what we would have waited.
            return min(max(retry_after, base), 2 * base)
        return base * random.uniform(1 - self.jitter, 1 + self.jitter)
