"""``python -m dashboard``: manage sign-in users, the audit log and the published KPIs.

    python -m dashboard users add NAME --role operator      # asks for the password
    echo "$PW" | python -m dashboard users add NAME --role planner --password-stdin
    python -m dashboard users list | passwd NAME | role NAME ROLE | disable NAME | enable NAME
    python -m dashboard audit purge                          # CITYDASH_AUDIT_RETENTION_DAYS
    python -m dashboard publish                              # public KPIs from the catalogue

Runs with the owner connection (``CITYDASH_DATABASE_URL``).
"""
from __future__ import annotations

import argparse
import getpass
import sys

import psycopg

from core.settings import get_settings
from dashboard.auth import users
from dashboard.public.queries import publish


def _password(args) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise users.UserError("the passwords differ")
    return first


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboard", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    u = sub.add_parser("users", help="sign-in users").add_subparsers(dest="action", required=True)
    add = u.add_parser("add", help="add a user")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=users.ROLES)
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    pw = u.add_parser("passwd", help="set a user's password")
    pw.add_argument("name")
    pw.add_argument("--password-stdin", action="store_true")
    role = u.add_parser("role", help="change a user's role")
    role.add_argument("name")
    role.add_argument("role", choices=users.ROLES)
    for name in ("disable", "enable"):
        u.add_parser(name, help=f"{name} a user").add_argument("name")
    u.add_parser("list", help="list users")
    a = sub.add_parser("audit", help="audit log").add_subparsers(dest="action", required=True)
    a.add_parser("purge", help="delete entries older than CITYDASH_AUDIT_RETENTION_DAYS")
    sub.add_parser("publish", help="write the catalogue's public KPIs to published_kpis")
    args = parser.parse_args(argv)

    settings = get_settings()
    try:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            return _run(args, conn, settings)
    except users.UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except psycopg.OperationalError as exc:
        print(f"error: cannot connect to the database: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1


def _run(args, conn, settings) -> int:
    if args.command == "users":
        if args.action == "add":
            user = users.add_user(conn, users.check_name(args.name), _password(args), args.role)
            print(f"added {user.name} ({user.role})")
        elif args.action == "passwd":
            users.set_password(conn, args.name, _password(args))
            print(f"password of {args.name} changed")
        elif args.action == "role":
            users.set_role(conn, args.name, args.role)
            print(f"{args.name} is now {args.role}")
        elif args.action in ("disable", "enable"):
            users.set_disabled(conn, args.name, args.action == "disable")
            print(f"{args.name} {args.action}d")
        else:
            for name, role, disabled, last in users.list_users(conn):
                print(f"{name}\t{role}\t{'disabled' if disabled else 'enabled'}\t{last or '-'}")
    elif args.command == "audit":
        n = conn.execute("SELECT purge_audit_log(%s)", (settings.audit_retention_days,)).fetchone()[0]
        print(f"deleted {n} audit entries older than {settings.audit_retention_days} days")
    elif args.command == "publish":
        n = publish(conn, settings)
        print(f"{n} KPIs published")
    return 0


if __name__ == "__main__":
    sys.exit(main())
