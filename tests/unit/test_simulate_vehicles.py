"""Buses and trams: on their shapes, moving forward, late in rush hours and behind incidents."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import shapely

from ingest.simulate.city import load_city
from ingest.simulate.events import Incidents
from ingest.simulate.vehicles import Fleet

TZ = ZoneInfo("America/Cuiaba")


def local(y, mo, d, h, mi=0) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=TZ).timestamp()


@pytest.fixture(scope="module")
def city():
    return load_city("layers/demo_city")


@pytest.fixture(scope="module")
def fleet(city):
    return Fleet(city, 1, Incidents(city, 1, rate=0.0))


def shape_line(fleet, trip):
    j = fleet.trips.index(trip)
    shape = fleet.shapes[fleet.shape_of[j]]
    x, y = fleet.city.projection.inverse(shape.x, shape.y)
    return shapely.LineString(np.column_stack([x, y])), j


def test_vehicles_run_on_their_shapes_and_move_forward(fleet):
    t = local(2026, 11, 23, 10)
    now = {p.vehicle: p for p in fleet.positions(t)}
    later = {p.vehicle: p for p in fleet.positions(t + 60)}
    assert len(now) >= 20 and {p.route for p in now.values()} >= {"VLT1", "B101", "B105"}
    moved = 0
    for vid, p in now.items():
        line, j = shape_line(fleet, p.trip)
        assert line.distance(shapely.Point(p.lon, p.lat)) < 2e-5  # ~2 m, on the shape
        assert 0 <= p.bearing < 360 and 0 <= p.occupancy_pct <= 100 and p.speed_kmh >= 0
        q = later.get(vid)
        if q is not None and q.trip == p.trip:
            assert line.project(shapely.Point(q.lon, q.lat)) >= line.project(shapely.Point(p.lon, p.lat)) - 1e-9
            moved += line.project(shapely.Point(q.lon, q.lat)) > line.project(shapely.Point(p.lon, p.lat))
    assert moved >= len(now) // 2


def test_no_service_at_night_and_weekend_timetable(fleet):
    assert fleet.positions(local(2026, 11, 23, 3)) == []
    sunday = fleet.positions(local(2026, 11, 29, 10))
    assert sunday and all("-U" not in p.trip for p in sunday)  # weekend trips only
    monday = fleet.positions(local(2026, 11, 23, 10))
    assert all("-F" not in p.trip for p in monday)


def test_vehicle_ids_are_chained_blocks(fleet):
    ids = fleet.vehicle_ids()
    per_route = {}
    for v in ids:
        per_route.setdefault(v.rsplit("-", 1)[0], []).append(v)
    assert set(per_route) == set(fleet.route)
    assert all(2 <= len(v) <= 12 for v in per_route.values())
    positions = fleet.positions(local(2026, 11, 23, 8))
    assert len({p.vehicle for p in positions}) == len(positions)


def test_rush_hour_makes_buses_later(fleet):
    def delays(h):
        return np.array([p.delay_s for k in range(0, 3600, 300)
                         for p in fleet.positions(local(2026, 11, 23, h) + k) if p.route != "VLT1"])
    rush, midday = delays(8), delays(13)
    assert rush.mean() > midday.mean() + 30
    on_time = (rush < 180).mean()
    assert 0.5 < on_time < 0.97  # some late buses, most on time


def test_incident_delays_buses_passing_it(city):
    calm = Fleet(city, 1, Incidents(city, 1, rate=0.0))
    incidents = Incidents(city, 1, rate=1.0)
    busy = Fleet(city, 1, incidents)
    start = local(2026, 11, 23, 9)
    held = 0
    for k in range(0, 8 * 3600, 120):
        t = start + k
        a = {p.vehicle: p for p in calm.positions(t)}
        b = {p.vehicle: p for p in busy.positions(t)}
        for vid in a.keys() & b.keys():
            if a[vid].trip == b[vid].trip:
                assert b[vid].delay_s >= a[vid].delay_s
                held += b[vid].delay_s > a[vid].delay_s + 30
    assert held > 20
