"""A service run as a user process from its own folder: config file, pid file, log, port."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from devtools.stack.errors import StackError
from devtools.stack.postgres import wait_for_port


def find_binary(name: str, *fallbacks: str, package: str) -> str:
    for candidate in (shutil.which(name), *fallbacks):
        if candidate and os.path.exists(candidate):
            return candidate
    raise StackError(f"{name} not found; run `make deps` (Debian package {package})")


@dataclass
class Daemon:
    """Start (it daemonises itself and writes ``pid_name``), stop, remove; subclasses give the config."""

    root: Path
    port: int
    name = "daemon"
    pid_name = "daemon.pid"
    log_name = "daemon.log"

    def __post_init__(self):
        self.root = Path(self.root).resolve()
        self.binary = self.find()

    def find(self) -> str:
        raise NotImplementedError

    def config(self) -> str:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    @property
    def conf(self) -> Path:
        return self.root / f"{self.name}.conf"

    @property
    def logfile(self) -> Path:
        return self.root / self.log_name

    def pid(self) -> int | None:
        try:
            pid = int((self.root / self.pid_name).read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, timeout: float = 20) -> None:
        if self.running():
            return
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self.config())
        proc = subprocess.run(self.command(), capture_output=True, text=True)
        if proc.returncode != 0:
            raise StackError(f"{self.name} failed to start: {proc.stderr.strip()} (log: {self.logfile})")
        try:
            wait_for_port("127.0.0.1", self.port, timeout)
        except StackError as exc:
            tail = self.logfile.read_text()[-2000:] if self.logfile.exists() else ""
            raise StackError(f"{self.name} did not listen on port {self.port}: {exc}\n{tail}") from None
        # someone answers on the port: make sure it is this daemon (another process given the
        # same free port would answer too while ours exits with "address in use")
        time.sleep(0.2)
        if not self.running():
            tail = self.logfile.read_text()[-2000:] if self.logfile.exists() else ""
            raise StackError(f"{self.name} exited after start (port {self.port} taken?)\n{tail}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Stop; SIGTERM lets the service save what it persists first."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        raise StackError(f"{self.name} (pid {pid}) did not stop within {timeout:.0f} s")

    def remove(self) -> None:
        try:
            self.stop()
        except StackError:
            pid = self.pid()
            if pid:
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
