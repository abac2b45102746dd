"""The simulated city: a city pack turned into flat numpy arrays.

:func:`build_city` reads what the simulator needs from a loaded
:class:`layers.pack.CityPack` once: every sensor (id, kind, domain, metrics,
position, district, attributes) and, for traffic counters, the direction of
their road (for "upstream" of an incident).  Per-sensor random parameters
(phase, bias, capacity, ...) are drawn from the seed, so one seed always gives
the same city.  Positions are kept in metres on a local tangent plane
(:func:`to_metres`), which is exact enough for a city.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from layers import load_pack

EARTH_M_PER_DEG = 111_320.0


@dataclass(frozen=True, slots=True)
class Projection:
    """Equirectangular projection around the city centre (metres)."""

    lon0: float
    lat0: float

    def forward(self, lon, lat):
        k = math.cos(math.radians(self.lat0))
        return ((np.asarray(lon, float) - self.lon0) * EARTH_M_PER_DEG * k,
                (np.asarray(lat, float) - self.lat0) * EARTH_M_PER_DEG)

    def inverse(self, x, y):
        k = math.cos(math.radians(self.lat0))
        return (self.lon0 + np.asarray(x, float) / (EARTH_M_PER_DEG * k),
                self.lat0 + np.asarray(y, float) / EARTH_M_PER_DEG)


@dataclass(slots=True)
class City:
    """Sensors of a pack as parallel arrays (index = sensor number)."""

    name: str
    timezone: ZoneInfo
    projection: Projection
    ids: list[str]
    kinds: np.ndarray  # object array of kind names
    domains: list[str]
    metrics: list[tuple[str, ...]]
    units: dict[str, dict[str, str]]  # kind -> metric -> unit
    lon: np.ndarray
    lat: np.ndarray
    x: np.ndarray  # metres east of the centre
    y: np.ndarray
    district: list[str | None]
    attributes: list[dict]
    road_dx: np.ndarray  # unit vector of a counter's road (0 for other sensors)
    road_dy: np.ndarray
    free_flow: np.ndarray  # km/h (counters; 50 elsewhere)
    road_class: np.ndarray  # object array ('' for non-counters)
    capacity: np.ndarray  # car park places / dock places (0 when unknown)
    transit: object = None  # layers.gtfs.Transit
    by_kind: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, kind: str) -> np.ndarray:
        """Sensor numbers of one kind (empty array when the pack has none)."""
        return self.by_kind.get(kind, np.empty(0, dtype=np.int64))


def build_city(pack) -> City:
    sensors = pack.sensors.reset_index(drop=True)
    cfg = pack.config
    proj = Projection(float(cfg.centre[0]), float(cfg.centre[1]))
    n = len(sensors)
    lon = np.array([g.x if g is not None and not g.is_empty else cfg.centre[0]
                    for g in sensors.geometry.values], dtype=float)
    lat = np.array([g.y if g is not None and not g.is_empty else cfg.centre[1]
                    for g in sensors.geometry.values], dtype=float)
    x, y = proj.forward(lon, lat)
    kinds = np.array(sensors["kind"].tolist(), dtype=object)
    attributes = [dict(a) if isinstance(a, dict) else {} for a in sensors["attributes"]]

    roads = {}
    if pack.roads is not None and len(pack.roads):
        roads = dict(zip(pack.roads["id"], pack.roads.geometry.values))
    road_dx, road_dy = np.zeros(n), np.zeros(n)
    for i, road in enumerate(sensors["road"].tolist()):
        geom = roads.get(road) if road else None
        if geom is None or geom.is_empty:
            continue
        coords = np.asarray(geom.coords if geom.geom_type == "LineString"
                            else geom.geoms[0].coords)
        ax, ay = proj.forward(coords[[0, -1], 0], coords[[0, -1], 1])
        dx, dy = ax[1] - ax[0], ay[1] - ay[0]
        norm = math.hypot(dx, dy) or 1.0
        road_dx[i], road_dy[i] = dx / norm, dy / norm

    def attr(name, default):
        out = []
        for a in attributes:
            v = a.get(name)
            out.append(v if isinstance(v, (int, float)) and not isinstance(v, bool) else default)
        return np.array(out, dtype=float)

    kinds_cfg = pack.sensor_kinds()
    units = {k: dict(v.units) for k, v in kinds_cfg.items()}
    metrics = []
    for kind, listed in zip(kinds, sensors["metrics"].tolist()):
        listed = tuple(listed) if listed is not None and len(listed) else ()
        metrics.append(listed or tuple(kinds_cfg[kind].metrics if kind in kinds_cfg else ()))
    by_kind = {k: np.flatnonzero(kinds == k) for k in sorted(set(kinds.tolist()))}
    return City(
        name=cfg.name, timezone=ZoneInfo(cfg.timezone), projection=proj,
        ids=[str(s) for s in sensors["id"]], kinds=kinds,
        domains=[str(d) if d else "infrastructure" for d in sensors["domain"]],
        metrics=metrics, units=units, lon=lon, lat=lat, x=x, y=y,
        district=[d if isinstance(d, str) and d else None for d in sensors["district_id"]],
        attributes=attributes, road_dx=road_dx, road_dy=road_dy,
        free_flow=attr("free_flow_kmh", 50.0),
        road_class=np.array([a.get("road_class") or "" for a in attributes], dtype=object),
        capacity=attr("capacity", 0.0), transit=pack.transit, by_kind=by_kind)


def load_city(path: str | Path) -> City:
    return build_city(load_pack(path))
