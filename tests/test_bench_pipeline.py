"""`recsys benchmark --suite pipeline`: every step a real command in its own process, measured, cleaned up."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from recsys_cli.bench import pipeline
from recsys_cli.cli.app import app


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.delenv("RECSYS_MIRROR", raising=False)
    monkeypatch.delenv("RECSYS_DATA_DIR", raising=False)


def test_pipeline_runs_each_command_and_reports_the_total(tmp_path):
    res = CliRunner().invoke(app, ["benchmark", "--suite", "pipeline", "--scale", "20k", "--threads", "1",
                                   "--data-dir", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["suite"] == "pipeline" and rep["scale"] == "20000" and rep["settings"]["threads"] == 1
    tasks = [r["task"] for r in rep["rows"]]
    assert tasks == ["generate", "preprocess", "split", "train", "evaluate", "pipeline total"]
    steps = {r["task"]: r for r in rep["rows"]}
    assert steps["train"]["command"] == ("recsys train ials --dataset pipeline --split pipeline-user -p factors=64 "
                                         "-p iterations=15 --name pipeline-ials --seed 42")
    for r in rep["rows"]:
        assert r["seconds"] > 0 and r["peak_rss_mb"] > 20  # a child python with numpy is never smaller
    timed = [steps[t]["seconds"] for t in ("preprocess", "split", "train", "evaluate")]
    assert steps["pipeline total"]["seconds"] == pytest.approx(sum(timed), abs=0.01)
    assert steps["pipeline total"]["peak_rss_mb"] == max(steps[t]["peak_rss_mb"] for t in ("preprocess", "split",
                                                                                        "train", "evaluate"))
    assert steps["generate"]["detail"].startswith("20,000 ratings, ")
    assert "nDCG@10 0." in steps["evaluate"]["detail"] and "full catalogue" in steps["evaluate"]["detail"]
    assert any("not judged (this run is 20000)" in n for n in rep["notes"])
    assert [p.name for p in tmp_path.iterdir()] == []  # the scratch folder is gone
    assert "pipeline [4/5] recsys train ials" in res.stderr


def test_a_failing_step_stops_the_pipeline_with_its_message(tmp_path, monkeypatch):
    real = pipeline._commands

    def broken(scale, seed):
        steps = real(scale, seed)
        return steps[:1] + [("preprocess", ["preprocess", "no-such-dataset"])]

    monkeypatch.setattr(pipeline, "_commands", broken)
    res = CliRunner().invoke(app, ["benchmark", "--suite", "pipeline", "--scale", "20k", "--data-dir", str(tmp_path),
                                   "--json"])
    assert res.exit_code == 1 and res.stdout == ""
    (line,) = res.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: pipeline step `recsys preprocess no-such-dataset` failed with exit code 3: error: ")
    assert [p.name for p in tmp_path.iterdir()] == []
