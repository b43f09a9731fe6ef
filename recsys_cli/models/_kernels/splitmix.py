"""SplitMix64 random streams for Numba kernels, with pure-Python twins (one implementation for the project).

A stream is a uint64 state advanced by the golden-ratio increment and passed through the
SplitMix64 finaliser (Steele, Lea & Flood 2014). Kernels derive one independent stream per
chunk or per user from a seed, so results never depend on the thread count.
"""

from __future__ import annotations

import math

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


# ---------------------------------------------------------------- standard normals (ziggurat)
#
# Marsaglia & Tsang's ziggurat (2000) over 256 layers of equal area ZIG_V under exp(-x^2/2), drawing from
# a stream: one 64-bit output gives the layer (8 bits), the sign (1 bit) and a 53-bit uniform; about 99%
# of draws take the first branch (one multiply, one compare), the rest a wedge test or the tail (x > R).

ZIG_N = 256
ZIG_R = 3.6541528853610088
ZIG_V = 0.00492867323399


def _zig_tables() -> tuple[np.ndarray, np.ndarray]:
    """Layer widths x[0..N] (x[0] = V / f(R): the base layer's rectangle plus tail; x[N] = 0) and f(x)."""
    import math

    x = np.zeros(ZIG_N + 1)
    x[0] = ZIG_V / math.exp(-0.5 * ZIG_R * ZIG_R)
    x[1] = ZIG_R
    for i in range(1, ZIG_N - 1):
        x[i + 1] = math.sqrt(-2.0 * math.log(ZIG_V / x[i] + math.exp(-0.5 * x[i] * x[i])))
    x[ZIG_N] = 0.0
    return x, np.exp(-0.5 * x * x)


ZIG_X, ZIG_F = _zig_tables()
_U8, _U9, _U11, _U255 = np.uint64(8), np.uint64(9), np.uint64(11), np.uint64(255)
_INV53 = 2.0 ** -53


@njit(cache=True, inline="always")
def _uniform53(state):
    """Advance the stream; (state, uniform in (0, 1])."""
    state, z = next64(state)
    return state, (np.float64(z >> _U11) + 1.0) * _INV53


@njit(cache=True)
def normal(state):
    """Advance the stream; return (state, a standard normal draw)."""
    while True:
        state, z = next64(state)
        i = np.int64(z & _U255)
        u = np.float64(z >> _U11) * _INV53  # [0, 1)
        neg = ((z >> _U8) & np.uint64(1)) != np.uint64(0)
        x = u * ZIG_X[i]
        if x < ZIG_X[i + 1]:  # inside the layer's rectangle below the next layer
            return state, -x if neg else x
        if i == 0:  # the tail beyond R
            while True:
                state, u1 = _uniform53(state)
                state, u2 = _uniform53(state)
                t = -math.log(u1) / ZIG_R
                if -2.0 * math.log(u2) > t * t:
                    return state, -(ZIG_R + t) if neg else ZIG_R + t
        state, u2 = _uniform53(state)
        if ZIG_F[i + 1] + u2 * (ZIG_F[i] - ZIG_F[i + 1]) < math.exp(-0.5 * x * x):  # the wedge
            return state, -x if neg else x


def normal_py(state: int) -> tuple[int, float]:
    """Pure-Python twin of `normal`."""
    import math

    def uniform53(state):
        state, z = next64_py(state)
        return state, ((z >> 11) + 1.0) * _INV53

    while True:
        state, z = next64_py(state)
        i = z & 255
        u = (z >> 11) * _INV53
        neg = (z >> 8) & 1
        x = u * float(ZIG_X[i])
        if x < ZIG_X[i + 1]:
            return state, -x if neg else x
        if i == 0:
            while True:
                state, u1 = uniform53(state)
                state, u2 = uniform53(state)
                t = -math.log(u1) / ZIG_R
                if -2.0 * math.log(u2) > t * t:
                    return state, -(ZIG_R + t) if neg else ZIG_R + t
        state, u2 = uniform53(state)
        if ZIG_F[i + 1] + u2 * (ZIG_F[i] - ZIG_F[i + 1]) < math.exp(-0.5 * x * x):
            return state, -x if neg else x
