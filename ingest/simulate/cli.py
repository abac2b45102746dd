"""``python -m ingest simulate``: bring a city pack to life (docs/simulator.md)."""
from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
import time
from datetime import datetime, timezone

import numpy as np
import psycopg

from core.settings import mask_url
from ingest.simulate.backfill import backfill
from ingest.simulate.city import load_city
from ingest.simulate.encoders import Encoder, parse_formats
from ingest.simulate.publisher import PublishError, run_connections
from ingest.simulate.world import World
from layers import PackError

log = logging.getLogger("ingest.simulate")

_RELATIVE = re.compile(r"^([+-]?\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_when(text: str, now: float) -> float:
    """``now``, a relative time (``-2h``, ``-30m``, ``-1.5d``) or an ISO 8601 time with offset,
    as UTC epoch seconds.  ValueError with a readable message otherwise."""
    text = text.strip()
    if text == "now":
        return now
    m = _RELATIVE.match(text)
    if m:
        return now + float(m.group(1)) * _UNITS[m.group(2)]
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither 'now', a relative time like -2h / -30m / -1d, "
                         "nor an ISO 8601 time") from None
    if dt.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset; add 'Z' or e.g. '-04:00'")
    return dt.timestamp()


def add_arguments(p: argparse.ArgumentParser, settings) -> None:
    p.add_argument("--pack", default=settings.city_pack, help="city pack folder (default: "
                   "CITYDASH_CITY_PACK, %(default)s)")
    p.add_argument("--seed", type=int, default=settings.simulate_seed, help="random seed")
    p.add_argument("--interval", "--rate-interval", type=float, dest="interval",
                   default=settings.simulate_interval_s,
                   help="simulated seconds between two reports of one sensor (%(default)s)")
    p.add_argument("--vehicle-interval", type=float, default=settings.simulate_vehicle_interval_s,
                   help="simulated seconds between two positions of one vehicle (%(default)s)")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second")
    p.add_argument("--start", default="now", help="simulated start time: now (default), -2h, "
                   "-1d, or ISO 8601; with --speed > 1 start in the past")
    p.add_argument("--duration", type=float, default=None,
                   help="wall seconds of live publishing (default: until Ctrl-C; 0: none)")
    p.add_argument("--formats", default=settings.simulate_formats,
                   help="share of sensors per format, e.g. native=70,senml=10,ngsi=10,ttn=10")
    p.add_argument("--connections", type=int, default=settings.simulate_connections,
                   help="MQTT connections (processes) to publish on")
    p.add_argument("--max-rate", type=float, default=0.0,
                   help="cap on messages per second (0: as fast as the simulation asks)")
    p.add_argument("--kinds", default="", help="only these sensor kinds (comma separated)")
    p.add_argument("--sensors", type=int, default=0, help="only the first N sensors (0: all)")
    p.add_argument("--no-vehicles", action="store_true", help="no buses or trams")
    p.add_argument("--fault-rate", type=float, default=0.004,
                   help="chance of a fault per sensor and 6 hours (%(default)s)")
    p.add_argument("--incident-rate", type=float, default=0.45,
                   help="chance of a road incident per 2 hours (%(default)s)")
    p.add_argument("--backfill-days", type=float, default=0.0,
                   help="first write this many days of history before --start, through the "
                   "database writer")
    p.add_argument("--backfill-from", default=None,
                   help="write history from this time (ISO 8601 or relative) up to --start")
    p.add_argument("--backfill-interval", type=float, default=None,
                   help="seconds between readings in the history (default: --interval)")
    p.add_argument("--backfill-vehicle-interval", type=float, default=60.0,
                   help="seconds between vehicle positions in the history (%(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _select(city, kinds: str, limit: int) -> np.ndarray:
    idx = np.arange(len(city), dtype=np.int64)
    if kinds.strip():
        wanted = [k.strip() for k in kinds.split(",") if k.strip()]
        unknown = [k for k in wanted if k not in city.by_kind]
        if unknown:
            raise ValueError(f"no sensors of kind {', '.join(unknown)} in the pack; kinds: "
                             f"{', '.join(sorted(city.by_kind))}")
        idx = idx[np.isin(city.kinds, wanted)]
    if limit > 0:
        idx = idx[:limit]
    return idx


def _check(args) -> None:
    for name in ("interval", "vehicle_interval", "speed"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    if args.backfill_interval is not None and args.backfill_interval <= 0:
        raise ValueError("--backfill-interval must be positive")
    if args.connections < 1:
        raise ValueError("--connections must be at least 1")
    if args.backfill_days < 0 or args.max_rate < 0:
        raise ValueError("--backfill-days and --max-rate cannot be negative")


def run(args, settings) -> int:
    try:
        _check(args)
        shares = parse_formats(args.formats)
        now = time.time()
        start = parse_when(args.start, now)
        backfill_from = None
        if args.backfill_from:
            backfill_from = parse_when(args.backfill_from, now)
        elif args.backfill_days:
            backfill_from = start - args.backfill_days * 86400.0
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    try:
        city = load_city(args.pack)
    except (PackError, OSError) as exc:
        print(f"error: cannot load the city pack {args.pack}: {exc}", file=sys.stderr)
        return 1
    try:
        sensors = _select(city, args.kinds, args.sensors)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    common = dict(seed=args.seed, sensors=sensors, vehicles=not args.no_vehicles,
                  fault_rate=args.fault_rate, incident_rate=args.incident_rate)

    relative = args.start.strip() == "now" or bool(_RELATIVE.match(args.start.strip()))
    if backfill_from is not None and backfill_from < start:
        world = World(city, interval=args.backfill_interval or args.interval,
                      vehicle_interval=args.backfill_vehicle_interval, **common)
        log.info("backfill %s .. %s: %d sensors every %.0f s", _iso(backfill_from), _iso(start),
                 len(sensors), world.interval)
        try:
            result = backfill(world, settings.role_url("ingest"), backfill_from, start,
                              progress=not args.no_progress)
            # a relative start moved on while history was written: fill the gap too
            for _ in range(3 if relative else 0):
                later = parse_when(args.start, time.time())
                if later - start < 1.0:
                    break
                gap = backfill(world, settings.role_url("ingest"), start, later, progress=False)
                result.readings += gap.readings
                result.vehicles += gap.vehicles
                start = later
        except psycopg.Error as exc:
            print(f"error: backfill failed on {mask_url(settings.role_url('ingest'))}: "
                  f"{str(exc).strip()}", file=sys.stderr)
            return 1
        print(f"backfill: {result.readings} readings ({result.duplicates} already there), "
              f"{result.vehicles} vehicle positions in {result.seconds:.1f} s "
              f"({result.rows_per_s:,.0f} rows/s)", flush=True)
    elif relative:
        start = parse_when(args.start, time.time())  # loading the pack took a moment

    if args.duration is not None and args.duration <= 0:
        return 0
    world = World(city, interval=args.interval, vehicle_interval=args.vehicle_interval, **common)
    encoder = Encoder(city, shares, args.seed)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    log.info("simulating %s from %s at %gx: %d sensors every %g s, %.0f reports/s of "
             "simulated time", city.name, _iso(start), args.speed, len(sensors), args.interval,
             world.reports_per_second())
    try:
        stats = run_connections(world, encoder, settings.mqtt_url, settings.simulate_client_id,
                                args.connections, stop, start=start, speed=args.speed,
                                duration=args.duration, max_rate=args.max_rate)
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"published {stats.acked} messages in {stats.seconds:.1f} s ({stats.rate:,.0f} msgs/s), "
          f"simulated {_iso(stats.sim_start)} .. {_iso(stats.sim_end)}", flush=True)
    return 0


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")
