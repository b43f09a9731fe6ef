"""Regenerate the README's benchmark section from a real `recsys benchmark` run (`make bench-readme`).

    python -m recsys_cli.bench.readme [--readme README.md] [--section NAME] [benchmark options ...]

Runs `recsys benchmark <options> --format table` with NO_COLOR=1 and COLUMNS=120 (plain text,
no ANSI codes), and puts exactly what it printed - date and machine line included - in a
code block between the `<!-- bench:start -->` and `<!-- bench:end -->` markers of the README
(with --section NAME: `<!-- bench:NAME:start -->` and `<!-- bench:NAME:end -->`).
Without options it runs the standard suite: `--scale ml-100k --peers surprise,implicit`.
The README is rewritten atomically; missing markers are an error and leave it untouched.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from recsys_cli.errors import DataError, RecsysError
from recsys_cli.output import write_text_atomic

START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def markers(name: str | None = None) -> tuple[str, str]:
    """The start and end markers of the default section or of a named one."""
    return (START, END) if not name else (f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->")

STANDARD = ["--scale", "ml-100k", "--peers", "surprise,implicit"]
WIDTH = 120


def replace_section(text: str, body: str, name: str | None = None) -> str:
    """`text` with everything between the bench markers replaced by `body` (markers kept)."""
    first, last = markers(name)
    start, end = text.find(first), text.find(last)
    if start < 0 or end < 0:
        missing = " and ".join(m for m, i in ((first, start), (last, end)) if i < 0)
        raise DataError(f"README has no {missing} marker; add both where the benchmark section goes")
    if end < start or text.count(first) != 1 or text.count(last) != 1:
        raise DataError(f"README must hold exactly one {first} followed by one {last}")
    return text[: start + len(first)] + "\n" + body.strip("\n") + "\n" + text[end:]


def section(output: str, args: list[str], target: str = "bench-readme") -> str:
    """The Markdown put between the markers: the command, then its output in a text block."""
    command = shlex.join(["recsys", "benchmark", *args])
    text = "\n".join(line.rstrip() for line in output.rstrip().splitlines())  # rich pads centred titles
    return f"Printed by `{command}` (`make {target}`):\n\n```text\n{text}\n```"


def update_readme(path: str | os.PathLike, body: str, name: str | None = None) -> None:
    """Replace the README's bench section (default or named) with `body`, atomically."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    write_text_atomic(path, replace_section(text, body, name))


def capture_benchmark(args: list[str]) -> str:
    """Run the benchmark as a user would and return its table output as plain text."""
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": str(WIDTH), "TERM": "dumb", "RECSYS_NO_PROGRESS": "1"}
    cmd = [sys.executable, "-m", "recsys_cli", "benchmark", *args, "--format", "table"]
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        error = RecsysError(f"`{shlex.join(cmd)}` failed with exit code {done.returncode}")
        error.exit_code = done.returncode
        raise error
    return done.stdout


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m recsys_cli.bench.readme`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m recsys_cli.bench.readme", description=__doc__.split("\n\n")[0],
                                     allow_abbrev=False)
    parser.add_argument("--readme", default="README.md", help="the README to update (default README.md)")
    parser.add_argument("--section", default=None, help="a named section (bench:NAME markers) instead of the default")
    parser.add_argument("--target", default="bench-readme", help="the make target named in the section")
    ours, rest = parser.parse_known_args(argv)
    args = rest or STANDARD
    try:
        if not Path(ours.readme).is_file():
            raise DataError(f"{ours.readme} does not exist")
        # fail on markers before the long run
        replace_section(Path(ours.readme).read_text(encoding="utf-8"), "", ours.section)
        update_readme(ours.readme, section(capture_benchmark(args), args, ours.target), ours.section)
    except RecsysError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"updated the benchmark section of {ours.readme}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
