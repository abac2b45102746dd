"""Topic routing: which decoder handles a message, then decode and validate.

The routing table is a setting (``CITYDASH_MQTT_ROUTES``) of
``topic-filter=decoder`` pairs separated by ';', e.g.
``senml/#=senml;v3/+/devices/+/up=ttn``.  Filters are MQTT topic filters
('+' one level, '#' the rest); the first filter that matches a topic wins.
The filters are also what the ingestor subscribes to (:meth:`Router.filters`).
"""
from __future__ import annotations

from dataclasses import dataclass

from paho.mqtt.client import topic_matches_sub

from ingest.decoders import DECODERS
from ingest.decoders.base import DecodeContext, Decoded, DecodeError, Decoder, Message
from ingest.decoders.common import quote
from ingest.validate import ValidationContext, validate

DEFAULT_ROUTES = (
    "city/mobility/#=native;"
    "city/transport/#=native;"
    "city/infrastructure/#=native;"
    "senml/#=senml;"
    "ngsi/#=ngsi;"
    "v3/+/devices/+/up=ttn;"
    "/hfp/v2/journey/ongoing/vp/#=hfp"
)

# Topics whose route is remembered; HFP topics carry the vehicle's geohash and
# next stop and so are many, hence a bound (the cache is simply emptied when full).
ROUTE_CACHE_SIZE = 100_000


@dataclass(frozen=True, slots=True)
class Route:
    filter: str
    decoder_name: str
    decoder: Decoder


def check_filter(topic_filter: str) -> None:
    """Raise ValueError unless ``topic_filter`` is a valid MQTT topic filter."""
    if not topic_filter:
        raise ValueError("empty topic filter")
    if "\x00" in topic_filter:
        raise ValueError(f"topic filter {topic_filter!r} contains a NUL character")
    if len(topic_filter.encode("utf-8", "surrogatepass")) > 65535:
        raise ValueError("topic filter is longer than 65535 bytes")
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"topic filter {topic_filter!r}: '#' must be a whole level "
                             "and the last one")
        if "+" in level and level != "+":
            raise ValueError(f"topic filter {topic_filter!r}: '+' must be a whole level")


def parse_routes(spec: str) -> list[Route]:
    """Parse ``filter=decoder;filter=decoder;...`` (blank entries are ignored).

    Raises ValueError naming the bad entry: missing '=', invalid filter,
    unknown decoder or a filter listed twice."""
    routes: list[Route] = []
    seen: set[str] = set()
    for entry in spec.split(";"):
        entry = entry.strip()
        if not entry:
            continue
        topic_filter, sep, name = entry.rpartition("=")
        topic_filter, name = topic_filter.strip(), name.strip()
        if not sep or not topic_filter:
            raise ValueError(f"route {entry!r} is not 'topic-filter=decoder'")
        try:
            check_filter(topic_filter)
        except ValueError as exc:
            raise ValueError(f"route {entry!r}: {exc}") from None
        decoder = DECODERS.get(name)
        if decoder is None:
            raise ValueError(f"route {entry!r}: unknown decoder {name!r}; known decoders: "
                             f"{', '.join(sorted(DECODERS))}")
        if topic_filter in seen:
            raise ValueError(f"route {entry!r}: topic filter {topic_filter!r} is listed twice")
        seen.add(topic_filter)
        routes.append(Route(topic_filter, name, decoder))
    if not routes:
        raise ValueError("the routing table is empty")
    return routes


class Router:
    """Routes, decodes and validates messages.

    Topic -> route lookups are cached (routes never change after construction),
    so the common case costs one dict lookup instead of a filter match per
    route.  Safe to share between threads: a race only fills the cache twice."""

    def __init__(self, routes: list[Route] | str = DEFAULT_ROUTES):
        self.routes: list[Route] = parse_routes(routes) if isinstance(routes, str) else list(routes)
        self._cache: dict[str, Route | None] = {}

    def filters(self) -> list[str]:
        """The topic filters to subscribe to, in table order."""
        return [r.filter for r in self.routes]

    def _lookup(self, topic: str) -> Route | None:
        try:
            return self._cache[topic]
        except KeyError:
            pass
        found = None
        for route in self.routes:
            if topic_matches_sub(route.filter, topic):
                found = route
                break
        if len(self._cache) >= ROUTE_CACHE_SIZE:
            self._cache.clear()
        self._cache[topic] = found
        return found

    def route(self, topic: str) -> tuple[str, Decoder] | None:
        """(decoder name, decoder) of the first matching route, or None."""
        found = self._lookup(topic)
        return None if found is None else (found.decoder_name, found.decoder)

    def decode(self, message: Message, ctx: DecodeContext, vctx: ValidationContext) -> Decoded:
        """Size check, route, decode, validate.  Raises only DecodeError, whose
        ``decoder`` attribute names the decoder when one was chosen."""
        size = len(message.payload)
        found = self._lookup(message.topic)
        name = None if found is None else found.decoder_name
        if size > ctx.max_payload_bytes:
            raise DecodeError(f"payload is {size} bytes, over the cap of "
                              f"{ctx.max_payload_bytes}", name)
        if found is None:
            raise DecodeError(f"no decoder for topic {quote(message.topic)}")
        try:
            return validate(found.decoder(message, ctx), vctx, now=message.received_at)
        except DecodeError as exc:
            exc.decoder = name
            raise
