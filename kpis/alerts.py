"""Alerts: threshold breaches, anomalies and sensor health; lifecycle and MQTT publication.

Kinds (``alerts.kind``):

* ``threshold``: a KPI's current value beyond its warning / critical
  threshold (direction from ``better``), per scope.  A breach must last the
  KPI's ``alert.min_duration`` before an alert opens (or escalates); it
  clears when the value is back past the threshold by ``alert.hysteresis``
  (default 5 % of the warning threshold).  :func:`step` is the pure state
  machine; its state lives in ``alert_trackers`` between runs.
* ``anomaly``: for KPIs with ``alert.anomaly``, the robust z-score
  (median / MAD) of the current value against the KPI's hourly values at the
  same local hour of the week over the last N weeks; |z| beyond
  ``alert.anomaly_z`` is a warning, beyond twice that critical (same state
  machine, hysteresis 0.5).
* ``health``: per sensor (``scope_type = 'sensor'``, ``kpi_id`` one of
  ``sensor_silent``, ``sensor_stuck``, ``sensor_out_of_range``): no reading
  for ``health.silent_after``; the same value for ``health.stuck_after``;
  a value outside ``health.ranges`` in the last ``silent_after``.

Lifecycle: ``open`` -> ``acknowledged`` (who, comment; the SECURITY DEFINER
function ``acknowledge_alert`` is the dashboard's only write) -> ``resolved``
automatically when the condition clears -> ``closed`` after
``alert_close_after_s``.  One live (open or acknowledged) alert per KPI,
scope and kind: the partial unique index ``alerts_live`` deduplicates.  Every
change bumps ``alerts.version``; :func:`publish_changes` publishes rows whose
version is ahead of ``published_version`` as JSON on
``city/alerts/<kind>/<kpi id or sensor id>`` (QoS 1, not retained).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from core.mqtt_url import parse_mqtt_url
from core.timebuckets import HOUR, floor_time
from kpis import formulas
from kpis.catalogue import Catalogue, Kpi
from kpis.evaluate import Registry, compute, current, load_registry, materialised_usable

log = logging.getLogger(__name__)

LEVELS = ("ok", "warning", "critical")
MIN_CONFIDENCE = 0.5  # threshold alerts ignore values from fewer than half the expected sensors
HEALTH_KPIS = ("sensor_silent", "sensor_stuck", "sensor_out_of_range")
TOPIC_PREFIX = "city/alerts"
TRACKER_TTL = timedelta(days=7)


# -- the pure state machine ------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    better: str  # "lower": high values are bad; "higher": low values are bad
    warning: float | None
    critical: float | None
    hysteresis: float = 0.0
    min_duration: timedelta = timedelta(0)

    def threshold(self, level: str) -> float | None:
        return self.warning if level == "warning" else self.critical if level == "critical" else None


@dataclass(frozen=True)
class Track:
    level: str = "ok"  # confirmed level: an alert is live while it is not "ok"
    since: datetime | None = None  # when a worse level than ``level`` was first seen (pending)

    def to_json(self) -> dict:
        return {"level": self.level, "since": self.since.isoformat() if self.since else None}

    @classmethod
    def from_json(cls, doc: dict) -> "Track":
        since = doc.get("since")
        return cls(doc.get("level", "ok"), datetime.fromisoformat(since) if since else None)


def rule_for(kpi: Kpi) -> Rule:
    t = kpi.thresholds
    h = kpi.alert.hysteresis
    if h is None:
        base = t.warning if t.warning else t.critical or 0.0
        h = abs(base) * 0.05
    return Rule(kpi.better, t.warning, t.critical, h, kpi.alert.min_duration)


def _beyond(value: float, threshold: float | None, better: str, margin: float = 0.0) -> bool:
    if threshold is None:
        return False
    return value >= threshold - margin if better == "lower" else value <= threshold + margin


def raw_level(value: float, rule: Rule) -> str:
    """The level of ``value`` without hysteresis."""
    if _beyond(value, rule.critical, rule.better):
        return "critical"
    if _beyond(value, rule.warning, rule.better):
        return "warning"
    return "ok"


def held_level(value: float, confirmed: str, rule: Rule) -> str:
    """The level with hysteresis: a confirmed level holds until the value is ``hysteresis`` past its threshold."""
    level = raw_level(value, rule)
    rank = LEVELS.index
    for candidate in reversed(LEVELS[rank(level) + 1: rank(confirmed) + 1]):
        if _beyond(value, rule.threshold(candidate), rule.better, rule.hysteresis):
            return candidate
    return level


def step(track: Track, value: float | None, now: datetime, rule: Rule) -> Track:
    """Advance a tracker with a new value at ``now``.

    Worse levels must persist ``min_duration`` before they are confirmed
    (opening or escalating an alert); better levels (hysteresis applied)
    are confirmed at once (de-escalating or resolving).  No value: no change.
    """
    if value is None:
        return track
    level = held_level(value, track.level, rule)
    rank = LEVELS.index
    if rank(level) > rank(track.level):
        since = track.since or now
        if now - since >= rule.min_duration:
            return Track(level, None)
        return Track(track.level, since)
    return Track(level, None)


# -- anomaly baseline -----------------------------------------------------------------

def same_hour_of_week(now: datetime, weeks: int, tz: str) -> list[datetime]:
    """UTC starts of the same local hour of the week in each of the last ``weeks`` weeks."""
    zone = ZoneInfo(tz)
    local = now.astimezone(zone).replace(minute=0, second=0, microsecond=0)
    out = []
    for k in range(1, weeks + 1):
        wall = (local.replace(tzinfo=None) - timedelta(weeks=k)).replace(tzinfo=zone)
        out.append(wall.astimezone(timezone.utc))
    return out


def history(conn, catalogue: Catalogue, kpi: Kpi, registry: Registry, hours: list[datetime],
            scopes) -> dict[tuple[str, str], list[float]]:
    """The KPI's hourly values at ``hours`` per scope (materialised, else computed from readings_1h)."""
    out: dict[tuple[str, str], list[float]] = {}
    if not hours:
        return out
    if all(materialised_usable(catalogue, kpi, registry, "1h", s, min(hours)) for s in scopes):
        rows = conn.execute("SELECT scope_type, scope_id, value FROM kpi_1h WHERE kpi_id = %s "
                            "AND bucket = ANY(%s) AND scope_type = ANY(%s) AND value IS NOT NULL",
                            (kpi.id, hours, list(scopes))).fetchall()
        for st, sid, v in rows:
            out.setdefault((st, sid), []).append(float(v))
        return out
    for h in hours:
        frame = compute(conn, catalogue, kpi, start=h, end=h + HOUR, width=HOUR, table="1h",
                        scopes=scopes, registry=registry)
        for st, sid, v in zip(frame["scope_type"], frame["scope_id"], frame["value"]):
            if v == v:
                out.setdefault((st, sid), []).append(float(v))
    return out


