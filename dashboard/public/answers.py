"""What keeps the public view cheap to serve: two caches, neither of which knows Dash's wire format.

* ``SnapshotMemo``: the results of the view's pure functions (``layout.page``, ``view_common``,
  ``view_map``, ``view_trend``) by snapshot version, function and (validated) arguments, so a
  callback that runs does no figure or table work when the same part was asked for before.
* ``AnswerCache``: whole HTTP answers of the public app (``/public/_dash-update-component`` by the
  SHA-256 of the request body and the snapshot version; ``_dash-layout`` and
  ``_dash-dependencies``; the page shell ``/public/`` by language), kept as the status, content
  type and bytes Dash sent.  ``app.py`` looks answers up in a ``before_request`` hook that runs
  after the rate limiter's and keeps them in an ``after_request`` hook; the body is opaque bytes.
  (Dash signs a token into each page shell that only background callbacks check: this app has
  none, so one shell per language serves every viewer.)

Both are flask-caching ``SimpleCache`` stores of the process (bounded: ``threshold`` entries, each
kept ``timeout_s``), holding values as they are: the parts are read-only component trees and
figure dicts, the answers bytes, so pickling them on every hit (``SimpleCache``'s default) would
only cost time.
"""
from __future__ import annotations

import hashlib
from typing import Callable, TypeVar

import flask
import orjson
from flask_caching.backends import SimpleCache
from plotly.io import json as plotly_json

T = TypeVar("T")


class _AsIs:
    """No serialisation: the values stay in this process and nobody modifies them."""

    def dumps(self, value, protocol=None):
        return value

    def loads(self, bvalue):
        return bvalue


class _Store(SimpleCache):
    serializer = _AsIs()


def serialises_fragments() -> bool:
    """Whether the encoder Dash answers with (plotly's ``to_json_plotly``) is the orjson one, which
    writes an ``orjson.Fragment`` as the JSON it holds (the stdlib engine cannot)."""
    return plotly_json.config.default_engine in ("auto", "orjson")


def serialised(part: dict) -> dict:
    """A part's values as ``orjson.Fragment`` of their JSON, written by the same encoder Dash uses
    for a whole answer, so that an answer composed of memoised parts costs Dash no work on them
    (byte-identical to serialising the values themselves: tests/integration/test_public_app.py)."""
    if not serialises_fragments():
        return part
    return {key: orjson.Fragment(plotly_json.to_json_plotly(value)) for key, value in part.items()}


class SnapshotMemo:
    def __init__(self, threshold: int, timeout_s: int) -> None:
        self.enabled = True
        self._backend = _Store(threshold=threshold, default_timeout=max(1, timeout_s))

    def get(self, snap, key: tuple, build: Callable[[], T]) -> T:
        """``build()`` once per snapshot version and ``key`` (two threads may both build it: the
        same value)."""
        if not self.enabled:
            return build()
        full = "public:part:" + snap.computed_at.isoformat() + ":" + repr(key)
        found = self._backend.get(full)
        if found is None:
            found = (build(),)
            self._backend.set(full, found)
        return found[0]

    def clear(self) -> None:
        self._backend.clear()


class AnswerCache:
    def __init__(self, threshold: int, timeout_s: int) -> None:
        self.enabled = True
        self.hits = 0
        self.misses = 0
        self._backend = _Store(threshold=threshold, default_timeout=max(1, timeout_s))

    @staticmethod
    def key(*parts: str | bytes) -> str:
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part if isinstance(part, bytes) else part.encode())
            digest.update(b"\0")
        return "public:answer:" + digest.hexdigest()

    def get(self, key: str) -> flask.Response | None:
        found = self._backend.get(key) if self.enabled else None
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        status, content_type, body = found
        return flask.Response(body, status=status, content_type=content_type)

    def put(self, key: str, response: flask.Response) -> None:
        if self.enabled and response.status_code == 200 and not response.is_streamed:
            self._backend.set(key, (response.status_code, response.content_type, response.get_data()))

    def clear(self) -> None:
        self._backend.clear()
