"""The `recsys` command: registers every command module and maps errors to exit codes."""

from __future__ import annotations

import importlib
import sys

import typer
from typer.core import TyperGroup

from recsys_cli import __version__
from recsys_cli.errors import EXIT_CODES_HELP, EXIT_INTERRUPTED, RecsysError


def _report(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


def _stdout_closed() -> None:
    """The reader of our stdout went away (`recsys ... | head -1`): stop quietly with exit 0, like a finished pipe."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's final flush must not fail again
    except (OSError, ValueError):
        pass
    sys.exit(0)


_FINITE: dict[type, type] = {}
_STRICT: dict[type, type] = {}


def _finite_type(base: type) -> type:
    """A subclass of the float parameter type that refuses NaN, infinity and digit separators ('1_0.5')."""
    if base not in _FINITE:

        def convert(self, value, param, ctx):
            import math

            if isinstance(value, str) and "_" in value:  # float() reads '1_0.5' as 10.5
                self.fail(f"{value!r} is not a number", param, ctx)
            out = base.convert(self, value, param, ctx)
            if not math.isfinite(out):
                self.fail(f"{value!r} is not a finite number", param, ctx)
            return out

        _FINITE[base] = type("FiniteFloat", (base,), {"convert": convert})
    return _FINITE[base]


def _strict_int_type(base: type) -> type:
    """A subclass of an int parameter type (plain or ranged) that reads only ASCII digits with an optional minus,
    as ids are read everywhere: int() would take '1_0' as 10 and '+3' as 3."""
    if base not in _STRICT:

        def convert(self, value, param, ctx):
            import re

            if isinstance(value, str) and not re.fullmatch(r"-?[0-9]+", value.strip()):
                self.fail(f"{value!r} is not an integer (ASCII digits with an optional minus)", param, ctx)
            return base.convert(self, value, param, ctx)

        _STRICT[base] = type(f"Strict{base.__name__}", (base,), {"convert": convert})
    return _STRICT[base]


def _click_errors():
    """Click's exception module as typer runs it (typer >= 0.2x vendors its own click)."""
    try:
        from typer._click import exceptions
    except ImportError:  # older typer: the click package
        from click import exceptions
    return exceptions


def click_exceptions() -> tuple[type, ...]:
    return (SystemExit, typer.Exit, typer.Abort, _click_errors().ClickException)


def errno_epipe() -> int:
    import errno

    return errno.EPIPE


def strict_numbers(command) -> None:
    """Every float option of recsys is a finite quantity, and every integer option reads like an id: give each
    the strict type, in the whole tree."""
    import copy

    for param in getattr(command, "params", []):
        kind = type(param.type).__name__  # typer's own (vendored) click types
        if kind == "FloatParamType":
            param.type = _finite_type(type(param.type))()
        elif kind in ("IntParamType", "IntRange"):
            strict = copy.copy(param.type)  # (an IntRange keeps its bounds)
            strict.__class__ = _strict_int_type(type(param.type))
            param.type = strict
    for sub in getattr(command, "commands", {}).values():
        strict_numbers(sub)


class RecsysGroup(TyperGroup):
    """Turns library errors into one line on stderr and the family's exit code."""

    def __init__(self, *args, **kwargs) -> None:
        from recsys_cli.cli.complete import attach

        super().__init__(*args, **kwargs)
        strict_numbers(self)
        attach(self)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Click's own usage errors as `error: ...` plus one hint line (not click's three-line block)."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        errors = _click_errors()
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except errors.NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except errors.ClickException as exc:
            typer.echo(f"error: {exc.format_message()}", err=True)
            ctx = getattr(exc, "ctx", None)
            if ctx is not None:
                typer.echo(f"hint: see `{ctx.command_path} --help`", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            _report("aborted", EXIT_INTERRUPTED)
        try:  # output still buffered meets a closed pipe here, not in Python's exit (which would exit 120)
            sys.stdout.flush()
        except BrokenPipeError:
            _stdout_closed()
        except OSError as exc:
            if exc.errno != errno_epipe():
                raise
            _stdout_closed()
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx):
        if ctx.params.get("version"):  # `recsys --version [--verbose]` runs no command
            typer.echo(version_text(bool(ctx.params.get("verbose"))))
            sys.exit(0)
        try:
            return super().invoke(ctx)
        except RecsysError as exc:
            _report(str(exc), exc.exit_code)
        except BrokenPipeError:
            _stdout_closed()
        except KeyboardInterrupt:
            _report("interrupted", EXIT_INTERRUPTED)
        except click_exceptions():
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, a documented code
            import os

            if os.environ.get("RECSYS_DEBUG"):
                raise
            from recsys_cli.errors import classify

            if isinstance(exc, OSError) and exc.errno == errno_epipe():
                _stdout_closed()
            err = classify(exc)
            _report(str(err), err.exit_code)

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

    return command_group(RecsysGroup, help_text, completion=True)


app = _new_app()


KEY_PACKAGES = ("numpy", "numba", "polars", "scipy", "pyarrow", "typer", "scikit-surprise", "implicit",
                "matplotlib", "fastapi", "uvicorn", "pyspark", "optuna")


def version_text(verbose: bool = False) -> str:
    """`recsys X.Y.Z`; with verbose, Python, the platform and the key packages' versions (for bug reports)."""
    lines = [f"recsys {__version__}"]
    if verbose:
        import platform
        from importlib import metadata

        lines.append(f"python {platform.python_version()} ({platform.python_implementation()}) on {platform.platform()}")
        for name in KEY_PACKAGES:
            try:
                lines.append(f"{name} {metadata.version(name)}")
            except metadata.PackageNotFoundError:
                lines.append(f"{name} not installed")
    return "\n".join(lines)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Show the version and exit (with --verbose: the key packages' versions too)."),
    verbose: bool = typer.Option(False, "--verbose", help="With --version: list Python and the key packages' versions."),
) -> None:
    pass


# Each module exposes `register(app)`; modules import heavy libraries inside commands only.
COMMAND_MODULES = [
    "download_cmd",  # download
    "data_cmds",  # preprocess, info
    "split_cmds",  # split, generate
    "model_cmds",  # train, predict, recommend, similar, runs
    "models_cmd",  # models
    "eval_cmds",  # evaluate
    "tune_cmd",  # tune
    "abtest_cmds",  # abtest, abtest plan, abtest bandit
    "bench_cmds",  # benchmark
    "insights_cmd",  # insights
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


COMPLETE_VAR = "_RECSYS_COMPLETE"  # the shell's completion request; `python -m recsys_cli` answers it too


def main() -> None:
    # Building every command's click parameters costs about 0.1 s; a command line names one.
    (only(sys.argv[1]) if len(sys.argv) > 1 else app)(complete_var=COMPLETE_VAR)
