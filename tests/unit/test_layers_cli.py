"""``python -m layers``: exit codes and output, never a traceback."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from layers import DEMO_CITY
from layers.cli import main

ROOT = Path(__file__).resolve().parents[2]
PACKS = ROOT / "tests" / "fixtures" / "packs"


def test_check_good_pack_exits_0(capsys):
    assert main(["check", str(DEMO_CITY)]) == 0
    out = capsys.readouterr().out
    assert "districts.geojson" in out and "EPSG:4326" in out and "0 error(s)" in out
    assert "demo-cuiaba" in out and "gtfs/" in out


def test_check_prints_layers_crs_and_repairs(capsys):
    assert main(["check", str(PACKS / "utm21s")]) == 0
    out = capsys.readouterr().out
    assert "districts.gpkg" in out and "EPSG:32721" in out


def test_check_broken_pack_exits_1_with_file_row_reason(capsys):
    assert main(["check", str(PACKS / "broken")]) == 1
    out = capsys.readouterr().out
    assert "12 error(s)" in out
    assert "error: sensors.csv row 2: lat 123.4 out of range" in out
    assert "error: sensors.csv row 3: unknown road 'r-999'" in out
    assert "warning: districts.geojson row 3: invalid geometry (Self-intersection" in out
    lines = out.splitlines()
    assert any(l.startswith("districts") and l.rstrip().endswith("1") for l in lines)  # 1 repair


def test_check_missing_folder_exits_1(capsys, tmp_path):
    assert main(["check", str(tmp_path / "nope")]) == 1
    assert "city pack folder not found" in capsys.readouterr().out


def test_module_entry_point_prints_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "layers", "check", str(PACKS / "broken")], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "sensors.csv row 3: unknown road 'r-999'" in proc.stdout


def test_build_with_errors_exits_1_and_lists_problems(capsys, tmp_path):
    assert main(["build", str(PACKS / "broken"), "--out", str(tmp_path / "web")]) == 1
    assert "unknown road 'r-999'" in capsys.readouterr().out
    assert not (tmp_path / "web").exists()


def test_build_writes_layers(capsys, tmp_path):
    assert main(["build", str(PACKS / "gtfs_quirks"), "--out", str(tmp_path / "web")]) == 0
    manifest = json.loads((tmp_path / "web" / "manifest.json").read_text())
    assert {f["layer"] for f in manifest["files"]} == {"districts", "roads", "transit_lines", "stops"}
    assert "web layers:" in capsys.readouterr().out


def test_load_with_unreachable_database_exits_1_without_traceback(capsys, tmp_path):
    url = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"
    assert main(["load", str(PACKS / "gtfs_quirks"), "--database-url", url, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: database:") and "Traceback" not in err


def test_demo_command(capsys, tmp_path):
    assert main(["demo", "--seed", "3", str(tmp_path / "demo")]) == 0
    assert (tmp_path / "demo" / "city.yaml").exists()
    assert "seed 3" in capsys.readouterr().out
