"""Train a model on a dataset (or one part of a split) and save it as a run."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from recsys_cli.artifacts import ArtifactStore, check_run_name

if TYPE_CHECKING:
    from recsys_cli.tracking import MlflowOptions


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


def train_run(
    model_name: str,
    dataset_name: str,
    *,
    split: str | None = None,
    params: dict[str, Any] | None = None,
    preset: str | None = None,
    seed: int = 42,
    run_name: str | None = None,
    data_dir=None,
    artifacts_dir=None,
    force: bool = False,
    progress=None,
    mlflow: MlflowOptions | None = None,
    engine: str = "local",
    spark=None,
) -> dict[str, Any]:
    """Train and persist; fails before training if the run exists and force is False.

    mlflow: also log the run (params, timings, tags, its folder) to MLflow; a logging failure only warns.
    engine: "local" (our kernels) or "spark" (als/ials on Spark MLlib, options `spark`: a SparkOptions).
    """
    if engine == "spark":  # the Spark engine reads, trains and saves a standard run itself
        from recsys_cli.spark.train import train_spark_run

        return train_spark_run(model_name, dataset_name, split=split, params=params, preset=preset, seed=seed,
                               run_name=run_name, data_dir=data_dir, artifacts_dir=artifacts_dir, force=force,
                               progress=progress, mlflow=mlflow, spark=spark)
    if engine != "local":
        from recsys_cli.errors import UsageError

        raise UsageError(f"unknown engine {engine!r}; use local or spark")
    from recsys_cli.data.dataset import load_dataset
    from recsys_cli.models.registry import create_model

    model = create_model(model_name, params, preset)
    run = check_run_name(run_name or default_run_name(model_name, dataset_name, split))
    store = ArtifactStore(artifacts_dir)
    store.check_writable(run, force=force)  # before the work, not after it
    ds = load_dataset(dataset_name, data_dir)
    data = ds.interactions(split, "train")
    if progress is not None:
        progress.log(
            f"training {model_name} on {dataset_name}"
            + (f" split {split}" if split else " (all ratings)")
            + f": {len(data):,} ratings, {data.n_users:,} users, {data.n_items:,} items"
        )
    model, seconds = fit_model(model, data, seed=seed, progress=progress)
    path = store.save(
        run,
        model,
        dataset=dataset_name,
        fingerprint=ds.fingerprint,
        split=split,
        seed=seed,
        train_seconds=seconds,
        titles=ds.titles(),
        extra={"preset": preset, "n_train_ratings": len(data)},
        force=force,
    )
    from recsys_cli import ledger

    entry = dict(
        run=run, model=model_name, params=model.config.to_dict(), seed=seed,
        dataset=dataset_name, fingerprint=ds.fingerprint, split=split,
        timings={"train_seconds": round(seconds, 4)},
    )
    ledger.record("train", root=artifacts_dir, **entry)
    if mlflow is not None:
        from recsys_cli.tracking import log_run

        log_run(mlflow, "train", run_path=path, **entry)
    return {
        "run": run,
        "model": model_name,
        "dataset": dataset_name,
        "split": split,
        "seed": seed,
        "train_ratings": len(data),
        "train_seconds": round(seconds, 3),
        "path": str(path),
        "config": model.config.to_dict(),
        "fit_info": model.fit_info,
    }
