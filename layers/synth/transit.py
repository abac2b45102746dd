"""The demo city's GTFS feed: bus routes routed over the road graph, and the VLT.

Timetable: trips every 8-30 minutes from 05:00 until the last departure before
24:00 (later arrivals are written past 24:00, as GTFS allows), one service for
weekdays and a thinner one for weekends.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely import LineString, Point, Polygon

from layers.synth.streets import Graph, Road

N_BUS = 9
STOP_SPACING = {"bus": 560.0, "rail": 900.0}
SHARE_STOP_WITHIN = 70.0  # m: a new stop this close to an existing one reuses it
BUS_COLOURS = ["1F77B4", "FF7F0E", "2CA02C", "D62728", "9467BD", "8C564B", "E377C2", "7F7F7F", "BCBD22",
               "17BECF", "AEC7E8", "FFBB78"]
# (from hour, to hour, headway minutes) on weekdays; weekends multiply by the service factor
HEADWAYS = {
    "bus": [(5, 6, 20), (6, 9, 15), (9, 16, 20), (16, 19, 15), (19, 21, 20), (21, 24, 30)],
    "rail": [(5, 6, 15), (6, 9, 8), (9, 16, 12), (16, 19, 8), (19, 21, 12), (21, 24, 20)],
}
SPEED_KMH = {"bus": (19.0, 15.5), "rail": (27.0, 27.0)}  # (off-peak, peak), including dwell for buses
RAIL_DWELL_S = 20
SERVICES = {"UTEIS": ("1111100", 1.0), "FDS": ("0000011", 2.0)}  # service -> (Mon..Sun, headway factor)


@dataclass(slots=True)
class Stop:
    id: str
    name: str
    x: float
    y: float


@dataclass(slots=True)
class Route:
    id: str
    short: str
    long: str
    type: int  # GTFS route_type: 3 bus, 0 tram/light rail
    colour: str
    mode: str
    line: LineString  # direction 0, metres
    stops: list[str] = field(default_factory=list)  # direction 0
    stop_dist: list[float] = field(default_factory=list)  # metres along ``line``


class Network:
    """Builds stops and routes; ``district_of`` names the district of a point."""

    def __init__(self, rng, graph: Graph, roads: list[Road], districts: list[tuple[str, Polygon]]):
        self.rng, self.graph, self.roads = rng, graph, roads
        self.district_names = [n for n, _ in districts]
        self.district_tree = shapely.STRtree([p for _, p in districts])
        self.stops: list[Stop] = []
        self.routes: list[Route] = []

    def district_of(self, x: float, y: float) -> str:
        hit = self.district_tree.query(Point(x, y), predicate="intersects")
        if len(hit):
            return self.district_names[int(hit.min())]
        return self.district_names[int(self.district_tree.nearest(Point(x, y)))]

    def bus_routes(self, city: Polygon) -> None:
        """Routes between opposite edges of the city (every fourth one crosstown), fastest path."""
        g = self.graph
        connected = g.component(g.nearest(0, 0))
        origin = city.centroid
        base = self.rng.uniform(0, 2 * math.pi)
        for k in range(N_BUS):
            a = base + k * 2 * math.pi / N_BUS
            crosstown = k % 4 == 3
            b = a + (math.pi / 2 if crosstown else math.pi + self.rng.uniform(-0.6, 0.6))
            ends = [self._edge_point(city, origin, angle) for angle in (a, b)]
            na, nb = (g.nearest(x, y, connected) for x, y in ends)
            steps = g.path(na, nb)
            if len(steps) < 5:
                continue
            line = self._path_line(steps)
            start_d, end_d = self.district_of(*line.coords[0]), self.district_of(*line.coords[-1])
            passed = {self.district_of(*line.interpolate(f, normalized=True).coords[0])
                      for f in np.linspace(0.1, 0.9, 9)}
            via = "Centro" if passed & {"Centro Norte", "Centro Sul"} else \
                self.district_of(*line.interpolate(0.5, normalized=True).coords[0])
            n_bus = sum(1 for r in self.routes if r.mode == "bus")
            number = str(101 + n_bus)
            route = Route(f"B{number}", number, f"{start_d} – {via} – {end_d}", 3,
                          BUS_COLOURS[n_bus % len(BUS_COLOURS)], "bus", line)
            self._place_stops(route, steps)
            self.routes.append(route)

    def rail_route(self, track: LineString) -> None:
        route = Route("VLT1", "VLT", "VLT Linha 1 – Oeste – Centro – Nordeste", 0, "00A651", "rail", track)
        n = max(2, round(track.length / STOP_SPACING["rail"]) + 1)
        seen: dict[str, int] = {}
        for d in np.linspace(0, track.length, n):
            p = track.interpolate(d)
            district = self.district_of(p.x, p.y)
            seen[district] = seen.get(district, 0) + 1
            suffix = "" if seen[district] == 1 else f" {seen[district]}"
            stop = Stop(f"E{len(self.stops) + 1:04d}", f"Estação {district}{suffix}", p.x, p.y)
            self.stops.append(stop)
            route.stops.append(stop.id)
            route.stop_dist.append(float(d))
        self.routes.append(route)

    def _edge_point(self, city: Polygon, origin: Point, angle: float) -> tuple[float, float]:
        """80 % of the way from ``origin`` to the city edge in direction ``angle``."""
        ray = LineString([(origin.x, origin.y),
                          (origin.x + 30_000 * math.cos(angle), origin.y + 30_000 * math.sin(angle))])
        hit = ray.intersection(city.exterior)
        pts = list(shapely.get_parts(hit)) or [origin]
        edge = min(pts, key=lambda p: p.distance(origin))
        return origin.x + 0.8 * (edge.x - origin.x), origin.y + 0.8 * (edge.y - origin.y)

    def _path_line(self, steps) -> LineString:
        coords = []
        for a, _, road in steps:
            seg = list(self.roads[road].geom.coords)
            ax, ay = self.graph.xy[a]
            if math.hypot(seg[0][0] - ax, seg[0][1] - ay) > math.hypot(seg[-1][0] - ax, seg[-1][1] - ay):
                seg.reverse()
            coords.extend(seg if not coords else seg[1:])
        return LineString(coords)

    def _place_stops(self, route: Route, steps) -> None:
        line = route.line
        n = max(2, round(line.length / STOP_SPACING["bus"]) + 1)
        tree_xy = np.array([(s.x, s.y) for s in self.stops]) if self.stops else np.empty((0, 2))
        # road under each stop: the step whose segment is nearest
        step_lines = [self.roads[road].geom for _, _, road in steps]
        step_tree = shapely.STRtree(step_lines)
        for d in np.linspace(0, line.length, n):
            p = line.interpolate(d)
            stop_id = None
            if len(tree_xy):
                dist = np.hypot(tree_xy[:, 0] - p.x, tree_xy[:, 1] - p.y)
                i = int(np.argmin(dist))
                if dist[i] < SHARE_STOP_WITHIN and self.stops[i].id not in route.stops:
                    stop_id = self.stops[i].id
            if stop_id is None:
                road = self.roads[steps[int(step_tree.nearest(p))][2]]
                name = f"{road.name} – {self.district_of(p.x, p.y)}"
                stop = Stop(f"P{len(self.stops) + 1:04d}", name, p.x, p.y)
                self.stops.append(stop)
                tree_xy = np.vstack([tree_xy, [(p.x, p.y)]])
                stop_id = stop.id
            if stop_id in route.stops:
                continue
            route.stops.append(stop_id)
            route.stop_dist.append(float(d))


def timetable(route: Route, index: int):
    """Yield ``(service, direction, trip_id, [(stop_id, arrival_s, departure_s)])``.

    ``index`` staggers the first departures of different routes.
    """
    length = route.line.length
    offset = (index * 3) % 7 * 60
    for service, (_, factor) in SERVICES.items():
        for direction in (0, 1):
            stops = route.stops if direction == 0 else route.stops[::-1]
            dists = route.stop_dist if direction == 0 else [length - d for d in route.stop_dist[::-1]]
            t = 5 * 3600 + offset + direction * 120
            while t < 24 * 3600:
                hour = t // 3600
                peak = any(a <= hour < b for a, b in ((6, 9), (16, 19)))
                speed = SPEED_KMH[route.mode][1 if peak else 0] / 3.6
                dwell = RAIL_DWELL_S if route.mode == "rail" else 0
                times = []
                for i, (stop, d) in enumerate(zip(stops, dists)):
                    arrive = t + round(d / speed) + i * dwell
                    times.append((stop, arrive, arrive + (dwell if 0 < i < len(stops) - 1 else 0)))
                trip_id = f"{route.id}-{service[0]}{direction}-{t // 3600:02d}{t % 3600 // 60:02d}"
                yield service, direction, trip_id, times
                headway = next(h for a, b, h in HEADWAYS[route.mode] if a <= hour < b)
                t += int(round(headway * factor)) * 60


def gtfs_time(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
