"""CITYDASH_MAX_REQUEST_BYTES: no route of the dashboard reads a larger body (413 first)."""
from __future__ import annotations

import pytest

from core.db import close_all
from dashboard.server import create_app


@pytest.mark.parametrize("path", ["/_dash-update-component", "/public/_dash-update-component", "/login"])
def test_bodies_over_the_limit_are_refused_before_they_are_read(settings, path):
    app = create_app(settings.model_copy(update={"max_request_bytes": 4096}))
    try:
        client = app.server.test_client()
        big = client.post(path, data=b"{" + b" " * 8192 + b"}", content_type="application/json")
        assert big.status_code == 413, (path, big.status_code)
        small = client.post(path, data=b"{}", content_type="application/json")
        assert small.status_code != 413, path
    finally:
        close_all()
