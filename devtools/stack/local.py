"""The developer's stack under ``var/``: ``make stack`` and ``make stop``.

Ports come from the settings ``stack_pg_port`` / ``stack_mqtt_port`` when set, else 5432 / 1883 when free, else a free port chosen once and kept in
``var/ports.env`` so the URLs stay the same across restarts.
"""
from __future__ import annotations

import socket
from pathlib import Path

from core.settings import get_settings
from devtools.stack import LocalMosquitto, LocalPostgres, free_port

VAR = Path("var")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _read_env(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def ports(var: Path = VAR) -> tuple[int, int]:
    settings = get_settings()
    saved = _read_env(var / "ports.env")
    chosen = []
    for key, default, setting in (("PG_PORT", 5432, settings.stack_pg_port),
                                  ("MQTT_PORT", 1883, settings.stack_mqtt_port)):
        wanted = setting or saved.get(key)
        if wanted:
            chosen.append(int(wanted))
        else:
            chosen.append(default if _port_free(default) else free_port())
    var.mkdir(exist_ok=True)
    (var / "ports.env").write_text(f"PG_PORT={chosen[0]}\nMQTT_PORT={chosen[1]}\n")
    return chosen[0], chosen[1]


def services(var: Path = VAR) -> tuple[LocalPostgres, LocalMosquitto]:
    pg_port, mqtt_port = ports(var)
    return LocalPostgres(var / "pg", pg_port), LocalMosquitto(var / "mosquitto", mqtt_port)


def start(var: Path = VAR) -> dict[str, str]:
    """Start both services (idempotent) and write ``var/stack.env``."""
    pg, mq = services(var)
    pg.start()
    mq.start()
    env = {"CITYDASH_DATABASE_URL": pg.url, "CITYDASH_MQTT_URL": mq.url}
    (var / "stack.env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return env


def stop(var: Path = VAR) -> None:
    if not (var / "ports.env").exists():
        return
    pg, mq = services(var)
    mq.stop()
    pg.stop()
