"""Split kinds, ml-100k official splits, split files + dataset.json, and the `recsys split` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from recsys_cli.cli.app import app
from recsys_cli.data import splits as S
from recsys_cli.errors import DataError, UsageError


def _ratings(n_users: int = 60, seed: int = 0, sort: bool = True):
    """Users with 1..80 ratings each (some with exactly 1 or 2), timestamps with ties."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 80, n_users)
    counts[:3] = [1, 2, 3]
    users = np.repeat(np.arange(10, 10 + n_users), counts).astype(np.int32)
    ts = rng.integers(0, 500, len(users)).astype(np.int64)  # coarse: many ties
    if not sort:
        perm = rng.permutation(len(users))
        users, ts = users[perm], ts[perm]
    return users, ts


def test_random_holdout_counts_determinism_and_seeds():
    part = S.random_holdout(1001, test=0.2, val=0.1, seed=42)
    assert part.dtype == np.int8
    assert np.bincount(part, minlength=3).tolist() == [1001 - 200 - 100, 100, 200]
    assert np.array_equal(part, S.random_holdout(1001, test=0.2, val=0.1, seed=42))
    assert not np.array_equal(part, S.random_holdout(1001, test=0.2, val=0.1, seed=43))
    with pytest.raises(UsageError):
        S.random_holdout(10, test=0.7, val=0.3, seed=1)


def test_temporal_holdout_orders_train_validation_test_in_time():
    _, ts = _ratings(sort=False)
    part = S.temporal_holdout(ts, test=0.2, val=0.1)
    n = len(ts)
    assert np.bincount(part, minlength=3).tolist() == [n - round(n * 0.2) - round(n * 0.1), round(n * 0.1), round(n * 0.2)]
    assert ts[part == 0].max() <= ts[part == 1].min()
    assert ts[part == 1].max() <= ts[part == 2].min()
    # all timestamps tied: row order decides, so the last rows are the test set
    tied = S.temporal_holdout(np.zeros(10, dtype=np.int64), test=0.3)
    assert tied.tolist() == [0] * 7 + [2] * 3


@pytest.mark.parametrize("sort", [True, False])
def test_user_fraction_per_user_guarantees(sort):
    users, _ = _ratings(sort=sort)
    part = S.user_fraction(users, test=0.25, val=0.1, seed=42)
    for u in np.unique(users):
        p = part[users == u]
        n = len(p)
        n_test = int((p == 2).sum())
        if n == 1:
            assert p.tolist() == [0]
            continue
        assert (p == 0).sum() >= 1 and n_test >= 1
        assert n_test == min(max(int(np.rint(n * 0.25)), 1), n - 1)
        assert (p == 1).sum() == min(int(np.rint(n * 0.1)), n - 1 - n_test)
    assert np.array_equal(part, S.user_fraction(users, test=0.25, val=0.1, seed=42))
    assert not np.array_equal(part, S.user_fraction(users, test=0.25, val=0.1, seed=7))


def test_user_fraction_min_train():
    users = np.repeat([1, 2], [3, 10])
    part = S.user_fraction(users, test=0.5, seed=0, min_train=3)
    assert part[:3].tolist() == [0, 0, 0]  # cannot keep 3 in train and test one
    assert (part[3:] == 2).sum() == 5


@pytest.mark.parametrize("sort", [True, False])
def test_leave_last_takes_latest_ratings_per_user(sort):
    users, ts = _ratings(sort=sort)
    part = S.user_leave_last(users, ts, k=2, val_k=1)
    rows = np.arange(len(users))
    for u in np.unique(users):
        idx = rows[users == u]
        order = idx[np.lexsort((idx, ts[idx]))]  # by time, ties by row order
        n = len(idx)
        n_test, n_val = min(2, n - 1), min(1, n - 1 - min(2, n - 1))
        expected = [0] * (n - n_test - n_val) + [1] * n_val + [2] * n_test
        assert part[order].tolist() == expected


def test_kfold_disjoint_covering_and_balanced():
    part = S.kfold(1003, k=5, seed=42)
    sizes = np.bincount(part, minlength=5)
    assert sizes.sum() == 1003 and sizes.max() - sizes.min() <= 1
    assert set(np.unique(part).tolist()) == set(range(5))
    assert np.array_equal(part, S.kfold(1003, k=5, seed=42))
    assert not np.array_equal(part, S.kfold(1003, k=5, seed=1))
    with pytest.raises(UsageError):
        S.kfold(10, k=1, seed=0)


