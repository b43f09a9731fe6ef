"""BPR kernels (Rendle et al. 2009): Hogwild parallel SGD epochs and a sampled AUC, with NumPy twins.

Conventions: X (users, k), Y (items, k) and item_bias (items,) are C-contiguous float32 updated in
place; the interactions are CSR (indptr, indices int32) with each row's indices sorted. An epoch is
split into chunks (one for n_threads=1, else 4 per thread, handed out dynamically); each chunk draws
from its own SplitMix64 streams seeded from (seed, chunk), so with n_threads=1 an epoch is exactly
reproducible and equals the sequential reference `bpr_epoch_ref` bit for bit (plain float32 in a
fixed order, no fastmath). With more threads the chunks race on shared rows (Hogwild), so results
vary slightly from run to run. Speed comes from a software pipeline with prefetching (the per-sample
work is dominated by cache misses) and a Bloom filter (`seen_filter`) that answers most "is this
negative a liked item?" questions with one cache line instead of a binary search."""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from recsys_cli.models._kernels.linalg import dynamic_schedule as _dynamic_schedule
from recsys_cli.models._kernels.linalg import prefetch as _prefetch
from recsys_cli.models._kernels.linalg import prefetch_row as _prefetch_row
from recsys_cli.models._kernels.seen import maybe_seen, seen_filter, seen_hash, seen_word
from recsys_cli.models._kernels.splitmix import MASK64 as _MASK64
from recsys_cli.models._kernels.splitmix import StreamRef as _StreamRef
from recsys_cli.models._kernels.splitmix import below as _below
from recsys_cli.models._kernels.splitmix import seed64 as _seed64
from recsys_cli.models._kernels.splitmix import stream as _stream

MAX_NEGATIVE_TRIES = 64  # draws of a negative item before a sample is skipped as unsolvable
AUC_CHUNKS = 16  # fixed chunking so the sampled AUC does not depend on the thread count
_AHEAD = 8  # samples between pipeline stages: draw -> prefetch rows -> update
_RING = 4 * _AHEAD
_CHUNKS_PER_THREAD = 4


def _epoch_chunks(n_threads: int) -> int:
    """One chunk for a single thread (exactly reproducible); else several per thread, handed out
    dynamically so a thread slowed by other processes does not hold the whole epoch back."""
    n_threads = max(1, int(n_threads))
    return 1 if n_threads == 1 else _CHUNKS_PER_THREAD * n_threads


