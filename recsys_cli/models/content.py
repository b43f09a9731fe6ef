"""`content`: TF-IDF profiles over genres and tags, item-item cosine, predictions around the baseline.

Each item is a vector f_i = [genre block, tag_weight * tag block] with rows L2-normalised,
so the item-item similarity is the cosine sim(i, j) = f_i . f_j >= 0.

- Genre block: 0/1 genres times idf = ln(n_items / df) + 1, L2-normalised.
- Tag block (datasets with tags.parquet, `use_tags`): tags are normalised (lowercase,
  stripped, runs of whitespace collapsed); tf(i, t) is the number of *distinct users* who
  applied tag t to item i (one user re-tagging an item counts once), weighted
  (1 + ln tf) * (ln(n_items / df) + 1), df = items carrying the tag, n_items = catalogue.
  The vocabulary keeps tags applied to at least `min_tag_count` distinct items, then the
  `max_tags` with the highest df (ties by name). The block is L2-normalised, scaled by
  `tag_weight` and the joined row normalised again, so for an item with both blocks the
  tag block's norm is tag_weight / (1 + tag_weight^2)^0.5. Items without tags keep exactly
  the genre-only vector. Tags are item side information like genres, with one exception: a
  tag a user put on an item whose rating is held out (the test part of the split, a CV
  fold) is hidden, since it says which items that user rated (`Interactions.item_tags`;
  fit_info says how many). Tags of items a user never rated are kept.

A user's prediction is their baseline plus the similarity-weighted mean of their residuals:

    r_ui = b_ui + sum_j sim(i, j) (r_uj - b_uj) / (sum_j sim(i, j) + shrink)

Both sums are dot products with per-user profiles A_u = sum_j (r_uj - b_uj) f_j and
B_u = sum_j f_j. F is a sparse CSR (items x features); the profiles are computed on demand
for each batch of users from the stored training residuals (R_batch @ F), so neither an
item x item nor a users x features matrix is ever stored (single pairs go through the Numba
kernel `_kernels.content.pair_ratios`, loaded only there). Items with no ratings still have genres and tags, which makes this
model (and `hybrid-als`) a cold-start fallback for new movies. `fit_info` and the state (`n_tag_features`, `tag_names`) say whether tags were used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_cli.data.dataset import Interactions, lookup
from recsys_cli.errors import ArtifactError, UsageError
from recsys_cli.models._kernels.csr import row_entries
from recsys_cli.models.base import PARALLEL_ROWS, Recommender
from recsys_cli.models.config import ModelConfig, param


@dataclass(frozen=True)
class ContentConfig(ModelConfig):
    shrink: float = param(1.0, "pulls predictions towards the baseline when few similar items were rated", low=0.0)
    reg_u: float = param(15.0, "regularisation of the user biases of the baseline", low=0.0)
    reg_i: float = param(10.0, "regularisation of the item biases of the baseline", low=0.0)
    use_tags: bool = param(True, "add user tags as features when the dataset has them (genres only otherwise)")
    tag_weight: float = param(1.0, "weight of the tag block relative to the genre block (0 turns tags off)", low=0.0)
    min_tag_count: int = param(3, "a tag must be applied to at least this many distinct items", low=1)
    max_tags: int = param(1000, "keep at most this many tags, those on the most items", low=1)


def tfidf(genres: np.ndarray) -> np.ndarray:
    """Row-normalised TF-IDF of a 0/1 item x genre matrix (idf = ln(n / df) + 1)."""
    g = (np.asarray(genres, np.float32) > 0).astype(np.float32)
    df = g.sum(axis=0)
    idf = np.log(max(1, g.shape[0]) / np.maximum(df, 1.0)) + 1.0
    f = g * idf[None, :].astype(np.float32)
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    return (f / np.where(norms == 0, 1.0, norms)).astype(np.float32)


def tag_tfidf(items, users, tags, n_items: int, *, min_tag_count: int = 3, max_tags: int = 1000):
    """Sublinear TF-IDF of tag applications: (n_items x n_tags CSR float32, rows L2-normalised; tag names).

    `items` are item indices, `users` raw user ids, `tags` raw strings, one per application;
    tf counts distinct users per (item, normalised tag).
    """
    import polars as pl
    import scipy.sparse as sp

    apps = pl.DataFrame(
        {
            "item": np.asarray(items, np.int32),
            "user": np.asarray(users, np.int64),
            "tag": pl.Series(list(tags), dtype=pl.String),
        }
    )
    apps = apps.with_columns(
        pl.col("tag").str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()
    ).filter(pl.col("tag").is_not_null() & (pl.col("tag") != "") & (pl.col("item") >= 0) & (pl.col("item") < n_items))
    tf = apps.unique(["item", "user", "tag"]).group_by("item", "tag").agg(pl.len().alias("tf"))
    vocab = (
        tf.group_by("tag")
        .agg(pl.len().alias("df"))
        .filter(pl.col("df") >= min_tag_count)
        .sort(["df", "tag"], descending=[True, False])
        .head(max_tags)
        .with_row_index("col")
    )
    cells = tf.join(vocab, on="tag", how="inner")
    weight = (1.0 + cells["tf"].cast(pl.Float64).log()) * ((np.log(max(1, n_items)) - cells["df"].cast(pl.Float64).log()) + 1.0)
    mat = sp.csr_matrix(
        (weight.to_numpy(), (cells["item"].to_numpy(), cells["col"].to_numpy().astype(np.int64))),
        shape=(n_items, vocab.height),
        dtype=np.float64,
    )
    mat.sum_duplicates()
    mat.sort_indices()
    norms = np.sqrt(np.asarray(mat.multiply(mat).sum(axis=1)).ravel())
    mat = sp.diags(1.0 / np.where(norms == 0, 1.0, norms)) @ mat
    return mat.astype(np.float32).tocsr(), vocab["tag"].to_list()


def item_features(genres: np.ndarray | None, tags, tag_weight: float):
    """F = rows of [genre TF-IDF, tag_weight * tag TF-IDF] L2-normalised, as CSR float32.

    Rows without tags are exactly `tfidf(genres)`; `tags` is a CSR block or None.
    """
    import scipy.sparse as sp

    g = tfidf(genres) if genres is not None and genres.shape[1] else np.zeros((0, 0), np.float32)
    n_items = g.shape[0] if tags is None else tags.shape[0]
    gen = sp.csr_matrix(g) if g.shape[0] else sp.csr_matrix((n_items, 0), dtype=np.float32)
    if tags is None or tags.shape[1] == 0 or tag_weight == 0:
        out = gen
    else:
        has_g = np.diff(gen.indptr) > 0
        has_t = np.diff(tags.indptr) > 0
        # Each block has norm 1 (or 0); rescale only the rows that gained tags.
        scale = 1.0 / np.sqrt(np.where(has_t, has_g + tag_weight**2, 1.0))
        out = sp.hstack([sp.diags(scale) @ gen, sp.diags(scale * tag_weight) @ tags], format="csr")
    out = out.astype(np.float32).tocsr()
    out.eliminate_zeros()
    out.sort_indices()
    return out


class ContentModel(Recommender):
    name = "content"
    Config = ContentConfig
    supports_fold_in = True
    scores_cold_items = True

    def _fit(self, data: Interactions, *, seed: int, progress) -> None:
        import scipy.sparse as sp

        from recsys_cli.models._kernels.baseline import baseline_als

        c = self.config
        genres = data.item_genres
        if genres is not None and (genres.shape[1] == 0 or not genres.any()):
            genres = None
        tag_block, tag_names, tag_note = self._tag_block(data)
        if genres is None and tag_block is None:
            raise UsageError("the content model needs item genres or tags, and this dataset has neither")
        if genres is None:
            genres = np.zeros((data.n_items, 0), np.float32)
        self.F = item_features(genres, tag_block, c.tag_weight)
        self.n_genre_features = np.int32(genres.shape[1])
        self.tag_names = np.asarray(tag_names, dtype=str) if tag_names else np.zeros(0, "<U1")
        mu = float(self.global_mean)
        bu, bi = baseline_als(data.users, data.items, data.ratings, data.n_users, data.n_items, mu,
                              reg_u=c.reg_u, reg_i=c.reg_i)
        self.bu = np.asarray(bu, np.float32)
        self.bi = np.asarray(bi, np.float32)
        resid = data.ratings - (mu + self.bu[data.users] + self.bi[data.items])
        shape = (data.n_users, data.n_items)
        # Same coordinates as the base's seen-item CSR, so the residuals ride on its indptr/indices.
        R = sp.csr_matrix((resid.astype(np.float32), (data.users, data.items)), shape=shape, dtype=np.float32)
        R.sum_duplicates()
        R.sort_indices()
        counts = sp.csr_matrix((np.ones(len(resid), np.float32), (data.users, data.items)), shape=shape)
        counts.sum_duplicates()
        counts.sort_indices()
        self.resid = R.data.astype(np.float32)
        self._R = None  # profiles' rating matrices are rebuilt from the new residuals
        # Duplicate (user, item) rows count twice in B, as in A; all-ones weights are not stored.
        self.seen_weight = counts.data.astype(np.float32) if (counts.data != 1).any() else np.zeros(0, np.float32)
        self.fit_info = {
            "genre_features": int(self.n_genre_features),
            "tag_features": len(self.tag_names),
            "tags": tag_note,
        }

    def _tag_block(self, data: Interactions):
        """(CSR tag block or None, tag names, note for fit_info)."""
        c = self.config
        if not c.use_tags:
            return None, [], "off (use_tags=false)"
        if c.tag_weight == 0:
            return None, [], "off (tag_weight=0)"
        loader = getattr(data, "item_tags", None)
        apps = loader() if loader is not None else None
        if apps is None or len(apps[0]) == 0:
            return None, [], "none in dataset: genres only"
        block, names = tag_tfidf(*apps, data.n_items, min_tag_count=c.min_tag_count, max_tags=c.max_tags)
        if not names:
            return None, [], f"no tag on >= {c.min_tag_count} items: genres only"
        hidden = getattr(data, "hidden_tags", 0)
        return block, names, "used" + (f" ({hidden:,} on held-out ratings hidden)" if hidden else "")

    # ----- profiles and scoring -----------------------------------------------------------
    def _rating_matrices(self):
        """(residuals, weights) as users x items CSR, built once per process from the state."""
        if getattr(self, "_R", None) is None:
            import scipy.sparse as sp

            shape = (self.n_users, self.n_items)
            small = len(self.seen_indices) < np.iinfo(np.int32).max  # int32 indptr avoids an int64 copy of the indices
            indptr = self.seen_indptr.astype(np.int32) if small else self.seen_indptr
            weight = self.seen_weight if len(self.seen_weight) else np.ones(len(self.resid), np.float32)
            self._R = sp.csr_matrix((self.resid, self.seen_indices, indptr), shape=shape)
            self._W = sp.csr_matrix((weight, self.seen_indices, indptr), shape=shape)
        return self._R, self._W

    def _profiles(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Dense float64 (len(users), n_features) profiles A and B of known user indices."""
        R, W = self._rating_matrices()
        A = (R[users].astype(np.float64) @ self.F).toarray()
        B = (W[users].astype(np.float64) @ self.F).toarray()
        return A, B

    def _profile_batch(self) -> int:
        return max(1, min(4096, (32 << 20) // (8 * max(1, self.F.shape[1]))))

    def _predict_from(self, base_u: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        # Work in items x users (the layout sparse @ dense returns), transpose once at the end.
        # float64 until the end, like the few-user path, so both give the same float32 scores.
        out = np.asarray(self.F @ np.ascontiguousarray(A.T, np.float64))
        den = np.asarray(self.F @ np.ascontiguousarray(B.T, np.float64))
        den += self.config.shrink
        out /= den
        out += self.bi[:, None]
        out += np.asarray(base_u, np.float64)[None, :]
        return np.ascontiguousarray(out.T, np.float32)

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        if len(users) < PARALLEL_ROWS:
            return self._score_few(users)
        A, B = self._profiles(users)
        return self._predict_from(self.global_mean + self.bu[users], A, B)

    def _score_few(self, users: np.ndarray) -> np.ndarray:
        """`_score_users` for a few users from the CSR arrays in NumPy: no scipy import (one-user recommend)."""
        indptr, indices, data, (n_items, n_feat) = self._feature_arrays()
        data64 = data.astype(np.float64)
        row_of = np.repeat(np.arange(n_items), np.diff(indptr))
        out = np.empty((len(users), n_items), np.float32)
        for b, u in enumerate(np.asarray(users, np.int64)):
            lo, hi = int(self.seen_indptr[u]), int(self.seen_indptr[u + 1])
            items = self.seen_indices[lo:hi]
            lengths = indptr[items + 1] - indptr[items]
            entries = row_entries(indptr, items)
            resid = np.repeat(self.resid[lo:hi].astype(np.float64), lengths)
            weight = np.repeat(self.seen_weight[lo:hi] if len(self.seen_weight) else np.ones(hi - lo), lengths)
            A = np.bincount(indices[entries], weights=resid * data64[entries], minlength=n_feat)
            B = np.bincount(indices[entries], weights=weight * data64[entries], minlength=n_feat)
            num = np.bincount(row_of, weights=data64 * A[indices], minlength=n_items)
            den = np.bincount(row_of, weights=data64 * B[indices], minlength=n_items)
            out[b] = num / (den + self.config.shrink) + self.bi + np.float64(self.global_mean + self.bu[u])
        return out

    def _feature_arrays(self):
        """F as CSR arrays (indptr, indices, data, shape) without building the scipy matrix."""
        if getattr(self, "_F_parts", None) is not None:
            return self._F_parts
        F = self.F
        return F.indptr, F.indices, F.data, F.shape

    @property
    def F(self):
        """Item features, a scipy CSR (items x features), built on first use after a load."""
        if getattr(self, "_F", None) is None and getattr(self, "_F_parts", None) is not None:
            import scipy.sparse as sp

            indptr, indices, data, shape = self._F_parts
            self._F = sp.csr_matrix((data, indices, indptr), shape=shape)
        return self._F

    @F.setter
    def F(self, value) -> None:
        self._F, self._F_parts = value, None

    def _pair_terms(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """num / den of each (user, item) pair, profiles built per batch of distinct users."""
        from recsys_cli.models._kernels import content as K

        out = np.zeros(len(users), np.float64)
        uniq, inv = np.unique(users, return_inverse=True)
        order = np.argsort(inv, kind="stable")
        bounds = np.searchsorted(inv[order], np.arange(0, len(uniq) + 1))  # pairs of each distinct user
        step = self._profile_batch()
        for start in range(0, len(uniq), step):
            lo, hi = bounds[start], bounds[min(start + step, len(uniq))]
            sel = order[lo:hi]
            A, B = self._profiles(uniq[start : start + step])
            rows = (inv[sel] - start).astype(np.int64)
            F = self.F
            out[sel] = K.pair_ratios(A, B, rows, items[sel].astype(np.int64), F.indptr, F.indices, F.data,
                                     float(self.config.shrink))
        return out

    def _predict_known(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        terms = self._pair_terms(users, items)
        return (self.global_mean + self.bu[users] + self.bi[items] + terms).astype(np.float32)

    def _cold_item_scores(self, items: np.ndarray, users: np.ndarray):
        """Items without ratings but with genres or tags, for known users: feature-based prediction."""
        ok = (items >= 0) & (users >= 0)
        ok[ok] &= np.diff(self._feature_arrays()[0])[items[ok]] > 0
        vals = np.zeros(len(items), np.float32)
        if ok.any():
            u, i = users[ok], items[ok]
            vals[ok] = self.global_mean + self.bu[u] + self._pair_terms(u, i)
        return vals, ok

    def _item_similarities(self, i: int) -> np.ndarray:
        row = self.F[i]
        sims = np.asarray(self.F @ row.T.toarray()).ravel()
        norms = np.sqrt(np.asarray(self.F.multiply(self.F).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return (sims / (norms * norms[i])).astype(np.float32)

    def explain(self, user: int, items: np.ndarray, *, rated=None, ratings=None) -> list:
        """Per rated item j: sim(i, j) (r_uj - b_uj) / (sum_j w_j sim(i, j) + shrink), the cosine over
        genres/tags, around the baseline mu + b_u + b_i; items nobody rated are explained the same way."""
        from recsys_cli.models.explain import Explanation

        if user >= 0:
            lo, hi = int(self.seen_indptr[user]), int(self.seen_indptr[user + 1])
            rated = self.seen_indices[lo:hi].astype(np.int64)
            resid = self.resid[lo:hi].astype(np.float64)
            weight = self.seen_weight[lo:hi].astype(np.float64) if len(self.seen_weight) else np.ones(hi - lo)
            bu = float(self.bu[user])
        else:  # as fold_in
            rated, r = np.asarray(rated, np.int64), np.asarray(ratings, np.float32)
            bu = float(np.sum(r - self.global_mean - self.bi[rated]) / (self.config.reg_u + len(rated)))
            resid = (r - (self.global_mean + bu + self.bi[rated])).astype(np.float32).astype(np.float64)
            weight = np.ones(len(rated))
        F = self.F
        items = np.asarray(items, np.int64).reshape(-1)
        sims = np.asarray((F[items].astype(np.float64) @ F[rated].astype(np.float64).T).todense())  # (m, n)
        den = sims @ weight + self.config.shrink
        out = []
        for k, i in enumerate(items):
            base = float(self.global_mean) + bu + float(self.bi[i])
            out.append(Explanation("items", base, rated, sims[k] * resid / den[k]).sorted())
        return out

    def fold_in(self, raw_items, ratings) -> np.ndarray:
        idx = lookup(self.item_ids, raw_items)
        ok = idx >= 0
        items, r = idx[ok], np.asarray(ratings, np.float32)[ok]
        bu = float(np.sum(r - self.global_mean - self.bi[items]) / (self.config.reg_u + len(items)))
        resid = (r - (self.global_mean + bu + self.bi[items])).astype(np.float32)
        Fi = self.F[items]
        A = np.asarray(Fi.T @ resid, np.float32)[None, :]
        B = np.asarray(Fi.sum(axis=0), np.float32)
        return self._predict_from(np.array([self.global_mean + bu], np.float32), A, B)[0]

    # ----- persistence --------------------------------------------------------------------
    def _state(self) -> dict:
        return {
            "F_indptr": self.F.indptr.astype(np.int64),
            "F_indices": self.F.indices.astype(np.int32),
            "F_data": self.F.data.astype(np.float32),
            "F_shape": np.asarray(self.F.shape, np.int64),
            "n_genre_features": np.int32(self.n_genre_features),
            "n_tag_features": np.int32(len(self.tag_names)),
            "tag_names": self.tag_names,
            "bu": self.bu,
            "bi": self.bi,
            "resid": self.resid,
            "seen_weight": self.seen_weight,
        }

    def _load_state(self, state: dict) -> None:
        shape = tuple(int(x) for x in np.asarray(state["F_shape"]))
        self._F = None
        self._F_parts = (np.asarray(state["F_indptr"]), np.asarray(state["F_indices"]),
                         np.asarray(state["F_data"], np.float32), shape)
        self.n_genre_features = np.int32(state["n_genre_features"])
        self.tag_names = np.asarray(state["tag_names"])
        self.bu, self.bi = np.asarray(state["bu"]), np.asarray(state["bi"])
        self.resid, self.seen_weight = np.asarray(state["resid"]), np.asarray(state["seen_weight"])
        if len(self.resid) != len(self.seen_indices) or len(self.seen_weight) not in (0, len(self.resid)):
            raise ArtifactError("saved state of 'content' has residuals that do not match its seen items")
        if int(state["n_tag_features"]) != len(self.tag_names):
            raise ArtifactError("saved state of 'content' has a tag count that does not match its tag names")
        self._R = None
