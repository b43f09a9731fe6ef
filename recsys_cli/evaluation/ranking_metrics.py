"""Top-K ranking metrics, defined to match Microsoft Recommenders' ``python_evaluation``.

Inputs, for n evaluated users in one order:

- ``recs``: int array (n, K_max) of recommended item indices, best first, padded with -1.
- relevant (held-out) items as CSR ``rel_indptr`` (n + 1) and ``rel_indices``, with
  optional ``rel_gains`` (graded relevance, used by nDCG only).

Per user, with hits counted in the first k slots and r the 1-based rank:

- precision@k = hits / k (k even when the list is shorter, as Microsoft and Spark do).
- recall@k = hits / |rel|.
- ndcg@k = DCG / IDCG, DCG = sum over hits of gain / log2(r + 1), IDCG = the best DCG
  possible: the min(|rel|, k) largest gains at ranks 1... (binary gains: all 1; the log
  base cancels, so Microsoft's default natural log gives the same value).
- map@k = (sum over hits at rank r <= k of hits-up-to-r / r) / |rel|. This is
  Microsoft's ``map()``, the MAP column of their published benchmark tables and the
  ``map_at_k`` of releases before 1.2. ``map_capped@k`` divides by min(|rel|, k)
  instead: Spark's ``meanAveragePrecisionAt`` and Microsoft's current ``map_at_k``.
- mrr@k = 1 / rank of the first hit within k (0 if none); hit_rate@k = 1 if any hit.

Each is averaged over users with at least one relevant item (``users_evaluated``); users
without one are left out and counted in ``users_skipped``. Beyond-accuracy metrics use
the same users and their top-k lists (padding ignored):

- coverage@k: distinct recommended items / n_items.
- novelty@k: mean self-information -log2(p_i) over all recommended slots, p_i = share
  of training users who interacted with item i (an item no training user touched counts
  as touched once, giving the finite maximum log2(n_train_users)).
- popularity_bias@k: average recommendation popularity (ARP, Abdollahpouri et al.):
  mean over users of the mean p_i of their list.
- diversity@k: intra-list diversity, mean over pairs of 1 - cosine(genre vectors),
  averaged over users with at least two recommended items; an item without any genre
  is at distance 1 from everything.

A key is left out when its inputs are missing (no popularity, no genres), so every
value is a finite number.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import log2

import numpy as np
from numba import njit, prange

from recsys_cli.errors import DataError
from recsys_cli.evaluation.auc import auc_from_scores
from recsys_cli.evaluation.user_lists import canonical_csr, empty_csr

__all__ = [
    "ACCURACY_STATS",
    "canonical_csr",
    "intra_list_diversity",
    "ranking_metrics",
    "ranking_per_user",
]

# Column order of the last axis of ranking_per_user's result.
ACCURACY_STATS = ("precision", "recall", "ndcg", "map", "map_capped", "mrr", "hit_rate")


@njit(cache=True)  # ~1 us a user: parallel compile time would cost more than it saves
def ranking_per_user(
    recs: np.ndarray, rel_indptr: np.ndarray, rel_indices: np.ndarray, rel_gains: np.ndarray, ks: np.ndarray
) -> np.ndarray:
    """Per-user accuracy (n_users, len(ks), 7) in ACCURACY_STATS order; NaN for users with no relevant item.

    Relevant rows must be sorted and unique (see ``canonical_csr``).
    """
    n_users, k_max = recs.shape
    n_ks = ks.shape[0]
    out = np.full((n_users, n_ks, 7), np.nan)
    top = min(k_max, ks.max())
    for u in range(n_users):
        s, e = rel_indptr[u], rel_indptr[u + 1]
        n_rel = e - s
        if n_rel == 0:
            continue
        items = rel_indices[s:e]
        # prefix sums over ranks: cum[r] covers the first r slots
        cum_hits = np.zeros(top + 1)
        cum_dcg = np.zeros(top + 1)
        cum_ap = np.zeros(top + 1)
        first_hit = 0
        for r in range(top):
            hit = 0.0
            gain = 0.0
            item = recs[u, r]
            if item >= 0:
                pos = np.searchsorted(items, item)
                if pos < n_rel and items[pos] == item:
                    hit = 1.0
                    gain = rel_gains[s + pos]
                    if first_hit == 0:
                        first_hit = r + 1
            cum_hits[r + 1] = cum_hits[r] + hit
            cum_dcg[r + 1] = cum_dcg[r] + gain / np.log2(r + 2.0)
            cum_ap[r + 1] = cum_ap[r] + hit * cum_hits[r + 1] / (r + 1.0)
        ideal = np.sort(rel_gains[s:e])[::-1]
        for j in range(n_ks):
            k = ks[j]
            kk = min(k, top)
            h = cum_hits[kk]
            idcg = 0.0
            for r in range(min(n_rel, k)):
                idcg += ideal[r] / np.log2(r + 2.0)
            out[u, j, 0] = h / k
            out[u, j, 1] = h / n_rel
            out[u, j, 2] = cum_dcg[kk] / idcg if idcg > 0.0 else 0.0
            out[u, j, 3] = cum_ap[kk] / n_rel
            out[u, j, 4] = cum_ap[kk] / min(n_rel, k)
            out[u, j, 5] = 1.0 / first_hit if 0 < first_hit <= k else 0.0
            out[u, j, 6] = 1.0 if h > 0 else 0.0
    return out


def ranking_per_user_ref(
    recs: np.ndarray, rel_indptr: np.ndarray, rel_indices: np.ndarray, rel_gains: np.ndarray, ks: np.ndarray
) -> np.ndarray:
    """Reference twin of :func:`ranking_per_user`, written straight from the definitions."""
    out = np.full((recs.shape[0], len(ks), 7), np.nan)
    for u in range(recs.shape[0]):
        gain_of = dict(
            zip(
                rel_indices[rel_indptr[u] : rel_indptr[u + 1]].tolist(),
                rel_gains[rel_indptr[u] : rel_indptr[u + 1]].tolist(),
                strict=True,
            )
        )
        if not gain_of:
            continue
        for j, k in enumerate(ks):
            ranked = [int(i) for i in recs[u, :k]]
            hit_ranks = [r for r, i in enumerate(ranked, start=1) if i >= 0 and i in gain_of]
            dcg = sum(gain_of[ranked[r - 1]] / log2(r + 1) for r in hit_ranks)
            ideal = sorted(gain_of.values(), reverse=True)[:k]
            idcg = sum(g / log2(r + 1) for r, g in enumerate(ideal, start=1))
            ap = sum(n / r for n, r in enumerate(hit_ranks, start=1))
            out[u, j] = (
                len(hit_ranks) / k,
                len(hit_ranks) / len(gain_of),
                dcg / idcg if idcg > 0 else 0.0,
                ap / len(gain_of),
                ap / min(len(gain_of), k),
                1.0 / hit_ranks[0] if hit_ranks else 0.0,
                float(bool(hit_ranks)),
            )
    return out


@njit(cache=True, parallel=True)
def intra_list_diversity(recs: np.ndarray, ks: np.ndarray, unit_genres: np.ndarray) -> np.ndarray:
    """Per-user mean pairwise (1 - cosine) within the first k slots, (n_users, len(ks)); NaN under 2 items.

    ``unit_genres`` holds each item's genre vector scaled to unit length (zero rows stay zero).
    """
    n_users = recs.shape[0]
    top = min(ks.max(), recs.shape[1])
    n_genres = unit_genres.shape[1]
    out = np.full((n_users, ks.shape[0]), np.nan)
    for u in prange(n_users):
        # prefix sums over slots, so every k costs no more than the largest one
        cum_dist = np.zeros(top + 1)
        cum_pairs = np.zeros(top + 1)
        for b in range(top):
            ib = recs[u, b]
            dist = 0.0
            pairs = 0.0
            if ib >= 0:
                for a in range(b):
                    ia = recs[u, a]
                    if ia < 0:
                        continue
                    dot = 0.0
                    for g in range(n_genres):
                        dot += unit_genres[ia, g] * unit_genres[ib, g]
                    dist += 1.0 - dot
                    pairs += 1.0
            cum_dist[b + 1] = cum_dist[b] + dist
            cum_pairs[b + 1] = cum_pairs[b] + pairs
        for j in range(ks.shape[0]):
            kk = min(ks[j], top)
            if cum_pairs[kk] > 0:
                out[u, j] = cum_dist[kk] / cum_pairs[kk]
    return out


def intra_list_diversity_ref(recs: np.ndarray, ks: np.ndarray, item_genres: np.ndarray) -> np.ndarray:
    """Reference twin of :func:`intra_list_diversity`, taking raw (unnormalised) genre vectors."""
    out = np.full((recs.shape[0], len(ks)), np.nan)
    for u in range(recs.shape[0]):
        for j, k in enumerate(ks):
            items = [int(i) for i in recs[u, :k] if i >= 0]
            dists = []
            for a in range(len(items)):
                for b in range(a + 1, len(items)):
                    ga = np.asarray(item_genres[items[a]], dtype=np.float64)
                    gb = np.asarray(item_genres[items[b]], dtype=np.float64)
                    norm = np.linalg.norm(ga) * np.linalg.norm(gb)
                    dists.append(1.0 - (ga @ gb / norm if norm > 0 else 0.0))
            if dists:
                out[u, j] = float(np.mean(dists))
    return out


def _check_recs(recs: np.ndarray, n_items: int) -> np.ndarray:
    r = np.asarray(recs)
    if r.ndim != 2 or not np.issubdtype(r.dtype, np.integer):
        raise DataError("recs must be a 2-D integer array (users x K)")
    r = np.ascontiguousarray(r, dtype=np.int32)
    if r.size and (r.min() < -1 or r.max() >= n_items):
        raise DataError(f"recs: item index outside 0..{n_items - 1} (use -1 for padding)")
    if r.shape[1] > 1:
        s = np.sort(r, axis=1)
        if np.any((s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)):
            raise DataError("recs: an item is recommended twice to the same user")
    return r


def _popularity(
    n_items: int,
    train_counts: np.ndarray | None,
    n_train_users: int | None,
    item_popularity: np.ndarray | None,
) -> tuple[np.ndarray, float] | None:
    """Per-item share of training users and the smallest share used for unseen items."""
    if item_popularity is not None:
        p = np.asarray(item_popularity, dtype=np.float64).ravel()
        floor = 1.0 / n_train_users if n_train_users else float(p[p > 0].min(initial=1.0))
    elif train_counts is not None:
        if not n_train_users or n_train_users < 1:
            raise DataError("train_counts needs n_train_users (number of training users) to normalise")
        p = np.asarray(train_counts, dtype=np.float64).ravel() / n_train_users
        floor = 1.0 / n_train_users
    else:
        return None
    if p.shape != (n_items,):
        raise DataError(f"item popularity has {p.size} entries, expected n_items={n_items}")
    if np.any(p < 0) or np.any(p > 1):
        raise DataError("item popularity must be a share of users in [0, 1]")
    return p, floor


def _unit_genres(item_genres: np.ndarray, n_items: int) -> np.ndarray:
    g = np.asarray(item_genres, dtype=np.float32)
    if g.ndim != 2 or g.shape[0] != n_items:
        raise DataError(f"item_genres must be (n_items={n_items}, n_genres), got {g.shape}")
    norm = np.linalg.norm(g, axis=1, keepdims=True)
    return np.ascontiguousarray(np.divide(g, norm, out=np.zeros_like(g), where=norm > 0))


def ranking_metrics(
    recs: np.ndarray,
    rel_indptr: np.ndarray,
    rel_indices: np.ndarray,
    ks: Sequence[int] = (10,),
    *,
    n_items: int,
    rel_gains: np.ndarray | None = None,
    train_counts: np.ndarray | None = None,
    n_train_users: int | None = None,
    item_popularity: np.ndarray | None = None,
    item_genres: np.ndarray | None = None,
    scores_for_auc: np.ndarray | None = None,
    exclude_indptr: np.ndarray | None = None,
    exclude_indices: np.ndarray | None = None,
) -> dict[str, float]:
    """Accuracy and beyond-accuracy metrics of top-K lists, averaged over users (see module docstring).

    Keys ``<metric>@<k>`` for each k in ``ks``; ``novelty``/``popularity_bias`` need
    ``train_counts`` (training users per item) with ``n_train_users``, or
    ``item_popularity`` (that share directly); ``diversity`` needs ``item_genres``
    (n_items, n_genres); ``auc`` needs ``scores_for_auc`` (n_users, n_items), with the
    exclude CSR (usually training items) removed from the negatives. Also returns
    ``users_evaluated`` and ``users_skipped``.
    """
    r = _check_recs(recs, n_items)
    n_users = r.shape[0]
    ks_arr = np.asarray(sorted(set(int(k) for k in ks)), dtype=np.int64)
    if ks_arr.size == 0 or ks_arr[0] < 1:
        raise DataError("ks must hold at least one cut-off, each >= 1")
    rp, ri, rg = canonical_csr(rel_indptr, rel_indices, n_items, n_rows=n_users, gains=rel_gains)
    if rg is None:
        rg = np.ones(ri.size, dtype=np.float64)
    per_user = ranking_per_user(r, rp, ri, rg, ks_arr)
    evaluated = np.diff(rp) > 0
    n_eval = int(evaluated.sum())
    if n_eval == 0:
        raise DataError("no evaluated user has a held-out relevant item")
    means = per_user[evaluated].mean(axis=0)
    pop = _popularity(n_items, train_counts, n_train_users, item_popularity)
    unit = None if item_genres is None else _unit_genres(item_genres, n_items)
    r_eval = r[evaluated]
    div = None if unit is None else intra_list_diversity(r_eval, ks_arr, unit)

    out: dict[str, float] = {}
    for j, k in enumerate(ks_arr.tolist()):
        for s, name in enumerate(ACCURACY_STATS):
            out[f"{name}@{k}"] = float(means[j, s])
        top = r_eval[:, :k]
        valid = top >= 0
        items = top[valid]
        shown = np.zeros(n_items, dtype=bool)
        shown[items] = True
        out[f"coverage@{k}"] = float(shown.sum() / n_items)
        if pop is not None and items.size:
            p, floor = pop
            out[f"novelty@{k}"] = float(np.mean(-np.log2(np.maximum(p[items], floor))))
            per_list = valid.sum(axis=1)
            listed = per_list > 0
            arp = np.where(valid, p[np.maximum(top, 0)], 0.0).sum(axis=1)[listed] / per_list[listed]
            out[f"popularity_bias@{k}"] = float(arp.mean())
        if div is not None and not np.all(np.isnan(div[:, j])):
            out[f"diversity@{k}"] = float(np.nanmean(div[:, j]))
    if scores_for_auc is not None:
        s = np.asarray(scores_for_auc)
        if s.shape != (n_users, n_items):
            raise DataError(f"scores_for_auc must be (n_users={n_users}, n_items={n_items}), got {s.shape}")
        xp, xi = (exclude_indptr, exclude_indices) if exclude_indptr is not None else empty_csr(n_users)
        out["auc"] = auc_from_scores(s, rp, ri, xp, xi)
    out["users_evaluated"] = n_eval
    out["users_skipped"] = n_users - n_eval
    return out
