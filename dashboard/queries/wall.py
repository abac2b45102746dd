"""Data of the operator wall screen (``/wall``): pure functions of a connection.

Everything here is plain data (dicts, lists, floats, ISO strings) so a result
can be cached in Redis and shared by every screen (``dashboard.cache.bucketed``):

* :func:`kpi_snapshot` - every KPI of the catalogue through the KPI engine
  (``evaluate.wall``): current city value, level, confidence, value per
  district, a downsampled 24-hour series; plus congestion per road.  The
  expensive part, cached per ``wall_cache_s`` bucket.
* :func:`last_week` - every KPI's current value one week ago (the trend).
* :func:`district_series` - the 24-hour series of one district (``&district=``).
* :func:`live_snapshot` - newest reading, live alerts, vehicle positions and
  sensors in fault: cheap queries, cached per refresh bucket.
* :func:`acknowledge` - an operator acknowledges an alert (SQL ``acknowledge_alert``).

Views (``?view=``) are sets of KPIs (:func:`view_kpis`); levels come from the
alert rules (``alerts.raw_level``), so the wall and the alert job agree.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import psycopg

from kpis import evaluate
from kpis.alerts import raw_level, rule_for
from kpis.catalogue import Catalogue, Kpi

VIEWS = ("overview", "mobility", "transport", "infrastructure")
OVERVIEW = ("congestion_index", "parking_occupancy", "on_time_performance", "air_quality_index",
            "streetlight_faults", "sensors_reporting", "ingest_lag")
MAX_TILES = 8
SPARK_POINTS = 96  # 24 h in 15-minute means
ALERT_LIMIT = 30
VEHICLE_WINDOW = timedelta(minutes=5)
ROAD_KPI = "congestion_index"


class WallRequestError(ValueError):
    """A bad ``/wall`` URL parameter; ``key`` is the message id, ``values`` its placeholders."""

    def __init__(self, key: str, **values):
        super().__init__(key)
        self.key = key
        self.values = values


@dataclass(frozen=True)
class WallRequest:
    views: tuple[str, ...]
    rotate_s: int  # 0: no rotation
    district: str | None
    refresh_s: int


def parse_request(view: str | None, views: str | None, rotate: str | None, district: str | None,
                  refresh: str | None, default_refresh_s: int, districts: set[str]) -> WallRequest:
    """Check the ``/wall`` query parameters; raises :class:`WallRequestError` with a message id."""
    if views:
        names = tuple(v.strip() for v in views.split(",") if v.strip())
    else:
        names = (view.strip(),) if view and view.strip() else ("overview",)
    unknown = [v for v in names if v not in VIEWS]
    if unknown or not names:
        raise WallRequestError("wall.error.view", view=", ".join(unknown), known=", ".join(VIEWS))
    rotate_s = _int(rotate, "rotate", 0, 5, 3600)
    refresh_s = _int(refresh, "refresh", default_refresh_s, 1, 3600)
    if district is not None and district.strip() == "":
        district = None
    if district is not None and district not in districts:
        raise WallRequestError("wall.error.district", district=district)
    return WallRequest(names, rotate_s if len(names) > 1 else 0, district, refresh_s)


def _int(text: str | None, name: str, default: int, low: int, high: int) -> int:
    if text is None or str(text).strip() == "":
        return default
    try:
        value = int(str(text).strip())
    except ValueError:
        raise WallRequestError("wall.error.number", name=name, value=str(text)[:40], low=low,
                               high=high) from None
    if not low <= value <= high:
        raise WallRequestError("wall.error.number", name=name, value=str(value), low=low, high=high)
    return value


def view_kpis(catalogue: Catalogue, view: str) -> list[str]:
    """KPI ids shown in ``view`` (at most :data:`MAX_TILES`), in catalogue order."""
    if view == "overview":
        ids = [k for k in OVERVIEW if k in catalogue.kpis]
    elif view == "infrastructure":
        ids = [k.id for k in catalogue if k.domain in ("infrastructure", "health")]
    else:
        ids = [k.id for k in catalogue if k.domain == view]
    return ids[:MAX_TILES]


def map_kpi(catalogue: Catalogue, view: str) -> str | None:
    """The KPI colouring the districts in ``view``: the view's first district KPI with thresholds."""
    def usable(k: Kpi) -> bool:
        return "district" in k.scopes and k.thresholds.critical is not None

    for kpi_id in view_kpis(catalogue, view):
        if usable(catalogue[kpi_id]):
            return kpi_id
    return next((k.id for k in catalogue if usable(k)), None)


