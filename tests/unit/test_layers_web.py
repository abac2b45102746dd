"""Web-ready layers (layers.web): size budget, coverage topology, files and manifest."""
from __future__ import annotations

import gzip
import hashlib
import json
import math
import time

import numpy as np
import pytest
import shapely

from layers import DEMO_CITY
from layers.pack import load_pack
from layers.web import band_for_zoom, build, layer_path, load_layer, read_manifest

CENTRE = (-47.93, -15.78)
M_LON = 111_320 * math.cos(math.radians(CENTRE[1]))
M_LAT = 110_600


def lonlat(xy):
    xy = np.asarray(xy, dtype=float)
    return np.column_stack([CENTRE[0] + xy[:, 0] / M_LON, CENTRE[1] + xy[:, 1] / M_LAT])


def feature_collection(features) -> str:
    return json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": p, "geometry": shapely.geometry.mapping(g)} for p, g in features]})


def make_big_city(root, n_districts=100, n_roads=20_000, n_sensors=5_000, seed=7):
    """A synthetic 20 x 20 km city: Voronoi districts with dense (10 m) edges, a wiggly street grid."""
    rng = np.random.default_rng(seed)
    half = 10_000
    seeds = rng.uniform(-half, half, (n_districts, 2))
    frame = shapely.box(-half, -half, half, half)
    cells = [c.intersection(frame) for c in shapely.get_parts(shapely.voronoi_polygons(
        shapely.MultiPoint(seeds), extend_to=frame.buffer(1_000)))]
    def warp(xy):  # a smooth displacement of every vertex: wiggly edges that still match exactly
        x, y = xy[:, 0], xy[:, 1]
        return np.column_stack([x + 20 * np.sin(y / 60) + 8 * np.sin(x / 23),
                                y + 20 * np.cos(x / 70) + 8 * np.sin(y / 29)])

    districts = []
    for i, cell in enumerate(cells):
        dense = shapely.segmentize(cell, 10.0)
        districts.append(({"id": f"d{i:03d}", "name": f"Bairro {i}"},
                          shapely.Polygon(lonlat(warp(np.asarray(dense.exterior.coords))))))
    # street grid: n lines per axis, split into segments with 6 wiggly vertices each
    per_axis = n_roads // 2
    n_lines = 100
    seg_per_line = per_axis // n_lines
    step = 2 * half / seg_per_line
    roads = []
    for axis in (0, 1):
        for k in range(n_lines):
            c = -half + (k + 0.5) * 2 * half / n_lines
            cls = "arterial" if k % 12 == 0 else "collector" if k % 4 == 0 else "local"
            name = f"Avenida {axis}-{k}" if cls == "arterial" else f"Rua {axis}-{k}"
            for j in range(seg_per_line):
                t = -half + j * step + np.linspace(0, step, 6)
                wiggle = 8 * np.sin(t / 37.0 + k)
                xy = np.column_stack([t, c + wiggle]) if axis == 0 else np.column_stack([c + wiggle, t])
                roads.append(({"id": f"r{len(roads):05d}", "name": name, "class": cls, "speed_kmh": 30,
                               "lanes": 2}, shapely.LineString(lonlat(xy))))
    pts = lonlat(rng.uniform(-half, half, (n_sensors, 2)))
    rows = ["id,kind,domain,name,lon,lat,road,stop,metrics"]
    rows += [f"s{i},noise,infrastructure,Ruído {i},{x:.6f},{y:.6f},,,laeq" for i, (x, y) in enumerate(pts)]
    (root / "districts.geojson").write_text(feature_collection(districts))
    (root / "roads.geojson").write_text(feature_collection(roads))
    (root / "sensors.csv").write_text("\n".join(rows) + "\n")
    x0, y0 = lonlat([[-half, -half]])[0]
    x1, y1 = lonlat([[half, half]])[0]
    (root / "city.yaml").write_text(
        f"name: Big test city\nlocale: en\ntimezone: America/Sao_Paulo\ncentre: [{CENTRE[0]}, {CENTRE[1]}]\n"
        f"zoom: 11\nbbox: [{x0 - 0.01}, {y0 - 0.01}, {x1 + 0.01}, {y1 + 0.01}]\nattribution: test\n"
        "layers:\n  districts: districts.geojson\n  roads: roads.geojson\n  sensors: sensors.csv\n")
    return root


def read_geoms(path):
    data = json.loads(path.read_text())
    return data, [shapely.geometry.shape(f["geometry"]) for f in data["features"]]


def assert_tiles_like(original, simplified):
    """Same union area within 0.5 %, and no overlaps between neighbours."""
    orig_area = shapely.union_all(original).area
    union = shapely.union_all(simplified).area
    assert abs(union - orig_area) / orig_area < 0.005
    assert abs(sum(g.area for g in simplified) - union) / union < 1e-6  # no overlaps in total
    tree = shapely.STRtree(simplified)
    left, right = tree.query(simplified, predicate="intersects")
    pairs = left < right
    overlap = shapely.area(shapely.intersection(np.asarray(simplified)[left[pairs]],
                                                np.asarray(simplified)[right[pairs]]))
    assert overlap.max(initial=0) < 1e-6 * orig_area / len(simplified)
    assert all(g.is_valid for g in simplified)


