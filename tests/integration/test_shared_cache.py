"""With ``CITYDASH_CACHE_REDIS_URL``, gunicorn workers share the cache, the public snapshot and the
rate-limit counters: two separate processes against a real Redis server."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import redis

from tests.integration.test_public_views import seed_public

ROOT = Path(__file__).resolve().parents[2]


def _worker(settings, redis_url: str, name: str, requests: int) -> dict:
    env = dict(os.environ, CITYDASH_DATABASE_URL=settings.database_url, CITYDASH_CACHE_REDIS_URL=redis_url,
               CITYDASH_LAYERS_DIR=settings.layers_dir, CITYDASH_AUTH_MODE="none", CITYDASH_LOG_FORMAT="text",
               CITYDASH_PUBLIC_RATE_LIMIT="5 per minute", CITYDASH_PUBLIC_REFRESH_S="600")
    proc = subprocess.run([sys.executable, "-m", "tests.integration.shared_cache_worker", name, str(requests)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_two_workers_share_cache_snapshot_and_limits(settings, db_url, redis_server):
    redis.Redis.from_url(redis_server.url).flushdb()
    seed_public(db_url)
    first = _worker(settings, redis_server.url, "a", 3)
    second = _worker(settings, redis_server.url, "b", 3)
    # the cache: the second process takes the first one's result instead of computing
    assert first["computed"] and not second["computed"]
    assert second["value"] == {"worker": "a"}
    # the public snapshot: read from the database once, by the first process
    assert first["refreshes"] == 1 and second["refreshes"] == 0
    assert second["snapshot_at"] == first["snapshot_at"]
    # the rate limit (5 per minute per client): counted across both processes
    assert first["codes"] == [200, 200, 200]
    assert second["codes"] == [200, 200, 429]
    keys = [k.decode() for k in redis.Redis.from_url(redis_server.url).keys("*")]
    assert any(k.startswith("citydash:public:snapshot:") for k in keys), keys
    assert any("citydash-limits" in k for k in keys), keys

