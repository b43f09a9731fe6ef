"""`recsys benchmark`: timing, memory, disk and quality of every step, with peers side by side.

    harness   run_benchmark (plan units, run each in a fresh process, ratios)
    datasets  which data (real MovieLens or synthetic), splits
    units     the data steps and our models' steps
    peers     scikit-surprise and implicit doing the same work
    measure   the timing protocol, result rows, quality metrics
    machine   machine description, per-step peak memory, sizes on disk
    report    the plain-text tables
    suites    --suite polars500k
    readme    the README benchmark section (`python -m recsys_cli.bench.readme`)
"""
