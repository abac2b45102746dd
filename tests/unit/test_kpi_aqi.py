"""The AQI against the published table: EPA-454/B-24-002 (May 2024), Table 6."""
from __future__ import annotations

import pytest

from kpis import aqi

# (pollutant, C_lo, C_hi, I_lo, I_hi), transcribed from the published table.
PUBLISHED = [
    ("pm25", 0.0, 9.0, 0, 50), ("pm25", 9.1, 35.4, 51, 100), ("pm25", 35.5, 55.4, 101, 150),
    ("pm25", 55.5, 125.4, 151, 200), ("pm25", 125.5, 225.4, 201, 300), ("pm25", 225.5, 325.4, 301, 500),
    ("pm10", 0, 54, 0, 50), ("pm10", 55, 154, 51, 100), ("pm10", 155, 254, 101, 150),
    ("pm10", 255, 354, 151, 200), ("pm10", 355, 424, 201, 300), ("pm10", 425, 604, 301, 500),
    ("o3", 0.000, 0.054, 0, 50), ("o3", 0.055, 0.070, 51, 100), ("o3", 0.071, 0.085, 101, 150),
    ("o3", 0.086, 0.105, 151, 200), ("o3", 0.106, 0.200, 201, 300),
    ("no2", 0, 53, 0, 50), ("no2", 54, 100, 51, 100), ("no2", 101, 360, 101, 150),
    ("no2", 361, 649, 151, 200), ("no2", 650, 1249, 201, 300), ("no2", 1250, 2049, 301, 500),
]


@pytest.mark.parametrize("pollutant,c_lo,c_hi,i_lo,i_hi", PUBLISHED)
def test_every_breakpoint_maps_to_its_index(pollutant, c_lo, c_hi, i_lo, i_hi):
    assert aqi.sub_index(pollutant, c_lo) == i_lo
    assert aqi.sub_index(pollutant, c_hi) == i_hi


def test_table_in_code_is_the_published_table():
    code = [(p, *bp) for p, (_, _, _, bps) in aqi.TABLE.items() for bp in bps]
    assert sorted(code) == sorted(PUBLISHED)


@pytest.mark.parametrize("pollutant,concentration,expected", [
    ("pm25", 12.0, 56),     # (100-51)/(35.4-9.1)*(12.0-9.1)+51 = 56.40 -> 56
    ("pm25", 9.05, 50),     # truncated to 9.0
    ("pm25", 35.49, 100),   # truncated to 35.4
    ("pm25", 500.0, 500),   # beyond the table
    ("pm10", 154.9, 100),   # truncated to 154
    ("o3", 0.0549, 50),     # truncated to 0.054
    ("o3", 0.300, 300),     # 8-hour table ends at 0.200 ppm
    ("no2", 100.7, 100),    # truncated to 100
    ("no2", 200, 120),      # (150-101)/(360-101)*(200-101)+101 = 119.73 -> 120
])
def test_interpolation_and_truncation(pollutant, concentration, expected):
    assert aqi.sub_index(pollutant, concentration) == expected


def test_aqi_is_the_highest_sub_index():
    assert aqi.aqi({"pm25": 12.0, "no2": 200.0, "o3": None}) == (120, "no2")
    assert aqi.aqi({}) == (None, None)
    assert aqi.category(120) == "unhealthy_sensitive"
    assert aqi.category(50) == "good"
    assert aqi.category(301) == "hazardous"


def test_unit_conversion_to_epa_units():
    assert aqi.to_epa_units("no2", 188.0, "ug/m3") == pytest.approx(100.0)
    assert aqi.to_epa_units("o3", 196.0, "µg/m³") == pytest.approx(0.1)
    assert aqi.to_epa_units("o3", 70.0, "ppb") == pytest.approx(0.070)
    assert aqi.to_epa_units("pm25", 12.0, "µg/m³") == 12.0
    with pytest.raises(ValueError):
        aqi.to_epa_units("pm25", 1.0, "ppb")
