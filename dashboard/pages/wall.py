"""``/wall``: the operator wall screen (issue #6); see docs/wall.md.

``/wall?view=mobility``, ``/wall?rotate=30&views=overview,mobility,transport,infrastructure``,
``&district=<id>`` pins a district, ``&refresh=<s>`` overrides ``CITYDASH_WALL_REFRESH_S``,
``&lang=pt-BR|en|ja``.  The layout is built once; afterwards one callback per refresh
sends only changed values (``dash.Patch`` for the map and the sparklines).  Data come
from ``dashboard.queries.wall`` through ``dashboard.cache.bucketed``: one computed
result per time bucket serves every screen.  The clock, the view rotation and the
"server unreachable" banner run in the browser (assets/wall_clientside.js), so they
keep working while the network is down.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from datetime import datetime, timezone
from functools import lru_cache

import dash
from dash import (
    ALL,
    ClientsideFunction,
    Input,
    Output,
    State,
    callback,
    clientside_callback,
    ctx,
    dcc,
    html,
)

from core.db import pool
from dashboard import cache, i18n
from dashboard.auth import audit, current_user
from dashboard.figures import basemap
from dashboard.figures import wall as fig
from dashboard.layer_files import layer_geojson, layer_url, manifest
from dashboard.queries import wall as q
from dashboard.state import catalogue_of, runtime
from kpis.catalogue import Catalogue

log = logging.getLogger(__name__)

dash.register_page(__name__, path="/wall", name="wall", title="citydash · wall")

SLOTS = q.MAX_TILES
LAST_WEEK_TTL_S = 300
ROADS_BAND = "district"
MAP_PX = (740, 960)  # the map's size on a 1920x1080 screen (assets/wall.css); 4K shows more around it
_ack_generation = [0]  # bumped by an acknowledgement so this process re-reads the alerts at once


# -- data (cached; every screen shares one result per bucket) ---------------------------

_last: dict[str, tuple[int, object]] = {}  # key -> (bucket, value) last seen by this process
_refreshing: set[str] = set()
_refresh_lock = threading.Lock()


def shared(key: str, ttl_s: float, compute):
    """``cache.bucketed`` without making a screen wait for a recomputation.

    Every bucket's value is still computed once for all screens (``bucketed``'s
    single flight); but when this process holds the previous bucket's value, the
    request gets that at once and the new bucket is fetched or computed in a
    background thread (stale-while-revalidate, at most one bucket old).  A process
    without the previous bucket's value waits, as with ``bucketed``.
    """
    key = f"{key}@{_database_tag()}"
    now_bucket = cache.bucket(ttl_s)
    found = _last.get(key)
    if found is not None and found[0] == now_bucket:
        return found[1]

    def fetch():
        value = cache.bucketed(key, ttl_s, compute)
        _last[key] = (now_bucket, value)
        return value

    if found is None or now_bucket - found[0] > 1:  # nothing recent enough to show meanwhile
        return fetch()
    with _refresh_lock:
        start = key not in _refreshing
        _refreshing.add(key)
    if start:
        def run():
            try:
                fetch()
            except Exception as exc:  # the next request tries again; the screen keeps the last value
                log.warning("wall: refreshing %s failed: %s", key, exc)
            finally:
                with _refresh_lock:
                    _refreshing.discard(key)

        threading.Thread(target=run, name=f"wall-refresh-{key}", daemon=True).start()
    return found[1]


def _database_tag() -> str:
    """Which database a cached value came from (several apps may share a process: tests, benchmarks)."""
    return hashlib.sha1(runtime().settings.role_url("reader").encode()).hexdigest()[:12]


def _forget_live() -> None:
    """After an acknowledgement: the next refresh reads the alerts anew (new cache key)."""
    _ack_generation[0] += 1
    for key in [k for k in _last if k.startswith("wall:live:")]:
        _last.pop(key, None)


def _with_conn(fn):
    with pool(runtime().settings).connection() as conn:
        return fn(conn)


def kpi_data() -> dict:
    s = runtime().settings
    cat = catalogue_of(s.city_pack)
    return shared("wall:kpis", s.wall_cache_s, lambda: _with_conn(lambda c: q.kpi_snapshot(c, cat)))


def last_week_data() -> dict:
    cat = catalogue_of(runtime().settings.city_pack)
    return shared("wall:last-week", LAST_WEEK_TTL_S, lambda: _with_conn(lambda c: q.last_week(c, cat)))


def district_data(district: str) -> dict:
    s = runtime().settings
    cat = catalogue_of(s.city_pack)
    return shared(f"wall:district:{district}", s.wall_cache_s,
                  lambda: _with_conn(lambda c: q.district_series(c, cat, district)))


def live_data(ttl_s: int) -> dict:
    return shared(f"wall:live:{ttl_s}:{_ack_generation[0]}", ttl_s, lambda: _with_conn(q.live_snapshot))


@lru_cache(maxsize=4)
def geography(pack: str) -> dict:
    """District ids, names, centres and bounds; roads of the district band (server-side colouring)."""
    districts = layer_geojson("districts")
    ids = [str(f["properties"]["id"]) for f in districts["features"]]
    names = {str(f["properties"]["id"]): str(f["properties"].get("name") or f["properties"]["id"])
             for f in districts["features"]}
    return {"ids": ids, "names": names, "centres": basemap.centroids(districts),
            "roads": layer_geojson("roads", ROADS_BAND)}


def _sources() -> tuple[dict, dict]:
    man = manifest()
    names = [n for n in man["layers"] if n not in ("stops", "transit_lines")]
    order = ["districts"] + [n for n in names if n not in ("districts", "roads")] + ["roads"]
    styles = {n: (man["layers"].get(n) or {}).get("style") for n in order}
    return {n: layer_url(n) for n in order if n in man["layers"]}, styles


# -- layout --------------------------------------------------------------------------

def layout(lang: str | None = None, view: str | None = None, views: str | None = None,
           rotate: str | None = None, district: str | None = None, refresh: str | None = None, **_query):
    rt = runtime()
    city = rt.city
    locale = i18n.negotiate(lang, city_locale=city.locale)
    try:
        geo = geography(rt.settings.city_pack)
        req = q.parse_request(view, views, rotate, district, refresh, rt.settings.wall_refresh_s, set(geo["ids"]))
    except q.WallRequestError as exc:
        return _error_page(locale, i18n.t(exc.key, locale, **exc.values))
    first = req.views[0]
    config = {
        "locale": locale, "views": list(req.views), "district": req.district, "refresh_s": req.refresh_s,
        "tz": city.timezone, "offline_after_ms": max(3 * req.refresh_s, 10) * 1000,
        "offline_text": i18n.t("wall.offline", locale, time="{time}"),
    }
    body = render(first, config, version=None, initial=True)
    t = lambda key, **kw: i18n.t(key, locale, **kw)  # noqa: E731
    header = html.Header(className="wall-header", children=[
        html.Div(className="wall-city", children=[
            html.H1(city.name, id="wall-city"),
            html.Span(body["view_name"], id="wall-view-name", className="wall-view-name"),
            html.Span(t("wall.district_pin", district=geo["names"][req.district]) if req.district else "",
                      id="wall-district", className="wall-district")]),
        html.Div(className="wall-time", children=[
            html.Span(i18n.time_text(datetime.now(timezone.utc), locale, city.timezone), id="wall-clock",
                      className="wall-clock", title=t("wall.clock_label", city=city.name)),
            html.Span(body["freshness"], id="wall-freshness", className="wall-freshness")]),
    ])
    tiles = [html.Div(id="wall-takeover", className=body["takeover_class"], children=body["takeover"],
                      role="alert")]
    for i in range(SLOTS):
        tile = body["tiles"][i]
        tiles.append(html.Div(id={"type": "wall-tile", "slot": i}, className=tile["class"], children=[
            html.Div(tile["label"], id={"type": "wall-tile-label", "slot": i}, className="wall-tile-label"),
            html.Div(className="wall-tile-main", children=[
                html.Span(tile["value"], id={"type": "wall-tile-value", "slot": i}, className="wall-tile-value"),
                html.Span(tile["unit"], id={"type": "wall-tile-unit", "slot": i}, className="wall-tile-unit"),
                html.Span(tile["status"], id={"type": "wall-tile-status", "slot": i}, className="wall-tile-status")]),
            html.Div(tile["trend"], id={"type": "wall-tile-trend", "slot": i}, className=tile["trend_class"]),
            dcc.Graph(id={"type": "wall-spark", "slot": i}, figure=body["sparks"][i], className="wall-spark",
                      config={"staticPlot": True, "displayModeBar": False}, responsive=True),
            html.Div(tile["confidence"], id={"type": "wall-tile-conf", "slot": i}, className="wall-tile-conf"),
        ]))
    return html.Main(className="wall", lang=locale, children=[
        dcc.Store(id="wall-config", data=config),
        dcc.Store(id="wall-view", data=first),
        dcc.Store(id="wall-version", data=body["version"]),
        dcc.Store(id="wall-heartbeat", data=body["heartbeat"]),
        dcc.Interval(id="wall-refresh", interval=req.refresh_s * 1000, n_intervals=0),
        dcc.Interval(id="wall-rotate", interval=max(req.rotate_s, 1) * 1000, n_intervals=0,
                     disabled=req.rotate_s == 0),
        dcc.Interval(id="wall-tick", interval=1000, n_intervals=0),
        header,
        html.Div(body["banner"], id="wall-banner", className=body["banner_class"], role="status"),
        html.Div(id="wall-offline", className="wall-banner wall-hidden", role="alert"),
        html.Div(className="wall-body", children=[
            html.Section(tiles, id="wall-tiles", className="wall-tiles"),
            html.Section(className="wall-map", **{"aria-label": t("wall.map.label")}, children=[
                dcc.Graph(id="wall-map", figure=body["map"], className="wall-map-graph",
                          config={"displayModeBar": False, "scrollZoom": False, "doubleClick": False},
                          responsive=True),
                html.Ul(id="wall-legend", className="wall-legend", children=body["legend"])]),
            html.Aside(className="wall-alerts", children=[
                html.H2(t("wall.alerts.title")),
                html.P(id="wall-ack-message", className="wall-ack-message", role="status"),
                html.Ul(body["alerts"], id="wall-alerts", className="wall-alert-list")]),
        ]),
        _ack_dialog(locale),
    ])


def _error_page(locale: str, message: str):
    return html.Main(className="wall wall-error", lang=locale, children=[
        html.H1(i18n.t("wall.error.title", locale)),
        html.P(message, id="wall-error", role="alert"),
        html.P(i18n.t("wall.error.hint", locale), className="wall-error-hint")])


def _ack_dialog(locale: str):
    t = lambda key, **kw: i18n.t(key, locale, **kw)  # noqa: E731
    return html.Div(id="wall-ack-dialog", className="wall-dialog wall-hidden", role="dialog", children=[
        dcc.Store(id="wall-ack-target"),
        html.H2(id="wall-ack-title"),
        html.Label([t("wall.ack.comment"), dcc.Textarea(id="wall-ack-comment", className="wall-ack-comment",
                                                        maxLength=500)]),
        html.Div(className="wall-dialog-buttons", children=[
            html.Button(t("wall.ack.confirm"), id="wall-ack-confirm", className="wall-button wall-button-primary"),
            html.Button(t("wall.ack.cancel"), id="wall-ack-cancel", className="wall-button")]),
    ])


# -- rendering (shared by the layout and the refresh callback) ---------------------------------

def _user():
    try:
        return current_user()
    except RuntimeError:  # outside a request
        return None


def _can_ack() -> bool:
    user = _user()
    return bool(user is not None and user.has_role("operator"))


def render(view: str, config: dict, version: str | None, initial: bool = False) -> dict:
    """Everything the wall shows for ``view``; sparklines and map as whole figures when
    ``initial``, else as ``Patch`` (sparklines and roads only when the data changed)."""
    rt = runtime()
    locale, district = config["locale"], config.get("district")
    cat = catalogue_of(rt.settings.city_pack)
    geo = geography(rt.settings.city_pack)
    now = datetime.now(timezone.utc)
    error = None
    try:
        snap = kpi_data()
        week = last_week_data()
        live = live_data(config["refresh_s"])
        dseries = district_data(district) if district else {}
    except Exception as exc:  # the database is down: keep the screen, show the banner
        log.warning("wall: data unavailable: %s", exc)
        error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        snap, week, live, dseries = {"at": "", "kpis": {}, "roads": {}}, {}, {"alerts": [], "faults": [],
                                                                            "vehicles": [], "newest": None}, {}
    new_version = f"{snap['at']}|{view}|{district or ''}"
    changed = initial or new_version != version
    t = lambda key, **kw: i18n.t(key, locale, **kw)  # noqa: E731

    critical = q.takeover(live["alerts"])
    ids = q.view_kpis(cat, view)[: SLOTS - (1 if critical else 0)]
    tiles, sparks = [], []
    for i in range(SLOTS):
        kpi = cat[ids[i]] if i < len(ids) else None
        entry = snap["kpis"].get(kpi.id) if kpi else None
        times, values = (entry or {}).get("series_t", []), (entry or {}).get("series_v", [])
        if kpi and district and "district" in kpi.scopes and entry:
            conf, sensors, expected = entry.get("district_counts", {}).get(district, [None, 0, 0])
            entry = {"value": entry["districts"].get(district), "confidence": conf, "sensors": sensors,
                     "expected": expected, "level": entry.get("district_levels", {}).get(district, "unknown")}
            ds = dseries.get(kpi.id, {})
            times, values = ds.get("t", []), ds.get("v", [])
        if kpi is None:
            tiles.append({"class": "wall-tile wall-hidden", "label": "", "status": "", "value": "", "unit": "",
                          "trend": "", "trend_class": "wall-trend", "confidence": ""})
        else:
            tx = fig.tile(kpi, entry, None if district else week.get(kpi.id), locale)
            tx["status"] = f"{tx['icon']} {tx['status_text']}"
            tiles.append(tx)
        if initial:
            sparks.append(fig.sparkline(times, values, kpi))
        else:
            sparks.append(fig.sparkline_patch(times, values, kpi) if changed else dash.no_update)

    mkpi_id = q.map_kpi(cat, view)
    mkpi = cat[mkpi_id] if mkpi_id else None
    road_kpi = cat[q.ROAD_KPI] if q.ROAD_KPI in cat.kpis else None
    data = fig.map_data(mkpi, snap, live, geo["ids"], geo["names"], geo["roads"], geo["centres"], road_kpi, locale,
                        cat.kpis)
    if initial:  # the view (centre, zoom) is set once; refreshes keep it (uirevision)
        centre, zoom = rt.city.centre, basemap.zoom_for(rt.city.bbox, *MAP_PX)
        box = basemap.bounds(layer_geojson("districts"), district) if district else None
        if box:
            centre, zoom = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), basemap.zoom_for(box, *MAP_PX)
        sources, styles = _sources()
        map_out = fig.map_figure(mkpi, data, districts_source=layer_url("districts"), base_sources=sources,
                                 styles=styles, district_ids=geo["ids"], centre=centre, zoom=zoom,
                                 tile_url=rt.settings.map_tile_url)
    else:
        if not changed:  # KPI values unchanged: only the live points
            data = {k: v for k, v in data.items() if k.startswith(("incidents", "faults", "vehicles"))}
        map_out = fig.map_patch(mkpi, data) if changed else fig.traces_patch(data)

    newest = datetime.fromisoformat(live["newest"]) if live.get("newest") else None
    stale = error is not None or q.is_stale(live.get("newest"), now, rt.settings.wall_stale_after_s)
    if error is not None:
        banner = t("wall.error.data", error=error)
    elif newest is None:
        banner = t("wall.stale.none")
    else:
        banner = t("wall.stale", time=i18n.time_text(newest, locale, config["tz"]),
                   age=fig.age_text((now - newest).total_seconds(), locale))
    freshness = t("wall.as_of", time=i18n.time_text(newest, locale, config["tz"])) if newest else t("wall.no_data_yet")
    return {
        "tiles": tiles, "sparks": sparks, "map": map_out, "version": new_version,
        "takeover": _takeover(critical, cat, locale, now, config["tz"]) if critical else [],
        "takeover_class": "wall-takeover" if critical else "wall-takeover wall-hidden",
        "alerts": _alerts(live["alerts"], cat, locale, now, config["tz"]),
        "banner": banner if stale else "", "banner_class": "wall-banner wall-stale" if stale else "wall-banner wall-hidden",
        "freshness": freshness, "view_name": t(f"wall.view.{view}"),
        "heartbeat": now.isoformat(), "legend": _legend(mkpi, locale),
    }


def _legend(kpi, locale: str):
    t = lambda key, **kw: i18n.t(key, locale, **kw)  # noqa: E731
    rows = [("wall-legend-districts", t("wall.map.legend.districts", kpi=kpi.text(locale)[0] if kpi else "–")),
            ("wall-legend-roads", t("wall.map.legend.roads")),
            ("wall-legend-incidents", t("wall.map.legend.incidents")),
            ("wall-legend-faults", t("wall.map.legend.faults")),
            ("wall-legend-vehicles", t("wall.map.legend.vehicles"))]
    return [html.Li([html.Span(className=f"wall-swatch {cls}"), text]) for cls, text in rows]


def _takeover(alert: dict, cat: Catalogue, locale: str, now: datetime, tz: str):
    item = fig.alert_item(alert, cat.kpis, locale, now, tz)
    return [html.Div(f"{item['icon']} {i18n.t('wall.takeover.title', locale)}", className="wall-takeover-title"),
            html.Div(item["title"], className="wall-takeover-what"),
            html.Div(item["value"], className="wall-takeover-value"),
            html.Div(f"{item['age']} · #{item['id']}", className="wall-takeover-age"),
            html.Div(i18n.t("wall.takeover.hint", locale), className="wall-takeover-hint")]


def _alerts(alerts: list[dict], cat: Catalogue, locale: str, now: datetime, tz: str, shown: int = 10):
    if not alerts:
        return [html.Li(i18n.t("wall.alerts.none", locale), className="wall-alert wall-alert-none")]
    can_ack = _can_ack()
    rows = []
    for alert in alerts[:shown]:
        item = fig.alert_item(alert, cat.kpis, locale, now, tz)
        children = [
            html.Div(className="wall-alert-head", children=[
                html.Span(f"{item['icon']} {item['severity_text']}", className="wall-alert-severity"),
                html.Span(item["age"], className="wall-alert-age", title=item["opened"])]),
            html.Div(item["title"], className="wall-alert-title"),
            html.Div(f"{item['kind']} · {item['value']}" if item["value"] else item["kind"], className="wall-alert-value"),
        ]
        if item["acked"]:
            children.append(html.Div(item["acked"], className="wall-alert-acked"))
        elif can_ack:
            children.append(html.Button(i18n.t("wall.ack.button", locale), className="wall-button wall-ack-open",
                                        id={"type": "wall-ack-open", "alert": item["id"]}))
        rows.append(html.Li(children, className=f"wall-alert wall-level-{item['severity']}"
                            + (" wall-alert-ack" if item["acked"] else ""), **{"data-alert": str(item["id"])}))
    if len(alerts) > shown:
        rows.append(html.Li(i18n.t("wall.alerts.more", locale, count=len(alerts) - shown), className="wall-alert-more"))
    return rows


# -- callbacks -------------------------------------------------------------------------

def _slots(prop: str):
    return Output({"type": prop, "slot": ALL}, "children")


@callback(
    Output({"type": "wall-tile", "slot": ALL}, "className"), _slots("wall-tile-label"), _slots("wall-tile-status"),
    _slots("wall-tile-value"), _slots("wall-tile-unit"), _slots("wall-tile-trend"),
    Output({"type": "wall-tile-trend", "slot": ALL}, "className"), _slots("wall-tile-conf"),
    Output({"type": "wall-spark", "slot": ALL}, "figure"),
    Output("wall-takeover", "children"), Output("wall-takeover", "className"),
    Output("wall-map", "figure"), Output("wall-legend", "children"), Output("wall-alerts", "children"),
    Output("wall-banner", "children"), Output("wall-banner", "className"), Output("wall-freshness", "children"),
    Output("wall-view-name", "children"), Output("wall-heartbeat", "data"), Output("wall-version", "data"),
    Input("wall-refresh", "n_intervals"), Input("wall-view", "data"),
    State("wall-config", "data"), State("wall-version", "data"),
    prevent_initial_call=True)
def refresh(_n, view, config, version):
    if not config or view not in q.VIEWS:
        raise dash.exceptions.PreventUpdate
    body = render(view, config, version)
    tiles = body["tiles"]
    return ([x["class"] for x in tiles], [x["label"] for x in tiles], [x["status"] for x in tiles],
            [x["value"] for x in tiles], [x["unit"] for x in tiles], [x["trend"] for x in tiles],
            [x["trend_class"] for x in tiles], [x["confidence"] for x in tiles], body["sparks"],
            body["takeover"], body["takeover_class"], body["map"], body["legend"], body["alerts"],
            body["banner"], body["banner_class"], body["freshness"], body["view_name"], body["heartbeat"],
            body["version"])


clientside_callback(ClientsideFunction("wall", "rotate"), Output("wall-view", "data"),
                    Input("wall-rotate", "n_intervals"), State("wall-config", "data"), State("wall-view", "data"),
                    prevent_initial_call=True)

clientside_callback(ClientsideFunction("wall", "tick"), Output("wall-clock", "children"),
                    Output("wall-offline", "children"), Output("wall-offline", "className"),
                    Input("wall-tick", "n_intervals"), Input("wall-heartbeat", "data"), State("wall-config", "data"))


@callback(Output("wall-ack-dialog", "className"), Output("wall-ack-target", "data"), Output("wall-ack-title", "children"),
          Output("wall-ack-comment", "value"), Output("wall-ack-message", "children"),
          Input({"type": "wall-ack-open", "alert": ALL}, "n_clicks"), Input("wall-ack-confirm", "n_clicks"),
          Input("wall-ack-cancel", "n_clicks"), State("wall-ack-target", "data"), State("wall-ack-comment", "value"),
          State("wall-config", "data"), prevent_initial_call=True)
def acknowledge(_opened, _confirm, _cancel, target, comment, config):
    locale = (config or {}).get("locale", i18n.DEFAULT_LOCALE)
    hidden, shown = "wall-dialog wall-hidden", "wall-dialog"
    trigger = ctx.triggered_id
    nothing = dash.no_update
    if isinstance(trigger, dict) and trigger.get("type") == "wall-ack-open":
        if not ctx.triggered or not ctx.triggered[0].get("value"):
            raise dash.exceptions.PreventUpdate  # a re-rendered button, not a click
        if not _can_ack():
            return hidden, None, "", "", i18n.t("wall.ack.error.role", locale)
        alert_id = int(trigger["alert"])
        return shown, alert_id, i18n.t("wall.ack.title", locale, id=alert_id), "", ""
    if trigger == "wall-ack-cancel":
        return hidden, None, nothing, "", ""
    if trigger != "wall-ack-confirm" or target is None:
        raise dash.exceptions.PreventUpdate
    message, ok = acknowledge_as_user(int(target), comment or "", locale)
    return (hidden if ok else shown), (None if ok else target), nothing, ("" if ok else comment), message


def acknowledge_as_user(alert_id: int, comment: str, locale: str) -> tuple[str, bool]:
    """Acknowledge for the signed-in user (operator or above); (translated message, success)."""
    user = _user()
    if user is None or not user.has_role("operator"):
        return i18n.t("wall.ack.error.role", locale), False
    if not comment.strip():
        return i18n.t("wall.ack.error.comment", locale), False
    try:  # recorded first: an acknowledgement must not go ahead unrecorded
        audit("alert.acknowledge", {"alert": alert_id, "comment": comment.strip()[:500], "page": "wall"})
        result = _with_conn(lambda c: q.acknowledge(c, alert_id, user.name, comment))
    except q.AckError as exc:
        return i18n.t(exc.key, locale), False
    except Exception as exc:  # database down: a clear message, never a traceback
        log.warning("wall: acknowledgement of alert %s failed: %s", alert_id, exc)
        return i18n.t("wall.ack.error.db", locale, error=type(exc).__name__), False
    _forget_live()
    return i18n.t("wall.ack.done", locale, id=result["id"], who=result["by"]), True
