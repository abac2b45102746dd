"""Classify database errors: retry the batch, or isolate what the database refuses.

The list is Telegraf's PostgreSQL output plugin's (``isTempError`` in
influxdata/telegraf, ``plugins/outputs/postgresql/postgresql.go``), which
retries a write only for these SQLSTATEs (PostgreSQL manual, appendix A):

* ``23505`` unique_violation on ``pg_type_typname_nsp_index`` (two sessions
  creating the same table at once: the retried transaction sees it exists);
* class ``25`` invalid transaction state ("a bug, but recoverable");
* ``40P01`` deadlock_detected;
* ``42701`` duplicate_column and ``42P07`` duplicate_table (schema races);
* class ``53`` insufficient resources (disk full, out of memory, too many
  connections);
* class ``57`` operator intervention, except ``57014`` query_canceled (a
  statement timeout or a cancel: the same statement would be cancelled again)
  and ``57P04`` database_dropped;

and treats every other error PostgreSQL reports as permanent: "this may mean
that we incorrectly discard data that could have been retried, but the
alternative is that we get stuck retrying data that will never succeed".
(Serialization failures ``40001``, lock timeouts ``55P03``, I/O errors class
``58`` and internal errors ``XX`` are therefore permanent, unlike before.)

An error without a SQLSTATE is Telegraf's "not a PgError" case: psycopg
raises ``OperationalError`` / ``InterfaceError`` without one when the
connection could not be made or broke (Go's net errors, ``Temporary()``);
those, the class ``08`` connection exceptions the server itself may report,
and the shutdown codes ``57P01``-``57P03`` mean the database is
**unavailable**: nothing can be written, not even a dead letter, so
:mod:`ingest.pipeline` retries them without bound (the broker holds the
rest). Other transient errors are retried a bounded number of times
(``CITYDASH_DB_RETRY_MAX``); permanent ones are isolated at once.
"""
from __future__ import annotations

import psycopg

TRANSIENT = "transient"  # the database answered; the same transaction may succeed later
UNAVAILABLE = "unavailable"  # no usable connection: nothing can be written until it is back
PERMANENT = "permanent"  # the same write fails again: isolate the offending messages

TRANSIENT_CLASSES = {
    "25",  # invalid transaction state
    "53",  # insufficient resources
    "57",  # operator intervention (but see PERMANENT_CODES)
}
TRANSIENT_CODES = {
    "40P01",  # deadlock_detected
    "42701",  # duplicate_column
    "42P07",  # duplicate_table
}
PERMANENT_CODES = {
    "57014",  # query_canceled: statement_timeout, pg_cancel_backend
    "57P04",  # database_dropped
}
UNAVAILABLE_CLASSES = {"08"}  # connection exception
UNAVAILABLE_CODES = {
    "57P01",  # admin_shutdown
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now (starting up, shutting down, in recovery)
}


def classify(exc: BaseException) -> str:
    """``TRANSIENT``, ``UNAVAILABLE`` or ``PERMANENT`` for an error raised by a batch write."""
    if not isinstance(exc, psycopg.Error):
        return PERMANENT  # a bug of ours or a value psycopg cannot adapt: fails again
    sqlstate = getattr(exc, "sqlstate", None)
    if not sqlstate:
        # No SQLSTATE: the connection could not be made or broke.
        if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
            return UNAVAILABLE
        return PERMANENT
    if sqlstate in UNAVAILABLE_CODES or sqlstate[:2] in UNAVAILABLE_CLASSES:
        return UNAVAILABLE
    if sqlstate in PERMANENT_CODES:
        return PERMANENT
    if sqlstate in TRANSIENT_CODES or sqlstate[:2] in TRANSIENT_CLASSES:
        return TRANSIENT
    if sqlstate == "23505" and "pg_type_typname_nsp_index" in str(exc):
        return TRANSIENT
    return PERMANENT


def is_transient(exc: BaseException) -> bool:
    """True when retrying the same write may succeed (``TRANSIENT`` or ``UNAVAILABLE``)."""
    return classify(exc) != PERMANENT


def describe(exc: BaseException) -> str:
    """One line a person can act on: SQLSTATE, condition name and the server's message."""
    sqlstate = getattr(exc, "sqlstate", None) or ""
    name = ""
    if sqlstate:
        try:
            name = psycopg.errors.lookup(sqlstate).__name__
        except KeyError:
            pass
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    head = " ".join(p for p in (sqlstate, name) if p)
    return f"{head}: {first}" if head else f"{type(exc).__name__}: {first}"
