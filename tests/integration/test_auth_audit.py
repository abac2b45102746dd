"""With sign-in on, the real acknowledgement and export paths leave who/when/what in audit_log."""
from __future__ import annotations

import psycopg
import pytest

from dashboard.server import create_app
from tests.auth_tools import add_user, with_sign_in
from tests.integration.test_auth import PASSWORD, _sign_in


@pytest.fixture
def app(settings):
    app = create_app(with_sign_in(settings))
    yield app
    from dashboard.auth import forget_roles
    from core.db import close_all

    forget_roles()
    close_all()


def _rows(db_url):
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT actor, role, action, detail, at FROM audit_log ORDER BY id").fetchall()


def test_acknowledgement_is_audited_and_needs_operator(app, db_url):
    # the wall page module as Dash's page loader imported it (importing it again under
    # another name would register /wall twice)
    import sys

    import dash

    module = next(p["module"] for p in dash.page_registry.values() if p["path"] == "/wall")
    acknowledge_as_user = sys.modules[module].acknowledge_as_user
    add_user(db_url, "olga", PASSWORD, "operator")
    add_user(db_url, "vera", PASSWORD, "viewer")
    with psycopg.connect(db_url, autocommit=True) as conn:
        alert = conn.execute("INSERT INTO alerts (kpi_id, kind, severity) VALUES "
                             "('parking_occupancy', 'threshold', 'warning') RETURNING id").fetchone()[0]
    viewer = app.server.test_client()
    assert _sign_in(viewer, "vera", PASSWORD).status_code == 302
    with viewer:
        viewer.get("/healthz")
        message, ok = acknowledge_as_user(alert, "seen", "en")
    assert not ok
    operator = app.server.test_client()
    assert _sign_in(operator, "olga", PASSWORD).status_code == 302
    with operator:
        operator.get("/healthz")
        message, ok = acknowledge_as_user(alert, "crew sent", "en")
    assert ok, message
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT state, acknowledged_by FROM alerts WHERE id = %s",
                            (alert,)).fetchone() == ("acknowledged", "olga")
    acks = [r for r in _rows(db_url) if r[2] == "alert.acknowledge"]
    assert len(acks) == 1 and acks[0][:2] == ("olga", "operator")
    assert acks[0][3]["alert"] == alert and acks[0][3]["comment"] == "crew sent"


def test_export_is_audited(app, db_url):
    add_user(db_url, "paulo", PASSWORD, "planner")
    client = app.server.test_client()
    assert client.get("/api/v1/kpis/congestion_index/values?format=csv").status_code == 401
    assert _sign_in(client, "paulo", PASSWORD).status_code == 302
    response = client.get("/api/v1/kpis/congestion_index/values?format=csv")
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    response.get_data()
    exports = [r for r in _rows(db_url) if r[2].startswith("export.")]
    assert [(r[0], r[1], r[2]) for r in exports] == [("paulo", "planner", "export.csv")]
    assert exports[0][3]["kpi"] == "congestion_index"
    actions = [r[2] for r in _rows(db_url)]
    assert actions == ["sign_in", "export.csv"]
