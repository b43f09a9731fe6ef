"""Models for the library API: create, fit, recommend, predict, explain similar items, save and load.

`Recommender` wraps one of our models (`recsys_cli.models`) with everything a notebook user
needs: it fits on a `Dataset` or any DataFrame, answers in polars DataFrames with raw ids and
titles, and remembers what it was trained on so `save` writes a complete run.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys_cli.errors import UsageError

if TYPE_CHECKING:
    import polars as pl

    from recsys_cli.api.runs import Run
    from recsys_cli.models.base import RecList

RECOMMEND_COLUMNS = ("user_id", "rank", "item_id", "title", "score", "fallback")
PREDICT_COLUMNS = ("user_id", "item_id", "prediction", "fallback")
SIMILAR_COLUMNS = ("item_id", "rank", "similar_item_id", "title", "similarity")
MAX_N = 1_000_000  # no list is longer than the catalogue; this bounds what a typo can ask for


def _ids(values: Any, what: str) -> np.ndarray:
    """Raw ids from a scalar, a list, an array or a Series; UsageError for anything not an integer id."""
    if values is None:
        raise UsageError(f"give the {what} ids")
    if hasattr(values, "to_numpy") and not isinstance(values, np.ndarray):
        values = values.to_numpy()
    arr = np.asarray(values if not np.isscalar(values) else [values])
    if arr.dtype == object or arr.dtype.kind in "US":
        try:
            arr = np.asarray([int(str(v).strip()) for v in arr.reshape(-1)])
        except ValueError:
            raise UsageError(f"{what} ids must be integers, got {values!r}"[:300]) from None
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise UsageError(f"{what} ids must be integers, got {values!r}"[:300])
    elif arr.dtype.kind not in "iub":
        raise UsageError(f"{what} ids must be integers, got {values!r}"[:300])
    if arr.size and (arr.max() > np.iinfo(np.int64).max or arr.min() < np.iinfo(np.int64).min):
        raise UsageError(f"{what} id out of range")
    return arr.astype(np.int64).reshape(-1)


def check_n(n: Any, what: str = "n") -> int:
    """A list length: a positive integer, capped by MAX_N (nothing returns more than the catalogue anyway)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise UsageError(f"{what} must be a positive integer, got {n!r}")
    if n < 1 or n > MAX_N:
        raise UsageError(f"{what} must be between 1 and {MAX_N:,}, got {n}")
    return int(n)


def rating_pairs(ratings: Any) -> tuple[np.ndarray, np.ndarray]:
    """A new user's ratings as (raw item ids, values) from a {item: rating} dict, (item, rating) pairs or a frame."""
    if isinstance(ratings, Mapping):
        pairs = list(ratings.items())
    elif hasattr(ratings, "columns"):  # a polars or pandas frame with item_id, rating
        cols = list(ratings.columns)
        if "item_id" not in cols or "rating" not in cols:
            raise UsageError(f"the ratings frame needs item_id and rating columns (columns: {', '.join(map(str, cols))})")
        pairs = list(zip(list(ratings["item_id"]), list(ratings["rating"]), strict=True))
    elif isinstance(ratings, Iterable) and not isinstance(ratings, (str, bytes)):
        pairs = [tuple(p) for p in ratings]
        if any(len(p) != 2 for p in pairs):
            raise UsageError("ratings must be (item, rating) pairs")
    else:
        raise UsageError("ratings must be a {item: rating} dict, (item, rating) pairs or a frame of item_id, rating")
    if not pairs:
        raise UsageError("give at least one rating to fold in")
    items = _ids([p[0] for p in pairs], "item")
    try:
        values = np.asarray([float(p[1]) for p in pairs], np.float64)
    except (TypeError, ValueError):
        raise UsageError("ratings must be numbers") from None
    if not np.all(np.isfinite(values)):
        raise UsageError("ratings must be finite numbers (got NaN or infinity)")
    if len(np.unique(items)) != len(items):
        raise UsageError("an item is rated twice in the new user's ratings")
    return items, values


