"""Optuna under `recsys tune`: samplers, pruners, a resumable study and the trial scheduler.

A trial's CV folds run one after another; after each fold the running mean of the metric is
reported to Optuna as the trial's intermediate value at step = folds done, so a pruner (median or
successive halving) can stop a trial that is already worse than the others. With `jobs` > 1,
up to `jobs` trials are in flight at once, each fold fitted in a worker process; Optuna
itself is only touched from this process (asks, reports, tells), so any storage works.

Resuming: a study in a storage (`sqlite:///tune.db`) remembers every finished trial, its
result (user attribute "result") and the search that made it (study attribute
"recsys_search"). Opening it again with the same search continues where it stopped: finished
trials are not repeated, the trial count is a total, and a trial cut off mid-way (left
RUNNING) is marked failed and run again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsys_cli.errors import RecsysError, UsageError
from recsys_cli.evaluation.search_space import SearchPlan, check_sampler_installed, grid_trials

PRUNERS = ("median", "halving", "none")
SEARCH_ATTR = "recsys_search"
RESULT_ATTR = "result"


def make_sampler(name: str, seed: int):
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name in ("random", "grid"):  # grid: every trial is enqueued with its params, nothing is drawn
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        check_sampler_installed(name)
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    raise UsageError(f"unknown --sampler {name!r}; choose one of tpe, random, grid, cmaes")


def make_pruner(name: str):
    import optuna

    if name == "median":  # after 5 finished trials, stop one whose running mean is worse than their median
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    if name == "halving":  # folds are the resource: rungs after 1, 3, 9... folds keep the best third
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise UsageError(f"unknown --pruner {name!r}; choose one of {', '.join(PRUNERS)}")


def open_study(*, name: str, storage: str | None, direction: str, signature: dict[str, Any], plan: SearchPlan,
               pruner: str, seed: int):
    """Create or reopen the study; check it was made by the same search; fail trials left running.

    Returns (study, finished): the trials that already have a result. The sampler's seed is
    `seed` plus the number of trials the study already holds, so a resumed seeded search draws
    new points instead of repeating the first ones, and the same resume gives the same draws.
    """
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction=direction, load_if_exists=True,
                                    sampler=make_sampler(plan.sampler, seed), pruner=make_pruner(pruner))
    except (ImportError, ValueError, RuntimeError, OSError) as exc:
        raise UsageError(f"--storage {storage}: cannot open the study ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # SQLAlchemy's own errors (bad URL, unreadable file) are not imported here
        if type(exc).__module__.startswith(("sqlalchemy", "optuna")):
            raise UsageError(f"--storage {storage}: cannot open the study ({type(exc).__name__}: {exc})") from None
        raise
    made_by = study.user_attrs.get(SEARCH_ATTR)
    trials = study.get_trials(deepcopy=False)
    if made_by is None:
        if trials:
            raise UsageError(f"study {name!r} in {storage} was not made by `recsys tune`; pick another --study")
        study.set_user_attr(SEARCH_ATTR, signature)
    elif made_by != signature:
        diff = sorted(k for k in set(made_by) | set(signature) if made_by.get(k) != signature.get(k))
        raise UsageError(f"study {name!r} in {storage} was made by a different search (differs in: "
                         f"{', '.join(diff)}); rerun that search to resume it, or pick another --study")
    for t in trials:
        if t.state == TrialState.RUNNING:  # cut off by an interrupted run
            study.tell(t.number, state=TrialState.FAIL)
    study.sampler = make_sampler(plan.sampler, seed + len(trials))
    finished = [t for t in study.get_trials(deepcopy=False) if RESULT_ATTR in t.user_attrs]
    if plan.sampler == "grid":
        waiting = [t.system_attrs.get("fixed_params", {}) for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))]
        present = [t.params for t in finished] + waiting
        for combo in grid_trials(plan.grid):
            if combo not in present:
                study.enqueue_trial(combo)
    return study, finished


@dataclass
class _Running:
    trial: Any
    params: dict[str, Any]
    t0: float
    scores: list[float] = field(default_factory=list)
    fits: list[float] = field(default_factory=list)
    early: dict | None = None


class InlineExecutor:
    """Runs each task when submitted (jobs=1): the scheduler below works the same either way."""

    def submit(self, fn, *args) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - re-raised by fut.result() in the scheduler
            fut.set_exception(exc)
        return fut

    def shutdown(self, **_kwargs) -> None:
        pass


def _finish(study, run: _Running, state: str, error: str | None, on_result) -> dict[str, Any]:
    from optuna.trial import TrialState

    scores = run.scores
    mean = float(np.mean(scores)) if scores and state != "failed" else float("nan")
    if state == "complete" and not math.isfinite(mean):
        state, error = "failed", error or "the metric is not finite"
    fits = [f for f in run.fits if f is not None and math.isfinite(f)]
    res: dict[str, Any] = {
        "trial": run.trial.number, "params": run.params, "state": state,
        "score": mean if state != "failed" else float("nan"),
        "std": float(np.std(scores)) if scores and state != "failed" else float("nan"),
        "fold_scores": [float(s) for s in scores], "fit_seconds": float(np.mean(fits)) if fits else None,
        "error": error, "seconds": time.perf_counter() - run.t0,
    }
    if run.early is not None:
        res["early_stopping"] = run.early
    run.trial.set_user_attr(RESULT_ATTR, {**res, "score": None if math.isnan(res["score"]) else res["score"],
                                          "std": None if math.isnan(res["std"]) else res["std"]})
    if state == "complete":
        study.tell(run.trial, mean)
    else:
        study.tell(run.trial, state=TrialState.PRUNED if state == "pruned" else TrialState.FAIL)
    on_result(res)
    return res


def run_study(study, n_trials: int, *, suggest: Callable, task: Callable, cv: int, early_stopping: bool,
              executor, jobs: int, on_result: Callable[[dict[str, Any]], None]) -> None:
    """Ask, run and tell `n_trials` trials, up to `jobs` at once.

    task(kind, params, fold) runs in `executor` and returns ("fold", score, fit seconds),
    ("early", params, info, (score, fit seconds)) for kind "early" (fold 0 with epochs chosen),
    or ("error", message). Pruning is asked after every fold but the last.
    """
    futures: dict[Future, _Running] = {}
    asked = 0
    try:
        while asked < n_trials or futures:
            while asked < n_trials and len(futures) < jobs:
                trial = study.ask()
                asked += 1
                run = _Running(trial, {}, time.perf_counter())
                try:
                    run.params = suggest(trial)
                except RecsysError as exc:
                    _finish(study, run, "failed", str(exc), on_result)
                    continue
                futures[executor.submit(task, "early" if early_stopping else "fold", run.params, 0)] = run
            if not futures:
                continue
            done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: futures[f].trial.number):
                run = futures.pop(fut)
                out = fut.result()
                if out[0] == "error":
                    _finish(study, run, "failed", out[1], on_result)
                    continue
                if out[0] == "early":
                    _, run.params, run.early, (score, secs) = out
                else:
                    _, score, secs = out
                run.scores.append(score)
                run.fits.append(secs)
                step = len(run.scores)
                mean = float(np.mean(run.scores))
                if math.isfinite(mean):
                    run.trial.report(mean, step)  # step = folds done: the resource halving counts
                if step == cv:
                    _finish(study, run, "complete", None, on_result)
                elif math.isfinite(mean) and run.trial.should_prune():
                    _finish(study, run, "pruned", None, on_result)
                else:
                    futures[executor.submit(task, "fold", run.params, step)] = run
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)  # Ctrl-C or an error: drop queued folds
        raise
    executor.shutdown()


def finished_results(study) -> list[dict[str, Any]]:
    """Every trial with a result, in trial order (scores None in storage come back as NaN)."""
    out = []
    for t in study.get_trials(deepcopy=False):
        res = t.user_attrs.get(RESULT_ATTR)
        if res is None:
            continue
        res = dict(res)
        for key in ("score", "std"):
            res[key] = float("nan") if res.get(key) is None else float(res[key])
        out.append(res)
    return sorted(out, key=lambda r: r["trial"])
