"""Progress with time left on long work: what the bar shows, where it goes, and when it stays silent.

The bar (recsys_cli.progress.RichProgress, and tune's live trial table) is drawn only when stderr
is a terminal and RECSYS_NO_PROGRESS is unset or 0. The unit tests draw it into a rich Console
forced to be a terminal; the command tests force the same for `evaluate --cv`, `tune`,
`abtest bandit` and `benchmark`; the last tests run a real process with stderr on a pseudo-terminal.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time

import pytest
from rich.console import Console
from typer.testing import CliRunner

from recsys_cli.cli.app import app
from recsys_cli.progress import QuietProgress, RichProgress, make_progress

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
CLOCK = r"\d+:\d\d:\d\d"  # rich's elapsed and time-remaining columns, h:mm:ss


def plain(text: str) -> str:
    return ANSI.sub("", text)


def bar_lines(text: str) -> list[str]:
    """The bar's renderings (each redraw starts with a carriage return), without colours and cursor moves."""
    return [part for line in plain(text).splitlines() for part in line.split("\r") if "━" in part]


def test_rich_progress_shows_done_total_elapsed_time_left_and_info():
    buf = io.StringIO()
    progress = RichProgress(Console(file=buf, force_terminal=True, width=100))
    progress.start(4, "evaluate")
    progress.advance(1)
    time.sleep(0.05)  # two samples apart in time: the bar knows a speed, hence the time left
    progress.advance(1, rmse=0.912345)
    progress.log("fold 2: bias")
    progress.close()
    last = bar_lines(buf.getvalue())[-1]
    assert re.search(rf"evaluate .*━.* 2/4 {CLOCK} {CLOCK} rmse=0\.9123", last), last  # done/total, elapsed, ETA
    assert "-:--:--" not in last  # the time left is estimated, not unknown
    assert "fold 2: bias" in plain(buf.getvalue())  # log lines print above the bar


def test_rich_progress_writes_to_stderr_by_default():
    assert RichProgress()._console.stderr is True


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("tty", "env", "bar"), [
    (True, None, True), (True, "0", True), (True, "1", False), (True, "yes", False), (False, None, False)])
def test_bar_only_for_a_terminal_without_RECSYS_NO_PROGRESS(monkeypatch, tty, env, bar):
    monkeypatch.setattr(sys, "stderr", _Terminal() if tty else io.StringIO())
    if env is None:
        monkeypatch.delenv("RECSYS_NO_PROGRESS", raising=False)
    else:
        monkeypatch.setenv("RECSYS_NO_PROGRESS", env)
    assert isinstance(make_progress(), RichProgress if bar else QuietProgress)


def test_quiet_progress_draws_nothing(capsys):
    progress = QuietProgress()
    progress.start(3, "evaluate")
    progress.advance(1, rmse=0.9)
    progress.log("fold 1: bias fit 0.10 s")
    progress.close()
    out, err = capsys.readouterr()
    assert out == "" and err == "fold 1: bias fit 0.10 s\n"  # log lines only: no bar, no counts


# ----------------------------------------------------------------------------- commands, forced to a terminal
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("progress")
    env = {"RECSYS_DATA_DIR": str(root / "data"), "RECSYS_ARTIFACTS_DIR": str(root / "arts")}
    runner = CliRunner(env=env)
    for args in (("generate", "tiny", "--users", "60", "--items", "40", "--ratings", "1500"),
                 ("preprocess", "tiny"),
                 ("train", "svd", "--dataset", "tiny", "--split", "random", "-p", "factors=4", "-p", "epochs=3"),
                 ("train", "popularity", "--dataset", "tiny", "--split", "random")):
        res = runner.invoke(app, [*args, "--format", "json"])
        assert res.exit_code == 0, res.output
    return root, env


@pytest.fixture
def terminal(monkeypatch):
    """Progress on, into a stderr console that rich treats as a terminal (as a person at a shell sees it)."""
    import recsys_cli.output
    import recsys_cli.settings

    monkeypatch.setattr(recsys_cli.settings, "show_progress", lambda: True)
    monkeypatch.setattr(recsys_cli.output, "console_err",
                        lambda: Console(stderr=True, force_terminal=True, width=120))


