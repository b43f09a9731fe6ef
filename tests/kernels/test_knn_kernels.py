"""k-NN kernels: similarities, predictions and ranking scores vs reference twins and scikit-surprise."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_cli.models._kernels.baseline import baseline_als
from recsys_cli.models._kernels.knn import (
    csr_row_means,
    knn_predict,
    knn_predict_ref,
    similarity_matrix_ref,
    topk_similarities,
    topk_similarities_ref,
)
from recsys_cli.models._kernels.knn_scores import (
    _user_rows,
    invert_neighbors,
    invert_neighbors_ref,
    item_knn_scores,
    item_knn_scores_ref,
    sum_operand,
    user_knn_scores,
    user_knn_scores_ref,
    weighted_row_sums,
    weighted_row_sums_ref,
)

N_USERS, N_ITEMS = 40, 30
KINDS = ["cosine", "msd", "pearson", "pearson_baseline"]


class Data:
    """Random ratings covering every user and item, as CSR both ways plus a Surprise trainset."""

    def __init__(self, seed: int, continuous: bool = False, n: int = 400):
        rng = np.random.default_rng(seed)
        pairs = {(u, int(rng.integers(N_ITEMS))) for u in range(N_USERS)}
        pairs |= {(int(rng.integers(N_USERS)), i) for i in range(N_ITEMS)}
        while len(pairs) < n:
            pairs.add((int(rng.integers(N_USERS)), int(rng.integers(N_ITEMS))))
        uv = np.array(sorted(pairs), np.int32)
        self.users, self.items = uv[:, 0], uv[:, 1]
        r = rng.uniform(1, 5, len(uv)) if continuous else rng.integers(2, 11, len(uv)) / 2
        self.ratings = r.astype(np.float32)
        self.mu = float(np.mean(self.ratings.astype(np.float64)))
        self.ui = sp.csr_matrix((self.ratings, (self.users, self.items)), shape=(N_USERS, N_ITEMS))
        self.iu = self.ui.T.tocsr()
        self.pairs = pairs

    def csr(self, user_based: bool):
        m = self.ui if user_based else self.iu
        return m.indptr, m.indices, m.data

    def trainset(self):
        from surprise import Trainset

        ur, ir = defaultdict(list), defaultdict(list)  # lists in index order: Surprise's tie order = ours
        for u, i, r in zip(self.users.tolist(), self.items.tolist(), self.ratings.tolist(), strict=True):
            ur[u].append((i, float(r)))
        for u, i, r in sorted(zip(self.users.tolist(), self.items.tolist(), self.ratings.tolist(), strict=True),
                              key=lambda t: (t[1], t[0])):
            ir[i].append((u, float(r)))
        return Trainset(ur, ir, N_USERS, N_ITEMS, len(self.ratings), (1, 5),
                        {u: u for u in range(N_USERS)}, {i: i for i in range(N_ITEMS)})

    def test_pairs(self, n: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        out = []
        while len(out) < n:
            p = (int(rng.integers(N_USERS)), int(rng.integers(N_ITEMS)))
            if p not in self.pairs:
                out.append(p)
        return np.array(out, np.int64)


@pytest.fixture(scope="module")
def half_stars():
    return Data(0)


@pytest.fixture(scope="module")
def continuous():
    return Data(1, continuous=True)


def _fit_surprise(data: Data, cls, kind, user_based, **kw):
    import surprise

    sim_options = {"name": kind, "user_based": user_based, **kw.pop("sim", {})}
    return getattr(surprise, cls)(sim_options=sim_options, verbose=False, **kw).fit(data.trainset())


def _baselines(data: Data, user_based: bool):
    bu, bi = baseline_als(data.users, data.items, data.ratings, N_USERS, N_ITEMS, data.mu)
    return (data.mu, bu, bi) if user_based else (data.mu, bi, bu)


def _dense(neighbors, sims):
    n = neighbors.shape[0]
    out = np.zeros((n, n))
    for x in range(n):
        ok = neighbors[x] >= 0
        out[x, neighbors[x, ok]] = sims[x, ok]
    return out


# ------------------------------------------------------------------ similarities


def test_msd_hand_computed():
    # u0: i0=1, i1=2; u1: i0=2, i1=4; u2: i1=1
    m = sp.csr_matrix(np.array([[1, 2], [2, 4], [0, 1]], np.float32))
    nb, s, sup = topk_similarities(m.indptr, m.indices, m.data, 2, kind="msd", k_max=3)
    assert nb.tolist() == [[2, 1, -1], [0, 2, -1], [0, 1, -1]]
    np.testing.assert_allclose(s, [[1 / 2, 1 / 3.5, 0], [1 / 3.5, 1 / 10, 0], [1 / 2, 1 / 10, 0]], rtol=1e-6)
    assert sup.tolist() == [[1, 2, 0], [2, 1, 0], [1, 1, 0]]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("user_based", [True, False])
@pytest.mark.parametrize("min_support", [1, 4])
def test_similarities_match_surprise(half_stars, kind, user_based, min_support):
    d = half_stars
    shrink = 25.0
    algo = _fit_surprise(d, "KNNBasic", kind, user_based, sim={"min_support": min_support, "shrinkage": shrink})
    n = N_USERS if user_based else N_ITEMS
    nb, s, sup = topk_similarities(*d.csr(user_based), N_ITEMS if user_based else N_USERS, kind=kind, k_max=n,
                                   min_support=min_support, shrinkage=shrink,
                                   baselines=_baselines(d, user_based))
    assert nb.dtype == np.int32 and s.dtype == np.float32 and sup.dtype == np.int32
    expected = np.array(algo.sim, np.float64)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(_dense(nb, s), expected, atol=1e-5)
    assert np.count_nonzero(expected) > n  # the comparison is not vacuous
    assert (sup[nb >= 0] >= max(min_support, 2 if kind == "pearson_baseline" else 1)).all()


@pytest.mark.parametrize("shrinkage", [0.0, 100.0])
def test_pearson_baseline_shrinkage_matches_surprise(half_stars, shrinkage):
    d = half_stars
    algo = _fit_surprise(d, "KNNBasic", "pearson_baseline", True, sim={"shrinkage": shrinkage})
    nb, s, sup = topk_similarities(*d.csr(True), N_ITEMS, kind="pearson_baseline", k_max=N_USERS,
                                   shrinkage=shrinkage, baselines=(d.mu, algo.bu, algo.bi))
    expected = np.array(algo.sim)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(_dense(nb, s), expected, atol=1e-5)
    if shrinkage == 0.0:
        assert np.abs(s).max() > 0.9  # unshrunk correlations reach near +-1
    else:
        ok = nb >= 0
        assert (np.abs(s[ok]) <= (sup[ok] - 1) / (sup[ok] - 1 + 100.0) + 1e-6).all()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("min_support", [1, 3])
def test_similarities_match_reference(half_stars, kind, min_support):
    d = half_stars
    args = (*d.csr(False), N_USERS)
    kw = dict(kind=kind, min_support=min_support, shrinkage=10.0, baselines=_baselines(d, False))
    sim, support = similarity_matrix_ref(*args, **kw)
    for k_max in (N_ITEMS, 5):
        nb, s, sup = topk_similarities(*args, k_max=k_max, **kw)
        nb_r, s_r, sup_r = topk_similarities_ref(*args, k_max=k_max, **kw)
        np.testing.assert_allclose(s, s_r, atol=1e-6)  # same sorted values
        ok = nb >= 0
        assert np.array_equal(ok, nb_r >= 0)  # same count per row, padding included
        rows = np.nonzero(ok)[0]
        np.testing.assert_allclose(s[ok], sim[rows, nb[ok]], atol=1e-6)  # each id carries its own sim
        assert np.array_equal(sup[ok], support[rows, nb[ok]])
        if kind in ("cosine", "msd"):  # exact arithmetic on half stars: identical order, ties included
            assert np.array_equal(nb, nb_r)
    min_sup = max(min_support, 2 if kind == "pearson_baseline" else 1)
    counts = ((support >= min_sup) & ~np.eye(N_ITEMS, dtype=bool)).sum(1)
    nb, s, sup = topk_similarities(*args, k_max=N_ITEMS, **kw)
    assert ((nb >= 0).sum(1) == counts).all()
    assert (s[nb < 0] == 0).all() and (sup[nb < 0] == 0).all()


def test_topk_order_and_ties(half_stars):
    d = half_stars
    nb, s, _ = topk_similarities(*d.csr(True), N_ITEMS, kind="cosine", k_max=8)
    for x in range(N_USERS):
        valid = nb[x] >= 0
        sx, nx = s[x, valid], nb[x, valid]
        assert (np.diff(sx) <= 0).all()
        tie = np.diff(sx) == 0
        assert (np.diff(nx)[tie] > 0).all()  # equal similarity: lower index first
        assert x not in nx
    assert (s == 1.0).sum() > N_USERS  # support-1 cosines are exact 1.0 ties, so ties were exercised


def test_topk_threads_give_identical_results(continuous):
    args = (*continuous.csr(False), N_USERS)
    one = topk_similarities(*args, kind="pearson", k_max=7, n_threads=1)
    two = topk_similarities(*args, kind="pearson", k_max=7, n_threads=2)
    for a, b in zip(one, two, strict=True):
        assert np.array_equal(a, b)


def test_bad_arguments_raise(half_stars):
    args = (*half_stars.csr(True), N_ITEMS)
    with pytest.raises(ValueError, match="unknown similarity"):
        topk_similarities(*args, kind="jaccard", k_max=3)
    with pytest.raises(ValueError, match="baselines"):
        topk_similarities(*args, kind="pearson_baseline", k_max=3)
    with pytest.raises(ValueError, match="k_max"):
        topk_similarities(*args, kind="cosine", k_max=0)


# ------------------------------------------------------------------ predictions

ALGOS = [("KNNBasic", "basic"), ("KNNWithMeans", "means"), ("KNNBaseline", "baseline")]
UNKNOWN = [(-1, 3), (5, -1), (-1, -1)]


def _our_model(d: Data, user_based: bool, kind: str, k_max: int, **kw):
    """Neighbour lists and the mode arrays for one orientation (x = users or items)."""
    mu, bx, by = _baselines(d, user_based)
    csr = d.csr(user_based)
    n_cols = N_ITEMS if user_based else N_USERS
    nb, s, _ = topk_similarities(*csr, n_cols, kind=kind, k_max=k_max, baselines=(mu, bx, by), **kw)
    return nb, s, csr, dict(mu=mu, row_means=csr_row_means(csr[0], csr[2]), row_bias=bx, col_bias=by)


def _predict_pairs(d, pairs, user_based, nb, s, csr, arrays, **kw):
    rows, targets = (pairs[:, 0], pairs[:, 1]) if user_based else (pairs[:, 1], pairs[:, 0])
    return knn_predict(rows, targets, nb, s, *csr, **arrays, **kw)


@pytest.mark.parametrize("cls,mode", ALGOS)
@pytest.mark.parametrize("user_based", [True, False])
@pytest.mark.parametrize("kind,min_k", [("msd", 1), ("pearson_baseline", 3), ("cosine", 8), ("pearson", 1)])
def test_predictions_match_surprise(half_stars, cls, mode, user_based, kind, min_k):
    d = half_stars
    algo = _fit_surprise(d, cls, kind, user_based, k=40, min_k=min_k)
    n_x = N_USERS if user_based else N_ITEMS
    nb, s, csr, arrays = _our_model(d, user_based, kind, n_x)
    pairs = np.concatenate([d.test_pairs(60), np.array(UNKNOWN)])
    pred, imp = _predict_pairs(d, pairs, user_based, nb, s, csr, arrays, k=40, min_k=min_k, mode=mode)
    for (u, i), p, bad in zip(pairs.tolist(), pred, imp, strict=True):
        sp_ = algo.predict(u if u >= 0 else "nobody", i if i >= 0 else "nothing", clip=False)
        expected_bad = sp_.details["was_impossible"] or u < 0 or i < 0 or sp_.details["actual_k"] < min_k
        assert p == pytest.approx(sp_.est, abs=1e-4), (u, i)
        assert bad == expected_bad, (u, i)
    known_bad = imp[: len(pairs) - len(UNKNOWN)]
    assert imp[-len(UNKNOWN):].all() and not known_bad.all()
    if min_k > 1:
        assert known_bad.any()  # fallbacks for too few neighbours were exercised


@pytest.mark.parametrize("cls,mode", ALGOS)
@pytest.mark.parametrize("user_based", [True, False])
@pytest.mark.parametrize("kind", ["msd", "pearson_baseline"])
def test_predictions_match_surprise_with_small_k(continuous, cls, mode, user_based, kind):
    d = continuous
    algo = _fit_surprise(d, cls, kind, user_based, k=3, min_k=1)
    nb, s, csr, arrays = _our_model(d, user_based, kind, N_USERS if user_based else N_ITEMS)
    pairs = d.test_pairs(80, seed=1)
    pred, _ = _predict_pairs(d, pairs, user_based, nb, s, csr, arrays, k=3, mode=mode)
    preds = [algo.predict(u, i, clip=False) for u, i in pairs.tolist()]
    np.testing.assert_allclose(pred, [p.est for p in preds], atol=1e-4)
    assert max(p.details.get("actual_k", 0) for p in preds) == 3  # the k cap was binding


@pytest.mark.parametrize("mode", ["basic", "means", "baseline"])
@pytest.mark.parametrize("user_based", [True, False])
def test_predict_matches_reference_with_truncated_lists(continuous, mode, user_based):
    d = continuous
    nb, s, csr, arrays = _our_model(d, user_based, "pearson", 8)
    pairs = np.concatenate([d.test_pairs(50, seed=2), np.array(UNKNOWN), np.stack([d.users, d.items], 1)[:30]])
    rows, targets = (pairs[:, 0], pairs[:, 1]) if user_based else (pairs[:, 1], pairs[:, 0])
    for k, min_k in [(3, 1), (40, 2)]:
        fast = knn_predict(rows, targets, nb, s, *csr, k=k, min_k=min_k, mode=mode, **arrays)
        ref = knn_predict_ref(rows, targets, nb, s, *csr, k=k, min_k=min_k, mode=mode, **arrays)
        np.testing.assert_allclose(fast[0], ref[0], atol=1e-5)
        assert np.array_equal(fast[1], ref[1])
        assert 0 < fast[1].sum() < len(pairs)


def test_predict_accepts_unsorted_rows(continuous):
    d = continuous
    nb, s, (indptr, indices, data), arrays = _our_model(d, True, "cosine", 10)
    perm = np.concatenate([np.arange(a, b)[::-1] for a, b in zip(indptr[:-1], indptr[1:], strict=True)])
    pairs = d.test_pairs(40)
    sorted_ = knn_predict(pairs[:, 0], pairs[:, 1], nb, s, indptr, indices, data, k=5, **arrays)
    shuffled = knn_predict(pairs[:, 0], pairs[:, 1], nb, s, indptr, indices[perm], data[perm], k=5, **arrays)
    assert np.array_equal(sorted_[0], shuffled[0]) and np.array_equal(sorted_[1], shuffled[1])


def test_predict_bad_arguments_raise(continuous):
    nb, s, csr, arrays = _our_model(continuous, True, "cosine", 5)
    with pytest.raises(ValueError, match="row_means"):
        knn_predict([0], [0], nb, s, *csr, mu=3.0, mode="means")
    with pytest.raises(ValueError, match="row_bias"):
        knn_predict([0], [0], nb, s, *csr, mu=3.0, mode="baseline", row_bias=arrays["row_bias"])
    with pytest.raises(ValueError, match="unknown mode"):
        knn_predict([0], [0], nb, s, *csr, mu=3.0, mode="zscore")
    with pytest.raises(ValueError, match="out of range"):
        knn_predict([N_USERS], [0], nb, s, *csr, mu=3.0)


# ------------------------------------------------------------------ ranking scores


@pytest.mark.parametrize("mode", ["basic", "means", "baseline"])
@pytest.mark.parametrize("k,min_k", [(3, 1), (40, 2)])
def test_user_scores_equal_predictions_and_reference(continuous, mode, k, min_k):
    d = continuous
    nb, s, csr, arrays = _our_model(d, True, "msd", 10)
    users = np.array([0, 7, -1, 39, 12], np.int64)
    kw = dict(k=k, min_k=min_k, mode=mode, **arrays)
    scores = user_knn_scores(users, nb, s, *csr, n_items=N_ITEMS, **kw)
    assert scores.shape == (len(users), N_ITEMS) and scores.dtype == np.float32
    rows, targets = np.repeat(users, N_ITEMS), np.tile(np.arange(N_ITEMS), len(users))
    pred, imp = knn_predict(rows, targets, nb, s, *csr, **kw)
    np.testing.assert_allclose(scores.ravel(), pred, atol=1e-5)
    assert 0 < imp.sum() < len(imp)
    sums = user_knn_scores(users, nb, s, *csr, n_items=N_ITEMS, aggregate="sum", **kw)
    np.testing.assert_allclose(sums, user_knn_scores_ref(users, nb, s, *csr, n_items=N_ITEMS,
                                                         aggregate="sum", **kw), atol=1e-5)
    assert (sums.ravel()[imp] == 0).all() and np.any(sums != 0)


@pytest.mark.parametrize("mode", ["basic", "means", "baseline"])
@pytest.mark.parametrize("k,min_k", [(3, 1), (40, 2)])
def test_item_scores_equal_predictions_and_reference(continuous, mode, k, min_k):
    d = continuous
    nb, s, csr_iu, arrays = _our_model(d, False, "pearson_baseline", 9)
    ui = (d.ui.indptr, d.ui.indices, d.ui.data)
    users = np.array([3, -1, 0, 21, 39, 8], np.int64)
    kw = dict(k=k, min_k=min_k, mode=mode, **arrays)
    inverted = invert_neighbors(nb, s)
    scores = item_knn_scores(users, nb, s, *ui, inverted=inverted, **kw)
    assert scores.shape == (len(users), N_ITEMS)
    targets, rows = np.repeat(users, N_ITEMS), np.tile(np.arange(N_ITEMS), len(users))
    pred, imp = knn_predict(rows, targets, nb, s, *csr_iu, **kw)
    np.testing.assert_allclose(scores.ravel(), pred, atol=1e-5)
    assert 0 < imp.sum() < len(imp)
    np.testing.assert_allclose(scores, item_knn_scores_ref(users, nb, s, *ui, **kw), atol=1e-5)
    sums = item_knn_scores(users, nb, s, *ui, aggregate="sum", **kw)  # inverted built inside
    np.testing.assert_allclose(sums, item_knn_scores_ref(users, nb, s, *ui, aggregate="sum", **kw), atol=1e-5)
    assert np.any(sums != 0)


def test_invert_neighbors_layout():
    nb = np.array([[1, 2], [0, -1], [1, 0]], np.int32)
    s = np.array([[0.5, 0.2], [0.9, 0.0], [0.3, -0.1]], np.float32)
    indptr, item, sim = invert_neighbors(nb, s)
    # j=0: (i=1, .9); j=1: (i=0, .5), (i=2, .3); j=2: (i=0, .2)
    assert indptr.tolist() == [0, 1, 3, 4]
    assert item.tolist() == [1, 0, 2, 0]
    np.testing.assert_allclose(sim, [0.9, 0.5, 0.3, 0.2])
    assert indptr.dtype == np.int64 and item.dtype == np.int32 and sim.dtype == np.float32


def test_invert_neighbors_matches_reference_on_random_lists():
    rng = np.random.default_rng(8)
    n, width = 300, 25
    nb = np.array([rng.permutation(n)[:width] for _ in range(n)], np.int32)
    s = np.sort(rng.normal(0.2, 0.3, (n, width)).astype(np.float32), axis=1)[:, ::-1].copy()
    nb[rng.random((n, width)) < 0.1] = -1  # padding, wherever it falls
    got, want = invert_neighbors(nb, s), invert_neighbors_ref(nb, s)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    with pytest.raises(IndexError, match="outside the item range"):
        invert_neighbors(np.array([[0, 2], [1, 0]], np.int32), np.ones((2, 2), np.float32))
    with pytest.raises(ValueError, match="same 2-D shape"):
        invert_neighbors(nb, s[:, :3])


def test_scores_refuse_out_of_range_indices(continuous):
    d = continuous
    nb, s, csr, arrays = _our_model(d, True, "cosine", 5)
    with pytest.raises(ValueError, match="user index"):
        user_knn_scores([N_USERS], nb, s, *csr, n_items=N_ITEMS, **arrays)
    with pytest.raises(ValueError, match="item index"):
        user_knn_scores([0], nb, s, *csr, n_items=N_ITEMS - 1, **arrays)
    with pytest.raises(ValueError, match="one value per row"):
        user_knn_scores([0], nb, s, *csr, n_items=N_ITEMS, mode="means", mu=3.0, row_means=np.zeros(3))
    nb_i, s_i, _, arrays_i = _our_model(d, False, "cosine", 5)
    with pytest.raises(ValueError, match="user index"):
        item_knn_scores([N_USERS], nb_i, s_i, d.ui.indptr, d.ui.indices, d.ui.data, **arrays_i)


def _random_csr(rng, n_rows, n_cols, density):
    m = sp.random(n_rows, n_cols, density=density, format="csr", random_state=rng, dtype=np.float32)
    m.data = (m.data * 4 - 2).astype(np.float32)  # signed values
    m.sort_indices()
    return m.indptr.astype(np.int64), m.indices.astype(np.int32), m.data


@pytest.mark.parametrize("dense,min_k", [(True, 1), (False, 1), (False, 2)])  # dense cannot count: min_k 1
def test_weighted_row_sums_match_reference(dense, min_k):
    rng = np.random.default_rng(4)
    csr = _random_csr(rng, 50, 70, 0.2)
    operand = sum_operand(*csr, 70, min_k=min_k) if dense else csr
    assert isinstance(operand, np.ndarray) == dense
    ptr = np.array([0, 3, 3, 9, 20], np.int64)  # the second batch row sums nothing
    rows = rng.integers(0, 50, 20)
    w = rng.normal(size=20).astype(np.float32)
    got = weighted_row_sums(ptr, rows, w, operand, 70, min_k=min_k)
    want = weighted_row_sums_ref(ptr, rows, w, csr, 70, min_k=min_k)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert got.flags.owndata  # NumPy's own array: recommend masks it in place instead of copying
    np.testing.assert_array_equal(weighted_row_sums(ptr, rows.astype(np.int32), w, operand, 70, min_k=min_k), got)
    assert not got[1].any() and got[3].any()
    # by hand: row 0 of the batch is w0*M[r0] + w1*M[r1] + w2*M[r2]
    M = sp.csr_matrix((csr[2], csr[1], csr[0]), shape=(50, 70)).toarray().astype(np.float64)
    hand = w[:3].astype(np.float64) @ M[rows[:3]]
    if min_k == 2:
        hand[(M[rows[:3]] != 0).sum(axis=0) < 2] = 0.0
    np.testing.assert_allclose(got[0], hand, rtol=1e-5, atol=1e-6)


def test_user_rows_take_each_list_up_to_its_first_padding_or_non_positive_similarity():
    neighbors = np.array([[2, 0, 1, -1], [0, 2, 3, 1], [1, -1, 0, 3], [3, 1, 0, 2]], np.int32)
    sims = np.array([[0.9, 0.5, 0.1, 0.0], [0.8, -0.2, 0.7, 0.1], [0.3, 0.0, 0.9, 0.9], [0.0, 0.5, 0.5, 0.5]],
                    np.float32)
    ptr, rows, w = _user_rows(np.array([0, 1, -1, 2, 3, 0]), neighbors, sims)
    # user 1 stops at its negative similarity, the unknown user (-1) and user 3 (sim 0 first) get nothing
    assert ptr.tolist() == [0, 3, 4, 4, 5, 5, 8]
    assert rows.tolist() == [2, 0, 1, 0, 1, 2, 0, 1]
    np.testing.assert_array_equal(w, np.float32([0.9, 0.5, 0.1, 0.8, 0.3, 0.9, 0.5, 0.1]))


def test_sum_operand_is_dense_only_when_small_full_and_uncounted():
    rng = np.random.default_rng(5)
    full = _random_csr(rng, 40, 40, 0.3)
    sparse = _random_csr(rng, 40, 40, 0.01)
    assert isinstance(sum_operand(*full, 40), np.ndarray)
    np.testing.assert_array_equal(sum_operand(*full, 40),
                                  sp.csr_matrix((full[2], full[1], full[0]), shape=(40, 40)).toarray())
    assert isinstance(sum_operand(*full, 40, min_k=2), tuple)  # counting needs the stored entries
    assert isinstance(sum_operand(*sparse, 40), tuple)  # under 1/32 full
    with pytest.raises(ValueError, match="cannot count"):
        weighted_row_sums(np.array([0, 1]), np.array([0]), np.ones(1), sum_operand(*full, 40), 40, min_k=2)


@pytest.mark.parametrize("user_based", [True, False])
def test_sum_ignores_k_and_counts_every_stored_neighbour(continuous, user_based):
    d = continuous
    nb, s, _, arrays = _our_model(d, user_based, "pearson_baseline", 12)
    ui = (d.ui.indptr, d.ui.indices, d.ui.data)
    users = np.arange(N_USERS)
    fn = user_knn_scores if user_based else item_knn_scores
    extra = {"n_items": N_ITEMS} if user_based else {}
    small_k = fn(users, nb, s, *ui, k=2, aggregate="sum", mode="baseline", **extra, **arrays)
    big_k = fn(users, nb, s, *ui, k=1000, aggregate="sum", mode="baseline", **extra, **arrays)
    np.testing.assert_array_equal(small_k, big_k)
    capped_mean = fn(users, nb, s, *ui, k=2, aggregate="mean", mode="baseline", **extra, **arrays)
    assert not np.allclose(capped_mean, fn(users, nb, s, *ui, k=1000, aggregate="mean", mode="baseline",
                                           **extra, **arrays))
