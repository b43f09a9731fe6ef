"""`fm` / `bpmf`: equal to biased MF with user + item groups, planted structure recovered by MCMC,
genre fallback for cold items, config errors, blending."""

from __future__ import annotations

import numpy as np
import pytest
from contract import checkerboard

from recsys_cli.data.dataset import Interactions
from recsys_cli.errors import ConfigError, UsageError
from recsys_cli.models._kernels import fm as K
from recsys_cli.models._kernels.als import als_explicit_half_step_ref
from recsys_cli.models.fm_design import build_design
from recsys_cli.models.registry import create_model


def planted(n_users=80, n_items=60, k=2, density=0.5, noise=0.25, seed=0):
    """Continuous ratings mu + b_u + b_i + u.v + noise; returns the data and the noiseless matrix."""
    rng = np.random.default_rng(seed)
    bu, bi = rng.normal(0, 0.4, n_users), rng.normal(0, 0.4, n_items)
    U, V = rng.normal(0, 0.7, (n_users, k)), rng.normal(0, 0.7, (n_items, k))
    truth = 3.5 + bu[:, None] + bi[None, :] + U @ V.T
    mask = rng.random((n_users, n_items)) < density
    u, i = np.nonzero(mask)
    r = truth[u, i] + rng.normal(0, noise, len(u))
    data = Interactions(users=u.astype(np.int32), items=i.astype(np.int32), ratings=r.astype(np.float32),
                        user_ids=np.arange(1, n_users + 1, dtype=np.int64),
                        item_ids=np.arange(1, n_items + 1, dtype=np.int64), rating_scale=(-10.0, 20.0))
    return data, truth, bu, bi


def mf_parts(w, V, nu):
    """FM parameters of the user + item design read as biased MF: b_u, b_i, P, Q."""
    return w[:nu], w[nu:], V[:, :nu].T, V[:, nu:].T


def test_sgd_with_user_item_groups_is_biased_mf_sgd():
    data, *_ = planted(20, 15, seed=1)
    d = build_design(data, ("user", "item"))
    rng = np.random.default_rng(2)
    k, nu = 3, data.n_users
    w, V = rng.normal(0, 0.1, d.n_feat), rng.normal(0, 0.1, (k, d.n_feat))
    mu = float(data.ratings.mean())
    order = rng.permutation(len(data)).astype(np.int64)
    lr, reg_b, reg_f = 0.02, 0.03, 0.05
    bu, bi, P, Q = (x.copy() for x in mf_parts(w, V, nu))
    for r in order:  # Funk / Surprise biased MF: every parameter moves from the same error
        u, i = data.users[r], data.items[r]
        err = data.ratings[r] - (mu + bu[u] + bi[i] + P[u] @ Q[i])
        bu[u] += lr * (err - reg_b * bu[u])
        bi[i] += lr * (err - reg_b * bi[i])
        P[u], Q[i] = P[u] + lr * (err * Q[i] - reg_f * P[u]), Q[i] + lr * (err * P[u] - reg_f * Q[i])
    K.fm_sgd_epoch(order, d.row_ent, data.ratings.astype(np.float64), d.ent_ptr, d.ent_feat, d.ent_val,
                   np.array([mu]), w, V, lr, reg_b, reg_f, False)
    for got, want in zip(mf_parts(w, V, nu), (bu, bi, P, Q), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-9)


