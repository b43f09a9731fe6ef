"""`recsys benchmark`: times, memory, artifact sizes and quality per step; peers side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from recsys_cli.cli.common import DataDirOpt, FormatOpt, JsonOpt, SeedOpt, model_params

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
  recsys benchmark --suite serve   (svd on ml-100k behind recsys serve: req/s and latency percentiles)
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
            "--suite", help="Run a named suite instead: polars500k (Polars aggregations, joins and a sparse matrix build on 500k ratings), pipeline "
            "(each command of the user journey in its own process, timed end to end; one run, no repeats) or serve "
            "(recsys serve in its own process under a bounded load at 1, 8 and 64 clients; needs the serve extra).",
            show_default=False)] = None,
        out: Annotated[Optional[Path], typer.Option(
            "--out", help="Also write the JSON report to this file.", show_default=False)] = None,
        plot: Annotated[Optional[Path], typer.Option(
            "--plot", help="Also draw ours/peer ratios to this .png or .svg (needs matplotlib).", show_default=False)] = None,
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
        from recsys_cli.output import console_err, dumps, resolve_format, write_text_atomic
        from recsys_cli.progress import make_progress

        fmt = resolve_format(fmt, as_json)
        if fmt not in ("table", "json"):
            raise UsageError(f"benchmark prints --format table or json, not {fmt!r}")
        from recsys_cli.figures.plots import check_plot_path, plot_benchmark

        check_plot_path(plot)
        if out is not None:  # before the benchmark, not after minutes of it
            from recsys_cli.figures.render import check_output_file

            check_output_file(out, "--out")
        from recsys_cli.api.experiments import benchmark as run

        progress = make_progress()
        try:
            report = run(scale=scale, models=models, peers=peers, steps=steps, repeat=repeat, threads=threads,
                         suite=suite, isolate=isolate, params=model_params(param) if suite is None else None,
                         seed=seed, data_dir=data_dir, progress=progress, engines=engine, spark_master=spark_master,
                         log=lambda msg: console_err().print(msg, markup=False, highlight=False)).to_dict()
        finally:
            progress.close()
        if out is not None:
            write_text_atomic(out, dumps(report) + "\n")
            typer.echo(f"wrote {out}", err=True)
        if plot is not None:
            typer.echo(f"wrote {plot_benchmark(report, plot)}", err=True)
        if fmt == "json":
            sys.stdout.write(dumps(report) + "\n")
        elif suite == "serve":
            from recsys_cli.output.bench import render_serve_table

            render_serve_table(report)
        elif suite is not None:
            from recsys_cli.output.bench import render_suite_table

            render_suite_table(report)
        else:
            from recsys_cli.output.bench import render_table

            render_table(report)
