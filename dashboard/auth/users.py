"""Built-in users: hashed passwords (werkzeug's scrypt), roles, sign-in checks.

Users are managed with the owner connection (``python -m dashboard users ...``);
the dashboard's role ``citydash_reader`` only calls ``auth_lookup()``,
``auth_role()`` and ``auth_touch()`` (migration 0004) and never reads the table.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg
from werkzeug.security import check_password_hash, generate_password_hash

ROLES = ("viewer", "planner", "operator", "admin")
NAME_RE = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
# Checked against when a user does not exist, so a wrong name costs the same time.
_DUMMY_HASH = generate_password_hash("citydash-no-such-user")


class UserError(ValueError):
    """A user cannot be created or changed; the message says why."""


@dataclass(frozen=True)
class User:
    name: str
    role: str

    def has_role(self, role: str) -> bool:
        """Whether this user has ``role`` or a higher one (viewer < planner < operator < admin)."""
        if role not in ROLES or self.role not in ROLES:
            return False
        return ROLES.index(self.role) >= ROLES.index(role)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise UserError("user names are 1-64 letters, digits, '.', '_', '@' or '-'")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise UserError(f"passwords have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"passwords have at most {MAX_PASSWORD} characters")
    return password


def hash_password(password: str) -> str:
    return generate_password_hash(check_password(password))


# -- management (owner connection) ---------------------------------------------

def add_user(conn: psycopg.Connection, name: str, password: str, role: str) -> User:
    check_name(name)
    check_role(role)
    digest = hash_password(password)
    try:
        conn.execute("INSERT INTO users (name, role, password_hash) VALUES (%s, %s, %s)",
                     (name, role, digest))
    except psycopg.errors.UniqueViolation:
        raise UserError(f"user {name!r} exists already") from None
    return User(name, role)


def set_password(conn: psycopg.Connection, name: str, password: str) -> None:
    digest = hash_password(password)
    _update(conn, name, "password_hash = %s", digest)


def set_role(conn: psycopg.Connection, name: str, role: str) -> None:
    _update(conn, name, "role = %s", check_role(role))


def set_disabled(conn: psycopg.Connection, name: str, disabled: bool) -> None:
    _update(conn, name, "disabled = %s", disabled)


def _update(conn, name: str, assignment: str, value) -> None:
    cur = conn.execute(f"UPDATE users SET {assignment}, updated_at = now() WHERE name = %s",
                       (value, name))
    if cur.rowcount != 1:
        raise UserError(f"no user {name!r}")


def list_users(conn: psycopg.Connection) -> list[tuple[str, str, bool, object]]:
    return conn.execute("SELECT name, role, disabled, last_login_at FROM users ORDER BY name"
                        ).fetchall()


# -- sign-in (reader connection) -------------------------------------------------

def verify(conn: psycopg.Connection, name: str, password: str) -> User | None:
    """The user when ``name`` exists, is enabled and ``password`` matches, else None."""
    if not isinstance(name, str) or not NAME_RE.match(name) or not isinstance(password, str) \
            or len(password) > MAX_PASSWORD:
        check_password_hash(_DUMMY_HASH, "x")
        return None
    row = conn.execute("SELECT name, role, password_hash FROM auth_lookup(%s)", (name,)).fetchone()
    if row is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    if not check_password_hash(row[2], password):
        return None
    conn.execute("SELECT auth_touch(%s)", (name,))
    return User(row[0], row[1])


def role_of(conn: psycopg.Connection, name: str) -> str | None:
    """Current role of an enabled user (None: unknown or disabled)."""
    return conn.execute("SELECT auth_role(%s)", (name,)).fetchone()[0]
