"""KPI values from the database: current value, value per scope, series.

Pure functions of a psycopg connection (any role that can read the tables:
the dashboard's ``citydash_reader`` or the ingest jobs); the only state kept
is a per-database cache of sensor metadata, checked against an md5 of the
``sensors`` table on every :func:`load_registry`.  Every value comes
with ``sensors`` (how many sensors or vehicles contributed), ``expected``
(how many the scope has: registered sensors the formula selects, or
scheduled vehicles) and ``confidence = sensors / expected`` (capped at 1;
None when nothing is expected).

Sources (``source=``):

* ``"rollup"`` (default): ``readings_1m`` / ``readings_1h`` and the
  materialised KPI tables ``kpi_1m`` / ``kpi_1h`` (:mod:`kpis.materialise`);
* ``"raw"``: the same formulas on raw ``readings`` (checks and benchmarks).

Series resolution (``resolution="auto"``): windows up to 2 h are computed
from raw readings in 1-minute buckets, up to 3 days at 1 minute from
rollups, longer ones at 1 hour.  The current value covers the KPI's
``window`` ending now (minute-aligned; hour-aligned and from
``readings_1h`` for windows over 2 h); the AQI uses each pollutant's EPA
averaging period.  Vehicle KPIs read ``vehicle_positions`` (there is no
per-vehicle rollup) unless materialised values exist.  Their expected count
is the planned vehicles of the city pack's GTFS timetable per bucket and route
(:mod:`kpis.schedule`; :func:`planned_vehicles` for the precedence
of the configured ``scheduled_vehicles``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from core.timebuckets import HOUR, MINUTE, ceil_time, floor_time
from kpis import formulas
from kpis.catalogue import Catalogue, Kpi
from kpis.rollup import Relations, relations
from kpis.schedule import Schedule, in_progress, read_schedule

RAW_MAX = timedelta(hours=2)
M1_MAX = timedelta(days=3)
MATERIALISED_SCOPES = ("city", "district", "route")
LAG_LOOKBACK = timedelta(days=1)


@dataclass(frozen=True)
class KpiValue:
    kpi_id: str
    scope_type: str
    scope_id: str  # '' for the city
    value: float | None
    sensors: int
    expected: int
    confidence: float | None
    at: datetime
    source: str  # raw | 1m | 1h


@dataclass
class Registry:
    """What evaluation needs besides readings: sensors, metric ids, rollup relations, KPI state."""

    sensors: pd.DataFrame  # sensor_id, external_id, kind, district_id, attributes
    metric_ids: dict[str, int]
    relations: Relations = field(default_factory=Relations)
    kpi_state: dict[str, tuple[str, datetime | None, datetime | None]] = field(default_factory=dict)
    selections: dict[str, pd.DataFrame] = field(default_factory=dict)  # cache, by KPI id
    expected: dict[tuple[str, str, str], dict[str, int]] = field(default_factory=dict)  # cache
    schedule: Schedule | None = None  # the GTFS timetable (None: the pack has none)


_SENSORS_CACHE: dict[tuple, tuple[str, pd.DataFrame, dict, dict]] = {}
_SCHEDULE_CACHE: dict[tuple, Schedule | None] = {}


def load_registry(conn: psycopg.Connection) -> Registry:
    """Read sensors (those with a kind), metric ids, rollup relations and materialisation state.

    The sensors part (and the per-KPI selections derived from it) is reused
    from the previous call on the same database while an md5 of the sensors'
    id, kind, district and attributes is unchanged (``last_seen`` updates do
    not count).
    """
    fingerprint = conn.execute(
        "SELECT md5(string_agg(concat_ws('|', id, kind, district_id, attributes::text), ',' ORDER BY id)) "
        "FROM sensors WHERE kind IS NOT NULL").fetchone()[0] or ""
    key = (conn.info.host, conn.info.port, conn.info.dbname)
    cached = _SENSORS_CACHE.get(key)
    if cached is not None and cached[0] == fingerprint:
        _, sensors, selections, expected = cached
    else:
        rows = conn.execute("SELECT id, external_id, kind, district_id, attributes FROM sensors "
                            "WHERE kind IS NOT NULL ORDER BY id").fetchall()
        sensors = pd.DataFrame(rows, columns=["sensor_id", "external_id", "kind", "district_id", "attributes"])
        selections, expected = {}, {}
        _SENSORS_CACHE[key] = (fingerprint, sensors, selections, expected)
    metric_ids = dict(conn.execute("SELECT name, id FROM metrics").fetchall())
    state = {r[0]: (r[1], r[2], r[3]) for r in conn.execute(
        "SELECT kpi_id, definition, m1_from, h1_from FROM kpi_state").fetchall()}
    fingerprint = conn.execute("SELECT fingerprint FROM transit_feed").fetchone()
    schedule = _SCHEDULE_CACHE.get(key)
    if (schedule.fingerprint if schedule else None) != (fingerprint[0] if fingerprint else None):
        schedule = _SCHEDULE_CACHE[key] = read_schedule(conn)
    return Registry(sensors, metric_ids, relations(conn), state, selections, expected, schedule)


def resolution_for(start: datetime, end: datetime) -> str:
    """``raw`` up to 2 h, ``1m`` up to 3 days, ``1h`` beyond."""
    span = end - start
    return "raw" if span <= RAW_MAX else "1m" if span <= M1_MAX else "1h"


def _kpi(catalogue: Catalogue, kpi: Kpi | str) -> Kpi:
    return catalogue[kpi] if isinstance(kpi, str) else kpi


def _utc(t: datetime) -> datetime:
    return t.astimezone(timezone.utc) if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _ceil_span(span: timedelta, step: timedelta) -> timedelta:
    return -((-span) // step) * step


# -- sensor selection ---------------------------------------------------------------

def selection(catalogue: Catalogue, kpi: Kpi, registry: Registry) -> pd.DataFrame:
    """Sensors a readings or health KPI reads: ``sensor_id, district_id, road`` + per-sensor parameters.

    Cached in ``registry`` per KPI definition.
    """
    definition = kpi.definition_hash(catalogue)
    cached = registry.selections.get(kpi.id)
    if cached is not None and cached.attrs.get("definition") == definition:
        return cached
    s = registry.sensors
    f = kpi.formula
    if f.source == "readings":
        s = s[s["kind"].isin(f.kinds).to_numpy()]
        s = s[formulas.sensor_passes(f.filters, s["attributes"])]
    road = catalogue.road_attribute
    out = pd.DataFrame({
        "sensor_id": s["sensor_id"].to_numpy(dtype="int64"),
        "district_id": s["district_id"].to_numpy(dtype=object),
        "road": np.array([None if not isinstance(a, dict) or a.get(road) is None else str(a[road])
                          for a in s["attributes"]], dtype=object)})
    if f.source == "readings" and len(s):
        params = formulas.sensor_parameters(f, s[["sensor_id", "attributes"]])
        out = out.merge(params, on="sensor_id", how="left")
        if f.aggregation == "congestion":  # without a free-flow speed a sensor cannot contribute
            out = out[np.isfinite(out["free_flow"].to_numpy(dtype=float))]
    out = out.reset_index(drop=True)
    out.attrs.update(definition=definition, kpi=kpi.id)
    registry.selections[kpi.id] = out
    return out


def _scope_column(sel: pd.DataFrame, scope_type: str) -> np.ndarray:
    if scope_type == "city":
        return np.full(len(sel), "", dtype=object)
    return sel["district_id" if scope_type == "district" else "road"].to_numpy(dtype=object)


def expected_counts(sel: pd.DataFrame, scope_type: str, registry: Registry | None = None) -> dict[str, int]:
    """Sensors per scope id (the denominator of the confidence); cached in ``registry``."""
    key = (sel.attrs.get("kpi", ""), sel.attrs.get("definition", ""), scope_type)
    found = registry.expected.get(key) if registry is not None else None
    if found is None:
        ids = pd.Series(_scope_column(sel, scope_type)).dropna()
        found = ids.value_counts().to_dict() or ({"": 0} if scope_type == "city" else {})
        if registry is not None:
            registry.expected[key] = found
    return found


def _with_scope(frame: pd.DataFrame, sel: pd.DataFrame, scope_type: str) -> pd.DataFrame:
    """Add the sensors' parameters and scope id; rows outside the selection or any scope dropped."""
    pos = pd.Index(sel["sensor_id"].to_numpy()).get_indexer(frame["sensor_id"].to_numpy())
    scope = _scope_column(sel, scope_type)
    keep = pos >= 0
    keep[keep] = pd.notna(scope[pos[keep]])
    out = frame[keep] if not keep.all() else frame
    take = pos[keep]
    columns = {c: out[c].array for c in out.columns}
    columns["scope_id"] = scope[take]
    for column in sel.columns:
        if column not in ("sensor_id", "district_id", "road"):
            columns[column] = sel[column].to_numpy()[take]
    return pd.DataFrame(columns)


