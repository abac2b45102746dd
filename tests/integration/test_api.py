"""The read API /api/v1 against a real TimescaleDB: values equal the database, roles, streaming, errors.

``seed_city`` (also used by the explorer's browser tests) loads the demo city
pack and gives its traffic counters three hours of readings ending now, the
same hour a week earlier, vehicles, dead letters and alerts; rolled up and
materialised like the ingestor's jobs would.
"""
from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache

import psycopg
import pytest

from kpis import evaluate, materialise
from kpis.catalogue import load_catalogue
from core import timebuckets
from kpis import rollup
from core.settings import Settings
from layers import DEMO_CITY
from layers.pack import load_pack
from layers.store import store_pack
from tests.auth_tools import add_user
from tests.integration.kpi_data import now_minute

PASSWORD = "correct horse battery"
HOURS = 3


@dataclass
class City:
    db_url: str
    now: datetime          # the minute the data ends at (exclusive)
    counters: dict[str, int]  # external id -> sensor id of the traffic counters with data
    sensor: str            # a counter with a dead letter and a health alert
    district: str          # a district with a threshold alert


@lru_cache(maxsize=1)
def demo_pack():
    return load_pack(DEMO_CITY)


def speed_of(i: int, t: datetime) -> float:
    return 20.0 + (i % 17) * 2.0 + 10.0 * math.sin(t.timestamp() / 900.0 + i)


def seed_city(db_url: str) -> City:
    now = now_minute()
    with psycopg.connect(db_url, autocommit=True) as conn:
        store_pack(conn, demo_pack())
        counters = dict(conn.execute(
            "SELECT external_id, id FROM sensors WHERE kind = 'traffic_counter' ORDER BY external_id").fetchall())
        for m in ("speed", "flow"):
            conn.execute("INSERT INTO metrics (name) VALUES (%s) ON CONFLICT DO NOTHING", (m,))
        mids = dict(conn.execute("SELECT name, id FROM metrics").fetchall())
        periods = [(now - timedelta(hours=HOURS), now), (now - timedelta(days=7, hours=1), now - timedelta(days=7))]
        with conn.cursor().copy("COPY readings (time, sensor_id, metric_id, value) FROM STDIN") as copy:
            for start, end in periods:
                t = start + timedelta(seconds=5)
                while t < end:
                    for i, (ext, sid) in enumerate(counters.items()):
                        if i % 10 == 9 and t > now - timedelta(minutes=30):
                            continue  # every tenth counter fell silent half an hour ago
                        speed = speed_of(i, t) - (8.0 if end < now else 0.0)
                        copy.write_row((t, sid, mids["speed"], round(speed, 3)))
                        copy.write_row((t, sid, mids["flow"], float(300 + (i * 7) % 500)))
                    t += timedelta(minutes=1)
        route = conn.execute("SELECT 'B101'").fetchone()[0]
        for k in range(4):
            conn.execute("INSERT INTO vehicle_positions (time, vehicle, route, lon, lat, delay_s, occupancy_pct) "
                         "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                         (now - timedelta(minutes=2, seconds=k), f"bus-{k}", route, -56.097 + k * 0.01,
                          -15.601 + k * 0.005, 60.0 * k, 40.0 + k))
        sensor = next(iter(counters))
        conn.execute("INSERT INTO dead_letters (received_at, topic, payload, payload_size, decoder, reason) "
                     "VALUES (%s, %s, %s, 12, 'native', 'speed is not a number')",
                     (now - timedelta(minutes=20), f"city/mobility/traffic_counter/{sensor}", b'{"speed":"x"}'))
        conn.execute("INSERT INTO alerts (kpi_id, scope_type, scope_id, kind, severity, value, opened_at) "
                     "VALUES ('sensor_silent', 'sensor', %s, 'health', 'warning', NULL, %s)",
                     (sensor, now - timedelta(minutes=15)))
        district = conn.execute("SELECT district_id FROM sensors WHERE external_id = %s", (sensor,)).fetchone()[0]
        conn.execute("INSERT INTO alerts (kpi_id, scope_type, scope_id, kind, severity, value, threshold, opened_at) "
                     "VALUES ('congestion_index', 'district', %s, 'threshold', 'critical', 88.0, 70.0, %s)",
                     (district, now - timedelta(minutes=40)))
        rollup.rebuild(conn, now - timedelta(days=7, hours=2), now + timedelta(minutes=1))
        rollup.rebuild(conn, now - timedelta(hours=HOURS + 1), now + timedelta(minutes=1))
        cat = load_catalogue(DEMO_CITY)
        materialise.sync_definitions(conn, cat, backfill_1m=timedelta(hours=HOURS + 3),
                                     backfill_1h=timedelta(hours=HOURS + 3), now=now)
    return City(db_url, now, counters, sensor, district)


