"""What goes wrong in the city: weather, road incidents, sensor faults, lighting outages.

Every event is a pure function of (seed, time): the timeline is cut into
windows and each window's events are drawn from hashed randomness
(:mod:`ingest.simulate.noise`), so a backfill and a live run see the same
crashes, the same stuck sensors and the same smog days.

* **weather** (:func:`weather`): a slow factor around 1 built from sinusoids of
  2-10 day periods with seeded phases, plus a smoke episode every ~11 days;
  it scales air pollution and, a little, energy demand.
* **incidents** (:class:`Incidents`): a crash now and then on a road with a
  traffic counter (arterials and motorways first).  Counters *upstream* (behind
  the crash in the road's direction, within 1.5 km and 400 m of the line)
  see speeds drop, the more the closer; buses whose route passes within
  400 m are held while it lasts (:mod:`ingest.simulate.vehicles`).
* **faults** (:class:`Faults`): per sensor and 6-hour window a small chance of
  one fault: *stuck* (the same value for 3.2-5 h), *dropout* (silent for
  20-90 min), *spike* (a few minutes of 4x values, one in three the 0xFFFF
  glitch value, out of any plausible range) or *drift* (a calibration drift
  growing by 25 % per hour for 2-5 h; water pressure drifts 0.6 bar/h).
* **outages** (:func:`lighting_outage`): some nights a district's lighting
  feeder fails for 1-4 hours and all its streetlights report a fault.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ingest.simulate import noise

SALT_WEATHER, SALT_INCIDENT, SALT_FAULT, SALT_OUTAGE = 101, 102, 103, 104

FAULT_NONE, FAULT_STUCK, FAULT_DROPOUT, FAULT_SPIKE, FAULT_DRIFT = 0, 1, 2, 3, 4
FAULT_WINDOW_S = 6 * 3600.0
GLITCH_VALUE = 65535.0

INCIDENT_WINDOW_S = 2 * 3600.0
UPSTREAM_M = 1500.0
CORRIDOR_M = 400.0


def weather(seed: int, t) -> np.ndarray:
    """Dispersion factor of air pollution (about 0.5-2, up to ~7 on smoke days)."""
    t = np.asarray(t, dtype=float)
    days = t / 86400.0
    total = np.zeros_like(days)
    for j, (period, amp) in enumerate(((4.3, 0.35), (2.1, 0.22), (9.7, 0.2))):
        phase = 2 * math.pi * float(noise.uniform(seed, SALT_WEATHER, j))
        total += amp * np.sin(2 * math.pi * days / period + phase)
    phase = 2 * math.pi * float(noise.uniform(seed, SALT_WEATHER, 9))
    total += 1.5 * np.clip(np.sin(2 * math.pi * days / 11.3 + phase), 0, None) ** 12
    return np.exp(total)


@dataclass(frozen=True, slots=True)
class Incident:
    number: int  # window number (unique id of the incident)
    start: float
    end: float
    x: float  # metres, city plane
    y: float
    dx: float  # direction of the blocked carriageway (unit vector)
    dy: float
    severity: float  # 0.5-1
    sensor: int  # the counter it happened next to

    def active(self, t) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        return (t >= self.start) & (t < self.end)


class Incidents:
    """Road crashes, about one every 4 hours (probability 0.45 per 2-hour window)."""

    def __init__(self, city, seed: int, rate: float = 0.45):
        self.city, self.seed, self.rate = city, seed, rate
        counters = city.index("traffic_counter")
        major = counters[np.isin(city.road_class[counters], ["arterial", "motorway"])]
        self.sites = major if len(major) else counters
        self._cache: dict[int, Incident | None] = {}

    def in_window(self, w: int) -> Incident | None:
        if w in self._cache:
            return self._cache[w]
        found = None
        if len(self.sites) and noise.uniform(self.seed, SALT_INCIDENT, w, 0) < self.rate:
            u = noise.uniform(self.seed, SALT_INCIDENT, w, np.arange(1, 5))
            site = int(self.sites[min(int(u[0] * len(self.sites)), len(self.sites) - 1)])
            start = w * INCIDENT_WINDOW_S + float(u[1]) * INCIDENT_WINDOW_S
            c = self.city
            dx, dy = c.road_dx[site], c.road_dy[site]
            if dx == 0 and dy == 0:
                dx = 1.0
            found = Incident(w, start, start + 60 * (20 + 60 * float(u[2])),
                             float(c.x[site]), float(c.y[site]), float(dx), float(dy),
                             0.5 + 0.5 * float(u[3]), site)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[w] = found
        return found

    def between(self, t0: float, t1: float) -> list[Incident]:
        """Incidents active at some moment of [t0, t1]."""
        out = []
        for w in range(int(t0 // INCIDENT_WINDOW_S) - 1, int(t1 // INCIDENT_WINDOW_S) + 1):
            inc = self.in_window(w)
            if inc is not None and inc.start <= t1 and inc.end > t0:
                out.append(inc)
        return out

    def speed_factor(self, idx: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Multiplier (<= 1) of the speed measured by counters ``idx`` at times ``t``."""
        factor = np.ones(len(idx))
        if len(idx) == 0:
            return factor
        for inc in self.between(float(np.min(t)), float(np.max(t))):
            factor = np.minimum(factor, self.upstream_factor(inc, idx, t))
        return factor

    def upstream_factor(self, inc: Incident, idx: np.ndarray, t) -> np.ndarray:
        c = self.city
        rx, ry = inc.x - c.x[idx], inc.y - c.y[idx]
        along = rx * inc.dx + ry * inc.dy  # > 0: the counter is before the crash
        lateral = np.abs(rx * inc.dy - ry * inc.dx)
        dist = np.hypot(rx, ry)
        hit = (along > -30.0) & (dist < UPSTREAM_M) & (lateral < CORRIDOR_M) & inc.active(t)
        slow = 1.0 - inc.severity * 0.8 * (1.0 - dist / UPSTREAM_M)
        return np.where(hit, np.clip(slow, 0.12, 1.0), 1.0)


