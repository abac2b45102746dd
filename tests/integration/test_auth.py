"""Sign-in on: anonymous requests are refused, users sign in, roles and the audit log hold."""
from __future__ import annotations

import re

import psycopg
import pytest
from werkzeug.security import check_password_hash

from dashboard.auth import audit, current_user, forget_roles, require_role
from dashboard.server import create_app
from tests.auth_tools import add_user, with_sign_in

PASSWORD = "correct horse battery"


@pytest.fixture
def auth_settings(settings):
    return with_sign_in(settings)


@pytest.fixture
def app(auth_settings):
    app = create_app(auth_settings)
    server = app.server

    @server.route("/test-operator-only")
    @require_role("operator")
    def operator_only():
        user = current_user()
        audit("test.ack", {"alert": 7})
        return f"ok {user.name} {user.role}"

    yield app
    forget_roles()
    from core.db import close_all

    close_all()


def _sign_in(client, name, password, next_path="/"):
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.get_data(as_text=True))[1]
    return client.post("/login", data={"csrf": token, "name": name, "password": password,
                                       "next": next_path}, headers={"Accept-Language": "en"})


def _audit_rows(db_url):
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT actor, role, action, detail FROM audit_log ORDER BY id").fetchall()


@pytest.mark.parametrize("path", ["/", "/wall", "/wall?screen=3", "/explore", "/explore/district/x"])
def test_anonymous_pages_redirect_to_login(app, path):
    response = app.server.test_client().get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=%2F")


@pytest.mark.parametrize("method,path", [
    ("GET", "/api/kpis"), ("GET", "/api/export.csv"), ("POST", "/api/alerts/1/ack"),
    ("POST", "/_dash-update-component"), ("GET", "/_dash-layout"), ("GET", "/_dash-dependencies"),
    ("GET", "/layers/city/sensors.geojson"), ("GET", "/layers/city/roads.geojson"),
])
def test_anonymous_api_and_callbacks_get_401(app, method, path):
    response = app.server.test_client().open(path, method=method, json={},
                                             headers={"Accept-Language": "en"})
    assert response.status_code == 401
    assert response.get_json()["error"] == "Sign-in required."


def test_open_paths_need_no_sign_in(app):
    client = app.server.test_client()
    assert client.get("/healthz").status_code == 200
    login = client.get("/login?lang=pt-BR")
    assert login.status_code == 200 and "Nome de usuário" in login.get_data(as_text=True)
    assert client.get("/auth/static/login.css").status_code == 200


