"""The planner explorer's state and data: pure functions the page, the read API and the tests call.

* :class:`ViewState` is the whole view (layers, window, frame, comparison,
  selection); :func:`parse_state` reads it from URL query parameters (with
  translated problems for bad input) and :func:`encode_state` writes it back,
  so a link reproduces the view.
* :func:`window_for` turns the state into a time window, its resolution (the KPI
  engine's choice: raw up to 2 h, 1 minute up to 3 days, 1 hour beyond) and
  its replay frames.
* The data functions take a psycopg connection (role ``citydash_reader``) and
  reuse the KPI engine (:mod:`kpis.evaluate`) for every KPI value.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Iterator
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import psycopg
import psycopg.sql

from kpis import evaluate
from kpis.catalogue import Catalogue, Kpi
from core.timebuckets import HOUR, MINUTE, ceil_time, floor_time

RANGES = {"1h": timedelta(hours=1), "6h": timedelta(hours=6), "24h": timedelta(hours=24),
          "7d": timedelta(days=7), "30d": timedelta(days=30), "90d": timedelta(days=90)}
CUSTOM = "custom"
MAX_SPAN = timedelta(days=92)
CORE_LAYERS = ("districts", "roads", "transit", "vehicles", "sensors")
COMPARES = ("none", "prev_week", "last_year", "custom")
SPEEDS = (1, 2, 4, 8)
SCOPES = ("district", "road", "route", "sensor")
LOCAL_FORMAT = "%Y-%m-%dT%H:%M"
VEHICLE_LOOKBACK = timedelta(minutes=5)
DEFAULT_LAYERS = ("districts",)
DEFAULT_RANGE = "24h"


@dataclass(frozen=True)
class ViewState:
    layers: tuple[str, ...] = DEFAULT_LAYERS
    kpi: str = ""               # district choropleth KPI ('' = first with a district scope)
    road: str = ""              # road KPI ('' = first with a road scope)
    kinds: tuple[str, ...] = ()  # sensor kinds shown (empty: all)
    range: str = DEFAULT_RANGE
    start: datetime | None = None  # custom window, UTC
    end: datetime | None = None
    t: datetime | None = None      # replay frame (bucket start, UTC); None: the newest
    speed: int = 1
    compare: str = "none"
    compare_start: datetime | None = None  # custom comparison: start of the other period, UTC
    selection: tuple[str, str] | None = None  # (district|road|route|sensor, id)


@dataclass(frozen=True)
class Problem:
    """A bad URL value: a message id of ``dashboard/locales/explore`` and its placeholders."""

    key: str
    values: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    resolution: str  # raw | 1m | 1h
    width: timedelta

    @property
    def frames(self) -> int:
        return max(1, int((self.end - self.start) / self.width))

    def frame_time(self, index: int) -> datetime:
        return self.start + self.width * min(max(int(index), 0), self.frames - 1)

    def frame_index(self, t: datetime | None) -> int:
        if t is None:
            return self.frames - 1
        return min(max(int((t - self.start) / self.width), 0), self.frames - 1)


# -- URL state --------------------------------------------------------------------------

def kpis_for_scope(catalogue: Catalogue, scope: str) -> list[Kpi]:
    return [k for k in catalogue if scope in k.scopes]


def district_kpis(catalogue: Catalogue) -> list[Kpi]:
    return kpis_for_scope(catalogue, "district")


def road_kpis(catalogue: Catalogue) -> list[Kpi]:
    return kpis_for_scope(catalogue, "road")


def _local(text: str, tz: str) -> datetime:
    value = datetime.strptime(text.strip(), LOCAL_FORMAT)
    return value.replace(tzinfo=ZoneInfo(tz)).astimezone(timezone.utc)


def local_text(value: datetime | None, tz: str) -> str:
    """A UTC time as the city's local ``YYYY-MM-DDTHH:MM`` (what URLs and the custom inputs hold)."""
    return "" if value is None else value.astimezone(ZoneInfo(tz)).strftime(LOCAL_FORMAT)


