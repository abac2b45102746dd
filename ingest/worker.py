"""The database side of the ingestor, in a process of its own.

The MQTT process (:mod:`ingest.service`) only receives and acknowledges; it
hands raw messages to this process in chunks over a pipe, so paho's network
loop has a core to itself while this process decodes, validates, batches and
writes (:mod:`ingest.pipeline`, :mod:`ingest.writer`) and runs the KPI jobs
(:mod:`ingest.jobs`).  After each commit it sends back the packet ids to
acknowledge.  Protocol (tuples over ``multiprocessing`` connections):

* MQTT process → here: ``("msgs", received_at, [(token, qos, topic, payload), ...])``,
  ``("state", connected)``, ``("count", what, label)`` (an event of the MQTT process
  counted in this process's /metrics: ``callback_errors`` or ``loop_restarts``),
  ``("stop",)``;
* here → MQTT process: ``("ready",)``, ``("ack", [token, ...], totals)`` after
  every commit, ``("stopped", totals)`` when flushed on stop.

``token`` is ``generation << 16 | packet id``: a message that arrived on an
earlier connection is never acked on a later one (the broker redelivers it).
The worker dies with its parent (``PR_SET_PDEATHSIG``), and on end of input
it flushes what it holds and exits: whatever it could not ack is redelivered
by the broker and absorbed by the unique keys.
"""
from __future__ import annotations

import ctypes
import logging
import signal
import threading
import time
from datetime import datetime, timedelta, timezone

import psycopg

from core.logs import setup_logging
from core.settings import Settings
from ingest import metrics
from ingest.city import city_bbox
from ingest.decoders.base import DecodeContext, DecodeError, Message
from ingest.pipeline import Pipeline, oldest_allowed
from ingest.router import DEFAULT_ROUTES, Router, parse_routes
from ingest.validate import ValidationContext
from ingest.writer import BatchWriter, Entry, WriteResult

log = logging.getLogger(__name__)

CONTEXT_REFRESH_S = 1.0
KINDS_REFRESH_S = 60.0
PR_SET_PDEATHSIG = 1


def token(generation: int, mid: int) -> int:
    return (generation << 16) | mid


def totals_tuple(t: WriteResult) -> tuple[int, int, int, int]:
    return t.readings, t.duplicates, t.vehicles, t.dead_letters


def declared_metrics(url: str) -> dict[str, frozenset[str]]:
    """The metrics the registry declares per sensor kind (on a connection of its own)."""
    with psycopg.connect(url, connect_timeout=5, application_name="citydash-ingest-kinds") as conn:
        rows = conn.execute("SELECT kind, metrics FROM sensor_kinds").fetchall()
    return {kind: frozenset(metrics) for kind, metrics in rows if metrics}


