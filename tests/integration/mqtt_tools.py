"""Helpers for ingest tests: publishing, running ingestors, waiting for rows."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg

ROOT = Path(__file__).resolve().parents[2]


WINDOW = 1000  # messages published and not yet acknowledged, below Mosquitto's receive maximum


class _Acks:
    """PUBACKs counted from paho's public ``on_publish`` callback."""

    def __init__(self):
        self.count = 0

    def __call__(self, *args):
        self.count += 1


def publisher(port: int) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    # paho's in-flight limit off: with one set, paho walks every unacknowledged message on each
    # PUBACK and a large backlog stalls; publish_all keeps its own window (WINDOW) instead
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    client.on_publish = _Acks()
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def publish_all(port: int, messages, qos: int = 1, timeout: float = 120) -> int:
    """Publish (topic, payload) pairs with QoS 1 and wait until the broker has them all."""
    client = publisher(port)
    infos = []
    try:
        for topic, payload in messages:
            if not isinstance(payload, (bytes, str)):
                payload = json.dumps(payload)
            if qos:  # at most WINDOW unacknowledged (counted by on_publish)
                deadline = time.monotonic() + timeout
                while len(infos) - client.on_publish.count >= WINDOW:
                    assert time.monotonic() < deadline, "broker stopped acknowledging"
                    time.sleep(0.001)
            info = client.publish(topic, payload, qos=qos)
            assert info.rc == mqtt.MQTT_ERR_SUCCESS, mqtt.error_string(info.rc)
            infos.append(info)
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            assert info.is_published(), "broker did not take every message in time"
    finally:
        client.disconnect()
        client.loop_stop()
    return len(infos)


def native_messages(n: int, sensors: int = 100, start: float = None, prefix: str = "tc"):
    """n native messages, 2 metrics each, unique (sensor, time) per message."""
    start = start if start is not None else time.time() - 3600
    for i in range(n):
        sensor = f"{prefix}-{i % sensors}"
        ts = start + (i // sensors)
        yield (f"city/mobility/traffic_counter/{sensor}",
               {"ts": ts, "values": {"flow": float(i % 97), "speed": 30.0 + i % 20}})


def count(url: str, sql: str = "SELECT count(*) FROM readings") -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchone()[0]


def wait_for_count(url: str, expected: int, sql: str = "SELECT count(*) FROM readings",
                   timeout: float = 120, stable_for: float = 0.0) -> int:
    deadline = time.monotonic() + timeout
    got = -1
    while time.monotonic() < deadline:
        got = count(url, sql)
        if got >= expected:
            if stable_for:
                time.sleep(stable_for)
                got = count(url, sql)
            return got
        time.sleep(0.2)
    return got


def ingest_env(db_url: str, mqtt_url: str, client_id: str, **extra) -> dict:
    env = dict(os.environ)
    env.update({
        "CITYDASH_DATABASE_URL": db_url,
        "CITYDASH_MQTT_URL": mqtt_url,
        "CITYDASH_MQTT_CLIENT_ID": client_id,
        "CITYDASH_METRICS_PORT": "0",
        "CITYDASH_LOG_FORMAT": "text",
    })
    env.update({f"CITYDASH_{k.upper()}": str(v) for k, v in extra.items()})
    return env


class IngestProcess:
    """``python -m ingest run`` as a child process."""

    def __init__(self, env: dict, log_path: Path):
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> "IngestProcess":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "ingest", "run"], cwd=ROOT,
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def wait_until_ingesting(port: int, url: str, timeout: float = 30) -> None:
    """Publish one probe reading (always the same key) until it is stored: the ingestor
    is then connected and subscribed. Adds exactly one row to ``readings``."""
    probe = ("city/mobility/traffic_counter/probe",
             {"ts": int(time.time()) - 5, "values": {"flow": 1}})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publish_all(port, [probe])
        if wait_for_count(url, 1, "SELECT count(*) FROM readings_named WHERE sensor_id = 'probe'",
                          timeout=0.5) >= 1:
            return
    raise AssertionError("the ingestor did not store a probe message in time")
