"""Live publishing over MQTT (paho-mqtt 2.x, MQTT v5, QoS 1).

:class:`Connection` is one client with its own flow control: at most
``window`` messages (and fewer than the broker's Receive Maximum) are
unacknowledged, counted from ``on_publish``; the rest wait in the caller.
paho's own in-flight limit is off (``max_inflight_messages_set(0)``): with a
limit, paho 2.2 walks every unacknowledged message on each PUBACK
(``_update_inflight``), which is quadratic; see docs/simulator.md.

:func:`run_live` advances a simulated clock (``start`` + wall time x
``speed``) in ticks of a quarter second, publishes every report that fell due
since the previous tick and, with ``max_rate``, paces itself to that many
messages per second.  A tick covers at most two ticks of simulated time, so
when publishing cannot keep up (or is capped) the simulation falls behind
its clock instead of dropping anything or piling up ever larger ticks.  :func:`run_connections` runs it on ``n`` connections,
one process per connection, each owning the sensors whose number is ``k``
modulo ``n``: the way to go past what one Python process can publish.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from core.mqtt_url import parse_mqtt_url
from ingest.simulate.encoders import Encoder, vehicle

log = logging.getLogger(__name__)

TICK_S = 0.25
TICK_MESSAGES = 4000  # most messages computed at once (about a quarter second's worth)
REPORT_EVERY_S = 10.0


class PublishError(RuntimeError):
    """The broker cannot be reached or refused us; the message says which."""


class Connection:
    def __init__(self, url: str, client_id: str, window: int = 1000, keepalive: int = 30):
        address = parse_mqtt_url(url)
        self.host, self.port = address.host, address.port
        self.window = window
        self.keepalive = keepalive
        self.sent = 0
        self.acked = 0
        self._connected = threading.Event()
        self._refused: str | None = None
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5)
        if address.tls:
            client.tls_set()
        if address.username:
            client.username_pw_set(address.username, address.password)
        client.max_inflight_messages_set(0)  # our own window instead (see the module docstring)
        client.max_queued_messages_set(0)
        client.on_publish = self._on_publish
        client.on_connect = self._on_connect
        client.on_disconnect = lambda *args: self._connected.clear()
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        self.client = client

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        self.acked += 1

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self._refused = str(reason_code)
        else:
            # stay below the broker's Receive Maximum (MQTT 5 §3.2.2.3.3; 65,535 when absent)
            receive_maximum = getattr(properties, "ReceiveMaximum", None) or 65535
            self.window = max(1, min(self.window, receive_maximum - 1))
            self._connected.set()

    def open(self, timeout: float = 10.0) -> "Connection":
        try:
            self.client.connect(self.host, self.port, keepalive=self.keepalive)
        except OSError as exc:
            raise PublishError(f"cannot reach the MQTT broker at {self.host}:{self.port}: "
                               f"{exc.strerror or exc}") from None
        self.client.loop_start()
        if not self._connected.wait(timeout):
            self.client.loop_stop()
            reason = self._refused or "no CONNACK in time"
            raise PublishError(f"the MQTT broker at {self.host}:{self.port} did not accept the "
                               f"connection: {reason}")
        return self

    def send(self, topic: str, payload: bytes) -> None:
        while self.sent - self.acked >= self.window:
            time.sleep(0.0005)
        self.client.publish(topic, payload, qos=1)
        self.sent += 1

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until the broker acknowledged everything sent; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.acked < self.sent and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.acked >= self.sent

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass(slots=True)
class LiveStats:
    published: int = 0
    acked: int = 0
    seconds: float = 0.0
    sim_start: float = 0.0
    sim_end: float = 0.0

    @property
    def rate(self) -> float:
        return self.acked / self.seconds if self.seconds else 0.0

    def add(self, other: "LiveStats") -> None:
        self.published += other.published
        self.acked += other.acked
        self.seconds = max(self.seconds, other.seconds)
        self.sim_start = other.sim_start
        self.sim_end = max(self.sim_end, other.sim_end)


def messages(world, encoder: Encoder, t0: float, t1: float, shard=None) -> list[tuple[str, bytes]]:
    """Every (topic, payload) due in (t0, t1]: sensor reports and vehicle positions."""
    out: list[tuple[str, bytes]] = []
    for batch in world.due(t0, t1, shard):
        out.extend(encoder.encode(batch))
    out.extend(vehicle(p) for p in world.vehicles_due(t0, t1, shard))
    return out


def run_live(world, encoder: Encoder, url: str, client_id: str, *, start: float,
             speed: float = 1.0, duration: float | None = None, max_rate: float = 0.0,
             shard=None, stop: threading.Event | None = None, window: int = 1000) -> LiveStats:
    """Publish in (simulated) real time until ``duration`` wall seconds passed or ``stop``."""
    stop = stop or threading.Event()
    conn = Connection(url, client_id, window).open()
    stats = LiveStats(sim_start=start, sim_end=start)
    wall0 = time.monotonic()
    sim_prev = start
    rate = world.reports_per_second() / (shard[1] if shard else 1)
    step = min(2 * TICK_S * speed, TICK_MESSAGES / max(rate, 1e-9))
    next_report = wall0 + REPORT_EVERY_S
    warned_future = False
    try:
        while not stop.is_set():
            tick_began = time.monotonic()
            elapsed = tick_began - wall0
            if duration is not None and elapsed >= duration:
                break
            # at most two ticks of simulated time and TICK_MESSAGES messages per tick: when
            # publishing cannot keep up the simulation falls behind its clock instead of
            # snowballing into ever larger ticks
            sim_now = min(start + elapsed * speed, sim_prev + step)
            if not warned_future and sim_now > time.time() + 60:
                warned_future = True
                log.warning("simulated time is now ahead of the real clock; the ingestor rejects "
                            "readings more than CITYDASH_MAX_FUTURE_S in the future (start "
                            "earlier with --start, or lower --speed)")
            for n, (topic, payload) in enumerate(messages(world, encoder, sim_prev, sim_now,
                                                          shard)):
                if max_rate:
                    ahead = conn.sent - max_rate * (time.monotonic() - wall0)
                    if ahead > 0:
                        time.sleep(ahead / max_rate)
                conn.send(topic, payload)
                if n % 256 == 255 and (stop.is_set() or (
                        duration is not None and time.monotonic() - wall0 >= duration)):
                    break
            sim_prev = sim_now
            stats.sim_end = sim_now
            now = time.monotonic()
            if now >= next_report:
                next_report = now + REPORT_EVERY_S
                log.info("simulator %s: %d messages published, %.0f msgs/s", client_id, conn.sent,
                         conn.acked / max(now - wall0, 1e-9))
            rest = TICK_S - (now - tick_began)
            if rest > 0 and sim_now >= start + (now - wall0) * speed - step:
                stop.wait(rest)
    finally:
        conn.drain(30.0)
        stats.seconds = time.monotonic() - wall0
        stats.published, stats.acked = conn.sent, conn.acked
        conn.close()
    return stats


def _child(world, encoder, url, client_id, kwargs, shard, stop, results) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    flag = threading.Event()

    def watch():  # polls: a process that dies inside Event.wait() would hang the parent's set()
        while not stop.is_set() and not flag.is_set():
            time.sleep(0.1)
        flag.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        results.put(("ok", run_live(world, encoder, url, client_id, shard=shard, stop=flag,
                                    **kwargs)))
    except BaseException as exc:  # reported by the parent
        results.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        flag.set()


def run_connections(world, encoder: Encoder, url: str, client_id: str, connections: int,
                    stop: threading.Event, **kwargs) -> LiveStats:
    """:func:`run_live` on ``connections`` connections (processes; 1: in this process)."""
    if connections <= 1:
        return run_live(world, encoder, url, client_id, stop=stop, **kwargs)
    ctx = mp.get_context("fork")  # the world is built once and shared copy-on-write
    mp_stop = ctx.Event()
    results = ctx.Queue()
    if kwargs.get("max_rate"):
        kwargs = {**kwargs, "max_rate": kwargs["max_rate"] / connections}
    procs = [ctx.Process(target=_child, name=f"simulate-{k}",
                         args=(world, encoder, url, f"{client_id}-{k}", kwargs, (k, connections),
                               mp_stop, results)) for k in range(connections)]
    for p in procs:
        p.start()
    total = LiveStats(sim_start=kwargs.get("start", 0.0))
    errors = []
    try:
        pending = len(procs)
        while pending:
            if stop.is_set():
                mp_stop.set()
            try:
                status, value = results.get(timeout=0.2)
            except Exception:  # queue.Empty
                if not any(p.is_alive() for p in procs) and results.empty():
                    break
                continue
            pending -= 1
            if status == "ok":
                total.add(value)
            else:
                errors.append(value)
                mp_stop.set()
    finally:
        mp_stop.set()
        for p in procs:
            p.join(60)
    if errors:
        raise PublishError("; ".join(sorted(set(errors))))
    return total
