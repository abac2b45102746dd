"""Compact GeoJSON text with coordinates rounded to a fixed number of decimals.

5 decimals of a degree is about 1.1 m at the equator, below a pixel at any
zoom the dashboard uses.  Output is deterministic: the same features give the
same bytes (so a file's sha256 works as its ETag).
"""
from __future__ import annotations

import json

import numpy as np
import shapely

DECIMALS = 5


def round_geometry(geom, decimals: int = DECIMALS):
    """Round coordinates, drop repeated points; repair what rounding broke (rare)."""
    if geom is None or geom.is_empty:
        return geom
    rounded = shapely.remove_repeated_points(shapely.transform(geom, lambda c: np.round(c, decimals)))
    if rounded.geom_type in ("Polygon", "MultiPolygon") and not rounded.is_valid:
        fixed = shapely.make_valid(rounded)
        polys = [p for p in shapely.get_parts(fixed) if p.geom_type in ("Polygon", "MultiPolygon")]
        rounded = shapely.union_all(polys) if polys else rounded
    return rounded


def _coords(seq, decimals: int) -> str:
    return "[" + ",".join(
        "[" + ",".join(repr(round(float(v), decimals)) for v in pt[:2]) + "]" for pt in seq
    ) + "]"


def geometry_text(geom, decimals: int = DECIMALS) -> str:
    """GeoJSON geometry text (2D) for a shapely geometry; ``null`` for None/empty."""
    if geom is None or geom.is_empty:
        return "null"
    kind = geom.geom_type
    if kind == "Point":
        return '{"type":"Point","coordinates":[%s,%s]}' % (repr(round(geom.x, decimals)), repr(round(geom.y, decimals)))
    if kind == "LineString":
        return '{"type":"LineString","coordinates":%s}' % _coords(geom.coords, decimals)
    if kind == "Polygon":
        return '{"type":"Polygon","coordinates":%s}' % _rings(geom, decimals)
    if kind == "MultiPoint":
        return '{"type":"MultiPoint","coordinates":%s}' % _coords([p.coords[0] for p in geom.geoms], decimals)
    if kind == "MultiLineString":
        lines = ",".join(_coords(g.coords, decimals) for g in geom.geoms)
        return '{"type":"MultiLineString","coordinates":[%s]}' % lines
    if kind == "MultiPolygon":
        return '{"type":"MultiPolygon","coordinates":[%s]}' % ",".join(_rings(g, decimals) for g in geom.geoms)
    if kind == "GeometryCollection":
        members = ",".join(geometry_text(g, decimals) for g in geom.geoms)
        return '{"type":"GeometryCollection","geometries":[%s]}' % members
    raise ValueError(f"unsupported geometry type {kind}")


def _rings(poly, decimals: int) -> str:
    rings = [poly.exterior, *poly.interiors]
    return "[" + ",".join(_coords(r.coords, decimals) for r in rings) + "]"


def feature_collection_text(features, decimals: int = DECIMALS) -> str:
    """``[(properties dict, geometry)]`` -> a compact FeatureCollection, one feature a line."""
    parts = []
    for props, geom in features:
        properties = json.dumps(props, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        parts.append('{"type":"Feature","properties":%s,"geometry":%s}' % (properties, geometry_text(geom, decimals)))
    return '{"type":"FeatureCollection","features":[\n' + ",\n".join(parts) + "\n]}\n"
