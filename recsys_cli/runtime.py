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
