"""tune: Optuna hyperparameter search (TPE, random, grid, CMA-ES) with K-fold CV, pruning, resumable studies
and an untouched holdout report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from recsys_cli.cli.common import (
    ArtifactsDirOpt,
    DataDirOpt,
    ForceOpt,
    FormatOpt,
    JsonOpt,
    MlflowExperimentOpt,
    MlflowOpt,
    ParamOpt,
    SeedOpt,
    parse_params,
)
from recsys_cli.output.tune import score_cell, show_value, trial_line  # stdlib only: cheap at start-up

HELP = """Search hyperparameters by K-fold CV, then report the best config on held-out data.

Runs on Optuna. --grid tries every combination of its lists (sampler grid, in order);
--trials N draws N trials from --space distributions: loguniform(a,b), uniform(a,b),
int(a,b) (integers a..b), intlog(a,b) (log-uniform integers) or choice(a,b,...), with
--sampler tpe (default), random or cmaes (needs: pip install 'recsys-cli[cmaes]'), seeded
by --seed. --random N is short for --trials N --sampler random. --param fixes other
hyperparameters. rmse, mae and popularity_bias@K are minimised, others maximised.

Pruning: after each CV fold a trial reports its running mean; --pruner median (default)
stops a trial worse than the median of earlier trials at the same fold (after 5 trials),
halving keeps the best third at each rung, none runs every fold. Pruned trials never win.

Resuming: --storage sqlite:///tune.db keeps the study (named by --study, default
MODEL-DATASET-SPLIT-METRIC). Rerunning the same command continues it: finished trials are
not repeated and the trial count is a total. A different search under the same name is an
error. With --jobs > 1, grid and random searches draw the same trials as with one job;
TPE, CMA-ES and pruning then depend on which trials finished first.

Nested so tuning never sees the data it reports on: the test part of --split (default: a
seeded random 20% of the ratings) is held out, the CV runs on the rest only, and the best
config is refitted on that rest and scored once on the held-out part ("holdout" in the
output). --no-holdout tunes on every rating: the CV score is then optimistic. The CV
follows the split's protocol (--cv-folds auto): after a per-user split (user, leave-last)
each user's tuning ratings are dealt into the --cv folds, so every CV test user has
training ratings as in the held-out part; otherwise the ratings are. --cv 4 after a 25%
per-user split trains each fold on 75% of the tuning part, the held-out fit's share.

