"""Figures of the planner explorer: the layered map and the series chart (pure functions).

Every text shown comes in already translated (the page passes ``labels``).
Maps are Plotly ``Choroplethmap`` / ``Scattermap`` traces on ``map_style="white-bg"``
(MapLibre, nothing fetched from the internet); the base geometry is the city
pack's web layers, passed as URLs (the browser caches them) or as parsed
GeoJSON for the traces that need per-feature data.  Map traces carry no text
labels (they would fetch glyphs).  Each clickable point carries
``customdata = "<scope>:<id>"`` so a click selects it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.figures import basemap
from dashboard.figures.basemap import hover

GOOD_TO_BAD = [[0.0, "#1a9850"], [0.5, "#fee08b"], [1.0, "#d73027"]]
DIVERGING = [[0.0, "#2166ac"], [0.5, "#f7f7f7"], [1.0, "#b2182b"]]
STATUS_COLOURS = {"reporting": "#1a9850", "silent": "#9e9e9e", "alert": "#d73027"}
ROAD_BINS = 5
BASE_LINE = "#b0b0b0"
LAND = "#f3f1ec"


@dataclass
class MapLayers:
    """What to draw; ``None`` / empty means the layer is off."""

    centre: tuple[float, float]
    zoom: float
    district_outline_url: str | None = None
    base_roads_url: str | None = None
    districts_url: str | None = None       # choropleth geometry
    district_values: pd.DataFrame | None = None  # scope_id, value (or delta when comparing)
    district_names: dict[str, str] = field(default_factory=dict)
    kpi_label: str = ""
    kpi_unit: str = ""
    better: str = "lower"
    diff: bool = False                      # values are differences (comparison)
    road_lines: pd.DataFrame | None = None  # road_id, name, value (the delta when comparing), lon, lat
    road_label: str = ""
    road_unit: str = ""
    road_better: str = "lower"
    road_diff: bool = False                 # road values are differences (comparison)
    transit_lines: list[dict] = field(default_factory=list)  # route_id, name, colour, lon, lat
    stops_url: str | None = None
    vehicles: pd.DataFrame | None = None
    sensors: pd.DataFrame | None = None     # lon, lat, status, external_id, count
    extras: list[tuple[str, dict]] = field(default_factory=list)  # (url, style)
    labels: dict[str, str] = field(default_factory=dict)


def _scale(better: str, diff: bool):
    """Colour scale where red is worse: higher values are worse when lower is better."""
    scale = DIVERGING if diff else GOOD_TO_BAD
    if better == "lower":
        return scale
    return [[1.0 - p, c] for p, c in reversed(scale)]


def _range(values: np.ndarray, diff: bool) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return (-1.0, 1.0) if diff else (0.0, 1.0)
    if diff:
        m = float(np.abs(finite).max()) or 1.0
        return -m, m
    lo, hi = float(finite.min()), float(finite.max())
    return (lo, hi) if hi > lo else (lo - 1.0, hi + 1.0)


def map_figure(m: MapLayers) -> dict:
    """The map as a plain figure dict (no per-point validation: several times faster at city scale)."""
    data: list[dict] = []
    lab = m.labels
    if m.districts_url and m.district_values is not None:
        v = m.district_values
        col = "delta" if m.diff else "value"
        if m.district_names:  # every district, without a value where none was computed
            ids = sorted(set(m.district_names) | set(v["scope_id"]))
            v = pd.DataFrame({"scope_id": ids}).merge(v[["scope_id", col]], on="scope_id", how="left")
        z = v[col].to_numpy(dtype=float)
        zmin, zmax = _range(z, m.diff)
        names = [m.district_names.get(s, s) for s in v["scope_id"]]
        data.append(dict(type="choroplethmap",
            geojson=m.districts_url, featureidkey="properties.id", locations=list(v["scope_id"]),
            z=[None if not np.isfinite(x) else round(float(x), 3) for x in z], zmin=zmin, zmax=zmax,
            colorscale=_scale(m.better, m.diff), marker={"opacity": 0.7, "line": {"width": 0.8, "color": "#555"}},
            customdata=[f"district:{s}" for s in v["scope_id"]], text=[hover(n) for n in names],
            name=lab.get("districts", ""),
            colorbar={"title": {"text": f"{m.kpi_label} ({m.kpi_unit})"}, "x": 0.0, "xanchor": "left",
                      "len": 0.5, "y": 0.98, "yanchor": "top", "thickness": 12},
            hovertemplate="%{text}<br>" + m.kpi_label + ": %{z} " + m.kpi_unit + "<extra></extra>"))
    if m.road_lines is not None and len(m.road_lines):
        data.extend(_road_traces(m))
    for line in m.transit_lines:
        n = len(line["lon"])
        data.append(dict(type="scattermap",
            mode="lines", lon=line["lon"], lat=line["lat"], line={"width": 3, "color": line["colour"]},
            name=f"{lab.get('route', '')} {hover(line['name'])}", legendgroup="transit",
            customdata=[f"route:{line['route_id']}"] * n, text=[hover(line["name"])] * n,
            hovertemplate="%{text}<extra></extra>"))
    if m.vehicles is not None and len(m.vehicles):
        v = m.vehicles
        data.append(dict(type="scattermap",
            mode="markers", lon=_coords(v["lon"]), lat=_coords(v["lat"]), name=lab.get("vehicles", ""),
            marker={"size": 9, "color": "#6a1b9a"},
            customdata=[f"route:{r}" for r in v["route"]],
            text=[hover(f"{veh} · {r}") for veh, r in zip(v["vehicle"], v["route"])],
            hovertemplate="%{text}<extra></extra>"))
    if m.sensors is not None and len(m.sensors):
        s = m.sensors
        for status, colour in STATUS_COLOURS.items():
            part = s[s["status"] == status]
            if not len(part):
                continue
            count = part["count"].to_numpy()
            data.append(dict(type="scattermap",
                mode="markers", lon=_coords(part["lon"]), lat=_coords(part["lat"]),
                name=lab.get(f"status.{status}", status), legendgroup="sensors",
                marker={"size": np.clip(6 + 2 * np.log2(np.maximum(count, 1)), 6, 22).round(1).tolist(),
                        "color": colour},
                customdata=[f"sensor:{e}" if e else "" for e in part["external_id"]],
                text=[hover(e) if c == 1 else f"{c} × {lab.get('sensors', '')}"
                      for e, c in zip(part["external_id"], count)],
                hovertemplate="%{text}<extra></extra>"))
    sources: dict[str, str] = {}
    if m.district_outline_url:
        sources["districts"] = m.district_outline_url
    if m.base_roads_url:
        sources["roads"] = m.base_roads_url
    styles = {}
    for i, (url, style) in enumerate(m.extras):
        sources[f"extra{i}"] = url
        styles[f"extra{i}"] = style
    layers = basemap.base_layers(sources, styles, land=LAND, edge="#8a8a8a", road=BASE_LINE)
    if m.stops_url:
        layers.append({"sourcetype": "geojson", "source": m.stops_url, "type": "circle",
                       "color": "#37474f", "circle": {"radius": 2.5}})
    layout = basemap.map_layout(m.centre, m.zoom, layers, bgcolor="#ffffff", uirevision="explore-map")
    layout.update(showlegend=True, clickmode="event",
                  legend={"x": 1, "xanchor": "right", "y": 1, "bgcolor": "rgba(255,255,255,0.85)"})
    return {"data": data, "layout": layout}


def _coords(values) -> list[float]:
    """Coordinates as plain lists with 5 decimals (about 1 m): small JSON, readable in the browser."""
    return np.round(np.asarray(values, dtype=float), 5).tolist()


def road_bins(values: np.ndarray, n: int = ROAD_BINS, diff: bool = False) -> np.ndarray:
    """Edges of ``n`` equal-width bins over the finite values (for differences: centred on zero)."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return np.array([-1.0, 1.0]) if diff else np.array([0.0, 1.0])
    if diff:
        m = float(np.abs(finite).max()) or 1.0
        return np.linspace(-m, m, n + 1)
    lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, n + 1)


