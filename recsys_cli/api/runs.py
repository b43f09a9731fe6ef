"""Saved runs for the library API: `save`, `load_run`, `list_runs`, and the typed `Manifest`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recsys_cli.errors import ArtifactError, UsageError

if TYPE_CHECKING:
    from recsys_cli.api.evaluate import EvaluationResult
    from recsys_cli.api.model import Recommender

_TYPES = {"str": str, "int": int, "float": (int, float), "dict": dict}
_ARTICLE = {"str": "a string", "int": "an integer", "float": "a number", "dict": "a JSON object"}


@dataclass(frozen=True)
class Manifest:
    """What a run's manifest.json says, typed. `extra` keeps keys this version does not know."""

    run: str
    model: str
    config: dict[str, Any]
    dataset: str
    dataset_fingerprint: str
    seed: int
    created: str
    train_seconds: float
    n_users: int
    n_items: int
    package_version: str
    format_version: int
    split: str | None = None
    fit_info: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    preset: str | None = None
    n_train_ratings: int | None = None
    engine: str = "local"
    extra: dict[str, Any] = field(default_factory=dict)

    # (key, type, required)
    _SCHEMA = (
        ("run", "str", True), ("model", "str", True), ("config", "dict", True), ("dataset", "str", True),
        ("dataset_fingerprint", "str", True), ("split", "str", False), ("seed", "int", True),
        ("created", "str", True), ("train_seconds", "float", True), ("n_users", "int", True),
        ("n_items", "int", True), ("package_version", "str", True), ("format_version", "int", True),
        ("fit_info", "dict", False), ("metrics", "dict", False), ("preset", "str", False),
        ("n_train_ratings", "int", False), ("engine", "str", False),
    )

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "manifest.json") -> Manifest:
        """Check every key's presence and JSON type; ArtifactError naming the file and the key otherwise."""
        if not isinstance(data, dict):
            raise ArtifactError(f"{where}: expected a JSON object, got {type(data).__name__}")
        values: dict[str, Any] = {}
        for key, typ, required in cls._SCHEMA:
            value = data.get(key)
            if value is None:
                if required:
                    raise ArtifactError(f"{where}: missing key {key!r}; the run is damaged, retrain it")
                continue
            ok = isinstance(value, _TYPES[typ]) and not isinstance(value, bool)
            if not ok:
                raise ArtifactError(f"{where}: {key!r} should be {_ARTICLE[typ]}, "
                                    f"got {type(value).__name__} {value!r}"[:300])
            values[key] = float(value) if typ == "float" else value
        values.setdefault("split", None)  # optional but declared before the required keys (no dataclass default)
        known = {k for k, _, _ in cls._SCHEMA}
        values["extra"] = {k: v for k, v in data.items() if k not in known}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**out, **self.extra}


class Run:
    """A saved run: its name, folder, typed manifest and the model (loaded on first use)."""

    def __init__(self, name: str, *, artifacts_dir=None, model: Recommender | None = None, mmap: bool = False) -> None:
        from recsys_cli.artifacts import ArtifactStore

        self.store = ArtifactStore(artifacts_dir)
        self.name = name
        self.path: Path = self.store.path(name)
        self._model = model
        self._manifest: Manifest | None = None
        self.mmap = mmap  # map the arrays instead of reading them (see ArtifactStore.load)

    def __repr__(self) -> str:
        m = self.manifest
        return f"Run({self.name!r}: {m.model} on {m.dataset}" + (f" split {m.split}" if m.split else "") + ")"

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            self._manifest = Manifest.from_dict(self.store.manifest(self.name), where=str(self.path / "manifest.json"))
        return self._manifest

    @property
    def model(self) -> Recommender:
        """The fitted model, loaded without pickle (arrays.npz, allow_pickle=False)."""
        if self._model is None:
            from recsys_cli.api.model import Recommender

            estimator, raw = self.store.load(self.name, mmap=self.mmap)
            m = Manifest.from_dict(raw, where=str(self.path / "manifest.json"))
            self._manifest = m
            self._model = Recommender(
                estimator, titles=self.store.titles(self.name), preset=m.preset,
                trained_on={"dataset": m.dataset, "fingerprint": m.dataset_fingerprint, "split": m.split,
                            "seed": m.seed, "train_seconds": m.train_seconds, "n_train_ratings": m.n_train_ratings},
            )
        return self._model

    @property
    def titles(self) -> dict[int, str]:
        return self.model.titles

    def evaluate(self, test: Any = None, **options: Any) -> EvaluationResult:
        """Score the run: on its split's test part (default), or on `test`. See `evaluate`."""
        from recsys_cli.api.evaluate import evaluate

        return evaluate(self, test, **options)

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.name, "path": str(self.path), **self.manifest.to_dict()}


