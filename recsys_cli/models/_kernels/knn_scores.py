"""Dense k-NN scores of every item for a batch of users, for top-N ranking (see `knn` for roles).

aggregate='mean' gives exactly what `knn.knn_predict` gives for each (user, item) pair -
Surprise's neighbourhood (the first k positive-similarity neighbours that rated the target,
within the stored k_max list) and its fallbacks - so ranking and rating prediction agree.
aggregate='sum' ranks by evidence: the sum of sim * (r - offset) over every stored
positive-similarity neighbour that rated the target (k does not cap it; 0 with fewer than
min_k). On ml-100k it ranks better than the capped sum (nDCG@10 item-knn 0.197 vs 0.193,
user-knn 0.226 vs 0.205) and it is one sparse (or, for small catalogues, dense) product:
each user's weighted rows of an operand matrix, summed (`weighted_row_sums`).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from recsys_cli.models._kernels.csr import row_entries
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

DENSE_MAX_BYTES = 32 << 20  # a sum operand this small (about L3) and >= 1/32 full is kept dense
_BLOCK = 16  # dense sums run in float32 over this many rows at a time, then add into float64

# ------------------------------------------------------------------ dense scores for ranking


@njit(cache=True, parallel=True)
def _user_scores_kernel(users, nbr, sims, indptr, indices, data, n_cols, k, min_k, mode,
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
                out[b, y] = _finish(mode, False, x, y, num[y], den[y], cnt[y], min_k, mu, means, rb, cb)[0]
                num[y] = 0.0
                den[y] = 0.0
                cnt[y] = 0
    return out


@njit(cache=True, parallel=True)
def _item_scores_kernel(users, inv_ptr, inv_item, inv_sim, nbr, sims, indptr, indices, data,
                        k, min_k, mode, mu, means, rb, cb, n_chunks):
    B = users.shape[0]
    n_items = nbr.shape[0]
    out = np.empty((B, n_items), np.float32)
    for ch in prange(n_chunks):
        num = np.zeros(n_items, np.float64)
        den = np.zeros(n_items, np.float64)
        cnt = np.zeros(n_items, np.int32)
        res = np.zeros(n_items, np.float64)  # the user's residual on each rated item
        rated = np.zeros(n_items, np.int32)
        for b in range(ch, B, n_chunks):
            u = users[b]
            if u >= 0:
                start, end = indptr[u], indptr[u + 1]
                # Pass 1: every rated j adds to each item i whose list holds j (its inverted list), uncapped.
                for q in range(start, end):
                    j = indices[q]
                    rt = np.float64(data[q]) - _offset(mode, j, u, mu, means, rb, cb)
                    res[j] = rt
                    rated[j] = 1
                    for pp in range(inv_ptr[j], inv_ptr[j + 1]):
                        i = inv_item[pp]
                        s = np.float64(inv_sim[pp])
                        num[i] += s * rt
                        den[i] += s
                        cnt[i] += 1
                # Pass 2: an item that met more than k rated neighbours keeps only the first k in its
                # own list order (as knn_predict does): walk that list again.
                if end - start > k:
                    for i in range(n_items):
                        if cnt[i] > k:
                            nu = 0.0
                            de = 0.0
                            c = 0
                            for p in range(nbr.shape[1]):
                                j = nbr[i, p]
                                s = np.float64(sims[i, p])
                                if j < 0 or s <= 0.0:
                                    break
                                w = rated[j]  # branch-free: res is 0 off the rated items
                                nu += s * res[j]
                                de += s * w
                                c += w
                                if c == k:
                                    break
                            num[i] = nu
                            den[i] = de
                            cnt[i] = c
                for q in range(start, end):
                    rated[indices[q]] = 0
                    res[indices[q]] = 0.0
            for i in range(n_items):
                out[b, i] = _finish(mode, False, i, u, num[i], den[i], cnt[i], min_k, mu, means, rb, cb)[0]
                num[i] = 0.0
                den[i] = 0.0
                cnt[i] = 0
    return out


def invert_neighbors(neighbors: np.ndarray, sims: np.ndarray) -> tuple[np.ndarray, ...]:
    """Reverse the positive-similarity lists: for each j, the items i whose list holds j, and that sim.

    Returns (indptr int64 (n+1), item int32, sim float32), sorted by j then i.
    Build it once per fitted item-knn model and pass it to `item_knn_scores(inverted=...)`.
    """
    neighbors, sims = np.asarray(neighbors), np.asarray(sims, np.float32)
    if neighbors.shape != sims.shape or neighbors.ndim != 2:
        raise ValueError(f"neighbors {neighbors.shape} and sims {sims.shape} must be the same 2-D shape")
    if neighbors.size and neighbors.max() >= neighbors.shape[0]:
        raise IndexError("a neighbour index is outside the item range")
    return _invert_kernel(np.ascontiguousarray(neighbors, np.int32), np.ascontiguousarray(sims))


@njit(cache=True)
def _invert_kernel(nb, sims):
    # A counting sort by neighbour j; scanning items (then ranks) in order keeps each list sorted by i.
    n, width = nb.shape
    indptr = np.zeros(n + 1, np.int64)
    for i in range(n):
        for r in range(width):
            j = nb[i, r]
            if j >= 0 and sims[i, r] > 0:
                indptr[j + 1] += 1
    for j in range(n):
        indptr[j + 1] += indptr[j]
    fill = indptr[:-1].copy()
    item = np.empty(indptr[n], np.int32)
    sim = np.empty(indptr[n], np.float32)
    for i in range(n):
        for r in range(width):
            j = nb[i, r]
            if j >= 0 and sims[i, r] > 0:
                item[fill[j]] = i
                sim[fill[j]] = sims[i, r]
                fill[j] += 1
    return indptr, item, sim


def invert_neighbors_ref(neighbors: np.ndarray, sims: np.ndarray) -> tuple[np.ndarray, ...]:
    """Plain-NumPy twin of `invert_neighbors` (a stable argsort)."""
    neighbors = np.asarray(neighbors)
    item, rank = np.nonzero((neighbors >= 0) & (np.asarray(sims) > 0))  # ordered by item, then rank
    j = neighbors[item, rank]
    order = np.argsort(j, kind="stable")
    indptr = np.concatenate([[0], np.cumsum(np.bincount(j, minlength=neighbors.shape[0]))]).astype(np.int64)
    return indptr, item[order].astype(np.int32), np.asarray(sims, np.float32)[item[order], rank[order]]


# ------------------------------------------------------------------ aggregate='sum': weighted row sums


@njit(cache=True, parallel=True, fastmath={"contract"})
def _row_sums_dense(ptr, rows, w, M, n_chunks, out):
    B = ptr.shape[0] - 1
    n = M.shape[1]
    for ch in prange(n_chunks):
        acc = np.zeros(n, np.float64)
        part = np.zeros(n, np.float32)  # float32 runs (8 lanes) of at most BLOCK rows, added into float64
        for b in range(ch, B, n_chunks):
            lo = ptr[b]
            while lo < ptr[b + 1]:
                hi = min(lo + _BLOCK, ptr[b + 1])
                t = lo
                while t + 4 <= hi:  # four rows per pass over `part`: a quarter of the stores
                    r0, r1, r2, r3 = rows[t], rows[t + 1], rows[t + 2], rows[t + 3]
                    w0, w1, w2, w3 = w[t], w[t + 1], w[t + 2], w[t + 3]
                    for c in range(n):  # contiguous: vectorised
                        part[c] += (w0 * M[r0, c] + w1 * M[r1, c]) + (w2 * M[r2, c] + w3 * M[r3, c])
                    t += 4
                for tail in range(t, hi):
                    r0, w0 = rows[tail], w[tail]
                    for c in range(n):
                        part[c] += w0 * M[r0, c]
                for c in range(n):
                    acc[c] += part[c]
                    part[c] = 0.0
                lo = hi
            for c in range(n):
                out[b, c] = acc[c]
                acc[c] = 0.0


@njit(cache=True, parallel=True)
def _row_sums_sparse(ptr, rows, w, m_ptr, m_idx, m_val, n_cols, min_k, n_chunks, out):
    B = ptr.shape[0] - 1
    # With min_k <= 1 nothing is counted (a column no entry fed is 0 anyway): one scattered
    # add per entry instead of two. The branch is loop-invariant; LLVM hoists it.
    counting = min_k > 1
    for ch in prange(n_chunks):
        acc = np.zeros(n_cols, np.float64)
        cnt = np.zeros(n_cols if counting else 0, np.int32)
        for b in range(ch, B, n_chunks):
            for t in range(ptr[b], ptr[b + 1]):
                r = rows[t]
                wt = np.float64(w[t])
                for q in range(m_ptr[r], m_ptr[r + 1]):
                    c = m_idx[q]
                    acc[c] += wt * np.float64(m_val[q])
                    if counting:
                        cnt[c] += 1
            for c in range(n_cols):
                out[b, c] = acc[c] if not counting or cnt[c] >= min_k else 0.0
                acc[c] = 0.0
                if counting:
                    cnt[c] = 0


def sum_operand(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, n_cols: int, *,
                min_k: int = 1) -> np.ndarray | tuple:
    """The matrix whose rows `weighted_row_sums` adds: a float32 CSR triple, or dense float32 if small.

    Dense only when it fits in DENSE_MAX_BYTES, is at least 1/32 full and min_k <= 1 (a
    dense matrix cannot tell a stored zero from a missing entry, so cannot count them).
    """
    indptr, indices, data = _csr(indptr, indices, data, np.float32)
    n_rows = len(indptr) - 1
    size = n_rows * int(n_cols)
    if min_k > 1 or size * 4 > DENSE_MAX_BYTES or len(data) * 32 < size:
        return indptr, indices, data
    M = np.zeros((n_rows, int(n_cols)), np.float32)
    M[np.repeat(np.arange(n_rows), np.diff(indptr)), indices] = data
    return M


def weighted_row_sums(ptr: np.ndarray, rows: np.ndarray, w: np.ndarray, operand, n_cols: int, *,
                      min_k: int = 1, n_threads: int | None = None) -> np.ndarray:
    """out[b] = sum of w[t] * operand[rows[t]] over t in ptr[b]:ptr[b+1] -> float32 (len(ptr)-1, n_cols).

    With a CSR operand, a column fed by fewer than min_k stored entries is 0; a dense operand
    (from `sum_operand`) counts nothing, so it is only built for min_k <= 1.
    """
    ptr, w = np.asarray(ptr, np.int64), np.asarray(w, np.float32)
    rows = np.asarray(rows)
    if rows.dtype != np.int32:
        rows = rows.astype(np.int64, copy=False)
    B = len(ptr) - 1
    # Allocated here, not in the kernel: a NumPy-owned array the caller may mask in place
    # (base._writable copies arrays a Numba kernel returns, since it cannot tell them from views).
    out = np.empty((B, int(n_cols)), np.float32)
    with _threads(n_threads) as nt:
        chunks = max(1, min(B, 4 * nt))
        if isinstance(operand, np.ndarray):
            if min_k > 1:
                raise ValueError("a dense operand cannot count neighbours: build it with sum_operand(min_k=...)")
            _row_sums_dense(ptr, rows, w, operand, chunks, out)
        else:
            _row_sums_sparse(ptr, rows, w, *operand, int(n_cols), int(min_k), chunks, out)
    return out


def weighted_row_sums_ref(ptr, rows, w, operand, n_cols: int, *, min_k: int = 1) -> np.ndarray:
    """Plain-NumPy twin of `weighted_row_sums`."""
    if isinstance(operand, np.ndarray):
        dense, stored = operand.astype(np.float64), None
    else:
        m_ptr, m_idx, m_val = operand
        dense = np.zeros((len(m_ptr) - 1, n_cols))
        stored = np.zeros(dense.shape, np.int64)
        for r in range(len(m_ptr) - 1):
            dense[r, m_idx[m_ptr[r]:m_ptr[r + 1]]] = m_val[m_ptr[r]:m_ptr[r + 1]]
            stored[r, m_idx[m_ptr[r]:m_ptr[r + 1]]] = 1
    out = np.zeros((len(ptr) - 1, n_cols))
    for b in range(len(ptr) - 1):
        sel = np.asarray(rows[ptr[b]:ptr[b + 1]], np.int64)
        out[b] = np.asarray(w[ptr[b]:ptr[b + 1]], np.float64) @ dense[sel]
        if stored is not None:
            out[b][stored[sel].sum(axis=0) < min_k] = 0.0
    return out.astype(np.float32)


def _user_rows(users: np.ndarray, neighbors: np.ndarray, sims: np.ndarray):
    """(ptr, rows, w) of the batch for user-knn sums: each user's positive-similarity neighbours.

    A neighbour list is read up to its first padding (-1) or non-positive similarity, as the
    lists are sorted by similarity; an unknown user (-1) gets an empty span.
    """
    return _user_rows_kernel(np.asarray(users, np.int64), np.asarray(neighbors, np.int32),
                             np.asarray(sims, np.float32))


@njit(cache=True)
def _user_rows_kernel(users, nb, sims):
    B, width = users.shape[0], nb.shape[1]
    ptr = np.zeros(B + 1, np.int64)
    for b in range(B):
        n = 0
        u = users[b]
        if u >= 0:
            while n < width and nb[u, n] >= 0 and sims[u, n] > 0:
                n += 1
        ptr[b + 1] = ptr[b] + n
    rows = np.empty(ptr[B], np.int32)
    w = np.empty(ptr[B], np.float32)
    for b in range(B):
        u, t = users[b], ptr[b]
        for j in range(ptr[b + 1] - t):
            rows[t + j] = nb[u, j]
            w[t + j] = sims[u, j]
    return ptr, rows, w


def _item_rows(users, indptr, indices, data, mode, mu, means, rb, cb):
    """(ptr, rows, w) of the batch for item-knn sums: each user's rated items and residuals."""
    known = users >= 0
    u = np.where(known, users, 0)
    lens = np.where(known, indptr[u + 1] - indptr[u], 0)
    pos = row_entries(indptr, users[known])
    j = indices[pos].astype(np.int64)
    w = data[pos].astype(np.float64)
    if mode == 1:
        w -= means[j]
    elif mode == 2:
        w -= mu + rb[j] + cb[np.repeat(users, lens)]
    return np.concatenate([[0], np.cumsum(lens)]).astype(np.int64), j, w