def test_als_with_user_item_groups_reaches_biased_als_optimum():
    """Coordinate descent on the FM and exact alternating solves of biased MF minimise the same loss."""
    data, *_ = planted(30, 20, k=2, density=0.6, seed=3)
    nu, k, reg_b, reg_f = data.n_users, 2, 0.3, 0.5
    mu = float(data.ratings.mean())
    d = build_design(data, ("user", "item"))
    rng = np.random.default_rng(4)
    w, V = np.zeros(d.n_feat), rng.normal(0, 0.1, (k, d.n_feat))
    lin, S, Q = np.zeros(d.n_ent), np.zeros((k, d.n_ent)), np.zeros((k, d.n_ent))
    K.entity_caches(d.ent_ptr, d.ent_feat, d.ent_val, w, V, lin, S, Q)
    ratings = data.ratings.astype(np.float64)
    e = ratings - K.predict_rows(d.row_ent, mu, lin, S, Q)
    G = 2
    for _ in range(400):
        K.fm_sweep(K.MODE_MEAN, d.row_ent, e, d.blk_ent, d.blk_feat, d.blk_joint, d.rows_ptr, d.rows, d.feat_ptr,
                   d.feat_ent, d.feat_val, d.feat_group, d.feat_obs, np.array([mu]), w, V, lin, S, Q, 1.0,
                   np.zeros(G), np.full(G, reg_b), np.zeros((G, k)), np.full((G, k), reg_f), False, np.zeros(0))
    bu, bi, P, Qm = mf_parts(w, V, nu)
    u, i, r = data.users, data.items, ratings
    err = r - (mu + bu[u] + bi[i] + np.einsum("nk,nk->n", P[u], Qm[i]))

    def loss(err, bu, bi, P, Qm):
        return err @ err + reg_b * (bu @ bu + bi @ bi) + reg_f * ((P * P).sum() + (Qm * Qm).sum())

    # stationary point of the biased-MF loss
    np.testing.assert_allclose(np.bincount(u, err, nu), reg_b * bu, atol=1e-6)
    np.testing.assert_allclose(np.bincount(i, err, data.n_items), reg_b * bi, atol=1e-6)
    gP = np.zeros_like(P)
    np.add.at(gP, u, err[:, None] * Qm[i])
    np.testing.assert_allclose(gP, reg_f * P, atol=1e-6)
    # the project's exact biased ALS (its NumPy twin; same loss, mu fixed) gets to the same loss value
    ui, iu = data.csr(), data.csc()
    X = rng.normal(0, 0.1, (nu, k)).astype(np.float32)
    Y = rng.normal(0, 0.1, (data.n_items, k)).astype(np.float32)
    bx, by = np.zeros(nu, np.float32), np.zeros(data.n_items, np.float32)
    for _ in range(200):
        als_explicit_half_step_ref(ui.indptr, ui.indices, ui.data, X, Y, bx, by, mu, reg_f, reg_b, False)
        als_explicit_half_step_ref(iu.indptr, iu.indices, iu.data, Y, X, by, bx, mu, reg_f, reg_b, False)
    err_als = r - (mu + bx[u] + by[i] + np.einsum("nk,nk->n", X[u], Y[i]))
    assert loss(err, bu, bi, P, Qm) == pytest.approx(loss(err_als, bx, by, X, Y), rel=1e-4)


@pytest.mark.parametrize("sampler", ["exact", "cg"])
def test_mcmc_recovers_planted_biases_factors_and_noise(sampler):
    data, truth, bu_true, bi_true = planted()
    model = create_model("bpmf", {"factors": 2, "iterations": 150, "burn_in": 40, "sampler": sampler})
    model.fit(data, seed=5)
    full = model._score_users(np.arange(data.n_users))
    recovered_rmse = float(np.sqrt(np.mean((full - truth) ** 2)))
    assert recovered_rmse < 0.15, recovered_rmse  # noise is 0.25; fitting it would give about 0.25
    assert np.corrcoef(model.bu, bu_true)[0, 1] > 0.9
    assert np.corrcoef(model.bi, bi_true)[0, 1] > 0.9
    # noise precision 1 / 0.25^2 = 16
    assert 10 < model.fit_info["noise_precision"] < 24
    assert model.fit_info["samples_averaged"] == 110
    # cg: the default number of steps, max(3, ceil(factors / 16)); exact: no CG
    assert model.fit_info["sampler"] == sampler and model.fit_info.get("cg_steps") == (3 if sampler == "cg" else None)


