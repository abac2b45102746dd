"""The ingestor against a real Mosquitto and a real TimescaleDB."""
from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone

import psycopg
import pytest

from ingest.migrate import migrate
from ingest.service import IngestService
from devtools.stack import LocalMosquitto, LocalPostgres, free_port
from tests.conftest import _tempdir
from tests.integration.mqtt_tools import (IngestProcess, count, ingest_env, native_messages,
                                          publish_all, wait_for_count,
                                          wait_until_ingesting)


@pytest.fixture
def service(settings):
    svc = IngestService(settings)
    svc.start()
    assert svc.connected.wait(10), "ingestor did not connect to the broker"
    yield svc
    svc.stop()


def test_native_messages_end_to_end(service, settings, db_url, mqtt_broker):
    ts = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc).timestamp()
    now = time.time()
    publish_all(mqtt_broker.port, [
        ("city/mobility/traffic_counter/tc-1", {"ts": now - 60, "values": {"flow": 12, "speed": 41.5}}),
        ("city/mobility/traffic_counter/tc-1", [
            {"ts": now - 50, "values": {"flow": 13}},
            {"ts": datetime.fromtimestamp(now - 40, timezone.utc).isoformat(), "values": {"flow": 14}},
        ]),
        ("city/infrastructure/noise/nz-7", {"values": {"laeq": 61.2}}),  # no ts: receive time, flagged
        ("city/transport/vehicle/bus-12", {"ts": now - 5, "lat": -15.6, "lon": -56.1,
                                           "route": "101", "speed_kmh": 32, "delay_s": 90}),
        ("city/mobility/traffic_counter/tc-1", b"{not json"),
        ("city/mobility/parking/p-1", {"ts": ts, "values": {"occupancy": "lots"}}),
    ])
    assert wait_for_count(db_url, 2, "SELECT count(*) FROM dead_letters") == 2
    assert wait_for_count(db_url, 5) == 5
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT sensor_id, metric, value FROM readings_named "
                            "ORDER BY sensor_id, metric, time").fetchall()
        assert rows == [("nz-7", "laeq", 61.2), ("tc-1", "flow", 12.0), ("tc-1", "flow", 13.0),
                        ("tc-1", "flow", 14.0), ("tc-1", "speed", 41.5)]
        flags = conn.execute("SELECT r.flags FROM readings r JOIN sensors s ON s.id = r.sensor_id "
                             "WHERE s.external_id = 'nz-7'").fetchone()[0]
        assert flags == 1
        sensors = dict(conn.execute("SELECT external_id, placed FROM sensors").fetchall())
        assert sensors == {"tc-1": False, "nz-7": False}  # registered, unplaced, never dropped
        kinds = dict(conn.execute("SELECT external_id, kind FROM sensors").fetchall())
        assert kinds == {"tc-1": "traffic_counter", "nz-7": "noise"}
        vehicle = conn.execute("SELECT vehicle, route, speed_kmh, delay_s FROM vehicle_positions").fetchall()
        assert vehicle == [("bus-12", "101", 32.0, 90.0)]
        letters = conn.execute("SELECT topic, decoder, reason, payload FROM dead_letters "
                               "ORDER BY id").fetchall()
    topics = {t for t, *_ in letters}
    assert topics == {"city/mobility/traffic_counter/tc-1", "city/mobility/parking/p-1"}
    reasons = " | ".join(r for _, _, r, _ in letters)
    assert "JSON" in reasons and "occupancy" in reasons
    assert all(d == "native" for _, d, _, _ in letters)
    assert any(bytes(p) == b"{not json" for *_, p in letters)


def test_unroutable_and_oversized_messages_are_dead_lettered(service, settings, db_url, mqtt_broker):
    publish_all(mqtt_broker.port, [
        ("city/mobility/traffic_counter/big", b"x" * (settings.max_payload_bytes + 1)),
        ("city/mobility/traffic_counter/ok", {"ts": time.time() - 1, "values": {"flow": 1}}),
    ])
    assert wait_for_count(db_url, 1) == 1
    assert wait_for_count(db_url, 1, "SELECT count(*) FROM dead_letters") == 1
    with psycopg.connect(db_url) as conn:
        reason, size, kept = conn.execute(
            "SELECT reason, payload_size, length(payload) FROM dead_letters").fetchone()
    assert "bytes" in reason and size == settings.max_payload_bytes + 1
    assert kept == settings.dead_letter_payload_cap


