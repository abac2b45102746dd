"""Rollups against a real TimescaleDB: equal to raw aggregation, late data, retention."""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from core import timebuckets
from kpis import rollup
from ingest.decoders.base import Decoded, Message, Reading, VehiclePosition
from ingest.jobs import JobRunner
from core.settings import Settings
from ingest.writer import BatchWriter, Entry
from tests.integration.kpi_data import (catalogue, insert, now_minute, raw_1h, raw_1m, same, seed,
                                        spaced, table)

SENSORS = [("tc-1", "traffic_counter", "d1", {}), ("tc-2", "traffic_counter", "d2", {}),
           ("aq-1", "air_quality", "d1", {}), ("nz-1", "noise", "d2", {})]


def value(i: int, sid: int) -> float:
    return round(50 + 40 * math.sin(i * 0.37 + sid), 3)


def load_three_hours(conn, ids, end):
    start = end - timedelta(hours=3)
    rows = []
    for sid, metrics in ((ids["tc-1"], ["flow", "speed"]), (ids["tc-2"], ["flow", "speed"]),
                         (ids["aq-1"], ["pm25"]), (ids["nz-1"], ["laeq"])):
        for i, t in enumerate(spaced(start, 180, every_s=20)):
            for m in metrics:
                rows.append((t, sid, m, value(i, sid)))
    insert(conn, rows)
    return start


def ingest_url(db_url: str) -> str:
    return Settings(_env_file=None, database_url=db_url).role_url("ingest")


def snapshot(conn, name):
    rows = conn.execute(f"SELECT bucket, sensor_id, metric_id, xmin::text FROM {name}").fetchall()  # noqa: S608
    return {r[:3]: r[3] for r in rows}


def test_rollups_equal_raw_aggregation(db_url):
    end = now_minute()
    with psycopg.connect(db_url, autocommit=True) as owner:
        ids = seed(owner, SENSORS)
        start = load_three_hours(owner, ids, end)
        assert rollup.mark_dirty(owner, start, end) == 180
    with psycopg.connect(ingest_url(db_url), autocommit=True) as conn:  # the job's role
        result = rollup.refresh(conn)
        assert result.claimed == 180 and len(result.minutes) == 180 and len(result.hours) in (3, 4)
        assert conn.execute("SELECT count(*) FROM rollup_pending").fetchone()[0] == 0
        m1, h1 = table(conn, "readings_1m"), table(conn, "readings_1h")
        assert len(m1) == 180 * 6 and sum(r[0] for r in m1.values()) == 180 * 3 * 6
        assert same(m1, raw_1m(conn))
        assert same(h1, raw_1h(conn))
        # a second run finds nothing to do and rewrites nothing
        before = snapshot(conn, "readings_1m")
        assert rollup.refresh(conn).claimed == 0
        assert rollup.refresh_minutes(conn, result.minutes) == 0  # recomputing changes no row
        assert snapshot(conn, "readings_1m") == before


def test_late_data_reaggregates_only_touched_buckets(db_url):
    end = now_minute()
    with psycopg.connect(db_url, autocommit=True) as owner:
        ids = seed(owner, SENSORS)
        start = load_three_hours(owner, ids, end)
        rollup.rebuild(owner, start, end)
        assert same(table(owner, "readings_1m"), raw_1m(owner))
        before_1m, before_1h = snapshot(owner, "readings_1m"), snapshot(owner, "readings_1h")
        mids = dict(owner.execute("SELECT name, id FROM metrics").fetchall())

    # Late readings through the real writer (as citydash_ingest): two old minutes of tc-1 flow,
    # one reading in a minute nobody reported in (a gap after the data) and a vehicle position.
    late_a = start + timedelta(minutes=30, seconds=41)
    late_b = start + timedelta(minutes=95, seconds=59)
    gap = end + timedelta(minutes=2, seconds=5)
    readings = [Reading("tc-1", "flow", late_a, 999.0), Reading("tc-1", "flow", late_b, -5.0),
                Reading("nz-1", "laeq", gap, 71.0), Reading("tc-1", "flow", late_a, 1.0)]
    decoded = Decoded(readings=readings, vehicles=[VehiclePosition(late_a, "bus-1", -56.1, -15.6, "101")])
    entry = Entry(1, 1, 1, Message("city/mobility/traffic_counter/tc-1", b"{}", datetime.now(timezone.utc)),
                  "native", decoded)
    writer = BatchWriter(ingest_url(db_url))
    try:
        result = writer.write([entry])
    finally:
        writer.close()
    assert result.readings == 3 and result.duplicates == 1
    touched_minutes = {timebuckets.floor_time(t, timebuckets.MINUTE) for t in (late_a, late_b, gap)}

    with psycopg.connect(ingest_url(db_url), autocommit=True) as conn:
        pending = {r[0] for r in conn.execute("SELECT bucket FROM rollup_pending").fetchall()}
        assert pending == touched_minutes
        refreshed = rollup.refresh(conn)
        assert set(refreshed.minutes) == touched_minutes
        assert set(refreshed.hours) == {timebuckets.floor_time(m, timebuckets.HOUR) for m in touched_minutes}
        after_1m, after_1h = snapshot(conn, "readings_1m"), snapshot(conn, "readings_1h")
        assert same(table(conn, "readings_1m"), raw_1m(conn))
        assert same(table(conn, "readings_1h"), raw_1h(conn))

    touched = {(m, ids["tc-1"], mids["flow"]) for m in touched_minutes if m != timebuckets.floor_time(gap, timebuckets.MINUTE)}
    new_key = (timebuckets.floor_time(gap, timebuckets.MINUTE), ids["nz-1"], mids["laeq"])
    changed = {k for k in after_1m if before_1m.get(k) != after_1m[k]}
    assert changed == touched | {new_key}  # every other row, even in the touched minutes, untouched
    assert set(after_1m) == set(before_1m) | {new_key}
    hours_touched = {(timebuckets.floor_time(k[0], timebuckets.HOUR), k[1], k[2]) for k in changed}
    changed_1h = {k for k in after_1h if before_1h.get(k) != after_1h[k]}
    assert changed_1h == hours_touched


