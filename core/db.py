"""Database access for the dashboard: a pool of read-only connections."""
from __future__ import annotations

import threading

from psycopg_pool import ConnectionPool

from core.settings import Settings

_pools: dict[str, ConnectionPool] = {}
_lock = threading.Lock()


def pool(settings: Settings, role: str = "reader") -> ConnectionPool:
    """The process-wide pool for ``role`` (``reader`` or ``public``)."""
    url = settings.role_url(role)
    with _lock:
        found = _pools.get(url)
        if found is None:
            found = ConnectionPool(url, min_size=0, max_size=settings.db_pool_size, open=True,
                                   kwargs={"autocommit": True, "connect_timeout": 3,
                                           "application_name": f"citydash-dashboard-{role}"},
                                   timeout=5, name=f"citydash-{role}")
            _pools[url] = found
        return found


def close_all() -> None:
    with _lock:
        for p in _pools.values():
            p.close()
        _pools.clear()
