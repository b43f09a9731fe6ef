"""Factorization-machine kernels over a block-structured design matrix, each with a NumPy twin.

The design matrix is never built row by row. Every rating row r points at one *entity* in each
block (its user in the user block, its item in the item block), and an entity carries a short
sparse feature row (the user's one-hot and the items they rated, scaled ...), as in Rendle's
"Scaling factorization machines to relational data" (2013). With

    s_g[f] = sum_j V[f, j] x_gj,  q_g[f] = sum_j V[f, j]^2 x_gj^2,  lin_g = sum_j w_j x_gj

for entity g, the FM prediction of a row touching entities g_1..g_B is

    y = w0 + sum_b lin_b + 1/2 sum_f ((sum_b s_b[f])^2 - sum_b q_b[f]).

A coordinate update of one parameter theta (libFM's MCMC and ALS) needs, over the rows it
touches, sum h^2 and sum h e with h = dy/dtheta and e the residual. For V[f, j] in block b,
h = x (a_g + o_r) with a_g = s_g[f] - V[f, j] x (the entity's own part) and o_r the other blocks'
sum at factor f, so both sums come from five per-entity aggregates (rows, sum o, sum o^2, sum e,
sum e o): one pass over the rows per block and factor, then O(nnz) per block for its features.

Layout: V is (factors, features) and the entity caches are (factors, entities), so the values at
one factor are contiguous. Global entity ids number the blocks one after another; features too.
Normal draws come in from the caller (one per parameter, in sweep order), so the Numba sweep and
its NumPy twin make identical moves.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

MODE_SAMPLE = 0  # Gibbs: draw from the conditional posterior
MODE_MEAN = 1  # ALS / coordinate descent: take its mean (alpha = 1, fixed mu = 0 and lambda = reg)


@njit(cache=True, parallel=True)
def entity_caches(ent_ptr, ent_feat, ent_val, w, V, lin, S, Q):
    """Fill lin (n_ent,), S and Q (k, n_ent) from the parameters, in place."""
    k = V.shape[0]
    for g in prange(len(ent_ptr) - 1):
        acc = 0.0
        for f in range(k):
            S[f, g] = 0.0
            Q[f, g] = 0.0
        for p in range(ent_ptr[g], ent_ptr[g + 1]):
            j = ent_feat[p]
            x = np.float64(ent_val[p])
            acc += w[j] * x
            for f in range(k):
                v = V[f, j] * x
                S[f, g] += v
                Q[f, g] += v * v
        lin[g] = acc


def entity_caches_ref(ent_ptr, ent_feat, ent_val, w, V, lin, S, Q) -> None:
    """NumPy twin of `entity_caches` (through a dense entity x feature matrix)."""
    X = _dense(ent_ptr, ent_feat, ent_val, V.shape[1])
    lin[:] = X @ w
    S[:] = V @ X.T
    Q[:] = (V * V) @ (X * X).T


@njit(cache=True, parallel=True)
def predict_rows(row_ent, w0, lin, S, Q):
    """FM prediction of every row from the entity caches (float64)."""
    n_blocks, n = row_ent.shape
    k = S.shape[0]
    out = np.empty(n)
    for r in prange(n):
        y = w0
        for b in range(n_blocks):
            y += lin[row_ent[b, r]]
        for f in range(k):
            s = 0.0
            q = 0.0
            for b in range(n_blocks):
                g = row_ent[b, r]
                s += S[f, g]
                q += Q[f, g]
            y += 0.5 * (s * s - q)
        out[r] = y
    return out


def predict_rows_ref(row_ent, w0, lin, S, Q) -> np.ndarray:
    s = S[:, row_ent].sum(axis=1)  # (k, n)
    q = Q[:, row_ent].sum(axis=1)
    return w0 + lin[row_ent].sum(axis=0) + 0.5 * (s * s - q).sum(axis=0)


@njit(cache=True)
def _draw(mode, mean, prec, z, idx):
    """A draw from N(mean, 1/prec) with z[idx] (MODE_SAMPLE), else the mean (z may then be empty)."""
    if mode == MODE_SAMPLE:
        return mean + z[idx] / np.sqrt(prec)
    return mean


def _renamed(fn, name: str):
    import types

    out = types.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    out.__qualname__ = name
    return out


@njit(cache=True)
def _factor_features(mode, f, j0, j1, e0, feat_ptr, feat_ent, feat_val, feat_group, feat_obs, V, S, Q, cnt, O1, O2,
                     E, EO, alpha, mu_v, lam_v, z):
    """Update V[f, j] for the features j0..j1 of one block from its entities' aggregates (kept current)."""
    n_feat = V.shape[1]
    for j in range(j0, j1):
        grp = feat_group[j]
        old = V[f, j]
        if not feat_obs[j]:
            new = mu_v[grp, f]
        else:
            sh2 = 0.0
            she = 0.0
            for p in range(feat_ptr[j], feat_ptr[j + 1]):
                x = np.float64(feat_val[p])
                g = feat_ent[p]
                gl = g - e0
                a = S[f, g] - old * x
                sh2 += x * x * (cnt[gl] * a * a + 2.0 * a * O1[gl] + O2[gl])
                she += x * (a * E[gl] + EO[gl])
            prec = alpha * sh2 + lam_v[grp, f]
            mean = (alpha * (she + old * sh2) + mu_v[grp, f] * lam_v[grp, f]) / prec
            new = _draw(mode, mean, prec, z, 1 + n_feat + f * n_feat + j)
        d = new - old
        if d != 0.0:
            for p in range(feat_ptr[j], feat_ptr[j + 1]):
                x = np.float64(feat_val[p])
                g = feat_ent[p]
                gl = g - e0
                a = S[f, g] - old * x
                E[gl] -= d * x * (cnt[gl] * a + O1[gl])
                EO[gl] -= d * x * (a * O1[gl] + O2[gl])
                S[f, g] += d * x
                Q[f, g] += (new * new - old * old) * x * x
            V[f, j] = new


