"""Signing in through the real /login page in Chromium."""
from __future__ import annotations

import psycopg
import pytest
from selenium.webdriver.common.by import By

from tests.auth_tools import add_user, login, with_sign_in

PASSWORD = "a very good password"


@pytest.fixture
def auth_app(settings):
    from core.db import close_all
    from dashboard.server import create_app

    app = create_app(with_sign_in(settings))
    yield app
    close_all()


def test_sign_in_reaches_the_status_page_and_is_audited(browser, auth_app, db_url):
    add_user(db_url, "lucia", PASSWORD, "operator")
    browser.start_server(auth_app, navigate=False)
    driver = browser.driver
    driver.get(f"{browser.server.url}/?lang=ja")
    assert "/login" in driver.current_url  # anonymous: sent to the sign-in page
    with pytest.raises(AssertionError, match="sign-in failed"):
        login(browser, "lucia", "wrong password!")
    login(browser, "lucia", PASSWORD, next_path="/%3Flang%3Den")
    browser.wait_for_contains_text("h1", "System status", timeout=15)
    with psycopg.connect(db_url) as conn:
        actions = conn.execute("SELECT actor, action FROM audit_log ORDER BY id").fetchall()
    assert actions == [("anonymous", "sign_in_failed"), ("lucia", "sign_in")]
    driver.get(f"{browser.server.url}/logout")
    assert driver.find_elements(By.ID, "login-name")
    driver.get(f"{browser.server.url}/")
    assert "/login" in driver.current_url