def _utc_text(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def _parse_utc(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.strip() for p in (text or "").split(",") if p.strip()))


def parse_state(query: dict, catalogue: Catalogue, tz: str, extra_layers=()) -> tuple[ViewState, list[Problem]]:
    """The view described by URL query parameters; unknown or bad values fall back to defaults
    and are reported as problems (shown translated on the page, 400 from the API)."""
    q = {k: (v[0] if isinstance(v, list) and v else v) for k, v in query.items() if v not in (None, "", [])}
    problems: list[Problem] = []
    known_layers = set(CORE_LAYERS) | {f"extra:{n}" for n in extra_layers}
    layers = _names(q.get("layers")) if "layers" in q else DEFAULT_LAYERS
    if "layers" in q and q["layers"] == "-":
        layers = ()
    for name in layers:
        if name not in known_layers and name != "-":
            problems.append(Problem("explore.problem.layer", {"value": name}))
    layers = tuple(n for n in layers if n in known_layers)

    def kpi_param(name: str, allowed: list[Kpi]) -> str:
        value = q.get(name, "")
        if value and value not in {k.id for k in allowed}:
            problems.append(Problem("explore.problem.kpi", {"value": value}))
            return ""
        return value

    kpi = kpi_param("kpi", district_kpis(catalogue))
    road = kpi_param("road", road_kpis(catalogue))
    kinds = _names(q.get("kinds"))
    rng = q.get("range", DEFAULT_RANGE)
    start = end = None
    if rng == CUSTOM:
        try:
            start, end = _local(q.get("from", ""), tz), _local(q.get("to", ""), tz)
            if end <= start:
                problems.append(Problem("explore.problem.order"))
                rng, start, end = DEFAULT_RANGE, None, None
            elif end - start > MAX_SPAN:
                problems.append(Problem("explore.problem.span", {"days": MAX_SPAN.days}))
                rng, start, end = DEFAULT_RANGE, None, None
        except ValueError:
            problems.append(Problem("explore.problem.date", {"value": q.get("from", "") or q.get("to", "")}))
            rng, start, end = DEFAULT_RANGE, None, None
    elif rng not in RANGES:
        problems.append(Problem("explore.problem.range", {"value": rng}))
        rng = DEFAULT_RANGE
    t = None
    if q.get("t"):
        try:
            t = _parse_utc(q["t"])
        except ValueError:
            problems.append(Problem("explore.problem.date", {"value": q["t"]}))
    try:
        speed = int(q.get("speed", 1))
        if speed not in SPEEDS:
            raise ValueError
    except ValueError:
        problems.append(Problem("explore.problem.speed", {"value": q.get("speed")}))
        speed = 1
    compare = q.get("cmp", "none")
    compare_start = None
    if compare not in COMPARES:
        problems.append(Problem("explore.problem.compare", {"value": compare}))
        compare = "none"
    if compare == "custom":
        try:
            compare_start = _local(q.get("cfrom", ""), tz)
        except ValueError:
            problems.append(Problem("explore.problem.date", {"value": q.get("cfrom", "")}))
            compare = "none"
    selection = None
    if q.get("sel"):
        kind, _, ident = q["sel"].partition(":")
        if kind in SCOPES and ident:
            selection = (kind, ident)
        else:
            problems.append(Problem("explore.problem.selection", {"value": q["sel"]}))
    return ViewState(layers, kpi, road, kinds, rng, start, end, t, speed, compare, compare_start,
                     selection), problems


