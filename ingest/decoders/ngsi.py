"""FIWARE NGSI-v2 and NGSI-LD entities (Smart Data Models).

Accepted payloads (the form is detected from the JSON itself; the topic is
only routed, ``ngsi/#`` by default):

* one entity or an array of entities, keyValues or normalized, v2 or LD;
* an NGSI-v2 notification ``{"subscriptionId": ..., "data": [entities]}``;
* an NGSI-LD notification ``{"type": "Notification", "data": [entities]}``;
* the NGSI-LD GeoJSON representation (a ``Feature`` or ``FeatureCollection``
  whose ``properties`` hold the attributes).

Entity -> sensor: the entity id is the sensor's external id, except that a
trailing ISO 8601 timestamp or interval (``...-2016-03-15T11:00:00``,
``..._2016-12-28T11:00:00_2016-12-28T12:00:00``) is stripped, because some
observation entities put the observation time in their id.  The entity type
gives kind and domain (:data:`ENTITY_KINDS`; unknown types get a snake_case
kind and no domain).  ``name`` -> SensorInfo.name; ``location`` (GeoJSON,
bare or inside ``{"type": "geo:json"|"GeoProperty", "value": ...}``, or a v2
``geo:point`` "lat, lon" string) -> SensorInfo lon/lat; a non-Point geometry
is placed at the average of its vertices.

Attributes -> metrics: numbers (keyValues), ``{"type": "Number", "value": n}``
(v2 normalized, unit from ``metadata.unitCode``) and ``{"type": "Property",
"value": n}`` (LD, unit from ``unitCode``) become readings named after the
attribute; booleans become 1/0.  Text, structured values, relationships and
multi-instance attributes are skipped, except these status strings:

* ParkingSpot ``status``: occupied -> ``occupied`` 1, free -> 0 (closed,
  unknown: skipped);
* Streetlight ``powerState``: on/low -> ``on`` 1, off -> 0 (bootingUp skipped);
* Streetlight ``status``: ok -> ``fault`` 0, defectiveLamp/columnIssue/
  brokenLantern -> 1.

Numeric attributes that describe the installation rather than measure
(:data:`STATIC_ATTRIBUTES`, e.g. ``laneId``, ``lanternHeight``) go to
SensorInfo.attributes instead.

Time of a reading: the attribute's own time (LD ``observedAt``, v2
``metadata.timestamp`` / ``metadata.TimeInstant``), else the entity's
observation time: the end of the observed period, i.e. ``dateObservedTo`` or
``dateObserved`` (an interval "start/end" -> end), else
``observationDateTime``, ``TimeInstant``, ``dateModified`` or ``modifiedAt``,
else the receive time (flagged).  NGSI times without a UTC offset are read as
UTC, as the FIWARE context brokers do.

Vehicle entities with a location become vehicle positions (``speed`` km/h ->
speed_kmh, ``heading`` else ``bearing`` -> bearing; -1 "unknown" -> None)
instead of readings.
"""
from __future__ import annotations

import math
import re
from datetime import datetime

from .base import (
    FLAG_RECEIVE_TIME,
    DecodeContext,
    Decoded,
    DecodeError,
    Message,
    Reading,
    SensorInfo,
    VehiclePosition,
)
from .common import load_json, parse_iso, quote, to_float

ENTITY_KINDS: dict[str, tuple[str, str]] = {
    "TrafficFlowObserved": ("traffic_counter", "mobility"),
    "ParkingSpot": ("parking", "mobility"),
    "OnStreetParking": ("parking", "mobility"),
    "OffStreetParking": ("parking", "mobility"),
    "BikeHireDockingStation": ("bike_dock", "mobility"),
    "Vehicle": ("vehicle", "transport"),
    "AirQualityObserved": ("air_quality", "infrastructure"),
    "NoiseLevelObserved": ("noise", "infrastructure"),
    "WaterQualityObserved": ("water_quality", "infrastructure"),
    "Streetlight": ("streetlight", "infrastructure"),
    "WasteContainer": ("waste_bin", "infrastructure"),
}

STATUS_METRICS: dict[tuple[str, str], tuple[str, dict[str, float]]] = {
    ("ParkingSpot", "status"): ("occupied", {"occupied": 1.0, "free": 0.0}),
    ("Streetlight", "powerState"): ("on", {"on": 1.0, "low": 1.0, "off": 0.0}),
    ("Streetlight", "status"): (
        "fault", {"ok": 0.0, "defectiveLamp": 1.0, "columnIssue": 1.0, "brokenLantern": 1.0}),
}

STATIC_ATTRIBUTES = frozenset({
    "laneId", "reversedLane", "lanternHeight", "powerRating", "streetPoleNum",
    "feederPillarNum", "outOfServiceSlotNumber",
})

TIME_ATTRIBUTES = ("dateObservedTo", "dateObserved", "observationDateTime", "TimeInstant",
                   "dateModified", "modifiedAt")
