"""Pure KPI maths on pandas frames; no database, no clock.

Every KPI value is computed per time bucket and scope from *per-sensor
bucket values*: a sensor's mean of a metric over the bucket (rollup ``sum /
count``).  :func:`reduce_readings`, :func:`reduce_vehicles` and
:func:`reduce_health` turn such frames into ``bucket, scope_id, value,
sensors`` (``sensors``: how many sensors or vehicles contributed).  The
formulas are documented one by one in docs/kpis.md.

Frames
------
readings:  ``bucket, scope_id, sensor_id, <metric>...`` (one row per sensor
           and bucket; NaN where the sensor sent no such metric) plus the
           per-sensor columns of :func:`sensor_parameters`.
vehicles:  ``bucket, scope_id, vehicle, n_delay, delay_sum, n_on_time,
           occ_sum, n_occ``.
health:    reporting: ``bucket, scope_id, sensor_id``; lag: ``bucket,
           bucket_end, newest``; dead_letters: ``bucket, dead, readings``.
"""
from __future__ import annotations

import math
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from kpis import aqi

KEYS = ["bucket", "scope_id"]
RESULT = ["bucket", "scope_id", "value", "sensors"]


def empty_result() -> pd.DataFrame:
    return pd.DataFrame({"bucket": pd.Series(dtype="datetime64[us, UTC]"),
                         "scope_id": pd.Series(dtype=object), "value": pd.Series(dtype=float),
                         "sensors": pd.Series(dtype="int64")})


# -- small pure helpers (unit-tested on hand-computed fixtures) ------------------

def weighted_mean(values, weights=None) -> float | None:
    """sum(w * v) / sum(w) over pairs where both are finite and w > 0; None if none."""
    v = np.asarray(values, dtype=float)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=float)
    ok = np.isfinite(v) & np.isfinite(w) & (w > 0)
    return float((v[ok] * w[ok]).sum() / w[ok].sum()) if ok.any() else None


def congestion_index(speeds, free_flows, weights=None, speed_floor: float = 5.0) -> float | None:
    """Extra travel time over free flow, %: 100 * (mean(free_flow / max(speed, floor)) - 1).

    free_flow / speed is actual / free-flow travel time over the same length;
    it is clipped at 1 (faster than free flow is no negative delay).
    """
    s = np.asarray(speeds, dtype=float)
    ff = np.asarray(free_flows, dtype=float)
    ratio = np.maximum(ff / np.maximum(s, speed_floor), 1.0)
    ratio[~(np.isfinite(s) & np.isfinite(ff) & (ff > 0))] = np.nan
    mean = weighted_mean(ratio, weights)
    return None if mean is None else 100.0 * (mean - 1.0)


def share(mask, result: str = "percent") -> float | None:
    """100 * (true / all) or the count of true; None for no elements."""
    m = np.asarray(mask, dtype=bool)
    if m.size == 0:
        return None
    return float(m.sum()) if result == "count" else 100.0 * float(m.mean())


def ratio_percent(numerator, denominator) -> float | None:
    """100 * sum(numerator) / sum(denominator); None when the denominator is 0."""
    den = float(np.nansum(denominator))
    return 100.0 * float(np.nansum(numerator)) / den if den > 0 else None


def robust_z(x: float, history) -> float | None:
    """Robust z-score of ``x`` against ``history``: 0.6745 * (x - median) / MAD.

    Iglewicz & Hoaglin (1993).  When the MAD is 0 the mean absolute deviation
    is used (scaled by 1.2533, so both estimate the standard deviation for
    normal data: z = (x - median) / (1.2533 * meanAD)); when that is 0 too
    the score is undefined (None).  None also for fewer than 3 values.
    """
    h = np.asarray([v for v in history if v is not None and math.isfinite(v)], dtype=float)
    if h.size < 3 or x is None or not math.isfinite(x):
        return None
    median = float(np.median(h))
    mad = float(np.median(np.abs(h - median)))
    if mad > 0:
        return 0.6745 * (x - median) / mad
    mean_ad = float(np.mean(np.abs(h - median)))
    if mean_ad > 0:
        return (x - median) / (1.2533 * mean_ad)
    return None


