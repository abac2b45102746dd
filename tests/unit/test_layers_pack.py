"""City packs: loading, reprojection, row-level validation (layers.pack)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import shapely

from layers import DEMO_CITY
from layers.pack import load_pack, read_pack
from layers.problems import PackError, Problem
from layers.text import slugify

PACKS = Path(__file__).resolve().parents[1] / "fixtures" / "packs"


@pytest.fixture(scope="module")
def demo():
    return load_pack(DEMO_CITY)


def errors_of(path) -> list[Problem]:
    with pytest.raises(PackError) as info:
        load_pack(path)
    return info.value.errors


# --- the demo pack ---------------------------------------------------------


def test_demo_pack_counts(demo):
    c = demo.config
    assert (c.locale, c.timezone, c.slug) == ("pt-BR", "America/Cuiaba", "demo-cuiaba")
    assert "synthetic" in c.attribution.lower() and "not real data" in c.attribution
    assert 18 <= len(demo.districts) <= 22
    assert demo.districts["id"].is_unique and demo.districts["name"].notna().all()
    routes = demo.transit.routes
    assert (routes["mode"] == "bus").sum() >= 8
    assert (routes["type"] == 0).sum() == 1  # the VLT (light rail)
    assert len(demo.transit.lines) >= len(routes) and len(demo.transit.stops) > 50
    assert len(demo.roads) > 1000
    assert set(demo.roads["class"]) >= {"arterial", "collector", "local", "rail"}
    assert demo.roads.loc[demo.roads["class"] == "arterial", "name"].str.startswith("Avenida").all()


def test_demo_sensors_placed_and_in_districts(demo):
    s = demo.sensors
    assert len(s) >= 1500
    assert s.geometry.notna().all(), "every demo sensor is placed"
    assert s["district_id"].notna().mean() >= 0.95
    assert set(s["domain"]) == {"mobility", "infrastructure"}
    kinds = set(s["kind"])
    assert kinds >= {"traffic_counter", "parking", "bike_dock", "air_quality", "noise", "energy", "water",
                     "streetlight", "waste_bin"}
    counters = s[s["kind"] == "traffic_counter"]
    assert counters["road"].notna().all() and counters["road"].isin(demo.roads["id"]).all()
    assert all(a["free_flow_kmh"] > 0 and a["road_class"] in ("arterial", "collector") for a in counters["attributes"])
    assert all(isinstance(a["capacity"], int) for a in s.loc[s["kind"] == "parking", "attributes"])
    assert s.loc[s["kind"] == "bike_dock", "stop"].notna().any()
    assert (s.loc[s["kind"] == "air_quality", "metrics"].map(tuple) == ("pm25", "pm10", "no2", "o3")).all()


def test_demo_sensor_kinds_declare_domains_and_units(demo):
    kinds = demo.sensor_kinds()
    assert kinds["traffic_counter"].domain == "mobility"
    assert kinds["vehicle"].domain == "transport"
    assert kinds["streetlight"].domain == "infrastructure"
    assert kinds["traffic_counter"].units == {"flow": "veh/h", "speed": "km/h", "occupancy": "%"}
    assert kinds["air_quality"].units["pm25"] == "ug/m3"
    assert all(k.units for k in kinds.values())


def test_missing_kpis_file_means_default_catalogue(demo, tmp_path):
    assert demo.config.kpis_file == "kpis.yaml"
    if not (DEMO_CITY / "kpis.yaml").exists():
        assert demo.kpis is None
        assert any("default KPI catalogue" in p.reason and not p.is_error for p in demo.warnings)
    pack = tmp_path / "pack"
    shutil.copytree(PACKS / "named_only", pack)
    (pack / "kpis.yaml").write_text("kpis: []\n")
    text = (pack / "city.yaml").read_text().replace("layers:\n", "layers:\n  kpis: kpis.yaml\n")
    (pack / "city.yaml").write_text(text)
    assert load_pack(pack).kpis == (pack / "kpis.yaml").resolve()


# --- projected CRS -----------------------------------------------------------


def test_utm21s_pack_round_trips_to_lonlat():
    """GeoPackage and Shapefile in EPSG:32721 come back as the lon/lat they were made from."""
    pack = load_pack(PACKS / "utm21s")
    expected = json.loads((PACKS / "utm21s" / "lonlat.json").read_text())
    assert pack.districts.crs.to_epsg() == 4326 and pack.roads.crs.to_epsg() == 4326
    reports = {r.layer: r for r in pack.reports}
    assert reports["districts"].crs == "EPSG:32721" and reports["roads"].crs == "EPSG:32721"
    for layer, gdf in (("districts", pack.districts), ("roads", pack.roads)):
        for fid, geom in zip(gdf["id"], gdf.geometry):
            want = shapely.geometry.shape(expected[layer][fid])
            got = shapely.get_coordinates(geom)
            ref = shapely.get_coordinates(want)
            assert got.shape == ref.shape
            assert abs(got - ref).max() < 1e-6, f"{layer} {fid}"
    assert pack.roads.set_index("id").loc["r-1", "speed_kmh"] == 60
    tc = pack.sensors.set_index("id").loc["tc-1"]
    mid = shapely.line_interpolate_point(pack.roads.set_index("id").loc["r-1", "geometry"], 0.5, normalized=True)
    assert tc.geometry.equals_exact(mid, 1e-9)  # placed at the road's midpoint
    assert pack.sensors.set_index("id").loc["aq-1", "district_id"] == "norte-oeste"
    assert pack.sensors.set_index("id").loc["aq-1", "domain"] == "infrastructure"  # from the kind


def test_shapefile_without_prj_is_an_error(tmp_path):
    pack = tmp_path / "pack"
    shutil.copytree(PACKS / "utm21s", pack)
    (pack / "roads.prj").unlink()
    errors = errors_of(pack)
    assert [str(e) for e in errors] == ["roads.shp: no CRS declared (a Shapefile needs its .prj; set the layer CRS)"]


def test_projected_coordinates_in_geojson_without_crs_are_caught(tmp_path):
    pack = tmp_path / "pack"
    shutil.copytree(PACKS / "named_only", pack)
    utm = '{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"name":"X"},' \
          '"geometry":{"type":"Polygon","coordinates":[[[600000,8270000],[601000,8270000],[601000,8271000],' \
          '[600000,8270000]]]}}]}'
    (pack / "districts.geojson").write_text(utm)
    (error,) = errors_of(pack)
    assert error.file == "districts.geojson" and "not lon/lat degrees" in error.reason


# --- broken rows ---------------------------------------------------------------


def test_broken_pack_reports_every_error_with_file_row_and_reason():
    with pytest.raises(PackError) as info:
        load_pack(PACKS / "broken")
    found = {(p.file, p.row, p.reason) for p in info.value.errors}
    expected = {
        ("districts.geojson", 4, "duplicate id 'centro' (first at row 1)"),
        ("districts.geojson", 5, "missing name"),
        ("districts.geojson", 6, "missing or empty geometry"),
        ("roads.geojson", 2, "unknown class 'highway' (expected one of motorway, arterial, collector, local, "
                             "service, cycleway, footway, rail, tram)"),
        ("roads.geojson", 3, "speed_kmh -5 out of range (1-200)"),
        ("sensors.csv", 2, "lat 123.4 out of range"),
        ("sensors.csv", 3, "unknown road 'r-999'"),
        ("sensors.csv", 4, "duplicate id 'ok-1' (first at row 1)"),
        ("sensors.csv", 5, "missing name"),
        ("sensors.csv", 6, "unknown kind 'teleporter' (sensor_kinds declares noise, traffic_counter)"),
        ("sensors.csv", 7, "metric(s) pm25 not declared for kind 'noise' (laeq)"),
        ("sensors.csv", 8, "lon -15.615 / lat -56.095 look swapped (the swapped point is in the city bbox)"),
    }
    assert found == expected
    assert str(Problem("sensors.csv", 2, "lat 123.4 out of range")) == "sensors.csv row 2: lat 123.4 out of range"
    # the self-intersecting polygon is repaired, and that is a warning, not an error
    warnings = info.value.warnings
    assert any(w.file == "districts.geojson" and w.row == 3 and "Self-intersection" in w.reason for w in warnings)
    report = next(r for r in info.value.reports if r.layer == "districts")
    assert report.repairs == 1
    assert "12 error(s)" in str(info.value)


def test_repaired_polygon_loads_with_a_warning(tmp_path):
    pack = tmp_path / "pack"
    shutil.copytree(PACKS / "broken", pack)
    gj = json.loads((pack / "districts.geojson").read_text())
    gj["features"] = gj["features"][:3]  # centro, norte and the bow-tie 'sul'
    (pack / "districts.geojson").write_text(json.dumps(gj))
    text = (pack / "city.yaml").read_text()
    (pack / "city.yaml").write_text("\n".join(l for l in text.splitlines() if "roads" not in l and "sensors" not in l))
    loaded = load_pack(pack)
    sul = loaded.districts.set_index("id").loc["sul", "geometry"]
    assert sul.is_valid and sul.geom_type in ("Polygon", "MultiPolygon") and sul.area > 0
    assert [w.row for w in loaded.warnings if "repaired" in w.reason] == [3]


def test_config_problems_are_collected_together(tmp_path):
    pack = tmp_path / "pack"
    shutil.copytree(PACKS / "named_only", pack)
    (pack / "city.yaml").write_text(
        "name: X\nlocale: xx-QQ\ntimezone: Mars/Olympus\ncentre: [200, 0]\nbbox: [1, 2, 0, 3]\n"
        "layers:\n  districts: missing.geojson\n  extra:\n    - file: districts.geojson\n      name: outline\n"
        "      style: {colour: red, opacity: 3}\n")
    reasons = " | ".join(str(e) for e in errors_of(pack))
    for part in ("unknown locale 'xx-QQ'", "'Mars/Olympus' is not an IANA time zone", "centre [200.0, 0.0]",
                 "bbox [1.0, 2.0, 0.0, 3.0]", "missing.geojson: file not found",
                 "colour 'red' must be a hex colour", "opacity 3 must be between 0 and 1"):
        assert part in reasons


def test_missing_pack_and_missing_city_yaml(tmp_path):
    assert [e.reason for e in errors_of(tmp_path / "nope")] == ["city pack folder not found"]
    assert [str(e) for e in errors_of(tmp_path)] == ["city.yaml: missing: a city pack needs a city.yaml"]


# --- districts with names only -------------------------------------------------


def test_district_ids_derived_from_names():
    """An open-data FeatureCollection with ``name`` but no ``id``: ids are name slugs."""
    pack = load_pack(PACKS / "named_only")
    assert list(pack.districts["id"]) == ["innere-stadt", "leopoldstadt", "landstrasse", "wieden", "margareten",
                                          "dobling"]
    assert pack.districts.set_index("id").loc["dobling", "name"] == "Döbling"
    assert pack.districts.set_index("id").loc["wieden", "attributes"]["cartodb_id"] == 4
    assert any("ids derived from names" in w.reason for w in pack.warnings)
    assert slugify("Rudolfsheim-Fünfhaus") == "rudolfsheim-funfhaus"


def test_names_with_the_same_slug_are_duplicate_ids(tmp_path):
    pack = tmp_path / "pack"
    shutil.copytree(PACKS / "named_only", pack)
    gj = json.loads((pack / "districts.geojson").read_text())
    gj["features"][1]["properties"]["name"] = "INNERE  stadt"
    (pack / "districts.geojson").write_text(json.dumps(gj))
    (error,) = errors_of(pack)
    assert str(error) == "districts.geojson row 2: duplicate id 'innere-stadt' (first at row 1)"


def test_overlapping_districts_warn(tmp_path):
    pack = tmp_path / "pack"
    shutil.copytree(PACKS / "named_only", pack)
    gj = json.loads((pack / "districts.geojson").read_text())
    ring = gj["features"][0]["geometry"]["coordinates"][0][0]
    for pt in ring:
        pt[0] += 0.005  # shift into its neighbour
    (pack / "districts.geojson").write_text(json.dumps(gj))
    _, problems, _ = read_pack(pack)
    assert any("do not tile cleanly" in p.reason and not p.is_error for p in problems)


def test_sensors_as_geojson_with_points_and_references(tmp_path):
    pack = tmp_path / "pack"
    shutil.copytree(PACKS / "utm21s", pack)
    (pack / "sensors.csv").unlink()
    (pack / "sensors.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"id": "aq-1", "kind": "air_quality", "name": "Ar", "metrics": "pm25;no2",
                                           "owner": "prefeitura"},
         "geometry": {"type": "Point", "coordinates": [-56.085, -15.61]}},
        {"type": "Feature", "properties": {"id": "tc-1", "kind": "traffic_counter", "name": "Contador", "road": "r-2"},
         "geometry": None},
    ]}))
    text = (pack / "city.yaml").read_text().replace("sensors.csv", "sensors.geojson")
    (pack / "city.yaml").write_text(text)
    sensors = load_pack(pack).sensors.set_index("id")
    assert sensors.loc["aq-1", "metrics"] == ["pm25", "no2"]
    assert sensors.loc["aq-1", "attributes"] == {"owner": "prefeitura"}
    assert sensors.loc["aq-1", "district_id"] == "sul-leste"
    assert sensors.loc["tc-1", "domain"] == "mobility"  # well-known kind
    assert abs(sensors.loc["tc-1", "geometry"].x - (-56.09)) < 1e-6  # midpoint of r-2
