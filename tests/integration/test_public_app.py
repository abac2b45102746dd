"""The public app: its own callbacks only, hostile inputs, headers, cache and rate limits (auth on)."""
from __future__ import annotations

import json
import time

import psycopg
import pytest

from core.db import close_all
from dashboard import cache
from dashboard.public.contract import PAGE_OUTPUT, VIEW_OUTPUT
from dashboard.server import create_app
from devtools.stack import free_port
from tests.auth_tools import with_sign_in
from tests.integration.test_public_views import seed_public

INJECTIONS = ["'; DROP TABLE kpi_1m; --", "congestion_index' OR '1'='1", "x" * 100_00,
              {"$gt": ""}, ["congestion_index"], 1e308, None, "../../etc/passwd", "<script>alert(1)</script>"]


@pytest.fixture
def app(settings, db_url):
    seed_public(db_url)
    app = create_app(with_sign_in(settings, public_frame_ancestors="'self' https://www.city.example",
                                  public_rate_limit="1000 per minute"))
    cache.clear()
    yield app
    app.public_app.public_data.stop()
    close_all()


def _outputs(output: str):
    """The ``outputs`` field the Dash renderer sends for an output id."""
    if output.startswith(".."):
        parts = [p for p in output.strip(".").split("...")]
        return [{"id": p.rsplit(".", 1)[0], "property": p.rsplit(".", 1)[1]} for p in parts]
    cid, prop = output.rsplit(".", 1)
    return {"id": cid, "property": prop}


def _body(output: str, inputs: list[dict], state: list[dict] | None = None) -> dict:
    return {"output": output, "outputs": _outputs(output), "inputs": inputs, "state": state or [],
            "changedPropIds": [f"{i['id']}.{i['property']}" for i in inputs[:1]]}


def _view(client, kpi, area, locale="en"):
    body = _body(VIEW_OUTPUT, [{"id": "public-kpi", "property": "value", "value": kpi},
                               {"id": "public-area", "property": "value", "value": area},
                               {"id": "public-interval", "property": "n_intervals", "value": 0}],
                 [{"id": "public-locale", "property": "data", "value": locale}])
    return client.post("/public/_dash-update-component", json=body)


def test_callback_names_are_the_apps_own(app):
    """What clients send as ``output`` (contract.py) is exactly the public app's two callbacks."""
    assert set(app.public_app.callback_map) == {PAGE_OUTPUT, VIEW_OUTPUT}
    assert VIEW_OUTPUT == ("..public-cards.children...public-asof.children...public-error.children..."
                           "public-map.figure...public-map-table.children...public-trend.figure..."
                           "public-trend-table.children..")


def test_public_endpoint_refuses_every_internal_callback(app):
    client = app.server.test_client()
    # the public app is asked first: it still never takes the pages' callbacks, which the internal
    # app takes on its own first request
    assert client.get("/public/_dash-dependencies").status_code == 200
    assert client.get("/healthz").status_code == 200
    internal = list(app.callback_map)
    assert len(internal) >= 1 and set(internal).isdisjoint(app.public_app.callback_map)
    for output in internal:
        cb = app.callback_map[output]
        inputs = [{"id": i["id"], "property": i["property"], "value": None} for i in cb["inputs"]]
        response = client.post("/public/_dash-update-component", json=_body(output, inputs))
        assert response.status_code == 404, output
    # and the internal endpoint is closed to anonymous callers, public callbacks included
    for output in app.public_app.callback_map:
        assert client.post("/_dash-update-component", json=_body(output, [])).status_code == 401


@pytest.mark.parametrize("path", ["/api/v1/kpis", "/api/v1/readings", "/layers/city/sensors.geojson",
                                  "/public/../api/v1/kpis", "/public/api/v1/kpis", "/public/_dash-layout/../../wall",
                                  "/_dash-layout", "/wall", "/explore"])
