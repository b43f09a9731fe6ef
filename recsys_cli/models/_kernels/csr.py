"""Row gathers on CSR arrays (plain NumPy): the kernels, the models and evaluation share them."""

from __future__ import annotations

import numpy as np


def row_entries(indptr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Positions of every stored entry of the given CSR rows, row after row, in row order (int64)."""
    rows = np.asarray(rows, np.int64)
    starts = np.asarray(indptr, np.int64)[rows]
    lengths = np.asarray(indptr, np.int64)[rows + 1] - starts
    offsets = np.cumsum(lengths) - lengths  # where each row's run begins in the output
    return np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)


def take_rows(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sub-CSR (indptr int64, indices) of the given rows, in that order (a row may repeat)."""
    rows = np.asarray(rows, np.int64)
    ptr = np.asarray(indptr, np.int64)
    out_ptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(ptr[rows + 1] - ptr[rows], out=out_ptr[1:])
    return out_ptr, np.asarray(indices)[row_entries(ptr, rows)]
