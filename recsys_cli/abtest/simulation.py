"""What users do with a list: held-out ratings as ground truth, click models, simulated exposure.

An exposure is the (users x K) matrix of held-out ratings of the items each user was shown
(NaN where the user did not rate the item) plus a mask of the positions that were filled.
A click model turns it into click probabilities (`expected`) and seeded clicks (`sample`,
from uniforms the caller draws, so arms can share random numbers).

- threshold: click exactly when the held-out rating >= the threshold (deterministic).
- position:  P(click at rank r) = P(examine r) * attractiveness; examine = 1 / r^eta (power)
             or gamma^(r-1) (geometric).
- cascade:   the user scans down the list, clicks the first item that attracts them (with
             prob = attractiveness) and stops.
attractiveness = noise + (1 - noise) * (2^g - 1) / (2^gmax - 1), g = rating - lowest rating
(0 when the item was not rated), gmax = highest - lowest rating.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_cli.errors import UsageError

CLICK_MODELS = ("threshold", "position", "cascade")
DECAYS = ("power", "geometric")


@dataclass
class Exposure:
    """Held-out ratings (NaN = not rated) of the shown items and the mask of filled positions."""

    ratings: np.ndarray  # float32 (n_users, K)
    shown: np.ndarray  # bool (n_users, K)

    @property
    def impressions(self) -> np.ndarray:
        return self.shown.sum(axis=1).astype(np.int64)

    def take(self, rows: np.ndarray) -> Exposure:
        return Exposure(self.ratings[rows], self.shown[rows])


class HeldOut:
    """Held-out (user index, item index) -> rating lookup, vectorised by sorted keys."""

    def __init__(self, users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_items: int) -> None:
        self.n_items = int(n_items)
        keys = users.astype(np.int64) * self.n_items + items.astype(np.int64)
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.ratings = np.asarray(ratings, np.float32)[order]

    def lookup(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Ratings for users (n,) x items (n, K) indices; NaN where unrated or item < 0."""
        items = np.asarray(items, np.int64)
        keys = np.asarray(users, np.int64)[:, None] * self.n_items + np.maximum(items, 0)
        out = np.full(items.shape, np.nan, np.float32)
        if len(self.keys) == 0:
            return out
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        hit = (self.keys[pos] == keys) & (items >= 0)
        out[hit] = self.ratings[pos[hit]]
        return out


class ClickModel:
    """Base: `expected` click probabilities and `sample` clicks from uniforms of the same shape."""

    name = ""

    def params(self) -> dict:
        raise NotImplementedError

    def expected(self, exp: Exposure) -> np.ndarray:
        raise NotImplementedError

    def sample(self, exp: Exposure, uniforms: np.ndarray) -> np.ndarray:
        return (uniforms < self.expected(exp)) & exp.shown

    def describe(self) -> str:
        return self.name + "(" + ", ".join(f"{k}={v}" for k, v in self.params().items()) + ")"


class ThresholdClick(ClickModel):
    name = "threshold"

    def __init__(self, threshold: float = 4.0) -> None:
        self.threshold = float(threshold)

    def params(self) -> dict:
        return {"threshold": self.threshold}

    def expected(self, exp: Exposure) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return ((exp.ratings >= self.threshold) & exp.shown).astype(np.float64)

    def sample(self, exp: Exposure, uniforms: np.ndarray) -> np.ndarray:
        return self.expected(exp) > 0


class _Graded(ClickModel):
    def __init__(self, rating_scale: tuple[float, float], noise: float) -> None:
        if not (0.0 <= noise < 1.0):
            raise UsageError(f"--noise must be in [0, 1), got {noise}")
        self.lo, self.hi = float(rating_scale[0]), float(rating_scale[1])
        self.noise = float(noise)

    def attractiveness(self, exp: Exposure) -> np.ndarray:
        """noise + (1 - noise) * (2^g - 1) / (2^gmax - 1); zero on empty positions."""
        g = np.nan_to_num(exp.ratings.astype(np.float64) - self.lo, nan=0.0).clip(0.0, None)
        gmax = max(self.hi - self.lo, 1e-9)
        rel = (np.exp2(g) - 1.0) / (np.exp2(gmax) - 1.0)
        return np.where(exp.shown, self.noise + (1.0 - self.noise) * rel, 0.0)


