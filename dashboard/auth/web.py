"""The sign-in page, sign-out, and the guard that keeps anonymous users out.

``init_app(server)`` (called by ``create_app``) configures the signed session
cookie and registers a ``before_request`` guard: with sign-in on, every path
except the open ones (the public view, the sign-in page, ``/healthz``, the
districts layer the public map draws) needs a signed-in user. Pages redirect
to ``/login``; the API and Dash's callback endpoints answer 401.

The sign-in page is the Jinja template ``templates/citydash_auth/login.html``
(autoescaped); its form token is Flask-WTF's (``generate_csrf`` /
``validate_csrf``, checked by the sign-in handler only: Dash's JSON callback
endpoints, internal and public, are not form posts and carry no token).
"""
from __future__ import annotations

import logging
import os
import re
import secrets
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit

import flask
from flask_wtf.csrf import generate_csrf, validate_csrf
from wtforms import ValidationError

from core.db import pool
from dashboard import i18n, state
from dashboard.auth import audit, current_user
from dashboard.auth.users import verify
from dashboard.security import limiter

HERE = Path(__file__).parent
BLUEPRINT = flask.Blueprint("citydash_auth", __name__, static_folder=str(HERE / "static"),
                            static_url_path="/auth/static", template_folder=str(HERE / "templates"))
CSRF_FIELD = "csrf"  # the form field holding Flask-WTF's signed token
OPEN_EXACT = {"/login", "/logout", "/healthz", "/public"}
OPEN_PREFIXES = ("/public/", "/auth/static/")
PUBLIC_LAYER_RE = re.compile(r"^/layers/[A-Za-z0-9_-]+/districts\.geojson$")
log = logging.getLogger(__name__)
API_PREFIXES = ("/api", "/_dash", "/_reload-hash", "/layers")


def init_app(server: flask.Flask, settings) -> None:
    development = settings.environment == "development"
    server.secret_key = settings.secret_value("secret_key") or secret_from_file(Path(settings.secret_key_file))
    server.config.update(
        SESSION_COOKIE_NAME="citydash_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=bool(settings.session_cookie_secure and not development),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_hours),
    )
    server.register_blueprint(BLUEPRINT)
    server.before_request(guard)
    server.register_error_handler(401, _denied)
    server.register_error_handler(403, _denied)


def _denied(error):
    """401/403 (``require_role``) as a translated message, never a stack trace."""
    key = "auth.error.unauthorized" if error.code == 401 else "auth.error.forbidden"
    return flask.jsonify(error=i18n.t(key, _request_locale())), error.code


def secret_from_file(path: Path) -> str:
    """The generated session secret kept in ``path``; created (0600) by the first process."""
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker created it just now
        return _read_secret(path, wait=True)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    log.info("generated a session secret in %s (set CITYDASH_SECRET_KEY on several machines)", path)
    return _read_secret(path)


def _read_secret(path: Path, wait: bool = False) -> str:
    for _ in range(50 if wait else 1):
        text = path.read_text().strip()
        if len(text) >= 32:
            return text
        time.sleep(0.05)
    raise RuntimeError(f"{path}: the session secret file is empty or too short; delete it or set "
                       "CITYDASH_SECRET_KEY")


def is_open(path: str) -> bool:
    return path in OPEN_EXACT or path.startswith(OPEN_PREFIXES) or bool(PUBLIC_LAYER_RE.match(path))


def guard():
    request = flask.request
    if any(part in ("..", ".") for part in request.path.split("/")):
        flask.abort(404)  # no dot segments: an open prefix must not lead elsewhere
    if state.settings().auth_mode == "none":
        return None
    if is_open(request.path) or current_user() is not None:
        return None
    if request.method == "GET" and not request.path.startswith(API_PREFIXES):
        target = request.full_path if request.query_string else request.path
        return flask.redirect("/login?next=" + quote(target, safe=""), 302)
    return flask.jsonify(error=i18n.t("auth.error.unauthorized", _request_locale())), 401


def _request_locale() -> str:
    """The locale of a plain Flask request: ``?lang=``, the browser's, the city's (i18n.negotiate)."""
    return i18n.negotiate(flask.request.args.get("lang"), city_locale=state.city_locale())


def safe_next(target: str | None) -> str:
    """A local path to go to after signing in; anything else becomes ``/``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def _login_rate_limit() -> str:
    return state.settings().login_rate_limit


@BLUEPRINT.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_rate_limit, methods=["POST"])
def login():
    locale = _request_locale()
    request = flask.request
    target = safe_next(request.values.get("next"))
    if state.settings().auth_mode != "builtin":
        return flask.redirect(target)
    if request.method == "GET":
        return login_page(locale, target)
    try:
        validate_csrf(request.form.get(CSRF_FIELD))
    except ValidationError:  # missing, forged, expired (WTF_CSRF_TIME_LIMIT) or another session's
        return login_page(locale, target, i18n.t("auth.error.expired", locale), 400)
    name = request.form.get("name", "")[:100]
    password = request.form.get("password", "")[:2000]
    try:
        with pool(state.settings()).connection() as conn:
            user = verify(conn, name, password)
        if user is None:
            audit("sign_in_failed", {"name": name[:64]}, user=None)
            return login_page(locale, target, i18n.t("auth.error.invalid", locale), 401)
        audit("sign_in", {"method": "password"}, user=user)  # no unrecorded sign-in
    except Exception:  # database down: a clear message, never a traceback
        log.exception("sign-in could not be checked")
        return login_page(locale, target, i18n.t("auth.error.unavailable", locale), 503)
    flask.session.clear()
    flask.session.permanent = True
    flask.session["user"] = {"name": user.name, "at": time.time()}
    flask.g.citydash_user = user
    return flask.redirect(target)


@BLUEPRINT.route("/logout")
def logout():
    user = current_user()
    if user is not None and state.settings().auth_mode == "builtin":
        audit("sign_out", {}, user=user)
    flask.session.clear()
    return flask.redirect("/login")


@BLUEPRINT.errorhandler(429)
def _too_many_attempts(error):
    """Too many sign-in attempts (CITYDASH_LOGIN_RATE_LIMIT): the page again, with the reason."""
    locale = _request_locale()
    return login_page(locale, safe_next(flask.request.values.get("next")),
                      i18n.t("auth.error.rate_limited", locale), 429)


def login_page(locale: str, target: str, error: str | None = None, status: int = 200):
    """The sign-in form in ``locale`` (allow-listed), going to ``target`` (a safe local path)."""
    locale = i18n.allowed(locale)
    body = flask.render_template(
        "citydash_auth/login.html", locale=locale, locales=i18n.LOCALES, target=target,
        next_query=quote(target, safe=""), error=error, csrf_token=generate_csrf(),
        t=lambda key, in_locale=None: i18n.t(key, in_locale or locale))
    response = flask.make_response(body, status)
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    response.headers["Cache-Control"] = "no-store"
    return response
