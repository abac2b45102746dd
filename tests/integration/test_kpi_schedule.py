"""vehicles_in_service against the demo city's GTFS timetable, with the positions the simulator produces.

The demo pack is loaded into a real TimescaleDB (timetable included), the simulator's fleet
reports every 10 s for 20 minutes of a weekday rush hour, and the KPI is evaluated on every
path: live from raw positions, live at 1 minute, the materialised kpi_1m / kpi_1h.
"""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import numpy as np
import psycopg
import pytest

from kpis import evaluate, materialise
from kpis.catalogue import load_catalogue
from core.settings import Settings
from ingest.simulate.city import load_city
from ingest.simulate.vehicles import Fleet
from layers import DEMO_CITY
from layers.pack import load_pack
from layers.store import store_pack

# Tuesday 24 November 2026, 07:00-07:20 in Cuiabá (UTC-4): morning rush
START = datetime(2026, 11, 24, 11, 0, tzinfo=timezone.utc)
END = START + timedelta(minutes=20)
VEHICLE_KPIS = ("on_time_performance", "mean_delay", "vehicles_in_service", "crowding")


@pytest.fixture(scope="module")
def demo():
    return load_pack(DEMO_CITY)


@pytest.fixture(scope="module")
def positions():
    fleet = Fleet(load_city(DEMO_CITY), seed=1)
    rows = []
    t = START.timestamp()
    while t < END.timestamp():
        rows += [(datetime.fromtimestamp(p.time, timezone.utc), p.vehicle, p.route, p.trip, p.lon, p.lat,
                  p.speed_kmh, p.bearing, p.delay_s, p.occupancy_pct) for p in fleet.positions(t)]
        t += 10
    return rows


