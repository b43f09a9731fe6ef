"""ALS kernels: explicit biased ALS and implicit ALS (Hu, Koren & Volinsky 2008), with NumPy twins.

Conventions: factors are C-contiguous float32 (rows, k) updated in place; ratings arrive as CSR
(indptr int32/int64, indices int32, data float32). A half step updates every row of X with Y fixed;
call it for users (CSR, X=user factors) and then for items (CSC arrays, roles swapped). For iALS the
CSR data holds `conf = alpha * r` (confidence minus one) and every observed entry has preference 1.
Rows are split into chunks of equal work handed to threads dynamically; each row's result does not
depend on the thread count. A row is solved exactly (Cholesky, float64) or by conjugate gradient
(float32, with prefetching of the gathered rows, which is where the time goes on large data).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import get_num_threads, njit, prange, set_parallel_chunksize, types
from numba.core import cgutils
from numba.extending import intrinsic

# No 'nnan'/'ninf': a singular or diverging solve must still surface as a failed pivot or NaN.
_FM = {"nsz", "arcp", "contract", "reassoc"}
_F1 = np.float32(1.0)
_F0 = np.float32(0.0)
_CG_EPS = 1e-20  # squared residual norm below which CG stops (float32 noise floor)
_AHEAD = 8  # entries between prefetching a gathered row and using it
_BLOCK = 64  # entries per Gram-matrix update in the exact solves


def _check_factors(X: np.ndarray, Y: np.ndarray) -> None:
    for name, a in (("X", X), ("Y", Y)):
        if a.dtype != np.float32 or a.ndim != 2 or not a.flags.c_contiguous:
            raise ValueError(f"{name} must be a C-contiguous 2-D float32 array")
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"X and Y disagree on the factor count: {X.shape[1]} != {Y.shape[1]}")


@contextmanager
def _dynamic_schedule(single_thread_blas: bool = False):
    """Hand chunks to whichever thread is free, so a thread slowed by other processes holds nothing up.

    With `single_thread_blas`, BLAS calls made inside the kernel's threads stay single-threaded
    (nested BLAS threads would oversubscribe the cores).
    """
    if single_thread_blas:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"), _dynamic_schedule():
            yield
        return
    previous = set_parallel_chunksize(1)
    try:
        yield
    finally:
        set_parallel_chunksize(previous)


def _row_chunks(indptr: np.ndarray, row_cost: float) -> np.ndarray:
    """Row boundaries splitting the rows into chunks of roughly equal work (nnz + row_cost per row)."""
    n_rows = indptr.shape[0] - 1
    n_chunks = max(1, min(8 * get_num_threads(), n_rows))
    work = indptr[1:].astype(np.float64) + row_cost * np.arange(1, n_rows + 1)
    cuts = np.searchsorted(work, work[-1] * np.arange(1, n_chunks) / n_chunks) if n_rows else []
    return np.concatenate(([0], cuts, [n_rows])).astype(np.int64)


# ---------------------------------------------------------------- prefetch (also used by bpr.py)

# The intrinsic is named by pointer type: opaque pointers (LLVM >= 15) take the short name.
_PREFETCH = "llvm.prefetch.p0" if llvm_binding.llvm_version_info[0] >= 15 else "llvm.prefetch.p0i8"


@intrinsic
def _prefetch(typingctx, arr, idx):
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
def _prefetch_row(A, r):
    row = A[r]
    for f in range(0, row.shape[0], 16):  # 16 float32 = one 64-byte cache line
        _prefetch(row, f)
    _prefetch(row, row.shape[0] - 1)


# ---------------------------------------------------------------- dense helpers


@njit(cache=True, fastmath=_FM)
def _cholesky_solve(A, b, n):
    """Solve A x = b in place (x -> b) from A's lower triangle; False if A is not positive definite."""
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


@njit(cache=True, fastmath=_FM)
def _add_gram(A, W, Z, nb):
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


# ---------------------------------------------------------------- explicit biased ALS


