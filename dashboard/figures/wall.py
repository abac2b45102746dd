"""What the wall screen shows, as pure functions of the cached data (``dashboard.queries.wall``).

* :func:`tile` - the texts and classes of one KPI tile (value, unit, status by
  colour *and* shape, trend against last week, confidence).
* :func:`sparkline` / :func:`sparkline_patch` - the 24-hour SVG sparkline and the
  ``Patch`` that refreshes it (data and threshold line only).
* :func:`map_figure` / :func:`map_patch` - the live city map (districts by a KPI,
  roads by congestion, incidents, sensors in fault, vehicles) and its ``Patch``;
  trace order is fixed (:data:`TRACES`) so a refresh patches values in place.
* :func:`alert_item` - one alert list row (severity, age, acknowledgement).

Status colours are the Okabe-Ito palette (distinguishable with the common colour
vision deficiencies) and every status also has its own shape and word.
"""
from __future__ import annotations

from datetime import datetime
from typing import Mapping

import plotly.graph_objects as go
from dash import Patch

from dashboard import i18n
from dashboard.figures import basemap
from dashboard.queries.wall import level
from kpis.alerts import HEALTH_KPIS, LEVELS
from kpis.catalogue import Kpi

COLOURS = {"ok": "#56B4E9", "warning": "#E69F00", "critical": "#D55E00", "unknown": "#8b949e"}
ICONS = {"ok": "●", "warning": "▲", "critical": "◆", "unknown": "○"}
TRACES = ("districts", "roads-ok", "roads-warning", "roads-critical", "incidents-halo", "incidents",
          "faults-halo", "faults", "vehicles")
VEHICLE_COLOUR = "#f2f5f8"
FAULT_COLOUR = "#F0E442"


def digits(kpi: Kpi, value: float | None) -> int:
    if value is None:
        return 0
    return 0 if abs(value) >= 100 or kpi.unit in ("AQI", "veh/h", "kW", "s") else 1


def tile(kpi: Kpi, current: Mapping | None, last_week: float | None, locale: str) -> dict:
    """Texts and CSS classes of one tile; ``current`` is a KPI entry of ``kpi_snapshot``
    (or its district value when a district is pinned and the KPI has a district scope)."""
    current = current or {}
    label, _ = kpi.text(locale)
    value = current.get("value")
    status = current.get("level", "unknown")
    out = {
        "label": label, "unit": kpi.unit, "status": status, "icon": ICONS[status],
        "status_text": i18n.t(f"wall.status.{status}", locale),
        "value": i18n.number(value, locale, digits(kpi, value)),
        "class": f"wall-tile wall-level-{status}",
    }
    if value is None or last_week is None:
        out["trend"], out["trend_class"] = i18n.t("wall.trend.none", locale), "wall-trend"
    elif abs(value - last_week) < 1e-9 * max(1.0, abs(last_week)):
        out["trend"], out["trend_class"] = i18n.t("wall.trend.same", locale), "wall-trend"
    else:
        up = value > last_week
        better = up == (kpi.better == "higher")
        if last_week != 0:
            change = i18n.percent(abs(value - last_week) / abs(last_week), locale, 0)
        else:
            change = i18n.number(abs(value - last_week), locale, digits(kpi, value)) + " " + kpi.unit
        word = i18n.t("wall.trend.better" if better else "wall.trend.worse", locale)
        out["trend"] = i18n.t("wall.trend.up" if up else "wall.trend.down", locale, change=change) + f" ({word})"
        out["trend_class"] = "wall-trend " + ("wall-better" if better else "wall-worse")
    conf = current.get("confidence")
    if conf is None:
        out["confidence"] = i18n.t("wall.confidence.none", locale)
    else:
        out["confidence"] = i18n.t("wall.confidence", locale, value=i18n.percent(conf, locale),
                                   sensors=i18n.number(current.get("sensors", 0), locale, 0),
                                   expected=i18n.number(current.get("expected", 0), locale, 0))
    return out


def _threshold_shapes(kpi: Kpi | None) -> list[dict]:
    if kpi is None:
        return []
    shapes = []
    for lvl in ("warning", "critical"):
        y = getattr(kpi.thresholds, lvl)
        if y is not None:
            shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": y, "y1": y,
                           "line": {"color": COLOURS[lvl], "width": 1, "dash": "dot"}})
    return shapes


def sparkline(times: list, values: list, kpi: Kpi | None = None) -> go.Figure:
    """A 24-hour line, no axes (SVG: no WebGL context per tile)."""
    fig = go.Figure(go.Scatter(x=list(times), y=list(values), mode="lines", line={"color": "#c9d1d9", "width": 2},
                               hoverinfo="skip", connectgaps=False))
    fig.update_layout(margin={"l": 0, "r": 0, "t": 2, "b": 2}, paper_bgcolor="rgba(0,0,0,0)",
                      plot_bgcolor="rgba(0,0,0,0)", showlegend=False, shapes=_threshold_shapes(kpi),
                      xaxis={"visible": False, "fixedrange": True}, yaxis={"visible": False, "fixedrange": True},
                      uirevision="spark")
    return fig


