"""The series CSV written by PostgreSQL (COPY) escapes formula text like the Python writers."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone

import pandas as pd
import psycopg

from dashboard.api import SERIES_HEADER
from dashboard.api.writers import frame_csv_chunks
from dashboard.queries import explore as q

SCOPES = ["=HYPERLINK(\"http://x\")", "+cmd", "-1", "@A1", "\tT", "\rR", "plain"]


def test_copy_csv_escapes_formula_scope_ids_as_the_pandas_writer_does(db_url):
    t0 = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
    with psycopg.connect(db_url, autocommit=True) as conn:
        for i, scope in enumerate(SCOPES):
            conn.execute("INSERT INTO kpi_1m (bucket, kpi_id, scope_type, scope_id, value, sensors, expected) "
                         "VALUES (%s, 'k', 'road', %s, %s, 2, 4)", (t0, scope, float(i)))
        text = b"".join(q.materialised_series_csv(conn, "k", "1m", "road", t0, t0 + timedelta(minutes=1))).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert sorted(r[1] for r in rows[1:]) == sorted("'" + s if s != "plain" else s for s in SCOPES)
    frame = pd.DataFrame({"bucket": [t0] * len(SCOPES), "scope_id": sorted(SCOPES),
                          "value": [float(SCOPES.index(s)) for s in sorted(SCOPES)],
                          "sensors": 2, "expected": 4, "confidence": 0.5})
    assert text == "".join(frame_csv_chunks(frame, SERIES_HEADER))
