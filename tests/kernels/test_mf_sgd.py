"""SVD / SVD++ SGD kernels: NumPy twins, planted-data learning, and agreement with Surprise."""

from __future__ import annotations

import functools

import numba
import numpy as np
import pytest

from recsys_cli.models._kernels import mf_sgd as K
from recsys_cli.models._kernels import shuffle, simd, splitmix

HOGWILD = functools.partial(K.svd_epoch, threads=2)  # lock-free, one chunk per Numba thread
LR = (0.01, 0.012, 0.009, 0.011)  # lr_bu, lr_bi, lr_pu, lr_qi: distinct so a swapped argument shows
REG = (0.02, 0.03, 0.04, 0.05)


def predict_mf(users, items, mu, bu, bi, P, Q) -> np.ndarray:
    """mu + bu[u] + bi[i] + P[u].Q[i] for index pairs (as the models score; float32)."""
    return (mu + bu[users] + bi[items] + np.einsum("nk,nk->n", P[users], Q[items])).astype(np.float32)


def small_data(seed: int = 0, n_users: int = 30, n_items: int = 20, n: int = 300, k: int = 8):
    """Random ratings on distinct (user, item) pairs plus random float32 parameters."""
    rng = np.random.default_rng(seed)
    pairs = rng.choice(n_users * n_items, n, replace=False)
    users, items = (pairs // n_items).astype(np.int32), (pairs % n_items).astype(np.int32)
    ratings = rng.integers(1, 6, n).astype(np.float32)
    params = dict(
        bu=rng.normal(0, 0.1, n_users).astype(np.float32),
        bi=rng.normal(0, 0.1, n_items).astype(np.float32),
        P=rng.normal(0, 0.1, (n_users, k)).astype(np.float32),
        Q=rng.normal(0, 0.1, (n_items, k)).astype(np.float32),
        Y=rng.normal(0, 0.1, (n_items, k)).astype(np.float32),
    )
    order = rng.permutation(n).astype(np.int32)
    return users, items, ratings, order, float(ratings.mean()), params


def csr_by_user(users, items, n_users):
    """(indptr, position order) grouping rating positions by user."""
    pos = np.argsort(users, kind="stable")
    indptr = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=n_users))]).astype(np.int32)
    return indptr, pos.astype(np.int32)


def copy(params):
    return {name: a.copy() for name, a in params.items()}


def assert_params_close(a, b, names, atol=1e-5):
    for name in names:
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=atol, err_msg=name)


def svd_args(d, use_bias=True):
    return (d["bu"], d["bi"], d["P"], d["Q"], *LR, *REG, use_bias)


# ---------------------------------------------------------------- SIMD row primitives


@numba.njit
def _dot_rows(A, a, B, b):
    return simd.row_dot(A, a, B, b)


@numba.njit
def _update_rows(A, a, B, b, ca, ga, cb, gb):
    simd.row_update(A, a, B, b, ca, ga, cb, gb)


@numba.njit
def _prefetch_rows(A):
    for a in range(A.shape[0]):
        simd.prefetch_row(A, a)


def rows(rng, n: int, k: int, shift: int) -> np.ndarray:
    """(n, k) C-contiguous float32 array whose data starts `shift` floats into its buffer."""
    buf = np.zeros(n * k + shift, np.float32)
    out = buf[shift:].reshape(n, k)
    out[:] = rng.normal(0, 1, (n, k))
    return out


