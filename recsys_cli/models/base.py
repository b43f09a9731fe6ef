"""The Recommender base: raw ids at the edges, indices inside, ranking written once.

A model subclass implements `_fit`, `_score_users` (dense scores for a batch of user
indices) and, if it predicts ratings, `_predict_known` (pairs of known indices). The base
does everything else: id mapping, the training vocabularies, seen-item exclusion,
candidate sets, batched deterministic top-k, cold-start fallbacks that say what they
did, and the common part of the saved state.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from recsys_cli.data.dataset import Interactions, lookup
from recsys_cli.errors import ArtifactError, UsageError
from recsys_cli.models.config import ModelConfig
from recsys_cli.progress import NullProgress

# Fallback labels, as they appear in JSON output.
FB_ITEM_BIAS = "item_bias"  # user unknown: global mean + item bias
FB_USER_BIAS = "user_bias"  # item unknown: global mean + user bias
FB_GLOBAL = "global_mean"  # both unknown
FB_POPULARITY = "popularity"  # unknown user in recommend: most-rated items
FB_GENRE = "genre"  # item with no ratings scored from its genres (hybrid)
FB_FOLD_IN = "fold_in"  # a new user's ratings folded in


@dataclass
class RecList:
    """Top-n per user, raw ids. Rows with fewer than n items are padded with -1 / NaN."""

    users: np.ndarray  # raw ids (n_users,)
    items: np.ndarray  # raw ids (n_users, n), -1 padding
    scores: np.ndarray  # float32 (n_users, n), NaN padding
    fallback: list[str | None]

    def rows(self, titles: dict[int, str] | None = None):
        """Yield one dict per (user, rank) in the CLI's JSON shape: user_id, rank, item_id[, title], score, fallback."""
        # Python lists first: indexing NumPy arrays element by element costs ~3x more (10,000-row batches).
        items, scores = self.items.tolist(), self.scores.tolist()
        for r, user in enumerate(self.users.tolist()):
            fallback = self.fallback[r]
            for k, item in enumerate(items[r]):
                if item < 0:
                    break
                row = {"user_id": user, "rank": k + 1, "item_id": item}
                if titles is not None:
                    row["title"] = titles.get(item)
                row["score"] = scores[r][k]  # full precision in machine formats; tables round
                row["fallback"] = fallback  # always present (null: the model itself), as in CSV
                yield row


PARALLEL_ROWS = 32  # batches with at least this many rows use the Numba kernels (one user: NumPy, no JIT load)


def _writable(scores: np.ndarray) -> np.ndarray:
    """The scores themselves when they are a fresh float32 array the caller may mask, else a copy.

    Arrays a Numba kernel returns do not own their data and are copied (Numba also returns
    views of its inputs that way): score kernels on hot paths fill an `out` made by NumPy.
    """
    f = scores.flags
    if scores.dtype == np.float32 and f.writeable and f.c_contiguous and f.owndata:
        return scores
    return np.array(scores, dtype=np.float32, order="C")


_TOPK_MODULE = "recsys_cli.models._kernels.topk"


