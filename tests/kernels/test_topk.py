"""Top-n selection: the Numba heap, its NumPy twin and the base's NumPy path agree, ties and masks included."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_cli.models._kernels.topk import mask_seen, topk_numba, topk_numba_ref
from recsys_cli.models.base import PARALLEL_ROWS, select_top, topk


def batch(seed: int, b: int = 50, m: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 6, (b, m)).astype(np.float32)  # few distinct values: ties everywhere
    s[rng.random((b, m)) < 0.2] = -np.inf
    s[3, :] = -np.inf  # a row with nothing to recommend
    s[4, :-2] = -np.inf  # a row with fewer candidates than n
    s[4, -2:] = (1.0, 4.0)
    s[5, 7] = np.nan
    s[7, 16] = np.nan  # NaN first in a block (after the heap fills) must not hide the block's other entries
    s[7, 17:32] = 9.0
    s[6, :] = 2.5  # all tied: the lowest indices win
    return s


@pytest.mark.parametrize("n", [1, 5, 10, 40, 45])
@pytest.mark.parametrize("seed", [0, 1])
def test_numba_heap_matches_both_references(n, seed):
    s = batch(seed)
    idx, val = topk_numba(s, n)
    ref_idx, ref_val = topk_numba_ref(s, n)
    np_idx, np_val = topk(s, n)
    serial_idx, serial_val = topk_numba(s, n, parallel=False)
    np.testing.assert_array_equal(serial_idx, idx)
    np.testing.assert_array_equal(serial_val, val)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(idx, np_idx)
    np.testing.assert_array_equal(val, ref_val)  # NaN slots compare equal
    np.testing.assert_array_equal(val, np_val)
    assert (idx[3] == -1).all() and np.isnan(val[3]).all()
    assert list(idx[4, :2]) == [39, 38][:n] and (idx[4, 2:] == -1).all()
    assert list(idx[6, : min(n, 40)]) == list(range(min(n, 40)))
    assert 7 not in idx[5]
    assert list(idx[7, : min(n, 15)]) == list(range(17, 17 + min(n, 15)))


def test_hand_computed_row():
    s = np.array([[0.5, 2.0, -np.inf, 2.0, 1.0, 3.0]], np.float32)
    idx, val = topk_numba(s, 4)
    assert idx.tolist() == [[5, 1, 3, 4]]
    assert val.tolist() == [[3.0, 2.0, 2.0, 1.0]]


def test_select_top_uses_either_path_with_the_same_result():
    s = batch(2, b=PARALLEL_ROWS + 3)
    np.testing.assert_array_equal(select_top(s, 7)[0], topk(s, 7)[0])
    np.testing.assert_array_equal(select_top(s[:2], 7)[0], topk(s[:2], 7)[0])  # kernels loaded: the serial heap
    for r in range(s.shape[0]):  # one row at a time, as a server's single-user requests
        np.testing.assert_array_equal(select_top(s[r : r + 1], 7)[0], topk(s[r : r + 1], 7)[0])
        np.testing.assert_array_equal(select_top(s[r : r + 1], 7)[1], topk(s[r : r + 1], 7)[1])


def test_select_top_without_the_kernels_loaded_uses_numpy():
    """A one-user call in a fresh process answers without importing Numba, with the same result."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from recsys_cli.models.base import select_top, topk; "
            "s = np.array([[0.5, 2.0, -np.inf, 2.0, 1.0, 3.0]], np.float32); "
            "print(select_top(s, 4)[0].tolist(), 'numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[[5,", "1,", "3,", "4]]", "False"]


def test_mask_seen_matches_a_python_loop():
    rng = np.random.default_rng(3)
    indptr = np.array([0, 2, 2, 5], np.int64)
    indices = np.array([1, 4, 0, 2, 3], np.int32)
    users = np.array([2, 0, 1, 2], np.int64)
    s = rng.random((4, 6)).astype(np.float32)
    expected = s.copy()
    for r, u in enumerate(users):
        expected[r, indices[indptr[u]:indptr[u + 1]]] = -np.inf
    mask_seen(s, users, indptr, indices)
    np.testing.assert_array_equal(s, expected)


def _random_ratings(seed: int, n_users: int, n_items: int):
    """About a fifth of all (user, item) pairs rated 1..5; raw ids 1..n."""
    from recsys_cli.data.dataset import Interactions

    rng = np.random.default_rng(seed)
    users, items = np.nonzero(rng.random((n_users, n_items)) < 0.2)
    return Interactions(users=users.astype(np.int32), items=items.astype(np.int32),
                        ratings=rng.integers(1, 6, len(users)).astype(np.float32),
                        user_ids=np.arange(1, n_users + 1), item_ids=np.arange(1, n_items + 1), rating_scale=(1.0, 5.0))


@pytest.mark.parametrize("name", ["ials", "svd"])
def test_batch_scored_in_thread_parts_equals_one_part(name, monkeypatch):
    from recsys_cli.models.registry import create_model

    n_users = 300
    data = _random_ratings(0, n_users, 80)
    model = create_model(name, {"factors": 8}).fit(data, seed=0)
    assert type(model).blas_scores
    monkeypatch.setenv("RECSYS_THREADS", "3")  # three parts per batch (rows >= 3 * PARALLEL_ROWS)
    split = model.recommend(data.user_ids, 10)
    np.testing.assert_array_equal(model.recommend_indices(np.arange(n_users), 10),
                                  np.searchsorted(data.item_ids, split.items))
    monkeypatch.setattr(type(model), "blas_scores", False)  # one part per batch
    whole = model.recommend(data.user_ids, 10)
    np.testing.assert_array_equal(split.items, whole.items)
    # BLAS may round the last bit differently for another matrix shape or thread count
    np.testing.assert_allclose(split.scores, whole.scores, rtol=1e-6)


@pytest.mark.parametrize("threads", ["1", "3"])
def test_a_batched_recommend_holds_one_block_of_scores_at_a_time(monkeypatch, threads):
    """A block of scores is released before the next is made (a server batch at ml-25m shape held two
    39 MB blocks per request before): when a block is scored, no earlier block's parts are alive."""
    import weakref

    from recsys_cli.models.registry import create_model

    data = _random_ratings(1, 400, 60)
    model = create_model("als", {"factors": 4, "iterations": 2}).fit(data, seed=0)
    monkeypatch.setenv("RECSYS_THREADS", threads)
    made, alive_at_call = [], []
    score = type(model)._score_users

    def tracked(self, rows):
        alive_at_call.append(sum(ref() is not None for ref in made))
        out = score(self, rows)
        made.append(weakref.ref(out))
        return out

    monkeypatch.setattr(type(model), "_score_users", tracked)
    whole = model.recommend(data.user_ids, 5, batch_size=100)
    assert len(made) == 4 * int(threads)  # 4 blocks of 100 users, each in `threads` parts
    # the parts of one block are scored side by side (up to threads - 1 of them alive), never beside an older block
    assert max(alive_at_call) <= int(threads) - 1, alive_at_call
    monkeypatch.setattr(type(model), "_score_users", score)
    np.testing.assert_array_equal(whole.items, model.recommend(data.user_ids, 5).items)
