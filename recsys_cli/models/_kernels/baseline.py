"""User/item bias baselines (r_ui ~ mu + b_u + b_i), the same estimators as Surprise's BaselineOnly.

Inputs are parallel rating arrays (`users`, `items` int indices, `ratings` float); the biases
are computed in float64 and returned as float32 arrays `(bu, bi)`. Each estimator has a
plain-loop reference twin named `<name>_ref`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


def _as_arrays(users, items, ratings, n_users: int, n_items: int):
    u, i, r = np.asarray(users, np.int64), np.asarray(items, np.int64), np.asarray(ratings, np.float64)
    if not (u.shape == i.shape == r.shape):
        raise ValueError("users, items and ratings must have the same length")
    for name, idx, n in (("user", u, n_users), ("item", i, n_items)):
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"{name} indices must lie in [0, {n})")
    return u, i, r


_CHUNKS = 8  # fixed partial sums per pass: the result does not depend on the thread count


@njit(parallel=True, cache=True)
def _half_epoch(rows, other, r, mu, other_bias, count, reg, part, out):
    """out[x] = sum over x's ratings of (r - mu - other_bias[other]) / (reg + count[x]), in _CHUNKS partial sums."""
    n = r.shape[0]
    for c in prange(_CHUNKS):
        acc = part[c]
        acc[:] = 0.0
        for t in range(c * n // _CHUNKS, (c + 1) * n // _CHUNKS):
            acc[rows[t]] += np.float64(r[t]) - mu - other_bias[other[t]]
    for x in prange(out.shape[0]):
        s = 0.0
        for c in range(_CHUNKS):
            s += part[c, x]
        out[x] = s / (reg + count[x])


@njit(cache=True)
def _baseline_als_kernel(u, i, r, mu, n_users, n_items, reg_u, reg_i, n_epochs):
    cnt_u = np.zeros(n_users)
    cnt_i = np.zeros(n_items)
    for t in range(r.shape[0]):
        cnt_u[u[t]] += 1.0
        cnt_i[i[t]] += 1.0
    bu = np.zeros(n_users)
    bi = np.zeros(n_items)
    part_i = np.empty((_CHUNKS, n_items))
    part_u = np.empty((_CHUNKS, n_users))
    for _ in range(n_epochs):
        _half_epoch(i, u, r, mu, bu, cnt_i, reg_i, part_i, bi)
        _half_epoch(u, i, r, mu, bi, cnt_u, reg_u, part_u, bu)
    return bu.astype(np.float32), bi.astype(np.float32)


def baseline_als(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int,
                 n_items: int, mu: float, reg_u: float = 15.0, reg_i: float = 10.0,
                 n_epochs: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Surprise's ALS baseline: each epoch sets b_i from the current b_u, then b_u from the new b_i.

    One fused Numba pass per half-epoch over the ratings (parallel partial sums), no temporaries:
    this runs under every model's fit (the fallback baselines), so it must stay cheap at 25M ratings.
    """
    u = np.asarray(users)
    i = np.asarray(items)
    r = np.asarray(ratings)
    u = u if u.dtype in (np.int32, np.int64) else u.astype(np.int64)
    i = i if i.dtype in (np.int32, np.int64) else i.astype(np.int64)
    r = r if r.dtype in (np.float32, np.float64) else r.astype(np.float64)
    if not (u.shape == i.shape == r.shape):
        raise ValueError("users, items and ratings must have the same length")
    for name, idx, n in (("user", u, n_users), ("item", i, n_items)):
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"{name} indices must lie in [0, {n})")
    return _baseline_als_kernel(u, i, r, np.float64(mu), int(n_users), int(n_items), np.float64(reg_u),
                                np.float64(reg_i), int(n_epochs))


def baseline_als_ref(users, items, ratings, n_users: int, n_items: int, mu: float,
                     reg_u: float = 15.0, reg_i: float = 10.0, n_epochs: int = 10):
    """Plain-loop twin of `baseline_als`."""
    u, i, r = _as_arrays(users, items, ratings, n_users, n_items)
    bu = [0.0] * n_users
    bi = [0.0] * n_items
    for _ in range(int(n_epochs)):
        dev_i = [0.0] * n_items
        cnt_i = [0] * n_items
        for t in range(len(r)):
            dev_i[i[t]] += r[t] - mu - bu[u[t]]
            cnt_i[i[t]] += 1
        bi = [dev_i[j] / (reg_i + cnt_i[j]) for j in range(n_items)]
        dev_u = [0.0] * n_users
        cnt_u = [0] * n_users
        for t in range(len(r)):
            dev_u[u[t]] += r[t] - mu - bi[i[t]]
            cnt_u[u[t]] += 1
        bu = [dev_u[v] / (reg_u + cnt_u[v]) for v in range(n_users)]
    return np.array(bu, np.float32), np.array(bi, np.float32)


@njit(cache=True)
def baseline_sgd_epoch(users, items, ratings, order, mu, bu, bi, reg, lr):
    """One SGD pass over ratings in `order`, updating float64 `bu`, `bi` in place; returns the SSE."""
    sse = 0.0
    for t in range(order.shape[0]):
        idx = order[t]
        u = users[idx]
        i = items[idx]
        err = np.float64(ratings[idx]) - (mu + bu[u] + bi[i])
        bu[u] += lr * (err - reg * bu[u])
        bi[i] += lr * (err - reg * bi[i])
        sse += err * err
    return sse


def _sgd_orders(users, n_ratings: int, n_epochs: int, seed: int | None):
    """Visit order per epoch: Surprise's (grouped by user, stable) when seed is None, else shuffled."""
    if seed is None:
        fixed = np.argsort(users, kind="stable").astype(np.int64)
        for _ in range(n_epochs):
            yield fixed
    else:
        rng = np.random.default_rng(seed)
        for _ in range(n_epochs):
            yield rng.permutation(n_ratings).astype(np.int64)


def baseline_sgd(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int,
                 n_items: int, mu: float, reg: float = 0.02, lr: float = 0.005, n_epochs: int = 20,
                 seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Surprise's SGD baseline; seed=None visits ratings grouped by user (Surprise's order), else shuffles.

    With seed=None and user indices numbered in order of first appearance, the result equals
    Surprise's BaselineOnly(method='sgd'). A seed draws a new permutation every epoch.
    A too large `lr` diverges: the biases come back NaN or infinite, and the caller checks them.
    """
    u, i, r = _as_arrays(users, items, ratings, n_users, n_items)
    bu = np.zeros(n_users, np.float64)
    bi = np.zeros(n_items, np.float64)
    for order in _sgd_orders(u, len(r), int(n_epochs), seed):
        if not np.isfinite(baseline_sgd_epoch(u, i, r, order, float(mu), bu, bi, float(reg), float(lr))):
            break  # diverged: further epochs only spread NaN
    with np.errstate(over="ignore"):  # a diverged bias past float32's range becomes inf, which the caller checks
        return bu.astype(np.float32), bi.astype(np.float32)


def baseline_sgd_ref(users, items, ratings, n_users: int, n_items: int, mu: float,
                     reg: float = 0.02, lr: float = 0.005, n_epochs: int = 20, seed: int | None = None):
    """Plain-loop twin of `baseline_sgd` (same visit orders)."""
    u, i, r = _as_arrays(users, items, ratings, n_users, n_items)
    bu = [0.0] * n_users
    bi = [0.0] * n_items
    for order in _sgd_orders(u, len(r), int(n_epochs), seed):
        for idx in order:
            err = r[idx] - (mu + bu[u[idx]] + bi[i[idx]])
            bu[u[idx]] += lr * (err - reg * bu[u[idx]])
            bi[i[idx]] += lr * (err - reg * bi[i[idx]])
    return np.array(bu, np.float32), np.array(bi, np.float32)
