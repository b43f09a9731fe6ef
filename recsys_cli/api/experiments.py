"""A/B tests, bandits, sample-size plans and benchmarks for the library API, as typed results.

Every result keeps the full report as a dict (`.to_dict()`, the JSON the CLI prints) and
offers the main table as a polars DataFrame (`.to_frame()`).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys_cli.errors import UsageError

if TYPE_CHECKING:
    import polars as pl

DEFAULT_SALT = "recsys-abtest"


@dataclass
class Report:
    """A report dict with accessors; subclasses name the table `to_frame` returns."""

    data: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # one line each, for a person (the CLI prints them on stderr)
    _table: str = "rows"

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.data.items() if not k.startswith("_")}

    def to_frame(self) -> pl.DataFrame:
        import polars as pl

        return pl.DataFrame(self.data.get(self._table) or [])


class ABTestResult(Report):
    """`abtest`: settings, arms (CTR per arm), tests, srm, winner, segments; `to_frame()` is the arms table."""

    def __init__(self, data: dict[str, Any], notes: list[str] | None = None) -> None:
        super().__init__(data, notes or [], "arms")

    @property
    def winner(self) -> Any:
        return self.data["winner"]

    def segments_frame(self) -> pl.DataFrame:
        import polars as pl

        return pl.DataFrame(self.data.get("segments") or [])


class BanditResult(Report):
    """`bandit`: arms (true and observed CTR, share served), policy vs equal split, allocation over rounds."""

    def __init__(self, data: dict[str, Any], notes: list[str] | None = None) -> None:
        super().__init__(data, notes or [], "arms")

    def allocation_frame(self) -> pl.DataFrame:
        import polars as pl

        return pl.DataFrame(self.data["allocation"])


class BenchmarkReport(Report):
    """`benchmark`: machine, settings, one row per (model, implementation, step), ratios against peers."""

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(data, [], "rows")

    def ratios_frame(self) -> pl.DataFrame:
        import polars as pl

        return pl.DataFrame(self.data.get("ratios") or [])


def _click_model(name: str, rating_scale, threshold, eta, decay, gamma, noise):
    from recsys_cli.abtest.simulation import make_click_model

    return make_click_model(name, rating_scale, threshold=threshold, eta=eta, decay=decay, gamma=gamma, noise=noise)


MAX_BOOTSTRAP = 10_000_000

def abtest(run_a: str, run_b: str, *, dataset: str | None = None, k: int = 10, traffic: float = 0.5,
           salt: str = DEFAULT_SALT, users: int | None = None, click_model: str = "threshold",
           click_threshold: float | None = None, eta: float = 1.0, decay: str = "power", gamma: float = 0.85,
           noise: float = 0.02, alpha: float = 0.05, alternative: str = "two-sided", bootstrap: int = 2000,
           segments: bool = True, seed: int = 42, data_dir=None, artifacts_dir=None) -> ABTestResult:
    """Simulate an A/B test between two runs of one dataset and split, and analyse it.

    Users with held-out ratings are assigned by a salted hash, see their arm's top-k, and click
    by the click model over their held-out ratings; Welch's t-test on per-user CTR is primary.
    """
    from recsys_cli.abtest.assignment import check_traffic
    from recsys_cli.abtest.experiment import load_setup, run_abtest
    from recsys_cli.abtest.statistics import check_alpha, check_alternative
    from recsys_cli.api.model import check_seed

    seed = check_seed(seed)  # -1 was an internal error (numpy's SeedSequence), 2**63 accepted
    if not 0 <= bootstrap <= MAX_BOOTSTRAP:  # the percentile CI is stable long before; 1e12 was a MemoryError
        raise UsageError(f"bootstrap must be between 0 and {MAX_BOOTSTRAP:,} resamples, got {bootstrap:,}")

    check_traffic(traffic)
    check_alpha(alpha)
    check_alternative(alternative)
    setup = load_setup([run_a, run_b], dataset, data_dir=data_dir, artifacts_dir=artifacts_dir)
    model = _click_model(click_model, setup.rating_scale, click_threshold, eta, decay, gamma, noise)
    result = run_abtest(setup, model, k=k, traffic=traffic, salt=salt, users=users, seed=seed, alpha=alpha,
                        alternative=alternative, n_boot=bootstrap, segments=segments)
    return ABTestResult(result, [f"click model: {model.describe()}"])


def bandit(runs: Sequence[str], *, dataset: str | None = None, policy: str = "thompson", rounds: int = 50,
           batch: int = 100, epsilon: float = 0.1, k: int = 10, click_model: str = "threshold",
           click_threshold: float | None = None, eta: float = 1.0, decay: str = "power", gamma: float = 0.85,
           noise: float = 0.02, seed: int = 42, data_dir=None, artifacts_dir=None, progress=None) -> BanditResult:
    """Allocate simulated traffic between two or more runs with a bandit policy (thompson, ucb, epsilon-greedy)."""
    import numpy as np

    from recsys_cli.abtest.bandit import POLICIES, arm_labels, run_bandit
    from recsys_cli.abtest.experiment import load_setup
    from recsys_cli.api.model import check_seed

    if isinstance(runs, str):
        raise UsageError(f"runs must be a list of run names, e.g. ['svd-ml-100k', 'ials-ml-100k'], got one string "
                         f"{runs!r}"[:300])
    seed = check_seed(seed)
    runs = list(runs)
    if len(runs) < 2:
        raise UsageError("give at least two runs to allocate traffic between")
    if policy not in POLICIES:
        raise UsageError(f"unknown --policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if k < 1:
        raise UsageError(f"--k must be at least 1, got {k}")
    setup = load_setup(runs, dataset, data_dir=data_dir, artifacts_dir=artifacts_dir)
    model = _click_model(click_model, setup.rating_scale, click_threshold, eta, decay, gamma, noise)
    rows = np.arange(len(setup.pool))
    exposures = [setup.exposure(a, rows, k) for a in range(len(runs))]
    result = run_bandit(exposures, model, policy=policy, rounds=rounds, batch=batch, seed=seed, epsilon=epsilon,
                        progress=progress)
    if progress is not None:
        progress.advance(1)
    for arm, run, manifest in zip(result["arms"], runs, setup.manifests, strict=True):
        arm.update(run=run, model=manifest.get("model"))
    result = {
        "settings": {"runs": dict(zip(arm_labels(len(runs)), runs, strict=True)), "dataset": setup.dataset.name,
                     "split": setup.split, "policy": policy, "rounds": rounds, "batch": batch, "epsilon": epsilon,
                     "k": k, "seed": seed, "eligible_users": int(len(setup.pool))},
        "click_model": {"name": model.name, **model.params()},
        **result,
    }
    return BanditResult(result, [f"click model: {model.describe()}"])


def abtest_plan(baseline_ctr: float, *, mde: float | None = None, users: int | None = None, relative: bool = False,
                alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0, alternative: str = "two-sided",
                impressions_per_user: int | None = None, icc: float = 0.0) -> dict[str, Any]:
    """Sample size for an effect (mde), or the minimum detectable effect for a number of users."""
    from recsys_cli.abtest.power import plan

    for label, value, integer in (("baseline_ctr", baseline_ctr, False), ("mde", mde, False), ("users", users, True),
                                  ("alpha", alpha, False), ("power", power, False), ("ratio", ratio, False),
                                  ("impressions_per_user", impressions_per_user, True), ("icc", icc, False)):
        kinds = (int, np.integer) if integer else numbers.Real
        if value is not None and (isinstance(value, (bool, np.bool_)) or not isinstance(value, kinds)):
            raise UsageError(f"{label} must be {'an integer' if integer else 'a number'}, got {value!r}"[:300])
    return plan(baseline_ctr, mde=mde, users=users, relative=relative, alpha=alpha, power=power, ratio=ratio,
                alternative=alternative, impressions_per_user=impressions_per_user, icc=icc)


def benchmark(*, scale: str | None = None, models: str | Sequence[str] | None = None,
              peers: str | Sequence[str] | None = None, steps: str | Sequence[str] | None = None, repeat: int = 3,
              threads: int | None = None, suite: str | None = None, isolate: bool = True,
              params: dict[str, dict[str, Any]] | None = None, seed: int = 42, data_dir=None, progress=None,
              log=None, engines: str | Sequence[str] | None = None, spark_master: str | None = None) -> BenchmarkReport:
    """Time our models side by side with the peers (surprise, implicit) at a scale, or run a named suite.

    suite: 'polars500k' (data-frame work at 500k ratings), 'pipeline' (each command of the user
    journey in its own process, timed end to end) or 'serve' (recsys serve under a bounded load at
    1, 8 and 64 clients); a suite runs its own tasks (no models/peers/steps).
    """
    if repeat < 1 or (threads is not None and threads < 1):
        raise UsageError("--repeat and --threads must be at least 1")
    if suite is None:
        from recsys_cli.bench.harness import run_benchmark

        return BenchmarkReport(run_benchmark(scale=scale or "ml-100k", models=models, peers=peers, steps=steps,
                                             repeat=repeat, threads=threads, data_dir=data_dir, seed=seed,
                                             isolate=isolate, progress=progress, params=params, engines=engines,
                                             spark_master=spark_master))
    given = [flag for flag, value in (("--models", models), ("--peers", peers), ("--steps", steps)) if value]
    if given:
        raise UsageError(f"--suite runs its own tasks; drop {', '.join(given)}")
    if suite == "pipeline":
        from recsys_cli.bench.pipeline import run_pipeline

        return BenchmarkReport(run_pipeline(scale or "32m", threads=threads, seed=seed, data_dir=data_dir,
                                            log=log or (lambda message: None)))
    if suite == "serve":
        from recsys_cli.bench.serve import run_serve_suite

        return BenchmarkReport(run_serve_suite(scale or "ml-100k", threads=threads, seed=seed, data_dir=data_dir,
                                               log=log or (lambda message: None)))
    from recsys_cli.bench.datasets import parse_scale
    from recsys_cli.bench.suites import SUITE_RATINGS, SUITES, run_suite

    if suite not in SUITES:
        raise UsageError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}, pipeline, serve")
    n = SUITE_RATINGS if scale is None else parse_scale(scale).n_ratings
    if n is None:
        raise UsageError("--suite polars500k takes --scale as a number of ratings (e.g. 500k)")
    return BenchmarkReport(run_suite(suite, n_ratings=n, repeat=repeat, threads=threads, seed=seed))


class TuneResult(Report):
    """`tune`: the search (sampler, pruner, study), every trial, the best params and score, the held-out check."""

    def __init__(self, data: dict[str, Any], notes: list[str] | None = None) -> None:
        super().__init__(data, notes or [], "trials")

    @property
    def best_params(self) -> dict[str, Any]:
        return self.data["best_params"]

    @property
    def best_score(self) -> float:
        return self.data["best_score"]

    def to_frame(self) -> pl.DataFrame:
        """One row per trial: trial, each searched parameter as a column, score, std, state."""
        import polars as pl

        rows = [{"trial": t["trial"], **t["params"], "score": t["score"], "std": t["std"], "state": t.get("state"),
                 "fit_seconds": t["fit_seconds"]} for t in self.data["trials"]]
        return pl.DataFrame(rows, infer_schema_length=None)


def _specs(value: Any, what: str) -> list[str] | None:
    """--grid/--space as the CLI gives them (['key=...']) or as a notebook does ({key: ...})."""
    if value is None:
        return None
    if isinstance(value, dict):
        out = []
        for key, spec in value.items():
            if what == "grid" and isinstance(spec, (list, tuple)):
                spec = ",".join(map(str, spec))
            out.append(f"{key}={spec}")
        return out
    if isinstance(value, str):
        return [value]
    return list(value)


def tune(model: str, dataset: str, *, grid: Any = None, space: Any = None, trials: int | None = None,
         sampler: str | None = None, params: dict[str, Any] | None = None, metric: str | None = None, cv: int = 3,
         cv_folds: str = "auto", split: str | None = None, holdout: bool = True, relevance: str = "threshold", threshold: float = 4.0,
         jobs: int = 1, early_stopping: bool = False, pruner: str = "median", storage: str | None = None,
         study: str | None = None, train_best: bool = False, name: str | None = None, force: bool = False,
         seed: int = 42, data_dir=None, artifacts_dir=None, on_start=None, on_trial=None, mlflow=None,
         progress=None) -> TuneResult:
    """Search hyperparameters by K-fold CV on the training data (Optuna: tpe, random, grid or cmaes).

    grid: {"factors": [20, 50]} or ["factors=20,50"] (every combination); space with trials:
    {"lr_all": "loguniform(0.001,0.02)"}. The best config is refitted and scored on a held-out
    part never seen while tuning; train_best=True also trains it on the data and saves it as a run.
    storage='sqlite:///tune.db' keeps the study, so the same call resumes it. on_start(n_trials)
    and on_trial(result) report progress as the search runs.
    """
    from recsys_cli.evaluation import tuning
    from recsys_cli.evaluation.search_space import parse_grid, parse_space, plan_search
    from recsys_cli.models.registry import get_model_class

    if not isinstance(dataset, str):
        raise UsageError(f"tune takes a processed dataset's name such as 'ml-100k' (it tunes on its stored "
                         f"ratings or split), got {type(dataset).__name__}; for other data use rs.compare(...)")
    cls = get_model_class(model)
    metric = metric or ("rmse" if cls.predicts_ratings else "ndcg@10")
    tuning.check_metric(metric)
    tuning.metric_settings(metric, relevance, threshold)  # validates relevance
    if isinstance(cv, bool) or not isinstance(cv, (int, np.integer)) or cv < 2:
        raise UsageError(f"cv (--cv) must be a whole number of folds, at least 2, got {cv!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)):
        raise UsageError(f"jobs must be an integer, got {jobs!r}")
    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, (int, np.integer)) or trials < 0):
        raise UsageError(f"trials must be a whole number of trials, got {trials!r}")
    tuning.check_cv_folds(cv_folds)
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    if name and not train_best:
        raise UsageError("--name names the run of --train-best; add --train-best")
    if pruner not in ("median", "halving", "none"):
        raise UsageError(f"unknown --pruner {pruner!r}; choose one of median, halving, none")
    plan = plan_search(model, grid=parse_grid(_specs(grid, "grid")), space=parse_space(_specs(space, "space")),
                       n_trials=trials or 0, sampler=sampler, fixed=dict(params or {}))
    if train_best:
        from recsys_cli.artifacts import ArtifactStore, check_run_name
        from recsys_cli.training import default_run_name

        name = check_run_name(name or default_run_name(model, dataset, split))
        ArtifactStore(artifacts_dir).check_writable(name, force=force)  # before the search, not after it
    if on_start is not None:
        on_start(plan.n_trials)
    result = tuning.tune(model, dataset, plan, metric=metric, cv=cv, cv_folds=cv_folds, split=split, holdout=holdout,
                         relevance=relevance, threshold=threshold, jobs=jobs, early_stopping=early_stopping, seed=seed,
                         pruner=pruner, storage=storage, study_name=study, data_dir=data_dir,
                         artifacts_dir=artifacts_dir, on_trial=on_trial, mlflow=mlflow)
    notes = []
    if result["resumed_trials"]:
        notes.append(f"resumed study {result['study']!r}: {result['resumed_trials']} trial(s) already done")
    best = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in result["best_params"].items())
    notes.append(f"best {metric}: {result['best_score']:.4f} ± {result['best_std']:.4f} (CV) with {best or 'the defaults'}")
    if result["holdout"] and result["holdout"]["score"] is not None:
        notes.append(f"held-out {metric}: {result['holdout']['score']:.4f} on {result['holdout']['n_test']:,} "
                     "ratings never seen while tuning")
    if train_best:
        from recsys_cli.api.runs import train_run

        result["run"] = train_run(model, dataset, split=split, params=result["best_params"], seed=seed, name=name,
                                  data_dir=data_dir, artifacts_dir=artifacts_dir, force=force, progress=progress,
                                  mlflow=mlflow)
        notes.append(f"saved run {name!r} at {result['run']['path']}")
    return TuneResult(result, notes)
