"""Routing table parsing, topic routing and Router.decode (size cap, route,
decode, validate)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from ingest import router as router_module
from ingest.decoders import DECODERS, DecodeContext, DecodeError, Message, hfp, native, ngsi, senml, ttn
from ingest.router import DEFAULT_ROUTES, Router, check_filter, parse_routes
from ingest.validate import ValidationContext

NOW = datetime(2024, 5, 1, 7, 0, tzinfo=timezone.utc)
CTX = DecodeContext(bbox=(24.5, 60.0, 25.3, 60.4), max_payload_bytes=1024)
VCTX = ValidationContext()


def message(topic: str, doc) -> Message:
    payload = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return Message(topic, payload, NOW)


def test_decoder_registry():
    assert DECODERS == {"native": native.decode, "senml": senml.decode, "ngsi": ngsi.decode,
                        "ttn": ttn.decode, "hfp": hfp.decode}


def test_default_routes_parse_in_order():
    routes = parse_routes(DEFAULT_ROUTES)
    assert [(r.filter, r.decoder_name) for r in routes] == [
        ("city/mobility/#", "native"), ("city/transport/#", "native"),
        ("city/infrastructure/#", "native"), ("senml/#", "senml"), ("ngsi/#", "ngsi"),
        ("v3/+/devices/+/up", "ttn"), ("/hfp/v2/journey/ongoing/vp/#", "hfp")]
    assert routes[0].decoder is native.decode


def test_spec_tolerates_blanks_and_whitespace():
    routes = parse_routes(" ;senml/# = senml ;; a/b=c=ngsi;")
    assert [(r.filter, r.decoder_name) for r in routes] == [("senml/#", "senml"), ("a/b=c", "ngsi")]


@pytest.mark.parametrize("spec, fragment", [
    ("senml/#=json", "unknown decoder 'json'; known decoders: hfp, native, ngsi, senml, ttn"),
    ("senml/#", "is not 'topic-filter=decoder'"),
    ("=senml", "is not 'topic-filter=decoder'"),
    ("senml/#/x=senml", "'#' must be a whole level and the last one"),
    ("senml/a#=senml", "'#' must be a whole level"),
    ("senml/a+/b=senml", "'+' must be a whole level"),
    ("a\x00b=senml", "NUL"),
    ("a/#=senml;a/#=ngsi", "listed twice"),
    ("", "routing table is empty"),
    (" ; ", "routing table is empty"),
])
def test_bad_specs_raise_value_error(spec, fragment):
    with pytest.raises(ValueError) as err:
        parse_routes(spec)
    assert fragment in str(err.value)


def test_check_filter_accepts_valid_filters():
    for topic_filter in ("#", "+", "a/+/b/#", "/hfp/v2/#", "+/+"):
        check_filter(topic_filter)


@pytest.mark.parametrize("topic, expected", [
    ("city/mobility/traffic_counter/tc-1", "native"),
    ("city/transport/vehicle/bus-1", "native"),
    ("senml/infrastructure/meter/m1", "senml"),
    ("ngsi/anything/at/all", "ngsi"),
    ("v3/app@tenant/devices/dev/up", "ttn"),
    ("/hfp/v2/journey/ongoing/vp/bus/0022/01187/1055/2/K/09:52/1/4/60;24/19/74/45", "hfp"),
    ("v3/app@tenant/devices/dev/join", None),
    ("/hfp/v2/journey/ongoing/dep/bus/0022/01187", None),
    ("city/weather/rain/r1", None),
    ("$SYS/broker/uptime", None),
])
def test_route(topic, expected):
    found = Router().route(topic)
    if expected is None:
        assert found is None
    else:
        assert found == (expected, DECODERS[expected])


def test_first_match_wins():
    router = Router("city/#=ngsi;city/mobility/#=native")
    assert router.route("city/mobility/x/y")[0] == "ngsi"
    assert router.filters() == ["city/#", "city/mobility/#"]


def test_route_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(router_module, "ROUTE_CACHE_SIZE", 3)
    router = Router()
    for i in range(10):
        assert router.route(f"senml/mobility/k/s{i}")[0] == "senml"
    assert len(router._cache) <= 3


def test_decode_routes_decodes_and_validates():
    out = Router().decode(message("city/mobility/traffic_counter/tc-1",
                                  {"ts": "2024-05-01T06:59:00Z", "values": {"flow": 7}}), CTX, VCTX)
    assert [(r.sensor, r.metric, r.value) for r in out.readings] == [("tc-1", "flow", 7.0)]


def test_decode_hfp_gets_the_bbox():
    doc = {"VP": {"oper": 22, "veh": 5, "tst": "2024-05-01T06:59:00Z", "lat": 24.94, "long": 60.17}}
    out = Router().decode(message("/hfp/v2/journey/ongoing/vp/bus/0022/00005/1055/2", doc), CTX, VCTX)
    assert (out.vehicles[0].lat, out.vehicles[0].lon) == (60.17, 24.94)


def test_payload_over_the_cap():
    msg = Message("senml/mobility/k/s", b" " * 1025, NOW)
    with pytest.raises(DecodeError) as err:
        Router().decode(msg, CTX, VCTX)
    assert err.value.reason == "payload is 1025 bytes, over the cap of 1024"
    assert err.value.decoder == "senml"


def test_payload_at_the_cap_is_decoded():
    doc = {"ts": 1714546740, "values": {"flow": 7}}
    payload = json.dumps(doc).encode()
    payload += b" " * (1024 - len(payload))
    out = Router().decode(Message("city/mobility/k/s", payload, NOW), CTX, VCTX)
    assert len(out.readings) == 1


def test_no_decoder_for_topic():
    with pytest.raises(DecodeError) as err:
        Router().decode(message("weather/rain", {}), CTX, VCTX)
    assert err.value.reason == "no decoder for topic 'weather/rain'"
    assert err.value.decoder is None


def test_decode_and_validation_errors_name_the_decoder():
    with pytest.raises(DecodeError) as err:
        Router().decode(message("ngsi/x", b"{"), CTX, VCTX)
    assert err.value.decoder == "ngsi" and "not valid JSON" in err.value.reason
    with pytest.raises(DecodeError) as err:
        Router().decode(message("city/mobility/k/s", {"ts": 0, "values": {"x": 1e400}}), CTX, VCTX)
    assert err.value.decoder == "native" and "not finite" in err.value.reason
    with pytest.raises(DecodeError) as err:
        Router().decode(message("city/mobility/k/s", {"values": {}}), CTX, VCTX)
    assert err.value.reason == "no numeric values"


def test_future_is_judged_against_the_receive_time():
    # 2024-05-01T07:04:00Z is 4 min after NOW (the receive time): accepted,
    # although it is long in the past on the wall clock.
    out = Router().decode(message("city/mobility/k/s", {"ts": "2024-05-01T07:04:00Z", "values": {"x": 1}}),
                          CTX, VCTX)
    assert out.readings[0].time.minute == 4
    with pytest.raises(DecodeError, match="future"):
        Router().decode(message("city/mobility/k/s", {"ts": "2024-05-01T07:06:00Z", "values": {"x": 1}}),
                        CTX, VCTX)
