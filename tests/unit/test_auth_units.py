"""Pure logic of sign-in, security headers and the public view's input handling."""
from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone

import flask
import pytest

from dashboard.auth.users import ROLES, User, UserError, check_name, check_password, check_role
from dashboard.auth.web import is_open, safe_next
from kpis.catalogue import load_catalogue
from dashboard.public import figures, layout
from dashboard.public.queries import Point, PublicKpi, Snapshot, public_entries
from dashboard.security import HeaderPolicy, check_debug, debug_allowed
from core.settings import Settings


@pytest.mark.parametrize("role,allowed", [
    ("viewer", {"viewer"}), ("planner", {"viewer", "planner"}),
    ("operator", {"viewer", "planner", "operator"}), ("admin", set(ROLES))])
def test_role_order(role, allowed):
    user = User("x", role)
    assert {r for r in ROLES if user.has_role(r)} == allowed
    assert not user.has_role("superuser")


def test_user_name_password_and_role_checks():
    assert check_name("maria.silva@prefeitura") == "maria.silva@prefeitura"
    for bad in ["", "a b", "x" * 65, "robert'); DROP TABLE users;--", None]:
        with pytest.raises(UserError):
            check_name(bad)
    with pytest.raises(UserError, match="at least"):
        check_password("short")
    with pytest.raises(UserError, match="at most"):
        check_password("x" * 2000)
    with pytest.raises(UserError):
        check_role("root")


@pytest.mark.parametrize("target,expected", [
    ("/wall?screen=2", "/wall?screen=2"), ("/explore", "/explore"), (None, "/"), ("", "/"),
    ("https://evil.example/", "/"), ("//evil.example", "/"), ("/\\evil", "/"), ("javascript:alert(1)", "/")])
def test_safe_next(target, expected):
    assert safe_next(target) == expected


@pytest.mark.parametrize("path,open_", [
    ("/public/", True), ("/public", True), ("/public/_dash-update-component", True), ("/login", True),
    ("/healthz", True), ("/layers/city/districts.geojson", True), ("/layers/city/sensors.geojson", False),
    ("/layers/city/roads.geojson", False), ("/publicity", False), ("/wall", False), ("/", False),
    ("/api/v1/kpis", False), ("/_dash-update-component", False)])
def test_open_paths(path, open_):
    assert is_open(path) is open_


def test_debug_only_in_development_on_loopback():
    dev = Settings(_env_file=None, debug=True, environment="development", host="127.0.0.1")
    assert debug_allowed(dev) and check_debug(dev)
    for update in [{"environment": "production"}, {"host": "0.0.0.0"}]:
        with pytest.raises(SystemExit, match="refusing CITYDASH_DEBUG"):
            check_debug(dev.model_copy(update=update))
    assert check_debug(Settings(_env_file=None)) is False


class _App:
    def __init__(self, hashes):
        self.hashes = hashes

    def csp_hashes(self):
        return self.hashes


def test_content_security_policy():
    settings = Settings(_env_file=None, public_frame_ancestors="https://www.cuiaba.mt.gov.br",
                        map_tile_url="https://tiles.city.example/{z}/{x}/{y}.png")
    policy = HeaderPolicy(settings, [_App(["'sha256-a'"]), _App(["'sha256-a'", "'sha256-b'"])])
    internal, public = policy.csp(False), policy.csp(True)
    assert "script-src 'self' 'sha256-a' 'sha256-b';" in internal
    assert "'unsafe-inline'" not in internal.split("script-src")[1].split(";")[0]
    assert "'unsafe-eval'" not in internal
    assert "frame-ancestors 'none'" in internal
    assert "frame-ancestors https://www.cuiaba.mt.gov.br" in public
    assert "connect-src 'self' https://tiles.city.example" in public
    assert "object-src 'none'" in public


def _snapshot() -> Snapshot:
    now = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
    kpis = (PublicKpi("parking_occupancy", "%", "lower", 3, 0), PublicKpi("congestion_index", "%", "lower", 3, 0))
    snap = Snapshot(now, kpis, {"centro": "Centro", "norte": "Norte"})
    snap.latest[("congestion_index", "city", "")] = Point(now, 45.0, False)
    snap.latest[("congestion_index", "district", "centro")] = Point(now, 75.0, False)
    snap.latest[("congestion_index", "district", "norte")] = Point(now, None, True)
    snap.series[("congestion_index", "city", "")] = [
        Point(now - timedelta(minutes=15 * i), 40.0 + i, False) for i in range(8, 0, -1)]
    return snap


def test_choice_validation():
    catalogue = load_catalogue("layers/demo_city")
    snap = _snapshot()
    assert layout.parse_choice(snap, None, None, catalogue) == layout.Choice("congestion_index", "city", None)
    assert layout.parse_choice(snap, "parking_occupancy", "norte", catalogue).error is None
    for bad in ["energy_demand", "'; DROP TABLE x; --", "x" * 1000, 12, {"a": 1}, ["congestion_index"]]:
        assert layout.parse_choice(snap, bad, "city", catalogue).error == "public.error.bad_kpi"
        assert layout.parse_choice(snap, "congestion_index", bad, catalogue).error == "public.error.bad_area"
    empty = Snapshot(snap.computed_at, (), {})
    assert layout.parse_choice(empty, "congestion_index", "city").error == "public.error.no_kpis"


