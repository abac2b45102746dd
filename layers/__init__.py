"""citydash layers: city packs, their validation, and web-ready map layers.

A *city pack* is a folder with a ``city.yaml`` and the geodata it names
(districts, roads, a GTFS feed, sensors, extra layers).  This package

* reads and validates a pack where the geodata enters (:mod:`layers.pack`),
  collecting every problem into one :class:`~layers.problems.PackError`;
* writes simplified, size-budgeted GeoJSON per zoom band for the dashboard
  (:mod:`layers.web`);
* upserts districts, sensor kinds and sensors into the database
  (:mod:`layers.store`);
* generates a reproducible synthetic demo city (:mod:`layers.synth`), whose
  seed-1 copy is committed in ``layers/demo_city/``.

Command line: ``python -m layers {check,build,load,demo} ...``.
"""
from __future__ import annotations

from pathlib import Path

from layers.problems import PackError, Problem

DEMO_CITY = Path(__file__).resolve().parent / "demo_city"

__all__ = ["DEMO_CITY", "PackError", "Problem", "load_pack"]


def load_pack(path):
    """Shortcut for :func:`layers.pack.load_pack` (imported lazily)."""
    # deferred: layers.pack pulls in geopandas; `import layers` (problems, DEMO_CITY) stays light
    from layers.pack import load_pack as _load

    return _load(path)
