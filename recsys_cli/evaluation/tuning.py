"""Hyperparameter search: grid or seeded random search, K-fold CV on a tuning portion, holdout report.

Nested so the reported number is honest: a test part is held out first (a named split's test
part, else a fresh seeded 80/20 random holdout), every trial is scored by K-fold CV over the
remaining tuning portion only, and the best config is refitted on the whole tuning portion and
scored once on the held-out part. `holdout=False` tunes on every rating (optimistic: the best
CV score is then the only, and an upward-biased, estimate).

Search spaces (`--grid`, `--space`) are parsed in search_space.py.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys_cli.data.dataset import Interactions
from recsys_cli.errors import ConfigError, DataError, RecsysError, UsageError
from recsys_cli.evaluation.protocols import EvalSettings
from recsys_cli.evaluation.search_space import Distribution, grid_trials, random_trials

if TYPE_CHECKING:
    from recsys_cli.tracking import MlflowOptions

PLAIN_METRICS = ("rmse", "mae", "fcp", "auc")
RATING_METRICS = ("rmse", "mae", "fcp")
AT_K_METRICS = ("precision", "recall", "ndcg", "map", "map_capped", "mrr", "hit_rate",
                "coverage", "novelty", "popularity_bias", "diversity")
HOLDOUT_TEST = 0.2


# ----------------------------------------------------------------------------- metrics
def check_metric(metric: str) -> tuple[str, int | None]:
    """(base name, k) of a metric such as rmse or ndcg@10; UsageError listing known metrics."""
    base, at, k = metric.partition("@")
    if not at and base in PLAIN_METRICS:
        return base, None
    if at and base in AT_K_METRICS and k.isdigit() and int(k) >= 1:
        return base, int(k)
    known = ", ".join([*PLAIN_METRICS, *(f"{m}@K" for m in AT_K_METRICS)])
    raise UsageError(f"unknown metric {metric!r}; known metrics: {known}")


def lower_is_better(metric: str) -> bool:
    from recsys_cli.ledger import lower_is_better as lower

    return lower(metric)


def metric_settings(metric: str, relevance: str = "threshold", threshold: float = 4.0) -> EvalSettings:
    """The cheapest EvalSettings that still compute `metric` (trials only need that one)."""
    base, k = check_metric(metric)
    return EvalSettings(
        ks=(k or 10,), relevance=relevance, threshold=threshold,
        rating_metrics=base in RATING_METRICS, ranking_metrics=base not in RATING_METRICS,
        fcp=base == "fcp", auc=base == "auc",
    )


# ----------------------------------------------------------------------------- planning
def plan_trials(
    model: str,
    *,
    grid: dict[str, list[str]] | None = None,
    space: dict[str, Distribution] | None = None,
    n_random: int = 0,
    fixed: dict[str, Any] | None = None,
    seed: int = 42,
) -> list[dict[str, Any]]:
    """Every trial's params (tuned + fixed, typed), validated against the model config up front."""
    from recsys_cli.models.registry import create_model, get_model_class

    grid, space, fixed = grid or {}, space or {}, fixed or {}
    if grid and (space or n_random):
        raise UsageError("give either --grid (grid search) or --random N with --space (random search), not both")
    if n_random and not space:
        raise UsageError("--random N needs at least one --space key=distribution(...)")
    if space and not n_random:
        raise UsageError("--space needs --random N (the number of trials to draw)")
    if not grid and not space:
        raise UsageError("nothing to tune: give --grid key=v1,v2 or --random N --space key=dist(a,b)")
    fields = get_model_class(model).Config.field_names()
    for option, keys in (("--grid", grid), ("--space", space), ("--param", fixed)):
        for key in keys:
            if key.replace("-", "_") not in fields:
                raise ConfigError(f"{model}: {option} {key}: unknown parameter; valid parameters: {', '.join(fields)}")
    both = sorted(set(fixed) & (set(grid) | set(space)))
    if both:
        raise UsageError(f"{', '.join(both)} is both fixed with --param and tuned; drop one")
    raw = grid_trials(grid) if grid else random_trials(space, n_random, seed)
    trials = []
    for params in raw:
        merged = {**fixed, **params}
        config = create_model(model, merged).config.to_dict()  # ConfigError on a bad value
        trials.append({k: config[k] for k in merged})
    return trials


