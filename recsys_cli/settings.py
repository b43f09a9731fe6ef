"""Paths, environment variables and defaults, resolved in one place."""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_SEED = 42


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """Root of downloaded and processed data: --data-dir, else RECSYS_DATA_DIR, else ./data."""
    return Path(override or os.environ.get("RECSYS_DATA_DIR") or "data")


def _dataset_name(name: str) -> str:
    """A dataset name is one folder name: no separators, no '..', not hidden (UsageError otherwise)."""
    if not name or "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        from recsys_cli.errors import UsageError

        raise UsageError(f"invalid dataset name {name!r}: use letters, digits, '.', '_' or '-', not a path")
    return name


def raw_dir(name: str, override: str | os.PathLike | None = None) -> Path:
    return data_dir(override) / "raw" / _dataset_name(name)


def processed_dir(name: str, override: str | os.PathLike | None = None) -> Path:
    return data_dir(override) / "processed" / _dataset_name(name)


def check_seed(seed) -> int:
    """A seed is an integer in 0 .. 2**63 - 1 (what NumPy's generators take); UsageError otherwise."""
    from recsys_cli.errors import UsageError

    if isinstance(seed, bool) or not isinstance(seed, int) and not hasattr(seed, "__index__"):
        raise UsageError(f"seed must be an integer, got {seed!r}")
    if not 0 <= int(seed) < 2**63:
        raise UsageError(f"seed must be between 0 and 2**63 - 1, got {seed}")
    return int(seed)


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
    if not value:
        return max(1, os.cpu_count() or 1)
    try:
        return min(max(1, int(value)), 4096)
    except ValueError:
        from recsys_cli.errors import UsageError

        raise UsageError(f"RECSYS_THREADS must be a whole number of threads, got {value!r}") from None
