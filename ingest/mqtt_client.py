"""A paho-mqtt client that reads in large blocks and acknowledges in batches.

paho-mqtt 2.x reads its socket one header byte at a time (two or three
``recv`` calls per message) and writes each PUBACK with its own ``send``; at
tens of thousands of messages per second those system calls are most of the
ingestor's CPU.  ``BufferedClient`` keeps paho's protocol handling and changes
only the two ends:

* ``_sock_recv`` serves paho's small reads from a buffer filled by one large
  ``recv``; ``loop_read`` then handles every complete packet already buffered
  (the socket will not signal readiness for bytes we already hold);
* ``ack_many(mids)`` queues the PUBACKs of a committed batch as one write.
  A PUBACK is four bytes (MQTT 5 §3.4: type 0x40, remaining length 2, packet
  id; reason code omitted means Success), so the concatenation is exactly the
  stream paho would have written one packet at a time.

Both rely on paho internals of the pinned version (2.2.0, see
requirements.txt); ``tests/unit/test_mqtt_client.py`` and every ingest
integration test exercise them against the real broker.
"""
from __future__ import annotations

import struct

import paho.mqtt.client as mqtt
from paho.mqtt.client import PUBACK, MQTTErrorCode

READ_BLOCK = 256 * 1024
_PUBACK = struct.Struct("!BBH")


def puback_packets(mids) -> bytes:
    """The PUBACK packets for ``mids``, back to back."""
    pack = _PUBACK.pack
    return b"".join([pack(PUBACK, 2, mid) for mid in mids])


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
