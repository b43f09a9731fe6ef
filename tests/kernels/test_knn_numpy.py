"""The NumPy k-NN scorers (one-user recommend, no Numba) equal the Numba scorers in every mode."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_cli.models._kernels import knn_scores
from recsys_cli.models._kernels.knn_numpy import item_knn_scores_np, user_knn_scores_np

N_USERS, N_ITEMS, K_MAX = 30, 25, 12


def lists(n_rows: int, n_cols: int, seed: int):
    """Neighbour lists sorted by similarity (some negative), padded with -1, never the row itself."""
    rng = np.random.default_rng(seed)
    nbr = np.full((n_rows, K_MAX), -1, np.int32)
    sims = np.zeros((n_rows, K_MAX), np.float32)
    for x in range(n_rows):
        length = rng.integers(0, K_MAX + 1)
        cand = rng.permutation([c for c in range(n_cols) if c != x])[:length]
        s = np.sort(rng.uniform(-0.3, 1.0, length))[::-1]
        s[rng.random(length) < 0.2] = 0.5  # ties
        order = np.argsort(-s, kind="stable")
        nbr[x, :length], sims[x, :length] = cand[order], s[order]
    return nbr, sims


def ratings(seed: int):
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((N_USERS, N_ITEMS)) < 0.35, rng.integers(1, 6, (N_USERS, N_ITEMS)), 0)
    dense[2] = 0  # a user with no ratings
    m = sp.csr_matrix(dense.astype(np.float32))
    m.sort_indices()
    return m


def mode_arrays(seed: int, n_rows: int, n_cols: int):
    rng = np.random.default_rng(seed)
    return dict(row_means=rng.uniform(2, 4, n_rows).astype(np.float32),
                row_bias=rng.normal(0, 0.3, n_rows).astype(np.float32),
                col_bias=rng.normal(0, 0.3, n_cols).astype(np.float32))


@pytest.mark.parametrize("mode", ["basic", "means", "baseline"])
@pytest.mark.parametrize("aggregate", ["mean", "sum"])
@pytest.mark.parametrize("k", [1, 3, 40])
def test_item_based_numpy_equals_numba(mode, aggregate, k):
    m = ratings(1)
    nbr, sims = lists(N_ITEMS, N_ITEMS, 2)
    users = np.arange(N_USERS)
    kw = dict(mu=3.3, k=k, min_k=2, mode=mode, aggregate=aggregate, **mode_arrays(3, N_ITEMS, N_USERS))
    fast = knn_scores.item_knn_scores(users, nbr, sims, m.indptr, m.indices, m.data, **kw)
    plain = item_knn_scores_np(users, nbr, sims, m.indptr, m.indices, m.data, **kw)
    np.testing.assert_allclose(plain, fast, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["basic", "means", "baseline"])
@pytest.mark.parametrize("aggregate", ["mean", "sum"])
@pytest.mark.parametrize("k", [1, 3, 40])
def test_user_based_numpy_equals_numba(mode, aggregate, k):
    m = ratings(4)
    nbr, sims = lists(N_USERS, N_USERS, 5)
    users = np.arange(N_USERS)
    kw = dict(n_items=N_ITEMS, mu=3.1, k=k, min_k=2, mode=mode, aggregate=aggregate,
              **mode_arrays(6, N_USERS, N_ITEMS))
    fast = knn_scores.user_knn_scores(users, nbr, sims, m.indptr, m.indices, m.data, **kw)
    plain = user_knn_scores_np(users, nbr, sims, m.indptr, m.indices, m.data, **kw)
    np.testing.assert_allclose(plain, fast, rtol=1e-6, atol=1e-6)
