"""Database side of the ingestor: one batch, one transaction.

``BatchWriter.write(entries)`` stores every decoded entry's readings and
vehicle positions, registers sensors it has not seen (unplaced when the
message gives no location), and dead-letters the entries that carry a reject
reason, all in one transaction.  Rows go in by binary COPY into a temporary
table and then ``INSERT ... ON CONFLICT DO NOTHING``, so a redelivered message
adds nothing.  Errors propagate after rollback; :mod:`ingest.pipeline`
decides whether to retry or to isolate the offending entries.  The writer
keeps ``citydash_ingest_db_up`` at 1 while its connection works (a connect,
write or ping reached the database) and 0 once one failed for want of a
connection.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from ingest import metrics
from ingest.decoders.base import Decoded, Message

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Entry:
    """One MQTT message on its way to the database."""

    mid: int
    qos: int
    generation: int  # connection generation it arrived on (acks only go to the same one)
    message: Message
    decoder: str | None = None
    decoded: Decoded | None = None
    reason: str | None = None  # set: the message is dead-lettered with this reason


@dataclass(slots=True)
class WriteResult:
    readings: int = 0  # rows inserted
    duplicates: int = 0  # rows already present (redeliveries)
    vehicles: int = 0
    dead_letters: int = 0
    sensors_registered: int = 0
    newest: dict[int, datetime] = field(default_factory=dict)  # sensor id -> newest reading


READINGS_TYPES = ["timestamptz", "int4", "int2", "float8", "int2"]
VEHICLE_TYPES = ["timestamptz", "text", "text", "text", "float8", "float8",
                 "float4", "float4", "float4", "float4"]


class BatchWriter:
    def __init__(self, url: str, payload_cap: int = 8192):
        self.url = url
        self.payload_cap = payload_cap
        self.conn: psycopg.Connection | None = None
        self.sensor_ids: dict[str, int] = {}  # external id -> sensors.id (committed)
        self.unplaced: set[str] = set()  # known sensors without a location
        self.metric_ids: dict[str, int] = {}

    # -- connection -------------------------------------------------------
    def connect(self) -> psycopg.Connection:
        if self.conn is not None and not self.conn.closed:
            return self.conn
        try:
            conn = psycopg.connect(self.url, connect_timeout=5, application_name="citydash-ingest")
            try:
                conn.execute("SET synchronous_commit = on")
                conn.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS readings_in "
                    "(LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
                conn.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS vehicles_in "
                    "(LIKE vehicle_positions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
                conn.commit()
            except BaseException:
                conn.close()
                raise
        except BaseException:
            metrics.DB_UP.set(0)
            raise
        self.conn = conn
        metrics.DB_UP.set(1)
        return conn

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None

    def _failed(self, conn: psycopg.Connection) -> None:
        """After an error: a closed or broken connection is dropped, and the database is down."""
        if conn.closed or conn.broken:
            self.conn = None
            metrics.DB_UP.set(0)

    def ping(self) -> None:
        conn = self.connect()
        try:
            conn.execute("SELECT 1")
            conn.rollback()
        except BaseException:
            self._failed(conn)
            raise
        metrics.DB_UP.set(1)

    # -- writing ----------------------------------------------------------
    def write(self, entries: list[Entry]) -> WriteResult:
        conn = self.connect()
        try:
            with conn.transaction():
                result, new_sensors, new_metrics = self._write(conn, entries)
        except BaseException:
            self._failed(conn)
            raise
        metrics.DB_UP.set(1)
        # Only committed ids enter the caches.
        for ext, (sid, placed) in new_sensors.items():
            self.sensor_ids[ext] = sid
            if placed:
                self.unplaced.discard(ext)
            else:
                self.unplaced.add(ext)
        self.metric_ids.update(new_metrics)
        return result

    def _write(self, conn, entries):
        result = WriteResult()
        good = [e for e in entries if e.reason is None and e.decoded is not None]
        new_sensors = self._resolve_sensors(conn, good)
        new_metrics = self._resolve_metrics(conn, good)
        sensor_id = self.sensor_ids
        if new_sensors:
            sensor_id = {**sensor_id, **{k: v[0] for k, v in new_sensors.items()}}
        metric_id = {**self.metric_ids, **new_metrics} if new_metrics else self.metric_ids

        newest = result.newest
        n_rows = 0
        with conn.cursor() as cur:
            with cur.copy("COPY readings_in (time, sensor_id, metric_id, value, flags) "
                          "FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(READINGS_TYPES)
                write_row = copy.write_row
                for entry in good:
                    for r in entry.decoded.readings:
                        sid = sensor_id[r.sensor]
                        write_row((r.time, sid, metric_id[r.metric], r.value, r.flags))
                        n_rows += 1
                        seen = newest.get(sid)
                        if seen is None or r.time > seen:
                            newest[sid] = r.time
            if n_rows:
                cur.execute("INSERT INTO readings SELECT * FROM readings_in "
                            "ON CONFLICT DO NOTHING")
                result.readings = cur.rowcount
                result.duplicates = n_rows - cur.rowcount

            vehicles = [v for e in good for v in e.decoded.vehicles]
            if vehicles:
                with cur.copy("COPY vehicles_in (time, vehicle, route, trip, lon, lat, speed_kmh, "
                              "bearing, delay_s, occupancy_pct) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(VEHICLE_TYPES)
                    for v in vehicles:
                        copy.write_row((v.time, v.vehicle, v.route, v.trip, v.lon, v.lat,
                                        v.speed_kmh, v.bearing, v.delay_s, v.occupancy_pct))
                cur.execute("INSERT INTO vehicle_positions SELECT * FROM vehicles_in "
                            "ON CONFLICT DO NOTHING")
                result.vehicles = cur.rowcount

            if n_rows or vehicles:  # KPI rollups: the 1-minute buckets this batch touched
                cur.execute("INSERT INTO rollup_pending (bucket) SELECT DISTINCT "
                            "time_bucket('1 minute', time) FROM (SELECT time FROM readings_in "
                            "UNION ALL SELECT time FROM vehicles_in) AS touched")

            rejected = [e for e in entries if e.reason is not None]
            if rejected:
                self._dead_letter(cur, rejected)
                result.dead_letters = len(rejected)
        result.sensors_registered = sum(1 for k in new_sensors if k not in self.sensor_ids)
        return result, new_sensors, new_metrics

    def dead_letter(self, entries: list[Entry]) -> None:
        """Store ``entries`` (each with a reason) as dead letters, in a transaction of their own."""
        conn = self.connect()
        try:
            with conn.transaction(), conn.cursor() as cur:
                self._dead_letter(cur, entries)
        except BaseException:
            self._failed(conn)
            raise

    def _dead_letter(self, cur, entries: list[Entry]) -> None:
        cap = self.payload_cap
        cur.executemany(
            "INSERT INTO dead_letters (received_at, topic, payload, payload_size, decoder, reason) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            [(e.message.received_at, _text(e.message.topic), e.message.payload[:cap],
              len(e.message.payload), e.decoder, _text(e.reason or "")[:2000]) for e in entries],
        )

    def _resolve_sensors(self, conn, good: list[Entry]) -> dict[str, tuple[int, bool]]:
        """Register unknown sensors; place unplaced ones when a message gives a location."""
        wanted: dict[str, tuple] = {}
        for entry in good:
            decoded = entry.decoded
            for info in decoded.sensors:
                ext = info.external_id
                placing = info.lon is not None and info.lat is not None
                if ext not in self.sensor_ids or (placing and ext in self.unplaced):
                    wanted[info.external_id] = (info.kind, info.domain, info.name, info.lon,
                                                info.lat, entry.message.received_at)
            for r in decoded.readings:
                if r.sensor not in self.sensor_ids and r.sensor not in wanted:
                    wanted[r.sensor] = (None, None, None, None, None, entry.message.received_at)
        if not wanted:
            return {}
        ids = list(wanted)
        cols = list(zip(*wanted.values()))
        rows = conn.execute(
            """INSERT INTO sensors AS s (external_id, kind, domain, name, lon, lat, first_seen)
               SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[],
                                    %s::float8[], %s::float8[], %s::timestamptz[])
               ON CONFLICT (external_id) DO UPDATE SET
                   kind = coalesce(s.kind, EXCLUDED.kind),
                   domain = coalesce(s.domain, EXCLUDED.domain),
                   name = coalesce(s.name, EXCLUDED.name),
                   lon = CASE WHEN s.placed THEN s.lon ELSE EXCLUDED.lon END,
                   lat = CASE WHEN s.placed THEN s.lat ELSE EXCLUDED.lat END,
                   first_seen = coalesce(s.first_seen, EXCLUDED.first_seen)
               RETURNING external_id, id, placed""",
            (ids, *[list(c) for c in cols]),
        ).fetchall()
        return {ext: (sid, placed) for ext, sid, placed in rows}

    def _resolve_metrics(self, conn, good: list[Entry]) -> dict[str, int]:
        wanted: dict[str, str | None] = {}
        for entry in good:
            for r in entry.decoded.readings:
                if r.metric not in self.metric_ids and r.metric not in wanted:
                    wanted[r.metric] = r.unit
        if not wanted:
            return {}
        names = list(wanted)
        conn.execute(
            "INSERT INTO metrics (name, unit) SELECT * FROM unnest(%s::text[], %s::text[]) "
            "ON CONFLICT (name) DO NOTHING",
            (names, [wanted[n] for n in names]),
        )
        rows = conn.execute("SELECT name, id FROM metrics WHERE name = ANY(%s)", (names,))
        return dict(rows.fetchall())

    def update_last_seen(self, newest: dict[int, datetime]) -> None:
        """Advance ``sensors.last_seen`` (called every few seconds, not per batch)."""
        if not newest:
            return
        conn = self.connect()
        try:
            with conn.transaction():
                conn.execute(
                    """UPDATE sensors s SET last_seen = v.t
                         FROM unnest(%s::int[], %s::timestamptz[]) AS v(id, t)
                        WHERE s.id = v.id AND (s.last_seen IS NULL OR s.last_seen < v.t)""",
                    (list(newest), list(newest.values())),
                )
        except BaseException:
            self._failed(conn)
            raise


def _text(value: str) -> str:
    """PostgreSQL text cannot hold NUL characters."""
    return value.replace("\x00", "\\x00")
