"""Payloads in the four formats the ingestor decodes (see ``ingest/decoders/``).

One function per format turns one sensor's readings at one time into
``(topic, payload bytes)``:

* :func:`native`: ``city/<domain>/<kind>/<id>``, ``{"ts": epoch, "values": {...}}``
  (booleans as ``true``/``false``);
* :func:`senml`: ``senml/<domain>/<kind>/<id>``, an RFC 8428 pack with base name
  ``"<id>:"`` and base time, units from the pack, booleans as ``vb``;
* :func:`ngsi_ld`: ``ngsi/<kind>/<id>``, an NGSI-LD normalized entity of the
  Smart Data Models type for the kind (``TrafficFlowObserved``, ...; a
  CamelCase name for kinds without one), ``dateObserved`` as a DateTime
  property, streetlights' ``on``/``fault`` as ``powerState``/``status`` text;
* :func:`ttn`: ``v3/<app>@<tenant>/devices/<id>/up``, a The Things Stack v3
  uplink with the values in ``decoded_payload`` (and packed into
  ``frm_payload``), received_at with nanoseconds.

The entity id, SenML base name and TTN device id are the pack's sensor id, so
all four land on the same registered sensor.  Times are rounded to the
millisecond, which every format carries exactly.  :class:`Encoder` assigns each
sensor one format from the configured shares (seeded) and encodes batches.
"""
from __future__ import annotations

import base64
import json
import struct
import zlib
from datetime import datetime, timezone

import numpy as np

from ingest.decoders.ngsi import ENTITY_KINDS
from ingest.simulate import noise
from ingest.simulate.signals import BOOLEAN_METRICS, Batch

FORMATS = ("native", "senml", "ngsi", "ttn")
SALT_FORMAT = 301
TTN_APPLICATION = "citydash-sim"
TTN_TENANT = "ttn"
NGSI_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.7.jsonld"
_KIND_TYPES = {kind: etype for etype, (kind, _) in ENTITY_KINDS.items()}
_KIND_TYPES.update({"parking": "OffStreetParking"})
UTC = timezone.utc


def parse_formats(spec: str) -> dict[str, float]:
    """``"native=70,senml=10,ngsi=10,ttn=10"`` -> shares summing to 1 (ValueError if bad)."""
    shares: dict[str, float] = {}
    for part in spec.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if name not in FORMATS:
            raise ValueError(f"unknown format {name!r} in {spec!r}; formats: {', '.join(FORMATS)}")
        try:
            share = float(value) if sep else 1.0
        except ValueError:
            raise ValueError(f"share of {name!r} is {value.strip()!r}, not a number") from None
        if share < 0:
            raise ValueError(f"share of {name!r} is negative")
        shares[name] = shares.get(name, 0.0) + share
    total = sum(shares.values())
    if total <= 0:
        raise ValueError(f"formats {spec!r} give no share to any format")
    return {name: shares.get(name, 0.0) / total for name in FORMATS}


def entity_type(kind: str) -> str:
    """NGSI entity type of a sensor kind; the decoder maps it back to the same kind."""
    return _KIND_TYPES.get(kind) or "".join(w.capitalize() for w in kind.split("_"))


