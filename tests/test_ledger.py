"""Run ledger: records, queries, metric sorting, and two concurrent writers."""

from __future__ import annotations

import json
import multiprocessing as mp

import pytest
from typer.testing import CliRunner

from recsys_cli import ledger
from recsys_cli.cli.app import app


def _writer(root: str, tag: str, n: int) -> None:
    for k in range(n):
        ledger.record("evaluate", root=root, model=tag, dataset="d", metrics={"rmse": 1.0 - k / 1000}, params={"k": k})


def test_two_concurrent_writers_lose_nothing(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), tag, 60)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    rows = ledger.query(root=tmp_path)
    assert len(rows) == 120
    assert sorted(r["params"]["k"] for r in rows if r["model"] == "a") == list(range(60))
    assert len({r["id"] for r in rows}) == 120


def test_query_filters_and_sorts(tmp_path):
    ledger.record("train", root=tmp_path, model="svd", dataset="x", run="r1")
    ledger.record("evaluate", root=tmp_path, model="svd", dataset="x", metrics={"rmse": 0.95, "ndcg@10": 0.2})
    ledger.record("evaluate", root=tmp_path, model="bias", dataset="x", metrics={"rmse": 0.90, "ndcg@10": 0.3})
    ledger.record("evaluate", root=tmp_path, model="bias", dataset="y", metrics={"rmse": 0.99})
    assert [r["metrics"]["rmse"] for r in ledger.query(root=tmp_path, sort="rmse")] == [0.90, 0.95, 0.99]
    assert [r["metrics"]["ndcg@10"] for r in ledger.query(root=tmp_path, sort="ndcg@10")] == [0.3, 0.2]
    assert [r["kind"] for r in ledger.query(root=tmp_path, model="svd")] == ["evaluate", "train"]
    assert len(ledger.query(root=tmp_path, dataset="y")) == 1
    res = CliRunner().invoke(app, ["runs", "--ledger", "--kind", "evaluate", "--sort", "rmse", "--limit", "2",
                                   "--artifacts-dir", str(tmp_path), "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [(r["model"], r["dataset"]) for r in rows] == [("bias", "x"), ("svd", "x")]
    assert rows[0]["versions"]["recsys"]


@pytest.mark.parametrize("args, message", [
    (["runs", "--sort", "bogus"], "error: cannot sort by 'bogus'; known metrics: rmse, mae"),
    (["runs", "--sort", "ndcg"], "error: cannot sort by 'ndcg' (did you mean ndcg@10?)"),
    (["runs", "--ledger", "--sort", "ndgc@10"], "error: cannot sort by 'ndgc@10'"),
    (["runs", "--ledger", "--kind", "bogus"], "error: unknown kind 'bogus'; choose one of train, evaluate, tune, "
                                              "tune-trial"),
])
def test_runs_filters_nothing_could_match_are_usage_errors(args, message, tmp_path):
    ledger.record("evaluate", root=tmp_path, model="svd", dataset="x", metrics={"rmse": 0.95})
    res = CliRunner().invoke(app, [*args, "--artifacts-dir", str(tmp_path), "--format", "json"])
    assert res.exit_code == 2 and res.stdout == ""
    assert len(res.stderr.splitlines()) == 1 and res.stderr.startswith(message)


def test_runs_sort_accepts_every_recorded_figure(tmp_path):
    ledger.record("tune", root=tmp_path, model="svd", dataset="x", metrics={"rmse": 0.95, "rmse_std": 0.01})
    for sort in ("rmse_std", "users_evaluated", "hit_rate@5", "popularity_bias@20"):
        res = CliRunner().invoke(app, ["runs", "--ledger", "--sort", sort, "--artifacts-dir", str(tmp_path),
                                       "--format", "json"])
        assert res.exit_code == 0, (sort, res.output)
    assert [r["metrics"]["rmse_std"] for r in ledger.query(root=tmp_path, sort="rmse_std")] == [0.01]


@pytest.mark.parametrize(("column", "value", "why"), [
    ("metrics", '"oops"', "entry 2: metrics is JSON str, not an object"),
    ("metrics", '{"ndcg@10": "high"}', "entry 2: metric 'ndcg@10' is not a number"),
    ("params", "[1, 2]", "entry 2: params is JSON list, not an object"),
])
def test_runs_ledger_with_a_wrong_typed_entry_is_exit_7_in_every_format(tmp_path, column, value, why):
    """An entry whose JSON column has the wrong type: exit 7 like an unparsable one, in every format and with
    --sort (the table was exit 1 ''str' object has no attribute 'get'' while JSON printed the entry, and
    --sort said "'<' not supported between instances of 'float' and 'str'")."""
    import sqlite3

    ledger.record("evaluate", root=tmp_path, model="svd", dataset="x", metrics={"rmse": 0.95, "ndcg@10": 0.2})
    ledger.record("evaluate", root=tmp_path, model="bias", dataset="x", metrics={"rmse": 0.90, "ndcg@10": 0.3})
    conn = sqlite3.connect(ledger.ledger_path(tmp_path))
    with conn:
        conn.execute(f"UPDATE entries SET {column} = ? WHERE id = 2", (value,))
    conn.close()
    path = ledger.ledger_path(tmp_path)
    for args in (["--format", "table"], ["--format", "json"], ["--format", "csv"], ["--sort", "ndcg@10"]):
        res = CliRunner().invoke(app, ["runs", "--ledger", "--artifacts-dir", str(tmp_path), *args])
        assert (res.exit_code, res.stdout) == (7, ""), (args, res.output)
        assert res.stderr == f"error: cannot read the run ledger {path}: {why}; move it aside to start a new one\n"


def test_many_processes_creating_the_ledger_at_once(tmp_path):
    # First use of a new ledger (WAL switch + schema) by several processes at the same moment.
    ctx = mp.get_context("spawn")
    for round_ in range(3):
        root = tmp_path / f"r{round_}"
        procs = [ctx.Process(target=_writer, args=(str(root), f"p{k}", 3)) for k in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        assert len(ledger.query(root=root)) == 18