def test_rebuild_and_mark_dirty_cover_partial_minutes(db_url):
    t = datetime(2026, 1, 5, 10, 0, 30, tzinfo=timezone.utc)
    with psycopg.connect(db_url, autocommit=True) as conn:
        ids = seed(conn, SENSORS[:1])
        insert(conn, [(t, ids["tc-1"], "flow", 1.0), (t + timedelta(seconds=20), ids["tc-1"], "flow", 3.0),
                      (t + timedelta(hours=2), ids["tc-1"], "flow", 7.0)])
        assert rollup.mark_dirty(conn, t, t + timedelta(seconds=1)) == 1
        assert rollup.mark_dirty(conn, t, t + timedelta(minutes=1)) == 2  # 10:00 and 10:01
        rollup.refresh(conn)
        got = table(conn, "readings_1m")
        assert list(got.values()) == [(2, 4.0, 1.0, 3.0, 3.0, t + timedelta(seconds=20))]
        r = rollup.rebuild(conn, t, t + timedelta(hours=2, minutes=1))
        assert r.hours == [t.replace(minute=0, second=0) + timedelta(hours=h) for h in range(3)]
        assert same(table(conn, "readings_1m"), raw_1m(conn)) and same(table(conn, "readings_1h"), raw_1h(conn))


def chunks(conn, name: str) -> int:
    return conn.execute("SELECT count(*) FROM show_chunks(%s)", (name,)).fetchone()[0]


def test_retention_drops_old_chunks_per_settings(db_url):
    now = datetime.now(timezone.utc)
    ages = (50, 32, 2)
    with psycopg.connect(db_url, autocommit=True) as conn:
        ids = seed(conn, SENSORS[:1])
        for days in ages:
            t = now - timedelta(days=days)
            insert(conn, [(t, ids["tc-1"], "flow", float(days))])
            conn.execute("INSERT INTO vehicle_positions (time, vehicle, lon, lat) VALUES (%s, 'bus', 0, 0)", (t,))
            rollup.rebuild(conn, t, t + timedelta(minutes=1))
            conn.execute("INSERT INTO kpi_1m (bucket, kpi_id, scope_type, scope_id, value, sensors, expected) "
                         "VALUES (%s, 'k', 'city', '', 1, 1, 1)", (t,))
            conn.execute("INSERT INTO audit_log (at, actor, action) VALUES (%s, 'ana', 'auth.login')", (t,))
            conn.execute("INSERT INTO dead_letters (received_at, topic, payload_size, reason) "
                         "VALUES (%s, 'city/x', 0, 'bad')", (t,))
        assert [chunks(conn, n) for n in ("readings", "readings_1m", "vehicle_positions")] == [3, 3, 3]

    settings = Settings(_env_file=None, database_url=db_url, raw_retention_days=30,
                        rollup_1m_retention_days=35, audit_retention_days=40,
                        dead_letter_retention_days=10)
    runner = JobRunner(settings, catalogue=catalogue(), publisher=lambda t, p: True)
    try:
        dropped = runner.run_once(jobs=("retention",))["retention"]
    finally:
        runner.close()
    assert dropped == {"readings": 2, "vehicle_positions": 2, "readings_1m": 1, "kpi_1m": 1, "audit_log": 1,
                       "dead_letters": 2}

    with psycopg.connect(db_url) as conn:
        def days(sql):
            return sorted(round((now - t).total_seconds() / 86400) for (t,) in conn.execute(sql).fetchall())
        assert days("SELECT time FROM readings") == [2]
        assert days("SELECT time FROM vehicle_positions") == [2]
        assert days("SELECT last_time FROM readings_1m") == [2, 32]
        assert days("SELECT last_time FROM readings_1h") == [2, 32, 50]  # 1-hour rollups are kept
        assert days("SELECT bucket FROM kpi_1m") == [2, 32]
        assert days("SELECT at FROM audit_log") == [2, 32]  # older than audit_retention_days: deleted
        assert days("SELECT received_at FROM dead_letters") == [2]
        state = conn.execute("SELECT details FROM rollup_state WHERE name = 'retention'").fetchone()[0]
        assert state == dropped
        assert [chunks(conn, n) for n in ("readings", "readings_1m", "vehicle_positions")] == [1, 2, 1]


def test_retention_privileges(db_url):
    with psycopg.connect(ingest_url(db_url), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT drop_chunks('readings', now() - interval '1 day')")
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SELECT * FROM apply_retention(0, 90)")
        assert dict(conn.execute("SELECT * FROM apply_retention(30, 10)").fetchall()) == {
            "readings": 0, "vehicle_positions": 0, "readings_1m": 0, "kpi_1m": 0}
    reader = Settings(_env_file=None, database_url=db_url).role_url("reader")
    with psycopg.connect(reader, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM apply_retention(30, 90)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO readings_1m VALUES (now(), 1, 1, 1, 1, 1, 1, 1, now())")
        assert conn.execute("SELECT count(*) FROM readings_1h").fetchone()[0] == 0
