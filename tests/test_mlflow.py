"""`--mlflow` on train / evaluate / tune: exact names and values sent to MLflow (a recording fake), the
missing-package error, a failing tracking store, and a round trip through the real mlflow package."""

from __future__ import annotations

import json
import math
import os
import re
import sys
import types
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsys_cli import __version__, ledger
from recsys_cli.cli.app import app
from recsys_cli.tracking import flatten_params, metric_name, metric_values

MLFLOW_NAME = re.compile(r"^[\w\-. /]+$")  # what MLflow accepts in a param or metric name
MISSING = "error: --mlflow needs the mlflow package: pip install 'recsys-cli[mlflow]'\n"
RUN_FILES = ["arrays.npz", "items.parquet", "manifest.json", "users.parquet"]


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


class FakeMlflow(types.ModuleType):
    """Records what the bridge sends; refuses names MLflow refuses; `fail` makes one call raise."""

    def __init__(self, fail: str | None = None) -> None:
        super().__init__("mlflow")
        self.fail, self.uri, self.experiment = fail, None, None
        self.runs: list[dict] = []
        self.stack: list[dict] = []

    def _call(self, what: str) -> dict:
        if what == self.fail:
            raise RuntimeError("tracking store\nunreachable")
        assert self.stack, f"{what} outside a run"
        return self.stack[-1]

    def set_tracking_uri(self, uri: str) -> None:
        self.uri = uri

    def set_experiment(self, name: str) -> None:
        self.experiment = name

    def active_run(self):
        return self.stack[-1] if self.stack else None

    @contextmanager
    def start_run(self, run_name=None, nested=False):
        if self.stack and not nested:
            raise Exception("a run is already active")
        rec = {"id": f"run{len(self.runs)}", "name": run_name, "parent": self.stack[-1]["id"] if self.stack else None,
               "params": {}, "metrics": {}, "tags": {}, "artifacts": [], "dicts": {}, "status": "RUNNING"}
        self.runs.append(rec)
        self.stack.append(rec)
        try:
            yield types.SimpleNamespace(info=types.SimpleNamespace(run_id=rec["id"]))
            rec["status"] = "FINISHED"
        except BaseException:
            rec["status"] = "FAILED"
            raise
        finally:
            self.stack.pop()

    def log_params(self, params: dict) -> None:
        rec = self._call("log_params")
        for k, v in params.items():
            assert MLFLOW_NAME.match(k) and isinstance(v, str), (k, v)
        rec["params"].update(params)

    def log_metrics(self, metrics: dict) -> None:
        rec = self._call("log_metrics")
        for k, v in metrics.items():
            assert MLFLOW_NAME.match(k) and isinstance(v, float) and math.isfinite(v), (k, v)
        rec["metrics"].update(metrics)

    def set_tags(self, tags: dict) -> None:
        rec = self._call("set_tags")
        assert all(isinstance(v, str) for v in tags.values()), tags
        rec["tags"].update(tags)

    def log_artifacts(self, local_dir: str, artifact_path=None) -> None:
        rec = self._call("log_artifacts")
        rec["artifacts"].append((artifact_path, sorted(p.name for p in Path(local_dir).iterdir())))

    def log_dict(self, data: dict, artifact_file: str) -> None:
        self._call("log_dict")["dicts"][artifact_file] = json.loads(json.dumps(data))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mlflow-data")
    res = run("generate", "synth", "--users", "60", "--items", "40", "--ratings", "1500", "--data-dir", root)
    assert res.exit_code == 0, res.output
    res = run("preprocess", "synth", "--data-dir", root, "--format", "json")
    assert res.exit_code == 0, res.output
    return root


