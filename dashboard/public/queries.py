"""What the public may see, read through the ``citydash_public`` role's views only.

``publish`` writes the catalogue's public KPIs (and the publication delay)
into ``published_kpis`` through the SECURITY DEFINER function
``publish_kpis()``; the views in schema ``public_view`` (migration 0004) then
expose only those KPIs, only city and district scopes, with values of groups
smaller than the KPI's ``min_group`` suppressed and nothing newer than the
delay.  ``snapshot`` reads those views (four queries); ``PublicData`` refreshes it
on a schedule into the server-side cache, so the database sees the same few
queries per refresh period whatever the number of viewers.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import psycopg

from core.db import pool
from dashboard import cache
from dashboard.state import catalogue_of
from kpis.catalogue import Catalogue

log = logging.getLogger(__name__)

TREND_HOURS = 24
TREND_STEP = timedelta(minutes=15)
LATEST_LOOKBACK_S = 3600
PUBLIC_SCOPES = ("city", "district")
_published: set[str] = set()
_published_lock = threading.Lock()


@dataclass(frozen=True)
class PublicKpi:
    id: str
    unit: str
    better: str
    min_group: int
    delay_s: int


@dataclass(frozen=True)
class Point:
    at: datetime  # bucket start, UTC
    value: float | None
    suppressed: bool


@dataclass
class Snapshot:
    """Everything the public view shows, as of ``computed_at``."""

    computed_at: datetime
    kpis: tuple[PublicKpi, ...]
    districts: dict[str, str]  # id -> name
    latest: dict[tuple[str, str, str], Point] = field(default_factory=dict)  # (kpi, scope_type, scope_id)
    series: dict[tuple[str, str, str], list[Point]] = field(default_factory=dict)

    def kpi(self, kpi_id: str) -> PublicKpi | None:
        return next((k for k in self.kpis if k.id == kpi_id), None)

    @property
    def delay_s(self) -> int:
        return max((k.delay_s for k in self.kpis), default=0)

    @property
    def as_of(self) -> datetime | None:
        """End of the newest published bucket."""
        found = [p.at for p in self.latest.values()]
        return max(found) + timedelta(minutes=1) if found else None


# -- publishing (reader or owner connection) ---------------------------------------

def public_entries(catalogue: Catalogue) -> list[dict]:
    """The catalogue's public KPIs as rows for ``publish_kpis()``; pure."""
    return [{"kpi_id": k.id, "min_group": k.min_group, "unit": k.unit, "better": k.better}
            for k in catalogue if k.public]


def publish(conn: psycopg.Connection, settings) -> int:
    """Write the public KPIs of the served city's catalogue; returns how many are published."""
    catalogue = catalogue_of(settings.city_pack)
    return conn.execute("SELECT publish_kpis(%s::jsonb, %s)",
                        (json.dumps(public_entries(catalogue)), settings.public_delay_s)).fetchone()[0]


def ensure_published(settings) -> None:
    """``publish`` once per process and database (retried on the next refresh when it failed)."""
    key = settings.role_url("reader")
    with _published_lock:
        if key in _published:
            return
        try:
            with pool(settings, "reader").connection() as conn:
                n = publish(conn, settings)
        except psycopg.Error as exc:
            log.warning("cannot publish the public KPIs yet: %s", str(exc).splitlines()[0])
            return
        _published.add(key)
        log.info("published %d public KPIs (delay %d s)", n, settings.public_delay_s)


# -- reading (public connection) ---------------------------------------------------

def snapshot(conn: psycopg.Connection, now: datetime | None = None) -> Snapshot:
    """Read the public views: published KPIs, districts, newest values, 24-hour trends."""
    now = now or datetime.now(timezone.utc)
    kpis = tuple(PublicKpi(*row) for row in conn.execute(
        "SELECT kpi_id, unit, better, min_group, delay_s FROM public_view.kpis ORDER BY kpi_id"))
    districts = dict(conn.execute("SELECT id, name FROM public_view.districts ORDER BY name"))
    delay = max((k.delay_s for k in kpis), default=0)
    snap = Snapshot(now, kpis, districts)
    if not kpis:
        return snap
    for kpi_id, scope_type, scope_id, at, value, suppressed in conn.execute(
            """SELECT DISTINCT ON (kpi_id, scope_type, scope_id)
                      kpi_id, scope_type, scope_id, bucket, value, suppressed
                 FROM public_view.kpi_series
                WHERE resolution = '1m' AND bucket >= %s
                ORDER BY kpi_id, scope_type, scope_id, bucket DESC""",
            (now - timedelta(seconds=delay + LATEST_LOOKBACK_S),)):
        snap.latest[(kpi_id, scope_type, scope_id)] = Point(at, value, suppressed)
    for kpi_id, scope_type, scope_id, at, value, suppressed in conn.execute(
            """SELECT kpi_id, scope_type, scope_id,
                      date_bin(%s, bucket, TIMESTAMPTZ '2000-01-01') AS t,
                      avg(value), bool_and(suppressed)
                 FROM public_view.kpi_series
                WHERE resolution = '1m' AND bucket >= %s
                GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4""",
            (TREND_STEP, now - timedelta(hours=TREND_HOURS, seconds=delay))):
        snap.series.setdefault((kpi_id, scope_type, scope_id), []).append(Point(at, value, suppressed))
    return snap