def _factors_any_blocks(mode, row_ent, e, blk_ent, blk_feat, rows_ptr, rows, feat_ptr, feat_ent, feat_val,
                        feat_group, feat_obs, V, S, Q, alpha, mu_v, lam_v, z, o_buf):
    """Factor updates for any number of blocks: per factor and block, aggregate, update, then fix e."""
    n_blocks = row_ent.shape[0]
    k = V.shape[0]
    for f in range(k):
        for b in range(n_blocks):
            e0, e1 = blk_ent[b], blk_ent[b + 1]
            m = e1 - e0
            cnt = np.empty(m)
            O1 = np.empty(m)
            O2 = np.empty(m)
            E = np.empty(m)
            EO = np.empty(m)
            s_old = S[f, e0:e1].copy()
            q_old = Q[f, e0:e1].copy()
            for g in prange(e0, e1):
                o1 = 0.0
                o2 = 0.0
                se = 0.0
                seo = 0.0
                for p in range(rows_ptr[g], rows_ptr[g + 1]):
                    r = rows[p]
                    o = 0.0
                    for b2 in range(n_blocks):
                        if b2 != b:
                            o += S[f, row_ent[b2, r]]
                    o_buf[r] = o
                    er = e[r]
                    o1 += o
                    o2 += o * o
                    se += er
                    seo += er * o
                gl = g - e0
                cnt[gl] = rows_ptr[g + 1] - rows_ptr[g]
                O1[gl] = o1
                O2[gl] = o2
                E[gl] = se
                EO[gl] = seo
            _factor_features(mode, f, blk_feat[b], blk_feat[b + 1], e0, feat_ptr, feat_ent, feat_val, feat_group,
                             feat_obs, V, S, Q, cnt, O1, O2, E, EO, alpha, mu_v, lam_v, z)
            for g in prange(e0, e1):
                gl = g - e0
                ds = S[f, g] - s_old[gl]
                dc = 0.5 * ((S[f, g] * S[f, g] - Q[f, g]) - (s_old[gl] * s_old[gl] - q_old[gl]))
                if ds != 0.0 or dc != 0.0:
                    for p in range(rows_ptr[g], rows_ptr[g + 1]):
                        r = rows[p]
                        e[r] -= dc + ds * o_buf[r]


