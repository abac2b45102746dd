"""GTFS static feeds: routes, one line per route shape, and stops, in EPSG:4326.

Reads a ``.zip`` (also with the files in one sub-folder) or a folder, and
tolerates what real feeds do: a UTF-8 BOM, CRLF line endings, no trailing
newline, header-only or missing ``shapes.txt``, blank optional columns and
spaces after commas.  When a route has no usable shape its line is built from
the stop sequence of its most common trip pattern.

Problems name the file inside the feed (``gtfs/stops.txt row 4: ...``); rows
are 1-based data rows (the header is not counted).  Row-level reports are
capped at :data:`MAX_ROW_PROBLEMS` per file and reason, with a count of the rest.
"""
from __future__ import annotations

import io
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from layers.problems import ProblemLog
from layers.tables import with_none
from layers.vector import WGS84, LayerReport, total_bounds

REQUIRED = ("stops.txt", "routes.txt", "trips.txt", "stop_times.txt")
MAX_ROW_PROBLEMS = 20
ROUTE_COLUMNS = ["route_id", "agency_id", "short_name", "long_name", "type", "mode", "colour",
                 "text_colour", "trips"]
LINE_COLUMNS = ["route_id", "shape_id", "source", "short_name", "long_name", "type", "mode", "colour",
                "geometry"]
STOP_COLUMNS = ["stop_id", "name", "code", "location_type", "parent_station", "route_ids", "geometry"]
_BASIC_MODES = {0: "tram", 1: "subway", 2: "rail", 3: "bus", 4: "ferry", 5: "cable_tram",
                6: "aerial_lift", 7: "funicular", 11: "trolleybus", 12: "monorail"}
_EXTENDED_MODES = [(100, "rail"), (200, "coach"), (400, "subway"), (700, "bus"), (800, "trolleybus"),
                   (900, "tram"), (1000, "ferry"), (1100, "air"), (1200, "ferry"), (1300, "aerial_lift"),
                   (1400, "funicular"), (1500, "taxi"), (1700, "other"), (1800, None)]
RAIL_MODES = ("tram", "subway", "rail", "monorail", "funicular", "cable_tram")


def route_mode(route_type: int) -> str | None:
    """GTFS ``route_type`` (basic or extended) -> ``"bus"``, ``"tram"``, ``"rail"``, ...; None if unknown."""
    if route_type in _BASIC_MODES:
        return _BASIC_MODES[route_type]
    for (low, mode), (high, _) in zip(_EXTENDED_MODES, _EXTENDED_MODES[1:]):
        if low <= route_type < high:
            return mode
    return None


TRIP_COLUMNS = ["trip_id", "route_id", "service_id", "direction_id", "shape_id", "headsign"]
STOP_TIME_COLUMNS = ["trip_id", "stop_id", "seq", "arrival_s", "departure_s"]


@dataclass(slots=True)
class Transit:
    """A GTFS feed, checked; geometries in EPSG:4326.

    * ``routes``: :data:`ROUTE_COLUMNS` (``mode`` from :func:`route_mode`, ``trips`` = trip count)
    * ``lines``: one LineString per route and shape (``source`` ``shapes`` or ``stops``)
    * ``stops``: points with the ``route_ids`` serving them
    * ``trips``: :data:`TRIP_COLUMNS`; ``stop_times``: :data:`STOP_TIME_COLUMNS`, sorted by
      trip and sequence, times in seconds after midnight of the service day (may pass 24 h;
      ``<NA>`` where the feed leaves them blank)
    * ``agencies``, ``calendar``, ``calendar_dates``: the feed's tables as text
    """

    routes: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ROUTE_COLUMNS))
    lines: gpd.GeoDataFrame = field(default_factory=lambda: _empty_gdf(LINE_COLUMNS))
    stops: gpd.GeoDataFrame = field(default_factory=lambda: _empty_gdf(STOP_COLUMNS))
    trips: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=TRIP_COLUMNS))
    stop_times: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=STOP_TIME_COLUMNS))
    agencies: pd.DataFrame = field(default_factory=pd.DataFrame)
    calendar: pd.DataFrame = field(default_factory=pd.DataFrame)
    calendar_dates: pd.DataFrame = field(default_factory=pd.DataFrame)


