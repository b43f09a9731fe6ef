"""`recsys download DATASET`: fetch a MovieLens release into data/raw/NAME/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from recsys_cli.cli.common import DataDirOpt, ForceOpt, FormatOpt, JsonOpt

HELP = """Download a MovieLens release, verify its md5 and unpack it into DATA/raw/NAME/.

Sources: GroupLens by default; --mirror (or $RECSYS_MIRROR) takes an http(s)/file URL or a
folder holding NAME.zip and optionally NAME.zip.md5; --from-zip uses a zip you already have.
A release already downloaded and verified is left alone unless --force is given.

Examples:

\b
  recsys download ml-100k
  recsys download ml-1m --mirror https://example.org/movielens/
  recsys download ml-100k --mirror /srv/mirror --data-dir /tmp/data
  recsys download ml-100k --from-zip ~/Downloads/ml-100k.zip --force
  recsys download --list
"""


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


class _ByteBar:
    """A rich progress bar counting bytes (size, speed, time left) on stderr."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        from recsys_cli.output import console_err

        self._bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(), console=console_err(),
        )
        self._task: Any = None

    def start(self, total: int | None, description: str = "") -> None:
        if self._task is None:
            self._bar.start()
        else:
            self._bar.remove_task(self._task)
        self._task = self._bar.add_task(description, total=total)

    def advance(self, n: int = 1, **info: Any) -> None:
        if self._task is not None:
            self._bar.update(self._task, advance=n)

    def log(self, message: str) -> None:
        self._bar.console.print(message, markup=False, highlight=False)

    def close(self) -> None:
        if self._task is not None:
            self._bar.stop()
            self._task = None


def _progress() -> Any:
    """A byte-counting bar when a person watches stderr, else plain log lines."""
    from recsys_cli.progress import QuietProgress
    from recsys_cli.settings import show_progress

    return _ByteBar() if show_progress() else QuietProgress()


def register(app: typer.Typer) -> None:
    @app.command("download", help=HELP)
    def download_cmd(
        dataset: Annotated[Optional[str], typer.Argument(help="Release name, e.g. ml-100k (see --list).", show_default=False)] = None,
        mirror: Annotated[Optional[str], typer.Option("--mirror", help="Mirror URL or folder (default: $RECSYS_MIRROR, else GroupLens).", show_default=False)] = None,
        from_zip: Annotated[Optional[Path], typer.Option("--from-zip", help="Install from a local zip (checked against PATH.md5 if present, else the pinned md5).", show_default=False)] = None,
        force: ForceOpt = False,
        timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for a connection or for data.")] = 30.0,
        retries: Annotated[int, typer.Option("--retries", help="Extra attempts after a network failure, with exponential backoff.")] = 3,
        list_releases: Annotated[bool, typer.Option("--list", help="List the known releases and exit.")] = False,
        data_dir: DataDirOpt = None,
        fmt: FormatOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        from recsys_cli.api.data import download
        from recsys_cli.data.registry import RELEASES
        from recsys_cli.errors import UsageError
        from recsys_cli.output import emit, resolve_format

        if list_releases:
            rows = [
                {"name": r.name, "size": r.size, "layout": r.layout, "md5": r.md5, "description": r.description}
                for r in RELEASES.values()
            ]
            emit(rows, resolve_format(fmt, as_json))
            return
        if not dataset:
            raise UsageError(f"missing DATASET; choose one of: {', '.join(RELEASES)}")
        progress = _progress()
        try:
            result = download(
                dataset, data_dir=data_dir, mirror=mirror, from_zip=from_zip, force=force,
                timeout=timeout, retries=retries, progress=progress,
            )
        finally:
            progress.close()
        if result.already_present:
            typer.echo(
                f"{result.dataset} is already present in {result.path} (md5 {result.md5}); "
                "nothing to do (use --force to download it again)",
                err=True,
            )
        else:
            note = "" if result.verified else " (no checksum to verify against)"
            typer.echo(
                f"downloaded {result.dataset} ({_size(result.bytes)}, md5 {result.md5}{note}) "
                f"from {result.url} into {result.path}",
                err=True,
            )
        if fmt is not None or as_json:  # data on stdout only when asked for
            row: dict[str, Any] = result.to_dict()
            emit(row, resolve_format(fmt, as_json))
