"""Property tests: whatever arrives, every decoder either raises DecodeError
with a reason, or returns something non-empty that passes validation with
timezone-aware UTC times.

Inputs go through Router.decode on topics that match each default route:
random bytes, random JSON, and JSON shaped like each format (right keys,
random values) so the decoders' deeper paths are exercised too.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.decoders import DecodeContext, DecodeError, Message
from ingest.router import Router
from ingest.validate import ValidationContext, validate

ROUTER = Router()
CTX = DecodeContext(bbox=(24.5, 60.0, 25.3, 60.4))
VCTX = ValidationContext()
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

level = st.text(max_size=12).map(lambda s: s.replace("/", "_").replace("+", "p").replace("#", "h"))
domain = st.sampled_from(["mobility", "transport", "infrastructure"])
TOPICS = {
    "native": st.one_of(
        st.builds("city/{}/{}/{}".format, domain, level, level),
        st.builds("city/transport/vehicle/{}".format, level),
        st.builds("city/{}/{}".format, domain, level)),
    "senml": st.one_of(
        st.builds("senml/{}/{}/{}".format, st.one_of(domain, level), level, level),
        st.builds("senml/{}".format, level)),
    "ngsi": st.builds("ngsi/{}".format, level),
    "ttn": st.builds("v3/{}@{}/devices/{}/up".format, level, level, level),
    "hfp": st.builds("/hfp/v2/journey/ongoing/vp/{}/{}/{}/{}/{}/{}".format,
                     level, level, level, level, level, level),
}
any_topic = st.one_of(*TOPICS.values())

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(),
    st.integers(min_value=-10 ** 500, max_value=10 ** 500),
    st.text(max_size=20),
    st.sampled_from(["2024-05-01T06:59:00Z", "2024-05-01T06:59:00", "2024-05-01T07:00:00+03:00",
                     "2024-05-01T06:00:00Z/2024-05-01T06:59:00Z", "12.5", "-75", "", "NaN", "on",
                     "free", "occupied", "ok", "1e999", "2024-05-01T06:59:00.123456789Z"]),
    st.sampled_from([1714546740, 1714546740.5, 60.17, 24.94, -1, 0, 2 ** 28, 1e300]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def keyed(keys: list[str], values=json_values):
    return st.dictionaries(st.one_of(st.sampled_from(keys), st.text(max_size=6)), values, max_size=len(keys) + 2)


POINT = st.builds(lambda x, y: {"type": "Point", "coordinates": [x, y]},
                  st.floats(-200, 200) | st.just(24.9), st.floats(-100, 100) | st.just(60.2))
native_obj = st.fixed_dictionaries(
    {"ts": scalars, "values": st.dictionaries(st.text(max_size=10), scalars, max_size=4)},
    optional={"lat": scalars, "lon": scalars, "route": scalars, "speed_kmh": scalars})
senml_record = keyed(["bn", "bt", "bu", "bv", "bs", "bver", "n", "u", "v", "vs", "vb", "vd", "s", "t", "ut"],
                     st.one_of(scalars, st.sampled_from(["dev:", "temp", "urn:dev:ow:10e2073a01080063",
                                                         "Cel", "a/b"])))
ngsi_attr = st.one_of(
    scalars,
    st.fixed_dictionaries({"type": st.sampled_from(["Property", "Number", "Relationship", "Text",
                                                    "GeoProperty", "geo:json", "geo:point"]),
                           "value": st.one_of(scalars, POINT, json_values)},
                          optional={"observedAt": scalars, "unitCode": scalars,
                                    "metadata": json_values}),
)
ngsi_entity = st.fixed_dictionaries(
    {"id": st.one_of(st.text(max_size=30), st.just("urn:ngsi-ld:X:a-2024-05-01T06:00:00Z"), scalars),
     "type": st.sampled_from(["TrafficFlowObserved", "AirQualityObserved", "NoiseLevelObserved",
                              "ParkingSpot", "OffStreetParking", "OnStreetParking", "Streetlight",
                              "WaterQualityObserved", "BikeHireDockingStation", "WasteContainer",
                              "Vehicle", "Feature", "Unknown"])},
    optional={"location": st.one_of(POINT, ngsi_attr, json_values), "dateObserved": ngsi_attr,
              "status": ngsi_attr, "powerState": ngsi_attr, "speed": ngsi_attr, "heading": ngsi_attr,
              "intensity": ngsi_attr, "properties": json_values, "name": ngsi_attr},
)
ttn_uplink = st.fixed_dictionaries(
    {"uplink_message": st.fixed_dictionaries(
        {"decoded_payload": json_values},
        optional={"locations": json_values, "rx_metadata": json_values, "received_at": scalars})},
    optional={"received_at": scalars, "end_device_ids": json_values})
hfp_vp = st.builds(lambda vp: {"VP": vp}, keyed(
    ["desi", "dir", "oper", "veh", "tst", "tsi", "spd", "hdg", "lat", "long", "dl", "oday", "start",
     "route", "occu"]))

SHAPED = {
    "native": st.one_of(native_obj, st.lists(native_obj, max_size=3)),
    "senml": st.lists(senml_record, max_size=4),
    "ngsi": st.one_of(ngsi_entity, st.lists(ngsi_entity, max_size=3),
                      st.builds(lambda d: {"subscriptionId": "s", "data": d}, st.lists(ngsi_entity, max_size=3))),
    "ttn": ttn_uplink,
    "hfp": hfp_vp,
}


def dumps(doc) -> bytes:
    return json.dumps(doc).encode()


def check(topic: str, payload: bytes) -> None:
    received = datetime(2024, 5, 1, 7, 0, tzinfo=timezone.utc)
    try:
        out = ROUTER.decode(Message(topic, payload, received), CTX, VCTX)
    except DecodeError as exc:
        reason = exc.reason
        # the reason is stored in dead_letters.reason and logged: bounded, valid text
        assert isinstance(reason, str) and 0 < len(reason) < 1000
        assert "\x00" not in reason
        reason.encode("utf-8")
        return
    assert not out.is_empty()
    assert validate(out, VCTX, now=received) is out
    for item in [*out.readings, *out.vehicles]:
        assert item.time.utcoffset() == timedelta(0)


@FUZZ
@given(topic=any_topic, payload=st.binary(max_size=300))
def test_random_bytes(topic, payload):
    check(topic, payload)


@FUZZ
@given(topic=any_topic, doc=json_values)
def test_random_json(topic, doc):
    check(topic, dumps(doc))


@FUZZ
@given(topic=TOPICS["native"], doc=SHAPED["native"])
def test_native_shaped(topic, doc):
    check(topic, dumps(doc))


@FUZZ
@given(topic=TOPICS["senml"], doc=SHAPED["senml"])
def test_senml_shaped(topic, doc):
    check(topic, dumps(doc))


@FUZZ
@given(topic=TOPICS["ngsi"], doc=SHAPED["ngsi"])
def test_ngsi_shaped(topic, doc):
    check(topic, dumps(doc))


@FUZZ
@given(topic=TOPICS["ttn"], doc=SHAPED["ttn"])
def test_ttn_shaped(topic, doc):
    check(topic, dumps(doc))


@FUZZ
@given(topic=TOPICS["hfp"], doc=SHAPED["hfp"])
def test_hfp_shaped(topic, doc):
    check(topic, dumps(doc))


def test_shaped_strategies_reach_success():
    """Guard against a fuzz suite that only ever exercises rejections."""
    received = datetime(2024, 5, 1, 7, 0, tzinfo=timezone.utc)
    samples = {
        "city/mobility/k/s": {"ts": "2024-05-01T06:59:00Z", "values": {"x": 1}},
        "senml/mobility/k/s": [{"n": "temp", "v": 1, "t": 1714546740}],
        "ngsi/x": {"id": "a", "type": "ParkingSpot", "status": "free"},
        "v3/a@t/devices/d/up": {"uplink_message": {"decoded_payload": {"x": 1}}},
        "/hfp/v2/journey/ongoing/vp/bus/1/2/3/4/5": {"VP": {"lat": 60.2, "long": 24.9, "oper": 1, "veh": 2}},
    }
    for topic, doc in samples.items():
        out = ROUTER.decode(Message(topic, dumps(doc), received), CTX, VCTX)
        assert not out.is_empty()
