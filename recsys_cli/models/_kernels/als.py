"""Explicit biased ALS kernels (exact ridge solves and conjugate gradient), with NumPy twins.

A half step updates every row's bias and factors with the other side fixed: call it for users (CSR,
X = user factors) and then for items (CSC arrays, roles swapped). A row is solved exactly (Cholesky
in float64) or improved by a few conjugate-gradient steps warm-started at its current value (float32,
gathered rows prefetched: O(nnz k) per step instead of O(nnz k^2 + k^3)). Shared pieces: linalg.py.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from recsys_cli.models._kernels.linalg import (
    AHEAD,
    BLOCK,
    CG_EPS,
    FM,
    add_gram,
    check_factors,
    cholesky_solve,
    dynamic_schedule,
    prefetch_row,
    row_chunks,
)


@njit(cache=True, fastmath=FM)
def _als_row(cols, vals, start, end, Y, by, mu, reg_x, reg_b, A, rhs, Z):
    """Ridge solve of [b, x] for one row into rhs[0], rhs[1:k+1]; False if singular. Z: (BLOCK, k+1) scratch."""
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
        if nb == BLOCK:
            add_gram(A, Z, Z, nb)
            nb = 0
    add_gram(A, Z, Z, nb)
    A[0, 0] += reg_b
    for f in range(1, K):
        A[f, f] += reg_x
    return cholesky_solve(A, rhs, K)


@njit(parallel=True, cache=True, fastmath=FM)
def _als_explicit_kernel(indptr, indices, ratings, X, Y, bx, by, mu, reg, reg_bias, scale, bounds):
    K = X.shape[1] + 1
    n_chunks = bounds.shape[0] - 1
    sse = np.zeros(n_chunks)
    for c in prange(n_chunks):
        A = np.empty((K, K))
        rhs = np.empty(K)
        Z = np.empty((BLOCK, K))
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
    check_factors(X, Y)
    bounds = row_chunks(indptr, X.shape[1] / 2.0)
    with dynamic_schedule(single_thread_blas=True):
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
    A, rhs, Z = np.empty((K, K)), np.empty(K), np.empty((BLOCK, K))
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


# ---------------------------------------------------------------- explicit biased ALS: conjugate gradient


@njit(parallel=True, cache=True, fastmath=FM)
def _als_cg_kernel(indptr, indices, ratings, X, Y, bx, by, mu, reg, reg_bias, scale, cg_steps, want_sse, bounds):
    k = X.shape[1]
    n_chunks = bounds.shape[0] - 1
    sse = np.zeros(n_chunks)
    mu32 = np.float32(mu)
    for c in prange(n_chunks):
        r = np.empty(k, np.float32)
        p = np.empty(k, np.float32)
        ap = np.empty(k, np.float32)
        for u in range(bounds[c], bounds[c + 1]):
            start, end = indptr[u], indptr[u + 1]
            n = np.float32(end - start) if scale else np.float32(1.0)
            lx, lb = np.float32(reg) * n, np.float32(reg_bias) * n
            x = X[u]
            b = bx[u]
            # unknowns w = [b, x], z_i = [1, y_i]; r = Z^T (t - Z w) - D w with t_i = r_ui - mu - by_i
            r0 = -lb * b
            for f in range(k):
                r[f] = -lx * x[f]
            for nz in range(start, end):
                if nz + AHEAD < end:
                    prefetch_row(Y, indices[nz + AHEAD])
                i = indices[nz]
                y = Y[i]
                e = ratings[nz] - mu32 - by[i] - b
                for f in range(k):
                    e -= y[f] * x[f]
                r0 += e
                for f in range(k):
                    r[f] += e * y[f]
            p0 = r0
            rs = r0 * r0
            for f in range(k):
                p[f] = r[f]
            for f in range(k):  # (a sum only in a loop that only reads: see linalg.FM)
                rs += r[f] * r[f]
            for _ in range(cg_steps):
                if rs < CG_EPS:
                    break
                ap0 = lb * p0
                for f in range(k):
                    ap[f] = lx * p[f]
                for nz in range(start, end):
                    if nz + AHEAD < end:
                        prefetch_row(Y, indices[nz + AHEAD])
                    y = Y[indices[nz]]
                    d = p0
                    for f in range(k):
                        d += y[f] * p[f]
                    ap0 += d
                    for f in range(k):
                        ap[f] += d * y[f]
                pap = p0 * ap0
                for f in range(k):
                    pap += p[f] * ap[f]
                if not pap > 0:
                    break
                alpha = rs / pap
                b += alpha * p0
                r0 -= alpha * ap0
                rs_new = r0 * r0
                for f in range(k):
                    x[f] += alpha * p[f]
                    r[f] -= alpha * ap[f]
                for f in range(k):
                    rs_new += r[f] * r[f]
                beta = rs_new / rs
                p0 = r0 + beta * p0
                for f in range(k):
                    p[f] = r[f] + beta * p[f]
                rs = rs_new
            bx[u] = b
            if want_sse:
                s = 0.0
                for nz in range(start, end):
                    i = indices[nz]
                    y = Y[i]
                    e = ratings[nz] - mu32 - by[i] - b
                    for f in range(k):
                        e -= y[f] * x[f]
                    s += e * e
                sse[c] += s
    return sse.sum()


def als_explicit_half_step_cg(indptr, indices, ratings, X, Y, bx, by, mu: float, reg: float, reg_bias: float,
                              scale_reg_by_count: bool, cg_steps: int, want_sse: bool = True) -> float:
    """Improve every row's bias bx[u] and factors X[u] in place by `cg_steps` conjugate-gradient steps.

    Same objective as `als_explicit_half_step`, warm-started at the current values: each step costs
    two passes over the row's ratings, O(nnz k), instead of the exact solve's O(nnz k^2 + k^3).
    Returns the SSE after the update, or 0.0 when `want_sse` is False (saves one pass).
    """
    check_factors(X, Y)
    if bx.dtype != np.float32 or by.dtype != np.float32:
        raise ValueError("bx and by must be float32")
    bounds = row_chunks(indptr, X.shape[1] / 4.0)
    with dynamic_schedule():
        return float(_als_cg_kernel(indptr, indices, ratings, X, Y, bx, by, np.float64(mu), np.float64(reg),
                                    np.float64(reg_bias), bool(scale_reg_by_count), int(cg_steps), bool(want_sse),
                                    bounds))


def als_explicit_half_step_cg_ref(indptr, indices, ratings, X, Y, bx, by, mu, reg, reg_bias, scale_reg_by_count,
                                  cg_steps, want_sse=True) -> float:
    """Reference twin of `als_explicit_half_step_cg`: the same CG in float64 NumPy, row by row."""
    k = X.shape[1]
    sse = 0.0
    for u in range(len(indptr) - 1):
        cols = indices[indptr[u]:indptr[u + 1]]
        n = len(cols) if scale_reg_by_count else 1
        Z = np.hstack([np.ones((len(cols), 1)), Y[cols].astype(np.float64)])
        D = np.array([reg_bias * n] + [reg * n] * k)
        t = ratings[indptr[u]:indptr[u + 1]].astype(np.float64) - mu - by[cols]
        w = np.concatenate([[bx[u]], X[u]]).astype(np.float64)
        r = Z.T @ (t - Z @ w) - D * w
        p, rs = r.copy(), r @ r
        for _ in range(cg_steps):
            if rs < CG_EPS:
                break
            ap = Z.T @ (Z @ p) + D * p
            pap = p @ ap
            if not pap > 0:
                break
            alpha = rs / pap
            w += alpha * p
            r -= alpha * ap
            rs_new = r @ r
            p = r + (rs_new / rs) * p
            rs = rs_new
        bx[u], X[u] = w[0], w[1:]
        if want_sse:
            e = t - Z @ np.concatenate([[bx[u]], X[u]]).astype(np.float64)
            sse += float(e @ e)
    return sse
