"""Seeded Fisher-Yates shuffles: pure-Python twins, valid permutations, determinism by seed, uniformity."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_cli.models._kernels import mf_sgd, shuffle
from recsys_cli.models._kernels.splitmix import seed64

SEED = seed64(2**63 + 12345)  # above 2**63: the whole uint64 range is accepted


def triple(n: int):
    return np.arange(n, dtype=np.int32), 3 * np.arange(n, dtype=np.int32), np.arange(n, dtype=np.float32) / 2


@pytest.mark.parametrize("n", [0, 1, 2, 7, 1000])
def test_shuffle_together_is_a_seeded_permutation_matching_reference(n):
    a, b, c = triple(n)
    shuffle.shuffle_together(a, b, c, SEED, 4)
    ref = [x.tolist() for x in triple(n)]
    shuffle.shuffle_together_ref(*ref, SEED, 4)
    assert [a.tolist(), b.tolist(), c.tolist()] == ref
    assert sorted(a.tolist()) == list(range(n))  # a permutation ...
    np.testing.assert_array_equal(b, 3 * a)  # ... applied to all three arrays alike
    np.testing.assert_array_equal(c, a / 2)
    again = triple(n)
    shuffle.shuffle_together(*again, SEED, 4)
    np.testing.assert_array_equal(again[0], a)  # same seed and epoch: same order
    if n >= 7:
        assert not np.array_equal(a, np.arange(n))
        for seed, epoch in ((SEED, 5), (seed64(1), 4)):
            other = triple(n)
            shuffle.shuffle_together(*other, seed, epoch)
            assert not np.array_equal(other[0], a)


def test_shuffle_together_puts_every_item_everywhere_equally_often():
    # 6 items x 6000 shuffles: each (item, position) count is ~1000 (sd ~29).
    counts = np.zeros((6, 6))
    for epoch in range(6000):
        a = np.arange(6, dtype=np.int32)
        shuffle.shuffle_together(a, a.copy(), np.zeros(6, np.float32), SEED, epoch)
        counts[a, np.arange(6)] += 1
    assert np.abs(counts - 1000).max() < 150


def test_shuffle_rows_permutes_each_row_within_itself_and_matches_reference():
    indptr = np.array([0, 3, 3, 10, 11, 20, 1020], dtype=np.int64)
    out = shuffle.shuffle_rows(indptr, SEED)
    np.testing.assert_array_equal(out, shuffle.shuffle_rows_ref(indptr, SEED))
    assert out.dtype == np.int64
    for lo, hi in zip(indptr[:-1], indptr[1:], strict=True):
        assert sorted(out[lo:hi].tolist()) == list(range(lo, hi))
    assert not np.array_equal(out[20:], np.arange(20, 1020))
    np.testing.assert_array_equal(shuffle.shuffle_rows(indptr, SEED), out)
    assert not np.array_equal(shuffle.shuffle_rows(indptr, seed64(3)), out)


def test_shuffle_within_rows_draws_its_seed_from_the_generator():
    indptr = np.array([0, 50, 50, 120], dtype=np.int32)
    a = mf_sgd.shuffle_within_rows(indptr, np.random.default_rng(1))
    b = mf_sgd.shuffle_within_rows(indptr, np.random.default_rng(1))
    rng = np.random.default_rng(1)
    c, d = mf_sgd.shuffle_within_rows(indptr, rng), mf_sgd.shuffle_within_rows(indptr, rng)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(c, d)  # the generator moved on: the next epoch gets a new order
    assert sorted(d[:50].tolist()) == list(range(50)) and sorted(d[50:].tolist()) == list(range(50, 120))