def encode_state(state: ViewState, tz: str, lang: str | None = None) -> str:
    """The URL query (with ``?``) of ``state``; defaults are left out."""
    q: dict[str, str] = {}
    if state.layers != DEFAULT_LAYERS:
        q["layers"] = ",".join(state.layers) or "-"
    if state.kpi:
        q["kpi"] = state.kpi
    if state.road:
        q["road"] = state.road
    if state.kinds:
        q["kinds"] = ",".join(state.kinds)
    if state.range != DEFAULT_RANGE:
        q["range"] = state.range
    if state.range == CUSTOM:
        q["from"], q["to"] = local_text(state.start, tz), local_text(state.end, tz)
    if state.t is not None:
        q["t"] = _utc_text(state.t)
    if state.speed != 1:
        q["speed"] = str(state.speed)
    if state.compare != "none":
        q["cmp"] = state.compare
    if state.compare == "custom" and state.compare_start is not None:
        q["cfrom"] = local_text(state.compare_start, tz)
    if state.selection:
        q["sel"] = f"{state.selection[0]}:{state.selection[1]}"
    if lang:
        q["lang"] = lang
    return "?" + urlencode(q, safe=",:-") if q else ""


def resolved(state: ViewState, catalogue: Catalogue) -> ViewState:
    """``state`` with the default KPIs filled in."""
    kpi = state.kpi or next((k.id for k in district_kpis(catalogue)), "")
    road = state.road or next((k.id for k in road_kpis(catalogue)), "")
    return replace(state, kpi=kpi, road=road)


def window_for(state: ViewState, now: datetime) -> Window:
    """The time window of the view, its resolution and bucket width."""
    if state.range == CUSTOM and state.start and state.end:
        start, end = state.start, state.end
        resolution = evaluate.resolution_for(start, end)
        width = HOUR if resolution == "1h" else MINUTE
        return Window(floor_time(start, width), ceil_time(end, width), resolution, width)
    span = RANGES.get(state.range, RANGES[DEFAULT_RANGE])
    resolution = evaluate.resolution_for(now - span, now)
    width = HOUR if resolution == "1h" else MINUTE
    end = floor_time(now, width)  # the newest frame is the newest complete bucket
    return Window(end - span, end, resolution, width)


WIDTHS = {"raw": MINUTE, "1m": MINUTE, "1h": HOUR}
_RANK = {"raw": 0, "1m": 1, "1h": 2}
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)


def window_from_data(data, now: datetime) -> Window | None:
    """The window a browser sends back (the ``explore-window`` store), or None unless it is one
    :func:`window_for` could have made: aware ISO times aligned to the bucket width, start before
    end, at most :data:`MAX_SPAN` (+ one bucket), not in the future, and no finer a resolution than
    the API's rule (:func:`kpis.evaluate.resolution_for`) gives for its span."""
    if not isinstance(data, dict):
        return None
    start, end, resolution, width_s = (data.get(k) for k in ("start", "end", "resolution", "width_s"))
    if not isinstance(resolution, str) or resolution not in WIDTHS or not isinstance(width_s, int) \
            or isinstance(width_s, bool):
        return None
    width = WIDTHS[resolution]
    if width_s != width.total_seconds() or not isinstance(start, str) or not isinstance(end, str) \
            or len(start) > 40 or len(end) > 40:
        return None
    try:
        start, end = datetime.fromisoformat(start), datetime.fromisoformat(end)
    except ValueError:
        return None
    if start.tzinfo is None or end.tzinfo is None:
        return None
    if not (EARLIEST <= start < end <= now + width) or end - start > MAX_SPAN + width:
        return None
    if floor_time(start, width) != start or floor_time(end, width) != end:
        return None
    # window_for widens a custom range to whole buckets: judge the span without that widening
    inner = max(end - start - 2 * width, timedelta(0))
    if _RANK[resolution] < _RANK[evaluate.resolution_for(start, start + inner)]:
        return None
    return Window(start, end, resolution, width)


def compare_offset(state: ViewState, window: Window) -> timedelta | None:
    """How far back the comparison period is (None: no comparison)."""
    if state.compare == "prev_week":
        return timedelta(days=7)
    if state.compare == "last_year":
        return timedelta(days=364)  # same weekday, 52 weeks back
    if state.compare == "custom" and state.compare_start is not None:
        return window.start - floor_time(state.compare_start, window.width)
    return None


# -- KPI values per scope -------------------------------------------------------------------

