"""train, predict, recommend, similar, runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from recsys_cli.cli.common import (
    ArtifactsDirOpt,
    DataDirOpt,
    ForceOpt,
    FormatOpt,
    JsonOpt,
    MlflowExperimentOpt,
    MlflowOpt,
    ParamOpt,
    SeedOpt,
    parse_params,
)
from recsys_cli.cli.engine_opts import EngineOpt, SparkConfOpt, SparkMasterOpt, spark_options


def _ids(text: str, what: str) -> list[int]:
    from recsys_cli.api.inputs import parse_int
    from recsys_cli.errors import UsageError

    try:
        return [parse_int(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise UsageError(f"{what}: expected integer ids, got {text!r}") from None


def _id(text: str | None, what: str) -> int | None:
    """One raw id given on the command line (`--user`, `--item`), read as strictly as `_ids`: click's int type
    takes '1_0' and '+3' through Python's int() and so names another id."""
    from recsys_cli.api.inputs import parse_int
    from recsys_cli.errors import UsageError

    if text is None:
        return None
    try:
        return parse_int(text)
    except ValueError:
        raise UsageError(f"{what}: expected an integer id, got {text!r}") from None


def _parse_ratings(text: str) -> list[tuple[int, float]]:
    """'50:5,172:4.5' -> [(50, 5.0), (172, 4.5)]."""
    from recsys_cli.api.inputs import parse_int
    from recsys_cli.errors import UsageError

    items, values = [], []
    for part in text.split(","):
        item, sep, value = part.strip().partition(":")
        try:
            if not sep:
                raise ValueError
            items.append(parse_int(item))
            values.append(float(value))
        except ValueError:
            raise UsageError(f"--ratings expects item:rating pairs like 50:5,172:4.5, got {part!r}") from None
    return list(zip(items, values, strict=True))


def _read_id_file(path: Path, columns: tuple[str, ...], optional: tuple[str, ...] = ()) -> list[list[int] | None]:
    """Read a CSV (a path or `-` for stdin) with a header containing `columns`; one list per column (then per
    `optional` column, None where the header lacks it)."""
    from recsys_cli.api.inputs import read_id_columns

    return read_id_columns(path, columns, optional=optional)


