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
That is how features shared by many entities (implicit, implicit_item, genres) are updated.

A block's one-hot features (user, item: one per entity, value 1) are drawn a k-vector at a time
instead (`_joint_block`, like BPMF / Bayesian ALS): h_r = S_g - v_j + o_r for the rows of the
entity, a k x k Gaussian per feature from one pass over its rows, and since no row holds two
one-hots of a block, those draws are independent given the rest and run in parallel. (`fm_cg.py`
draws the same Gaussians, weight and vector together, by perturb-and-solve with a few CG steps.)

Layout: V is (factors, features) and the entity caches are (factors, entities), so the values at
one factor are contiguous. Global entity ids number the blocks one after another; features too.
Normal draws come in from the caller (one per parameter, in sweep order), so the Numba sweep and
its NumPy twin make identical moves.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from recsys_cli.models._kernels.linalg import AHEAD, BLOCK, cholesky, prefetch, row_chunks
from recsys_cli.models._kernels.linalg import FM as FAST

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
    """FM prediction of every row from the entity caches (float64).

    Per entity first: its own part lin + 1/2 (|S_g|^2 - Q_g) and S_g entity-major (reading S[:, g] per
    row, k values n_ent apart, missed the cache at every factor); then a row is w0 + the own parts of its
    entities + the dot products of their vectors.
    """
    n_blocks, n = row_ent.shape
    k, n_ent = S.shape
    St = np.empty((n_ent, k))
    own = np.empty(n_ent)
    for g in prange(n_ent):
        own[g] = lin[g]
    for f in range(k):
        for g in prange(n_ent):
            s = S[f, g]
            St[g, f] = s
            own[g] += 0.5 * (s * s - Q[f, g])
    out = np.empty(n)
    for r in prange(n):
        y = w0
        for b in range(n_blocks):
            g = row_ent[b, r]
            y += own[g]
            for b2 in range(b + 1, n_blocks):
                h = row_ent[b2, r]
                dot = 0.0
                for f in range(k):
                    dot += St[g, f] * St[h, f]
                y += dot
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


# Columns of the per-entity record the coordinate updates read and write (one cache line per entity).
A_S, A_Q, A_CNT, A_O1, A_O2, A_E, A_EO = 0, 1, 2, 3, 4, 5, 6
A_WIDTH = 8


@njit(cache=True)
def _factor_features(mode, f, j0, j1, e0, feat_ptr, feat_ent, feat_val, feat_group, feat_obs, V, agg, alpha, mu_v,
                     lam_v, z):
    """Update V[f, j] for the features j0..j1 of one block from its entities' records (kept current).

    agg[g - e0]: the entity's s and q at factor f, its row count and the aggregates over its rows
    (sum o, sum o^2, sum e, sum e o), o being the other blocks' sum at f.
    """
    n_feat = V.shape[1]
    flat = agg.reshape(-1)
    for j in range(j0, j1):
        grp = feat_group[j]
        old = V[f, j]
        end = feat_ptr[j + 1]
        if not feat_obs[j]:
            new = mu_v[grp, f]
        else:
            sh2 = 0.0
            she = 0.0
            for p in range(feat_ptr[j], end):
                if p + AHEAD < end:  # the records are visited in no useful order: start the miss early
                    prefetch(flat, (feat_ent[p + AHEAD] - e0) * A_WIDTH)
                x = np.float64(feat_val[p])
                gl = feat_ent[p] - e0  # (2-D indexing throughout: a row view would cost a refcount per visit)
                a = agg[gl, A_S] - old * x
                o1 = agg[gl, A_O1]
                sh2 += x * x * (agg[gl, A_CNT] * a * a + 2.0 * a * o1 + agg[gl, A_O2])
                she += x * (a * agg[gl, A_E] + agg[gl, A_EO])
            prec = alpha * sh2 + lam_v[grp, f]
            mean = (alpha * (she + old * sh2) + mu_v[grp, f] * lam_v[grp, f]) / prec
            new = _draw(mode, mean, prec, z, 1 + n_feat + f * n_feat + j)
        d = new - old
        if d != 0.0:
            for p in range(feat_ptr[j], end):
                if p + AHEAD < end:
                    prefetch(flat, (feat_ent[p + AHEAD] - e0) * A_WIDTH)
                x = np.float64(feat_val[p])
                gl = feat_ent[p] - e0
                a = agg[gl, A_S] - old * x
                o1 = agg[gl, A_O1]
                agg[gl, A_E] -= d * x * (agg[gl, A_CNT] * a + o1)
                agg[gl, A_EO] -= d * x * (a * o1 + agg[gl, A_O2])
                agg[gl, A_S] += d * x
                agg[gl, A_Q] += (new * new - old * old) * x * x
            V[f, j] = new


