"""A Redis server run as a user process in a folder: the optional shared cache.

With ``CITYDASH_CACHE_REDIS_URL`` the dashboard's gunicorn workers share the
server-side cache, the rate-limit counters and the public view's refresh lock
(docs/public-embed.md).  Nothing in it needs to survive a restart: no
snapshots, no append-only file, loopback only.
"""
from __future__ import annotations

from devtools.stack.daemon import Daemon, find_binary

CONF = """# Written by citydash (devtools/stack/redis.py); edits are overwritten.
bind 127.0.0.1
port {port}
protected-mode yes
daemonize yes
pidfile {root}/redis.pid
logfile {root}/redis.log
dir {root}/data
save ""
appendonly no
maxmemory 256mb
maxmemory-policy allkeys-lru
"""


class LocalRedis(Daemon):
    name = "redis"
    pid_name = "redis.pid"
    log_name = "redis.log"

    def find(self) -> str:
        return find_binary("redis-server", "/usr/bin/redis-server", package="redis-server")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def config(self) -> str:
        return CONF.format(root=self.root, port=self.port)

    def command(self) -> list[str]:
        return [self.binary, str(self.conf)]
