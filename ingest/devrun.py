"""``make run``: the whole product on the local stack, stopped cleanly by Ctrl-C.

Starts TimescaleDB and Mosquitto under ``var/``, applies migrations, loads the
city pack, then runs the ingestor and the dashboard (gunicorn) as child
processes and prints the URL.  (The simulator joins once it exists.)
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ingest.logs import setup_logging
from ingest.migrate import migrate
from ingest.settings import get_settings
from ingest.stack import StackError, local, wait_for_port

ROOT = Path(__file__).resolve().parent.parent


def _step(text: str) -> None:
    print(f"citydash: {text}", flush=True)


def main() -> int:
    os.chdir(ROOT)
    try:
        env_values = local.start()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    os.environ.update(env_values)
    get_settings.cache_clear()
    setup_logging()
    settings = get_settings()
    _step(f"stack up: {env_values['CITYDASH_DATABASE_URL']}, {env_values['CITYDASH_MQTT_URL']}")
    applied = migrate(settings.database_url)
    _step(f"migrations applied: {applied or 'up to date'}")

    py = sys.executable
    child_env = dict(os.environ)
    subprocess.run([py, "-m", "layers", "load", settings.city_pack], check=True, env=child_env)
    _step(f"city pack loaded: {settings.city_pack}")

    children: list[tuple[str, subprocess.Popen]] = []

    def spawn(name: str, args: list[str]) -> None:
        log = open(ROOT / "var" / f"{name}.log", "ab")
        children.append((name, subprocess.Popen(args, env=child_env, stdout=log,
                                                stderr=subprocess.STDOUT, cwd=ROOT)))

    spawn("ingest", [py, "-m", "ingest", "run"])
    # The simulator (issue 4, `python -m ingest simulate`) is not written yet; when it is,
    # it is started here, with a history backfill on first start.
    spawn("dashboard", [str(Path(py).with_name("gunicorn")), "--workers", "2", "--threads", "4",
                        "--bind", f"{settings.host}:{settings.port}", "app:server"])
    wait_for_port(settings.host, settings.port, 60)
    _step(f"dashboard: http://{settings.host}:{settings.port}/   (logs in var/*.log; "
          "Ctrl-C stops everything)")

    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stopping:
            for name, proc in children:
                if proc.poll() is not None:
                    _step(f"{name} exited with status {proc.returncode}; see var/{name}.log")
                    stopping = True
            time.sleep(0.5)
    finally:
        _step("stopping")
        for name, proc in reversed(children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in reversed(children):
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        local.stop()
        _step("stopped; data kept under var/ (make stop / make stack, or rm -rf var to reset)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
