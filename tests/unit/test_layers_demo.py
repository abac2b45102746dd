"""The synthetic demo city (layers.synth): reproducible, small, plausible."""
from __future__ import annotations

import time

import pandas as pd
import pytest

from layers import DEMO_CITY
from layers.synth import FILES, generate


@pytest.fixture(scope="module")
def seed1(tmp_path_factory):
    started = time.perf_counter()
    out = generate(tmp_path_factory.mktemp("seed1") / "pack", seed=1)
    return out, time.perf_counter() - started


def test_generation_is_fast_and_writes_every_file(seed1):
    out, seconds = seed1
    assert seconds < 10
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == sorted(FILES)
    assert not (out / "kpis.yaml").exists()  # named in city.yaml, written by the KPI engine's owner


def test_same_seed_same_bytes(seed1, tmp_path):
    out, _ = seed1
    again = generate(tmp_path / "again", seed=1)
    for name in FILES:
        assert (again / name).read_bytes() == (out / name).read_bytes(), name


def test_committed_demo_city_is_seed_1_output(seed1):
    """After a generator change: python -m layers demo --seed 1 layers/demo_city."""
    out, _ = seed1
    for name in FILES:
        assert (DEMO_CITY / name).read_bytes() == (out / name).read_bytes(), name


def test_other_seed_other_city(seed1, tmp_path):
    out, _ = seed1
    other = generate(tmp_path / "seed2", seed=2)
    assert (other / "districts.geojson").read_bytes() != (out / "districts.geojson").read_bytes()


def test_committed_copy_is_small():
    total = sum(p.stat().st_size for p in DEMO_CITY.rglob("*") if p.is_file())
    assert total < 3_000_000


def test_timetable_is_a_full_day(seed1):
    out, _ = seed1
    st = pd.read_csv(out / "gtfs" / "stop_times.txt", dtype=str)
    hours = st["departure_time"].str.slice(0, 2).astype(int)
    assert hours.min() == 5 and hours.max() >= 23
    trips = pd.read_csv(out / "gtfs" / "trips.txt", dtype=str)
    assert set(trips["service_id"]) == {"UTEIS", "FDS"}
    assert trips["trip_id"].is_unique and set(st["trip_id"]) == set(trips["trip_id"])
    # times never go backwards within a trip
    secs = st["arrival_time"].str.split(":", expand=True).astype(int) @ [3600, 60, 1]
    st = st.assign(t=secs, seq=st["stop_sequence"].astype(int)).sort_values(["trip_id", "seq"])
    assert (st.groupby("trip_id")["t"].diff().dropna() >= 0).all()
    shapes = pd.read_csv(out / "gtfs" / "shapes.txt", dtype=str)
    assert set(shapes["shape_id"]) == set(trips["shape_id"])
