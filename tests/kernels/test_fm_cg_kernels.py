"""`sampler=cg`: the perturb-and-solve sweep against its NumPy twin, the exact draw it reaches with enough
conjugate-gradient steps, the distribution of its draws, and its normals against their pure-Python twin."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_cli.models._kernels import fm as K
from recsys_cli.models._kernels import fm_cg as C
from recsys_cli.models._kernels.splitmix import normal, normal_py, seed64, stream
from recsys_cli.models.fm_design import build_design

from .test_fm_kernels import GROUPS, K_FACTORS, assert_caches_current, params, tiny_data

GROUP_SETS = {"five-groups": GROUPS, "user-item": ("user", "item"), "one-block": ("user", "implicit"),
              "no-one-hot": ("implicit", "genres"), "item-genres": ("item", "genres")}


def hyper(G: int, seed: int = 5):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.1, G), rng.uniform(0.5, 2, G), rng.normal(0, 0.1, (G, K_FACTORS)),
            rng.uniform(0.5, 2, (G, K_FACTORS)))


def kernel_sweep(d, data, w, V, hyp, z, seeds, steps, flavor="serial", buf_rows=C.BUF_ROWS, alpha=1.7):
    """One fm_sweep_cg from (w0 = 3, w, V); returns (w0, w, V, e, sse, S, Q, lin)."""
    w0, w, V = np.array([3.0]), w.copy(), V.copy()
    lin, S, Q = np.zeros(d.n_ent), np.zeros((K_FACTORS, d.n_ent)), np.zeros((K_FACTORS, d.n_ent))
    K.entity_caches(d.ent_ptr, d.ent_feat, d.ent_val, w, V, lin, S, Q)
    ratings = data.ratings.astype(np.float64)
    e = ratings - K.predict_rows(d.row_ent, w0[0], lin, S, Q)
    sse = C.fm_sweep_cg(flavor, d.row_ent, e, d.blk_ent, d.blk_feat, d.blk_joint, d.rows_ptr, d.rows, d.feat_ptr,
                        d.feat_ent, d.feat_val, d.feat_group, d.feat_obs, w0, w, V, lin, S, Q, alpha, *hyp, True, z,
                        seeds, steps, buf_rows=buf_rows)
    return w0, w, V, e, sse, S, Q, lin


def twin_sweep(d, data, w, V, hyp, z, seeds, steps, alpha=1.7, buf_rows=C.BUF_ROWS):
    X = K.design_matrix(d.row_ent, d.ent_ptr, d.ent_feat, d.ent_val, d.n_feat)
    w0, w, V = np.array([3.0]), w.copy(), V.copy()
    e = C.fm_sweep_cg_ref(d, X, data.ratings.astype(np.float64), w0, w, V, alpha, *hyp, True, z, seeds, steps,
                          buf_rows)
    return w0, w, V, e, X


def setup(groups, seed=1):
    data = tiny_data()
    d = build_design(data, groups)
    w, V = params(d, seed)
    rng = np.random.default_rng(7)
    z = C.sweep_normals(rng, d.blk_feat, d.blk_joint, d.n_feat, K_FACTORS)
    seeds = rng.integers(0, 2**64, C.N_SEEDS, dtype=np.uint64)
    return data, d, w, V, hyper(len(groups)), z, seeds


def test_ziggurat_normals_match_their_python_twin_and_are_standard_normal():
    seed = seed64(2**63 + 99)
    np.testing.assert_array_equal(C.normals(seed, 12, 3000), C.normals_ref(int(seed), 12, 3000))
    state, ref = int(stream(seed, 3)), []
    for _ in range(5):
        state, v = normal_py(state)
        ref.append(v)
    st, got = stream(seed, 3), []
    for _ in range(5):
        st, v = normal(np.uint64(st))  # (the state comes back to Python as an int)
        got.append(v)
    assert got == ref
    x = C.normals(seed, 0, 400_000)
    assert abs(x.mean()) < 0.01 and abs(x.std() - 1) < 0.01  # standard errors 0.0016 and 0.0011
    assert abs((x ** 4).mean() - 3) < 0.05  # Gaussian kurtosis (standard error ~0.015)
    # the tails (beyond the ziggurat's base layer at 3.654) have the normal's mass: 2.58e-4
    assert abs((np.abs(x) > 3.6541528853610088).mean() - 2.58e-4) < 1e-4
    assert not np.array_equal(C.normals(seed, 0, 10), C.normals(seed, 1, 10))  # streams differ


@pytest.mark.parametrize("steps", [0, 1, 3])
@pytest.mark.parametrize("flavor,buf_rows", [("serial", C.BUF_ROWS), ("parallel", C.BUF_ROWS), ("serial", 5)],
                         ids=["serial", "parallel", "some-solved-exactly"])
@pytest.mark.parametrize("groups", list(GROUP_SETS.values()), ids=list(GROUP_SETS))
def test_sweep_matches_numpy_twin(groups, flavor, buf_rows, steps):
    data, d, w, V, hyp, z, seeds = setup(groups)
    w0a, wa, Va, e, sse, S, Q, lin = kernel_sweep(d, data, w, V, hyp, z, seeds, steps, flavor, buf_rows)
    w0b, wb, Vb, e_ref, X = twin_sweep(d, data, w, V, hyp, z, seeds, steps, buf_rows=buf_rows)
    # the kernel's CG works on float32 copies of the other blocks' vectors
    np.testing.assert_allclose(w0a, w0b, rtol=1e-12)
    np.testing.assert_allclose(wa, wb, atol=5e-6)
    np.testing.assert_allclose(Va, Vb, atol=5e-6)
    np.testing.assert_allclose(e, e_ref, atol=5e-6)
    assert sse == pytest.approx(float(e_ref @ e_ref), rel=1e-6)
    # the caches it kept are the exact ones for the parameters it drew, and so are the residuals up to the
    # float32 copies of the other blocks' vectors they were updated with
    assert_caches_current(d, wa, Va, lin, S, Q, atol=1e-12)
    s = X @ Va.T
    pred = w0a[0] + X @ wa + 0.5 * ((s * s).sum(1) - (X * X) @ (Va * Va).sum(0))
    np.testing.assert_allclose(e, data.ratings - pred, atol=1e-7)
    moved = np.abs(Va - V).max(axis=0) + np.abs(wa - w)
    one_hot = np.zeros(d.n_feat, bool)
    for b in range(len(d.blk_names)):
        one_hot[d.blk_feat[b]:d.blk_feat[b] + d.blk_joint[b]] = True
    counts = d.rows_ptr[1:] - d.rows_ptr[:-1]
    if steps:
        assert moved[d.feat_obs].min() > 1e-3  # every observed feature moved
    elif one_hot.any():  # no CG step: the one-hots stay where they were (but those solved exactly)
        ent = np.concatenate([np.arange(d.blk_ent[b], d.blk_ent[b] + d.blk_joint[b]) for b in range(len(d.blk_names))])
        small = counts[ent] <= buf_rows
        assert moved[one_hot][small & d.feat_obs[one_hot]].max() == 0.0
        assert buf_rows > 5 or moved[one_hot][~small].min() > 1e-3
    for j in np.flatnonzero(~d.feat_obs):  # unobserved: the group's prior mean
        assert wa[j] == hyp[0][d.feat_group[j]] and (Va[:, j] == hyp[2][d.feat_group[j]]).all()


@pytest.mark.parametrize("groups", [GROUPS, ("user", "item")], ids=["five-groups", "user-item"])
def test_enough_cg_steps_give_the_exact_draw_for_the_same_noise(groups):
    """CG on the perturbed system converges to its solution, which the twin gets by np.linalg.solve."""
    data, d, w, V, hyp, z, seeds = setup(groups)
    _, wa, Va, e, *_ = kernel_sweep(d, data, w, V, hyp, z, seeds, 4 * (K_FACTORS + 1))
    _, wb, Vb, e_ref, _ = twin_sweep(d, data, w, V, hyp, z, seeds, None)
    np.testing.assert_allclose(wa, wb, atol=5e-6)
    np.testing.assert_allclose(Va, Vb, atol=5e-6)
    np.testing.assert_allclose(e, e_ref, atol=5e-6)
    # and with a single step it is a different (approximate) move
    _, w1, V1, *_ = kernel_sweep(d, data, w, V, hyp, z, seeds, 1)
    assert np.abs(V1 - Vb).max() > 1e-3


def test_perturb_and_solve_draws_have_the_conditional_posterior():
    """Many sweeps from one state: a user's (w_u, v_u) draws have the mean and covariance of its conditional."""
    data = tiny_data()
    d = build_design(data, ("user", "item"))
    w, V = params(d, 3)
    G = 2
    mu_w, lam_w, mu_v, lam_v = hyper(G)
    alpha = 1.7
    lin, S, Q = np.zeros(d.n_ent), np.zeros((K_FACTORS, d.n_ent)), np.zeros((K_FACTORS, d.n_ent))
    K.entity_caches(d.ent_ptr, d.ent_feat, d.ent_val, w, V, lin, S, Q)
    ratings = data.ratings.astype(np.float64)
    e0 = ratings - K.predict_rows(d.row_ent, 3.0, lin, S, Q)
    u = 0  # user 0 (one-hot feature 0); its conditional given the item vectors and everything else
    rows = d.rows[d.rows_ptr[u]:d.rows_ptr[u + 1]]
    items = d.row_ent[1, rows]
    H = np.hstack([np.ones((len(rows), 1)), S[:, items].T])  # the user has no other feature: a = 0
    lam = np.concatenate([[lam_w[0]], lam_v[0]])
    mu = np.concatenate([[mu_w[0]], mu_v[0]])
    theta = np.concatenate([[w[0]], V[:, 0]])
    P = alpha * H.T @ H + np.diag(lam)
    mean = np.linalg.solve(P, alpha * H.T @ (e0[rows] + H @ theta) + lam * mu)
    cov = np.linalg.inv(P)
    rng = np.random.default_rng(11)
    draws = []
    for _ in range(4000):
        w0, w1, V1 = np.array([3.0]), w.copy(), V.copy()
        lin1, S1, Q1, e = lin.copy(), S.copy(), Q.copy(), e0.copy()
        C.fm_sweep_cg("serial", d.row_ent, e, d.blk_ent, d.blk_feat, d.blk_joint, d.rows_ptr, d.rows, d.feat_ptr,
                      d.feat_ent, d.feat_val, d.feat_group, d.feat_obs, w0, w1, V1, lin1, S1, Q1, alpha, mu_w, lam_w,
                      mu_v, lam_v, False, np.zeros(1 + d.n_feat * (K_FACTORS + 1)),
                      rng.integers(0, 2**64, C.N_SEEDS, dtype=np.uint64), K_FACTORS + 1)
        draws.append(np.concatenate([[w1[0]], V1[:, 0]]))
    draws = np.array(draws)
    se = np.sqrt(np.diag(cov) / len(draws))
    assert (np.abs(draws.mean(axis=0) - mean) < 4 * se).all()
    # covariance: relative error of each variance ~ sqrt(2 / 4000) = 2.2%
    np.testing.assert_allclose(np.diag(np.cov(draws.T)), np.diag(cov), rtol=0.1)
    corr_got, corr_want = np.corrcoef(draws.T), cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    np.testing.assert_allclose(corr_got, corr_want, atol=0.07)


def test_parallel_sweep_is_the_same_for_any_thread_count():
    """Per-entity streams and entities that share no row: one thread or all gives the same bits."""
    import numba

    data, d, w, V, hyp, z, seeds = setup(GROUPS, 4)
    results = []
    for threads in (1, numba.config.NUMBA_NUM_THREADS):
        previous = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            results.append(kernel_sweep(d, data, w, V, hyp, z, seeds, 3, "parallel"))
        finally:
            numba.set_num_threads(previous)
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)
