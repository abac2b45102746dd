"""Sensors: ``id, kind, domain, name``, a position, and the metrics they send.

A sensors file is CSV (columns ``id, kind, domain, name, lon, lat, road,
stop, metrics``; ``metrics`` is a ``;``-separated list) or any vector format
with point geometries and the same properties.  A sensor is placed by, in
order: ``lon``/``lat`` (or its point geometry), the midpoint of the road named
in ``road``, or the stop named in ``stop``.  A sensor with none of these is
kept but not placed (warning).  Columns beyond the known ones become
``attributes``.

``domain`` may be left blank when the kind is declared in ``sensor_kinds`` or
is a well-known kind (:data:`layers.kinds.DEFAULT_DOMAINS`); a blank
``metrics`` takes the kind's declared metrics.

A sensor with a ``road`` reference also gets the road's ``road_class``,
``free_flow_kmh`` and ``road_name`` in its attributes (unless the file sets
them): the KPI engine filters and computes congestion with them.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from layers.config import CityConfig
from layers.kinds import DEFAULT_DOMAINS, DOMAINS
from layers.problems import ProblemLog
from layers.tables import attributes, with_none
from layers.text import clean_id, clean_text
from layers.vector import WGS84, LayerReport, read_vector, total_bounds

COLUMNS = ["id", "kind", "domain", "name", "metrics", "road", "stop", "district_id", "attributes", "geometry"]
KNOWN = {"id", "kind", "domain", "name", "lon", "lat", "road", "stop", "metrics"}


def read_sensors(root: Path, file: str, config: CityConfig, roads: gpd.GeoDataFrame | None,
                 stops: gpd.GeoDataFrame | None, log: ProblemLog) -> tuple[gpd.GeoDataFrame, LayerReport]:
    """Read and check the sensors file; ``district_id`` is filled by :func:`assign_districts`.

    ``roads``/``stops`` None: that layer could not be read, so references to it
    are not checked (its own errors are reported already).
    """
    if Path(file).suffix.lower() in (".csv", ".txt"):
        records, report = _csv_records(root / file, file, log)
    else:
        gdf, report = read_vector(root, file, "sensors", log, family="point", allow_missing=True)
        records = _vector_records(gdf) if gdf is not None else []
    placer = _Placer(file, config, roads, stops, log)
    rows = [r for r in (placer.check(row, rec) for row, rec in records) if r is not None]
    sensors = gpd.GeoDataFrame(rows, columns=COLUMNS, geometry="geometry", crs=WGS84) if rows else _empty()
    sensors = with_none(sensors, ["domain", "road", "stop", "district_id"])
    report.features = len(records)
    report.bbox = total_bounds(sensors.geometry.values)
    unplaced = int(sensors.geometry.isna().sum())
    if unplaced:
        report.note = f"{unplaced} not placed"
    return sensors, report


def assign_districts(sensors: gpd.GeoDataFrame, districts: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Fill ``district_id``: the district containing the sensor (boundary counts), else ``None``.

    A point on a shared boundary goes to the first district in file order.
    """
    sensors = sensors.copy()
    sensors["district_id"] = pd.Series([None] * len(sensors), index=sensors.index, dtype=object)
    placed = sensors[sensors.geometry.notna()]
    if placed.empty or districts.empty:
        return sensors
    tree = shapely.STRtree(districts.geometry.values)
    point_idx, district_idx = tree.query(placed.geometry.values, predicate="intersects")
    order = np.lexsort((district_idx, point_idx))
    point_idx, district_idx = point_idx[order], district_idx[order]
    first = np.unique(point_idx, return_index=True)[1]
    ids = np.full(len(placed), None, dtype=object)
    ids[point_idx[first]] = districts["id"].to_numpy()[district_idx[first]]
    sensors.loc[placed.index, "district_id"] = ids
    return sensors


def _empty() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({c: [] for c in COLUMNS[:-1]}, geometry=gpd.GeoSeries([], crs=WGS84))


def _csv_records(path: Path, file: str, log: ProblemLog):
    report = LayerReport("sensors", file, crs="EPSG:4326 (lon/lat columns)")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        log.error(file, None, f"cannot read as UTF-8 CSV: {exc}")
        return [], report
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = [str(f).strip().lower() for f in (reader.fieldnames or [])]
    missing = [c for c in ("id", "kind") if c not in fields]
    if missing:
        log.error(file, None, f"missing column(s): {', '.join(missing)}")
        return [], report
    reader.fieldnames = fields
    records = []
    for rec in reader:
        rec.pop(None, None)  # cells beyond the header
        records.append((reader.line_num - 1, {k: v if k in KNOWN else _typed(v) for k, v in rec.items()}))
    return records, report


def _typed(text):
    """A CSV cell as int/float when it reads back identically (``"193"`` -> 193, ``"007"`` stays text)."""
    if not isinstance(text, str):
        return text
    for kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            continue
        if repr(value) == text and math.isfinite(value):
            return value
    return text


def _vector_records(gdf: gpd.GeoDataFrame):
    geometry = gdf.geometry.name
    out = []
    for rec in gdf.to_dict("records"):
        rec = {str(k).strip().lower() if k != geometry else k: v for k, v in rec.items()}
        geom = rec.pop(geometry)
        if geom is not None and not geom.is_empty:
            point = geom if geom.geom_type == "Point" else geom.centroid
            rec["lon"], rec["lat"] = point.x, point.y
        out.append((int(rec.pop("_row")), rec))
    return out