def _coord_block(mode, b, row_ent, e, blk_ent, rows_ptr, rows, j0, j1, feat_ptr, feat_ent, feat_val, feat_group,
                 feat_obs, V, S, Q, alpha, mu_v, lam_v, z):
    """Coordinate updates of block b's features j0..j1, factor by factor (the other blocks stay fixed).

    One pass over the block's rows per factor: it applies the change at factor f to the residuals
    and, from the new residuals, sums the entities' aggregates at f + 1 on the way.
    """
    n_blocks = row_ent.shape[0]
    k = V.shape[0]
    e0, e1 = blk_ent[b], blk_ent[b + 1]
    m = e1 - e0
    agg = np.zeros((m, A_WIDTH))
    for g in range(e0, e1):
        agg[g - e0, A_CNT] = rows_ptr[g + 1] - rows_ptr[g]
    s_old, q_old = np.zeros(m), np.zeros(m)
    for f in range(-1, k):  # f = -1: only the aggregates at factor 0
        if f >= 0:
            for g in range(e0, e1):
                s_old[g - e0] = agg[g - e0, A_S] = S[f, g]
                q_old[g - e0] = agg[g - e0, A_Q] = Q[f, g]
            _factor_features(mode, f, j0, j1, e0, feat_ptr, feat_ent, feat_val, feat_group, feat_obs, V, agg, alpha,
                             mu_v, lam_v, z)
        nxt = f + 1
        for g in prange(e0, e1):
            gl = g - e0
            ds = 0.0
            dc = 0.0
            if f >= 0:
                s, q = agg[gl, A_S], agg[gl, A_Q]
                S[f, g] = s
                Q[f, g] = q
                ds = s - s_old[gl]
                dc = 0.5 * ((s * s - q) - (s_old[gl] * s_old[gl] - q_old[gl]))
            o1 = 0.0
            o2 = 0.0
            se = 0.0
            seo = 0.0
            for p in range(rows_ptr[g], rows_ptr[g + 1]):
                r = rows[p]
                er = e[r]
                if ds != 0.0 or dc != 0.0:
                    o = 0.0
                    for b2 in range(n_blocks):
                        if b2 != b:
                            o += S[f, row_ent[b2, r]]
                    er -= dc + ds * o
                    e[r] = er
                if nxt < k:
                    o = 0.0
                    for b2 in range(n_blocks):
                        if b2 != b:
                            o += S[nxt, row_ent[b2, r]]
                    o1 += o
                    o2 += o * o
                    se += er
                    seo += er * o
            agg[gl, A_O1] = o1
            agg[gl, A_O2] = o2
            agg[gl, A_E] = se
            agg[gl, A_EO] = seo


