"""Prometheus metrics of the ingestor, and its /metrics + /healthz endpoint."""
from __future__ import annotations

import json
import logging
import threading
from typing import Callable
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app

log = logging.getLogger(__name__)

MESSAGES = Counter("citydash_ingest_messages_total",
                   "MQTT messages by decoder and outcome (received, decoded, written, rejected)",
                   ["decoder", "outcome"])
ROWS_WRITTEN = Counter("citydash_ingest_rows_written_total", "Rows inserted", ["table"])
DUPLICATES = Counter("citydash_ingest_duplicate_rows_total",
                     "Rows skipped because they were already stored (redeliveries)")
DB_ERRORS = Counter("citydash_ingest_db_errors_total",
                    "Failed batch writes by kind (transient, unavailable, permanent)", ["kind"])
STUCK_FLUSHES = Counter("citydash_ingest_stuck_flush_warnings_total",
                        "Warnings that a flush did not commit within CITYDASH_FLUSH_STUCK_WARN_S")
CALLBACK_ERRORS = Counter("citydash_ingest_mqtt_callback_errors_total",
                          "Exceptions caught in paho callbacks (the network loop goes on)",
                          ["callback"])
LOOP_RESTARTS = Counter("citydash_ingest_mqtt_loop_restarts_total",
                        "Restarts of paho's network thread by the watchdog", ["reason"])
BATCH_SIZE = Histogram("citydash_ingest_batch_messages", "Messages per committed batch",
                       buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000, 20000))
COMMIT_SECONDS = Histogram("citydash_ingest_commit_seconds", "Time to write and commit a batch",
                           buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
LAG_SECONDS = Histogram("citydash_ingest_lag_seconds", "Payload time to commit",
                        buckets=(.05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 300, 3600))
BUFFER_DEPTH = Gauge("citydash_ingest_buffer_messages", "Messages received, not yet committed")
CONNECTED = Gauge("citydash_ingest_mqtt_connected", "1 while connected to the broker")
DB_UP = Gauge("citydash_ingest_db_up",
              "1 while the writer's database connection is up (last write or ping reached it)")


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):  # access logs are noise here
        pass


def serve(host: str, port: int, health: Callable[[], tuple[bool, dict]]):
    """Serve /metrics and /healthz in a daemon thread; returns the server (port 0: none)."""
    if not port:
        return None
    metrics_app = make_wsgi_app()

    def app(environ, start_response):
        if environ.get("PATH_INFO") == "/healthz":
            ok, detail = health()
            body = json.dumps({"ok": ok, **detail}).encode()
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "application/json")])
            return [body]
        return metrics_app(environ, start_response)

    server = make_server(host, port, app, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="citydash-metrics", daemon=True).start()
    log.info("metrics and health on http://%s:%d/metrics, /healthz", host, server.server_port)
    return server
