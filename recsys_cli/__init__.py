"""recsys: MovieLens to trained, evaluated and A/B-compared recommenders, as a library and a CLI.

    import recsys_cli as rs
    model = rs.train("svd", rs.load_dataset("ml-100k"), seed=42)

The public names (`rs.train`, `rs.evaluate`, `rs.from_frame`, ...) live in `recsys_cli.api`
and are loaded on first use, so `recsys --help` stays fast: numba, scipy and polars are
imported only by the calls that need them.
"""

from __future__ import annotations

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


class _Package(type(__import__("sys"))):
    """This package's module type: a subpackage named like a public function (`recsys_cli.abtest`, the
    A/B test code, and `rs.abtest`, the call) must not replace the function when it is imported.

    Importing `recsys_cli.abtest.x` sets the attribute `abtest` of this package to the subpackage, after
    which `rs.abtest(...)` would be "'module' object is not callable"; the subpackage stays importable
    by name (`from recsys_cli.abtest import experiment`), only the attribute is not overwritten.
    """

    def __setattr__(self, name: str, value) -> None:
        if name in _API and isinstance(value, type(__import__("sys"))):
            return
        super().__setattr__(name, value)


__import__("sys").modules[__name__].__class__ = _Package
