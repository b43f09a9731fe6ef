"""`recsys benchmark`: times, memory, artifact sizes and quality per step; peers side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from recsys_cli.cli.common import DataDirOpt, FormatOpt, JsonOpt, SeedOpt, parse_params

HELP = """Benchmark every step of the chain: seconds, Numba compile time, peak memory, artifact size,
throughput and quality, for our models and (--peers) scikit-surprise / implicit on the same
data, split and threads, with ours/peer ratios (< 1: recsys is faster).

Data: real MovieLens when it is in the data dir (ml-100k is fetched from RECSYS_MIRROR when that
is set), else synthetic data shaped like the release (or N ratings), made once in DATA/bench/.
Rating models are scored by RMSE on a random 80/20 split, ranking models (ials, bpr) by nDCG@10
on a per-user 80/20 split. Each model runs in a fresh process; seconds are the median of
--repeat runs after a warm-up on a small input (its time is compile_seconds); peak memory is
the process's peak during the step (kernel high-water mark, reset per step).

Steps: generate, preprocess, split (data), fit, predict, recommend, evaluate (per model).
Peers: surprise (SVD, SVDpp, BaselineOnly, KNNBaseline for svd, svdpp, bias, item-knn/user-knn;
svd and svdpp are compared at Surprise's defaults, labelled svd@surprise), implicit (ALS, BPR
for ials, bpr). A peer that is not installed is reported as skipped.

Examples:

\b
  recsys benchmark --scale ml-100k
  recsys benchmark --scale ml-100k --peers surprise,implicit --format table
  recsys benchmark --scale 1m --models svd,item-knn --steps fit,recommend --repeat 5 --threads 2
  recsys benchmark --scale 500k --models bias,svd --json --out bench.json
  recsys benchmark --suite polars500k
  recsys benchmark --suite pipeline --scale 32m   (generate, preprocess, split, train ials, evaluate)
  recsys benchmark --engine local,spark --models als,ials --steps fit,evaluate --repeat 1
"""


def register(app: typer.Typer) -> None:
    @app.command("benchmark", help=HELP)
    def benchmark(
        scale: Annotated[Optional[str], typer.Option(
            "--scale", help="ml-100k | 100k | 1m | 10m | 25m | 32m | N ratings (e.g. 500000 or 500k). Default ml-100k "
            "(polars500k: 500k; pipeline: 32m).", show_default=False)] = None,
        models: Annotated[Optional[str], typer.Option(
            "--models", "-m", help="Comma-separated models (default: svd,ials,bpr,item-knn, those registered).",
            show_default=False)] = None,
        peers: Annotated[Optional[str], typer.Option(
            "--peers", help="Comma-separated peers to run side by side: surprise, implicit.", show_default=False)] = None,
        steps: Annotated[Optional[str], typer.Option(
            "--steps", help="Comma-separated steps (default: all): generate, preprocess, split, fit, predict, "
            "recommend, evaluate.", show_default=False)] = None,
        repeat: Annotated[int, typer.Option("--repeat", help="Timed runs per step (the median is reported).")] = 3,
        threads: Annotated[Optional[int], typer.Option(
            "--threads", help="Compute threads for us and implicit (default: $RECSYS_THREADS or every core).",
            show_default=False)] = None,
        suite: Annotated[Optional[str], typer.Option(
            "--suite", help="Run a named suite instead: polars500k (the seed's big-data demo redone) or pipeline "
            "(each command of the user journey in its own process, timed end to end; one run, no repeats).",
            show_default=False)] = None,
        out: Annotated[Optional[Path], typer.Option(
            "--out", help="Also write the JSON report to this file.", show_default=False)] = None,
        isolate: Annotated[bool, typer.Option(
            "--isolate/--no-isolate", help="Run each model in a fresh process (honest compile time and memory).")] = True,
        param: Annotated[Optional[list[str]], typer.Option(
            "--param", "-p", help="MODEL.key=value overrides for one model (repeatable), e.g. -p bpr.epochs=10.",
            show_default=False)] = None,
        engine: Annotated[Optional[str], typer.Option(
            "--engine", help="local, spark or local,spark: also train als/ials with Spark MLlib side by side "
            "(needs the spark extra and Java 17).", show_default=False)] = None,
        spark_master: Annotated[Optional[str], typer.Option(
            "--spark-master", metavar="URL", help="With --engine spark: local[N] (default local[2]), spark://HOST:PORT, "
            "or standalone (a master and a worker started on 127.0.0.1 for the run).", show_default=False)] = None,
        seed: SeedOpt = 42,
        data_dir: DataDirOpt = None,
        fmt: FormatOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        import sys

        from recsys_cli.errors import UsageError
        from recsys_cli.output import dumps, resolve_format, write_text_atomic
        from recsys_cli.progress import make_progress

        fmt = resolve_format(fmt, as_json)
        if fmt not in ("table", "json"):
            raise UsageError(f"benchmark prints --format table or json, not {fmt!r}")
        if repeat < 1 or (threads is not None and threads < 1):
            raise UsageError("--repeat and --threads must be at least 1")
        if suite is not None:
            given = [flag for flag, value in (("--models", models), ("--peers", peers), ("--steps", steps)) if value]
            if given:
                raise UsageError(f"--suite runs its own tasks; drop {', '.join(given)}")
            from recsys_cli.bench.datasets import parse_scale
            from recsys_cli.bench.suites import SUITE_RATINGS, SUITES, run_suite

            if suite == "pipeline":
                from recsys_cli.bench.pipeline import run_pipeline
                from recsys_cli.output import console_err

                report = run_pipeline(scale or "32m", threads=threads, seed=seed, data_dir=data_dir,
                                      log=lambda msg: console_err().print(msg, markup=False, highlight=False))
            else:
                if suite not in SUITES:
                    raise UsageError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}, pipeline")
                n = SUITE_RATINGS if scale is None else parse_scale(scale).n_ratings
                if n is None:
                    raise UsageError("--suite polars500k takes --scale as a number of ratings (e.g. 500k)")
                report = run_suite(suite, n_ratings=n, repeat=repeat, threads=threads, seed=seed)
        else:
            from recsys_cli.bench.harness import run_benchmark

            progress = make_progress()
            try:
                per_model: dict[str, dict[str, str]] = {}
                for key, value in parse_params(param).items():
                    name, dot, sub = key.rpartition(".")
                    if not dot:
                        raise UsageError(f"--param {key}: write MODEL.key=value, e.g. ials.factors=64")
                    per_model.setdefault(name.replace("_", "-"), {})[sub] = value
                report = run_benchmark(scale=scale or "ml-100k", models=models, peers=peers, steps=steps,
                                       repeat=repeat, threads=threads, data_dir=data_dir, seed=seed,
                                       isolate=isolate, progress=progress, params=per_model,
                                       engines=engine, spark_master=spark_master)
            finally:
                progress.close()
        if out is not None:
            write_text_atomic(out, dumps(report) + "\n")
        if fmt == "json":
            sys.stdout.write(dumps(report) + "\n")
        elif suite is not None:
            from recsys_cli.bench.report import render_suite_table

            render_suite_table(report)
        else:
            from recsys_cli.bench.report import render_table

            render_table(report)