--early-stopping (epoch-based models): each trial first fits on CV fold 0 with 1/4, 1/2,
3/4 and all of its epochs, stops at the first count that does not improve the metric, and
uses the best count (recorded as the trial's epochs) for the CV.

Every trial is recorded in the ledger (kind tune-trial), the search as kind tune. With
--mlflow the search is also logged to MLflow as it runs: a parent run (best config, held-out
metrics, cv_<metric>) with one nested run per trial, logged as each trial finishes.

Examples:

\b
  recsys tune svd --dataset ml-100k --grid factors=50,100 --grid lr_all=0.005,0.01 --cv 3
  recsys tune svd -d ml-100k --random 30 --space 'lr_all=loguniform(0.001,0.05)' --space 'factors=intlog(10,200)' --jobs 2
  recsys tune svd -d ml-100k --trials 40 --space 'lr_all=loguniform(0.001,0.02)' --space 'reg_all=loguniform(0.005,0.2)' --storage sqlite:///tune.db
  recsys tune ease -d ml-100k --split user --relevance any --metric ndcg@10 --trials 20 --space 'reg=loguniform(10,5000)'
  recsys tune popularity -d ml-100k --grid min_ratings=5,20,50 --metric ndcg@10 --relevance any --split user
  recsys tune bias -d ml-100k --grid reg_u=5,15,25 --train-best --name bias-best --force
"""


class TrialDisplay:
    """Live table of finished trials on stderr for a person watching, else one log line per trial."""

    def __init__(self, total: int, metric: str, lower: bool) -> None:
        import time

        from recsys_cli.settings import show_progress

        self.total, self.metric, self.lower = total, metric, lower
        self.t0 = time.perf_counter()
        self.rows: list[dict[str, Any]] = []
        self.live = None
        if show_progress():
            from rich.live import Live

            from recsys_cli.output import console_err

            self.live = Live(self._table(), console=console_err(), refresh_per_second=4, transient=False)
            self.live.start()

    def _table(self):
        from rich.table import Table

        table = Table(title=f"trials ({len(self.rows)}/{self.total} done, {self.metric}{self._eta()})")
        keys = list(dict.fromkeys(k for r in self.rows for k in r["params"]))
        for col in ["#", *keys, self.metric, "± std", "fit s"]:
            table.add_column(col)
        done = [r for r in self.rows if not r["error"] and r.get("state") != "pruned"]
        best = min(done, key=lambda r: r["score"] if self.lower else -r["score"], default=None)
        for r in sorted(self.rows, key=lambda r: r["trial"]):
            score = score_cell(r)
            std = "" if r["error"] else f"{r['std']:.4f}"
            fit = "" if r["fit_seconds"] is None else f"{r['fit_seconds']:.2f}"
            style = "bold green" if r is best else None
            table.add_row(str(r["trial"] + 1), *[show_value(r["params"].get(k, "")) for k in keys], score, std, fit, style=style)
        return table

    def start(self, total: int) -> None:
        """The search's trial count, known once the plan is checked."""
        self.total = total
        if self.live is not None:
            self.live.update(self._table())

    def _eta(self) -> str:
        """', about M:SS left' from the mean time of the trials done so far."""
        import time

        done = len(self.rows)
        if not done or done >= self.total:
            return ""
        left = (time.perf_counter() - self.t0) / done * (self.total - done)
        return f", about {int(left // 60)}:{int(left % 60):02d} left"

    def __call__(self, res: dict[str, Any]) -> None:
        self.rows.append(res)
        if self.live is not None:
            self.live.update(self._table())
        else:
            typer.echo(trial_line(res, self.total, self.metric), err=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def register(app: typer.Typer) -> None:
    @app.command("tune", help=HELP)
    def tune(
        model: Annotated[str, typer.Argument(help="Model to tune (see `recsys train --help`).")],
        dataset: Annotated[str, typer.Option("--dataset", "-d", help="Processed dataset name.")],
        grid: Annotated[Optional[list[str]], typer.Option("--grid", "-g", help='key=v1,v2,... values to try (repeatable; cartesian product); quote a value holding commas: models="a,b","a,c".')] = None,
        trials: Annotated[Optional[int], typer.Option("--trials", "-t", help="Number of trials to draw from --space (a total when resuming).")] = None,
        sampler: Annotated[Optional[str], typer.Option("--sampler", help="tpe (default with --space), random, cmaes, or grid (with --grid).")] = None,
        random: Annotated[Optional[int], typer.Option("--random", help="Random search: --trials N --sampler random.")] = None,
        space: Annotated[Optional[list[str]], typer.Option("--space", help="key=loguniform(a,b) | uniform(a,b) | int(a,b) | intlog(a,b) | choice(a,b,...) (repeatable).")] = None,
        param: ParamOpt = None,
        cv: Annotated[int, typer.Option("--cv", help="Folds of the CV over the tuning portion.")] = 3,
        cv_folds: Annotated[str, typer.Option("--cv-folds", help="How the CV folds are cut: user (each user's ratings dealt into the folds), ratings, or auto (user for a per-user --split: user, leave-last; else ratings).")] = "auto",
        metric: Annotated[Optional[str], typer.Option("--metric", help="Metric to optimise, e.g. rmse, mae, ndcg@10, recall@20 (default: rmse, or ndcg@10 for ranking-only models).")] = None,
        split: Annotated[Optional[str], typer.Option("--split", "-s", help="Tune on this split's train part, report on its test part (default: seeded random 80/20).")] = None,
        no_holdout: Annotated[bool, typer.Option("--no-holdout", help="Tune on every rating with no held-out report (optimistic).")] = False,
        relevance: Annotated[str, typer.Option("--relevance", help="'threshold' (held-out rating >= --relevance-threshold) or 'any' held-out rating.")] = "threshold",
        relevance_threshold: Annotated[float, typer.Option("--relevance-threshold", help="Minimum held-out rating that counts as relevant.")] = 4.0,
        jobs: Annotated[int, typer.Option("--jobs", "-j", help="Trials run in this many processes (1 Numba thread each).")] = 1,
        early_stopping: Annotated[bool, typer.Option("--early-stopping", help="Epoch-based models: choose epochs on fold 0 (see above).")] = False,
        pruner: Annotated[str, typer.Option("--pruner", help="Stop poor trials between CV folds: median, halving or none.")] = "median",
        storage: Annotated[Optional[str], typer.Option("--storage", help="Optuna storage URL to keep and resume the study, e.g. sqlite:///tune.db.")] = None,
        study: Annotated[Optional[str], typer.Option("--study", help="Study name in --storage (default: MODEL-DATASET-SPLIT-METRIC).")] = None,
        train_best: Annotated[bool, typer.Option("--train-best", help="Train the best config on all ratings (or the split's train part) and save it.")] = False,
        name: Annotated[Optional[str], typer.Option("--name", "-n", help="Run name for --train-best (default: MODEL-DATASET[-SPLIT]).")] = None,
        plot: Annotated[Optional[Path], typer.Option("--plot", help="Also draw the score of every trial to this .png or .svg (needs matplotlib).", show_default=False)] = None,
        force: ForceOpt = False,
        seed: SeedOpt = 42,
        data_dir: DataDirOpt = None,
        artifacts_dir: ArtifactsDirOpt = None,
        mlflow: MlflowOpt = False,
        mlflow_experiment: MlflowExperimentOpt = None,
        fmt: FormatOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        from recsys_cli.api.experiments import tune as search
        from recsys_cli.errors import UsageError
        from recsys_cli.evaluation.tuning import lower_is_better
        from recsys_cli.models.registry import get_model_class
        from recsys_cli.output import emit, resolve_format
        from recsys_cli.output.tune import render_tune
        from recsys_cli.progress import make_progress
        from recsys_cli.tracking import mlflow_options

        fmt = resolve_format(fmt, as_json)
        if plot is not None:
            from recsys_cli.figures.plots import check_plot_path

            check_plot_path(plot)  # before the search: a missing matplotlib or folder fails now
        tracking = mlflow_options(mlflow, mlflow_experiment, artifacts_dir)
        if random is not None and trials is not None:
            raise UsageError("give --trials N (with --sampler) or --random N (random search), not both")
        if random is not None and sampler not in (None, "random"):
            raise UsageError(f"--random N is random search; for --sampler {sampler} give --trials N")
        if random is not None:
            trials, sampler = random, "random"
        shown = metric or ("rmse" if get_model_class(model).predicts_ratings else "ndcg@10")
        display = TrialDisplay(trials or 0, shown, lower_is_better(shown))
        progress = make_progress()
        try:
            report = search(model, dataset, grid=grid, space=space, trials=trials, sampler=sampler,
                            params=parse_params(param), metric=metric, cv=cv, cv_folds=cv_folds, split=split, holdout=not no_holdout,
                            relevance=relevance, threshold=relevance_threshold, jobs=jobs,
                            early_stopping=early_stopping, pruner=pruner, storage=storage, study=study,
                            train_best=train_best, name=name, force=force, seed=seed, data_dir=data_dir,
                            artifacts_dir=artifacts_dir, on_start=display.start, on_trial=display, mlflow=tracking,
                            progress=progress)
        finally:
            display.close()
            progress.close()
        for line in report.notes:
            typer.echo(line, err=True)
        result = report.to_dict()
        if plot is not None:
            from recsys_cli.figures.plots import plot_tune

            typer.echo(f"wrote {plot_tune(result, plot)}", err=True)
        if fmt == "table":
            render_tune(result)
        else:
            emit(result, fmt)