@njit(cache=True, fastmath=_FM)
def _als_row(cols, vals, start, end, Y, by, mu, reg_x, reg_b, A, rhs, Z):
    """Ridge solve of [b, x] for one row into rhs[0], rhs[1:k+1]; False if singular. Z: (_BLOCK, k+1) scratch."""
    K = Y.shape[1] + 1
    A[:K, :K] = 0.0
    rhs[:K] = 0.0
    nb = 0
    for nz in range(start, end):
        i = cols[nz]
        t = np.float64(vals[nz]) - mu - by[i]
        Z[nb, 0] = 1.0
        rhs[0] += t
        for f in range(K - 1):
            Z[nb, f + 1] = Y[i, f]
            rhs[f + 1] += t * Y[i, f]
        nb += 1
        if nb == _BLOCK:
            _add_gram(A, Z, Z, nb)
            nb = 0
    _add_gram(A, Z, Z, nb)
    A[0, 0] += reg_b
    for f in range(1, K):
        A[f, f] += reg_x
    return _cholesky_solve(A, rhs, K)


@njit(parallel=True, cache=True, fastmath=_FM)
def _als_explicit_kernel(indptr, indices, ratings, X, Y, bx, by, mu, reg, reg_bias, scale, bounds):
    K = X.shape[1] + 1
    n_chunks = bounds.shape[0] - 1
    sse = np.zeros(n_chunks)
    for c in prange(n_chunks):
        A = np.empty((K, K))
        rhs = np.empty(K)
        Z = np.empty((_BLOCK, K))
        for u in range(bounds[c], bounds[c + 1]):
            start, end = indptr[u], indptr[u + 1]
            n = end - start if scale else 1
            ok = _als_row(indices, ratings, start, end, Y, by, mu, reg * n, reg_bias * n, A, rhs, Z)
            if not ok:
                rhs[:K] = 0.0
            bx[u] = rhs[0]
            for f in range(K - 1):
                X[u, f] = rhs[f + 1]
            s = 0.0
            for nz in range(start, end):
                i = indices[nz]
                pred = mu + by[i] + bx[u]
                for f in range(K - 1):
                    pred += X[u, f] * Y[i, f]
                e = ratings[nz] - pred
                s += e * e
            sse[c] += s
    return sse.sum()


def als_explicit_half_step(indptr, indices, ratings, X, Y, bx, by, mu: float, reg: float, reg_bias: float,
                           scale_reg_by_count: bool) -> float:
    """Exactly re-solve every row's bias bx[u] and factors X[u] with Y, by fixed; returns the new SSE.

    Minimises sum_i (r_ui - mu - by_i - bx_u - X_u.Y_i)^2 + reg*|X_u|^2 + reg_bias*bx_u^2, with both
    regularisers multiplied by the row's rating count when `scale_reg_by_count` (weighted-lambda ALS).
    A row whose system is singular (reg = 0 and too few ratings) gets zeros. The SSE is the plain sum
    of squared errors over these ratings after the update (no regularisation terms).
    """
    _check_factors(X, Y)
    bounds = _row_chunks(indptr, X.shape[1] / 2.0)
    with _dynamic_schedule(single_thread_blas=True):
        return float(_als_explicit_kernel(indptr, indices, ratings, X, Y, bx, by, np.float64(mu), np.float64(reg),
                                          np.float64(reg_bias), bool(scale_reg_by_count), bounds))


def als_explicit_half_step_ref(indptr, indices, ratings, X, Y, bx, by, mu, reg, reg_bias,
                               scale_reg_by_count) -> float:
    """Reference twin of `als_explicit_half_step`: one dense np.linalg.solve per row."""
    sse = 0.0
    k = X.shape[1]
    for u in range(len(indptr) - 1):
        cols = indices[indptr[u]:indptr[u + 1]]
        r = ratings[indptr[u]:indptr[u + 1]].astype(np.float64)
        n = len(cols) if scale_reg_by_count else 1
        Z = np.hstack([np.ones((len(cols), 1)), Y[cols].astype(np.float64)])
        D = np.diag([reg_bias * n] + [reg * n] * k)
        try:
            w = np.linalg.solve(Z.T @ Z + D, Z.T @ (r - mu - by[cols]))
        except np.linalg.LinAlgError:
            w = np.zeros(k + 1)
        bx[u], X[u] = w[0], w[1:]
        e = r - (mu + by[cols] + bx[u] + Y[cols].astype(np.float64) @ X[u].astype(np.float64))
        sse += float(e @ e)
    return sse


