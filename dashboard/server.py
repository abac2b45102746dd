"""The Dash application factory (``app.py`` and the tests call it)."""
from __future__ import annotations

from pathlib import Path

import dash
import flask
from dash import dcc, html

from dashboard import cache, state
from dashboard.api import BLUEPRINT as API_V1
from dashboard.layer_files import BLUEPRINT as LAYER_FILES
from core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def create_app(settings: Settings | None = None) -> dash.Dash:
    rt = state.configure(settings)
    cache.configure(rt.settings)
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
    server.register_blueprint(LAYER_FILES)
    server.register_blueprint(API_V1)  # read API /api/v1 (docs/api.md)

    @server.route("/healthz")
    def healthz():
        db = rt.database_status()
        body = {"ok": db.ok, "database": db.ok, "migration_version": db.migration_version}
        return flask.jsonify(body), (200 if db.ok else 503)

    # Sign-in guard, the public view (/public/: its own Dash app and callbacks on the same
    # server), security headers and rate limits (docs/auth.md, docs/public-embed.md).
    from dashboard import security
    from dashboard.auth import web as auth_web
    from dashboard.public.app import create_public_app

    auth_web.init_app(server, rt.settings)
    apps = [app]
    # Rate limits before the public app's request hook, which answers most public requests itself.
    security.init_app(server, rt.settings, apps)
    public = create_public_app(server, rt.settings)
    app.public_app = public
    apps.append(public)  # its script hashes join the CSP (computed on the first response)
    # Set both apps up now, in a fixed order, so the internal app takes the
    # globally registered callbacks (dash.callback) before any request arrives.
    with server.test_request_context("/"):
        app._setup_server()
        public._setup_server()
    return app
