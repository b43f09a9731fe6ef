"""Option bundles shared by commands (Typer `Annotated` aliases) and small CLI helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def command_group(cls, help_text: str | None, *, completion: bool = False) -> typer.Typer:
    """A Typer group as every recsys group is set up: -h/--help, plain help text; shell completion on the root."""
    return typer.Typer(
        cls=cls,
        help=help_text,
        no_args_is_help=True,
        add_completion=completion,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )


FormatOpt = Annotated[
    Optional[str],
    typer.Option("--format", "-f", help="Output format: json, jsonl, table or csv (default: table on a terminal, json when piped)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Shorthand for --format json.")]
DataDirOpt = Annotated[
    Optional[Path],
    typer.Option("--data-dir", help="Data root (default: $RECSYS_DATA_DIR or ./data).", show_default=False),
]
ArtifactsDirOpt = Annotated[
    Optional[Path],
    typer.Option("--artifacts-dir", help="Runs root (default: $RECSYS_ARTIFACTS_DIR or ./artifacts).", show_default=False),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed; same seed, data and threads give the same result.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace an existing result.")]
ParamOpt = Annotated[
    Optional[list[str]],
    typer.Option("--param", "-p", help="Hyperparameter as key=value (repeatable), e.g. -p factors=64."),
]

MlflowOpt = Annotated[
    bool,
    typer.Option(
        "--mlflow",
        help="Also log to MLflow (needs the mlflow extra: pip install 'recsys-cli[mlflow]'): to $MLFLOW_TRACKING_URI, "
        "else a local store in <artifacts-dir>/mlruns. Metric names use _at_ for @ (ndcg@10 -> ndcg_at_10).",
    ),
]
MlflowExperimentOpt = Annotated[
    Optional[str],
    typer.Option(
        "--mlflow-experiment", metavar="NAME",
        help="MLflow experiment for --mlflow (default: $RECSYS_MLFLOW_EXPERIMENT or recsys).", show_default=False,
    ),
]


def parse_params(items: list[str] | None) -> dict[str, str]:
    """Parse repeated key=value options into a dict of raw strings (the config coerces types)."""
    from recsys_cli.errors import UsageError

    params: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise UsageError(f"--param expects key=value, got {item!r}")
        params[key] = value.strip()
    return params


def model_params(items: list[str] | None, models: list[str] | None = None) -> dict[str, dict[str, str]]:
    """`-p MODEL.key=value` options per model (names as typed, '-' and '_' alike).

    With `models` (evaluate), an unprefixed key goes to every model and a prefix must name one
    of them; without (benchmark), every key needs its MODEL prefix.
    """
    from recsys_cli.errors import UsageError

    def norm(name: str) -> str:
        return name.replace("_", "-")

    out: dict[str, dict[str, str]] = {norm(m): {} for m in models or []}
    for key, value in parse_params(items).items():
        target, dot, sub = key.rpartition(".")
        if not dot:
            if models is None:
                raise UsageError(f"--param {key}: write MODEL.key=value, e.g. ials.factors=64")
            for params in out.values():
                params[key] = value
            continue
        if models is not None and norm(target) not in out:
            raise UsageError(f"--param {key}: {target!r} is not one of the evaluated models ({', '.join(models)})")
        out.setdefault(norm(target), {})[sub] = value
    return out
