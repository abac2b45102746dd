"""A PostgreSQL + TimescaleDB server run as a user process in a folder.

Used by ``make stack`` (data under ``var/pg``) and by the test fixtures (a
temporary folder and a free port).  PostgreSQL refuses to run as root, so when
this process is root the server runs as the ``postgres`` system user.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from devtools.stack.errors import StackError

# Modest ingest tuning for a 2-core, 24 GiB machine; see docs/architecture.md.
SERVER_CONF = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = ''
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
max_connections = 100
shared_buffers = '{shared_buffers}'
work_mem = '32MB'
maintenance_work_mem = '256MB'
effective_cache_size = '4GB'
wal_buffers = '16MB'
max_wal_size = '4GB'
checkpoint_timeout = '15min'
synchronous_commit = on
timescaledb.max_background_workers = 4
max_worker_processes = 16
logging_collector = off
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
"""

HBA_CONF = """
# Local development stack: loopback only, trust.  Production databases use
# their own authentication; see docs/configuration.md.
host all all 127.0.0.1/32 trust
"""


def find_bindir() -> Path:
    """Newest PostgreSQL server bin folder that has TimescaleDB installed."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda p: int(Path(p).parent.parent.name),
        reverse=True,
    )
    if not candidates:
        raise StackError(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; "
            "run `make deps` (Debian package postgresql)."
        )
    for postgres in candidates:
        bindir = Path(postgres).parent
        libdir = subprocess.run(
            [str(bindir / "pg_config"), "--pkglibdir"], capture_output=True, text=True
        ).stdout.strip() if (bindir / "pg_config").exists() else ""
        if not libdir:
            libdir = str(bindir.parent / "lib")
        if Path(libdir, "timescaledb.so").exists():
            return bindir
    raise StackError(
        "TimescaleDB is not installed for any PostgreSQL server here "
        f"(looked for timescaledb.so beside {', '.join(candidates)}); run `make deps`."
    )


@dataclass
class LocalPostgres:
    root: Path  # holds data/ and postgres.log
    port: int
    user: str = "citydash"  # superuser created by initdb
    shared_buffers: str = "1GB"

    def __post_init__(self):
        self.root = Path(self.root).resolve()
        self.datadir = self.root / "data"
        self.bindir = find_bindir()
        self._runas = None
        if os.geteuid() == 0:
            try:
                self._runas = pwd.getpwnam("postgres")
            except KeyError:
                raise StackError("running as root needs the 'postgres' system user "
                                 "(Debian package postgresql-common)") from None

    # -- helpers --------------------------------------------------------
    @property
    def logfile(self) -> Path:
        return self.root / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/citydash"

    def _cmd(self, *args: str) -> list[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._runas is not None:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return cmd

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(self._cmd(*args), capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise StackError(f"{' '.join(args[:2])} failed: {proc.stderr.strip() or proc.stdout.strip()}"
                             f" (log: {self.logfile})")
        return proc

    def _own(self, path: Path) -> None:
        if self._runas is not None:
            os.chown(path, self._runas.pw_uid, self._runas.pw_gid)

    # -- lifecycle ------------------------------------------------------
    def initialised(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._own(self.root)
        self.datadir.mkdir(mode=0o700, exist_ok=True)
        self._own(self.datadir)
        self.logfile.touch()
        self._own(self.logfile)
        if self._runas is not None:
            # the postgres user must be able to reach its folder
            probe = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-w", str(self.datadir)])
            if probe.returncode != 0:
                raise StackError(f"user postgres cannot write {self.datadir}: a parent folder is "
                                 "not searchable by others; run the stack from a folder it can reach")
        self._run("initdb", "-D", str(self.datadir), "-U", self.user, "--auth=trust",
                  "-E", "UTF8", "--locale=C.UTF-8")
        (self.datadir / "postgresql.auto.conf").write_text("")
        with open(self.datadir / "postgresql.conf", "a") as conf:
            conf.write("\ninclude = 'citydash.conf'\n")
        (self.datadir / "pg_hba.conf").write_text(HBA_CONF)
        self._own(self.datadir / "pg_hba.conf")

    def write_conf(self) -> None:
        path = self.datadir / "citydash.conf"
        path.write_text(SERVER_CONF.format(port=self.port, shared_buffers=self.shared_buffers))
        self._own(path)

    def running(self) -> bool:
        return self._run("pg_ctl", "status", "-D", str(self.datadir), check=False).returncode == 0

    def start(self, timeout: int = 60) -> None:
        """Initialise when new, then start (a no-op when already running)."""
        if not self.initialised():
            self.init()
        self.write_conf()
        if self.running():
            return
        self._run("pg_ctl", "start", "-D", str(self.datadir), "-l", str(self.logfile),
                  "-w", "-t", str(timeout))
        self._ensure_database()

    def _ensure_database(self) -> None:
        probe = self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
                          "-d", "postgres", "-tAc",
                          "SELECT 1 FROM pg_database WHERE datname = 'citydash'")
        if probe.stdout.strip() != "1":
            self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "citydash")

    def stop(self, mode: str = "fast") -> None:
        if self.initialised() and self.running():
            self._run("pg_ctl", "stop", "-D", str(self.datadir), "-m", mode, "-w", "-t", "60")

    def kill(self) -> None:
        """Stop abruptly (immediate mode): a crash, for failure tests."""
        self.stop(mode="immediate")

    def remove(self) -> None:
        self.stop(mode="immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def wait_for_port(host: str, port: int, timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise StackError(f"nothing is listening on {host}:{port} after {timeout:.0f} s")
