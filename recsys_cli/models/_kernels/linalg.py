"""Shared pieces of the ALS-family kernels: row chunking with a dynamic schedule, prefetching of
gathered rows, and small dense solves (float64 Cholesky, blocked Gram updates).

Conventions: factors are C-contiguous float32 (rows, k) updated in place; interactions arrive as CSR
(indptr int32/int64, indices int32, data float32). Rows are split into chunks of equal work handed to
threads dynamically, so a row's result never depends on the thread count.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import get_num_threads, njit, set_parallel_chunksize, types
from numba.core import cgutils
from numba.extending import intrinsic

# No 'nnan'/'ninf': a singular or diverging solve must still surface as a failed pivot or NaN.
# Under 'reassoc', keep every sum in a loop that only reads: LLVM guards a vectorised loop that also stores
# with a run-time check on how far apart its buffers are and takes the scalar loop when two lie close, and
# the two loops round the sum differently, so the result would depend on where the heap put the buffers
# (fm_cg had five such loops; the contract's same-seed test shifts the heap between fits to catch it).
FM = {"nsz", "arcp", "contract", "reassoc"}
F1 = np.float32(1.0)
F0 = np.float32(0.0)
CG_EPS = 1e-20  # squared residual norm below which CG stops (float32 noise floor)
AHEAD = 8  # entries between prefetching a gathered row and using it
BLOCK = 64  # entries per Gram-matrix update in the exact solves


def check_factors(X: np.ndarray, Y: np.ndarray) -> None:
    for name, a in (("X", X), ("Y", Y)):
        if a.dtype != np.float32 or a.ndim != 2 or not a.flags.c_contiguous:
            raise ValueError(f"{name} must be a C-contiguous 2-D float32 array")
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"X and Y disagree on the factor count: {X.shape[1]} != {Y.shape[1]}")


@contextmanager
def dynamic_schedule(single_thread_blas: bool = False):
    """Hand chunks to whichever thread is free, so a thread slowed by other processes holds nothing up.

    With `single_thread_blas`, BLAS calls made inside the kernel's threads stay single-threaded
    (nested BLAS threads would oversubscribe the cores).
    """
    if single_thread_blas:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"), dynamic_schedule():
            yield
        return
    previous = set_parallel_chunksize(1)
    try:
        yield
    finally:
        set_parallel_chunksize(previous)


def row_chunks(indptr: np.ndarray, row_cost: float) -> np.ndarray:
    """Row boundaries splitting the rows into chunks of roughly equal work (nnz + row_cost per row)."""
    n_rows = indptr.shape[0] - 1
    n_chunks = max(1, min(8 * get_num_threads(), n_rows))
    work = indptr[1:].astype(np.float64) + row_cost * np.arange(1, n_rows + 1)
    cuts = np.searchsorted(work, work[-1] * np.arange(1, n_chunks) / n_chunks) if n_rows else []
    return np.concatenate(([0], cuts, [n_rows])).astype(np.int64)


# ---------------------------------------------------------------- prefetch

# The intrinsic is named by pointer type: opaque pointers (LLVM >= 15) take the short name.
_PREFETCH = "llvm.prefetch.p0" if llvm_binding.llvm_version_info[0] >= 15 else "llvm.prefetch.p0i8"


@intrinsic
def prefetch(typingctx, arr, idx):
    """Ask the CPU to start loading arr[idx] (1-D array) into cache; never changes a result."""
    if not isinstance(arr, types.Array) or arr.ndim != 1 or not isinstance(idx, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, sig.args[0], ary, [args[1]], wraparound=False)
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            _PREFETCH)
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])  # read, keep in all caches, data
        return context.get_dummy_value()

    return types.void(arr, idx), codegen


@njit(cache=True, inline="always")
def prefetch_row(A, r):
    row = A[r]
    for f in range(0, row.shape[0], 16):  # 16 float32 = one 64-byte cache line
        prefetch(row, f)
    prefetch(row, row.shape[0] - 1)


# ---------------------------------------------------------------- dense helpers


@njit(cache=True, fastmath=FM)
def cholesky(A, n):
    """In place: A's lower triangle becomes L with A = L L^T; False if A is not (numerically) positive definite."""
    for j in range(n):
        s = A[j, j]
        for t in range(j):
            s -= A[j, t] * A[j, t]
        if not s > 1e-13 * A[j, j]:  # (numerically) singular; also catches NaN
            return False
        d = math.sqrt(s)
        A[j, j] = d
        for i in range(j + 1, n):
            s = A[i, j]
            for t in range(j):
                s -= A[i, t] * A[j, t]
            A[i, j] = s / d
    return True


@njit(cache=True, fastmath=FM)
def cholesky_solve(A, b, n):
    """Solve A x = b in place (x -> b) from A's lower triangle; False if A is not positive definite."""
    if not cholesky(A, n):
        return False
    for i in range(n):
        s = b[i]
        for t in range(i):
            s -= A[i, t] * b[t]
        b[i] = s / A[i, i]
    for i in range(n - 1, -1, -1):
        s = b[i]
        for t in range(i + 1, n):
            s -= A[t, i] * b[t]
        b[i] = s / A[i, i]
    return True


@njit(cache=True, fastmath=FM)
def add_gram(A, W, Z, nb):
    """A's lower triangle += W[:nb]^T Z[:nb]: one BLAS product for a full block, rank-1 updates for a few rows."""
    K = Z.shape[1]
    if nb >= 8:
        G = np.dot(W[:nb].T, Z[:nb])
        for a in range(K):
            for b in range(a + 1):
                A[a, b] += G[a, b]
        return
    for r in range(nb):
        for a in range(K):
            wa = W[r, a]
            for b in range(a + 1):
                A[a, b] += wa * Z[r, b]


def gram(Y: np.ndarray) -> np.ndarray:
    """Y^T Y as a C-contiguous float32 (k, k) matrix (the iALS 'YtY' term)."""
    return np.ascontiguousarray(Y.T @ Y, dtype=np.float32)


def gram_ref(Y: np.ndarray) -> np.ndarray:
    """Reference twin of `gram`: a float64 sum of outer products."""
    G = np.zeros((Y.shape[1], Y.shape[1]))
    for y in Y.astype(np.float64):
        G += np.outer(y, y)
    return G.astype(np.float32)
