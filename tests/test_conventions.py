"""Output conventions shared by every command: tidy CSV, precision, completion, version, messages."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsys_cli.cli.app import app
from recsys_cli.output import emit, flatten

RECSYS = [sys.executable, "-m", "recsys_cli"]


def test_flatten_names_every_nested_value_once():
    row = {"model": "svd", "metrics": {"rmse": 0.91, "ndcg@10": 0.3}, "folds": [{"rmse": 0.9}, {"rmse": 0.92}],
           "params": {}, "ks": [10, 20]}
    assert flatten(row) == {"model": "svd", "metrics.rmse": 0.91, "metrics.ndcg@10": 0.3, "folds.0.rmse": 0.9,
                            "folds.1.rmse": 0.92, "ks": [10, 20]}


def test_csv_cells_are_typed_and_full_precision():
    out = io.StringIO()
    rows = [{"run": "a", "metrics": {"rmse": 0.9123456789012345}, "n": 3, "ok": True, "none": None},
            {"run": "b", "metrics": {}, "n": 4, "ok": False, "none": None}]
    emit(rows, "csv", columns=["run", "n", "ok", "none", "metrics"], stream=out)
    table = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(table[0]) == ["run", "n", "ok", "none", "metrics.rmse"]
    assert float(table[0]["metrics.rmse"]) == 0.9123456789012345
    assert table[1]["metrics.rmse"] == "" and table[0]["ok"] == "true"


def _cli(*args, env=None):
    return subprocess.run([*RECSYS, *args], capture_output=True, text=True, env={**os.environ, **(env or {})})


def test_version_verbose_lists_key_packages():
    res = CliRunner().invoke(app, ["--version", "--verbose"])
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    assert lines[0].startswith("recsys ")
    assert any(line.startswith("numpy ") for line in lines) and any(line.startswith("polars ") for line in lines)
    plain = CliRunner().invoke(app, ["--version"])
    assert plain.exit_code == 0 and len(plain.stdout.splitlines()) == 1


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_generate(shell):
    res = subprocess.run([str(Path(sys.executable).parent / "recsys"), "--show-completion", shell],
                         capture_output=True, text=True, env={**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    if res.returncode != 0 and not (Path(sys.executable).parent / "recsys").exists():
        pytest.skip("the recsys entry point is not installed in this environment")
    assert res.returncode == 0, res.stderr
    assert "_RECSYS_COMPLETE" in res.stdout


def test_completion_names_runs_datasets_models_without_heavy_imports(tmp_path):
    arts, data = tmp_path / "artifacts", tmp_path / "data"
    for run in ("svd-ml-100k-random", "svd-other", "ials-ml-100k-user"):
        (arts / run).mkdir(parents=True)
        (arts / run / "manifest.json").write_text("{}")
    (arts / ".svd-hidden.tmp").mkdir()
    (data / "processed" / "ml-100k").mkdir(parents=True)
    (data / "processed" / "ml-100k" / "dataset.json").write_text("{}")
    exe = Path(sys.executable).parent / "recsys"
    if not exe.exists():
        pytest.skip("the recsys entry point is not installed in this environment")

    def complete(words: str) -> list[str]:
        env = {**os.environ, "_RECSYS_COMPLETE": "complete_bash", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split(" ")) - 1), "RECSYS_ARTIFACTS_DIR": str(arts),
               "RECSYS_DATA_DIR": str(data), "PYTHONPROFILEIMPORTTIME": "1"}
        res = subprocess.run([str(exe)], capture_output=True, text=True, env=env)
        heavy = [m for m in ("numpy", "polars", "scipy", "numba") if f"| {m}\n" in res.stderr]
        assert not heavy, f"completion imported {heavy}"
        return res.stdout.split()

    assert complete("recsys recommend svd") == ["svd-ml-100k-random", "svd-other"]
    assert complete("recsys evaluate --dataset ml") == ["ml-100k"]
    assert "item-knn" in complete("recsys train i")
    assert complete("recsys evaluate --model bias,sv") == ["bias,svd", "bias,svdpp"]


def test_json_and_other_format_disagree():
    res = CliRunner().invoke(app, ["runs", "--json", "--format", "csv"])
    assert res.exit_code == 2 and "disagree" in res.stderr


def test_nan_float_option_is_a_usage_error():
    res = CliRunner().invoke(app, ["abtest", "plan", "--baseline-ctr", "nan"])
    assert res.exit_code == 2 and "not a finite number" in res.output


def test_closed_stdout_exits_zero_in_every_format(tmp_path):
    import recsys_cli as rs

    data = rs.from_frame([(u, i, float(1 + (u + i) % 5)) for u in range(200) for i in range(60) if (u * i) % 4],
                         user="u", item="i", rating="r")
    rs.save(rs.train("bias", data), "b", artifacts_dir=tmp_path)
    for fmt in ("jsonl", "json", "csv", "table"):
        proc = subprocess.Popen([*RECSYS, "recommend", "b", "--all-users", "-n", "50", "--format", fmt,
                                 "--artifacts-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdout.readline()
        proc.stdout.close()  # the reader goes away, as `| head -1` does
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 0, (fmt, err)
        assert "Traceback" not in err


def test_evaluate_protocol_line_is_a_sentence(tmp_path):
    import recsys_cli as rs

    data = rs.from_frame([(u, i, float(1 + (u + i) % 5)) for u in range(60) for i in range(40) if (u * i) % 3],
                         user="u", item="i", rating="r")
    train, _ = data.split("random", seed=1)
    res = rs.cross_validate("bias", data, cv=3, metrics="rating")
    assert res.describe() == "3-fold cross-validation over the ratings (seed 42)"
    run = rs.save(rs.train("bias", train), "b", artifacts_dir=tmp_path)
    assert "{'" not in json.dumps(run.manifest.to_dict())


# ----------------------------------------------------------------------------- every command, every format
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small synthetic dataset with an svd and an item-knn run, for per-command format checks."""
    root = tmp_path_factory.mktemp("formats")
    common = {"RECSYS_DATA_DIR": str(root / "data"), "RECSYS_ARTIFACTS_DIR": str(root / "arts")}
    runner = CliRunner(env=common)

    def ok(*args):
        res = runner.invoke(app, [str(a) for a in args])
        assert res.exit_code == 0, res.output
        return res

    ok("generate", "tiny", "--users", "60", "--items", "40", "--ratings", "1500")
    ok("preprocess", "tiny", "--format", "json")
    ok("train", "svd", "--dataset", "tiny", "--split", "random", "-p", "factors=4", "-p", "epochs=3", "--format", "json")
    ok("train", "item-knn", "--dataset", "tiny", "--split", "random", "--format", "json")
    ok("evaluate", "svd-tiny-random", "--format", "json")
    return runner


