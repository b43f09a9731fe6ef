"""SGD kernels for biased matrix factorisation (SVD) and SVD++, each with a NumPy reference twin.

Conventions: parameter arrays are float32 and updated in place; indices are int32 (any
integer dtype works). SVD steps use float32 arithmetic (explicit SIMD rows, see `simd`),
SVD++ steps float64. An epoch kernel runs one pass and returns the epoch's sum of squared
errors (float64), each error taken with the parameters as they were just before that
rating's update, as in Surprise's SGD loop.
The caller owns the epoch loop, the shuffling (`order`, or `ShuffledRatings` for a whole
fit) and the NaN check on the result.
"""

from __future__ import annotations

import math

import numpy as np
from numba import get_num_threads, njit, prange

from recsys_cli.models._kernels.shuffle import shuffle_rows, shuffle_together
from recsys_cli.models._kernels.simd import prefetch_row, row_dot, row_update
from recsys_cli.models._kernels.splitmix import seed64

# No 'nnan'/'ninf': a diverging run must still surface NaN/inf in the returned loss.
_FM = {"nsz", "arcp", "contract", "reassoc"}


# ---------------------------------------------------------------- SVD (biased MF)

# No 'reassoc' here: the scalar error term is evaluated in the written order, and the row
# work (the bulk) is explicit SIMD from `simd`.
_FM_SCALAR = {"nsz", "arcp", "contract"}


@njit(cache=True)
def _gather(users, items, ratings, order, n_users, n_items):
    """(users, items, ratings)[order] as int32, int32, float32; IndexError on any index out of range."""
    n = order.shape[0]
    uu = np.empty(n, np.int32)
    ii = np.empty(n, np.int32)
    rr = np.empty(n, np.float32)
    for t in range(n):
        idx = order[t]
        if idx < 0 or idx >= ratings.shape[0]:
            raise IndexError("order holds a position outside the ratings")
        u = users[idx]
        i = items[idx]
        if u < 0 or u >= n_users or i < 0 or i >= n_items:
            raise IndexError("a user or item index is outside P or Q")
        uu[t] = u
        ii[t] = i
        rr[t] = ratings[idx]
    return uu, ii, rr


@njit(cache=True, fastmath=_FM_SCALAR)
def _svd_steps(uu, ii, rr, mu, bu, bi, P, Q, lr_bu, lr_bi, lr_pu, lr_qi, reg_bu, reg_bi, reg_pu, reg_qi, use_bias):
    """SGD over gathered ratings in order, all float32 (scalars too); returns the SSE (float64).

    Indices must be valid (`_gather` checks them): the SIMD row code does no bounds checks.
    """
    # Surprise's updates p += lr*(err*q - reg*p), b += lr*(err - reg*b), as decay + step.
    one = np.float32(1.0)
    a_pu, a_qi, a_bu, a_bi = one - lr_pu * reg_pu, one - lr_qi * reg_qi, one - lr_bu * reg_bu, one - lr_bi * reg_bi
    n = uu.shape[0]
    sse = 0.0
    ahead = 4  # prefetch the rows this many ratings ahead
    for t in range(n):
        if t + ahead < n:
            prefetch_row(P, uu[t + ahead])
            prefetch_row(Q, ii[t + ahead])
        u = uu[t]
        i = ii[t]
        if use_bias:
            b_u = bu[u]
            b_i = bi[i]
            err = (((rr[t] - mu) - b_u) - b_i) - row_dot(P, u, Q, i)
            bu[u] = a_bu * b_u + lr_bu * err
            bi[i] = a_bi * b_i + lr_bi * err
        else:
            err = rr[t] - row_dot(P, u, Q, i)
        sse += np.float64(err) * np.float64(err)
        row_update(P, u, Q, i, a_pu, lr_pu * err, a_qi, lr_qi * err)
    return sse


@njit(cache=True, parallel=True)
def _svd_chunks(uu, ii, rr, mu, bu, bi, P, Q, lr_bu, lr_bi, lr_pu, lr_qi, reg_bu, reg_bi, reg_pu, reg_qi,
                use_bias, n_chunks):
    n = uu.shape[0]
    sse = 0.0
    for c in prange(n_chunks):
        lo, hi = c * n // n_chunks, (c + 1) * n // n_chunks
        sse += _svd_steps(uu[lo:hi], ii[lo:hi], rr[lo:hi], mu, bu, bi, P, Q, lr_bu, lr_bi, lr_pu, lr_qi,
                          reg_bu, reg_bi, reg_pu, reg_qi, use_bias)
    return sse


