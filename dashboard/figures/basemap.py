"""The base map, drawn from the city pack's web layers: pure functions, no request leaves the host.

Used by the wall (``dashboard/figures/wall.py``) and the explorer.  Every map is a
Plotly 7 MapLibre figure (``go.Scattermap`` / ``go.Choroplethmap``) with
``map_style="white-bg"`` (no style, sprite, glyph or tile request); the city is
drawn from GeoJSON layers (``layers.web.build``; the dashboard serves them at
``dashboard.layer_files.layer_url``).  Pieces:

* :func:`map_layout` - ``layout.map`` centred on the city, base layers under the
  traces, an optional raster tile server of the city's own (``CITYDASH_MAP_TILE_URL``).
* :func:`base_layers` - outline/fill layers from GeoJSON sources (a URL or a dict):
  districts, roads, extra layers (rivers, parks) with the pack's styles.
* :func:`district_choropleth` - districts coloured by one value per district id.
* :func:`road_traces` - roads coloured by one value per road id: one line trace per
  class (``classify(value) -> class``), since a map line has a single colour;
  :func:`road_coordinates` gives the same lines as plain lists (for a ``Patch``).
* :func:`point_trace` - points (vehicles, sensors, incidents).
* :func:`line_coordinates`, :func:`centroids`, :func:`bounds` - geometry helpers.

Map text labels are avoided on purpose: MapLibre fetches glyphs for them.
"""
from __future__ import annotations

import html

from typing import Callable, Iterable, Mapping

import plotly.graph_objects as go
import shapely
from shapely.geometry import shape

GeoJSONSource = str | dict  # a URL (fetched by the browser) or a parsed FeatureCollection


def map_layout(centre: tuple[float, float], zoom: float, layers: list[dict] | None = None,
               tile_url: str = "", bgcolor: str = "#0b0f14", uirevision: str = "map") -> dict:
    """``layout`` keys of an offline MapLibre map (``centre`` is lon, lat).

    The style is Plotly's ``"white-bg"`` (no source, sprite or tile; its glyphs are only
    fetched for map text, which these maps never draw) under a ``bgcolor`` world fill.

    ``tile_url``: an XYZ raster template of a tile server of the city's own; it is
    drawn below ``layers``.  Empty: no tile request at all.
    """
    below = []
    if tile_url:
        below.append({"sourcetype": "raster", "source": [tile_url], "below": "traces", "opacity": 0.6})
    return {
        "map": {"style": "white-bg", "center": {"lon": centre[0], "lat": centre[1]}, "zoom": zoom,
                "layers": [background_layer(bgcolor)] + below + list(layers or [])},
        "paper_bgcolor": bgcolor, "plot_bgcolor": bgcolor, "margin": {"l": 0, "r": 0, "t": 0, "b": 0},
        "showlegend": False, "uirevision": uirevision,
    }


def background_layer(colour: str) -> dict:
    """A layer filling the whole world with ``colour`` (Plotly's ``white-bg`` style is white)."""
    world = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [
        [[-180, -85], [180, -85], [180, 85], [-180, 85], [-180, -85]]]}}
    return {"sourcetype": "geojson", "source": world, "type": "fill", "color": colour, "below": "traces"}


def base_layers(sources: Mapping[str, GeoJSONSource], styles: Mapping[str, dict | None] | None = None,
                land: str = "#1a222c", edge: str = "#6b7785", road: str = "#3b4654") -> list[dict]:
    """Layout map layers for ``sources`` (layer name -> GeoJSON URL or dict), drawn below traces.

    ``districts`` gets a land fill and an outline, ``roads`` and ``transit_lines``
    thin lines, other layers the pack's style (``colour``, ``width``, ``opacity``;
    polygons are filled when the style has no width or a small one).
    """
    styles = styles or {}
    out: list[dict] = []
    for name, source in sources.items():
        common = {"sourcetype": "geojson", "source": source, "below": "traces"}
        if name == "districts":
            out.append({**common, "type": "fill", "color": land, "opacity": 1.0})
            out.append({**common, "type": "line", "color": edge, "line": {"width": 1.5}})
        elif name in ("roads", "transit_lines"):
            out.append({**common, "type": "line", "color": road, "line": {"width": 1}})
        else:
            style = styles.get(name) or {}
            colour = style.get("colour", "#4a5a6a")
            opacity = float(style.get("opacity", 0.6))
            if float(style.get("width") or 0) <= 1:
                out.append({**common, "type": "fill", "color": colour, "opacity": opacity * 0.6})
            out.append({**common, "type": "line", "color": colour, "opacity": opacity,
                        "line": {"width": float(style.get("width") or 1)}})
    return out


def hover(value) -> str:
    """Text from outside (names, ids and routes from MQTT, GTFS and city packs) for a Plotly hover
    label: Plotly renders a subset of HTML there (``<a href>``, ``<b>``...), so ``<``, ``>`` and
    ``&`` are escaped; nothing else changes."""
    return html.escape("" if value is None else str(value), quote=False)


