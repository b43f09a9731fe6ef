"""What a benchmark ran on, and how its memory and disk use are measured.

Peak memory per step. `ru_maxrss` is process-wide and only grows, so it cannot say what
one step needed. On Linux the kernel tracks the resident high-water mark (VmHWM in
/proc/self/status) and lets a process reset it to the current RSS by writing "5" to
/proc/self/clear_refs; `PeakRSS` resets it when a step starts and reads it when the step
ends: an exact kernel-kept peak, no sampling. Where that is unavailable it falls back to a
thread polling /proc/self/statm every 5 ms (it can miss a spike shorter than that), and on
systems without /proc to ru_maxrss (the process peak so far, labelled by `PeakRSS.method`).
The number is the whole process's peak while the step ran: interpreter, libraries and the
loaded data included. The harness runs every model in its own fresh process so one model's
leftovers never count against another.
"""

from __future__ import annotations

import os
import platform
import re
import threading
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATM = Path("/proc/self/statm")
_MB = 1024 * 1024

# Distribution names whose versions the report records (missing ones are null).
VERSIONED = {
    "recsys": "recsys",
    "numpy": "numpy",
    "scipy": "scipy",
    "numba": "numba",
    "polars": "polars",
    "pyarrow": "pyarrow",
    "threadpoolctl": "threadpoolctl",
    "surprise": "scikit-surprise",
    "implicit": "implicit",
}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_name() -> str:
    """The CPU model as the OS reports it (Linux /proc/cpuinfo, else platform)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return re.sub(r"\s+", " ", line.split(":", 1)[1]).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def memory_gb() -> float | None:
    """Total physical memory in GB (None if the OS does not say)."""
    try:
        match = re.search(r"MemTotal:\s+(\d+)\s+kB", Path("/proc/meminfo").read_text())
        if match:
            return round(int(match.group(1)) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1)
    except (ValueError, OSError, AttributeError):
        return None


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_info() -> dict[str, Any]:
    """cpu, cores, memory_gb, python, versions of the libraries involved, date (UTC) and os."""
    from recsys_cli import __version__

    versions = {key: _version(dist) for key, dist in VERSIONED.items()}
    versions["recsys"] = versions["recsys"] or __version__
    return {
        "cpu": cpu_name(),
        "cores": usable_cores(),
        "memory_gb": memory_gb(),
        "python": platform.python_version(),
        "versions": versions,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "os": f"{platform.system()} {platform.release()}",
    }


def dir_size_mb(path: str | os.PathLike) -> float:
    """Bytes of every file under `path` (or of the file itself), in MB."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size / _MB
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / _MB


def _hwm_mb() -> float | None:
    try:
        match = re.search(r"VmHWM:\s+(\d+)\s+kB", _STATUS.read_text())
    except OSError:
        return None
    return int(match.group(1)) / 1024 if match else None


def _rss_mb() -> float | None:
    try:
        pages = int(_STATM.read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / _MB


def _maxrss_mb() -> float:
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / _MB if sys.platform == "darwin" else peak / 1024  # bytes on macOS, kB elsewhere


def _can_reset_hwm() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _hwm_mb() is not None


class PeakRSS:
    """Context manager: `peak_mb` is the process's peak resident memory while the block ran."""

    _method: str | None = None

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def method(cls) -> str:
        """'hwm-reset' (exact), 'statm-poll' (sampled) or 'ru_maxrss' (process peak so far)."""
        if cls._method is None:
            if _can_reset_hwm():
                cls._method = "hwm-reset"
            elif _rss_mb() is not None:
                cls._method = "statm-poll"
            else:
                cls._method = "ru_maxrss"
        return cls._method

    def _poll(self) -> None:
        while not self._stop.is_set():
            rss = _rss_mb()
            if rss is not None and (self.peak_mb is None or rss > self.peak_mb):
                self.peak_mb = rss
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        method = self.method()
        if method == "hwm-reset":
            _CLEAR_REFS.write_text("5")
        elif method == "statm-poll":
            self.peak_mb = _rss_mb()
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        method = self.method()
        if method == "hwm-reset":
            self.peak_mb = _hwm_mb()
        elif method == "statm-poll":
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            rss = _rss_mb()
            if rss is not None and (self.peak_mb is None or rss > self.peak_mb):
                self.peak_mb = rss
        else:
            self.peak_mb = _maxrss_mb()
