"""`user-knn` and `item-knn`: neighbourhood CF like Surprise's KNNBasic/KNNWithMeans/KNNBaseline.

Similarities are computed sparsely and kept as top-`k_max` neighbour lists (never a dense
n x n matrix); predictions use the first `k` neighbours that rated the target. With
`k_max` at least the number of users (user-knn) or items (item-knn) minus one, results
equal Surprise's exactly; the default keeps 400 neighbours, enough for MovieLens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_cli.data.dataset import Interactions
from recsys_cli.models._kernels.csr import row_entries
from recsys_cli.models.base import PARALLEL_ROWS, Recommender
from recsys_cli.models.config import ModelConfig, choice, param

SMALL_LISTS = 2_000_000  # neighbour-list entries up to which few users are scored in NumPy (<100 MB of temporaries)


@dataclass(frozen=True)
class KNNConfig(ModelConfig):
    # Defaults: Surprise's KNNBaseline with pearson_baseline (k 40, shrinkage 100,
    # baselines by ALS with reg_u 15, reg_i 10, 10 epochs).
    similarity: str = choice("pearson_baseline", "cosine", "msd", "pearson", "pearson_baseline", doc="similarity measure")
    prediction: str = choice("baseline", "basic", "means", "baseline", doc="KNNBasic, KNNWithMeans or KNNBaseline estimate")
    k: int = param(40, "neighbours used per prediction", low=1)
    min_k: int = param(1, "fewer usable neighbours than this falls back to the mean/baseline", low=1)
    k_max: int = param(400, "neighbours stored per user/item (>= k)", low=1)
    min_support: int = param(1, "common ratings needed for a non-zero similarity", low=1)
    shrinkage: float = param(100.0, "shrinkage of pearson_baseline similarities", low=0.0)
    reg_u: float = param(15.0, "baseline regularisation of user biases", low=0.0)
    reg_i: float = param(10.0, "baseline regularisation of item biases", low=0.0)
    # rank_by only orders `recommend`; predictions (RMSE) are the same either way. sum adds sim * (r - offset)
    # over every stored neighbour (k_max list) the user rated, uncapped by k. Chosen on ml-100k, per-user 75/25
    # split, relevance any: nDCG@10 item-knn 0.197 / user-knn 0.226 with sum, 0.193 / 0.205 with the sum capped
    # at k, 0.068 / 0.002 with mean (which puts movies with one glowing neighbour rating first):
    #   recsys evaluate --model item-knn,user-knn --dataset ml-100k --split user --relevance any --metrics ranking \
    #     -p rank_by=sum   (and -p rank_by=mean)
    rank_by: str = choice("sum", "mean", "sum", doc="top-N by predicted rating (mean) or by the summed evidence of every rated neighbour (sum)")


class _KNN(Recommender):
    Config = KNNConfig
    user_based: bool = True

    @property
    def scores_are_ratings(self) -> bool:  # type: ignore[override]
        return self.config.rank_by == "mean"

    def _fit(self, data: Interactions, *, seed: int, progress) -> None:
        from recsys_cli.models._kernels.baseline import baseline_als
        from recsys_cli.models._kernels.knn import csr_row_means, topk_similarities

        c = self.config
        mu = float(self.global_mean)
        bu, bi = baseline_als(data.users, data.items, data.ratings, data.n_users, data.n_items, mu,
                              reg_u=c.reg_u, reg_i=c.reg_i)
        self.bu, self.bi = np.asarray(bu, np.float32), np.asarray(bi, np.float32)
        ui = data.csr()
        self.r_data = ui.data.astype(np.float32)
        xy = ui if self.user_based else data.csc()
        row_bias, col_bias = (self.bu, self.bi) if self.user_based else (self.bi, self.bu)
        progress.log(f"{self.name}: {c.similarity} similarities, top {c.k_max} neighbours of {xy.shape[0]:,} rows")
        nbr, sims, _ = topk_similarities(
            xy.indptr, xy.indices, xy.data, xy.shape[1], kind=c.similarity, k_max=min(c.k_max, max(1, xy.shape[0] - 1)),
            min_support=c.min_support, shrinkage=c.shrinkage, baselines=(mu, row_bias, col_bias),
        )
        self.neighbors, self.sims = nbr, sims
        self.row_means = csr_row_means(xy.indptr, xy.data).astype(np.float32)
        self._inverted = self._operand = None
        self._im = None

    def _mode_kwargs(self) -> dict:
        row_bias, col_bias = (self.bu, self.bi) if self.user_based else (self.bi, self.bu)
        return dict(mu=float(self.global_mean), k=self.config.k, min_k=self.config.min_k, mode=self.config.prediction,
                    row_means=self.row_means, row_bias=row_bias, col_bias=col_bias)

    def _score(self, users: np.ndarray, aggregate: str) -> np.ndarray:
        if len(users) < PARALLEL_ROWS and self.neighbors.size <= SMALL_LISTS:
            return self._score_numpy(users, aggregate)  # one-user recommend: no Numba to load
        from recsys_cli.models._kernels import knn_scores

        args = (users, self.neighbors, self.sims, self.seen_indptr, self.seen_indices, self.r_data)
        operand = self._sum_operand() if aggregate == "sum" else None
        if self.user_based:
            return knn_scores.user_knn_scores(*args, n_items=self.n_items, aggregate=aggregate, operand=operand,
                                              **self._mode_kwargs())
        return knn_scores.item_knn_scores(*args, aggregate=aggregate, inverted=self._inverted_lists(),
                                          operand=operand, **self._mode_kwargs())

    def _inverted_lists(self):
        """Item-knn: for each item j, the items whose neighbour list holds j (built once per model)."""
        if self._inverted is None:
            from recsys_cli.models._kernels import knn_scores

            self._inverted = knn_scores.invert_neighbors(self.neighbors, self.sims)
        return self._inverted

    def _sum_operand(self):
        """The matrix whose rows rank_by=sum adds (built once per model): inverted lists, or residual ratings."""
        if self._operand is None:
            from recsys_cli.models._kernels import knn_scores

            kw = self._mode_kwargs()
            if self.user_based:
                rows = knn_scores.residual_csr(self.seen_indptr, self.seen_indices, self.r_data, mode=kw["mode"],
                                               mu=kw["mu"], row_means=kw["row_means"], row_bias=kw["row_bias"],
                                               col_bias=kw["col_bias"])
            else:
                rows = self._inverted_lists()
            self._operand = knn_scores.sum_operand(*rows, self.n_items, min_k=self.config.min_k)
        return self._operand

    def _score_numpy(self, users: np.ndarray, aggregate: str) -> np.ndarray:
        from recsys_cli.models._kernels import knn_numpy

        args = (users, self.neighbors, self.sims, self.seen_indptr, self.seen_indices, self.r_data)
        if self.user_based:
            return knn_numpy.user_knn_scores_np(*args, n_items=self.n_items, aggregate=aggregate, **self._mode_kwargs())
        return knn_numpy.item_knn_scores_np(*args, aggregate=aggregate, **self._mode_kwargs())

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        return self._score(np.asarray(users, np.int64), self.config.rank_by)

    def _predict_known(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        from recsys_cli.models._kernels.knn import knn_predict

        if self.user_based:
            rows, targets = users, items
            indptr, indices, data = self.seen_indptr, self.seen_indices, self.r_data
        else:
            rows, targets = items, users
            indptr, indices, data = self._item_major()
        pred, _ = knn_predict(rows, targets, self.neighbors, self.sims, indptr, indices, data, **self._mode_kwargs())
        return pred

    def _item_major(self):
        if getattr(self, "_im", None) is None:
            import scipy.sparse as sp

            m = sp.csr_matrix((self.r_data, self.seen_indices, self.seen_indptr), shape=(self.n_users, self.n_items))
            t = m.T.tocsr()
            t.sort_indices()
            self._im = (t.indptr.astype(np.int64), t.indices.astype(np.int32), t.data.astype(np.float32))
        return self._im

    def _item_similarities(self, i: int):
        if self.user_based:
            return None
        out = np.full(self.n_items, -np.inf, np.float32)
        nb = self.neighbors[i]
        ok = nb >= 0
        out[nb[ok]] = self.sims[i][ok]
        return out

    def _state(self) -> dict:
        return {"bu": self.bu, "bi": self.bi, "r_data": self.r_data, "neighbors": self.neighbors,
                "sims": self.sims, "row_means": self.row_means}

    def _load_state(self, state: dict) -> None:
        for k in ("bu", "bi", "r_data", "neighbors", "sims", "row_means"):
            setattr(self, k, state[k])
        self._inverted = self._operand = None


class UserKNN(_KNN):
    """Neighbours are users who rated the item."""

    name = "user-knn"
    user_based = True
    supports_fold_in = True

    def fold_in(self, raw_items, ratings) -> np.ndarray:
        """Score every item for a new user: their neighbour list as fit would give it, training lists unchanged."""
        from recsys_cli.models._kernels import knn_scores

        items, r = self._new_user_ratings(raw_items, ratings)
        c, mu = self.config, float(self.global_mean)
        resid = r - mu - self.bi[items].astype(np.float64)
        bu_new = np.float32(resid.sum() / (c.reg_u + len(items)) if len(items) else 0.0)
        mean_new = np.float32(r.mean()) if len(r) else np.float32(mu)
        nbr, sims = self._new_user_neighbors(items, r, bu_new)
        # A compact problem: rows 0..m-1 are the new user's neighbours, row m the new user.
        m = len(nbr)
        neighbors = np.full((m + 1, max(1, m)), -1, np.int32)
        neighbors[m, :m] = np.arange(m)
        sim_rows = np.zeros(neighbors.shape, np.float32)
        sim_rows[m, :m] = sims
        take, lens = _row_span(self.seen_indptr, nbr)
        indptr = np.concatenate([[0], np.cumsum(lens), [lens.sum() + len(items)]]).astype(np.int64)
        return knn_scores.user_knn_scores(
            np.array([m]), neighbors, sim_rows, indptr, np.concatenate([self.seen_indices[take], items]),
            np.concatenate([self.r_data[take], r.astype(np.float32)]), n_items=self.n_items, mu=mu, k=c.k,
            min_k=c.min_k, mode=c.prediction, aggregate=c.rank_by,
            row_means=np.append(self.row_means[nbr], mean_new).astype(np.float32),
            row_bias=np.append(self.bu[nbr], bu_new).astype(np.float32), col_bias=self.bi,
        )[0]

    def _new_user_ratings(self, raw_items, ratings) -> tuple[np.ndarray, np.ndarray]:
        """(item indices ascending, ratings float64) of the known items; a repeated item keeps its last rating."""
        from recsys_cli.data.dataset import lookup
        from recsys_cli.errors import UsageError

        idx = lookup(self.item_ids, raw_items)
        r = np.asarray(ratings, np.float32).astype(np.float64).reshape(-1)  # stored ratings are float32
        if r.shape != idx.shape:
            raise UsageError(f"{len(idx)} items but {len(r)} ratings")
        ok = np.flatnonzero(idx >= 0)
        items, last = np.unique(idx[ok][::-1], return_index=True)
        return items.astype(np.int32), r[ok][::-1][last]

    def _new_user_similarities(self, items: np.ndarray, r: np.ndarray, bu_new: float
                               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(training users, similarity, support) of a new user with every user sharing >= min_support items.

        The same sums and formulas as `topk_similarities` on the matrix with the new row appended.
        """
        c, mu = self.config, float(self.global_mean)
        iptr, iidx, idata = self._item_major()
        take, lens = _row_span(iptr, items)
        v = iidx[take].astype(np.int64)
        ry = idata[take].astype(np.float64)
        rx = np.repeat(np.asarray(r, np.float64), lens)
        if c.similarity == "pearson_baseline":
            bi = self.bi.astype(np.float64)[np.repeat(items, lens)]
            rx = rx - (mu + float(bu_new) + bi)
            ry = ry - (mu + self.bu.astype(np.float64)[v] + bi)
        n = self.n_users
        freq = np.bincount(v, minlength=n)
        min_sup = max(2 if c.similarity == "pearson_baseline" else 1, c.min_support)
        users = np.flatnonzero(freq >= min_sup)
        f = freq[users].astype(np.float64)

        def acc(w):
            return np.bincount(v, weights=w, minlength=n)[users]

        with np.errstate(divide="ignore", invalid="ignore"):
            if c.similarity == "msd":
                s = 1.0 / (acc((rx - ry) * (rx - ry)) / f + 1.0)
            elif c.similarity == "pearson":
                a, b, cc, d, e = acc(rx * ry), acc(rx * rx), acc(ry * ry), acc(rx), acc(ry)
                vx, vy = f * b - d * d, f * cc - e * e
                s = np.where((vx > 0) & (vy > 0), (f * a - d * e) / np.sqrt(vx * vy), 0.0)
            else:
                a, den = acc(rx * ry), np.sqrt(acc(rx * rx) * acc(ry * ry))
                s = np.where(den == 0, 0.0, a / den)
                if c.similarity == "pearson_baseline":
                    s = s * ((f - 1.0) / (f - 1.0 + c.shrinkage))
        return users, s, freq[users]

    def _new_user_neighbors(self, items: np.ndarray, r: np.ndarray, bu_new: float) -> tuple[np.ndarray, np.ndarray]:
        """The new user's top neighbour list (users int64, sims float32), best first, ties to the lower index."""
        users, s, _ = self._new_user_similarities(items, r, bu_new)
        s32 = s.astype(np.float32)
        k_max = min(self.config.k_max, max(1, self.n_users))  # fit's cap with the new row counted
        order = np.lexsort((users, -s32))[:k_max]
        return users[order], s32[order]


