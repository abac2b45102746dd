"""What each web layer keeps at each zoom band, and how it is simplified.

Bands (see :data:`BANDS`): ``city`` (zoom <= 12), ``district`` (13-14) and
``street`` (>= 15), each with a simplification tolerance about half a pixel
at its deepest zoom.

* districts: ``shapely.coverage_simplify`` on the whole coverage, so
  neighbours share the same simplified edge -- no gaps, no overlaps (an
  unclean coverage is first cleaned with ``shapely.coverage_clean``);
* roads: at city zoom only :data:`layers.roads.MAJOR_CLASSES`, merged per
  (class, name) into one feature; from district zoom on every segment with
  its id (footways, cycleways and service roads only at street zoom);
* transit lines: one feature per route and distinct shape (the two
  directions of a route are drawn once when they run within 25 m);
* stops: rail stations only at city zoom, every boarding stop below;
* extra layers: simplified, properties as in the source file.
"""
from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely

from layers.gtfs import RAIL_MODES, Transit
from layers.roads import CLASSES, MAJOR_CLASSES
from layers.tables import attributes, json_value

M_PER_DEGREE = 111_320.0
SAME_SHAPE_M = 25.0
MINOR_CLASSES = ("service", "cycleway", "footway")


@dataclass(frozen=True, slots=True)
class Band:
    name: str
    minzoom: int
    maxzoom: int
    tolerance_m: float

    @property
    def tolerance(self) -> float:
        """Tolerance in degrees (of latitude; good enough for simplification)."""
        return self.tolerance_m / M_PER_DEGREE


BANDS = (Band("city", 0, 12, 20.0), Band("district", 13, 14, 5.0), Band("street", 15, 24, 1.0))


def clean_coverage(geoms: np.ndarray) -> np.ndarray:
    """The districts as a valid polygonal coverage (cleaned only when needed)."""
    geoms = np.asarray(geoms, dtype=object)
    if len(geoms) < 2 or shapely.coverage_is_valid(geoms):
        return geoms
    return shapely.coverage_clean(geoms)


def district_features(districts: gpd.GeoDataFrame, coverage: np.ndarray, band: Band):
    simplified = shapely.coverage_simplify(coverage, band.tolerance)
    return [({"id": i, "name": n}, g) for i, n, g in zip(districts["id"], districts["name"], simplified)]


def road_features(roads: gpd.GeoDataFrame, band: Band):
    rank = {c: i for i, c in enumerate(CLASSES)}
    if band.name == "city":
        major = roads[roads["class"].isin(MAJOR_CLASSES)]
        out = []
        for (cls, name), group in major.groupby(["class", "name"], sort=False):
            merged = shapely.line_merge(shapely.union_all(group.geometry.values))
            out.append(({"name": name, "class": cls}, shapely.simplify(merged, band.tolerance)))
        out.sort(key=lambda f: (rank[f[0]["class"]], f[0]["name"]))
        return out
    keep = roads if band.name == "street" else roads[~roads["class"].isin(MINOR_CLASSES)]
    geoms = shapely.simplify(keep.geometry.values, band.tolerance)
    return [({"id": i, "name": n, "class": c, "speed_kmh": _number(s), "lanes": _number(ln)}, g)
            for i, n, c, s, ln, g in zip(keep["id"], keep["name"], keep["class"], keep["speed_kmh"],
                                         keep["lanes"], geoms)]


def _number(value):
    value = json_value(value)
    return int(value) if isinstance(value, float) and value.is_integer() else value


def transit_line_features(transit: Transit, band: Band):
    out = []
    same = SAME_SHAPE_M / M_PER_DEGREE
    for route_id, group in transit.lines.groupby("route_id", sort=False):
        kept = []
        for geom in group.geometry.values:
            if any(shapely.hausdorff_distance(geom, k) < same for k in kept):
                continue
            kept.append(geom)
        first = group.iloc[0]
        props = {"route_id": route_id, "short_name": first["short_name"], "long_name": first["long_name"],
                 "mode": first["mode"], "colour": first["colour"]}
        for geom in kept:
            out.append((dict(props), shapely.simplify(geom, band.tolerance)))
    return out


def stop_features(transit: Transit, band: Band):
    stops = transit.stops
    stops = stops[stops["location_type"] == 0]
    if band.name == "city":
        rail = set(transit.routes.loc[transit.routes["mode"].isin(RAIL_MODES), "route_id"])
        stops = stops[np.array([bool(rail.intersection(r)) for r in stops["route_ids"]], dtype=bool)]
    return [({"stop_id": s, "name": n, "route_ids": list(r)}, g)
            for s, n, r, g in zip(stops["stop_id"], stops["name"], stops["route_ids"], stops.geometry.values)]


def extra_features(data: gpd.GeoDataFrame, band: Band):
    geometry = data.geometry.name
    geoms = data.geometry.values
    lines_or_polys = ~np.isin(data.geom_type.to_numpy(), ["Point", "MultiPoint"])
    geoms = np.where(lines_or_polys, shapely.simplify(geoms, band.tolerance, preserve_topology=True), geoms)
    records = data.drop(columns=geometry).to_dict("records")
    return [(attributes(rec, set()), g) for rec, g in zip(records, geoms)]
