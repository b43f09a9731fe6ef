"""`blend`: a regularised linear blend of several rating models (Netflix-prize style).

Fit: hold out a random `val_fraction` of the training ratings, train every base model on
the rest, and fit ridge weights on the held-out predictions (each clipped to the rating
scale; with `support_features`, each prediction also enters multiplied by a shrunk
log-count of the user and of the item, so the blend can trust models differently for
heavy and light users). Then refit every base model on all training ratings and apply
the weights. The base models' configs come from their defaults plus `params` (JSON:
{"svd": {"factors": 200}}), so a saved blend is fully described by its own config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from recsys_cli.data.dataset import Interactions
from recsys_cli.errors import ConfigError, UsageError
from recsys_cli.models.base import Recommender
from recsys_cli.models.config import ModelConfig, param


@dataclass(frozen=True)
class BlendConfig(ModelConfig):
    # Member settings chosen on ml-100k fold 0 of `--cv 5` (seed 42) by hand-run grids over factors,
    # epochs, lr and reg; the blend then measured with (5-fold CV RMSE 0.898):
    #   recsys evaluate --model blend --dataset ml-100k --cv 5
    models: str = param("svd,svdpp,item-knn,user-knn,als,bias", "comma-separated rating models to blend")
    params: str = param(
        '{"svd": {"factors": 200, "epochs": 100, "lr_all": 0.004, "reg_all": 0.1, "reg_bu": 0.02, "reg_bi": 0.02},'
        ' "svdpp": {"factors": 200, "epochs": 60, "lr_all": 0.005, "reg_all": 0.1}}',
        'JSON of per-model overrides, e.g. {"svd": {"factors": 200}}',
    )
    val_fraction: float = param(0.15, "share of training ratings held out to fit the blend weights", low=0.01, high=0.5)
    ridge: float = param(1.0, "L2 penalty of the blend weights", low=0.0)
    support_features: bool = param(True, "let weights depend on the user's and item's rating counts")


def member_overrides(kind: str, params: str, names: list[str]) -> dict[str, dict]:
    """The `params` JSON of a blend: {member: {key: value}} over members in `names`; ConfigError otherwise."""
    try:
        overrides = json.loads(params or "{}")
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{kind}: params must be JSON: {exc}") from None
    example = '{"%s": {"factors": 96}}' % (names[0] if names else "svd")
    if not isinstance(overrides, dict):
        raise ConfigError(f"{kind}: params must be a JSON object such as {example}")
    unknown = set(overrides) - set(names)
    if unknown:
        raise ConfigError(f"{kind}: params for models not in the blend: {', '.join(sorted(unknown))}")
    for name, values in overrides.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{kind}: params for {name} must be a JSON object such as {example}")
    return overrides


class BlendModel(Recommender):
    name = "blend"
    Config = BlendConfig

    def check_config(self) -> None:
        """Members, their overrides and their own configs are checked when the blend is created, before any work."""
        self._members()

    def _members(self) -> list[tuple[str, object]]:
        from recsys_cli.models.registry import create_model

        names = [m.strip() for m in self.config.models.split(",") if m.strip()]
        if not names:
            raise ConfigError("blend: `models` is empty")
        if "blend" in names:
            raise ConfigError("blend: a blend cannot contain itself")
        overrides = member_overrides("blend", self.config.params, names)
        members = []
        for n in names:
            params = dict(overrides.get(n, {}))
            model = create_model(n, params)
            if not model.scores_are_ratings and hasattr(model.config, "rank_by") and "rank_by" not in params:
                # kNN ranks by summed evidence by default; a blend needs its predicted ratings
                model = create_model(n, {**params, "rank_by": "mean"})
            if not model.predicts_ratings or not model.scores_are_ratings:
                raise ConfigError(f"blend: {n} does not predict ratings, so it cannot be blended")
            members.append((n, model))
        return members

    def _features(self, preds: np.ndarray, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Design matrix: predictions (centred on mu), and with support, times log-counts."""
        p = preds - self.global_mean
        cols = [p]
        if self.config.support_features:
            su = np.log1p(self.user_counts[users]).astype(np.float32)[:, None] / 5.0
            si = np.log1p(self.item_counts[items]).astype(np.float32)[:, None] / 5.0
            cols += [p * su, p * si]
        return np.hstack(cols)

    def _fit(self, data: Interactions, *, seed: int, progress) -> None:
        members = self._members()
        rng = np.random.default_rng(seed)
        val = rng.random(len(data)) < self.config.val_fraction
        inner, held = data.subset(~val), data.subset(val)
        lo, hi = self.rating_scale
        # Support features refer to the counts of the data each model was fit on.
        counts_full = (self.user_counts, self.item_counts)
        self.user_counts = np.bincount(inner.users, minlength=data.n_users).astype(np.int32)
        self.item_counts = np.bincount(inner.items, minlength=data.n_items).astype(np.int32)
        preds = []
        progress.start(2 * len(members), "blend members")
        for name, model in members:
            model.fit(inner, seed=seed)
            p, _ = model.predict(held.user_ids[held.users], held.item_ids[held.items], held.timestamps)
            preds.append(np.clip(p, lo, hi))
            progress.advance(1, model=name)
        X = self._features(np.stack(preds, axis=1), held.users, held.items).astype(np.float64)
        y = held.ratings.astype(np.float64) - float(self.global_mean)
        A = X.T @ X + self.config.ridge * np.eye(X.shape[1])
        self.weights = np.linalg.solve(A, X.T @ y).astype(np.float64)
        self.user_counts, self.item_counts = counts_full
        self.members = []
        for name, model in members:
            model.fit(data, seed=seed)
            self.members.append((name, model))
            progress.advance(1, model=name)
        val_rmse = float(np.sqrt(np.mean((X @ self.weights - y) ** 2)))
        self.fit_info = {"weights": {f"w{k}": float(w) for k, w in enumerate(self.weights)}, "val_rmse": val_rmse,
                         "members": [n for n, _ in members]}

    def _blend(self, preds: np.ndarray, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        lo, hi = self.rating_scale
        X = self._features(np.clip(preds, lo, hi), users, items)
        return (self.global_mean + X @ self.weights.astype(np.float32)).astype(np.float32)

    def _predict_known(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        preds = np.stack([m._predict_known(users, items) for _, m in self.members], axis=1)
        return self._blend(preds, users, items)

    @property
    def uses_time(self) -> bool:
        return any(m.uses_time for _, m in self.members)

    def _predict_known_at(self, users: np.ndarray, items: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
        preds = np.stack([m._predict_known_at(users, items, timestamps) for _, m in self.members], axis=1)
        return self._blend(preds, users, items)

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        scores = [m._score_users(users) for _, m in self.members]
        b, n = len(users), self.n_items
        uu = np.repeat(users, n)
        ii = np.tile(np.arange(n), b)
        preds = np.stack([s.reshape(-1) for s in scores], axis=1)
        return self._blend(preds, uu, ii).reshape(b, n)

    def _state(self) -> dict:
        return {"weights": self.weights, **members_state(self.members)}

    def _load_state(self, state: dict) -> None:
        self.weights = np.asarray(state["weights"])
        self.members = load_members(self._members(), state, self.name)


def members_state(members: list[tuple[str, Recommender]]) -> dict:
    """The saved state of a blend's fitted members, member k's arrays under the prefix `m{k}.`."""
    out: dict = {}
    for k, (_name, model) in enumerate(members):
        for key, value in model.state().items():
            out[f"m{k}.{key}"] = value
    return out


def load_members(unfitted: list[tuple[str, Recommender]], state: dict, blend: str) -> list[tuple[str, Recommender]]:
    """The members `members_state` saved, rebuilt from their configs (`unfitted`, in the same order)."""
    members = []
    for k, (name, model) in enumerate(unfitted):
        prefix = f"m{k}."
        sub = {key[len(prefix):]: v for key, v in state.items() if key.startswith(prefix)}
        if not sub:
            raise UsageError(f"{blend} state lacks member {name}")
        members.append((name, type(model).from_state(model.config, sub)))
    return members
