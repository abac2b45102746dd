"""The one translation layer: every user-facing word goes through here.

Catalogues live in ``dashboard/locales/<locale>.yaml`` (pt-BR, en, ja) and in
``dashboard/locales/<area>/<locale>.yaml`` (one folder per page or feature, so
each owns its words); each is a flat mapping from message id to text with
``{name}`` placeholders.  A message id defined twice is an error.  Numbers
and dates are formatted per locale with Babel; times are shown in the city's
timezone and stored in UTC.

Which locale a request gets is decided in one place, :func:`negotiate`.  A
locale that comes from the browser (``?lang=``, the ``status-locale``,
``explore-locale``, ``wall-config.locale`` stores, a header) is only ever
compared with :data:`LOCALES`; it never reaches a file path, a glob or a cache
key (:func:`allowed`).
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import flask
import yaml
from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime, format_time
from babel.numbers import format_decimal, format_percent
from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

LOCALES = ("pt-BR", "en", "ja")  # the allow-list: a catalogue for each in every locales/ folder
DEFAULT_LOCALE = "en"
_DIR = Path(__file__).with_name("locales")
_LONGEST_TAG = 35  # BCP 47 tags worth matching are short; anything longer is not a locale
_TAG_RE = re.compile(r"[A-Za-z]{2,8}(?:[-_][A-Za-z0-9]{1,8})*")  # a language tag, nothing else


def _match(candidate: object) -> str | None:
    """The allow-listed locale ``candidate`` names (exactly, or by its language), else None."""
    if not isinstance(candidate, str) or len(candidate) > _LONGEST_TAG:
        return None
    c = candidate.strip()
    if not _TAG_RE.fullmatch(c):
        return None
    c = c.replace("_", "-").lower()
    for locale in LOCALES:
        if c == locale.lower():
            return locale
    language = c.split("-")[0]
    for locale in LOCALES:
        if language == locale.split("-")[0].lower():
            return locale
    return None


def allowed(value: object) -> str:
    """``value`` if it names a supported locale (see :func:`_match`), else the default.

    For locale values held in the browser (Dash stores, query strings): whatever
    they hold, the answer is one of :data:`LOCALES`.
    """
    return _match(value) or DEFAULT_LOCALE


def catalogue(locale: object) -> dict[str, str]:
    """The merged messages of ``locale``; anything not allow-listed gets the default's."""
    return _catalogue(allowed(locale))


@lru_cache(maxsize=len(LOCALES))  # keyed by allow-listed locales only
def _catalogue(locale: str) -> dict[str, str]:
    if locale not in LOCALES:  # never a path or glob from outside
        raise ValueError(f"unsupported locale {locale!r}")
    merged: dict[str, str] = {}
    for path in [_DIR / f"{locale}.yaml", *sorted(_DIR.glob(f"*/{locale}.yaml"))]:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for key, text in data.items():
            if str(key) in merged:
                raise ValueError(f"{path}: message id {key!r} is defined twice")
            merged[str(key)] = str(text)
    return merged


def negotiate(requested: object = None, accept_language: str | None = None,
              city_locale: str | None = None) -> str:
    """The locale to answer in, the one negotiation of the dashboard.

    1. ``requested`` (``?lang=``, a page argument) when it names a supported locale;
    2. the browser's languages: ``accept_language`` when given (a header value),
       else the current request's ``Accept-Language`` (werkzeug's ``best_match``,
       then the first language by weight whose primary tag is supported, so
       ``pt-PT`` gets ``pt-BR``);
    3. ``city_locale``, the city pack's locale;
    4. :data:`DEFAULT_LOCALE`.
    """
    return (_match(requested) or _from_accept(accept_language) or _match(city_locale)
            or DEFAULT_LOCALE)


def _from_accept(header: str | None) -> str | None:
    if header is not None:
        accept = parse_accept_header(header[:1000], LanguageAccept)
    elif flask.has_request_context():
        accept = flask.request.accept_languages
    else:
        return None
    # "*" (any language) names none: the city's locale is a better guess than LOCALES[0]
    accept = LanguageAccept([(language, q) for language, q in accept if language != "*"])
    best = accept.best_match(LOCALES)
    if best:
        return best
    for language, quality in accept:  # by weight, highest first
        if quality > 0 and (found := _match(language)):
            return found
    return None


def t(key: str, locale: str, **values) -> str:
    """The text of ``key`` in ``locale`` (English when missing), placeholders filled."""
    text = catalogue(locale).get(key) or catalogue(DEFAULT_LOCALE).get(key) or key
    return text.format(**values) if values else text


@lru_cache(maxsize=len(LOCALES))
def _babel_locale(locale: str) -> Locale:
    try:
        return Locale.parse(locale.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return Locale.parse(DEFAULT_LOCALE)


def _babel(locale: object) -> Locale:
    return _babel_locale(allowed(locale))


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