def login_client(client, name: str, password: str = PASSWORD) -> None:
    """Sign a Flask test client in through the real /login form."""
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.get_data(as_text=True))
    assert token, "no sign-in form"
    response = client.post("/login", data={"csrf": token[1], "name": name, "password": PASSWORD, "next": "/"})
    assert response.status_code == 302, response.status_code


@pytest.fixture(scope="module")
def city(pg_server) -> City:
    """One seeded database for the module (the tests only read, besides the audit log)."""
    from tests.conftest import create_database, drop_database

    url = create_database(pg_server)
    yield seed_city(url)
    drop_database(pg_server, url)


@pytest.fixture(scope="module")
def api(city, mqtt_broker, web_layers_dir):
    from core.db import close_all
    from dashboard.server import create_app

    add_user(city.db_url, "pat", PASSWORD, "planner")
    add_user(city.db_url, "vic", PASSWORD, "viewer")
    app = create_app(Settings(_env_file=None, database_url=city.db_url, mqtt_url=mqtt_broker.url,
                              layers_dir=str(web_layers_dir), log_format="text", auth_mode="builtin",
                              secret_key="k" * 40, session_cookie_secure=False, login_rate_limit="1000 per minute"))
    yield app.server
    close_all()


def reader(db_url):
    return psycopg.connect(Settings(_env_file=None, database_url=db_url).role_url("reader"), autocommit=True)


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_anonymous_gets_401_and_viewer_cannot_read_raw_data(api, city):
    client = api.test_client()
    assert client.get("/api/v1/kpis").status_code == 401
    login_client(client, "vic")
    assert client.get("/api/v1/kpis").status_code == 200
    denied = client.get(f"/api/v1/sensors/{city.sensor}/readings?lang=pt-BR")
    assert denied.status_code == 403
    assert "planner" in denied.get_json()["error"] and "papel" in denied.get_json()["error"]
    assert client.get("/api/v1/layers/sensors").status_code == 403


def test_raw_readings_csv_equals_the_database_and_is_audited(api, city):
    client = api.test_client()
    login_client(client, "pat")
    start, end = city.now - timedelta(hours=2), city.now
    response = client.get(f"/api/v1/sensors/{city.sensor}/readings?from={iso(start)}&to={iso(end)}&format=csv")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.headers["Content-Disposition"].endswith('.csv"')
    rows = parse_csv(response.get_data(as_text=True))
    with psycopg.connect(city.db_url) as conn:
        truth = conn.execute("SELECT time, metric, value FROM readings_named WHERE sensor_id = %s AND time >= %s "
                             "AND time < %s ORDER BY time, metric", (city.sensor, start, end)).fetchall()
        audit = conn.execute("SELECT count(*) FROM audit_log WHERE action = 'export.csv' AND detail->>'sensor' = %s",
                             (city.sensor,)).fetchone()[0]
    assert len(truth) > 200
    assert [(datetime.fromisoformat(r["time"].replace("Z", "+00:00")), r["metric"], float(r["value"]))
            for r in rows] == [(t, m, v) for t, m, v in truth]
    assert {r["sensor"] for r in rows} == {city.sensor}
    assert audit == 1