def test_no_raw_data_by_url(app, path):
    response = app.server.test_client().get(path)
    text = response.get_data(as_text=True)
    if response.status_code == 200:  # unknown paths under /public/ get the public app's page shell
        assert path.startswith("/public/") and '"requests_pathname_prefix":"\\u002fpublic\\u002f"' in text, path
        assert "Pascoal Ramos" not in text and "road-7" not in text  # no data in the shell
    else:
        assert response.status_code in (302, 401, 404), path


def test_public_layout_and_dependencies_are_its_own(app):
    client = app.server.test_client()
    deps = client.get("/public/_dash-dependencies").get_json()
    outputs = " ".join(d["output"] for d in deps)
    assert "public-page" in outputs and "wall-" not in outputs and "explore-" not in outputs
    index = client.get("/public/?lang=ja")
    assert index.status_code == 200 and '<html lang="ja">' in index.get_data(as_text=True)
    assert "_dash-config" in index.get_data(as_text=True)
    # the shell is kept by language: the same bytes for every viewer of a language
    hits = app.public_app.public_answers.hits
    assert client.get("/public/?lang=ja&x=1").get_data() == index.get_data()
    assert app.public_app.public_answers.hits == hits + 1
    assert '<html lang="en">' in client.get("/public/?lang=en").get_data(as_text=True)
    assert '<html lang="pt-BR">' in client.get("/public/?lang=pt-BR").get_data(as_text=True)


def test_view_callback_gives_figures_and_table(app):
    response = _view(app.server.test_client(), "congestion_index", "city")
    assert response.status_code == 200
    out = response.get_json()["response"]
    table = json.dumps(out["public-map-table"]["children"])
    assert "Pascoal Ramos" in table and "Not shown (too few sensors)" in table  # 'tiny' suppressed
    assert out["public-error"]["children"] == ""
    traces = out["public-map"]["figure"]["data"]
    assert traces[0]["type"] == "choroplethmap" and "pascoal-ramos" in traces[0]["locations"]
    assert "tiny" not in traces[0]["locations"] and "tiny" in traces[1]["locations"]
    assert len(out["public-trend"]["figure"]["data"][0]["x"]) >= 4


@pytest.mark.parametrize("bad", INJECTIONS, ids=range(len(INJECTIONS)))
def test_hostile_inputs_give_a_message(app, db_url, bad):
    client = app.server.test_client()
    for kpi, area, locale in [(bad, "city", "en"), ("congestion_index", bad, "en"), ("congestion_index", "city", bad)]:
        response = _view(client, kpi, area, locale)
        if len(json.dumps(bad)) > 32 * 1024:
            assert response.status_code == 413
            continue
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        error = response.get_json()["response"]["public-error"]["children"]
        if kpi is bad and bad is not None:
            assert error == "Unknown indicator; showing the first one."
        elif area is bad and bad is not None:
            assert error == "Unknown area; showing the whole city."
    page = client.post("/public/_dash-update-component", json=_body(
        "..public-page.children...public-locale.data..",
        [{"id": "public-url", "property": "search", "value": bad}]))
    assert page.status_code in (200, 413)
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM kpi_1m").fetchone()[0] > 0


def test_oversized_and_malformed_requests(app):
    client = app.server.test_client()
    big = client.post("/public/_dash-update-component", data="x" * 40_000,
                      headers={"Content-Type": "application/json"})
    assert big.status_code == 413
    assert client.post("/public/_dash-update-component", data="not json",
                       headers={"Content-Type": "application/json"}).status_code == 404


