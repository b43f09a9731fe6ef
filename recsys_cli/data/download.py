"""Download a MovieLens release, verify it, unpack it safely and move it into data/raw/NAME at once.

Sources: GroupLens (default), a mirror (`--mirror` / RECSYS_MIRROR: an http(s)/file URL or a
folder holding NAME.zip and optionally NAME.zip.md5) or a local zip (`--from-zip`). A source's
own `.md5` sidecar, when present, is what its zip is checked against; otherwise the pinned md5
from the registry, and for GroupLens the official sidecar.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import re
import shutil
import ssl
import stat
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from recsys_cli import __version__, settings
from recsys_cli.data.registry import Release, get_release
from recsys_cli.errors import (
    ChecksumError,
    DataError,
    DiskFullError,
    NetworkError,
    UnsafeArchiveError,
    UsageError,
)
from recsys_cli.progress import QuietProgress
from recsys_cli.swap import check_writable, recover, replace_dir, scratch_dir

CHUNK = 1 << 16
MAX_RATIO = 20  # uncompressed / compressed beyond which a big archive is treated as a bomb
MAX_FLOOR = 4 << 30  # archives expanding to less than this are never called bombs
_NET_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, ssl.SSLError)
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_MIRROR_HINT = "use --mirror URL|DIR (or RECSYS_MIRROR) to download from elsewhere"


@dataclass
class DownloadResult:
    """What `download` did: where the data is, where it came from and its checksums."""

    dataset: str
    path: Path
    source: str  # official | mirror | zip
    url: str
    md5: str
    sha256: str
    bytes: int
    already_present: bool
    verified: bool = True  # False when no checksum could be had to check the zip against
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}


@dataclass(frozen=True)
class _Source:
    kind: str  # official | mirror | zip
    location: str  # URL or local path of the zip
    local: Path | None = None  # set for folders and --from-zip


class _Retryable(Exception):
    """A transient failure worth another attempt."""


def parse_md5_sidecar(text: str) -> str:
    """The md5 in a sidecar: `MD5 (NAME.zip) = HASH`, `HASH  NAME.zip` or a bare hash."""
    lines = text.strip().splitlines()
    first = lines[0].strip() if lines else ""
    match = re.fullmatch(r"MD5\s*\(.*\)\s*=\s*([0-9a-fA-F]{32})", first) or re.fullmatch(
        r"([0-9a-fA-F]{32})(?:\s+\*?\S.*)?", first
    )
    if match is None:
        raise ChecksumError(f"cannot read an md5 from checksum file: {first[:80]!r}")
    return match.group(1).lower()


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    try:
        return float(value) if value else default
    except ValueError:
        raise UsageError(f"{name} must be a number, got {value!r}") from None


def _resolve_source(release: Release, mirror: str | None, from_zip: Path | None) -> _Source:
    if from_zip is not None:
        if mirror:
            raise UsageError("use either --from-zip or --mirror, not both")
        path = Path(from_zip)
        if not path.is_file():
            raise UsageError(f"--from-zip: no such file {path}")
        return _Source("zip", str(path), path)
    mirror = settings.mirror(mirror)
    if not mirror:
        return _Source("official", release.url)
    parsed = urlparse(mirror)
    if parsed.scheme in ("http", "https"):
        return _Source("mirror", mirror.rstrip("/") + "/" + release.filename)
    folder = Path(urllib.request.url2pathname(parsed.path)) if parsed.scheme == "file" else Path(mirror)
    if not folder.is_dir():
        raise UsageError(f"mirror {mirror!r} is neither an http(s)/file URL nor an existing folder")
    path = folder / release.filename
    if not path.is_file():
        raise DataError(f"mirror folder {folder} has no {release.filename}")
    return _Source("mirror", str(path), path)


def _open(url: str, timeout: float, headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, headers={"User-Agent": f"recsys/{__version__}", **(headers or {})})
    return urllib.request.urlopen(request, timeout=timeout)


def _retrying(action, url: str, *, retries: int, backoff: float, progress) -> Any:
    """Run `action()` with exponential backoff on transient network errors; NetworkError at the end."""
    for attempt in range(retries + 1):
        try:
            return action()
        except urllib.error.HTTPError as exc:
            if exc.code not in (408, 429) and exc.code < 500:
                raise NetworkError(f"{url}: HTTP {exc.code} {exc.reason}; {_MIRROR_HINT}") from None
            reason = f"HTTP {exc.code} {exc.reason}"
        except urllib.error.URLError as exc:
            reason = str(exc.reason)
        except (_Retryable, *_NET_ERRORS) as exc:
            reason = str(exc) or type(exc).__name__
        if attempt < retries:
            delay = backoff * 2**attempt
            progress.log(f"{url}: {reason}; retrying in {delay:.1f}s ({attempt + 1}/{retries})")
            time.sleep(delay)
    raise NetworkError(f"cannot download {url}: {reason} (tried {retries + 1} times); {_MIRROR_HINT}")


def _fetch_text(url: str, *, timeout: float, retries: int, backoff: float, progress) -> str | None:
    """A small text file over HTTP, or None when the server says it does not exist."""

    def attempt() -> str | None:
        try:
            with _open(url, timeout) as response:
                return response.read(4096).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            if exc.code in (403, 404, 410):
                return None
            raise

    return _retrying(attempt, url, retries=retries, backoff=backoff, progress=progress)


def _fetch_file(url: str, dest: Path, *, timeout: float, retries: int, backoff: float, progress) -> None:
    """Stream `url` into `dest`, resuming with a Range request after a dropped connection."""

    def attempt() -> None:
        have = dest.stat().st_size if dest.exists() else 0
        try:
            response = _open(url, timeout, {"Range": f"bytes={have}-"} if have else None)
        except urllib.error.HTTPError as exc:
            if exc.code != 416:
                raise
            dest.unlink(missing_ok=True)
            raise _Retryable("server cannot resume; starting over") from None
        with response:
            content_range = response.headers.get("Content-Range", "")
            resumed = have > 0 and response.status == 206 and content_range.startswith(f"bytes {have}-")
            have = have if resumed else 0
            length = response.headers.get("Content-Length")
            total = have + int(length) if length and length.isdigit() else None
            progress.start(total, f"downloading {dest.name.removeprefix('.').removesuffix('.part')}")
            progress.advance(have)
            got = have
            with open(dest, "ab" if resumed else "wb") as out:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    got += len(chunk)
                    progress.advance(len(chunk))
            if total is not None and got < total:
                raise _Retryable(f"connection closed after {got} of {total} bytes")

    progress.log(f"downloading {url}")
    _retrying(attempt, url, retries=retries, backoff=backoff, progress=progress)


def _expected_md5(
    release: Release, source: _Source, *, offline: bool, timeout: float, retries: int, backoff: float, progress
) -> tuple[str | None, str]:
    """The md5 the zip must have and where it came from: the source's sidecar, pinned, or official."""
    if source.local is not None:
        sidecar = source.local.with_name(source.local.name + ".md5")
        if sidecar.is_file():
            return parse_md5_sidecar(sidecar.read_text(errors="replace")), f"sidecar {sidecar}"
    elif source.kind == "mirror":
        try:
            text = _fetch_text(source.location + ".md5", timeout=timeout, retries=retries, backoff=backoff, progress=progress)
        except NetworkError:
            if not offline:
                raise
            text = None
        if text is not None:
            return parse_md5_sidecar(text), "mirror sidecar"
    if release.md5:
        return release.md5, "pinned in the registry"
    if source.kind == "official" and not offline:
        text = _fetch_text(release.md5_url, timeout=timeout, retries=retries, backoff=backoff, progress=progress)
        if text is not None:
            return parse_md5_sidecar(text), "official sidecar"
    return None, "none"


