"""The public_view schema: published KPIs only, city and district only, suppression, delay, privileges.

``seed_public`` (materialised KPI rows inserted as the owner) is shared with the other public tests.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from kpis.catalogue import load_catalogue
from dashboard.public.queries import public_entries, publish, snapshot
from core.settings import replace_user
from tests.auth_tools import add_user


DISTRICTS = {"pascoal-ramos": "Pascoal Ramos", "centro-sul": "Centro-Sul", "tiny": "Tiny"}


def minute_now() -> datetime:
    return datetime.now(timezone.utc).replace(second=0, microsecond=0)


def seed_public(db_url: str, minutes: int = 60, values: dict | None = None) -> datetime:
    """Districts and ``minutes`` of kpi_1m rows up to the current minute.

    ``congestion_index`` (public, min_group 3 by default): city 10 sensors,
    pascoal-ramos 5, centro-sul 4, tiny 1 (below min_group); also a road row.
    ``energy_demand`` (not public) city and district rows.
    Values: ``values[(kpi, scope_id)]`` or a default that grows with the minute.
    """
    values = values or {}
    now = minute_now()
    with psycopg.connect(db_url, autocommit=True) as conn:
        for did, name in DISTRICTS.items():
            conn.execute("INSERT INTO districts (id, name, geometry) VALUES (%s, %s, '{}') "
                         "ON CONFLICT DO NOTHING", (did, name))
        rows = []
        scopes = [("congestion_index", "city", "", 10), ("congestion_index", "district", "pascoal-ramos", 5),
                  ("congestion_index", "district", "centro-sul", 4), ("congestion_index", "district", "tiny", 1),
                  ("congestion_index", "road", "road-7", 6),
                  ("energy_demand", "city", "", 12), ("energy_demand", "district", "centro-sul", 6)]
        for i in range(minutes):
            bucket = now - timedelta(minutes=minutes - 1 - i)
            for kpi, st, sid, sensors in scopes:
                value = values.get((kpi, sid), 20.0 + i * 0.1 + len(sid))
                rows.append((bucket, kpi, st, sid, value, sensors, sensors))
        with conn.cursor().copy("COPY kpi_1m (bucket, kpi_id, scope_type, scope_id, value, sensors, expected) "
                                "FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    return now


def _as(db_url: str, role: str):
    return psycopg.connect(replace_user(db_url, f"citydash_{role}"), autocommit=True)


@pytest.fixture
def published(db_url, settings):
    now = seed_public(db_url)
    with _as(db_url, "reader") as conn:
        n = publish(conn, settings)
    return now, n


def test_published_set_is_the_catalogues_public_kpis(published, db_url, settings):
    _, n = published
    expected = {e["kpi_id"] for e in public_entries(load_catalogue(settings.city_pack))}
    assert n == len(expected) and "congestion_index" in expected and "energy_demand" not in expected
    with _as(db_url, "public") as conn:
        rows = conn.execute("SELECT kpi_id, min_group, delay_s FROM public_view.kpis").fetchall()
    assert {r[0] for r in rows} == expected
    assert all(r[1] >= 1 and r[2] == 0 for r in rows)


def test_views_show_only_public_kpis_city_and_districts(published, db_url):
    with _as(db_url, "public") as conn:
        kpis = {r[0] for r in conn.execute("SELECT DISTINCT kpi_id FROM public_view.kpi_series WHERE resolution = '1m'")}
        scopes = {tuple(r) for r in conn.execute(
            "SELECT DISTINCT scope_type, scope_id FROM public_view.kpi_series WHERE resolution = '1m'")}
    assert kpis == {"congestion_index"}
    assert ("road", "road-7") not in scopes
    assert scopes == {("city", ""), ("district", "pascoal-ramos"), ("district", "centro-sul"),
                      ("district", "tiny")}


def test_small_groups_are_suppressed(published, db_url, settings):
    min_group = load_catalogue(settings.city_pack)["congestion_index"].min_group
    assert 1 < min_group <= 4  # the seeded groups straddle it
    with _as(db_url, "public") as conn:
        rows = conn.execute("SELECT scope_id, bool_and(value IS NULL), bool_and(suppressed) "
                            "FROM public_view.kpi_series WHERE resolution = '1m' GROUP BY 1").fetchall()
    state = {sid: (null, sup) for sid, null, sup in rows}
    assert state["tiny"] == (True, True)
    assert state["pascoal-ramos"] == (False, False) and state[""] == (False, False)


def test_publication_delay(db_url, settings):
    now = seed_public(db_url)
    with _as(db_url, "reader") as conn:
        publish(conn, settings.model_copy(update={"public_delay_s": 900}))
    with _as(db_url, "public") as conn:
        newest = conn.execute("SELECT max(bucket) FROM public_view.kpi_series WHERE resolution = '1m'").fetchone()[0]
        snap = snapshot(conn)
    assert newest <= now - timedelta(minutes=15)
    assert newest >= now - timedelta(minutes=17)
    assert snap.delay_s == 900
    assert max(p.at for p in snap.latest.values()) == newest
    with _as(db_url, "reader") as conn:
        publish(conn, settings)  # delay back to 0
    with _as(db_url, "public") as conn:
        assert conn.execute("SELECT max(bucket) FROM public_view.kpi_series WHERE resolution = '1m'").fetchone()[0] >= \
            now - timedelta(minutes=1)


def test_snapshot_reads_latest_and_trend(published, db_url):
    now, _ = published
    with _as(db_url, "public") as conn:
        snap = snapshot(conn)
    city = snap.latest[("congestion_index", "city", "")]
    # the running minute is not published: the newest value is the previous minute's
    assert city.value == pytest.approx(20.0 + 58 * 0.1) and not city.suppressed
    assert snap.latest[("congestion_index", "district", "tiny")].suppressed
    assert ("energy_demand", "city", "") not in snap.latest
    trend = snap.series[("congestion_index", "city", "")]
    assert 4 <= len(trend) <= 5  # an hour of 15-minute bins
    assert snap.districts["centro-sul"] == "Centro-Sul"


def test_hourly_values_only_for_complete_hours(published, db_url):
    now, _ = published
    hour = now.replace(minute=0)
    with psycopg.connect(db_url, autocommit=True) as conn:
        for bucket in (hour, hour - timedelta(hours=1)):
            conn.execute("INSERT INTO kpi_1h (bucket, kpi_id, scope_type, scope_id, value, sensors, expected) "
                         "VALUES (%s, 'congestion_index', 'city', '', 33, 9, 9)", (bucket,))
    with _as(db_url, "public") as conn:
        rows = conn.execute("SELECT bucket, value FROM public_view.kpi_series WHERE resolution = '1h'").fetchall()
    assert rows == [(hour - timedelta(hours=1), 33.0)]  # the running hour is not published


@pytest.mark.parametrize("statement", [
    "SELECT * FROM public.kpi_1m", "SELECT * FROM public.readings", "SELECT * FROM public.sensors",
    "SELECT * FROM public.vehicle_positions", "SELECT * FROM public.users", "SELECT * FROM public.audit_log",
    "SELECT * FROM public.published_kpis", "SELECT * FROM public.alerts", "SELECT * FROM public.districts",
    "SELECT * FROM public.auth_lookup('admin')", "SELECT public.publish_kpis('[]', 0)",
    "INSERT INTO public.audit_log (actor, action) VALUES ('x', 'y')",
])
def test_public_role_reaches_nothing_else(db_url, statement):
    with _as(db_url, "public") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


@pytest.mark.parametrize("statement", [
    "SELECT * FROM users", "UPDATE users SET role = 'admin'", "INSERT INTO users VALUES ('x', 'admin', 'h')",
    "SELECT * FROM audit_log", "UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log",
    "SELECT purge_audit_log(1)", "INSERT INTO published_kpis (kpi_id, min_group) VALUES ('x', 1)",
])
def test_reader_role_least_privilege(db_url, statement):
    with _as(db_url, "reader") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_reader_may_append_to_the_audit_log_and_look_up_users(db_url):
    add_user(db_url, "rita", "a long enough password", "operator")
    with _as(db_url, "reader") as conn:
        conn.execute("INSERT INTO audit_log (actor, action, detail) VALUES ('rita', 'export', '{}')")
        row = conn.execute("SELECT name, role, password_hash LIKE 'scrypt:%' FROM auth_lookup('rita')").fetchone()
        assert row == ("rita", "operator", True)
        assert conn.execute("SELECT auth_role('nobody')").fetchone()[0] is None
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE users SET disabled = true")
    with _as(db_url, "reader") as conn:
        assert conn.execute("SELECT count(*) FROM auth_lookup('rita')").fetchone()[0] == 0
