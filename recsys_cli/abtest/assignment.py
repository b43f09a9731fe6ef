"""Deterministic arm assignment: a salted SHA-256 hash of the user id, the same on every machine.

A user's hash fraction is `sha256(f"{salt}:{user_id}")` read as a number in [0, 1). Arm B gets
the users with fraction < traffic, so raising the traffic only moves users from A to B (a ramp-up
never reshuffles users who were already in B), and a new salt gives an independent assignment.
"""

from __future__ import annotations

import hashlib

import numpy as np

from recsys_cli.errors import UsageError

DEFAULT_SALT = "recsys-abtest"
ARM_A, ARM_B = 0, 1


def hash_fraction(user_ids, salt: str = DEFAULT_SALT) -> np.ndarray:
    """Each id's salted SHA-256 hash as a float64 in [0, 1) (top 53 bits, exact in a double)."""
    ids = np.asarray(user_ids, dtype=np.int64).reshape(-1)
    prefix = f"{salt}:".encode()
    out = np.empty(len(ids), dtype=np.float64)
    sha = hashlib.sha256
    for k, uid in enumerate(ids.tolist()):
        digest = sha(prefix + str(uid).encode()).digest()
        out[k] = (int.from_bytes(digest[:8], "big") >> 11) / 9007199254740992.0  # 2**53
    return out


def check_traffic(traffic: float) -> float:
    """The share of users sent to arm B; UsageError unless strictly between 0 and 1."""
    if not (0.0 < traffic < 1.0):
        raise UsageError(f"--traffic is the share of users in arm B and must be between 0 and 1 (exclusive), got {traffic}")
    return float(traffic)


def assign_arms(user_ids, salt: str = DEFAULT_SALT, traffic: float = 0.5) -> np.ndarray:
    """Arm per user as int8: 0 = A, 1 = B (B when the hash fraction is below `traffic`)."""
    traffic = check_traffic(traffic)
    return (hash_fraction(user_ids, salt) < traffic).astype(np.int8)


def sample_users(user_ids, n: int | None, seed: int) -> np.ndarray:
    """`n` ids drawn without replacement with the seed (all when n is None), sorted.

    More than the pool is a UsageError naming its size: it silently ran on the whole pool, a much
    smaller experiment than the one asked for (and planned with `abtest plan`).
    """
    ids = np.unique(np.asarray(user_ids, dtype=np.int64))
    if n is not None and n > len(ids):
        raise UsageError(f"--users {n:,} is more than the {len(ids):,} eligible users (those with held-out ratings); "
                         f"give at most {len(ids):,}, or leave --users out to use them all")
    if n is None or n == len(ids):
        return ids
    if n < 2:
        raise UsageError(f"--users must be at least 2 (one per arm at the very least), got {n}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(ids, size=n, replace=False))
