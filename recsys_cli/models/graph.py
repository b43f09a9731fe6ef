"""`rp3beta`: RP3beta (Paudel et al. 2017; P3alpha of Cooper et al. 2014 with beta = 0), a random-walk
item-item model in closed form.

A walk item j -> user -> item i on the bipartite graph of interactions: with P_ui each user's row of X
divided by its sum and P_iu each item's column of X divided by its sum, both raised elementwise to
`alpha`, the weight of i given j is W_ji = (P_iu^alpha P_ui^alpha)_ji / pop_i^beta, pop_i being item i's
number of interactions (beta > 0 lowers popular items; beta = 0 is P3alpha). The diagonal is dropped,
each row keeps its `neighbours` largest positive weights (0: all), rescaled to sum 1 when `normalise`.
A user's score for item i is sum_j x_uj W_ji over the items j the user has, as in ease and item-knn, so
`recommend --explain` splits it exactly over those items.

The weights are built a block of rows at a time (one block x items dense array), so only the kept
neighbours are stored: about items x neighbours x 16 bytes while the sparse matrix is assembled (items^2 x 16
with neighbours = 0), estimated and refused past `max_memory_gb` before anything is allocated. Plain NumPy/SciPy: the work is sparse
products and one argpartition per block, nothing a Numba kernel would speed up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_cli.data.dataset import Interactions, lookup
from recsys_cli.errors import ConfigError, UsageError
from recsys_cli.models.config import ModelConfig, choice, param
from recsys_cli.models.ease import ItemItemRanker


@dataclass(frozen=True)
class RP3betaConfig(ModelConfig):
    # alpha, beta, neighbours, normalise chosen on ml-100k by 5-fold CV inside the train part of the per-user
    # 75/25 split (relevance any, nDCG@10; folds dealing each user's ratings, tune's default after a per-user
    # split; TPE, 30 trials; best alpha 0.861, beta 0.550, 193 neighbours, normalise; CV nDCG@10 0.2333 +- 0.005;
    # rounded as below 0.2332, the earlier defaults 1.04 / 0.54 / 165 (rating folds' pick) 0.2322) with:
    #   recsys tune rp3beta --dataset ml-100k --split user --relevance any --metric ndcg@10 --cv 5 \
    #     --trials 30 --space 'alpha=uniform(0.3,1.5)' --space 'beta=uniform(0,0.8)' \
    #     --space 'neighbours=intlog(20,1000)' --space 'normalise=choice(true,false)'
    alpha: float = param(0.86, "exponent of the transition probabilities (1: plain random walk)", low=0.0)
    beta: float = param(0.55, "popularity penalty: weights into item i divided by pop_i^beta (0: P3alpha)", low=0.0)
    neighbours: int = param(193, "weights kept per item, the largest (0: all)", low=0)
    normalise: bool = param(True, "rescale each item's kept weights to sum 1")
    interactions: str = choice("all", "all", "threshold", doc="which ratings count: all, or rating >= min_rating")
    min_rating: float = param(4.0, "with interactions=threshold, the smallest rating that counts")
    weight: str = choice("binary", "binary", "rating", doc="x_ui: 1 for an interaction, or the rating")
    max_memory_gb: float = param(4.0, "refuse to fit when the kept weights need more than this", low=0.0)


BLOCK = 256  # rows of the item-item weights computed at once


def kept_per_row(n_items: int, neighbours: int) -> int:
    return n_items - 1 if neighbours == 0 or neighbours >= n_items else neighbours


def memory_estimate_gb(n_items: int, neighbours: int) -> float:
    """Peak bytes of the weights, in GB: the kept weights (float32 value + int32 column, twice while the
    sparse matrix is assembled) plus one dense float64 block of rows."""
    k = kept_per_row(n_items, neighbours)
    return (n_items * k * 16 + BLOCK * n_items * 16) / 1e9


def rp3beta_weights(x, alpha: float, beta: float, neighbours: int, normalise: bool):
    """Item-item weights W (scipy CSR, float32) of a users x items sparse matrix x (see the module docstring).

    Ties at the cut-off keep the lower item index. Rows of items nobody has are empty.
    """
    import scipy.sparse as sp

    x = sp.csr_matrix(x, dtype=np.float64)
    x.eliminate_zeros()
    n = x.shape[1]
    row_sum = np.asarray(x.sum(axis=1)).ravel()
    col_sum = np.asarray(x.sum(axis=0)).ravel()
    pop = np.diff(x.tocsc().indptr).astype(np.float64)
    p_ui = sp.diags(np.divide(1.0, row_sum, out=np.zeros_like(row_sum), where=row_sum > 0)) @ x
    p_iu = (x @ sp.diags(np.divide(1.0, col_sum, out=np.zeros_like(col_sum), where=col_sum > 0))).T.tocsr()
    if alpha != 1.0:
        p_ui, p_iu = p_ui.power(alpha), p_iu.power(alpha)
    p_ui, p_iu = sp.csr_matrix(p_ui), sp.csr_matrix(p_iu)
    penalty = np.zeros(n)
    np.power(pop, -beta, out=penalty, where=pop > 0)
    k = kept_per_row(n, neighbours)
    indptr, indices, data = [np.zeros(1, np.int64)], [], []
    for lo in range(0, n, BLOCK):
        hi = min(lo + BLOCK, n)
        w = (p_iu[lo:hi] @ p_ui).toarray()
        w *= penalty[None, :]
        w[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
        if k < n - 1:
            # the k largest per row; order by (-weight, index) so ties at the cut-off keep the lower index
            part = np.argpartition(-w, k, axis=1)[:, :k + 1]
            vals = np.take_along_axis(w, part, axis=1)
            cut = vals.min(axis=1, keepdims=True)  # the (k+1)-th largest: what is strictly above it is kept
            keep = w > cut
            ties = (w == cut) & (cut > 0)
            room = k - keep.sum(axis=1)
            tie_rank = np.cumsum(ties, axis=1)
            keep |= ties & (tie_rank <= room[:, None])
            keep &= w > 0
        else:
            keep = w > 0
        rows, cols = np.nonzero(keep)
        vals = w[rows, cols]
        if normalise:
            sums = np.bincount(rows, weights=vals, minlength=hi - lo)
            vals = vals / sums[rows]
        counts = np.bincount(rows, minlength=hi - lo)
        indptr.append(indptr[-1][-1] + np.cumsum(counts))
        indices.append(cols.astype(np.int32))
        data.append(vals.astype(np.float32))
    out = sp.csr_matrix((np.concatenate(data) if data else np.zeros(0, np.float32),
                         np.concatenate(indices) if indices else np.zeros(0, np.int32),
                         np.concatenate(indptr)), shape=(n, n))
    return out


def rp3beta_weights_ref(x: np.ndarray, alpha: float, beta: float, neighbours: int, normalise: bool) -> np.ndarray:
    """Dense NumPy twin of `rp3beta_weights`, written from the formula (tests compare the two)."""
    x = np.asarray(x, np.float64)
    n = x.shape[1]
    rs, cs = x.sum(axis=1, keepdims=True), x.sum(axis=0, keepdims=True)
    p_ui = np.divide(x, rs, out=np.zeros_like(x), where=rs > 0) ** alpha
    p_iu = (np.divide(x, cs, out=np.zeros_like(x), where=cs > 0) ** alpha).T
    pop = (x > 0).sum(axis=0).astype(np.float64)
    w = p_iu @ p_ui * np.where(pop > 0, pop, 1.0)[None, :] ** -beta * (pop > 0)[None, :]
    np.fill_diagonal(w, 0.0)
    k = kept_per_row(n, neighbours)
    for i in range(n):
        order = np.lexsort((np.arange(n), -w[i]))
        w[i, order[k:]] = 0.0
        if normalise and w[i].sum() > 0:
            w[i] /= w[i].sum()
    return w


class RP3beta(ItemItemRanker):
    name = "rp3beta"
    Config = RP3betaConfig

    def estimate_bytes(self, n_users: int, n_items: int, n_ratings: int) -> int:
        return super().estimate_bytes(n_users, n_items, n_ratings) + int(
            memory_estimate_gb(n_items, self.config.neighbours) * 1e9)

    def _fit(self, data: Interactions, *, seed: int, progress) -> None:
        import scipy.sparse as sp

        c = self.config
        need = memory_estimate_gb(data.n_items, c.neighbours)
        if need > c.max_memory_gb:
            per_row = int((c.max_memory_gb * 1e9 / data.n_items - BLOCK * 16) // 16)
            hint = f" or keep fewer neighbours (-p neighbours={per_row})" if per_row >= 1 else ""
            raise ConfigError(
                f"rp3beta: the item-item weights of {data.n_items:,} items need about {need:.3g} GB, above "
                f"max_memory_gb={c.max_memory_gb:g}; raise the limit (-p max_memory_gb={np.ceil(need):.0f}){hint}")
        vals = self._values(data.ratings)
        if not vals.any():
            raise UsageError(f"rp3beta: no rating >= {c.min_rating} to use as an interaction")
        x = sp.csr_matrix((vals, (data.users, data.items)), shape=(data.n_users, data.n_items), dtype=np.float32)
        x.sum_duplicates()
        x.eliminate_zeros()
        progress.log(f"rp3beta: walking {data.n_items:,} items, {kept_per_row(data.n_items, c.neighbours):,} "
                     f"neighbours each ({need:.2f} GB)")
        self.W = rp3beta_weights(x, c.alpha, c.beta, c.neighbours, c.normalise)
        self.x_indptr = x.indptr.astype(np.int64)
        self.x_indices = x.indices.astype(np.int32)
        self.x_data = x.data.astype(np.float32)
        self.fit_info.update(weights_kept=int(self.W.nnz), memory_gb=round(need, 4))

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        return (self._user_rows(np.asarray(users, np.int64)) @ self.W).toarray().astype(np.float32, copy=False)

    def _item_similarities(self, i: int) -> np.ndarray:
        return self.W[i].toarray()[0]

    def fold_in(self, raw_items, ratings) -> np.ndarray:
        x = self._new_user_row(lookup(self.item_ids, raw_items), ratings)
        return np.asarray(self.W.T @ x, np.float32)

    def explain(self, user: int, items: np.ndarray, *, rated=None, ratings=None) -> list:
        """score_ui = sum_j x_uj W_ji: each of the user's items j contributes x_uj W_ji (base 0, no residual)."""
        from recsys_cli.models.explain import Explanation

        items = np.asarray(items, np.int64).reshape(-1)
        keys, x = self._rated_row(user, rated, ratings)
        w = self.W[keys][:, items].toarray().astype(np.float64)  # (rated, targets)
        return [Explanation("items", 0.0, keys, x * w[:, m], 0.0, base_label="").sorted() for m in range(len(items))]

    def _state(self) -> dict:
        return {"W_indptr": self.W.indptr.astype(np.int64), "W_indices": self.W.indices.astype(np.int32),
                "W_data": self.W.data.astype(np.float32), "x_indptr": self.x_indptr, "x_indices": self.x_indices,
                "x_data": self.x_data}

    def _load_state(self, state: dict) -> None:
        import scipy.sparse as sp

        n = len(self.item_ids)
        self.W = sp.csr_matrix((np.asarray(state["W_data"]), np.asarray(state["W_indices"]),
                                np.asarray(state["W_indptr"])), shape=(n, n))
        self.x_indptr, self.x_indices = np.asarray(state["x_indptr"]), np.asarray(state["x_indices"])
        self.x_data = np.asarray(state["x_data"])
