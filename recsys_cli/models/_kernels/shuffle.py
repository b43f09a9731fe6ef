"""Seeded in-place Fisher-Yates shuffles for SGD visiting orders, each with a pure-Python twin.

Driven by SplitMix64 streams (`splitmix`): the same (seed, stream) gives the same order on
every machine and thread count, for a fraction of the cost of `Generator.permutation`
plus a gather. Seeds are uint64 (`splitmix.seed64`); every length must be below 2**32.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from recsys_cli.models._kernels.splitmix import StreamRef, below, stream


@njit(cache=True)
def shuffle_together(a, b, c, seed, epoch):
    """Shuffle three parallel 1-D arrays in place by one permutation (stream `epoch` of `seed`)."""
    state = stream(seed, epoch)
    for t in range(a.shape[0] - 1, 0, -1):
        state, j = below(state, t + 1)
        a[t], a[j] = a[j], a[t]
        b[t], b[j] = b[j], b[t]
        c[t], c[j] = c[j], c[t]


def shuffle_together_ref(a, b, c, seed, epoch) -> None:
    """Pure-Python twin of `shuffle_together` (works on lists too)."""
    rs = StreamRef(int(seed), epoch)
    for t in range(len(a) - 1, 0, -1):
        j = rs.below(t + 1)
        for x in (a, b, c):
            x[t], x[j] = x[j], x[t]


@njit(cache=True)
def shuffle_rows(indptr, seed):
    """Positions 0..indptr[-1]-1 with each CSR row's span shuffled within itself (stream r of `seed` for row r)."""
    out = np.arange(indptr[-1])
    for r in range(indptr.shape[0] - 1):
        lo = indptr[r]
        state = stream(seed, r)
        for t in range(indptr[r + 1] - 1, lo, -1):
            state, j = below(state, t - lo + 1)
            out[t], out[lo + j] = out[lo + j], out[t]
    return out


def shuffle_rows_ref(indptr, seed) -> np.ndarray:
    """Pure-Python twin of `shuffle_rows`."""
    out = list(range(int(indptr[-1])))
    for r in range(len(indptr) - 1):
        lo, hi = int(indptr[r]), int(indptr[r + 1])
        rs = StreamRef(int(seed), r)
        for t in range(hi - 1, lo, -1):
            j = lo + rs.below(t - lo + 1)
            out[t], out[j] = out[j], out[t]
    return np.array(out, dtype=np.int64)
