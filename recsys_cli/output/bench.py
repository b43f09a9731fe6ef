"""Plain tables of a benchmark report: a header line (date, machine), the rows, the ratios, the notes."""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

TABLE_WIDTH = 120  # when stdout is not a terminal and COLUMNS is unset (files, the README)


def _num(x: float | None, digits: int = 4) -> str:
    if x is None:
        return ""
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{digits}f}"


def _rate(x: float | None) -> str:
    if x is None:
        return ""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= size:
            return f"{x / size:.3g}{suffix}/s"
    return f"{x:.3g}/s"


_SHORT = {"precision@10": "p@10", "recall@10": "r@10", "s_per_iter": "s/iter"}


def _quality(metrics: dict[str, Any]) -> str:
    return " ".join(f"{_SHORT.get(k, k)} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))


def header_lines(report: dict[str, Any]) -> list[str]:
    """Date and machine, then data and settings: the lines quoted above every table."""
    m = report["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    lines = [
        f"{m['date']} · {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB RAM, {m['os']} · "
        f"Python {m['python']} · {versions}"
    ]
    ds, st = report.get("dataset"), report.get("settings", {})
    if ds:
        counts = ", ".join(f"{ds[k]:,} {k}" for k in ("ratings", "users", "items") if ds.get(k) is not None)
        lines.append(
            f"scale {report['scale']}: {ds['name']} ({ds['source']}; {counts}) · threads {st.get('threads')} · "
            f"repeat {st.get('repeat')} · memory: {st.get('memory')}"
        )
    return lines


def _console(out: TextIO):
    from rich.console import Console

    tty = hasattr(out, "isatty") and out.isatty()
    width = None if tty or os.environ.get("COLUMNS") else TABLE_WIDTH
    return Console(file=out, width=width, highlight=False)


def _line(console, text: str) -> None:
    """One header or note line: whole on a page of TABLE_WIDTH or more (files, the README), wrapped at
    spaces on a narrower terminal."""
    console.print(text, markup=False, soft_wrap=console.width >= TABLE_WIDTH)


def _table(console, title: str):
    """A table as in the README on a wide page; on a narrower terminal without the outer border and edge
    padding (four more columns for the cells), so that its words fit 80 columns."""
    from rich import box
    from rich.table import Table

    if console.width >= TABLE_WIDTH:
        return Table(title=title)
    return Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)


def render_table(report: dict[str, Any], out: TextIO | None = None) -> None:
    """The benchmark report as text: header lines, rows table, ratios table, notes."""

    from recsys_cli.output import fit_table

    console = _console(out or sys.stdout)
    for line in header_lines(report):
        _line(console, line)
    rows = _table(console, f"recsys benchmark · {report['scale']}")
    for name, justify in (("model", "left"), ("impl", "left"), ("step", "left"), ("seconds", "right"),
                          ("compile s", "right"), ("peak MB", "right"), ("throughput", "right"),
                          ("disk MB", "right")):
        rows.add_column(name, justify=justify)
    rows.add_column("quality", overflow="fold")
    skipped: list[str] = []
    for r in report["rows"]:
        model = r["model"] or ("(data)" if r["implementation"] == "recsys" else "-")
        if r.get("skipped"):
            what = " / ".join(x for x in (r["model"], r["implementation"], r["step"]) if x)
            skipped.append(f"skipped ({what}): {r['skipped']}")
        rows.add_row(
            model, r["implementation"], r["step"] or "", _num(r["seconds"]), _num(r["compile_seconds"], 3),
            _num(r["peak_rss_mb"], 1), _rate(r["throughput"]), _num(r["artifact_mb"], 3),
            "skipped (see below)" if r.get("skipped") else _quality(r["metrics"]),
        )
    console.print(fit_table(rows, console.width))
    if report["ratios"]:
        ratios = _table(console, "ours / peer seconds (< 1: recsys is faster)")
        for name, justify in (("model", "left"), ("peer", "left"), ("step", "left"), ("ratio", "right"),
                              ("reading", "left")):
            ratios.add_column(name, justify=justify)
        for r in report["ratios"]:
            ratios.add_row(r["model"], r["peer"], r["step"], f"{r['ratio']:.3g}", ratio_reading(r["ratio"]))
        console.print(fit_table(ratios, console.width))
    for line in skipped + [f"note: {note}" for note in report.get("notes", [])]:
        _line(console, line)


def render_suite_table(report: dict[str, Any], out: TextIO | None = None) -> None:
    """A suite report (e.g. polars500k): header lines, one row per task."""

    from recsys_cli.output import fit_table

    console = _console(out or sys.stdout)
    for line in header_lines(report):
        _line(console, line)
    table = _table(console, f"recsys benchmark --suite {report['suite']} · {report['scale']}")
    for name, justify in [("task", "left"), ("seconds", "right"), ("peak MB", "right"), ("detail", "left")]:
        table.add_column(name, justify=justify, overflow="fold")
    for r in report["rows"]:
        table.add_row(r["task"], _num(r["seconds"]), _num(r["peak_rss_mb"], 1), r["detail"])
    console.print(fit_table(table, console.width))
    for note in report.get("notes", []):
        _line(console, f"note: {note}")


def ratio_reading(x: float) -> str:
    """'3.2x faster', '1,250x faster', '1.3x slower' or 'about the same' for a ratio ours/peer."""
    if abs(x - 1) < 0.05:
        return "about the same"
    factor = 1 / x if x < 1 else x
    text = f"{factor:.1f}" if factor < 100 else f"{factor:,.0f}"
    return f"{text}x {'faster' if x < 1 else 'slower'}"


def render_serve_table(report: dict[str, Any], out=None) -> None:
    """The serve suite as text: header lines, one row per endpoint and concurrency, ratios, notes."""

    from recsys_cli.output import fit_table

    console = _console(out or sys.stdout)
    for line in header_lines({**report, "settings": {**report["settings"], "repeat": 1}}):
        _line(console, line)
    s = report["settings"]
    table = _table(console, f"recsys benchmark --suite serve · {report['scale']} · {s['model']}")
    for name, justify in (("endpoint", "left"), ("clients", "right"), ("requests", "right"), ("errors", "right"),
                          ("req/s", "right"), ("p50 ms", "right"), ("p95 ms", "right"), ("p99 ms", "right"),
                          ("peak MB", "right")):
        table.add_column(name, justify=justify)
    for r in report["rows"]:
        table.add_row(r["task"], str(r["concurrency"]), f"{r['requests']:,}", str(r["errors"]),
                      f"{r['rps']:,.0f}" if r["rps"] else "", f"{r['p50_ms']:.2f}", f"{r['p95_ms']:.2f}",
                      f"{r['p99_ms']:.2f}", "" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.0f}")
    console.print(fit_table(table, console.width))
    if report["ratios"]:
        ratios = _table(console, "throughput ratios")
        for name, justify in (("clients", "right"), ("ratio", "left"), ("value", "right")):
            ratios.add_column(name, justify=justify)
        for r in report["ratios"]:
            ratios.add_row(str(r["concurrency"]), r["what"], f"{r['ratio']:.2f}")
        console.print(fit_table(ratios, console.width))
    for note in report.get("notes", []):
        _line(console, f"note: {note}")
