"""Run evaluations: a saved run on its split's test set, or several models on identical folds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from recsys_cli.data.dataset import Dataset, Interactions, load_dataset
from recsys_cli.errors import ArtifactError, DataError, UsageError
from recsys_cli.evaluation.protocols import EvalSettings, score_model


def cv_folds(full: Interactions, *, cv: int | None, seed: int) -> tuple[dict, Iterator[tuple[Interactions, Interactions]]]:
    """(protocol, generator of (train, test)) for seeded K-fold CV over the ratings of `full`."""
    from recsys_cli.data.splits import kfold

    if isinstance(cv, bool) or not isinstance(cv, (int, np.integer)) or cv < 2:
        raise UsageError(f"cv (--cv) must be a whole number of folds, at least 2, got {cv!r}")
    if cv > len(full):
        raise UsageError(f"--cv {cv} is more folds than there are ratings ({len(full):,})")
    codes = kfold(len(full), k=int(cv), seed=seed)
    protocol = {"kind": "cv", "folds": int(cv), "seed": seed}

    def gen():
        for f in range(cv):
            yield full.subset(codes != f, split=f"cv{cv}:{f}"), full.subset(codes == f, split=f"cv{cv}:{f}")

    return protocol, gen()


def folds(ds: Dataset, *, cv: int | None, split: str | None, seed: int) -> tuple[dict, Iterator[tuple[Interactions, Interactions]]]:
    """(protocol description, generator of (train, test)) for --cv K or --split NAME."""
    if (cv is None) == (split is None):
        raise UsageError("give exactly one of --cv K or --split NAME")
    full = ds.interactions()
    if cv is not None:
        return cv_folds(full, cv=cv, seed=seed)
    base = split.partition(":")[0]
    info = ds.meta.get("splits", {}).get(base)
    if info is None:
        raise UsageError(f"unknown split {base!r} of {ds.name}; available: {', '.join(ds.split_names) or 'none'}")
    if info.get("kind") == "kfold" and ":" not in split:
        k = int(info.get("params", {}).get("k", 5))
        protocol = {"kind": "cv", "split": base, "folds": k}
        names = [f"{base}:{f}" for f in range(k)]
    else:
        protocol = {"kind": "holdout", "split": split, "split_kind": info.get("kind")}
        names = [split]

    def gen_split():
        for name in names:
            yield full.subset(ds.split_mask(name, "train"), split=name), full.subset(ds.split_mask(name, "test"), split=name)

    return protocol, gen_split()


def _create(label: str, params: dict[str, Any]):
    """A model from `NAME` or `NAME@PRESET` (e.g. svd@surprise for Surprise's SVD defaults)."""
    from recsys_cli.models.registry import create_model

    name, _, preset = label.partition("@")
    return create_model(name, params, preset=preset or None)


def compare_models(
    specs: list[tuple[str, dict[str, Any]]],
    dataset: str,
    *,
    cv: int | None = None,
    split: str | None = None,
    seed: int = 42,
    settings: EvalSettings | None = None,
    data_dir=None,
    progress=None,
) -> list[dict[str, Any]]:
    """Train and score each (model name, params) on the same folds of a processed dataset; one result per model.

    A name may carry a preset, `svd@surprise`, so a preset and its peer share one table.
    """
    ds = load_dataset(dataset, data_dir)
    [_create(name, params) for name, params in specs]  # validate params before reading data
    protocol, fold_iter = folds(ds, cv=cv, split=split, seed=seed)
    return compare_on_folds(specs, protocol, fold_iter, dataset=dataset, fingerprint=ds.fingerprint, seed=seed,
                            settings=settings, progress=progress)


def compare_on_folds(
    specs: list[tuple[str, dict[str, Any]]],
    protocol: dict[str, Any],
    fold_iter: Iterator[tuple[Interactions, Interactions]],
    *,
    dataset: str,
    fingerprint: str,
    seed: int = 42,
    settings: EvalSettings | None = None,
    progress=None,
) -> list[dict[str, Any]]:
    """Train a fresh model per (spec, fold) and score it on the fold's test part; one result per spec."""
    from recsys_cli.evaluation.metrics import mean_std
    from recsys_cli.training import fit_model

    settings = settings or EvalSettings()
    models = [(name, _create(name, params)) for name, params in specs]  # validate params first
    per_model: list[list[dict]] = [[] for _ in specs]
    fit_times: list[list[float]] = [[] for _ in specs]
    if progress is not None:  # one step per (fold, model): the bar's ETA is honest about the whole comparison
        progress.start(int(protocol.get("folds") or 1) * len(specs), "evaluate")
    for f, (train, test) in enumerate(fold_iter):
        for m, (name, params) in enumerate(specs):
            model = _create(name, params)
            _, secs = fit_model(model, train, seed=seed)
            scores = score_model(model, train, test, settings)
            fit_times[m].append(secs)
            per_model[m].append(scores)
            if progress is not None:
                shown = {k: v for k, v in scores.items() if k in ("rmse", "mae") or k.startswith("ndcg@")}
                progress.advance(1)
                progress.log(
                    f"fold {f + 1}: {name} fit {secs:.2f} s  "
                    + "  ".join(f"{k}={v:.4f}" for k, v in shown.items())
                )
    results = []
    for m, (name, _params) in enumerate(specs):
        fold_metrics = [{k: v for k, v in s.items() if k != "predict_seconds"} for s in per_model[m]]
        means, stds = mean_std(fold_metrics)
        results.append(
            {
                "model": name,
                "dataset": dataset,
                "fingerprint": fingerprint,
                "protocol": protocol,
                "relevance": settings.describe(),
                "params": models[m][1].config.to_dict(),
                "metrics": means,
                "metrics_std": stds,
                "folds": fold_metrics,
                "fit_seconds": float(np.mean(fit_times[m])),
                "predict_seconds": float(np.mean([s["predict_seconds"] for s in per_model[m]])),
                "seed": seed,
            }
        )
    return results


def evaluate_run(run: str, *, data_dir=None, artifacts_dir=None, settings: EvalSettings | None = None) -> dict[str, Any]:
    """Score a saved run on the test part of the split it was trained on."""
    from recsys_cli.artifacts import ArtifactStore

    settings = settings or EvalSettings()
    store = ArtifactStore(artifacts_dir)
    manifest = store.manifest(run)
    split = manifest.get("split")
    if not split:
        raise UsageError(
            f"run {run!r} was trained on every rating (no --split), so there is no held-out data; "
            "train with --split NAME, or use `recsys evaluate --model M --dataset D --cv 5`"
        )
    ds = load_dataset(manifest["dataset"], data_dir)
    model, manifest = store.load(run, expect_fingerprint=ds.fingerprint)
    ds.check_run_split(run, manifest)
    train = ds.interactions(split, "train")
    test = ds.interactions(split, "test")
    if len(test) == 0:  # as abtest says: there is nothing to score (it printed "metrics": {} and exit 0)
        raise DataError(f"split {split!r} of {manifest['dataset']!r} has no held-out (test) ratings to score {run!r} on")
    t0 = time.perf_counter()
    scores = score_model(model, train, test, settings)
    metrics = {k: v for k, v in scores.items() if k != "predict_seconds"}
    try:
        store.update_metrics(run, metrics)
    except (OSError, ArtifactError) as exc:  # a read-only store: the metrics are still printed
        import sys

        print(f"warning: metrics not saved into run {run!r} ({getattr(exc, 'strerror', None) or exc})", file=sys.stderr)
    return {
        "run": run,
        "model": manifest["model"],
        "dataset": manifest["dataset"],
        "fingerprint": ds.fingerprint,
        "protocol": {"kind": "holdout", "split": split},
        "relevance": settings.describe(),
        "params": manifest.get("config", {}),
        "metrics": metrics,
        "metrics_std": {k: None for k in metrics},  # one holdout has no spread: null, not 0
        "fit_seconds": manifest.get("train_seconds"),
        "predict_seconds": time.perf_counter() - t0,
        "seed": manifest.get("seed"),
    }