NOT_METRICS = frozenset({
    "id", "type", "location", "name", "dateObservedFrom", "dateCreated", "createdAt",
    "deletedAt", "scope", "observedAt", "notifiedAt", "@context",
    *TIME_ATTRIBUTES,
})

_SKIP = object()

_TS = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"
_ID_TIME_SUFFIX = re.compile(rf"[-_:.]{_TS}(?:[_/]{_TS})?$")


def decode(message: Message, ctx: DecodeContext) -> Decoded:
    doc = load_json(message.payload)
    entities = _entities(doc)
    out = Decoded()
    seen: dict[str, SensorInfo] = {}
    for index, entity in enumerate(entities):
        _entity(entity, index, message.received_at, out, seen)
    out.sensors = list(seen.values())
    return out


# --- payload forms -----------------------------------------------------------

def _entities(doc: object) -> list[dict]:
    if type(doc) is list:
        if not doc:
            raise DecodeError("NGSI payload is an empty array")
        items = doc
    elif type(doc) is dict:
        if "data" in doc and ("subscriptionId" in doc or doc.get("type") == "Notification"):
            items = doc["data"]
            if type(items) is not list:
                raise DecodeError(f"NGSI notification 'data' is {quote(items)}, not an array")
            if not items:
                raise DecodeError("NGSI notification carries no entities")
        elif doc.get("type") == "FeatureCollection":
            items = doc.get("features")
            if type(items) is not list or not items:
                raise DecodeError("GeoJSON FeatureCollection has no 'features' array")
        else:
            items = [doc]
    else:
        raise DecodeError(f"NGSI payload is {quote(doc)}; expected an entity, an array of "
                          "entities or a notification")
    entities = []
    for i, item in enumerate(items):
        if type(item) is not dict:
            raise DecodeError(f"NGSI entity {i} is {quote(item)}, not an object")
        if item.get("type") == "Feature":
            item = _feature_entity(item, i)
        entities.append(item)
    return entities


def _feature_entity(feature: dict, index: int) -> dict:
    props = feature.get("properties")
    if type(props) is not dict:
        raise DecodeError(f"NGSI entity {index} is a GeoJSON Feature without 'properties'")
    entity = dict(props)
    entity["id"] = feature.get("id")
    if "location" not in entity and feature.get("geometry") is not None:
        entity["location"] = feature["geometry"]
    return entity


# --- one entity ----------------------------------------------------------------

def _entity(entity: dict, index: int, received_at: datetime, out: Decoded,
            seen: dict[str, SensorInfo]) -> None:
    entity_id, etype = entity.get("id"), entity.get("type")
    if type(entity_id) is not str or not entity_id:
        raise DecodeError(f"NGSI entity {index} has no 'id' string")
    if type(etype) is not str or not etype:
        raise DecodeError(f"NGSI entity {quote(entity_id)} has no 'type' string")
    etype = compact(etype)
    where = f"entity {quote(entity_id)}"
    kind, domain = ENTITY_KINDS.get(etype) or (snake_case(etype), None)
    sensor = sensor_id(entity_id)
    entity_time, flags = _entity_time(entity, where, received_at)
    location = _location(entity.get("location"), where) if "location" in entity else None

    if etype == "Vehicle":
        if location is not None:
            out.vehicles.append(_vehicle(entity, sensor, location, entity_time, where))
        return

    info = seen.get(sensor)
    if info is None:
        info = seen[sensor] = SensorInfo(sensor, kind, domain)
    if location is not None:
        info.lon, info.lat = location
    name = _unwrap(entity.get("name"))[0]
    if type(name) is str and name:
        info.name = name

    for key, attr in entity.items():
        if key in NOT_METRICS or key[:1] == "@":
            continue
        value, unit, observed = _unwrap(attr)
        if value is _SKIP or value is None:
            continue
        metric = compact(key)
        kv = type(value)
        if kv is str:
            mapped = STATUS_METRICS.get((etype, metric))
            if mapped is None or value not in mapped[1]:
                continue
            metric, number = mapped[0], mapped[1][value]
        elif kv is int or kv is float or kv is bool:
            number = to_float(value, f"{where} attribute {quote(key)}")
        else:
            continue
        if metric in STATIC_ATTRIBUTES:
            info.attributes[metric] = number
            continue
        if observed is not None:
            time, flag = parse_iso(observed, f"{where} attribute {quote(key)} observedAt",
                                   naive_utc=True), 0
        else:
            time, flag = entity_time, flags
        out.readings.append(Reading(sensor, metric, time, number,
                                    unit if type(unit) is str else None, flag))


def _vehicle(entity: dict, vehicle: str, location: tuple[float, float], time: datetime,
             where: str) -> VehiclePosition:
    observed = _unwrap(entity.get("location"))[2]
    if observed is not None:
        time = parse_iso(observed, f"{where} location observedAt", naive_utc=True)
    speed = _optional_number(entity.get("speed"), f"{where} speed")
    heading = _optional_number(entity.get("heading"), f"{where} heading")
    if heading is None or heading < 0:
        heading = _optional_number(entity.get("bearing"), f"{where} bearing")
    return VehiclePosition(
        time=time, vehicle=vehicle, lon=location[0], lat=location[1],
        speed_kmh=speed if speed is not None and speed >= 0 else None,
        bearing=heading if heading is not None and heading >= 0 else None,
    )


