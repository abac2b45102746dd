"""Figures and the equivalent tables of the public view: pure functions of a snapshot.

The map colours districts by a KPI's newest public value (districts whose
group is too small are hatched grey and named as suppressed in the table);
the trend is the city or one district over 24 hours.  Every figure has a
table of the same figures next to it (text alternative).  Maps use the
offline MapLibre base map of ``dashboard.figures.basemap`` (no text labels,
no tiles).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from dashboard import i18n
from dashboard.figures.basemap import base_layers, map_layout
from kpis.catalogue import Kpi
from dashboard.public.queries import Point, Snapshot

SEPARATORS = {"pt-BR": ",.", "en": ".,", "ja": ".,"}
# Light, high-contrast palette (WCAG 2.1 AA against white for text colours).
INK = "#1a1a1a"
GRID = "#d0d5da"
LINE = "#0b5394"
SUPPRESSED = "#9aa3ab"
# Sequential scales spelt out (ColorBrewer Blues / OrRd): the figure is sent unvalidated, and
# Plotly.js knows no "Oranges"; neither starts grey, so no value looks like a suppressed district.
BETTER_HIGH = [[0.0, "#deebf7"], [0.5, "#6baed6"], [1.0, "#08306b"]]
BETTER_LOW = [[0.0, "#fee8c8"], [0.5, "#fc8d59"], [1.0, "#990000"]]
DIGITS = 1
MAP_HEIGHT = 420
MAP_WIDTH = 460  # narrowest the map is drawn beside the trend (two columns); narrower screens crop
TILE = 512  # MapLibre's tile size: the world is TILE * 2**zoom pixels wide


@dataclass(frozen=True)
class Row:
    """One row of a text alternative: label, value text, status text."""

    label: str
    value: str
    status: str


def value_text(value: float | None, unit: str, locale: str, suppressed: bool = False) -> str:
    if suppressed:
        return i18n.t("public.value.suppressed", locale)
    if value is None:
        return i18n.t("public.value.none", locale)
    return f"{i18n.number(value, locale, DIGITS)} {unit}".strip()


def status_key(kpi: Kpi | None, value: float | None) -> str:
    """``normal``, ``warning``, ``critical`` or ``unknown`` from the KPI's thresholds."""
    if kpi is None or value is None:
        return "unknown"
    worse = (lambda v, t: v >= t) if kpi.better == "lower" else (lambda v, t: v <= t)
    if kpi.thresholds.critical is not None and worse(value, kpi.thresholds.critical):
        return "critical"
    if kpi.thresholds.warning is not None and worse(value, kpi.thresholds.warning):
        return "warning"
    return "normal"


def district_rows(snap: Snapshot, kpi_id: str, kpi: Kpi | None, locale: str) -> list[Row]:
    """City first, then every district with its newest public value (or why there is none)."""
    unit = snap.kpi(kpi_id).unit if snap.kpi(kpi_id) else ""
    rows = []
    scopes = [("city", "", i18n.t("public.area.city", locale))]
    scopes += [("district", did, name) for did, name in snap.districts.items()]
    for scope_type, scope_id, label in scopes:
        point = snap.latest.get((kpi_id, scope_type, scope_id))
        if point is None and scope_type == "district":
            continue
        value = point.value if point else None
        suppressed = bool(point and point.suppressed)
        status = "unknown" if suppressed else status_key(kpi, value)
        rows.append(Row(label, value_text(value, unit, locale, suppressed),
                        i18n.t(f"public.status.{status}", locale)))
    return rows


def _choropleth(geojson, values: dict[str, float], hover: dict[str, str], *, zmin: float, zmax: float,
                colorscale, opacity: float, colorbar: dict | None = None) -> dict:
    """A ``choroplethmap`` trace as a plain dict (no plotly validation: built per request)."""
    ids = list(values)
    trace = {"type": "choroplethmap", "geojson": geojson, "featureidkey": "properties.id",
             "locations": ids, "z": [values[i] for i in ids], "zmin": zmin, "zmax": zmax,
             "colorscale": colorscale, "marker": {"opacity": opacity, "line": {"width": 0}},
             "text": [hover.get(i, i) for i in ids], "hoverinfo": "text", "showscale": colorbar is not None}
    if colorbar is not None:
        trace["colorbar"] = colorbar
    return trace


