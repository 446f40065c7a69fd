"""Prefixed ids that sort by creation time (ULID layout: 48-bit ms clock, 80 random bits).

Within one process ids are strictly increasing, even inside one millisecond, so the
order of a batch is the order of its ids.
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_lock = threading.Lock()
_last = (0, 0)


_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # every 10-bit value as 2 digits


def _encode(value: int, length: int) -> str:
    """``value`` in ``length`` base32 digits, most significant first (zero-padded).

    Two digits a step: an id is made for every delivery and every attempt.
    """
    out = []
    for _ in range(length // 2):
        out.append(_PAIRS[value & 1023])
        value >>= 10
    if length % 2:
        out.append(_ALPHABET[value & 31])
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    """A new id such as ``evt_01jd...``; ids made later sort after earlier ones."""
    global _last
    ms = int(time.time() * 1000)
    with _lock:
        last_ms, last_rand = _last
        if ms <= last_ms:
            ms, rand = last_ms, last_rand + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # room to count up
        _last = (ms, rand)
    return f"{prefix}_{_encode(ms, 10)}{_encode(rand, 16)}"


def id_floor(prefix: str, at: float) -> str:
    """The smallest id of ``prefix`` made at time ``at``: a bound for time-range queries."""
    return f"{prefix}_{_encode(int(at * 1000), 10)}{'0' * 16}"