def _chunk_sizes(n_samples: int, n_chunks: int) -> list[int]:
    return [n_samples // n_chunks + (1 if c < n_samples % n_chunks else 0) for c in range(n_chunks)]


# ---------------------------------------------------------------- shared pieces

@njit(cache=True, inline="always")
def _contains(indices, start, end, j):
    """Whether j is in the sorted indices[start:end]: a binary search without data-dependent branches
    (each coin-flip branch of a textbook binary search costs a misprediction)."""
    base, n = start, end - start
    while n > 1:
        half = n >> 1
        base += half * (indices[base + half] <= j)
        n -= half
    return n > 0 and indices[base] == j


@njit(cache=True, inline="always")
def _prefetch_search(indices, lo, hi):
    """Prefetch a short row whole, or the first three levels of a long row's binary search."""
    if hi - lo <= 128:
        for q in range(lo, hi, 16):
            _prefetch(indices, q)
    else:
        for q in range(1, 8):
            _prefetch(indices, lo + (q * (hi - lo) >> 3))


# A blocked Bloom filter of the observed (row, column) pairs: one cache line (16 uint32 words) per
# query, three bits per pair, 8-16 bits of filter per pair. "No" is certain; "maybe" (the draws that
# hit a liked item, plus a few percent of false alarms) is settled by the binary search.


@njit(cache=True)
def _score(X, u, Y, i, j):
    """x_u . (y_i - y_j) in float32 with four accumulators in a fixed order."""
    x, yi, yj = X[u], Y[i], Y[j]
    k = x.shape[0]
    s0 = s1 = s2 = s3 = np.float32(0.0)
    f = 0
    while f + 4 <= k:
        s0 += x[f] * (yi[f] - yj[f])
        s1 += x[f + 1] * (yi[f + 1] - yj[f + 1])
        s2 += x[f + 2] * (yi[f + 2] - yj[f + 2])
        s3 += x[f + 3] * (yi[f + 3] - yj[f + 3])
        f += 4
    while f < k:
        s0 += x[f] * (yi[f] - yj[f])
        f += 1
    return (s0 + s1) + (s2 + s3)


def _score_ref(X, u, Y, i, j):
    prod = X[u] * (Y[i] - Y[j])  # float32, one rounding per operation like the kernel
    s = [np.float32(0.0)] * 4
    k4 = len(prod) - len(prod) % 4
    for f in range(k4):
        s[f % 4] += prod[f]
    for f in range(k4, len(prod)):
        s[0] += prod[f]
    return (s[0] + s[1]) + (s[2] + s[3])


def nnz_rows(indptr: np.ndarray) -> np.ndarray:
    """The row of every stored entry (int32, length nnz): the `nnz_user` array `bpr_epoch` needs."""
    indptr = np.asarray(indptr)
    return np.repeat(np.arange(indptr.shape[0] - 1, dtype=np.int32), np.diff(indptr))


def _check(X: np.ndarray, Y: np.ndarray, item_bias: np.ndarray) -> None:
    for name, a in (("X", X), ("Y", Y), ("item_bias", item_bias)):
        if a.dtype != np.float32 or not a.flags.c_contiguous:
            raise ValueError(f"{name} must be a C-contiguous float32 array")
    if X.shape[1] != Y.shape[1] or item_bias.shape[0] != Y.shape[0]:
        raise ValueError("X, Y and item_bias disagree on their shapes")


# ---------------------------------------------------------------- training epoch


@njit(cache=True)
def _draw(state, indices, n_items, popular):
    """A negative item: uniform over items, or popularity-weighted (the item of a random entry)."""
    if popular:
        state, jdx = _below(state, indices.shape[0])
        return state, np.int64(indices[jdx])
    return _below(state, n_items)


@njit(cache=True)
def _bpr_chunk(indptr, indices, nnz_user, X, Y, item_bias, lr, reg, reg_bias, n, pos, neg, retry, verify,
               popular, seen):
    """n samples, software-pipelined so that cache misses overlap with the updates of earlier samples.

    Sample t is drawn at step t - 3*_AHEAD; at t - 2*_AHEAD its rows and its negative's filter line are
    prefetched; at t - _AHEAD the filter is read and, on a "maybe", the row's search prefetched; at
    step t the negative is settled and the update applied. Draws happen in sample order, as in the
    reference, so the pipeline changes no result.
    """
    k = X.shape[1]
    nnz, n_items = indices.shape[0], Y.shape[0]
    ring_idx, ring_j = np.empty(_RING, np.int64), np.empty(_RING, np.int64)
    ring_h, ring_maybe = np.empty(_RING, np.uint64), np.empty(_RING, np.bool_)
    correct = skipped = 0
    for t in range(-3 * _AHEAD, n):
        ahead = t + 3 * _AHEAD
        if ahead < n:
            pos, idx = _below(pos, nnz)
            neg, j = _below(neg, nnz if popular else n_items)  # a popular negative: the item of an entry
            ring_idx[ahead % _RING], ring_j[ahead % _RING] = idx, j
            _prefetch(nnz_user, idx)
            _prefetch(indices, idx)
            if popular:
                _prefetch(indices, j)
        ahead = t + 2 * _AHEAD
        if 0 <= ahead < n:
            slot = ahead % _RING
            if popular:
                ring_j[slot] = indices[ring_j[slot]]
            u, i, j = nnz_user[ring_idx[slot]], indices[ring_idx[slot]], ring_j[slot]
            _prefetch_row(X, u)
            _prefetch_row(Y, i)
            _prefetch_row(Y, j)
            _prefetch(item_bias, i)
            _prefetch(item_bias, j)
            if verify:
                h = seen_hash(u, j)
                ring_h[slot] = h
                _prefetch(seen, seen_word(seen, h, 0)[0])
        ahead = t + _AHEAD
        if verify and 0 <= ahead < n:
            slot = ahead % _RING
            ring_maybe[slot] = maybe_seen(seen, ring_h[slot])
            if ring_maybe[slot]:
                u = nnz_user[ring_idx[slot]]
                _prefetch_search(indices, indptr[u], indptr[u + 1])
        if t < 0:
            continue
        slot = t % _RING
        u, i, j = nnz_user[ring_idx[slot]], indices[ring_idx[slot]], ring_j[slot]
        if verify:
            start, end = indptr[u], indptr[u + 1]
            found, tries = ring_maybe[slot] and _contains(indices, start, end, j), 1
            while found and tries < MAX_NEGATIVE_TRIES:
                retry, j = _draw(retry, indices, n_items, popular)
                found, tries = _contains(indices, start, end, j), tries + 1
            if found:
                skipped += 1
                continue
        elif j == i:
            skipped += 1
            continue
        bi, bj = item_bias[i], item_bias[j]
        score = _score(X, u, Y, i, j) + bi - bj
        if score > 0:
            correct += 1
        e = np.float64(score)
        if e > 80.0:
            e = 80.0
        elif e < -80.0:
            e = -80.0
        z = np.float32(1.0 / (1.0 + math.exp(e)))  # d ln sigmoid(score) / d score
        for f in range(k):
            xf, yif, yjf = X[u, f], Y[i, f], Y[j, f]
            X[u, f] = xf + lr * (z * (yif - yjf) - reg * xf)
            Y[i, f] = yif + lr * (z * xf - reg * yif)
            Y[j, f] = yjf + lr * (-z * xf - reg * yjf)
        item_bias[i] = bi + lr * (z - reg_bias * bi)
        item_bias[j] = bj + lr * (-z - reg_bias * bj)
    return correct, skipped


@njit(parallel=True, cache=True)
def _bpr_kernel(indptr, indices, nnz_user, X, Y, item_bias, lr, reg, reg_bias, sizes, seed, verify, popular, seen):
    n_chunks = sizes.shape[0]
    counts = np.zeros((n_chunks, 2), np.int64)
    for c in prange(n_chunks):
        counts[c, 0], counts[c, 1] = _bpr_chunk(
            indptr, indices, nnz_user, X, Y, item_bias, lr, reg, reg_bias, sizes[c],
            _stream(seed, 3 * c), _stream(seed, 3 * c + 1), _stream(seed, 3 * c + 2), verify, popular, seen)
    return counts[:, 0].sum(), counts[:, 1].sum()


@njit(cache=True)
def _bpr_serial(indptr, indices, nnz_user, X, Y, item_bias, lr, reg, reg_bias, sizes, seed, verify, popular, seen):
    """`_bpr_kernel` for one chunk, without a parallel launch."""
    return _bpr_chunk(indptr, indices, nnz_user, X, Y, item_bias, lr, reg, reg_bias, sizes[0],
                      _stream(seed, 0), _stream(seed, 1), _stream(seed, 2), verify, popular, seen)


def bpr_epoch(indptr, indices, nnz_user, X, Y, item_bias, lr: float, reg: float, reg_bias: float,
              n_samples: int, seed: int, verify_negatives: bool, n_threads: int,
              popular_negatives: bool = False, seen: np.ndarray | None = None) -> tuple[int, int]:
    """One Hogwild BPR-SGD epoch of `n_samples` triples over `n_threads` chunks; returns (n_correct, n_skipped).

    Each triple is an observed (u, i) drawn uniformly over the stored entries and a negative j drawn
    uniformly over items (or, with `popular_negatives`, in proportion to item popularity, as implicit
    does). With `verify_negatives` j is re-drawn while it is in u's row (a sample is skipped after
    MAX_NEGATIVE_TRIES draws), else a sample with j == i is skipped. x_u, y_i, y_j and the item
    biases then take one ascent step on ln sigmoid(x_uij) with L2 shrinkage. n_correct counts
    triples with x_uij > 0 before their update: n_correct / (n_samples - n_skipped) estimates the
    training AUC. `nnz_user` is `nnz_rows(indptr)`; each row's indices must be sorted. `seen` is
    `seen_filter(indptr, indices)`, built once per fit (it is built here when missing).
    """
    _check(X, Y, item_bias)
    if indices.shape[0] == 0 or Y.shape[0] < 2 or n_samples <= 0:
        return 0, 0
    sizes = np.array(_chunk_sizes(int(n_samples), _epoch_chunks(n_threads)), np.int64)
    lr, reg, reg_bias = np.float32(lr), np.float32(reg), np.float32(reg_bias)
    verify, popular = bool(verify_negatives), bool(popular_negatives)
    if not verify:
        seen = np.zeros(16, np.uint32)
    elif seen is None:
        seen = seen_filter(indptr, indices)
    if sizes.shape[0] == 1:  # skip the parallel launch, which costs milliseconds on a busy machine
        correct, skipped = _bpr_serial(indptr, indices, nnz_user, X, Y, item_bias, lr, reg, reg_bias, sizes,
                                       _seed64(seed), verify, popular, seen)
    else:
        with _dynamic_schedule():
            correct, skipped = _bpr_kernel(indptr, indices, nnz_user, X, Y, item_bias, lr, reg, reg_bias, sizes,
                                           _seed64(seed), verify, popular, seen)
    return int(correct), int(skipped)


def bpr_epoch_ref(indptr, indices, nnz_user, X, Y, item_bias, lr, reg, reg_bias, n_samples, seed,
                  verify_negatives, n_threads=1, popular_negatives=False) -> tuple[int, int]:
    """Reference twin of `bpr_epoch`: the same draws and float32 arithmetic, one sample at a time."""
    if len(indices) == 0 or Y.shape[0] < 2 or n_samples <= 0:
        return 0, 0
    lr, reg, reg_bias = np.float32(lr), np.float32(reg), np.float32(reg_bias)

    def draw(stream):
        return int(indices[stream.below(len(indices))]) if popular_negatives else stream.below(Y.shape[0])

    correct = skipped = 0
    for c, n in enumerate(_chunk_sizes(int(n_samples), _epoch_chunks(n_threads))):
        pos, neg, retry = (_StreamRef(int(seed) & _MASK64, 3 * c + t) for t in range(3))
        for _ in range(n):
            idx = pos.below(len(indices))
            u, i = int(nnz_user[idx]), int(indices[idx])
            j = draw(neg)
            row = indices[indptr[u]:indptr[u + 1]]
            tries = 1
            while verify_negatives and j in row and tries < MAX_NEGATIVE_TRIES:
                j = draw(retry)
                tries += 1
            if (verify_negatives and j in row) or (not verify_negatives and j == i):
                skipped += 1
                continue
            bi, bj = item_bias[i], item_bias[j]
            score = _score_ref(X, u, Y, i, j) + bi - bj
            correct += int(score > 0)
            z = np.float32(1.0 / (1.0 + math.exp(min(max(float(score), -80.0), 80.0))))
            xu, yi, yj = X[u].copy(), Y[i].copy(), Y[j].copy()
            X[u] = xu + lr * (z * (yi - yj) - reg * xu)
            Y[i] = yi + lr * (z * xu - reg * yi)
            Y[j] = yj + lr * (-z * xu - reg * yj)
            item_bias[i] = bi + lr * (z - reg_bias * bi)
            item_bias[j] = bj + lr * (-z - reg_bias * bj)
    return correct, skipped


# ---------------------------------------------------------------- sampled AUC


@njit(parallel=True, cache=True)
def _auc_kernel(indptr, indices, X, Y, item_bias, sizes, seed):
    n_chunks = sizes.shape[0]
    wins = np.zeros(n_chunks)
    valid = np.zeros(n_chunks, np.int64)
    nnz, n_items = indices.shape[0], Y.shape[0]
    for c in prange(n_chunks):
        state = _stream(seed, c)
        for _ in range(sizes[c]):
            state, idx = _below(state, nnz)
            u = np.searchsorted(indptr, idx, side="right") - 1
            i = indices[idx]
            state, j = _below(state, n_items)
            found, tries = _contains(indices, indptr[u], indptr[u + 1], j), 1
            while found and tries < MAX_NEGATIVE_TRIES:
                state, j = _below(state, n_items)
                found, tries = _contains(indices, indptr[u], indptr[u + 1], j), tries + 1
            if found:
                continue
            score = _score(X, u, Y, i, j) + item_bias[i] - item_bias[j]
            wins[c] += 1.0 if score > 0 else (0.5 if score == 0 else 0.0)
            valid[c] += 1
    return wins.sum(), valid.sum()


def bpr_auc(indptr, indices, X, Y, item_bias, n_samples: int, seed: int) -> float:
    """Sampled AUC: how often an observed (u, i) outscores a random unobserved j for the same user.

    Ties count one half; NaN when no valid triple could be drawn. Deterministic for a given seed,
    whatever the thread count. Pass held-out pairs as the CSR to estimate test AUC (then j is only
    checked against those rows).
    """
    _check(X, Y, item_bias)
    if indices.shape[0] == 0 or n_samples <= 0:
        return float("nan")
    sizes = np.array(_chunk_sizes(int(n_samples), AUC_CHUNKS), np.int64)
    with _dynamic_schedule():
        wins, valid = _auc_kernel(indptr, indices, X, Y, item_bias, sizes, _seed64(seed))
    return float(wins / valid) if valid else float("nan")


def bpr_auc_ref(indptr, indices, X, Y, item_bias, n_samples, seed) -> float:
    """Reference twin of `bpr_auc`: the same draws and float32 scores in plain Python."""
    if len(indices) == 0 or n_samples <= 0:
        return float("nan")
    wins, valid = 0.0, 0
    for c, n in enumerate(_chunk_sizes(int(n_samples), AUC_CHUNKS)):
        rng = _StreamRef(int(seed) & _MASK64, c)
        for _ in range(n):
            idx = rng.below(len(indices))
            u = int(np.searchsorted(indptr, idx, side="right")) - 1
            i = int(indices[idx])
            row = indices[indptr[u]:indptr[u + 1]]
            j = rng.below(Y.shape[0])
            tries = 1
            while j in row and tries < MAX_NEGATIVE_TRIES:
                j = rng.below(Y.shape[0])
                tries += 1
            if j in row:
                continue
            score = _score_ref(X, u, Y, i, j) + item_bias[i] - item_bias[j]
            wins += 1.0 if score > 0 else (0.5 if score == 0 else 0.0)
            valid += 1
    return wins / valid if valid else float("nan")