@pytest.mark.parametrize("k", [*range(0, 41), 64, 99, 100, 101])
def test_row_primitives_match_reference(k):
    rng = np.random.default_rng(k)
    for shift in (0, 1):  # 16-byte aligned buffers and rows only 4-byte aligned
        A, B = rows(rng, 3, k, shift), rows(rng, 4, k, 0)
        assert _dot_rows(A, 2, B, 1) == pytest.approx(simd.row_dot_ref(A, 2, B, 1), rel=1e-5, abs=1e-5)
        A2, B2, A_old = A.copy(), B.copy(), A.copy()
        _update_rows(A, 1, B, 3, np.float32(0.9), np.float32(0.2), np.float32(0.8), np.float32(-0.3))
        simd.row_update_ref(A2, 1, B2, 3, 0.9, 0.2, 0.8, -0.3)
        np.testing.assert_allclose(A, A2, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(B, B2, rtol=1e-6, atol=1e-6)
        assert k == 0 or not np.allclose(A[1], A_old[1])  # the row really changed


def test_row_primitives_propagate_nan_and_leave_other_rows_alone():
    rng = np.random.default_rng(0)
    A, B = rows(rng, 3, 21, 0), rows(rng, 3, 21, 0)
    A[0, 20] = np.nan
    assert np.isnan(_dot_rows(A, 0, B, 0))
    before_A, before_B = A.copy(), B.copy()
    _update_rows(A, 0, B, 2, np.float32(1.0), np.float32(0.1), np.float32(1.0), np.float32(0.1))
    assert np.isnan(B[2, 20]) and np.isfinite(B[2, :20]).all()
    np.testing.assert_array_equal(np.delete(A, 0, axis=0), np.delete(before_A, 0, axis=0))
    np.testing.assert_array_equal(B[:2], before_B[:2])


def test_row_update_refuses_read_only_rows():
    A = rows(np.random.default_rng(2), 2, 8, 0)
    A.flags.writeable = False
    with pytest.raises(numba.core.errors.TypingError):
        _update_rows(A, 0, A, 1, np.float32(1.0), np.float32(0.1), np.float32(1.0), np.float32(0.1))


@pytest.mark.parametrize("k", [0, 1, 100, 1000])
def test_prefetch_row_changes_nothing(k):
    A = rows(np.random.default_rng(1), 5, k, 1)
    before = A.copy()
    _prefetch_rows(A)
    np.testing.assert_array_equal(A, before)


# ---------------------------------------------------------------- kernel == reference


# k covers every SIMD path: empty rows, scalar tail only, one 4-wide block, 8-wide blocks,
# 32-wide dot blocks with and without tails, and Surprise's 100 factors.
@pytest.mark.parametrize("k", [0, 3, 4, 8, 13, 37, 100])
@pytest.mark.parametrize("use_bias", [True, False])
def test_svd_epoch_matches_reference(use_bias, k):
    # The kernel computes in float32, the twin in float64: measured gaps after one epoch are
    # ~1e-8 relative on the SSE and ~5e-7 absolute on parameters of size ~0.1.
    users, items, ratings, order, mu, params = small_data(k=k)
    fast, ref = copy(params), copy(params)
    sse = K.svd_epoch(users, items, ratings, order, mu, *svd_args(fast, use_bias))
    sse_ref = K.svd_epoch_ref(users, items, ratings, order, mu, *svd_args(ref, use_bias))
    assert sse == pytest.approx(sse_ref, rel=1e-6)
    assert_params_close(fast, ref, ["bu", "bi", "P", "Q"])
    if k:
        assert not np.allclose(fast["P"], params["P"])  # the epoch really moved the factors
    if not use_bias:
        np.testing.assert_array_equal(fast["bu"], params["bu"])


@pytest.mark.parametrize("epoch", [K.svd_epoch, HOGWILD], ids=["sequential", "hogwild"])
def test_svd_epoch_rejects_bad_inputs(epoch):
    users, items, ratings, order, mu, params = small_data()
    d = copy(params)
    with pytest.raises(TypeError, match="P must be"):
        epoch(users, items, ratings, order, mu, d["bu"], d["bi"], d["P"].astype(np.float64), d["Q"], *LR, *REG, True)
    with pytest.raises(TypeError, match="Q must be"):
        epoch(users, items, ratings, order, mu, d["bu"], d["bi"], d["P"], np.asfortranarray(d["Q"]), *LR, *REG, True)
    with pytest.raises(ValueError, match="shapes do not match"):
        epoch(users, items, ratings, order, mu, d["bu"], d["bi"], d["P"], d["Q"][:, :5].copy(), *LR, *REG, True)
    bad_users = users.copy()
    bad_users[order[250]] = 30  # one past the last user row, late in the epoch
    with pytest.raises(IndexError, match="outside P or Q"):
        epoch(bad_users, items, ratings, order, mu, *svd_args(d))
    with pytest.raises(IndexError, match="outside the ratings"):
        epoch(users, items, ratings, np.append(order, -1), mu, *svd_args(d))
    for name in ("bu", "bi", "P", "Q"):  # indices are checked before any update
        np.testing.assert_array_equal(d[name], params[name])


def test_svd_parallel_with_one_thread_equals_sequential():
    users, items, ratings, order, mu, params = small_data(1)
    seq, par = copy(params), copy(params)
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        for _ in range(3):
            a = K.svd_epoch(users, items, ratings, order, mu, *svd_args(seq))
            b = K.svd_epoch(users, items, ratings, order, mu, *svd_args(par), threads=2)
            assert a == pytest.approx(b, rel=1e-12)
    finally:
        numba.set_num_threads(before)
    assert_params_close(seq, par, ["bu", "bi", "P", "Q"], atol=1e-7)


# ---------------------------------------------------------------- per-fit shuffling


def order_of(n, seed, epochs):
    """The visiting order `ShuffledRatings` holds after shuffling for `epochs` epochs."""
    pos = np.arange(n, dtype=np.int32)
    for epoch in range(epochs):
        shuffle.shuffle_together(pos, pos.copy(), np.zeros(n, np.float32), splitmix.seed64(seed), epoch)
    return pos


@pytest.mark.parametrize("use_bias", [True, False])
def test_svd_epoch_shuffled_equals_svd_epoch_in_the_same_order(use_bias):
    users, items, ratings, _, mu, params = small_data(10)
    data = K.ShuffledRatings(users, items, ratings, 30, 20, seed=77)
    np.testing.assert_array_equal(data.users, users)  # unshuffled until the first epoch
    fast, plain, ref = copy(params), copy(params), copy(params)
    for epoch in range(3):
        data.shuffle(epoch)
        order = order_of(len(users), 77, epoch + 1)
        np.testing.assert_array_equal(data.users, users[order])
        np.testing.assert_array_equal(data.ratings, ratings[order])
        a = K.svd_epoch_shuffled(data, mu, *svd_args(fast, use_bias))
        b = K.svd_epoch(users, items, ratings, order, mu, *svd_args(plain, use_bias))
        c = K.svd_epoch_ref(users, items, ratings, order, mu, *svd_args(ref, use_bias))
        assert a == b and a == pytest.approx(c, rel=1e-6)
    assert_params_close(fast, plain, ["bu", "bi", "P", "Q"], atol=0)
    assert_params_close(fast, ref, ["bu", "bi", "P", "Q"])
    assert not np.allclose(fast["Q"], params["Q"])


def test_svd_epoch_shuffled_hogwild_with_one_thread_equals_sequential():
    users, items, ratings, _, mu, params = small_data(11)
    seq, par = copy(params), copy(params)
    data_seq = K.ShuffledRatings(users, items, ratings, 30, 20, seed=5)
    data_par = K.ShuffledRatings(users, items, ratings, 30, 20, seed=5)
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        for epoch in range(3):
            data_seq.shuffle(epoch)
            data_par.shuffle(epoch)
            a = K.svd_epoch_shuffled(data_seq, mu, *svd_args(seq))
            b = K.svd_epoch_shuffled(data_par, mu, *svd_args(par), threads=2)
            assert a == pytest.approx(b, rel=1e-12)
    finally:
        numba.set_num_threads(before)
    assert_params_close(seq, par, ["bu", "bi", "P", "Q"], atol=1e-7)


def test_shuffled_ratings_checks_indices_once_and_shapes_every_epoch():
    users, items, ratings, _, mu, params = small_data(12)
    bad = users.copy()
    bad[250] = 30  # one past the last user row
    with pytest.raises(IndexError, match="outside P or Q"):
        K.ShuffledRatings(bad, items, ratings, 30, 20, seed=0)
    with pytest.raises(IndexError, match="outside P or Q"):
        K.ShuffledRatings(users, items - 1, ratings, 30, 20, seed=0)  # item -1
    data = K.ShuffledRatings(users, items, ratings, 30, 20, seed=0)
    d = copy(params)
    with pytest.raises(ValueError, match="must have 30 and 20 rows"):
        K.svd_epoch_shuffled(data, mu, d["bu"][:29].copy(), d["bi"], d["P"][:29].copy(), d["Q"], *LR, *REG, True)
    with pytest.raises(TypeError, match="P must be"):
        K.svd_epoch_shuffled(data, mu, d["bu"], d["bi"], d["P"].astype(np.float64), d["Q"], *LR, *REG, True)
    for name in ("bu", "bi", "P", "Q"):
        np.testing.assert_array_equal(d[name], params[name])
    assert data.users.dtype == np.int32 and data.items.dtype == np.int32 and data.ratings.dtype == np.float32


def test_svdpp_epoch_matches_reference():
    users, items, ratings, order, mu, params = small_data(2)
    indptr, pos = csr_by_user(users, items, 30)
    implicit = items[pos]
    fast, ref = copy(params), copy(params)
    args = (*LR, 0.008, *REG, 0.06)
    sse = K.svdpp_epoch(users, items, ratings, order, indptr, implicit, mu,
                        fast["bu"], fast["bi"], fast["P"], fast["Q"], fast["Y"], *args)
    sse_ref = K.svdpp_epoch_ref(users, items, ratings, order, indptr, implicit, mu,
                                ref["bu"], ref["bi"], ref["P"], ref["Q"], ref["Y"], *args)
    assert sse == pytest.approx(sse_ref, rel=1e-6)
    assert_params_close(fast, ref, ["bu", "bi", "P", "Q", "Y"])
    assert not np.allclose(fast["Y"], params["Y"])


def test_svdpp_grouped_matches_reference():
    users, items, ratings, _, mu, params = small_data(3)
    r_indptr, pos = csr_by_user(users, items, 30)
    r_items, r_ratings = items[pos], ratings[pos]
    rng = np.random.default_rng(0)
    r_order = K.shuffle_within_rows(r_indptr, rng)
    user_order = rng.permutation(30).astype(np.int32)
    fast, ref = copy(params), copy(params)
    args = (*LR, 0.008, *REG, 0.06)
    common = (user_order, r_indptr, r_items, r_ratings, r_order, r_indptr, r_items, mu)
    sse = K.svdpp_epoch_grouped(*common, fast["bu"], fast["bi"], fast["P"], fast["Q"], fast["Y"], *args)
    sse_ref = K.svdpp_epoch_grouped_ref(*common, ref["bu"], ref["bi"], ref["P"], ref["Q"], ref["Y"], *args)
    assert sse == pytest.approx(sse_ref, rel=1e-6)
    assert_params_close(fast, ref, ["bu", "bi", "P", "Q", "Y"])


def test_svdpp_grouped_equals_exact_when_each_user_has_one_rating():
    rng = np.random.default_rng(4)
    n_users, n_items, k = 40, 15, 6
    users = np.arange(n_users, dtype=np.int32)
    items = rng.integers(0, n_items, n_users).astype(np.int32)
    ratings = rng.integers(1, 6, n_users).astype(np.float32)
    indptr = np.arange(n_users + 1, dtype=np.int32)
    _, _, _, _, _, params = small_data(5, n_users=n_users, n_items=n_items, k=k)
    exact, grouped = copy(params), copy(params)
    args = (*LR, 0.008, *REG, 0.06)
    order = rng.permutation(n_users).astype(np.int32)
    a = K.svdpp_epoch(users, items, ratings, order, indptr, items, 3.0,
                      exact["bu"], exact["bi"], exact["P"], exact["Q"], exact["Y"], *args)
    b = K.svdpp_epoch_grouped(order, indptr, items, ratings, np.arange(n_users), indptr, items, 3.0,
                              grouped["bu"], grouped["bi"], grouped["P"], grouped["Q"], grouped["Y"], *args)
    assert a == pytest.approx(b, rel=1e-9)
    assert_params_close(exact, grouped, ["bu", "bi", "P", "Q", "Y"], atol=1e-6)


def test_shuffle_within_rows_permutes_each_row_only():
    indptr = np.array([0, 3, 3, 10, 11, 20])
    r_order = K.shuffle_within_rows(indptr, np.random.default_rng(0))
    for lo, hi in zip(indptr[:-1], indptr[1:], strict=True):
        assert sorted(r_order[lo:hi]) == list(range(lo, hi))
    assert not np.array_equal(r_order, np.arange(20))


def test_user_implicit_matches_reference():
    *_, params = small_data(6)
    indptr = np.array([0, 2, 2, 7], dtype=np.int32)  # the middle user has no implicit items
    indices = np.array([1, 4, 0, 2, 3, 9, 19], dtype=np.int32)
    z = K.user_implicit(indptr, indices, params["Y"])
    np.testing.assert_allclose(z, K.user_implicit_ref(indptr, indices, params["Y"]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(z[0], (params["Y"][1] + params["Y"][4]) / np.sqrt(2), atol=1e-6)
    assert z.dtype == np.float32 and not z[1].any()


@pytest.mark.parametrize("use_bias", [True, False])
def test_fold_in_ridge_matches_reference(use_bias):
    _, _, _, _, _, params = small_data(7)
    rng = np.random.default_rng(7)
    items = np.array([0, 3, 5, 8, 11, 19])
    ratings = rng.integers(1, 6, 6).astype(np.float32)
    implicit = rng.normal(0, 0.1, 8)
    for impl in (None, implicit):
        bu, p = K.fold_in_user_ridge(items, ratings, 3.2, params["bi"], params["Q"], 0.1,
                                     use_bias=use_bias, implicit=impl)
        bu_ref, p_ref = K.fold_in_user_ridge_ref(items, ratings, 3.2, params["bi"], params["Q"], 0.1,
                                                 use_bias=use_bias, implicit=impl)
        assert bu == pytest.approx(bu_ref, abs=1e-6)
        np.testing.assert_allclose(p, p_ref, rtol=1e-5, atol=1e-5)
        assert p.dtype == np.float32 and p.shape == (8,)
    assert (bu != 0.0) == use_bias


def test_fold_in_ridge_recovers_a_planted_user():
    rng = np.random.default_rng(8)
    Q = rng.normal(0, 1, (60, 4)).astype(np.float32)
    bi = rng.normal(0, 0.3, 60).astype(np.float32)
    p_true, bu_true = np.array([0.5, -0.3, 0.8, 0.1]), 0.4
    items = rng.choice(60, 40, replace=False)
    ratings = 3.5 + bi[items] + bu_true + Q[items] @ p_true + rng.normal(0, 0.01, 40)
    bu, p = K.fold_in_user_ridge(items, ratings, 3.5, bi, Q, 1e-3)
    assert bu == pytest.approx(bu_true, abs=0.02)
    np.testing.assert_allclose(p, p_true, atol=0.02)


def test_diverging_epoch_reports_non_finite_loss():
    users, items, ratings, order, mu, params = small_data(9)
    d = copy(params)
    losses = [K.svd_epoch(users, items, ratings, order, mu, d["bu"], d["bi"], d["P"], d["Q"],
                          50.0, 50.0, 50.0, 50.0, *REG, True) for _ in range(5)]
    assert not np.isfinite(losses[-1])


# ---------------------------------------------------------------- learning on planted data


def planted(seed: int, n_users: int = 150, n_items: int = 100, per_user: int = 33, noise: float = 0.1):
    """mu + bu + bi + rank-3 P0.Q0 + N(0, noise) ratings; returns (users, items, ratings, is_test)."""
    rng = np.random.default_rng(seed)
    P0, Q0 = rng.normal(0, 0.6, (n_users, 3)), rng.normal(0, 0.6, (n_items, 3))
    bu0, bi0 = rng.normal(0, 0.3, n_users), rng.normal(0, 0.3, n_items)
    users = np.repeat(np.arange(n_users), per_user).astype(np.int32)
    items = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    items = items.astype(np.int32)
    r = 3.5 + bu0[users] + bi0[items] + np.einsum("nk,nk->n", P0[users], Q0[items])
    r += rng.normal(0, noise, len(users))
    return users, items, r.astype(np.float32), rng.random(len(users)) < 0.2


def rmse(pred, truth) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, np.float64) - truth) ** 2)))


