"""Planner explorer benchmark: ``.venv/bin/python bench/explore.py [--samples 20] [--record]``.

The issue's scale budget: 5,000 sensors and 20,000 road segments at city zoom,
each interaction answering in p95 < 300 ms of server time with < 2 MB per response.

1. Starts a throw-away TimescaleDB (``devtools.stack.LocalPostgres``) and applies the migrations.
2. Generates the big test city of ``tests/unit/test_layers_web.py`` (100 districts, 20,000 roads,
   5,000 sensors: 2,000 of them turned into traffic counters on every tenth road, 3,000 noise
   meters), loads it (``layers.store``) and builds its web layers.
3. Fills, in SQL: raw readings for the last 2 hours (rolled up with ``kpis.rollup.rebuild``),
   1-minute rollups for the 6 hours before, 1-hour rollups for 15 days, 300 vehicles; then
   materialises the KPIs (``kpis.materialise.sync_definitions``) like the ingestor's job.
4. Times every interaction the way its Dash callback or API route runs it (same functions,
   in-process, the server-side cache cleared before each sample so each is computed), on
   distinct frames, and measures the response body: the map frame (districts choropleth, roads
   by congestion, all sensors by health) for a 24-hour and a 7-day window, with a comparison,
   the series chart, the drill-down panels, and the API's GeoJSON and CSV exports.
   Baseline, measured in the same run: the same 24-hour map frame answered from the cache
   (what the other planners on the same view get).
5. Prints medians and p95 and, with ``--record``, writes "Planner explorer" in docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import guard  # noqa: E402

import numpy as np  # noqa: E402
from plotly.io.json import to_json_plotly as to_json  # noqa: E402  (what Dash serialises answers with)
import psycopg  # noqa: E402

from kpis import materialise  # noqa: E402
from kpis.catalogue import load_catalogue  # noqa: E402
from kpis import rollup  # noqa: E402
from ingest.migrate import migrate  # noqa: E402
from core.timebuckets import HOUR, MINUTE, floor_time  # noqa: E402
from core.settings import Settings  # noqa: E402
from devtools.stack import LocalPostgres, free_port  # noqa: E402

SECTION = "Planner explorer"
PROFILE = "--profile" in sys.argv
BUDGET_MS, BUDGET_BYTES = 300.0, 2_000_000


def log(text: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {text}", flush=True)


def make_pack(root: Path) -> Path:
    """The big test city, with 2,000 of its 5,000 sensors turned into traffic counters on roads."""
    from tests.unit.test_layers_web import make_big_city

    root.mkdir(parents=True, exist_ok=True)
    make_big_city(root)
    lines = (root / "sensors.csv").read_text().splitlines()
    out = [lines[0]]
    for i, line in enumerate(lines[1:]):
        if i < 2000:
            out.append(f"tc{i},traffic_counter,mobility,Contador {i},,,r{i * 10:05d},,speed;flow")
        else:
            out.append(line)
    (root / "sensors.csv").write_text("\n".join(out) + "\n")
    return root


def fill(conn, now: datetime, raw_h: float = 2, m1_h: float = 8, h1_days: float = 15) -> dict:
    for m in ("speed", "flow", "laeq"):
        conn.execute("INSERT INTO metrics (name) VALUES (%s) ON CONFLICT DO NOTHING", (m,))
    conn.execute("""CREATE TEMP TABLE streams AS
        SELECT s.id AS sensor_id, m.id AS metric_id, m.name AS metric, (s.id * 0.618) % 1 AS phase
          FROM sensors s JOIN metrics m ON (s.kind = 'traffic_counter' AND m.name IN ('speed', 'flow'))
                                       OR (s.kind = 'noise' AND m.name = 'laeq')""")
    value = """CASE st.metric WHEN 'speed' THEN 12 + 18 * (1 + sin(2 * pi() * (extract(epoch FROM t) / 86400 + st.phase)))
                              WHEN 'flow' THEN 400 + 300 * sin(2 * pi() * (extract(epoch FROM t) / 86400 + st.phase))
                              ELSE 55 + 10 * sin(2 * pi() * (extract(epoch FROM t) / 86400 + st.phase)) END"""
    counts = {}
    raw_from = now - timedelta(hours=raw_h)
    counts["raw"] = conn.execute(
        f"INSERT INTO readings (time, sensor_id, metric_id, value) SELECT t + interval '7 seconds', st.sensor_id, "  # noqa: S608
        f"st.metric_id, {value} FROM generate_series(%s::timestamptz, %s::timestamptz - interval '1 minute', "
        "interval '1 minute') t, streams st ORDER BY 1", (raw_from, now)).rowcount
    m1_from = now - timedelta(hours=m1_h)
    counts["1m"] = conn.execute(
        f"INSERT INTO readings_1m SELECT t, st.sensor_id, st.metric_id, 1, v, v, v, v, t + interval '7 seconds' "  # noqa: S608
        f"FROM generate_series(%s::timestamptz, %s::timestamptz - interval '1 minute', interval '1 minute') t, "
        f"streams st, LATERAL (SELECT {value} AS v) x ORDER BY 1", (m1_from, raw_from)).rowcount
    h1_from = floor_time(now - timedelta(days=h1_days), HOUR)
    counts["1h"] = conn.execute(
        f"INSERT INTO readings_1h SELECT t, st.sensor_id, st.metric_id, 60, 60 * v, v, v, v, t + interval '59 minutes' "  # noqa: S608
        f"FROM generate_series(%s::timestamptz, %s::timestamptz - interval '1 hour', interval '1 hour') t, "
        f"streams st, LATERAL (SELECT {value} AS v) x ORDER BY 1",
        (h1_from, floor_time(m1_from, HOUR))).rowcount
    rollup.rebuild(conn, floor_time(m1_from, HOUR), now + MINUTE)  # hours from 1m, minutes from raw
    counts["vehicles"] = conn.execute(
        """INSERT INTO vehicle_positions (time, vehicle, route, lon, lat, delay_s, occupancy_pct)
           SELECT t, 'bus-' || v, 'R' || (v %% 30), -47.93 + 0.08 * sin(v + extract(epoch FROM t) / 600),
                  -15.78 + 0.08 * cos(v), (v * 13) %% 400, (v * 7) %% 100
             FROM generate_series(%s::timestamptz, %s::timestamptz, interval '30 seconds') t,
                  generate_series(1, 300) v""", (now - timedelta(minutes=10), now - timedelta(seconds=1))).rowcount
    return counts


def timed(fn, samples: list, sizes: list, size_of) -> None:
    from dashboard import cache

    cache.clear()
    started = time.perf_counter()
    size = size_of(fn())  # the answer serialised as it is sent: part of the server's time
    samples.append((time.perf_counter() - started) * 1000)
    sizes.append(size)


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def run(samples: int, smoke: bool = False) -> dict:
    root = Path(tempfile.mkdtemp(prefix="citydash-bench-explore-"))
    root.chmod(0o755)  # the postgres user must reach it when run as root
    pg = LocalPostgres(root / "pg", free_port())
    log("starting TimescaleDB")
    pg.start()
    try:
        return _run(pg, root, samples, smoke)
    finally:
        pg.remove()
        shutil.rmtree(root, ignore_errors=True)


def _run(pg, root: Path, samples: int, smoke: bool) -> dict:
    from layers.pack import load_pack
    from layers.store import store_pack

    migrate(pg.url)
    pack_dir = make_pack(root / "pack")
    pack = load_pack(pack_dir)
    now = floor_time(datetime.now(timezone.utc), MINUTE)
    log(f"pack: {len(pack.districts)} districts, {len(pack.roads)} roads, {len(pack.sensors)} sensors")
    with psycopg.connect(pg.url, autocommit=True) as conn:
        store_pack(conn, pack)
        started = time.perf_counter()
        counts = fill(conn, now, *((0.3, 0.6, 1) if smoke else ()))
        log(f"data {counts} in {time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        cat = load_catalogue(pack_dir)
        # The KPIs of this city's sensors (traffic counters, noise meters), vehicles and data health
        # (sensors_reporting and co., rebuilt in slices that keep the distinct (bucket, sensor) pairs in
        # memory: kpis.materialise.health_slice).
        cat = dataclasses.replace(cat, kpis={k.id: k for k in cat if k.formula.source in ("vehicles", "health") or (
            k.formula.source == "readings" and set(k.formula.kinds) & {"traffic_counter", "noise"})})
        log(f"materialising {', '.join(cat.kpis)}")
        # like the ingestor's job with its defaults (1-minute KPI series kept 3 days back): the
        # windows measured below (24 h at 1 minute, 7 d at 1 hour) read materialised values
        materialise.sync_definitions(conn, cat, backfill_1m=timedelta(hours=0.6 if smoke else 25),
                                     backfill_1h=timedelta(days=1 if smoke else 15), now=now)
        materialise_s = time.perf_counter() - started
        log(f"KPIs materialised in {materialise_s:.0f} s")
    settings = Settings(_env_file=None, database_url=pg.url, city_pack=str(pack_dir),
                        layers_dir=str(root / "layers"), auth_mode="none", environment="development",
                        log_format="text")
    from dashboard.server import create_app

    app = create_app(settings)
    # Dash otherwise calls every page's layout on the first request to validate callbacks; the
    # wall's layout computes a 24-hour KPI snapshot, which is not an explorer interaction.
    app.config.suppress_callback_exceptions = True
    client = app.server.test_client()
    client.get("/healthz")  # Dash builds its page registry and validation layout on the first request
    from dashboard.api import context
    from dashboard.layer_files import layer_dir
    from dashboard.api import views as page
    from dashboard.queries import explore as q

    started = time.perf_counter()
    layer_dir()
    context.road_index()
    log(f"web layers built and road index read in {time.perf_counter() - started:.0f} s (once per process)")
    request = app.server.test_request_context("/explore")  # the page asks who is signed in (auth off: admin)
    request.push()
    # what Dash does with a callback's return value before sending it
    figure_bytes = lambda result: len(to_json(result[0] if isinstance(result, tuple) else result))  # noqa: E731
    results: dict[str, dict] = {}

    def measure(name: str, make, size_of=figure_bytes):
        times, sizes = [], []
        for i in range(samples):
            timed(lambda: make(i), times, sizes, size_of)
        results[name] = {"median_ms": statistics.median(times), "p95_ms": p95(times), "max_bytes": max(sizes),
                         "median_bytes": statistics.median(sizes)}
        r = results[name]
        log(f"{name}: median {r['median_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms, "
            f"{r['median_bytes'] / 1000:.0f} kB (max {r['max_bytes'] / 1000:.0f} kB)")

    all_layers = ("districts", "roads", "sensors", "transit", "vehicles")
    day = q.ViewState(layers=all_layers, range="24h")
    day = q.resolved(day, context.catalogue())
    w_day = q.window_for(day, now)
    week = q.resolved(q.ViewState(layers=all_layers, range="7d"), context.catalogue())
    w_week = q.window_for(week, now)
    cmp_week = q.resolved(q.ViewState(layers=all_layers, range="7d", compare="prev_week"), context.catalogue())
    frames_day = [w_day.frames - 2 - 17 * i for i in range(samples)]  # distinct minutes in the last 6 h
    frames_week = [w_week.frames - 2 - 5 * i for i in range(samples)]

    if PROFILE:
        import cProfile
        import pstats

        from dashboard import cache
        cache.clear()
        prof = cProfile.Profile()
        prof.runcall(page.build_map, day, w_day, frames_day[-1] - 3, "en")
        pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
        prof = cProfile.Profile()
        at = w_day.frame_time(frames_day[-1] - 3).strftime("%Y-%m-%dT%H:%M:%SZ")
        prof.runcall(client.get, f"/api/v1/layers/roads?kpi=congestion_index&at={at}")
        pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
    measure("map frame, 24 h window (1-minute), all layers", lambda i: page.build_map(day, w_day, frames_day[i], "en"))
    measure("map frame, 7 d window (1-hour), all layers", lambda i: page.build_map(week, w_week, frames_week[i], "en"))
    measure("map frame, 7 d window, compare with previous week",
            lambda i: page.build_map(cmp_week, w_week, frames_week[i], "en"))
    # baseline: the same 24-hour frame from the cache (other planners on the same view)
    page.build_map(day, w_day, frames_day[0], "en")
    hit_times, hit_sizes = [], []
    for _ in range(samples):
        started = time.perf_counter()
        size = figure_bytes(page.build_map(day, w_day, frames_day[0], "en"))
        hit_times.append((time.perf_counter() - started) * 1000)
        hit_sizes.append(size)
    results["baseline: 24 h map frame from the cache"] = {
        "median_ms": statistics.median(hit_times), "p95_ms": p95(hit_times), "max_bytes": max(hit_sizes),
        "median_bytes": statistics.median(hit_sizes)}
    series_windows = [q.Window(w_day.start - MINUTE * i, w_day.end - MINUTE * i, w_day.resolution, w_day.width)
                      for i in range(samples)]
    measure("series chart, 24 h city KPI",
            lambda i: page.fig.series_figure(page.series_data(day.kpi, "city", None, series_windows[i]), "UTC",
                                             "k", "%"))
    with psycopg.connect(settings.role_url("reader")) as conn:
        districts = sorted(q.district_names(conn))
        sensor_ids = [r[0] for r in conn.execute(
            "SELECT external_id FROM sensors WHERE kind = 'traffic_counter' ORDER BY id LIMIT %s", (samples,))]
    panel_bytes = lambda children: len(to_json(children))  # noqa: E731
    measure("drill-down: district panel (24 h)",
            lambda i: page.panel("district", districts[i % len(districts)], day, w_day,
                                 w_day.frame_time(frames_day[0]), "en"), panel_bytes)
    measure("drill-down: sensor panel (24 h, raw readings, dead letters)",
            lambda i: page.sensor_panel(sensor_ids[i], w_day, w_day.frame_time(frames_day[0]), "en"), panel_bytes)

    def api(path):
        def call(i):
            response = client.get(path(i))
            assert response.status_code == 200, (path(i), response.status_code, response.get_data()[:200])
            return response.get_data()
        return call

    stamp = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    measure("API: roads layer GeoJSON (2,000 roads with values)",
            api(lambda i: f"/api/v1/layers/roads?kpi=congestion_index&at={stamp(w_day.frame_time(frames_day[i]))}"),
            len)
    measure("API: sensors layer GeoJSON (5,000 sensors)",
            api(lambda i: f"/api/v1/layers/sensors?at={stamp(w_day.frame_time(frames_day[i]))}"), len)
    measure("API: district series CSV, 6 h at 1 minute (100 districts)",
            api(lambda i: f"/api/v1/kpis/congestion_index/series?scope=district&format=csv&resolution=1m"
                          f"&from={stamp(now - timedelta(hours=6, minutes=i))}&to={stamp(now - timedelta(minutes=i))}"),
            len)
    return {"results": results, "counts": counts, "samples": samples, "materialise_s": materialise_s,
            "scale": f"{len(pack.districts)} districts, {len(pack.roads):,} roads, {len(pack.sensors):,} sensors"}


def report(out: dict) -> str:
    res = out["results"]
    base = res["baseline: 24 h map frame from the cache"]["median_ms"]
    lines = ["| interaction | median ms | p95 ms | ratio to baseline (median) | median size | max size | budget |",
             "|---|---|---|---|---|---|---|"]
    for name, r in res.items():
        ok = r["p95_ms"] < BUDGET_MS and r["max_bytes"] < BUDGET_BYTES
        lines.append(f"| {name} | {r['median_ms']:.1f} | {r['p95_ms']:.1f} | {r['median_ms'] / base:.0f}× | "
                     f"{r['median_bytes'] / 1000:.0f} kB | {r['max_bytes'] / 1000:.0f} kB | "
                     f"{'met' if ok else '**missed**'} |")
    c = out["counts"]
    return (f"`.venv/bin/python bench/explore.py --record` ({out['samples']} samples per interaction, each on a "
            f"different frame, server-side cache cleared before each). City: {out['scale']} (the generator of "
            "`tests/unit/test_layers_web.py`; 2,000 traffic counters on every tenth road, 3,000 noise meters). "
            f"Data in SQL: {c['raw']:,} raw readings (2 h), {c['1m']:,} 1-minute rollup rows (6 h before), "
            f"{c['1h']:,} 1-hour rollup rows (15 days), {c['vehicles']:,} vehicle positions; KPIs materialised "
            "(1-minute values 25 h back, 1-hour values 15 days back, as the ingestor's job keeps them; the "
            f"traffic, noise, vehicle and data-health KPIs, in {out['materialise_s']:.0f} s). "
            "Times are server time in-process: the callback's or route's own functions and the answer "
            "serialised as it is sent (Dash's `to_json` for the page callbacks; the API through Flask's test "
            "client, body read to the end); no browser, no HTTP for the page callbacks. Sizes are that JSON "
            "or the response body, uncompressed. Budget: p95 < 300 ms, < 2 MB.\n\n"
            + "\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--record", action="store_true", help="write the results into docs/benchmarks.md")
    parser.add_argument("--profile", action="store_true", help="print a profile of one map frame")
    parser.add_argument("--smoke", action="store_true", help="minutes of data instead of days: checks the "
                        "benchmark runs, its figures mean nothing")
    args = parser.parse_args(argv)
    out = run(args.samples, args.smoke)
    if args.smoke:
        args.record = False
    text = report(out)
    print(text)
    if args.record:
        from bench.record import record

        record(SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(guard.run(main, "bench/explore.py", 1200))
