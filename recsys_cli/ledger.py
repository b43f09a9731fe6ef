"""The run ledger: every train, evaluate and tune recorded in `artifacts/ledger.sqlite`.

stdlib sqlite3 in WAL mode; each record is one short transaction with a busy timeout,
so concurrent commands append without corrupting the file.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from recsys_cli import __version__
from recsys_cli.settings import artifacts_dir

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    kind TEXT NOT NULL,              -- train | evaluate | tune | tune-trial
    run TEXT,                        -- run name when an artifact exists
    command TEXT,
    model TEXT,
    params TEXT,                     -- JSON
    seed INTEGER,
    dataset TEXT,
    fingerprint TEXT,
    split TEXT,
    protocol TEXT,                   -- JSON
    metrics TEXT,                    -- JSON name -> value
    timings TEXT,                    -- JSON
    versions TEXT,                   -- JSON
    git_sha TEXT
);
CREATE INDEX IF NOT EXISTS entries_model ON entries(model);
CREATE INDEX IF NOT EXISTS entries_dataset ON entries(dataset);
"""


def ledger_path(root=None) -> Path:
    return artifacts_dir(root) / "ledger.sqlite"


def lock_timeout() -> float:
    """Seconds a write waits for another writer's lock ($RECSYS_LEDGER_TIMEOUT, default 30)."""
    try:
        return max(0.0, float(os.environ.get("RECSYS_LEDGER_TIMEOUT", "30")))
    except ValueError:
        return 30.0


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not path.is_file():
        raise sqlite3.OperationalError(f"{path} is not a file")
    wait = lock_timeout()
    conn = sqlite3.connect(path, timeout=wait, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")
    # Switching a new file to WAL and creating the schema can meet "database is locked" without
    # SQLite's busy handler being called (two processes creating the ledger at once): retry.
    delay, deadline = 0.01, time.monotonic() + wait
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
            return conn
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                conn.close()
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def package_versions() -> dict[str, str]:
    out = {"recsys": __version__, "python": platform.python_version()}
    for mod in ("numpy", "numba", "polars", "scipy"):
        m = sys.modules.get(mod)
        if m is not None:
            out[mod] = getattr(m, "__version__", "")
    return out


def git_sha() -> str | None:
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=2,
            cwd=Path(__file__).resolve().parent,
        )
        return res.stdout.strip() or None if res.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


LEDGER_FAILURES = (sqlite3.Error, OSError, ValueError, TypeError)


def record(kind: str, *, root=None, **fields: Any) -> int | None:
    """Append one entry; JSON-encodes dict fields. Returns the entry id.

    The ledger is bookkeeping beside results that are already printed or saved, so a ledger that
    cannot be written (corrupt, truncated, another schema, a folder in its place, locked by another
    writer past $RECSYS_LEDGER_TIMEOUT) costs one `warning:` line on stderr and returns None; it
    never fails the command (which exits 0).
    """
    try:
        return _record(kind, root=root, **fields)
    except LEDGER_FAILURES as exc:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"warning: run ledger {ledger_path(root)} not updated ({why}); the results are complete and were not affected",
              file=sys.stderr)
        return None


def _record(kind: str, *, root=None, **fields: Any) -> int:
    row = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "kind": kind,
        "command": " ".join(["recsys", *sys.argv[1:]]) if sys.argv and "recsys" in os.path.basename(sys.argv[0]) else None,
        "versions": package_versions(),
        "git_sha": git_sha(),
    }
    row.update(fields)
    cols = [c for c in row if row[c] is not None]
    values = [json.dumps(row[c], default=_default) if isinstance(row[c], (dict, list)) else row[c] for c in cols]
    conn = _connect(ledger_path(root))
    try:
        conn.execute("BEGIN IMMEDIATE")
        cur = conn.execute(
            f"INSERT INTO entries ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", values
        )
        conn.execute("COMMIT")
        return int(cur.lastrowid)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()


def query(
    *, root=None, kind: str | None = None, model: str | None = None, dataset: str | None = None,
    sort: str | None = None, limit: int | None = None,
) -> list[dict[str, Any]]:
    """Entries, newest first, or sorted by a metric (ascending for errors, descending otherwise)."""
    check_filters(kind=kind, sort=sort)
    path = ledger_path(root)
    if not path.exists():
        return []
    try:
        return _query(path, kind=kind, model=model, dataset=dataset, sort=sort, limit=limit)
    except LEDGER_FAILURES as exc:
        from recsys_cli.errors import ArtifactError

        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(f"cannot read the run ledger {path}: {why}; move it aside to start a new one") from None


def _query(path: Path, *, kind, model, dataset, sort, limit) -> list[dict[str, Any]]:
    conn = _connect(path)
    try:
        conn.row_factory = sqlite3.Row
        where, args = [], []
        for col, val in (("kind", kind), ("model", model), ("dataset", dataset)):
            if val:
                where.append(f"{col} = ?")
                args.append(val)
        sql = "SELECT * FROM entries" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id DESC"
        rows = [dict(r) for r in conn.execute(sql, args)]
    finally:
        conn.close()
    for r in rows:
        for c in ("params", "protocol", "metrics", "timings", "versions"):
            if r.get(c):
                r[c] = json.loads(r[c])
                if not isinstance(r[c], dict):  # every format and --sort read these as objects
                    raise ValueError(f"entry {r.get('id')}: {c} is JSON {type(r[c]).__name__}, not an object")
        bad = [m for m, v in (r.get("metrics") or {}).items()
               if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))]
        if bad:
            raise ValueError(f"entry {r.get('id')}: metric {bad[0]!r} is not a number")
    if sort:
        rows = sort_by_metric([r for r in rows if isinstance(r.get("metrics"), dict)], sort)
    return rows[:limit] if limit else rows


KINDS = ("train", "evaluate", "tune", "tune-trial")
RUN_FIGURES = ("fallback_share", "users_evaluated", "users_skipped")  # recorded beside the metrics


def check_filters(*, kind: str | None = None, sort: str | None = None) -> None:
    """UsageError for a --kind or --sort nothing can match (a typo would otherwise list nothing)."""
    from recsys_cli.errors import UsageError

    if kind is not None and kind not in KINDS:
        raise UsageError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    if sort is None:
        return
    from recsys_cli.evaluation.tuning import AT_K_METRICS, PLAIN_METRICS, check_metric

    name = sort[:-4] if sort.endswith("_std") else sort
    if name in RUN_FIGURES:
        return
    try:
        check_metric(name)
    except UsageError:
        base = name.partition("@")[0]
        hint = f" (did you mean {base}@10?)" if base in AT_K_METRICS and "@" not in name else ""
        known = ", ".join([*PLAIN_METRICS, *(f"{m}@K" for m in AT_K_METRICS), *RUN_FIGURES])
        raise UsageError(f"cannot sort by {sort!r}{hint}; known metrics: {known}") from None


def lower_is_better(metric: str) -> bool:
    """Errors and popularity bias are minimised; every other metric is maximised."""
    return metric.partition("@")[0] in ("rmse", "mae", "popularity_bias")


def sort_by_metric(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Rows having `metric` in their "metrics", best first."""
    have = [r for r in rows if r["metrics"].get(metric) is not None]
    have.sort(key=lambda r: r["metrics"][metric], reverse=not lower_is_better(metric))
    return have


def _default(obj: Any):
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(type(obj).__name__)
