"""FIWARE NGSI-v2 / NGSI-LD decoder.

Fixtures follow the FIWARE NGSI v2 specification, ETSI GS CIM 009 (NGSI-LD)
and the Smart Data Models specifications of each entity type
(https://smartdatamodels.org: dataModel.Transportation TrafficFlowObserved,
BikeHireDockingStation and Vehicle; dataModel.Environment AirQualityObserved,
NoiseLevelObserved and WaterQualityObserved; dataModel.Parking ParkingSpot,
OnStreetParking and OffStreetParking; dataModel.Streetlighting Streetlight;
dataModel.WasteManagement WasteContainer).  They are citydash's own
entities, not copies of the models' examples.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ingest.decoders import FLAG_RECEIVE_TIME, DecodeContext, DecodeError, Message, ngsi

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "payloads" / "ngsi"
RECEIVED = datetime(2024, 5, 1, 7, 30, tzinfo=timezone.utc)
CTX = DecodeContext()


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def decode(payload):
    if isinstance(payload, str):
        payload = (FIXTURES / payload).read_bytes()
    elif not isinstance(payload, bytes):
        payload = json.dumps(payload).encode()
    return ngsi.decode(Message("ngsi/citydash", payload, RECEIVED), CTX)


def values(out) -> dict[str, float]:
    return {r.metric: r.value for r in out.readings}


# --- one test per entity type, across v2/LD and keyValues/normalized ------------

def test_traffic_flow_v2_normalized_interval_and_linestring():
    out = decode("v2_normalized_traffic_flow.json")
    assert values(out) == {"intensity": 118.0, "averageVehicleSpeed": 43.2, "occupancy": 0.21}
    assert {r.time for r in out.readings} == {utc(2024, 5, 1, 7, 5)}  # end of the interval
    speed = next(r for r in out.readings if r.metric == "averageVehicleSpeed")
    assert speed.unit == "KMH"
    [info] = out.sensors
    assert (info.external_id, info.kind, info.domain) == (
        "TrafficFlowObserved-citydash-lane-0042", "traffic_counter", "mobility")
    assert (info.lon, info.lat) == pytest.approx((24.92, 60.12))  # vertex average
    assert info.attributes == {"laneId": 2.0, "reversedLane": 0.0}  # static, not readings


def test_air_quality_ld_normalized_observed_at_unit_code_and_id_timestamp():
    out = decode("ld_normalized_air_quality.jsonld")
    assert values(out) == {"no2": 31.0, "pm25": 8.4, "temperature": 9.5}
    by_metric = {r.metric: r for r in out.readings}
    assert by_metric["pm25"].time == utc(2024, 5, 1, 6, 58, 30)  # property's observedAt
    assert by_metric["no2"].time == utc(2024, 5, 1, 7)  # entity dateObserved (@value)
    assert by_metric["no2"].unit == "GQ" and by_metric["temperature"].unit == "CEL"
    [info] = out.sensors
    # trailing observation timestamp stripped from the entity id
    assert info.external_id == "urn:ngsi-ld:AirQualityObserved:citydash-aq-kallio"
    assert (info.kind, info.domain, info.name) == ("air_quality", "infrastructure", "Kallio air station")
    assert (info.lon, info.lat) == (24.9414, 60.1718)
    assert {r.sensor for r in out.readings} == {info.external_id}


def test_noise_v2_keyvalues_uses_date_observed_to():
    out = decode("v2_keyvalues_noise.json")
    assert values(out) == {"LAeq": 58.3, "LAmax": 77.1, "LAS": 61.0}
    assert {r.time for r in out.readings} == {utc(2024, 5, 1, 7)}
    assert out.sensors[0].external_id == "citydash-noise-07"  # interval suffix stripped
    assert out.sensors[0].kind == "noise"


def test_parking_spot_ld_keyvalues_status_occupied_without_time():
    out = decode("ld_keyvalues_parking_spot.jsonld")
    [r] = out.readings
    assert (r.metric, r.value) == ("occupied", 1.0)
    assert r.time == RECEIVED and r.flags == FLAG_RECEIVE_TIME
    assert (out.sensors[0].kind, out.sensors[0].domain, out.sensors[0].name) == ("parking", "mobility", "MS-17")


def test_parking_spot_v2_normalized_status_free_with_metadata_timestamp():
    [r] = decode("v2_normalized_parking_spot.json").readings
    assert (r.sensor, r.metric, r.value, r.time, r.flags) == (
        "citydash:market-square:18", "occupied", 0.0, utc(2024, 5, 1, 7, 1, 12), 0)


def test_on_street_parking_ld_normalized_polygon_and_modified_at():
    out = decode("ld_normalized_on_street_parking.jsonld")
    by_metric = {r.metric: r for r in out.readings}
    assert set(by_metric) == {"availableSpotNumber", "totalSpotNumber"}
    assert by_metric["availableSpotNumber"].time == utc(2024, 5, 1, 7, 2)
    assert by_metric["totalSpotNumber"].time == utc(2024, 5, 1, 7, 2, 5)
    info = out.sensors[0]
    assert info.kind == "parking"
    assert info.lon == pytest.approx((24.95 * 3 + 24.97 * 2) / 5)  # ring vertices averaged


def test_off_street_parking_v2_keyvalues_offset_time():
    out = decode("v2_keyvalues_off_street_parking.json")
    assert values(out) == {"availableSpotNumber": 211.0, "totalSpotNumber": 540.0, "occupancy": 0.61}
    assert {r.time for r in out.readings} == {utc(2024, 5, 1, 4, 3)}
    assert out.sensors[0].name == "Central garage"


def test_streetlight_v2_normalized_power_state_and_fault():
    out = decode("v2_normalized_streetlight.json")
    assert values(out) == {"on": 1.0, "fault": 1.0, "powerConsumption": 48.5}
    assert out.sensors[0].attributes == {"lanternHeight": 8.0}
    assert (out.sensors[0].kind, out.sensors[0].domain) == ("streetlight", "infrastructure")


def test_water_quality_ld_keyvalues():
    out = decode("ld_keyvalues_water_quality.jsonld")
    assert values(out) == {"temperature": 8.1, "pH": 7.9, "conductivity": 0.0052, "turbidity": 3.4, "O2": 9.7}
    assert out.sensors[0].kind == "water_quality"
    assert {r.time for r in out.readings} == {utc(2024, 5, 1, 5, 30)}


def test_bike_dock_v2_keyvalues_status_list_skipped():
    out = decode("v2_keyvalues_bike_dock.json")
    assert values(out) == {"availableBikeNumber": 6.0, "freeSlotNumber": 14.0, "totalSlotNumber": 20.0}
    assert (out.sensors[0].kind, out.sensors[0].domain) == ("bike_dock", "mobility")


def test_waste_container_ld_normalized():
    out = decode("ld_normalized_waste_container.jsonld")
    assert values(out) == {"fillingLevel": 0.83, "temperature": 12.0}
    assert {r.time for r in out.readings} == {utc(2024, 5, 1, 4)}
    assert (out.sensors[0].kind, out.sensors[0].domain) == ("waste_bin", "infrastructure")


def test_vehicle_v2_keyvalues_becomes_a_position():
    out = decode("v2_keyvalues_vehicle.json")
    assert out.readings == [] and out.sensors == []
    [v] = out.vehicles
    assert (v.vehicle, v.lon, v.lat, v.speed_kmh, v.bearing, v.time) == (
        "citydash-refuse-truck-4", 24.9502, 60.1690, 23.5, 182.0, utc(2024, 5, 1, 7, 5, 10))


def test_vehicle_ld_normalized_unknown_heading_and_location_observed_at():
    [v] = decode("ld_normalized_vehicle.jsonld").vehicles
    assert (v.speed_kmh, v.bearing) == (0.0, None)  # heading -1: stationary/unknown
    assert v.time == utc(2024, 5, 1, 7, 6)


def test_vehicle_without_location_gives_nothing():
    out = decode({"id": "v9", "type": "Vehicle", "speed": 30})
    assert out.is_empty()


# --- containers -----------------------------------------------------------------

def test_array_of_entities():
    out = decode("v2_keyvalues_array.json")
    assert {(r.sensor, r.metric, r.value) for r in out.readings} == {
        ("citydash-bikes-a", "availableBikeNumber", 3.0), ("citydash-bikes-a", "freeSlotNumber", 9.0),
        ("citydash-bikes-b", "availableBikeNumber", 0.0), ("citydash-bikes-b", "freeSlotNumber", 15.0)}
    assert [s.external_id for s in out.sensors] == ["citydash-bikes-a", "citydash-bikes-b"]


def test_v2_notification():
    out = decode("v2_notification.json")
    assert {(r.sensor, r.metric, r.value, r.time) for r in out.readings} == {
        ("citydash:streetlight:0816", "on", 0.0, utc(2024, 5, 1, 5)),
        ("TrafficFlowObserved-citydash-lane-0043", "intensity", 64.0, utc(2024, 5, 1, 7, 5))}
    assert {s.kind for s in out.sensors} == {"streetlight", "traffic_counter"}


def test_ld_notification():
    out = decode("ld_notification.jsonld")
    assert [(r.sensor.rsplit(":", 1)[1], r.metric, r.value, r.time.second) for r in out.readings] == [
        ("19", "occupied", 1.0, 40), ("20", "occupied", 0.0, 41)]


def test_geojson_feature_representation():
    out = decode("ld_geojson_feature.geojson")
    [r] = out.readings
    assert (r.metric, r.value, r.time) == ("LAeq", 49.5, utc(2024, 5, 1, 7))
    assert (out.sensors[0].lon, out.sensors[0].lat) == (24.96, 60.19)


def test_feature_collection():
    feature = json.loads((FIXTURES / "ld_geojson_feature.geojson").read_bytes())
    out = decode({"type": "FeatureCollection", "features": [feature]})
    assert values(out) == {"LAeq": 49.5}


# --- details --------------------------------------------------------------------

def test_naive_ngsi_time_is_utc_and_interval_with_duration_uses_start():
    out = decode({"id": "x", "type": "TrafficFlowObserved", "intensity": 5,
                  "dateObserved": "2024-05-01T07:00:00/PT5M"})
    assert out.readings[0].time == utc(2024, 5, 1, 7)


def test_expanded_ld_names_are_compacted_and_unknown_type_gets_snake_case_kind():
    out = decode({"id": "urn:ngsi-ld:Thing:1", "type": "https://example.org/ns#SoilMoistureProbe",
                  "https://example.org/ns#moisture": {"type": "Property", "value": 0.3}})
    assert values(out) == {"moisture": 0.3}
    assert (out.sensors[0].kind, out.sensors[0].domain) == ("soil_moisture_probe", None)


def test_geo_point_v2_location():
    out = decode({"id": "p", "type": "ParkingSpot", "status": "free",
                  "location": {"type": "geo:point", "value": "60.17, 24.94"}})
    assert (out.sensors[0].lon, out.sensors[0].lat) == (24.94, 60.17)


def test_sensor_id_stripping():
    assert ngsi.sensor_id("Madrid-AmbientObserved-28079004-2016-03-15T11:00:00") == "Madrid-AmbientObserved-28079004"
    assert ngsi.sensor_id("plain-id-2016") == "plain-id-2016"
    assert ngsi.sensor_id("2016-03-15T11:00:00") == "2016-03-15T11:00:00"  # never empty


@pytest.mark.parametrize("payload, reason", [
    ([], "empty array"),
    ("text", "expected an entity"),
    ({"subscriptionId": "s", "data": {}}, "'data' is an object, not an array"),
    ({"subscriptionId": "s", "data": []}, "carries no entities"),
    ([{"id": "a", "type": "ParkingSpot"}, 3], "NGSI entity 1 is 3, not an object"),
    ({"type": "ParkingSpot", "status": "free"}, "has no 'id' string"),
    ({"id": "a", "status": "free"}, "has no 'type' string"),
    ({"id": "a", "type": "Streetlight", "voltage": 230, "dateModified": "last week"},
     "dateModified 'last week' is not an ISO 8601"),
    ({"id": "a", "type": "Streetlight", "voltage": 230, "location": {"type": "Point", "coordinates": ["x", 1]}},
     "location longitude value 'x' is not a number"),
    ({"id": "a", "type": "Streetlight", "voltage": 230, "location": "here"}, "not a GeoJSON geometry"),
    ({"id": "a", "type": "Streetlight", "voltage": 230,
      "location": {"type": "geo:point", "value": "north"}}, "is not 'lat, lon'"),
    ({"type": "Feature", "id": "a"}, "without 'properties'"),
])
def test_rejections(payload, reason):
    with pytest.raises(DecodeError) as err:
        decode(payload if not isinstance(payload, str) else json.dumps(payload).encode())
    assert reason in err.value.reason
