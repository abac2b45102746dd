"""Process-wide state of the dashboard: settings, city, pools, short-lived caches.

``settings()`` is the one accessor of the dashboard's settings (the ones
``create_app`` configured, else the environment's); ``city_locale()`` the
served city's locale for :func:`dashboard.i18n.negotiate`.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache

from dashboard.city import city as load_city
from core.db import pool
from kpis.catalogue import Catalogue, load_catalogue
from dashboard.queries.status import DatabaseStatus, broker_status, database_status
from core.settings import Settings, get_settings

BROKER_PROBE_TTL_S = 10.0


@lru_cache(maxsize=4)
def catalogue_of(pack: str) -> Catalogue:
    """The KPI catalogue of a city pack, read once per process (pages, read API, public view)."""
    return load_catalogue(pack)


@dataclass
class Runtime:
    settings: Settings
    _broker: tuple[float, tuple[bool, str | None]] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def city(self):
        return load_city(self.settings.city_pack)

    @property
    def catalogue(self) -> Catalogue:
        return catalogue_of(self.settings.city_pack)

    def database_status(self) -> DatabaseStatus:
        try:
            with pool(self.settings).connection() as conn:
                return database_status(conn)
        except Exception as exc:  # shown on the page, never a traceback
            return DatabaseStatus(False, error=str(exc).splitlines()[0] if str(exc) else
                                  type(exc).__name__)

    def broker_status(self) -> tuple[bool, str | None]:
        with self._lock:
            if self._broker and time.monotonic() - self._broker[0] < BROKER_PROBE_TTL_S:
                return self._broker[1]
        result = broker_status(self.settings.mqtt_url)
        with self._lock:
            self._broker = (time.monotonic(), result)
        return result


_runtime: Runtime | None = None


def configure(settings: Settings | None = None) -> Runtime:
    global _runtime
    _runtime = Runtime(settings or get_settings())
    return _runtime


def runtime() -> Runtime:
    return _runtime or configure()


def settings() -> Settings:
    """The settings of the running dashboard (``create_app``'s, else the environment's)."""
    return runtime().settings


def city_locale() -> str | None:
    """The served city's locale; None when the city pack cannot be read (pages still render)."""
    try:
        return runtime().city.locale
    except Exception:  # a broken pack must not break the sign-in page or an error message
        logging.getLogger(__name__).debug("no city locale", exc_info=True)
        return None
