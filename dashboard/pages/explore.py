"""``/explore``: the planner explorer (issue #7, docs/explore.md).

A layered map (districts as a choropleth of any KPI, roads by a road KPI,
transit lines, stops and vehicles, sensors by kind and health, the pack's extra
layers), a time window with a replay slider, a comparison period (difference
map and overlaid series), drill-down panels and exports.  The whole view lives
in the URL (:func:`dashboard.queries.explore.encode_state`): a link reproduces
it, back and forward restore it.  Callbacks only translate inputs into calls of
:mod:`dashboard.api.views` (which uses :mod:`dashboard.queries.explore` and
:mod:`dashboard.figures.explore`).
"""
from __future__ import annotations

from urllib.parse import parse_qs

import dash
from dash import Input, Output, State, callback, ctx, dcc, html, no_update

from dashboard import i18n
from dashboard.api import context
from dashboard.api.views import (build_map, city_tz, controls_for, export_links, layer_export_list, panel,
                                 problem_list, replay_index, selection_from_click, selection_text, series_figure_for,
                                 slider_index, state_from_controls, translator, utc_now, view_state, window_data,
                                 window_from)
from dashboard.queries import explore as q
from dashboard.state import runtime

dash.register_page(__name__, path="/explore", name="explore", title="citydash · explore")

TICK_MS = 800


def layout(lang: str | None = None, **query):
    locale = context.request_locale() if lang is None else i18n.negotiate(lang, None, runtime().city.locale)
    t = translator(locale)
    cat = context.catalogue()
    tz = city_tz()
    extras = context.extra_layers()
    state, problems = q.parse_state(query, cat, tz, extras)
    state = q.resolved(state, cat)
    window = q.window_for(state, utc_now())
    try:
        with context.connection() as conn:
            kinds = q.sensor_kinds(conn)
    except Exception:  # database down: the page still renders; the callbacks report it
        kinds = []
    layer_options = [{"label": t(f"explore.layer.{n}"), "value": n} for n in q.CORE_LAYERS]
    layer_options += [{"label": (style or {}).get("label") or name, "value": f"extra:{name}"}
                      for name, style in extras.items()]
    kpi_option = lambda k: {"label": k.text(locale)[0], "value": k.id}  # noqa: E731
    return html.Main(className="explore", lang=locale, children=[
        dcc.Location(id="explore-url", refresh=False),
        dcc.Store(id="explore-locale", data=locale),
        dcc.Store(id="explore-lang", data=lang),  # kept in the URL only when the link named it
        dcc.Store(id="explore-window", data=window_data(window)),
        dcc.Store(id="explore-selection", data=selection_text(state.selection)),
        dcc.Interval(id="explore-tick", interval=TICK_MS, disabled=True),
        html.Header(className="explore-header", children=[
            html.H1(t("explore.title")),
            html.Div(id="explore-problems", role="alert", className="explore-problems",
                     children=problem_list(problems, locale)),
        ]),
        html.Div(className="explore-grid", children=[
            html.Aside(className="explore-controls", children=[
                html.Fieldset([html.Legend(t("explore.layers")),
                               dcc.Checklist(id="explore-layers", options=layer_options, value=list(state.layers),
                                             className="explore-checklist")]),
                html.Label(t("explore.kpi"), htmlFor="explore-kpi"),
                dcc.Dropdown(id="explore-kpi", options=[kpi_option(k) for k in q.district_kpis(cat)],
                             value=state.kpi, clearable=False),
                html.Label(t("explore.road"), htmlFor="explore-road"),
                dcc.Dropdown(id="explore-road", options=[kpi_option(k) for k in q.road_kpis(cat)],
                             value=state.road, clearable=False),
                html.Label(t("explore.kinds"), htmlFor="explore-kinds"),
                dcc.Dropdown(id="explore-kinds", options=[{"label": k, "value": k} for k in kinds],
                             value=list(state.kinds), multi=True, placeholder=t("explore.kinds.all")),
                html.Fieldset([
                    html.Legend(t("explore.time")),
                    dcc.Dropdown(id="explore-range", clearable=False, value=state.range,
                                 options=[{"label": t(f"explore.range.{r}"), "value": r}
                                          for r in [*q.RANGES, q.CUSTOM]]),
                    html.Div(id="explore-custom", className="explore-custom",
                             style=None if state.range == q.CUSTOM else {"display": "none"}, children=[
                        html.Label(t("explore.from"), htmlFor="explore-from"),
                        dcc.Input(id="explore-from", type="text", debounce=True, placeholder="YYYY-MM-DDTHH:MM",
                                  value=q.local_text(state.start, tz)),
                        html.Label(t("explore.to"), htmlFor="explore-to"),
                        dcc.Input(id="explore-to", type="text", debounce=True, placeholder="YYYY-MM-DDTHH:MM",
                                  value=q.local_text(state.end, tz)),
                    ]),
                ]),
                html.Fieldset([
                    html.Legend(t("explore.compare")),
                    dcc.Dropdown(id="explore-compare", clearable=False, value=state.compare,
                                 options=[{"label": t(f"explore.compare.{c}"), "value": c} for c in q.COMPARES]),
                    html.Div(id="explore-compare-custom",
                             style=None if state.compare == "custom" else {"display": "none"}, children=[
                        html.Label(t("explore.compare.from"), htmlFor="explore-compare-from"),
                        dcc.Input(id="explore-compare-from", type="text", debounce=True,
                                  placeholder="YYYY-MM-DDTHH:MM", value=q.local_text(state.compare_start, tz)),
                    ]),
                ]),
                html.Fieldset([
                    html.Legend(t("explore.export")),
                    html.A(t("explore.export.csv"), id="explore-export-csv", href="", download="",
                           className="explore-button"),
                    html.A(t("explore.export.geojson"), id="explore-export-geojson", href="", download="",
                           className="explore-button"),
                    html.Ul(id="explore-export-layers", className="explore-exports"),
                ]),
            ]),
            html.Section(className="explore-main", children=[
                dcc.Graph(id="explore-map", className="explore-map", config={"displaylogo": False,
                                                                            "scrollZoom": True}),
                html.Div(className="explore-replay", children=[
                    html.Button(t("explore.play"), id="explore-play", n_clicks=0, className="explore-button"),
                    html.Button("◀", id="explore-prev", n_clicks=0, className="explore-button",
                                title=t("explore.prev"), **{"aria-label": t("explore.prev")}),
                    html.Button("▶", id="explore-next", n_clicks=0, className="explore-button",
                                title=t("explore.next"), **{"aria-label": t("explore.next")}),
                    html.Div(dcc.Slider(id="explore-slider", min=0, max=window.frames - 1, step=1,
                                        value=window.frame_index(state.t), marks=None, updatemode="mouseup",
                                        allow_direct_input=False), className="explore-slider"),
                    html.Label(t("explore.speed"), htmlFor="explore-speed"),
                    dcc.Dropdown(id="explore-speed", clearable=False, value=state.speed, className="explore-speed",
                                 options=[{"label": f"{s}×", "value": s} for s in q.SPEEDS]),
                    html.Span(id="explore-frame", className="explore-frame"),
                ]),
                dcc.Graph(id="explore-series", config={"displaylogo": False}),
            ]),
            html.Aside(id="explore-panel", className="explore-panel", children=[
                html.Button("×", id="explore-panel-close", n_clicks=0, className="explore-close",
                            title=t("explore.close"), **{"aria-label": t("explore.close")}),
                html.Div(id="explore-panel-body"),
            ]),
        ]),
    ])


