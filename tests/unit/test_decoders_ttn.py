"""The Things Stack v3 uplink decoder.

Fixtures follow The Things Stack "Data Formats" (uplink messages) and its MQTT
server topics (``v3/{application id}@{tenant id}/devices/{device id}/up``).
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ingest.decoders import FLAG_RECEIVE_TIME, DecodeContext, DecodeError, Message, ttn

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "payloads" / "ttn_v3"
RECEIVED = datetime(2024, 5, 1, 7, 8, 10, tzinfo=timezone.utc)
CTX = DecodeContext()
UP = "v3/citydash-sensors@ttn/devices/{}/up"


def decode(payload, device: str = "soil-probe-12", topic: str | None = None):
    if isinstance(payload, str):
        payload = (FIXTURES / payload).read_bytes()
    elif not isinstance(payload, bytes):
        payload = json.dumps(payload).encode()
    return ttn.decode(Message(topic or UP.format(device), payload, RECEIVED), CTX)


def test_flat_uplink():
    out = decode("uplink_flat.json")
    assert {(r.sensor, r.metric, r.value) for r in out.readings} == {
        ("soil-probe-12", "temperature", 14.25), ("soil-probe-12", "moisture", 31.0),
        ("soil-probe-12", "battery_low", 0.0)}
    # top-level received_at, 9 fractional digits, truncated to microseconds
    assert {r.time for r in out.readings} == {datetime(2024, 5, 1, 7, 8, 9, 123456, tzinfo=timezone.utc)}
    assert all(r.flags == 0 for r in out.readings)
    [info] = out.sensors
    assert (info.external_id, info.kind, info.domain) == ("soil-probe-12", None, None)
    assert (info.lon, info.lat) == (24.6559, 60.2055)
    assert info.attributes == {"dev_eui": "70B3D57ED0051234", "application_id": "citydash-sensors",
                               "location_source": "user"}


def test_nested_payload_is_flattened_and_frm_payload_location_preferred():
    out = decode("uplink_nested.json", device="tracker-3")
    assert {r.metric: r.value for r in out.readings} == {
        "gps_lat": 60.1755, "gps_lon": 24.9312, "gps_alt": 21.0,
        "battery_voltage": 3.61, "battery_charging": 1.0, "counts_0": 4.0, "counts_1": 7.0}
    info = out.sensors[0]
    assert (info.lon, info.lat, info.attributes["location_source"]) == (24.9312, 60.1755, "frm-payload")


def test_gateway_location_is_the_last_resort():
    out = decode("uplink_gateway_location.json", device="level-sensor-5")
    assert [(r.metric, r.value) for r in out.readings] == [("distance_mm", 1240.0)]
    assert out.readings[0].time == datetime(2024, 5, 1, 7, 8, 9, tzinfo=timezone.utc)
    info = out.sensors[0]
    assert (info.lon, info.lat, info.attributes["location_source"]) == (24.9458, 60.1921, "gateway")


def test_device_id_from_topic_when_payload_has_none_and_time_fallbacks():
    doc = json.loads((FIXTURES / "uplink_flat.json").read_bytes())
    del doc["end_device_ids"]
    del doc["received_at"]
    out = decode(doc, device="from-topic")
    assert {r.sensor for r in out.readings} == {"from-topic"}
    # uplink_message.received_at is next in line
    assert out.readings[0].time == datetime(2024, 5, 1, 7, 8, 9, 1234, tzinfo=timezone.utc)
    del doc["uplink_message"]["received_at"]
    out = decode(doc, device="from-topic")
    assert out.readings[0].time == RECEIVED and out.readings[0].flags == FLAG_RECEIVE_TIME


def test_string_fields_are_skipped():
    out = decode({"uplink_message": {"decoded_payload": {"state": "open", "level": 2}}})
    assert [(r.metric, r.value) for r in out.readings] == [("level", 2.0)]


@pytest.mark.parametrize("topic, payload, reason", [
    ("v3/citydash-sensors@ttn/devices/soil-probe-12/join", "join_accept.json", "not an uplink"),
    ("v3/app@ttn/devices/dev1/down/push", {"downlinks": []}, "not an uplink"),
    (None, "join_accept.json", "not an uplink: the message has no 'uplink_message'"),
    (None, "uplink_without_decoded_payload.json", "no decoded_payload"),
    (None, {"uplink_message": {"decoded_payload": [1, 2]}}, "decoded_payload is an array, not an object"),
    (None, [1], "not an object"),
    (None, {"received_at": "noon", "uplink_message": {"decoded_payload": {"a": 1}}}, "received_at 'noon'"),
    ("v3/app/things/dev/up", {"uplink_message": {"decoded_payload": {"a": 1}}}, "does not match"),
])
def test_rejections(topic, payload, reason):
    with pytest.raises(DecodeError) as err:
        decode(payload, topic=topic)
    assert reason in err.value.reason
