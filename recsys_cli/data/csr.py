"""Build a users x items CSR from parallel (row, col, value) arrays fast: Numba counting sort + per-row sort.

scipy's coo -> csr -> sort_indices path is single-threaded and re-sorts everything; at 25M ratings it
costs most of a second under every fit. Here rows are bucketed in one stable pass and each row is
sorted by column in parallel (rows usually arrive already sorted, which is checked first). Duplicate
(row, col) pairs are summed, as scipy's `sum_duplicates` does; `build_csr_ref` is the scipy twin.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _bucket(rows, cols, vals, n_rows):
    indptr = np.zeros(n_rows + 1, np.int64)
    for t in range(rows.shape[0]):
        indptr[rows[t] + 1] += 1
    for r in range(n_rows):
        indptr[r + 1] += indptr[r]
    fill = indptr[:-1].copy()
    indices = np.empty(rows.shape[0], np.int32)
    data = np.empty(rows.shape[0], np.float32)
    for t in range(rows.shape[0]):
        p = fill[rows[t]]
        indices[p] = cols[t]
        data[p] = vals[t]
        fill[rows[t]] = p + 1
    return indptr, indices, data


@njit(parallel=True, cache=True)
def _sort_rows(indptr, indices, data):
    """Sort each row by column (stable); returns the number of duplicate (row, col) pairs."""
    n_rows = indptr.shape[0] - 1
    dups = np.zeros(n_rows, np.int64)
    for r in prange(n_rows):
        lo, hi = indptr[r], indptr[r + 1]
        ordered = True
        for p in range(lo + 1, hi):
            if indices[p] < indices[p - 1]:
                ordered = False
                break
        if not ordered:
            order = np.argsort(indices[lo:hi], kind="mergesort")
            cols = indices[lo:hi][order]
            vals = data[lo:hi][order]
            indices[lo:hi] = cols
            data[lo:hi] = vals
        for p in range(lo + 1, hi):
            if indices[p] == indices[p - 1]:
                dups[r] += 1
    return dups.sum()


def build_csr(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, shape: tuple[int, int]):
    """scipy CSR (float32 data, int32 indices, sorted rows, duplicates summed) of the given entries."""
    import scipy.sparse as sp

    n_rows, n_cols = int(shape[0]), int(shape[1])
    indptr, indices, data = _bucket(np.asarray(rows), np.asarray(cols), np.asarray(vals, np.float32), n_rows)
    if len(data) >= 2**31:  # 64-bit index arrays, as scipy itself would use
        indices = indices.astype(np.int64)
    else:
        indptr = indptr.astype(np.int32)
    m = sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols))
    if _sort_rows(m.indptr, m.indices, m.data):
        m.sum_duplicates()
    else:
        m.has_sorted_indices = True
        m.has_canonical_format = True
    return m


def build_csr_ref(rows, cols, vals, shape):
    """Reference twin of `build_csr`: scipy's own coo -> csr, duplicates summed, rows sorted."""
    import scipy.sparse as sp

    m = sp.csr_matrix((np.asarray(vals, np.float32), (rows, cols)), shape=shape, dtype=np.float32)
    m.sum_duplicates()
    m.sort_indices()
    return m
