"""CSV, JSON and GeoJSON writers of the read API (streamed: one chunk per batch of rows)."""
from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime, timezone
from typing import Iterable, Iterator

import orjson

CHUNK_ROWS = 2000


def cell(value):
    """A value as text for CSV/JSON: UTC ISO 8601 times, shortest round-trip floats, '' for None/NaN."""
    if value is None:
        return None
    if isinstance(value, datetime):
        value = value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return value.isoformat().replace("+00:00", "Z")
    if hasattr(value, "to_pydatetime"):  # pandas Timestamp
        return cell(value.to_pydatetime())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalar
        return cell(value.item())
    return value


def csv_chunks(header: list[str], rows: Iterable[Iterable]) -> Iterator[str]:
    """CSV text (header first) in chunks of :data:`CHUNK_ROWS` rows."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    n = 0
    for row in rows:
        writer.writerow(["" if (v := cell(x)) is None else v for x in row])
        n += 1
        if n % CHUNK_ROWS == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def json_records(header: list[str], rows: Iterable[Iterable]) -> list[dict]:
    return [{k: cell(v) for k, v in zip(header, row)} for row in rows]


def json_chunks(meta: dict, header: list[str], rows: Iterable[Iterable]) -> Iterator[str]:
    """``{...meta, "rows": [{...}, ...]}`` streamed row by row."""
    head = json.dumps(meta, ensure_ascii=False)[:-1]
    yield head + (", " if meta else "") + '"rows": ['
    first = True
    batch = []
    for row in rows:
        batch.append(("" if first else ",") + json.dumps({k: cell(v) for k, v in zip(header, row)},
                                                         ensure_ascii=False))
        first = False
        if len(batch) >= CHUNK_ROWS:
            yield "".join(batch)
            batch = []
    yield "".join(batch) + "]}"


def feature_collection(features: Iterable[tuple[dict, dict | None]], clean: bool = True) -> bytes:
    """GeoJSON (UTF-8) of (properties, geometry) pairs.  A geometry may come pre-serialised as an
    ``orjson.Fragment``.  ``clean=False``: the properties already hold only str, int, float (NaN is
    written as null), bool and None, so :func:`cell` is skipped.  Serialised feature by feature, so a
    generator of features keeps no per-feature objects alive (nothing for the garbage collector)."""
    parts = [orjson.dumps({"type": "Feature", "properties": {k: cell(v) for k, v in props.items()} if clean
                           else props, "geometry": geom}) for props, geom in features]
    return b'{"type":"FeatureCollection","features":[' + b",".join(parts) + b"]}"


def frame_csv_chunks(frame, columns: list[str], time_columns=("bucket",)) -> Iterator[str]:
    """CSV of a DataFrame's ``columns`` in chunks, formatted by pandas (C speed): UTC times as
    ``...Z``, floats in their shortest round-trip form, empty cells for missing values."""
    import pandas as pd

    if not len(frame):
        yield ",".join(columns) + "\n"
        return
    for start in range(0, len(frame), CHUNK_ROWS * 10):
        part = frame.iloc[start:start + CHUNK_ROWS * 10][columns].copy()
        for name in time_columns:
            if name in part:
                part[name] = pd.DatetimeIndex(pd.to_datetime(part[name], utc=True)).strftime("%Y-%m-%dT%H:%M:%SZ")
        buf = io.StringIO()
        part.to_csv(buf, header=start == 0, index=False, lineterminator="\n")
        yield buf.getvalue()
