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


class EngineError(RecsysError):
    """An external compute engine (Spark) is unreachable, or its job failed or was killed."""

    exit_code = EXIT_NETWORK
