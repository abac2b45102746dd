"""SenML JSON (RFC 8428) packs.

Topic ``senml/<domain>/<kind>/<sensor_id>``: domain and kind describe the
sensors of the pack (SensorInfo); the last level is the sensor id for records
whose name carries none.

Resolution follows RFC 8428 §4.6: base name, base time, base unit and base
value apply to the record that carries them and every later record until
changed; ``bn + n`` is the name, ``bt + t`` the time, ``bv + v`` the value,
``u`` or else ``bu`` the unit.  A resolved time of at most 2**28 seconds is
relative to "now" (§4.5.3), taken as the message's receive time; such readings
carry FLAG_RECEIVE_TIME because their absolute time comes from the receiver.

Stored: numeric ``v`` and boolean ``vb`` (as 1/0).  Records with only ``vs``,
``vd`` or a sum ``s`` are skipped (sums and ``bs`` are not stored); a pack
without any stored value is rejected.  Fields whose label ends in '_' are
"must understand" (§4.4) and, not being understood, reject the pack.

Name -> sensor and metric: split the resolved name on its LAST ':' or '/';
the left part (trailing separators removed) is the sensor's external id, the
right part the metric ("urn:dev:ow:10e2073a01080063:voltage" -> sensor
"urn:dev:ow:10e2073a01080063", metric "voltage").  A name without a separator
is a metric of the topic's sensor.  A bare RFC 9039 device URN
("urn:dev:ow:10e2073a01080063", as in RFC 8428 §5.1.1) is not split: it is the
sensor, its ``_component`` suffix (if any) the metric, else the metric is
"value".
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Iterator

from .base import (
    FLAG_RECEIVE_TIME,
    DecodeContext,
    Decoded,
    DecodeError,
    Message,
    Reading,
    SensorInfo,
)
from .common import check_domain, from_epoch, load_json, quote, shift

TOPIC_PATTERN = "senml/<domain>/<kind>/<sensor_id>"

# RFC 8428 §4.5.1
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9:./_-]*")
# RFC 9039 device URN with optional "_component" parts
DEVICE_URN_RE = re.compile(r"(urn:dev:[A-Za-z0-9-]+:[^:/_]+)((?:_[^:/_]+)*)")
RELATIVE_LIMIT = 2 ** 28
BARE_URN_METRIC = "value"

_VALUE_FIELDS = ("v", "vs", "vb", "vd")


def decode(message: Message, ctx: DecodeContext) -> Decoded:
    topic = message.topic
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "senml" or not parts[2] or not parts[3]:
        raise DecodeError(f"topic {quote(topic)} does not match {TOPIC_PATTERN}")
    domain = check_domain(parts[1], topic)
    kind, topic_sensor = parts[2], parts[3]

    pack = load_json(message.payload)
    readings: list[Reading] = []
    sensors: dict[str, SensorInfo] = {}
    received_at = message.received_at
    for i, rec, offset in _resolve(pack, received_at):
        if "v" in rec:
            value = rec["v"]
        elif "vb" in rec:
            value = 1.0 if rec["vb"] else 0.0
        else:
            continue  # string/data values and sums are not stored
        sensor, metric = split_name(rec["n"], topic_sensor, i)
        if offset is not None:
            time = shift(received_at, offset, f"SenML record {i} time")
        else:
            time = from_epoch(rec["t"], f"SenML record {i} time")
        readings.append(Reading(sensor, metric, time, value, rec.get("u"),
                                0 if offset is None else FLAG_RECEIVE_TIME))
        if sensor not in sensors:
            sensors[sensor] = SensorInfo(sensor, kind, domain)
    if not readings:
        raise DecodeError("SenML pack has no numeric (v) or boolean (vb) value")
    return Decoded(readings=readings, sensors=list(sensors.values()))


def resolve(pack: object, now: datetime) -> list[dict]:
    """The RFC 8428 §4.6 resolved form of a pack (absolute ``t`` in seconds).

    Records without any value or sum are left out."""
    return [rec for _, rec, _ in _resolve(pack, now)]


def split_name(name: str, topic_sensor: str, index: int = 0) -> tuple[str, str]:
    """Sensor external id and metric of a resolved SenML name (see module doc)."""
    urn = DEVICE_URN_RE.fullmatch(name)
    if urn:
        return urn.group(1), urn.group(2)[1:] or BARE_URN_METRIC
    cut = max(name.rfind(":"), name.rfind("/"))
    if cut < 0:
        return topic_sensor, name
    metric = name[cut + 1:]
    if not metric:
        raise DecodeError(f"SenML record {index} name {quote(name)} ends with a separator; "
                          "it names no measurement")
    sensor = name[:cut].rstrip(":/")
    return (sensor or topic_sensor), metric


def _number(rec: dict, key: str, i: int) -> float:
    value = rec[key]
    if type(value) is float:
        return value
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            raise DecodeError(f"SenML record {i} field {quote(key)} is too large") from None
    raise DecodeError(f"SenML record {i} field {quote(key)} is {quote(value)}, not a number")


def _string(rec: dict, key: str, i: int) -> str:
    value = rec[key]
    if type(value) is not str:
        raise DecodeError(f"SenML record {i} field {quote(key)} is {quote(value)}, not a string")
    return value


def _resolve(pack: object, received_at: datetime) -> Iterator[tuple[int, dict, float | None]]:
    """Yield (record index, resolved record, offset from now in s if relative else None)."""
    if type(pack) is not list:
        raise DecodeError(f"SenML pack must be a JSON array of records, not {quote(pack)}")
    if not pack:
        raise DecodeError("SenML pack is an empty array")
    now = received_at.timestamp()
    base_name, base_time, base_unit, base_value = "", 0.0, None, 0.0
    for i, rec in enumerate(pack):
        if type(rec) is not dict:
            raise DecodeError(f"SenML record {i} is {quote(rec)}, not an object")
        for key in rec:
            if key.endswith("_"):
                raise DecodeError(f"SenML record {i} has must-understand field {quote(key)}, "
                                  "which this decoder does not support")
        if "bn" in rec:
            base_name = _string(rec, "bn", i)
        if "bt" in rec:
            base_time = _number(rec, "bt", i)
        if "bu" in rec:
            base_unit = _string(rec, "bu", i)
        if "bv" in rec:
            base_value = _number(rec, "bv", i)
        if "bs" in rec:
            _number(rec, "bs", i)
        if "bver" in rec and (type(rec["bver"]) is not int or rec["bver"] < 1):
            raise DecodeError(f"SenML record {i} field 'bver' is {quote(rec['bver'])}, "
                              "not a positive integer")

        name = base_name + (_string(rec, "n", i) if "n" in rec else "")
        if not name:
            raise DecodeError(f"SenML record {i} has no name")
        if not NAME_RE.fullmatch(name):
            raise DecodeError(f"SenML record {i} name {quote(name)} has characters RFC 8428 "
                              "§4.5.1 does not allow (A-Z a-z 0-9 : . / _ -, starting "
                              "with a letter or digit)")
        time = base_time + (_number(rec, "t", i) if "t" in rec else 0)
        relative = time <= RELATIVE_LIMIT
        out: dict = {"n": name}
        unit = _string(rec, "u", i) if "u" in rec else base_unit
        if unit is not None:
            out["u"] = unit
        out["t"] = now + time if relative else time
        if "ut" in rec:
            _number(rec, "ut", i)

        present = [key for key in _VALUE_FIELDS if key in rec]
        if len(present) > 1:
            raise DecodeError(f"SenML record {i} has more than one value field "
                              f"({', '.join(present)})")
        if present:
            key = present[0]
            if key == "v":
                out["v"] = base_value + _number(rec, "v", i)
            elif key == "vb":
                if type(rec["vb"]) is not bool:
                    raise DecodeError(f"SenML record {i} field 'vb' is {quote(rec['vb'])}, "
                                      "not true/false")
                out["vb"] = rec["vb"]
            else:
                out[key] = _string(rec, key, i)
        if "s" in rec:
            out["s"] = _number(rec, "s", i)
        if present or "s" in out:
            yield i, out, (time if relative else None)
