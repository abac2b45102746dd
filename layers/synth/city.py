"""City outline, rivers, districts and parks of the demo city (metres, local frame)."""
from __future__ import annotations

import math

import numpy as np
import shapely
from shapely import LineString, Point, Polygon

from layers.synth import names

RADIUS = 8_500.0  # mean city radius, m
N_DISTRICTS = 20


def river_cuiaba(rng) -> LineString:
    """A meandering river running NW -> SE about 5.5 km south-west of the centre."""
    t = np.linspace(-22_000, 22_000, 177)
    phase = rng.uniform(0, 2 * math.pi)
    direction = np.array([math.cos(math.radians(-40)), math.sin(math.radians(-40))])  # towards SE
    normal = np.array([-direction[1], -direction[0]])  # towards SW
    offset = 5_500 + 450 * np.sin(t / 1_700 + phase) + 250 * np.sin(t / 610 + 2 * phase)
    pts = t[:, None] * direction + offset[:, None] * normal
    return LineString(pts)


def river_coxipo(rng, cuiaba: LineString) -> LineString:
    """A tributary from the east joining the Rio Cuiabá south of the centre."""
    mouth = cuiaba.interpolate(cuiaba.project(Point(1_500, -6_000)))
    start = np.array([12_000.0, -1_500.0])
    end = np.array([mouth.x, mouth.y])
    s = np.linspace(0, 1, 90)
    pts = start + s[:, None] * (end - start)
    wiggle = 380 * np.sin(s * 9 + rng.uniform(0, 2 * math.pi)) * np.sin(math.pi * s)
    normal = np.array([-(end - start)[1], (end - start)[0]]) / np.linalg.norm(end - start)
    return LineString(pts + wiggle[:, None] * normal)


def outline(rng, river: LineString) -> Polygon:
    """A lumpy disc, cut off by the river on its south-west side."""
    theta = np.linspace(0, 2 * math.pi, 240, endpoint=False)
    r = np.full_like(theta, RADIUS)
    for k, amp in ((2, 0.10), (3, 0.07), (5, 0.04), (9, 0.015)):
        r *= 1 + amp * np.sin(k * theta + rng.uniform(0, 2 * math.pi))
    disc = Polygon(np.column_stack([r * np.cos(theta), r * np.sin(theta)]))
    coords = np.asarray(river.coords)
    far_ne = [(30_000, 30_000)]  # close the river into the half-plane north-east of it
    north_east = Polygon(np.vstack([coords, [(coords[-1][0] + 20_000, coords[-1][1] + 20_000)], far_ne,
                                    [(coords[0][0] + 20_000, coords[0][1] + 20_000)]]))
    shape = disc.intersection(north_east.buffer(0))
    if shape.geom_type != "Polygon":  # keep the main part
        shape = max(shapely.get_parts(shape), key=lambda g: g.area)
    return shapely.set_precision(shape, 0.01)


def districts(rng, city: Polygon) -> list[tuple[str, Polygon]]:
    """~20 districts: a Lloyd-relaxed Voronoi of seeds clipped to the outline, named."""
    minx, miny, maxx, maxy = city.bounds
    seeds = []
    while len(seeds) < N_DISTRICTS:
        p = Point(rng.uniform(minx, maxx), rng.uniform(miny, maxy))
        if city.contains(p):
            seeds.append((p.x, p.y))
    seeds = np.array(seeds)
    for _ in range(4):  # Lloyd relaxation: even-sized, compact cells
        cells = _cells(seeds, city)
        seeds = np.array([[c.centroid.x, c.centroid.y] for c in cells])
    cells = _cells(seeds, city)
    order = np.argsort([c.centroid.distance(Point(0, 0)) for c in cells], kind="stable")
    central = sorted(order[:2], key=lambda i: -cells[i].centroid.y)  # the northern one first
    pool = list(names.DISTRICTS)
    picked = [pool[i] for i in rng.permutation(len(pool))[: len(cells) - 2]]
    named, it = [], iter(picked)
    for i in range(len(cells)):
        if i in central:
            name = names.CENTRAL_DISTRICTS[central.index(i)]
        else:
            name = next(it)
        named.append((name, cells[i]))
    return named


def _cells(seeds: np.ndarray, city: Polygon) -> list[Polygon]:
    vor = shapely.voronoi_polygons(shapely.MultiPoint(seeds), extend_to=city.buffer(2_000))
    cells = list(shapely.get_parts(vor))
    # voronoi_polygons does not keep the seed order: match cells back to seeds
    by_seed = []
    for x, y in seeds:
        p = Point(x, y)
        by_seed.append(next(c for c in cells if c.contains(p)))
    out = []
    for cell in by_seed:
        part = cell.intersection(city)
        if part.geom_type != "Polygon":
            part = max(shapely.get_parts(part), key=lambda g: g.area)
        out.append(part)
    return out


def parks(rng, city: Polygon) -> list[tuple[str, Polygon]]:
    """A few rounded park polygons well inside the city."""
    inner = city.buffer(-1_500)
    minx, miny, maxx, maxy = inner.bounds
    out = []
    for name in names.PARKS:
        while True:
            p = Point(rng.uniform(minx, maxx), rng.uniform(miny, maxy))
            if inner.contains(p) and all(p.distance(q) > 1_800 for _, q in out):
                break
        theta = np.linspace(0, 2 * math.pi, 20, endpoint=False)
        r = rng.uniform(180, 420) * (1 + 0.25 * np.sin(2 * theta + rng.uniform(0, 6)))
        out.append((name, Polygon(np.column_stack([p.x + r * np.cos(theta), p.y + r * np.sin(theta)]))))
    return [(n, poly) for n, poly in out]
