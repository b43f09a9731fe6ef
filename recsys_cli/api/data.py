"""Datasets for the library API: a processed MovieLens folder or any DataFrame, one `Dataset` type.

A `Dataset` is ratings in index space (`Interactions`) plus the item metadata (titles,
genres) and a name. Splits of a dataset share its user/item vocabularies, so a model fitted
on `train` scores `test` without any id juggling. Raw ids stay raw at every edge.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys_cli.data.dataset import Interactions, lookup
from recsys_cli.errors import DataError, UsageError

if TYPE_CHECKING:
    import polars as pl

    from recsys_cli.data.dataset import Dataset as ProcessedDataset

DUPLICATE_POLICIES = ("error", "last", "mean")


class Dataset:
    """Ratings with their id vocabularies and item metadata; what `train`, `evaluate` and friends take.

    Make one with `load_dataset(name)` (a processed release) or `from_frame(df)` (any table).
    """

    def __init__(self, interactions: Interactions | None, *, name: str, titles: dict[int, str] | None = None,
                 processed: ProcessedDataset | None = None, part: str | None = None) -> None:
        if interactions is None and processed is None:
            raise UsageError("a Dataset needs its ratings")
        self._interactions = interactions
        self.name = name
        self._titles = titles
        self._processed = processed
        self.part = part  # "train" / "validation" / "test" for a split part, else None

    # ----- what it holds ----------------------------------------------------------------
    @property
    def interactions(self) -> Interactions:
        """The ratings in index space with their vocabularies (read from disk on first use)."""
        if self._interactions is None:
            self._interactions = self._processed.interactions()
        return self._interactions

    def __len__(self) -> int:
        return len(self.interactions)

    def __repr__(self) -> str:
        part = f", {self.interactions.split}:{self.part}" if self.part else ""
        return (f"Dataset({self.name!r}{part}: {len(self):,} ratings, {self.n_users:,} users, "
                f"{self.n_items:,} items, scale {self.rating_scale[0]:g}-{self.rating_scale[1]:g})")

    @property
    def n_users(self) -> int:
        return self.interactions.n_users

    @property
    def n_items(self) -> int:
        return self.interactions.n_items

    @property
    def user_ids(self) -> np.ndarray:
        """Raw user ids in index order (row i of `matrix()` is user `user_ids[i]`)."""
        return self.interactions.user_ids

    @property
    def item_ids(self) -> np.ndarray:
        """Raw item ids in index order (column j of `matrix()` is item `item_ids[j]`)."""
        return self.interactions.item_ids

    @property
    def rating_scale(self) -> tuple[float, float]:
        return self.interactions.rating_scale

    @property
    def fingerprint(self) -> str:
        if self._interactions is None:
            return self._processed.fingerprint
        return self.interactions.fingerprint

    @property
    def titles(self) -> dict[int, str]:
        """Raw item id -> title (empty when the data has no titles)."""
        if self._titles is None:
            self._titles = self._processed.titles() if self._processed is not None else {}
        return self._titles

    @property
    def ratings(self) -> pl.DataFrame:
        """The ratings as a polars DataFrame: user_id, item_id, rating, timestamp (raw ids)."""
        import polars as pl

        d = self.interactions
        cols = {
            "user_id": d.user_ids[d.users],
            "item_id": d.item_ids[d.items],
            "rating": d.ratings,
        }
        if d.timestamps is not None:
            cols["timestamp"] = d.timestamps
        return pl.DataFrame(cols)

    @property
    def items(self) -> pl.DataFrame:
        """Item metadata: item_id, title, genres (a list), one row per catalogue item."""
        import polars as pl

        d = self.interactions
        titles = self.titles
        genres: list[list[str]] = [[] for _ in range(d.n_items)]
        if d.item_genres is not None and d.genre_names:
            rows, cols = np.nonzero(d.item_genres)
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
                genres[r].append(d.genre_names[c])
        return pl.DataFrame(
            {"item_id": d.item_ids, "title": [titles.get(int(i)) for i in d.item_ids], "genres": genres},
            schema={"item_id": pl.Int64, "title": pl.String, "genres": pl.List(pl.String)},
        )

    def matrix(self):
        """users x items scipy CSR of ratings; rows follow `user_ids`, columns `item_ids`."""
        return self.interactions.csr()

    # ----- splits -----------------------------------------------------------------------
    def _part(self, selection: np.ndarray, split: str, part: str, fingerprint: str | None = None) -> Dataset:
        return Dataset(self.interactions.subset(selection, split=split, split_fingerprint=fingerprint), name=self.name,
                       titles=self._titles, processed=self._processed, part=part)

    def split(self, kind: str = "random", *, test: float | None = None, val: float = 0.0, k: int = 5,
              last: int = 1, val_last: int = 0, seed: int = 42):
        """Split the ratings: `train, test = ds.split("random", test=0.2, seed=42)`.

        Kinds as `recsys split`: random, temporal, user (per-user fraction), leave-last (each
        user's last `last` ratings by time) and kfold (returns a list of k (train, test) pairs).
        With a validation part (`val` > 0 or `val_last` > 0) it returns (train, validation, test).
        """
        from recsys_cli.data.splits import compute_split, part_fingerprint

        number, integer = (int, float, np.integer, np.floating), (int, np.integer)
        for label, value, kinds in (("test", test, number), ("val", val, number), ("k", k, integer),
                                    ("last", last, integer), ("val_last", val_last, integer)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
                kind_text = "a number" if float in kinds else "an integer"
                raise UsageError(f"split: {label} must be {kind_text}, got {value!r}")

        d = self.interactions
        if kind in ("temporal", "leave-last") and d.timestamps is None:
            raise UsageError(f"a {kind} split needs timestamps; this dataset has none (from_frame(..., timestamp=COLUMN))")
        if kind == "ml100k":
            raise UsageError("the official ml-100k splits are stored ones: use dataset.named_split('u1')")
        if kind in ("leave-last", "kfold") and (test is not None or val):
            raise UsageError(f"test/val do not apply to a {kind} split (use last/val_last or k)")
        if kind == "leave-last" and (last < 1 or val_last < 0):
            raise UsageError(f"a leave-last split needs last >= 1 (test ratings per user) and val_last >= 0, "
                             f"got last={last}, val_last={val_last}")
        cols = {"user_id": d.users, "timestamp": d.timestamps if d.timestamps is not None else np.zeros(len(d), np.int64)}
        part, _params, _seed = compute_split(kind, cols, test=test, val=val, k=k, last=last, val_last=val_last,
                                             seed=seed)
        # the same contents as a stored split of this dataset get the same identity (so its runs evaluate on it)
        fp = part_fingerprint(part) if self.part is None else None
        if kind == "kfold":
            return [(self._part(part != f, f"{kind}:{f}", "train", fp and f"{fp}:{f}"),
                     self._part(part == f, f"{kind}:{f}", "test", fp and f"{fp}:{f}")) for f in range(k)]
        parts = [self._part(part == 0, kind, "train", fp)]
        if val or val_last:
            parts.append(self._part(part == 1, kind, "validation", fp))
        parts.append(self._part(part == 2, kind, "test", fp))
        return tuple(parts)

    @property
    def meta(self) -> dict[str, Any]:
        """A processed dataset's dataset.json content; for other data, the counts and rating scale."""
        if self._processed is not None and self.part is None:
            return dict(self._processed.meta)
        return {"name": self.name, "n_ratings": len(self), "n_users": self.n_users, "n_items": self.n_items,
                "rating_scale": list(self.rating_scale), "fingerprint": self.fingerprint}

    @property
    def split_names(self) -> list[str]:
        """Names of the splits stored with a processed dataset (`recsys split` makes more)."""
        return self._processed.split_names if self._processed is not None else []

    def named_split(self, name: str):
        """A split stored with the processed dataset: (train, test), or a list of pairs for a k-fold split.

        `name` may be `NAME:K` for one fold of a k-fold split.
        """
        if self._processed is None:
            raise UsageError(f"{self.name!r} is not a processed dataset; use dataset.split(kind=...) instead")
        if not isinstance(name, str):
            raise UsageError(f"a split is named by a string such as 'u1' or 'random', got {name!r}; "
                             f"this dataset has {', '.join(self.split_names) or 'none'}"[:300])
        ds = self._processed
        base, _, fold = name.partition(":")
        info = ds.meta.get("splits", {}).get(base)
        if info is None:
            raise UsageError(f"unknown split {base!r} of {ds.name}; available: {', '.join(ds.split_names) or 'none'}")
        if info.get("kind") == "kfold" and not fold:
            k = int(info.get("params", {}).get("k", 5))
            return [self.named_split(f"{base}:{f}") for f in range(k)]
        return (self._part(ds.split_mask(name, "train"), name, "train"),
                self._part(ds.split_mask(name, "test"), name, "test"))


# ---------------------------------------------------------------------------------------- loading
def load_dataset(name: str, *, data_dir=None) -> Dataset:
    """Open a processed dataset (`recsys preprocess NAME` or `preprocess(...)` made it)."""
    from recsys_cli.data.dataset import load_dataset as load_processed

    if not isinstance(name, str):
        raise UsageError(f"load_dataset takes a processed dataset's name such as 'ml-100k', got {name!r}"[:300])
    ds = load_processed(name, data_dir)
    return Dataset(None, name=name, processed=ds)


def item_metadata(name: str, *, data_dir=None) -> dict[int, dict[str, Any]]:
    """item_id -> {"title", "genres"} from a processed dataset's items table, without reading its ratings.

    DataError when the dataset is not processed (faces that only have a run omit genres then).
    """
    from recsys_cli.data.dataset import load_dataset as load_processed

    table = load_processed(name, data_dir).items_table
    titles = table["title"].to_list() if "title" in table.columns else [None] * table.height
    genres = table["genres"].to_list() if "genres" in table.columns else [None] * table.height
    return {int(i): {"title": t, "genres": [g for g in (gs or []) if g and g != "(no genres listed)"]}
            for i, t, gs in zip(table["item_id"].to_list(), titles, genres, strict=True)}


def download(name: str, *, mirror: str | None = None, from_zip=None, force: bool = False, data_dir=None,
             timeout: float = 30.0, retries: int = 3, progress=None):
    """Fetch a GroupLens release into DATA/raw/NAME (checksum-verified); returns a `DownloadResult`."""
    from recsys_cli.data.download import download as fetch

    return fetch(name, data_dir=data_dir, mirror=mirror, from_zip=from_zip, force=force, timeout=timeout,
                 retries=retries, progress=progress)


def preprocess(source: str, *, name: str | None = None, columns: dict[str, str] | None = None, data_dir=None,
               progress=None) -> Dataset:
    """Turn a downloaded release, a MovieLens folder or a ratings file into a processed dataset; returns it.

    `dataset.meta` is what the preprocessing recorded (counts, scale, genres, default splits).
    """
    from recsys_cli.data.preprocess import preprocess as build

    if not isinstance(source, (str, os.PathLike)):
        raise UsageError(f"preprocess takes a dataset name or a path, got {source!r}"[:300])
    if name is not None and not isinstance(name, str):
        raise UsageError(f"name must be a string such as 'my-ratings', got {name!r}"[:300])
    meta = build(source, name=name, data_dir=data_dir, columns=columns, progress=progress)
    return load_dataset(meta["name"], data_dir=data_dir)


def generate(name: str, *, preset: str | None = None, ratings: int | None = None, users: int | None = None,
             items: int | None = None, factors: int = 8, noise: float = 0.5, seed: int = 42,
             min_per_user: int | None = None, save_truth: bool = False, force: bool = False, data_dir=None,
             progress=None) -> dict[str, Any]:
    """Write synthetic MovieLens-layout data with planted structure to DATA/raw/NAME (then `preprocess(name)`).

    Returns what generate.json records (sizes, the oracle RMSE of the planted model, ...).
    """
    from recsys_cli.data.synthetic import generate as make

    return make(name, preset=preset, n_ratings=ratings, n_users=users, n_items=items, factors=factors, noise=noise,
                seed=seed, min_per_user=min_per_user, save_truth=save_truth, data_dir=data_dir, force=force,
                progress=progress)


def datasets(*, data_dir=None) -> list[dict[str, Any]]:
    """What is downloaded and processed under the data root, one dict per dataset (`recsys info`)."""
    from recsys_cli.data.preprocess import list_datasets

    return list_datasets(data_dir)


def dataset_info(name: str, *, data_dir=None) -> dict[str, Any]:
    """A processed dataset's dataset.json: counts, rating scale and histogram, genres, splits."""
    from recsys_cli.data.preprocess import read_meta

    return read_meta(name, data_dir)


def create_split(dataset: str, kind: str, *, name: str | None = None, test: float | None = None, val: float = 0.0,
                 k: int = 5, last: int = 1, val_last: int = 0, seed: int = 42, force: bool = False,
                 data_dir=None) -> dict[str, dict[str, Any]]:
    """Store a named split with a processed dataset (`recsys split`); returns {name: split info}."""
    from pathlib import Path

    from recsys_cli import settings
    from recsys_cli.data.dataset import load_dataset as load_processed
    from recsys_cli.data.splits import create_split as make

    ds = load_processed(dataset, data_dir)
    raw = None
    if kind == "ml100k":
        source = ds.meta.get("source")
        raw = Path(source) if source and Path(source).is_dir() else settings.raw_dir(dataset, data_dir)
    return make(ds.path, kind, name=name, test=test, val=val, k=k, last=last, val_last=val_last, seed=seed,
                raw_path=raw, force=force)


# ------------------------------------------------------------------------------------- from_frame
def _to_polars(data: Any, columns: list[str]):
    """A polars DataFrame from a polars/pandas frame, a dict of columns, or an iterable of tuples."""
    import polars as pl

    if isinstance(data, pl.LazyFrame):
        return data.collect()
    if isinstance(data, pl.DataFrame):
        return data
    if isinstance(data, pl.Series) or (type(data).__module__.startswith("pandas") and not hasattr(data, "columns")):
        raise UsageError(f"from_frame takes a whole ratings table (DataFrame), got a {type(data).__name__} "
                         f"(one column); pass the DataFrame it came from")
    if type(data).__module__.startswith("pandas"):
        try:
            return pl.from_pandas(data.reset_index(drop=True) if hasattr(data, "reset_index") else data)
        except (TypeError, ValueError) as exc:
            raise DataError(f"cannot read the pandas frame: {exc}") from None
    if isinstance(data, dict):
        try:
            return pl.DataFrame(data, strict=False)
        except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
            raise DataError(f"cannot read the columns: {exc}") from None
    if isinstance(data, (str, bytes)):
        raise UsageError(f"from_frame takes a DataFrame, not a path ({data!r}); read the file with polars or pandas, "
                         "or turn it into a processed dataset with preprocess(path, name=...)"[:300])
    if not isinstance(data, Iterable):
        raise UsageError(f"from_frame takes a polars or pandas DataFrame or an iterable of tuples, got {type(data).__name__}")
    try:
        rows = [tuple(r) for r in data]
    except TypeError:
        raise DataError(f"each row must be a ({', '.join(columns)}) tuple; got a row that is not a sequence") from None
    width = {len(r) for r in rows}
    if len(width) > 1:
        raise DataError(f"rows have different lengths ({', '.join(map(str, sorted(width)))}); expected {len(columns)} values each")
    if rows and len(rows[0]) != len(columns):
        raise DataError(f"rows have {len(rows[0])} values; expected {len(columns)}: {', '.join(columns)}")
    return pl.DataFrame(rows, schema=columns, orient="row", strict=False)


def _id_column(df, column: str, what: str) -> np.ndarray:
    import polars as pl

    s = df[column]
    if s.null_count():
        raise DataError(f"column {column!r} ({what} ids) has {s.null_count():,} missing values")
    if s.dtype.is_integer():
        too_big = s.dtype == pl.UInt64 and bool((s > np.iinfo(np.int64).max).any())
        if too_big:
            raise DataError(f"column {column!r} ({what} ids) has ids above 2**63 - 1 (e.g. {s.max()}); "
                            "ids must fit 64-bit signed integers")
        out = s.cast(pl.Int64).to_numpy()
    elif s.dtype.is_nested() or s.dtype == pl.Boolean:
        raise DataError(f"column {column!r} ({what} ids) must hold integer ids; it holds {s.dtype}")
    else:
        if s.dtype == pl.String:
            s = s.str.strip_chars()
        cast = s.cast(pl.Int64, strict=False)
        bad = cast.is_null() | (s.cast(pl.Float64, strict=False) != cast.cast(pl.Float64)).fill_null(True) \
            if s.dtype.is_float() else cast.is_null()
        if s.dtype == pl.String:  # as id files are read: ASCII digits with an optional minus ('+1', '1_0' are not ids)
            bad = bad | ~s.str.contains(r"^-?[0-9]+$").fill_null(False)
        if bad.any():
            first = s.filter(bad)[0]
            raise DataError(f"column {column!r} ({what} ids) must hold integer ids; found {first!r} "
                            f"({int(bad.sum()):,} such values)")
        out = cast.to_numpy()
    if (out < 0).any():
        raise DataError(f"column {column!r} ({what} ids) has negative ids (e.g. {int(out[out < 0][0])}); "
                        "ids must be >= 0")
    return out.astype(np.int64, copy=False)


def _rating_column(df, column: str | None) -> np.ndarray:
    import polars as pl

    if column is None:
        return np.ones(df.height, np.float32)
    s = df[column]
    if s.dtype.is_nested():
        raise DataError(f"column {column!r} (ratings) must be numeric; it holds {s.dtype}")
    if not s.dtype.is_numeric():
        cast = s.cast(pl.Float64, strict=False)
        bad = cast.is_null() & s.is_not_null()
        if bad.any():
            raise DataError(f"column {column!r} (ratings) must be numeric; found {s.filter(bad)[0]!r}")
        s = cast
    values = s.cast(pl.Float64).to_numpy()
    bad = ~np.isfinite(values)
    if bad.any():
        raise DataError(f"column {column!r} (ratings) has {int(bad.sum()):,} missing, NaN or infinite values "
                        f"(first at row {int(np.flatnonzero(bad)[0])})")
    return values.astype(np.float32)


def _timestamp_column(df, column: str | None) -> np.ndarray | None:
    import polars as pl

    if column is None:
        return None
    s = df[column]
    if s.dtype == pl.Date:
        s = s.cast(pl.Datetime("ms"))
    if isinstance(s.dtype, pl.Datetime):
        s = s.dt.epoch("s")
    elif not s.dtype.is_integer():
        cast = s.cast(pl.Int64, strict=False)
        if (cast.is_null() & s.is_not_null()).any():
            raise DataError(f"column {column!r} (timestamps) must hold integer seconds or datetimes")
        s = cast
    if s.null_count():
        raise DataError(f"column {column!r} (timestamps) has {s.null_count():,} missing values")
    return s.cast(pl.Int64).to_numpy().astype(np.int64, copy=False)


def _resolve_duplicates(users, items, ratings, timestamps, policy: str, user_col: str, item_col: str):
    # dense codes first: raw 64-bit ids multiplied together would overflow and merge different pairs
    _, u_code = np.unique(users, return_inverse=True)
    item_vocab, i_code = np.unique(items, return_inverse=True)
    key = u_code.reshape(-1).astype(np.int64) * np.int64(len(item_vocab)) + i_code.reshape(-1)
    order = np.argsort(key, kind="stable")
    ks = key[order]
    dup = np.flatnonzero(ks[1:] == ks[:-1])
    if not len(dup):
        return users, items, ratings, timestamps, 0
    if policy == "error":
        row = order[dup[0] + 1]
        raise DataError(f"{len(dup):,} duplicated ({user_col}, {item_col}) pairs, e.g. ({int(users[row])}, "
                        f"{int(items[row])}); pass duplicates='last' or 'mean' to resolve them")
    first = np.concatenate([[True], ks[1:] != ks[:-1]])
    groups = np.cumsum(first) - 1
    if policy == "mean":
        sums = np.bincount(groups, weights=ratings[order].astype(np.float64))
        counts = np.bincount(groups)
        keep = order[first]
        new_ratings = (sums / counts).astype(np.float32)
        ts = None
        if timestamps is not None:
            ts = np.zeros(len(keep), np.int64)
            np.maximum.at(ts, groups, timestamps[order])
        return users[keep], items[keep], new_ratings, ts, len(dup)
    # last: the latest timestamp, then the later row, wins
    if timestamps is not None:
        order = np.lexsort((np.arange(len(key)), timestamps, key))
    last = np.concatenate([ks[1:] != ks[:-1], [True]])
    keep = np.sort(order[last])
    return users[keep], items[keep], ratings[keep], None if timestamps is None else timestamps[keep], len(dup)


def _fingerprint(users, items, ratings, timestamps) -> str:
    digest = hashlib.sha256()
    for arr, dtype in ((users, "<i8"), (items, "<i8"), (ratings, "<f4"), (timestamps, "<i8")):
        if arr is not None:
            digest.update(memoryview(np.ascontiguousarray(arr, dtype=dtype)).cast("B"))
    return "sha256:" + digest.hexdigest()


def _item_metadata(items, item_ids: np.ndarray) -> tuple[dict[int, str], np.ndarray | None, tuple[str, ...]]:
    """Titles and a genre matrix aligned to item_ids from an items frame (item_id, title, genres)."""
    import polars as pl

    frame = _to_polars(items, ["item_id", "title", "genres"])
    if "item_id" not in frame.columns:
        raise DataError(f"the items frame needs an item_id column (columns: {', '.join(frame.columns)})")
    ids = _id_column(frame, "item_id", "item")
    titles = {}
    if "title" in frame.columns:
        titles = {int(i): t for i, t in zip(ids, frame["title"].cast(pl.String).to_list(), strict=True) if t is not None}
    if "genres" not in frame.columns:
        return titles, None, ()
    g = frame["genres"]
    if g.dtype == pl.String:
        g = g.str.split("|")
    elif not (isinstance(g.dtype, pl.List) and g.dtype.inner in (pl.String, pl.Null)) and g.null_count() < len(g):
        raise DataError(f"the items frame's genres must be lists of names or 'A|B' text; it holds {g.dtype}")
    lists = [[x for x in (v or []) if x and x != "(no genres listed)"] for v in g.to_list()]
    names = tuple(sorted({x for v in lists for x in v}))
    mat = np.zeros((len(item_ids), len(names)), np.float32)
    index = {n: k for k, n in enumerate(names)}
    rows = lookup(item_ids, ids)
    for r, v in zip(rows.tolist(), lists, strict=True):
        if r >= 0:
            for x in v:
                mat[r, index[x]] = 1.0
    return titles, mat, names


def from_frame(data: Any, *, user: str = "user_id", item: str = "item_id", rating: str | None = "rating",
               timestamp: str | None = None, items: Any = None, name: str = "frame",
               rating_scale: tuple[float, float] | None = None, duplicates: str = "error") -> Dataset:
    """A `Dataset` from a pandas or polars DataFrame, a dict of columns, or an iterable of tuples.

    user/item/rating/timestamp name the columns (tuples are read in that order). rating=None
    means implicit feedback (every pair counts 1.0). Ids must be integers >= 0; ratings finite
    numbers; timestamps integer seconds or datetimes. Duplicated (user, item) pairs are an
    error unless duplicates='last' (latest timestamp, then last row) or 'mean'. `items` is an
    optional frame of item_id, title, genres (a list or 'A|B' text) for titles and genre models.
    """
    if duplicates not in DUPLICATE_POLICIES:
        raise UsageError(f"duplicates must be one of {', '.join(DUPLICATE_POLICIES)}, got {duplicates!r}")
    for label, column in (("user", user), ("item", item), ("rating", rating), ("timestamp", timestamp)):
        if not isinstance(column, str) and (column is not None or label in ("user", "item")):
            raise UsageError(f"{label} must name a column of the frame (a string), got {column!r}"[:300])
    named = [c for c in (user, item, rating, timestamp) if c is not None]
    if len(set(named)) != len(named):
        raise UsageError(f"user, item, rating and timestamp must be different columns, got {', '.join(named)}")
    df = _to_polars(data, named)
    missing = [c for c in named if c not in df.columns]
    if missing:
        raise DataError(f"column {missing[0]!r} is not in the frame (columns: {', '.join(df.columns) or 'none'})")
    if df.height == 0:
        raise DataError("the frame has no rows: nothing to learn from")
    users = _id_column(df, user, "user")
    items_raw = _id_column(df, item, "item")
    values = _rating_column(df, rating)
    ts = _timestamp_column(df, timestamp)
    users, items_raw, values, ts, n_dup = _resolve_duplicates(users, items_raw, values, ts, duplicates, user, item)
    if rating_scale is None:
        rating_scale = (float(values.min()), float(values.max()))
    else:
        try:
            lo, hi = (float(x) for x in rating_scale)
        except (TypeError, ValueError):
            raise UsageError(f"rating_scale must be (low, high), two numbers, got {rating_scale!r}") from None
        if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
            raise UsageError(f"rating_scale must be (low, high) with low <= high, got {rating_scale!r}")
        outside = (values < lo) | (values > hi)
        if outside.any():
            raise DataError(f"{int(outside.sum()):,} ratings lie outside rating_scale {lo:g}-{hi:g} "
                            f"(e.g. {float(values[outside][0]):g})")
        rating_scale = (lo, hi)
    user_ids = np.unique(users)
    item_ids = np.unique(items_raw)
    titles: dict[int, str] = {}
    genres, genre_names = None, ()
    if items is not None:
        meta = _to_polars(items, ["item_id", "title", "genres"])
        if "item_id" not in meta.columns:
            raise DataError(f"the items frame needs an item_id column (columns: {', '.join(meta.columns)})")
        meta_ids = _id_column(meta, "item_id", "item")
        item_ids = np.union1d(item_ids, meta_ids)
        titles, genres, genre_names = _item_metadata(items, item_ids)
    inter = Interactions(
        users=lookup(user_ids, users), items=lookup(item_ids, items_raw), ratings=values,
        user_ids=user_ids, item_ids=item_ids, timestamps=ts, rating_scale=rating_scale,
        item_genres=genres, genre_names=genre_names, dataset=name,
        fingerprint=_fingerprint(users, items_raw, values, ts),
    )
    ds = Dataset(inter, name=name, titles=titles)
    ds.duplicates_resolved = n_dup
    return ds


def as_dataset(data: Any, **frame_options: Any) -> Dataset:
    """A Dataset from whatever the API was given: a Dataset, an Interactions, a frame or tuples."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (tuple, list)) and data and all(
            isinstance(x, Dataset) or (isinstance(x, tuple) and all(isinstance(y, Dataset) for y in x)) for x in data):
        raise UsageError(f"got a {type(data).__name__} of {len(data)} split parts where one Dataset is expected; "
                         "unpack the split first (train, test = data.split(...)) and pass one part")
    if isinstance(data, Interactions):
        return Dataset(data, name=data.dataset or "data")
    if isinstance(data, str):  # a processed dataset's name
        return load_dataset(data)
    if data is None:
        raise UsageError("give the ratings: a Dataset, a processed dataset's name or a DataFrame")
    return from_frame(data, **frame_options)
