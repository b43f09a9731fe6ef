"""Optional MLflow logging (`--mlflow`): one MLflow run per ledger record.

The SQLite ledger stays the record of truth; this bridge copies the same facts to MLflow:

- params: the model's hyperparameters (flattened, `a.b` for nested keys, lists as JSON), plus
  model, seed, split and the protocol (as `protocol.<key>`);
- metrics: every metric and timing; MLflow names may not contain '@', so `ndcg@10` is logged as
  `ndcg_at_10` (and any other character MLflow refuses becomes '_');
- tags: recsys.command (train, evaluate, tune, tune-trial), recsys.model, recsys.dataset,
  recsys.fingerprint, recsys.split, recsys.run, recsys.version, recsys.versions.<package>,
  mlflow.source.git.commit;
- artifacts: train logs the whole run folder (manifest.json, arrays.npz, vocabularies);
  evaluate logs its full result (per-fold metrics too) as evaluate.json;
- tune: one parent run (best config, held-out metrics, cv_<metric>) with one nested run per trial,
  each logged as soon as it finishes (`TuneLog`).

Tracking URI: $MLFLOW_TRACKING_URI, else a local file store in <artifacts-dir>/mlruns (MLflow 3
refuses file stores unless MLFLOW_ALLOW_FILE_STORE=true; that variable is set only while this
module writes to its own default store). mlflow is imported inside functions only.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys_cli.errors import UsageError

DEFAULT_EXPERIMENT = "recsys"
EXPERIMENT_ENV = "RECSYS_MLFLOW_EXPERIMENT"
MISSING_MESSAGE = "--mlflow needs the mlflow package: pip install 'recsys-cli[mlflow]'"
_BAD_NAME_CHARS = re.compile(r"[^A-Za-z0-9_\-. /]")  # what every MLflow >= 2.10 accepts in a name


@dataclass(frozen=True)
class MlflowOptions:
    """Where --mlflow logs: tracking URI and experiment name (see mlflow_options)."""

    tracking_uri: str
    experiment: str = DEFAULT_EXPERIMENT
    default_store: bool = False  # True when tracking_uri is our own <artifacts-dir>/mlruns


def mlflow_options(enabled: bool, experiment: str | None = None, artifacts_dir=None) -> MlflowOptions | None:
    """None without --mlflow; else the options, or UsageError when mlflow is not importable."""
    if not enabled:
        if experiment is not None:
            raise UsageError("--mlflow-experiment names the experiment of --mlflow; add --mlflow")
        return None
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise UsageError(MISSING_MESSAGE) from None
    from recsys_cli.settings import artifacts_dir as root

    experiment = experiment or os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return MlflowOptions(uri, experiment)
    return MlflowOptions((root(artifacts_dir) / "mlruns").resolve().as_uri(), experiment, default_store=True)


def metric_name(name: str) -> str:
    """An MLflow-safe metric or param name: '@' -> '_at_' (ndcg@10 -> ndcg_at_10), other refused chars -> '_'."""
    return _BAD_NAME_CHARS.sub("_", str(name).replace("@", "_at_"))


def flatten_params(params: Mapping[str, Any] | None, prefix: str = "") -> dict[str, str]:
    """Nested dicts become dotted keys; values are strings (lists and tuples as JSON)."""
    out: dict[str, str] = {}
    for key, value in (params or {}).items():
        name = f"{prefix}{metric_name(key)}"
        if isinstance(value, Mapping):
            out.update(flatten_params(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(value, default=_plain)
        else:
            out[name] = str(_plain(value))
    return out


def metric_values(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """Finite numeric entries with MLflow-safe names; None, NaN, text and booleans are left out."""
    out: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        if isinstance(value, bool) or value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[metric_name(key)] = number
    return out


def _plain(value: Any) -> Any:
    """numpy scalars and arrays to Python values (for str() and JSON)."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return value.tolist()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    if isinstance(value, (list, tuple, dict, str, int, float, bool)) or value is None:
        return value
    return str(value)


