"""Models recover the structure `recsys generate` plants, and user-knn folds in a new user faithfully.

One small generated dataset (300 users x 200 items x 20k ratings, random split) is shared by
the module; its truth.npz holds the planted factors and generate.json the oracle RMSE.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from contract import checkerboard

from recsys_cli.data.dataset import Interactions, load_dataset, lookup
from recsys_cli.data.preprocess import preprocess
from recsys_cli.data.synthetic import generate
from recsys_cli.evaluation import metrics as M
from recsys_cli.evaluation.protocols import EvalSettings, relevant_csr, score_model
from recsys_cli.models._kernels.knn import similarity_matrix_ref, topk_similarities
from recsys_cli.models.registry import create_model

NAME = "synth-recovery"
RATING_MODELS = {
    "bias": {},
    "als": {"factors": 8, "reg": 0.05},
    "svd": {"factors": 8, "epochs": 100, "lr_all": 0.01, "reg_all": 0.05},
}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("recovery")
    record = generate(NAME, n_users=300, n_items=200, n_ratings=20000, seed=5, data_dir=root, save_truth=True)
    preprocess(NAME, data_dir=root)
    ds = load_dataset(NAME, root)
    raw = root / "raw" / NAME
    assert json.loads((raw / "generate.json").read_text()) == record
    with np.load(raw / "truth.npz") as npz:
        truth = {k: npz[k] for k in npz.files}
    return {"train": ds.interactions("random", "train"), "test": ds.interactions("random", "test"),
            "truth": truth, "record": record["truth"]}


@pytest.fixture(scope="module")
def fitted(synth):
    return {name: create_model(name, params).fit(synth["train"], seed=1) for name, params in RATING_MODELS.items()}


def heldout_rmse(model, test: Interactions) -> float:
    pred, _ = model.predict(test.user_ids[test.users], test.item_ids[test.items])
    return M.rmse(pred, test.ratings)


def r2_per_target(target: np.ndarray, learned: np.ndarray) -> np.ndarray:
    """R^2 of least-squares regressing each column of `target` on `learned` (with an intercept)."""
    X = np.c_[np.ones(len(learned)), learned.astype(np.float64)]
    coef, *_ = np.linalg.lstsq(X, target, rcond=None)
    resid = target - X @ coef
    return 1.0 - (resid**2).sum(axis=0) / ((target - target.mean(axis=0)) ** 2).sum(axis=0)


def planted(synth, which: str) -> np.ndarray:
    """Planted user or item factors, rows in the dataset's index order."""
    train, truth = synth["train"], synth["truth"]
    vocab = train.user_ids if which == "user" else train.item_ids
    idx = lookup(vocab, truth[f"{which}_ids"])
    assert (idx >= 0).all(), f"a generated {which} id is missing from the processed dataset"
    out = np.full((len(vocab), truth[f"{which}_factors"].shape[1]), np.nan)
    out[idx] = truth[f"{which}_factors"]
    return out


# ------------------------------------------------------------------ rating accuracy and factors


def test_rating_models_beat_biases_and_approach_the_oracle(synth, fitted):
    test, rec = synth["test"], synth["record"]
    oracle = rec["oracle_rmse"]
    planted_bias_rmse = rec["rating_std"] * np.sqrt(1.0 - rec["bias_only_r2"])
    rmse = {name: heldout_rmse(model, test) for name, model in fitted.items()}
    # The bias model learns what biases can explain, no more.
    assert abs(rmse["bias"] - planted_bias_rmse) < 0.05, (rmse, planted_bias_rmse)
    for name in ("als", "svd"):
        assert rmse[name] < rmse["bias"] - 0.2, rmse
        assert 0.95 * oracle < rmse[name] < 1.3 * oracle, (rmse, oracle)


@pytest.mark.parametrize("name", ["als", "svd"])
def test_learned_factors_span_the_planted_space(synth, fitted, name):
    model = fitted[name]
    item_f, user_f = (model.Y, model.X) if name == "als" else (model.Q, model.P)
    well_rated = np.bincount(synth["train"].items, minlength=synth["train"].n_items) >= 20
    assert well_rated.sum() >= 100
    r2_items = r2_per_target(planted(synth, "item")[well_rated], item_f[well_rated])
    assert r2_items.min() > 0.8, r2_items
    r2_users = r2_per_target(planted(synth, "user"), user_f)
    assert r2_users.mean() > 0.7, r2_users
    # Control: as many random directions explain little, so the bar above means something.
    noise = np.random.default_rng(0).normal(size=item_f[well_rated].shape)
    assert r2_per_target(planted(synth, "item")[well_rated], noise).max() < 0.25


# ------------------------------------------------------------------ implicit ranking