def _optional_number(attr: object, what: str) -> float | None:
    value = _unwrap(attr)[0]
    if value is None or value is _SKIP:
        return None
    return to_float(value, what, allow_bool=False)


# --- attribute forms -----------------------------------------------------------

def _unwrap(attr: object) -> tuple[object, object, object]:
    """(value, unit, own observation time) of a keyValues/normalized attribute."""
    if type(attr) is not dict:
        return attr, None, None
    if "value" in attr:
        if attr.get("type") == "Relationship":
            return _SKIP, None, None
        value = attr["value"]
        if type(value) is dict and "@value" in value:  # LD typed literal
            value = value["@value"]
        unit = attr.get("unitCode")
        observed = attr.get("observedAt")
        meta = attr.get("metadata")
        if type(meta) is dict:
            if unit is None:
                unit = _meta_value(meta, "unitCode")
            if observed is None:
                observed = _meta_value(meta, "timestamp") or _meta_value(meta, "TimeInstant")
        return value, unit, observed
    if "@value" in attr:
        return attr["@value"], None, None
    return _SKIP, None, None  # a structured keyValues value, or a relationship


def _meta_value(meta: dict, key: str) -> object:
    item = meta.get(key)
    return item.get("value") if type(item) is dict else None


def _entity_time(entity: dict, where: str, received_at: datetime) -> tuple[datetime, int]:
    for key in TIME_ATTRIBUTES:
        if key not in entity:
            continue
        raw = _unwrap(entity[key])[0]
        if raw is None or raw is _SKIP or raw == "":
            continue
        if key == "dateObserved" and type(raw) is str and "/" in raw:
            start, _, end = raw.partition("/")
            raw = start if end[:1] in ("P", "p", "") else end  # "start/PT5M": use start
        return parse_iso(raw, f"{where} {key}", naive_utc=True), 0
    return received_at, FLAG_RECEIVE_TIME


def _location(attr: object, where: str) -> tuple[float, float] | None:
    """(lon, lat) of a location attribute, or None when it is null."""
    kind = attr.get("type") if type(attr) is dict else None
    if kind in ("geo:json", "GeoProperty", "geo:point") and "value" in attr:
        geometry = attr["value"]
        if kind == "geo:point":
            return _geo_point(geometry, where)
    else:
        geometry = attr
    if geometry is None:
        return None
    if type(geometry) is not dict or "coordinates" not in geometry:
        raise DecodeError(f"{where} location is {quote(geometry)}, not a GeoJSON geometry")
    coords = geometry["coordinates"]
    if geometry.get("type") == "Point":
        return _position(coords, where)
    points: list[tuple[float, float]] = []
    _collect(coords, where, points, 0)
    if not points:
        raise DecodeError(f"{where} location has no coordinates")
    return (math.fsum(p[0] for p in points) / len(points),
            math.fsum(p[1] for p in points) / len(points))


def _geo_point(value: object, where: str) -> tuple[float, float]:
    if type(value) is str and value.count(",") == 1:
        lat, lon = value.split(",")
        return (to_float(lon, f"{where} location longitude", allow_bool=False),
                to_float(lat, f"{where} location latitude", allow_bool=False))
    raise DecodeError(f"{where} geo:point location {quote(value)} is not 'lat, lon'")


def _position(coords: object, where: str) -> tuple[float, float]:
    if type(coords) is not list or len(coords) < 2:
        raise DecodeError(f"{where} location position {quote(coords)} is not [lon, lat]")
    return (to_float(coords[0], f"{where} location longitude", allow_bool=False, allow_str=False),
            to_float(coords[1], f"{where} location latitude", allow_bool=False, allow_str=False))


def _collect(coords: object, where: str, points: list, depth: int) -> None:
    if type(coords) is not list or depth > 4:
        raise DecodeError(f"{where} location coordinates are not GeoJSON positions")
    if coords and type(coords[0]) is not list:
        points.append(_position(coords, where))
        return
    for item in coords:
        _collect(item, where, points, depth + 1)


# --- names ---------------------------------------------------------------------

def sensor_id(entity_id: str) -> str:
    """Entity id without a trailing observation timestamp (see module doc)."""
    stripped = _ID_TIME_SUFFIX.sub("", entity_id)
    return stripped or entity_id


def compact(name: str) -> str:
    """Short name of an expanded NGSI-LD term (``https://.../data-models#temperature``)."""
    if "/" in name or "#" in name:
        return re.split(r"[/#]", name)[-1] or name
    return name


def snake_case(name: str) -> str:
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name))
    return (re.sub(r"[^a-z0-9_]+", "_", words.lower()).strip("_") or "entity")[:64]
