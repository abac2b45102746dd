"""KPI evaluation against a real TimescaleDB: hand-computed values per scope, confidence, series."""
from __future__ import annotations

from datetime import timedelta

import numpy as np
import psycopg
import pytest

from kpis import evaluate, materialise
from core import timebuckets
from kpis import rollup
from core.settings import Settings
from tests.integration.kpi_data import catalogue, insert, now_minute, seed

SENSORS = [
    ("p1", "parking", "d1", {"capacity": 100}), ("p2", "parking", "d1", {"capacity": 300}),
    ("p3", "parking", "d2", {}), ("p4", "parking", "d2", {"capacity": 50}),
    ("tc1", "traffic_counter", "d1", {"road": "r1", "free_flow_kmh": 60, "road_class": "arterial"}),
    ("tc2", "traffic_counter", "d2", {"road": "r2", "free_flow_kmh": 50, "road_class": "local"}),
    ("aq1", "air_quality", "d1", {}), ("b1", "bike_dock", "d1", {}), ("nz1", "noise", "d2", {}),
    ("w1", "water", "d1", {"pressure_min": 3.5}), ("wb1", "waste_bin", "d2", {}),
    ("wb2", "waste_bin", "d2", {}), ("sl1", "streetlight", "d1", {}), ("en1", "energy", "d1", {}),
]
CONSTANT = {"p1": {"occupancy": 50}, "p2": {"occupancy": 100}, "p3": {"occupancy": 20},
            "tc1": {"speed": 30, "flow": 600}, "tc2": {"speed": 50, "flow": 400},
            "b1": {"bikes": 3, "free_docks": 7}, "nz1": {"laeq": 60}, "w1": {"pressure": 3.0},
            "wb1": {"fill": 85}, "wb2": {"fill": 40}, "sl1": {"fault": 1}}
VEHICLES = [("bus-1", "101", 60, 50), ("bus-2", "101", 300, 100), ("bus-3", "202", 100, 30)]


@pytest.fixture
def city(db_url):
    """Ten minutes of constant readings ending at ``base``, 24 h of PM2.5 and 1 h of NO2, rolled up."""
    base = now_minute()
    with psycopg.connect(db_url, autocommit=True) as conn:
        ids = seed(conn, SENSORS)
        rows = []
        for minute in range(10):
            t = base - timedelta(minutes=minute) + timedelta(seconds=10)
            for ext, metrics in CONSTANT.items():
                rows += [(t, ids[ext], m, float(v)) for m, v in metrics.items()]
            for vehicle, route, delay, occ in VEHICLES:
                for second in (5, 35):
                    conn.execute("INSERT INTO vehicle_positions (time, vehicle, route, lon, lat, delay_s, "
                                 "occupancy_pct) VALUES (%s, %s, %s, 0, 0, %s, %s)",
                                 (t + timedelta(seconds=second - 10), vehicle, route, delay, occ))
        for minute in range(24 * 60):
            rows.append((base - timedelta(minutes=minute), ids["aq1"], "pm25", 12.0))
        for minute in range(60):
            rows.append((base - timedelta(minutes=minute, seconds=-20), ids["aq1"], "no2", 94.0))
        insert(conn, rows)
        conn.execute("INSERT INTO dead_letters (received_at, topic, payload_size, reason) "
                     "VALUES (%s, 'city/x', 3, 'bad')", (base - timedelta(minutes=2),))
        rollup.rebuild(conn, base - timedelta(days=1, hours=1), base + timedelta(minutes=1))
    return db_url, base, ids


def reader(db_url):
    return psycopg.connect(Settings(_env_file=None, database_url=db_url).role_url("reader"), autocommit=True)


def values(conn, cat, kpi, now, source, scopes=("city", "district", "road", "route")):
    got = evaluate.current(conn, cat, kpi, scopes=scopes, now=now, source=source)
    return {k: (None if v.value is None else round(v.value, 4), v.sensors, v.expected,
                None if v.confidence is None else round(v.confidence, 4)) for k, v in got.items()}


