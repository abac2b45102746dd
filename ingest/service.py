"""The MQTT ingestor: ``python -m ingest run``.

paho-mqtt 2.x, MQTT v5, QoS 1, a persistent session (clean start off, session
expiry from settings) and manual acknowledgements: a message is acked only
after the transaction holding its rows has committed (see
:mod:`ingest.pipeline`).  Receive Maximum is raised to ``max_in_flight`` so the
broker keeps sending while whole batches wait for their commit, and stops
when that many are unacknowledged (bounded memory, nothing dropped).

As in Home Assistant's MQTT client (``homeassistant/components/mqtt/client.py``),
subscriptions are made in ``on_connect``, one routing table maps topic
filters to decoders, and every paho callback runs inside a guard: an
exception is caught, logged with the callback's name and, for a message, its
topic and size (never its payload), counted
(``citydash_ingest_mqtt_callback_errors_total``) and never reaches paho, so
paho's network thread never dies of it.  A message whose callback failed is
not acknowledged; the broker redelivers it on the next connection.  A
message the decoders refuse is dead-lettered by the worker.

A watchdog checks paho's network thread (``loop_start``) every second: if it
is gone while the service runs (an exception escaped a callback, someone
called ``loop_stop``), the loop is restarted in-process on a fresh connection
(a log line, ``citydash_ingest_mqtt_loop_restarts_total``); acks of the old
connection are never sent on the new one (see the generation in
:mod:`ingest.worker`), so the broker redelivers what was not committed.  If a
callback runs longer than ``CITYDASH_MQTT_LOOP_STALL_S`` the loop is stuck and
cannot be restarted from outside: the process exits non-zero for its
supervisor.

The socket's receive buffer is set in the public ``on_socket_open`` callback.
The client is :func:`ingest.mqtt_client.make_client`'s: a block reader that
sends a batch's PUBACKs in one write with the paho version it was checked
against (it measured faster), else stock ``mqtt.Client`` acking through
``Client.ack``.

This process only receives and acknowledges: raw messages go in chunks to a
worker process (:mod:`ingest.worker`) that decodes and writes them and sends
back what to ack, so paho's network loop has a core of its own.
"""
from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
import time
from collections import deque

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from core.mqtt_url import parse_mqtt_url
from core.settings import Settings, get_settings, mask_url
from ingest import mqtt_client, worker
from ingest.router import DEFAULT_ROUTES, Router, parse_routes
from ingest.writer import WriteResult

log = logging.getLogger(__name__)

RECEIVE_MAXIMUM_CAP = 65535
CHUNK = 1000  # messages per hand-over to the worker
HANDOVER_S = 0.01  # a partial chunk waits at most this long
STOP_TIMEOUT_S = 90.0
WATCHDOG_EVERY_S = 1.0


