"""The web layer route and the bucketed cache, through the real Flask server."""
from __future__ import annotations

import gzip
import json
import threading

from dashboard import cache
from dashboard.server import create_app


def test_layer_route_serves_gzip_etag_and_304(settings):
    app = create_app(settings)
    client = app.server.test_client()
    from dashboard.layer_files import CACHE_CONTROL, layer_url, manifest

    url = layer_url("districts")
    entry = next(f for f in manifest()["files"] if f["layer"] == "districts" and f["band"] == "city")
    assert url.startswith("/layers/city/districts.geojson?v=" + entry["sha256"][:12])

    plain = client.get(url)
    assert plain.status_code == 200
    assert plain.headers["Content-Type"].startswith("application/geo+json")
    assert plain.headers["ETag"].strip('"') == entry["sha256"]
    assert "max-age" in plain.headers["Cache-Control"]
    body = json.loads(plain.data)
    assert body["type"] == "FeatureCollection" and len(body["features"]) == entry["features"] == 20

    assert plain.headers["Cache-Control"] == CACHE_CONTROL  # with stale-while-revalidate
    assert "Accept-Encoding" in plain.headers["Vary"] and "Content-Encoding" not in plain.headers

    zipped = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in zipped.headers["Vary"]
    assert zipped.headers["Content-Type"].startswith("application/geo+json")
    assert zipped.headers["ETag"] == plain.headers["ETag"]
    assert zipped.headers["Cache-Control"] == CACHE_CONTROL
    assert len(zipped.data) < len(plain.data)
    assert json.loads(gzip.decompress(zipped.data)) == body
    refused = client.get(url, headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "Content-Encoding" not in refused.headers and refused.data == plain.data

    again = client.get(url, headers={"If-None-Match": plain.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == plain.headers["ETag"] and again.headers["Cache-Control"] == CACHE_CONTROL
    again_gz = client.get(url, headers={"If-None-Match": plain.headers["ETag"], "Accept-Encoding": "gzip"})
    assert again_gz.status_code == 304 and again_gz.data == b""
    changed = client.get(url, headers={"If-None-Match": '"not-this-one"'})
    assert changed.status_code == 200 and changed.data == plain.data

    assert client.get("/layers/city/nonexistent.geojson").status_code == 404
    for probe in ("/layers/../../etc/passwd.geojson", "/layers/..%2F..%2Fetc/passwd.geojson",
                  "/layers/city/..%2F..%2Fmanifest.geojson"):
        answer = client.get(probe)
        assert not answer.headers["Content-Type"].startswith("application/geo+json"), probe
        assert b"root:" not in answer.data and b'"files"' not in answer.data, probe


def test_bucketed_computes_once_per_bucket_under_concurrency(settings):
    cache.configure(settings)
    calls = []
    barrier = threading.Barrier(16)

    def compute():
        calls.append(1)
        return {"value": len(calls)}

    results = []

    def screen():
        barrier.wait()
        results.append(cache.bucketed("test-view", 3600, compute))

    threads = [threading.Thread(target=screen) for _ in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(calls) == 1
    assert results == [{"value": 1}] * 16
    # A falsy result is cached too (no recomputation because it is "empty").
    empty_calls = []
    for _ in range(3):
        assert cache.bucketed("test-empty", 3600, lambda: empty_calls.append(1) or None) is None
    assert len(empty_calls) == 1