def test_permanent_database_error_dead_letters_only_the_offending_message(
        settings, db_url, mqtt_broker):
    """A row the database refuses is isolated by bisection; its neighbours are stored."""
    with psycopg.connect(db_url) as conn:
        conn.execute("""
            CREATE FUNCTION refuse_666() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NEW.value = 666 THEN
                RAISE EXCEPTION 'value 666 refused by test trigger' USING ERRCODE = '22023';
              END IF;
              RETURN NEW;
            END $$;
            CREATE TRIGGER refuse_666 BEFORE INSERT ON readings
              FOR EACH ROW EXECUTE FUNCTION refuse_666();""")
    base = time.time() - 600
    messages = [(f"city/mobility/traffic_counter/tc-{i % 10}",
                 {"ts": base + i, "values": {"flow": 666 if i in (17, 211) else i}})
                for i in range(300)]
    svc = IngestService(settings.model_copy(update={"batch_size": 500, "batch_max_age_ms": 2000}))
    svc.start()
    try:
        assert svc.connected.wait(10)
        publish_all(mqtt_broker.port, messages)
        assert wait_for_count(db_url, 2, "SELECT count(*) FROM dead_letters") == 2
        assert wait_for_count(db_url, 298, stable_for=0.5) == 298
    finally:
        svc.stop()
    with psycopg.connect(db_url) as conn:
        reasons = [r for (r,) in conn.execute("SELECT reason FROM dead_letters")]
        payloads = [json.loads(bytes(p)) for (p,) in conn.execute("SELECT payload FROM dead_letters")]
    assert all("666 refused" in r and "22023" in r for r in reasons)
    assert sorted(p["values"]["flow"] for p in payloads) == [666, 666]


def test_crash_twice_loses_and_duplicates_nothing(db_url, mqtt_broker, tmp_path):
    """50,000 messages stream in; the ingestor is SIGKILLed twice and restarted."""
    env = ingest_env(db_url, mqtt_broker.url, "crash-test", batch_size=2000)
    proc = IngestProcess(env, tmp_path / "ingest.log").start()
    wait_until_ingesting(mqtt_broker.port, db_url)

    n = 50_000
    publisher = threading.Thread(target=publish_all, args=(mqtt_broker.port,
                                                           native_messages(n, sensors=500)))
    publisher.start()
    at_kill = []
    try:
        for _ in range(2):
            wait_for_count(db_url, count(db_url) + 5000, timeout=60)
            proc.kill()
            at_kill.append(count(db_url))
            time.sleep(0.5)
            proc.start()
    finally:
        publisher.join(180)
    expected = 1 + 2 * n
    assert all(c < expected for c in at_kill), f"killed too late to matter: {at_kill}"
    got = wait_for_count(db_url, expected, timeout=180, stable_for=2)
    assert proc.terminate() == 0, proc.log()
    assert got == expected, proc.log()
    with psycopg.connect(db_url) as conn:
        per_metric = dict(conn.execute("SELECT metric, count(*) FROM readings_named "
                                       "GROUP BY metric").fetchall())
        assert per_metric == {"flow": n + 1, "speed": n}
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0


def test_broker_restart_and_database_outage(tmp_path):
    """Queued messages survive a Mosquitto restart; a 20 s PostgreSQL outage mid-stream
    loses nothing and duplicates nothing; the ingestor recovers by itself."""
    pg = LocalPostgres(_tempdir("citydash-test-outage-pg-"), free_port(), shared_buffers="128MB")
    broker = LocalMosquitto(_tempdir("citydash-test-outage-mq-"), free_port())
    try:
        pg.start()
        broker.start()
        migrate(pg.url)
        env = ingest_env(pg.url, broker.url, "outage-test", batch_size=1000)
        proc = IngestProcess(env, tmp_path / "ingest.log").start()
        wait_until_ingesting(broker.port, pg.url)

        # 1. ingestor offline: messages queue in its persistent session; the broker restarts.
        assert proc.terminate() == 0
        start = time.time() - 7200
        publish_all(broker.port, native_messages(10_000, sensors=100, start=start))
        broker.stop()
        broker.start()
        proc.start()
        assert wait_for_count(pg.url, 1 + 20_000, timeout=60) == 1 + 20_000, proc.log()

        # 2. PostgreSQL stops for 20 s while messages stream in.
        done = threading.Event()

        def stream():
            publish_all(broker.port, _paced(native_messages(10_000, sensors=100, start=start + 1000,
                                                            prefix="db"), per_s=500))
            done.set()

        threading.Thread(target=stream, daemon=True).start()
        time.sleep(3)
        pg.stop(mode="fast")
        time.sleep(20)
        assert proc.alive(), proc.log()
        pg.start()
        assert done.wait(60)
        expected = 1 + 20_000 + 20_000
        got = wait_for_count(pg.url, expected, timeout=90, stable_for=2)
        assert got == expected, proc.log()
        assert proc.terminate() == 0
        assert "database unavailable" in proc.log()
    finally:
        broker.remove()
        pg.remove()


