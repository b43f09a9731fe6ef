"""The least time an exact `fm` sweep spends on its `implicit` vectors, next to one `ials` iteration.

    python -m recsys_cli.bench.fm_floor [--scale 25m] [--factors 64] [--iterations 3]

`fm` (MCMC) draws the `implicit` group's vectors one factor at a time (libFM's update; see
models/fm.py): for each factor, each implicit feature j (an item) reads the running sums of
every user who rated j, draws its value, and writes the change back to those users before the
next feature reads them. So a sweep makes at least 2 x factors x ratings visits of a user's
sums, in order (the next feature needs the writes). This times exactly that much and no more
(two floats read and one written per visit, no arithmetic of the draw, nothing else of the
sweep) on the benchmark's own training ratings, and an `ials` fit on the same ratings in the
same process, and prints both and their ratio: a floor no implementation of the exact draw
can go under on this machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _kernel():
    from numba import njit

    @njit(cache=True)
    def visits(indptr, users, sums, factors):  # pragma: no cover - compiled
        drift = 0.0
        for _ in range(factors):
            for j in range(len(indptr) - 1):
                a = 0.0
                b = 0.0
                for p in range(indptr[j], indptr[j + 1]):
                    u = users[p]
                    a += sums[u, 0]
                    b += sums[u, 1]
                change = np.float32(1e-9 * (a - b))  # depends on the reads, so they cannot be skipped
                for p in range(indptr[j], indptr[j + 1]):
                    sums[users[p], 0] += change
                drift += change
        return drift

    return visits


def feature_major(users: np.ndarray, items: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(indptr, users) of the item-major lists: item j's raters are users[indptr[j]:indptr[j+1]], ascending."""
    order = np.lexsort((users, items))
    indptr = np.zeros(n_items + 1, dtype=np.int64)
    np.cumsum(np.bincount(items, minlength=n_items), out=indptr[1:])
    return indptr, np.ascontiguousarray(users[order], dtype=np.int32)


def measure(scale: str = "25m", factors: int = 64, iterations: int = 3, seed: int = 42, data_dir=None) -> dict:
    from recsys_cli.bench.datasets import load_splits, parse_scale, prepare
    from recsys_cli.models.registry import create_model
    from recsys_cli.runtime import compute_threads

    data = prepare(parse_scale(scale), data_dir=data_dir, seed=seed)
    train = load_splits(data.name, data.data_dir, seed).train["random"]
    indptr, users = feature_major(train.users, train.items, train.n_items)
    sums = np.zeros((train.n_users, 2), dtype=np.float32)
    visits = _kernel()
    visits(indptr[:2], users, sums, 1)  # compile
    t0 = time.perf_counter()
    visits(indptr, users, sums, factors)
    floor = time.perf_counter() - t0
    model = create_model("ials", {"factors": factors, "iterations": iterations})
    with compute_threads():
        model.fit(train, seed=seed)
    ials = float(model.fit_info["seconds_per_iteration"])
    return {"dataset": data.name, "ratings": len(train), "factors": factors, "visits": 2 * factors * len(train),
            "floor_seconds": floor, "ns_per_visit": floor / (2 * factors * len(train)) * 1e9,
            "ials_seconds_per_iteration": ials, "ratio": floor / ials}


def main(argv: list[str] | None = None) -> None:
    from recsys_cli.bench.machine import machine_info

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="25m")
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=3, help="ials iterations (their median is reported)")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)
    out = measure(args.scale, args.factors, args.iterations, args.seed)
    m = machine_info()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · {m.get('cpu')}, {m.get('cores')} cores")
    print(f"{out['dataset']}: {out['ratings']:,} training ratings, {out['factors']} factors")
    print(f"  implicit-vector visits alone: {out['floor_seconds']:.2f} s a sweep "
          f"({out['visits'] / 1e9:.2f} G visits, {out['ns_per_visit']:.2f} ns each)")
    print(f"  ials: {out['ials_seconds_per_iteration']:.2f} s an iteration; floor / ials = {out['ratio']:.1f}x")


if __name__ == "__main__":
    main()
