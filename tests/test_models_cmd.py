"""`recsys models`: every model's hyperparameters, exact JSON keys, formats and exit codes."""

from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from recsys_cli.cli.app import app
from recsys_cli.cli.models_cmd import allowed
from recsys_cli.models.registry import MODELS, get_model_class

KEYS = ["model", "parameter", "type", "default", "choices", "low", "high", "presets", "doc"]


def run(*args):
    return CliRunner().invoke(app, list(args))


def test_every_model_and_parameter_is_listed_with_a_meaning():
    res = run("models", "--format", "json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert all(list(r) == KEYS for r in rows)
    for name in MODELS:
        params = [r["parameter"] for r in rows if r["model"] == name]
        assert params == get_model_class(name).Config.field_names()
    assert all(r["doc"] and "\n" not in r["doc"] for r in rows)
    assert rows[-1]["model"] == "surprise:<Algorithm>" and "SVD" in rows[-1]["choices"]
    assert len(rows) == sum(len(get_model_class(n).Config.field_names()) for n in MODELS) + 1


def test_one_model_shows_types_defaults_ranges_choices_and_presets():
    rows = {r["parameter"]: r for r in json.loads(run("models", "svd", "--json").stdout)}
    assert rows["factors"] == {"model": "svd", "parameter": "factors", "type": "int", "default": 100, "choices": None,
                               "low": 1, "high": None, "presets": {"surprise": 100}, "doc": "latent factors"}
    assert rows["lr_bu"]["type"] == "float or none" and rows["lr_bu"]["default"] is None
    assert rows["lr_all"]["presets"] == {"surprise": 0.005}
    als = {r["parameter"]: r for r in json.loads(run("models", "als", "--json").stdout)}
    assert als["solver"]["choices"] == ["cg", "cholesky"] and als["solver"]["default"] == "cg"
    blend = {r["parameter"]: r for r in json.loads(run("models", "blend", "--json").stdout)}
    assert (blend["val_fraction"]["low"], blend["val_fraction"]["high"]) == (0.01, 0.5)


def test_surprise_algorithm_parameters_come_from_its_signature():
    rows = json.loads(run("models", "surprise:KNNBaseline", "--format", "json").stdout)
    by = {r["parameter"]: r for r in rows}
    assert set(by) == {"k", "min_k", "sim_options", "bsl_options"}
    assert by["k"]["default"] == 40 and by["k"]["type"] == "int" and by["sim_options"]["default"] == "{}"
    none = json.loads(run("models", "surprise:NormalPredictor", "--json").stdout)
    assert none == [{"model": "surprise:NormalPredictor", "parameter": None, "type": None, "default": None,
                     "choices": None, "low": None, "high": None, "presets": {}, "doc": "no hyperparameters"}]


def test_jsonl_csv_and_table():
    lines = run("models", "bpr", "--format", "jsonl").stdout.splitlines()
    assert [json.loads(x)["parameter"] for x in lines] == get_model_class("bpr").Config.field_names()
    table = list(csv.DictReader(io.StringIO(run("models", "als", "--format", "csv").stdout)))
    assert list(table[0])[:7] == ["model", "parameter", "type", "default", "choices", "low", "high"]
    solver = next(r for r in table if r["parameter"] == "solver")
    assert (solver["default"], solver["choices"]) == ("cg", '["cg", "cholesky"]')
    svd = {r["parameter"]: r for r in csv.DictReader(io.StringIO(run("models", "svd", "-f", "csv").stdout))}
    # tidy CSV: a preset is its own column (presets.NAME), one value per cell
    assert (svd["lr_all"]["default"], svd["lr_all"]["low"], svd["lr_all"]["presets.surprise"]) == (
        "0.01", "0.0", "0.005")
    res = run("models", "svd", "--format", "table")
    assert res.exit_code == 0 and "learning rate of every parameter" in res.stdout


def test_allowed_text():
    row = dict.fromkeys(KEYS)
    assert allowed(row) is None
    assert allowed({**row, "low": 1}) == ">= 1"
    assert allowed({**row, "low": 0.01, "high": 0.5}) == "0.01 .. 0.5"
    assert allowed({**row, "high": 2.0}) == "<= 2"
    assert allowed({**row, "choices": ["a", "b"], "low": 0}) == "a | b"


@pytest.mark.parametrize(("name", "message"), [
    ("svdd", "error: unknown model 'svdd' (did you mean 'svd'?); valid models: bias,"),
    ("surprise:Nope", "error: unknown Surprise algorithm 'Nope'; valid: SVD,"),
])
def test_unknown_model_is_one_line_and_exit_2(name, message):
    res = run("models", name)
    assert res.exit_code == 2
    assert res.stderr.startswith(message) and res.stderr.count("\n") == 1
    assert res.stdout == ""


def test_help_names_the_command():
    res = run("--help")
    assert res.exit_code == 0 and "models" in res.stdout
    assert run("models", "--help").exit_code == 0