def _check_params(bu, bi, P, Q) -> None:
    for name, a, ndim in (("bu", bu, 1), ("bi", bi, 1), ("P", P, 2), ("Q", Q, 2)):
        if not (isinstance(a, np.ndarray) and a.dtype == np.float32 and a.ndim == ndim
                and a.flags.c_contiguous and a.flags.writeable):
            raise TypeError(f"{name} must be a writeable C-contiguous float32 array with {ndim} dimension(s)")
    if P.shape[1] != Q.shape[1] or bu.shape[0] != P.shape[0] or bi.shape[0] != Q.shape[0]:
        raise ValueError(f"shapes do not match: bu {bu.shape}, bi {bi.shape}, P {P.shape}, Q {Q.shape}")


def _svd_run(uu, ii, rr, mu, bu, bi, P, Q, rates, use_bias, threads: int) -> float:
    """One epoch over ratings already in visiting order (indices checked): sequential, or Hogwild."""
    args = (uu, ii, rr, np.float32(mu), bu, bi, P, Q, *(np.float32(x) for x in rates), bool(use_bias))
    if threads > 1:
        # get_num_threads() is read here, not inside the kernel, so the kernel stays cacheable.
        return float(_svd_chunks(*args, get_num_threads()))
    return float(_svd_steps(*args))


def svd_epoch(users, items, ratings, order, mu, bu, bi, P, Q, lr_bu, lr_bi, lr_pu, lr_qi,
              reg_bu, reg_bi, reg_pu, reg_qi, use_bias, threads: int = 1) -> float:
    """One SGD epoch of (biased) MF over ratings in `order`; returns the epoch SSE.

    Same update as Surprise's SVD, in float32 arithmetic. bu, bi, P, Q must be writeable
    C-contiguous float32 arrays. With use_bias=False, mu/bu/bi are ignored and left as is.
    threads > 1 is Hogwild (lock-free): `order` is cut into one contiguous chunk per Numba
    thread; nondeterministic with more than one thread, equal to sequential with
    numba.set_num_threads(1).
    """
    _check_params(bu, bi, P, Q)
    # Gathered once, the ratings are then read sequentially instead of chased through `order`.
    gathered = _gather(users, items, ratings, order, P.shape[0], Q.shape[0])
    rates = (lr_bu, lr_bi, lr_pu, lr_qi, reg_bu, reg_bi, reg_pu, reg_qi)
    return _svd_run(*gathered, mu, bu, bi, P, Q, rates, use_bias, threads)


class ShuffledRatings:
    """One fit's ratings, index-checked and copied once, then reshuffled in place before each SGD epoch.

    `users`/`items`/`ratings` (int32, int32, float32) hold the ratings in the current visiting
    order; `shuffle(epoch)` draws the next order from `seed`, so a fit is reproducible by seed.
    """

    def __init__(self, users, items, ratings, n_users: int, n_items: int, seed: int) -> None:
        n = len(ratings)
        if n >= 2**32:
            raise ValueError("ShuffledRatings takes fewer than 2**32 ratings")
        self.n_users, self.n_items, self.seed = int(n_users), int(n_items), seed64(seed)
        self.users, self.items, self.ratings = _gather(users, items, ratings, np.arange(n), self.n_users,
                                                       self.n_items)

    def shuffle(self, epoch: int) -> None:
        """Put the ratings in the visiting order of `epoch` (a fresh permutation of the current one)."""
        shuffle_together(self.users, self.items, self.ratings, self.seed, epoch)


def svd_epoch_shuffled(data: ShuffledRatings, mu, bu, bi, P, Q, lr_bu, lr_bi, lr_pu, lr_qi,
                       reg_bu, reg_bi, reg_pu, reg_qi, use_bias, threads: int = 1) -> float:
    """`svd_epoch` over `data` in its current order, without re-checking indices; Hogwild if threads > 1.

    P and Q must have data.n_users and data.n_items rows.
    """
    _check_params(bu, bi, P, Q)
    if P.shape[0] != data.n_users or Q.shape[0] != data.n_items:
        raise ValueError(f"P {P.shape} and Q {Q.shape} must have {data.n_users} and {data.n_items} rows")
    rates = (lr_bu, lr_bi, lr_pu, lr_qi, reg_bu, reg_bi, reg_pu, reg_qi)
    return _svd_run(data.users, data.items, data.ratings, mu, bu, bi, P, Q, rates, use_bias, threads)


