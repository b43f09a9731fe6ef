"""Turn a raw MovieLens folder (or any ratings file) into data/processed/NAME/ as LAYOUT.md describes.

Everything is written into a temporary folder next to the target and swapped in at the end,
so a failed or killed run never leaves half a dataset; a re-preprocess starts fresh (old
splits are dropped, since they are aligned to the old ratings rows).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsys_cli import __version__, settings
from recsys_cli.data import readers
from recsys_cli.errors import DataError, UsageError
from recsys_cli.swap import check_writable, recover, replace_dir, scratch_dir

SCHEMA_VERSION = 1
RATING_COLUMNS = ("user_id", "item_id", "rating", "timestamp")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def ratings_fingerprint(ratings: pl.DataFrame) -> str:
    """"sha256:<hex>" over user_id, item_id, rating, timestamp: each column's little-endian bytes, in row order."""
    digest = hashlib.sha256()
    dtypes = {"user_id": "<i4", "item_id": "<i4", "rating": "<f4", "timestamp": "<i8"}
    for col in RATING_COLUMNS:
        arr = np.ascontiguousarray(ratings[col].to_numpy(), dtype=dtypes[col])
        digest.update(memoryview(arr).cast("B"))
    return "sha256:" + digest.hexdigest()


def resolve_source(
    source: str, name: str | None, data_dir=None, columns: dict[str, str] | None = None
) -> tuple[readers.Layout, str, Path | None]:
    """(layout, output name, raw folder) for a dataset name, a MovieLens folder or a ratings file."""
    from recsys_cli.data.registry import RELEASES

    raw = settings.raw_dir(source, data_dir) if _NAME.fullmatch(source) else None
    if raw is not None:
        recover(raw.parent, source)  # a download or generate killed while replacing it, or its leftovers
    path = Path(source).expanduser()
    if raw is not None and raw.is_dir():
        if columns:
            raise UsageError("--columns applies to a single ratings file, not to a MovieLens folder")
        release = RELEASES.get(source)
        hint = f"run `recsys download {source} --force` to fetch it again" if release else ""
        return readers.detect_layout(raw, release.layout if release else None, hint), name or source, raw
    if not path.exists():
        if source in RELEASES:
            raise DataError(f"dataset {source!r} is not downloaded (no {raw}); run `recsys download {source}` first")
        raise DataError(
            f"{source!r} is neither a file or folder nor a downloaded dataset; "
            f"known datasets: {', '.join(RELEASES)} (fetch one with `recsys download NAME`)"
        )
    if not name:
        raise UsageError(f"--name is required when SOURCE is a path ({source})")
    if path.is_dir():
        if columns:
            raise UsageError("--columns applies to a single ratings file, not to a MovieLens folder")
        return readers.detect_layout(path, None, "is it an unpacked MovieLens release?"), name, path
    if path.suffix.lower() == ".zip":
        raise UsageError(f"{path} is a zip: unpack it first, or install it with `recsys download NAME --from-zip {path}`")
    return readers.generic_layout(path, columns), name, None


def preprocess(
    source: str,
    *,
    name: str | None = None,
    data_dir=None,
    columns: dict[str, str] | None = None,
    progress=None,
    force: bool = True,
) -> dict[str, Any]:
    """Preprocess SOURCE into data/processed/NAME/ and return its dataset.json content."""
    from recsys_cli.progress import NullProgress

    progress = progress or NullProgress()
    layout, out_name, raw_path = resolve_source(source, name, data_dir, columns)
    if not _NAME.fullmatch(out_name):
        raise UsageError(f"dataset name {out_name!r} must be letters, digits, '.', '_' or '-'")
    target = settings.processed_dir(out_name, data_dir)
    if target.exists() and not force:
        raise UsageError(f"{target} already exists; pass force=True to replace it")
    check_writable(target.parent, "data folder")  # before the reading, not after it
    recover_processed(out_name, data_dir)
    scratch = scratch_dir(target.parent, out_name)
    try:
        meta = _build(layout, out_name, raw_path, scratch, progress)
        replace_dir(scratch, target)  # recoverable at every step: see recsys_cli/swap.py
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    finally:
        progress.close()
    progress.log(f"wrote {target}")
    return meta


def recover_processed(name: str | None = None, data_dir=None) -> list[str]:
    """Put back a processed dataset whose replacement a kill interrupted; delete dead writers' leftovers."""
    return recover(settings.processed_dir("x", data_dir).parent, name,
                   complete=lambda p: (p / "dataset.json").is_file())