class _Placer:
    """Checks one sensor record and works out its position."""

    def __init__(self, file, config, roads, stops, log):
        self.file, self.config, self.log = file, config, log
        self.roads = None if roads is None else dict(zip(roads["id"], roads.geometry.values))
        self.road_info = {} if roads is None else {
            i: {"road_class": c, "free_flow_kmh": float(s), "road_name": n}
            for i, c, s, n in zip(roads["id"], roads["class"], roads["speed_kmh"], roads["name"])}
        self.stops = None if stops is None else dict(zip(stops["stop_id"], stops.geometry.values))
        self.seen: dict[str, int] = {}

    def check(self, row: int, rec: dict):
        f, log, kinds = self.file, self.log, self.config.sensor_kinds
        n_errors = len(log.errors)
        sensor_id = clean_id(rec.get("id"))
        if not sensor_id:
            log.error(f, row, "missing id")
        elif sensor_id in self.seen:
            log.error(f, row, f"duplicate id '{sensor_id}' (first at row {self.seen[sensor_id]})")
        else:
            self.seen[sensor_id] = row
        name = clean_text(rec.get("name"))
        if not name:
            log.error(f, row, "missing name")
        kind = clean_text(rec.get("kind"))
        declared = kinds.get(kind) if kind else None
        if not kind:
            log.error(f, row, "missing kind")
        elif kinds and declared is None:
            log.error(f, row, f"unknown kind '{kind}' (sensor_kinds declares {', '.join(sorted(kinds))})")
        domain = self._domain(row, rec, kind, declared)
        metrics = self._metrics(row, rec, kind, declared)
        road, stop = clean_id(rec.get("road")), clean_id(rec.get("stop"))
        point = self._position(row, rec, road, stop)
        if len(log.errors) > n_errors:
            return None
        attrs = attributes(rec, KNOWN)
        if road in self.road_info:
            attrs = {**self.road_info[road], **attrs}
        return {"id": sensor_id, "kind": kind, "domain": domain, "name": name, "metrics": metrics,
                "road": road, "stop": stop, "district_id": None, "attributes": attrs, "geometry": point}

    def _domain(self, row, rec, kind, declared):
        domain = (clean_text(rec.get("domain")) or "").lower() or None
        expected = declared.domain if declared else DEFAULT_DOMAINS.get(kind)
        if domain is None:
            if expected is None and kind:
                self.log.error(self.file, row, f"missing domain (kind '{kind}' is not declared)")
            return expected
        if domain not in DOMAINS:
            self.log.error(self.file, row, f"domain '{domain}' is not one of {', '.join(DOMAINS)}")
        elif declared and domain != declared.domain:
            self.log.error(self.file, row, f"domain '{domain}' contradicts kind '{kind}' (declared {declared.domain})")
        return domain

    def _metrics(self, row, rec, kind, declared) -> list[str]:
        raw = rec.get("metrics")
        if isinstance(raw, (list, tuple, np.ndarray)):
            metrics = [str(m).strip() for m in raw if str(m).strip()]
        else:
            metrics = [m.strip() for m in (clean_text(raw) or "").split(";") if m.strip()]
        if not metrics:
            return list(declared.metrics) if declared else []
        if declared and declared.metrics:
            unknown = [m for m in metrics if m not in declared.metrics]
            if unknown:
                self.log.error(self.file, row, f"metric(s) {', '.join(unknown)} not declared for kind '{kind}' "
                                               f"({', '.join(declared.metrics)})")
        return metrics

    def _position(self, row, rec, road, stop):
        f, log = self.file, self.log
        roads, stops = self.roads or {}, self.stops or {}
        if road and self.roads is not None and road not in roads:
            log.error(f, row, f"unknown road '{road}'")
        if stop and self.stops is not None and stop not in stops:
            log.error(f, row, f"unknown stop '{stop}'")
        lon_text, lat_text = clean_text(rec.get("lon")), clean_text(rec.get("lat"))
        if lon_text is not None or lat_text is not None:
            lon = self._coordinate(row, "lon", lon_text, 180)
            lat = self._coordinate(row, "lat", lat_text, 90)
            if lon is None or lat is None:
                return None
            self._in_bbox(row, lon, lat)
            return shapely.Point(lon, lat)
        if road and road in roads:
            return shapely.line_interpolate_point(roads[road], 0.5, normalized=True)
        if stop and stop in stops:
            return stops[stop]
        if not road and not stop:
            log.warning(f, row, "no position (lon/lat, road or stop): sensor not placed")
        return None

    def _coordinate(self, row, what, text, limit):
        if text is None:
            self.log.error(self.file, row, f"{what} missing (lon and lat go together)")
            return None
        try:
            value = float(text)
        except ValueError:
            self.log.error(self.file, row, f"{what} {text!r} is not a number")
            return None
        if not -limit <= value <= limit:
            self.log.error(self.file, row, f"{what} {value:g} out of range")
            return None
        return value

    def _in_bbox(self, row, lon, lat):
        x0, y0, x1, y1 = self.config.bbox
        if x0 <= lon <= x1 and y0 <= lat <= y1:
            return
        if x0 <= lat <= x1 and y0 <= lon <= y1:
            self.log.error(self.file, row,
                           f"lon {lon:g} / lat {lat:g} look swapped (the swapped point is in the city bbox)")
        else:
            self.log.warning(self.file, row, f"position {lon:g}, {lat:g} lies outside the city bbox")
