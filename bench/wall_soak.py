"""Wall soak benchmark: ``.venv/bin/python bench/wall_soak.py [--minutes 30] [--sensors 1000] [--days 30]``.

1. Starts a throw-away TimescaleDB and generates the KPI benchmark's data with
   its own generator (``bench/kpi.py``: ``--sensors`` sensors, ``--days`` at one
   reading a minute, in SQL, rolled up, KPI series materialised), placed in the
   demo city's districts and roads.  A feeder keeps it live during the soak:
   every minute one more minute of readings and vehicle positions, and the
   rollup job every 30 s, as the ingestor would.
2. Serves the real dashboard (``create_app``, werkzeug threaded server) with
   ``CITYDASH_WALL_REFRESH_S=1`` and times every ``/_dash-update-component``
   request on the server (Flask before/after request).
3. Opens ``/wall?refresh=1&rotate=60&views=overview,mobility,transport,infrastructure``
   in headless Chromium for ``--minutes`` and samples every ``--sample-s`` seconds,
   after a forced garbage collection (CDP ``HeapProfiler.collectGarbage``): JS heap
   used, DOM nodes, event listeners (CDP ``Performance.getMetrics``), and WebGL
   contexts created / canvases alive (``getContext`` wrapped by an init script).
4. Baseline, same run and data: the server time of one refresh without the
   shared cache (the wall's queries computed for every request).
5. Prints the figures and writes them under "Wall soak" in docs/benchmarks.md
   (``bench/record.py``).  Targets: < 10 % heap growth after warm-up, no DOM or
   WebGL context growth, server time per refresh p95 < 100 ms.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import guard  # noqa: E402

import numpy as np  # noqa: E402
import psycopg  # noqa: E402

from bench import kpi as kpi_bench  # noqa: E402
from bench.record import record  # noqa: E402
from kpis import rollup  # noqa: E402
from ingest.migrate import migrate  # noqa: E402
from core.settings import Settings  # noqa: E402
from devtools.stack import LocalPostgres, free_port  # noqa: E402

SECTION = "Wall soak"
PACK = ROOT / "layers" / "demo_city"
INIT_SCRIPT = """
(() => {
  const created = {n: 0};
  const alive = [];
  const original = HTMLCanvasElement.prototype.getContext;
  HTMLCanvasElement.prototype.getContext = function (type, ...rest) {
    const ctx = original.call(this, type, ...rest);
    if (ctx && /webgl/i.test(String(type)) && !alive.some(r => r.deref() === ctx)) {
      created.n += 1;
      alive.push(new WeakRef(ctx));
    }
    return ctx;
  };
  window.__wallGl = () => ({created: created.n,
                            alive: alive.filter(r => { const c = r.deref(); return c && !c.isContextLost(); }).length,
                            canvases: document.querySelectorAll('canvas').length});
})();
"""


def log(text: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {text}", flush=True)


def pct(samples, q) -> float:
    return float(np.percentile(samples, q)) if samples else float("nan")


# -- data -------------------------------------------------------------------------------

def build_data(pg_url: str, sensors: int, days: int, settings: Settings) -> dict:
    """The KPI benchmark's data, with the demo city's district and road ids."""
    from kpis import materialise
    from kpis.catalogue import load_catalogue

    districts = json.loads((PACK / "districts.geojson").read_text())["features"]
    now = datetime.now(timezone.utc)
    start = (now - timedelta(days=days)).replace(second=0, microsecond=0)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("SELECT setseed(0.42)")
        conn.execute("INSERT INTO districts (id, name, geometry) SELECT 'd' || lpad(g::text, 2, '0'), "
                     "'District ' || g, '{}' FROM generate_series(1, %s) g", (kpi_bench.DISTRICTS,))
        n = kpi_bench.seed(conn, sensors)
        for f in districts:  # the demo city's districts; sensors spread over them
            conn.execute("INSERT INTO districts (id, name, geometry) VALUES (%s, %s, %s::jsonb)",
                         (f["properties"]["id"], f["properties"]["name"], json.dumps(f["geometry"])))
        ids = [f["properties"]["id"] for f in districts]
        conn.execute("UPDATE sensors SET district_id = (%s::text[])[id %% %s + 1]", (ids, len(ids)))
        conn.execute("UPDATE sensors SET attributes = jsonb_set(attributes, '{road}', "
                     "to_jsonb('r-0' || substr(attributes->>'road', 3))) WHERE attributes ? 'road'")
        conn.execute("DELETE FROM districts WHERE id LIKE 'd__' AND id ~ '^d[0-9]+$'")
        log(f"{n} sensors; generating {days} days of readings in SQL (bench/kpi.py's generator)")
        t0, total, day = time.perf_counter(), 0, start
        while day < now:
            total += kpi_bench.load_day(conn, day, now)
            rollup.rebuild(conn, day, min(day + timedelta(days=1), now))
            day += timedelta(days=1)
            log(f"  {day:%Y-%m-%d}: {total / 1e6:.1f} M readings")
        vehicles = kpi_bench.load_vehicles(conn, now - timedelta(days=2), now)
        conn.execute("VACUUM ANALYZE")
    cat = load_catalogue(PACK)
    with psycopg.connect(settings.role_url("ingest"), autocommit=True) as conn:
        materialise.sync_definitions(conn, cat, backfill_1m=timedelta(days=min(days, 3)),
                                     backfill_1h=timedelta(days=days), now=datetime.now(timezone.utc))
    return {"sensors": n, "readings": total, "vehicles": vehicles, "build_s": time.perf_counter() - t0,
            "end": now.replace(second=0, microsecond=0)}


class Feeder:
    """One more minute of readings and vehicle positions every minute; the rollup job every 30 s."""

    def __init__(self, pg_url: str, settings: Settings, since: datetime):
        from ingest.jobs import JobRunner

        self.url, self.since = pg_url, since
        self.runner = JobRunner(settings, publisher=lambda topic, payload: True)
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.rollup_s: list[float] = []
        self.thread = threading.Thread(target=self._loop, name="wall-soak-feeder", daemon=True)

    def _loop(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.wait(30):
                try:
                    until = datetime.now(timezone.utc).replace(second=0, microsecond=0)
                    if until > self.since:
                        since, self.since = self.since, until
                        kpi_bench.load_day(conn, since, until)
                        conn.execute("INSERT INTO rollup_pending (bucket) SELECT generate_series(%s::timestamptz, "
                                     "%s::timestamptz - interval '1 minute', interval '1 minute')", (since, until))
                        conn.execute("""INSERT INTO vehicle_positions (time, vehicle, route, lon, lat, delay_s,
                                               occupancy_pct)
                                        SELECT t, 'bus-' || v, 'R' || (v %% 20), -56.1 + (v %% 10) * 0.005,
                                               -15.6 + (v / 10) * 0.004, 120 * sin(v), 50
                                          FROM generate_series(%s::timestamptz, %s::timestamptz - interval '1 second',
                                                               interval '30 seconds') t, generate_series(1, 100) v""",
                                     (since, until))
                    t = time.perf_counter()
                    self.runner.run_once(jobs=("rollup",))
                    self.rollup_s.append(time.perf_counter() - t)
                except Exception as exc:  # reported at the end, the soak goes on
                    self.errors.append(f"{type(exc).__name__}: {exc}")


# -- server --------------------------------------------------------------------------------

def serve(settings: Settings):
    """The real dashboard on a free port; returns (url, server, per-request seconds list)."""
    import flask
    from werkzeug.serving import make_server

    from dashboard.server import create_app

    app = create_app(settings)
    timings: list[float] = []
    server = app.server

    @server.before_request
    def _start():
        flask.g.wall_soak_t = time.perf_counter()

    @server.after_request
    def _stop(response):
        if flask.request.path == "/_dash-update-component" and hasattr(flask.g, "wall_soak_t"):
            timings.append(time.perf_counter() - flask.g.wall_soak_t)
        return response

    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    http = make_server("127.0.0.1", port, server, threaded=True)
    threading.Thread(target=http.serve_forever, name="wall-soak-http", daemon=True).start()
    return f"http://127.0.0.1:{port}", http, timings


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1920,1080",
                "--disable-background-networking", "--disable-component-update", "--no-first-run"):
        options.add_argument(arg)
    # Debian's chromium and its chromedriver (`make deps`): Selenium Manager never downloads one
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": INIT_SCRIPT})
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": False})
    driver.execute_cdp_cmd("Performance.enable", {})
    return driver


def sample(driver, started: float) -> dict:
    driver.execute_cdp_cmd("HeapProfiler.collectGarbage", {})
    metrics = {m["name"]: m["value"] for m in driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]}
    gl = driver.execute_script("return window.__wallGl ? window.__wallGl() : null") or {}
    return {"t_s": round(time.monotonic() - started, 1), "heap_mb": metrics.get("JSHeapUsedSize", 0) / 2**20,
            "nodes": int(metrics.get("Nodes", 0)), "listeners": int(metrics.get("JSEventListeners", 0)),
            "documents": int(metrics.get("Documents", 0)), "gl_created": gl.get("created"),
            "gl_alive": gl.get("alive"), "canvases": gl.get("canvases"),
            "view": driver.execute_script("const e = document.getElementById('wall-view-name'); "
                                          "return e ? e.textContent : null")}


def baseline(settings: Settings, runs: int) -> list[float]:
    """Server time of one refresh if nothing were shared: the wall's queries computed every time."""
    import dash

    from dashboard import cache

    page = sys.modules[dash.page_registry["pages.wall"]["module"]]  # as the app loaded it
    samples = []
    config = {"locale": "en", "views": ["overview"], "district": None, "refresh_s": 1, "tz": "UTC"}
    for _ in range(runs):
        cache.clear()
        page._last.clear()  # nothing kept by the process either: every query runs in the request
        t = time.perf_counter()
        page.render("overview", config, version="-")
        samples.append(time.perf_counter() - t)
    return samples


