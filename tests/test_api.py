"""The library API (`import recsys_cli as rs`): inputs, answers, runs, evaluation, metrics and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import polars as pl
import pytest
from typer.testing import CliRunner

import recsys_cli as rs
from recsys_cli.cli.app import app
from recsys_cli.errors import ArtifactError, ConfigError, DataError, UnknownIdError, UsageError


def planted_frame(seed: int = 0, users: int = 120, items: int = 90, per_user: int = 30) -> pl.DataFrame:
    """Ratings from planted rank-3 factors, rounded to stars; every user rates `per_user` distinct items."""
    rng = np.random.default_rng(seed)
    p, q = rng.normal(size=(users, 3)), rng.normal(size=(items, 3))
    rows = []
    for u in range(users):
        for i in rng.choice(items, per_user, replace=False):
            r = np.clip(np.rint(3 + p[u] @ q[i] + rng.normal(0, 0.3)), 1, 5)
            rows.append((u + 1, i + 10, float(r), 1_000_000 + len(rows)))
    return pl.DataFrame(rows, schema=["user", "item", "stars", "ts"], orient="row")


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return planted_frame()


@pytest.fixture(scope="module")
def data(frame):
    return rs.from_frame(frame, user="user", item="item", rating="stars", timestamp="ts")


def test_root_exports_are_lazy():
    code = "import sys, recsys_cli as rs; print(sorted(m for m in ('numpy', 'polars', 'numba', 'scipy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert callable(rs.train) and rs.UsageError is UsageError
    with pytest.raises(AttributeError):
        rs.no_such_thing  # noqa: B018


def test_from_frame_reads_columns_and_vocabularies(data, frame):
    assert len(data) == frame.height
    assert data.n_users == 120 and data.n_items == 90
    assert data.user_ids[0] == 1 and data.item_ids[0] == 10
    assert data.rating_scale == (float(frame["stars"].min()), float(frame["stars"].max()))
    back = data.ratings.sort(["user_id", "item_id"])
    want = frame.sort(["user", "item"])
    assert back["rating"].to_list() == want["stars"].to_list()
    assert back["timestamp"].to_list() == want["ts"].to_list()
    m = data.matrix()
    assert m.shape == (120, 90) and m.nnz == frame.height
    row = frame.filter(pl.col("user") == 7)
    assert m[6, int(row["item"][0]) - 10] == row["stars"][0]


def test_pandas_polars_and_tuples_fit_identical_arrays(frame):
    kw = dict(user="user", item="item", rating="stars")
    from_pl = rs.from_frame(frame, **kw)
    from_pd = rs.from_frame(frame.to_pandas(), **kw)
    from_tuples = rs.from_frame(frame.select("user", "item", "stars").iter_rows(), user="user", item="item",
                                rating="stars")
    fits = [rs.train("svd", d, seed=7, factors=8, epochs=5).estimator for d in (from_pl, from_pd, from_tuples)]
    for other in fits[1:]:
        np.testing.assert_array_equal(fits[0].P, other.P)
        np.testing.assert_array_equal(fits[0].Q, other.Q)
    assert from_pl.fingerprint == from_pd.fingerprint


def test_split_kinds_share_vocabularies_and_partition(data):
    train, test = data.split("random", test=0.2, seed=1)
    assert len(train) + len(test) == len(data)
    assert np.array_equal(train.item_ids, data.item_ids) and np.array_equal(test.user_ids, data.user_ids)
    assert abs(len(test) / len(data) - 0.2) < 0.01
    folds = data.split("kfold", k=4, seed=1)
    assert len(folds) == 4 and sum(len(t) for _, t in folds) == len(data)
    tr, va, te = data.split("temporal", test=0.1, val=0.1)
    assert tr.ratings["timestamp"].max() < va.ratings["timestamp"].min() <= va.ratings["timestamp"].max() \
        < te.ratings["timestamp"].min()
    per_user = data.split("leave-last", last=2)[1].ratings.group_by("user_id").len()
    assert per_user["len"].unique().to_list() == [2]
    again = data.split("random", test=0.2, seed=1)[1]
    assert again.ratings.equals(test.ratings)


def test_recommend_predict_similar_fold_in(data):
    train, _ = data.split("random", test=0.2, seed=1)
    model = rs.train("ials", train, seed=3, factors=8, iterations=5)
    recs = model.recommend([1, 2, 999_999], n=4)
    assert recs.columns == ["user_id", "rank", "item_id", "title", "score", "fallback"]
    assert recs.height == 12
    assert recs.filter(pl.col("user_id") == 999_999)["fallback"].to_list() == ["popularity"] * 4
    assert recs.filter(pl.col("user_id") == 1)["fallback"].null_count() == 4
    seen = set(train.ratings.filter(pl.col("user_id") == 1)["item_id"].to_list())
    assert not seen & set(recs.filter(pl.col("user_id") == 1)["item_id"].to_list())
    assert recs.to_pandas().shape == (12, 6)
    svd = rs.train("svd", train, seed=3, factors=8, epochs=10)
    pred = svd.predict([1, 1, 999_999], [10, 11, 10])
    assert pred["fallback"].to_list()[:2] == [None, None] and pred["fallback"][2] == "item_bias"
    lo, hi = data.rating_scale
    assert pred["prediction"].is_between(lo, hi).all()
    sims = svd.similar_items([10, 11], n=3)
    assert sims.height == 6 and sims["similarity"].is_sorted(descending=True) is not None
    assert 10 not in sims.filter(pl.col("item_id") == 10)["similar_item_id"].to_list()
    new = model.fold_in({10: 5, 11: 4}, n=5)
    assert new["user_id"].null_count() == 5 and set(new["fallback"]) == {"fold_in"}
    assert not {10, 11} & set(new["item_id"].to_list())


def test_evaluate_model_equals_evaluate_saved_run(data, tmp_path):
    train, test = data.split("user", test=0.25, seed=2)
    model = rs.train("bias", train, seed=2)
    direct = rs.evaluate(model, test, relevance="any")
    run = rs.save(model, "bias-api", artifacts_dir=tmp_path)
    assert isinstance(run.manifest, rs.Manifest) and run.manifest.model == "bias" and run.manifest.split == "user"
    loaded = rs.load_run("bias-api", artifacts_dir=tmp_path)
    again = rs.evaluate(loaded, test, relevance="any", train=train)
    for key in ("rmse", "mae", "ndcg@10", "precision@10", "recall@10"):
        assert again.metrics[key] == pytest.approx(direct.metrics[key], rel=1e-9), key
    # a loaded model without its training set rebuilds the seen items from the run: same ranking metrics
    rebuilt = loaded.evaluate(test, relevance="any", metrics=["ndcg@10", "rmse"])
    assert set(rebuilt.metrics) == {"ndcg@10", "rmse"}
    assert rebuilt.metrics["ndcg@10"] == pytest.approx(direct.metrics["ndcg@10"], rel=1e-9)
    assert direct.to_frame()["rmse"][0] == direct.metrics["rmse"]
    assert json.loads(json.dumps(direct.to_dict(), default=float))["metrics"]["rmse"] == direct.metrics["rmse"]


def test_cross_validate_matches_compare_and_hand_fold_means(data):
    cv = rs.cross_validate("bias", data, cv=3, seed=5, metrics="rating")
    table = rs.compare(["bias", ("svd", {"factors": 4, "epochs": 3})], data, cv=3, seed=5, metrics="rating")
    assert table[0].metrics == cv.metrics
    assert len(cv.folds) == 3
    assert cv.metrics["rmse"] == pytest.approx(np.mean([f["rmse"] for f in cv.folds]))
    assert cv.metrics_std["rmse"] == pytest.approx(np.std([f["rmse"] for f in cv.folds]))
    frame = table.to_frame()
    assert frame["model"].to_list() == ["bias", "svd"] and "rmse_std" in frame.columns


def test_recommend_frame_equals_cli_json(data, tmp_path):
    train, _ = data.split("random", test=0.2, seed=1)
    model = rs.train("svd", train, seed=3, factors=8, epochs=5)
    rs.save(model, "svd-api", artifacts_dir=tmp_path)
    res = CliRunner().invoke(app, ["recommend", "svd-api", "--user", "1,2,999999", "-n", "5", "--artifacts-dir",
                                   str(tmp_path), "--format", "json"])
    assert res.exit_code == 0, res.output
    cli = json.loads(res.stdout)
    api = rs.load_run("svd-api", artifacts_dir=tmp_path).model.recommend([1, 2, 999_999], n=5)
    assert len(cli) == api.height
    for row, want in zip(api.iter_rows(named=True), cli, strict=True):
        assert row["user_id"] == want["user_id"] and row["item_id"] == want["item_id"] and row["rank"] == want["rank"]
        assert row["score"] == want["score"]  # full precision in both
        assert row["fallback"] == want["fallback"]


def test_dataframe_metrics_against_hand_computed_values():
    truth = pd.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [10, 11, 10, 12], "rating": [4.0, 2.0, 5.0, 3.0]})
    pred = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": [10, 11, 10, 12, 10],
                         "prediction": [3.0, 2.0, 4.0, 5.0, 1.0]})
    assert rs.metrics.rmse(truth, pred) == pytest.approx(np.sqrt((1 + 0 + 1 + 4) / 4))
    assert rs.metrics.mae(truth, pred) == pytest.approx((1 + 0 + 1 + 2) / 4)
    # user 1: relevant {10, 11}, list [11, 13] -> hit at rank 1; user 2: relevant {10, 12}, list [13, 12] -> rank 2
    recs = pl.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [11, 13, 13, 12], "score": [0.9, 0.5, 0.8, 0.7]})
    idcg = 1 + 1 / np.log2(3)
    assert rs.metrics.ndcg_at_k(truth, recs, k=2) == pytest.approx(((1 / idcg) + (1 / np.log2(3)) / idcg) / 2)
    assert rs.metrics.precision_at_k(truth, recs, k=2) == pytest.approx(0.5)
    assert rs.metrics.recall_at_k(truth, recs, k=2) == pytest.approx(0.5)
    assert rs.metrics.mrr_at_k(truth, recs, k=2) == pytest.approx((1 + 0.5) / 2)
    # threshold relevance: only ratings >= 4 count (user 1: {10}; user 2: {10}) -> no hit
    assert rs.metrics.hit_rate_at_k(truth, recs, k=2, relevance="threshold", threshold=4) == 0.0
    # a user absent from the lists scores zero
    assert rs.metrics.recall_at_k(truth, recs.filter(pl.col("user_id") == 1), k=2) == pytest.approx(0.25)


@pytest.mark.parametrize(
    "make, error, words",
    [
        (lambda f: rs.from_frame(f, user="nope", item="item", rating="stars"), DataError, "'nope'"),
        (lambda f: rs.from_frame(f, user="user", item="user", rating="stars"), UsageError, "different columns"),
        (lambda f: rs.from_frame(f.with_columns(pl.lit("x").alias("stars")), user="user", item="item",
                                 rating="stars"), DataError, "numeric"),
        (lambda f: rs.from_frame(f.with_columns(pl.when(pl.col("user") == 3).then(None).otherwise(pl.col("stars"))
                                                .alias("stars")), user="user", item="item", rating="stars"),
         DataError, "missing, NaN"),
        (lambda f: rs.from_frame(f.with_columns(pl.lit(float("nan")).alias("stars")), user="user", item="item",
                                 rating="stars"), DataError, "NaN"),
        (lambda f: rs.from_frame(pl.concat([f, f.head(2)]), user="user", item="item", rating="stars"),
         DataError, "duplicated"),
        (lambda f: rs.from_frame(f.head(0), user="user", item="item", rating="stars"), DataError, "no rows"),
        (lambda f: rs.from_frame(f.with_columns(pl.lit("abc").alias("user")), user="user", item="item",
                                 rating="stars"), DataError, "integer ids"),
        (lambda f: rs.from_frame(f.with_columns((-pl.col("item")).alias("item")), user="user", item="item",
                                 rating="stars"), DataError, "negative"),
        (lambda f: rs.from_frame(f, user="user", item="item", rating="stars", rating_scale=(1, 2)), DataError,
         "outside"),
        (lambda f: rs.from_frame("ratings.csv"), UsageError, "not a path"),
        (lambda f: rs.from_frame(42), UsageError, "DataFrame"),
        (lambda f: rs.create_model("svd", factor=3), ConfigError, "did you mean 'factors'"),
        (lambda f: rs.create_model("nope"), UsageError, "unknown model"),
        # each of these escaped as a bare ValueError / TypeError / AttributeError or a polars error
        (lambda f: rs.from_frame(f, user="user", item="item", rating="stars", rating_scale=("a", "b")), UsageError,
         "two numbers"),
        (lambda f: rs.from_frame(f, user="user", item="item", rating="stars", rating_scale=(1, 2, 3)), UsageError,
         "two numbers"),
        (lambda f: rs.from_frame(f, user="user", item="item", rating="stars", items=pl.DataFrame({"x": [1]})),
         DataError, "needs an item_id column"),
        (lambda f: rs.from_frame(f, user="user", item="item", rating="stars",
                                 items=pl.DataFrame({"item_id": [1], "genres": [5]})), DataError, "genres must be"),
        (lambda f: rs.from_frame(f.with_columns(pl.col("stars").map_elements(lambda v: [v],
                                                                             return_dtype=pl.List(pl.Float64))),
                                 user="user", item="item", rating="stars"), DataError, "must be numeric"),
        (lambda f: rs.from_frame(f.with_columns(pl.lit(2**63 + 5, dtype=pl.UInt64).alias("user")), user="user",
                                 item="item", rating="stars"), DataError, "above 2\\*\\*63"),
        (lambda f: rs.from_frame(f, user="user", item="item", rating="stars").split("random", test="0.2"),
         UsageError, "test must be a number"),
        (lambda f: rs.from_frame(f, user="user", item="item", rating="stars").split("kfold", k="3"), UsageError,
         "k must be an integer"),
        (lambda f: rs.from_frame(f, user="user", item="item", rating="stars").split("kfold", k=np.float64(3)),
         UsageError, "k must be an integer"),
        (lambda f: rs.train(None, rs.from_frame(f, user="user", item="item", rating="stars")), UsageError,
         "named by a string"),
        (lambda f: rs.save(5, "x"), UsageError, "save takes a model"),
    ],
)
def test_bad_frames_and_models_raise_recsys_errors(frame, make, error, words):
    with pytest.raises(error, match=words):
        make(frame)


def test_duplicate_policies(frame):
    first = frame.head(1).with_columns(pl.lit(1.0).alias("stars"), pl.lit(0, dtype=frame["ts"].dtype).alias("ts"))
    doubled = pl.concat([first, frame])
    last = rs.from_frame(doubled, user="user", item="item", rating="stars", timestamp="ts", duplicates="last")
    mean = rs.from_frame(doubled, user="user", item="item", rating="stars", timestamp="ts", duplicates="mean")
    u, i, r = frame.row(0)[:3]
    get = lambda d: d.ratings.filter((pl.col("user_id") == u) & (pl.col("item_id") == i))["rating"].to_list()  # noqa: E731
    assert get(last) == [r] and get(mean) == [pytest.approx((r + 1.0) / 2)]
    assert len(last) == len(mean) == frame.height


def test_duplicates_are_found_on_pairs_of_64_bit_ids():
    """(0, 5) and (2**32, 5) are different pairs: the duplicate key once overflowed and merged them."""
    big = {"user_id": [0, 2**32, 7, 7], "item_id": [5, 5, 2**32 - 1, 2**32 - 1], "rating": [1.0, 5.0, 3.0, 4.0],
           "ts": [1, 2, 3, 4]}
    last = rs.from_frame(big, timestamp="ts", duplicates="last")
    assert len(last) == 3 and last.duplicates_resolved == 1
    rows = {(u, i): r for u, i, r in last.ratings.select("user_id", "item_id", "rating").iter_rows()}
    assert rows == {(0, 5): 1.0, (2**32, 5): 5.0, (7, 2**32 - 1): 4.0}
    with pytest.raises(rs.RecsysError, match=r"1 duplicated \(user_id, item_id\) pairs, e.g. \(7, 4294967295\)"):
        rs.from_frame(big, timestamp="ts")


def test_bad_queries_raise_usage_errors(data, tmp_path):
    model = rs.train("bias", data, seed=1)
    with pytest.raises(UsageError, match="between 1"):
        model.recommend(1, n=0)
    with pytest.raises(UsageError, match="between 1"):
        model.recommend(1, n=10**12)
    with pytest.raises(UsageError, match="integers"):
        model.recommend(["abc"])
    with pytest.raises(UsageError, match="same length|differ"):
        model.predict([1, 2], [10, 11, 12])
    with pytest.raises(UnknownIdError, match="not in this run"):
        model.similar_items(5)
    with pytest.raises(UsageError, match="outside this run's rating scale"):
        model.fold_in({10: 50})
    with pytest.raises(UsageError, match="finite"):
        model.fold_in({10: float("nan")})
    with pytest.raises(UsageError, match="seed"):
        rs.train("bias", data, seed=-1)
    with pytest.raises(UsageError, match="not fitted"):
        rs.create_model("svd").recommend(1)
    with pytest.raises(ArtifactError, match="unknown run"):
        rs.load_run("missing", artifacts_dir=tmp_path)
    with pytest.raises(UsageError, match="k must be"):
        rs.evaluate(model, data, k=0)


def test_damaged_manifest_is_an_artifact_error(data, tmp_path):
    rs.save(rs.train("bias", data, seed=1), "b", artifacts_dir=tmp_path)
    assert rs.load_run("b", artifacts_dir=tmp_path).manifest.split is None  # trained on every rating
    path = tmp_path / "b" / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "seed": "forty-two"}))
    with pytest.raises(ArtifactError, match="'seed' should be an integer"):
        rs.load_run("b", artifacts_dir=tmp_path)
    del manifest["n_items"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="missing key 'n_items'"):
        rs.load_run("b", artifacts_dir=tmp_path)
