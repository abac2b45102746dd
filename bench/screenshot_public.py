"""Screenshots of the public view for the docs: ``.venv/bin/python bench/screenshot_public.py pt-BR ja``.

Run it while ``make run`` serves the demo city (http://127.0.0.1:8050); it opens ``/public/?lang=``
in headless Chromium at 1280 px wide (as embedded in a city's page), waits for the map and the
trend, and writes the whole page to ``docs/screenshots/public-<lang>.png``.  Not a benchmark: it
lives here with the other one-command tools that need a running product.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
URL = "http://127.0.0.1:8050/public/?lang={}"
WIDTH = 1280


def shoot(driver, lang: str) -> Path:
    driver.set_window_size(WIDTH, 1500)
    driver.get(URL.format(lang))
    for _ in range(60):
        if driver.execute_script("return document.querySelectorAll("
                                 "'#public-map .js-plotly-plot, #public-trend .js-plotly-plot').length") >= 2:
            break
        time.sleep(0.5)
    time.sleep(4)  # the map's tiles-free base layers and the choropleth draw after the plot exists
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WIDTH, min(height + 20, 2600))
    time.sleep(2)
    path = OUT / f"public-{lang}.png"
    driver.save_screenshot(str(path))
    return path


def main(langs: list[str]) -> int:
    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--enable-unsafe-swiftshader", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        for lang in langs or ["pt-BR"]:
            print(shoot(driver, lang))
    finally:
        driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
