"""Evaluation protocols: score a fitted model on held-out ratings; holdout and k-fold CV.

Ranking protocol: for every test user with at least one relevant held-out item, rank
the full catalogue minus the user's training items and compare the top K with the
relevant items. Relevance is a held-out rating >= threshold (default 4.0), or any
held-out rating (`relevance="any"`, the protocol of Microsoft Recommenders' benchmarks).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from recsys_cli.data.dataset import Interactions
from recsys_cli.errors import UsageError


@dataclass(frozen=True)
class EvalSettings:
    ks: tuple[int, ...] = (10,)
    relevance: str = "threshold"  # "threshold" | "any"
    threshold: float = 4.0
    rating_metrics: bool = True
    ranking_metrics: bool = True
    fcp: bool = False
    auc: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.relevance not in ("threshold", "any"):
            raise UsageError(f"relevance (--relevance) must be 'threshold' or 'any', got {self.relevance!r}")
        if not self.ks or min(self.ks) < 1:
            raise UsageError("--k must be a positive integer")

    def describe(self) -> str:
        rel = "any held-out rating" if self.relevance == "any" else f"held-out rating >= {self.threshold:g}"
        return f"relevant = {rel}; full catalogue minus training items; k = {', '.join(map(str, self.ks))}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ks"] = list(self.ks)
        return d


def relevant_csr(test: Interactions, users: np.ndarray, settings: EvalSettings) -> tuple[np.ndarray, np.ndarray]:
    """Per evaluated user (in `users` order), the sorted indices of relevant held-out items."""
    keep = np.ones(len(test), bool) if settings.relevance == "any" else test.ratings >= settings.threshold
    u, i = test.users[keep], test.items[keep]
    order = np.lexsort((i, u))
    u, i = u[order], i[order]
    pos = np.full(test.n_users, -1, np.int64)
    pos[users] = np.arange(len(users))
    sel = pos[u] >= 0
    counts = np.bincount(pos[u[sel]], minlength=len(users))
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return indptr, i[sel].astype(np.int32)


def score_model(model, train: Interactions, test: Interactions, settings: EvalSettings) -> dict[str, float]:
    """Every applicable metric of a fitted model on a held-out set."""
    from recsys_cli.evaluation import metrics as M

    out: dict[str, float] = {}
    t0 = time.perf_counter()
    if settings.rating_metrics and model.predicts_ratings and len(test):
        pred, labels = model.predict(test.user_ids[test.users], test.item_ids[test.items], test.timestamps)
        out["rmse"] = M.rmse(pred, test.ratings)
        out["mae"] = M.mae(pred, test.ratings)
        out["fallback_share"] = float(np.mean([lab is not None for lab in labels]))
        if settings.fcp:
            out["fcp"] = M.fcp(test.users, pred, test.ratings)
    if settings.ranking_metrics and len(test):
        users_all = np.unique(test.users)
        indptr, indices = relevant_csr(test, users_all, settings)
        counts_rel = np.diff(indptr)
        has_rel = counts_rel > 0
        users = users_all[has_rel]
        # dropping the empty rows leaves `indices` as it is; only the row pointers shrink
        indptr = np.concatenate([[0], np.cumsum(counts_rel[has_rel])]).astype(np.int64)
        kmax = max(settings.ks)
        recs_raw = model.recommend(test.user_ids[users], kmax).items
        recs = np.where(recs_raw >= 0, np.searchsorted(train.item_ids, np.maximum(recs_raw, 0)), -1).astype(np.int32)
        counts = np.bincount(train.items, minlength=train.n_items)
        if len(users) == 0:
            out["users_skipped"] = int(len(users_all))
            out["predict_seconds"] = time.perf_counter() - t0
            return out
        ranking = M.ranking_metrics(
            recs,
            indptr,
            indices,
            ks=settings.ks,
            n_items=train.n_items,
            train_counts=counts,
            n_train_users=int(len(np.unique(train.users))),
            item_genres=train.item_genres,
        )
        out.update(ranking)
        out["users_skipped"] = int(out.get("users_skipped", 0)) + int((~has_rel).sum())
        if settings.auc and hasattr(model, "_score_users"):
            out["auc"] = _auc(model, train, users, indptr, indices, settings)
    out["predict_seconds"] = time.perf_counter() - t0
    return out


def _auc(model, train, users, rel_indptr, rel_indices, settings) -> float:
    """Sampled AUC (100 negatives per user, training items excluded) over users the model knows."""
    from recsys_cli.evaluation import metrics as M
    from recsys_cli.models._kernels.csr import take_rows

    known = model.known_users(train.user_ids[users]) >= 0
    if not known.any():
        return float("nan")
    sel = np.flatnonzero(known)
    eval_users = users[sel]
    rp, ri = take_rows(rel_indptr, rel_indices, sel)
    xp, xi = take_rows(model.seen_indptr, model.seen_indices, eval_users)
    return M.auc_sampled(_batched_scorer(model, eval_users), rp, ri, xp, xi, n_items=train.n_items,
                         n_negatives=100, seed=0)


def _batched_scorer(model, users: np.ndarray, batch: int = 1024):
    """score(rows, items) for flat (row, item) pairs, computing dense scores a user batch at a time."""

    def score(rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        out = np.empty(len(rows), np.float64)
        order = np.argsort(rows, kind="stable")
        rs = rows[order]
        for start in range(0, len(users), batch):
            lo, hi = np.searchsorted(rs, [start, start + batch])
            if lo == hi:
                continue
            dense = model._score_users(users[start : start + batch])
            idx = order[lo:hi]
            out[idx] = dense[rs[lo:hi] - start, items[idx]]
            del dense  # before the next batch is scored: one batch of dense scores alive, not two
        return out

    return score
