"""`fm` MCMC sweeps by perturb-and-solve (`sampler=cg`): each user's and item's vector by conjugate gradient.

The exact sampler (`fm.py`'s `_joint_block`) draws a one-hot feature's vector v_j (a user's or an
item's own) from its conditional posterior N(P^-1 b, P^-1), P = alpha H^T H + Lambda over the entity's
rows, by building the k x k matrix P (O(rows k^2)) and factorising it (O(k^3)). A draw from that
Gaussian is also the exact solution of the perturbed system (Papandreou & Yuille 2010)

    P theta = alpha H^T (t + eps) + Lambda (mu + eta),   eps ~ N(0, 1/alpha) per row, eta ~ N(0, 1/Lambda)

(its right side has covariance alpha H^T H + Lambda = P). Here theta = (w_j, v_j), the entity's weight
and vector together (h_r = [1, a_g + o_r]: a_g the entity's other features' sum, o_r the other blocks'),
solved for the displacement from the current sample by `steps` steps of preconditioned conjugate
gradient: O(rows k) per step, like an iALS CG step. The preconditioner is the diagonal of P after
centring the rows' h on their mean (the weight takes the mean: C^T P C with C = [[1, -mean], [0, I]]),
which halved the steps a 64-factor draw needs against the plain diagonal. With k + 1 steps (in exact
arithmetic) the draw is the exact one; with a few it is an approximate Gibbs step (the chain moves
part of the way towards a fresh draw along the directions CG has explored). An entity's rows'
other-block vectors are gathered once into a contiguous float32 buffer that the steps then reuse; an
entity with more than BUF_ROWS rows (a time period at scale) is instead solved exactly, by Cholesky
of P summed in that one pass. Entities share no row, so they run in parallel.

The rest of a sweep is the exact sampler's: w0, the weights of the block's other (shared) features,
and their vectors a factor at a time (`fm.py`'s `_fm_linear` and `_coord_block`, same normals layout).

Noise: every row's eps and every one-hot's eta come from SplitMix64 ziggurat streams keyed by (sweep
seed, global entity or feature id), so a sweep gives the same bits on any number of threads, and the
NumPy twin (`fm_sweep_cg_ref`, on the dense design matrix) draws the same numbers.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from recsys_cli.models._kernels import fm as _fm
from recsys_cli.models._kernels.linalg import FM as FAST
from recsys_cli.models._kernels.linalg import cholesky_solve, prefetch, prefetch_row, row_chunks
from recsys_cli.models._kernels.splitmix import GOLDEN, MASK64, mix_py, normal, normal_py, stream

AHEAD_ROWS = 32  # rows between prefetching a row's residual and other-block vectors and reading them
SEED_ROWS, SEED_PRIOR = 0, 1  # seeds[...]: the rows' eps, the one-hots' eta
N_SEEDS = 2


# ---------------------------------------------------------------- normals


@njit(cache=True, inline="always")
def _fill_normals(seed, sid, out, m):
    """out[:m] <- standard normals of stream `sid` of `seed` (SplitMix64 ziggurat)."""
    state = stream(seed, sid)
    for t in range(m):
        state, out[t] = normal(state)


@njit(cache=True)
def normals(seed, sid, m):
    """m standard normals of stream `sid` of `seed` (what the kernel draws for that entity or feature)."""
    out = np.empty(m)
    _fill_normals(np.uint64(seed), sid, out, m)
    return out


def normals_ref(seed: int, sid: int, m: int) -> np.ndarray:
    """Pure-Python twin of `normals`."""
    state = mix_py((int(seed) + GOLDEN * (int(sid) + 1)) & MASK64)
    out = []
    for _ in range(m):
        state, v = normal_py(state)
        out.append(v)
    return np.array(out)


# ---------------------------------------------------------------- the one-hot draws


@njit(cache=True, inline="always")
def _gather_other(Ot, row_ent, b, r, o):
    """o <- the sum over the other blocks of row r's entity vectors (float32 rows of Ot)."""
    n_blocks = row_ent.shape[0]
    k = o.shape[0]
    first = True
    for b2 in range(n_blocks):
        if b2 != b:
            src = Ot[row_ent[b2, r]]
            if first:
                for f in range(k):
                    o[f] = src[f]
                first = False
            else:
                for f in range(k):
                    o[f] += src[f]
    if first:
        for f in range(k):
            o[f] = 0.0


@njit(cache=True, inline="always")
def _prefetch_other(Ot, row_ent, b, r):
    for b2 in range(row_ent.shape[0]):
        if b2 != b:
            prefetch_row(Ot, row_ent[b2, r])