def _joint_block(mode, b, row_ent, e, blk_ent, blk_feat, rows_ptr, rows, feat_group, feat_obs, V, S, Q, alpha, mu_v,
                 lam_v, z, bounds):
    """Block b's one-hot features (one per entity, value 1), each k-vector drawn jointly; parallel over entities.

    For the one-hot feature j of entity g, row r of g has dy/dv_j = h_r = a + o_r, with a = S_g - v_j
    (the entity's other features) and o_r the other blocks' sums: the conditional posterior of v_j is
    N(P^-1 m, P^-1) with P = alpha sum h h^T + diag(lambda) and m = alpha sum h (e_r + h.v_j) + lambda mu.
    Entities of one block share no row, so given everything else their vectors are independent and
    the order (hence the thread count) changes nothing. The draw is L^-T (L^-1 m + z) with P = L L^T and
    z the feature's k normals z[1 + n_feat (1 + f) + j]. bounds: chunks of global entity ids.
    """
    n_blocks = row_ent.shape[0]
    k, n_feat = V.shape
    e0 = blk_ent[b]
    j_base = blk_feat[b]
    St = np.ascontiguousarray(S.T)  # (entities, k): a row's other-block vectors gathered contiguously
    flat = St.reshape(-1)
    for c in prange(len(bounds) - 1):
        hv = np.empty(k, np.float32)  # one row's h
        G = np.zeros((k, k), np.float32)  # float32 Gram of up to BLOCK rows (SIMD), then summed into A in float64
        A = np.empty((k, k))
        y = np.empty(k)
        a = np.empty(k)
        old = np.empty(k)
        for g in range(bounds[c], bounds[c + 1]):
            j = j_base + g - e0
            grp = feat_group[j]
            for f in range(k):
                old[f] = V[f, j]
                a[f] = St[g, f] - old[f]
            if not feat_obs[j]:
                for f in range(k):
                    y[f] = mu_v[grp, f]
            else:
                A[:, :] = 0.0
                y[:] = 0.0
                nb = 0
                last = rows_ptr[g + 1] - 1
                for p in range(rows_ptr[g], rows_ptr[g + 1]):
                    if p + AHEAD <= last:  # the other blocks' rows are gathered: start the misses early
                        _prefetch_others(flat, k, row_ent, rows[p + AHEAD], b)
                    r = rows[p]
                    er = e[r]
                    for f in range(k):
                        hv[f] = a[f]
                    for b2 in range(n_blocks):
                        if b2 != b:
                            o = row_ent[b2, r]
                            for f in range(k):
                                hv[f] += St[o, f]
                    for f in range(k):
                        y[f] += hv[f] * er
                    for f in range(k):  # lower triangle += h h^T
                        hf = hv[f]
                        for f2 in range(f + 1):
                            G[f, f2] += hf * hv[f2]
                    nb += 1
                    if nb == BLOCK or p == last:
                        for f in range(k):
                            for f2 in range(f + 1):
                                A[f, f2] += G[f, f2]
                                G[f, f2] = 0.0
                        nb = 0
                for f in range(k):  # y = alpha (sum h e + (sum h h^T) v_j) + lambda mu; A = P (lower triangle)
                    s = 0.0
                    for f2 in range(k):
                        s += (A[f, f2] if f2 <= f else A[f2, f]) * old[f2]
                    y[f] = alpha * (y[f] + s) + lam_v[grp, f] * mu_v[grp, f]
                for f in range(k):
                    for f2 in range(f + 1):
                        A[f, f2] *= alpha
                    A[f, f] += lam_v[grp, f]
                if not cholesky(A, k):
                    continue  # (numerically) singular: only with zero penalties in MODE_MEAN; v_j stays
                for f in range(k):  # y <- L^-1 y
                    s = y[f]
                    for t in range(f):
                        s -= A[f, t] * y[t]
                    y[f] = s / A[f, f]
                if mode == MODE_SAMPLE:
                    for f in range(k):
                        y[f] += z[1 + n_feat + f * n_feat + j]
                for f in range(k - 1, -1, -1):  # y <- L^-T y
                    s = y[f]
                    for t in range(f + 1, k):
                        s -= A[t, f] * y[t]
                    y[f] = s / A[f, f]
            for f in range(k):
                d = y[f] - old[f]
                V[f, j] = y[f]
                S[f, g] += d
                Q[f, g] += y[f] * y[f] - old[f] * old[f]
                old[f] = d  # old now holds the change
            da = 0.0
            for f in range(k):  # (a sum only in a loop that only reads: see linalg.FM)
                da += old[f] * a[f]
            for p in range(rows_ptr[g], rows_ptr[g + 1]):
                if p + AHEAD < rows_ptr[g + 1]:
                    _prefetch_others(flat, k, row_ent, rows[p + AHEAD], b)
                r = rows[p]
                dy = da
                for b2 in range(n_blocks):
                    if b2 != b:
                        h = row_ent[b2, r]
                        for f in range(k):
                            dy += old[f] * St[h, f]
                e[r] -= dy


