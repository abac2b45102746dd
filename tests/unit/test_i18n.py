"""The translation layer: complete catalogues, negotiation, locale-aware formats."""
from __future__ import annotations

from datetime import datetime, timezone

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
