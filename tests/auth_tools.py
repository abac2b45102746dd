"""Helpers for tests that sign in: users in the test database, browser and HTTP sign-in.

    add_user(db_url, name, password, role)          # owner connection, hashed password
    login(browser, name, password)                  # through the real /login form (the browser fixture)
    login_session(requests_session, base_url, name, password)
"""
from __future__ import annotations

import re

import psycopg

from dashboard.auth.users import User
from dashboard.auth.users import add_user as _add_user


def add_user(db_url: str, name: str, password: str, role: str) -> User:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return _add_user(conn, name, password, role)


def login(browser, name: str, password: str, next_path: str = "/") -> None:
    """Sign in through the /login page in the browser; waits until it left the page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # start the app with browser.start_server(app, navigate=False): with sign-in on,
    # "/" redirects to /login and the wait for the Dash entry point would fail.
    browser.driver.get(f"{browser.server.url}/login?next={next_path}")
    browser.wait_for_element("#login-name", timeout=10)
    driver = browser.driver
    driver.find_element(By.ID, "login-name").send_keys(name)
    driver.find_element(By.ID, "login-password").send_keys(password)
    driver.find_element(By.ID, "login-submit").click()
    WebDriverWait(driver, 10).until(lambda d: "/login" not in d.current_url
                                    or d.find_elements(By.ID, "login-error"))
    errors = driver.find_elements(By.ID, "login-error")
    if errors:
        raise AssertionError(f"sign-in failed: {errors[0].text}")


def login_session(session, base_url: str, name: str, password: str):
    """Sign ``session`` (a requests.Session) in; returns the final response."""
    page = session.get(f"{base_url}/login", timeout=10)
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    if not match:
        raise AssertionError(f"no sign-in form at {base_url}/login (status {page.status_code})")
    response = session.post(f"{base_url}/login", data={
        "csrf": match[1], "name": name, "password": password, "next": "/"},
        allow_redirects=False, timeout=10)
    if response.status_code != 302:
        raise AssertionError(f"sign-in as {name!r} failed with status {response.status_code}")
    return response


def with_sign_in(settings, **extra):
    """``settings`` with built-in sign-in on (a fixed secret, session cookie over plain HTTP)."""
    return settings.model_copy(update={"auth_mode": "builtin", "secret_key": "t" * 40,
                                       "session_cookie_secure": False, **extra})
