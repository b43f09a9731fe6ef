"""`recsys benchmark`: report shape, rows per step, peers and ratios, skipped peers, bad input, README section."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from recsys_cli.bench import readme
from recsys_cli.bench.datasets import parse_scale, prepare, synthetic_sizes
from recsys_cli.bench.harness import compute_ratios
from recsys_cli.bench.machine import PeakRSS
from recsys_cli.bench.measure import DATA_STEPS, MODEL_STEPS, ROW_KEYS, make_row
from recsys_cli.cli.app import app
from recsys_cli.errors import DataError, UsageError
from recsys_cli.models.registry import model_names
from recsys_cli.output.bench import ratio_reading

SCALE = "3000"  # synthetic: 3,000 ratings, 25 users, 328 items
MACHINE_KEYS = {"cpu", "cores", "memory_gb", "python", "versions", "date"}


@pytest.fixture(autouse=True)
def _no_mirror(monkeypatch):
    monkeypatch.delenv("RECSYS_MIRROR", raising=False)
    monkeypatch.delenv("RECSYS_DATA_DIR", raising=False)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("bench-data")


def bench(data_dir, *args: str):
    return CliRunner().invoke(app, ["benchmark", "--scale", SCALE, "--data-dir", str(data_dir), "--repeat", "1", *args])


def by_key(report):
    return {(r["model"], r["implementation"], r["step"]): r for r in report["rows"]}


@pytest.fixture(scope="module")
def report(data_dir):
    out = data_dir / "report.json"
    res = bench(data_dir, "--models", "bias,svd", "--peers", "surprise", "--no-isolate", "--json", "--out", str(out))
    assert res.exit_code == 0, res.stderr
    parsed = json.loads(res.stdout)
    assert json.loads(out.read_text()) == parsed  # --out holds the same report
    return parsed


def test_report_shape(report):
    assert {"machine", "scale", "rows", "ratios"} <= set(report)
    assert MACHINE_KEYS <= set(report["machine"])
    assert report["machine"]["cores"] >= 1 and report["machine"]["versions"]["numpy"] == np.__version__
    assert report["scale"] == SCALE
    assert report["dataset"]["source"] == "synthetic" and report["dataset"]["ratings"] == 3000
    for row in report["rows"]:
        assert set(row) == set(ROW_KEYS) | ({"skipped"} if "skipped" in row else set()), row
        assert row["scale"] == SCALE
    skipped = [(r["implementation"], r["step"]) for r in report["rows"] if "skipped" in r]
    assert skipped == [("surprise", "latency"), ("surprise", "latency")]  # no peer has a command line


def test_rows_for_every_step(report):
    rows = by_key(report)
    for step in DATA_STEPS:
        assert rows[(None, "recsys", step)]["seconds"] > 0
    expected = [("bias", "recsys"), ("svd", "recsys"), ("svd@surprise", "recsys"), ("bias", "surprise"),
                ("svd@surprise", "surprise")]
    for model, impl in expected:
        for step in MODEL_STEPS[:-1]:
            row = rows[(model, impl, step)]
            assert row["seconds"] > 0 and row["throughput"] > 0 and row["peak_rss_mb"] > 0
            # our Numba code reports its warm-up (compile) time; the peers are compiled ahead of time
            assert (row["compile_seconds"] is not None) == (impl == "recsys")
        assert rows[(model, impl, "fit")]["artifact_mb"] > 0
        latency = rows[(model, impl, "latency")]
        assert (latency["seconds"] > 0) if impl == "recsys" else latency["skipped"] == "surprise has no command line"
    n_test = 600  # random 80/20 holdout of 3,000 ratings
    predict = rows[("svd", "recsys", "predict")]
    assert predict["throughput"] * predict["seconds"] == pytest.approx(n_test, rel=1e-3)
    recommend = rows[("bias", "recsys", "recommend")]
    assert recommend["throughput"] * recommend["seconds"] == pytest.approx(25, rel=1e-3)  # every user


def test_quality_matches_the_peer(report):
    rows = by_key(report)
    ours, theirs = rows[("bias", "recsys", "evaluate")]["metrics"], rows[("bias", "surprise", "evaluate")]["metrics"]
    assert set(ours) == {"rmse", "mae"} and 0.3 < ours["rmse"] < 1.5
    assert ours["rmse"] == pytest.approx(theirs["rmse"], abs=2e-3)  # same ALS baseline as BaselineOnly
    svd = rows[("svd@surprise", "recsys", "evaluate")]["metrics"]["rmse"]
    assert svd == pytest.approx(rows[("svd@surprise", "surprise", "evaluate")]["metrics"]["rmse"], abs=0.05)


def test_ratios_per_step(report):
    got = {(r["model"], r["peer"], r["step"]): r["ratio"] for r in report["ratios"]}
    assert set(got) == {(m, p, s) for m, p in (("bias", "surprise:BaselineOnly"), ("svd@surprise", "surprise:SVD"))
                        for s in MODEL_STEPS if s != "latency"}
    rows = by_key(report)
    fit = got[("bias", "surprise:BaselineOnly", "fit")]
    assert fit == pytest.approx(rows[("bias", "recsys", "fit")]["seconds"] / rows[("bias", "surprise", "fit")]["seconds"],
                                rel=1e-2)


def test_compute_ratios_uses_throughput_when_work_differs():
    def row(impl, step, seconds, throughput):
        r = make_row("svd", impl, step, "x")
        r.update(seconds=seconds, throughput=throughput)
        return r

    rows = [row("recsys", "fit", 2.0, None), row("surprise", "fit", 8.0, None),
            row("recsys", "recommend", 1.0, 59400.0), row("surprise", "recommend", 0.5, 8.16)]
    ratios = compute_ratios(rows, [("svd", "surprise", "SVD")])
    assert ratios == [
        {"model": "svd", "peer": "surprise:SVD", "step": "fit", "ratio": 0.25},
        # 8.16 / 59400 to 4 significant digits (rounding to 4 decimals printed 10000x faster)
        {"model": "svd", "peer": "surprise:SVD", "step": "recommend", "ratio": 0.0001374},
    ]


@pytest.mark.parametrize("ratio, reading", [(0.0001374, "7,278x faster"), (0.19, "5.3x faster"), (0.97, "about the same"),
                                            (1.263, "1.3x slower"), (250.0, "250x slower")])
def test_ratio_reading(ratio, reading):
    assert ratio_reading(ratio) == reading


def test_missing_peer_is_reported_as_skipped(data_dir, monkeypatch):
    for name in [m for m in sys.modules if m == "surprise" or m.startswith("surprise.")] or ["surprise"]:
        monkeypatch.setitem(sys.modules, name, None)
    res = bench(data_dir, "--models", "bias", "--peers", "surprise", "--steps", "fit", "--no-isolate", "--json")
    assert res.exit_code == 0, res.stderr
    rep = json.loads(res.stdout)
    skipped = [r for r in rep["rows"] if "skipped" in r]
    assert len(skipped) == 1
    assert skipped[0]["model"] == "bias" and skipped[0]["implementation"] == "surprise"
    assert "scikit-surprise is not installed" in skipped[0]["skipped"]
    assert set(skipped[0]) == set(ROW_KEYS) | {"skipped"}
    assert rep["ratios"] == []
    assert by_key(rep)[("bias", "recsys", "fit")]["seconds"] > 0


@pytest.mark.skipif(importlib.util.find_spec("implicit") is None, reason="implicit (the compare extra) is not installed")
def test_bpr_and_implicit_bpr_get_the_same_train_auc_estimator(data_dir):
    res = bench(data_dir, "--models", "bpr", "--peers", "implicit", "--steps", "fit", "-p", "bpr.epochs=20",
                "-p", "bpr.factors=16", "--no-isolate", "--json")
    assert res.exit_code == 0, res.stderr
    rows = by_key(json.loads(res.stdout))
    for impl in ("recsys", "implicit"):
        metrics = rows[("bpr", impl, "fit")]["metrics"]
        assert 0.6 < metrics["train_auc"] <= 1.0, (impl, metrics)  # trained factors rank liked items well above 0.5
        assert metrics["s_per_iter"] > 0


@pytest.mark.skipif("ials" not in model_names(), reason="ials is not registered yet")
@pytest.mark.skipif(importlib.util.find_spec("implicit") is None, reason="implicit (the compare extra) is not installed")
def test_ranking_model_gets_ndcg_and_implicit_ratios(data_dir):
    res = bench(data_dir, "--models", "ials", "--peers", "implicit", "--steps", "fit,predict,evaluate",
                "--no-isolate", "--json")
    assert res.exit_code == 0, res.stderr
    rep = json.loads(res.stdout)
    rows = by_key(rep)
    for impl in ("recsys", "implicit"):
        metrics = rows[("ials", impl, "evaluate")]["metrics"]
        assert 0 < metrics["ndcg@10"] <= 1 and "rmse" not in metrics
    assert "pair-score" in rows[("ials", "implicit", "predict")]["skipped"]
    assert {(r["step"]) for r in rep["ratios"]} == {"fit", "iteration", "evaluate"}
    ours, theirs = rows[("ials", "recsys", "fit")]["metrics"], rows[("ials", "implicit", "fit")]["metrics"]
    assert 0 < ours["s_per_iter"] < rows[("ials", "recsys", "fit")]["seconds"]  # one of several iterations
    assert 0 < theirs["s_per_iter"] < rows[("ials", "implicit", "fit")]["seconds"]
    (it,) = [r for r in rep["ratios"] if r["step"] == "iteration"]
    assert it["ratio"] == pytest.approx(ours["s_per_iter"] / theirs["s_per_iter"], rel=1e-3)


def test_isolated_run_in_fresh_processes(data_dir):
    res = bench(data_dir, "--models", "bias", "--steps", "split,fit,recommend", "--json")
    assert res.exit_code == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["settings"]["isolated"] is True
    assert [(r["model"], r["step"]) for r in rep["rows"]] == [(None, "split"), ("bias", "fit"), ("bias", "recommend")]
    assert all(r["peak_rss_mb"] > 20 for r in rep["rows"])


def test_latency_step_times_fresh_cli_processes(data_dir):
    res = bench(data_dir, "--models", "bias", "--peers", "surprise", "--steps", "latency", "--no-isolate", "--json")
    assert res.exit_code == 0, res.stderr
    rows = by_key(json.loads(res.stdout))
    ours = rows[("bias", "recsys", "latency")]
    assert ours["seconds"] > 0 and ours["throughput"] is None  # measured (no speed threshold in tests)
    assert ours["metrics"]["cli_help_s"] > 0
    assert ours["metrics"]["cli_complete_s"] > 0  # a Tab press completing the run name, timed like --help
    assert rows[("bias", "surprise", "latency")]["skipped"] == "surprise has no command line"
    assert ("bias", "recsys", "fit") not in rows  # fit ran (to have a run to load) but was not asked for


def test_table_output(data_dir):
    res = bench(data_dir, "--models", "bias", "--peers", "implicit", "--steps", "fit", "--no-isolate",
                "--format", "table")
    assert res.exit_code == 0, res.stderr
    first = res.stdout.splitlines()[0]
    assert "UTC" in first and "cores" in first and "Python" in first
    assert "recsys benchmark · 3000" in res.stdout and "\x1b[" not in res.stdout
    assert "skipped (implicit): no implicit counterpart" in res.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--models", "svd,nosuch"], "unknown model 'nosuch'"),
        (["--scale", "7q"], "unknown scale '7q'"),
        (["--scale", "12"], "at least 1000 ratings"),
        (["--steps", "fit,bake"], "unknown step 'bake'"),
        (["--peers", "surprise,lenskit"], "unknown peer 'lenskit'"),
        (["--repeat", "0"], "at least 1"),
        (["--format", "csv"], "table or json"),
        (["--suite", "nosuch"], "unknown suite"),
        (["--suite", "polars500k", "--models", "svd"], "--suite runs its own tasks"),
    ],
)
def test_bad_input_exits_2(tmp_path, args, message):
    res = CliRunner().invoke(app, ["benchmark", "--data-dir", str(tmp_path), *args])
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: ") and message in res.stderr
    assert not (tmp_path / "bench").exists()  # rejected before any data work


def test_scales():
    assert parse_scale("100k").label == parse_scale("ML-100K").label == "ml-100k"
    assert parse_scale("1m").release == "ml-1m" and parse_scale("32m").release == "ml-32m"
    assert parse_scale("500k").n_ratings == 500_000 and parse_scale("2.5m").n_ratings == 2_500_000
    assert parse_scale("3000").release is None
    for n in (1000, 3000, 123_457, 10_000_000):
        s = synthetic_sizes(n)
        assert s["n_users"] * s["n_items"] >= 2 * n and s["n_users"] >= 10
    with pytest.raises(UsageError):
        parse_scale("big")


def test_synthetic_data_is_reused(data_dir, report):
    raw_meta = data_dir / "bench" / "raw" / f"synth-{SCALE}-seed42" / "generate.json"
    before = raw_meta.stat().st_mtime_ns
    again = prepare(parse_scale(SCALE), data_dir=data_dir, seed=42)
    assert again.source == "synthetic" and again.meta["n_ratings"] == 3000
    assert raw_meta.stat().st_mtime_ns == before


def test_peak_rss_sees_an_allocation():
    with PeakRSS() as base:
        pass
    with PeakRSS() as mem:
        block = np.ones(64 * 1024 * 1024 // 8)  # 64 MB, touched
        del block
    assert mem.peak_mb - base.peak_mb > 48


def test_polars_suite_small(tmp_path):
    res = CliRunner().invoke(app, ["benchmark", "--suite", "polars500k", "--scale", "20000", "--repeat", "1", "--json"])
    assert res.exit_code == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["suite"] == "polars500k" and rep["scale"] == 20000
    tasks = [r["task"] for r in rep["rows"]]
    assert tasks == ["generate", "aggregations", "join + filter", "user-item matrix", "item similarity", "svd fit",
                     "batch prediction"]
    assert all(r["seconds"] > 0 and "seed_seconds" not in r for r in rep["rows"])
    assert rep["rows"][0]["detail"].startswith("20,000 ratings")


def test_readme_section_replaced(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(f"# x\n\n{readme.START}\nold table\n{readme.END}\n\ntail\n")
    body = readme.section("2026-01-01 · cpu\n┃ table ┃\n", ["--scale", "ml-100k"])
    readme.update_readme(path, body)
    text = path.read_text()
    assert text == (f"# x\n\n{readme.START}\nPrinted by `recsys benchmark --scale ml-100k` (`make bench-readme`):\n\n"
                    f"```text\n2026-01-01 · cpu\n┃ table ┃\n```\n{readme.END}\n\ntail\n")
    readme.update_readme(path, body)
    assert path.read_text() == text  # idempotent


def test_readme_named_section_leaves_the_default_one_alone(tmp_path):
    path = tmp_path / "README.md"
    first, last = readme.markers("pipeline")
    assert (first, last) == ("<!-- bench:pipeline:start -->", "<!-- bench:pipeline:end -->")
    path.write_text(f"{readme.START}\nstandard\n{readme.END}\n{first}\nold\n{last}\n")
    body = readme.section("out\n", ["--suite", "pipeline"], "bench-readme-scale")
    readme.update_readme(path, body, "pipeline")
    assert path.read_text() == (f"{readme.START}\nstandard\n{readme.END}\n{first}\nPrinted by `recsys benchmark "
                                f"--suite pipeline` (`make bench-readme-scale`):\n\n```text\nout\n```\n{last}\n")
    with pytest.raises(DataError, match="no <!-- bench:other:start -->"):
        readme.update_readme(path, body, "other")


def test_readme_without_markers_is_an_error(tmp_path, capsys):
    path = tmp_path / "README.md"
    path.write_text(f"# x\n{readme.START}\nno end marker\n")
    with pytest.raises(DataError, match="bench:end"):
        readme.update_readme(path, "new")
    assert readme.main(["--readme", str(path), "--scale", "ml-100k"]) == 3  # fails before running anything
    assert "bench:end" in capsys.readouterr().err
    assert path.read_text() == f"# x\n{readme.START}\nno end marker\n"


def test_fm_floor_visits_every_rater_of_every_feature_twice_a_factor():
    from recsys_cli.bench import fm_floor

    users = np.array([2, 0, 1, 0, 2, 2], dtype=np.int32)
    items = np.array([1, 1, 0, 2, 2, 0], dtype=np.int32)
    indptr, raters = fm_floor.feature_major(users, items, 4)
    assert indptr.tolist() == [0, 2, 4, 6, 6]  # item 3 has no rater
    assert raters.tolist() == [1, 2, 0, 2, 0, 2]  # each item's raters ascending
    sums = np.zeros((3, 2), dtype=np.float32)
    sums[:, 1] = [1.0, 2.0, 4.0]
    drift = fm_floor._kernel()(indptr, raters, sums, 2)
    # per feature: change = 1e-9 * (sum of its raters' first column - second column), added to its raters
    expect = np.zeros(3)
    total = 0.0
    for _ in range(2):
        for j in range(4):
            r = raters[indptr[j]:indptr[j + 1]]
            change = np.float32(1e-9 * (expect[r].sum() - sums[r, 1].astype(np.float64).sum()))
            expect[r] += change
            total += change
    assert np.allclose(sums[:, 0], expect) and drift == pytest.approx(total)


@pytest.mark.parametrize("option", ["--out", "--plot"])
def test_output_paths_are_checked_before_the_benchmark_runs(tmp_path, monkeypatch, option):
    """--out (and --plot) under a file, or naming a folder: one line and the documented code before any
    timing (--out was only written after the whole benchmark, then failed naming a hidden temp file)."""
    import recsys_cli.api.experiments as experiments

    def must_not_run(**kwargs):
        raise AssertionError("the benchmark ran")

    monkeypatch.setattr(experiments, "benchmark", must_not_run)
    if option == "--plot":
        pytest.importorskip("matplotlib")
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "folder.svg").mkdir()
    name = "report.json" if option == "--out" else "plot.svg"
    cases = [
        (tmp_path / "file.txt" / name, 7,
         f"error: {option} folder {tmp_path / 'file.txt'}: {tmp_path / 'file.txt'} is a file, not a folder\n"),
        (tmp_path / "folder.svg", 2, f"error: {option} {tmp_path / 'folder.svg'} is a folder; give a file name\n"),
    ]
    for path, code, stderr in cases:
        res = CliRunner().invoke(app, ["benchmark", "--scale", "ml-100k", "--data-dir", str(tmp_path), "--format",
                                       "json", option, str(path)])
        assert (res.exit_code, res.stdout, res.stderr) == (code, "", stderr)


def test_written_files_are_named_on_stderr(tmp_path, monkeypatch):
    """Like tune and abtest --plot, benchmark says what it wrote (`wrote FILE`, one line each)."""
    pytest.importorskip("matplotlib")
    import recsys_cli.api.experiments as experiments

    report = {"machine": {}, "settings": {}, "rows": [], "ratios": [{"model": "svd", "peer": "surprise:SVD",
                                                                      "step": "fit", "ratio": 2.0}]}
    monkeypatch.setattr(experiments, "benchmark", lambda **kwargs: experiments.BenchmarkReport(report))
    out, plot = tmp_path / "new" / "bench.json", tmp_path / "bench.svg"
    res = CliRunner().invoke(app, ["benchmark", "--scale", "ml-100k", "--data-dir", str(tmp_path), "--format", "json",
                                   "--out", str(out), "--plot", str(plot)])
    assert res.exit_code == 0, res.output
    assert res.stderr == f"wrote {out}\nwrote {plot}\n"
    assert json.loads(out.read_text()) == json.loads(res.stdout) and plot.read_bytes().startswith(b"<?xml")
