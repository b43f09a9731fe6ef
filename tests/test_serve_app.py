"""`recsys serve` in process (FastAPI test client): every endpoint, status code and error body; answers equal
the CLI's JSON for the same run; API key; reload with an atomic swap; 25+ malformed requests."""

from __future__ import annotations

import io
import json
import os
import shutil

import pytest
from cli_helpers import run_cli, synth_dataset

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from recsys_cli.cli.app import app as cli  # noqa: E402
from recsys_cli.serve.app import serve_app  # noqa: E402
from recsys_cli.serve.registry import LRUCache  # noqa: E402

SVD, KNN = "svd-synth-random", "item-knn-synth"
KEY = "s3cret-key-42"




@pytest.fixture(scope="module")
def env(tmp_path_factory):
    data, arts = synth_dataset(tmp_path_factory.mktemp("serve"))
    run_cli("train", "svd", "--dataset", "synth", "--split", "random", "--data-dir", data, "--artifacts-dir", arts,
            "-p", "factors=8", "-p", "epochs=10", "--format", "json")
    # no split: its manifest has split null (the API used to fail loading such runs)
    run_cli("train", "item-knn", "--dataset", "synth", "--data-dir", data, "--artifacts-dir", arts, "--format", "json")
    return {"data": data, "arts": arts}


def cli_json(env, *args):
    return json.loads(run_cli(*args, "--artifacts-dir", env["arts"], "--format", "json").stdout)


@pytest.fixture(scope="module")
def server(env):
    log = io.StringIO()
    app = serve_app([SVD, KNN], default=SVD, artifacts_dir=env["arts"], data_dir=env["data"], cache_size=100,
                    max_batch=500, log=log)
    with TestClient(app) as client:
        yield client, app.registry, log


def test_answers_equal_the_cli_json(env, server):
    client, _, _ = server
    assert client.get("/recommend", params={"user": 1, "n": 5}).json() == cli_json(env, "recommend", SVD, "--user", 1,
                                                                                    "-n", 5)
    batch = client.post("/recommend", json={"users": [3, 1, 99999], "n": 4}).json()
    assert batch == cli_json(env, "recommend", SVD, "--user", "3,1,99999", "-n", 4)
    assert [r["fallback"] for r in batch if r["user_id"] == 99999] == ["popularity"] * 4
    assert batch[0]["fallback"] is None
    fold = client.post("/recommend", json={"ratings": {"5": 5, "7": 1.5}, "n": 3}).json()
    assert fold == cli_json(env, "recommend", SVD, "--ratings", "5:5,7:1.5", "-n", 3)
    assert client.get("/predict", params={"user": 1, "item": 5}).json() == cli_json(env, "predict", SVD, "--user", 1,
                                                                                      "--item", 5)
    pairs = client.post("/predict", json={"pairs": [[1, 5], [99999, 5], [2, 99999]]}).json()
    assert [p["fallback"] for p in pairs] == [None, "item_bias", "user_bias"]
    assert client.get("/similar", params={"item": 5, "n": 3, "run": KNN}).json() == cli_json(
        env, "similar", KNN, "--item", 5, "-n", 3)
    unseen = client.get("/recommend", params={"user": 1, "n": 5, "exclude_seen": "false"}).json()
    assert unseen == cli_json(env, "recommend", SVD, "--user", 1, "-n", 5, "--include-seen")


def test_health_ready_runs_items_and_docs(env, server):
    client, registry, _ = server
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["runs"] == [SVD, KNN] and health["default"] == SVD
    assert client.get("/ready").json() == {"ready": True, "runs": 2}
    runs = client.get("/runs").json()
    assert [(r["run"], r["model"], r["split"], r["default"]) for r in runs] == [(SVD, "svd", "random", True),
                                                                               (KNN, "item-knn", None, False)]
    detail = client.get(f"/runs/{SVD}").json()
    assert detail["config"]["factors"] == 8 and detail["dataset"] == "synth" and detail["last_reload_error"] is None
    item = client.get("/items/5").json()
    titles = registry.get(SVD).model.titles
    assert item["item_id"] == 5 and item["title"] == titles[5] and item["genres"] and isinstance(item["genres"], list)
    assert client.get("/items/99999").json() == {"error": f"item 99999 is not in the catalogue of run '{SVD}'",
                                                 "code": "unknown_id"}
    spec = client.get("/openapi.json").json()
    for path in ("/health", "/ready", "/runs", "/runs/{run}", "/recommend", "/predict", "/similar", "/items/{item}",
                 "/metrics", "/admin/reload"):
        assert path in spec["paths"], path
    assert spec["components"]["schemas"]["RecommendBody"]["examples"][0] == {"users": [1, 2, 3], "n": 10}
    for path, model in (("/recommend", "RecommendBody"), ("/predict", "PredictBody")):  # bodies parsed by the app
        body = spec["paths"][path]["post"]["requestBody"]
        assert body["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{model}"}
    assert "users" in spec["components"]["schemas"]["RecommendBody"]["properties"]
    params = {p["name"]: p for p in spec["paths"]["/recommend"]["get"]["parameters"]}
    assert set(params) == {"user", "n", "run", "exclude_seen", "explain"} and params["user"]["required"] is True
    assert params["n"]["schema"] == {"type": "integer", "default": 10}
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    assert client.get("/docs").status_code == 200


def test_cache_hits_and_metrics(server):
    client, registry, log = server
    first = client.get("/recommend", params={"user": 7, "n": 6}).json()
    again = client.get("/recommend", params={"user": 7, "n": 6}).json()
    bypass = client.get("/recommend", params={"user": 7, "n": 6}, headers={"Cache-Control": "no-cache"}).json()
    assert first == again == bypass
    assert (SVD, registry.get(SVD).generation, 7, 6, True, False) in registry.cache._data
    text = client.get("/metrics").text
    lines = {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln and ln[0] != "#"}
    assert lines[f'recsys_cache_hits_total{{run="{SVD}"}}'] >= 1
    assert lines[f'recsys_cache_misses_total{{run="{SVD}"}}'] >= 1
    assert lines[f'recsys_requests_total{{endpoint="/recommend",run="{SVD}",status="200"}}'] >= 3
    assert f'recsys_request_seconds_bucket{{endpoint="/recommend",le="0.005",run="{SVD}"}}' in lines
    assert lines[f'recsys_model_loads_total{{result="ok",run="{KNN}"}}'] == 1
    assert lines[f'recsys_model_load_seconds{{run="{SVD}"}}'] > 0
    entries = [json.loads(x) for x in log.getvalue().splitlines()]
    assert {"ts", "method", "path", "status", "ms"} <= set(entries[-1])
    assert any(e["path"] == "/recommend" and e["status"] == 200 and e["run"] == SVD for e in entries)


