"""Time buckets: the 1-minute and 1-hour grid every rollup, KPI and page shares (UTC)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)

def floor_time(t: datetime, step: timedelta) -> datetime:
    """``t`` rounded down to a multiple of ``step`` since the Unix epoch (UTC)."""
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    return t - (t - epoch) % step


def ceil_time(t: datetime, step: timedelta) -> datetime:
    """``t`` rounded up to a multiple of ``step`` (itself when it is one)."""
    f = floor_time(t, step)
    return f if f == t else f + step


def ranges(buckets, step: timedelta) -> list[tuple[datetime, datetime]]:
    """Contiguous ``[lo, hi)`` ranges (in UTC) covering the buckets of width ``step``."""
    out: list[list[datetime]] = []
    for b in sorted({t.astimezone(timezone.utc) for t in buckets}):
        if out and out[-1][1] == b:
            out[-1][1] = b + step
        else:
            out.append([b, b + step])
    return [(lo, hi) for lo, hi in out]