class PublicData:
    """The public snapshot, refreshed on a schedule by a background thread.

    Viewers never wait for the database: they get the newest snapshot this
    process holds.  Every ``CITYDASH_PUBLIC_REFRESH_S`` one thread per process
    reads the views again; with a shared (Redis) cache, ``add`` of a lock key
    lets one process per period do it and the others take its result from the
    cache.  Only the very first request (no snapshot yet) or a snapshot older
    than three periods (the refresher failed) computes while the viewer waits;
    when that fails, the viewers of the next ``RETRY_AFTER_S`` get the error at
    once instead of each waiting for the database again.
    """

    MAX_FAILURES = 3
    WAIT_S = 3.0  # longest a viewer waits for another thread's read of the database
    RETRY_AFTER_S = 10.0  # after a failed synchronous read, viewers get the error at once for this long

    def __init__(self, settings):
        self.settings = settings
        database = hashlib.sha256(settings.role_url("public").encode()).hexdigest()[:12]
        self.KEY = f"public:snapshot:{database}"
        self.LOCK = f"public:snapshot:{database}:refreshing"
        self.period = max(1, settings.public_refresh_s)
        self.local: Snapshot | None = None
        self.refreshes = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._failure: tuple[float, Exception] | None = None

    def _age(self, snap: Snapshot | None) -> float:
        if snap is None:
            return float("inf")
        return (datetime.now(timezone.utc) - snap.computed_at).total_seconds()

    def get(self) -> Snapshot:
        snap = self.local
        if self._age(snap) < 3 * self.period:
            self._ensure_thread()
            return snap
        # one computation per process; the others wait for it, but not for a database that is down
        if not self._lock.acquire(timeout=self.WAIT_S):
            raise TimeoutError("the public snapshot is being read and the database is slow")
        try:
            if self._age(self.local) >= 3 * self.period:
                self._read_now()
        finally:
            self._lock.release()
        self._ensure_thread()
        return self.local

    def _read_now(self) -> None:
        """Take a fresh shared snapshot or read one (holding ``_lock``); remember a failure."""
        if self._failure is not None and time.monotonic() - self._failure[0] < self.RETRY_AFTER_S:
            raise self._failure[1]  # the database was just tried: fail fast, do not queue viewers
        try:
            shared = cache.backend().get(self.KEY)
            if self._age(shared) < 2 * self.period:
                self.local = shared
            else:
                self.refresh()
        except Exception as exc:
            self._failure = (time.monotonic(), exc)
            raise
        self._failure = None

    def refresh(self) -> Snapshot:
        ensure_published(self.settings)
        with pool(self.settings, "public").connection() as conn:
            snap = snapshot(conn)
        cache.backend().set(self.KEY, snap, timeout=3 * self.period)
        self.local = snap
        self.refreshes += 1
        return snap

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="citydash-public-refresh",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        try:
            self._refresh_loop()
        except SystemExit:  # a server runner stopping its threads (dash.testing does): just end
            return

    def _refresh_loop(self) -> None:
        failures = 0
        while not self._stop.wait(max(0.5, self.period - self._age(self.local))):
            try:
                if cache.backend().add(self.LOCK, 1, timeout=max(1, int(self.period * 0.8))):
                    self.refresh()
                else:
                    shared = cache.backend().get(self.KEY)
                    if shared is not None and (self.local is None or shared.computed_at > self.local.computed_at):
                        self.local = shared
                failures = 0
            except Exception as exc:  # the next viewer after three periods retries synchronously
                failures += 1
                log.warning("public snapshot refresh failed: %s", str(exc).splitlines()[0] if str(exc) else exc)
                if failures >= self.MAX_FAILURES:
                    return

    def stop(self) -> None:
        self._stop.set()
