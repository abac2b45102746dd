"""The local stack: TimescaleDB and Mosquitto (Redis and nginx when asked for) as user processes in a folder.

``make stack`` runs them under ``var/``; the test fixtures run their own in
temporary folders on free loopback ports.
"""
from devtools.stack.errors import StackError
from devtools.stack.mosquitto import LocalMosquitto
from devtools.stack.nginx import LocalNginx
from devtools.stack.postgres import LocalPostgres, wait_for_port
from devtools.stack.redis import LocalRedis

__all__ = ["LocalMosquitto", "LocalNginx", "LocalPostgres", "LocalRedis", "StackError", "wait_for_port", "free_port"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