def test_lru_cache_evicts_least_recent_and_invalidates_per_run():
    cache = LRUCache(2)
    cache.put(("a", 1, 1, 10, True), [1])
    cache.put(("a", 1, 2, 10, True), [2])
    assert cache.get(("a", 1, 1, 10, True)) == [1]  # 1 is now the most recent
    cache.put(("b", 1, 3, 10, True), [3])
    assert cache.get(("a", 1, 2, 10, True)) is None and len(cache) == 2
    assert cache.invalidate("a") == 1 and cache.get(("b", 1, 3, 10, True)) == [3]
    off = LRUCache(0)
    off.put(("a", 1, 1, 10, True), [1])
    assert off.get(("a", 1, 1, 10, True)) is None


BAD = [
    # (method, path, kwargs, status, code)
    ("post", "/recommend", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 400,
     "malformed_json"),
    ("post", "/predict", {"content": b'{"pairs": [[1, 2]', "headers": {"content-type": "application/json"}}, 400,
     "malformed_json"),
    ("post", "/recommend", {"json": [1, 2]}, 422, "invalid"),
    ("post", "/recommend", {"content": b"", "headers": {"content-type": "application/json"}}, 422, "invalid"),
    # bodies over INLINE_BODY_BYTES are parsed once they have a compute slot: the same answers
    ("post", "/recommend", {"content": b'{"users": [' + b"1," * 2000 + b"]}"}, 400, "malformed_json"),
    ("post", "/recommend", {"json": {"users": [1] * 2000 + ["x"]}}, 422, "invalid"),
    ("post", "/predict", {"json": {"pairs": [[1, 2]] * 500 + [[1]]}}, 422, "invalid"),
    ("post", "/recommend", {"json": {"users": "1,2"}}, 422, "invalid"),
    ("post", "/recommend", {"json": {"users": [1, "x"]}}, 422, "invalid"),
    ("post", "/recommend", {"json": {"users": [1], "n": "ten"}}, 422, "invalid"),
    ("post", "/recommend", {"json": {"users": [1], "colour": "red"}}, 422, "invalid"),
    ("post", "/recommend", {"json": {"users": []}}, 422, "invalid"),
    ("post", "/recommend", {"json": {"users": [1], "ratings": {"5": 4}}}, 422, "invalid"),
    ("post", "/recommend", {"json": {}}, 422, "invalid"),
    ("post", "/recommend", {"json": {"users": list(range(100_000))}}, 413, "payload_too_large"),
    ("post", "/recommend", {"json": {"users": list(range(501))}}, 413, "payload_too_large"),
    ("post", "/recommend", {"content": b'{"ratings": {"5": NaN}}', "headers": {"content-type": "application/json"}},
     422, "invalid"),
    ("post", "/recommend", {"json": {"ratings": {"5": 7}}}, 422, "invalid"),
    ("post", "/recommend", {"json": {"ratings": {"5": -1}}}, 422, "invalid"),
    ("post", "/recommend", {"json": {"ratings": {}}}, 422, "invalid"),
    ("post", "/recommend", {"json": {"ratings": {"99999": 4}}}, 422, "invalid"),
    ("post", "/recommend", {"json": {"users": [1], "run": "../x"}}, 404, "unknown_run"),
    ("post", "/predict", {"json": {"pairs": [[1]]}}, 422, "invalid"),
    ("post", "/predict", {"json": {"pairs": []}}, 422, "invalid"),
    ("post", "/predict", {"json": {"pairs": [[True, 5]]}}, 422, "invalid"),  # was read as user 1
    ("post", "/predict", {"json": {"pairs": [[1.0, 5]]}}, 422, "invalid"),
    ("post", "/recommend", {"json": {"users": ["1"]}}, 422, "invalid"),
    ("get", "/recommend", {"params": [("user", 1), ("user", 2)]}, 422, "invalid"),  # used the last one
    ("post", "/predict", {"json": {"pairs": [[1, 2]] * 501}}, 413, "payload_too_large"),
    ("post", "/recommend", {"content": b"[" + b"1," * 600_000 + b"1]",
                            "headers": {"content-type": "application/json"}}, 413, "payload_too_large"),
    ("get", "/recommend", {"params": {"user": 1, "n": 0}}, 422, "invalid"),
    ("get", "/recommend", {"params": {"user": 1, "n": -5}}, 422, "invalid"),
    ("get", "/recommend", {"params": {"user": 1, "n": 10**12}}, 422, "invalid"),
    ("get", "/recommend", {"params": {"user": 1, "n": 81}}, 422, "invalid"),  # catalogue is 80
    ("get", "/recommend", {"params": {"user": "abc"}}, 422, "invalid"),
    ("get", "/recommend", {"params": {"user": 1.5}}, 422, "invalid"),
    ("get", "/recommend", {"params": {"user": 10**30}}, 422, "invalid"),
    ("get", "/recommend", {}, 422, "invalid"),
    ("get", "/recommend", {"params": {"user": 1, "exclude_seen": "maybe"}}, 422, "invalid"),
    ("get", "/recommend", {"params": {"user": 1, "run": "nosuch"}}, 404, "unknown_run"),
    ("get", "/recommend", {"params": {"user": 1, "run": "../../etc/passwd"}}, 404, "unknown_run"),
    ("get", "/recommend", {"params": {"user": 1, "q": "x" * 20_000}}, 414, "uri_too_long"),
    ("get", "/predict", {"params": {"user": 1}}, 422, "invalid"),
    ("get", "/similar", {"params": {"item": 99999}}, 404, "unknown_id"),
    ("get", "/similar", {"params": {"item": 5, "n": 0}}, 422, "invalid"),
    ("get", "/items/99999", {}, 404, "unknown_id"),
    ("get", "/items/abc", {}, 422, "invalid"),
    ("get", "/runs/..%2Fx", {}, 404, "not_found"),  # decodes to /runs/../x: no route has a slash there
    ("get", "/runs/..x", {}, 404, "unknown_run"),
    ("get", "/runs/nosuch", {}, 404, "unknown_run"),
    ("get", "/nosuch", {}, 404, "not_found"),
    ("delete", "/recommend", {}, 405, "method_not_allowed"),
]