def als_fold_in(item_indices, ratings, Y, by, mu: float, reg: float, reg_bias: float,
                scale_reg_by_count: bool = False) -> tuple[float, np.ndarray]:
    """Bias and float32 factors (bx, x) for one new user's ratings with the items' Y and by fixed."""
    K = Y.shape[1] + 1
    A, rhs, Z = np.empty((K, K)), np.empty(K), np.empty((_BLOCK, K))
    n = len(item_indices) if scale_reg_by_count else 1
    ok = _als_row(np.asarray(item_indices, np.int32), np.asarray(ratings, np.float32), 0, len(item_indices),
                  Y, by, np.float64(mu), np.float64(reg * n), np.float64(reg_bias * n), A, rhs, Z)
    if not ok:
        rhs[:] = 0.0
    return float(rhs[0]), rhs[1:].astype(np.float32)


def als_fold_in_ref(item_indices, ratings, Y, by, mu, reg, reg_bias, scale_reg_by_count=False):
    """Reference twin of `als_fold_in` (via the half-step reference on a one-row matrix)."""
    X, bx = np.zeros((1, Y.shape[1]), np.float32), np.zeros(1, np.float32)
    als_explicit_half_step_ref(np.array([0, len(item_indices)]), np.asarray(item_indices), np.asarray(ratings),
                               X, Y, bx, by, mu, reg, reg_bias, scale_reg_by_count)
    return float(bx[0]), X[0]


# ---------------------------------------------------------------- implicit ALS: conjugate gradient


@njit(parallel=True, cache=True, fastmath=_FM)
def _ials_cg_kernel(indptr, indices, conf, X, Y, G, cg_steps, bounds):
    k = X.shape[1]
    for c in prange(bounds.shape[0] - 1):
        r = np.empty(k, np.float32)
        p = np.empty(k, np.float32)
        ap = np.empty(k, np.float32)
        for u in range(bounds[c], bounds[c + 1]):
            x = X[u]
            # r = b - A x, with A = G + sum_i c_i y_i y_i^T (G holds YtY + reg*I), b = sum_i (1 + c_i) y_i
            for a in range(k):
                s = _F0
                for b in range(k):
                    s += G[a, b] * x[b]
                r[a] = -s
            for nz in range(indptr[u], indptr[u + 1]):
                if nz + _AHEAD < indptr[u + 1]:  # gathered rows: start the miss early
                    _prefetch_row(Y, indices[nz + _AHEAD])
                y = Y[indices[nz]]
                ci = conf[nz]
                d = _F0
                for f in range(k):
                    d += y[f] * x[f]
                w = (_F1 + ci) - ci * d
                for f in range(k):
                    r[f] += w * y[f]
            rs = _F0
            for f in range(k):
                rs += r[f] * r[f]
                p[f] = r[f]
            for _ in range(cg_steps):
                if rs < _CG_EPS:
                    break
                for a in range(k):
                    s = _F0
                    for b in range(k):
                        s += G[a, b] * p[b]
                    ap[a] = s
                for nz in range(indptr[u], indptr[u + 1]):
                    if nz + _AHEAD < indptr[u + 1]:
                        _prefetch_row(Y, indices[nz + _AHEAD])
                    y = Y[indices[nz]]
                    d = _F0
                    for f in range(k):
                        d += y[f] * p[f]
                    w = conf[nz] * d
                    for f in range(k):
                        ap[f] += w * y[f]
                pap = _F0
                for f in range(k):
                    pap += p[f] * ap[f]
                if not pap > 0:
                    break
                alpha = rs / pap
                rs_new = _F0
                for f in range(k):
                    x[f] += alpha * p[f]
                    r[f] -= alpha * ap[f]
                    rs_new += r[f] * r[f]
                beta = rs_new / rs
                for f in range(k):
                    p[f] = r[f] + beta * p[f]
                rs = rs_new


def _regularised(YtY: np.ndarray, reg: float) -> np.ndarray:
    G = np.array(YtY, dtype=np.float32, order="C")
    G[np.diag_indices_from(G)] += np.float32(reg)
    return G


