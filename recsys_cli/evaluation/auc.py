"""Per-user AUC: exact over every non-excluded item, or against sampled negatives.

Positives are a user's held-out relevant items; negatives are the other items not excluded
(usually the user's training items). A tie counts one half. Every kernel has a
``<kernel>_ref`` twin written plainly, used by the tests.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit, prange

from recsys_cli.errors import DataError
from recsys_cli.evaluation.user_lists import canonical_csr, empty_csr
from recsys_cli.models._kernels.splitmix import GOLDEN, MASK64, U_GOLDEN, next64, next64_py

__all__ = ["auc_from_pairs", "auc_from_scores", "auc_per_user", "auc_sampled", "sample_negatives"]


@njit(cache=True)
def _auc_one(pos: np.ndarray, neg_sorted: np.ndarray) -> float:
    """AUC of positives against sorted negatives; a tie counts one half."""
    total = 0.0
    below = 0  # negatives < p
    upto = 0  # negatives <= p
    for p in np.sort(pos):
        while below < neg_sorted.shape[0] and neg_sorted[below] < p:
            below += 1
        upto = max(upto, below)
        while upto < neg_sorted.shape[0] and neg_sorted[upto] <= p:
            upto += 1
        total += below + 0.5 * (upto - below)
    return total / (pos.shape[0] * neg_sorted.shape[0])


@njit(cache=True, parallel=True)
def auc_per_user(
    scores: np.ndarray,
    rel_indptr: np.ndarray,
    rel_indices: np.ndarray,
    excl_indptr: np.ndarray,
    excl_indices: np.ndarray,
) -> np.ndarray:
    """Per-user AUC of full score rows (NaN when a user has no positive or no negative).

    Rows must be sorted and unique per user (see :func:`canonical_csr`). Negatives are
    all items neither relevant nor excluded.
    """
    n_users, n_items = scores.shape
    out = np.full(n_users, np.nan)
    for u in prange(n_users):
        rs, re = rel_indptr[u], rel_indptr[u + 1]
        xs, xe = excl_indptr[u], excl_indptr[u + 1]
        if re == rs:
            continue
        neg = np.empty(n_items, dtype=scores.dtype)
        n_neg = 0
        r, x = rs, xs
        for i in range(n_items):
            while r < re and rel_indices[r] < i:
                r += 1
            while x < xe and excl_indices[x] < i:
                x += 1
            if (r < re and rel_indices[r] == i) or (x < xe and excl_indices[x] == i):
                continue
            neg[n_neg] = scores[u, i]
            n_neg += 1
        if n_neg == 0:
            continue
        neg_sorted = np.sort(neg[:n_neg])
        out[u] = _auc_one(scores[u, rel_indices[rs:re]], neg_sorted)
    return out


def auc_per_user_ref(
    scores: np.ndarray,
    rel_indptr: np.ndarray,
    rel_indices: np.ndarray,
    excl_indptr: np.ndarray,
    excl_indices: np.ndarray,
) -> np.ndarray:
    """Reference twin of :func:`auc_per_user`: compares every positive/negative pair."""
    n_users, n_items = scores.shape
    out = np.full(n_users, np.nan)
    for u in range(n_users):
        pos = set(rel_indices[rel_indptr[u] : rel_indptr[u + 1]].tolist())
        excl = set(excl_indices[excl_indptr[u] : excl_indptr[u + 1]].tolist())
        neg = [i for i in range(n_items) if i not in pos and i not in excl]
        if not pos or not neg:
            continue
        wins = sum(
            1.0 if scores[u, p] > scores[u, n] else 0.5 if scores[u, p] == scores[u, n] else 0.0
            for p in pos
            for n in neg
        )
        out[u] = wins / (len(pos) * len(neg))
    return out


def _mean_auc(per_user: np.ndarray) -> float:
    ok = ~np.isnan(per_user)
    if not ok.any():
        raise DataError("cannot compute AUC: no user has both a relevant item and a negative item")
    return float(per_user[ok].mean())


def auc_from_scores(
    scores: np.ndarray,
    rel_indptr: np.ndarray,
    rel_indices: np.ndarray,
    exclude_indptr: np.ndarray | None = None,
    exclude_indices: np.ndarray | None = None,
) -> float:
    """Mean per-user AUC of dense scores (n_users_eval, n_items); ties count 0.5.

    Positives are the user's held-out relevant items; negatives are every other item
    not in the exclude lists (typically the user's training items). Users without a
    positive or without a negative are left out of the mean.
    """
    s = np.asarray(scores)
    if s.ndim != 2:
        raise DataError("scores must be a 2-D array (users x items)")
    if s.dtype not in (np.float32, np.float64):
        s = s.astype(np.float64)
    n_users, n_items = s.shape
    rp, ri, _ = canonical_csr(rel_indptr, rel_indices, n_items, n_rows=n_users)
    if exclude_indptr is None:
        xp, xi = empty_csr(n_users)
    else:
        xp, xi, _ = canonical_csr(
            exclude_indptr, exclude_indices, n_items, n_rows=n_users, name="excluded items"
        )
    return _mean_auc(auc_per_user(np.ascontiguousarray(s), rp, ri, xp, xi))


@njit(cache=True)
def sample_negatives(
    rel_indptr: np.ndarray,
    rel_indices: np.ndarray,
    excl_indptr: np.ndarray,
    excl_indices: np.ndarray,
    n_items: int,
    n_neg: int,
    seed: int,
) -> np.ndarray:
    """Draw n_neg negatives per user uniformly (with replacement) from non-relevant, non-excluded items.

    Returns int32 (n_users, n_neg), rows of -1 for users with no such item. Each user
    has its own seeded stream, so results do not depend on the order users are drawn in.
    """
    n_users = rel_indptr.shape[0] - 1
    out = np.full((n_users, n_neg), -1, dtype=np.int32)
    for u in range(n_users):
        # merge the two sorted rows; below[m] = allowed items under the m-th forbidden one
        rs, re = rel_indptr[u], rel_indptr[u + 1]
        xs, xe = excl_indptr[u], excl_indptr[u + 1]
        below = np.empty(re - rs + xe - xs, dtype=np.int64)
        m = 0
        while rs < re or xs < xe:
            if xs == xe or (rs < re and rel_indices[rs] < excl_indices[xs]):
                item = rel_indices[rs]
                rs += 1
            else:
                item = excl_indices[xs]
                if rs < re and rel_indices[rs] == item:
                    rs += 1
                xs += 1
            below[m] = item - m
            m += 1
        below = below[:m]
        n_allowed = n_items - m
        if n_allowed <= 0:
            continue
        state = np.uint64(seed) * U_GOLDEN + np.uint64(u)
        for j in range(n_neg):
            state, z = next64(state)
            rank = np.int64(z % np.uint64(n_allowed))
            out[u, j] = rank + np.searchsorted(below, rank, side="right")
    return out


def sample_negatives_ref(
    rel_indptr: np.ndarray,
    rel_indices: np.ndarray,
    excl_indptr: np.ndarray,
    excl_indices: np.ndarray,
    n_items: int,
    n_neg: int,
    seed: int,
) -> np.ndarray:
    """Reference twin of :func:`sample_negatives`: same generator, explicit list of allowed items."""
    n_users = len(rel_indptr) - 1
    out = np.full((n_users, n_neg), -1, dtype=np.int32)
    for u in range(n_users):
        forbidden = set(rel_indices[rel_indptr[u] : rel_indptr[u + 1]].tolist())
        forbidden |= set(excl_indices[excl_indptr[u] : excl_indptr[u + 1]].tolist())
        allowed = [i for i in range(n_items) if i not in forbidden]
        if not allowed:
            continue
        state = (seed * GOLDEN + u) & MASK64
        for j in range(n_neg):
            state, z = next64_py(state)
            out[u, j] = allowed[z % len(allowed)]
    return out


@njit(cache=True)
def auc_from_pairs(pos_indptr: np.ndarray, pos_scores: np.ndarray, neg_scores: np.ndarray) -> np.ndarray:
    """Per-user AUC of positive scores (CSR) against a row of negative scores (NaN rows skipped)."""
    n_users = pos_indptr.shape[0] - 1
    out = np.full(n_users, np.nan)
    for u in range(n_users):
        s, e = pos_indptr[u], pos_indptr[u + 1]
        if e == s or neg_scores.shape[1] == 0 or np.isnan(neg_scores[u, 0]):
            continue
        out[u] = _auc_one(pos_scores[s:e], np.sort(neg_scores[u]))
    return out


def auc_from_pairs_ref(pos_indptr: np.ndarray, pos_scores: np.ndarray, neg_scores: np.ndarray) -> np.ndarray:
    """Reference twin of :func:`auc_from_pairs`: counts wins and ties pair by pair."""
    n_users = len(pos_indptr) - 1
    out = np.full(n_users, np.nan)
    for u in range(n_users):
        pos = pos_scores[pos_indptr[u] : pos_indptr[u + 1]]
        neg = neg_scores[u]
        if len(pos) == 0 or len(neg) == 0 or np.isnan(neg[0]):
            continue
        out[u] = sum(float(p > n) + 0.5 * float(p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    return out


def auc_sampled(
    scores: np.ndarray | Callable[[np.ndarray, np.ndarray], np.ndarray],
    rel_indptr: np.ndarray,
    rel_indices: np.ndarray,
    exclude_indptr: np.ndarray | None = None,
    exclude_indices: np.ndarray | None = None,
    *,
    n_items: int | None = None,
    n_negatives: int = 100,
    seed: int = 42,
) -> float:
    """Mean per-user AUC against ``n_negatives`` sampled negatives (with replacement); ties 0.5.

    ``scores`` is a dense (n_users_eval, n_items) array or, for large catalogues, a
    function ``score(rows, items) -> scores`` for (evaluated-user row, item index)
    pairs, so only positives and sampled negatives are scored (then pass ``n_items``).
    An unbiased estimate of :func:`auc_from_scores`; same seed, same samples.
    """
    dense = not callable(scores)
    if dense:
        scores = np.asarray(scores, dtype=np.float64)
        n_items = scores.shape[1]
    if n_items is None:
        raise DataError("auc_sampled needs n_items when scores is a function")
    if n_negatives < 1:
        raise DataError("n_negatives must be at least 1")
    rp, ri, _ = canonical_csr(rel_indptr, rel_indices, n_items)
    n_users = rp.size - 1
    if exclude_indptr is None:
        xp, xi = empty_csr(n_users)
    else:
        xp, xi, _ = canonical_csr(
            exclude_indptr, exclude_indices, n_items, n_rows=n_users, name="excluded items"
        )
    neg = sample_negatives(rp, ri, xp, xi, np.int64(n_items), np.int64(n_negatives), np.uint64(seed))
    pos_rows = np.repeat(np.arange(n_users), np.diff(rp))
    has_neg = neg[:, 0] >= 0
    neg_rows = np.repeat(np.arange(n_users)[has_neg], n_negatives)
    neg_items = neg[has_neg].ravel()
    if dense:
        pos_scores, neg_flat = scores[pos_rows, ri], scores[neg_rows, neg_items]
    else:
        pos_scores = np.asarray(scores(pos_rows, ri.astype(np.int64)), dtype=np.float64)
        neg_flat = np.asarray(scores(neg_rows, neg_items.astype(np.int64)), dtype=np.float64)
    neg_scores = np.full((n_users, n_negatives), np.nan)
    neg_scores[has_neg] = neg_flat.reshape(-1, n_negatives)
    return _mean_auc(auc_from_pairs(rp, pos_scores, neg_scores))