FLUSH = 64  # rows summed in float32 (SIMD) before a float64 accumulator takes the partial sums
BUF_ROWS = 1 << 15  # an entity with more rows (a time period) is solved exactly instead, from its Gram (one pass)


@njit(cache=True, inline="always")
def _dot(u, v, off, n):
    """sum u[f] * v[off + f], f < n: a loop that only reads, so its (reassociated) sum never depends on where
    the buffers are. A loop that also stores gets a run-time overlap check from LLVM, which takes the scalar
    loop when two buffers lie within a few hundred bytes of each other, and the two loops round differently.
    """
    s = 0.0
    for f in range(n):
        s += u[f] * v[off + f]
    return s


@njit(cache=True, inline="always")
def _precondition(r, z, mu_c, diag, k):
    """z = C D^-1 C^T r, C = [[1, -mu_c^T], [0, I]] (see `_onehot_block`)."""
    for f in range(k):
        z[1 + f] = (r[1 + f] - mu_c[f] * r[0]) / diag[1 + f]
    z[0] = r[0] / diag[0] - _dot(mu_c, z, 1, k)


@njit(cache=True, inline="always")
def _flush(acc32, acc, k):
    for f in range(k):
        acc[f] += acc32[f]
        acc32[f] = 0.0


def _onehot_block(b, row_ent, e, blk_ent, blk_feat, rows_ptr, rows, feat_group, feat_obs, w, V, lin, S, Q, Ot,
                  alpha, mu_w, lam_w, mu_v, lam_v, seed_rows, seed_prior, steps, buf_rows, bounds):
    """Draw every one-hot (w_j, v_j) of block b by perturb-and-solve with `steps` Jacobi-PCG steps; parallel.

    Ot: (entities, k) float32 copy of S^T (the other blocks' vectors are read from it). One pass gathers
    the entity's rows into a float32 buffer and sums the right side and the Jacobi diagonal; the CG steps
    then work on the buffer (sums over rows in float32 blocks of FLUSH rows, then in float64). The
    residuals of the entity's rows follow the draw exactly.
    """
    k = V.shape[0]
    K1 = k + 1
    e0 = blk_ent[b]
    j_base = blk_feat[b]
    sa = math.sqrt(alpha)
    for c in prange(len(bounds) - 1):
        mmax = 1
        for g in range(bounds[c], bounds[c + 1]):
            mmax = max(mmax, rows_ptr[g + 1] - rows_ptr[g])
        obuf = np.empty((max(1, min(mmax, buf_rows)), k), np.float32)  # the entity's rows' other-block vectors
        otmp = np.empty(k, np.float32)
        et = np.empty(mmax)  # their residuals
        xi = np.empty(mmax)
        zeta = np.empty(K1)
        a = np.empty(k)
        pv = np.empty(k, np.float32)
        acc32 = np.zeros(k, np.float32)
        ms32 = np.zeros(k, np.float32)
        qs32 = np.zeros(k, np.float32)
        msum = np.empty(k)
        qsum = np.empty(k)
        acc = np.empty(k)
        mu_c = np.empty(k)
        G32 = np.zeros((k, k), np.float32)  # an unbuffered entity's Gram of its rows' o, in float32 blocks
        G = np.empty((K1, K1))
        x = np.empty(K1)
        res = np.empty(K1)
        z = np.empty(K1)
        p = np.empty(K1)
        ap = np.empty(K1)
        diag = np.empty(K1)
        lam = np.empty(K1)
        for g in range(bounds[c], bounds[c + 1]):
            gl = g - e0
            j = j_base + gl
            grp = feat_group[j]
            p0 = rows_ptr[g]
            m = rows_ptr[g + 1] - p0
            buffered = m <= buf_rows
            for f in range(k):
                a[f] = S[f, g] - V[f, j]
            if not feat_obs[j]:  # no rows: the group's prior mean (as the exact sampler)
                x[0] = mu_w[grp] - w[j]
                for f in range(k):
                    x[1 + f] = mu_v[grp, f] - V[f, j]
            else:
                # one pass: gather the rows; the right side's H^T (alpha e + sqrt(alpha) xi) and the sums
                # of o and o^2 for the preconditioner (an unbuffered entity: the Gram of the o instead)
                _fill_normals(seed_rows, g, xi, m)
                if not buffered:
                    G[:, :] = 0.0
                st = 0.0
                for f in range(k):
                    acc[f] = 0.0
                    msum[f] = 0.0
                    qsum[f] = 0.0
                for t in range(m):
                    if t + AHEAD_ROWS < m:
                        ra = rows[p0 + t + AHEAD_ROWS]
                        _prefetch_other(Ot, row_ent, b, ra)
                        prefetch(e, ra)
                    r = rows[p0 + t]
                    o = obuf[t] if buffered else otmp
                    _gather_other(Ot, row_ent, b, r, o)
                    ev = e[r]
                    et[t] = ev
                    tv = alpha * ev + sa * xi[t]
                    st += tv
                    tv32 = np.float32(tv)
                    for f in range(k):
                        of = o[f]
                        acc32[f] += tv32 * of
                        ms32[f] += of
                        qs32[f] += of * of
                    if not buffered:
                        for f in range(k):
                            of = o[f]
                            for f2 in range(f + 1):
                                G32[f, f2] += of * o[f2]
                    if (t + 1) % FLUSH == 0 or t == m - 1:
                        _flush(acc32, acc, k)
                        _flush(ms32, msum, k)
                        _flush(qs32, qsum, k)
                        if not buffered:
                            for f in range(k):
                                for f2 in range(f + 1):
                                    G[1 + f, 1 + f2] += G32[f, f2]
                                    G32[f, f2] = 0.0
                _fill_normals(seed_prior, j, zeta, K1)
                # right side: H^T (alpha e + sqrt(alpha) xi) + Lambda (mu - theta_old) + sqrt(Lambda) zeta
                lam[0] = lam_w[grp]
                res[0] = st + lam[0] * (mu_w[grp] - w[j]) + math.sqrt(lam[0]) * zeta[0]
                for f in range(k):
                    lam[1 + f] = lam_v[grp, f]
                    res[1 + f] = (a[f] * st + acc[f] + lam[1 + f] * (mu_v[grp, f] - V[f, j])
                                  + math.sqrt(lam[1 + f]) * zeta[1 + f])
                if not buffered:  # the exact solve: P = alpha H^T H + Lambda from the sums and the Gram
                    G[0, 0] = alpha * m + lam[0]
                    for f in range(k):
                        G[1 + f, 0] = alpha * (m * a[f] + msum[f])
                        for f2 in range(f + 1):
                            G[1 + f, 1 + f2] = alpha * (G[1 + f, 1 + f2] + m * a[f] * a[f2] + a[f] * msum[f2]
                                                        + msum[f] * a[f2])
                        G[1 + f, 1 + f] += lam[1 + f]
                    for q in range(K1):
                        x[q] = res[q]
                    if not cholesky_solve(G, x, K1):
                        x[:] = 0.0  # (not positive definite: only with zero prior precisions)
                else:
                    # preconditioner: the diagonal after centring the rows' h = (1, a + o) on their mean mu_c
                    # (the weight then absorbs the mean), i.e. z = C D^-1 C^T r with C = [[1, -mu_c], [0, I]]
                    diag[0] = alpha * m + lam[0]
                    for f in range(k):
                        mu_c[f] = a[f] + msum[f] / m
                        spread = max(qsum[f] - msum[f] * msum[f] / m, 0.0)
                        diag[1 + f] = alpha * spread + lam[1 + f] + lam[0] * mu_c[f] * mu_c[f]
                    x[:] = 0.0
                    _precondition(res, z, mu_c, diag, k)
                    for q in range(K1):
                        p[q] = z[q]
                    rz = _dot(res, z, 0, K1)
                    for _ in range(steps):
                        if not rz > 0.0:
                            break
                        for f in range(k):
                            pv[f] = p[1 + f]
                        pa32 = np.float32(p[0] + _dot(a, p, 1, k))
                        sc = 0.0
                        for f in range(k):
                            acc[f] = 0.0
                        for t in range(m):  # (H p)_t = pa + o_t.pv, then H^T (H p)
                            o = obuf[t]
                            s32 = np.float32(0.0)
                            for f in range(k):
                                s32 += o[f] * pv[f]
                            cv = pa32 + s32
                            sc += cv
                            for f in range(k):
                                acc32[f] += cv * o[f]
                            if (t + 1) % FLUSH == 0 or t == m - 1:
                                _flush(acc32, acc, k)
                        ap[0] = alpha * sc + lam[0] * p[0]
                        for f in range(k):
                            ap[1 + f] = alpha * (a[f] * sc + acc[f]) + lam[1 + f] * p[1 + f]
                        pap = _dot(p, ap, 0, K1)
                        if not pap > 0.0:
                            break
                        step = rz / pap
                        for q in range(K1):
                            x[q] += step * p[q]
                            res[q] -= step * ap[q]
                        _precondition(res, z, mu_c, diag, k)
                        rz_new = _dot(res, z, 0, K1)
                        beta = rz_new / rz
                        for q in range(K1):
                            p[q] = z[q] + beta * p[q]
                        rz = rz_new
            # apply: theta += x (unobserved: exactly the prior mean); caches; the rows' residuals
            # (dy_r = dw + dv.(a + o_r))
            obs = feat_obs[j]
            new = w[j] + x[0] if obs else mu_w[grp]
            dw = new - w[j]
            w[j] = new
            lin[g] += dw
            for f in range(k):
                old = V[f, j]
                new = old + x[1 + f] if obs else mu_v[grp, f]
                d = new - old
                V[f, j] = new
                S[f, g] += d
                Q[f, g] += new * new - old * old
                acc[f] = d
            da = dw + _dot(acc, a, 0, k)
            for t in range(m):  # in float64 (o_r is the float32 copy: off by ~1e-8 of a residual per sweep)
                if t + AHEAD_ROWS < m:
                    ra = rows[p0 + t + AHEAD_ROWS]
                    prefetch(e, ra)
                    if not buffered:
                        _prefetch_other(Ot, row_ent, b, ra)
                if buffered:
                    o = obuf[t]
                else:
                    o = otmp
                    _gather_other(Ot, row_ent, b, rows[p0 + t], o)
                s = da
                for f in range(k):
                    s += np.float64(o[f]) * acc[f]
                e[rows[p0 + t]] = et[t] - s


