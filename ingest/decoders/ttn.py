"""The Things Stack (LoRaWAN Network Server v3) uplinks over its MQTT server.

Topic ``v3/{application id}@{tenant id}/devices/{device id}/up``; join,
downlink and other event topics are rejected as "not an uplink".

* sensor: ``end_device_ids.device_id`` (else the topic's device id); kind and
  domain are unknown to the network (None: the registry may know them);
  SensorInfo.attributes carries ``dev_eui`` and ``application_id``.
* metrics: the numeric leaves of ``uplink_message.decoded_payload`` (the
  output of the payload formatter), nested names joined with '_'
  (``{"gps": {"lat": 1}}`` -> ``gps_lat``, list items by index), booleans as
  1/0; text is skipped.
* time: top-level ``received_at`` (application server, nanosecond RFC 3339),
  else ``uplink_message.received_at``, else the receive time (flagged).
* position: ``uplink_message.locations`` (``frm-payload`` first, then
  ``user``, then any other source), else the first gateway location in
  ``rx_metadata`` (only an approximation of the device's place; recorded as
  ``location_source`` = ``gateway``).
"""
from __future__ import annotations

from .base import (
    FLAG_RECEIVE_TIME,
    DecodeContext,
    Decoded,
    DecodeError,
    Message,
    Reading,
    SensorInfo,
)
from .common import load_json, parse_iso, quote

TOPIC_PATTERN = "v3/<application>@<tenant>/devices/<device>/up"
MAX_DEPTH = 8
_LOCATION_ORDER = ("frm-payload", "user")


def decode(message: Message, ctx: DecodeContext) -> Decoded:
    topic = message.topic
    parts = topic.split("/")
    if len(parts) < 5 or parts[0] != "v3" or parts[2] != "devices" or not parts[3]:
        raise DecodeError(f"topic {quote(topic)} does not match {TOPIC_PATTERN}")
    if len(parts) != 5 or parts[4] != "up":
        raise DecodeError(f"not an uplink: topic ends in {quote('/'.join(parts[4:]))}; "
                          "only .../up messages carry readings")

    doc = load_json(message.payload)
    if type(doc) is not dict:
        raise DecodeError(f"payload is {quote(doc)}, not an object")
    up = doc.get("uplink_message")
    if type(up) is not dict:
        raise DecodeError("not an uplink: the message has no 'uplink_message' object")
    payload = up.get("decoded_payload")
    if payload is None:
        raise DecodeError("uplink has no decoded_payload: give the device or application a "
                          "payload formatter in The Things Stack")
    if type(payload) is not dict:
        raise DecodeError(f"uplink decoded_payload is {quote(payload)}, not an object")

    ids = doc.get("end_device_ids")
    device = ids.get("device_id") if type(ids) is dict else None
    if type(device) is not str or not device:
        device = parts[3]

    if doc.get("received_at") is not None:
        time, flags = parse_iso(doc["received_at"], "received_at"), 0
    elif up.get("received_at") is not None:
        time, flags = parse_iso(up["received_at"], "uplink_message.received_at"), 0
    else:
        time, flags = message.received_at, FLAG_RECEIVE_TIME

    values: list[tuple[str, float]] = []
    _flatten(payload, "", values, 0)
    readings = [Reading(device, name, time, value, None, flags) for name, value in values]

    info = SensorInfo(device)
    if type(ids) is dict:
        if type(ids.get("dev_eui")) is str:
            info.attributes["dev_eui"] = ids["dev_eui"]
        app = ids.get("application_ids")
        if type(app) is dict and type(app.get("application_id")) is str:
            info.attributes["application_id"] = app["application_id"]
    place = _location(up)
    if place is not None:
        info.lon, info.lat, info.attributes["location_source"] = place
    return Decoded(readings=readings, sensors=[info])


def _flatten(value: object, prefix: str, out: list, depth: int) -> None:
    kind = type(value)
    if kind is dict or kind is list:
        if depth >= MAX_DEPTH:
            return
        items = value.items() if kind is dict else enumerate(value)  # type: ignore[union-attr]
        for key, item in items:
            _flatten(item, f"{prefix}_{key}" if prefix else str(key), out, depth + 1)
    elif kind is bool:
        out.append((prefix, 1.0 if value else 0.0))
    elif kind is float:
        out.append((prefix, value))
    elif kind is int:
        try:
            out.append((prefix, float(value)))  # type: ignore[arg-type]
        except OverflowError:
            raise DecodeError(f"decoded_payload field {quote(prefix)} is too large") from None


def _coords(place: object) -> tuple[float, float] | None:
    if type(place) is not dict:
        return None
    lat, lon = place.get("latitude"), place.get("longitude")
    if type(lat) not in (int, float) or type(lon) not in (int, float):
        return None
    try:
        return float(lon), float(lat)
    except OverflowError:
        return None


def _location(up: dict) -> tuple[float, float, str] | None:
    locations = up.get("locations")
    if type(locations) is dict:
        order = [k for k in _LOCATION_ORDER if k in locations]
        order += [k for k in locations if k not in _LOCATION_ORDER]
        for source in order:
            coords = _coords(locations[source])
            if coords is not None:
                return coords[0], coords[1], source
    rx = up.get("rx_metadata")
    if type(rx) is list:
        for gateway in rx:
            coords = _coords(gateway.get("location") if type(gateway) is dict else None)
            if coords is not None:
                return coords[0], coords[1], "gateway"
    return None