# -- database side ------------------------------------------------------------------------

@dataclass
class AlertReport:
    opened: int = 0
    changed: int = 0
    resolved: int = 0
    closed: int = 0
    published: int = 0
    evaluated: int = 0
    errors: list[str] = field(default_factory=list)


Key = tuple[str, str, str, str]  # (kpi_id, scope_type, scope_id, kind)


@dataclass
class Desired:
    severity: str
    value: float | None
    threshold: float | None
    details: dict


def _live(conn) -> dict[Key, tuple[int, str]]:
    rows = conn.execute("SELECT id, coalesce(kpi_id, ''), scope_type, scope_id, kind, severity FROM alerts "
                        "WHERE state IN ('open', 'acknowledged')").fetchall()
    return {(k, st, sid, kind): (i, sev) for i, k, st, sid, kind, sev in rows}


def reconcile(conn, desired: dict[Key, Desired], evaluated: set[Key], report: AlertReport) -> None:
    """Make live alerts match ``desired`` for every key in ``evaluated``.

    Opens missing alerts (deduplicated by the ``alerts_live`` index),
    updates severity changes, resolves live alerts no longer desired.
    """
    live = _live(conn)
    for key in evaluated:
        want, have = desired.get(key), live.get(key)
        kpi_id, scope_type, scope_id, kind = key
        if want is not None and have is None:
            conn.execute(
                """INSERT INTO alerts (kpi_id, scope_type, scope_id, kind, severity, value, threshold, details)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (coalesce(kpi_id, ''), scope_type, scope_id, kind)
                      WHERE state IN ('open', 'acknowledged')
                   DO UPDATE SET severity = EXCLUDED.severity, value = EXCLUDED.value,
                                 threshold = EXCLUDED.threshold, details = EXCLUDED.details,
                                 version = alerts.version + 1
                   WHERE alerts.severity IS DISTINCT FROM EXCLUDED.severity""",
                (kpi_id, scope_type, scope_id, kind, want.severity, want.value, want.threshold,
                 Jsonb(want.details)))
            report.opened += 1
        elif want is not None and have[1] != want.severity:
            conn.execute("""UPDATE alerts SET severity = %s, value = %s, threshold = %s, details = %s,
                                   version = version + 1 WHERE id = %s""",
                         (want.severity, want.value, want.threshold, Jsonb(want.details), have[0]))
            report.changed += 1
        elif want is None and have is not None:
            conn.execute("""UPDATE alerts SET state = 'resolved', resolved_at = now(), version = version + 1
                             WHERE id = %s AND state IN ('open', 'acknowledged')""", (have[0],))
            report.resolved += 1


