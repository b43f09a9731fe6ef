"""map_npz: arrays of an uncompressed .npz mapped in place equal np.load's; what cannot be mapped is refused."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_cli.artifacts import MMAP_MIN_BYTES, map_npz


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
    assert set(mapped) == set(arrays)
    for key, value in arrays.items():
        got = mapped[key]
        assert got.dtype == np.asarray(value).dtype and got.shape == np.shape(value), key
        np.testing.assert_array_equal(got, value)
        assert type(got) is np.ndarray and got.flags.aligned, key
        if np.asarray(value).nbytes < MMAP_MIN_BYTES:
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