ROAD_COLOURS = {False: [GOOD_TO_BAD[0][1], "#91cf60", GOOD_TO_BAD[1][1], "#fc8d59", GOOD_TO_BAD[2][1]],
                True: [DIVERGING[0][1], "#92c5de", DIVERGING[1][1], "#f4a582", DIVERGING[2][1]]}


def road_colours(better: str, diff: bool) -> list[str]:
    """The five road classes' colours from the lowest class up: red is worse (as :func:`_scale`)."""
    colours = ROAD_COLOURS[diff]
    return colours if better == "lower" else colours[::-1]


def _road_traces(m: MapLayers) -> list[dict]:
    r = m.road_lines
    values = r["value"].to_numpy(dtype=float)
    edges = road_bins(values, diff=m.road_diff)
    which = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    colours = road_colours(m.road_better, m.road_diff)
    number = "{:+.1f}" if m.road_diff else "{:.1f}"
    # class bounds: whole numbers, or for differences signed with the decimals their range needs
    bound = f"{{:+.{0 if edges[-1] >= 10 else 1 if edges[-1] >= 1 else 2}f}}" if m.road_diff else "{:.0f}"
    all_lon, all_lat = r["lon"].tolist(), r["lat"].tolist()
    ids, names = r["road_id"].tolist(), r["name"].tolist()
    traces = []
    for b in range(len(edges) - 1):
        rows = np.nonzero((which == b) & np.isfinite(values))[0]
        if not len(rows):
            continue
        lon, lat, custom, text = [], [], [], []
        for i in rows:
            xs, ys = all_lon[i], all_lat[i]
            lon += xs
            lon.append(None)
            lat += ys
            lat.append(None)
            custom += [f"road:{ids[i]}"] * len(xs)
            custom.append(None)
            text += [f"{hover(names[i])}: {number.format(values[i])} {m.road_unit}"] * len(xs)
            text.append(None)
        traces.append(dict(type="scattermap",
            mode="lines", lon=lon, lat=lat, line={"width": 3, "color": colours[b * len(colours) // (len(edges) - 1)]},
            name=f"{m.road_label} {bound.format(edges[b])}–{bound.format(edges[b + 1])} {m.road_unit}",
            legendgroup="roads",
            customdata=custom, text=text, hovertemplate="%{text}<extra></extra>"))
    return traces


def local_times(times, tz: str) -> list:
    """UTC times as naive local wall times (Plotly draws what it is given)."""
    idx = pd.DatetimeIndex(pd.to_datetime(pd.Series(times), utc=True))
    return list(idx.tz_convert(ZoneInfo(tz)).tz_localize(None))


def series_figure(series: pd.DataFrame, tz: str, name: str, unit: str, *, compare: pd.DataFrame | None = None,
                  offset: timedelta | None = None, compare_name: str = "", frame_at=None,
                  height: int = 260) -> go.Figure:
    """A KPI (or metric) over time; the comparison period shifted onto the same axis, dashed."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=local_times(series["bucket"], tz), y=series["value"], mode="lines", name=name,
                             line={"color": "#1f4e79", "width": 2}))
    if compare is not None and offset is not None and len(compare):
        shifted = pd.to_datetime(compare["bucket"], utc=True) + pd.Timedelta(offset)
        fig.add_trace(go.Scatter(x=local_times(shifted, tz), y=compare["value"], mode="lines", name=compare_name,
                                 line={"color": "#e65100", "width": 2, "dash": "dash"}))
    if frame_at is not None:
        x = local_times([frame_at], tz)[0]
        fig.add_vline(x=x, line={"color": "#555", "width": 1, "dash": "dot"})
    fig.update_layout(height=height, margin={"l": 40, "r": 10, "t": 10, "b": 30}, yaxis_title=unit,
                      legend={"orientation": "h", "y": -0.25}, uirevision="explore-series")
    return fig


def metric_figure(readings: pd.DataFrame, tz: str, height: int = 220) -> go.Figure:
    """A sensor's metrics over time, one line each."""
    fig = go.Figure()
    for metric, part in readings.groupby("metric", sort=True):
        fig.add_trace(go.Scatter(x=local_times(part["bucket"], tz), y=part["value"], mode="lines", name=metric))
    fig.update_layout(height=height, margin={"l": 40, "r": 10, "t": 10, "b": 30},
                      legend={"orientation": "h", "y": -0.3})
    return fig