def _empty_gdf(columns) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({c: [] for c in columns if c != "geometry"},
                            geometry=gpd.GeoSeries([], crs=WGS84))


class _Feed:
    """The text files of a feed folder or zip, decoded (BOM stripped)."""

    def __init__(self, path: Path):
        self.path = path
        self.names: dict[str, str] = {}
        self.zip = None
        if path.is_dir():
            self.names = {p.name: p.name for p in path.iterdir() if p.is_file()}
        else:
            self.zip = zipfile.ZipFile(path)
            members = [m for m in self.zip.namelist() if not m.endswith("/") and "__MACOSX" not in m]
            for m in sorted(members, key=lambda m: m.count("/")):  # shallowest wins
                self.names.setdefault(m.rsplit("/", 1)[-1], m)

    def read(self, name: str) -> bytes | None:
        member = self.names.get(name)
        if member is None:
            return None
        return self.zip.read(member) if self.zip else (self.path / member).read_bytes()


def read_gtfs(root: Path, name: str, log: ProblemLog) -> tuple[Transit | None, LayerReport]:
    """Read the GTFS feed ``root/name`` (folder or zip); problems go to ``log``.

    Returns ``(None, report)`` when the feed cannot be read at all.
    """
    report = LayerReport("transit", name.rstrip("/") + "/", crs="EPSG:4326 (GTFS)")
    try:
        feed = _Feed(root / name)
    except (zipfile.BadZipFile, OSError) as exc:
        log.error(name, None, f"cannot read GTFS feed: {exc}")
        return None, report
    prefix = name.rstrip("/")
    tables: dict[str, pd.DataFrame] = {}
    for file in REQUIRED + ("agency.txt", "shapes.txt", "calendar.txt", "calendar_dates.txt"):
        tables[file] = _table(feed, file, f"{prefix}/{file}", log)
    for file in REQUIRED:
        if tables[file] is None:
            log.error(f"{prefix}/{file}", None, "missing: a GTFS feed needs stops, routes, trips and stop_times")
    if tables["agency.txt"] is None:
        log.warning(f"{prefix}/agency.txt", None, "missing (required by GTFS)")
    if tables["calendar.txt"] is None and tables["calendar_dates.txt"] is None:
        log.warning(f"{prefix}/calendar.txt", None, "neither calendar.txt nor calendar_dates.txt: no service days")
    if any(tables[f] is None for f in REQUIRED):
        return None, report
    reader = _Reader(prefix, log)
    stops = reader.stops(tables["stops.txt"])
    routes = reader.routes(tables["routes.txt"])
    trips = reader.trips(tables["trips.txt"], routes)
    stop_times = reader.stop_times(tables["stop_times.txt"], trips, stops)
    shapes = reader.shapes(tables["shapes.txt"])
    routes["trips"] = routes["route_id"].map(trips["route_id"].value_counts()).fillna(0).astype(int)
    lines = reader.lines(routes, trips, stop_times, stops, shapes)
    stops_gdf = _stops_gdf(stops, stop_times, trips)
    def table(name):
        return tables[name].reset_index(drop=True) if tables[name] is not None else pd.DataFrame()

    transit = Transit(routes=routes[ROUTE_COLUMNS].reset_index(drop=True), lines=lines, stops=stops_gdf,
                      trips=trips.reset_index(drop=True), stop_times=stop_times.reset_index(drop=True),
                      agencies=table("agency.txt"), calendar=table("calendar.txt"),
                      calendar_dates=table("calendar_dates.txt"))
    report.features = len(lines)
    report.bbox = total_bounds(np.concatenate([lines.geometry.values, stops_gdf.geometry.values]))
    n_shapes = int((lines["source"] == "shapes").sum())
    report.note = (f"{len(routes)} routes, {len(lines)} lines ({n_shapes} from shapes.txt), "
                   f"{len(stops_gdf)} stops, {len(trips)} trips")
    return transit, report


