"""Planned vehicles from the city pack's GTFS timetable: trips in progress per bucket and route.

Pure functions of the timetable rows :mod:`layers.store` writes (``transit_trips``,
``transit_calendar``, ``transit_calendar_dates``, ``transit_frequencies``), the city's
timezone and UTC buckets; :func:`read_schedule` loads them.

* **Service days.**  A service runs on a date when ``calendar.txt`` says so (weekday
  flag set, date within ``start_date..end_date``) unless ``calendar_dates.txt`` removes
  it (``exception_type`` 2); ``calendar_dates.txt`` may also add it (1).
* **Trip times.**  GTFS times are seconds after "noon minus 12 h" of the service day in
  the city's timezone: local midnight, except on days when the clocks change, where the
  GTFS rule keeps every time a fixed number of seconds after it.  Times past 24:00:00
  belong to the previous service day (a 25:10:00 trip of Monday runs on Tuesday at 01:10).
* **frequencies.txt.**  A trip listed there runs every ``headway_s`` from ``start_s``
  while the start is before ``end_s``, each instance as long as the trip's own span (and
  counted as a vehicle of its own); its own times are only the template.
* **Counting.**  Planned vehicles in bucket ``[b, b + width)`` are the vehicle blocks
  (``block_id``: the feed's, or inferred by :func:`layers.gtfs.infer_blocks` the way the
  simulator chains trips) with a trip running at any time within it: ``start < b + width``
  and ``end >= b`` (first departure, last arrival).  That is how vehicles are counted as in
  service (one position anywhere in the bucket), and the simulator
  (``ingest/simulate/vehicles.py``) reports a vehicle exactly while one of its trips runs
  between those two times (shifted by its delay).  Counting blocks, not trips, keeps a
  vehicle that ends one trip and starts the next within a bucket at one, so 1-minute,
  10-minute and 1-hour buckets all compare like with like.  A vehicle running late past
  its last scheduled arrival is in service but not planned: short buckets can read a few
  % above 100 at rush hour.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import cached_property
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

TRIP_COLUMNS = ["trip_id", "route_id", "service_id", "block_id", "start_s", "end_s"]
CALENDAR_COLUMNS = ["service_id", "days", "start_date", "end_date"]  # days: 7 booleans, Monday first
DATES_COLUMNS = ["service_id", "date", "exception_type"]
FREQUENCY_COLUMNS = ["trip_id", "start_s", "end_s", "headway_s"]
DAY_S = 86400


@dataclass(frozen=True)
class Schedule:
    """A GTFS timetable, as stored; ``fingerprint`` identifies it (the feed's, from ``transit_feed``)."""

    trips: pd.DataFrame
    calendar: pd.DataFrame
    calendar_dates: pd.DataFrame
    frequencies: pd.DataFrame
    fingerprint: str = ""

    @classmethod
    def from_rows(cls, trips, calendar=(), calendar_dates=(), frequencies=(), fingerprint: str = "") -> "Schedule":
        frames = [pd.DataFrame(list(rows), columns=cols) for rows, cols in (
            (trips, TRIP_COLUMNS), (calendar, CALENDAR_COLUMNS), (calendar_dates, DATES_COLUMNS),
            (frequencies, FREQUENCY_COLUMNS))]
        if not fingerprint:
            fingerprint = hashlib.sha256(repr([f.values.tolist() for f in frames]).encode()).hexdigest()[:16]
        return cls(*frames, fingerprint=fingerprint)

    # cached: a Schedule is kept (evaluate._SCHEDULE_CACHE) and read on every vehicle KPI refresh
    @cached_property
    def routes(self) -> frozenset[str]:
        return frozenset(self.trips["route_id"])

    @cached_property
    def runs(self) -> pd.DataFrame:
        """:func:`trip_instances` (do not modify)."""
        return trip_instances(self)

    def __bool__(self) -> bool:
        return len(self.trips) > 0


def read_schedule(conn) -> Schedule | None:
    """The stored timetable, or None when the pack has no GTFS (no ``transit_feed`` row)."""
    found = conn.execute("SELECT fingerprint FROM transit_feed").fetchone()
    if found is None:
        return None
    return Schedule.from_rows(
        conn.execute(f"SELECT {', '.join(TRIP_COLUMNS)} FROM transit_trips ORDER BY trip_id").fetchall(),
        conn.execute(f"SELECT {', '.join(CALENDAR_COLUMNS)} FROM transit_calendar").fetchall(),
        conn.execute(f"SELECT {', '.join(DATES_COLUMNS)} FROM transit_calendar_dates").fetchall(),
        conn.execute(f"SELECT {', '.join(FREQUENCY_COLUMNS)} FROM transit_frequencies").fetchall(),
        fingerprint=found[0])


def services_on(schedule: Schedule, day: date) -> set[str]:
    """Service ids running on local date ``day`` (calendar, then calendar_dates exceptions)."""
    cal = schedule.calendar
    running = {sid for sid, days, a, b in zip(cal["service_id"], cal["days"], cal["start_date"], cal["end_date"])
               if a <= day <= b and bool(days[day.weekday()])}
    exc = schedule.calendar_dates
    for sid, d, kind in zip(exc["service_id"], exc["date"], exc["exception_type"]):
        if d == day:
            (running.add if int(kind) == 1 else running.discard)(sid)
    return running


def service_day_start(tz: ZoneInfo, day: date) -> int:
    """UTC epoch seconds of GTFS time 0:00:00 of service day ``day``: noon minus 12 h, local."""
    noon = datetime.combine(day, time(12), tzinfo=tz)
    return int(noon.timestamp()) - 12 * 3600


def trip_instances(schedule: Schedule) -> pd.DataFrame:
    """``route_id, service_id, block_id, start_s, end_s`` of every run: frequency-based trips expanded."""
    trips = schedule.trips
    freq = schedule.frequencies
    columns = ["route_id", "service_id", "block_id", "start_s", "end_s"]
    if freq.empty:
        return trips[columns]
    template = trips.set_index("trip_id")
    runs = []
    for trip_id, a, b, headway in zip(freq["trip_id"], freq["start_s"], freq["end_s"], freq["headway_s"]):
        if trip_id not in template.index:
            continue
        t = template.loc[trip_id]
        starts = np.arange(int(a), int(b), int(headway), dtype="int64")
        runs.append(pd.DataFrame({"route_id": t["route_id"], "service_id": t["service_id"],
                                  "block_id": [f"{trip_id}@{a}" for a in starts], "start_s": starts,
                                  "end_s": starts + int(t["end_s"] - t["start_s"])}))
    plain = trips[~trips["trip_id"].isin(freq["trip_id"])][columns]
    return pd.concat([plain, *runs], ignore_index=True)


def intervals(schedule: Schedule, tz: ZoneInfo | str, lo: int, hi: int) -> pd.DataFrame:
    """Runs overlapping UTC epoch seconds ``[lo, hi]``: ``route_id, block, start, end`` (UTC epoch seconds).

    ``block`` is the block id with the service date (a block runs again every day)."""
    tz = ZoneInfo(tz) if isinstance(tz, str) else tz
    runs = schedule.runs
    if runs.empty:
        return pd.DataFrame({"route_id": [], "block": [], "start": np.zeros(0, "int64"),
                             "end": np.zeros(0, "int64")})
    start_s = runs["start_s"].to_numpy(dtype="int64")
    end_s = runs["end_s"].to_numpy(dtype="int64")
    first = datetime.fromtimestamp(lo, timezone.utc).astimezone(tz).date() - timedelta(
        days=int(end_s.max()) // DAY_S + 1)
    last = datetime.fromtimestamp(hi, timezone.utc).astimezone(tz).date() + timedelta(days=1)
    service = runs["service_id"].to_numpy(dtype=object)
    route, block = runs["route_id"].to_numpy(dtype=object), runs["block_id"].to_numpy(dtype=object)
    parts = []
    day = first
    while day <= last:
        mask = np.isin(service, list(services_on(schedule, day)))
        base = service_day_start(tz, day)
        s, e = base + start_s[mask], base + end_s[mask]
        keep = (s <= hi) & (e >= lo)
        parts.append(pd.DataFrame({"route_id": route[mask][keep], "block": block[mask][keep] + f"@{day}",
                                   "start": s[keep], "end": e[keep]}))
        day += timedelta(days=1)
    return pd.concat(parts, ignore_index=True)


def in_progress(schedule: Schedule, tz: ZoneInfo | str, buckets, width: timedelta) -> pd.DataFrame:
    """Planned vehicles per bucket and route: ``bucket, route_id, trips`` (rows with trips > 0).

    ``buckets``: UTC bucket starts (datetimes, any order, all of width ``width``); a vehicle
    block counts in ``[b, b + width)`` when one of its trips departs before ``b + width`` and
    arrives at or after ``b``.  (Consecutive trips of a block less than ``width`` apart are
    merged first: no bucket fits between them, so the block then counts once.)
    """
    index = pd.DatetimeIndex(pd.to_datetime(pd.Series(list(buckets), dtype=object), utc=True)).unique().sort_values()
    empty = pd.DataFrame({"bucket": pd.DatetimeIndex([], tz="UTC"), "route_id": np.zeros(0, dtype=object),
                          "trips": np.zeros(0, dtype="int64")})
    if not len(index) or schedule is None or not schedule:
        return empty
    b = index.as_unit("s").asi8
    w = int(width.total_seconds())
    runs = intervals(schedule, tz, int(b[0]), int(b[-1]) + w)
    if runs.empty:
        return empty
    runs = runs.sort_values(["route_id", "block", "start"], kind="stable")
    s, e = runs["start"].to_numpy(dtype="int64"), runs["end"].to_numpy(dtype="int64")
    key = (runs["route_id"] + "\x00" + runs["block"]).to_numpy(dtype=object)
    new = np.ones(len(runs), dtype=bool)
    new[1:] = (key[1:] != key[:-1]) | (s[1:] - e[:-1] > w)
    s, e = s[new], np.maximum.reduceat(e, np.flatnonzero(new))
    routes, route_idx = np.unique(runs["route_id"].to_numpy(dtype=str)[new], return_inverse=True)
    first = np.searchsorted(b, s - w, side="right")  # first bucket with b + w > start
    stop = np.searchsorted(b, e, side="right")  # past the last bucket with b <= end
    diff = np.zeros((len(routes), len(b) + 1), dtype="int64")
    np.add.at(diff, (route_idx, first), 1)
    np.add.at(diff, (route_idx, stop), -1)
    counts = np.cumsum(diff[:, :-1], axis=1)
    r, k = np.nonzero(counts)
    return pd.DataFrame({"bucket": index[k], "route_id": routes[r].astype(object), "trips": counts[r, k]})
