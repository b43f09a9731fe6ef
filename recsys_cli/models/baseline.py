"""`bias` (global mean + regularised user/item biases) and `popularity` models."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_cli.data.dataset import Interactions, lookup
from recsys_cli.models.base import Recommender
from recsys_cli.models.config import ModelConfig, choice, param
from recsys_cli.models.iterative import check_finite


@dataclass(frozen=True)
class BiasConfig(ModelConfig):
    # Defaults are scikit-surprise BaselineOnly's (ALS: reg_u 15, reg_i 10, 10 epochs).
    method: str = choice("als", "als", "sgd", doc="fit the biases by alternating least squares or SGD")
    reg_u: float = param(15.0, "ALS regularisation of user biases", low=0.0)
    reg_i: float = param(10.0, "ALS regularisation of item biases", low=0.0)
    epochs: int = param(10, "passes over the data", low=1)
    reg: float = param(0.02, "SGD regularisation", low=0.0)
    lr: float = param(0.005, "SGD learning rate", low=0.0)


class BiasModel(Recommender):
    """r_ui = mu + b_u + b_i, like Surprise's BaselineOnly."""

    name = "bias"
    Config = BiasConfig
    supports_fold_in = True
    divergence_hint = "lower lr"

    def _fit(self, data: Interactions, *, seed: int, progress) -> None:
        from recsys_cli.models._kernels import baseline as k

        c = self.config
        mu = float(self.global_mean)
        if c.method == "als":
            bu, bi = k.baseline_als(
                data.users, data.items, data.ratings, data.n_users, data.n_items, mu,
                reg_u=c.reg_u, reg_i=c.reg_i, n_epochs=c.epochs,
            )
        else:
            bu, bi = k.baseline_sgd(
                data.users, data.items, data.ratings, data.n_users, data.n_items, mu,
                reg=c.reg, lr=c.lr, n_epochs=c.epochs, seed=seed,
            )
        self.bu = np.asarray(bu, np.float32)
        self.bi = np.asarray(bi, np.float32)
        check_finite(self, arrays=(self.bu, self.bi))

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        return (self.global_mean + self.bu[users])[:, None] + self.bi[None, :]

    def _predict_known(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.global_mean + self.bu[users] + self.bi[items]

    def explain(self, user: int, items: np.ndarray, *, rated=None, ratings=None) -> list:
        """Global mean + user bias + item bias: all baseline, no rated item stands out."""
        from recsys_cli.models.explain import Explanation

        items = np.asarray(items, np.int64).reshape(-1)
        if user >= 0:
            bu = float(self.bu[user])
        else:
            reg = self.config.reg_u if self.config.method == "als" else self.config.reg
            r = np.asarray(ratings, np.float32)
            bu = float(np.sum(r - self.global_mean - self.bi[np.asarray(rated, np.int64)]) / (reg + len(r)))
        return [Explanation("baseline", float(self.global_mean) + bu + float(self.bi[i])) for i in items]

    def fold_in(self, raw_items, ratings) -> np.ndarray:
        idx = lookup(self.item_ids, raw_items)
        ok = idx >= 0
        r = np.asarray(ratings, np.float32)[ok]
        reg = self.config.reg_u if self.config.method == "als" else self.config.reg
        bu = float(np.sum(r - self.global_mean - self.bi[idx[ok]]) / (reg + ok.sum()))
        return self.global_mean + bu + self.bi

    def _state(self) -> dict:
        return {"bu": self.bu, "bi": self.bi}

    def _load_state(self, state: dict) -> None:
        self.bu, self.bi = state["bu"], state["bi"]


@dataclass(frozen=True)
class PopularityConfig(ModelConfig):
    kind: str = choice("count", "count", "damped_mean", doc="rank by number of ratings or by damped mean rating")
    min_ratings: int = param(20, "items with fewer ratings rank after all others", low=0)
    damping: float = param(10.0, "pseudo-ratings at the global mean for damped_mean", low=0.0)


class PopularityModel(Recommender):
    """The same ranking for everyone: most-rated or best damped mean, above a minimum count."""

    name = "popularity"
    Config = PopularityConfig
    supports_fold_in = True
    scores_are_ratings = False  # predicts the damped mean rating, ranks by popularity

    def _fit(self, data: Interactions, *, seed: int, progress) -> None:
        counts = self.item_counts.astype(np.float64)
        sums = np.bincount(data.items, weights=data.ratings, minlength=data.n_items)
        c = self.config
        mu = float(self.global_mean)
        self.item_mean = ((sums + c.damping * mu) / (counts + c.damping)).astype(np.float32)
        if c.kind == "count":
            base = counts / max(1.0, counts.max())
        else:
            lo, hi = self.rating_scale
            base = (self.item_mean - lo) / max(1e-9, hi - lo)
        # Items under the threshold keep their order but sit below every eligible item.
        eligible = counts >= max(1, c.min_ratings)
        self.pop_score = np.where(eligible, 1.0 + base, base - 1.0).astype(np.float32)
        self.pop_score[counts == 0] = -1.5

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.pop_score, (len(users), self.n_items))

    def _predict_known(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.item_mean[items]

    def _popularity_scores(self) -> np.ndarray:
        return self.pop_score

    def explain(self, user: int, items: np.ndarray, *, rated=None, ratings=None) -> list:
        from recsys_cli.models.explain import popular

        return popular(self.pop_score[np.asarray(items, np.int64).reshape(-1)])

    def fold_in(self, raw_items, ratings) -> np.ndarray:
        return self.pop_score.copy()

    def _state(self) -> dict:
        return {"item_mean": self.item_mean, "pop_score": self.pop_score}

    def _load_state(self, state: dict) -> None:
        self.item_mean, self.pop_score = state["item_mean"], state["pop_score"]
