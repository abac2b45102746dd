"""What the explorer page and the read API build from a view: map frames, series, drill-down panels,
export links, and the pure state logic between the URL, the controls and the replay.

The page's callbacks (``dashboard/pages/explore.py``) only translate their inputs into calls of
these functions, which tests and ``bench/explore.py`` call directly.  Data comes from
:mod:`dashboard.queries.explore` (the KPI engine underneath), figures from
:mod:`dashboard.figures.explore`; results are cached per view and time bucket
(:func:`dashboard.cache.bucketed`, ``CITYDASH_EXPLORE_CACHE_S``).
"""
from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timezone
from urllib.parse import quote, urlencode

import numpy as np
import pandas as pd
from dash import dcc, html

from dashboard import cache, i18n
from dashboard.api import context
from dashboard.figures import explore as fig
from dashboard.layer_files import layer_url
from dashboard.queries import explore as q
from dashboard.state import runtime
from kpis import evaluate

log = logging.getLogger(__name__)

REPLAY_STEPS = 120  # a replay at speed 1 crosses the window in about this many ticks
PANEL_ROWS = 15


def translator(locale: str):
    return lambda key, **kw: i18n.t(key, locale, **kw)


def city_tz() -> str:
    return runtime().city.timezone


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


# -- stores ----------------------------------------------------------------------------------------

def window_data(window: q.Window) -> dict:
    return {"start": window.start.isoformat(), "end": window.end.isoformat(), "resolution": window.resolution,
            "width_s": int(window.width.total_seconds())}


def window_from(data) -> q.Window:
    """The window held by the browser, checked (:func:`q.window_from_data`); anything else (a
    tampered or stale store: a 10-year raw window, a zero width, junk) gives the default view's
    window, never an error or an unbounded query."""
    now = utc_now()
    window = q.window_from_data(data, now)
    if window is None:
        log.info("explorer window from the browser refused; default window used")
        window = q.window_for(q.ViewState(), now)
    return window


def selection_text(selection) -> str | None:
    return f"{selection[0]}:{selection[1]}" if selection else None


def problem_list(problems, locale: str):
    if not problems:
        return []
    return html.Ul([html.Li(i18n.t(p.key, locale, **p.values)) for p in problems])


# -- state from the controls ----------------------------------------------------------------------

def state_from_controls(layers, kpi, road, kinds, rng, start_text, end_text, index, speed, compare, cfrom_text,
                        selection, window: q.Window, tz: str, cat) -> tuple[q.ViewState, list[q.Problem]]:
    """The view the controls describe (the same parser as the URL, so both agree)."""
    defaults = q.resolved(q.ViewState(), cat)  # the default KPIs stay out of the URL
    kpi = "" if kpi == defaults.kpi else kpi
    road = "" if road == defaults.road else road
    query = {"layers": ",".join(layers or []) or "-", "kpi": kpi or "", "road": road or "",
             "kinds": ",".join(kinds or []), "range": rng or q.DEFAULT_RANGE, "speed": str(speed or 1),
             "cmp": compare or "none", "sel": selection or ""}
    if rng == q.CUSTOM:
        query.update({"from": start_text or "", "to": end_text or ""})
    if compare == "custom":
        query["cfrom"] = cfrom_text or ""
    if index is not None and slider_index(index, window) < window.frames - 1:
        query["t"] = window.frame_time(slider_index(index, window)).strftime("%Y-%m-%dT%H:%MZ")
    return q.parse_state(query, cat, tz, context.extra_layers())


def controls_for(state: q.ViewState, tz: str) -> list:
    """The control values showing ``state`` (in the order of the page's ``CONTROLS``)."""
    return [list(state.layers), state.kpi, state.road, list(state.kinds), state.range,
            q.local_text(state.start, tz), q.local_text(state.end, tz), state.speed, state.compare,
            q.local_text(state.compare_start, tz)]


def _frame(index, frames: int, default: int) -> int:
    """A frame index from the browser: an int clamped to ``[0, frames)``; anything else (None,
    text, a float, junk) is ``default``."""
    if not isinstance(index, int) or isinstance(index, bool):
        return default
    return min(max(index, 0), frames - 1)


def slider_index(index, window: q.Window) -> int:
    """The slider's value as a frame index of ``window`` (the newest frame when it is not one)."""
    return _frame(index, window.frames, window.frames - 1)