# -- main --------------------------------------------------------------------------------

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30, help="length of the soak (default 30)")
    p.add_argument("--sensors", type=int, default=1000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--sample-s", type=float, default=30, help="seconds between browser samples")
    p.add_argument("--warmup-min", type=float, default=5, help="minutes before the heap reference")
    p.add_argument("--baseline-runs", type=int, default=15)
    p.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    args = p.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="citydash-bench-wall-"))
    os.chmod(root, 0o755)
    pg = LocalPostgres(root, free_port())
    driver = http = feeder = None
    try:
        pg.start()
        migrate(pg.url)
        settings = Settings(_env_file=None, database_url=pg.url, wall_refresh_s=1, auth_mode="none", environment="development",
                            city_pack=str(PACK), layers_dir=str(root / "layers"), log_format="text",
                            log_level="WARNING", metrics_port=0)
        data = build_data(pg.url, args.sensors, args.days, settings)
        log(f"{data['readings']:,} readings, {data['vehicles']:,} vehicle positions in {data['build_s']:.0f} s")
        feeder = Feeder(pg.url, settings, data["end"])
        feeder.thread.start()
        url, http, timings = serve(settings)
        from dashboard import cache

        driver = browser()
        page = f"{url}/wall?refresh=1&rotate=60&views=overview,mobility,transport,infrastructure&lang=en"
        driver.get(page)
        started = time.monotonic()
        samples = []
        end = started + args.minutes * 60
        while time.monotonic() < end:
            time.sleep(max(0.0, min(args.sample_s, end - time.monotonic())))
            samples.append(sample(driver, started))
            s = samples[-1]
            log(f"t={s['t_s']:6.0f}s heap {s['heap_mb']:.1f} MB, nodes {s['nodes']}, listeners {s['listeners']}, "
                f"WebGL created {s['gl_created']} alive {s['gl_alive']}, canvases {s['canvases']}, "
                f"view {s['view']}, refreshes {len(timings)}")
        stale = driver.execute_script("return document.getElementById('wall-banner').className")
        driver.quit()
        driver = None
        stats = cache.stats()
        base = baseline(settings, args.baseline_runs)
    finally:
        if driver is not None:
            driver.quit()
        if feeder is not None:
            feeder.stop.set()
        if http is not None:
            http.shutdown()
        from core.db import close_all

        close_all()
        pg.remove()

    result = analyse(samples, timings, base, args)
    result.update(data={k: v for k, v in data.items() if k != "end"}, cache=stats, feeder_errors=feeder.errors[:5],
                  rollup_runs=len(feeder.rollup_s), rollup_median_s=statistics.median(feeder.rollup_s)
                  if feeder.rollup_s else None, banner_class_at_end=stale)
    print(json.dumps(result, indent=1, default=str))
    if not args.no_docs:
        record(SECTION, report(result, args))
        log("results written to docs/benchmarks.md")
    return 0