def iso_ms(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def native(sensor: str, kind: str, domain: str, t: float, values: dict[str, float]) -> tuple[str, bytes]:
    body = ",".join(f'"{m}":{"true" if v else "false"}' if m in BOOLEAN_METRICS else f'"{m}":{v!r}'
                    for m, v in values.items())
    return f"city/{domain}/{kind}/{sensor}", f'{{"ts":{t!r},"values":{{{body}}}}}'.encode()


def senml(sensor: str, kind: str, domain: str, t: float, values: dict[str, float],
          units: dict[str, str] | None = None) -> tuple[str, bytes]:
    units = units or {}
    pack = []
    for m, v in values.items():
        rec: dict = {"n": m}
        if not pack:
            rec = {"bn": f"{sensor}:", "bt": t, **rec}
        if m in units and m not in BOOLEAN_METRICS:
            rec["u"] = units[m]
        if m in BOOLEAN_METRICS:
            rec["vb"] = bool(v)
        else:
            rec["v"] = v
        pack.append(rec)
    return f"senml/{domain}/{kind}/{sensor}", json.dumps(pack, separators=(",", ":")).encode()


def ngsi_ld(sensor: str, kind: str, domain: str, t: float, values: dict[str, float],
            lon: float | None = None, lat: float | None = None) -> tuple[str, bytes]:
    etype = entity_type(kind)
    entity: dict = {"id": sensor, "type": etype,
                    "dateObserved": {"type": "Property",
                                     "value": {"@type": "DateTime", "@value": iso_ms(t)}}}
    if lon is not None and lat is not None:
        entity["location"] = {"type": "GeoProperty",
                              "value": {"type": "Point", "coordinates": [lon, lat]}}
    for m, v in values.items():
        if etype == "Streetlight" and m == "on":
            entity["powerState"] = {"type": "Property", "value": "on" if v else "off"}
        elif etype == "Streetlight" and m == "fault":
            entity["status"] = {"type": "Property", "value": "defectiveLamp" if v else "ok"}
        elif m in BOOLEAN_METRICS:
            entity[m] = {"type": "Property", "value": bool(v)}
        else:
            entity[m] = {"type": "Property", "value": v}
    entity["@context"] = [NGSI_CONTEXT]
    return f"ngsi/{kind}/{sensor}", json.dumps(entity, separators=(",", ":")).encode()


def ttn(sensor: str, kind: str, domain: str, t: float, values: dict[str, float],
        lon: float | None = None, lat: float | None = None) -> tuple[str, bytes]:
    stamp = iso_ms(t).replace("Z", "000000Z")  # The Things Stack writes nanoseconds
    decoded = {m: (bool(v) if m in BOOLEAN_METRICS else v) for m, v in values.items()}
    frm = struct.pack(f">{len(values)}i", *(int(round(v * 100)) for v in values.values()))
    up: dict = {
        "f_port": 1, "f_cnt": int(t) % 65536,
        "frm_payload": base64.b64encode(frm).decode(),
        "decoded_payload": decoded,
        "rx_metadata": [{"gateway_ids": {"gateway_id": "sim-gw-1"}, "rssi": -92, "snr": 7.25}],
        "settings": {"data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 7}},
                     "frequency": "915200000"},
        "received_at": stamp,
    }
    if lon is not None and lat is not None:
        up["locations"] = {"user": {"latitude": lat, "longitude": lon, "source": "SOURCE_REGISTRY"}}
    doc = {
        "end_device_ids": {"device_id": sensor,
                           "application_ids": {"application_id": TTN_APPLICATION},
                           "dev_eui": dev_eui(sensor)},
        "received_at": stamp,
        "uplink_message": up,
    }
    return (f"v3/{TTN_APPLICATION}@{TTN_TENANT}/devices/{sensor}/up",
            json.dumps(doc, separators=(",", ":")).encode())


def dev_eui(sensor: str) -> str:
    """A stable 64-bit EUI for a sensor id (two CRC-32s)."""
    raw = sensor.encode()
    return f"{zlib.crc32(raw):08X}{zlib.crc32(raw[::-1] + b'eui'):08X}"


def vehicle(p) -> tuple[str, bytes]:
    """A :class:`~ingest.simulate.vehicles.Position` on ``city/transport/vehicle/<id>``."""
    body = (f'{{"ts":{p.time!r},"lat":{p.lat!r},"lon":{p.lon!r},"route":{json.dumps(p.route)},'
            f'"trip":{json.dumps(p.trip)},"speed_kmh":{p.speed_kmh!r},"bearing":{p.bearing!r},'
            f'"delay_s":{p.delay_s!r},"occupancy_pct":{p.occupancy_pct!r}}}')
    return f"city/transport/vehicle/{p.vehicle}", body.encode()


class Encoder:
    """Encodes :class:`~ingest.simulate.signals.Batch` es; each sensor keeps one format."""

    def __init__(self, city, shares: dict[str, float], seed: int = 1):
        self.city = city
        weights = [shares.get(f, 0.0) for f in FORMATS]
        u = noise.uniform(seed, SALT_FORMAT, np.arange(len(city)))
        self.format_of = np.minimum(noise.choice(u, weights), len(FORMATS) - 1)
        self.metrics = [tuple(m) for m in city.metrics]

    def sensors_in(self, fmt: str) -> list[str]:
        code = FORMATS.index(fmt)
        return [s for s, f in zip(self.city.ids, self.format_of.tolist()) if f == code]

    def encode(self, batch: Batch) -> list[tuple[str, bytes]]:
        c = self.city
        names = list(batch.values)
        columns = [batch.values[m].tolist() for m in names]
        times = np.round(batch.t, 3).tolist()
        idx = batch.idx.tolist()
        fmts = self.format_of[batch.idx].tolist()
        units = c.units.get(batch.kind, {})
        out = []
        append = out.append
        kind = batch.kind
        for j, i in enumerate(idx):
            listed = self.metrics[i]
            values = {m: col[j] for m, col in zip(names, columns) if m in listed}
            if not values:
                continue
            f = fmts[j]
            if f == 0:
                append(native(c.ids[i], kind, c.domains[i], times[j], values))
            elif f == 1:
                append(senml(c.ids[i], kind, c.domains[i], times[j], values, units))
            elif f == 2 and entity_type(kind) != "Vehicle":  # NGSI vehicles are positions
                append(ngsi_ld(c.ids[i], kind, c.domains[i], times[j], values,
                               round(float(c.lon[i]), 6), round(float(c.lat[i]), 6)))
            elif f == 3:
                append(ttn(c.ids[i], kind, c.domains[i], times[j], values,
                           round(float(c.lon[i]), 6), round(float(c.lat[i]), 6)))
            else:
                append(native(c.ids[i], kind, c.domains[i], times[j], values))
        return out
