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


# A spreadsheet runs a cell that starts with one of these as a formula (``=HYPERLINK(...)``,
# ``=cmd|...``, ``@SUM``, and tab/CR variants); OWASP "CSV Injection": prefix such text with '.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value):
    """A CSV cell: text that a spreadsheet would run as a formula gets a leading ``'``; numbers
    (a negative reading is a number, not text) and everything else are left as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _quoted_row(values: list) -> str:
    """One CSV row as RFC 4180 and PostgreSQL's COPY write it, for rows the csv module gets wrong:
    with a ``\n`` line terminator it leaves a carriage return inside a field unquoted."""
    def field(v) -> str:
        text = repr(v) if isinstance(v, float) else str(v)
        if any(c in text for c in ',"\n\r'):
            return '"' + text.replace('"', '""') + '"'
        return text
    return ",".join(field(v) for v in values) + "\n"


def csv_chunks(header: list[str], rows: Iterable[Iterable]) -> Iterator[str]:
    """CSV text (header first) in chunks of :data:`CHUNK_ROWS` rows; text cells formula-safe."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([csv_text(h) for h in header])
    n = 0
    for row in rows:
        values = ["" if (v := cell(x)) is None else csv_text(v) for x in row]
        if any(isinstance(v, str) and "\r" in v for v in values):
            buf.write(_quoted_row(values))
        else:
            writer.writerow(values)
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
        text_columns = [name for name in part.columns
                        if part[name].dtype == object or pd.api.types.is_string_dtype(part[name])]
        for name in text_columns:
            part[name] = part[name].map(csv_text)
        if any(part[name].astype(str).str.contains("\r", regex=False).any() for name in text_columns):
            # pandas leaves a carriage return unquoted (a broken row); Python's csv module quotes it
            # and formats floats the same way
            chunks = csv_chunks(columns, part.itertuples(index=False, name=None))
            if start:
                first = next(chunks)
                yield first[first.index("\n") + 1:]
            yield from chunks
            continue
        buf = io.StringIO()
        part.to_csv(buf, header=start == 0, index=False, lineterminator="\n")
        yield buf.getvalue()