def ials_half_step_cg(indptr, indices, conf, X, Y, YtY, reg: float, cg_steps: int) -> None:
    """Improve every row of X in place by `cg_steps` conjugate-gradient steps warm-started at X.

    Solves (YtY + C_u + reg*I) x_u = Y^T (1 + conf_u) approximately (Takacs et al. 2011); conf is the
    CSR data (alpha * r), YtY = gram(Y). Three steps per half step are usually enough.
    """
    _check_factors(X, Y)
    bounds = _row_chunks(indptr, X.shape[1] / 4.0)
    with _dynamic_schedule():
        _ials_cg_kernel(indptr, indices, conf, X, Y, _regularised(YtY, reg), int(cg_steps), bounds)


def ials_half_step_cg_ref(indptr, indices, conf, X, Y, YtY, reg, cg_steps) -> None:
    """Reference twin of `ials_half_step_cg`: the same CG in float64 NumPy, row by row."""
    A0 = YtY.astype(np.float64) + reg * np.eye(X.shape[1])
    for u in range(len(indptr) - 1):
        Yu = Y[indices[indptr[u]:indptr[u + 1]]].astype(np.float64)
        cu = conf[indptr[u]:indptr[u + 1]].astype(np.float64)
        x = X[u].astype(np.float64)
        r = Yu.T @ (1.0 + cu) - A0 @ x - Yu.T @ (cu * (Yu @ x))
        p, rs = r.copy(), r @ r
        for _ in range(cg_steps):
            if rs < _CG_EPS:
                break
            ap = A0 @ p + Yu.T @ (cu * (Yu @ p))
            alpha = rs / (p @ ap)
            x += alpha * p
            r -= alpha * ap
            rs_new = r @ r
            p = r + (rs_new / rs) * p
            rs = rs_new
        X[u] = x


# ---------------------------------------------------------------- implicit ALS: exact solve


@njit(cache=True, fastmath=_FM)
def _ials_row(cols, conf, start, end, Y, G, reg, A, rhs, Z, W):
    """Exact iALS solve for one row into rhs[:k]; False if singular. Z, W: (_BLOCK, k) scratch."""
    k = Y.shape[1]
    for a in range(k):
        for b in range(a + 1):
            A[a, b] = G[a, b]
        A[a, a] += reg
    rhs[:k] = 0.0
    nb = 0
    for nz in range(start, end):
        i = cols[nz]
        ci = np.float64(conf[nz])
        for f in range(k):
            Z[nb, f] = Y[i, f]
            W[nb, f] = ci * Y[i, f]
            rhs[f] += (1.0 + ci) * Y[i, f]
        nb += 1
        if nb == _BLOCK:
            _add_gram(A, W, Z, nb)
            nb = 0
    _add_gram(A, W, Z, nb)
    return _cholesky_solve(A, rhs, k)


@njit(parallel=True, cache=True, fastmath=_FM)
def _ials_cholesky_kernel(indptr, indices, conf, X, Y, G, reg, bounds):
    k = X.shape[1]
    for c in prange(bounds.shape[0] - 1):
        A = np.empty((k, k))
        rhs = np.empty(k)
        Z = np.empty((_BLOCK, k))
        W = np.empty((_BLOCK, k))
        for u in range(bounds[c], bounds[c + 1]):
            if not _ials_row(indices, conf, indptr[u], indptr[u + 1], Y, G, reg, A, rhs, Z, W):
                rhs[:] = 0.0
            for f in range(k):
                X[u, f] = rhs[f]


def ials_half_step_cholesky(indptr, indices, conf, X, Y, YtY, reg: float) -> None:
    """Exactly re-solve every row of X in place: (YtY + sum_i conf_i y_i y_i^T + reg*I) x = sum_i (1+conf_i) y_i.

    Costs O(nnz k^2 + rows k^3): the accurate but slower sibling of `ials_half_step_cg`.
    """
    _check_factors(X, Y)
    bounds = _row_chunks(indptr, X.shape[1] ** 2 / 6.0)
    with _dynamic_schedule(single_thread_blas=True):
        _ials_cholesky_kernel(indptr, indices, conf, X, Y, YtY.astype(np.float64), np.float64(reg), bounds)


