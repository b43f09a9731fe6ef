"""`fm`: a factorization machine (Rendle 2010/2012) over chosen feature groups; `bpmf` is its user+item preset.

Solvers (libFM's): `mcmc` Gibbs-samples every parameter from its conditional posterior under
Normal-Gamma hyperpriors per feature group (and a Gamma prior on the noise precision), and
averages predictions over the samples after `burn_in`; `als` takes the conditional mean
instead (coordinate descent on the squared loss with fixed L2 penalties); `sgd` does
per-rating gradient steps. mcmc's `sampler` says how each user's, item's (and period's) own weight
and vector are drawn: `cg` (default) by perturb-and-solve with a few conjugate-gradient steps
(`_kernels/fm_cg.py`), `exact` by a k x k Cholesky each (`_kernels/fm.py`); the shared groups'
draws are the same in both.

What is saved for prediction: a row's prediction splits into a per-user part, a per-item part
and the dot product of a user vector s_u and an item vector s_i (the sums of each block's feature
factors). w0 and the per-user and per-item parts are averaged over every sample after burn-in
(exact: they enter linearly). The dot products' average over samples is the matrix
(1/S) sum_s P_s Q_s^T, which is kept as its best rank-`keep_rank` approximation P Q^T, updated as
samples arrive (see `_Average`). Scoring is then one matrix product, like `svd`, and a new query
gets (up to that truncation) the average of its predictions over every sample, as libFM gives its
test rows. Measured on ml-100k u1 (32 factors, 170 samples): keeping all samples 0.8926, rank 128
0.8930, rank 64 0.8936, only the last 16 samples 0.9012, the last 64 0.8972.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_cli.data.dataset import Interactions, lookup
from recsys_cli.errors import UsageError
from recsys_cli.models.base import Recommender
from recsys_cli.models.config import ModelConfig, choice, param

# sampler=auto: cg from this many factors. A bpmf sweep on ml-100k u1 (ms, serial): 8 factors exact 7.8, cg 10.3;
# 16: 14.7, 11.1; 32: 32.8, 14.9 (the Cholesky's k^2 and k^3 against CG's k per step and a normal per rating).
CG_FROM_FACTORS = 16


@dataclass(frozen=True)
class FMConfig(ModelConfig):
    # Defaults chosen on ml-100k by 3-fold CV on a seeded 80% of the ratings (the other 20% never seen while
    # choosing; RMSE there in brackets). factors: 8 -> 0.8982 (0.8876), 16 -> 0.9004, 32 -> 0.9034:
    #   recsys tune fm -d ml-100k --grid factors=8,16,32 --cv 3 --metric rmse
    # iterations: 200 -> 0.8982, 500 -> 0.8975 (0.8861), 4 factors 0.9006 / 0.9000:
    #   recsys tune fm -d ml-100k --grid factors=4,8 --grid iterations=200,500 --cv 3 --metric rmse
    # and with genres, 200 -> 0.8949, 500 -> 0.8943:  recsys tune fm -d ml-100k --grid iterations=200,500 --cv 3
    # genres: adding the group 0.8982 -> 0.8949:
    #   recsys tune fm -d ml-100k -p groups=user,item,implicit,implicit_item,genres --grid factors=8 --cv 3 --metric rmse
    # time (2026-12-06): without it 0.8949 (0.8840); with it, 1 period 0.8938, 5 0.8936 (0.8831), 10 0.8939, 20 0.8940:
    #   recsys tune fm -d ml-100k --grid time_bins=5 --cv 3 --metric rmse
    #   recsys tune fm -d ml-100k -p groups=user,item,implicit,implicit_item,genres,time --grid time_bins=1,5,10,20 \
    #     --cv 3 --metric rmse
    # (data without timestamps trains without the time group, and the run's manifest says so)
    groups: str = param("user,item,implicit,implicit_item,genres,time",
                        "feature groups: user, item, implicit, implicit_item, genres, time (comma-separated)")
    solver: str = choice("mcmc", "mcmc", "als", "sgd",
                         doc="mcmc (Gibbs sampling, averaged predictions), als (coordinate descent) or sgd")
    factors: int = param(8, "latent factors", low=0)
    iterations: int = param(500, "sweeps (mcmc, als) or epochs (sgd)", low=1)
    burn_in: int = param(30, "mcmc: sweeps before predictions are averaged", low=0)
    # sampler (2026-12-06): the same RMSE either way, so auto takes the faster (CG_FROM_FACTORS has the sweep times):
    #   recsys evaluate --model fm,bpmf --dataset ml-100k --cv 5 --metrics rating -p sampler=exact   (fm 0.8780, bpmf 0.8952)
    #   recsys evaluate --model fm,bpmf --dataset ml-100k --cv 5 --metrics rating -p sampler=cg      (fm 0.8780, bpmf 0.8961)
    # cg_steps: max(3, ceil(factors / 16)) reproduced the exact chain's noise precision on u1 (bpmf, 200 sweeps; 64
    # factors: exact 3.29, 3 steps 2.93, 4 steps 3.40; 32 factors: exact 2.29, 3 steps 2.29):
    #   recsys train bpmf -d ml-100k -s u1 -p factors=64 -p iterations=200 -p sampler=cg -p cg_steps=4  (fit info)
    sampler: str = choice("auto", "auto", "cg", "exact",
                          doc="mcmc: how each user's and item's vector is drawn: cg (perturb-and-solve, a few "
                              "conjugate-gradient steps, O(ratings x factors) each), exact (a factors x factors "
                              "Cholesky per user and item) or auto (cg from 16 factors, exact below)")
    cg_steps: int = param(0, "sampler=cg: conjugate-gradient steps per draw (0: max(3, ceil(factors / 16)))", low=0)
    keep_rank: int = param(0, "mcmc: rank of the stored average user-item interaction (0: 4 x factors)", low=0)
    init_std: float = param(0.1, "standard deviation of the initial factors", low=0.0)
    reg_w: float = param(0.05, "als/sgd: L2 penalty of the linear weights", low=0.0)
    reg_v: float = param(0.05, "als/sgd: L2 penalty of the factors", low=0.0)
    lr: float = param(0.01, "sgd: learning rate", low=0.0)
    fit_w0: bool = param(True, "learn the global bias (False: fixed at the training mean)")
    time_bins: int = param(5, "time group: periods of about equal rating counts the timestamps fall in", low=1)


class FM(Recommender):
    """y = w0 + sum_j w_j x_j + sum_{j<l} <v_j, v_l> x_j x_l over the rating's feature groups."""

    blas_scores = True
    iterative = True
    supports_fold_in = True
    name = "fm"
    Config = FMConfig
    divergence_hint = "lower lr (sgd) or raise reg_w and reg_v (als)"

    def __init__(self, config=None, **params) -> None:
        super().__init__(config, **params)
        from recsys_cli.models.fm_design import parse_groups

        self.groups = parse_groups(self.config.groups)
        if self.config.solver == "mcmc" and self.config.burn_in >= self.config.iterations:
            from recsys_cli.errors import ConfigError

            raise ConfigError(f"{self.name}: burn_in ({self.config.burn_in}) must be below iterations "
                              f"({self.config.iterations})")
        self.scores_cold_items = "genres" in self.groups  # a cold item is scored from its genres

    # ----- training -------------------------------------------------------------------
    def _fit(self, data: Interactions, *, seed: int, progress) -> None:
        from recsys_cli.models._kernels import fm as K
        from recsys_cli.models._kernels import fm_cg
        from recsys_cli.models.fm_design import build_design

        c = self.config
        rng = np.random.default_rng(seed)
        genres = data.item_genres
        self._has_genres = (genres > 0).any(axis=1) if genres is not None else np.zeros(data.n_items, bool)
        groups, skipped = self.groups, ()
        if "genres" in groups and not self._has_genres.any() and len(groups) > 1:
            # The default includes genres; a dataset without them (a generic CSV) trains without the group.
            groups, skipped = tuple(g for g in groups if g != "genres"), ("genres",)
        self.scores_cold_items = "genres" in groups
        edges = None
        if "time" in groups:
            from recsys_cli.models.fm_design import time_edges

            if data.timestamps is None or len(data) == 0 or np.ptp(data.timestamps) == 0:
                if c.groups != type(c)().groups:  # asked for by name: an error
                    raise UsageError(f"{self.name}: the time group needs rating timestamps, and this data has "
                                     "none (every rating at the same time)")
                groups, skipped = tuple(g for g in groups if g != "time"), (*skipped, "time")  # the default's
            else:
                edges = time_edges(data.timestamps, c.time_bins)
        # Rows in user order: the user block's row passes then read the residuals front to back.
        data = data.subset(np.argsort(data.users, kind="stable"))
        d = build_design(data, groups, edges)
        k, nf, n = c.factors, d.n_feat, len(data)
        ratings = data.ratings.astype(np.float64)
        w0 = np.array([float(self.global_mean)])
        w = np.zeros(nf)
        V = rng.standard_normal((k, nf)) * c.init_std
        lin, S, Q = np.zeros(d.n_ent), np.zeros((k, d.n_ent)), np.zeros((k, d.n_ent))
        K.entity_caches(d.ent_ptr, d.ent_feat, d.ent_val, w, V, lin, S, Q)
        n_groups = len(self.groups)
        hyper = _Hyper(n_groups, k, c)
        acc = _Average(d, c.keep_rank or 4 * max(1, k), groups)
        if c.solver != "sgd":  # the residuals before the first sweep (set-up, not a sweep's time)
            e = ratings - K.predict_rows(d.row_ent, w0[0], lin, S, Q)
        progress.start(c.iterations, f"{self.name} iterations")
        losses = []
        if c.solver == "sgd":
            order_rng = np.random.default_rng(rng.integers(2**63))
            for it in range(c.iterations):
                order = order_rng.permutation(n).astype(np.int64)
                sse = K.fm_sgd_epoch(order, d.row_ent, ratings, d.ent_ptr, d.ent_feat, d.ent_val, w0, w, V, c.lr,
                                     c.reg_w, c.reg_v, c.fit_w0)
                losses.append(self._rmse(sse, n, it))
                progress.advance(1, iteration=it + 1, train_rmse=losses[-1])
            K.entity_caches(d.ent_ptr, d.ent_feat, d.ent_val, w, V, lin, S, Q)
            acc.add(w0[0], lin, S, Q, w, V, hyper)
        else:
            mode = K.MODE_SAMPLE if c.solver == "mcmc" else K.MODE_MEAN
            cg = mode == K.MODE_SAMPLE and (c.sampler == "cg" or (c.sampler == "auto" and k >= CG_FROM_FACTORS))
            cg_steps = c.cg_steps or max(3, -(-k // 16))
            sse = float(e @ e)
            for it in range(c.iterations):
                if mode == K.MODE_SAMPLE:
                    hyper.sample(rng, w, V, d, sse, n)
                if cg:
                    z = fm_cg.sweep_normals(rng, d.blk_feat, d.blk_joint, nf, k)
                    seeds = rng.integers(0, 2**64, fm_cg.N_SEEDS, dtype=np.uint64)
                    flavor = "parallel" if n >= K.PARALLEL_ROWS else "serial"
                    sse = fm_cg.fm_sweep_cg(flavor, d.row_ent, e, d.blk_ent, d.blk_feat, d.blk_joint, d.rows_ptr,
                                            d.rows, d.feat_ptr, d.feat_ent, d.feat_val, d.feat_group, d.feat_obs, w0,
                                            w, V, lin, S, Q, hyper.alpha, hyper.mu_w, hyper.lam_w, hyper.mu_v,
                                            hyper.lam_v, c.fit_w0, z, seeds, cg_steps)
                else:
                    z = rng.standard_normal(1 + nf * (k + 1)) if mode == K.MODE_SAMPLE else np.zeros(0)
                    sse = K.fm_sweep(mode, d.row_ent, e, d.blk_ent, d.blk_feat, d.blk_joint, d.rows_ptr, d.rows,
                                     d.feat_ptr, d.feat_ent, d.feat_val, d.feat_group, d.feat_obs, w0, w, V, lin, S,
                                     Q, hyper.alpha, hyper.mu_w, hyper.lam_w, hyper.mu_v, hyper.lam_v, c.fit_w0, z)
                losses.append(self._rmse(sse, n, it))
                progress.advance(1, iteration=it + 1, train_rmse=losses[-1])
                if mode == K.MODE_SAMPLE and it >= c.burn_in:
                    acc.add(w0[0], lin, S, Q, w, V, hyper)
            if mode == K.MODE_MEAN:
                acc.add(w0[0], lin, S, Q, w, V, hyper)
        parts = acc.result(data.n_users, data.n_items)
        if edges is not None:  # each user's latest period: the one their last training rating falls in
            from recsys_cli.models.fm_design import time_bin

            last = np.zeros(data.n_users, np.int64)
            np.maximum.at(last, data.users, data.timestamps)
            parts.update(time_edges=edges, user_bin=time_bin(last, edges))
        self._set_scoring(parts)
        self.fold = acc.fold_in_parts()
        self.fit_info = {"train_rmse": losses, "samples_averaged": acc.count, "features": int(nf)}
        if skipped:
            self.fit_info["groups_skipped"] = list(skipped)  # said in the run's manifest, never silent
        if c.solver == "mcmc":
            self.fit_info["noise_precision"] = round(float(hyper.alpha), 4)
            self.fit_info["sampler"] = "cg" if cg else "exact"
            if cg:
                self.fit_info["cg_steps"] = cg_steps

    def _rmse(self, sse: float, n: int, it: int) -> float:
        from recsys_cli.models.mf import DivergedError

        rmse = float(np.sqrt(sse / max(1, n)))
        if not np.isfinite(rmse):
            raise DivergedError(f"{self.name} diverged at iteration {it + 1} (train_rmse not finite); "
                                f"{self.divergence_hint}")
        return rmse

    def _set_scoring(self, parts: dict) -> None:
        """With the time group, a known user's pair without a time (and their recommendations) is scored in
        their own latest period (`user_bin`: where their last training rating falls), a new or unknown user's in
        the latest period of all ("now"); `_at` keeps the parts for a rating's own period."""
        self.mu = np.float32(parts["mu"])
        self.bu, self.bi, self.P, self.Q = parts["bu"], parts["bi"], parts["P"], parts["Q"]
        self.bi_now = self.bi
        self._at = self._item_time = self._user_bin = None
        edges = parts.get("time_edges")
        if edges is not None and parts.get("bt") is not None and len(parts["bt"]):
            a = self._at = {"time_edges": np.asarray(edges, np.int64), "bu": self.bu,
                            "bt": np.asarray(parts["bt"], np.float32), "UT": np.asarray(parts["UT"], np.float32),
                            "IT": np.asarray(parts["IT"], np.float32),
                            "user_bin": np.asarray(parts["user_bin"], np.int32)}
            self._user_bin = a["user_bin"]
            self.bu = (a["bu"] + a["UT"][np.arange(len(a["bu"])), self._user_bin]).astype(np.float32)
            self._item_time = np.ascontiguousarray((a["IT"] + a["bt"][None, :]).T)  # (periods, items)
            self.bi_now = (self.bi + self._item_time[-1]).astype(np.float32)

    # ----- scoring --------------------------------------------------------------------
    def _score_users(self, users: np.ndarray) -> np.ndarray:
        s = self.P[users] @ self.Q.T
        s += (self.mu + self.bu[users])[:, None]
        s += self.bi[None, :]
        if self._item_time is not None:
            s += self._item_time[self._user_bin[users]]
        return s

    def _predict_known(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        dots = np.einsum("ij,ij->i", self.P[users], self.Q[items])
        pred = self.mu + self.bu[users] + self.bi[items] + dots
        if self._item_time is not None:
            pred += self._item_time[self._user_bin[users], items]
        return pred.astype(np.float32)

    @property
    def uses_time(self) -> bool:
        return self._at is not None

    def _predict_known_at(self, users: np.ndarray, items: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
        """Predictions for ratings made at `timestamps` (seconds): in the period each falls in."""
        a = self._at
        if a is None:
            return self._predict_known(users, items)
        from recsys_cli.models.fm_design import time_bin

        t = time_bin(timestamps, a["time_edges"])
        dots = np.einsum("ij,ij->i", self.P[users], self.Q[items])
        return (self.mu + a["bu"][users] + self.bi[items] + a["UT"][users, t] + self._item_time[t, items]
                + dots).astype(np.float32)

    def _item_vectors(self) -> np.ndarray:
        return self.Q

    def _cold_item_scores(self, items: np.ndarray, users: np.ndarray):
        """Items without ratings but with genres: the item's entity is its genre features.

        A known user gets the full model; an unknown one w0 plus the item's genre part.
        """
        if "genres" not in self.groups:
            return None
        ok = items >= 0
        ok[ok] &= (self.item_counts[items[ok]] == 0) & self.has_genres[items[ok]]
        vals = np.zeros(len(items), np.float32)
        known = ok & (users >= 0)
        if known.any():
            vals[known] = self._predict_known(users[known], items[known])
        anon = ok & (users < 0)
        vals[anon] = self.mu + self.bi_now[items[anon]]
        return vals, ok

    @property
    def has_genres(self) -> np.ndarray:
        return self._has_genres

    # ----- persistence ------------------------------------------------------------------
    def _state(self) -> dict:
        base = {"bu": self.bu, "bi": self.bi}
        if self._at is not None:  # the per-period parts; the scoring arrays are made again at load
            base = {"bi": self.bi, **self._at}
        return {"mu": np.float32(self.mu), **base, "P": self.P, "Q": self.Q,
                "has_genres": self._has_genres, "scores_cold_items": np.bool_(self.scores_cold_items),
                **{f"fold_{k}": v for k, v in self.fold.items()}}

    def _load_state(self, state: dict) -> None:
        self._set_scoring({k: state[k] for k in ("mu", "bu", "bi", "P", "Q", "bt", "UT", "IT", "time_edges",
                                                 "user_bin") if k in state})
        self._has_genres = np.asarray(state["has_genres"], bool)
        self.scores_cold_items = bool(state["scores_cold_items"])
        self.fold = {k[5:]: np.asarray(v) for k, v in state.items() if k.startswith("fold_")}

    # ----- fold-in ----------------------------------------------------------------------
    def fold_in(self, raw_items, ratings) -> np.ndarray:
        """Scores over every item for a new user: their own bias and vector solved given the item side.

        A new user's row carries their one-hot (no trained weight yet) and, with the implicit group,
        the items they rated. With the posterior means of the item vectors s_i, the implicit vectors
        y_j and weights, the noise precision alpha and the user group's prior (mu, lambda) kept from
        the fit, a rating is y_i = w0 + b_i + c + w_u + <v_u, a + s_i> + <a, s_i>, with a = the implicit
        vector of their rated set and c its own linear and pairwise part. (w_u, v_u) is then the mean of
        its conditional posterior: P = alpha H^T H + diag(lambda), H = [1, a + s_i] over the rated items
        (the `fm` MCMC's joint draw for a user, without the noise). With the time group the ratings count as
        made now: the latest period's vector s_t joins every row (H = [1, a + s_i + s_t]) and its bias and
        item-period parts are in bi_now.
        """
        if not self.fold:
            raise UsageError(f"this {self.name} run cannot fold in a user: it has no item-side feature group, or "
                             "was saved before fold-in existed (retrain it)")
        f = self.fold
        idx = lookup(self.item_ids, raw_items)
        ok = idx >= 0
        items, r = idx[ok], np.asarray(ratings, np.float64)[ok]
        s_items = f["s_items"].astype(np.float64)
        k = s_items.shape[1]
        a, own = np.zeros(k), 0.0
        if f["y"].size and len(items):  # implicit group: 1/sqrt(n) over the rated items
            x = 1.0 / np.sqrt(len(items))
            Y = f["y"][items].astype(np.float64)
            a = x * Y.sum(axis=0)
            own = x * float(f["w_y"][items].sum()) + 0.5 * (a @ a - x * x * float((Y * Y).sum()))
        base = float(self.mu) + self.bi_now.astype(np.float64) + own + s_items @ a  # every item, before w_u, v_u
        s_now = f["s_time"].astype(np.float64) if "s_time" in f else np.zeros(k)
        base += a @ s_now  # with the time group: the rated set meets the latest period (bi_now has the rest)
        H = np.hstack([np.ones((len(items), 1)), a + s_items[items] + s_now])
        prior_mean, prior_prec = f["prior_mean"].astype(np.float64), f["prior_prec"].astype(np.float64)
        if not f["has_user"]:  # no user one-hot group: nothing of the user's own to solve
            return base.astype(np.float32)
        alpha = float(f["alpha"])
        P = alpha * H.T @ H + np.diag(prior_prec)
        theta = np.linalg.solve(P, alpha * H.T @ (r - base[items]) + prior_prec * prior_mean)
        return (base + theta[0] + (s_items + a + s_now) @ theta[1:]).astype(np.float32)


@dataclass(frozen=True)
class BPMFConfig(FMConfig):
    # factors (8) checked for bpmf the same way: 8 -> 0.9129, 16 -> 0.9144, 32 -> 0.9157:
    #   recsys tune bpmf -d ml-100k --grid factors=8,16,32 --cv 3 --metric rmse
    groups: str = param("user,item", "feature groups (bpmf: user and item one-hots, as in Bayesian PMF)")


class BPMF(FM):
    """Bayesian probabilistic matrix factorisation (Salakhutdinov & Mnih 2008) as an MCMC FM over user + item."""

    name = "bpmf"
    Config = BPMFConfig


class _Hyper:
    """Noise precision alpha and per-group Normal-Gamma hyperparameters (libFM's MCMC priors).

    Priors: alpha ~ Gamma(1/2, 1/2)-like with alpha_0 = beta_0 = 1; per group lambda ~ Gamma(1, 1)
    and mu | lambda ~ N(0, 1 / lambda) (gamma_0 = 1). Only features seen in training count.
    For als the same arrays hold the fixed penalties (mu = 0, lambda = reg) and alpha = 1.
    """

    def __init__(self, n_groups: int, k: int, c: FMConfig) -> None:
        self.alpha = 1.0
        self.mu_w = np.zeros(n_groups)
        self.mu_v = np.zeros((n_groups, k))
        self.lam_w = np.full(n_groups, c.reg_w if c.solver != "mcmc" else 1.0)
        self.lam_v = np.full((n_groups, k), c.reg_v if c.solver != "mcmc" else 1.0)

    def sample(self, rng: np.random.Generator, w, V, d, sse: float, n: int) -> None:
        self.alpha = rng.gamma((1.0 + n) / 2.0, 2.0 / (1.0 + sse))
        grp = d.feat_group[d.feat_obs]
        n_groups = len(self.mu_w)
        cnt = np.bincount(grp, minlength=n_groups).astype(np.float64)
        ws = w[d.feat_obs]
        dev_w = np.bincount(grp, (ws - self.mu_w[grp]) ** 2, n_groups) + self.mu_w ** 2
        self.lam_w = rng.gamma((cnt + 2.0) / 2.0, 2.0 / (1.0 + dev_w))
        self.mu_w = rng.normal(np.bincount(grp, ws, n_groups) / (cnt + 1.0), 1.0 / np.sqrt((cnt + 1.0) * self.lam_w))
        # per group and factor: sum v and sum v^2 over its observed features, every factor in one product each
        # (V[:, feat_obs] and a loop over factors took 0.6 s a sweep at ml-25m shape, 64 factors)
        member = np.zeros((V.shape[1], n_groups))
        member[np.flatnonzero(d.feat_obs), grp] = 1.0
        sum_v = V @ member  # (k, groups)
        sum_v2 = np.square(V) @ member
        for f in range(V.shape[0]):
            mu = self.mu_v[:, f]
            dev = sum_v2[f] - 2.0 * mu * sum_v[f] + cnt * mu * mu + mu ** 2  # sum (v - mu)^2, + mu^2 (its prior)
            self.lam_v[:, f] = rng.gamma((cnt + 2.0) / 2.0, 2.0 / (1.0 + dev))
            self.mu_v[:, f] = rng.normal(sum_v[f] / (cnt + 1.0), 1.0 / np.sqrt((cnt + 1.0) * self.lam_v[:, f]))


class _Average:
    """Running averages of w0 and of each entity's own part; the summed user-item interaction, low rank.

    The sum over samples of P_s Q_s^T (user-block times item-block vectors) is kept as A B^T: new
    samples' vectors are appended as columns, and once the width reaches four times the rank the pair is
    cut back to the best rank-`rank` approximation of A B^T (QR of each side, SVD of the small core).
    """

    def __init__(self, d, rank: int, groups: tuple[str, ...]) -> None:
        self.count = 0
        # fold-in: posterior means of the item block's vectors, the implicit group's vectors and weights,
        # the noise precision and the user group's prior
        self.imp = np.flatnonzero(d.feat_group == groups.index("implicit")) if "implicit" in groups else None
        self.g_user = groups.index("user") if "user" in groups else None
        self.fold: dict[str, np.ndarray] = {}
        self.w0 = 0.0
        self.own = np.zeros(d.n_ent)
        self.rank = rank
        self.blocks = {name: (int(d.blk_ent[b]), int(d.blk_ent[b + 1])) for b, name in enumerate(d.blk_names)}
        self.time_parts: dict[str, np.ndarray] = {}
        self.A: list[np.ndarray] = []
        self.B: list[np.ndarray] = []
        self.width = 0

    def add(self, w0: float, lin, S, Q, w, V, hyper) -> None:
        self.count += 1
        self.w0 += w0
        self.own += lin + 0.5 * (S * S - Q).sum(axis=0)
        k = S.shape[0]
        parts = {"alpha": np.array(hyper.alpha)}
        if "item" in self.blocks:
            ia, ib = self.blocks["item"]
            parts["s_items"] = S[:, ia:ib].T
        if "time" in self.blocks:  # the latest period's vector ("now", for a folded-in user) and the
            ta, tb = self.blocks["time"]  # user-period and item-period interactions of every period
            parts["s_time"] = S[:, tb - 1]
            for name, key in (("user", "UT"), ("item", "IT")):
                if name in self.blocks:
                    lo, hi = self.blocks[name]
                    self.time_parts[key] = self.time_parts.get(key, 0.0) + S[:, lo:hi].T @ S[:, ta:tb]
        if self.imp is not None:
            parts["y"], parts["w_y"] = V[:, self.imp].T, w[self.imp]
        if self.g_user is not None:
            g = self.g_user
            parts["prior_mean"] = np.concatenate([[hyper.mu_w[g]], hyper.mu_v[g]])
            parts["prior_prec"] = np.concatenate([[hyper.lam_w[g]], hyper.lam_v[g]])
        else:
            parts["prior_mean"] = parts["prior_prec"] = np.zeros(k + 1)
        for key, v in parts.items():
            self.fold[key] = self.fold.get(key, 0.0) + v
        if "user" in self.blocks and "item" in self.blocks and S.shape[0]:
            (ua, ub), (ia, ib) = self.blocks["user"], self.blocks["item"]
            self.A.append(np.ascontiguousarray(S[:, ua:ub].T, np.float32))
            self.B.append(np.ascontiguousarray(S[:, ia:ib].T, np.float32))
            self.width += S.shape[0]
            if self.width >= 4 * self.rank:
                self._compress()

    def _compress(self) -> None:
        from threadpoolctl import threadpool_limits

        A, B = np.hstack(self.A), np.hstack(self.B)
        if A.shape[1] > self.rank:
            # One BLAS thread: these small factorisations run between sweeps, and threads that spin
            # for a busy core made them 6x slower on a shared 2-core machine.
            with threadpool_limits(limits=1, user_api="blas"):
                qa, ra = np.linalg.qr(A.astype(np.float64))
                qb, rb = np.linalg.qr(B.astype(np.float64))
                U, sv, Wt = np.linalg.svd(ra @ rb.T)
                root = np.sqrt(sv[: self.rank])
                A = (qa @ (U[:, : self.rank] * root)).astype(np.float32)
                B = (qb @ (Wt[: self.rank].T * root)).astype(np.float32)
        self.A, self.B, self.width = [A], [B], A.shape[1]

    def fold_in_parts(self) -> dict:
        """What `FM.fold_in` needs: posterior means (float32 arrays; the implicit ones empty without the group).

        Empty without an item-side group (nothing to fold a user in against).
        """
        if "s_items" not in self.fold:
            return {}
        out = {key: np.asarray(v / self.count, np.float32) for key, v in self.fold.items()}
        k = out["prior_mean"].shape[0] - 1
        out.setdefault("y", np.zeros((0, k), np.float32))
        out.setdefault("w_y", np.zeros(0, np.float32))
        out["has_user"] = np.bool_(self.g_user is not None)
        return out

    def result(self, n_users: int, n_items: int) -> dict:
        own = (self.own / self.count).astype(np.float32)
        out = {"mu": self.w0 / self.count}
        for name, n, key in (("user", n_users, "bu"), ("item", n_items, "bi")):
            lo, hi = self.blocks.get(name, (0, 0))
            out[key] = own[lo:hi] if name in self.blocks else np.zeros(n, np.float32)
        if "time" in self.blocks:
            lo, hi = self.blocks["time"]
            out["bt"] = own[lo:hi]
            for key, n in (("UT", n_users), ("IT", n_items)):
                part = self.time_parts.get(key)
                out[key] = (part / self.count).astype(np.float32) if part is not None else np.zeros((n, hi - lo),
                                                                                                    np.float32)
        if self.A:
            self._compress()
            scale = np.float32(1.0 / np.sqrt(self.count))
            out["P"] = np.ascontiguousarray(self.A[0] * scale)
            out["Q"] = np.ascontiguousarray(self.B[0] * scale)
        else:
            out["P"], out["Q"] = np.zeros((n_users, 1), np.float32), np.zeros((n_items, 1), np.float32)
        return out
