"""Pure helpers of kpis.rollup: bucket arithmetic and range merging."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from core.timebuckets import HOUR, MINUTE, floor_time, ranges

T = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def test_floor_time():
    assert floor_time(T + timedelta(seconds=59, microseconds=5), MINUTE) == T
    assert floor_time(T + timedelta(minutes=59), HOUR) == T
    assert floor_time(datetime(2026, 3, 2, 9, 30, tzinfo=ZoneInfo("America/Cuiaba")), HOUR) == \
        datetime(2026, 3, 2, 13, 0, tzinfo=timezone.utc)


def test_ranges_merge_contiguous_buckets_in_utc():
    utc_db = ZoneInfo("Etc/UTC")  # what psycopg returns for a server in UTC
    buckets = [T, (T + MINUTE).astimezone(utc_db), T + 2 * MINUTE, T + 5 * MINUTE, T + MINUTE]
    got = ranges(buckets, MINUTE)
    assert got == [(T, T + 3 * MINUTE), (T + 5 * MINUTE, T + 6 * MINUTE)]
    assert all(lo.tzinfo is timezone.utc and hi.tzinfo is timezone.utc for lo, hi in got)
    assert ranges([], MINUTE) == []
