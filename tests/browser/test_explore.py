"""The planner explorer in headless Chromium against a real TimescaleDB (demo city, seeded readings).

Map clicks are sent as Plotly ``clickData`` through ``dash_clientside.set_props``
(headless WebGL cannot be clicked on reliably); everything after that - the
callbacks, the queries, the panel - is the real thing.
"""
from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from core.settings import Settings
from tests.auth_tools import add_user, login
from tests.integration.test_api import PASSWORD, seed_city

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


def traces(browser, graph="explore-map") -> list[dict]:
    return browser.driver.execute_script(
        "const g = document.querySelector('#" + graph + " .js-plotly-plot');"
        "return g && g.data ? g.data.map(t => ({type: t.type, name: t.name, n: (t.locations || t.lon || []).length,"
        " z: t.z || null, custom: (t.customdata || []).slice(0, 3)})) : null;")


def wait_traces(browser, check, graph="explore-map", timeout=20):
    found = []

    def ok(_):
        found[:] = traces(browser, graph) or []
        return bool(found) and check(found)

    WebDriverWait(browser.driver, timeout).until(ok)
    return found


def query(browser) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(browser.driver.current_url).query).items()}


def click_map(browser, customdata: str):
    browser.driver.execute_script(
        "window.dash_clientside.set_props('explore-map', {clickData: {points: [{customdata: arguments[0]}]}});",
        customdata)


def shot(browser, screenshots, name: str):
    """Only for `make screenshots` (CITYDASH_SCREENSHOTS_DIR): resizing the window costs seconds."""
    if screenshots.published:
        import time

        browser.driver.set_window_size(1600, 1000)
        time.sleep(2)  # the map redraws at the new size and fetches its layers
        browser.driver.save_screenshot(str(screenshots.path(f"explore-{name}.png")))


def open_page(browser, app, search: str):
    browser.start_server(app)
    browser.wait_for_page(url=f"{browser.server_url}/explore{search}")
    browser.wait_for_element("#explore-map .js-plotly-plot", timeout=20)


def frame(city, minutes_back: int) -> str:
    return (city.now - timedelta(minutes=minutes_back)).strftime("%Y-%m-%dT%H:%MZ")


