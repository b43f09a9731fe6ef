"""Evaluation for the library API: score a model or run, cross-validate, compare models on one protocol.

Every function returns `EvaluationResult`s (`.metrics`, `.to_dict()`, `.to_frame()`); the
dict shape is what `recsys evaluate --format json` prints. With record=True a result also
goes to the run ledger (and to MLflow when `mlflow` options are given), as the CLI does.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys_cli.errors import DataError, UsageError

if TYPE_CHECKING:
    import polars as pl

    from recsys_cli.data.dataset import Interactions
    from recsys_cli.evaluation.protocols import EvalSettings

METRIC_GROUPS = ("all", "rating", "ranking")


@dataclass
class EvaluationResult:
    """Metrics of one model under one protocol (a holdout, or the mean over CV folds)."""

    model: str
    dataset: str
    protocol: dict[str, Any]
    relevance: str
    params: dict[str, Any]
    metrics: dict[str, float]
    metrics_std: dict[str, float | None] = field(default_factory=dict)  # None for a single holdout
    folds: list[dict[str, float]] | None = None
    fit_seconds: float | None = None
    predict_seconds: float | None = None
    seed: int | None = None
    fingerprint: str | None = None
    run: str | None = None

    def __getitem__(self, metric: str) -> float:
        return self.metrics[metric]

    def describe(self) -> str:
        """The protocol as a sentence, e.g. '5-fold cross-validation over the ratings (seed 42)'."""
        return describe_protocol(self.protocol)

    def to_dict(self) -> dict[str, Any]:
        """The shape `recsys evaluate --format json` prints for one model."""
        out: dict[str, Any] = {} if self.run is None else {"run": self.run}
        out.update(model=self.model, dataset=self.dataset, fingerprint=self.fingerprint, protocol=self.protocol,
                   relevance=self.relevance, params=self.params, metrics=self.metrics, metrics_std=self.metrics_std)
        if self.folds is not None:
            out["folds"] = self.folds
        out.update(fit_seconds=self.fit_seconds, predict_seconds=self.predict_seconds, seed=self.seed)
        return out

    def to_frame(self) -> pl.DataFrame:
        """One row: model (and run), then one column per metric and `<metric>_std` for CV."""
        import polars as pl

        row: dict[str, Any] = {"model": self.model, "run": self.run, "dataset": self.dataset}
        for k, v in self.metrics.items():
            row[k] = float(v)
            if self.folds is not None and len(self.folds) > 1:
                row[f"{k}_std"] = float(self.metrics_std.get(k, 0.0))
        row["fit_seconds"] = self.fit_seconds
        return pl.DataFrame([row])

    def folds_frame(self) -> pl.DataFrame:
        """One row per fold (a holdout is one fold)."""
        import polars as pl

        folds = self.folds if self.folds is not None else [self.metrics]
        return pl.DataFrame([{"fold": f, **{k: float(v) for k, v in m.items()}} for f, m in enumerate(folds)])

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvaluationResult:
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in names})


def describe_protocol(protocol: dict[str, Any]) -> str:
    """A protocol dict (kind holdout or cv) as one English phrase."""
    split = protocol.get("split")
    if protocol.get("kind") == "cv":
        if split:
            return f"{protocol.get('folds')}-fold cross-validation over the stored split {split!r}"
        return f"{protocol.get('folds')}-fold cross-validation over the ratings (seed {protocol.get('seed')})"
    if split:
        kind = protocol.get("split_kind")
        return f"holdout: train on split {split!r}" + (f" ({kind})" if kind else "") + ", score its test part"
    unscored = protocol.get("ratings_not_scored")
    return "holdout on the given test ratings" + (
        f" ({unscored:,} of items outside the model's catalogue not scored)" if unscored else "")


class Comparison(list):
    """Results of several models on identical folds; a list of EvaluationResult with frame helpers."""

    def to_dict(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self]

    def to_frame(self) -> pl.DataFrame:
        import polars as pl

        return pl.concat([r.to_frame() for r in self], how="diagonal_relaxed")


# ------------------------------------------------------------------------------------ settings
def eval_settings(metrics: str | Sequence[str] = "all", k: int | Sequence[int] = 10, *, relevance: str = "threshold",
                  threshold: float = 4.0, fcp: bool = False) -> tuple[EvalSettings, list[str] | None]:
    """EvalSettings for a metric group or list of metric names; returns (settings, names to keep or None)."""
    import math
    import numbers

    from recsys_cli.evaluation.protocols import EvalSettings

    ks = [k] if isinstance(k, (int, np.integer)) and not isinstance(k, bool) else list(k)
    if not ks or any(isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 1 for x in ks):
        raise UsageError(f"k must be a positive integer or a list of them, got {k!r}")
    if any(x > 100_000 for x in ks):
        raise UsageError(f"k must be at most 100,000, got {max(ks)}")
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not math.isfinite(threshold):
        raise UsageError(f"the relevance threshold must be a finite number, got {threshold!r}")
    keep = None
    if isinstance(metrics, str):
        if metrics not in METRIC_GROUPS:
            raise UsageError(f"metrics must be all, rating or ranking, or a list of metric names; got {metrics!r}")
        rating, ranking = metrics != "ranking", metrics != "rating"
    else:
        from recsys_cli.evaluation.tuning import check_metric

        metrics = list(metrics)
        if not metrics:  # an empty result dict, with nothing to say why
            raise UsageError("metrics is an empty list; give names such as ['rmse', 'ndcg@10'], or 'all', "
                             "'rating' or 'ranking'")
        keep = []
        for name in metrics:
            base, cut = check_metric(name)
            if cut is not None:
                ks.append(cut)
            keep.append(name)
            fcp = fcp or base == "fcp"
        rating = any(check_metric(m)[0] in ("rmse", "mae", "fcp") for m in keep)
        ranking = any(check_metric(m)[0] not in ("rmse", "mae", "fcp") for m in keep)
    settings = EvalSettings(ks=tuple(sorted(set(int(x) for x in ks))), relevance=relevance, threshold=float(threshold),
                            fcp=fcp, rating_metrics=rating, ranking_metrics=ranking)
    return settings, keep


def _keep(scores: dict[str, float], keep: list[str] | None) -> dict[str, float]:
    if keep is None:
        return scores
    return {k: v for k, v in scores.items() if k in keep}


# ------------------------------------------------------------------------------------ evaluate
def _train_view(est) -> Interactions:
    """The training ratings' shape (users x seen items) rebuilt from a loaded model, for ranking metrics."""
    from recsys_cli.data.dataset import Interactions

    users = np.repeat(np.arange(len(est.user_ids), dtype=np.int32), np.diff(est.seen_indptr))
    return Interactions(users=users, items=est.seen_indices.astype(np.int32), ratings=np.ones(len(users), np.float32),
                        user_ids=est.user_ids, item_ids=est.item_ids, rating_scale=est.rating_scale)


