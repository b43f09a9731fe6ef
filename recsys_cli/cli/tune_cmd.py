"""tune: grid or random hyperparameter search with K-fold CV and an untouched holdout report."""

from __future__ import annotations

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

HELP = """Search hyperparameters by K-fold CV, then report the best config on held-out data.

Grid search tries every combination of the --grid lists; random search draws --random N
trials (seeded) from --space distributions: loguniform(a,b), uniform(a,b), int(a,b)
(integers a..b), intlog(a,b) (log-uniform integers) or choice(a,b,...). --param fixes
other hyperparameters. rmse, mae and popularity_bias@K are minimised, others maximised.

Nested so tuning never sees the data it reports on: the test part of --split (default: a
seeded random 20% of the ratings) is held out, the CV runs on the rest only, and the best
config is refitted on that rest and scored once on the held-out part ("holdout" in the
output). --no-holdout tunes on every rating: the CV score is then optimistic.

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
  recsys tune popularity -d ml-100k --grid min_ratings=5,20,50 --metric ndcg@10 --relevance any --split user
  recsys tune bias -d ml-100k --grid reg_u=5,15,25 --train-best --name bias-best --force
"""


def _show(value: Any) -> str:
    """A parameter value as typed (floats in %g so 1e-05 does not print as 0.0000)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _trial_line(res: dict[str, Any], total: int, metric: str) -> str:
    params = " ".join(f"{k}={_show(v)}" for k, v in res["params"].items())
    if res["error"]:
        return f"trial {res['trial'] + 1}/{total}: {params}  failed: {res['error']}"
    fit = f"  fit {res['fit_seconds']:.2f} s" if res["fit_seconds"] is not None else ""
    return f"trial {res['trial'] + 1}/{total}: {params}  {metric}={res['score']:.4f} ± {res['std']:.4f}{fit}"


class TrialDisplay:
    """Live table of finished trials on stderr for a person watching, else one log line per trial."""

    def __init__(self, total: int, metric: str, lower: bool) -> None:
        from recsys_cli.settings import show_progress

        self.total, self.metric, self.lower = total, metric, lower
        self.rows: list[dict[str, Any]] = []
        self.live = None
        if show_progress():
            from rich.live import Live

            from recsys_cli.output import console_err

            self.live = Live(self._table(), console=console_err(), refresh_per_second=4, transient=False)
            self.live.start()

    def _table(self):
        from rich.table import Table

        table = Table(title=f"trials ({len(self.rows)}/{self.total} done, {self.metric})")
        keys = list(dict.fromkeys(k for r in self.rows for k in r["params"]))
        for col in ["#", *keys, self.metric, "± std", "fit s"]:
            table.add_column(col)
        done = [r for r in self.rows if not r["error"]]
        best = min(done, key=lambda r: r["score"] if self.lower else -r["score"], default=None)
        for r in sorted(self.rows, key=lambda r: r["trial"]):
            score = "failed" if r["error"] else f"{r['score']:.4f}"
            std = "" if r["error"] else f"{r['std']:.4f}"
            fit = "" if r["fit_seconds"] is None else f"{r['fit_seconds']:.2f}"
            style = "bold green" if r is best else None
            table.add_row(str(r["trial"] + 1), *[_show(r["params"].get(k, "")) for k in keys], score, std, fit, style=style)
        return table

    def __call__(self, res: dict[str, Any]) -> None:
        self.rows.append(res)
        if self.live is not None:
            self.live.update(self._table())
        else:
            typer.echo(_trial_line(res, self.total, self.metric), err=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def _emit_table(result: dict[str, Any]) -> None:
    from recsys_cli.output import emit

    metric = result["metric"]
    rows = []
    for t in result["trials"]:
        row = {"trial": t["trial"] + 1, **{k: _show(v) for k, v in t["params"].items()}}
        row[metric] = "failed" if t["error"] else f"{t['score']:.4f} ± {t['std']:.4f}"
        row["fit s"] = "" if t["fit_seconds"] is None else f"{t['fit_seconds']:.2f}"
        row["best"] = "*" if t["trial"] == result["best_trial"] else ""
        rows.append(row)
    emit(rows, "table", title=f"{result['model']} on {result['dataset']}: {result['cv']}-fold CV {metric} ({result['direction']})")
    summary = {
        "best params": " ".join(f"{k}={_show(v)}" for k, v in result["best_params"].items()),
        f"cv {metric}": f"{result['best_score']:.4f} ± {result['best_std']:.4f}",
    }
    if result["holdout"]:
        h = result["holdout"]
        summary[f"holdout {metric}"] = h["score"]
        summary["holdout"] = f"{h['n_test']:,} held-out ratings, tuned on {h['n_tune']:,}"
    if result.get("run"):
        summary["run"] = result["run"]["run"]
    emit(summary, "table", title="best")


def register(app: typer.Typer) -> None:
    @app.command("tune", help=HELP)
    def tune(
        model: Annotated[str, typer.Argument(help="Model to tune (see `recsys train --help`).")],
        dataset: Annotated[str, typer.Option("--dataset", "-d", help="Processed dataset name.")],
        grid: Annotated[Optional[list[str]], typer.Option("--grid", "-g", help="key=v1,v2,... values to try (repeatable; cartesian product).")] = None,
        random: Annotated[Optional[int], typer.Option("--random", help="Random search: number of trials to draw from --space.")] = None,
        space: Annotated[Optional[list[str]], typer.Option("--space", help="key=loguniform(a,b) | uniform(a,b) | int(a,b) | intlog(a,b) | choice(a,b,...) (repeatable).")] = None,
        param: ParamOpt = None,
        cv: Annotated[int, typer.Option("--cv", help="Folds of the CV over the tuning portion.")] = 3,
        metric: Annotated[Optional[str], typer.Option("--metric", help="Metric to optimise, e.g. rmse, mae, ndcg@10, recall@20 (default: rmse, or ndcg@10 for ranking-only models).")] = None,
        split: Annotated[Optional[str], typer.Option("--split", "-s", help="Tune on this split's train part, report on its test part (default: seeded random 80/20).")] = None,
        no_holdout: Annotated[bool, typer.Option("--no-holdout", help="Tune on every rating with no held-out report (optimistic).")] = False,
        relevance: Annotated[str, typer.Option("--relevance", help="'threshold' (held-out rating >= --relevance-threshold) or 'any' held-out rating.")] = "threshold",
        relevance_threshold: Annotated[float, typer.Option("--relevance-threshold", help="Minimum held-out rating that counts as relevant.")] = 4.0,
        jobs: Annotated[int, typer.Option("--jobs", "-j", help="Trials run in this many processes (1 Numba thread each).")] = 1,
        early_stopping: Annotated[bool, typer.Option("--early-stopping", help="Epoch-based models: choose epochs on fold 0 (see above).")] = False,
        train_best: Annotated[bool, typer.Option("--train-best", help="Train the best config on all ratings (or the split's train part) and save it.")] = False,
        name: Annotated[Optional[str], typer.Option("--name", "-n", help="Run name for --train-best (default: MODEL-DATASET[-SPLIT]).")] = None,
        force: ForceOpt = False,
        seed: SeedOpt = 42,
        data_dir: DataDirOpt = None,
        artifacts_dir: ArtifactsDirOpt = None,
        mlflow: MlflowOpt = False,
        mlflow_experiment: MlflowExperimentOpt = None,
        fmt: FormatOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        from recsys_cli.errors import UsageError
        from recsys_cli.evaluation import tuning
        from recsys_cli.evaluation.search_space import parse_grid, parse_space
        from recsys_cli.models.registry import get_model_class
        from recsys_cli.output import emit, resolve_format
        from recsys_cli.tracking import mlflow_options

        fmt = resolve_format(fmt, as_json)
        tracking = mlflow_options(mlflow, mlflow_experiment, artifacts_dir)
        cls = get_model_class(model)
        metric = metric or ("rmse" if cls.predicts_ratings else "ndcg@10")
        tuning.check_metric(metric)
        tuning.metric_settings(metric, relevance, relevance_threshold)  # validates --relevance
        if cv < 2:
            raise UsageError(f"--cv needs at least 2 folds, got {cv}")
        if jobs < 1:
            raise UsageError(f"--jobs must be at least 1, got {jobs}")
        if name and not train_best:
            raise UsageError("--name names the run of --train-best; add --train-best")
        trials = tuning.plan_trials(model, grid=parse_grid(grid), space=parse_space(space), n_random=random or 0,
                                    fixed=parse_params(param), seed=seed)
        if train_best:
            from recsys_cli.artifacts import ArtifactStore, check_run_name
            from recsys_cli.training import default_run_name

            name = check_run_name(name or default_run_name(model, dataset, split))
            store = ArtifactStore(artifacts_dir)
            store.check_writable(name, force=force)
        display = TrialDisplay(len(trials), metric, tuning.lower_is_better(metric))
        try:
            result = tuning.tune(
                model, dataset, trials, metric=metric, cv=cv, split=split, holdout=not no_holdout,
                relevance=relevance, threshold=relevance_threshold, jobs=jobs, early_stopping=early_stopping,
                seed=seed, search="random" if random else "grid", data_dir=data_dir, artifacts_dir=artifacts_dir,
                on_trial=display, mlflow=tracking,
            )
        finally:
            display.close()
        typer.echo(f"best {metric}: {result['best_score']:.4f} ± {result['best_std']:.4f} (CV) with {result['best_params']}", err=True)
        if result["holdout"] and result["holdout"]["score"] is not None:
            typer.echo(f"held-out {metric}: {result['holdout']['score']:.4f} on {result['holdout']['n_test']:,} ratings never seen while tuning", err=True)
        if train_best:
            from recsys_cli.progress import make_progress
            from recsys_cli.api.runs import train_run

            progress = make_progress()
            try:
                result["run"] = train_run(model, dataset, split=split, params=result["best_params"], seed=seed,
                                          name=name, data_dir=data_dir, artifacts_dir=artifacts_dir,
                                          force=force, progress=progress, mlflow=tracking)
            finally:
                progress.close()
            typer.echo(f"saved run {name!r} at {result['run']['path']}", err=True)
        if fmt == "table":
            _emit_table(result)
        else:
            emit(result, fmt)
