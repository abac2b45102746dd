"""Byte-reproducible writers for the demo pack: GeoJSON, CSV and YAML.

Same input -> same bytes: fixed key order, LF line endings, coordinates as
Python's shortest float repr of values already rounded, one feature a line.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import shapely
import yaml


def feature_collection(features: list[tuple[dict, object]]) -> str:
    """``[(properties, shapely geometry)]`` -> GeoJSON text, one feature a line."""
    lines = []
    for props, geom in features:
        geometry = json.dumps(shapely.geometry.mapping(geom), ensure_ascii=False, separators=(",", ":"))
        properties = json.dumps(props, ensure_ascii=False, separators=(",", ":"))
        lines.append(f'{{"type":"Feature","properties":{properties},"geometry":{geometry}}}')
    return '{"type":"FeatureCollection","features":[\n' + ",\n".join(lines) + "\n]}\n"


def csv_text(columns: list[str], rows: list[dict]) -> str:
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    return buf.getvalue()


def yaml_text(data: dict, header: str = "") -> str:
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100, default_flow_style=None)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
