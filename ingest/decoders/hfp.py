"""HSL High-frequency positioning (HFP v2) vehicle positions.

Topic ``/hfp/v2/journey/<temporal_type>/vp/<transport_mode>/<operator_id>/
<vehicle_number>/<route_id>/<direction_id>/<headsign>/<start_time>/
<next_stop>/<geohash_level>/<geohash>/...``; payload ``{"VP": {...}}``.  Other
event types (arr, dep, doo, ...) are rejected: only ``vp`` is decoded.

* vehicle: ``"<oper>/<veh>"`` with leading zeros dropped (payload ``oper``
  12, ``veh`` 1306 and topic ``0012/01306`` both give ``12/1306``);
* route: ``route`` (else the topic's route_id); trip:
  ``"<oday>/<start>/<route>/<dir>"`` when all four are known (an HSL journey
  is identified by operating day, start time, route and direction);
* time: ``tst`` (UTC, with or without milliseconds), else ``tsi`` (epoch
  seconds), else the receive time;
* ``spd`` m/s -> speed_kmh; ``hdg`` -> bearing; ``occu`` (0..100) ->
  occupancy_pct; ``dl`` is the negated delay ("negative values indicate
  lagging behind the schedule"), so delay_s = -dl and a late vehicle has
  delay_s > 0.

Quirks tolerated: numbers sent as strings, missing milliseconds, and swapped
coordinates: when the context's city bbox is known and (lat, long) falls
outside it while (long, lat) falls inside, the two are swapped.  Null
``lat``/``long`` (no GPS fix) -> DecodeError "no position".
"""
from __future__ import annotations

from .base import DecodeContext, Decoded, DecodeError, Message, VehiclePosition
from .common import from_epoch, load_json, optional_float, optional_text, parse_iso, quote, to_float

TOPIC_PATTERN = ("/hfp/v2/journey/<temporal_type>/vp/<transport_mode>/<operator_id>/"
                 "<vehicle_number>/<route_id>/<direction_id>/...")
MS_TO_KMH = 3.6


def decode(message: Message, ctx: DecodeContext) -> Decoded:
    topic = message.topic
    parts = topic.split("/")
    if len(parts) < 9 or parts[0] != "" or parts[1] != "hfp" or parts[2] != "v2":
        raise DecodeError(f"topic {quote(topic)} does not match {TOPIC_PATTERN}")
    if parts[5] != "vp":
        raise DecodeError(f"HFP event {quote(parts[5])} is not a vehicle position (vp)")

    doc = load_json(message.payload)
    if type(doc) is not dict:
        raise DecodeError(f"payload is {quote(doc)}, not an object")
    vp = doc.get("VP")
    if type(vp) is not dict:
        if "VP" in doc:
            raise DecodeError(f"HFP 'VP' is {quote(vp)}, not an object")
        events = ", ".join(quote(k) for k in list(doc)[:3]) or "nothing"
        raise DecodeError(f"HFP payload has {events} instead of a 'VP' vehicle position")

    oper = _ident(vp.get("oper"), "oper") or _ident(parts[7], "operator_id")
    veh = _ident(vp.get("veh"), "veh") or _ident(parts[8], "vehicle_number")
    if not oper or not veh:
        raise DecodeError("HFP position names no vehicle (oper/veh missing)")

    lat, lon = vp.get("lat"), vp.get("long")
    if lat is None or lon is None or lat == "" or lon == "":
        raise DecodeError("HFP position has no position: lat/long are null (no GPS fix)")
    lat = to_float(lat, "VP lat", allow_bool=False)
    lon = to_float(lon, "VP long", allow_bool=False)
    if ctx.bbox is not None and not _inside(lon, lat, ctx.bbox) and _inside(lat, lon, ctx.bbox):
        lat, lon = lon, lat

    if vp.get("tst") not in (None, ""):
        time = parse_iso(vp["tst"], "VP tst")
    elif vp.get("tsi") not in (None, ""):
        tsi = vp["tsi"]
        time = from_epoch(to_float(tsi, "VP tsi", allow_bool=False) if type(tsi) is str else tsi,
                          "VP tsi")
    else:
        time = message.received_at

    route = optional_text(vp.get("route"), "HFP route") or _level(parts, 9)
    direction = optional_text(vp.get("dir"), "HFP dir") or _level(parts, 10)
    oday = optional_text(vp.get("oday"), "HFP oday")
    start = optional_text(vp.get("start"), "HFP start")
    trip = f"{oday}/{start}/{route}/{direction}" if oday and start and route and direction else None

    speed = optional_float(vp.get("spd"), "VP spd")
    delay = optional_float(vp.get("dl"), "VP dl")
    return Decoded(vehicles=[VehiclePosition(
        time=time,
        vehicle=f"{oper}/{veh}",
        lon=lon,
        lat=lat,
        route=route,
        trip=trip,
        speed_kmh=None if speed is None else speed * MS_TO_KMH,
        bearing=optional_float(vp.get("hdg"), "VP hdg"),
        delay_s=None if delay is None else (-delay or 0.0),
        occupancy_pct=optional_float(vp.get("occu"), "VP occu"),
    )])


def _level(parts: list[str], index: int) -> str | None:
    """A topic level, or None when missing or empty."""
    return parts[index] if len(parts) > index and parts[index] else None


def _inside(lon: float, lat: float, bbox: tuple[float, float, float, float]) -> bool:
    return bbox[0] <= lon <= bbox[2] and bbox[1] <= lat <= bbox[3]


def _ident(value: object, what: str) -> str | None:
    """Operator/vehicle number as text without leading zeros."""
    if value is None or value == "":
        return None
    if type(value) is int:
        return str(value)
    if type(value) is str:
        return str(int(value)) if value.isascii() and value.isdigit() and len(value) < 20 else value
    raise DecodeError(f"HFP {what} {quote(value)} is not a number or text")


