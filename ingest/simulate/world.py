"""The simulated city over time: which sensor reports when, and what.

Every sensor reports every ``interval`` seconds at its own phase (a seeded
offset in ``[0, interval)``), so a live run spreads messages evenly instead of
sending the whole city at once, and a backfill and a live run that follows it
produce exactly the reports of one uninterrupted run.  Vehicles report every
``vehicle_interval`` seconds, on the multiples of it.

:meth:`World.due` returns the reports due in a half-open window ``(t0, t1]``;
the live publisher calls it with the slice of simulated time since its last
tick, the backfill with consecutive windows of history.  ``shard=(k, n)``
keeps the sensors whose number is ``k`` modulo ``n`` (one publisher
connection each); vehicles belong to shard 0.
"""
from __future__ import annotations

import math

import numpy as np

from ingest.simulate import noise
from ingest.simulate.events import Faults, Incidents
from ingest.simulate.signals import Batch, Signals
from ingest.simulate.vehicles import Fleet, Position

SALT_PHASE = 401


class World:
    def __init__(self, city, seed: int = 1, interval: float = 30.0, vehicle_interval: float = 10.0,
                 sensors: np.ndarray | None = None, vehicles: bool = True,
                 fault_rate: float = 0.004, incident_rate: float = 0.45):
        if interval <= 0 or vehicle_interval <= 0:
            raise ValueError("intervals must be positive")
        self.city, self.seed = city, seed
        self.interval, self.vehicle_interval = float(interval), float(vehicle_interval)
        self.incidents = Incidents(city, seed, incident_rate)
        self.signals = Signals(city, seed, self.incidents, Faults(seed, fault_rate))
        self.fleet = Fleet(city, seed, self.incidents) if vehicles else None
        self.sensors = (np.arange(len(city), dtype=np.int64) if sensors is None
                        else np.asarray(sensors, dtype=np.int64))
        self.phase = noise.uniform(seed, SALT_PHASE, np.arange(len(city))) * self.interval

    def select(self, shard: tuple[int, int] | None = None) -> np.ndarray:
        if shard is None or shard[1] <= 1:
            return self.sensors
        k, n = shard
        return self.sensors[self.sensors % n == k]

    def reports_per_second(self) -> float:
        vehicles = len(self.fleet.vehicle_ids()) * 0.6 if self.fleet is not None else 0
        return len(self.sensors) / self.interval + vehicles / self.vehicle_interval

    def due_times(self, t0: float, t1: float, shard=None) -> tuple[np.ndarray, np.ndarray]:
        """(sensor numbers, report times) of the reports in (t0, t1], sorted by time."""
        idx = self.select(shard)
        phase = self.phase[idx]
        k0 = np.floor((t0 - phase) / self.interval)
        k1 = np.floor((t1 - phase) / self.interval)
        count = (k1 - k0).astype(np.int64)
        if not count.any():
            return np.empty(0, dtype=np.int64), np.empty(0)
        rep = np.repeat(np.arange(len(idx)), count)
        first = np.repeat(np.cumsum(count) - count, count)
        k = k0[rep] + 1 + (np.arange(len(rep)) - first)
        times = phase[rep] + k * self.interval
        order = np.argsort(times, kind="stable")
        return idx[rep][order], times[order]

    def due(self, t0: float, t1: float, shard=None) -> list[Batch]:
        idx, times = self.due_times(t0, t1, shard)
        return self.signals.readings(idx, times) if len(idx) else []

    def vehicles_due(self, t0: float, t1: float, shard=None) -> list[Position]:
        if self.fleet is None or (shard is not None and shard[0] != 0):
            return []
        out = []
        step = self.vehicle_interval
        t = (math.floor(t0 / step) + 1) * step
        while t <= t1:
            out.extend(self.fleet.positions(t))
            t += step
        return out
