"""SenML JSON decoder (RFC 8428, Sensor Measurement Lists).

The §5.1.1 and §5.1.2 examples of RFC 8428 are decoded and their resolved
records compared with the resolved forms the RFC prints (which use
"now" = 1.498780179e+09).
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ingest.decoders import FLAG_RECEIVE_TIME, DecodeContext, DecodeError, Message, senml

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "payloads" / "senml"
RFC_NOW = datetime.fromtimestamp(1.498780179e09, timezone.utc)
TOPIC = "senml/infrastructure/power_meter/meter-9"
CTX = DecodeContext()

# RFC 8428 §5.1.1 and §5.1.2, resolved form as printed in the RFC.
RFC_5_1_1_RESOLVED = [
    {"n": "urn:dev:ow:10e2073a01080063", "u": "Cel", "t": 1.498780179e09, "v": 23.1},
]
RFC_5_1_2_RESOLVED = [
    {"n": "urn:dev:ow:10e2073a01080063:voltage", "u": "V", "t": 1.498780179e09, "v": 120.1},
    {"n": "urn:dev:ow:10e2073a01080063:current", "u": "A", "t": 1.498780179e09, "v": 1.2},
]


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def decode(payload, topic: str = TOPIC, received: datetime = RFC_NOW):
    if not isinstance(payload, bytes):
        payload = json.dumps(payload).encode()
    return senml.decode(Message(topic, payload, received), CTX)


@pytest.mark.parametrize("name, expected", [
    ("rfc8428_5.1.1_single_datapoint.json", RFC_5_1_1_RESOLVED),
    ("rfc8428_5.1.2_multiple_datapoints.json", RFC_5_1_2_RESOLVED),
])
def test_rfc_examples_resolve_to_the_rfc_resolved_form(name, expected):
    resolved = senml.resolve(json.loads(load(name)), RFC_NOW)
    assert len(resolved) == len(expected)
    for got, want in zip(resolved, expected):
        assert got["n"] == want["n"] and got["u"] == want["u"] and got["v"] == want["v"]
        assert got["t"] == pytest.approx(want["t"], abs=1e-6)


def test_rfc_5_1_2_readings_split_name_into_sensor_and_metric():
    out = decode(load("rfc8428_5.1.2_multiple_datapoints.json"))
    assert [(r.sensor, r.metric, r.value, r.unit) for r in out.readings] == [
        ("urn:dev:ow:10e2073a01080063", "voltage", 120.1, "V"),
        ("urn:dev:ow:10e2073a01080063", "current", 1.2, "A"),
    ]
    # No time in the pack: "now", i.e. the receive time, flagged.
    assert all(r.time == RFC_NOW and r.flags == FLAG_RECEIVE_TIME for r in out.readings)
    [info] = out.sensors
    assert (info.external_id, info.kind, info.domain) == (
        "urn:dev:ow:10e2073a01080063", "power_meter", "infrastructure")


def test_rfc_5_1_1_bare_device_urn_is_the_sensor():
    [r] = decode(load("rfc8428_5.1.1_single_datapoint.json")).readings
    assert (r.sensor, r.metric, r.value, r.unit) == ("urn:dev:ow:10e2073a01080063", "value", 23.1, "Cel")


def test_base_fields_apply_to_later_records():
    out = decode(load("base_fields_pack.json"))
    got = [(r.sensor, r.metric, r.value, r.unit, r.time.timestamp(), r.flags) for r in out.readings]
    assert got == [
        ("cabinet-7", "phase1", 12.5, "A", 1714543200.0, 0),   # bv 10 + v 2.5
        ("cabinet-7", "phase2", 13.0, "A", 1714543260.0, 0),   # bt + t
        ("cabinet-7", "door_open", 1.0, "A", 1714543260.0, 0),  # vb true -> 1 (bv not added)
        ("cabinet-7", "phase3", 230.0, "V", 1714543320.0, 0),  # own unit overrides bu
    ]  # the 'vs' record (firmware) is skipped


def test_relative_times_are_before_the_receive_time_and_flagged():
    received = datetime(2024, 5, 1, 7, 0, tzinfo=timezone.utc)
    out = decode(load("relative_times.json"), topic="senml/infrastructure/air_quality/air-3",
                 received=received)
    assert [(r.time - received).total_seconds() for r in out.readings] == [-120, -60, 0]
    assert {r.sensor for r in out.readings} == {"air-3"}
    assert all(r.flags == FLAG_RECEIVE_TIME and r.unit == "ug/m3" for r in out.readings)


def test_name_without_separator_uses_topic_sensor():
    [r] = decode([{"n": "temperature", "v": 3, "t": 1.7e9}]).readings
    assert (r.sensor, r.metric) == ("meter-9", "temperature")


def test_split_on_last_slash_or_colon():
    assert senml.split_name("building/floor2/room7/co2", "t") == ("building/floor2/room7", "co2")
    assert senml.split_name("dev:42:/temp", "t") == ("dev:42", "temp")
    assert senml.split_name("urn:dev:mac:0024befffe804ff1_humidity", "t") == (
        "urn:dev:mac:0024befffe804ff1", "humidity")


def test_time_above_2_pow_28_is_absolute():
    [r] = decode([{"n": "x", "t": 2 ** 28 + 1, "v": 1}]).readings
    assert r.time == datetime.fromtimestamp(2 ** 28 + 1, timezone.utc) and r.flags == 0


@pytest.mark.parametrize("pack, reason", [
    ({"n": "a", "v": 1}, "must be a JSON array of records"),
    ([], "empty array"),
    ([{"n": "a", "v": 1}, 7], "SenML record 1 is 7, not an object"),
    ([{"v": 1}, {"n": "b", "v": 2}, {"v": 3}], "SenML record 0 has no name"),
    ([{"n": "b", "v": 2}, {"n": "c", "v": 3}, {"n": "d", "v": 4}, {"u": "V", "v": 5}], "SenML record 3 has no name"),
    ([{"n": "-bad", "v": 1}], "does not allow"),
    ([{"n": "sp ace", "v": 1}], "does not allow"),
    ([{"n": "a", "v": "12"}], "field 'v' is '12', not a number"),
    ([{"n": "a", "v": True}], "field 'v' is true, not a number"),
    ([{"n": "a", "vb": 1}], "field 'vb' is 1, not true/false"),
    ([{"n": "a", "v": 1, "vs": "x"}], "more than one value field"),
    ([{"n": "a", "v": 1, "foo_": 2}], "must-understand field 'foo_'"),
    ([{"n": "a", "vs": "on"}, {"n": "b", "vd": "AQI="}], "no numeric"),
    ([{"bn": "dev:", "v": 1}], "ends with a separator"),
    ([{"n": "a", "v": 1, "bver": "10"}], "'bver'"),
    ([{"n": "a", "v": 1, "t": 1e300}], "out of range"),
    ([{"n": "a", "v": 10 ** 400}], "too large"),
])
def test_rejections(pack, reason):
    with pytest.raises(DecodeError) as err:
        decode(pack)
    assert reason in err.value.reason


@pytest.mark.parametrize("topic", ["senml/weather/rain/r1", "senml/mobility/x", "senml/mobility//s"])
def test_bad_topics(topic):
    with pytest.raises(DecodeError, match="domain|does not match"):
        decode([{"n": "a", "v": 1}], topic=topic)


def test_sum_only_record_is_skipped_but_pack_with_values_decodes():
    out = decode([{"n": "energy", "s": 120, "u": "J"}, {"n": "power", "v": 5, "u": "W"}])
    assert [r.metric for r in out.readings] == ["power"]