def train_svd(users, items, ratings, n_users, n_items, k, epochs, lr, reg, seed, epoch=K.svd_epoch):
    rng = np.random.default_rng(seed)
    mu = float(ratings.astype(np.float64).mean())
    bu, bi = np.zeros(n_users, np.float32), np.zeros(n_items, np.float32)
    P = rng.normal(0, 0.1, (n_users, k)).astype(np.float32)
    Q = rng.normal(0, 0.1, (n_items, k)).astype(np.float32)
    for _ in range(epochs):
        order = rng.permutation(len(users)).astype(np.int32)
        sse = epoch(users, items, ratings, order, mu, bu, bi, P, Q, lr, lr, lr, lr, reg, reg, reg, reg, True)
    return mu, bu, bi, P, Q, float(np.sqrt(sse / len(users)))


@pytest.fixture(scope="module")
def planted_split():
    users, items, r, test = planted(0)
    return users[~test], items[~test], r[~test], users[test], items[test], r[test]


@pytest.mark.parametrize("epoch", [K.svd_epoch, HOGWILD], ids=["sequential", "hogwild"])
def test_svd_learns_planted_low_rank_data(planted_split, epoch):
    tu, ti, tr, vu, vi, vr = planted_split
    mu, bu, bi, P, Q, train_rmse = train_svd(tu, ti, tr, 150, 100, 10, 40, 0.02, 0.02, 0, epoch)
    test_rmse = rmse(predict_mf(vu, vi, mu, bu, bi, P, Q), vr)
    mu0, bu0, bi0, P0, Q0, _ = train_svd(tu, ti, tr, 150, 100, 0, 40, 0.02, 0.02, 0)  # bias-only
    bias_rmse = rmse(predict_mf(vu, vi, mu0, bu0, bi0, P0, Q0), vr)
    assert train_rmse < 0.15  # noise level is 0.1
    assert test_rmse < 0.25 < 0.55 < bias_rmse


