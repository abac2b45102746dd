"""nginx in front of gunicorn (deploy/nginx/citydash.conf, as `make run` serves it).

Real gunicorn (2 workers x 4 threads, as in `make run`) behind a real nginx running the file
documented for production. The slow-header test is the finding of the hardening issue: 64
connections that send their headers a byte at a time used to hold every gunicorn thread.
"""
from __future__ import annotations

import gzip
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from devtools.stack import LocalNginx, StackError, free_port, wait_for_port
from tests.conftest import _tempdir, create_database, drop_database

ROOT = Path(__file__).resolve().parents[2]
ATTACKERS = 64
ATTACK_S = 30.0


def _get(url: str, timeout: float = 10, headers: dict | None = None):
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, dict(response.headers), response.read()


@pytest.fixture(scope="module")
def front(pg_server, mqtt_broker, tmp_path_factory):
    """(nginx, gunicorn URL): the dashboard behind the front server, on a database of its own."""
    db_url = create_database(pg_server)
    tmp = tmp_path_factory.mktemp("front")
    port = free_port()
    env = dict(os.environ, CITYDASH_DATABASE_URL=db_url, CITYDASH_MQTT_URL=mqtt_broker.url,
               CITYDASH_LOG_FORMAT="text", CITYDASH_PROXY_COUNT="1", CITYDASH_METRICS_PORT="0",
               CITYDASH_LAYERS_DIR=str(tmp / "layers"),
               CITYDASH_PUBLIC_RATE_LIMIT="100000 per minute")  # one test client makes every request
    log = open(tmp / "gunicorn.log", "wb")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("gunicorn")), "--workers", "2",
                             "--threads", "4", "--bind", f"127.0.0.1:{port}", "app:server"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    nginx = None
    try:
        wait_for_port("127.0.0.1", port, 60)
        try:
            nginx = LocalNginx(_tempdir("citydash-test-nginx-"), free_port(), f"127.0.0.1:{port}")
            nginx.start()
        except StackError as exc:
            pytest.fail(f"nginx could not start: {exc}. Run `make deps` (Debian package nginx).",
                        pytrace=False)
        _warm(nginx.url + "/public/")
        yield nginx, f"http://127.0.0.1:{port}"
    finally:
        if nginx is not None:
            nginx.remove()
        proc.terminate()
        proc.wait(30)
        log.close()
        drop_database(pg_server, db_url)


def _warm(url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            _get(url, timeout=30)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_proxy_headers_gzip_static_cache_and_body_limit(front):
    nginx, _ = front
    status, headers, body = _get(nginx.url + "/public/", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers.get("Server") == "nginx"  # server_tokens off: no version
    assert b"_dash-config" in (gzip.decompress(body) if headers.get("Content-Encoding") == "gzip" else body)
    # a Dash bundle: gzipped on the way out, cached by nginx after the first request
    page = gzip.decompress(body).decode() if headers.get("Content-Encoding") == "gzip" else body.decode()
    start = page.index("/_dash-component-suites/")
    bundle = page[start:page.index('"', start)]
    first = _get(nginx.url + bundle, headers={"Accept-Encoding": "gzip"})[1]
    second = _get(nginx.url + bundle, headers={"Accept-Encoding": "gzip"})[1]
    assert first["Content-Encoding"] == "gzip"
    assert second["X-Cache-Status"] == "HIT", (first, second)
    # bodies over the limit are refused by nginx before they reach a gunicorn thread
    request = urllib.request.Request(nginx.url + "/_dash-update-component", data=b"x" * (2 << 20),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 413


class SlowHeaders:
    """``n`` connections that send a request's headers one byte every ``pause`` seconds and
    open a new connection whenever the server closes one (as slowloris does)."""

    def __init__(self, port: int, n: int, pause: float = 0.5):
        self.port, self.n, self.pause = port, n, pause
        self.stop = threading.Event()
        self.reconnects = 0
        self.thread = threading.Thread(target=self._run, name="slow-headers", daemon=True)

    def _open(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.sendall(b"GET /public/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        return s

    def _run(self) -> None:
        socks = [self._open() for _ in range(self.n)]
        try:
            while not self.stop.wait(self.pause):
                for i, s in enumerate(socks):
                    try:
                        s.sendall(b"X")
                    except OSError:  # closed by the server (header timeout): come back
                        s.close()
                        self.reconnects += 1
                        try:
                            socks[i] = self._open()
                        except OSError:
                            pass
        finally:
            for s in socks:
                s.close()

    def __enter__(self):
        self.thread.start()
        time.sleep(1.0)  # every connection open and sending
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)


def _latencies(url: str, seconds: float) -> list[float]:
    out: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.perf_counter()
        status, _, _ = _get(url, timeout=30)
        assert status == 200
        out.append(time.perf_counter() - t)
    return out


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def _wall_browser(url: str):
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1280,720"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.get(url)
    return driver


def _wall_refreshes(access_log: Path) -> int:
    """Wall refresh callbacks nginx answered with 200 so far (from its access log)."""
    text = access_log.read_text() if access_log.exists() else ""
    return sum(1 for line in text.splitlines()
               if '"POST /_dash-update-component' in line and '" 200 ' in line)


def test_slow_header_clients_do_not_stall_pages(front):
    nginx, direct = front
    public = nginx.url + "/public/"
    driver = _wall_browser(nginx.url + "/wall?refresh=1&lang=en")
    try:
        before = _latencies(public, 8)
        with SlowHeaders(nginx.port, ATTACKERS) as attack:
            refreshes_at_start = _wall_refreshes(nginx.access_log)
            during = _latencies(public, ATTACK_S - 1)
            refreshes = _wall_refreshes(nginx.access_log) - refreshes_at_start
        after = _latencies(public, 8)
    finally:
        driver_logs = driver.get_log("browser")
        driver.quit()
    baseline = max(_p99(before), _p99(after))
    print(f"/public/ p99 without the attack {baseline * 1000:.1f} ms (before {_p99(before) * 1000:.1f}, "
          f"after {_p99(after) * 1000:.1f}), during {_p99(during) * 1000:.1f} ms; "
          f"{len(during)} requests, {attack.reconnects} attacker reconnects, {refreshes} wall refreshes")
    assert _p99(during) <= 2 * baseline
    # the wall, open in a browser through nginx with a 1 s refresh, kept refreshing throughout
    assert refreshes >= (ATTACK_S - 1) / 3, (refreshes, nginx.access_log.read_text()[-3000:],
                                             driver_logs)


def test_without_the_front_server_the_same_clients_stall_gunicorn(front):
    """The control: the same attack straight at gunicorn holds all its threads."""
    _, direct = front
    port = int(direct.rsplit(":", 1)[1])
    with SlowHeaders(port, ATTACKERS):
        t = time.perf_counter()
        with pytest.raises(OSError):  # socket timeout: no thread is free to answer
            _get(direct + "/public/", timeout=5)
        assert time.perf_counter() - t >= 5