def svd_epoch_ref(users, items, ratings, order, mu, bu, bi, P, Q, lr_bu, lr_bi, lr_pu, lr_qi,
                  reg_bu, reg_bi, reg_pu, reg_qi, use_bias) -> float:
    """Plain-NumPy twin of `svd_epoch` (slow; for tests)."""
    mu = float(mu)
    sse = 0.0
    for idx in order:
        u, i, r = int(users[idx]), int(items[idx]), float(ratings[idx])
        p, q = P[u].astype(np.float64), Q[i].astype(np.float64)
        if use_bias:
            b_u, b_i = float(bu[u]), float(bi[i])
            err = r - (mu + b_u + b_i + float(p @ q))
            bu[u] = b_u + lr_bu * (err - reg_bu * b_u)
            bi[i] = b_i + lr_bi * (err - reg_bi * b_i)
        else:
            err = r - float(p @ q)
        sse += err * err
        P[u] = p + lr_pu * (err * q - reg_pu * p)
        Q[i] = q + lr_qi * (err * p - reg_qi * q)
    return sse


# ---------------------------------------------------------------- SVD++


@njit(cache=True, fastmath=_FM)
def _implicit_sum(u, indptr, indices, Y, z):
    """Write |N(u)|^-0.5 * sum_{j in N(u)} Y[j] into z (float64); return the scale (0 if N(u) empty)."""
    z[:] = 0.0
    lo, hi = indptr[u], indptr[u + 1]
    for t in range(lo, hi):
        j = indices[t]
        for f in range(Y.shape[1]):
            z[f] += np.float64(Y[j, f])
    scale = 1.0 / math.sqrt(hi - lo) if hi > lo else 0.0
    for f in range(Y.shape[1]):
        z[f] *= scale
    return scale


@njit(cache=True, fastmath=_FM, inline="always")
def _svdpp_rating(u, i, r, mu, bu, bi, P, Q, z, q_old, lr_bu, lr_bi, lr_pu, lr_qi, reg_bu, reg_bi, reg_pu, reg_qi):
    """One SVD++ step on biases, P[u] and Q[i] with the implicit term z fixed; returns the error.

    Leaves Q[i] as it was before the step in q_old (both SVD++ kernels update Y from it).
    """
    k = P.shape[1]
    dot = 0.0
    for f in range(k):
        dot += np.float64(Q[i, f]) * (np.float64(P[u, f]) + z[f])
    err = np.float64(r) - (np.float64(mu) + np.float64(bu[u]) + np.float64(bi[i]) + dot)
    b = np.float64(bu[u])
    bu[u] = b + lr_bu * (err - reg_bu * b)
    b = np.float64(bi[i])
    bi[i] = b + lr_bi * (err - reg_bi * b)
    for f in range(k):
        puf = np.float64(P[u, f])
        qif = np.float64(Q[i, f])
        q_old[f] = qif
        P[u, f] = puf + lr_pu * (err * qif - reg_pu * puf)
        Q[i, f] = qif + lr_qi * (err * (puf + z[f]) - reg_qi * qif)
    return err


@njit(cache=True, fastmath=_FM)
def svdpp_epoch(users, items, ratings, order, indptr, indices, mu, bu, bi, P, Q, Y,
                lr_bu, lr_bi, lr_pu, lr_qi, lr_yj, reg_bu, reg_bi, reg_pu, reg_qi, reg_yj):
    """One SVD++ SGD epoch with Surprise's exact per-rating semantics; returns the epoch SSE.

    N(u) = indices[indptr[u]:indptr[u+1]]. The implicit term is recomputed and every Y[j],
    j in N(u), updated at each rating: O(|N(u)| * k) per rating. Use `svdpp_epoch_grouped`
    for speed.
    """
    k = P.shape[1]
    z = np.zeros(k)
    q_old = np.empty(k)
    sse = 0.0
    for t in range(order.shape[0]):
        idx = order[t]
        u = users[idx]
        i = items[idx]
        scale = _implicit_sum(u, indptr, indices, Y, z)
        err = _svdpp_rating(u, i, ratings[idx], mu, bu, bi, P, Q, z, q_old,
                            lr_bu, lr_bi, lr_pu, lr_qi, reg_bu, reg_bi, reg_pu, reg_qi)
        sse += err * err
        # Y uses the item vector from before this rating's update (z was fixed during it).
        for s in range(indptr[u], indptr[u + 1]):
            j = indices[s]
            for f in range(k):
                y = np.float64(Y[j, f])
                Y[j, f] = y + lr_yj * (err * q_old[f] * scale - reg_yj * y)
    return sse


