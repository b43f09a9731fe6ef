"""k-NN kernels: top-k similarity lists and Surprise-style predictions (ranking scores: `knn_scores`).

Roles. x is the "entity" whose neighbours are used and y the "target" it is rated against:
user-based x = users, y = items; item-based x = items, y = users (the caller transposes).
The x-major ratings CSR has rows = x, columns = y, no duplicate entries.

Neighbour lists replace the dense n x n matrix: `neighbors` int32 (n_x, k_max) padded with -1,
`sims` float32 and `support` int32 (number of common y) alongside, best first (similarity
descending, ties to the lower index). A row lists every other x with support >= min_support
(>= max(2, min_support) for pearson_baseline) - similarity may be <= 0 - up to k_max of them.
Similarities follow scikit-surprise's `similarities.pyx` formulas exactly (Pearson over the
common columns with their own means; 0 where a denominator is 0 or support is too low).

Predictions follow Surprise's KNNBasic / KNNWithMeans / KNNBaseline: for (x, y), the first k
entries of x's list that rated y, of which those with sim > 0 count. Surprise picks the k most
similar among *all* raters of y; our lists stop at k_max, so results are identical when
k_max >= n_x - 1 (and otherwise differ only when x has fewer than k raters of y in its list).
Unlike Surprise, x is never its own neighbour (it only matters when predicting a training pair).
"""

from __future__ import annotations

import contextlib
import math

import numba
import numpy as np
from numba import njit, prange

KINDS = ("cosine", "msd", "pearson", "pearson_baseline")
MODES = ("basic", "means", "baseline")
_EMPTY = np.zeros(1, np.float64)


@contextlib.contextmanager
def _threads(n: int | None):
    if not n:
        yield numba.get_num_threads()
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield numba.get_num_threads()
    finally:
        numba.set_num_threads(previous)


def _csr(indptr, indices, data, dtype):
    return (np.asarray(indptr, np.int64), np.asarray(indices, np.int32), np.asarray(data, dtype))


def _f64(a):
    return _EMPTY if a is None else np.ascontiguousarray(a, np.float64)


def _check_index(name: str, idx: np.ndarray, bound: int) -> None:
    """Kernels do not bounds-check: refuse indices >= bound up front (-1 = unknown is allowed)."""
    if idx.size and int(idx.max()) >= bound:
        raise ValueError(f"{name} index {int(idx.max())} out of range (< {bound} expected)")


# ------------------------------------------------------------------ similarities


@njit(cache=True, inline="always")
def _better(s1, i1, s2, i2):
    return s1 > s2 or (s1 == s2 and i1 < i2)


@njit(cache=True)
def _sift_down(hs, hi, hf, pos, size):
    # Min-heap on "worse": the root is the worst entry kept.
    while True:
        c = 2 * pos + 1
        if c >= size:
            return
        if c + 1 < size and _better(hs[c], hi[c], hs[c + 1], hi[c + 1]):
            c += 1
        if not _better(hs[pos], hi[pos], hs[c], hi[c]):
            return
        hs[pos], hs[c] = hs[c], hs[pos]
        hi[pos], hi[c] = hi[c], hi[pos]
        hf[pos], hf[c] = hf[c], hf[pos]
        pos = c


@njit(cache=True)
def _heap_offer(hs, hi, hf, size, s, j, f):
    k = hs.shape[0]
    if size < k:
        pos = size
        hs[pos], hi[pos], hf[pos] = s, j, f
        while pos > 0:
            parent = (pos - 1) // 2
            if not _better(hs[parent], hi[parent], hs[pos], hi[pos]):
                break
            hs[pos], hs[parent] = hs[parent], hs[pos]
            hi[pos], hi[parent] = hi[parent], hi[pos]
            hf[pos], hf[parent] = hf[parent], hf[pos]
            pos = parent
        return size + 1
    if _better(s, j, hs[0], hi[0]):
        hs[0], hi[0], hf[0] = s, j, f
        _sift_down(hs, hi, hf, 0, size)
    return size


