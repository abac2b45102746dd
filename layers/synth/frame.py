"""The demo city's local frame: metres east/north of the centre <-> lon/lat.

An equirectangular approximation around the centre; good to well under a
metre across the ~20 km of the demo city, and exactly invertible.
"""
from __future__ import annotations

import math

import numpy as np
import shapely

CENTRE = (-56.097, -15.601)  # Cuiabá, Mato Grosso
M_PER_DEG_LAT = 110_600.0
M_PER_DEG_LON = 111_320.0 * math.cos(math.radians(CENTRE[1]))
DECIMALS = 6  # ~0.1 m: the precision of the generated pack


def to_lonlat(xy: np.ndarray) -> np.ndarray:
    xy = np.asarray(xy, dtype=float)
    out = np.empty_like(xy)
    out[..., 0] = CENTRE[0] + xy[..., 0] / M_PER_DEG_LON
    out[..., 1] = CENTRE[1] + xy[..., 1] / M_PER_DEG_LAT
    return np.round(out, DECIMALS)


def geom_to_lonlat(geom):
    """A shapely geometry (or array of them) from metres to rounded lon/lat."""
    return shapely.transform(geom, to_lonlat)