@pytest.fixture
def clean_env(monkeypatch):
    for var in ("MLFLOW_TRACKING_URI", "RECSYS_MLFLOW_EXPERIMENT", "MLFLOW_ALLOW_FILE_STORE"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


@pytest.fixture
def fake(clean_env) -> FakeMlflow:
    mod = FakeMlflow()
    clean_env.setitem(sys.modules, "mlflow", mod)
    return mod


def fingerprint(data: Path) -> str:
    return json.loads((data / "processed" / "synth" / "dataset.json").read_text())["fingerprint"]


def base_tags(kind: str, model: str, data: Path) -> dict[str, str]:
    return {"recsys.command": kind, "recsys.model": model, "recsys.dataset": "synth",
            "recsys.fingerprint": fingerprint(data), "recsys.version": __version__}


# ------------------------------------------------------------------------------ names and values
def test_metric_names_params_and_values_are_mlflow_safe():
    assert metric_name("ndcg@10") == "ndcg_at_10"
    assert metric_name("map_capped@5_std") == "map_capped_at_5_std"
    assert metric_name("hit rate/x-y.z") == "hit rate/x-y.z" and metric_name("a:b?c") == "a_b_c"
    assert flatten_params({"k": 3, "lr": 0.5, "x": None, "opt": {"a": True, "b": [1, 2]}}) == {
        "k": "3", "lr": "0.5", "x": "None", "opt.a": "True", "opt.b": "[1, 2]"}
    assert metric_values({"ndcg@10": 0.25, "rmse": 1, "nan": math.nan, "none": None, "txt": "x", "flag": True}) == {
        "ndcg_at_10": 0.25, "rmse": 1.0}


# ------------------------------------------------------------------------------ with a recording fake
def test_train_logs_params_metrics_tags_and_the_run_folder(data, tmp_path, fake):
    arts = tmp_path / "arts"
    res = run("train", "bias", "--dataset", "synth", "--split", "random", "--data-dir", data,
              "--artifacts-dir", arts, "--format", "json", "--mlflow")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    entry = ledger.query(root=arts, kind="train")[0]
    assert fake.uri == (arts / "mlruns").resolve().as_uri() and fake.experiment == "recsys"
    [rec] = fake.runs
    assert rec["name"] == "bias-synth-random" and rec["parent"] is None and rec["status"] == "FINISHED"
    assert rec["params"] == {"model": "bias", "seed": "42", "split": "random", "method": "als", "reg_u": "15.0",
                             "reg_i": "10.0", "epochs": "10", "reg": "0.02", "lr": "0.005"}
    assert rec["metrics"] == {"train_seconds": entry["timings"]["train_seconds"]}
    tags = {**base_tags("train", "bias", data), "recsys.split": "random", "recsys.run": "bias-synth-random"}
    assert {k: rec["tags"][k] for k in tags} == tags
    assert rec["tags"].get("mlflow.source.git.commit") == entry["git_sha"]
    assert rec["tags"]["recsys.versions.python"] == entry["versions"]["python"]
    assert rec["artifacts"] == [(None, RUN_FILES)]
    assert Path(summary["path"]).name == "bias-synth-random"
    assert f"mlflow: logged 'bias-synth-random' as run run0 in experiment 'recsys' at {fake.uri}" in res.stderr.splitlines()
    assert not (arts / "mlruns").exists()  # the fake wrote nothing


def test_evaluate_run_maps_metric_names(data, tmp_path, fake):
    arts = tmp_path / "arts"
    assert run("train", "bias", "--dataset", "synth", "--split", "random", "--data-dir", data,
               "--artifacts-dir", arts).exit_code == 0
    res = run("evaluate", "bias-synth-random", "--data-dir", data, "--artifacts-dir", arts, "--format", "json",
              "--mlflow", "--mlflow-experiment", "movielens")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)[0]
    [rec] = fake.runs
    assert fake.experiment == "movielens" and rec["name"] == "bias-synth-random"
    assert rec["metrics"]["ndcg_at_10"] == out["metrics"]["ndcg@10"] and rec["metrics"]["rmse"] == out["metrics"]["rmse"]
    assert set(rec["metrics"]) == {metric_name(k) for k in out["metrics"]} | {"fit_seconds", "predict_seconds"}
    assert not any("@" in k for k in rec["metrics"]) and "ndcg_at_10_std" not in rec["metrics"]
    assert {rec["params"][k] for k in ("protocol.kind", "protocol.split", "model")} == {"holdout", "random", "bias"}
    assert rec["tags"]["recsys.command"] == "evaluate" and rec["tags"]["recsys.run"] == "bias-synth-random"
    assert rec["dicts"]["evaluate.json"]["metrics"] == out["metrics"] and rec["artifacts"] == []


def test_evaluate_cv_logs_one_run_per_model_with_stds(data, tmp_path, fake, clean_env):
    clean_env.setenv("RECSYS_MLFLOW_EXPERIMENT", "from-env")
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9/not-contacted-by-the-fake")
    res = run("evaluate", "--model", "bias,popularity", "--dataset", "synth", "--cv", "2", "--data-dir", data,
              "--artifacts-dir", tmp_path, "--format", "json", "--mlflow")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert fake.uri == "http://127.0.0.1:9/not-contacted-by-the-fake" and fake.experiment == "from-env"
    assert [r["name"] for r in fake.runs] == ["evaluate bias", "evaluate popularity"]
    for rec, result in zip(fake.runs, out, strict=True):
        assert rec["metrics"]["ndcg_at_10"] == result["metrics"]["ndcg@10"]
        assert rec["metrics"]["ndcg_at_10_std"] == result["metrics_std"]["ndcg@10"]
        assert rec["params"]["protocol.folds"] == "2" and rec["params"]["protocol.kind"] == "cv"
        assert len(rec["dicts"]["evaluate.json"]["folds"]) == 2
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ  # only set for our own default store


