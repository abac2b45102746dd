"""The ingestor's paho-mqtt client: stock paho, or a block reader where it is known to work.

paho-mqtt 2.x reads its socket one header byte at a time (two or three
``recv`` calls per message) and writes each PUBACK with its own ``send``; at
tens of thousands of messages per second those system calls are most of the
MQTT process's CPU.  ``BufferedClient`` keeps paho's protocol handling and
changes only the two ends:

* ``_sock_recv`` serves paho's small reads from a buffer filled by one large
  ``recv``; ``loop_read`` then handles every complete packet already buffered
  (the socket will not signal readiness for bytes we already hold);
* ``ack_many(mids)`` queues the PUBACKs of a committed batch as one write.
  A PUBACK is four bytes (MQTT 5 §3.4: type 0x40, remaining length 2, packet
  id; reason code omitted means Success), so the concatenation is exactly the
  stream paho would have written one packet at a time.

Both override paho internals, so :func:`make_client` uses ``BufferedClient``
only with a paho version it was checked against (:data:`CHECKED_PAHO_VERSIONS`,
the one pinned in requirements.txt) and whose internals are all there; with
any other version, or ``CITYDASH_MQTT_BLOCK_READER=false``, it falls back to
stock ``mqtt.Client`` (acks through the public ``Client.ack``), logging why.
Kept because it measured faster than stock paho on the 2-core bench machine
(bench/ingest.py --only-citydash, 200,000 messages; figures in docs/ingest.md).
``tests/unit/test_mqtt_client.py`` and the ingest integration tests exercise
both against the real broker.
"""
from __future__ import annotations

import logging
import struct

import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.client import PUBACK, MQTTErrorCode

log = logging.getLogger(__name__)

READ_BLOCK = 256 * 1024
_PUBACK = struct.Struct("!BBH")
# paho-mqtt versions whose internals BufferedClient was read against and tested with
CHECKED_PAHO_VERSIONS = ("2.2.0",)
_INTERNALS = ("_sock_recv", "_sock_close", "_packet_read", "_loop_rc_handle", "_packet_queue")


def puback_packets(mids) -> bytes:
    """The PUBACK packets for ``mids``, back to back."""
    pack = _PUBACK.pack
    return b"".join([pack(PUBACK, 2, mid) for mid in mids])


def block_reader_unavailable(version: str | None = None, client_class: type | None = None) -> str | None:
    """Why ``BufferedClient`` cannot be used with paho ``version`` and its ``client_class``
    (default: the installed ones), or None if it can."""
    version = version or getattr(paho.mqtt, "__version__", "unknown")
    client_class = client_class or mqtt.Client
    if version not in CHECKED_PAHO_VERSIONS:
        return (f"paho-mqtt {version} is not a version the block reader was checked against "
                f"({', '.join(CHECKED_PAHO_VERSIONS)})")
    missing = [name for name in _INTERNALS if not hasattr(client_class, name)]
    if missing:
        return f"paho-mqtt {version} lacks {', '.join(missing)}"
    return None


def make_client(client_id: str, block_reader: bool = True, why_not: str | None = None) -> mqtt.Client:
    """An MQTT v5, manual-ack client: ``BufferedClient`` when asked for and usable, else stock.
    ``why_not``: the reason from :func:`block_reader_unavailable` (default: checked now)."""
    cls = mqtt.Client
    if block_reader:
        why_not = why_not or block_reader_unavailable()
        if why_not is None:
            cls = BufferedClient
        else:
            log.warning("%s; using stock paho (slower: several recv calls per message, one send "
                        "per PUBACK)", why_not)
    return cls(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
               manual_ack=True)


class BufferedClient(mqtt.Client):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0

    # -- reading -------------------------------------------------------------
    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(READ_BLOCK)  # raises BlockingIOError when nothing is there
            if not data:
                return data  # connection closed
            self._rbuf, self._rpos = data, 0
        start = self._rpos
        end = min(start + bufsize, len(self._rbuf))
        self._rpos = end
        return self._rbuf[start:end]

    def buffered(self) -> int:
        return len(self._rbuf) - self._rpos

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._sock is not None and self.buffered():
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        return rc

    def reconnect(self) -> MQTTErrorCode:
        self._rbuf, self._rpos = b"", 0
        return super().reconnect()

    def _sock_close(self) -> None:
        self._rbuf, self._rpos = b"", 0  # nothing read on a closed connection survives it
        super()._sock_close()

    # -- acknowledging ---------------------------------------------------------
    def ack_many(self, mids) -> None:
        """Acknowledge QoS 1 messages ``mids`` with one write."""
        blob = puback_packets(mids)
        if blob:
            self._packet_queue(PUBACK, blob, 0, 0)
