"""Error families. Each carries the exit code the CLI returns for it.

The CLI turns any RecsysError into one line on stderr (`error: <message>`) and exits
with the family's code; the table below is also printed by `recsys --help`.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug: unexpected exception
EXIT_USAGE = 2  # bad arguments, unknown model/dataset name, bad --param
EXIT_DATA = 3  # missing or malformed data (dataset not downloaded, bad row, bad split)
EXIT_CHECKSUM = 4  # downloaded file does not match its checksum
EXIT_NETWORK = 5  # source unreachable, connection dropped
EXIT_UNSAFE_ARCHIVE = 6  # zip with absolute paths, '..', links or a zip bomb
EXIT_ARTIFACT = 7  # unknown run, run exists, incompatible or corrupt artifact
EXIT_DISK = 8  # disk full / cannot write
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = (
    "Exit codes: 0 ok, 1 internal error, 2 usage, 3 data, 4 checksum, 5 network, "
    "6 unsafe archive, 7 artifact, 8 disk full, 130 interrupted."
)


class RecsysError(Exception):
    """Base of every error the CLI reports as one clean line."""

    exit_code = EXIT_INTERNAL


class UsageError(RecsysError):
    """Bad arguments: unknown names, malformed options."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """An unknown or mistyped hyperparameter / config key."""


class DivergedError(UsageError):
    """Training produced NaN or infinity; the message names the hyperparameter to change (exit code 2)."""


class DataError(RecsysError):
    """Missing, malformed or inconsistent data."""

    exit_code = EXIT_DATA


class ChecksumError(RecsysError):
    exit_code = EXIT_CHECKSUM


class NetworkError(RecsysError):
    exit_code = EXIT_NETWORK


class UnsafeArchiveError(RecsysError):
    exit_code = EXIT_UNSAFE_ARCHIVE


class ArtifactError(RecsysError):
    """Unknown run, run already exists, or an incompatible/corrupt artifact."""

    exit_code = EXIT_ARTIFACT


class UnknownIdError(UsageError):
    """A raw user or item id that the model/dataset does not know, where no fallback applies."""


class DiskFullError(RecsysError):
    exit_code = EXIT_DISK


class InternalError(RecsysError):
    """A bug: an exception recsys did not expect (exit 1; RECSYS_DEBUG=1 shows the traceback)."""

    exit_code = EXIT_INTERNAL


_DISK_FULL_WORDS = ("no space left on device", "os error 28", "disk quota exceeded", "file too large")
_PERMISSION_WORDS = ("permission denied", "read-only file system", "os error 13", "os error 30")


def _where(exc: OSError) -> str:
    name = getattr(exc, "filename", None)
    return f" ({name})" if name else ""


def classify(exc: BaseException) -> RecsysError:
    """The error family of an exception no layer translated: file system faults by errno (or, for
    Polars/Arrow, which wrap them, by their message), memory exhaustion, else an internal error."""
    import errno

    if isinstance(exc, RecsysError):
        return exc
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, MemoryError):
        return UsageError("out of memory: the inputs ask for more memory than this machine has; "
                          "use smaller sizes (fewer factors, users, rounds, ...)")
    if isinstance(exc, OSError) and exc.errno is not None:
        why = exc.strerror or text
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return DiskFullError(f"disk full: {why}{_where(exc)}; free some space and retry")
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return ArtifactError(f"cannot write or read: {why}{_where(exc)}; check the folder's permissions")
        return DataError(f"{why}{_where(exc)}")
    lower = text.lower()
    if any(w in lower for w in _DISK_FULL_WORDS):
        return DiskFullError(f"disk full: {text}; free some space and retry")
    if any(w in lower for w in _PERMISSION_WORDS):
        return ArtifactError(f"cannot write: {text}; check the folder's permissions")
    return InternalError(f"internal error (a bug, please report it): {type(exc).__name__}: {text}; "
                         "rerun with RECSYS_DEBUG=1 for the traceback")


class EngineError(RecsysError):
    """An external compute engine (Spark) is unreachable, or its job failed or was killed."""

    exit_code = EXIT_NETWORK