VALUE_COLUMNS = ["scope_id", "value", "sensors", "expected", "confidence"]


def scope_values(conn: psycopg.Connection, catalogue: Catalogue, kpi: str, scope: str, at: datetime,
                 window: Window, registry: evaluate.Registry | None = None,
                 scope_id: str | None = None) -> pd.DataFrame:
    """One frame of a KPI per scope id (or for ``scope_id`` only): the bucket ``[at, at + width)`` at
    the window's resolution."""
    if kpi not in catalogue.kpis or scope not in catalogue[kpi].scopes:
        return pd.DataFrame({c: [] for c in VALUE_COLUMNS})
    frame = evaluate.series(conn, catalogue, kpi, at, at + window.width, scope=scope, scope_id=scope_id,
                            resolution=window.resolution, registry=registry)
    frame = frame[frame["bucket"] == pd.Timestamp(at)] if len(frame) else frame
    return frame[VALUE_COLUMNS].reset_index(drop=True)


def difference(now: pd.DataFrame, then: pd.DataFrame) -> pd.DataFrame:
    """``value`` now minus then per scope id (``then`` and ``delta`` columns added)."""
    merged = now.merge(then[["scope_id", "value"]].rename(columns={"value": "then"}), on="scope_id", how="left")
    merged["delta"] = merged["value"] - merged["then"]
    return merged


def series_for(conn, catalogue: Catalogue, kpi: str, scope: str, scope_id: str | None, window: Window,
               registry: evaluate.Registry | None = None) -> pd.DataFrame:
    """The KPI over the window at the window's resolution (``bucket, scope_id, value, ...``)."""
    if kpi not in catalogue.kpis:
        raise KeyError(kpi)
    if scope not in catalogue[kpi].scopes:
        return pd.DataFrame({c: [] for c in ["bucket", *VALUE_COLUMNS]})
    return evaluate.series(conn, catalogue, kpi, window.start, window.end, scope=scope,
                           scope_id=None if scope == "city" else scope_id, resolution=window.resolution,
                           registry=registry)


def completeness(series: pd.DataFrame, window: Window) -> tuple[float, float | None]:
    """(share of buckets with a value, mean confidence of those buckets)."""
    if not len(series):
        return 0.0, None
    have = series[np.isfinite(series["value"].to_numpy(dtype=float))]
    share = min(len(have["bucket"].unique()) / window.frames, 1.0)
    conf = have["confidence"].to_numpy(dtype=float)
    conf = conf[np.isfinite(conf)]
    return share, (float(conf.mean()) if len(conf) else None)


# -- map layers -----------------------------------------------------------------------------

def sensors(conn, kinds: tuple[str, ...] = ()) -> pd.DataFrame:
    """Placed sensors with a kind: ``sensor_id, external_id, kind, name, lon, lat, district_id, last_seen``."""
    rows = conn.execute(
        "SELECT id, external_id, kind, coalesce(name, external_id), lon, lat, district_id, last_seen "
        "FROM sensors WHERE placed AND kind IS NOT NULL AND (cardinality(%s::text[]) = 0 OR kind = ANY(%s::text[])) "
        "ORDER BY id", (list(kinds), list(kinds))).fetchall()
    return pd.DataFrame(rows, columns=["sensor_id", "external_id", "kind", "name", "lon", "lat", "district_id",
                                       "last_seen"])


def sensor_kinds(conn) -> list[str]:
    return [r[0] for r in conn.execute("SELECT DISTINCT kind FROM sensors WHERE kind IS NOT NULL ORDER BY 1")]


