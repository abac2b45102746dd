"""``dashboard.security.WindowCounters``: fixed-window counters on limits' public Storage API."""
from __future__ import annotations

import threading
import time

import flask
from flask_limiter import Limiter
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from dashboard.security import MEMORY_STORAGE_URI, WindowCounters


def test_scheme_gives_the_counters():
    assert isinstance(storage_from_string(MEMORY_STORAGE_URI), WindowCounters)


def test_counts_per_key_and_window():
    limiter = FixedWindowRateLimiter(WindowCounters())
    item = parse("5 per minute")
    assert [limiter.hit(item, "a") for _ in range(6)] == [True] * 5 + [False]
    assert limiter.hit(item, "b")  # per key
    assert limiter.get_window_stats(item, "a").remaining == 0
    assert limiter.get_window_stats(item, "b").remaining == 4
    assert limiter.get_window_stats(item, "a").reset_time > time.time() + 50
    expiring = parse("2 per 1 second")
    assert [limiter.hit(expiring, "c") for _ in range(3)] == [True, True, False]
    time.sleep(1.1)
    assert limiter.hit(expiring, "c")  # a new window after expiry
    limiter.clear(item, "a")
    assert limiter.hit(item, "a")


def test_counts_right_under_concurrency():
    storage = WindowCounters()
    limiter = FixedWindowRateLimiter(storage)
    item = parse("1000 per minute")
    barrier = threading.Barrier(8)

    def hits():
        barrier.wait()
        for _ in range(100):
            limiter.hit(item, "shared")

    threads = [threading.Thread(target=hits) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert storage.get(item.key_for("shared")) == 800


def test_no_thread_per_hit_and_expired_keys_are_dropped():
    storage = WindowCounters()
    limiter = FixedWindowRateLimiter(storage)
    before = threading.active_count()
    short = parse("100 per 1 second")
    for i in range(200):  # many clients in one window
        limiter.hit(short, f"client-{i}")
    assert threading.active_count() == before  # limits' MemoryStorage starts a Timer here
    assert storage.size() == 200
    time.sleep(1.1 + WindowCounters.SWEEP_S)
    limiter.hit(short, "late")  # the next hit sweeps the expired counters
    assert storage.size() == 1
    assert storage  # never falsy: flask-limiter tests a storage for truth


def test_flask_limiter_answers_429_after_the_limit():
    app = flask.Flask(__name__)
    app.config["RATELIMIT_STORAGE_URI"] = MEMORY_STORAGE_URI
    app.config["RATELIMIT_STRATEGY"] = "fixed-window"
    limiter = Limiter(key_func=lambda: flask.request.remote_addr, headers_enabled=True)
    limiter.init_app(app)

    @app.route("/limited")
    @limiter.limit("3 per minute")
    def limited():
        return "ok"

    client = app.test_client()
    codes = [client.get("/limited").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert isinstance(limiter.storage, WindowCounters)
    other = client.get("/limited", environ_base={"REMOTE_ADDR": "127.0.0.9"})
    assert other.status_code == 200 and other.headers["X-RateLimit-Remaining"] == "2"
