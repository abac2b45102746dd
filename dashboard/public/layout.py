"""Components of the public view: pure functions of a snapshot, the catalogue and a locale.

Accessibility (WCAG 2.1 AA; the view sits on government websites): one
``h1``, sections with headings, every control in a ``fieldset`` with a
``legend`` and native radio buttons (keyboard reachable), status given in
words and not by colour alone, and for the map and the chart a table of the
same figures.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable
from urllib.parse import quote

from dash import dcc, html

from dashboard import i18n
from kpis.catalogue import Catalogue
from dashboard.public import figures
from dashboard.public.queries import Snapshot

MAX_INPUT = 100


def kpi_label(catalogue: Catalogue, kpi_id: str, locale: str) -> str:
    kpi = catalogue.kpis.get(kpi_id)
    return kpi.text(locale)[0] if kpi else kpi_id


@dataclass(frozen=True)
class Choice:
    kpi_id: str | None
    area: str
    error: str | None  # message id


def ordered_kpis(snap: Snapshot, catalogue: Catalogue) -> list[str]:
    """Published KPI ids in catalogue order, those with a city value first."""
    order = {k: i for i, k in enumerate(catalogue.kpis)}
    ids = sorted((k.id for k in snap.kpis), key=lambda k: order.get(k, len(order)))
    return sorted(ids, key=lambda k: (k, "city", "") not in snap.latest)


def parse_choice(snap: Snapshot, kpi_value, area_value, catalogue: Catalogue | None = None) -> Choice:
    """Validate the two inputs of the view; anything unknown gives a message id, never an error."""
    known = ordered_kpis(snap, catalogue) if catalogue is not None else [k.id for k in snap.kpis]
    if not known:
        return Choice(None, "city", "public.error.no_kpis")
    if kpi_value is None:
        kpi_value = known[0]
    if area_value is None:
        area_value = "city"
    if not isinstance(kpi_value, str) or len(kpi_value) > MAX_INPUT or kpi_value not in known:
        return Choice(known[0], "city", "public.error.bad_kpi")
    if not isinstance(area_value, str) or len(area_value) > MAX_INPUT or (
            area_value != "city" and area_value not in snap.districts):
        return Choice(kpi_value, "city", "public.error.bad_area")
    return Choice(kpi_value, area_value, None)


def locale_from(search) -> str:
    """The locale asked for by ``?lang=`` in the page's query string."""
    lang = None
    if isinstance(search, str) and len(search) <= 200:
        for part in search.lstrip("?").split("&"):
            key, _, value = part.partition("=")
            if key == "lang":
                lang = value
    # only ?lang= decides: the page is embedded and cached, so the browser's languages do not
    return i18n.allowed(lang) if lang else i18n.DEFAULT_LOCALE


def language_nav(locale: str) -> html.Nav:
    links = []
    for code in i18n.LOCALES:
        extra = {"aria-current": "true"} if code == locale else {}
        links.append(html.Li(html.A(i18n.t("public.language." + code, code), href=f"?lang={quote(code)}",
                                    lang=code, className="public-lang", **extra)))
    return html.Nav(html.Ul(links, className="public-langs"),
                    **{"aria-label": i18n.t("public.language", locale)})


def table(table_id: str, caption: str, headers: list[str], rows: list[figures.Row],
          with_status: bool = True) -> html.Table:
    cols = headers if with_status else headers[:2]
    body = [html.Tr([html.Th(r.label, scope="row"), html.Td(r.value)]
                    + ([html.Td(r.status)] if with_status else [])) for r in rows]
    return html.Table(id=table_id, className="public-table", children=[
        html.Caption(caption),
        html.Thead(html.Tr([html.Th(h, scope="col") for h in cols])),
        html.Tbody(body),
    ])


def cards(snap: Snapshot, catalogue: Catalogue, locale: str) -> list:
    items = []
    for kpi_id in ordered_kpis(snap, catalogue):
        pk = snap.kpi(kpi_id)
        kpi = catalogue.kpis.get(pk.id)
        point = snap.latest.get((pk.id, "city", ""))
        value = point.value if point else None
        suppressed = bool(point and point.suppressed)
        status = "unknown" if suppressed else figures.status_key(kpi, value)
        items.append(html.Li(className=f"public-card public-status-{status}", children=[
            html.H3(kpi_label(catalogue, pk.id, locale)),
            html.P(figures.value_text(value, pk.unit, locale, suppressed), className="public-card-value"),
            html.P(i18n.t(f"public.status.{status}", locale), className="public-card-status"),
        ]))
    return items


