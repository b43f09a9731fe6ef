"""Dataset insights and model reports for a person or a program: one emitter for every format."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def long_rows(ins: Any):
    """Everything in one long list, each row tagged with its `table`: the key numbers ({"table": "summary",
    "key", "value"}), the findings ({"table": "statements", "statement"}), then every table's rows."""
    yield from ({"table": "summary", "key": k, "value": v} for k, v in ins.summary.items())
    yield from ({"table": "statements", "statement": text} for text in ins.statements)
    yield from ({"table": n, **row} for n, table in ins.tables.items() for row in table.iter_rows(named=True))


def emit_insights(ins: Any, fmt: str, written: list[Path], summary, console) -> None:
    """`summary(ins, console)` for a table; one JSON object; JSONL and CSV: the same long rows (`long_rows`)."""
    from recsys_cli.output import emit

    if fmt == "table":
        summary(ins, console)
    elif fmt == "json":
        emit({**ins.to_dict(), "written": [str(p) for p in written]}, "json")
    else:
        emit(long_rows(ins) if fmt == "jsonl" else list(long_rows(ins)), fmt, columns=["table"])


def written_lines(ins: Any, written: list[Path], out: Path | None, html: Path | None) -> list[str]:
    """What --out / --html wrote, one line each for stderr."""
    lines = []
    if out is not None:
        figures = sum(1 for p in written if p.suffix == ".png")
        lines.append(f"wrote {figures} figures (PNG + SVG) and {len(ins.tables)} tables (CSV) to {out}")
    if html is not None:
        lines.append(f"wrote {html}")
    return lines