def _paced(messages, per_s: int):
    start = time.monotonic()
    for i, message in enumerate(messages):
        due = start + i / per_s
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield message


def test_two_ingestors_in_a_shared_group_store_everything_once(settings, db_url, mqtt_broker):
    group = settings.model_copy(update={"mqtt_shared_group": "citydash-test"})
    first = IngestService(group.model_copy(update={"mqtt_client_id": settings.mqtt_client_id + "-a"}))
    second = IngestService(group.model_copy(update={"mqtt_client_id": settings.mqtt_client_id + "-b"}))
    for svc in (first, second):
        svc.start()
        assert svc.connected.wait(10)
    time.sleep(0.5)  # both subscriptions in place
    try:
        n = 20_000
        publish_all(mqtt_broker.port, native_messages(n, sensors=200, prefix="sg"))
        got = wait_for_count(db_url, 2 * n, timeout=120, stable_for=1)
    finally:
        first.stop()
        second.stop()
    assert got == 2 * n
    assert first.totals.readings > 0 and second.totals.readings > 0
    assert first.totals.readings + second.totals.readings == 2 * n


def test_batched_acks_are_accepted_so_nothing_is_redelivered(settings, db_url, mqtt_broker):
    """Acks go out as one write per batch; a restart with the same session gets nothing again."""
    n = 3000
    first = IngestService(settings)
    first.start()
    assert first.connected.wait(10)
    try:
        publish_all(mqtt_broker.port, native_messages(n, sensors=50, prefix="ack"))
        assert wait_for_count(db_url, 2 * n, stable_for=0.5) == 2 * n
    finally:
        first.stop()
    assert first.totals.readings == 2 * n
    second = IngestService(settings)
    second.start()
    try:
        assert second.connected.wait(10)
        time.sleep(3)  # a broker redelivering unacked messages does so right after CONNACK
    finally:
        second.stop()
    assert second.totals.readings == 0 and second.totals.duplicates == 0
    assert count(db_url) == 2 * n


def test_the_ingestor_runs_the_rollup_job(settings, db_url, mqtt_broker):
    """The KPI jobs run inside the ingestor's worker: rollups follow what it writes."""
    svc = IngestService(settings.model_copy(update={"jobs_enabled": True, "rollup_interval_s": 1}))
    svc.start()
    try:
        assert svc.connected.wait(10)
        publish_all(mqtt_broker.port, native_messages(600, sensors=20, prefix="ru",
                                                      start=time.time() - 1800))
        assert wait_for_count(db_url, 1200) == 1200
        rolled = wait_for_count(db_url, 1200, "SELECT coalesce(sum(count), 0)::int FROM readings_1m",
                                timeout=30)
    finally:
        svc.stop()
    assert rolled == 1200  # every stored reading is counted once in the 1-minute rollup


def test_metrics_the_registry_does_not_declare_are_dead_lettered(settings, db_url, mqtt_broker):
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO sensor_kinds (kind, domain, metrics) "
                     "VALUES ('parking', 'mobility', '{occupancy}')")
    svc = IngestService(settings)
    svc.start()
    try:
        assert svc.connected.wait(10)
        now = time.time()
        publish_all(mqtt_broker.port, [
            ("city/mobility/parking/p-1", {"ts": now - 5, "values": {"occupancy": 40}}),
            ("city/mobility/parking/p-2", {"ts": now - 5, "values": {"occupancy": 40, "colour": 3}}),
        ])
        assert wait_for_count(db_url, 1, "SELECT count(*) FROM dead_letters") == 1
        assert wait_for_count(db_url, 1, stable_for=0.5) == 1
    finally:
        svc.stop()
    with psycopg.connect(db_url) as conn:
        (reason,) = conn.execute("SELECT reason FROM dead_letters").fetchone()
    assert "'colour' is not declared for kind 'parking'" in reason and "occupancy" in reason
