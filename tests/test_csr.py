"""build_csr (Numba counting sort) against scipy's own coo -> csr on tricky inputs."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_cli.data.csr import build_csr, build_csr_ref


def same(a, b) -> None:
    assert a.shape == b.shape and a.nnz == b.nnz
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.data, b.data, rtol=1e-6)
    assert a.data.dtype == np.float32 and a.has_sorted_indices


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_unsorted_rows_with_empty_rows_match_scipy(dtype):
    rng = np.random.default_rng(0)
    pairs = rng.choice(30 * 20, 200, replace=False)
    rows, cols = (pairs // 20).astype(dtype), (pairs % 20).astype(dtype)
    rows[rows == 7] = 8  # row 7 empty
    vals = rng.integers(1, 6, len(rows)).astype(np.float32)
    keep = np.unique(rows.astype(np.int64) * 20 + cols, return_index=True)[1]
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    order = rng.permutation(len(rows))
    a = build_csr(rows[order], cols[order], vals[order], (31, 20))  # last row empty too
    same(a, build_csr_ref(rows[order], cols[order], vals[order], (31, 20)))
    assert a.indptr[8] == a.indptr[7] and a.indptr[31] == a.indptr[30]


def test_duplicates_are_summed_like_scipy():
    rows = np.array([0, 1, 0, 0, 2, 1], np.int32)
    cols = np.array([3, 0, 3, 1, 2, 0], np.int32)
    vals = np.array([1, 2, 3, 4, 5, 6], np.float32)
    a = build_csr(rows, cols, vals, (3, 4))
    same(a, build_csr_ref(rows, cols, vals, (3, 4)))
    np.testing.assert_array_equal(a.toarray(), [[0, 4, 0, 4], [8, 0, 0, 0], [0, 0, 5, 0]])


def test_empty_input():
    a = build_csr(np.array([], np.int32), np.array([], np.int32), np.array([], np.float32), (3, 2))
    assert a.nnz == 0 and a.shape == (3, 2) and list(a.indptr) == [0, 0, 0, 0]


def test_row_entries_lists_each_rows_positions_in_order():
    from recsys_cli.models._kernels.csr import row_entries

    indptr = np.array([0, 2, 2, 5, 6])
    assert row_entries(indptr, np.array([2, 0, 1, 3])).tolist() == [2, 3, 4, 0, 1, 5]
    assert row_entries(indptr, np.array([], np.int64)).tolist() == []


def test_take_rows_is_the_sub_csr_of_the_rows_in_order():
    import scipy.sparse as sp

    from recsys_cli.models._kernels.csr import take_rows

    m = sp.random(7, 9, density=0.4, format="csr", random_state=3)
    rows = np.array([5, 0, 5, 2, 6])
    ptr, idx = take_rows(m.indptr, m.indices, rows)
    want = m[rows]
    assert ptr.dtype == np.int64
    np.testing.assert_array_equal(ptr, want.indptr)
    np.testing.assert_array_equal(idx, want.indices)
    ptr, idx = take_rows(m.indptr, m.indices, np.array([], np.int64))
    assert ptr.tolist() == [0] and idx.size == 0
