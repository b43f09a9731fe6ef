"""BPR kernels: exact agreement with the sequential reference, negative sampling, learning planted clusters."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import scipy.sparse as sp

from recsys_cli.models._kernels import bpr as K
from recsys_cli.models._kernels.seen import maybe_seen, seen_hash

K_FACTORS = 8


def random_csr(seed: int = 0, n_users: int = 30, n_items: int = 25, density: float = 0.3):
    rng = np.random.default_rng(seed)
    m = sp.csr_matrix((rng.random((n_users, n_items)) < density).astype(np.float32))
    m.sort_indices()
    return m


def params(seed: int, n_users: int, n_items: int, k: int = K_FACTORS, scale: float = 0.1):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, scale, (n_users, k)).astype(np.float32),
            rng.normal(0, scale, (n_items, k)).astype(np.float32),
            rng.normal(0, scale, n_items).astype(np.float32))


def test_nnz_rows_gives_the_row_of_every_entry():
    m = random_csr()
    np.testing.assert_array_equal(K.nnz_rows(m.indptr), m.tocoo().row)
    assert K.nnz_rows(m.indptr).dtype == np.int32


def test_stream_twin_draws_uniformly_in_range():
    stream = K._StreamRef(7, 0)
    draws = np.array([stream.below(10) for _ in range(20_000)])
    counts = np.bincount(draws, minlength=10)
    assert draws.min() == 0 and draws.max() == 9
    assert counts.min() > 1800 and counts.max() < 2200


@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("popular", [False, True])
@pytest.mark.parametrize("k", [K_FACTORS, 7])  # 7: the dot product's tail loop
def test_single_thread_epoch_equals_sequential_reference_exactly(verify, popular, k):
    m = random_csr(seed=1)
    X1, Y1, b1 = params(2, *m.shape, k=k)
    X2, Y2, b2 = X1.copy(), Y1.copy(), b1.copy()
    args = (0.05, 0.01, 0.02, 600, 1234, verify, 1, popular)
    got = K.bpr_epoch(m.indptr, m.indices, K.nnz_rows(m.indptr), X1, Y1, b1, *args)
    want = K.bpr_epoch_ref(m.indptr, m.indices, K.nnz_rows(m.indptr), X2, Y2, b2, *args)
    assert got == want
    assert got[0] > 0 and (got[1] == 0) == verify  # without verification some j == i are skipped
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(Y1, Y2)
    np.testing.assert_array_equal(b1, b2)


def test_prebuilt_seen_filter_gives_the_same_epoch():
    m = random_csr(seed=12, density=0.85)  # dense rows: many re-drawn negatives
    X1, Y1, b1 = params(13, *m.shape)
    X2, Y2, b2 = X1.copy(), Y1.copy(), b1.copy()
    args = (0.05, 0.01, 0.01, 800, 3, True, 1)
    got = K.bpr_epoch(m.indptr, m.indices, K.nnz_rows(m.indptr), X1, Y1, b1, *args,
                      seen=K.seen_filter(m.indptr, m.indices))
    assert got == K.bpr_epoch_ref(m.indptr, m.indices, K.nnz_rows(m.indptr), X2, Y2, b2, *args)
    np.testing.assert_array_equal(X1, X2)


def test_epoch_is_reproducible_per_seed_and_changes_with_it():
    m = random_csr(seed=3)
    runs = []
    for seed in (5, 5, 6):
        X, Y, b = params(4, *m.shape)
        K.bpr_epoch(m.indptr, m.indices, K.nnz_rows(m.indptr), X, Y, b, 0.05, 0.01, 0.01, 500, seed, True, 1)
        runs.append(X)
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_verified_negatives_never_hit_the_users_own_items():
    # user 0 liked every item: every draw for it is a liked item, so its samples are all skipped
    dense = np.zeros((3, 12), np.float32)
    dense[0] = 1.0
    m = sp.csr_matrix(dense)
    X, Y, b = params(5, 3, 12)
    X0 = X.copy()
    correct, skipped = K.bpr_epoch(m.indptr, m.indices, K.nnz_rows(m.indptr), X, Y, b, 0.1, 0.0, 0.0, 200, 1, True, 1)
    assert (correct, skipped) == (0, 200)
    np.testing.assert_array_equal(X, X0)
    # without verification only j == i is skipped (about 1 in 12 draws)
    correct, skipped = K.bpr_epoch(m.indptr, m.indices, K.nnz_rows(m.indptr), X, Y, b, 0.1, 0.0, 0.0, 1200, 1, False, 1)
    assert 50 < skipped < 160


def test_parallel_epoch_runs_every_sample():
    m = random_csr(seed=6, n_users=60, n_items=40)
    X, Y, b = params(7, *m.shape)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        correct, skipped = K.bpr_epoch(m.indptr, m.indices, K.nnz_rows(m.indptr), X, Y, b, 0.05, 0.01, 0.01,
                                       3000, 9, False, 4)
    finally:
        numba.set_num_threads(old)
    # draws do not depend on the factors, so the sequential replay of the same 4 chunks skips the same samples
    X2, Y2, b2 = params(7, *m.shape)
    _, replay_skipped = K.bpr_epoch_ref(m.indptr, m.indices, K.nnz_rows(m.indptr), X2, Y2, b2, 0.05, 0.01, 0.01,
                                        3000, 9, False, 4)
    assert skipped == replay_skipped > 0 and 0 < correct <= 3000 - skipped
    assert np.all(np.isfinite(X)) and np.all(np.isfinite(Y))


def test_parallel_kernel_on_one_thread_replays_its_chunks_in_order():
    m = random_csr(seed=14)
    X1, Y1, b1 = params(15, *m.shape)
    X2, Y2, b2 = X1.copy(), Y1.copy(), b1.copy()
    args = (0.05, 0.01, 0.01, 900, 21, True, 3)  # n_threads=3: 12 chunks, each with its own streams
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        got = K.bpr_epoch(m.indptr, m.indices, K.nnz_rows(m.indptr), X1, Y1, b1, *args)
    finally:
        numba.set_num_threads(old)
    assert got == K.bpr_epoch_ref(m.indptr, m.indices, K.nnz_rows(m.indptr), X2, Y2, b2, *args)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(Y1, Y2)


def test_empty_input_does_nothing():
    m = sp.csr_matrix((4, 5), dtype=np.float32)
    X, Y, b = params(1, 4, 5)
    assert K.bpr_epoch(m.indptr, m.indices, K.nnz_rows(m.indptr), X, Y, b, 0.1, 0.0, 0.0, 10, 1, True, 1) == (0, 0)
    assert np.isnan(K.bpr_auc(m.indptr, m.indices, X, Y, b, 100, 1))


def test_sampled_auc_matches_reference_and_is_thread_independent():
    m = random_csr(seed=8)
    X, Y, b = params(9, *m.shape)
    got = K.bpr_auc(m.indptr, m.indices, X, Y, b, 700, 3)
    assert got == K.bpr_auc_ref(m.indptr, m.indices, X, Y, b, 700, 3)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert K.bpr_auc(m.indptr, m.indices, X, Y, b, 700, 3) == got
    finally:
        numba.set_num_threads(old)


def test_sampled_auc_on_known_scores():
    clusters = np.arange(12) % 3
    m = sp.csr_matrix((clusters[:, None] == np.arange(9)[None, :] % 3).astype(np.float32))  # 12 users x 9 items
    X = np.eye(3, dtype=np.float32)[clusters]
    Y = np.eye(3, dtype=np.float32)[np.arange(9) % 3]
    b = np.zeros(9, np.float32)
    assert K.bpr_auc(m.indptr, m.indices, X, Y, b, 400, 2) == 1.0
    assert K.bpr_auc(m.indptr, m.indices, -X, Y, b, 400, 2) == 0.0
    assert K.bpr_auc(m.indptr, m.indices, 0 * X, Y, b, 400, 2) == 0.5


def test_bpr_learns_planted_clusters():
    rng = np.random.default_rng(0)
    n_users, n_items, n_clusters = 120, 60, 4
    ucl, icl = np.arange(n_users) % n_clusters, np.arange(n_items) % n_clusters
    same = ucl[:, None] == icl[None, :]
    liked = same & (rng.random((n_users, n_items)) < 0.5)
    train = liked & (rng.random((n_users, n_items)) < 0.8)
    test = liked & ~train
    tr = sp.csr_matrix(train.astype(np.float32))
    X, Y, b = params(1, n_users, n_items, k=K_FACTORS, scale=0.01)
    nnz_user = K.nnz_rows(tr.indptr)
    auc_by_epoch = []
    for epoch in range(40):
        correct, skipped = K.bpr_epoch(tr.indptr, tr.indices, nnz_user, X, Y, b, 0.05, 0.005, 0.005, tr.nnz,
                                       epoch, True, 1)
        auc_by_epoch.append(correct / (tr.nnz - skipped))
    assert auc_by_epoch[0] < 0.7 and auc_by_epoch[-1] > 0.9
    # held-out liked items outrank the items of other clusters
    scores = X @ Y.T + b
    wins = [(scores[u, test[u]][:, None] > scores[u, ~same[u]][None, :]).mean()
            for u in range(n_users) if test[u].any()]
    assert np.mean(wins) > 0.95


def test_seen_filter_holds_every_pair_and_few_others():
    m = random_csr(seed=11, n_users=200, n_items=150, density=0.1)
    seen = K.seen_filter(m.indptr, m.indices)
    dense = m.toarray() > 0
    assert seen.dtype == np.uint32 and seen.size % 16 == 0
    maybe = np.array([[maybe_seen(seen, np.uint64(seen_hash(u, j))) for j in range(150)] for u in range(200)])
    assert maybe[dense].all()  # no false "no": a liked item is never taken as a negative
    assert maybe[~dense].mean() < 0.08
