"""The planner explorer in headless Chromium against a real TimescaleDB (demo city, seeded readings).

Map clicks are sent as Plotly ``clickData`` through ``dash_clientside.set_props``
(headless WebGL cannot be clicked on reliably); everything after that - the
callbacks, the queries, the panel - is the real thing.
"""
from __future__ import annotations

import csv
import io
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from core.settings import Settings
from tests.auth_tools import add_user, login
from tests.integration.test_api import PASSWORD, seed_city

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(scope="module")
def city(pg_server):
    from tests.conftest import create_database, drop_database

    url = create_database(pg_server)
    yield seed_city(url)
    drop_database(pg_server, url)


def make_app(city, mqtt_broker, web_layers_dir, **extra):
    from dashboard.server import create_app

    options = {"auth_mode": "none", **extra}
    return create_app(Settings(_env_file=None, database_url=city.db_url, mqtt_url=mqtt_broker.url,
                               layers_dir=str(web_layers_dir), log_format="text", **options))


@pytest.fixture
def app(city, mqtt_broker, web_layers_dir):
    from core.db import close_all

    yield make_app(city, mqtt_broker, web_layers_dir)
    close_all()


def traces(dash_duo, graph="explore-map") -> list[dict]:
    return dash_duo.driver.execute_script(
        "const g = document.querySelector('#" + graph + " .js-plotly-plot');"
        "return g && g.data ? g.data.map(t => ({type: t.type, name: t.name, n: (t.locations || t.lon || []).length,"
        " z: t.z || null, custom: (t.customdata || []).slice(0, 3)})) : null;")


def wait_traces(dash_duo, check, graph="explore-map", timeout=20):
    found = []

    def ok(_):
        found[:] = traces(dash_duo, graph) or []
        return bool(found) and check(found)

    WebDriverWait(dash_duo.driver, timeout).until(ok)
    return found


def query(dash_duo) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(dash_duo.driver.current_url).query).items()}


def click_map(dash_duo, customdata: str):
    dash_duo.driver.execute_script(
        "window.dash_clientside.set_props('explore-map', {clickData: {points: [{customdata: arguments[0]}]}});",
        customdata)


