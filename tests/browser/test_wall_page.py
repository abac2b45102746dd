"""The operator wall (/wall) in headless Chromium against a real TimescaleDB.

Views and languages show the database's values; the stale banner appears when
ingestion stops; operators acknowledge, viewers cannot; no request leaves
localhost; screenshots of every view at 1920x1080 (a temporary folder; docs/screenshots/ with
`make screenshots`).
"""
from __future__ import annotations

import json
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from dashboard import i18n
from dashboard.city import city
from kpis.catalogue import load_catalogue
from dashboard.server import create_app
from kpis import rollup
from tests.browser.harness import new_chrome, quit_chrome
from tests.integration.kpi_data import insert, now_minute, seed

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "layers" / "demo_city"
DISTRICTS = [(f["properties"]["id"], f["properties"]["name"], f["geometry"])
             for f in json.loads((PACK / "districts.geojson").read_text())["features"]]
ROADS = [f["properties"]["id"] for f in json.loads((PACK / "roads.geojson").read_text())["features"]
         if f["properties"].get("class") in ("arterial", "motorway", "collector")]
D0, D1 = DISTRICTS[0][0], DISTRICTS[1][0]
# traffic counters on 60 major roads, three per district, speeds 15..64 km/h, free flow 60 km/h
SPEEDS = [15 + (i * 13) % 50 for i in range(60)]
SENSORS = [
    ("p1", "parking", D0, {"capacity": 100}), ("p2", "parking", D0, {"capacity": 300}),
    ("sl1", "streetlight", D0, {}), ("sl2", "streetlight", D1, {}),
] + [(f"tc{i}", "traffic_counter", DISTRICTS[i % len(DISTRICTS)][0],
      {"road": ROADS[i * 5 % len(ROADS)], "free_flow_kmh": 60, "road_class": "arterial"}) for i in range(60)]
CONSTANT = {"p1": {"occupancy": 50}, "p2": {"occupancy": 100}, "sl1": {"fault": 1}, "sl2": {"fault": 0},
            **{f"tc{i}": {"speed": v} for i, v in enumerate(SPEEDS)}}
VEHICLES = [("bus-1", "101", 60, -56.09, -15.60), ("bus-2", "101", 300, -56.07, -15.58),
            ("bus-3", "202", 100, -56.11, -15.62)]
# hand-computed: parking capacity-weighted (50*100 + 100*300) / 400; congestion: extra travel time
# 100 * (mean(60 / speed, at least 1) - 1); one streetlight of two in fault; on time (delay < 180 s):
# two vehicles of three
CONGESTION = 100 * (sum(max(60 / v, 1) for v in SPEEDS) / len(SPEEDS) - 1)
EXPECTED = {"parking_occupancy": (87.5, 1), "congestion_index": (CONGESTION, 1), "streetlight_faults": (50.0, 1),
            "on_time_performance": (200 / 3, 1)}
VIEW_KPIS = {"overview": ["parking_occupancy", "congestion_index", "on_time_performance", "streetlight_faults"],
             "mobility": ["parking_occupancy", "congestion_index"], "transport": ["on_time_performance"],
             "infrastructure": ["streetlight_faults"]}


def fill_city(db_url: str, newest_age: timedelta = timedelta(seconds=5)) -> datetime:
    """Ten minutes of constant readings (the newest ``newest_age`` old) and vehicle positions, rolled up;
    the demo city's districts; a warning alert on a district and a silent sensor (map markers)."""
    from psycopg.types.json import Jsonb

    base = now_minute()
    newest = datetime.now(timezone.utc) - newest_age
    with psycopg.connect(db_url, autocommit=True) as conn:
        for did, name, geometry in DISTRICTS:
            conn.execute("INSERT INTO districts (id, name, geometry) VALUES (%s, %s, %s)", (did, name, Jsonb(geometry)))
        ids = seed(conn, SENSORS)
        conn.execute("UPDATE sensors SET lon = -56.08, lat = -15.59 WHERE external_id = 'sl2'")
        rows = []
        for minute in range(10):
            t = min(base - timedelta(minutes=minute) + timedelta(seconds=10), newest)
            for ext, metrics in CONSTANT.items():
                rows += [(t, ids[ext], m, float(v)) for m, v in metrics.items()]
            for vehicle, route, delay, lon, lat in VEHICLES:
                conn.execute("INSERT INTO vehicle_positions (time, vehicle, route, lon, lat, delay_s) "
                             "VALUES (%s, %s, %s, %s, %s, %s)", (t, vehicle, route, lon, lat, delay))
        insert(conn, rows)
        rollup.rebuild(conn, base - timedelta(hours=2), base + timedelta(minutes=1))
        conn.execute("INSERT INTO alerts (kpi_id, scope_type, scope_id, kind, severity, value, threshold, details) "
                     "VALUES ('congestion_index', 'district', %s, 'threshold', 'warning', 55, 40, "
                     "'{\"unit\": \"%%\"}'), (NULL, 'sensor', 'sl2', 'health', 'warning', NULL, NULL, '{}')", (D1,))
        conn.execute("UPDATE alerts SET kpi_id = 'sensor_silent' WHERE scope_type = 'sensor'")
        return conn.execute("SELECT max(time) FROM readings").fetchone()[0]


