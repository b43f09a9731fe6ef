"""`recsys preprocess SOURCE --engine spark`: ratings too large for one machine, read and cleaned on Spark.

Same validation rules as the local reader (integer user/item ids, 0 or more, that fit 32 bits,
ratings on the 0.5..5 scale in steps of 0.5, integer timestamps or none, blank lines skipped; in
the headerless MovieLens files exactly four fields a line), the same
duplicate rule (latest timestamp wins, then the later line), the same sort (user, timestamp,
item) and the same folder (LAYOUT.md), so the fingerprint equals the local engine's.

SOURCE: a MovieLens release of any layout (a downloaded/generated name or folder: ml-100k's
tab-separated u.data with u.item/u.user/u.genre, ml-1m/ml-10m's '::'-separated ratings.dat with
movies.dat/users.dat/tags.dat, or the CSV releases' ratings.csv with movies.csv), or a ratings
CSV/TSV (with a header) or Parquet file, folder or glob, at a local path or any Hadoop-compatible
URI Spark reads (hdfs://, s3a://, file://, ...). The ratings file is read by Spark; the small
files (items, users, genres, tags: latin-1 or UTF-8) by the local readers.

What runs where: parsing, validation, de-duplication, the sort and the statistics run on Spark;
Spark writes the sorted part files, which the driver then streams (one row group at a time) into
the single ratings.parquet every other step reads, hashing the fingerprint on the way. Items,
tags and the default splits are made by the local code (they need the ratings' user, item and
timestamp columns on the driver: 16 bytes a rating); so are users.parquet (ml-100k, ml-1m) and
tags.parquet. The output folder is on the driver's disk:
on a cluster, DATA must be a filesystem the executors share.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from recsys_cli.errors import DataError, UsageError
from recsys_cli.spark.session import SparkOptions, engine_info, job_errors, spark_session

INT32 = (-(2**31), 2**31 - 1)
HEADERLESS = ("ml-100k", "ml-1m", "ml-10m")  # user, item, rating, timestamp: tab- or '::'-separated, no header


def _resolve(source: str, name: str | None, data_dir, columns):
    """(layout, output name, raw folder or None, ratings location for Spark, is_parquet, separator)."""
    from recsys_cli import settings
    from recsys_cli.data import readers
    from recsys_cli.data.preprocess import _NAME

    if "://" not in source:
        raw = settings.raw_dir(source, data_dir) if _NAME.fullmatch(source) else None
        folder = raw if raw is not None and raw.is_dir() else Path(source).expanduser()
        if folder.is_dir() and not any(folder.glob("*.parquet")):
            from recsys_cli.data.registry import RELEASES

            release = RELEASES.get(source) if folder == raw else None
            layout = readers.detect_layout(folder, release.layout if release else None)
            if columns:
                raise UsageError("--columns applies to a single ratings file, not to a MovieLens folder")
            out_name = name or (source if folder == raw else None)
            if not out_name:
                raise UsageError(f"--name is required when SOURCE is a path ({source})")
            return layout, out_name, folder, str(layout.ratings.path), False, layout.ratings.sep
        if not folder.exists() and not any(ch in source for ch in "*?["):
            raise DataError(f"{source!r} is neither a file or folder nor a downloaded dataset")
    if not name:
        raise UsageError(f"--name is required when SOURCE is a path or URI ({source})")
    is_parquet = source.rstrip("/").lower().endswith((".parquet", ".pq")) or (
        "://" not in source and Path(source).is_dir())
    layout = readers.Layout("generic", None, readers.RatingsFile(Path(source.rstrip("/")), ""))
    return layout, name, None, source, is_parquet, None


def _read_headerless(spark, location: str, sep: str, fname: str):
    """ml-100k u.data / ml-1m, ml-10m ratings.dat: exactly four fields a line, no header."""
    from pyspark.sql import functions as F

    line = F.regexp_replace(F.col("value"), "\r$", "")
    df = (spark.read.text(location).select(line.alias("line"), F.monotonically_increasing_id().alias("_row"))
          .where(F.trim(F.col("line")) != ""))  # blank lines are skipped, as the local reader does
    # The separator literally ("::" or a tab, no regex), so "1:2::3::4" is three fields, as locally.
    parts = F.split(F.col("line"), "\t" if sep == "\t" else ":{2}")
    df = df.select("line", "_row", parts.alias("p"))
    width = df.where(F.size("p") != 4).orderBy("_row").limit(1).collect()
    if width:
        line = width[0]["line"]
        got = len(line.split(sep))
        raise DataError(f"{fname}: expected 4 fields, got {got} (line {line[:200]!r})")
    return df.select(*[F.col("p").getItem(k).alias(c) for k, c in enumerate(("user", "item", "rating", "timestamp"))],
                     "_row")


def _read(spark, location: str, is_parquet: bool, sep: str | None, columns, fname: str, kind: str = "generic"):
    """DataFrame of string/number columns user, item, rating, timestamp (raw values) plus _row (file order)."""
    from pyspark.sql import functions as F

    from recsys_cli.data.readers import _map_columns

    if kind in HEADERLESS:
        return _read_headerless(spark, location, sep, fname)
    if is_parquet:
        # Every part file's schema, merged: part files whose column types disagree are an error (Spark would
        # read one file's schema and fail on, or null out, the others).
        df = spark.read.option("mergeSchema", True).parquet(location)
    else:
        if sep is None:  # sniff the header like the local reader: tab, else ';' without ',', else ','
            first = spark.read.text(location).first()
            line = first[0] if first else ""
            if not line.strip():
                raise DataError(f"{fname}:1: expected a header line, found an empty line")
            sep = "\t" if "\t" in line else (";" if ";" in line and "," not in line else ",")
        df = spark.read.option("header", True).option("sep", sep).option("mode", "PERMISSIVE").csv(location)
    names = tuple(df.columns)
    if len(set(names)) != len(names):
        raise DataError(f"{fname}:1: the header repeats a column name ({', '.join(names)})")
    mapping = _map_columns(fname, names, columns)
    if is_parquet:
        _check_part_columns(df, [mapping[r] for r in ("user", "item", "rating")], fname)
    ts = F.col(f"`{mapping['timestamp']}`") if "timestamp" in mapping else F.lit("0")
    return df.select(
        F.col(f"`{mapping['user']}`").cast("string").alias("user"),
        F.col(f"`{mapping['item']}`").cast("string").alias("item"),
        F.col(f"`{mapping['rating']}`").cast("string").alias("rating"),
        ts.cast("string").alias("timestamp"),
        F.monotonically_increasing_id().alias("_row"),
    )


def _check_part_columns(df, cols: list[str], fname: str) -> None:
    """DataError naming a Parquet part file that lacks the user, item or rating column.

    With merged schemas such a file reads as rows of nulls, which the blank-row rule would drop
    without a word; a file that has the column holds at least one value in it.
    """
    from pyspark.sql import functions as F

    per_file = df.groupBy(F.col("_metadata.file_path").alias("file")).agg(
        *[F.count(F.col(f"`{c}`")).alias(f"n{k}") for k, c in enumerate(cols)])
    missing = per_file.where(" or ".join(f"n{k} = 0" for k in range(len(cols)))).orderBy("file").limit(1).collect()
    if missing:
        row = missing[0]
        lacks = [c for k, c in enumerate(cols) if row[f"n{k}"] == 0]
        raise DataError(f"{fname}: part file {row['file']} has no values in column(s) {', '.join(lacks)} "
                        "(another schema?); every file must hold the same columns")


def _validated(df, fname: str):
    """Typed ratings; DataError naming the first bad value found (Spark has no line numbers)."""
    from pyspark.sql import functions as F

    blank = F.coalesce(*[F.trim(F.col(c)) for c in ("user", "item", "rating")]).isNull() | (
        (F.coalesce(F.trim("user"), F.lit("")) == "") & (F.coalesce(F.trim("item"), F.lit("")) == "")
        & (F.coalesce(F.trim("rating"), F.lit("")) == ""))
    df = df.where(~blank)
    as_int = r"^\s*[-+]?\d+\s*$"
    user, item = F.trim("user").cast("long"), F.trim("item").cast("long")
    rating, ts = F.trim("rating").cast("double"), F.trim("timestamp").cast("long")
    checks = [
        (~F.coalesce(F.col("user").rlike(as_int), F.lit(False)), "user id", "is not an integer"),
        (~F.coalesce(F.col("item").rlike(as_int), F.lit(False)), "item id", "is not an integer"),
        (user.isNotNull() & ~user.between(*INT32), "user id", "does not fit a 32-bit integer"),
        (item.isNotNull() & ~item.between(*INT32), "item id", "does not fit a 32-bit integer"),
        (user < 0, "user id", "is negative (ids are 0 or more)"),
        (item < 0, "item id", "is negative (ids are 0 or more)"),
        (rating.isNull() | F.isnan(rating), "rating", "is not a number"),
        (~rating.between(0.5, 5.0), "rating", "is outside the scale 0.5..5"),
        (F.round(rating * 2) != rating * 2, "rating", "is not a multiple of 0.5"),
        (~F.coalesce(F.col("timestamp").rlike(as_int), F.lit(False)), "timestamp", "is not an integer"),
    ]
    kind = F.lit(None).cast("int")
    for k, (cond, _, _) in reversed(list(enumerate(checks))):
        kind = F.when(cond, F.lit(k)).otherwise(kind)
    bad = df.select("user", "item", "rating", "timestamp", "_row", kind.alias("_bad")).where(F.col("_bad").isNotNull())
    first = bad.orderBy("_row").limit(1).collect()
    if first:
        row = first[0]
        _, label, what = checks[row["_bad"]]
        value = row[{"user id": "user", "item id": "item"}.get(label, label)]
        raise DataError(f"{fname}: {label} {value!r} {what} (row {row['user']},{row['item']},{row['rating']},"
                        f"{row['timestamp']})")
    return df.select(user.cast("int").alias("user_id"), item.cast("int").alias("item_id"),
                     rating.cast("float").alias("rating"), ts.alias("timestamp"), "_row")


def _latest_per_pair(df):
    """One row per (user, item): the latest timestamp, then the later line of the file."""
    from pyspark.sql import functions as F

    best = F.max(F.struct("timestamp", "_row", "rating")).alias("m")
    return df.groupBy("user_id", "item_id").agg(best).select(
        "user_id", "item_id", F.col("m.rating").alias("rating"), F.col("m.timestamp").alias("timestamp"))


def merge_parts(parts: Path, target: Path) -> tuple[int, str]:
    """Stream Spark's sorted part files (name order) into one Parquet file; (rows, fingerprint).

    The fingerprint is preprocess.ratings_fingerprint's: each column's little-endian bytes in row
    order, column after column, so the file is read once more per column after it is written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("user_id", pa.int32()), ("item_id", pa.int32()), ("rating", pa.float32()),
                        ("timestamp", pa.int64())])
    files = sorted(p for p in parts.iterdir() if p.suffix == ".parquet" and not p.name.startswith(("_", ".")))
    rows = 0
    with pq.ParquetWriter(target, schema, write_statistics=True) as writer:
        for f in files:
            pf = pq.ParquetFile(f)
            for g in range(pf.num_row_groups):
                table = pf.read_row_group(g).select(schema.names).cast(schema)
                writer.write_table(table)
                rows += table.num_rows
    digest = hashlib.sha256()
    pf = pq.ParquetFile(target)
    dtypes = {"user_id": "<i4", "item_id": "<i4", "rating": "<f4", "timestamp": "<i8"}
    for col, dt in dtypes.items():
        for g in range(pf.num_row_groups):
            arr = np.ascontiguousarray(pf.read_row_group(g, columns=[col]).column(0).to_numpy(), dtype=dt)
            digest.update(memoryview(arr).cast("B"))
    return rows, "sha256:" + digest.hexdigest()


