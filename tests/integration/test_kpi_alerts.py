"""Alerts against a real TimescaleDB and Mosquitto: lifecycle, dedup, acknowledgement, MQTT."""
from __future__ import annotations

import json
import queue
import time
from datetime import timedelta

import paho.mqtt.client as mqtt
import psycopg
import pytest

from kpis.alerts import evaluate_alerts
from core import timebuckets
from kpis import rollup
from ingest.jobs import JobRunner
from core.settings import Settings
from tests.integration.kpi_data import DEFAULT_FILE, catalogue, insert, now_minute, seed


def only(*ids, **changes):
    """A catalogue override keeping only ``ids`` (with per-KPI changes)."""
    import yaml

    default = yaml.safe_load(DEFAULT_FILE.read_text(encoding="utf-8"))
    kpis = [{"id": k["id"], "enabled": False} for k in default["kpis"] if k["id"] not in ids]
    kpis += [{"id": k, **v} for k, v in changes.items()]
    return catalogue({"kpis": kpis})


class Subscriber:
    """Collects messages on city/alerts/# from the test broker."""

    def __init__(self, port: int):
        self.messages: queue.Queue = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda c, u, msg: self.messages.put(msg)
        subscribed = []
        self.client.on_subscribe = lambda *a: subscribed.append(True)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe("city/alerts/#", qos=1)
        deadline = time.monotonic() + 10
        while not subscribed and time.monotonic() < deadline:
            time.sleep(0.02)
        assert subscribed, "could not subscribe to the test broker"

    def take(self, n: int, timeout: float = 10.0) -> list:
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            try:
                out.append(self.messages.get(timeout=0.1))
            except queue.Empty:
                pass
        return out

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber(mqtt_broker):
    sub = Subscriber(mqtt_broker.port)
    yield sub
    sub.close()


def reader_url(db_url):
    return Settings(_env_file=None, database_url=db_url).role_url("reader")


def alerts(db_url, where="TRUE"):
    with psycopg.connect(db_url) as conn:
        return conn.execute(f"SELECT id, kpi_id, scope_type, scope_id, kind, severity, state, version, "  # noqa: S608
                            f"published_version, acknowledged_by, ack_comment FROM alerts WHERE {where} "
                            "ORDER BY id").fetchall()


