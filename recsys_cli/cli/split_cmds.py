"""`recsys split DATASET` (named splits of a processed dataset) and `recsys generate NAME` (synthetic data)."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from recsys_cli.cli.common import DataDirOpt, ForceOpt, FormatOpt, JsonOpt, SeedOpt

SPLIT_HELP = """Create a named split of a processed dataset (stored as DATA/processed/NAME/splits/SPLIT.parquet).

Kinds: random (ratings shuffled), temporal (train on the past, test on the future), user
(per-user fraction: every user with 2+ ratings keeps train and gets test), leave-last (each
user's last --last ratings by time), kfold (--k folds; use a fold as SPLIT:K), ml100k (the
official u1..u5, ua, ub files of ml-100k; all seven unless --name picks one).
Preprocess already makes random, user, temporal and kfold5 (and u1..ub for ml-100k).
The default name is the kind plus any non-default option, e.g. random-test0.1-seed7.

Examples:

\b
  recsys split ml-100k --kind random --test 0.1 --val 0.1
  recsys split ml-1m --kind temporal --test 0.2 --name future
  recsys split ml-100k --kind leave-last --last 1 --val-last 1
  recsys split ml-100k --kind kfold --k 10 --seed 7
  recsys split ml-100k --kind ml100k --name ua --force
"""

GENERATE_HELP = """Generate MovieLens-shaped synthetic ratings with a planted, known structure.

Writes DATA/raw/NAME/ratings.csv and movies.csv in the ml-25m CSV layout plus generate.json
(every parameter and a summary of the truth); then `recsys preprocess NAME` works as for any
release. Item popularity is Zipf-like, user activity heavy-tailed; ratings come from planted
latent factors + user/item biases + Gaussian noise, rounded to stars; genres follow the
item factors. Same --seed, same bytes. Presets: ml-100k, ml-1m, ml-10m, ml-25m, ml-32m
(their user/item/rating counts); --ratings/--users/--items override them.

Examples:

\b
  recsys generate synth-100k --preset ml-100k
  recsys generate tiny --ratings 20000 --users 300 --items 200 --factors 4 --save-truth
  recsys generate synth-32m --preset ml-32m --seed 7 && recsys preprocess synth-32m
"""


def _split_rows(infos: dict[str, dict[str, Any]], dataset: str) -> list[dict[str, Any]]:
    rows = []
    for name, info in infos.items():
        row = {"dataset": dataset, "split": name, "kind": info["kind"], "params": info["params"], "seed": info["seed"]}
        counts = info["counts"]
        if "fold_sizes" in counts:
            row.update(folds=len(counts["fold_sizes"]), fold_sizes=counts["fold_sizes"])
        else:
            row.update(counts)
        rows.append({**row, "file": info["file"]})
    return rows


def register(app: typer.Typer) -> None:
    @app.command("split", help=SPLIT_HELP, no_args_is_help=True)
    def split_cmd(
        dataset: Annotated[str, typer.Argument(help="A processed dataset, e.g. ml-100k.", show_default=False)],
        kind: Annotated[str, typer.Option("--kind", help="random, temporal, user, leave-last, kfold or ml100k.")],
        test: Annotated[Optional[float], typer.Option("--test", help="Test fraction (default 0.2; 0.25 for user).", show_default=False)] = None,
        val: Annotated[float, typer.Option("--val", help="Validation fraction (random, temporal, user).")] = 0.0,
        k: Annotated[int, typer.Option("--k", help="Number of folds for kfold.")] = 5,
        last: Annotated[int, typer.Option("--last", help="Test ratings per user for leave-last.")] = 1,
        val_last: Annotated[int, typer.Option("--val-last", help="Validation ratings per user for leave-last.")] = 0,
        name: Annotated[Optional[str], typer.Option("--name", help="Split name (default: from kind and options).", show_default=False)] = None,
        seed: SeedOpt = 42,
        data_dir: DataDirOpt = None,
        force: ForceOpt = False,
        fmt: FormatOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        from recsys_cli.api.data import create_split
        from recsys_cli.output import emit, resolve_format

        out = resolve_format(fmt, as_json)
        infos = create_split(dataset, kind, name=name, test=test, val=val, k=k, last=last, val_last=val_last,
                             seed=seed, force=force, data_dir=data_dir)
        rows = _split_rows(infos, dataset)
        if out == "table":  # narrow enough for a terminal: no dataset/file columns, params inline
            rows = [{k: (" ".join(f"{a}={b}" for a, b in v.items()) if k == "params" else v)
                     for k, v in row.items() if k not in ("dataset", "file")} for row in rows]
        emit(rows, out, title=f"splits of {dataset}")

    @app.command("generate", help=GENERATE_HELP, no_args_is_help=True)
    def generate_cmd(
        name: Annotated[str, typer.Argument(help="Name of the synthetic dataset (DATA/raw/NAME).", show_default=False)],
        preset: Annotated[Optional[str], typer.Option("--preset", help="ml-100k, ml-1m, ml-10m, ml-25m or ml-32m (default ml-100k when no sizes are given).", show_default=False)] = None,
        ratings: Annotated[Optional[int], typer.Option("--ratings", help="Number of ratings.", show_default=False)] = None,
        users: Annotated[Optional[int], typer.Option("--users", help="Number of users.", show_default=False)] = None,
        items: Annotated[Optional[int], typer.Option("--items", help="Number of items (movies).", show_default=False)] = None,
        factors: Annotated[int, typer.Option("--factors", help="Rank of the planted latent factors.")] = 8,
        noise: Annotated[float, typer.Option("--noise", help="Std of the Gaussian rating noise (stars).")] = 0.5,
        min_per_user: Annotated[Optional[int], typer.Option("--min-per-user", help="Minimum ratings per user (default 20, lowered if it cannot fit).", show_default=False)] = None,
        save_truth: Annotated[bool, typer.Option("--save-truth", help="Also write the planted factors and biases as truth.npz.")] = False,
        seed: SeedOpt = 42,
        data_dir: DataDirOpt = None,
        force: ForceOpt = False,
        fmt: FormatOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        from recsys_cli import settings
        from recsys_cli.api.data import generate
        from recsys_cli.output import emit, resolve_format
        from recsys_cli.progress import make_progress

        out = resolve_format(fmt, as_json)
        progress = make_progress()
        try:
            record = generate(name, preset=preset, ratings=ratings, users=users, items=items, factors=factors,
                              noise=noise, seed=seed, min_per_user=min_per_user, data_dir=data_dir, force=force,
                              save_truth=save_truth, progress=progress)
        finally:
            progress.close()
        truth = record["truth"]
        row = {"dataset": name, "path": str(settings.raw_dir(name, data_dir)), "preset": record["preset"],
               "seed": seed, **{k: truth[k] for k in ("n_ratings", "n_users", "n_items", "n_rated_items",
                                                     "rating_mean", "oracle_rmse", "top10pct_item_share")},
               "next": f"recsys preprocess {name}"}
        if out == "table":  # one record reads best as field/value lines
            emit([{"field": k, "value": v} for k, v in row.items()], out, title="generated")
        else:
            emit(row if out == "json" else [row], out)