def preprocess_spark(
    source: str,
    *,
    name: str | None = None,
    data_dir=None,
    columns: dict[str, str] | None = None,
    progress=None,
    spark: SparkOptions | None = None,
) -> dict[str, Any]:
    """Preprocess SOURCE on Spark into DATA/processed/NAME/ (the local layout); returns dataset.json."""
    import polars as pl

    from recsys_cli import __version__, settings
    from recsys_cli.data import readers
    from recsys_cli.data.preprocess import (
        _NAME,
        SCHEMA_VERSION,
        _default_splits,
        _genre_counts,
        _items,
    )
    from recsys_cli.progress import NullProgress
    from recsys_cli.swap import replace_dir

    progress = progress or NullProgress()
    layout, out_name, raw_path, location, is_parquet, sep = _resolve(source, name, data_dir, columns)
    if not _NAME.fullmatch(out_name):
        raise UsageError(f"dataset name {out_name!r} must be letters, digits, '.', '_' or '-'")
    fname = Path(location.rstrip("/")).name
    target = settings.processed_dir(out_name, data_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out_name}.", suffix=".tmp", dir=target.parent))
    try:
        t0 = time.perf_counter()
        with spark_session(spark or SparkOptions(), app=f"recsys preprocess {out_name}") as session, \
                job_errors("preprocess"):
            info = engine_info(session)
            progress.log(f"Spark {info['spark_version']} on {info['master']}: reading {location}")
            raw = _read(session, location, is_parquet, sep, columns, fname, layout.kind)
            typed = _validated(raw, fname).cache()
            n_read = typed.count()
            if n_read == 0:
                raise DataError(f"{fname}: no ratings")
            ratings = _latest_per_pair(typed)
            ratings.orderBy("user_id", "timestamp", "item_id").write.parquet(str(scratch / "_parts"))
            written = session.read.parquet(str(scratch / "_parts"))
            hist_rows = written.groupBy("rating").count().collect()
            n_users = written.select("user_id").distinct().count()
            rated = np.sort(written.select("item_id").distinct().toArrow().column(0).to_numpy())
            typed.unpersist()
        spark_seconds = time.perf_counter() - t0
        progress.log(f"Spark part done in {spark_seconds:.1f} s; merging part files into ratings.parquet")
        n_ratings, fingerprint = merge_parts(scratch / "_parts", scratch / "ratings.parquet")
        shutil.rmtree(scratch / "_parts")
        duplicates = n_read - n_ratings
        counts = {float(r["rating"]): int(r["count"]) for r in hist_rows}
        step = 1.0 if all(float(v).is_integer() for v in counts) else 0.5
        scale = [1.0, 5.0] if step == 1.0 else [0.5, 5.0]
        histogram = {f"{v:.1f}": int(counts.get(float(v), 0)) for v in np.arange(scale[0], scale[1] + step / 2, step)}
        items, flag_counts = _items(layout, pl.Series("item_id", rated.astype(np.int32)), progress)
        items.write_parquet(scratch / "items.parquet")
        users = readers.read_users(layout) if layout.kind != "generic" else None
        if users is not None:
            users.write_parquet(scratch / "users.parquet")
        tags = readers.read_tags(layout) if layout.kind != "generic" else None
        if tags is not None:
            tags.write_parquet(scratch / "tags.parquet")
        meta: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION, "name": out_name, "layout": layout.kind,
            "source": str(raw_path if raw_path is not None else location),
            "n_ratings": n_ratings, "n_users": int(n_users), "n_items": items.height, "n_rated_items": len(rated),
            "rating_scale": scale, "rating_step": step, "density": n_ratings / (n_users * len(rated)),
            "genres": flag_counts if flag_counts is not None else _genre_counts(items),
            "rating_histogram": histogram, "duplicates_resolved": duplicates, "fingerprint": fingerprint,
            "has_users": users is not None, "has_tags": tags is not None, "n_tags": 0 if tags is None else tags.height,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "recsys_version": __version__,
            "engine": {**info, "spark_seconds": round(spark_seconds, 3)}, "splits": {},
        }
        meta = _default_splits(scratch, layout.folder if layout.kind != "generic" else None, meta, progress)
        (scratch / "dataset.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        replace_dir(scratch, target)  # the same recoverable swap as the local engine (recsys_cli/swap.py)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    progress.log(f"wrote {target}")
    return meta
