"""Browser fixtures: the dashboard served on a real werkzeug server, driven in headless Chromium.

``browser`` and ``screenshots`` come from tests/browser/harness.py (the project's own harness,
selenium 4 with Debian's chromedriver; no dash[testing])."""
from __future__ import annotations

import pytest

from dashboard.server import create_app
from tests.browser.harness import browser, pytest_runtest_makereport, screenshots  # noqa: F401  (fixtures, hook)


@pytest.fixture
def dashboard_app(settings):
    """The real dashboard app, pointed at this test's database and the session broker."""
    app = create_app(settings)
    yield app
    from core.db import close_all

    close_all()
