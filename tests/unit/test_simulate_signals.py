"""Simulated signals: daily and weekly shapes, rush hours, weather, faults, incidents."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from ingest.simulate import clock, events
from ingest.simulate.city import load_city
from ingest.simulate.events import Faults, Incidents
from ingest.simulate.signals import Signals
from ingest.simulate.world import World

TZ = ZoneInfo("America/Cuiaba")


def local(y, mo, d, h, mi=0) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=TZ).timestamp()


MONDAY = (2026, 11, 23)  # a Monday
SATURDAY = (2026, 11, 28)
SUNDAY = (2026, 11, 29)


@pytest.fixture(scope="module")
def city():
    return load_city("layers/demo_city")


@pytest.fixture(scope="module")
def calm(city):
    """No incidents and no faults: the clean daily and weekly shapes."""
    return Signals(city, 1, Incidents(city, 1, rate=0.0), Faults(1, rate=0.0))


def kind_mean(sig, city, kind, metric, t) -> float:
    idx = city.index(kind)
    return float(np.mean(sig.clean(kind, idx, np.full(len(idx), t))[metric]))


def test_local_clock_uses_the_city_timezone():
    hour, weekday = clock.local_clock(TZ, np.array([local(*MONDAY, 7, 30), local(*SUNDAY, 23)]))
    assert np.allclose(hour, [7.5, 23.0]) and weekday.tolist() == [0, 6]


def test_traffic_has_two_rush_hours_on_working_days(calm, city):
    flow = {h: kind_mean(calm, city, "traffic_counter", "flow", local(*MONDAY, h, 45 if h == 7 else 0))
            for h in (3, 7, 12, 18, 23)}
    assert flow[7] > 1.3 * flow[12] and flow[18] > 1.3 * flow[12]
    assert flow[12] > 3 * flow[3] and flow[23] < flow[12]
    speed = {h: kind_mean(calm, city, "traffic_counter", "speed", local(*MONDAY, h, 45 if h == 7 else 0))
             for h in (3, 7, 12)}
    assert speed[7] < speed[12] < speed[3]
    ff = city.free_flow[city.index("traffic_counter")].mean()
    assert 0.6 * ff < speed[7] < 0.85 * ff  # congested, not standing still
    assert speed[3] > 0.95 * ff


def test_weekends_are_quieter_and_sundays_quietest(calm, city):
    def flow(day, h):
        return kind_mean(calm, city, "traffic_counter", "flow", local(*day, h, 45))
    assert flow(MONDAY, 7) > 1.6 * flow(SATURDAY, 7)
    assert flow(SUNDAY, 12) < flow(SATURDAY, 12)
    parking = [kind_mean(calm, city, "parking", "occupancy", local(*d, 11)) for d in (MONDAY, SUNDAY)]
    assert parking[0] > parking[1] + 10


def test_daily_cycles_of_the_other_kinds(calm, city):
    night, noon, evening = local(*MONDAY, 3), local(*MONDAY, 13), local(*MONDAY, 19, 30)
    assert kind_mean(calm, city, "parking", "occupancy", noon) > 2 * kind_mean(
        calm, city, "parking", "occupancy", night)
    assert kind_mean(calm, city, "air_quality", "o3", noon) > 2 * kind_mean(
        calm, city, "air_quality", "o3", night)
    assert kind_mean(calm, city, "air_quality", "no2", local(*MONDAY, 8)) > 2 * kind_mean(
        calm, city, "air_quality", "no2", night)
    assert kind_mean(calm, city, "energy", "kw", evening) > 1.3 * kind_mean(
        calm, city, "energy", "kw", night)
    assert kind_mean(calm, city, "water", "pressure", local(*MONDAY, 7)) < kind_mean(
        calm, city, "water", "pressure", night) - 0.3
    assert kind_mean(calm, city, "streetlight", "on", night) == 1.0
    assert kind_mean(calm, city, "streetlight", "on", noon) == 0.0
    assert kind_mean(calm, city, "noise", "laeq", local(*MONDAY, 8)) > kind_mean(
        calm, city, "noise", "laeq", night) + 5
    idx = city.index("bike_dock")
    v = calm.clean("bike_dock", idx, np.full(len(idx), noon))
    assert np.array_equal(v["bikes"] + v["free_docks"], city.capacity[idx])


def test_weather_drifts_air_quality_over_days(calm, city):
    days = [local(2026, 11, d, 13) for d in range(1, 31)]
    pm = np.array([kind_mean(calm, city, "air_quality", "pm25", t) for t in days])
    assert pm.max() > 1.8 * pm.min()  # dispersion changes day to day, traffic is the same
    w = events.weather(1, np.array(days))
    assert np.corrcoef(w, pm)[0, 1] > 0.9


def test_waste_bins_fill_and_are_emptied(calm, city):
    idx = city.index("waste_bin")[:20]
    times = np.arange(local(*MONDAY, 0), local(*MONDAY, 0) + 4 * 86400, 1800.0)
    fills = np.array([calm.clean("waste_bin", idx, np.full(len(idx), t))["fill"] for t in times])
    steps = np.diff(fills, axis=0)
    assert (steps < -30).any(axis=0).all()  # every bin was collected at least once
    assert np.median(steps) > 0  # and otherwise fills up


def find_fault(faults, city, kind, wanted, start):
    idx = city.index(kind)
    for k in range(2000):
        t = start + k * 1800.0
        code, begun, glitch = faults.at(idx, np.full(len(idx), t))
        hit = np.flatnonzero(code == wanted)
        if len(hit):
            return int(idx[hit[0]]), float(begun[hit[0]]), t, bool(glitch[hit[0]])
    raise AssertionError("no fault found")


def test_faults_stuck_dropout_spike_drift(city):
    faults = Faults(7, rate=0.02)
    sig = Signals(city, 7, Incidents(city, 7, rate=0.0), faults)
    start = local(*MONDAY, 0)
    i, begun, t, _ = find_fault(faults, city, "traffic_counter", events.FAULT_STUCK, start)
    later = [b for b in sig.readings(np.array([i, i]), np.array([t, t + 1200]))][0]
    clean = sig.clean("traffic_counter", np.array([i, i]), np.array([begun, t + 1200]))
    assert later.values["speed"][0] == later.values["speed"][1] == clean["speed"][0]
    assert clean["speed"][1] != clean["speed"][0]

    i, begun, t, _ = find_fault(faults, city, "noise", events.FAULT_DROPOUT, start)
    assert sig.readings(np.array([i]), t) == []
    assert len(sig.readings(np.array([i]), begun - 1)) == 1

    i, begun, t, glitch = find_fault(faults, city, "air_quality", events.FAULT_SPIKE, start)
    [b] = sig.readings(np.array([i]), t)
    clean = sig.clean("air_quality", np.array([i]), np.array([t]))
    expected = events.GLITCH_VALUE if glitch else round(float(clean["pm25"][0]) * 4, 1)
    assert b.values["pm25"][0] == pytest.approx(expected)

    i, begun, t, _ = find_fault(faults, city, "water", events.FAULT_DRIFT, start)
    [b] = sig.readings(np.array([i]), t)
    clean = sig.clean("water", np.array([i]), np.array([t]))
    assert b.values["pressure"][0] == pytest.approx(clean["pressure"][0] + 0.6 * (t - begun) / 3600,
                                                    abs=0.02)


def test_fault_share_is_small_but_present(city):
    faults = Faults(1)
    idx = np.arange(len(city))
    shares = [np.mean(faults.at(idx, np.full(len(idx), local(*MONDAY, 0) + k * 3600.0))[0] > 0)
              for k in range(48)]
    assert 0 < np.mean(shares) < 0.02


def test_incident_slows_counters_upstream_only(city):
    inc_model = Incidents(city, 5, rate=1.0)
    sig = Signals(city, 5, inc_model, Faults(5, rate=0.0))
    calm = Signals(city, 5, Incidents(city, 5, rate=0.0), Faults(5, rate=0.0))
    idx = city.index("traffic_counter")
    checked = 0
    for w in range(int(local(*MONDAY, 6) // 7200), int(local(*MONDAY, 6) // 7200) + 40):
        inc = inc_model.in_window(w)
        mid = (inc.start + inc.end) / 2
        factor = inc_model.upstream_factor(inc, idx, np.full(len(idx), mid))
        hit = idx[factor < 1]
        if len(hit) == 0:
            continue
        assert inc.sensor in hit  # the counter at the crash itself
        rx, ry = inc.x - city.x[hit], inc.y - city.y[hit]
        assert np.all(rx * inc.dx + ry * inc.dy > -30)  # all behind the crash
        assert np.all(np.hypot(rx, ry) < events.UPSTREAM_M)
        during = sig.clean("traffic_counter", hit, np.full(len(hit), mid))["speed"]
        normal = calm.clean("traffic_counter", hit, np.full(len(hit), mid))["speed"]
        assert np.all(during <= normal)
        strong = factor[factor < 1] < 0.9
        assert strong.any() and np.all(during[strong] < normal[strong])
        after = sig.clean("traffic_counter", hit, np.full(len(hit), inc.end + 7200 + 1))["speed"]
        again = calm.clean("traffic_counter", hit, np.full(len(hit), inc.end + 7200 + 1))["speed"]
        unaffected = inc_model.speed_factor(hit, np.full(len(hit), inc.end + 7200 + 1)) == 1
        assert np.array_equal(after[unaffected], again[unaffected])
        checked += 1
    assert checked >= 10


def test_determinism_and_seed(city):
    t = local(*MONDAY, 8)
    a = World(city, seed=4, interval=60).due(t, t + 60)
    b = World(city, seed=4, interval=60).due(t, t + 60)
    c = World(city, seed=5, interval=60).due(t, t + 60)
    for x, y in zip(a, b):
        assert x.kind == y.kind and np.array_equal(x.idx, y.idx)
        assert all(np.array_equal(x.values[m], y.values[m]) for m in x.values)
    flows = {bt.kind: bt for bt in c}["traffic_counter"].values["flow"]
    assert not np.array_equal({bt.kind: bt for bt in a}["traffic_counter"].values["flow"], flows)


def test_every_sensor_reports_once_per_interval_and_windows_compose(city):
    world = World(city, seed=2, interval=30, fault_rate=0.0)
    t0 = local(*MONDAY, 9)
    idx, times = world.due_times(t0, t0 + 30)
    assert sorted(idx.tolist()) == list(range(len(city)))
    assert np.all((times > t0) & (times <= t0 + 30))
    whole = world.due_times(t0, t0 + 300)
    parts = [world.due_times(t0 + a, t0 + b) for a, b in ((0, 0.25), (0.25, 100), (100, 300))]
    assert sorted(zip(whole[0].tolist(), whole[1].tolist())) == sorted(
        (i, t) for p in parts for i, t in zip(p[0].tolist(), p[1].tolist()))
    assert len(whole[0]) == 10 * len(city)
    assert sorted(world.due_times(t0, t0 + 30, shard=(1, 3))[0].tolist()) == sorted(
        i for i in range(len(city)) if i % 3 == 1)


def test_healthy_sensors_never_look_stuck(calm, city):
    """The health job calls a sensor stuck after 3 h of one value (docs/kpis.md); only the
    simulated faults may do that, so no clean signal stays flat for even an hour."""
    from kpis.catalogue import DEFAULT_FILE
    import yaml

    ignored = set(yaml.safe_load(DEFAULT_FILE.read_text())["health"]["stuck_ignore"])
    times = local(*MONDAY, 0) + 300.0 * np.arange(288)
    for kind, idx in city.by_kind.items():
        series = [calm.clean(kind, idx, np.full(len(idx), t)) for t in times]
        for metric in series[0]:
            if metric in ignored:
                continue
            flat = np.diff(np.array([s[metric] for s in series]), axis=0) == 0
            run = best = np.zeros(len(idx))
            for row in flat:
                run = np.where(row, run + 1, 0)
                best = np.maximum(best, run)
            assert best.max() < 12, f"{kind}.{metric} stays flat for an hour"