class PositionClick(_Graded):
    name = "position"

    def __init__(self, rating_scale=(1.0, 5.0), *, eta: float = 1.0, decay: str = "power",
                 gamma: float = 0.85, noise: float = 0.02) -> None:
        super().__init__(rating_scale, noise)
        if decay not in DECAYS:
            raise UsageError(f"unknown --decay {decay!r}; choose one of {', '.join(DECAYS)}")
        if eta < 0:
            raise UsageError(f"--eta must be >= 0, got {eta}")
        if not (0.0 < gamma <= 1.0):
            raise UsageError(f"--gamma must be in (0, 1], got {gamma}")
        self.eta, self.decay, self.gamma = float(eta), decay, float(gamma)

    def params(self) -> dict:
        out = {"decay": self.decay}
        out.update({"eta": self.eta} if self.decay == "power" else {"gamma": self.gamma})
        out.update({"noise": self.noise, "rating_scale": [self.lo, self.hi]})
        return out

    def examination(self, k: int) -> np.ndarray:
        ranks = np.arange(1, k + 1, dtype=np.float64)
        return ranks**-self.eta if self.decay == "power" else self.gamma ** (ranks - 1)

    def expected(self, exp: Exposure) -> np.ndarray:
        return self.examination(exp.ratings.shape[1])[None, :] * self.attractiveness(exp)


class CascadeClick(_Graded):
    name = "cascade"

    def params(self) -> dict:
        return {"noise": self.noise, "rating_scale": [self.lo, self.hi]}

    def expected(self, exp: Exposure) -> np.ndarray:
        a = self.attractiveness(exp)
        reach = np.cumprod(np.hstack([np.ones((a.shape[0], 1)), 1.0 - a[:, :-1]]), axis=1)
        return reach * a

    def sample(self, exp: Exposure, uniforms: np.ndarray) -> np.ndarray:
        hit = uniforms < self.attractiveness(exp)
        first = np.argmax(hit, axis=1)
        clicks = np.zeros(hit.shape, bool)
        rows = np.flatnonzero(hit.any(axis=1))
        clicks[rows, first[rows]] = True
        return clicks


def make_click_model(name: str, rating_scale=(1.0, 5.0), *, threshold: float | None = None, eta: float = 1.0,
                     decay: str = "power", gamma: float = 0.85, noise: float = 0.02) -> ClickModel:
    """Build a click model by name; the threshold defaults to 4 on a 1-5 scale (80% of the top)."""
    if name == "threshold":
        lo, hi = float(rating_scale[0]), float(rating_scale[1])
        if threshold is not None and not threshold <= hi:  # no held-out rating could click: p = nan
            raise UsageError(f"--click-threshold {threshold:g} is above the ratings' scale (up to {hi:g}): no "
                             "held-out rating would click")
        if threshold is not None and threshold < lo:  # e.g. 0.8 meant as a share of the top: every rating clicks
            raise UsageError(f"--click-threshold {threshold:g} is below the ratings' scale (from {lo:g}): every "
                             f"held-out rating would click; give {lo:g} if that is what you mean")
        return ThresholdClick(4.0 if threshold is None else threshold)
    if name == "position":
        return PositionClick(rating_scale, eta=eta, decay=decay, gamma=gamma, noise=noise)
    if name == "cascade":
        return CascadeClick(rating_scale, noise)
    raise UsageError(f"unknown --click-model {name!r}; choose one of {', '.join(CLICK_MODELS)}")


def exposure_for(model, raw_users: np.ndarray, user_index: np.ndarray, k: int, item_ids: np.ndarray,
                 heldout: HeldOut) -> Exposure:
    """Each user's top-k from `model` (seen items excluded) with its held-out ratings."""
    from recsys_cli.data.dataset import lookup

    recs = model.recommend(raw_users, k, exclude_seen=True)
    shown = recs.items >= 0
    items = np.where(shown, lookup(item_ids, recs.items.reshape(-1)).reshape(recs.items.shape), -1)
    return Exposure(heldout.lookup(user_index, items), shown & (items >= 0))


def simulate_clicks(click_model: ClickModel, exp: Exposure, rng: np.random.Generator) -> np.ndarray:
    """Seeded clicks (n_users, K) for one exposure."""
    return click_model.sample(exp, rng.random(exp.ratings.shape))


def mix(exp_a: Exposure, exp_b: Exposure, arm: np.ndarray) -> Exposure:
    """The exposure each user actually got: rows of exp_b where arm == 1, else exp_a."""
    sel = np.asarray(arm, bool)[:, None]
    return Exposure(np.where(sel, exp_b.ratings, exp_a.ratings), np.where(sel, exp_b.shown, exp_a.shown))
