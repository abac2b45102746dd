"""Ingest benchmark: ``.venv/bin/python bench/ingest.py [--messages N] [--record]``.

On its own throw-away TimescaleDB and Mosquitto (temporary folders, loopback):

1. **citydash**: N native messages (2 metrics each) are queued in the ingestor's persistent
   session while it is stopped; the ingestor (``python -m ingest run``, a separate process) is
   started and timed until every row is committed. Peak RSS is read from /proc.
2. **ceiling**: the same N messages drained by a bare paho subscriber that only receives and
   acks (QoS 1, persistent session, auto-ack).
3. **naive peer**: one INSERT and commit per message in ``on_message`` (the common pattern);
   run on ``--naive-messages`` messages (default 20,000) to stay bounded in time, compared
   by rate.
4. **live lag**: the ingestor running while a publisher offers ``--rate`` msgs/s for
   ``--seconds`` s; lag = commit time (observed by polling the database every 20 ms) minus
   payload time; p50/p99.

Targets on a 2-core machine: >= 25,000 msgs/s, >= 60 % of the ceiling, >= 10x the naive peer.

The whole run is bounded in time (``--time-limit``, bench/guard.py: past it the benchmark
fails with exit 3 and every thread's stack) and prints the load average at start and end.
The publishers never read paho's private state: paho's in-flight limit is off and each keeps
its own window of unacknowledged messages, counted from ``on_publish``, below the broker's
Receive Maximum (with a limit, paho 2.2 walks every unacknowledged message on each PUBACK).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import guard  # noqa: E402
from bench.record import record  # noqa: E402

import paho.mqtt.client as mqtt  # noqa: E402
import psycopg  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from ingest.migrate import migrate  # noqa: E402
from devtools.stack import LocalMosquitto, LocalPostgres, free_port  # noqa: E402

TOPIC = "city/mobility/traffic_counter/{}"
MAX_OUTSTANDING = 20_000  # unacknowledged messages per publisher (paho's packet ids are 16-bit)
PUBLISH_STALL_S = 120.0  # a publisher with no PUBACK for this long fails loudly


# -- publishing ------------------------------------------------------------------------
def _publish(port: int, n: int, start_ts: float, rate: float | None, sensors: int,
             prefix: str) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    # paho's in-flight limit off: with one, paho rescans every unacknowledged message on each
    # PUBACK; the window below is ours, counted from on_publish.
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    acked = [0]
    window = [MAX_OUTSTANDING]
    connected = threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties):
        receive_maximum = getattr(properties, "ReceiveMaximum", None) or 65535
        window[0] = max(1, min(MAX_OUTSTANDING, receive_maximum - 1))
        connected.set()

    def on_publish(client, userdata, mid, reason_code, properties):
        acked[0] += 1

    client.on_connect = on_connect
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not connected.wait(30):
        raise SystemExit("publisher: no CONNACK from the broker in 30 s")

    def wait_acks(until: int) -> None:
        seen, since = acked[0], time.monotonic()
        while acked[0] < until:
            if acked[0] != seen:
                seen, since = acked[0], time.monotonic()
            elif time.monotonic() - since > PUBLISH_STALL_S:
                raise SystemExit(f"publisher: no PUBACK for {PUBLISH_STALL_S:.0f} s "
                                 f"({acked[0]:,} of {until:,} acknowledged)")
            time.sleep(0.002)

    began = time.monotonic()
    for i in range(n):
        if rate:
            due = began + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ts = time.time()
        else:
            ts = start_ts + i // sensors
        if i - acked[0] >= window[0]:
            wait_acks(i - window[0] + 1)
        payload = json.dumps({"ts": round(ts, 6), "values": {"flow": i % 97, "speed": 30 + i % 20}})
        info = client.publish(TOPIC.format(f"{prefix}{i % sensors}"), payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise SystemExit(f"publisher: publish {i} failed: {mqtt.error_string(info.rc)}")
    wait_acks(n)  # every QoS 1 PUBACK back from the broker
    client.disconnect()
    client.loop_stop()


class Publisher:
    """A publishing process; ``join`` fails loudly if it did not publish everything."""

    def __init__(self, proc: mp.Process):
        self.proc = proc

    def join(self) -> None:
        self.proc.join()
        if self.proc.exitcode != 0:
            raise SystemExit(f"publisher process failed (exit {self.proc.exitcode}); see above")


def publish(port: int, n: int, rate: float | None = None, sensors: int = 1000,
            prefix: str = "tc-", start_ts: float | None = None) -> Publisher:
    start_ts = start_ts if start_ts is not None else time.time() - 3 * 3600
    proc = mp.get_context("fork").Process(target=_publish,
                                          args=(port, n, start_ts, rate, sensors, prefix))
    proc.start()
    return Publisher(proc)


def make_session(port: int, client_id: str, topic: str = "city/mobility/#") -> None:
    """Create a persistent session with a QoS 1 subscription, then go offline."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    done = threading.Event()
    client.on_subscribe = lambda *a: done.set()
    client.connect("127.0.0.1", port, clean_start=True, properties=props)
    client.loop_start()
    client.subscribe(topic, qos=1)
    assert done.wait(10)
    client.disconnect()
    client.loop_stop()