def page(snap: Snapshot, catalogue: Catalogue, locale: str, city_name: str) -> html.Div:
    """The whole view for ``locale`` (figures are filled by the update callback)."""
    t = lambda key, **kw: i18n.t(key, locale, **kw)  # noqa: E731
    kpi_options = [{"label": kpi_label(catalogue, k, locale), "value": k} for k in ordered_kpis(snap, catalogue)]
    area_options = [{"label": t("public.area.city"), "value": "city"}] + [
        {"label": name, "value": did} for did, name in snap.districts.items()]
    first = kpi_options[0]["value"] if kpi_options else None
    return html.Div(lang=locale, className="public", children=[
        html.A(t("public.skip"), href="#public-main", className="public-skip"),
        html.Header(className="public-header", children=[
            html.H1(t("public.title", city=city_name)),
            html.P(id="public-asof", className="public-asof", **{"aria-live": "polite"}),
            language_nav(locale),
        ]),
        html.Main(id="public-main", children=[
            html.P(id="public-error", role="alert", className="public-error"),
            html.Section(**{"aria-labelledby": "public-now-title"}, children=[
                html.H2(t("public.now.title"), id="public-now-title"),
                html.Ul(id="public-cards", className="public-cards", children=cards(snap, catalogue, locale)),
            ]),
            html.Section(**{"aria-labelledby": "public-explore-title"}, className="public-explore", children=[
                html.H2(t("public.explore.title"), id="public-explore-title"),
                html.Div(className="public-controls", children=[
                    html.Fieldset([html.Legend(t("public.control.kpi")),
                                   dcc.RadioItems(id="public-kpi", options=kpi_options, value=first,
                                                  className="public-radios")]),
                    html.Fieldset([html.Legend(t("public.control.area")),
                                   dcc.RadioItems(id="public-area", options=area_options, value="city",
                                                  className="public-radios public-areas")]),
                ]),
                html.Div(className="public-figures", children=[
                    html.Figure(className="public-figure", children=[
                        html.Div(role="img", **{"aria-label": t("public.map.alt")}, children=[
                            dcc.Graph(id="public-map", config={"displayModeBar": False,
                                                               "scrollZoom": False})]),
                        html.Figcaption(t("public.map.caption")),
                        html.Div(id="public-map-table"),
                    ]),
                    html.Figure(className="public-figure", children=[
                        html.Div(role="img", **{"aria-label": t("public.trend.alt")}, children=[
                            dcc.Graph(id="public-trend", config={"displayModeBar": False})]),
                        html.Figcaption(t("public.trend.caption")),
                        html.Details([html.Summary(t("public.trend.table")),
                                      html.Div(id="public-trend-table")]),
                    ]),
                ]),
            ]),
        ]),
        html.Footer(className="public-footer", children=[
            html.P(t("public.footer.privacy")),
            html.P(t("public.footer.delay", minutes=i18n.number(snap.delay_s / 60, locale, 0))
                   if snap.delay_s else t("public.footer.nodelay")),
        ]),
    ])


def view_common(snap: Snapshot, catalogue: Catalogue, locale: str, tz: str) -> dict:
    """The parts of the view that depend on the locale only: the cards and "as of"."""
    as_of = snap.as_of
    return {
        "public-cards": cards(snap, catalogue, locale),
        "public-asof": i18n.t("public.asof", locale, time=i18n.datetime_text(as_of, locale, tz, "short"))
        if as_of else i18n.t("public.asof.none", locale),
    }


def view_map(snap: Snapshot, catalogue: Catalogue, locale: str, kpi_id: str, *, geojson, centre, zoom,
             tile_url: str = "") -> dict:
    """The district map of one KPI and its table (the same for every area)."""
    kpi = catalogue.kpis.get(kpi_id)
    label = kpi_label(catalogue, kpi_id, locale)
    rows = figures.district_rows(snap, kpi_id, kpi, locale)
    headers = [i18n.t(f"public.table.{h}", locale) for h in ("area", "value", "status")]
    return {
        "public-map": figures.map_figure(snap, kpi_id, kpi, locale, geojson, centre, zoom, tile_url),
        "public-map-table": table("public-map-data", i18n.t("public.map.table", locale, kpi=label), headers, rows),
    }


def view_trend(snap: Snapshot, catalogue: Catalogue, locale: str, kpi_id: str, area: str, tz: str) -> dict:
    """The 24-hour trend of one KPI in one area (``city`` or a district id) and its table."""
    t = lambda key, **kw: i18n.t(key, locale, **kw)  # noqa: E731
    pk = snap.kpi(kpi_id)
    label = kpi_label(catalogue, kpi_id, locale)
    area_name = t("public.area.city") if area == "city" else snap.districts[area]
    points = figures.trend_points(snap, kpi_id, area)
    return {
        "public-trend": figures.trend_figure(points, pk.unit, locale, tz),
        "public-trend-table": table(
            "public-trend-data", t("public.trend.table.caption", kpi=label, area=area_name),
            [t("public.table.hour"), t("public.table.value")],
            figures.trend_rows(points, pk.unit, locale, tz), with_status=False),
    }


def _build(_key: tuple, build: Callable[[], dict]) -> dict:
    return build()


def view(snap: Snapshot, catalogue: Catalogue, locale: str, kpi_value, area_value, *, tz: str,
         map_options: Callable[[], dict], part: Callable[[tuple, Callable[[], dict]], dict] = _build) -> dict:
    """Everything the update callback returns, keyed by output id.

    ``map_options()`` gives ``geojson``, ``centre``, ``zoom`` and ``tile_url`` of the map;
    ``part(key, build)`` gives ``build()``, or what it gave before for the same ``key`` and
    snapshot (``answers.SnapshotMemo``): each part depends only on the validated choices in its key.
    """
    choice = parse_choice(snap, kpi_value, area_value, catalogue)
    out = {**part(("common", locale), lambda: view_common(snap, catalogue, locale, tz)),
           "public-error": i18n.t(choice.error, locale) if choice.error else ""}
    if choice.kpi_id is None:
        empty = {"data": [], "layout": {}}
        return {**out, "public-map": empty, "public-map-table": "", "public-trend": empty,
                "public-trend-table": ""}
    kpi_id, area = choice.kpi_id, choice.area
    return {**out,
            **part(("map", locale, kpi_id),
                   lambda: view_map(snap, catalogue, locale, kpi_id, **map_options())),
            **part(("trend", locale, kpi_id, area),
                   lambda: view_trend(snap, catalogue, locale, kpi_id, area, tz))}
