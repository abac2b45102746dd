"""Every simulator payload goes through the real router, decoders and validation
and comes back as the values the simulator meant to send."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pytest

from ingest.decoders import DecodeContext, Message
from ingest.router import Router
from ingest.simulate import encoders
from ingest.simulate.city import load_city
from ingest.simulate.encoders import FORMATS, Encoder, entity_type, parse_formats
from ingest.simulate.vehicles import Position
from ingest.simulate.world import World
from ingest.validate import ValidationContext

UTC = timezone.utc
T = 1_795_000_000.25  # 2026-11-18 ..., a quarter second past
ROUTER = Router()


@pytest.fixture(scope="module")
def city():
    return load_city("layers/demo_city")


def declared(city):
    return {kind: frozenset(units) for kind, units in city.units.items()}


def decode(topic: str, payload: bytes, city, now: float = T):
    vctx = ValidationContext(declared_metrics=declared(city))
    msg = Message(topic, payload, datetime.fromtimestamp(now, UTC))
    name, _ = ROUTER.route(topic)
    return name, ROUTER.decode(msg, DecodeContext(), vctx)


def as_values(decoded) -> dict:
    return {(r.sensor, r.metric): (r.value, r.time, r.flags) for r in decoded.readings}


CASES = [
    ("tc-0001", "traffic_counter", "mobility", {"flow": 1234.0, "speed": 41.7, "occupancy": 23.5}),
    ("sl-x", "streetlight", "infrastructure", {"on": 1.0, "power": 143.2, "fault": 1.0}),
    ("sl-y", "streetlight", "infrastructure", {"on": 0.0, "power": 0.5, "fault": 0.0}),
    ("aq-9", "air_quality", "infrastructure", {"pm25": 12.3, "pm10": 30.1, "no2": 44.0, "o3": 80.5}),
    ("wb-1", "waste_bin", "infrastructure", {"fill": 65535.0}),  # a glitch value survives too
    ("en-1", "energy", "infrastructure", {"kw": 250.4}),
    ("wt-1", "water", "infrastructure", {"pressure": 4.21, "flow": 88.0}),
    ("bk-1", "bike_dock", "mobility", {"bikes": 7.0, "free_docks": 19.0}),
    ("pk-1", "parking", "mobility", {"occupancy": 91.2}),
    ("nz-1", "noise", "infrastructure", {"laeq": 63.4}),
]


@pytest.mark.parametrize("fmt", ["native", "senml", "ngsi", "ttn"])
@pytest.mark.parametrize("sensor,kind,domain,values", CASES)
def test_each_format_decodes_to_the_same_values(city, fmt, sensor, kind, domain, values):
    t = T + 0.125
    if fmt == "native":
        topic, payload = encoders.native(sensor, kind, domain, t, values)
    elif fmt == "senml":
        topic, payload = encoders.senml(sensor, kind, domain, t, values, city.units[kind])
    elif fmt == "ngsi":
        topic, payload = encoders.ngsi_ld(sensor, kind, domain, t, values, -56.1, -15.6)
    else:
        topic, payload = encoders.ttn(sensor, kind, domain, t, values, -56.1, -15.6)
    name, out = decode(topic, payload, city)
    assert name == fmt
    when = datetime.fromtimestamp(t, UTC)
    assert as_values(out) == {(sensor, m): (v, when, 0) for m, v in values.items()}
    infos = {i.external_id: i for i in out.sensors}
    assert set(infos) == {sensor}
    if fmt in ("native", "senml", "ngsi"):
        assert infos[sensor].kind == kind
    if fmt in ("ngsi", "ttn"):
        assert (infos[sensor].lon, infos[sensor].lat) == (-56.1, -15.6)


def test_senml_carries_units_and_booleans(city):
    _, payload = encoders.senml("sl-1", "streetlight", "infrastructure", T,
                                {"on": 1.0, "power": 10.0, "fault": 0.0}, city.units["streetlight"])
    pack = json.loads(payload)
    assert pack[0]["bn"] == "sl-1:" and pack[0]["bt"] == T
    assert [r.get("vb") for r in pack] == [True, None, False]
    assert pack[1]["u"] == "W"


def test_ngsi_streetlight_uses_status_texts():
    _, payload = encoders.ngsi_ld("sl-1", "streetlight", "infrastructure", T,
                                  {"on": 0.0, "power": 0.0, "fault": 1.0})
    doc = json.loads(payload)
    assert doc["type"] == "Streetlight"
    assert doc["powerState"]["value"] == "off" and doc["status"]["value"] == "defectiveLamp"


def test_entity_types_map_back_to_the_kind(city):
    from ingest.decoders.ngsi import ENTITY_KINDS, snake_case

    for kind in city.by_kind:
        etype = entity_type(kind)
        assert (ENTITY_KINDS.get(etype, (snake_case(etype),))[0]) == kind


def test_vehicle_position_decodes(city):
    p = Position(T, "B101-03", "B101", "B101-F0-0503", -56.12, -15.58, 23.4, 271.5, 95.0, 61.2)
    topic, payload = encoders.vehicle(p)
    name, out = decode(topic, payload, city)
    assert name == "native" and not out.readings
    [v] = out.vehicles
    assert (v.vehicle, v.route, v.trip, v.lon, v.lat, v.speed_kmh, v.bearing, v.delay_s,
            v.occupancy_pct) == ("B101-03", "B101", "B101-F0-0503", -56.12, -15.58, 23.4, 271.5,
                                 95.0, 61.2)
    assert v.time == datetime.fromtimestamp(T, UTC)


def test_fleet_positions_decode(city):
    world = World(city, seed=1, interval=60)
    t = datetime(2026, 11, 23, 14, 0, tzinfo=UTC).timestamp()  # 10:00 in the demo city
    positions = world.fleet.positions(t)
    assert len(positions) > 10
    for p in positions:
        _, out = decode(*encoders.vehicle(p), city, now=t)
        [v] = out.vehicles
        assert (v.vehicle, v.lon, v.lat, v.delay_s, v.speed_kmh) == (p.vehicle, p.lon, p.lat,
                                                                      p.delay_s, p.speed_kmh)


def test_parse_formats():
    assert parse_formats("native=70,senml=10,ngsi=10,ttn=10") == {
        "native": 0.7, "senml": 0.1, "ngsi": 0.1, "ttn": 0.1}
    assert parse_formats("ttn") == {"native": 0.0, "senml": 0.0, "ngsi": 0.0, "ttn": 1.0}
    for bad, text in (("mqtt=1", "unknown format 'mqtt'"), ("native=x", "not a number"),
                      ("native=0", "no share"), ("native=-1", "negative")):
        with pytest.raises(ValueError, match=text):
            parse_formats(bad)


def test_encoder_assigns_formats_by_share_and_every_message_decodes(city):
    enc = Encoder(city, parse_formats("native=40,senml=20,ngsi=20,ttn=20"), seed=3)
    counts = np.bincount(enc.format_of, minlength=4) / len(city)
    assert np.allclose(counts, [0.4, 0.2, 0.2, 0.2], atol=0.04)
    assert np.array_equal(enc.format_of, Encoder(city, parse_formats(
        "native=40,senml=20,ngsi=20,ttn=20"), seed=3).format_of)  # deterministic

    world = World(city, seed=3, interval=60)
    batches = world.due(T, T + 60)
    expected = {}
    for b in batches:
        for j, i in enumerate(b.idx.tolist()):
            when = datetime.fromtimestamp(round(float(b.t[j]), 3), UTC)
            for m, col in b.values.items():
                expected[(city.ids[i], m)] = (float(col[j]), when)
    got, seen_formats = {}, set()
    for b in batches:
        for topic, payload in enc.encode(b):
            name, out = decode(topic, payload, city, now=T + 60)
            seen_formats.add(name)
            for r in out.readings:
                got[(r.sensor, r.metric)] = (r.value, r.time)
    assert seen_formats == set(FORMATS)
    assert got == expected
    assert len({s for s, _ in got}) >= len(city) - 20  # a few may be in a dropout