def _hashes(path: Path, progress) -> tuple[str, str, int]:
    md5, sha256, size = hashlib.md5(), hashlib.sha256(), 0
    progress.start(path.stat().st_size, f"verifying {path.name.removeprefix('.').removesuffix('.part')}")
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            md5.update(chunk)
            sha256.update(chunk)
            size += len(chunk)
            progress.advance(len(chunk))
    return md5.hexdigest(), sha256.hexdigest(), size


def _check_members(zf: zipfile.ZipFile, archive: Path, cap: int) -> int:
    """Refuse absolute paths, '..', links and special files, and archives that expand past `cap`."""
    total = 0
    for info in zf.infolist():
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
            raise UnsafeArchiveError(f"{archive.name}: refusing absolute path {name!r}")
        if ".." in parts:
            raise UnsafeArchiveError(f"{archive.name}: refusing path with '..' {name!r}")
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            what = "symlink" if kind == stat.S_IFLNK else "special file"
            raise UnsafeArchiveError(f"{archive.name}: refusing {what} {name!r}")
        total += info.file_size
    if total > cap:
        raise UnsafeArchiveError(
            f"{archive.name}: expands to {total:,} bytes, over the {cap:,}-byte limit (zip bomb?)"
        )
    return total


def _read_member(src, archive: Path, member: str) -> bytes:
    """One chunk of a member; a read error of the archive itself (EIO, ...) is a damaged archive, exit 4."""
    try:
        return src.read(CHUNK)
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise
        raise ChecksumError(f"{archive.name}: cannot read {member!r} ({exc.strerror or exc}); "
                            "nothing was installed") from None