def test_current_values_per_scope_hand_computed(city):
    db_url, base, _ = city
    now = base + timedelta(seconds=30)
    cat = catalogue()
    night = not (7 <= now.hour < 22)
    expected = {
        # capacity-weighted: d1 (50*100 + 100*300) / 400; d2 only p3 (weight 1) reports, p4 is silent
        "parking_occupancy": {("city", ""): (round(35020 / 401, 4), 3, 4, 0.75),
                              ("district", "d1"): (87.5, 2, 2, 1.0), ("district", "d2"): (20.0, 1, 2, 0.5)},
        # tc1: 60/30 = 2 (100 % extra time), tc2: free flow
        "congestion_index": {("city", ""): (50.0, 2, 2, 1.0), ("district", "d1"): (100.0, 1, 1, 1.0),
                             ("district", "d2"): (0.0, 1, 1, 1.0), ("road", "r1"): (100.0, 1, 1, 1.0),
                             ("road", "r2"): (0.0, 1, 1, 1.0)},
        "arterial_speed": {("city", ""): (30.0, 1, 1, 1.0), ("district", "d1"): (30.0, 1, 1, 1.0),
                           ("road", "r1"): (30.0, 1, 1, 1.0)},
        "traffic_volume": {("city", ""): (1000.0, 2, 2, 1.0), ("district", "d1"): (600.0, 1, 1, 1.0),
                           ("district", "d2"): (400.0, 1, 1, 1.0), ("road", "r1"): (600.0, 1, 1, 1.0),
                           ("road", "r2"): (400.0, 1, 1, 1.0)},
        "bike_availability": {("city", ""): (30.0, 1, 1, 1.0), ("district", "d1"): (30.0, 1, 1, 1.0)},
        # PM2.5 24-h mean 12.0 -> 56; NO2 1-h mean 94 ug/m3 = 50 ppb -> 47
        "air_quality_index": {("city", ""): (56.0, 1, 1, 1.0), ("district", "d1"): (56.0, 1, 1, 1.0)},
        "noise_exceedance": {("city", ""): (100.0 if night else 0.0, 1, 1, 1.0),
                             ("district", "d2"): (100.0 if night else 0.0, 1, 1, 1.0)},
        "water_pressure_anomalies": {("city", ""): (100.0, 1, 1, 1.0), ("district", "d1"): (100.0, 1, 1, 1.0)},
        "waste_bins_full": {("city", ""): (50.0, 2, 2, 1.0), ("district", "d2"): (50.0, 2, 2, 1.0)},
        "streetlight_faults": {("city", ""): (100.0, 1, 1, 1.0), ("district", "d1"): (100.0, 1, 1, 1.0)},
        "energy_demand": {("city", ""): (None, 0, 1, 0.0)},
        # 2 positions per vehicle and minute; bus-2 is late
        "on_time_performance": {("city", ""): (round(200 / 3, 4), 3, 8, 0.375),
                                ("route", "101"): (50.0, 2, 4, 0.5), ("route", "202"): (100.0, 1, 4, 0.25)},
        "mean_delay": {("city", ""): (round(460 / 3 / 60, 4), 3, 8, 0.375),
                       ("route", "101"): (3.0, 2, 4, 0.5), ("route", "202"): (round(100 / 60, 4), 1, 4, 0.25)},
        "crowding": {("city", ""): (60.0, 3, 8, 0.375), ("route", "101"): (75.0, 2, 4, 0.5),
                     ("route", "202"): (30.0, 1, 4, 0.25)},
        "vehicles_in_service": {("city", ""): (37.5, 3, 8, 0.375), ("route", "101"): (50.0, 2, 4, 0.5),
                                ("route", "202"): (25.0, 1, 4, 0.25)},
        # 14 registered sensors; p4 and en1 sent nothing
        "sensors_reporting": {("city", ""): (round(1200 / 14, 4), 12, 14, round(12 / 14, 4)),
                              ("district", "d1"): (87.5, 7, 8, 0.875),
                              ("district", "d2"): (round(500 / 6, 4), 5, 6, round(5 / 6, 4))},
    }
    with reader(db_url) as conn:
        for kpi_id, want in expected.items():
            for source in ("raw", "rollup"):
                assert values(conn, cat, kpi_id, now, source) == want, (kpi_id, source)
        # dead letters: 1 rejected vs the readings of the last 15 minutes
        n = conn.execute("SELECT count(*) FROM readings WHERE time >= %s AND time < %s",
                         (base - timedelta(minutes=14), base + timedelta(minutes=1))).fetchone()[0]
        for source in ("raw", "rollup"):
            got = values(conn, cat, "dead_letter_rate", now, source)
            assert got == {("city", ""): (round(100 / (n + 1), 4), 12, 14, round(12 / 14, 4))}
            lag = evaluate.current(conn, cat, "ingest_lag", now=now, source=source)[("city", "")]
            assert lag.value == pytest.approx(10.0)  # newest reading: NO2 at base + 20 s
        parking = evaluate.current(conn, cat, "parking_occupancy", scopes=("city", "district"), now=now)
        public = evaluate.public_values(cat["parking_occupancy"], parking)
        assert set(public) == {("city", "")}  # districts have fewer than min_group (3) sensors reporting
        assert evaluate.public_values(cat["streetlight_faults"], parking) == {}