@njit(cache=True)
def _similarity(kind, f, a, b, c, d, e, shrinkage):
    if kind == 1:  # msd
        return 1.0 / (a / f + 1.0)
    if kind == 2:  # pearson, centred on the means over the common columns
        vx = f * b - d * d
        vy = f * c - e * e
        if vx <= 0.0 or vy <= 0.0:
            return 0.0
        return (f * a - d * e) / math.sqrt(vx * vy)
    den = math.sqrt(b * c)  # cosine, or pearson_baseline on baseline residuals
    if den == 0.0:
        return 0.0
    s = a / den
    if kind == 3:
        s *= (f - 1.0) / (f - 1.0 + shrinkage)
    return s


@njit(cache=True, parallel=True)
def _topk_kernel(indptr, indices, data, cptr, cidx, cdata, kind, k_max, min_sup, shrinkage, n_chunks):
    n = indptr.shape[0] - 1
    nbr = np.full((n, k_max), -1, np.int32)
    sim = np.zeros((n, k_max), np.float32)
    sup = np.zeros((n, k_max), np.int32)
    for ch in prange(n_chunks):
        freq = np.zeros(n, np.int32)
        acc = np.zeros((n, 5), np.float64)  # xy (or squared diff), xx, yy, x, y per candidate
        touched = np.empty(n, np.int32)
        hs = np.empty(k_max, np.float32)
        hi = np.empty(k_max, np.int32)
        hf = np.empty(k_max, np.int32)
        for x in range(ch, n, n_chunks):
            nt = 0
            for p in range(indptr[x], indptr[x + 1]):
                rx = data[p]
                col = indices[p]
                for q in range(cptr[col], cptr[col + 1]):
                    y = cidx[q]
                    if y == x:
                        continue
                    ry = cdata[q]
                    if freq[y] == 0:
                        touched[nt] = y
                        nt += 1
                    freq[y] += 1
                    if kind == 1:
                        acc[y, 0] += (rx - ry) * (rx - ry)
                    else:
                        acc[y, 0] += rx * ry
                        acc[y, 1] += rx * rx
                        acc[y, 2] += ry * ry
                        if kind == 2:
                            acc[y, 3] += rx
                            acc[y, 4] += ry
            size = 0
            for t in range(nt):
                y = touched[t]
                f = freq[y]
                if f >= min_sup:
                    s = _similarity(kind, np.float64(f), acc[y, 0], acc[y, 1], acc[y, 2],
                                    acc[y, 3], acc[y, 4], shrinkage)
                    size = _heap_offer(hs, hi, hf, size, np.float32(s), y, f)
                freq[y] = 0
                for a in range(5):
                    acc[y, a] = 0.0
            for end in range(size - 1, 0, -1):  # heapsort: best entry ends up first
                hs[0], hs[end] = hs[end], hs[0]
                hi[0], hi[end] = hi[end], hi[0]
                hf[0], hf[end] = hf[end], hf[0]
                _sift_down(hs, hi, hf, 0, end)
            for t in range(size):
                nbr[x, t] = hi[t]
                sim[x, t] = hs[t]
                sup[x, t] = hf[t]
    return nbr, sim, sup


def _prepare(indptr, indices, data, n_cols, kind, min_support, baselines):
    if kind not in KINDS:
        raise ValueError(f"unknown similarity {kind!r}; choose one of {', '.join(KINDS)}")
    indptr, indices, data = _csr(indptr, indices, data, np.float64)
    if kind == "pearson_baseline":
        if baselines is None:
            raise ValueError("pearson_baseline needs baselines=(mu, row_bias, col_bias)")
        mu, row_bias, col_bias = baselines
        rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        data = data - (float(mu) + _f64(row_bias)[rows] + _f64(col_bias)[indices])
    min_sup = max(2 if kind == "pearson_baseline" else 1, int(min_support))
    return indptr, indices, data, min_sup