def test_user_kfold_deals_each_users_ratings_into_every_fold():
    rng = np.random.default_rng(3)
    counts = np.array([1, 2, 3, 4, 7, 10, 25, 1, 12])
    users = rng.permutation(np.repeat(np.arange(len(counts)) * 3 + 5, counts))  # raw-like ids, rows unsorted
    part = S.user_kfold(users, k=4, seed=42)
    assert part.dtype == np.int8 and len(part) == counts.sum()
    for u, n in zip(np.arange(len(counts)) * 3 + 5, counts, strict=True):
        codes = part[users == u]
        if n == 1:
            assert codes.tolist() == [-1]  # a single rating is never a test rating: always train
            continue
        per_fold = np.bincount(codes, minlength=4)
        assert per_fold.max() - per_fold.min() <= 1 and per_fold.sum() == n  # n//4 or n//4 + 1 in each fold
    sizes = np.bincount(part[part >= 0], minlength=4)
    assert sizes.max() - sizes.min() <= len(counts)  # random starting folds keep the folds near equal
    assert np.array_equal(part, S.user_kfold(users, k=4, seed=42))
    assert not np.array_equal(part, S.user_kfold(users, k=4, seed=1))
    assert len(S.user_kfold(np.zeros(0, dtype=np.int32), k=3)) == 0
    for k in (1, 128):
        with pytest.raises(UsageError):
            S.user_kfold(users, k=k)


def _fake_ml100k_raw(root: Path, users, items, test_mask, name="u1", nested=True) -> Path:
    folder = root / "ml-100k" if nested else root
    folder.mkdir(parents=True, exist_ok=True)
    for ext, mask in (("base", ~test_mask), ("test", test_mask)):
        lines = [f"{u}\t{i}\t3\t881250949" for u, i in zip(users[mask], items[mask], strict=True)]
        (folder / f"{name}.{ext}").write_text("\n".join(lines) + "\n")
    return root


def test_ml100k_official_maps_pairs(tmp_path):
    users = np.array([1, 1, 1, 2, 2, 3])
    items = np.array([5, 6, 7, 5, 9, 6])
    test_mask = np.array([False, True, False, False, True, False])
    raw = _fake_ml100k_raw(tmp_path, users, items, test_mask)
    part = S.ml100k_official(raw, "u1", users, items)
    assert part.tolist() == [0, 2, 0, 0, 2, 0]
    with pytest.raises(DataError, match="u2.base"):
        S.ml100k_official(raw, "u2", users, items)
    with pytest.raises(DataError, match="neither"):
        S.ml100k_official(raw, "u1", np.r_[users, 4], np.r_[items, 1])
    with pytest.raises(UsageError):
        S.ml100k_official(raw, "u9", users, items)


