"""Helpers shared by the tests that drive the CLI in process or as real processes (servers, browsers)."""

from __future__ import annotations

import subprocess
import sys
import time

from typer.testing import CliRunner


def run_cli(*args):
    """`recsys ARGS` in process; asserts exit 0 and returns the result."""
    from recsys_cli.cli.app import app

    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


def recsys(*args, env, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m recsys_cli ARGS` as a real process with `env`; asserts exit 0."""
    res = subprocess.run([sys.executable, "-m", "recsys_cli", *map(str, args)], env=env, capture_output=True,
                         text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr
    return res


def wait_for(predicate, timeout: float, what: str):
    """Poll `predicate` every 0.1 s until it returns something truthy (returned), or fail after `timeout`."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def synth_dataset(root):
    """A small processed synthetic dataset 'synth' (120 users, 80 items, 4,000 ratings) under root; (data, artifacts)."""
    data, arts = root / "data", root / "artifacts"
    run_cli("generate", "synth", "--users", "120", "--items", "80", "--ratings", "4000", "--data-dir", data)
    run_cli("preprocess", "synth", "--data-dir", data, "--format", "json")
    return data, arts