def limit_values(limit: dict, times: pd.Series, per_sensor: pd.Series | None, tz: str) -> np.ndarray:
    """A threshold per row: constant, per-sensor attribute (else the value), or day/night by local time."""
    n = len(times)
    if "day" in limit:
        local = pd.DatetimeIndex(times).tz_convert(ZoneInfo(tz))
        minutes = np.asarray(local.hour * 60 + local.minute)
        start, end = limit["day_start_min"], limit["night_start_min"]
        is_day = (minutes >= start) & (minutes < end) if start <= end else \
            (minutes >= start) | (minutes < end)
        return np.where(is_day, limit["day"], limit["night"]).astype(float)
    out = np.full(n, float(limit["value"]))
    if per_sensor is not None:
        own = pd.to_numeric(per_sensor, errors="coerce").to_numpy(dtype=float)
        out = np.where(np.isfinite(own), own, out)
    return out


def _attribute(attrs: pd.Series, name: str) -> pd.Series:
    return attrs.map(lambda a: a.get(name) if isinstance(a, dict) else None)


def sensor_parameters(formula, sensors: pd.DataFrame) -> pd.DataFrame:
    """Per-sensor inputs of a readings formula from ``sensors.attributes``.

    ``sensors``: ``sensor_id, attributes`` (dict).  Returns ``sensor_id`` plus
    ``weight``, ``free_flow``, ``limit_<i>`` as the formula needs them.
    """
    out = pd.DataFrame({"sensor_id": sensors["sensor_id"].to_numpy()})
    attrs = sensors["attributes"]
    p = formula.params
    weight = p.get("weight")
    if weight:
        w = pd.to_numeric(_attribute(attrs, weight["attribute"]), errors="coerce")
        out["weight"] = w.fillna(weight["default"]).to_numpy(dtype=float)
    if "free_flow" in p:
        ff = pd.to_numeric(_attribute(attrs, p["free_flow"]["attribute"]), errors="coerce")
        if p["free_flow"].get("default") is not None:
            ff = ff.fillna(p["free_flow"]["default"])
        out["free_flow"] = ff.to_numpy(dtype=float)
    limits = p.get("outside") or ([p[k] for k in ("above", "below") if k in p])
    for i, limit in enumerate(limits):
        if limit.get("attribute"):
            out[f"limit_{i}"] = pd.to_numeric(_attribute(attrs, limit["attribute"]),
                                              errors="coerce").to_numpy(dtype=float)
    return out


def sensor_passes(filters, attributes: pd.Series) -> np.ndarray:
    """Which sensors pass every attribute filter of a formula."""
    ok = np.ones(len(attributes), dtype=bool)
    for f in filters:
        raw = _attribute(attributes, f["attribute"])
        if f["op"] == "in":
            ok &= raw.map(lambda v, allowed=set(f["value"]): v is not None and str(v) in allowed).to_numpy(bool)
        elif f["op"] == "equals":
            ok &= raw.map(lambda v, want=f["value"]: v is not None and str(v) == want).to_numpy(bool)
        else:
            num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
            with np.errstate(invalid="ignore"):
                ok &= (num >= f["value"]) if f["op"] == "gte" else (num <= f["value"])
    return ok


# -- reductions ---------------------------------------------------------------------

