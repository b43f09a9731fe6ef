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

from recsys_cli.api.inputs import parse_int
from recsys_cli.errors import RecsysError, UsageError

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
    flat = values if not np.isscalar(values) else [values]
    if isinstance(flat, (list, tuple)):
        if any(isinstance(v, (bool, np.bool_)) for v in flat):
            raise UsageError(f"{what} ids must be integers, got booleans {values!r}; to pick rows by a condition, "
                             f"pass the ids it selects"[:300])
        big = [v for v in flat if isinstance(v, int) and not isinstance(v, bool) and not -2**63 <= v < 2**63]
        if big:
            raise UsageError(f"{what} id {big[0]} is out of range (ids are 64-bit integers)")
        if all(type(v) is int for v in flat):  # the common case (a server's request): no dtype checks needed
            return np.array(flat, dtype=np.int64)
    arr = np.asarray(flat)
    if arr.dtype == object or arr.dtype.kind in "US":
        # strings are read as id files and URLs are: ASCII digits with an optional minus ('1_0', '+1' are errors)
        try:
            arr = np.asarray([v if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
                              else parse_int(str(v)) for v in arr.reshape(-1)], dtype=object)
            arr = arr.astype(np.int64) if arr.size else np.zeros(0, np.int64)
        except (ValueError, OverflowError):
            raise UsageError(f"{what} ids must be integers, got {values!r}"[:300]) from None
    if arr.ndim > 1:  # a table of ids (a 2-D array, a frame's values) would be read row by row, silently
        raise UsageError(f"{what} ids must be one list of ids, got an array of shape {arr.shape}; pick its id column")
    if arr.dtype.kind == "b":  # a boolean mask (df.user_id == 3) is not a list of ids
        raise UsageError(f"{what} ids must be integers, got booleans {values!r}; to pick rows by a condition, "
                         f"pass the ids it selects"[:300])
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise UsageError(f"{what} ids must be integers, got {values!r}"[:300])
    elif arr.dtype.kind not in "iu":
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
    elif type(ratings).__module__.startswith("pandas") and hasattr(ratings, "index") and hasattr(ratings, "items") \
            and not hasattr(ratings, "columns"):  # a pandas Series item -> rating, as a dict
        pairs = list(ratings.items())
    elif hasattr(ratings, "columns"):  # a polars or pandas frame with item_id, rating
        cols = list(ratings.columns)
        if "item_id" not in cols or "rating" not in cols:
            raise UsageError(f"the ratings frame needs item_id and rating columns (columns: {', '.join(map(str, cols))})")
        pairs = list(zip(list(ratings["item_id"]), list(ratings["rating"]), strict=True))
    elif isinstance(ratings, Iterable) and not isinstance(ratings, (str, bytes)):
        try:
            pairs = [tuple(p) for p in ratings]
        except TypeError:  # [50, 172]: items without their ratings
            pairs = [()]
        if any(len(p) != 2 for p in pairs):
            raise UsageError("ratings must be a {item: rating} dict or (item, rating) pairs, e.g. {50: 5, 172: 4}")
    else:
        raise UsageError("ratings must be a {item: rating} dict, (item, rating) pairs or a frame of item_id, rating")
    if not pairs:
        raise UsageError("give at least one rating to fold in")
    items = _ids([p[0] for p in pairs], "item")
    if any(isinstance(p[1], (bool, np.bool_)) for p in pairs):  # float(True) is 1.0: a rating nobody gave
        raise UsageError("ratings must be numbers, not booleans")
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
                           "train_seconds": seconds, "n_train_ratings": len(inter),
                           "split_fingerprint": inter.split_fingerprint}
        return self

    # ----- answers as DataFrames --------------------------------------------------------
    def top_n(self, users: Any = None, n: int = 10, *, exclude_seen: bool = True, items: Any = None,
              batch_size: int | None = None) -> RecList:
        """Top-n lists as arrays (`RecList`); `recommend` gives the same as a DataFrame.

        batch_size: users scored at once (default: about 64 MB of scores); a server running requests
        side by side asks for less, the lists are the same."""
        est = self._fitted()
        n = check_n(n)
        raw = self.user_ids if users is None else _ids(users, "user")
        if raw.size == 0:
            raise UsageError("give at least one user id")
        candidates = None if items is None else _ids(items, "item")
        return est.recommend(raw, n, exclude_seen=exclude_seen, candidates=candidates, batch_size=batch_size)

    def recommend(self, users: Any = None, n: int = 10, *, exclude_seen: bool = True, items: Any = None,
                  explain: bool = False, top_reasons: int = 3, data_dir=None) -> pl.DataFrame:
        """Top-n items per user: user_id, rank, item_id, title, score, fallback (null = the model itself).

        users: one raw id, a list of them, or None for every user the model knows. Unknown users
        get the most popular items, labelled fallback='popularity'. items: restrict to these.
        explain=True adds `reasons`: per item a list of {kind, item_id, title, contribution} whose
        contributions add up to the score (see `reasons`).
        """
        recs = self.top_n(users, n, exclude_seen=exclude_seen, items=items)
        why = self.reasons(recs, top=top_reasons, data_dir=data_dir) if explain else None
        return reclist_frame(recs, self.titles, reasons=why)

    def reasons(self, recs: RecList, *, new_user_ratings: Any = None, top: int = 3,
                data_dir=None) -> list[list[dict[str, Any]]]:
        """Why each item of `recs` was recommended: one list of parts per (user, rank), in `rows()` order.

        Each part is {kind, item_id, title, contribution}; the parts of an item add up to its score
        (float rounding aside). kind: "rated" (one of the user's rated items; item_id, title),
        "other_rated" (the rest of them, summed), "genre" (a cold item's genre affinity, title = the
        genre), "other_genres", "baseline" (global mean and biases), "residual" (what the stored user
        vector differs from the solve the split reads it as), "popular" (popular fallback). An empty
        list: the model has no explanation (bpr, user-knn, blend, rank-blend, fm, bpmf, surprise:*). A known user's
        training ratings come from the processed dataset the run was trained on (factor models);
        `new_user_ratings` are the ratings a fold-in list was made from.
        """
        from threadpoolctl import threadpool_limits

        est = self._fitted()
        top = check_n(top, "top")
        # Many tiny (factors x factors) solves: single-threaded BLAS, or waking its threads costs more than the work.
        with threadpool_limits(limits=1, user_api="blas"):
            return self._reasons(est, recs, new_user_ratings, top, data_dir)

    def _reasons(self, est, recs: RecList, new_user_ratings: Any, top: int, data_dir) -> list[list[dict[str, Any]]]:
        from recsys_cli.data.dataset import lookup
        from recsys_cli.models.base import FB_FOLD_IN, FB_POPULARITY
        from recsys_cli.models.explain import popular

        out: list[list[dict[str, Any]]] = []
        for r, user in enumerate(recs.users.tolist()):
            valid = recs.items[r] >= 0
            raw, scores = recs.items[r][valid], recs.scores[r][valid]
            fb = recs.fallback[r]
            if fb == FB_POPULARITY:
                exps = popular(scores)
            elif fb == FB_FOLD_IN:
                if new_user_ratings is None:
                    raise UsageError("give the new user's ratings to explain a fold-in list")
                rated_raw, values = rating_pairs(new_user_ratings)
                idx = lookup(est.item_ids, rated_raw)
                ok = idx >= 0
                exps = est.explain(-1, lookup(est.item_ids, raw), rated=idx[ok], ratings=values[ok])
            else:
                u = int(est.known_users([user])[0])
                rated = values = None
                if est.needs_ratings_to_explain:
                    rated, values = self._training_ratings_of(u, data_dir)
                exps = est.explain(u, lookup(est.item_ids, raw), rated=rated, ratings=values)
            out.extend(self._reason_parts(e, top) for e in exps)
        return out

    def _reason_parts(self, e, top: int) -> list[dict[str, Any]]:
        """An Explanation as the JSON parts of `reasons`: the top contributors, the rest summed, base, residual."""
        if e.kind == "none":
            return []
        if e.kind == "popular":
            return [_part("popular", None, "popular fallback", e.total)]
        parts = []
        if e.kind in ("items", "genres"):
            genre = e.kind == "genres"
            names = self._genre_names() if genre else ()
            ids = self._fitted().item_ids
            shown = e.keys[:top].tolist()
            for key, c in zip(shown, e.contributions[:top].tolist(), strict=True):
                if genre:
                    parts.append(_part("genre", None, names[key] if key < len(names) else f"genre {key}", c))
                else:
                    item = int(ids[key])
                    parts.append(_part("rated", item, self.titles.get(item), c))
            rest = len(e.keys) - len(shown)
            if rest:
                label = f"{rest} other {'genres' if genre else 'rated items'}"
                parts.append(_part("other_genres" if genre else "other_rated", None, label,
                                   float(e.contributions[top:].sum())))
        if e.base_label or e.base:  # a model without a baseline term (ials, item-knn sum) shows none
            parts.append(_part("baseline", None, e.base_label or "baseline", e.base))
        if e.residual:
            parts.append(_part("residual", None, "solver residual", e.residual))
        return parts

    def _training_data(self, data_dir=None):
        """The Interactions this model was fitted on: in memory, else the run's dataset and split, reloaded."""
        if self._train is not None:
            return self._train
        cached = getattr(self, "_explain_train", None)
        if cached is not None:
            return cached
        from recsys_cli.data.dataset import load_dataset as load_processed
        from recsys_cli.errors import DataError

        name = self.trained_on.get("dataset")
        try:
            processed = load_processed(name, data_dir)
        except DataError as exc:
            raise DataError(f"explaining {self.name} needs the user's training ratings from dataset {name!r}: "
                            f"{exc}") from None
        fingerprint = self.trained_on.get("fingerprint")
        if fingerprint and processed.fingerprint != fingerprint:
            raise DataError(f"dataset {name!r} changed since this run was trained (fingerprint differs); "
                            "retrain to explain it")
        self._explain_train = processed.interactions(self.trained_on.get("split"), "train")
        return self._explain_train

    def _training_ratings_of(self, u: int, data_dir=None) -> tuple[np.ndarray, np.ndarray]:
        """(item indices in the model's vocabulary, ratings) of known user index u, as the model saw them."""
        from recsys_cli.data.dataset import lookup
        from recsys_cli.errors import ArtifactError

        est = self._fitted()
        data = self._training_data(data_dir)
        rows = getattr(self, "_explain_rows", None)
        if rows is None or rows[0] is not data:  # ratings grouped by user once (argsort, no CSR build: no Numba)
            order = np.argsort(data.users, kind="stable")
            bounds = np.searchsorted(data.users[order], np.arange(data.n_users + 1))
            item_idx = lookup(est.item_ids, data.item_ids[data.items[order]]).astype(np.int64)
            rows = self._explain_rows = (data, bounds, item_idx, data.ratings[order].astype(np.float32))
        _, bounds, item_idx, ratings = rows
        du = int(lookup(data.user_ids, [est.user_ids[u]])[0])
        rated, values = np.zeros(0, np.int64), np.zeros(0, np.float32)
        if du >= 0:
            lo, hi = bounds[du], bounds[du + 1]
            rated, values = item_idx[lo:hi], ratings[lo:hi]
        seen = est.seen_indices[est.seen_indptr[u]:est.seen_indptr[u + 1]]
        if len(rated) != len(seen) or not np.array_equal(np.sort(rated), np.sort(seen)):
            raise ArtifactError(f"user {int(est.user_ids[u])}'s training ratings in the dataset differ from the "
                                "run's; retrain to explain it")
        return rated, values

    def _genre_names(self) -> tuple[str, ...]:
        try:
            return tuple(self._training_data().genre_names or ())
        except RecsysError:
            return ()

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

    def fold_in(self, ratings: Any, n: int = 10, *, exclude_seen: bool = True, items: Any = None,
                explain: bool = False, top_reasons: int = 3) -> pl.DataFrame:
        """Recommendations for a new user given their ratings ({item: rating} or pairs); user_id is null.

        explain=True adds `reasons` (see `reasons`): which of the given ratings drove each item.
        """
        recs = self.fold_in_list(ratings, n, exclude_seen=exclude_seen, items=items)
        why = self.reasons(recs, new_user_ratings=ratings, top=top_reasons) if explain else None
        return reclist_frame(recs, self.titles, new_user=True, reasons=why)

    def predict(self, users: Any, items: Any, timestamps: Any = None) -> pl.DataFrame:
        """Predicted ratings for (user, item) pairs: user_id, item_id, prediction, fallback.

        users and items are equal-length lists, or one of them a scalar (one user, many items or the
        other way round); a pair the model cannot score
        directly falls back to biases, labelled (user_bias, item_bias, global_mean, genre).
        timestamps (Unix seconds, one per pair or one for all): when the ratings are made, for a model
        with a time part (`fm` with its time group); without them, as of the latest training period.
        """
        import polars as pl

        u, i, pred, labels = self.predict_pairs(users, items, timestamps)
        return pl.DataFrame({"user_id": u, "item_id": i, "prediction": pred, "fallback": labels},
                            schema={"user_id": pl.Int64, "item_id": pl.Int64, "prediction": pl.Float64,
                                    "fallback": pl.String})

    def predict_pairs(self, users: Any, items: Any, timestamps: Any = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str | None]]:
        """`predict` as arrays, without a DataFrame: (user ids, item ids, float64 predictions, fallback labels)."""
        est = self._fitted()
        u, i = _ids(users, "user"), _ids(items, "item")
        if u.size == 1 and i.size > 1:
            u = np.repeat(u, i.size)
        elif i.size == 1 and u.size > 1:
            i = np.repeat(i, u.size)
        if u.shape != i.shape:
            raise UsageError(f"users and items differ in length ({u.size} vs {i.size})")
        if timestamps is not None:
            timestamps = _ids(timestamps, "timestamp")
            if timestamps.size == 1 and u.size > 1:
                timestamps = np.repeat(timestamps, u.size)
            if timestamps.shape != u.shape:
                raise UsageError(f"timestamps and pairs differ in length ({timestamps.size} vs {u.size})")
        pred, labels = est.predict(u, i, timestamps)
        return u, i, pred.astype(np.float64), labels

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


