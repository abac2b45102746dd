"""The local stack keeps its data across stop and start."""
from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.migrate import migrate
from devtools.stack import LocalMosquitto, LocalPostgres, free_port


def test_postgres_restarts_with_its_data(tmp_path_factory):
    from tests.conftest import _tempdir

    root = _tempdir("citydash-test-restart-")
    server = LocalPostgres(root, free_port(), shared_buffers="128MB")
    try:
        server.start()
        migrate(server.url)
        with psycopg.connect(server.url) as conn:
            conn.execute("INSERT INTO metrics (name) VALUES ('kept')")
        server.stop()
        assert not server.running()
        server.start()
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT name FROM metrics").fetchall() == [("kept",)]
        assert migrate(server.url) == []
    finally:
        server.remove()


def _session_client(url_port: int, client_id: str) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", url_port, clean_start=False, properties=props)
    return client


def test_broker_restart_keeps_queued_messages(own_broker: LocalMosquitto):
    """QoS 1 messages queued for an offline persistent session survive a broker restart,
    beyond the default 1000-message queue limit."""
    port = own_broker.port
    sub = _session_client(port, "keeper")
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.loop_start()
    sub.subscribe("keep/#", qos=1)
    assert subscribed.wait(10)
    sub.disconnect()
    sub.loop_stop()

    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    infos = [pub.publish(f"keep/{i}", str(i), qos=1) for i in range(3000)]
    for info in infos:
        info.wait_for_publish(10)
    pub.disconnect()
    pub.loop_stop()

    own_broker.stop()
    own_broker.start()

    got: set[str] = set()
    done = threading.Event()

    def on_message(client, userdata, msg):
        got.add(msg.payload.decode())
        if len(got) == 3000:
            done.set()

    sub = _session_client(port, "keeper")
    sub.on_message = on_message
    sub.loop_start()
    done.wait(30)
    sub.disconnect()
    sub.loop_stop()
    assert got == {str(i) for i in range(3000)}
