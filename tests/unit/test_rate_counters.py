"""``dashboard.security.MemoryCounters``: limits' in-process counters with a once-a-second sweep."""
from __future__ import annotations

import time

from limits import parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from dashboard.security import MemoryCounters


def _timers_during_hits(storage, hits: int = 150) -> int:
    limiter = FixedWindowRateLimiter(storage)
    item = parse("100000 per minute")
    seen: list = []  # the timers themselves (kept alive, so no two share an id)
    for _ in range(hits):
        limiter.hit(item, "client")
        if not any(t is storage.timer for t in seen):
            seen.append(storage.timer)
        time.sleep(0.002)
    return len(seen)


def test_scheme_gives_the_quiet_storage():
    assert isinstance(storage_from_string("citydash-memory://"), MemoryCounters)


def test_counts_like_the_library_storage():
    limiter = FixedWindowRateLimiter(MemoryCounters())
    item = parse("5 per minute")
    assert [limiter.hit(item, "a") for _ in range(6)] == [True] * 5 + [False]
    assert limiter.hit(item, "b")  # per key
    expiring = parse("2 per 1 second")
    assert [limiter.hit(expiring, "c") for _ in range(3)] == [True, True, False]
    time.sleep(1.1)
    assert limiter.hit(expiring, "c")  # a new window after expiry


def test_sweeps_once_a_second_not_every_10_ms():
    ours = _timers_during_hits(MemoryCounters())
    library = _timers_during_hits(MemoryStorage())
    assert ours <= 2
    assert library > 5 * ours  # what the subclass is for: the library starts a thread every 10 ms
