"""The Dash application factory (``app.py`` and the tests call it)."""
from __future__ import annotations

from pathlib import Path

import dash
import flask
from dash import html

from core.settings import Settings
from dashboard import cache, security, state
from dashboard.api import BLUEPRINT as API_V1
from dashboard.auth import web as auth_web
from dashboard.layer_files import BLUEPRINT as LAYER_FILES
from dashboard.public.app import create_public_app, mount

ROOT = Path(__file__).resolve().parent.parent


def create_app(settings: Settings | None = None) -> dash.Dash:
    rt = state.configure(settings)
    security.check_auth_mode(rt.settings)  # no sign-in only in development
    cache.configure(rt.settings)
    # The public view (/public/): its own Flask server and Dash app, built and set up before the
    # internal app registers its pages' global callbacks, so it never takes them (public/app.py).
    public = create_public_app(rt.settings)
    app = dash.Dash(
        __name__,
        use_pages=True,
        pages_folder=str(Path(__file__).with_name("pages")),
        assets_folder=str(ROOT / "assets"),
        title="citydash",
        update_title=None,
        suppress_callback_exceptions=False,
        serve_locally=True,
    )
    app.layout = html.Div([dash.page_container], className="citydash")
    server: flask.Flask = app.server
    # no route reads a body larger than this (413 first), the public server's included
    server.config["MAX_CONTENT_LENGTH"] = public.server.config["MAX_CONTENT_LENGTH"] = rt.settings.max_request_bytes
    server.register_blueprint(LAYER_FILES)
    server.register_blueprint(API_V1)  # read API /api/v1 (docs/api.md)

    @server.route("/healthz")
    def healthz():
        db = rt.database_status()
        body = {"ok": db.ok, "database": db.ok, "migration_version": db.migration_version}
        return flask.jsonify(body), (200 if db.ok else 503)

    # Sign-in guard, security headers and rate limits (docs/auth.md, docs/public-embed.md); the
    # public server has its own (create_public_app).
    auth_web.init_app(server, rt.settings)
    security.init_app(server, rt.settings, [app])
    # The internal app takes its pages' inline clientside scripts now (csp_hashes collects them),
    # before a public page is served; it takes their callbacks on its own first request.
    app.csp_hashes()
    mount(server, public)  # requests under /public go to the public server, paths unchanged
    app.public_app = public
    return app
