"""``python -m ingest simulate``: times, option checks and clear errors (no services needed)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ingest.__main__ import main
from core.settings import get_settings
from ingest.simulate.cli import parse_when
from devtools.stack import free_port

NOW = 1_795_000_000.0


def test_parse_when():
    assert parse_when("now", NOW) == NOW
    assert parse_when("-2h", NOW) == NOW - 7200
    assert parse_when("-30m", NOW) == NOW - 1800
    assert parse_when("-1.5d", NOW) == NOW - 1.5 * 86400
    assert parse_when("2026-11-23T10:00:00-04:00", NOW) == datetime(
        2026, 11, 23, 14, tzinfo=timezone.utc).timestamp()
    assert parse_when("2026-11-23T14:00:00Z", NOW) == datetime(
        2026, 11, 23, 14, tzinfo=timezone.utc).timestamp()
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_when("2026-11-23T10:00:00", NOW)
    with pytest.raises(ValueError, match="neither 'now'"):
        parse_when("yesterday", NOW)


@pytest.fixture
def no_broker(monkeypatch):
    monkeypatch.setenv("CITYDASH_MQTT_URL", f"mqtt://127.0.0.1:{free_port()}")
    monkeypatch.setenv("CITYDASH_LOG_FORMAT", "text")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.parametrize("argv,code,text", [
    (["--formats", "carrier-pigeon=1"], 2, "unknown format 'carrier-pigeon'"),
    (["--interval", "0"], 2, "--interval must be positive"),
    (["--start", "soon"], 2, "neither 'now'"),
    (["--kinds", "volcano"], 2, "no sensors of kind volcano"),
    (["--pack", "/nonexistent/pack"], 1, "cannot load the city pack"),
    (["--duration", "1", "--sensors", "3", "--no-vehicles"], 1, "cannot reach the MQTT broker"),
])
def test_bad_input_gives_a_message_not_a_traceback(no_broker, capsys, argv, code, text):
    assert main(["simulate", *argv]) == code
    err = capsys.readouterr().err
    assert text in err and "Traceback" not in err