class Recommender:
    """A model you fit, query and save. Make one with `create_model(name, **params)` or `train(...)`.

    Every answer is a polars DataFrame (`.to_pandas()` works) with raw ids and titles.
    """

    def __init__(self, estimator, *, titles: dict[int, str] | None = None, trained_on: dict[str, Any] | None = None,
                 preset: str | None = None) -> None:
        self.estimator = estimator  # the model itself (recsys_cli.models.base.Recommender)
        self.titles = titles or {}
        self.trained_on = trained_on or {}  # dataset, fingerprint, split, seed, train_seconds, n_train_ratings
        self.preset = preset
        self._train = None  # the Interactions it was fitted on (kept in memory for evaluate)

    # ----- what it is -----------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.estimator.name

    @property
    def params(self) -> dict[str, Any]:
        """Every hyperparameter with its value (defaults included)."""
        return self.estimator.config.to_dict()

    @property
    def fitted(self) -> bool:
        return bool(self.estimator.fitted)

    @property
    def fit_info(self) -> dict[str, Any]:
        return dict(self.estimator.fit_info)

    @property
    def predicts_ratings(self) -> bool:
        return bool(self.estimator.predicts_ratings)

    @property
    def user_ids(self) -> np.ndarray:
        """Raw ids of the users the model learned from (with at least one training rating)."""
        est = self._fitted()
        return est.user_ids[est.user_counts > 0]

    @property
    def item_ids(self) -> np.ndarray:
        """Raw ids of the model's catalogue."""
        return self._fitted().item_ids

    def __repr__(self) -> str:
        state = f"fitted on {self.trained_on.get('dataset', 'data')}" if self.fitted else "not fitted"
        shown = ", ".join(f"{k}={v!r}" for k, v in list(self.params.items())[:6])
        more = ", ..." if len(self.params) > 6 else ""
        return f"Recommender({self.name!r}, {shown}{more}; {state})"

    def _fitted(self):
        if not self.estimator.fitted:
            raise UsageError(f"model {self.name!r} is not fitted yet: call .fit(data) or rs.train(...)")
        return self.estimator

    # ----- training -------------------------------------------------------------------
    def fit(self, data: Any, *, seed: int = 42, progress=None, **frame_options: Any) -> Recommender:
        """Fit on a Dataset, a processed dataset's name, a pandas/polars frame or (user, item, rating) tuples."""
        from recsys_cli.api.data import as_dataset
        from recsys_cli.runtime import compute_threads

        seed = check_seed(seed)
        ds = as_dataset(data, **frame_options)
        inter = ds.interactions
        t0 = time.perf_counter()
        with compute_threads():
            self.estimator.fit(inter, seed=seed, progress=progress)
        seconds = time.perf_counter() - t0
        self.titles = ds.titles
        self._train = inter
        self.trained_on = {"dataset": ds.name, "fingerprint": ds.fingerprint, "split": inter.split, "seed": seed,
                           "train_seconds": seconds, "n_train_ratings": len(inter)}
        return self

    # ----- answers as DataFrames --------------------------------------------------------
    def top_n(self, users: Any = None, n: int = 10, *, exclude_seen: bool = True, items: Any = None) -> RecList:
        """Top-n lists as arrays (`RecList`); `recommend` gives the same as a DataFrame."""
        est = self._fitted()
        n = check_n(n)
        raw = self.user_ids if users is None else _ids(users, "user")
        if raw.size == 0:
            raise UsageError("give at least one user id")
        candidates = None if items is None else _ids(items, "item")
        return est.recommend(raw, n, exclude_seen=exclude_seen, candidates=candidates)

    def recommend(self, users: Any = None, n: int = 10, *, exclude_seen: bool = True, items: Any = None) -> pl.DataFrame:
        """Top-n items per user: user_id, rank, item_id, title, score, fallback (null = the model itself).

        users: one raw id, a list of them, or None for every user the model knows. Unknown users
        get the most popular items, labelled fallback='popularity'. items: restrict to these.
        """
        return reclist_frame(self.top_n(users, n, exclude_seen=exclude_seen, items=items), self.titles)

    def fold_in_list(self, ratings: Any, n: int = 10, *, exclude_seen: bool = True, items: Any = None) -> RecList:
        """Top-n for a new user from their ratings, as arrays (`fold_in` gives a DataFrame)."""
        est = self._fitted()
        n = check_n(n)
        raw_items, values = rating_pairs(ratings)
        lo, hi = est.rating_scale
        if ((values < lo) | (values > hi)).any():
            bad = values[(values < lo) | (values > hi)][0]
            raise UsageError(f"rating {bad:g} is outside this run's rating scale {lo:g}-{hi:g}")
        candidates = None if items is None else _ids(items, "item")
        return est.recommend_new_user(raw_items, values, n, exclude_seen=exclude_seen, candidates=candidates)

    def fold_in(self, ratings: Any, n: int = 10, *, exclude_seen: bool = True, items: Any = None) -> pl.DataFrame:
        """Recommendations for a new user given their ratings ({item: rating} or pairs); user_id is null."""
        recs = self.fold_in_list(ratings, n, exclude_seen=exclude_seen, items=items)
        return reclist_frame(recs, self.titles, new_user=True)

    def predict(self, users: Any, items: Any) -> pl.DataFrame:
        """Predicted ratings for (user, item) pairs: user_id, item_id, prediction, fallback.

        users and items are equal-length lists (or scalars); a pair the model cannot score
        directly falls back to biases, labelled (user_bias, item_bias, global_mean, genre).
        """
        import polars as pl

        est = self._fitted()
        u, i = _ids(users, "user"), _ids(items, "item")
        if u.size == 1 and i.size > 1:
            u = np.repeat(u, i.size)
        if u.shape != i.shape:
            raise UsageError(f"users and items differ in length ({u.size} vs {i.size})")
        pred, labels = est.predict(u, i)
        return pl.DataFrame({"user_id": u, "item_id": i, "prediction": pred.astype(np.float64), "fallback": labels},
                            schema={"user_id": pl.Int64, "item_id": pl.Int64, "prediction": pl.Float64,
                                    "fallback": pl.String})

    def similar_items(self, items: Any, n: int = 10) -> pl.DataFrame:
        """Nearest items by the model's own similarity: item_id, rank, similar_item_id, title, similarity."""
        import polars as pl

        est = self._fitted()
        n = check_n(n)
        rows: dict[str, list] = {c: [] for c in SIMILAR_COLUMNS}
        for item in _ids(items, "item").tolist():
            sims_items, sims = est.similar_items(item, n)
            for rank, (j, s) in enumerate(zip(sims_items.tolist(), sims.tolist(), strict=True), start=1):
                rows["item_id"].append(item)
                rows["rank"].append(rank)
                rows["similar_item_id"].append(int(j))
                rows["title"].append(self.titles.get(int(j)))
                rows["similarity"].append(float(s))
        return pl.DataFrame(rows, schema={"item_id": pl.Int64, "rank": pl.Int32, "similar_item_id": pl.Int64,
                                          "title": pl.String, "similarity": pl.Float64})

    # ----- persistence -------------------------------------------------------------------
    def save(self, name: str | None = None, *, force: bool = False, artifacts_dir=None) -> Run:
        """Save as a run (folder of manifest + arrays + vocabularies, written atomically); see `save`."""
        from recsys_cli.api.runs import save

        return save(self, name, force=force, artifacts_dir=artifacts_dir)


