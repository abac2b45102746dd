"""Planned vehicles from a GTFS timetable (kpis.schedule) and the timetable read from GTFS
(layers.gtfs spans, calendars, frequencies, inferred blocks): hand-computed cases."""
from __future__ import annotations

import shutil
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from kpis import formulas
from kpis.schedule import Schedule, in_progress, service_day_start, services_on
from layers.gtfs import infer_blocks, read_gtfs
from layers.problems import ProblemLog

UTC = timezone.utc
WEEKDAYS = [True] * 5 + [False] * 2
YEAR = ("2026-01-01", "2026-12-31")
QUIRKS = Path(__file__).resolve().parents[1] / "fixtures" / "packs" / "gtfs_quirks"
MINUTE = timedelta(minutes=1)


def hms(text: str) -> int:
    h, m, s = (int(x) for x in text.split(":"))
    return h * 3600 + m * 60 + s


def timetable(trips, calendar=(("WK", WEEKDAYS, *YEAR),), dates=(), frequencies=()) -> Schedule:
    """``trips``: (trip, route, service, block, start 'H:MM:SS', end 'H:MM:SS')."""
    cal = [(s, days, date.fromisoformat(a), date.fromisoformat(b)) for s, days, a, b in calendar]
    return Schedule.from_rows([(t, r, s, b, hms(a), hms(e)) for t, r, s, b, a, e in trips], cal,
                              [(s, date.fromisoformat(d), k) for s, d, k in dates],
                              [(t, hms(a), hms(b), h) for t, a, b, h in frequencies])


def counts(schedule, tz, buckets, width=MINUTE) -> dict:
    got = in_progress(schedule, tz, buckets, width)
    return {(b.to_pydatetime(), r): int(n) for b, r, n in zip(got["bucket"], got["route_id"], got["trips"])}


def at(text: str, tz=UTC) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz)


def test_trip_counts_in_every_bucket_it_runs_in():
    s = timetable([("T1", "R", "WK", "b1", "6:00:00", "6:30:00")])
    tue = [at("2026-03-03T05:59"), at("2026-03-03T06:00"), at("2026-03-03T06:30"), at("2026-03-03T06:31")]
    # 05:59 bucket ends when the trip departs; 06:30 holds its arrival; 06:31 is after it
    assert counts(s, "UTC", tue) == {(tue[1], "R"): 1, (tue[2], "R"): 1}
    assert counts(s, "UTC", [at("2026-03-07T06:10")]) == {}  # Saturday: no service
    # one 10-minute bucket 05:55-06:05 overlaps the trip's first 5 minutes
    assert counts(s, "UTC", [at("2026-03-03T05:55")], timedelta(minutes=10)) == {(at("2026-03-03T05:55"), "R"): 1}


def test_times_past_midnight_belong_to_the_previous_service_day():
    s = timetable([("N1", "R", "WK", "b1", "25:10:00", "25:40:00")])
    sat, mon, tue = at("2026-03-07T01:15"), at("2026-03-09T01:15"), at("2026-03-10T01:15")
    # Friday's 25:10 trip runs on Saturday 01:10; Sunday has no service, so Monday 01:15 has none;
    # Monday's runs on Tuesday
    assert counts(s, "UTC", [sat, mon, tue]) == {(sat, "R"): 1, (tue, "R"): 1}


def test_local_time_of_the_city():
    s = timetable([("T1", "R", "WK", "b1", "8:00:00", "8:20:00")])
    # Cuiabá is UTC-4 all year: 08:00 local = 12:00 UTC
    b = [at("2026-03-03T11:59"), at("2026-03-03T12:00"), at("2026-03-03T12:20"), at("2026-03-03T12:21")]
    assert counts(s, "America/Cuiaba", b) == {(b[1], "R"): 1, (b[2], "R"): 1}


@pytest.mark.parametrize("day,start,end", [
    # spring forward (02:00 CET -> 03:00 CEST): "noon minus 12 h" is 23:00 CET the evening before
    ("2026-03-29", "2026-03-28T22:00", "2026-03-29T06:00"),
    ("2026-03-22", "2026-03-21T23:00", "2026-03-22T07:00"),  # a plain winter Sunday: midnight CET
    # fall back (03:00 CEST -> 02:00 CET): "noon minus 12 h" is 01:00 CEST
    ("2026-10-25", "2026-10-24T23:00", "2026-10-25T07:00"),
])
def test_service_day_start_is_noon_minus_12_hours(day, start, end):
    """0:00:00 and 8:00:00 of the service day in UTC; 8:00:00 is 08:00 on the wall clock every day."""
    berlin = ZoneInfo("Europe/Berlin")
    base = service_day_start(berlin, date.fromisoformat(day))
    assert datetime.fromtimestamp(base, UTC) == at(start)
    assert datetime.fromtimestamp(base + 8 * 3600, UTC) == at(end)
    assert datetime.fromtimestamp(base + 8 * 3600, UTC).astimezone(berlin).hour == 8


