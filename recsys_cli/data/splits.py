"""Train/validation/test splits of a processed dataset, stored as one int8 column aligned to its ratings.

Holdout kinds give a `part` per rating (0 train, 1 validation, 2 test); "kfold" gives the fold
number 0..K-1. The split functions are pure and vectorised (sorts, no per-rating or per-user
Python loops) so they stay fast at 32M ratings; seeded ones use Generator(PCG64(seed)).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from recsys_cli.errors import DataError, UsageError
from recsys_cli.swap import temp_name, write_json

TRAIN, VALIDATION, TEST = 0, 1, 2
KINDS = ("random", "temporal", "user", "leave-last", "kfold", "ml100k")
ML100K_SPLITS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
DEFAULT_SEED = 42
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _rng(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed))


def _check_fractions(test: float, val: float) -> None:
    if not 0.0 < test < 1.0:
        raise UsageError(f"test fraction must be between 0 and 1 (exclusive), got {test}")
    if not 0.0 <= val < 1.0 or test + val >= 1.0:
        raise UsageError(f"validation fraction must be >= 0 with test + validation < 1, got {val}")


def _shuffled_labels(sizes: list[int], rng: np.random.Generator) -> np.ndarray:
    """int8 labels 0..len(sizes)-1 repeated sizes[j] times, shuffled (cheaper than a scatter by permutation)."""
    labels = np.repeat(np.arange(len(sizes), dtype=np.int8), sizes)
    rng.shuffle(labels)
    return labels


def _assign_tail(order: np.ndarray, n_test: int, n_val: int) -> np.ndarray:
    """Parts for rows in `order`: the last n_test are test, the n_val before them validation."""
    n = len(order)
    part = np.zeros(n, dtype=np.int8)
    part[order[n - n_test - n_val : n - n_test]] = VALIDATION
    part[order[n - n_test :]] = TEST
    return part


def random_holdout(n: int, *, test: float = 0.2, val: float = 0.0, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Shuffle the n ratings; round(n*test) go to test and round(n*val) to validation."""
    _check_fractions(test, val)
    n_test, n_val = int(round(n * test)), int(round(n * val))
    return _shuffled_labels([n - n_test - n_val, n_val, n_test], _rng(seed))


def temporal_holdout(timestamps: np.ndarray, *, test: float = 0.2, val: float = 0.0) -> np.ndarray:
    """Global time split: the latest round(n*test) ratings are test, the ones before them validation.

    Ties in time are broken by row order, so the result is deterministic.
    """
    _check_fractions(test, val)
    ts = np.asarray(timestamps)
    order = np.argsort(ts, kind="stable")
    return _assign_tail(order, int(round(len(ts) * test)), int(round(len(ts) * val)))


def _index_dtype(n: int) -> type:
    return np.int32 if n < 2**31 - 1 else np.int64


