"""`recsys insights RUN`: silhouette and PCA by hand, the report of a run on planted synthetic data
(genre structure recovered, segment nDCG equal to `evaluate`, diagnostics equal to ranking_metrics),
and the --plot figures of tune and benchmark."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recsys_cli.insights.model_report import model_report, pca_2d, silhouette


def test_silhouette_by_hand():
    # 1-D points 0, 1 (label a) and 10, 11 (label b): a = 1; b = mean distance to the other pair.
    pts = np.array([[0.0], [1.0], [10.0], [11.0]])
    s = silhouette(pts, np.array(["a", "a", "b", "b"]))
    np.testing.assert_allclose(s, [(10.5 - 1) / 10.5, (9.5 - 1) / 9.5, (9.5 - 1) / 9.5, (10.5 - 1) / 10.5])
    # A point alone in its label scores 0; point 0: a = 1, b = min(mean distance to b, to c) = 10.
    s = silhouette(np.array([[0.0], [1.0], [10.0], [30.0]]), np.array(["a", "a", "b", "c"]))
    assert s[2] == 0.0 and s[3] == 0.0
    assert s[0] == pytest.approx((10.0 - 1.0) / 10.0)
    # Cosine distance: directions matter, not lengths.
    c = silhouette(np.array([[1.0, 0.0], [5.0, 0.1], [0.0, 1.0], [0.1, 3.0]]), np.array([0, 0, 1, 1]), "cosine")
    assert np.all(c > 0.95)
    assert np.all(silhouette(pts, np.zeros(4)) == 0.0)  # one label: no separation to measure


def test_genre_silhouettes_one_genre_at_a_time():
    from recsys_cli.insights.model_report import genre_silhouettes

    rng = np.random.default_rng(1)
    n = 60
    g = np.zeros((n, 2))
    g[:20, 0] = 1  # genre "near": its movies point one way, the others another
    g[::2, 1] = 1  # genre "spread": every other movie, whatever its direction
    vec = np.where(g[:, :1] > 0, [1.0, 0.0], [0.0, 1.0]) + rng.normal(scale=0.05, size=(n, 2))
    rows = {r["genre"]: r for r in genre_silhouettes(vec, g, ("near", "spread"), min_items=5)}
    assert rows["near"]["silhouette"] > 0.9 and rows["near"]["items"] == 20
    assert abs(rows["spread"]["silhouette"]) < 0.1


def test_pca_recovers_a_planted_plane():
    rng = np.random.default_rng(0)
    plane = rng.normal(size=(300, 2)) * [3.0, 1.0]
    basis, _ = np.linalg.qr(rng.normal(size=(6, 2)))
    X = plane @ basis.T + 5.0 + rng.normal(scale=1e-3, size=(300, 6))
    coords, share = pca_2d(X)
    assert share > 0.9999
    d_true = np.linalg.norm(plane[:, None] - plane[None], axis=-1)
    d_map = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    np.testing.assert_allclose(d_map, d_true, atol=0.01)  # a rotation/reflection of the plane
    assert coords[:, 0].var() > coords[:, 1].var()  # first component: the larger spread


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory):
    """A planted synthetic release (genres follow the item factors), processed, an ALS run on its random split."""
    import recsys_cli as rs
    from recsys_cli.data.synthetic import generate

    root = tmp_path_factory.mktemp("model-report")
    data, art = root / "data", root / "art"
    generate("tiny", n_ratings=20000, n_users=300, n_items=200, factors=4, seed=5, data_dir=data)
    rs.preprocess("tiny", data_dir=data)
    rs.train_run("als", "tiny", split="random", params={"factors": 4}, seed=1, data_dir=data, artifacts_dir=art)
    return data, art, "als-tiny-random"


def test_model_report_on_planted_data(synth_run):
    import recsys_cli as rs
    from recsys_cli.evaluation.ranking_metrics import ranking_metrics

    data, art, run = synth_run
    ins = model_report(run, data_dir=data, artifacts_dir=art)
    s, t = ins.summary, ins.tables
    # Genres were planted along the item factors: the learned factors separate them far above chance.
    assert s["genre_separation"] > 0.3 and abs(s["genre_separation_shuffled"]) < 0.05
    sep = t["genre_separation"]
    assert (sep["silhouette"] > sep["shuffled"]).all() and (sep["items"] >= 10).all()
    assert len(t["item_map"]) == s["item_map_items"] and t["item_map"]["genre"].null_count() == 0
    # Learning curve: ALS's training RMSE per iteration, falling overall.
    curve = t["learning_curve"]
    assert curve["series"].unique().to_list() == ["train_rmse"] and len(curve) == 15
    assert curve["value"][-1] < curve["value"][0]
    # Segment nDCG: the "all" row is evaluate's ndcg@10; activity tertiles partition the same users.
    seg = t["segment_ndcg"]
    ev = rs.evaluate(run, data_dir=data, artifacts_dir=art)
    assert seg["ndcg"][0] == pytest.approx(ev.metrics["ndcg@10"], abs=1e-12)
    activity = seg.filter(seg["family"] == "activity")
    assert activity["users"].sum() == seg["users"][0]
    assert (activity["users"] * activity["ndcg"]).sum() / seg["users"][0] == pytest.approx(seg["ndcg"][0])
    # Diagnostics over every user's top-10 equal evaluation.ranking_metrics on the same lists.
    est = rs.load_run(run, artifacts_dir=art).model.estimator
    users = np.flatnonzero(est.user_counts > 0)
    recs = est.recommend_indices(users, 10)
    from recsys_cli.data.dataset import load_dataset, lookup

    ds = load_dataset("tiny", data)
    mat, _ = ds.genres
    genres = mat[lookup(ds.vocabularies[1], est.item_ids)]
    ref = ranking_metrics(recs, np.arange(len(users) + 1, dtype=np.int64), recs[:, 0].copy(), ks=(10,),
                          n_items=est.n_items, train_counts=est.item_counts, n_train_users=len(users),
                          item_genres=genres)
    diag = dict(t["diagnostics"].iter_rows())
    for key in ("coverage@10", "novelty@10", "popularity_bias@10", "diversity@10"):
        assert diag[key] == pytest.approx(ref[key], rel=1e-9), key
    # Long tail: everything outside the most-rated 20% of rated items.
    pop = dict(t["popularity_bias"].iter_rows())
    rated = int((est.item_counts > 0).sum())
    assert pop["catalogue items"] == pytest.approx(1 - np.ceil(0.2 * rated) / rated)
    assert pop["top-10 slots"] == pytest.approx(diag["long_tail_share@10"])
    assert dict(t["hyperparameters"].iter_rows())["factors"] == 4


def test_insights_cli_picks_the_run_and_writes_the_report(synth_run, tmp_path):
    pytest.importorskip("matplotlib")
    from typer.testing import CliRunner

    from recsys_cli.cli.app import app

    data, art, run = synth_run
    html = tmp_path / "report.html"
    res = CliRunner().invoke(app, ["insights", run, "--data-dir", str(data), "--artifacts-dir", str(art),
                                   "--format", "json", "--out", str(tmp_path / "figs"), "--html", str(html)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["run"] == run and "dataset" not in out and out["summary"]["model"] == "als"
    params = {r["param"]: r["value"] for r in out["tables"]["hyperparameters"]}
    assert params["factors"] == 4 and isinstance(params["reg"], float)  # typed as in the manifest, not strings
    diag = {r["metric"]: r["value"] for r in out["tables"]["diagnostics"]}
    assert out["summary"]["coverage@10"] == diag["coverage@10"]  # full precision, not rounded
    assert set(out["tables"]) >= {"learning_curve", "item_map", "diagnostics", "segment_ndcg", "hyperparameters"}
    page = html.read_text()
    assert page.count("<figure") == 4 and "Model report" in page and "http" not in page.replace("http://www.w3.org", "")
    for name in ("learning_curve", "item_map", "popularity_bias", "segment_ndcg"):
        assert (tmp_path / "figs" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    csv_params = dict(line.split(",", 1) for line in (tmp_path / "figs" / "hyperparameters.csv").read_text().split()[1:])
    assert csv_params["factors"] == "4" and json.loads((tmp_path / "figs" / "insights.json").read_text())["run"] == run
    # The dataset of the same name space still gets the dataset insights.
    res = CliRunner().invoke(app, ["insights", "tiny", "--data-dir", str(data), "--artifacts-dir", str(art),
                                   "--format", "json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["summary"]["ratings"] == 20000


def test_tune_and_benchmark_plots(tmp_path):
    pytest.importorskip("matplotlib")
    from recsys_cli.errors import UsageError
    from recsys_cli.figures.plots import benchmark_table, plot_benchmark, plot_tune, tune_table

    result = {"metric": "rmse", "direction": "minimize",
              "trials": [{"trial": 0, "score": 0.95, "std": 0.01, "error": None},
                         {"trial": 1, "score": None, "std": None, "error": "diverged"},
                         {"trial": 2, "score": 0.93, "std": 0.02, "error": None},
                         {"trial": 3, "score": 0.90, "std": 0.02, "error": None, "state": "pruned"}]}
    table = tune_table(result)
    assert table["trial"].to_list() == [1, 2, 3, 4] and table["score"].to_list() == [0.95, None, 0.93, None]
    assert table["pruned_score"].to_list() == [None, None, None, 0.90]  # the mean of the folds it ran
    from recsys_cli.figures.builders import tune_trials

    fig = tune_trials(table, metric="rmse")
    marks = {line.get_label(): (line.get_xdata().tolist(), line.get_ydata().tolist()) for line in fig.axes[0].lines}
    assert marks["pruned (mean of the folds it ran)"] == ([4], [0.90])  # every trial is on the plot
    assert marks["failed (no score)"][0] == [2]
    assert marks["best so far"] == ([1, 3], [0.95, 0.93])  # a pruned trial never counts as the best
    assert plot_tune(result, tmp_path / "tune.png").read_bytes()[:4] == b"\x89PNG"
    assert plot_tune(result, tmp_path / "tune.svg").read_text().lstrip().startswith("<?xml")
    report = {"ratios": [{"model": "svd", "peer": "surprise", "step": "fit", "ratio": 0.25},
                         {"model": "ials", "peer": "implicit", "step": "fit", "ratio": 1.5}]}
    assert benchmark_table(report)["measure"].to_list() == ["svd fit vs surprise", "ials fit vs implicit"]
    assert plot_benchmark(report, tmp_path / "bench.png").stat().st_size > 1000
    with pytest.raises(UsageError, match=".png or .svg"):
        plot_tune(result, tmp_path / "tune.pdf")
    with pytest.raises(UsageError, match="no peer ratios"):
        plot_benchmark({"ratios": []}, tmp_path / "b.png")


def test_bandit_allocation_plot(tmp_path):
    pytest.importorskip("matplotlib")
    from recsys_cli.figures.plots import bandit_table, plot_bandit

    result = {"arms": [{"arm": "A"}, {"arm": "B"}], "best_arm": "B", "policy": {"name": "thompson"},
              "allocation": [{"period": "round 1", "first_round": 1, "last_round": 1, "A": 0.5, "B": 0.5},
                             {"period": "round 2", "first_round": 2, "last_round": 2, "A": 0.2, "B": 0.8}]}
    table = bandit_table(result)
    assert table.filter(table["period"] == "round 2")["share"].to_list() == [0.2, 0.8]
    assert plot_bandit(result, tmp_path / "bandit.png").read_bytes()[:4] == b"\x89PNG"


def test_model_report_from_the_library(synth_run):
    import recsys_cli as rs

    data, art, run = synth_run
    ins = rs.model_report(rs.load_run(run, artifacts_dir=art), data_dir=data)
    assert ins.summary["run"] == run and "segment_ndcg" in ins.tables


def test_model_report_tsne_map_and_its_genre_separation(synth_run):
    """--projection tsne: the same items, seeded (two reports, the same map); the factor-space silhouette does not
    depend on the projection, the map's own silhouette is computed on the t-SNE points and beats shuffled genres."""
    pytest.importorskip("sklearn")
    data, art, run = synth_run
    pca = model_report(run, data_dir=data, artifacts_dir=art)
    a = model_report(run, projection="tsne", seed=3, data_dir=data, artifacts_dir=art)
    b = model_report(run, projection="tsne", seed=3, data_dir=data, artifacts_dir=art)
    s = a.summary
    assert s["item_map_projection"] == "tsne" and "item_map_variance" not in s
    assert s["item_map_items"] == s["item_map_rated"] == pca.summary["item_map_items"]  # under the t-SNE cap
    assert a.tables["item_map"].equals(b.tables["item_map"])
    assert a.tables["item_map"]["item_id"].to_list() == pca.tables["item_map"]["item_id"].to_list()
    assert s["genre_separation"] == pca.summary["genre_separation"]
    assert s["item_map_separation"] > s["item_map_separation_shuffled"] + 0.1
    sep = a.tables["genre_separation"]
    assert {"map_silhouette", "map_shuffled", "map_items"} <= set(sep.columns)
    assert s["item_map_separation"] == pytest.approx(float(sep["map_silhouette"].mean()))
    # The map score is the silhouette of the 2-D points themselves (euclidean), here of every rated item.
    from recsys_cli.insights.model_report import genre_silhouettes, silhouette

    m = a.tables["item_map"]
    pts = np.column_stack([m["x"].to_numpy(), m["y"].to_numpy()])
    row = sep.row(0, named=True)
    ids = m["item_id"].to_numpy()
    from recsys_cli.data.dataset import load_dataset, lookup

    ds = load_dataset("tiny", data)
    mat, names = ds.genres
    member = mat[lookup(ds.vocabularies[1], ids), list(names).index(row["genre"])] > 0
    assert row["map_silhouette"] == pytest.approx(float(silhouette(pts, member)[member].mean()), abs=1e-12)
    assert len(genre_silhouettes(pts, mat[lookup(ds.vocabularies[1], ids)], names, metric="euclidean")) == len(sep)
    # PCA's report carries the map score too: the silhouette on its two principal components.
    assert "item_map_separation" in pca.summary and pca.summary["item_map_variance"] > 0


