"""The status page shows the stack's real health, in every language."""
from __future__ import annotations

import psycopg
import pytest


@pytest.mark.parametrize("lang,title,up", [
    ("en", "System status", "reachable"),
    ("pt-BR", "Estado do sistema", "acessível"),
    ("ja", "システム状態", "接続可"),
])
def test_status_page_shows_database_values(browser, dashboard_app, db_url, lang, title, up):
    with psycopg.connect(db_url) as conn:
        for i in range(1234):
            conn.execute("INSERT INTO sensors (external_id) VALUES (%s)", (f"s-{i}",))
        migration = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
    browser.start_server(dashboard_app)
    browser.wait_for_page(url=f"{browser.server_url}/?lang={lang}")
    browser.wait_for_contains_text("h1", title, timeout=10)
    table = browser.find_element(".status-table").text
    assert table.count(up) == 2  # database and broker
    expected_count = {"en": "1,234", "pt-BR": "1.234", "ja": "1,234"}[lang]
    assert expected_count in table
    assert str(migration) in table
    assert "apache" in table
    assert browser.get_logs() == []
