"""EASE: the closed form against a direct dense solve, the memory refusal, the top-N restriction."""

from __future__ import annotations

import numpy as np
import pytest
from dense_data import interactions as _interactions
from dense_data import random_ratings as _random_ratings

from recsys_cli.errors import ConfigError, UsageError
from recsys_cli.models.ease import EASE, ease_weights, ease_weights_ref, memory_estimate_gb
from recsys_cli.models.registry import create_model


def test_two_items_by_hand():
    # G = [[a+l, c], [c, b+l]]: B_01 = -P_01 / P_11 = c / (a + l), B_10 = c / (b + l).
    x = np.array([[1, 1], [1, 0], [1, 1], [0, 1], [1, 0]], np.float64)
    a, b, c, reg = 4.0, 3.0, 2.0, 1.5
    got = ease_weights(np.asfortranarray(x.T @ x), reg)
    assert got.flags.f_contiguous
    np.testing.assert_allclose(got, [[0.0, c / (a + reg)], [c / (b + reg), 0.0]], rtol=1e-12)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-6), ("float32", 2e-4)])
def test_fit_matches_direct_dense_solve(dtype, tol):
    x = _random_ratings()
    model = create_model("ease", {"reg": 3.0, "dtype": dtype}).fit(_interactions(x), seed=0)
    want = ease_weights_ref((x > 0).astype(np.float64), 3.0)
    np.testing.assert_allclose(model.B, want, atol=tol)
    # scores are x_u B for every user, seen items included when asked
    scores = model._score_users(np.arange(x.shape[0]))
    np.testing.assert_allclose(scores, (x > 0) @ want, atol=10 * tol)


def test_rating_weights_and_threshold_match_dense_solve():
    x = _random_ratings(seed=1)
    model = create_model("ease", {"reg": 2.0, "weight": "rating", "interactions": "threshold", "min_rating": 3})
    model.fit(_interactions(x), seed=0)
    xw = np.where(x >= 3, x, 0.0)
    np.testing.assert_allclose(model.B, ease_weights_ref(xw, 2.0), atol=1e-6)


def test_memory_refusal_says_estimate_and_how_to_raise():
    x = _random_ratings()
    need = memory_estimate_gb(12, "float64")
    assert need == pytest.approx(12 * 12 * 12 / 1e9)
    model = create_model("ease", {"max_memory_gb": need / 2})
    with pytest.raises(ConfigError) as err:
        model.fit(_interactions(x), seed=0)
    msg = str(err.value)
    assert "12 items" in msg and "max_memory_gb" in msg and "max_items=" in msg
    # the limit is what refuses: just above the estimate, the same fit goes through
    create_model("ease", {"max_memory_gb": need * 1.01}).fit(_interactions(x), seed=0)
    # float32 needs 4 bytes an entry (inverted and kept in place) instead of 8 + a 4-byte float32 copy
    assert memory_estimate_gb(1000, "float32") == pytest.approx(0.004)


def test_reg_zero_on_a_singular_gram_is_a_clear_error():
    x = np.zeros((4, 3), np.float32)
    x[:, 0] = x[:, 1] = 5  # items 0 and 1 have identical columns: X^T X is singular
    x[0, 2] = 4
    with pytest.raises(UsageError, match="positive definite"):
        create_model("ease", {"reg": 0.0}).fit(_interactions(x), seed=0)


def test_top_n_restriction_keeps_most_rated_items():
    x = _random_ratings(n_users=40, n_items=10, seed=3)
    data = _interactions(x)
    counts = (x > 0).sum(axis=0)
    order = np.lexsort((np.arange(10), -counts))
    model = create_model("ease", {"reg": 5.0, "max_items": 6}).fit(data, seed=0)
    kept = order[:6]
    np.testing.assert_array_equal(model.kept, np.sort(kept))
    assert model.fit_info["items_kept"] == 6
    # the weights are those of the restricted matrix
    sub = (x[:, np.sort(kept)] > 0).astype(np.float64)
    np.testing.assert_allclose(model.B, ease_weights_ref(sub, 5.0), atol=1e-6)
    # dropped items rank after every kept one, most-rated first, for every user
    s = model._score_users(np.arange(40))
    dropped = np.setdiff1d(np.arange(10), kept)
    assert (s[:, dropped].max(axis=1) < s[:, np.sort(kept)].min(axis=1)).all()
    tail_order = dropped[np.argsort(-s[0, dropped], kind="stable")]
    np.testing.assert_array_equal(tail_order, [i for i in order if i in dropped])


def test_fold_in_equals_a_trained_users_scores():
    x = _random_ratings(seed=4)
    model = create_model("ease", {"reg": 4.0}).fit(_interactions(x), seed=0)
    u = 7
    rated = np.flatnonzero(x[u])
    got = model.fold_in(500 + rated, x[u, rated])
    np.testing.assert_allclose(got, model._score_users(np.array([u]))[0], rtol=1e-5, atol=1e-6)
    assert isinstance(model, EASE)


def test_blocked_gram_and_in_place_inverse_past_one_block():
    import scipy.sparse as sp

    from recsys_cli.models.ease import BLOCK, gram_matrix

    rng = np.random.default_rng(5)
    n = BLOCK + 77  # two blocks, the second one partial
    x = sp.random(300, n, density=0.05, random_state=rng, format="csr", dtype=np.float64)
    x.data[:] = 1.0
    g = gram_matrix(x, "float64")
    np.testing.assert_allclose(g, (x.T @ x).toarray())
    b = ease_weights(g, 7.0)
    assert np.shares_memory(b, g)  # inverted and turned into weights in place: the memory estimate holds
    np.testing.assert_allclose(b, ease_weights_ref(x.toarray(), 7.0), atol=1e-9)
