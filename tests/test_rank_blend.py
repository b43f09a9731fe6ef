"""rank-blend: the weight grid, score normalisation, the inner-split weight search, no seen items, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recsys_cli.data.dataset import Interactions
from recsys_cli.errors import ConfigError
from recsys_cli.models.rank_blend import ndcg_at_k, normalise, seen_mask, simplex_grid
from recsys_cli.models.registry import create_model

SMALL = {"ials": {"factors": 8, "iterations": 8, "reg": 0.1}, "ease": {"reg": 20}, "item-knn": {"k": 10}}


def blend(models: str, **extra) -> dict:
    """rank-blend params with small, fast members."""
    names = models.split(",")
    return {"models": models, "params": json.dumps({k: v for k, v in SMALL.items() if k in names}), **extra}


def planted(n_users=240, n_items=120, groups=4, per_user=24, seed=0) -> Interactions:
    """Taste groups: a user picks 85% of their items from their group's block (popular ones more often)."""
    rng = np.random.default_rng(seed)
    block = n_items // groups
    pop = 1.0 / (np.arange(block) + 3.0)
    users, items = [], []
    for u in range(n_users):
        g = u % groups
        own = rng.choice(block, int(per_user * 0.85), replace=False, p=pop / pop.sum()) + g * block
        other = rng.choice(np.setdiff1d(np.arange(n_items), np.arange(g * block, (g + 1) * block)),
                           per_user - len(own), replace=False)
        for i in np.concatenate([own, other]):
            users.append(u), items.append(int(i))
    n = len(users)
    return Interactions(
        users=np.array(users, np.int32), items=np.array(items, np.int32),
        ratings=rng.integers(3, 6, n).astype(np.float32),
        user_ids=np.arange(1, n_users + 1, dtype=np.int64) * 3, item_ids=np.arange(1, n_items + 1, dtype=np.int64) * 7,
        timestamps=np.arange(n, dtype=np.int64), rating_scale=(1.0, 5.0), dataset="planted", fingerprint="sha256:p",
    )


def test_simplex_grid_by_hand():
    np.testing.assert_allclose(simplex_grid(3, 0.5), [[0, 0, 1], [0, 0.5, 0.5], [0, 1, 0], [0.5, 0, 0.5],
                                                      [0.5, 0.5, 0], [1, 0, 0]])
    g = simplex_grid(4, 0.1)
    assert g.shape == (286, 4) and np.allclose(g.sum(axis=1), 1) and (g >= 0).all()  # C(13, 3)
    assert len({tuple(r) for r in np.round(g, 6)}) == 286
    np.testing.assert_allclose(simplex_grid(1, 0.25), [[1.0]])
    with pytest.raises(ConfigError, match="must divide 1"):
        simplex_grid(2, 0.3)


def test_normalise_by_hand():
    s = np.array([[1.0, 2.0, 3.0, 10.0, -np.inf]], np.float32)
    seen = np.array([[False, False, False, True, False]])
    z = normalise(s, seen, "score", 60)
    # mean 2 and std sqrt(2/3) over the unseen finite items 1, 2, 3; the seen one on the same scale
    np.testing.assert_allclose(z[0, :4], (np.array([1, 2, 3, 10]) - 2) / np.sqrt(2 / 3), rtol=1e-6)
    assert z[0, 4] == -np.inf
    r = normalise(s, seen, "rank", 10)
    # unseen ranks 0, 1, 2 for items 2, 1, 0; the seen item ranks after them (3), -inf stays -inf
    np.testing.assert_allclose(r[0, :4], [1 / 13, 1 / 12, 1 / 11, 1 / 14], rtol=1e-6)
    assert r[0, 4] == -np.inf
    flat = normalise(np.ones((1, 3), np.float32), np.zeros((1, 3), bool), "score", 60)
    np.testing.assert_array_equal(flat, 0.0)  # constant scores: zero, not NaN


def test_ndcg_matches_the_evaluation_metrics():
    from recsys_cli.evaluation.metrics import ranking_metrics

    # by hand: relevant {0, 3}; ranking 3, 1, 0 -> (1 + 1/log2(4)) / (1 + 1/log2(3))
    s = np.array([[0.5, 0.8, -np.inf, 0.9]], np.float32)
    rel = np.array([[True, False, False, True]])
    assert ndcg_at_k(s, rel, 3) == pytest.approx((1 + 0.5) / (1 + 1 / np.log2(3)))
    rng = np.random.default_rng(1)
    scores = rng.random((50, 40)).astype(np.float32)
    relevant = rng.random((50, 40)) < 0.15
    relevant[0] = False  # a user with nothing relevant is skipped by both
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10].astype(np.int32)
    keep = relevant.any(axis=1)
    indptr = np.concatenate([[0], np.cumsum(relevant[keep].sum(axis=1))]).astype(np.int64)
    indices = np.concatenate([np.flatnonzero(r) for r in relevant[keep]]).astype(np.int32)
    want = ranking_metrics(top[keep], indptr, indices, ks=(10,), n_items=40, train_counts=np.ones(40, np.int64),
                           n_train_users=50)["ndcg@10"]
    assert ndcg_at_k(scores, relevant, 10) == pytest.approx(want, rel=1e-9)