def test_dst_day_trip_before_the_change():
    """A 1:00:00 trip on the spring-forward Sunday runs at 00:00 CET (GTFS counts from noon - 12 h)."""
    s = timetable([("T1", "R", "SU", "b1", "1:00:00", "1:30:00")],
                  calendar=(("SU", [False] * 6 + [True], *YEAR),))
    b = [at("2026-03-28T22:59"), at("2026-03-28T23:00"), at("2026-03-29T00:00"), at("2026-03-29T00:01")]
    assert counts(s, "Europe/Berlin", b) == {(b[1], "R"): 1}


def test_calendar_dates_remove_and_add_services():
    s = timetable([("T1", "R", "WK", "b1", "6:00:00", "6:30:00"), ("T2", "R", "EXTRA", "b2", "6:00:00", "6:30:00")],
                  dates=[("WK", "2026-03-03", 2), ("EXTRA", "2026-03-08", 1)])
    tue, wed, sun = at("2026-03-03T06:10"), at("2026-03-04T06:10"), at("2026-03-08T06:10")
    assert counts(s, "UTC", [tue, wed, sun]) == {(wed, "R"): 1, (sun, "R"): 1}
    assert services_on(s, date(2026, 3, 3)) == set() and services_on(s, date(2026, 3, 8)) == {"EXTRA"}
    assert services_on(s, date(2027, 3, 3)) == set()  # after calendar end_date


def test_frequencies_repeat_the_trip():
    # a 30-minute trip every 10 minutes from 06:00, last start before 07:00 (06:50)
    s = timetable([("F", "R", "WK", "bf", "6:00:00", "6:30:00")], frequencies=[("F", "6:00:00", "7:00:00", 600)])
    b = [at("2026-03-03T05:59"), at("2026-03-03T06:35"), at("2026-03-03T07:20"), at("2026-03-03T07:21")]
    # 06:35: runs started 06:10, 06:20, 06:30; 07:20: the 06:50 run arrives at 07:20
    assert counts(s, "UTC", b) == {(b[1], "R"): 3, (b[2], "R"): 1}


def test_a_block_counts_once_per_bucket():
    s = timetable([("A", "R", "WK", "v1", "6:00:00", "6:30:00"), ("B", "R", "WK", "v1", "6:35:00", "7:00:00"),
                   ("C", "R", "WK", "v2", "6:32:00", "6:50:00"), ("D", "S", "WK", "v3", "6:00:00", "7:00:00")])
    ten = timedelta(minutes=10)
    b = at("2026-03-03T06:30")  # A arrives at 06:30, B leaves at 06:35 with the same vehicle; C on v2
    assert counts(s, "UTC", [b], ten) == {(b, "R"): 2, (b, "S"): 1}
    one = [at("2026-03-03T06:31"), at("2026-03-03T06:33"), at("2026-03-03T06:35")]
    assert counts(s, "UTC", one) == {(one[0], "S"): 1, (one[1], "R"): 1, (one[1], "S"): 1,
                                     (one[2], "R"): 2, (one[2], "S"): 1}


def test_infer_blocks_chains_trips_like_the_simulator():
    spans = pd.DataFrame({"trip_id": list("ABCDE"), "route_id": ["R"] * 4 + ["S"], "service_id": "WK",
                          "block_id": ["", "", "", "", "X"],
                          "start_s": [hms(t) for t in ("6:00:00", "6:20:00", "6:35:00", "6:54:00", "6:00:00")],
                          "end_s": [hms(t) for t in ("6:30:00", "6:50:00", "7:00:00", "7:10:00", "7:00:00")]})
    # C leaves 5 min after A arrives: A's vehicle; D leaves 4 min after B: a third vehicle; E keeps its block
    assert infer_blocks(spans) == ["~R~WK~1", "~R~WK~2", "~R~WK~1", "~R~WK~3", "X"]


