"""`hybrid-als`: explicit ALS whose item vectors are pulled towards a projection of their genres.

Loss: sum (r_ui - mu - b_u - b_i - x_u . v_i)^2 + tau * sum_i |v_i - W^T g_i|^2
      + tau_bias * sum_i (b_i - w_b . g_i)^2
      + reg * (|X|^2 + |V|^2) + reg_bias * (|b|^2) + reg_w * (|W|^2 + |w_b|^2).
A movie nobody has rated still has a vector, W^T g_i (shrunk by tau / (tau + reg)), and a bias,
its genres' typical bias w_b . g_i, so `recommend` can rank it and `predict` scores it with
`"fallback": "genre"`. The user half-step is ALS's (CG or exact per `solver`); the item half-step
is an exact solve with the priors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_cli.data.dataset import Interactions
from recsys_cli.errors import UsageError
from recsys_cli.models.als import ALS, ALSConfig
from recsys_cli.models.config import param
from recsys_cli.models.iterative import init_factors, run_steps


@dataclass(frozen=True)
class HybridALSConfig(ALSConfig):
    # ALS's parameters plus the genre prior. Chosen on ml-100k (3-fold CV on 80% of the ratings;
    # RMSE 0.911 on the other 20%) with:
    #   recsys tune hybrid-als --dataset ml-100k --grid tau=0.1,1,5 --grid reg=0.05,0.08 -p factors=32 --cv 3 --metric rmse
    factors: int = param(32, "latent factors", low=1)
    reg: float = param(0.08, "factor regularisation (times the rating count when scale_reg)", low=0.0)
    tau: float = param(5.0, "pull of item vectors towards their genre projection", low=0.0)
    # tau_bias chosen on ml-100k from 0, 0.3, 1, 3, 10: 1.0 gives the best 5-fold CV RMSE (0.9060 vs 0.9069 without)
    #   recsys evaluate --model hybrid-als --dataset ml-100k --cv 5 --metrics rating -p tau_bias=1
    # and cold-item RMSE (every rating of a random 10% of the movies withheld; 3 draws) 1.001 / 1.057 / 1.033
    # against 1.007 / 1.057 / 1.046 without it and 1.021 / 1.068 / 1.052 for the user-bias fallback.
    tau_bias: float = param(1.0, "pull of item biases towards their genres' typical bias (count-weighted fit)",
                            low=0.0)
    reg_w: float = param(1.0, "regularisation of the genre projection W", low=0.0)


class HybridALS(ALS):
    name = "hybrid-als"
    Config = HybridALSConfig
    scores_cold_items = True

    def _fit(self, data: Interactions, *, seed: int, progress) -> None:
        from recsys_cli.models._kernels.als import als_explicit_half_step, als_explicit_half_step_cg
        from recsys_cli.models._kernels.hybrid import genre_projection, hybrid_item_step

        if data.item_genres is None or not data.item_genres.any():
            raise UsageError("hybrid-als needs item genres, and this dataset has none")
        c = self.config
        rng = np.random.default_rng(seed)
        G = (data.item_genres > 0).astype(np.float32)
        self.mu = np.float32(self.global_mean)
        self.X = init_factors(rng, data.n_users, c.factors, c.init_std)
        self.Y = init_factors(rng, data.n_items, c.factors, c.init_std)
        self.bu = np.zeros(data.n_users, np.float32)
        self.bi = np.zeros(data.n_items, np.float32)
        self.W = np.zeros((G.shape[1], c.factors), np.float32)
        self.wb = np.zeros(G.shape[1], np.float32)
        ui, iu = data.csr(), data.csc()

        def iteration(_: int) -> dict[str, float]:
            user_args = (ui.indptr, ui.indices, ui.data, self.X, self.Y, self.bu, self.bi, float(self.mu),
                         c.reg, c.reg_bias, c.scale_reg)
            if c.solver == "cg":
                als_explicit_half_step_cg(*user_args, c.cg_steps, want_sse=False)
            else:
                als_explicit_half_step(*user_args)
            M, MB = G @ self.W, G @ self.wb
            hybrid_item_step(iu.indptr, iu.indices, iu.data, self.X, self.bu, float(self.mu), self.Y, self.bi, M, MB,
                             c.reg, c.reg_bias, c.tau, c.tau_bias, c.scale_reg)
            if c.tau > 0:
                self.W = genre_projection(G, self.Y, c.reg_w / c.tau)
            if c.tau_bias > 0:
                self.wb = genre_projection(G, self.bi, c.reg_w / c.tau_bias, weights=self.item_counts)
            pred = self._predict_known(data.users, data.items)
            return {"train_rmse": float(np.sqrt(np.mean((data.ratings - pred) ** 2)))}

        history = run_steps(self, progress, c.iterations, iteration)
        self.G = G
        self.fit_info = {**history, "cold_items": int((self.item_counts == 0).sum())}

    def _cold_item_scores(self, items: np.ndarray, users: np.ndarray):
        """Known users x items without ratings: scored from the genre-derived item vector."""
        ok = (items >= 0) & (users >= 0)
        ok[ok] &= (self.item_counts[items[ok]] == 0) & self.G[items[ok]].any(axis=1)
        vals = np.zeros(len(items), np.float32)
        if ok.any():
            vals[ok] = self._predict_known(users[ok], items[ok])
        return vals, ok

    def explain(self, user: int, items: np.ndarray, *, rated=None, ratings=None) -> list:
        """Rated items for items with ratings (as `als`); for a cold item, its genres: the user's affinity
        x_u . W_g plus the genre's bias w_b,g, each genre of the item one part; residual = the gap
        between the stored item vector/bias and the current genre projection."""
        from recsys_cli.models.explain import Explanation

        items = np.asarray(items, np.int64).reshape(-1)
        out = list(super().explain(user, items, rated=rated, ratings=ratings))
        cold = np.flatnonzero(self.item_counts[items] == 0)
        if not len(cold):
            return out
        c = self.config
        if user >= 0:
            bx, x = float(self.bu[user]), self.X[user].astype(np.float64)
        else:
            from recsys_cli.models._kernels.als import als_fold_in  # Numba: only for a new user

            bx, x = als_fold_in(np.asarray(rated, np.int64), np.asarray(ratings, np.float32), self.Y, self.bi,
                                float(self.mu), c.reg, c.reg_bias, c.scale_reg)
            x = np.asarray(x, np.float64)
        affinity = self.W.astype(np.float64) @ x + self.wb.astype(np.float64)  # per genre
        for k in cold:
            i = items[k]
            genres = np.flatnonzero(self.G[i] > 0)
            parts = affinity[genres]
            prior = self.W[genres].astype(np.float64).sum(axis=0)
            gap = float((self.Y[i].astype(np.float64) - prior) @ x) + float(self.bi[i]) - float(self.wb[genres].sum())
            out[k] = Explanation("genres", float(self.mu) + bx, genres.astype(np.int64), parts, gap,
                                 "global mean + user bias").sorted()
        return out

    def _state(self) -> dict:
        return {**super()._state(), "W": self.W, "wb": self.wb, "G": self.G}

    def _load_state(self, state: dict) -> None:
        super()._load_state(state)
        self.W, self.G = state["W"], state["G"]
        self.wb = state.get("wb", np.zeros(self.G.shape[1], np.float32))  # runs saved before the bias prior