# GET ids are read as the CLI and id files read them: int() took '+3' (and '-+3' raised past the handlers); pydantic's
# lax int took '1_0' in a path. A raw '+' in a query string is a space: `?user=+3` arrives as ' 3'.
NOT_IDS = ["+3", "1_0", "-+3", "--3", " 3", "3 ", "0x10", "\u0663", ""]
GET_IDS = [("/recommend", "user", {}), ("/predict", "user", {"item": 1}), ("/predict", "item", {"user": 1}),
           ("/similar", "item", {})]


@pytest.mark.parametrize("value", NOT_IDS)
@pytest.mark.parametrize("path, name, others", GET_IDS, ids=[f"{p}-{n}" for p, n, _ in GET_IDS])
def test_get_query_ids_are_ascii_digits(server, path, name, others, value):
    client, _, _ = server
    res = client.get(path, params={**others, name: value})
    assert res.status_code == 422, res.text
    assert res.json() == {"error": f"query.{name}: Input should be a valid integer", "code": "invalid"}


@pytest.mark.parametrize("url", ["/recommend?user=+3", "/recommend?user=1_0", "/predict?user=1&item=+50",
                                 "/similar?item=%2B5", "/recommend?user=1&n=+2"])
def test_a_url_written_by_hand_with_a_plus_or_underscore_is_refused(server, url):
    client, _, _ = server
    res = client.get(url)
    assert (res.status_code, res.json()["code"]) == (422, "invalid"), res.text


@pytest.mark.parametrize("value", ["+3", "1_0", "%203", "-+3"])
def test_item_path_ids_are_ascii_digits(server, value):
    client, _, _ = server
    res = client.get(f"/items/{value}")
    assert res.status_code == 422, res.text
    assert res.json() == {"error": "path.item: Input should be a valid integer, unable to parse string as an integer",
                          "code": "invalid"}


def test_plain_and_negative_get_ids_still_work(env, server):
    client, _, _ = server
    assert client.get("/recommend?user=3&n=2").json() == cli_json(env, "recommend", SVD, "--user", 3, "-n", 2)
    assert client.get("/recommend", params={"user": -1, "n": 2}).json()[0]["fallback"] == "popularity"
    one = client.get("/predict?user=10&item=3").json()
    assert (one["user_id"], one["item_id"]) == (10, 3) and one["fallback"] is None
    assert client.get("/predict?user=-1&item=3").json()["fallback"] == "item_bias"
    assert client.get("/similar?item=3&n=2").json() == cli_json(env, "similar", SVD, "--item", 3, "-n", 2)
    assert client.get("/items/3").json()["item_id"] == 3
    assert client.get("/items/-3").status_code == 404


@pytest.mark.parametrize("method, path, kwargs, status, code", BAD,
                         ids=[f"{m}-{p}-{k}" for k, (m, p, *_ ) in enumerate(BAD)])
def test_malformed_requests_get_a_json_4xx_and_the_server_keeps_serving(server, method, path, kwargs, status, code):
    client, _, _ = server
    res = getattr(client, method)(path, **kwargs)
    assert (res.status_code, res.json()["code"]) == (status, code), res.text
    assert set(res.json()) == {"error", "code"} and "Traceback" not in res.text
    assert client.get("/recommend", params={"user": 1, "n": 2}).status_code == 200


def test_predict_at_a_time_equals_the_cli(env):
    """`time` on GET /predict and `timestamps` on POST /predict are `recsys predict --time` and a pairs file's
    timestamp column: an fm run with its time group answers each pair in its own period."""
    run_cli("train", "fm", "--dataset", "synth", "--split", "random", "--data-dir", env["data"], "--artifacts-dir",
            env["arts"], "--name", "fm-time", "-p", "groups=user,item,time", "-p", "iterations=20", "-p", "burn_in=5",
            "--format", "json")
    app = serve_app(["fm-time"], artifacts_dir=env["arts"], data_dir=env["data"], log=io.StringIO())
    client = TestClient(app)
    from recsys_cli.data.dataset import load_dataset

    ts = load_dataset("synth", data_dir=env["data"]).interactions().timestamps
    early, late = int(ts.min()), int(ts.max())
    for at in (early, late):
        got = client.get("/predict", params={"user": 1, "item": 2, "time": at}).json()
        assert got == cli_json(env, "predict", "fm-time", "--user", 1, "--item", 2, "--time", at)
    both = client.post("/predict", json={"pairs": [[1, 2], [1, 2]], "timestamps": [early, late]}).json()
    assert [r["prediction"] for r in both] == [client.get("/predict", params={"user": 1, "item": 2, "time": t})
                                               .json()["prediction"] for t in (early, late)]
    assert both[0]["prediction"] != both[1]["prediction"]
    bad = client.post("/predict", json={"pairs": [[1, 2], [1, 3]], "timestamps": [early]})
    assert bad.status_code == 422 and bad.json()["error"] == "timestamps: give one per pair (2), got 1"
    assert client.get("/predict", params={"user": 1, "item": 2, "time": "noon"}).status_code == 422
    assert "X-Recsys-Note" not in client.get("/predict", params={"user": 1, "item": 2, "time": early}).headers
    # a run without a time part answers as without a time, and says so in a header (the CLI: a stderr note)
    svd = TestClient(serve_app([SVD], artifacts_dir=env["arts"], data_dir=env["data"], log=io.StringIO()))
    for res in (svd.get("/predict", params={"user": 1, "item": 2, "time": early}),
                svd.post("/predict", json={"pairs": [[1, 2]], "timestamps": [early]})):
        assert res.headers["X-Recsys-Note"] == (f"{SVD} has no time part (only fm with its time group has one): the "
                                                "times are ignored")
    assert "X-Recsys-Note" not in svd.get("/predict", params={"user": 1, "item": 2}).headers


