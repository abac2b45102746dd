"""Health of the stack, as shown on the status page and /healthz."""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from datetime import datetime

import paho.mqtt.client as mqtt
import psycopg

from core.mqtt_url import parse_mqtt_url


@dataclass
class DatabaseStatus:
    ok: bool
    error: str | None = None
    timescale_version: str | None = None
    licence: str | None = None
    migration_version: int | None = None
    features: dict[str, bool] = field(default_factory=dict)
    sensors: int | None = None
    readings_recent: int | None = None
    newest_reading: datetime | None = None
    dead_letters_24h: int | None = None


def database_status(conn: psycopg.Connection) -> DatabaseStatus:
    row = conn.execute(
        """SELECT (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'),
                  current_setting('timescaledb.license', true),
                  (SELECT max(version) FROM schema_migrations),
                  (SELECT count(*) FROM sensors),
                  (SELECT count(*) FROM readings WHERE time > now() - interval '5 minutes'),
                  (SELECT max(time) FROM readings WHERE time > now() - interval '1 day'),
                  (SELECT count(*) FROM dead_letters WHERE received_at > now() - interval '1 day')
        """).fetchone()
    features = dict(conn.execute("SELECT name, available FROM timescale_features").fetchall())
    return DatabaseStatus(True, None, row[0], row[1], row[2], features, row[3], row[4], row[5],
                          row[6])


def broker_status(url: str, timeout: float = 2.0) -> tuple[bool, str | None]:
    """Open a real MQTT session (CONNECT/CONNACK) to the broker and close it."""
    try:
        address = parse_mqtt_url(url)
    except ValueError as exc:  # a misconfigured URL is a broker problem to show, not a broken page
        return False, str(exc)
    host, port = address.host, address.port
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                         client_id=f"citydash-status-{time.monotonic_ns()}")
    if address.username:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set()
    try:
        client.connect(host, port, keepalive=5)
        deadline = time.monotonic() + timeout
        while not client.is_connected() and time.monotonic() < deadline:
            client.loop(timeout=0.1)
        if not client.is_connected():
            return False, "no CONNACK from broker"
        client.disconnect()
        return True, None
    except (OSError, socket.timeout) as exc:
        return False, str(exc) or type(exc).__name__
