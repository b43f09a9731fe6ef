"""Folders replaced as a whole (runs, processed datasets, raw downloads), recoverably.

A new version is written into a hidden scratch folder `.NAME.PID.RANDOM.tmp` beside its final
place. Replacing moves the old version to `.NAME.PID.RANDOM.old`, the new one in, then deletes
the old one. Nothing is ever half-written in place, but a process killed between the two renames
leaves NAME missing with its old version in the `.old` folder, and a killed writer leaves its
`.tmp` folder: `recover` (called before every read of such a folder) moves an orphaned old
version back and deletes the leftovers of writers that are no longer alive.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# Folders of versions before the PID was in the name match with pid None (their writers are gone).
# '~' is in a split's second file name (splits/NAME~1.parquet, see recsys_cli/data/splits.py).
LEFTOVER_RE = re.compile(r"^\.(?P<name>[A-Za-z0-9][A-Za-z0-9._~-]*?)\.(?:(?P<pid>\d+)\.)?[A-Za-z0-9_-]+\.(?P<kind>tmp|old)$")


def scratch_dir(parent: Path, name: str, *, mode: int = 0o755) -> Path:
    """A new hidden `.NAME.PID.RANDOM.tmp` folder in `parent` (created with its parents)."""
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.{os.getpid()}.", suffix=".tmp", dir=parent))
    tmp.chmod(mode)  # mkdtemp makes it private; data and run folders are not
    return tmp


def replace_dir(new: Path, target: Path) -> None:
    """Move folder `new` to `target`, replacing a previous `target` (see the module docstring)."""
    if not target.exists():
        os.replace(new, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".old", dir=target.parent))
    os.rmdir(old)  # only the unique name is wanted: the old version moves there whole
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)  # put the previous version back
        raise
    shutil.rmtree(old, ignore_errors=True)


def alive(pid: str | None) -> bool:
    """Whether process `pid` of this machine still runs; a leftover without a PID counts as dead."""
    if pid is None or int(pid) == os.getpid():
        return False  # our own leftovers are from an earlier, failed step
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists, owned by someone else
    return True


def recover(parent: Path, name: str | None = None, *, complete: Callable[[Path], bool] = Path.is_dir) -> list[str]:
    """Move back orphaned old versions (`complete(folder)` says one is whole) whose NAME is missing,
    and delete the `.tmp`/`.old` leftovers of dead writers in `parent` (only NAME's, if given).

    Returns the names put back. A read-only `parent` is left as it is.
    """
    restored: list[str] = []
    try:
        children = sorted((c for c in parent.iterdir() if c.name.startswith(".")),
                          key=lambda c: c.stat().st_mtime, reverse=True)  # newest old version first
    except OSError:
        return restored
    for child in children:
        m = LEFTOVER_RE.match(child.name)
        if m is None or (name is not None and m["name"] != name) or alive(m["pid"]):
            continue
        final = parent / m["name"]
        try:
            if m["kind"] == "old" and not final.exists() and complete(child):
                os.replace(child, final)
                restored.append(m["name"])
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        except OSError:
            continue
    return restored


def check_writable(folder: Path, what: str) -> None:
    """ArtifactError (exit 7) naming `folder` when nothing can be written there (read-only file system,
    permissions), found by writing a probe file into it, or into its nearest existing parent, before
    any expensive work starts."""
    from recsys_cli.errors import ArtifactError, DiskFullError

    probe_in = Path(folder)
    while not probe_in.exists() and probe_in.parent != probe_in:
        probe_in = probe_in.parent
    if probe_in.exists() and not probe_in.is_dir():
        raise ArtifactError(f"{what} {folder}: {probe_in} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=probe_in, prefix=".recsys-probe-"):
            pass
    except OSError as exc:
        import errno

        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise DiskFullError(f"{what} {folder}: disk full; free some space and retry") from None
        raise ArtifactError(f"{what} {folder} is not writable ({exc.strerror or exc}); "
                            "pick another folder or fix its permissions") from None


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on `folder` (flock on the directory itself: no lock file is left behind) for a
    read-modify-write of a file in it, so two processes updating it one after the other lose neither update.
    Where flock is missing (not POSIX) it does nothing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def temp_name(path: Path) -> Path:
    """A hidden `.FILE.PID.RANDOM.tmp` beside `path`: a killed writer's one is found and deleted by `recover`
    (the PID says whether its writer still runs)."""
    import secrets

    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def write_json(path: Path, obj: dict, *, default=None) -> None:
    """Replace `path` with `obj` as indented JSON, atomically (a temporary file, then os.replace)."""
    import json

    tmp = temp_name(path)
    try:
        tmp.write_text(json.dumps(obj, indent=2, default=default) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
