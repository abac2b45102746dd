"""HSL HFP v2 vehicle-position decoder.

Fixtures follow the HSL High-frequency positioning API v2 (topic structure and
the ``VP`` payload fields); ``dl`` is documented as "negative values indicate
lagging behind the schedule", so delay_s = -dl.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ingest.decoders import DecodeContext, DecodeError, Message, hfp

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "payloads" / "hsl_hfp"
RECEIVED = datetime(2024, 5, 1, 7, 9, 11, tzinfo=timezone.utc)
HELSINKI = DecodeContext(bbox=(24.5, 60.0, 25.3, 60.4))
TOPIC = "/hfp/v2/journey/ongoing/vp/bus/0022/01187/1055/2/Kamppi/09:52/1204101/4/60;24/19/74/45"


def decode(payload, ctx: DecodeContext = HELSINKI, topic: str = TOPIC):
    if isinstance(payload, str):
        payload = (FIXTURES / payload).read_bytes()
    elif not isinstance(payload, bytes):
        payload = json.dumps(payload).encode()
    return hfp.decode(Message(topic, payload, RECEIVED), ctx)


def vp(**changes) -> dict:
    doc = json.loads((FIXTURES / "vp.json").read_bytes())
    doc["VP"].update(changes)
    return doc


def test_vehicle_position():
    out = decode("vp.json")
    assert out.readings == [] and out.sensors == []
    [v] = out.vehicles
    assert v.vehicle == "22/1187"
    assert (v.lat, v.lon) == (60.171612, 24.944203)
    assert v.time == datetime(2024, 5, 1, 7, 9, 10, 317000, tzinfo=timezone.utc)
    assert v.route == "1055"
    assert v.trip == "2024-05-01/09:52/1055/2"
    assert v.speed_kmh == pytest.approx(8.33 * 3.6)
    assert v.bearing == 95.0
    assert v.delay_s == 75.0  # dl -75: 75 s late
    assert v.occupancy_pct == 20.0


def test_numbers_as_strings_give_the_same_position():
    [plain] = decode("vp.json").vehicles
    [strings] = decode("vp_string_numbers.json").vehicles
    assert strings == plain


def test_missing_milliseconds():
    [v] = decode("vp_no_milliseconds.json").vehicles
    assert v.time == datetime(2024, 5, 1, 7, 9, 10, tzinfo=timezone.utc)


def test_swapped_coordinates_are_swapped_back_inside_the_bbox():
    [v] = decode("vp_swapped_coordinates.json").vehicles
    assert (v.lat, v.lon) == (60.171612, 24.944203)


def test_no_swap_without_bbox_or_when_neither_order_fits():
    [v] = decode("vp_swapped_coordinates.json", ctx=DecodeContext()).vehicles
    assert (v.lat, v.lon) == (24.944203, 60.171612)
    [v] = decode(vp(lat=59.0, long=18.0)).vehicles  # Stockholm: outside, kept as sent
    assert (v.lat, v.lon) == (59.0, 18.0)


def test_null_position_is_rejected():
    with pytest.raises(DecodeError, match="no position"):
        decode("vp_null_position.json")


def test_fallbacks_tsi_and_topic():
    [v] = decode(vp(tst=None, oper=None, veh=None, route=None, dir=None)).vehicles
    assert v.time == datetime.fromtimestamp(1714547350, timezone.utc)
    assert v.vehicle == "22/1187"  # from the topic, zeros dropped
    assert v.route == "1055" and v.trip == "2024-05-01/09:52/1055/2"
    [v] = decode(vp(tst=None, tsi=None, occu=None, dl=None, spd=None)).vehicles
    assert v.time == RECEIVED
    assert (v.occupancy_pct, v.delay_s, v.speed_kmh) == (None, None, None)


def test_ahead_of_schedule_is_negative_delay():
    [v] = decode(vp(dl=30)).vehicles
    assert v.delay_s == -30.0


@pytest.mark.parametrize("topic, payload, reason", [
    (TOPIC.replace("/vp/", "/dep/"), "dep_event.json", "HFP event 'dep' is not a vehicle position"),
    (TOPIC, "dep_event.json", "'DEP' instead of a 'VP'"),
    ("/hfp/v1/journey/ongoing/vp/bus", "vp.json", "does not match"),
    (TOPIC, {"VP": [1]}, "'VP' is an array"),
    (TOPIC, [1, 2], "not an object"),
    (TOPIC, vp(spd="fast"), "VP spd value 'fast' is not a number"),
    (TOPIC, vp(tst="2024-05-01T07:09:10"), "has no UTC offset"),
    (TOPIC, vp(oper=[1]), "HFP oper an array is not a number or text"),
])
def test_rejections(topic, payload, reason):
    with pytest.raises(DecodeError) as err:
        decode(payload, topic=topic)
    assert reason in err.value.reason