def save(model: Recommender, name: str | None = None, *, force: bool = False, artifacts_dir=None,
         record: bool = True, mlflow=None) -> Run:
    """Save a fitted model as a run named `name` (default MODEL-DATASET[-SPLIT]); returns the `Run`.

    Written to a hidden folder and moved in at once; an existing run is replaced only with
    force=True. The run is also recorded in the ledger (`recsys runs --ledger`) unless record=False.
    """
    from recsys_cli.api.model import Recommender
    from recsys_cli.artifacts import ArtifactStore, check_run_name
    from recsys_cli.training import default_run_name

    if not isinstance(model, Recommender):
        raise UsageError(f"save takes a model from rs.train(...) or rs.create_model(...).fit(...), got {model!r}")
    if name is not None and not isinstance(name, str):
        raise UsageError(f"a run name is a string such as 'svd-notebook', got {name!r}"[:300])
    est = model._fitted()
    info = model.trained_on
    dataset = info.get("dataset") or "data"
    run = check_run_name(default_run_name(model.name, dataset, info.get("split")) if name is None else name)
    store = ArtifactStore(artifacts_dir)
    path = store.save(
        run, est, dataset=dataset, fingerprint=info.get("fingerprint", ""), split=info.get("split"),
        seed=int(info.get("seed", 42)), train_seconds=float(info.get("train_seconds", 0.0)), titles=model.titles,
        extra={"preset": model.preset, "n_train_ratings": info.get("n_train_ratings"),
               "split_fingerprint": info.get("split_fingerprint")}, force=force,
    )
    if record or mlflow is not None:
        entry = dict(run=run, model=model.name, params=model.params, seed=int(info.get("seed", 42)),
                     dataset=dataset, fingerprint=info.get("fingerprint", ""), split=info.get("split"),
                     timings={"train_seconds": round(float(info.get("train_seconds", 0.0)), 4)})
        if record:
            from recsys_cli import ledger

            ledger.record("train", root=artifacts_dir, **entry)
        if mlflow is not None:
            from recsys_cli.tracking import log_run

            log_run(mlflow, "train", run_path=path, **entry)
    return Run(run, artifacts_dir=artifacts_dir, model=model)


def run_name_of(run: Any, what: str) -> str:
    """The name of a saved run given by name (or as a `Run`); UsageError for a model or anything else."""
    from recsys_cli.api.model import Recommender

    if isinstance(run, Run):
        return run.name
    if isinstance(run, Recommender):
        raise UsageError(f"{what} takes a saved run (its name or rs.load_run(name)), not a model; ask the model "
                         "itself (model.recommend(...), .predict(...), .similar_items(...)) or rs.save(model, name) first")
    if not isinstance(run, str):
        raise UsageError(f"{what} takes a saved run's name (a string such as 'svd-notebook'), got {run!r}"[:300])
    return run


def load_run(name: str, *, artifacts_dir=None, mmap: bool = False) -> Run:
    """Open a saved run (checks it exists and its manifest now; loads the arrays on `.model`).

    mmap=True maps the arrays from the run's arrays.npz instead of reading them (servers: shared
    pages, only what is touched resident); never overwrite a mapped run's files in place.
    """
    if isinstance(name, Run) and artifacts_dir is None and mmap == name.mmap:
        return name
    name = run_name_of(name, "load_run")
    run = Run(name, artifacts_dir=artifacts_dir, mmap=mmap)
    run.manifest  # noqa: B018 - fail now, with the run's name, if it is missing or damaged
    return run


