"""Types shared by every decoder.

A decoder is a pure function ``decode(message: Message, ctx: DecodeContext) ->
Decoded``.  It never touches the network or the database.  It raises
:class:`DecodeError` with a reason a person can act on when the payload cannot
be used; the ingestor then writes the message to ``dead_letters`` with that
reason.  For any input bytes a decoder raises nothing but :class:`DecodeError`.

Every ``datetime`` a decoder returns is timezone-aware UTC.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

DOMAINS = ("mobility", "transport", "infrastructure")

# Reading flags (bit field stored in readings.flags)
FLAG_RECEIVE_TIME = 1  # the payload carried no time; the receive time was used


class DecodeError(ValueError):
    """A message that cannot be stored; ``reason`` is shown to operators.

    ``decoder`` names the decoder that rejected the message when known (the
    router fills it in), for the ``dead_letters.decoder`` column.
    """

    def __init__(self, reason: str, decoder: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.decoder = decoder


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    received_at: datetime  # timezone-aware, UTC


@dataclass(frozen=True, slots=True)
class DecodeContext:
    """What a decoder may know beyond the message itself.

    ``bbox`` is the city's extent as (min_lon, min_lat, max_lon, max_lat) in
    EPSG:4326, or None when unknown; the HFP decoder uses it to detect swapped
    coordinates.  ``max_payload_bytes`` is enforced by the router before any
    decoder runs (``CITYDASH_MAX_PAYLOAD_BYTES``).
    """

    bbox: tuple[float, float, float, float] | None = None
    max_payload_bytes: int = 65536


@dataclass(slots=True)
class SensorInfo:
    """What a message tells about the sensor that sent it (registry upsert)."""

    external_id: str
    kind: str | None = None
    domain: str | None = None
    name: str | None = None
    lon: float | None = None
    lat: float | None = None
    attributes: dict = field(default_factory=dict)


@dataclass(slots=True)
class Reading:
    sensor: str  # external sensor id
    metric: str
    time: datetime  # timezone-aware
    value: float
    unit: str | None = None
    flags: int = 0


@dataclass(slots=True)
class VehiclePosition:
    time: datetime
    vehicle: str
    lon: float
    lat: float
    route: str | None = None
    trip: str | None = None
    speed_kmh: float | None = None
    bearing: float | None = None
    delay_s: float | None = None
    occupancy_pct: float | None = None


@dataclass(slots=True)
class Decoded:
    readings: list[Reading] = field(default_factory=list)
    vehicles: list[VehiclePosition] = field(default_factory=list)
    sensors: list[SensorInfo] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.readings or self.vehicles)


Decoder = Callable[[Message, DecodeContext], Decoded]
