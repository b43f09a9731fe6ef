"""Shell completion of run, dataset and model names (`recsys --install-completion`).

Completion runs on every Tab press, so these read directory listings and the model registry
only: no numpy, polars, scipy or numba import on this path (tests/test_completion.py checks).
"""

from __future__ import annotations

import os
from collections.abc import Callable


def _names(root, marker: str) -> list[str]:
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return []
    return [e.name for e in entries if not e.name.startswith(".") and os.path.isfile(os.path.join(e.path, marker))]


def _root_option(ctx, name: str):
    """The value of --data-dir/--artifacts-dir given on the line being completed, if any."""
    while ctx is not None:
        value = ctx.params.get(name)
        if value:
            return value
        ctx = ctx.parent
    return None


def runs(ctx, param, incomplete: str) -> list[str]:
    from recsys_cli.settings import artifacts_dir

    return [n for n in _names(artifacts_dir(_root_option(ctx, "artifacts_dir")), "manifest.json")
            if n.startswith(incomplete)]


def datasets(ctx, param, incomplete: str) -> list[str]:
    from recsys_cli.settings import data_dir

    root = data_dir(_root_option(ctx, "data_dir"))
    names = set(_names(root / "processed", "dataset.json"))
    return sorted(n for n in names if n.startswith(incomplete))


def models(ctx, param, incomplete: str) -> list[str]:
    from recsys_cli.models.registry import SURPRISE_PREFIX, model_names

    text = incomplete.rpartition(",")[2]  # --model bias,sv<TAB>
    head = incomplete[: len(incomplete) - len(text)]
    return [head + n for n in [*model_names(), SURPRISE_PREFIX] if n.startswith(text)]


def sources(ctx, param, incomplete: str) -> list[str]:
    """preprocess SOURCE: downloaded or generated raw datasets (paths complete as files by the shell)."""
    from recsys_cli.settings import data_dir

    root = data_dir(_root_option(ctx, "data_dir")) / "raw"
    try:
        names = [e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")]
    except OSError:
        names = []
    return sorted(n for n in names if n.startswith(incomplete))


# parameter name -> completer; applied by name to every command (one table, no per-command wiring)
BY_NAME: dict[str, Callable] = {
    "run": runs, "runs": runs, "run_a": runs, "run_b": runs,
    "dataset": datasets, "model": models, "models": models, "source": sources,
}


def attach(command) -> None:
    """Give every parameter of the command tree whose name has a completer that completer."""
    for param in getattr(command, "params", []):
        fn = BY_NAME.get(param.name or "")
        if fn is not None and getattr(param, "_custom_shell_complete", None) is None:
            param._custom_shell_complete = fn
    for sub in getattr(command, "commands", {}).values():
        attach(sub)