def test_series_csv_equals_materialised_rows(api, city):
    client = api.test_client()
    login_client(client, "vic")
    start, end = city.now - timedelta(hours=HOURS), city.now
    response = client.get(f"/api/v1/kpis/congestion_index/series?scope=district&from={iso(start)}&to={iso(end)}"
                          "&resolution=1m&format=csv")
    assert response.status_code == 200
    rows = parse_csv(response.get_data(as_text=True))
    with psycopg.connect(city.db_url) as conn:
        truth = conn.execute("SELECT bucket, scope_id, value, sensors, expected FROM kpi_1m WHERE kpi_id = "
                             "'congestion_index' AND scope_type = 'district' AND bucket >= %s AND bucket < %s "
                             "ORDER BY scope_id, bucket", (start, end)).fetchall()
    assert len(truth) > 100
    got = [(datetime.fromisoformat(r["bucket"].replace("Z", "+00:00")), r["scope_id"],
            float(r["value"]) if r["value"] else None, int(r["sensors"]), int(r["expected"])) for r in rows]
    assert got == [tuple(t) for t in truth]


def test_series_json_matches_the_engine(api, city):
    client = api.test_client()
    login_client(client, "vic")
    start, end = city.now - timedelta(minutes=90), city.now
    body = client.get(f"/api/v1/kpis/arterial_speed/series?from={iso(start)}&to={iso(end)}").get_json()
    assert body["resolution"] == "raw" and body["unit"] == "km/h"
    with reader(city.db_url) as conn:
        frame = evaluate.series(conn, load_catalogue(DEMO_CITY), "arterial_speed", start, end)
    assert [r["value"] for r in body["rows"]] == pytest.approx(list(frame["value"]))
    assert len(body["rows"]) == 90


def test_values_per_district_at_a_frame(api, city):
    client = api.test_client()
    login_client(client, "vic")
    at = city.now - timedelta(minutes=45)
    body = client.get(f"/api/v1/kpis/congestion_index/values?scope=district&at={iso(at)}").get_json()
    with psycopg.connect(city.db_url) as conn:
        truth = dict(conn.execute("SELECT scope_id, value FROM kpi_1m WHERE kpi_id = 'congestion_index' AND "
                                  "scope_type = 'district' AND bucket = %s", (at,)).fetchall())
    assert {v["scope_id"]: v["value"] for v in body["values"]} == pytest.approx(truth)
    assert len(truth) >= 5


def test_layers_geojson_carry_values_and_sensor_health(api, city):
    client = api.test_client()
    login_client(client, "pat")
    at = city.now - timedelta(minutes=5)
    districts = client.get(f"/api/v1/layers/districts?kpi=congestion_index&at={iso(at)}").get_json()
    assert districts["type"] == "FeatureCollection" and len(districts["features"]) == 20
    with_value = [f for f in districts["features"] if f["properties"]["value"] is not None]
    assert with_value and all(f["geometry"]["type"] in ("Polygon", "MultiPolygon") for f in with_value)
    roads = client.get(f"/api/v1/layers/roads?kpi=arterial_speed&at={iso(at)}").get_json()
    assert roads["features"] and all(f["geometry"]["type"].endswith("LineString") for f in roads["features"])
    sensors = client.get(f"/api/v1/layers/sensors?kinds=traffic_counter&at={iso(at)}").get_json()["features"]
    status = {f["properties"]["id"]: f["properties"]["status"] for f in sensors}
    assert len(status) == len(city.counters)
    assert status[city.sensor] == "alert"
    silent = [e for i, e in enumerate(city.counters) if i % 10 == 9]
    assert {status[e] for e in silent} == {"silent"}
    assert sum(s == "reporting" for s in status.values()) == len(city.counters) - len(silent) - 1


def test_dead_letters_and_alerts(api, city):
    client = api.test_client()
    login_client(client, "pat")
    dead = client.get(f"/api/v1/sensors/{city.sensor}/dead-letters").get_json()["dead_letters"]
    assert [d["reason"] for d in dead] == ["speed is not a number"]
    alerts = client.get(f"/api/v1/alerts?scope_type=district&scope_id={city.district}").get_json()["alerts"]
    assert [(a["kpi_id"], a["severity"]) for a in alerts] == [("congestion_index", "critical")]


@pytest.mark.parametrize("path,status,words", [
    ("/api/v1/kpis/nope/series", 404, "nope"),
    ("/api/v1/kpis/congestion_index/series?from=yesterday", 400, "yesterday"),
    ("/api/v1/kpis/congestion_index/series?scope=route", 400, "route"),
    ("/api/v1/kpis/congestion_index/series?from=2026-01-01T00:00Z&to=2026-06-01T00:00Z", 400, "92"),
    ("/api/v1/kpis?format=xml", 400, "xml"),
    ("/api/v1/sensors/nope/readings", 404, "nope"),
])
def test_bad_input_is_a_clear_message(api, path, status, words):
    client = api.test_client()
    login_client(client, "pat")
    response = client.get(path)
    assert response.status_code == status
    body = response.get_json()
    assert set(body) == {"error"} and words in body["error"] and "Traceback" not in body["error"]


