"""Local time of the city and the shapes of a day and a week.

All functions take UTC epoch seconds (numpy arrays) and are pure.  Hours are
local (the city pack's timezone, daylight saving included), weekday 0 is
Monday.
"""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import numpy as np

DAY = 86400.0


def utc_offset(tz: ZoneInfo, t: float) -> float:
    return datetime.fromtimestamp(t, timezone.utc).astimezone(tz).utcoffset().total_seconds()


def local_seconds(tz: ZoneInfo, t) -> np.ndarray:
    """Local wall-clock time as seconds since 1970-01-01 local."""
    t = np.asarray(t, dtype=float)
    if t.size == 0:
        return t.copy()
    lo, hi = float(t.min()), float(t.max())
    off_lo = utc_offset(tz, lo)
    if hi - lo < 6 * 3600 and off_lo == utc_offset(tz, hi):
        return t + off_lo
    hours = np.floor(t / 3600.0)
    uniq, inverse = np.unique(hours, return_inverse=True)
    offsets = np.array([utc_offset(tz, h * 3600.0) for h in uniq])
    return t + offsets[inverse]


def local_clock(tz: ZoneInfo, t) -> tuple[np.ndarray, np.ndarray]:
    """(local hour as a float in [0, 24), weekday 0=Monday) of each time."""
    loc = local_seconds(tz, t)
    day = np.floor(loc / DAY)
    hour = (loc - day * DAY) / 3600.0
    weekday = ((day.astype(np.int64) + 3) % 7)  # 1970-01-01 was a Thursday
    return hour, weekday


def bump(hour, centre: float, width: float) -> np.ndarray:
    """Gaussian bump of height 1 around ``centre`` (hours)."""
    return np.exp(-0.5 * ((np.asarray(hour) - centre) / width) ** 2)


def plateau(hour, start: float, end: float, steep: float = 2.0) -> np.ndarray:
    """About 1 between ``start`` and ``end`` (hours), about 0 outside, smooth edges."""
    hour = np.asarray(hour)
    return 1.0 / (1.0 + np.exp(-(hour - start) * steep)) / (1.0 + np.exp((hour - end) * steep))


def traffic_demand(hour, weekday) -> np.ndarray:
    """Road demand in [0, 1]: working days have a morning (07:45) and an evening (18:00)
    rush hour over a daytime plateau; Saturdays are flatter, Sundays lower still."""
    hour = np.asarray(hour)
    weekday = np.asarray(weekday)
    work = 0.07 + 0.5 * plateau(hour, 6.0, 21.0) + 0.45 * bump(hour, 7.75, 0.8) \
        + 0.42 * bump(hour, 18.0, 1.1)
    weekend = 0.07 + 0.42 * plateau(hour, 8.5, 22.5, 1.2) + 0.12 * bump(hour, 12.5, 2.5)
    weekend = np.where(weekday == 6, weekend * 0.8, weekend)
    return np.clip(np.where(weekday >= 5, weekend, work), 0.0, 1.0)


def business_hours(hour, weekday) -> np.ndarray:
    """Activity of shops and offices in [0, 1] (car parks, energy)."""
    hour = np.asarray(hour)
    work = 0.82 * plateau(hour, 8.0, 19.0) + 0.12 * bump(hour, 12.5, 2.5)
    weekend = 0.55 * plateau(hour, 9.5, 22.0, 1.2)
    return np.clip(np.where(np.asarray(weekday) >= 5, weekend, work), 0.0, 1.0)


def sunshine(hour) -> np.ndarray:
    """0 at night, 1 around 13:00 (ozone, heat)."""
    return np.clip(np.sin(np.pi * (np.asarray(hour) - 6.0) / 13.0), 0.0, 1.0) ** 1.5
