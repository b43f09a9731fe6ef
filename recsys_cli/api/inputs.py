"""Files of ids given to a command (`--users-file`, `--pairs-file`), read strictly.

A path or `-` for stdin; UTF-8 with or without a byte-order mark; a header naming the columns.
Directories, unreadable files and binary garbage are DataErrors (exit 3) naming the file.
"""

from __future__ import annotations

import csv
import io
import os
import re
import sys
from pathlib import Path
from typing import IO

from recsys_cli.errors import DataError

MAX_ID_FILE_BYTES = 1 << 30  # 1 GiB of ids is already ~100M rows


_INT = re.compile(r"-?[0-9]+")


def parse_int(text: str) -> int:
    """An id as written in a file or on the command line: optional minus and ASCII digits only (Python's int()
    also takes '1_0', '+3' and non-ASCII digits, which would quietly name another id). ValueError otherwise."""
    text = text.strip()
    if not _INT.fullmatch(text):
        raise ValueError(text)
    return int(text)


def _read_text(path: str | os.PathLike, stdin: IO[bytes] | None = None) -> tuple[str, str]:
    """(text, name for messages): the whole file decoded as UTF-8, BOM stripped."""
    if str(path) == "-":
        name = "<stdin>"
        stream = stdin if stdin is not None else sys.stdin.buffer
        raw = stream.read(MAX_ID_FILE_BYTES + 1)
    else:
        p = Path(path)
        name = str(p)
        if not p.exists():
            raise DataError(f"{p} does not exist")
        if p.is_dir():
            raise DataError(f"{p} is a directory, not a CSV file")
        try:
            with open(p, "rb") as fh:
                raw = fh.read(MAX_ID_FILE_BYTES + 1)
        except OSError as exc:
            raise DataError(f"cannot read {p}: {exc.strerror or exc}") from None
    if isinstance(raw, str):  # a text stream (tests, notebooks)
        raw = raw.encode("utf-8")
    if len(raw) > MAX_ID_FILE_BYTES:
        raise DataError(f"{name} is larger than {MAX_ID_FILE_BYTES >> 20:,} MiB; split it")
    if b"\x00" in raw:
        raise DataError(f"{name} is not a text CSV file (it contains NUL bytes)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{name} is not UTF-8 text (byte {exc.start}); expected a CSV with a header") from None
    return text, name


def read_id_columns(path: str | os.PathLike, columns: tuple[str, ...], *, stdin: IO[bytes] | None = None,
                    optional: tuple[str, ...] = ()) -> list[list[int] | None]:
    """Read a CSV with a header containing `columns` (`-`: stdin); one list of ints per column, then one per
    `optional` column: its values where the header has it, else None."""
    text, name = _read_text(path, stdin)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in columns if c not in header]
        if missing:
            got = ", ".join(header)[:200] or "nothing"
            raise DataError(f"{name}:1: header must contain {', '.join(columns)} (got {got})")
        present = [c for c in optional if c in header]
        columns = (*columns, *present)
        out: list[list[int]] = [[] for _ in columns]
        pos = [header.index(c) for c in columns]
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not x.strip() for x in row):
                continue
            try:
                for k, p in enumerate(pos):
                    value = parse_int(row[p])
                    if not -2**63 <= value < 2**63:
                        raise ValueError
                    out[k].append(value)
            except (ValueError, IndexError):
                raise DataError(f"{name}:{lineno}: expected integer {', '.join(columns)} (64-bit), "
                                f"got {row!r}"[:300]) from None
    except csv.Error as exc:
        raise DataError(f"{name}: not a CSV file ({exc})") from None
    found = dict(zip(columns, out, strict=True))
    return out[: len(columns) - len(present)] + [found.get(c) for c in optional]