def tuning_portions(ds, *, split: str | None, holdout: bool, seed: int) -> tuple[Interactions, Interactions | None, dict]:
    """(tuning portion, held-out test part or None, description) with the two parts disjoint."""
    if split is not None:
        if not holdout:
            raise UsageError("--no-holdout tunes on every rating; it cannot be combined with --split")
        base = split.partition(":")[0]
        info = ds.meta.get("splits", {}).get(base)
        if info is None:
            raise UsageError(f"unknown split {base!r} of {ds.name}; available: {', '.join(ds.split_names) or 'none'}")
        if info.get("kind") == "kfold" and ":" not in split:
            raise UsageError(f"split {base!r} is k-fold: name one fold as {base}:0 (the tuning CV is --cv)")
        tune, test = ds.interactions(split, "train"), ds.interactions(split, "test")
        desc = {"kind": "split", "split": split}
    else:
        full = ds.interactions()
        if not holdout:
            return full, None, {"kind": "none", "note": "tuned on every rating: the CV score is optimistic"}
        from recsys_cli.data.splits import TEST, TRAIN, random_holdout

        part = random_holdout(len(full), test=HOLDOUT_TEST, seed=seed)
        tune, test = full.subset(part == TRAIN, split="tune"), full.subset(part == TEST, split="holdout")
        desc = {"kind": "random", "test": HOLDOUT_TEST, "seed": seed}
    if len(test) == 0:
        raise DataError(f"the held-out part of {split or 'the random holdout'} is empty")
    return tune, test, {**desc, "n_tune": len(tune), "n_test": len(test)}


# ----------------------------------------------------------------------------- running trials
@dataclass
class TrialContext:
    """Everything a trial needs; pickled once into each worker process."""

    model: str
    tune: Interactions
    fold_codes: np.ndarray
    cv: int
    seed: int
    metric: str
    settings: EvalSettings
    early_stopping: bool = False

    def fold(self, f: int) -> tuple[Interactions, Interactions]:
        train = self.tune.subset(self.fold_codes != f, split=f"tune-cv{self.cv}:{f}")
        return train, self.tune.subset(self.fold_codes == f, split=f"tune-cv{self.cv}:{f}")

    def fit_score(self, params: dict[str, Any], train: Interactions, test: Interactions) -> tuple[float, float]:
        """(metric on test, fit seconds) of one fit."""
        from recsys_cli.evaluation.protocols import score_model
        from recsys_cli.models.registry import create_model
        from recsys_cli.training import fit_model

        model, secs = fit_model(create_model(self.model, params), train, seed=self.seed)
        scores = score_model(model, train, test, self.settings)
        if self.metric not in scores:
            raise UsageError(f"{self.model} does not produce {self.metric} here; pick another --metric")
        return float(scores[self.metric]), secs


def _better(a: float, b: float | None, lower: bool) -> bool:
    if b is None or not math.isfinite(b):
        return math.isfinite(a)
    return math.isfinite(a) and (a < b if lower else a > b)


def _early_stop(ctx: TrialContext, params: dict[str, Any]) -> tuple[dict[str, Any], dict, tuple[float, float]]:
    """Pick epochs on fold 0 among 1/4, 1/2, 3/4 and all of the configured epochs, stopping at the
    first count that does not improve the metric; each count is a fresh fit (no warm start)."""
    from recsys_cli.models.registry import create_model

    total = int(create_model(ctx.model, params).config.epochs)
    counts = sorted({max(1, round(total * j / 4)) for j in (1, 2, 3, 4)})
    train, test = ctx.fold(0)
    lower = lower_is_better(ctx.metric)
    tried: dict[int, float] = {}
    best: tuple[int, float, float] | None = None
    for e in counts:
        score, secs = ctx.fit_score({**params, "epochs": e}, train, test)
        tried[e] = score
        if not _better(score, None if best is None else best[1], lower):
            break
        best = (e, score, secs)
    if best is None:
        best = (counts[0], tried[counts[0]], float("nan"))
    return {**params, "epochs": best[0]}, {"epochs_tried": tried, "chosen": best[0]}, best[1:]