def _part(kind: str, item_id: int | None, title: str | None, contribution: float) -> dict[str, Any]:
    return {"kind": kind, "item_id": item_id, "title": title, "contribution": round(float(contribution), 6)}


def reasons_text(parts: list[dict[str, Any]], top: int = 3) -> str:
    """Short text of an item's reasons for tables: 'Star Wars +0.41; Fargo +0.20' or 'popular fallback'."""
    if not parts:
        return ""
    if parts[0]["kind"] == "popular":
        return "popular fallback"
    named = [p for p in parts if p["kind"] in ("rated", "genre")][:top]
    if not named:
        return f"baseline ({parts[0]['title']})" if parts[0]["kind"] == "baseline" else ""
    prefix = "genre " if named[0]["kind"] == "genre" else ""
    return prefix + "; ".join(f"{p['title'] or p['item_id']} {p['contribution']:+.3f}" for p in named)


def reclist_frame(recs: RecList, titles: dict[int, str], *, new_user: bool = False,
                  reasons: list[list[dict[str, Any]]] | None = None) -> pl.DataFrame:
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
    if reasons is not None:
        part = pl.Struct({"kind": pl.String, "item_id": pl.Int64, "title": pl.String, "contribution": pl.Float64})
        frame = frame.with_columns(pl.Series("reasons", reasons, dtype=pl.List(part)))
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
    """Create and fit in one call: `model = rs.train("svd", train_data, seed=42, factors=50)`.

    With a frame, `from_frame`'s options name its columns here too: `rs.train("svd", df, user="userId")`.
    """
    frame = {k: params.pop(k) for k in FRAME_OPTIONS if k in params}
    if isinstance(model, Recommender):
        if params or preset:
            raise UsageError("pass parameters to create_model, or a model name to train, not both")
        rec = model
    else:
        rec = create_model(model, preset=preset, **params)
    return rec.fit(data, seed=seed, progress=progress, **frame)


# from_frame's keyword options, which train() passes on to fit (no model has a parameter of these names)
FRAME_OPTIONS = ("user", "item", "rating", "timestamp", "items", "name", "rating_scale", "duplicates")