# ---------------------------------------------------------------- agreement with scikit-surprise


@pytest.fixture(scope="module")
def surprise_trainset(planted_split, tmp_path_factory):
    surprise = pytest.importorskip("surprise")
    tu, ti, tr = planted_split[:3]
    path = tmp_path_factory.mktemp("surprise") / "ratings.csv"
    np.savetxt(path, np.column_stack([tu, ti, tr]), fmt=["%d", "%d", "%.6f"], delimiter=",")
    reader = surprise.Reader(line_format="user item rating", sep=",", rating_scale=(1, 5))
    ts = surprise.Dataset.load_from_file(str(path), reader).build_full_trainset()
    # Surprise iterates ratings user by user in its inner-id order and never shuffles.
    su = np.array([u for u in range(ts.n_users) for _ in ts.ur[u]], dtype=np.int32)
    si = np.array([i for u in range(ts.n_users) for i, _ in ts.ur[u]], dtype=np.int32)
    sr = np.array([r for u in range(ts.n_users) for _, r in ts.ur[u]], dtype=np.float32)
    indptr = np.concatenate([[0], np.cumsum([len(ts.ur[u]) for u in range(ts.n_users)])]).astype(np.int32)
    return ts, su, si, sr, indptr


@pytest.mark.parametrize("biased", [True, False])
def test_svd_reproduces_surprise_svd(surprise_trainset, biased):
    from surprise import SVD

    ts, su, si, sr, _ = surprise_trainset
    k, epochs = 10, 5
    algo = SVD(n_factors=k, n_epochs=epochs, biased=biased, random_state=0, init_std_dev=0.1,
               lr_all=0.01, reg_all=0.05).fit(ts)
    rs = np.random.RandomState(0)  # Surprise draws pu then qi from RandomState(random_state)
    P = rs.normal(0, 0.1, (ts.n_users, k)).astype(np.float32)
    Q = rs.normal(0, 0.1, (ts.n_items, k)).astype(np.float32)
    bu, bi = np.zeros(ts.n_users, np.float32), np.zeros(ts.n_items, np.float32)
    order = np.arange(len(su), dtype=np.int32)
    for _ in range(epochs):
        K.svd_epoch(su, si, sr, order, ts.global_mean, bu, bi, P, Q, *[0.01] * 4, *[0.05] * 4, biased)
    for ours, theirs in [(bu, algo.bu), (bi, algo.bi), (P, algo.pu), (Q, algo.qi)]:
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-5)
    assert np.abs(algo.qi).max() > 0.2