def test_insights_cli_projection(synth_run, tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    import sys

    from typer.testing import CliRunner

    from recsys_cli.cli.app import app

    data, art, run = synth_run
    common = ["--data-dir", str(data), "--artifacts-dir", str(art)]
    res = CliRunner().invoke(app, ["insights", run, *common, "--projection", "tsne", "--seed", "3", "--format", "json",
                                   "--out", str(tmp_path / "figs")])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    lib = model_report(run, projection="tsne", seed=3, data_dir=data, artifacts_dir=art)
    assert out["summary"]["item_map_projection"] == "tsne"
    assert [(r["x"], r["y"]) for r in out["tables"]["item_map"]] == lib.tables["item_map"].select("x", "y").rows()
    assert (tmp_path / "figs" / "item_map.png").read_bytes()[:4] == b"\x89PNG"
    assert "t-SNE" in (tmp_path / "figs" / "item_map.svg").read_text()
    table = CliRunner().invoke(app, ["insights", run, *common, "--projection", "tsne", "--seed", "3", "--format", "table"])
    assert table.exit_code == 0 and "item map: t-SNE of the item factors" in table.stdout
    assert "genre silhouette on the map" in table.stdout
    # Without scikit-learn: one line naming the install command, exit 2, before anything is computed.
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)
    res = CliRunner().invoke(app, ["insights", run, *common, "--projection", "tsne"])
    assert res.exit_code == 2
    assert res.output.strip() == ("error: projection tsne needs scikit-learn, which is not installed: "
                                  "pip install 'recsys-cli[maps]'")
    # --projection belongs to a run's map; unknown names list the choices.
    res = CliRunner().invoke(app, ["insights", "tiny", *common, "--projection", "pca"])
    assert res.exit_code == 2 and "is for a run's item map" in res.output
    res = CliRunner().invoke(app, ["insights", run, *common, "--projection", "mds"])
    assert res.exit_code == 2 and "pca, tsne, umap" in res.output