def select_top(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`topk` for any batch (same result): the parallel Numba heap for many rows; for a few, the same heap on
    this thread once a larger batch has loaded the kernels (a server: 59,047 items in ~0.05 ms instead of
    NumPy's ~0.8 ms), else NumPy (a one-user `recsys recommend` never pays for loading Numba)."""
    if scores.shape[0] >= PARALLEL_ROWS:
        from recsys_cli.models._kernels.topk import topk_numba

        return topk_numba(scores, n)
    kernels = sys.modules.get(_TOPK_MODULE)
    if kernels is not None:
        return kernels.topk_numba(scores, n, parallel=False)
    return topk(scores, n)


def topk(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-n (indices, values), best first; ties go to the lower index; -inf and NaN excluded."""
    b, m = scores.shape
    n_eff = min(n, m)
    if n_eff <= 0:
        return np.full((b, n), -1, np.int32), np.full((b, n), np.nan, np.float32)
    if n_eff < m:
        part = np.argpartition(-scores, n_eff - 1, axis=1)[:, :n_eff]
        # argpartition may cut inside a tie at the boundary: take every item tied with the cut-off.
        cut = np.take_along_axis(scores, part, axis=1).min(axis=1, keepdims=True)
        out_idx = np.empty((b, n_eff), np.int64)
        for r in range(b):
            cand = np.flatnonzero(scores[r] >= cut[r, 0])
            order = np.lexsort((cand, -scores[r, cand]))[:n_eff]
            out_idx[r] = cand[order]
    else:
        out_idx = np.lexsort((np.broadcast_to(np.arange(m), scores.shape), -scores), axis=1)
    vals = np.take_along_axis(scores, out_idx, axis=1).astype(np.float32)
    idx = out_idx.astype(np.int32)
    bad = ~(vals > -np.inf)  # -inf (masked) and NaN; they sort last, so they only fill the tail
    idx[bad] = -1
    vals[bad] = np.nan
    if n_eff < n:
        idx = np.pad(idx, ((0, 0), (0, n - n_eff)), constant_values=-1)
        vals = np.pad(vals, ((0, 0), (0, n - n_eff)), constant_values=np.nan)
    return idx, vals


class _LapTimer:
    """Wraps a progress reporter and times the span before each `advance` (one iteration or epoch)."""

    def __init__(self, progress) -> None:
        self._progress = progress
        self._last: float | None = None
        self.seconds: list[float] = []

    def start(self, *args, **kwargs):
        self._last = time.perf_counter()
        return self._progress.start(*args, **kwargs)

    def advance(self, *args, **kwargs):
        now = time.perf_counter()
        if self._last is not None:
            self.seconds.append(now - self._last)
        result = self._progress.advance(*args, **kwargs)
        self._last = time.perf_counter()  # the reporter's own time is not the model's
        return result

    def __getattr__(self, name: str):
        return getattr(self._progress, name)


class Recommender:
    """Base class of every model; see the module docstring for what subclasses provide."""

    name: ClassVar[str] = ""
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    predicts_ratings: ClassVar[bool] = True  # False: predict/scores are ranking scores, not ratings (ials, bpr)
    supports_fold_in: ClassVar[bool] = False
    scores_cold_items: ClassVar[bool] = False  # True: items without ratings get meaningful scores
    # True: _fit runs epochs or iterations through models.iterative.run_steps (each timed; see there).
    iterative: ClassVar[bool] = False
    divergence_hint: ClassVar[str] = ""  # what to change when a fit diverges, e.g. "lower lr_all"
    blas_scores: ClassVar[bool] = False  # True: _score_users is thread-safe NumPy/BLAS work (no Numba, no caches)
    needs_ratings_to_explain: ClassVar[bool] = False  # True: `explain` needs the user's training ratings passed in

    def __init__(self, config: ModelConfig | None = None, **params: Any) -> None:
        self.config = config if config is not None else self.Config.from_dict(params)
        self.fitted = False
        self.fit_info: dict[str, Any] = {}

    @property
    def scores_are_ratings(self) -> bool:
        """Whether `recommend` ranks by the predicted rating; models with a separate ranking score override it."""
        return self.predicts_ratings

    # ----- training -------------------------------------------------------------------
    def fit(self, data: Interactions, *, seed: int = 42, progress=None) -> Recommender:
        if len(data) == 0:
            raise UsageError("cannot train on an empty set of ratings")
        self.check_fit_memory(data.n_users, data.n_items, len(data))
        laps = _LapTimer(progress or NullProgress())
        self._fit_common(data)
        self._fit(data, seed=seed, progress=laps)
        if self.iterative and laps.seconds:  # median wall seconds of one iteration/epoch (benchmarks compare it)
            self.fit_info["seconds_per_iteration"] = round(float(np.median(laps.seconds)), 6)
        if self.iterative:
            self._record_history(laps.seconds)
        self.fitted = True
        return self

    HISTORY_KEYS: ClassVar[tuple[str, ...]] = ("train_rmse", "train_auc", "train_loss")

    def _record_history(self, seconds: list[float]) -> None:
        """fit_info["history"]: one row per iteration/epoch, {iteration, <per-iteration figures>, seconds}.

        The learning curve of `recsys insights RUN`; built from the per-iteration lists the model
        recorded (train_rmse, train_auc, train_loss) and the timed laps.
        """
        series = {k: v for k, v in self.fit_info.items() if k in self.HISTORY_KEYS and isinstance(v, list)}
        n = max([len(v) for v in series.values()] + [len(seconds)])
        if not series or not n:
            return
        self.fit_info["history"] = [
            {"iteration": i + 1, **{k: round(float(v[i]), 6) for k, v in series.items() if i < len(v)},
             **({"seconds": round(float(seconds[i]), 4)} if i < len(seconds) else {})}
            for i in range(n)
        ]

    def _fit_common(self, data: Interactions) -> None:
        from recsys_cli.models._kernels.baseline import baseline_als

        self.user_ids = np.asarray(data.user_ids, np.int64)
        self.item_ids = np.asarray(data.item_ids, np.int64)
        self.rating_scale = (float(data.rating_scale[0]), float(data.rating_scale[1]))
        self.global_mean = np.float32(data.global_mean)
        csr = data.csr()
        self.seen_indptr = csr.indptr.astype(np.int64)
        self.seen_indices = csr.indices.astype(np.int32)
        self.user_counts = np.diff(self.seen_indptr).astype(np.int32)
        self.item_counts = np.bincount(self.seen_indices, minlength=data.n_items).astype(np.int32)
        # Regularised baselines serve every model's fallbacks (Surprise's BaselineOnly defaults).
        bu, bi = baseline_als(
            data.users, data.items, data.ratings, data.n_users, data.n_items, float(self.global_mean)
        )
        self.fb_user_bias = np.asarray(bu, np.float32)
        self.fb_item_bias = np.asarray(bi, np.float32)
        # Popularity fallback: most-rated first, ties by item index.
        self.fb_rank = np.lexsort((np.arange(data.n_items), -self.item_counts)).astype(np.int32)

    def _fit(self, data: Interactions, *, seed: int, progress) -> None:
        raise NotImplementedError

    def check_fit_memory(self, n_users: int, n_items: int, n_ratings: int) -> None:
        """UsageError (exit 2) stating the estimate when a fit would not fit in the memory available."""
        from recsys_cli.runtime import check_memory

        check_memory(self.estimate_bytes(n_users, n_items, n_ratings),
                     f"fitting {self.name} on {n_users:,} users x {n_items:,} items")

    def estimate_bytes(self, n_users: int, n_items: int, n_ratings: int) -> int:
        """Bytes the arrays of a fit allocate, roughly, checked before allocating any.

        This default covers what every model shares (rating copies, per-user and per-item vectors)
        and, for configs with `factors`, float32 factor matrices for users and items kept three
        times over (parameters, a working copy, the saved state). Models with other large arrays
        (dense item x item matrices, say) override it.
        """
        c = self.config
        total = 48 * n_ratings + 64 * (n_users + n_items)
        factors = getattr(c, "factors", None)
        if isinstance(factors, int):
            total += 3 * 4 * factors * (n_users + n_items)
        k = getattr(c, "k", None) or getattr(c, "k_max", None)
        if isinstance(k, int):
            total += 12 * min(k, max(n_users, n_items)) * max(n_users, n_items)
        return int(total)

    # ----- scoring hooks for subclasses ----------------------------------------------------
    def _score_users(self, users: np.ndarray) -> np.ndarray:
        """Dense float32 scores (len(users), n_items) for known user indices.

        An array the model owns (e.g. a stored matrix) must be returned read-only or as a view:
        a fresh writeable array is masked in place by the caller, without a copy.
        """
        raise NotImplementedError

    def _predict_known(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predictions for pairs where both user and item have training data."""
        scores = self._score_users(users)
        return scores[np.arange(len(users)), items]

    def explain(self, user: int, items: np.ndarray, *, rated: np.ndarray | None = None,
                ratings: np.ndarray | None = None) -> list:
        """Why `user` (an index, or -1 for a new user folded in from `rated`/`ratings`) got each of `items`.

        Returns one `models.explain.Explanation` per item whose parts add up to the score
        `recommend` gives (for the new user: the fold-in score). rated/ratings are the user's
        item indices and rating values; for a known user, models flagged
        `needs_ratings_to_explain` need their training ratings there, the others keep their own.
        The base answer is kind "none": this model has no explanation.
        """
        from recsys_cli.models.explain import Explanation

        return [Explanation("none") for _ in np.asarray(items).reshape(-1)]

    def _item_vectors(self) -> np.ndarray | None:
        """Item embedding (n_items, d) for `similar` by cosine, or None."""
        return None

    # ----- public API on raw ids -------------------------------------------------------
    def _check_fitted(self) -> None:
        if not self.fitted:
            raise UsageError(f"model {self.name!r} is not trained yet")

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def known_users(self, raw_users) -> np.ndarray:
        """Indices of raw ids; -1 where the user is unknown or has no training ratings."""
        u = lookup(self.user_ids, raw_users)
        ok = u >= 0
        u[ok & (self.user_counts[np.maximum(u, 0)] == 0)] = -1
        return u

    def known_items(self, raw_items) -> np.ndarray:
        i = lookup(self.item_ids, raw_items)
        ok = i >= 0
        i[ok & (self.item_counts[np.maximum(i, 0)] == 0)] = -1
        return i

    @property
    def uses_time(self) -> bool:
        """True when predictions depend on when the rating is made (`predict`'s timestamps)."""
        return False

    def _predict_known_at(self, users: np.ndarray, items: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
        """`_predict_known` for ratings made at `timestamps`; a model with a time part overrides it."""
        return self._predict_known(users, items)

    def _cold_item_scores(self, items: np.ndarray, users: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Hook for models that can score items without ratings (hybrid): (values, handled mask)."""
        return None

    def predict(self, raw_users, raw_items, timestamps=None) -> tuple[np.ndarray, list[str | None]]:
        """Predicted ratings (clipped to the scale) and a fallback label per pair (None = model).

        timestamps (seconds, one per pair): when each rating is made, for models with a time part (`fm` with
        its time group); others, and pairs without one, are predicted as of now."""
        self._check_fitted()
        raw_users = np.asarray(raw_users, np.int64).reshape(-1)
        raw_items = np.asarray(raw_items, np.int64).reshape(-1)
        if raw_users.shape != raw_items.shape:
            raise UsageError("users and items must have the same length")
        if timestamps is not None:
            timestamps = np.asarray(timestamps, np.int64).reshape(-1)
            if timestamps.shape != raw_users.shape:
                raise UsageError("timestamps must have one value per (user, item) pair")
        u = self.known_users(raw_users)
        i = self.known_items(raw_items)
        pred = np.empty(len(u), np.float32)
        labels: list[str | None] = [None] * len(u)
        both = (u >= 0) & (i >= 0)
        if both.any():
            pred[both] = (self._predict_known(u[both], i[both]) if timestamps is None
                          else self._predict_known_at(u[both], i[both], timestamps[both]))
        mu = self.global_mean
        cold = self._cold_item_scores(lookup(self.item_ids, raw_items), u) if (~both).any() else None
        for k in np.flatnonzero(~both):
            if cold is not None and cold[1][k]:
                pred[k] = cold[0][k]
                labels[k] = FB_GENRE
            elif u[k] >= 0:
                pred[k] = mu + self.fb_user_bias[u[k]]
                labels[k] = FB_USER_BIAS
            elif i[k] >= 0:
                pred[k] = mu + self.fb_item_bias[i[k]]
                labels[k] = FB_ITEM_BIAS
            else:
                pred[k] = mu
                labels[k] = FB_GLOBAL
        if self.predicts_ratings:
            lo, hi = self.rating_scale
            np.clip(pred, lo, hi, out=pred)
        return pred, labels

    def recommend(
        self,
        raw_users,
        n: int = 10,
        *,
        exclude_seen: bool = True,
        candidates=None,
        batch_size: int | None = None,
    ) -> RecList:
        """Top-n items per user. Unknown users get the popularity ranking, labelled."""
        self._check_fitted()
        raw_users = np.asarray(raw_users, np.int64).reshape(-1)
        n = max(1, min(int(n), self.n_items))  # no list is longer than the catalogue: never allocate past it
        if len(raw_users) == 1 and candidates is None:
            one = self._recommend_one(raw_users, n, exclude_seen)
            if one is not None:
                return one
        u = self.known_users(raw_users)
        cand_mask = self._candidate_mask(candidates)
        from recsys_cli.runtime import check_memory

        check_memory(16 * len(u) * n, f"top-{n} lists for {len(u):,} users")
        items = np.full((len(u), n), -1, np.int32)
        scores = np.full((len(u), n), np.nan, np.float32)
        labels: list[str | None] = [None] * len(u)
        known = np.flatnonzero(u >= 0)
        for lo, hi, s in self._scored_batches(u[known], batch_size or self._batch_rows()):
            rows = known[lo:hi]
            self._mask_scores(s, u[rows], exclude_seen, cand_mask)
            idx, val = select_top(s, n)
            items[rows], scores[rows] = idx, val
            del s  # before the next block is scored: one block of scores alive at a time, not two
        unknown = np.flatnonzero(u < 0)
        if len(unknown):
            pop = self._popularity_scores()
            s = np.broadcast_to(pop, (1, self.n_items)).copy()
            if cand_mask is not None:
                s[:, ~cand_mask] = -np.inf
            idx, val = topk(s, n)
            items[unknown], scores[unknown] = idx[0], val[0]
            for r in unknown:
                labels[r] = FB_POPULARITY
        raw_items = np.where(items >= 0, self.item_ids[np.maximum(items, 0)], -1)
        return RecList(users=raw_users, items=raw_items, scores=scores, fallback=labels)

    def _recommend_one(self, raw_users: np.ndarray, n: int, exclude_seen: bool) -> RecList | None:
        """`recommend` for one known user and no candidate filter, the same list in fewer NumPy steps (a
        server's single-user request: ~40 us less of ~250); None when the user is not known (the general path)."""
        raw = int(raw_users[0])
        vocab = self.user_ids
        pos = int(vocab.searchsorted(raw))
        if pos >= len(vocab) or int(vocab[pos]) != raw or self.user_counts[pos] == 0:
            return None
        rows = np.array([pos], np.int32)
        s = _writable(self._score_users(rows))
        self._mask_scores(s, rows, exclude_seen, None)
        idx, val = select_top(s, n)
        raw_items = np.where(idx >= 0, self.item_ids[np.maximum(idx, 0)], -1)
        return RecList(users=raw_users, items=raw_items, scores=val.astype(np.float32, copy=False), fallback=[None])

    def _batch_rows(self) -> int:
        """Users scored at once: about 64 MB of float32 scores, at most 4096 rows."""
        return max(1, min(4096, (64 << 20) // (4 * max(1, self.n_items))))

    def _popularity_scores(self) -> np.ndarray:
        s = np.empty(self.n_items, np.float32)
        s[self.fb_rank] = np.arange(self.n_items, 0, -1, dtype=np.float32) / self.n_items
        return s

    def _candidate_mask(self, candidates) -> np.ndarray | None:
        if candidates is None:
            return None
        idx = lookup(self.item_ids, candidates)
        mask = np.zeros(self.n_items, bool)
        mask[idx[idx >= 0]] = True
        return mask

    def _cold_items(self) -> np.ndarray:
        """Indices of the items without training ratings, kept while `item_counts` is the same array
        (a one-user request at 59,047 items: ~2 us instead of ~40 us comparing every count)."""
        counts = self.item_counts
        kept = self.__dict__.get("_cold_kept")
        if kept is None or kept[0] is not counts:
            kept = (counts, np.flatnonzero(np.asarray(counts) == 0))
            self.__dict__["_cold_kept"] = kept
        return kept[1]

    def _mask_scores(self, s: np.ndarray, users: np.ndarray, exclude_seen: bool, cand_mask) -> None:
        if not self.scores_cold_items:
            cold = self._cold_items()
            if len(cold):  # most runs have none: skip the fancy-index call (a few us of a one-user request)
                s[:, cold] = -np.inf
        if exclude_seen and len(users) >= PARALLEL_ROWS:
            from recsys_cli.models._kernels.topk import mask_seen

            mask_seen(s, np.asarray(users, np.int64), self.seen_indptr, self.seen_indices)
        elif exclude_seen:
            for r, user in enumerate(users):
                s[r, self.seen_indices[self.seen_indptr[user] : self.seen_indptr[user + 1]]] = -np.inf
        if cand_mask is not None:
            s[:, ~cand_mask] = -np.inf

    def recommend_indices(self, users: np.ndarray, n: int, *, exclude_seen: bool = True) -> np.ndarray:
        """Top-n item *indices* for known user indices (evaluation fast path)."""
        out = np.full((len(users), n), -1, np.int32)
        for lo, hi, s in self._scored_batches(users, self._batch_rows()):
            self._mask_scores(s, users[lo:hi], exclude_seen, None)
            out[lo:hi] = select_top(s, n)[0]
            del s
        return out

    def _scored_batches(self, users: np.ndarray, batch_size: int):
        """Yield (lo, hi, writable float32 scores of users[lo:hi]) batch by batch.

        Models whose scores are one BLAS product (`blas_scores`) score a large batch as one part
        per thread at once, each product on single-threaded BLAS: the products then use every
        core even where BLAS is capped at one thread (around Numba kernels), and never
        oversubscribe where it is not.

        Memory: the generator keeps no block once it has handed it out, so a caller that drops its
        block before asking for the next (`del`) holds one batch of scores at a time, not two.
        """
        from recsys_cli import settings

        # Small batches never split (the test below fails for any threads >= 2): skip the thread count,
        # os.cpu_count() costs ~15 us, a tenth of a single-user recommend.
        threads = settings.threads() if self.blas_scores and len(users) >= 2 * PARALLEL_ROWS else 1
        if threads < 2 or len(users) < PARALLEL_ROWS * threads:
            for start in range(0, len(users), batch_size):
                stop = min(start + batch_size, len(users))
                yield start, stop, _writable(self._score_users(users[start:stop]))
            return
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import threadpool_limits

        # One executor and one BLAS limit for the whole call: threadpoolctl inspects the loaded
        # libraries on every entry, which would cost milliseconds per batch.
        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
            for start in range(0, len(users), batch_size):
                stop = min(start + batch_size, len(users))
                cuts = np.linspace(start, stop, threads + 1).astype(np.int64)
                slices = [users[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
                parts = list(pool.map(lambda rows: _writable(self._score_users(rows)), slices))
                for k in range(len(parts)):
                    part, parts[k] = parts[k], None
                    yield int(cuts[k]), int(cuts[k + 1]), part
                    del part
                del parts

    def similar_items(self, raw_item: int, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Nearest items (raw ids, similarity) by the model's item similarity."""
        self._check_fitted()
        i = lookup(self.item_ids, [raw_item])[0]
        if i < 0:
            from recsys_cli.errors import UnknownIdError

            raise UnknownIdError(f"item {raw_item} is not in this run's catalogue")
        sims = self._item_similarities(int(i))
        if sims is None:
            raise UsageError(f"model {self.name!r} has no item similarity; try an item-knn or factor model")
        sims = sims.astype(np.float32, copy=True)
        sims[i] = -np.inf
        sims[self.item_counts == 0] = -np.inf
        idx, val = topk(sims[None, :], n)
        keep = idx[0] >= 0
        return self.item_ids[idx[0][keep]], val[0][keep]

    def _item_similarities(self, i: int) -> np.ndarray | None:
        vec = self._item_vectors()
        if vec is None:
            return None
        v = vec.astype(np.float32)
        norms = np.linalg.norm(v, axis=1)
        norms[norms == 0] = 1.0
        return (v @ v[i]) / (norms * norms[i])

    def fold_in(self, raw_items, ratings) -> np.ndarray:
        """Scores over every item for a new user given their ratings (models that support it)."""
        raise UsageError(f"model {self.name!r} cannot fold in a new user's ratings")

    def recommend_new_user(
        self, raw_items, ratings, n: int = 10, *, exclude_seen: bool = True, candidates=None
    ) -> RecList:
        self._check_fitted()
        idx = lookup(self.item_ids, raw_items)
        if (idx < 0).all():
            raise UsageError("none of the rated items is in this run's catalogue")
        s = self.fold_in(raw_items, ratings).astype(np.float32, copy=True)[None, :]
        if not self.scores_cold_items:
            s[0, self.item_counts == 0] = -np.inf
        if exclude_seen:
            s[0, idx[idx >= 0]] = -np.inf
        cand = self._candidate_mask(candidates)
        if cand is not None:
            s[:, ~cand] = -np.inf
        top, val = topk(s, n)
        raw = np.where(top >= 0, self.item_ids[np.maximum(top, 0)], -1)
        return RecList(users=np.array([-1]), items=raw, scores=val, fallback=[FB_FOLD_IN])

    # ----- persistence -----------------------------------------------------------------
    _COMMON = (
        "user_ids",
        "item_ids",
        "seen_indptr",
        "seen_indices",
        "user_counts",
        "item_counts",
        "fb_user_bias",
        "fb_item_bias",
        "fb_rank",
    )

    def _state(self) -> dict[str, Any]:
        """Model-specific arrays and scalars to save (subclasses extend)."""
        return {}

    def _load_state(self, state: dict[str, Any]) -> None:
        """Restore what `_state` returned."""

    def state(self) -> dict[str, Any]:
        self._check_fitted()
        out: dict[str, Any] = {f"core.{k}": getattr(self, k) for k in self._COMMON}
        out["core.global_mean"] = np.float32(self.global_mean)
        out["core.rating_scale"] = np.asarray(self.rating_scale, np.float64)
        for k, v in self._state().items():
            out[f"model.{k}"] = v
        return out

    @classmethod
    def from_state(cls, config: ModelConfig, state: dict[str, Any]) -> Recommender:
        model = cls(config)
        try:
            for k in cls._COMMON:
                setattr(model, k, np.asarray(state[f"core.{k}"]))
            model.global_mean = np.float32(state["core.global_mean"])
            lo, hi = np.asarray(state["core.rating_scale"]).tolist()
            model.rating_scale = (float(lo), float(hi))
            model._load_state({k[6:]: v for k, v in state.items() if k.startswith("model.")})
        except KeyError as exc:
            raise ArtifactError(f"saved state of {cls.name!r} is missing {exc}") from None
        model.fitted = True
        return model