def evaluate_trial(ctx: TrialContext, index: int, params: dict[str, Any]) -> dict[str, Any]:
    """Mean and std (ddof=0) of the metric over the CV folds; a failed fit is reported, not raised."""
    t0 = time.perf_counter()
    out: dict[str, Any] = {"trial": index, "params": dict(params)}
    try:
        first = None
        if ctx.early_stopping:
            params, out["early_stopping"], first = _early_stop(ctx, params)
            out["params"] = dict(params)
        scores, fits = [], []
        for f in range(ctx.cv):
            score, secs = first if (f == 0 and first is not None) else ctx.fit_score(params, *ctx.fold(f))
            scores.append(score)
            fits.append(secs)
    except RecsysError as exc:
        out.update(score=float("nan"), std=float("nan"), fold_scores=[], fit_seconds=None, error=str(exc))
    else:
        out.update(score=float(np.mean(scores)), std=float(np.std(scores)), fold_scores=scores,
                   fit_seconds=float(np.nanmean(fits)), error=None)
    out["seconds"] = time.perf_counter() - t0
    return out


_WORKER_CTX: TrialContext | None = None


def _init_worker(ctx: TrialContext) -> None:
    global _WORKER_CTX
    os.environ["RECSYS_THREADS"] = "1"  # J processes x 1 Numba thread, no oversubscription
    _WORKER_CTX = ctx


def _worker_trial(index: int, params: dict[str, Any]) -> dict[str, Any]:
    assert _WORKER_CTX is not None, "worker not initialised"
    return evaluate_trial(_WORKER_CTX, index, params)


