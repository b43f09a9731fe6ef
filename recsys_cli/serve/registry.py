"""The runs a server answers from: loaded once, reloaded when their folders change, swapped atomically.

A request takes one `LoadedRun` from the registry and uses only it, so a reload (which loads
the new model beside the old one and then replaces one dict entry) never changes the model
under a request in flight; the old one is freed when its last request finishes. A reload that
fails keeps the old run and records why.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys_cli.errors import ArtifactError, RecsysError, UsageError

WARM_USERS = 64  # a batch this size runs the Numba top-k/masking kernels once, so no request pays their load


@dataclass
class LoadedRun:
    """One run as loaded: the API's `Run` (model in memory), when and how fast, and a folder signature."""

    name: str
    run: Any  # recsys_cli.api.Run with .model loaded
    signature: tuple
    generation: int
    loaded_at: float
    load_seconds: float
    arrays_bytes: int = 0  # size of the run's arrays.npz: what "2x the model's arrays" is measured against
    _items: dict[int, dict[str, Any]] | None = field(default=None, repr=False)
    _items_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def model(self):
        return self.run.model

    @property
    def n_items(self) -> int:
        return int(self.run.manifest.n_items)

    def item_info(self, data_dir=None) -> dict[int, dict[str, Any]]:
        """item_id -> {title, genres}: genres from the run's processed dataset when it is on disk, else titles only."""
        if self._items is None:
            with self._items_lock:
                if self._items is None:
                    self._items = _item_info(self, data_dir)
        return self._items


def _item_info(loaded: LoadedRun, data_dir) -> dict[int, dict[str, Any]]:
    from recsys_cli.api import item_metadata

    titles = loaded.model.titles
    try:
        meta = item_metadata(loaded.run.manifest.dataset, data_dir=data_dir)
    except (RecsysError, OSError):
        meta = {}
    out = {}
    for item in loaded.model.item_ids.tolist():
        info = {"item_id": int(item), "title": titles.get(int(item))}
        if int(item) in meta:
            info["genres"] = meta[int(item)]["genres"]
        out[int(item)] = info
    return out


def folder_signature(path: Path) -> tuple:
    """What changes when a run is retrained (the folder is replaced) or re-evaluated (manifest rewritten)."""
    parts: list[Any] = []
    for p in (path, path / "manifest.json", path / "arrays.npz"):
        st = os.stat(p)
        parts.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(parts)


class LRUCache:
    """A bounded, thread-safe LRU of recommendation lists keyed by (run, generation, user, n, exclude_seen,
    explain); the server stores each list as its encoded JSON rows."""

    def __init__(self, size: int) -> None:
        self.size = max(0, int(size))
        self._data: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Any | None:
        if not self.size:
            return None
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: tuple, value: Any) -> None:
        if not self.size:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def invalidate(self, run: str) -> int:
        """Drop every list of `run`; returns how many."""
        with self._lock:
            stale = [k for k in self._data if k[0] == run]
            for k in stale:
                del self._data[k]
            return len(stale)

    def __len__(self) -> int:
        return len(self._data)


