"""Tiny rating matrices for model tests: dense users x items arrays (0 = no rating) and their Interactions."""

from __future__ import annotations

import numpy as np

from recsys_cli.data.dataset import Interactions


def interactions(x: np.ndarray) -> Interactions:
    """Interactions from a dense users x items rating matrix (0 = no rating); raw ids offset."""
    u, i = np.nonzero(x)
    return Interactions(
        users=u.astype(np.int32), items=i.astype(np.int32), ratings=x[u, i].astype(np.float32),
        user_ids=np.arange(10, 10 + x.shape[0], dtype=np.int64), item_ids=np.arange(500, 500 + x.shape[1], dtype=np.int64),
        timestamps=np.arange(len(u), dtype=np.int64), rating_scale=(1.0, 5.0), dataset="tiny", fingerprint="sha256:t",
    )


def random_ratings(n_users=30, n_items=12, density=0.35, seed=0) -> np.ndarray:
    """Random 1-5 ratings at `density`; every user rates item 0, which is the most rated."""
    rng = np.random.default_rng(seed)
    x = np.where(rng.random((n_users, n_items)) < density, rng.integers(1, 6, (n_users, n_items)), 0)
    x[:, 0] = np.maximum(x[:, 0], 1)
    return x.astype(np.float32)
