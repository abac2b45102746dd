"""Security headers on every response, rate limits, client addresses behind proxies.

* Headers (``after_request``): a Content-Security-Policy that lets Dash and
  plotly work without allowing inline scripts (the inline scripts Dash writes
  are allowed by their sha256 hashes, ``dash.Dash.csp_hashes``), ``nosniff``,
  a referrer policy, a permissions policy, and framing: the public view may be
  embedded by ``CITYDASH_PUBLIC_FRAME_ANCESTORS``; every other route refuses
  (``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``).
* Rate limits (flask-limiter, fixed windows per client address; Redis storage
  when ``CITYDASH_CACHE_REDIS_URL`` is set so gunicorn workers share counters,
  else :class:`WindowCounters` in the process): ``CITYDASH_PUBLIC_RATE_LIMIT``
  over all of ``/public/``, ``CITYDASH_LOGIN_RATE_LIMIT`` on sign-in attempts
  (its 429 page is the sign-in page's, ``dashboard.auth.web``).
* ``CITYDASH_PROXY_COUNT`` trusted proxies: client address and scheme from
  ``X-Forwarded-For`` / ``-Proto`` (werkzeug ProxyFix).
"""
from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import dash
import flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits.storage import Storage
from werkzeug.middleware.proxy_fix import ProxyFix

from dashboard import i18n, state

PUBLIC_PREFIX = "/public"
MEMORY_STORAGE_URI = "citydash-memory://"


def is_public_path(path: str) -> bool:
    return path == PUBLIC_PREFIX or path.startswith(PUBLIC_PREFIX + "/")


class WindowCounters(Storage):
    """Fixed-window counters in this process, with no timer thread (``citydash-memory://``).

    A storage of limits' documented extension point (a :class:`limits.storage.Storage`
    subclass; its ``STORAGE_SCHEME`` registers the URI scheme), for flask-limiter's
    ``fixed-window`` strategy.  limits' own ``MemoryStorage`` (5.8) starts a new
    ``threading.Timer`` 10 ms after any hit, whatever the strategy: under steady
    traffic a thread every 10 ms per worker (about 8 % of a public worker's time in
    ``bench/public_load.py``).  Here an expired counter reads as 0 at once, and the
    expired keys are dropped inline, at most once every ``SWEEP_S`` seconds, so the
    table stays as small as the number of clients of the current window.
    """

    STORAGE_SCHEME = ["citydash-memory"]
    SWEEP_S = 1.0

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options):
        self._lock = threading.Lock()
        self._counters: dict[str, tuple[int, float]] = {}  # key -> (count, expires at: epoch s)
        self._next_sweep = 0.0
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def base_exceptions(self):
        return ValueError

    def _live(self, key: str, now: float) -> tuple[int, float] | None:
        entry = self._counters.get(key)
        return entry if entry and entry[1] > now else None

    def _sweep(self, now: float) -> None:
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_S
            for key in [k for k, (_, expires) in self._counters.items() if expires <= now]:
                del self._counters[key]

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = time.time()
        with self._lock:
            self._sweep(now)
            count, expires = self._live(key, now) or (0, now + expiry)
            self._counters[key] = (count + amount, expires)
            return count + amount

    def get(self, key: str) -> int:
        with self._lock:
            entry = self._live(key, time.time())
        return entry[0] if entry else 0

    def get_expiry(self, key: str) -> float:
        now = time.time()
        with self._lock:
            entry = self._live(key, now)
        return entry[1] if entry else now

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        with self._lock:
            count = len(self._counters)
            self._counters.clear()
        return count

    def clear(self, key: str) -> None:
        with self._lock:
            self._counters.pop(key, None)

    def size(self) -> int:
        """Counters held (expired ones not swept yet included); not ``__len__``: flask-limiter
        tests a storage for truth, and an empty one must not read as missing."""
        return len(self._counters)


limiter = Limiter(
    key_func=get_remote_address,
    application_limits=[lambda: state.settings().public_rate_limit],
    application_limits_exempt_when=lambda: not is_public_path(flask.request.path),
    headers_enabled=True,
)


def init_app(server: flask.Flask, settings, apps: list[dash.Dash]) -> None:
    """Rate limits and headers for ``server``; ``apps`` are the Dash apps it serves."""
    if settings.proxy_count > 0:
        server.wsgi_app = ProxyFix(server.wsgi_app, x_for=settings.proxy_count,
                                   x_proto=settings.proxy_count, x_host=settings.proxy_count)
    server.config["RATELIMIT_STORAGE_URI"] = settings.cache_redis_url or MEMORY_STORAGE_URI
    server.config["RATELIMIT_STRATEGY"] = "fixed-window"  # the one WindowCounters implements
    server.config["RATELIMIT_KEY_PREFIX"] = "citydash-limits"
    limiter.init_app(server)
    policy = HeaderPolicy(settings, apps)
    server.after_request(policy.apply)
    server.register_error_handler(429, _too_many)


def _too_many(error):
    """429 as a translated line of text (the sign-in page has its own, dashboard.auth.web)."""
    locale = i18n.negotiate(flask.request.args.get("lang"), city_locale=state.city_locale())
    response = flask.make_response(i18n.t("public.error.rate_limited", locale), 429)
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


def check_auth_mode(settings) -> None:
    """Raises SystemExit when sign-in is off (``auth_mode=none``: everyone is an admin) outside
    development: a production dashboard always asks who is there."""
    if settings.auth_mode == "none" and settings.environment != "development":
        raise SystemExit("refusing CITYDASH_AUTH_MODE=none: without sign-in everyone is an admin; "
                         "it runs only with CITYDASH_ENVIRONMENT=development (docs/auth.md)")
