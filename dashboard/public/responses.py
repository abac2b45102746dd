"""Serialised answers of the public app's two callbacks, composed from cached parts.

A public viewer's request costs a lookup, not a render: the view is cut into
parts that depend on fewer inputs (cards and "as of" on the locale; the map
and its table on the KPI and locale; the trend and its table on the KPI, area
and locale), each part is rendered and serialised once per snapshot with
Dash's own encoder (``dash._utils.to_json``), and an answer is those strings
joined into the JSON document Dash's ``/_dash-update-component`` sends
(``{"multi": true, "response": {id: {property: value}}}``).  A test checks that
the composed answer equals Dash's for the same request.

Inputs are validated as the Dash callback does (``layout.parse_choice``): an
unknown KPI or area gets the first KPI or the city and a translated message.
Requests with no snapshot yet or nothing published go through the Dash
callback, which renders the translated message.
"""
from __future__ import annotations

import json
from typing import Callable

from dash._utils import to_json

from dashboard import i18n
from dashboard.public import layout

VIEW_OUTPUTS = ("public-cards", "public-asof", "public-error", "public-map", "public-map-table",
                "public-trend", "public-trend-table")
FIGURES = ("public-map", "public-trend")
PAGE_OUTPUTS = (("public-page", "children"), ("public-locale", "data"))


def output_string(outputs) -> str:
    """Dash's name of a multi-output callback (``..a.p...b.q..``)."""
    return ".." + "...".join(f"{cid}.{prop}" for cid, prop in outputs) + ".."


VIEW_OUTPUT = output_string((i, "figure" if i in FIGURES else "children") for i in VIEW_OUTPUTS)
PAGE_OUTPUT = output_string(PAGE_OUTPUTS)


def input_values(body: dict) -> dict[str, object]:
    """``{component id: value}`` of a callback request's inputs and state (string ids only)."""
    out = {}
    for field in ("inputs", "state"):
        items = body.get(field)
        for item in items if isinstance(items, list) else ():
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                out[item["id"]] = item.get("value")
    return out


class Composer:
    """Builds and keeps the serialised parts of the view per snapshot."""

    def __init__(self, catalogue, map_options: Callable[[], dict], tz: Callable[[], str],
                 city_name: Callable[[], str]):
        self.catalogue, self.map_options, self.tz, self.city_name = catalogue, map_options, tz, city_name
        # The parts of the newest snapshot only; its keys are validated choices (a few locales x
        # published KPIs x areas), so the dict stays small and a new snapshot replaces it whole.
        self._parts: tuple[object, dict] = (None, {})

    def cached(self, snap, key: tuple) -> dict[str, str] | None:
        """The part kept for ``snap`` under ``key``, if it was built."""
        at, parts = self._parts
        return parts.get(key) if at == snap.computed_at else None

    def _part(self, snap, key: tuple, build: Callable[[], dict]) -> dict[str, str]:
        """``{output id: serialised value}`` of one part, built once per snapshot and key."""
        at, parts = self._parts
        if at != snap.computed_at:
            at, parts = self._parts = (snap.computed_at, {})
        found = parts.get(key)
        if found is None:  # two threads may both build it: the same bytes, no lock needed
            found = parts[key] = {k: to_json(v) for k, v in build().items()}
        return found

    def view(self, snap, locale: str, kpi_id: str, area: str, error: str = "") -> bytes:
        """The view callback's answer for a published KPI and a known area (``error``: the message
        shown when the inputs asked for something else)."""
        cat = self.catalogue
        parts = {
            **self._part(snap, ("common", locale), lambda: layout.view_common(snap, cat, locale, self.tz())),
            "public-error": json.dumps(error),
            **self._part(snap, ("map", locale, kpi_id),
                         lambda: layout.view_map(snap, cat, locale, kpi_id, **self.map_options())),
            **self._part(snap, ("trend", locale, kpi_id, area),
                         lambda: layout.view_trend(snap, cat, locale, kpi_id, area, self.tz())),
        }
        return _answer((i, "figure" if i in FIGURES else "children", parts[i]) for i in VIEW_OUTPUTS)

    def page(self, snap, locale: str) -> bytes:
        part = self._part(snap, ("page", locale), lambda: {
            "public-page": layout.page(snap, self.catalogue, locale, self.city_name())})
        return _answer([("public-page", "children", part["public-page"]),
                        ("public-locale", "data", json.dumps(locale))])

    def answer(self, body: dict, snap) -> bytes | None:
        """The answer to a public callback request, or None when Dash should handle it."""
        if snap is None or not isinstance(body, dict):
            return None
        values = input_values(body)
        if body.get("output") == PAGE_OUTPUT:
            return self.page(snap, layout.locale_from(values.get("public-url")))
        if body.get("output") != VIEW_OUTPUT:
            return None
        locale = values.get("public-locale")
        locale = locale if locale in i18n.LOCALES else i18n.DEFAULT_LOCALE
        choice = layout.parse_choice(snap, values.get("public-kpi"), values.get("public-area"), self.catalogue)
        if choice.kpi_id is None:  # nothing published: the Dash callback says so
            return None
        return self.view(snap, locale, choice.kpi_id, choice.area,
                         i18n.t(choice.error, locale) if choice.error else "")


def _answer(items) -> bytes:
    fields = ",".join(f'{json.dumps(cid)}:{{{json.dumps(prop)}:{value}}}' for cid, prop, value in items)
    return ('{"multi":true,"response":{' + fields + "}}").encode()
