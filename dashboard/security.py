"""Security headers on every response, rate limits, client addresses behind proxies.

* Headers (``after_request``): a Content-Security-Policy that lets Dash and
  plotly work without allowing inline scripts (the inline scripts Dash writes
  are allowed by their sha256 hashes, ``dash.Dash.csp_hashes``), ``nosniff``,
  a referrer policy, a permissions policy, and framing: the public view may be
  embedded by ``CITYDASH_PUBLIC_FRAME_ANCESTORS``; every other route refuses
  (``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``).
* Rate limits (flask-limiter, per client address; Redis storage when
  ``CITYDASH_CACHE_REDIS_URL`` is set so gunicorn workers share counters):
  ``CITYDASH_PUBLIC_RATE_LIMIT`` over all of ``/public/``,
  ``CITYDASH_LOGIN_RATE_LIMIT`` on sign-in attempts.
* ``CITYDASH_PROXY_COUNT`` trusted proxies: client address and scheme from
  ``X-Forwarded-For`` / ``-Proto`` (werkzeug ProxyFix).
"""
from __future__ import annotations

import threading
from urllib.parse import urlsplit

import dash
import flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits.storage import MemoryStorage
from werkzeug.middleware.proxy_fix import ProxyFix

from dashboard import i18n

PUBLIC_PREFIX = "/public"


def _settings():
    from dashboard.state import runtime

    return runtime().settings


def is_public_path(path: str) -> bool:
    return path == PUBLIC_PREFIX or path.startswith(PUBLIC_PREFIX + "/")


class MemoryCounters(MemoryStorage):
    """limits' in-process counters, swept for expired keys once a second.

    ``MemoryStorage`` (limits 5.8) sweeps 10 ms after a hit with a new
    ``threading.Timer``: under steady traffic, a thread started every 10 ms per
    worker (about 8 % of a public worker's time in ``bench/public_load.py``).
    Counting is unchanged: an expired counter reads as 0 before it is swept.
    """

    STORAGE_SCHEME = ["citydash-memory"]
    SWEEP_S = 1.0

    def _MemoryStorage__schedule_expiry(self) -> None:  # the base class's private hook
        if not self.timer.is_alive():
            self.timer = threading.Timer(self.SWEEP_S, self._MemoryStorage__expire_events)
            self.timer.daemon = True
            self.timer.start()


limiter = Limiter(
    key_func=get_remote_address,
    application_limits=[lambda: _settings().public_rate_limit],
    application_limits_exempt_when=lambda: not is_public_path(flask.request.path),
    headers_enabled=True,
)


def init_app(server: flask.Flask, settings, apps: list[dash.Dash]) -> None:
    """Rate limits and headers for ``server``; ``apps`` are the Dash apps it serves."""
    if settings.proxy_count > 0:
        server.wsgi_app = ProxyFix(server.wsgi_app, x_for=settings.proxy_count,
                                   x_proto=settings.proxy_count, x_host=settings.proxy_count)
    server.config["RATELIMIT_STORAGE_URI"] = settings.cache_redis_url or "citydash-memory://"
    server.config["RATELIMIT_KEY_PREFIX"] = "citydash-limits"
    limiter.init_app(server)
    policy = HeaderPolicy(settings, apps)
    server.after_request(policy.apply)
    server.register_error_handler(429, _too_many)


def _too_many(error):
    from dashboard.auth.web import _locale, login_page, safe_next

    locale = _locale()
    message = i18n.t("public.error.rate_limited", locale)
    if flask.request.path == "/login":
        return login_page(locale, safe_next(flask.request.values.get("next")),
                          i18n.t("auth.error.rate_limited", locale), 429)
    response = flask.make_response(message, 429)
    response.headers["Content-Type"] = "text/plain; charset=utf-8"
    response.headers["Retry-After"] = "60"
    return response


def _origin(url: str) -> str | None:
    parts = urlsplit(url.replace("{", "").replace("}", ""))
    if parts.scheme in ("http", "https") and parts.hostname:
        return f"{parts.scheme}://{parts.netloc}"
    return None


class HeaderPolicy:
    def __init__(self, settings, apps: list[dash.Dash]):
        self.apps = apps
        self.frame_ancestors = settings.public_frame_ancestors.strip() or "'none'"
        self.extra_origins = [o for o in [_origin(settings.map_tile_url)] if o]
        self._hashes: list[str] | None = None
        self._csp: dict[bool, str] = {}

    def script_hashes(self) -> list[str]:
        # Computed once, after every page and clientside callback is registered.
        if self._hashes is None:
            found: list[str] = []
            for app in self.apps:
                for h in app.csp_hashes():
                    if h not in found:
                        found.append(h)
            self._hashes = found
        return self._hashes

    def csp(self, public: bool) -> str:
        if public not in self._csp:
            self._csp[public] = self._policy(public)
        return self._csp[public]

    def _policy(self, public: bool) -> str:
        extra = " ".join(self.extra_origins)
        directives = {
            "default-src": "'self'",
            "script-src": " ".join(["'self'", *self.script_hashes()]),
            "style-src": "'self' 'unsafe-inline'",  # plotly and React set inline styles
            "img-src": f"'self' data: blob: {extra}".strip(),
            "font-src": "'self' data:",
            "connect-src": f"'self' {extra}".strip(),
            "worker-src": "'self' blob:",  # MapLibre's workers
            "child-src": "'self' blob:",
            "object-src": "'none'",
            "base-uri": "'self'",
            "form-action": "'self'",
            "frame-ancestors": self.frame_ancestors if public else "'none'",
        }
        return "; ".join(f"{k} {v}" for k, v in directives.items())

    def apply(self, response: flask.Response) -> flask.Response:
        public = is_public_path(flask.request.path)
        h = response.headers
        h["Content-Security-Policy"] = self.csp(public)
        h["X-Content-Type-Options"] = "nosniff"
        h["Referrer-Policy"] = "no-referrer" if public else "strict-origin-when-cross-origin"
        h["Permissions-Policy"] = "geolocation=(), camera=(), microphone=(), payment=()"
        h["Cross-Origin-Resource-Policy"] = "same-origin"
        if not public:
            h["X-Frame-Options"] = "DENY"
        elif self.frame_ancestors == "'self'":
            h["X-Frame-Options"] = "SAMEORIGIN"
        if flask.request.is_secure:
            h["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        return response


LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def debug_allowed(settings) -> bool:
    """Debug mode only in development and on a loopback address (never reachable from outside)."""
    return bool(settings.debug and settings.environment == "development" and settings.host in LOOPBACK)


def check_debug(settings) -> bool:
    """The debug flag to run with; raises SystemExit when debug is asked for where it is refused."""
    if settings.debug and not debug_allowed(settings):
        raise SystemExit("refusing CITYDASH_DEBUG: debug mode runs only with "
                         "CITYDASH_ENVIRONMENT=development on a loopback CITYDASH_HOST")
    return bool(settings.debug)