def sensor_health(conn, at: datetime, window: Window, kinds: tuple[str, ...] = ()) -> pd.DataFrame:
    """Sensors with their health in the frame: ``status`` is ``alert`` (a live health alert),
    ``reporting`` (readings in the frame's bucket) or ``silent``; ``readings`` counted in the bucket."""
    frame = sensors(conn, kinds)
    table, col = {"raw": ("readings", "time"), "1m": ("readings_1m", "bucket"),
                  "1h": ("readings_1h", "bucket")}[window.resolution]
    count = "count(*)" if table == "readings" else "sum(count)"
    active = dict(conn.execute(
        f"SELECT sensor_id, {count} FROM {table} WHERE {col} >= %s AND {col} < %s GROUP BY 1",  # noqa: S608
        (at, at + window.width)).fetchall())
    alerted = {r[0] for r in conn.execute(
        "SELECT DISTINCT scope_id FROM alerts WHERE kind = 'health' AND scope_type = 'sensor' "
        "AND opened_at < %s AND coalesce(resolved_at, 'infinity') >= %s", (at + window.width, at))}
    readings = np.fromiter((active.get(int(s), 0) for s in frame["sensor_id"]), dtype="int64", count=len(frame))
    status = np.where(frame["external_id"].isin(alerted).to_numpy(), "alert",
                      np.where(readings > 0, "reporting", "silent"))
    frame["readings"] = readings
    frame["status"] = status
    return frame


def cluster(points: pd.DataFrame, max_points: int, bbox: tuple[float, float, float, float]) -> pd.DataFrame:
    """At most ``max_points`` markers: beyond that, sensors are aggregated on a server-side grid.

    Returns ``lon, lat, count, status`` (the worst status of the cell: alert > silent > reporting)
    plus ``external_id`` ('' for a cluster)."""
    if len(points) <= max_points:
        out = points[["lon", "lat", "status", "external_id"]].copy()
        out["count"] = 1
        return out
    cells = int(np.floor(np.sqrt(max_points)))
    x0, y0, x1, y1 = bbox
    ix = np.clip(((points["lon"].to_numpy() - x0) / max(x1 - x0, 1e-9) * cells).astype(int), 0, cells - 1)
    iy = np.clip(((points["lat"].to_numpy() - y0) / max(y1 - y0, 1e-9) * cells).astype(int), 0, cells - 1)
    rank = points["status"].map({"reporting": 0, "silent": 1, "alert": 2}).to_numpy()
    grid = pd.DataFrame({"cell": ix * cells + iy, "lon": points["lon"].to_numpy(),
                         "lat": points["lat"].to_numpy(), "rank": rank,
                         "external_id": points["external_id"].to_numpy()})
    agg = grid.groupby("cell").agg(lon=("lon", "mean"), lat=("lat", "mean"), count=("lon", "size"),
                                   rank=("rank", "max"), external_id=("external_id", "first"))
    agg["status"] = np.array(["reporting", "silent", "alert"])[agg["rank"].to_numpy()]
    agg.loc[agg["count"] > 1, "external_id"] = ""
    return agg[["lon", "lat", "status", "external_id", "count"]].reset_index(drop=True)


def vehicles_at(conn, at: datetime, window: Window) -> pd.DataFrame:
    """The newest position of each vehicle up to the end of the frame (at most 5 minutes old)."""
    end = at + window.width
    rows = conn.execute(
        "SELECT DISTINCT ON (vehicle) vehicle, route, lon, lat, delay_s, occupancy_pct, time "
        "FROM vehicle_positions WHERE time >= %s AND time < %s ORDER BY vehicle, time DESC",
        (end - max(VEHICLE_LOOKBACK, window.width), end)).fetchall()
    return pd.DataFrame(rows, columns=["vehicle", "route", "lon", "lat", "delay_s", "occupancy_pct", "time"])


# -- drill-down -----------------------------------------------------------------------------

def recent_alerts(conn, scope_type: str, scope_id: str, limit: int = 10) -> list[dict]:
    rows = conn.execute(
        "SELECT id, kind, kpi_id, severity, state, value, threshold, opened_at, resolved_at FROM alerts "
        "WHERE scope_type = %s AND scope_id = %s ORDER BY opened_at DESC, id DESC LIMIT %s",
        (scope_type, scope_id, limit)).fetchall()
    keys = ["id", "kind", "kpi_id", "severity", "state", "value", "threshold", "opened_at", "resolved_at"]
    return [dict(zip(keys, r)) for r in rows]


