"""Ordered SQL schema migrations (``ingest/migrations/NNNN_name.sql``).

``python -m ingest migrate`` applies, as the database owner, every file not yet
recorded in ``schema_migrations``, each in its own transaction, under an
advisory lock so two processes never migrate at once.  Re-running is a no-op.
A file that changed after it was applied is reported, never re-run.

After migrating, the TimescaleDB licence is read (``timescaledb.license``) and
the optional features it allows are recorded in ``timescale_features``: the
Apache edition offers none of continuous aggregates, compression or retention
policies, and citydash works fully without them.
"""
from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
LOCK_ID = 0x63697479  # 'city'
FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
FEATURES = ("continuous_aggregates", "compression", "retention_policies")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(folder: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = FILE_RE.match(path.name)
        if not match:
            raise ValueError(f"{path.name}: migration files are named NNNN_lower_case.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError("two migration files share a version number")
    return found


def migrate(url: str, folder: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply pending migrations; return the versions applied now."""
    applied_now = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_ID,))
        try:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version    integer PRIMARY KEY,
                       name       text NOT NULL,
                       checksum   text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
            for migration in discover(folder):
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        log.warning("migration %04d_%s changed after it was applied; "
                                    "write a new migration instead", migration.version,
                                    migration.name)
                    continue
                with conn.transaction():
                    conn.execute(migration.sql)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                log.info("applied migration %04d_%s", migration.version, migration.name)
                applied_now.append(migration.version)
            record_features(conn)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))
    return applied_now


def licence(conn: psycopg.Connection) -> str:
    return conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()[0] or ""


def record_features(conn: psycopg.Connection) -> dict[str, bool]:
    available = licence(conn) == "timescale"
    features = {name: available for name in FEATURES}
    for name, ok in features.items():
        conn.execute(
            """INSERT INTO timescale_features (name, available, checked_at) VALUES (%s, %s, now())
               ON CONFLICT (name) DO UPDATE SET available = EXCLUDED.available,
                                                checked_at = EXCLUDED.checked_at""",
            (name, ok),
        )
    return features


def current_version(conn: psycopg.Connection) -> int | None:
    row = conn.execute(
        "SELECT max(version) FROM schema_migrations"
    ).fetchone() if _has_table(conn, "schema_migrations") else None
    return row[0] if row else None


def _has_table(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]
