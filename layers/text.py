"""Small text helpers: slugs for ids and folder names."""
from __future__ import annotations

import re
import unicodedata

_NON_SLUG = re.compile(r"[^a-z0-9]+")
SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def slugify(text: str) -> str:
    """ASCII slug: ``"Boa Esperança"`` -> ``"boa-esperanca"``, ``"Döbling"`` -> ``"dobling"``.

    Accents are stripped (NFKD), ``ß`` becomes ``ss``, every other run of
    non-alphanumerics becomes one hyphen.  Returns ``""`` for text without any
    letter or digit.
    """
    text = str(text).replace("ß", "ss").replace("ẞ", "ss")
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _NON_SLUG.sub("-", ascii_text.lower()).strip("-")


def clean_id(value) -> str | None:
    """An id cell as text: ``7`` and ``7.0`` -> ``"7"``; blank/NaN -> ``None``."""
    if value is None:
        return None
    if isinstance(value, float):
        if value != value:  # NaN
            return None
        if value.is_integer():
            return str(int(value))
    text = str(value).strip()
    return text or None


def clean_text(value) -> str | None:
    """A text cell stripped; blank/NaN/None -> ``None``."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    return text or None
