"""Bias baselines: fast vs reference twins, and equal to scikit-surprise's BaselineOnly."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from recsys_cli.models._kernels.baseline import (
    baseline_als,
    baseline_als_ref,
    baseline_sgd,
    baseline_sgd_ref,
)

N_USERS, N_ITEMS = 40, 30


def _ratings(seed: int = 0, n: int = 400):
    """Random (user, item) pairs covering every user and item, sorted by (user, item); half-star ratings."""
    rng = np.random.default_rng(seed)
    pairs = {(u, int(rng.integers(N_ITEMS))) for u in range(N_USERS)}
    pairs |= {(int(rng.integers(N_USERS)), i) for i in range(N_ITEMS)}
    while len(pairs) < n:
        pairs.add((int(rng.integers(N_USERS)), int(rng.integers(N_ITEMS))))
    uv = np.array(sorted(pairs), np.int32)
    r = (rng.integers(2, 11, len(uv)) / 2).astype(np.float32)
    return uv[:, 0], uv[:, 1], r


def _surprise_baselines(users, items, ratings, bsl_options):
    from surprise import BaselineOnly, Trainset

    ur, ir = defaultdict(list), defaultdict(list)
    for u, i, r in zip(users.tolist(), items.tolist(), ratings.tolist(), strict=True):
        ur[u].append((i, r))
        ir[i].append((u, r))
    ts = Trainset(ur, ir, N_USERS, N_ITEMS, len(ratings), (1, 5),
                  {u: u for u in range(N_USERS)}, {i: i for i in range(N_ITEMS)})
    algo = BaselineOnly(bsl_options=bsl_options, verbose=False).fit(ts)
    return ts.global_mean, algo.bu, algo.bi


@pytest.mark.parametrize("opts", [{}, {"reg_u": 3.0, "reg_i": 0.5, "n_epochs": 4}])
def test_als_matches_surprise(opts):
    users, items, ratings = _ratings(1)
    mu, bu_s, bi_s = _surprise_baselines(users, items, ratings, {"method": "als", **opts})
    bu, bi = baseline_als(users, items, ratings, N_USERS, N_ITEMS, mu, **opts)
    assert bu.dtype == np.float32 and bi.dtype == np.float32
    np.testing.assert_allclose(bu, bu_s, atol=1e-5)
    np.testing.assert_allclose(bi, bi_s, atol=1e-5)
    assert np.abs(bu).max() > 0.05 and np.abs(bi).max() > 0.05  # biases really moved


def test_als_matches_reference_and_handles_unrated_ids():
    users, items, ratings = _ratings(2)
    mu = float(ratings.mean())
    # two extra users and items with no ratings must get zero bias
    fast = baseline_als(users, items, ratings, N_USERS + 2, N_ITEMS + 2, mu, reg_u=5.0, reg_i=2.0, n_epochs=7)
    ref = baseline_als_ref(users, items, ratings, N_USERS + 2, N_ITEMS + 2, mu, reg_u=5.0, reg_i=2.0, n_epochs=7)
    for a, b in zip(fast, ref, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
        assert a[-2:].tolist() == [0.0, 0.0]


def test_als_single_epoch_closed_form():
    # One epoch from zero: b_i = sum(r - mu) / (reg_i + n_i), then b_u from those b_i.
    users = np.array([0, 0, 1], np.int32)
    items = np.array([0, 1, 0], np.int32)
    ratings = np.array([5.0, 3.0, 1.0], np.float32)
    mu = 3.0
    bu, bi = baseline_als(users, items, ratings, 2, 2, mu, reg_u=1.0, reg_i=1.0, n_epochs=1)
    bi_exp = [(2.0 - 2.0) / 3.0, 0.0 / 2.0]
    bu_exp = [((5 - 3 - bi_exp[0]) + (3 - 3 - bi_exp[1])) / 3.0, (1 - 3 - bi_exp[0]) / 2.0]
    np.testing.assert_allclose(bi, bi_exp, atol=1e-7)
    np.testing.assert_allclose(bu, bu_exp, atol=1e-7)


@pytest.mark.parametrize("opts", [{}, {"reg": 0.1, "lr": 0.02, "n_epochs": 5}])
def test_sgd_matches_surprise(opts):
    users, items, ratings = _ratings(3)
    s_opts = {"method": "sgd", **{("learning_rate" if k == "lr" else k): v for k, v in opts.items()}}
    mu, bu_s, bi_s = _surprise_baselines(users, items, ratings, s_opts)
    bu, bi = baseline_sgd(users, items, ratings, N_USERS, N_ITEMS, mu, **opts)
    np.testing.assert_allclose(bu, bu_s, atol=1e-5)
    np.testing.assert_allclose(bi, bi_s, atol=1e-5)
    assert np.abs(bu).max() > 0.01


@pytest.mark.parametrize("seed", [None, 7])
def test_sgd_matches_reference(seed):
    users, items, ratings = _ratings(4)
    perm = np.random.default_rng(0).permutation(len(ratings))  # input order not grouped by user
    args = (users[perm], items[perm], ratings[perm], N_USERS, N_ITEMS, float(ratings.mean()))
    fast = baseline_sgd(*args, lr=0.01, n_epochs=6, seed=seed)
    ref = baseline_sgd_ref(*args, lr=0.01, n_epochs=6, seed=seed)
    for a, b in zip(fast, ref, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_sgd_seed_is_deterministic_and_changes_order():
    users, items, ratings = _ratings(5)
    args = (users, items, ratings, N_USERS, N_ITEMS, float(ratings.mean()))
    a = baseline_sgd(*args, seed=11)
    b = baseline_sgd(*args, seed=11)
    c = baseline_sgd(*args, seed=None)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_sgd_divergence_comes_back_non_finite():
    users, items, ratings = _ratings(6)
    bu, bi = baseline_sgd(users, items, ratings * 1e3, N_USERS, N_ITEMS, 0.0, lr=50.0, n_epochs=50)
    assert not (np.isfinite(bu).all() and np.isfinite(bi).all())


@pytest.mark.parametrize("fit", [baseline_als, baseline_sgd])
def test_out_of_range_indices_raise(fit):
    users, items, ratings = _ratings(7)
    with pytest.raises(ValueError, match="user indices"):
        fit(users, items, ratings, N_USERS - 1, N_ITEMS, 3.0)
    with pytest.raises(ValueError, match="item indices"):
        fit(users, items - 1, ratings, N_USERS, N_ITEMS, 3.0)