def evaluate(model: Any, test: Any = None, *, metrics: str | Sequence[str] = "all", k: int | Sequence[int] = 10,
             relevance: str = "threshold", threshold: float = 4.0, fcp: bool = False, train: Any = None,
             data_dir=None, artifacts_dir=None, record: bool = False, mlflow=None) -> EvaluationResult:
    """Score a fitted model, a `Run` or a run name on held-out ratings.

    model: a fitted `Recommender`, a `Run`, or a run's name. test: a `Dataset` (or frame) of
    held-out ratings; for a run it defaults to the test part of the split it was trained on.
    metrics: 'all', 'rating', 'ranking' or names such as ['rmse', 'ndcg@10']. Ranking metrics
    rank the full catalogue minus each user's training items; relevant = held-out rating >=
    threshold, or any held-out rating with relevance='any'.
    """
    from recsys_cli.api.data import as_dataset
    from recsys_cli.api.model import Recommender
    from recsys_cli.api.runs import Run, load_run
    from recsys_cli.evaluation.protocols import score_model

    settings, keep = eval_settings(metrics, k, relevance=relevance, threshold=threshold, fcp=fcp)
    if isinstance(model, str):
        model = load_run(model, artifacts_dir=artifacts_dir)
    if isinstance(model, Run) and test is None:
        result = _evaluate_run_split(model, settings, keep, data_dir=data_dir)
        _record([result], artifacts_dir=artifacts_dir, record=record, mlflow=mlflow)
        return result
    run_name = None
    if isinstance(model, Run):
        run_name = model.name
        model = model.model
    if not isinstance(model, Recommender):
        raise UsageError(f"evaluate takes a fitted Recommender, a Run or a run name, got {type(model).__name__}")
    if test is None:
        raise UsageError("give the held-out ratings to score the model on: evaluate(model, test)")
    est = model._fitted()
    test_data = as_dataset(test)
    train_inter = as_dataset(train).interactions if train is not None else (model._train or _train_view(est))
    test_inter = test_data.interactions.on_items(est.item_ids)
    if len(test_inter) == 0:  # every metric would be missing: the result was an empty dict
        given = test_data.interactions
        raise DataError(f"none of the {len(given):,} test ratings is of an item in the model's catalogue "
                        f"(e.g. item {int(given.item_ids[given.items[0]])}); nothing to score: evaluate on "
                        "ratings of the items the model was trained with")
    unscored = len(test_data.interactions) - len(test_inter)  # ratings of items outside the catalogue: said
    train_inter = train_inter.on_items(est.item_ids)
    t0 = time.perf_counter()
    scores = score_model(est, train_inter, test_inter, settings)
    seconds = time.perf_counter() - t0
    scores.pop("predict_seconds", None)
    info = model.trained_on
    result = EvaluationResult(
        model=model.name, run=run_name, dataset=test_data.name, fingerprint=test_data.fingerprint,
        protocol={"kind": "holdout", "split": test_inter.split,
                  **({"ratings_not_scored": unscored} if unscored else {})},
        relevance=settings.describe(), params=model.params,
        metrics=_keep(scores, keep), metrics_std={k: None for k in _keep(scores, keep)},  # one holdout: no spread
        fit_seconds=info.get("train_seconds"), predict_seconds=seconds, seed=info.get("seed"),
    )
    _record([result], artifacts_dir=artifacts_dir, record=record, mlflow=mlflow)
    return result