def test_series_resolutions_and_materialised_values(city):
    db_url, base, _ = city
    cat = catalogue()
    now = base + timedelta(seconds=30)
    kpis = ["parking_occupancy", "congestion_index", "air_quality_index", "sensors_reporting",
            "on_time_performance", "traffic_volume"]
    with reader(db_url) as conn:
        short = evaluate.series(conn, cat, "parking_occupancy", now - timedelta(hours=1), now)
        assert short.attrs == {"resolution": "raw", "source": "raw"}
        assert len(short) == 10 and set(short["value"].round(4)) == {round(35020 / 401, 4)}
        day_live = evaluate.series(conn, cat, "parking_occupancy", now - timedelta(days=1), now, scope="district")
        assert day_live.attrs == {"resolution": "1m", "source": "1m"}  # not materialised yet: live
        assert sorted(set(day_live["scope_id"])) == ["d1", "d2"]
        week = evaluate.series(conn, cat, "air_quality_index", now - timedelta(days=7), now)
        assert week.attrs == {"resolution": "1h", "source": "1h"}
        # 24 h of PM2.5 ending at ``base`` touch 25 hour buckets, or 24 when base is at minute 59
        hours = {timebuckets.floor_time(base - timedelta(minutes=m), timebuckets.HOUR) for m in range(24 * 60)}
        assert set(week["value"]) == {56.0} and len(week) == len(hours)

    with psycopg.connect(Settings(_env_file=None, database_url=db_url).role_url("ingest"),
                         autocommit=True) as conn:
        rebuilt = materialise.sync_definitions(conn, cat, backfill_1m=timedelta(days=2),
                                               backfill_1h=timedelta(days=4), now=now)
        assert rebuilt == list(cat.kpis)
        assert materialise.sync_definitions(conn, cat, backfill_1m=timedelta(days=2),
                                            backfill_1h=timedelta(days=4), now=now) == []

    with reader(db_url) as conn:
        for kpi in kpis:
            for scope in ("city", "district", "route"):
                if scope not in cat[kpi].scopes:
                    continue
                stored = evaluate.series(conn, cat, kpi, now - timedelta(days=1), now, scope=scope)
                assert stored.attrs == {"resolution": "1m", "source": "kpi_1m"}
                raw = evaluate.series(conn, cat, kpi, now - timedelta(days=1), now, scope=scope, source="raw")
                assert raw.attrs == {"resolution": "1m", "source": "raw"}
                assert len(stored) == len(raw) > 0, (kpi, scope)
                assert list(stored["bucket"]) == list(raw["bucket"])
                assert list(stored["scope_id"]) == list(raw["scope_id"])
                assert np.allclose(stored["value"], raw["value"], equal_nan=True), (kpi, scope)
                assert list(stored["sensors"]) == list(raw["sensors"])
                assert np.allclose(stored["confidence"], raw["confidence"], equal_nan=True)
            hourly = evaluate.series(conn, cat, kpi, now - timedelta(days=3, hours=12), now)
            live = evaluate.series(conn, cat, kpi, now - timedelta(days=3, hours=12), now, source="raw")
            assert hourly.attrs["source"] == "kpi_1h" and live.attrs["source"] == "raw"
            assert np.allclose(hourly["value"], live["value"], equal_nan=True)
        # bounds from the database (zoneinfo Etc/UTC) and from Python (datetime.timezone.utc) mix freely
        db_start = conn.execute("SELECT %s::timestamptz", (base - timedelta(minutes=5),)).fetchone()[0]
        mixed = evaluate.compute(conn, cat, "sensors_reporting", start=db_start, end=base + timedelta(minutes=1),
                                 width=timedelta(minutes=1), table="1m", scopes=("city",))
        assert len(mixed) == 6 and mixed["value"].iloc[-1] == pytest.approx(1200 / 14)
        one = evaluate.series(conn, cat, "parking_occupancy", now - timedelta(days=1), now, scope="district",
                              scope_id="d2")
        assert set(one["scope_id"]) == {"d2"} and set(one["value"]) == {20.0}
        assert set(one["confidence"]) == {0.5}
        wall = evaluate.wall(conn, cat, now=now)
        assert set(wall) == set(cat.kpis)
        assert wall["parking_occupancy"].city.value == pytest.approx(35020 / 401)
        assert wall["parking_occupancy"].districts["d2"].confidence == 0.5
        assert wall["parking_occupancy"].series.attrs["source"] == "kpi_1m"
        assert len(wall["sensors_reporting"].series) == 24 * 60 + 1