def test_a_post_body_is_json_whatever_its_content_type_says(server):
    """`curl -d '{"users": [1]}'` sends application/x-www-form-urlencoded; the body is read as JSON all the same,
    a small one at once and a large one (over INLINE_BODY_BYTES) once it has a compute slot."""
    client, _, _ = server
    for users in ([1, 2], list(range(1, 41)) * 10):
        raw = json.dumps({"users": users, "n": 2}, indent=1).encode()  # 400 users: ~2.8 KB
        form = client.post("/recommend", content=raw, headers={"content-type": "application/x-www-form-urlencoded"})
        plain = client.post("/recommend", json={"users": users, "n": 2})
        assert form.status_code == plain.status_code == 200 and form.json() == plain.json()
        assert len(form.json()) == 2 * len(users)


def test_no_default_run_means_run_is_required(env):
    app = serve_app([SVD, KNN], artifacts_dir=env["arts"], log=io.StringIO())
    client = TestClient(app)
    res = client.get("/recommend", params={"user": 1})
    assert res.status_code == 422 and "name the run" in res.json()["error"]
    assert client.get("/recommend", params={"user": 1, "run": KNN}).status_code == 200


def test_api_key_is_needed_everywhere_but_health_and_never_logged(env):
    log = io.StringIO()
    client = TestClient(serve_app([SVD], artifacts_dir=env["arts"], api_key=KEY, log=log))
    calls = [("get", "/ready", {}), ("get", "/runs", {}), ("get", f"/runs/{SVD}", {}),
             ("get", "/recommend", {"params": {"user": 1}}), ("post", "/recommend", {"json": {"users": [1]}}),
             ("get", "/predict", {"params": {"user": 1, "item": 5}}),
             ("post", "/predict", {"json": {"pairs": [[1, 5]]}}), ("get", "/similar", {"params": {"item": 5}}),
             ("get", "/items/5", {}), ("get", "/metrics", {}), ("post", "/admin/reload", {})]
    for method, path, kw in calls:
        none = getattr(client, method)(path, **kw)
        wrong = getattr(client, method)(path, headers={"X-API-Key": "nope"}, **kw)
        assert (none.status_code, none.json()["code"]) == (401, "unauthorized"), path
        assert (wrong.status_code, wrong.json()["error"]) == (401, "wrong API key"), path
        right = getattr(client, method)(path, headers={"X-API-Key": KEY}, **kw)
        bearer = getattr(client, method)(path, headers={"Authorization": f"Bearer {KEY}"}, **kw)
        assert right.status_code == bearer.status_code == 200, (path, right.text)
    assert client.get("/health").status_code == 200
    assert KEY not in log.getvalue() and log.getvalue().count("\n") == 4 * len(calls) + 1
    assert none.headers["www-authenticate"] == 'Bearer realm="recsys serve"'  # browsers do not prompt for it


def test_the_openapi_pages_need_the_key_and_a_browser_can_send_it_as_basic_auth(env):
    """/docs and /openapi.json need the key too: their 401 asks for HTTP Basic credentials (the browser prompts;
    any user name, the key as the password), and the same credentials work on every endpoint."""
    import base64

    log = io.StringIO()
    client = TestClient(serve_app([SVD], artifacts_dir=env["arts"], api_key=KEY, log=log))

    def basic(user: str, password: str) -> dict:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    for path in ("/docs", "/openapi.json"):
        refused = client.get(path)
        assert refused.status_code == 401 and refused.json()["code"] == "unauthorized", path
        assert refused.headers["www-authenticate"] == 'Basic realm="recsys serve", charset="UTF-8"'
        assert client.get(path, headers=basic("anyone", "nope")).json()["error"] == "wrong API key"
        assert client.get(path, headers=basic("anyone", KEY)).status_code == 200
        assert client.get(path, headers=basic("", KEY)).status_code == 200  # the user name is not checked
        assert client.get(path, headers={"X-API-Key": KEY}).status_code == 200
    assert "/recommend" in client.get("/openapi.json", headers={"X-API-Key": KEY}).json()["paths"]
    got = client.get("/recommend", params={"user": 1, "n": 2}, headers=basic("me", KEY))
    assert got.status_code == 200 and len(got.json()) == 2
    for malformed in ("Basic !!!", "Basic " + base64.b64encode(KEY.encode()).decode(), "Basic"):  # no colon
        bad = client.get("/docs", headers={"Authorization": malformed})
        assert bad.status_code == 401, malformed
    assert KEY not in log.getvalue() and base64.b64encode(f"me:{KEY}".encode()).decode() not in log.getvalue()
    assert client.get("/health").status_code == 200