def close_resolved(conn, older_than: timedelta) -> int:
    """Close alerts resolved more than ``older_than`` ago."""
    return conn.execute("""UPDATE alerts SET state = 'closed', closed_at = now(), version = version + 1
                            WHERE state = 'resolved' AND resolved_at < now() - %s""", (older_than,)).rowcount


def _load_trackers(conn) -> dict[str, Track]:
    return {k: Track.from_json(v) for k, v in conn.execute("SELECT key, state FROM alert_trackers").fetchall()}


def _save_trackers(conn, changed: dict[str, Track]) -> None:
    if changed:
        conn.execute("""INSERT INTO alert_trackers (key, state, updated_at)
                        SELECT k, s, now() FROM unnest(%s::text[], %s::jsonb[]) AS u(k, s)
                        ON CONFLICT (key) DO UPDATE SET state = EXCLUDED.state, updated_at = now()""",
                     (list(changed), [Jsonb(t.to_json()) for t in changed.values()]))
    # forget idle trackers (scopes that disappeared); never one holding a live level
    conn.execute("DELETE FROM alert_trackers WHERE updated_at < now() - %s AND state->>'level' = 'ok' "
                 "AND state->>'since' IS NULL", (TRACKER_TTL,))


def _alert_scopes(kpi: Kpi) -> tuple[str, ...]:
    return tuple(s for s in kpi.scopes if s in ("city", "district", "route"))


def kpi_alerts(conn, catalogue: Catalogue, registry: Registry, now: datetime, weeks: int,
               report: AlertReport) -> tuple[dict[Key, Desired], set[Key]]:
    """Threshold and anomaly conditions of every KPI and scope (trackers updated)."""
    trackers = _load_trackers(conn)
    changed: dict[str, Track] = {}
    desired: dict[Key, Desired] = {}
    evaluated: set[Key] = set()
    for kpi in catalogue:
        rule = rule_for(kpi)
        thresholds = rule.warning is not None or rule.critical is not None
        if not thresholds and not kpi.alert.anomaly:
            continue
        scopes = _alert_scopes(kpi)
        try:
            with conn.transaction():  # a savepoint: one failing KPI does not stop the others
                values = current(conn, catalogue, kpi, scopes=scopes, now=now, registry=registry)
                baseline = history(conn, catalogue, kpi, registry,
                                   same_hour_of_week(now, weeks, catalogue.timezone),
                                   scopes) if kpi.alert.anomaly else {}
        except Exception as exc:  # its live alerts stay as they are
            log.exception("could not evaluate KPI %s for alerts", kpi.id)
            report.errors.append(f"{kpi.id}: {type(exc).__name__}: {exc}"[:300])
            continue
        report.evaluated += len(values)
        for (scope_type, scope_id), v in values.items():
            usable = v.value if (v.confidence or 0) >= MIN_CONFIDENCE else None
            checks = []
            if thresholds:
                checks.append(("threshold", rule, usable, None))
            if kpi.alert.anomaly:
                z = formulas.robust_z(usable, baseline.get((scope_type, scope_id), [])) \
                    if usable is not None else None
                zr = Rule("lower", kpi.alert.anomaly_z, 2 * kpi.alert.anomaly_z, 0.5, kpi.alert.min_duration)
                checks.append(("anomaly", zr, None if z is None else abs(z), z))
            for kind, r, x, z in checks:
                key = (kpi.id, scope_type, scope_id, kind)
                tkey = "|".join(key)
                old = trackers.get(tkey, Track())
                new = step(old, x, now, r)
                if new != old or tkey not in trackers:
                    changed[tkey] = new
                evaluated.add(key)
                if new.level != "ok":
                    details = {"unit": kpi.unit, "confidence": v.confidence, "sensors": v.sensors,
                               "expected": v.expected, "better": kpi.better}
                    if kind == "anomaly":
                        details.update(z=z, baseline=baseline.get((scope_type, scope_id), []))
                    desired[key] = Desired(new.level, v.value, r.threshold(new.level), details)
    _save_trackers(conn, changed)
    return desired, evaluated


