"""The work of one benchmark unit (the data steps, one of our models, or one peer), run in one process.

A unit is a plain dict (picklable, so the harness can hand it to a fresh spawned process) and
returns result rows. `run_unit` dispatches on task["kind"]: "data", "recsys" or "peer".
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from recsys_cli.bench.datasets import load_splits, synthetic_sizes, tiny
from recsys_cli.bench.machine import dir_size_mb
from recsys_cli.bench.measure import (
    PER_ITERATION,
    TOP_N,
    make_row,
    measure,
    ranking_quality,
    ranking_setup,
    rating_quality,
    train_auc,
)

WARMUP_RATINGS = 2000


def run_unit(task: dict[str, Any]) -> list[dict[str, Any]]:
    """Run one unit and return its rows (entry point of the spawned worker processes)."""
    kind = task["kind"]
    if kind == "data":
        return run_data_unit(task)
    if kind == "recsys":
        return run_recsys_unit(task)
    if kind == "peer":
        from recsys_cli.bench.peers import run_peer_unit

        return run_peer_unit(task)
    if kind == "spark":
        from recsys_cli.bench.spark_unit import run_spark_unit

        return run_spark_unit(task)
    raise ValueError(f"unknown benchmark unit kind {kind!r}")


def _scratch(task: dict[str, Any]) -> Path:
    root = Path(task["dataset"]["data_dir"])
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".bench-scratch-", dir=root))


def run_data_unit(task: dict[str, Any]) -> list[dict[str, Any]]:
    """generate / preprocess / split, timed on the benchmark's scale (outputs go to a scratch folder)."""
    from recsys_cli.data.preprocess import preprocess
    from recsys_cli.data.synthetic import generate

    steps, repeat, seed, scale = task["steps"], task["repeat"], task["seed"], task["scale"]
    ds = task["dataset"]
    rows: list[dict[str, Any]] = []
    scratch = _scratch(task)
    try:
        warm_raw = None

        def warm_generate():
            nonlocal warm_raw
            generate("bench-warm", **synthetic_sizes(WARMUP_RATINGS), seed=seed, data_dir=scratch, force=True)
            warm_raw = scratch / "raw" / "bench-warm"

        if "generate" in steps:
            kwargs = task["generate"]
            m = measure(lambda: generate("bench-generate", **kwargs, seed=seed, data_dir=scratch, force=True),
                        repeat=repeat, warmup=warm_generate)
            rows.append(make_row(None, "recsys", "generate", scale, m, work=m.result["params"]["n_ratings"],
                                 artifact_mb=dir_size_mb(scratch / "raw" / "bench-generate"), compile_time=False))
            shutil.rmtree(scratch / "raw" / "bench-generate", ignore_errors=True)
        if "preprocess" in steps:
            raw = ds.get("raw_path")
            if not raw or not Path(raw).is_dir():
                rows.append(make_row(None, "recsys", "preprocess", scale,
                                     skipped=f"raw files of {ds['name']} are not in {ds['data_dir']}"))
            else:
                if warm_raw is None:
                    warm_generate()
                m = measure(lambda: preprocess(str(raw), name="bench-preprocess", data_dir=scratch),
                            repeat=repeat, warmup=lambda: preprocess(str(warm_raw), name="bench-warm", data_dir=scratch))
                out = scratch / "processed" / "bench-preprocess"
                rows.append(make_row(None, "recsys", "preprocess", scale, m, work=m.result["n_ratings"],
                                     artifact_mb=dir_size_mb(out), compile_time=False))
        if "split" in steps:
            rows.append(_split_row(task))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return rows


def _split_row(task: dict[str, Any]) -> dict[str, Any]:
    """Time computing both benchmark splits (random holdout and per-user) of the whole dataset."""
    import pyarrow.parquet as pq

    from recsys_cli import settings
    from recsys_cli.bench.datasets import TEST_FRACTION
    from recsys_cli.data.splits import random_holdout, user_fraction

    ds, seed = task["dataset"], task["seed"]
    path = settings.processed_dir(ds["name"], ds["data_dir"]) / "ratings.parquet"
    users = pq.read_table(path, columns=["user_id"]).column("user_id").to_numpy()

    def both(u: np.ndarray):
        return random_holdout(len(u), test=TEST_FRACTION, seed=seed), user_fraction(u, test=TEST_FRACTION, seed=seed)

    m = measure(lambda: both(users), repeat=task["repeat"], warmup=lambda: both(users[:WARMUP_RATINGS]))
    return make_row(None, "recsys", "split", task["scale"], m, work=len(users), compile_time=False)


def _cli_seconds(args: list[str], env: dict[str, str], repeat: int, expect: str | None = None) -> float:
    """Median wall seconds of `recsys ARGS` in a fresh process (after one untimed run warms the file cache);
    with `expect`, the first run's stdout must hold that word (so a broken command is not timed)."""
    import statistics
    import subprocess
    import sys
    import time

    def once(check: bool = False) -> float:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "recsys_cli", *args], env=env,
                              stdout=subprocess.PIPE if check else subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, check=False)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"`recsys {' '.join(args)}` failed: {done.stderr.strip()[-300:]}")
        if check and expect is not None and expect not in done.stdout.split():
            raise RuntimeError(f"`recsys {' '.join(args)}` did not answer {expect!r}: {done.stdout.strip()[-300:]!r}")
        return seconds

    once(check=True)
    return statistics.median(once() for _ in range(repeat))