# Compiled twice, as fm.py's sweep: serial for small data (barriers cost more than the work), parallel from
# fm.PARALLEL_ROWS ratings. fastmath: the float32 dot products and row sums vectorise.
_KERNELS = {name: njit(cache=True, fastmath=FAST, **flags)(_fm._renamed(_onehot_block, f"_onehot_block_{name}"))
            for name, flags in (("serial", {}), ("parallel", {"parallel": True}))}


def sweep_normals(rng: np.random.Generator, blk_feat, blk_joint, n_feat: int, k: int) -> np.ndarray:
    """The exact kernels' normals array (w0, then w, then V by factor) filled where a cg sweep reads it.

    w0 and the shared (not one-hot) features' weights and vectors; the one-hots draw from streams.
    """
    z = np.zeros(1 + n_feat * (k + 1))
    z[0] = rng.standard_normal()
    for b in range(len(blk_joint)):
        j0, j1 = int(blk_feat[b] + blk_joint[b]), int(blk_feat[b + 1])
        if j1 > j0:
            z[1 + j0:1 + j1] = rng.standard_normal(j1 - j0)
            for f in range(k):
                base = 1 + n_feat + f * n_feat
                z[base + j0:base + j1] = rng.standard_normal(j1 - j0)
    return z


def fm_sweep_cg(flavor, row_ent, e, blk_ent, blk_feat, blk_joint, rows_ptr, rows, feat_ptr, feat_ent, feat_val,
                feat_group, feat_obs, w0, w, V, lin, S, Q, alpha, mu_w, lam_w, mu_v, lam_v, fit_w0, z, seeds,
                cg_steps, buf_rows=BUF_ROWS) -> float:
    """One MCMC sweep with the one-hots drawn by perturb-and-solve; in place like `fm.fm_sweep`; returns sum e^2.

    flavor: "serial" or "parallel" (the same numbers up to rounding). z: the exact kernels' normals for
    w0 and the shared features (`sweep_normals`); seeds: N_SEEDS uint64 stream seeds (SEED_ROWS: each
    entity's rows' eps, SEED_PRIOR: each one-hot's eta); cg_steps: CG steps per one-hot draw; buf_rows:
    an entity with more rows is solved exactly (Cholesky of its Gram, summed in the one pass over its rows).
    """
    linear, coord, _ = _fm._KERNELS[flavor]
    onehot = _KERNELS[flavor]
    seeds = np.asarray(seeds, np.uint64)
    k = V.shape[0]
    # w0 and the shared features' weights (the one-hots' weights are drawn with their vectors)
    linear(_fm.MODE_SAMPLE, row_ent, e, blk_ent, blk_feat, rows_ptr, rows, feat_ptr, feat_ent, feat_val, feat_group,
           feat_obs, w0, w, lin, alpha, mu_w, lam_w, fit_w0, z, np.asarray(blk_joint, np.int64))
    for b in range(row_ent.shape[0]):
        j0, j1 = blk_feat[b] + blk_joint[b], blk_feat[b + 1]
        if k and j0 < j1:
            coord(_fm.MODE_SAMPLE, b, row_ent, e, blk_ent, rows_ptr, rows, j0, j1, feat_ptr, feat_ent, feat_val,
                  feat_group, feat_obs, V, S, Q, alpha, mu_v, lam_v, z)
        if blk_joint[b]:
            e0, e1 = blk_ent[b], blk_ent[b + 1]
            bounds = e0 + row_chunks(rows_ptr[e0:e1 + 1] - rows_ptr[e0], k / 3.0 + 1.0)
            Ot = np.ascontiguousarray(S.T, np.float32)  # the other blocks' vectors, gathered per row
            onehot(b, row_ent, e, blk_ent, blk_feat, rows_ptr, rows, feat_group, feat_obs, w, V, lin, S, Q, Ot,
                   alpha, mu_w, lam_w, mu_v, lam_v, seeds[SEED_ROWS], seeds[SEED_PRIOR], int(cg_steps), int(buf_rows),
                   bounds)
    return float(_fm._sum_squares(e))


