"""Pure logic of the wall screen: URL parameters, views, levels, tiles, map pieces, alert rows."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from dashboard import i18n
from dashboard.figures import basemap
from dashboard.figures import wall as fig
from kpis.catalogue import load_catalogue
from dashboard.queries import wall as q

PACK = Path(__file__).resolve().parents[2] / "layers" / "demo_city"
CAT = load_catalogue(PACK)
DISTRICTS = json.loads((PACK / "districts.geojson").read_text())
ROADS = json.loads((PACK / "roads.geojson").read_text())


def parse(**kw):
    args = {"view": None, "views": None, "rotate": None, "district": None, "refresh": None}
    args.update(kw)
    return q.parse_request(args["view"], args["views"], args["rotate"], args["district"], args["refresh"], 5,
                           {"centro", "porto"})


def test_request_defaults_and_rotation():
    assert parse() == q.WallRequest(("overview",), 0, None, 5)
    r = parse(views="overview, mobility,transport", rotate="30", district="porto", refresh="2")
    assert r == q.WallRequest(("overview", "mobility", "transport"), 30, "porto", 2)
    assert parse(views="mobility", rotate="30").rotate_s == 0  # one view: nothing to rotate


@pytest.mark.parametrize("kw,key", [
    ({"view": "traffic"}, "wall.error.view"),
    ({"views": "overview,nope"}, "wall.error.view"),
    ({"district": "atlantis"}, "wall.error.district"),
    ({"views": "overview,mobility", "rotate": "often"}, "wall.error.number"),
    ({"views": "overview,mobility", "rotate": "2"}, "wall.error.number"),
    ({"refresh": "0"}, "wall.error.number"),
])
def test_bad_parameters_give_a_translated_message(kw, key):
    with pytest.raises(q.WallRequestError) as err:
        parse(**kw)
    assert err.value.key == key
    for locale in i18n.LOCALES:  # every placeholder filled, in every language
        text = i18n.t(err.value.key, locale, **err.value.values)
        assert "{" not in text and text != key


def test_views_take_their_kpis_from_the_catalogue():
    assert q.view_kpis(CAT, "transport") == [k.id for k in CAT if k.domain == "transport"]
    assert set(q.view_kpis(CAT, "infrastructure")) <= {k.id for k in CAT if k.domain in ("infrastructure", "health")}
    assert all(len(q.view_kpis(CAT, v)) <= q.MAX_TILES for v in q.VIEWS)
    for view in q.VIEWS:  # the map KPI has districts and thresholds, even for transport (no district scope)
        kpi = CAT[q.map_kpi(CAT, view)]
        assert "district" in kpi.scopes and kpi.thresholds.critical is not None
    assert q.map_kpi(CAT, "infrastructure") == "air_quality_index"


def test_levels_follow_the_alert_thresholds():
    congestion, speed = CAT["congestion_index"], CAT["arterial_speed"]  # lower / higher is better
    assert [q.level(congestion, v) for v in (10, 40, 69.9, 70, None, float("nan"))] == \
        ["ok", "warning", "warning", "critical", "unknown", "unknown"]
    assert [q.level(speed, v) for v in (50, 25, 15)] == ["ok", "warning", "critical"]


def test_downsample_keeps_means_and_gaps():
    times = pd.date_range("2026-01-01", periods=24 * 60, freq="1min", tz="UTC")
    values = [float(i % 60) for i in range(len(times))]
    values[:60] = [float("nan")] * 60
    t, v = q.downsample(pd.DataFrame({"bucket": times, "value": values}))
    assert len(t) <= q.SPARK_POINTS and len(t) == len(v)
    assert v[0] is None  # a whole bucket without data stays a gap
    assert v[-1] == pytest.approx(sum(range(45, 60)) / 15)  # mean of the last 15 minutes
    assert q.downsample(pd.DataFrame({"bucket": [], "value": []})) == ([], [])


def test_stale_and_takeover():
    now = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    assert not q.is_stale((now - timedelta(seconds=100)).isoformat(), now, 180)
    assert q.is_stale((now - timedelta(seconds=181)).isoformat(), now, 180)
    assert q.is_stale(None, now, 180)
    alerts = [{"id": 3, "severity": "critical", "state": "acknowledged"}, {"id": 2, "severity": "warning", "state": "open"},
              {"id": 1, "severity": "critical", "state": "open"}]
    assert q.takeover(alerts)["id"] == 1
    assert q.takeover(alerts[:2]) is None


def test_tile_texts_value_trend_confidence():
    kpi = CAT["parking_occupancy"]  # lower is better
    t = fig.tile(kpi, {"value": 87.5, "level": "ok", "confidence": 0.75, "sensors": 3, "expected": 4}, 70.0, "pt-BR")
    assert t["value"] == "87,5" and t["unit"] == "%" and t["icon"] == "●" and t["status_text"] == "Normal"
    assert t["trend"] == "▲ 25% vs semana passada (pior)" and "wall-worse" in t["trend_class"]
    assert t["confidence"] == "confiança 75% (3 de 4)"
    better = fig.tile(kpi, {"value": 50.0, "level": "ok"}, 100.0, "en")
    assert better["trend"] == "▼ 50% vs last week (better)"
    assert fig.tile(kpi, {"value": 50.0}, None, "en")["trend"] == "no value last week"
    empty = fig.tile(kpi, None, None, "ja")
    assert empty["value"] == "–" and empty["icon"] == "○" and empty["status_text"] == "データなし"


def test_district_colour_scale_puts_the_thresholds_in_place():
    lo, hi, scale = fig.district_scale(CAT["congestion_index"])  # 20 / 40 / 70
    assert (lo, hi) == (20.0, 70.0)
    assert scale[1] == [pytest.approx(0.4), fig.COLOURS["warning"]] and scale[-1][1] == fig.COLOURS["critical"]
    lo, hi, scale = fig.district_scale(CAT["bike_availability"])  # higher is better: 50 / 25 / 10
    assert (lo, hi) == (10.0, 50.0) and scale[0][1] == fig.COLOURS["critical"] and scale[-1][1] == fig.COLOURS["ok"]


def test_alert_rows_and_ages():
    now = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    alert = {"id": 7, "kind": "threshold", "kpi_id": "parking_occupancy", "scope_type": "district", "scope_id": "centro",
             "severity": "critical", "state": "acknowledged", "value": 99.0, "threshold": 98.0, "unit": "%",
             "opened_at": (now - timedelta(minutes=125)).isoformat(), "acknowledged_by": "maria",
             "ack_comment": "crew sent"}
    row = fig.alert_item(alert, CAT.kpis, "en", now, "America/Cuiaba")
    assert row["title"] == "Parking occupancy · district centro"
    assert row["value"] == "99.0 % (limit 98.0 %)" and row["age"] == "2 h ago" and row["icon"] == "◆"
    assert row["acked"] == "acknowledged by maria: crew sent" and not row["open"]
    health = {**alert, "kind": "health", "kpi_id": "sensor_silent", "scope_type": "sensor", "scope_id": "tc-0001",
              "state": "open", "value": None}
    assert fig.alert_item(health, CAT.kpis, "ja", now, "UTC")["title"] == "センサー tc-0001 が無応答"
    assert [fig.age_text(s, "en") for s in (5, 90, 7200, 200000)] == ["5 s", "1 min", "2 h", "2 d"]


def test_basemap_geometry_helpers():
    ids = [f["properties"]["id"] for f in ROADS["features"][:3]]
    lon, lat = basemap.line_coordinates(ROADS, ids)
    points = sum(len(f["geometry"]["coordinates"]) if f["geometry"]["type"] == "LineString"
                 else sum(map(len, f["geometry"]["coordinates"])) for f in ROADS["features"][:3])
    assert len(lon) == len(lat) == points + lon.count(None) and lon.count(None) >= 3
    centres = basemap.centroids(DISTRICTS)
    assert set(centres) == {f["properties"]["id"] for f in DISTRICTS["features"]}
    first = DISTRICTS["features"][0]["properties"]["id"]
    box = basemap.bounds(DISTRICTS, first)
    assert box[0] <= centres[first][0] <= box[2] and box[1] <= centres[first][1] <= box[3]
    assert basemap.bounds(DISTRICTS, "nowhere") is None
    city = (-56.17, -15.66, -56.002, -15.513)
    assert 11 < basemap.zoom_for(city, 740, 960) < 13 < basemap.zoom_for(box, 740, 960)


def test_basemap_traces_and_layout_stay_offline():
    choro = basemap.district_choropleth("/layers/city/districts.geojson", {"a": 1.0, "b": None}, zmin=0, zmax=2,
                                        district_ids=["b", "a", "c"])
    assert list(choro.locations) == ["b", "a", "c"] and list(choro.z)[1] == 1.0
    roads = basemap.road_traces(ROADS, {ROADS["features"][0]["properties"]["id"]: 80.0,
                                        ROADS["features"][1]["properties"]["id"]: 10.0},
                                lambda v: "critical" if v > 70 else "ok", {"ok": "#00f", "critical": "#f00"})
    assert [t.line.color for t in roads] == ["#00f", "#f00"] and all(None in t.lon for t in roads)
    layout = basemap.map_layout((-56.1, -15.6), 12, basemap.base_layers({"districts": "/layers/a", "rivers": "/r"},
                                                                        {"rivers": {"colour": "#3b82c4", "width": 3}}))
    assert layout["map"]["style"] == "white-bg"
    sources = [layer["source"] for layer in layout["map"]["layers"]]
    assert all(isinstance(s, dict) or s.startswith("/") for s in sources)  # nothing outside this server
    with_tiles = basemap.map_layout((0, 0), 3, tile_url="https://tiles.example.city/{z}/{x}/{y}.png")
    assert with_tiles["map"]["layers"][1]["source"] == ["https://tiles.example.city/{z}/{x}/{y}.png"]
