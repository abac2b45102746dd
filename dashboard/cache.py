"""The dashboard's server-side cache: one computed result per key and time bucket.

``bucketed(key, ttl_s, compute)`` is what pages and the public view call: every
screen that asks for the same view within the same ``ttl_s`` bucket gets the
same result, and within one process the result is computed once even when many
requests arrive together (single flight), so 50 wall screens cost the database
what one does.  The backend is flask-caching's ``RedisCache`` when
``CITYDASH_CACHE_REDIS_URL`` is set (gunicorn workers then share results; each
worker computes at most once per bucket when the key is missing), else its
in-process ``SimpleCache``.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, TypeVar

from flask_caching.backends import RedisCache, SimpleCache

from core.settings import Settings

T = TypeVar("T")

_backend = SimpleCache(threshold=2000)
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()
_stats = {"hits": 0, "misses": 0}


def configure(settings: Settings) -> None:
    """Choose the backend from the settings (called by ``create_app``)."""
    global _backend
    if settings.cache_redis_url:
        _backend = RedisCache.factory(None, {"CACHE_REDIS_URL": settings.cache_redis_url,
                                             "CACHE_KEY_PREFIX": "citydash:"}, (), {})
    else:
        _backend = SimpleCache(threshold=2000)


def backend():
    return _backend


def bucket(ttl_s: float, now: float | None = None) -> int:
    """The number of the ``ttl_s``-long time bucket that ``now`` falls into."""
    return int((time.time() if now is None else now) // ttl_s)


def bucketed(key: str, ttl_s: float, compute: Callable[[], T]) -> T:
    """``compute()`` cached under ``key`` for the current time bucket of ``ttl_s`` seconds."""
    full = f"{key}@{bucket(ttl_s)}"
    found = _backend.get(full)
    if found is not None:
        _stats["hits"] += 1
        return found[0]
    with _lock_for(full):
        found = _backend.get(full)
        if found is not None:
            _stats["hits"] += 1
            return found[0]
        _stats["misses"] += 1
        value = compute()
        # Kept for two buckets so a slow reader at the edge still finds it.
        _backend.set(full, (value,), timeout=max(1, int(ttl_s * 2)))
    _forget_lock(full)
    return value


def stats() -> dict[str, int]:
    """Hits and misses of this process (for benchmarks and tests)."""
    return dict(_stats)


def clear() -> None:
    _backend.clear()


def _lock_for(key: str) -> threading.Lock:
    with _locks_guard:
        lock = _locks.get(key)
        if lock is None:
            lock = _locks[key] = threading.Lock()
        return lock


def _forget_lock(key: str) -> None:
    with _locks_guard:
        lock = _locks.get(key)
        if lock is not None and not lock.locked():
            del _locks[key]
