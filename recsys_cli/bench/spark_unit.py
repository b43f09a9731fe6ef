"""Benchmark unit for the Spark engine: als/ials trained by Spark MLlib, measured like our models.

The unit writes the benchmark's split (the same random or per-user 80/20 parts the other units
use) into the dataset as a named split, trains with `train_spark_run` in a session started
before the clock (JVM start-up is reported apart as session_seconds), loads the run and scores
it with the same quality code as our rows (the evaluate row has quality, no time: the scoring is local). Memory: peak RSS of the Python driver (the block),
of the driver JVM (its VmHWM) and of every executor JVM on this machine (standalone workers).
`spark_master` "standalone" starts a master and a worker on 127.0.0.1 for the unit
(spark/standalone.py). Spark fits run once (repeat 1): each takes seconds to minutes.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from recsys_cli.bench.datasets import TEST_FRACTION, load_splits
from recsys_cli.bench.machine import PeakRSS, dir_size_mb
from recsys_cli.bench.measure import (
    PER_ITERATION,
    TOP_N,
    make_row,
    ranking_quality,
    ranking_setup,
    rating_quality,
)

SPARK_COUNTERPART = "mllib-als"
SPARK_PRESET = "spark"  # als/ials config both engines honour exactly (models/als.py PRESETS)


def _vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _executor_pids() -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"CoarseGrainedExecutorBackend" in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def _bench_split(ds: dict[str, Any], split: str, seed: int) -> str:
    """Store the benchmark's split in the dataset (once) so Spark reads it like any named split."""
    import json

    from recsys_cli import settings
    from recsys_cli.data.dataset import load_dataset
    from recsys_cli.data.splits import random_holdout, user_fraction, write_split

    path = settings.processed_dir(ds["name"], ds["data_dir"])
    name = f"bench-{split}-{seed}"
    if name not in json.loads((path / "dataset.json").read_text()).get("splits", {}):
        full = load_dataset(ds["name"], ds["data_dir"]).interactions()
        if split == "random":
            part, params = random_holdout(len(full), test=TEST_FRACTION, seed=seed), {"test": TEST_FRACTION, "val": 0.0}
        else:
            part, params = user_fraction(full.users, test=TEST_FRACTION, seed=seed), {"test": TEST_FRACTION, "val": 0.0}
        write_split(path, name, part, split, params, seed)
    return name


def run_spark_unit(task: dict[str, Any]) -> list[dict[str, Any]]:
    import contextlib

    from recsys_cli.artifacts import ArtifactStore
    from recsys_cli.spark.session import SparkOptions, spark_session
    from recsys_cli.spark.train import train_spark_run

    ds, seed, scale, label = task["dataset"], task["seed"], task["scale"], task["model"]
    split_name = _bench_split(ds, task["split"], seed)
    master = task.get("spark_master") or "local[2]"
    folder = Path(tempfile.mkdtemp(prefix=".bench-spark-", dir=ds["data_dir"]))
    with contextlib.ExitStack() as stack:
        if master == "standalone":
            from recsys_cli.spark.standalone import local_cluster

            master = stack.enter_context(local_cluster(cores=task.get("threads") or 2, memory="6g"))
        conf = {"spark.driver.memory": "6g"}
        if master.startswith("spark://"):
            conf.update({"spark.driver.host": "127.0.0.1", "spark.executor.memory": "5g"})
        options = SparkOptions(master=master, conf=conf)
        t0 = time.perf_counter()
        session = stack.enter_context(spark_session(options, app=f"recsys benchmark {label}"))
        session_seconds = time.perf_counter() - t0
        jvm_pid = int(session.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            summary = train_spark_run(task["name"], ds["name"], split=split_name, params=task.get("params"),
                                      preset=task.get("preset"), seed=seed, run_name="bench", data_dir=ds["data_dir"], artifacts_dir=folder,
                                      force=True, spark=options)
            seconds = time.perf_counter() - t0
        executors = [m for m in (_vm_hwm_mb(p) for p in _executor_pids()) if m is not None]
        driver_jvm = _vm_hwm_mb(jvm_pid)
    try:
        model, _ = ArtifactStore(folder).load("bench")
        size = dir_size_mb(folder / "bench")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    fit_info = summary["fit_info"]
    metrics = {PER_ITERATION: fit_info["seconds_per_iteration"], "master": master,
               "session_seconds": round(session_seconds, 3), "als_seconds": fit_info["als_seconds"],
               "driver_jvm_peak_mb": driver_jvm, "executor_peak_mb": max(executors) if executors else None,
               "executors": len(executors)}
    if "bias_seconds" in fit_info:
        metrics["bias_seconds"] = fit_info["bias_seconds"]
    work = summary["train_ratings"]
    fit_row = make_row(label, "spark", "fit", scale, None, work=work, artifact_mb=size, metrics=metrics)
    fit_row.update(seconds=round(seconds, 4), peak_rss_mb=mem.peak_mb, throughput=round(work / seconds, 1))
    rows = [fit_row]
    if "evaluate" in task["steps"]:
        splits = load_splits(ds["name"], ds["data_dir"], seed)
        train, test = splits.train[task["split"]], splits.test[task["split"]]
        if model.predicts_ratings:
            quality = rating_quality(model.predict(test.user_ids[test.users], test.item_ids[test.items])[0],
                                     test.ratings)
            n_eval = len(test)
        else:
            users, indptr, indices = ranking_setup(train, test)
            quality = ranking_quality(model.recommend_indices(users, TOP_N), indptr, indices, train.n_items)
            n_eval = len(users)
        # Quality only: the scoring is our local code on the loaded run, so its time says nothing about Spark.
        rows.append(make_row(label, "spark", "evaluate", scale, None, work=n_eval, metrics=quality))
    return rows


def spark_ratio_note() -> str:
    return ("spark rows: our als/ials trained by Spark MLlib ALS (--engine spark) on the same split and "
            f"hyperparameters, one fit each (no repeats), both engines at the '{SPARK_PRESET}' preset (exact "
            "Cholesky solves; ials weighted-lambda, reg = Spark's regParam), the objective Spark minimises; "
            "seconds exclude the JVM start (session_seconds); ratio ours/spark < 1 means the local engine is faster")