def test_map_shows_sensor_markers_to_planners_only(api, city):
    from dashboard import cache
    from dashboard.api import views
    from dashboard.queries import explore as q

    state = q.resolved(q.ViewState(layers=("districts", "sensors")), load_catalogue(DEMO_CITY))
    window = q.window_for(q.ViewState(range="1h"), city.now)
    drawn = {}
    for name in ("vic", "pat"):
        client = api.test_client()
        login_client(client, name)
        name_ = api.config["SESSION_COOKIE_NAME"]
        cookie = client.get_cookie(name_)
        cache.clear()
        with api.test_request_context("/explore", headers={"Cookie": f"{name_}={cookie.value}"}):
            figure, _ = views.build_map(state, window, window.frames - 5, "en")
        drawn[name] = sum(len(t["lon"]) for t in figure["data"] if t.get("legendgroup") == "sensors")
        assert any(t["type"] == "choroplethmap" for t in figure["data"])
    with reader(city.db_url) as conn:
        placed = conn.execute("SELECT count(*) FROM sensors WHERE placed AND kind IS NOT NULL").fetchone()[0]
    assert drawn == {"vic": 0, "pat": placed}


def _street_roads(api) -> dict[str, dict]:
    """Road id -> expected GeoJSON geometry, read from the built street layer on its own."""
    from dashboard.layer_files import layer_geojson

    parts: dict[str, list] = {}
    with api.test_request_context("/"):
        for f in layer_geojson("roads", "street")["features"]:
            g = f["geometry"]
            lines = [g["coordinates"]] if g["type"] == "LineString" else g["coordinates"]
            parts.setdefault(str(f["properties"]["id"]), []).extend(lines)
    return {rid: {"type": "LineString", "coordinates": p[0]} if len(p) == 1 else
            {"type": "MultiLineString", "coordinates": p} for rid, p in parts.items()}


def test_roads_geojson_equals_the_layer_geometry_and_the_engine(api, city):
    from dashboard.queries import explore as q

    client = api.test_client()
    login_client(client, "vic")
    at = city.now - timedelta(minutes=7)
    body = client.get(f"/api/v1/layers/roads?kpi=arterial_speed&at={iso(at)}").get_json()
    window = q.Window(at, at + timedelta(minutes=1), "1m", timedelta(minutes=1))
    with reader(city.db_url) as conn:
        values = q.scope_values(conn, load_catalogue(DEMO_CITY), "arterial_speed", "road", at, window)
    geometry = _street_roads(api)
    assert len(body["features"]) == len(values) >= 5
    for f, (rid, value, conf) in zip(body["features"], zip(values["scope_id"], values["value"],
                                                           values["confidence"])):
        p = f["properties"]
        assert (p["id"], p["kpi"], p["at"]) == (rid, "arterial_speed", iso(at))
        assert p["value"] == pytest.approx(value) and p["confidence"] == pytest.approx(conf)
        assert f["geometry"] == geometry[rid]


def test_sensors_geojson_equals_the_health_frame(api, city):
    from dashboard.queries import explore as q

    client = api.test_client()
    login_client(client, "pat")
    at = city.now - timedelta(minutes=5)
    features = client.get(f"/api/v1/layers/sensors?at={iso(at)}").get_json()["features"]
    window = q.Window(at, at + timedelta(minutes=1), "1m", timedelta(minutes=1))
    with reader(city.db_url) as conn:
        frame = q.sensor_health(conn, at, window)
    assert [(f["properties"]["id"], f["properties"]["kind"], f["properties"]["name"], f["properties"]["district_id"],
             f["properties"]["status"], f["properties"]["readings"], f["properties"]["at"], f["geometry"])
            for f in features] == [
        (e, k, n, d if isinstance(d, str) else None, s, int(r), iso(at),
         {"type": "Point", "coordinates": [float(x), float(y)]})
        for e, k, n, d, s, r, x, y in zip(frame["external_id"], frame["kind"], frame["name"], frame["district_id"],
                                          frame["status"], frame["readings"], frame["lon"], frame["lat"])]


