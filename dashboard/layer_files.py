"""The city pack's web layers, served to the browser and read by figure code.

``GET /layers/<band>/<layer>.geojson`` answers from the files ``layers.web.build``
writes (under ``CITYDASH_LAYERS_DIR/<pack slug>/``, built on first use) through
Flask's ``send_file(conditional=True)``: the pre-gzipped ``.gz`` sibling when the
browser accepts gzip (``Content-Encoding: gzip``, ``Vary: Accept-Encoding``), a
strong ETag (the file's sha256 from the manifest), ``Cache-Control``, ``304 Not
Modified`` for a matching ``If-None-Match`` and byte ranges.  Plotly's map traces take :func:`layer_url` as their
``geojson``, so figures stay small and the browser caches the geometry.
"""
from __future__ import annotations

import threading
from pathlib import Path

import flask

from dashboard import state
from dashboard.city import city
from layers import web
from layers.pack import load_pack

BLUEPRINT = flask.Blueprint("citydash_layers", __name__)
MAX_AGE_S = 3600
CACHE_CONTROL = f"public, max-age={MAX_AGE_S}, stale-while-revalidate=86400"
MIMETYPE = "application/geo+json"
_build_lock = threading.Lock()


def layer_dir() -> Path:
    """The built layer folder of the served city, built now when missing."""
    settings = state.settings()
    out = Path(settings.layers_dir) / city(settings.city_pack).slug
    if not (out / web.MANIFEST).exists():
        with _build_lock:
            if not (out / web.MANIFEST).exists():
                web.build(load_pack(settings.city_pack), out)
    return out


def manifest() -> dict:
    return web.read_manifest(layer_dir())


def layer_url(layer: str, band: str = "city") -> str:
    """URL of a layer file, with the content hash so a rebuilt layer is fetched anew."""
    entry = _entry(layer, band)
    version = entry["sha256"][:12] if entry else "0"
    return f"/layers/{band}/{layer}.geojson?v={version}"


def layer_geojson(layer: str, band: str = "city") -> dict:
    """The parsed GeoJSON of a layer (shared between callers: do not modify it)."""
    return web.load_layer(layer_dir(), layer, band=band)


def _entry(layer: str, band: str) -> dict | None:
    return next((f for f in manifest()["files"] if f["layer"] == layer and f["band"] == band), None)


@BLUEPRINT.route("/layers/<band>/<layer>.geojson")
def serve_layer(band: str, layer: str):
    entry = _entry(layer, band)  # only a file the manifest lists: band and layer are never a path
    if entry is None:
        flask.abort(404)
    gz = flask.request.accept_encodings["gzip"] > 0  # quality 0 is a refusal; * counts
    path = layer_dir() / (entry["file"] + (".gz" if gz else ""))
    response = flask.send_file(path, mimetype=MIMETYPE, conditional=True, etag=entry["sha256"],
                               max_age=MAX_AGE_S)
    if gz:
        response.headers["Content-Encoding"] = "gzip"
    response.vary.add("Accept-Encoding")
    response.headers["Cache-Control"] = CACHE_CONTROL  # with stale-while-revalidate
    return response
