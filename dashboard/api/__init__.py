"""The read API: ``GET /api/v1/...`` for KPIs, series, map layers, sensors and alerts (docs/api.md).

A Flask blueprint mounted by ``dashboard.server.create_app``.  JSON by default,
``?format=csv`` (and ``geojson`` for layers); long results are streamed (series
row by row, raw readings through a server-side cursor).  Roles as on the pages:
viewer for KPIs, series, KPI layers and alerts; planner for sensor-level data
(sensor layer, sensor list, raw readings, dead letters).  CSV and GeoJSON
downloads are recorded in the audit log.  Bad input gives 400 with a
translated ``{"error": ...}``; never a traceback.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Iterable

import flask
import pandas as pd

from core.db import pool
from core.timebuckets import HOUR, MINUTE, ceil_time, floor_time
from dashboard import i18n
from dashboard.api import context
from dashboard.api.writers import (
    cell,
    csv_chunks,
    feature_collection,
    frame_csv_chunks,
    json_chunks,
    json_records,
)
from dashboard.auth import current_user
from dashboard.layer_files import layer_geojson
from dashboard.queries import explore as q
from kpis import evaluate

BLUEPRINT = flask.Blueprint("citydash_api", __name__, url_prefix="/api/v1")
RESOLUTIONS = {"raw": MINUTE, "1m": MINUTE, "1h": HOUR}
SERIES_HEADER = ["bucket", "scope_id", "value", "sensors", "expected", "confidence"]
READINGS_HEADER = ["time", "sensor", "metric", "value"]


class ApiError(Exception):
    def __init__(self, status: int, key: str, **values):
        super().__init__(key)
        self.status, self.key, self.values = status, key, values


@BLUEPRINT.errorhandler(ApiError)
def _api_error(exc: ApiError):
    locale = context.request_locale()
    return flask.jsonify({"error": i18n.t(exc.key, locale, **exc.values)}), exc.status


@BLUEPRINT.errorhandler(Exception)
def _unexpected(exc: Exception):
    from werkzeug.exceptions import HTTPException

    if isinstance(exc, HTTPException):
        return flask.jsonify({"error": exc.description}), exc.code
    flask.current_app.logger.exception("API request failed")
    return flask.jsonify({"error": i18n.t("api.error.internal", context.request_locale())}), 500


@BLUEPRINT.route("/", defaults={"rest": ""}, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
@BLUEPRINT.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def unknown(rest: str):
    """Any other path under /api/v1: a JSON 404 (not the dashboard's HTML page)."""
    raise ApiError(404, "api.error.not_found", path="/api/v1/" + rest[:200])


def require(role: str) -> None:
    user = current_user()
    if user is None:
        raise ApiError(401, "api.error.login")
    if not user.has_role(role):
        raise ApiError(403, "api.error.role", role=role)


# -- parameters -------------------------------------------------------------------------------

def _fmt(allowed=("json", "csv")) -> str:
    fmt = flask.request.args.get("format", allowed[0]).lower()
    if fmt not in allowed:
        raise ApiError(400, "api.error.format", value=fmt, allowed=", ".join(allowed))
    return fmt


def _time(name: str, default: datetime | None = None) -> datetime:
    text = flask.request.args.get(name)
    if not text:
        if default is None:
            raise ApiError(400, "api.error.missing", name=name)
        return default
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise ApiError(400, "api.error.time", name=name, value=text) from None
    return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _window(default_span: timedelta = timedelta(hours=24)) -> tuple[datetime, datetime]:
    now = datetime.now(timezone.utc)
    end = _time("to", now)
    start = _time("from", end - default_span)
    if end <= start:
        raise ApiError(400, "api.error.order")
    if end - start > q.MAX_SPAN:
        raise ApiError(400, "api.error.span", days=q.MAX_SPAN.days)
    return start, end


def _kpi(kpi_id: str):
    cat = context.catalogue()
    if kpi_id not in cat.kpis:
        raise ApiError(404, "api.error.kpi", value=kpi_id)
    return cat, cat[kpi_id]


def _scope(kpi) -> str:
    scope = flask.request.args.get("scope", "city")
    if scope not in kpi.scopes:
        raise ApiError(400, "api.error.scope", value=scope, allowed=", ".join(kpi.scopes))
    return scope


def _kpi_request(kpi_id: str):
    """(format, catalogue, KPI, scope) of a KPI route, for a viewer or above."""
    require("viewer")
    fmt = _fmt()
    cat, kpi = _kpi(kpi_id)
    return fmt, cat, kpi, _scope(kpi)


def _frame_resolution() -> str:
    res = flask.request.args.get("resolution", "1m")
    if res not in RESOLUTIONS:
        raise ApiError(400, "api.error.resolution", value=res)
    return res


def _resolution(start: datetime, end: datetime) -> str:
    res = flask.request.args.get("resolution", "auto")
    if res == "auto":
        return evaluate.resolution_for(start, end)
    if res not in RESOLUTIONS:
        raise ApiError(400, "api.error.resolution", value=res)
    return res


def _frame_window(at: datetime, resolution: str) -> q.Window:
    width = RESOLUTIONS[resolution]
    a = floor_time(at, width)
    return q.Window(a, a + width, resolution, width)


def _download(chunks, fmt: str, filename: str, detail: dict) -> flask.Response:
    mimetype = {"csv": "text/csv", "json": "application/json", "geojson": "application/geo+json"}[fmt]
    if fmt != "json":
        context.record_export(f"export.{fmt}", {**detail, "path": flask.request.full_path})
    response = flask.Response(flask.stream_with_context(chunks), mimetype=mimetype)
    if fmt != "json":
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}.{fmt}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _rows(frame: pd.DataFrame, columns: list[str]):
    arrays = [frame[c].to_numpy() if c != "bucket" else list(frame[c]) for c in columns]
    return zip(*arrays) if len(frame) else iter(())