def random_ndcg(train: Interactions, test: Interactions, settings: EvalSettings, seed: int = 0) -> float:
    """nDCG@10 of uniformly random top-10 lists of unseen items (the floor any model must clear)."""
    users = np.unique(test.users)
    indptr, indices = relevant_csr(test, users, settings)
    users = users[np.diff(indptr) > 0]
    indptr, indices = relevant_csr(test, users, settings)
    rng = np.random.default_rng(seed)
    csr = train.csr()
    recs = np.empty((len(users), 10), np.int32)
    for r, u in enumerate(users):
        unseen = np.setdiff1d(np.arange(train.n_items), csr.indices[csr.indptr[u] : csr.indptr[u + 1]])
        recs[r] = rng.choice(unseen, 10, replace=False)
    return M.ranking_metrics(recs, indptr, indices, ks=(10,), n_items=train.n_items)["ndcg@10"]


def test_ials_ranks_heldout_items(synth):
    train, test = synth["train"], synth["test"]
    anyrel = EvalSettings(relevance="any", auc=False, rating_metrics=False)
    liked = EvalSettings(relevance="threshold", threshold=4.0, auc=False, rating_metrics=False)
    pop = create_model("popularity").fit(train, seed=1)
    ials = create_model("ials", {"factors": 8}).fit(train, seed=1)
    ials_liked = create_model("ials", {"factors": 8, "interactions": "threshold"}).fit(train, seed=1)
    ndcg = {
        "random": random_ndcg(train, test, anyrel),
        "pop": score_model(pop, train, test, anyrel)["ndcg@10"],
        "ials": score_model(ials, train, test, anyrel)["ndcg@10"],
        "pop_liked": score_model(pop, train, test, liked)["ndcg@10"],
        "ials_liked": score_model(ials_liked, train, test, liked)["ndcg@10"],
    }
    # Which items a user rates is mostly planted popularity (the generator's oracle ranking is only
    # a few per cent above popularity here), so ials must match popularity and beat random by far.
    assert ndcg["ials"] > 2.5 * ndcg["random"], ndcg
    assert ndcg["ials"] > 0.97 * ndcg["pop"], ndcg
    # Which items a user *likes* follows the planted factors: there ials is clearly ahead.
    assert ndcg["ials_liked"] > 1.1 * ndcg["pop_liked"], ndcg


# ------------------------------------------------------------------ user-knn fold-in


def small_ratings(seed: int = 3, n_users: int = 30, n_items: int = 20) -> Interactions:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < 0.45
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    u, i = np.nonzero(mask)
    return Interactions(
        users=u.astype(np.int32), items=i.astype(np.int32),
        ratings=rng.integers(1, 6, len(u)).astype(np.float32) - rng.choice([0.0, 0.5], len(u)).astype(np.float32),
        user_ids=np.arange(10, 10 + n_users, dtype=np.int64), item_ids=np.arange(500, 500 + n_items, dtype=np.int64),
        rating_scale=(0.5, 5.0),
    )


def with_new_user(data: Interactions, items: np.ndarray, ratings: np.ndarray) -> Interactions:
    """The same ratings plus one new user (index n_users, raw id above every other) who rated `items`."""
    n = data.n_users
    return replace(
        data,
        users=np.r_[data.users, np.full(len(items), n)].astype(np.int32),
        items=np.r_[data.items, items].astype(np.int32),
        ratings=np.r_[data.ratings, ratings].astype(np.float32),
        user_ids=np.r_[data.user_ids, data.user_ids.max() + 1],
        timestamps=None,
        _cache={},
    )


NEW_ITEMS = np.array([1, 3, 4, 8, 11, 12, 15, 19])
NEW_RATINGS = np.array([4.0, 2.5, 5.0, 1.0, 3.5, 4.5, 2.0, 5.0])


@pytest.mark.parametrize("kind", ["cosine", "msd", "pearson", "pearson_baseline"])
def test_fold_in_similarities_follow_the_kernel(kind):
    data = small_ratings()
    model = create_model("user-knn", {"similarity": kind, "min_support": 2, "shrinkage": 5.0}).fit(data, seed=1)
    items, r = model._new_user_ratings(data.item_ids[NEW_ITEMS], NEW_RATINGS)
    bu_new = np.float32(np.sum(r - float(model.global_mean) - model.bi[items]) / (model.config.reg_u + len(items)))
    users, sims, support = model._new_user_similarities(items, r, bu_new)
    # The (n+1)-row matrix with the new user appended, as fit would see it.
    big = with_new_user(data, items, r).csr()
    base = (float(model.global_mean), np.append(model.bu, bu_new), model.bi)
    n = data.n_users
    ref, ref_support = similarity_matrix_ref(big.indptr, big.indices, big.data, data.n_items, kind=kind,
                                             min_support=2, shrinkage=5.0, baselines=base)
    min_sup = 2
    expected_users = np.flatnonzero(ref_support[n, :n] >= min_sup)
    assert len(expected_users) > 5
    np.testing.assert_array_equal(users, expected_users)
    np.testing.assert_array_equal(support, ref_support[n, users])
    np.testing.assert_allclose(sims, ref[n, users], rtol=1e-9, atol=1e-12)
    # The neighbour list equals the kernel's row for the new user, bit for bit.
    nbr, ksims, _ = topk_similarities(big.indptr, big.indices, big.data, data.n_items, kind=kind, k_max=n,
                                      min_support=2, shrinkage=5.0, baselines=base)
    got_nbr, got_sims = model._new_user_neighbors(items, r, bu_new)
    keep = nbr[n] >= 0
    np.testing.assert_array_equal(got_nbr, nbr[n][keep])
    np.testing.assert_array_equal(got_sims, ksims[n][keep])


