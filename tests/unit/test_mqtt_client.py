"""The ingestor's paho client: BufferedClient (block reads served to paho's small reads, batched
PUBACKs) only with a paho version it was checked against, stock paho otherwise."""
from __future__ import annotations

import socket

import paho.mqtt.client as mqtt
import pytest

from ingest import mqtt_client
from ingest.mqtt_client import BufferedClient, make_client, puback_packets


def test_puback_packets_are_the_mqtt5_success_form():
    assert puback_packets([1, 258, 65535]) == (b"\x40\x02\x00\x01" b"\x40\x02\x01\x02"
                                              b"\x40\x02\xff\xff")
    assert puback_packets([]) == b""


def _publish_packet(mid: int, topic: str, payload: bytes) -> bytes:
    """An MQTT 5 QoS 1 PUBLISH (no properties), written by hand from the spec (§3.3)."""
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t + mid.to_bytes(2, "big") + b"\x00" + payload
    length, out = len(body), bytearray()
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes([0x32]) + bytes(out) + body


@pytest.fixture
def wired_client():
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                            manual_ack=True)
    client._sock = ours
    client._state = mqtt._ConnectionState.MQTT_CS_CONNECTED
    got = []
    client.on_message = lambda c, u, m: got.append((m.mid, m.topic, m.payload))
    yield client, theirs, got
    theirs.close()
    ours.close()


def test_one_read_delivers_every_buffered_packet(wired_client):
    client, broker, got = wired_client
    sent = [(i, f"city/mobility/traffic_counter/tc-{i}", b"x" * (i * 37 % 300)) for i in range(1, 501)]
    broker.sendall(b"".join(_publish_packet(*m) for m in sent))
    assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
    assert got == sent  # all of them, in order, without waiting for more socket data
    assert client.buffered() == 0


def test_a_packet_split_across_reads_is_reassembled(wired_client):
    client, broker, got = wired_client
    packet = _publish_packet(7, "city/transport/vehicle/bus-1", b"{" + b"9" * 5000 + b"}")
    broker.sendall(packet[:3])
    assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
    assert got == []
    broker.sendall(packet[3:])
    assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
    assert got == [(7, "city/transport/vehicle/bus-1", b"{" + b"9" * 5000 + b"}")]


def test_ack_many_writes_all_pubacks_in_one_packet(wired_client):
    client, broker, _ = wired_client
    client.ack_many([3, 4, 5])
    assert client.loop_write() == mqtt.MQTT_ERR_SUCCESS
    assert broker.recv(100) == puback_packets([3, 4, 5])


def test_make_client_uses_the_block_reader_with_the_checked_paho_version():
    assert mqtt_client.block_reader_unavailable() is None  # the pinned 2.2.0
    assert type(make_client("t")) is BufferedClient
    assert type(make_client("t", block_reader=False)) is mqtt.Client


def test_make_client_falls_back_to_stock_paho_with_another_version(caplog):
    why_not = mqtt_client.block_reader_unavailable("2.3.0")
    assert "paho-mqtt 2.3.0 is not a version" in why_not
    client = make_client("t", why_not=why_not)
    assert type(client) is mqtt.Client and not hasattr(client, "ack_many")
    assert "using stock paho" in caplog.text


def test_make_client_falls_back_when_an_internal_is_gone():
    # a paho client class that has every overridden method but one
    assert "lacks _packet_queue" in mqtt_client.block_reader_unavailable(
        client_class=type("NoQueue", (), {n: None for n in mqtt_client._INTERNALS if n != "_packet_queue"}))
