"""``python -m devtools stack start|stop|status``: the local TimescaleDB + Mosquitto under ``var/``.

Development and test tooling only (``make stack``, ``make run``); production code never
imports :mod:`devtools`.
"""
from __future__ import annotations

import argparse
import sys

from core.logs import setup_logging
from devtools.stack import StackError, local


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    stack = sub.add_parser("stack", help="the local TimescaleDB + Mosquitto under var/")
    stack.add_argument("action", choices=["start", "stop", "status"])
    args = parser.parse_args(argv)
    setup_logging()
    try:
        if args.action == "start":
            for key, value in local.start().items():
                print(f"{key}={value}")
        elif args.action == "stop":
            local.stop()
            print("stack stopped")
        else:
            pg, mq = local.services()
            print(f"timescaledb: {'running' if pg.running() else 'stopped'} ({pg.url})")
            print(f"mosquitto:   {'running' if mq.running() else 'stopped'} ({mq.url})")
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