def test_seen_mask():
    indptr = np.array([0, 2, 2, 5], np.int64)
    indices = np.array([1, 3, 0, 2, 4], np.int32)
    m = seen_mask(indptr, indices, np.array([2, 0, 1]), 5)
    np.testing.assert_array_equal(m, [[1, 0, 1, 0, 1], [0, 1, 0, 1, 0], [0, 0, 0, 0, 0]])


@pytest.fixture(scope="module")
def data():
    return planted()


@pytest.mark.parametrize("fusion", ["score", "rank"])
def test_never_returns_seen_items_and_is_deterministic(data, fusion):
    params = blend("ials,ease", fusion=fusion)
    a = create_model("rank-blend", params).fit(data, seed=5)
    b = create_model("rank-blend", params).fit(data, seed=5)
    users = data.user_ids
    ra, rb = a.recommend(users, 40), b.recommend(users, 40)
    np.testing.assert_array_equal(ra.items, rb.items)
    np.testing.assert_array_equal(ra.scores, rb.scores)
    assert a.fit_info["weights"] == b.fit_info["weights"]
    for r, u in enumerate(range(data.n_users)):
        seen = set(data.item_ids[data.items[data.users == u]].tolist())
        got = [i for i in ra.items[r].tolist() if i >= 0]
        assert len(got) == 40 and not seen & set(got)


def test_weights_are_chosen_on_the_inner_split(data):
    # planted co-occurrence: ease finds each user's group, popularity cannot; the search must see it
    model = create_model("rank-blend", blend("ease,popularity", weight_step=0.1)).fit(data, seed=3)
    info = model.fit_info
    alone = info["val_ndcg_alone"]
    assert alone["ease"] > alone["popularity"] + 0.1
    assert info["weights"]["ease"] >= 0.5
    assert info["val_ndcg"] >= max(alone.values()) - 1e-12  # the corners of the grid are the members alone
    assert info["val_users"] == data.n_users and info["grid_points"] == 11


def test_three_rankers_beat_or_match_the_best_member_on_validation(data):
    model = create_model("rank-blend", blend("ials,ease,item-knn", weight_step=0.25)).fit(data, seed=1)
    info = model.fit_info
    assert info["val_ndcg"] >= max(info["val_ndcg_alone"].values()) - 1e-12
    assert sum(info["weights"].values()) == pytest.approx(1.0)


@pytest.mark.parametrize("params, message", [
    ({"models": ""}, "empty"),
    ({"models": "ials,ials"}, "listed twice"),
    ({"models": "ials,blend"}, "cannot be blends"),
    ({"models": "ials", "params": '{"ease": {}}'}, "not in the blend"),
    ({"models": "ials", "params": "{nope"}, "must be JSON"),
    ({"models": "ials", "params": "[1]"}, "JSON object"),
    ({"models": "ials", "params": '{"ials": {"factorz": 3}}'}, "valid parameters"),
    ({"models": "ials", "params": '{"ials": 5}'}, "params for ials must be a JSON object"),
])
def test_bad_member_config(params, message):
    with pytest.raises(ConfigError, match=message):  # when the model is created, before any data is read
        create_model("rank-blend", params)


@pytest.mark.parametrize("params, message", [
    ("{nope", "blend: params must be JSON"), ("5", "blend: params must be a JSON object"),
    ('{"svd": 5}', "blend: params for svd must be a JSON object"), ('{"ials": {}}', "not in the blend: ials"),
])
def test_bad_blend_params_fail_when_the_blend_is_created(params, message):
    with pytest.raises(ConfigError, match=message):  # `5` and `{"svd": 5}` were a TypeError traceback at fit
        create_model("blend", {"models": "bias,svd", "params": params})


def test_fold_in_of_a_known_user_equals_their_fused_scores(data):
    # ease's fold-in of a user's own ratings is exactly their trained row, so the fused scores agree too
    model = create_model("rank-blend", blend("ease,popularity", weight_step=0.5)).fit(data, seed=2)
    assert model.supports_fold_in  # both members can
    model.weights = np.array([1.0, 0.0])  # ease alone, whatever the search chose
    u = 17
    rows = data.users == u
    got = model.fold_in(data.item_ids[data.items[rows]], data.ratings[rows])
    np.testing.assert_allclose(got, model._score_users(np.array([u]))[0], rtol=1e-5, atol=1e-5)


def test_validation_users_are_sampled_by_seed(data):
    a = create_model("rank-blend", blend("ease,popularity", max_val_users=50)).fit(data, seed=9)
    b = create_model("rank-blend", blend("ease,popularity", max_val_users=50)).fit(data, seed=9)
    assert a.fit_info["val_users"] == 50 and a.fit_info == b.fit_info


def test_fold_in_needs_every_weighted_member_to_fold_in(data):
    from recsys_cli.errors import UsageError

    params = {"models": "ease,bpr", "weight_step": 0.5,
              "params": json.dumps({"ease": {"reg": 20}, "bpr": {"factors": 4, "epochs": 3, "threads": 1}})}
    model = create_model("rank-blend", params).fit(data, seed=2)
    model.weights = np.array([0.5, 0.5])
    assert not model.supports_fold_in
    with pytest.raises(UsageError, match="every weighted member"):
        model.fold_in([7, 14], [5, 4])
    model.weights = np.array([1.0, 0.0])  # bpr weighed out: ease alone decides
    assert model.supports_fold_in and np.isfinite(model.fold_in([7, 14], [5, 4])).any()