def test_svdpp_reproduces_surprise_svdpp(surprise_trainset):
    from surprise import SVDpp

    ts, su, si, sr, indptr = surprise_trainset
    k, epochs = 6, 3
    algo = SVDpp(n_factors=k, n_epochs=epochs, random_state=0, init_std_dev=0.1,
                 lr_all=0.01, reg_all=0.05).fit(ts)
    rs = np.random.RandomState(0)  # pu, qi, yj in that order
    P, Q, Y = (rs.normal(0, 0.1, (n, k)).astype(np.float32) for n in (ts.n_users, ts.n_items, ts.n_items))
    bu, bi = np.zeros(ts.n_users, np.float32), np.zeros(ts.n_items, np.float32)
    order = np.arange(len(su), dtype=np.int32)
    for _ in range(epochs):
        K.svdpp_epoch(su, si, sr, order, indptr, si, ts.global_mean, bu, bi, P, Q, Y, *[0.01] * 5, *[0.05] * 5)
    for ours, theirs in [(bu, algo.bu), (bi, algo.bi), (P, algo.pu), (Q, algo.qi), (Y, algo.yj)]:
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-5)


def test_grouped_svdpp_test_rmse_close_to_surprise_svdpp(surprise_trainset, planted_split):
    from surprise import SVDpp

    ts, su, si, sr, indptr = surprise_trainset
    vu, vi, vr = planted_split[3:]
    k, epochs, lr = 10, 40, 0.02
    algo = SVDpp(n_factors=k, n_epochs=epochs, random_state=0, init_std_dev=0.1, lr_all=lr).fit(ts)
    vu_in = np.array([ts.to_inner_uid(str(u)) for u in vu])
    vi_in = np.array([ts.to_inner_iid(str(i)) for i in vi])
    z = K.user_implicit(indptr, si, algo.yj.astype(np.float32))
    theirs = rmse(predict_mf(vu_in, vi_in, ts.global_mean, algo.bu.astype(np.float32),
                               algo.bi.astype(np.float32), algo.pu.astype(np.float32) + z,
                               algo.qi.astype(np.float32)), vr)
    rng = np.random.default_rng(0)
    P, Q, Y = (rng.normal(0, 0.1, (n, k)).astype(np.float32) for n in (ts.n_users, ts.n_items, ts.n_items))
    bu, bi = np.zeros(ts.n_users, np.float32), np.zeros(ts.n_items, np.float32)
    for _ in range(epochs):
        K.svdpp_epoch_grouped(rng.permutation(ts.n_users).astype(np.int32), indptr, si, sr,
                              K.shuffle_within_rows(indptr, rng), indptr, si, ts.global_mean,
                              bu, bi, P, Q, Y, *[lr] * 5, *[0.02] * 5)
    ours = rmse(predict_mf(vu_in, vi_in, ts.global_mean, bu, bi, P + K.user_implicit(indptr, si, Y), Q), vr)
    assert theirs < 0.3
    assert abs(ours - theirs) < 0.03


