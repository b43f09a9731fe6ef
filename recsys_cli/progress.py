"""Progress reporting on stderr that models and pipelines can call without knowing about rich.

`Progress` is a tiny protocol: `start(total, description)`, `advance(n=1, **info)`,
`log(message)`, `close()`. `make_progress()` returns a rich bar when stderr is a
terminal and progress is not disabled, else a quiet reporter that still logs lines.
"""

from __future__ import annotations

import sys
import time
from typing import Any


class QuietProgress:
    """No bars; `log` lines still go to stderr so piped runs keep a record."""

    def __init__(self, verbose: bool = True) -> None:
        self.verbose = verbose

    def start(self, total: int | None, description: str = "") -> None:
        self._t0 = time.perf_counter()

    def advance(self, n: int = 1, **info: Any) -> None:
        pass

    def log(self, message: str) -> None:
        if self.verbose:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


class NullProgress(QuietProgress):
    def __init__(self) -> None:
        super().__init__(verbose=False)


class RichProgress:
    """A bar on stderr: description, bar, done/total, elapsed, time left (ETA), and the last `advance` info.

    `console` is for tests (a rich Console forced to be a terminal); by default stderr's.
    """

    def __init__(self, console=None) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        from recsys_cli.output import console_err

        self._console = console if console is not None else console_err()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=self._console,
            transient=False,
        )
        self._task = None

    def start(self, total: int | None, description: str = "") -> None:
        if self._task is None:
            self._progress.start()
        else:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(description, total=total, info="")

    def advance(self, n: int = 1, **info: Any) -> None:
        text = "  ".join(
            f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items()
        )
        self._progress.update(self._task, advance=n, info=text)

    def log(self, message: str) -> None:
        self._progress.console.print(message) if self._task is not None else self._console.print(message)

    def close(self) -> None:
        if self._task is not None:
            self._progress.stop()
            self._task = None


def make_progress(verbose: bool = True):
    from recsys_cli.settings import show_progress

    return RichProgress() if show_progress() else QuietProgress(verbose=verbose)