class IngestService:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings = settings or get_settings()
        self.router = Router(parse_routes(settings.mqtt_routes or DEFAULT_ROUTES))
        self.generation = 0
        self.connected = threading.Event()
        self.ready = threading.Event()  # the worker is up
        self.failed = threading.Event()  # the worker died or the loop is stuck: exit non-zero
        self.stopped = threading.Event()
        self.totals = WriteResult()
        self._queue: deque[tuple] = deque()  # network thread → forwarder (append/popleft are atomic)
        self._gen_shift = 0  # generation << 16, the high bits of every token
        self._wake = threading.Event()
        self._send_lock = threading.Lock()  # one writer at a time on the pipe to the worker
        self._closing = False
        self._process = None
        self._to_worker = self._from_worker = None
        self._threads: list[threading.Thread] = []
        # the watchdog's view of paho's network thread: recorded by every callback (they run in it)
        self._net_thread: threading.Thread | None = None
        self._in_callback: tuple[str, float] | None = None  # (callback, monotonic start)
        self._watchdog_stop = threading.Event()
        self.callback_errors = 0
        self.loop_restarts = 0
        self.client = self._make_client()

    # -- MQTT ---------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        s = self.settings
        address = parse_mqtt_url(s.mqtt_url)
        self._host, self._port = address.host, address.port
        client = mqtt_client.make_client(s.mqtt_client_id, block_reader=s.mqtt_block_reader)
        self._ack_many = getattr(client, "ack_many", None)
        if address.tls:
            client.tls_set()
        if address.username:
            client.username_pw_set(address.username, address.password)
        self._install_callbacks(client)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_queued_messages_set(0)
        return client

    def _install_callbacks(self, client: mqtt.Client) -> None:
        """Every callback behind the guard (also called again when the watchdog restarts)."""
        client.on_socket_open = self._guard("on_socket_open", self._on_socket_open)
        client.on_connect = self._guard("on_connect", self._on_connect)
        client.on_connect_fail = self._guard("on_connect_fail", self._on_connect_fail)
        client.on_disconnect = self._guard("on_disconnect", self._on_disconnect)
        client.on_message = self._guard("on_message", self._on_message)
        # ready only once the broker has confirmed the subscriptions (SUBACK)
        client.on_subscribe = self._guard("on_subscribe", self._on_subscribe)

    def _guard(self, name: str, callback):
        """``callback`` such that nothing it raises reaches paho (its thread would die)."""
        def guarded(client, userdata, *args):
            self._net_thread = threading.current_thread()
            self._in_callback = (name, time.monotonic())
            try:
                callback(client, userdata, *args)
            except Exception as exc:  # a bad message or a bug must not stop the loop
                try:
                    self._callback_failed(name, exc, args)
                except Exception:  # noqa: BLE001  (not even a failing log may reach paho)
                    pass
            finally:
                self._in_callback = None
        guarded.__name__ = f"guarded_{name}"
        return guarded

    def _callback_failed(self, name: str, exc: Exception, args: tuple) -> None:
        self.callback_errors += 1
        self._control(("count", "callback_errors", name))
        message = args[0] if name == "on_message" and args else None
        if message is None:
            log.exception("paho callback %s failed; the MQTT loop goes on", name)
            return
        try:
            topic = message.topic
        except Exception:  # noqa: BLE001  (invalid UTF-8: the topic itself is the problem)
            topic = "<topic not valid UTF-8>"
        try:
            size = len(message.payload)
        except Exception:  # noqa: BLE001
            size = -1
        log.error("could not handle a message on %s (%d bytes, qos %s, mid %s): %s: %s; it stays "
                  "unacknowledged and the MQTT loop goes on", topic, size,
                  getattr(message, "qos", "?"), getattr(message, "mid", "?"),
                  type(exc).__name__, exc, exc_info=exc)

    def _on_socket_open(self, client, userdata, sock) -> None:
        size = self.settings.mqtt_socket_rcvbuf_bytes
        if size:
            try:
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < size:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
            except (OSError, AttributeError) as exc:  # e.g. a websocket wrapper
                log.debug("could not set SO_RCVBUF on the broker socket: %s", exc)

    def _on_connect_fail(self, client, userdata) -> None:
        log.warning("could not connect to the broker at %s:%d; retrying", self._host, self._port)

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.mqtt_session_expiry_s
        props.ReceiveMaximum = max(1, min(self.settings.max_in_flight, RECEIVE_MAXIMUM_CAP))
        return props

    def subscriptions(self) -> list[str]:
        group = self.settings.mqtt_shared_group
        filters = self.router.filters()
        return [f"$share/{group}/{f}" for f in filters] if group else filters

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        self.generation += 1
        self._gen_shift = self.generation << 16
        subs = [(topic, SubscribeOptions(qos=1)) for topic in self.subscriptions()]
        client.subscribe(subs)
        log.info("connected to %s:%d (session present: %s), subscribed to %d filters",
                 self._host, self._port, flags.session_present, len(subs))

    def _on_subscribe(self, *args):
        self.connected.set()
        self._control(("state", True))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()
        self._control(("state", False))
        if reason_code != 0:
            log.warning("disconnected from broker (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, msg):
        # The network thread does as little as possible: the worker does the rest.
        if not self._closing:  # else not acked: the broker redelivers it next session
            self._queue.append((self._gen_shift | msg.mid, msg.qos, msg.topic, msg.payload))

    # -- hand-over to the worker -------------------------------------------
    def _send(self, message: tuple) -> None:
        with self._send_lock:
            self._to_worker.send(message)

    def _control(self, message: tuple) -> None:
        if self._to_worker is not None and not self.failed.is_set():
            try:
                self._send(message)
            except (OSError, ValueError):
                pass

    def _forward(self) -> None:
        """Send chunks of raw messages to the worker; on stop, the rest and then "stop"."""
        queue = self._queue
        while True:
            closing = self._closing
            if len(queue) < CHUNK and not closing:
                self._wake.wait(HANDOVER_S)
            received_at = time.time()
            try:
                while queue:
                    n = min(len(queue), CHUNK)
                    self._send(("msgs", received_at, [queue.popleft() for _ in range(n)]))
                if closing:
                    self._send(("stop",))
                    return
            except (OSError, ValueError):
                return  # the worker is gone; _collect notices

    def _collect(self) -> None:
        """Ack what the worker committed; notice when it stops or dies."""
        while True:
            try:
                message = self._from_worker.recv()
            except (EOFError, OSError):
                if not self.stopped.is_set():
                    log.error("the ingest worker process died; exiting so that the supervisor "
                              "restarts us (unacknowledged messages are redelivered)")
                    self.failed.set()
                return
            kind = message[0]
            if kind == "ack":
                # A message from an earlier connection is redelivered on this one; its
                # packet id may already name another message, so it is never acked here.
                generation = self.generation
                self._ack([v & 0xFFFF for v in message[1] if v >> 16 == generation])
                self._totals(message[2])
            elif kind == "ready":
                self.ready.set()
            elif kind == "stopped":
                self._totals(message[1])
                self.stopped.set()
                return

    def _ack(self, mids: list[int]) -> None:
        if self._ack_many is not None:
            self._ack_many(mids)
            return
        ack = self.client.ack
        for mid in mids:
            ack(mid, 1)

    def _totals(self, values: tuple[int, int, int, int]) -> None:
        t = self.totals
        t.readings, t.duplicates, t.vehicles, t.dead_letters = values

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        s = self.settings
        log.info("ingest starting: broker %s, database %s", mask_url(s.mqtt_url),
                 mask_url(s.role_url("ingest")))
        ctx = multiprocessing.get_context("spawn")
        worker_in, self._to_worker = ctx.Pipe(duplex=False)
        self._from_worker, worker_out = ctx.Pipe(duplex=False)
        self._process = ctx.Process(target=worker.main, args=(s, worker_in, worker_out),
                                    name="citydash-ingest-worker", daemon=True)
        self._process.start()
        worker_in.close()
        worker_out.close()
        self._threads = [threading.Thread(target=self._forward, name="citydash-forward", daemon=True),
                         threading.Thread(target=self._collect, name="citydash-collect", daemon=True)]
        for thread in self._threads:
            thread.start()
        self._start_loop()
        watchdog = threading.Thread(target=self._watchdog, name="citydash-mqtt-watchdog",
                                    daemon=True)
        self._threads.append(watchdog)
        watchdog.start()

    def _start_loop(self) -> None:
        """Connect (asynchronously, on paho's thread) and start paho's network thread."""
        s = self.settings
        self._net_thread = None  # known again from the new thread's first callback
        self.client.connect_async(self._host, self._port, keepalive=s.mqtt_keepalive_s,
                                  clean_start=False, properties=self._connect_properties())
        self.client.loop_start()

    # -- watchdog ------------------------------------------------------------
    def _watchdog(self) -> None:
        """Restart paho's network thread if it died; exit non-zero if it is stuck."""
        stall_s = self.settings.mqtt_loop_stall_s
        while not self._watchdog_stop.wait(WATCHDOG_EVERY_S):
            thread, running = self._net_thread, self._in_callback
            if thread is not None and not thread.is_alive():
                self._restart_loop()
            elif running is not None and time.monotonic() - running[1] > stall_s:
                log.error("the MQTT network loop is stuck: callback %s has been running for "
                          "%.0f s (CITYDASH_MQTT_LOOP_STALL_S=%.0f); exiting so that the "
                          "supervisor restarts us (unacknowledged messages are redelivered)",
                          running[0], time.monotonic() - running[1], stall_s)
                self._control(("count", "loop_restarts", "stalled"))
                self.failed.set()
                return

    def _restart_loop(self) -> None:
        self.connected.clear()
        self._control(("state", False))
        self.loop_restarts += 1
        log.error("paho's MQTT network thread died; restarting it on a new connection (restart "
                  "%d; messages not yet committed are redelivered by the broker)",
                  self.loop_restarts)
        self._control(("count", "loop_restarts", "thread_died"))
        self.client.loop_stop()  # returns at once: there is no thread left to join
        self._install_callbacks(self.client)  # a callback may have been replaced behind our back
        self._start_loop()

    def stop(self) -> None:
        """Hand over what is received, let the worker flush, commit and ack, then disconnect."""
        log.info("ingest stopping: flushing buffered messages")
        self._closing = True
        self._wake.set()
        if not self.stopped.wait(STOP_TIMEOUT_S) and not self.failed.is_set():
            log.warning("the worker did not finish flushing in %.0f s; unacknowledged messages "
                        "stay with the broker", STOP_TIMEOUT_S)
        self._watchdog_stop.set()
        for thread in self._threads:
            if thread.name == "citydash-mqtt-watchdog":
                thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()
        if self._process is not None:
            self._process.join(10)
            if self._process.is_alive():
                self._process.kill()
        t = self.totals
        log.info("ingest stopped: %d readings, %d vehicle positions, %d dead letters, "
                 "%d duplicates skipped", t.readings, t.vehicles, t.dead_letters, t.duplicates)


def run_forever(settings: Settings | None = None) -> int:
    service = IngestService(settings)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    service.start()
    while not stop.is_set() and not service.failed.is_set():
        stop.wait(1.0)
    service.stop()
    return 1 if service.failed.is_set() else 0
