"""SplitMix64 random streams for Numba kernels, with pure-Python twins (one implementation for the project).

A stream is a uint64 state advanced by the golden-ratio increment and passed through the
SplitMix64 finaliser (Steele, Lea & Flood 2014). Kernels derive one independent stream per
chunk or per user from a seed, so results never depend on the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
U_GOLDEN, U_MIX1, U_MIX2 = np.uint64(GOLDEN), np.uint64(MIX1), np.uint64(MIX2)
U27, U30, U31, U32 = np.uint64(27), np.uint64(30), np.uint64(31), np.uint64(32)


@njit(cache=True, inline="always")
def mix(z):
    """The SplitMix64 finaliser of a uint64."""
    z = (z ^ (z >> U30)) * U_MIX1
    z = (z ^ (z >> U27)) * U_MIX2
    return z ^ (z >> U31)


@njit(cache=True, inline="always")
def stream(seed, chunk):
    """Initial state of the chunk-th stream of a seed."""
    return mix(seed + U_GOLDEN * np.uint64(chunk + 1))


@njit(cache=True, inline="always")
def next64(state):
    """Advance the stream: (new state, 64 random bits)."""
    state = state + U_GOLDEN
    return state, mix(state)


@njit(cache=True, inline="always")
def below(state, n):
    """Advance the stream; return (state, uniform int in [0, n)) for 0 < n < 2**32."""
    state, z = next64(state)
    return state, np.int64(((z >> U32) * np.uint64(n)) >> U32)


def mix_py(z: int) -> int:
    """Pure-Python twin of `mix`."""
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    return z ^ (z >> 31)


def next64_py(state: int) -> tuple[int, int]:
    """Pure-Python twin of `next64`."""
    state = (state + GOLDEN) & MASK64
    return state, mix_py(state)


class StreamRef:
    """Pure-Python twin of a kernel stream (`stream` then `below`)."""

    def __init__(self, seed: int, chunk: int) -> None:
        self.state = mix_py((seed + GOLDEN * (chunk + 1)) & MASK64)

    def below(self, n: int) -> int:
        self.state, z = next64_py(self.state)
        return ((z >> 32) * n) >> 32


def seed64(seed: int) -> np.uint64:
    """A Python int seed as the kernels' uint64."""
    return np.uint64(int(seed) & MASK64)
