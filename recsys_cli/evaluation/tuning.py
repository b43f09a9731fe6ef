"""Hyperparameter search on Optuna: K-fold CV on a tuning portion, pruning, resumable studies, holdout report.

Nested so the reported number is honest: a test part is held out first (a named split's test
part, else a fresh seeded 80/20 random holdout), every trial is scored by K-fold CV over the
remaining tuning portion only, and the best config is refitted on the whole tuning portion and
scored once on the held-out part. `holdout=False` tunes on every rating (optimistic: the best
CV score is then the only, and an upward-biased, estimate).

Search spaces (`--grid`, `--space`) are parsed and validated in search_space.py; the Optuna
study (sampler tpe|random|grid|cmaes, pruner median|halving|none, storage, resume) and the
trial scheduler are in study.py. Optuna is imported only when a search runs.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys_cli.data.dataset import Interactions
from recsys_cli.errors import DataError, RecsysError, UsageError
from recsys_cli.evaluation.protocols import EvalSettings
from recsys_cli.evaluation.search_space import SearchPlan

if TYPE_CHECKING:
    from recsys_cli.tracking import MlflowOptions

PLAIN_METRICS = ("rmse", "mae", "fcp", "auc")
RATING_METRICS = ("rmse", "mae", "fcp")
AT_K_METRICS = ("precision", "recall", "ndcg", "map", "map_capped", "mrr", "hit_rate",
                "coverage", "novelty", "popularity_bias", "diversity")
HOLDOUT_TEST = 0.2
CV_FOLDS = ("auto", "ratings", "user")
PER_USER_KINDS = ("user", "leave-last")  # split kinds whose test part is a share of every user's ratings


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
        desc = {"kind": "split", "split": split, "split_kind": info.get("kind")}
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


def check_cv_folds(cv_folds: str) -> str:
    if cv_folds not in CV_FOLDS:
        raise UsageError(f"unknown --cv-folds {cv_folds!r}; choose one of {', '.join(CV_FOLDS)}")
    return cv_folds


def cv_fold_codes(tune_part: Interactions, *, cv: int, seed: int, cv_folds: str,
                  split_kind: str | None) -> tuple[np.ndarray, str]:
    """(fold code per tuning rating, the kind used). `ratings` deals the ratings into cv folds; `user`
    deals each user's ratings into the folds (a one-rating user stays in train), the protocol of a
    per-user split, so every CV test user also has training ratings as in the held-out part; `auto`
    is `user` when the split is per-user (user, leave-last), else `ratings`."""
    from recsys_cli.data.splits import kfold, user_kfold

    kind = check_cv_folds(cv_folds)
    if kind == "auto":
        kind = "user" if split_kind in PER_USER_KINDS else "ratings"
    if kind == "user":
        return user_kfold(tune_part.users, k=cv, seed=seed), kind
    return kfold(len(tune_part), k=cv, seed=seed), kind


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


def _run_task(ctx: TrialContext, kind: str, params: dict[str, Any], fold: int) -> tuple:
    """One unit of a trial (see study.run_study): a fold's fit and score, or fold 0 with epochs chosen."""
    try:
        if kind == "early":
            params, info, first = _early_stop(ctx, params)
            return ("early", params, info, first)
        score, secs = ctx.fit_score(params, *ctx.fold(fold))
        return ("fold", score, secs)
    except RecsysError as exc:  # a failed fit is reported as the trial's error, not raised
        return ("error", str(exc))


_WORKER_CTX: TrialContext | None = None


def _init_worker(ctx: TrialContext) -> None:
    global _WORKER_CTX
    os.environ["RECSYS_THREADS"] = "1"  # J processes x 1 Numba thread, no oversubscription
    _WORKER_CTX = ctx


def _worker_task(kind: str, params: dict[str, Any], fold: int) -> tuple:
    assert _WORKER_CTX is not None, "worker not initialised"
    return _run_task(_WORKER_CTX, kind, params, fold)