def district_choropleth(geojson: GeoJSONSource, values: Mapping[str, float | None], *, zmin: float,
                        zmax: float, colorscale="Cividis", name: str = "", hovertext: Mapping[str, str] | None = None,
                        opacity: float = 0.75, district_ids: Iterable[str] | None = None) -> go.Choroplethmap:
    """Districts (features matched on ``properties.id``) coloured by ``values``.

    ``district_ids``: the order of the locations (default: ``values``' keys); a
    district without a value gets NaN and is left transparent.  Keep the order
    stable and a refresh only needs the new ``z`` (a dash ``Patch``).
    """
    ids = list(district_ids) if district_ids is not None else list(values)
    z = [_finite(values.get(i)) for i in ids]
    return go.Choroplethmap(
        geojson=geojson, featureidkey="properties.id", locations=ids, z=z, zmin=zmin, zmax=zmax,
        colorscale=colorscale, marker={"opacity": opacity, "line": {"width": 0}}, showscale=False, name=name,
        text=[hover((hovertext or {}).get(i, i)) for i in ids], hoverinfo="text")


def _finite(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if v == v and v not in (float("inf"), float("-inf")) else None


def line_coordinates(geojson: dict, ids: Iterable[str], key: str = "id") -> tuple[list, list]:
    """Lon and lat lists of the (multi)line features whose ``properties[key]`` is in ``ids``,
    separated by None (one line trace draws them all)."""
    wanted = set(ids)
    lon: list = []
    lat: list = []
    for feature in geojson.get("features", []):
        if str((feature.get("properties") or {}).get(key)) not in wanted:
            continue
        geom = feature.get("geometry") or {}
        parts = [geom.get("coordinates", [])] if geom.get("type") == "LineString" else \
            geom.get("coordinates", []) if geom.get("type") == "MultiLineString" else []
        for part in parts:
            lon.extend(p[0] for p in part)
            lat.extend(p[1] for p in part)
            lon.append(None)
            lat.append(None)
    return lon, lat


def road_traces(geojson: dict, values: Mapping[str, float], classify: Callable[[float], str],
                colours: Mapping[str, str], widths: Mapping[str, float] | None = None,
                names: Mapping[str, str] | None = None) -> list[go.Scattermap]:
    """One line trace per class of ``colours`` (in its order), roads with a value only.

    ``classify`` maps a road's value to a class key of ``colours`` (e.g. the
    KPI's level); roads whose class is not in ``colours`` are skipped.
    """
    coordinates = road_coordinates(geojson, values, classify, colours)
    traces = []
    for cls, colour in colours.items():
        lon, lat = coordinates[cls]
        traces.append(go.Scattermap(lon=lon, lat=lat, mode="lines", name=(names or {}).get(cls, cls),
                                    line={"color": colour, "width": (widths or {}).get(cls, 3)},
                                    hoverinfo="skip"))
    return traces


def road_coordinates(geojson: dict, values: Mapping[str, float], classify: Callable[[float], str],
                     classes: Iterable[str]) -> dict[str, tuple[list, list]]:
    """Lon and lat lists (:func:`line_coordinates`) per class of ``classes``, in its order, of the
    roads with a value; ``classify(value)`` gives a road's class, roads of other classes are skipped."""
    by_class: dict[str, list[str]] = {c: [] for c in classes}
    for road_id, value in values.items():
        cls = classify(value)
        if cls in by_class:
            by_class[cls].append(str(road_id))
    return {cls: line_coordinates(geojson, ids) for cls, ids in by_class.items()}


def point_trace(lon: list, lat: list, *, colour: str, size: float = 9, name: str = "",
                text: list[str] | None = None, opacity: float = 1.0) -> go.Scattermap:
    """Circle markers (other symbols would make MapLibre fetch a sprite)."""
    return go.Scattermap(lon=list(lon), lat=list(lat), mode="markers", name=name,
                         marker={"size": size, "color": colour, "opacity": opacity},
                         text=[hover(t) for t in text] if text else text, hoverinfo="text" if text else "skip")


def centroids(geojson: dict, key: str = "id") -> dict[str, tuple[float, float]]:
    """A point inside each feature (``representative_point``), by ``properties[key]``."""
    out = {}
    for feature in geojson.get("features", []):
        fid = (feature.get("properties") or {}).get(key)
        if fid is None or not feature.get("geometry"):
            continue
        p = shape(feature["geometry"]).representative_point()
        out[str(fid)] = (round(p.x, 6), round(p.y, 6))
    return out


def bounds(geojson: dict, fid: str, key: str = "id") -> tuple[float, float, float, float] | None:
    """(minlon, minlat, maxlon, maxlat) of feature ``fid``, None when it is not there."""
    for feature in geojson.get("features", []):
        if str((feature.get("properties") or {}).get(key)) == fid and feature.get("geometry"):
            return tuple(shapely.bounds(shape(feature["geometry"])).tolist())
    return None


def zoom_for(bbox: tuple[float, float, float, float], width_px: int = 900, height_px: int = 800) -> float:
    """The largest web-mercator zoom that shows ``bbox`` in a map of the given size."""
    import math

    minlon, minlat, maxlon, maxlat = bbox

    def y(lat):
        s = math.sin(math.radians(lat))
        return math.log((1 + s) / (1 - s)) / (4 * math.pi)

    dx = max((maxlon - minlon) / 360, 1e-9)
    dy = max(abs(y(maxlat) - y(minlat)), 1e-9)
    zoom = min(math.log2(width_px / 512 / dx), math.log2(height_px / 512 / dy))
    return max(0.0, min(18.0, round(zoom, 2)))