def test_security_headers_everywhere(app):
    client = app.server.test_client()
    for path in ["/public/", "/public/_dash-layout", "/login", "/healthz", "/wall", "/api/v1/kpis"]:
        h = client.get(path).headers
        assert h["X-Content-Type-Options"] == "nosniff", path
        assert "default-src 'self'" in h["Content-Security-Policy"], path
        assert "script-src 'self' 'sha256-" in h["Content-Security-Policy"], path
        assert h["Referrer-Policy"], path
        if path.startswith("/public"):
            assert "Set-Cookie" not in h, path  # the public view sets no cookie
            assert "frame-ancestors 'self' https://www.city.example" in h["Content-Security-Policy"]
            assert "X-Frame-Options" not in h
        else:
            assert "frame-ancestors 'none'" in h["Content-Security-Policy"], path
            assert h["X-Frame-Options"] == "DENY", path


def test_database_load_does_not_grow_with_viewers(app, settings):
    client = app.server.test_client()
    data = app.public_app.public_data
    _view(client, "congestion_index", "city")
    assert data.refreshes == 1
    for i in range(30):
        assert _view(client, "congestion_index", ["city", "centro-sul"][i % 2], ["en", "ja"][i % 2]).status_code == 200
    assert data.refreshes == 1  # 30 more views, not one more snapshot query


def test_snapshot_is_refreshed_on_a_schedule(settings, db_url):
    seed_public(db_url)
    app = create_app(settings.model_copy(update={"public_refresh_s": 1}))
    data = app.public_app.public_data
    client = app.server.test_client()
    first = data.get()
    deadline = time.monotonic() + 10
    while data.refreshes < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert data.refreshes >= 3  # the background thread, without any viewer
    assert data.local.computed_at > first.computed_at
    before = data.refreshes
    assert _view(client, "congestion_index", "city").status_code == 200
    assert data.refreshes - before <= 1  # a viewer never triggers a read of its own
    data.stop()


def test_public_rate_limit(settings, db_url):
    app = create_app(settings.model_copy(update={"public_rate_limit": "5 per minute"}))
    client = app.server.test_client()
    codes = [client.get("/public/_dash-layout").status_code for _ in range(6)]
    assert codes == [200] * 5 + [429]
    limited = client.get("/public/_dash-dependencies", headers={"Accept-Language": "pt-BR"})
    assert limited.status_code == 429 and "Muitas solicitações" in limited.get_data(as_text=True)
    assert client.get("/healthz").status_code == 200  # internal routes are not counted


def _page(client, search):
    return client.post("/public/_dash-update-component",
                       json=_body(PAGE_OUTPUT, [{"id": "public-url", "property": "search", "value": search}]))


def test_cached_answers_equal_uncached_answers(app):
    """Answers kept (whole, or built from memoised parts) are byte for byte what Dash computes."""
    client = app.server.test_client()
    public = app.public_app
    asks = [lambda c, k=k, a=a, loc=loc: _view(c, k, a, loc)
            for k, a, loc in [("congestion_index", "city", "en"), ("congestion_index", "centro-sul", "ja"),
                              ("congestion_index", "tiny", "pt-BR"), ("nope", "city", "en"),
                              ("nope", "centro-sul", "pt-BR"), ("congestion_index", "nowhere", "ja"),
                              ("congestion_index", "nowhere", "pt-BR"), (None, None, None),
                              (["x"], {"a": 1}, "ja")]]
    asks += [lambda c, s=s: _page(c, s) for s in ["?lang=ja", "", "?lang=pt-BR&x=1", "?lang=en", None]]

    def answers():
        responses = [ask(client) for ask in asks]
        assert all(r.status_code == 200 and r.content_type == "application/json" for r in responses)
        return [r.get_data() for r in responses]

    computed = answers()  # the first time: computed and kept
    hits = public.public_answers.hits
    kept = answers()
    assert public.public_answers.hits - hits == len(asks)  # every one from the answer cache
    public.public_answers.enabled = False
    try:
        from_parts = answers()  # the callbacks run, on memoised parts
        public.public_memo.enabled = False
        uncached = answers()  # the callbacks run and build everything
    finally:
        public.public_answers.enabled = public.public_memo.enabled = True
    assert computed == kept == from_parts == uncached
    assert b"Unknown indicator" in computed[3]
    assert all(json.loads(computed[i])["response"]["public-error"]["children"] for i in (4, 5, 6, 8))
    assert len({computed[0], computed[1], computed[2]}) == 3  # three languages, three answers