@pytest.mark.parametrize("sampler", ["exact", "cg"])
def test_mcmc_with_implicit_groups_recovers_planted_scores(sampler):
    """One-hots drawn jointly and the implicit groups a factor at a time, in one chain: the truth comes back."""
    data, truth, bu_true, bi_true = planted(seed=2)
    model = create_model("fm", {"groups": "user,item,implicit,implicit_item", "factors": 2, "iterations": 150,
                                "burn_in": 40, "sampler": sampler}).fit(data, seed=5)
    full = model._score_users(np.arange(data.n_users))
    assert float(np.sqrt(np.mean((full - truth) ** 2))) < 0.15
    # The item's own part shares the planted bias with its implicit_item weights, so how much of it lands in
    # bi varies by chain: over seeds 20-35, exact 0.76-0.99 (5 of 16 below 0.9), cg 0.83-0.99 (3 below 0.9).
    assert np.corrcoef(model.bi, bi_true)[0, 1] > 0.75
    assert 10 < model.fit_info["noise_precision"] < 24


def test_cold_item_scored_from_its_genres_and_labelled():
    data, _ = checkerboard()
    keep = data.items != 5  # item 1006 (group 0, genre 0) loses every rating
    data = data.subset(keep)
    model = create_model("fm", {"groups": "user,item,genres", "factors": 4, "iterations": 60, "burn_in": 20})
    model.fit(data, seed=2)
    pred, labels = model.predict([101, 121, 99999], [1006, 1006, 1006])
    assert labels == ["genre", "genre", "genre"]
    assert pred[0] > pred[1] + 1.0, pred  # a group-0 user likes a group-0 genre far more
    assert pred[2] == pytest.approx(model.mu + model.bi[5], abs=1e-6)  # unknown user: the genres' own part
    recs = model.recommend([101], 3)
    assert 1006 in recs.items[0]  # ranked although nobody rated it
    plain = create_model("fm", {"groups": "user,item", "factors": 4, "iterations": 30, "burn_in": 10}).fit(data)
    assert plain.predict([101], [1006])[1] == ["user_bias"]


def test_config_errors():
    with pytest.raises(ConfigError, match="unknown feature group 'timez'"):
        create_model("fm", {"groups": "user,timez"})
    with pytest.raises(ConfigError, match="burn_in"):
        create_model("fm", {"iterations": 10, "burn_in": 10})
    data, _ = checkerboard()
    no_genres = Interactions(users=data.users, items=data.items, ratings=data.ratings, user_ids=data.user_ids,
                             item_ids=data.item_ids, rating_scale=data.rating_scale)
    with pytest.raises(UsageError, match="genres"):  # genres alone cannot be fitted without genres
        create_model("fm", {"groups": "genres", "iterations": 2, "burn_in": 1}).fit(no_genres)
    # the default includes genres and time: a dataset without them trains without those groups, and says so
    model = create_model("fm", {"factors": 2, "iterations": 4, "burn_in": 1}).fit(no_genres)
    assert model.fit_info["groups_skipped"] == ["genres", "time"] and not model.scores_cold_items
    assert model.predict([101], [1001])[1] == [None]


def test_divergence_is_one_error_naming_the_fix():
    from recsys_cli.models.mf import DivergedError

    data, _ = checkerboard()
    with np.errstate(all="ignore"), pytest.raises(DivergedError, match=r"^fm diverged at iteration 1 .*; lower lr"):
        create_model("fm", {"solver": "sgd", "lr": 1e6, "iterations": 3}).fit(data, seed=1)


def test_bpmf_is_the_user_item_preset():
    m = create_model("bpmf")
    assert m.groups == ("user", "item") and m.config.solver == "mcmc"
    assert create_model("fm").groups == ("user", "implicit", "item", "implicit_item", "genres", "time")


def test_blend_takes_fm_members():
    data, _ = checkerboard()
    blend = create_model("blend", {"models": "fm,bias", "val_fraction": 0.3,
                                   "params": '{"fm": {"factors": 4, "iterations": 30, "burn_in": 10}}'})
    blend.fit(data, seed=1)
    pred, labels = blend.predict([101, 125], [1002, 1020])
    assert labels == [None, None]
    assert pred[0] > 4.0 and pred[1] > 4.0  # both are own-group items


