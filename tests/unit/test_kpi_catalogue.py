"""The KPI catalogue: the default file, city-pack overrides, validation errors."""
from __future__ import annotations

import copy
from datetime import timedelta

import pytest
import yaml

from kpis.catalogue import (DEFAULT_FILE, CatalogueError, LOCALES, load_catalogue,
                                      parse_catalogue)

DEFAULT = yaml.safe_load(DEFAULT_FILE.read_text(encoding="utf-8"))


def parse(override=None, default=None, tz="UTC"):
    return parse_catalogue(copy.deepcopy(default or DEFAULT), "default_catalogue.yaml", override,
                           "pack/kpis.yaml" if override is not None else None, tz)


def test_default_catalogue_is_complete():
    cat = parse()
    assert len(cat) >= 14
    domains = {k.domain for k in cat}
    assert domains == {"mobility", "transport", "infrastructure", "health"}
    for kpi in cat:
        for loc in LOCALES:
            label, description = kpi.text(loc)
            assert label.strip() and description.strip()
        assert kpi.better in ("higher", "lower") and kpi.unit
        assert kpi.scopes[0] == "city"
    expected = {"congestion_index", "arterial_speed", "traffic_volume", "parking_occupancy",
                "bike_availability", "on_time_performance", "mean_delay", "vehicles_in_service",
                "crowding", "air_quality_index", "noise_exceedance", "streetlight_faults",
                "water_pressure_anomalies", "waste_bins_full", "sensors_reporting", "ingest_lag",
                "dead_letter_rate"}
    assert expected <= set(cat.kpis)
    assert cat["noise_exceedance"].formula.params["above"] == {
        "day": 65.0, "night": 55.0, "day_start_min": 420, "night_start_min": 1320}
    assert cat["sensors_reporting"].window == timedelta(minutes=15)
    assert cat.health.silent_after == timedelta(minutes=15)
    assert "fault" in cat.health.stuck_ignore and "on" in cat.health.stuck_ignore


def test_pack_overrides_extends_and_removes_by_id():
    override = {
        "scheduled_vehicles": {"routes": {"101": 6}},
        "kpis": [
            {"id": "parking_occupancy", "thresholds": {"warning": 95}, "label": {"en": "Car parks"}},
            {"id": "energy_demand", "enabled": False},
            {"id": "tram_speed", "domain": "transport", "unit": "km/h", "better": "higher",
             "label": {"pt-BR": "Velocidade do VLT", "en": "Tram speed", "ja": "路面電車の速度"},
             "description": {"pt-BR": "x", "en": "x", "ja": "x"},
             "formula": {"kind": "tram", "aggregation": "mean", "metric": "speed"}},
        ]}
    cat = parse(override, tz="America/Cuiaba")
    parking = cat["parking_occupancy"]
    assert parking.thresholds.warning == 95 and parking.thresholds.critical == 98  # merged
    assert parking.label["en"] == "Car parks" and parking.label["ja"] == "駐車場の占有率"
    assert parking.file == "pack/kpis.yaml"
    assert "energy_demand" not in cat.kpis
    assert cat["tram_speed"].formula.kinds == ("tram",) and cat["tram_speed"].window == timedelta(minutes=10)
    assert list(cat.kpis)[-1] == "tram_speed"
    assert cat.scheduled_vehicles == {"default": 4, "routes": {"101": 6}}
    assert cat.timezone == "America/Cuiaba"


def test_definition_hash_changes_with_the_formula_only():
    a = parse()
    b = parse({"kpis": [{"id": "waste_bins_full", "thresholds": {"warning": 30}}]})
    c = parse({"kpis": [{"id": "waste_bins_full", "formula": {"above": 90}}]})
    h = [x["waste_bins_full"].definition_hash(x) for x in (a, b, c)]
    assert h[0] == h[1] != h[2]


