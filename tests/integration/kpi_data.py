"""Test data for the KPI engine: a small city inserted as the database owner."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg
from psycopg.types.json import Jsonb

from kpis.catalogue import DEFAULT_FILE, parse_catalogue

METRICS = ["flow", "speed", "occupancy", "bikes", "free_docks", "pm25", "pm10", "no2", "o3", "laeq", "kw",
           "pressure", "fault", "fill"]


def minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def now_minute() -> datetime:
    return minute(datetime.now(timezone.utc))


def catalogue(override: dict | None = None, tz: str = "UTC"):
    import yaml

    default = yaml.safe_load(DEFAULT_FILE.read_text(encoding="utf-8"))
    return parse_catalogue(default, "default_catalogue.yaml", override, "test-kpis.yaml" if override else None, tz)


def seed(conn: psycopg.Connection, sensors: list[tuple[str, str, str | None, dict]]) -> dict[str, int]:
    """Districts d1/d2, every metric, and ``sensors`` (external id, kind, district, attributes)."""
    conn.execute("INSERT INTO districts (id, name, geometry) VALUES ('d1', 'Um', '{}'), ('d2', 'Dois', '{}') "
                 "ON CONFLICT DO NOTHING")
    for m in METRICS:
        conn.execute("INSERT INTO metrics (name) VALUES (%s) ON CONFLICT DO NOTHING", (m,))
    ids = {}
    for ext, kind, district, attrs in sensors:
        ids[ext] = conn.execute(
            "INSERT INTO sensors (external_id, kind, domain, district_id, attributes) VALUES (%s, %s, %s, %s, %s) "
            "RETURNING id", (ext, kind, "mobility", district, Jsonb(attrs))).fetchone()[0]
    return ids


def metric_ids(conn) -> dict[str, int]:
    return dict(conn.execute("SELECT name, id FROM metrics").fetchall())


def insert(conn: psycopg.Connection, rows) -> int:
    """rows: (time, sensor id, metric name, value) by COPY."""
    mids = metric_ids(conn)
    n = 0
    with conn.cursor().copy("COPY readings (time, sensor_id, metric_id, value) FROM STDIN") as copy:
        for t, sid, metric, value in rows:
            copy.write_row((t, sid, mids[metric], value))
            n += 1
    return n


def raw_1m(conn) -> dict:
    """Reference 1-minute aggregation straight from raw readings."""
    rows = conn.execute(
        """SELECT time_bucket('1 minute', time), sensor_id, metric_id, count(*), sum(value), min(value),
                  max(value), last(value, time), max(time) FROM readings GROUP BY 1, 2, 3""").fetchall()
    return {r[:3]: r[3:] for r in rows}


def raw_1h(conn) -> dict:
    rows = conn.execute(
        """SELECT time_bucket('1 hour', time), sensor_id, metric_id, count(*), sum(value), min(value),
                  max(value), last(value, time), max(time) FROM readings GROUP BY 1, 2, 3""").fetchall()
    return {r[:3]: r[3:] for r in rows}


def table(conn, name: str) -> dict:
    rows = conn.execute(f"SELECT bucket, sensor_id, metric_id, count, sum, min, max, last, last_time "  # noqa: S608
                        f"FROM {name}").fetchall()
    return {r[:3]: r[3:] for r in rows}


def same(a: dict, b: dict) -> bool:
    """Rollup rows equal (sums to 1e-9 relative, the rest exactly)."""
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if (x[0], x[2], x[3], x[4], x[5]) != (y[0], y[2], y[3], y[4], y[5]):
            return False
        if abs(x[1] - y[1]) > 1e-9 * max(1.0, abs(x[1])):
            return False
    return True


def spaced(start: datetime, minutes: int, every_s: int = 20):
    """Times every ``every_s`` seconds for ``minutes`` minutes, offset by a few seconds."""
    t = start + timedelta(seconds=3)
    end = start + timedelta(minutes=minutes)
    while t < end:
        yield t
        t += timedelta(seconds=every_s)
