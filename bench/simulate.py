"""Simulator publish benchmark: ``.venv/bin/python bench/simulate.py [--seconds S] [--record]``.

On its own throw-away Mosquitto (temporary folder, loopback), QoS 1, messages counted when
the broker acknowledged them (PUBACK):

1. **baseline**: a bare paho-mqtt loop publishing pre-built payloads (the demo city's
   messages, encoded before the clock starts) on one connection, at most 1,000 in flight;
   nothing is computed while it runs: the ceiling of one Python publisher.
2. **citydash**: ``run_connections`` of the simulator (signals, faults, vehicles, encoding
   in the configured format mix, publishing) asked for far more than it can send (demo city,
   every sensor every second of simulated time at 120x, starting 3 hours ago), on 1 and on
   2 connections (processes).

Each is run ``--repeats`` times (default 3); the medians are printed with the ratio to the
baseline and recorded in docs/benchmarks.md ("Simulator publishing"). Target: >= 10,000
msgs/s (issue 4).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import guard  # noqa: E402

import paho.mqtt.client as mqtt  # noqa: E402

from bench.record import record  # noqa: E402
from ingest.simulate.city import load_city  # noqa: E402
from ingest.simulate.encoders import Encoder, parse_formats  # noqa: E402
from ingest.simulate.publisher import messages, run_connections  # noqa: E402
from ingest.simulate.world import World  # noqa: E402
from devtools.stack import LocalMosquitto, free_port  # noqa: E402

FORMATS = "native=70,senml=10,ngsi=10,ttn=10"


def baseline(port: int, payloads: list[tuple[str, bytes]], window: int = 1000) -> float:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    # paho's own in-flight limit off (with one set, paho walks every unacknowledged message on
    # each PUBACK); the loop below keeps its own window of `window` messages instead
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    acked = [0]

    def on_publish(*args):
        acked[0] += 1

    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    time.sleep(0.3)
    began = time.perf_counter()
    sent = 0
    for topic, payload in payloads:
        while sent - acked[0] >= window:
            time.sleep(0.0005)
        client.publish(topic, payload, qos=1)
        sent += 1
    while acked[0] < sent:
        time.sleep(0.001)
    rate = sent / (time.perf_counter() - began)
    client.disconnect()
    client.loop_stop()
    return rate


def simulator(url: str, world, encoder, connections: int, seconds: float) -> float:
    stats = run_connections(world, encoder, url, f"bench-sim-{connections}", connections,
                            threading.Event(), start=time.time() - 3 * 3600, speed=120.0,
                            duration=seconds)
    return stats.rate


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each simulator run")
    ap.add_argument("--messages", type=int, default=100_000, help="baseline messages per run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--record", action="store_true", help="write docs/benchmarks.md")
    args = ap.parse_args(argv)

    city = load_city(ROOT / "layers" / "demo_city")
    world = World(city, seed=1, interval=1.0, vehicle_interval=1.0)
    encoder = Encoder(city, parse_formats(FORMATS), seed=1)
    t0 = time.time() - 3 * 3600
    payloads: list[tuple[str, bytes]] = []
    while len(payloads) < args.messages:
        payloads.extend(messages(world, encoder, t0, t0 + 10))
        t0 += 10
    payloads = payloads[:args.messages]
    mean_bytes = statistics.fmean(len(p) for _, p in payloads)

    root = Path(tempfile.mkdtemp(prefix="citydash-bench-sim-"))
    os.chmod(root, 0o755)
    broker = LocalMosquitto(root, free_port())
    broker.start()
    results: dict[str, list[float]] = {"baseline": [], "sim1": [], "sim2": []}
    try:
        for r in range(args.repeats):
            results["baseline"].append(baseline(broker.port, payloads))
            results["sim1"].append(simulator(broker.url, world, encoder, 1, args.seconds))
            results["sim2"].append(simulator(broker.url, world, encoder, 2, args.seconds))
            print(f"run {r + 1}: baseline {results['baseline'][-1]:,.0f}, simulator 1 conn "
                  f"{results['sim1'][-1]:,.0f}, 2 conns {results['sim2'][-1]:,.0f} msgs/s",
                  flush=True)
    finally:
        broker.remove()
        shutil.rmtree(root, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    lines = [
        f"Demo city (1,680 sensors, ~60 vehicles), formats {FORMATS}, mean payload "
        f"{mean_bytes:.0f} bytes, QoS 1 to a local Mosquitto, counted at PUBACK; "
        f"median of {args.repeats} runs.",
        "",
        "| publisher | msgs/s (median) | runs | vs baseline |",
        "|---|---|---|---|",
        f"| baseline: bare paho loop, pre-built payloads, 1 connection | {med['baseline']:,.0f} | "
        f"{', '.join(f'{x:,.0f}' for x in results['baseline'])} | 1.00x |",
    ]
    for key, label in (("sim1", "simulator, 1 connection"), ("sim2", "simulator, 2 connections")):
        lines.append(f"| {label} (computing + encoding + publishing) | {med[key]:,.0f} | "
                     f"{', '.join(f'{x:,.0f}' for x in results[key])} | "
                     f"{med[key] / med['baseline']:.2f}x |")
    best = max(med["sim1"], med["sim2"])
    lines += ["", f"Target >= 10,000 msgs/s: {'met' if best >= 10_000 else 'NOT met'} "
              f"(best median {best:,.0f} msgs/s). Command: `.venv/bin/python bench/simulate.py "
              f"--record`."]
    body = "\n".join(lines)
    print(body)
    if args.record:
        record("Simulator publishing", body)
    return 0


if __name__ == "__main__":
    sys.exit(guard.run(main, "bench/simulate.py", 600))