def ials_half_step_cholesky_ref(indptr, indices, conf, X, Y, YtY, reg) -> None:
    """Reference twin of `ials_half_step_cholesky`: np.linalg.solve per row."""
    for u in range(len(indptr) - 1):
        X[u] = ials_fold_in_ref(indices[indptr[u]:indptr[u + 1]], conf[indptr[u]:indptr[u + 1]], Y, YtY, reg)


def ials_fold_in(item_indices, conf, Y, YtY, reg: float) -> np.ndarray:
    """Float32 factors of one new user from their items and confidences (alpha * r), Y fixed."""
    k = Y.shape[1]
    A, rhs, Z, W = np.empty((k, k)), np.empty(k), np.empty((_BLOCK, k)), np.empty((_BLOCK, k))
    ok = _ials_row(np.asarray(item_indices, np.int32), np.asarray(conf, np.float32), 0, len(item_indices),
                   Y, YtY.astype(np.float64), np.float64(reg), A, rhs, Z, W)
    return rhs.astype(np.float32) if ok else np.zeros(k, np.float32)


def ials_fold_in_ref(item_indices, conf, Y, YtY, reg) -> np.ndarray:
    """Reference twin of `ials_fold_in`: the normal equations via np.linalg.solve."""
    Yu = Y[np.asarray(item_indices)].astype(np.float64)
    c = np.asarray(conf, np.float64)
    A = YtY.astype(np.float64) + reg * np.eye(Y.shape[1]) + (Yu.T * c) @ Yu
    return np.linalg.solve(A, Yu.T @ (1.0 + c)).astype(np.float32)


# ---------------------------------------------------------------- implicit ALS: training loss


@njit(parallel=True, cache=True, fastmath=_FM)
def _ials_loss_kernel(indptr, indices, conf, X, Y, G, bounds):
    k = X.shape[1]
    n_chunks = bounds.shape[0] - 1
    out = np.zeros(n_chunks)
    for c in prange(n_chunks):
        total = 0.0
        for u in range(bounds[c], bounds[c + 1]):
            for a in range(k):  # x^T YtY x: every entry counted as unobserved (weight 1, p = 0)
                s = 0.0
                for b in range(k):
                    s += G[a, b] * X[u, b]
                total += s * X[u, a]
            for nz in range(indptr[u], indptr[u + 1]):
                i = indices[nz]
                d = 0.0
                for f in range(k):
                    d += X[u, f] * Y[i, f]
                total += (1.0 + conf[nz]) * (1.0 - d) ** 2 - d * d  # swap in the observed term
        out[c] = total
    return out.sum()


def ials_loss(indptr, indices, conf, X, Y, reg: float) -> float:
    """Full iALS objective sum_ui c_ui (p_ui - x_u.y_i)^2 + reg (|X|^2 + |Y|^2), without a dense matrix.

    Divide by n_rows * n_cols + conf.sum() for a per-entry figure comparable across datasets.
    """
    _check_factors(X, Y)
    G = Y.astype(np.float64).T @ Y.astype(np.float64)
    with _dynamic_schedule():
        loss = _ials_loss_kernel(indptr, indices, conf, X, Y, G, _row_chunks(indptr, X.shape[1] / 2.0))
    norms = float(np.square(X, dtype=np.float64).sum() + np.square(Y, dtype=np.float64).sum())
    return float(loss) + reg * norms


def ials_loss_ref(indptr, indices, conf, X, Y, reg) -> float:
    """Reference twin of `ials_loss`: dense P and C matrices (tiny data only)."""
    n_rows, n_cols = len(indptr) - 1, Y.shape[0]
    P, C = np.zeros((n_rows, n_cols)), np.ones((n_rows, n_cols))
    for u in range(n_rows):
        P[u, indices[indptr[u]:indptr[u + 1]]] = 1.0
        C[u, indices[indptr[u]:indptr[u + 1]]] += conf[indptr[u]:indptr[u + 1]]
    S = X.astype(np.float64) @ Y.astype(np.float64).T
    return float((C * (P - S) ** 2).sum() + reg * ((X.astype(np.float64) ** 2).sum() + (Y.astype(np.float64) ** 2).sum()))
