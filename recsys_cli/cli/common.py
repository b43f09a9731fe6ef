"""Option bundles shared by commands (Typer `Annotated` aliases) and small CLI helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

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
