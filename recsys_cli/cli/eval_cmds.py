"""evaluate: score a run, or compare models on identical folds."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from recsys_cli.cli.common import (
    ArtifactsDirOpt,
    DataDirOpt,
    FormatOpt,
    JsonOpt,
    MlflowExperimentOpt,
    MlflowOpt,
    ParamOpt,
    SeedOpt,
    parse_params,
)

TABLE_METRICS = ("rmse", "mae", "precision@{k}", "recall@{k}", "ndcg@{k}", "map@{k}", "mrr@{k}", "hit_rate@{k}", "auc", "coverage@{k}", "novelty@{k}")


def split_model_params(models: list[str], raw: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """`-p svd.factors=50` targets one model; an unprefixed key goes to every model."""
    from recsys_cli.errors import UsageError

    specs = []
    for name in models:
        params = {}
        for key, value in raw.items():
            target, dot, sub = key.rpartition(".")
            if dot:
                if target.replace("_", "-") not in [m.replace("_", "-") for m in models]:
                    raise UsageError(f"--param {key}: {target!r} is not one of the evaluated models ({', '.join(models)})")
                if target.replace("_", "-") == name.replace("_", "-"):
                    params[sub] = value
            else:
                params[key] = value
        specs.append((name, params))
    return specs


def table_rows(results: list[dict], ks: list[int]) -> tuple[list[dict], list[str]]:
    """One row per metric, one column per model (fits a terminal with many metrics)."""
    names = [res.get("run") or res["model"] for res in results]
    rows = []
    for pattern in TABLE_METRICS:
        for k in ks if "{k}" in pattern else [None]:
            key = pattern.format(k=k)
            if not any(key in res["metrics"] for res in results):
                continue
            row = {"metric": key}
            for name, res in zip(names, results, strict=False):
                if key in res["metrics"]:
                    std = res["metrics_std"].get(key, 0.0)
                    row[name] = f"{res['metrics'][key]:.4f}" + (f" ± {std:.4f}" if std else "")
            rows.append(row)
    rows.append({"metric": "fit seconds", **{n: f"{r['fit_seconds']:.2f}" for n, r in zip(names, results, strict=False) if r.get("fit_seconds") is not None}})
    return rows, ["metric", *names]


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
        seed: SeedOpt = 42,
        data_dir: DataDirOpt = None,
        artifacts_dir: ArtifactsDirOpt = None,
        mlflow: MlflowOpt = False,
        mlflow_experiment: MlflowExperimentOpt = None,
        fmt: FormatOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        from recsys_cli import ledger
        from recsys_cli.errors import UsageError
        from recsys_cli.evaluation.protocols import EvalSettings
        from recsys_cli.evaluation.runner import compare_models, evaluate_run
        from recsys_cli.output import emit, resolve_format
        from recsys_cli.progress import make_progress
        from recsys_cli.tracking import log_run, mlflow_options

        fmt = resolve_format(fmt, as_json)
        tracking = mlflow_options(mlflow, mlflow_experiment, artifacts_dir)
        ks = sorted(set(k or [10]))
        if only not in ("all", "rating", "ranking"):
            raise UsageError(f"--metrics must be all, rating or ranking, got {only!r}")
        settings = EvalSettings(ks=tuple(ks), relevance=relevance, threshold=relevance_threshold, fcp=fcp,
                                rating_metrics=only != "ranking", ranking_metrics=only != "rating")
        if run is not None:
            if model or cv or split:
                raise UsageError("give a RUN, or --model with --dataset and --cv/--split, not both")
            results = [evaluate_run(run, data_dir=data_dir, artifacts_dir=artifacts_dir, settings=settings)]
        else:
            if not model or not dataset:
                raise UsageError("give a RUN to score, or --model M[,M2] --dataset NAME (--cv K | --split NAME)")
            names = [m.strip() for m in model.split(",") if m.strip()]
            specs = split_model_params(names, parse_params(param))
            progress = make_progress()
            try:
                results = compare_models(
                    specs, dataset, cv=cv, split=split, seed=seed, settings=settings, data_dir=data_dir, progress=progress
                )
            finally:
                progress.close()
        for res in results:
            entry = dict(
                run=res.get("run"), model=res["model"], params=res["params"],
                seed=res.get("seed"), dataset=res["dataset"], fingerprint=res.get("fingerprint"),
                split=res["protocol"].get("split"), protocol=res["protocol"], metrics=res["metrics"],
                timings={"fit_seconds": res.get("fit_seconds"), "predict_seconds": res.get("predict_seconds")},
            )
            ledger.record("evaluate", root=artifacts_dir, **entry)
            if tracking is not None:
                folds = len(res.get("folds") or [])
                stds = {f"{k}_std": v for k, v in res.get("metrics_std", {}).items()} if folds > 1 else {}
                log_run(tracking, "evaluate", **{**entry, "metrics": {**res["metrics"], **stds}}, details=res)
        typer.echo(f"protocol: {results[0]['protocol']}; {settings.describe()}", err=True)
        if fmt == "table":
            rows, cols = table_rows(results, ks)
            emit(rows, fmt, columns=cols, title=f"{results[0]['dataset']}: {settings.describe()}")
        else:
            emit(results, fmt)