def residual_csr(indptr, indices, data, *, mode: str, mu: float, row_means=None, row_bias=None, col_bias=None):
    """The CSR with each stored r replaced by r - offset (Surprise's per-mode offset of its row and column)."""
    m, means, rb, cb = _mode_arrays(mode, row_means, row_bias, col_bias, len(indptr) - 1)
    indptr, indices, data = _csr(indptr, indices, data, np.float64)
    if m == 1:
        data = data - np.repeat(means[:len(indptr) - 1], np.diff(indptr))
    elif m == 2:
        data = data - (mu + np.repeat(rb[:len(indptr) - 1], np.diff(indptr)) + cb[indices])
    return indptr, indices, data.astype(np.float32)


def _check_aggregate(aggregate: str) -> bool:
    if aggregate not in ("mean", "sum"):
        raise ValueError(f"unknown aggregate {aggregate!r}; choose mean or sum")
    return aggregate == "sum"


def user_knn_scores(users: np.ndarray, neighbors: np.ndarray, sims: np.ndarray, indptr: np.ndarray,
                    indices: np.ndarray, data: np.ndarray, *, n_items: int, mu: float, k: int = 40,
                    min_k: int = 1, mode: str = "basic", aggregate: str = "mean",
                    row_means: np.ndarray | None = None, row_bias: np.ndarray | None = None,
                    col_bias: np.ndarray | None = None, operand=None, n_threads: int | None = None) -> np.ndarray:
    """User-based scores of every item for a batch of users -> float32 (len(users), n_items).

    CSR is users x items; neighbours, row_means and row_bias are per user, col_bias per item.
    aggregate='mean' gives exactly `knn_predict` for every (user, item), fallbacks included;
    'sum' gives the sum of sim * (r - offset) over every stored neighbour that rated the item
    (0 if fewer than min_k), which favours items many close neighbours rated. For 'sum', pass
    `operand=sum_operand(*residual_csr(...), n_items, min_k=min_k)` to reuse it across batches.
    """
    agg_sum = _check_aggregate(aggregate)
    m, means, rb, cb = _mode_arrays(mode, row_means, row_bias, col_bias, np.shape(neighbors)[0])
    indptr, indices, data = _csr(indptr, indices, data, np.float32)
    users = np.asarray(users, np.int64)
    _check_index("user", users, min(np.asarray(neighbors).shape[0], len(indptr) - 1))
    _check_index("item", indices, int(n_items))
    if mode == "baseline":
        _check_index("item", np.array([n_items - 1]), len(cb))
    if agg_sum:
        if operand is None:
            res = residual_csr(indptr, indices, data, mode=mode, mu=mu, row_means=row_means, row_bias=row_bias,
                               col_bias=col_bias)
            operand = sum_operand(*res, n_items, min_k=min_k)
        return weighted_row_sums(*_user_rows(users, neighbors, sims), operand, int(n_items), min_k=min_k,
                                 n_threads=n_threads)
    with _threads(n_threads) as nt:
        return _user_scores_kernel(users, np.asarray(neighbors, np.int32), np.asarray(sims, np.float32),
                                   indptr, indices, data, int(n_items), int(k), int(min_k), m,
                                   float(mu), means, rb, cb, max(1, min(len(users), 4 * nt)))


