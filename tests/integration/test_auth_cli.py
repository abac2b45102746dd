"""`python -m dashboard`: users, audit purge, publish - against the real database."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
from werkzeug.security import check_password_hash

ROOT = Path(__file__).resolve().parents[2]


def _cli(db_url, *args, stdin=""):
    env = dict(os.environ, CITYDASH_DATABASE_URL=db_url, CITYDASH_LOG_FORMAT="text")
    return subprocess.run([sys.executable, "-m", "dashboard", *args], input=stdin, capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=60)


def test_users_commands(db_url):
    added = _cli(db_url, "users", "add", "maria", "--role", "operator", "--password-stdin",
                 stdin="a long password here\n")
    assert added.returncode == 0, added.stderr
    assert "a long password here" not in added.stdout + added.stderr
    with psycopg.connect(db_url) as conn:
        role, digest = conn.execute("SELECT role, password_hash FROM users WHERE name = 'maria'").fetchone()
    assert role == "operator" and check_password_hash(digest, "a long password here")
    again = _cli(db_url, "users", "add", "maria", "--role", "viewer", "--password-stdin", stdin="another password!\n")
    assert again.returncode == 2 and "exists already" in again.stderr
    short = _cli(db_url, "users", "add", "joao", "--role", "viewer", "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "at least 10" in short.stderr
    bad_name = _cli(db_url, "users", "add", "x y", "--role", "viewer", "--password-stdin", stdin="long enough pw\n")
    assert bad_name.returncode == 2
    assert _cli(db_url, "users", "role", "maria", "admin").returncode == 0
    assert _cli(db_url, "users", "disable", "maria").returncode == 0
    listed = _cli(db_url, "users", "list").stdout
    assert "maria\tadmin\tdisabled" in listed
    assert _cli(db_url, "users", "passwd", "nobody", "--password-stdin", stdin="a long password\n").returncode == 2


def test_audit_purge_and_publish(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO audit_log (at, actor, action) VALUES (now() - interval '400 days', 'a', 'sign_in'), "
                     "(now() - interval '2 days', 'b', 'sign_in')")
    purged = _cli(db_url, "audit", "purge")
    assert purged.returncode == 0 and "deleted 1 audit entries older than 365 days" in purged.stdout
    published = _cli(db_url, "publish")
    assert published.returncode == 0, published.stderr
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT actor FROM audit_log").fetchall() == [("b",)]
        n = conn.execute("SELECT count(*) FROM published_kpis").fetchone()[0]
    assert f"{n} KPIs published" in published.stdout and n > 0
    down = _cli("postgresql://nobody@127.0.0.1:1/none", "users", "list")
    assert down.returncode == 1 and "cannot connect to the database" in down.stderr