def replay_index(index, frames: int, speed, trigger: str) -> int:
    """The next frame: one step back or forward, or a replay tick (wraps to the start)."""
    index = _frame(index, frames, 0)
    if trigger == "explore-prev":
        return max(index - 1, 0)
    if trigger == "explore-next":
        return min(index + 1, frames - 1)
    speed = speed if speed in q.SPEEDS else 1
    step = max(1, frames // REPLAY_STEPS) * speed
    return 0 if index >= frames - 1 else min(index + step, frames - 1)


def _cached(key: str, compute):
    return cache.bucketed("explore:" + key, context.settings().explore_cache_s, compute)


def map_data(state: q.ViewState, window: q.Window, index: int) -> dict:
    """Everything the map needs for one frame (cached per view and time bucket)."""
    cat = context.catalogue()
    at = window.frame_time(index)
    offset = q.compare_offset(state, window)
    key = f"map:{state.kpi}:{state.road}:{','.join(state.layers)}:{','.join(state.kinds)}:{window.resolution}:" \
          f"{at.isoformat()}:{offset}"

    def compute():
        out: dict = {"at": at}
        with context.connection() as conn:
            registry = None

            def values(kpi: str, scope: str) -> pd.DataFrame:
                """The KPI at the frame; with a comparison, the difference (now minus then)."""
                nonlocal registry
                if registry is None:  # read once, and only when a KPI layer is on
                    registry = evaluate.load_registry(conn)
                now = q.scope_values(conn, cat, kpi, scope, at, window, registry)
                if offset is None:
                    return now
                return q.difference(now, q.scope_values(conn, cat, kpi, scope, at - offset, window, registry))

            if "districts" in state.layers and state.kpi:
                out["districts"] = values(state.kpi, "district")
                out["names"] = q.district_names(conn)
            if "roads" in state.layers and state.road:
                out["roads"] = values(state.road, "road")
            if "sensors" in state.layers:
                out["sensors"] = q.sensor_health(conn, at, window, state.kinds)
            if "vehicles" in state.layers:
                out["vehicles"] = q.vehicles_at(conn, at, window)
        return out

    return _cached(key, compute)


def road_lines(values: pd.DataFrame, column: str = "value") -> pd.DataFrame:
    """Roads with a value (``column``: ``delta`` for a comparison) and their geometry (roads missing
    from the layer files are left out)."""
    index = context.road_index()
    rows = [(rid, index[rid][2].get("name") or rid, value, index[rid][0], index[rid][1])
            for rid, value in zip(values["scope_id"].astype(str), values[column]) if rid in index]
    return pd.DataFrame(rows, columns=["road_id", "name", "value", "lon", "lat"])


def build_map(state: q.ViewState, window: q.Window, index: int, locale: str):
    """(figure dict, frame time) of one map frame; cached whole, so other planners on the same
    view (and replays of it) get it without recomputing.  Sensor markers are sensor-level data:
    only planners and above get that layer, and the vehicles layer (ids, routes, positions), as in
    the read API (:data:`SENSOR_LEVEL_LAYERS`)."""
    if any(n in state.layers for n in SENSOR_LEVEL_LAYERS) and not context.role_allows("planner"):
        state = replace(state, layers=tuple(n for n in state.layers if n not in SENSOR_LEVEL_LAYERS))
    key = f"figure:{locale}:{state}:{window.start.isoformat()}:{window.resolution}:{index}"
    return _cached(key, lambda: _build_map(state, window, index, locale))


def _build_map(state: q.ViewState, window: q.Window, index: int, locale: str):
    t = translator(locale)
    cat = context.catalogue()
    city = runtime().city
    data = map_data(state, window, index)
    offset = q.compare_offset(state, window)
    labels = {"districts": t("explore.layer.districts"), "vehicles": t("explore.layer.vehicles"),
              "sensors": t("explore.layer.sensors"), "route": t("explore.route"),
              **{f"status.{s}": t(f"explore.status.{s}") for s in fig.STATUS_COLOURS}}
    m = fig.MapLayers(centre=tuple(city.centre), zoom=city.zoom, district_outline_url=layer_url("districts"),
                      base_roads_url=layer_url("roads"), labels=labels)
    if "districts" in data:
        kpi = cat[state.kpi]
        m.districts_url, m.district_values = layer_url("districts"), data["districts"]
        m.district_names, m.better, m.diff = data["names"], kpi.better, offset is not None
        m.kpi_label = kpi.text(locale)[0] + (f" · {t('explore.difference')}" if offset is not None else "")
        m.kpi_unit = kpi.unit
    if "roads" in data:
        road = cat[state.road]
        m.road_lines = road_lines(data["roads"], "delta" if offset is not None else "value")
        m.road_label = road.text(locale)[0] + (f" · {t('explore.difference')}" if offset is not None else "")
        m.road_unit, m.road_better, m.road_diff = road.unit, road.better, offset is not None
    if "transit" in state.layers:
        m.transit_lines = [{"route_id": rid, "name": props.get("short_name") or rid,
                            "colour": _colour(props.get("colour")), "lon": lon, "lat": lat}
                           for rid, (lon, lat, props) in context.transit_index().items()]
        m.stops_url = layer_url("stops")
    if "vehicles" in data:
        m.vehicles = data["vehicles"]
    if "sensors" in data:
        m.sensors = q.cluster(data["sensors"], context.settings().explore_max_points, tuple(city.bbox))
    m.extras = [(layer_url(name), style) for name, style in context.extra_layers().items()
                if f"extra:{name}" in state.layers]
    return fig.map_figure(m), data["at"]


def _colour(value) -> str:
    text = str(value or "").strip().lstrip("#")
    return f"#{text}" if len(text) in (3, 6) and all(c in "0123456789abcdefABCDEF" for c in text) else "#1565c0"


def view_state(layers, kpi, road, kinds, compare, cfrom, window: q.Window) -> q.ViewState:
    query = {"layers": ",".join(layers or []) or "-", "kpi": kpi or "", "road": road or "",
             "kinds": ",".join(kinds or []), "cmp": compare or "none", "cfrom": cfrom or ""}
    state, _ = q.parse_state(query, context.catalogue(), city_tz(), context.extra_layers())
    return q.resolved(state, context.catalogue())


def export_links(state: q.ViewState, window: q.Window, at: datetime, locale: str) -> tuple[str, str]:
    """CSV of the district layer over the window (what the replay shows); GeoJSON of the frame's map
    (with a comparison: the values then and the difference, as the map shows it)."""
    stamp = lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    csv_q = {"scope": "district", "from": stamp(window.start), "to": stamp(window.end),
             "resolution": window.resolution, "format": "csv", "lang": locale}
    geo_q = {"kpi": state.kpi, "at": stamp(at), "resolution": window.resolution, "format": "geojson",
             **_then(state, window, at)}
    return (f"/api/v1/kpis/{state.kpi}/series?{urlencode(csv_q)}",
            f"/api/v1/layers/districts?{urlencode(geo_q)}")


def _then(state: q.ViewState, window: q.Window, at: datetime) -> dict:
    """``then=`` of the comparison frame when a comparison is on (the map shows the difference)."""
    offset = q.compare_offset(state, window)
    return {} if offset is None else {"then": (at - offset).strftime("%Y-%m-%dT%H:%M:%SZ")}


SENSOR_LEVEL_LAYERS = ("sensors", "vehicles")  # planner and above, as in the read API


def layer_exports(state: q.ViewState, window: q.Window, at: datetime, sensor_level: bool) -> list[tuple[str, str, str]]:
    """(layer, GeoJSON link, CSV link) of the frame for every other data layer on the map (roads by
    their KPI, sensors by kind and health, vehicles); sensor-level layers only for ``sensor_level``."""
    out = []
    for layer in ("roads", "sensors", "vehicles"):
        if layer not in state.layers or (layer in SENSOR_LEVEL_LAYERS and not sensor_level):
            continue
        query = {"at": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "resolution": window.resolution}
        if layer == "roads":
            query.update({"kpi": state.road, **_then(state, window, at)})
        if layer == "sensors" and state.kinds:
            query["kinds"] = ",".join(state.kinds)
        out.append((layer, f"/api/v1/layers/{layer}?{urlencode({**query, 'format': 'geojson'})}",
                    f"/api/v1/layers/{layer}?{urlencode({**query, 'format': 'csv'})}"))
    return out


def layer_export_list(state: q.ViewState, window: q.Window, at: datetime, locale: str) -> list:
    """The export links of :func:`layer_exports` as list items for the page."""
    t = translator(locale)
    items = []
    for layer, geojson, csv_href in layer_exports(state, window, at, context.role_allows("planner")):
        name = t(f"explore.layer.{layer}")
        items.append(html.Li([
            html.A(t("explore.export.layer_geojson", layer=name), id=f"explore-export-{layer}-geojson",
                   href=geojson, download="", className="explore-button"),
            html.A(t("explore.export.layer_csv", layer=name), id=f"explore-export-{layer}-csv",
                   href=csv_href, download="", className="explore-button")]))
    return items


# -- the series chart ------------------------------------------------------------------------------------

def series_data(kpi: str, scope: str, scope_id: str | None, window: q.Window) -> pd.DataFrame:
    key = f"series:{kpi}:{scope}:{scope_id}:{window.start.isoformat()}:{window.end.isoformat()}:{window.resolution}"

    def compute():
        with context.connection() as conn:
            return q.series_for(conn, context.catalogue(), kpi, scope, scope_id, window)

    return _cached(key, compute)


def selection_from_click(click: dict | None) -> str | None:
    """``"<scope>:<id>"`` of the clicked map point (None for a cluster or empty space)."""
    for point in (click or {}).get("points", []):
        custom = point.get("customdata")
        if isinstance(custom, list):
            custom = custom[0] if custom else None
        if isinstance(custom, str) and ":" in custom and custom.split(":", 1)[0] in q.SCOPES:
            return custom
    return None


def panel(kind: str, ident: str, state: q.ViewState, window: q.Window, at: datetime, locale: str):
    t = translator(locale)
    if kind == "sensor":
        return sensor_panel(ident, window, at, locale)
    cat = context.catalogue()
    tz = city_tz()
    with context.connection() as conn:
        names = q.district_names(conn) if kind == "district" else {}
        rows = []
        registry = evaluate.load_registry(conn)
        for k in q.kpis_for_scope(cat, kind):
            value = q.scope_values(conn, cat, k.id, kind, at, window, registry, scope_id=ident)
            value = value[value["scope_id"].astype(str) == ident]
            v = value.iloc[0] if len(value) else None
            rows.append(html.Tr([html.Th(k.text(locale)[0], scope="row"),
                                 html.Td(_value_text(None if v is None else v["value"], k.unit, locale)),
                                 html.Td(i18n.percent(None if v is None or not np.isfinite(v["confidence"])
                                                      else float(v["confidence"]), locale))]))
        alerts = q.recent_alerts(conn, kind, ident)
    chosen = {"district": state.kpi, "road": state.road}.get(kind) or next(
        (k.id for k in q.kpis_for_scope(cat, kind)), None)
    children = [html.H2(f"{t('explore.scope.' + kind)}: {names.get(ident, ident)}", id="explore-panel-title")]
    if not rows:
        return children + [html.P(t("explore.panel.nokpis"))]
    children.append(html.Table(className="explore-table", id="explore-panel-kpis", children=[
        html.Thead(html.Tr([html.Th(t("explore.panel.kpi")), html.Th(t("explore.panel.value")),
                            html.Th(t("explore.panel.confidence"))])),
        html.Tbody(rows)]))
    if chosen:
        k = cat[chosen]
        series = series_data(chosen, kind, ident, window)
        share, conf = q.completeness(series, window)
        children += [
            html.H3(k.text(locale)[0]),
            dcc.Graph(id="explore-panel-series", figure=fig.series_figure(series, tz, k.text(locale)[0], k.unit,
                                                                          frame_at=at, height=200),
                      config={"displaylogo": False}),
            html.P(t("explore.panel.completeness", share=i18n.percent(share, locale),
                     confidence=i18n.percent(conf, locale),
                     resolution=t(f"explore.resolution.{window.resolution}")), id="explore-panel-completeness"),
        ]
    children += [html.H3(t("explore.panel.alerts")), _alerts_table(alerts, locale, tz)]
    return children


def _value_text(value, unit: str, locale: str) -> str:
    if value is None or not np.isfinite(float(value)):
        return "–"
    return f"{i18n.number(float(value), locale)} {unit}"


def alert_subject(alert: dict, locale: str) -> str:
    """What an alert is about, in words: the KPI's label, or the health check's name."""
    cat = context.catalogue()
    kpi_id = alert.get("kpi_id") or ""
    if kpi_id in cat.kpis:
        return cat[kpi_id].text(locale)[0]
    if kpi_id in ("sensor_silent", "sensor_stuck", "sensor_out_of_range"):
        return i18n.t(f"explore.health.{kpi_id}", locale)
    return kpi_id or i18n.t(f"explore.kind.{alert['kind']}", locale)


def _alerts_table(alerts: list[dict], locale: str, tz: str):
    t = translator(locale)
    if not alerts:
        return html.P(t("explore.panel.noalerts"), id="explore-panel-alerts")
    return html.Table(className="explore-table", id="explore-panel-alerts", children=[
        html.Thead(html.Tr([html.Th(t("explore.alert.opened")), html.Th(t("explore.alert.what")),
                            html.Th(t("explore.alert.severity")), html.Th(t("explore.alert.state"))])),
        html.Tbody([html.Tr([html.Td(i18n.datetime_text(a["opened_at"], locale, tz, "short")),
                             html.Td(alert_subject(a, locale)),
                             html.Td(t(f"explore.severity.{a['severity']}")),
                             html.Td(t(f"explore.state.{a['state']}"))]) for a in alerts])])


def sensor_panel(external_id: str, window: q.Window, at: datetime, locale: str):
    t = translator(locale)
    tz = city_tz()
    if not context.role_allows("planner"):
        return [html.H2(f"{t('explore.scope.sensor')}: {external_id}", id="explore-panel-title"),
                html.P(t("explore.panel.planner_only"))]
    with context.connection() as conn:
        info = q.sensor_info(conn, external_id)
        if info is None:
            return [html.P(t("explore.panel.unknown", value=external_id))]
        series = q.sensor_series(conn, info["sensor_id"], window)
        latest = q.latest_readings(conn, info["sensor_id"], at + window.width, PANEL_ROWS)
        dead = q.dead_letters_for(conn, external_id, PANEL_ROWS)
        alerts = q.recent_alerts(conn, "sensor", external_id)
    export = "/api/v1/sensors/{}/readings?{}".format(quote(external_id, safe=""), urlencode(
        {"from": window.start.strftime("%Y-%m-%dT%H:%M:%SZ"), "to": window.end.strftime("%Y-%m-%dT%H:%M:%SZ"),
         "format": "csv"}))
    return [
        html.H2(f"{t('explore.scope.sensor')}: {info['name']}", id="explore-panel-title"),
        html.P(t("explore.sensor.about", id=external_id, kind=info["kind"] or "–",
                 district=info["district_id"] or "–",
                 last_seen=i18n.datetime_text(info["last_seen"], locale, tz, "short"))),
        dcc.Graph(id="explore-panel-series", figure=fig.metric_figure(series, tz), config={"displaylogo": False}),
        html.P(t("explore.sensor.completeness", share=i18n.percent(q.sensor_completeness(series, window), locale),
                 resolution=t(f"explore.resolution.{window.resolution}")), id="explore-panel-completeness"),
        html.A(t("explore.export.readings"), id="explore-export-readings", href=export, download="",
               className="explore-button"),
        html.H3(t("explore.sensor.readings")),
        html.Table(className="explore-table", id="explore-panel-readings", children=[
            html.Thead(html.Tr([html.Th(t("explore.sensor.time")), html.Th(t("explore.sensor.metric")),
                                html.Th(t("explore.panel.value"))])),
            html.Tbody([html.Tr([html.Td(i18n.datetime_text(tm, locale, tz, "medium")), html.Td(metric),
                                 html.Td(i18n.number(value, locale, 2))]) for tm, metric, value in latest])]),
        html.H3(t("explore.sensor.dead_letters")),
        html.Table(className="explore-table", id="explore-panel-dead-letters", children=[
            html.Thead(html.Tr([html.Th(t("explore.sensor.time")), html.Th(t("explore.sensor.topic")),
                                html.Th(t("explore.sensor.reason"))])),
            html.Tbody([html.Tr([html.Td(i18n.datetime_text(d["received_at"], locale, tz, "medium")),
                                 html.Td(d["topic"]), html.Td(d["reason"])]) for d in dead])])
        if dead else html.P(t("explore.sensor.no_dead_letters"), id="explore-panel-dead-letters"),
        html.H3(t("explore.panel.alerts")), _alerts_table(alerts, locale, tz),
    ]




def series_figure_for(kpi, window: q.Window, compare, cfrom, index, locale: str):
    """The series chart: the district KPI city-wide over the window, the comparison period overlaid."""
    state = view_state(["districts"], kpi, "", [], compare, cfrom, window)
    cat = context.catalogue()
    k = cat[state.kpi]
    current = series_data(state.kpi, "city", None, window)
    offset = q.compare_offset(state, window)
    other = None
    if offset is not None:
        other = series_data(state.kpi, "city", None, q.Window(window.start - offset, window.end - offset,
                                                             window.resolution, window.width))
    at = window.frame_time(slider_index(index, window))
    return fig.series_figure(current, city_tz(), k.text(locale)[0], k.unit, compare=other, offset=offset,
                             compare_name=i18n.t(f"explore.compare.{state.compare}", locale), frame_at=at)