class RunRegistry:
    """The named runs of one server. `get(name)` is what every request calls; `reload()` swaps changed ones."""

    def __init__(self, names: list[str], *, default: str | None = None, artifacts_dir=None, data_dir=None,
                 cache_size: int = 10_000, on_load=None, mmap: bool = True) -> None:
        from recsys_cli.api.runs import Run

        if not names:
            raise UsageError("give at least one run to serve")
        names = list(dict.fromkeys(names))
        for name in names:
            Run(name, artifacts_dir=artifacts_dir)  # checks the name (no '../x') before touching the disk
        if default is not None and default not in names:
            raise UsageError(f"--default {default!r} is not one of the served runs ({', '.join(names)})")
        self.names = names
        self.default = default if default is not None else (names[0] if len(names) == 1 else None)
        self.artifacts_dir = artifacts_dir
        self.data_dir = data_dir
        self.cache = LRUCache(cache_size)
        self.on_load = on_load  # callback(run, seconds, ok) for metrics
        self.mmap = mmap  # arrays mapped from arrays.npz (shared between workers), not read
        self._runs: dict[str, LoadedRun] = {}
        self._errors: dict[str, str] = {}
        self._generation = 0
        self._reload_lock = threading.Lock()
        self.started = time.time()

    # ----- loading ----------------------------------------------------------------------------
    def _load(self, name: str) -> LoadedRun:
        from recsys_cli.api.runs import load_run

        t0 = time.perf_counter()
        run = load_run(name, artifacts_dir=self.artifacts_dir, mmap=self.mmap)
        signature = folder_signature(run.path)
        model = run.model  # the arrays, now (not on the first request)
        known = model.user_ids[:WARM_USERS]
        if known.size:
            model.top_n(known, min(10, model.item_ids.size or 1))
            model.top_n(known[:1], min(10, model.item_ids.size or 1))  # ... and the one-user kernel
        if folder_signature(run.path) != signature:  # replaced while we read it: the next reload picks it up
            signature = ()
        seconds = time.perf_counter() - t0
        self._generation += 1
        try:
            arrays_bytes = os.stat(run.path / "arrays.npz").st_size
        except OSError:
            arrays_bytes = 0
        return LoadedRun(name, run, signature, self._generation, time.time(), seconds, arrays_bytes)

    def load_all(self) -> None:
        """Load every run (start-up); the first failure is raised, naming the run."""
        for name in self.names:
            try:
                loaded = self._load(name)
            except RecsysError as exc:
                if self.on_load:
                    self.on_load(name, 0.0, False)
                raise type(exc)(f"cannot serve run {name!r}: {exc}") from None
            self._runs[name] = loaded
            if self.on_load:
                self.on_load(name, loaded.load_seconds, True)

    def reload(self, *, force: bool = False) -> dict[str, Any]:
        """Reload runs whose folder changed (every run with force); returns what happened to each."""
        report: dict[str, Any] = {"reloaded": [], "unchanged": [], "failed": {}}
        with self._reload_lock:
            for name in self.names:
                old = self._runs.get(name)
                try:
                    changed = force or old is None or folder_signature(old.run.path) != old.signature
                except OSError:
                    report["failed"][name] = "the run's folder is gone or unreadable; still serving the loaded one"
                    self._errors[name] = report["failed"][name]
                    continue
                if not changed:
                    report["unchanged"].append(name)
                    continue
                try:
                    new = self._load(name)
                except (RecsysError, OSError, ValueError, KeyError) as exc:
                    # A run caught half-replaced, or a broken retrain: keep answering from the old one.
                    report["failed"][name] = f"{type(exc).__name__}: {exc}"[:500]
                    self._errors[name] = report["failed"][name]
                    if self.on_load:
                        self.on_load(name, 0.0, False)
                    continue
                self._runs[name] = new  # the swap: one assignment; requests holding `old` finish on it
                self.cache.invalidate(name)
                self._errors.pop(name, None)
                report["reloaded"].append(name)
                if self.on_load:
                    self.on_load(name, new.load_seconds, True)
        report["ok"] = not report["failed"]
        return report

    # ----- lookups ----------------------------------------------------------------------------
    def get(self, name: str | None) -> LoadedRun:
        """The loaded run `name` (or the default one); ArtifactError when it is not served here."""
        if name is None or name == "":
            if self.default is None:
                raise UsageError(f"name the run: run=... (served: {', '.join(self.names)})")
            name = self.default
        loaded = self._runs.get(name)
        if loaded is None:
            raise ArtifactError(f"unknown run {name[:200]!r}; served runs: {', '.join(self.names)}")
        return loaded

    def loaded(self) -> list[LoadedRun]:
        return [self._runs[n] for n in self.names if n in self._runs]

    def last_error(self, name: str) -> str | None:
        return self._errors.get(name)
