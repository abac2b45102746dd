"""Browser fixtures: the dashboard served by dash_duo in headless Chromium."""
from __future__ import annotations

import pytest

from dashboard.server import create_app


@pytest.fixture
def dashboard_app(settings):
    """The real dashboard app, pointed at this test's database and the session broker."""
    app = create_app(settings)
    yield app
    from core.db import close_all

    close_all()
