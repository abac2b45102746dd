"""The wall's queries against a real TimescaleDB: engine values, live data, acknowledgement, sharing."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta

import flask
import psycopg
import pytest

from kpis import evaluate
from dashboard.queries import wall as q
from kpis import rollup
from core.settings import Settings
from tests.integration.kpi_data import catalogue, insert, now_minute, seed

SENSORS = [("p1", "parking", "d1", {"capacity": 100}), ("p2", "parking", "d2", {"capacity": 300}),
           ("tc1", "traffic_counter", "d1", {"road": "r1", "free_flow_kmh": 60, "road_class": "arterial"}),
           ("tc2", "traffic_counter", "d2", {"road": "r2", "free_flow_kmh": 50, "road_class": "local"})]
VALUES = {"p1": ("occupancy", 50.0), "p2": ("occupancy", 100.0), "tc1": ("speed", 20.0), "tc2": ("speed", 50.0)}


@pytest.fixture
def city(db_url):
    base = now_minute()
    with psycopg.connect(db_url, autocommit=True) as conn:
        ids = seed(conn, SENSORS)
        conn.execute("UPDATE sensors SET lon = -56.1, lat = -15.6 WHERE external_id = 'tc2'")
        insert(conn, [(base - timedelta(minutes=m) + timedelta(seconds=10), ids[ext], metric, value)
                      for m in range(10) for ext, (metric, value) in VALUES.items()])
        for minutes, lon in ((3, -56.0), (1, -56.2)):  # the newest position of each vehicle counts
            conn.execute("INSERT INTO vehicle_positions (time, vehicle, route, lon, lat, delay_s) VALUES "
                         "(%s, 'bus-1', '101', %s, -15.6, 30)", (base - timedelta(minutes=minutes), lon))
        rollup.rebuild(conn, base - timedelta(hours=2), base + timedelta(minutes=1))
        conn.execute("""INSERT INTO alerts (kpi_id, scope_type, scope_id, kind, severity, opened_at) VALUES
                        ('parking_occupancy', 'district', 'd2', 'threshold', 'warning', now() - interval '9 minutes'),
                        ('sensor_silent', 'sensor', 'tc2', 'health', 'warning', now() - interval '5 minutes'),
                        ('congestion_index', 'city', '', 'threshold', 'critical', now() - interval '1 minute')""")
    return db_url, base, ids


def wall_page():
    """The page module as the app loaded it (Dash executes pages itself, as ``pages.wall``;
    importing ``dashboard.pages.wall`` again would register its callbacks a second time)."""
    import sys

    import dash

    return sys.modules[dash.page_registry["pages.wall"]["module"]]


def reader(db_url):
    return psycopg.connect(Settings(_env_file=None, database_url=db_url).role_url("reader"), autocommit=True)


def test_kpi_snapshot_is_the_engines_values(city):
    db_url, base, _ = city
    cat = catalogue()
    now = base + timedelta(seconds=30)
    with reader(db_url) as conn:
        snap = q.kpi_snapshot(conn, cat, now=now)
        for kpi_id in ("parking_occupancy", "congestion_index"):
            engine = evaluate.current(conn, cat, kpi_id, scopes=("city", "district"), now=now)
            got = snap["kpis"][kpi_id]
            assert got["value"] == pytest.approx(engine[("city", "")].value)
            assert got["confidence"] == engine[("city", "")].confidence
            assert got["districts"] == pytest.approx({sid: v.value for (st, sid), v in engine.items() if st == "district"})
    # hand-computed: (50 * 100 + 100 * 300) / 400; tc1 60/20 -> +200 %, tc2 free flow
    assert snap["kpis"]["parking_occupancy"]["value"] == pytest.approx(87.5)
    assert snap["kpis"]["congestion_index"]["level"] == "critical"
    assert snap["roads"] == pytest.approx({"r1": 200.0, "r2": 0.0})
    assert len(snap["kpis"]["parking_occupancy"]["series_t"]) > 0
    assert set(snap["kpis"]) == {k.id for k in cat}


def test_live_snapshot(city):
    db_url, base, _ = city
    with reader(db_url) as conn:
        live = q.live_snapshot(conn)
        newest = conn.execute("SELECT max(time) FROM readings").fetchone()[0]
    assert datetime.fromisoformat(live["newest"]) == newest
    assert [a["kpi_id"] for a in live["alerts"]] == ["congestion_index", "sensor_silent", "parking_occupancy"]
    assert live["vehicles"] == [{"vehicle": "bus-1", "route": "101", "lon": -56.2, "lat": -15.6, "delay_s": 30.0}]
    assert live["faults"] == [{"sensor": "tc2", "lon": -56.1, "lat": -15.6, "kpi_id": "sensor_silent"}]
    assert q.takeover(live["alerts"])["kpi_id"] == "congestion_index"


def test_acknowledge_through_the_sql_function(city):
    db_url, _, _ = city
    with reader(db_url) as conn:
        alert = conn.execute("SELECT id FROM alerts WHERE kpi_id = 'congestion_index'").fetchone()[0]
        with pytest.raises(q.AckError) as err:
            q.acknowledge(conn, alert, "otto", "   ")
        assert err.value.key == "wall.ack.error.comment"
        assert q.acknowledge(conn, alert, "otto", "crew sent") == {"id": alert, "state": "acknowledged", "by": "otto"}
        with pytest.raises(q.AckError) as err:
            q.acknowledge(conn, alert, "otto", "again")
        assert err.value.key == "wall.ack.error.state"
        with pytest.raises(q.AckError) as err:
            q.acknowledge(conn, 999999, "otto", "x")
        assert err.value.key == "wall.ack.error.missing"
        assert q.takeover(q.live_snapshot(conn)["alerts"]) is None  # acknowledged: the slot is given back


def test_only_operators_may_acknowledge(city, settings):
    from dashboard.auth import User
    from dashboard.server import create_app

    db_url, _, _ = city
    app = create_app(settings)
    page = wall_page()
    with psycopg.connect(db_url) as conn:
        alert = conn.execute("SELECT id FROM alerts WHERE kpi_id = 'congestion_index'").fetchone()[0]
    for user, ok in ((None, False), (User("vera", "viewer"), False), (User("pia", "planner"), False),
                     (User("otto", "operator"), True)):
        with app.server.test_request_context("/_dash-update-component", method="POST"):
            flask.g.citydash_user = user
            message, done = page.acknowledge_as_user(alert, "on it", "en")
        assert done is ok, (user, message)
        if not ok:
            assert message == "Only a signed-in operator may acknowledge alerts."
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT state, acknowledged_by FROM alerts WHERE id = %s", (alert,)).fetchone() == \
            ("acknowledged", "otto")
        assert conn.execute("SELECT actor FROM audit_log WHERE action = 'alert.acknowledge'").fetchall() == [("otto",)]
    from core.db import close_all

    close_all()


def test_fifty_screens_cost_one_computation(city, settings, monkeypatch):
    from dashboard import cache
    from core.db import close_all
    from dashboard.server import create_app

    create_app(settings)
    page = wall_page()
    cache.clear()
    calls = []
    real = q.kpi_snapshot

    def counted(conn, cat, now=None):
        calls.append(threading.get_ident())
        return real(conn, cat, now)

    monkeypatch.setattr(q, "kpi_snapshot", counted)
    results = []
    barrier = threading.Barrier(50)

    def screen():
        barrier.wait()
        results.append(page.kpi_data())

    threads = [threading.Thread(target=screen) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 50 and len(calls) == 1
    assert all(r is results[0] or r == results[0] for r in results)
    assert results[0]["kpis"]["parking_occupancy"]["value"] == pytest.approx(87.5)
    close_all()


def test_screens_never_wait_for_a_recomputation(settings, monkeypatch):
    """Stale-while-revalidate over ``bucketed``: the previous bucket's value at once, the new one in the
    background, computed once; nothing older than one bucket is ever shown."""
    from dashboard import cache
    from core.db import close_all
    from dashboard.server import create_app

    create_app(settings)
    page = wall_page()
    cache.clear()
    clock = {"bucket": 100}
    monkeypatch.setattr(cache, "bucket", lambda ttl_s, now=None: clock["bucket"])
    computed, release = [], threading.Event()

    def compute():
        if computed:  # recomputations are slow
            release.wait(5)
        computed.append(clock["bucket"])
        return clock["bucket"]

    assert page.shared("t", 30, compute) == 100  # nothing yet: computed in the request
    assert page.shared("t", 30, compute) == 100 and computed == [100]  # same bucket: kept
    clock["bucket"] = 101
    assert page.shared("t", 30, compute) == 100  # new bucket: the old value at once ...
    assert page.shared("t", 30, compute) == 100  # ... and still one background computation
    release.set()
    for _ in range(50):
        if page.shared("t", 30, compute) == 101:
            break
        threading.Event().wait(0.05)
    assert computed == [100, 101]
    clock["bucket"] = 105  # a value several buckets old is not shown: computed in the request
    assert page.shared("t", 30, compute) == 105
    close_all()