@pytest.mark.parametrize("query", ["scope=district&resolution=1m", "scope=district&resolution=1m&id={district}",
                                   "scope=city&resolution=1m"])
def test_series_csv_from_the_database_is_the_text_pandas_writes(api, city, query):
    """The materialised series CSV is formatted by PostgreSQL: byte for byte what the engine's frame
    written by pandas gives."""
    from dashboard.api import SERIES_HEADER
    from dashboard.api.writers import frame_csv_chunks

    client = api.test_client()
    login_client(client, "vic")
    start, end = city.now - timedelta(hours=HOURS, seconds=30), city.now - timedelta(seconds=30)
    args = dict(part.split("=") for part in query.format(district=city.district).split("&"))
    response = client.get(f"/api/v1/kpis/congestion_index/series?{query.format(district=city.district)}"
                          f"&from={iso(start)}&to={iso(end)}&format=csv")
    assert response.status_code == 200 and response.is_streamed
    with reader(city.db_url) as conn:
        frame = evaluate.series(conn, load_catalogue(DEMO_CITY), "congestion_index", start, end,
                                scope=args["scope"], scope_id=args.get("id"), resolution="1m")
    assert frame.attrs["source"] == "kpi_1m" and len(frame) > 100
    assert response.get_data(as_text=True) == "".join(frame_csv_chunks(frame, SERIES_HEADER))


def test_float_text_writes_floats_like_python(city):
    """PostgreSQL's text of a float8 made to equal Python's (pandas') below 1e16, edge cases included."""
    import random
    import struct

    import pandas as pd

    from dashboard.queries import explore as q

    rnd = random.Random(7)
    values = [0.0, -0.0, 1.0, -3.0, 0.1, 1e-05, 0.0001, 2 / 3, 5e-324, 1e15, 123456789012345.0,
              1234567890123456.5, -1234567890123456.5, 4503599627370495.5, 9999999999999998.0, 1.5e300,
              float("inf"), float("-inf")]
    values += [v for v in (struct.unpack("d", struct.pack("Q", rnd.getrandbits(64)))[0] for _ in range(3000))
               if abs(v) < 1e16]
    values += [rnd.uniform(-1e16, 1e16) for _ in range(2000)] + [float(rnd.randint(-10**16 + 1, 10**16 - 1))
                                                                  for _ in range(2000)]
    values += [rnd.random() * 10 ** rnd.randint(-6, 6) for _ in range(2000)]
    with reader(city.db_url) as conn:
        got = conn.execute(f"SELECT array_agg({q.float_text('x')} ORDER BY i) "  # noqa: S608
                           "FROM unnest(%s::float8[]) WITH ORDINALITY AS u(x, i)", (values,)).fetchone()[0]
        missing = ", ".join(q.float_text(x) for x in ("NULL::float8", "'NaN'::float8"))
        assert conn.execute(f"SELECT {missing}").fetchone() == (None, None)  # noqa: S608 (empty cells)
    expected = pd.DataFrame({"x": values, "y": 0}).to_csv(index=False, header=False, lineterminator="\n")
    assert [g + ",0" for g in got] == expected.splitlines()


def test_comparison_colours_roads_by_their_difference(api, city):
    from dashboard import cache
    from dashboard.api import views
    from dashboard.figures import explore as fig
    from dashboard.queries import explore as q

    cat = load_catalogue(DEMO_CITY)
    state = q.resolved(q.ViewState(layers=("roads",), road="arterial_speed", range="1h", compare="prev_week"), cat)
    window = q.window_for(state, city.now)
    index = window.frames - 30
    at = window.frame_time(index)
    cache.clear()
    with api.test_request_context("/explore"):
        figure, _ = views.build_map(state, window, index, "en")
    traces = [t for t in figure["data"] if t.get("legendgroup") == "roads"]
    with reader(city.db_url) as conn:
        now = q.scope_values(conn, cat, "arterial_speed", "road", at, window)
        then = q.scope_values(conn, cat, "arterial_speed", "road", at - timedelta(days=7), window)
    delta = q.difference(now, then).set_index("scope_id")["delta"].dropna()
    assert len(delta) >= 5 and (delta > 0).all()  # a week earlier every counter was 8 km/h slower
    drawn = {}
    for t in traces:
        assert "change against the other period" in t["name"]
        assert t["line"]["color"] in fig.road_colours("higher", True)
        for custom, text in zip(t["customdata"], t["text"]):
            if custom:
                drawn[custom.split(":", 1)[1]] = text
    assert set(drawn) == set(delta.index)
    rid = delta.index[0]
    assert drawn[rid].endswith(f": {delta[rid]:+.1f} km/h")


