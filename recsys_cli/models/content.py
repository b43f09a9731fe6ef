"""`content`: TF-IDF genre profiles, item-item cosine, predictions around the baseline.

Each item is a TF-IDF vector over its genres (rows L2-normalised), so the item-item
similarity is the cosine sim(i, j) = f_i . f_j >= 0. A user's prediction is their
baseline plus the similarity-weighted mean of their residuals on the items they rated:

    r_ui = b_ui + sum_j sim(i, j) (r_uj - b_uj) / (sum_j sim(i, j) + shrink)

Because the features are few and non-negative, both sums are two dot products with
per-user profiles (A_u = sum_j (r_uj - b_uj) f_j and B_u = sum_j f_j), so scoring the whole
catalogue never builds an item x item matrix. Items with no ratings still have genres,
which makes this model (and `hybrid-als`) a cold-start fallback for new movies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_cli.data.dataset import Interactions, lookup
from recsys_cli.errors import UsageError
from recsys_cli.models.base import Recommender
from recsys_cli.models.config import ModelConfig, param


@dataclass(frozen=True)
class ContentConfig(ModelConfig):
    shrink: float = param(1.0, "pulls predictions towards the baseline when few similar items were rated", low=0.0)
    reg_u: float = param(15.0, "regularisation of the user biases of the baseline", low=0.0)
    reg_i: float = param(10.0, "regularisation of the item biases of the baseline", low=0.0)


def tfidf(genres: np.ndarray) -> np.ndarray:
    """Row-normalised TF-IDF of a 0/1 item x genre matrix (idf = ln(n / df) + 1)."""
    g = (np.asarray(genres, np.float32) > 0).astype(np.float32)
    df = g.sum(axis=0)
    idf = np.log(max(1, g.shape[0]) / np.maximum(df, 1.0)) + 1.0
    f = g * idf[None, :].astype(np.float32)
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    return (f / np.where(norms == 0, 1.0, norms)).astype(np.float32)


class ContentModel(Recommender):
    name = "content"
    Config = ContentConfig
    supports_fold_in = True
    scores_cold_items = True

    def _fit(self, data: Interactions, *, seed: int, progress) -> None:
        from recsys_cli.models._kernels.baseline import baseline_als

        if data.item_genres is None or data.item_genres.shape[1] == 0 or not data.item_genres.any():
            raise UsageError("the content model needs item genres, and this dataset has none")
        c = self.config
        self.F = tfidf(data.item_genres)
        mu = float(self.global_mean)
        bu, bi = baseline_als(data.users, data.items, data.ratings, data.n_users, data.n_items, mu,
                              reg_u=c.reg_u, reg_i=c.reg_i)
        self.bu = np.asarray(bu, np.float32)
        self.bi = np.asarray(bi, np.float32)
        resid = data.ratings - (mu + self.bu[data.users] + self.bi[data.items])
        k = self.F.shape[1]
        self.A = np.zeros((data.n_users, k), np.float32)
        self.B = np.zeros((data.n_users, k), np.float32)
        np.add.at(self.A, data.users, resid[:, None] * self.F[data.items])
        np.add.at(self.B, data.users, self.F[data.items])

    def _predict_from(self, base_u: np.ndarray, A: np.ndarray, B: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        F = self.F if items is None else self.F[items]
        num = A @ F.T
        den = B @ F.T + self.config.shrink
        bi = self.bi if items is None else self.bi[items]
        return (base_u[:, None] + bi[None, :] + num / den).astype(np.float32)

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        return self._predict_from(self.global_mean + self.bu[users], self.A[users], self.B[users], None)

    def _predict_known(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        num = np.einsum("ij,ij->i", self.A[users], self.F[items])
        den = np.einsum("ij,ij->i", self.B[users], self.F[items]) + self.config.shrink
        return (self.global_mean + self.bu[users] + self.bi[items] + num / den).astype(np.float32)

    def _cold_item_scores(self, items: np.ndarray, users: np.ndarray):
        """Items without ratings but with genres, for known users: genre-based prediction."""
        ok = (items >= 0) & (users >= 0)
        ok[ok] &= self.F[items[ok]].any(axis=1)
        vals = np.zeros(len(items), np.float32)
        if ok.any():
            u, i = users[ok], items[ok]
            num = np.einsum("ij,ij->i", self.A[u], self.F[i])
            den = np.einsum("ij,ij->i", self.B[u], self.F[i]) + self.config.shrink
            vals[ok] = self.global_mean + self.bu[u] + num / den
        return vals, ok

    def _item_vectors(self) -> np.ndarray:
        return self.F

    def fold_in(self, raw_items, ratings) -> np.ndarray:
        idx = lookup(self.item_ids, raw_items)
        ok = idx >= 0
        items, r = idx[ok], np.asarray(ratings, np.float32)[ok]
        bu = float(np.sum(r - self.global_mean - self.bi[items]) / (self.config.reg_u + len(items)))
        resid = r - (self.global_mean + bu + self.bi[items])
        A = (resid[:, None] * self.F[items]).sum(axis=0, keepdims=True)
        B = self.F[items].sum(axis=0, keepdims=True)
        return self._predict_from(np.array([self.global_mean + bu], np.float32), A, B, None)[0]

    def _state(self) -> dict:
        return {"F": self.F, "bu": self.bu, "bi": self.bi, "A": self.A, "B": self.B}

    def _load_state(self, state: dict) -> None:
        self.F, self.bu, self.bi, self.A, self.B = (state[k] for k in ("F", "bu", "bi", "A", "B"))