def test_changed_definition_falls_back_to_live_then_rebuilds(city):
    db_url, base, _ = city
    now = base + timedelta(seconds=30)
    cat = catalogue()
    ingest = Settings(_env_file=None, database_url=db_url).role_url("ingest")
    with psycopg.connect(ingest, autocommit=True) as conn:
        materialise.sync_definitions(conn, cat, backfill_1m=timedelta(days=1), backfill_1h=timedelta(days=2),
                                     now=now)
    changed = catalogue({"kpis": [{"id": "waste_bins_full", "formula": {"above": 30}}]})
    with reader(db_url) as conn:
        s = evaluate.series(conn, changed, "waste_bins_full", now - timedelta(hours=5), now)
        assert s.attrs["source"] == "1m" and set(s["value"]) == {100.0}
    with psycopg.connect(ingest, autocommit=True) as conn:
        assert materialise.sync_definitions(conn, changed, backfill_1m=timedelta(days=1),
                                            backfill_1h=timedelta(days=2), now=now) == ["waste_bins_full"]
        s = evaluate.series(conn, changed, "waste_bins_full", now - timedelta(hours=5), now)
        assert s.attrs["source"] == "kpi_1m" and set(s["value"]) == {100.0}
        # removed KPIs are forgotten
        fewer = catalogue({"kpis": [{"id": "energy_demand", "enabled": False}]})
        materialise.sync_definitions(conn, fewer, backfill_1m=timedelta(days=1), backfill_1h=timedelta(days=2),
                                     now=now)
        assert conn.execute("SELECT count(*) FROM kpi_state WHERE kpi_id = 'energy_demand'").fetchone()[0] == 0