def sparkline_patch(times: list, values: list, kpi: Kpi | None) -> Patch:
    p = Patch()
    p["data"][0]["x"] = list(times)
    p["data"][0]["y"] = list(values)
    p["layout"]["shapes"] = _threshold_shapes(kpi)
    return p


def district_scale(kpi: Kpi) -> tuple[float, float, list]:
    """(zmin, zmax, colorscale) putting ok / warning / critical colours at the KPI's thresholds."""
    t = kpi.thresholds
    crit, warn = t.critical, t.warning if t.warning is not None else t.critical
    if crit is None:
        return 0.0, 1.0, [[0, COLOURS["unknown"]], [1, COLOURS["unknown"]]]
    good = t.target if t.target is not None else (0.0 if kpi.better == "lower" else 100.0)
    lo, hi = (good, crit) if kpi.better == "lower" else (crit, good)
    if hi <= lo:
        hi = lo + 1.0
    w = min(max((warn - lo) / (hi - lo), 0.01), 0.99)
    scale = [[0, COLOURS["ok"]], [w, COLOURS["warning"]], [1, COLOURS["critical"]]]
    if kpi.better == "higher":
        scale = [[0, COLOURS["critical"]], [1 - w, COLOURS["warning"]], [1, COLOURS["ok"]]]
    return float(lo), float(hi), scale


def map_data(kpi: Kpi | None, snapshot: Mapping, live: Mapping, district_ids: list[str],
             district_names: Mapping[str, str], roads_geojson: dict, centres: Mapping[str, tuple[float, float]],
             road_kpi: Kpi | None, locale: str, kpis: Mapping[str, Kpi] | None = None) -> dict:
    """Everything that changes on the map, per trace of :data:`TRACES` (plain lists)."""
    entry = snapshot.get("kpis", {}).get(kpi.id, {}) if kpi else {}
    values = entry.get("districts", {})
    z = [values.get(d) for d in district_ids]
    text = []
    for d in district_ids:
        v = values.get(d)
        shown = i18n.number(v, locale, digits(kpi, v)) + " " + kpi.unit if kpi else "–"
        text.append(f"{basemap.hover(district_names.get(d, d))}: {shown}")
    out = {"districts": {"z": z, "text": text}}
    roads = snapshot.get("roads", {}) if road_kpi is not None else {}
    coordinates = basemap.road_coordinates(roads_geojson, roads, lambda v: _level(road_kpi, v), LEVELS)
    for lvl, (lon, lat) in coordinates.items():
        out[f"roads-{lvl}"] = {"lon": lon, "lat": lat}
    incidents = [a for a in live.get("alerts", []) if a["scope_type"] == "district" and a["scope_id"] in centres]
    pts = [centres[a["scope_id"]] for a in incidents]
    inc = {"lon": [p[0] for p in pts], "lat": [p[1] for p in pts],
           "text": [f"#{a['id']} {basemap.hover(alert_title(a, kpis or {}, locale))} "
                    f"({i18n.t('wall.status.' + a['severity'], locale)})" for a in incidents]}
    out["incidents-halo"] = {"lon": inc["lon"], "lat": inc["lat"]}
    out["incidents"] = inc
    faults = [f for f in live.get("faults", []) if f["lon"] is not None]
    fl = {"lon": [f["lon"] for f in faults], "lat": [f["lat"] for f in faults],
          "text": [basemap.hover(i18n.t("wall.alerts.health." + f["kpi_id"], locale, sensor=f["sensor"])
                                 if f["kpi_id"] in HEALTH_KPIS else f["sensor"])
                   for f in faults]}
    out["faults-halo"] = {"lon": fl["lon"], "lat": fl["lat"]}
    out["faults"] = fl
    veh = live.get("vehicles", [])
    out["vehicles"] = {"lon": [v["lon"] for v in veh], "lat": [v["lat"] for v in veh],
                       "text": [basemap.hover(f"{v['vehicle']} · {v['route'] or ''}") for v in veh]}
    return out


def _level(kpi: Kpi, value) -> str:
    return level(kpi, value)


