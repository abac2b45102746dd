"""The demo city's road network (metres, local frame) and a small routing graph.

Arterials are radial avenues from the centre plus two ring roads; the rest is a
gently warped street grid whose every fourth line is a collector.  All lines
are noded, so segments meet at shared end points and form a graph.  The VLT
(light rail) runs along two radials, offset into the median.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely import LineString, Point, Polygon

from layers.synth import names

GRID_SPACING = 380.0
GRID_ANGLE = math.radians(12)
DROP_LOCAL = 0.10  # share of local grid segments left out (irregular blocks)
CLASS_RANK = {"arterial": 0, "collector": 1, "local": 2, "rail": 3}


@dataclass(slots=True)
class Road:
    name: str
    cls: str
    speed: float
    lanes: int
    geom: LineString
    id: str = ""


def _wobbly_ray(rng, angle: float, length: float = 22_000, step: float = 200) -> LineString:
    s = np.arange(0, length + step, step)
    drift = (s / length) * (260 * np.sin(s / 2_300 + rng.uniform(0, 6)) + 140 * np.sin(s / 900 + rng.uniform(0, 6)))
    d = np.array([math.cos(angle), math.sin(angle)])
    n = np.array([-d[1], d[0]])
    return LineString(s[:, None] * d + drift[:, None] * n)


def _ring(rng, radius: float) -> Polygon:
    theta = np.linspace(0, 2 * math.pi, 160, endpoint=False)
    r = radius * (1 + 0.06 * np.sin(2 * theta + rng.uniform(0, 6)) + 0.03 * np.sin(5 * theta + rng.uniform(0, 6)))
    return Polygon(np.column_stack([r * np.cos(theta), r * np.sin(theta)]))


def _parts(geom) -> list[LineString]:
    merged = shapely.line_merge(geom) if geom.geom_type == "MultiLineString" else geom
    return [g for g in shapely.get_parts(merged) if g.geom_type == "LineString" and g.length > 50]


def arterials(rng, city: Polygon) -> tuple[list[Road], list[LineString]]:
    """Radial avenues (named) and ring roads; also returns the radial lines (for the VLT)."""
    roads, radials = [], []
    angles = [k * math.pi / 4 + math.radians(rng.uniform(-12, 12)) for k in range(8)]
    for name, angle in zip(names.AVENUES, angles):
        ray = _wobbly_ray(rng, angle)
        inside = ray.intersection(city)
        part = next((p for p in _parts(inside) if p.distance(Point(0, 0)) < 1), None)
        if part is None:
            continue
        radials.append(part)
        roads.append(Road(name, "arterial", 60, 4, part))
    for name, radius, lanes in zip(names.RING_ROADS, (3_000, 6_300), (6, 4)):
        ring = _ring(rng, radius).exterior.intersection(city)
        roads += [Road(name, "arterial", 60, lanes, p) for p in _parts(ring)]
    return roads, radials


def grid(rng, city: Polygon, districts: list[tuple[str, Polygon]]) -> list[Road]:
    """The warped street grid, split at every grid node, named per line and district."""
    half = 13_000
    idx = np.arange(-int(half / GRID_SPACING), int(half / GRID_SPACING) + 1)
    cos_a, sin_a = math.cos(GRID_ANGLE), math.sin(GRID_ANGLE)
    p1, p2 = rng.uniform(0, 6, 2)

    def node(i, j):
        u, v = i * GRID_SPACING, j * GRID_SPACING
        u, v = u + 70 * math.sin(v / 900 + p1), v + 70 * math.sin(u / 1_100 + p2)
        return (u * cos_a - v * sin_a, u * sin_a + v * cos_a)

    tree = shapely.STRtree([poly for _, poly in districts])
    inner = city.buffer(-20)
    line_names: dict[tuple, str] = {}
    roads = []
    for axis in (0, 1):
        for a in idx:
            collector = a % 4 == 0
            for b in idx[:-1]:
                ends = [(a, b), (a, b + 1)] if axis == 0 else [(b, a), (b + 1, a)]
                seg = LineString([node(*ends[0]), node(*ends[1])])
                if not inner.contains(seg):
                    continue
                if not collector and rng.random() < DROP_LOCAL:
                    continue
                hit = tree.query(seg.interpolate(0.5, normalized=True), predicate="intersects")
                district = int(hit.min()) if len(hit) else -1
                key = (axis, int(a), district)
                if key not in line_names:
                    prefixes = names.COLLECTOR_PREFIXES if collector else names.STREET_PREFIXES
                    line_names[key] = names.street_name(rng, prefixes)
                name = line_names[key]
                if collector:
                    roads.append(Road(name, "collector", 50, 2, seg))
                else:
                    roads.append(Road(name, "local", 30, 1 if name.startswith("Travessa") else 2, seg))
    return roads


def node_network(roads: list[Road]) -> list[Road]:
    """Split every road where it crosses another; pieces keep their road's attributes."""
    geoms = [shapely.set_precision(r.geom, 0.01) for r in roads]
    noded = shapely.get_parts(shapely.node(shapely.MultiLineString(geoms)))
    tree = shapely.STRtree(geoms)
    pieces = []
    for piece in noded:
        if piece.length < 0.5:
            continue
        mid = piece.interpolate(0.5, normalized=True)
        hits = tree.query(mid, predicate="dwithin", distance=0.05)
        if not len(hits):
            continue
        owner = min(hits, key=lambda h: (CLASS_RANK[roads[h].cls], h))
        r = roads[owner]
        pieces.append((owner, Road(r.name, r.cls, r.speed, r.lanes, piece)))
    pieces.sort(key=lambda item: (CLASS_RANK[item[1].cls], item[0], item[1].geom.coords[0]))
    return [p for _, p in pieces]