def write_processed(root: Path, name: str = "tiny", n_users: int = 30, seed: int = 0) -> Path:
    """A processed dataset in the LAYOUT.md format (ratings, items, dataset.json)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        items = rng.choice(np.arange(1, 41), size=int(rng.integers(2, 20)), replace=False)
        ts = np.sort(rng.integers(10**9, 10**9 + 10**6, len(items)))
        rows += [(u, int(i), float(rng.integers(1, 6)), int(t)) for i, t in zip(items, ts, strict=True)]
    rows.sort(key=lambda r: (r[0], r[3], r[1]))
    u, i, r, t = (np.array(c) for c in zip(*rows, strict=True))
    path = root / "processed" / name
    path.mkdir(parents=True)
    pq.write_table(pa.table({"user_id": pa.array(u, pa.int32()), "item_id": pa.array(i, pa.int32()),
                             "rating": pa.array(r, pa.float32()), "timestamp": pa.array(t, pa.int64())}),
                   path / "ratings.parquet")
    pq.write_table(pa.table({"item_id": pa.array(np.arange(1, 41), pa.int32()),
                             "title": [f"Film {k}" for k in range(1, 41)],
                             "year": pa.array([1990] * 40, pa.int16()),
                             "genres": [["Drama"] if k % 2 else [] for k in range(1, 41)]}),
                   path / "items.parquet")
    meta = {"schema_version": 1, "name": name, "layout": "generic", "source": str(root / "raw" / name),
            "n_ratings": len(u), "n_users": n_users, "n_items": 40, "splits": {}}
    (path / "dataset.json").write_text(json.dumps(meta))
    return path


def test_create_default_splits_and_load(tmp_path):
    path = write_processed(tmp_path)
    cols = S._read_ratings(path, ["user_id", "item_id"])
    raw = _fake_ml100k_raw(tmp_path / "raw", cols["user_id"], cols["item_id"], np.arange(len(cols["user_id"])) % 5 == 0)
    meta = S.create_default_splits(path, raw, {"name": "tiny"})
    assert sorted(meta["splits"]) == ["kfold5", "random", "temporal", "u1", "user"]
    n = len(cols["user_id"])
    assert meta["splits"]["random"]["counts"] == {"train": n - round(0.2 * n), "validation": 0, "test": round(0.2 * n)}
    assert meta["splits"]["user"]["params"]["test"] == 0.25 and meta["splits"]["user"]["seed"] == 42
    assert sum(meta["splits"]["kfold5"]["counts"]["fold_sizes"]) == n
    assert meta["splits"]["u1"]["counts"]["test"] == int((np.arange(n) % 5 == 0).sum())
    assert json.loads((path / "dataset.json").read_text())["splits"] == {}  # the caller writes meta
    (path / "dataset.json").write_text(json.dumps({**json.loads((path / "dataset.json").read_text()), **meta}))
    part, info = S.load_split(path, "kfold5")
    assert part.dtype == np.int8 and len(part) == n and info["kind"] == "kfold"
    assert np.array_equal(part, S.kfold(n, k=5, seed=42))


def test_write_and_load_split_errors(tmp_path):
    path = write_processed(tmp_path)
    n = pq.read_metadata(path / "ratings.parquet").num_rows
    info = S.write_split(path, "mine", S.random_holdout(n, test=0.5, seed=1), "random", {"test": 0.5, "val": 0.0}, 1)
    assert info["file"] == "splits/mine.parquet"
    assert json.loads((path / "dataset.json").read_text())["splits"]["mine"]["counts"]["test"] == round(n * 0.5)
    assert not list((path / "splits").glob(".*"))  # no temp files left
    with pytest.raises(DataError, match="available: mine"):
        S.load_split(path, "nope")
    S.write_split(path, "short", np.zeros(n - 1, dtype=np.int8), "random", {}, 1)
    with pytest.raises(DataError, match="rows"):
        S.load_split(path, "short")
    with pytest.raises(UsageError):
        S.write_split(path, "bad:name", np.zeros(n, dtype=np.int8), "random", {}, 1)


runner = CliRunner()


def _split(tmp_path, *args):
    return runner.invoke(app, ["split", "tiny", "--data-dir", str(tmp_path), "--format", "json", *args])


def test_split_cli(tmp_path):
    path = write_processed(tmp_path)
    n = pq.read_metadata(path / "ratings.parquet").num_rows
    res = _split(tmp_path, "--kind", "random", "--test", "0.1", "--val", "0.1")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert rows[0]["split"] == "random-test0.1-val0.1"
    assert S.default_name("random", test=0.20000001) == "random-test0.20000001"  # :g named it random-test0.2
    empty = _split(tmp_path, "--kind", "random", "--name", "")
    assert empty.exit_code == 2 and empty.stderr.startswith("error: bad split name ''")  # was the default name
    assert (rows[0]["train"], rows[0]["validation"], rows[0]["test"]) == (n - 2 * round(0.1 * n), round(0.1 * n), round(0.1 * n))
    again = _split(tmp_path, "--kind", "random", "--test", "0.1", "--val", "0.1")
    assert again.exit_code == 2 and "--force" in again.stderr
    assert _split(tmp_path, "--kind", "random", "--test", "0.1", "--val", "0.1", "--force").exit_code == 0
    res = _split(tmp_path, "--kind", "kfold", "--k", "3")
    kf = json.loads(res.stdout)[0]
    assert res.exit_code == 0 and kf["split"] == "kfold3" and sum(kf["fold_sizes"]) == n
    res = _split(tmp_path, "--kind", "leave-last", "--name", "last1")
    assert res.exit_code == 0 and json.loads(res.stdout)[0]["test"] == 30  # every user has >= 2 ratings
    from recsys_cli.data.dataset import load_dataset

    ds = load_dataset("tiny", tmp_path)
    assert ds.split_mask("kfold3:1", "test").sum() == kf["fold_sizes"][1]
    assert ds.split_mask("last1", "test").sum() == 30
    assert _split(tmp_path, "--kind", "nope").exit_code == 2
    assert _split(tmp_path, "--kind", "ml100k").exit_code == 3  # no raw files


def test_split_cli_missing_dataset(tmp_path):
    res = runner.invoke(app, ["split", "absent", "--kind", "random", "--data-dir", str(tmp_path)])
    assert res.exit_code == 3
    assert "recsys preprocess absent" in res.stderr


def test_split_help_has_examples():
    res = runner.invoke(app, ["split", "--help"])
    assert res.exit_code == 0 and "Examples" in res.output and "--kind" in res.output


ML100K_ZIP = Path("/work/shared/data/mirror/ml-100k.zip")


@pytest.mark.skipif(not ML100K_ZIP.exists(), reason="needs the ml-100k zip")
def test_ml100k_official_on_the_real_files(tmp_path):
    import zipfile

    with zipfile.ZipFile(ML100K_ZIP) as z:
        for f in ("u.data", "u1.base", "u1.test", "ua.base", "ua.test"):
            (tmp_path / f).write_bytes(z.read(f"ml-100k/{f}"))
    data = np.loadtxt(tmp_path / "u.data", dtype=np.int64)
    u1 = S.ml100k_official(tmp_path, "u1", data[:, 0], data[:, 1])
    assert np.bincount(u1, minlength=3).tolist() == [80_000, 0, 20_000]
    ua = S.ml100k_official(tmp_path, "ua", data[:, 0], data[:, 1])
    assert (ua == 2).sum() == 9430  # 10 test ratings for each of the 943 users
    assert np.all(np.bincount(data[ua == 2, 0])[1:] == 10)


def test_split_cli_rejects_options_of_other_kinds(tmp_path):
    write_processed(tmp_path)
    res = _split(tmp_path, "--kind", "kfold", "--test", "0.3")
    assert res.exit_code == 2 and "do not apply" in res.stderr