@pytest.mark.screenshots
def test_layer_toggles_legend_and_hover_data(browser, app, city, screenshots):
    open_page(browser, app, "?layers=districts,roads,sensors,transit,vehicles&kinds=traffic_counter&range=6h"
              f"&t={frame(city, 3)}")
    found = wait_traces(browser, lambda ts: any(t["type"] == "scattermap" and "Sensors" in (t["name"] or "")
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
    shot(browser, screenshots, "layers")
    # toggle roads and sensors off: their traces go, the URL follows
    for label in ("Roads", "Sensors"):
        box = browser.driver.find_element(By.XPATH, f"//*[@id='explore-layers']//label[normalize-space()='{label}']")
        box.click()
    found = wait_traces(browser, lambda ts: not any((t["name"] or "").startswith("Sensors") for t in ts)
                        and not any("road:" in str(t["custom"]) for t in ts))
    assert any(t["type"] == "choroplethmap" for t in found)
    WebDriverWait(browser.driver, 10).until(lambda d: query(browser).get("layers") == "districts,transit,vehicles")
    assert browser.get_logs() == []


def test_replay_moves_through_the_window(browser, app, city):
    open_page(browser, app, "?range=1h")
    label = browser.find_element("#explore-frame")
    WebDriverWait(browser.driver, 20).until(lambda _: "frame 60 of 60" in label.text)
    browser.find_element("#explore-play").click()
    seen = set()
    WebDriverWait(browser.driver, 20).until(lambda _: seen.add(label.text) or len(seen) >= 3)
    assert "Pause" in browser.find_element("#explore-play").text
    browser.find_element("#explore-play").click()  # pause: the URL now names the frame
    WebDriverWait(browser.driver, 10).until(lambda _: "t" in query(browser))
    t = datetime.fromisoformat(query(browser)["t"].replace("Z", "+00:00"))
    now = datetime.now(timezone.utc)
    assert now - timedelta(minutes=62) <= t < now
    paused = label.text
    browser.find_element("#explore-prev").click()
    WebDriverWait(browser.driver, 10).until(lambda _: label.text != paused)
    assert browser.get_logs() == []


@pytest.mark.screenshots
def test_drill_down_district_and_sensor(browser, app, city, screenshots):
    open_page(browser, app, "?range=6h")
    click_map(browser, f"district:{city.district}")
    browser.wait_for_contains_text("#explore-panel-title", "District", timeout=20)
    kpis = browser.find_element("#explore-panel-kpis").text
    assert "Congestion" in kpis or "congestion" in kpis.lower()
    assert "%" in browser.find_element("#explore-panel-completeness").text
    alerts = browser.find_element("#explore-panel-alerts").text
    assert "critical" in alerts and "Congestion index" in alerts
    assert query(browser)["sel"] == f"district:{city.district}"
    panel_series = wait_traces(browser, lambda ts: ts[0]["n"] >= 0, graph="explore-panel-series")
    assert panel_series
    shot(browser, screenshots, "drilldown")
    click_map(browser, f"sensor:{city.sensor}")
    browser.wait_for_contains_text("#explore-panel-dead-letters", "speed is not a number", timeout=20)
    readings = browser.find_element("#explore-panel-readings").text
    assert "speed" in readings and "flow" in readings
    assert "health" not in readings
    assert "Sensor silent" in browser.find_element("#explore-panel-alerts").text
    browser.find_element("#explore-panel-close").click()
    WebDriverWait(browser.driver, 10).until(lambda _: "sel" not in query(browser))
    assert browser.get_logs() == []


@pytest.mark.screenshots
def test_comparison_shows_differences_and_overlaid_series(browser, app, city, screenshots):
    open_page(browser, app, f"?range=1h&cmp=prev_week&t={frame(city, 10)}")
    found = wait_traces(browser, lambda ts: any(t["type"] == "choroplethmap" for t in ts))
    z = [v for v in next(t for t in found if t["type"] == "choroplethmap")["z"] if v is not None]
    # last week the counters were 8 km/h slower: congestion was higher then, so the change is <= 0
    assert z and all(v <= 1e-9 for v in z) and any(v < -1 for v in z)
    series = wait_traces(browser, lambda ts: len(ts) == 2, graph="explore-series")
    assert series[1]["name"] == "Previous week" and series[1]["n"] == 0 or series[1]["name"] == "Previous week"
    shot(browser, screenshots, "compare")
    assert browser.get_logs() == []


def test_url_round_trip_and_back_forward(browser, app, city):
    search = "?layers=districts,sensors&kpi=arterial_speed&range=6h&speed=4&sel=district:" + city.district
    open_page(browser, app, search)
    browser.wait_for_contains_text("#explore-panel-title", "District", timeout=20)
    assert "Arterial" in browser.find_element("#explore-kpi").text or "arterial" in \
        browser.find_element("#explore-kpi").text.lower()
    assert browser.find_element("#explore-speed").text.startswith("4")
    before = query(browser)
    browser.find_element("#explore-next").click()  # at the last frame: stays; then step back
    browser.find_element("#explore-prev").click()
    WebDriverWait(browser.driver, 10).until(lambda d: "t" in query(browser))
    stepped = browser.driver.current_url
    # the frame's time (the label's first part): its index moves when the window slides a minute
    frame_time = lambda: browser.find_element("#explore-frame").text.split(" · ")[0]  # noqa: E731
    WebDriverWait(browser.driver, 10).until(lambda _: "frame 359 of 360" in browser.find_element(
        "#explore-frame").text or "frame 358 of 360" in browser.find_element("#explore-frame").text)
    stepped_time = frame_time()
    assert query(browser)["t"]
    assert query(browser)["kpi"] == "arterial_speed" and query(browser)["speed"] == "4"
    browser.driver.back()
    WebDriverWait(browser.driver, 10).until(lambda d: query(browser) == before)
    browser.wait_for_contains_text("#explore-frame", "frame 360 of 360", timeout=20)
    browser.driver.forward()
    WebDriverWait(browser.driver, 10).until(lambda d: d.current_url == stepped)
    WebDriverWait(browser.driver, 20).until(lambda _: frame_time() == stepped_time)
    # a fresh browser tab on the link shows the same view (the same frame time)
    browser.driver.get(stepped)
    browser.wait_for_element("#explore-frame", timeout=20)
    WebDriverWait(browser.driver, 20).until(lambda _: frame_time() == stepped_time)
    browser.wait_for_contains_text("#explore-panel-title", "District", timeout=20)
    assert browser.get_logs() == []


def test_bad_url_values_give_translated_messages(browser, app):
    open_page(browser, app, "?range=forever&kpi=nope&lang=pt-BR")
    text = browser.find_element("#explore-problems").text
    assert "forever" in text and "Período desconhecido" in text and "nope" in text
    browser.wait_for_contains_text("#explore-frame", "quadro", timeout=20)


def test_export_csv_equals_the_database(browser, city, mqtt_broker, web_layers_dir):
    from core.db import close_all

    add_user(city.db_url, "planner-export", PASSWORD, "planner")
    app = make_app(city, mqtt_broker, web_layers_dir, auth_mode="builtin", secret_key="k" * 40,
                   session_cookie_secure=False)
    try:
        browser.start_server(app, navigate=False)  # "/" asks for a sign-in: no Dash entry point there
        login(browser, "planner-export", PASSWORD, next_path="/explore")
        browser.driver.get(f"{browser.server_url}/explore?range=6h&layers=districts,roads&t={frame(city, 5)}"
                            f"&sel=sensor:{city.sensor}")
        browser.wait_for_element("#explore-export-readings", timeout=20)
        WebDriverWait(browser.driver, 20).until(
            lambda _: "/api/v1/" in (browser.find_element("#explore-export-csv").get_attribute("href") or ""))
        session = requests.Session()
        for c in browser.driver.get_cookies():
            session.cookies.set(c["name"], c["value"])
        href = browser.find_element("#explore-export-csv").get_attribute("href")
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
        href = browser.find_element("#explore-export-readings").get_attribute("href")
        rows = list(csv.DictReader(io.StringIO(session.get(href, timeout=30).text)))
        args = parse_qs(urlsplit(href).query)
        with psycopg.connect(city.db_url) as conn:
            truth = conn.execute(
                "SELECT time, metric, value FROM readings_named WHERE sensor_id = %s AND time >= %s AND time < %s "
                "ORDER BY time, metric", (city.sensor, args["from"][0], args["to"][0])).fetchall()
        assert len(truth) > 300
        assert [(datetime.fromisoformat(r["time"].replace("Z", "+00:00")), r["metric"], float(r["value"]))
                for r in rows] == [tuple(t) for t in truth]
        geo = session.get(browser.find_element("#explore-export-geojson").get_attribute("href"), timeout=30).json()
        assert geo["type"] == "FeatureCollection" and len(geo["features"]) == 20
        # the roads on the map, as GeoJSON and CSV of the same frame
        roads = session.get(browser.find_element("#explore-export-roads-geojson").get_attribute("href"),
                            timeout=30).json()
        table = list(csv.DictReader(io.StringIO(session.get(
            browser.find_element("#explore-export-roads-csv").get_attribute("href"), timeout=30).text)))
        assert len(roads["features"]) == len(table) > 0
        assert {f["properties"]["id"] for f in roads["features"]} == {r["id"] for r in table}
        assert browser.get_logs() == []
    finally:
        close_all()
