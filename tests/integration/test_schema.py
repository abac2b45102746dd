"""Schema, migrations and least-privilege roles against a real TimescaleDB."""
from __future__ import annotations

import psycopg
import pytest

from ingest.migrate import current_version, discover, migrate
from core.settings import Settings


def test_migrations_are_idempotent(db_url):
    with psycopg.connect(db_url) as conn:
        before = conn.execute("SELECT version, checksum, applied_at FROM schema_migrations "
                              "ORDER BY version").fetchall()
    assert migrate(db_url) == []  # the template was migrated already: nothing to do
    assert migrate(db_url) == []
    with psycopg.connect(db_url) as conn:
        after = conn.execute("SELECT version, checksum, applied_at FROM schema_migrations "
                             "ORDER BY version").fetchall()
        assert current_version(conn) == discover()[-1].version
    assert before == after
    assert [v for v, *_ in after] == [m.version for m in discover()]


def test_migrate_from_empty_database(pg_server):
    url = pg_server.url.rsplit("/", 1)[0] + "/fresh_migrate"
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS fresh_migrate")
        conn.execute("CREATE DATABASE fresh_migrate")
    try:
        applied = migrate(url)
        assert applied == [m.version for m in discover()]
        assert migrate(url) == []
    finally:
        with psycopg.connect(pg_server.url, autocommit=True) as conn:
            conn.execute("DROP DATABASE fresh_migrate WITH (FORCE)")


def test_hypertables_and_unique_keys(db_url):
    with psycopg.connect(db_url) as conn:
        hypertables = {r[0] for r in conn.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables")}
        assert {"readings", "vehicle_positions"} <= hypertables
        conn.execute("INSERT INTO sensors (external_id, kind, domain) VALUES ('s1', 'noise', 'infrastructure')")
        conn.execute("INSERT INTO metrics (name) VALUES ('laeq')")
        row = "INSERT INTO readings (time, sensor_id, metric_id, value) VALUES ('2026-01-01T00:00Z', 1, 1, %s)"
        conn.execute(row, (1.0,))
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(row, (2.0,))
    with psycopg.connect(db_url) as conn:
        vp = ("INSERT INTO vehicle_positions (time, vehicle, lon, lat) "
              "VALUES ('2026-01-01T00:00Z', 'bus-1', -56.1, -15.6)")
        conn.execute(vp)
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(vp)


def test_readings_named_view(db_url):
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO sensors (external_id) VALUES ('tc-9')")
        conn.execute("INSERT INTO metrics (name) VALUES ('flow')")
        conn.execute("INSERT INTO readings VALUES ('2026-01-01T00:00Z', 1, 1, 42.5, 0)")
        rows = conn.execute("SELECT sensor_id, metric, value FROM readings_named").fetchall()
    assert rows == [("tc-9", "flow", 42.5)]


def test_apache_licence_features_recorded(db_url):
    with psycopg.connect(db_url) as conn:
        licence = conn.execute("SHOW timescaledb.license").fetchone()[0]
        features = dict(conn.execute("SELECT name, available FROM timescale_features"))
    assert set(features) == {"continuous_aggregates", "compression", "retention_policies"}
    assert all(v == (licence == "timescale") for v in features.values())


def _role(db_url: str, role: str) -> str:
    return Settings(_env_file=None, database_url=db_url).role_url(role)


def test_ingest_role_cannot_drop_or_alter(db_url):
    with psycopg.connect(_role(db_url, "ingest"), autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == "citydash_ingest"
        conn.execute("INSERT INTO metrics (name) VALUES ('ok_metric')")
        for sql in ("DROP TABLE readings", "TRUNCATE readings", "DELETE FROM readings",
                    "ALTER TABLE sensors ADD COLUMN x int", "CREATE TABLE evil (x int)",
                    "DROP VIEW readings_named", "DELETE FROM dead_letters", "DELETE FROM audit_log"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
        # retention goes through the definer functions, which keep at least a day
        for fn in ("purge_dead_letters", "purge_audit_log"):
            with pytest.raises(psycopg.errors.InvalidParameterValue):
                conn.execute(f"SELECT {fn}(0)")


def test_reader_cannot_write(db_url):
    with psycopg.connect(_role(db_url, "reader"), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 0
        for sql in ("INSERT INTO metrics (name) VALUES ('x')",
                    "UPDATE sensors SET name = 'x'", "DELETE FROM dead_letters",
                    "INSERT INTO readings VALUES (now(), 1, 1, 1, 0)", "CREATE TABLE evil (x int)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)


def test_public_role_cannot_read_raw_data(db_url):
    with psycopg.connect(_role(db_url, "public"), autocommit=True) as conn:
        for table in ("readings", "sensors", "vehicle_positions", "dead_letters", "alerts",
                      "readings_named"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT * FROM public.{table} LIMIT 1")
