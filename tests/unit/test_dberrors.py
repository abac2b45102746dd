"""core.dberrors: Telegraf's PostgreSQL-output list of retryable SQLSTATEs, table-driven."""
from __future__ import annotations

import psycopg
import pytest

from core.dberrors import PERMANENT, TRANSIENT, UNAVAILABLE, classify, describe, is_transient


def error(sqlstate: str, message: str = "boom") -> psycopg.Error:
    return psycopg.errors.lookup(sqlstate)(message)


@pytest.mark.parametrize("sqlstate, expected", [
    # Telegraf's temporary list
    ("25P02", TRANSIENT),    # in_failed_sql_transaction (class 25)
    ("25006", TRANSIENT),    # read_only_sql_transaction (class 25)
    ("40P01", TRANSIENT),    # deadlock_detected
    ("42701", TRANSIENT),    # duplicate_column
    ("42P07", TRANSIENT),    # duplicate_table
    ("53100", TRANSIENT),    # disk_full
    ("53200", TRANSIENT),    # out_of_memory
    ("53300", TRANSIENT),    # too_many_connections
    ("57000", TRANSIENT),    # operator_intervention
    # ... with its two exceptions in class 57
    ("57014", PERMANENT),    # query_canceled (statement_timeout)
    ("57P04", PERMANENT),    # database_dropped
    # the database is not there: retried without bound
    ("57P01", UNAVAILABLE),  # admin_shutdown
    ("57P02", UNAVAILABLE),  # crash_shutdown
    ("57P03", UNAVAILABLE),  # cannot_connect_now
    ("08006", UNAVAILABLE),  # connection_failure
    ("08003", UNAVAILABLE),  # connection_does_not_exist
    # everything else PostgreSQL reports is permanent, "or we get stuck retrying"
    ("40001", PERMANENT),    # serialization_failure (Telegraf retries only deadlocks)
    ("55P03", PERMANENT),    # lock_not_available (lock_timeout)
    ("55000", PERMANENT),    # object_not_in_prerequisite_state
    ("58030", PERMANENT),    # io_error
    ("XX000", PERMANENT),    # internal_error
    ("XX001", PERMANENT),    # data_corrupted
    ("22023", PERMANENT),    # invalid_parameter_value
    ("22P02", PERMANENT),    # invalid_text_representation
    ("23503", PERMANENT),    # foreign_key_violation
    ("23505", PERMANENT),    # unique_violation (an ordinary one)
    ("42501", PERMANENT),    # insufficient_privilege
    ("42P01", PERMANENT),    # undefined_table
    ("P0001", PERMANENT),    # raise_exception (a trigger)
])
def test_sqlstate_table(sqlstate, expected):
    exc = error(sqlstate)
    assert exc.sqlstate == sqlstate
    assert classify(exc) == expected
    assert is_transient(exc) == (expected != PERMANENT)


def test_concurrent_create_table_race_is_transient():
    exc = error("23505", 'duplicate key value violates unique constraint "pg_type_typname_nsp_index"')
    assert classify(exc) == TRANSIENT


@pytest.mark.parametrize("exc, expected", [
    (psycopg.OperationalError("connection failed: Connection refused"), UNAVAILABLE),
    (psycopg.OperationalError("consuming input failed: server closed the connection"), UNAVAILABLE),
    (psycopg.InterfaceError("the connection is closed"), UNAVAILABLE),
    (psycopg.DataError("cannot dump"), PERMANENT),  # no SQLSTATE, raised by the client
    (psycopg.ProgrammingError("bad query"), PERMANENT),
    (KeyError("sensor"), PERMANENT),  # a bug of ours: fails again
    (ValueError("bad value"), PERMANENT),
])
def test_errors_without_sqlstate(exc, expected):
    assert classify(exc) == expected


def test_describe_names_the_condition():
    assert describe(error("57014", "canceling statement due to statement timeout\nCONTEXT: x")) == \
        "57014 QueryCanceled: canceling statement due to statement timeout"
    assert describe(psycopg.OperationalError("connection refused")) == \
        "OperationalError: connection refused"