def wall_settings(settings, **changes):
    return settings.model_copy(update={"wall_refresh_s": 2, **changes})


@pytest.fixture
def wall_app(settings):
    from dashboard import cache
    from core.db import close_all

    apps = []

    def make(**changes):
        cache.clear()
        app = create_app(wall_settings(settings, **changes))
        apps.append(app)
        return app

    yield make
    close_all()


def tiles(browser) -> dict[str, dict]:
    return browser.driver.execute_script("""
        const out = {};
        document.querySelectorAll('.wall-tile').forEach(t => {
          if (t.classList.contains('wall-hidden')) return;
          const q = s => (t.querySelector(s) || {}).textContent || '';
          out[q('.wall-tile-label')] = {value: q('.wall-tile-value'), status: q('.wall-tile-status'),
                                        conf: q('.wall-tile-conf'), trend: q('.wall-trend')};
        });
        return out;""")


def set_screen(browser, width: int, height: int) -> None:
    browser.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                    {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def wait_tiles(browser, label: str, timeout: float = 15) -> dict:
    WebDriverWait(browser.driver, timeout).until(lambda d: label in tiles(browser))
    return tiles(browser)


@pytest.mark.screenshots
def test_every_view_and_language_shows_the_database_values(browser, wall_app, db_url, settings, screenshots):
    fill_city(db_url)
    browser.start_server(wall_app())
    cat = load_catalogue(settings.city_pack)
    set_screen(browser, 1920, 1080)
    for lang in ("en", "pt-BR", "ja"):
        for view, kpis in VIEW_KPIS.items():
            browser.driver.get(f"{browser.server_url}/wall?view={view}&lang={lang}")
            browser.wait_for_text_to_equal("#wall-view-name", i18n.t(f"wall.view.{view}", lang), timeout=15)
            found = wait_tiles(browser, cat[kpis[0]].text(lang)[0])
            for kpi_id in kpis:
                value, digits = EXPECTED[kpi_id]
                tile = found[cat[kpi_id].text(lang)[0]]
                assert tile["value"] == i18n.number(value, lang, digits), (lang, view, kpi_id, tile)
            # status by word and shape: congestion +100 % is beyond critical (70), parking 87.5 is fine (< 92)
            if "congestion_index" in kpis:
                assert found[cat["congestion_index"].text(lang)[0]]["status"] == "◆ " + i18n.t("wall.status.critical", lang)
                assert found[cat["parking_occupancy"].text(lang)[0]]["status"] == "● " + i18n.t("wall.status.ok", lang)
            assert browser.find_element("main.wall").get_attribute("lang") == lang
            no_scroll = browser.driver.execute_script(
                "return document.scrollingElement.scrollHeight <= window.innerHeight + 1")
            assert no_scroll, f"/wall?view={view}&lang={lang} scrolls at 1920x1080"
            if lang == "en":
                WebDriverWait(browser.driver, 15).until(
                    lambda d: d.execute_script("return !!document.querySelector('#wall-map canvas')"))
                time.sleep(1.5)  # let MapLibre draw the layers fetched from /layers
                browser.driver.save_screenshot(str(screenshots.path(f"wall-{view}.png")))
    # 4K: same layout, still no scrolling
    set_screen(browser, 3840, 2160)
    browser.driver.get(f"{browser.server_url}/wall?view=overview&lang=en")
    wait_tiles(browser, cat["parking_occupancy"].text("en")[0])
    assert browser.driver.execute_script("return document.scrollingElement.scrollHeight <= window.innerHeight + 1")
    logs = browser.get_logs()
    assert logs == [], [l["message"][-300:] for l in logs]


def test_confidence_and_trend_come_from_the_engine(browser, wall_app, db_url, settings):
    newest = fill_city(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:  # the same parking readings one week ago, at half
        ids = dict(conn.execute("SELECT external_id, id FROM sensors").fetchall())
        week = now_minute() - timedelta(days=7)
        insert(conn, [(week - timedelta(minutes=m) + timedelta(seconds=10), ids[p], "occupancy", v / 2)
                      for m in range(10) for p, v in (("p1", 50.0), ("p2", 100.0))])
        rollup.rebuild(conn, week - timedelta(hours=1), week + timedelta(hours=1))
    browser.start_server(wall_app())
    cat = load_catalogue(settings.city_pack)
    browser.driver.get(f"{browser.server_url}/wall?view=mobility&lang=en")
    tile = wait_tiles(browser, cat["parking_occupancy"].text("en")[0])[cat["parking_occupancy"].text("en")[0]]
    # 87.5 now against 43.75 a week ago: +100 %, worse (lower is better)
    assert tile["trend"] == i18n.t("wall.trend.up", "en", change=i18n.percent(1.0, "en")) + " (worse)"
    assert tile["conf"] == i18n.t("wall.confidence", "en", value="100%", sensors="2", expected="2")
    tz = city(settings.city_pack).timezone
    assert browser.find_element("#wall-freshness").text == i18n.t("wall.as_of", "en",
                                                                    time=i18n.time_text(newest, "en", tz))


def test_stale_banner_appears_when_ingestion_stops(browser, wall_app, db_url):
    fill_city(db_url, newest_age=timedelta(seconds=1))
    browser.start_server(wall_app(wall_refresh_s=1, wall_stale_after_s=8))
    fresh_reading(db_url)
    browser.driver.get(f"{browser.server_url}/wall?lang=en")
    browser.wait_for_element("#wall-freshness", timeout=15)
    WebDriverWait(browser.driver, 10).until(  # fresh data: no banner (at most one refresh behind)
        lambda d: "wall-hidden" in d.find_element(By.ID, "wall-banner").get_attribute("class"))
    # no more readings arrive: within a few refreshes the banner shows, with the newest reading's time
    WebDriverWait(browser.driver, 20).until(
        lambda d: "wall-stale" in d.find_element(By.ID, "wall-banner").get_attribute("class"))
    assert browser.find_element("#wall-banner").text.startswith("Stale data: the newest reading is from ")
    # ingestion resumes: the banner goes away by itself
    fresh_reading(db_url)
    WebDriverWait(browser.driver, 20).until(
        lambda d: "wall-hidden" in d.find_element(By.ID, "wall-banner").get_attribute("class"))


def fresh_reading(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        sid = conn.execute("SELECT id FROM sensors WHERE external_id = 'p1'").fetchone()[0]
        insert(conn, [(datetime.now(timezone.utc), sid, "occupancy", 50.0)])


def open_alert(db_url: str) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute(
            "INSERT INTO alerts (kpi_id, scope_type, scope_id, kind, severity, value, threshold, details) "
            "VALUES ('parking_occupancy', 'district', %s, 'threshold', 'critical', 99.0, 98.0, "
            "'{\"unit\": \"%%\"}') RETURNING id", (D0,)).fetchone()[0]


def click_when_ready(driver, css: str, timeout: float = 15) -> None:
    """Click ``css`` once it is there: the wall's refresh may re-render it between finding and
    clicking (a stale element), so find it again until one click goes through."""
    def attempt(d) -> bool:
        try:
            d.find_element(By.CSS_SELECTOR, css).click()
            return True
        except (NoSuchElementException, StaleElementReferenceException):
            return False
    WebDriverWait(driver, timeout).until(attempt)


def test_operator_acknowledges_and_viewer_cannot(browser, wall_app, db_url):
    from tests.auth_tools import add_user, login

    fill_city(db_url)
    alert = open_alert(db_url)
    add_user(db_url, "vera", "viewer-password-1", "viewer")
    add_user(db_url, "otto", "operator-password-1", "operator")
    # "/" asks for a sign-in: do not wait for the Dash entry point there
    browser.start_server(wall_app(auth_mode="builtin", secret_key="w" * 40, session_cookie_secure=False),
                         navigate=False)
    browser.driver.get(f"{browser.server_url}/wall")
    assert "/login" in browser.driver.current_url  # anonymous: sent to sign in

    login(browser, "vera", "viewer-password-1", next_path="/wall")
    browser.driver.get(f"{browser.server_url}/wall?lang=en")
    browser.wait_for_contains_text("#wall-takeover", "CRITICAL ALERT", timeout=15)
    browser.wait_for_contains_text("#wall-alerts", f"Parking occupancy · district {D0}", timeout=10)
    assert browser.driver.find_elements(By.CSS_SELECTOR, ".wall-ack-open") == []

    browser.driver.delete_all_cookies()
    login(browser, "otto", "operator-password-1", next_path="/wall")
    browser.driver.get(f"{browser.server_url}/wall?lang=en")
    browser.wait_for_element(".wall-ack-open", timeout=15)
    click_when_ready(browser.driver, ".wall-ack-open")
    browser.wait_for_text_to_equal("#wall-ack-title", f"Acknowledge alert #{alert}", timeout=10)
    browser.find_element("#wall-ack-confirm").click()  # no comment: refused, nothing written
    browser.wait_for_text_to_equal("#wall-ack-message", "A comment is required.", timeout=10)
    browser.find_element("#wall-ack-comment").send_keys("crew sent to the car park")
    browser.find_element("#wall-ack-confirm").click()
    browser.wait_for_text_to_equal("#wall-ack-message", f"Alert #{alert} acknowledged by otto.", timeout=10)
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT state, acknowledged_by, ack_comment FROM alerts WHERE id = %s", (alert,)).fetchone()
        audit = conn.execute("SELECT actor, detail->>'alert' FROM audit_log WHERE action = 'alert.acknowledge'").fetchall()
    assert row == ("acknowledged", "otto", "crew sent to the car park")
    assert audit == [("otto", str(alert))]
    # the critical alert gives its slot back; the list shows who acknowledged
    WebDriverWait(browser.driver, 15).until(
        lambda d: "wall-hidden" in d.find_element(By.ID, "wall-takeover").get_attribute("class"))
    browser.wait_for_contains_text("#wall-alerts", "acknowledged by otto: crew sent to the car park", timeout=10)


def test_no_request_leaves_localhost(browser, wall_app, db_url):
    """Chromium's own network log (--log-net-log) of a second browser: every URL it asked for."""
    fill_city(db_url)
    browser.start_server(wall_app(wall_refresh_s=1))
    log = Path(tempfile.mkdtemp(prefix="citydash-netlog-")) / "net.json"
    # the harness's options already keep Chromium's own background traffic (updates, sync) off
    driver = new_chrome("--window-size=1920,1080", f"--log-net-log={log}", "--net-log-capture-mode=Default",
                        "--disable-domain-reliability", "--disable-client-side-phishing-detection",
                        "--no-default-browser-check", "--disable-default-apps",
                        "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter")
    try:
        driver.get(f"{browser.server_url}/wall?rotate=5&views=overview,mobility,transport,infrastructure&lang=ja")
        WebDriverWait(driver, 20).until(lambda d: d.execute_script(
            "return !!document.querySelector('#wall-map canvas') && document.querySelectorAll('.wall-tile').length > 0"))
        time.sleep(12)  # refreshes, two view rotations, map layers fetched
        resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    finally:
        quit_chrome(driver)
    text = log.read_text()
    if not text.rstrip().endswith("}"):  # a log cut short by the exit still lists every request
        text = text.rstrip().rstrip(",") + "]}"
    events = [e for e in json.loads(text)["events"] if isinstance(e.get("params"), dict)]
    # requests the page (documents, its workers) caused carry the page's origin as initiator;
    # Chromium's own background requests (component updates, time sync) carry "not an origin"
    initiated = {e["source"]["id"] for e in events if e["params"].get("initiator") not in (None, "not an origin")}
    urls = {e["params"]["url"] for e in events if "url" in e["params"] and e["source"]["id"] in initiated}
    urls |= set(resources)
    assert any("/layers/city/districts.geojson" in u for u in urls)  # the log does see the map's requests
    assert any("/_dash-update-component" in u for u in urls)
    outside = sorted(u for u in urls if urlsplit(u).scheme in ("http", "https", "ws", "wss")
                     and urlsplit(u).hostname not in ("127.0.0.1", "localhost"))
    assert outside == [], outside