LONG_WORK = {
    # command, what the bar (or tune's live table) must show once the work is done
    "evaluate --cv": (("evaluate", "--model", "bias,svd", "--dataset", "tiny", "--cv", "2", "-p", "svd.epochs=2"),
                      rf"evaluate .* 4/4 {CLOCK} {CLOCK}"),  # one step per (fold, model)
    "tune": (("tune", "svd", "--dataset", "tiny", "--grid", "factors=2,4", "-p", "epochs=2", "--cv", "2"),
             r"trials \(2/2 done, rmse\)"),
    "abtest bandit": (("abtest", "bandit", "svd-tiny-random", "popularity-tiny-random", "--rounds", "5", "--batch",
                       "10"), rf"bandit thompson .* 5/5 {CLOCK} {CLOCK}"),
    "benchmark": (("benchmark", "--scale", "2000", "--models", "bias", "--steps", "fit", "--repeat", "1",
                   "--no-isolate"), rf"benchmark .* 1/1 {CLOCK} {CLOCK}"),
}


@pytest.mark.parametrize("name", list(LONG_WORK))
def test_long_work_shows_progress_on_stderr_and_clean_json_on_stdout(tiny, terminal, name):
    _, env = tiny
    args, shown = LONG_WORK[name]
    res = CliRunner(env=env).invoke(app, [*args, "--format", "json"])
    assert res.exit_code == 0, res.output
    json.loads(res.stdout)  # the data alone on stdout
    assert "━" not in res.stdout and "\x1b[" not in res.stdout
    assert re.search(shown, plain(res.stderr)), plain(res.stderr)[-1500:]


def test_tune_live_table_states_time_left_while_trials_remain():
    from recsys_cli.cli.tune_cmd import TrialDisplay

    display = TrialDisplay(4, "rmse", lower=True)  # RECSYS_NO_PROGRESS=1 in tests: no live table, lines only
    display.t0 -= 30  # two trials took 30 s
    display.rows = [{"trial": 0}, {"trial": 1}]
    assert display._eta() == ", about 0:30 left"
    display.rows += [{"trial": 2}, {"trial": 3}]
    assert display._eta() == ""  # done: nothing left


# ----------------------------------------------------------------------------- a real process, stderr on a pty
def _run_with_stderr(args, env, pty_stderr: bool) -> tuple[str, str, int]:
    """Run `python -m recsys_cli ARGS` with stdout piped and stderr a pseudo-terminal (or piped)."""
    cmd = [sys.executable, "-m", "recsys_cli", *args]
    if not pty_stderr:
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        return res.stdout, res.stderr, res.returncode
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    out = proc.stdout.read().decode()
    code = proc.wait(timeout=600)
    os.close(master)
    return out, b"".join(chunks).decode(errors="replace"), code


@pytest.mark.parametrize(("pty_stderr", "disabled", "bar"), [(True, False, True), (True, True, False),
                                                             (False, False, False)],
                         ids=["terminal", "terminal-RECSYS_NO_PROGRESS=1", "piped"])
def test_a_real_process_draws_the_bar_only_on_a_terminal(tiny, pty_stderr, disabled, bar):
    pytest.importorskip("pty")
    _, env = tiny
    env = {**os.environ, **env, "COLUMNS": "120"}
    env.pop("RECSYS_NO_PROGRESS", None)
    if disabled:
        env["RECSYS_NO_PROGRESS"] = "1"
    out, err, code = _run_with_stderr(["evaluate", "--model", "bias", "--dataset", "tiny", "--cv", "2", "--format",
                                       "json"], env, pty_stderr)
    assert code == 0, err
    assert json.loads(out)[0]["model"] == "bias"  # stdout is the data, whatever stderr is
    lines = bar_lines(err)
    if bar:
        assert lines and re.search(rf"evaluate .* 2/2 {CLOCK} {CLOCK}", lines[-1]), plain(err)[-1000:]
    else:
        assert not lines and "2/2" not in err and "\x1b[" not in err, err[-1000:]
    assert "fold 2: bias" in plain(err)  # the per-fold lines are there either way
