"""map_npz: arrays of an uncompressed .npz mapped in place equal np.load's; what cannot be mapped is refused."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_cli.artifacts import MMAP_MIN_BYTES, map_npz


def _same_arrays(mapped: dict, arrays: dict):
    """Assert `mapped` holds exactly `arrays` (keys, dtypes, shapes, values); yield (key, mapped array)."""
    assert set(mapped) == set(arrays)
    for key, value in arrays.items():
        got = mapped[key]
        assert got.dtype == np.asarray(value).dtype and got.shape == np.shape(value), key
        np.testing.assert_array_equal(got, value)
        yield key, got

def test_mapped_arrays_equal_np_load_in_every_layout(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "big_f32": rng.standard_normal((300, 70)).astype(np.float32),
        "big_fortran": np.asfortranarray(rng.standard_normal((200, 50))),
        "big_i64": np.arange(20_000, dtype=np.int64),
        "small": np.arange(5, dtype=np.int32),
        "scalar": np.float32(3.25),
        "empty": np.zeros((0, 4), np.float32),
        "model.dotted.name": rng.integers(0, 9, 30_000).astype(np.int32),
    }
    path = tmp_path / "arrays.npz"
    np.savez(path, **arrays)
    mapped = map_npz(path)
    for key, got in _same_arrays(mapped, arrays):
        assert type(got) is np.ndarray and got.flags.aligned, key
        if np.asarray(arrays[key]).nbytes < MMAP_MIN_BYTES:
            assert not isinstance(got.base, np.memmap), key
    mapped_keys = {k for k, v in mapped.items() if isinstance(v.base, np.memmap)}
    assert mapped_keys and mapped_keys <= {"big_f32", "big_fortran", "big_i64", "model.dotted.name"}
    assert mapped["big_fortran"].flags.f_contiguous
    mapped["big_f32"][0, 0] = 99.0  # copy-on-write: the process sees its write, the file does not change
    assert np.load(path)["big_f32"][0, 0] == arrays["big_f32"][0, 0]


def test_compressed_npz_is_not_mapped_and_object_arrays_are_refused(tmp_path):
    np.savez_compressed(tmp_path / "c.npz", a=np.arange(100_000))
    assert map_npz(tmp_path / "c.npz") is None
    np.savez(tmp_path / "o.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="Python objects"):
        map_npz(tmp_path / "o.npz")


def _data_offsets(path) -> dict[str, int]:
    """Where each member's array bytes start in the file: local header, name, extra field, then the .npy header."""
    import struct
    import zipfile

    from numpy.lib import format as npy

    out = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        for info in zf.infolist():
            fh.seek(info.header_offset)
            local = fh.read(30)
            assert local[:4] == b"PK\x03\x04"
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            fh.seek(info.header_offset + 30 + name_len + extra_len)
            version = npy.read_magic(fh)
            (npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0)(fh)
            out[info.filename[:-4]] = fh.tell()
    return out


ODD_ARRAYS = {  # sizes and names chosen so that np.savez would leave members at odd offsets
    "a": np.arange(7, dtype=np.int8),
    "core.user_ids": np.arange(1, 20_001, dtype=np.int64),
    "model.Q": np.random.default_rng(1).standard_normal((513, 33)).astype(np.float32),
    "model.fortran": np.asfortranarray(np.random.default_rng(2).standard_normal((130, 70))),
    "scalar": np.float32(3.5),
    "empty": np.zeros((0, 3), np.float32),
    "words": np.array(["ab", "cde"]),
    "x" * 41: np.arange(17_000, dtype=np.int16),
}