def group_keys(buckets, scopes):
    """(group index per row, bucket per group, scope id per group), groups sorted by bucket then scope."""
    b_codes, b_uniq = pd.factorize(buckets, sort=True)
    s_codes, s_uniq = pd.factorize(np.asarray(scopes, dtype=object), sort=True)
    n_scopes = max(len(s_uniq), 1)
    uniq, inverse = np.unique(b_codes.astype(np.int64) * n_scopes + s_codes, return_inverse=True)
    return inverse, b_uniq.take(uniq // n_scopes), np.asarray(s_uniq, dtype=object)[uniq % n_scopes]


def _reduce(frame: pd.DataFrame, valid, num, den=None, scale: float = 1.0, offset: float = 0.0,
            mode: str = "ratio") -> pd.DataFrame:
    """Group rows where ``valid`` by bucket and scope: value = scale * sum(num) / sum(den) + offset."""
    valid = np.asarray(valid, dtype=bool)
    if not valid.any():
        return empty_result()
    inverse, buckets, scopes = group_keys(frame["bucket"].array[valid], frame["scope_id"].to_numpy()[valid])
    n = len(buckets)
    num_sum = np.bincount(inverse, weights=np.asarray(num, dtype=float)[valid], minlength=n)
    sensors = np.bincount(inverse, minlength=n).astype("int64")
    if mode == "sum":
        value = num_sum * scale + offset
    else:
        den_sum = np.bincount(inverse, weights=np.asarray(den, dtype=float)[valid], minlength=n) \
            if den is not None else sensors.astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.where(den_sum > 0, num_sum / den_sum, np.nan) * scale + offset
    return pd.DataFrame({"bucket": buckets, "scope_id": scopes, "value": value.astype(float),
                         "sensors": sensors})


def reduce_readings(formula, frame: pd.DataFrame, tz: str = "UTC") -> pd.DataFrame:
    """KPI value per bucket and scope for a ``readings`` formula."""
    if frame.empty:
        return empty_result()
    agg, p = formula.aggregation, formula.params

    def col(name):
        return frame[name].to_numpy(dtype=float) if name in frame else np.full(len(frame), np.nan)

    if agg == "aqi":
        return reduce_aqi(p["pollutants"], frame)
    if agg == "ratio":
        num = sum(col(m) for m in p["numerator"])
        den = sum(col(m) for m in p["denominator"])
        return _reduce(frame, np.isfinite(num) & np.isfinite(den), num, den, scale=100.0)
    v = col(formula.metrics[0])
    present = np.isfinite(v)
    if agg == "sum":
        return _reduce(frame, present, v, mode="sum")
    if agg == "mean":
        w = col("weight") if "weight" in frame else np.ones(len(frame))
        return _reduce(frame, present & np.isfinite(w) & (w > 0), v * w, w)
    if agg == "congestion":
        ff = col("free_flow")
        w = col("weight") if "weight" in frame else np.ones(len(frame))
        r = np.maximum(ff / np.maximum(v, p["speed_floor_kmh"]), 1.0)
        ok = present & np.isfinite(ff) & (ff > 0) & np.isfinite(w) & (w > 0)
        return _reduce(frame, ok, np.where(ok, r * w, 0.0), w, scale=100.0, offset=-100.0)
    if agg == "share":
        times = frame["bucket"]
        if "outside" in p:
            lo = limit_values(p["outside"][0], times, frame.get("limit_0"), tz)
            hi = limit_values(p["outside"][1], times, frame.get("limit_1"), tz)
            hit = (v < lo) | (v > hi)
        else:
            key = "above" if "above" in p else "below"
            limit = limit_values(p[key], times, frame.get("limit_0"), tz)
            hit = v > limit if key == "above" else v < limit
        if p.get("result") == "count":
            return _reduce(frame, present, hit.astype(float), mode="sum")
        return _reduce(frame, present, hit.astype(float), scale=100.0)
    raise ValueError(f"unknown readings aggregation {agg}")


def reduce_aqi(pollutants: dict, frame: pd.DataFrame) -> pd.DataFrame:
    """AQI per bucket and scope: sub-index of each pollutant's mean over sensors; the highest."""
    metrics = {name: spec["metric"] for name, spec in pollutants.items() if spec["metric"] in frame}
    if not metrics or frame.empty:
        return empty_result()
    columns = {m: frame[m].to_numpy(dtype=float) for m in set(metrics.values())}
    present = np.zeros(len(frame), dtype=bool)
    for v in columns.values():
        present |= np.isfinite(v)
    if not present.any():
        return empty_result()
    inverse, buckets, scopes = group_keys(frame["bucket"].array[present],
                                          frame["scope_id"].to_numpy()[present])
    n = len(buckets)
    means = {}
    for m, v in columns.items():
        v = v[present]
        ok = np.isfinite(v)
        total = np.bincount(inverse[ok], weights=v[ok], minlength=n)
        count = np.bincount(inverse[ok], minlength=n)
        with np.errstate(divide="ignore", invalid="ignore"):
            means[m] = np.where(count > 0, total / count, np.nan)
    values = []
    for i in range(n):
        conc = {name: aqi.to_epa_units(name, float(means[m][i]), pollutants[name]["unit"])
                for name, m in metrics.items() if math.isfinite(means[m][i])}
        index = aqi.aqi(conc)[0]
        values.append(np.nan if index is None else float(index))
    return pd.DataFrame({"bucket": buckets, "scope_id": scopes, "value": np.asarray(values, dtype=float),
                         "sensors": np.bincount(inverse, minlength=n).astype("int64")})


def reduce_vehicles(formula, frame: pd.DataFrame, scheduled: dict[str, int] | None = None) -> pd.DataFrame:
    """KPI value per bucket and scope for a ``vehicles`` formula."""
    if frame.empty:
        return empty_result()
    agg = formula.aggregation
    n_delay = frame["n_delay"].to_numpy(dtype=float)
    if agg == "on_time":
        return _reduce(frame, n_delay > 0, frame["n_on_time"].to_numpy(dtype=float), n_delay, scale=100.0)
    if agg == "mean_delay":
        return _reduce(frame, n_delay > 0, frame["delay_sum"].to_numpy(dtype=float), n_delay, scale=1 / 60)
    if agg == "crowding":
        n_occ = frame["n_occ"].to_numpy(dtype=float)
        return _reduce(frame, n_occ > 0, frame["occ_sum"].to_numpy(dtype=float), n_occ)
    if agg == "in_service":
        counts = _reduce(frame, np.ones(len(frame), bool), np.ones(len(frame)), mode="sum").rename(
            columns={"scope_id": "route", "value": "vehicles"})
        sched = scheduled or {}
        planned = counts[["bucket", "route"]].assign(planned=counts["route"].map(lambda s: sched.get(s, 0)))
        return in_service(counts, planned)
    raise ValueError(f"unknown vehicles aggregation {agg}")


def in_service(counts: pd.DataFrame, planned: pd.DataFrame, city: bool = False) -> pd.DataFrame:
    """Vehicles in service against planned vehicles, each route capped at its plan.

    ``counts``: ``bucket, route, vehicles`` (vehicles that reported); ``planned``: ``bucket,
    route, planned``.  Per route: ``100 · min(vehicles, planned) / planned``; with ``city``:
    ``100 · Σ_r min(vehicles_r, planned_r) / Σ_r planned_r`` per bucket (a late vehicle still
    out after its last planned trip, or an extra one, does not make up for a missing vehicle on
    another route).  ``sensors`` = vehicles.  Every (bucket, route) with vehicles or a plan
    gets a row: 0 % where vehicles were planned and none reported, NaN where none were planned.
    """
    keys = ["bucket", "route"]
    counts = counts[keys + ["vehicles"]].assign(bucket=_ns(counts["bucket"]))
    planned = planned[keys + ["planned"]].assign(bucket=_ns(planned["bucket"]))
    m = counts.merge(planned, on=keys, how="outer").fillna({"vehicles": 0, "planned": 0})
    m = m[(m["vehicles"] > 0) | (m["planned"] > 0)]
    m = m.assign(served=np.minimum(m["vehicles"], m["planned"]))
    if city:
        m = m.groupby("bucket", as_index=False)[["vehicles", "planned", "served"]].sum().assign(route="")
    plan = m["planned"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(plan > 0, 100.0 * m["served"].to_numpy(dtype=float) / plan, np.nan)
    return pd.DataFrame({"bucket": m["bucket"].array, "scope_id": m["route"].to_numpy(dtype=object),
                         "value": value, "sensors": m["vehicles"].to_numpy(dtype="int64")}).reset_index(drop=True)


def _ns(times) -> pd.Series:
    return pd.Series(pd.to_datetime(times, utc=True)).dt.as_unit("ns")


def reduce_health(formula, frame: pd.DataFrame, expected: dict[str, int] | None = None) -> pd.DataFrame:
    """KPI value per bucket (and scope) for a ``health`` formula."""
    if frame.empty:
        return empty_result()
    agg = formula.aggregation
    if agg == "reporting":
        out = _reduce(frame, np.ones(len(frame), bool), np.ones(len(frame)), mode="sum")
        exp = out["scope_id"].map(lambda s: (expected or {}).get(s, 0)).to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["value"] = np.where(exp > 0, np.minimum(100.0 * out["sensors"] / exp, 100.0), np.nan)
        return out
    if agg == "lag":
        lag = (pd.to_datetime(frame["bucket_end"], utc=True) - pd.to_datetime(frame["newest"], utc=True))
        seconds = np.maximum(lag.dt.total_seconds().to_numpy(dtype=float), 0.0)
        return pd.DataFrame({"bucket": frame["bucket"].array, "scope_id": "",
                             "value": seconds, "sensors": frame.get("sensors", 0)})[RESULT]
    if agg == "dead_letters":
        dead = frame["dead"].to_numpy(dtype=float)
        total = dead + frame["readings"].to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.where(total > 0, 100.0 * dead / total, np.nan)
        return pd.DataFrame({"bucket": frame["bucket"].array, "scope_id": "",
                             "value": value, "sensors": 0})[RESULT]
    raise ValueError(f"unknown health aggregation {agg}")