def test_sign_in_session_and_audit(app, db_url):
    add_user(db_url, "maria", PASSWORD, "operator")
    with psycopg.connect(db_url) as conn:
        stored = conn.execute("SELECT password_hash FROM users WHERE name = 'maria'").fetchone()[0]
    assert PASSWORD not in stored and check_password_hash(stored, PASSWORD)
    client = app.server.test_client()
    wrong = _sign_in(client, "maria", "not the password")
    assert wrong.status_code == 401 and "Wrong user name or password." in wrong.get_data(as_text=True)
    ok = _sign_in(client, "maria", PASSWORD, "/wall")
    assert ok.status_code == 302 and ok.headers["Location"] == "/wall"
    cookie = client.get_cookie("citydash_session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    assert client.get("/").status_code == 200
    assert client.get("/test-operator-only").get_data(as_text=True) == "ok maria operator"
    client.get("/logout")
    assert client.get("/").status_code == 302
    rows = _audit_rows(db_url)
    assert [(r[0], r[2]) for r in rows] == [("anonymous", "sign_in_failed"), ("maria", "sign_in"),
                                            ("maria", "test.ack"), ("maria", "sign_out")]
    assert rows[0][3] == {"name": "maria"} and rows[2][3] == {"alert": 7} and rows[2][1] == "operator"
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT last_login_at IS NOT NULL FROM users").fetchone()[0]


def test_roles_are_enforced_and_rechecked(app, db_url):
    add_user(db_url, "pedro", PASSWORD, "viewer")
    client = app.server.test_client()
    assert _sign_in(client, "pedro", PASSWORD).status_code == 302
    denied = client.get("/test-operator-only", headers={"Accept-Language": "pt-BR"})
    assert denied.status_code == 403
    assert denied.get_json()["error"] == "Seu perfil não permite esta ação."
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE users SET role = 'admin' WHERE name = 'pedro'")
    forget_roles()
    assert client.get("/test-operator-only").status_code == 200
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE users SET disabled = true WHERE name = 'pedro'")
    forget_roles()
    assert client.get("/test-operator-only").status_code == 302  # signed out: to /login
    assert client.get("/").status_code == 302


def test_forged_or_foreign_session_is_anonymous(app, auth_settings):
    other = create_app(auth_settings.model_copy(update={"secret_key": "z" * 40})).server
    with other.test_request_context():
        from flask import session

        session["user"] = {"name": "admin", "at": 9e12}
        forged = other.session_interface.get_signing_serializer(other).dumps(dict(session))
    client = app.server.test_client()
    client.set_cookie("citydash_session", forged)
    assert client.get("/").status_code == 302


def test_next_is_local_only(app, db_url):
    add_user(db_url, "ana", PASSWORD, "planner")
    for target in ["https://evil.example/", "//evil.example/x", "/\\evil.example"]:
        client = app.server.test_client()
        response = _sign_in(client, "ana", PASSWORD, target)
        assert response.status_code == 302 and response.headers["Location"] == "/"


def test_login_form_needs_its_token(app, db_url):
    add_user(db_url, "ana", PASSWORD, "planner")
    client = app.server.test_client()
    client.get("/login")
    response = client.post("/login", data={"csrf": "guess", "name": "ana", "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/").status_code == 302


def test_login_is_rate_limited(settings, db_url):
    app = create_app(with_sign_in(settings, login_rate_limit="3 per minute"))
    client = app.server.test_client()
    codes = [_sign_in(client, "nobody", "wrong password").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    blocked = _sign_in(client, "nobody", "wrong password", "/")
    assert blocked.status_code == 429 and "Too many sign-in attempts" in blocked.get_data(as_text=True)
    # another client address is not blocked
    page = client.get("/login", environ_base={"REMOTE_ADDR": "127.0.0.9"})
    assert page.status_code == 200


def _whoami_server(settings, **extra):
    """A proxy-mode dashboard with a ``/test-whoami`` route naming the request's user and role."""
    server = create_app(with_sign_in(settings, auth_mode="proxy", **extra)).server

    @server.route("/test-whoami")
    def whoami():
        user = current_user()
        return f"{user.name} {user.role}" if user else "anonymous"

    return server


def test_proxy_mode_trusts_only_the_proxy(settings, db_url):
    headers = {"X-Forwarded-User": "joana", "X-Forwarded-Role": "operator"}
    # the role header is opt-in: by default a header saying "operator" gives nobody that role
    default = _whoami_server(settings).test_client()
    assert default.get("/test-whoami", headers=headers).get_data(as_text=True) == "joana viewer"
    server = _whoami_server(settings, auth_proxy_role_header="X-Forwarded-Role")
    client = server.test_client()
    assert client.get("/test-whoami", headers=headers).get_data(as_text=True) == "joana operator"
    assert client.get("/", headers=headers).status_code == 200
    spoofed = server.test_client().get("/", headers=headers,
                                       environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert spoofed.status_code == 302
    add_user(db_url, "kenji", PASSWORD, "planner")
    assert client.get("/test-whoami", headers={"X-Forwarded-User": "kenji"}
                      ).get_data(as_text=True) == "kenji planner"
    assert client.get("/test-whoami", headers={"X-Forwarded-User": "new.person"}
                      ).get_data(as_text=True) == "new.person viewer"
    rows = _audit_rows(db_url)
    assert ("joana", "operator", "sign_in", {"method": "proxy"}) in rows


def test_generated_secret_is_shared_and_private(settings, tmp_path):
    path = tmp_path / "var" / "secret_key"
    update = {"auth_mode": "builtin", "secret_key": "", "secret_key_file": str(path)}
    first = create_app(settings.model_copy(update=update)).server.secret_key
    second = create_app(settings.model_copy(update=update)).server.secret_key
    assert first == second and len(first) >= 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert create_app(settings.model_copy(update={**update, "secret_key": "x" * 40})).server.secret_key == "x" * 40


def test_dash_callbacks_need_no_form_token(app, db_url):
    """The sign-in form's CSRF token is not asked of Dash's JSON callback posts (internal, public)."""
    add_user(db_url, "rita", PASSWORD, "viewer")
    client = app.server.test_client()
    assert _sign_in(client, "rita", PASSWORD).status_code == 302
    for locale in ("ja", "../../x", "**", "x" * 3000):  # a store's value is matched, never a path
        body = {"output": "status-body.children", "outputs": {"id": "status-body", "property": "children"},
                "inputs": [{"id": "status-interval", "property": "n_intervals", "value": 1}],
                "state": [{"id": "status-locale", "property": "data", "value": locale}],
                "changedPropIds": ["status-interval.n_intervals"]}
        response = client.post("/_dash-update-component", json=body)
        assert response.status_code == 200, (locale, response.get_data(as_text=True)[:200])
    public = client.post("/public/_dash-update-component", json={
        "output": "public-page.children", "outputs": {"id": "public-page", "property": "children"},
        "inputs": [{"id": "public-url", "property": "search", "value": "?lang=ja"}], "state": [],
        "changedPropIds": ["public-url.search"]})
    assert public.status_code != 400 and "CSRF" not in public.get_data(as_text=True)