@pytest.mark.parametrize("search,locale", [("?lang=ja", "ja"), ("?x=1&lang=pt-br", "pt-BR"), ("", "en"),
                                           (None, "en"), ("?lang=" + "x" * 500, "en"), (42, "en")])
def test_locale_from_search(search, locale):
    assert layout.locale_from(search) == locale


def test_rows_and_status_words():
    catalogue = load_catalogue("layers/demo_city")
    kpi = catalogue["congestion_index"]  # lower is better; warning 40, critical 70
    rows = figures.district_rows(_snapshot(), "congestion_index", kpi, "pt-BR")
    assert rows[0] == figures.Row("Cidade inteira", "45,0 %", "Atenção")
    assert figures.Row("Centro", "75,0 %", "Crítico") in rows
    assert figures.Row("Norte", "Não exibido (poucos sensores)", "Desconhecido") in rows
    assert figures.status_key(kpi, 10.0) == "normal" and figures.status_key(None, 10.0) == "unknown"


def test_trend_table_is_hourly_means_in_city_time():
    points = _snapshot().series[("congestion_index", "city", "")]
    rows = figures.trend_rows(points, "%", "en", "America/Cuiaba")
    assert [r.label for r in rows] == ["06:00", "07:00"]  # 10:00-11:45 UTC, Cuiabá is UTC-4
    first_hour = [p.value for p in points if p.at.hour == 10]
    assert len(first_hour) == 4
    assert rows[0].value == f"{sum(first_hour) / len(first_hour):.1f} %"


def test_public_entries_follow_the_catalogue():
    catalogue = load_catalogue("layers/demo_city")
    entries = {e["kpi_id"]: e for e in public_entries(catalogue)}
    assert set(entries) == {k.id for k in catalogue if k.public}
    assert "sensors_reporting" not in entries and "energy_demand" not in entries
    assert entries["congestion_index"]["min_group"] == catalogue["congestion_index"].min_group


# -- the sign-in page: a Jinja template, Flask-WTF's token ----------------------------------------

def _login_server(**changes):
    from dashboard import security, state
    from dashboard.auth import web

    settings = Settings(_env_file=None, auth_mode="builtin", secret_key="s" * 40,
                        session_cookie_secure=False, **changes)
    state.configure(settings)
    server = flask.Flask("login-test")
    web.init_app(server, settings)
    security.init_app(server, settings, [])
    return server


def _token(page) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page.get_data(as_text=True))[1]


def test_login_page_from_the_template():
    client = _login_server().test_client()
    page = client.get("/login?lang=ja&next=/wall%3Fscreen%3D2")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert '<html lang="ja">' in text
    for ident in ("login-name", "login-password", "login-submit"):
        assert f'id="{ident}"' in text
    assert 'name="next" value="/wall?screen=2"' in text
    assert '&amp;next=%2Fwall%3Fscreen%3D2"' in text and 'lang="pt-BR"' in text
    assert 'href="/auth/static/login.css"' in text
    assert "login-error" not in text
    assert page.headers["X-Frame-Options"] == "DENY"  # the security headers still apply
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert _token(page)


@pytest.mark.parametrize("lang", ["../../x", "**", "x" * 5000, '"><script>alert(1)</script>'])
def test_login_page_escapes_what_the_request_says(lang):
    client = _login_server().test_client()
    page = client.get("/login", query_string={"lang": lang, "next": '/x"><script>alert(1)</script>'})
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and '<html lang="pt-BR">' in text  # the demo city's locale
    assert "<script>" not in text
    assert 'value="/x&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in text


def test_login_post_needs_the_sessions_token():
    server = _login_server()
    client = server.test_client()
    _token(client.get("/login"))
    for token in (None, "guess", _token(server.test_client().get("/login"))):  # none, forged, another session's
        data = {"name": "ana", "password": "x" * 12, **({"csrf": token} if token else {})}
        refused = client.post("/login?lang=en", data=data)
        assert refused.status_code == 400
        assert "login-error" in refused.get_data(as_text=True)


def test_login_token_expires():
    server = _login_server()
    server.config["WTF_CSRF_TIME_LIMIT"] = 1
    client = server.test_client()
    token = _token(client.get("/login"))
    time.sleep(2.1)
    assert client.post("/login", data={"csrf": token, "name": "a", "password": "b" * 12}).status_code == 400


def test_no_app_wide_csrf_protection():
    server = _login_server()
    assert "csrf" not in server.extensions  # Dash's JSON callback posts carry no form token


def test_rate_limited_sign_in_shows_the_page_other_paths_plain_text():
    server = _login_server(login_rate_limit="2 per minute")
    client = server.test_client()
    codes = [client.post("/login", data={"csrf": "x"}).status_code for _ in range(3)]
    assert codes == [400, 400, 429]
    blocked = client.post("/login?lang=pt-BR", data={"csrf": "x"})
    assert blocked.status_code == 429 and 'id="login-name"' in blocked.get_data(as_text=True)
    assert blocked.headers["Content-Type"].startswith("text/html")


def test_no_sign_in_is_refused_outside_development():
    import pytest

    from core.settings import Settings
    from dashboard.security import check_auth_mode

    with pytest.raises(SystemExit, match="CITYDASH_AUTH_MODE=none"):
        check_auth_mode(Settings(_env_file=None, auth_mode="none", environment="production"))
    check_auth_mode(Settings(_env_file=None, auth_mode="none", environment="development"))
    check_auth_mode(Settings(_env_file=None, auth_mode="builtin", environment="production"))
