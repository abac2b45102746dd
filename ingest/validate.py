"""Checks every decoded message passes before it is stored.

:func:`validate` raises :class:`DecodeError` naming the first bad field.  One
bad value rejects the whole message: it goes to ``dead_letters`` whole, with a
reason an operator can act on, and nothing of it is half-stored.

Checked:

* something to store: at least one reading or vehicle position ("no numeric
  values"), and at most ``max_items``;
* numbers finite (no NaN/inf); lon in [-180, 180], lat in [-90, 90];
  vehicle speed >= 0, bearing in [0, 360], occupancy in [0, 100];
* times timezone-aware, not more than ``max_future`` after ``now`` (the
  receive time) and not before ``oldest``;
* metric names 1-64 characters of ``A-Z a-z 0-9 _ . -`` (kept as sent, case
  included); sensor and vehicle ids 1-200 characters without control
  characters; every text valid UTF-8 without NUL (PostgreSQL stores neither);
* declared metrics: when ``declared_metrics`` maps the sensor's kind to a
  non-empty set, only those metrics are accepted (undeclared or empty kinds
  accept any metric).  The kind comes from the message's SensorInfo, else
  from ``sensor_kinds`` (what the registry knows).
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Set
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ingest.decoders.base import DOMAINS, Decoded, DecodeError, SensorInfo
from ingest.decoders.common import quote

UTC = timezone.utc
METRIC_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
ID_MAX = 200
UNIT_MAX = 32
NAME_MAX = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class ValidationContext:
    """Limits of :func:`validate` (built once from settings and the registry)."""

    max_future: timedelta = timedelta(minutes=5)
    oldest: datetime | None = None
    declared_metrics: Mapping[str, Set[str]] | None = None
    sensor_kinds: Mapping[str, str] | None = None
    max_items: int = 10_000


def validate(decoded: Decoded, ctx: ValidationContext, *, now: datetime | None = None) -> Decoded:
    """Return ``decoded`` unchanged when it may be stored, else raise DecodeError.

    ``now`` is the reference for future times, normally the receive time;
    default: the current time."""
    readings, vehicles = decoded.readings, decoded.vehicles
    if not readings and not vehicles:
        raise DecodeError("no numeric values")
    if len(readings) + len(vehicles) > ctx.max_items:
        raise DecodeError(f"message has {len(readings) + len(vehicles)} values, over the "
                          f"limit of {ctx.max_items}")
    latest = (now or datetime.now(UTC)) + ctx.max_future

    kinds: dict[str, str] = {}
    for info in decoded.sensors:
        _check_sensor(info)
        if info.kind:
            kinds[info.external_id] = info.kind
    if readings:
        _check_readings(decoded, ctx, latest, kinds)
    for i, v in enumerate(vehicles):
        _check_vehicle(i, v, ctx, latest)
    return decoded


def _check_readings(decoded: Decoded, ctx: ValidationContext, latest: datetime,
                    kinds: dict[str, str]) -> None:
    oldest = ctx.oldest
    declared = ctx.declared_metrics
    registry = ctx.sensor_kinds
    metric_ok = METRIC_RE.fullmatch
    isfinite = math.isfinite
    last_sensor: object = None
    allowed: Set[str] | None = None
    kind: str | None = None
    for i, r in enumerate(decoded.readings):
        sensor = r.sensor
        if sensor is not last_sensor:
            _check_id(sensor, f"reading {i} sensor id")
            last_sensor = sensor
            kind = kinds.get(sensor)
            if kind is None and registry is not None:
                kind = registry.get(sensor)
            allowed = declared.get(kind) if declared and kind else None
        metric = r.metric
        if type(metric) is not str or metric_ok(metric) is None:
            raise DecodeError(f"reading {i} (sensor {quote(sensor)}): metric name "
                              f"{quote(metric)} is not 1-64 characters of A-Z a-z 0-9 _ . -")
        value = r.value
        if type(value) is not float and (type(value) is not int):
            raise DecodeError(f"reading {i} (sensor {quote(sensor)}, metric {quote(metric)}): "
                              f"value {quote(value)} is not a number")
        if not isfinite(value):
            raise DecodeError(f"reading {i} (sensor {quote(sensor)}, metric {quote(metric)}): "
                              f"value {value!r} is not finite")
        time = r.time
        if time.tzinfo is None or time > latest or (oldest is not None and time < oldest):
            _time_error(f"reading {i} (sensor {quote(sensor)}, metric {quote(metric)})",
                        time, latest, ctx)
        if allowed and metric not in allowed:
            raise DecodeError(f"sensor {quote(sensor)}: metric {quote(metric)} is not declared "
                              f"for kind {quote(kind)} (declared: {', '.join(sorted(allowed))})")
        if r.unit is not None:
            _check_text(r.unit, f"reading {i} unit", UNIT_MAX)


def _time_error(where: str, time: datetime, latest: datetime, ctx: ValidationContext) -> None:
    if time.tzinfo is None:
        raise DecodeError(f"{where}: time {time.isoformat()} has no timezone")
    if time > latest:
        raise DecodeError(f"{where}: time {time.isoformat()} is more than "
                          f"{ctx.max_future.total_seconds():g} s in the future "
                          f"(latest accepted {latest.isoformat()})")
    raise DecodeError(f"{where}: time {time.isoformat()} is older than the oldest accepted "
                      f"{ctx.oldest.isoformat() if ctx.oldest else ''}")


def _check_vehicle(i: int, v, ctx: ValidationContext, latest: datetime) -> None:
    where = f"vehicle position {i} ({quote(v.vehicle)})"
    _check_id(v.vehicle, f"vehicle position {i} vehicle id")
    _check_lonlat(v.lon, v.lat, where)
    time = v.time
    if time.tzinfo is None or time > latest or (ctx.oldest is not None and time < ctx.oldest):
        _time_error(where, time, latest, ctx)
    for field, low, high in (("speed_kmh", 0.0, math.inf), ("bearing", 0.0, 360.0),
                             ("delay_s", -math.inf, math.inf), ("occupancy_pct", 0.0, 100.0)):
        value = getattr(v, field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise DecodeError(f"{where}: {field} {quote(value)} is not a finite number")
        if not low <= value <= high:
            raise DecodeError(f"{where}: {field} {value!r} is outside [{low:g}, {high:g}]")
    for field in ("route", "trip"):
        value = getattr(v, field)
        if value is not None:
            _check_text(value, f"{where} {field}", ID_MAX)


def _check_sensor(info: SensorInfo) -> None:
    _check_id(info.external_id, "sensor id")
    where = f"sensor {quote(info.external_id)}"
    if info.kind is not None:
        _check_text(info.kind, f"{where} kind", 64)
    if info.domain is not None and info.domain not in DOMAINS:
        raise DecodeError(f"{where}: domain {quote(info.domain)} is not one of "
                          f"{', '.join(DOMAINS)}")
    if info.name is not None:
        _check_text(info.name, f"{where} name", NAME_MAX)
    if info.lon is not None or info.lat is not None:
        if info.lon is None or info.lat is None:
            raise DecodeError(f"{where}: position needs both lon and lat")
        _check_lonlat(info.lon, info.lat, where)
    _check_json(info.attributes, f"{where} attributes", 0)


def _check_lonlat(lon: object, lat: object, where: str) -> None:
    for name, value, limit in (("lon", lon, 180.0), ("lat", lat, 90.0)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DecodeError(f"{where}: {name} {quote(value)} is not a number")
        if not -limit <= value <= limit:  # also false for NaN
            raise DecodeError(f"{where}: {name} {value!r} is outside [-{limit:g}, {limit:g}]")


def _check_id(value: object, what: str) -> None:
    _check_text(value, what, ID_MAX)
    if _CONTROL.search(value):  # type: ignore[arg-type]
        raise DecodeError(f"{what} {quote(value)} contains control characters")


def _check_text(value: object, what: str, limit: int) -> None:
    if type(value) is not str or not value:
        raise DecodeError(f"{what} {quote(value)} is empty or not text")
    if len(value) > limit:
        raise DecodeError(f"{what} {quote(value)} is longer than {limit} characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise DecodeError(f"{what} {quote(value)} is not valid Unicode "
                              "(lone surrogate)") from None
    if "\x00" in value:
        raise DecodeError(f"{what} {quote(value)} contains a NUL character")


def _check_json(value: object, what: str, depth: int) -> None:
    """SensorInfo.attributes must be storable as PostgreSQL jsonb."""
    if depth > 16:
        raise DecodeError(f"{what} are nested too deeply")
    kind = type(value)
    if kind is dict:
        for key, item in value.items():  # type: ignore[union-attr]
            _check_text(key, f"{what} key", NAME_MAX)
            _check_json(item, what, depth + 1)
    elif kind is list:
        for item in value:  # type: ignore[union-attr]
            _check_json(item, what, depth + 1)
    elif kind is str:
        if value:
            _check_text(value, f"{what} value", 10_000)
    elif kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise DecodeError(f"{what} value {value!r} is not finite")
    elif value is not None and kind not in (int, bool):
        raise DecodeError(f"{what} value {quote(value)} is not JSON")