def _factors_two_blocks(mode, row_ent, e, blk_ent, blk_feat, rows_ptr, rows, feat_ptr, feat_ent, feat_val,
                        feat_group, feat_obs, V, S, Q, alpha, mu_v, lam_v, z):
    """The same updates for a user and an item block, with two row passes per factor instead of four.

    The pass that applies the user block's change at factor f to e runs item by item and, from the new
    residuals and the new user vectors, sums the item block's aggregates at f on the way; the pass that
    applies the item block's change runs user by user and sums the user aggregates for factor f + 1
    (the item vectors at f + 1 do not move before then).
    """
    k = V.shape[0]
    u0, u1, i0, i1 = blk_ent[0], blk_ent[1], blk_ent[1], blk_ent[2]
    nu, ni = u1 - u0, i1 - i0
    cnt_u = np.empty(nu)
    cnt_i = np.empty(ni)
    for g in range(u0, u1):
        cnt_u[g - u0] = rows_ptr[g + 1] - rows_ptr[g]
    for g in range(i0, i1):
        cnt_i[g - i0] = rows_ptr[g + 1] - rows_ptr[g]
    O1u, O2u, Eu, EOu = np.zeros(nu), np.zeros(nu), np.zeros(nu), np.zeros(nu)
    O1i, O2i, Ei, EOi = np.zeros(ni), np.zeros(ni), np.zeros(ni), np.zeros(ni)
    ds_u, dc_u, ds_i, dc_i = np.empty(nu), np.empty(nu), np.empty(ni), np.empty(ni)
    if k > 0:  # user aggregates at factor 0
        for g in prange(u0, u1):
            o1 = 0.0
            o2 = 0.0
            se = 0.0
            seo = 0.0
            for p in range(rows_ptr[g], rows_ptr[g + 1]):
                r = rows[p]
                o = S[0, row_ent[1, r]]
                er = e[r]
                o1 += o
                o2 += o * o
                se += er
                seo += er * o
            gl = g - u0
            O1u[gl], O2u[gl], Eu[gl], EOu[gl] = o1, o2, se, seo
    for f in range(k):
        # ---- user block at f
        s_old = S[f, u0:u1].copy()
        q_old = Q[f, u0:u1].copy()
        _factor_features(mode, f, blk_feat[0], blk_feat[1], u0, feat_ptr, feat_ent, feat_val, feat_group, feat_obs,
                         V, S, Q, cnt_u, O1u, O2u, Eu, EOu, alpha, mu_v, lam_v, z)
        for g in prange(u0, u1):
            gl = g - u0
            ds_u[gl] = S[f, g] - s_old[gl]
            dc_u[gl] = 0.5 * ((S[f, g] * S[f, g] - Q[f, g]) - (s_old[gl] * s_old[gl] - q_old[gl]))
        for g in prange(i0, i1):  # apply it to e; item aggregates at f
            own = S[f, g]
            o1 = 0.0
            o2 = 0.0
            se = 0.0
            seo = 0.0
            for p in range(rows_ptr[g], rows_ptr[g + 1]):
                r = rows[p]
                u = row_ent[0, r]
                ul = u - u0
                er = e[r] - (dc_u[ul] + ds_u[ul] * own)
                e[r] = er
                o = S[f, u]
                o1 += o
                o2 += o * o
                se += er
                seo += er * o
            gl = g - i0
            O1i[gl], O2i[gl], Ei[gl], EOi[gl] = o1, o2, se, seo
        # ---- item block at f
        s_old = S[f, i0:i1].copy()
        q_old = Q[f, i0:i1].copy()
        _factor_features(mode, f, blk_feat[1], blk_feat[2], i0, feat_ptr, feat_ent, feat_val, feat_group, feat_obs,
                         V, S, Q, cnt_i, O1i, O2i, Ei, EOi, alpha, mu_v, lam_v, z)
        for g in prange(i0, i1):
            gl = g - i0
            ds_i[gl] = S[f, g] - s_old[gl]
            dc_i[gl] = 0.5 * ((S[f, g] * S[f, g] - Q[f, g]) - (s_old[gl] * s_old[gl] - q_old[gl]))
        nxt = f + 1
        for g in prange(u0, u1):  # apply it to e; user aggregates at f + 1
            own = S[f, g]
            o1 = 0.0
            o2 = 0.0
            se = 0.0
            seo = 0.0
            for p in range(rows_ptr[g], rows_ptr[g + 1]):
                r = rows[p]
                i = row_ent[1, r]
                il = i - i0
                er = e[r] - (dc_i[il] + ds_i[il] * own)
                e[r] = er
                if nxt < k:
                    o = S[nxt, i]
                    o1 += o
                    o2 += o * o
                    se += er
                    seo += er * o
            gl = g - u0
            O1u[gl], O2u[gl], Eu[gl], EOu[gl] = o1, o2, se, seo