def test_write_npz_aligns_every_array_and_np_load_reads_it_identically(tmp_path):
    import zipfile

    from recsys_cli.artifacts import NPZ_ALIGN, write_npz

    ours, theirs = tmp_path / "ours.npz", tmp_path / "theirs.npz"
    write_npz(ours, ODD_ARRAYS)
    np.savez(theirs, **ODD_ARRAYS)
    offsets = _data_offsets(ours)
    assert set(offsets) == set(ODD_ARRAYS)
    assert {k: off % NPZ_ALIGN for k, off in offsets.items()} == dict.fromkeys(ODD_ARRAYS, 0)
    assert any(off % 8 for off in _data_offsets(theirs).values())  # what np.savez does to the same arrays
    with zipfile.ZipFile(ours) as zf:
        assert zf.testzip() is None
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
    with np.load(ours, allow_pickle=False) as a, np.load(theirs, allow_pickle=False) as b:
        assert a.files == b.files == list(ODD_ARRAYS)
        for key in a.files:
            assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
            np.testing.assert_array_equal(a[key], b[key])
            assert a[key].flags.f_contiguous == b[key].flags.f_contiguous, key


def test_write_npz_arrays_all_map_when_large_enough(tmp_path):
    from recsys_cli.artifacts import write_npz

    path = tmp_path / "arrays.npz"
    write_npz(path, ODD_ARRAYS)
    mapped = map_npz(path)
    for key, got in _same_arrays(mapped, ODD_ARRAYS):
        value = ODD_ARRAYS[key]
        is_mapped = isinstance(got.base, np.memmap)
        assert is_mapped == (np.asarray(value).nbytes >= MMAP_MIN_BYTES), key
        if is_mapped:
            assert got.ctypes.data % 64 == 0, key
    assert mapped["model.fortran"].flags.f_contiguous


def test_saved_run_maps_every_large_array_and_loads_equal(tmp_path):
    from recsys_cli.api.data import from_frame
    from recsys_cli.api.model import train
    from recsys_cli.artifacts import ArtifactStore

    rows = [(u, i, float(1 + (u * 7 + i) % 5)) for u in range(400) for i in range(120) if (u + 3 * i) % 4]
    model = train("svd", from_frame(rows, user="u", item="i", rating="r"), factors=48, epochs=2).estimator
    store = ArtifactStore(tmp_path)
    store.save("run", model, dataset="d", fingerprint="f", split=None, seed=1, train_seconds=0.1)
    path = tmp_path / "run" / "arrays.npz"
    assert all(off % 64 == 0 for off in _data_offsets(path).values())
    mapped = map_npz(path)
    with np.load(path, allow_pickle=False) as npz:
        large = [k for k in npz.files if npz[k].nbytes >= MMAP_MIN_BYTES]
        assert large  # model.P (400 x 48 float32) at least
        assert all(isinstance(mapped[k].base, np.memmap) for k in large)
        for key in npz.files:
            np.testing.assert_array_equal(mapped[key], npz[key])
    plain, _ = store.load("run")
    viamap, _ = store.load("run", mmap=True)
    users = plain.user_ids[:50]
    a, b = plain.recommend(users, 10), viamap.recommend(users, 10)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.scores, b.scores)


@pytest.mark.parametrize("cut", [100, 2000, -30])
def test_damaged_aligned_npz_is_an_artifact_error(tmp_path, cut):
    from recsys_cli.api.data import from_frame
    from recsys_cli.api.model import train
    from recsys_cli.artifacts import ArtifactStore
    from recsys_cli.errors import ArtifactError

    rows = [(u, i, float(1 + (u * i) % 5)) for u in range(30) for i in range(20) if (u + i) % 3]
    store = ArtifactStore(tmp_path)
    store.save("run", train("bias", from_frame(rows, user="u", item="i", rating="r")).estimator, dataset="d",
               fingerprint="f", split=None, seed=1, train_seconds=0.1)
    path = tmp_path / "run" / "arrays.npz"
    path.write_bytes(path.read_bytes()[:cut])
    for mmap in (False, True):
        with pytest.raises(ArtifactError, match="run 'run': corrupt arrays.npz"):
            store.load("run", mmap=mmap)


def test_write_npz_refuses_an_alignment_npy_headers_cannot_keep(tmp_path):
    from recsys_cli.artifacts import write_npz

    with pytest.raises(ValueError, match="align must divide 64"):
        write_npz(tmp_path / "a.npz", {"a": np.arange(3)}, align=128)
