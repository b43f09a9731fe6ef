"""evaluate: score a run, or compare models on identical folds."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from recsys_cli.cli.common import (
    ArtifactsDirOpt,
    DataDirOpt,
    FormatOpt,
    JsonOpt,
    MlflowExperimentOpt,
    MlflowOpt,
    ParamOpt,
    model_params,
)


def register(app: typer.Typer) -> None:
    @app.command(
        "evaluate",
        help="Score a trained run on its held-out data, or compare models on identical folds.\n\n"
        "Examples:\n\n"
        "  recsys evaluate svd-ml-100k-random\n\n"
        "  recsys evaluate --model bias,svd,item-knn,surprise:SVD --dataset ml-100k --cv 5\n\n"
        "  recsys evaluate --model svd@surprise,surprise:SVD --dataset ml-100k --cv 5   (MODEL@PRESET)\n\n"
        "  recsys evaluate --model ials,bpr --dataset ml-100k --split user --relevance any --k 10 --k 20\n\n"
        "  recsys evaluate --model bias,svd --dataset ml-100k --cv 5 --mlflow   (one MLflow run per model)",
    )
    def evaluate(
        run: Annotated[Optional[str], typer.Argument(help="A trained run to score on its split's test part.")] = None,
        model: Annotated[Optional[str], typer.Option("--model", "-m", help="Comma-separated models to train and compare.")] = None,
        dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", help="Dataset for --model.")] = None,
        cv: Annotated[Optional[int], typer.Option("--cv", help="K-fold cross-validation over ratings (seeded).")] = None,
        split: Annotated[Optional[str], typer.Option("--split", "-s", help="A named split (holdout, or every fold of a k-fold split).")] = None,
        param: ParamOpt = None,
        k: Annotated[Optional[list[int]], typer.Option("--k", help="Cut-off for ranking metrics (repeatable).")] = None,
        relevance: Annotated[str, typer.Option("--relevance", help="'threshold' (held-out rating >= --relevance-threshold) or 'any' held-out rating.")] = "threshold",
        relevance_threshold: Annotated[float, typer.Option("--relevance-threshold", help="Minimum held-out rating that counts as relevant.")] = 4.0,
        fcp: Annotated[bool, typer.Option("--fcp", help="Also compute the fraction of concordant pairs.")] = False,
        only: Annotated[str, typer.Option("--metrics", help="Which metrics: all, rating (RMSE/MAE only; fast for slow peers such as surprise:KNN*) or ranking.")] = "all",
        seed: Annotated[int, typer.Option("--seed", help="Random seed of --cv folds and --model fits (a RUN is scored on its stored split).")] = 42,
        data_dir: DataDirOpt = None,
        artifacts_dir: ArtifactsDirOpt = None,
        mlflow: MlflowOpt = False,
        mlflow_experiment: MlflowExperimentOpt = None,
        fmt: FormatOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        from recsys_cli.api.evaluate import compare, evaluate
        from recsys_cli.api.model import check_seed
        from recsys_cli.errors import UsageError
        from recsys_cli.output import emit, metrics_table, resolve_format
        from recsys_cli.progress import make_progress
        from recsys_cli.tracking import mlflow_options

        check_seed(seed)  # with a RUN too: -1 was accepted (and recorded in the ledger), though every other --seed is checked
        fmt = resolve_format(fmt, as_json)
        tracking = mlflow_options(mlflow, mlflow_experiment, artifacts_dir)
        options = dict(metrics=only, k=sorted(set(k or [10])), relevance=relevance, threshold=relevance_threshold,
                       fcp=fcp, data_dir=data_dir, artifacts_dir=artifacts_dir, record=True, mlflow=tracking)
        if run is not None:
            if model or cv or split:
                raise UsageError("give a RUN, or --model with --dataset and --cv/--split, not both")
            results = [evaluate(run, **options)]
        else:
            if not model or not dataset:
                raise UsageError("give a RUN to score, or --model M[,M2] --dataset NAME (--cv K | --split NAME)")
            names = [m.strip() for m in model.split(",") if m.strip()]
            specs = list(model_params(param, names).items())
            progress = make_progress()
            try:
                results = compare(specs, dataset, cv=cv, split=split, seed=seed, progress=progress, **options)
            finally:
                progress.close()
        first = results[0]
        typer.echo(f"protocol: {first.describe()}; {first.relevance}", err=True)
        if fmt == "table":
            rows, cols = metrics_table([r.to_dict() for r in results], options["k"])
            emit(rows, fmt, columns=cols, title=first.dataset)
        else:
            emit([r.to_dict() for r in results], fmt)