def map_figure(kpi: Kpi | None, data: Mapping, *, districts_source, base_sources: Mapping, styles: Mapping,
               district_ids: list[str], centre: tuple[float, float], zoom: float, tile_url: str = "") -> go.Figure:
    """The whole map (first render); later refreshes use :func:`map_patch`."""
    zmin, zmax, scale = _scale(kpi)
    traces = [basemap.district_choropleth(districts_source, dict(zip(district_ids, data["districts"]["z"])),
                                          zmin=zmin, zmax=zmax, colorscale=scale, district_ids=district_ids,
                                          opacity=0.6)]
    traces[0].text = data["districts"]["text"]
    widths = {"ok": 2.5, "warning": 4, "critical": 6}
    for lvl in LEVELS:
        d = data[f"roads-{lvl}"]
        traces.append(go.Scattermap(lon=d["lon"], lat=d["lat"], mode="lines", name=f"roads-{lvl}",
                                    line={"color": COLOURS[lvl], "width": widths[lvl]}, hoverinfo="skip"))
    traces.append(basemap.point_trace(data["incidents-halo"]["lon"], data["incidents-halo"]["lat"], colour="#000",
                                      size=30, name="incidents-halo"))
    traces.append(basemap.point_trace(data["incidents"]["lon"], data["incidents"]["lat"], colour=COLOURS["critical"],
                                      size=20, name="incidents", text=data["incidents"]["text"]))
    traces.append(basemap.point_trace(data["faults-halo"]["lon"], data["faults-halo"]["lat"], colour="#000",
                                      size=16, name="faults-halo"))
    traces.append(basemap.point_trace(data["faults"]["lon"], data["faults"]["lat"], colour=FAULT_COLOUR, size=10,
                                      name="faults", text=data["faults"]["text"]))
    traces.append(basemap.point_trace(data["vehicles"]["lon"], data["vehicles"]["lat"], colour=VEHICLE_COLOUR,
                                      size=7, name="vehicles", text=data["vehicles"]["text"], opacity=0.9))
    fig = go.Figure(traces)
    layers = basemap.base_layers(base_sources, styles)
    fig.update_layout(**basemap.map_layout(centre, zoom, layers, tile_url=tile_url))
    return fig


def map_patch(kpi: Kpi | None, data: Mapping) -> Patch:
    """Only what changed: district values and colours, and the point and road coordinates."""
    p = traces_patch(data)
    zmin, zmax, scale = _scale(kpi)
    p["data"][0]["zmin"], p["data"][0]["zmax"], p["data"][0]["colorscale"] = zmin, zmax, scale
    return p


def traces_patch(data: Mapping) -> Patch:
    """The values of ``data`` (some traces of :data:`TRACES`, as :func:`map_data` gives them) set in place."""
    p = Patch()
    for name, values in data.items():
        i = TRACES.index(name)
        for key, value in values.items():
            p["data"][i][key] = value
    return p


def _scale(kpi: Kpi | None) -> tuple[float, float, list]:
    return district_scale(kpi) if kpi else (0.0, 1.0, [[0, "#333"], [1, "#333"]])


def age_text(seconds: float, locale: str) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return i18n.t("wall.age.s", locale, n=i18n.number(s, locale, 0))
    if s < 3600:
        return i18n.t("wall.age.m", locale, n=i18n.number(s // 60, locale, 0))
    if s < 86400:
        return i18n.t("wall.age.h", locale, n=i18n.number(s // 3600, locale, 0))
    return i18n.t("wall.age.d", locale, n=i18n.number(s // 86400, locale, 0))


def alert_title(alert: Mapping, kpis: Mapping[str, Kpi], locale: str) -> str:
    """What the alert is about, e.g. "Parking occupancy · district centro"."""
    kpi_id, st, sid = alert.get("kpi_id") or "", alert["scope_type"], alert["scope_id"]
    if st == "sensor":
        if kpi_id in HEALTH_KPIS:
            return i18n.t("wall.alerts.health." + kpi_id, locale, sensor=sid)
        return i18n.t("wall.alerts.scope.sensor", locale, id=sid)
    label = kpis[kpi_id].text(locale)[0] if kpi_id in kpis else kpi_id
    scope = i18n.t("wall.alerts.scope." + st, locale, id=sid) if st in ("city", "district", "route", "road") else sid
    return f"{label} · {scope}"


def alert_item(alert: Mapping, kpis: Mapping[str, Kpi], locale: str, now: datetime, tz: str) -> dict:
    """Texts of one alert row: severity (word + shape), title, value, age, acknowledgement."""
    sev = alert["severity"] if alert["severity"] in ICONS else "warning"
    kpi = kpis.get(alert.get("kpi_id") or "")
    value = ""
    if alert.get("value") is not None and alert.get("threshold") is not None:
        v, th = alert["value"], alert["threshold"]
        unit = f" {alert.get('unit') or (kpi.unit if kpi else '')}".rstrip()
        n = digits(kpi, v) if kpi else 1
        value = i18n.t("wall.alerts.value", locale, value=i18n.number(v, locale, n) + unit,
                       threshold=i18n.number(th, locale, n) + unit)
    opened = datetime.fromisoformat(alert["opened_at"])
    acked = None
    if alert["state"] == "acknowledged":
        acked = i18n.t("wall.alerts.acked_by", locale, who=alert.get("acknowledged_by") or "?",
                       comment=alert.get("ack_comment") or "")
    return {"id": alert["id"], "severity": sev, "icon": ICONS[sev],
            "severity_text": i18n.t(f"wall.status.{sev}", locale),
            "kind": i18n.t("wall.alerts.kind." + alert["kind"], locale), "title": alert_title(alert, kpis, locale),
            "value": value, "age": i18n.t("wall.alerts.age", locale, age=age_text((now - opened).total_seconds(), locale)),
            "opened": i18n.datetime_text(opened, locale, tz), "acked": acked, "open": alert["state"] == "open"}
