"""``python -m ingest [command]``: the ingest service and its tools.

Commands: ``run`` (default, the MQTT ingestor), ``migrate``, ``simulate``, ``settings``.
The local development stack is ``python -m devtools stack start|stop|status``.
"""
from __future__ import annotations

import argparse
import sys

from core.logs import setup_logging
from core.settings import describe, get_settings
from ingest.migrate import migrate
from ingest.simulate import cli as simulate_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the MQTT ingestor (default)")
    sub.add_parser("migrate", help="apply pending schema migrations")
    sub.add_parser("settings", help="print every setting with its value (secrets masked)")
    simulate = sub.add_parser("simulate", help="publish a living city pack over MQTT, "
                              "optionally after a history backfill (docs/simulator.md)")
    simulate_cli.add_arguments(simulate, get_settings())
    args = parser.parse_args(argv)
    command = args.command or "run"
    setup_logging()

    if command == "migrate":
        applied = migrate(get_settings().database_url)
        print(f"migrations applied: {applied or 'none (up to date)'}")
    elif command == "simulate":
        return simulate_cli.run(args, get_settings())
    elif command == "settings":
        for name, value, help_text in describe(get_settings()):
            print(f"{name}={value}\n    {help_text}")
    else:
        # deferred: the service pulls in paho and the worker process machinery, which the
        # other commands do not need
        from ingest.service import run_forever

        return run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
