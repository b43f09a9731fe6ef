"""Fitting under controlled threads, and run names; `recsys_cli.api.runs.train_run` trains and saves a run."""

from __future__ import annotations

import re
import time


def default_run_name(model: str, dataset: str, split: str | None) -> str:
    name = f"{model}-{dataset}" + (f"-{split}" if split else "")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")


def fit_model(model, data, *, seed: int, progress=None):
    """Fit under controlled threads; returns (model, seconds)."""
    from recsys_cli.runtime import compute_threads

    t0 = time.perf_counter()
    with compute_threads():
        model.fit(data, seed=seed, progress=progress)
    return model, time.perf_counter() - t0
