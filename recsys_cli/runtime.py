"""Thread control around compute: Numba threads set once, BLAS capped to avoid oversubscription."""

from __future__ import annotations

import contextlib

from recsys_cli.settings import threads


@contextlib.contextmanager
def compute_threads(n: int | None = None):
    """Run Numba kernels on `n` threads (default: RECSYS_THREADS or all cores) with BLAS on 1."""
    import numba
    from threadpoolctl import threadpool_limits

    n = min(n or threads(), numba.config.NUMBA_NUM_THREADS)
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield n
    finally:
        numba.set_num_threads(previous)


def available_memory() -> int | None:
    """Bytes this process may still allocate: the smallest of physical memory, the cgroup limit and
    what RLIMIT_AS leaves above the current address space; None where none can be read."""
    import os

    limits: list[int] = []
    try:
        limits.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            limits.append(int(text))
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/statm") as fh:
                used = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            limits.append(max(soft - used, 0))
    except (ImportError, OSError, ValueError):
        pass
    return min(limits) if limits else None


def format_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TiB"


CHECK_MEMORY_FROM = 16 << 20  # smaller estimates are not checked: reading the limits costs ~35 us (files in
# /proc and /sys), a sixth of a one-user recommend, and no machine that runs recsys lacks 16 MiB


def check_memory(estimate: int, what: str) -> None:
    """UsageError (exit 2) stating the estimate when `what` would need more memory than is available."""
    from recsys_cli.errors import UsageError

    if estimate < CHECK_MEMORY_FROM:
        return
    avail = available_memory()
    if avail is not None and estimate > avail:
        raise UsageError(f"{what} needs about {format_bytes(estimate)} of memory, more than the "
                         f"{format_bytes(avail)} available; ask for less")