def _fm_linear(mode, row_ent, e, blk_ent, blk_feat, rows_ptr, rows, feat_ptr, feat_ent, feat_val, feat_group,
               feat_obs, w0, w, lin, alpha, mu_w, lam_w, fit_w0, z):
    """The first part of a sweep: w0, then the linear weights block by block (in place, e kept current)."""
    n_blocks, n = row_ent.shape
    # ---- global bias (flat prior)
    if fit_w0:
        she = 0.0
        for r in range(n):
            she += e[r]
        old = w0[0]
        new = _draw(mode, old + she / n, alpha * n, z, 0)
        d = new - old
        for r in prange(n):
            e[r] -= d
        w0[0] = new
    # ---- linear weights
    for b in range(n_blocks):
        e0, e1 = blk_ent[b], blk_ent[b + 1]
        E = np.zeros(e1 - e0)
        cnt = np.zeros(e1 - e0)
        lin_old = lin[e0:e1].copy()
        for g in prange(e0, e1):
            acc = 0.0
            for p in range(rows_ptr[g], rows_ptr[g + 1]):
                acc += e[rows[p]]
            E[g - e0] = acc
            cnt[g - e0] = rows_ptr[g + 1] - rows_ptr[g]
        for j in range(blk_feat[b], blk_feat[b + 1]):
            grp = feat_group[j]
            old = w[j]
            if not feat_obs[j]:
                new = mu_w[grp]
            else:
                sh2 = 0.0
                she = 0.0
                for p in range(feat_ptr[j], feat_ptr[j + 1]):
                    x = np.float64(feat_val[p])
                    gl = feat_ent[p] - e0
                    sh2 += x * x * cnt[gl]
                    she += x * E[gl]
                prec = alpha * sh2 + lam_w[grp]
                mean = (alpha * (she + old * sh2) + mu_w[grp] * lam_w[grp]) / prec
                new = _draw(mode, mean, prec, z, 1 + j)
            d = new - old
            if d != 0.0:
                for p in range(feat_ptr[j], feat_ptr[j + 1]):
                    x = np.float64(feat_val[p])
                    gl = feat_ent[p] - e0
                    E[gl] -= d * x * cnt[gl]
                    lin[feat_ent[p]] += d * x
                w[j] = new
        for g in prange(e0, e1):
            d = lin[g] - lin_old[g - e0]
            if d != 0.0:
                for p in range(rows_ptr[g], rows_ptr[g + 1]):
                    e[rows[p]] -= d


def _sum_squares(e):
    sse = 0.0
    for r in prange(len(e)):
        sse += e[r] * e[r]
    return sse


# Each kernel compiled twice: the parallel loops pay off on millions of ratings, while on small data
# their barriers (a few per factor) cost more than the work, badly so on a busy machine. The parallel
# builds are renamed copies of the functions, so the two on-disk caches never collide.
_KERNELS = {}
for _name, _flags in (("serial", {}), ("parallel", {"parallel": True})):
    _KERNELS[_name] = tuple(
        njit(cache=True, **_flags)(_renamed(fn, f"{fn.__name__}_{_name}"))
        for fn in (_fm_linear, _factors_any_blocks, _factors_two_blocks, _sum_squares)
    )