def item_knn_scores(users: np.ndarray, neighbors: np.ndarray, sims: np.ndarray, indptr: np.ndarray,
                    indices: np.ndarray, data: np.ndarray, *, mu: float, k: int = 40, min_k: int = 1,
                    mode: str = "basic", aggregate: str = "mean", row_means: np.ndarray | None = None,
                    row_bias: np.ndarray | None = None, col_bias: np.ndarray | None = None,
                    inverted: tuple | None = None, operand=None, n_threads: int | None = None) -> np.ndarray:
    """Item-based scores of every item for a batch of users -> float32 (len(users), n_items).

    CSR is users x items (not the items x users one given to knn_predict); neighbours,
    row_means and row_bias are per item, col_bias per user. Both aggregates walk the inverted
    lists (`invert_neighbors`; pass `inverted` to reuse it): 'sum' adds the lists of the
    user's rated items (pass `operand=sum_operand(*inverted, n_items, min_k=min_k)` to reuse
    it); 'mean' then walks again the lists of items that met more than k rated neighbours.
    Semantics as in `user_knn_scores`.
    """
    agg_sum = _check_aggregate(aggregate)
    m, means, rb, cb = _mode_arrays(mode, row_means, row_bias, col_bias, np.shape(neighbors)[0])
    indptr, indices, data = _csr(indptr, indices, data, np.float32)
    users = np.asarray(users, np.int64)
    n_items = np.asarray(neighbors).shape[0]
    _check_index("user", users, len(indptr) - 1)
    _check_index("item", indices, n_items)
    if mode == "baseline":
        _check_index("user", users, len(cb))
    if agg_sum and operand is not None:
        inv = None
    else:
        inv = inverted if inverted is not None else invert_neighbors(neighbors, sims)
    if agg_sum:
        operand = operand if operand is not None else sum_operand(*inv, n_items, min_k=min_k)
        return weighted_row_sums(*_item_rows(users, indptr, indices, data, m, mu, means, rb, cb), operand,
                                 n_items, min_k=min_k, n_threads=n_threads)
    with _threads(n_threads) as nt:
        return _item_scores_kernel(users, *inv, np.asarray(neighbors, np.int32), np.asarray(sims, np.float32),
                                   indptr, indices, data, int(k), int(min_k), m,
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
    pick, k = (2, np.shape(neighbors)[1]) if aggregate == "sum" else (0, k)  # sum: every stored neighbour
    return _scores_ref(users, n_items, lambda u, i: _predict_one_ref(
        u, i, neighbors, sims, lambda v: R[v].get(i), k, min_k, mode, mu, row_means, row_bias, col_bias)[pick])


def item_knn_scores_ref(users, neighbors, sims, indptr, indices, data, *, mu: float, k: int = 40,
                        min_k: int = 1, mode: str = "basic", aggregate: str = "mean",
                        row_means=None, row_bias=None, col_bias=None):
    """Plain-Python twin of `item_knn_scores` (CSR users x items)."""
    R = _rows_as_dicts(*_csr(indptr, indices, data, np.float64))
    pick, k = (2, np.shape(neighbors)[1]) if aggregate == "sum" else (0, k)  # sum: every stored neighbour
    return _scores_ref(users, neighbors.shape[0], lambda u, i: _predict_one_ref(
        i, u, neighbors, sims, lambda j: R[u].get(j) if u >= 0 else None, k, min_k, mode, mu,
        row_means, row_bias, col_bias)[pick])
