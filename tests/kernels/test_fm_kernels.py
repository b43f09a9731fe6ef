"""FM kernels: block caches and sweeps against NumPy twins that work on the dense design matrix."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_cli.data.dataset import Interactions
from recsys_cli.models._kernels import fm as K
from recsys_cli.models.fm_design import build_design

K_FACTORS = 3


def tiny_data(seed: int = 0) -> Interactions:
    """12 users x 9 items, ~40% rated; item 8 has no ratings (an unobserved feature); 3 genres."""
    rng = np.random.default_rng(seed)
    mask = rng.random((12, 9)) < 0.4
    mask[:, 8] = False
    mask[0, :3] = True  # every user and items 0..7 have ratings
    mask[np.arange(12), np.arange(12) % 8] = True
    u, i = np.nonzero(mask)
    genres = (rng.random((9, 3)) < 0.5).astype(np.float32)
    genres[:, 0] = 1
    return Interactions(users=u.astype(np.int32), items=i.astype(np.int32),
                        ratings=rng.integers(1, 6, len(u)).astype(np.float32),
                        user_ids=np.arange(12, dtype=np.int64), item_ids=np.arange(9, dtype=np.int64),
                        rating_scale=(1.0, 5.0), item_genres=genres)


GROUPS = ("user", "implicit", "item", "implicit_item", "genres")


def params(d, seed: int = 1):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.3, d.n_feat), rng.normal(0, 0.3, (K_FACTORS, d.n_feat))


def joint_features(d) -> np.ndarray:
    """Which features the sweep draws a k-vector at a time (each block's one-hot)."""
    out = np.zeros(d.n_feat, bool)
    for b in range(len(d.blk_names)):
        out[d.blk_feat[b]:d.blk_feat[b] + d.blk_joint[b]] = True
    return out


def naive_fm(X, w0, w, V):
    """The FM equation with the explicit double sum over feature pairs (Rendle 2010, eq. 1)."""
    out = np.full(X.shape[0], w0)
    for r in range(X.shape[0]):
        x = X[r]
        out[r] += w @ x
        for j in range(len(x)):
            for m in range(j + 1, len(x)):
                out[r] += (V[:, j] @ V[:, m]) * x[j] * x[m]
    return out


def test_design_rows_are_the_feature_groups():
    data = tiny_data()
    d = build_design(data, GROUPS)
    X = K.design_matrix(d.row_ent, d.ent_ptr, d.ent_feat, d.ent_val, d.n_feat)
    nu, ni = 12, 9
    r = 5
    u, i = data.users[r], data.items[r]
    n_u = (data.users == u).sum()
    assert X[r, u] == 1.0 and X[r, :nu].sum() == 1.0  # user one-hot
    rated = data.items[data.users == u]
    np.testing.assert_allclose(X[r, nu + rated], 1 / np.sqrt(n_u))  # implicit: N(u) / sqrt|N(u)|
    assert X[r, nu:nu + ni].sum() == pytest.approx(n_u / np.sqrt(n_u))
    item0 = nu + ni
    assert X[r, item0 + i] == 1.0  # item one-hot
    raters = data.users[data.items == i]
    np.testing.assert_allclose(X[r, item0 + ni + raters], 1 / np.sqrt(len(raters)))
    g = np.flatnonzero(data.item_genres[i])
    np.testing.assert_allclose(X[r, item0 + ni + nu + g], 1 / np.sqrt(len(g)))
    # item 8 has no ratings: neither its one-hot nor its implicit feature touches a row
    assert np.flatnonzero(~d.feat_obs).tolist() == [nu + 8, item0 + 8]


def assert_caches_current(d, w, V, lin, S, Q, atol):
    """lin, S and Q are the entity caches of (w, V): what `entity_caches_ref` computes from scratch."""
    lin2, S2, Q2 = np.zeros_like(lin), np.zeros_like(S), np.zeros_like(Q)
    K.entity_caches_ref(d.ent_ptr, d.ent_feat, d.ent_val, w, V, lin2, S2, Q2)
    np.testing.assert_allclose(S, S2, atol=atol)
    np.testing.assert_allclose(Q, Q2, atol=atol)
    np.testing.assert_allclose(lin, lin2, atol=atol)


def test_caches_and_row_predictions_match_the_fm_equation():
    d = build_design(tiny_data(), GROUPS)
    w, V = params(d)
    lin, S, Q = np.zeros(d.n_ent), np.zeros((K_FACTORS, d.n_ent)), np.zeros((K_FACTORS, d.n_ent))
    K.entity_caches(d.ent_ptr, d.ent_feat, d.ent_val, w, V, lin, S, Q)
    assert_caches_current(d, w, V, lin, S, Q, atol=1e-6)
    y = K.predict_rows(d.row_ent, 3.1, lin, S, Q)
    np.testing.assert_allclose(y, K.predict_rows_ref(d.row_ent, 3.1, lin, S, Q), atol=1e-9)
    X = K.design_matrix(d.row_ent, d.ent_ptr, d.ent_feat, d.ent_val, d.n_feat)
    np.testing.assert_allclose(y, naive_fm(X, 3.1, w, V), atol=1e-5)


@pytest.mark.parametrize("mode", [K.MODE_SAMPLE, K.MODE_MEAN])
@pytest.mark.parametrize("kernel", [K.fm_sweep_serial, K.fm_sweep_parallel])
@pytest.mark.parametrize("groups", [GROUPS, ("user", "implicit")], ids=["two-blocks", "one-block"])
def test_sweep_matches_dense_twin(mode, kernel, groups):
    data = tiny_data()
    d = build_design(data, groups)
    assert len(d.blk_names) == (2 if len(groups) == 5 else 1)
    rng = np.random.default_rng(5)
    w, V = params(d)
    G = len(groups)
    mu_w, lam_w = rng.normal(0, 0.1, G), rng.uniform(0.5, 2, G)
    mu_v, lam_v = rng.normal(0, 0.1, (G, K_FACTORS)), rng.uniform(0.5, 2, (G, K_FACTORS))
    z = rng.standard_normal(1 + d.n_feat * (K_FACTORS + 1))
    alpha = 1.7
    ratings = data.ratings.astype(np.float64)
    # kernel
    w0a, wa, Va = np.array([3.0]), w.copy(), V.copy()
    lin, S, Q = np.zeros(d.n_ent), np.zeros((K_FACTORS, d.n_ent)), np.zeros((K_FACTORS, d.n_ent))
    K.entity_caches(d.ent_ptr, d.ent_feat, d.ent_val, wa, Va, lin, S, Q)
    e = ratings - K.predict_rows(d.row_ent, w0a[0], lin, S, Q)
    sse = kernel(mode, d.row_ent, e, d.blk_ent, d.blk_feat, d.blk_joint, d.rows_ptr, d.rows, d.feat_ptr,
                 d.feat_ent, d.feat_val, d.feat_group, d.feat_obs, w0a, wa, Va, lin, S, Q, alpha, mu_w, lam_w, mu_v,
                 lam_v, True, z)
    # twin
    X = K.design_matrix(d.row_ent, d.ent_ptr, d.ent_feat, d.ent_val, d.n_feat)
    blocks = np.searchsorted(d.blk_feat, np.arange(d.n_feat), side="right") - 1
    w0b, wb, Vb = np.array([3.0]), w.copy(), V.copy()
    e_ref = K.fm_sweep_ref(mode, X, ratings, blocks, d.feat_group, joint_features(d), w0b, wb, Vb, alpha, mu_w,
                           lam_w, mu_v, lam_v, True, z)
    np.testing.assert_allclose(w0a, w0b, rtol=1e-9)
    np.testing.assert_allclose(wa, wb, atol=1e-9)
    # the joint draws sum their precision matrices in float32 blocks (relative error ~1e-7)
    np.testing.assert_allclose(Va, Vb, atol=2e-6)
    assert np.abs(Va - V).max(axis=0)[d.feat_obs].min() > 1e-3  # every observed feature's vector moved
    np.testing.assert_allclose(e, e_ref, atol=2e-6)
    assert sse == pytest.approx(float(e_ref @ e_ref), rel=1e-6)
    # the residuals the kernel kept incrementally are the exact ones, and the caches are current
    assert_caches_current(d, wa, Va, lin, S, Q, atol=1e-9)
    np.testing.assert_allclose(e, ratings - naive_fm(X, w0a[0], wa, Va), atol=1e-9)
    # an unobserved feature sits at its group's prior mean
    for j in np.flatnonzero(~d.feat_obs):  # item 8, which nobody rated: its one-hot and implicit features
        assert wa[j] == mu_w[d.feat_group[j]] and (Va[:, j] == mu_v[d.feat_group[j]]).all()


def test_coordinate_mean_step_never_raises_the_penalised_loss():
    data = tiny_data()
    d = build_design(data, GROUPS)
    w, V = params(d)
    X = K.design_matrix(d.row_ent, d.ent_ptr, d.ent_feat, d.ent_val, d.n_feat)
    G = len(GROUPS)
    lam_w, lam_v = np.full(G, 0.5), np.full((G, K_FACTORS), 0.5)
    w0 = np.array([3.0])
    ratings = data.ratings.astype(np.float64)
    blocks = np.searchsorted(d.blk_feat, np.arange(d.n_feat), side="right") - 1

    def loss():
        e = ratings - naive_fm(X, w0[0], w, V)
        return e @ e + 0.5 * (w @ w) + 0.5 * (V * V).sum()

    before = loss()
    for _ in range(3):
        K.fm_sweep_ref(K.MODE_MEAN, X, ratings, blocks, d.feat_group, joint_features(d), w0, w, V, 1.0, np.zeros(G), lam_w,
                       np.zeros((G, K_FACTORS)), lam_v, True, np.zeros(0))
        after = loss()
        assert after <= before + 1e-9
        before = after


def test_sgd_epoch_matches_dense_twin():
    data = tiny_data(3)
    d = build_design(data, GROUPS)
    w, V = params(d, 2)
    order = np.random.default_rng(0).permutation(len(data)).astype(np.int64)
    ratings = data.ratings.astype(np.float64)
    w0a, wa, Va = np.array([3.0]), w.copy(), V.copy()
    sse = K.fm_sgd_epoch(order, d.row_ent, ratings, d.ent_ptr, d.ent_feat, d.ent_val, w0a, wa, Va, 0.03, 0.02, 0.05,
                         True)
    X = K.design_matrix(d.row_ent, d.ent_ptr, d.ent_feat, d.ent_val, d.n_feat)
    w0b, wb, Vb = np.array([3.0]), w.copy(), V.copy()
    sse_ref = K.fm_sgd_epoch_ref(order, X, ratings, w0b, wb, Vb, 0.03, 0.02, 0.05, True)
    assert sse == pytest.approx(sse_ref, rel=1e-9)
    np.testing.assert_allclose(w0a, w0b, rtol=1e-12)
    np.testing.assert_allclose(wa, wb, atol=1e-10)
    np.testing.assert_allclose(Va, Vb, atol=1e-10)


def test_parallel_sweep_is_the_same_for_any_thread_count():
    """The joint draws use per-feature normals and never share a row: one thread or all gives the same bits."""
    import numba

    data = tiny_data(2)
    d = build_design(data, GROUPS)
    G = len(GROUPS)
    rng = np.random.default_rng(9)
    z = rng.standard_normal(1 + d.n_feat * (K_FACTORS + 1))
    results = []
    for threads in (1, numba.config.NUMBA_NUM_THREADS):
        w, V = params(d, 4)
        w0 = np.array([3.0])
        lin, S, Q = np.zeros(d.n_ent), np.zeros((K_FACTORS, d.n_ent)), np.zeros((K_FACTORS, d.n_ent))
        K.entity_caches(d.ent_ptr, d.ent_feat, d.ent_val, w, V, lin, S, Q)
        e = data.ratings.astype(np.float64) - K.predict_rows(d.row_ent, w0[0], lin, S, Q)
        previous = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            for _ in range(3):
                sse = K.fm_sweep_parallel(K.MODE_SAMPLE, d.row_ent, e, d.blk_ent, d.blk_feat, d.blk_joint, d.rows_ptr,
                                    d.rows, d.feat_ptr, d.feat_ent, d.feat_val, d.feat_group, d.feat_obs, w0, w, V,
                                    lin, S, Q, 2.0, np.zeros(G), np.ones(G), np.zeros((G, K_FACTORS)),
                                    np.ones((G, K_FACTORS)), True, z)
        finally:
            numba.set_num_threads(previous)
        results.append((w0.copy(), w, V, e, sse))
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)