def topk_similarities(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, n_cols: int, *,
                      kind: str, k_max: int, min_support: int = 1, shrinkage: float = 100.0,
                      baselines: tuple | None = None, n_threads: int | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k_max neighbours of every row of an x-major ratings CSR -> (neighbors, sims, support).

    kind: cosine | msd | pearson | pearson_baseline. pearson_baseline needs
    `baselines=(mu, row_bias, col_bias)`: residuals r - (mu + row_bias[x] + col_bias[y]) are
    formed here (user-based: (mu, bu, bi); item-based: (mu, bi, bu)); `shrinkage` applies to it
    only. Memory is O(nnz + n_rows * (k_max + threads)); never n_rows^2.
    """
    if k_max < 1:
        raise ValueError("k_max must be at least 1")
    import scipy.sparse as sp

    indptr, indices, data, min_sup = _prepare(indptr, indices, data, n_cols, kind, min_support, baselines)
    n_rows = len(indptr) - 1
    csc = sp.csr_matrix((data, indices, indptr), shape=(n_rows, int(n_cols))).tocsc()
    with _threads(n_threads) as nt:
        n_chunks = max(1, min(n_rows, 4 * nt))
        return _topk_kernel(indptr, indices, data, np.asarray(csc.indptr, np.int64),
                            np.asarray(csc.indices, np.int32), np.asarray(csc.data, np.float64),
                            KINDS.index(kind), int(k_max), min_sup, float(shrinkage), n_chunks)


def similarity_matrix_ref(indptr, indices, data, n_cols: int, *, kind: str, min_support: int = 1,
                          shrinkage: float = 100.0, baselines: tuple | None = None):
    """Dense (sim, support) for tiny data, plain loops over pairs; sim is 0 off-support, 1 on the diagonal."""
    indptr, indices, data, min_sup = _prepare(indptr, indices, data, n_cols, kind, min_support, baselines)
    n = len(indptr) - 1
    rows = [dict(zip(indices[indptr[x]:indptr[x + 1]].tolist(), data[indptr[x]:indptr[x + 1]].tolist(), strict=True))
            for x in range(n)]
    sim = np.eye(n)
    support = np.zeros((n, n), np.int64)
    for x in range(n):
        for y in range(n):
            common = sorted(set(rows[x]) & set(rows[y]))
            support[x, y] = len(common)
            if x == y or len(common) < min_sup:
                continue
            a = np.array([rows[x][c] for c in common])
            b = np.array([rows[y][c] for c in common])
            if kind == "msd":
                sim[x, y] = 1.0 / (np.mean((a - b) ** 2) + 1.0)
                continue
            if kind == "pearson":
                a, b = a - a.mean(), b - b.mean()
            den = math.sqrt(float(np.sum(a * a) * np.sum(b * b)))
            sim[x, y] = 0.0 if den == 0 else float(np.sum(a * b)) / den
            if kind == "pearson_baseline":
                sim[x, y] *= (len(common) - 1) / (len(common) - 1 + shrinkage)
    return sim, support


def topk_similarities_ref(indptr, indices, data, n_cols: int, *, kind: str, k_max: int,
                          min_support: int = 1, shrinkage: float = 100.0, baselines: tuple | None = None):
    """Reference twin of `topk_similarities`, via the dense matrix of `similarity_matrix_ref`."""
    sim, support = similarity_matrix_ref(indptr, indices, data, n_cols, kind=kind, min_support=min_support,
                                         shrinkage=shrinkage, baselines=baselines)
    min_sup = max(2 if kind == "pearson_baseline" else 1, int(min_support))
    n = sim.shape[0]
    nbr = np.full((n, k_max), -1, np.int32)
    out = np.zeros((n, k_max), np.float32)
    sup = np.zeros((n, k_max), np.int32)
    for x in range(n):
        cand = np.array([y for y in range(n) if y != x and support[x, y] >= min_sup], np.int64)
        s32 = sim[x, cand].astype(np.float32)
        keep = cand[np.lexsort((cand, -s32))][:k_max]
        nbr[x, :len(keep)] = keep
        out[x, :len(keep)] = sim[x, keep]
        sup[x, :len(keep)] = support[x, keep]
    return nbr, out, sup


# ------------------------------------------------------------------ predictions


def csr_row_means(indptr: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Mean of each CSR row's values (float64; 0 for an empty row): KNNWithMeans's means."""
    indptr = np.asarray(indptr, np.int64)
    counts = np.diff(indptr)
    rows = np.repeat(np.arange(len(counts)), counts)
    sums = np.bincount(rows, weights=np.asarray(data, np.float64), minlength=len(counts))
    return np.divide(sums, counts, out=np.zeros(len(counts)), where=counts > 0)


def _sorted_csr(indptr, indices, data):
    """The CSR with column indices sorted within rows (a sorted copy only when needed)."""
    indptr, indices, data = _csr(indptr, indices, data, np.float32)
    d = np.diff(indices)
    inside = np.ones(len(d), bool)
    starts = indptr[1:-1]
    starts = starts[(starts > 0) & (starts < len(indices))]
    inside[starts - 1] = False
    if np.all(d[inside] > 0):
        return indptr, indices, data
    import scipy.sparse as sp

    m = sp.csr_matrix((data, indices, indptr), shape=(len(indptr) - 1, int(indices.max()) + 1))
    m.sort_indices()
    return _csr(m.indptr, m.indices, m.data, np.float32)


def _mode_arrays(mode, row_means, row_bias, col_bias, n_x: int):
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "means" and row_means is None:
        raise ValueError("mode 'means' needs row_means")
    if mode == "baseline" and (row_bias is None or col_bias is None):
        raise ValueError("mode 'baseline' needs row_bias and col_bias")
    per_row = {"means": row_means, "baseline": row_bias}.get(mode)
    if per_row is not None and len(per_row) < n_x:
        raise ValueError(f"mode {mode!r} needs one value per row ({n_x}), got {len(per_row)}")
    return MODES.index(mode), _f64(row_means), _f64(row_bias), _f64(col_bias)


@njit(cache=True)
def _find(indptr, indices, row, col):
    lo = indptr[row]
    hi = indptr[row + 1]
    while lo < hi:
        mid = (lo + hi) >> 1
        v = indices[mid]
        if v < col:
            lo = mid + 1
        elif v > col:
            hi = mid
        else:
            return mid
    return -1


@njit(cache=True, inline="always")
def _offset(mode, nb, y, mu, means, rb, cb):
    if mode == 0:
        return 0.0
    if mode == 1:
        return means[nb]
    return mu + rb[nb] + cb[y]


@njit(cache=True)
def _finish(mode, agg_sum, x, y, num, den, cnt, min_k, mu, means, rb, cb):
    """(estimate, impossible) from the neighbourhood sums, with Surprise's fallbacks."""
    if x < 0 or y < 0:
        est = mu
        if mode == 2:
            est += (rb[x] if x >= 0 else 0.0) + (cb[y] if y >= 0 else 0.0)
        return (0.0 if agg_sum else est), True
    ok = cnt >= min_k and den > 0.0
    if agg_sum:
        return (num if ok else 0.0), not ok
    if mode == 0:
        return (num / den if ok else mu), not ok
    base = means[x] if mode == 1 else mu + rb[x] + cb[y]
    return (base + num / den if ok else base), not ok


@njit(cache=True, parallel=True)
def _predict_kernel(rows, targets, nbr, sims, indptr, indices, data, k, min_k, mode, mu, means, rb, cb):
    n = rows.shape[0]
    pred = np.empty(n, np.float32)
    imp = np.empty(n, np.bool_)
    for p in prange(n):
        x = rows[p]
        y = targets[p]
        num = 0.0
        den = 0.0
        cnt = 0
        if x >= 0 and y >= 0:
            for j in range(nbr.shape[1]):
                nb = nbr[x, j]
                s = np.float64(sims[x, j])
                if cnt >= k or nb < 0 or s <= 0.0:  # sorted: nothing after a non-positive sim counts
                    break
                q = _find(indptr, indices, nb, y)
                if q >= 0:
                    num += s * (np.float64(data[q]) - _offset(mode, nb, y, mu, means, rb, cb))
                    den += s
                    cnt += 1
        est, bad = _finish(mode, False, x, y, num, den, cnt, min_k, mu, means, rb, cb)
        pred[p] = est
        imp[p] = bad
    return pred, imp


def knn_predict(rows: np.ndarray, targets: np.ndarray, neighbors: np.ndarray, sims: np.ndarray,
                indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, *, mu: float, k: int = 40,
                min_k: int = 1, mode: str = "basic", row_means: np.ndarray | None = None,
                row_bias: np.ndarray | None = None, col_bias: np.ndarray | None = None,
                n_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Surprise KNNBasic/WithMeans/Baseline estimates for (x, y) pairs -> (pred float32, impossible bool).

    User-based: rows = users, targets = items, CSR users x items, row_means/row_bias per user,
    col_bias per item. Item-based: rows = items, targets = users, CSR items x users, row_* per
    item, col_bias per user. A -1 row or target is unknown. `impossible` marks pairs with fewer
    than min_k positive-similarity neighbours (or an unknown id); their value is the fallback:
    mu (basic, and means with an unknown id), row mean (means), mu + known biases (baseline).
    """
    m, means, rb, cb = _mode_arrays(mode, row_means, row_bias, col_bias, np.shape(neighbors)[0])
    indptr, indices, data = _sorted_csr(indptr, indices, data)
    rows = np.asarray(rows, np.int64)
    targets = np.asarray(targets, np.int64)
    if rows.shape != targets.shape:
        raise ValueError("rows and targets must have the same length")
    _check_index("row", rows, min(neighbors.shape[0], len(indptr) - 1))
    if mode == "baseline":
        _check_index("target", targets, len(cb))
    with _threads(n_threads):
        return _predict_kernel(rows, targets, np.asarray(neighbors, np.int32), np.asarray(sims, np.float32),
                               indptr, indices, data, int(k), int(min_k), m, float(mu), means, rb, cb)


def _predict_one_ref(x, y, neighbors, sims, rating_of, k, min_k, mode, mu, means, rb, cb):
    """Plain-Python Surprise-style estimate of one pair; rating_of(nb) is nb's rating of y or None."""
    if x < 0 or y < 0:
        return (mu + (rb[x] if x >= 0 else 0.0) + (cb[y] if y >= 0 else 0.0) if mode == "baseline" else mu,
                True, 0.0, 0)
    cands = [(float(s), int(nb), rating_of(int(nb))) for nb, s in zip(neighbors[x], sims[x], strict=True) if nb >= 0]
    cands = [c for c in cands if c[2] is not None]
    num = den = 0.0
    cnt = 0
    for s, nb, r in sorted(cands, key=lambda c: -c[0])[:k]:  # stable: list order among ties
        if s > 0:
            off = 0.0 if mode == "basic" else means[nb] if mode == "means" else mu + rb[nb] + cb[y]
            num += s * (r - off)
            den += s
            cnt += 1
    ok = cnt >= min_k and den > 0
    base = 0.0 if mode == "basic" else means[x] if mode == "means" else mu + rb[x] + cb[y]
    fallback = mu if mode == "basic" else base
    return (base + num / den if ok else fallback), not ok, (num if ok else 0.0), cnt


def _rows_as_dicts(indptr, indices, data):
    return [dict(zip(indices[indptr[x]:indptr[x + 1]].tolist(), data[indptr[x]:indptr[x + 1]].tolist(), strict=True))
            for x in range(len(indptr) - 1)]


def knn_predict_ref(rows, targets, neighbors, sims, indptr, indices, data, *, mu: float, k: int = 40,
                    min_k: int = 1, mode: str = "basic", row_means=None, row_bias=None, col_bias=None):
    """Plain-Python twin of `knn_predict`."""
    R = _rows_as_dicts(*_csr(indptr, indices, data, np.float64))
    out = [_predict_one_ref(int(x), int(y), neighbors, sims, lambda nb, y=int(y): R[nb].get(y), k, min_k,
                            mode, mu, row_means, row_bias, col_bias) for x, y in zip(rows, targets, strict=True)]
    return np.array([o[0] for o in out], np.float32), np.array([o[1] for o in out], bool)
