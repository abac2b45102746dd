"""`gunicorn app:server` serves the dashboard for production."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from devtools.stack import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def test_gunicorn_serves_app(db_url, mqtt_broker, tmp_path):
    port = free_port()
    env = dict(os.environ, CITYDASH_DATABASE_URL=db_url, CITYDASH_MQTT_URL=mqtt_broker.url,
               CITYDASH_LOG_FORMAT="text")
    log = open(tmp_path / "gunicorn.log", "wb")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("gunicorn")), "--workers", "2",
                             "--bind", f"127.0.0.1:{port}", "app:server"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", port, 60)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                    body = r.read().decode()
                    status = r.status
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        assert status == 200 and '"database":true' in body.replace(" ", "")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert r.status == 200 and b"_dash-config" in r.read()
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    assert proc.returncode == 0, (tmp_path / "gunicorn.log").read_text()[-3000:]