def test_tune_logs_a_parent_and_one_nested_run_per_trial(data, tmp_path, fake):
    res = run("tune", "bias", "-d", "synth", "--grid", "reg_u=1,10", "--cv", "2", "--data-dir", data,
              "--artifacts-dir", tmp_path, "--format", "json", "--mlflow")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    parent, *children = fake.runs
    assert parent["name"] == "tune bias" and parent["parent"] is None and len(children) == 2
    assert [c["name"] for c in children] == ["trial 1", "trial 2"]
    assert all(c["parent"] == parent["id"] and c["status"] == "FINISHED" for c in children)
    assert parent["metrics"]["cv_rmse"] == out["best_score"] and parent["metrics"]["cv_rmse_std"] == out["best_std"]
    assert parent["metrics"]["rmse"] == out["holdout"]["metrics"]["rmse"]
    assert parent["metrics"]["ndcg_at_10"] == out["holdout"]["metrics"]["ndcg@10"]
    assert parent["params"]["reg_u"] == str(float(out["best_params"]["reg_u"]))
    assert {k: parent["params"][k] for k in ("protocol.search", "protocol.cv", "protocol.metric", "protocol.n_trials",
                                             "protocol.holdout.kind")} == {
        "protocol.search": "grid", "protocol.cv": "2", "protocol.metric": "rmse", "protocol.n_trials": "2",
        "protocol.holdout.kind": "random"}
    assert parent["tags"]["recsys.command"] == "tune" and parent["tags"]["recsys.best_trial"] == str(out["best_trial"] + 1)
    for child, trial in zip(children, out["trials"], strict=True):
        assert child["params"]["reg_u"] == str(float(trial["params"]["reg_u"])) and child["params"]["reg_i"] == "10.0"
        assert child["metrics"]["rmse"] == trial["score"] and child["metrics"]["rmse_std"] == trial["std"]
        assert set(child["metrics"]) == {"rmse", "rmse_std", "fit_seconds", "seconds"}
        assert child["tags"]["recsys.command"] == "tune-trial" and child["tags"]["recsys.dataset"] == "synth"
    assert len(ledger.query(root=tmp_path, kind="tune-trial")) == 2


def test_tune_logs_each_trial_as_it_finishes_and_keeps_them_if_the_search_stops(data, tmp_path, fake, monkeypatch):
    real_record, seen = ledger.record, []

    def record(kind, **kwargs):
        if kind == "tune-trial":
            # When the ledger gets trial n, MLflow already has the parent and trials 1..n-1.
            seen.append([(r["name"], r["status"]) for r in fake.runs])
            if len(seen) == 3:
                raise RuntimeError("disk full")
        return real_record(kind, **kwargs)

    monkeypatch.setattr(ledger, "record", record)
    res = run("tune", "bias", "-d", "synth", "--grid", "reg_u=1,5,10", "--cv", "2", "--data-dir", data,
              "--artifacts-dir", tmp_path, "--format", "json", "--mlflow")
    assert res.exit_code == 1  # an unexpected exception: one line, the internal-error code
    assert res.stderr.splitlines()[-1].startswith("error: internal error (a bug, please report it): RuntimeError: disk full")
    assert seen == [[("tune bias", "RUNNING")],
                    [("tune bias", "RUNNING"), ("trial 1", "FINISHED")],
                    [("tune bias", "RUNNING"), ("trial 1", "FINISHED"), ("trial 2", "FINISHED")]]
    assert [(r["name"], r["status"]) for r in fake.runs] == [("tune bias", "FAILED"), ("trial 1", "FINISHED"),
                                                             ("trial 2", "FINISHED")]
    assert "warning" not in res.stderr and "mlflow: logged" not in res.stderr


# ------------------------------------------------------------------------------ mlflow missing
@pytest.mark.parametrize("args", [
    ["train", "bias", "--dataset", "synth", "--split", "random"],
    ["evaluate", "--model", "bias", "--dataset", "synth", "--cv", "2"],
    ["tune", "bias", "-d", "synth", "--grid", "reg_u=1,10", "--cv", "2"],
])
def test_without_mlflow_fails_before_any_work(args, data, tmp_path, clean_env):
    clean_env.setitem(sys.modules, "mlflow", None)  # makes `import mlflow` raise ImportError
    arts = tmp_path / "arts"
    res = run(*args, "--data-dir", data, "--artifacts-dir", arts, "--mlflow")
    assert res.exit_code == 2
    assert res.stderr == MISSING and res.stdout == ""
    assert not arts.exists()  # no run, no ledger


