"""``/``: health of the stack (database, broker, TimescaleDB licence, schema).

Real figures only: every value comes from the database or a live broker probe.
"""
from __future__ import annotations

from datetime import datetime, timezone

import dash
from dash import Input, Output, State, callback, dcc, html

from dashboard import i18n
from dashboard.state import runtime

dash.register_page(__name__, path="/", name="status", title="citydash · status")

REFRESH_S = 10


def layout(lang: str | None = None, **_query):
    locale = i18n.negotiate(lang, city_locale=runtime().city.locale)
    return html.Main(className="status", lang=locale, children=[
        dcc.Store(id="status-locale", data=locale),
        dcc.Interval(id="status-interval", interval=REFRESH_S * 1000, n_intervals=0),
        html.H1(i18n.t("status.title", locale)),
        html.P(i18n.t("status.subtitle", locale, seconds=REFRESH_S), className="status-subtitle"),
        html.Div(id="status-body", children=render(locale)),
    ])


@callback(Output("status-body", "children"), Input("status-interval", "n_intervals"),
          State("status-locale", "data"))
def refresh(_n, locale):
    return render(locale or i18n.DEFAULT_LOCALE)


def render(locale: str):
    """The status table for ``locale`` (called by the layout and the refresh callback)."""
    rt = runtime()
    db = rt.database_status()
    broker_ok, broker_error = rt.broker_status()
    tz = rt.city.timezone
    t = lambda key, **kw: i18n.t(key, locale, **kw)  # noqa: E731

    def updown(ok: bool, error: str | None):
        text = t("status.up") if ok else t("status.down")
        mark = "●" if ok else "▲"
        children = [html.Span(mark, className="mark", **{"aria-hidden": "true"}), " ", text]
        if error:
            children += [html.Br(), html.Small(t("status.error", error=error))]
        return html.Span(children, className="ok" if ok else "bad")

    features = [name for name, ok in db.features.items() if ok]
    rows = [
        (t("status.city"), rt.city.name),
        (t("status.database"), updown(db.ok, db.error)),
        (t("status.broker"), updown(broker_ok, broker_error)),
        (t("status.timescale"), db.timescale_version or "–"),
        (t("status.licence"), db.licence or "–"),
        (t("status.migration"), str(db.migration_version) if db.migration_version else "–"),
        (t("status.features"), ", ".join(features) if features else t("status.feature.none")),
        (t("status.sensors"), i18n.number(db.sensors, locale, 0)),
        (t("status.readings_recent"), i18n.number(db.readings_recent, locale, 0)),
        (t("status.newest"), i18n.datetime_text(db.newest_reading, locale, tz)),
        (t("status.dead_letters"), i18n.number(db.dead_letters_24h, locale, 0)),
    ]
    now = datetime.now(timezone.utc)
    return [
        html.Table(className="status-table", children=[html.Tbody([
            html.Tr([html.Th(label, scope="row"), html.Td(value, id=f"status-value-{i}")])
            for i, (label, value) in enumerate(rows)
        ])]),
        html.P(t("status.checked", time=i18n.time_text(now, locale, tz)), className="status-checked"),
    ]