def drop_session(port: int, client_id: str) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port, clean_start=True)
    client.disconnect()


def count_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM readings").fetchone()[0]


def truncate(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE readings")


# -- consumers --------------------------------------------------------------------------
def ingestor(db_url: str, mqtt_url: str, client_id: str, log: Path) -> subprocess.Popen:
    env = dict(os.environ, CITYDASH_DATABASE_URL=db_url, CITYDASH_MQTT_URL=mqtt_url,
               CITYDASH_MQTT_CLIENT_ID=client_id, CITYDASH_METRICS_PORT="0",
               CITYDASH_LOG_FORMAT="text", CITYDASH_LOG_LEVEL="WARNING",
               # rollups and alerts are measured by bench/kpi.py; here only ingest is timed
               CITYDASH_JOBS_ENABLED="false")
    return subprocess.Popen([sys.executable, "-m", "ingest", "run"], cwd=ROOT, env=env,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of the ingestor's processes, by process role."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for role, p in [("mqtt", pid)] + [("worker", c) for c in _children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[role] = out.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def peak_rss_mb(pid: int) -> float:
    """Peak RSS of the ingestor: its MQTT process plus its worker process(es), summed."""
    total = 0.0
    for p in [pid, *_children(pid)]:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) / 1024
    return total


def run_citydash(pg_url: str, broker: LocalMosquitto, n: int, tmp: Path) -> dict:
    truncate(pg_url)
    client_id = "bench-citydash"
    make_session(broker.port, client_id)
    publish(broker.port, n).join()
    proc = ingestor(pg_url, broker.url, client_id, tmp / "ingest.log")
    started = time.monotonic()
    expected = 2 * n
    while count_rows(pg_url) < expected:
        if proc.poll() is not None:
            raise SystemExit(f"ingestor died: {(tmp / 'ingest.log').read_text()[-2000:]}")
        time.sleep(0.05)
    seconds = time.monotonic() - started
    rss = peak_rss_mb(proc.pid)
    cpu = cpu_seconds(proc.pid)
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    drop_session(broker.port, client_id)
    return {"seconds": seconds, "rate": n / seconds, "peak_rss_mb": rss, "cpu": cpu}


def drain(port: int, client_id: str, on_message, done: threading.Event, timeout: float,
          receive_maximum: int | None = None) -> float:
    """Resume ``client_id``'s persistent session, receive until ``done``; seconds taken."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    if receive_maximum:
        props.ReceiveMaximum = receive_maximum
    started = time.monotonic()
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    client.loop_start()
    done.wait(timeout)
    seconds = time.monotonic() - started
    client.disconnect()
    client.loop_stop()
    return seconds


def run_ceiling(broker: LocalMosquitto, n: int) -> dict:
    client_id = "bench-bare"
    make_session(broker.port, client_id)
    publish(broker.port, n).join()
    got = 0
    done = threading.Event()

    def on_message(client, userdata, msg):
        nonlocal got
        got += 1
        if got >= n:
            done.set()

    seconds = drain(broker.port, client_id, on_message, done, 600, receive_maximum=20000)
    drop_session(broker.port, client_id)
    return {"seconds": seconds, "rate": n / seconds}


def run_naive(pg_url: str, broker: LocalMosquitto, n: int) -> dict:
    """One INSERT and one commit per message (ids looked up once and cached: generous)."""
    truncate(pg_url)
    client_id = "bench-naive"
    make_session(broker.port, client_id)
    publish(broker.port, n, prefix="naive-").join()
    conn = psycopg.connect(pg_url)
    sensor_ids: dict[str, int] = {}
    metric_ids: dict[str, int] = {}

    def ident(table: str, cache: dict, key: str) -> int:
        if key not in cache:
            column = "external_id" if table == "sensors" else "name"
            cache[key] = conn.execute(
                f"INSERT INTO {table} ({column}) VALUES (%s) ON CONFLICT ({column}) "
                f"DO UPDATE SET {column} = EXCLUDED.{column} RETURNING id", (key,)).fetchone()[0]
            conn.commit()
        return cache[key]

    got = 0
    done = threading.Event()

    def on_message(client, userdata, msg):
        nonlocal got
        body = json.loads(msg.payload)
        sid = ident("sensors", sensor_ids, msg.topic.rsplit("/", 1)[1])
        for metric, value in body["values"].items():
            conn.execute("INSERT INTO readings (time, sensor_id, metric_id, value) "
                         "VALUES (to_timestamp(%s), %s, %s, %s) ON CONFLICT DO NOTHING",
                         (body["ts"], sid, ident("metrics", metric_ids, metric), value))
        conn.commit()
        got += 1
        if got >= n:
            done.set()

    seconds = drain(broker.port, client_id, on_message, done, 1800)
    conn.close()
    drop_session(broker.port, client_id)
    return {"seconds": seconds, "rate": n / seconds, "messages": n}


def run_live_lag(pg_url: str, broker: LocalMosquitto, rate: float, seconds: float,
                 tmp: Path) -> dict:
    truncate(pg_url)
    client_id = "bench-live"
    make_session(broker.port, client_id)
    proc = ingestor(pg_url, broker.url, client_id, tmp / "ingest-live.log")
    time.sleep(2)
    n = int(rate * seconds)
    # Two publisher processes, each offering half the rate (one paho client alone
    # cannot keep 10,000 msgs/s flowing on this machine).
    pubs = [publish(broker.port, n // 2, rate=rate / 2, prefix=f"live{k}-") for k in range(2)]
    n = 2 * (n // 2)
    lags: list[float] = []
    # Each publisher's messages are committed in the order it sent them, so per publisher
    # the rows newer than its newest seen row are the ones committed since the last poll.
    newest = {"live0": 0.0, "live1": 0.0}
    conn = psycopg.connect(pg_url, autocommit=True)
    deadline = time.monotonic() + seconds + 60
    seen = 0
    while seen < 2 * n and time.monotonic() < deadline:
        rows = conn.execute(
            "SELECT extract(epoch FROM r.time)::float8, left(s.external_id, 5) FROM readings r "
            "JOIN sensors s ON s.id = r.sensor_id WHERE r.time > to_timestamp(%s)",
            (min(newest.values()),)).fetchall()
        now = time.time()
        fresh = [(t, who) for t, who in rows if t > newest[who]]
        for t, who in fresh:
            lags.append(now - t)
        for who in newest:
            newest[who] = max([newest[who]] + [t for t, w in fresh if w == who])
        seen += len(fresh)
        time.sleep(0.02)
    for pub in pubs:
        pub.join()
    rss = peak_rss_mb(proc.pid)
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    conn.close()
    drop_session(broker.port, client_id)
    lags.sort()
    return {"offered": rate, "rows": len(lags),
            "p50_ms": 1000 * lags[len(lags) // 2],
            "p99_ms": 1000 * lags[int(len(lags) * 0.99)], "peak_rss_mb": rss}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--naive-messages", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--record", action="store_true", help="write docs/benchmarks.md")
    parser.add_argument("--only-citydash", action="store_true",
                        help="time the citydash drain only (for profiling), record nothing")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="citydash-bench-ingest-"))
    os.chmod(tmp, 0o755)
    pg = LocalPostgres(tmp / "pg", free_port())
    broker = LocalMosquitto(tmp / "mq", free_port())
    try:
        pg.start()
        broker.start()
        migrate(pg.url)
        print(f"queueing {args.messages:,} messages per run (2 metrics each)", flush=True)
        ours = run_citydash(pg.url, broker, args.messages, tmp)
        print(f"citydash ingestor: {ours['rate']:,.0f} msgs/s ({ours['seconds']:.1f} s), "
              f"peak RSS {ours['peak_rss_mb']:.0f} MB, CPU s "
              + ", ".join(f"{k} {v:.1f}" for k, v in ours["cpu"].items()), flush=True)
        if args.only_citydash:
            return 0
        ceiling = run_ceiling(broker, args.messages)
        print(f"bare paho subscriber (ceiling): {ceiling['rate']:,.0f} msgs/s", flush=True)
        naive = run_naive(pg.url, broker, args.naive_messages)
        print(f"naive INSERT+commit per message: {naive['rate']:,.0f} msgs/s "
              f"({naive['messages']:,} messages)", flush=True)
        live = run_live_lag(pg.url, broker, args.rate, args.seconds, tmp)
        print(f"live lag at {args.rate:,.0f} msgs/s offered: p50 {live['p50_ms']:.0f} ms, "
              f"p99 {live['p99_ms']:.0f} ms, peak RSS {live['peak_rss_mb']:.0f} MB", flush=True)
    finally:
        broker.remove()
        pg.remove()

    of_ceiling = ours["rate"] / ceiling["rate"]
    vs_naive = ours["rate"] / naive["rate"]
    checks = [("≥ 25,000 msgs/s", ours["rate"] >= 25_000),
              ("≥ 60 % of the ceiling", of_ceiling >= 0.60),
              ("≥ 10× the naive peer", vs_naive >= 10)]
    table = "\n".join([
        "| run | messages | msgs/s | ratio |", "|---|---|---|---|",
        f"| citydash ingestor (queued backlog) | {args.messages:,} | {ours['rate']:,.0f} | 1.00 |",
        f"| bare paho subscriber, receive + ack (ceiling) | {args.messages:,} | "
        f"{ceiling['rate']:,.0f} | citydash = {of_ceiling:.0%} of it |",
        f"| naive: INSERT + commit per message | {naive['messages']:,} | {naive['rate']:,.0f} | "
        f"citydash = {vs_naive:.1f}× |",
    ])
    extra = (f"\nPeak RSS of the ingestor draining the backlog: {ours['peak_rss_mb']:.0f} MB. "
             f"Live: {args.rate:,.0f} msgs/s offered for {args.seconds:.0f} s: lag from payload "
             f"time to commit p50 {live['p50_ms']:.0f} ms, p99 {live['p99_ms']:.0f} ms "
             f"({live['rows']:,} rows observed; peak RSS {live['peak_rss_mb']:.0f} MB).\n\n"
             "Targets: " + ", ".join(f"{name}: {'met' if ok else 'NOT met'}"
                                     for name, ok in checks) + ".\n\n"
             "Command: `.venv/bin/python bench/ingest.py --record`.")
    print()
    print(table)
    print(extra)
    if args.record:
        record("Ingest (bench/ingest.py)", table + "\n" + extra)
    return 0


if __name__ == "__main__":
    sys.exit(guard.run(main, "bench/ingest.py", 1200))