def test_in_service_is_capped_per_route():
    t0 = pd.Timestamp("2026-03-03T06:00", tz="UTC")
    counts_ = pd.DataFrame({"bucket": [t0] * 2, "route": ["R", "S"], "vehicles": [5, 1]})
    planned = pd.DataFrame({"bucket": [t0] * 3, "route": ["R", "S", "T"], "planned": [4, 2, 2]})
    per_route = formulas.in_service(counts_, planned).set_index("scope_id")
    assert per_route["value"].to_dict() == {"R": 100.0, "S": 50.0, "T": 0.0}
    assert per_route["sensors"].to_dict() == {"R": 5, "S": 1, "T": 0}
    city = formulas.in_service(counts_, planned, city=True)
    assert city["value"].tolist() == [62.5] and city["sensors"].tolist() == [6]  # (4 + 1 + 0) / 8


def feed(tmp_path: Path) -> Path:
    shutil.copytree(QUIRKS / "gtfs", tmp_path / "gtfs")
    return tmp_path / "gtfs"


def test_timetable_read_from_gtfs(tmp_path):
    folder = feed(tmp_path)
    (folder / "calendar_dates.txt").write_text("service_id,date,exception_type\nWK,20260303,2\nSUN,20260308,1\n")
    (folder / "frequencies.txt").write_text("trip_id,start_time,end_time,headway_secs,exact_times\n"
                                            "T4,8:00:00,9:00:00,900,1\n")
    log = ProblemLog()
    transit, _ = read_gtfs(tmp_path, "gtfs", log)
    assert not log.problems, [str(p) for p in log.problems]
    spans = transit.spans.set_index("trip_id")
    assert spans.loc["T2", ["start_s", "end_s"]].tolist() == [hms("23:50:00"), hms("24:05:00")]
    assert spans.loc["T4", ["route_id", "service_id"]].tolist() == ["R2", "WK"]
    # block_id "1" from trips.txt for R1; R2 has none: inferred
    assert spans["block_id"].to_dict() == {"T1": "1", "T2": "1", "T3": "1", "T4": "~R2~WK~1"}
    assert transit.services.to_dict("records") == [
        {"service_id": "WK", "days": "1111100", "start_date": date(2025, 1, 1), "end_date": date(2030, 12, 31)}]
    assert transit.service_dates.values.tolist() == [["WK", date(2026, 3, 3), 2], ["SUN", date(2026, 3, 8), 1]]
    assert transit.frequencies.values.tolist() == [["T4", 8 * 3600, 9 * 3600, 900, True]]


def test_bad_timetable_rows_name_file_and_row(tmp_path):
    folder = feed(tmp_path)
    (folder / "calendar.txt").write_text(
        "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\n"
        "WK,1,1,1,1,1,0,0,20250101,20301231\nXX,1,1,2,1,1,0,0,20250101,20301231\n"
        "YY,1,1,1,1,1,0,0,20301231,20250101\nZZ,1,1,1,1,1,0,0,2025-01-01,20301231\n")
    (folder / "calendar_dates.txt").write_text("service_id,date,exception_type\nWK,20260303,3\nWK,20260230,1\n")
    (folder / "frequencies.txt").write_text("trip_id,start_time,end_time,headway_secs\nT4,9:00:00,8:00:00,600\n"
                                            "NOPE,8:00:00,9:00:00,600\nT1,8:00:00,9:00:00,0\n")
    text = (folder / "stop_times.txt").read_text().replace("T3,7:10:00,7:10:00", "T3,6:50:00,6:50:00")
    (folder / "stop_times.txt").write_text(text)
    log = ProblemLog()
    read_gtfs(tmp_path, "gtfs", log)
    assert {str(p) for p in log.errors} == {
        "gtfs/calendar.txt row 2: monday..sunday must each be 0 or 1",
        "gtfs/calendar.txt row 3: end_date 20250101 is before start_date 20301231",
        "gtfs/calendar.txt row 4: start_date '2025-01-01' is not a date YYYYMMDD",
        "gtfs/calendar_dates.txt row 1: exception_type '3' must be 1 (added) or 2 (removed)",
        "gtfs/calendar_dates.txt row 2: date '20260230' is not a date YYYYMMDD",
        "gtfs/frequencies.txt row 1: end_time must be after start_time",
        "gtfs/frequencies.txt row 2: unknown or untimed trip_id 'NOPE'",
        "gtfs/frequencies.txt row 3: headway_secs '0' must be a whole number > 0",
        "gtfs/stop_times.txt row 11: trip 'T3' ends at 06:50:00, before it starts at 07:00:00",
    }
