"""Buses and trams moving along their GTFS shapes, late as traffic makes them.

:class:`Fleet` reads the pack's GTFS once: every trip's stop times and the
distance of each stop along the trip's shape (metres).  Trips are chained
into vehicles per route and service (a vehicle takes the next trip that
starts at least 5 minutes after its previous one ended), so a route shows the
handful of vehicles a real timetable needs.

At time ``t`` (:meth:`Fleet.positions`) a trip runs when its service runs on
that local day (``calendar.txt`` weekdays) and ``t`` minus its delay lies
between its first departure and its last arrival.  The delay is a pure
function of time: a start delay (-30..+60 s) plus a drift that grows with the
time travelled, scaled by the traffic demand (rush hours make buses late;
trams drift 70 % less), plus the hold of every incident the trip reaches
while it lasts (up to 8 minutes, kept for the rest of the trip).  The
position is the scheduled position at ``t - delay``: interpolated between
stops along the shape.  Occupancy follows demand and peaks mid-route.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely

from ingest.simulate import clock, noise
from layers.gtfs import WEEKDAYS, chain_trips

SALT_TRIP, SALT_ROUTE, SALT_OCC = 201, 202, 203
INCIDENT_REACH_M = 400.0
MAX_HOLD_S = 480.0


@dataclass(frozen=True, slots=True)
class Position:
    time: float  # UTC epoch seconds
    vehicle: str
    route: str
    trip: str
    lon: float
    lat: float
    speed_kmh: float
    bearing: float
    delay_s: float
    occupancy_pct: float


@dataclass(slots=True)
class _Shape:
    x: np.ndarray
    y: np.ndarray
    cum: np.ndarray  # distance along the shape at each vertex, metres
    line: shapely.LineString


class Fleet:
    def __init__(self, city, seed: int = 1, incidents=None):
        self.city, self.seed, self.incidents = city, seed, incidents
        self.shapes: dict[str, _Shape] = {}
        self.trips: list[str] = []
        self.route: list[str] = []
        self.vehicle: list[str] = []
        self.shape_of: list[str] = []
        self.times: list[np.ndarray] = []
        self.dists: list[np.ndarray] = []
        self.services: dict[str, np.ndarray] = {}  # service id -> runs on weekday [7]
        self._hit_cache: dict[tuple[int, str], float | None] = {}
        self.service_of: list[str] = []
        self.drift_scale = np.ones(0)
        transit = city.transit
        if transit is None or transit.trips is None or len(transit.trips) == 0:
            self._finish([], [])
            return
        self._read(transit)

    # -- reading GTFS ---------------------------------------------------------
    def _read(self, transit) -> None:
        proj = self.city.projection
        for shape_id, geom in zip(transit.lines["shape_id"], transit.lines.geometry.values):
            if not shape_id or geom is None or geom.is_empty or shape_id in self.shapes:
                continue
            coords = np.asarray(geom.coords)
            x, y = proj.forward(coords[:, 0], coords[:, 1])
            seg = np.hypot(np.diff(x), np.diff(y))
            self.shapes[shape_id] = _Shape(x, y, np.concatenate([[0.0], np.cumsum(seg)]),
                                           shapely.LineString(np.column_stack([x, y])))
        route_shape = {r: s for r, s in zip(transit.lines["route_id"], transit.lines["shape_id"])}
        stops = transit.stops.set_index("stop_id").geometry
        sx, sy = proj.forward([g.x for g in stops.values], [g.y for g in stops.values])
        stop_xy = dict(zip(stops.index, zip(sx, sy)))
        for _, row in transit.calendar.iterrows() if len(transit.calendar) else []:
            self.services[row["service_id"]] = np.array([str(row[d]).strip() == "1" for d in WEEKDAYS])

        st = transit.stop_times.dropna(subset=["arrival_s"])
        by_trip = {tid: g for tid, g in st.groupby("trip_id", sort=False)}
        firsts, lasts = [], []
        plan = []
        for trip in transit.trips.itertuples(index=False):
            g = by_trip.get(trip.trip_id)
            shape_id = trip.shape_id if trip.shape_id in self.shapes else route_shape.get(trip.route_id)
            if g is None or len(g) < 2 or shape_id not in self.shapes:
                continue
            shape = self.shapes[shape_id]
            pts = shapely.points([stop_xy[s] for s in g["stop_id"]])
            dist = np.maximum.accumulate(shapely.line_locate_point(shape.line, pts))
            times = g["arrival_s"].to_numpy(dtype=float)
            plan.append((trip.trip_id, trip.route_id, trip.service_id, shape_id, times, dist))
            firsts.append(times[0])
            lasts.append(times[-1])
        # chain trips into vehicles, per route and service (as layers.gtfs.infer_blocks does)
        order = sorted(range(len(plan)), key=lambda i: (plan[i][1], plan[i][2], firsts[i]))
        groups: dict[tuple[str, str], list[int]] = {}
        for i in order:
            groups.setdefault((plan[i][1], plan[i][2]), []).append(i)
        vehicles = {}
        for (route_id, _), trips in groups.items():
            for i, n in zip(trips, chain_trips([firsts[i] for i in trips], [lasts[i] for i in trips])):
                vehicles[i] = f"{route_id}-{n + 1:02d}"
        for i, (trip_id, route_id, service_id, shape_id, times, dist) in enumerate(plan):
            self.trips.append(trip_id)
            self.route.append(route_id)
            self.vehicle.append(vehicles[i])
            self.shape_of.append(shape_id)
            self.times.append(times)
            self.dists.append(dist)
            self.services.setdefault(service_id, np.ones(7, dtype=bool))
        self.service_of = [p[2] for p in plan]
        modes = dict(zip(transit.routes["route_id"], transit.routes["mode"]))
        self.drift_scale = np.array([0.3 if modes.get(r) in ("tram", "subway", "rail") else 1.0
                                     for r in self.route])
        self._finish(firsts, lasts)

    def _finish(self, firsts, lasts) -> None:
        self.first = np.asarray(firsts, dtype=float)
        self.last = np.asarray(lasts, dtype=float)
        n = len(self.first)
        ids = np.arange(n)
        self.start_delay = -30.0 + 90.0 * noise.uniform(self.seed, SALT_TRIP, ids, 0)
        self.drift = 0.16 * noise.uniform(self.seed, SALT_TRIP, ids, 1) ** 2 * self.drift_scale
        routes = sorted(set(self.route))
        factor = {r: 0.8 + 0.45 * float(noise.uniform(self.seed, SALT_ROUTE, j))
                  for j, r in enumerate(routes)}
        self.route_load = np.array([factor[r] for r in self.route])
        # runs_on[j, weekday]: trip j's service runs on that weekday (looked up every position tick)
        self.runs_on = np.array([self.services[s] for s in self.service_of], dtype=bool).reshape(-1, 7)

    def vehicle_ids(self) -> list[str]:
        return sorted(set(self.vehicle))

    # -- incidents --------------------------------------------------------------
    def _incident_point(self, inc, shape_id: str) -> float | None:
        """Distance along the shape where it passes the incident (None: not within reach)."""
        key = (inc.number, shape_id)
        if key not in self._hit_cache:
            shape = self.shapes[shape_id]
            point = shapely.Point(inc.x, inc.y)
            hit = None
            if shape.line.distance(point) < INCIDENT_REACH_M:
                hit = float(shapely.line_locate_point(shape.line, point))
            if len(self._hit_cache) > 20000:
                self._hit_cache.clear()
            self._hit_cache[key] = hit
        return self._hit_cache[key]

    def _hold(self, j: int, t: float, secs: float, base_delay: float, incidents) -> float:
        extra = 0.0
        for inc in incidents:
            d = self._incident_point(inc, self.shape_of[j])
            if d is None:
                continue
            passes = t - (secs - float(np.interp(d, self.dists[j], self.times[j]))) + base_delay
            if inc.start <= passes < inc.end:
                extra += min(max(t - passes, 0.0), inc.severity * MAX_HOLD_S)
        return extra

    # -- positions ----------------------------------------------------------------
    def positions(self, t: float) -> list[Position]:
        """Every vehicle in service at UTC time ``t``."""
        if len(self.first) == 0:
            return []
        tz = self.city.timezone
        loc = float(clock.local_seconds(tz, np.array([t]))[0])
        hour, weekday = clock.local_clock(tz, np.array([t]))
        demand = float(clock.traffic_demand(hour, weekday)[0])
        today = math.floor(loc / clock.DAY)
        incidents = self.incidents.between(t - 4 * 3600, t) if self.incidents is not None else []
        out: dict[str, Position] = {}  # one position per vehicle (a late trip keeps it)
        for service_day in (today - 1, today):
            secs = loc - service_day * clock.DAY
            wd = (service_day + 3) % 7
            cand = np.flatnonzero(self.runs_on[:, wd] & (self.first - 60 <= secs) & (secs <= self.last + 1800))
            for j in cand.tolist():
                travelled = max(secs - self.first[j], 0.0)
                delay = self.start_delay[j] + self.drift[j] * travelled * (0.3 + demand)
                if incidents:
                    delay += self._hold(j, t, secs, delay, incidents)
                te = secs - delay
                times, dists = self.times[j], self.dists[j]
                if te < times[0] or te > times[-1]:
                    continue
                if self.vehicle[j] not in out:
                    out[self.vehicle[j]] = self._position(j, t, te, delay, demand)
        return list(out.values())

    def _position(self, j: int, t: float, te: float, delay: float, demand: float) -> Position:
        times, dists = self.times[j], self.dists[j]
        shape = self.shapes[self.shape_of[j]]
        d = float(np.interp(te, times, dists))
        d_next = float(np.interp(te + 20.0, times, dists))
        d_prev = float(np.interp(te - 20.0, times, dists))
        x = float(np.interp(d, shape.cum, shape.x))
        y = float(np.interp(d, shape.cum, shape.y))
        ahead = min(d + 15.0, shape.cum[-1])
        behind = max(ahead - 30.0, 0.0)
        bx = float(np.interp(ahead, shape.cum, shape.x)) - float(np.interp(behind, shape.cum, shape.x))
        by = float(np.interp(ahead, shape.cum, shape.y)) - float(np.interp(behind, shape.cum, shape.y))
        bearing = (math.degrees(math.atan2(bx, by)) + 360.0) % 360.0
        speed = (d_next - d_prev) / 40.0 * 3.6 / (1.0 + self.drift[j] * (0.3 + demand))
        lon, lat = self.city.projection.inverse(x, y)
        progress = (te - times[0]) / max(times[-1] - times[0], 1.0)
        occ = (8.0 + 80.0 * demand * self.route_load[j] * (0.55 + 0.45 * math.sin(math.pi * progress))
               + 5.0 * float(noise.normal(self.seed, SALT_OCC, j, math.floor(t))))
        return Position(float(t), self.vehicle[j], self.route[j], self.trips[j],
                        round(float(lon), 6), round(float(lat), 6),
                        round(max(float(speed), 0.0), 1), round(float(bearing), 1),
                        float(round(float(delay))), round(min(max(float(occ), 0.0), 100.0), 1))
