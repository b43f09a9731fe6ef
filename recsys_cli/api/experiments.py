"""A/B tests, bandits, sample-size plans and benchmarks for the library API, as typed results.

Every result keeps the full report as a dict (`.to_dict()`, the JSON the CLI prints) and
offers the main table as a polars DataFrame (`.to_frame()`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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
           noise: float = 0.02, seed: int = 42, data_dir=None, artifacts_dir=None) -> BanditResult:
    """Allocate simulated traffic between two or more runs with a bandit policy (thompson, ucb, epsilon-greedy)."""
    import numpy as np

    from recsys_cli.abtest.bandit import POLICIES, arm_labels, run_bandit
    from recsys_cli.abtest.experiment import load_setup

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
    result = run_bandit(exposures, model, policy=policy, rounds=rounds, batch=batch, seed=seed, epsilon=epsilon)
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

    return plan(baseline_ctr, mde=mde, users=users, relative=relative, alpha=alpha, power=power, ratio=ratio,
                alternative=alternative, impressions_per_user=impressions_per_user, icc=icc)


def benchmark(*, scale: str | None = None, models: str | Sequence[str] | None = None,
              peers: str | Sequence[str] | None = None, steps: str | Sequence[str] | None = None, repeat: int = 3,
              threads: int | None = None, suite: str | None = None, isolate: bool = True,
              params: dict[str, dict[str, Any]] | None = None, seed: int = 42, data_dir=None, progress=None,
              log=None) -> BenchmarkReport:
    """Time our models side by side with the peers (surprise, implicit) at a scale, or run a named suite.

    suite: 'polars500k' (data-frame work at 500k ratings) or 'pipeline' (each command of the user
    journey in its own process, timed end to end); a suite runs its own tasks (no models/peers/steps).
    """
    if repeat < 1 or (threads is not None and threads < 1):
        raise UsageError("--repeat and --threads must be at least 1")
    if suite is None:
        from recsys_cli.bench.harness import run_benchmark

        return BenchmarkReport(run_benchmark(scale=scale or "ml-100k", models=models, peers=peers, steps=steps,
                                             repeat=repeat, threads=threads, data_dir=data_dir, seed=seed,
                                             isolate=isolate, progress=progress, params=params))
    given = [flag for flag, value in (("--models", models), ("--peers", peers), ("--steps", steps)) if value]
    if given:
        raise UsageError(f"--suite runs its own tasks; drop {', '.join(given)}")
    if suite == "pipeline":
        from recsys_cli.bench.pipeline import run_pipeline

        return BenchmarkReport(run_pipeline(scale or "32m", threads=threads, seed=seed, data_dir=data_dir,
                                            log=log or (lambda message: None)))
    from recsys_cli.bench.datasets import parse_scale
    from recsys_cli.bench.suites import SUITE_RATINGS, SUITES, run_suite

    if suite not in SUITES:
        raise UsageError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}, pipeline")
    n = SUITE_RATINGS if scale is None else parse_scale(scale).n_ratings
    if n is None:
        raise UsageError("--suite polars500k takes --scale as a number of ratings (e.g. 500k)")
    return BenchmarkReport(run_suite(suite, n_ratings=n, repeat=repeat, threads=threads, seed=seed))
