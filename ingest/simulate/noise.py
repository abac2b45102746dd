"""Counter-based randomness: the same (seed, keys) always give the same number.

The simulator never keeps a random state between steps: every random number
is a hash (splitmix64) of the seed, a purpose "salt", the sensor number and
the time.  A value is therefore the same whether it is computed by a live run,
a backfill, one publisher process or another, in any order.
"""
from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = (np.uint64(s) for s in (30, 27, 31, 11))


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = x + _GOLDEN
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


def _key(value) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        arr = np.floor(arr).astype(np.int64)
    return arr.astype(np.int64).astype(np.uint64)


def uniform(*keys) -> np.ndarray:
    """Uniform [0, 1) numbers, one per element of the broadcast integer keys."""
    with np.errstate(over="ignore"):
        h = np.uint64(0x1234567)
        for k in keys:
            h = _splitmix(h ^ _key(k))
    return (h >> _S11).astype(np.float64) * (1.0 / 2 ** 53)


def normal(*keys) -> np.ndarray:
    """Standard normal numbers (Box-Muller of two hashed uniforms)."""
    u1 = uniform(*keys, 1)
    u2 = uniform(*keys, 2)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2 * np.pi * u2)


def choice(u: np.ndarray, weights) -> np.ndarray:
    """Index into ``weights`` chosen by the uniforms ``u``."""
    cum = np.cumsum(np.asarray(weights, dtype=float))
    return np.searchsorted(cum / cum[-1], u, side="right")