def _executor(ctx: TrialContext, jobs: int):
    """(executor, task): in this process for one job, else `jobs` spawned processes holding ctx."""
    from recsys_cli.evaluation.study import InlineExecutor

    if jobs == 1:
        return InlineExecutor(), lambda kind, params, fold: _run_task(ctx, kind, params, fold)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    mp = multiprocessing.get_context("spawn")  # fork after Numba started threads is unsafe
    return ProcessPoolExecutor(max_workers=jobs, mp_context=mp, initializer=_init_worker, initargs=(ctx,)), _worker_task


def default_study_name(model: str, dataset: str, split: str | None, metric: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{model}-{dataset}-{split or 'holdout'}-{metric}")


def best_trial(results: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The complete trial with the best finite score (pruned ones never win); ties go to the earliest trial."""
    lower = lower_is_better(metric)
    best = None
    for res in results:
        if res.get("state", "complete") == "complete" and _better(res["score"], None if best is None else best["score"], lower):
            best = res
    if best is None:
        errors = sorted({r["error"] for r in results if r.get("error")})
        pruned = sum(r.get("state") == "pruned" for r in results)
        why = "; ".join(errors) or (f"{pruned} pruned" if pruned else "no finite " + metric)
        raise UsageError(f"no trial finished: {why}")
    return best




# ----------------------------------------------------------------------------- the whole search
def tune(
    model: str,
    dataset: str,
    plan: SearchPlan,
    *,
    metric: str,
    cv: int = 3,
    cv_folds: str = "auto",
    split: str | None = None,
    holdout: bool = True,
    relevance: str = "threshold",
    threshold: float = 4.0,
    jobs: int = 1,
    early_stopping: bool = False,
    seed: int = 42,
    pruner: str = "median",
    storage: str | None = None,
    study_name: str | None = None,
    data_dir=None,
    artifacts_dir=None,
    on_trial: Callable[[dict[str, Any]], None] | None = None,
    mlflow: MlflowOptions | None = None,
) -> dict[str, Any]:
    """Run the search `plan` (from search_space.plan_search) as an Optuna study: each trial is K-fold CV
    on the tuning portion (pruned early by `pruner`), recorded in the ledger as it finishes; then
    refit the best on the tuning portion and score it on the held-out part.

    storage (e.g. sqlite:///tune.db) and study_name: a study there that this same search started
    is resumed (its finished trials count towards plan.n_trials and are not rerun).
    cv_folds: auto | ratings | user, how the tuning portion is cut into folds (`cv_fold_codes`).
    mlflow: also log the search to MLflow as it runs (`tracking.TuneLog`)."""
    from recsys_cli import ledger
    from recsys_cli.data.dataset import load_dataset
    from recsys_cli.evaluation.protocols import score_model
    from recsys_cli.evaluation.study import PRUNERS, finished_results, open_study, run_study
    from recsys_cli.models.registry import create_model, get_model_class
    from recsys_cli.tracking import TuneLog
    from recsys_cli.training import fit_model

    check_metric(metric)
    cls = get_model_class(model)
    if metric in RATING_METRICS and not cls.predicts_ratings:
        raise UsageError(f"{model} does not predict ratings; tune it on a ranking metric such as ndcg@10")
    if early_stopping and not (cls.iterative and "epochs" in cls.Config.field_names()):
        raise UsageError(f"--early-stopping needs an epoch-based model (with an epochs parameter); {model} is not")
    if cv < 2:
        raise UsageError(f"--cv needs at least 2 folds, got {cv}")
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    check_cv_folds(cv_folds)
    if pruner not in PRUNERS:
        raise UsageError(f"unknown --pruner {pruner!r}; choose one of {', '.join(PRUNERS)}")
    settings = metric_settings(metric, relevance, threshold)
    ds = load_dataset(dataset, data_dir)
    tune_part, test_part, holdout_desc = tuning_portions(ds, split=split, holdout=holdout, seed=seed)
    if len(tune_part) < cv:
        raise DataError(f"the tuning portion has {len(tune_part)} ratings, fewer than --cv {cv}")
    codes, folds_kind = cv_fold_codes(tune_part, cv=cv, seed=seed, cv_folds=cv_folds,
                                      split_kind=holdout_desc.get("split_kind"))
    ctx = TrialContext(model, tune_part, codes, cv, seed, metric, settings, early_stopping)
    direction = "minimize" if lower_is_better(metric) else "maximize"
    study_name = study_name or default_study_name(model, dataset, split, metric)
    protocol = {"kind": "tune", "search": plan.sampler, "pruner": pruner, "cv": cv, "cv_folds": folds_kind,
                "metric": metric, "seed": seed,
                "holdout": holdout_desc, "relevance": settings.describe(), "early_stopping": early_stopping,
                "study": study_name, "storage": storage}
    signature = {"model": model, "dataset": dataset, "fingerprint": ds.fingerprint, "split": split,
                 "holdout": holdout, "metric": metric, "cv": cv, "seed": seed, "relevance": settings.describe(),
                 "early_stopping": early_stopping, **plan.describe()}
    if folds_kind != "ratings":  # studies stored before per-user folds existed keep resuming
        signature["cv_folds"] = folds_kind
    study, done = open_study(name=study_name, storage=storage, direction=direction, signature=signature, plan=plan,
                             pruner=pruner, seed=seed)
    remaining = max(0, plan.n_trials - len(done))

    def suggest(trial) -> dict[str, Any]:
        raw = plan.suggest(trial)
        config = create_model(model, raw).config.to_dict()  # typed values, as the model sees them
        return {k: config[k] for k in raw}

    with TuneLog(mlflow, model=model, metric=metric, seed=seed, dataset=dataset, fingerprint=ds.fingerprint,
                 split=split, protocol={**protocol, "n_trials": plan.n_trials}) as log:

        finished = [len(done)]

        def record_trial(res: dict[str, Any]) -> None:
            finished[0] += 1
            res["done"] = finished[0]  # trials with a result so far, resumed ones included (for progress lines)
            config = create_model(model, res["params"]).config.to_dict() if res["params"] else {}
            ledger.record(
                "tune-trial", root=artifacts_dir, model=model, params=config, seed=seed, dataset=dataset,
                fingerprint=ds.fingerprint, split=split,
                protocol={**protocol, "trial": res["trial"], "state": res["state"], "error": res["error"],
                          "folds_done": len(res["fold_scores"])},
                metrics={} if res["state"] == "failed" else {metric: res["score"], f"{metric}_std": res["std"]},
                timings={"fit_seconds": res["fit_seconds"], "seconds": round(res["seconds"], 4)},
            )
            log.trial({**res, "params": config})
            if on_trial:
                on_trial(res)

        executor, task = _executor(ctx, jobs)
        run_study(study, remaining, suggest=suggest, task=task, cv=cv, early_stopping=early_stopping,
                  executor=executor, jobs=jobs, on_result=record_trial)
        results = finished_results(study)
        best = best_trial(results, metric)
        out: dict[str, Any] = {
            "model": model, "dataset": dataset, "metric": metric, "direction": direction,
            "search": plan.sampler, "sampler": plan.sampler, "pruner": pruner, "study": study_name, "storage": storage,
            "n_trials": plan.n_trials, "resumed_trials": len(done),
            "pruned_trials": sum(r["state"] == "pruned" for r in results),
            "cv": cv, "cv_folds": folds_kind, "seed": seed, "split": split,
            "n_tune_ratings": len(tune_part), "best_trial": best["trial"],
            "best_params": best["params"], "best_score": best["score"], "best_std": best["std"],
            "trials": [{k: r[k] for k in ("trial", "params", "state", "score", "std", "fit_seconds", "fold_scores",
                                          "error")}
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
            protocol={**protocol, "n_trials": plan.n_trials, "best_cv_score": best["score"], "best_cv_std": best["std"]},
            metrics=out["holdout"]["metrics"] if out["holdout"] else {metric: best["score"]},
        )
        log.finish(params=out["best_config"], best_trial=out["best_trial"], best_score=best["score"],
                   best_std=best["std"], metrics=out["holdout"]["metrics"] if out["holdout"] else None)
    return out
