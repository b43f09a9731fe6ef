"""Metric functions over plain DataFrames, like Microsoft Recommenders' `python_evaluation`, but fast.

    rs.metrics.rmse(true, pred)                      # (user, item, rating) vs (user, item, prediction)
    rs.metrics.ndcg_at_k(true, recs, k=10)           # (user, item, rating) vs (user, item, score)
    rs.metrics.ranking(true, recs, k=[10, 20])       # every ranking metric at once

Frames may be pandas or polars; column names are keyword arguments with the defaults below.
Rating metrics join `true` and `pred` on (user, item). Ranking metrics take each user's top k
of `pred` by score (ties to the smaller item id) and compare them with the user's relevant
items in `true`: every item with relevance='any', else rating >= threshold. Users in `true`
with at least one relevant item are evaluated; a user missing from `pred` scores 0.
The definitions are those of `recsys evaluate` (see recsys_cli/evaluation/ranking_metrics.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from recsys_cli.errors import DataError, UsageError

__all__ = ["fcp", "hit_rate_at_k", "mae", "map_at_k", "mrr_at_k", "ndcg_at_k", "precision_at_k", "ranking",
           "recall_at_k", "rmse"]

USER, ITEM, RATING, PREDICTION = "user_id", "item_id", "rating", "prediction"


def _frame(df: Any, columns: Sequence[str], what: str):
    import polars as pl

    if type(df).__module__.startswith("pandas"):
        df = pl.from_pandas(df)
    elif isinstance(df, pl.LazyFrame):
        df = df.collect()
    if not isinstance(df, pl.DataFrame):
        raise UsageError(f"{what} must be a pandas or polars DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{what}: column {missing[0]!r} is missing (columns: {', '.join(df.columns) or 'none'})")
    out = df.select(columns)
    for c in columns:
        if out[c].null_count():
            raise DataError(f"{what}: column {c!r} has {out[c].null_count():,} missing values")
    return out


def _id_frame(df: Any, ids: Sequence[str], others: Sequence[str], what: str):
    """`_frame` with the id columns as Int64, read as `from_frame` reads ids (1.0 and '1' are 1; 1.5 is an error):
    so frames whose id dtypes differ still join, and a fractional id never silently becomes another one."""
    import polars as pl

    from recsys_cli.api.data import _id_column

    out = _frame(df, [*ids, *others], what)
    cols = []
    for c, label in zip(ids, ("user", "item"), strict=True):
        try:
            cols.append(pl.Series(c, _id_column(out, c, label)))
        except DataError as exc:
            raise DataError(f"{what}: {exc}") from None
    return out.with_columns(cols)


def _numeric(df, column: str, what: str) -> np.ndarray:
    s = df[column]
    if not s.dtype.is_numeric():
        raise DataError(f"{what}: column {column!r} must be numeric, got {s.dtype}")
    values = s.cast(float).to_numpy()
    if not np.all(np.isfinite(values)):
        raise DataError(f"{what}: column {column!r} has NaN or infinite values")
    return values


def _pairs(true, pred, user: str, item: str, rating: str, prediction: str) -> tuple[np.ndarray, np.ndarray, Any]:
    t = _id_frame(true, [user, item], [rating], "true")
    p = _id_frame(pred, [user, item], [prediction], "pred")
    for name, frame in (("true", t), ("pred", p)):
        if frame.select([user, item]).is_duplicated().any():
            raise DataError(f"{name} has duplicated ({user}, {item}) pairs; keep one row per pair")
    joined = t.join(p, on=[user, item], how="inner", suffix="_pred")
    if joined.height == 0:
        raise DataError(f"no ({user}, {item}) pair of true is in pred")
    pcol = prediction if prediction != rating else f"{prediction}_pred"
    return _numeric(joined, rating, "true"), _numeric(joined, pcol, "pred"), joined


def rmse(true, pred, *, user: str = USER, item: str = ITEM, rating: str = RATING, prediction: str = PREDICTION) -> float:
    """Root mean squared error over the (user, item) pairs in both frames."""
    from recsys_cli.evaluation.metrics import rmse as kernel

    t, p, _ = _pairs(true, pred, user, item, rating, prediction)
    return kernel(p, t)


def mae(true, pred, *, user: str = USER, item: str = ITEM, rating: str = RATING, prediction: str = PREDICTION) -> float:
    """Mean absolute error over the (user, item) pairs in both frames."""
    from recsys_cli.evaluation.metrics import mae as kernel

    t, p, _ = _pairs(true, pred, user, item, rating, prediction)
    return kernel(p, t)


def fcp(true, pred, *, user: str = USER, item: str = ITEM, rating: str = RATING, prediction: str = PREDICTION) -> float:
    """Fraction of concordant pairs (Surprise's FCP): per user, pairs ordered alike by rating and prediction."""
    from recsys_cli.evaluation.metrics import fcp as kernel

    t, p, joined = _pairs(true, pred, user, item, rating, prediction)
    users = joined[user].to_numpy()
    _, inv = np.unique(users, return_inverse=True)
    return kernel(inv.astype(np.int64), p, t)


def ranking(true, pred, k: int | Sequence[int] = 10, *, relevance: str = "any", threshold: float = 4.0,
            user: str = USER, item: str = ITEM, rating: str = RATING, score: str = "score") -> dict[str, float]:
    """Every top-k metric of `recsys evaluate` (precision, recall, ndcg, map, map_capped, mrr, hit_rate) at each k.

    Keys like 'ndcg@10'; plus users_evaluated and users_skipped.
    """
    from recsys_cli.evaluation.ranking_metrics import ACCURACY_STATS, ranking_metrics

    ks = [k] if isinstance(k, (int, np.integer)) and not isinstance(k, bool) else list(k)
    if not ks or any(isinstance(x, bool) or not isinstance(x, (int, np.integer)) or not 1 <= x <= 100_000 for x in ks):
        raise UsageError(f"k must be a positive integer (at most 100,000) or a list of them, got {k!r}")
    if relevance not in ("any", "threshold"):
        raise UsageError(f"relevance must be 'any' or 'threshold', got {relevance!r}")
    t = _id_frame(true, [user, item], [rating] if relevance == "threshold" else [], "true")
    p = _id_frame(pred, [user, item], [score], "pred")
    if p.select([user, item]).is_duplicated().any():
        raise DataError(f"pred recommends an item twice to a user (duplicated ({user}, {item}) pairs)")
    if relevance == "threshold":
        t = t.filter(_numeric(t, rating, "true") >= threshold)
    t_users, t_items = t[user].to_numpy().astype(np.int64), t[item].to_numpy().astype(np.int64)
    p_users, p_items = p[user].to_numpy().astype(np.int64), p[item].to_numpy().astype(np.int64)
    p_scores = _numeric(p, score, "pred")
    if len(t_users) == 0:
        raise DataError("no relevant item in true" + (f" (rating >= {threshold:g})" if relevance == "threshold" else ""))
    users = np.unique(t_users)
    items = np.union1d(t_items, p_items)
    # relevant items per evaluated user, as CSR over item positions
    tu, ti = np.searchsorted(users, t_users), np.searchsorted(items, t_items)
    key = np.unique(tu * np.int64(len(items)) + ti)
    tu, ti = key // len(items), key % len(items)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(tu, minlength=len(users)))]).astype(np.int64)
    kmax = int(max(ks))
    recs = np.full((len(users), kmax), -1, np.int32)
    pos = np.searchsorted(users, p_users)
    inside = (pos < len(users)) & (users[np.minimum(pos, len(users) - 1)] == p_users)
    if inside.any():
        pu, pi, ps = pos[inside], np.searchsorted(items, p_items[inside]), p_scores[inside]
        order = np.lexsort((pi, -ps, pu))  # by user, best score first, ties to the smaller item
        pu, pi = pu[order], pi[order]
        starts = np.searchsorted(pu, np.arange(len(users)))
        rank = np.arange(len(pu)) - starts[pu]
        top = rank < kmax
        recs[pu[top], rank[top]] = pi[top]
    out = ranking_metrics(recs, indptr, ti.astype(np.int32), ks=ks, n_items=len(items))
    names = {f"{m}@{c}" for m in ACCURACY_STATS for c in ks}
    return {key: float(v) for key, v in out.items() if key in names or key.startswith("users_")}


def _one(metric: str):
    def fn(true, pred, k: int = 10, *, relevance: str = "any", threshold: float = 4.0, user: str = USER,
           item: str = ITEM, rating: str = RATING, score: str = "score") -> float:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise UsageError(f"k must be one positive integer, got {k!r}; for several cutoffs use "
                             f"rs.metrics.ranking(true, pred, k=[...])"[:300])
        return ranking(true, pred, k, relevance=relevance, threshold=threshold, user=user, item=item, rating=rating,
                       score=score)[f"{metric}@{k}"]

    fn.__name__ = f"{metric}_at_k"
    fn.__doc__ = f"{metric}@k of each user's top k in `pred` against their relevant items in `true` (see `ranking`)."
    return fn


precision_at_k = _one("precision")
recall_at_k = _one("recall")
ndcg_at_k = _one("ndcg")
map_at_k = _one("map")
mrr_at_k = _one("mrr")
hit_rate_at_k = _one("hit_rate")