@pytest.mark.parametrize("name,params", [("bpmf", {}), ("fm", {"groups": "user,item,implicit"})])
def test_fold_in_recovers_a_new_users_taste(name, params):
    """Users left out of the fit, folded in from their ratings: their unrated items scored near the truth."""
    data, truth, *_ = planted(n_users=90, seed=4)
    new = np.arange(80, 90)
    train = data.subset(~np.isin(data.users, new))
    model = create_model(name, {"factors": 2, "iterations": 150, "burn_in": 40, **params}).fit(train, seed=5)
    assert model.supports_fold_in
    err, err_items = [], []
    for u in new:
        rated = data.items[data.users == u]
        scores = model.fold_in(data.item_ids[rated], data.ratings[data.users == u])
        unrated = np.setdiff1d(np.arange(data.n_items), rated)
        err.append(scores[unrated] - truth[u, unrated])
        err_items.append(model.mu + model.bi[unrated] - truth[u, unrated])  # what the item bias alone gives
    rmse = float(np.sqrt(np.mean(np.concatenate(err) ** 2)))
    rmse_items = float(np.sqrt(np.mean(np.concatenate(err_items) ** 2)))
    assert rmse < 0.15 and rmse < rmse_items / 4, (rmse, rmse_items)  # measured 0.094 / 0.095 vs 0.74


def test_fold_in_of_a_training_user_matches_their_fitted_scores():
    """Folding a known user back in from their own ratings gives (nearly) the scores the fit gave them."""
    data, *_ = planted(seed=6)
    model = create_model("fm", {"groups": "user,item,implicit", "factors": 2, "iterations": 150,
                                "burn_in": 40}).fit(data, seed=3)
    for u in (0, 7, 33):
        mask = data.users == u
        folded = model.fold_in(data.item_ids[data.items[mask]], data.ratings[mask])
        fitted = model._score_users(np.array([u]))[0]
        assert np.corrcoef(folded, fitted)[0, 1] > 0.999
        assert np.abs(folded - fitted).max() < 0.05  # measured 0.012 - 0.019


# ----- the time group ------------------------------------------------------------------------------------
def test_time_bins_split_the_timestamps_into_periods_of_equal_counts():
    from recsys_cli.models.fm_design import time_bin, time_edges

    ts = np.arange(100, 1100, 10)  # 100 ratings, one every 10 s
    edges = time_edges(ts, 4)
    np.testing.assert_array_equal(edges, [350, 600, 850])  # the 26th, 51st and 76th timestamps
    np.testing.assert_array_equal(np.bincount(time_bin(ts, edges)), [25, 25, 25, 25])
    # before the first / after the last training rating: the first / last period; an edge opens its period
    np.testing.assert_array_equal(time_bin([0, 349, 350, 10**12], edges), [0, 0, 1, 3])
    # many ratings at one instant: no empty period
    same = np.r_[np.full(90, 500), np.arange(600, 610)]
    e = time_edges(same, 5)
    assert (np.bincount(time_bin(same, e)) > 0).all() and len(e) < 4
    assert len(time_edges(ts, 1)) == 0


def drifting(n_users=60, n_items=40, periods=3, density=0.6, noise=0.2, seed=0, early_users=0):
    """Ratings mu + b_i + u.v plus a planted drift: half the items gain +1 each period while the other half
    lose 1 (an item-by-period effect); timestamps spread evenly over the periods, except that the first
    `early_users` users rate only in the first period."""
    rng = np.random.default_rng(seed)
    bi = rng.normal(0, 0.3, n_items)
    U, V = rng.normal(0, 0.5, (n_users, 2)), rng.normal(0, 0.5, (n_items, 2))
    sign = np.where(np.arange(n_items) % 2 == 0, 1.0, -1.0)
    u, i = np.nonzero(rng.random((n_users, n_items)) < density)
    t = np.where(u < early_users, 0, rng.integers(0, periods, len(u)))
    drift = sign[i] * (t - (periods - 1) / 2)
    r = 3.0 + bi[i] + (U[u] * V[i]).sum(1) + drift + rng.normal(0, noise, len(u))
    data = Interactions(users=u.astype(np.int32), items=i.astype(np.int32), ratings=r.astype(np.float32),
                        user_ids=np.arange(1, n_users + 1, dtype=np.int64),
                        item_ids=np.arange(1, n_items + 1, dtype=np.int64), rating_scale=(-10.0, 20.0),
                        timestamps=(1_000_000 + t * 86_400 + rng.integers(0, 86_400, len(u))).astype(np.int64))
    return data, sign


