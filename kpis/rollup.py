"""Incremental rollups (``readings_1m``, ``readings_1h``) and retention.

Design (docs/kpis.md, "Rollups"):

* The ingestor appends the 1-minute buckets each batch touched to
  ``rollup_pending`` (one statement in :mod:`ingest.writer`).  Data loaded any
  other way (COPY, backfills, tests) is announced with :func:`mark_dirty`, or
  rolled up directly with :func:`rebuild`.
* :func:`refresh` claims pending buckets and, in the same transaction,
  recomputes exactly those minutes from ``readings`` and the hours containing
  them from ``readings_1m``.  Late data therefore re-aggregates only the
  buckets it touches.  Rows whose aggregate did not change are not rewritten
  (sums compared to 1e-12 relative: summation order may differ between runs).
* Readings are never updated or deleted (the writer inserts with ``ON
  CONFLICT DO NOTHING``), so recomputing a bucket is idempotent.
* Retention (:func:`apply_retention`) drops whole chunks with ``drop_chunks``
  through the SECURITY DEFINER function ``apply_retention`` (the ingest role
  owns no table): raw readings and vehicle positions after
  ``raw_retention_days``, 1-minute rollups and KPI values after
  ``rollup_1m_retention_days``; 1-hour tables are kept.
* Where ``timescale_features`` reports continuous aggregates and migration
  0003 created ``readings_1m_cagg`` / ``readings_1h_cagg``, :func:`relations`
  names those and :func:`refresh` leaves the 1m/1h maintenance to
  TimescaleDB's policies (it still claims pending buckets for the KPI job).
  That path cannot run on the Apache edition and is untested here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import psycopg

from core.timebuckets import HOUR, MINUTE, floor_time, ranges

CLAIM_LIMIT = 20_000  # pending rows claimed per transaction

_AGG_1M = """
INSERT INTO readings_1m AS t (bucket, sensor_id, metric_id, count, sum, min, max, last, last_time)
SELECT time_bucket('1 minute', time), sensor_id, metric_id, count(*), sum(value), min(value),
       max(value), last(value, time), max(time)
  FROM readings
 WHERE time >= %(lo)s AND time < %(hi)s
 GROUP BY 1, 2, 3
{upsert}"""

_AGG_1H = """
INSERT INTO readings_1h AS t (bucket, sensor_id, metric_id, count, sum, min, max, last, last_time)
SELECT time_bucket('1 hour', bucket), sensor_id, metric_id, sum(count), sum(sum), min(min),
       max(max), last(last, last_time), max(last_time)
  FROM readings_1m
 WHERE bucket >= %(lo)s AND bucket < %(hi)s
 GROUP BY 1, 2, 3
{upsert}"""

_UPSERT = """
ON CONFLICT (sensor_id, metric_id, bucket) DO UPDATE
   SET count = EXCLUDED.count, sum = EXCLUDED.sum, min = EXCLUDED.min, max = EXCLUDED.max,
       last = EXCLUDED.last, last_time = EXCLUDED.last_time
 WHERE (t.count, t.min, t.max, t.last, t.last_time)
       IS DISTINCT FROM (EXCLUDED.count, EXCLUDED.min, EXCLUDED.max, EXCLUDED.last, EXCLUDED.last_time)
    OR abs(t.sum - EXCLUDED.sum) > 1e-12 * greatest(1.0, abs(EXCLUDED.sum))"""


@dataclass(frozen=True)
class Relations:
    """Where the 1-minute and 1-hour rollups are read from."""

    m1: str = "readings_1m"
    h1: str = "readings_1h"
    continuous: bool = False  # True: TimescaleDB continuous aggregates maintain them


@dataclass
class RefreshResult:
    minutes: list[datetime] = field(default_factory=list)  # 1-minute buckets recomputed
    hours: list[datetime] = field(default_factory=list)  # 1-hour buckets recomputed
    rows_1m: int = 0  # rows inserted or changed
    rows_1h: int = 0
    claimed: int = 0  # pending rows consumed

    def merge(self, other: "RefreshResult") -> None:
        self.minutes = sorted(set(self.minutes) | set(other.minutes))
        self.hours = sorted(set(self.hours) | set(other.hours))
        self.rows_1m += other.rows_1m
        self.rows_1h += other.rows_1h
        self.claimed += other.claimed


# -- database ----------------------------------------------------------------

def relations(conn: psycopg.Connection) -> Relations:
    """The rollup relations to read: citydash's tables, or continuous aggregates."""
    row = conn.execute(
        """SELECT coalesce((SELECT available FROM timescale_features
                             WHERE name = 'continuous_aggregates'), false)
                  AND to_regclass('readings_1m_cagg') IS NOT NULL
                  AND to_regclass('readings_1h_cagg') IS NOT NULL""").fetchone()
    if row[0]:
        return Relations("readings_1m_cagg", "readings_1h_cagg", True)
    return Relations()


def mark_dirty(conn: psycopg.Connection, start: datetime, end: datetime) -> int:
    """Queue every 1-minute bucket overlapping ``[start, end)`` for the next :func:`refresh`."""
    cur = conn.execute(
        """INSERT INTO rollup_pending (bucket)
           SELECT generate_series(time_bucket('1 minute', %(s)s::timestamptz),
                                  %(e)s::timestamptz - interval '1 microsecond', interval '1 minute')""",
        {"s": start, "e": end})
    return cur.rowcount