def svdpp_epoch_ref(users, items, ratings, order, indptr, indices, mu, bu, bi, P, Q, Y,
                    lr_bu, lr_bi, lr_pu, lr_qi, lr_yj, reg_bu, reg_bi, reg_pu, reg_qi, reg_yj) -> float:
    """Plain-NumPy twin of `svdpp_epoch` (slow; for tests)."""
    mu = float(mu)
    sse = 0.0
    for idx in order:
        u, i, r = int(users[idx]), int(items[idx]), float(ratings[idx])
        n_u = indices[indptr[u]:indptr[u + 1]]
        scale = len(n_u) ** -0.5 if len(n_u) else 0.0
        z = Y[n_u].astype(np.float64).sum(axis=0) * scale
        p, q = P[u].astype(np.float64), Q[i].astype(np.float64)
        b_u, b_i = float(bu[u]), float(bi[i])
        err = r - (mu + b_u + b_i + float(q @ (p + z)))
        sse += err * err
        bu[u] = b_u + lr_bu * (err - reg_bu * b_u)
        bi[i] = b_i + lr_bi * (err - reg_bi * b_i)
        P[u] = p + lr_pu * (err * q - reg_pu * p)
        Q[i] = q + lr_qi * (err * (p + z) - reg_qi * q)
        y = Y[n_u].astype(np.float64)
        Y[n_u] = y + lr_yj * (err * scale * q - reg_yj * y)
    return sse


@njit(cache=True, fastmath=_FM)
def svdpp_epoch_grouped(user_order, r_indptr, r_items, r_ratings, r_order, indptr, indices, mu,
                        bu, bi, P, Q, Y, lr_bu, lr_bi, lr_pu, lr_qi, lr_yj,
                        reg_bu, reg_bi, reg_pu, reg_qi, reg_yj):
    """Fast SVD++ epoch: users in `user_order`, each user's ratings in a row-local shuffled order.

    The user's ratings are r_items/r_ratings[r_order[r_indptr[u]:r_indptr[u+1]]] (see
    `shuffle_within_rows`). The implicit term is computed once per user and held fixed
    over the user's ratings; the Y gradient is summed and applied once per user as
    Y[j] <- (1 - lr_yj*reg_yj)^n_u * Y[j] + lr_yj * |N(u)|^-0.5 * sum(err * q_i).
    Cost O((|N(u)| + |R(u)|) * k) per user. Identical to `svdpp_epoch` when every user has
    a single rating; otherwise a first-order approximation of it (Y is stale within a user).
    Returns the epoch SSE.
    """
    k = P.shape[1]
    z = np.zeros(k)
    acc = np.zeros(k)
    q_old = np.empty(k)
    sse = 0.0
    for t in range(user_order.shape[0]):
        u = user_order[t]
        lo, hi = r_indptr[u], r_indptr[u + 1]
        if hi == lo:
            continue
        scale = _implicit_sum(u, indptr, indices, Y, z)
        acc[:] = 0.0
        for s in range(lo, hi):
            pos = r_order[s]
            err = _svdpp_rating(u, r_items[pos], r_ratings[pos], mu, bu, bi, P, Q, z, q_old,
                                lr_bu, lr_bi, lr_pu, lr_qi, reg_bu, reg_bi, reg_pu, reg_qi)
            sse += err * err
            for f in range(k):
                acc[f] += err * q_old[f]
        decay = (1.0 - lr_yj * reg_yj) ** (hi - lo)
        for s in range(indptr[u], indptr[u + 1]):
            j = indices[s]
            for f in range(k):
                Y[j, f] = decay * np.float64(Y[j, f]) + lr_yj * scale * acc[f]
    return sse


