"""The translation layer: complete catalogues, negotiation, locale-aware formats."""
from __future__ import annotations

from datetime import datetime, timezone

import flask
import pytest

from dashboard import i18n


def test_every_locale_has_every_key():
    keys = {loc: set(i18n.catalogue(loc)) for loc in i18n.LOCALES}
    reference = keys["en"]
    for loc, found in keys.items():
        assert found == reference, f"{loc}: missing {reference - found}, extra {found - reference}"


def test_placeholders_match_across_locales():
    import string

    def fields(text):
        return {f for _, f, _, _ in string.Formatter().parse(text) if f}

    for key, text in i18n.catalogue("en").items():
        for loc in i18n.LOCALES:
            assert fields(i18n.catalogue(loc)[key]) == fields(text), (loc, key)


@pytest.mark.parametrize("requested,accept,city,expected", [
    ("ja", "pt-BR,pt;q=0.9", "en", "ja"),
    (None, "pt-BR,pt;q=0.9,en;q=0.8", "ja", "pt-BR"),
    (None, "pt-PT", "ja", "pt-BR"),          # same language, other region
    (None, "de-DE,ja;q=0.5", "en", "ja"),    # first supported language by weight
    (None, None, "ja", "ja"),
    ("xx", "zz", None, "en"),
])
def test_negotiation(requested, accept, city, expected):
    assert i18n.negotiate(requested, accept, city) == expected


@pytest.mark.parametrize("requested,header,city,expected", [
    ("ja", "pt-BR,pt;q=0.9", "en", "ja"),
    ("PT_br", None, "ja", "pt-BR"),
    ("xx", "ja;q=0.2,pt-BR;q=0.9", "en", "pt-BR"),   # best_match by weight
    (None, "pt-PT,de;q=0.8", "ja", "pt-BR"),          # primary tag after best_match
    (None, "ja;q=0,en;q=0.1", "pt-BR", "en"),         # q=0 refuses
    (None, None, "ja", "ja"),
    (None, "de", None, "en"),
    (None, "*", "ja", "ja"),                          # any language: the city's
    ("../../x", "x" * 5000, "**", "en"),
])
def test_negotiation_reads_the_request(requested, header, city, expected):
    app = flask.Flask(__name__)
    headers = {"Accept-Language": header} if header is not None else {}
    with app.test_request_context("/", headers=headers):
        assert i18n.negotiate(requested, city_locale=city) == expected
    assert i18n.negotiate(requested, city_locale=city) in i18n.LOCALES  # outside a request too


HOSTILE = ["../../x", "../en", "**", "*", "*/en", "en/../../../etc/passwd", "en\x00", "\x00",
           "x" * 100_000, "", None, 42, ["en"], {"locale": "ja"}, "en.yaml", "locales/en", " ",
           "ja;q=1", "pt-BR" + "\x00" * 3]


@pytest.mark.parametrize("value", HOSTILE)
def test_browser_locale_values_fall_back_safely(value):
    english = i18n.catalogue("en")
    assert i18n.allowed(value) in i18n.LOCALES
    assert i18n.catalogue(value) is english  # never a path or glob, never a new cache entry
    assert i18n.t("status.title", value) == english["status.title"]
    assert i18n.number(1234.5, value) == "1,234.5"


def test_catalogue_cache_is_bounded_by_the_allow_list():
    for value in HOSTILE + [f"zz-{i}" for i in range(500)] + list(i18n.LOCALES):
        i18n.catalogue(value)
    info = i18n._catalogue.cache_info()
    assert info.maxsize == len(i18n.LOCALES) and info.currsize <= len(i18n.LOCALES)
    with pytest.raises(ValueError):
        i18n._catalogue("../../x")  # the loader itself refuses anything not allow-listed


def test_allowed_keeps_supported_locales():
    assert [i18n.allowed(x) for x in ("pt-BR", "pt-br", "pt", "en-US", "ja", "ja-JP")] == \
        ["pt-BR", "pt-BR", "pt-BR", "en", "ja", "ja"]


def test_numbers_per_locale():
    assert i18n.number(1234567.891, "en", 1) == "1,234,567.9"
    assert i18n.number(1234567.891, "pt-BR", 1) == "1.234.567,9"
    assert i18n.number(1234567.891, "ja", 0) == "1,234,568"
    assert i18n.percent(0.256, "pt-BR") == "26%"
    assert i18n.number(None, "en") == "–"


def test_times_in_city_timezone():
    utc = datetime(2026, 11, 25, 15, 4, 5, tzinfo=timezone.utc)
    assert i18n.time_text(utc, "pt-BR", "America/Cuiaba") == "11:04:05"
    assert i18n.time_text(utc, "ja", "Asia/Tokyo") == "00:04:05"
    assert "2026" in i18n.datetime_text(utc, "ja", "Asia/Tokyo")


def test_missing_key_falls_back_to_english_then_key():
    assert i18n.t("status.title", "ja") == "システム状態"
    assert i18n.t("no.such.key", "ja") == "no.such.key"
    assert i18n.t("status.subtitle", "en", seconds=10).endswith("10 s.")