def test_experiment_without_mlflow_is_a_usage_error(data, tmp_path, clean_env):
    res = run("train", "bias", "--dataset", "synth", "--data-dir", data, "--artifacts-dir", tmp_path,
              "--mlflow-experiment", "x")
    assert res.exit_code == 2 and res.stderr == "error: --mlflow-experiment names the experiment of --mlflow; add --mlflow\n"
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------------------ mlflow failing
@pytest.mark.parametrize("fail", ["log_metrics", "log_artifacts"])
def test_a_failing_store_warns_and_keeps_the_run_and_ledger(fail, data, tmp_path, clean_env):
    fake = FakeMlflow(fail=fail)
    clean_env.setitem(sys.modules, "mlflow", fake)
    res = run("train", "bias", "--dataset", "synth", "--split", "random", "--data-dir", data,
              "--artifacts-dir", tmp_path, "--format", "json", "--mlflow")
    assert res.exit_code == 0, res.output
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: MLflow logging failed (RuntimeError: tracking store unreachable); "
                        "the result and its ledger entry are saved"]
    assert "mlflow: logged" not in res.stderr
    assert json.loads(res.stdout)["run"] == "bias-synth-random"
    assert (tmp_path / "bias-synth-random" / "manifest.json").exists()
    assert [e["run"] for e in ledger.query(root=tmp_path, kind="train")] == ["bias-synth-random"]
    assert [r["status"] for r in fake.runs] == ["FAILED"]


def test_a_failing_trial_log_keeps_the_tune_result(data, tmp_path, clean_env):
    clean_env.setitem(sys.modules, "mlflow", FakeMlflow(fail="log_metrics"))
    res = run("tune", "bias", "-d", "synth", "--grid", "reg_u=1,10", "--cv", "2", "--data-dir", data,
              "--artifacts-dir", tmp_path, "--format", "json", "--mlflow")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["best_params"]["reg_u"] in (1.0, 10.0)
    assert sum(line.startswith("warning: MLflow logging failed") for line in res.stderr.splitlines()) == 1
    assert len(ledger.query(root=tmp_path, kind="tune")) == 1


# ------------------------------------------------------------------------------ the real package
def test_real_mlflow_round_trip(data, tmp_path, clean_env):
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed (pip install 'recsys-cli[mlflow]')")
    arts = tmp_path / "arts"
    common = ["--data-dir", data, "--artifacts-dir", arts, "--format", "json", "--mlflow"]
    res = run("train", "bias", "--dataset", "synth", "--split", "random", *common)
    assert res.exit_code == 0, res.output
    assert "warning" not in res.stderr, res.stderr
    res = run("evaluate", "bias-synth-random", *common)
    assert res.exit_code == 0 and "warning" not in res.stderr, res.output
    evaluated = json.loads(res.stdout)[0]
    res = run("tune", "bias", "-d", "synth", "--grid", "reg_u=1,10", "--cv", "2", *common)
    assert res.exit_code == 0 and "warning" not in res.stderr, res.output
    tuned = json.loads(res.stdout)

    clean_env.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses file stores without it
    client = mlflow.MlflowClient(tracking_uri=(arts / "mlruns").resolve().as_uri())
    exp = client.get_experiment_by_name("recsys")
    runs = {}
    for r in client.search_runs([exp.experiment_id]):
        runs.setdefault(r.data.tags["recsys.command"], []).append(r)
    assert sorted((k, len(v)) for k, v in runs.items()) == [("evaluate", 1), ("train", 1), ("tune", 1),
                                                            ("tune-trial", 2)]
    [train] = runs["train"]
    assert train.info.run_name == "bias-synth-random" and train.info.status == "FINISHED"
    assert train.data.params["reg_u"] == "15.0" and train.data.params["split"] == "random"
    assert train.data.tags["recsys.fingerprint"] == fingerprint(data) and train.data.metrics["train_seconds"] > 0
    assert sorted(a.path for a in client.list_artifacts(train.info.run_id)) == RUN_FILES
    [ev] = runs["evaluate"]
    assert ev.data.metrics["ndcg_at_10"] == pytest.approx(evaluated["metrics"]["ndcg@10"])
    assert [a.path for a in client.list_artifacts(ev.info.run_id)] == ["evaluate.json"]
    [parent] = runs["tune"]
    assert parent.data.metrics["cv_rmse"] == pytest.approx(tuned["best_score"])
    trials = sorted(runs["tune-trial"], key=lambda r: r.info.run_name)
    assert [t.info.run_name for t in trials] == ["trial 1", "trial 2"]
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {parent.info.run_id}
    assert [t.data.metrics["rmse"] for t in trials] == pytest.approx([t["score"] for t in tuned["trials"]])
