"""Dense k-NN scores of every item for a batch of users, for top-N ranking (see `knn` for roles).

Both scorers give, with aggregate='mean', exactly what `knn.knn_predict` gives for each
(user, item) pair - Surprise's neighbourhood (first k positive-similarity neighbours that
rated the target, within the stored k_max list) and fallbacks included - so ranking and
rating prediction agree. aggregate='sum' drops the normalisation and the fallback.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from recsys_cli.models._kernels.knn import (
    _check_index,
    _csr,
    _finish,
    _mode_arrays,
    _offset,
    _predict_one_ref,
    _rows_as_dicts,
    _threads,
)

# ------------------------------------------------------------------ dense scores for ranking


@njit(cache=True, parallel=True)
def _user_scores_kernel(users, nbr, sims, indptr, indices, data, n_cols, k, min_k, mode, agg_sum,
                        mu, means, rb, cb, n_chunks):
    B = users.shape[0]
    out = np.empty((B, n_cols), np.float32)
    for ch in prange(n_chunks):
        num = np.zeros(n_cols, np.float64)
        den = np.zeros(n_cols, np.float64)
        cnt = np.zeros(n_cols, np.int32)
        for b in range(ch, B, n_chunks):
            x = users[b]
            if x >= 0:
                for j in range(nbr.shape[1]):
                    nb = nbr[x, j]
                    s = np.float64(sims[x, j])
                    if nb < 0 or s <= 0.0:
                        break
                    for q in range(indptr[nb], indptr[nb + 1]):
                        y = indices[q]
                        if cnt[y] < k:  # only the first k raters of y in x's list count
                            num[y] += s * (np.float64(data[q]) - _offset(mode, nb, y, mu, means, rb, cb))
                            den[y] += s
                            cnt[y] += 1
            for y in range(n_cols):
                out[b, y] = _finish(mode, agg_sum, x, y, num[y], den[y], cnt[y], min_k, mu, means, rb, cb)[0]
                num[y] = 0.0
                den[y] = 0.0
                cnt[y] = 0
    return out


@njit(cache=True, parallel=True)
def _item_scores_kernel(users, inv_ptr, inv_item, inv_rank, inv_sim, k_max, indptr, indices, data,
                        n_items, k, min_k, mode, agg_sum, mu, means, rb, cb, n_chunks):
    B = users.shape[0]
    out = np.empty((B, n_items), np.float32)
    for ch in prange(n_chunks):
        num = np.zeros(n_items, np.float64)
        den = np.zeros(n_items, np.float64)
        cnt = np.zeros(n_items, np.int32)
        ptr = np.empty(n_items, np.int64)
        ends = np.empty(n_items, np.int64)
        res = np.empty(n_items, np.float64)
        for b in range(ch, B, n_chunks):
            u = users[b]
            if u >= 0:
                start = indptr[u]
                deg = indptr[u + 1] - start
                for t in range(deg):  # per rated item: its inverted list and its residual, computed once
                    j = indices[start + t]
                    ptr[t] = inv_ptr[j]
                    ends[t] = inv_ptr[j + 1]
                    res[t] = np.float64(data[start + t]) - _offset(mode, j, u, mu, means, rb, cb)
                # Rank-major sweep: each item i meets the rated j in its own list in list order,
                # so capping at k keeps exactly the first k rated neighbours (as knn_predict does).
                live = deg  # rated items whose inverted list is not exhausted sit in ptr/ends/res[:live]
                for r in range(k_max):
                    t = 0
                    while t < live:
                        pp, end, rt = ptr[t], ends[t], res[t]
                        while pp < end and inv_rank[pp] == r:
                            i = inv_item[pp]
                            if cnt[i] < k:
                                s = np.float64(inv_sim[pp])
                                num[i] += s * rt
                                den[i] += s
                                cnt[i] += 1
                            pp += 1
                        if pp < end:
                            ptr[t] = pp
                            t += 1
                        else:  # exhausted: swap the last live list into this slot (order within a rank is free)
                            live -= 1
                            ptr[t], ends[t], res[t] = ptr[live], ends[live], res[live]
                    if live == 0:
                        break
            for i in range(n_items):
                out[b, i] = _finish(mode, agg_sum, i, u, num[i], den[i], cnt[i], min_k, mu, means, rb, cb)[0]
                num[i] = 0.0
                den[i] = 0.0
                cnt[i] = 0
    return out


def invert_neighbors(neighbors: np.ndarray, sims: np.ndarray) -> tuple[np.ndarray, ...]:
    """Reverse the positive-similarity lists: for each j, the (i, rank of j in i's list, sim) with j in i's list.

    Returns (indptr int64 (n+1), item int32, rank int32, sim float32), sorted by j then rank.
    Build it once per fitted item-knn model and pass it to `item_knn_scores(inverted=...)`.
    """
    neighbors = np.asarray(neighbors)
    mask = (neighbors >= 0) & (np.asarray(sims) > 0)
    rank, item = np.nonzero(mask.T)  # ordered by rank, then item
    j = neighbors[item, rank]
    order = np.argsort(j, kind="stable")
    counts = np.bincount(j, minlength=neighbors.shape[0])
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return (indptr, item[order].astype(np.int32), rank[order].astype(np.int32),
            np.asarray(sims, np.float32)[item[order], rank[order]])


def _check_aggregate(aggregate: str) -> bool:
    if aggregate not in ("mean", "sum"):
        raise ValueError(f"unknown aggregate {aggregate!r}; choose mean or sum")
    return aggregate == "sum"


def user_knn_scores(users: np.ndarray, neighbors: np.ndarray, sims: np.ndarray, indptr: np.ndarray,
                    indices: np.ndarray, data: np.ndarray, *, n_items: int, mu: float, k: int = 40,
                    min_k: int = 1, mode: str = "basic", aggregate: str = "mean",
                    row_means: np.ndarray | None = None, row_bias: np.ndarray | None = None,
                    col_bias: np.ndarray | None = None, n_threads: int | None = None) -> np.ndarray:
    """User-based scores of every item for a batch of users -> float32 (len(users), n_items).

    CSR is users x items; neighbours, row_means and row_bias are per user, col_bias per item.
    aggregate='mean' gives exactly `knn_predict` for every (user, item), fallbacks included;
    'sum' gives the unnormalised sum of sim * (r - offset) over the same neighbours (0 if fewer
    than min_k), which favours items many close neighbours rated.
    """
    agg_sum = _check_aggregate(aggregate)
    m, means, rb, cb = _mode_arrays(mode, row_means, row_bias, col_bias, np.shape(neighbors)[0])
    indptr, indices, data = _csr(indptr, indices, data, np.float32)
    users = np.asarray(users, np.int64)
    _check_index("user", users, min(np.asarray(neighbors).shape[0], len(indptr) - 1))
    _check_index("item", indices, int(n_items))
    if mode == "baseline":
        _check_index("item", np.array([n_items - 1]), len(cb))
    with _threads(n_threads) as nt:
        return _user_scores_kernel(users, np.asarray(neighbors, np.int32), np.asarray(sims, np.float32),
                                   indptr, indices, data, int(n_items), int(k), int(min_k), m, agg_sum,
                                   float(mu), means, rb, cb, max(1, min(len(users), 4 * nt)))


def item_knn_scores(users: np.ndarray, neighbors: np.ndarray, sims: np.ndarray, indptr: np.ndarray,
                    indices: np.ndarray, data: np.ndarray, *, mu: float, k: int = 40, min_k: int = 1,
                    mode: str = "basic", aggregate: str = "mean", row_means: np.ndarray | None = None,
                    row_bias: np.ndarray | None = None, col_bias: np.ndarray | None = None,
                    inverted: tuple | None = None, n_threads: int | None = None) -> np.ndarray:
    """Item-based scores of every item for a batch of users -> float32 (len(users), n_items).

    CSR is users x items (not the items x users one given to knn_predict); neighbours,
    row_means and row_bias are per item, col_bias per user. Cost per user is about
    (its ratings) x k_max, via `invert_neighbors` (pass `inverted` to reuse it across batches).
    aggregate='mean' equals `knn_predict` for every pair; 'sum' as in `user_knn_scores`.
    """
    agg_sum = _check_aggregate(aggregate)
    m, means, rb, cb = _mode_arrays(mode, row_means, row_bias, col_bias, np.shape(neighbors)[0])
    inv = inverted if inverted is not None else invert_neighbors(neighbors, sims)
    indptr, indices, data = _csr(indptr, indices, data, np.float32)
    users = np.asarray(users, np.int64)
    n_items = np.asarray(neighbors).shape[0]
    _check_index("user", users, len(indptr) - 1)
    _check_index("item", indices, n_items)
    if mode == "baseline":
        _check_index("user", users, len(cb))
    with _threads(n_threads) as nt:
        return _item_scores_kernel(users, *inv, int(np.asarray(neighbors).shape[1]), indptr, indices, data,
                                   n_items, int(k), int(min_k), m, agg_sum,
                                   float(mu), means, rb, cb, max(1, min(len(users), 4 * nt)))


def _scores_ref(users, n_items, one):
    out = np.zeros((len(users), n_items), np.float32)
    for b, u in enumerate(users):
        for i in range(n_items):
            out[b, i] = one(int(u), i)
    return out


def user_knn_scores_ref(users, neighbors, sims, indptr, indices, data, *, n_items: int, mu: float,
                        k: int = 40, min_k: int = 1, mode: str = "basic", aggregate: str = "mean",
                        row_means=None, row_bias=None, col_bias=None):
    """Plain-Python twin of `user_knn_scores`: one Surprise-style estimate per pair."""
    R = _rows_as_dicts(*_csr(indptr, indices, data, np.float64))
    pick = 2 if aggregate == "sum" else 0
    return _scores_ref(users, n_items, lambda u, i: _predict_one_ref(
        u, i, neighbors, sims, lambda v: R[v].get(i), k, min_k, mode, mu, row_means, row_bias, col_bias)[pick])


def item_knn_scores_ref(users, neighbors, sims, indptr, indices, data, *, mu: float, k: int = 40,
                        min_k: int = 1, mode: str = "basic", aggregate: str = "mean",
                        row_means=None, row_bias=None, col_bias=None):
    """Plain-Python twin of `item_knn_scores` (CSR users x items)."""
    R = _rows_as_dicts(*_csr(indptr, indices, data, np.float64))
    pick = 2 if aggregate == "sum" else 0
    return _scores_ref(users, neighbors.shape[0], lambda u, i: _predict_one_ref(
        i, u, neighbors, sims, lambda j: R[u].get(j) if u >= 0 else None, k, min_k, mode, mu,
        row_means, row_bias, col_bias)[pick])