def list_runs(*, model: str | None = None, dataset: str | None = None, sort: str | None = None,
              limit: int | None = None, artifacts_dir=None) -> list[dict[str, Any]]:
    """Saved runs, newest first (or best first by `sort`, a metric), as plain dicts."""
    from recsys_cli import ledger
    from recsys_cli.artifacts import ArtifactStore

    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise UsageError(f"limit must be a positive integer, got {limit!r}")
    ledger.check_filters(sort=sort)
    rows = []
    for m in ArtifactStore(artifacts_dir).list_runs():
        if (model and m.get("model") != model) or (dataset and m.get("dataset") != dataset):
            continue
        rows.append({"run": m["run"], "model": m.get("model"), "dataset": m.get("dataset"), "split": m.get("split"),
                     "created": m.get("created"), "train_seconds": m.get("train_seconds"),
                     "metrics": m.get("metrics") or {}})
    if sort:
        rows = ledger.sort_by_metric(rows, sort)
    return rows[:limit] if limit else rows


def train_run(model: str, dataset: str, *, split: str | None = None, params: dict[str, Any] | None = None,
              preset: str | None = None, seed: int = 42, name: str | None = None, force: bool = False,
              data_dir=None, artifacts_dir=None, progress=None, mlflow=None, engine: str = "local",
              spark=None) -> dict[str, Any]:
    """`recsys train`: fit MODEL on a processed dataset (or its split's train part) and save it as a run.

    Fails before training when the run exists (without force) or cannot be written. Returns the
    summary `recsys train --format json` prints. engine="spark" trains als/ials on Spark MLlib
    (`spark`: the session options) and saves the same kind of run.
    """
    if engine == "spark":  # the Spark engine reads, trains and saves a standard run itself
        from recsys_cli.spark.train import train_spark_run

        return train_spark_run(model, dataset, split=split, params=params, preset=preset, seed=seed, run_name=name,
                               data_dir=data_dir, artifacts_dir=artifacts_dir, force=force, progress=progress,
                               mlflow=mlflow, spark=spark)
    if engine != "local":
        raise UsageError(f"unknown engine {engine!r}; use local or spark")
    from recsys_cli.api.data import Dataset
    from recsys_cli.api.model import check_seed, create_model
    from recsys_cli.artifacts import ArtifactStore, check_run_name
    from recsys_cli.data.dataset import load_dataset as load_processed
    from recsys_cli.training import default_run_name

    seed = check_seed(seed)
    if not isinstance(dataset, str):
        raise UsageError(f"train_run takes a processed dataset's name such as 'ml-100k', got {type(dataset).__name__}; "
                         "for a Dataset in memory use rs.save(rs.train(model, data), name)")
    if params is not None and not isinstance(params, Mapping):
        raise UsageError(f"params must be a dict of hyperparameters such as {{'factors': 50}}, got {params!r}"[:300])
    rec = create_model(model, preset=preset, **(params or {}))
    run = check_run_name(name or default_run_name(model, dataset, split))
    ArtifactStore(artifacts_dir).check_writable(run, force=force)  # before the work, not after it
    processed = load_processed(dataset, data_dir)
    data = processed.interactions(split, "train")
    rec.estimator.check_fit_memory(data.n_users, data.n_items, len(data))  # before any work is logged
    if progress is not None:
        progress.log(f"training {model} on {dataset}" + (f" split {split}" if split else " (all ratings)")
                     + f": {len(data):,} ratings, {data.n_users:,} users, {data.n_items:,} items")
    rec.fit(Dataset(data, name=dataset, processed=processed, part="train" if split else None), seed=seed,
            progress=progress)
    saved = save(rec, run, force=force, artifacts_dir=artifacts_dir, mlflow=mlflow)
    seconds = rec.trained_on["train_seconds"]
    return {
        "run": run, "model": model, "dataset": dataset, "split": split, "seed": seed, "train_ratings": len(data),
        "train_seconds": round(seconds, 3), "path": str(saved.path), "config": rec.params, "fit_info": rec.fit_info,
    }
