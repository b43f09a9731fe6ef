"""The one pattern for iterative fits: factor initialisation and the epoch/iteration loop.

An iterative model (`Recommender.iterative`) sets up its parameters with `init_factors` and
hands one step (an SGD epoch, or one ALS sweep) to `run_steps`, which drives progress,
checks every step's statistics (and any watched arrays) for NaN or infinity, raising one
`DivergedError` that names the hyperparameter to change, and returns the per-step history
for `fit_info`. The step's name, epoch or iteration, follows the config: a model with an
`epochs` parameter counts epochs, any other counts iterations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from recsys_cli.errors import DivergedError


def init_factors(rng: np.random.Generator, n_rows: int, n_factors: int, std: float, mean: float = 0.0) -> np.ndarray:
    """A float32 (n_rows, n_factors) matrix of N(mean, std^2) draws, straight from NumPy's float32 sampler."""
    out = rng.standard_normal((int(n_rows), int(n_factors)), dtype=np.float32)
    out *= np.float32(std)
    if mean:
        out += np.float32(mean)
    return out


def step_unit(model) -> str:
    """'epoch' for a model with an `epochs` parameter, else 'iteration'."""
    return "epoch" if "epochs" in model.Config.field_names() else "iteration"


def check_finite(model, values: Mapping[str, float] | None = None, arrays: Iterable[np.ndarray] = (), *,
                 at: str = "") -> None:
    """Raise DivergedError unless every value and every array is finite; `at` says where (e.g. 'epoch 3')."""
    bad = [k for k, v in (values or {}).items() if not math.isfinite(v)]
    if not bad and all(np.isfinite(a).all() for a in arrays):
        return
    what = f"{', '.join(bad)} not finite" if bad else "parameters not finite"
    where = f" at {at}" if at else ""
    raise DivergedError(f"{model.name} diverged{where} ({what}); {model.divergence_hint}")


def run_steps(
    model,
    progress,
    n_steps: int,
    step: Callable[[int], Mapping[str, float]],
    *,
    watch: Callable[[], Iterable[np.ndarray]] | None = None,
) -> dict[str, list[float]]:
    """Run `step(i)` for i in 0..n_steps-1 and return each statistic's history ({"train_rmse": [...]}).

    `step` does one epoch or iteration and returns its training statistics (may be empty);
    `watch` names arrays (the factors) that must stay finite when there is no loss to check.
    """
    unit = step_unit(model)
    progress.start(n_steps, f"{model.name} {unit}s")
    history: dict[str, list[float]] = {}
    for i in range(n_steps):
        stats = {k: float(v) for k, v in step(i).items()}
        check_finite(model, stats, watch() if watch else (), at=f"{unit} {i + 1}")
        for k, v in stats.items():
            history.setdefault(k, []).append(v)
        progress.advance(1, **{unit: i + 1}, **stats)
    return history
