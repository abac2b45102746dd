"""Paho callbacks behind a guard, and the watchdog of paho's network thread (real Mosquitto,
real TimescaleDB)."""
from __future__ import annotations

import logging
import time

import pytest

from ingest.service import IngestService
from tests.integration.mqtt_tools import publish_all, wait_for_count

SECRET = "payload-bytes-never-logged-7c1f"


class FragileService(IngestService):
    """A fault in the message callback: it raises for one topic (nothing else is changed)."""

    def _on_message(self, client, userdata, msg):
        if msg.topic.endswith("/poison"):
            raise RuntimeError("simulated bug in on_message")
        super()._on_message(client, userdata, msg)


def _reading(sensor: str, ts: float, flow: float = 1.0):
    return (f"city/mobility/traffic_counter/{sensor}", {"ts": ts, "values": {"flow": flow}})


def _wait(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_a_raising_callback_does_not_stop_receiving(settings, db_url, mqtt_broker, caplog):
    caplog.set_level(logging.ERROR, logger="ingest.service")
    svc = FragileService(settings)
    svc.start()
    try:
        assert svc.connected.wait(10)
        now = time.time()
        poison = ("city/mobility/traffic_counter/poison",
                  {"ts": now - 2, "values": {"flow": 1}, "note": SECRET})
        publish_all(mqtt_broker.port, [poison])
        assert _wait(lambda: svc.callback_errors == 1)
        publish_all(mqtt_broker.port, [_reading("good-1", now - 1, 42.0)])
        assert wait_for_count(db_url, 1, stable_for=0.5) == 1
        assert svc.loop_restarts == 0  # the guard kept paho's thread alive: nothing to restart
    finally:
        svc.stop()
    failures = [r for r in caplog.records if "could not handle a message" in r.getMessage()]
    assert len(failures) == 1
    text = failures[0].getMessage()
    assert "city/mobility/traffic_counter/poison" in text and "bytes" in text
    size = len(__import__("json").dumps(poison[1]))
    assert f"({size} bytes" in text
    assert SECRET not in caplog.text  # topic and size, never the payload


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_the_watchdog_restarts_a_network_thread_killed_by_an_unguarded_callback(
        settings, db_url, mqtt_broker):
    svc = IngestService(settings)
    svc.start()
    try:
        assert svc.connected.wait(10)

        def poisoned(client, userdata, msg):  # installed behind the guard's back
            raise RuntimeError("poisoned callback")

        svc.client.on_message = poisoned
        now = time.time()
        publish_all(mqtt_broker.port, [_reading("first", now - 3, 1.0)])  # kills paho's thread
        assert _wait(lambda: svc.loop_restarts == 1), "the watchdog did not restart the loop"
        assert svc.connected.wait(15)
        publish_all(mqtt_broker.port, [_reading("second", now - 2, 2.0)])
        # the message that killed the loop was never acked: the broker redelivers it on the
        # new connection, and it is stored once, like the next one
        assert wait_for_count(db_url, 2, stable_for=1.0) == 2
    finally:
        svc.stop()


def test_the_watchdog_restarts_a_loop_stopped_behind_its_back(settings, db_url, mqtt_broker):
    svc = IngestService(settings)
    svc.start()
    try:
        assert svc.connected.wait(10)
        svc.client.loop_stop()  # paho's network thread ends; nothing reads the socket any more
        assert _wait(lambda: svc.loop_restarts == 1), "the watchdog did not restart the loop"
        assert svc.connected.wait(15)
        publish_all(mqtt_broker.port, [_reading("after-restart", time.time() - 1)])
        assert wait_for_count(db_url, 1, stable_for=0.5) == 1
    finally:
        svc.stop()
    assert svc.loop_restarts == 1  # stop() itself is not mistaken for a dead loop
