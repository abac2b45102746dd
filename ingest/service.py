"""The MQTT ingestor: ``python -m ingest run``.

paho-mqtt 2.x, MQTT v5, QoS 1, a persistent session (clean start off, session
expiry from settings) and manual acknowledgements: a message is acked only
after the transaction holding its rows has committed (see
:mod:`ingest.pipeline`).  Receive Maximum is raised to ``max_in_flight`` so the
broker keeps sending while whole batches wait for their commit, and stops
when that many are unacknowledged (bounded memory, nothing dropped).

As in Home Assistant's MQTT client, subscriptions are made in ``on_connect``,
one routing table maps topic filters to decoders, and a bad message is
caught, logged with its topic and a truncated payload, counted and
dead-lettered; it never stops the loop.

This process only receives and acknowledges: raw messages go in chunks to a
worker process (:mod:`ingest.worker`) that decodes and writes them and sends
back what to ack, so paho's network loop has a core of its own.
"""
from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
from collections import deque
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest import worker
from ingest.mqtt_client import BufferedClient
from ingest.router import DEFAULT_ROUTES, Router, parse_routes
from core.settings import Settings, get_settings, mask_url
from ingest.writer import WriteResult

log = logging.getLogger(__name__)

RECEIVE_MAXIMUM_CAP = 65535
CHUNK = 1000  # messages per hand-over to the worker
HANDOVER_S = 0.01  # a partial chunk waits at most this long
STOP_TIMEOUT_S = 90.0


def broker_address(url: str) -> tuple[str, int, bool, str | None, str | None]:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"unsupported MQTT URL scheme {parts.scheme!r} (use mqtt:// or mqtts://)")
    tls = parts.scheme in ("mqtts", "ssl")
    return (parts.hostname or "127.0.0.1", parts.port or (8883 if tls else 1883), tls,
            parts.username, parts.password)


class IngestService:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings = settings or get_settings()
        self.router = Router(parse_routes(settings.mqtt_routes or DEFAULT_ROUTES))
        self.generation = 0
        self.connected = threading.Event()
        self.ready = threading.Event()  # the worker is up
        self.failed = threading.Event()  # the worker died: the process must exit
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
        self.client = self._make_client()

    # -- MQTT ---------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        s = self.settings
        client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id=s.mqtt_client_id,
                                protocol=mqtt.MQTTv5, manual_ack=True)
        host, port, tls, user, password = broker_address(s.mqtt_url)
        self._host, self._port = host, port
        if tls:
            client.tls_set()
        if user:
            client.username_pw_set(user, password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        # ready only once the broker has confirmed the subscriptions (SUBACK)
        client.on_subscribe = self._on_subscribe
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_queued_messages_set(0)
        return client

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
        ack_many = self.client.ack_many
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
                ack_many([v & 0xFFFF for v in message[1] if v >> 16 == generation])
                self._totals(message[2])
            elif kind == "ready":
                self.ready.set()
            elif kind == "stopped":
                self._totals(message[1])
                self.stopped.set()
                return

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
        self.client.connect_async(self._host, self._port, keepalive=s.mqtt_keepalive_s,
                                  clean_start=False, properties=self._connect_properties())
        self.client.loop_start()

    def stop(self) -> None:
        """Hand over what is received, let the worker flush, commit and ack, then disconnect."""
        log.info("ingest stopping: flushing buffered messages")
        self._closing = True
        self._wake.set()
        if not self.stopped.wait(STOP_TIMEOUT_S) and not self.failed.is_set():
            log.warning("the worker did not finish flushing in %.0f s; unacknowledged messages "
                        "stay with the broker", STOP_TIMEOUT_S)
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