def test_health_kpis_materialise_in_slices_equal_to_live_values(api, city, monkeypatch):
    """Data-health KPIs are recomputed in slices of HEALTH_PAIRS (bucket, sensor) pairs (here: one minute
    per query); the stored values equal the live ones.  Rolled back: the module's data stays as seeded."""
    import dataclasses

    monkeypatch.setattr(materialise, "HEALTH_PAIRS", 1)
    cat = load_catalogue(DEMO_CITY)
    one = dataclasses.replace(cat, kpis={"sensors_reporting": cat["sensors_reporting"]})
    start, end = city.now - timedelta(hours=2), city.now
    minutes = [start + timedelta(minutes=i) for i in range(120)]
    with psycopg.connect(Settings(_env_file=None, database_url=city.db_url).role_url("ingest")) as conn:
        conn.execute("DELETE FROM kpi_1m WHERE kpi_id = 'sensors_reporting' AND bucket >= %s AND bucket < %s",
                     (start, end))
        assert materialise.refresh(conn, one, minutes, [], now=end) > 0
        stored = conn.execute("SELECT bucket, scope_type, scope_id, value, sensors FROM kpi_1m WHERE kpi_id = "
                              "'sensors_reporting' AND bucket >= %s AND bucket < %s ORDER BY 2, 3, 1",
                              (start, end)).fetchall()
        live = evaluate.compute(conn, cat, "sensors_reporting", start=start, end=end, width=timedelta(minutes=1),
                                table="1m", scopes=("city", "district"), now=end)
        conn.rollback()
    live = live.sort_values(["scope_type", "scope_id", "bucket"])
    assert len(stored) == len(live) >= 120
    assert [(b, st, si, s) for b, st, si, _, s in stored] == list(zip(
        live["bucket"], live["scope_type"], live["scope_id"], live["sensors"]))
    assert [v for *_, v, _ in stored] == pytest.approx(list(live["value"]), nan_ok=True)


