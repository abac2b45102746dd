"""KPI maths on hand-computed fixtures (kpis.formulas)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kpis import formulas
from kpis.catalogue import Formula

T0 = pd.Timestamp("2026-03-02T12:00Z")
T1 = pd.Timestamp("2026-03-02T12:01Z")


def frame(rows, **extra):
    """rows: (bucket, scope_id, sensor_id, {metric: value})."""
    records = [{"bucket": b, "scope_id": s, "sensor_id": i, **vals} for b, s, i, vals in rows]
    df = pd.DataFrame(records)
    for k, v in extra.items():
        df[k] = v
    return df


def result(df):
    return {(r.bucket, r.scope_id): (None if np.isnan(r.value) else round(r.value, 6), r.sensors)
            for r in df.itertuples()}


def test_weighted_mean_and_share_helpers():
    assert formulas.weighted_mean([50, 100], [100, 300]) == 87.5
    assert formulas.weighted_mean([1.0, np.nan], [1, 1]) == 1.0
    assert formulas.weighted_mean([], []) is None
    assert formulas.share([True, False, False, True]) == 50.0
    assert formulas.share([True, False, True], "count") == 2.0
    assert formulas.share([]) is None
    assert formulas.ratio_percent([3, 1], [10, 10]) == 20.0
    assert formulas.ratio_percent([1], [0]) is None


def test_congestion_index_hand_computed():
    # free flow 60 km/h: 30 km/h doubles the travel time (ratio 2), 60 km/h is free flow (1),
    # 90 km/h is faster than free flow and clipped to 1; 0 km/h is floored at 5 km/h (ratio 12).
    assert formulas.congestion_index([30, 60], [60, 60]) == pytest.approx(50.0)
    assert formulas.congestion_index([90], [60]) == 0.0
    assert formulas.congestion_index([0], [60], speed_floor=5) == pytest.approx(1100.0)
    assert formulas.congestion_index([30, 60], [60, 60], weights=[3, 1]) == pytest.approx(75.0)
    assert formulas.congestion_index([30], [np.nan]) is None


def test_mean_weighted_per_bucket_and_scope():
    f = Formula("readings", "mean", ("parking",), ("occupancy",), (), {"weight": {"attribute": "capacity", "default": 1}})
    df = frame([(T0, "d1", 1, {"occupancy": 50.0}), (T0, "d1", 2, {"occupancy": 100.0}),
                (T0, "d2", 3, {"occupancy": 20.0}), (T1, "d1", 1, {"occupancy": np.nan})],
               weight=[100.0, 300.0, 1.0, 100.0])
    assert result(formulas.reduce_readings(f, df)) == {(T0, "d1"): (87.5, 2), (T0, "d2"): (20.0, 1)}


def test_sum_ratio_and_share():
    s = Formula("readings", "sum", ("traffic_counter",), ("flow",), (), {})
    df = frame([(T0, "", 1, {"flow": 120.0}), (T0, "", 2, {"flow": 80.0}), (T1, "", 1, {"flow": 10.0})])
    assert result(formulas.reduce_readings(s, df)) == {(T0, ""): (200.0, 2), (T1, ""): (10.0, 1)}

    r = Formula("readings", "ratio", ("bike_dock",), ("bikes", "free_docks"), (),
                {"numerator": ["bikes"], "denominator": ["bikes", "free_docks"]})
    df = frame([(T0, "", 1, {"bikes": 3.0, "free_docks": 7.0}), (T0, "", 2, {"bikes": 5.0, "free_docks": 5.0})])
    assert result(formulas.reduce_readings(r, df)) == {(T0, ""): (40.0, 2)}

    sh = Formula("readings", "share", ("waste_bin",), ("fill",), (), {"above": {"value": 80.0}, "result": "percent"})
    df = frame([(T0, "", i, {"fill": v}) for i, v in enumerate([10.0, 80.0, 81.0, 95.0])])
    assert result(formulas.reduce_readings(sh, df)) == {(T0, ""): (50.0, 4)}  # 80 is not over 80
    cnt = Formula("readings", "share", ("waste_bin",), ("fill",), (), {"above": {"value": 80.0}, "result": "count"})
    assert result(formulas.reduce_readings(cnt, df)) == {(T0, ""): (2.0, 4)}


def test_share_outside_band_with_per_sensor_limits():
    f = Formula("readings", "share", ("water",), ("pressure",), (),
                {"outside": [{"value": 2.0, "attribute": "pressure_min"}, {"value": 6.0, "attribute": "pressure_max"}],
                 "result": "percent"})
    df = frame([(T0, "", 1, {"pressure": 1.5}), (T0, "", 2, {"pressure": 3.0}), (T0, "", 3, {"pressure": 6.5}),
                (T0, "", 4, {"pressure": 6.5})],
               limit_0=[np.nan, 3.5, np.nan, np.nan], limit_1=[np.nan, np.nan, np.nan, 7.0])
    # sensor 1 below 2.0; sensor 2 below its own 3.5; sensor 3 above 6.0; sensor 4 within its own 7.0
    assert result(formulas.reduce_readings(f, df)) == {(T0, ""): (75.0, 4)}


def test_noise_limit_follows_local_day_and_night():
    limit = {"day": 65.0, "night": 55.0, "day_start_min": 7 * 60, "night_start_min": 22 * 60}
    f = Formula("readings", "share", ("noise",), ("laeq",), (), {"above": limit, "result": "percent"})
    # America/Cuiaba is UTC-4: 12:00Z = 08:00 local (day), 03:00Z = 23:00 local (night)
    day, night = pd.Timestamp("2026-03-02T12:00Z"), pd.Timestamp("2026-03-02T03:00Z")
    df = frame([(day, "", 1, {"laeq": 60.0}), (day, "", 2, {"laeq": 66.0}),
                (night, "", 1, {"laeq": 60.0}), (night, "", 2, {"laeq": 54.0})])
    got = result(formulas.reduce_readings(f, df, tz="America/Cuiaba"))
    assert got == {(night, ""): (50.0, 2), (day, ""): (50.0, 2)}
    times = pd.Series([pd.Timestamp("2026-03-02T10:59Z"), pd.Timestamp("2026-03-02T11:00Z")])
    assert list(formulas.limit_values(limit, times, None, "America/Cuiaba")) == [55.0, 65.0]


def test_aqi_reduction_uses_mean_concentration_per_pollutant():
    pollutants = {"pm25": {"metric": "pm25", "unit": "ug/m3"}, "no2": {"metric": "no2", "unit": "ug/m3"}}
    f = Formula("readings", "aqi", ("air_quality",), ("pm25", "no2"), (), {"pollutants": pollutants})
    df = frame([(T0, "d1", 1, {"pm25": 10.0, "no2": 94.0}), (T0, "d1", 2, {"pm25": 14.0, "no2": np.nan}),
                (T0, "d2", 3, {"pm25": np.nan, "no2": 376.0})])
    # d1: PM2.5 mean 12.0 -> 56; NO2 94 ug/m3 = 50 ppb -> 47; AQI 56.  d2: NO2 200 ppb -> 120.
    assert result(formulas.reduce_readings(f, df)) == {(T0, "d1"): (56.0, 2), (T0, "d2"): (120.0, 1)}


def test_vehicle_reductions():
    df = pd.DataFrame({"bucket": [T0] * 3, "scope_id": ["", "", ""], "vehicle": ["a", "b", "c"],
                       "n_delay": [2.0, 2.0, 0.0], "delay_sum": [60.0, 600.0, 0.0], "n_on_time": [2.0, 0.0, 0.0],
                       "occ_sum": [50.0, 100.0, 0.0], "n_occ": [1.0, 1.0, 0.0]})
    on_time = formulas.reduce_vehicles(Formula("vehicles", "on_time", params={"max_delay_s": 180}), df)
    assert result(on_time) == {(T0, ""): (50.0, 2)}
    delay = formulas.reduce_vehicles(Formula("vehicles", "mean_delay"), df)
    assert result(delay) == {(T0, ""): (2.75, 2)}  # (60 + 600) s / 4 reports / 60
    crowd = formulas.reduce_vehicles(Formula("vehicles", "crowding"), df)
    assert result(crowd) == {(T0, ""): (75.0, 2)}
    service = formulas.reduce_vehicles(Formula("vehicles", "in_service"), df, {"": 4})
    assert result(service) == {(T0, ""): (75.0, 3)}


def test_health_reductions():
    rep = pd.DataFrame({"bucket": [T0, T0, T1], "scope_id": ["", "", ""], "sensor_id": [1, 2, 1]})
    got = formulas.reduce_health(Formula("health", "reporting"), rep, {"": 4})
    assert result(got) == {(T0, ""): (50.0, 2), (T1, ""): (25.0, 1)}
    lag = pd.DataFrame({"bucket": [T0], "bucket_end": [T1], "newest": [T0 + pd.Timedelta(seconds=45)],
                        "sensors": [3]})
    assert result(formulas.reduce_health(Formula("health", "lag"), lag)) == {(T0, ""): (15.0, 3)}
    dead = pd.DataFrame({"bucket": [T0, T1], "dead": [1.0, 0.0], "readings": [99.0, 0.0]})
    got = result(formulas.reduce_health(Formula("health", "dead_letters"), dead))
    assert got == {(T0, ""): (1.0, 0), (T1, ""): (None, 0)}


def test_robust_z_median_mad():
    hist = [10, 12, 11, 13, 12, 11, 10, 12]
    # median 11.5, absolute deviations 1.5 .5 .5 1.5 .5 .5 1.5 .5 -> MAD 0.5
    assert formulas.robust_z(14.0, hist) == pytest.approx(0.6745 * 2.5 / 0.5)
    assert formulas.robust_z(11.5, hist) == 0.0
    # MAD 0 -> mean absolute deviation: median 5, deviations 0 0 0 4 -> mean 1
    assert formulas.robust_z(7.0, [5, 5, 5, 9]) == pytest.approx(2 / 1.2533)
    assert formulas.robust_z(6.0, [5, 5, 5]) is None
    assert formulas.robust_z(6.0, [5, 7]) is None  # too little history
    assert formulas.robust_z(None, hist) is None


def test_sensor_parameters_and_filters():
    f = Formula("readings", "congestion", ("traffic_counter",), ("speed",),
                ({"attribute": "road_class", "op": "in", "value": ["arterial"]},),
                {"weight": None, "free_flow": {"attribute": "free_flow_kmh", "default": None}, "speed_floor_kmh": 5})
    sensors = pd.DataFrame({"sensor_id": [1, 2, 3],
                            "attributes": [{"free_flow_kmh": 60, "road_class": "arterial"},
                                           {"free_flow_kmh": "50", "road_class": "local"}, {}]})
    params = formulas.sensor_parameters(f, sensors)
    assert list(params["free_flow"].fillna(-1)) == [60.0, 50.0, -1.0]
    assert list(formulas.sensor_passes(f.filters, sensors["attributes"])) == [True, False, False]
    gte = ({"attribute": "free_flow_kmh", "op": "gte", "value": 55.0},)
    assert list(formulas.sensor_passes(gte, sensors["attributes"])) == [True, False, False]
