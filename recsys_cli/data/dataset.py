"""Load a processed dataset (see LAYOUT.md) into index space for the models.

`load_dataset(name)` reads `dataset.json`; `Dataset.interactions(split, part)` gives an
`Interactions` over the *whole dataset's* id vocabularies, so every split of a dataset
shares one user/item indexing and a user or item with no training ratings is simply a
row with zero entries (the models treat it as unknown and fall back).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from recsys_cli.errors import DataError
from recsys_cli.settings import processed_dir

SCHEMA_VERSION = 1
PART_NAMES = {"train": 0, "validation": 1, "val": 1, "test": 2}


@dataclass(frozen=True, eq=False)
class Interactions:
    """Ratings in index space plus the vocabularies that map indices to raw ids."""

    users: np.ndarray  # int32 index into user_ids
    items: np.ndarray  # int32 index into item_ids
    ratings: np.ndarray  # float32
    user_ids: np.ndarray  # int64 raw ids, ascending; index -> raw id
    item_ids: np.ndarray  # int64 raw ids, ascending
    timestamps: np.ndarray | None = None  # int64 seconds
    rating_scale: tuple[float, float] = (0.5, 5.0)
    item_genres: np.ndarray | None = None  # float32 (n_items, n_genres) 0/1
    genre_names: tuple[str, ...] = ()
    dataset: str = ""
    fingerprint: str = ""
    split: str | None = None
    split_fingerprint: str | None = None  # part_fingerprint of the split's codes (+ ":K" for a fold), if known
    tags_path: str | None = None  # the dataset's tags.parquet; read only by item_tags()
    _cache: dict = field(default_factory=dict, repr=False, compare=False)
    # (users, items, selection) of each subset step that led here, kept only when there are
    # tags: item_tags() hides tags on the (user, item) pairs those steps left out.
    _left_out: tuple = field(default=(), repr=False, compare=False)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.ratings)

    @property
    def global_mean(self) -> float:
        return float(self.ratings.mean(dtype=np.float64)) if len(self.ratings) else 0.0

    def csr(self):
        """users x items scipy CSR of ratings (rows sorted by item index), cached."""
        if "csr" not in self._cache:
            from recsys_cli.data.csr import build_csr

            self._cache["csr"] = build_csr(self.users, self.items, self.ratings, (self.n_users, self.n_items))
        return self._cache["csr"]

    def csc(self):
        """items x users CSR (i.e. the transpose), cached."""
        if "csc" not in self._cache:
            m = self.csr().T.tocsr()
            m.sort_indices()
            self._cache["csc"] = m
        return self._cache["csc"]

    def item_tags(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Tag applications on catalogue items: (item index int32, raw user id int64, tag str); None without tags.

        A tag a user put on an item whose rating is held out of this set (the test part of its
        split, a CV fold) is hidden: it would tell the model which items that user rated.
        `hidden_tags` in the cache counts them.
        """
        if self.tags_path is None:
            return None
        if "tags" not in self._cache:  # read on first use only, so models without tags never pay for it
            import pyarrow.parquet as pq

            try:
                table = pq.read_table(self.tags_path, columns=["user_id", "item_id", "tag"])
            except (OSError, ValueError) as exc:
                raise DataError(f"cannot read tags {self.tags_path}: {exc}") from exc
            items = lookup(self.item_ids, table.column("item_id").to_numpy())
            users = table.column("user_id").to_numpy().astype(np.int64)
            ok = items >= 0
            hidden = self._held_out(lookup(self.user_ids, users), items) & ok
            keep = ok & ~hidden
            tags = table.column("tag").to_numpy(zero_copy_only=False)
            self._cache["tags"] = (items[keep], users[keep], tags[keep])
            self._cache["hidden_tags"] = int(hidden.sum())
        return self._cache["tags"]

    @property
    def hidden_tags(self) -> int:
        """How many tag applications `item_tags` hid (tags on held-out ratings); 0 before it is called."""
        return self._cache.get("hidden_tags", 0)

    def _held_out(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Which (user index, item index) pairs are ratings the subset steps to this set left out."""
        out = np.zeros(len(users), dtype=bool)
        if not self._left_out:
            return out
        n = np.int64(self.n_items)
        parts = []
        for u, i, selection in self._left_out:
            dropped = np.ones(len(u), dtype=bool)
            dropped[selection] = False  # a boolean mask or an index array alike
            parts.append(u[dropped].astype(np.int64) * n + i[dropped])
        known = (users >= 0) & (items >= 0)
        out[known] = lookup(np.unique(np.concatenate(parts)), users[known].astype(np.int64) * n + items[known]) >= 0
        return out

    def user_counts(self) -> np.ndarray:
        return np.bincount(self.users, minlength=self.n_users).astype(np.int32)

    def item_counts(self) -> np.ndarray:
        return np.bincount(self.items, minlength=self.n_items).astype(np.int32)

    def subset(self, mask_or_index: np.ndarray, split: str | None = None,
               split_fingerprint: str | None = None) -> Interactions:
        """Rows selected by a boolean mask or index array; vocabularies unchanged. Naming a `split` sets a new
        split identity (`split_fingerprint`, unknown if not given); otherwise the rows keep this one's."""
        ts = self.timestamps[mask_or_index] if self.timestamps is not None else None
        left_out = self._left_out
        if self.tags_path is not None:  # remember what was left out, for item_tags (no copies made here)
            left_out = (*left_out, (self.users, self.items, np.asarray(mask_or_index)))
        return replace(
            self,
            users=self.users[mask_or_index],
            items=self.items[mask_or_index],
            ratings=self.ratings[mask_or_index],
            timestamps=ts,
            split=split if split is not None else self.split,
            split_fingerprint=split_fingerprint if split is not None else self.split_fingerprint,
            _cache={},
            _left_out=left_out,
        )

    def on_items(self, item_ids: np.ndarray) -> Interactions:
        """These ratings re-indexed onto another item vocabulary (a model's); ratings of items it lacks are dropped."""
        if len(self.item_ids) == len(item_ids) and np.array_equal(self.item_ids, item_ids):
            return self
        idx = lookup(item_ids, self.item_ids[self.items])
        keep = idx >= 0
        return replace(self, users=self.users[keep], items=idx[keep], ratings=self.ratings[keep],
                       timestamps=None if self.timestamps is None else self.timestamps[keep], item_ids=item_ids,
                       item_genres=None, genre_names=(), _cache={}, _left_out=())

    def user_index(self, raw_ids) -> np.ndarray:
        """Raw user ids -> indices (-1 for unknown)."""
        return lookup(self.user_ids, raw_ids)

    def item_index(self, raw_ids) -> np.ndarray:
        return lookup(self.item_ids, raw_ids)


def lookup(vocab: np.ndarray, raw_ids) -> np.ndarray:
    """Map raw ids to positions in a sorted vocabulary; -1 where absent."""
    raw = np.asarray(raw_ids, dtype=np.int64).reshape(-1)
    if len(vocab) == 0:
        return np.full(raw.shape, -1, dtype=np.int32)
    pos = np.searchsorted(vocab, raw)
    pos_c = np.minimum(pos, len(vocab) - 1)
    found = vocab[pos_c] == raw
    return np.where(found, pos_c, -1).astype(np.int32)


class Dataset:
    """A processed dataset folder: metadata, tables and splits."""

    def __init__(self, name: str, path: Path, meta: dict) -> None:
        self.name = name
        self.path = path
        self.meta = meta
        self._split_codes: dict[str, tuple[np.ndarray, dict]] = {}  # train and test masks share one read
        self._split_fingerprints: dict[str, str] = {}  # base split name -> part_fingerprint of its codes

    @property
    def fingerprint(self) -> str:
        return self.meta.get("fingerprint", "")

    @property
    def rating_scale(self) -> tuple[float, float]:
        lo, hi = self.meta.get("rating_scale", [0.5, 5.0])
        return float(lo), float(hi)

    @property
    def split_names(self) -> list[str]:
        return sorted(self.meta.get("splits", {}))

    @cached_property
    def _ratings_arrays(self) -> dict[str, np.ndarray]:
        import pyarrow.parquet as pq

        table = pq.read_table(self.path / "ratings.parquet", columns=["user_id", "item_id", "rating", "timestamp"])
        return {c: table.column(c).to_numpy() for c in table.column_names}

    @cached_property
    def items_table(self):
        import polars as pl

        return pl.read_parquet(self.path / "items.parquet")

    @cached_property
    def vocabularies(self) -> tuple[np.ndarray, np.ndarray]:
        """(user_ids, item_ids): every user in ratings, every item in items.parquet or ratings."""
        arr = self._ratings_arrays
        user_ids = np.unique(arr["user_id"]).astype(np.int64)
        item_ids = np.union1d(
            np.unique(arr["item_id"]), self.items_table["item_id"].to_numpy()
        ).astype(np.int64)
        return user_ids, item_ids

    @cached_property
    def genres(self) -> tuple[np.ndarray, tuple[str, ...]]:
        """Dense (n_items, n_genres) 0/1 float32 matrix aligned to the item vocabulary."""
        import polars as pl

        _, item_ids = self.vocabularies
        items = self.items_table.select("item_id", "genres").explode("genres").drop_nulls("genres")
        names = tuple(sorted(items["genres"].unique().to_list()))
        mat = np.zeros((len(item_ids), len(names)), dtype=np.float32)
        if names:
            g_index = {g: k for k, g in enumerate(names)}
            rows = lookup(item_ids, items["item_id"].to_numpy())
            cols = items["genres"].replace_strict(g_index, return_dtype=pl.Int32).to_numpy()
            ok = rows >= 0
            mat[rows[ok], cols[ok]] = 1.0
        return mat, names

    def interactions(self, split: str | None = None, part: str = "train") -> Interactions:
        """All ratings (split=None) or one part of a named split.

        `split` is a split name, or `NAME:K` for fold K of a k-fold split (part "train" is
        every other fold, "test" is fold K).
        """
        arr = self._ratings_arrays
        user_ids, item_ids = self.vocabularies
        genres, genre_names = self.genres
        full = Interactions(
            users=lookup(user_ids, arr["user_id"]),
            items=lookup(item_ids, arr["item_id"]),
            ratings=arr["rating"].astype(np.float32, copy=False),
            timestamps=arr["timestamp"].astype(np.int64, copy=False),
            user_ids=user_ids,
            item_ids=item_ids,
            rating_scale=self.rating_scale,
            item_genres=genres,
            genre_names=genre_names,
            dataset=self.name,
            fingerprint=self.fingerprint,
            tags_path=str(self.path / "tags.parquet") if self.meta.get("has_tags") else None,
        )
        if split is None:
            return full
        return full.subset(self.split_mask(split, part), split=split, split_fingerprint=self.split_fingerprint(split))

    def split_fingerprint(self, split: str) -> str:
        """The identity of split `split` as stored now (see splits.part_fingerprint)."""
        from recsys_cli.data.splits import part_fingerprint

        base, _, fold = split.partition(":")
        self.split_mask(split)  # loads and checks the codes
        if base not in self._split_fingerprints:
            self._split_fingerprints[base] = part_fingerprint(self._split_codes[base][0])
        return self._split_fingerprints[base] + (f":{fold}" if fold else "")

    def check_run_split(self, run: str, manifest: dict) -> None:
        """ArtifactError when the run was trained on other contents of its split than the ones stored now."""
        split, recorded = manifest.get("split"), manifest.get("split_fingerprint")
        if split and recorded and recorded != self.split_fingerprint(split):
            from recsys_cli.errors import ArtifactError

            raise ArtifactError(
                f"run {run!r} was trained on a different split {split!r} of {self.name!r} than the one stored now "
                "(replaced by `recsys split --force`, or made in Python with ds.split()); its test part would "
                "hold training ratings: retrain it on this split"
            )

    def split_mask(self, split: str, part: str = "train") -> np.ndarray:
        from recsys_cli.data.splits import load_split

        base, _, fold = split.partition(":")
        if base not in self._split_codes:
            self._split_codes[base] = load_split(self.path, base)
        codes, info = self._split_codes[base]
        n = len(self._ratings_arrays["rating"])
        if len(codes) != n:
            raise DataError(f"split {base!r} does not match the ratings ({len(codes)} != {n} rows); re-create it")
        if info.get("kind") == "kfold":
            if not fold:
                raise DataError(f"split {base!r} is k-fold: name a fold as {base}:0 .. {base}:{info['params'].get('k', 5) - 1}")
            n_folds = int(info.get("params", {}).get("k", 5))
            if not fold.isdigit() or not 0 <= int(fold) < n_folds:
                raise DataError(f"split {base!r} has folds 0 .. {n_folds - 1}; got fold {fold!r}")
            k = int(fold)
            return codes == k if part == "test" else codes != k
        if fold:
            raise DataError(f"split {base!r} is not k-fold; use it without ':{fold}'")
        if part not in PART_NAMES:
            raise DataError(f"unknown split part {part!r}; use train, validation or test")
        if part == "train":
            return codes == 0
        return codes == PART_NAMES[part]

    def titles(self) -> dict[int, str]:
        df = self.items_table
        return dict(zip(df["item_id"].to_list(), df["title"].to_list(), strict=False))


def load_dataset(name: str, data_dir=None) -> Dataset:
    """Open a processed dataset; DataError with the command to run if it is missing."""
    path = processed_dir(name, data_dir)
    meta_path = path / "dataset.json"
    if not meta_path.exists():
        from recsys_cli.data.preprocess import recover_processed

        recover_processed(name, data_dir)
    if not meta_path.exists():
        from recsys_cli.data.preprocess import not_preprocessed

        raise not_preprocessed(name, data_dir)
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {meta_path}: {exc}") from exc
    return Dataset(name, path, check_meta(meta, meta_path, name))


_META_TYPES = {  # key: (JSON type, required); what `recsys info` and the loaders read from dataset.json
    "name": (str, True), "n_ratings": (int, True), "n_users": (int, True), "n_items": (int, True),
    "splits": (dict, True), "n_rated_items": (int, False), "duplicates_resolved": (int, False),
    "n_tags": (int, False), "density": ((int, float), False), "rating_step": ((int, float), False),
    "rating_scale": (list, False), "rating_histogram": (dict, False), "genres": (dict, False),
}


def check_meta(meta: object, meta_path: Path, name: str) -> dict:
    """dataset.json's content, or DataError (exit 3) naming the file when it is not a JSON object of the
    current schema whose counts, splits, scale and histograms have their JSON types."""
    redo = f"re-run `recsys preprocess {name}`"
    if not isinstance(meta, dict):
        raise DataError(f"{meta_path} should hold a JSON object, got {type(meta).__name__}; {redo}")
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise DataError(
            f"{meta_path} has schema version {meta.get('schema_version')}, expected {SCHEMA_VERSION}; {redo}"
        )
    for key, (kind, required) in _META_TYPES.items():
        value = meta.get(key)
        if value is None and not required:
            continue
        if value is None or isinstance(value, bool) or not isinstance(value, kind):
            expected = {str: "a string", int: "an integer", dict: "an object", list: "a list"}.get(kind, "a number")
            raise DataError(f"{meta_path}: {key!r} is {'missing' if value is None else repr(value)[:40]}, "
                            f"expected {expected}; {redo}")
    scale = meta.get("rating_scale")
    if scale is not None and not (len(scale) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                            for v in scale)):
        raise DataError(f"{meta_path}: 'rating_scale' is {scale!r:.40}, expected [low, high]; {redo}")
    return meta