def test_health_slice_keeps_the_distinct_pairs_in_memory():
    assert materialise.health_slice("1m", 5000) == timedelta(minutes=materialise.HEALTH_PAIRS // 5000)
    assert materialise.health_slice("1h", 5000) == timedelta(hours=materialise.HEALTH_PAIRS // 5000)
    assert materialise.health_slice("1m", 10) == materialise.REBUILD_SLICE["1m"]  # small cities: unchanged
    assert materialise.health_slice("1m", 10 ** 7) == timedelta(minutes=1)


def test_every_data_layer_on_the_map_can_be_exported(api, city):
    """The page offers GeoJSON and CSV of each data layer it draws; the links answer through the
    read API, sensor-level layers only for planners (the page does not offer them to viewers)."""
    from dashboard.api import views
    from dashboard.queries import explore as q

    state = q.resolved(q.ViewState(layers=("districts", "roads", "sensors", "vehicles")), load_catalogue(DEMO_CITY))
    window = q.window_for(q.ViewState(range="1h"), city.now)
    at = window.frame_time(window.frames - 1)  # the newest frame: the buses reported 2 minutes ago
    assert [layer for layer, *_ in views.layer_exports(state, window, at, sensor_level=False)] == ["roads"]
    exports = views.layer_exports(state, window, at, sensor_level=True)
    assert [layer for layer, *_ in exports] == ["roads", "sensors", "vehicles"]
    client = api.test_client()
    login_client(client, "pat")
    for layer, geojson, csv_href in exports:
        geo = client.get(geojson)
        assert geo.status_code == 200, (layer, geo.get_data(as_text=True)[:200])
        features = geo.get_json()["features"]
        table = parse_csv(client.get(csv_href).get_data(as_text=True))
        assert len(table) == len(features) > 0, layer  # the CSV holds the same features' properties
    roads_geo = client.get(exports[0][1]).get_json()["features"]
    assert {f["properties"]["kpi"] for f in roads_geo} == {state.road}
    viewer = api.test_client()
    login_client(viewer, "vic")
    assert viewer.get(exports[1][1]).status_code == 403  # the API refuses what the page hides


def test_layers_with_then_carry_the_difference_the_map_shows(api, city):
    """``then=``: the districts and roads the difference map draws, now, then and now minus then."""
    from dashboard.api import views
    from dashboard.queries import explore as q

    cat = load_catalogue(DEMO_CITY)
    window = q.window_for(q.ViewState(range="1h"), city.now)
    at = window.frame_time(window.frames - 1)
    then = window.frame_time(window.frames - 31)
    state = q.resolved(q.ViewState(layers=("districts", "roads"), range="1h", compare="custom",
                                   compare_start=window.start - (at - then)), cat)
    geojson_href = views.export_links(state, window, at, "en")[1]
    assert f"then={iso(then)}" in geojson_href.replace("%3A", ":")
    client = api.test_client()
    login_client(client, "vic")
    districts = client.get(geojson_href).get_json()["features"]
    with api.test_request_context("/"), reader(city.db_url) as conn:
        frame = lambda t: q.Window(t, t + timebuckets.MINUTE, "1m", timebuckets.MINUTE)  # noqa: E731
        now_values = q.scope_values(conn, cat, state.kpi, "district", at, frame(at))
        then_values = q.scope_values(conn, cat, state.kpi, "district", then, frame(then))
    expected = q.difference(now_values, then_values).set_index("scope_id")
    compared = [f["properties"] for f in districts if f["properties"]["difference"] is not None]
    assert len(compared) >= 3
    for props in compared:
        row = expected.loc[props["id"]]
        assert props["then"] == iso(then) and props["value"] == pytest.approx(row["value"])
        assert props["difference"] == pytest.approx(props["value"] - props["then_value"])
        assert props["difference"] == pytest.approx(row["delta"])
    roads_href = next(g for layer, g, _ in views.layer_exports(state, window, at, False) if layer == "roads")
    roads = [f["properties"] for f in client.get(roads_href).get_json()["features"]]
    assert roads and all("difference" in r for r in roads)
    assert any(r["difference"] is not None for r in roads)


@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v1/", "/api/v1/kpis/x/y/z", "/api/v1/%00"])
def test_unknown_api_paths_are_json_404_not_the_html_page(api, path):
    client = api.test_client()
    anonymous = client.get(path)
    assert anonymous.status_code == 401 and anonymous.is_json
    login_client(client, "vic")
    for method in (client.get, client.post):
        response = method(path, headers={"Accept-Language": "pt-BR"})
        assert response.status_code == 404 and response.is_json, (path, response.status_code)
        assert "docs/api.md" in response.get_json()["error"] and "inexistente" in response.get_json()["error"]


def test_a_viewer_gets_no_vehicle_or_sensor_level_data_from_the_explorer_map(api, city):
    """The map callback applies the API's rule: vehicles (ids, routes, positions) and sensor markers
    are planner data; a viewer who asks for those layers gets the map without them."""
    import flask

    from dashboard.api import views
    from dashboard.auth.users import User
    from dashboard.queries import explore as q

    state = q.resolved(q.ViewState(layers=("districts", "sensors", "vehicles")), load_catalogue(DEMO_CITY))
    window = q.window_for(q.ViewState(range="1h"), city.now)
    names = {}
    for role in ("viewer", "planner"):
        with api.test_request_context("/"):
            flask.g.citydash_user = User(role[:3], role)
            figure, _ = views.build_map(state, window, window.frames - 1, "en")
        names[role] = {trace.get("name") for trace in figure["data"]}
    level = {role: {n for n in found if n and n.startswith(("Vehicles", "Sensors"))} for role, found in names.items()}
    assert "Vehicles" in level["planner"] and any(n.startswith("Sensors") for n in level["planner"]), names
    assert not level["viewer"], names
