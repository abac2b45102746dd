"""Background jobs of the ingestor: rollups, retention, alerts.

``JobRunner(settings).start()`` runs one thread that, on its own connection
as ``citydash_ingest``:

* every ``rollup_interval_s``: rolls up the 1-minute buckets the ingestor
  touched (:func:`kpis.rollup.refresh`), brings the materialised KPI
  series up to date (:mod:`kpis.materialise`, rebuilding KPIs
  whose definition changed);
* every ``retention_interval_s``: drops expired chunks
  (:func:`kpis.rollup.apply_retention`) and deletes audit-log entries and
  dead letters older than ``audit_retention_days`` / ``dead_letter_retention_days``
  (``purge_audit_log``, ``purge_dead_letters``);
* every ``alert_interval_s``: evaluates alerts
  (:func:`kpis.alerts.evaluate_alerts`) and publishes changed
  alerts on MQTT (``city/alerts/...``).

Each job holds a PostgreSQL advisory lock while it runs, so several
ingestors can each run a ``JobRunner`` and only one works at a time.  A
failing job is logged and retried at its next turn; it never stops the
others.  ``run_once()`` runs the jobs now, in the caller's thread (tests).
``stats`` accumulates per job: runs, failures, wall seconds and CPU seconds
(this thread's, plus the database backend's when the server is local).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

from core.settings import Settings, get_settings
from kpis import materialise, rollup
from kpis.alerts import MqttPublisher, evaluate_alerts, publish_changes
from kpis.catalogue import DEFAULT_FILE, CatalogueError, load_catalogue, pack_info
from kpis.evaluate import load_registry

log = logging.getLogger(__name__)

LOCK_BASE = 0x63697479_0000  # 'city' << 16; + job number
JOBS = ("rollup", "retention", "alerts")
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def backend_cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) of a local database backend, or None when not readable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


class JobRunner:
    def __init__(self, settings: Settings | None = None, catalogue=None, publisher=None):
        self.settings = settings = settings or get_settings()
        self.url = settings.role_url("ingest")
        self._catalogue = catalogue
        self._fixed_catalogue = catalogue is not None
        self._catalogue_stamp: tuple | None = None
        self._catalogue_error: str | None = None
        self._publisher = publisher
        self._own_publisher = publisher is None
        self.conn: psycopg.Connection | None = None
        self._backend_pid: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._due = {job: 0.0 for job in JOBS}
        self.stats = {job: {"runs": 0, "failures": 0, "wall_s": 0.0, "cpu_s": 0.0, "db_cpu_s": 0.0,
                            "last_error": None, "last": None} for job in JOBS}
        self.intervals = {"rollup": settings.rollup_interval_s, "retention": settings.retention_interval_s,
                          "alerts": settings.alert_interval_s}

    # -- resources -------------------------------------------------------------
    @property
    def catalogue(self):
        """The KPI catalogue of the city pack, reloaded when its files change; None while invalid."""
        if self._fixed_catalogue:
            return self._catalogue

        pack = Path(self.settings.city_pack)
        try:
            files = [DEFAULT_FILE, pack / "city.yaml", pack_info(pack)[1]]
        except CatalogueError:
            files = [DEFAULT_FILE, pack / "city.yaml"]
        stamp = tuple((str(f), f.stat().st_mtime_ns if f is not None and f.exists() else None) for f in files)
        if stamp != self._catalogue_stamp:
            self._catalogue_stamp = stamp
            try:
                self._catalogue, self._catalogue_error = load_catalogue(pack), None
                log.info("KPI catalogue loaded: %d KPIs", len(self._catalogue))
            except CatalogueError as exc:  # keep rolling up; KPIs wait for a valid catalogue
                self._catalogue, self._catalogue_error = None, str(exc)
                log.error("KPI catalogue invalid, KPI series and alerts paused: %s", exc)
        return self._catalogue

    @property
    def publisher(self):
        if self._publisher is None:
            self._publisher = MqttPublisher(self.settings.mqtt_url,
                                            f"{self.settings.mqtt_client_id}-alerts")
        return self._publisher

    def connect(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5,
                                        application_name="citydash-jobs")
            self._backend_pid = self.conn.info.backend_pid
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self._own_publisher and self._publisher is not None:
            self._publisher.close()
            self._publisher = None

    # -- jobs ---------------------------------------------------------------------
    def rollup(self, now: datetime | None = None) -> dict:
        """Roll up pending buckets, then refresh the materialised KPI series."""
        conn = self.connect()
        now = now or datetime.now(timezone.utc)
        result = rollup.refresh(conn)
        details = {"minutes": len(result.minutes), "hours": len(result.hours), "rows_1m": result.rows_1m,
                   "rows_1h": result.rows_1h, "claimed": result.claimed}
        catalogue = self.catalogue
        if catalogue is None:
            details["kpis"] = f"paused: {self._catalogue_error}"
            rollup.record_state(conn, "rollup", details, now)
            return details
        registry = load_registry(conn)
        s = self.settings
        details["kpis_rebuilt"] = materialise.sync_definitions(
            conn, catalogue, backfill_1m=timedelta(days=s.kpi_backfill_1m_days),
            backfill_1h=timedelta(days=s.kpi_backfill_1h_days), now=now, registry=registry)
        errors: list[str] = []
        with conn.transaction():
            details["kpi_rows"] = materialise.refresh(conn, catalogue, result.minutes, result.hours, now=now,
                                                      registry=registry, errors=errors,
                                                      skip=set(details["kpis_rebuilt"]))
            details["kpi_errors"] = errors
            rollup.record_state(conn, "rollup", details, now)
        return details

    def retention(self, now: datetime | None = None) -> dict:
        conn = self.connect()
        dropped = rollup.apply_retention(conn, self.settings.raw_retention_days,
                                         self.settings.rollup_1m_retention_days)
        # personal data (who did what, from which address) is kept no longer than the audit retention
        dropped["audit_log"] = conn.execute("SELECT purge_audit_log(%s)",
                                            (self.settings.audit_retention_days,)).fetchone()[0]
        dropped["dead_letters"] = conn.execute("SELECT purge_dead_letters(%s)",
                                               (self.settings.dead_letter_retention_days,)).fetchone()[0]
        rollup.record_state(conn, "retention", dropped, now)
        return dropped

    def alerts(self, now: datetime | None = None) -> dict:
        conn = self.connect()
        s = self.settings
        if self.catalogue is None:
            return {"paused": self._catalogue_error}
        report = evaluate_alerts(conn, self.catalogue, now=now, weeks=s.anomaly_weeks,
                                 close_after=timedelta(seconds=s.alert_close_after_s))
        report.published = publish_changes(conn, self.publisher)
        details = {"opened": report.opened, "changed": report.changed, "resolved": report.resolved,
                   "closed": report.closed, "published": report.published, "evaluated": report.evaluated}
        rollup.record_state(conn, "alerts", details, now)
        return details

    def _run(self, job: str, now: datetime | None = None) -> dict | None:
        """Run one job under its advisory lock; None when another process holds it."""
        stats = self.stats[job]
        wall, cpu = time.perf_counter(), time.thread_time()
        db_cpu = backend_cpu_seconds(self._backend_pid) if self._backend_pid else None
        try:
            conn = self.connect()
            if db_cpu is None:
                db_cpu = backend_cpu_seconds(self._backend_pid)
            lock = LOCK_BASE + JOBS.index(job)
            if not conn.execute("SELECT pg_try_advisory_lock(%s)", (lock,)).fetchone()[0]:
                return None
            try:
                result = getattr(self, job)(now)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (lock,))
            stats["runs"] += 1
            stats["last"], stats["last_error"] = result, None
            return result
        except Exception as exc:  # a failing job must not stop the others
            stats["failures"] += 1
            stats["last_error"] = f"{type(exc).__name__}: {exc}"[:500]
            log.exception("%s job failed", job)
            if self.conn is not None and (self.conn.broken or self.conn.closed):
                self.conn = None
            raise
        finally:
            stats["wall_s"] += time.perf_counter() - wall
            stats["cpu_s"] += time.thread_time() - cpu
            after = backend_cpu_seconds(self._backend_pid) if self._backend_pid else None
            if db_cpu is not None and after is not None:
                stats["db_cpu_s"] += max(after - db_cpu, 0.0)

    def run_once(self, now: datetime | None = None, jobs=JOBS) -> dict[str, dict | None]:
        """Run ``jobs`` now, in order, in this thread; exceptions propagate (tests)."""
        return {job: self._run(job, now) for job in jobs}

    # -- thread -----------------------------------------------------------------
    def start(self) -> None:
        if not self.settings.jobs_enabled:
            log.info("KPI jobs disabled (CITYDASH_JOBS_ENABLED=false)")
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="citydash-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.close()

    def _loop(self) -> None:
        self._due["retention"] = time.monotonic() + 60.0  # let the ingestor settle first
        while not self._stop.is_set():
            now = time.monotonic()
            for job in JOBS:
                if self._stop.is_set() or now < self._due[job]:
                    continue
                try:
                    self._run(job)
                except Exception:  # noqa: BLE001 - logged in _run
                    pass
                self._due[job] = time.monotonic() + max(self.intervals[job], 1)
            wait = min(self._due.values()) - time.monotonic()
            self._stop.wait(min(max(wait, 0.2), 5.0))
