"""Output conventions shared by every command: tidy CSV, precision, completion, version, messages."""

from __future__ import annotations

import csv
import io
import json
import os
import re
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


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o default -F _recsys_completion recsys"),
                                           ("zsh", "#compdef recsys"), ("fish", "complete --command recsys")])
def test_completion_scripts_generate(shell, marker):
    """The README's way to get another shell's script: _RECSYS_COMPLETE=source_SHELL recsys."""
    exe = Path(sys.executable).parent / "recsys"
    if not exe.exists():
        pytest.skip("the recsys entry point is not installed in this environment")
    res = subprocess.run([str(exe)], capture_output=True, text=True,
                         env={**os.environ, "_RECSYS_COMPLETE": f"source_{shell}"})
    assert res.returncode == 0, res.stderr
    assert marker in res.stdout and "_RECSYS_COMPLETE" in res.stdout


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


def test_python_m_answers_the_completion_request(tmp_path):
    """`python -m recsys_cli` completes like the `recsys` script (the benchmark times completion this way)."""
    from recsys_cli.bench.units import completion_env

    (tmp_path / "svd-a").mkdir()
    (tmp_path / "svd-a" / "manifest.json").write_text("{}")
    env = completion_env({**os.environ, "RECSYS_ARTIFACTS_DIR": str(tmp_path)}, "recsys recommend sv")
    res = subprocess.run(RECSYS, capture_output=True, text=True, env=env)
    assert res.returncode == 0 and res.stdout.split() == ["svd-a"], res.stderr


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
    """A small synthetic dataset with svd, item-knn and popularity runs, for per-command format checks."""
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
    ok("train", "popularity", "--dataset", "tiny", "--split", "random", "--format", "json")
    ok("evaluate", "svd-tiny-random", "--format", "json")
    return runner


COMMANDS = [
    ("recommend", "svd-tiny-random", "--user", "1,2,99999", "-n", "3"),
    ("recommend", "item-knn-tiny-random", "--user", "1", "-n", "2", "--explain"),
    ("predict", "svd-tiny-random", "--user", "1", "--item", "2"),
    ("similar", "item-knn-tiny-random", "--item", "1", "-n", "3"),
    ("evaluate", "svd-tiny-random"),
    ("evaluate", "--model", "bias,svd", "--dataset", "tiny", "--cv", "2", "-p", "svd.epochs=2"),
    ("runs",),
    ("runs", "--ledger", "--kind", "evaluate"),
    ("runs", "--ledger"),
    ("models", "svd"),
    ("info",),
    ("info", "tiny"),
    ("split", "tiny", "--kind", "kfold", "--k", "3", "--force"),
    ("train", "bias", "--dataset", "tiny", "--split", "random", "--force"),
    ("preprocess", "tiny"),
    ("generate", "tiny-gen", "--users", "30", "--items", "20", "--ratings", "400", "--force"),
    ("tune", "svd", "--dataset", "tiny", "--grid", "factors=2,4", "-p", "epochs=2", "--cv", "2"),
    ("abtest", "plan", "--baseline-ctr", "0.1", "--mde", "0.01"),
    ("download", "--list"),
]


CLOCK = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?$")  # a wall-clock stamp


def _clock(value) -> bool:
    """A value each invocation stamps anew (`created` of a preprocess or a generate run twice may straddle a second)."""
    return isinstance(value, str) and CLOCK.match(value) is not None


def _untimed(row):
    return {k: ("<clock>" if _clock(v) else v) for k, v in flatten(row).items() if "seconds" not in k}


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


def _formats(runner, args, formats=("json", "jsonl", "csv")) -> dict[str, str]:
    """stdout of `recsys ARGS --format F` for each format; each exits 0 with no Python repr or traceback on stderr."""
    out = {}
    for fmt in formats:
        res = runner.invoke(app, [*map(str, args), "--format", fmt])
        assert res.exit_code == 0, (fmt, res.output)
        assert "{'" not in res.stderr and "Traceback" not in res.stderr, res.stderr  # no Python reprs on stderr
        out[fmt] = res.stdout
    return out


def check_csv_matches(rows: list[dict], csv_text: str) -> None:
    """The CSV has one row per JSON row and exactly the JSON rows' flattened keys as columns (the same set in CSV
    and JSONL), each cell typed and equal to the JSON value at full precision (timings aside)."""
    table = list(csv.DictReader(io.StringIO(csv_text)))
    assert len(table) == len(rows)
    keys = {k for row in rows for k in flatten(row)}
    header = next(csv.reader(io.StringIO(csv_text)))
    assert set(header) == keys, (sorted(keys - set(header)), sorted(set(header) - keys))
    for want, got in zip(rows, table, strict=True):
        flat = flatten(want)
        for key, cell in got.items():
            if "seconds" in key:
                continue  # measured anew by each invocation
            value = flat.get(key)
            if _clock(value):
                assert _clock(cell), (key, cell)  # stamped by this invocation: the same kind of value
                continue
            if isinstance(value, (list, dict)):  # a list of plain values is one JSON cell
                assert json.loads(cell) == value, key
                continue
            parsed = _typed(cell)
            if isinstance(value, float) and isinstance(parsed, (int, float)):
                assert parsed == pytest.approx(value, rel=1e-12, abs=1e-12), key  # full precision
            elif value is not None or parsed is not None:
                assert parsed == value or str(value) == cell, (key, cell, value)