class Faults:
    """Sensor faults; a fault's kind and time depend only on (seed, sensor, window)."""

    WEIGHTS = (0.3, 0.3, 0.2, 0.2)  # stuck, dropout, spike, drift
    DURATION_S = {FAULT_STUCK: (3.2 * 3600, 5 * 3600), FAULT_DROPOUT: (20 * 60, 90 * 60),
                  FAULT_SPIKE: (2 * 60, 6 * 60), FAULT_DRIFT: (2 * 3600, 5 * 3600)}

    def __init__(self, seed: int, rate: float = 0.004):
        self.seed, self.rate = seed, rate

    def at(self, idx: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(fault kind, fault start, glitch?) per (sensor, time); kind 0: healthy."""
        idx = np.asarray(idx)
        t = np.asarray(t, dtype=float)
        kind = np.zeros(len(idx), dtype=np.int64)
        start = np.zeros(len(idx))
        glitch = np.zeros(len(idx), dtype=bool)
        if self.rate <= 0 or len(idx) == 0:
            return kind, start, glitch
        w_now = np.floor(t / FAULT_WINDOW_S).astype(np.int64)
        for back in (1, 0):  # a fault may start in the previous window (max 5 h < 6 h)
            w = w_now - back
            has = noise.uniform(self.seed, SALT_FAULT, idx, w, 0) < self.rate
            if not has.any():
                continue
            k = noise.choice(noise.uniform(self.seed, SALT_FAULT, idx, w, 1), self.WEIGHTS) + 1
            s = w * FAULT_WINDOW_S + noise.uniform(self.seed, SALT_FAULT, idx, w, 2) * FAULT_WINDOW_S
            lo = np.choose(k - 1, [self.DURATION_S[j][0] for j in range(1, 5)])
            hi = np.choose(k - 1, [self.DURATION_S[j][1] for j in range(1, 5)])
            dur = lo + (hi - lo) * noise.uniform(self.seed, SALT_FAULT, idx, w, 3)
            on = has & (t >= s) & (t < s + dur)
            kind = np.where(on, k, kind)
            start = np.where(on, s, start)
            glitch = np.where(on, noise.uniform(self.seed, SALT_FAULT, idx, w, 4) < 1 / 3, glitch)
        return kind, start, glitch


def lighting_outage(seed: int, district_codes: np.ndarray, n_districts: int,
                    local) -> np.ndarray:
    """True where a streetlight's district feeder is out: on ~1 night in 4 one district's
    lights fail from a local time between 19:00 and 01:00 for 1-4 hours.

    ``local``: local wall-clock seconds (:func:`ingest.simulate.clock.local_seconds`)."""
    t = np.asarray(local, dtype=float)
    out = np.zeros(len(district_codes), dtype=bool)
    if n_districts == 0:
        return out
    day_now = np.floor(t / 86400.0).astype(np.int64)
    for back in (1, 0):
        day = day_now - back
        has = noise.uniform(seed, SALT_OUTAGE, day, 0) < 0.25
        which = np.floor(noise.uniform(seed, SALT_OUTAGE, day, 1) * n_districts).astype(np.int64)
        start = day * 86400.0 + 19 * 3600.0 + noise.uniform(seed, SALT_OUTAGE, day, 2) * 6 * 3600.0
        end = start + 3600.0 * (1 + 3 * noise.uniform(seed, SALT_OUTAGE, day, 3))
        out |= has & (which == district_codes) & (t >= start) & (t < end)
    return out