def test_a_new_snapshot_is_not_answered_from_the_old_one(app):
    client = app.server.test_client()
    data = app.public_app.public_data
    first = _view(client, "congestion_index", "city").get_data()
    assert _view(client, "congestion_index", "city").get_data() == first
    data.refresh()  # a newer snapshot (the same rows, so the same answer, but a new version)
    hits = app.public_app.public_answers.hits
    assert _view(client, "congestion_index", "city").get_data() == first
    assert app.public_app.public_answers.hits == hits  # computed again for the new version


def test_cached_answers_are_rate_limited(settings, db_url):
    seed_public(db_url)
    app = create_app(settings.model_copy(update={"public_rate_limit": "3 per minute"}))
    client = app.server.test_client()
    codes = [_view(client, "congestion_index", "city").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert app.public_app.public_answers.hits == 2  # the second and third: kept answers, counted


def test_an_app_that_never_served_leaves_nothing_to_the_next_one(settings, db_url):
    """Many apps in one process (tests): the pages' callbacks of an app that never served a request
    end up neither in the next public app nor twice in the next internal app."""
    seed_public(db_url)
    create_app(settings)  # never asked anything
    app = create_app(settings)
    assert set(app.public_app.callback_map) == {PAGE_OUTPUT, VIEW_OUTPUT}
    client = app.server.test_client()
    deps = client.get("/_dash-dependencies").get_json()  # sign-in is off in these settings
    outputs = [d["output"] for d in deps]
    assert len(outputs) == len(set(outputs)) and any("wall-" in o for o in outputs)
    assert not any("public-" in o for o in outputs)
    assert len(client.get("/public/_dash-dependencies").get_json()) == 2


@pytest.mark.parametrize("inputs,state", [(5, None), ("abc", "x"), ([1, None, "x"], [{"id": ["a"]}]),
                                          ([{"id": "public-kpi", "value": {"$ne": 1}}], {"k": 1})])
def test_malformed_callback_bodies_get_a_view_not_an_error(app, inputs, state):
    """Whatever shape the inputs have, the answer is the default view with no traceback."""
    body = {"output": VIEW_OUTPUT, "outputs": _outputs(VIEW_OUTPUT), "inputs": inputs, "state": state}
    response = app.server.test_client().post("/public/_dash-update-component", json=body)
    assert response.status_code == 200
    out = response.get_json()["response"]
    assert out["public-map"]["figure"]["data"] and "Traceback" not in response.get_data(as_text=True)


def test_database_down_gives_a_translated_message(settings):
    """No database: the page and the view say so in the viewer's language; no traceback, no 500."""
    down = settings.model_copy(update={"database_url": f"postgresql://citydash@127.0.0.1:{free_port()}/citydash"})
    app = create_app(down)
    try:
        client = app.server.test_client()
        page = _page(client, "?lang=pt-BR")
        assert page.status_code == 200
        text = json.dumps(page.get_json(), ensure_ascii=False)
        assert "Os valores não estão disponíveis agora" in text and "Traceback" not in text
        view = _view(client, "congestion_index", "city", "ja")
        assert view.status_code == 200
        assert view.get_json()["response"]["public-error"]["children"].startswith("現在数値を表示できません")
        # after a failed read, viewers get that failure at once for a while instead of each waiting again
        data = app.public_app.public_data
        with pytest.raises(Exception) as first:
            data.get()
        with pytest.raises(Exception) as second:
            data.get()
        assert second.value is first.value and data.refreshes == 0
        assert "Traceback" not in view.get_data(as_text=True)
    finally:  # no pool left retrying the dead address after the test
        app.public_app.public_data.stop()
        close_all()
