"""Reading one vector layer file (GeoJSON, GeoPackage, Shapefile) into EPSG:4326.

This is where geodata enters, so this is where it is checked:

* the file must open (pyogrio) and declare a CRS; GeoJSON without one is
  EPSG:4326 by RFC 7946, any other format without one is an error;
* features are reprojected to EPSG:4326 and must then lie within lon/lat
  range (catches projected coordinates in a file that claims degrees);
* missing/empty geometries and geometries of the wrong family are errors;
* invalid geometries are repaired with ``shapely.make_valid`` (keeping the
  parts of the expected family) and reported as warnings.

Rows are 1-based feature indexes, kept in the ``_row`` column for later checks.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import shapely

from layers.problems import ProblemLog

WGS84 = "EPSG:4326"
FAMILIES = {
    "polygon": ("Polygon", "MultiPolygon"),
    "line": ("LineString", "MultiLineString"),
    "point": ("Point", "MultiPoint"),
}
_GEOJSON_SUFFIXES = (".geojson", ".json", ".geojsonl", ".geojsons")


@dataclass(slots=True)
class LayerReport:
    """What ``layers check`` prints for one layer."""

    layer: str
    file: str
    features: int = 0
    crs: str | None = None
    bbox: tuple[float, float, float, float] | None = None  # EPSG:4326
    repairs: int = 0
    note: str = ""


def crs_label(crs) -> str | None:
    if crs is None:
        return None
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_string()


def total_bounds(geoms) -> tuple[float, float, float, float] | None:
    geoms = np.asarray(geoms, dtype=object)
    geoms = geoms[~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)] if len(geoms) else geoms
    if not len(geoms):
        return None
    return tuple(float(v) for v in shapely.total_bounds(geoms))


def read_vector(root: Path, file: str, layer: str, log: ProblemLog, *, family: str | None,
                allow_missing: bool = False) -> tuple[gpd.GeoDataFrame | None, LayerReport]:
    """Read ``root/file`` as EPSG:4326; problems go to ``log``.

    ``family`` is ``"polygon"``, ``"line"``, ``"point"`` or ``None`` (any).
    ``allow_missing`` accepts features without geometry (sensors placed by
    reference).  Returns ``(None, report)`` when the file is unusable.
    """
    report = LayerReport(layer, file)
    path = root / file
    try:
        layers = pyogrio.list_layers(path)
        if len(layers) > 1:
            log.warning(file, None, f"{len(layers)} layers in the file; reading the first, '{layers[0][0]}'")
        gdf = gpd.read_file(path, engine="pyogrio", layer=layers[0][0] if len(layers) else None)
    except Exception as exc:  # pyogrio raises several types (DataSourceError, DataLayerError, ...)
        log.error(file, None, f"cannot read as a vector layer: {exc}")
        return None, report
    report.features = len(gdf)
    if gdf.crs is None:
        if path.suffix.lower() not in _GEOJSON_SUFFIXES:
            log.error(file, None, "no CRS declared (a Shapefile needs its .prj; set the layer CRS)")
            return None, report
        gdf = gdf.set_crs(WGS84)
    report.crs = crs_label(gdf.crs)
    gdf = gdf.reset_index(drop=True)
    gdf["_row"] = np.arange(1, len(gdf) + 1)

    geoms = gdf.geometry.values
    missing = shapely.is_missing(np.asarray(geoms, dtype=object)) | gdf.geometry.is_empty.to_numpy()
    keep = np.ones(len(gdf), dtype=bool)
    for i in np.flatnonzero(missing):
        if not allow_missing:
            log.error(file, i + 1, "missing or empty geometry")
            keep[i] = False
    expected = FAMILIES.get(family)
    if expected:
        types = gdf.geom_type.to_numpy()
        for i in np.flatnonzero(~missing & ~np.isin(types, expected)):
            log.error(file, i + 1, f"geometry is a {types[i]}, expected {' or '.join(expected)}")
            keep[i] = False
    gdf = gdf[keep].copy()
    if not gdf.crs.equals(WGS84):
        try:
            gdf = gdf.to_crs(WGS84)
        except Exception as exc:
            log.error(file, None, f"cannot reproject from {report.crs} to EPSG:4326: {exc}")
            return None, report
    bounds = total_bounds(gdf.geometry.values)
    if bounds and not (-180 <= bounds[0] <= bounds[2] <= 180 and -90 <= bounds[1] <= bounds[3] <= 90):
        log.error(file, None, f"coordinates {tuple(round(b, 1) for b in bounds)} are not lon/lat degrees "
                              f"after reading as {report.crs}; is the CRS declared correctly?")
        return None, report
    gdf, report.repairs = _repair(gdf, file, family, log)
    report.bbox = total_bounds(gdf.geometry.values)
    return gdf, report


def _repair(gdf: gpd.GeoDataFrame, file: str, family: str | None, log: ProblemLog):
    """Make invalid geometries valid; returns ``(gdf, number repaired)``.

    Features that cannot be repaired are dropped (and reported as errors).
    """
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    present = ~shapely.is_missing(geoms)
    invalid = present & ~shapely.is_valid(np.where(present, geoms, None))
    repaired, drop = 0, []
    for i in np.flatnonzero(invalid):
        row = int(gdf["_row"].iat[i])
        reason = shapely.is_valid_reason(geoms[i])
        fixed = _keep_family(shapely.make_valid(geoms[i]), family)
        if fixed is None or fixed.is_empty:
            log.error(file, row, f"invalid geometry ({reason}) cannot be repaired")
            drop.append(gdf.index[i])
            continue
        geoms[i] = fixed
        repaired += 1
        log.warning(file, row, f"invalid geometry ({reason}) repaired")
    if repaired:
        gdf[gdf.geometry.name] = gpd.GeoSeries(geoms, index=gdf.index, crs=gdf.crs)
    return gdf.drop(index=drop), repaired


def _keep_family(geom, family: str | None):
    """The parts of a ``make_valid`` result that belong to ``family``."""
    if family is None or geom.geom_type in FAMILIES[family]:
        return geom
    parts = [g for g in shapely.get_parts(geom) if g.geom_type in FAMILIES[family]]
    if not parts:
        return None
    parts = [p for part in parts for p in shapely.get_parts(part)]
    if family == "polygon":
        return shapely.union_all(parts)
    if family == "line":
        return shapely.line_merge(shapely.MultiLineString(parts))
    return shapely.MultiPoint(parts)
