"""Content-model kernel: per-pair TF-IDF profile ratios over sparse item features, with a NumPy twin.

Kept apart from `content.py` so that scoring users for `recommend` (dense profiles times the
sparse features, in NumPy/scipy) never imports Numba; only batch pair prediction uses this.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def pair_ratios(A, B, rows, items, f_indptr, f_indices, f_data, shrink):
    """(A[rows] . F[items]) / (B[rows] . F[items] + shrink) per pair, F given as CSR arrays; float64."""
    out = np.empty(len(rows), np.float64)
    for p in prange(len(rows)):
        r, i = rows[p], items[p]
        num = 0.0
        den = 0.0
        for k in range(f_indptr[i], f_indptr[i + 1]):
            c, w = f_indices[k], np.float64(f_data[k])
            num += A[r, c] * w
            den += B[r, c] * w
        out[p] = num / (den + shrink)
    return out


def pair_ratios_ref(A, B, rows, items, f_indptr, f_indices, f_data, shrink):
    """Plain-NumPy twin of `pair_ratios` (dense feature rows, one einsum)."""
    F = np.zeros((len(f_indptr) - 1, A.shape[1]), np.float64)
    for i in range(F.shape[0]):
        F[i, f_indices[f_indptr[i] : f_indptr[i + 1]]] = f_data[f_indptr[i] : f_indptr[i + 1]]
    num = np.einsum("ij,ij->i", A[rows].astype(np.float64), F[items])
    den = np.einsum("ij,ij->i", B[rows].astype(np.float64), F[items])
    return num / (den + shrink)
