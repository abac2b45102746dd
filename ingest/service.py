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
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest import metrics
from ingest.city import city_bbox
from ingest.decoders.base import DecodeContext, DecodeError, Message
from ingest.pipeline import Pipeline, oldest_allowed
from ingest.router import DEFAULT_ROUTES, Router, parse_routes
from ingest.settings import Settings, get_settings, mask_url
from ingest.validate import ValidationContext
from ingest.writer import BatchWriter, Entry

log = logging.getLogger(__name__)

RECEIVE_MAXIMUM_CAP = 65535
CONTEXT_REFRESH_S = 1.0
KINDS_REFRESH_S = 60.0


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
        self.dctx = DecodeContext(bbox=city_bbox(settings.city_pack),
                                  max_payload_bytes=settings.max_payload_bytes)
        self.writer = BatchWriter(settings.role_url("ingest"), settings.dead_letter_payload_cap)
        self.pipeline = Pipeline(self.writer, self._decode, self._ack,
                                 batch_size=settings.batch_size,
                                 max_age_s=settings.batch_max_age_ms / 1000)
        self.generation = 0
        self.connected = threading.Event()
        self._vctx: ValidationContext | None = None
        self._vctx_at = 0.0
        self._declared: dict[str, frozenset[str]] = {}
        self._declared_at = float("-inf")
        self._metrics_server = None
        self.client = self._make_client()

    # -- MQTT ---------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=s.mqtt_client_id,
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
        client.on_subscribe = lambda *args: self.connected.set()
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
        subs = [(topic, SubscribeOptions(qos=1)) for topic in self.subscriptions()]
        client.subscribe(subs)
        metrics.CONNECTED.set(1)
        log.info("connected to %s:%d (session present: %s), subscribed to %d filters",
                 self._host, self._port, flags.session_present, len(subs))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()
        metrics.CONNECTED.set(0)
        if reason_code != 0:
            log.warning("disconnected from broker (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, msg):
        entry = Entry(msg.mid, msg.qos, self.generation,
                      Message(msg.topic, msg.payload, datetime.now(timezone.utc)))
        self.pipeline.submit(entry)

    def _ack(self, entries: list[Entry]) -> None:
        generation = self.generation
        ack = self.client.ack
        for entry in entries:
            # A message from an earlier connection is redelivered on this one; its
            # packet id may already name another message, so it is never acked here.
            if entry.qos and entry.generation == generation:
                ack(entry.mid, entry.qos)

    # -- decoding (writer thread) ------------------------------------------
    def _validation_context(self) -> ValidationContext:
        now = time.monotonic()
        if now - self._declared_at >= KINDS_REFRESH_S:
            try:
                self._declared = self.writer.declared_metrics()
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

    def _decode(self, entry: Entry) -> None:
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

    # -- lifecycle -----------------------------------------------------------
    def health(self) -> tuple[bool, dict]:
        ok = self.connected.is_set() and self.pipeline.last_error is None
        return ok, {"mqtt_connected": self.connected.is_set(),
                    "database_error": self.pipeline.last_error,
                    "buffered": self.pipeline.depth()}

    def start(self) -> None:
        s = self.settings
        log.info("ingest starting: broker %s, database %s", mask_url(s.mqtt_url),
                 mask_url(s.role_url("ingest")))
        self._metrics_server = metrics.serve(s.metrics_host, s.metrics_port, self.health)
        self.pipeline.start()
        self.client.connect_async(self._host, self._port, keepalive=s.mqtt_keepalive_s,
                                  clean_start=False, properties=self._connect_properties())
        self.client.loop_start()

    def stop(self) -> None:
        """Flush, commit and ack what is buffered, then disconnect."""
        log.info("ingest stopping: flushing %d buffered messages", self.pipeline.depth())
        self.pipeline.stop()
        self.client.disconnect()
        self.client.loop_stop()
        self.writer.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        t = self.pipeline.totals
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
    stop.wait()
    service.stop()
    return 0
