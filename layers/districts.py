"""Districts: polygons with a unique ``id`` and a ``name``.

Ids: the ``id`` property when the file has one.  A file without an ``id``
column (for example a FeatureCollection with only ``name``, as many open-data
portals publish) gets ids derived from the names with
:func:`layers.text.slugify` -- ``"Innere Stadt"`` -> ``innere-stadt``,
``"Döbling"`` -> ``dobling`` -- and a warning saying so.  Two names with the
same slug are then reported as duplicate ids.
"""
from __future__ import annotations

import geopandas as gpd
import shapely

from layers.problems import ProblemLog
from layers.tables import attributes, find_column
from layers.text import clean_id, clean_text, slugify

COLUMNS = ["id", "name", "attributes", "geometry"]


def check_districts(gdf: gpd.GeoDataFrame, file: str, log: ProblemLog) -> gpd.GeoDataFrame:
    """Validated districts: columns ``id, name, attributes, geometry`` (EPSG:4326)."""
    id_col = find_column(gdf.columns, "id")
    name_col = find_column(gdf.columns, "name")
    if name_col is None:
        log.error(file, None, "no 'name' property: every district needs a name")
        return _empty(gdf)
    if id_col is None:
        log.warning(file, None, "no 'id' property: district ids derived from names (slug of the name)")
    geometry = gdf.geometry.name
    rows, seen = [], {}
    for record in gdf.to_dict("records"):
        row = int(record["_row"])
        name = clean_text(record[name_col])
        district_id = clean_id(record[id_col]) if id_col else (slugify(name) if name else None)
        ok = True
        if not name:
            log.error(file, row, "missing name")
            ok = False
        if not district_id:
            if id_col or name:
                log.error(file, row, "missing id" if id_col else f"name {name!r} gives an empty id")
            ok = False
        elif district_id in seen:
            log.error(file, row, f"duplicate id '{district_id}' (first at row {seen[district_id]})")
            ok = False
        else:
            seen[district_id] = row
        if ok:
            rows.append({"id": district_id, "name": name,
                         "attributes": attributes(record, {id_col, name_col, geometry}),
                         "geometry": record[geometry]})
    out = gpd.GeoDataFrame(rows, columns=COLUMNS, geometry="geometry", crs=gdf.crs)
    _check_coverage(out, file, log)
    return out


def _check_coverage(districts: gpd.GeoDataFrame, file: str, log: ProblemLog) -> None:
    """Warn when districts overlap or their shared edges do not match."""
    if len(districts) < 2:
        return
    geoms = districts.geometry.values
    if shapely.coverage_is_valid(geoms):
        return
    edges = shapely.coverage_invalid_edges(geoms)
    bad = [districts["id"].iat[i] for i, e in enumerate(edges) if e is not None and not e.is_empty]
    shown = ", ".join(bad[:8]) + (" ..." if len(bad) > 8 else "")
    log.warning(file, None, f"districts do not tile cleanly (overlaps or unmatched edges at {shown}); "
                            "web layers are built from a cleaned coverage")


def _empty(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({c: [] for c in COLUMNS[:-1]}, geometry=gpd.GeoSeries([], crs=gdf.crs))
