"""`ease`: Embarrassingly Shallow Autoencoder (Steck 2019), an item-item model in closed form.

With X the users x items interaction matrix and G = X^T X + reg * I, the weights are
B = I - P / diag(P) with P = G^-1 (so diag(B) = 0), and a user's scores are x_u B. One
dense items x items inverse: about 2 s for 10k items, a minute past 30k. The memory it
needs is estimated before anything is allocated and refused past `max_memory_gb`;
`max_items` keeps only the most-rated items for huge catalogues (a user's interactions with
the others are ignored, and they are recommended only after every covered item, by popularity).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_cli.data.dataset import Interactions, lookup
from recsys_cli.errors import ConfigError, UsageError
from recsys_cli.models.base import Recommender
from recsys_cli.models.config import ModelConfig, choice, param


@dataclass(frozen=True)
class EASEConfig(ModelConfig):
    # reg chosen on ml-100k by 5-fold CV inside the train part of the per-user 75/25 split (relevance any,
    # nDCG@10; TPE, 20 trials; best reg 664, CV nDCG@10 0.238; the test part scored once after: 0.472; with the
    # per-user folds tune uses after a per-user split since, best reg 756 at CV 0.2393 and reg 660 at 0.2391 on
    # the same folds, a flat optimum, so 660 stays) with:
    #   recsys tune ease --dataset ml-100k --split user --relevance any --metric ndcg@10 --cv 5 \
    #     --trials 20 --space 'reg=loguniform(10,5000)'
    reg: float = param(660.0, "L2 penalty lambda on the item-item weights", low=0.0)
    interactions: str = choice("all", "all", "threshold", doc="which ratings count: all, or rating >= min_rating")
    min_rating: float = param(4.0, "with interactions=threshold, the smallest rating that counts")
    weight: str = choice("binary", "binary", "rating", doc="x_ui: 1 for an interaction, or the rating")
    dtype: str = choice("float64", "float32", "float64", doc="precision of the inverse (float32 needs a third of the memory)")
    max_items: int = param(0, "keep only the N most-rated items (0: every item)", low=0)
    max_memory_gb: float = param(4.0, "refuse to fit when the item-item matrices need more than this", low=0.0)


BLOCK = 512  # columns handled at once when building and symmetrising the dense matrices


def memory_estimate_gb(n_items: int, dtype: str) -> float:
    """Peak bytes of a fit, in GB: one dense n x n matrix of `dtype` (the Gram matrix, inverted and turned
    into the weights in place) plus, for float64, the float32 copy that is kept."""
    itemsize = np.dtype(dtype).itemsize
    return n_items * n_items * (itemsize + (4 if itemsize != 4 else 0)) / 1e9


def gram_matrix(x, dtype: str) -> np.ndarray:
    """Dense X^T X (Fortran order, for LAPACK in place), built a block of columns at a time so the
    only n x n allocation is the result."""
    n = x.shape[1]
    xt, xc = x.T.tocsr(), x.tocsc()
    g = np.empty((n, n), dtype=dtype, order="F")
    for j in range(0, n, BLOCK):
        g[:, j:j + BLOCK] = (xt @ xc[:, j:j + BLOCK]).toarray()
    return g


def ease_weights(gram: np.ndarray, reg: float) -> np.ndarray:
    """B = I - P / diag(P) with P = (gram + reg I)^-1, by Cholesky (LAPACK potrf/potri), all in place.

    `gram` (Fortran order) is overwritten and returned as B. Raises UsageError when gram + reg I is
    not positive definite.
    """
    from scipy.linalg import lapack

    n = gram.shape[0]
    gram[np.diag_indices(n)] += reg
    potrf, potri = (lapack.dpotrf, lapack.dpotri) if gram.dtype == np.float64 else (lapack.spotrf, lapack.spotri)
    c, info = potrf(gram, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise UsageError(f"ease: X^T X + reg I is not positive definite (reg={reg:g}); use a larger reg")
    p, info = potri(c, lower=False, overwrite_c=True)
    if info != 0:
        raise UsageError(f"ease: the inverse failed (LAPACK info {info}); use a larger reg")
    for j in range(0, n, BLOCK):  # potri fills the upper triangle only: mirror it, a block of rows at a time
        blk = p[j:j + BLOCK, j:j + BLOCK]
        blk[...] = np.triu(blk) + np.triu(blk, 1).T
        p[j:j + BLOCK, :j] = p[:j, j:j + BLOCK].T
    d = np.diag(p).copy()
    p /= -d[None, :]  # B_ij = -P_ij / P_jj
    p[np.diag_indices(n)] = 0.0
    return p


def ease_weights_ref(x: np.ndarray, reg: float) -> np.ndarray:
    """Plain NumPy twin: the formula with a general dense inverse (tests compare the two)."""
    g = x.T.astype(np.float64) @ x.astype(np.float64) + reg * np.eye(x.shape[1])
    p = np.linalg.inv(g)
    b = np.eye(x.shape[1]) - p / np.diag(p)[None, :]
    b[np.diag_indices(x.shape[1])] = 0.0
    return b


def interaction_values(config, ratings: np.ndarray) -> np.ndarray:
    """The item-item models' matrix values (ease, rp3beta): 1 or the rating (`weight`), and 0 under
    `interactions=threshold` for ratings below `min_rating`."""
    v = ratings.astype(np.float32) if config.weight == "rating" else np.ones(len(ratings), np.float32)
    if config.interactions == "threshold":
        v = np.where(ratings >= config.min_rating, v, np.float32(0.0))
    return v


class ItemItemRanker(Recommender):
    """What ease and rp3beta share: score_u = x_u W over a user row x_u of matrix values (`interaction_values`)
    kept as CSR arrays x_indptr/x_indices/x_data over `_n_cols` columns; `_columns` maps item indices to them."""

    predicts_ratings = False
    scores_are_ratings = False
    supports_fold_in = True
    blas_scores = True

    def _values(self, ratings: np.ndarray) -> np.ndarray:
        return interaction_values(self.config, ratings)

    @property
    def _n_cols(self) -> int:
        return len(self.item_ids)

    def _columns(self, idx: np.ndarray) -> np.ndarray:
        """Item indices (-1: unknown) -> columns of the user rows (-1: none)."""
        return idx

    def _user_rows(self, users: np.ndarray):
        """The training rows of `users` as one CSR matrix (users x columns)."""
        import scipy.sparse as sp

        starts = self.x_indptr[users]
        lens = self.x_indptr[users + 1] - starts
        indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        idx = np.repeat(starts - indptr[:-1], lens) + np.arange(indptr[-1], dtype=np.int64)
        return sp.csr_matrix((self.x_data[idx], self.x_indices[idx], indptr), shape=(len(users), self._n_cols))

    def _new_user_row(self, idx: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """A new user's dense float64 row: the matrix values of the rated items (index -1: unknown), repeats summed."""
        v = self._values(np.asarray(ratings, np.float32))
        cols = self._columns(np.asarray(idx, np.int64))
        x = np.zeros(self._n_cols, np.float64)
        ok = cols >= 0
        np.add.at(x, cols[ok], v[ok])
        return x

    def _rated_row(self, user: int, rated, ratings) -> tuple[np.ndarray, np.ndarray]:
        """(columns, values) of what a score is a sum over: a known user's training row, or a new user's."""
        if user >= 0:
            lo, hi = int(self.x_indptr[user]), int(self.x_indptr[user + 1])
            return self.x_indices[lo:hi].astype(np.int64), self.x_data[lo:hi].astype(np.float64)
        dense = self._new_user_row(np.asarray(rated, np.int64), np.asarray(ratings, np.float32))
        cols = np.flatnonzero(dense)
        return cols, dense[cols]


