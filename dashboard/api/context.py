"""What the explorer page and the read API share: catalogue, connections, geometry indexes, locale."""
from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache

import flask
import orjson

from core.db import pool
from dashboard import i18n
from dashboard.auth import audit, current_user
from dashboard.layer_files import layer_dir, layer_geojson, layer_url, manifest
from dashboard.state import city_locale, runtime, settings  # noqa: F401  (settings: context.settings())
from kpis.catalogue import Catalogue
from layers import web
from layers.web import CORE_LAYERS


def catalogue() -> Catalogue:
    return runtime().catalogue


@contextmanager
def connection():
    with pool(settings()).connection() as conn:
        yield conn


def request_locale() -> str:
    """``?lang=``, else the browser's languages, else the city's locale (i18n.negotiate)."""
    lang = flask.request.args.get("lang") if flask.has_request_context() else None
    return i18n.negotiate(lang, city_locale=city_locale())


def role_allows(role: str) -> bool:
    """Whether the signed-in user has ``role`` (or a higher one)."""
    user = current_user()
    return user is not None and user.has_role(role)


def record_export(action: str, detail: dict) -> None:
    """One audit-log row for an export (who, when, what)."""
    audit(action, detail)


# -- geometry of the city pack's web layers -------------------------------------------------------

def _lines(geometry: dict | None) -> list[list]:
    if not geometry:
        return []
    if geometry.get("type") == "LineString":
        return [geometry["coordinates"]]
    if geometry.get("type") == "MultiLineString":
        return list(geometry["coordinates"])
    return []


def line_index(geojson: dict, key: str) -> dict[str, tuple[list, list, dict]]:
    """``properties[key]`` -> (lon list, lat list with None between parts, properties)."""
    out: dict[str, tuple[list, list, dict]] = {}
    for feature in geojson.get("features", []):
        props = feature.get("properties") or {}
        ident = props.get(key)
        if ident is None:
            continue
        lon, lat = out.get(str(ident), ([], [], props))[:2]
        for part in _lines(feature.get("geometry")):
            if lon:
                lon.append(None)
                lat.append(None)
            lon.extend(p[0] for p in part)
            lat.extend(p[1] for p in part)
        out[str(ident)] = (lon, lat, props)
    return out


def _layer_or_empty(layer: str, band: str) -> dict:
    """A built layer, or an empty collection when the pack has none (no roads or no GTFS)."""
    try:
        return layer_geojson(layer, band)
    except KeyError:
        return {"type": "FeatureCollection", "features": []}


def line_geometry(lon, lat) -> dict:
    """GeoJSON ``LineString`` (one part) or ``MultiLineString`` of lon/lat sequences with None between parts."""
    parts, current = [], []
    for x, y in zip(lon, lat):
        if x is None:
            parts.append(current)
            current = []
        else:
            current.append([x, y])
    parts.append(current)
    parts = [p for p in parts if p]
    if len(parts) == 1:
        return {"type": "LineString", "coordinates": parts[0]}
    return {"type": "MultiLineString", "coordinates": parts}


ROAD_PROPERTIES = ("name", "class")


@lru_cache(maxsize=8)
def _road_index(version: str, band: str) -> dict[str, tuple[tuple, tuple, dict, orjson.Fragment]]:
    try:  # parsed here, not through the shared layer cache: only the compact index stays in memory
        data = orjson.loads(web.layer_path(layer_dir(), "roads", band).read_bytes())
    except KeyError:
        data = {"type": "FeatureCollection", "features": []}
    # Tuples of floats and dicts of strings are not tracked by the garbage collector, so 20,000
    # roads do not lengthen its full collections; the GeoJSON geometry is serialised once here.
    return {rid: (tuple(lon), tuple(lat), {k: props.get(k) for k in ROAD_PROPERTIES},
                  orjson.Fragment(orjson.dumps(line_geometry(lon, lat))))
            for rid, (lon, lat, props) in line_index(data, "id").items()}


def road_index(band: str = "street") -> dict[str, tuple[tuple, tuple, dict, orjson.Fragment]]:
    """Roads by id: (lon, lat with None between parts, {name, class}, GeoJSON geometry as an
    ``orjson.Fragment``).  The ``street`` band keeps every road with its id; built once per layer build."""
    return _road_index(layer_url("roads", band), band)


@lru_cache(maxsize=4)
def _transit_index(version: str) -> dict[str, tuple[list, list, dict]]:
    return line_index(_layer_or_empty("transit_lines", "city"), "route_id")


def transit_index() -> dict[str, tuple[list, list, dict]]:
    return _transit_index(layer_url("transit_lines", "city"))


def extra_layers() -> dict[str, dict]:
    """The pack's extra layers and their styles (from the web-layer manifest)."""
    return {name: (entry or {}).get("style") or {} for name, entry in manifest()["layers"].items()
            if name not in CORE_LAYERS}