def sensor_info(conn, external_id: str) -> dict | None:
    row = conn.execute(
        "SELECT id, external_id, kind, coalesce(name, external_id), district_id, lon, lat, first_seen, last_seen, "
        "attributes FROM sensors WHERE external_id = %s", (external_id,)).fetchone()
    if row is None:
        return None
    return dict(zip(["sensor_id", "external_id", "kind", "name", "district_id", "lon", "lat", "first_seen",
                     "last_seen", "attributes"], row))


def sensor_series(conn, sensor_id: int, window: Window) -> pd.DataFrame:
    """The sensor's readings over the window at the window's resolution: ``bucket, metric, value, count``
    (raw readings as they are; rollups as per-bucket means)."""
    if window.resolution == "raw":
        q = ("SELECT r.time, m.name, r.value, 1 FROM readings r JOIN metrics m ON m.id = r.metric_id "
             "WHERE r.sensor_id = %s AND r.time >= %s AND r.time < %s ORDER BY m.name, r.time")
    else:
        table = "readings_1m" if window.resolution == "1m" else "readings_1h"
        q = (f"SELECT r.bucket, m.name, r.sum / r.count, r.count FROM {table} r "  # noqa: S608
             "JOIN metrics m ON m.id = r.metric_id WHERE r.sensor_id = %s AND r.bucket >= %s AND r.bucket < %s "
             "ORDER BY m.name, r.bucket")
    rows = conn.execute(q, (sensor_id, window.start, window.end)).fetchall()
    return pd.DataFrame(rows, columns=["bucket", "metric", "value", "count"])


def sensor_completeness(series: pd.DataFrame, window: Window) -> float:
    """Share of the window's buckets in which the sensor reported at least once."""
    if not len(series):
        return 0.0
    buckets = pd.to_datetime(series["bucket"], utc=True)
    if window.resolution == "raw":
        buckets = buckets.dt.floor("min")
    return min(buckets.nunique() / window.frames, 1.0)


def latest_readings(conn, sensor_id: int, end: datetime, limit: int = 20) -> list[tuple]:
    """The sensor's newest raw readings before ``end``: (time, metric, value)."""
    return conn.execute(
        "SELECT r.time, m.name, r.value FROM readings r JOIN metrics m ON m.id = r.metric_id "
        "WHERE r.sensor_id = %s AND r.time < %s ORDER BY r.time DESC, m.name LIMIT %s",
        (sensor_id, end, limit)).fetchall()


def dead_letters_for(conn, external_id: str, limit: int = 10) -> list[dict]:
    """Dead letters whose topic ends with the sensor id or whose payload names it (last 30 days)."""
    rows = conn.execute(
        "SELECT id, received_at, topic, decoder, reason, payload_size FROM dead_letters "
        "WHERE received_at > now() - interval '30 days' AND (right(topic, %s) = %s "
        "OR position(convert_to(%s, 'UTF8') IN coalesce(payload, ''::bytea)) > 0) "
        "ORDER BY received_at DESC, id DESC LIMIT %s",
        (len(external_id) + 1, "/" + external_id, f'"{external_id}"', limit)).fetchall()
    return [dict(zip(["id", "received_at", "topic", "decoder", "reason", "payload_size"], r)) for r in rows]


def district_names(conn) -> dict[str, str]:
    return dict(conn.execute("SELECT id, name FROM districts").fetchall())


# -- exports ----------------------------------------------------------------------------------

