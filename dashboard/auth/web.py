"""The sign-in page, sign-out, and the guard that keeps anonymous users out.

``init_app(server)`` (called by ``create_app``) configures the signed session
cookie and registers a ``before_request`` guard: with sign-in on, every path
except the open ones (the public view, the sign-in page, ``/healthz``, the
districts layer the public map draws) needs a signed-in user. Pages redirect
to ``/login``; the API and Dash's callback endpoints answer 401.
"""
from __future__ import annotations

import html
import logging
import os
import re
import secrets
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit

import flask

from dashboard import i18n
from dashboard.auth import audit, current_user
from dashboard.auth.users import verify
from dashboard.security import limiter

BLUEPRINT = flask.Blueprint("citydash_auth", __name__, static_folder=str(Path(__file__).with_name("static")),
                            static_url_path="/auth/static")
OPEN_EXACT = {"/login", "/logout", "/healthz", "/public"}
OPEN_PREFIXES = ("/public/", "/auth/static/")
PUBLIC_LAYER_RE = re.compile(r"^/layers/[A-Za-z0-9_-]+/districts\.geojson$")
log = logging.getLogger(__name__)
API_PREFIXES = ("/api", "/_dash", "/_reload-hash", "/layers")


def _settings():
    from dashboard.state import runtime

    return runtime().settings


def init_app(server: flask.Flask, settings) -> None:
    development = settings.environment == "development"
    server.secret_key = settings.secret_key or secret_from_file(Path(settings.secret_key_file))
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
    return flask.jsonify(error=i18n.t(key, _locale())), error.code


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
    if _settings().auth_mode == "none":
        return None
    if is_open(request.path) or current_user() is not None:
        return None
    if request.method == "GET" and not request.path.startswith(API_PREFIXES):
        target = request.full_path if request.query_string else request.path
        return flask.redirect("/login?next=" + quote(target, safe=""), 302)
    locale = _locale()
    return flask.jsonify(error=i18n.t("auth.error.unauthorized", locale)), 401


def _locale() -> str:
    from dashboard.state import runtime

    try:
        city_locale = runtime().city.locale
    except Exception:
        city_locale = None
    return i18n.negotiate(flask.request.args.get("lang"),
                          flask.request.headers.get("Accept-Language"), city_locale)


def safe_next(target: str | None) -> str:
    """A local path to go to after signing in; anything else becomes ``/``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def _login_rate_limit() -> str:
    return _settings().login_rate_limit


@BLUEPRINT.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_rate_limit, methods=["POST"])
def login():
    locale = _locale()
    request = flask.request
    target = safe_next(request.values.get("next"))
    if _settings().auth_mode != "builtin":
        return flask.redirect(target)
    if request.method == "GET":
        return login_page(locale, target)
    token = flask.session.get("csrf")
    if not token or not secrets.compare_digest(str(token), request.form.get("csrf", "")):
        return login_page(locale, target, i18n.t("auth.error.expired", locale), 400)
    name = request.form.get("name", "")[:100]
    password = request.form.get("password", "")[:2000]
    from core.db import pool

    try:
        with pool(_settings()).connection() as conn:
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
    if user is not None and _settings().auth_mode == "builtin":
        audit("sign_out", {}, user=user)
    flask.session.clear()
    return flask.redirect("/login")


def login_page(locale: str, target: str, error: str | None = None, status: int = 200):
    t = lambda key: html.escape(i18n.t(key, locale))  # noqa: E731
    token = flask.session.get("csrf") or secrets.token_urlsafe(24)
    flask.session["csrf"] = token
    error_html = (f'<p class="login-error" role="alert" id="login-error">{html.escape(error)}</p>'
                  if error else "")
    described = ' aria-describedby="login-error"' if error else ""
    current = ' aria-current="true"'
    langs = " ".join(
        f'<a href="/login?lang={quote(code)}&amp;next={quote(target, safe="")}" lang="{code}"'
        f'{current if code == locale else ""}>'
        f'{html.escape(i18n.t("auth.language." + code, code))}</a>'
        for code in i18n.LOCALES)
    body = f"""<!DOCTYPE html>
<html lang="{html.escape(locale)}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{t("auth.title")} · citydash</title>
<link rel="stylesheet" href="/auth/static/login.css"></head>
<body><main class="login">
<nav class="login-langs" aria-label="{t("auth.language")}">{langs}</nav>
<h1>{t("auth.title")}</h1>
{error_html}
<form method="post" action="/login?lang={quote(locale)}">
<input type="hidden" name="csrf" value="{html.escape(token)}">
<input type="hidden" name="next" value="{html.escape(target)}">
<label for="login-name">{t("auth.name")}</label>
<input id="login-name" name="name" autocomplete="username" required maxlength="64"{described}>
<label for="login-password">{t("auth.password")}</label>
<input id="login-password" name="password" type="password" autocomplete="current-password" required{described}>
<button type="submit" id="login-submit">{t("auth.submit")}</button>
</form>
<p class="login-public"><a href="/public/?lang={quote(locale)}">{t("auth.public_link")}</a></p>
</main></body></html>"""
    response = flask.make_response(body, status)
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    response.headers["Cache-Control"] = "no-store"
    return response
