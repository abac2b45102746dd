"""The city pack's web layers, served to the browser and read by figure code.

``GET /layers/<band>/<layer>.geojson`` answers from the files ``layers.web.build``
writes (under ``CITYDASH_LAYERS_DIR/<pack slug>/``, built on first use): gzip
when the browser accepts it, a strong ETag (the file's sha256 from the
manifest), ``Cache-Control`` and ``304 Not Modified`` for a matching
``If-None-Match``.  Plotly's map traces take :func:`layer_url` as their
``geojson``, so figures stay small and the browser caches the geometry.
"""
from __future__ import annotations

import threading
from pathlib import Path

import flask

from layers import web

BLUEPRINT = flask.Blueprint("citydash_layers", __name__)
CACHE_CONTROL = "public, max-age=3600, stale-while-revalidate=86400"
_build_lock = threading.Lock()


def _settings():
    from dashboard.state import runtime

    return runtime().settings


def layer_dir() -> Path:
    """The built layer folder of the served city, built now when missing."""
    settings = _settings()
    from dashboard.city import city

    out = Path(settings.layers_dir) / city(settings.city_pack).slug
    if not (out / web.MANIFEST).exists():
        with _build_lock:
            if not (out / web.MANIFEST).exists():
                from layers.pack import load_pack

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
    entry = _entry(layer, band)
    if entry is None:
        flask.abort(404)
    etag = entry["sha256"]
    if flask.request.if_none_match.contains(etag):
        response = flask.Response(status=304)
    else:
        gz = "gzip" in flask.request.accept_encodings
        path = layer_dir() / (entry["file"] + (".gz" if gz else ""))
        response = flask.Response(path.read_bytes(), mimetype="application/geo+json")
        if gz:
            response.headers["Content-Encoding"] = "gzip"
        response.headers["Vary"] = "Accept-Encoding"
    response.set_etag(etag)
    response.headers["Cache-Control"] = CACHE_CONTROL
    return response
