"""recsys: MovieLens to trained, evaluated and A/B-compared recommenders, as a library and a CLI.

    import recsys_cli as rs
    model = rs.train("svd", rs.load_dataset("ml-100k"), seed=42)

The public names (`rs.train`, `rs.evaluate`, `rs.from_frame`, ...) live in `recsys_cli.api`
and are loaded on first use, so `recsys --help` stays fast: numba, scipy and polars are
imported only by the calls that need them.
"""

from __future__ import annotations

import sys
import types

__version__ = "0.1.0"

_API = (
    "ABTestResult", "BanditResult", "BenchmarkReport", "abtest", "abtest_plan", "bandit", "benchmark", "model_report",
    "Comparison", "Dataset", "EvaluationResult", "Manifest", "Predictions", "Recommendations", "Recommender", "Run",
    "Similar", "compare", "create_model", "create_split", "cross_validate", "dataset_info", "datasets", "download", "evaluate", "from_frame", "generate",
    "list_runs", "load_dataset", "load_run", "metrics", "predict", "preprocess", "recommend", "save", "similar",
    "train", "train_run", "tune", "TuneResult", "item_metadata",
)
_ERRORS = ("RecsysError", "UsageError", "ConfigError", "DataError", "ArtifactError", "UnknownIdError")

__all__ = ["__version__", *_API, *_ERRORS]


class _Package(types.ModuleType):
    """This package's module type. Importing a submodule sets it as an attribute of its parent, and the
    subpackage `recsys_cli.abtest` shares its name with the API function `abtest`: after the first A/B call
    (or anything importing `recsys_cli.abtest.*`) `rs.abtest` was that package, not callable. A submodule
    named like an API function is therefore not set here; import it with `from recsys_cli.abtest import x`."""

    def __setattr__(self, name: str, value) -> None:
        if name in _API and isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}":
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name in _API:
        import recsys_cli.api as api

        return getattr(api, name)
    if name in _ERRORS:
        from recsys_cli import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'recsys_cli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