# ---------------------------------------------------------------- SVD++ uses implicit feedback


def implicit_signal_data(seed: int, n_users: int = 1000, n_items: int = 200, n_impl: int = 30):
    """Users pick items by taste; 5 ratings each to train, 5 to test, all 30 picks as N(u)."""
    rng = np.random.default_rng(seed)
    P0, Q0 = rng.normal(0, 0.7, (n_users, 3)), rng.normal(0, 0.7, (n_items, 3))
    picks = []
    for u in range(n_users):
        w = np.exp(np.sqrt(3.0) * Q0 @ P0[u])
        picks.append(rng.choice(n_items, n_impl, replace=False, p=w / w.sum()))
    picks = np.array(picks, dtype=np.int32)
    users = np.repeat(np.arange(n_users, dtype=np.int32), 5)
    tr_i, te_i = picks[:, :5].ravel(), picks[:, 5:10].ravel()

    def rate(i):
        return (3.5 + np.einsum("nk,nk->n", P0[users], Q0[i]) + rng.normal(0, 0.1, len(i))).astype(np.float32)

    impl_indptr = np.arange(0, n_users * n_impl + 1, n_impl, dtype=np.int32)
    return users, tr_i, rate(tr_i), te_i, rate(te_i), impl_indptr, np.sort(picks, axis=1).ravel()


