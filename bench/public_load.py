"""Public view load benchmark: ``.venv/bin/python bench/public_load.py [--record]``.

1. Starts a throw-away TimescaleDB (``devtools.stack.LocalPostgres``) in a
   temporary folder, applies the migrations and writes 24 hours of
   materialised 1-minute KPI values (every catalogue KPI, the demo city's
   20 districts and the city; ``generate_series`` in SQL).
2. Serves the dashboard with gunicorn (``app:server``, 2 workers x 8 threads,
   sign-in on, loopback only) - the production entry point.
3. Simulates viewers of ``/public/`` with asyncio + aiohttp (loopback only,
   bounded in time): first ``--baseline`` viewers (20), then ``--viewers`` (200), each for
   ``--seconds`` (60).  A viewer loads the page like the browser does
   (index, ``_dash-layout``, ``_dash-dependencies``, the page callback, the
   figures callback, the districts layer with ``If-None-Match``) and then,
   between 0.5 and 1.5 s apart, mostly refreshes the figures (a new KPI or area
   or the interval tick) and sometimes reloads the page: far more often than
   the real 60-second refresh, to load the server.  The JavaScript bundles
   are not fetched: they are fingerprinted and browser-cached for a year.
4. Reports requests/s, p50/p95/p99 latency, error rate and the database
   queries per minute of each phase (statements the dashboard's roles ran in
   the bench database, from ``pg_stat_statements``, loaded for the run), and
   the ratio of the 200-viewer phase against the 20-viewer baseline.  The
   public snapshot is refreshed every 15 s (``CITYDASH_PUBLIC_REFRESH_S``;
   60 s by default), so each 60-second phase holds four refresh periods and
   the count is not an accident of where a period boundary falls.
5. ``--record`` writes the figures under "Public view load" in
   docs/benchmarks.md.

The per-client rate limit is raised for the run (every simulated viewer
comes from 127.0.0.1) - it is not what is measured here.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import guard  # noqa: E402

from dashboard.public.contract import PAGE_OUTPUT, VIEW_OUTPUT  # noqa: E402  (the requests the browser sends)

REFRESH_S = 15  # the public snapshot's refresh period: four periods in each 60-second phase



def _outputs(output: str) -> list[dict]:
    parts = output.strip(".").split("...")
    return [{"id": p.rsplit(".", 1)[0], "property": p.rsplit(".", 1)[1]} for p in parts]


class Viewer:
    """One simulated browser: page load, then figure refreshes and the odd reload."""

    def __init__(self, session, host: str, kpis: list[str], areas: list[str], results: list, rng):
        self.s, self.host, self.kpis, self.areas, self.results, self.rng = session, host, kpis, areas, results, rng
        self.locale = rng.choice(["pt-BR", "en", "ja"])
        self.kpi, self.area, self.etag = rng.choice(kpis), "city", None

    async def request(self, name: str, method: str, path: str, ok=(200,), **kwargs) -> None:
        started = time.perf_counter()
        error = None
        try:
            async with self.s.request(method, self.host + path, **kwargs) as r:
                body = await r.read()
                if r.status not in ok:
                    error = f"HTTP {r.status}"
                elif name == "callback" and b'"response"' not in body:
                    error = "callback without response"
                if name == "layer" and r.status == 200:
                    self.etag = r.headers.get("ETag")
        except Exception as exc:  # timeouts, refused or reset connections
            error = type(exc).__name__
        self.results.append((name, (time.perf_counter() - started) * 1000, error))

    async def callback(self, output: str, inputs: list[dict], state: list[dict]) -> None:
        body = {"output": output, "outputs": _outputs(output), "inputs": inputs, "state": state,
                "changedPropIds": [f"{inputs[0]['id']}.{inputs[0]['property']}"]}
        await self.request("callback", "POST", "/public/_dash-update-component", json=body)

    async def view(self) -> None:
        await self.callback(VIEW_OUTPUT, [
            {"id": "public-kpi", "property": "value", "value": self.kpi},
            {"id": "public-area", "property": "value", "value": self.area},
            {"id": "public-interval", "property": "n_intervals", "value": 1}],
            [{"id": "public-locale", "property": "data", "value": self.locale}])

    async def load_page(self) -> None:
        await self.request("index", "GET", f"/public/?lang={self.locale}")
        await self.request("layout", "GET", "/public/_dash-layout")
        await self.request("dependencies", "GET", "/public/_dash-dependencies")
        await self.callback(PAGE_OUTPUT, [{"id": "public-url", "property": "search",
                                        "value": f"?lang={self.locale}"}], [])
        await self.view()
        headers = {"If-None-Match": self.etag} if self.etag else {}
        await self.request("layer", "GET", "/layers/city/districts.geojson", ok=(200, 304), headers=headers)

    async def run(self, until: float) -> None:
        await asyncio.sleep(self.rng.uniform(0, 2))  # ramp-up
        await self.load_page()
        while time.monotonic() < until:
            await asyncio.sleep(self.rng.uniform(0.5, 1.5))
            if time.monotonic() >= until:
                break
            if self.rng.random() < 0.2:
                await self.load_page()
            else:
                if self.rng.random() < 0.5:
                    self.kpi, self.area = self.rng.choice(self.kpis), self.rng.choice(self.areas)
                await self.view()


async def drive(host: str, users: int, seconds: int, kpis: list[str], areas: list[str]) -> tuple[list, float]:
    import aiohttp

    results: list = []
    rng = random.Random(users)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.monotonic()
        until = started + seconds
        viewers = [Viewer(session, host, kpis, areas, results, random.Random(rng.random())) for _ in range(users)]
        await asyncio.gather(*(v.run(until) for v in viewers))
        return results, time.monotonic() - started


def seed(url: str) -> tuple[list[str], list[str]]:
    """Demo districts and 24 h of 1-minute KPI values; returns (public KPI ids, areas)."""
    import psycopg

    from kpis.catalogue import load_catalogue
    from layers.pack import load_pack

    pack = load_pack(str(ROOT / "layers" / "demo_city"))
    catalogue = load_catalogue(ROOT / "layers" / "demo_city")
    districts = [(d["id"], d["name"]) for d in _district_rows(pack)]
    with psycopg.connect(url, autocommit=True) as conn:
        for did, name in districts:
            conn.execute("INSERT INTO districts (id, name, geometry) VALUES (%s, %s, '{}')", (did, name))
        for kpi in catalogue:
            conn.execute(
                """INSERT INTO kpi_1m (bucket, kpi_id, scope_type, scope_id, value, sensors, expected)
                   SELECT b, %(kpi)s, s.t, s.id, 50 + 20 * sin(extract(epoch FROM b) / 3600 + s.n),
                          CASE WHEN s.n %% 7 = 3 THEN 1 ELSE 8 END, 8
                     FROM generate_series(date_trunc('minute', now()) - interval '24 hours',
                                          date_trunc('minute', now()), interval '1 minute') b,
                          (SELECT 'city' AS t, '' AS id, 0 AS n
                           UNION ALL SELECT 'district', d, row_number() OVER () FROM unnest(%(ids)s::text[]) d) s""",
                {"kpi": kpi.id, "ids": [d for d, _ in districts]})
        conn.execute("VACUUM ANALYZE kpi_1m")  # no autovacuum/autoanalyze during the measurement
    public = [k.id for k in catalogue if k.public]
    return public, ["city"] + [d for d, _ in districts]


def _district_rows(pack):
    frame = pack.districts
    return [{"id": str(r["id"]), "name": str(r["name"])} for _, r in frame.iterrows()]


DASHBOARD_ROLES = ("citydash_public", "citydash_reader")


def statements(url: str) -> int:
    """Statements the dashboard's roles have run in the bench database (``pg_stat_statements``):
    only the dashboard's own queries, not TimescaleDB's background jobs or autovacuum."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return int(conn.execute(
            """SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
                WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                  AND r.rolname = ANY(%s)""", (list(DASHBOARD_ROLES),)).fetchone()[0])


