"""The browser tests' own harness: the app on a real threaded werkzeug server, Debian's Chromium via selenium 4.

Replaces ``dash[testing]``'s ``dash_duo`` (which pins selenium<=4.2) with the small part of its API
the tests use, as the ``browser`` fixture (registered by tests/browser/conftest.py)::

    browser.start_server(app, navigate=True)   # a Dash app or a Flask/WSGI app (Dash's app.server)
    browser.server.url == browser.server_url   # http://127.0.0.1:<free port>
    browser.driver                             # selenium.webdriver.Chrome (started on first use)
    browser.find_element(css) / find_elements(css)
    browser.wait_for_element(css, timeout=10)
    browser.wait_for_contains_text(css, text, timeout=10)
    browser.wait_for_text_to_equal(css, text, timeout=10)
    browser.wait_for_page(url=None, timeout=10) # open url (default server_url), wait for Dash's entry point
    browser.get_logs()                          # the console's SEVERE entries since the last call

Chromium and its driver are Debian's (``make deps``); a missing one fails the test, never skips it.
Screenshots go to a temporary folder unless ``CITYDASH_SCREENSHOTS_DIR`` names one (``make
screenshots`` sets docs/screenshots); a failing test leaves a screenshot and the page's HTML
in its tmp_path.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server

ROOT = Path(__file__).resolve().parents[2]
CHROMEDRIVER = Path(os.environ.get("CITYDASH_CHROMEDRIVER", "/usr/bin/chromedriver"))
CHROMIUM = Path(os.environ.get("CITYDASH_CHROMIUM", "/usr/bin/chromium"))
CHROME_ARGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
    "--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
)
DEFAULT_TIMEOUT = 10
DASH_ENTRY = "#react-entry-point"


class _QuietHandler(WSGIRequestHandler):
    """No access-log line per request (errors are still logged)."""

    def log_request(self, code="-", size="-"):
        pass


class AppServer:
    """``app`` (a Dash app or any WSGI app) on a threaded werkzeug server, in a daemon thread."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        wsgi = getattr(app, "server", app)  # dash.Dash -> its Flask app
        self._http = make_server(host, port, wsgi, threaded=True, request_handler=_QuietHandler)
        self.host, self.port = host, self._http.server_port
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self._http.serve_forever, name=f"app-server-{self.port}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._http.shutdown()
            self._thread.join(timeout=10)
        self._http.server_close()


def _missing(path: Path, package: str) -> None:
    pytest.fail(f"{path} is missing: the browser tests need Debian's {package}. "
                "Run `make deps` (devtools/stack/install.sh installs chromium and chromium-driver).",
                pytrace=False)


