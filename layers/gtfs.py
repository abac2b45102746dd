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


TRIP_COLUMNS = ["trip_id", "route_id", "service_id", "direction_id", "shape_id", "headsign", "block_id"]
STOP_TIME_COLUMNS = ["trip_id", "stop_id", "seq", "arrival_s", "departure_s"]
SPAN_COLUMNS = ["trip_id", "route_id", "service_id", "block_id", "start_s", "end_s"]
LAYOVER_S = 300  # inferred blocks: a vehicle takes a route's next trip at least 5 minutes after its last
SERVICE_COLUMNS = ["service_id", "days", "start_date", "end_date"]
SERVICE_DATE_COLUMNS = ["service_id", "date", "exception_type"]
FREQUENCY_COLUMNS = ["trip_id", "start_s", "end_s", "headway_s", "exact_times"]
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


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
    * the timetable, checked (what :mod:`layers.store` writes for the KPI engine):
      ``spans``: :data:`SPAN_COLUMNS`, one row per trip with timed stops, ``start_s`` its first
      departure and ``end_s`` its last arrival (seconds after midnight of the service day);
      ``services``: :data:`SERVICE_COLUMNS` from calendar.txt (``days``: seven ``0``/``1``
      characters, Monday first; dates as :class:`datetime.date`); ``service_dates``:
      :data:`SERVICE_DATE_COLUMNS` from calendar_dates.txt (1 added, 2 removed);
      ``frequencies``: :data:`FREQUENCY_COLUMNS` from frequencies.txt
    """

    routes: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ROUTE_COLUMNS))
    lines: gpd.GeoDataFrame = field(default_factory=lambda: _empty_gdf(LINE_COLUMNS))
    stops: gpd.GeoDataFrame = field(default_factory=lambda: _empty_gdf(STOP_COLUMNS))
    trips: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=TRIP_COLUMNS))
    stop_times: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=STOP_TIME_COLUMNS))
    agencies: pd.DataFrame = field(default_factory=pd.DataFrame)
    calendar: pd.DataFrame = field(default_factory=pd.DataFrame)
    calendar_dates: pd.DataFrame = field(default_factory=pd.DataFrame)
    spans: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SPAN_COLUMNS))
    services: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SERVICE_COLUMNS))
    service_dates: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SERVICE_DATE_COLUMNS))
    frequencies: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FREQUENCY_COLUMNS))


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
    for file in REQUIRED + ("agency.txt", "shapes.txt", "calendar.txt", "calendar_dates.txt", "frequencies.txt"):
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
    services = reader.services(tables["calendar.txt"])
    service_dates = reader.service_dates(tables["calendar_dates.txt"])
    spans = reader.spans(trips, stop_times, set(services["service_id"]) | set(service_dates["service_id"]),
                         tables["calendar.txt"] is not None or tables["calendar_dates.txt"] is not None)
    frequencies = reader.frequencies(tables["frequencies.txt"], spans)
    def table(name):
        return tables[name].reset_index(drop=True) if tables[name] is not None else pd.DataFrame()

    transit = Transit(routes=routes[ROUTE_COLUMNS].reset_index(drop=True), lines=lines, stops=stops_gdf,
                      trips=trips.reset_index(drop=True), stop_times=stop_times.reset_index(drop=True),
                      agencies=table("agency.txt"), calendar=table("calendar.txt"),
                      calendar_dates=table("calendar_dates.txt"), spans=spans, services=services,
                      service_dates=service_dates, frequencies=frequencies)
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
                             "shape_id": df.get("shape_id", blank), "headsign": df.get("trip_headsign", blank),
                             "block_id": df.get("block_id", blank)})

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

    def spans(self, trips: pd.DataFrame, stop_times: pd.DataFrame, service_ids: set, calendars: bool) -> pd.DataFrame:
        """Each trip's first departure and last arrival (stop times sorted by trip and sequence)."""
        dep = stop_times["departure_s"].fillna(stop_times["arrival_s"])
        arr = stop_times["arrival_s"].fillna(stop_times["departure_s"])
        timed = stop_times.assign(dep=dep, arr=arr)[dep.notna()]
        by_trip = timed.groupby("trip_id", sort=False)
        tail = by_trip.tail(1)  # the index is the 1-based data row
        spans = pd.DataFrame({"start_s": by_trip["dep"].first(),
                              "end_s": pd.Series(tail["arr"].to_numpy(), index=tail["trip_id"].to_numpy()),
                              "row": pd.Series(tail.index.to_numpy(), index=tail["trip_id"].to_numpy())})
        spans = trips[["trip_id", "route_id", "service_id", "block_id"]].merge(spans, left_on="trip_id",
                                                                             right_index=True)
        untimed = sorted(set(trips["trip_id"]) - set(spans["trip_id"]))
        if untimed:
            self.log.warning(f"{self.prefix}/stop_times.txt", None,
                             f"{len(untimed)} trip(s) without stop times (e.g. '{untimed[0]}'): not scheduled")
        backwards = spans["end_s"] < spans["start_s"]
        self._rows("stop_times.txt", ((r, f"trip '{t}' ends at {_hms(e)}, before it starts at {_hms(b)}")
                                      for r, t, b, e in spans[backwards][["row", "trip_id", "start_s", "end_s"]]
                                      .itertuples(index=False)), "trip ends before it starts")
        spans = spans[~backwards]
        idle = ~spans["service_id"].isin(service_ids)
        if calendars and idle.any():
            first_idle = spans.loc[idle, "service_id"].iloc[0]
            self.log.warning(f"{self.prefix}/trips.txt", None,
                             f"{int(idle.sum())} trip(s) with a service_id in neither calendar.txt nor "
                             f"calendar_dates.txt (e.g. '{first_idle}'): they never run")
        spans = spans.astype({"start_s": int, "end_s": int}).reset_index(drop=True)
        return spans.assign(block_id=infer_blocks(spans))[SPAN_COLUMNS]

    def services(self, df: pd.DataFrame | None) -> pd.DataFrame:
        """calendar.txt: weekdays and date range per service."""
        empty = pd.DataFrame(columns=SERVICE_COLUMNS)
        if df is None or df.empty or not self._need(df, "calendar.txt", "service_id", *WEEKDAYS,
                                                    "start_date", "end_date"):
            return empty
        df = self._unique(df, "calendar.txt", "service_id")
        bad_day = ~df[list(WEEKDAYS)].isin(["0", "1"]).all(axis=1)
        self._rows("calendar.txt", ((r, "monday..sunday must each be 0 or 1") for r in df.index[bad_day]),
                   "bad weekday flag")
        start, end = self._dates(df, "calendar.txt", "start_date"), self._dates(df, "calendar.txt", "end_date")
        reversed_ = start.notna() & end.notna() & (end < start)
        self._rows("calendar.txt", ((r, f"end_date {df['end_date'][r]} is before start_date {df['start_date'][r]}")
                                    for r in df.index[reversed_]), "end_date before start_date")
        ok = ~bad_day & start.notna() & end.notna() & ~reversed_
        return pd.DataFrame({"service_id": df["service_id"], "days": df[list(WEEKDAYS)].agg("".join, axis=1),
                             "start_date": start.dt.date, "end_date": end.dt.date})[ok].reset_index(drop=True)

    def service_dates(self, df: pd.DataFrame | None) -> pd.DataFrame:
        """calendar_dates.txt: service added (1) or removed (2) on a date."""
        empty = pd.DataFrame(columns=SERVICE_DATE_COLUMNS)
        if df is None or df.empty or not self._need(df, "calendar_dates.txt", "service_id", "date",
                                                    "exception_type"):
            return empty
        date = self._dates(df, "calendar_dates.txt", "date")
        bad_type = ~df["exception_type"].isin(["1", "2"])
        self._rows("calendar_dates.txt", ((r, f"exception_type {v!r} must be 1 (added) or 2 (removed)")
                                          for r, v in df["exception_type"][bad_type].items()), "bad exception_type")
        dup = df.duplicated(["service_id", "date"]) & date.notna()
        self._rows("calendar_dates.txt", ((r, f"service '{df['service_id'][r]}' on {df['date'][r]} listed twice")
                                          for r in df.index[dup]), "duplicate service date")
        ok = date.notna() & ~bad_type & ~dup & (df["service_id"] != "")
        return pd.DataFrame({"service_id": df["service_id"], "date": date.dt.date,
                             "exception_type": pd.to_numeric(df["exception_type"], errors="coerce")}
                            )[ok].astype({"exception_type": int}).reset_index(drop=True)

    def frequencies(self, df: pd.DataFrame | None, spans: pd.DataFrame) -> pd.DataFrame:
        """frequencies.txt: a trip repeated every ``headway_s`` from ``start_s`` until before ``end_s``."""
        empty = pd.DataFrame(columns=FREQUENCY_COLUMNS)
        if df is None or df.empty or not self._need(df, "frequencies.txt", "trip_id", "start_time", "end_time",
                                                    "headway_secs"):
            return empty
        start, end = _seconds(df["start_time"]), _seconds(df["end_time"])
        headway = pd.to_numeric(df["headway_secs"], errors="coerce")
        problems = [
            (~df["trip_id"].isin(spans["trip_id"]), lambda r: f"unknown or untimed trip_id '{df['trip_id'][r]}'",
             "unknown trip_id"),
            (start.isna() | end.isna(), lambda r: "start_time/end_time must be H:MM:SS", "bad time"),
            (start.notna() & end.notna() & (end <= start), lambda r: "end_time must be after start_time",
             "end_time not after start_time"),
            (~(headway > 0) | (headway % 1 != 0), lambda r: f"headway_secs {df['headway_secs'][r]!r} must be a "
                                                            f"whole number > 0", "bad headway_secs"),
        ]
        ok = pd.Series(True, index=df.index)
        for mask, reason, summary in problems:
            mask = mask.fillna(True).astype(bool)
            self._rows("frequencies.txt", ((r, reason(r)) for r in df.index[mask & ok]), summary)
            ok &= ~mask
        exact = df.get("exact_times", pd.Series("", index=df.index)) == "1"
        return pd.DataFrame({"trip_id": df["trip_id"], "start_s": start, "end_s": end, "headway_s": headway,
                             "exact_times": exact})[ok].astype(
            {"start_s": int, "end_s": int, "headway_s": int}).reset_index(drop=True)

    def _dates(self, df: pd.DataFrame, file: str, column: str) -> pd.Series:
        """``YYYYMMDD`` -> timestamps; bad dates are reported and NaT."""
        dates = pd.to_datetime(df[column].where(df[column].str.fullmatch(r"\d{8}")), format="%Y%m%d",
                               errors="coerce")
        self._rows(file, ((r, f"{column} {df[column][r]!r} is not a date YYYYMMDD") for r in df.index[dates.isna()]),
                   f"bad {column}")
        return dates

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


