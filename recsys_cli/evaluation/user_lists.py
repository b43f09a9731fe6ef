"""Per-user item lists as CSR arrays (``indptr`` of n_rows + 1, ``indices``): validation and sorting.

Every metric takes held-out relevant items and excluded (seen) items this way; ``canonical_csr``
checks them and sorts each row, which the Numba metric kernels rely on.
"""

from __future__ import annotations

import numpy as np

from recsys_cli.errors import DataError


def canonical_csr(
    indptr: np.ndarray,
    indices: np.ndarray,
    n_items: int,
    *,
    n_rows: int | None = None,
    gains: np.ndarray | None = None,
    name: str = "relevant items",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate per-user item lists and return (indptr int64, indices int32 sorted per row, gains)."""
    ptr = np.asarray(indptr, dtype=np.int64).ravel()
    idx = np.asarray(indices).ravel()
    if ptr.size == 0 or ptr[0] != 0 or np.any(np.diff(ptr) < 0) or ptr[-1] != idx.size:
        raise DataError(f"{name}: indptr must start at 0, never decrease and end at len(indices)")
    if n_rows is not None and ptr.size != n_rows + 1:
        raise DataError(f"{name}: has {ptr.size - 1} users, expected {n_rows}")
    if idx.size and (idx.min() < 0 or idx.max() >= n_items):
        raise DataError(f"{name}: item index outside 0..{n_items - 1}")
    idx = idx.astype(np.int32, copy=False)
    g = None
    if gains is not None:
        g = np.asarray(gains, dtype=np.float64).ravel()
        if g.shape != idx.shape:
            raise DataError(f"{name}: gains length {g.size} differs from indices length {idx.size}")
    if idx.size < 2:
        return ptr, idx, g
    row_start = np.zeros(idx.size, dtype=bool)
    row_start[ptr[:-1][ptr[:-1] < idx.size]] = True
    if not np.all((idx[1:] > idx[:-1]) | row_start[1:]):
        rows = np.repeat(np.arange(ptr.size - 1), np.diff(ptr))
        order = np.lexsort((idx, rows))
        idx = idx[order]
        g = None if g is None else g[order]
        if np.any((idx[1:] == idx[:-1]) & ~row_start[1:]):
            raise DataError(f"{name}: an item appears twice for the same user")
    return ptr, idx, g


def empty_csr(n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR arrays of n_rows empty lists."""
    return np.zeros(n_rows + 1, dtype=np.int64), np.zeros(0, dtype=np.int32)