def new_chrome(*extra_args: str, user_data_dir: Path | None = None):
    """A headless Chromium driven by Debian's chromedriver, with a fresh profile (removed on ``quit``
    only if the caller removes ``driver.citydash_profile``); the console's SEVERE entries are kept
    for ``get_log("browser")``."""
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    if not CHROMEDRIVER.exists():
        _missing(CHROMEDRIVER, "chromium-driver")
    if not CHROMIUM.exists():
        _missing(CHROMIUM, "chromium")
    profile = user_data_dir or Path(tempfile.mkdtemp(prefix="citydash-chrome-"))
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (*CHROME_ARGS, *extra_args, f"--user-data-dir={profile}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "SEVERE"})
    try:
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    except WebDriverException as exc:
        shutil.rmtree(profile, ignore_errors=True)
        pytest.fail(f"Chromium could not start through {CHROMEDRIVER}: {exc.msg or exc}", pytrace=False)
    driver.citydash_profile = profile
    return driver


def quit_chrome(driver) -> None:
    try:
        driver.quit()
    finally:
        profile = getattr(driver, "citydash_profile", None)
        if profile:
            shutil.rmtree(profile, ignore_errors=True)


class Browser:
    """What the tests drive: one app server and one Chromium, both started on first use."""

    def __init__(self):
        self._driver = None
        self.server: AppServer | None = None
        self.server_url: str | None = None

    @property
    def driver(self):
        if self._driver is None:
            self._driver = new_chrome()
            self._driver.implicitly_wait(2)  # as dash_duo: find_element waits up to 2 s
        return self._driver

    def start_server(self, app, navigate: bool = True, port: int = 0, timeout: float = DEFAULT_TIMEOUT):
        """Serve ``app``; with ``navigate`` open its root page and wait for Dash's entry point
        (pass ``navigate=False`` when "/" asks for a sign-in)."""
        if self.server is not None:
            self.server.stop()
        self.server = AppServer(app, port=port)
        self.server_url = self.server.url
        if navigate:
            self.wait_for_page(timeout=timeout)
        return self.server

    # -- elements
    def find_element(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_elements(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def _wait(self, condition, timeout: float | None, message):
        from selenium.common.exceptions import TimeoutException, WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        try:
            return WebDriverWait(self.driver, timeout, ignored_exceptions=(WebDriverException,)).until(condition)
        except TimeoutException:
            raise TimeoutException(f"after {timeout} s: {message()}") from None

    def wait_for_element(self, css: str, timeout: float | None = None):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC

        return self._wait(EC.presence_of_element_located((By.CSS_SELECTOR, css)), timeout,
                          lambda: f"no element {css}")

    def _text(self, css: str) -> tuple[str, str | None]:
        element = self.find_element(css)
        return str(element.text), element.get_attribute("value")

    def _seen(self, css: str) -> str:
        try:
            text, value = self._text(css)
            return f"found {text!r}" + (f" (value {value!r})" if value is not None else "")
        except Exception:  # noqa: BLE001  (the message of a timeout)
            return f"{css} not found"

    def wait_for_contains_text(self, css: str, text: str, timeout: float | None = None):
        """Until the element's text (or its value) contains ``text``."""
        def check(_):
            seen, value = self._text(css)
            return text in seen or (value is not None and text in str(value))

        return self._wait(check, timeout, lambda: f"{text!r} not in {css}: {self._seen(css)}")

    def wait_for_text_to_equal(self, css: str, text: str, timeout: float | None = None):
        """Until the element's text (or its value) equals ``text``."""
        def check(_):
            seen, value = self._text(css)
            return seen == text or (value is not None and str(value) == text)

        return self._wait(check, timeout, lambda: f"{css} is not {text!r}: {self._seen(css)}")

    def wait_for_page(self, url: str | None = None, timeout: float | None = None):
        """Open ``url`` (default: the server's root) and wait until Dash's React entry point exists."""
        self.driver.get(self.server_url if url is None else url)
        try:
            self.wait_for_element(DASH_ENTRY, timeout)
        except Exception as exc:
            logs = "\n".join(str(entry) for entry in self.get_logs())
            body = self.driver.execute_script("return document.body ? document.body.innerHTML : ''")
            raise AssertionError(f"the Dash entry point {DASH_ENTRY} did not load from "
                                 f"{self.driver.current_url}: {exc}\nHTML => {body[:2000]}\n"
                                 f"console => {logs}") from None

    def get_logs(self) -> list[dict]:
        """The browser console's SEVERE entries since the previous call (as dash_duo.get_logs)."""
        return [entry for entry in self.driver.get_log("browser") if entry.get("level") == "SEVERE"]

    # -- end
    def save_failure(self, folder: Path) -> list[Path]:
        if self._driver is None:
            return []
        folder.mkdir(parents=True, exist_ok=True)
        saved = [folder / "failure.png", folder / "failure.html"]
        try:
            self._driver.save_screenshot(str(saved[0]))
            saved[1].write_text(self._driver.page_source, encoding="utf-8")
        except Exception as exc:  # noqa: BLE001  (the browser itself may be what failed)
            print(f"browser: no failure screenshot ({exc})", file=sys.stderr)
            return []
        return saved

    def close(self) -> None:
        try:
            if self._driver is not None:
                quit_chrome(self._driver)
        finally:
            self._driver = None
            if self.server is not None:
                self.server.stop()
                self.server = None


@dataclass(frozen=True)
class Screenshots:
    """Where the browser tests save screenshots: ``folder`` is a session temp dir unless
    ``CITYDASH_SCREENSHOTS_DIR`` is set (then ``published`` is true: ``make screenshots``)."""
    folder: Path
    published: bool

    def path(self, name: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / name


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"_citydash_report_{report.when}", report)


@pytest.fixture
def browser(request, tmp_path):
    """The app server and Chromium of one test (see the module docstring)."""
    b = Browser()
    try:
        yield b
    finally:
        report = getattr(request.node, "_citydash_report_call", None)
        if report is not None and report.failed:
            for path in b.save_failure(tmp_path / "browser"):
                print(f"browser: saved {path}", file=sys.stderr)
        b.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Screenshots:
    target = os.environ.get("CITYDASH_SCREENSHOTS_DIR")
    if target:
        folder = Path(target) if Path(target).is_absolute() else ROOT / target
        return Screenshots(folder, True)
    return Screenshots(tmp_path_factory.mktemp("screenshots"), False)