def test_reload_swaps_a_retrained_run_and_a_failed_reload_keeps_the_old_one(env, tmp_path):
    arts = tmp_path / "artifacts"
    shutil.copytree(env["arts"] / SVD, arts / SVD)
    app = serve_app([SVD], artifacts_dir=arts, data_dir=env["data"], log=io.StringIO())
    client = TestClient(app)
    before = client.get("/recommend", params={"user": 1, "n": 5}).json()
    assert client.post("/admin/reload").json() == {"reloaded": [], "unchanged": [SVD], "failed": {}, "ok": True}
    run_cli("train", "svd", "--dataset", "synth", "--split", "random", "--data-dir", env["data"], "--artifacts-dir",
            arts, "-p", "factors=4", "-p", "epochs=3", "--seed", 7, "--force", "--format", "json")
    old = app.registry.get(SVD)
    report = client.post("/admin/reload").json()
    assert report == {"reloaded": [SVD], "unchanged": [], "failed": {}, "ok": True}
    after = client.get("/recommend", params={"user": 1, "n": 5}).json()
    assert after != before and after == cli_json({"arts": arts}, "recommend", SVD, "--user", 1, "-n", 5)
    assert client.get(f"/runs/{SVD}").json()["config"]["factors"] == 4
    assert old.model.params["factors"] == 8  # a request holding the old run still has the whole old model
    assert not any(k[1] == old.generation for k in app.registry.cache._data)
    # a broken retrain: the old model keeps answering, and the reason is reported
    broken = arts / SVD / "arrays.npz.new"  # replaced, as a retrain does (the served run's file is mapped)
    broken.write_bytes(b"not a zip")
    os.replace(broken, arts / SVD / "arrays.npz")
    report = client.post("/admin/reload").json()
    assert report["ok"] is False and report["reloaded"] == [] and "corrupt arrays.npz" in report["failed"][SVD]
    assert client.get("/recommend", params={"user": 1, "n": 5}).json() == after
    assert "corrupt arrays.npz" in client.get(f"/runs/{SVD}").json()["last_reload_error"]
    shutil.rmtree(arts / SVD)
    report = client.post("/admin/reload").json()
    assert report["ok"] is False and "gone" in report["failed"][SVD]
    assert client.get("/recommend", params={"user": 1, "n": 5}).json() == after


def test_cli_refuses_public_address_without_key_and_unknown_runs(env, monkeypatch):
    from recsys_cli.cli.serve_cmd import is_loopback

    for var in ("RECSYS_THREADS", "NUMBA_NUM_THREADS"):  # serve sets them (--threads); undone after the test
        monkeypatch.setenv(var, "7")

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.com")
    runner = CliRunner()
    res = runner.invoke(cli, ["serve", SVD, "--host", "0.0.0.0", "--artifacts-dir", str(env["arts"])],
                        env={"RECSYS_API_KEY": ""})
    assert res.exit_code == 2 and res.stderr.startswith("error: refusing to serve on 0.0.0.0 without an API key")
    res = runner.invoke(cli, ["serve", "nosuch", "--artifacts-dir", str(env["arts"])])
    assert res.exit_code == 7 and res.stderr.startswith("error: cannot serve run 'nosuch': unknown run 'nosuch'")
    res = runner.invoke(cli, ["serve", "../x", "--artifacts-dir", str(env["arts"])])
    assert res.exit_code == 2 and "invalid run name" in res.stderr
    assert os.environ["RECSYS_THREADS"] == os.environ["NUMBA_NUM_THREADS"] == "1"  # --threads default


def test_recommend_explain_adds_reasons_that_sum_to_the_score(server):
    client = server[0]
    rows = client.get("/recommend", params={"user": 1, "n": 3, "explain": "true"}).json()
    plain = client.get("/recommend", params={"user": 1, "n": 3}).json()
    assert [r["item_id"] for r in rows] == [r["item_id"] for r in plain]
    assert all("reasons" not in r for r in plain)
    for row in rows:
        assert row["reasons"], row
        assert abs(sum(p["contribution"] for p in row["reasons"]) - row["score"]) < 1e-3


def test_explain_without_the_training_data_keeps_the_list(env, tmp_path):
    """Explanations need the run's training ratings; a server without them still answers, with reasons null."""
    app = serve_app([SVD], artifacts_dir=env["arts"], data_dir=tmp_path / "no-data", log=io.StringIO())
    with TestClient(app) as client:
        plain = client.get("/recommend", params={"user": 1, "n": 3}).json()
        rows = client.get("/recommend", params={"user": 1, "n": 3, "explain": "true"}).json()
        body = {"ratings": {"2": 5, "3": 1}, "n": 3}
        folded = client.post("/recommend", json=body).json()
        explained = client.post("/recommend", json={**body, "explain": True})
    assert [r["item_id"] for r in rows] == [r["item_id"] for r in plain]
    assert [r["reasons"] for r in rows] == [None, None, None]
    assert explained.status_code == 200, explained.text
    assert [r["item_id"] for r in explained.json()] == [r["item_id"] for r in folded]


def test_batches_scored_in_blocks_with_cache_hits_equal_the_cli_json(env, server, monkeypatch):
    """A batch scored 32 users at a time, some of them cached, duplicated or unknown: the same bytes as the
    batch computed afresh and the same rows as the CLI."""
    import recsys_cli.serve.app as serve_module

    client, registry, _ = server
    monkeypatch.setattr(serve_module, "SCORE_BLOCK_BYTES", 1)  # the smallest block: 32 users ...
    monkeypatch.setattr(registry.get(SVD), "arrays_bytes", 0)  # ... whatever the run's size
    users = registry.get(SVD).model.user_ids[:70].tolist()
    assert len(users) == 70
    client.get("/recommend", params={"user": users[5], "n": 4})  # cached before the batch
    asked = [*users, 99999, users[0]]
    fresh = client.post("/recommend", json={"users": asked, "n": 4}, headers={"Cache-Control": "no-cache"})
    mixed = client.post("/recommend", json={"users": asked, "n": 4})
    assert fresh.status_code == mixed.status_code == 200
    assert fresh.content == mixed.content
    assert fresh.json() == cli_json(env, "recommend", SVD, "--user", ",".join(map(str, asked)), "-n", 4)
    # a large answer is streamed in pieces (here ~256 bytes each): the same bytes, with their Content-Length
    monkeypatch.setattr(serve_module, "STREAM_CHUNK", 256)
    streamed = client.post("/recommend", json={"users": asked, "n": 4}, headers={"Cache-Control": "no-cache"})
    assert streamed.status_code == 200 and streamed.content == fresh.content
    assert int(streamed.headers["content-length"]) == len(streamed.content) > 20 * 256
    assert "transfer-encoding" not in streamed.headers and streamed.headers["content-type"] == "application/json"
    one = client.post("/recommend", json={"users": [99999], "n": 1}, headers={"Cache-Control": "no-cache"})
    assert one.json() == cli_json(env, "recommend", SVD, "--user", "99999", "-n", 1)