# ---------------------------------------------------------------- NumPy twin


def pcg_ref(P, rhs, steps, precondition):
    """Preconditioned CG for P x = rhs from x = 0, `steps` steps (None: np.linalg.solve)."""
    if steps is None:
        return np.linalg.solve(P, rhs)
    x = np.zeros_like(rhs)
    r = rhs.copy()
    z = precondition(r)
    p = z.copy()
    rz = r @ z
    for _ in range(steps):
        if not rz > 0:
            break
        ap = P @ p
        pap = p @ ap
        if not pap > 0:
            break
        step = rz / pap
        x += step * p
        r -= step * ap
        z = precondition(r)
        rz_new = r @ z
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x


def centred_precondition(H, alpha, lam):
    """The kernel's preconditioner for P = alpha H^T H + diag(lam), H = [1, h]: the diagonal after centring h."""
    mu = H[:, 1:].mean(axis=0)
    d = np.concatenate([[alpha * len(H) + lam[0]], alpha * ((H[:, 1:] - mu) ** 2).sum(axis=0) + lam[1:] + lam[0] * mu ** 2])

    def apply(r):
        t = np.concatenate([[r[0]], r[1:] - mu * r[0]]) / d
        return np.concatenate([[t[0] - mu @ t[1:]], t[1:]])

    return apply


