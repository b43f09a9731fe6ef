"""k-NN scores of every item for a few users in plain NumPy: same results as `knn_scores`, no Numba.

`recsys recommend RUN --user U` scores one user; loading Numba and its cached parallel kernels
costs more than the work, so the model uses these for small batches (and `knn_scores` for
large ones). Semantics are `knn_scores`'s exactly: for aggregate='mean' the first k
positive-similarity neighbours (in list order) that rated the target, Surprise's offsets per
mode, and its fallbacks; for 'sum' every stored positive-similarity neighbour that rated it.
"""

from __future__ import annotations

import numpy as np

from recsys_cli.models._kernels.csr import row_entries

MODES = ("basic", "means", "baseline")


def _finish(num, den, cnt, base, *, mode: int, agg_sum: bool, mu: float, min_k: int) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)  # bincount of nothing is int
    ok = (cnt >= min_k) & (den > 0.0)
    if agg_sum:
        return np.where(ok, num, 0.0).astype(np.float32)
    ratio = np.divide(num, den, out=np.zeros_like(num), where=ok)
    if mode == 0:
        return np.where(ok, ratio, mu).astype(np.float32)
    return np.where(ok, base + ratio, base).astype(np.float32)


def _positive_prefix(nbr: np.ndarray, sims: np.ndarray) -> np.ndarray:
    """Entries before the first missing or non-positive neighbour of each list."""
    return np.logical_and.accumulate((nbr >= 0) & (sims > 0), axis=-1)


def item_knn_scores_np(users, neighbors, sims, indptr, indices, data, *, mu: float, k: int = 40, min_k: int = 1,
                       mode: str = "basic", aggregate: str = "mean", row_means=None, row_bias=None,
                       col_bias=None) -> np.ndarray:
    """NumPy twin of `knn_scores.item_knn_scores` for known users (rows: items, cols: users)."""
    m = MODES.index(mode)
    nbr = np.asarray(neighbors)
    k = nbr.shape[1] if aggregate == "sum" else k
    S = np.asarray(sims, np.float64)
    n_items = nbr.shape[0]
    valid = _positive_prefix(nbr, S)
    nb = np.where(nbr >= 0, nbr, 0)
    out = np.empty((len(users), n_items), np.float32)
    for b, u in enumerate(np.asarray(users, np.int64)):
        rated_items = np.asarray(indices[indptr[u]:indptr[u + 1]], np.int64)
        vals = np.asarray(data[indptr[u]:indptr[u + 1]], np.float64)
        if m == 1:
            vals = vals - np.asarray(row_means, np.float64)[rated_items]
        elif m == 2:
            vals = vals - (mu + np.asarray(row_bias, np.float64)[rated_items] + float(col_bias[u]))
        resid = np.zeros(n_items)
        resid[rated_items] = vals
        rated = np.zeros(n_items, bool)
        rated[rated_items] = True
        hit = valid & rated[nb]
        take = hit & (np.cumsum(hit, axis=1) <= k)
        w = np.where(take, S, 0.0)
        num, den, cnt = (w * resid[nb]).sum(axis=1), w.sum(axis=1), take.sum(axis=1)
        base = (np.asarray(row_means, np.float64) if m == 1 else
                mu + np.asarray(row_bias, np.float64) + float(col_bias[u]) if m == 2 else 0.0)
        out[b] = _finish(num, den, cnt, base, mode=m, agg_sum=aggregate == "sum", mu=mu, min_k=min_k)
    return out


def user_knn_scores_np(users, neighbors, sims, indptr, indices, data, *, n_items: int, mu: float, k: int = 40,
                       min_k: int = 1, mode: str = "basic", aggregate: str = "mean", row_means=None,
                       row_bias=None, col_bias=None) -> np.ndarray:
    """NumPy twin of `knn_scores.user_knn_scores` for known users (rows: users, cols: items)."""
    m = MODES.index(mode)
    nbr_all = np.asarray(neighbors)
    k = nbr_all.shape[1] if aggregate == "sum" else k
    out = np.empty((len(users), n_items), np.float32)
    for b, u in enumerate(np.asarray(users, np.int64)):
        nbr, s = nbr_all[u], np.asarray(sims[u], np.float64)
        keep = _positive_prefix(nbr, s)
        nbr, s = nbr[keep].astype(np.int64), s[keep]
        counts = (np.asarray(indptr)[nbr + 1] - np.asarray(indptr)[nbr]).astype(np.int64)
        rows = row_entries(indptr, nbr)
        items = np.asarray(indices, np.int64)[rows]  # rank-major: neighbour by neighbour, in list order
        vals = np.asarray(data, np.float64)[rows]
        who = np.repeat(nbr, counts)
        if m == 1:
            vals = vals - np.asarray(row_means, np.float64)[who]
        elif m == 2:
            vals = vals - (mu + np.asarray(row_bias, np.float64)[who] + np.asarray(col_bias, np.float64)[items])
        w = np.repeat(s, counts)
        order = np.argsort(items, kind="stable")  # per item, neighbours stay in list order
        sorted_items = items[order]
        first = np.flatnonzero(np.r_[True, sorted_items[1:] != sorted_items[:-1]]) if len(items) else np.zeros(0, int)
        rank_in_item = np.arange(len(items)) - np.repeat(first, np.diff(np.r_[first, len(items)]))
        sel = order[rank_in_item < k]
        num = np.bincount(items[sel], weights=w[sel] * vals[sel], minlength=n_items)
        den = np.bincount(items[sel], weights=w[sel], minlength=n_items)
        cnt = np.bincount(items[sel], minlength=n_items)
        base = (float(row_means[u]) if m == 1 else
                mu + float(row_bias[u]) + np.asarray(col_bias, np.float64)[:n_items] if m == 2 else 0.0)
        out[b] = _finish(num, den, cnt, base, mode=m, agg_sum=aggregate == "sum", mu=mu, min_k=min_k)
    return out