def svdpp_epoch_grouped_ref(user_order, r_indptr, r_items, r_ratings, r_order, indptr, indices, mu,
                            bu, bi, P, Q, Y, lr_bu, lr_bi, lr_pu, lr_qi, lr_yj,
                            reg_bu, reg_bi, reg_pu, reg_qi, reg_yj) -> float:
    """Plain-NumPy twin of `svdpp_epoch_grouped` (slow; for tests)."""
    mu = float(mu)
    sse = 0.0
    for u in user_order:
        pos = r_order[r_indptr[u]:r_indptr[u + 1]]
        if len(pos) == 0:
            continue
        n_u = indices[indptr[u]:indptr[u + 1]]
        scale = len(n_u) ** -0.5 if len(n_u) else 0.0
        z = Y[n_u].astype(np.float64).sum(axis=0) * scale
        acc = np.zeros(P.shape[1])
        for i, r in zip(r_items[pos], r_ratings[pos], strict=True):
            p, q = P[u].astype(np.float64), Q[i].astype(np.float64)
            b_u, b_i = float(bu[u]), float(bi[i])
            err = float(r) - (mu + b_u + b_i + float(q @ (p + z)))
            sse += err * err
            bu[u] = b_u + lr_bu * (err - reg_bu * b_u)
            bi[i] = b_i + lr_bi * (err - reg_bi * b_i)
            P[u] = p + lr_pu * (err * q - reg_pu * p)
            Q[i] = q + lr_qi * (err * (p + z) - reg_qi * q)
            acc += err * q
        Y[n_u] = (1.0 - lr_yj * reg_yj) ** len(pos) * Y[n_u].astype(np.float64) + lr_yj * scale * acc
    return sse


def shuffle_within_rows(indptr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions that shuffle each CSR row in place of itself: the `r_order` of `svdpp_epoch_grouped`."""
    return shuffle_rows(np.asarray(indptr, np.int64), seed64(rng.integers(2**63)))


# ---------------------------------------------------------------- SVD++ user factors


@njit(cache=True, parallel=True, fastmath=_FM)
def user_implicit(indptr, indices, Y):
    """Per-user SVD++ implicit factor |N(u)|^-0.5 * sum_{j in N(u)} Y[j], shape (n_users, k), float32."""
    n_users = indptr.shape[0] - 1
    k = Y.shape[1]
    out = np.zeros((n_users, k), dtype=np.float32)
    for u in prange(n_users):
        z = np.zeros(k)
        _implicit_sum(u, indptr, indices, Y, z)
        for f in range(k):
            out[u, f] = z[f]
    return out


def user_implicit_ref(indptr, indices, Y) -> np.ndarray:
    """Plain-NumPy twin of `user_implicit`."""
    out = np.zeros((len(indptr) - 1, Y.shape[1]), dtype=np.float32)
    for u in range(len(indptr) - 1):
        n_u = indices[indptr[u]:indptr[u + 1]]
        if len(n_u):
            out[u] = Y[n_u].astype(np.float64).sum(axis=0) / np.sqrt(len(n_u))
    return out


# ---------------------------------------------------------------- fold-in


def fold_in_user_ridge(items, ratings, mu, bi, Q, reg: float, *, use_bias: bool = True,
                       implicit: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Closed-form (bu, p) for a new user from their ratings, with item parameters held fixed.

    Minimises sum (r - mu - bi - bu - q.(p + implicit))^2 + reg*(bu^2 + |p|^2). With
    use_bias=False the model is r ~ q.p (mu, bi ignored; bu returned as 0.0). `implicit`
    is SVD++'s fixed implicit vector for the user, if any. Returns (bu, p float32).
    """
    items = np.asarray(items, dtype=np.int64)
    Qu = Q[items].astype(np.float64)
    target = np.asarray(ratings, dtype=np.float64)
    if use_bias:
        target = target - float(mu) - bi[items].astype(np.float64)
        X = np.hstack([np.ones((len(items), 1)), Qu])
    else:
        X = Qu
    if implicit is not None:
        target = target - Qu @ np.asarray(implicit, dtype=np.float64)
    A = X.T @ X + reg * np.eye(X.shape[1])
    w = np.linalg.solve(A, X.T @ target)
    if use_bias:
        return float(w[0]), w[1:].astype(np.float32)
    return 0.0, w.astype(np.float32)


def fold_in_user_ridge_ref(items, ratings, mu, bi, Q, reg: float, *, use_bias: bool = True,
                           implicit: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Twin of `fold_in_user_ridge` via least squares on the reg-augmented system."""
    Qu = Q[np.asarray(items)].astype(np.float64)
    y = np.asarray(ratings, dtype=np.float64) - (Qu @ implicit if implicit is not None else 0.0)
    if use_bias:
        y = y - float(mu) - bi[np.asarray(items)]
        Qu = np.column_stack([np.ones(len(y)), Qu])
    d = Qu.shape[1]
    X = np.vstack([Qu, np.sqrt(reg) * np.eye(d)])
    w = np.linalg.lstsq(X, np.concatenate([y, np.zeros(d)]), rcond=None)[0]
    return (float(w[0]), w[1:].astype(np.float32)) if use_bias else (0.0, w.astype(np.float32))
