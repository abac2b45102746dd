"""The public Dash app at ``/public/``: its own instance, callbacks and assets.

It shares the dashboard's Flask server (one process, one port) but nothing
else: ``PublicDash`` never takes over the callbacks, clientside scripts or
pages registered globally for the internal app (``dash.callback``,
``dash.register_page``), so its update endpoint
``/public/_dash-update-component`` knows its own two callbacks only; a
``before_request`` check answers 404 for any other callback id and 413 for
oversized bodies before Dash parses them.  Data come from
``dashboard.public.queries.PublicData`` (role ``citydash_public``, refreshed on
a schedule into the server-side cache).  Callback answers are composed from
parts serialised once per snapshot (``dashboard.public.responses``), and the
page shell, layout and dependencies are serialised once per process, so a
viewer costs a lookup.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from datetime import datetime, timezone
from pathlib import Path

import dash
import flask
from dash import Input, Output, State, _callback, dcc, html
from dash._utils import to_json

from dashboard import i18n
from dashboard.public import layout, queries
from dashboard.public.figures import fit_view
from dashboard.public.responses import VIEW_OUTPUTS, Composer
from dashboard.state import catalogue_of

log = logging.getLogger(__name__)

PREFIX = "/public/"
UPDATE_PATH = PREFIX + "_dash-update-component"
MAX_BODY = 32 * 1024
_isolation = threading.RLock()


@contextlib.contextmanager
def _without_global_registrations():
    """Hide what ``dash.callback`` / ``clientside_callback`` registered for the internal app."""
    with _isolation:
        saved = (dict(_callback.GLOBAL_CALLBACK_MAP), list(_callback.GLOBAL_CALLBACK_LIST),
                 list(_callback.GLOBAL_INLINE_SCRIPTS))
        _callback.GLOBAL_CALLBACK_MAP.clear()
        _callback.GLOBAL_CALLBACK_LIST.clear()
        _callback.GLOBAL_INLINE_SCRIPTS.clear()
        try:
            yield
        finally:
            _callback.GLOBAL_CALLBACK_MAP.update(saved[0])
            _callback.GLOBAL_CALLBACK_LIST.extend(saved[1])
            _callback.GLOBAL_INLINE_SCRIPTS.extend(saved[2])


class PublicDash(dash.Dash):
    """A Dash app that owns only the callbacks registered on it with ``app.callback``."""

    def _setup_server(self):
        with _without_global_registrations():
            return super()._setup_server()

    def _generate_scripts_html(self):
        with _without_global_registrations():
            return super()._generate_scripts_html()

    def csp_hashes(self, hash_algorithm="sha256"):
        with _without_global_registrations():
            return super().csp_hashes(hash_algorithm)

    def _once(self, key, build):
        """``build()`` once per process and ``key``: what depends on nothing but the locale."""
        memo = self.__dict__.setdefault("_citydash_once", {})
        if key not in memo:
            memo[key] = build()
        return memo[key]

    def index(self, *args, **kwargs):
        parent = super().index
        return self._once(("index", _request_locale()), lambda: parent(*args, **kwargs))

    def serve_layout(self):
        # The public layout is fixed (the page is filled by a callback).
        body = self._once("layout", lambda: to_json(self.get_layout()))
        return self.backend.make_response(body, mimetype="application/json")

    def dependencies(self):
        body = self._once("dependencies", lambda: to_json(self._callback_list))
        return self.backend.make_response(body, content_type="application/json")

    def interpolate_index(self, **kwargs):
        # <html lang> and the title follow ?lang= (screen readers pick the voice from it).
        locale = _request_locale()
        html_text = super().interpolate_index(**kwargs)
        html_text = html_text.replace("<html>", f'<html lang="{locale}">', 1)
        return html_text.replace("<title>citydash</title>",
                                 f"<title>{i18n.t('public.page_title', locale)}</title>", 1)


def _request_locale() -> str:
    return layout.locale_from("?" + flask.request.query_string.decode("latin-1")[:200])


def create_public_app(server: flask.Flask, settings) -> PublicDash:
    app = PublicDash(
        "dashboard.public.app",
        server=server,
        url_base_pathname=PREFIX,
        use_pages=False,
        assets_folder=str(Path(__file__).with_name("assets")),
        title="citydash",
        update_title=None,
        serve_locally=True,
        suppress_callback_exceptions=False,
    )
    refresh_ms = max(5, settings.public_refresh_s) * 1000
    app.layout = html.Div([
        dcc.Location(id="public-url", refresh=False),
        dcc.Store(id="public-locale"),
        dcc.Interval(id="public-interval", interval=refresh_ms, n_intervals=0),
        html.Div(id="public-page", children=html.P("…", className="public-loading")),
    ])
    empty = queries.Snapshot(datetime.now(timezone.utc), (), {})
    catalogue = catalogue_of(settings.city_pack)
    app.validation_layout = html.Div([app.layout, layout.page(empty, catalogue, "en", "")])

    data = queries.PublicData(settings)
    app.public_data = data

    def city():
        from dashboard.state import runtime

        return runtime().city

    def map_options() -> dict:
        from dashboard.layer_files import layer_url

        centre, zoom = fit_view(city().bbox)  # the whole city in the public map's panel
        return {"geojson": layer_url("districts"), "centre": centre, "zoom": zoom,
                "tile_url": settings.map_tile_url}

    composer = Composer(catalogue, map_options, tz=lambda: city().timezone, city_name=lambda: city().name)
    app.public_composer = composer

    def snapshot_or_none():
        if flask.g.pop("public_unavailable", False):  # the request hook just tried
            return None
        try:
            return data.get()
        except Exception as exc:  # shown as a translated message, never a traceback
            log.warning("public snapshot unavailable: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return None

    # The two callbacks below are the public app's contract with the Dash renderer.  Requests with
    # a snapshot are answered by ``composer`` from serialised parts before Dash parses them (the same
    # bytes as these functions give, tested); these run when there is no snapshot or nothing published.
    @app.callback(Output("public-page", "children"), Output("public-locale", "data"),
                  Input("public-url", "search"))
    def show_page(search):
        locale = layout.locale_from(search)
        snap = snapshot_or_none()
        if snap is None:
            return html.Main(html.P(i18n.t("public.error.unavailable", locale), role="alert",
                                    className="public-error"), lang=locale), locale
        return layout.page(snap, catalogue, locale, city().name), locale

    @app.callback([Output(i, "figure" if i in ("public-map", "public-trend") else "children")
                   for i in VIEW_OUTPUTS],
                  Input("public-kpi", "value"), Input("public-area", "value"),
                  Input("public-interval", "n_intervals"), State("public-locale", "data"))
    def update_view(kpi_value, area_value, _n, locale_value):
        locale = locale_value if locale_value in i18n.LOCALES else i18n.DEFAULT_LOCALE
        snap = snapshot_or_none()
        if snap is None:
            message = i18n.t("public.error.unavailable", locale)
            return [dash.no_update, dash.no_update, message] + [dash.no_update] * 4
        out = layout.view(snap, catalogue, locale, kpi_value, area_value, tz=city().timezone, **map_options())
        return [out[i] for i in VIEW_OUTPUTS]

    def refuse_foreign_callbacks():
        request = flask.request
        if request.path != UPDATE_PATH:
            return None
        if request.content_length is None or request.content_length > MAX_BODY:
            return flask.jsonify(error="request too large"), 413
        body = request.get_json(silent=True)
        output = body.get("output") if isinstance(body, dict) else None
        if not isinstance(output, str) or output not in app.callback_map:
            return flask.jsonify(error="unknown callback"), 404
        try:
            snap = data.get()
        except Exception as exc:  # the Dash callback shows the translated message
            log.warning("public snapshot unavailable: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            flask.g.public_unavailable = True
            return None
        answer = composer.answer(body, snap)
        return None if answer is None else flask.Response(answer, mimetype="application/json")

    server.before_request(refuse_foreign_callbacks)
    return app
