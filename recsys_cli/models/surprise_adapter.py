"""`surprise:<Algorithm>`: any scikit-surprise algorithm as a recsys model, pickle-free.

The Surprise trainset is built straight from our index arrays (inner ids are the ranks of
users/items that have training ratings, so it equals the trainset Surprise itself would
build). Algorithms whose learned state is arrays (SVD, SVDpp, NMF, BaselineOnly,
CoClustering) are saved as those arrays and scored with Surprise's own formulas,
vectorised. The others (kNN family, SlopeOne, NormalPredictor) keep no array state
worth saving: their run stores the training ratings and refits deterministically on
load, which the manifest's fit_info says.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from typing import Any, Optional

import numpy as np

from recsys_cli.data.dataset import Interactions
from recsys_cli.errors import ConfigError, UsageError
from recsys_cli.models.base import Recommender
from recsys_cli.models.config import ModelConfig

ALGORITHMS = (
    "SVD", "SVDpp", "NMF", "SlopeOne", "KNNBasic", "KNNWithMeans", "KNNWithZScore", "KNNBaseline",
    "CoClustering", "BaselineOnly", "NormalPredictor",
)
ARRAY_STATE = {
    "SVD": ("bu", "bi", "pu", "qi"),
    "SVDpp": ("bu", "bi", "pu", "qi", "yj"),
    "NMF": ("bu", "bi", "pu", "qi"),
    "BaselineOnly": ("bu", "bi"),
    "CoClustering": ("cltr_u", "cltr_i", "user_mean", "item_mean", "avg_cltr_u", "avg_cltr_i", "avg_cocltr"),
}
_DICT_PARAMS = ("sim_options", "bsl_options")
# One-line meanings of the Surprise parameters (as scikit-surprise documents them), for `recsys models`.
_DOCS = {
    "n_factors": "latent factors",
    "n_epochs": "passes over the ratings",
    "biased": "learn user/item biases",
    "init_mean": "mean of the initial factors",
    "init_std_dev": "standard deviation of the initial factors",
    "init_low": "lower bound of the uniform initial factors",
    "init_high": "upper bound of the uniform initial factors",
    "lr_all": "learning rate of every parameter",
    "reg_all": "regularisation of every parameter",
    "lr_bu": "learning rate of the user biases (overrides lr_all)",
    "lr_bi": "learning rate of the item biases (overrides lr_all)",
    "lr_pu": "learning rate of the user factors (overrides lr_all)",
    "lr_qi": "learning rate of the item factors (overrides lr_all)",
    "lr_yj": "learning rate of the implicit item factors (overrides lr_all)",
    "reg_bu": "regularisation of the user biases",
    "reg_bi": "regularisation of the item biases",
    "reg_pu": "regularisation of the user factors",
    "reg_qi": "regularisation of the item factors",
    "reg_yj": "regularisation of the implicit item factors (overrides reg_all)",
    "cache_ratings": "cache the user's ratings between epochs (faster, more memory)",
    "k": "maximum neighbours used per prediction",
    "min_k": "fewer usable neighbours than this falls back to the mean/baseline",
    "sim_options": 'JSON similarity options, e.g. {"name": "pearson_baseline", "user_based": false}',
    "bsl_options": 'JSON baseline options, e.g. {"method": "als", "reg_u": 15, "reg_i": 10}',
    "n_cltr_u": "user clusters",
    "n_cltr_i": "item clusters",
}
_SKIP = {"self", "verbose", "random_state", "args", "kwargs"}


def _algo_cls(name: str):
    import surprise

    if name not in ALGORITHMS:
        raise UsageError(f"unknown Surprise algorithm {name!r}; valid: {', '.join(ALGORITHMS)}")
    return getattr(surprise, name)


_CLASSES: dict[str, type] = {}


def adapter_class(algo: str) -> type[SurpriseModel]:
    """A registered-model class for one Surprise algorithm, with a strict config from its signature."""
    if algo in _CLASSES:
        return _CLASSES[algo]
    cls = _algo_cls(algo)
    fields = []
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name in _SKIP or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        default = p.default if p.default is not inspect.Parameter.empty else None
        meta = {"doc": _DOCS.get(p.name, f"scikit-surprise's {p.name} of {algo}")}
        if p.name in _DICT_PARAMS:
            fields.append((p.name, str, dataclasses.field(default=json.dumps(default or {}), metadata=meta)))
        elif isinstance(default, bool):
            fields.append((p.name, bool, dataclasses.field(default=default, metadata=meta)))
        elif isinstance(default, int):
            fields.append((p.name, int, dataclasses.field(default=default, metadata=meta)))
        elif isinstance(default, float):
            fields.append((p.name, float, dataclasses.field(default=default, metadata=meta)))
        elif default is None and p.name.startswith(("lr_", "reg_")):
            fields.append((p.name, Optional[float], dataclasses.field(default=None, metadata=meta)))
        else:
            fields.append((p.name, Optional[str],
                           dataclasses.field(default=None if default is None else str(default), metadata=meta)))
    config_cls = dataclasses.make_dataclass(f"Surprise{algo}Config", fields, bases=(ModelConfig,), frozen=True)
    model_cls = type(f"Surprise{algo}", (SurpriseModel,), {"name": f"surprise:{algo}", "Config": config_cls, "algo": algo})
    _CLASSES[algo] = model_cls
    return model_cls


class SurpriseModel(Recommender):
    """Wraps one scikit-surprise algorithm; see the module docstring."""

    algo = ""

    def _make_algo(self, seed: int):
        cls = _algo_cls(self.algo)
        kwargs: dict[str, Any] = {}
        for key, value in self.config.to_dict().items():
            if key in _DICT_PARAMS:
                try:
                    kwargs[key] = json.loads(value) if value else {}
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{key} must be JSON, e.g. '{{\"name\": \"pearson_baseline\"}}': {exc}") from None
            else:
                kwargs[key] = value
        params = inspect.signature(cls.__init__).parameters
        if "random_state" in params:
            kwargs["random_state"] = seed
        if "verbose" in params:
            kwargs["verbose"] = False
        return cls(**kwargs)

    def _trainset(self, users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int, n_items: int):
        from collections import defaultdict

        from surprise import Trainset

        u_has = np.bincount(users, minlength=n_users) > 0
        i_has = np.bincount(items, minlength=n_items) > 0
        self.u_inner = np.where(u_has, np.cumsum(u_has) - 1, -1).astype(np.int64)
        self.i_inner = np.where(i_has, np.cumsum(i_has) - 1, -1).astype(np.int64)
        iu, ii = self.u_inner[users], self.i_inner[items]
        ur, ir = defaultdict(list), defaultdict(list)
        for a, b, r in zip(iu.tolist(), ii.tolist(), ratings.astype(float).tolist(), strict=False):
            ur[a].append((b, r))
            ir[b].append((a, r))
        ts = Trainset(
            ur, ir, int(u_has.sum()), int(i_has.sum()), len(ratings), self.rating_scale,
            {int(x): k for k, x in enumerate(np.flatnonzero(u_has))},
            {int(x): k for k, x in enumerate(np.flatnonzero(i_has))},
        )
        return ts

    def _fit(self, data: Interactions, *, seed: int, progress) -> None:
        self._fit_arrays(data.users, data.items, data.ratings, data.n_users, data.n_items, seed)

    def _fit_arrays(self, users, items, ratings, n_users, n_items, seed) -> None:
        self.seed = seed
        trainset = self._trainset(users, items, ratings, n_users, n_items)
        self.surprise_mean = np.float32(trainset.global_mean)
        self._algo = self._make_algo(seed)
        self._algo.fit(trainset)
        if self.algo in ARRAY_STATE:
            self.arrays = {k: np.asarray(getattr(self._algo, k)) for k in ARRAY_STATE[self.algo]}
            if self.algo == "SVDpp":
                self._impl = self._implicit(users, items)
            self.fit_info = {"state": "arrays"}
        else:
            self.train_triplets = (users.astype(np.int32), items.astype(np.int32), ratings.astype(np.float32))
            self.fit_info = {"state": "refit on load from the stored training ratings (deterministic, seeded)"}

    def _implicit(self, users, items) -> np.ndarray:
        yj = self.arrays["yj"]
        iu, ii = self.u_inner[users], self.i_inner[items]
        n = np.bincount(iu, minlength=len(self.arrays["pu"])).astype(np.float64)
        acc = np.zeros_like(yj, dtype=np.float64, shape=(len(self.arrays["pu"]), yj.shape[1]))
        np.add.at(acc, iu, yj[ii])
        return (acc / np.sqrt(np.maximum(n, 1))[:, None]).astype(np.float64)

    # ---- scoring: Surprise's estimate formulas, vectorised over items -------------------
    def _score_users(self, users: np.ndarray) -> np.ndarray:
        iu = self.u_inner[users]
        known_i = self.i_inner >= 0
        ii = np.where(known_i, self.i_inner, 0)
        mu = float(self.surprise_mean)
        a = getattr(self, "arrays", None)
        if self.algo in ("SVD", "NMF", "SVDpp", "BaselineOnly"):
            biased = self.algo in ("SVDpp", "BaselineOnly") or bool(self.config.to_dict().get("biased", True))
            if biased:
                s = mu + a["bu"][iu][:, None] + np.where(known_i, a["bi"][ii], 0.0)[None, :]
            else:
                s = np.zeros((len(users), self.n_items))
            if self.algo != "BaselineOnly":
                pu = a["pu"][iu] + (self._impl[iu] if self.algo == "SVDpp" else 0.0)
                s = s + np.where(known_i[None, :], pu @ a["qi"][ii].T, 0.0)
            return s.astype(np.float32)
        if self.algo == "CoClustering":
            cu = a["cltr_u"][iu].astype(np.int64)
            ci = a["cltr_i"][ii].astype(np.int64)
            s = (a["avg_cocltr"][cu[:, None], ci[None, :]] + (a["user_mean"][iu] - a["avg_cltr_u"][cu])[:, None]
                 + (a["item_mean"][ii] - a["avg_cltr_i"][ci])[None, :])
            return np.where(known_i[None, :], s, mu).astype(np.float32)
        return self._estimate_loop(users)

    def _estimate_loop(self, users: np.ndarray) -> np.ndarray:
        from surprise import PredictionImpossible

        np.random.seed(self.seed)  # NormalPredictor draws from numpy's global RNG
        out = np.full((len(users), self.n_items), float(self.surprise_mean), np.float32)
        items = np.flatnonzero(self.i_inner >= 0)
        for r, u in enumerate(users):
            iu = int(self.u_inner[u])
            for i in items:
                try:
                    est = self._algo.estimate(iu, int(self.i_inner[i]))
                except PredictionImpossible:
                    continue
                out[r, i] = est[0] if isinstance(est, tuple) else est
        return out

    def _predict_known(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        if self.algo in ARRAY_STATE:
            out = np.empty(len(users), np.float32)
            for u in np.unique(users):
                sel = users == u
                out[sel] = self._score_users(np.array([u]))[0, items[sel]]
            return out
        from surprise import PredictionImpossible

        np.random.seed(self.seed)
        out = np.empty(len(users), np.float32)
        for k, (u, i) in enumerate(zip(users.tolist(), items.tolist(), strict=False)):
            try:
                est = self._algo.estimate(int(self.u_inner[u]), int(self.i_inner[i]))
                out[k] = est[0] if isinstance(est, tuple) else est
            except PredictionImpossible:
                out[k] = self.surprise_mean
        return out

    def _item_vectors(self):
        a = getattr(self, "arrays", None)
        if a is None or "qi" not in a:
            return None
        out = np.zeros((self.n_items, a["qi"].shape[1]), np.float32)
        known = self.i_inner >= 0
        out[known] = a["qi"][self.i_inner[known]]
        return out

    # ---- persistence --------------------------------------------------------------------
    def _state(self) -> dict:
        st = {"u_inner": self.u_inner, "i_inner": self.i_inner, "surprise_mean": self.surprise_mean,
              "seed": np.int64(self.seed)}
        if self.algo in ARRAY_STATE:
            st.update({f"a.{k}": v for k, v in self.arrays.items()})
            if self.algo == "SVDpp":
                st["impl"] = self._impl
        else:
            st["train_users"], st["train_items"], st["train_ratings"] = self.train_triplets
        return st

    def _load_state(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self.surprise_mean = np.float32(state["surprise_mean"])
        if self.algo in ARRAY_STATE:
            self.u_inner, self.i_inner = state["u_inner"], state["i_inner"]
            self.arrays = {k[2:]: v for k, v in state.items() if k.startswith("a.")}
            if self.algo == "SVDpp":
                self._impl = state["impl"]
        else:
            u, i, r = state["train_users"], state["train_items"], state["train_ratings"]
            self._fit_arrays(u, i, r, len(self.user_ids), len(self.item_ids), self.seed)
            self.fit_info = {"state": "refitted on load from the stored training ratings"}
