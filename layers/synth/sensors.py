"""The demo city's sensors: kinds, metrics with units, and where they stand."""
from __future__ import annotations

import math

import numpy as np
import shapely
from shapely import Point, Polygon

from layers.synth.streets import Road
from layers.synth.transit import Stop

# kind -> (domain, {metric: unit}, id prefix, how many)
KINDS = {
    "traffic_counter": ("mobility", {"flow": "veh/h", "speed": "km/h", "occupancy": "%"}, "tc", 300),
    "parking": ("mobility", {"occupancy": "%"}, "pk", 250),
    "bike_dock": ("mobility", {"bikes": "count", "free_docks": "count"}, "bk", 80),
    "vehicle": ("transport", {"speed": "km/h", "delay": "s", "occupancy": "%"}, "vh", 0),
    "air_quality": ("infrastructure", {"pm25": "ug/m3", "pm10": "ug/m3", "no2": "ug/m3", "o3": "ug/m3"}, "aq", 60),
    "noise": ("infrastructure", {"laeq": "dB(A)"}, "nz", 80),
    "energy": ("infrastructure", {"kw": "kW"}, "en", 150),
    "water": ("infrastructure", {"pressure": "bar", "flow": "m3/h"}, "wt", 120),
    "streetlight": ("infrastructure", {"on": "bool", "power": "W", "fault": "bool"}, "sl", 420),
    "waste_bin": ("infrastructure", {"fill": "%"}, "wb", 220),
}
CSV_COLUMNS = ["id", "kind", "domain", "name", "lon", "lat", "road", "stop", "metrics", "capacity"]
# places of a car park / docks of a bike station (the KPI engine weighs by ``capacity``)
CAPACITY = {"parking": (20, 400), "bike_dock": (10, 30)}


class Placer:
    """Random positions (metres) on roads, in districts, biased towards the centre."""

    def __init__(self, rng, city: Polygon, districts, roads: list[Road]):
        self.rng, self.city, self.roads = rng, city, roads
        self.names = [n for n, _ in districts]
        self.polys = [p for _, p in districts]
        self.tree = shapely.STRtree(self.polys)
        self.mid = np.array([r.geom.interpolate(0.5, normalized=True).coords[0] for r in roads])
        self.length = np.array([r.geom.length for r in roads])
        self.counters: dict[tuple[str, str], int] = {}

    def district(self, x: float, y: float) -> str:
        hit = self.tree.query(Point(x, y), predicate="intersects")
        return self.names[int(hit.min())] if len(hit) else self.names[int(self.tree.nearest(Point(x, y)))]

    def number(self, kind: str, where: str) -> int:
        key = (kind, where)
        self.counters[key] = self.counters.get(key, 0) + 1
        return self.counters[key]

    def pick_road(self, classes, central: float | None = None) -> int:
        w = self.length * np.isin([r.cls for r in self.roads], classes)
        if central:
            w = w * np.exp(-np.hypot(self.mid[:, 0], self.mid[:, 1]) / central)
        return int(self.rng.choice(len(self.roads), p=w / w.sum()))

    def on_road(self, classes, offset: float, central: float | None = None) -> tuple[int, float, float]:
        i = self.pick_road(classes, central)
        geom = self.roads[i].geom
        d = self.rng.uniform(0.1, 0.9) * geom.length
        p, q = geom.interpolate(d), geom.interpolate(min(d + 1, geom.length))
        dx, dy = q.x - p.x, q.y - p.y
        norm = math.hypot(dx, dy) or 1.0
        side = offset * (1 if self.rng.random() < 0.5 else -1)
        return i, p.x - dy / norm * side, p.y + dx / norm * side

    def in_district(self, k: int) -> tuple[float, float]:
        minx, miny, maxx, maxy = self.polys[k].bounds
        while True:
            x, y = self.rng.uniform(minx, maxx), self.rng.uniform(miny, maxy)
            if self.polys[k].contains(Point(x, y)):
                return x, y

    def anywhere(self, central: float) -> tuple[float, float]:
        minx, miny, maxx, maxy = self.city.bounds
        while True:
            x, y = self.rng.uniform(minx, maxx), self.rng.uniform(miny, maxy)
            if self.rng.random() < math.exp(-math.hypot(x, y) / central) and self.city.contains(Point(x, y)):
                return x, y


def place(rng, city: Polygon, districts, roads: list[Road], rail_stops: list[Stop]) -> list[dict]:
    """Sensor rows (positions in metres under ``x``/``y``, or a road/stop reference)."""
    pl = Placer(rng, city, districts, roads)
    rows: list[dict] = []

    def add(kind, name, x=None, y=None, road=None, stop=None):
        domain, metrics, prefix, _ = KINDS[kind]
        n = pl.number(kind, "")
        capacity = None
        if kind in CAPACITY:
            low, high = CAPACITY[kind]
            capacity = int(rng.integers(low, high + 1))
        rows.append({"id": f"{prefix}-{n:04d}", "kind": kind, "domain": domain, "name": name, "x": x, "y": y,
                     "road": road, "stop": stop, "metrics": ";".join(metrics), "capacity": capacity})

    counted = set()
    for _ in range(KINDS["traffic_counter"][3]):
        while True:
            i = pl.pick_road(["arterial", "collector"], central=6_000)
            if i not in counted and roads[i].geom.length > 120:
                counted.add(i)
                break
        add("traffic_counter", f"Contador {roads[i].name}", road=roads[i].id)
    for _ in range(KINDS["parking"][3]):
        _, x, y = pl.on_road(["collector", "local"], 14, central=2_500)
        d = pl.district(x, y)
        add("parking", f"Estacionamento {d} {pl.number('parking', d)}", x, y)
    for stop in rail_stops:
        add("bike_dock", f"Bicicletário {stop.name}", stop=stop.id)
    for _ in range(KINDS["bike_dock"][3] - len(rail_stops)):
        _, x, y = pl.on_road(["arterial", "collector", "local"], 10, central=3_000)
        d = pl.district(x, y)
        add("bike_dock", f"Bicicletário {d} {pl.number('bike_dock', d)}", x, y)
    for k in range(KINDS["air_quality"][3]):
        x, y = pl.in_district(k % len(pl.polys))
        d = pl.names[k % len(pl.polys)]
        add("air_quality", f"Qualidade do ar {d} {pl.number('air_quality', d)}", x, y)
    for _ in range(KINDS["noise"][3]):
        i, x, y = pl.on_road(["arterial"], 18, central=5_000)
        add("noise", f"Ruído {roads[i].name} {pl.number('noise', roads[i].name)}", x, y)
    for _ in range(KINDS["energy"][3]):
        x, y = pl.anywhere(central=6_000)
        d = pl.district(x, y)
        add("energy", f"Medidor de energia {d} {pl.number('energy', d)}", x, y)
    for _ in range(KINDS["water"][3]):
        _, x, y = pl.on_road(["arterial", "collector", "local"], 3)
        d = pl.district(x, y)
        add("water", f"Rede de água {d} {pl.number('water', d)}", x, y)
    for _ in range(KINDS["streetlight"][3]):
        i, x, y = pl.on_road(["arterial", "collector", "local"], 9, central=5_000)
        add("streetlight", f"Luminária {roads[i].name} {pl.number('streetlight', roads[i].name)}", x, y)
    for _ in range(KINDS["waste_bin"][3]):
        _, x, y = pl.on_road(["collector", "local"], 6, central=3_500)
        d = pl.district(x, y)
        add("waste_bin", f"Lixeira {d} {pl.number('waste_bin', d)}", x, y)
    return rows