@pytest.fixture(scope="module")
def big_city(tmp_path_factory):
    root = make_big_city(tmp_path_factory.mktemp("big"))
    started = time.perf_counter()
    pack = load_pack(root)
    out = root / "web"
    manifest = build(pack, out)
    return pack, out, manifest, time.perf_counter() - started


def test_budget_at_city_zoom(big_city):
    pack, out, manifest, seconds = big_city
    assert len(pack.districts) == 100 and len(pack.roads) == 20_000 and len(pack.sensors) == 5_000
    sizes = {(f["band"], f["layer"]): f["bytes"] for f in manifest["files"]}
    assert (out / "districts.geojson").exists() is False
    assert sizes[("city", "districts")] < 300_000
    assert sizes[("city", "roads")] < 2_000_000
    # local streets only appear from district zoom on
    city_roads, _ = read_geoms(out / "city" / "roads.geojson")
    assert {f["properties"]["class"] for f in city_roads["features"]} == {"arterial", "collector"}
    district_roads, _ = read_geoms(out / "district" / "roads.geojson")
    assert len(district_roads["features"]) == 20_000
    assert seconds < 20


def test_districts_still_tile_after_simplification(big_city):
    pack, out, manifest, _ = big_city
    original = list(pack.districts.geometry.values)
    for band in ("city", "district", "street"):
        data, simplified = read_geoms(out / band / "districts.geojson")
        assert [f["properties"]["id"] for f in data["features"]] == list(pack.districts["id"])
        assert_tiles_like(original, simplified)
    # and the city band really is simplified
    _, city = read_geoms(out / "city" / "districts.geojson")
    assert shapely.get_num_coordinates(city).sum() < 0.2 * shapely.get_num_coordinates(original).sum()


def test_coordinates_rounded_to_5_decimals(big_city):
    _, out, _, _ = big_city
    _, geoms = read_geoms(out / "district" / "roads.geojson")
    coords = shapely.get_coordinates(geoms[:500])
    assert np.allclose(coords, np.round(coords, 5), atol=1e-12)


@pytest.fixture(scope="module")
def demo_web(tmp_path_factory):
    pack = load_pack(DEMO_CITY)
    out = tmp_path_factory.mktemp("demo-web")
    return pack, out, build(pack, out)


def test_manifest_gzip_and_etag(demo_web):
    pack, out, manifest = demo_web
    assert read_manifest(out) == manifest
    assert manifest["pack"]["slug"] == "demo-cuiaba"
    assert manifest["layers"]["rivers"]["style"] == {"colour": "#3b82c4", "width": 3.0, "opacity": 0.9,
                                                     "label": "Rios"}
    layers = {f["layer"] for f in manifest["files"]}
    assert layers == {"districts", "roads", "transit_lines", "stops", "rivers", "parks"}
    for entry in manifest["files"]:
        data = (out / entry["file"]).read_bytes()
        assert len(data) == entry["bytes"] and hashlib.sha256(data).hexdigest() == entry["sha256"]
        packed = (out / (entry["file"] + ".gz")).read_bytes()
        assert gzip.decompress(packed) == data and len(packed) == entry["gzip_bytes"]
        assert len(json.loads(data)["features"]) == entry["features"]


def test_demo_layers_tile_and_are_small(demo_web):
    pack, out, manifest = demo_web
    _, simplified = read_geoms(out / "city" / "districts.geojson")
    assert_tiles_like(list(pack.districts.geometry.values), simplified)
    city_stops = load_layer(out, "stops", band="city")["features"]
    assert city_stops and all(f["properties"]["stop_id"].startswith("E") for f in city_stops)  # stations only
    lines = load_layer(out, "transit_lines", zoom=12)["features"]
    assert len(lines) == len(pack.transit.routes)  # the two directions of a route drawn once
    assert sum(f["bytes"] for f in manifest["files"] if f["band"] == "city") < 200_000


def test_build_is_deterministic_and_removes_stale_files(demo_web, tmp_path):
    pack, out, manifest = demo_web
    (tmp_path / "city").mkdir()
    (tmp_path / "city" / "old_layer.geojson").write_text("{}")
    again = build(pack, tmp_path)
    assert again == manifest | {"files": again["files"]}
    assert [f["sha256"] for f in again["files"]] == [f["sha256"] for f in manifest["files"]]
    assert not (tmp_path / "city" / "old_layer.geojson").exists()


def test_load_layer_by_band_or_zoom(demo_web):
    _, out, _ = demo_web
    assert band_for_zoom(11) == "city" and band_for_zoom(12.5) == "city" and band_for_zoom(13) == "district"
    assert band_for_zoom(14.9) == "district" and band_for_zoom(15) == "street" and band_for_zoom(20) == "street"
    layer = load_layer(out, "districts", zoom=16)
    assert layer["type"] == "FeatureCollection" and len(layer["features"]) == 20
    assert load_layer(out, "districts", band="street") is layer  # cached
    assert layer_path(out, "roads", band="district", gzipped=True).name == "roads.geojson.gz"
    with pytest.raises(KeyError):
        load_layer(out, "nope")