def _base_tags(kind: str, model: str, dataset: str | None, fingerprint: str | None, split: str | None,
               run: str | None = None) -> dict[str, str]:
    from recsys_cli import __version__
    from recsys_cli.ledger import git_sha, package_versions

    tags = {"recsys.command": kind, "recsys.model": model, "recsys.version": __version__}
    for key, value in (("dataset", dataset), ("fingerprint", fingerprint), ("split", split), ("run", run)):
        if value is not None:
            tags[f"recsys.{key}"] = str(value)
    tags.update({f"recsys.versions.{k}": str(v) for k, v in package_versions().items() if v})
    if sys.argv and "recsys" in os.path.basename(sys.argv[0]):
        tags["recsys.command_line"] = " ".join(["recsys", *sys.argv[1:]])[:5000]
    sha = git_sha()
    if sha:
        tags["mlflow.source.git.commit"] = sha
    return tags


def _run_params(model: str, params: Mapping[str, Any] | None, seed: int | None, split: str | None,
                protocol: Mapping[str, Any] | None) -> dict[str, str]:
    out = {"model": model}
    if seed is not None:
        out["seed"] = str(seed)
    if split is not None:
        out["split"] = split
    out.update(flatten_params(protocol, "protocol."))
    out.update(flatten_params(params))  # a hyperparameter named like a key above wins
    return out


@contextmanager
def _session(options: MlflowOptions) -> Iterator[Any]:
    """The mlflow module pointed at the options' store and experiment."""
    import mlflow

    saved = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    if options.default_store and saved is None:
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        mlflow.set_tracking_uri(options.tracking_uri)
        mlflow.set_experiment(options.experiment)
        yield mlflow
    finally:
        if options.default_store and saved is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


def _warn(exc: BaseException) -> None:
    text = " ".join(str(exc).split())[:300] or "no message"
    print(f"warning: MLflow logging failed ({type(exc).__name__}: {text}); "
          "the result and its ledger entry are saved", file=sys.stderr)


def _note(options: MlflowOptions, name: str, run_id: str, extra: str = "") -> None:
    print(f"mlflow: logged {name!r} as run {run_id}{extra} in experiment {options.experiment!r} at "
          f"{options.tracking_uri}", file=sys.stderr)


def log_run(
    options: MlflowOptions,
    kind: str,
    *,
    model: str,
    params: Mapping[str, Any] | None = None,
    seed: int | None = None,
    dataset: str | None = None,
    fingerprint: str | None = None,
    split: str | None = None,
    protocol: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    timings: Mapping[str, Any] | None = None,
    run: str | None = None,
    run_path: str | os.PathLike | None = None,
    details: Mapping[str, Any] | None = None,
) -> str | None:
    """Log one train or evaluate record as an MLflow run; returns its id, or None after a warning.

    run_path: a folder logged as the run's artifacts; details: a dict logged as `<kind>.json`.
    Never raises for an MLflow failure: the work is done and in the ledger already.
    """
    name = run or f"{kind} {model}"
    try:
        with _session(options) as mlflow:
            nested = mlflow.active_run() is not None  # inside a caller's run (a notebook): log under it
            with mlflow.start_run(run_name=name, nested=nested) as active:
                mlflow.set_tags(_base_tags(kind, model, dataset, fingerprint, split, run))
                mlflow.log_params(_run_params(model, params, seed, split, protocol))
                values = {**metric_values(metrics), **metric_values(timings)}
                if values:
                    mlflow.log_metrics(values)
                if run_path is not None:
                    mlflow.log_artifacts(str(Path(run_path)))
                if details is not None:
                    mlflow.log_dict(json.loads(json.dumps(details, default=_plain)), f"{kind}.json")
                run_id = active.info.run_id
    except Exception as exc:  # noqa: BLE001 - any MLflow failure is a warning, not a failed command
        _warn(exc)
        return None
    _note(options, name, run_id)
    return run_id


