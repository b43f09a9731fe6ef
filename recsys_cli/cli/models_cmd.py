"""models: every model's hyperparameters (type, default, allowed values, meaning) and presets."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from recsys_cli.cli.common import FormatOpt, JsonOpt

TABLE_COLUMNS = ["parameter", "type", "default", "allowed", "presets", "doc"]


def allowed(row: dict[str, Any]) -> str | None:
    """The choices ('cg | cholesky') or the range ('>= 1', '0.01 .. 0.5') of one parameter row, for people."""
    if row["choices"]:
        return " | ".join(map(str, row["choices"]))
    low, high = row["low"], row["high"]
    if low is not None and high is not None:
        return f"{low:g} .. {high:g}"
    if low is not None:
        return f">= {low:g}"
    if high is not None:
        return f"<= {high:g}"
    return None


def register(app: typer.Typer) -> None:
    @app.command(
        "models",
        help="List the models and their hyperparameters: type, default, allowed values or range, presets "
        "and a one-line meaning (set them with -p key=value or --preset on train, evaluate, tune).\n\n"
        "Examples:\n\n  recsys models\n\n  recsys models svd\n\n  recsys models surprise:KNNBaseline --format json",
    )
    def models(
        name: Annotated[Optional[str], typer.Argument(
            help="One model (e.g. svd, or surprise:SVD); default: every model.", show_default=False)] = None,
        fmt: FormatOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        from recsys_cli.models.registry import describe_models
        from recsys_cli.output import emit, resolve_format

        fmt = resolve_format(fmt, as_json)
        rows = describe_models(name)
        if fmt in ("json", "jsonl", "csv"):  # CSV is the JSON flattened (presets.NAME columns), like every command
            emit(rows, fmt)
            return
        # One table per model, titled with its name: without a model column the rest fits 80 columns.
        for model in dict.fromkeys(r["model"] for r in rows):
            emit([{**r, "default": _show(r["default"]), "allowed": allowed(r),
                   "presets": {k: _show(v) for k, v in r["presets"].items()}} for r in rows if r["model"] == model],
                 fmt, columns=TABLE_COLUMNS, title=model)


def _show(value: Any) -> Any:
    """Floats as written (0.005, not 0.0050); everything else as is."""
    return format(value, "g") if isinstance(value, float) else value