def check_formats(runner, args) -> None:
    out = _formats(runner, args)
    data = json.loads(out["json"])
    rows = data if isinstance(data, list) else [data]
    jsonl = [json.loads(line) for line in out["jsonl"].splitlines()]
    # the same rows, keys and values in json and jsonl (timings differ run to run)
    assert [_untimed(r) for r in jsonl] == [_untimed(r) for r in rows]
    check_csv_matches(rows, out["csv"])


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_csv_holds_the_json_values_and_stderr_reads_as_english(tiny, args):
    check_formats(tiny, args)


@pytest.mark.parametrize("args", [("abtest", "svd-tiny-random", "popularity-tiny-random", "--bootstrap", "100"),
                                  ("abtest", "bandit", "svd-tiny-random", "popularity-tiny-random", "--rounds", "3",
                                   "--batch", "10")], ids=["abtest", "bandit"])
def test_nested_reports_are_one_json_object_and_refuse_csv(tiny, args):
    """abtest and abtest bandit reports are nested: JSON and one JSONL line hold the same object; CSV is a clear
    usage error (exit 2, one line), not a half-flattened table."""
    out = _formats(tiny, args, ("json", "jsonl"))
    lines = out["jsonl"].splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == json.loads(out["json"])
    res = tiny.invoke(app, [*args, "--format", "csv"])
    assert res.exit_code == 2 and res.stderr.startswith("error: ") and "json or jsonl" in res.stderr
    assert "{'" not in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("target", ["tiny", "svd-tiny-random"], ids=["dataset", "run"])
def test_insights_jsonl_and_csv_hold_the_same_long_rows_as_json(tiny, target):
    out = _formats(tiny, ("insights", target))
    data = json.loads(out["json"])
    rows = [json.loads(line) for line in out["jsonl"].splitlines()]
    summary = {r["key"]: r["value"] for r in rows if r["table"] == "summary"}
    assert summary == data["summary"]
    assert [r["statement"] for r in rows if r["table"] == "statements"] == data["statements"]
    for name, table in data["tables"].items():
        got = [{k: v for k, v in r.items() if k != "table"} for r in rows if r["table"] == name]
        assert [{k: r.get(k) for k in row} for r, row in zip(got, table, strict=True)] == table, name
    # CSV: the same rows with every key of every row as a column (empty where a row has none)
    check_csv_matches([{k: r.get(k) for k in dict.fromkeys(k for row in rows for k in row)} for r in rows],
                      out["csv"])


def test_benchmark_json_table_and_refused_formats(tmp_path):
    runner = CliRunner(env={"RECSYS_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "80"})
    args = ["benchmark", "--scale", "2000", "--models", "bias", "--steps", "fit", "--repeat", "1"]
    out = _formats(runner, args, ("json", "table"))
    report = json.loads(out["json"])
    assert [(r["model"], r["step"]) for r in report["rows"]] == [("bias", "fit")]
    wide = [line for line in out["table"].splitlines() if len(line) > 80]
    assert not wide, "\n".join(wide)
    assert "…" not in out["table"]  # no elided cell
    for fmt in ("csv", "jsonl"):
        res = runner.invoke(app, [*args, "--format", fmt])
        assert res.exit_code == 2 and res.stderr.startswith("error: benchmark prints --format table or json")


def test_download_from_a_local_mirror_in_every_format(tmp_path, mirror_dir):
    runner = CliRunner(env={"RECSYS_DATA_DIR": str(tmp_path / "data"), "RECSYS_MIRROR": str(mirror_dir)})
    first = runner.invoke(app, ["download", "ml-100k", "--format", "json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["already_present"] is False
    check_formats(runner, ("download", "ml-100k"))  # now already present: the same row in every format


@pytest.mark.parametrize("args", [("runs",), ("evaluate", "svd-tiny-random"), ("recommend", "svd-tiny-random", "--user", "1"),
                                  ("models", "bias"), ("info", "tiny")], ids=lambda a: a[0])
def test_tables_fit_80_columns(tiny, args, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    res = tiny.invoke(app, [*args, "--format", "table"], terminal_width=80)
    assert res.exit_code == 0, res.output
    wide = [line for line in res.stdout.splitlines() if len(line) > 80]
    assert not wide, "\n".join(wide)