@pytest.mark.parametrize("kind", ["cosine", "msd", "pearson"])
@pytest.mark.parametrize("prediction, rank_by", [("means", "mean"), ("means", "sum"), ("basic", "sum")])
def test_fold_in_equals_refit_with_the_user_added(kind, prediction, rank_by):
    # These similarities and estimates do not use the (refit-dependent) baselines, so folding
    # a user in must give exactly what training with that user would give them.
    data = small_ratings()
    params = {"similarity": kind, "prediction": prediction, "rank_by": rank_by, "k": 5}
    model = create_model("user-knn", params).fit(data, seed=1)
    refit = create_model("user-knn", params).fit(with_new_user(data, NEW_ITEMS, NEW_RATINGS), seed=1)
    expected = refit._score_users(np.array([data.n_users]))[0]
    got = model.fold_in(data.item_ids[NEW_ITEMS], NEW_RATINGS)
    assert got.shape == (data.n_items,) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert np.ptp(got) > 0.1  # real, user-specific scores, not one fallback value


def test_fold_in_ignores_unknown_items_and_keeps_the_last_repeat():
    data = small_ratings()
    model = create_model("user-knn", {"similarity": "pearson", "prediction": "means"}).fit(data, seed=1)
    ids = data.item_ids[NEW_ITEMS]
    clean = model.fold_in(ids, NEW_RATINGS)
    noisy = model.fold_in(np.r_[ids, 99999, ids[0]], np.r_[NEW_RATINGS, 3.0, NEW_RATINGS[0]])
    np.testing.assert_array_equal(clean, noisy)
    changed = model.fold_in(np.r_[ids, ids[0]], np.r_[NEW_RATINGS, 1.0])
    assert not np.array_equal(clean, changed)


def test_constant_ratings_have_no_pearson_neighbours():
    # Pearson similarity of a user who gives every item the same rating is 0 (no variance), as in
    # Surprise: such a user, folded in or trained, falls back to their mean for every item.
    data, _ = checkerboard()
    params = {"k": 10, "similarity": "pearson", "prediction": "means", "rank_by": "mean"}  # scores = ratings
    model = create_model("user-knn", params).fit(data, seed=1)
    items = np.arange(15, 20)
    got = model.fold_in(data.item_ids[items], np.full(5, 5.0))
    np.testing.assert_array_equal(got, np.full(data.n_items, 5.0, np.float32))
    refit = create_model("user-knn", params).fit(with_new_user(data, items, np.full(5, 5.0)), seed=1)
    np.testing.assert_array_equal(refit._score_users(np.array([data.n_users]))[0], got)
    # pearson_baseline works on residuals, which vary, so the same user finds their group.
    pb = create_model("user-knn", {"k": 10}).fit(data, seed=1)
    recs = pb.recommend_new_user(data.item_ids[items], np.full(5, 5.0), 5)
    assert (recs.items[0] >= 1016).all() and recs.fallback == ["fold_in"]


def test_folded_in_copy_of_a_training_user_gets_their_recommendations(synth):
    train = synth["train"]
    csr = train.csr()
    users = np.random.default_rng(0).choice(np.flatnonzero(np.diff(csr.indptr) >= 20), 25, replace=False)
    for params in ({}, {"similarity": "pearson", "prediction": "means"}):
        model = create_model("user-knn", params).fit(train, seed=1)
        overlap = []
        for u in users:
            row = slice(csr.indptr[u], csr.indptr[u + 1])
            items, ratings = train.item_ids[csr.indices[row]], csr.data[row]
            own = model.recommend([train.user_ids[u]], 10)
            new = model.recommend_new_user(items, ratings, 10)
            overlap.append(len(set(own.items[0]) & set(new.items[0])))
            if params:  # no baselines involved: identical scores on every unseen item
                unseen = np.setdiff1d(np.arange(train.n_items), csr.indices[row])
                known = model._score_users(np.array([u]))[0]
                np.testing.assert_allclose(model.fold_in(items, ratings)[unseen], known[unseen], rtol=1e-5, atol=1e-5)
        # pearson_baseline: the new user's bias comes from a closed form, not ALS, so near-identical.
        assert np.mean(overlap) >= 9.0 and min(overlap) >= 7, (params, overlap)
