"""A Mosquitto broker run as a user process with its own config in a folder.

Configured for lossless QoS 1 with persistent sessions: persistence on,
queued-message limits far above the default 1000 (which silently drops QoS 1
messages for an offline persistent session), MQTT v5 on the listener.
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ingest.stack.errors import StackError
from ingest.stack.postgres import wait_for_port

CONF = """# Written by citydash (ingest/stack/mosquitto.py); edits are overwritten.
user {user}
pid_file {root}/mosquitto.pid
listener {port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {root}/data/
autosave_interval 30
# Lossless QoS 1 for offline persistent sessions: the default (1000) drops.
max_queued_messages 2000000
max_queued_bytes 0
max_inflight_messages 0
persistent_client_expiration 14d
log_dest file {root}/mosquitto.log
log_type error
log_type warning
log_type notice
log_timestamp_format %Y-%m-%dT%H:%M:%S
"""


def mosquitto_binary() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and os.path.exists(candidate):
            return candidate
    raise StackError("mosquitto not found; run `make deps` (Debian package mosquitto)")


@dataclass
class LocalMosquitto:
    root: Path
    port: int

    def __post_init__(self):
        self.root = Path(self.root).resolve()
        self.binary = mosquitto_binary()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def conf(self) -> Path:
        return self.root / "mosquitto.conf"

    @property
    def logfile(self) -> Path:
        return self.root / "mosquitto.log"

    def pid(self) -> int | None:
        try:
            pid = int((self.root / "mosquitto.pid").read_text().strip())
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
        user = pwd.getpwuid(os.geteuid()).pw_name
        self.conf.write_text(CONF.format(user=user, root=self.root, port=self.port))
        proc = subprocess.run([self.binary, "-c", str(self.conf), "-d"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise StackError(f"mosquitto failed to start: {proc.stderr.strip()} "
                             f"(log: {self.logfile})")
        try:
            wait_for_port("127.0.0.1", self.port, timeout)
        except StackError as exc:
            tail = self.logfile.read_text()[-2000:] if self.logfile.exists() else ""
            raise StackError(f"mosquitto did not listen on port {self.port}: {exc}\n{tail}") from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Stop; SIGTERM lets Mosquitto save its persistence file first."""
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
        raise StackError(f"mosquitto (pid {pid}) did not stop within {timeout:.0f} s")

    def remove(self) -> None:
        try:
            self.stop()
        except StackError:
            pid = self.pid()
            if pid:
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