def infer_blocks(spans: pd.DataFrame) -> list[str]:
    """The feed's ``block_id`` per trip; where blank, the vehicle a timetable needs: per route and
    service, trips by first departure, each taking the first vehicle free :data:`LAYOVER_S` before
    it starts (how ``ingest/simulate/vehicles.py`` chains trips), named ``~route~service~n``."""
    blocks = list(spans["block_id"])
    open_ = spans[spans["block_id"] == ""].sort_values(["route_id", "service_id", "start_s"], kind="stable")
    for (route, service), g in open_.groupby(["route_id", "service_id"], sort=False):
        for row, n in zip(g.index, chain_trips(g["start_s"], g["end_s"])):
            blocks[row] = f"~{route}~{service}~{n + 1}"
    return blocks


def chain_trips(starts, ends) -> list[int]:
    """Vehicle number (0-based) of each trip, trips given by first departure: each takes the first
    vehicle free :data:`LAYOVER_S` before it starts, else a new one."""
    free_at: list = []
    out = []
    for start, end in zip(starts, ends):
        n = next((n for n, free in enumerate(free_at) if free + LAYOVER_S <= start), len(free_at))
        free_at[n:n + 1] = [end]
        out.append(n)
    return out


def _hms(seconds: int) -> str:
    return f"{int(seconds) // 3600:02d}:{int(seconds) % 3600 // 60:02d}:{int(seconds) % 60:02d}"


def _colours(df: pd.DataFrame, column: str) -> pd.Series:
    values = df[column] if column in df else [""] * len(df)
    return pd.Series([_colour(v) for v in values], index=df.index, dtype=object)


def _colour(value: str) -> str | None:
    value = (value or "").strip().lstrip("#")
    if len(value) == 6 and all(c in "0123456789abcdefABCDEF" for c in value):
        return "#" + value.upper()
    return None
