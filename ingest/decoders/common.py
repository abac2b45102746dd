"""Small helpers shared by the decoders: JSON loading, times and numbers.

Every helper raises :class:`DecodeError` (never anything else) with a reason
that names the offending field, so decoders can call them without wrapping.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

from .base import DOMAINS, DecodeError

UTC = timezone.utc

# Longest text quoted back in a reason, so one absurd value cannot blow up a
# dead-letter row or a log line.
_QUOTE_MAX = 60


def quote(value: object) -> str:
    """``repr``-like short rendering of a payload value for a reason."""
    if isinstance(value, str):
        # repr escapes NUL, control characters and lone surrogates, so the
        # reason itself is always storable text.
        return repr(value) if len(value) <= _QUOTE_MAX else repr(value[:_QUOTE_MAX]) + "..."
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        text = repr(value)
        return text if len(text) <= _QUOTE_MAX else text[:_QUOTE_MAX] + "..."
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def load_json(payload: bytes) -> object:
    """Parse a JSON payload (UTF-8, -16 or -32 as RFC 8259 allows)."""
    try:
        return json.loads(payload)
    except json.JSONDecodeError as exc:
        raise DecodeError(
            f"payload is not valid JSON: {exc.msg} at line {exc.lineno} col {exc.colno}"
        ) from None
    except UnicodeDecodeError as exc:
        raise DecodeError(
            f"payload is not valid UTF-8 text: {exc.reason} at byte {exc.start}"
        ) from None
    except RecursionError:
        raise DecodeError("payload is not usable JSON: nested too deeply") from None
    except (ValueError, TypeError) as exc:  # e.g. an integer of more than 4300 digits
        raise DecodeError(f"payload is not usable JSON: {exc}") from None


def check_domain(domain: str, topic: str) -> str:
    if domain not in DOMAINS:
        raise DecodeError(
            f"unknown domain {quote(domain)} in topic {quote(topic)}; "
            f"expected one of {', '.join(DOMAINS)}"
        )
    return domain


# --- numbers ---------------------------------------------------------------

def to_float(value: object, what: str, *, allow_bool: bool = True, allow_str: bool = True) -> float:
    """A payload value as a float, or DecodeError naming ``what``.

    Booleans become 1.0/0.0 when ``allow_bool``; numeric strings ("12.5") are
    accepted when ``allow_str``.  Non-finite results are returned as they are
    (validation rejects them with a reason naming the field).
    """
    kind = type(value)
    if kind is float:
        return value  # type: ignore[return-value]
    if kind is int:
        try:
            return float(value)  # type: ignore[arg-type]
        except OverflowError:
            raise DecodeError(f"{what} value is too large to be a number") from None
    if kind is bool:
        if allow_bool:
            return 1.0 if value else 0.0
        raise DecodeError(f"{what} value {quote(value)} is not a number")
    if kind is str and allow_str:
        text = value.strip()  # type: ignore[union-attr]
        if text and "_" not in text:
            try:
                return float(text)
            except ValueError:
                pass
    raise DecodeError(f"{what} value {quote(value)} is not a number")


def optional_float(value: object, what: str) -> float | None:
    """Like :func:`to_float` but None and "" mean "not given"."""
    if value is None or value == "":
        return None
    return to_float(value, what, allow_bool=False)


# --- times -----------------------------------------------------------------

_FRACTION = re.compile(r"([T ]\d{2}:\d{2}:\d{2})[.,](\d+)")


def parse_iso(text: object, what: str, *, naive_utc: bool = False) -> datetime:
    """An ISO 8601 / RFC 3339 date-time as an aware UTC datetime.

    Accepts 'Z' and numeric offsets and any number of fractional digits
    (nanosecond stamps are truncated to microseconds).  A time without an
    offset is ambiguous: DecodeError unless ``naive_utc``, which reads it as
    UTC (the NGSI convention).
    """
    if type(text) is not str:
        raise DecodeError(f"{what} {quote(text)} is not an ISO 8601 date-time string")
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        dt = _parse_iso_slow(text, what)
    if dt.tzinfo is None:
        if not naive_utc:
            raise DecodeError(
                f"{what} {quote(text)} has no UTC offset; add 'Z' or e.g. '+02:00' "
                "(a local time is ambiguous)"
            )
        return dt.replace(tzinfo=UTC)
    if dt.tzinfo is UTC:
        return dt
    try:
        return dt.astimezone(UTC)
    except (OverflowError, ValueError):
        raise DecodeError(f"{what} {quote(text)} is out of range") from None


def _parse_iso_slow(text: str, what: str) -> datetime:
    """Fallback for forms older Pythons' fromisoformat rejects (Z, 7-9 digits)."""
    fixed = text.strip()
    if fixed[-1:] in ("Z", "z"):
        fixed = fixed[:-1] + "+00:00"
    fixed = _FRACTION.sub(lambda m: m.group(1) + "." + (m.group(2) + "000000")[:6], fixed, count=1)
    try:
        return datetime.fromisoformat(fixed)
    except ValueError:
        raise DecodeError(f"{what} {quote(text)} is not an ISO 8601 date-time") from None


def from_epoch(seconds: object, what: str) -> datetime:
    """Unix epoch seconds (int or float) as an aware UTC datetime."""
    if type(seconds) is bool or not isinstance(seconds, (int, float)):
        raise DecodeError(f"{what} {quote(seconds)} is not epoch seconds")
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        # 1e11 s is year 5138: a value this size that is still below the
        # datetime limit by a factor of 1000 is most likely milliseconds.
        hint = " (milliseconds? epoch seconds expected)" if 1e11 < abs(seconds) < 1e15 else ""
        raise DecodeError(f"{what} {quote(seconds)} is out of range{hint}") from None


def shift(base: datetime, seconds: float, what: str) -> datetime:
    """``base`` moved by ``seconds``, as DecodeError when out of range."""
    try:
        return base + timedelta(seconds=seconds)
    except (OverflowError, ValueError):
        raise DecodeError(f"{what} {quote(seconds)} is out of range") from None


def optional_text(value: object, what: str) -> str | None:
    """An optional id (route, trip, ...): a string, or an integer written as a number."""
    if value is None or value == "":
        return None
    if type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    raise DecodeError(f"{what} {quote(value)} is not a string")
