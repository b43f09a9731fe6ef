"""The one place where command output is shaped: json | jsonl | table | csv.

Data goes to stdout; everything else (progress, logs, warnings) goes to stderr via
`console_err`. The default format is a table for a person at a terminal and JSON when
stdout is piped.
"""

from __future__ import annotations

import csv
import json
import math
import re
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
    caption: str | None = None,
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
        if columns:  # the declared columns first, in order (one holding objects becomes its dotted columns), then
            # every other key of the rows: CSV has the same columns as JSON/JSONL
            first = [x for c in columns for x in ([k for k in cols if k.startswith(f"{c}.")] or [c])]
            cols = first + [k for k in cols if k not in first]
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(cols)
        for row in flat:
            writer.writerow([_csv_cell(row.get(c)) for c in cols])
        return
    cols = list(columns) if columns else _columns(rows)
    from rich.console import Console
    from rich.table import Table

    # Piped tables (logs, README captures) get a wide page instead of rich's 80-column default.
    width = None if getattr(out, "isatty", lambda: False)() else _piped_width()
    console = Console(file=out, width=width)
    table = Table(title=title, caption=caption, show_lines=False)
    for c in cols:
        table.add_column(c, overflow="fold")
    for row in rows:
        table.add_row(*[_fmt_cell(row.get(c)) for c in cols])
    console.print(fit_table(table, console.width))


def names_say_models(rows: Iterable[Mapping[str, Any]]) -> bool:
    """Every row's run name starts with its model (`svd-ml-100k-random`), as default names do: a table
    can then leave the model column out."""
    return all(str(r["run"]) == str(r["model"]) or str(r["run"]).startswith(f"{r['model']}-") for r in rows)


def fit_table(table, width: int):
    """`table` (a rich Table of text cells) laid out to fit `width` columns without splitting words where avoidable.

    Rich shrinks the widest columns of a table that is too wide down to any width, which splits
    words ('surprise=1' / '00') or elides them ('impress…'). Here each column that may wrap gets
    a width from `fit_widths` (at least its longest word when the words fit at all), and a word
    that still does not fit is broken at a comma, slash, '=', '_' or '-' (`break_words`). Columns
    with no_wrap keep their width. Returns the table, for `console.print(fit_table(t, console.width))`.
    """
    from rich.text import Text

    columns = table.columns
    if not columns:
        return table

    def plain(cell) -> str | None:
        return cell if isinstance(cell, str) else cell.plain if isinstance(cell, Text) else None

    texts = [[plain(c.header) or "", *(plain(cell) for cell in c.cells)] for c in columns]
    if any(text is None for col in texts for text in col):
        return table  # other renderables: rich lays them out
    top, right, bottom, left = table.padding
    pads = [(left if i or table.pad_edge else 0) + (right if i < len(columns) - 1 or table.pad_edge else 0)
            for i in range(len(columns))]
    chrome = sum(pads) + ((2 if table.show_edge else 0) + len(columns) - 1 if table.box else 0)
    fixed = [c.no_wrap or c.width is not None for c in columns]
    header = [col[0] for col in texts]
    body = [list(row) for row in zip(*(col[1:] for col in texts), strict=True)]
    widths = fit_widths(header, body, width - chrome, fixed=fixed)
    if widths is None:
        return table
    for i, column in enumerate(columns):
        if fixed[i]:
            continue
        column.width, column.overflow = widths[i], "fold"
        if isinstance(column.header, str):
            column.header = break_words(column.header, widths[i])
        column._cells = [break_words(cell, widths[i]) if isinstance(cell, str) else cell for cell in column._cells]
    return table


BREAK_AFTER = ",;/|=&_-"  # where a word too long for its column is broken (after the character); else it folds
HARD = 3  # a fold mid-letters costs as much as three breaks at a comma, slash or dash


def _pieces(word: str, width: int) -> tuple[list[str], int]:
    """`word` cut into pieces of at most `width` characters, after a break character where it has one;
    and the cost of the cuts (1 per cut at a break character, HARD per cut mid-letters)."""
    out, cost = [], 0
    while len(word) > width:
        head = word[:width]  # after a list separator if the piece has one, else after = _ or -
        cut = max((i + 1 for i, ch in enumerate(head) if ch in ",;/|&"), default=0) or \
            max((i + 1 for i, ch in enumerate(head) if ch in BREAK_AFTER), default=0)
        cost += 1 if cut else HARD
        cut = cut or width
        out.append(word[:cut])
        word = word[cut:]
    return ([*out, word] if word else out), cost


def fit_widths(header: Sequence[str], body: Sequence[Sequence[str]], room: int,
               fixed: Sequence[bool] | None = None) -> list[int] | None:
    """Column widths (of cell text) that fit `room` characters without splitting a word where avoidable.

    None when every column fits as it is. Otherwise each column gets at least its longest word
    (so rich wraps its text at spaces) and the room left goes to the narrowest columns first:
    short columns stay on one line and the long ones (descriptions) wrap. Only when the longest
    words alone do not fit are columns narrowed further, one character at a time where that
    costs least: a word broken at a comma, slash, '=', '_' or '-' costs 1 per break, one folded
    mid-letters costs 3, and between equal costs the wider column gives. `break_words` then cuts
    the words as costed. A `fixed` column keeps its full width.
    """
    from collections import Counter

    from rich.cells import cell_len

    n = len(header)
    if n == 0:
        return None
    columns = [[header[i], *(row[i] for row in body)] for i in range(n)]
    natural = [max(cell_len(line) for cell in col for line in (cell.splitlines() or [""])) for col in columns]
    if sum(natural) <= room:
        return None
    fixed = list(fixed or [False] * n)
    # each column's distinct words with their counts, longest first
    words = [sorted(Counter(word for cell in col for word in cell.split()).items(), key=lambda wc: -len(wc[0]))
             for col in columns]
    least = [nat if fixed[i] else min(nat, len(words[i][0][0]) if words[i] else 1) for i, nat in enumerate(natural)]

    def cost(i: int, width: int) -> int:
        total = 0
        for word, count in words[i]:
            if len(word) <= width:
                break
            total += count * _pieces(word, width)[1]
        return total

    while sum(least) > room:  # the longest words alone are too wide: narrow the column where that costs least
        narrowable = [i for i in range(n) if least[i] > 4 and not fixed[i]]
        if not narrowable:
            break
        i = min(narrowable, key=lambda i: (cost(i, least[i] - 1) - cost(i, least[i]), -least[i]))
        least[i] -= 1

    def capped(level: int) -> list[int]:
        return [min(nat, max(low, level)) for nat, low in zip(natural, least, strict=True)]

    level = 0
    while level < max(natural) and sum(capped(level + 1)) <= room:
        level += 1
    widths = capped(level)
    spare = room - sum(widths)
    for i in range(n):  # what is left after the last full level: one more character to the first columns that want it
        if spare > 0 and widths[i] < natural[i] and widths[i] == level:
            widths[i] += 1
            spare -= 1
    return widths


def break_words(text: str, width: int) -> str:
    """`text` with each word longer than `width` cut onto lines of at most `width` (`_pieces`: after
    , ; / | = & _ - where it has one, else at `width`); shorter words are left for rich to wrap at spaces."""
    if all(len(word) <= width for word in text.split()):
        return text
    return re.sub(r"\S+", lambda m: "\n".join(_pieces(m.group(0), width)[0]), text)


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
