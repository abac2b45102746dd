"""Validation of decoded messages (ingest/validate.py)."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from ingest.decoders import Decoded, DecodeError, Reading, SensorInfo, VehiclePosition
from ingest.validate import ValidationContext, validate

NOW = datetime(2024, 5, 1, 7, 0, tzinfo=timezone.utc)
CTX = ValidationContext()


def reading(**changes) -> Reading:
    base = Reading("tc-1", "flow", NOW - timedelta(minutes=1), 12.0)
    return replace(base, **changes)


def vehicle(**changes) -> VehiclePosition:
    base = VehiclePosition(NOW, "22/1187", 24.94, 60.17, "1055", "t", 30.0, 90.0, 12.0, 40.0)
    return replace(base, **changes)


def check(decoded: Decoded, ctx: ValidationContext = CTX) -> Decoded:
    return validate(decoded, ctx, now=NOW)


def rejected(decoded: Decoded, ctx: ValidationContext = CTX) -> str:
    with pytest.raises(DecodeError) as err:
        check(decoded, ctx)
    return err.value.reason


def test_valid_message_is_returned_unchanged():
    decoded = Decoded(readings=[reading(), reading(metric="speed", value=41)],
                      vehicles=[vehicle()],
                      sensors=[SensorInfo("tc-1", "traffic_counter", "mobility", "Main St", 24.9, 60.1,
                                          {"laneId": 2.0, "tags": ["a", None, True]})])
    assert check(decoded) is decoded


def test_empty_message_is_rejected():
    assert rejected(Decoded(sensors=[SensorInfo("x")])) == "no numeric values"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_value_names_the_field(value):
    reason = rejected(Decoded(readings=[reading(), reading(metric="speed", value=value)]))
    assert "reading 1 (sensor 'tc-1', metric 'speed')" in reason and "not finite" in reason


def test_non_number_value():
    assert "is not a number" in rejected(Decoded(readings=[reading(value=True)]))


def test_future_limit_and_oldest():
    ok = NOW + timedelta(minutes=4, seconds=59)
    check(Decoded(readings=[reading(time=ok)]))
    reason = rejected(Decoded(readings=[reading(time=NOW + timedelta(minutes=6))]))
    assert "more than 300 s in the future" in reason
    ctx = ValidationContext(max_future=timedelta(hours=1), oldest=NOW - timedelta(days=7))
    check(Decoded(readings=[reading(time=NOW + timedelta(minutes=30))]), ctx)
    assert "older than the oldest accepted" in rejected(
        Decoded(readings=[reading(time=NOW - timedelta(days=8))]), ctx)


def test_future_is_measured_from_wall_clock_without_now():
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    with pytest.raises(DecodeError, match="future"):
        validate(Decoded(readings=[reading(time=future)]), CTX)


def test_naive_time_is_rejected():
    assert "has no timezone" in rejected(Decoded(readings=[reading(time=NOW.replace(tzinfo=None))]))


@pytest.mark.parametrize("metric", ["", "a b", "x" * 65, "temp/°C", "co2\x00"])
def test_bad_metric_names(metric):
    assert "metric name" in rejected(Decoded(readings=[reading(metric=metric)]))


@pytest.mark.parametrize("metric", ["LAeq_d", "pm2.5", "no-2", "x" * 64, "Flow"])
def test_good_metric_names_are_kept_as_sent(metric):
    out = check(Decoded(readings=[reading(metric=metric)]))
    assert out.readings[0].metric == metric


@pytest.mark.parametrize("sensor, fragment", [
    ("", "empty or not text"),
    ("s" * 201, "longer than 200"),
    ("bad\nid", "control characters"),
    ("bad\x00id", "NUL character"),
    ("\ud800", "lone surrogate"),
])
def test_bad_sensor_ids(sensor, fragment):
    assert fragment in rejected(Decoded(readings=[reading(sensor=sensor)]))


def test_sensor_id_of_200_characters_is_fine():
    check(Decoded(readings=[reading(sensor="s" * 200)]))


def test_declared_metrics_per_kind():
    ctx = ValidationContext(declared_metrics={"traffic_counter": {"flow", "speed"}, "noise": set()})
    sensors = [SensorInfo("tc-1", "traffic_counter", "mobility"), SensorInfo("n-1", "noise")]
    check(Decoded(readings=[reading(), reading(sensor="n-1", metric="anything")], sensors=sensors), ctx)
    reason = rejected(Decoded(readings=[reading(metric="temperature")], sensors=sensors), ctx)
    assert reason == ("sensor 'tc-1': metric 'temperature' is not declared for kind "
                      "'traffic_counter' (declared: flow, speed)")
    # unknown kind, or no kind at all: anything goes
    check(Decoded(readings=[reading(metric="x")], sensors=[SensorInfo("tc-1", "weather")]), ctx)
    check(Decoded(readings=[reading(metric="x")]), ctx)


def test_kind_from_registry_when_message_has_none():
    ctx = ValidationContext(declared_metrics={"soil": {"moisture"}}, sensor_kinds={"tc-1": "soil"})
    check(Decoded(readings=[reading(metric="moisture")]), ctx)
    assert "not declared for kind 'soil'" in rejected(Decoded(readings=[reading()]), ctx)


@pytest.mark.parametrize("changes, fragment", [
    ({"lat": 91.0}, "lat 91.0 is outside [-90, 90]"),
    ({"lon": -180.5}, "lon -180.5 is outside [-180, 180]"),
    ({"lat": float("nan")}, "lat nan is outside"),
    ({"speed_kmh": -1.0}, "speed_kmh -1.0 is outside"),
    ({"bearing": 361.0}, "bearing 361.0 is outside [0, 360]"),
    ({"occupancy_pct": 101.0}, "occupancy_pct 101.0 is outside [0, 100]"),
    ({"delay_s": float("inf")}, "delay_s inf is not a finite number"),
    ({"vehicle": ""}, "vehicle id"),
    ({"route": "r\x00"}, "NUL"),
    ({"time": NOW + timedelta(hours=1)}, "future"),
])
def test_vehicle_checks(changes, fragment):
    assert fragment in rejected(Decoded(vehicles=[vehicle(), vehicle(**changes)]))


@pytest.mark.parametrize("info, fragment", [
    (SensorInfo("s", lon=200.0, lat=10.0), "lon 200.0 is outside"),
    (SensorInfo("s", lon=20.0), "needs both lon and lat"),
    (SensorInfo("s", domain="weather"), "domain 'weather' is not one of"),
    (SensorInfo("s", name="x\x00"), "NUL"),
    (SensorInfo("s", attributes={"a": float("nan")}), "not finite"),
    (SensorInfo("s", attributes={"a": {"b": "\ud800"}}), "lone surrogate"),
    (SensorInfo("s", attributes={"a": object()}), "is not JSON"),
])
def test_sensor_info_checks(info, fragment):
    assert fragment in rejected(Decoded(readings=[reading()], sensors=[info]))


def test_unit_checks():
    check(Decoded(readings=[reading(unit="km/h")]))
    assert "longer than 32" in rejected(Decoded(readings=[reading(unit="u" * 33)]))


def test_item_limit():
    ctx = ValidationContext(max_items=2)
    assert "over the limit of 2" in rejected(Decoded(readings=[reading()] * 3), ctx)