@njit(cache=True, inline="always")
def _prefetch_others(flat, k, row_ent, r, b):
    """Start loading the float64 rows (of k, in `flat`) that row r's entities outside block b point at."""
    for b2 in range(row_ent.shape[0]):
        if b2 != b:
            base = row_ent[b2, r] * k
            for f in range(0, k, 8):  # 8 float64 = one 64-byte cache line
                prefetch(flat, base + f)


def _fm_linear(mode, row_ent, e, blk_ent, blk_feat, rows_ptr, rows, feat_ptr, feat_ent, feat_val, feat_group,
               feat_obs, w0, w, lin, alpha, mu_w, lam_w, fit_w0, z, skip):
    """The first part of a sweep: w0, then the linear weights block by block (in place, e kept current).

    skip[b]: how many of block b's first features to leave alone (the cg sampler draws the one-hots'
    weights with their vectors); a block with nothing left costs nothing.
    """
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
        j_first = blk_feat[b] + skip[b]
        if j_first >= blk_feat[b + 1]:
            continue
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
        for j in range(j_first, blk_feat[b + 1]):
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


@njit(cache=True)
def _sum_squares(e):
    sse = 0.0
    for r in range(len(e)):  # serial: a parallel reduction's rounding would depend on the thread count
        sse += e[r] * e[r]
    return sse


# Each kernel compiled twice: the parallel loops pay off on millions of ratings, while on small data
# their barriers (a few per factor) cost more than the work, badly so on a busy machine. The parallel
# builds are renamed copies of the functions, so the two on-disk caches never collide.
# The joint draws are dense k x k work (Gram, Cholesky, dot products): reassociation lets their sums vectorise.
_KERNELS = {}
for _name, _flags in (("serial", {}), ("parallel", {"parallel": True})):
    _KERNELS[_name] = tuple(
        njit(cache=True, **_flags, **({"fastmath": FAST} if fn is _joint_block else {}))(
            _renamed(fn, f"{fn.__name__}_{_name}"))
        for fn in (_fm_linear, _coord_block, _joint_block)
    )
PARALLEL_ROWS = 1_000_000


def _sweep(flavor, mode, row_ent, e, blk_ent, blk_feat, blk_joint, rows_ptr, rows, feat_ptr, feat_ent, feat_val,
           feat_group, feat_obs, w0, w, V, lin, S, Q, alpha, mu_w, lam_w, mu_v, lam_v, fit_w0, z) -> float:
    linear, coord, joint = _KERNELS[flavor]
    linear(mode, row_ent, e, blk_ent, blk_feat, rows_ptr, rows, feat_ptr, feat_ent, feat_val, feat_group, feat_obs,
           w0, w, lin, alpha, mu_w, lam_w, fit_w0, z, np.zeros(row_ent.shape[0], np.int64))
    k = V.shape[0]
    for b in range(row_ent.shape[0]):
        j0, j1 = blk_feat[b] + blk_joint[b], blk_feat[b + 1]
        if k and j0 < j1:
            coord(mode, b, row_ent, e, blk_ent, rows_ptr, rows, j0, j1, feat_ptr, feat_ent, feat_val, feat_group,
                  feat_obs, V, S, Q, alpha, mu_v, lam_v, z)
        if k and blk_joint[b]:
            e0, e1 = blk_ent[b], blk_ent[b + 1]
            bounds = e0 + row_chunks(rows_ptr[e0:e1 + 1] - rows_ptr[e0], k / 3.0)
            joint(mode, b, row_ent, e, blk_ent, blk_feat, rows_ptr, rows, feat_group, feat_obs, V, S, Q, alpha, mu_v,
                  lam_v, z, bounds)
    return float(_sum_squares(e))