def _build(layout: readers.Layout, name: str, raw_path: Path | None, out: Path, progress) -> dict[str, Any]:
    rf = layout.ratings
    progress.start(6, f"preprocess {name}")
    t0 = time.perf_counter()
    progress.log(f"reading {rf.path} ({layout.kind} layout)")
    ratings = readers.read_ratings(rf)
    if ratings.height == 0:
        raise DataError(f"{rf.path.name}: no ratings")
    n_read = ratings.height
    ratings = _latest_per_pair(ratings)
    duplicates = n_read - ratings.height
    if duplicates:
        progress.log(f"resolved {duplicates:,} duplicate (user, item) ratings by latest timestamp")
    ratings = ratings.sort(["user_id", "timestamp", "item_id"]).select(RATING_COLUMNS).rechunk()
    progress.log(f"read {n_read:,} ratings in {time.perf_counter() - t0:.1f} s")
    progress.advance(1)

    step = 1.0 if bool((ratings["rating"] == ratings["rating"].round()).all()) else 0.5
    scale = [1.0, 5.0] if step == 1.0 else [0.5, 5.0]
    counts = dict(ratings["rating"].value_counts().iter_rows())
    histogram = {f"{v:.1f}": int(counts.get(float(v), 0)) for v in np.arange(scale[0], scale[1] + step / 2, step)}
    n_users = ratings["user_id"].n_unique()
    rated = ratings["item_id"].unique()
    progress.log("writing ratings.parquet")
    ratings.write_parquet(out / "ratings.parquet", statistics=True)
    fingerprint = ratings_fingerprint(ratings)
    del ratings
    progress.advance(1)

    items, flag_counts = _items(layout, rated, progress)
    items.write_parquet(out / "items.parquet")
    users = readers.read_users(layout)
    if users is not None:
        users.write_parquet(out / "users.parquet")
    tags = readers.read_tags(layout)
    if tags is not None:
        tags.write_parquet(out / "tags.parquet")
    progress.advance(1)

    meta: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "layout": layout.kind,
        "source": str(raw_path if raw_path is not None else rf.path),
        "n_ratings": n_read - duplicates,
        "n_users": n_users,
        "n_items": items.height,
        "n_rated_items": len(rated),
        "rating_scale": scale,
        "rating_step": step,
        "density": (n_read - duplicates) / (n_users * len(rated)),
        "genres": flag_counts if flag_counts is not None else _genre_counts(items),
        "rating_histogram": histogram,
        "duplicates_resolved": duplicates,
        "fingerprint": fingerprint,
        "has_users": users is not None,
        "has_tags": tags is not None,
        "n_tags": 0 if tags is None else tags.height,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "recsys_version": __version__,
        "splits": {},
    }
    progress.advance(1)
    meta = _default_splits(out, layout.folder if layout.kind != "generic" else None, meta, progress)
    progress.advance(1)
    (out / "dataset.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    progress.advance(1)
    return meta


def _latest_per_pair(ratings: pl.DataFrame) -> pl.DataFrame:
    """One row per (user, item): the latest timestamp wins, then the later line of the file."""
    key = (pl.col("user_id").cast(pl.Int64) * (1 << 32)) + pl.col("item_id").cast(pl.Int64)
    keys = ratings.select(key.sort().alias("k")).to_series()
    repeated = keys.filter(keys == keys.shift(1)).unique()  # usually empty: one cheap sort, no hashing
    del keys
    if repeated.is_empty():
        return ratings
    involved = ratings.filter(key.is_in(repeated.implode())).with_columns(key.alias("_k"))
    losers = involved.sort(["_k", "timestamp", "_row"]).filter(pl.col("_k") == pl.col("_k").shift(-1))["_row"]
    return ratings.filter(~pl.col("_row").is_in(losers.implode()))


def _items(layout: readers.Layout, rated: pl.Series, progress) -> tuple[pl.DataFrame, dict[str, int] | None]:
    """items.parquet content, with a placeholder row for every rated item the items file lacks."""
    schema = {"item_id": pl.Int32, "title": pl.String, "year": pl.Int16, "genres": pl.List(pl.String)}
    if layout.kind == "generic":
        items, flag_counts = pl.DataFrame(schema=schema), None
    else:
        items, flag_counts = readers.read_items(layout)
    missing = pl.DataFrame({"item_id": rated}).join(items.select("item_id"), on="item_id", how="anti")
    if missing.height:
        if layout.kind != "generic":
            progress.log(f"warning: {missing.height:,} rated items are missing from {layout.files['items'].name}; titled 'Item <id>'")
        filler = missing.select(
            pl.col("item_id"),
            pl.format("Item {}", pl.col("item_id")).alias("title"),
            pl.lit(None, pl.Int16).alias("year"),
            pl.lit([], pl.List(pl.String)).alias("genres"),
        )
        items = pl.concat([items, filler]).sort("item_id")
    return items.select([pl.col(c).cast(t) for c, t in schema.items()]), flag_counts


def _genre_counts(items: pl.DataFrame) -> dict[str, int]:
    counts = items.select(pl.col("genres").explode().drop_nulls().value_counts(sort=True)).unnest("genres")
    rows = sorted(counts.iter_rows(), key=lambda r: (-r[1], r[0]))
    return {g: int(n) for g, n in rows}


def _default_splits(out: Path, raw_path: Path | None, meta: dict, progress) -> dict:
    from recsys_cli.data.splits import create_default_splits

    progress.log("creating default splits")
    return create_default_splits(out, raw_path, meta)


# ---------------------------------------------------------------- what is on disk


def not_preprocessed(name: str, data_dir=None) -> DataError:
    """The one error for a dataset without dataset.json (info, insights and every loader), with the next step:
    `recsys preprocess NAME` when its raw files are there, `recsys download NAME && recsys preprocess NAME`
    for a GroupLens release, else `recsys generate NAME` or `recsys preprocess PATH --name NAME`."""
    from recsys_cli.data.registry import RELEASES

    path = settings.processed_dir(name, data_dir) / "dataset.json"
    if settings.raw_dir(name, data_dir).is_dir():
        hint = f"`recsys preprocess {name}`"
    elif name in RELEASES:
        hint = f"`recsys download {name} && recsys preprocess {name}`"
    else:
        hint = f"`recsys generate {name} && recsys preprocess {name}`, or `recsys preprocess PATH --name {name}`"
    return DataError(f"dataset {name!r} is not preprocessed (no {path}); run {hint}")


def read_meta(name: str, data_dir=None) -> dict[str, Any]:
    """dataset.json of a processed dataset; DataError saying what to run when it is missing."""
    path = settings.processed_dir(name, data_dir) / "dataset.json"
    if not path.is_file() and recover_processed(name, data_dir) == []:
        raise not_preprocessed(name, data_dir)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    from recsys_cli.data.dataset import check_meta

    return check_meta(meta, path, name)


LISTING_COLUMNS = ("name", "downloaded", "downloaded_at", "md5", "processed", "layout", "n_ratings", "n_users",
                   "n_items", "splits", "created")  # the keys of every list_datasets row, in order


def list_datasets(data_dir=None) -> list[dict[str, Any]]:
    """One row per dataset found under data/raw and data/processed, with download and count info."""
    root = settings.data_dir(data_dir)
    recover_processed(None, data_dir)
    recover(root / "raw")  # downloads and generated data whose replacement a kill interrupted
    names: set[str] = set()
    for sub in ("raw", "processed"):
        if (root / sub).is_dir():
            names |= {p.name for p in (root / sub).iterdir() if p.is_dir() and not p.name.startswith(".")}
    rows = []
    for name in sorted(names):
        raw, processed = root / "raw" / name, root / "processed" / name
        record = _json_or_empty(raw / "download.json")
        meta = _json_or_empty(processed / "dataset.json")
        if meta:  # a damaged dataset.json lists as not processed, like an unreadable one (`info NAME` says why)
            from recsys_cli.data.dataset import check_meta

            try:
                check_meta(meta, processed / "dataset.json", name)
            except DataError:
                meta = {}
        rows.append({
            "name": name,
            "downloaded": raw.is_dir(),
            "downloaded_at": record.get("downloaded_at"),
            "md5": record.get("md5"),
            "processed": bool(meta),
            "layout": meta.get("layout") or record.get("layout"),
            "n_ratings": meta.get("n_ratings"),
            "n_users": meta.get("n_users"),
            "n_items": meta.get("n_items"),
            "splits": sorted(meta.get("splits", {})) if meta else [],
            "created": meta.get("created"),
        })
    return rows


def _json_or_empty(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}