class TuneLog:
    """A search logged to MLflow while it runs (a context manager; see `tuning.tune`).

    The parent run opens on entry; `trial` logs each finished trial at once as a nested run
    (its params, <metric>, <metric>_std, fit_seconds, seconds; recsys.error if it failed), so
    a long search shows its progress and an interrupted one keeps its finished trials (the
    parent then ends FAILED). `finish` gives the parent the best config, the held-out
    `metrics` and cv_<metric>. An MLflow failure warns once and stops the logging, never the
    search: the ledger has every trial anyway. With options None (no --mlflow) it logs nothing.
    """

    def __init__(self, options: MlflowOptions | None, *, model: str, metric: str, seed: int | None = None,
                 dataset: str | None = None, fingerprint: str | None = None, split: str | None = None,
                 protocol: Mapping[str, Any] | None = None) -> None:
        self.options, self.model, self.metric, self.seed, self.split = options, model, metric, seed, split
        self.protocol = protocol
        self.tags = _base_tags("tune", model, dataset, fingerprint, split)
        self.name = f"tune {model}"
        self.run_id: str | None = None
        self.n_trials = 0
        self._stack = ExitStack()
        self._mlflow = None

    def __enter__(self) -> TuneLog:
        if self.options is None:
            return self
        try:
            mlflow = self._stack.enter_context(_session(self.options))
            nested = mlflow.active_run() is not None
            parent = self._stack.enter_context(mlflow.start_run(run_name=self.name, nested=nested))
            self._mlflow, self.run_id = mlflow, parent.info.run_id
            mlflow.set_tags(self.tags)
        except Exception as exc:  # noqa: BLE001 - any MLflow failure is a warning, not a failed search
            self._stop(exc)
        return self

    def trial(self, t: Mapping[str, Any]) -> None:
        """Log one finished trial: trial (0-based), params (the full config), score, std, fit_seconds, seconds, error."""
        if self._mlflow is None:
            return
        mlflow = self._mlflow
        try:
            with mlflow.start_run(run_name=f"trial {t['trial'] + 1}", nested=True):
                child = {**self.tags, "recsys.command": "tune-trial", "recsys.trial": str(t["trial"] + 1)}
                if t.get("error"):
                    child["recsys.error"] = str(t["error"])[:5000]
                mlflow.set_tags(child)
                mlflow.log_params(_run_params(self.model, t["params"], self.seed, self.split, None))
                values = metric_values({self.metric: t.get("score"), f"{self.metric}_std": t.get("std"),
                                        "fit_seconds": t.get("fit_seconds"), "seconds": t.get("seconds")})
                if values:
                    mlflow.log_metrics(values)
            self.n_trials += 1
        except Exception as exc:  # noqa: BLE001
            self._stop(exc)

    def finish(self, *, params: Mapping[str, Any], best_trial: int, best_score: float | None,
               best_std: float | None, metrics: Mapping[str, Any] | None = None) -> None:
        """The parent's record: the best config, cv_<metric>(_std) of the best trial, held-out metrics."""
        if self._mlflow is None:
            return
        mlflow = self._mlflow
        try:
            mlflow.set_tags({"recsys.best_trial": str(best_trial + 1)})
            mlflow.log_params(_run_params(self.model, params, self.seed, self.split, self.protocol))
            cv = {f"cv_{self.metric}": best_score, f"cv_{self.metric}_std": best_std}
            values = {**metric_values(metrics), **metric_values(cv)}
            if values:
                mlflow.log_metrics(values)
        except Exception as exc:  # noqa: BLE001
            self._stop(exc)

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._mlflow is None:
            return False
        self._mlflow = None
        try:
            self._stack.__exit__(exc_type, exc, tb)  # ends the parent: FINISHED, or FAILED on an exception
        except Exception as err:  # noqa: BLE001
            if err is not exc:
                _warn(err)
            return False
        if exc_type is None:
            _note(self.options, self.name, self.run_id, f" with {self.n_trials} nested trial run(s)")
        return False

    def _stop(self, exc: BaseException) -> None:
        """Warn once, end whatever run is open (FAILED) and log nothing more."""
        _warn(exc)
        self._mlflow = None
        try:
            self._stack.__exit__(type(exc), exc, exc.__traceback__)
        except Exception:  # noqa: BLE001, S110 - already warned; the store is unusable
            pass