def _evaluate_run_split(run, settings: EvalSettings, keep: list[str] | None, *, data_dir=None) -> EvaluationResult:
    from recsys_cli import settings as paths
    from recsys_cli.evaluation.runner import evaluate_run

    m = run.manifest
    if m.split and not (paths.processed_dir(m.dataset, data_dir) / "dataset.json").exists():
        # e.g. a model trained on rs.from_frame(...) data: its split lives in memory, not under the data root
        raise UsageError(f"run {run.name!r} was trained on {m.dataset!r}, which is not a processed dataset here, so "
                         "its test part is not stored; pass the held-out ratings: evaluate(run, test)")
    res = evaluate_run(run.name, data_dir=data_dir, artifacts_dir=run.store.root, settings=settings)
    res["metrics"] = _keep(res["metrics"], keep)
    res["metrics_std"] = _keep(res["metrics_std"], keep)
    return EvaluationResult.from_dict(res)


# ------------------------------------------------------------------------------ cross-validation
def _spec(model: Any, params: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """(label, params) for a model name (NAME or NAME@PRESET), an unfitted Recommender or a (name, params) pair."""
    from recsys_cli.api.model import Recommender

    if isinstance(model, Recommender):
        label = model.name + (f"@{model.preset}" if model.preset else "")
        return label, {**model.params, **(params or {})}
    if isinstance(model, tuple) and len(model) == 2 and isinstance(model[0], str):
        if not isinstance(model[1], Mapping):
            raise UsageError(f"a (name, params) model pair needs a dict of params, got {model!r}"[:300])
        return model[0], {**dict(model[1]), **(params or {})}
    if isinstance(model, str):
        return model, dict(params or {})
    raise UsageError(f"a model is a name ('svd', 'svd@surprise'), a Recommender or a (name, params) pair, got {model!r}"[:300])


def compare(models: Sequence[Any], data: Any, *, cv: int | None = None, split: str | None = None, seed: int = 42,
            metrics: str | Sequence[str] = "all", k: int | Sequence[int] = 10, relevance: str = "threshold",
            threshold: float = 4.0, fcp: bool = False, data_dir=None, artifacts_dir=None, record: bool = False,
            mlflow=None, progress=None) -> Comparison:
    """Train and score several models on identical folds: `compare(["bias", "svd"], ds, cv=5)`.

    data: a `Dataset`, a frame, or a processed dataset's name. cv=K folds over the ratings
    (seeded), or split=NAME for a split stored with a processed dataset (every fold of a k-fold one).
    """
    from recsys_cli.api.data import Dataset, as_dataset, load_dataset
    from recsys_cli.api.model import check_seed
    from recsys_cli.evaluation.runner import compare_on_folds, cv_folds, folds

    seed = check_seed(seed)
    pair = isinstance(models, tuple) and len(models) == 2 and isinstance(models[0], str) \
        and isinstance(models[1], Mapping)
    if isinstance(models, str) or pair or not isinstance(models, Iterable):
        models = [models]
    models = list(models)  # a tuple, a generator or a pandas Series of names is a list of models
    if not models:
        raise UsageError("give at least one model to evaluate")
    specs = [_spec(m) for m in models]
    settings, keep = eval_settings(metrics, k, relevance=relevance, threshold=threshold, fcp=fcp)
    ds = load_dataset(data, data_dir=data_dir) if isinstance(data, str) else as_dataset(data)
    if (cv is None) == (split is None):
        raise UsageError("give exactly one of cv=K or split=NAME")
    if split is not None:
        if not isinstance(ds, Dataset) or ds._processed is None or ds.part is not None:
            raise UsageError("split=NAME needs a whole processed dataset (load_dataset(name)); use cv=K for other data")
        protocol, fold_iter = folds(ds._processed, cv=None, split=split, seed=seed)
    else:
        protocol, fold_iter = cv_folds(ds.interactions, cv=cv, seed=seed)
    raw = compare_on_folds(specs, protocol, fold_iter, dataset=ds.name, fingerprint=ds.fingerprint, seed=seed,
                           settings=settings, progress=progress)
    results = Comparison()
    for res in raw:
        res["metrics"] = _keep(res["metrics"], keep)
        res["metrics_std"] = _keep(res["metrics_std"], keep)
        res["folds"] = [_keep(f, keep) for f in res["folds"]]
        results.append(EvaluationResult.from_dict(res))
    _record(results, artifacts_dir=artifacts_dir, record=record, mlflow=mlflow)
    return results


def cross_validate(model: Any, data: Any, *, cv: int = 5, seed: int = 42, **options: Any) -> EvaluationResult:
    """K-fold CV of one model: mean metrics (and `metrics_std`, `folds`), as Surprise's cross_validate."""
    return compare([model], data, cv=cv, seed=seed, **options)[0]


# ------------------------------------------------------------------------------------ recording
def _record(results: Sequence[EvaluationResult], *, artifacts_dir=None, record: bool, mlflow=None) -> None:
    """Each result into the ledger (and MLflow); the CLI records every evaluation."""
    if not record and mlflow is None:
        return
    from recsys_cli import ledger

    for res in results:
        entry = dict(
            run=res.run, model=res.model, params=res.params, seed=res.seed, dataset=res.dataset,
            fingerprint=res.fingerprint, split=res.protocol.get("split"), protocol=res.protocol, metrics=res.metrics,
            timings={"fit_seconds": res.fit_seconds, "predict_seconds": res.predict_seconds},
        )
        if record:
            ledger.record("evaluate", root=artifacts_dir, **entry)
        if mlflow is not None:
            from recsys_cli.tracking import log_run

            folds = len(res.folds or [])
            stds = {f"{k}_std": v for k, v in res.metrics_std.items()} if folds > 1 else {}
            log_run(mlflow, "evaluate", **{**entry, "metrics": {**res.metrics, **stds}}, details=res.to_dict())