def enable_statement_counts(pg) -> None:
    """Load ``pg_stat_statements`` (PostgreSQL contrib) next to TimescaleDB; restarts the server."""
    import psycopg

    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET shared_preload_libraries = timescaledb, pg_stat_statements")
    pg.stop()
    pg.start()


def phase(host: str, users: int, seconds: int, db_url: str, kpis, areas) -> dict:
    before = statements(db_url)
    results, elapsed = asyncio.run(drive(host, users, seconds, kpis, areas))
    after = statements(db_url)
    lat = np.array([ms for _, ms, _ in results])
    cb = np.array([ms for name, ms, _ in results if name == "callback"])
    kinds: dict[str, int] = {}
    for *_, error in results:
        if error:
            kinds[error] = kinds.get(error, 0) + 1
    errors = sum(kinds.values())
    n = len(results)
    return {"viewers": users, "seconds": round(elapsed, 1), "requests": n, "rps": n / elapsed,
            "p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
            "p99": float(np.percentile(lat, 99)), "errors": errors, "error_rate": errors / n if n else 1.0,
            "db_queries_per_min": (after - before) / (elapsed / 60), "error_kinds": kinds,
            "callback_p99": float(np.percentile(cb, 99))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, default=200)
    parser.add_argument("--baseline", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args(argv)
    from ingest.migrate import migrate
    from devtools.stack import LocalPostgres, free_port, wait_for_port

    root = Path(tempfile.mkdtemp(prefix="citydash-bench-public-"))
    os.chmod(root, 0o755)
    pg = LocalPostgres(root / "pg", free_port(), shared_buffers="256MB")
    pg.start()
    server = None
    try:
        import psycopg

        enable_statement_counts(pg)
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench_public")
        db_url = pg.url.rsplit("/", 1)[0] + "/bench_public"
        migrate(db_url)
        kpis, areas = seed(db_url)
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        port = free_port()
        env = dict(os.environ, CITYDASH_DATABASE_URL=db_url, CITYDASH_LOG_FORMAT="text",
                   CITYDASH_LOG_LEVEL="WARNING", CITYDASH_AUTH_MODE="builtin",
                   CITYDASH_SECRET_KEY=os.urandom(24).hex(), CITYDASH_PUBLIC_RATE_LIMIT="1000000 per minute",
                   CITYDASH_LAYERS_DIR=str(root / "layers"), CITYDASH_PUBLIC_REFRESH_S=str(REFRESH_S))
        log = open(root / "gunicorn.log", "wb")
        server = subprocess.Popen([str(Path(sys.executable).with_name("gunicorn")), "-w", "2",
                                   "-k", "gthread", "--threads", "8", "-b", f"127.0.0.1:{port}",
                                   "app:server"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port("127.0.0.1", port, 60)
        host = f"http://127.0.0.1:{port}"
        import urllib.request

        # Warm both workers up (first request: Dash validates every page's layout; the first
        # callback builds the web layers and reads the snapshot), then measure.
        from concurrent.futures import ThreadPoolExecutor

        def get(path):
            urllib.request.urlopen(host + path, timeout=60).read()

        with ThreadPoolExecutor(8) as pool_:
            list(pool_.map(get, ["/public/", "/layers/city/districts.geojson"] * 12))
        asyncio.run(drive(host, 8, 5, kpis, areas))
        base = phase(host, args.baseline, args.seconds, db_url, kpis, areas)
        load = phase(host, args.viewers, args.seconds, db_url, kpis, areas)
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        pg.remove()
    body = report(base, load, args)
    print(body)
    if args.record:
        from bench.record import record

        record("Public view load", body)
    return 0


def report(base: dict, load: dict, args) -> str:
    def row(r):
        return (f"| {r['viewers']} | {r['requests']:,} | {r['rps']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} | "
                f"{r['p99']:.0f} | {r['callback_p99']:.0f} | {r['errors']} ({100 * r['error_rate']:.2f} %) | "
                f"{r['db_queries_per_min']:.1f} |")

    ratio = lambda k: load[k] / base[k] if base[k] else float("nan")  # noqa: E731
    return f"""`bench/public_load.py`: gunicorn (`app:server`, 2 workers x 8 threads), sign-in on, the
asyncio/aiohttp load generator on the same 2 cores, {args.seconds} s per phase; viewers refresh the figures every 0.5-1.5 s
(the real page refreshes every 60 s) and reload the page now and then. Latencies in ms
(percentiles of all requests; "callback p99": the `_dash-update-component` requests alone).

| viewers | requests | req/s | p50 | p95 | p99 | callback p99 | errors | DB queries/min |
|---|---|---|---|---|---|---|---|---|
{row(base)}
{row(load)}

Errors by kind: {args.baseline} viewers {base['error_kinds'] or 'none'}; {args.viewers} viewers {load['error_kinds'] or 'none'}.

Ratio {args.viewers} / {args.baseline} viewers (baseline measured in the same run): requests/s
x{ratio('rps'):.2f}, p99 x{ratio('p99'):.2f}, database queries per minute x{ratio('db_queries_per_min'):.2f}.
Targets: p99 < 250 ms at {args.viewers} viewers: {"met" if load["p99"] < 250 else "NOT met"};
zero errors: {"met" if load["errors"] == 0 and base["errors"] == 0 else "NOT met"}; the same
database queries per minute at both sizes: {"met" if abs(ratio('db_queries_per_min') - 1) < 0.35 else "NOT met"}
(x{ratio('db_queries_per_min'):.2f}; statements of the dashboard's roles from `pg_stat_statements`;
every gunicorn worker reads the public views once per {REFRESH_S}-second refresh period, four
queries, whatever the number of viewers).
"""


if __name__ == "__main__":
    sys.exit(guard.run(main, "bench/public_load.py", 900))