def test_svdpp_beats_svd_when_rated_items_reveal_taste():
    users, tr_i, tr_r, te_i, te_r, impl_indptr, impl = implicit_signal_data(0)
    n_users, n_items, k, epochs, lr, reg = 1000, 200, 5, 40, 0.02, 0.02
    mu, bu, bi, P, Q, _ = train_svd(users, tr_i, tr_r, n_users, n_items, k, epochs, lr, reg, 1)
    svd_rmse = rmse(predict_mf(users, te_i, mu, bu, bi, P, Q), te_r)
    rng = np.random.default_rng(1)
    P, Q, Y = (rng.normal(0, 0.1, (n, k)).astype(np.float32) for n in (n_users, n_items, n_items))
    bu, bi = np.zeros(n_users, np.float32), np.zeros(n_items, np.float32)
    r_indptr = np.arange(0, len(users) + 1, 5, dtype=np.int32)
    for _ in range(epochs):
        K.svdpp_epoch_grouped(rng.permutation(n_users).astype(np.int32), r_indptr, tr_i, tr_r,
                              K.shuffle_within_rows(r_indptr, rng), impl_indptr, impl, mu,
                              bu, bi, P, Q, Y, *[lr] * 5, *[reg] * 5)
    svdpp_rmse = rmse(predict_mf(users, te_i, mu, bu, bi, P + K.user_implicit(impl_indptr, impl, Y), Q), te_r)
    assert svdpp_rmse < svd_rmse - 0.1
