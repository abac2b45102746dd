"""The threshold state machine: hysteresis, minimum duration, escalation (kpis.alerts)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from kpis.alerts import Rule, Track, held_level, raw_level, same_hour_of_week, step, topic_for

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
LOWER = Rule("lower", warning=80.0, critical=90.0, hysteresis=5.0, min_duration=timedelta(minutes=5))
HIGHER = Rule("higher", warning=25.0, critical=10.0, hysteresis=2.0, min_duration=timedelta(minutes=5))


def run(rule, values, track=Track()):
    """values: (minutes after T0, value); returns the confirmed level after each step."""
    levels = []
    for minutes, value in values:
        track = step(track, value, T0 + timedelta(minutes=minutes), rule)
        levels.append(track.level)
    return levels, track


def test_raw_and_held_levels():
    assert [raw_level(v, LOWER) for v in (79.9, 80.0, 89.9, 90.0)] == ["ok", "warning", "warning", "critical"]
    assert [raw_level(v, HIGHER) for v in (25.1, 25.0, 10.0)] == ["ok", "warning", "critical"]
    assert held_level(76.0, "warning", LOWER) == "warning"  # within 5 of 80
    assert held_level(74.9, "warning", LOWER) == "ok"
    assert held_level(86.0, "critical", LOWER) == "critical"
    assert held_level(84.9, "critical", LOWER) == "warning"
    assert held_level(70.0, "critical", LOWER) == "ok"
    assert held_level(26.5, "warning", HIGHER) == "warning"
    assert held_level(27.5, "warning", HIGHER) == "ok"


def test_breach_must_last_min_duration():
    levels, track = run(LOWER, [(0, 85), (2, 86), (4, 85), (5, 84), (6, 85)])
    assert levels == ["ok", "ok", "ok", "warning", "warning"]
    assert track == Track("warning", None)


def test_interrupted_breach_restarts_the_clock():
    levels, _ = run(LOWER, [(0, 85), (3, 70), (4, 85), (8, 85), (9, 85)])
    assert levels == ["ok", "ok", "ok", "ok", "warning"]


def test_hysteresis_prevents_flapping_and_resolves_when_clear():
    _, track = run(LOWER, [(0, 85), (5, 85)])
    levels, track = run(LOWER, [(6, 79), (7, 76), (8, 81), (9, 75.5), (10, 74.9)], track)
    assert levels == ["warning", "warning", "warning", "warning", "ok"]
    assert track == Track("ok", None)


def test_escalation_waits_deescalation_does_not():
    _, track = run(LOWER, [(0, 85), (5, 85)])
    levels, track = run(LOWER, [(6, 95), (8, 95), (11, 95), (12, 87), (13, 84), (14, 60)], track)
    assert levels == ["warning", "warning", "critical", "critical", "warning", "ok"]


def test_straight_to_critical_and_higher_is_better():
    levels, _ = run(HIGHER, [(0, 8), (5, 9), (6, 11), (7, 13), (8, 30)])
    assert levels == ["ok", "critical", "critical", "warning", "ok"]


def test_missing_values_change_nothing():
    _, track = run(LOWER, [(0, 85)])
    assert track.since == T0
    levels, track = run(LOWER, [(3, None), (5, 85)], track)
    assert levels == ["ok", "warning"]


def test_zero_min_duration_opens_at_once():
    rule = Rule("lower", 3.5, 7.0, 0.5, timedelta(0))
    levels, _ = run(rule, [(0, 4.0), (1, 3.2), (2, 2.9), (3, 8.0)])
    assert levels == ["warning", "warning", "ok", "critical"]


def test_tracks_roundtrip_json():
    t = Track("warning", T0)
    assert Track.from_json(t.to_json()) == t
    assert Track.from_json({}) == Track()


def test_same_hour_of_week_follows_local_time():
    # Europe/Berlin switches to summer time on 2026-03-29: one week later 12:00 local is 10:00Z, not 11:00Z
    now = datetime(2026, 4, 2, 10, 30, tzinfo=timezone.utc)  # 12:30 CEST
    hours = same_hour_of_week(now, 2, "Europe/Berlin")
    assert hours == [datetime(2026, 3, 26, 11, 0, tzinfo=timezone.utc),  # 12:00 CET
                     datetime(2026, 3, 19, 11, 0, tzinfo=timezone.utc)]


def test_topics():
    assert topic_for("threshold", "parking_occupancy", "district", "centro") == "city/alerts/threshold/parking_occupancy"
    assert topic_for("health", "sensor_silent", "sensor", "tc/0001#x") == "city/alerts/health/tc_0001_x"