class EASE(ItemItemRanker):
    name = "ease"
    Config = EASEConfig

    @property
    def _n_cols(self) -> int:
        return len(self.kept)

    def _columns(self, idx: np.ndarray) -> np.ndarray:
        return np.where(idx >= 0, self.col[np.maximum(idx, 0)], -1)

    def _kept_items(self, n_items: int) -> np.ndarray:
        """Indices of the items the weights cover: all, or the max_items most rated (by index on ties)."""
        m = self.config.max_items
        if m == 0 or m >= n_items:
            return np.arange(n_items, dtype=np.int32)
        return np.sort(self.fb_rank[:m]).astype(np.int32)

    def _fit(self, data: Interactions, *, seed: int, progress) -> None:
        import scipy.sparse as sp

        c = self.config
        kept = self._kept_items(data.n_items)
        need = memory_estimate_gb(len(kept), c.dtype)
        if need > c.max_memory_gb:
            fit = int(np.sqrt(c.max_memory_gb * 1e9 / (np.dtype(c.dtype).itemsize + 4)))
            raise ConfigError(
                f"ease: the item-item matrices of {len(kept):,} items need about {need:.3g} GB, above "
                f"max_memory_gb={c.max_memory_gb:g}; raise the limit (-p max_memory_gb={np.ceil(need):.0f}) "
                f"or keep only the most-rated items (-p max_items={fit})"
            )
        vals = self._values(data.ratings)
        if not vals.any():
            raise UsageError(f"ease: no rating >= {c.min_rating} to use as an interaction")
        self.kept = kept
        self.restricted = len(kept) < data.n_items
        self.col = np.full(data.n_items, -1, np.int32)  # item index -> column of B (or -1)
        self.col[kept] = np.arange(len(kept), dtype=np.int32)
        cols = self.col[data.items]
        keep = (cols >= 0) & (vals != 0)
        x = sp.csr_matrix((vals[keep], (data.users[keep], cols[keep])), shape=(data.n_users, len(kept)),
                          dtype=np.float64 if c.dtype == "float64" else np.float32)
        progress.log(f"ease: inverting a {len(kept):,} x {len(kept):,} Gram matrix ({need:.2f} GB)")
        self.B = ease_weights(gram_matrix(x, c.dtype), c.reg).astype(np.float32, copy=False)
        x.sum_duplicates()
        self.x_indptr = x.indptr.astype(np.int64)
        self.x_indices = x.indices.astype(np.int32)
        self.x_data = x.data.astype(np.float32)
        self.fit_info.update(items_kept=int(len(kept)), memory_gb=round(need, 4))

    def _expand(self, s: np.ndarray, tail: bool = True) -> np.ndarray:
        """Scores over kept columns -> scores over every item. Items the weights do not cover score
        below each row's lowest covered score, ordered by popularity (tail=False: -inf)."""
        if not self.restricted:
            return s
        out = np.full((s.shape[0], len(self.item_ids)), -np.inf, np.float32)
        out[:, self.kept] = s
        if tail:
            rest = self.col < 0
            pop = self._popularity_scores()[rest]  # in (0, 1): the most-rated item is always kept
            out[:, rest] = s.min(axis=1, keepdims=True) - 1.0 + pop[None, :]
        return out

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        s = np.asarray(self._user_rows(np.asarray(users, np.int64)) @ self.B, dtype=np.float32)
        return self._expand(s)

    def _item_similarities(self, i: int):
        if self.col[i] < 0:
            raise UsageError(f"item {int(self.item_ids[i])} is outside the {len(self.kept)} items this ease run keeps")
        return self._expand(self.B[self.col[i]][None, :], tail=False)[0]

    def fold_in(self, raw_items, ratings) -> np.ndarray:
        x = self._new_user_row(lookup(self.item_ids, raw_items), ratings).astype(np.float32)
        return self._expand((x @ self.B)[None, :])[0]

    def explain(self, user: int, items: np.ndarray, *, rated=None, ratings=None) -> list:
        """score_ui = sum_j x_uj B_ji over the user's items j (training rows, or the fold-in's `rated`):
        each contributes x_uj B_ji (base 0, no residual). With max_items, an item outside the kept
        columns is ranked by popularity below every covered one: kind "popular", its whole score."""
        from recsys_cli.models.explain import Explanation

        items = np.asarray(items, np.int64).reshape(-1)
        cols, x = self._rated_row(user, rated, ratings)  # as fold_in builds a new user's row
        keys = self.kept[cols].astype(np.int64)  # columns of B -> item indices
        targets = self.col[items]
        covered = targets >= 0
        w = self.B[cols][:, targets[covered]].astype(np.float64)  # (rated, covered targets)
        parts = x[:, None] * w
        out, m = [], 0
        if not covered.all():  # the tail's scores, exactly as _expand gives them
            low = float((x.astype(np.float32) @ self.B[cols]).min()) if len(cols) else 0.0
            pop = self._popularity_scores()
        for i, ok in zip(items.tolist(), covered.tolist(), strict=True):
            if ok:
                out.append(Explanation("items", 0.0, keys, parts[:, m], 0.0, base_label="").sorted())
                m += 1
            else:
                out.append(Explanation("popular", float(np.float32(low) - np.float32(1.0) + pop[i])))
        return out

    def _state(self) -> dict:
        return {"B": self.B, "kept": self.kept, "x_indptr": self.x_indptr, "x_indices": self.x_indices,
                "x_data": self.x_data}

    def _load_state(self, state: dict) -> None:
        self.B, self.kept = np.asarray(state["B"]), np.asarray(state["kept"])
        self.x_indptr, self.x_indices = np.asarray(state["x_indptr"]), np.asarray(state["x_indices"])
        self.x_data = np.asarray(state["x_data"])
        n = len(self.item_ids)
        self.restricted = len(self.kept) < n
        self.col = np.full(n, -1, np.int32)
        self.col[self.kept] = np.arange(len(self.kept), dtype=np.int32)
