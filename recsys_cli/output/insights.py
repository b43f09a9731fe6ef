"""Dataset insights and model reports for a person or a program: one emitter for every format."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def emit_insights(ins: Any, fmt: str, written: list[Path], summary, console) -> None:
    """`summary(ins, console)` for a table; every table as JSON / JSONL rows; the key numbers as CSV."""
    from recsys_cli.output import emit

    if fmt == "table":
        summary(ins, console)
    elif fmt == "json":
        emit({**ins.to_dict(), "written": [str(p) for p in written]}, "json")
    elif fmt == "jsonl":
        emit(({"table": n, **row} for n, table in ins.tables.items() for row in table.iter_rows(named=True)), "jsonl")
    else:
        emit([{"key": k, "value": v} for k, v in ins.summary.items()], "csv")


def written_lines(ins: Any, written: list[Path], out: Path | None, html: Path | None) -> list[str]:
    """What --out / --html wrote, one line each for stderr."""
    lines = []
    if out is not None:
        figures = sum(1 for p in written if p.suffix == ".png")
        lines.append(f"wrote {figures} figures (PNG + SVG) and {len(ins.tables)} tables (CSV) to {out}")
    if html is not None:
        lines.append(f"wrote {html}")
    return lines