class Decoder:
    """Routing, decoding and validation of one message (the settings' routing table).

    It runs in the worker's receiving thread, so the next batch is decoded while
    the writer thread waits for the database to commit the current one.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.url = settings.role_url("ingest")
        self.router = Router(parse_routes(settings.mqtt_routes or DEFAULT_ROUTES))
        self.dctx = DecodeContext(bbox=city_bbox(settings.city_pack),
                                  max_payload_bytes=settings.max_payload_bytes)
        self._vctx: ValidationContext | None = None
        self._vctx_at = 0.0
        self._declared: dict[str, frozenset[str]] = {}
        self._declared_at = float("-inf")

    def _validation_context(self) -> ValidationContext:
        now = time.monotonic()
        if now - self._declared_at >= KINDS_REFRESH_S:
            try:
                self._declared = declared_metrics(self.url)
            except Exception as exc:  # keep the last known declarations
                log.warning("could not read sensor_kinds: %s", exc)
            self._declared_at = now
            self._vctx = None
        if self._vctx is None or now - self._vctx_at >= CONTEXT_REFRESH_S:
            self._vctx = ValidationContext(
                max_future=timedelta(seconds=self.settings.max_future_s),
                oldest=oldest_allowed(self.settings.raw_retention_days),
                declared_metrics=self._declared)
            self._vctx_at = now
        return self._vctx

    def __call__(self, entry: Entry) -> None:
        """Sets ``entry.decoded`` or ``entry.reason``; never raises (a bad message never stops the loop)."""
        try:
            entry.decoded = self.router.decode(entry.message, self.dctx, self._validation_context())
            entry.decoder = self.router.route(entry.message.topic)[0]
        except DecodeError as exc:
            entry.decoder = exc.decoder
            entry.reason = exc.reason
            log.info("rejected message on %s: %s (payload %r)", entry.message.topic, exc.reason,
                     entry.message.payload[:120])
        except Exception as exc:  # a decoder bug must not stop the loop
            found = self.router.route(entry.message.topic)
            entry.decoder = found[0] if found else None
            entry.reason = f"internal decoder error: {type(exc).__name__}: {exc}"
            log.exception("decoder failed on %s", entry.message.topic)


class Worker:
    """Owns the writer, the pipeline and the jobs; talks to the MQTT process through ``send``."""

    def __init__(self, settings: Settings, send):
        self.settings = settings
        self._send = send
        self._send_lock = threading.Lock()
        self.connected = False
        self.writer = BatchWriter(settings.role_url("ingest"), settings.dead_letter_payload_cap)
        self.decode = Decoder(settings)
        self.pipeline = Pipeline(self.writer, self.decode, self._ack, settings)
        self.jobs = None
        self._metrics_server = None

    def send(self, message: tuple) -> None:
        with self._send_lock:
            try:
                self._send(message)
            except (OSError, EOFError, ValueError):  # the MQTT process is gone: nothing to ack to
                pass

    def _ack(self, entries: list[Entry]) -> None:
        tokens = [token(e.generation, e.mid) for e in entries if e.qos]
        self.send(("ack", tokens, totals_tuple(self.pipeline.totals)))

    def health(self) -> tuple[bool, dict]:
        ok = self.connected and self.pipeline.last_error is None
        return ok, {"mqtt_connected": self.connected, "database_error": self.pipeline.last_error,
                    "buffered": self.pipeline.depth()}

    def start(self) -> None:
        s = self.settings
        self._metrics_server = metrics.serve(s.metrics_host, s.metrics_port, self.health)
        self.pipeline.start()
        if s.jobs_enabled:
            # deferred: ingest.jobs loads the KPI engine and pandas (about 1 s and tens of MB);
            # the MQTT process imports this module too (the worker's spawn target) and never
            # runs jobs, nor does a worker with jobs disabled.
            from ingest.jobs import JobRunner

            self.jobs = JobRunner(s)
            self.jobs.start()
        self.send(("ready",))

    def receive(self, received_at: float, chunk: list[tuple]) -> None:
        at = datetime.fromtimestamp(received_at, timezone.utc)
        entries = [Entry(mid & 0xFFFF, qos, mid >> 16, Message(topic, payload, at))
                   for mid, qos, topic, payload in chunk]
        decode = self.decode
        for entry in entries:
            decode(entry)
        self.pipeline.submit_many(entries)

    def set_connected(self, connected: bool) -> None:
        self.connected = connected
        metrics.CONNECTED.set(1 if connected else 0)

    def count(self, what: str, label: str) -> None:
        """An event of the MQTT process, counted here where /metrics is served."""
        if what == "callback_errors":
            metrics.CALLBACK_ERRORS.labels(callback=label).inc()
        elif what == "loop_restarts":
            metrics.LOOP_RESTARTS.labels(reason=label).inc()

    def stop(self) -> None:
        self.pipeline.stop()
        if self.jobs is not None:
            self.jobs.stop()
        self.writer.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        t = self.pipeline.totals
        log.info("ingest stopped: %d readings, %d vehicle positions, %d dead letters, "
                 "%d duplicates skipped", t.readings, t.vehicles, t.dead_letters, t.duplicates)
        self.send(("stopped", totals_tuple(t)))


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: end of input on the pipe still stops the worker
        pass


def main(settings: Settings, inbox, outbox) -> None:
    """Entry point of the worker process."""
    _die_with_parent()
    # Ctrl-C and SIGTERM go to the MQTT process, which flushes us with "stop".
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    setup_logging(settings)
    worker = Worker(settings, outbox.send)
    worker.start()
    try:
        while True:
            try:
                message = inbox.recv()
            except (EOFError, OSError):
                log.warning("the MQTT process is gone; flushing and exiting")
                break
            kind = message[0]
            if kind == "msgs":
                worker.receive(message[1], message[2])
            elif kind == "state":
                worker.set_connected(message[1])
            elif kind == "count":
                worker.count(message[1], message[2])
            elif kind == "stop":
                break
    finally:
        worker.stop()


__all__ = ["Decoder", "Worker", "main", "token", "DecodeError"]