class ItemKNN(_KNN):
    """Neighbours are items the user rated."""

    name = "item-knn"
    user_based = False
    supports_fold_in = True

    def explain(self, user: int, items: np.ndarray, *, rated=None, ratings=None) -> list:
        """Each rated neighbour's similarity x residual rating (see `_item_knn_explain`)."""
        return _item_knn_explain(self, user, items, rated, ratings)

    def fold_in(self, raw_items, ratings) -> np.ndarray:
        """Score every item for a new user from their ratings, item neighbours unchanged."""
        from recsys_cli.data.dataset import lookup
        from recsys_cli.models._kernels import knn_scores

        idx = lookup(self.item_ids, raw_items)
        ok = idx >= 0
        items, r = idx[ok], np.asarray(ratings, np.float32)[ok]
        order = np.argsort(items)
        items, r = items[order], r[order]
        bu = float(np.sum(r - self.global_mean - self.bi[items]) / (self.config.reg_u + len(items)))
        kw = self._mode_kwargs()
        kw["col_bias"] = np.array([bu], np.float32)
        return knn_scores.item_knn_scores(
            np.array([0]), self.neighbors, self.sims, np.array([0, len(items)], np.int64), items.astype(np.int32),
            r, aggregate=self.config.rank_by, inverted=self._inverted_lists(),
            operand=self._sum_operand() if self.config.rank_by == "sum" else None, **kw,
        )[0]