COMMANDS = [
    ("recommend", "svd-tiny-random", "--user", "1,2,99999", "-n", "3"),
    ("predict", "svd-tiny-random", "--user", "1", "--item", "2"),
    ("similar", "item-knn-tiny-random", "--item", "1", "-n", "3"),
    ("evaluate", "svd-tiny-random"),
    ("evaluate", "--model", "bias,svd", "--dataset", "tiny", "--cv", "2", "-p", "svd.epochs=2"),
    ("runs",),
    ("runs", "--ledger", "--kind", "evaluate"),
    ("models", "svd"),
    ("info",),
    ("split", "tiny", "--kind", "kfold", "--k", "3", "--force"),
]


def _untimed(row):
    return {k: v for k, v in flatten(row).items() if "seconds" not in k}


def _typed(text: str):
    """A CSV cell as the JSON value it came from (numbers, booleans, null)."""
    if text == "":
        return None
    if text in ("true", "false"):
        return text == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_csv_holds_the_json_values_and_stderr_reads_as_english(tiny, args):
    out = {}
    for fmt in ("json", "jsonl", "csv"):
        res = tiny.invoke(app, [*args, "--format", fmt])
        assert res.exit_code == 0, res.output
        assert "{'" not in res.stderr, res.stderr  # no Python reprs on stderr
        out[fmt] = res.stdout
    data = json.loads(out["json"])
    rows = data if isinstance(data, list) else [data]
    jsonl = [json.loads(line) for line in out["jsonl"].splitlines()]
    if isinstance(data, list):  # the same rows, keys and values in json and jsonl (timings differ run to run)
        assert [_untimed(r) for r in jsonl] == [_untimed(r) for r in rows]
    table = list(csv.DictReader(io.StringIO(out["csv"])))
    assert len(table) == len(rows)
    for want, got in zip(rows, table, strict=True):
        flat = flatten(want)
        for key, cell in got.items():
            if "seconds" in key:
                continue  # measured anew by each invocation
            value = flat.get(key)
            if isinstance(value, (list, dict)):
                continue  # a list of plain values is one JSON cell
            parsed = _typed(cell)
            if isinstance(value, float) and isinstance(parsed, (int, float)):
                assert parsed == pytest.approx(value, rel=1e-12, abs=1e-12), key  # full precision
            elif value is not None or parsed is not None:
                assert parsed == value or str(value) == cell, (key, cell, value)


@pytest.mark.parametrize("args", [("runs",), ("evaluate", "svd-tiny-random"), ("recommend", "svd-tiny-random", "--user", "1"),
                                  ("models", "bias"), ("info", "tiny")], ids=lambda a: a[0])
def test_tables_fit_80_columns(tiny, args, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    res = tiny.invoke(app, [*args, "--format", "table"], terminal_width=80)
    assert res.exit_code == 0, res.output
    wide = [line for line in res.stdout.splitlines() if len(line) > 80]
    assert not wide, "\n".join(wide)