def test_time_group_learns_a_planted_drift_and_predicts_each_rating_in_its_period():
    data, sign = drifting(early_users=6)
    rng = np.random.default_rng(5)
    test = rng.random(len(data)) < 0.2
    train, held = data.subset(~test), data.subset(test)
    args = (held.user_ids[held.users], held.item_ids[held.items])
    plain = create_model("fm", {"groups": "user,item", "factors": 4, "iterations": 120, "burn_in": 20})
    timed = create_model("fm", {"groups": "user,item,time", "factors": 4, "iterations": 120, "burn_in": 20,
                                "time_bins": 9})  # periods of equal counts: three to each planted period or so
    plain.fit(train, seed=1)
    timed.fit(train, seed=1)

    def rmse(pred):
        return float(np.sqrt(np.mean((pred - held.ratings) ** 2)))

    without = rmse(plain.predict(*args, held.timestamps)[0])  # no time part: timestamps change nothing
    assert without == rmse(plain.predict(*args)[0])
    at_time = rmse(timed.predict(*args, held.timestamps)[0])
    assert without > 0.6 and at_time < 0.45, (without, at_time)  # the drift alone has an RMSE of ~0.82
    # without a time (recommend, a pair without one) a user is scored in their own latest period: for one who
    # rated through the last period, the rising half of the items comes first; for one who rated only in the
    # first, the falling half (then at its peak)
    late_top = timed.recommend(np.array([40]), n=10, exclude_seen=False).items
    early_top = timed.recommend(np.array([1]), n=10, exclude_seen=False).items
    assert (sign[late_top - 1] > 0).all() and (sign[early_top - 1] < 0).all()
    late = (held.users >= 6) & (sign[held.items] > 0)
    assert np.mean(timed.predict(*args)[0][late]) > np.mean(held.ratings[late])


def test_time_group_round_trips_and_folds_in(tmp_path):
    data, _ = drifting(seed=2)
    m = create_model("fm", {"groups": "user,item,implicit,time", "factors": 3, "iterations": 40, "burn_in": 10,
                            "time_bins": 3})
    m.fit(data, seed=3)
    back = type(m).from_state(m.config, m.state())
    args = (data.user_ids[data.users], data.item_ids[data.items], data.timestamps)
    np.testing.assert_array_equal(back.predict(*args)[0], m.predict(*args)[0])
    np.testing.assert_array_equal(back.predict(*args[:2])[0], m.predict(*args[:2])[0])
    # folded-in ratings count as made now (the latest period): a training user's ratings of that period
    # folded in score every item as the fit scores them now
    latest = data.timestamps >= np.sort(data.timestamps)[2 * len(data) // 3]
    for u in range(5):
        mine = (data.users == u) & latest
        folded = m.fold_in(data.item_ids[data.items[mine]], data.ratings[mine])
        fitted = m._score_users(np.array([u]))[0]
        assert np.corrcoef(folded, fitted)[0, 1] > 0.97


def test_time_group_needs_timestamps_and_one_per_pair():
    data, *_ = planted(20, 15, seed=1)  # no timestamps
    with pytest.raises(UsageError, match="time group needs rating timestamps"):
        create_model("fm", {"groups": "user,item,time", "iterations": 3, "burn_in": 1}).fit(data, seed=0)
    timed, _ = drifting(20, 15, seed=1)
    m = create_model("fm", {"groups": "user,item,time", "iterations": 3, "burn_in": 1}).fit(timed, seed=0)
    with pytest.raises(UsageError, match="one value per"):
        m.predict([1, 2], [1, 2], [0])


def test_sampler_auto_is_cg_from_16_factors():
    """auto: the exact Cholesky draws below 16 factors (faster there), perturb-and-solve from 16; said in fit_info."""
    data, *_ = planted(20, 15, seed=1)
    for k, want in ((8, "exact"), (16, "cg")):
        model = create_model("bpmf", {"factors": k, "iterations": 3, "burn_in": 1}).fit(data)
        assert model.fit_info["sampler"] == want