# -- fetching -------------------------------------------------------------------------

def _table(registry: Registry, table: str) -> str:
    return {"raw": "readings", "1m": registry.relations.m1, "1h": registry.relations.h1}[table]


def _us(expr) -> sql.Composable:
    """A timestamptz expression as int8 microseconds since the epoch (fast to load)."""
    if isinstance(expr, str):
        expr = sql.SQL(expr)
    return sql.SQL("(extract(epoch FROM {}) * 1000000)::int8").format(expr)


def _query(conn, query, params, columns: dict[str, str]) -> pd.DataFrame:
    """Run ``query``; columns typed ``t`` (epoch microseconds -> UTC time), ``f``, ``i`` or ``o``."""
    with conn.cursor(binary=True) as cur:
        rows = cur.execute(query, params).fetchall()
    data = list(zip(*rows)) if rows else [()] * len(columns)
    out = {}
    for (name, kind), values in zip(columns.items(), data):
        if kind == "t":
            out[name] = pd.to_datetime(np.asarray(values, dtype="int64"), unit="us", utc=True)
        elif kind == "f":
            out[name] = np.asarray(values, dtype=float)
        elif kind == "i":
            out[name] = np.asarray(values, dtype="int64")
        else:
            out[name] = np.asarray(values, dtype=object)
    return pd.DataFrame(out)


_BINARY = {"t": (">i8", "int8send"), "i8": (">i8", "int8send"), "i4": (">i4", "int4send"),
           "i2": (">i2", "int2send"), "f": (">f8", "float8send")}


