"""``python -m ingest [command]``: the ingest service and its tools.

Commands: ``run`` (default, the MQTT ingestor), ``migrate``, ``simulate``,
``stack start|stop|status``, ``settings``.
"""
from __future__ import annotations

import argparse
import sys

from ingest.logs import setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the MQTT ingestor (default)")
    sub.add_parser("migrate", help="apply pending schema migrations")
    sub.add_parser("settings", help="print every setting with its value (secrets masked)")
    stack = sub.add_parser("stack", help="the local TimescaleDB + Mosquitto under var/")
    stack.add_argument("action", choices=["start", "stop", "status"])
    simulate = sub.add_parser("simulate", help="publish a living city pack over MQTT, "
                              "optionally after a history backfill (docs/simulator.md)")
    from ingest.settings import get_settings as _settings
    from ingest.simulate.cli import add_arguments as _simulate_arguments

    _simulate_arguments(simulate, _settings())
    args = parser.parse_args(argv)
    command = args.command or "run"
    setup_logging()

    from ingest.stack import StackError

    try:
        if command == "migrate":
            from ingest.migrate import migrate
            from ingest.settings import get_settings

            applied = migrate(get_settings().database_url)
            print(f"migrations applied: {applied or 'none (up to date)'}")
        elif command == "simulate":
            from ingest.settings import get_settings
            from ingest.simulate.cli import run as simulate

            return simulate(args, get_settings())
        elif command == "settings":
            from ingest.settings import describe, get_settings

            for name, value, help_text in describe(get_settings()):
                print(f"{name}={value}\n    {help_text}")
        elif command == "stack":
            from ingest.stack import local

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
        else:
            from ingest.service import run_forever

            return run_forever()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