def float_text(column: str) -> str:
    """SQL text of a float8 column as Python (and so ``pandas.to_csv``) writes it: the shortest
    round-trip digits, ``1.0`` rather than PostgreSQL's ``1``, positional notation below 1e16,
    ``inf``; NULL (an empty CSV cell) for NULL and NaN.  Integer-valued numbers of 1e16 and more may
    get a 17th digit where Python finds 16 (the same double: it reads back equal)."""
    x = column
    return (f"CASE WHEN {x} IS NULL OR {x} = 'NaN' THEN NULL WHEN {x} = 'Infinity' THEN 'inf' "
            f"WHEN {x} = '-Infinity' THEN '-inf' WHEN {x} = 0 THEN {x}::text || '.0' "
            f"WHEN {x} = trunc({x}) AND abs({x}) < 1e16 THEN {x}::int8::text || '.0' "
            f"WHEN abs({x}) >= 1e15 AND abs({x}) < 1e16 THEN regexp_replace(replace(split_part({x}::text, 'e', 1), "
            f"'.', ''), '^(-?[0-9]{{16}})', '\\1.') ELSE {x}::text END")


def materialised_series_csv(conn: psycopg.Connection, kpi: str, resolution: str, scope: str, start: datetime,
                            end: datetime, scope_id: str | None = None, chunk: int = 1 << 16) -> Iterator[bytes]:
    """CSV (``bucket, scope_id, value, sensors, expected, confidence``) of a KPI's materialised series,
    formatted by PostgreSQL (``COPY ... TO STDOUT``) and streamed in chunks of about ``chunk`` bytes.

    The same text as :func:`dashboard.api.writers.frame_csv_chunks` of
    :func:`kpis.evaluate.read_materialised` (same rows, order, times, float digits), without
    a Python object per row; a ``scope_id`` a spreadsheet would run as a formula gets a leading
    ``'`` (:func:`dashboard.api.writers.csv_text`).  The caller checks :func:`kpis.evaluate.materialised_usable`."""
    table = {"1m": "kpi_1m", "1h": "kpi_1h"}[resolution]
    query = psycopg.sql.SQL(
        "COPY (SELECT to_char(bucket AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS bucket, "
        "CASE WHEN left(scope_id, 1) IN ('=', '+', '-', '@', chr(9), chr(13)) THEN '''' || scope_id "
        "ELSE nullif(scope_id, '') END AS scope_id, {value} AS value, sensors, expected, {conf} AS confidence "
        "FROM (SELECT bucket, scope_id, value, sensors, expected, CASE WHEN expected > 0 "
        "THEN least(sensors::float8 / expected, 1.0) END AS c FROM {table} WHERE kpi_id = {kpi} "
        "AND scope_type = {scope} AND bucket >= {a} AND bucket < {b}{one}) AS m "
        "ORDER BY m.scope_id, m.bucket) TO STDOUT (FORMAT csv, HEADER)").format(
        value=psycopg.sql.SQL(float_text("value")), conf=psycopg.sql.SQL(float_text("c")),
        table=psycopg.sql.Identifier(table), kpi=kpi, scope=scope, a=start, b=end,
        one=psycopg.sql.SQL("") if scope_id is None else psycopg.sql.SQL(" AND scope_id = {}").format(scope_id))
    buf = bytearray()
    with conn.cursor().copy(query) as copy:
        for data in copy:
            buf += data
            if len(buf) >= chunk:
                yield bytes(buf)
                buf.clear()
    yield bytes(buf)


def iter_readings(conn: psycopg.Connection, sensor_ids: list[int], start: datetime, end: datetime,
                  batch: int = 5000) -> Iterator[tuple]:
    """Raw readings ``(time, sensor external id, metric, value)`` through a server-side cursor.

    ``conn`` must not be in autocommit mode for the cursor's lifetime: the caller
    wraps the iteration in ``conn.transaction()``."""
    with conn.cursor(name="citydash_export") as cur:
        cur.itersize = batch
        cur.execute(
            "SELECT r.time, s.external_id, m.name, r.value FROM readings r JOIN sensors s ON s.id = r.sensor_id "
            "JOIN metrics m ON m.id = r.metric_id WHERE r.sensor_id = ANY(%s) AND r.time >= %s AND r.time < %s "
            "ORDER BY r.time, s.external_id, m.name", (sensor_ids, start, end))
        yield from cur