def health_alerts(conn, catalogue: Catalogue, now: datetime) -> tuple[dict[Key, Desired], set[Key]]:
    """Silent, stuck and out-of-range sensors."""
    rules = catalogue.health
    desired: dict[Key, Desired] = {}
    sensors = conn.execute(
        """SELECT s.id, s.external_id, s.kind, greatest(s.last_seen, h.newest)
             FROM sensors s
             LEFT JOIN (SELECT sensor_id, max(last_time) AS newest FROM readings_1h
                         WHERE bucket >= %(week)s GROUP BY sensor_id) h ON h.sensor_id = s.id
            WHERE s.kind IS NOT NULL AND (s.last_seen IS NOT NULL OR h.newest IS NOT NULL)""",
        {"week": now - timedelta(days=7)}).fetchall()
    evaluated = {(k, "sensor", ext, "health") for _, ext, _, _ in sensors for k in HEALTH_KPIS}
    ext_of = {sid: ext for sid, ext, _, _ in sensors}
    for sid, ext, kind, newest in sensors:
        if newest is None or now - newest > rules.silent_after:
            desired[("sensor_silent", "sensor", ext, "health")] = Desired(
                "warning", (now - newest).total_seconds() if newest else None,
                rules.silent_after.total_seconds(),
                {"sensor_id": sid, "kind": kind, "last_reading": newest.isoformat() if newest else None})
    stuck = conn.execute(
        """SELECT r.sensor_id, m.name, min(r.min), sum(r.count)
             FROM readings_1h r JOIN metrics m ON m.id = r.metric_id
            WHERE r.bucket >= %(since)s AND NOT (m.name = ANY(%(ignore)s))
            GROUP BY 1, 2
           HAVING min(r.min) = max(r.max) AND sum(r.count) >= %(n)s
              AND min(r.bucket) <= %(since)s""",
        {"since": floor_time(now - rules.stuck_after, HOUR), "ignore": list(rules.stuck_ignore),
         "n": rules.stuck_min_readings}).fetchall()
    for sid, metric, value, n in stuck:
        if sid in ext_of:
            key = ("sensor_stuck", "sensor", ext_of[sid], "health")
            d = desired.setdefault(key, Desired("warning", float(value), None,
                                                {"sensor_id": sid, "metrics": [], "readings": 0}))
            d.details["metrics"].append(metric)
            d.details["readings"] += int(n)
    if rules.ranges:
        names = list(rules.ranges)
        out = conn.execute(
            """SELECT r.sensor_id, m.name, min(r.min), max(r.max)
                 FROM readings_1m r JOIN metrics m ON m.id = r.metric_id
                WHERE r.bucket >= %(since)s AND m.name = ANY(%(names)s)
                GROUP BY 1, 2""", {"since": now - rules.silent_after, "names": names}).fetchall()
        for sid, metric, lo, hi in out:
            low, high = rules.ranges[metric]
            if sid in ext_of and (lo < low or hi > high):
                key = ("sensor_out_of_range", "sensor", ext_of[sid], "health")
                bad = lo if lo < low else hi
                d = desired.setdefault(key, Desired("warning", float(bad), None, {"sensor_id": sid, "metrics": {}}))
                d.details["metrics"][metric] = {"min": lo, "max": hi, "range": [low, high]}
    return desired, evaluated