def test_errors_name_file_kpi_and_problem():
    override = {"kpis": [
        {"id": "parking_occupancy", "thresholds": {"warning": 99, "critical": 50}},
        {"id": "new_kpi", "domain": "space", "unit": "%", "better": "up",
         "label": {"en": "New"}, "description": {"en": "d", "pt-BR": "d", "ja": "d"},
         "formula": {"kind": "x", "aggregation": "median", "metric": "m"}},
        {"id": "crowding", "scopes": ["district"]},
        {"id": "noise_exceedance", "formula": {"above": {"day": 65, "night": 55, "day_start": "7am"}}},
    ]}
    with pytest.raises(CatalogueError) as err:
        parse(override)
    problems = err.value.problems
    text = "\n".join(problems)
    assert "pack/kpis.yaml: kpi 'parking_occupancy': thresholds: with better: lower they must satisfy " \
           "target <= warning <= critical" in text
    assert "pack/kpis.yaml: kpi 'new_kpi': label: missing text for pt-BR, ja" in text
    assert "pack/kpis.yaml: kpi 'new_kpi': domain: 'space' is not one of" in text
    assert "pack/kpis.yaml: kpi 'new_kpi': better: 'up' is not one of higher, lower" in text
    assert "pack/kpis.yaml: kpi 'new_kpi': formula.aggregation: 'median' is not one of" in text
    assert "pack/kpis.yaml: kpi 'crowding': scopes: district not available for source vehicles" in text
    assert "pack/kpis.yaml: kpi 'noise_exceedance': formula.above.day_start: '7am' is not a time HH:MM" in text
    assert len(problems) == 7
    assert str(err.value).startswith("invalid KPI catalogue:")


def test_errors_in_the_default_file_name_it():
    broken = copy.deepcopy(DEFAULT)
    broken["kpis"][0]["formula"]["free_flow"] = "free_flow_kmh"
    broken["kpis"].append({"label": {"en": "no id"}})
    with pytest.raises(CatalogueError) as err:
        parse(default=broken)
    assert err.value.problems == [
        "default_catalogue.yaml: KPI entry #19: missing id (each entry is a mapping with an 'id')",
        "default_catalogue.yaml: kpi 'congestion_index': formula.free_flow: "
        "must be {attribute: name[, default: km/h]}",
    ]


def test_unknown_fields_and_bad_durations_are_errors():
    override = {"colour": "red", "kpis": [
        {"id": "ingest_lag", "window": "ten minutes", "colour": "red"},
        {"id": "mean_delay", "alert": {"min_duration": "-5m", "snooze": True}},
        {"id": "ingest_lag", "unit": "ms"},
    ]}
    with pytest.raises(CatalogueError) as err:
        parse(override, tz="Mars/Olympus")
    text = "\n".join(err.value.problems)
    assert "pack/kpis.yaml: unknown timezone 'Mars/Olympus'" in text
    assert "pack/kpis.yaml: unknown top-level key(s): colour" in text
    assert "pack/kpis.yaml: kpi 'ingest_lag': defined twice in this file" in text
    assert "kpi 'ingest_lag': colour: unknown field" in text
    assert "kpi 'ingest_lag': window: 'ten minutes' is not a duration" in text
    assert "kpi 'mean_delay': alert.min_duration: '-5m' is not a duration" in text
    assert "kpi 'mean_delay': alert.snooze: unknown field" in text


def test_load_from_a_city_pack_folder(tmp_path):
    (tmp_path / "city.yaml").write_text(
        "name: Test\ntimezone: Asia/Tokyo\nlayers:\n  districts: d.geojson\n  kpis: kpis.yaml\n", encoding="utf-8")
    assert load_catalogue(tmp_path).timezone == "Asia/Tokyo"  # kpis.yaml missing: default catalogue
    (tmp_path / "kpis.yaml").write_text("kpis:\n  - id: ingest_lag\n    thresholds: {warning: 60}\n",
                                        encoding="utf-8")
    cat = load_catalogue(tmp_path)
    assert cat["ingest_lag"].thresholds.warning == 60
    assert cat.files == ("default_catalogue.yaml", str(tmp_path / "kpis.yaml"))
    (tmp_path / "kpis.yaml").write_text("kpis: [\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match="kpis.yaml: cannot read"):
        load_catalogue(tmp_path)