def level(kpi: Kpi, value: float | None) -> str:
    """``ok``, ``warning``, ``critical`` (the alert rules' thresholds) or ``unknown``."""
    if value is None or not np.isfinite(value):
        return "unknown"
    return raw_level(float(value), rule_for(kpi))


def _num(value) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def downsample(series: pd.DataFrame, points: int = SPARK_POINTS) -> tuple[list[str], list[float | None]]:
    """``bucket, value`` rows as at most ``points`` equal-width means (ISO times, None for gaps)."""
    if series is None or series.empty:
        return [], []
    times = pd.to_datetime(series["bucket"], utc=True)
    values = series["value"].to_numpy(dtype=float)
    if len(series) <= points:
        return [t.isoformat() for t in times], [_num(v) for v in values]
    span = (times.max() - times.min() + pd.Timedelta(minutes=1)) / points
    step = pd.Timedelta(minutes=max(1, int(np.ceil(span / pd.Timedelta(minutes=1)))))
    frame = pd.DataFrame({"t": times.dt.floor(step), "v": values})
    means = frame.groupby("t", sort=True)["v"].mean()
    return [t.isoformat() for t in means.index], [_num(v) for v in means.to_numpy()]


def kpi_snapshot(conn: psycopg.Connection, catalogue: Catalogue, now: datetime | None = None) -> dict:
    """Every KPI for the wall (see the module doc); ``now`` defaults to the current time."""
    now = now or datetime.now(timezone.utc)
    entries = evaluate.wall(conn, catalogue, now=now)
    kpis = {}
    for kpi_id, entry in entries.items():
        kpi = entry.kpi
        value = entry.city.value
        t, v = downsample(entry.series)
        kpis[kpi_id] = {
            "value": value, "level": level(kpi, value), "sensors": entry.city.sensors,
            "expected": entry.city.expected, "confidence": entry.city.confidence,
            "districts": {sid: dv.value for sid, dv in entry.districts.items()},
            "district_levels": {sid: level(kpi, dv.value) for sid, dv in entry.districts.items()},
            "district_counts": {sid: [dv.confidence, dv.sensors, dv.expected] for sid, dv in entry.districts.items()},
            "series_t": t, "series_v": v,
        }
    roads: dict[str, float] = {}
    if ROAD_KPI in catalogue.kpis and "road" in catalogue[ROAD_KPI].scopes:
        for (st, sid), val in evaluate.current(conn, catalogue, ROAD_KPI, scopes=("road",), now=now).items():
            if st == "road" and val.value is not None:
                roads[sid] = val.value
    return {"at": now.isoformat(), "kpis": kpis, "roads": roads}


def last_week(conn: psycopg.Connection, catalogue: Catalogue, now: datetime | None = None) -> dict[str, float | None]:
    """Every KPI's city value at the same time one week earlier (None where nothing reported)."""
    then = (now or datetime.now(timezone.utc)) - timedelta(days=7)
    registry = evaluate.load_registry(conn)
    memo = evaluate.prefetch_current(conn, catalogue, registry, then)
    out = {}
    for kpi in catalogue:
        found = evaluate.current(conn, catalogue, kpi, now=then, registry=registry, memo=memo)
        out[kpi.id] = found[("city", "")].value
    return out


def district_series(conn: psycopg.Connection, catalogue: Catalogue, district: str,
                    now: datetime | None = None) -> dict[str, dict]:
    """24-hour series of one district for every KPI with a district scope: ``{kpi: {t, v}}``."""
    now = now or datetime.now(timezone.utc)
    registry = evaluate.load_registry(conn)
    out = {}
    for kpi in catalogue:
        if "district" not in kpi.scopes:
            continue
        s = evaluate.series(conn, catalogue, kpi, now - timedelta(hours=24), now, scope="district",
                            scope_id=district, resolution="1m", registry=registry)
        t, v = downsample(s)
        out[kpi.id] = {"t": t, "v": v}
    return out


