"""Bounded retries of transient database errors, then bisection and dead letters; the stuck-flush
warning; citydash_ingest_db_up (real TimescaleDB, real Mosquitto)."""
from __future__ import annotations

import logging
import threading
import time
import urllib.request
from datetime import datetime, timezone

import psycopg
from prometheus_client import REGISTRY

from devtools.stack import free_port
from ingest.decoders.base import Message
from ingest.pipeline import Pipeline
from ingest.service import IngestService
from ingest.worker import Decoder
from ingest.writer import BatchWriter, Entry
from tests.integration.mqtt_tools import publish_all, wait_for_count


def _trigger(db_url: str, value: int, body: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute(f"""
            CREATE FUNCTION test_fault() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NEW.value = {value} THEN {body} END IF;
              RETURN NEW;
            END $$;
            CREATE TRIGGER test_fault BEFORE INSERT ON readings
              FOR EACH ROW EXECUTE FUNCTION test_fault();""")


def _messages(n: int, poison: set[int], value: int, base: float):
    return [(f"city/mobility/traffic_counter/tc-{i % 10}",
             {"ts": base + i, "values": {"flow": value if i in poison else i}}) for i in range(n)]


def _one_dead_letter(settings, db_url, mqtt_broker, messages, stored: int) -> str:
    """Run a real ingestor on ``messages``; exactly one is dead-lettered and ``stored`` rows are
    kept: returns that dead letter's reason."""
    svc = IngestService(settings.model_copy(update={"batch_size": 500, "batch_max_age_ms": 1000}))
    svc.start()
    try:
        assert svc.connected.wait(10)
        publish_all(mqtt_broker.port, messages)
        assert wait_for_count(db_url, 1, "SELECT count(*) FROM dead_letters", timeout=60) == 1
        assert wait_for_count(db_url, stored, stable_for=0.5) == stored
    finally:
        svc.stop()
    with psycopg.connect(db_url) as conn:
        (reason,) = conn.execute("SELECT reason FROM dead_letters").fetchone()
    return reason


def test_a_transient_error_is_retried_a_bounded_number_of_times_then_dead_lettered(
        settings, db_url, mqtt_broker):
    """A real 40P01 (deadlock_detected, transient in Telegraf's list) on every attempt for one
    message: retried CITYDASH_DB_RETRY_MAX times, then the batch is bisected, the neighbours are
    stored and that message alone is dead-lettered with a reason saying what happened."""
    _trigger(db_url, 777, "RAISE EXCEPTION 'simulated deadlock on value 777' "
                          "USING ERRCODE = '40P01';")
    reason = _one_dead_letter(settings.model_copy(update={"db_retry_max": 2}), db_url, mqtt_broker,
                              _messages(200, {123}, 777, time.time() - 600), stored=199)
    assert "after 2 retries" in reason and "CITYDASH_DB_RETRY_MAX" in reason
    assert "40P01" in reason and "simulated deadlock on value 777" in reason


def test_a_statement_timeout_is_permanent_and_isolated_at_once(settings, db_url, mqtt_broker):
    """57014 query_canceled (statement_timeout) is not retried (Telegraf excludes it): the slow
    message is isolated by bisection and dead-lettered; the others are stored."""
    _trigger(db_url, 555, "PERFORM pg_sleep(2);")
    dbname = db_url.rsplit("/", 1)[1]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"ALTER ROLE citydash_ingest IN DATABASE {dbname} SET statement_timeout = '500ms'")
    reason = _one_dead_letter(settings, db_url, mqtt_broker, _messages(100, {42}, 555, time.time() - 600),
                              stored=99)
    assert reason.startswith("database refused the message: 57014 QueryCanceled")


def _entries(settings, n: int, value: float | None = None) -> list[Entry]:
    decode = Decoder(settings)
    now = datetime.now(timezone.utc)
    out = []
    for i in range(n):
        payload = ('{"ts": %f, "values": {"flow": %s}}' % (time.time() - 60 + i, value or i)).encode()
        entry = Entry(i + 1, 1, 1, Message(f"city/mobility/traffic_counter/px-{i}", payload, now))
        decode(entry)
        out.append(entry)
    return out


def test_a_stuck_flush_is_logged(settings, db_url, caplog):
    """A flush that has not committed within CITYDASH_FLUSH_STUCK_WARN_S is a warning (Telegraf's
    "did not complete within its flush interval")."""
    _trigger(db_url, 999, "PERFORM pg_sleep(3);")
    caplog.set_level(logging.WARNING, logger="ingest.pipeline")
    acked: list[Entry] = []
    done = threading.Event()

    def ack(batch):
        acked.extend(batch)
        done.set()

    writer = BatchWriter(settings.role_url("ingest"))
    pipeline = Pipeline(writer, Decoder(settings), ack,
                        settings.model_copy(update={"flush_stuck_warn_s": 1.0,
                                                    "batch_max_age_ms": 50}))
    pipeline.start()
    try:
        pipeline.submit_many(_entries(settings, 1, value=999))
        assert done.wait(20)
    finally:
        pipeline.stop()
        writer.close()
    assert len(acked) == 1
    stuck = [r.getMessage() for r in caplog.records if "did not complete within" in r.getMessage()]
    assert stuck and "flush of 1 messages did not complete within 1 s" in stuck[0]


def _db_up() -> float | None:
    return REGISTRY.get_sample_value("citydash_ingest_db_up")


def test_db_up_follows_the_writers_connection(settings, db_url):
    down = BatchWriter(f"postgresql://citydash_ingest@127.0.0.1:{free_port()}/nowhere")
    try:
        down.ping()
    except psycopg.OperationalError:
        pass
    assert _db_up() == 0
    up = BatchWriter(settings.role_url("ingest"))
    try:
        up.write(_entries(settings, 2))
        assert _db_up() == 1
        with psycopg.connect(db_url, autocommit=True) as conn:  # the connection is cut
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE application_name = 'citydash-ingest' AND datname = current_database()")
        try:
            up.ping()
        except psycopg.OperationalError:
            pass
        assert _db_up() == 0
        up.ping()  # reconnects
        assert _db_up() == 1
    finally:
        up.close()


def test_db_up_on_the_metrics_endpoint(settings, db_url, mqtt_broker):
    port = free_port()
    svc = IngestService(settings.model_copy(update={"metrics_port": port}))
    svc.start()
    try:
        assert svc.connected.wait(10)
        publish_all(mqtt_broker.port, [("city/mobility/traffic_counter/m-1",
                                        {"ts": time.time() - 1, "values": {"flow": 1}})])
        assert wait_for_count(db_url, 1) == 1
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        svc.stop()
    assert "citydash_ingest_db_up 1.0" in body.splitlines()
    assert "citydash_ingest_mqtt_connected 1.0" in body.splitlines()
