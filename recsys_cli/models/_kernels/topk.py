"""Row-wise top-n selection for large score batches (Numba, parallel over rows), with a NumPy twin.

Semantics shared with `recsys_cli.models.base.topk` (the NumPy path used for small batches in a
process that has not loaded this module, so that a one-user `recsys recommend` never imports Numba): best first, ties go to the lower item
index, -inf and NaN are never returned (their slots hold index -1 and score NaN). Each row keeps a
size-n min-heap of its best (score, index) pairs; a later index never displaces an equal score,
which gives the tie rule for free. One pass over the row, one comparison for most entries.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _worse(va, ia, vb, ib):
    """True if (va, ia) ranks below (vb, ib)."""
    return va < vb or (va == vb and ia > ib)


@njit(cache=True)
def _sift_down(hv, hi, pos, size):
    while True:
        left = 2 * pos + 1
        if left >= size:
            return
        worst = left
        right = left + 1
        if right < size and _worse(hv[right], hi[right], hv[left], hi[left]):
            worst = right
        if _worse(hv[worst], hi[worst], hv[pos], hi[pos]):
            hv[pos], hv[worst] = hv[worst], hv[pos]
            hi[pos], hi[worst] = hi[worst], hi[pos]
            pos = worst
        else:
            return


_BLOCK = 16  # entries whose maximum is checked against the heap's worst before looking at each one
_FM = {"nsz", "arcp", "contract", "reassoc"}  # no nnan/ninf: masked scores are -inf and must stay so


@njit(cache=True, inline="always")
def _offer(hv, hi, size, n, v, j):
    """Offer (v, j) to the heap holding `size` entries; returns the new size."""
    if not v > -np.inf:  # -inf and NaN are never recommended
        return size
    if size < n:
        pos = size  # sift up: the heap's root is its worst entry
        hv[pos] = v
        hi[pos] = j
        while pos > 0:
            parent = (pos - 1) // 2
            if _worse(hv[pos], hi[pos], hv[parent], hi[parent]):
                hv[pos], hv[parent] = hv[parent], hv[pos]
                hi[pos], hi[parent] = hi[parent], hi[pos]
                pos = parent
            else:
                break
        return size + 1
    if v > hv[0]:  # equal scores never displace: the earlier (lower) index wins the tie
        hv[0] = v
        hi[0] = j
        _sift_down(hv, hi, 0, size)
    return size


@njit(cache=True, fastmath=_FM, inline="always")
def _topk_row(row, n, out_idx, out_val):
    """The top-n of one row into out_idx/out_val (length n, pre-filled with -1 / NaN)."""
    m = row.shape[0]
    hv = np.empty(n, np.float32)
    hi = np.empty(n, np.int64)
    size = 0
    j0 = 0
    while j0 < m:
        j1 = min(j0 + _BLOCK, m)
        if size == n:  # full heap: skip the whole block when nothing in it beats the worst kept
            bm = -np.inf  # NaN never raises it (comparisons with NaN are false)
            for j in range(j0, j1):
                bm = row[j] if row[j] > bm else bm
            if not bm > hv[0]:
                j0 = j1
                continue
        for j in range(j0, j1):
            size = _offer(hv, hi, size, n, row[j], j)
        j0 = j1
    # pop worst-first into the tail: the output comes out best first
    for k in range(size - 1, -1, -1):
        out_val[k] = hv[0]
        out_idx[k] = hi[0]
        size -= 1
        hv[0] = hv[size]
        hi[0] = hi[size]
        _sift_down(hv, hi, 0, size)


@njit(parallel=True, cache=True, fastmath=_FM)
def _topk_kernel(scores, n, out_idx, out_val):
    for r in prange(scores.shape[0]):
        _topk_row(scores[r], n, out_idx[r], out_val[r])


@njit(cache=True, fastmath=_FM)
def _topk_serial(scores, n, out_idx, out_val):
    """`_topk_kernel` on the calling thread: for a few rows (one user's request), where waking Numba's
    thread pool would cost more than the rows."""
    for r in range(scores.shape[0]):
        _topk_row(scores[r], n, out_idx[r], out_val[r])


def topk_numba(scores: np.ndarray, n: int, *, parallel: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-n (int32 indices, float32 values) of a float32 (b, m) batch; see the module docstring.
    parallel=False: on the calling thread (a few rows)."""
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    b = scores.shape[0]
    idx = np.full((b, n), -1, np.int32)
    val = np.full((b, n), np.nan, np.float32)
    if n > 0 and scores.shape[1] > 0:
        (_topk_kernel if parallel else _topk_serial)(scores, min(n, scores.shape[1]), idx, val)
    return idx, val


def topk_numba_ref(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference twin of `topk_numba`: a full stable sort of every row."""
    b, m = scores.shape
    idx = np.full((b, n), -1, np.int32)
    val = np.full((b, n), np.nan, np.float32)
    for r in range(b):
        ok = np.flatnonzero(scores[r] > -np.inf)
        order = ok[np.lexsort((ok, -scores[r, ok].astype(np.float64)))][:n]
        idx[r, : len(order)] = order
        val[r, : len(order)] = scores[r, order]
    return idx, val


@njit(parallel=True, cache=True)
def mask_seen(scores, users, indptr, indices):
    """scores[r, items user r has seen] = -inf for every row r (users: index of each row's user)."""
    for r in prange(users.shape[0]):
        u = users[r]
        for p in range(indptr[u], indptr[u + 1]):
            scores[r, indices[p]] = -np.inf
