"""The Dash application factory (``app.py`` and the tests call it)."""
from __future__ import annotations

from pathlib import Path

import dash
import flask
from dash import dcc, html

from dashboard import cache, state
from dashboard.layer_files import BLUEPRINT as LAYER_FILES
from ingest.settings import Settings

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

    @server.route("/healthz")
    def healthz():
        db = rt.database_status()
        body = {"ok": db.ok, "database": db.ok, "migration_version": db.migration_version}
        return flask.jsonify(body), (200 if db.ok else 503)

    return app