def _compute_slots(app):
    """create_app's `compute_slots` (the per-event-loop semaphore of compute slots), found among the functions the
    POST /recommend endpoint closes over, so a test can hold the slots itself. `app` is the ServeMiddleware."""
    import inspect

    endpoint = next(r.endpoint for r in app.app.routes
                    if getattr(r, "path", None) == "/recommend" and "POST" in getattr(r, "methods", ()))
    todo, seen = [endpoint], set()
    while todo:
        fn = todo.pop()
        if fn.__name__ == "compute_slots":
            return fn
        if fn not in seen:
            seen.add(fn)
            todo += [v for v in inspect.getclosurevars(fn).nonlocals.values() if inspect.isfunction(v)]
    raise AssertionError("POST /recommend does not reach a compute_slots function")


def test_a_large_body_waits_for_a_compute_slot_unparsed_and_a_small_one_is_parsed_at_once(server, monkeypatch):
    """With every compute slot held by the test, a POST body over INLINE_BODY_BYTES reaches the slot queue
    unparsed (the waiting request holds raw bytes only), while one up to INLINE_BODY_BYTES (40 users: it still
    computes in a slot) is parsed before it waits. Once the slots are free both get the answers they get when
    nothing waits, each body parsed exactly once."""
    import asyncio

    import httpx

    import recsys_cli.serve.app as serve_module

    client, registry, _ = server
    users = registry.get(SVD).model.user_ids.tolist()
    large = json.dumps({"users": users * 3, "n": 3}).encode()
    small = json.dumps({"users": users[:40], "n": 3}).encode()
    assert len(small) <= serve_module.INLINE_BODY_BYTES < len(large) and 40 > serve_module.INLINE_USERS
    headers = {"content-type": "application/json", "cache-control": "no-cache"}
    expected = [client.post("/recommend", content=body, headers=headers) for body in (large, small)]
    assert [r.status_code for r in expected] == [200, 200]

    parsed: list[bytes] = []
    parse_body = serve_module.parse_body

    def counting_parse(model, raw):
        parsed.append(raw)
        return parse_body(model, raw)

    monkeypatch.setattr(serve_module, "parse_body", counting_parse)
    compute_slots = _compute_slots(client.app)

    async def scenario():
        slots = compute_slots()  # this event loop's semaphore (made on first use)
        held = 0
        while not slots.locked():  # the test takes every slot
            await slots.acquire()
            held += 1
        arrivals: asyncio.Queue = asyncio.Queue()
        acquire = slots.acquire

        async def noting_acquire():  # a request asks for a slot: what had been parsed by then
            arrivals.put_nowait(list(parsed))
            return await acquire()

        slots.acquire = noting_acquire  # `async with slots` calls self.acquire()

        async def next_arrival(request: asyncio.Task) -> list[bytes]:
            arrival = asyncio.ensure_future(arrivals.get())
            done, _ = await asyncio.wait({request, arrival}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
            assert arrival in done and not request.done(), "the request did not wait for a compute slot"
            return arrival.result()

        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            big = asyncio.ensure_future(http.post("/recommend", content=large, headers=headers))
            assert await next_arrival(big) == []  # at the slot queue with its body still raw
            little = asyncio.ensure_future(http.post("/recommend", content=small, headers=headers))
            assert await next_arrival(little) == [small]  # parsed before it waits; the large one still not
            assert parsed == [small]
            for _ in range(held):
                slots.release()
            return await asyncio.wait_for(asyncio.gather(big, little), timeout=60)

    # A thread of its own: an earlier test (Playwright's sync API) can leave an event loop running in this one.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        got = pool.submit(lambda: asyncio.run(scenario())).result()
    assert [(r.status_code, r.content) for r in got] == [(r.status_code, r.content) for r in expected]
    assert parsed == [small, large]  # each parsed once, the large one when it had its slot


def test_server_start_up_returns_large_frees_and_keeps_one_malloc_heap(env, monkeypatch):
    """serve_app(server_process=True) (what `recsys serve` and its workers build) calls glibc's mallopt:
    M_MMAP_THRESHOLD (-3) to 1 MiB, then M_ARENA_MAX (-8) to 1, and keeps malloc_trim for after large requests.
    libc is a stand-in here, so this runs on any platform; a libc without mallopt, or one refusing it, is a
    no-op (False, no trim)."""
    import ctypes
    import gc

    import recsys_cli.serve.app as serve_module

    class FakeLibc:
        def __init__(self, accepts: bool = True):
            self.calls: list[tuple[int, int]] = []
            self.accepts = accepts

        def mallopt(self, param: int, value: int) -> int:
            self.calls.append((param, value))
            return int(self.accepts)

        def malloc_trim(self, pad: int) -> int:
            return 1

    libc = FakeLibc()
    monkeypatch.setattr(ctypes, "CDLL", lambda name: libc)
    monkeypatch.setattr(gc, "freeze", lambda: None)  # serve_app's gc.freeze() would outlive the test
    monkeypatch.setattr(serve_module, "_TRIM", {})
    serve_app([SVD], artifacts_dir=env["arts"], data_dir=env["data"], log=io.StringIO())
    assert libc.calls == [] and serve_module._TRIM == {}  # not a server process: the allocator is left alone
    serve_app([SVD], artifacts_dir=env["arts"], data_dir=env["data"], log=io.StringIO(), server_process=True)
    assert libc.calls == [(-3, 1 << 20), (-8, 1)]
    assert serve_module._TRIM == {"malloc_trim": libc.malloc_trim}

    refusing = FakeLibc(accepts=False)
    monkeypatch.setattr(ctypes, "CDLL", lambda name: refusing)
    monkeypatch.setattr(serve_module, "_TRIM", {})
    assert serve_module.return_large_frees() is False
    assert refusing.calls == [(-3, 1 << 20)] and serve_module._TRIM == {}

    def no_libc(name):
        raise OSError("no C library")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert serve_module.return_large_frees() is False and serve_module._TRIM == {}


def test_return_large_frees_sets_the_glibc_threshold():
    import platform

    from recsys_cli.serve.app import return_large_frees

    assert return_large_frees() is (platform.libc_ver()[0] == "glibc")


def test_server_caps_every_blas_at_one_thread_after_loading(env):
    """`recsys serve`'s app: BLAS libraries loaded while the runs load (SciPy's own OpenBLAS) are capped too."""
    import subprocess
    import sys

    code = ("import io, json, sys; from threadpoolctl import threadpool_info; "
            "from recsys_cli.serve.app import serve_app; "
            f"serve_app([{SVD!r}, {KNN!r}], default={SVD!r}, artifacts_dir=sys.argv[1], data_dir=sys.argv[2], "
            "single_thread_blas=True, log=io.StringIO()); "
            "print(json.dumps([(i['internal_api'], i['num_threads']) for i in threadpool_info() "
            "if i['user_api'] == 'blas']))")
    out = subprocess.run([sys.executable, "-c", code, str(env["arts"]), str(env["data"])], capture_output=True,
                         text=True, check=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "2"}).stdout
    libs = json.loads(out)
    assert libs and all(threads == 1 for _, threads in libs), libs


