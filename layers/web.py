"""Web-ready map layers: ``build(pack, out_dir)`` and ``load_layer(out_dir, layer, ...)``.

``build`` writes, for every zoom band in :data:`layers.simplify.BANDS`,
``<band>/<layer>.geojson`` (compact, coordinates rounded to 5 decimals) and a
gzip copy ``<band>/<layer>.geojson.gz`` (for ``Content-Encoding: gzip``), then
``manifest.json``: per file its layer, band, feature count, bytes, gzip bytes
and sha256 (use it as the ETag).  Layers: ``districts``, ``roads``,
``transit_lines``, ``stops`` and the pack's extra layers (their style is in
the manifest).  Output is deterministic; the manifest is written last, so a
reader that goes through the manifest never sees a half-built set.

The default output folder is ``var/layers/<pack slug>/`` (relative to the
working directory), see :func:`default_out_dir`.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

from layers import simplify
from layers.geojson import feature_collection_text, round_geometry
from layers.pack import CityPack
from layers.simplify import BANDS, Band
from layers.tables import json_value

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
CORE_LAYERS = ("districts", "roads", "transit_lines", "stops")


def default_out_dir(pack: CityPack) -> Path:
    return Path("var") / "layers" / pack.slug


def band_for_zoom(zoom: float) -> str:
    """The band drawn at map zoom ``zoom`` (``city``, ``district`` or ``street``)."""
    for band in BANDS:
        if zoom < band.maxzoom + 1:
            return band.name
    return BANDS[-1].name


def build(pack: CityPack, out_dir: str | Path) -> dict:
    """Write every layer for every band into ``out_dir``; returns the manifest."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    coverage = simplify.clean_coverage(pack.districts.geometry.values)
    styles = {e.name: asdict(e.style) for e in pack.extra}
    files = []
    for band in BANDS:
        layers = {
            "districts": simplify.district_features(pack.districts, coverage, band),
            "roads": simplify.road_features(pack.roads, band),
            "transit_lines": simplify.transit_line_features(pack.transit, band),
            "stops": simplify.stop_features(pack.transit, band),
        }
        for extra in pack.extra:
            layers[extra.name] = simplify.extra_features(extra.data, band)
        for name, features in layers.items():
            files.append(_write_layer(out, band, name, features))
    config = pack.config
    manifest = {
        "format": FORMAT_VERSION,
        "pack": {"slug": config.slug, "name": config.name, "locale": config.locale, "timezone": config.timezone,
                 "centre": list(config.centre), "zoom": config.zoom, "bbox": list(config.bbox),
                 "attribution": config.attribution},
        "bands": {b.name: {"minzoom": b.minzoom, "maxzoom": b.maxzoom, "tolerance_m": b.tolerance_m} for b in BANDS},
        "layers": {name: {"style": styles.get(name)} for name in (*CORE_LAYERS, *styles)},
        "files": files,
    }
    _remove_stale(out, {f["file"] for f in files})
    _atomic_write(out / MANIFEST, (json.dumps(manifest, ensure_ascii=False, indent=1) + "\n").encode())
    return manifest


def _write_layer(out: Path, band: Band, name: str, features) -> dict:
    features = [({k: json_value(v) for k, v in props.items()}, round_geometry(geom)) for props, geom in features]
    features = [(p, g) for p, g in features if g is not None and not g.is_empty]
    data = feature_collection_text(features).encode("utf-8")
    rel = f"{band.name}/{name}.geojson"
    _atomic_write(out / rel, data)
    packed = gzip.compress(data, compresslevel=9, mtime=0)
    _atomic_write(out / (rel + ".gz"), packed)
    return {"file": rel, "layer": name, "band": band.name, "features": len(features), "bytes": len(data),
            "gzip_bytes": len(packed), "sha256": hashlib.sha256(data).hexdigest()}


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _remove_stale(out: Path, keep: set[str]) -> None:
    """Delete layer files of an earlier build that this build did not write."""
    for band_dir in out.iterdir():
        if not band_dir.is_dir():
            continue
        for path in band_dir.iterdir():
            rel = f"{band_dir.name}/{path.name}"
            if path.name.endswith(".geojson.gz"):
                rel = rel[: -len(".gz")]
            if path.name.endswith((".geojson", ".geojson.gz")) and rel not in keep:
                path.unlink()
        if band_dir.name not in {b.name for b in BANDS} and not any(band_dir.iterdir()):
            shutil.rmtree(band_dir)


# Reading ------------------------------------------------------------------


def read_manifest(out_dir: str | Path) -> dict:
    """The manifest of a built layer folder (raises FileNotFoundError if none)."""
    return _read_json(Path(out_dir) / MANIFEST)


def layer_path(out_dir: str | Path, layer: str, band: str | None = None, zoom: float | None = None,
               gzipped: bool = False) -> Path:
    """Path of a built layer file; ``band`` or ``zoom`` picks the band (default: city)."""
    band = band or (band_for_zoom(zoom) if zoom is not None else BANDS[0].name)
    entry = next((f for f in read_manifest(out_dir)["files"] if f["layer"] == layer and f["band"] == band), None)
    if entry is None:
        raise KeyError(f"no layer {layer!r} in band {band!r} under {out_dir}")
    return Path(out_dir) / (entry["file"] + (".gz" if gzipped else ""))


def load_layer(out_dir: str | Path, layer: str, band: str | None = None, zoom: float | None = None) -> dict:
    """A built layer as a GeoJSON dict (cached until the file changes).

    The dashboard calls this, e.g. ``load_layer("var/layers/demo-cuiaba", "districts", zoom=12)``.
    The returned dict is shared between callers: do not modify it.
    """
    return _read_json(layer_path(out_dir, layer, band, zoom))


def _read_json(path: Path) -> dict:
    stat = path.stat()
    return _cached_json(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=64)
def _cached_json(path: str, mtime_ns: int, size: int) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