def rail(radials: list[LineString]) -> LineString:
    """The VLT: in along the most westerly radial, out along the north-easterly one."""
    def heading(line):
        x, y = line.coords[-1]
        return math.atan2(y, x)

    west = min(radials, key=lambda l: abs(abs(heading(l)) - math.pi))
    north_east = min(radials, key=lambda l: abs(heading(l) - math.pi / 4))
    coords = list(reversed(west.coords)) + list(north_east.coords)[1:]
    track = LineString(coords).offset_curve(12)
    return shapely.simplify(track, 1.0)


@dataclass(slots=True)
class Graph:
    """Undirected road graph: nodes are segment end points (0.1 m grid)."""

    nodes: dict[tuple, int]
    xy: np.ndarray
    adj: list[list[tuple[int, int, float]]]  # node -> [(other node, road index, seconds)]

    @classmethod
    def build(cls, roads: list[Road]) -> "Graph":
        nodes: dict[tuple, int] = {}
        xy, adj = [], []

        def key(pt):
            k = (round(pt[0], 1), round(pt[1], 1))
            if k not in nodes:
                nodes[k] = len(xy)
                xy.append(k)
                adj.append([])
            return nodes[k]

        for i, r in enumerate(roads):
            if r.cls == "rail":
                continue
            a, b = key(r.geom.coords[0]), key(r.geom.coords[-1])
            cost = r.geom.length / (r.speed / 3.6)
            adj[a].append((b, i, cost))
            adj[b].append((a, i, cost))
        return cls(nodes, np.array(xy), adj)

    def nearest(self, x: float, y: float, connected: set[int] | None = None) -> int:
        d = np.hypot(self.xy[:, 0] - x, self.xy[:, 1] - y)
        if connected is not None:
            mask = np.full(len(d), np.inf)
            mask[list(connected)] = 0
            d = d + mask
        return int(np.argmin(d))

    def component(self, start: int) -> set[int]:
        seen, stack = {start}, [start]
        while stack:
            for other, _, _ in self.adj[stack.pop()]:
                if other not in seen:
                    seen.add(other)
                    stack.append(other)
        return seen

    def path(self, a: int, b: int) -> list[tuple[int, int, int]]:
        """Fastest path as ``[(from node, to node, road index)]`` (Dijkstra)."""
        dist, prev = {a: 0.0}, {}
        heap = [(0.0, a)]
        while heap:
            d, n = heapq.heappop(heap)
            if n == b:
                break
            if d > dist[n]:
                continue
            for other, road, cost in self.adj[n]:
                nd = d + cost
                if nd < dist.get(other, math.inf):
                    dist[other], prev[other] = nd, (n, road)
                    heapq.heappush(heap, (nd, other))
        if b not in prev and a != b:
            return []
        steps, n = [], b
        while n != a:
            p, road = prev[n]
            steps.append((p, n, road))
            n = p
        return steps[::-1]