CONTROLS = [("explore-layers", "value"), ("explore-kpi", "value"), ("explore-road", "value"),
            ("explore-kinds", "value"), ("explore-range", "value"), ("explore-from", "value"),
            ("explore-to", "value"), ("explore-speed", "value"), ("explore-compare", "value"),
            ("explore-compare-from", "value")]


@callback(Output("explore-url", "search"), Output("explore-window", "data"), Output("explore-slider", "max"),
          Output("explore-slider", "value"), Output("explore-custom", "style"),
          Output("explore-compare-custom", "style"), Output("explore-problems", "children"),
          *[Output(i, p) for i, p in CONTROLS], Output("explore-selection", "data", allow_duplicate=True),
          Input("explore-url", "search"), *[Input(i, p) for i, p in CONTROLS], Input("explore-slider", "value"),
          Input("explore-selection", "data"), Input("explore-tick", "n_intervals"),
          Input("explore-tick", "disabled"), Input("explore-prev", "n_clicks"), Input("explore-next", "n_clicks"),
          State("explore-window", "data"), State("explore-lang", "data"), State("explore-locale", "data"),
          prevent_initial_call=True)
def controller(search, layers, kpi, road, kinds, rng, start, end, speed, compare, cfrom, index, selection, _tick,
               paused, _prev, _next, wdata, lang, locale):
    """The one place where URL, controls, window and replay meet (Dash allows a cycle only within one
    callback): back/forward set the controls from the URL; a control, a replay tick or a step moves
    the slider and writes the URL (one history entry per change; none per replayed frame)."""
    cat, tz = context.catalogue(), city_tz()
    trigger = ctx.triggered_id
    window = window_from(wdata)
    keep = [no_update] * (len(CONTROLS) + 1)
    compare_style = None if compare == "custom" else {"display": "none"}
    custom_style = None if rng == q.CUSTOM else {"display": "none"}
    if trigger == "explore-url":
        return from_url(search, window, index, selection, lang, locale, cat, tz,
                        [layers, kpi, road, kinds, rng, start, end, speed, compare, cfrom])
    new_window, problems = no_update, no_update
    if trigger in ("explore-tick", "explore-prev", "explore-next"):
        index = replay_index(index, window.frames, speed, trigger)
    elif trigger in ("explore-range", "explore-from", "explore-to"):
        query = {"range": rng}
        if rng == q.CUSTOM:
            query.update({"from": start or "", "to": end or ""})
        state, found = q.parse_state(query, cat, tz)
        problems = problem_list(found, locale)
        if found or (rng == q.CUSTOM and not (start and end)):
            return (no_update, no_update, no_update, no_update, custom_style, compare_style, problems, *keep)
        window = q.window_for(state, utc_now())
        index = window.frames - 1
        new_window = window_data(window)
    playing = not paused
    if playing and trigger in ("explore-tick", "explore-slider"):
        search_out = no_update  # no history entry per replayed frame; the URL follows on pause
    else:
        state, _ = state_from_controls(layers, kpi, road, kinds, rng, start, end, index, speed, compare, cfrom,
                                       selection, window, tz, cat)
        search_out = q.encode_state(state, tz, lang)
    max_out = window.frames - 1 if new_window is not no_update else no_update
    return (search_out, new_window, max_out, index, custom_style, compare_style, problems, *keep)