def test_threshold_alert_lifecycle_and_mqtt(settings, db_url, subscriber):
    base = now_minute()
    cat = only("parking_occupancy", parking_occupancy={
        "thresholds": {"target": 50, "warning": 80, "critical": 95},
        "alert": {"min_duration": "2m", "hysteresis": 5}})
    with psycopg.connect(db_url, autocommit=True) as conn:
        ids = seed(conn, [("p1", "parking", "d1", {}), ("p2", "parking", "d1", {}), ("p3", "parking", "d2", {})])
        rows = []
        for m in range(-30, 40):
            t = base + timedelta(minutes=m, seconds=15)
            high = m < 10
            rows += [(t, ids["p1"], "occupancy", 90.0 if high else 20.0),
                     (t, ids["p2"], "occupancy", 90.0 if high else 20.0), (t, ids["p3"], "occupancy", 10.0)]
        insert(conn, rows)
        rollup.rebuild(conn, base - timedelta(minutes=30), base + timedelta(minutes=40))

    runner = JobRunner(settings, catalogue=cat)
    try:
        def run(minutes):
            return runner.run_once(now=base + timedelta(minutes=minutes, seconds=30), jobs=("alerts",))["alerts"]

        assert run(0)["opened"] == 0  # d1 at 90 %: pending, min_duration is 2 minutes
        assert alerts(db_url) == []
        assert run(3) == {"opened": 1, "changed": 0, "resolved": 0, "closed": 0, "published": 1, "evaluated": 3}
        [(alert_id, *row)] = alerts(db_url)
        assert row == ["parking_occupancy", "district", "d1", "threshold", "warning", "open", 1, 1, None, None]
        assert run(4)["opened"] == 0  # deduplicated: still one live alert
        assert len(alerts(db_url)) == 1

        with psycopg.connect(reader_url(db_url), autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("UPDATE alerts SET state = 'closed'")
            acked = conn.execute("SELECT state, acknowledged_by, ack_comment, version "
                                 "FROM acknowledge_alert(%s, 'maria', 'crew sent')", (alert_id,)).fetchone()
            assert acked == ("acknowledged", "maria", "crew sent", 2)
            with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
                conn.execute("SELECT acknowledge_alert(%s, 'joão', 'again')", (alert_id,))
            with pytest.raises(psycopg.errors.NoDataFound):
                conn.execute("SELECT acknowledge_alert(999999, 'maria')")
            with pytest.raises(psycopg.errors.InvalidParameterValue):
                conn.execute("SELECT acknowledge_alert(%s, '  ')", (alert_id,))

        assert run(5)["published"] == 1  # the acknowledgement, made by the dashboard, is published
        assert run(25) == {"opened": 0, "changed": 0, "resolved": 1, "closed": 0, "published": 1, "evaluated": 3}
        settings_close = settings.model_copy(update={"alert_close_after_s": 0})
        runner.settings = settings_close
        assert run(26)["closed"] == 1
        [row] = alerts(db_url)
        assert row[6:] == ("closed", 4, 4, "maria", "crew sent")
        # after closing, a new breach opens a new alert
        assert run(1)["opened"] == 0 and run(4)["opened"] == 1
        assert [r[6] for r in alerts(db_url)] == ["closed", "open"]
    finally:
        runner.close()

    messages = subscriber.take(5)
    assert [m.topic for m in messages] == ["city/alerts/threshold/parking_occupancy"] * 5
    assert all(m.qos == 1 and not m.retain for m in messages)
    docs = [json.loads(m.payload) for m in messages]
    assert [(d["id"], d["state"], d["version"]) for d in docs] == [
        (alert_id, "open", 1), (alert_id, "acknowledged", 2), (alert_id, "resolved", 3),
        (alert_id, "closed", 4), (alert_id + 1, "open", 1)]
    first = docs[0]
    assert first["kpi_id"] == "parking_occupancy" and first["scope_type"] == "district"
    assert first["scope_id"] == "d1" and first["kind"] == "threshold" and first["severity"] == "warning"
    assert first["value"] == pytest.approx(90.0) and first["threshold"] == 80.0
    assert first["details"]["sensors"] == 2 and first["details"]["confidence"] == 1.0
    assert docs[1]["acknowledged_by"] == "maria" and docs[1]["ack_comment"] == "crew sent"
    assert docs[2]["resolved_at"] is not None and docs[3]["closed_at"] is not None


def test_escalation_to_critical_and_low_confidence_is_ignored(db_url):
    base = now_minute()
    cat = only("waste_bins_full", waste_bins_full={"alert": {"min_duration": "0s"}})
    with psycopg.connect(db_url, autocommit=True) as conn:
        ids = seed(conn, [(f"wb{i}", "waste_bin", "d1", {}) for i in range(4)])
        rows = []
        for m in range(-30, 1):
            t = base + timedelta(minutes=m, seconds=10)
            # 1 of 4 bins over 80 % (25 %: warning), then 2 of 4 (50 %: critical, >= 40)
            fills = [90.0, 10.0, 10.0, 20.0] if m < -15 else [90.0, 95.0, 10.0, 20.0]
            rows += [(t, ids[f"wb{i}"], "fill", v) for i, v in enumerate(fills)]
        insert(conn, rows)
        rollup.rebuild(conn, base - timedelta(minutes=30), base + timedelta(minutes=1))

        def live():
            return conn.execute("SELECT scope_type, severity, value, threshold, state, version FROM alerts "
                                "ORDER BY scope_type").fetchall()

        r = evaluate_alerts(conn, cat, now=base - timedelta(minutes=16, seconds=30))
        assert r.opened == 2  # the city and district d1
        assert live() == [("city", "warning", 25.0, 25.0, "open", 1), ("district", "warning", 25.0, 25.0, "open", 1)]
        r = evaluate_alerts(conn, cat, now=base - timedelta(minutes=5, seconds=30))
        assert (r.opened, r.changed) == (0, 2)
        assert live() == [("city", "critical", 50.0, 40.0, "open", 2), ("district", "critical", 50.0, 40.0, "open", 2)]
        # now only 1 of 4 bins reports (confidence 0.25 < 0.5): no decision either way, alerts stay
        conn.execute("DELETE FROM readings_1m WHERE sensor_id <> %s AND bucket >= %s",
                     (ids["wb0"], base - timedelta(minutes=12)))
        r = evaluate_alerts(conn, cat, now=base + timedelta(seconds=30))
        assert (r.opened, r.changed, r.resolved) == (0, 0, 0)
        assert [row[1:5] for row in live()] == [("critical", 50.0, 40.0, "open")] * 2


def test_sensor_health_alerts(db_url):
    base = now_minute()
    cat = only("sensors_reporting")
    with psycopg.connect(db_url, autocommit=True) as conn:
        ids = seed(conn, [("nz-silent", "noise", "d1", {}), ("wt-stuck", "water", "d1", {}),
                          ("aq-range", "air_quality", "d2", {}), ("nz-ok", "noise", "d2", {}),
                          ("sl-1", "streetlight", "d2", {})])
        rows = []
        for m in range(-300, 1):
            t = base + timedelta(minutes=m, seconds=20)
            if m < -60:
                rows.append((t, ids["nz-silent"], "laeq", 50.0 + m % 7))
            rows.append((t, ids["wt-stuck"], "pressure", 3.0))
            rows.append((t, ids["nz-ok"], "laeq", 50.0 + m % 5))
            rows.append((t, ids["sl-1"], "fault", 0.0))  # constant, but 'fault' may stay constant
            rows.append((t, ids["aq-range"], "pm25", 5000.0 if m > -5 else 10.0 + m % 3))
        insert(conn, rows)
        rollup.rebuild(conn, base - timedelta(minutes=300), base + timedelta(minutes=1))
        now = base + timedelta(seconds=40)
        report = evaluate_alerts(conn, cat, now=now)
        found = conn.execute("SELECT kpi_id, scope_id, state, details FROM alerts WHERE kind = 'health' "
                             "ORDER BY kpi_id").fetchall()
        assert [(k, s, st) for k, s, st, _ in found] == [
            ("sensor_out_of_range", "aq-range", "open"), ("sensor_silent", "nz-silent", "open"),
            ("sensor_stuck", "wt-stuck", "open")]
        assert report.opened == 3
        details = {k: d for k, _, _, d in found}
        assert details["sensor_out_of_range"]["metrics"]["pm25"]["max"] == 5000.0
        assert details["sensor_stuck"]["metrics"] == ["pressure"]
        assert details["sensor_silent"]["sensor_id"] == ids["nz-silent"]

        # everything back to normal
        rows = []
        for m in range(1, 21):
            t = base + timedelta(minutes=m, seconds=20)
            rows += [(t, ids["nz-silent"], "laeq", 55.0), (t, ids["wt-stuck"], "pressure", 3.0 + m / 100),
                     (t, ids["nz-ok"], "laeq", 52.0), (t, ids["sl-1"], "fault", 0.0),
                     (t, ids["aq-range"], "pm25", 12.0)]
        insert(conn, rows)
        rollup.rebuild(conn, base, base + timedelta(minutes=21))
        report = evaluate_alerts(conn, cat, now=base + timedelta(minutes=20, seconds=40))
        assert report.resolved == 3 and report.opened == 0
        assert {r[0] for r in conn.execute("SELECT state FROM alerts").fetchall()} == {"resolved"}


def test_anomaly_against_same_hour_of_week(db_url):
    hour = timebuckets.floor_time(now_minute(), timebuckets.HOUR) - timedelta(hours=2)
    base = hour + timedelta(minutes=20)  # both evaluations below fall in the same hour of the week
    cat = only("energy_demand", energy_demand={"alert": {"min_duration": "0s"}})
    history = [100.0, 102.0, 98.0, 101.0, 99.0, 103.0, 97.0, 100.0]
    with psycopg.connect(db_url, autocommit=True) as conn:
        ids = seed(conn, [("en-1", "energy", "d1", {})])
        rows = [(hour - timedelta(weeks=k + 1) + timedelta(minutes=10), ids["en-1"], "kw", v)
                for k, v in enumerate(history)]
        rows += [(base - timedelta(minutes=m) + timedelta(seconds=5), ids["en-1"], "kw", 300.0) for m in range(5)]
        rows += [(base + timedelta(minutes=m, seconds=5), ids["en-1"], "kw", 101.0) for m in range(1, 30)]
        insert(conn, rows)
        for t, *_ in rows[:len(history)]:
            rollup.rebuild(conn, t, t + timedelta(minutes=1))
        rollup.rebuild(conn, base - timedelta(minutes=10), base + timedelta(minutes=30))

        report = evaluate_alerts(conn, cat, now=base + timedelta(seconds=30))
        assert report.opened == 2  # city and district d1
        rows = conn.execute("SELECT scope_type, severity, value, details FROM alerts WHERE kind = 'anomaly' "
                            "ORDER BY scope_type").fetchall()
        # median 100, MAD 1.5: z = 0.6745 * (300 - 100) / 1.5 = 89.9 > 2 * 3.5 -> critical
        assert [(st, sev, v) for st, sev, v, _ in rows] == [("city", "critical", 300.0),
                                                            ("district", "critical", 300.0)]
        assert rows[0][3]["z"] == pytest.approx(0.6745 * 200 / 1.5)
        assert sorted(rows[0][3]["baseline"]) == sorted(history)

        report = evaluate_alerts(conn, cat, now=base + timedelta(minutes=25))
        assert report.resolved == 2
