"""The one place where command output is shaped: json | jsonl | table | csv.

Data goes to stdout; everything else (progress, logs, warnings) goes to stderr via
`console_err`. The default format is a table for a person at a terminal and JSON when
stdout is piped.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

FORMATS = ("json", "jsonl", "table", "csv")


def resolve_format(fmt: str | None, as_json: bool = False) -> str:
    if as_json:
        if fmt not in (None, "json", "auto"):
            from recsys_cli.errors import UsageError

            raise UsageError(f"--json and --format {fmt} disagree; give one of them")
        return "json"
    if fmt is None or fmt == "auto":
        return "table" if sys.stdout.isatty() else "json"
    if fmt not in FORMATS:
        from recsys_cli.errors import UsageError

        raise UsageError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def _clean(value: Any) -> Any:
    """Make numpy scalars, NaN and tuples JSON-safe (NaN -> null)."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(_clean(obj), indent=indent, ensure_ascii=False)


def write_text_atomic(path, text: str) -> None:
    """Write `text` to `path` through a temporary file beside it and one os.replace (never half a file)."""
    import os
    import tempfile
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def console_err():
    from rich.console import Console

    return Console(stderr=True)


def console_out():
    from rich.console import Console

    return Console()


def _fmt_cell(value: Any) -> str:
    """A table cell for a person: floats rounded to 4 decimals, nested values inline."""
    value = _clean(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dict):
        return "  ".join(f"{k}={_fmt_cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _csv_cell(value: Any) -> str:
    """A CSV cell for a program: full precision (repr of the float), empty for null."""
    value = _clean(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):  # only lists of plain values remain after flatten()
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def flatten(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects as dotted columns: {"metrics": {"rmse": 0.9}} -> {"metrics.rmse": 0.9}.

    A list of objects (per-fold results) becomes `key.0.sub`, `key.1.sub`, ...; a list of plain
    values stays one cell. CSV output is the JSON object flattened this way, so both hold the
    same values under the same names.
    """
    out: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))  # an empty object adds no column
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Mapping) for v in value):
            for i, item in enumerate(value):
                out.update(flatten(item, f"{name}.{i}."))
        else:
            out[name] = value
    return out


def emit(
    rows: Iterable[Mapping[str, Any]] | Mapping[str, Any],
    fmt: str,
    *,
    columns: Sequence[str] | None = None,
    title: str | None = None,
    stream=None,
) -> None:
    """Write rows (or one object, for json) to stdout in the chosen format."""
    out = stream or sys.stdout
    if isinstance(rows, Mapping):
        if fmt in ("json", "jsonl"):
            out.write(dumps(rows, indent=2 if fmt == "json" else None) + "\n")
            return
        rows = [rows]
    if fmt == "jsonl":
        for row in rows:
            out.write(dumps(row, indent=None) + "\n")
        return
    rows = list(rows)
    if fmt == "json":
        out.write(dumps(rows) + "\n")
        return
    if fmt == "csv":
        flat = [flatten(row) for row in rows]
        cols = _columns(flat)
        if columns:  # the declared columns, in order; one holding objects becomes its dotted columns
            cols = [x for c in columns
                    for x in ([k for k in cols if k.startswith(f"{c}.")] or [c])]
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(cols)
        for row in flat:
            writer.writerow([_csv_cell(row.get(c)) for c in cols])
        return
    cols = list(columns) if columns else _columns(rows)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for c in cols:
        table.add_column(c, overflow="fold")
    for row in rows:
        table.add_row(*[_fmt_cell(row.get(c)) for c in cols])
    # Piped tables (logs, README captures) get a wide page instead of rich's 80-column default.
    width = None if getattr(out, "isatty", lambda: False)() else _piped_width()
    Console(file=out, width=width).print(table)


def _piped_width() -> int:
    """Width of a table written to a file or pipe: $COLUMNS when set (a terminal's), else 120 (logs, README)."""
    import os

    try:
        return max(40, int(os.environ.get("COLUMNS", "")))
    except ValueError:
        return 120


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    cols: list[str] = []
    for row in rows:
        for key in row:
            if key not in cols:
                cols.append(key)
    return cols


TABLE_METRICS = ("rmse", "mae", "precision@{k}", "recall@{k}", "ndcg@{k}", "map@{k}", "mrr@{k}", "hit_rate@{k}",
                 "auc", "coverage@{k}", "novelty@{k}")


def metrics_table(results: list[dict], ks: list[int]) -> tuple[list[dict], list[str]]:
    """Evaluation results as one row per metric and one column per model (fits a terminal with many metrics)."""
    names = [res.get("run") or res["model"] for res in results]
    rows = []
    for pattern in TABLE_METRICS:
        for k in ks if "{k}" in pattern else [None]:
            key = pattern.format(k=k)
            if not any(key in res["metrics"] for res in results):
                continue
            row = {"metric": key}
            for name, res in zip(names, results, strict=False):
                if key in res["metrics"]:
                    std = res["metrics_std"].get(key, 0.0)
                    row[name] = f"{res['metrics'][key]:.4f}" + (f" ± {std:.4f}" if std else "")
            rows.append(row)
    rows.append({"metric": "fit seconds", **{n: f"{r['fit_seconds']:.2f}" for n, r in zip(names, results, strict=False)
                                             if r.get("fit_seconds") is not None}})
    return rows, ["metric", *names]