def _extract(archive: Path, into: Path, max_unpacked_bytes: int | None) -> None:
    """Unpack `archive` into the empty folder `into` after checking every member."""
    cap = max_unpacked_bytes
    if cap is None:
        default = max(MAX_RATIO * archive.stat().st_size, MAX_FLOOR)
        cap = int(_env_float("RECSYS_MAX_UNPACKED_BYTES", default))
    try:
        with zipfile.ZipFile(archive) as zf:
            _check_members(zf, archive, cap)
            written = 0
            for info in zf.infolist():
                target = into.joinpath(*[p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".")])
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    while chunk := _read_member(src, archive, info.filename):
                        written += len(chunk)
                        if written > cap:  # sizes in the header can lie
                            raise UnsafeArchiveError(f"{archive.name}: expands past the {cap:,}-byte limit")
                        dst.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError) as exc:
        raise ChecksumError(f"{archive.name} does not decompress ({exc}); the archive is damaged, "
                            "download it again") from None
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise
        raise DataError(f"cannot unpack {archive.name}: {exc}") from None


def _release_folder(root: Path, release: Release) -> Path:
    """The unpacked top folder: the release's own name, else the only folder in the archive."""
    if (root / release.folder).is_dir():
        return root / release.folder
    entries = list(root.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    found = ", ".join(sorted(e.name for e in entries)) or "nothing"
    raise DataError(f"archive has no {release.folder}/ folder (found: {found})")


def _present(target: Path, expected: str | None, where: str) -> dict[str, Any]:
    """The download.json of an existing download, refusing one that is unrecorded or does not match."""
    record_path = target / "download.json"
    try:
        record = json.loads(record_path.read_text())
        md5 = str(record["md5"])
    except (OSError, ValueError, KeyError, TypeError):
        raise DataError(f"{target} exists but has no valid download.json; use --force to replace it") from None
    if expected is not None and md5 != expected:
        raise ChecksumError(
            f"{target} came from {record.get('url', 'an unknown source')} (md5 {md5}), not the requested "
            f"source (md5 {expected}, {where}); pass the same --mirror/--from-zip to keep it, or --force"
        )
    return record


MAX_TIMEOUT = 3600.0  # seconds for one connection or read
MAX_RETRIES = 20  # with the doubling backoff, 20 retries already wait for days


def download(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    mirror: str | None = None,
    from_zip: Path | None = None,
    force: bool = False,
    timeout: float = 30.0,
    retries: int = 3,
    progress=None,
    backoff: float | None = None,
    max_unpacked_bytes: int | None = None,
) -> DownloadResult:
    """Fetch, verify and unpack release `name` into data/raw/NAME/ (a no-op if already there).

    `progress` (start/advance/log/close) gets byte counts; by default only log lines go to stderr.
    `backoff` (default $RECSYS_DOWNLOAD_BACKOFF or 1 s) doubles after each failed attempt;
    `max_unpacked_bytes` (default $RECSYS_MAX_UNPACKED_BYTES or max(20x the zip, 4 GiB))
    caps what an archive may expand to.
    """
    import math

    if not (math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT):
        raise UsageError(f"--timeout must be more than 0 and at most {MAX_TIMEOUT:g} seconds, got {timeout:g}")
    if not 0 <= retries <= MAX_RETRIES:
        raise UsageError(f"--retries must be between 0 and {MAX_RETRIES}, got {retries}")
    release = get_release(name)
    source = _resolve_source(release, mirror, from_zip)
    backoff = _env_float("RECSYS_DOWNLOAD_BACKOFF", 1.0) if backoff is None else backoff
    own_progress = progress is None
    progress = QuietProgress() if own_progress else progress
    net = {"timeout": timeout, "retries": max(0, retries), "backoff": backoff, "progress": progress}
    target = settings.raw_dir(release.name, data_dir)
    recover(target.parent, release.name, complete=lambda p: (p / "download.json").is_file())
    try:
        if not force and target.exists():
            expected, where = _expected_md5(release, source, offline=True, **{**net, "retries": 0})
            record = _present(target, expected, where)
            return DownloadResult(
                release.name, target, str(record.get("source", "")), str(record.get("url", "")),
                str(record["md5"]), str(record.get("sha256", "")), int(record.get("bytes", 0)),
                already_present=True, verified=bool(record.get("verified", True)),
            )
        check_writable(target.parent, "data folder")  # before fetching, not after it
        return _download_new(release, source, target, net, max_unpacked_bytes)
    finally:
        if own_progress:
            progress.close()


def _download_new(
    release: Release, source: _Source, target: Path, net: dict[str, Any], max_unpacked_bytes: int | None
) -> DownloadResult:
    """Fetch, check, unpack and install; on any failure nothing is left behind."""
    progress = net["progress"]
    raw_root = target.parent
    part = raw_root / f".{release.filename}.part"
    scratch: Path | None = None
    try:
        raw_root.mkdir(parents=True, exist_ok=True)
        part.unlink(missing_ok=True)  # left by a killed run; may not even be the same file
        expected, checksum_from = _expected_md5(release, source, offline=False, **net)
        archive = part if source.local is None else source.local
        if source.local is None:
            _fetch_file(source.location, part, **net)
        md5, sha256, size = _hashes(archive, progress)
        warnings = []
        if expected is None:
            warnings.append(f"no checksum available for {release.filename}; recorded md5 {md5} unverified")
            progress.log(f"warning: {warnings[-1]}")
        elif md5 != expected:
            raise ChecksumError(
                f"{release.filename} from {source.location} has md5 {md5}, expected {expected} "
                f"({checksum_from})" + ("; the download was deleted" if source.local is None else "")
            )
        scratch = scratch_dir(raw_root, release.name)
        unpacked = scratch / "unpacked"
        unpacked.mkdir()
        _extract(archive, unpacked, max_unpacked_bytes)
        folder = _release_folder(unpacked, release)
        record = {
            "dataset": release.name, "source": source.kind, "url": source.location, "md5": md5,
            "sha256": sha256, "bytes": size, "verified": expected is not None, "checksum_from": checksum_from,
            "layout": release.layout, "downloaded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "recsys_version": __version__,
        }
        # Written before the rename, so data/raw/NAME appears complete or not at all.
        (folder / "download.json").write_text(json.dumps(record, indent=2) + "\n")
        replace_dir(folder, target)  # recoverable at every step: see recsys_cli/swap.py
        return DownloadResult(
            release.name, target, source.kind, source.location, md5, sha256, size,
            already_present=False, verified=expected is not None, warnings=warnings,
        )
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise DiskFullError(f"disk full while writing under {raw_root}; free some space and retry") from None
        raise DiskFullError(f"cannot write under {raw_root}: {exc.strerror or exc} ({exc.filename})") from None
    finally:
        part.unlink(missing_ok=True)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