# ----- found by the HTTP walk (raw requests against a real server) ------------------------------------------------

def _err(message: str, code: str = "invalid") -> dict:
    return {"error": message, "code": code}


@pytest.mark.parametrize("method, path, allow", [
    ("put", "/health", "GET, HEAD"), ("post", "/health", "GET, HEAD"), ("delete", "/recommend", "GET, HEAD, POST"),
    ("patch", "/items/5", "GET, HEAD"), ("get", "/admin/reload", "POST"), ("options", "/metrics", "GET, HEAD"),
    ("post", f"/runs/{SVD}", "GET, HEAD"), ("put", "/predict", "GET, HEAD, POST"), ("post", "/docs", "GET, HEAD")])
def test_a_405_names_the_methods_the_path_takes(server, method, path, allow):
    """405 without `Allow` (RFC 9110 requires it): the app's handler of HTTP errors dropped Starlette's headers, and
    those named only the first route of the path (GET for /recommend, which takes POST too)."""
    client, _, _ = server
    res = client.request(method.upper(), path)
    assert (res.status_code, res.json()) == (405, _err("Method Not Allowed", "method_not_allowed"))
    assert res.headers["allow"] == allow


@pytest.mark.parametrize("path", ["/health", "/ready", "/runs", f"/runs/{SVD}", "/recommend?user=1&n=3",
                                  "/predict?user=1&item=5", "/similar?item=5&n=2", "/items/5", "/metrics"])
def test_head_is_a_get_without_its_body(server, path):
    """HEAD of every GET endpoint was a 405 (only /docs and /openapi.json took it): a load balancer's HEAD /health
    check failed. Now the GET's status and headers, no body, and one log line saying HEAD."""
    client, _, log = server
    get = client.get(path)
    before = log.getvalue().count("\n")
    head = client.head(path)
    assert head.status_code == get.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    if path not in ("/health", "/metrics"):  # (uptime and counters move between the two)
        assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.content))
    lines = log.getvalue().splitlines()[before:]
    assert len(lines) == 1 and json.loads(lines[0])["method"] == "HEAD" and json.loads(lines[0])["status"] == 200
    assert (client.head("/admin/reload").status_code, client.head("/admin/reload").headers["allow"]) == (405, "POST")
    assert client.head("/nosuch").status_code == 404
    assert client.head("/recommend?user=1&n=0").status_code == 422


# JSON bodies: lax pydantic parsing took these as other values; they are the wrong type (422), as a user id of
# true or 1.0 already was. The CLI refuses --ratings +3:5 and 50:5,50:1 too.
STRICT_BODIES = [
    ({"users": [1], "n": True}, _err("n: Input should be a valid integer")),
    ({"users": [1], "n": 2.0}, _err("n: Input should be a valid integer")),
    ({"users": [1], "n": "2"}, _err("n: Input should be a valid integer")),
    ({"users": [1], "exclude_seen": "no"}, _err("exclude_seen: Input should be a valid boolean")),
    ({"users": [1], "exclude_seen": 0}, _err("exclude_seen: Input should be a valid boolean")),
    ({"users": [1], "explain": 1}, _err("explain: Input should be a valid boolean")),
    ({"ratings": {"5": True}}, _err("ratings.5: Input should be a valid number")),
    ({"ratings": {"5": "4"}}, _err("ratings.5: Input should be a valid number")),
    ({"ratings": {"+5": 4}}, _err("ratings.+5.[key]: Input should be a valid integer, unable to parse string as "
                                  "an integer")),
    ({"ratings": {"1_0": 4}}, _err("ratings.1_0.[key]: Input should be a valid integer, unable to parse string as "
                                   "an integer")),
    ({"ratings": {" 5": 4}}, _err("ratings. 5.[key]: Input should be a valid integer, unable to parse string as "
                                  "an integer")),
]


@pytest.mark.parametrize("body, error", STRICT_BODIES, ids=[json.dumps(b) for b, _ in STRICT_BODIES])
def test_post_recommend_bodies_are_strictly_typed(server, body, error):
    client, _, _ = server
    res = client.post("/recommend", json=body)
    assert (res.status_code, res.json()) == (422, error)


def test_post_bodies_still_take_plain_values(env, server):
    client, _, _ = server
    fold = client.post("/recommend", json={"ratings": {"5": 4, "7": 1.5, "-3": 2}, "n": 3, "exclude_seen": False,
                                           "explain": False})
    assert fold.status_code == 200, fold.text
    assert fold.json() == cli_json(env, "recommend", SVD, "--ratings", "5:4,7:1.5,-3:2", "-n", 3, "--include-seen")


