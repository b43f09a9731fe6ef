"""Rating metrics (RMSE, MAE, FCP) and fold aggregation; the one import for every metric.

Ranking metrics over top-K lists live in :mod:`recsys_cli.evaluation.ranking_metrics`, per-user
AUC in :mod:`recsys_cli.evaluation.auc` and the CSR validation of per-user item lists
(``canonical_csr``) in :mod:`recsys_cli.evaluation.user_lists`; all are re-exported here.
The modules import in that order (user_lists <- auc <- ranking_metrics <- metrics), never back.
Every kernel has a ``<kernel>_ref`` twin written plainly, used by the tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit, prange

from recsys_cli.errors import DataError
from recsys_cli.evaluation.auc import auc_from_scores, auc_sampled
from recsys_cli.evaluation.ranking_metrics import ranking_metrics
from recsys_cli.evaluation.user_lists import canonical_csr

__all__ = [
    "auc_from_scores",
    "auc_sampled",
    "canonical_csr",
    "fcp",
    "mae",
    "mean_std",
    "ranking_metrics",
    "rmse",
]


def _pair_arrays(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64).ravel()
    t = np.asarray(true, dtype=np.float64).ravel()
    if p.shape != t.shape:
        raise DataError(f"predictions and true ratings differ in length ({p.size} vs {t.size})")
    if p.size == 0:
        raise DataError("cannot compute a rating metric on zero predictions")
    return p, t


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    """Root mean squared error; clip predictions to the rating scale before calling."""
    p, t = _pair_arrays(pred, true)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def mae(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute error; clip predictions to the rating scale before calling."""
    p, t = _pair_arrays(pred, true)
    return float(np.mean(np.abs(t - p)))


# --------------------------------------------------------------------------- FCP
@njit(cache=True, parallel=True)
def fcp_counts(starts: np.ndarray, pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concordant and discordant pair counts per user; rows of user g are starts[g]:starts[g+1]."""
    n_groups = starts.shape[0] - 1
    nc = np.zeros(n_groups, dtype=np.int64)
    nd = np.zeros(n_groups, dtype=np.int64)
    for g in prange(n_groups):
        c = 0
        d = 0
        for a in range(starts[g], starts[g + 1]):
            for b in range(a + 1, starts[g + 1]):
                # Surprise: a pair with different true ratings is concordant when the
                # estimates are strictly ordered the same way, discordant otherwise (ties too).
                if true[a] > true[b]:
                    if pred[a] > pred[b]:
                        c += 1
                    else:
                        d += 1
                elif true[a] < true[b]:
                    if pred[b] > pred[a]:
                        c += 1
                    else:
                        d += 1
        nc[g] = c
        nd[g] = d
    return nc, nd


def fcp_counts_ref(starts: np.ndarray, pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference twin of :func:`fcp_counts`: Surprise's double loop over ordered pairs."""
    n_groups = len(starts) - 1
    nc = np.zeros(n_groups, dtype=np.int64)
    nd = np.zeros(n_groups, dtype=np.int64)
    for g in range(n_groups):
        rows = range(starts[g], starts[g + 1])
        for i in rows:
            for j in rows:
                nc[g] += pred[i] > pred[j] and true[i] > true[j]
                nd[g] += pred[i] >= pred[j] and true[i] < true[j]
    return nc, nd


def fcp(users: np.ndarray, pred: np.ndarray, true: np.ndarray) -> float:
    """Fraction of concordant pairs, computed exactly as ``surprise.accuracy.fcp``.

    Pairs are formed within each user's predictions. Surprise averages the per-user
    concordant counts over users with at least one concordant pair and the discordant
    counts over users with at least one discordant pair, then returns
    ``mean_nc / (mean_nc + mean_nd)``; we reproduce that (it is not the pooled ratio
    ``sum nc / sum (nc + nd)``). Equal estimates on a pair with different true ratings
    count as discordant.
    """
    p, t = _pair_arrays(pred, true)
    u = np.asarray(users).ravel()
    if u.shape != p.shape:
        raise DataError(f"users and predictions differ in length ({u.size} vs {p.size})")
    _, codes = np.unique(u, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(codes.max() + 2)).astype(np.int64)
    nc, nd = fcp_counts(starts, p[order], t[order])
    mean_nc = float(nc[nc > 0].mean()) if np.any(nc > 0) else 0.0
    mean_nd = float(nd[nd > 0].mean()) if np.any(nd > 0) else 0.0
    if mean_nc + mean_nd == 0.0:
        raise DataError("cannot compute FCP: no user has two predictions with different true ratings")
    return mean_nc / (mean_nc + mean_nd)


# ------------------------------------------------------------------- aggregation
def mean_std(values_per_fold: Sequence[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and population std (ddof=0, like Surprise's cross_validate) of each metric over folds."""
    if not values_per_fold:
        raise DataError("mean_std needs at least one fold")
    keys = list(values_per_fold[0])
    for i, fold in enumerate(values_per_fold):
        if set(fold) != set(keys):
            raise DataError(f"fold {i} reports metrics {sorted(fold)}, fold 0 reports {sorted(keys)}")
    means: dict[str, float] = {}
    stds: dict[str, float] = {}
    for key in keys:
        vals = np.array([fold[key] for fold in values_per_fold], dtype=np.float64)
        means[key] = float(vals.mean())
        stds[key] = float(vals.std(ddof=0))
    return means, stds