def map_figure(snap: Snapshot, kpi_id: str, kpi: Kpi | None, locale: str, geojson, centre, zoom,
               tile_url: str = "") -> dict:
    """Districts coloured by the KPI's newest public value; suppressed districts grey (a figure dict)."""
    unit = snap.kpi(kpi_id).unit if snap.kpi(kpi_id) else ""
    values, suppressed, hover = {}, {}, {}
    for did, name in snap.districts.items():
        point = snap.latest.get((kpi_id, "district", did))
        if point is None:
            continue
        hover[did] = f"{name}: {value_text(point.value, unit, locale, point.suppressed)}"
        if point.suppressed or point.value is None:
            suppressed[did] = 0.0
        else:
            values[did] = point.value
    known = list(values.values())
    lo, hi = (min(known), max(known)) if known else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    scale = BETTER_HIGH if kpi is None or kpi.better == "higher" else BETTER_LOW
    data = []
    if values:
        data.append(_choropleth(geojson, values, hover, zmin=lo, zmax=hi, colorscale=scale, opacity=0.85,
                                colorbar={"title": {"text": unit}, "thickness": 12}))
    if suppressed:
        data.append(_choropleth(geojson, suppressed, hover, zmin=0, zmax=1, opacity=0.5,
                                colorscale=[[0, SUPPRESSED], [1, SUPPRESSED]]))
    layout = map_layout(centre, zoom, base_layers({"districts": geojson}, land="#f4f6f8", edge="#5c6670"),
                        tile_url=tile_url, bgcolor="#ffffff", uirevision="public-map")
    layout.update(separators=SEPARATORS.get(locale, ".,"), height=MAP_HEIGHT, font={"color": INK})
    return {"data": data, "layout": layout}


def _mercator_y(lat: float) -> float:
    return math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))


def fit_view(bbox, width_px: float = MAP_WIDTH, height_px: float = MAP_HEIGHT) -> tuple[tuple[float, float], float]:
    """(centre lon/lat, zoom) at which the city's ``bbox`` (west, south, east, north) fills a map of
    ``width_px`` x ``height_px`` (Web Mercator, MapLibre's 512-pixel tiles) - the whole city at once,
    whatever ``zoom`` city.yaml sets for the operators' wider maps."""
    west, south, east, north = (float(v) for v in bbox)
    top, bottom = _mercator_y(north), _mercator_y(south)
    lon_share = max(east - west, 1e-9) / 360.0
    lat_share = max(top - bottom, 1e-12) / (2 * math.pi)
    zoom = min(math.log2(width_px / (TILE * lon_share)), math.log2(height_px / (TILE * lat_share)))
    centre_lat = math.degrees(2 * math.atan(math.exp((top + bottom) / 2)) - math.pi / 2)
    return ((west + east) / 2, centre_lat), math.floor(zoom * 100) / 100


def trend_points(snap: Snapshot, kpi_id: str, area: str) -> list[Point]:
    scope = ("city", "") if area == "city" else ("district", area)
    return snap.series.get((kpi_id, *scope), [])


def trend_figure(points: list[Point], unit: str, locale: str, tz: str) -> dict:
    """The 24-hour line of one KPI and area, in the city's time (a figure dict)."""
    zone = ZoneInfo(tz)
    x = [p.at.astimezone(zone).strftime("%Y-%m-%d %H:%M") for p in points]
    y = [None if p.suppressed else p.value for p in points]
    return {
        "data": [{"type": "scatter", "x": x, "y": y, "mode": "lines", "line": {"color": LINE, "width": 2},
                  "connectgaps": False, "hovertemplate": "%{x|%H:%M}: %{y:,.1f} " + unit + "<extra></extra>"}],
        "layout": {
            "height": 300, "margin": {"l": 50, "r": 10, "t": 10, "b": 40}, "paper_bgcolor": "#ffffff",
            "plot_bgcolor": "#ffffff", "font": {"color": INK}, "separators": SEPARATORS.get(locale, ".,"),
            "xaxis": {"title": {"text": i18n.t("public.trend.time", locale, tz=tz)}, "gridcolor": GRID,
                      "tickformat": "%H:%M", "type": "date"},
            "yaxis": {"title": {"text": unit}, "gridcolor": GRID, "rangemode": "tozero"},
            "showlegend": False},
    }


def trend_rows(points: list[Point], unit: str, locale: str, tz: str) -> list[Row]:
    """The trend as a table: one row per hour (the hour's mean of its points)."""
    hours: dict[datetime, list[Point]] = {}
    for p in points:
        hours.setdefault(p.at.replace(minute=0, second=0, microsecond=0), []).append(p)
    rows = []
    for hour, group in sorted(hours.items()):
        values = [p.value for p in group if p.value is not None and not p.suppressed]
        mean = sum(values) / len(values) if values else None
        suppressed = not values and any(p.suppressed for p in group)
        rows.append(Row(i18n.time_text(hour, locale, tz)[:5], value_text(mean, unit, locale, suppressed), ""))
    return rows
