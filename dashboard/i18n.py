"""The one translation layer: every user-facing word goes through here.

Catalogues live in ``dashboard/locales/<locale>.yaml`` (pt-BR, en, ja) and in
``dashboard/locales/<area>/<locale>.yaml`` (one folder per page or feature, so
each owns its words); each is a flat mapping from message id to text with
``{name}`` placeholders.  A message id defined twice is an error.  Numbers
and dates are formatted per locale with Babel; times are shown in the city's
timezone and stored in UTC.
"""
from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import flask
import yaml
from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime, format_time
from babel.numbers import format_decimal, format_percent

LOCALES = ("pt-BR", "en", "ja")
DEFAULT_LOCALE = "en"
_DIR = Path(__file__).with_name("locales")


@lru_cache(maxsize=None)
def catalogue(locale: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for path in [_DIR / f"{locale}.yaml", *sorted(_DIR.glob(f"*/{locale}.yaml"))]:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for key, text in data.items():
            if str(key) in merged:
                raise ValueError(f"{path}: message id {key!r} is defined twice")
            merged[str(key)] = str(text)
    return merged


def negotiate(requested: str | None, accept_language: str | None = None,
              city_locale: str | None = None) -> str:
    """``?lang=`` first, else the browser's languages, else the city's locale, else English."""
    for candidate in [requested, *_accept(accept_language), city_locale]:
        found = _match(candidate)
        if found:
            return found
    return DEFAULT_LOCALE


def accept_language() -> str | None:
    """The current request's ``Accept-Language`` header (None outside a request)."""
    try:
        return flask.request.headers.get("Accept-Language")
    except RuntimeError:  # outside a request
        return None


def _accept(header: str | None) -> list[str]:
    if not header:
        return []
    weighted = []
    for part in header.split(","):
        lang, _, q = part.strip().partition(";q=")
        try:
            weighted.append((float(q) if q else 1.0, lang.strip()))
        except ValueError:
            continue
    return [lang for _, lang in sorted(weighted, key=lambda x: -x[0])]


def _match(candidate: str | None) -> str | None:
    if not candidate:
        return None
    c = candidate.replace("_", "-").lower()
    for locale in LOCALES:
        if c == locale.lower():
            return locale
    for locale in LOCALES:
        if c.split("-")[0] == locale.split("-")[0].lower():
            return locale
    return None


def t(key: str, locale: str, **values) -> str:
    """The text of ``key`` in ``locale`` (English when missing), placeholders filled."""
    text = catalogue(locale).get(key) or catalogue(DEFAULT_LOCALE).get(key) or key
    return text.format(**values) if values else text


def _babel(locale: str) -> Locale:
    try:
        return Locale.parse(locale.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return Locale.parse(DEFAULT_LOCALE)


def number(value: float | None, locale: str, digits: int = 1) -> str:
    if value is None:
        return "–"
    pattern = "#,##0" + ("." + "0" * digits if digits > 0 else "")
    return format_decimal(value, format=pattern, locale=_babel(locale))


def percent(value: float | None, locale: str, digits: int = 0) -> str:
    """``value`` is a fraction (0.25 → 25 %)."""
    if value is None:
        return "–"
    pattern = "#,##0" + ("." + "0" * digits if digits > 0 else "") + "%"
    return format_percent(value, format=pattern, locale=_babel(locale))


def datetime_text(value: datetime | None, locale: str, tz: str, fmt: str = "medium") -> str:
    if value is None:
        return "–"
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return format_datetime(value, format=fmt, tzinfo=ZoneInfo(tz), locale=_babel(locale))


def time_text(value: datetime | None, locale: str, tz: str) -> str:
    if value is None:
        return "–"
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return format_time(value, format="HH:mm:ss", tzinfo=ZoneInfo(tz), locale=_babel(locale))