def evaluate_alerts(conn: psycopg.Connection, catalogue: Catalogue, *, now: datetime | None = None,
                    weeks: int = 8, close_after: timedelta = timedelta(hours=1),
                    registry: Registry | None = None) -> AlertReport:
    """One alert evaluation: KPI thresholds and anomalies, sensor health, closing; one transaction."""
    now = now or datetime.now(timezone.utc)
    report = AlertReport()
    with conn.transaction():
        registry = registry or load_registry(conn)
        desired, evaluated = kpi_alerts(conn, catalogue, registry, now, weeks, report)
        h_desired, h_evaluated = health_alerts(conn, catalogue, now)
        desired.update(h_desired)
        evaluated |= h_evaluated
        reconcile(conn, desired, evaluated, report)
        report.closed = close_resolved(conn, close_after)
    return report


# -- publication -------------------------------------------------------------------------

def topic_for(kind: str, kpi_id: str | None, scope_type: str, scope_id: str) -> str:
    """``city/alerts/<kind>/<kpi id, or sensor id for health alerts>`` (MQTT-safe)."""
    name = scope_id if kind == "health" else (kpi_id or scope_id)
    safe = "".join("_" if c in "/+#\x00" else c for c in name) or "_"
    return f"{TOPIC_PREFIX}/{kind}/{safe}"


ALERT_COLUMNS = ("id", "kpi_id", "scope_type", "scope_id", "kind", "severity", "state", "value", "threshold",
                 "details", "opened_at", "acknowledged_at", "acknowledged_by", "ack_comment", "resolved_at",
                 "closed_at", "version")


def payload_for(row: dict) -> bytes:
    """The JSON document published for an alert row."""
    doc = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()
           if k in ALERT_COLUMNS}
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def publish_changes(conn: psycopg.Connection, publish: Callable[[str, bytes], bool], limit: int = 1000) -> int:
    """Publish every alert whose version is ahead of what was published; count published.

    ``publish(topic, payload)`` returns True once the broker has the message
    (PUBACK); only then is ``published_version`` advanced, so a broker outage
    delays publication but loses nothing.
    """
    cols = ", ".join(ALERT_COLUMNS)
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        rows = cur.execute(f"SELECT {cols} FROM alerts WHERE version > published_version "  # noqa: S608
                           "ORDER BY id LIMIT %s", (limit,)).fetchall()
    done = 0
    for row in rows:
        if not publish(topic_for(row["kind"], row["kpi_id"], row["scope_type"], row["scope_id"]),
                       payload_for(row)):
            break
        conn.execute("UPDATE alerts SET published_version = %s WHERE id = %s AND published_version < %s",
                     (row["version"], row["id"], row["version"]))
        done += 1
    if not conn.autocommit:
        conn.commit()
    return done


class MqttPublisher:
    """QoS 1, not retained publication through paho-mqtt; ``publish`` waits for the PUBACK."""

    def __init__(self, url: str, client_id: str, timeout: float = 5.0):
        import paho.mqtt.client as mqtt

        address = parse_mqtt_url(url)
        self.host, self.port = address.host, address.port
        self.timeout = timeout
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if address.username:
            self.client.username_pw_set(address.username, address.password)
        if address.tls:
            self.client.tls_set()
        self.client.reconnect_delay_set(1, 30)
        self._started = False

    def _ensure(self) -> bool:
        if not self._started:
            self.client.connect_async(self.host, self.port, keepalive=30)
            self.client.loop_start()
            self._started = True
        deadline = time.monotonic() + self.timeout
        while not self.client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.client.is_connected()

    def __call__(self, topic: str, payload: bytes) -> bool:
        if not self._ensure():
            return False
        info = self.client.publish(topic, payload, qos=1, retain=False)
        try:
            info.wait_for_publish(self.timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def close(self) -> None:
        if self._started:
            self.client.disconnect()
            self.client.loop_stop()
            self._started = False