# -- KPIs -------------------------------------------------------------------------------------

@BLUEPRINT.get("/kpis")
def kpis():
    require("viewer")
    fmt = _fmt()
    locale = context.request_locale()
    cat = context.catalogue()
    with context.connection() as conn:
        registry = evaluate.load_registry(conn)
        values = {k.id: evaluate.current(conn, cat, k, registry=registry)[("city", "")] for k in cat}
    header = ["id", "label", "unit", "better", "scopes", "target", "warning", "critical", "value", "sensors",
              "expected", "confidence", "at"]
    rows = [(k.id, k.text(locale)[0], k.unit, k.better, " ".join(k.scopes), k.thresholds.target,
             k.thresholds.warning, k.thresholds.critical, values[k.id].value, values[k.id].sensors,
             values[k.id].expected, values[k.id].confidence, values[k.id].at) for k in cat]
    if fmt == "csv":
        return _download(csv_chunks(header, rows), fmt, "kpis", {"what": "kpis"})
    return flask.jsonify({"kpis": json_records(header, rows)})


@BLUEPRINT.get("/kpis/<kpi_id>/values")
def kpi_values(kpi_id: str):
    """One value per scope id: the current value, or the bucket at ``at`` (``resolution``)."""
    fmt, cat, kpi, scope = _kpi_request(kpi_id)
    at_text = flask.request.args.get("at")
    with context.connection() as conn:
        if at_text:
            window = _frame_window(_time("at"), _frame_resolution())
            frame = q.scope_values(conn, cat, kpi.id, scope, window.start, window)
            stamp = window.start
        else:
            found = evaluate.current(conn, cat, kpi, scopes=(scope,))
            frame = pd.DataFrame([(v.scope_id, v.value, v.sensors, v.expected, v.confidence)
                                  for (st, _), v in found.items() if st == scope], columns=q.VALUE_COLUMNS)
            stamp = next(iter(found.values())).at
    header = ["scope_id", "value", "sensors", "expected", "confidence"]
    rows = list(_rows(frame, header))
    if fmt == "csv":
        return _download(csv_chunks(["at", *header], ((stamp, *r) for r in rows)), fmt, f"{kpi.id}-{scope}",
                         {"kpi": kpi.id, "scope": scope})
    return flask.jsonify({"kpi": kpi.id, "scope": scope, "at": json_records(["at"], [[stamp]])[0]["at"],
                          "unit": kpi.unit, "values": json_records(header, rows)})


@BLUEPRINT.get("/kpis/<kpi_id>/series")
def kpi_series(kpi_id: str):
    fmt, cat, kpi, scope = _kpi_request(kpi_id)
    scope_id = flask.request.args.get("id")
    start, end = _window()
    res = _resolution(start, end)
    width = RESOLUTIONS[res]
    scope_id = scope_id if scope != "city" else None
    detail = {"kpi": kpi.id, "scope": scope, "from": start.isoformat(), "to": end.isoformat()}
    with context.connection() as conn:
        registry = evaluate.load_registry(conn)
        a, b = floor_time(start, width), ceil_time(end, width)  # the buckets evaluate.series reads
        if fmt == "csv" and evaluate.materialised_usable(cat, kpi, registry, res, scope, a):
            settings = context.settings()

            def chunks():  # formatted by the database, streamed (no Python object per row)

                with pool(settings).connection() as conn:
                    yield from q.materialised_series_csv(conn, kpi.id, res, scope, a, b, scope_id)

            return _download(chunks(), fmt, f"{kpi.id}-{scope}-series", detail)
        frame = evaluate.series(conn, cat, kpi, start, end, scope=scope, scope_id=scope_id, resolution=res,
                                registry=registry)
    meta = {"kpi": kpi.id, "scope": scope, "resolution": res, "source": frame.attrs.get("source"),
            "unit": kpi.unit, "width_s": int(width.total_seconds())}
    if fmt == "csv":
        return _download(frame_csv_chunks(frame, SERIES_HEADER), fmt, f"{kpi.id}-{scope}-series", detail)
    return _download(json_chunks(meta, SERIES_HEADER, _rows(frame, SERIES_HEADER)), "json", "", {})