def reclist_frame(recs: RecList, titles: dict[int, str], *, new_user: bool = False) -> pl.DataFrame:
    """A RecList as the DataFrame of `recommend` (same columns and values as the CLI's JSON rows)."""
    import polars as pl

    items = recs.items
    valid = items >= 0
    r, k = np.nonzero(valid)
    item_col = items[r, k]
    fallback = np.asarray(recs.fallback, dtype=object)[r] if len(r) else np.zeros(0, dtype=object)
    frame = pl.DataFrame(
        {
            "user_id": [None] * len(r) if new_user else recs.users[r],
            "rank": (k + 1).astype(np.int32),
            "item_id": item_col.astype(np.int64),
            "title": [titles.get(int(i)) for i in item_col.tolist()],
            "score": recs.scores[r, k].astype(np.float64),
            "fallback": fallback.tolist(),
        },
        schema={"user_id": pl.Int64, "rank": pl.Int32, "item_id": pl.Int64, "title": pl.String,
                "score": pl.Float64, "fallback": pl.String},
    )
    return frame


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise UsageError(f"seed must be an integer, got {seed!r}")
    if not 0 <= int(seed) < 2**63:
        raise UsageError(f"seed must be between 0 and 2**63 - 1, got {seed}")
    return int(seed)


def create_model(name: str, *, preset: str | None = None, **params: Any) -> Recommender:
    """An unfitted model: `create_model("svd", factors=50)`, `create_model("svd", preset="surprise")`.

    Names as `recsys models` lists them (bias, svd, als, ials, item-knn, ..., surprise:<Algorithm>);
    a typo in a parameter is an error naming the valid ones.
    """
    from recsys_cli.models.registry import create_model as make

    return Recommender(make(name, params, preset), preset=preset)


def train(model: str | Recommender, data: Any, *, seed: int = 42, preset: str | None = None, progress=None,
          **params: Any) -> Recommender:
    """Create and fit in one call: `model = rs.train("svd", train_data, seed=42, factors=50)`."""
    if isinstance(model, Recommender):
        if params or preset:
            raise UsageError("pass parameters to create_model, or a model name to train, not both")
        rec = model
    else:
        rec = create_model(model, preset=preset, **params)
    return rec.fit(data, seed=seed, progress=progress)