def register(app: typer.Typer) -> None:
    @app.command(
        "train",
        help="Train a model and save it as a run.\n\n"
        "Examples:\n\n"
        "  recsys train svd --dataset ml-100k --split random\n\n"
        "  recsys train item-knn --dataset ml-100k -p k=40 -p similarity=pearson_baseline\n\n"
        "  recsys train svd --dataset ml-100k --preset surprise --name svd-surprise\n\n"
        "  recsys train svd --dataset ml-100k --split random --mlflow --mlflow-experiment movielens",
    )
    def train(
        model: Annotated[str, typer.Argument(help="Model name: bias, popularity, user-knn, item-knn, svd, svdpp, ... or surprise:<Algorithm>.")],
        dataset: Annotated[str, typer.Option("--dataset", "-d", help="Processed dataset name.")],
        split: Annotated[Optional[str], typer.Option("--split", "-s", help="Train on the train part of this split (NAME, or NAME:K for a k-fold split). Default: every rating.")] = None,
        param: ParamOpt = None,
        config: Annotated[Optional[Path], typer.Option("--config", help="TOML file of hyperparameters (top level or [params]); --param overrides it.")] = None,
        preset: Annotated[Optional[str], typer.Option("--preset", help="Named set of hyperparameters, e.g. `surprise` for svd.")] = None,
        name: Annotated[Optional[str], typer.Option("--name", "-n", help="Run name (default MODEL-DATASET[-SPLIT]).")] = None,
        seed: SeedOpt = 42,
        force: ForceOpt = False,
        data_dir: DataDirOpt = None,
        artifacts_dir: ArtifactsDirOpt = None,
        mlflow: MlflowOpt = False,
        mlflow_experiment: MlflowExperimentOpt = None,
        engine: EngineOpt = "local",
        spark_master: SparkMasterOpt = None,
        spark_conf: SparkConfOpt = None,
        fmt: FormatOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        from recsys_cli.api.runs import train_run
        from recsys_cli.models.registry import load_params_file
        from recsys_cli.output import emit, resolve_format
        from recsys_cli.progress import make_progress
        from recsys_cli.tracking import mlflow_options

        fmt = resolve_format(fmt, as_json)
        spark = spark_options(engine, spark_master, spark_conf)
        tracking = mlflow_options(mlflow, mlflow_experiment, artifacts_dir)
        params = load_params_file(config) if config else {}
        params.update(parse_params(param))
        progress = make_progress()
        try:
            summary = train_run(
                model, dataset, split=split, params=params, preset=preset, seed=seed, name=name,
                data_dir=data_dir, artifacts_dir=artifacts_dir, force=force, progress=progress, mlflow=tracking,
                engine=engine, spark=spark,
            )
        finally:
            progress.close()
        typer.echo(f"trained {model} in {summary['train_seconds']:.2f} s -> {summary['path']}", err=True)
        if fmt == "table":
            keys = ("run", "model", "dataset", "split", "train_ratings", "train_seconds", "path")
            emit([{"field": k, "value": summary[k]} for k in keys], fmt, columns=["field", "value"])
        else:
            emit(summary, fmt)

    @app.command(
        "predict",
        help="Predict ratings for (user, item) pairs with a trained run.\n\n"
        "Examples:\n\n"
        "  recsys predict svd-ml-100k --user 1 --item 50\n\n"
        "  recsys predict svd-ml-100k --pairs-file pairs.csv --format jsonl   (CSV header: user_id,item_id)\n\n"
        "  recsys predict fm-time --user 1 --item 50 --time 881250949   (when the rating is made, Unix seconds)",
    )
    def predict(
        run: Annotated[str, typer.Argument(help="Run name (see `recsys runs`).")],
        user: Annotated[Optional[str], typer.Option("--user", "-u", metavar="<int>", help="Raw user id.")] = None,
        item: Annotated[Optional[str], typer.Option("--item", "-i", metavar="<int>", help="Raw item id.")] = None,
        pairs_file: Annotated[Optional[Path], typer.Option("--pairs-file", help="CSV with header user_id,item_id and optionally timestamp (- reads stdin).")] = None,
        at_time: Annotated[Optional[int], typer.Option("--time", help="When the ratings are made (Unix seconds), for a run with a time part (fm with its time group); default: the latest training period.")] = None,
        artifacts_dir: ArtifactsDirOpt = None,
        fmt: FormatOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        from recsys_cli.api.queries import predict as predict_pairs
        from recsys_cli.errors import UsageError
        from recsys_cli.output import emit, resolve_format

        fmt = resolve_format(fmt, as_json)
        user, item = _id(user, "--user"), _id(item, "--item")
        times = None if at_time is None else [at_time]
        if pairs_file is not None:
            if user is not None or item is not None:
                raise UsageError("use either --user/--item or --pairs-file, not both")
            users, items, in_file = _read_id_file(pairs_file, ("user_id", "item_id"), ("timestamp",))
            if not users:  # as recommend --users-file: a header alone is an input error, not an empty answer
                raise UsageError(f"{pairs_file}: give at least one user_id,item_id pair")
            if in_file is not None and at_time is not None:
                raise UsageError("the pairs file has a timestamp column: leave out --time")
            times = in_file if in_file is not None else times
        elif user is not None and item is not None:
            users, items = [user], [item]
        else:
            raise UsageError("give --user and --item, or --pairs-file")
        answer = predict_pairs(run, users, items, timestamps=times, artifacts_dir=artifacts_dir)
        if answer.time_ignored:
            typer.echo(f"note: {run} has no time part (only fm with its time group has one): the times are ignored",
                       err=True)
        rows = answer.to_dict()
        emit(rows[0] if pairs_file is None and fmt == "json" else rows, fmt)

    @app.command(
        "recommend",
        help="Top-n recommendations as JSON, JSONL, CSV or a table.\n\n"
        "Examples:\n\n"
        "  recsys recommend svd-ml-100k --user 1 -n 10 --format json | jq .\n\n"
        "  recsys recommend svd-ml-100k --all-users --format jsonl > recs.jsonl\n\n"
        "  recsys recommend svd-ml-100k --ratings 50:5,172:4.5,181:5   (a new user's ratings)",
    )
    def recommend(
        run: Annotated[str, typer.Argument(help="Run name (see `recsys runs`).")],
        user: Annotated[Optional[list[str]], typer.Option("--user", "-u", help="Raw user id (repeatable, or comma-separated).")] = None,
        users_file: Annotated[Optional[Path], typer.Option("--users-file", help="CSV with a user_id column (- reads stdin).")] = None,
        all_users: Annotated[bool, typer.Option("--all-users", help="Every user the run knows.")] = False,
        ratings: Annotated[Optional[str], typer.Option("--ratings", help="A new user's ratings, item:rating pairs, e.g. 50:5,172:4.5.")] = None,
        n: Annotated[int, typer.Option("-n", "--n", min=1, help="Items per user.")] = 10,
        include_seen: Annotated[bool, typer.Option("--include-seen", help="Allow items the user already rated.")] = False,
        explain: Annotated[bool, typer.Option("--explain", help="Add `reasons`: the rated items (or genres, baseline, popular fallback) whose contributions add up to each score.")] = False,
        artifacts_dir: ArtifactsDirOpt = None,
        data_dir: DataDirOpt = None,
        engine: EngineOpt = "local",
        spark_master: SparkMasterOpt = None,
        spark_conf: SparkConfOpt = None,
        out: Annotated[Optional[str], typer.Option("--out", help="With --all-users --engine spark: write Parquet part files here (a path or any URI Spark writes).", show_default=False)] = None,
        force: ForceOpt = False,
        fmt: FormatOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        from recsys_cli.api.queries import recommend as top_n
        from recsys_cli.errors import UsageError
        from recsys_cli.output import emit, resolve_format

        fmt = resolve_format(fmt, as_json)
        spark = spark_options(engine, spark_master, spark_conf)
        if spark is not None or out is not None:  # batch top-n on Spark, written as Parquet
            if spark is None or not all_users or out is None or user or users_file or ratings:
                raise UsageError("batch recommendation is `--all-users --engine spark --out PATH`")
            from recsys_cli.progress import make_progress
            from recsys_cli.spark.recommend import recommend_all_users

            summary = recommend_all_users(run, out, n=n, exclude_seen=not include_seen, artifacts_dir=artifacts_dir,
                                          force=force, spark=spark, progress=make_progress())
            typer.echo(f"wrote {summary['rows']:,} rows for {summary['users']:,} users -> {summary['out']}", err=True)
            emit(summary, fmt)
            return
        chosen = sum([bool(user), users_file is not None, all_users, ratings is not None])
        if chosen != 1:
            raise UsageError("give exactly one of --user, --users-file, --all-users or --ratings")
        users = None
        if user:
            users = [u for text in user for u in _ids(text, "--user")]
        elif users_file is not None:
            users = _read_id_file(users_file, ("user_id",))[0]
        recs = top_n(run, users, n=n, exclude_seen=not include_seen, all_users=all_users,
                     ratings=_parse_ratings(ratings) if ratings is not None else None, artifacts_dir=artifacts_dir,
                     explain=explain, data_dir=data_dir)
        for line in recs.notes():
            typer.echo(line, err=True)
        cols = ["user_id", "rank", "item_id", "title", "score", "fallback"] + (["reasons"] if explain else [])
        rows = recs.rows()
        if explain and fmt == "table":
            from recsys_cli.api.model import reasons_text

            rows = ({**row, "reasons": reasons_text(row["reasons"])} for row in rows)
        emit(rows if fmt == "jsonl" else list(rows), fmt, columns=cols)

    @app.command(
        "similar",
        help="Items most similar to an item, by the model's own similarity.\n\n"
        "Example:\n\n  recsys similar item-knn-ml-100k --item 1 -n 10",
    )
    def similar(
        run: Annotated[str, typer.Argument(help="Run name.")],
        item: Annotated[str, typer.Option("--item", "-i", metavar="<int>", help="Raw item id.")],
        n: Annotated[int, typer.Option("-n", "--n", min=1, help="How many neighbours.")] = 10,
        artifacts_dir: ArtifactsDirOpt = None,
        fmt: FormatOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        from recsys_cli.api.queries import similar as nearest
        from recsys_cli.output import emit, resolve_format

        fmt = resolve_format(fmt, as_json)
        rows = nearest(run, _id(item, "--item"), n=n, artifacts_dir=artifacts_dir).to_dict()
        emit(rows, fmt, columns=["item_id", "rank", "similar_item_id", "title", "similarity"])

    @app.command(
        "runs",
        help="List trained runs (newest first) with their metrics, or every ledger entry.\n\n"
        "Examples:\n\n  recsys runs\n\n  recsys runs --model svd --sort rmse --format json\n\n"
        "  recsys runs --ledger --kind evaluate --sort ndcg@10",
    )
    def runs(
        model: Annotated[Optional[str], typer.Option("--model", help="Only this model.")] = None,
        dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", help="Only this dataset.")] = None,
        sort: Annotated[Optional[str], typer.Option("--sort", help="Sort by a metric (ascending for rmse/mae, else descending); entries without it are left out.")] = None,
        ledger: Annotated[bool, typer.Option("--ledger", help="List the run ledger (every train, evaluate, tune) instead of saved runs.")] = False,
        kind: Annotated[Optional[str], typer.Option("--kind", help="With --ledger: train, evaluate, tune or tune-trial.")] = None,
        limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="At most this many rows.")] = None,
        artifacts_dir: ArtifactsDirOpt = None,
        fmt: FormatOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        from recsys_cli import ledger as ledger_db
        from recsys_cli.api.runs import list_runs
        from recsys_cli.output import emit, names_say_models, resolve_format

        fmt = resolve_format(fmt, as_json)
        if ledger:
            rows = ledger_db.query(root=artifacts_dir, kind=kind, model=model, dataset=dataset, sort=sort, limit=limit)
            if fmt == "table":  # what, when and the headline metrics: fits 80 columns; JSON/CSV keep every field
                shown = _headline((r.get("metrics") or {} for r in rows), ("rmse", "ndcg@10"))
                emit([{"id": r["id"], "created": _short_time(r["created"]), "kind": r["kind"], "run": _ledger_what(r),
                       **{m: (r.get("metrics") or {}).get(m) for m in shown}} for r in rows],
                     fmt, columns=["id", "created", "kind", "run", *shown])
                return
            # every field in every format; CSV puts these first
            emit(rows, fmt, columns=["id", "created", "kind", "run", "model", "dataset", "split", "metrics", "params",
                                     "command"])
            return
        rows = list_runs(model=model, dataset=dataset, sort=sort, limit=limit, artifacts_dir=artifacts_dir)
        if fmt == "table":  # the headline metrics as columns, short times: fits 80 columns; JSON/CSV keep all
            shown = _headline(r["metrics"] for r in rows)
            named = names_say_models(rows)  # the model column only when a run's name does not say its model
            rows = [{"run": r["run"], "model": r["model"], "created": _short_time(r["created"]),
                     "fit s": f"{r['train_seconds']:.1f}" if r["train_seconds"] is not None else "",
                     **{m: r["metrics"].get(m) for m in shown}} for r in rows]
            emit(rows, fmt, columns=["run", *([] if named else ["model"]), "created", "fit s", *shown])
            return
        emit(rows, fmt, columns=["run", "model", "dataset", "split", "created", "train_seconds", "metrics"])


HEADLINE_METRICS = ("rmse", "mae", "ndcg@10")  # the runs table's metric columns (JSON and CSV keep every metric)


def _headline(metrics, names=HEADLINE_METRICS) -> list[str]:
    """The metrics of `names` that at least one row has."""
    metrics = list(metrics)
    return [m for m in names if any(m in ms for ms in metrics)]


def _short_time(stamp) -> str:
    """'2026-11-24T12:29:21+00:00' -> '11-24 12:29' (month-day hour:minute, as stored: UTC)."""
    return str(stamp or "")[5:16].replace("T", " ")


def _ledger_what(entry: dict) -> str:
    """The run an entry made or scored, else what was evaluated: 'svd on ml-100k (5-fold cv)'."""
    if entry.get("run"):
        return entry["run"]
    protocol = entry.get("protocol") or {}
    how = f"{protocol['folds']}-fold cv" if protocol.get("kind") == "cv" and protocol.get("folds") else entry.get("split")
    return f"{entry.get('model') or '?'} on {entry.get('dataset') or '?'}" + (f" ({how})" if how else "")