def claim_pending(conn: psycopg.Connection, limit: int = CLAIM_LIMIT) -> tuple[list[datetime], int]:
    """Delete up to ``limit`` pending rows; (distinct minutes, rows claimed).

    Call inside the transaction that recomputes the minutes: a rollback puts
    them back.  Rows committed by writers meanwhile stay for the next run.
    """
    rows = conn.execute(
        """DELETE FROM rollup_pending
            WHERE ctid = ANY (ARRAY(SELECT ctid FROM rollup_pending LIMIT %s))
        RETURNING bucket""", (limit,)).fetchall()
    return sorted({r[0] for r in rows}), len(rows)


def refresh_minutes(conn: psycopg.Connection, minutes) -> int:
    """Recompute ``readings_1m`` for these 1-minute buckets from raw readings."""
    sql = _AGG_1M.format(upsert=_UPSERT)
    changed = 0
    for lo, hi in ranges(minutes, MINUTE):
        changed += conn.execute(sql, {"lo": lo, "hi": hi}).rowcount
    return changed


def refresh_hours(conn: psycopg.Connection, hours) -> int:
    """Recompute ``readings_1h`` for these 1-hour buckets from ``readings_1m``."""
    sql = _AGG_1H.format(upsert=_UPSERT)
    changed = 0
    for lo, hi in ranges(hours, HOUR):
        changed += conn.execute(sql, {"lo": lo, "hi": hi}).rowcount
    return changed


def refresh(conn: psycopg.Connection, *, limit: int = CLAIM_LIMIT,
            max_rounds: int = 1000) -> RefreshResult:
    """Roll up every pending bucket, one transaction per ``limit`` pending rows.

    Returns what was recomputed (the KPI job materialises the same buckets).
    """
    rels = relations(conn)
    total = RefreshResult()
    for _ in range(max_rounds):
        with conn.transaction():
            minutes, claimed = claim_pending(conn, limit)
            if not claimed:
                break
            hours = sorted({floor_time(m, HOUR) for m in minutes})
            part = RefreshResult(minutes, hours, claimed=claimed)
            if not rels.continuous:
                part.rows_1m = refresh_minutes(conn, minutes)
                part.rows_1h = refresh_hours(conn, hours)
        total.merge(part)
        if claimed < limit:
            break
    return total


def rebuild(conn: psycopg.Connection, start: datetime, end: datetime,
            step: timedelta = timedelta(hours=6)) -> RefreshResult:
    """Recompute every 1m and 1h bucket in ``[start, end)`` (bulk loads), ``step`` per transaction.

    ``start`` and ``end`` are widened to whole hours.  Returns the hours
    recomputed (minutes are not listed, there may be very many).  A slice
    with no rollup rows yet is filled with a plain INSERT (faster); so do not
    run it on a range the rollup job may be writing at the same moment.
    """
    lo, end = floor_time(start, HOUR), floor_time(end - timedelta(microseconds=1), HOUR) + HOUR
    step = max(step - step % HOUR, HOUR)
    result = RefreshResult()
    while lo < end:
        hi = min(lo + step, end)
        bounds = {"lo": lo, "hi": hi}
        with conn.transaction():
            for sql, table, attr in ((_AGG_1M, "readings_1m", "rows_1m"), (_AGG_1H, "readings_1h", "rows_1h")):
                empty = conn.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {table} "  # noqa: S608
                                     "WHERE bucket >= %(lo)s AND bucket < %(hi)s)", bounds).fetchone()[0]
                # an empty range (a fresh backfill) takes a plain insert, in time order like live rollups
                query = sql.format(upsert="ORDER BY 1, 2, 3" if empty else _UPSERT)
                setattr(result, attr, getattr(result, attr) + conn.execute(query, bounds).rowcount)
        result.hours.extend(lo + i * HOUR for i in range(int((hi - lo) / HOUR)))
        lo = hi
    return result


def apply_retention(conn: psycopg.Connection, raw_days: int, m1_days: int) -> dict[str, int]:
    """Drop expired chunks; ``{relation: chunks dropped}``."""
    with conn.transaction():
        rows = conn.execute("SELECT relation, dropped FROM apply_retention(%s, %s)",
                            (raw_days, m1_days)).fetchall()
    return dict(rows)


def record_state(conn: psycopg.Connection, name: str, details: dict, at: datetime | None = None) -> None:
    """Remember a job's last run in ``rollup_state``."""
    from psycopg.types.json import Jsonb

    conn.execute(
        """INSERT INTO rollup_state (name, at, details, updated_at) VALUES (%s, %s, %s, now())
           ON CONFLICT (name) DO UPDATE SET at = EXCLUDED.at, details = EXCLUDED.details,
                                            updated_at = now()""",
        (name, at or datetime.now(timezone.utc), Jsonb(details)))


def last_run(conn: psycopg.Connection, name: str) -> datetime | None:
    row = conn.execute("SELECT at FROM rollup_state WHERE name = %s", (name,)).fetchone()
    return row[0] if row else None