PARALLEL_ROWS = 1_000_000


def _sweep(flavor, mode, row_ent, e, blk_ent, blk_feat, rows_ptr, rows, feat_ptr, feat_ent, feat_val, feat_group,
           feat_obs, w0, w, V, lin, S, Q, alpha, mu_w, lam_w, mu_v, lam_v, fit_w0, z, o_buf) -> float:
    linear, any_blocks, two_blocks, sum_squares = _KERNELS[flavor]
    linear(mode, row_ent, e, blk_ent, blk_feat, rows_ptr, rows, feat_ptr, feat_ent, feat_val, feat_group, feat_obs,
           w0, w, lin, alpha, mu_w, lam_w, fit_w0, z)
    common = (mode, row_ent, e, blk_ent, blk_feat, rows_ptr, rows, feat_ptr, feat_ent, feat_val, feat_group,
              feat_obs, V, S, Q, alpha, mu_v, lam_v, z)
    if row_ent.shape[0] == 2:
        two_blocks(*common)
    else:
        any_blocks(*common, o_buf)
    return float(sum_squares(e))


def fm_sweep_serial(*args) -> float:
    """One pass over every parameter: w0, the linear weights block by block, then each factor block by block.

    In place: w0 (array of one), w, V, the caches lin/S/Q and the residuals e (rating - prediction).
    Arguments: mode, row_ent, e, blk_ent, blk_feat, rows_ptr, rows, feat_ptr, feat_ent, feat_val,
    feat_group, feat_obs, w0, w, V, lin, S, Q, alpha, mu_w, lam_w, mu_v, lam_v, fit_w0, z, o_buf.
    blk_ent / blk_feat: (B+1) ranges of global entity / feature ids per block; rows_ptr/rows: the rows
    of each global entity; feat_ptr/feat_ent/feat_val: each feature's entities and values; feat_obs:
    feature touches at least one row (others are set to their group's prior mean); mode: MODE_SAMPLE
    or MODE_MEAN. z holds 1 + n_feat * (k + 1) standard normal draws. Returns the sum of e^2.
    """
    return _sweep("serial", *args)


def fm_sweep_parallel(*args) -> float:
    """`fm_sweep_serial` with the row passes parallel over entities (same result up to rounding)."""
    return _sweep("parallel", *args)


def fm_sweep(mode, row_ent, *args) -> float:
    """The serial build below PARALLEL_ROWS ratings, the parallel one from there."""
    kernel = fm_sweep_parallel if row_ent.shape[1] >= PARALLEL_ROWS else fm_sweep_serial
    return kernel(mode, row_ent, *args)


def fm_sweep_ref(mode, X, ratings, feat_blocks, feat_group, w0, w, V, alpha, mu_w, lam_w, mu_v, lam_v, fit_w0,
                 z) -> np.ndarray:
    """NumPy twin of `fm_sweep` on the dense design matrix X (rows x features); returns the residuals.

    Every h = dy/dtheta is computed row by row from X itself (no entity aggregates), in the
    kernel's parameter order: w0, linear weights block by block, then factor by factor, block by block.
    feat_blocks: block index of each feature (non-decreasing). Unobserved features (zero column)
    go to their group's prior mean, as in the kernel.
    """
    n, n_feat = X.shape
    k = V.shape[0]

    def predict():
        s = X @ V.T
        return w0[0] + X @ w + 0.5 * ((s * s).sum(1) - (X * X) @ (V * V).sum(0))

    e = ratings - predict()
    obs = (X != 0).any(axis=0)

    def draw(mean, prec, idx):
        return mean + z[idx] / np.sqrt(prec) if mode == MODE_SAMPLE else mean

    if fit_w0:
        new = draw(w0[0] + e.sum() / n, alpha * n, 0)
        e -= new - w0[0]
        w0[0] = new
    n_blocks = int(feat_blocks.max()) + 1 if n_feat else 0
    for b in range(n_blocks):
        for j in np.flatnonzero(feat_blocks == b):
            grp = feat_group[j]
            h = X[:, j]
            if not obs[j]:
                new = mu_w[grp]
            else:
                sh2, she = h @ h, h @ e
                prec = alpha * sh2 + lam_w[grp]
                new = draw((alpha * (she + w[j] * sh2) + mu_w[grp] * lam_w[grp]) / prec, prec, 1 + j)
            e -= (new - w[j]) * h
            w[j] = new
    for f in range(k):
        for b in range(n_blocks):
            for j in np.flatnonzero(feat_blocks == b):
                grp = feat_group[j]
                h = X[:, j] * (X @ V[f] - V[f, j] * X[:, j])
                if not obs[j]:
                    new = mu_v[grp, f]
                else:
                    sh2, she = h @ h, h @ e
                    prec = alpha * sh2 + lam_v[grp, f]
                    mean = (alpha * (she + V[f, j] * sh2) + mu_v[grp, f] * lam_v[grp, f]) / prec
                    new = draw(mean, prec, 1 + n_feat + f * n_feat + j)
                e -= (new - V[f, j]) * h
                V[f, j] = new
    return e


