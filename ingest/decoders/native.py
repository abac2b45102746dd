"""citydash's own JSON format, the lean path (most of the city's traffic).

Topic ``city/<domain>/<kind>/<sensor_id>``, domain one of mobility, transport,
infrastructure.  Payload: one object or an array of objects::

    {"ts": "2024-05-01T08:00:00+02:00", "values": {"flow": 42, "speed": 37.5}}

``ts`` is ISO 8601 with an offset ('Z' or '+02:00') or Unix epoch seconds;
without ``ts`` the receive time is used and the readings carry
FLAG_RECEIVE_TIME.  An ISO time without offset is rejected (ambiguous).
Values are numbers; true/false are stored as 1/0 (streetlight ``on``,
``fault``), numeric strings are accepted, null means "no value" and is
skipped.

Vehicles publish on ``city/transport/vehicle/<vehicle_id>``::

    {"ts": ..., "lat": 60.17, "lon": 24.94, "route": "550", "trip": "t-1",
     "speed_kmh": 31.0, "bearing": 270, "delay_s": 45, "occupancy_pct": 60}

(lat/lon required, the rest optional; also an array of such objects).
"""
from __future__ import annotations

from datetime import datetime

from .base import (
    DOMAINS,
    FLAG_RECEIVE_TIME,
    DecodeContext,
    Decoded,
    DecodeError,
    Message,
    Reading,
    SensorInfo,
    VehiclePosition,
)
from .common import from_epoch, load_json, optional_float, optional_text, parse_iso, quote, to_float

TOPIC_PATTERN = "city/<domain>/<kind>/<sensor_id>"


def decode(message: Message, ctx: DecodeContext) -> Decoded:
    topic = message.topic
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "city":
        raise DecodeError(f"topic {quote(topic)} does not match {TOPIC_PATTERN}")
    _, domain, kind, sensor = parts
    if domain not in DOMAINS:
        raise DecodeError(
            f"unknown domain {quote(domain)} in topic {quote(topic)}; "
            f"expected one of {', '.join(DOMAINS)}"
        )
    if not kind or not sensor:
        raise DecodeError(f"topic {quote(topic)} has an empty kind or sensor id")

    doc = load_json(message.payload)
    if kind == "vehicle" and domain == "transport":
        return Decoded(vehicles=_vehicles(doc, sensor, message.received_at))

    readings: list[Reading] = []
    if type(doc) is dict:
        _readings(doc, sensor, message.received_at, readings, "")
    elif type(doc) is list:
        if not doc:
            raise DecodeError("payload is an empty array")
        for i, item in enumerate(doc):
            if type(item) is not dict:
                raise DecodeError(f"array item {i} is {quote(item)}, not an object")
            _readings(item, sensor, message.received_at, readings, f"item {i}: ")
    else:
        raise DecodeError(f"payload is {quote(doc)}; expected an object or an array of objects")
    return Decoded(readings=readings, sensors=[SensorInfo(sensor, kind, domain)])


def _time(obj: dict, received_at: datetime, where: str) -> tuple[datetime, int]:
    ts = obj.get("ts")
    if ts is None:
        return received_at, FLAG_RECEIVE_TIME
    if type(ts) is str:
        return parse_iso(ts, where + "ts"), 0
    return from_epoch(ts, where + "ts"), 0


def _readings(obj: dict, sensor: str, received_at: datetime, out: list, where: str) -> None:
    time, flags = _time(obj, received_at, where)
    values = obj.get("values")
    if type(values) is not dict:
        if values is None:
            raise DecodeError(f"{where}object has no 'values'")
        raise DecodeError(f"{where}'values' is {quote(values)}, not an object")
    append = out.append
    for metric, value in values.items():
        kind = type(value)
        if kind is float:
            append(Reading(sensor, metric, time, value, None, flags))
        elif value is None:
            continue
        else:
            append(Reading(sensor, metric, time, to_float(value, f"{where}metric {quote(metric)}"),
                           None, flags))


def _vehicles(doc: object, vehicle: str, received_at: datetime) -> list[VehiclePosition]:
    if type(doc) is dict:
        return [_vehicle(doc, vehicle, received_at, "")]
    if type(doc) is list:
        if not doc:
            raise DecodeError("payload is an empty array")
        out = []
        for i, item in enumerate(doc):
            if type(item) is not dict:
                raise DecodeError(f"array item {i} is {quote(item)}, not an object")
            out.append(_vehicle(item, vehicle, received_at, f"item {i}: "))
        return out
    raise DecodeError(f"payload is {quote(doc)}; expected an object or an array of objects")


def _vehicle(obj: dict, vehicle: str, received_at: datetime, where: str) -> VehiclePosition:
    time, _ = _time(obj, received_at, where)
    lat, lon = obj.get("lat"), obj.get("lon")
    if lat is None or lon is None:
        raise DecodeError(f"{where}vehicle position needs 'lat' and 'lon'")
    return VehiclePosition(
        time=time,
        vehicle=vehicle,
        lon=to_float(lon, where + "lon", allow_bool=False),
        lat=to_float(lat, where + "lat", allow_bool=False),
        route=optional_text(obj.get("route"), where + "route"),
        trip=optional_text(obj.get("trip"), where + "trip"),
        speed_kmh=optional_float(obj.get("speed_kmh"), where + "speed_kmh"),
        bearing=optional_float(obj.get("bearing"), where + "bearing"),
        delay_s=optional_float(obj.get("delay_s"), where + "delay_s"),
        occupancy_pct=optional_float(obj.get("occupancy_pct"), where + "occupancy_pct"),
    )




__all__ = ["decode", "TOPIC_PATTERN"]