# -- layers -----------------------------------------------------------------------------------

@BLUEPRINT.get("/layers/<layer>")
def layer(layer: str):
    """A map layer as GeoJSON (or CSV of its properties): districts/roads with a KPI frame, sensors
    with their health in the frame, vehicles at the frame, or a city-pack layer's geometry."""
    fmt = _fmt(("geojson", "csv", "json"))
    fmt = "geojson" if fmt == "json" else fmt
    require("planner" if layer in ("sensors", "vehicles") else "viewer")
    cat = context.catalogue()
    window = _frame_window(_time("at", datetime.now(timezone.utc) - MINUTE), _frame_resolution())
    features = _layer_features(layer, cat, window)
    detail = {"layer": layer, "at": window.start.isoformat()}
    if fmt == "csv":
        features = list(features)
        header = sorted({k for props, _ in features for k in props})
        return _download(csv_chunks(header, ([p.get(k) for k in header] for p, _ in features)), fmt,
                         f"{layer}", detail)
    return _download(iter([feature_collection(features, clean=layer not in PLAIN_LAYERS)]), fmt, layer, detail)


PLAIN_LAYERS = ("roads", "sensors")  # their properties are built as plain JSON values (no cell() per value)


def _then_window(window: q.Window) -> q.Window | None:
    """The comparison frame of ``?then=`` (same resolution), or None."""
    if not flask.request.args.get("then"):
        return None
    return _frame_window(_time("then"), window.resolution)


def _kpi_frame(cat, kpi: str, scope: str, window: q.Window) -> tuple[pd.DataFrame, q.Window | None]:
    """(a KPI per scope id at the frame, the ``?then=`` frame or None); with a ``then`` frame the values
    also hold ``then`` and ``delta`` (now minus then)."""
    then = _then_window(window)
    with context.connection() as conn:
        registry = evaluate.load_registry(conn)  # read once for both frames
        values = q.scope_values(conn, cat, kpi, scope, window.start, window, registry)
        if then is not None:
            values = q.difference(values, q.scope_values(conn, cat, kpi, scope, then.start, then, registry))
    return values, then


def _layer_features(name: str, cat, window: q.Window) -> Iterable[tuple[dict, dict | None]]:
    """(properties, geometry) of each feature; roads and sensors as a generator (see feature_collection)."""
    if name == "districts":
        kpi = flask.request.args.get("kpi") or next((k.id for k in q.district_kpis(cat)), "")
        if kpi not in cat.kpis or "district" not in cat[kpi].scopes:
            raise ApiError(400, "api.error.kpi", value=kpi)
        values, then = _kpi_frame(cat, kpi, "district", window)
        values = values.set_index("scope_id")
        out = []
        for f in layer_geojson("districts", flask.request.args.get("band", "city"))["features"]:
            props = dict(f.get("properties") or {})
            row = values.loc[props.get("id")] if props.get("id") in values.index else None
            props.update({"kpi": kpi, "at": window.start, "value": None if row is None else row["value"],
                          "confidence": None if row is None else row["confidence"]})
            if then is not None:
                props.update({"then": then.start, "then_value": None if row is None else row["then"],
                              "difference": None if row is None else row["delta"]})
            out.append((props, f.get("geometry")))
        return out
    if name == "roads":
        kpi = flask.request.args.get("kpi") or next((k.id for k in q.road_kpis(cat)), "")
        if kpi not in cat.kpis or "road" not in cat[kpi].scopes:
            raise ApiError(400, "api.error.kpi", value=kpi)
        values, then = _kpi_frame(cat, kpi, "road", window)
        index, at = context.road_index(), cell(window.start)
        number = lambda column: values[column].to_numpy(dtype=float).tolist()  # noqa: E731
        columns = [values["scope_id"].tolist(), number("value"), number("confidence")]
        extra = {}
        if then is not None:  # the difference map's figures: now, then and now minus then
            columns += [number("then"), number("delta")]
            extra = {"then": cell(then.start)}
        return (({"id": row[0], "name": found[2]["name"], "class": found[2]["class"], "kpi": kpi, "at": at,
                  "value": row[1], "confidence": row[2], **extra,
                  **({"then_value": row[3], "difference": row[4]} if extra else {})},
                 found[3])  # geometry serialised once per layer build
                for row in zip(*columns) if (found := index.get(str(row[0]))) is not None)
    if name == "sensors":
        kinds = tuple(k for k in flask.request.args.get("kinds", "").split(",") if k)
        with context.connection() as conn:
            frame = q.sensor_health(conn, window.start, window, kinds)
        at = cell(window.start)
        return (({"id": e, "kind": k, "name": n, "district_id": d, "status": s, "readings": r, "at": at},
                 {"type": "Point", "coordinates": [x, y]})
                for e, k, n, d, s, r, x, y in zip(*(frame[c].tolist() for c in (
                    "external_id", "kind", "name", "district_id", "status", "readings")),
                    frame["lon"].to_numpy(dtype=float).tolist(), frame["lat"].to_numpy(dtype=float).tolist()))
    if name == "vehicles":
        with context.connection() as conn:
            frame = q.vehicles_at(conn, window.start, window)
        return [({"vehicle": v, "route": r, "delay_s": d, "occupancy_pct": o, "time": t},
                 {"type": "Point", "coordinates": [float(x), float(y)]})
                for v, r, x, y, d, o, t in frame.itertuples(index=False)]
    try:
        data = layer_geojson(name, flask.request.args.get("band", "city"))
    except KeyError:
        raise ApiError(404, "api.error.layer", value=name) from None
    return [(f.get("properties") or {}, f.get("geometry")) for f in data["features"]]