@njit(cache=True)
def fm_sgd_epoch(order, row_ent, ratings, ent_ptr, ent_feat, ent_val, w0, w, V, lr, reg_w, reg_v, fit_w0):
    """One SGD pass over the rows in `order`; every parameter of a row moves from the same prediction.

    The gradient of (r - y)^2 / 2 + reg/2 |theta|^2 for V[f, j] is -e x (s_f - V[f, j] x) + reg V[f, j]
    (Rendle 2012, eq. 6). Returns the sum of squared errors before each update.
    """
    n_blocks = row_ent.shape[0]
    k = V.shape[0]
    s = np.empty(k)
    sse = 0.0
    for t in range(len(order)):
        r = order[t]
        y = w0[0]
        for f in range(k):
            s[f] = 0.0
        for b in range(n_blocks):
            g = row_ent[b, r]
            for p in range(ent_ptr[g], ent_ptr[g + 1]):
                j = ent_feat[p]
                x = np.float64(ent_val[p])
                y += w[j] * x
                for f in range(k):
                    v = V[f, j] * x
                    s[f] += v
                    y -= 0.5 * v * v
        for f in range(k):
            y += 0.5 * s[f] * s[f]
        err = ratings[r] - y
        sse += err * err
        if fit_w0:
            w0[0] += lr * err
        for b in range(n_blocks):
            g = row_ent[b, r]
            for p in range(ent_ptr[g], ent_ptr[g + 1]):
                j = ent_feat[p]
                x = np.float64(ent_val[p])
                w[j] += lr * (err * x - reg_w * w[j])
                for f in range(k):
                    vf = V[f, j]
                    V[f, j] = vf + lr * (err * x * (s[f] - vf * x) - reg_v * vf)
    return sse


def fm_sgd_epoch_ref(order, X, ratings, w0, w, V, lr, reg_w, reg_v, fit_w0) -> float:
    """NumPy twin of `fm_sgd_epoch` on the dense design matrix X."""
    sse = 0.0
    for r in order:
        x = X[r]
        s = V @ x
        y = w0[0] + w @ x + 0.5 * (s @ s - ((V * V) @ (x * x)).sum())
        err = ratings[r] - y
        sse += err * err
        if fit_w0:
            w0[0] += lr * err
        w += lr * (err * x - reg_w * w) * (x != 0)
        grad = err * x[None, :] * (s[:, None] - V * x[None, :]) - reg_v * V
        V += lr * grad * (x != 0)[None, :]
    return sse


def design_matrix(row_ent, ent_ptr, ent_feat, ent_val, n_feat: int) -> np.ndarray:
    """The dense rows x features design matrix the blocks describe (tests and tiny data only)."""
    Xe = _dense(ent_ptr, ent_feat, ent_val, n_feat)
    return Xe[row_ent].sum(axis=0)


def _dense(ptr, idx, val, n_cols: int) -> np.ndarray:
    out = np.zeros((len(ptr) - 1, n_cols))
    for g in range(len(ptr) - 1):
        for p in range(ptr[g], ptr[g + 1]):
            out[g, idx[p]] += val[p]
    return out
