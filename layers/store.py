"""Writing a loaded pack into the database: sensor kinds, districts, sensors.

``store_pack(conn, pack)`` upserts in one transaction and is idempotent: a
row is only written when something in it changed, so loading the same pack
twice changes nothing (and reports every row as unchanged).

* ``sensor_kinds``: by ``kind`` (domain, metrics, units replaced);
* ``districts``: by ``id`` (name, GeoJSON geometry, area in km², attributes);
* ``sensors``: by ``external_id`` (kind, domain, name, lon, lat, district,
  attributes).  Attributes are *merged* into what the row already holds, so
  keys the ingestor added stay.  The pack's attributes carry ``metrics``,
  ``road``/``stop`` references and ``pack`` (the pack slug).

Rows that are in the database but not in the pack are left alone (sensors may
have readings); :class:`StoreResult` counts them.  Roads, transit and extra
layers are not stored: they go to the web layer files (:mod:`layers.web`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import geopandas as gpd
from psycopg.types.json import Jsonb

from layers.geojson import geometry_text
from layers.pack import CityPack
from layers.tables import json_value
from layers.text import clean_text


@dataclass(slots=True)
class TableResult:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    not_in_pack: int = 0

    def __str__(self) -> str:
        text = f"{self.inserted} inserted, {self.updated} updated, {self.unchanged} unchanged"
        return text + (f", {self.not_in_pack} in the database but not in the pack" if self.not_in_pack else "")


@dataclass(slots=True)
class StoreResult:
    sensor_kinds: TableResult = field(default_factory=TableResult)
    districts: TableResult = field(default_factory=TableResult)
    sensors: TableResult = field(default_factory=TableResult)


KINDS_SQL = """
INSERT INTO sensor_kinds (kind, domain, metrics, units) VALUES (%s, %s, %s, %s)
ON CONFLICT (kind) DO UPDATE SET domain = EXCLUDED.domain, metrics = EXCLUDED.metrics, units = EXCLUDED.units
WHERE (sensor_kinds.domain, sensor_kinds.metrics, sensor_kinds.units)
      IS DISTINCT FROM (EXCLUDED.domain, EXCLUDED.metrics, EXCLUDED.units)
"""
DISTRICTS_SQL = """
INSERT INTO districts (id, name, geometry, area_km2, attributes) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, geometry = EXCLUDED.geometry,
    area_km2 = EXCLUDED.area_km2, attributes = EXCLUDED.attributes
WHERE (districts.name, districts.geometry, districts.area_km2, districts.attributes)
      IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.geometry, EXCLUDED.area_km2, EXCLUDED.attributes)
"""
SENSORS_SQL = """
INSERT INTO sensors (external_id, kind, domain, name, lon, lat, district_id, attributes)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (external_id) DO UPDATE SET kind = EXCLUDED.kind, domain = EXCLUDED.domain, name = EXCLUDED.name,
    lon = EXCLUDED.lon, lat = EXCLUDED.lat, district_id = EXCLUDED.district_id,
    attributes = sensors.attributes || EXCLUDED.attributes
WHERE (sensors.kind, sensors.domain, sensors.name, sensors.lon, sensors.lat, sensors.district_id)
      IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.domain, EXCLUDED.name, EXCLUDED.lon, EXCLUDED.lat,
                        EXCLUDED.district_id)
   OR NOT sensors.attributes @> EXCLUDED.attributes
"""


def store_pack(conn, pack: CityPack) -> StoreResult:
    """Upsert the pack's sensor kinds, districts and sensors using psycopg connection ``conn``.

    Runs in one transaction (committed on success unless ``conn`` is already
    inside an outer transaction block, which then decides).
    """
    result = StoreResult()
    with conn.transaction():
        with conn.cursor() as cur:
            result.sensor_kinds = _upsert(cur, "sensor_kinds", "kind", KINDS_SQL, kind_rows(pack))
            result.districts = _upsert(cur, "districts", "id", DISTRICTS_SQL, district_rows(pack))
            result.sensors = _upsert(cur, "sensors", "external_id", SENSORS_SQL, sensor_rows(pack))
    return result


def _upsert(cur, table: str, key: str, sql: str, rows: list[tuple]) -> TableResult:
    cur.execute(f"SELECT {key} FROM {table}")  # noqa: S608 - fixed table/column names
    existing = {r[0] for r in cur.fetchall()}
    keys = {r[0] for r in rows}
    written = 0
    if rows:
        cur.executemany(sql, rows)
        written = cur.rowcount if cur.rowcount is not None and cur.rowcount >= 0 else 0
    inserted = len(keys - existing)
    return TableResult(inserted=inserted, updated=max(written - inserted, 0),
                       unchanged=len(keys) - max(written, inserted), not_in_pack=len(existing - keys))


def kind_rows(pack: CityPack) -> list[tuple]:
    return [(k.kind, k.domain, list(k.metrics), Jsonb(dict(k.units)))
            for k in sorted(pack.sensor_kinds().values(), key=lambda k: k.kind)]


def district_rows(pack: CityPack) -> list[tuple]:
    districts = pack.districts
    areas = _areas_km2(districts)
    return [(d, n, Jsonb(json.loads(geometry_text(g, decimals=7))), a, Jsonb(attrs))
            for d, n, g, a, attrs in zip(districts["id"], districts["name"], districts.geometry.values, areas,
                                         districts["attributes"])]


def sensor_rows(pack: CityPack) -> list[tuple]:
    rows = []
    for rec in pack.sensors.to_dict("records"):
        geom = rec["geometry"]
        placed = geom is not None and not geom.is_empty
        attrs = {"pack": pack.slug, "metrics": list(rec["metrics"]), **json_value(rec["attributes"])}
        for ref in ("road", "stop"):
            if clean_text(rec[ref]):
                attrs[ref] = rec[ref]
        rows.append((rec["id"], rec["kind"], clean_text(rec["domain"]), rec["name"],
                     round(geom.x, 7) if placed else None, round(geom.y, 7) if placed else None,
                     clean_text(rec["district_id"]), Jsonb(attrs)))
    return rows


def _areas_km2(districts: gpd.GeoDataFrame) -> list[float]:
    """Areas in km² on the local UTM zone (rounded to 1 m²)."""
    if districts.empty:
        return []
    projected = districts.to_crs(districts.estimate_utm_crs())
    return [round(a / 1e6, 6) for a in projected.area]
