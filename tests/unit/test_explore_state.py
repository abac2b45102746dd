"""The explorer's view state: URL parsing and writing, windows, frames, comparison, replay (pure logic)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard.api.views import replay_index, selection_from_click
from dashboard.queries import explore as q
from tests.integration.kpi_data import catalogue

TZ = "America/Cuiaba"  # UTC-4, no daylight saving
CAT = catalogue()
NOW = datetime(2026, 3, 2, 15, 37, 42, tzinfo=timezone.utc)


def test_defaults_and_resolved_kpis():
    state, problems = q.parse_state({}, CAT, TZ)
    assert problems == [] and state == q.ViewState()
    full = q.resolved(state, CAT)
    assert full.kpi == q.district_kpis(CAT)[0].id and "district" in CAT[full.kpi].scopes
    assert full.road == q.road_kpis(CAT)[0].id and "road" in CAT[full.road].scopes
    assert q.encode_state(state, TZ) == ""


def test_custom_window_is_read_in_the_city_timezone():
    state, problems = q.parse_state({"range": "custom", "from": "2026-03-01T08:00", "to": "2026-03-01T20:30"},
                                    CAT, TZ)
    assert problems == []
    assert state.start == datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    assert state.end == datetime(2026, 3, 2, 0, 30, tzinfo=timezone.utc)
    assert "from=2026-03-01T08:00" in q.encode_state(state, TZ)


@pytest.mark.parametrize("query,key", [
    ({"range": "forever"}, "explore.problem.range"),
    ({"range": "custom", "from": "yesterday", "to": "2026-03-01T20:30"}, "explore.problem.date"),
    ({"range": "custom", "from": "2026-03-02T08:00", "to": "2026-03-01T20:30"}, "explore.problem.order"),
    ({"range": "custom", "from": "2025-01-01T00:00", "to": "2026-03-01T00:00"}, "explore.problem.span"),
    ({"kpi": "nope"}, "explore.problem.kpi"),
    ({"kpi": "on_time_performance"}, "explore.problem.kpi"),  # no district scope
    ({"road": "parking_occupancy"}, "explore.problem.kpi"),   # no road scope
    ({"layers": "districts,lava"}, "explore.problem.layer"),
    ({"speed": "3"}, "explore.problem.speed"),
    ({"cmp": "yesterday"}, "explore.problem.compare"),
    ({"sel": "planet:earth"}, "explore.problem.selection"),
    ({"t": "noon"}, "explore.problem.date"),
])
def test_bad_values_fall_back_and_are_reported(query, key):
    state, problems = q.parse_state(query, CAT, TZ)
    assert [p.key for p in problems] == [key]
    assert state.range in q.RANGES and state.speed in q.SPEEDS and state.compare in q.COMPARES
    if "layers" in query:
        assert state.layers == ("districts",)


local = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)).map(
    lambda d: d.replace(second=0, microsecond=0))


@settings(max_examples=150, deadline=None)
@given(layers=st.lists(st.sampled_from([*q.CORE_LAYERS, "extra:rivers"]), unique=True),
       kpi=st.sampled_from(["", *[k.id for k in q.district_kpis(CAT)]]),
       road=st.sampled_from(["", *[k.id for k in q.road_kpis(CAT)]]),
       kinds=st.lists(st.sampled_from(["parking", "noise", "traffic_counter"]), unique=True),
       rng=st.sampled_from([*q.RANGES, q.CUSTOM]), start=local, hours=st.integers(1, 24 * 90),
       t=st.none() | local, speed=st.sampled_from(q.SPEEDS), compare=st.sampled_from(q.COMPARES),
       cstart=local, sel=st.none() | st.tuples(st.sampled_from(q.SCOPES), st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True)))
def test_url_round_trip(layers, kpi, road, kinds, rng, start, hours, t, speed, compare, cstart, sel):
    from zoneinfo import ZoneInfo

    utc = lambda d: d.replace(tzinfo=ZoneInfo(TZ)).astimezone(timezone.utc)  # noqa: E731
    state = q.ViewState(tuple(layers), kpi, road, tuple(kinds), rng,
                        utc(start) if rng == q.CUSTOM else None,
                        utc(start) + timedelta(hours=hours) if rng == q.CUSTOM else None,
                        None if t is None else t.replace(tzinfo=timezone.utc), speed, compare,
                        utc(cstart) if compare == "custom" else None, sel)
    search = q.encode_state(state, TZ, "pt-BR")
    from urllib.parse import parse_qs

    query = {k: v[0] for k, v in parse_qs(search.lstrip("?")).items()}
    assert query.pop("lang") == "pt-BR"
    back, problems = q.parse_state(query, CAT, TZ, extra_layers=("rivers",))
    assert problems == []
    assert back == state


@pytest.mark.parametrize("rng,resolution,frames", [("1h", "raw", 60), ("6h", "1m", 360), ("24h", "1m", 1440),
                                                   ("7d", "1h", 168), ("90d", "1h", 2160)])
def test_preset_windows_end_at_the_newest_complete_bucket(rng, resolution, frames):
    w = q.window_for(q.ViewState(range=rng), NOW)
    assert w.resolution == resolution and w.frames == frames
    assert w.end <= NOW < w.end + w.width
    assert w.frame_time(w.frames - 1) + w.width == w.end
    assert w.frame_index(None) == frames - 1
    assert w.frame_index(w.start - timedelta(days=1)) == 0  # clamped
    assert w.frame_index(w.frame_time(7) + w.width / 2) == 7


def test_custom_window_covers_its_ends():
    start = datetime(2026, 3, 1, 10, 15, 30, tzinfo=timezone.utc)
    w = q.window_for(q.ViewState(range="custom", start=start, end=start + timedelta(days=5)), NOW)
    assert w.resolution == "1h" and w.start == datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
    assert w.end == datetime(2026, 3, 6, 11, tzinfo=timezone.utc)


def test_comparison_offsets():
    w = q.window_for(q.ViewState(range="24h"), NOW)
    assert q.compare_offset(q.ViewState(), w) is None
    assert q.compare_offset(q.ViewState(compare="prev_week"), w) == timedelta(days=7)
    last_year = q.compare_offset(q.ViewState(compare="last_year"), w)
    assert (w.start - last_year).weekday() == w.start.weekday()
    other = w.start - timedelta(days=30, minutes=7)
    assert q.compare_offset(q.ViewState(compare="custom", compare_start=other), w) == timedelta(days=30, minutes=7)


def test_replay_steps_and_wraps():
    assert replay_index(10, 60, 1, "explore-tick") == 11
    assert replay_index(10, 1440, 1, "explore-tick") == 22  # 1440 frames / 120 ticks
    assert replay_index(10, 1440, 4, "explore-tick") == 58
    assert replay_index(1430, 1440, 8, "explore-tick") == 1439
    assert replay_index(1439, 1440, 1, "explore-tick") == 0
    assert replay_index(0, 60, 1, "explore-prev") == 0 and replay_index(59, 60, 1, "explore-next") == 59
    assert replay_index(5, 60, 1, "explore-prev") == 4 and replay_index(5, 60, 1, "explore-next") == 6


def test_selection_from_click():
    assert selection_from_click({"points": [{"customdata": "district:centro"}]}) == "district:centro"
    assert selection_from_click({"points": [{"customdata": ["sensor:tc-1"]}]}) == "sensor:tc-1"
    assert selection_from_click({"points": [{"customdata": ""}]}) is None  # a cluster of sensors
    assert selection_from_click({"points": [{"customdata": "planet:x"}]}) is None
    assert selection_from_click(None) is None


# -- the window store the browser holds (explore-window) ----------------------------------------------

from datetime import datetime as _dt, timedelta as _td, timezone as _tz  # noqa: E402

from dashboard.queries import explore as _q  # noqa: E402

_NOW = _dt(2026, 3, 2, 12, 0, 30, tzinfo=_tz.utc)


def _data(window):
    return {"start": window.start.isoformat(), "end": window.end.isoformat(),
            "resolution": window.resolution, "width_s": int(window.width.total_seconds())}


def test_every_window_the_page_makes_is_accepted_back():
    for rng in _q.RANGES:
        w = _q.window_for(_q.ViewState(range=rng), _NOW)
        assert _q.window_from_data(_data(w), _NOW) == w, rng
    for start, end in [(_dt(2026, 3, 1, 10, 0, 30, tzinfo=_tz.utc), _dt(2026, 3, 1, 11, 59, 40, tzinfo=_tz.utc)),
                       (_NOW - _td(days=92), _NOW), (_NOW - _td(days=3, seconds=7), _NOW - _td(seconds=3))]:
        w = _q.window_for(_q.ViewState(range=_q.CUSTOM, start=start, end=end), _NOW)
        assert _q.window_from_data(_data(w), _NOW) == w, (start, end)


def test_tampered_windows_are_refused():
    good = _data(_q.window_for(_q.ViewState(), _NOW))
    bad = [
        None, [], "x", 5, {},
        {**good, "width_s": 0}, {**good, "width_s": -60}, {**good, "width_s": True}, {**good, "width_s": "60"},
        {**good, "resolution": "1s"}, {**good, "resolution": ["1m"]},
        {**good, "start": "2016-03-02T12:00:00+00:00", "resolution": "raw"},  # 10 years, raw
        {**good, "start": "2016-03-02T12:00:00+00:00"},  # beyond the 92-day cap
        {**good, "start": good["end"]}, {**good, "start": "2026-03-02T12:00:00"},  # empty, naive
        {**good, "start": "x\x00y"}, {**good, "start": "2" * 5000}, {**good, "end": "2027-01-01T00:00:00+00:00"},
        {**good, "start": "2026-03-01T12:00:30+00:00"},  # not on a bucket boundary
        {"start": "2026-02-01T12:00:00+00:00", "end": "2026-03-02T12:00:00+00:00", "resolution": "raw",
         "width_s": 60},  # a month at raw resolution: finer than the API's rule
    ]
    for data in bad:
        assert _q.window_from_data(data, _NOW) is None, data