def _packed_frame(conn, query, params, columns: dict[str, str]) -> pd.DataFrame:
    """Like :func:`_query` for numeric, NOT NULL columns, many rows: fast.

    The server packs every row into one fixed-size binary record and
    concatenates them (``string_agg`` of ``int8send(...) || float8send(...)``);
    numpy reads the single value back, so no Python object is made per row.
    Column kinds: ``t`` (int8 epoch microseconds -> UTC time), ``i8``, ``i4``,
    ``i2``, ``f`` (float8); the query must produce exactly these types.
    """
    names = [sql.Identifier(f"c{i}") for i in range(len(columns))]
    record = sql.SQL(" || ").join(sql.SQL("{}({})").format(sql.SQL(_BINARY[k][1]), n)
                                  for n, k in zip(names, columns.values()))
    packed = sql.SQL("SELECT string_agg({r}, ''::bytea) FROM ({q}) AS rows ({n})").format(
        r=record, q=query, n=sql.SQL(", ").join(names))
    data = conn.execute(packed, params).fetchone()[0] or b""
    rows = np.frombuffer(data, dtype=np.dtype([(name, _BINARY[k][0]) for name, k in columns.items()]))
    out = {}
    for name, kind in columns.items():
        values = rows[name].astype("float64" if kind == "f" else "int64")
        out[name] = pd.to_datetime(values, unit="us", utc=True) if kind == "t" else values
    return pd.DataFrame(out)


def _bucket_expr(width: timedelta | None, native: timedelta | None, tcol: str) -> sql.Composable:
    if width is None:
        return sql.SQL("%(label)s::timestamptz")
    if width == native:
        return sql.Identifier(tcol)
    return sql.SQL("time_bucket(%(width)s, {})").format(sql.Identifier(tcol))


def _fetch_readings(conn, registry: Registry, table: str, metric_names, sensor_ids, start: datetime,
                    end: datetime, width: timedelta | None, label: datetime | None,
                    memo: dict | None = None) -> pd.DataFrame:
    """Long frame ``bucket, sensor_id, metric, sum, count``; one bucket labelled ``label`` when width is None.

    When ``memo`` holds a frame prefetched for the same window (:func:`prefetch_current`),
    the rows are taken from it instead of the database.
    """
    found = memo.get(("readings", table, start, end, width, label)) if memo is not None else None
    if found is not None:
        keep = found["metric"].isin(list(metric_names)).to_numpy() & np.isin(found["sensor_id"].to_numpy(),
                                                                               np.asarray(sensor_ids))
        return found[keep]
    ids = {registry.metric_ids[m]: m for m in metric_names if m in registry.metric_ids}
    if not ids or len(sensor_ids) == 0:
        return _empty({"bucket": "t", "sensor_id": "i", "metric_id": "i", "sum": "f", "count": "f",
                       "metric": "o"})
    raw = table == "raw"
    tcol = "time" if raw else "bucket"
    native = {"1m": MINUTE, "1h": HOUR}.get(table)
    if width is not None and width == native:  # the rollup rows as they are
        select = sql.SQL("SELECT {b}, sensor_id, metric_id, sum, count::float8 FROM {tab} WHERE {w}")
    else:
        select = sql.SQL("SELECT {b}, sensor_id, metric_id, {s}, {c} FROM {tab} WHERE {w} GROUP BY 1, 2, 3")
    # With many sensors, "sensor_id + 0" keeps the planner from probing the (sensor, metric, time)
    # index once per sensor and metric: a time-range scan with a hashed filter is much cheaper.
    # (Typed arrays: an int2[] against int4 would defeat the hashed filter.)
    sid = sql.SQL("sensor_id + 0" if len(sensor_ids) > 100 else "sensor_id")
    where = sql.SQL("metric_id = ANY(%(m)s::int2[]) AND {sid} = ANY(%(s)s::int4[]) "
                    "AND {t} >= %(a)s AND {t} < %(b)s").format(t=sql.Identifier(tcol), sid=sid)
    q = select.format(b=_us(_bucket_expr(width, native, tcol)),
                      s=sql.SQL("sum(value)" if raw else "sum(sum)::float8"),
                      c=sql.SQL("count(*)::float8" if raw else "sum(count)::float8"),
                      tab=sql.Identifier(_table(registry, table)), w=where)
    df = _packed_frame(conn, q, {"m": list(ids), "s": [int(i) for i in sensor_ids], "a": start, "b": end,
                               "width": width, "label": label},
                     {"bucket": "t", "sensor_id": "i4", "metric_id": "i2", "sum": "f", "count": "f"})
    df["metric"] = df["metric_id"].map(ids)
    return df