def shot(dash_duo, name: str):
    if os.environ.get("CITYDASH_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        import time

        dash_duo.driver.set_window_size(1600, 1000)
        time.sleep(2)  # the map redraws at the new size and fetches its layers
        dash_duo.driver.save_screenshot(str(SCREENSHOTS / f"explore-{name}.png"))


def open_page(dash_duo, app, search: str):
    dash_duo.start_server(app)
    dash_duo.wait_for_page(url=f"{dash_duo.server_url}/explore{search}")
    dash_duo.wait_for_element("#explore-map .js-plotly-plot", timeout=20)


def frame(city, minutes_back: int) -> str:
    return (city.now - timedelta(minutes=minutes_back)).strftime("%Y-%m-%dT%H:%MZ")


def test_layer_toggles_legend_and_hover_data(dash_duo, app, city):
    open_page(dash_duo, app, "?layers=districts,roads,sensors,transit,vehicles&kinds=traffic_counter&range=6h"
              f"&t={frame(city, 3)}")
    found = wait_traces(dash_duo, lambda ts: any(t["type"] == "scattermap" and "Sensors" in (t["name"] or "")
                                                 for t in ts))
    kinds = {t["type"] for t in found}
    assert kinds == {"choroplethmap", "scattermap"}
    choropleth = next(t for t in found if t["type"] == "choroplethmap")
    assert choropleth["n"] == 20 and any(z is not None for z in choropleth["z"])
    names = [t["name"] for t in found]
    assert any(n.startswith("Congestion") or "%" in n for n in names if n)  # road classes in the legend
    sensors = sum(t["n"] for t in found if (t["name"] or "").startswith("Sensors"))
    assert sensors == len(city.counters)
    assert any(t["custom"] and str(t["custom"][0]).startswith("route:") for t in found)
    # the silent counters and the one with a health alert are drawn in their own traces
    alert = next(t for t in found if t["name"] == "Sensors with a health alert")
    assert alert["n"] == 1 and alert["custom"] == [f"sensor:{city.sensor}"]
    shot(dash_duo, "layers")
    # toggle roads and sensors off: their traces go, the URL follows
    for label in ("Roads", "Sensors"):
        box = dash_duo.driver.find_element(By.XPATH, f"//*[@id='explore-layers']//label[normalize-space()='{label}']")
        box.click()
    found = wait_traces(dash_duo, lambda ts: not any((t["name"] or "").startswith("Sensors") for t in ts)
                        and not any("road:" in str(t["custom"]) for t in ts))
    assert any(t["type"] == "choroplethmap" for t in found)
    WebDriverWait(dash_duo.driver, 10).until(lambda d: query(dash_duo).get("layers") == "districts,transit,vehicles")
    assert dash_duo.get_logs() == []


def test_replay_moves_through_the_window(dash_duo, app, city):
    open_page(dash_duo, app, "?range=1h")
    label = dash_duo.find_element("#explore-frame")
    WebDriverWait(dash_duo.driver, 20).until(lambda _: "frame 60 of 60" in label.text)
    dash_duo.find_element("#explore-play").click()
    seen = set()
    WebDriverWait(dash_duo.driver, 20).until(lambda _: seen.add(label.text) or len(seen) >= 3)
    assert "Pause" in dash_duo.find_element("#explore-play").text
    dash_duo.find_element("#explore-play").click()  # pause: the URL now names the frame
    WebDriverWait(dash_duo.driver, 10).until(lambda _: "t" in query(dash_duo))
    t = datetime.fromisoformat(query(dash_duo)["t"].replace("Z", "+00:00"))
    now = datetime.now(timezone.utc)
    assert now - timedelta(minutes=62) <= t < now
    paused = label.text
    dash_duo.find_element("#explore-prev").click()
    WebDriverWait(dash_duo.driver, 10).until(lambda _: label.text != paused)
    assert dash_duo.get_logs() == []


def test_drill_down_district_and_sensor(dash_duo, app, city):
    open_page(dash_duo, app, "?range=6h")
    click_map(dash_duo, f"district:{city.district}")
    dash_duo.wait_for_contains_text("#explore-panel-title", "District", timeout=20)
    kpis = dash_duo.find_element("#explore-panel-kpis").text
    assert "Congestion" in kpis or "congestion" in kpis.lower()
    assert "%" in dash_duo.find_element("#explore-panel-completeness").text
    alerts = dash_duo.find_element("#explore-panel-alerts").text
    assert "critical" in alerts and "Congestion index" in alerts
    assert query(dash_duo)["sel"] == f"district:{city.district}"
    panel_series = wait_traces(dash_duo, lambda ts: ts[0]["n"] >= 0, graph="explore-panel-series")
    assert panel_series
    shot(dash_duo, "drilldown")
    click_map(dash_duo, f"sensor:{city.sensor}")
    dash_duo.wait_for_contains_text("#explore-panel-dead-letters", "speed is not a number", timeout=20)
    readings = dash_duo.find_element("#explore-panel-readings").text
    assert "speed" in readings and "flow" in readings
    assert "health" not in readings
    assert "Sensor silent" in dash_duo.find_element("#explore-panel-alerts").text
    dash_duo.find_element("#explore-panel-close").click()
    WebDriverWait(dash_duo.driver, 10).until(lambda _: "sel" not in query(dash_duo))
    assert dash_duo.get_logs() == []


def test_comparison_shows_differences_and_overlaid_series(dash_duo, app, city):
    open_page(dash_duo, app, f"?range=1h&cmp=prev_week&t={frame(city, 10)}")
    found = wait_traces(dash_duo, lambda ts: any(t["type"] == "choroplethmap" for t in ts))
    z = [v for v in next(t for t in found if t["type"] == "choroplethmap")["z"] if v is not None]
    # last week the counters were 8 km/h slower: congestion was higher then, so the change is <= 0
    assert z and all(v <= 1e-9 for v in z) and any(v < -1 for v in z)
    series = wait_traces(dash_duo, lambda ts: len(ts) == 2, graph="explore-series")
    assert series[1]["name"] == "Previous week" and series[1]["n"] == 0 or series[1]["name"] == "Previous week"
    shot(dash_duo, "compare")
    assert dash_duo.get_logs() == []


def test_url_round_trip_and_back_forward(dash_duo, app, city):
    search = "?layers=districts,sensors&kpi=arterial_speed&range=6h&speed=4&sel=district:" + city.district
    open_page(dash_duo, app, search)
    dash_duo.wait_for_contains_text("#explore-panel-title", "District", timeout=20)
    assert "Arterial" in dash_duo.find_element("#explore-kpi").text or "arterial" in \
        dash_duo.find_element("#explore-kpi").text.lower()
    assert dash_duo.find_element("#explore-speed").text.startswith("4")
    before = query(dash_duo)
    dash_duo.find_element("#explore-next").click()  # at the last frame: stays; then step back
    dash_duo.find_element("#explore-prev").click()
    WebDriverWait(dash_duo.driver, 10).until(lambda d: "t" in query(dash_duo))
    stepped = dash_duo.driver.current_url
    # the frame's time (the label's first part): its index moves when the window slides a minute
    frame_time = lambda: dash_duo.find_element("#explore-frame").text.split(" · ")[0]  # noqa: E731
    WebDriverWait(dash_duo.driver, 10).until(lambda _: "frame 359 of 360" in dash_duo.find_element(
        "#explore-frame").text or "frame 358 of 360" in dash_duo.find_element("#explore-frame").text)
    stepped_time = frame_time()
    assert query(dash_duo)["t"]
    assert query(dash_duo)["kpi"] == "arterial_speed" and query(dash_duo)["speed"] == "4"
    dash_duo.driver.back()
    WebDriverWait(dash_duo.driver, 10).until(lambda d: query(dash_duo) == before)
    dash_duo.wait_for_contains_text("#explore-frame", "frame 360 of 360", timeout=20)
    dash_duo.driver.forward()
    WebDriverWait(dash_duo.driver, 10).until(lambda d: d.current_url == stepped)
    WebDriverWait(dash_duo.driver, 20).until(lambda _: frame_time() == stepped_time)
    # a fresh browser tab on the link shows the same view (the same frame time)
    dash_duo.driver.get(stepped)
    dash_duo.wait_for_element("#explore-frame", timeout=20)
    WebDriverWait(dash_duo.driver, 20).until(lambda _: frame_time() == stepped_time)
    dash_duo.wait_for_contains_text("#explore-panel-title", "District", timeout=20)
    assert dash_duo.get_logs() == []


def test_bad_url_values_give_translated_messages(dash_duo, app):
    open_page(dash_duo, app, "?range=forever&kpi=nope&lang=pt-BR")
    text = dash_duo.find_element("#explore-problems").text
    assert "forever" in text and "Período desconhecido" in text and "nope" in text
    dash_duo.wait_for_contains_text("#explore-frame", "quadro", timeout=20)


def test_export_csv_equals_the_database(dash_duo, city, mqtt_broker, web_layers_dir):
    from core.db import close_all

    add_user(city.db_url, "planner-export", PASSWORD, "planner")
    app = make_app(city, mqtt_broker, web_layers_dir, auth_mode="builtin", secret_key="k" * 40,
                   session_cookie_secure=False)
    try:
        dash_duo.server(app)  # "/" asks for a sign-in: do not wait for the Dash entry point there
        dash_duo._url = dash_duo.server.url
        login(dash_duo, "planner-export", PASSWORD, next_path="/explore")
        dash_duo.driver.get(f"{dash_duo.server_url}/explore?range=6h&layers=districts,roads&t={frame(city, 5)}"
                            f"&sel=sensor:{city.sensor}")
        dash_duo.wait_for_element("#explore-export-readings", timeout=20)
        WebDriverWait(dash_duo.driver, 20).until(
            lambda _: "/api/v1/" in (dash_duo.find_element("#explore-export-csv").get_attribute("href") or ""))
        session = requests.Session()
        for c in dash_duo.driver.get_cookies():
            session.cookies.set(c["name"], c["value"])
        href = dash_duo.find_element("#explore-export-csv").get_attribute("href")
        assert requests.get(href, timeout=30).status_code == 401  # not without the session
        rows = list(csv.DictReader(io.StringIO(session.get(href, timeout=30).text)))
        args = parse_qs(urlsplit(href).query)
        start = datetime.fromisoformat(args["from"][0].replace("Z", "+00:00"))
        end = datetime.fromisoformat(args["to"][0].replace("Z", "+00:00"))
        assert args["resolution"] == ["1m"] and timedelta(hours=6) <= end - start <= timedelta(hours=6, minutes=1)
        with psycopg.connect(city.db_url) as conn:
            truth = conn.execute(
                "SELECT bucket, scope_id, value FROM kpi_1m WHERE kpi_id = 'congestion_index' AND scope_type = "
                "'district' AND bucket >= %s AND bucket < %s ORDER BY scope_id, bucket", (start, end)).fetchall()
        assert len(truth) > 100
        assert [(datetime.fromisoformat(r["bucket"].replace("Z", "+00:00")), r["scope_id"],
                 float(r["value"]) if r["value"] else None) for r in rows] == [tuple(t) for t in truth]
        # the sensor panel's raw readings
        href = dash_duo.find_element("#explore-export-readings").get_attribute("href")
        rows = list(csv.DictReader(io.StringIO(session.get(href, timeout=30).text)))
        args = parse_qs(urlsplit(href).query)
        with psycopg.connect(city.db_url) as conn:
            truth = conn.execute(
                "SELECT time, metric, value FROM readings_named WHERE sensor_id = %s AND time >= %s AND time < %s "
                "ORDER BY time, metric", (city.sensor, args["from"][0], args["to"][0])).fetchall()
        assert len(truth) > 300
        assert [(datetime.fromisoformat(r["time"].replace("Z", "+00:00")), r["metric"], float(r["value"]))
                for r in rows] == [tuple(t) for t in truth]
        geo = session.get(dash_duo.find_element("#explore-export-geojson").get_attribute("href"), timeout=30).json()
        assert geo["type"] == "FeatureCollection" and len(geo["features"]) == 20
        # the roads on the map, as GeoJSON and CSV of the same frame
        roads = session.get(dash_duo.find_element("#explore-export-roads-geojson").get_attribute("href"),
                            timeout=30).json()
        table = list(csv.DictReader(io.StringIO(session.get(
            dash_duo.find_element("#explore-export-roads-csv").get_attribute("href"), timeout=30).text)))
        assert len(roads["features"]) == len(table) > 0
        assert {f["properties"]["id"] for f in roads["features"]} == {r["id"] for r in table}
        assert dash_duo.get_logs() == []
    finally:
        close_all()
