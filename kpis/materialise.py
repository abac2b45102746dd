"""Materialised KPI series (``kpi_1m``, ``kpi_1h``), kept by the rollup job.

A 24-hour series at 1-minute resolution computed live reads as many rows as
the raw table (one reading a minute per sensor).  The job therefore stores
each KPI's value per bucket for the scopes in
:data:`~kpis.evaluate.MATERIALISED_SCOPES`, computed by exactly the
code the dashboard uses live (:func:`kpis.evaluate.compute`), so a
materialised value equals the live one.  :func:`refresh` recomputes the
buckets the rollup job just recomputed (plus the two newest minutes, for
health KPIs that change without readings); :func:`sync_definitions` rebuilds
a KPI whose definition (formula, scopes, timezone) changed, over the
configured backfill, and records the hash in ``kpi_state``.  Until then
:func:`kpis.evaluate.series` computes that KPI live.
"""
from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta, timezone

import pandas as pd
import psycopg
from psycopg import sql

from core.timebuckets import HOUR, MINUTE, floor_time, ranges
from kpis.catalogue import Catalogue, Kpi
from kpis.evaluate import MATERIALISED_SCOPES, Registry, compute, load_registry

log = logging.getLogger(__name__)
REBUILD_SLICE = {"1m": timedelta(hours=6), "1h": timedelta(days=15)}
HEALTH_PAIRS = 400_000  # (bucket, sensor) pairs per query of a data-health KPI (see health_slice)


def _scopes(kpi: Kpi) -> tuple[str, ...]:
    return tuple(s for s in kpi.scopes if s in MATERIALISED_SCOPES)


def upsert(conn: psycopg.Connection, resolution: str, kpi_id: str, frame: pd.DataFrame) -> int:
    """Write computed values (``compute()`` output) into ``kpi_<resolution>``; rows changed."""
    if frame.empty:
        return 0
    values = [None if v is None or not math.isfinite(v) else float(v) for v in frame["value"]]
    q = sql.SQL("""
        INSERT INTO {t} AS t (bucket, kpi_id, scope_type, scope_id, value, sensors, expected)
        SELECT b, %(k)s, st, si, v, s, e
          FROM unnest(%(b)s::timestamptz[], %(st)s::text[], %(si)s::text[], %(v)s::float8[],
                      %(s)s::int[], %(e)s::int[]) AS u(b, st, si, v, s, e)
        ON CONFLICT (kpi_id, scope_type, scope_id, bucket) DO UPDATE
           SET value = EXCLUDED.value, sensors = EXCLUDED.sensors, expected = EXCLUDED.expected
         WHERE (t.value, t.sensors, t.expected) IS DISTINCT FROM
               (EXCLUDED.value, EXCLUDED.sensors, EXCLUDED.expected)""").format(
        t=sql.Identifier(f"kpi_{resolution}"))
    cur = conn.execute(q, {"k": kpi_id, "b": [t.to_pydatetime() for t in frame["bucket"]],
                           "st": list(frame["scope_type"]), "si": [str(s) for s in frame["scope_id"]],
                           "v": values, "s": [int(x) for x in frame["sensors"]],
                           "e": [int(x) for x in frame["expected"]]})
    return cur.rowcount


