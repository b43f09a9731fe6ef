"""A Bloom-style filter of observed (user, item) pairs: "is this negative a liked item?" in one cache line.

BPR with verified negatives asks that question for every draw; a binary search in the user's
sorted row costs a few cache misses, this filter answers most draws with one 64-byte block
(three bits per pair chosen from a SplitMix64 hash, ~8 bits per stored pair, built once per
fit). It never says "unseen" for a stored pair; a "maybe" is then checked exactly.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from recsys_cli.models._kernels.linalg import prefetch as _prefetch
from recsys_cli.models._kernels.splitmix import U32 as _U32
from recsys_cli.models._kernels.splitmix import U_GOLDEN as _U_GOLDEN
from recsys_cli.models._kernels.splitmix import mix as _mix

_AHEAD = 8  # entries between prefetching a filter word and setting it


@njit(cache=True, inline="always")
def seen_hash(u, j):
    return _mix(((np.uint64(u) << _U32) | np.uint64(j)) + _U_GOLDEN)


@njit(cache=True, inline="always")
def seen_word(seen, h, shift):
    """(word index, bit) of one of the pair's three bits; the block comes from the high half of h."""
    block = np.int64((h >> _U32) & np.uint64((seen.shape[0] >> 4) - 1))
    bit = np.int64((h >> np.uint64(shift)) & np.uint64(511))
    return (block << 4) + (bit >> 5), bit & 31


@njit(cache=True, inline="always")
def maybe_seen(seen, h):
    for shift in (0, 9, 18):
        word, bit = seen_word(seen, h, shift)
        if ((np.int64(seen[word]) >> bit) & 1) == 0:
            return False
    return True


@njit(cache=True)
def fill_seen(indptr, indices, seen):
    for u in range(indptr.shape[0] - 1):
        end = indptr[u + 1]
        for nz in range(indptr[u], end):
            if nz + _AHEAD < end:
                _prefetch(seen, seen_word(seen, seen_hash(u, indices[nz + _AHEAD]), 0)[0])
            h = seen_hash(u, indices[nz])
            for shift in (0, 9, 18):
                word, bit = seen_word(seen, h, shift)
                seen[word] |= np.uint32(1 << bit)


def seen_filter(indptr, indices) -> np.ndarray:
    """Filter of the observed pairs that lets `bpr_epoch` skip most negative checks: build once per fit.

    Pass it as `bpr_epoch(..., seen=...)` with the same indptr/indices; ~8 bits per stored entry.
    """
    n_blocks = 1
    while n_blocks * 64 < max(1, len(indices)):
        n_blocks *= 2
    seen = np.zeros(16 * n_blocks, np.uint32)
    fill_seen(indptr, indices, seen)
    return seen
