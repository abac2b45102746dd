"""Sensor values: daily and weekly cycles, rush hours, weather, incidents, faults.

:meth:`Signals.clean` gives what a healthy sensor measures at a time; it is a
pure function of (seed, sensor, time), vectorised over arrays of sensor
numbers and times.  :meth:`Signals.readings` adds the faults of
:mod:`ingest.simulate.events` (stuck, dropout, spike, drift) and returns one
:class:`Batch` per sensor kind.

Shapes (local time of the city):

* traffic counters: flow follows :func:`~ingest.simulate.clock.traffic_demand`
  (rush hours 07:45 and 18:00 on working days); speed falls with the square of
  demand (to ~70 % of free flow at rush hour) and much more upstream of an
  incident; occupancy rises as speed falls;
* car parks fill during business hours, bike docks empty in the morning in
  residential areas and fill downtown (and the reverse in the evening);
* air quality: PM and NO2 follow traffic times the weather factor, ozone
  follows the sun; noise follows traffic; energy demand has an evening peak;
  water pressure dips at the morning and evening demand peaks;
* streetlights are on from dusk to dawn, ~1 % have a lasting fault, a district
  sometimes loses its feeder; waste bins fill steadily and are emptied every
  2 or 3 days.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ingest.simulate import clock, events, noise

# salts of per-sensor parameters and per-reading noise
P_SCALE, P_SENS, P_BIAS, P_SIGN, P_LEVEL, P_PERIOD, P_PHASE, P_TARGET = range(1, 9)
N_A, N_B, N_C, N_D = 21, 22, 23, 24

ROAD_CAPACITY = {"motorway": 3200.0, "arterial": 1800.0, "collector": 800.0, "local": 350.0}
BOOLEAN_METRICS = frozenset({"on", "fault"})


@dataclass(slots=True)
class Batch:
    """Readings of sensors of one kind: ``values[metric][j]`` is sensor ``idx[j]`` at ``t[j]``."""

    kind: str
    idx: np.ndarray
    t: np.ndarray
    values: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.idx)


class Signals:
    def __init__(self, city, seed: int = 1, incidents: events.Incidents | None = None,
                 faults: events.Faults | None = None):
        self.city, self.seed = city, seed
        self.incidents = incidents if incidents is not None else events.Incidents(city, seed)
        self.faults = faults if faults is not None else events.Faults(seed)
        districts = sorted({d for d in city.district if d})
        codes = {d: i for i, d in enumerate(districts)}
        self.n_districts = len(districts)
        self.district_code = np.array([codes.get(d, -1) for d in city.district], dtype=np.int64)
        self._kind = {
            "traffic_counter": self._traffic, "parking": self._parking,
            "bike_dock": self._bikes, "air_quality": self._air, "noise": self._noise_meter,
            "energy": self._energy, "water": self._water, "streetlight": self._streetlight,
            "waste_bin": self._waste,
        }

    # -- helpers ----------------------------------------------------------
    def _param(self, salt: int, idx) -> np.ndarray:
        return noise.uniform(self.seed, salt, idx)

    def _jitter(self, salt: int, idx, t) -> np.ndarray:
        return noise.normal(self.seed, salt, idx, t)

    # -- clean signals ------------------------------------------------------
    def clean(self, kind: str, idx: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
        """What healthy sensors ``idx`` (all of ``kind``) measure at times ``t``."""
        idx = np.asarray(idx, dtype=np.int64)
        t = np.asarray(t, dtype=float)
        if t.ndim == 0:
            t = np.full(len(idx), float(t))
        hour, weekday = clock.local_clock(self.city.timezone, t)
        fn = self._kind.get(kind)
        if fn is None:
            return self._generic(kind, idx, t, hour, weekday)
        return fn(idx, t, hour, weekday)

    def _traffic(self, idx, t, hour, weekday):
        c = self.city
        demand = clock.traffic_demand(hour, weekday) * (1 + 0.06 * self._jitter(N_A, idx, t))
        demand = np.clip(demand, 0.0, 1.1)
        cap = np.array([ROAD_CAPACITY.get(k, 500.0) for k in c.road_class[idx]])
        cap *= 0.6 + 0.8 * self._param(P_SCALE, idx)
        sens = 0.6 + 0.6 * self._param(P_SENS, idx)
        ff = c.free_flow[idx]
        factor = self.incidents.speed_factor(idx, t)
        speed = ff * (1 - 0.33 * sens * demand ** 2) * factor * (1 + 0.04 * self._jitter(N_B, idx, t))
        speed = np.maximum(speed, 2.0)
        flow = cap * demand * (0.5 + 0.5 * factor)
        occupancy = np.clip(35.0 * demand * ff / speed, 0.0, 100.0)
        return {"flow": np.round(flow), "speed": np.round(speed, 1),
                "occupancy": np.round(occupancy, 1)}

    def _parking(self, idx, t, hour, weekday):
        level = 0.55 + 0.33 * self._param(P_LEVEL, idx)
        busy = clock.business_hours(hour, weekday)
        occ = 0.1 + level * busy + 0.1 * clock.bump(hour, 20.5, 1.5) + 0.03 * self._jitter(N_A, idx, t)
        return {"occupancy": np.round(np.clip(occ, 0.0, 1.0) * 100.0, 1)}

    def _bikes(self, idx, t, hour, weekday):
        cap = self.city.capacity[idx]
        cap = np.where(cap > 0, cap, 20.0)
        bias = 0.3 * (self._param(P_BIAS, idx) - 0.5)
        sign = np.where(self._param(P_SIGN, idx) < 0.5, -1.0, 1.0)
        working = (np.asarray(weekday) < 5).astype(float)
        commute = working * (clock.bump(hour, 8.5, 1.2) - clock.bump(hour, 18.0, 1.5))
        demand = clock.traffic_demand(hour, weekday)
        share = 0.58 + bias + 0.3 * sign * commute - 0.15 * demand + 0.04 * self._jitter(N_A, idx, t)
        bikes = np.round(np.clip(share, 0.0, 1.0) * cap)
        return {"bikes": bikes, "free_docks": cap - bikes}

    def _air(self, idx, t, hour, weekday):
        w = events.weather(self.seed, t)
        demand = clock.traffic_demand(hour, weekday)
        site = 0.8 + 0.5 * self._param(P_SCALE, idx)
        pm25 = 7.0 * w * (0.6 + 0.7 * demand) * site * (1 + 0.08 * self._jitter(N_A, idx, t))
        pm10 = pm25 * (1.6 + 0.4 * self._param(P_BIAS, idx)) + 6.0 + self._jitter(N_B, idx, t)
        no2 = (12.0 + 55.0 * demand) * site * (0.75 + 0.25 * w) * (1 + 0.1 * self._jitter(N_C, idx, t))
        o3 = (25.0 + 85.0 * clock.sunshine(hour)) * (0.85 + 0.15 * np.minimum(w, 3.0)) \
            * (1 + 0.08 * self._jitter(N_D, idx, t))
        return {k: np.round(np.maximum(v, 0.0), 1)
                for k, v in (("pm25", pm25), ("pm10", pm10), ("no2", no2), ("o3", o3))}

    def _noise_meter(self, idx, t, hour, weekday):
        demand = clock.traffic_demand(hour, weekday)
        site = 5.0 * (self._param(P_BIAS, idx) * 2 - 1)
        laeq = 44.0 + 18.0 * np.sqrt(demand) + site + 1.5 * self._jitter(N_A, idx, t)
        return {"laeq": np.round(laeq, 1)}

    def _energy(self, idx, t, hour, weekday):
        base = 40.0 * np.exp(2.3 * self._param(P_SCALE, idx))  # 40-400 kW
        heat = clock.sunshine(hour) * np.minimum(events.weather(self.seed, t), 2.0) * 0.1
        shape = (0.55 + 0.25 * clock.plateau(hour, 7.0, 22.0) + 0.3 * clock.bump(hour, 19.5, 1.8)
                 + heat) * np.where(np.asarray(weekday) >= 5, 0.85, 1.0)
        return {"kw": np.round(base * shape * (1 + 0.03 * self._jitter(N_A, idx, t)), 1)}

    def _water(self, idx, t, hour, weekday):
        p0 = 4.0 + self._param(P_LEVEL, idx)
        use = 0.6 * clock.bump(hour, 7.0, 1.2) + 0.5 * clock.bump(hour, 19.5, 1.5) \
            + 0.2 * clock.plateau(hour, 6.0, 23.0)
        pressure = p0 - 0.9 * use + 0.05 * self._jitter(N_A, idx, t)
        base = 20.0 + 130.0 * self._param(P_SCALE, idx)
        flow = base * (0.3 + 0.7 * use) * (1 + 0.05 * self._jitter(N_B, idx, t))
        return {"pressure": np.round(pressure, 2), "flow": np.round(flow, 1)}

    def _streetlight(self, idx, t, hour, weekday):
        dawn = 5.6 + 0.3 * self._param(P_PHASE, idx)
        dusk = 18.1 + 0.3 * self._param(P_PERIOD, idx)
        on = ((hour < dawn) | (hour >= dusk)).astype(float)
        # lasting lamp faults: per light and local day a 0.6 % chance, lasting 1-3 days
        loc = clock.local_seconds(self.city.timezone, t)
        day = np.floor(loc / clock.DAY).astype(np.int64)
        fault = np.zeros(len(idx), dtype=bool)
        for back in range(4):
            d = day - back
            starts = noise.uniform(self.seed, P_TARGET, idx, d, 0) < 0.006
            s = d * clock.DAY + noise.uniform(self.seed, P_TARGET, idx, d, 1) * clock.DAY
            e = s + clock.DAY * (1 + 2 * noise.uniform(self.seed, P_TARGET, idx, d, 2))
            fault |= starts & (loc >= s) & (loc < e)
        fault |= on.astype(bool) & events.lighting_outage(
            self.seed, self.district_code[idx], self.n_districts, loc)
        rated = 70.0 + 180.0 * self._param(P_SCALE, idx)
        # off (day) or failed: the driver's standby draw, which a meter still sees fluctuate
        # (a flat value for hours would be a "stuck" sensor to the health rules)
        standby = np.abs(0.5 + 0.1 * self._jitter(N_B, idx, t))
        power = np.where(on > 0, rated * (1 + 0.02 * self._jitter(N_A, idx, t)), standby)
        power = np.where(fault, standby * 0.5, power)
        return {"on": on, "power": np.round(power, 2), "fault": fault.astype(float)}

    def _waste(self, idx, t, hour, weekday):
        loc = clock.local_seconds(self.city.timezone, t)
        period = np.where(self._param(P_PERIOD, idx) < 0.5, 2.0, 3.0) * clock.DAY
        phase = 6 * 3600.0 + np.floor(self._param(P_PHASE, idx) * 3) * clock.DAY \
            + self._param(P_BIAS, idx) * 2 * 3600.0
        since = np.mod(loc - phase, period)
        target = 45.0 + 60.0 * self._param(P_TARGET, idx)  # fill reached just before collection
        fill = 2.0 + target * since / period + 0.8 * self._jitter(N_A, idx, t)
        return {"fill": np.round(np.clip(fill, 0.0, 100.0), 1)}

    def _generic(self, kind, idx, t, hour, weekday):
        """Kinds the simulator has no model for: a daily cycle around 50 for each metric."""
        names = sorted({m for i in idx.tolist() for m in self.city.metrics[i]})
        demand = clock.traffic_demand(hour, weekday)
        out = {}
        for j, metric in enumerate(names):
            scale = 20.0 + 80.0 * noise.uniform(self.seed, P_SCALE, idx, j)
            out[metric] = np.round(scale * (0.5 + 0.5 * demand)
                                   * (1 + 0.05 * noise.normal(self.seed, N_A + j, idx, t)), 2)
        return out

    # -- with faults --------------------------------------------------------
    def readings(self, idx: np.ndarray, t) -> list[Batch]:
        """What sensors ``idx`` report at times ``t`` (a scalar or one time per sensor),
        faults applied; silent sensors (dropout) are left out.  One batch per kind."""
        idx = np.asarray(idx, dtype=np.int64)
        t = np.broadcast_to(np.asarray(t, dtype=float), idx.shape).copy()
        out = []
        kinds = self.city.kinds[idx]
        for kind in sorted(set(kinds.tolist())):
            sel = kinds == kind
            k_idx, k_t = idx[sel], t[sel]
            values = self.clean(kind, k_idx, k_t)
            fault, start, glitch = self.faults.at(k_idx, k_t)
            if fault.any():
                keep = fault != events.FAULT_DROPOUT
                values = self._apply_faults(kind, k_idx, k_t, values, fault, start, glitch)
                if not keep.all():
                    k_idx, k_t = k_idx[keep], k_t[keep]
                    values = {m: v[keep] for m, v in values.items()}
            if len(k_idx):
                out.append(Batch(kind, k_idx, k_t, values))
        return out

    def _apply_faults(self, kind, idx, t, values, fault, start, glitch):
        values = {m: v.copy() for m, v in values.items()}
        stuck = fault == events.FAULT_STUCK
        if stuck.any():
            frozen = self.clean(kind, idx[stuck], start[stuck])
            for m, v in values.items():
                if m not in BOOLEAN_METRICS:
                    v[stuck] = frozen[m]
        spike = fault == events.FAULT_SPIKE
        drift = fault == events.FAULT_DRIFT
        hours = np.maximum(t - start, 0.0) / 3600.0
        for m, v in values.items():
            if m in BOOLEAN_METRICS:
                continue
            v[spike] = np.where(glitch[spike], events.GLITCH_VALUE, np.round(v[spike] * 4.0, 1))
            if m == "pressure":
                v[drift] = np.round(v[drift] + 0.6 * hours[drift], 2)
            else:
                v[drift] = np.round(v[drift] * (1 + 0.25 * hours[drift]), 1)
        return values
