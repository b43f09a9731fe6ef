"""Implicit ALS kernels (Hu, Koren & Volinsky 2008): conjugate gradient and exact solves, with NumPy twins.

The CSR data holds `conf = alpha * w` (confidence minus one) and every observed entry has preference 1.
The regulariser is `reg`, or with `scale_reg` `reg * n` for a row of n entries (weighted-lambda,
ALS-WR: the objective Spark MLlib's implicit ALS minimises, its regParam being our reg).
A row is solved exactly (Cholesky, float64) or by conjugate gradient (float32, with prefetching of
the gathered rows, which is where the time goes on large data). Shared pieces: linalg.py.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from recsys_cli.models._kernels.linalg import (
    AHEAD,
    BLOCK,
    CG_EPS,
    F0,
    F1,
    FM,
    add_gram,
    check_factors,
    cholesky_solve,
    dynamic_schedule,
    gram,
    gram_ref,
    prefetch_row,
    row_chunks,
)

__all__ = ["gram", "gram_ref"]


@njit(parallel=True, cache=True, fastmath=FM)
def _ials_cg_kernel(indptr, indices, conf, X, Y, G, reg, scale, cg_steps, bounds):
    k = X.shape[1]
    for c in prange(bounds.shape[0] - 1):
        r = np.empty(k, np.float32)
        p = np.empty(k, np.float32)
        ap = np.empty(k, np.float32)
        for u in range(bounds[c], bounds[c + 1]):
            x = X[u]
            # With scale, the row's regulariser is reg * n: G already holds reg, `extra` is the rest.
            extra = reg * np.float32(indptr[u + 1] - indptr[u] - 1) if scale else F0
            # r = b - A x, with A = G + extra*I + sum_i c_i y_i y_i^T (G holds YtY + reg*I), b = sum_i (1 + c_i) y_i
            for a in range(k):
                s = F0
                for b in range(k):
                    s += G[a, b] * x[b]
                r[a] = -s
            if scale:
                for a in range(k):
                    r[a] -= extra * x[a]
            for nz in range(indptr[u], indptr[u + 1]):
                if nz + AHEAD < indptr[u + 1]:  # gathered rows: start the miss early
                    prefetch_row(Y, indices[nz + AHEAD])
                y = Y[indices[nz]]
                ci = conf[nz]
                d = F0
                for f in range(k):
                    d += y[f] * x[f]
                w = (F1 + ci) - ci * d
                for f in range(k):
                    r[f] += w * y[f]
            rs = F0
            for f in range(k):
                p[f] = r[f]
            for f in range(k):  # (a sum only in a loop that only reads: see linalg.FM)
                rs += r[f] * r[f]
            for _ in range(cg_steps):
                if rs < CG_EPS:
                    break
                for a in range(k):
                    s = F0
                    for b in range(k):
                        s += G[a, b] * p[b]
                    ap[a] = s
                if scale:
                    for a in range(k):
                        ap[a] += extra * p[a]
                for nz in range(indptr[u], indptr[u + 1]):
                    if nz + AHEAD < indptr[u + 1]:
                        prefetch_row(Y, indices[nz + AHEAD])
                    y = Y[indices[nz]]
                    d = F0
                    for f in range(k):
                        d += y[f] * p[f]
                    w = conf[nz] * d
                    for f in range(k):
                        ap[f] += w * y[f]
                pap = F0
                for f in range(k):
                    pap += p[f] * ap[f]
                if not pap > 0:
                    break
                alpha = rs / pap
                rs_new = F0
                for f in range(k):
                    x[f] += alpha * p[f]
                    r[f] -= alpha * ap[f]
                for f in range(k):
                    rs_new += r[f] * r[f]
                beta = rs_new / rs
                for f in range(k):
                    p[f] = r[f] + beta * p[f]
                rs = rs_new


def _regularised(YtY: np.ndarray, reg: float) -> np.ndarray:
    G = np.array(YtY, dtype=np.float32, order="C")
    G[np.diag_indices_from(G)] += np.float32(reg)
    return G


def ials_half_step_cg(indptr, indices, conf, X, Y, YtY, reg: float, cg_steps: int, scale_reg: bool = False) -> None:
    """Improve every row of X in place by `cg_steps` conjugate-gradient steps warm-started at X.

    Solves (YtY + C_u + reg_u*I) x_u = Y^T (1 + conf_u) approximately (Takacs et al. 2011); conf is the
    CSR data (alpha * r), YtY = gram(Y), reg_u = reg (times the row's entry count with scale_reg).
    Three steps per half step are usually enough.
    """
    check_factors(X, Y)
    bounds = row_chunks(indptr, X.shape[1] / 4.0)
    with dynamic_schedule():
        _ials_cg_kernel(indptr, indices, conf, X, Y, _regularised(YtY, reg), np.float32(reg), bool(scale_reg),
                        int(cg_steps), bounds)


def ials_half_step_cg_ref(indptr, indices, conf, X, Y, YtY, reg, cg_steps, scale_reg=False) -> None:
    """Reference twin of `ials_half_step_cg`: the same CG in float64 NumPy, row by row."""
    for u in range(len(indptr) - 1):
        n = indptr[u + 1] - indptr[u] if scale_reg else 1
        A0 = YtY.astype(np.float64) + reg * n * np.eye(X.shape[1])
        Yu = Y[indices[indptr[u]:indptr[u + 1]]].astype(np.float64)
        cu = conf[indptr[u]:indptr[u + 1]].astype(np.float64)
        x = X[u].astype(np.float64)
        r = Yu.T @ (1.0 + cu) - A0 @ x - Yu.T @ (cu * (Yu @ x))
        p, rs = r.copy(), r @ r
        for _ in range(cg_steps):
            if rs < CG_EPS:
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


@njit(cache=True, fastmath=FM)
def _ials_row(cols, conf, start, end, Y, G, reg, A, rhs, Z, W):
    """Exact iALS solve for one row into rhs[:k]; False if singular. Z, W: (BLOCK, k) scratch."""
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
        if nb == BLOCK:
            add_gram(A, W, Z, nb)
            nb = 0
    add_gram(A, W, Z, nb)
    return cholesky_solve(A, rhs, k)


@njit(parallel=True, cache=True, fastmath=FM)
def _ials_cholesky_kernel(indptr, indices, conf, X, Y, G, reg, scale, bounds):
    k = X.shape[1]
    for c in prange(bounds.shape[0] - 1):
        A = np.empty((k, k))
        rhs = np.empty(k)
        Z = np.empty((BLOCK, k))
        W = np.empty((BLOCK, k))
        for u in range(bounds[c], bounds[c + 1]):
            reg_u = reg * (indptr[u + 1] - indptr[u]) if scale else reg
            if not _ials_row(indices, conf, indptr[u], indptr[u + 1], Y, G, reg_u, A, rhs, Z, W):
                rhs[:] = 0.0
            for f in range(k):
                X[u, f] = rhs[f]


def ials_half_step_cholesky(indptr, indices, conf, X, Y, YtY, reg: float, scale_reg: bool = False) -> None:
    """Exactly re-solve every row of X in place: (YtY + sum_i conf_i y_i y_i^T + reg_u*I) x = sum_i (1+conf_i) y_i,
    reg_u = reg, or reg times the row's entry count with `scale_reg` (weighted-lambda).

    Costs O(nnz k^2 + rows k^3): the accurate but slower sibling of `ials_half_step_cg`.
    """
    check_factors(X, Y)
    bounds = row_chunks(indptr, X.shape[1] ** 2 / 6.0)
    with dynamic_schedule(single_thread_blas=True):
        _ials_cholesky_kernel(indptr, indices, conf, X, Y, YtY.astype(np.float64), np.float64(reg), bool(scale_reg),
                              bounds)


def ials_half_step_cholesky_ref(indptr, indices, conf, X, Y, YtY, reg, scale_reg=False) -> None:
    """Reference twin of `ials_half_step_cholesky`: np.linalg.solve per row."""
    for u in range(len(indptr) - 1):
        n = indptr[u + 1] - indptr[u] if scale_reg else 1
        X[u] = ials_fold_in_ref(indices[indptr[u]:indptr[u + 1]], conf[indptr[u]:indptr[u + 1]], Y, YtY, reg * n)


def ials_fold_in(item_indices, conf, Y, YtY, reg: float) -> np.ndarray:
    """Float32 factors of one new user from their items and confidences (alpha * r), Y fixed."""
    k = Y.shape[1]
    A, rhs, Z, W = np.empty((k, k)), np.empty(k), np.empty((BLOCK, k)), np.empty((BLOCK, k))
    ok = _ials_row(np.asarray(item_indices, np.int32), np.asarray(conf, np.float32), 0, len(item_indices),
                   Y, YtY.astype(np.float64), np.float64(reg), A, rhs, Z, W)
    return rhs.astype(np.float32) if ok else np.zeros(k, np.float32)


def ials_fold_in_ref(item_indices, conf, Y, YtY, reg) -> np.ndarray:
    """Reference twin of `ials_fold_in`: the normal equations via np.linalg.solve."""
    Yu = Y[np.asarray(item_indices)].astype(np.float64)
    c = np.asarray(conf, np.float64)
    A = YtY.astype(np.float64) + reg * np.eye(Y.shape[1]) + (Yu.T * c) @ Yu
    return np.linalg.solve(A, Yu.T @ (1.0 + c)).astype(np.float32)
