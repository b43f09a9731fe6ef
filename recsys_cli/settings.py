"""Paths, environment variables and defaults, resolved in one place."""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_SEED = 42


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """Root of downloaded and processed data: --data-dir, else RECSYS_DATA_DIR, else ./data."""
    return Path(override or os.environ.get("RECSYS_DATA_DIR") or "data")


def raw_dir(name: str, override: str | os.PathLike | None = None) -> Path:
    return data_dir(override) / "raw" / name


def processed_dir(name: str, override: str | os.PathLike | None = None) -> Path:
    return data_dir(override) / "processed" / name


def artifacts_dir(override: str | os.PathLike | None = None) -> Path:
    """Root of trained runs: --artifacts-dir, else RECSYS_ARTIFACTS_DIR, else ./artifacts."""
    return Path(override or os.environ.get("RECSYS_ARTIFACTS_DIR") or "artifacts")


def mirror(override: str | None = None) -> str | None:
    """A mirror URL or local folder: --mirror, else RECSYS_MIRROR."""
    return override or os.environ.get("RECSYS_MIRROR") or None


def show_progress() -> bool:
    """Progress bars only for a person watching: stderr is a terminal and not disabled."""
    if os.environ.get("RECSYS_NO_PROGRESS", "") not in ("", "0"):
        return False
    return sys.stderr.isatty()


def threads() -> int:
    """Worker threads for Numba kernels: RECSYS_THREADS, else every core."""
    value = os.environ.get("RECSYS_THREADS")
    return max(1, int(value)) if value else max(1, os.cpu_count() or 1)
