"""The dashboard's JSON endpoints in process (FastAPI test client): each equals the library call it wraps; the
item map is the PCA of the item vectors; the leaderboard is the ledger sorted by a metric; the static page is
served only with ui=True, without the key, and references nothing outside the server."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli, synth_dataset

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from recsys_cli.api import explore  # noqa: E402
from recsys_cli.serve.app import serve_app  # noqa: E402

SVD, IALS, KNN = "svd-synth-user", "ials-synth-user", "item-knn-synth-user"
KEY = "dash-key-7"
UI_DIR = Path(__file__).resolve().parents[1] / "recsys_cli" / "ui"




@pytest.fixture(scope="module")
def env(tmp_path_factory):
    data, arts = synth_dataset(tmp_path_factory.mktemp("dashboard"))
    common = ("--dataset", "synth", "--split", "user", "--data-dir", data, "--artifacts-dir", arts, "--format", "json")
    run_cli("train", "svd", *common, "-p", "factors=8", "-p", "epochs=10")
    run_cli("train", "ials", *common, "-p", "factors=8", "-p", "iterations=5")
    run_cli("train", "item-knn", *common)
    for run in (SVD, IALS):
        run_cli("evaluate", run, "--data-dir", data, "--artifacts-dir", arts, "--format", "json")
    return {"data": data, "arts": arts}


@pytest.fixture(scope="module")
def client(env):
    app = serve_app([SVD, IALS, KNN], default=SVD, artifacts_dir=env["arts"], data_dir=env["data"], ui=True,
                    api_key=KEY)
    with TestClient(app, headers={"X-API-Key": KEY}) as c:
        yield c


def test_pca_2d_on_hand_computed_vectors():
    # Spread 8 along the first axis, 2 along the second, none along the third: ratios 0.8 / 0.2, coordinates exact.
    vectors = np.array([[-2.0, 0, 0], [2.0, 0, 0], [0, -1.0, 0], [0, 1.0, 0]]) + np.array([5.0, -3.0, 1.0])
    coords, ratio = explore.pca_2d(vectors)
    np.testing.assert_allclose(ratio, [0.8, 0.2], atol=1e-12)
    np.testing.assert_allclose(np.abs(coords), [[2, 0], [2, 0], [0, 1], [0, 1]], atol=1e-12)
    # the sign rule: each component's largest loading is positive, so the point at +x lands on the right
    assert coords[1, 0] > 0 and coords[3, 1] > 0
    flat, flat_ratio = explore.pca_2d(np.array([[1.0], [2.0], [4.0]]))  # one latent dimension: a flat second axis
    np.testing.assert_allclose(flat[:, 1], 0.0)
    np.testing.assert_allclose(flat_ratio, [1.0, 0.0])


def test_item_map_is_the_pca_of_the_item_vectors(env, client):
    body = client.get("/map", params={"run": SVD}).json()
    from recsys_cli.api import item_metadata, load_run

    model = load_run(SVD, artifacts_dir=env["arts"]).model
    vectors = np.asarray(model.estimator._item_vectors())
    coords, ratio = explore.pca_2d(vectors)
    assert body["items"] == body["shown"] == 80 == len(body["points"])
    assert [p["item_id"] for p in body["points"]] == model.item_ids.tolist()
    np.testing.assert_allclose([[p["x"], p["y"]] for p in body["points"]], coords, atol=1e-9)
    np.testing.assert_allclose(body["explained_variance"], ratio)
    assert 1.0 >= ratio[0] >= ratio[1] > 0
    # the projection keeps the variance it claims: var(x) / total variance of the vectors
    centred = vectors - vectors.mean(axis=0)
    assert np.var(coords[:, 0]) / np.var(centred, axis=0).sum() == pytest.approx(ratio[0], rel=1e-6)
    meta = item_metadata("synth", data_dir=env["data"])
    for p in body["points"][:20]:
        assert p["title"] == meta[p["item_id"]]["title"]
        assert p["genre"] == (meta[p["item_id"]]["genres"] or [None])[0]
    refused = client.get("/map", params={"run": KNN})
    assert refused.status_code == 422 and "no item vectors" in refused.json()["error"]


def test_item_map_tsne_is_seeded_and_scores_its_own_genre_separation(env, client):
    pytest.importorskip("sklearn")
    from recsys_cli.api import load_run
    from recsys_cli.insights.model_report import genre_silhouettes
    from recsys_cli.insights.projection import project

    body = client.get("/map", params={"run": SVD, "projection": "tsne", "seed": 5}).json()
    assert body["projection"] == "tsne" and body["explained_variance"] is None
    assert body["axes"] == ["t-SNE 1", "t-SNE 2"] and body["items"] == body["shown"] == 80
    model = load_run(SVD, artifacts_dir=env["arts"]).model
    assert [p["item_id"] for p in body["points"]] == model.item_ids.tolist()
    coords = project(np.asarray(model.estimator._item_vectors()), "tsne", seed=5).coords
    np.testing.assert_allclose([[p["x"], p["y"]] for p in body["points"]], coords, atol=1e-9)  # seeded: the same map
    # The genre separation is the silhouette of the points shown (euclidean, per genre, averaged over genres).
    sep = body["genre_separation"]
    assert sep["items"] == 80 and sep["genres"]
    meta = explore_genres(env)
    genre_names = list(dict.fromkeys(g for p in body["points"] for g in meta[p["item_id"]]))
    member = np.array([[g in meta[p["item_id"]] for g in genre_names] for p in body["points"]], np.float32)
    rows = genre_silhouettes(coords, member, genre_names, seed=5, metric="euclidean")
    assert sep["genres"] == rows
    assert sep["silhouette"] == pytest.approx(np.mean([r["silhouette"] for r in rows]))
    assert sep["shuffled"] == pytest.approx(np.mean([r["shuffled"] for r in rows]))
    # PCA's answer carries its own map score too.
    assert client.get("/map", params={"run": SVD}).json()["genre_separation"]["items"] == 80


def explore_genres(env) -> dict[int, list[str]]:
    from recsys_cli.api import item_metadata

    return {k: v.get("genres") or [] for k, v in item_metadata("synth", data_dir=env["data"]).items()}


def test_item_map_projection_errors_are_422(client, monkeypatch):
    import sys

    bad = client.get("/map", params={"run": SVD, "projection": "mds"})
    assert bad.status_code == 422 and "choose one of: pca, tsne, umap" in bad.json()["error"]
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)  # scikit-learn missing
    missing = client.get("/map", params={"run": SVD, "projection": "tsne", "seed": 11})
    assert missing.status_code == 422
    assert missing.json()["error"] == ("projection tsne needs scikit-learn, which is not installed: "
                                       "pip install 'recsys-cli[maps]'")
    monkeypatch.setitem(sys.modules, "umap", None)
    missing = client.get("/map", params={"run": SVD, "projection": "umap"})
    assert missing.status_code == 422 and "pip install umap-learn" in missing.json()["error"]
    assert client.get("/map", params={"run": SVD}).status_code == 200  # PCA needs nothing more


def test_leaderboard_is_the_ledger_sorted_by_the_metric(env, client):
    from recsys_cli import ledger

    board = client.get("/leaderboard", params={"metric": "rmse"}).json()
    assert board["metric"] == "rmse" and board["lower_is_better"] is True
    rmses = [r["metrics"]["rmse"] for r in board["rows"]]
    assert rmses == sorted(rmses) and len(rmses) >= 1
    assert [r["id"] for r in board["rows"]] == [r["id"] for r in ledger.query(root=env["arts"], sort="rmse")]
    ndcg = client.get("/leaderboard", params={"metric": "ndcg@10", "kind": "evaluate"}).json()
    values = [r["metrics"]["ndcg@10"] for r in ndcg["rows"]]
    assert values == sorted(values, reverse=True) and {r["run"] for r in ndcg["rows"]} == {SVD, IALS}
    assert "ndcg@10" in board["metrics"] and "rmse" in board["metrics"]
    assert client.get("/leaderboard").json()["metric"] == "ndcg@10"  # the default when recorded
    bad = client.get("/leaderboard", params={"metric": "rmze"})
    assert bad.status_code == 422 and "rmse" in bad.json()["error"]


def test_abtest_equals_the_library_and_its_chart_intervals(env, client):
    from scipy import stats

    from recsys_cli.api import abtest

    body = client.get("/abtest", params={"run_a": SVD, "run_b": IALS, "bootstrap": 300}).json()
    lib = abtest(SVD, IALS, bootstrap=300, data_dir=env["data"], artifacts_dir=env["arts"])
    expected = json.loads(json.dumps(lib.to_dict(), default=float))
    assert {k: v for k, v in body.items() if k not in ("chart", "notes")} == expected
    assert body["notes"] == lib.notes
    chart = body["chart"]
    for arm, shown in zip(body["arms"], chart["arms"], strict=True):
        n, sd, mean = arm["users"], arm["user_ctr_sd"], arm["user_ctr_mean"]
        half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
        assert shown["ci_low"] == pytest.approx(mean - half) and shown["ci_high"] == pytest.approx(mean + half)
        assert shown["label"] == f"{arm['arm']}: {arm['run']}"
    assert sum(b["resamples"] for b in chart["lift"]) == 300  # the bootstrap histogram holds every resample
    assert chart["lift_ci"]["ci_low"] == body["tests"]["bootstrap"]["ci_low"]
    same = client.get("/abtest", params={"run_a": SVD, "run_b": SVD})
    assert same.status_code == 422
    unserved = client.get("/abtest", params={"run_a": SVD, "run_b": "nope"})
    assert unserved.status_code == 404 and unserved.json()["code"] == "unknown_run"


def test_insights_and_figures(env, client):
    from recsys_cli.output import dumps

    body = client.get("/insights/synth").json()
    ins = explore.dataset_insights("synth", data_dir=env["data"])
    assert {k: v for k, v in body.items() if k != "figures"} == json.loads(dumps(ins.to_dict()))
    names = [f["name"] for f in body["figures"]]
    assert names[:2] == ["rating_distribution", "activity"] and "genre_popularity" in names
    pytest.importorskip("matplotlib")
    svg = client.get("/figures/synth/genre_popularity.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert "<svg" in svg.text and svg.text.rstrip().endswith("</svg>")
    missing = client.get("/figures/synth/nope.svg")
    assert missing.status_code == 404 and "genre_popularity" in missing.json()["error"]
    assert client.get("/insights/ml-100k").status_code == 404  # only the datasets of served runs


def test_items_search(client):
    rows = client.get("/items", params={"q": "movie 1", "limit": 5}).json()
    assert len(rows) == 5 and all("movie 1" in r["title"].lower() for r in rows)
    assert [r["item_id"] for r in rows] == sorted(r["item_id"] for r in rows)  # catalogue order
    assert all(isinstance(r["genres"], list) for r in rows)
    assert client.get("/items", params={"q": "no such title"}).json() == []


def test_page_is_served_without_the_key_and_the_api_still_needs_it(env, client):
    root = client.get("/", headers={"X-API-Key": ""}, follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/ui/"
    bare = TestClient(client.app)
    page = bare.get("/ui/")
    assert page.status_code == 200 and "<script src=\"app.js\"></script>" in page.text
    assert bare.get("/ui/app.js").status_code == 200 and bare.get("/ui/style.css").status_code == 200
    assert bare.get("/runs").status_code == 401 and bare.get("/leaderboard").status_code == 401
    without_ui = serve_app([SVD], artifacts_dir=env["arts"], data_dir=env["data"])
    with TestClient(without_ui) as plain:
        assert plain.get("/ui/").status_code == 404 and plain.get("/").status_code == 404
        assert plain.get("/leaderboard").status_code == 200  # the JSON endpoints exist either way


def test_page_files_reference_nothing_outside_the_server():
    files = sorted(p.name for p in UI_DIR.iterdir() if not p.name.startswith("."))
    assert files == ["app.js", "index.html", "style.css"]
    for name in files:
        text = (UI_DIR / name).read_text()
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')]*", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (name, urls)  # the SVG namespace is a name, not a fetch
        assert "@import" not in text and "cdn" not in text.lower()
    html = (UI_DIR / "index.html").read_text()
    assert re.findall(r"<script[^>]*src=\"([^\"]+)\"", html) == ["app.js"]
    assert re.findall(r"<link[^>]*href=\"([^\"]+)\"", html) == ["data:,", "style.css"]


def test_ui_files_ship_in_the_wheel():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    pyproject = tomllib.loads((UI_DIR.parents[1] / "pyproject.toml").read_text())
    assert "ui/*" in pyproject["tool"]["setuptools"]["package-data"]["recsys_cli"]


@pytest.mark.parametrize("path", ["/items?q=a&limit={v}", "/leaderboard?metric=rmse&limit={v}",
                                  f"/abtest?run_a={SVD}&run_b={IALS}&k={{v}}", f"/map?run={SVD}&seed={{v}}"])
@pytest.mark.parametrize("value", ["%2B3", "1_0", "%203", "1.0"])
def test_dashboard_query_integers_read_like_ids(client, path, value):
    # a count, a limit or a seed in a URL reads as ids do: ASCII digits with an optional minus ('+3' was 3)
    r = client.get(path.format(v=value))
    assert r.status_code == 422, (path, value, r.text)
    assert r.json()["code"] == "invalid" and "integer" in r.json()["error"]


def test_dashboard_query_integers_still_take_plain_numbers(client):
    assert client.get("/items", params={"q": "a", "limit": "3"}).status_code == 200
    assert client.get("/leaderboard", params={"metric": "rmse", "limit": "2"}).status_code == 200
