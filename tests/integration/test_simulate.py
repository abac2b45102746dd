"""The simulator against real services: backfill through BatchWriter into TimescaleDB, and a
live run through the real broker into a real ingestor, all four payload formats."""
from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
import pytest

from ingest.simulate.backfill import backfill
from ingest.simulate.city import build_city
from ingest.simulate.encoders import FORMATS, Encoder, parse_formats
from ingest.simulate.world import World
from layers import DEMO_CITY
from layers.pack import load_pack
from layers.store import store_pack

from .mqtt_tools import ROOT, IngestProcess, count, ingest_env, wait_for_count, wait_until_ingesting


@pytest.fixture(scope="module")
def pack():
    return load_pack(DEMO_CITY)


@pytest.fixture(scope="module")
def city(pack):
    return build_city(pack)


def last_local(hour: int) -> float:
    """The most recent past local ``hour``:00 of the demo city (buses run then)."""
    tz = ZoneInfo("America/Cuiaba")
    now = datetime.now(tz)
    at = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    if at > now - timedelta(minutes=5):
        at -= timedelta(days=1)
    return at.timestamp()


def expected_rows(world, start, end) -> int:
    rows = 0
    t = start
    while t < end:
        for b in world.due(t, min(t + 300, end)):
            rows += sum(len(set(world.city.metrics[i]) & set(b.values)) for i in b.idx.tolist())
        t += 300
    return rows


