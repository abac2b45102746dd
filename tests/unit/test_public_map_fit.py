"""``dashboard.public.figures.fit_view``: the whole city in the public map's panel."""
from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timezone
from pathlib import Path

import pytest

from dashboard.public.figures import SUPPRESSED, TILE, _mercator_y, fit_view, map_figure
from dashboard.public.queries import Point, PublicKpi, Snapshot
from kpis.catalogue import load_catalogue


def _pixels(bbox, zoom):
    """Width and height in pixels of ``bbox`` at ``zoom`` (Web Mercator, 512-pixel tiles)."""
    west, south, east, north = bbox
    world = TILE * 2 ** zoom
    return (east - west) / 360 * world, (_mercator_y(north) - _mercator_y(south)) / (2 * math.pi) * world


@pytest.mark.parametrize("bbox", [(-56.17, -15.66, -56.002, -15.513),  # the demo city: wider than tall
                                  (135.35, 34.55, 135.65, 34.8),        # Osaka-sized, northern hemisphere
                                  (-60.0, -18.0, -50.0, -7.0)])         # a state: taller than wide
def test_city_fits_and_fills_the_panel(bbox):
    centre, zoom = fit_view(bbox, 460, 420)
    w, h = _pixels(bbox, zoom)
    assert w <= 460 + 1e-6 and h <= 420 + 1e-6
    w2, h2 = _pixels(bbox, zoom + 0.05)  # a little closer and one side no longer fits
    assert w2 > 460 or h2 > 420
    west, south, east, north = bbox
    assert centre[0] == pytest.approx((west + east) / 2)
    # the centre is the middle in Mercator, so the city is not shifted north or south
    assert _mercator_y(centre[1]) == pytest.approx((_mercator_y(north) + _mercator_y(south)) / 2)


def test_demo_city_zoom():
    # hand check: 0.168 degrees of longitude in 460 px -> 2**z = 460 * 360 / (512 * 0.168) = 1925
    _, zoom = fit_view((-56.17, -15.66, -56.002, -15.513), 460, 420)
    assert zoom == pytest.approx(math.log2(460 * 360 / (512 * 0.168)), abs=0.011)


def _grey(colour: str) -> bool:
    r, g, b = (int(colour.lstrip("#")[i:i + 2], 16) for i in (0, 2, 4))
    return max(r, g, b) - min(r, g, b) < 24


@pytest.mark.parametrize("better", ["higher", "lower"])
def test_map_values_never_look_suppressed(better):
    """Value colours are spelt out (Plotly.js gets the figure unvalidated) and none is grey, the
    colour of a suppressed district."""
    at = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)
    snap = Snapshot(at, (PublicKpi("k", "%", better, 3, 0),), {"a": "A", "b": "B", "c": "C"},
                    latest={("k", "district", "a"): Point(at, 1.0, False), ("k", "district", "b"): Point(at, 9.0, False),
                            ("k", "district", "c"): Point(at, None, True)})
    kpi = dataclasses.replace(load_catalogue(Path(__file__).resolve().parents[2] / "layers" / "demo_city")["congestion_index"], better=better)
    fig = map_figure(snap, "k", kpi, "en", "/layers/city/districts.geojson", (0, 0), 10)
    values, suppressed = fig["data"]
    assert values["locations"] == ["a", "b"] and suppressed["locations"] == ["c"]
    assert isinstance(values["colorscale"], list)
    assert not any(_grey(colour) for _, colour in values["colorscale"])
    assert suppressed["colorscale"][0][1] == SUPPRESSED and _grey(SUPPRESSED)
