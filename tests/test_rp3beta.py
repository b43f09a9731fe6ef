"""rp3beta: hand-computed weights and scores, the blocked sparse build against its dense NumPy twin,
ties at the neighbour cut-off, the memory refusal, fold-in and explanations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from dense_data import interactions as _interactions
from dense_data import random_ratings as _random_ratings

from recsys_cli.errors import ConfigError
from recsys_cli.models.graph import BLOCK, memory_estimate_gb, rp3beta_weights, rp3beta_weights_ref
from recsys_cli.models.registry import create_model

# users: u0 has items {0, 1}, u1 {0, 2}, u2 {0}
HAND = np.array([[4, 5, 0], [3, 0, 5], [2, 0, 0]], np.float32)


def test_three_items_by_hand():
    # P_ui rows: (1/2, 1/2, 0), (1/2, 0, 1/2), (1, 0, 0); P_iu rows: (1/3, 1/3, 1/3), (1, 0, 0), (0, 1, 0).
    # P_iu P_ui = [[2/3, 1/6, 1/6], [1/2, 1/2, 0], [1/2, 0, 1/2]]; pop = (3, 1, 1); beta 0.5 divides
    # column 0 by sqrt(3); the diagonal is dropped.
    model = create_model("rp3beta", {"alpha": 1.0, "beta": 0.5, "neighbours": 0, "normalise": False}).fit(_interactions(HAND), seed=0)
    r3 = np.sqrt(3.0)
    want = np.array([[0, 1 / 6, 1 / 6], [0.5 / r3, 0, 0], [0.5 / r3, 0, 0]])
    np.testing.assert_allclose(model.W.toarray(), want, rtol=1e-6)
    # score_u = x_u W with binary x: u0 = row 0 + row 1, u2 = row 0
    np.testing.assert_allclose(model._score_users(np.array([0, 2])),
                               [[0.5 / r3, 1 / 6, 1 / 6], [0, 1 / 6, 1 / 6]], rtol=1e-6)
    # user 2 (raw 12) gets items 1 and 2 (tied: the lower index first), never item 0 they have
    assert model.recommend([12], 2).items.tolist() == [[501, 502]]


def test_alpha_and_neighbour_ties_by_hand():
    # alpha 2 squares every transition: P_iu P_ui row 0 = 1/9 (1/4 + 1/4 + 1, 1/4, 1/4) -> (0, 1/36, 1/36) off the
    # diagonal; one neighbour keeps item 1 (a tie with item 2: the lower index); normalise rescales it to 1.
    model = create_model("rp3beta", {"alpha": 2.0, "beta": 0.0, "neighbours": 1, "normalise": False}).fit(_interactions(HAND), seed=0)
    np.testing.assert_allclose(model.W.toarray(), [[0, 1 / 36, 0], [1 / 4, 0, 0], [1 / 4, 0, 0]], rtol=1e-6)
    norm = create_model("rp3beta", {"alpha": 2.0, "beta": 0.0, "neighbours": 1, "normalise": True})
    np.testing.assert_allclose(norm.fit(_interactions(HAND), seed=0).W.toarray(), [[0, 1, 0], [1, 0, 0], [1, 0, 0]])


@pytest.mark.parametrize("alpha,beta,neighbours,normalise", [(1.0, 0.0, 0, False), (0.7, 0.4, 3, True),
                                                             (1.3, 0.25, 5, False), (1.0, 0.6, 1, True)])
def test_blocked_sparse_build_matches_dense_twin(alpha, beta, neighbours, normalise):
    rng = np.random.default_rng(2)
    n = BLOCK + 41  # two blocks, the second one partial
    x = (rng.random((60, n)) < 0.08) * rng.integers(1, 6, (60, n))
    x[:, :3] = 1  # some columns tie exactly
    got = rp3beta_weights(sp.csr_matrix(x.astype(np.float64)), alpha, beta, neighbours, normalise)
    np.testing.assert_allclose(got.toarray(), rp3beta_weights_ref(x, alpha, beta, neighbours, normalise), atol=1e-7)
    if neighbours:
        assert np.diff(got.indptr).max() <= neighbours


def test_rating_weights_and_threshold_match_dense_twin():
    x = _random_ratings(seed=1)
    model = create_model("rp3beta", {"weight": "rating", "interactions": "threshold", "min_rating": 3,
                                     "neighbours": 4, "alpha": 1.0, "beta": 0.3, "normalise": False})
    model.fit(_interactions(x), seed=0)
    xw = np.where(x >= 3, x, 0.0)
    want = rp3beta_weights_ref(xw, 1.0, 0.3, 4, False)
    np.testing.assert_allclose(model.W.toarray(), want, atol=1e-7)
    np.testing.assert_allclose(model._score_users(np.arange(x.shape[0])), xw @ want, rtol=1e-5, atol=1e-6)


def test_memory_refusal_says_estimate_and_how_to_lower_it():
    x = _random_ratings()
    need = memory_estimate_gb(12, 0)
    assert need == pytest.approx((12 * 11 * 16 + BLOCK * 12 * 16) / 1e9)
    with pytest.raises(ConfigError) as err:
        create_model("rp3beta", {"neighbours": 0, "max_memory_gb": need / 2}).fit(_interactions(x), seed=0)
    msg = str(err.value)
    assert "12 items" in msg and "max_memory_gb" in msg
    create_model("rp3beta", {"neighbours": 0, "max_memory_gb": need * 1.01}).fit(_interactions(x), seed=0)


def test_fold_in_and_explanations_add_up():
    x = _random_ratings(seed=4)
    model = create_model("rp3beta", {"neighbours": 5, "weight": "rating"}).fit(_interactions(x), seed=0)
    u = 7
    rated = np.flatnonzero(x[u])
    scores = model._score_users(np.array([u]))[0]
    np.testing.assert_allclose(model.fold_in(500 + rated, x[u, rated]), scores, rtol=1e-5, atol=1e-7)
    items = np.setdiff1d(np.arange(12), rated)
    for exps in (model.explain(u, items), model.explain(-1, items, rated=rated, ratings=x[u, rated])):
        for item, e in zip(items, exps, strict=True):
            assert e.kind == "items"
            assert set(e.keys.tolist()) <= set(rated.tolist())
            assert e.total == pytest.approx(float(scores[item]), rel=1e-5, abs=1e-7)