def _empty(columns: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({name: (pd.to_datetime(np.zeros(0, dtype="int64"), unit="us", utc=True) if k == "t" else
                                np.zeros(0, dtype={"f": float, "i": "int64", "o": object}[k]))
                         for name, k in columns.items()})


def _wide(long: pd.DataFrame) -> pd.DataFrame:
    """Per-sensor means, one column per metric: ``bucket, sensor_id, <metric>...``."""
    if long.empty:
        return pd.DataFrame({"bucket": long["bucket"], "sensor_id": long["sensor_id"]})
    mean = long["sum"].to_numpy(dtype=float) / long["count"].to_numpy(dtype=float)
    metrics = long["metric"].unique()
    if len(metrics) == 1:
        return pd.DataFrame({"bucket": long["bucket"].array, "sensor_id": long["sensor_id"].to_numpy(),
                             metrics[0]: mean})
    frame = pd.DataFrame({"bucket": long["bucket"].array, "sensor_id": long["sensor_id"].to_numpy(),
                          "metric": long["metric"].to_numpy(), "v": mean})
    wide = frame.set_index(["bucket", "sensor_id", "metric"])["v"].unstack("metric")
    wide.columns.name = None
    return wide.reset_index()


# -- per source -------------------------------------------------------------------------

def _current_parts(kpi: Kpi, table: str, now: datetime) -> list[tuple[str, datetime, datetime, list[str]]]:
    """(table, start, end, metrics) fetched for a readings KPI's current value."""
    f = kpi.formula
    if f.aggregation == "aqi":  # each pollutant over its own averaging period
        return [(*_current_window(table, now, timedelta(seconds=spec["window_s"])), [spec["metric"]])
                for spec in f.params["pollutants"].values()]
    return [(*_current_window(table, now, kpi.window), list(f.metrics))]


def _readings_result(conn, catalogue, kpi, registry, table, start, end, width, label, scopes, now, memo):
    f = kpi.formula
    sel = selection(catalogue, kpi, registry)
    if f.aggregation == "aqi" and width is None:
        parts = [_fetch_readings(conn, registry, w_table, metrics, sel["sensor_id"], w_start, w_end, None, label,
                                 memo)
                 for w_table, w_start, w_end, metrics in _current_parts(kpi, table, now)]
        long = pd.concat(parts, ignore_index=True)
    else:
        long = _fetch_readings(conn, registry, table, f.metrics, sel["sensor_id"], start, end, width, label, memo)
    wide = _wide(long)
    out = []
    for scope_type in scopes:
        frame = _with_scope(wide, sel, scope_type)
        res = formulas.reduce_readings(f, frame, catalogue.timezone) if len(frame) else formulas.empty_result()
        out.append(_finish(res, scope_type, expected_counts(sel, scope_type, registry)))
    return out


def planned_vehicles(catalogue: Catalogue, registry: Registry, buckets, width: timedelta,
                     routes_seen) -> pd.DataFrame:
    """Vehicles planned per bucket and route: ``bucket, route, planned`` (UTC bucket starts of ``width``).

    Precedence per route: a route listed in the catalogue's ``scheduled_vehicles.routes`` has
    that constant number; else a route of the pack's GTFS timetable has the vehicles its
    timetable runs in the bucket (:func:`kpis.schedule.in_progress`; 0 outside its
    service); else (a route seen in ``vehicle_positions`` but not in the timetable, or a pack
    without GTFS) ``scheduled_vehicles.default``.  Routes: the listed ones, the timetable's and
    those seen.  The city's planned vehicles are the sum over routes.
    """
    sched = catalogue.scheduled_vehicles
    timetable = registry.schedule
    fixed = {str(r): int(n) for r, n in sched["routes"].items()}
    gtfs_routes = (timetable.routes if timetable else frozenset()) - set(fixed)
    for r in routes_seen:
        if r is not None and str(r) not in fixed and str(r) not in gtfs_routes:
            fixed[str(r)] = int(sched["default"])
    times = pd.DatetimeIndex(pd.to_datetime(pd.Series(list(buckets), dtype=object), utc=True)).as_unit("ns")
    routes, counts = np.asarray(list(fixed), dtype=object), np.asarray(list(fixed.values()), dtype="int64")
    parts = [pd.DataFrame({"bucket": times.repeat(len(fixed)), "route": np.tile(routes, len(times)),
                           "planned": np.tile(counts, len(times))})]
    if gtfs_routes:
        found = in_progress(timetable, catalogue.timezone, times, width)
        found = found[found["route_id"].isin(gtfs_routes)]
        parts.append(pd.DataFrame({"bucket": found["bucket"].dt.as_unit("ns").array,
                                   "route": found["route_id"].to_numpy(dtype=object),
                                   "planned": found["trips"].to_numpy(dtype="int64")}))
    plan = pd.concat(parts, ignore_index=True)
    return plan[plan["planned"] > 0].reset_index(drop=True)


def _vehicles_result(conn, catalogue, kpi, registry, start, end, width, label, scopes, memo):
    maxd = kpi.formula.params.get("max_delay_s", 180.0)
    key = ("vehicles", start, end, width, label, maxd)
    raw = memo.get(key) if memo is not None else None
    if raw is None:
        raw = _fetch_vehicles(conn, start, end, width, label, maxd)
        if memo is not None:
            memo[key] = raw
    grid = [start] if width is None else list(pd.date_range(start, end - width, freq=width))
    plan = planned_vehicles(catalogue, registry, grid, width or (end - start), raw["route"].unique())
    if width is None:  # one bucket over the whole window, labelled like the vehicles'
        plan["bucket"] = pd.Timestamp(label).tz_convert("UTC").as_unit("ns")
    city_plan = plan.groupby("bucket", as_index=False)["planned"].sum().assign(route="")
    by_route = raw[raw["route"].notna()]
    if kpi.formula.aggregation == "in_service":  # vehicles per bucket and route, for both scopes
        counts = by_route.groupby(["bucket", "route"], as_index=False).size().rename(columns={"size": "vehicles"})
    out = []
    for scope_type in scopes:
        if scope_type == "city":  # a vehicle that changed route within a bucket counts once
            frame = raw.drop(columns="route").groupby(["bucket", "vehicle"], as_index=False).sum()
            frame["scope_id"] = ""
        else:
            frame = by_route.rename(columns={"route": "scope_id"})
        scope_plan = city_plan if scope_type == "city" else plan
        if kpi.formula.aggregation == "in_service":
            res = formulas.in_service(counts, plan, city=scope_type == "city")
            if scope_type == "city":  # capped per route; sensors: vehicles, counted once
                seen = frame.groupby("bucket", as_index=False)["vehicle"].nunique()
                res["sensors"] = _lookup(res, pd.DataFrame({"bucket": seen["bucket"], "route": "",
                                                            "planned": seen["vehicle"]}))
        else:
            res = formulas.reduce_vehicles(kpi.formula, frame)
        out.append(_finish(res, scope_type, _lookup(res, scope_plan)))
    return out


def _lookup(res: pd.DataFrame, plan: pd.DataFrame) -> np.ndarray:
    """``plan.planned`` for each (bucket, scope) row of ``res`` (0 where none is planned)."""
    keys = dict(zip(zip(pd.DatetimeIndex(plan["bucket"]).as_unit("ns").asi8.tolist(), plan["route"]),
                    plan["planned"]))
    if not len(res):
        return np.zeros(0, dtype="int64")
    buckets = pd.DatetimeIndex(pd.to_datetime(res["bucket"], utc=True)).as_unit("ns").asi8.tolist()
    return np.fromiter((keys.get(k, 0) for k in zip(buckets, res["scope_id"])), dtype="int64", count=len(res))


def _fetch_vehicles(conn, start, end, width, label, maxd) -> pd.DataFrame:
    bucket = _bucket_expr(width, None, "time")
    q = sql.SQL("""SELECT {b}, route, vehicle, count(delay_s), coalesce(sum(delay_s), 0),
                          count(*) FILTER (WHERE delay_s < %(maxd)s), coalesce(sum(occupancy_pct), 0),
                          count(occupancy_pct)
                     FROM vehicle_positions WHERE time >= %(a)s AND time < %(b)s
                    GROUP BY 1, 2, 3""").format(b=_us(bucket))
    return _query(conn, q, {"width": width, "label": label, "a": start, "b": end, "maxd": maxd},
                  {"bucket": "t", "route": "o", "vehicle": "o", "n_delay": "f", "delay_sum": "f",
                   "n_on_time": "f", "occ_sum": "f", "n_occ": "f"})


def _activity(conn, registry: Registry, table: str, start: datetime, end: datetime, label: datetime,
              memo: dict | None = None) -> pd.DataFrame:
    """Readings per sensor in ``[start, end)``: ``bucket (= label), sensor_id, readings`` (memoised)."""
    key = ("activity", table, start, end, label)
    if memo is not None and key in memo:
        return memo[key]
    raw = table == "raw"
    q = sql.SQL("SELECT {l}, sensor_id, {c} FROM {tab} WHERE {t} >= %(a)s AND {t} < %(b)s GROUP BY 2").format(
        l=_us(sql.SQL("%(label)s::timestamptz")), c=sql.SQL("count(*)::float8" if raw else "sum(count)::float8"),
        tab=sql.Identifier(_table(registry, table)), t=sql.Identifier("time" if raw else "bucket"))
    frame = _packed_frame(conn, q, {"a": start, "b": end, "label": label},
                          {"bucket": "t", "sensor_id": "i4", "readings": "f"})
    if memo is not None:
        memo[key] = frame
    return frame


def _health_result(conn, catalogue, kpi, registry, table, start, end, width, label, scopes, now, memo=None):
    f = kpi.formula
    sel = selection(catalogue, kpi, registry)
    raw = table == "raw"
    tab = sql.Identifier(_table(registry, table))
    tcol = "time" if raw else "bucket"
    t = sql.Identifier(tcol)
    bucket = _bucket_expr(width, {"1m": MINUTE, "1h": HOUR}.get(table), tcol)
    params = {"a": start, "b": end, "width": width, "label": label}
    if f.aggregation == "reporting":
        if width is None:
            frame = _activity(conn, registry, table, start, end, label, memo)[["bucket", "sensor_id"]]
        else:
            q = sql.SQL("SELECT DISTINCT {b}, sensor_id FROM {tab} WHERE {t} >= %(a)s AND {t} < %(b)s").format(
                b=_us(bucket), tab=tab, t=t)
            frame = _packed_frame(conn, q, params, {"bucket": "t", "sensor_id": "i4"})
        grid = [label] if width is None else list(pd.date_range(start, end - width, freq=width))
        out = []
        for scope_type in scopes:
            scoped = _with_scope(frame, sel[["sensor_id", "district_id", "road"]], scope_type)
            expected = expected_counts(sel, scope_type, registry)
            res = formulas.reduce_health(f, scoped, expected)
            res = _fill(res, grid, [s for s, n in expected.items() if n > 0])
            out.append(_finish(res, scope_type, expected))
        return out
    expected = {"": len(sel)}  # lag and dead letters: city only
    if f.aggregation == "lag":
        if width is None:  # newest reading from the raw table (cheap: time index), no rollup delay
            key = ("newest", now)
            if memo is None or key not in memo:
                newest = conn.execute("SELECT max(time) FROM readings WHERE time >= %s",
                                      (now - LAG_LOOKBACK,)).fetchone()[0]
                if memo is not None:
                    memo[key] = newest
            newest = memo[key] if memo is not None else newest
            sensors = len(_activity(conn, registry, table, start, end, label, memo))
            frame = pd.DataFrame({"bucket": [label], "bucket_end": [now], "newest": [newest],
                                  "sensors": [sensors]}).dropna(subset=["newest"])
        else:
            newest = sql.SQL("max(time)" if raw else "max(last_time)")
            q = sql.SQL("SELECT {b}, {n}, count(DISTINCT sensor_id) FROM {tab} WHERE {t} >= %(a)s "
                        "AND {t} < %(b)s GROUP BY 1").format(b=_us(bucket), n=_us(newest), tab=tab, t=t)
            frame = _query(conn, q, params, {"bucket": "t", "newest": "t", "sensors": "i"})
            ends = frame["bucket"] + width
            frame["bucket_end"] = ends.where(ends < pd.Timestamp(now), pd.Timestamp(now))
        res = formulas.reduce_health(f, frame, expected)
        return [_finish(res, "city", expected)]
    if width is None:
        active = _activity(conn, registry, table, start, end, label, memo)
        readings = pd.DataFrame({"bucket": [label], "readings": [float(active["readings"].sum())],
                                 "sensors": [len(active)]})
    else:
        count = sql.SQL("count(*)" if raw else "sum(count)")
        q = sql.SQL("SELECT {b}, {c}, count(DISTINCT sensor_id) FROM {tab} WHERE {t} >= %(a)s AND {t} < %(b)s "
                    "GROUP BY 1").format(b=_us(bucket), c=count, tab=tab, t=t)
        readings = _query(conn, q, params, {"bucket": "t", "readings": "f", "sensors": "i"})
    dq = sql.SQL("SELECT {b}, count(*) FROM dead_letters WHERE received_at >= %(a)s AND received_at < %(b)s "
                 "GROUP BY 1").format(b=_us(_bucket_expr(width, None, "received_at")))
    dead = _query(conn, dq, params, {"bucket": "t", "dead": "f"})
    readings["bucket"] = pd.to_datetime(readings["bucket"], utc=True)
    frame = readings.merge(dead, on="bucket", how="outer").fillna({"readings": 0, "dead": 0, "sensors": 0})
    res = formulas.reduce_health(f, frame, expected)
    res["sensors"] = frame["sensors"].to_numpy(dtype="int64")
    return [_finish(res, "city", expected)]


def _fill(res: pd.DataFrame, grid, scope_ids) -> pd.DataFrame:
    """Add value 0 (nobody reported) for the (bucket, scope) pairs missing from ``res``."""
    if not scope_ids or not len(grid):
        return res
    times = pd.DatetimeIndex(pd.to_datetime(pd.Series(grid), utc=True))
    sids = np.asarray(sorted(scope_ids), dtype=object)
    buckets = times.repeat(len(sids))
    scopes = np.tile(sids, len(times))
    have = dict(zip(zip(pd.DatetimeIndex(res["bucket"]).asi8.tolist(), res["scope_id"]),
                    zip(res["value"], res["sensors"])))
    found = [have.get(k, (0.0, 0)) for k in zip(buckets.asi8.tolist(), scopes)]
    return pd.DataFrame({"bucket": buckets, "scope_id": scopes,
                         "value": np.fromiter((v for v, _ in found), dtype=float, count=len(found)),
                         "sensors": np.fromiter((n for _, n in found), dtype="int64", count=len(found))})


def _finish(res: pd.DataFrame, scope_type: str, expected: dict[str, int] | np.ndarray) -> pd.DataFrame:
    """Add scope type, expected count (per scope id, or one per row) and confidence."""
    n = len(res)
    scope_ids = res["scope_id"].to_numpy(dtype=object)
    exp = expected if isinstance(expected, np.ndarray) else \
        np.fromiter((expected.get(s, 0) for s in scope_ids), dtype="int64", count=n)
    sensors = res["sensors"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        conf = np.where(exp > 0, np.minimum(sensors / np.maximum(exp, 1), 1.0), np.nan)
    bucket = res["bucket"]
    if not isinstance(bucket.dtype, pd.DatetimeTZDtype):
        bucket = pd.to_datetime(bucket, utc=True)
    return pd.DataFrame({"scope_type": np.full(n, scope_type, dtype=object), "bucket": bucket.array,
                         "scope_id": scope_ids, "value": res["value"].to_numpy(dtype=float),
                         "sensors": res["sensors"].to_numpy(dtype="int64"), "expected": exp,
                         "confidence": conf})


def compute(conn: psycopg.Connection, catalogue: Catalogue, kpi: Kpi | str, *, start: datetime,
            end: datetime, width: timedelta | None, table: str = "1m", scopes=("city",),
            registry: Registry | None = None, now: datetime | None = None,
            memo: dict | None = None) -> pd.DataFrame:
    """KPI values computed live over ``[start, end)``.

    ``width``: bucket width, or None for one value over the whole window
    (labelled ``now``).  ``table``: ``raw``, ``1m`` or ``1h`` (readings and
    health KPIs; vehicle KPIs always read ``vehicle_positions``).  Scope types
    the KPI does not declare are skipped.  Returns ``scope_type, bucket,
    scope_id, value, sensors, expected, confidence``.  ``memo``: a dict shared by
    several calls over the same windows (see :func:`prefetch_current`).
    """
    kpi = _kpi(catalogue, kpi)
    registry = registry or load_registry(conn)
    now = _utc(now or datetime.now(timezone.utc))
    start, end = _utc(start), _utc(end)
    scopes = [s for s in scopes if s in kpi.scopes]
    label = now if width is None else None
    source = kpi.formula.source
    if source == "readings":
        parts = _readings_result(conn, catalogue, kpi, registry, table, start, end, width, label, scopes, now, memo)
    elif source == "vehicles":
        parts = _vehicles_result(conn, catalogue, kpi, registry, start, end, width, label, scopes, memo)
    else:
        parts = _health_result(conn, catalogue, kpi, registry, table, start, end, width, label, scopes, now, memo)
    parts = [p for p in parts if len(p)]
    if not parts:
        return _empty({"scope_type": "o", "bucket": "t", "scope_id": "o", "value": "f", "sensors": "i",
                       "expected": "i", "confidence": "f"})
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


# -- public API ---------------------------------------------------------------------------

def _current_window(source_table: str, now: datetime, window: timedelta) -> tuple[str, datetime, datetime]:
    """(table, start, end) of a current-value window ending now."""
    if source_table == "raw":
        end = floor_time(now, MINUTE) + MINUTE
        return "raw", end - window, end
    if window > RAW_MAX:
        end = floor_time(now, HOUR) + HOUR
        return "1h", end - _ceil_span(window, HOUR), end
    end = floor_time(now, MINUTE) + MINUTE
    return "1m", end - _ceil_span(window, MINUTE), end


def current(conn: psycopg.Connection, catalogue: Catalogue, kpi: Kpi | str, *, scopes=("city",),
            now: datetime | None = None, source: str = "rollup",
            registry: Registry | None = None, memo: dict | None = None) -> dict[tuple[str, str], KpiValue]:
    """The KPI over its window ending ``now``, per scope: ``{(scope_type, scope_id): KpiValue}``.

    ``scopes``: scope types (``city``, ``district``, ``road``, ``route``; those
    the KPI does not declare are skipped).  The city is always present, as
    ``("city", "")``, with value None when nothing reported.
    """
    kpi = _kpi(catalogue, kpi)
    now = _utc(now or datetime.now(timezone.utc))
    registry = registry or load_registry(conn)
    table, start, end = _current_window("raw" if source == "raw" else "1m", now, kpi.window)
    frame = compute(conn, catalogue, kpi, start=start, end=end, width=None, table=table, scopes=scopes,
                    registry=registry, now=now, memo=memo)
    out = {}
    for st, sid, value, sensors, expected, conf in zip(
            frame["scope_type"], frame["scope_id"], frame["value"], frame["sensors"], frame["expected"],
            frame["confidence"]):
        out[(st, sid)] = KpiValue(kpi.id, st, sid, None if not np.isfinite(value) else float(value),
                                  int(sensors), int(expected), None if not np.isfinite(conf) else float(conf),
                                  now, table)
    if ("city", "") not in out:
        expected = expected_total(catalogue, kpi, registry, start, end)
        out[("city", "")] = KpiValue(kpi.id, "city", "", None, 0, expected, 0.0 if expected else None,
                                     now, table)
    return out


def expected_total(catalogue: Catalogue, kpi: Kpi, registry: Registry, start: datetime | None = None,
                   end: datetime | None = None) -> int:
    """Sensors (or vehicles planned in ``[start, end)``, see :func:`planned_vehicles`) the KPI expects city-wide."""
    if kpi.formula.source == "vehicles":
        end = end or datetime.now(timezone.utc)
        start = start or end - kpi.window
        plan = planned_vehicles(catalogue, registry, [start], end - start, [])
        return int(plan["planned"].sum())
    return len(selection(catalogue, kpi, registry))


def materialised_usable(catalogue: Catalogue, kpi: Kpi, registry: Registry, resolution: str,
                        scope: str, start: datetime) -> bool:
    """Whether ``kpi_1m`` / ``kpi_1h`` hold this KPI's current definition from ``start`` on."""
    state = registry.kpi_state.get(kpi.id)
    if scope not in MATERIALISED_SCOPES or scope not in kpi.scopes or state is None \
            or resolution not in ("1m", "1h"):
        return False
    definition, m1_from, h1_from = state
    since = m1_from if resolution == "1m" else h1_from
    return definition == kpi.definition_hash(catalogue) and since is not None and start >= since


def series(conn: psycopg.Connection, catalogue: Catalogue, kpi: Kpi | str, start: datetime,
           end: datetime, *, scope: str = "city", scope_id: str | None = None,
           resolution: str = "auto", source: str = "rollup",
           registry: Registry | None = None) -> pd.DataFrame:
    """KPI values per bucket over ``[start, end)`` for one scope type (optionally one scope id).

    Returns ``bucket, scope_id, value, sensors, expected, confidence`` sorted
    by scope and time; ``df.attrs`` holds ``resolution`` (raw, 1m, 1h) and
    ``source`` (the relation read: raw, 1m, 1h, kpi_1m, kpi_1h).
    """
    kpi = _kpi(catalogue, kpi)
    start, end = _utc(start), _utc(end)
    res = resolution_for(start, end) if resolution == "auto" else resolution
    width = HOUR if res == "1h" else MINUTE
    a, b = floor_time(start, width), ceil_time(end, width)
    registry = registry or load_registry(conn)
    if source != "raw" and materialised_usable(catalogue, kpi, registry, res, scope, a):
        frame = read_materialised(conn, [kpi.id], res, scope, a, b, scope_id)
        used = f"kpi_{res}"
    else:
        table = "raw" if source == "raw" or res == "raw" else res
        frame = compute(conn, catalogue, kpi, start=a, end=b, width=width, table=table, scopes=(scope,),
                        registry=registry, now=min(end, datetime.now(timezone.utc)))
        if scope_id is not None:
            frame = frame[frame["scope_id"] == scope_id]
        frame = frame.drop(columns="scope_type").sort_values(["scope_id", "bucket"], kind="stable")
        used = table
    frame = frame.reset_index(drop=True)
    frame.attrs.update(resolution=res, source=used)
    return frame


def read_materialised(conn, kpi_ids: list[str], resolution: str, scope: str, start: datetime,
                      end: datetime, scope_id: str | None = None) -> pd.DataFrame:
    """Materialised values (``kpi_id`` column added when several KPIs are read)."""
    if scope == "city":  # the wall's case: packed binary records, parsed by numpy
        q = sql.SQL("SELECT {b}, array_position(%(k)s::text[], kpi_id)::int4, coalesce(value, 'NaN')::float8, "
                    "sensors, expected FROM {t} WHERE kpi_id = ANY(%(k)s) AND scope_type = 'city' "
                    "AND scope_id = '' AND bucket >= %(a)s AND bucket < %(e)s").format(
            b=_us("bucket"), t=sql.Identifier(f"kpi_{resolution}"))
        frame = _packed_frame(conn, q, {"k": list(kpi_ids), "a": start, "e": end},
                            {"bucket": "t", "kpi": "i4", "value": "f", "sensors": "i4", "expected": "i4"})
        frame = frame.iloc[np.lexsort((frame["bucket"].array.asi8, frame["kpi"].to_numpy()))]
        frame.insert(1, "kpi_id", np.asarray(kpi_ids, dtype=object)[frame.pop("kpi").to_numpy() - 1])
        frame.insert(2, "scope_id", np.full(len(frame), "", dtype=object))
    else:
        frame = _read_materialised_rows(conn, kpi_ids, resolution, scope, start, end, scope_id)
    exp = frame["expected"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["confidence"] = np.where(exp > 0, np.minimum(frame["sensors"].to_numpy(dtype=float) / exp, 1.0),
                                       np.nan)
    return frame.drop(columns="kpi_id") if len(kpi_ids) == 1 else frame


def _read_materialised_rows(conn, kpi_ids, resolution, scope, start, end, scope_id) -> pd.DataFrame:
    q = sql.SQL("SELECT {b}, kpi_id, scope_id, value, sensors, expected FROM {t} WHERE kpi_id = ANY(%(k)s) "
                "AND scope_type = %(s)s AND bucket >= %(a)s AND bucket < %(e)s"
                + (" AND scope_id = %(i)s" if scope_id is not None else "")
                + " ORDER BY kpi_id, scope_id, bucket").format(
        b=_us("bucket"), t=sql.Identifier(f"kpi_{resolution}"))
    return _query(conn, q, {"k": list(kpi_ids), "s": scope, "a": start, "e": end, "i": scope_id},
                  {"bucket": "t", "kpi_id": "o", "scope_id": "o", "value": "f", "sensors": "i", "expected": "i"})


def prefetch_current(conn: psycopg.Connection, catalogue: Catalogue, registry: Registry, now: datetime,
                     source: str = "rollup") -> dict:
    """One query per window for the current values of every readings KPI; pass the result as ``memo``."""
    wanted: dict[tuple, tuple[set, set]] = {}
    base = "raw" if source == "raw" else "1m"
    for kpi in catalogue:
        if kpi.formula.source != "readings":
            continue
        sensors = selection(catalogue, kpi, registry)["sensor_id"]
        for table, start, end, metrics in _current_parts(kpi, base, now):
            m, s = wanted.setdefault((table, start, end), (set(), set()))
            m.update(metrics)
            s.update(int(i) for i in sensors)
    memo: dict = {}
    for kpi in catalogue:
        if kpi.formula.source == "health" and kpi.formula.aggregation in ("reporting", "lag", "dead_letters"):
            _activity(conn, registry, *_current_window(base, now, kpi.window), now, memo)
    for (table, start, end), (metrics, sensors) in wanted.items():
        memo[("readings", table, start, end, None, now)] = _fetch_readings(
            conn, registry, table, sorted(metrics), sorted(sensors), start, end, None, now)
    return memo


@dataclass
class WallEntry:
    kpi: Kpi
    city: KpiValue
    districts: dict[str, KpiValue]
    series: pd.DataFrame


def wall(conn: psycopg.Connection, catalogue: Catalogue, *, now: datetime | None = None,
         hours: int = 24, source: str = "rollup") -> dict[str, WallEntry]:
    """Every KPI: current city value, current value per district (where a scope), city series of ``hours``.

    Materialised series are read in one query for all KPIs.
    """
    now = _utc(now or datetime.now(timezone.utc))
    registry = load_registry(conn)
    start = now - timedelta(hours=hours)
    res = resolution_for(start, now)
    res = "1m" if res == "raw" else res
    width = HOUR if res == "1h" else MINUTE
    a, b = floor_time(start, width), ceil_time(now, width)
    ready = [k.id for k in catalogue if source != "raw"
             and materialised_usable(catalogue, k, registry, res, "city", a)]
    stored = read_materialised(conn, ready + [""], res, "city", a, b) if ready else None
    memo = prefetch_current(conn, catalogue, registry, now, source)
    positions = stored.groupby("kpi_id", sort=False).indices if stored is not None else {}
    out = {}
    for kpi in catalogue:
        scopes = ("city", "district") if "district" in kpi.scopes else ("city",)
        values = current(conn, catalogue, kpi, scopes=scopes, now=now, source=source, registry=registry,
                         memo=memo)
        districts = {sid: v for (st, sid), v in values.items() if st == "district"}
        if kpi.id in ready:
            s = stored.iloc[positions.get(kpi.id, [])].drop(columns="kpi_id").reset_index(drop=True)
            s.attrs.update(resolution=res, source=f"kpi_{res}")
        else:
            s = series(conn, catalogue, kpi, start, now, source=source, registry=registry, resolution=res)
        out[kpi.id] = WallEntry(kpi, values[("city", "")], districts, s)
    return out


def public_values(kpi: Kpi, values: dict[tuple[str, str], KpiValue]) -> dict[tuple[str, str], KpiValue]:
    """The values the public may see: public KPIs, scopes with at least ``min_group`` sensors reporting."""
    if not kpi.public:
        return {}
    return {k: v for k, v in values.items() if v.sensors >= kpi.min_group}
