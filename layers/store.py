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
have readings); :class:`StoreResult` counts them.

The GTFS timetable (the KPI engine's planned vehicles, :mod:`kpis.schedule`) is
stored whole: ``transit_trips`` (each trip's route, service and span), ``transit_calendar``,
``transit_calendar_dates`` and ``transit_frequencies``, with the feed's fingerprint in
``transit_feed``.  When the fingerprint differs the four tables are replaced (trips no longer
in the feed are deleted: a timetable has no history to keep); a pack without GTFS empties
them.  A changed timetable also marks the materialised vehicle KPIs (``kpi_state``) as out of
date, so the dashboard computes them live until the ingestor's KPI job has rebuilt them.
Roads, transit lines and stops and extra layers are not stored: they go to the web layer
files (:mod:`layers.web`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import geopandas as gpd
from psycopg.types.json import Jsonb

from layers import gtfs
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
    deleted: int = 0

    def __str__(self) -> str:
        text = f"{self.inserted} inserted, {self.updated} updated, {self.unchanged} unchanged"
        text += f", {self.deleted} deleted" if self.deleted else ""
        return text + (f", {self.not_in_pack} in the database but not in the pack" if self.not_in_pack else "")


@dataclass(slots=True)
class StoreResult:
    sensor_kinds: TableResult = field(default_factory=TableResult)
    districts: TableResult = field(default_factory=TableResult)
    sensors: TableResult = field(default_factory=TableResult)
    transit: TableResult = field(default_factory=TableResult)  # trips of the GTFS timetable


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
            result.transit = _store_schedule(cur, pack)
    return result


SCHEDULE_TABLES = {  # table: (Transit frame, its columns = the table's)
    "transit_trips": ("spans", gtfs.SPAN_COLUMNS),
    "transit_calendar": ("services", gtfs.SERVICE_COLUMNS),
    "transit_calendar_dates": ("service_dates", gtfs.SERVICE_DATE_COLUMNS),
    "transit_frequencies": ("frequencies", gtfs.FREQUENCY_COLUMNS),
}


# Materialised vehicle KPIs (those with route rows) were computed with the old timetable: a definition
# that matches no catalogue makes the KPI engine compute them live until the ingestor rebuilds them.
INVALIDATE_VEHICLE_KPIS_SQL = """
UPDATE kpi_state s SET definition = 'timetable changed', updated_at = now()
 WHERE EXISTS (SELECT 1 FROM kpi_1h h WHERE h.kpi_id = s.kpi_id AND h.scope_type = 'route')
    OR EXISTS (SELECT 1 FROM kpi_1m m WHERE m.kpi_id = s.kpi_id AND m.scope_type = 'route')
"""


def schedule_rows(pack: CityPack) -> dict[str, list[tuple]]:
    """Rows of the four timetable tables (empty without GTFS); ``days`` as 7 booleans, Monday first."""
    transit = pack.transit
    out = {}
    for table, (attr, columns) in SCHEDULE_TABLES.items():
        frame = getattr(transit, attr, None) if transit is not None else None
        rows = [] if frame is None or frame.empty else list(frame[columns].itertuples(index=False, name=None))
        if table == "transit_calendar":
            rows = [(sid, [c == "1" for c in days], a, b) for sid, days, a, b in rows]
        out[table] = sorted(tuple(v.item() if hasattr(v, "item") else v for v in r) for r in rows)
    return out


def _store_schedule(cur, pack: CityPack) -> TableResult:
    rows = schedule_rows(pack)
    fingerprint = hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()
    found = cur.execute("SELECT fingerprint FROM transit_feed").fetchone()
    keys = {r[0] for r in rows["transit_trips"]}
    if (found[0] if found else None) == (fingerprint if keys else None):
        return TableResult(unchanged=len(keys))
    existing = {r[0] for r in cur.execute("SELECT trip_id FROM transit_trips").fetchall()}
    cur.execute("DELETE FROM transit_feed")
    for table in SCHEDULE_TABLES:  # deleting trips cascades to their frequencies
        cur.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
    for table, (_, columns) in SCHEDULE_TABLES.items():
        if rows[table]:
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:  # noqa: S608
                for row in rows[table]:
                    copy.write_row(row)
    if keys:
        cur.execute("INSERT INTO transit_feed (pack, fingerprint, trips) VALUES (%s, %s, %s)",
                    (pack.slug, fingerprint, len(keys)))
    cur.execute(INVALIDATE_VEHICLE_KPIS_SQL)
    return TableResult(inserted=len(keys - existing), updated=len(keys & existing),
                       deleted=len(existing - keys))


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