def completion_env(env: dict[str, str], words: str) -> dict[str, str]:
    """The environment in which bash asks `recsys` to complete the last of `words` (Typer/Click's protocol)."""
    return {**env, "_RECSYS_COMPLETE": "complete_bash", "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split(" ")) - 1)}


def latency_row(label: str, scale: str, artifacts: Path, user: int, repeat: int) -> dict[str, Any]:
    """What a user waits for, each a fresh process: `recsys recommend RUN --user U -n 10` (seconds),
    `recsys --help` (cli_help_s) and a Tab press completing the run name of `recsys recommend b` (cli_complete_s)."""
    import os

    env = {**os.environ, "RECSYS_ARTIFACTS_DIR": str(artifacts), "RECSYS_NO_PROGRESS": "1"}
    seconds = _cli_seconds(["recommend", "bench", "--user", str(user), "-n", str(TOP_N), "--format", "json"],
                           env, repeat)
    help_seconds = _cli_seconds(["--help"], env, repeat)
    complete_seconds = _cli_seconds([], completion_env(env, "recsys recommend b"), repeat, expect="bench")
    row = make_row(label, "recsys", "latency", scale, metrics={"cli_help_s": round(help_seconds, 4),
                                                               "cli_complete_s": round(complete_seconds, 4)})
    row["seconds"] = round(seconds, 4)
    return row


def run_recsys_unit(task: dict[str, Any]) -> list[dict[str, Any]]:
    """fit / predict / recommend / evaluate for one of our models (fit always runs; timed if asked)."""
    from recsys_cli.artifacts import ArtifactStore
    from recsys_cli.models.registry import create_model
    from recsys_cli.runtime import compute_threads

    steps, repeat, seed, scale, label = task["steps"], task["repeat"], task["seed"], task["scale"], task["model"]
    ds = task["dataset"]
    splits = load_splits(ds["name"], ds["data_dir"], seed)
    train, test = splits.train[task["split"]], splits.test[task["split"]]
    small = tiny(train, WARMUP_RATINGS)
    rows: list[dict[str, Any]] = []

    def new():
        return create_model(task["name"], task.get("params"), task.get("preset"))

    def fit():
        train._cache.clear()  # building the CSR views is part of our fit: do not reuse the last run's
        return new().fit(train, seed=seed)

    with compute_threads(task["threads"]):
        m = measure(fit, repeat=repeat if "fit" in steps else 1, warmup=lambda: new().fit(small, seed=seed))
        model = m.result
        if "fit" in steps or "latency" in steps:
            folder = Path(tempfile.mkdtemp(prefix=".bench-artifact-", dir=ds["data_dir"]))
            try:
                path = ArtifactStore(folder).save(
                    "bench", model, dataset=ds["name"], fingerprint=splits.fingerprint, split=task["split"],
                    seed=seed, train_seconds=m.seconds, titles=splits.titles,
                )
                size = dir_size_mb(path)
                if "latency" in steps:
                    user = int(train.user_ids[np.flatnonzero(train.user_counts() > 0)[0]])
                    latency = latency_row(label, scale, folder, user, repeat)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        if "fit" in steps:
            per_iter = model.fit_info.get("seconds_per_iteration")
            fit_metrics = {PER_ITERATION: per_iter} if per_iter else {}
            if task["name"] == "bpr":  # compared with implicit's BPR by one estimator on both
                fit_metrics["train_auc"] = train_auc(train, model.X, model.Y, model.item_bias, seed)
            rows.append(make_row(label, "recsys", "fit", scale, m, work=len(train), artifact_mb=size,
                                 metrics=fit_metrics))
        u_raw, i_raw = test.user_ids[test.users], test.item_ids[test.items]
        if "predict" in steps:
            m = measure(lambda: model.predict(u_raw, i_raw)[0], repeat=repeat,
                        warmup=lambda: model.predict(u_raw[:100], i_raw[:100]))
            rows.append(make_row(label, "recsys", "predict", scale, m, work=len(u_raw)))
        if "recommend" in steps:
            users = train.user_ids[np.flatnonzero(train.user_counts() > 0)]
            m = measure(lambda: model.recommend(users, TOP_N), repeat=repeat,
                        warmup=lambda: model.recommend(users[:10], TOP_N))
            rows.append(make_row(label, "recsys", "recommend", scale, m, work=len(users)))
        if "evaluate" in steps:
            if model.predicts_ratings:
                def evaluate(k=None):
                    return rating_quality(model.predict(u_raw[:k], i_raw[:k])[0], test.ratings[:k])

                m = measure(evaluate, repeat=repeat, warmup=lambda: evaluate(100))
                work = len(test)
            else:
                eval_users, indptr, indices = ranking_setup(train, test)

                def evaluate(k=None):
                    recs = model.recommend_indices(eval_users[:k], TOP_N)
                    if k is None:
                        return ranking_quality(recs, indptr, indices, train.n_items)
                    return ranking_quality(recs, indptr[: k + 1], indices[: indptr[k]], train.n_items)

                m = measure(evaluate, repeat=repeat, warmup=lambda: evaluate(min(20, len(eval_users))))
                work = len(eval_users)
            rows.append(make_row(label, "recsys", "evaluate", scale, m, work=work, metrics=m.result))
    if "latency" in steps:
        rows.append(latency)
    return rows
