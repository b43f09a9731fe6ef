"""The `recsys` command: registers every command module and maps errors to exit codes."""

from __future__ import annotations

import importlib
import sys

import typer
from typer.core import TyperGroup

from recsys_cli import __version__
from recsys_cli.errors import EXIT_CODES_HELP, EXIT_DISK, EXIT_INTERRUPTED, RecsysError


def _report(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


class RecsysGroup(TyperGroup):
    """Turns library errors into one line on stderr and the family's exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RecsysError as exc:
            _report(str(exc), exc.exit_code)
        except OSError as exc:
            import errno

            if exc.errno == errno.ENOSPC:
                _report(f"disk full: {exc}", EXIT_DISK)
            raise
        except KeyboardInterrupt:
            _report("interrupted", EXIT_INTERRUPTED)

    def list_commands(self, ctx) -> list[str]:
        # Keep the order of the chain rather than alphabetical.
        return list(self.commands)


HELP = f"""MovieLens to trained, evaluated and A/B-compared recommenders.

The chain: download -> preprocess -> split -> train -> evaluate / tune -> recommend -> abtest.

Examples:

  recsys download ml-100k

  recsys preprocess ml-100k

  recsys train svd --dataset ml-100k --split random

  recsys evaluate --model bias,svd,surprise:SVD --dataset ml-100k --cv 5

  recsys recommend svd-ml-100k-random --user 1 -n 10 --format json

  recsys abtest popularity-ml-100k-random svd-ml-100k-random

{EXIT_CODES_HELP}
"""

def _new_app(help_text: str | None = HELP) -> typer.Typer:
    from recsys_cli.cli.common import command_group

    return command_group(RecsysGroup, help_text)


app = _new_app()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"recsys {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    pass


# Each module exposes `register(app)`; modules import heavy libraries inside commands only.
COMMAND_MODULES = [
    "download_cmd",  # download
    "data_cmds",  # preprocess, info
    "split_cmds",  # split, generate
    "model_cmds",  # train, predict, recommend, similar, runs
    "eval_cmds",  # evaluate
    "tune_cmd",  # tune
    "abtest_cmds",  # abtest, abtest plan, abtest bandit
    "bench_cmds",  # benchmark
    "serve_cmd",  # serve
]

for _name in COMMAND_MODULES:
    importlib.import_module(f"recsys_cli.cli.{_name}").register(app)


def only(name: str) -> typer.Typer:
    """The app with one top-level command (or group): Typer then builds one command's options, not all 14."""
    one = _new_app(None)
    one.registered_callback = app.registered_callback
    one.registered_commands = [c for c in app.registered_commands if c.name == name]
    one.registered_groups = [g for g in app.registered_groups if g.name == name]
    return one if one.registered_commands or one.registered_groups else app


def main() -> None:
    # Building every command's click parameters costs about 0.1 s; a command line names one.
    (only(sys.argv[1]) if len(sys.argv) > 1 else app)()
