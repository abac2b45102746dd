"""Session fixtures: a real TimescaleDB and a real Mosquitto for the whole run (Redis for the tests of the shared cache).

Both run as user processes in temporary folders on free loopback ports (never
the developer's ``var/`` stack).  Each test that asks for ``db_url`` gets its
own database, copied from a migrated template, so tests never see each
other's rows.  A service that cannot start fails the run with a message that
names what is missing; nothing is skipped.

Under pytest-xdist (``make test`` runs ``-n 2 --dist loadfile``) every worker is its own
process with its own session: its own servers, temporary folders (``tmp_path_factory`` is
per worker) and databases (named after the worker's pid); nothing is shared between workers.
A server whose free port was taken meanwhile (by the other worker) is retried on another.
"""
from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest

from core.db import close_all
from core.settings import Settings
from devtools.stack import LocalMosquitto, LocalPostgres, LocalRedis, StackError, free_port

TEMPLATE = "citydash_template"
# Processes the tests start (gunicorn in test_app_server.py) serve without
# sign-in unless a test sets CITYDASH_AUTH_MODE itself; production's default
# is "builtin" (docs/auth.md). Without sign-in the dashboard starts only in development.
os.environ.setdefault("CITYDASH_AUTH_MODE", "none")
os.environ.setdefault("CITYDASH_ENVIRONMENT", "development")
_db_counter = itertools.count(1)


def _tempdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o755)  # the postgres user must reach it when tests run as root
    return path


def _start(make, prefix: str, what: str, package: str, attempts: int = 3):
    """``make(root, port)`` started in a fresh temporary folder on a free port; another port when
    that fails (free_port() is only free when asked), then the run fails saying why."""
    for attempt in range(attempts):
        root = _tempdir(prefix)
        try:
            service = make(root, free_port())
            service.start()
            return service
        except StackError as exc:
            shutil.rmtree(root, ignore_errors=True)
            if attempt == attempts - 1:
                pytest.fail(f"{what} could not start: {exc}. Run `make deps` to install {package}.",
                            pytrace=False)


@pytest.fixture(scope="session")
def pg_server():
    server = _start(lambda root, port: LocalPostgres(root, port, shared_buffers="256MB"),
                    "citydash-test-pg-", "TimescaleDB test server", "PostgreSQL and TimescaleDB")
    try:
        _build_template(server.url)
        yield server
    finally:
        close_all()  # no pool left retrying connections to a server that is going away
        server.remove()


def _build_template(admin_url: str) -> None:
    from ingest.migrate import migrate

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        conn.execute(f"CREATE DATABASE {TEMPLATE}")
    migrate(_with_db(admin_url, TEMPLATE))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {TEMPLATE} WITH ALLOW_CONNECTIONS false IS_TEMPLATE true")
        # TimescaleDB's scheduler holds a connection to every database with the
        # extension; a template must have none to be copied.
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                     (TEMPLATE,))


def _with_db(url: str, dbname: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + dbname


def create_database(pg_server: LocalPostgres) -> str:
    name = f"test_{os.getpid()}_{next(_db_counter)}"
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    return _with_db(pg_server.url, name)


def drop_database(pg_server: LocalPostgres, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def db_url(pg_server):
    """Owner URL of a fresh, migrated database of its own."""
    url = create_database(pg_server)
    yield url
    drop_database(pg_server, url)


def _service(cls, prefix: str, what: str, package: str):
    """Start a ``Daemon`` of ``cls`` in a temporary folder on a free port, or fail the run saying why."""
    return _start(cls, prefix, what, package)


@pytest.fixture(scope="session")
def mqtt_broker():
    broker = _service(LocalMosquitto, "citydash-test-mqtt-", "Mosquitto test broker", "mosquitto")
    yield broker
    broker.remove()


@pytest.fixture(scope="session")
def redis_server():
    """A Redis server (the optional shared cache, ``CITYDASH_CACHE_REDIS_URL``) for tests of it."""
    server = _service(LocalRedis, "citydash-test-redis-", "Redis test server", "redis-server")
    yield server
    server.remove()


@pytest.fixture
def own_broker():
    """A broker of this test's own, for tests that stop and restart it."""
    broker = _service(LocalMosquitto, "citydash-test-mqtt-own-", "Mosquitto", "mosquitto")
    yield broker
    broker.remove()


@pytest.fixture(scope="session")
def web_layers_dir(tmp_path_factory) -> Path:
    """One folder of built web layers for the whole session (built on first use)."""
    return tmp_path_factory.mktemp("web-layers")


@pytest.fixture
def settings(db_url, mqtt_broker, request, web_layers_dir) -> Settings:
    """Settings pointing at this test's database and the session broker.

    The client id is unique per test, so persistent sessions never mix."""
    client_id = "test-" + request.node.name[:40].replace("[", "-").replace("]", "")
    return Settings(_env_file=None, database_url=db_url, mqtt_url=mqtt_broker.url,
                    mqtt_client_id=f"{client_id}-{next(_db_counter)}", metrics_port=0,
                    log_format="text", layers_dir=str(web_layers_dir),
                    # Pages that are not about sign-in run without it; tests of
                    # sign-in turn it on (tests/integration/test_auth*.py).
                    auth_mode="none", environment="development")
