"""`--suite pipeline`: the whole user journey at scale, each step a real `recsys` command in its own process.

generate (the stand-in for download) -> preprocess (CSV -> Parquet + default splits) -> split (per-user
holdout) -> train ials (64 factors, 15 iterations) -> evaluate (nDCG@10 and the other ranking metrics
for every test user over the full catalogue). Each step's wall time and peak RSS are measured on the
child process (os.wait4), so the numbers are what a user running the commands one by one would see.
Everything is written to a scratch folder that is removed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from recsys_cli.errors import RecsysError

TARGET_SECONDS = 600.0  # issue: preprocess -> evaluate within 10 minutes at ml-32m shape
TARGET_RSS_MB = 8192.0  # and within 8 GiB peak
FACTORS, ITERATIONS = 64, 15
NAME, SPLIT, RUN = "pipeline", "pipeline-user", "pipeline-ials"


def _commands(scale, seed: int) -> list[tuple[str, list[str]]]:
    from recsys_cli.bench.datasets import generate_kwargs

    gen = generate_kwargs(scale)
    size = (["--preset", gen["preset"]] if "preset" in gen else
            ["--ratings", str(gen["n_ratings"]), "--users", str(gen["n_users"]), "--items", str(gen["n_items"])])
    return [
        ("generate", ["generate", NAME, *size, "--seed", str(seed)]),
        ("preprocess", ["preprocess", NAME]),
        ("split", ["split", NAME, "--kind", "user", "--name", SPLIT, "--seed", str(seed)]),
        ("train", ["train", "ials", "--dataset", NAME, "--split", SPLIT, "-p", f"factors={FACTORS}",
                   "-p", f"iterations={ITERATIONS}", "--name", RUN, "--seed", str(seed)]),
        ("evaluate", ["evaluate", RUN, "--metrics", "ranking", "--relevance", "any", "--k", "10"]),
    ]


def _run(args: list[str], env: dict[str, str], scratch: Path) -> tuple[float, float, Any]:
    """(wall seconds, peak RSS MB, parsed JSON stdout) of one `recsys` command in a child process."""
    out_path, err_path = scratch / "stdout.json", scratch / "stderr.txt"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "recsys_cli", *args, "--format", "json"],
                                stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        lines = err_path.read_text(errors="replace").strip().splitlines()
        raise RecsysError(f"pipeline step `recsys {' '.join(args)}` failed with exit code {proc.returncode}: "
                          f"{lines[-1] if lines else 'no message'}")
    return seconds, usage.ru_maxrss / 1024.0, json.loads(out_path.read_text())


def _detail(task: str, result: Any) -> str:
    if task == "generate":
        p = result.get("params", result)
        return f"{p.get('n_ratings', 0):,} ratings, {p.get('n_users', 0):,} users, {p.get('n_items', 0):,} items (CSV)"
    if task == "preprocess":
        return f"{result.get('n_ratings', 0):,} ratings to Parquet + default splits"
    if task == "split":
        return "per-user holdout: 25% of each user's ratings held out"
    if task == "train":
        info = result.get("fit_info", {})
        return (f"ials {FACTORS} factors, {ITERATIONS} iterations on {result.get('train_ratings', 0):,} ratings; "
                f"{info.get('seconds_per_iteration', float('nan')):.2f} s/iteration")
    m = result[0]["metrics"]
    return (f"nDCG@10 {m['ndcg@10']:.4f}, recall@10 {m['recall@10']:.4f} over {m['users_evaluated']:,} users, "
            "full catalogue, relevance any")


def run_pipeline(scale_text: str = "32m", *, threads: int | None = None, seed: int = 42, data_dir=None,
                 log=None) -> dict[str, Any]:
    """Run the pipeline suite; returns {"machine", "suite", "scale", "settings", "rows", "totals", "notes"}."""
    from recsys_cli import settings
    from recsys_cli.bench.datasets import parse_scale
    from recsys_cli.bench.machine import machine_info

    scale = parse_scale(scale_text)
    log = log or (lambda msg: None)
    root = settings.data_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".bench-pipeline-", dir=root))
    env = {**os.environ, "RECSYS_DATA_DIR": str(scratch / "data"), "RECSYS_ARTIFACTS_DIR": str(scratch / "artifacts")}
    if threads is not None:
        env["RECSYS_THREADS"] = str(threads)
    rows: list[dict[str, Any]] = []
    try:
        commands = _commands(scale, seed)
        for k, (task, args) in enumerate(commands, 1):
            log(f"pipeline [{k}/{len(commands)}] recsys {' '.join(args)}")
            seconds, rss, result = _run(args, env, scratch)
            rows.append({"task": task, "command": "recsys " + " ".join(args), "seconds": round(seconds, 3),
                         "peak_rss_mb": round(rss, 1), "detail": _detail(task, result)})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    timed = [r for r in rows if r["task"] != "generate"]
    total = {"task": "pipeline total", "seconds": round(sum(r["seconds"] for r in timed), 3),
             "peak_rss_mb": max(r["peak_rss_mb"] for r in timed), "detail": "preprocess -> evaluate"}
    met = total["seconds"] <= TARGET_SECONDS and total["peak_rss_mb"] <= TARGET_RSS_MB
    verdict = ("met" if met else "missed") if scale.release == "ml-32m" else f"not judged (this run is {scale.label})"
    notes = [
        "each step is a `recsys` command in a fresh process (imports, JIT cache loads and file I/O included); "
        "peak MB is that process's maximum RSS",
        "generate stands in for download and is not part of the total",
        f"target at ml-32m shape: total <= {TARGET_SECONDS:.0f} s and peak <= {TARGET_RSS_MB:.0f} MB: {verdict}",
    ]
    return {
        "machine": machine_info(), "suite": "pipeline", "scale": scale.label,
        "settings": {"threads": threads or settings.threads(), "seed": seed, "factors": FACTORS,
                     "iterations": ITERATIONS},
        "rows": rows + [total], "notes": notes,
    }