def _groups(users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(group index per row, rows per group); fast path when users are already sorted."""
    users = np.asarray(users)
    n = len(users)
    if n == 0:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64)
    if np.all(users[1:] >= users[:-1]):
        inv = np.empty(n, dtype=_index_dtype(n))
        inv[0] = 0
        np.cumsum(users[1:] != users[:-1], out=inv[1:])
    else:
        _, inv = np.unique(users, return_inverse=True)
        inv = inv.reshape(-1).astype(_index_dtype(n))
    return inv, np.bincount(inv)


def _per_group_tail(order: np.ndarray, inv: np.ndarray, counts: np.ndarray,
                    n_test: np.ndarray, n_val: np.ndarray) -> np.ndarray:
    """Given rows ordered group by group, mark each group's last n_test as test, n_val before as val."""
    n = len(order)
    dt = _index_dtype(n)
    g = inv[order]
    # position of each ordered row counted from its group's end (0 = last row of the group)
    from_end = (np.cumsum(counts) - 1).astype(dt)[g]
    from_end -= np.arange(n, dtype=dt)
    part_sorted = np.zeros(n, dtype=np.int8)
    part_sorted[from_end < (n_test + n_val).astype(dt)[g]] = VALIDATION
    part_sorted[from_end < n_test.astype(dt)[g]] = TEST
    del g, from_end
    part = np.empty(n, dtype=np.int8)
    part[order] = part_sorted
    return part


def user_fraction(
    users: np.ndarray, *, test: float = 0.25, val: float = 0.0, seed: int = DEFAULT_SEED, min_train: int = 1
) -> np.ndarray:
    """Per-user random split: each user's test count is round(n_u*test), clipped so a user with more
    than `min_train` ratings keeps `min_train` in train and gets at least one test rating."""
    _check_fractions(test, val)
    if min_train < 1:
        raise UsageError(f"min_train must be >= 1, got {min_train}")
    inv, counts = _groups(users)
    n = len(inv)
    room = np.maximum(counts - min_train, 0)
    n_test = np.minimum(np.maximum(np.rint(counts * test).astype(np.int64), 1), room)
    n_val = np.minimum(np.rint(counts * val).astype(np.int64), room - n_test)
    # Unique keys (group, random permutation rank) give a random order inside each group
    # that does not depend on the sort algorithm.
    key = _rng(seed).permutation(n).astype(np.int64)
    key += inv.astype(np.int64) * max(n, 1)
    order = np.argsort(key)
    del key
    return _per_group_tail(order, inv, counts, n_test, n_val)


def user_leave_last(users: np.ndarray, timestamps: np.ndarray, *, k: int = 1, val_k: int = 0) -> np.ndarray:
    """Per user, the last k ratings in time are test and the val_k before them validation.

    Every user keeps at least one training rating (a user with one rating is all train);
    ties in time are broken by row order.
    """
    if k < 1 or val_k < 0:
        raise UsageError(f"leave-last needs k >= 1 and val_k >= 0, got k={k}, val_k={val_k}")
    inv, counts = _groups(users)
    ts = np.asarray(timestamps)
    n = len(inv)
    in_order = n < 2 or bool(np.all((inv[1:] > inv[:-1]) | ((inv[1:] == inv[:-1]) & (ts[1:] >= ts[:-1]))))
    order = np.arange(n) if in_order else np.lexsort((ts, inv))
    room = np.maximum(counts - 1, 0)
    n_test = np.minimum(k, room)
    n_val = np.minimum(val_k, room - n_test)
    return _per_group_tail(order, inv, counts, n_test, n_val)


def user_kfold(users: np.ndarray, *, k: int = 5, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Per-user k-fold: each user's ratings are dealt in a random order into the k folds, starting at a
    random fold, so every user has round(n_u/k) (+-1) ratings in each fold and the folds' sizes differ by
    at most the number of users. A user with a single rating is in no test fold (code -1: always train),
    as `user_fraction` keeps one training rating."""
    if k < 2:
        raise UsageError(f"k-fold needs k >= 2, got k={k}")
    if k > 127:
        raise UsageError(f"k-fold supports at most 127 folds, got k={k}")
    inv, counts = _groups(users)
    n = len(inv)
    if n == 0:
        return np.zeros(0, dtype=np.int8)
    rng = _rng(seed)
    key = rng.permutation(n).astype(np.int64)
    key += inv.astype(np.int64) * n
    order = np.argsort(key)
    del key
    dt = _index_dtype(n)
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    g = inv[order]
    position = np.arange(n, dtype=dt) - starts.astype(dt)[g]  # rank of the row inside its user's shuffled list
    offset = rng.integers(0, k, size=len(counts))
    codes_sorted = ((position + offset[g]) % k).astype(np.int8)
    codes_sorted[counts[g] < 2] = -1
    codes = np.empty(n, dtype=np.int8)
    codes[order] = codes_sorted
    return codes


def kfold(n: int, *, k: int = 5, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Shuffle the n ratings and cut them into k folds whose sizes differ by at most one."""
    if k < 2 or k > max(n, 2):
        raise UsageError(f"k-fold needs 2 <= k <= number of ratings, got k={k}")
    if k > 127:
        raise UsageError(f"k-fold supports at most 127 folds, got k={k}")
    return _shuffled_labels([n // k + (j < n % k) for j in range(k)], _rng(seed))


def _find_raw_file(raw_path: Path, filename: str) -> Path | None:
    """`filename` directly in the raw folder or one folder below it (an unpacked zip)."""
    direct = raw_path / filename
    if direct.is_file():
        return direct
    nested = sorted(raw_path.glob(f"*/{filename}"))
    return nested[0] if nested else None


def _pair_keys(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    return (np.asarray(users, dtype=np.int64) << 32) | np.asarray(items, dtype=np.int64)


def _read_pairs(path: Path) -> np.ndarray:
    try:
        table = np.loadtxt(path, dtype=np.int64, usecols=(0, 1), ndmin=2)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    return np.unique(_pair_keys(table[:, 0], table[:, 1]))


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[pos] == keys


def ml100k_official(raw_path: Path, name: str, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """ml-100k's own split `name` (u1..u5, ua, ub): rows in NAME.test -> 2, rows in NAME.base -> 0."""
    if name not in ML100K_SPLITS:
        raise UsageError(f"unknown ml-100k split {name!r}; choose one of {', '.join(ML100K_SPLITS)}")
    files = {ext: _find_raw_file(Path(raw_path), f"{name}.{ext}") for ext in ("base", "test")}
    missing = [f"{name}.{ext}" for ext, path in files.items() if path is None]
    if missing:
        raise DataError(f"{', '.join(missing)} not found in {raw_path}; the official splits ship with ml-100k only")
    keys = _pair_keys(users, items)
    in_test = _contains(_read_pairs(files["test"]), keys)
    in_base = _contains(_read_pairs(files["base"]), keys)
    unmatched = int(np.count_nonzero(~(in_test | in_base)))
    if unmatched:
        raise DataError(f"{unmatched} ratings are in neither {name}.base nor {name}.test; is this ml-100k?")
    return np.where(in_test, TEST, TRAIN).astype(np.int8)


def part_fingerprint(codes: np.ndarray) -> str:
    """Identity of a split's contents (which part each rating is in): a run records it, so evaluating the run
    on a split replaced since (`split --force`) or on a split of the same name made in Python is caught."""
    import hashlib

    return "sha256:" + hashlib.sha256(np.ascontiguousarray(codes, dtype=np.int8).tobytes()).hexdigest()[:16]


def check_name(name: str) -> str:
    """A split name usable as a file name and without ':' (which selects a fold)."""
    if not _NAME_RE.match(name or ""):
        raise UsageError(f"bad split name {name!r}: use letters, digits, '.', '_' or '-'")
    return name


def split_counts(part: np.ndarray, kind: str, k: int | None = None) -> dict[str, Any]:
    """{"train", "validation", "test"} counts, or {"fold_sizes": [...]} for k-fold."""
    if kind == "kfold":
        return {"fold_sizes": np.bincount(part, minlength=k or 0).tolist()}
    c = np.bincount(part, minlength=3)
    return {"train": int(c[TRAIN]), "validation": int(c[VALIDATION]), "test": int(c[TEST])}


def _write_part(processed_path: Path, name: str, part: np.ndarray, file: str | None = None) -> str:
    """Write the part column to `file` (default splits/NAME.parquet) through a temporary file; returns `file`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    file = file or f"splits/{name}.parquet"
    target = Path(processed_path) / file
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(target)
    try:
        pq.write_table(pa.table({"part": pa.array(np.asarray(part, dtype=np.int8))}), tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return file


def _info(kind: str, params: dict, seed: int | None, part: np.ndarray, file: str) -> dict[str, Any]:
    return {"kind": kind, "params": params, "seed": seed,
            "counts": split_counts(part, kind, params.get("k")), "file": file}


def _check_writable(processed_path: Path) -> None:
    """Exit 7 when the dataset's folder (dataset.json) or its splits/ cannot be written; called before the work."""
    from recsys_cli.swap import check_writable

    check_writable(processed_path, "data folder")
    check_writable(processed_path / "splits", "data folder")


def write_split(processed_path: Path, name: str, part: np.ndarray, kind: str,
                params: dict, seed: int | None) -> dict[str, Any]:
    """Write splits/NAME.parquet and record it in dataset.json["splits"]; returns its info.

    Replacing dataset.json is the commit. A new split is written to NAME.parquet, then committed.
    A split that exists is not overwritten in place (a kill between the two files would pair the
    new column with the old record): the new column goes to NAME~1.parquet and is committed, then
    NAME.parquet becomes a hard link to it and is committed, and NAME~1.parquet is deleted. So a
    kill or a full disk at any step leaves the split as it was or whole, and the next write deletes
    what a killed one left (its hidden temporary files, an unused NAME~1.parquet).
    """
    from recsys_cli.swap import folder_lock

    check_name(name)
    processed_path = Path(processed_path)
    _check_writable(processed_path)
    # dataset.json is read, changed and replaced: two splits written at once (two processes) must not both
    # start from the same version, or the second replace drops the first one's record
    with folder_lock(processed_path):
        return _write_split_locked(processed_path, name, part, kind, params, seed)


def _write_split_locked(processed_path: Path, name: str, part: np.ndarray, kind: str, params: dict,
                        seed: int | None) -> dict[str, Any]:
    from recsys_cli.swap import recover

    meta_path = processed_path / "dataset.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {meta_path}: {exc}") from exc
    for folder in (processed_path, processed_path / "splits"):
        recover(folder)  # hidden .FILE.PID.*.tmp files of writers that were killed
    slots = (f"splits/{name}.parquet", f"splits/{name}~1.parquet")
    current = meta.get("splits", {}).get(name, {}).get("file")
    file = slots[1] if current == slots[0] else slots[0]  # never the file the record points at
    _write_part(processed_path, name, part, file)
    info = _info(kind, params, seed, part, file)
    meta.setdefault("splits", {})[name] = info
    try:
        write_json(meta_path, meta)
    except BaseException:
        (processed_path / file).unlink(missing_ok=True)
        raise
    if file == slots[1]:
        info["file"] = _back_to_its_name(processed_path, meta, info, slots)
    for other in slots:  # the previous version, or what a killed writer left
        if other != info["file"]:
            (processed_path / other).unlink(missing_ok=True)
    return info


def _back_to_its_name(processed_path: Path, meta: dict, info: dict, slots: tuple[str, str]) -> str:
    """Point the committed split at slots[0] again (a hard link to slots[1] and a second commit);
    the file in use afterwards. If that cannot be done (no hard links, a full disk), slots[1] stays."""
    src, dst = processed_path / slots[1], processed_path / slots[0]
    tmp = temp_name(dst)
    try:
        os.link(src, tmp)
        os.replace(tmp, dst)  # dst is not in use: the record points at src
        info["file"] = slots[0]
        write_json(processed_path / "dataset.json", meta)
        return slots[0]
    except OSError:
        info["file"] = slots[1]
        return slots[1]
    finally:
        tmp.unlink(missing_ok=True)


def _read_ratings(processed_path: Path, columns: list[str]) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    path = Path(processed_path) / "ratings.parquet"
    try:
        table = pq.read_table(path, columns=columns)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    return {c: table.column(c).to_numpy() for c in columns}


def compute_split(kind: str, ratings: dict[str, np.ndarray], *, test: float | None = None, val: float = 0.0,
                  k: int = 5, last: int = 1, val_last: int = 0,
                  seed: int = DEFAULT_SEED) -> tuple[np.ndarray, dict[str, Any], int | None]:
    """(part, params, seed) for one split kind over ratings columns user_id/timestamp."""
    from recsys_cli.settings import check_seed

    seed = check_seed(seed)
    n = len(ratings["user_id"])
    if kind == "random":
        params = {"test": 0.2 if test is None else test, "val": val}
        return random_holdout(n, **params, seed=seed), params, seed
    if kind == "temporal":
        params = {"test": 0.2 if test is None else test, "val": val}
        return temporal_holdout(ratings["timestamp"], **params), params, None
    if kind == "user":
        params = {"test": 0.25 if test is None else test, "val": val, "min_train": 1}
        return user_fraction(ratings["user_id"], **params, seed=seed), params, seed
    if kind == "leave-last":
        params = {"k": last, "val_k": val_last}
        return user_leave_last(ratings["user_id"], ratings["timestamp"], **params), params, None
    if kind == "kfold":
        return kfold(n, k=k, seed=seed), {"k": k}, seed
    raise UsageError(f"unknown split kind {kind!r}; choose one of {', '.join(KINDS)}")


def default_name(kind: str, *, test: float | None = None, val: float = 0.0, k: int = 5,
                 last: int = 1, val_last: int = 0, seed: int = DEFAULT_SEED) -> str:
    """The kind's default name (random, user, kfold5 ...) with any non-default option appended."""
    base = {"kfold": f"kfold{k}", "leave-last": "leave-last" if last == 1 else f"leave-last{last}"}.get(kind, kind)
    default_test = 0.25 if kind == "user" else 0.2
    extra = []
    if kind in ("random", "temporal", "user"):
        if test is not None and test != default_test:
            extra.append(f"test{test!r}")  # repr: the shortest text that is this float (:g made 0.20000001 0.2)
        if val:
            extra.append(f"val{val!r}")
    if kind == "leave-last" and val_last:
        extra.append(f"val{val_last}")
    if kind in ("random", "user", "kfold") and seed != DEFAULT_SEED:
        extra.append(f"seed{seed}")
    return "-".join([base, *extra])


def create_split(processed_path: Path, kind: str, *, name: str | None = None, test: float | None = None,
                 val: float = 0.0, k: int = 5, last: int = 1, val_last: int = 0, seed: int = DEFAULT_SEED,
                 raw_path: Path | None = None, force: bool = False) -> dict[str, dict[str, Any]]:
    """Create a named split on a processed dataset; {name: info}. Kind "ml100k" without a name makes all seven."""
    processed_path = Path(processed_path)
    meta_path = processed_path / "dataset.json"
    if not meta_path.exists():
        raise DataError(f"{processed_path} is not a processed dataset; run `recsys preprocess {processed_path.name}`")
    existing = json.loads(meta_path.read_text()).get("splits", {})
    if kind in ("leave-last", "kfold", "ml100k") and (test is not None or val):
        raise UsageError(f"--test/--val do not apply to --kind {kind} (use --last/--val-last or --k)")
    if kind == "ml100k":
        names = [check_name(name)] if name is not None else list(ML100K_SPLITS)
    else:
        names = [check_name(name if name is not None else default_name(kind, test=test, val=val, k=k, last=last,
                                                 val_last=val_last, seed=seed))]
    taken = [s for s in names if s in existing]
    if taken and not force:
        what = f"split {taken[0]} already exists" if len(taken) == 1 else f"splits {', '.join(taken)} already exist"
        raise UsageError(f"{what} for {processed_path.name}; pass --force to replace {'it' if len(taken) == 1 else 'them'}")
    _check_writable(processed_path)  # before the reading, not after it
    if kind == "ml100k":
        if raw_path is None:
            raise DataError("the ml-100k official splits need the raw folder; run `recsys download ml-100k`")
        cols = _read_ratings(processed_path, ["user_id", "item_id"])
        return {s: write_split(processed_path, s, ml100k_official(raw_path, s, cols["user_id"], cols["item_id"]),
                               "ml100k", {"file": s}, None) for s in names}
    cols = _read_ratings(processed_path, ["user_id", "timestamp"])
    part, params, used_seed = compute_split(kind, cols, test=test, val=val, k=k, last=last,
                                            val_last=val_last, seed=seed)
    return {names[0]: write_split(processed_path, names[0], part, kind, params, used_seed)}


def create_default_splits(processed_path: Path, raw_path: Path | None, meta: dict) -> dict:
    """Write the default splits (random, user, temporal, kfold5 and ml-100k's u1..u5/ua/ub when the raw
    folder has them) into a freshly processed folder; returns `meta` with meta["splits"] filled in.

    dataset.json itself is not touched: the caller writes `meta` afterwards.
    """
    processed_path = Path(processed_path)
    cols = _read_ratings(processed_path, ["user_id", "item_id", "timestamp"])
    splits = meta.setdefault("splits", {})
    n = len(cols["user_id"])
    for name, kind in (("random", "random"), ("user", "user"), ("temporal", "temporal"), ("kfold5", "kfold")):
        if kind == "kfold" and n < 5:
            continue  # too few ratings for five folds; `recsys split --kind kfold --k K` can still make one
        part, params, seed = compute_split(kind, cols, seed=DEFAULT_SEED)
        splits[name] = _info(kind, params, seed, part, _write_part(processed_path, name, part))
    if raw_path is not None and Path(raw_path).is_dir():
        for name in ML100K_SPLITS:
            try:
                part = ml100k_official(Path(raw_path), name, cols["user_id"], cols["item_id"])
            except DataError:
                continue  # not ml-100k, or files that do not match these ratings
            splits[name] = _info("ml100k", {"file": name}, None, part, _write_part(processed_path, name, part))
    return meta


def load_split(processed_path: Path, name: str) -> tuple[np.ndarray, dict[str, Any]]:
    """(part int8 array aligned to ratings.parquet, info from dataset.json) of split `name`."""
    import pyarrow.parquet as pq

    processed_path = Path(processed_path)
    meta_path = processed_path / "dataset.json"
    try:
        splits = json.loads(meta_path.read_text()).get("splits", {})
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {meta_path}: {exc}") from exc
    if name not in splits:
        available = ", ".join(sorted(splits)) or "none"
        raise DataError(f"unknown split {name!r} for {processed_path.name}; available: {available} "
                        f"(make one with `recsys split {processed_path.name} --kind ...`)")
    info = splits[name]
    path = processed_path / info.get("file", f"splits/{name}.parquet")
    try:
        part = pq.read_table(path, columns=["part"]).column("part").to_numpy().astype(np.int8, copy=False)
        n = pq.read_metadata(processed_path / "ratings.parquet").num_rows
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"cannot read split {name!r}: {exc}") from exc
    if len(part) != n:
        raise DataError(f"split {name!r} has {len(part)} rows but ratings.parquet has {n}; "
                        f"re-create it with `recsys split {processed_path.name} --force ...`")
    return part, info
