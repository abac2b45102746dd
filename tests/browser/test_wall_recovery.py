"""The wall survives a server restart by itself: banner while the server is gone, fresh data after."""
from __future__ import annotations

from datetime import datetime, timezone

import psycopg
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from dashboard import i18n
from dashboard.city import city
from dashboard.server import create_app
from devtools.stack import free_port
from tests.browser.harness import AppServer
from tests.browser.test_wall_page import fill_city
from tests.integration.kpi_data import insert


def serve(settings, port: int) -> AppServer:
    return AppServer(create_app(settings), port=port)


def test_wall_recovers_after_a_server_restart(browser, settings, db_url):
    from core.db import close_all

    fill_city(db_url)
    wall = settings.model_copy(update={"wall_refresh_s": 1, "wall_stale_after_s": 3600})
    port = free_port()
    http = serve(wall, port)
    driver = browser.driver
    try:
        driver.get(f"http://127.0.0.1:{port}/wall?lang=en")
        WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".wall-tile-value"))
        http.stop()  # the server is gone: connections refused
        WebDriverWait(driver, 30).until(
            lambda d: "wall-offline" in d.find_element(By.ID, "wall-offline").get_attribute("class"))
        assert driver.find_element(By.ID, "wall-offline").text.startswith("Server unreachable since ")
        clock = driver.find_element(By.ID, "wall-clock").text
        WebDriverWait(driver, 5).until(lambda d: d.find_element(By.ID, "wall-clock").text != clock)  # still ticking

        with psycopg.connect(db_url, autocommit=True) as conn:  # data arrives meanwhile
            sid = conn.execute("SELECT id FROM sensors WHERE external_id = 'p1'").fetchone()[0]
            now = datetime.now(timezone.utc)
            insert(conn, [(now, sid, "occupancy", 50.0)])
        close_all()
        http = serve(wall, port)  # restarted on the same address: nobody touches the screen
        WebDriverWait(driver, 30).until(
            lambda d: "wall-hidden" in d.find_element(By.ID, "wall-offline").get_attribute("class"))
        tz = city(settings.city_pack).timezone
        expected = i18n.t("wall.as_of", "en", time=i18n.time_text(now, "en", tz))
        WebDriverWait(driver, 15).until(lambda d: d.find_element(By.ID, "wall-freshness").text == expected)
    finally:
        http.stop()
        close_all()