def fm_sweep_serial(*args) -> float:
    """One pass over every parameter: w0, the linear weights block by block, then each block's factors.

    In place: w0 (array of one), w, V, the caches lin/S/Q and the residuals e (rating - prediction).
    Arguments: mode, row_ent, e, blk_ent, blk_feat, blk_joint, rows_ptr, rows, feat_ptr, feat_ent, feat_val,
    feat_group, feat_obs, w0, w, V, lin, S, Q, alpha, mu_w, lam_w, mu_v, lam_v, fit_w0, z.
    blk_ent / blk_feat: (B+1) ranges of global entity / feature ids per block; blk_joint: (B,) how many of
    a block's first features are one-hot (one per entity, value 1) and drawn a k-vector at a time
    (`_joint_block`), after the block's other features are updated a factor at a time (`_coord_block`);
    rows_ptr/rows: the rows of each global entity; feat_ptr/feat_ent/feat_val: each feature's entities
    and values; feat_obs: feature touches at least one row (others are set to their group's prior
    mean); mode: MODE_SAMPLE or MODE_MEAN. z holds 1 + n_feat * (k + 1) standard normal draws (w0,
    then w, then V by factor). Returns the sum of e^2.
    """
    return _sweep("serial", *args)


def fm_sweep_parallel(*args) -> float:
    """`fm_sweep_serial` with the row passes parallel over entities (same result up to rounding)."""
    return _sweep("parallel", *args)


def fm_sweep(mode, row_ent, *args) -> float:
    """The serial build below PARALLEL_ROWS ratings, the parallel one from there."""
    kernel = fm_sweep_parallel if row_ent.shape[1] >= PARALLEL_ROWS else fm_sweep_serial
    return kernel(mode, row_ent, *args)


def fm_sweep_ref(mode, X, ratings, feat_blocks, feat_group, feat_joint, w0, w, V, alpha, mu_w, lam_w, mu_v, lam_v,
                 fit_w0, z, joint_draw=None) -> np.ndarray:
    """NumPy twin of `fm_sweep` on the dense design matrix X (rows x features); returns the residuals.

    Every h = dy/dtheta is computed row by row from X itself (no entity aggregates), in the
    kernel's parameter order: w0, linear weights block by block, then block by block the factors of
    its other features (factor by factor, feature by feature), then its `feat_joint` features one
    k-vector at a time (a dense k x k solve per feature, the same normals). feat_blocks: block index
    of each feature (non-decreasing). Unobserved features (zero column) go to their group's prior
    mean, as in the kernel.

    joint_draw (the cg sampler's twin): joint_draw(j, H, e) -> the new (w_j, v_j) of one-hot feature j
    from H = [x_j, dy/dv_j] over the rows and the residuals e; one-hot weights then move there, with the
    vector, not in the linear part.
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
        for j in np.flatnonzero((feat_blocks == b) & (~feat_joint if joint_draw is not None else True)):
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
    for b in range(n_blocks):
        for f in range(k):
            for j in np.flatnonzero((feat_blocks == b) & ~feat_joint):
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
        for j in np.flatnonzero((feat_blocks == b) & feat_joint):
            grp = feat_group[j]
            H = X[:, j][:, None] * (X @ V.T - np.outer(X[:, j], V[:, j]))  # (rows, k): dy/dv_j
            if joint_draw is not None:
                wj, vj = (mu_w[grp], mu_v[grp].copy()) if not obs[j] else joint_draw(j, np.hstack([X[:, [j]], H]), e)
                e -= (wj - w[j]) * X[:, j] + H @ (vj - V[:, j])
                w[j], V[:, j] = wj, vj
                continue
            if not obs[j]:
                new = mu_v[grp].copy()
            else:
                P = alpha * H.T @ H + np.diag(lam_v[grp])
                m = alpha * (H.T @ e + H.T @ H @ V[:, j]) + lam_v[grp] * mu_v[grp]
                L = np.linalg.cholesky(P)
                t = np.linalg.solve(L, m)
                if mode == MODE_SAMPLE:
                    t = t + z[1 + n_feat + np.arange(k) * n_feat + j]
                new = np.linalg.solve(L.T, t)
            e -= H @ (new - V[:, j])
            V[:, j] = new
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