def write_positions(conn, rows) -> None:
    with conn.cursor() as cur, cur.copy("COPY vehicle_positions (time, vehicle, route, trip, lon, lat, speed_kmh, "
                                        "bearing, delay_s, occupancy_pct) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def reader(db_url):
    return psycopg.connect(Settings(_env_file=None, database_url=db_url).role_url("reader"), autocommit=True)


def current(db_url, cat, source="raw"):
    with reader(db_url) as conn:
        return evaluate.current(conn, cat, "vehicles_in_service", scopes=("city", "route"),
                                now=END - timedelta(seconds=1), source=source)


def test_timetable_stored_once_and_replaced(db_url, demo):
    with psycopg.connect(db_url) as conn:
        first = store_pack(conn, demo)
        assert first.transit.inserted == len(demo.transit.spans) == 1932
        assert store_pack(conn, demo).transit.unchanged == 1932
        n, routes, blocks = conn.execute("SELECT count(*), count(DISTINCT route_id), count(DISTINCT block_id) "
                                         "FROM transit_trips").fetchone()
        assert (n, routes) == (1932, 10) and 10 < blocks < 200
        assert conn.execute("SELECT service_id, days FROM transit_calendar ORDER BY 1").fetchall() == [
            ("FDS", [False] * 5 + [True] * 2), ("UTEIS", [True] * 5 + [False] * 2)]
        first_trip = conn.execute("SELECT route_id, service_id, start_s, end_s FROM transit_trips "
                                  "WHERE trip_id = 'VLT1-U0-0500'").fetchone()
        assert first_trip == ("VLT1", "UTEIS", 5 * 3600, 5 * 3600 + 1531)  # 05:00:00 .. 05:25:31
        without = dataclasses.replace(demo, transit=None)
        emptied = store_pack(conn, without)
        assert emptied.transit.deleted == 1932
        assert conn.execute("SELECT (SELECT count(*) FROM transit_trips) + (SELECT count(*) FROM transit_feed)"
                            ).fetchone()[0] == 0
    with reader(db_url) as conn:  # the reader role may read the timetable
        assert conn.execute("SELECT count(*) FROM transit_calendar").fetchone()[0] == 0


def test_vehicles_in_service_follows_the_timetable(db_url, demo, positions):
    cat = load_catalogue(DEMO_CITY)
    with psycopg.connect(db_url, autocommit=True) as conn:
        write_positions(conn, positions)
    # before: configured 4 vehicles on each of the 10 routes seen, while the timetable runs 66 at rush
    # hour (uncapped, as before the timetable was read, that was 66 / 40 = 165 %; capped per route it
    # says 100 % whatever runs)
    before = current(db_url, cat)
    assert (before[("city", "")].expected, before[("city", "")].sensors) == (40, 66)
    assert before[("city", "")].value == 100.0
    with psycopg.connect(db_url) as conn:
        store_pack(conn, demo)
    for source in ("raw", "rollup"):
        after = current(db_url, cat, source)
        city = after[("city", "")]
        assert 90 <= city.value <= 100, (source, city)
        # the value is capped per route, so check the plan itself: as many vehicles as ran, give or
        # take the few late ones still finishing a trip (66 ran, 64 planned)
        assert 0.9 * city.sensors <= city.expected <= city.sensors, (source, city)
        routes = {sid: v for (st, sid), v in after.items() if st == "route"}
        assert len(routes) == 10
        assert sum(v.expected for v in routes.values()) == city.expected
        for route, v in routes.items():
            assert 90 <= v.value <= 100 and v.sensors - 2 <= v.expected <= v.sensors, (route, v)
    # the configured number stays an explicit override per route
    fixed = dataclasses.replace(cat, scheduled_vehicles={"default": 4, "routes": {"VLT1": 30}})
    overridden = current(db_url, fixed)
    assert overridden[("route", "VLT1")].expected == 30
    assert overridden[("city", "")].expected == city.expected - after[("route", "VLT1")].expected + 30


def test_every_path_agrees(db_url, demo, positions):
    cat = load_catalogue(DEMO_CITY)
    cat = dataclasses.replace(cat, kpis={k: cat.kpis[k] for k in VEHICLE_KPIS})
    with psycopg.connect(db_url, autocommit=True) as conn:
        write_positions(conn, positions)
        store_pack(conn, demo)
    now = END + timedelta(minutes=5)
    ingest = Settings(_env_file=None, database_url=db_url).role_url("ingest")
    with psycopg.connect(ingest, autocommit=True) as conn:
        assert materialise.sync_definitions(conn, cat, backfill_1m=timedelta(hours=2),
                                            backfill_1h=timedelta(hours=3), now=now) == list(VEHICLE_KPIS)
    with reader(db_url) as conn:
        for scope in ("city", "route"):
            raw = evaluate.series(conn, cat, "vehicles_in_service", START, END, scope=scope, source="raw")
            live = evaluate.series(conn, cat, "vehicles_in_service", START, END, scope=scope, resolution="1m",
                                   source="raw")
            stored = evaluate.series(conn, cat, "vehicles_in_service", START, END, scope=scope, resolution="1m")
            assert (raw.attrs["source"], stored.attrs["source"]) == ("raw", "kpi_1m")
            assert len(raw) == len(live) == len(stored) >= 20
            for other in (live, stored):
                assert list(other["bucket"]) == list(raw["bucket"])
                assert list(other["scope_id"]) == list(raw["scope_id"])
                assert np.allclose(other["value"], raw["value"], equal_nan=True)
                assert list(other["expected"]) == list(raw["expected"])
            hourly = evaluate.series(conn, cat, "vehicles_in_service", START, END, scope=scope, resolution="1h")
            hourly_live = evaluate.series(conn, cat, "vehicles_in_service", START, END, scope=scope,
                                          resolution="1h", source="raw")
            assert hourly.attrs["source"] == "kpi_1h"
            assert np.allclose(hourly["value"], hourly_live["value"], equal_nan=True)
            assert list(hourly["expected"]) == list(hourly_live["expected"])
        city = evaluate.series(conn, cat, "vehicles_in_service", START, END, source="raw")
        # 1-minute values: each route capped at its plan; late buses still out do not push it past 100 %
        assert city["value"].between(80, 100).all() and city["value"].mean() >= 90, city["value"].tolist()
        assert (city["expected"] <= city["sensors"]).all() and (city["expected"] >= 0.8 * city["sensors"]).all()
        delay = evaluate.series(conn, cat, "mean_delay", START, END, source="raw")
        assert list(delay["expected"]) == list(city["expected"])  # the same planned vehicles behind confidence
    # a new timetable (here: none) makes the materialised values stale: live until rebuilt
    with psycopg.connect(db_url) as conn:
        store_pack(conn, dataclasses.replace(demo, transit=None))
    with reader(db_url) as conn:
        stale = evaluate.series(conn, cat, "vehicles_in_service", START, END, resolution="1m")
        assert stale.attrs["source"] == "1m" and set(stale["expected"]) == {40}  # 10 routes seen x 4
    with psycopg.connect(ingest, autocommit=True) as conn:
        assert materialise.sync_definitions(conn, cat, backfill_1m=timedelta(hours=2),
                                            backfill_1h=timedelta(hours=3), now=now) == list(VEHICLE_KPIS)
    with reader(db_url) as conn:
        rebuilt = evaluate.series(conn, cat, "vehicles_in_service", START, END, resolution="1m")
        assert rebuilt.attrs["source"] == "kpi_1m" and set(rebuilt["expected"]) == {40}
