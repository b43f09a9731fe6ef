"""Read a processed dataset (LAYOUT.md) with Spark: ratings, a split part, vocabularies, index space.

Split files are aligned to the ratings by row order, so both are read with Parquet's row index
(`_metadata.row_index`) and joined on it; nothing goes through the driver.
Indices follow data/dataset.py: users = sorted unique raw ids of all ratings, items = sorted
union of rated items and items.parquet, so a Spark run and a local run share one index space.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from recsys_cli.errors import DataError

PART_CODES = {"train": 0, "validation": 1, "val": 1, "test": 2}


def dataset_meta(path: Path) -> dict:
    meta_path = path / "dataset.json"
    if not meta_path.is_file():
        from recsys_cli.data.preprocess import not_preprocessed

        raise not_preprocessed(path.name, path.parent.parent)  # path is DATA_DIR/processed/NAME
    try:
        return json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {meta_path}: {exc}") from exc


def _with_row_number(spark, path: Path, columns: list[str]):
    """One Parquet file -> DataFrame(columns..., row) with row = its row number in the file."""
    from pyspark.sql import functions as F

    return spark.read.parquet(str(path)).select(*columns, F.col("_metadata.row_index").alias("row"))


def read_part(spark, path: Path, meta: dict, split: str | None, part: str = "train"):
    """DataFrame(user_id, item_id, rating, timestamp) of every rating, or one part of a split (NAME or NAME:K)."""
    from pyspark.sql import functions as F

    cols = ["user_id", "item_id", "rating", "timestamp"]
    ratings_path = path / "ratings.parquet"
    if split is None:
        return spark.read.parquet(str(ratings_path)).select(*cols)
    base, _, fold = split.partition(":")
    splits = meta.get("splits", {})
    if base not in splits:
        available = ", ".join(sorted(splits)) or "none"
        raise DataError(f"unknown split {base!r} for {path.name}; available: {available}")
    info = splits[base]
    kfold = info.get("kind") == "kfold"
    if kfold and not fold:
        raise DataError(f"split {base!r} is k-fold: name a fold as {base}:0 .. {base}:{info['params'].get('k', 5) - 1}")
    if fold and not kfold:
        raise DataError(f"split {base!r} is not k-fold; use it without ':{fold}'")
    if part not in PART_CODES:
        raise DataError(f"unknown split part {part!r}; use train, validation or test")
    codes = _with_row_number(spark, path / info.get("file", f"splits/{base}.parquet"), ["part"])
    if kfold:
        keep = (F.col("part") == int(fold)) if part == "test" else (F.col("part") != int(fold))
    else:
        keep = F.col("part") == PART_CODES[part]
    rows = _with_row_number(spark, ratings_path, cols)
    return rows.join(codes.where(keep), "row").select(*cols)


def vocabularies(spark, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(user_ids, item_ids) int64 ascending, exactly as Dataset.vocabularies builds them."""
    ratings = spark.read.parquet(str(path / "ratings.parquet"))
    users = ratings.select("user_id").distinct()
    items = ratings.select("item_id").union(spark.read.parquet(str(path / "items.parquet")).select("item_id")).distinct()
    user_ids = np.sort(users.toArrow().column(0).to_numpy().astype(np.int64))
    item_ids = np.sort(items.toArrow().column(0).to_numpy().astype(np.int64))
    return user_ids, item_ids


def vocab_frame(spark, ids: np.ndarray, id_col: str, index_col: str):
    """A small DataFrame (raw id, contiguous int index) to broadcast-join on."""
    import pyarrow as pa

    table = pa.table({id_col: pa.array(ids.astype(np.int64)),
                      index_col: pa.array(np.arange(len(ids), dtype=np.int32))})
    return spark.createDataFrame(table)


def to_index_space(spark, df, user_ids: np.ndarray, item_ids: np.ndarray):
    """Add int columns u, i (our contiguous indices) to a DataFrame of raw user_id/item_id."""
    from pyspark.sql import functions as F

    df = df.withColumn("user_id", F.col("user_id").cast("long")).withColumn("item_id", F.col("item_id").cast("long"))
    return (df.join(F.broadcast(vocab_frame(spark, user_ids, "user_id", "u")), "user_id")
              .join(F.broadcast(vocab_frame(spark, item_ids, "item_id", "i")), "item_id"))
