"""The public view in Chromium: real figures, language switch, keyboard use, axe-core, CSP."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from tests.auth_tools import with_sign_in
from tests.integration.test_public_views import seed_public

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "var" / "vendor" / "axe-core-4.14.1" / "axe.min.js"


def _axe_source() -> str:
    if not AXE.is_file():
        pytest.fail(f"{AXE.relative_to(ROOT)} is missing: run `make deps` (devtools/stack/install.sh "
                    "fetches axe-core with `npm pack`)", pytrace=False)
    return AXE.read_text(encoding="utf-8")


@pytest.fixture
def public_app(settings, db_url):
    from dashboard import cache
    from core.db import close_all
    from dashboard.server import create_app

    seed_public(db_url)
    app = create_app(with_sign_in(settings))
    cache.clear()
    yield app
    close_all()


def _open(browser, app, lang: str):
    browser.start_server(app, navigate=False)  # "/" needs sign-in
    browser.driver.get(f"{browser.server.url}/public/?lang={lang}")
    browser.wait_for_element("#public-map-data", timeout=20)


def test_public_view_shows_figures_and_switches_language(browser, public_app):
    _open(browser, public_app, "pt-BR")
    browser.wait_for_contains_text("h1", "painel da cidade", timeout=10)
    table = browser.find_element("#public-map-data").text
    assert "Pascoal Ramos" in table and "Não exibido (poucos sensores)" in table
    assert browser.driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "pt-BR"
    # keyboard: choose another area with the arrow keys inside the radio group
    area = browser.driver.find_element(By.CSS_SELECTOR, "#public-area input[value='city']")
    area.send_keys(Keys.SPACE)
    area.send_keys(Keys.ARROW_DOWN)
    WebDriverWait(browser.driver, 10).until(lambda d: "Centro-Sul" in d.execute_script(
        "const c = document.querySelector('#public-trend-data caption'); return c ? c.textContent : ''"))
    assert browser.driver.switch_to.active_element.get_attribute("value") == "centro-sul"
    browser.driver.find_element(By.CSS_SELECTOR, "a[lang='ja']").click()
    browser.wait_for_contains_text("h1", "市のダッシュボード", timeout=10)
    # no request left the host and no CSP violation or script error was logged
    logs = [entry for entry in browser.get_logs() or [] if entry.get("level") == "SEVERE"]
    assert logs == []


def test_public_view_has_no_serious_accessibility_violations(browser, public_app):
    _open(browser, public_app, "en")
    browser.wait_for_element("#public-map .js-plotly-plot", timeout=20)
    driver = browser.driver
    driver.execute_script(_axe_source())
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa',"
        " 'best-practice']}}).then(r => done(JSON.stringify(r.violations))).catch(e => done('ERROR ' + e));")
    assert not result.startswith("ERROR"), result
    violations = json.loads(result)
    serious = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in violations
               if v["impact"] in ("serious", "critical")]
    assert serious == [], json.dumps(serious)
    # axe really ran against the page: it checked the page's tables and form controls
    assert driver.execute_script("return document.querySelectorAll('table caption').length") >= 1


def test_public_view_can_be_embedded_but_wall_cannot(browser, public_app):
    browser.start_server(public_app, navigate=False)
    base = browser.server.url
    driver = browser.driver
    driver.get(f"{base}/login")
    driver.execute_script(
        "for (const [id, src] of [['pub', arguments[0]], ['wall', arguments[1]]]) {"
        "  const f = document.createElement('iframe'); f.id = id; f.src = src; f.title = id;"
        "  document.body.appendChild(f); }", f"{base}/public/?lang=en", f"{base}/login")
    # /login refuses framing (frame-ancestors 'none'); /public/ allows 'self' by default
    import time

    deadline = time.monotonic() + 20
    public_ok = False
    while time.monotonic() < deadline and not public_ok:
        driver.switch_to.frame("pub")
        public_ok = bool(driver.find_elements(By.ID, "public-map-data"))
        driver.switch_to.default_content()
        time.sleep(0.3)
    assert public_ok
    driver.switch_to.frame("wall")
    assert driver.find_elements(By.ID, "login-name") == []
    driver.switch_to.default_content()
