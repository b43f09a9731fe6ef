"""recsys: MovieLens to trained, evaluated and A/B-compared recommenders from one CLI.

Only the version lives here so that `recsys --help` stays fast; numba, scipy and
polars are imported lazily by the commands that need them.
"""

__version__ = "0.1.0"
