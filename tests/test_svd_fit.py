"""SVD model fits: reproducible by seed on one thread, a fresh visiting order every epoch."""

from __future__ import annotations

import numba
import numpy as np
from contract import checkerboard

from recsys_cli.models._kernels import mf_sgd
from recsys_cli.models.registry import create_model

PARAMS = {"factors": 6, "epochs": 5, "lr_all": 0.02, "reg_all": 0.02}


def fit_params(seed: int, **params) -> dict[str, np.ndarray]:
    model = create_model("svd", {**PARAMS, **params}).fit(checkerboard()[0], seed=seed)
    return {name: getattr(model, name) for name in ("bu", "bi", "P", "Q")}


def test_svd_fit_is_reproducible_by_seed():
    a, b, c = fit_params(3), fit_params(3), fit_params(4)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert not np.allclose(a["P"], c["P"])


def test_svd_hogwild_fit_on_one_numba_thread_equals_sequential_fit():
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        seq, par = fit_params(5), fit_params(5, threads=2)
    finally:
        numba.set_num_threads(before)
    for name in seq:
        np.testing.assert_allclose(seq[name], par[name], rtol=0, atol=1e-6, err_msg=name)


def test_svd_visits_ratings_in_a_new_order_each_epoch(monkeypatch):
    seen = []
    real = mf_sgd.svd_epoch_shuffled

    def spy(data, *args, **kwargs):
        seen.append((data.users.copy(), data.items.copy(), data.ratings.copy()))
        return real(data, *args, **kwargs)

    monkeypatch.setattr(mf_sgd, "svd_epoch_shuffled", spy)
    data = checkerboard()[0]
    model = create_model("svd", PARAMS).fit(data, seed=1)
    assert len(seen) == PARAMS["epochs"] and len(model.fit_info["train_rmse"]) == PARAMS["epochs"]
    stored = data.users.astype(np.int64) * data.n_items + data.items  # (user, item) pairs are unique here
    keys = [u.astype(np.int64) * data.n_items + i for u, i, _ in seen]
    truth = dict(zip(stored.tolist(), data.ratings.tolist(), strict=True))
    for (_, _, r), key in zip(seen, keys, strict=True):
        # Every epoch visits each rating exactly once, with its own user, item and value.
        assert sorted(key.tolist()) == sorted(truth)
        assert [truth[k] for k in key.tolist()] == r.tolist()
    assert not any(np.array_equal(a, b) for a, b in zip([stored, *keys], keys, strict=False))
