"""`--spark-master spark://...` against a real standalone master and worker on loopback (slow).

Starts both with pyspark's spark-class (bounded waits, always stopped), trains ials through the
CLI on the cluster, then evaluates the run with the normal `recsys evaluate`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recsys_cli.data.preprocess import preprocess
from recsys_cli.data.synthetic import generate
from recsys_cli.spark.session import java_version

pytestmark = pytest.mark.slow


def _cli(*args: str, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recsys_cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_train_on_a_standalone_cluster_then_evaluate(tmp_path):
    pytest.importorskip("pyspark")
    if (java_version() or 0) < 17:
        pytest.skip("Java 17 is not installed (make ensure-java)")
    from recsys_cli.spark.standalone import local_cluster

    generate("synth-cluster", n_users=300, n_items=200, n_ratings=20000, seed=5, data_dir=tmp_path)
    preprocess("synth-cluster", data_dir=tmp_path)
    env = {**os.environ, "RECSYS_DATA_DIR": str(tmp_path), "RECSYS_ARTIFACTS_DIR": str(tmp_path / "runs"),
           "RECSYS_NO_PROGRESS": "1", "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                                                      os.environ.get("PYTHONPATH", "")])}
    with local_cluster(cores=2, memory="1g") as master:
        res = _cli("train", "ials", "-d", "synth-cluster", "-s", "user", "-p", "factors=8", "--engine", "spark",
                   "--spark-master", master, "--spark-conf", "spark.driver.host=127.0.0.1",
                   "--spark-conf", "spark.executor.memory=768m", "--format", "json", env=env)
        assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout)
    assert summary["engine"] == "spark" and summary["spark"]["master"] == master
    res = _cli("evaluate", summary["run"], "--relevance", "any", "--format", "json", env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads(res.stdout)[0]["metrics"]
    assert metrics["ndcg@10"] > 0.1, metrics
