"""The JobRunner thread: rollups, materialised KPIs and advisory locks, as citydash_ingest."""
from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone

import psycopg

from ingest.decoders.base import Decoded, Message, Reading
from ingest.jobs import LOCK_BASE, JobRunner
from ingest.writer import BatchWriter, Entry
from tests.integration.kpi_data import catalogue, seed


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_runner_thread_rolls_up_what_the_writer_wrote(settings, db_url):
    cat = catalogue()
    with psycopg.connect(db_url, autocommit=True) as conn:
        seed(conn, [("p1", "parking", "d1", {"capacity": 10})])
    now = datetime.now(timezone.utc)
    readings = [Reading("p1", "occupancy", now - timedelta(seconds=s), 40.0 + s) for s in range(0, 300, 30)]
    writer = BatchWriter(settings.role_url("ingest"))
    try:
        writer.write([Entry(1, 1, 1, Message("city/mobility/parking/p1", b"{}", now), "native",
                            Decoded(readings=readings))])
    finally:
        writer.close()

    fast = settings.model_copy(update={"rollup_interval_s": 1, "alert_interval_s": 1,
                                       "kpi_backfill_1m_days": 1, "kpi_backfill_1h_days": 2})
    runner = JobRunner(fast, catalogue=cat)
    runner.start()
    try:
        def rolled_up():
            with psycopg.connect(db_url) as conn:
                n = conn.execute("SELECT coalesce(sum(count), 0) FROM readings_1m").fetchone()[0]
                k = conn.execute("SELECT count(*) FROM kpi_state").fetchone()[0]
                v = conn.execute("SELECT count(*) FROM kpi_1m WHERE kpi_id = 'parking_occupancy' "
                                 "AND value IS NOT NULL").fetchone()[0]
                r = conn.execute("SELECT count(*) FROM kpi_1m WHERE kpi_id = 'sensors_reporting' "
                                 "AND bucket > now() - interval '3 minutes' AND value = 100").fetchone()[0]
                return n == 10 and k == len(cat) and v > 0 and r > 0

        assert wait_for(rolled_up), runner.stats
        assert wait_for(lambda: runner.stats["alerts"]["runs"] >= 1), runner.stats
    finally:
        runner.stop()
    assert runner._thread is None and runner.conn is None
    stats = runner.stats["rollup"]
    assert stats["runs"] >= 1 and stats["failures"] == 0 and stats["cpu_s"] > 0
    assert stats["last"]["kpi_errors"] == []
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM rollup_pending").fetchone()[0] == 0
        value = conn.execute("SELECT avg(value) FROM kpi_1m WHERE kpi_id = 'parking_occupancy' "
                             "AND scope_type = 'district' AND scope_id = 'd1'").fetchone()[0]
        assert 40.0 <= value <= 310.0
        state = dict(conn.execute("SELECT name, details FROM rollup_state").fetchall())
        assert set(state) >= {"rollup", "alerts"}


def test_advisory_lock_lets_one_runner_work(settings, db_url):
    cat = catalogue()
    runner = JobRunner(settings, catalogue=cat, publisher=lambda t, p: True)
    try:
        with psycopg.connect(db_url, autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", (LOCK_BASE,))  # another ingestor is rolling up
            assert runner.run_once(jobs=("rollup",)) == {"rollup": None}
            other.execute("SELECT pg_advisory_unlock(%s)", (LOCK_BASE,))
        done = runner.run_once(jobs=("rollup",))["rollup"]
        assert done["claimed"] == 0 and sorted(done["kpis_rebuilt"]) == sorted(cat.kpis)
        assert runner.run_once(jobs=("rollup",))["rollup"]["kpis_rebuilt"] == []
    finally:
        runner.close()


def test_invalid_pack_catalogue_pauses_kpis_not_rollups(settings, db_url, tmp_path):
    (tmp_path / "city.yaml").write_text("name: T\ntimezone: UTC\nlayers:\n  kpis: kpis.yaml\n", encoding="utf-8")
    (tmp_path / "kpis.yaml").write_text("kpis:\n  - id: ingest_lag\n    better: sideways\n", encoding="utf-8")
    with psycopg.connect(db_url, autocommit=True) as conn:
        ids = seed(conn, [("p1", "parking", "d1", {})])
        conn.execute("INSERT INTO readings (time, sensor_id, metric_id, value) "
                     "SELECT now() - interval '30 seconds', %s, id, 50 FROM metrics WHERE name = 'occupancy'",
                     (ids["p1"],))
        conn.execute("INSERT INTO rollup_pending SELECT time_bucket('1 minute', now() - interval '30 seconds')")
    runner = JobRunner(settings.model_copy(update={"city_pack": str(tmp_path)}), publisher=lambda t, p: True)
    try:
        result = runner.run_once(jobs=("rollup", "alerts"))
        assert result["rollup"]["rows_1m"] == 1
        assert result["rollup"]["kpis"].startswith("paused: invalid KPI catalogue:")
        assert "kpi 'ingest_lag': better: 'sideways'" in result["rollup"]["kpis"]
        assert result["alerts"]["paused"].startswith("invalid KPI catalogue")
        (tmp_path / "kpis.yaml").write_text("kpis:\n  - id: ingest_lag\n    thresholds: {warning: 100}\n",
                                            encoding="utf-8")
        os.utime(tmp_path / "kpis.yaml", ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
        result = runner.run_once(jobs=("rollup",))
        assert "kpis" not in result["rollup"] and len(result["rollup"]["kpis_rebuilt"]) == 18
        assert runner.catalogue["ingest_lag"].thresholds.warning == 100
    finally:
        runner.close()
