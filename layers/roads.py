"""Roads: lines with ``id``, ``name``, ``class``, free-flow ``speed_kmh`` and ``lanes``.

``class`` is one of :data:`CLASSES`.  ``speed_kmh`` (aliases ``free_flow_kmh``,
``speed``, ``maxspeed``; Shapefile names are cut to 10 characters, hence the
aliases) and ``lanes`` are optional: blanks take the class default from
:data:`DEFAULTS`, reported once per file as a warning.  For rail ``lanes``
counts tracks.
"""
from __future__ import annotations

import geopandas as gpd

from layers.problems import ProblemLog
from layers.tables import attributes, find_column
from layers.text import clean_id, clean_text

# class -> (free-flow speed km/h, lanes)
DEFAULTS = {
    "motorway": (90, 4),
    "arterial": (60, 4),
    "collector": (50, 2),
    "local": (30, 2),
    "service": (20, 1),
    "cycleway": (18, 1),
    "footway": (5, 1),
    "rail": (70, 2),
    "tram": (40, 2),
}
CLASSES = tuple(DEFAULTS)
# Drawn at city zoom (11-12); the rest appear from district zoom on.
MAJOR_CLASSES = ("motorway", "arterial", "collector", "rail", "tram")
COLUMNS = ["id", "name", "class", "speed_kmh", "lanes", "attributes", "geometry"]


def check_roads(gdf: gpd.GeoDataFrame, file: str, log: ProblemLog) -> gpd.GeoDataFrame:
    """Validated roads (EPSG:4326) with the columns in :data:`COLUMNS`."""
    cols = {
        "id": find_column(gdf.columns, "id"),
        "name": find_column(gdf.columns, "name"),
        "class": find_column(gdf.columns, "class", "road_class"),
        "speed": find_column(gdf.columns, "speed_kmh", "free_flow_kmh", "free_flow_speed_kmh", "speed", "maxspeed"),
        "lanes": find_column(gdf.columns, "lanes"),
    }
    for key in ("id", "name", "class"):
        if cols[key] is None:
            log.error(file, None, f"no '{key}' property: roads need id, name and class")
    if any(cols[k] is None for k in ("id", "name", "class")):
        return gpd.GeoDataFrame({c: [] for c in COLUMNS[:-1]}, geometry=gpd.GeoSeries([], crs=gdf.crs))
    geometry = gdf.geometry.name
    rows, seen, defaulted = [], {}, 0
    for record in gdf.to_dict("records"):
        row = int(record["_row"])
        ok = True
        road_id = clean_id(record[cols["id"]])
        name = clean_text(record[cols["name"]])
        road_class = (clean_text(record[cols["class"]]) or "").lower()
        if not road_id:
            log.error(file, row, "missing id")
            ok = False
        elif road_id in seen:
            log.error(file, row, f"duplicate id '{road_id}' (first at row {seen[road_id]})")
            ok = False
        else:
            seen[road_id] = row
        if not name:
            log.error(file, row, "missing name")
            ok = False
        if road_class not in DEFAULTS:
            log.error(file, row, f"unknown class {road_class or None!r} (expected one of {', '.join(CLASSES)})")
            ok = False
        speed_default, lanes_default = DEFAULTS.get(road_class, (None, None))
        speed, used_default = _number(record, cols["speed"], speed_default, 1, 200, "speed_kmh", file, row, log)
        lanes, lanes_default_used = _number(record, cols["lanes"], lanes_default, 1, 20, "lanes", file, row, log)
        if speed is None or lanes is None:
            ok = False
        defaulted += used_default or lanes_default_used
        if ok:
            rows.append({"id": road_id, "name": name, "class": road_class, "speed_kmh": float(speed),
                         "lanes": int(lanes),
                         "attributes": attributes(record, set(cols.values()) | {geometry}),
                         "geometry": record[geometry]})
    if defaulted:
        log.warning(file, None, f"{defaulted} road(s) without speed_kmh or lanes: class defaults used")
    return gpd.GeoDataFrame(rows, columns=COLUMNS, geometry="geometry", crs=gdf.crs)


def _number(record, column, default, low, high, what, file, row, log):
    """``(value, used_default)``; ``(None, False)`` after logging a bad value."""
    raw = record.get(column) if column else None
    text = clean_text(raw)
    if text is None:
        return default, default is not None
    try:
        value = float(text)
    except ValueError:
        log.error(file, row, f"{what} {text!r} is not a number")
        return None, False
    if not low <= value <= high:
        log.error(file, row, f"{what} {value:g} out of range ({low}-{high})")
        return None, False
    return value, False