def fm_sweep_cg_ref(d, X, ratings, w0, w, V, alpha, mu_w, lam_w, mu_v, lam_v, fit_w0, z, seeds, cg_steps,
                    buf_rows=BUF_ROWS):
    """NumPy twin of `fm_sweep_cg` on the dense design matrix X (rows x features); returns the residuals.

    d: the `Design` (blocks, and each entity's rows in the order its normals are drawn). The sweep is
    `fm.fm_sweep_ref`'s with each one-hot's (w_j, v_j) drawn by perturb-and-solve in float64:
    P = alpha H^T H + Lambda over the entity's rows, its perturbed right side from the same streams,
    solved by CG with the centred diagonal preconditioner (cg_steps=None, or an entity with more than
    buf_rows rows: np.linalg.solve, the exact draw given that noise).
    """
    k = V.shape[0]
    feat_blocks = np.searchsorted(d.blk_feat, np.arange(d.n_feat), side="right") - 1
    feat_joint = np.zeros(d.n_feat, bool)
    for b in range(len(d.blk_names)):
        feat_joint[d.blk_feat[b]:d.blk_feat[b] + d.blk_joint[b]] = True

    def draw(j, H, e):
        b = feat_blocks[j]
        g = int(d.blk_ent[b] + j - d.blk_feat[b])
        rr = d.rows[d.rows_ptr[g]:d.rows_ptr[g + 1]]
        Hg = H[rr]
        grp = d.feat_group[j]
        lam = np.concatenate([[lam_w[grp]], lam_v[grp]])
        mu = np.concatenate([[mu_w[grp]], mu_v[grp]])
        theta = np.concatenate([[w[j]], V[:, j]])
        xi, zeta = normals_ref(seeds[SEED_ROWS], g, len(rr)), normals_ref(seeds[SEED_PRIOR], j, k + 1)
        P = alpha * Hg.T @ Hg + np.diag(lam)
        rhs = Hg.T @ (alpha * e[rr] + np.sqrt(alpha) * xi) + lam * (mu - theta) + np.sqrt(lam) * zeta
        steps = None if len(rr) > buf_rows else cg_steps
        new = theta + pcg_ref(P, rhs, steps, centred_precondition(Hg, alpha, lam))
        return new[0], new[1:]

    return _fm.fm_sweep_ref(_fm.MODE_SAMPLE, X, ratings, feat_blocks, d.feat_group, feat_joint, w0, w, V, alpha, mu_w,
                            lam_w, mu_v, lam_v, fit_w0, z, joint_draw=draw)
