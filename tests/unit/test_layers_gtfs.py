"""GTFS static reading (layers.gtfs) on feeds with the quirks of real ones.

Fixture feed: tests/fixtures/packs/gtfs_quirks/gtfs, written to the GTFS
Schedule reference (https://gtfs.org/documentation/schedule/reference/) with
CRLF line endings, a UTF-8 BOM, no trailing newlines and a header-only
shapes.txt, like Google's sample feed.
"""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
import shapely

from layers.gtfs import MAX_ROW_PROBLEMS, read_gtfs, route_mode
from layers.pack import load_pack
from layers.problems import ProblemLog

QUIRKS = Path(__file__).resolve().parents[1] / "fixtures" / "packs" / "gtfs_quirks"


def read(root: Path, name: str = "gtfs"):
    log = ProblemLog()
    transit, report = read_gtfs(root, name, log)
    return transit, report, log


def test_fixture_really_has_the_quirks():
    stops = (QUIRKS / "gtfs" / "stops.txt").read_bytes()
    assert stops.startswith(b"\xef\xbb\xbf") and b"\r\n" in stops and not stops.endswith(b"\n")
    assert (QUIRKS / "gtfs" / "shapes.txt").read_bytes().count(b"\n") == 0


def check_quirks_feed(transit, log):
    assert not log.problems, [str(p) for p in log.problems]
    routes = transit.routes.set_index("route_id")
    assert list(routes.index) == ["R1", "R2"]
    assert routes.loc["R1", "short_name"] == "1" and routes.loc["R1", "colour"] is None
    assert routes.loc["R2", "mode"] == "rail" and routes.loc["R2", "colour"] == "#0055AA"
    assert routes.loc["R1", "trips"] == 3
    lines = transit.lines.set_index("route_id")
    assert set(lines["source"]) == {"stops"}  # shapes.txt is header-only
    # R1: the most common pattern A-B-C-D (2 trips) wins over the short-turn A-B-C (1 trip)
    coords = shapely.get_coordinates(lines.loc["R1", "geometry"]).tolist()
    assert coords == [[-56.1, -15.6], [-56.095, -15.601], [-56.09, -15.602], [-56.085, -15.603]]
    stops = transit.stops.set_index("stop_id")
    assert stops.loc["A", "name"] == "Parada A"  # BOM stripped from the first header
    assert stops.loc["STA", "location_type"] == 1 and stops.loc["STA1", "parent_station"] == "STA"
    assert stops.loc["D", "route_ids"] == ["R1", "R2"]
    assert len(transit.trips) == 4 and transit.trips.set_index("trip_id").loc["T3", "headsign"] == "to C"
    times = transit.stop_times[transit.stop_times["trip_id"] == "T2"]
    assert list(times["stop_id"]) == ["A", "B", "C", "D"]
    assert list(times["arrival_s"]) == [85800, 86100, 86400, 86700]  # 23:50 .. 24:05, past midnight
    assert transit.stop_times.loc[0, "departure_s"] == 6 * 3600  # one-digit hour "6:00:00"


def test_folder_with_crlf_bom_no_final_newline_and_empty_shapes():
    transit, report, log = read(QUIRKS)
    check_quirks_feed(transit, log)
    assert report.features == 2 and "0 from shapes.txt" in report.note


def test_zip_with_files_in_a_subfolder(tmp_path):
    archive = tmp_path / "feed.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted((QUIRKS / "gtfs").iterdir()):
            zf.write(f, f"google_transit/{f.name}")
    transit, _, log = read(tmp_path, "feed.zip")
    check_quirks_feed(transit, log)


def test_missing_shapes_file_and_shapes_in_use(tmp_path):
    feed = tmp_path / "gtfs"
    shutil.copytree(QUIRKS / "gtfs", feed)
    (feed / "shapes.txt").unlink()
    transit, _, log = read(tmp_path)
    check_quirks_feed(transit, log)
    (feed / "shapes.txt").write_text("shape_id,shape_pt_lat,shape_pt_lon,shape_pt_sequence\n"
                                     "S1,-15.6,-56.1,1\nS1,-15.59,-56.09,3\nS1,-15.595,-56.095,2\n")
    trips = (feed / "trips.txt").read_text().replace("R1,WK,T1,to D,0,1,", "R1,WK,T1,to D,0,1,S1")
    (feed / "trips.txt").write_text(trips)
    transit, report, log = read(tmp_path)
    assert not log.errors
    r1 = transit.lines[transit.lines["route_id"] == "R1"]
    assert list(r1["source"]) == ["shapes"] and list(r1["shape_id"]) == ["S1"]
    # points are ordered by shape_pt_sequence, not file order
    assert shapely.get_coordinates(r1.geometry.iloc[0]).tolist() == [[-56.1, -15.6], [-56.095, -15.595],
                                                                     [-56.09, -15.59]]


def test_row_errors_name_the_feed_file_and_row(tmp_path):
    feed = tmp_path / "gtfs"
    shutil.copytree(QUIRKS / "gtfs", feed)
    with open(feed / "stop_times.txt", "a", newline="") as fh:
        fh.write("\r\nT1,6:20:00,6:20:00,NOPE,5,,,,\r\nT9,6:20:00,6:2O:00,A,1,,,,")
    with open(feed / "stops.txt", "a", newline="") as fh:
        fh.write("\r\nX,Parada X,,-95.0,-56.1,,,,")
    _, _, log = read(tmp_path)
    found = {str(p) for p in log.errors}
    assert found == {
        "gtfs/stop_times.txt row 14: unknown stop_id 'NOPE'",
        "gtfs/stop_times.txt row 15: unknown trip_id 'T9'",
        "gtfs/stop_times.txt row 15: departure_time '6:2O:00' is not H:MM:SS",
        "gtfs/stops.txt row 7: stop_lat/stop_lon '-95.0'/'-56.1' missing or out of range",
    }


def test_row_problems_are_capped(tmp_path):
    feed = tmp_path / "gtfs"
    shutil.copytree(QUIRKS / "gtfs", feed)
    with open(feed / "stop_times.txt", "a", newline="") as fh:
        for i in range(50):
            fh.write(f"\r\nT1,6:20:00,6:20:00,GHOST{i},{10 + i},,,,")
    _, _, log = read(tmp_path)
    assert len(log.errors) == MAX_ROW_PROBLEMS + 1
    assert log.errors[-1].reason == f"... and {50 - MAX_ROW_PROBLEMS} more rows: unknown stop_id"


def test_missing_required_files(tmp_path):
    feed = tmp_path / "gtfs"
    shutil.copytree(QUIRKS / "gtfs", feed)
    (feed / "trips.txt").unlink()
    transit, _, log = read(tmp_path)
    assert transit is None
    assert [str(e) for e in log.errors] == [
        "gtfs/trips.txt: missing: a GTFS feed needs stops, routes, trips and stop_times"]


def test_pack_with_quirky_feed_loads():
    pack = load_pack(QUIRKS)
    assert len(pack.transit.routes) == 2 and len(pack.transit.lines) == 2


@pytest.mark.parametrize("route_type, mode", [(0, "tram"), (2, "rail"), (3, "bus"), (700, "bus"), (109, "rail"),
                                              (900, "tram"), (99, None)])
def test_route_modes(route_type, mode):
    assert route_mode(route_type) == mode