def health_slice(resolution: str, sensors: int) -> timedelta:
    """Span of one query of a data-health KPI: at most :data:`HEALTH_PAIRS` (bucket, sensor) pairs.

    ``sensors_reporting`` reads the distinct (bucket, sensor) pairs of the rollup; PostgreSQL's
    hash aggregate expects far fewer groups than that (no statistics on the bucket expression) and,
    once the pairs outgrow its memory (about 1.5 million at the default 32 MB work_mem), it spills in
    too few batches and a 6-hour slice at 5,000 sensors takes minutes instead of seconds."""
    step = MINUTE if resolution == "1m" else HOUR
    return min(REBUILD_SLICE[resolution], max(1, HEALTH_PAIRS // max(sensors, 1)) * step)


def _compute_range(conn, catalogue, kpi, registry, resolution, lo, hi, now) -> int:
    width = MINUTE if resolution == "1m" else HOUR
    step = health_slice(resolution, len(registry.sensors)) if kpi.formula.source == "health" else hi - lo
    changed = 0
    while lo < hi:
        top = min(lo + step, hi)
        frame = compute(conn, catalogue, kpi, start=lo, end=top, width=width, table=resolution,
                        scopes=_scopes(kpi), registry=registry, now=min(now, top))
        changed += upsert(conn, resolution, kpi.id, frame)
        lo = top
    return changed


def refresh(conn: psycopg.Connection, catalogue: Catalogue, minutes, hours, *,
            now: datetime | None = None, registry: Registry | None = None,
            errors: list[str] | None = None, skip=()) -> int:
    """Recompute materialised values of every synced KPI for these buckets; rows changed.

    The two newest minutes (and their hour) are always included.  Runs in
    the caller's transaction (or autocommit); a KPI that fails is logged,
    named in ``errors`` and skipped.  KPIs in ``skip`` (just rebuilt) are left alone.
    """
    now = now or datetime.now(timezone.utc)
    registry = registry or load_registry(conn)
    newest = floor_time(now, MINUTE)
    minutes = set(minutes) | {newest, newest - MINUTE}
    hours = set(hours) | {floor_time(m, HOUR) for m in minutes}
    changed = 0
    for kpi in catalogue:
        state = registry.kpi_state.get(kpi.id)
        if kpi.id in skip or state is None or state[0] != kpi.definition_hash(catalogue):
            continue  # just rebuilt, or not built yet (sync_definitions() does it)
        _, m1_from, h1_from = state
        try:
            with conn.transaction():  # a savepoint: one failing KPI does not stop the others
                for resolution, buckets, since in (("1m", minutes, m1_from), ("1h", hours, h1_from)):
                    step = MINUTE if resolution == "1m" else HOUR
                    for lo, hi in ranges([b for b in buckets if since is None or b >= since], step):
                        changed += _compute_range(conn, catalogue, kpi, registry, resolution, lo, hi, now)
        except Exception as exc:
            log.exception("could not materialise KPI %s", kpi.id)
            if errors is not None:
                errors.append(f"{kpi.id}: {type(exc).__name__}: {exc}"[:300])
    return changed


def sync_definitions(conn: psycopg.Connection, catalogue: Catalogue, *, backfill_1m: timedelta,
                     backfill_1h: timedelta, now: datetime | None = None,
                     registry: Registry | None = None) -> list[str]:
    """Rebuild KPIs that are new or whose definition changed; forget removed ones.

    Each KPI is rebuilt in its own transaction: values from ``now -
    backfill`` on (1-minute and 1-hour), then ``kpi_state`` records the
    definition hash and from when the values are complete.  Returns the ids
    rebuilt.
    """
    now = now or datetime.now(timezone.utc)
    registry = registry or load_registry(conn)
    rebuilt = []
    for kpi in catalogue:
        definition = kpi.definition_hash(catalogue)
        state = registry.kpi_state.get(kpi.id)
        if state is not None and state[0] == definition:
            continue
        m1_from = floor_time(now - backfill_1m, MINUTE)
        h1_from = floor_time(now - backfill_1h, HOUR)
        with conn.transaction():
            for table in ("kpi_1m", "kpi_1h"):
                conn.execute(sql.SQL("DELETE FROM {} WHERE kpi_id = %s").format(sql.Identifier(table)),
                             (kpi.id,))
            for resolution, since, step in (("1m", m1_from, MINUTE), ("1h", h1_from, HOUR)):
                lo, end = since, floor_time(now, step) + step
                while lo < end:
                    hi = min(lo + REBUILD_SLICE[resolution], end)
                    _compute_range(conn, catalogue, kpi, registry, resolution, lo, hi, now)
                    lo = hi
            conn.execute("""INSERT INTO kpi_state (kpi_id, definition, m1_from, h1_from, updated_at)
                            VALUES (%s, %s, %s, %s, now())
                            ON CONFLICT (kpi_id) DO UPDATE SET definition = EXCLUDED.definition,
                                m1_from = EXCLUDED.m1_from, h1_from = EXCLUDED.h1_from,
                                updated_at = now()""", (kpi.id, definition, m1_from, h1_from))
        registry.kpi_state[kpi.id] = (definition, m1_from, h1_from)
        rebuilt.append(kpi.id)
    gone = [k for k in registry.kpi_state if k not in catalogue.kpis]
    if gone:
        with conn.transaction():
            for table in ("kpi_1m", "kpi_1h", "kpi_state"):
                conn.execute(sql.SQL("DELETE FROM {} WHERE kpi_id = ANY(%s)").format(sql.Identifier(table)),
                             (gone,))
        for k in gone:
            registry.kpi_state.pop(k, None)
    return rebuilt
