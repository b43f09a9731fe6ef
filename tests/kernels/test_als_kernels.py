"""ALS / iALS kernels: NumPy twins, exact ridge solutions, CG convergence, planted structure, fold-in."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import scipy.sparse as sp

from recsys_cli.models._kernels import als as K
from recsys_cli.models._kernels import ials as KI

N_USERS, N_ITEMS, RANK = 25, 18, 6


def random_csr(seed: int = 0, n_rows: int = N_USERS, n_cols: int = N_ITEMS, density: float = 0.35):
    """Random CSR with integer 'ratings' 1..5, an empty row 3 and a single-entry row 4 (scipy dtypes)."""
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((n_rows, n_cols)) < density, rng.integers(1, 6, (n_rows, n_cols)), 0)
    dense[3] = 0
    dense[4] = 0
    dense[4, 7] = 4
    m = sp.csr_matrix(dense.astype(np.float32))
    m.sort_indices()
    return m


def factors(seed: int, n: int, k: int = RANK, scale: float = 0.3) -> np.ndarray:
    return (np.random.default_rng(seed).normal(0, scale, (n, k))).astype(np.float32)


def arrays(m):
    return m.indptr, m.indices, m.data


# ---------------------------------------------------------------- gram


def test_gram_matches_reference_and_is_symmetric():
    Y = factors(1, 40)
    G = KI.gram(Y)
    assert G.dtype == np.float32 and G.flags.c_contiguous
    np.testing.assert_allclose(G, KI.gram_ref(Y), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(G, G.T, rtol=1e-6)


# ---------------------------------------------------------------- explicit ALS


@pytest.mark.parametrize("scale", [False, True])
def test_explicit_half_step_matches_reference(scale):
    m = random_csr()
    Y, by = factors(2, N_ITEMS), np.random.default_rng(3).normal(0, 0.2, N_ITEMS).astype(np.float32)
    X1, X2 = factors(4, N_USERS), factors(4, N_USERS)
    b1, b2 = np.zeros(N_USERS, np.float32), np.zeros(N_USERS, np.float32)
    sse1 = K.als_explicit_half_step(*arrays(m), X1, Y, b1, by, 3.4, 0.1, 0.05, scale)
    sse2 = K.als_explicit_half_step_ref(*arrays(m), X2, Y, b2, by, 3.4, 0.1, 0.05, scale)
    np.testing.assert_allclose(X1, X2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b1, b2, rtol=1e-4, atol=1e-5)
    assert sse1 == pytest.approx(sse2, rel=1e-5)
    assert np.all(X1[3] == 0) and b1[3] == 0  # no ratings: the ridge solution is zero


def test_explicit_half_step_is_the_ridge_least_squares_solution_per_row():
    m = random_csr(seed=5)
    mu, reg, reg_bias = 3.0, 0.3, 0.07
    Y, by = factors(6, N_ITEMS), np.random.default_rng(7).normal(0, 0.3, N_ITEMS).astype(np.float32)
    X, bx = np.zeros((N_USERS, RANK), np.float32), np.zeros(N_USERS, np.float32)
    sse = K.als_explicit_half_step(*arrays(m), X, Y, bx, by, mu, reg, reg_bias, True)
    expected_sse = 0.0
    for u in range(N_USERS):
        cols, r = m.indices[m.indptr[u]:m.indptr[u + 1]], m.data[m.indptr[u]:m.indptr[u + 1]]
        n = len(cols)
        # ridge as an augmented least-squares problem: [Z; sqrt(D)] w ~ [t; 0]
        Z = np.hstack([np.ones((n, 1)), Y[cols].astype(np.float64)])
        D = np.sqrt(np.array([reg_bias * n] + [reg * n] * RANK))
        w = np.linalg.lstsq(np.vstack([Z, np.diag(D)]), np.concatenate([r - mu - by[cols], np.zeros(RANK + 1)]),
                            rcond=None)[0]
        np.testing.assert_allclose(bx[u], w[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(X[u], w[1:], rtol=1e-4, atol=1e-5)
        e = r - (mu + by[cols] + bx[u] + Y[cols].astype(np.float64) @ X[u])
        expected_sse += float(e @ e)
    assert sse == pytest.approx(expected_sse, rel=1e-5)


def test_explicit_singular_row_gets_zeros_instead_of_garbage():
    m = random_csr()
    Y, by = factors(2, N_ITEMS), np.zeros(N_ITEMS, np.float32)
    X, bx = factors(1, N_USERS), np.ones(N_USERS, np.float32)
    K.als_explicit_half_step(*arrays(m), X, Y, bx, by, 3.0, 0.0, 0.0, False)
    assert np.all(X[4] == 0) and bx[4] == 0  # one rating, 7 unknowns, no regularisation
    full = int(np.argmax(np.diff(m.indptr)))
    assert np.diff(m.indptr)[full] > RANK + 1
    assert np.all(np.isfinite(X)) and np.abs(X[full]).sum() > 0  # well-determined rows are still solved


@pytest.mark.parametrize("scale", [False, True])
@pytest.mark.parametrize("steps", [1, 3])
def test_explicit_cg_half_step_matches_reference(scale, steps):
    m = random_csr(seed=11)
    Y, by = factors(2, N_ITEMS), np.random.default_rng(3).normal(0, 0.2, N_ITEMS).astype(np.float32)
    X1, X2 = factors(4, N_USERS), factors(4, N_USERS)
    b1 = np.random.default_rng(6).normal(0, 0.1, N_USERS).astype(np.float32)
    b2 = b1.copy()
    sse1 = K.als_explicit_half_step_cg(*arrays(m), X1, Y, b1, by, 3.4, 0.1, 0.05, scale, steps)
    sse2 = K.als_explicit_half_step_cg_ref(*arrays(m), X2, Y, b2, by, 3.4, 0.1, 0.05, scale, steps)
    np.testing.assert_allclose(X1, X2, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(b1, b2, rtol=1e-3, atol=1e-4)
    assert sse1 == pytest.approx(sse2, rel=1e-4)
    assert K.als_explicit_half_step_cg(*arrays(m), X1, Y, b1, by, 3.4, 0.1, 0.05, scale, steps, want_sse=False) == 0.0


def test_explicit_cg_with_enough_steps_reaches_the_exact_solution():
    m = random_csr(seed=12)
    Y, by = factors(2, N_ITEMS), np.zeros(N_ITEMS, np.float32)
    X_cg, X_exact = np.zeros((N_USERS, RANK), np.float32), np.zeros((N_USERS, RANK), np.float32)
    b_cg, b_exact = np.zeros(N_USERS, np.float32), np.zeros(N_USERS, np.float32)
    K.als_explicit_half_step(*arrays(m), X_exact, Y, b_exact, by, 3.0, 0.2, 0.1, True)
    for _ in range(4):  # CG on a (k+1)-unknown system is exact after k+1 steps; repeat for float32 round-off
        K.als_explicit_half_step_cg(*arrays(m), X_cg, Y, b_cg, by, 3.0, 0.2, 0.1, True, RANK + 1)
    np.testing.assert_allclose(X_cg, X_exact, atol=2e-4)
    np.testing.assert_allclose(b_cg, b_exact, atol=2e-4)


@pytest.mark.parametrize("solver", ["exact", "cg"])
def test_explicit_als_objective_never_increases(solver):
    m = random_csr(seed=8, density=0.5)
    mt = m.T.tocsr()
    mt.sort_indices()
    mu, reg, reg_bias = float(m.data.mean()), 0.2, 0.1
    X, Y = factors(9, N_USERS, scale=0.1), factors(10, N_ITEMS, scale=0.1)
    bx, by = np.zeros(N_USERS, np.float32), np.zeros(N_ITEMS, np.float32)

    def half(csr, A, B, ba, bb):  # exact solve, or 2 CG steps from the warm start: neither may raise a convex loss
        if solver == "exact":
            return K.als_explicit_half_step(*arrays(csr), A, B, ba, bb, mu, reg, reg_bias, False)
        return K.als_explicit_half_step_cg(*arrays(csr), A, B, ba, bb, mu, reg, reg_bias, False, 2)

    def objective(sse):
        return sse + reg * (np.square(X).sum() + np.square(Y).sum()) + reg_bias * (np.square(bx).sum() + np.square(by).sum())

    previous = np.inf
    for _ in range(8):
        for step in (lambda: half(m, X, Y, bx, by), lambda: half(mt, Y, X, by, bx)):
            value = objective(step())
            assert value <= previous * (1 + 1e-5)
            previous = value
    rmse = np.sqrt(half(mt, Y, X, by, bx) / m.nnz)
    assert rmse < 0.6 * m.data.std()  # it fits far better than the global mean


def test_als_fold_in_equals_the_half_step_row_and_reference():
    m = random_csr(seed=11)
    Y, by = factors(12, N_ITEMS), np.random.default_rng(13).normal(0, 0.2, N_ITEMS).astype(np.float32)
    X, bx = np.zeros((N_USERS, RANK), np.float32), np.zeros(N_USERS, np.float32)
    K.als_explicit_half_step(*arrays(m), X, Y, bx, by, 3.5, 0.15, 0.05, True)
    u = 0
    cols, r = m.indices[m.indptr[u]:m.indptr[u + 1]], m.data[m.indptr[u]:m.indptr[u + 1]]
    b, x = K.als_fold_in(cols, r, Y, by, 3.5, 0.15, 0.05, scale_reg_by_count=True)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, X[u], rtol=1e-6, atol=1e-7)
    assert b == pytest.approx(float(bx[u]), rel=1e-6)
    b_ref, x_ref = K.als_fold_in_ref(cols, r, Y, by, 3.5, 0.15, 0.05, scale_reg_by_count=True)
    np.testing.assert_allclose(x, x_ref, rtol=1e-4, atol=1e-5)
    assert b == pytest.approx(b_ref, rel=1e-4)


# ---------------------------------------------------------------- implicit ALS


def ials_setup(seed: int = 0):
    m = random_csr(seed=seed)
    conf = (2.0 * m.data).astype(np.float32)  # alpha * r
    return m.indptr, m.indices, conf, factors(seed + 20, N_USERS, scale=0.1), factors(seed + 21, N_ITEMS)


def row_objective(indptr, indices, conf, X, Y, reg):
    """Per-row quadratic 0.5 x^T A x - b^T x that the half step minimises (float64)."""
    G = Y.astype(np.float64).T @ Y + reg * np.eye(Y.shape[1])
    out = []
    for u in range(len(indptr) - 1):
        Yu, c = Y[indices[indptr[u]:indptr[u + 1]]].astype(np.float64), conf[indptr[u]:indptr[u + 1]]
        A, b, x = G + (Yu.T * c) @ Yu, Yu.T @ (1.0 + c), X[u].astype(np.float64)
        out.append(0.5 * x @ A @ x - b @ x)
    return np.array(out)


@pytest.mark.parametrize("steps", [1, 3])
def test_cg_half_step_matches_reference(steps):
    indptr, indices, conf, X, Y = ials_setup()
    X2 = X.copy()
    KI.ials_half_step_cg(indptr, indices, conf, X, Y, KI.gram(Y), 0.1, steps)
    KI.ials_half_step_cg_ref(indptr, indices, conf, X2, Y, KI.gram(Y), 0.1, steps)
    np.testing.assert_allclose(X, X2, rtol=1e-3, atol=1e-5)


def test_cholesky_half_step_matches_reference_and_many_cg_steps_converge_to_it():
    indptr, indices, conf, X0, Y = ials_setup(seed=1)
    Xc, Xr, Xg = X0.copy(), X0.copy(), X0.copy()
    KI.ials_half_step_cholesky(indptr, indices, conf, Xc, Y, KI.gram(Y), 0.1)
    KI.ials_half_step_cholesky_ref(indptr, indices, conf, Xr, Y, KI.gram(Y), 0.1)
    np.testing.assert_allclose(Xc, Xr, rtol=1e-4, atol=1e-5)
    KI.ials_half_step_cg(indptr, indices, conf, Xg, Y, KI.gram(Y), 0.1, 4 * RANK)
    np.testing.assert_allclose(Xg, Xc, rtol=1e-3, atol=1e-4)
    assert np.abs(Xc - X0).max() > 0.1  # the solve really moved away from the start


def test_one_cg_step_from_a_warm_start_lowers_every_row_objective():
    indptr, indices, conf, X, Y = ials_setup(seed=2)
    before = row_objective(indptr, indices, conf, X, Y, 0.1)
    KI.ials_half_step_cg(indptr, indices, conf, X, Y, KI.gram(Y), 0.1, 1)
    after = row_objective(indptr, indices, conf, X, Y, 0.1)
    assert np.all(after < before)


def test_cg_does_not_depend_on_thread_count_and_accepts_int64_indptr():
    indptr, indices, conf, X, Y = ials_setup(seed=3)
    results = []
    old = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            Xt = X.copy()
            KI.ials_half_step_cg(indptr.astype(np.int64), indices, conf, Xt, Y, KI.gram(Y), 0.1, 3)
            results.append(Xt)
    finally:
        numba.set_num_threads(old)
    np.testing.assert_array_equal(results[0], results[1])


def test_ials_fold_in_equals_the_exact_solve_for_that_user():
    indptr, indices, conf, X, Y = ials_setup(seed=5)
    KI.ials_half_step_cholesky(indptr, indices, conf, X, Y, KI.gram(Y), 0.1)
    for u in (0, 3, 4):  # a typical row, an empty row, a one-item row
        sl = slice(indptr[u], indptr[u + 1])
        x = KI.ials_fold_in(indices[sl], conf[sl], Y, KI.gram(Y), 0.1)
        assert x.dtype == np.float32
        np.testing.assert_allclose(x, X[u], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(x, KI.ials_fold_in_ref(indices[sl], conf[sl], Y, KI.gram(Y), 0.1), rtol=1e-4, atol=1e-6)
    assert np.all(X[3] == 0)


def test_weighted_lambda_scales_reg_by_each_rows_entry_count():
    """scale_reg (Spark MLlib's ALS-WR objective): row u is solved with reg * n_u, in both solvers."""
    indptr, indices, conf, X0, Y = ials_setup(seed=6)
    counts = np.diff(indptr)
    assert len(set(counts.tolist())) > 2  # rows of different lengths, so the scaling shows
    Xc, Xr, Xg, Xcg, Xcgr = X0.copy(), X0.copy(), X0.copy(), X0.copy(), X0.copy()
    KI.ials_half_step_cholesky(indptr, indices, conf, Xc, Y, KI.gram(Y), 0.05, scale_reg=True)
    KI.ials_half_step_cholesky_ref(indptr, indices, conf, Xr, Y, KI.gram(Y), 0.05, scale_reg=True)
    np.testing.assert_allclose(Xc, Xr, rtol=1e-4, atol=1e-5)
    for u in np.flatnonzero(counts)[:5]:  # each row equals the constant-reg solve with reg = 0.05 * n_u
        sl = slice(indptr[u], indptr[u + 1])
        want = KI.ials_fold_in_ref(indices[sl], conf[sl], Y, KI.gram(Y), 0.05 * counts[u])
        np.testing.assert_allclose(Xc[u], want, rtol=1e-4, atol=1e-6)
    unscaled = X0.copy()
    KI.ials_half_step_cholesky(indptr, indices, conf, unscaled, Y, KI.gram(Y), 0.05)
    assert np.abs(unscaled - Xc).max() > 1e-2
    KI.ials_half_step_cg(indptr, indices, conf, Xcg, Y, KI.gram(Y), 0.05, 2, scale_reg=True)
    KI.ials_half_step_cg_ref(indptr, indices, conf, Xcgr, Y, KI.gram(Y), 0.05, 2, scale_reg=True)
    np.testing.assert_allclose(Xcg, Xcgr, rtol=1e-3, atol=1e-5)
    KI.ials_half_step_cg(indptr, indices, conf, Xg, Y, KI.gram(Y), 0.05, 4 * RANK, scale_reg=True)
    np.testing.assert_allclose(Xg, Xc, rtol=1e-3, atol=1e-4)


def test_wrong_factor_dtype_is_refused():
    indptr, indices, conf, X, Y = ials_setup()
    with pytest.raises(ValueError, match="float32"):
        KI.ials_half_step_cg(indptr, indices, conf, X.astype(np.float64), Y, KI.gram(Y), 0.1, 3)


@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_ials_ranks_held_out_in_cluster_items_above_other_clusters(solver):
    rng = np.random.default_rng(42)
    n_users, n_items, n_clusters = 80, 48, 4
    ucl, icl = np.arange(n_users) % n_clusters, np.arange(n_items) % n_clusters
    same = ucl[:, None] == icl[None, :]
    observed = same & (rng.random((n_users, n_items)) < 0.6)
    held_out = same & ~observed
    m = sp.csr_matrix(observed.astype(np.float32) * 4.0)
    m.sort_indices()
    mt = m.T.tocsr()
    mt.sort_indices()
    X, Y = factors(1, n_users, k=8, scale=0.01), factors(2, n_items, k=8, scale=0.01)
    for _ in range(8):
        for (ip, ix, c), A, B in (((m.indptr, m.indices, m.data), X, Y), ((mt.indptr, mt.indices, mt.data), Y, X)):
            if solver == "cg":
                KI.ials_half_step_cg(ip, ix, c, A, B, KI.gram(B), 0.1, 3)
            else:
                KI.ials_half_step_cholesky(ip, ix, c, A, B, KI.gram(B), 0.1)
    scores = X @ Y.T
    wins = [(scores[u, held_out[u]][:, None] > scores[u, ~same[u]][None, :]).mean()
            for u in range(n_users) if held_out[u].any()]
    assert np.mean(wins) > 0.97