def live_snapshot(conn: psycopg.Connection, now: datetime | None = None) -> dict:
    """Newest reading, live alerts (newest first), vehicles of the last 5 minutes, sensors in fault."""
    now = now or datetime.now(timezone.utc)
    newest = conn.execute("SELECT max(time) FROM readings WHERE time > %s AND time <= %s + interval '5 minutes'",
                          (now - timedelta(days=1), now)).fetchone()[0]
    rows = conn.execute(
        """SELECT a.id, a.kind, a.kpi_id, a.scope_type, a.scope_id, a.severity, a.state, a.value, a.threshold,
                  a.details, a.opened_at, a.acknowledged_at, a.acknowledged_by, a.ack_comment
             FROM alerts a
            WHERE a.state IN ('open', 'acknowledged')
            ORDER BY a.opened_at DESC, a.id DESC LIMIT %s""", (ALERT_LIMIT,)).fetchall()
    alerts = [{"id": r[0], "kind": r[1], "kpi_id": r[2], "scope_type": r[3], "scope_id": r[4], "severity": r[5],
               "state": r[6], "value": r[7], "threshold": r[8], "unit": (r[9] or {}).get("unit"),
               "opened_at": r[10].isoformat(), "acknowledged_at": r[11].isoformat() if r[11] else None,
               "acknowledged_by": r[12], "ack_comment": r[13]} for r in rows]
    faults = conn.execute(
        """SELECT DISTINCT ON (s.external_id) s.external_id, s.lon, s.lat, a.kpi_id
             FROM alerts a JOIN sensors s ON s.external_id = a.scope_id
            WHERE a.scope_type = 'sensor' AND a.state IN ('open', 'acknowledged') AND s.placed
            ORDER BY s.external_id, a.opened_at DESC""").fetchall()
    vehicles = conn.execute(
        """SELECT DISTINCT ON (vehicle) vehicle, route, lon, lat, delay_s FROM vehicle_positions
            WHERE time > %s AND time <= %s + interval '5 minutes' AND lon IS NOT NULL AND lat IS NOT NULL
            ORDER BY vehicle, time DESC""", (now - VEHICLE_WINDOW, now)).fetchall()
    return {
        "at": now.isoformat(),
        "newest": newest.isoformat() if newest else None,
        "alerts": alerts,
        "faults": [{"sensor": f[0], "lon": f[1], "lat": f[2], "kpi_id": f[3]} for f in faults],
        "vehicles": [{"vehicle": v[0], "route": v[1], "lon": v[2], "lat": v[3], "delay_s": v[4]} for v in vehicles],
    }


def is_stale(newest_iso: str | None, now: datetime, stale_after_s: float) -> bool:
    """Whether the newest reading (ISO time or None) is older than ``stale_after_s``."""
    if not newest_iso:
        return True
    return (now - datetime.fromisoformat(newest_iso)).total_seconds() > stale_after_s


def takeover(alerts: list[dict]) -> dict | None:
    """The newest open (unacknowledged) critical alert: it takes over a tile slot."""
    return next((a for a in alerts if a["severity"] == "critical" and a["state"] == "open"), None)


class AckError(Exception):
    """Acknowledgement refused; ``key`` is the message id."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def acknowledge(conn: psycopg.Connection, alert_id: int, who: str, comment: str) -> dict:
    """Acknowledge ``alert_id`` through ``acknowledge_alert``; :class:`AckError` when refused."""
    comment = (comment or "").strip()
    if not comment:
        raise AckError("wall.ack.error.comment")
    try:
        with conn.transaction():
            row = conn.execute("SELECT id, state, acknowledged_by FROM acknowledge_alert(%s, %s, %s)",
                               (int(alert_id), who, comment[:500])).fetchone()
    except psycopg.errors.NoDataFound:
        raise AckError("wall.ack.error.missing") from None
    except psycopg.errors.ObjectNotInPrerequisiteState:
        raise AckError("wall.ack.error.state") from None
    return {"id": row[0], "state": row[1], "by": row[2]}