def test_backfill_writes_exact_history_once(settings, city):
    sensors = np.arange(0, len(city), 7)  # 240 sensors of every kind
    world = World(city, seed=3, interval=60, vehicle_interval=60, sensors=sensors)
    end = float(int(time.time()) // 60 * 60)
    start = end - 3 * 3600
    rows = expected_rows(world, start, end)
    positions = sum(len(world.fleet.positions(t)) for t in np.arange(start + 60, end + 1, 60))

    first = backfill(world, settings.role_url("ingest"), start, end, batch_rows=20_000,
                     progress=False)
    assert (first.readings, first.duplicates, first.vehicles) == (rows, 0, positions)
    db = settings.database_url
    assert count(db) == rows
    assert count(db, "SELECT count(*) FROM vehicle_positions") == positions
    assert count(db, "SELECT count(DISTINCT sensor_id) FROM readings") > 200
    assert count(db, f"SELECT count(*) FROM readings WHERE time <= to_timestamp({start}) "
                     f"OR time > to_timestamp({end})") == 0
    # every batch announced its minutes to the rollup job: the readings touch the 180 minutes
    # of (start, end], vehicle positions at exactly `end` open a 181st one when buses run then
    # (not at night, when the timetable has none)
    minutes = {int(t // 60) for t in world.due_times(start, end)[1].tolist()}
    minutes |= {int(t // 60) for t in np.arange(start + 60, end + 1, 60)
                if len(world.fleet.positions(t))}
    assert len(minutes) in (180, 181)
    assert count(db, "SELECT count(DISTINCT bucket) FROM rollup_pending") == len(minutes)
    with psycopg.connect(db) as conn:  # backfill registered the sensors with kind and place
        kinds = dict(conn.execute("SELECT kind, count(*) FROM sensors WHERE placed GROUP BY kind"))
    assert sum(kinds.values()) == len(sensors) and set(kinds) == set(city.kinds[sensors])

    again = backfill(world, settings.role_url("ingest"), start, end, progress=False)
    assert (again.readings, again.duplicates, again.vehicles) == (0, rows, 0)
    assert count(db) == rows


def test_live_simulator_feeds_the_ingestor_in_every_format(settings, mqtt_broker, pack, city,
                                                           tmp_path):
    db = settings.database_url
    with psycopg.connect(db) as conn:
        store_pack(conn, pack)
    env = ingest_env(db, mqtt_broker.url, settings.mqtt_client_id)
    ingestor = IngestProcess(env, tmp_path / "ingest.log").start()
    try:
        wait_until_ingesting(mqtt_broker.port, db)
        start = last_local(10)
        formats = "native=25,senml=25,ngsi=25,ttn=25"
        sim = subprocess.run(
            [sys.executable, "-m", "ingest", "simulate", "--duration", "6", "--interval", "4",
             "--vehicle-interval", "2",
             "--start", datetime.fromtimestamp(start).astimezone().isoformat(),
             "--formats", formats, "--seed", "9", "--connections", "2", "--no-progress"],
            cwd=ROOT, env={**env, "CITYDASH_SIMULATE_CLIENT_ID": settings.mqtt_client_id + "-sim"},
            capture_output=True, text=True, timeout=120)
        assert sim.returncode == 0, sim.stderr[-2000:]
        published = int(sim.stdout.split("published ")[1].split()[0])
        assert published > len(city)  # every sensor at least once in 6 s at a 4 s interval

        # everything published arrives: one (sensor or vehicle, time) per message, plus the probe
        enc = Encoder(city, parse_formats(formats), seed=9)
        stored = wait_for_count(db, published + 1, "SELECT count(*) FROM (SELECT DISTINCT "
                                "sensor_id::text, time FROM readings UNION ALL SELECT DISTINCT "
                                "vehicle, time FROM vehicle_positions) x", timeout=60,
                                stable_for=1.0)
        assert stored == published + 1
        assert count(db, "SELECT count(*) FROM dead_letters") == 0
        with psycopg.connect(db) as conn:
            got = {r[0] for r in conn.execute(
                "SELECT DISTINCT sensor_id FROM readings_named WHERE sensor_id <> 'probe'")}
            vehicles = conn.execute("SELECT count(DISTINCT vehicle), count(*) FILTER (WHERE "
                                    "delay_s IS NOT NULL) FROM vehicle_positions").fetchone()
            unregistered = conn.execute("SELECT count(*) FROM sensors WHERE kind IS NULL AND "
                                        "external_id <> 'probe'").fetchone()[0]
        for fmt in FORMATS:
            assert set(enc.sensors_in(fmt)) & got, f"no reading arrived in format {fmt}"
        assert len(got) >= len(city) - 30  # all but sensors in a simulated dropout
        assert vehicles[0] >= 10 and vehicles[1] > 0
        assert unregistered == 0  # every format landed on the pack's registered sensors
    finally:
        ingestor.terminate()


def test_overloaded_live_run_stays_on_time_and_delivers(mqtt_broker, city):
    """Asked for far more than it can publish (1,680 sensors a second at 1000x), a 2-second
    run still ends after about 2 seconds, every message acknowledged, the simulation behind."""
    import threading

    from ingest.simulate.publisher import run_live

    world = World(city, seed=1, interval=1.0)
    enc = Encoder(city, parse_formats("native=70,senml=10,ngsi=10,ttn=10"), seed=1)
    start = time.time() - 86400
    began = time.monotonic()
    stats = run_live(world, enc, mqtt_broker.url, "test-overload", start=start, speed=1000.0,
                     duration=2.0, stop=threading.Event())
    assert time.monotonic() - began < 8.0
    assert stats.published == stats.acked > 1000
    assert stats.sim_end - stats.sim_start < 2.0 * 1000  # fell behind instead of piling up


def test_max_rate_caps_the_publish_rate(mqtt_broker, city):
    import threading

    from ingest.simulate.publisher import run_live

    world = World(city, seed=1, interval=1.0)
    enc = Encoder(city, parse_formats("native"), seed=1)
    stats = run_live(world, enc, mqtt_broker.url, "test-max-rate", start=time.time() - 3600,
                     speed=10.0, duration=2.0, max_rate=400.0, stop=threading.Event())
    assert stats.published == stats.acked
    assert 400 <= stats.published <= 400 * stats.seconds + 1  # asked for ~17,000/s
