"""citydash native JSON decoder (format documented in ingest/decoders/native.py)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ingest.decoders import FLAG_RECEIVE_TIME, DecodeContext, DecodeError, Message, native

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "payloads" / "native"
RECEIVED = datetime(2024, 5, 1, 6, 30, tzinfo=timezone.utc)
CTX = DecodeContext()


def decode(topic: str, payload: bytes | str | object):
    if isinstance(payload, str):
        payload = payload.encode()
    elif not isinstance(payload, bytes):
        payload = json.dumps(payload).encode()
    return native.decode(Message(topic, payload, RECEIVED), CTX)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_single_object_with_offset_is_converted_to_utc():
    out = decode("city/mobility/traffic_counter/tc-0042", fixture("traffic_counter.json"))
    assert {(r.metric, r.value) for r in out.readings} == {
        ("flow", 42.0), ("speed", 37.5), ("occupancy", 0.18)}
    for r in out.readings:
        assert r.sensor == "tc-0042"
        assert r.time == datetime(2024, 5, 1, 6, 15, tzinfo=timezone.utc)
        assert r.time.tzinfo is timezone.utc
        assert r.flags == 0
        assert type(r.value) is float
    [info] = out.sensors
    assert (info.external_id, info.kind, info.domain) == ("tc-0042", "traffic_counter", "mobility")
    assert out.vehicles == []


def test_epoch_seconds_and_booleans():
    out = decode("city/infrastructure/streetlight/sl-7", fixture("streetlight_booleans.json"))
    values = {r.metric: r.value for r in out.readings}
    assert values == {"on": 1.0, "fault": 0.0, "power_w": 61.5}
    assert out.readings[0].time == datetime(2024, 5, 1, 6, 15, tzinfo=timezone.utc)


def test_float_epoch_keeps_fraction():
    out = decode("city/mobility/parking/p1", {"ts": 1714544100.25, "values": {"free": 3}})
    assert out.readings[0].time == datetime(2024, 5, 1, 6, 15, 0, 250000, tzinfo=timezone.utc)


def test_array_of_objects():
    out = decode("city/infrastructure/waste_bin/wb-3", fixture("batch.json"))
    assert [(r.metric, r.value, r.time.minute) for r in out.readings] == [
        ("level", 0.41, 0), ("level", 0.43, 5), ("level", 0.47, 10), ("temperature", 11.5, 10)]
    assert out.readings[-1].time.microsecond == 250000
    assert len(out.sensors) == 1


def test_missing_ts_uses_receive_time_and_flags_it():
    out = decode("city/infrastructure/air_quality/aq-1", fixture("no_timestamp.json"))
    [r] = out.readings
    assert r.time == RECEIVED
    assert r.flags == FLAG_RECEIVE_TIME


def test_null_value_is_skipped_and_numeric_string_accepted():
    out = decode("city/mobility/traffic_counter/t", {"ts": 0, "values": {"a": None, "b": "12.5"}})
    assert [(r.metric, r.value) for r in out.readings] == [("b", 12.5)]


def test_vehicle_position():
    out = decode("city/transport/vehicle/bus-17", fixture("vehicle.json"))
    assert out.readings == [] and out.sensors == []
    [v] = out.vehicles
    assert v.vehicle == "bus-17"
    assert (v.lat, v.lon) == (60.1699, 24.9384)
    assert (v.route, v.trip) == ("550", "550-1-0600")
    assert (v.speed_kmh, v.bearing, v.delay_s, v.occupancy_pct) == (31.7, 271.0, 45.0, 62.0)
    assert v.time == datetime(2024, 5, 1, 6, 0, 3, tzinfo=timezone.utc)


def test_vehicle_array_with_only_required_fields():
    out = decode("city/transport/vehicle/tram-3", [{"lat": 60.2, "lon": 24.9}, {"lat": 60.21, "lon": 24.91, "route": 7}])
    assert [(v.lat, v.route, v.speed_kmh) for v in out.vehicles] == [(60.2, None, None), (60.21, "7", None)]
    assert out.vehicles[0].time == RECEIVED


@pytest.mark.parametrize("topic, payload, reason", [
    ("city/weather/rain/r1", {"values": {"mm": 1}}, "unknown domain 'weather'"),
    ("city/mobility/traffic_counter", {"values": {"x": 1}}, "does not match city/<domain>/<kind>/<sensor_id>"),
    ("city/mobility//s1", {"values": {"x": 1}}, "empty kind or sensor id"),
    ("city/mobility/traffic_counter/tc", b"", "payload is not valid JSON: Expecting value at line 1 col 1"),
    ("city/mobility/traffic_counter/tc", b"\xff\xfe\xfa", "not valid"),
    ("city/mobility/traffic_counter/tc", {"ts": "2024-05-01T08:00:00", "values": {"x": 1}}, "has no UTC offset"),
    ("city/mobility/traffic_counter/tc", {"ts": "yesterday", "values": {"x": 1}}, "'yesterday' is not an ISO 8601 date-time"),
    ("city/mobility/traffic_counter/tc", {"ts": 1714544100000, "values": {"x": 1}}, "milliseconds?"),
    ("city/mobility/traffic_counter/tc", {"ts": True, "values": {"x": 1}}, "is not epoch seconds"),
    ("city/mobility/traffic_counter/tc", {"ts": 0}, "object has no 'values'"),
    ("city/mobility/traffic_counter/tc", {"values": [1, 2]}, "'values' is an array, not an object"),
    ("city/mobility/traffic_counter/tc", {"values": {"speed": "abc"}}, "metric 'speed' value 'abc' is not a number"),
    ("city/mobility/traffic_counter/tc", {"values": {"speed": {"v": 1}}}, "metric 'speed' value an object is not a number"),
    ("city/mobility/traffic_counter/tc", [], "empty array"),
    ("city/mobility/traffic_counter/tc", [{"values": {"a": 1}}, 5], "array item 1 is 5, not an object"),
    ("city/mobility/traffic_counter/tc", "42", "expected an object or an array"),
    ("city/transport/vehicle/v1", {"lat": 60.1}, "needs 'lat' and 'lon'"),
    ("city/transport/vehicle/v1", {"lat": 60.1, "lon": "east"}, "lon value 'east' is not a number"),
    ("city/transport/vehicle/v1", {"lat": 60.1, "lon": 24.0, "route": ["a"]}, "route an array is not a string"),
])
def test_rejections_name_the_problem(topic, payload, reason):
    with pytest.raises(DecodeError) as err:
        decode(topic, payload)
    assert reason in err.value.reason


def test_nan_passes_decoding_but_is_a_float():
    # NaN is not rejected by the decoder; validation rejects it naming the metric.
    out = decode("city/mobility/traffic_counter/tc", b'{"values": {"speed": NaN}}')
    assert out.readings[0].value != out.readings[0].value