def run_trials(ctx: TrialContext, trials: list[dict[str, Any]], *, jobs: int = 1,
               on_trial: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Evaluate every trial (in `jobs` spawned processes when > 1); results in trial order."""
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    results: list[dict[str, Any] | None] = [None] * len(trials)
    if jobs == 1 or len(trials) == 1:
        for i, params in enumerate(trials):
            results[i] = evaluate_trial(ctx, i, params)
            if on_trial:
                on_trial(results[i])
        return results  # type: ignore[return-value]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    mp = multiprocessing.get_context("spawn")  # fork after Numba started threads is unsafe
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(trials)), mp_context=mp,
                               initializer=_init_worker, initargs=(ctx,))
    try:
        futures = {pool.submit(_worker_trial, i, p): i for i, p in enumerate(trials)}
        for fut in as_completed(futures):
            res = fut.result()
            results[futures[fut]] = res
            if on_trial:
                on_trial(res)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)  # Ctrl-C or an error: drop queued trials
        raise
    pool.shutdown()
    return results  # type: ignore[return-value]


def best_trial(results: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The trial with the best finite score (lowest for errors); ties go to the earliest trial."""
    lower = lower_is_better(metric)
    best = None
    for res in results:
        if _better(res["score"], None if best is None else best["score"], lower):
            best = res
    if best is None:
        errors = sorted({r["error"] for r in results if r.get("error")})
        raise UsageError(f"every trial failed: {'; '.join(errors) or 'no finite ' + metric}")
    return best


# ----------------------------------------------------------------------------- the whole search
def tune(
    model: str,
    dataset: str,
    trials: list[dict[str, Any]],
    *,
    metric: str,
    cv: int = 3,
    split: str | None = None,
    holdout: bool = True,
    relevance: str = "threshold",
    threshold: float = 4.0,
    jobs: int = 1,
    early_stopping: bool = False,
    seed: int = 42,
    search: str = "grid",
    data_dir=None,
    artifacts_dir=None,
    on_trial: Callable[[dict[str, Any]], None] | None = None,
    mlflow: MlflowOptions | None = None,
) -> dict[str, Any]:
    """Run `trials` (from plan_trials) by K-fold CV on the tuning portion, record each in the
    ledger, refit the best on the tuning portion and score it on the held-out part.

    mlflow: also log the search to MLflow as it runs (a parent run, one nested run per trial as
    each finishes; `tracking.TuneLog`)."""
    from recsys_cli import ledger
    from recsys_cli.data.dataset import load_dataset
    from recsys_cli.data.splits import kfold
    from recsys_cli.evaluation.protocols import score_model
    from recsys_cli.models.registry import create_model, get_model_class
    from recsys_cli.tracking import TuneLog
    from recsys_cli.training import fit_model

    check_metric(metric)
    cls = get_model_class(model)
    if metric in RATING_METRICS and not cls.predicts_ratings:
        raise UsageError(f"{model} does not predict ratings; tune it on a ranking metric such as ndcg@10")
    if early_stopping and not (cls.epoch_based and "epochs" in cls.Config.field_names()):
        raise UsageError(f"--early-stopping needs an epoch-based model (with an epochs parameter); {model} is not")
    if cv < 2:
        raise UsageError(f"--cv needs at least 2 folds, got {cv}")
    settings = metric_settings(metric, relevance, threshold)
    ds = load_dataset(dataset, data_dir)
    tune_part, test_part, holdout_desc = tuning_portions(ds, split=split, holdout=holdout, seed=seed)
    if len(tune_part) < cv:
        raise DataError(f"the tuning portion has {len(tune_part)} ratings, fewer than --cv {cv}")
    codes = kfold(len(tune_part), k=cv, seed=seed)
    ctx = TrialContext(model, tune_part, codes, cv, seed, metric, settings, early_stopping)
    protocol = {"kind": "tune", "search": search, "cv": cv, "metric": metric, "seed": seed,
                "holdout": holdout_desc, "relevance": settings.describe(), "early_stopping": early_stopping}

    with TuneLog(mlflow, model=model, metric=metric, seed=seed, dataset=dataset, fingerprint=ds.fingerprint,
                 split=split, protocol={**protocol, "n_trials": len(trials)}) as log:

        def record_trial(res: dict[str, Any]) -> None:
            config = create_model(model, res["params"]).config.to_dict()
            ledger.record(
                "tune-trial", root=artifacts_dir, model=model, params=config, seed=seed, dataset=dataset,
                fingerprint=ds.fingerprint, split=split,
                protocol={**protocol, "trial": res["trial"], "error": res["error"]},
                metrics={} if res["error"] else {metric: res["score"], f"{metric}_std": res["std"]},
                timings={"fit_seconds": res["fit_seconds"], "seconds": round(res["seconds"], 4)},
            )
            log.trial({**res, "params": config})
            if on_trial:
                on_trial(res)

        results = run_trials(ctx, trials, jobs=jobs, on_trial=record_trial)
        best = best_trial(results, metric)
        out: dict[str, Any] = {
            "model": model, "dataset": dataset, "metric": metric,
            "direction": "minimize" if lower_is_better(metric) else "maximize",
            "search": search, "cv": cv, "seed": seed, "split": split,
            "n_tune_ratings": len(tune_part), "best_trial": best["trial"],
            "best_params": best["params"], "best_score": best["score"], "best_std": best["std"],
            "trials": [{k: r[k] for k in ("trial", "params", "score", "std", "fit_seconds", "fold_scores", "error")}
                       | ({"early_stopping": r["early_stopping"]} if "early_stopping" in r else {}) for r in results],
            "holdout": None,
        }
        best_model = create_model(model, best["params"])
        out["best_config"] = best_model.config.to_dict()
        if test_part is not None:
            ks = tuple(sorted({settings.ks[0], 10}))
            full = EvalSettings(ks=ks, relevance=relevance, threshold=threshold, fcp=metric == "fcp")
            _, secs = fit_model(best_model, tune_part, seed=seed)
            scores = {k: v for k, v in score_model(best_model, tune_part, test_part, full).items() if k != "predict_seconds"}
            out["holdout"] = {**holdout_desc, "score": scores.get(metric), "metrics": scores, "fit_seconds": secs}
        ledger.record(
            "tune", root=artifacts_dir, model=model, params=out["best_config"], seed=seed, dataset=dataset,
            fingerprint=ds.fingerprint, split=split,
            protocol={**protocol, "n_trials": len(trials), "best_cv_score": best["score"], "best_cv_std": best["std"]},
            metrics=out["holdout"]["metrics"] if out["holdout"] else {metric: best["score"]},
        )
        log.finish(params=out["best_config"], best_trial=out["best_trial"], best_score=best["score"],
                   best_std=best["std"], metrics=out["holdout"]["metrics"] if out["holdout"] else None)
    return out
