"""The public Dash app at ``/public/``: its own Flask server, Dash instance, callbacks and assets.

``create_public_app(settings)`` builds a ``flask.Flask`` of its own with a ``dash.Dash`` on it
(routes under ``/public/``); ``mount(server, public)`` puts it beside the internal app: a WSGI
dispatcher in front of the internal server hands every request under ``/public`` to the public
server, path unchanged (so ``dashboard.security`` sees ``/public/...`` on both servers, as it did
when they were one).  The two apps share no callback registry, through Dash's public behaviour only:

* the public callbacks are registered with ``app.callback`` on this instance (never
  ``dash.callback``), so the internal app never sees them;
* Dash gives an app, when it is set up (in a ``before_request`` hook of its server, on the first
  request), the callbacks registered globally with ``dash.callback`` that no app took yet; the
  internal pages register theirs when the internal ``dash.Dash`` is built.  ``create_app`` builds
  this app first, and this module sets it up at once (its own server's first
  ``preprocess_request``, before any other hook is on it), so it finds none.  It then checks that
  its ``callback_map`` holds its own two callbacks only: an earlier internal app that never served
  a request leaves its registrations behind (tests build many apps in one process); this instance
  has then taken them, and is dropped for a new one, which finds none.

The update endpoint ``/public/_dash-update-component`` answers 413 to bodies over 32 KiB and 404
to any callback id that is not its own before Dash parses them.  Data come from
``dashboard.public.queries.PublicData`` (role ``citydash_public``, refreshed on a schedule into the
server-side cache).  Keeping it cheap (``dashboard.public.answers``): answers are looked up by the
request body's hash and the snapshot version in a hook that runs after the rate limiter's, and the
callbacks' pure functions are memoised per snapshot, so a viewer costs a lookup.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

import dash
import flask
from dash import Input, Output, State, dcc, html

from dashboard import i18n, security
from dashboard.layer_files import layer_url
from dashboard.public import contract, layout, queries
from dashboard.public.answers import AnswerCache, SnapshotMemo, serialised
from dashboard.public.figures import fit_view
from dashboard.state import catalogue_of, runtime

log = logging.getLogger(__name__)

PREFIX = "/public/"
UPDATE_PATH = PREFIX + "_dash-update-component"
FIXED_GETS = (PREFIX + "_dash-layout", PREFIX + "_dash-dependencies")  # the same for every viewer
MAX_BODY = 32 * 1024
# Bounds per process; each entry is kept a refresh period (answers) or two (parts), and a city of
# 20 districts and 11 public KPIs has 693 views and 732 parts per snapshot.
ANSWERS_KEPT = 2000  # about 25 kB each
PARTS_KEPT = 4000


class PublicDash(dash.Dash):
    """``<html lang>`` and the title follow ``?lang=`` (screen readers pick the voice from it)."""

    def interpolate_index(self, **kwargs):
        locale = request_locale()
        html_text = super().interpolate_index(**kwargs)
        html_text = html_text.replace("<html>", f'<html lang="{locale}">', 1)
        return html_text.replace("<title>citydash</title>",
                                 f"<title>{i18n.t('public.page_title', locale)}</title>", 1)


def request_locale() -> str:
    return layout.locale_from("?" + flask.request.query_string.decode("latin-1")[:200])


def _brief(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def create_public_app(settings) -> PublicDash:
    """The public app on a Flask server of its own, set up, rate limited, with security headers."""
    app = _build(settings)
    if not _holds_only_its_own(app):
        log.info("the public app took callbacks left registered by an earlier app; building it again")
        app = _build(settings)
        if not _holds_only_its_own(app):
            raise RuntimeError("the public Dash app holds callbacks that are not its own")
    server: flask.Flask = app.server
    # The rate limiter's hooks first: it counts every request, cached answers included.
    security.init_app(server, settings, [app])
    server.before_request(app.public_hooks.answer_early)
    server.after_request(app.public_hooks.keep_answer)
    return app


def _holds_only_its_own(app: PublicDash) -> bool:
    # csp_hashes: the renderer's script, and no inline clientside script (this app registers none)
    return set(app.callback_map) == set(contract.CALLBACKS) and len(app.csp_hashes()) == 1


def _build(settings) -> PublicDash:
    server = flask.Flask(__name__, static_folder=None)
    app = PublicDash(
        __name__,
        server=server,
        url_base_pathname=PREFIX,
        use_pages=False,
        assets_folder=str(Path(__file__).with_name("assets")),
        title="citydash",
        update_title=None,
        serve_locally=True,
    )  # callback exceptions are not suppressed (Dash's default): validation_layout lists the page's ids
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
    # Keys hold the snapshot version: nothing is kept of an older snapshot for long.
    memo = SnapshotMemo(PARTS_KEPT, timeout_s=2 * data.period)
    answers = AnswerCache(ANSWERS_KEPT, timeout_s=data.period)
    app.public_data, app.public_memo, app.public_answers = data, memo, answers

    def map_options() -> dict:
        centre, zoom = fit_view(runtime().city.bbox)  # the whole city in the public map's panel
        return {"geojson": layer_url("districts"), "centre": centre, "zoom": zoom,
                "tile_url": settings.map_tile_url}

    def snapshot_or_none():
        if flask.g.get("public_unavailable"):  # the request hook just tried
            return None
        snap = flask.g.get("public_snapshot")
        if snap is not None:  # the one the answer is kept under
            return snap
        try:
            return data.get()
        except Exception as exc:  # shown as a translated message, never a traceback
            log.warning("public snapshot unavailable: %s", _brief(exc))
            return None

    def unavailable(locale: str):
        return html.Main(html.P(i18n.t("public.error.unavailable", locale), role="alert",
                                className="public-error"), lang=locale)

    # The two callbacks are the public app's contract with the Dash renderer (contract.py).
    page, view = contract.PAGE, contract.VIEW

    @app.callback([Output(cid, prop) for cid, prop in page.outputs],
                  [Input(cid, prop) for cid, prop in page.inputs])
    def show_page(search):
        locale = layout.locale_from(search)
        snap = snapshot_or_none()
        if snap is None:
            return unavailable(locale), locale
        return memo.get(snap, ("page", locale),
                        lambda: layout.page(snap, catalogue, locale, runtime().city.name)), locale

    @app.callback([Output(cid, prop) for cid, prop in view.outputs],
                  [Input(cid, prop) for cid, prop in view.inputs],
                  [State(cid, prop) for cid, prop in view.state])
    def update_view(kpi_value, area_value, _n, locale_value):
        locale = locale_value if isinstance(locale_value, str) and locale_value in i18n.LOCALES \
            else i18n.DEFAULT_LOCALE
        snap = snapshot_or_none()
        if snap is None:
            message = i18n.t("public.error.unavailable", locale)
            return [message if cid == "public-error" else dash.no_update for cid, _ in view.outputs]
        out = layout.view(snap, catalogue, locale, kpi_value, area_value, tz=runtime().city.timezone,
                          map_options=map_options,
                          part=lambda key, build: memo.get(snap, key, lambda: serialised(build())))
        return [out[cid] for cid, _ in view.outputs]

    # Set up now, through the server's own request processing (Dash does it in a before_request
    # hook on the first request): this takes the global dash.callback registrations there are now,
    # before the internal app's pages add theirs (see the module's docstring).
    with server.test_request_context(PREFIX):
        server.preprocess_request()
    app.public_hooks = _Hooks(app, data, answers)
    return app


class _Hooks:
    """The public server's request hooks (registered after the rate limiter's)."""

    def __init__(self, app: PublicDash, data: queries.PublicData, answers: AnswerCache):
        self.app, self.data, self.answers = app, data, answers
        self.own = frozenset(app.callback_map)

    def answer_early(self):
        request = flask.request
        if any(part in ("..", ".") for part in request.path.split("/")):
            flask.abort(404)  # no dot segments: an open prefix must not lead elsewhere
        if request.method == "GET" and request.path in FIXED_GETS:
            return self._kept(self.answers.key("GET", request.path))
        if request.method == "GET" and request.path == PREFIX:  # the shell differs by language only
            return self._kept(self.answers.key("GET", PREFIX, request_locale()))
        if request.path == UPDATE_PATH and request.method == "POST":
            return self._update(request)
        return None

    def _kept(self, key: str):
        """The answer kept under ``key``, or None (Dash answers, and ``keep_answer`` keeps it)."""
        found = self.answers.get(key)
        if found is None:
            flask.g.public_answer_key = key
        return found

    def _update(self, request):
        if request.content_length is None or request.content_length > MAX_BODY:
            return flask.jsonify(error="request too large"), 413
        body = request.get_json(silent=True)  # parsed once: Dash reuses it
        output = body.get("output") if isinstance(body, dict) else None
        if not isinstance(output, str) or output not in self.own:
            return flask.jsonify(error="unknown callback"), 404
        try:
            snap = self.data.get()
        except Exception as exc:  # the Dash callback shows the translated message at once
            log.warning("public snapshot unavailable: %s", _brief(exc))
            flask.g.public_unavailable = True
            snap = None
        if snap is not None:
            flask.g.public_snapshot = snap
            found = self._kept(self.answers.key("POST", snap.computed_at.isoformat(), request.get_data()))
            if found is not None:
                return found
        if not contract.well_formed(body):  # Dash would answer 500: ask it the request it can take
            return self._dash_answer(contract.repaired(body, output))
        return None

    def _dash_answer(self, body: dict) -> flask.Response:
        """Dash's own answer to ``body``, within this request (the hooks have run; ``g`` is shared)."""
        server = self.app.server
        with server.test_request_context(UPDATE_PATH, method="POST", json=body):
            return server.make_response(server.dispatch_request())

    def keep_answer(self, response: flask.Response) -> flask.Response:
        key = flask.g.pop("public_answer_key", None)
        if key is not None:
            self.answers.put(key, response)
        return response


class PublicMount:
    """WSGI: requests under ``/public`` to the public app's server, all others to the internal one."""

    def __init__(self, internal, public):
        self.internal, self.public = internal, public

    def __call__(self, environ, start_response):
        path = "/" + environ.get("PATH_INFO", "").lstrip("/")  # as werkzeug's request.path has it
        target = self.public if security.is_public_path(path) else self.internal
        return target(environ, start_response)


def mount(server: flask.Flask, public: PublicDash) -> None:
    """Serve ``public`` beside the app of ``server`` (``gunicorn app:server``, Flask's runner, tests)."""
    server.wsgi_app = PublicMount(server.wsgi_app, public.server)