# -- sensors and alerts -------------------------------------------------------------------------

@BLUEPRINT.get("/sensors")
def sensor_list():
    require("planner")
    fmt = _fmt()
    kinds = tuple(k for k in flask.request.args.get("kinds", "").split(",") if k)
    with context.connection() as conn:
        frame = q.sensors(conn, kinds)
    header = ["external_id", "kind", "name", "lon", "lat", "district_id", "last_seen"]
    rows = list(_rows(frame, header))
    if fmt == "csv":
        return _download(csv_chunks(header, rows), fmt, "sensors", {"what": "sensors"})
    return flask.jsonify({"sensors": json_records(header, rows)})


def _sensor(conn, external_id: str) -> dict:
    info = q.sensor_info(conn, external_id)
    if info is None:
        raise ApiError(404, "api.error.sensor", value=external_id)
    return info


@BLUEPRINT.get("/sensors/<path:external_id>/readings")
def sensor_readings(external_id: str):
    """Raw readings of one sensor, streamed through a server-side cursor (CSV or JSON)."""
    require("planner")
    fmt = _fmt()
    start, end = _window()
    with context.connection() as conn:
        sensor_id = _sensor(conn, external_id)["sensor_id"]
    settings = context.settings()

    def rows():
        with pool(settings).connection() as conn, conn.transaction():
            yield from q.iter_readings(conn, [sensor_id], start, end)

    detail = {"sensor": external_id, "from": start.isoformat(), "to": end.isoformat()}
    if fmt == "csv":
        return _download(csv_chunks(READINGS_HEADER, rows()), fmt, f"{external_id}-readings", detail)
    return _download(json_chunks({"sensor": external_id}, READINGS_HEADER, rows()), "json", "", detail)


@BLUEPRINT.get("/sensors/<path:external_id>/dead-letters")
def sensor_dead_letters(external_id: str):
    require("planner")
    with context.connection() as conn:
        _sensor(conn, external_id)
        rows = q.dead_letters_for(conn, external_id, limit=_limit(100))
    return flask.jsonify({"sensor": external_id,
                          "dead_letters": [{k: cell(v) for k, v in r.items()} for r in rows]})


def _limit(default: int, most: int = 1000) -> int:
    try:
        return max(1, min(int(flask.request.args.get("limit", default)), most))
    except ValueError:
        raise ApiError(400, "api.error.limit", value=flask.request.args.get("limit")) from None


@BLUEPRINT.get("/alerts")
def alerts():
    require("viewer")
    scope_type = flask.request.args.get("scope_type", "city")
    scope_id = flask.request.args.get("scope_id", "")
    if scope_type == "sensor":
        require("planner")
    with context.connection() as conn:
        rows = q.recent_alerts(conn, scope_type, scope_id, limit=_limit(50))
    return flask.jsonify({"alerts": [{k: cell(v) for k, v in r.items()} for r in rows]})


