"""The read API's writers: CSV/JSON cells, streaming in chunks, GeoJSON."""
from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from dashboard.api import writers


def test_cells():
    t = datetime(2026, 3, 2, 12, 0, 5, 250000, tzinfo=timezone(timedelta(hours=-4)))
    assert writers.cell(t) == "2026-03-02T16:00:05.250000Z"
    assert writers.cell(pd.Timestamp("2026-03-02T16:00:00Z")) == "2026-03-02T16:00:00Z"
    assert writers.cell(float("nan")) is None and writers.cell(math.inf) is None
    assert writers.cell(np.float64(0.1)) == 0.1 and type(writers.cell(np.int64(3))) is int


@given(st.lists(st.tuples(st.floats(allow_nan=False, allow_infinity=False, width=64),
                          st.text(alphabet='ab1,;" \né', max_size=8)), max_size=30))
def test_csv_round_trips_floats_exactly_in_chunks(rows):
    writers_chunk = writers.CHUNK_ROWS
    writers.CHUNK_ROWS = 7
    try:
        chunks = list(writers.csv_chunks(["value", "name"], rows))
    finally:
        writers.CHUNK_ROWS = writers_chunk
    assert len(chunks) == len(rows) // 7 + 1
    back = list(csv.reader(io.StringIO("".join(chunks))))
    assert back[0] == ["value", "name"]
    assert [(float(v), n) for v, n in back[1:]] == rows


def test_json_chunks_are_one_document():
    rows = [(datetime(2026, 1, 1, tzinfo=timezone.utc), 1.5), (datetime(2026, 1, 2, tzinfo=timezone.utc), None)]
    doc = json.loads("".join(writers.json_chunks({"kpi": "x"}, ["bucket", "value"], iter(rows))))
    assert doc == {"kpi": "x", "rows": [{"bucket": "2026-01-01T00:00:00Z", "value": 1.5},
                                        {"bucket": "2026-01-02T00:00:00Z", "value": None}]}
    assert json.loads("".join(writers.json_chunks({}, ["a"], iter(())))) == {"rows": []}


def test_feature_collection():
    doc = json.loads(writers.feature_collection([({"id": "a", "value": float("nan")},
                                                  {"type": "Point", "coordinates": [1, 2]})]))
    assert doc["features"][0]["properties"] == {"id": "a", "value": None}
    assert doc["features"][0]["geometry"]["coordinates"] == [1, 2]


def test_frame_csv_matches_the_row_writer_and_round_trips():
    rng = np.random.default_rng(3)
    n = writers.CHUNK_ROWS * 10 + 17  # more than one chunk
    frame = pd.DataFrame({"bucket": pd.date_range("2026-03-01", periods=n, freq="min", tz="UTC"),
                          "scope_id": [f"d{i % 7}" for i in range(n)],
                          "value": np.where(rng.random(n) < 0.1, np.nan, rng.normal(50, 30, n)),
                          "sensors": rng.integers(0, 9, n)})
    columns = ["bucket", "scope_id", "value", "sensors"]
    fast = "".join(writers.frame_csv_chunks(frame, columns))
    slow = "".join(writers.csv_chunks(columns, zip(list(frame["bucket"]), frame["scope_id"], frame["value"],
                                                   frame["sensors"])))
    fast_rows, slow_rows = list(csv.reader(io.StringIO(fast))), list(csv.reader(io.StringIO(slow)))
    assert fast_rows[0] == columns and len(fast_rows) == n + 1
    assert [r[:2] + [r[3]] for r in fast_rows] == [r[:2] + [r[3]] for r in slow_rows]
    assert [float(r[2]) if r[2] else None for r in fast_rows[1:]] == \
        [None if np.isnan(v) else float(v) for v in frame["value"]]
    assert "".join(writers.frame_csv_chunks(frame.iloc[:0], columns)) == "bucket,scope_id,value,sensors\n"


def test_feature_collection_splices_serialised_geometry_and_plain_properties():
    import orjson

    geometry = {"type": "LineString", "coordinates": [[-56.1, -15.6], [-56.09, -15.61]]}
    props = {"id": "r1", "name": "Avenida Ç", "value": float("nan"), "sensors": 2, "at": "2026-03-02T12:00:00Z"}
    slow = json.loads(writers.feature_collection([(props, geometry)]))
    fast = json.loads(writers.feature_collection(iter([(props, orjson.Fragment(orjson.dumps(geometry)))]),
                                                 clean=False))
    assert fast == slow
    assert fast["features"][0]["properties"]["value"] is None
    assert json.loads(writers.feature_collection([])) == {"type": "FeatureCollection", "features": []}


# CSV injection (OWASP "CSV Injection"): names and routes arrive over MQTT and from city packs
FORMULAS = ["=HYPERLINK(\"http://x\",\"click\")", "=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1:A2)",
            "\tx", "\rx"]


def test_text_a_spreadsheet_would_run_gets_a_leading_quote():
    for text in FORMULAS:
        assert writers.csv_text(text) == "'" + text
    assert writers.csv_text("Rua 13 de Junho") == "Rua 13 de Junho"
    assert writers.csv_text(-3.5) == -3.5 and writers.csv_text(0) == 0  # numbers stay numbers


def test_every_csv_writer_escapes_formula_text():
    rows = [(i, text) for i, text in enumerate(FORMULAS)]
    text = "".join(writers.csv_chunks(["n", "name"], rows + [(-1.5, "ok")]))
    parsed = list(csv.reader(io.StringIO(text)))
    assert [r[1] for r in parsed[1:-1]] == ["'" + t for t in FORMULAS]
    assert parsed[-1] == ["-1.5", "ok"]
    frame = pd.DataFrame({"bucket": pd.to_datetime(["2026-03-02T16:00:00Z"] * len(FORMULAS), utc=True),
                          "scope_id": FORMULAS, "value": [-1.0] * len(FORMULAS)})
    fast = list(csv.reader(io.StringIO("".join(writers.frame_csv_chunks(frame, ["bucket", "scope_id", "value"])))))
    assert [r[1] for r in fast[1:]] == ["'" + t for t in FORMULAS]
    assert {r[2] for r in fast[1:]} == {"-1.0"}
