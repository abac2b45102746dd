"""``make run``: the whole product on the local stack, stopped cleanly by Ctrl-C.

Starts TimescaleDB and Mosquitto under ``var/``, applies migrations, loads the
city pack, then runs the ingestor, the simulator and the dashboard (gunicorn on a
private loopback port, nginx in front of it on ``CITYDASH_PORT`` with
``deploy/nginx/citydash.conf``) as child processes and prints the URL.

The simulator (docs/simulator.md) runs twice: once live, publishing the city
in real time from now on, and, when the history has a hole, once as a
backfill that writes it through the database writer and exits.  On the first
start (no readings) the hole is ``CITYDASH_SIMULATE_BACKFILL_DAYS`` days long;
on later starts it is the time since the newest reading (at most that many
days), so the charts have no gap.  Both start together, so live data arrives
within seconds while the history is written.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg

from core.logs import setup_logging
from core.settings import get_settings
from dashboard.auth import users
from devtools.stack import LocalNginx, StackError, free_port, local, wait_for_port
from ingest.migrate import migrate

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

    _demo_users(settings)

    children: list[tuple[str, subprocess.Popen]] = []
    oneshot = {"simulate-history"}  # children that finish on their own

    def spawn(name: str, args: list[str], env: dict | None = None) -> None:
        log = open(ROOT / "var" / f"{name}.log", "ab")
        children.append((name, subprocess.Popen(args, env=env or child_env, stdout=log,
                                                stderr=subprocess.STDOUT, cwd=ROOT)))

    spawn("ingest", [py, "-m", "ingest", "run"])
    # On the very first start the ingestor's persistent session does not exist yet: what
    # the simulator published before the subscription would be lost, so wait for it.
    if _wait_subscribed(settings, 60):
        _step("ingestor subscribed")
    else:
        _step("ingestor subscription not confirmed (see var/ingest.log); starting anyway")
    start = datetime.now(timezone.utc)
    history_from = _history_start(settings, start)
    simulate = [py, "-m", "ingest", "simulate", "--start", start.isoformat(), "--no-progress"]
    if history_from is not None:
        spawn("simulate-history", simulate + [
            "--backfill-from", history_from.isoformat(), "--duration", "0",
            "--backfill-interval", str(settings.simulate_backfill_interval_s)])
        _step(f"simulator: writing history {history_from:%Y-%m-%d %H:%M} .. {start:%H:%M} UTC "
              "in the background (var/simulate-history.log)")
    spawn("simulate", simulate)
    _step("simulator: publishing the city live (var/simulate.log)")
    # gunicorn on a private loopback port; nginx (deploy/nginx/citydash.conf) in front of it on
    # the dashboard's port, so slow clients wait in nginx, not in a gunicorn thread
    upstream = free_port()
    dashboard_env = dict(child_env, CITYDASH_PROXY_COUNT="1")
    spawn("dashboard", [str(Path(py).with_name("gunicorn")), "--workers", "2", "--threads", "4",
                        "--bind", f"127.0.0.1:{upstream}", "app:server"], env=dashboard_env)
    wait_for_port("127.0.0.1", upstream, 60)
    front = LocalNginx(ROOT / "var" / "nginx", settings.port, f"127.0.0.1:{upstream}", host=settings.host)
    try:
        front.start()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        stopping_now(children)
        local.stop()
        return 1
    _step(f"dashboard: http://127.0.0.1:{settings.port}/   (nginx in front of gunicorn; logs in "
          "var/*.log and var/nginx/; Ctrl-C stops everything)")

    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stopping:
            for name, proc in list(children):
                if proc.poll() is None:
                    continue
                if name in oneshot:
                    children.remove((name, proc))
                    _step(f"{name}: {'done' if proc.returncode == 0 else 'failed'} "
                          f"(var/{name}.log)")
                    continue
                _step(f"{name} exited with status {proc.returncode}; see var/{name}.log")
                stopping = True
            time.sleep(0.5)
    finally:
        _step("stopping")
        try:
            front.stop()
        except StackError as exc:
            _step(f"nginx: {exc}")
        stopping_now(children)
        local.stop()
        _step("stopped; data kept under var/ (make stop / make stack, or rm -rf var to reset)")
    return 0


def stopping_now(children: list[tuple[str, subprocess.Popen]]) -> None:
    """SIGTERM every child still running (newest first), then wait for each (kill after 60 s)."""
    for name, proc in reversed(children):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for name, proc in reversed(children):
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


DEMO_USERS = (("operator", "operator"), ("planner", "planner"), ("admin", "admin"))


def _demo_users(settings, var: Path = ROOT / "var") -> None:
    """On a local stack without users, create one per role and print where their passwords are.

    Passwords are random, kept in ``var/demo-users.txt`` (readable by this user only); a city's
    own deployment adds users with ``python -m dashboard users add``.
    """
    import secrets


    if settings.auth_mode != "builtin":
        return
    path = var / "demo-users.txt"
    with psycopg.connect(settings.database_url) as conn:
        if users.list_users(conn):
            if path.exists():
                _step(f"sign in with the demo users in {path}")
            return
        lines = []
        for name, role in DEMO_USERS:
            password = secrets.token_urlsafe(12)
            users.add_user(conn, name, password, role)
            lines.append(f"{name} ({role}): {password}")
    # created readable by this user only: the passwords are never on disk for others, not even briefly
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file keeps its mode on O_CREAT
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    _step("demo users created (sign in at /login): " + "; ".join(lines)
          + f" (kept in {path})")


def _wait_subscribed(settings, timeout_s: float) -> bool:
    """Wait until the ingestor's /healthz says it is subscribed to the broker."""
    import json
    import urllib.request

    if not settings.metrics_port:  # no health endpoint to ask
        return False
    url = f"http://{settings.metrics_host}:{settings.metrics_port}/healthz"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body = json.loads(response.read())
        except OSError as exc:  # not listening yet, or 503 while not connected
            body = json.loads(exc.read()) if hasattr(exc, "read") else {}
        if body.get("mqtt_connected"):
            return True
        time.sleep(0.3)
    return False


def _history_start(settings, now: datetime) -> datetime | None:
    """Where the simulator's backfill starts, or None when the history is complete."""
    days = settings.simulate_backfill_days
    if days <= 0:
        return None
    earliest = now.timestamp() - days * 86400
    with psycopg.connect(settings.database_url) as conn:
        newest = conn.execute("SELECT max(time) FROM readings").fetchone()[0]
    if newest is None:
        return datetime.fromtimestamp(earliest, timezone.utc)
    if now.timestamp() - newest.timestamp() < 2 * settings.simulate_interval_s:
        return None
    return datetime.fromtimestamp(max(newest.timestamp(), earliest), timezone.utc)


if __name__ == "__main__":
    sys.exit(main())
