"""The explorer's figures and map helpers: clustering, road colour classes, differences, offline maps."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import plotly.io as pio

from dashboard.api.context import line_index
from dashboard.figures import explore as fig
from dashboard.queries import explore as q

BBOX = (-56.2, -15.7, -56.0, -15.5)


def points(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    status = rng.choice(["reporting", "silent", "alert"], n, p=[0.8, 0.15, 0.05])
    return pd.DataFrame({"lon": rng.uniform(BBOX[0], BBOX[2], n), "lat": rng.uniform(BBOX[1], BBOX[3], n),
                         "status": status, "external_id": [f"s{i}" for i in range(n)]})


def test_cluster_keeps_small_sets_and_aggregates_large_ones():
    small = points(300)
    kept = q.cluster(small, 500, BBOX)
    assert len(kept) == 300 and set(kept["count"]) == {1}
    big = points(20_000, seed=2)
    clustered = q.cluster(big, 2_000, BBOX)
    assert len(clustered) <= 2_000
    assert clustered["count"].sum() == 20_000  # every sensor is in exactly one marker
    # a cell's status is its worst sensor's: as many alert cells as cells holding an alert
    cells = int(np.floor(np.sqrt(2_000)))
    ix = np.clip(((big["lon"] - BBOX[0]) / (BBOX[2] - BBOX[0]) * cells).astype(int), 0, cells - 1)
    iy = np.clip(((big["lat"] - BBOX[1]) / (BBOX[3] - BBOX[1]) * cells).astype(int), 0, cells - 1)
    with_alert = big.assign(cell=ix * cells + iy).groupby("cell")["status"].apply(lambda s: "alert" in set(s))
    assert (clustered["status"] == "alert").sum() == with_alert.sum()
    assert set(clustered.loc[clustered["count"] > 1, "external_id"]) == {""}


def test_difference_is_now_minus_then_per_scope():
    now = pd.DataFrame({"scope_id": ["a", "b", "c"], "value": [10.0, 5.0, np.nan], "sensors": [1, 1, 0],
                        "expected": [1, 1, 1], "confidence": [1.0, 1.0, 0.0]})
    then = pd.DataFrame({"scope_id": ["a", "c"], "value": [4.0, 3.0]})
    out = q.difference(now, then).set_index("scope_id")
    assert out.loc["a", "delta"] == 6.0
    assert np.isnan(out.loc["b", "delta"]) and np.isnan(out.loc["c", "delta"])


def test_road_classes_split_the_value_range():
    edges = fig.road_bins(np.array([10.0, 20.0, np.nan, 60.0]))
    assert edges[0] == 10.0 and edges[-1] == 60.0 and len(edges) == fig.ROAD_BINS + 1
    assert list(fig.road_bins(np.array([np.nan]))) == [0.0, 1.0]


def test_map_figure_is_offline_and_clickable():
    roads = pd.DataFrame({"road_id": ["r1", "r2", "r3"], "name": ["A", "B", "C"], "value": [5.0, 50.0, 95.0],
                          "lon": [[-56.1, -56.09], [-56.08, -56.07, -56.06], [-56.05, -56.04]],
                          "lat": [[-15.6, -15.6], [-15.61, -15.61, -15.62], [-15.63, -15.63]]})
    sensors = q.cluster(points(50), 100, BBOX).assign(count=1)
    m = fig.MapLayers(centre=(-56.1, -15.6), zoom=12, district_outline_url="/layers/city/districts.geojson?v=1",
                      base_roads_url="/layers/city/roads.geojson?v=1", districts_url="/layers/city/districts.geojson?v=1",
                      district_values=pd.DataFrame({"scope_id": ["d1", "d2"], "value": [10.0, np.nan]}),
                      district_names={"d1": "Um", "d2": "Dois", "d3": "Três"}, kpi_label="Congestion", kpi_unit="%",
                      road_lines=roads, road_label="Congestion", road_unit="%", sensors=sensors,
                      extras=[("/layers/city/rivers.geojson?v=1", {"colour": "#3b82c4", "width": 3})],
                      labels={"status.reporting": "Reporting"})
    figure = fig.map_figure(m)
    text = pio.to_json(figure, validate=True)  # a valid Plotly figure
    assert "http" not in text  # no tile, style, sprite or glyph request
    assert figure["layout"]["map"]["style"] == "white-bg"
    choropleth = figure["data"][0]
    assert choropleth["locations"] == ["d1", "d2", "d3"] and choropleth["z"] == [10.0, None, None]
    assert choropleth["customdata"] == ["district:d1", "district:d2", "district:d3"]
    road_traces = [t for t in figure["data"] if t.get("legendgroup") == "roads"]
    assert len(road_traces) == 3  # three classes hold a road
    drawn = {c for t in road_traces for c in t["customdata"] if c}
    assert drawn == {"road:r1", "road:r2", "road:r3"}
    colours = [t["line"]["color"] for t in road_traces]
    assert colours[0] == fig.GOOD_TO_BAD[0][1] and colours[-1] == fig.GOOD_TO_BAD[-1][1]  # lower is better
    assert sum(len(t["lon"]) for t in figure["data"] if t.get("legendgroup") == "sensors") == 50
    assert not any(t.get("mode", "").endswith("text") for t in figure["data"])  # no glyph-fetching labels


def test_difference_map_is_centred_on_zero():
    m = fig.MapLayers(centre=(0, 0), zoom=10, districts_url="/x", diff=True, better="higher",
                      district_values=pd.DataFrame({"scope_id": ["a", "b"], "delta": [-3.0, 1.0]}))
    trace = fig.map_figure(m)["data"][0]
    assert (trace["zmin"], trace["zmax"]) == (-3.0, 3.0)
    assert trace["colorscale"][0][1] == fig.DIVERGING[-1][1]  # higher is better: a fall is red


def test_series_figure_overlays_the_comparison_in_local_time():
    start = datetime(2026, 3, 2, 12, tzinfo=timezone.utc)
    series = pd.DataFrame({"bucket": [start + timedelta(minutes=i) for i in range(3)], "value": [1.0, 2.0, 3.0]})
    other = series.assign(bucket=series["bucket"] - timedelta(days=7), value=[4.0, 5.0, 6.0])
    f = fig.series_figure(series, "America/Cuiaba", "Speed", "km/h", compare=other, offset=timedelta(days=7),
                          compare_name="Previous week", frame_at=start)
    assert [t.name for t in f.data] == ["Speed", "Previous week"]
    assert list(f.data[0].x) == list(f.data[1].x)  # shifted onto the same axis
    assert str(f.data[0].x[0]).startswith("2026-03-02 08:00")  # UTC-4


def test_line_index_joins_parts_of_a_feature():
    geojson = json.loads(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"id": "r1"}, "geometry": {"type": "MultiLineString",
                                                                    "coordinates": [[[0, 0], [1, 1]], [[2, 2], [3, 3]]]}},
        {"type": "Feature", "properties": {"id": "r2"}, "geometry": {"type": "LineString",
                                                                    "coordinates": [[5, 5], [6, 6]]}},
        {"type": "Feature", "properties": {}, "geometry": {"type": "LineString", "coordinates": [[7, 7], [8, 8]]}}]}))
    index = line_index(geojson, "id")
    assert set(index) == {"r1", "r2"}
    assert index["r1"][0] == [0, 1, None, 2, 3] and index["r2"][1] == [5, 6]


def test_road_difference_classes_are_centred_on_zero_and_red_is_worse():
    roads = pd.DataFrame({"road_id": ["r1", "r2", "r3"], "name": ["A", "B", "C"], "value": [-4.0, 1.0, np.nan],
                          "lon": [[-56.1, -56.09], [-56.08, -56.07], [-56.05, -56.04]],
                          "lat": [[-15.6, -15.6], [-15.61, -15.61], [-15.63, -15.63]]})
    m = fig.MapLayers(centre=(-56.1, -15.6), zoom=12, road_lines=roads, road_label="Speed · change",
                      road_unit="km/h", road_better="higher", road_diff=True)
    traces = [t for t in fig.map_figure(m)["data"] if t.get("legendgroup") == "roads"]
    assert np.allclose(fig.road_bins(np.array([-4.0, 1.0, np.nan]), diff=True), [-4.0, -2.4, -0.8, 0.8, 2.4, 4.0])
    assert [t["name"] for t in traces] == ["Speed · change -4.0–-2.4 km/h", "Speed · change +0.8–+2.4 km/h"]
    # higher is better: a fall is red, a rise blue; the road without a value is not drawn
    assert [t["line"]["color"] for t in traces] == [fig.DIVERGING[-1][1], "#92c5de"]
    assert traces[0]["text"][0] == "A: -4.0 km/h" and traces[1]["text"][0] == "B: +1.0 km/h"
    assert fig.road_colours("higher", False)[0] == fig.GOOD_TO_BAD[-1][1]  # plain values: lowest speed red
    assert fig.road_colours("lower", True) == fig.ROAD_COLOURS[True]


def test_hover_labels_escape_markup_from_outside_data():
    """Names, ids and routes come from MQTT, GTFS and city packs; Plotly renders <a href> and other
    tags in hover labels, so they arrive escaped (the text itself unchanged)."""
    import pandas as pd

    from dashboard.figures import basemap
    from dashboard.figures import explore as fig

    evil = '<a href="https://evil.example">x</a>'
    assert basemap.hover(evil) == '&lt;a href="https://evil.example"&gt;x&lt;/a&gt;' and basemap.hover(None) == ""
    m = fig.MapLayers(centre=(0.0, 0.0), zoom=10)
    m.vehicles = pd.DataFrame({"vehicle": [evil], "route": ["<b>1</b>"], "lon": [0.0], "lat": [0.0]})
    m.transit_lines = [{"route_id": "r", "name": evil, "colour": "#000", "lon": [0, 1], "lat": [0, 1]}]
    figure = fig.map_figure(m)
    texts = [t for trace in figure["data"] for t in (trace.get("text") or [])] + \
            [trace.get("name") or "" for trace in figure["data"]]
    assert texts and not any("<a " in t or "<b>" in t for t in texts if t), texts
    trace = basemap.point_trace([0], [0], colour="#000", text=[evil])
    assert "<a " not in trace.text[0]