def analyse(samples: list[dict], timings: list[float], base: list[float], args) -> dict:
    warm = [s for s in samples if s["t_s"] >= args.warmup_min * 60] or samples[-3:]
    ref = warm[: max(1, min(4, len(warm) // 4))]  # the first samples after warm-up
    last = warm[-max(1, min(4, len(warm) // 4)):]
    heap_ref = statistics.median(s["heap_mb"] for s in ref)
    heap_end = statistics.median(s["heap_mb"] for s in last)
    ms = [t * 1000 for t in timings]
    base_ms = [t * 1000 for t in base]
    return {
        "minutes": args.minutes, "samples": samples, "refresh_requests": len(ms),
        "server_ms": {"median": statistics.median(ms) if ms else None, "p95": pct(ms, 95), "p99": pct(ms, 99),
                      "max": max(ms) if ms else None},
        "baseline_ms": {"median": statistics.median(base_ms), "p95": pct(base_ms, 95), "n": len(base_ms)},
        "heap": {"reference_mb": heap_ref, "end_mb": heap_end, "growth": heap_end / heap_ref - 1 if heap_ref else None,
                 "min_mb": min(s["heap_mb"] for s in warm), "max_mb": max(s["heap_mb"] for s in warm)},
        "nodes": {"reference": ref[0]["nodes"], "end": last[-1]["nodes"],
                  "max_after_warmup": max(s["nodes"] for s in warm), "min_after_warmup": min(s["nodes"] for s in warm)},
        "listeners": {"reference": ref[0]["listeners"], "end": last[-1]["listeners"]},
        "webgl": {"created_at_warmup": ref[0]["gl_created"], "created_at_end": last[-1]["gl_created"],
                  "alive_end": last[-1]["gl_alive"], "canvases_end": last[-1]["canvases"]},
    }


def report(r: dict, args) -> str:
    s, b, h, n, g = r["server_ms"], r["baseline_ms"], r["heap"], r["nodes"], r["webgl"]
    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    heap_ok = h["growth"] is not None and h["growth"] < 0.10
    dom_ok = n["end"] <= n["reference"] * 1.01 + 5
    gl_ok = g["created_at_end"] == g["created_at_warmup"]
    rows = "\n".join(f"| {x['t_s']:.0f} | {x['view']} | {x['heap_mb']:.1f} | {x['nodes']} | {x['listeners']} | "
                     f"{x['gl_created']} / {x['gl_alive']} |" for x in r["samples"][:: max(1, len(r["samples"]) // 12)])
    return f"""`.venv/bin/python bench/wall_soak.py --minutes {args.minutes:g} --sensors {args.sensors} --days {args.days}`

Data: the KPI benchmark's generator (`bench/kpi.py`, in SQL): {r['data']['sensors']} sensors, {args.days} days at one
reading a minute, {r['data']['readings']:,} readings, {r['data']['vehicles']:,} vehicle positions, in the demo city's
districts and roads (built in {r['data']['build_s']:.0f} s). During the soak a feeder added one minute of readings and
vehicle positions per minute and ran the rollup job every 30 s ({r['rollup_runs']} runs, median
{(r['rollup_median_s'] or 0):.2f} s; errors: {len(r['feeder_errors'])}).

One headless Chromium at 1920x1080 on `/wall?refresh=1&rotate=60&views=overview,mobility,transport,infrastructure`
for {args.minutes:g} minutes ({r['refresh_requests']:,} callback requests), the real dashboard (`create_app`,
werkzeug threaded server, `CITYDASH_WALL_REFRESH_S=1`, `CITYDASH_WALL_CACHE_S=30`, in-process SimpleCache).
Samples every {args.sample_s:g} s after a forced GC (CDP `HeapProfiler.collectGarbage`, `Performance.getMetrics`);
WebGL contexts counted by wrapping `HTMLCanvasElement.prototype.getContext` in an init script.

| figure | value | target |
|---|---|---|
| JS heap after {args.warmup_min:g} min warm-up → end (medians of the first / last samples) | {h['reference_mb']:.1f} MB → {h['end_mb']:.1f} MB (**{h['growth'] * 100:+.1f} %**; range {h['min_mb']:.1f}–{h['max_mb']:.1f} MB) | < 10 % growth ({met(heap_ok)}) |
| DOM nodes after warm-up → end | {n['reference']} → {n['end']} (range {n['min_after_warmup']}–{n['max_after_warmup']}) | no growth ({met(dom_ok)}) |
| JS event listeners after warm-up → end | {r['listeners']['reference']} → {r['listeners']['end']} | – |
| WebGL contexts created after warm-up → end (alive at end) | {g['created_at_warmup']} → {g['created_at_end']} ({g['alive_end']} alive, {g['canvases_end']} canvases) | no growth ({met(gl_ok)}) |
| server time per refresh request (all `/_dash-update-component`) | median {s['median']:.1f} ms, **p95 {s['p95']:.1f} ms**, p99 {s['p99']:.1f} ms, max {s['max']:.0f} ms | p95 < 100 ms ({met(s['p95'] < 100)}) |
| baseline: one refresh without the shared cache (every query computed), {b['n']} runs | median {b['median']:.1f} ms, p95 {b['p95']:.1f} ms | – |

Cached refresh / uncached baseline (median): **{s['median'] / b['median']:.3f}x**. Cache hits / misses of the
run: {r['cache'].get('hits')} / {r['cache'].get('misses')} (a miss is one computation of a bucket: the KPI snapshot
once per `CITYDASH_WALL_CACHE_S`, the cheap live part once per refresh period, for all screens together). Misses
are computed in a background thread while the screen gets the previous bucket's value (`dashboard/pages/wall.py`,
`shared`), so no refresh request waits for the KPI engine.
Banner class at the end: `{r['banner_class_at_end']}`.

| t (s) | view | heap (MB) | DOM nodes | listeners | WebGL created / alive |
|---|---|---|---|---|---|
{rows}
"""


if __name__ == "__main__":
    sys.exit(guard.run(main, "bench/wall_soak.py", 3600))
