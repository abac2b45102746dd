"""Loading city packs into a real, migrated TimescaleDB (fixture ``db_url``)."""
from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from layers import DEMO_CITY
from layers.cli import main
from layers.pack import load_pack
from layers.store import store_pack

PACKS = Path(__file__).resolve().parents[1] / "fixtures" / "packs"


@pytest.fixture(scope="module")
def demo():
    return load_pack(DEMO_CITY)


def table_state(conn) -> dict:
    return {
        "kinds": conn.execute("SELECT kind, domain, metrics, units FROM sensor_kinds ORDER BY kind").fetchall(),
        "districts": conn.execute("SELECT id, name, geometry, area_km2, attributes FROM districts ORDER BY id")
        .fetchall(),
        "sensors": conn.execute("SELECT id, external_id, kind, domain, name, lon, lat, district_id, attributes, "
                                "registered_at FROM sensors ORDER BY external_id").fetchall(),
    }


def test_load_demo_twice_changes_nothing(db_url, demo):
    with psycopg.connect(db_url) as conn:
        first = store_pack(conn, demo)
        assert first.districts.inserted == len(demo.districts)
        assert first.sensors.inserted == len(demo.sensors)
        assert first.sensor_kinds.inserted == len(demo.sensor_kinds())
        before = table_state(conn)
        second = store_pack(conn, demo)
        assert (second.districts.inserted, second.districts.updated) == (0, 0)
        assert (second.sensors.inserted, second.sensors.updated) == (0, 0)
        assert (second.sensor_kinds.inserted, second.sensor_kinds.updated) == (0, 0)
        assert second.sensors.unchanged == len(demo.sensors)
        assert table_state(conn) == before


def test_loaded_rows(db_url, demo):
    with psycopg.connect(db_url) as conn:
        store_pack(conn, demo)
        kinds = dict(conn.execute("SELECT kind, domain FROM sensor_kinds").fetchall())
        assert kinds["traffic_counter"] == "mobility" and kinds["vehicle"] == "transport"
        metrics, units = conn.execute("SELECT metrics, units FROM sensor_kinds WHERE kind = 'air_quality'").fetchone()
        assert metrics == ["pm25", "pm10", "no2", "o3"] and units["pm25"] == "ug/m3"
        n, placed, in_district = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE placed), count(district_id) FROM sensors").fetchone()
        assert n == len(demo.sensors) and placed == n and in_district >= 0.95 * n
        geometry, area = conn.execute("SELECT geometry, area_km2 FROM districts WHERE id = 'centro-norte'").fetchone()
        assert geometry["type"] in ("Polygon", "MultiPolygon") and 1 < area < 30
        total = conn.execute("SELECT sum(area_km2) FROM districts").fetchone()[0]
        assert 100 < total < 200
        attrs = conn.execute("SELECT attributes FROM sensors WHERE external_id = 'tc-0001'").fetchone()[0]
        assert attrs["pack"] == "demo-cuiaba" and attrs["metrics"] == ["flow", "speed", "occupancy"]
        assert attrs["road"].startswith("r-")


def test_reload_updates_changed_rows_and_keeps_ingest_attributes(db_url, demo):
    with psycopg.connect(db_url) as conn:
        store_pack(conn, demo)
        conn.execute("UPDATE sensors SET attributes = attributes || '{\"firmware\": \"1.2\"}', name = 'old' "
                     "WHERE external_id = 'pk-0001'")
        conn.commit()
        result = store_pack(conn, demo)
        assert result.sensors.updated == 1 and result.sensors.inserted == 0
        name, attrs = conn.execute("SELECT name, attributes FROM sensors WHERE external_id = 'pk-0001'").fetchone()
        assert name.startswith("Estacionamento") and attrs["firmware"] == "1.2"


def test_sensor_registered_by_ingest_gets_placed(db_url, demo):
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO sensors (external_id, kind) VALUES ('aq-0001', 'air_quality')")
        conn.execute("INSERT INTO sensors (external_id) VALUES ('unknown-1')")
        conn.commit()
        result = store_pack(conn, demo)
        assert result.sensors.updated == 1 and result.sensors.not_in_pack == 1
        placed, district = conn.execute(
            "SELECT placed, district_id FROM sensors WHERE external_id = 'aq-0001'").fetchone()
        assert placed and district is not None


def test_cli_load_writes_database_and_web_layers(db_url, tmp_path, capsys):
    out = tmp_path / "web"
    assert main(["load", str(PACKS / "utm21s"), "--database-url", db_url, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "districts: 4 inserted" in text and "sensors: 2 inserted" in text
    assert json.loads((out / "manifest.json").read_text())["pack"]["slug"] == "utm-fixture"
    assert main(["load", str(PACKS / "utm21s"), "--database-url", db_url, "--out", str(out)]) == 0
    assert "districts: 0 inserted, 0 updated, 4 unchanged" in capsys.readouterr().out
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT district_id FROM sensors WHERE external_id = 'aq-1'").fetchone()[0] == "norte-oeste"


def test_cli_load_uses_citydash_database_url(db_url, tmp_path, monkeypatch, capsys):
    from core.settings import get_settings

    monkeypatch.setenv("CITYDASH_DATABASE_URL", db_url)
    get_settings.cache_clear()
    try:
        assert main(["load", str(PACKS / "named_only"), "--out", str(tmp_path)]) == 0
    finally:
        get_settings.cache_clear()
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM districts").fetchone()[0] == 6


def test_demo_traffic_counters_carry_what_the_congestion_kpi_needs(db_url, demo):
    """Congestion compares speed with the road's free-flow speed: the loader must store it."""
    with psycopg.connect(db_url) as conn:
        store_pack(conn, demo)
        rows = conn.execute("SELECT external_id, attributes FROM sensors "
                            "WHERE kind = 'traffic_counter'").fetchall()
    assert len(rows) == int((demo.sensors["kind"] == "traffic_counter").sum()) > 0
    road_speed = dict(zip(demo.roads["id"], demo.roads["speed_kmh"]))
    for external_id, attrs in rows:
        assert attrs["free_flow_kmh"] > 0, external_id
        assert attrs["free_flow_kmh"] == road_speed[attrs["road"]], external_id
        assert attrs["road_class"] in {"motorway", "arterial", "collector", "local"}, external_id
