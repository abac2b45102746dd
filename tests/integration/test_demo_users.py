"""``make run`` creates one demo user per role on a stack without users, once (devtools/devrun.py)."""
from __future__ import annotations

import stat

import psycopg

from dashboard.auth import users
from devtools.devrun import DEMO_USERS, _demo_users


def test_demo_users_created_once_with_working_passwords(settings, tmp_path, capsys):
    builtin = settings.model_copy(update={"auth_mode": "builtin"})
    _demo_users(builtin, tmp_path)
    path = tmp_path / "demo-users.txt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert len(lines) == len(DEMO_USERS)
    with psycopg.connect(settings.database_url) as conn:
        assert sorted((n, r) for n, r, *_ in users.list_users(conn)) == sorted(DEMO_USERS)
        for line in lines:  # "name (role): password"
            name, _, password = line.partition(": ")
            name, role = name.split(" (")
            user = users.verify(conn, name, password)
            assert user is not None and user.role == role.rstrip(")")
    first = path.read_text()
    capsys.readouterr()
    _demo_users(builtin, tmp_path)  # a second start changes nothing and says where they are
    assert path.read_text() == first
    assert str(path) in capsys.readouterr().out
    with psycopg.connect(settings.database_url) as conn:
        assert len(users.list_users(conn)) == len(DEMO_USERS)


def test_no_demo_users_without_builtin_sign_in(settings, tmp_path):
    _demo_users(settings, tmp_path)  # the tests' settings: auth_mode none
    assert not (tmp_path / "demo-users.txt").exists()
    with psycopg.connect(settings.database_url) as conn:
        assert users.list_users(conn) == []
