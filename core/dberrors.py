"""Classify database errors as transient (retry the batch) or permanent.

Following Telegraf's PostgreSQL output: errors of connection, resources,
operator intervention and concurrency classes are worth retrying unchanged;
data, integrity and syntax errors will fail again and must be isolated.
"""
from __future__ import annotations

import psycopg

# SQLSTATE classes (first two characters) whose errors go away by themselves.
TRANSIENT_CLASSES = {
    "08",  # connection exception
    "40",  # transaction rollback (serialization failure, deadlock)
    "53",  # insufficient resources (disk full, out of memory, too many connections)
    "55",  # object not in prerequisite state (lock not available)
    "57",  # operator intervention (admin shutdown, cannot connect now)
    "58",  # system error (I/O)
    "XX",  # internal error
}


def is_transient(exc: BaseException) -> bool:
    if not isinstance(exc, psycopg.Error):
        return False
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate is None:
        # No SQLSTATE: the connection broke or could not be made.
        return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))
    return sqlstate[:2] in TRANSIENT_CLASSES