def from_url(search, window: q.Window, index, selection, lang, locale, cat, tz, current: list):
    """Outputs of :func:`controller` that show the view of ``search`` (back / forward)."""
    query = {k: v[0] for k, v in parse_qs((search or "").lstrip("?"), keep_blank_values=False).items()}
    state, problems = q.parse_state(query, cat, tz, context.extra_layers())
    state = q.resolved(state, cat)
    wanted = controls_for(state, tz)
    target = q.window_for(state, utc_now())
    same_window = (target.start, target.end, target.resolution) == (window.start, window.end, window.resolution)
    new_index = target.frame_index(state.t)
    sel = selection_text(state.selection)
    changed = [w if w != c else no_update for w, c in zip(wanted, current)]
    if same_window and new_index == index and sel == selection and all(c is no_update for c in changed):
        raise dash.exceptions.PreventUpdate
    return (no_update, no_update if same_window else window_data(target),
            no_update if same_window else target.frames - 1, new_index,
            None if state.range == q.CUSTOM else {"display": "none"},
            None if state.compare == "custom" else {"display": "none"},
            problem_list(problems, locale), *changed, sel if sel != selection else no_update)


@callback(Output("explore-tick", "disabled"), Output("explore-play", "children"),
          Input("explore-play", "n_clicks"), State("explore-tick", "disabled"), State("explore-locale", "data"),
          prevent_initial_call=True)
def play(_n, disabled, locale):
    playing = bool(disabled)  # it was paused: play now
    return not playing, i18n.t("explore.pause" if playing else "explore.play", locale)


# -- the map ------------------------------------------------------------------------------------------

@callback(Output("explore-map", "figure"), Output("explore-frame", "children"),
          Output("explore-export-csv", "href"), Output("explore-export-geojson", "href"),
          Output("explore-export-layers", "children"),
          Input("explore-layers", "value"), Input("explore-kpi", "value"), Input("explore-road", "value"),
          Input("explore-kinds", "value"), Input("explore-slider", "value"), Input("explore-window", "data"),
          Input("explore-compare", "value"), Input("explore-compare-from", "value"),
          State("explore-locale", "data"))
def render_map(layers, kpi, road, kinds, index, wdata, compare, cfrom, locale):
    window = window_from(wdata)
    state = view_state(layers, kpi, road, kinds, compare, cfrom, window)
    index = slider_index(index, window)
    figure, at = build_map(state, window, index, locale)
    tz = city_tz()
    frame = i18n.t("explore.frame", locale, time=i18n.datetime_text(at, locale, tz, "short"),
                   resolution=i18n.t(f"explore.resolution.{window.resolution}", locale),
                   index=i18n.number(index + 1, locale, 0), frames=i18n.number(window.frames, locale, 0))
    csv_href, geojson_href = export_links(state, window, at, locale)
    return figure, frame, csv_href, geojson_href, layer_export_list(state, window, at, locale)


@callback(Output("explore-series", "figure"),
          Input("explore-kpi", "value"), Input("explore-window", "data"), Input("explore-compare", "value"),
          Input("explore-compare-from", "value"), Input("explore-slider", "value"), State("explore-locale", "data"))
def render_series(kpi, wdata, compare, cfrom, index, locale):
    return series_figure_for(kpi, window_from(wdata), compare, cfrom, index, locale)


# -- drill-down ------------------------------------------------------------------------------------------

@callback(Output("explore-selection", "data"),
          Input("explore-map", "clickData"), Input("explore-panel-close", "n_clicks"), prevent_initial_call=True)
def select(click, _close):
    if ctx.triggered_id == "explore-panel-close":
        return None
    return selection_from_click(click) or no_update


@callback(Output("explore-panel-body", "children"), Output("explore-panel", "className"),
          Input("explore-selection", "data"), Input("explore-window", "data"), Input("explore-slider", "value"),
          Input("explore-kpi", "value"), Input("explore-road", "value"), State("explore-locale", "data"))
def render_panel(selection, wdata, index, kpi, road, locale):
    if not selection:
        return [], "explore-panel explore-panel-closed"
    window = window_from(wdata)
    state = view_state(["districts"], kpi, road, [], "none", "", window)
    kind, _, ident = selection.partition(":")
    at = window.frame_time(slider_index(index, window))
    return panel(kind, ident, state, window, at, locale), "explore-panel explore-panel-open"


