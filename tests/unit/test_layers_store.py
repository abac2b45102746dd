"""Rows that layers.store writes (the SQL itself runs in tests/integration/test_layers_load.py)."""
from __future__ import annotations

import json
from pathlib import Path

from layers.pack import load_pack
from layers.store import district_rows, kind_rows, sensor_rows

PACKS = Path(__file__).resolve().parents[1] / "fixtures" / "packs"


def test_rows_are_json_safe_and_complete():
    pack = load_pack(PACKS / "utm21s")
    districts = district_rows(pack)
    assert [r[0] for r in districts] == ["norte-oeste", "norte-leste", "sul-oeste", "sul-leste"]
    for _, name, geometry, area, attrs in districts:
        json.dumps(geometry.obj, allow_nan=False)
        assert geometry.obj["type"] == "Polygon" and 4.0 < area < 5.0  # ~2.14 km x 2.21 km cells
    sensors = {r[0]: r for r in sensor_rows(pack)}
    tc = sensors["tc-1"]
    assert tc[1:4] == ("traffic_counter", "mobility", "Contador Avenida Central")
    # the road's class and free-flow speed travel with the sensor (the KPI engine uses them)
    assert tc[7].obj == {"pack": "utm-fixture", "metrics": ["flow", "speed"], "road": "r-1",
                         "road_class": "arterial", "free_flow_kmh": 60.0, "road_name": "Avenida Central"}
    aq = sensors["aq-1"]
    assert (aq[4], aq[5], aq[6]) == (-56.105, -15.59, "norte-oeste")
    assert "road" not in aq[7].obj  # blank references are left out, never NaN
    json.dumps([r[7].obj for r in sensors.values()], allow_nan=False)
    kinds = {r[0]: r for r in kind_rows(pack)}
    assert kinds["air_quality"][1:3] == ("infrastructure", ["pm25", "pm10"])  # undeclared: seen metrics
