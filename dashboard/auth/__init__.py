"""Sign-in and roles for the internal pages: who is asking, and may they?

Interface used by every page (see docs/auth.md)::

    from dashboard.auth import current_user, require_role, ROLES, audit

* ``current_user() -> User | None`` inside any Flask request (Dash callbacks
  included); ``User.name``, ``User.role``, ``User.has_role(role)`` with
  viewer < planner < operator < admin.
* ``require_role(role)``: decorator for Flask views and Dash callbacks; an
  anonymous caller gets 401, a signed-in one without the role 403.
* ``audit(action, detail)``: one row in ``audit_log`` (who, when, what).

The mode is ``CITYDASH_AUTH_MODE``: ``builtin`` (users table, signed session
cookie), ``proxy`` (a trusted reverse proxy's header, for single sign-on) or
``none`` (development and tests: everyone is the local admin ``dev``).
"""
from __future__ import annotations

import functools
import json
import logging
import threading
import time

import flask
from werkzeug.exceptions import Forbidden, Unauthorized

from core.db import pool
from dashboard.auth.users import NAME_RE, ROLES, User, role_of
from dashboard import state

log = logging.getLogger(__name__)

__all__ = ["ROLES", "User", "current_user", "require_role", "audit", "DEV_USER"]

DEV_USER = User("dev", "admin")
ROLE_RECHECK_S = 30.0
_role_cache: dict[str, tuple[float, str | None]] = {}
_role_lock = threading.Lock()


def _in_request() -> bool:
    return flask.has_request_context()


def current_user() -> User | None:
    """The signed-in user of the current request (None: anonymous or outside a request)."""
    if not _in_request():
        return None
    cached = flask.g.get("citydash_user", ...)
    if cached is not ...:
        return cached
    user = _resolve()
    flask.g.citydash_user = user
    return user


def _resolve() -> User | None:
    settings = state.settings()
    mode = settings.auth_mode
    if mode == "none":
        return DEV_USER
    if mode == "proxy":
        return _proxy_user(settings)
    return _session_user(settings)


def _session_user(settings) -> User | None:
    data = flask.session.get("user")
    if not isinstance(data, dict):
        return None
    name, at = data.get("name"), data.get("at")
    if not isinstance(name, str) or not isinstance(at, (int, float)):
        return None
    if time.time() - at > settings.session_hours * 3600:
        return None
    role = _current_role(name)
    return User(name, role) if role else None


def _current_role(name: str) -> str | None:
    """The user's role from the database, re-read at most every ROLE_RECHECK_S seconds."""
    now = time.monotonic()
    with _role_lock:
        hit = _role_cache.get(name)
    if hit and now - hit[0] < ROLE_RECHECK_S:
        return hit[1]
    try:
        with pool(state.settings()).connection() as conn:
            role = role_of(conn, name)
    except Exception:  # database down: nobody is signed in rather than an error page
        log.exception("cannot check the role of a signed-in user")
        return None
    with _role_lock:
        _role_cache[name] = (now, role)
    return role


def forget_roles() -> None:
    """Drop the role cache (after a role change, in tests)."""
    with _role_lock:
        _role_cache.clear()


def peer_address() -> str | None:
    """The address that connected to us (the proxy's, not X-Forwarded-For's)."""
    orig = flask.request.environ.get("werkzeug.proxy_fix.orig") or {}
    return orig.get("REMOTE_ADDR") or flask.request.remote_addr


def _proxy_user(settings) -> User | None:
    name = flask.request.headers.get(settings.auth_proxy_user_header, "").strip()
    if not name:
        return None
    trusted = {a.strip() for a in settings.auth_proxy_trusted.split(",") if a.strip()}
    if peer_address() not in trusted:
        log.warning("ignoring %s from untrusted address %s", settings.auth_proxy_user_header,
                    peer_address())
        return None
    if not NAME_RE.match(name):
        return None
    # the role header is opt-in (empty setting: none is read); only the proxy may set it
    header = settings.auth_proxy_role_header
    role = flask.request.headers.get(header, "").strip().lower() if header else ""
    if role not in ROLES:
        role = _current_role(name) or settings.auth_proxy_default_role
    if role not in ROLES:
        return None
    user = User(name, role)
    if flask.session.get("proxy_user") != name:  # first request of this browser session
        flask.session["proxy_user"] = name
        audit("sign_in", {"method": "proxy"}, user=user)
    return user


def require_role(role: str):
    """Decorator: the wrapped view or callback runs only for users with ``role`` or higher."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")

    def decorate(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            user = current_user()
            if user is None:
                raise Unauthorized()
            if not user.has_role(role):
                raise Forbidden()
            return func(*args, **kwargs)

        return wrapper

    return decorate


def audit(action: str, detail: dict, *, user: User | None = None) -> None:
    """Record ``action`` by the current (or given) user in ``audit_log``.

    Raises when the row cannot be written: an action that must be audited
    (an export, an acknowledgement) should not go ahead unrecorded.
    """
    who = user or current_user()
    addr = flask.request.remote_addr if _in_request() else None
    with pool(state.settings()).connection() as conn:
        conn.execute(
            "INSERT INTO audit_log (actor, role, action, detail, remote_addr) "
            "VALUES (%s, %s, %s, %s::jsonb, %s)",
            (who.name if who else "anonymous", who.role if who else None, action,
             json.dumps(detail, default=str), addr))