@pytest.mark.parametrize("path, raw, error", [
    ("/recommend", b'{"users": [1], "users": [2]}', "body.users: given more than once"),
    ("/recommend", b'{"users": [1], "n": 2, "n": 3}', "body.n: given more than once"),
    ("/recommend", b'{"ratings": {"5": 5, "7": 3, "5": 1}}', "an item is rated twice in the new user's ratings"),
    ("/predict", b'{"pairs": [[1, 5]], "pairs": [[2, 5]]}', "body.pairs: given more than once"),
    ("/predict", b'{"run": "x", "pairs": [[1, 5]], "run": "' + SVD.encode() + b'"}', "body.run: given more than once"),
])
def test_a_key_given_twice_in_a_body_is_refused(server, path, raw, error):
    """JSON parsers keep the last of two equal keys; the query string (`?user=1&user=2`) and the CLI (--ratings
    5:5,5:1) refuse a repeat. The body said nothing and answered for the last one."""
    client, _, _ = server
    res = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert (res.status_code, res.json()) == (422, _err(error))


def test_fold_in_refuses_boolean_ratings_in_the_library(env):
    from recsys_cli.api import load_run, queries
    from recsys_cli.errors import UsageError

    run = load_run(SVD, artifacts_dir=env["arts"])
    with pytest.raises(UsageError, match="ratings must be numbers, not booleans"):
        queries.recommend(run, ratings={5: True, 7: 4}, n=2, data_dir=env["data"])


def test_an_item_id_over_64_bits_in_the_path_is_a_422_as_in_the_query(server):
    client, _, _ = server
    res = client.get(f"/items/{10**25}")
    assert (res.status_code, res.json()) == (422, _err(f"item id {10**25} is out of range (ids are 64-bit integers)"))
    assert client.get(f"/similar?item={10**25}").json() == res.json()


def test_any_matching_key_lets_a_request_in_whatever_the_header_order(env):
    """With an X-API-Key and an Authorization header, the last one seen decided: a stale X-API-Key beside good
    Basic credentials passed or failed as the client ordered its headers."""
    import base64

    client = TestClient(serve_app([SVD], artifacts_dir=env["arts"], api_key=KEY, log=io.StringIO()))
    good_basic = "Basic " + base64.b64encode(f"me:{KEY}".encode()).decode()
    for headers in ([("X-API-Key", "stale"), ("Authorization", f"Bearer {KEY}")],
                    [("Authorization", f"Bearer {KEY}"), ("X-API-Key", "stale")],
                    [("X-API-Key", KEY), ("Authorization", "Bearer stale")],
                    [("Authorization", good_basic), ("X-API-Key", "stale")],
                    [("X-API-Key", "stale"), ("Authorization", good_basic)]):
        assert client.get("/recommend?user=1&n=1", headers=headers).status_code == 200, headers
    for headers in ([("X-API-Key", "stale"), ("Authorization", "Bearer older")],
                    [("Authorization", "Basic !!!"), ("X-API-Key", "stale")]):
        res = client.get("/recommend?user=1&n=1", headers=headers)
        assert (res.status_code, res.json()) == (401, _err("wrong API key", "unauthorized")), headers


def test_a_unicode_key_is_compared_as_utf8_in_every_header(env):
    import base64

    key = "clé-ключ-🔑"
    client = TestClient(serve_app([SVD], artifacts_dir=env["arts"], api_key=key, log=io.StringIO()))
    utf8 = key.encode()
    basic = b"Basic " + base64.b64encode(b"me:" + utf8)
    for headers in ([(b"x-api-key", utf8)], [(b"authorization", b"Bearer " + utf8)], [(b"authorization", basic)]):
        assert client.get("/recommend?user=1&n=1", headers=headers).status_code == 200, headers
    latin1 = "clé".encode("latin-1")
    res = client.get("/recommend?user=1&n=1", headers=[(b"x-api-key", latin1)])
    assert (res.status_code, res.json()) == (401, _err("wrong API key", "unauthorized"))


def test_a_client_gone_before_its_body_ended_is_a_499_not_a_500(env):
    """A client that hangs up mid-body (a dropped upload, a slowloris) was logged and counted as a 500 with an
    error line "ClientDisconnect": a false alarm each time. Now one log line with status 499 and no error."""
    import asyncio

    log = io.StringIO()
    app = serve_app([SVD], artifacts_dir=env["arts"], log=log)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/recommend", "raw_path": b"/recommend", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"x"), (b"content-length", b"5000")], "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 8000)}
    messages = iter([{"type": "http.request", "body": b'{"users": [1,', "more_body": True},
                     {"type": "http.disconnect"}])

    async def receive():
        return next(messages)

    async def send(message):
        pass

    # in a thread of its own: a test before this one (Playwright's sync API) may leave an event loop running here
    import threading

    worker = threading.Thread(target=lambda: asyncio.run(app(scope, receive, send)))
    worker.start()
    worker.join(60)
    lines = [json.loads(line) for line in log.getvalue().splitlines()]
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [("POST", "/recommend", 499)]
    samples = {tuple(s.labels.values()): s.value for m in app.metrics.registry.collect() for s in m.samples
               if s.name == "recsys_requests_total"}
    assert samples == {("/recommend", "", "499"): 1.0}


def test_a_chunked_body_over_the_limit_is_a_json_413(env):
    """A body sent without Content-Length (Transfer-Encoding: chunked) and found too large while read was a plain-text
    "Internal Server Error" 500: Starlette's error layer answered before ServeMiddleware could say 413."""
    log = io.StringIO()
    client = TestClient(serve_app([SVD], artifacts_dir=env["arts"], log=log))

    def chunks():
        yield b'{"users": ['
        for _ in range(300):
            yield b"1," * 2000
        yield b"1]}"

    res = client.post("/recommend", content=chunks())
    assert (res.status_code, res.json()) == (413, {"error": "the request body is over 1,048,576 bytes",
                                                   "code": "payload_too_large"})
    lines = [json.loads(line) for line in log.getvalue().splitlines()]
    assert [(line["path"], line["status"]) for line in lines] == [("/recommend", 413)]
    assert client.post("/recommend", content=iter([b'{"users": [1], ', b'"n": 1}'])).status_code == 200
