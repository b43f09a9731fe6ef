"""The recsys library API: every step of the chain as one call, for notebooks, scripts and our own faces.

    import recsys_cli as rs
    data = rs.from_frame(df, user="userId", item="movieId", rating="rating")
    train, test = data.split("user", test=0.25, seed=42)
    model = rs.train("ials", train, seed=42)
    print(rs.evaluate(model, test, relevance="any").metrics["ndcg@10"])
    model.recommend([1, 2], n=10)          # a polars DataFrame with raw ids and titles

The command line (`recsys ...`), the HTTP server and the dashboard are thin faces over
these functions. See docs/api.md for the walk-through.
"""

from recsys_cli.api import metrics
from recsys_cli.api.data import (
    Dataset,
    create_split,
    dataset_info,
    datasets,
    download,
    from_frame,
    generate,
    item_metadata,
    load_dataset,
    preprocess,
)
from recsys_cli.api.evaluate import Comparison, EvaluationResult, compare, cross_validate, evaluate
from recsys_cli.api.experiments import (
    ABTestResult,
    BanditResult,
    BenchmarkReport,
    TuneResult,
    abtest,
    abtest_plan,
    bandit,
    benchmark,
    tune,
)
from recsys_cli.api.model import Recommender, create_model, train
from recsys_cli.api.queries import (
    Predictions,
    Recommendations,
    Similar,
    model_report,
    predict,
    recommend,
    similar,
)
from recsys_cli.api.runs import Manifest, Run, list_runs, load_run, save, train_run

__all__ = [
    "ABTestResult",
    "BanditResult",
    "BenchmarkReport",
    "abtest",
    "abtest_plan",
    "bandit",
    "benchmark",
    "Comparison",
    "Dataset",
    "EvaluationResult",
    "Manifest",
    "Predictions",
    "Recommendations",
    "Similar",
    "Recommender",
    "Run",
    "compare",
    "create_model",
    "create_split",
    "dataset_info",
    "datasets",
    "cross_validate",
    "download",
    "evaluate",
    "from_frame",
    "generate",
    "item_metadata",
    "list_runs",
    "load_dataset",
    "load_run",
    "metrics",
    "model_report",
    "predict",
    "preprocess",
    "recommend",
    "save",
    "similar",
    "train",
    "train_run",
    "tune",
    "TuneResult",
]
