"""`recsys preprocess SOURCE` and `recsys info [DATASET]`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from recsys_cli.cli.common import DataDirOpt, FormatOpt, JsonOpt
from recsys_cli.cli.engine_opts import EngineOpt, SparkConfOpt, SparkMasterOpt, spark_options

PREPROCESS_HELP = """Turn a downloaded MovieLens release, a MovieLens folder or a ratings file into DATA/processed/NAME/.

SOURCE is a dataset name (its raw folder DATA/raw/NAME comes from `recsys download` or
`recsys generate`), a folder in any MovieLens layout (ml-100k, ml-1m, ml-10m, or the CSV
releases ml-20m ... ml-latest; needs --name), or a ratings CSV/TSV/Parquet file (needs --name,
and --columns unless the columns are called userId/movieId/rating/timestamp or
user_id/item_id/rating/timestamp).

Writes ratings/items/users/tags Parquet files, dataset.json and the default splits.
Re-running replaces the dataset, and with it any splits made from the old ratings.

Examples:

\b
  recsys preprocess ml-100k
  recsys preprocess ~/movielens/ml-10M100K --name ml-10m
  recsys preprocess ratings.csv --name mine --columns user=uid,item=iid,rating=stars,timestamp=ts
  recsys preprocess ml-latest-small --format json
"""

INFO_HELP = """Show what is downloaded and processed, or one dataset's summary.

Without DATASET: one row per dataset under DATA/raw and DATA/processed (download date,
md5, counts, splits). With DATASET: its dataset.json (counts, rating scale and histogram,
genres, splits).

Examples:

\b
  recsys info
  recsys info ml-100k
  recsys info ml-100k --format json
"""

ROLES = ("user", "item", "rating", "timestamp")


def parse_columns(text: str | None) -> dict[str, str] | None:
    """`user=COL,item=COL,rating=COL[,timestamp=COL]` -> {"user": COL, ...}."""
    from recsys_cli.errors import UsageError

    if not text:
        return None
    columns: dict[str, str] = {}
    for part in text.split(","):
        role, sep, col = part.partition("=")
        role, col = role.strip().lower(), col.strip()
        if not sep or not col or role not in ROLES or "=" in col:  # "=" in a column: roles not split by commas
            raise UsageError(f"--columns expects user=COL,item=COL,rating=COL[,timestamp=COL] (separated by commas), "
                             f"got {part!r}")
        columns[role] = col
    missing = [r for r in ROLES[:3] if r not in columns]
    if missing:
        raise UsageError(f"--columns is missing {', '.join(f'{r}=COL' for r in missing)} (user, item and rating are "
                         "required)")
    used = list(columns.values())
    twice = sorted({c for c in used if used.count(c) > 1})
    if twice:
        raise UsageError(f"--columns names column {twice[0]!r} for more than one role; each role needs its own column")
    return columns


def _show(meta: dict[str, Any], fmt: str) -> None:
    from recsys_cli.output import console_out, emit
    from recsys_cli.output.dataset import render_summary

    if fmt == "table":
        render_summary(meta, console_out())
    elif fmt == "csv":  # the JSON object flattened, as every command's CSV (genres.Drama, splits.random.kind, ...)
        emit([meta], "csv")
    else:
        emit(meta, fmt)


def register(app: typer.Typer) -> None:
    @app.command("preprocess", help=PREPROCESS_HELP)
    def preprocess_cmd(
        source: Annotated[str, typer.Argument(help="Dataset name (e.g. ml-100k), MovieLens folder, or ratings file.", show_default=False)],
        name: Annotated[Optional[str], typer.Option("--name", help="Name of the processed dataset (required when SOURCE is a path).", show_default=False)] = None,
        columns: Annotated[Optional[str], typer.Option("--columns", help="Ratings file columns: user=COL,item=COL,rating=COL[,timestamp=COL].", show_default=False)] = None,
        data_dir: DataDirOpt = None,
        engine: EngineOpt = "local",
        spark_master: SparkMasterOpt = None,
        spark_conf: SparkConfOpt = None,
        fmt: FormatOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        from recsys_cli.api.data import preprocess
        from recsys_cli.output import resolve_format
        from recsys_cli.progress import make_progress

        out_fmt = resolve_format(fmt, as_json)
        spark = spark_options(engine, spark_master, spark_conf)
        if spark is not None:  # ratings too large for one machine: parsed, checked and sorted on Spark
            from recsys_cli.spark.preprocess import preprocess_spark

            _show(preprocess_spark(source, name=name, data_dir=data_dir, columns=parse_columns(columns),
                                   progress=make_progress(), spark=spark), out_fmt)
            return
        ds = preprocess(source, name=name, data_dir=data_dir, columns=parse_columns(columns), progress=make_progress())
        _show(ds.meta, out_fmt)

    @app.command("info", help=INFO_HELP)
    def info_cmd(
        dataset: Annotated[Optional[str], typer.Argument(help="A processed dataset to describe (default: list them all).", show_default=False)] = None,
        data_dir: DataDirOpt = None,
        fmt: FormatOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        from recsys_cli.api.data import dataset_info, datasets
        from recsys_cli.output import emit, resolve_format
        from recsys_cli.settings import data_dir as root

        out_fmt = resolve_format(fmt, as_json)
        if dataset:
            _show(dataset_info(dataset, data_dir=data_dir), out_fmt)
            return
        rows = datasets(data_dir=data_dir)
        if not rows:
            typer.echo(f"nothing under {Path(root(data_dir))} yet; start with `recsys download ml-100k`", err=True)
        if out_fmt == "table":  # the compact view for people; json/csv keep every field
            rows = [
                {
                    "name": r["name"], "layout": r["layout"] or "",
                    "downloaded": (r["downloaded_at"] or "yes")[:10] if r["downloaded"] else "no",
                    "processed": "yes" if r["processed"] else "no",
                    "ratings": f"{r['n_ratings']:,}" if r["processed"] else "",
                    "users": f"{r['n_users']:,}" if r["processed"] else "",
                    "items": f"{r['n_items']:,}" if r["processed"] else "",
                    "splits": len(r["splits"]),
                }
                for r in rows
            ]
        if out_fmt == "table":
            emit(rows, out_fmt, title="datasets")
        else:  # declared columns: an empty listing is still a CSV header, not a blank line
            from recsys_cli.data.preprocess import LISTING_COLUMNS

            emit(rows, out_fmt, columns=LISTING_COLUMNS)
