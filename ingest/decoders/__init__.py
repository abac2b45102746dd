"""Payload decoders, one module per format; :data:`DECODERS` names them.

The names are those used in the routing table (``CITYDASH_MQTT_ROUTES``, see
:mod:`ingest.router`).  Each decoder is ``decode(message, ctx) -> Decoded``
and raises only :class:`DecodeError`.
"""
from __future__ import annotations

from . import hfp, native, ngsi, senml, ttn
from .base import (
    DOMAINS,
    FLAG_RECEIVE_TIME,
    DecodeContext,
    Decoded,
    DecodeError,
    Decoder,
    Message,
    Reading,
    SensorInfo,
    VehiclePosition,
)

DECODERS: dict[str, Decoder] = {
    "native": native.decode,
    "senml": senml.decode,
    "ngsi": ngsi.decode,
    "ttn": ttn.decode,
    "hfp": hfp.decode,
}

__all__ = [
    "DECODERS", "DOMAINS", "FLAG_RECEIVE_TIME", "DecodeContext", "Decoded", "DecodeError",
    "Decoder", "Message", "Reading", "SensorInfo", "VehiclePosition",
]