def _table(feed: _Feed, name: str, label: str, log: ProblemLog) -> pd.DataFrame | None:
    raw = feed.read(name)
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
        log.warning(label, None, "not UTF-8; read as Latin-1")
    if not text.strip():
        return pd.DataFrame()
    try:
        df = pd.read_csv(io.StringIO(text, newline=""), dtype=str, keep_default_na=False,
                         skipinitialspace=True, skip_blank_lines=False)
    except (pd.errors.ParserError, ValueError) as exc:
        log.error(label, None, f"not a valid CSV file: {exc}")
        return None
    df.columns = [str(c).strip() for c in df.columns]
    for col in df.columns:
        df[col] = df[col].str.strip()
    df.index = pd.RangeIndex(1, len(df) + 1)  # the index is the 1-based data row from here on
    return df[(df != "").any(axis=1)] if len(df.columns) else df


class _Reader:
    """Row checks for each GTFS table; a table's index is its 1-based data row."""

    def __init__(self, prefix: str, log: ProblemLog):
        self.prefix, self.log = prefix, log

    def _rows(self, file: str, rows, reason) -> None:
        rows = list(rows)
        for row, why in rows[:MAX_ROW_PROBLEMS]:
            self.log.error(f"{self.prefix}/{file}", int(row), why)
        if len(rows) > MAX_ROW_PROBLEMS:
            self.log.error(f"{self.prefix}/{file}", None, f"... and {len(rows) - MAX_ROW_PROBLEMS} more rows: {reason}")

    def _need(self, df: pd.DataFrame, file: str, *columns: str) -> bool:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            self.log.error(f"{self.prefix}/{file}", None, f"missing column(s): {', '.join(missing)}")
        return not missing

    def _unique(self, df: pd.DataFrame, file: str, column: str) -> pd.DataFrame:
        blank = df[column] == ""
        dup = df[column].duplicated() & ~blank
        self._rows(file, ((r, f"missing {column}") for r in df.index[blank]), f"missing {column}")
        self._rows(file, ((r, f"duplicate {column} '{v}'") for r, v in df[column][dup].items()),
                   f"duplicate {column}")
        return df[~blank & ~dup]

    def stops(self, df: pd.DataFrame) -> pd.DataFrame:
        if not self._need(df, "stops.txt", "stop_id"):
            return pd.DataFrame(columns=["stop_id", "lon", "lat", "location_type"])
        df = self._unique(df, "stops.txt", "stop_id")
        blank = pd.Series("", index=df.index)
        lat_text, lon_text = df.get("stop_lat", blank), df.get("stop_lon", blank)
        lon, lat = pd.to_numeric(lon_text, errors="coerce"), pd.to_numeric(lat_text, errors="coerce")
        ltype = pd.to_numeric(df.get("location_type", blank), errors="coerce").fillna(0).astype(int)
        bad = ltype.isin([0, 1, 2]) & ~(lon.between(-180, 180) & lat.between(-90, 90))
        self._rows("stops.txt", ((r, f"stop_lat/stop_lon {lat_text[r]!r}/{lon_text[r]!r} missing or out of range")
                                 for r in df.index[bad]), "bad stop position")
        return df.assign(lon=lon, lat=lat, location_type=ltype)[~bad]

    def routes(self, df: pd.DataFrame) -> pd.DataFrame:
        if not self._need(df, "routes.txt", "route_id", "route_type"):
            return pd.DataFrame(columns=ROUTE_COLUMNS)
        df = self._unique(df, "routes.txt", "route_id")
        types = pd.to_numeric(df["route_type"], errors="coerce")
        modes = pd.Series([route_mode(int(t)) if t == t and float(t).is_integer() else None for t in types],
                          index=df.index, dtype=object)
        bad = modes.isna()
        self._rows("routes.txt", ((r, f"unknown route_type {t!r}") for r, t in df["route_type"][bad].items()),
                   "unknown route_type")
        short = df.get("route_short_name", pd.Series("", index=df.index))
        long = df.get("route_long_name", pd.Series("", index=df.index))
        unnamed = (short == "") & (long == "")
        self._rows("routes.txt", ((r, "route_short_name and route_long_name both missing") for r in df.index[unnamed]),
                   "unnamed route")
        ok = ~bad & ~unnamed
        return pd.DataFrame({
            "route_id": df["route_id"], "agency_id": df.get("agency_id", ""), "short_name": short,
            "long_name": long, "type": types.fillna(-1).astype(int), "mode": modes,
            "colour": _colours(df, "route_color"),
            "text_colour": _colours(df, "route_text_color"),
        })[ok].reset_index(drop=True)

    def trips(self, df: pd.DataFrame, routes: pd.DataFrame) -> pd.DataFrame:
        if not self._need(df, "trips.txt", "route_id", "trip_id"):
            return pd.DataFrame(columns=TRIP_COLUMNS)
        df = self._unique(df, "trips.txt", "trip_id")
        unknown = ~df["route_id"].isin(routes["route_id"])
        self._rows("trips.txt", ((r, f"unknown route_id '{v}'") for r, v in df["route_id"][unknown].items()),
                   "unknown route_id")
        df = df[~unknown]
        blank = pd.Series("", index=df.index)
        direction = pd.to_numeric(df.get("direction_id", blank), errors="coerce").astype("Int64")
        return pd.DataFrame({"trip_id": df["trip_id"], "route_id": df["route_id"],
                             "service_id": df.get("service_id", blank), "direction_id": direction,
                             "shape_id": df.get("shape_id", blank), "headsign": df.get("trip_headsign", blank)})

    def stop_times(self, df: pd.DataFrame, trips: pd.DataFrame, stops: pd.DataFrame) -> pd.DataFrame:
        if not self._need(df, "stop_times.txt", "trip_id", "stop_id", "stop_sequence"):
            return pd.DataFrame(columns=STOP_TIME_COLUMNS)
        seq = pd.to_numeric(df["stop_sequence"], errors="coerce")
        problems = [
            (~df["trip_id"].isin(trips["trip_id"]), lambda i: f"unknown trip_id '{df['trip_id'][i]}'",
             "unknown trip_id"),
            (~df["stop_id"].isin(stops["stop_id"]), lambda i: f"unknown stop_id '{df['stop_id'][i]}'",
             "unknown stop_id"),
            (seq.isna(), lambda i: f"stop_sequence {df['stop_sequence'][i]!r} is not a number", "bad stop_sequence"),
        ]
        for column in ("arrival_time", "departure_time"):
            if column in df:
                bad_time = (df[column] != "") & ~df[column].str.fullmatch(r"\d{1,3}:[0-5]\d:[0-5]\d")
                problems.append((bad_time, lambda i, c=column: f"{c} {df[c][i]!r} is not H:MM:SS", f"bad {column}"))
        ok = pd.Series(True, index=df.index)
        for mask, reason, summary in problems:
            self._rows("stop_times.txt", ((i, reason(i)) for i in df.index[mask]), summary)
            ok &= ~mask
        out = pd.DataFrame({"trip_id": df["trip_id"], "stop_id": df["stop_id"], "seq": seq,
                            "arrival_s": _seconds(df.get("arrival_time")),
                            "departure_s": _seconds(df.get("departure_time"))})
        return out[ok].astype({"seq": int}).sort_values(["trip_id", "seq"], kind="stable")

    def shapes(self, df: pd.DataFrame | None) -> dict[str, shapely.LineString]:
        if df is None or df.empty:
            return {}
        if not self._need(df, "shapes.txt", "shape_id", "shape_pt_lat", "shape_pt_lon", "shape_pt_sequence"):
            return {}
        df = df.assign(lon=pd.to_numeric(df["shape_pt_lon"], errors="coerce"),
                       lat=pd.to_numeric(df["shape_pt_lat"], errors="coerce"),
                       seq=pd.to_numeric(df["shape_pt_sequence"], errors="coerce"))
        bad = ~(df["lon"].between(-180, 180) & df["lat"].between(-90, 90)) | df["seq"].isna()
        self._rows("shapes.txt", ((r, "shape point position or sequence missing or out of range")
                                  for r in df.index[bad]), "bad shape point")
        shapes = {}
        for shape_id, pts in df[~bad].sort_values(["shape_id", "seq"], kind="stable").groupby("shape_id", sort=True):
            coords = pts[["lon", "lat"]].to_numpy()
            if len(coords) >= 2:
                shapes[shape_id] = shapely.LineString(coords)
            else:
                self.log.warning(f"{self.prefix}/shapes.txt", None,
                                 f"shape '{shape_id}' has fewer than 2 points; ignored")
        return shapes

    def lines(self, routes, trips, stop_times, stops, shapes) -> gpd.GeoDataFrame:
        """One line per (route, shape); routes without a usable shape: most common stop pattern."""
        positions = dict(zip(stops["stop_id"], zip(stops["lon"], stops["lat"])))
        patterns = stop_times.groupby("trip_id", sort=False)["stop_id"].agg(tuple)
        trips_by_route = {k: v for k, v in trips.groupby("route_id", sort=False)}
        rows = []
        for route in routes.to_dict("records"):
            rtrips = trips_by_route.get(route["route_id"])
            if rtrips is None or rtrips.empty:
                self.log.warning(f"{self.prefix}/routes.txt", None,
                                 f"route '{route['route_id']}' has no trips; no line drawn")
                continue
            base = {k: route[k] for k in ("route_id", "short_name", "long_name", "type", "mode", "colour")}
            shape_ids = [s for s in dict.fromkeys(rtrips["shape_id"]) if s in shapes]
            for shape_id in shape_ids:
                rows.append({**base, "shape_id": shape_id, "source": "shapes", "geometry": shapes[shape_id]})
            if shape_ids:
                continue
            counts = Counter(patterns.get(t) for t in rtrips["trip_id"] if patterns.get(t))
            if not counts:
                self.log.warning(f"{self.prefix}/routes.txt", None,
                                 f"route '{route['route_id']}' has no stop times; no line drawn")
                continue
            # most common pattern; ties go to the longer, then the lexically first pattern (deterministic)
            pattern = min(counts, key=lambda p: (-counts[p], -len(p), p))
            coords = [positions[s] for s in pattern if s in positions]
            if len(coords) >= 2:
                rows.append({**base, "shape_id": None, "source": "stops", "geometry": shapely.LineString(coords)})
        if not rows:
            return _empty_gdf(LINE_COLUMNS)
        return with_none(gpd.GeoDataFrame(rows, columns=LINE_COLUMNS, geometry="geometry", crs=WGS84),
                         ["shape_id", "colour", "mode"])