def _item_knn_explain(model: ItemKNN, user: int, items: np.ndarray, rated: np.ndarray | None,
                      ratings: np.ndarray | None) -> list:
    """Item-knn's score of each item split over the user's rated neighbours (knn_numpy's semantics).

    rank_by=sum: score = sum over every stored positive-similarity neighbour j the user rated of
    sim(i, j) * (r_uj - offset_j); rank_by=mean: base + that sum over the first k such neighbours
    divided by their summed similarity. offset and base follow `prediction` (Surprise's modes).
    """
    from recsys_cli.models.explain import Explanation

    c = model.config
    mu = float(model.global_mean)
    if user >= 0:
        lo, hi = int(model.seen_indptr[user]), int(model.seen_indptr[user + 1])
        rated = model.seen_indices[lo:hi].astype(np.int64)
        vals = model.r_data[lo:hi].astype(np.float64)
        bu = float(model.bu[user])
    else:
        rated, vals = np.asarray(rated, np.int64), np.asarray(ratings, np.float64)
        bu = float(np.sum(vals.astype(np.float32) - model.global_mean - model.bi[rated])
                   / (c.reg_u + len(rated)))  # as ItemKNN.fold_in
    if c.prediction == "means":
        resid_of = vals - model.row_means[rated].astype(np.float64)
    elif c.prediction == "baseline":
        resid_of = vals - (mu + model.bi[rated].astype(np.float64) + bu)
    else:
        resid_of = vals
    resid = dict(zip(rated.tolist(), resid_of.tolist(), strict=True))
    out = []
    for i in np.asarray(items, np.int64).reshape(-1):
        nbr, sims = model.neighbors[i], model.sims[i].astype(np.float64)
        valid = np.logical_and.accumulate((nbr >= 0) & (sims > 0))
        hit = np.flatnonzero(valid & np.isin(nbr, rated))
        if c.rank_by == "mean":
            hit = hit[: c.k]
        keys = nbr[hit].astype(np.int64)
        w = sims[hit]
        contrib = w * np.array([resid[j] for j in keys.tolist()], np.float64)
        base = (0.0 if c.prediction == "basic" else float(model.row_means[i]) if c.prediction == "means"
                else mu + float(model.bi[i]) + bu)
        label = {"basic": "", "means": "item's mean rating", "baseline": "global mean + biases"}[c.prediction]
        ok = len(hit) >= c.min_k and w.sum() > 0
        if c.rank_by == "sum":
            out.append(Explanation("items", 0.0, keys, contrib if ok else 0.0 * contrib, base_label="").sorted())
        elif ok:
            out.append(Explanation("items", base, keys, contrib / w.sum(), base_label=label).sorted())
        else:  # too few rated neighbours: the mean's fallback (mu for basic, else the base)
            out.append(Explanation("baseline", mu if c.prediction == "basic" else base,
                                   base_label="global mean" if c.prediction == "basic" else label))
    return out


def _row_span(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the given CSR rows' entries, concatenated in order; each row's length)."""
    rows = np.asarray(rows, np.int64)
    return row_entries(indptr, rows), np.asarray(indptr, np.int64)[rows + 1] - np.asarray(indptr, np.int64)[rows]
