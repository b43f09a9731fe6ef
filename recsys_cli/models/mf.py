"""`svd` (biased matrix factorisation by SGD) and `svdpp` (SVD++), Numba kernels per epoch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from recsys_cli.data.dataset import Interactions, lookup
from recsys_cli.errors import DivergedError  # noqa: F401  (models import it from here too)
from recsys_cli.models.base import Recommender
from recsys_cli.models.config import ModelConfig, param
from recsys_cli.models.iterative import init_factors, run_steps

_SURPRISE = {"factors": 100, "epochs": 20, "lr_all": 0.005, "reg_all": 0.02, "init_std": 0.1}


@dataclass(frozen=True)
class SVDConfig(ModelConfig):
    # Defaults chosen on ml-100k (best of 30 random trials, 3-fold CV on 80% of the ratings; RMSE 0.9136
    # on the other 20%, never seen while tuning) with:
    #   recsys tune svd --dataset ml-100k --random 30 --space 'lr_all=loguniform(0.002,0.02)' \
    #     --space 'reg_all=loguniform(0.01,0.2)' --space 'factors=choice(50,100,200)' \
    #     --space 'epochs=choice(20,40,80)' --cv 3 --metric rmse
    factors: int = param(100, "latent factors", low=1)
    epochs: int = param(40, "passes over the ratings", low=1)
    lr_all: float = param(0.01, "learning rate of every parameter", low=0.0)
    reg_all: float = param(0.1, "regularisation of every parameter", low=0.0)
    lr_bu: Optional[float] = param(None, "override lr_all for user biases")
    lr_bi: Optional[float] = param(None, "override lr_all for item biases")
    lr_pu: Optional[float] = param(None, "override lr_all for user factors")
    lr_qi: Optional[float] = param(None, "override lr_all for item factors")
    reg_bu: Optional[float] = param(None, "override reg_all for user biases")
    reg_bi: Optional[float] = param(None, "override reg_all for item biases")
    reg_pu: Optional[float] = param(None, "override reg_all for user factors")
    reg_qi: Optional[float] = param(None, "override reg_all for item factors")
    init_mean: float = param(0.0, "mean of the initial factors")
    init_std: float = param(0.1, "standard deviation of the initial factors", low=0.0)
    biased: bool = param(True, "learn user/item biases (False: plain MF)")
    threads: int = param(1, "Hogwild threads for SGD (1 is deterministic)", low=1)

    PRESETS = {"surprise": _SURPRISE}

    def rate(self, name: str) -> float:
        v = getattr(self, f"lr_{name}")
        return self.lr_all if v is None else v

    def reg(self, name: str) -> float:
        v = getattr(self, f"reg_{name}")
        return self.reg_all if v is None else v


class SVD(Recommender):
    """r_ui = mu + b_u + b_i + p_u . q_i, fitted by SGD over shuffled ratings (Funk / Surprise SVD)."""

    blas_scores = True
    iterative = True
    divergence_hint = "lower lr_all (or the lr_* override of the part that diverged)"
    name = "svd"
    Config = SVDConfig
    supports_fold_in = True

    def _init_params(self, data: Interactions, rng: np.random.Generator) -> None:
        c = self.config
        self.mu = np.float32(self.global_mean if c.biased else 0.0)
        self.bu = np.zeros(data.n_users, np.float32)
        self.bi = np.zeros(data.n_items, np.float32)
        self.P = init_factors(rng, data.n_users, c.factors, c.init_std, c.init_mean)
        self.Q = init_factors(rng, data.n_items, c.factors, c.init_std, c.init_mean)

    def _fit(self, data: Interactions, *, seed: int, progress) -> None:
        from recsys_cli.models._kernels import mf_sgd

        c = self.config
        rng = np.random.default_rng(seed)
        self._init_params(data, rng)
        # Checked and copied once; each epoch reshuffles the copy in place (seeded, so fits repeat).
        shuffled = mf_sgd.ShuffledRatings(data.users, data.items, data.ratings, data.n_users, data.n_items,
                                          seed=int(rng.integers(2**63)))
        lrs = [c.rate(n) for n in ("bu", "bi", "pu", "qi")]
        regs = [c.reg(n) for n in ("bu", "bi", "pu", "qi")]

        def epoch(e: int) -> dict[str, float]:
            shuffled.shuffle(e)
            sse = mf_sgd.svd_epoch_shuffled(shuffled, self.mu, self.bu, self.bi, self.P, self.Q, *lrs, *regs,
                                            c.biased, threads=c.threads)
            return {"train_rmse": _rmse(sse, len(data))}

        self.fit_info = run_steps(self, progress, c.epochs, epoch)

    def _user_vectors(self, users: np.ndarray) -> np.ndarray:
        return self.P[users]

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        s = self._user_vectors(users) @ self.Q.T
        s += (self.mu + self.bu[users])[:, None]
        s += self.bi[None, :]
        return s

    def _predict_known(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        pu = self._user_vectors(users)
        return (self.mu + self.bu[users] + self.bi[items] + np.einsum("ij,ij->i", pu, self.Q[items])).astype(
            np.float32
        )

    def _item_vectors(self) -> np.ndarray:
        return self.Q

    needs_ratings_to_explain = True

    def _implicit_of(self, user: int, rated: np.ndarray) -> np.ndarray | None:
        return None

    def explain(self, user: int, items: np.ndarray, *, rated=None, ratings=None) -> list:
        """Per rated item: the ridge reading of the user vector (see `models.explain`), SGD's stationary point.

        At convergence SGD satisfies (Z^T Z + n D) [b_u, p_u] = Z^T t with z_j = [1, q_j],
        t_j = r_uj - mu - b_j (- q_j . implicit for svdpp) and D = diag(reg_bu, reg_pu, ...);
        a new user is the fold-in's ridge solve itself (residual 0).
        """
        from recsys_cli.models.explain import factor_explanations

        c = self.config
        items = np.asarray(items, np.int64).reshape(-1)
        rated = np.asarray(rated, np.int64)
        r = np.asarray(ratings, np.float64)
        Q = self.Q.astype(np.float64)
        Qr = Q[rated]
        implicit = self._implicit_of(user, rated)
        t = r - float(self.mu) - self.bi[rated].astype(np.float64)
        if implicit is not None:
            t = t - Qr @ implicit.astype(np.float64)
        n = len(rated)
        if user >= 0:
            bu, p = float(self.bu[user]), self.P[user].astype(np.float64)
            diag = n * np.array([c.reg("bu")] + [c.reg("pu")] * c.factors)
        else:
            from recsys_cli.models._kernels.mf_sgd import fold_in_user_ridge  # Numba: only for a new user

            reg = max(c.reg_all, 1e-3) * max(1, n)
            bu, p = fold_in_user_ridge(rated, r, self.mu, self.bi, self.Q, reg=reg, use_bias=c.biased,
                                       implicit=implicit)
            diag = np.full(c.factors + 1, reg)
        if c.biased:
            Z = np.hstack([np.ones((n, 1)), Qr])
            w = np.concatenate([[bu], p])
            targets = np.hstack([np.ones((len(items), 1)), Q[items]])
            base = float(self.mu) + self.bi[items].astype(np.float64)
        else:
            Z, w, targets, diag = Qr, np.asarray(p, np.float64), Q[items], diag[1:]
            base = float(self.mu) + bu + self.bi[items].astype(np.float64)
        extra = None
        if implicit is not None:  # q_i . implicit = sum_j |N|^-1/2 q_i . y_j: one exact part per rated item
            extra = (Q[items] @ self.Y[rated].astype(np.float64).T) / np.sqrt(n)
        label = "global mean + item bias" if c.biased else "no bias (plain MF)"
        return factor_explanations(base, Z.T @ Z + np.diag(diag), Z, t, w, targets, rated, extra, base_label=label)

    def fold_in(self, raw_items, ratings) -> np.ndarray:
        from recsys_cli.models._kernels.mf_sgd import fold_in_user_ridge

        idx = lookup(self.item_ids, raw_items)
        ok = idx >= 0
        bu, p = fold_in_user_ridge(
            idx[ok], np.asarray(ratings, np.float32)[ok], self.mu, self.bi, self.Q,
            reg=max(self.config.reg_all, 1e-3) * max(1, ok.sum()), use_bias=self.config.biased,
        )
        return (self.mu + bu + self.bi + self.Q @ p).astype(np.float32)

    def _state(self) -> dict:
        return {"mu": np.float32(self.mu), "bu": self.bu, "bi": self.bi, "P": self.P, "Q": self.Q}

    def _load_state(self, state: dict) -> None:
        self.mu = np.float32(state["mu"])
        self.bu, self.bi, self.P, self.Q = state["bu"], state["bi"], state["P"], state["Q"]


def _rmse(sse: float, n: int) -> float:
    return float(np.sqrt(sse / max(1, n)))


@dataclass(frozen=True)
class SVDppConfig(SVDConfig):
    # Defaults chosen on ml-100k (best of 12 random trials, 3-fold CV on 80% of the ratings; RMSE 0.927 on the
    # other 20%) with:
    #   recsys tune svdpp --dataset ml-100k --random 12 --space 'lr_all=loguniform(0.002,0.01)' \
    #     --space 'reg_all=loguniform(0.02,0.2)' --space 'factors=choice(20,50,100)' \
    #     --space 'epochs=choice(30,60)' --cv 3 --metric rmse
    factors: int = param(50, "latent factors", low=1)
    epochs: int = param(30, "passes over the ratings", low=1)
    lr_all: float = param(0.0068, "learning rate of every parameter", low=0.0)
    reg_all: float = param(0.12, "regularisation of every parameter", low=0.0)
    lr_yj: Optional[float] = param(None, "override lr_all for implicit item factors")
    reg_yj: Optional[float] = param(None, "override reg_all for implicit item factors")
    exact: bool = param(False, "Surprise's per-rating updates of y (slow) instead of per-user batching")

    PRESETS = {"surprise": {"factors": 20, "epochs": 20, "lr_all": 0.007, "reg_all": 0.02, "init_std": 0.1}}


class SVDpp(SVD):
    """SVD++: the user vector is p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j over the items u rated."""

    name = "svdpp"
    Config = SVDppConfig

    def _fit(self, data: Interactions, *, seed: int, progress) -> None:
        from recsys_cli.models._kernels import mf_sgd

        c = self.config
        rng = np.random.default_rng(seed)
        self._init_params(data, rng)
        self.Y = init_factors(rng, data.n_items, c.factors, c.init_std, c.init_mean)
        csr = data.csr()
        indptr = csr.indptr.astype(np.int64)
        indices = csr.indices.astype(np.int32)
        r_ratings = csr.data.astype(np.float32)
        lrs = [c.rate(n) for n in ("bu", "bi", "pu", "qi")] + [c.rate("yj")]
        regs = [c.reg(n) for n in ("bu", "bi", "pu", "qi")] + [c.reg("yj")]
        users_all = np.repeat(np.arange(data.n_users, dtype=np.int32), np.diff(indptr))

        def epoch(_: int) -> dict[str, float]:
            if c.exact:
                order = rng.permutation(len(r_ratings)).astype(np.int64)
                sse = mf_sgd.svdpp_epoch(users_all, indices, r_ratings, order, indptr, indices, self.mu,
                                         self.bu, self.bi, self.P, self.Q, self.Y, *lrs, *regs)
            else:
                user_order = rng.permutation(data.n_users).astype(np.int64)
                r_order = mf_sgd.shuffle_within_rows(indptr, rng)
                sse = mf_sgd.svdpp_epoch_grouped(user_order, indptr, indices, r_ratings, r_order, indptr,
                                                 indices, self.mu, self.bu, self.bi, self.P, self.Q, self.Y,
                                                 *lrs, *regs)
            return {"train_rmse": _rmse(sse, len(r_ratings))}

        self.fit_info = run_steps(self, progress, c.epochs, epoch)
        self.implicit = mf_sgd.user_implicit(indptr, indices, self.Y)

    def _user_vectors(self, users: np.ndarray) -> np.ndarray:
        return self.P[users] + self.implicit[users]

    def _implicit_of(self, user: int, rated: np.ndarray) -> np.ndarray:
        if user >= 0:
            return self.implicit[user]
        return self.Y[rated].sum(axis=0) / np.sqrt(len(rated))

    def fold_in(self, raw_items, ratings) -> np.ndarray:
        from recsys_cli.models._kernels.mf_sgd import fold_in_user_ridge

        idx = lookup(self.item_ids, raw_items)
        ok = idx >= 0
        items = idx[ok]
        implicit = self.Y[items].sum(axis=0) / np.sqrt(len(items))
        bu, p = fold_in_user_ridge(
            items, np.asarray(ratings, np.float32)[ok], self.mu, self.bi, self.Q,
            reg=max(self.config.reg_all, 1e-3) * max(1, len(items)), implicit=implicit,
        )
        return (self.mu + bu + self.bi + self.Q @ (p + implicit)).astype(np.float32)

    def _state(self) -> dict:
        return {**super()._state(), "Y": self.Y, "implicit": self.implicit}

    def _load_state(self, state: dict) -> None:
        super()._load_state(state)
        self.Y, self.implicit = state["Y"], state["implicit"]
