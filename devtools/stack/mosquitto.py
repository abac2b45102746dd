"""A Mosquitto broker run as a user process with its own config in a folder.

Configured for lossless QoS 1 with persistent sessions: persistence on,
queued-message limits far above the default 1000 (which silently drops QoS 1
messages for an offline persistent session), MQTT v5 on the listener.
"""
from __future__ import annotations

import os
import pwd

from devtools.stack.daemon import Daemon, find_binary

CONF = """# Written by citydash (devtools/stack/mosquitto.py); edits are overwritten.
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
    return find_binary("mosquitto", "/usr/sbin/mosquitto", package="mosquitto")


class LocalMosquitto(Daemon):
    name = "mosquitto"
    pid_name = "mosquitto.pid"
    log_name = "mosquitto.log"

    def find(self) -> str:
        return mosquitto_binary()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def config(self) -> str:
        return CONF.format(user=pwd.getpwuid(os.geteuid()).pw_name, root=self.root, port=self.port)

    def command(self) -> list[str]:
        return [self.binary, "-c", str(self.conf), "-d"]
