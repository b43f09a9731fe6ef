"""ArtifactStore: a run is a folder written atomically, loaded without pickle.

    artifacts/<run>/manifest.json   format version, model, config, dataset + fingerprint,
                                    split, seed, times, package version, metrics
    artifacts/<run>/arrays.npz      every learned array (np.load(..., allow_pickle=False))
    artifacts/<run>/users.parquet   user vocabulary (index -> raw id, train count)
    artifacts/<run>/items.parquet   item vocabulary (index -> raw id, title, train count)

A run is written to a hidden temporary folder beside its final place and moved in with
one os.replace, so a killed process never leaves half a run; an existing run is
replaced only with force=True (the old one stays intact until the new one is complete).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from recsys_cli import __version__
from recsys_cli.errors import ArtifactError, ConfigError, UsageError
from recsys_cli.settings import artifacts_dir
from recsys_cli.swap import check_writable, recover, replace_dir, scratch_dir

FORMAT_VERSION = 1
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_run_name(name: str) -> str:
    if not _NAME_RE.match(name or ""):
        raise UsageError(
            f"invalid run name {name!r}: use ASCII letters (a-z, A-Z), digits, '.', '_' or '-', starting with a "
            "letter or digit, at most 128 characters"
        )
    return name


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _listable(manifest: dict[str, Any]) -> bool:
    """The fields a listing shows and sorts by have their JSON types: names and `created` strings,
    `train_seconds` a number, `metrics` an object of numbers (each may be missing or null). A manifest
    damaged there is skipped like an unreadable one, not a crash of `recsys runs` (which had
    `--format table` and `--sort` fail with an internal error on `"train_seconds": "slow"`)."""
    if any(manifest.get(key) is not None and not isinstance(manifest[key], str)
           for key in ("model", "dataset", "split", "created")):
        return False
    if manifest.get("train_seconds") is not None and not _number(manifest["train_seconds"]):
        return False
    metrics = manifest.get("metrics")
    if metrics is None:
        return True
    return isinstance(metrics, dict) and all(v is None or _number(v) for v in metrics.values())


class ArtifactStore:
    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = artifacts_dir(root)

    def path(self, run: str) -> Path:
        return self.root / check_run_name(run)

    def exists(self, run: str) -> bool:
        return (self.path(run) / "manifest.json").exists()

    def list_runs(self) -> list[dict[str, Any]]:
        """Manifests of every run, newest first, runs of the same second by name (unreadable folders are skipped)."""
        out = []
        if not self.root.exists():
            return out
        self.recover()
        for child in sorted(self.root.iterdir()):  # the sort below is stable: ties keep name order
            mf = child / "manifest.json"
            if child.name.startswith(".") or not mf.exists():
                continue
            try:
                manifest = json.loads(mf.read_text())
            except (OSError, ValueError):  # unreadable, not UTF-8, or not JSON
                continue
            if not isinstance(manifest, dict) or not _listable(manifest):
                continue
            manifest["run"] = child.name
            out.append(manifest)
        out.sort(key=lambda m: m.get("created", ""), reverse=True)
        return out

    def save(
        self,
        run: str,
        model,
        *,
        dataset: str,
        fingerprint: str,
        split: str | None,
        seed: int,
        train_seconds: float,
        titles: dict[int, str] | None = None,
        extra: dict[str, Any] | None = None,
        force: bool = False,
    ) -> Path:
        """Write a trained model as a run; ArtifactError if it exists and not force."""
        final = self.check_writable(run, force=force)
        self.root.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format_version": FORMAT_VERSION,
            "run": run,
            "model": model.name,
            "config": model.config.to_dict(),
            "package_version": __version__,
            "dataset": dataset,
            "dataset_fingerprint": fingerprint,
            "split": split,
            "seed": seed,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "train_seconds": round(train_seconds, 4),
            "n_users": int(model.n_users),
            "n_items": int(model.n_items),
            "fit_info": getattr(model, "fit_info", {}),
            "metrics": {},
        }
        manifest.update(extra or {})
        self.recover(run)
        tmp = scratch_dir(self.root, run)
        try:
            state = model.state()
            arrays = {k: np.asarray(v) for k, v in state.items()}
            for k, v in arrays.items():
                if v.dtype == object:
                    raise ArtifactError(f"state {k!r} of {model.name!r} is not a plain array")
            write_npz(tmp / "arrays.npz", arrays)
            self._write_vocab(tmp, model, titles)
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=_json_default) + "\n")
            replace_dir(tmp, final)  # recoverable at every step: see recsys_cli/swap.py
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def recover(self, run: str | None = None) -> list[str]:
        """Finish what a killed save left (see `recsys_cli.swap.recover`): a run whose replacement was
        interrupted between its two renames comes back; leftovers of dead writers are deleted."""
        return recover(self.root, run, complete=lambda p: (p / "manifest.json").is_file())

    @staticmethod
    def _write_vocab(folder: Path, model, titles: dict[int, str] | None) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        users = pa.table(
            {
                "index": pa.array(np.arange(model.n_users, dtype=np.int32)),
                "user_id": pa.array(model.user_ids),
                "train_count": pa.array(model.user_counts),
            }
        )
        cols = {
            "index": pa.array(np.arange(model.n_items, dtype=np.int32)),
            "item_id": pa.array(model.item_ids),
            "train_count": pa.array(model.item_counts),
        }
        if titles is not None:
            cols["title"] = pa.array([titles.get(int(i)) for i in model.item_ids], type=pa.string())
        pq.write_table(users, folder / "users.parquet")
        pq.write_table(pa.table(cols), folder / "items.parquet")

    def manifest(self, run: str) -> dict[str, Any]:
        folder = self.path(run)
        if not folder.exists():
            self.recover(run)
        mf = folder / "manifest.json"
        if not mf.exists():
            known = [m["run"] for m in self.list_runs()][:20]
            listing = f"; known runs: {', '.join(known)}" if known else "; no runs yet (train one with `recsys train`)"
            raise ArtifactError(f"unknown run {run!r} in {self.root}{listing}")
        try:
            manifest = json.loads(mf.read_text())
        except (OSError, ValueError) as exc:  # unreadable, not UTF-8, or not JSON
            raise ArtifactError(f"run {run!r}: unreadable manifest {mf}: {exc}") from None
        if not isinstance(manifest, dict):
            raise ArtifactError(f"run {run!r}: {mf} should hold a JSON object, got {type(manifest).__name__}; "
                                "the run is damaged, retrain it")
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise ArtifactError(
                f"run {run!r} has artifact format {version}, this recsys reads {FORMAT_VERSION}; retrain it"
            )
        return manifest

    def load(self, run: str, *, expect_fingerprint: str | None = None, mmap: bool = False):
        """(model, manifest). Checks format version and dataset fingerprint before the arrays.

        mmap=True maps the arrays from arrays.npz (copy-on-write) instead of reading them: pages are
        shared with other processes serving the same run, and only what is touched is resident.
        Safe across `train --force` (the folder is replaced, the mapped file lives on until unmapped);
        overwriting arrays.npz in place under a server would not be.
        """
        from recsys_cli.models.registry import get_model_class

        manifest = self.manifest(run)
        if expect_fingerprint is not None and manifest.get("dataset_fingerprint") != expect_fingerprint:
            raise ArtifactError(
                f"run {run!r} was trained on a different version of dataset {manifest.get('dataset')!r} "
                "(fingerprint mismatch); retrain it"
            )
        try:
            cls = get_model_class(manifest["model"])
        except (UsageError, KeyError, TypeError) as exc:
            raise ArtifactError(f"run {run!r}: {self.path(run) / 'manifest.json'} names no model this version of "
                                f"recsys knows ({exc}); retrain it") from None
        self._check_vocabularies(run)
        try:
            config = cls.Config.from_dict(manifest.get("config", {}))
        except ConfigError as exc:  # saved by a version with other parameters (or edited by hand)
            raise ArtifactError(f"run {run!r} has a config this version of recsys cannot use ({exc}); "
                                f"retrain it") from None
        try:
            state = map_npz(self.path(run) / "arrays.npz") if mmap else None
            if state is None:
                with np.load(self.path(run) / "arrays.npz", allow_pickle=False) as npz:
                    state = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            why = "it holds pickled objects, which recsys never loads" if "allow_pickle" in str(exc) else str(exc)
            raise ArtifactError(f"run {run!r}: corrupt arrays.npz ({why}); retrain it") from None
        check_state(state, f"run {run!r}: arrays.npz")
        for key in ("n_users", "n_items"):
            expected = len(state["core.user_ids" if key == "n_users" else "core.item_ids"])
            if manifest.get(key) is not None and manifest.get(key) != expected:
                raise ArtifactError(f"run {run!r}: manifest.json says {key} {manifest.get(key)!r}, arrays.npz holds "
                                    f"{expected}; the run is damaged, retrain it")
        model = cls.from_state(config, state)
        model.fit_info = manifest.get("fit_info", {})
        return model, manifest

    def _check_vocabularies(self, run: str) -> None:
        """users.parquet and items.parquet are present and readable Parquet files."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        for name in ("users.parquet", "items.parquet"):
            path = self.path(run) / name
            if not path.is_file():
                raise ArtifactError(f"run {run!r}: {path} is missing; the run is damaged, retrain it")
            try:
                pq.ParquetFile(path).metadata  # noqa: B018 - reads and checks the footer
            except (OSError, pa.ArrowException) as exc:
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ArtifactError(f"run {run!r}: {path} is not a readable Parquet file ({why}); retrain it") from None

    def titles(self, run: str) -> dict[int, str]:
        """Raw item id -> title, from the run's items.parquet (empty if titles were not saved)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = self.path(run) / "items.parquet"
        try:
            pf = pq.ParquetFile(path)  # not read_table: that imports pyarrow.dataset (slow start-up)
            if "title" not in pf.schema_arrow.names:
                return {}
            table = pf.read(columns=["item_id", "title"])
            return dict(zip(table.column("item_id").to_pylist(), table.column("title").to_pylist(), strict=False))
        except (OSError, pa.ArrowException, KeyError) as exc:
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ArtifactError(f"run {run!r}: cannot read {path} ({why}); the run is damaged, retrain it") from None

    def update_metrics(self, run: str, metrics: dict[str, Any]) -> None:
        """Merge evaluation metrics into a run's manifest (atomic rewrite, under a lock on the run's folder:
        two evaluations of one run at once keep both's metrics; a killed one's temporary file is deleted by
        the next)."""
        from recsys_cli.swap import folder_lock, recover, write_json

        folder = self.path(run)
        with folder_lock(folder):
            recover(folder)
            manifest = self.manifest(run)
            manifest.setdefault("metrics", {}).update(metrics)
            write_json(folder / "manifest.json", manifest, default=_json_default)

    def check_writable(self, run: str, *, force: bool) -> Path:
        """The run's folder, if `save` may write it: new, or an existing run and force.

        ArtifactError otherwise; never replaces what is not a run (the MLflow store, the
        ledger, a user's folder), even with force. Commands call it before training.
        """
        final = self.path(run)
        check_writable(self.root, "artifacts folder")
        if not (final.exists() or final.is_symlink()):
            return final
        if final.is_symlink() or not final.is_dir() or not (final / "manifest.json").is_file():
            raise ArtifactError(f"{final} exists and is not a recsys run; pick another run name "
                                f"(--force only replaces runs)")
        if not force:
            raise ArtifactError(f"run {run!r} already exists at {final}; use --force to replace it")
        return final


# Model arrays with one row per user or per item, by their name in a model's state (every model
# uses these names; a blend's members are prefixed m0., m1., ...).
_ROWS = {"bu": "users", "P": "users", "X": "users", "bi": "items", "Q": "items", "Y": "items",
         "item_bias": "items", "item_mean": "items", "pop_score": "items"}


def _check_model_rows(state: dict[str, np.ndarray], n_users: int, n_items: int, where: str) -> None:
    """Per-user and per-item model arrays have one row per user or item; neighbour lists stay in range."""
    sizes = {"users": n_users, "items": n_items}
    for key, value in state.items():
        base = key.rpartition("model.")[2] if "model." in key else None
        if base is None:
            continue
        arr = np.asarray(value)
        if base in _ROWS:
            n = sizes[_ROWS[base]]
            if arr.ndim == 0 or arr.shape[0] != n:
                raise ArtifactError(f"{where}: {key!r} has shape {arr.shape}, expected {n} rows (one per "
                                    f"{_ROWS[base][:-1]}); retrain the run")
        elif base == "neighbors" and arr.size:
            if arr.dtype.kind not in "iu" or arr.min() < -1 or arr.max() >= max(n_users, n_items):
                raise ArtifactError(f"{where}: {key!r} holds indices outside the catalogue; retrain the run")
            sims = state.get(key.replace("neighbors", "sims"))
            if sims is not None and np.asarray(sims).shape != arr.shape:
                raise ArtifactError(f"{where}: 'sims' and 'neighbors' differ in shape; retrain the run")


def check_state(state: dict[str, np.ndarray], where: str) -> None:
    """The common arrays of a saved model agree with each other: shapes, index ranges, finite numbers.

    ArtifactError naming the array and the problem; a damaged run is refused before any model uses it.
    """
    def need(key: str) -> np.ndarray:
        if f"core.{key}" not in state:
            raise ArtifactError(f"{where} lacks {key!r}; retrain the run")
        return np.asarray(state[f"core.{key}"])

    users, items = need("user_ids"), need("item_ids")
    n_users, n_items = len(users), len(items)
    indptr, indices = need("seen_indptr"), need("seen_indices")
    shapes = {"user_counts": (n_users,), "item_counts": (n_items,), "fb_user_bias": (n_users,),
              "fb_item_bias": (n_items,), "fb_rank": (n_items,), "seen_indptr": (n_users + 1,)}
    for key, shape in shapes.items():
        if need(key).shape != shape:
            raise ArtifactError(f"{where}: {key!r} has shape {need(key).shape}, expected {shape}; retrain the run")
    for key in ("user_ids", "item_ids", "seen_indptr", "seen_indices", "user_counts", "item_counts", "fb_rank"):
        if need(key).dtype.kind not in "iu":
            raise ArtifactError(f"{where}: {key!r} should hold integers, not {need(key).dtype}; retrain the run")
    for key in ("fb_user_bias", "fb_item_bias"):
        if need(key).dtype.kind not in "fiu":
            raise ArtifactError(f"{where}: {key!r} should hold numbers, not {need(key).dtype}; retrain the run")
    for key, value in state.items():
        arr = np.asarray(value)
        if arr.dtype.kind not in "biufUS":
            raise ArtifactError(f"{where}: {key!r} is not a plain array ({arr.dtype}); retrain the run")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ArtifactError(f"{where}: {key!r} contains NaN or infinite values; retrain the run")
    if (len(indptr) and (indptr[0] != 0 or indptr[-1] != len(indices) or np.any(np.diff(indptr) < 0))):
        raise ArtifactError(f"{where}: 'seen_indptr' does not describe 'seen_indices'; retrain the run")
    if len(indices) and (indices.min() < 0 or indices.max() >= n_items):
        raise ArtifactError(f"{where}: 'seen_indices' holds item indices outside 0..{n_items - 1}; retrain the run")
    _check_model_rows(state, n_users, n_items, where)
    rank = need("fb_rank")
    if n_items and (rank.min() < 0 or rank.max() >= n_items):
        raise ArtifactError(f"{where}: 'fb_rank' holds item indices outside 0..{n_items - 1}; retrain the run")


MMAP_MIN_BYTES = 1 << 16  # smaller arrays are read (a mapping costs a page and a file descriptor's worth)
NPZ_ALIGN = 64  # where write_npz starts each array's bytes: a multiple of every dtype's alignment (and of SIMD's)
_ALIGN_EXTRA_ID = 0xD935  # the zip extra field zipalign (Android) pads with: 2-byte alignment, then zeros


def write_npz(path: Path, arrays: dict[str, np.ndarray], align: int = NPZ_ALIGN) -> None:
    """Write `arrays` as an uncompressed .npz (np.load reads it as it reads np.savez's) in which every
    array's bytes start at a multiple of `align` in the file, so `map_npz` can map each of them.

    A zip member's data follows its local header (30 bytes, the name, the extra field); np.savez
    leaves that wherever it falls, so most arrays end up unaligned. Here each member's extra field
    carries an alignment record padded so that its data (the .npy header, itself padded to a
    multiple of 64 bytes by NumPy) starts aligned. Members are stored, never compressed, with
    ZIP64 headers as np.savez writes them (arrays over 4 GB).
    """
    import struct

    from numpy.lib import format as npy

    if align < 1 or npy.ARRAY_ALIGN % align:  # .npy headers are padded to ARRAY_ALIGN (64) bytes
        raise ValueError(f"align must divide {npy.ARRAY_ALIGN}, got {align}")
    with open(path, "wb") as fh, zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, value in arrays.items():
            arr = np.asanyarray(value)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o600 << 16
            info.CRC = info.compress_size = info.file_size = 0  # zipfile fills them in after the data
            info.extra = struct.pack("<HHH", _ALIGN_EXTRA_ID, 2, align)
            pad = -(fh.tell() + len(info.FileHeader(True))) % align  # the header force_zip64 makes zipfile write
            info.extra = struct.pack("<HHH", _ALIGN_EXTRA_ID, 2 + pad, align) + bytes(pad)
            with zf.open(info, "w", force_zip64=True) as member:
                if fh.tell() % align:  # zipfile wrote another header than FileHeader(True) says
                    raise ArtifactError(f"cannot align {key!r} in {path}: unexpected zip header layout")
                npy.write_array(member, arr, allow_pickle=False)




def map_npz(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of an uncompressed .npz (write_npz, np.savez), mapped copy-on-write where they allow; None if none can be.

    An uncompressed .npz is a zip of .npy files stored as they are, so each array's bytes sit at a
    fixed offset in the file: after the member's local header and its .npy header. Arrays at an
    aligned offset are mapped; small or unaligned ones are read. Object arrays are refused (like
    allow_pickle=False); compressed members mean "read it the normal way".
    """
    import struct

    from numpy.lib import format as npy

    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                return None
            fh.seek(info.header_offset)
            local = fh.read(30)
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                raise ValueError(f"bad zip member header for {info.filename}")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            fh.seek(info.header_offset + 30 + name_len + extra_len)
            version = npy.read_magic(fh)
            read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, fortran, dtype = read_header(fh)
            if dtype.hasobject:
                raise ValueError(f"{info.filename} holds Python objects; refusing to load it")
            offset = fh.tell()
            count = int(np.prod(shape, dtype=np.int64))
            if offset + count * dtype.itemsize > info.header_offset + 30 + name_len + extra_len + info.file_size:
                raise ValueError(f"{info.filename} is shorter than its header says")
            order = "F" if fortran else "C"
            # np.savez does not align its members (write_npz does): an array whose bytes are not aligned in the
            # file is read, since NumPy skips BLAS on unaligned arrays (1 x 64 by 64 x 59k: 0.3 ms -> 36 ms).
            if count * dtype.itemsize < MMAP_MIN_BYTES or offset % dtype.alignment:
                arr = np.fromfile(fh, dtype=dtype, count=count).reshape(shape, order=order)
            else:
                # a plain ndarray view (its base keeps the map open): no memmap subclass on every result
                arr = np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=shape, order=order).view(np.ndarray)
            out[info.filename[:-4]] = arr
    return out


def _json_default(obj: Any):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