def _stops_gdf(stops: pd.DataFrame, stop_times: pd.DataFrame, trips: pd.DataFrame) -> gpd.GeoDataFrame:
    served = stop_times[["trip_id", "stop_id"]].drop_duplicates().merge(trips[["trip_id", "route_id"]], on="trip_id")
    route_ids = served.groupby("stop_id")["route_id"].agg(lambda s: sorted(set(s)))
    located = stops[stops["lon"].notna() & stops["lat"].notna()]
    return gpd.GeoDataFrame({
        "stop_id": located["stop_id"].to_numpy(),
        "name": located.get("stop_name", pd.Series("", index=located.index)).to_numpy(),
        "code": located.get("stop_code", pd.Series("", index=located.index)).to_numpy(),
        "location_type": located["location_type"].to_numpy(),
        "parent_station": located.get("parent_station", pd.Series("", index=located.index)).to_numpy(),
        "route_ids": [route_ids.get(s, []) for s in located["stop_id"]],
    }, geometry=gpd.points_from_xy(located["lon"], located["lat"]), crs=WGS84)


def _seconds(times: pd.Series | None) -> pd.Series | None:
    """``"H:MM:SS"`` -> seconds (nullable Int64); blank or malformed -> ``<NA>``."""
    if times is None:
        return None
    parts = times.str.extract(r"^(\d{1,3}):([0-5]\d):([0-5]\d)$")
    parts = parts.apply(pd.to_numeric, errors="coerce")
    return (parts[0] * 3600 + parts[1] * 60 + parts[2]).astype("Int64")


def _colours(df: pd.DataFrame, column: str) -> pd.Series:
    values = df[column] if column in df else [""] * len(df)
    return pd.Series([_colour(v) for v in values], index=df.index, dtype=object)


def _colour(value: str) -> str | None:
    value = (value or "").strip().lstrip("#")
    if len(value) == 6 and all(c in "0123456789abcdefABCDEF" for c in value):
        return "#" + value.upper()
    return None
