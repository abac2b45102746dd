"""US EPA Air Quality Index from PM2.5, PM10, NO2 and O3.

Standard: U.S. EPA, *Technical Assistance Document for the Reporting of Daily
Air Quality - the Air Quality Index (AQI)*, EPA-454/B-24-002, May 2024,
Table 6 "Breakpoints for the AQI" (the 2024 revision that lowered the PM2.5
"Good" band to 0.0-9.0 ug/m3 and merged the two hazardous bands into
301-500).  The same table is 40 CFR Part 58, Appendix G, Table 2.

    AQI        PM2.5 24-h   PM10 24-h   O3 8-h        NO2 1-h
               (ug/m3)      (ug/m3)     (ppm)         (ppb)
    0-50       0.0-9.0      0-54        0.000-0.054   0-53
    51-100     9.1-35.4     55-154      0.055-0.070   54-100
    101-150    35.5-55.4    155-254     0.071-0.085   101-360
    151-200    55.5-125.4   255-354     0.086-0.105   361-649
    201-300    125.5-225.4  355-424     0.106-0.200   650-1249
    301-500    225.5-325.4  425-604     (1-h O3)      1250-2049

Concentrations are truncated as the document prescribes (PM2.5 to 0.1
ug/m3, PM10 to 1 ug/m3, O3 to 0.001 ppm, NO2 to 1 ppb) and the index is
``round((I_hi - I_lo) / (C_hi - C_lo) * (C - C_lo) + I_lo)``.  Above the top
of a table the index is 500 (``beyond the AQI``); 8-hour O3 above 0.200 ppm
is reported as 300, because the 8-hour table ends there (EPA switches to
1-hour O3, which citydash does not compute).  The AQI is the highest
sub-index.

Sensors often report gases in ug/m3; :func:`to_epa_units` converts at 25 C
and 1 atm (1 ppb NO2 = 1.88 ug/m3, 1 ppb O3 = 1.96 ug/m3).
"""
from __future__ import annotations

import math

# pollutant -> (EPA unit, averaging period, truncation decimals, breakpoints)
# breakpoints: (C_lo, C_hi, I_lo, I_hi)
TABLE: dict[str, tuple[str, str, int, tuple[tuple[float, float, int, int], ...]]] = {
    "pm25": ("ug/m3", "24h", 1, (
        (0.0, 9.0, 0, 50), (9.1, 35.4, 51, 100), (35.5, 55.4, 101, 150),
        (55.5, 125.4, 151, 200), (125.5, 225.4, 201, 300), (225.5, 325.4, 301, 500))),
    "pm10": ("ug/m3", "24h", 0, (
        (0, 54, 0, 50), (55, 154, 51, 100), (155, 254, 101, 150),
        (255, 354, 151, 200), (355, 424, 201, 300), (425, 604, 301, 500))),
    "o3": ("ppm", "8h", 3, (
        (0.000, 0.054, 0, 50), (0.055, 0.070, 51, 100), (0.071, 0.085, 101, 150),
        (0.086, 0.105, 151, 200), (0.106, 0.200, 201, 300))),
    "no2": ("ppb", "1h", 0, (
        (0, 53, 0, 50), (54, 100, 51, 100), (101, 360, 101, 150),
        (361, 649, 151, 200), (650, 1249, 201, 300), (1250, 2049, 301, 500))),
}
POLLUTANTS = tuple(TABLE)

# ug/m3 per ppb at 25 C, 1 atm (molar mass / 24.45)
UGM3_PER_PPB = {"no2": 1.88, "o3": 1.96}
UNITS = {"ug/m3", "µg/m³", "µg/m3", "ppb", "ppm"}

CATEGORIES = ((50, "good"), (100, "moderate"), (150, "unhealthy_sensitive"),
              (200, "unhealthy"), (300, "very_unhealthy"), (500, "hazardous"))


def to_epa_units(pollutant: str, value: float, unit: str) -> float:
    """``value`` in ``unit`` converted to the unit of the EPA table for ``pollutant``."""
    target = TABLE[pollutant][0]
    unit = {"µg/m³": "ug/m3", "µg/m3": "ug/m3"}.get(unit, unit)
    if unit == target:
        return value
    if target == "ug/m3":
        raise ValueError(f"{pollutant}: expected ug/m3, got {unit}")
    ppb = value
    if unit == "ug/m3":
        ppb = value / UGM3_PER_PPB[pollutant]
    elif unit == "ppm":
        ppb = value * 1000.0
    elif unit != "ppb":
        raise ValueError(f"{pollutant}: unknown unit {unit}")
    return ppb / 1000.0 if target == "ppm" else ppb


def truncate(pollutant: str, concentration: float) -> float:
    decimals = TABLE[pollutant][2]
    scale = 10 ** decimals
    # the small epsilon keeps 0.07 * 1000 = 70.00000000000001 -> 70 and 9.1 * 10 -> 91
    return math.floor(concentration * scale + 1e-9) / scale


def sub_index(pollutant: str, concentration: float | None) -> int | None:
    """The AQI sub-index of one pollutant (concentration in the table's unit)."""
    if concentration is None or not math.isfinite(concentration):
        return None
    c = max(truncate(pollutant, concentration), 0.0)
    breakpoints = TABLE[pollutant][3]
    for c_lo, c_hi, i_lo, i_hi in breakpoints:
        if c <= c_hi:
            c = max(c, c_lo)
            return int(math.floor((i_hi - i_lo) / (c_hi - c_lo) * (c - c_lo) + i_lo + 0.5))
    return 300 if pollutant == "o3" else 500


def aqi(concentrations: dict[str, float | None]) -> tuple[int | None, str | None]:
    """(AQI, responsible pollutant) from concentrations in EPA units; (None, None) without data."""
    best: tuple[int | None, str | None] = (None, None)
    for pollutant, c in concentrations.items():
        index = sub_index(pollutant, c)
        if index is not None and (best[0] is None or index > best[0]):
            best = (index, pollutant)
    return best


def category(index: int | None) -> str | None:
    """EPA category name for an AQI value (``good`` ... ``hazardous``)."""
    if index is None:
        return None
    for top, name in CATEGORIES:
        if index <= top:
            return name
    return "hazardous"
